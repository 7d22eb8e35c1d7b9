//! What a source reading a chat's media meets: the channel's update log through
//! updates.getChannelDifference, photos and their sizes, videos, music and voice notes,
//! forwards and edits of media, chats seeded from a folder, takeout sessions, and faults
//! on the reads.

use std::time::Duration;

use fakegram::{AccountKind, Chat, Config, Fault, MediaKind, Server};
use grammers_client::Client;
use grammers_client::sender::InvocationError;
use grammers_client::tl;

use crate::common::{bot_channel, bounded, bytes, client, get_file, messages_of, rpc_name};

fn channel_id(chat: Chat) -> i64 {
    let Chat::Channel(id) = chat else {
        panic!("not a channel: {chat:?}")
    };
    id
}

/// The channel as the user names it (its access hash from the user's dialogs).
async fn user_input(c: &Client, id: i64) -> tl::enums::InputChannel {
    crate::common::user_channel(c, id).await.1
}

async fn channel_pts(c: &Client, channel: &tl::enums::InputChannel) -> i32 {
    let full = bounded(c.invoke(&tl::functions::channels::GetFullChannel {
        channel: channel.clone(),
    }))
    .await
    .unwrap();
    let tl::enums::messages::ChatFull::Full(full) = full;
    let tl::enums::ChatFull::ChannelFull(full) = full.full_chat else {
        panic!("not a channel's full info")
    };
    full.pts
}

async fn difference(
    c: &Client,
    channel: &tl::enums::InputChannel,
    pts: i32,
    limit: i32,
) -> Result<tl::enums::updates::ChannelDifference, InvocationError> {
    bounded(c.invoke(&tl::functions::updates::GetChannelDifference {
        force: false,
        channel: channel.clone(),
        filter: tl::enums::ChannelMessagesFilter::Empty,
        pts,
        limit,
    }))
    .await
}

fn message_ids(messages: &[tl::enums::Message]) -> Vec<i32> {
    messages
        .iter()
        .map(|m| match m {
            tl::enums::Message::Message(m) => m.id,
            tl::enums::Message::Service(m) => m.id,
            tl::enums::Message::Empty(m) => m.id,
        })
        .collect()
}

/// channels.getMessages of one id: the message.
async fn message(c: &Client, channel: &tl::enums::InputChannel, id: i32) -> tl::types::Message {
    let m = bounded(c.invoke(&tl::functions::channels::GetMessages {
        channel: channel.clone(),
        id: vec![tl::types::InputMessageId { id }.into()],
    }))
    .await
    .unwrap();
    match messages_of(m).pop() {
        Some(tl::enums::Message::Message(m)) => m,
        other => panic!("no message {id}: {other:?}"),
    }
}

fn document_of(m: &tl::types::Message) -> (tl::types::MessageMediaDocument, tl::types::Document) {
    let Some(tl::enums::MessageMedia::Document(md)) = m.media.clone() else {
        panic!("not a document: {:?}", m.media)
    };
    let Some(tl::enums::Document::Document(d)) = md.document.clone() else {
        panic!("no document")
    };
    (md, d)
}

fn photo_of(m: &tl::types::Message) -> tl::types::Photo {
    let Some(tl::enums::MessageMedia::Photo(mp)) = m.media.clone() else {
        panic!("not a photo: {:?}", m.media)
    };
    let Some(tl::enums::Photo::Photo(p)) = mp.photo else {
        panic!("no photo")
    };
    p
}

fn photo_location(p: &tl::types::Photo, thumb: &str) -> tl::enums::InputFileLocation {
    tl::types::InputPhotoFileLocation {
        id: p.id,
        access_hash: p.access_hash,
        file_reference: p.file_reference.clone(),
        thumb_size: thumb.into(),
    }
    .into()
}

