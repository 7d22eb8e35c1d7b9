//! Interactive login of a user account (`tgferry telegram login`): phone number, login code
//! and, if the account has one, its two-step verification password, asked through a
//! [`Prompt`]; the result is the one-line [`PortableSession`] export to store as the
//! `TGFERRY_TG_SESSION` secret.

use std::io::{self, BufRead as _, Write as _};

use grammers_client::client::PasswordToken;
use grammers_client::{Client, SignInError};
use secrecy::{ExposeSecret as _, SecretString};

use super::api::TgError;
use super::grammers::{Conn, map_invocation};
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
    let phone: String = prompt
        .ask("Phone number of the Telegram account (international format, e.g. +4915112345678): ")?
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if phone.is_empty() {
        return Err(LoginError::Empty("phone number"));
    }
    let session = PortableSession::new();
    // Dropped when the login ends, however it ends: the connections stop.
    let conn = Conn::start(&session, api_id);
    let token = conn
        .client
        .request_login_code(&phone, api_hash.expose_secret())
        .await
        .map_err(|e| {
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
    let exported = session.export();
    drop(conn);
    Ok(exported)
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
        match client
            .check_password(token, password.expose_secret().as_bytes())
            .await
        {
            Ok(_) => return Ok(()),
            Err(SignInError::InvalidPassword(t)) => token = t,
            Err(SignInError::Other(e)) => return Err(LoginError::Telegram(map_invocation(&e))),
            Err(_) => return Err(LoginError::WrongPassword),
        }
    }
    Err(LoginError::WrongPassword)
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
