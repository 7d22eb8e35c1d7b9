//! Connecting: pre-seeded keys, the service messages, sessions, what the fake refuses to
//! do (the key exchange, transport error -404), the state directory, the binary.

use std::time::Duration;

use fakegram::{AccountKind, Config, Server};
use grammers_client::tl;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{
    bounded, bytes, client, random_id, send_document, send_text, sent_id, upload, user_channel,
};

#[tokio::test]
async fn a_user_session_connects_and_knows_itself() {
    let server = Server::start(Config::default()).await.unwrap();
    let creds = server.credentials(AccountKind::User);
    assert!(creds.session.starts_with("tgferry-session-v1:"));
    let c = client(&creds);
    let users = bounded(c.client.invoke(&tl::functions::users::GetUsers {
        id: vec![tl::enums::InputUser::UserSelf],
    }))
    .await
    .unwrap();
    let Some(tl::enums::User::User(me)) = users.first() else {
        panic!("no user: {users:?}")
    };
    assert!(me.is_self && !me.bot);
    assert_eq!(me.id, server.account(AccountKind::User));
    // grammers opens each connection with invokeWithLayer(initConnection(help.getConfig)),
    // its first message meets a salt the server did not issue (bad_server_salt), it asks
    // for future salts, and goes on: all on one connection.
    assert_eq!(server.requests("help.getConfig"), 1);
    assert_eq!(server.requests("users.getUsers"), 1);
    assert_eq!(server.stats().connections, 1);
    let state = bounded(c.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap();
    assert!(matches!(state, tl::enums::updates::State::State(_)));
}

#[tokio::test]
async fn many_requests_in_flight_share_one_connection_in_containers() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let client = c.client.clone();
        calls.spawn(async move { client.invoke(&tl::functions::updates::GetState {}).await });
    }
    let answers = bounded(calls.join_all()).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(server.requests("updates.getState"), 50);
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test]
async fn large_requests_arrive_gzipped_and_answers_are_read() {
    // grammers gzips every request of 512 bytes or more (a text message of 2000
    // characters here); the fake inflates it and answers with a gzip_packed result
    // (the getMessages answer) that grammers inflates in turn.
    let server = Server::start(Config::default()).await.unwrap();
    let creds = server.credentials(AccountKind::User);
    let c = client(&creds);
    let fakegram::Chat::Channel(id) = server.channel() else {
        unreachable!()
    };
    let (peer, channel) = user_channel(&c.client, id).await;
    let text = "tgferry ".repeat(250);
    let sent = send_text(&c.client, &peer, &text, random_id())
        .await
        .unwrap();
    let msg = sent_id(&sent);
    let got = bounded(c.client.invoke(&tl::functions::channels::GetMessages {
        channel,
        id: vec![tl::types::InputMessageId { id: msg }.into()],
    }))
    .await
    .unwrap();
    let m = crate::common::messages_of(got);
    let Some(tl::enums::Message::Message(m)) = m.first() else {
        panic!("{m:?}")
    };
    assert_eq!(m.message, text.trim());
    assert_eq!(server.messages(server.channel())[0].text, text.trim());
}

#[tokio::test]
async fn a_client_without_a_key_is_closed_never_told_404() {
    // The key exchange cannot be faked (Telegram's RSA keys are built into clients), and
    // transport error -404 would make grammers start one: the fake closes instead.
    let server = Server::start(Config::default()).await.unwrap();
    let addr = server.addrs()[&2];
    for key_id in [0i64, 0x1234_5678] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut payload = key_id.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0u8; 40]);
        let mut packet = Vec::new();
        packet.extend_from_slice(&((payload.len() + 12) as i32).to_le_bytes());
        packet.extend_from_slice(&0i32.to_le_bytes());
        packet.extend_from_slice(&payload);
        let crc = {
            // CRC32 (IEEE) of length, sequence number and payload.
            let mut crc = 0xffff_ffffu32;
            for b in &packet {
                crc ^= u32::from(*b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        };
        packet.extend_from_slice(&crc.to_le_bytes());
        tcp.write_all(&packet).await.unwrap();
        let mut answer = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without a word (not -404): {answer:?}");
    }
}

#[tokio::test]
async fn the_state_directory_keeps_chats_keys_and_ports_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: Some(dir.path().to_owned()),
        ..Config::default()
    };
    let data = bytes(3, 700 * 1024);
    let (creds, msg) = {
        let server = Server::start(config.clone()).await.unwrap();
        let creds = server.credentials(AccountKind::User);
        let c = client(&creds);
        let fakegram::Chat::Channel(id) = server.channel() else {
            unreachable!()
        };
        let (peer, _) = user_channel(&c.client, id).await;
        let file = upload(&c.client, &data, 512 * 1024, false).await;
        let msg = sent_id(
            &send_document(&c.client, &peer, file, "kept.bin", random_id())
                .await
                .unwrap(),
        );
        drop(c);
        server.shutdown().await;
        (creds, msg)
    };
    let server = Server::start(config).await.unwrap();
    let again = server.credentials(AccountKind::User);
    assert_eq!(again.session, creds.session, "same keys, same ports");
    let messages = server.messages(server.channel());
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, msg);
    assert_eq!(server.document_bytes(server.channel(), msg).unwrap(), data);
    // The old session still works against the restarted server.
    let c = client(&creds);
    let fakegram::Chat::Channel(id) = server.channel() else {
        unreachable!()
    };
    let (_, channel) = user_channel(&c.client, id).await;
    let (location, dc, size) = crate::common::document_of(&c.client, &channel, msg)
        .await
        .unwrap();
    assert_eq!(size as usize, data.len());
    let head = crate::common::get_file(&c.client, dc, &location, 0, 4096)
        .await
        .unwrap();
    assert_eq!(head, data[..4096]);
}

#[test]
fn the_binary_prints_the_variables_on_its_first_line() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fakegram"))
        .args(["--listen", "127.0.0.1", "--bot", "--conn-rate", "4.6MiB"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = line.trim();
    assert!(line.starts_with("export "), "{line}");
    let vars: Vec<(&str, &str)> = line["export ".len()..]
        .split(' ')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "TGFERRY_TG_API_ID",
            "TGFERRY_TG_API_HASH",
            "TGFERRY_TG_SESSION",
            "TGFERRY_TG_CHAT"
        ]
    );
    assert!(vars[0].1.parse::<i32>().unwrap() > 0);
    assert_eq!(vars[1].1.len(), 32);
    assert!(vars[2].1.starts_with("tgferry-session-v1:"));
    assert!(vars[3].1.starts_with("-100"));
    // Nothing in the line needs shell quoting.
    assert!(
        line.chars()
            .all(|c| c.is_ascii_alphanumeric() || " =_-:".contains(c)),
        "{line}"
    );
}