/// Downloads a whole file in 128 KiB requests.
async fn download(
    c: &Client,
    dc: i32,
    location: &tl::enums::InputFileLocation,
    size: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let got = get_file(c, dc, location, out.len() as i64, 128 * 1024)
            .await
            .unwrap();
        let last = got.len() < 128 * 1024;
        out.extend(got);
        if last || out.len() >= size {
            return out;
        }
    }
}

#[tokio::test]
async fn a_channel_difference_replays_new_edited_and_deleted_messages() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    let kept = server.post_media(chat, "kept.bin", &bytes(1, 5000));
    let gone = server.post_media(chat, "gone.bin", &bytes(2, 5000));
    let start = channel_pts(&c.client, &channel).await;

    // Nothing new: channelDifferenceEmpty, final, at the same pts.
    let tl::enums::updates::ChannelDifference::Empty(empty) =
        difference(&c.client, &channel, start, 100).await.unwrap()
    else {
        panic!("not empty")
    };
    assert!(empty.r#final && empty.timeout.is_some());
    assert_eq!(empty.pts, start);
    let ahead = difference(&c.client, &channel, start + 1, 100)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&ahead), "PERSISTENT_TIMESTAMP_INVALID");

    let fresh = server.post_media(chat, "fresh.bin", &bytes(3, 5000));
    server.edit_media(chat, kept, "kept-v2.bin", &bytes(4, 6000));
    server.edit_media(chat, fresh, "fresh-v2.bin", &bytes(5, 7000));
    server.delete_message(chat, gone);
    let fleeting = server.post_media(chat, "fleeting.bin", &bytes(6, 100));
    server.delete_message(chat, fleeting);
    let end = channel_pts(&c.client, &channel).await;
    assert_eq!(end, start + 6, "every change moves pts by one");

    let tl::enums::updates::ChannelDifference::Difference(d) =
        difference(&c.client, &channel, start, 100).await.unwrap()
    else {
        panic!("not a difference")
    };
    assert!(d.r#final);
    assert_eq!(d.pts, end);
    // The message posted since, with its current (edited) media; the one posted and
    // deleted since is only in its delete.
    assert_eq!(message_ids(&d.new_messages), [fresh]);
    let tl::enums::Message::Message(m) = &d.new_messages[0] else {
        unreachable!()
    };
    let (_, doc) = document_of(m);
    assert_eq!(Some(doc.id), server.media_id(chat, fresh));
    assert_eq!(doc.size, 7000);
    let mut seen = Vec::new();
    for u in &d.other_updates {
        match u {
            tl::enums::Update::EditChannelMessage(e) => {
                let tl::enums::Message::Message(m) = &e.message else {
                    panic!("an empty edit")
                };
                assert_eq!(document_of(m).1.size, 6000);
                assert!(m.edit_date.is_some());
                seen.push(format!("edit {} at {}", m.id, e.pts));
            }
            tl::enums::Update::DeleteChannelMessages(del) => {
                assert_eq!(del.channel_id, channel_id(chat));
                assert_eq!(del.pts_count, 1);
                seen.push(format!("delete {:?} at {}", del.messages, del.pts));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            format!("edit {kept} at {}", start + 2),
            format!("delete [{gone}] at {}", start + 4),
            format!("delete [{fleeting}] at {}", start + 6),
        ]
    );
    assert!(
        d.chats
            .iter()
            .any(|ch| matches!(ch, tl::enums::Chat::Channel(x) if x.id == channel_id(chat)))
    );

    // The bot, a member, reads the same difference (access hash 0); from the log's
    // middle it gets only what came after.
    let b = client(&server.credentials(AccountKind::Bot));
    let (_, bot_input) = bot_channel(&b.client, channel_id(chat)).await;
    let tl::enums::updates::ChannelDifference::Difference(d) =
        difference(&b.client, &bot_input, start + 4, 100)
            .await
            .unwrap()
    else {
        panic!("not a difference")
    };
    assert!(d.new_messages.is_empty());
    assert_eq!(d.other_updates.len(), 1, "{:?}", d.other_updates);

    // A filtered difference is refused, as is a channel the caller is not in.
    let filtered = bounded(
        c.client
            .invoke(&tl::functions::updates::GetChannelDifference {
                force: false,
                channel: channel.clone(),
                filter: tl::types::ChannelMessagesFilter {
                    exclude_new_messages: false,
                    ranges: Vec::new(),
                }
                .into(),
                pts: start,
                limit: 100,
            }),
    )
    .await
    .unwrap_err();
    assert_eq!(rpc_name(&filtered), "RANGES_INVALID");
    let private = server.create_channel("no bot here", None, false);
    let hash = match user_input(&c.client, channel_id(private)).await {
        tl::enums::InputChannel::Channel(ch) => ch.access_hash,
        other => panic!("{other:?}"),
    };
    let outsider: tl::enums::InputChannel = tl::types::InputChannel {
        channel_id: channel_id(private),
        access_hash: hash,
    }
    .into();
    let err = difference(&b.client, &outsider, 1, 100).await.unwrap_err();
    assert_eq!(rpc_name(&err), "CHANNEL_PRIVATE");
}

#[tokio::test]
async fn more_updates_than_the_limit_are_too_long_for_a_user_not_for_a_bot() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    let start = channel_pts(&c.client, &channel).await;
    let mut last = 0;
    for i in 0..101 {
        last = server.post_as_user(chat, &format!("text {i}"));
    }
    // A user's limit is capped at 100: 101 updates are too long, whatever it asks.
    let tl::enums::updates::ChannelDifference::TooLong(long) =
        difference(&c.client, &channel, start, 1000).await.unwrap()
    else {
        panic!("not too long")
    };
    assert!(long.r#final);
    let tl::enums::Dialog::Dialog(dialog) = &long.dialog else {
        panic!("a folder")
    };
    assert_eq!(dialog.pts, Some(start + 101));
    assert_eq!(dialog.top_message, last);
    assert_eq!(message_ids(&long.messages)[0], last, "newest first");
    assert!(!long.chats.is_empty());
    // Exactly the limit is not too long.
    let tl::enums::updates::ChannelDifference::Difference(d) =
        difference(&c.client, &channel, start + 1, 100)
            .await
            .unwrap()
    else {
        panic!("not a difference")
    };
    assert_eq!(d.new_messages.len(), 100);
    // A bot may ask for up to 100000.
    let b = client(&server.credentials(AccountKind::Bot));
    let (_, bot_input) = bot_channel(&b.client, channel_id(chat)).await;
    let tl::enums::updates::ChannelDifference::Difference(d) =
        difference(&b.client, &bot_input, start, 1000)
            .await
            .unwrap()
    else {
        panic!("not a difference")
    };
    assert_eq!(d.new_messages.len(), 101);
    assert_eq!(d.pts, start + 101);
}

#[tokio::test]
async fn bots_read_by_id_and_difference_but_not_history() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let id = server.post_media(chat, "a.bin", &bytes(1, 10));
    let b = client(&server.credentials(AccountKind::Bot));
    let (peer, bot_input) = bot_channel(&b.client, channel_id(chat)).await;
    let history = |c: Client, peer: tl::enums::InputPeer| async move {
        bounded(c.invoke(&crate::common::history(&peer))).await
    };
    let err = history(b.client.clone(), peer).await.unwrap_err();
    assert_eq!(rpc_name(&err), "BOT_METHOD_INVALID");
    assert_eq!(message(&b.client, &bot_input, id).await.id, id);
    let c = client(&server.credentials(AccountKind::User));
    let (user_peer, _) = crate::common::user_channel(&c.client, channel_id(chat)).await;
    let got = messages_of(history(c.client.clone(), user_peer).await.unwrap());
    assert_eq!(message_ids(&got), [id]);
}

