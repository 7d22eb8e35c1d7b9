//! The portable Telegram session: the authorization keys of a signed-in user account held in
//! memory ([`PortableSession`], grammers' session storage), its one-line paste-able form
//! (`tgferry-session-v1:…`, what `TGFERRY_TG_SESSION` carries in CI) and the lock that keeps
//! two processes from using one session at once ([`SessionLock`]).
//!
//! The session never touches the disk: it is imported from the environment, lives in memory
//! and is exported once, by `tgferry telegram login`. Keys never appear in `Debug` output or
//! in error messages.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use grammers_client::session::types::{
    ChannelState, DcOption, PeerAuth, PeerId, PeerInfo, UpdateState, UpdatesState,
};
use grammers_client::session::{BoxFuture, Session, SessionData};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What every exported session starts with (the version of the format after it).
pub const SESSION_PREFIX: &str = "tgferry-session-v1:";

/// Why a session could not be imported or locked. Messages name `TGFERRY_TG_SESSION` and the
/// fix, and never contain the session text.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The text is not an exported session (the detail never quotes it).
    #[error(
        "TGFERRY_TG_SESSION is not a tgferry Telegram session ({0}); create one with `tgferry telegram login` and paste its whole output line"
    )]
    Malformed(String),
    /// Another live process holds the session.
    #[error(
        "the Telegram session in TGFERRY_TG_SESSION is in use by another process (pid {pid}); a session must never be used by two processes at once: wait for it, or create a second session with `tgferry telegram login`"
    )]
    InUse {
        /// The process holding the lock.
        pid: u32,
    },
    /// The lock file could not be created or read.
    #[error(
        "cannot lock the Telegram session from TGFERRY_TG_SESSION (a lock file in the temporary directory): {0}"
    )]
    Io(#[from] io::Error),
}

/// Everything the session holds; shared by the clones handed to grammers.
struct Data {
    home_dc: i32,
    dc_options: HashMap<i32, DcOption>,
    self_user: Option<PeerInfo>,
    peers: HashMap<PeerId, PeerInfo>,
    updates: UpdatesState,
    /// Channels resolved at login: bare id → access hash.
    chats: std::collections::BTreeMap<i64, i64>,
}

impl Drop for Data {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for dc in self.dc_options.values_mut() {
            if let Some(key) = dc.auth_key.as_mut() {
                key.zeroize();
            }
        }
    }
}

/// A Telegram session held in memory: the authorization key of each data centre, the home
/// data centre and the signed-in user. It is grammers' session storage ([`Session`]), so a
/// client signs in and connects through it; [`PortableSession::export`] turns it into one
/// line of text and [`PortableSession::import`] back.
pub struct PortableSession {
    data: Arc<Mutex<Data>>,
}

impl Default for PortableSession {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PortableSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortableSession { .. }")
    }
}

