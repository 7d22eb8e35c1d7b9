//! The real [`TelegramApi`]: MTProto through grammers-client 0.11 ([`GrammersApi`]), signed
//! in with a bot token or a [`PortableSession`], bound to one chat. It owns the translation of
//! Telegram's RPC errors into [`TgError`] ([`map_rpc`]) and of raw messages into
//! [`MessageInfo`].
//!
//! Every request is a raw TL call made exactly once: grammers is configured never to retry or
//! sleep on flood waits (the store decides, knowing its budget). Secrets (api hash, bot token,
//! session keys) never reach `Debug` output, error messages or logs.
//!
//! This file holds the configuration, the state the parts share and the [`TelegramApi`]
//! impl, whose every method hands over to the part that owns it:
//!
//! - `conn.rs`: the connection, signing in, reconnecting, the 180 s deadline on every
//!   answer, authorization copies to other data centres;
//! - `pool.rs`: the connections file bytes travel on (`--tg-connections`), each chunk
//!   or download request on the least busy one, without grammers' gzip;
//! - `chats.rs`: which chat `me`, `@name` or a `-100…` id is; its pinned message;
//! - `changes.rs`: a chat read as a source: a channel's changes since an update
//!   sequence number, a page of history;
//! - `messages.rs`: messages by id, the latest id, edits, deletes; raw messages as
//!   [`MessageInfo`];
//! - `send.rs`: upload chunks, document and text messages, the new message found in
//!   Telegram's answer;
//! - `download.rs`: document locations (a bounded cache), `upload.getFile` across data
//!   centres;
//! - `errors.rs`: Telegram's failures as [`TgError`].

mod changes;
mod chats;
mod conn;
mod download;
mod errors;
#[cfg(test)]
mod fixtures;
mod messages;
mod pool;
mod send;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use secrecy::{ExposeSecret as _, SecretString};

use super::api::{Account, ChatChanges, ChatRef, MessageInfo, TelegramApi, TgError, UploadRef};
use super::session::{PortableSession, SessionLock};
use chats::Target;
pub(crate) use chats::find_channel;
pub(crate) use conn::Conn;
use download::FileLocation;
pub(crate) use errors::map_invocation;
pub use errors::map_rpc;

/// How the account signs in.
pub enum Credential {
    /// A bot, signed in with its token on every connection.
    BotToken(SecretString),
    /// A user account, through a session made by `tgferry telegram login`.
    Session(PortableSession),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::BotToken(_) => f.write_str("BotToken(..)"),
            Credential::Session(_) => f.write_str("Session(..)"),
        }
    }
}

/// Everything a [`GrammersApi`] needs: the application's id and hash (my.telegram.org), the
/// account and the chat.
pub struct GrammersConfig {
    /// Application id.
    pub api_id: i32,
    /// Application hash.
    pub api_hash: SecretString,
    /// The account.
    pub credential: Credential,
    /// The chat the store lives in.
    pub chat: ChatRef,
    /// Connections to the home data centre that file bytes are spread over (at least 1;
    /// [`DEFAULT_CONNECTIONS`] unless `--tg-connections` says otherwise).
    pub connections: usize,
    /// The chat is only read (a source): a bot need not be allowed to post in it.
    pub reads_only: bool,
    /// Read inside a takeout session (`--tg-takeout`, user accounts).
    pub takeout: bool,
}

/// Connections to the home data centre when `--tg-connections` is not given: measured
/// over fakegram's per-connection cap (bench/telegram.sh, bench/RESULTS.md) and kept
/// within what Telegram's own apps open (docs/telegram.md, "Connections and bots").
pub const DEFAULT_CONNECTIONS: usize = 8;
/// The most connections `--tg-connections` accepts.
pub const MAX_CONNECTIONS: usize = 32;

impl GrammersConfig {
    /// The configuration of the main account for `chat` from credentials read by
    /// [`credentials`](super::credentials); a user session is imported (and checked) here.
    pub fn from_credentials(
        creds: super::credentials::Credentials,
        chat: ChatRef,
    ) -> Result<GrammersConfig, super::session::SessionError> {
        Self::every_account(creds, chat).map(|mut all| all.swap_remove(0))
    }

    /// The configuration of every account in `creds` (the main one first) for `chat`.
    pub fn every_account(
        creds: super::credentials::Credentials,
        chat: ChatRef,
    ) -> Result<Vec<GrammersConfig>, super::session::SessionError> {
        std::iter::once(creds.login)
            .chain(creds.more)
            .map(|login| {
                let credential = match login {
                    super::credentials::Login::Bot(token) => Credential::BotToken(token),
                    super::credentials::Login::Session(text) => {
                        Credential::Session(PortableSession::import(text.expose_secret())?)
                    }
                };
                Ok(GrammersConfig {
                    api_id: creds.api_id,
                    api_hash: creds.api_hash.clone(),
                    credential,
                    chat: chat.clone(),
                    connections: DEFAULT_CONNECTIONS,
                    reads_only: false,
                    takeout: false,
                })
            })
            .collect()
    }
}

impl fmt::Debug for GrammersConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammersConfig")
            .field("api_id", &self.api_id)
            .field("api_hash", &"..")
            .field("credential", &self.credential)
            .field("chat", &self.chat)
            .field("connections", &self.connections)
            .field("reads_only", &self.reads_only)
            .field("takeout", &self.takeout)
            .finish()
    }
}

/// What connecting set up (all `None` before [`TelegramApi::connect`]).
#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    target: Option<Target>,
    account: Option<Account>,
    lock: Option<SessionLock>,
}

