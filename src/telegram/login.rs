//! Interactive login of a user account (`tgferry telegram login`): phone number, login code
//! and, if the account has one, its two-step verification password, asked through a
//! [`Prompt`]; the result is the one-line [`PortableSession`] export to store as the
//! `TGFERRY_TG_SESSION` secret, holding the chat too when one is given (resolved once
//! here, not on every run). A bot signs in once the same way ([`login_bot`]).
//!
//! grammers panics on a few answers it does not handle (`auth.sentCodeSuccess`,
//! `auth.sentCodePaymentRequired`); those calls run in a task of their own and a panic
//! becomes [`LoginError::Unexpected`].

use std::io::{self, BufRead as _, Write as _};

use grammers_client::client::PasswordToken;
use grammers_client::session::types::{PeerId, PeerKind};
use grammers_client::{Client, SignInError, tl};
use secrecy::{ExposeSecret as _, SecretString};

use super::api::{ChatRef, TgError};
use super::grammers::{Conn, find_channel, map_invocation};
use super::session::PortableSession;

/// Tries for the login code and for the password before giving up.
const TRIES: u32 = 3;

/// Asks the person logging in.
pub trait Prompt {
    /// Asks `question` and returns the answer (without the line end).
    fn ask(&mut self, question: &str) -> io::Result<String>;
    /// Asks `question` without echoing the answer.
    fn ask_secret(&mut self, question: &str) -> io::Result<SecretString>;
}

/// Questions on stderr, answers from stdin; secrets are read without echo.
#[derive(Debug, Default, Clone, Copy)]
pub struct TerminalPrompt;

impl Prompt for TerminalPrompt {
    fn ask(&mut self, question: &str) -> io::Result<String> {
        let mut err = io::stderr().lock();
        err.write_all(question.as_bytes())?;
        err.flush()?;
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no answer (end of input)",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn ask_secret(&mut self, question: &str) -> io::Result<SecretString> {
        {
            let mut err = io::stderr().lock();
            err.write_all(question.as_bytes())?;
            err.flush()?;
        }
        rpassword::read_password().map(SecretString::from)
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Reading an answer failed.
    #[error("could not read the answer: {0}")]
    Io(#[from] io::Error),
    /// Nothing was entered where something is needed.
    #[error("no {0} entered")]
    Empty(&'static str),
    /// Telegram refused the phone number.
    #[error(
        "Telegram refused the phone number ({0}): enter it in international format, such as +4915112345678"
    )]
    PhoneRejected(String),
    /// The phone number has no Telegram account.
    #[error("this phone number has no Telegram account: sign up in a Telegram app first")]
    SignUpRequired,
    /// The login code was wrong every time.
    #[error(
        "the login code was wrong {TRIES} times; run `tgferry telegram login` again for a new code"
    )]
    WrongCode,
    /// The two-step verification password was wrong every time.
    #[error("the two-step verification password was wrong {TRIES} times")]
    WrongPassword,
    /// Telegram answered in a way tgferry cannot handle (what, and what to do).
    #[error("{0}")]
    Unexpected(String),
    /// Anything else Telegram said (bad api id/hash, flood waits, no connection).
    #[error("{0}")]
    Telegram(#[from] TgError),
}

/// Logs a user account in (phone, code, two-step password if the account has one; a wrong
/// code or password may be retried a few times) and returns the session's export.
pub async fn login(
    api_id: i32,
    api_hash: &SecretString,
    prompt: &mut dyn Prompt,
) -> Result<SecretString, LoginError> {
    login_with(PortableSession::new(), api_id, api_hash, prompt, None).await
}