#[tokio::test]
async fn a_photo_comes_whole_at_its_largest_size_and_smaller_at_m() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let mut image = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    image.extend(2000u32.to_be_bytes());
    image.extend(1000u32.to_be_bytes());
    image.extend(bytes(7, 300_000));
    let id = server.post_media(chat, "picture.png", &image);
    let view = server.messages(chat).pop().unwrap();
    assert_eq!(view.kind, Some(MediaKind::Photo));
    assert_eq!(view.photo.as_ref().unwrap().1, image.len() as u64);
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    let photo = photo_of(&message(&c.client, &channel, id).await);
    assert_eq!(Some(photo.id), server.media_id(chat, id));
    let types: Vec<String> = photo
        .sizes
        .iter()
        .map(|s| match s {
            tl::enums::PhotoSize::PhotoStrippedSize(s) => format!("stripped {}", s.r#type),
            tl::enums::PhotoSize::Size(s) => format!("size {} {}x{}", s.r#type, s.w, s.h),
            tl::enums::PhotoSize::Progressive(s) => {
                assert_eq!(*s.sizes.last().unwrap() as usize, image.len());
                assert!(s.sizes.windows(2).all(|w| w[0] < w[1]));
                format!("progressive {} {}x{}", s.r#type, s.w, s.h)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        types,
        ["stripped i", "size m 320x160", "progressive y 2000x1000"]
    );
    let small_size = photo
        .sizes
        .iter()
        .find_map(|s| match s {
            tl::enums::PhotoSize::Size(s) => Some(s.size as usize),
            _ => None,
        })
        .unwrap();
    let dc = photo.dc_id;
    let full = download(&c.client, dc, &photo_location(&photo, "y"), image.len()).await;
    assert!(full == image, "the largest size is the posted bytes");
    let small = download(&c.client, dc, &photo_location(&photo, "m"), small_size).await;
    assert_eq!(small.len(), small_size);
    assert!(small.len() < image.len() && small[..] != image[..small.len()]);
    assert_eq!(
        server.bytes_served(photo.id),
        (image.len() + small_size) as u64
    );
    // Other sizes are not files; alignment, data centre and reference rules hold.
    let err = get_file(&c.client, dc, &photo_location(&photo, "x"), 0, 4096)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "LOCATION_INVALID");
    let err = get_file(&c.client, dc, &photo_location(&photo, "y"), 100, 4096)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "OFFSET_INVALID");
    server.advance(Duration::from_secs(2 * 3600));
    let err = get_file(&c.client, dc, &photo_location(&photo, "y"), 0, 4096)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_REFERENCE_EXPIRED");
    let fresh = photo_of(&message(&c.client, &channel, id).await);
    let head = get_file(&c.client, dc, &photo_location(&fresh, "y"), 0, 4096)
        .await
        .unwrap();
    assert_eq!(head, image[..4096]);
    server.move_files(4);
    let err = get_file(&c.client, dc, &photo_location(&fresh, "y"), 0, 4096)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FILE_MIGRATE_4");
    assert_eq!(photo_of(&message(&c.client, &channel, id).await).dc_id, 4);
}

#[tokio::test]
async fn videos_music_and_voice_notes_carry_their_attributes() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    let video = server.post_media(chat, "clip.MP4", &bytes(1, 100));
    let song = server.post_media(chat, "song.flac", &bytes(2, 100));
    let voice = server.post_media(chat, "note.opus", &bytes(3, 100));
    let plain = server.post_media(chat, "notes.txt", &bytes(4, 100));
    let describe = |m: &tl::types::Message| {
        let (md, d) = document_of(m);
        let attrs: Vec<String> = d
            .attributes
            .iter()
            .map(|a| match a {
                tl::enums::DocumentAttribute::Filename(f) => format!("name {}", f.file_name),
                tl::enums::DocumentAttribute::Video(_) => "video".into(),
                tl::enums::DocumentAttribute::Audio(a) => format!("audio voice={}", a.voice),
                other => format!("{other:?}"),
            })
            .collect();
        (md.video, md.voice, d.mime_type, attrs)
    };
    let got = describe(&message(&c.client, &channel, video).await);
    assert_eq!(
        got,
        (
            true,
            false,
            "video/mp4".into(),
            vec!["video".into(), "name clip.MP4".into()]
        )
    );
    let got = describe(&message(&c.client, &channel, song).await);
    assert_eq!(
        got,
        (
            false,
            false,
            "audio/flac".into(),
            vec!["audio voice=false".into(), "name song.flac".into()]
        )
    );
    // A voice note has no file name, as Telegram's own.
    let got = describe(&message(&c.client, &channel, voice).await);
    assert_eq!(
        got,
        (
            false,
            true,
            "audio/ogg".into(),
            vec!["audio voice=true".into()]
        )
    );
    let got = describe(&message(&c.client, &channel, plain).await);
    assert_eq!(
        got,
        (
            false,
            false,
            "text/plain".into(),
            vec!["name notes.txt".into()]
        )
    );
    let kinds: Vec<Option<MediaKind>> = server.messages(chat).iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            Some(MediaKind::Video),
            Some(MediaKind::Audio),
            Some(MediaKind::Voice),
            Some(MediaKind::File)
        ]
    );
}