/// [`TelegramApi`] over grammers-client: see the module documentation.
pub struct GrammersApi {
    api_id: i32,
    api_hash: SecretString,
    bot_token: Option<SecretString>,
    session: PortableSession,
    chat: ChatRef,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
    auth_copied: tokio::sync::Mutex<HashSet<i32>>,
    files: Mutex<HashMap<i32, FileLocation>>,
    /// The chat is only read: no right to post is asked of a bot.
    reads_only: bool,
    /// Start a takeout session on connecting.
    takeout: bool,
    /// The takeout session every request goes in, once started.
    takeout_id: Mutex<Option<i64>>,
    /// The connections file bytes travel on (opened on first use, after `connect`).
    pool: pool::Pool,
}

impl fmt::Debug for GrammersApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammersApi")
            .field("api_id", &self.api_id)
            .field("bot", &self.bot_token.is_some())
            .field("chat", &self.chat)
            .finish_non_exhaustive()
    }
}

impl GrammersApi {
    /// An API for `config`; nothing touches the network before [`TelegramApi::connect`].
    pub fn new(config: GrammersConfig) -> Self {
        let (bot_token, session) = match config.credential {
            Credential::BotToken(token) => (Some(token), PortableSession::new()),
            Credential::Session(session) => (None, session),
        };
        GrammersApi {
            api_id: config.api_id,
            api_hash: config.api_hash,
            bot_token,
            session,
            chat: config.chat,
            state: Mutex::new(State::default()),
            connecting: tokio::sync::Mutex::new(()),
            auth_copied: tokio::sync::Mutex::new(HashSet::new()),
            files: Mutex::new(HashMap::new()),
            reads_only: config.reads_only,
            takeout: config.takeout,
            takeout_id: Mutex::new(None),
            pool: pool::Pool::new(config.connections),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The client and chat, or an error before [`TelegramApi::connect`].
    fn ready(&self) -> Result<(Arc<Conn>, Target, bool), TgError> {
        let state = self.state();
        match (&state.conn, &state.target, &state.account) {
            (Some(conn), Some(target), Some(account)) => {
                Ok((Arc::clone(conn), target.clone(), account.bot))
            }
            _ => Err(TgError::Other("not connected".into())),
        }
    }
}

/// Locks `mutex`, taking it over even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl TelegramApi for GrammersApi {
    async fn connect(&self) -> Result<Account, TgError> {
        conn::connect(self).await
    }

    async fn reconnect(&self) -> Result<(), TgError> {
        conn::reconnect(self).await
    }

    fn connections(&self) -> usize {
        self.pool.size()
    }

    async fn save_file_part(
        &self,
        upload: &UploadRef,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<(), TgError> {
        send::save_file_part(self, upload, index, bytes).await
    }

    async fn send_document(
        &self,
        upload: &UploadRef,
        name: &str,
        caption: &str,
    ) -> Result<MessageInfo, TgError> {
        send::send_document(self, upload, name, caption).await
    }

    async fn send_text(&self, text: &str, random_id: i64) -> Result<MessageInfo, TgError> {
        send::send_text(self, text, random_id).await
    }

    async fn edit_text(&self, id: i32, text: &str) -> Result<(), TgError> {
        messages::edit_text(self, id, text).await
    }

    async fn get_messages(&self, ids: &[i32]) -> Result<Vec<Option<MessageInfo>>, TgError> {
        messages::get_messages(self, ids).await
    }

    async fn latest_id(&self) -> Result<Option<i32>, TgError> {
        messages::latest_id(self).await
    }

    async fn download(&self, id: i32, offset: u64, limit: u32) -> Result<Vec<u8>, TgError> {
        download::download(self, id, offset, limit).await
    }

    async fn delete_messages(&self, ids: &[i32]) -> Result<(), TgError> {
        messages::delete_messages(self, ids).await
    }

    fn is_channel(&self) -> bool {
        self.state()
            .target
            .as_ref()
            .is_some_and(|t| t.channel.is_some())
    }

    async fn changes(&self, pts: i32) -> Result<ChatChanges, TgError> {
        changes::changes(self, pts).await
    }

    async fn history(&self, min_id: i32, before: i32) -> Result<Vec<MessageInfo>, TgError> {
        changes::history(self, min_id, before).await
    }

    async fn pin(&self, id: i32) -> Result<(), TgError> {
        chats::pin(self, id).await
    }

    async fn pinned(&self) -> Result<Option<MessageInfo>, TgError> {
        chats::pinned(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::api;
    use super::*;

    #[test]
    fn debug_output_has_no_secrets() {
        let api = GrammersApi::new(GrammersConfig {
            api_id: 1,
            api_hash: SecretString::from("hash-secret-value"),
            credential: Credential::BotToken(SecretString::from("123:token-secret-value")),
            chat: ChatRef::Me,
            connections: 1,
            reads_only: false,
            takeout: false,
        });
        let shown = format!("{api:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
        let config = GrammersConfig {
            api_id: 1,
            api_hash: SecretString::from("hash-secret-value"),
            credential: Credential::Session(PortableSession::new()),
            chat: ChatRef::Id(-1001234),
            connections: 1,
            reads_only: false,
            takeout: false,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }

    #[tokio::test]
    async fn calls_before_connect_fail_cleanly() {
        let api = api(Credential::Session(PortableSession::new()));
        assert!(matches!(api.latest_id().await, Err(TgError::Other(_))));
        assert!(matches!(api.reconnect().await, Err(TgError::Other(_))));
        // A session without keys is refused before any network access.
        assert!(matches!(api.connect().await, Err(TgError::Unauthorized(_))));
    }
}