/// The exported form (JSON inside base64).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    home_dc: i32,
    dcs: Vec<WireDc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<WireUser>,
    /// Channels resolved at login (`tgferry telegram login --chat`), so that a run needs
    /// no scan of the account's dialogs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chats: Vec<WireChat>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireChat {
    /// The bare channel id (without `-100`).
    id: i64,
    access_hash: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDc {
    id: i32,
    ipv4: String,
    ipv6: String,
    /// Base64 of the 256-byte key.
    key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireUser {
    id: i64,
    access_hash: Option<i64>,
    bot: bool,
}

fn malformed(detail: &str) -> SessionError {
    SessionError::Malformed(detail.to_owned())
}

impl PortableSession {
    /// An empty session (no keys, no user), for logging in and for bots.
    pub fn new() -> Self {
        let defaults = SessionData::default();
        PortableSession {
            data: Arc::new(Mutex::new(Data {
                home_dc: defaults.home_dc,
                dc_options: defaults.dc_options,
                self_user: None,
                peers: HashMap::new(),
                updates: UpdatesState::default(),
                chats: std::collections::BTreeMap::new(),
            })),
        }
    }

    /// Parses the text [`PortableSession::export`] produced (surrounding whitespace ignored).
    pub fn import(text: &str) -> Result<Self, SessionError> {
        let text = text.trim();
        let Some(body) = text.strip_prefix(SESSION_PREFIX) else {
            return Err(malformed(if text.is_empty() {
                "it is empty"
            } else if text.starts_with("tgferry-session-") {
                "it is from another version of tgferry"
            } else {
                "it does not start with `tgferry-session-v1:`"
            }));
        };
        let json = Zeroizing::new(decode_base64(body.trim()).ok_or_else(|| {
            malformed("the text after `tgferry-session-v1:` is not base64; was it cut short?")
        })?);
        let wire: Wire = serde_json::from_slice(&json).map_err(|e| {
            // serde_json messages can quote the input: say only where it went wrong.
            SessionError::Malformed(format!(
                "its content does not decode ({:?} error at column {})",
                e.classify(),
                e.column()
            ))
        })?;
        let session = PortableSession::new();
        {
            let mut data = session.lock();
            for dc in &wire.dcs {
                let key = Zeroizing::new(
                    decode_base64(&dc.key).ok_or_else(|| malformed("a key is not base64"))?,
                );
                let key: [u8; 256] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed("a key is not 256 bytes long"))?;
                let ipv4: SocketAddrV4 = dc
                    .ipv4
                    .parse()
                    .map_err(|_| malformed("a data centre address is not IPv4"))?;
                let ipv6: SocketAddrV6 = dc
                    .ipv6
                    .parse()
                    .map_err(|_| malformed("a data centre address is not IPv6"))?;
                if !(1..=1000).contains(&dc.id) {
                    return Err(malformed("a data centre id is out of range"));
                }
                data.dc_options.insert(
                    dc.id,
                    DcOption {
                        id: dc.id,
                        ipv4,
                        ipv6,
                        auth_key: Some(key),
                    },
                );
            }
            if !data.dc_options.contains_key(&wire.home_dc) {
                return Err(malformed("its home data centre is unknown"));
            }
            data.home_dc = wire.home_dc;
            if let Some(user) = wire.user {
                if PeerId::user(user.id).is_none() {
                    return Err(malformed("its user id is out of range"));
                }
                let info = PeerInfo::User {
                    id: user.id,
                    auth: user.access_hash.map(PeerAuth::from_hash),
                    bot: Some(user.bot),
                    is_self: Some(true),
                };
                data.peers.insert(info.id(), info.clone());
                data.self_user = Some(info);
            }
            for chat in &wire.chats {
                if PeerId::channel(chat.id).is_none() {
                    return Err(malformed("a chat id is out of range"));
                }
                data.chats.insert(chat.id, chat.access_hash);
            }
        }
        if !session.has_home_key() {
            return Err(malformed("it holds no key for its home data centre"));
        }
        Ok(session)
    }

    /// The one-line paste-able form: [`SESSION_PREFIX`] and base64 of the keys, the home
    /// data centre and the signed-in user.
    pub fn export(&self) -> SecretString {
        let wire = {
            let data = self.lock();
            let mut dcs: Vec<WireDc> = data
                .dc_options
                .values()
                .filter_map(|dc| {
                    dc.auth_key.as_ref().map(|key| WireDc {
                        id: dc.id,
                        ipv4: dc.ipv4.to_string(),
                        ipv6: dc.ipv6.to_string(),
                        key: STANDARD.encode(key),
                    })
                })
                .collect();
            dcs.sort_by_key(|dc| dc.id);
            let user = match &data.self_user {
                Some(PeerInfo::User { id, auth, bot, .. }) => Some(WireUser {
                    id: *id,
                    access_hash: auth.map(PeerAuth::hash),
                    bot: bot.unwrap_or(false),
                }),
                _ => None,
            };
            Wire {
                home_dc: data.home_dc,
                dcs,
                user,
                chats: data
                    .chats
                    .iter()
                    .map(|(id, hash)| WireChat {
                        id: *id,
                        access_hash: *hash,
                    })
                    .collect(),
            }
        };
        let json = Zeroizing::new(serde_json::to_vec(&wire).unwrap_or_default());
        for dc in wire.dcs {
            drop(Zeroizing::new(dc.key));
        }
        let mut text = String::with_capacity(SESSION_PREFIX.len() + json.len() * 4 / 3 + 4);
        text.push_str(SESSION_PREFIX);
        URL_SAFE_NO_PAD.encode_string(json.as_slice(), &mut text);
        SecretString::from(text)
    }

    /// Whether the session has a key for its home data centre (it was logged in or imported).
    pub fn has_home_key(&self) -> bool {
        let data = self.lock();
        data.dc_options
            .get(&data.home_dc)
            .is_some_and(|dc| dc.auth_key.is_some())
    }

    /// The signed-in user's id, if the session knows it.
    pub fn user_id(&self) -> Option<i64> {
        match &self.lock().self_user {
            Some(PeerInfo::User { id, .. }) => Some(*id),
            _ => None,
        }
    }

    /// Keeps a channel's access hash (resolved at login) in the session line.
    pub fn remember_chat(&self, channel_id: i64, access_hash: i64) {
        self.lock().chats.insert(channel_id, access_hash);
    }

    /// The access hash of a channel resolved at login, by its bare id.
    pub fn chat_access_hash(&self, channel_id: i64) -> Option<i64> {
        self.lock().chats.get(&channel_id).copied()
    }

    /// A second handle on the same session (what the grammers client is given, so that keys
    /// it creates show up in [`PortableSession::export`]).
    pub(crate) fn shared(&self) -> PortableSession {
        PortableSession {
            data: Arc::clone(&self.data),
        }
    }

    /// SHA-256 of the home key, hex; `None` without one. Names the lock file.
    fn home_key_digest(&self) -> Option<String> {
        let data = self.lock();
        let key = data.dc_options.get(&data.home_dc)?.auth_key.as_ref()?;
        Some(hex::encode(Sha256::digest(key)))
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn with_key(home_dc: i32, key: [u8; 256]) -> PortableSession {
        let session = PortableSession::new();
        {
            let mut data = session.lock();
            data.home_dc = home_dc;
            if let Some(dc) = data.dc_options.get_mut(&home_dc) {
                dc.auth_key = Some(key);
            }
        }
        session
    }
}

/// Accepts base64 with or without padding, standard or URL-safe alphabet.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

impl Session for PortableSession {
    type Error = Infallible;

    fn home_dc_id(&self) -> Result<i32, Infallible> {
        Ok(self.lock().home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), Infallible>> {
        self.lock().home_dc = dc_id;
        Box::pin(async { Ok(()) })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>, Infallible> {
        Ok(self.lock().dc_options.get(&dc_id).cloned())
    }

    fn set_dc_option(&self, dc_option: &DcOption) -> BoxFuture<'_, Result<(), Infallible>> {
        self.lock()
            .dc_options
            .insert(dc_option.id, dc_option.clone());
        Box::pin(async { Ok(()) })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, Infallible>> {
        let data = self.lock();
        let found = if peer == PeerId::self_user() {
            data.self_user.clone()
        } else {
            data.peers.get(&peer).cloned()
        };
        Box::pin(async { Ok(found) })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), Infallible>> {
        let mut data = self.lock();
        let entry = data.peers.entry(peer.id()).or_insert_with(|| peer.clone());
        entry.extend_info(&peer);
        let merged = entry.clone();
        if let PeerInfo::User {
            is_self: Some(true),
            ..
        } = merged
        {
            data.self_user = Some(merged);
        }
        Box::pin(async { Ok(()) })
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, Infallible>> {
        let state = self.lock().updates.clone();
        Box::pin(async { Ok(state) })
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), Infallible>> {
        {
            let mut data = self.lock();
            let state = &mut data.updates;
            match update {
                UpdateState::All(all) => *state = all,
                UpdateState::Primary { pts, date, seq } => {
                    state.pts = pts;
                    state.date = date;
                    state.seq = seq;
                }
                UpdateState::Secondary { qts } => state.qts = qts,
                UpdateState::Channel { id, pts } => {
                    state.channels.retain(|c| c.id != id);
                    state.channels.push(ChannelState { id, pts });
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
}

/// Keeps a session to one process: an OS lock (`flock`) on a file in the temporary
/// directory named from a SHA-256 of the home key (never the key), holding the owner's pid
/// for the message. The OS drops the lock when its process ends, however it ends, so there
/// is nothing stale to take over; the file itself is left in place (deleting it could let
/// two processes lock two different files of the same name).
///
/// Within one process the lock is shared: a chat source and a store (or several chats)
/// signed in with one session each hold it, as the connections of one client do; the
/// lock keeps other processes out.
#[derive(Debug, Clone)]
pub struct SessionLock {
    held: std::sync::Arc<HeldLock>,
}

/// The OS lock on one session's lock file, shared by this process's holders.
#[derive(Debug)]
struct HeldLock {
    path: PathBuf,
    _file: fs::File,
}

/// The session locks this process holds, by lock file.
static HELD: std::sync::Mutex<Vec<std::sync::Weak<HeldLock>>> = std::sync::Mutex::new(Vec::new());

impl SessionLock {
    /// Takes the lock for `session` (or shares it, when this process holds it already);
    /// [`SessionError::InUse`] if another process holds it.
    pub fn acquire(session: &PortableSession) -> Result<SessionLock, SessionError> {
        let digest = session
            .home_key_digest()
            .ok_or_else(|| malformed("it holds no key for its home data centre"))?;
        let path = std::env::temp_dir().join(format!("tgferry-session-{}.lock", &digest[..32]));
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|h| h.strong_count() > 0);
        if let Some(shared) = held
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|h| h.path == path)
        {
            return Ok(SessionLock { held: shared });
        }
        let lock = std::sync::Arc::new(Self::acquire_at(path)?);
        held.push(std::sync::Arc::downgrade(&lock));
        Ok(SessionLock { held: lock })
    }

    fn acquire_at(path: PathBuf) -> Result<HeldLock, SessionError> {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // Tried over about 100 ms, as the state's lock is: a child process of this one
        // holds the lock between its fork and its exec.
        if !crate::state::try_lock_briefly(&file)? {
            let pid = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(0);
            return Err(SessionError::InUse { pid });
        }
        file.set_len(0)?;
        file.write_all(std::process::id().to_string().as_bytes())?;
        Ok(HeldLock { path, _file: file })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.held.path
    }

    /// The OS lock on `session`'s lock file, taken as another process would take it (for
    /// tests: this process's [`SessionLock::acquire`] then finds it in use).
    #[cfg(test)]
    pub(crate) fn as_another_process(session: &PortableSession) -> fs::File {
        let digest = session.home_key_digest().expect("a session with a key");
        let path = std::env::temp_dir().join(format!("tgferry-session-{}.lock", &digest[..32]));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        assert!(crate::state::try_lock_briefly(&file).unwrap());
        fs::write(&path, "4242").unwrap();
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn random_key() -> [u8; 256] {
        let mut key = [0u8; 256];
        getrandom::fill(&mut key).unwrap();
        key
    }

    #[tokio::test]
    async fn export_import_round_trip() {
        let key = random_key();
        let session = PortableSession::with_key(4, key);
        session
            .cache_peer(PeerInfo::User {
                id: 123456,
                auth: Some(PeerAuth::from_hash(-99)),
                bot: Some(false),
                is_self: Some(true),
            })
            .await
            .unwrap();
        assert!(session.has_home_key());
        let text = session.export();
        let text = text.expose_secret();
        assert!(text.starts_with(SESSION_PREFIX));
        assert!(!text.contains(char::is_whitespace));

        let back = PortableSession::import(&format!("  {text}\n")).unwrap();
        assert!(back.has_home_key());
        assert_eq!(back.home_dc_id().unwrap(), 4);
        assert_eq!(back.dc_option(4).unwrap().unwrap().auth_key, Some(key));
        assert_eq!(back.dc_option(2).unwrap().unwrap().auth_key, None);
        assert_eq!(back.user_id(), Some(123456));
        let me = back.peer(PeerId::self_user()).await.unwrap().unwrap();
        assert_eq!(me.auth(), Some(PeerAuth::from_hash(-99)));
        assert_eq!(back.export().expose_secret(), text);
    }

    #[tokio::test]
    async fn shared_handles_see_new_keys() {
        let session = PortableSession::new();
        assert!(!session.has_home_key());
        let grammers_side = session.shared();
        let mut dc = grammers_side.dc_option(2).unwrap().unwrap();
        dc.auth_key = Some(random_key());
        grammers_side.set_dc_option(&dc).await.unwrap();
        assert!(session.has_home_key());
    }

    #[test]
    fn malformed_sessions_are_refused_without_echo() {
        let secretish = "tgferry-session-v1:c2VjcmV0LXNlc3Npb24tdGV4dA";
        let good = PortableSession::with_key(2, random_key()).export();
        let good = good.expose_secret();
        let cut = &good[..good.len() / 2];
        let unknown_home = {
            let json = r#"{"home_dc":7,"dcs":[]}"#;
            format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
        };
        let no_key = format!(
            "{SESSION_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(r#"{"home_dc":2,"dcs":[]}"#)
        );
        let short_key = format!(
            "{SESSION_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(format!(
                r#"{{"home_dc":2,"dcs":[{{"id":2,"ipv4":"1.2.3.4:443","ipv6":"[::1]:443","key":"{}"}}]}}"#,
                STANDARD.encode([7u8; 10])
            ))
        );
        for bad in [
            "",
            "   ",
            "hello",
            "tgferry-session-v9:abc",
            "tgferry-session-v1:!!!not base64!!!",
            secretish,
            cut,
            &unknown_home,
            &no_key,
            &short_key,
        ] {
            let err = PortableSession::import(bad).unwrap_err();
            assert!(matches!(err, SessionError::Malformed(_)), "{bad}");
            let msg = err.to_string();
            assert!(msg.contains("TGFERRY_TG_SESSION"), "{msg}");
            assert!(msg.contains("tgferry telegram login"), "{msg}");
            if bad.len() > SESSION_PREFIX.len() {
                assert!(!msg.contains(&bad[SESSION_PREFIX.len()..]), "{msg}");
            }
            assert!(!msg.contains("secret-session-text"), "{msg}");
        }
    }

    #[test]
    fn debug_hides_keys() {
        let session = PortableSession::with_key(2, [0xAB; 256]);
        assert_eq!(format!("{session:?}"), "PortableSession { .. }");
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let key = random_key();
        let session = PortableSession::with_key(2, key);
        let lock = SessionLock::acquire(&session).unwrap();
        let name = lock
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("tgferry-session-"));
        assert!(!name.contains(&hex::encode(&key[..8])));
        assert_eq!(
            fs::read_to_string(lock.path()).unwrap(),
            std::process::id().to_string()
        );
        // This process shares it; another process is kept out while any holder lives.
        let shared = SessionLock::acquire(&session.shared()).unwrap();
        assert_eq!(shared.path(), lock.path());
        drop(lock);
        let other = std::process::Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "7"])
            .arg(shared.path())
            .arg("true")
            .status();
        if let Ok(status) = other {
            assert_eq!(status.code(), Some(7), "another process took a held lock");
        }
        drop(shared);
        let again = SessionLock::acquire(&session).unwrap();
        drop(again);
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_free() {
        let session = PortableSession::with_key(3, random_key());
        let first = SessionLock::acquire(&session).unwrap();
        let path = first.path().to_owned();
        drop(first);
        // What a killed process leaves: the file with its pid, and no OS lock on it.
        for left in ["4294967295", ""] {
            fs::write(&path, left).unwrap();
            let lock = SessionLock::acquire(&session).unwrap();
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                std::process::id().to_string()
            );
            drop(lock);
        }
    }

    #[test]
    fn lock_needs_a_key() {
        let err = SessionLock::acquire(&PortableSession::new()).unwrap_err();
        assert!(matches!(err, SessionError::Malformed(_)));
    }
}
