//! Uploads in parts, documents, downloads: Telegram's file rules over the wire, and the
//! data-centre dance (FILE_MIGRATE_X, exportAuthorization/importAuthorization).

use std::time::Duration;

use fakegram::{AccountKind, Chat, Config, Server};
use grammers_client::tl;

use crate::common::{
    bot_channel, bounded, bytes, client, document_of, get_file, random_id, repetitive, rpc_name,
    send_document, sent_id, upload, user_channel,
};

const PART: usize = 512 * 1024;

fn channel_id(server: &Server) -> i64 {
    let Chat::Channel(id) = server.channel() else {
        unreachable!()
    };
    id
}

/// Downloads a whole document in 512 KiB requests.
async fn download(
    c: &grammers_client::Client,
    dc: i32,
    location: &tl::enums::InputFileLocation,
    size: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < size {
        let got = get_file(c, dc, location, out.len() as i64, PART as i32)
            .await
            .unwrap();
        assert!(!got.is_empty());
        out.extend(got);
    }
    out
}

#[tokio::test]
async fn small_and_big_files_go_up_in_parts_and_come_back_whole() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let (peer, channel) = user_channel(&c.client, channel_id(&server)).await;
    for (seed, len, big) in [
        (1u8, 1_300_000usize, false),
        (2, 10 * 1024 * 1024 + 5, true),
    ] {
        let data = bytes(seed, len);
        let file = upload(&c.client, &data, PART, big).await;
        let msg = sent_id(
            &send_document(&c.client, &peer, file, "part.bin", random_id())
                .await
                .unwrap(),
        );
        let (location, dc, size) = document_of(&c.client, &channel, msg).await.unwrap();
        assert_eq!((dc, size as usize), (2, len));
        assert!(
            download(&c.client, dc, &location, len).await == data,
            "{len} bytes back"
        );
        assert_eq!(
            server.document_bytes(server.channel(), msg).unwrap().len(),
            len
        );
    }
    assert_eq!(server.requests("upload.saveFilePart"), 3);
    assert_eq!(server.requests("upload.saveBigFilePart"), 21);
    assert_eq!(server.pending_uploads(), 0, "sent uploads are forgotten");
}