#[tokio::test]
async fn a_forward_keeps_the_media_and_says_where_it_came_from() {
    let server = Server::start(Config::default()).await.unwrap();
    let source = server.channel();
    let target = server.create_channel("copies", None, true);
    let original = server.post_media(source, "pic.jpg", &bytes(9, 9000));
    let copy = server.forward(source, original, target);
    assert_eq!(
        server.media_id(target, copy),
        server.media_id(source, original)
    );
    assert_eq!(server.messages(target)[0].forward_of, Some(original));
    let c = client(&server.credentials(AccountKind::User));
    let a = user_input(&c.client, channel_id(source)).await;
    let b = user_input(&c.client, channel_id(target)).await;
    let first = photo_of(&message(&c.client, &a, original).await);
    let m = message(&c.client, &b, copy).await;
    let second = photo_of(&m);
    assert_eq!(
        (first.id, first.access_hash),
        (second.id, second.access_hash)
    );
    let Some(tl::enums::MessageFwdHeader::Header(h)) = m.fwd_from else {
        panic!("no forward header")
    };
    assert_eq!(h.channel_post, Some(original));
    assert!(
        matches!(h.from_id, Some(tl::enums::Peer::Channel(p)) if p.channel_id == channel_id(source))
    );
    // A duplicate's bytes, downloaded through either message, count once per download
    // under the one photo id.
    let data = download(&c.client, second.dc_id, &photo_location(&second, "y"), 9000).await;
    assert_eq!(data, bytes(9, 9000));
    assert_eq!(server.bytes_served(first.id), 9000);
}