/// [`login`] starting from `session` (its data centres and keys: Telegram's for a new
/// session, a test server's in tests); with `chat`, a `-100…` channel is resolved now and
/// kept in the session line, so that no run has to look for it among the account's
/// dialogs.
pub async fn login_with(
    session: PortableSession,
    api_id: i32,
    api_hash: &SecretString,
    prompt: &mut dyn Prompt,
    chat: Option<&ChatRef>,
) -> Result<SecretString, LoginError> {
    let phone: String = prompt
        .ask("Phone number of the Telegram account (international format, e.g. +4915112345678): ")?
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if phone.is_empty() {
        return Err(LoginError::Empty("phone number"));
    }
    // Dropped when the login ends, however it ends: the connections stop.
    let conn = Conn::start(&session, api_id);
    let client = conn.client.clone();
    let hash = api_hash.expose_secret().to_owned();
    let asked = phone.clone();
    // grammers panics on answers it does not handle (auth.sentCodeSuccess,
    // auth.sentCodePaymentRequired): the request runs in a task of its own, whose panic
    // becomes an error here.
    let requested = guarded(async move { client.request_login_code(&asked, &hash).await }).await?;
    let token = requested.map_err(|e| {
        if e.is("PHONE_NUMBER_*") {
            match &e {
                grammers_client::InvocationError::Rpc(rpc) => {
                    LoginError::PhoneRejected(rpc.name.clone())
                }
                _ => LoginError::Telegram(map_invocation(&e)),
            }
        } else {
            LoginError::Telegram(map_invocation(&e))
        }
    })?;

    let mut password = None;
    let mut question = "Login code (sent to your Telegram app or by SMS): ".to_owned();
    for attempt in 1..=TRIES {
        let code = prompt.ask(&question)?;
        let code = code.trim();
        if code.is_empty() {
            return Err(LoginError::Empty("login code"));
        }
        match conn.client.sign_in(&token, code).await {
            Ok(_) => break,
            Err(SignInError::PasswordRequired(t)) => {
                password = Some(t);
                break;
            }
            Err(SignInError::InvalidCode) if attempt < TRIES => {
                question = format!(
                    "That code was not accepted. Login code (try {} of {TRIES}): ",
                    attempt + 1
                );
            }
            Err(SignInError::InvalidCode) => return Err(LoginError::WrongCode),
            Err(SignInError::SignUpRequired) => return Err(LoginError::SignUpRequired),
            Err(SignInError::InvalidPassword(_)) => return Err(LoginError::WrongPassword),
            Err(SignInError::Other(e)) => return Err(LoginError::Telegram(map_invocation(&e))),
        }
    }
    if let Some(token) = password {
        check_password(&conn.client, token, prompt).await?;
    }
    if !session.has_home_key() {
        return Err(LoginError::Telegram(TgError::Other(
            "the login finished without an authorization key".into(),
        )));
    }
    remember_chat(&conn, &session, chat).await?;
    let exported = session.export();
    drop(conn);
    Ok(exported)
}

/// Signs a bot in once (`tgferry telegram login --bot`) and returns a session line for
/// `TGFERRY_TG_SESSION` that every run reuses: Telegram answers frequent bot sign-ins
/// (`auth.importBotAuthorization`) with long flood waits, which a bare token meets on
/// every run.
pub async fn login_bot(
    session: PortableSession,
    api_id: i32,
    api_hash: &SecretString,
    token: &SecretString,
) -> Result<SecretString, LoginError> {
    let conn = Conn::start(&session, api_id);
    let client = conn.client.clone();
    let (token, hash) = (
        token.expose_secret().to_owned(),
        api_hash.expose_secret().to_owned(),
    );
    guarded(async move { client.bot_sign_in(&token, &hash).await })
        .await?
        .map_err(|e| LoginError::Telegram(map_invocation(&e)))?;
    if !session.has_home_key() {
        return Err(LoginError::Telegram(TgError::Other(
            "the login finished without an authorization key".into(),
        )));
    }
    let exported = session.export();
    drop(conn);
    Ok(exported)
}

/// Resolves a `-100…` chat for a user account and keeps it in the session.
async fn remember_chat(
    conn: &Conn,
    session: &PortableSession,
    chat: Option<&ChatRef>,
) -> Result<(), LoginError> {
    let Some(ChatRef::Id(raw)) = chat else {
        return Ok(());
    };
    let Some(id) = PeerId::from_bot_api_dialog_id(*raw).filter(|id| id.kind() == PeerKind::Channel)
    else {
        // Basic groups need no access hash; `me` and @names resolve in one request.
        return Ok(());
    };
    match find_channel(conn, id).await? {
        Some(hash) => {
            session.remember_chat(id.bare_id_unchecked(), hash);
            Ok(())
        }
        None => Err(LoginError::Telegram(TgError::ChatNotFound(format!(
            "{raw} is not among this account's chats: join it first, or leave out --chat"
        )))),
    }
}

