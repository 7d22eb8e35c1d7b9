//! The real [`TelegramApi`]: MTProto through grammers-client 0.11 ([`GrammersApi`]), signed
//! in with a bot token or a [`PortableSession`], bound to one chat. It owns the translation of
//! Telegram's RPC errors into [`TgError`] ([`map_rpc`]) and of raw messages into
//! [`MessageInfo`].
//!
//! Every request is a raw TL call made exactly once: grammers is configured never to retry or
//! sleep on flood waits (the store decides, knowing its budget). Secrets (api hash, bot token,
//! session keys) never reach `Debug` output, error messages or logs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use grammers_client::Client;
use grammers_client::sender::{ConnectionParams, InvocationError, NoRetries, RpcError, SenderPool};
use grammers_client::session::Session as _;
use grammers_client::session::types::{PeerAuth, PeerId, PeerKind, PeerRef};
use grammers_client::tl;
use secrecy::{ExposeSecret as _, SecretString};

use super::api::{
    Account, ChatRef, DocumentInfo, MAX_IDS_PER_CALL, MessageInfo, TelegramApi, TgError, UploadRef,
    WaitKind, check_download,
};
use super::session::{PortableSession, SessionError, SessionLock};

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
}

impl GrammersConfig {
    /// The configuration for `chat` from credentials read by
    /// [`credentials`](super::credentials); a user session is imported (and checked) here.
    pub fn from_credentials(
        creds: super::credentials::Credentials,
        chat: ChatRef,
    ) -> Result<GrammersConfig, super::session::SessionError> {
        use secrecy::ExposeSecret as _;
        let credential = match creds.login {
            super::credentials::Login::Bot(token) => Credential::BotToken(token),
            super::credentials::Login::Session(text) => {
                Credential::Session(PortableSession::import(text.expose_secret())?)
            }
        };
        Ok(GrammersConfig {
            api_id: creds.api_id,
            api_hash: creds.api_hash,
            credential,
            chat,
        })
    }
}

impl fmt::Debug for GrammersConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammersConfig")
            .field("api_id", &self.api_id)
            .field("api_hash", &"..")
            .field("credential", &self.credential)
            .field("chat", &self.chat)
            .finish()
    }
}

/// A live grammers client and the task driving its connections; dropping it disconnects
/// (the store's connection, and the one `login` uses).
pub(crate) struct Conn {
    pub(crate) client: Client,
    runner: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Connects with `session` (new keys land in it), grammers' retries turned off and
    /// updates not read.
    pub(crate) fn start(session: &PortableSession, api_id: i32) -> Conn {
        let params = ConnectionParams {
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            retry_policy: Box::new(NoRetries),
            ..ConnectionParams::default()
        };
        let pool = SenderPool::with_configuration(Arc::new(session.shared()), api_id, params);
        let client = Client::new(pool.handle);
        // Nothing here reads updates: dropping the receiver stops their delivery.
        drop(pool.updates);
        let runner = tokio::spawn(pool.runner.run());
        Conn { client, runner }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.client.disconnect();
        self.runner.abort();
    }
}

/// The resolved chat.
#[derive(Clone)]
struct Target {
    /// Where requests go.
    peer: tl::enums::InputPeer,
    /// Set for channels and supergroups (their own message ids and methods).
    channel: Option<tl::enums::InputChannel>,
    /// What a message's `peer_id` must be to belong to the chat.
    id: PeerId,
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    target: Option<Target>,
    account: Option<Account>,
    lock: Option<SessionLock>,
}

/// Where a message's document can be downloaded from.
#[derive(Clone)]
struct FileLocation {
    location: tl::enums::InputFileLocation,
    dc_id: i32,
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
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    async fn invoke<R: tl::RemoteCall>(
        &self,
        conn: &Conn,
        request: &R,
    ) -> Result<R::Return, TgError> {
        within_time(conn.client.invoke(request))
            .await?
            .map_err(|e| map_invocation(&e))
    }

    async fn get_raw_messages(
        &self,
        conn: &Conn,
        target: &Target,
        ids: &[i32],
    ) -> Result<Vec<tl::enums::Message>, TgError> {
        let id: Vec<tl::enums::InputMessage> = ids
            .iter()
            .map(|&id| tl::types::InputMessageId { id }.into())
            .collect();
        let messages = match &target.channel {
            Some(channel) => {
                self.invoke(
                    conn,
                    &tl::functions::channels::GetMessages {
                        channel: channel.clone(),
                        id,
                    },
                )
                .await?
            }
            None => {
                self.invoke(conn, &tl::functions::messages::GetMessages { id })
                    .await?
            }
        };
        Ok(messages_of(messages))
    }

    /// Where the document of message `id` is, from the cache or a fresh fetch.
    async fn file_location(
        &self,
        conn: &Conn,
        target: &Target,
        id: i32,
    ) -> Result<FileLocation, TgError> {
        if let Some(found) = self.files().get(&id) {
            return Ok(found.clone());
        }
        let messages = self.get_raw_messages(conn, target, &[id]).await?;
        self.remember_locations(&messages, target);
        self.files()
            .get(&id)
            .cloned()
            .ok_or_else(|| TgError::Invalid("MESSAGE_ID_INVALID".into()))
    }

    /// Keeps where the documents of fetched messages are, so downloading one later needs
    /// no second fetch (a restore looks each part's message up before reading it).
    fn remember_locations(&self, messages: &[tl::enums::Message], target: &Target) {
        let mut files = self.files();
        // Locations of parts already read are not needed again: keep a window, not all.
        if files.len() >= 1_000 {
            files.clear();
        }
        for m in messages.iter().filter(|m| belongs(m, target)) {
            if let (Some(id), Some(found)) = (message_id(m), document_location(m)) {
                files.insert(id, found);
            }
        }
    }