#[tokio::test]
async fn a_seeded_chat_holds_every_file_in_path_order_a_second_apart() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("b/song.mp3", 3usize),
        ("a.jpg", 1),
        ("b/a/clip.mp4", 2),
        ("Z.txt", 4),
        ("b-note.opus", 5),
    ];
    for (path, seed) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes(seed as u8, 1000 * seed)).unwrap();
    }
    let server = Server::start(Config::default()).await.unwrap();
    let extra = server.add_bot(false);
    let chat = server.seed_chat("seeded_vault", dir.path()).unwrap();
    assert_eq!(server.find_channel("@Seeded_Vault"), Some(chat));
    let messages = server.messages(chat);
    let names: Vec<String> = messages
        .iter()
        .map(|m| {
            m.document
                .as_ref()
                .or(m.photo.as_ref())
                .map(|d| d.0.clone())
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        ["Z.txt", "a.jpg", "b-note.opus", "clip.mp4", "song.mp3"]
    );
    assert!(messages.windows(2).all(|w| w[1].date == w[0].date + 1));
    assert_eq!(
        server.document_bytes(chat, messages[0].id).unwrap(),
        bytes(4, 4000)
    );
    // Every bot administers it: the added one (not an admin of the first channel) reads
    // its difference with access hash 0.
    let b = client(&extra);
    let (_, input) = bot_channel(&b.client, channel_id(chat)).await;
    let tl::enums::updates::ChannelDifference::Difference(d) =
        difference(&b.client, &input, 1, 100).await.unwrap()
    else {
        panic!("not a difference")
    };
    assert_eq!(d.new_messages.len(), 5);
    // The user finds it by its username.
    let c = client(&server.credentials(AccountKind::User));
    let resolved = bounded(c.client.invoke(&tl::functions::contacts::ResolveUsername {
        username: "seeded_vault".into(),
        referer: None,
    }))
    .await
    .unwrap();
    let tl::enums::contacts::ResolvedPeer::Peer(r) = resolved;
    assert!(matches!(r.peer, tl::enums::Peer::Channel(p) if p.channel_id == channel_id(chat)));
    // Refusals name the folder.
    let missing = dir.path().join("missing");
    let err = server.seed_chat("other_vault", &missing).unwrap_err();
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
    let err = server.seed_chat("seeded_vault", dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(server.seed_chat("no", dir.path()).is_err());
}

#[tokio::test]
async fn seeded_chats_and_their_logs_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("one.png"), bytes(1, 5000)).unwrap();
    let config = Config {
        state_dir: Some(state.path().to_owned()),
        ..Config::default()
    };
    let chat = {
        let server = Server::start(config.clone()).await.unwrap();
        let chat = server.seed_chat("kept_vault", files.path()).unwrap();
        let id = server.messages(chat)[0].id;
        server.edit_media(chat, id, "two.mp4", &bytes(2, 100));
        server.shutdown().await;
        chat
    };
    let server = Server::start(config.clone()).await.unwrap();
    assert_eq!(server.find_channel("kept_vault"), Some(chat));
    let view = &server.messages(chat)[0];
    assert_eq!(view.kind, Some(MediaKind::Video));
    assert!(view.edit_date.is_some());
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    let tl::enums::updates::ChannelDifference::Difference(d) =
        difference(&c.client, &channel, 1, 100).await.unwrap()
    else {
        panic!("not a difference")
    };
    assert_eq!((d.pts, d.new_messages.len()), (3, 1));
    drop(c);
    server.shutdown().await;
    // A state file written before the log existed still loads; a difference from before
    // what it remembers is too long.
    let path = state.path().join("world.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for ch in json["channels"].as_object_mut().unwrap().values_mut() {
        ch.as_object_mut().unwrap().remove("log");
    }
    json.as_object_mut().unwrap().remove("takeouts");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let server = Server::start(config).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    assert!(matches!(
        difference(&c.client, &channel, 1, 100).await.unwrap(),
        tl::enums::updates::ChannelDifference::TooLong(_)
    ));
    assert!(matches!(
        difference(&c.client, &channel, 3, 100).await.unwrap(),
        tl::enums::updates::ChannelDifference::Empty(_)
    ));
}

