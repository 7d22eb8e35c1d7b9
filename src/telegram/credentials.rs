//! Telegram credentials from the environment: the app's `TGFERRY_TG_API_ID` and
//! `TGFERRY_TG_API_HASH`, and either bots' tokens (`TGFERRY_TG_BOT_TOKEN` and
//! `TGFERRY_TG_BOT_TOKENS`, each comma-separated) or portable sessions (`TGFERRY_TG_SESSION`,
//! one session line, or several separated by spaces, commas or new lines). Several
//! accounts send into the same chat, each with its own limits. A `telegram:` source may
//! read with an account of its own (`TGFERRY_TG_SOURCE_SESSION` or
//! `TGFERRY_TG_SOURCE_BOT_TOKEN`). Every value is checked for shape before anything
//! connects, and no error ever contains a value: only the variable's name and the fix.

use secrecy::{ExposeSecret, SecretString};

/// The app id from my.telegram.org.
pub const API_ID_ENV: &str = "TGFERRY_TG_API_ID";
/// The app hash from my.telegram.org.
pub const API_HASH_ENV: &str = "TGFERRY_TG_API_HASH";
/// A bot token from @BotFather.
pub const BOT_TOKEN_ENV: &str = "TGFERRY_TG_BOT_TOKEN";
/// More bot tokens, comma-separated: several bots sending into the same channel.
pub const BOT_TOKENS_ENV: &str = "TGFERRY_TG_BOT_TOKENS";
/// A user session made by `tgferry telegram login`.
pub const SESSION_ENV: &str = "TGFERRY_TG_SESSION";

/// The session a `telegram:` source reads with, when not the store's.
pub const SOURCE_SESSION_ENV: &str = "TGFERRY_TG_SOURCE_SESSION";
/// The bot token a `telegram:` source reads with, when not the store's.
pub const SOURCE_BOT_TOKEN_ENV: &str = "TGFERRY_TG_SOURCE_BOT_TOKEN";

/// Who signs in.
#[derive(Clone)]
pub enum Login {
    /// A bot, by its token.
    Bot(SecretString),
    /// A user, by the text of a portable session (checked when it is imported).
    Session(SecretString),
}

/// The credentials a Telegram store connects with.
#[derive(Clone)]
pub struct Credentials {
    /// The app id.
    pub api_id: i32,
    /// The app hash.
    pub api_hash: SecretString,
    /// The account (the main one: it keeps the index and the catalog).
    pub login: Login,
    /// More accounts of the same kind, sending parts into the same chat.
    pub more: Vec<Login>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let login = match self.login {
            Login::Bot(_) => "bot token",
            Login::Session(_) => "user session",
        };
        f.debug_struct("Credentials")
            .field("api_id", &self.api_id)
            .field("login", &login)
            .field("more", &self.more.len())
            .finish_non_exhaustive()
    }
}

/// Credentials that are missing or malformed. Messages name the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A required variable is not set.
    #[error("{var} is not set: {fix}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// Where the value comes from.
        fix: &'static str,
    },
    /// A variable is set to something of the wrong shape.
    #[error("{var} is not valid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong with it and the fix.
        reason: String,
    },
    /// Both a bot token and a session are set.
    #[error(
        "both a bot token ({BOT_TOKEN_ENV} or {BOT_TOKENS_ENV}) and {SESSION_ENV} are set: keep \
         the one for the accounts that should own the store (docs/telegram.md)"
    )]
    Ambiguous,
    /// Neither a bot token nor a session is set.
    #[error(
        "no Telegram account: set {BOT_TOKEN_ENV} (a bot that is admin of the channel) or \
         {SESSION_ENV} (made by `tgferry telegram login`); see docs/telegram.md"
    )]
    NoAccount,
}

const APP_FIX: &str = "create an app at https://my.telegram.org (API development tools) and \
                       set its api_id and api_hash as secrets (docs/telegram.md)";