    fn files(&self) -> MutexGuard<'_, HashMap<i32, FileLocation>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `upload.getFile` in the file's data centre, following `FILE_MIGRATE` and importing the
    /// authorization there once.
    async fn get_file(
        &self,
        conn: &Conn,
        file: &FileLocation,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<u8>, InvocationError> {
        let home = self.session.home_dc_id().unwrap_or(file.dc_id);
        let mut dc = if file.dc_id > 0 { file.dc_id } else { home };
        let request = tl::functions::upload::GetFile {
            precise: false,
            cdn_supported: false,
            location: file.location.clone(),
            offset: offset as i64,
            limit: limit as i32,
        };
        let mut attempts = 0;
        let mut copied_here = false;
        loop {
            attempts += 1;
            let answer = within_time(conn.client.invoke_in_dc(dc, &request))
                .await
                .map_err(|_| InvocationError::Dropped("no answer from Telegram in time"))?;
            match answer {
                Ok(tl::enums::upload::File::File(f)) => return Ok(f.bytes),
                Ok(tl::enums::upload::File::CdnRedirect(_)) => {
                    return Err(InvocationError::Rpc(RpcError {
                        code: 400,
                        name: "CDN_REDIRECT_UNSUPPORTED".into(),
                        value: None,
                        caused_by: None,
                    }));
                }
                Err(InvocationError::Rpc(e))
                    if attempts < 4 && e.code == 303 && e.value.is_some_and(|v| v > 0) =>
                {
                    dc = e.value.unwrap_or_default() as i32;
                }
                Err(InvocationError::Rpc(e))
                    if attempts < 4 && dc != home && e.name == "AUTH_KEY_UNREGISTERED" =>
                {
                    within_time(self.copy_auth(conn, dc, copied_here))
                        .await
                        .map_err(|_| {
                            InvocationError::Dropped("no answer from Telegram in time")
                        })??;
                    copied_here = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes the account known in data centre `dc` (export from home, import there).
    /// Unless `again`, a copy another task made meanwhile is enough.
    async fn copy_auth(&self, conn: &Conn, dc: i32, again: bool) -> Result<(), InvocationError> {
        let mut copied = self.auth_copied.lock().await;
        if !again && copied.contains(&dc) {
            // Another download copied it while this one waited (a genuinely lost
            // authorization ends after the caller's few attempts).
            return Ok(());
        }
        let tl::enums::auth::ExportedAuthorization::Authorization(exported) = conn
            .client
            .invoke(&tl::functions::auth::ExportAuthorization { dc_id: dc })
            .await?;
        conn.client
            .invoke_in_dc(
                dc,
                &tl::functions::auth::ImportAuthorization {
                    id: exported.id,
                    bytes: exported.bytes,
                },
            )
            .await?;
        copied.insert(dc);
        Ok(())
    }

    fn start(&self) -> Conn {
        Conn::start(&self.session, self.api_id)
    }

    async fn connect_inner(&self) -> Result<(Conn, Account, Target), TgError> {
        let conn = self.start();
        if let Some(token) = &self.bot_token {
            within_time(
                conn.client
                    .bot_sign_in(token.expose_secret(), self.api_hash.expose_secret()),
            )
            .await?
            .map_err(|e| map_invocation(&e))?;
        }
        let users = self
            .invoke(
                &conn,
                &tl::functions::users::GetUsers {
                    id: vec![tl::enums::InputUser::UserSelf],
                },
            )
            .await?;
        let Some(tl::enums::User::User(me)) = users.into_iter().next() else {
            return Err(TgError::Unauthorized(
                "Telegram did not return the signed-in account".into(),
            ));
        };
        let account = Account {
            bot: me.bot,
            premium: me.premium,
            name: me
                .username
                .as_ref()
                .map_or_else(|| me.id.to_string(), |u| format!("@{u}")),
        };
        let target = self.resolve(&conn, &me).await?;
        Ok((conn, account, target))
    }

    async fn resolve(&self, conn: &Conn, me: &tl::types::User) -> Result<Target, TgError> {
        match &self.chat {
            ChatRef::Me => {
                if me.bot {
                    return Err(TgError::ChatNotFound(
                        "bots have no Saved Messages (`me`): use a channel or group the bot is an admin of".into(),
                    ));
                }
                Ok(Target {
                    peer: tl::enums::InputPeer::PeerSelf,
                    channel: None,
                    id: PeerId::user(me.id).ok_or_else(|| TgError::Other("bad user id".into()))?,
                })
            }
            ChatRef::Username(name) => {
                let tl::enums::contacts::ResolvedPeer::Peer(resolved) = self
                    .invoke(
                        conn,
                        &tl::functions::contacts::ResolveUsername {
                            username: name.clone(),
                            referer: None,
                        },
                    )
                    .await?;
                let id = PeerId::from(&resolved.peer);
                let auth = match id.kind() {
                    PeerKind::Channel => resolved.chats.iter().find_map(|c| match c {
                        tl::enums::Chat::Channel(c) if PeerId::channel(c.id) == Some(id) => {
                            c.access_hash
                        }
                        _ => None,
                    }),
                    PeerKind::User => resolved.users.iter().find_map(|u| match u {
                        tl::enums::User::User(u) if PeerId::user(u.id) == Some(id) => u.access_hash,
                        _ => None,
                    }),
                    PeerKind::Chat => Some(0),
                };
                let auth = auth.ok_or_else(|| {
                    TgError::ChatNotFound(format!("@{name} cannot be reached by this account"))
                })?;
                Ok(target_of(PeerRef {
                    id,
                    auth: PeerAuth::from_hash(auth),
                }))
            }
            ChatRef::Id(raw) => {
                let id = PeerId::from_bot_api_dialog_id(*raw).ok_or_else(|| {
                    TgError::ChatNotFound(format!("{raw} is not a Telegram chat id"))
                })?;
                if id.kind() == PeerKind::Chat {
                    return Ok(target_of(id.to_ambient_ref()));
                }
                if me.bot {
                    return self.resolve_for_bot(conn, id).await;
                }
                let mut dialogs = conn.client.iter_dialogs();
                while let Some(dialog) = within_time(dialogs.next())
                    .await?
                    .map_err(|e| map_invocation(&e))?
                {
                    if dialog.peer.id() == id {
                        let peer = dialog
                            .peer
                            .to_ref()
                            .await
                            .map_err(|_| TgError::Other("the session storage failed".into()))?;
                        if let Some(peer) = peer {
                            return Ok(target_of(peer));
                        }
                    }
                }
                Err(TgError::ChatNotFound(format!(
                    "{raw} is not among this account's chats (join it first, or use its @username)"
                )))
            }
        }
    }

    /// Bots cannot list dialogs: a channel is tried with access hash 0 (what bots may use).
    async fn resolve_for_bot(&self, conn: &Conn, id: PeerId) -> Result<Target, TgError> {
        if id.kind() != PeerKind::Channel {
            return Ok(target_of(id.to_ambient_ref()));
        }
        let peer = id.to_ambient_ref();
        let chats = self
            .invoke(
                conn,
                &tl::functions::channels::GetChannels {
                    id: vec![(&peer).into()],
                },
            )
            .await?;
        let chats = match chats {
            tl::enums::messages::Chats::Chats(c) => c.chats,
            tl::enums::messages::Chats::Slice(c) => c.chats,
        };
        let auth = chats.iter().find_map(|c| match c {
            tl::enums::Chat::Channel(c) if PeerId::channel(c.id) == Some(id) => {
                Some(c.access_hash.unwrap_or(0))
            }
            _ => None,
        });
        match auth {
            Some(hash) => Ok(target_of(PeerRef {
                id,
                auth: PeerAuth::from_hash(hash),
            })),
            None => Err(TgError::ChatNotFound(format!(
                "{} cannot be reached by this bot (add it to the channel as an admin)",
                id
            ))),
        }
    }
}

/// Longest wait for one answer: a stalled connection becomes [`TgError::Disconnected`]
/// instead of eating the run's time budget.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

async fn within_time<T>(call: impl Future<Output = T>) -> Result<T, TgError> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| {
            TgError::Disconnected(format!(
                "no answer from Telegram within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))
        })
}

fn target_of(peer: PeerRef) -> Target {
    Target {
        peer: (&peer).into(),
        channel: (peer.id.kind() == PeerKind::Channel).then(|| (&peer).into()),
        id: peer.id,
    }
}

fn random_id() -> Result<i64, TgError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| TgError::Other(format!("no randomness: {e}")))?;
    Ok(i64::from_le_bytes(id))
}

fn session_error(e: SessionError) -> TgError {
    match e {
        SessionError::InUse { .. } => TgError::SessionInUse,
        SessionError::Malformed(_) => TgError::Unauthorized(e.to_string()),
        SessionError::Io(_) => TgError::Other(e.to_string()),
    }
}

impl TelegramApi for GrammersApi {
    async fn connect(&self) -> Result<Account, TgError> {
        let _connecting = self.connecting.lock().await;
        if let Some(account) = &self.state().account {
            return Ok(account.clone());
        }
        let lock = if self.bot_token.is_none() {
            if !self.session.has_home_key() {
                return Err(TgError::Unauthorized(
                    "the session in TGFERRY_TG_SESSION holds no key: create one with `tgferry telegram login`".into(),
                ));
            }
            Some(SessionLock::acquire(&self.session).map_err(session_error)?)
        } else {
            None
        };
        let (conn, account, target) = self.connect_inner().await?;
        tracing::debug!(bot = account.bot, premium = account.premium, chat = %self.chat, "connected to Telegram");
        let mut state = self.state();
        state.conn = Some(Arc::new(conn));
        state.target = Some(target);
        state.account = Some(account.clone());
        state.lock = lock;
        Ok(account)
    }

    async fn reconnect(&self) -> Result<(), TgError> {
        let _connecting = self.connecting.lock().await;
        if self.state().account.is_none() {
            return Err(TgError::Other("not connected".into()));
        }
        let conn = Arc::new(self.start());
        let old = self.state().conn.replace(Arc::clone(&conn));
        drop(old);
        // The session keeps the keys (and a bot's sign-in): a cheap call proves the link.
        self.invoke(&conn, &tl::functions::updates::GetState {})
            .await
            .map(drop)
    }

    async fn save_file_part(
        &self,
        upload: &UploadRef,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<(), TgError> {
        let (conn, _, _) = self.ready()?;
        let saved = if upload.big {
            self.invoke(
                &conn,
                &tl::functions::upload::SaveBigFilePart {
                    file_id: upload.file_id,
                    file_part: index as i32,
                    file_total_parts: upload.total_chunks as i32,
                    bytes,
                },
            )
            .await?
        } else {
            self.invoke(
                &conn,
                &tl::functions::upload::SaveFilePart {
                    file_id: upload.file_id,
                    file_part: index as i32,
                    bytes,
                },
            )
            .await?
        };
        if saved {
            Ok(())
        } else {
            Err(TgError::Other(format!(
                "Telegram did not store chunk {index} of the upload"
            )))
        }
    }

    async fn send_document(
        &self,
        upload: &UploadRef,
        name: &str,
        caption: &str,
    ) -> Result<MessageInfo, TgError> {
        let (conn, target, _) = self.ready()?;
        let random_id = random_id()?;
        let request = tl::functions::messages::SendMedia {
            silent: true,
            background: false,
            clear_draft: false,
            noforwards: false,
            update_stickersets_order: false,
            invert_media: false,
            allow_paid_floodskip: false,
            peer: target.peer.clone(),
            reply_to: None,
            media: uploaded_document(upload, name),
            message: caption.to_owned(),
            random_id,
            reply_markup: None,
            entities: None,
            schedule_date: None,
            schedule_repeat_period: None,
            send_as: None,
            quick_reply_shortcut: None,
            effect: None,
            allow_paid_stars: None,
            suggested_post: None,
        };
        let updates = self.invoke(&conn, &request).await?;
        let fallback = DocumentInfo {
            name: name.to_owned(),
            size: upload.size,
        };
        sent_message(&updates, random_id, caption, Some(fallback))
    }

    async fn send_text(&self, text: &str) -> Result<MessageInfo, TgError> {
        let (conn, target, _) = self.ready()?;
        let random_id = random_id()?;
        let request = tl::functions::messages::SendMessage {
            no_webpage: true,
            silent: true,
            background: false,
            clear_draft: false,
            noforwards: false,
            update_stickersets_order: false,
            invert_media: false,
            allow_paid_floodskip: false,
            peer: target.peer.clone(),
            reply_to: None,
            message: text.to_owned(),
            random_id,
            reply_markup: None,
            entities: None,
            schedule_date: None,
            schedule_repeat_period: None,
            send_as: None,
            quick_reply_shortcut: None,
            effect: None,
            allow_paid_stars: None,
            suggested_post: None,
            rich_message: None,
        };
        let updates = self.invoke(&conn, &request).await?;
        sent_message(&updates, random_id, text, None)
    }

    async fn edit_text(&self, id: i32, text: &str) -> Result<(), TgError> {
        let (conn, target, _) = self.ready()?;
        let request = tl::functions::messages::EditMessage {
            no_webpage: true,
            invert_media: false,
            peer: target.peer.clone(),
            id,
            message: Some(text.to_owned()),
            media: None,
            reply_markup: None,
            entities: None,
            schedule_date: None,
            schedule_repeat_period: None,
            quick_reply_shortcut_id: None,
            rich_message: None,
        };
        self.invoke(&conn, &request).await.map(drop)
    }

    async fn get_messages(&self, ids: &[i32]) -> Result<Vec<Option<MessageInfo>>, TgError> {
        if ids.len() > MAX_IDS_PER_CALL {
            return Err(TgError::Invalid("LIMIT_INVALID".into()));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (conn, target, _) = self.ready()?;
        let messages = self.get_raw_messages(&conn, &target, ids).await?;
        self.remember_locations(&messages, &target);
        Ok(arrange(&messages, &target, ids))
    }

    async fn latest_id(&self) -> Result<Option<i32>, TgError> {
        let (conn, target, _) = self.ready()?;
        let history = self
            .invoke(
                &conn,
                &tl::functions::messages::GetHistory {
                    peer: target.peer.clone(),
                    offset_id: 0,
                    offset_date: 0,
                    add_offset: 0,
                    limit: 1,
                    max_id: 0,
                    min_id: 0,
                    hash: 0,
                },
            )
            .await?;
        Ok(messages_of(history).iter().filter_map(message_id).max())
    }

    async fn download(&self, id: i32, offset: u64, limit: u32) -> Result<Vec<u8>, TgError> {
        check_download(offset, limit)?;
        let (conn, target, _) = self.ready()?;
        let mut refreshed = false;
        loop {
            let file = self.file_location(&conn, &target, id).await?;
            match self.get_file(&conn, &file, offset, limit).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) if !refreshed && e.is("FILE_REFERENCE_*") => {
                    // File references expire: fetch the message again, once.
                    self.files().remove(&id);
                    refreshed = true;
                }
                Err(e) => return Err(map_invocation(&e)),
            }
        }
    }

    async fn delete_messages(&self, ids: &[i32]) -> Result<(), TgError> {
        let (conn, target, _) = self.ready()?;
        for batch in ids.chunks(MAX_IDS_PER_CALL) {
            {
                let mut files = self.files();
                for id in batch {
                    files.remove(id);
                }
            }
            match &target.channel {
                Some(channel) => {
                    self.invoke(
                        &conn,
                        &tl::functions::channels::DeleteMessages {
                            channel: channel.clone(),
                            id: batch.to_vec(),
                        },
                    )
                    .await?;
                }
                None => {
                    // Outside channels message ids are per account: delete only ids that
                    // really are in this chat.
                    let messages = self.get_raw_messages(&conn, &target, batch).await?;
                    let ours: Vec<i32> = messages
                        .iter()
                        .filter(|m| belongs(m, &target))
                        .filter_map(message_id)
                        .filter(|id| batch.contains(id))
                        .collect();
                    if ours.is_empty() {
                        continue;
                    }
                    self.invoke(
                        &conn,
                        &tl::functions::messages::DeleteMessages {
                            revoke: true,
                            id: ours,
                        },
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn pin(&self, id: i32) -> Result<(), TgError> {
        let (conn, target, _) = self.ready()?;
        self.invoke(
            &conn,
            &tl::functions::messages::UpdatePinnedMessage {
                silent: true,
                unpin: false,
                pm_oneside: false,
                peer: target.peer.clone(),
                id,
            },
        )
        .await
        .map(drop)
    }

    async fn pinned(&self) -> Result<Option<MessageInfo>, TgError> {
        let (conn, target, bot) = self.ready()?;
        if !bot {
            let found = self
                .invoke(
                    &conn,
                    &tl::functions::messages::Search {
                        peer: target.peer.clone(),
                        q: String::new(),
                        from_id: None,
                        saved_peer_id: None,
                        saved_reaction: None,
                        top_msg_id: None,
                        filter: tl::enums::MessagesFilter::InputMessagesFilterPinned,
                        min_date: 0,
                        max_date: 0,
                        offset_id: 0,
                        add_offset: 0,
                        limit: 1,
                        max_id: 0,
                        min_id: 0,
                        hash: 0,
                    },
                )
                .await?;
            return Ok(messages_of(found)
                .iter()
                .filter(|m| belongs(m, &target))
                .find_map(message_info));
        }
        let Some(channel) = &target.channel else {
            return Err(TgError::BotMethodInvalid);
        };
        let tl::enums::messages::ChatFull::Full(full) = self
            .invoke(
                &conn,
                &tl::functions::channels::GetFullChannel {
                    channel: channel.clone(),
                },
            )
            .await?;
        let pinned = match full.full_chat {
            tl::enums::ChatFull::ChannelFull(c) => c.pinned_msg_id,
            _ => None,
        };
        let Some(id) = pinned else {
            return Ok(None);
        };
        let messages = self.get_raw_messages(&conn, &target, &[id]).await?;
        Ok(arrange(&messages, &target, &[id]).pop().flatten())
    }
}

/// The document to send for a finished upload.
fn uploaded_document(upload: &UploadRef, name: &str) -> tl::enums::InputMedia {
    let file = if upload.big {
        tl::types::InputFileBig {
            id: upload.file_id,
            parts: upload.total_chunks as i32,
            name: name.to_owned(),
        }
        .into()
    } else {
        tl::types::InputFile {
            id: upload.file_id,
            parts: upload.total_chunks as i32,
            name: name.to_owned(),
            md5_checksum: String::new(),
        }
        .into()
    };
    tl::types::InputMediaUploadedDocument {
        nosound_video: false,
        force_file: true,
        spoiler: false,
        file,
        thumb: None,
        mime_type: "application/octet-stream".into(),
        attributes: vec![
            tl::types::DocumentAttributeFilename {
                file_name: name.to_owned(),
            }
            .into(),
        ],
        stickers: None,
        video_cover: None,
        video_timestamp: None,
        ttl_seconds: None,
    }
    .into()
}

fn messages_of(messages: tl::enums::messages::Messages) -> Vec<tl::enums::Message> {
    use tl::enums::messages::Messages as M;
    match messages {
        M::Messages(m) => m.messages,
        M::Slice(m) => m.messages,
        M::ChannelMessages(m) => m.messages,
        M::NotModified(_) => Vec::new(),
    }
}

fn message_id(message: &tl::enums::Message) -> Option<i32> {
    match message {
        tl::enums::Message::Empty(_) => None,
        tl::enums::Message::Message(m) => Some(m.id),
        tl::enums::Message::Service(m) => Some(m.id),
    }
}

/// Whether a (non-empty) message is in the target chat.
fn belongs(message: &tl::enums::Message, target: &Target) -> bool {
    match message {
        tl::enums::Message::Empty(_) => false,
        tl::enums::Message::Message(m) => PeerId::from(&m.peer_id) == target.id,
        tl::enums::Message::Service(m) => PeerId::from(&m.peer_id) == target.id,
    }
}

/// The messages for `ids`, in order: `None` where Telegram has none in this chat.
fn arrange(
    messages: &[tl::enums::Message],
    target: &Target,
    ids: &[i32],
) -> Vec<Option<MessageInfo>> {
    let by_id: HashMap<i32, MessageInfo> = messages
        .iter()
        .filter(|m| belongs(m, target))
        .filter_map(message_info)
        .map(|m| (m.id, m))
        .collect();
    ids.iter().map(|id| by_id.get(id).cloned()).collect()
}

/// What the store sees of a message (`None` for an empty one). Service messages (a pin,
/// a title change) count as messages without text.
pub(crate) fn message_info(message: &tl::enums::Message) -> Option<MessageInfo> {
    match message {
        tl::enums::Message::Empty(_) => None,
        tl::enums::Message::Message(m) => Some(MessageInfo {
            id: m.id,
            date: i64::from(m.date),
            text: m.message.clone(),
            document: m.media.as_ref().and_then(document_info),
        }),
        tl::enums::Message::Service(m) => Some(MessageInfo {
            id: m.id,
            date: i64::from(m.date),
            text: String::new(),
            document: None,
        }),
    }
}

/// The document of a message's media, if it has one.
pub(crate) fn document_info(media: &tl::enums::MessageMedia) -> Option<DocumentInfo> {
    let doc = document_of(media)?;
    let name = doc
        .attributes
        .iter()
        .find_map(|a| match a {
            tl::enums::DocumentAttribute::Filename(f) => Some(f.file_name.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Some(DocumentInfo {
        name,
        size: u64::try_from(doc.size).unwrap_or(0),
    })
}

fn document_of(media: &tl::enums::MessageMedia) -> Option<&tl::types::Document> {
    match media {
        tl::enums::MessageMedia::Document(md) => match md.document.as_ref()? {
            tl::enums::Document::Document(d) => Some(d),
            tl::enums::Document::Empty(_) => None,
        },
        _ => None,
    }
}

fn document_location(message: &tl::enums::Message) -> Option<FileLocation> {
    let tl::enums::Message::Message(m) = message else {
        return None;
    };
    let doc = document_of(m.media.as_ref()?)?;
    Some(FileLocation {
        location: tl::types::InputDocumentFileLocation {
            id: doc.id,
            access_hash: doc.access_hash,
            file_reference: doc.file_reference.clone(),
            thumb_size: String::new(),
        }
        .into(),
        dc_id: doc.dc_id,
    })
}

/// The message a send created, from the `Updates` Telegram answered with: the id reported
/// for `random_id`, and the new message with that id. When only the id and date come back
/// (`updateShortSentMessage`), `text` and `document` fill in what was sent.
pub(crate) fn sent_message(
    updates: &tl::enums::Updates,
    random_id: i64,
    text: &str,
    document: Option<DocumentInfo>,
) -> Result<MessageInfo, TgError> {
    use tl::enums::{Update, Updates};
    let list: Vec<&Update> = match updates {
        Updates::Updates(u) => u.updates.iter().collect(),
        Updates::Combined(u) => u.updates.iter().collect(),
        Updates::UpdateShort(u) => vec![&u.update],
        Updates::UpdateShortSentMessage(s) => {
            return Ok(MessageInfo {
                id: s.id,
                date: i64::from(s.date),
                text: text.to_owned(),
                document: s.media.as_ref().and_then(document_info).or(document),
            });
        }
        Updates::TooLong | Updates::UpdateShortMessage(_) | Updates::UpdateShortChatMessage(_) => {
            Vec::new()
        }
    };
    let id = list.iter().find_map(|u| match u {
        Update::MessageId(m) if m.random_id == random_id => Some(m.id),
        _ => None,
    });
    let new_messages = list.iter().filter_map(|u| match u {
        Update::NewMessage(m) => Some(&m.message),
        Update::NewChannelMessage(m) => Some(&m.message),
        _ => None,
    });
    // Without the random id's update, only a message that is exactly what we sent (text or
    // caption, document name and size) and the only such one is taken: recording another
    // message's id for a part would lose the part.
    let mut found = None;
    let mut candidates = 0;
    for message in new_messages {
        let Some(info) = message_info(message) else {
            continue;
        };
        match id {
            Some(id) if info.id == id => return Ok(info),
            None if is_outgoing(message) && is_what_we_sent(&info, text, document.as_ref()) => {
                candidates += 1;
                found = Some(info);
            }
            _ => {}
        }
    }
    match (found, candidates) {
        (Some(info), 1) => Ok(info),
        _ => Err(TgError::Other(
            "Telegram did not report the sent message unambiguously".into(),
        )),
    }
}

/// Whether `info` has the text and document (name and size) we sent.
fn is_what_we_sent(info: &MessageInfo, text: &str, document: Option<&DocumentInfo>) -> bool {
    let same_doc = match (document, &info.document) {
        (None, None) => true,
        (Some(a), Some(b)) => a.name == b.name && a.size == b.size,
        _ => false,
    };
    same_doc && info.text.trim() == text.trim()
}

fn is_outgoing(message: &tl::enums::Message) -> bool {
    match message {
        tl::enums::Message::Message(m) => m.out || m.post,
        _ => false,
    }
}

/// Maps an RPC error, by its name (digits taken out, as grammers does) and value.
pub fn map_rpc(name: &str, value: Option<u32>) -> TgError {
    // Accept names that still carry their number (FLOOD_WAIT_31).
    if value.is_none() && name.contains(|c: char| c.is_ascii_digit()) {
        let parsed = RpcError::from(tl::types::RpcError {
            error_code: 400,
            error_message: name.to_owned(),
        });
        if parsed.value.is_some() {
            return map_rpc(&parsed.name, parsed.value);
        }
    }
    let named = || match value {
        Some(v) => format!("{name} ({v})"),
        None => name.to_owned(),
    };
    let wait = |kind| TgError::Wait {
        seconds: value.unwrap_or(1),
        kind,
    };
    match name {
        "FLOOD_WAIT" | "FLOOD_TEST_PHONE_WAIT" => wait(WaitKind::Flood),
        "FLOOD_PREMIUM_WAIT" => wait(WaitKind::PremiumFlood),
        "SLOWMODE_WAIT" => wait(WaitKind::SlowMode),
        "FILE_PART_MISSING" => match value {
            Some(chunk) => TgError::ChunkMissing { chunk },
            None => TgError::Invalid(name.to_owned()),
        },
        "AUTH_KEY_DUPLICATED" => TgError::SessionInUse,
        "AUTH_KEY_UNREGISTERED"
        | "AUTH_KEY_INVALID"
        | "AUTH_KEY_PERM_EMPTY"
        | "SESSION_REVOKED"
        | "SESSION_EXPIRED"
        | "SESSION_PASSWORD_NEEDED"
        | "USER_DEACTIVATED"
        | "USER_DEACTIVATED_BAN"
        | "ACCESS_TOKEN_INVALID"
        | "ACCESS_TOKEN_EXPIRED"
        | "API_ID_INVALID"
        | "API_ID_PUBLISHED_FLOOD"
        | "BOT_TOKEN_INVALID" => TgError::Unauthorized(format!(
            "{name}: check the api id and hash and the bot token, or make a new session with `tgferry telegram login`"
        )),
        "CHANNEL_INVALID"
        | "CHANNEL_PRIVATE"
        | "PEER_ID_INVALID"
        | "USERNAME_NOT_OCCUPIED"
        | "USERNAME_INVALID"
        | "CHAT_ID_INVALID"
        | "CHANNEL_PUBLIC_GROUP_NA"
        | "INPUT_USER_DEACTIVATED" => TgError::ChatNotFound(name.to_owned()),
        "CHAT_WRITE_FORBIDDEN"
        | "CHAT_ADMIN_REQUIRED"
        | "MESSAGE_DELETE_FORBIDDEN"
        | "MESSAGE_AUTHOR_REQUIRED"
        | "MESSAGE_EDIT_TIME_EXPIRED"
        | "CHAT_SEND_MEDIA_FORBIDDEN"
        | "CHAT_SEND_DOCS_FORBIDDEN"
        | "CHAT_SEND_PLAIN_FORBIDDEN"
        | "CHAT_FORBIDDEN"
        | "CHAT_RESTRICTED"
        | "USER_BANNED_IN_CHANNEL"
        | "PIN_RESTRICTED"
        | "RIGHT_FORBIDDEN" => TgError::Forbidden(name.to_owned()),
        "BOT_METHOD_INVALID" => TgError::BotMethodInvalid,
        "FILE_PARTS_INVALID"
        | "FILE_PART_SIZE_INVALID"
        | "FILE_PART_SIZE_CHANGED"
        | "FILE_PART_INVALID"
        | "FILE_PART_TOO_BIG"
        | "FILE_PART_EMPTY"
        | "FILE_ID_INVALID"
        | "FILE_REFERENCE_EXPIRED"
        | "FILE_REFERENCE_INVALID"
        | "LIMIT_INVALID"
        | "OFFSET_INVALID"
        | "MESSAGE_NOT_MODIFIED"
        | "MESSAGE_ID_INVALID"
        | "MESSAGE_IDS_EMPTY"
        | "MESSAGE_EMPTY"
        | "MESSAGE_TOO_LONG"
        | "MEDIA_CAPTION_TOO_LONG"
        | "MEDIA_EMPTY"
        | "MEDIA_INVALID"
        | "RANDOM_ID_DUPLICATE"
        | "CDN_REDIRECT_UNSUPPORTED" => TgError::Invalid(name.to_owned()),
        _ => TgError::Other(named()),
    }
}

/// Maps any grammers error: RPC errors by [`map_rpc`] (server-side failures and timeouts,
/// codes 500 and up or negative, as [`TgError::Disconnected`]), lost connections as
/// [`TgError::Disconnected`].
pub(crate) fn map_invocation(error: &InvocationError) -> TgError {
    match error {
        InvocationError::Rpc(rpc) => match map_rpc(&rpc.name, rpc.value) {
            TgError::Other(m) if rpc.code >= 500 || rpc.code < 0 => {
                TgError::Disconnected(format!("Telegram failed the request ({m})"))
            }
            mapped => mapped,
        },
        InvocationError::Io(_)
        | InvocationError::Transport(_)
        | InvocationError::Dropped(_)
        | InvocationError::Deserialize(_)
        | InvocationError::Authentication(_) => TgError::Disconnected(error.to_string()),
        InvocationError::InvalidDc => {
            TgError::Other("Telegram pointed to an unknown data centre".into())
        }
        InvocationError::Session(_) => TgError::Other("the session storage failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i32, message: &str) -> InvocationError {
        InvocationError::Rpc(RpcError::from(tl::types::RpcError {
            error_code: code,
            error_message: message.into(),
        }))
    }

    #[test]
    fn rpc_errors_map_by_what_the_caller_does() {
        let wait = |seconds, kind| TgError::Wait { seconds, kind };
        assert_eq!(
            map_invocation(&rpc(420, "FLOOD_WAIT_31")),
            wait(31, WaitKind::Flood)
        );
        assert_eq!(
            map_invocation(&rpc(420, "FLOOD_PREMIUM_WAIT_7")),
            wait(7, WaitKind::PremiumFlood)
        );
        assert_eq!(
            map_invocation(&rpc(420, "SLOWMODE_WAIT_300")),
            wait(300, WaitKind::SlowMode)
        );
        assert_eq!(map_rpc("FLOOD_WAIT_5", None), wait(5, WaitKind::Flood));
        assert_eq!(
            map_invocation(&rpc(400, "FILE_PART_17_MISSING")),
            TgError::ChunkMissing { chunk: 17 }
        );
        assert_eq!(
            map_rpc("FILE_PART_0_MISSING", None),
            TgError::ChunkMissing { chunk: 0 }
        );
        for name in [
            "AUTH_KEY_UNREGISTERED",
            "SESSION_REVOKED",
            "USER_DEACTIVATED",
            "ACCESS_TOKEN_INVALID",
            "API_ID_INVALID",
            "AUTH_KEY_INVALID",
        ] {
            assert!(
                matches!(map_invocation(&rpc(401, name)), TgError::Unauthorized(m) if m.contains(name)),
                "{name}"
            );
        }
        assert_eq!(
            map_invocation(&rpc(406, "AUTH_KEY_DUPLICATED")),
            TgError::SessionInUse
        );
        for name in [
            "CHANNEL_INVALID",
            "CHANNEL_PRIVATE",
            "PEER_ID_INVALID",
            "USERNAME_NOT_OCCUPIED",
            "USERNAME_INVALID",
        ] {
            assert_eq!(map_rpc(name, None), TgError::ChatNotFound(name.into()));
        }
        for name in [
            "CHAT_WRITE_FORBIDDEN",
            "CHAT_ADMIN_REQUIRED",
            "MESSAGE_DELETE_FORBIDDEN",
            "CHAT_SEND_MEDIA_FORBIDDEN",
        ] {
            assert_eq!(map_rpc(name, None), TgError::Forbidden(name.into()));
        }
        assert_eq!(
            map_invocation(&rpc(400, "BOT_METHOD_INVALID")),
            TgError::BotMethodInvalid
        );
        for name in [
            "FILE_PARTS_INVALID",
            "FILE_PART_SIZE_INVALID",
            "LIMIT_INVALID",
            "OFFSET_INVALID",
            "MESSAGE_NOT_MODIFIED",
        ] {
            assert_eq!(
                map_invocation(&rpc(400, name)),
                TgError::Invalid(name.into())
            );
        }
        assert_eq!(
            map_invocation(&rpc(400, "SOMETHING_NEW")),
            TgError::Other("SOMETHING_NEW".into())
        );
        assert_eq!(
            map_rpc("FILE_MIGRATE", Some(4)),
            TgError::Other("FILE_MIGRATE (4)".into())
        );
        assert!(matches!(
            map_invocation(&rpc(500, "INTERDC_2_CALL_ERROR")),
            TgError::Disconnected(_)
        ));
        assert!(matches!(
            map_invocation(&rpc(-503, "Timeout")),
            TgError::Disconnected(_)
        ));
    }

    #[test]
    fn transport_errors_are_disconnections() {
        let io = InvocationError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(map_invocation(&io), TgError::Disconnected(_)));
        assert!(matches!(
            map_invocation(&InvocationError::Dropped("runner gone")),
            TgError::Disconnected(_)
        ));
    }

    fn document(name: Option<&str>, size: i64) -> tl::enums::MessageMedia {
        let mut attributes: Vec<tl::enums::DocumentAttribute> =
            vec![tl::types::DocumentAttributeImageSize { w: 1, h: 1 }.into()];
        if let Some(name) = name {
            attributes.push(
                tl::types::DocumentAttributeFilename {
                    file_name: name.into(),
                }
                .into(),
            );
        }
        tl::types::MessageMediaDocument {
            nopremium: false,
            spoiler: false,
            video: false,
            round: false,
            voice: false,
            document: Some(
                tl::types::Document {
                    id: 77,
                    access_hash: 88,
                    file_reference: vec![1, 2, 3],
                    date: 1_700_000_000,
                    mime_type: "application/octet-stream".into(),
                    size,
                    thumbs: None,
                    video_thumbs: None,
                    dc_id: 4,
                    attributes,
                }
                .into(),
            ),
            alt_documents: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into()
    }

    fn message(
        id: i32,
        peer: tl::enums::Peer,
        text: &str,
        media: Option<tl::enums::MessageMedia>,
    ) -> tl::enums::Message {
        tl::types::Message {
            out: true,
            mentioned: false,
            media_unread: false,
            silent: false,
            post: false,
            from_scheduled: false,
            legacy: false,
            edit_hide: false,
            pinned: false,
            noforwards: false,
            invert_media: false,
            offline: false,
            video_processing_pending: false,
            paid_suggested_post_stars: false,
            paid_suggested_post_ton: false,
            id,
            from_id: None,
            from_boosts_applied: None,
            from_rank: None,
            peer_id: peer,
            saved_peer_id: None,
            fwd_from: None,
            via_bot_id: None,
            via_business_bot_id: None,
            guestchat_via_from: None,
            reply_to: None,
            date: 1_700_000_123,
            message: text.into(),
            media,
            reply_markup: None,
            entities: None,
            views: None,
            forwards: None,
            replies: None,
            edit_date: None,
            post_author: None,
            grouped_id: None,
            reactions: None,
            restriction_reason: None,
            ttl_period: None,
            quick_reply_shortcut_id: None,
            effect: None,
            factcheck: None,
            report_delivery_until_date: None,
            paid_message_stars: None,
            suggested_post: None,
            schedule_repeat_period: None,
            summary_from_language: None,
            rich_message: None,
        }
        .into()
    }

    fn channel_peer(id: i64) -> tl::enums::Peer {
        tl::types::PeerChannel { channel_id: id }.into()
    }

    fn channel_target(id: i64) -> Target {
        target_of(PeerRef {
            id: PeerId::channel(id).unwrap(),
            auth: PeerAuth::from_hash(5),
        })
    }

    #[test]
    fn messages_and_documents_convert() {
        let m = message(
            12,
            channel_peer(99),
            "caption",
            Some(document(Some("part-0001.bin"), 3 << 20)),
        );
        assert_eq!(
            message_info(&m),
            Some(MessageInfo {
                id: 12,
                date: 1_700_000_123,
                text: "caption".into(),
                document: Some(DocumentInfo {
                    name: "part-0001.bin".into(),
                    size: 3 << 20,
                }),
            })
        );
        let unnamed = message(13, channel_peer(99), "", Some(document(None, 5)));
        assert_eq!(
            message_info(&unnamed).unwrap().document,
            Some(DocumentInfo {
                name: String::new(),
                size: 5
            })
        );
        let text = message(14, channel_peer(99), "index", None);
        assert_eq!(message_info(&text).unwrap().document, None);
        let empty: tl::enums::Message = tl::types::MessageEmpty {
            id: 15,
            peer_id: None,
        }
        .into();
        assert_eq!(message_info(&empty), None);

        let location = document_location(&m).unwrap();
        assert_eq!(location.dc_id, 4);
        match location.location {
            tl::enums::InputFileLocation::InputDocumentFileLocation(l) => {
                assert_eq!(
                    (l.id, l.access_hash, l.file_reference),
                    (77, 88, vec![1, 2, 3])
                );
            }
            _ => panic!("not a document location"),
        }
        assert!(document_location(&text).is_none());
    }

    #[test]
    fn get_messages_keeps_order_and_drops_other_chats() {
        let target = channel_target(99);
        let messages = vec![
            message(3, channel_peer(99), "three", None),
            tl::types::MessageEmpty {
                id: 2,
                peer_id: None,
            }
            .into(),
            message(1, channel_peer(99), "one", None),
            message(4, channel_peer(100), "elsewhere", None),
        ];
        let got = arrange(&messages, &target, &[1, 2, 3, 4, 5]);
        let texts: Vec<Option<&str>> = got
            .iter()
            .map(|m| m.as_ref().map(|m| m.text.as_str()))
            .collect();
        assert_eq!(texts, [Some("one"), None, Some("three"), None, None]);

        let me = Target {
            peer: tl::enums::InputPeer::PeerSelf,
            channel: None,
            id: PeerId::user(42).unwrap(),
        };
        let saved = message(7, tl::types::PeerUser { user_id: 42 }.into(), "mine", None);
        let private = message(
            8,
            tl::types::PeerUser { user_id: 43 }.into(),
            "theirs",
            None,
        );
        assert!(belongs(&saved, &me));
        assert!(!belongs(&private, &me));
    }

    #[test]
    fn sent_messages_are_found_in_updates() {
        let sent = message(
            21,
            channel_peer(99),
            "cap",
            Some(document(Some("a.bin"), 10)),
        );
        let other = message(20, channel_peer(99), "someone else's", None);
        let updates: tl::enums::Updates = tl::types::Updates {
            updates: vec![
                tl::types::UpdateMessageId {
                    id: 21,
                    random_id: 555,
                }
                .into(),
                tl::types::UpdateNewChannelMessage {
                    message: other,
                    pts: 1,
                    pts_count: 1,
                }
                .into(),
                tl::types::UpdateNewChannelMessage {
                    message: sent,
                    pts: 2,
                    pts_count: 1,
                }
                .into(),
            ],
            users: vec![],
            chats: vec![],
            date: 0,
            seq: 0,
        }
        .into();
        let info = sent_message(&updates, 555, "cap", None).unwrap();
        assert_eq!(info.id, 21);
        assert_eq!(info.document.unwrap().name, "a.bin");

        let short: tl::enums::Updates = tl::types::UpdateShortSentMessage {
            out: true,
            id: 30,
            pts: 1,
            pts_count: 1,
            date: 1_700_000_999,
            media: None,
            entities: None,
            ttl_period: None,
        }
        .into();
        assert_eq!(
            sent_message(&short, 1, "hello", None).unwrap(),
            MessageInfo {
                id: 30,
                date: 1_700_000_999,
                text: "hello".into(),
                document: None
            }
        );
        assert!(matches!(
            sent_message(&tl::enums::Updates::TooLong, 1, "x", None),
            Err(TgError::Other(_))
        ));
    }

    #[test]
    fn without_the_random_id_only_the_one_exact_message_is_taken() {
        let wrap = |messages: Vec<tl::enums::Message>| -> tl::enums::Updates {
            tl::types::Updates {
                updates: messages
                    .into_iter()
                    .enumerate()
                    .map(|(i, message)| {
                        tl::types::UpdateNewChannelMessage {
                            message,
                            pts: i as i32,
                            pts_count: 1,
                        }
                        .into()
                    })
                    .collect(),
                users: vec![],
                chats: vec![],
                date: 0,
                seq: 0,
            }
            .into()
        };
        let ours = DocumentInfo {
            name: "a.bin".into(),
            size: 10,
        };
        // Another part sent at the same time, then ours.
        let other = message(40, channel_peer(9), "", Some(document(Some("b.bin"), 10)));
        let sent = message(41, channel_peer(9), "", Some(document(Some("a.bin"), 10)));
        let updates = wrap(vec![other.clone(), sent.clone()]);
        let info = sent_message(&updates, 1, "", Some(ours.clone())).unwrap();
        assert_eq!(info.id, 41);
        // Only someone else's message: never taken for ours.
        assert!(sent_message(&wrap(vec![other]), 1, "", Some(ours.clone())).is_err());
        // Two that look the same: ambiguous.
        let twin = message(42, channel_peer(9), "", Some(document(Some("a.bin"), 10)));
        assert!(sent_message(&wrap(vec![sent, twin]), 1, "", Some(ours)).is_err());
    }

    #[test]
    fn uploads_become_documents() {
        let small = UploadRef {
            file_id: 9,
            size: 100,
            total_chunks: 1,
            big: false,
        };
        let tl::enums::InputMedia::UploadedDocument(doc) = uploaded_document(&small, "p.bin")
        else {
            panic!("not an uploaded document");
        };
        assert!(doc.force_file);
        assert_eq!(doc.mime_type, "application/octet-stream");
        assert!(matches!(doc.file, tl::enums::InputFile::File(ref f) if f.parts == 1 && f.id == 9));
        let big = UploadRef {
            file_id: 9,
            size: 11 << 20,
            total_chunks: 22,
            big: true,
        };
        let tl::enums::InputMedia::UploadedDocument(doc) = uploaded_document(&big, "p.bin") else {
            panic!("not an uploaded document");
        };
        assert!(matches!(doc.file, tl::enums::InputFile::Big(ref f) if f.parts == 22));
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let api = GrammersApi::new(GrammersConfig {
            api_id: 1,
            api_hash: SecretString::from("hash-secret-value"),
            credential: Credential::BotToken(SecretString::from("123:token-secret-value")),
            chat: ChatRef::Me,
        });
        let shown = format!("{api:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
        let config = GrammersConfig {
            api_id: 1,
            api_hash: SecretString::from("hash-secret-value"),
            credential: Credential::Session(PortableSession::new()),
            chat: ChatRef::Id(-1001234),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }

    #[tokio::test]
    async fn calls_before_connect_fail_cleanly() {
        let api = GrammersApi::new(GrammersConfig {
            api_id: 1,
            api_hash: SecretString::from("x"),
            credential: Credential::Session(PortableSession::new()),
            chat: ChatRef::Me,
        });
        assert!(matches!(api.latest_id().await, Err(TgError::Other(_))));
        assert!(matches!(api.reconnect().await, Err(TgError::Other(_))));
        // A session without keys is refused before any network access.
        assert!(matches!(api.connect().await, Err(TgError::Unauthorized(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_becomes_a_disconnection() {
        let stalled = within_time(std::future::pending::<()>()).await;
        assert!(matches!(stalled, Err(TgError::Disconnected(_))));
        assert_eq!(within_time(async { 5 }).await, Ok(5));
    }

    #[tokio::test]
    async fn a_session_in_use_is_refused_before_any_network() {
        let mut key = [0u8; 256];
        getrandom::fill(&mut key).unwrap();
        let session = PortableSession::with_key(2, key);
        let held = SessionLock::acquire(&session).unwrap();
        let api = GrammersApi::new(GrammersConfig {
            api_id: 1,
            api_hash: SecretString::from("x"),
            credential: Credential::Session(session.shared()),
            chat: ChatRef::Me,
        });
        assert_eq!(api.connect().await, Err(TgError::SessionInUse));
        drop(held);
    }
}
