//! Injected faults as grammers sees them: flood waits on any method, dropped connections
//! (grammers reconnects on the next call), replies lost after the request was carried
//! out, slow replies, and the per-connection bandwidth cap.

use std::time::{Duration, Instant};

use fakegram::{AccountKind, Chat, Config, Fault, Server};
use grammers_client::InvocationError;
use grammers_client::tl;

use crate::common::{bounded, bytes, client, random_id, rpc_name, send_text, upload, user_channel};

fn channel_id(server: &Server) -> i64 {
    let Chat::Channel(id) = server.channel() else {
        unreachable!()
    };
    id
}

#[tokio::test]
async fn a_flood_wait_of_any_length_on_any_method() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    server.inject(Fault::flood_wait(Some("updates.getState"), 86_400).after(1));
    server.inject(Fault::flood_wait(None, 7));
    // The any-method fault is queued second but matches first for users.getUsers.
    let err = bounded(c.client.invoke(&tl::functions::users::GetUsers {
        id: vec![tl::enums::InputUser::UserSelf],
    }))
    .await
    .unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_7");
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok(),
        "skipped once"
    );
    let err = bounded(c.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap_err();
    let InvocationError::Rpc(rpc) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (rpc.code, rpc.name.as_str(), rpc.value),
        (420, "FLOOD_WAIT", Some(86_400))
    );
    assert_eq!(server.pending_faults(), 0);
    assert_eq!(server.stats().flood_waits.len(), 2);
}

#[tokio::test]
async fn a_dropped_connection_fails_the_call_and_the_next_one_reconnects() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    server.inject(Fault::drop_connection(Some("updates.getState")));
    let err = bounded(c.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, InvocationError::Io(_) | InvocationError::Dropped(_)),
        "{err}"
    );
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    assert_eq!(server.stats().connections, 2);
    // The server closing every connection at once looks the same.
    server.drop_connections();
    let mut failed = false;
    for _ in 0..3 {
        match bounded(c.client.invoke(&tl::functions::updates::GetState {})).await {
            Ok(_) => break,
            Err(_) => failed = true,
        }
    }
    assert!(failed || server.stats().connections == 3);
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_lost_reply_means_the_message_was_sent_anyway() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    let (peer, _) = user_channel(&c.client, channel_id(&server)).await;
    server.inject(Fault::lose_reply(Some("messages.sendMessage")));
    let rid = random_id();
    let err = send_text(&c.client, &peer, "sent once", rid)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InvocationError::Io(_) | InvocationError::Dropped(_)),
        "{err}"
    );
    assert_eq!(server.messages(server.channel()).len(), 1, "carried out");
    // Sending again with the same random_id is refused rather than duplicated.
    let err = send_text(&c.client, &peer, "sent once", rid)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "RANDOM_ID_DUPLICATE");
    assert_eq!(server.messages(server.channel()).len(), 1);
}

#[tokio::test]
async fn a_slow_reply_arrives_late_and_others_pass_it() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    server.inject(Fault::delay(
        Some("users.getUsers"),
        Duration::from_millis(400),
    ));
    let slow = {
        let client = c.client.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = client
                .invoke(&tl::functions::users::GetUsers {
                    id: vec![tl::enums::InputUser::UserSelf],
                })
                .await;
            (r.is_ok(), start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "not held behind the slow one"
    );
    let (ok, took) = bounded(slow).await.unwrap();
    assert!(ok);
    assert!(took >= Duration::from_millis(400), "{took:?}");
}

#[tokio::test]
async fn the_bandwidth_cap_paces_each_connection() {
    const RATE: u64 = 2 * 1024 * 1024;
    let server = Server::start(Config {
        conn_rate: Some(RATE),
        ..Config::default()
    })
    .await
    .unwrap();
    let c = client(&server.credentials(AccountKind::User));
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    // Random bytes do not compress: the client sends them as they are.
    let data = bytes(11, 1024 * 1024);
    let start = Instant::now();
    upload(&c.client, &data, 512 * 1024, false).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "1 MiB at 2 MiB/s took {took:?}"
    );
    assert!(server.stats().bytes_in >= data.len() as u64);
}