/// Runs a grammers call that may panic in a task of its own; a panic becomes
/// [`LoginError::Unexpected`] naming what Telegram answered.
async fn guarded<T: Send + 'static>(
    call: impl Future<Output = T> + Send + 'static,
) -> Result<T, LoginError> {
    match tokio::spawn(call).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(LoginError::Unexpected(unexpected_answer(&text)))
        }
        Err(e) => Err(LoginError::Telegram(TgError::Other(e.to_string()))),
    }
}

/// What a grammers panic during login means, in words.
fn unexpected_answer(panic: &str) -> String {
    if panic.contains("not implemented") {
        "Telegram asks for a payment before it sends a login code to this number \
         (auth.sentCodePaymentRequired), which tgferry cannot make: log in once in an \
         official Telegram app with this number, then run `tgferry telegram login` again"
            .into()
    } else if panic.contains("should not have logged in yet") {
        "Telegram answered the code request with a finished login \
         (auth.sentCodeSuccess), which tgferry does not handle: run `tgferry telegram login` \
         again"
            .into()
    } else {
        format!("Telegram gave an answer tgferry does not handle ({panic})")
    }
}

async fn check_password(
    client: &Client,
    mut token: PasswordToken,
    prompt: &mut dyn Prompt,
) -> Result<(), LoginError> {
    for attempt in 1..=TRIES {
        let hint = token
            .hint()
            .filter(|h| !h.is_empty())
            .map(|h| format!(" (hint: {h})"))
            .unwrap_or_default();
        let question = if attempt == 1 {
            format!("Two-step verification password{hint}: ")
        } else {
            format!("That password was not accepted. Password{hint} (try {attempt} of {TRIES}): ")
        };
        let password = prompt.ask_secret(&question)?;
        if password.expose_secret().is_empty() {
            return Err(LoginError::Empty("password"));
        }
        let checker = client.clone();
        let secret = password.expose_secret().as_bytes().to_vec();
        let checked = guarded(async move { checker.check_password(token, secret).await }).await?;
        match checked {
            Ok(_) => return Ok(()),
            // Each SRP challenge answers one check: a retry needs new parameters.
            Err(SignInError::InvalidPassword(_)) => token = fresh_password_token(client).await?,
            Err(SignInError::Other(e)) => return Err(LoginError::Telegram(map_invocation(&e))),
            Err(_) => return Err(LoginError::WrongPassword),
        }
    }
    Err(LoginError::WrongPassword)
}

/// New SRP parameters for the next password try (`account.getPassword`).
async fn fresh_password_token(client: &Client) -> Result<PasswordToken, LoginError> {
    let tl::enums::account::Password::Password(password) = client
        .invoke(&tl::functions::account::GetPassword {})
        .await
        .map_err(|e| LoginError::Telegram(map_invocation(&e)))?;
    Ok(PasswordToken::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a script; panics if asked more than it holds.
    struct Scripted(Vec<&'static str>);

    impl Prompt for Scripted {
        fn ask(&mut self, _: &str) -> io::Result<String> {
            Ok(self.0.remove(0).to_owned())
        }
        fn ask_secret(&mut self, _: &str) -> io::Result<SecretString> {
            Ok(SecretString::from(self.0.remove(0)))
        }
    }

    #[tokio::test]
    async fn an_empty_phone_number_stops_before_any_network() {
        let mut prompt = Scripted(vec!["  "]);
        let err = login(1, &SecretString::from("hash"), &mut prompt)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::Empty("phone number")));
        assert!(prompt.0.is_empty());
    }

    #[test]
    fn errors_explain_the_fix() {
        assert!(
            LoginError::WrongCode
                .to_string()
                .contains("tgferry telegram login")
        );
        assert!(
            LoginError::PhoneRejected("PHONE_NUMBER_INVALID".into())
                .to_string()
                .contains("international format")
        );
        assert!(
            LoginError::Telegram(TgError::Unauthorized("API_ID_INVALID".into()))
                .to_string()
                .contains("API_ID_INVALID")
        );
    }
}