#[tokio::test]
async fn requests_inside_a_takeout_are_counted_and_need_an_open_one() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let id = server.post_media(chat, "a.bin", &bytes(1, 10));
    let c = client(&server.credentials(AccountKind::User));
    let channel = user_input(&c.client, channel_id(chat)).await;
    let init = tl::functions::account::InitTakeoutSession {
        contacts: false,
        message_users: false,
        message_chats: false,
        message_megagroups: false,
        message_channels: true,
        files: true,
        file_max_size: Some(4 << 30),
    };
    let tl::enums::account::Takeout::Takeout(takeout) =
        bounded(c.client.invoke(&init)).await.unwrap();
    let get = |takeout_id: i64| {
        let c = c.client.clone();
        let channel = channel.clone();
        async move {
            bounded(c.invoke(&tl::functions::InvokeWithTakeout {
                takeout_id,
                query: tl::functions::channels::GetMessages {
                    channel,
                    id: vec![tl::types::InputMessageId { id }.into()],
                },
            }))
            .await
        }
    };
    assert_eq!(
        message_ids(&messages_of(get(takeout.id).await.unwrap())),
        [id]
    );
    assert_eq!(server.stats().takeout_requests, 1);
    assert_eq!(
        server.requests("channels.getMessages"),
        1,
        "counted as itself"
    );
    let err = get(takeout.id ^ 2).await.unwrap_err();
    assert_eq!(rpc_name(&err), "TAKEOUT_INVALID");
    let done = bounded(c.client.invoke(&tl::functions::InvokeWithTakeout {
        takeout_id: takeout.id,
        query: tl::functions::account::FinishTakeoutSession { success: true },
    }))
    .await
    .unwrap();
    assert!(done);
    let err = get(takeout.id).await.unwrap_err();
    assert_eq!(rpc_name(&err), "TAKEOUT_INVALID");
    assert_eq!(server.stats().takeout_requests, 2);
    // Bots have no takeout.
    let b = client(&server.credentials(AccountKind::Bot));
    let err = bounded(b.client.invoke(&init)).await.unwrap_err();
    assert_eq!(rpc_name(&err), "BOT_METHOD_INVALID");
}

