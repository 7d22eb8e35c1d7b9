//! Signing in over the wire: a user's code and two-step password (SRP), a bot's token,
//! and the errors that end a session.

use std::time::Duration;

use fakegram::{AccountKind, Config, Server};
use grammers_client::client::PasswordToken;
use grammers_client::{SignInError, tl};

use crate::common::{bounded, client, rpc_name};

#[tokio::test]
async fn a_user_logs_in_with_a_code_and_a_password_after_a_wrong_one() {
    let server = Server::start(Config {
        password: Some("correct horse".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let creds = server.login_credentials();
    assert_eq!(
        creds.home_dc, 1,
        "the login starts away from the account's data centre"
    );
    let c = client(&creds);
    let c = &c.client;
    // Not signed in yet.
    let err = bounded(c.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "AUTH_KEY_UNREGISTERED");
    // PHONE_MIGRATE_2 is followed by grammers itself.
    let token = bounded(c.request_login_code(&server.phone(), &creds.api_hash))
        .await
        .unwrap();
    assert!(matches!(
        bounded(c.sign_in(&token, "00000")).await,
        Err(SignInError::InvalidCode)
    ));
    let code = server.last_login_code().unwrap();
    let Err(SignInError::PasswordRequired(first)) = bounded(c.sign_in(&token, &code)).await else {
        panic!("the account has a password")
    };
    assert_eq!(first.hint(), Some("the fakegram password"));
    let Err(SignInError::InvalidPassword(again)) =
        bounded(c.check_password(first, "wrong horse")).await
    else {
        panic!("a wrong password is refused")
    };
    // grammers hands back the same SRP parameters; each srp_id answers one check.
    let stale = bounded(c.check_password(again, "correct horse")).await;
    let Err(SignInError::Other(e)) = stale else {
        panic!("a reused srp_id is refused, got {stale:?}")
    };
    assert_eq!(rpc_name(&e), "SRP_ID_INVALID");
    // Fresh parameters, then the right password.
    let password = bounded(c.invoke(&tl::functions::account::GetPassword {}))
        .await
        .unwrap();
    let fresh = PasswordToken::new(password.into());
    let user = bounded(c.check_password(fresh, "correct horse"))
        .await
        .unwrap();
    assert_eq!(
        user.id().bare_id_unchecked(),
        server.account(AccountKind::User)
    );
    assert!(
        bounded(c.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    assert_eq!(server.requests("auth.checkPassword"), 3);
}

#[tokio::test]
async fn bots_sign_in_with_their_token_and_too_many_sign_ins_flood() {
    let server = Server::start(Config::default()).await.unwrap();
    let creds = server.login_credentials();
    let c = client(&creds);
    let token = server.bot_token();
    let err = bounded(
        c.client
            .bot_sign_in("123:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &creds.api_hash),
    )
    .await
    .unwrap_err();
    // An unknown token is refused wherever it is tried.
    assert_eq!(rpc_name(&err), "ACCESS_TOKEN_INVALID");
    let err = bounded(
        c.client
            .bot_sign_in(&token, "0123456789abcdef0123456789abcdef"),
    )
    .await
    .unwrap_err();
    assert_eq!(rpc_name(&err), "API_ID_INVALID");
    for _ in 0..fakegram::rules::BOT_SIGNINS_PER_WINDOW {
        let bot = bounded(c.client.bot_sign_in(&token, &creds.api_hash))
            .await
            .unwrap();
        assert!(bot.is_bot());
    }
    let err = bounded(c.client.bot_sign_in(&token, &creds.api_hash))
        .await
        .unwrap_err();
    let name = rpc_name(&err);
    assert!(name.starts_with("FLOOD_WAIT_"), "{name}");
    assert_eq!(
        server.stats().flood_waits.last().unwrap().0,
        "auth.importBotAuthorization"
    );
    server.advance(Duration::from_secs(
        fakegram::rules::BOT_SIGNIN_WINDOW as u64,
    ));
    assert!(
        bounded(c.client.bot_sign_in(&token, &creds.api_hash))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_duplicated_session_is_dead() {
    let server = Server::start(Config::default()).await.unwrap();
    let c = client(&server.credentials(AccountKind::User));
    assert!(
        bounded(c.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
    server.duplicate_session(AccountKind::User);
    let err = bounded(c.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "AUTH_KEY_DUPLICATED");
    // The bot's session is another one.
    let bot = client(&server.credentials(AccountKind::Bot));
    assert!(
        bounded(bot.client.invoke(&tl::functions::updates::GetState {}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_wrong_api_id_is_refused_when_the_connection_opens() {
    let server = Server::start(Config::default()).await.unwrap();
    let mut creds = server.credentials(AccountKind::User);
    creds.api_id += 1;
    let c = client(&creds);
    let err = bounded(c.client.invoke(&tl::functions::updates::GetState {}))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "API_ID_INVALID");
}
