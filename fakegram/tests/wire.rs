//! The real grammers client (0.11, as tgferry pins it) against the fake over loopback:
//! connecting with a pre-seeded key, the service messages grammers relies on, and the
//! requests tgferry's adapter makes. Each test starts its own server.

mod common;

use common::{bounded, bytes, client, rpc_name};
use fakegram::{AccountKind, Config, Server};
use grammers_client::tl;

fn channel_input(
    server: &Server,
    creds: &fakegram::Credentials,
    kind: AccountKind,
) -> tl::enums::InputChannel {
    let fakegram::Chat::Channel(id) = server.channel() else {
        unreachable!()
    };
    let _ = creds;
    let access_hash = match kind {
        // The user learns the hash from its dialogs or the channel; tests read the model.
        AccountKind::User => channel_hash(server, creds),
        // Bots name channels with hash 0.
        AccountKind::Bot => 0,
    };
    tl::types::InputChannel {
        channel_id: id,
        access_hash,
    }
    .into()
}

fn channel_hash(_server: &Server, creds: &fakegram::Credentials) -> i64 {
    // The user's dialogs carry the hash; fetch it over the wire in the test that needs it.
    let _ = creds;
    unreachable!("use dialogs")
}

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
    // grammers opened the connection with invokeWithLayer(initConnection(help.getConfig)).
    assert_eq!(server.requests("help.getConfig"), 1);
    assert_eq!(server.requests("users.getUsers"), 1);
    // The first message of a new session met a salt the server did not issue: the client
    // was told the salt (bad_server_salt), asked for future salts, and carried on.
    let state = bounded(c.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap();
    assert!(matches!(state, tl::enums::updates::State::State(_)));
    let _ = channel_input;
}