#[tokio::test]
async fn flood_waits_hit_the_reads_a_source_makes() {
    let server = Server::start(Config::default()).await.unwrap();
    let chat = server.channel();
    let id = server.post_media(chat, "p.jpg", &bytes(1, 5000));
    let c = client(&server.credentials(AccountKind::User));
    let (peer, channel) = crate::common::user_channel(&c.client, channel_id(chat)).await;
    let photo = photo_of(&message(&c.client, &channel, id).await);
    let pts = channel_pts(&c.client, &channel).await;
    for (method, seconds) in [
        ("upload.getFile", 11),
        ("updates.getChannelDifference", 12),
        ("channels.getMessages", 13),
        ("messages.getHistory", 14),
    ] {
        server.inject(Fault::flood_wait(Some(method), seconds));
    }
    let err = get_file(
        &c.client,
        photo.dc_id,
        &photo_location(&photo, "y"),
        0,
        4096,
    )
    .await
    .unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_11");
    let err = difference(&c.client, &channel, pts, 100).await.unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_12");
    let err = bounded(c.client.invoke(&tl::functions::channels::GetMessages {
        channel: channel.clone(),
        id: vec![tl::types::InputMessageId { id }.into()],
    }))
    .await
    .unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_13");
    let err = bounded(c.client.invoke(&crate::common::history(&peer)))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_14");
    assert_eq!(server.pending_faults(), 0);
    assert_eq!(server.stats().flood_waits.len(), 4);
}

#[test]
fn the_binary_seeds_chats_once_and_refuses_bad_values() {
    use std::io::BufRead as _;
    let files = tempfile::tempdir().unwrap();
    for (name, seed) in [("a.jpg", 1u8), ("b.bin", 2), ("c/d.opus", 3)] {
        let p = files.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes(seed, 100)).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let seed = format!("media_vault={}", files.path().display());
    let run = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fakegram"))
            .args(["--listen", "127.0.0.1", "--seed-chat", &seed, "--state"])
            .arg(state.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = [String::new(), String::new()];
        for line in &mut lines {
            out.read_line(line).unwrap();
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    };
    let [env, seeded] = run();
    assert!(env.starts_with("export "), "{env}");
    assert_eq!(
        seeded.trim(),
        format!(
            "seeded @media_vault: 3 media messages from {}",
            files.path().display()
        )
    );
    let [_, kept] = run();
    assert!(kept.starts_with("kept @media_vault"), "{kept}");
    for bad in [
        "media_vault".to_owned(),
        format!("4vault={}", files.path().display()),
        format!("media_vault={}", files.path().join("missing").display()),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fakegram"))
            .args(["--seed-chat", &bad])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--seed-chat"), "{err}");
        let shown = bad
            .split_once('=')
            .map_or(bad.as_str(), |(n, d)| if n == "4vault" { n } else { d });
        assert!(err.contains(shown), "{err}");
    }
}