/// A variable's value, trimmed; unset and blank are the same.
fn value(lookup: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Reads the app id and hash alone (for `tgferry telegram login`).
pub fn app_from(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(i32, SecretString), CredentialsError> {
    let get = |var: &'static str| {
        value(lookup, var).ok_or(CredentialsError::Missing { var, fix: APP_FIX })
    };
    let id = get(API_ID_ENV)?;
    let api_id =
        id.parse::<i32>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| CredentialsError::Invalid {
                var: API_ID_ENV,
                reason: "it must be the positive number my.telegram.org shows as api_id".into(),
            })?;
    let hash = SecretString::from(get(API_HASH_ENV)?);
    let h = hash.expose_secret();
    if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CredentialsError::Invalid {
            var: API_HASH_ENV,
            reason: "it must be the 32 hexadecimal characters my.telegram.org shows as api_hash"
                .into(),
        });
    }
    Ok((api_id, hash))
}

/// Reads every credential through `lookup` (the environment, or a map in tests).
pub fn from(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, CredentialsError> {
    let (api_id, api_hash) = app_from(lookup)?;
    let mut tokens: Vec<String> = Vec::new();
    for var in [BOT_TOKEN_ENV, BOT_TOKENS_ENV] {
        let listed = value(lookup, var).unwrap_or_default();
        for (i, token) in listed.split(',').map(str::trim).enumerate() {
            if token.is_empty() || tokens.iter().any(|t| t == token) {
                continue;
            }
            if !is_bot_token(token) {
                return Err(CredentialsError::Invalid {
                    var,
                    reason: format!(
                        "entry {} is not a bot token: the bot's id, a colon and 35 letters, \
                         digits, - or _, as @BotFather gives it",
                        i + 1
                    ),
                });
            }
            tokens.push(token.to_owned());
        }
    }
    let sessions: Vec<String> = value(lookup, SESSION_ENV)
        .iter()
        .flat_map(|v| v.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let mut logins: Vec<Login> = match (tokens.is_empty(), sessions.is_empty()) {
        (false, false) => return Err(CredentialsError::Ambiguous),
        (true, true) => return Err(CredentialsError::NoAccount),
        (false, true) => tokens
            .into_iter()
            .map(|t| Login::Bot(SecretString::from(t)))
            .collect(),
        (true, false) => sessions
            .into_iter()
            .map(|s| Login::Session(SecretString::from(s)))
            .collect(),
    };
    let login = logins.remove(0);
    Ok(Credentials {
        api_id,
        api_hash,
        login,
        more: logins,
    })
}

/// Reads every credential from the process environment.
pub fn from_env() -> Result<Credentials, CredentialsError> {
    from(&|var| std::env::var(var).ok())
}

/// The account a `telegram:` source reads with: `TGFERRY_TG_SOURCE_SESSION` or
/// `TGFERRY_TG_SOURCE_BOT_TOKEN` when one is set (a chat read with one account, a store
/// written with others), else the store's (only the first of several); the app id and
/// hash are shared.
pub fn source_from_env() -> Result<Credentials, CredentialsError> {
    let own = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let separate = own(SOURCE_SESSION_ENV).is_some() || own(SOURCE_BOT_TOKEN_ENV).is_some();
    let mut creds = from(&|var| match var {
        _ if !separate => std::env::var(var).ok(),
        SESSION_ENV => own(SOURCE_SESSION_ENV),
        BOT_TOKEN_ENV => own(SOURCE_BOT_TOKEN_ENV),
        BOT_TOKENS_ENV => None,
        _ => std::env::var(var).ok(),
    })?;
    creds.more.clear();
    Ok(creds)
}

/// `123456:AAE…` (the bot id, a colon, 35 URL-safe characters).
fn is_bot_token(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 30
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HASH: &str = "0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "123456789:AAEhBP0av28HkqQ-kqVsFaIcR9LxLr_3x4w";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_bot_or_a_session() {
        let c = from(&env(&[
            (API_ID_ENV, " 12345 "),
            (API_HASH_ENV, HASH),
            (BOT_TOKEN_ENV, TOKEN),
        ]))
        .unwrap();
        assert_eq!(c.api_id, 12345);
        assert!(matches!(c.login, Login::Bot(_)));
        let debug = format!("{c:?}");
        assert!(!debug.contains(HASH) && !debug.contains("AAEh"), "{debug}");

        let c = from(&env(&[
            (API_ID_ENV, "1"),
            (API_HASH_ENV, HASH),
            (SESSION_ENV, "tgferry-session-v1:abc"),
        ]))
        .unwrap();
        assert!(matches!(c.login, Login::Session(_)));
    }

    #[test]
    fn several_bots_or_several_sessions() {
        const OTHER: &str = "987654321:BBEhBP0av28HkqQ-kqVsFaIcR9LxLr_3x4w";
        let c = from(&env(&[
            (API_ID_ENV, "1"),
            (API_HASH_ENV, HASH),
            (BOT_TOKEN_ENV, TOKEN),
            // The first again (once is enough), a blank entry, another.
            (BOT_TOKENS_ENV, &format!("{TOKEN}, ,{OTHER} ")),
        ]))
        .unwrap();
        assert!(matches!(c.login, Login::Bot(_)));
        assert_eq!(c.more.len(), 1);
        assert!(matches!(&c.more[0], Login::Bot(t) if t.expose_secret() == OTHER));
        let debug = format!("{c:?}");
        assert!(!debug.contains("BBEh"), "{debug}");

        let c = from(&env(&[
            (API_ID_ENV, "1"),
            (API_HASH_ENV, HASH),
            (
                SESSION_ENV,
                "tgferry-session-v1:abc,tgferry-session-v1:def\ntgferry-session-v1:ghi",
            ),
        ]))
        .unwrap();
        assert_eq!(c.more.len(), 2);

        let bad = from(&env(&[
            (API_ID_ENV, "1"),
            (API_HASH_ENV, HASH),
            (BOT_TOKENS_ENV, &format!("{OTHER},123:short-secret")),
        ]))
        .unwrap_err();
        assert!(
            matches!(&bad, CredentialsError::Invalid { var, reason } if *var == BOT_TOKENS_ENV && reason.starts_with("entry 2 ")),
            "{bad}"
        );
        assert!(!bad.to_string().contains("short-secret"));
        let both = from(&env(&[
            (API_ID_ENV, "1"),
            (API_HASH_ENV, HASH),
            (BOT_TOKENS_ENV, OTHER),
            (SESSION_ENV, "tgferry-session-v1:abc"),
        ]));
        assert!(matches!(both, Err(CredentialsError::Ambiguous)));
    }

    #[test]
    fn errors_name_the_variable_and_never_the_value() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![(API_HASH_ENV, HASH), (BOT_TOKEN_ENV, TOKEN)],
                API_ID_ENV,
            ),
            (
                vec![
                    (API_ID_ENV, "-5"),
                    (API_HASH_ENV, HASH),
                    (BOT_TOKEN_ENV, TOKEN),
                ],
                API_ID_ENV,
            ),
            (
                vec![
                    (API_ID_ENV, "12"),
                    (API_HASH_ENV, "nothex-secret"),
                    (BOT_TOKEN_ENV, TOKEN),
                ],
                API_HASH_ENV,
            ),
            (
                vec![
                    (API_ID_ENV, "12"),
                    (API_HASH_ENV, HASH),
                    (BOT_TOKEN_ENV, "secret-token"),
                ],
                BOT_TOKEN_ENV,
            ),
            (
                vec![(API_ID_ENV, "12"), (API_HASH_ENV, HASH)],
                BOT_TOKEN_ENV,
            ),
            (
                vec![
                    (API_ID_ENV, "12"),
                    (API_HASH_ENV, HASH),
                    (BOT_TOKEN_ENV, TOKEN),
                    (SESSION_ENV, "s"),
                ],
                SESSION_ENV,
            ),
        ];
        for (vars, named) in cases {
            let e = from(&env(&vars)).unwrap_err().to_string();
            assert!(e.contains(named), "{e} should name {named}");
            for (_, v) in &vars {
                if v.len() > 3 {
                    assert!(!e.contains(v), "{e} leaks {v}");
                }
            }
        }
    }

    #[test]
    fn bot_token_shape() {
        assert!(is_bot_token(TOKEN));
        assert!(!is_bot_token("123456789"));
        assert!(!is_bot_token("abc:AAEhBP0av28HkqQ-kqVsFaIcR9LxLr_3x4w"));
        assert!(!is_bot_token("123:short"));
        assert!(!is_bot_token("123:AAEhBP0av28HkqQ kqVsFaIcR9LxLr_3x4w"));
    }
}