#[tokio::test]
async fn upload_rules_refuse_what_telegram_refuses() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let (peer, _) = user_channel(&c.client, channel_id(&server)).await;
    let save = |file_id: i64, part: i32, len: usize| {
        let c = c.client.clone();
        async move {
            bounded(c.invoke(&tl::functions::upload::SaveFilePart {
                file_id,
                file_part: part,
                bytes: vec![7; len],
            }))
            .await
        }
    };
    // Part index, emptiness and size, at once.
    assert_eq!(
        rpc_name(&save(1, 4000, 10).await.unwrap_err()),
        "FILE_PART_INVALID"
    );
    assert_eq!(
        rpc_name(&save(1, 0, 0).await.unwrap_err()),
        "FILE_PART_EMPTY"
    );
    assert_eq!(
        rpc_name(&save(1, 0, PART + 1).await.unwrap_err()),
        "FILE_PART_TOO_BIG"
    );
    // A missing part is named when the message is sent.
    for part in [0, 2] {
        save(2, part, PART).await.unwrap();
    }
    let file = tl::types::InputFile {
        id: 2,
        parts: 3,
        name: "x".into(),
        md5_checksum: String::new(),
    };
    let err = send_document(&c.client, &peer, file.clone().into(), "x", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_PART_MISSING_1");
    // Parts that do not divide 512 KiB in whole KiB, or change size, are refused.
    save(3, 0, 300 * 1024).await.unwrap();
    save(3, 1, 300 * 1024).await.unwrap();
    let file3 = tl::types::InputFile {
        id: 3,
        parts: 2,
        ..file.clone()
    };
    let err = send_document(&c.client, &peer, file3.into(), "x", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_PART_SIZE_INVALID");
    // A file over 10 MB sent as a small file, and parts saved as big sent as small.
    let big = repetitive(4, 10 * 1024 * 1024 + 1);
    let small_way = upload(&c.client, &big, PART, false).await;
    let err = send_document(&c.client, &peer, small_way, "x", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_PARTS_INVALID");
    let tl::enums::InputFile::Big(big_way) =
        upload(&c.client, &bytes(5, 2 * PART), PART, true).await
    else {
        unreachable!()
    };
    let as_small = tl::types::InputFile {
        id: big_way.id,
        parts: big_way.parts,
        ..file
    };
    let err = send_document(&c.client, &peer, as_small.into(), "x", random_id())
        .await
        .unwrap_err();
    assert_eq!(
        rpc_name(&err),
        "FILE_PART_MISSING_0",
        "big parts are not small parts"
    );
    assert!(
        server.messages(server.channel()).is_empty(),
        "nothing was sent"
    );
}

#[tokio::test]
async fn unsent_parts_expire() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let (peer, _) = user_channel(&c.client, channel_id(&server)).await;
    let file = upload(&c.client, &bytes(6, PART + 10), PART, false).await;
    server.advance(fakegram::rules::DEFAULT_PART_LIFETIME + Duration::from_secs(1));
    let err = send_document(&c.client, &peer, file, "late.bin", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_PART_MISSING_0");
    assert_eq!(server.pending_uploads(), 0);
}

#[tokio::test]
async fn downloads_must_be_aligned() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let (peer, channel) = user_channel(&c.client, channel_id(&server)).await;
    let data = bytes(7, 3 * PART);
    let file = upload(&c.client, &data, PART, false).await;
    let msg = sent_id(
        &send_document(&c.client, &peer, file, "a.bin", random_id())
            .await
            .unwrap(),
    );
    let (location, dc, _) = document_of(&c.client, &channel, msg).await.unwrap();
    for (offset, limit, error) in [
        (PART as i64 + PART as i64 / 2, PART as i32, "OFFSET_INVALID"), // crosses a 1 MiB boundary
        (100, 4096, "OFFSET_INVALID"),
        (0, 3 * 4096, "LIMIT_INVALID"),
        (0, 2 * 1024 * 1024, "LIMIT_INVALID"),
    ] {
        let err = get_file(&c.client, dc, &location, offset, limit)
            .await
            .unwrap_err();
        assert_eq!(rpc_name(&err), error, "offset {offset} limit {limit}");
    }
    // The end of the file comes back short, and past it nothing.
    let tail = get_file(&c.client, dc, &location, 2 * PART as i64, 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(tail, data[2 * PART..]);
    let past = get_file(&c.client, dc, &location, 4 * PART as i64, PART as i32)
        .await
        .unwrap();
    assert!(past.is_empty());
}

#[tokio::test]
async fn file_references_expire_and_a_fresh_lookup_renews_them() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let (peer, channel) = user_channel(&c.client, channel_id(&server)).await;
    let file = upload(&c.client, &bytes(8, 5000), PART, false).await;
    let msg = sent_id(
        &send_document(&c.client, &peer, file, "r.bin", random_id())
            .await
            .unwrap(),
    );
    let (location, dc, _) = document_of(&c.client, &channel, msg).await.unwrap();
    server.advance(fakegram::rules::DEFAULT_FILE_REFERENCE_LIFETIME);
    let err = get_file(&c.client, dc, &location, 0, 4096)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_REFERENCE_EXPIRED");
    let (fresh, dc, _) = document_of(&c.client, &channel, msg).await.unwrap();
    assert_eq!(
        get_file(&c.client, dc, &fresh, 0, 8192)
            .await
            .unwrap()
            .len(),
        5000
    );
}

#[tokio::test]
async fn files_in_another_data_centre_need_the_authorization_copied_there() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::Bot));
    let (peer, channel) = bot_channel(&c.client, channel_id(&server)).await;
    server.set_file_dc(Some(4));
    let data = bytes(9, PART + 3);
    let file = upload(&c.client, &data, PART, false).await;
    let msg = sent_id(
        &send_document(&c.client, &peer, file, "dc4.bin", random_id())
            .await
            .unwrap(),
    );
    let (location, dc, _) = document_of(&c.client, &channel, msg).await.unwrap();
    assert_eq!(dc, 4, "the document says where it is");
    // Asked at home: FILE_MIGRATE_4.
    let err = get_file(&c.client, 2, &location, 0, PART as i32)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_MIGRATE_4");
    // In DC 4 the session's key is not signed in yet.
    let err = get_file(&c.client, 4, &location, 0, PART as i32)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "AUTH_KEY_UNREGISTERED");
    let tl::enums::auth::ExportedAuthorization::Authorization(exported) = bounded(
        c.client
            .invoke(&tl::functions::auth::ExportAuthorization { dc_id: 4 }),
    )
    .await
    .unwrap();
    // Bytes meant for DC 4 are refused elsewhere, and work once in DC 4.
    let import = tl::functions::auth::ImportAuthorization {
        id: exported.id,
        bytes: exported.bytes,
    };
    let err = bounded(c.client.invoke_in_dc(3, &import))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "AUTH_BYTES_INVALID");
    bounded(c.client.invoke_in_dc(4, &import)).await.unwrap();
    let mut back = get_file(&c.client, 4, &location, 0, PART as i32)
        .await
        .unwrap();
    back.extend(
        get_file(&c.client, 4, &location, PART as i64, PART as i32)
            .await
            .unwrap(),
    );
    assert!(back == data);
    // Files that move later answer FILE_MIGRATE with their new home.
    server.move_files(3);
    let err = get_file(&c.client, 4, &location, 0, PART as i32)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_MIGRATE_3");
}
