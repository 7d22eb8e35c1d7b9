//! The model of Telegram the server keeps: accounts, authorization keys and what each is
//! signed in as, channels (with their update logs), basic groups, per-account message
//! boxes, documents and photos and their bytes, takeout sessions, unfinished uploads,
//! pending logins and the rate-limit state. Everything a restart must keep (`--state DIR`)
//! is in [`Persisted`]; the rest is transient, as on a real server that forgets unsent
//! upload parts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::rules::SendRate;
use crate::srp::{Challenge, Verifier};
use crate::wire::crypto::AuthKey;

/// A chat as the model names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Peer {
    /// A private chat with this user (Saved Messages when it is oneself).
    User(i64),
    /// A basic group.
    Chat(i64),
    /// A channel or supergroup.
    Channel(i64),
}

/// An account: a user or a bot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: i64,
    /// Its access hash (one for every viewer, in this model).
    pub access_hash: i64,
    /// Its display name.
    pub first_name: String,
    /// Its @username.
    pub username: Option<String>,
    /// Its phone number (users).
    pub phone: Option<String>,
    /// A bot.
    pub bot: bool,
    /// Telegram Premium.
    pub premium: bool,
    /// A bot's token (`id:secret`).
    pub token: Option<String>,
    /// Its home data centre.
    pub home_dc: i32,
    /// Its two-step verification password, if it has one.
    pub password: Option<Verifier>,
}

/// An authorization key the server knows and what it is signed in as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The key (base64 in the state file).
    #[serde(with = "key_base64")]
    pub key: AuthKey,
    /// The data centre it belongs to.
    pub dc: i32,
    /// The account it is signed in as.
    pub user: Option<i64>,
    /// Used from two places at once: every request fails with AUTH_KEY_DUPLICATED.
    #[serde(default)]
    pub dead: bool,
}

mod key_base64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(key: &AuthKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key.bytes()))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AuthKey, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
        let bytes: [u8; 256] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a key is 256 bytes"))?;
        Ok(AuthKey::from_bytes(bytes))
    }
}

/// What a service message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Service {
    /// `messageActionPinMessage`, replying to the pinned message.
    Pin(i32),
}

/// Where a forwarded message came from (`messageFwdHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// The chat it was first posted in.
    pub peer: Peer,
    /// Its id there.
    pub id: i32,
    /// Its first sender.
    pub from: i64,
    /// When it was first posted.
    pub date: i64,
}

/// A message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Msg {
    /// Its id in its box or channel.
    pub id: i32,
    /// When it was sent (model time, Unix seconds).
    pub date: i64,
    /// Who sent it.
    pub from: i64,
    /// Where it is.
    pub peer: Peer,
    /// Its text or caption.
    pub text: String,
    /// Its document.
    pub doc: Option<i64>,
    /// Its photo (a message has a document or a photo, not both).
    #[serde(default)]
    pub photo: Option<i64>,
    /// Where it was forwarded from.
    #[serde(default)]
    pub fwd: Option<Forward>,
    /// A service message's action.
    pub service: Option<Service>,
    /// When it was last edited.
    pub edit_date: Option<i64>,
    /// Pinned.
    pub pinned: bool,
    /// The sender's `random_id`.
    pub random_id: Option<i64>,
}

/// A channel (broadcast) or supergroup and its messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Channel {
    /// Its id (the `-100…` form is `-1000000000000 - id`).
    pub id: i64,
    /// Its access hash.
    pub access_hash: i64,
    /// Its title.
    pub title: String,
    /// Its @username (public channels).
    pub username: Option<String>,
    /// A broadcast channel (else a supergroup).
    pub broadcast: bool,
    /// When it was made.
    pub date: i64,
    /// Its owner.
    pub creator: i64,
    /// Its administrators (besides the owner), with every right.
    pub admins: BTreeSet<i64>,
    /// Its members, the owner and administrators included.
    pub members: BTreeSet<i64>,
    /// The last message id given out.
    pub last_id: i32,
    /// Its messages.
    pub messages: BTreeMap<i32, Msg>,
    /// Its update sequence.
    pub pts: i32,
    /// What each change of `pts` was, oldest first (`updates.getChannelDifference`
    /// replays it); the last [`crate::rules::CHANNEL_LOG_MAX`] pts of them.
    #[serde(default)]
    pub log: Vec<LogEntry>,
}

/// A change of a channel's `pts`, as `updates.getChannelDifference` replays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A message was posted.
    New(i32),
    /// A message was edited (text or media).
    Edit(i32),
    /// Messages were deleted.
    Delete(Vec<i32>),
    /// Messages were pinned (`true`) or unpinned.
    Pin(Vec<i32>, bool),
}

/// One entry of a channel's update log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The channel's `pts` after the change.
    pub pts: i32,
    /// How much the change moved `pts` (`pts_count`).
    pub count: i32,
    /// What changed.
    pub change: Change,
}

impl Channel {
    /// The owner or an administrator.
    pub fn is_admin(&self, user: i64) -> bool {
        self.creator == user || self.admins.contains(&user)
    }

    /// Moves `pts` by `count` for `change` and logs it; returns the new `pts`.
    pub fn record(&mut self, change: Change, count: i32) -> i32 {
        self.pts += count;
        self.log.push(LogEntry {
            pts: self.pts,
            count,
            change,
        });
        let floor = self.pts - crate::rules::CHANNEL_LOG_MAX as i32;
        let forgotten = self
            .log
            .iter()
            .take_while(|e| e.pts - e.count < floor)
            .count();
        self.log.drain(..forgotten);
        self.pts
    }

    /// The oldest `pts` the log can replay from: below it the changes are forgotten
    /// (a model saved before the log existed, or a log past its length).
    pub fn log_start(&self) -> i32 {
        self.log.first().map_or(self.pts, |e| e.pts - e.count)
    }
}

/// A basic group. Its messages live in each member's [`MessageBox`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    /// Its id (the `-…` form is its negation).
    pub id: i64,
    /// Its title.
    pub title: String,
    /// When it was made.
    pub date: i64,
    /// Its owner.
    pub creator: i64,
    /// Its members.
    pub members: BTreeSet<i64>,
}

/// One account's messages outside channels (private chats, Saved Messages, basic
/// groups), numbered per account as Telegram does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageBox {
    /// The last message id given out.
    pub last_id: i32,
    /// The messages.
    pub messages: BTreeMap<i32, Msg>,
    /// The account's update sequence.
    pub pts: i32,
}

/// What a file posted by name becomes, picked by its extension (see
/// [`crate::Server::post_media`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaKind {
    /// A plain document with a file name.
    #[default]
    File,
    /// A photo (`messageMediaPhoto`).
    Photo,
    /// A video document (`documentAttributeVideo`).
    Video,
    /// A music document (`documentAttributeAudio`, not a voice note).
    Audio,
    /// A voice note (`documentAttributeAudio{voice}`, no file name).
    Voice,
}

/// A stored photo. Its bytes (the largest size) are in [`Blobs`] under its id, as a
/// document's are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Photo {
    /// Its id (the same id space as documents).
    pub id: i64,
    /// Its access hash.
    pub access_hash: i64,
    /// The data centre that holds its bytes.
    pub dc: i32,
    /// The size of the largest (original) size.
    pub size: u64,
    /// The name it was posted under (Telegram keeps none; tests read it).
    pub name: String,
    /// Its width and height in pixels, when the image header says.
    pub w: i32,
    /// See `w`.
    pub h: i32,
    /// When it was uploaded.
    pub date: i64,
}

/// A stored document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    /// Its id.
    pub id: i64,
    /// Its access hash.
    pub access_hash: i64,
    /// The data centre that holds its bytes.
    pub dc: i32,
    /// Its size.
    pub size: u64,
    /// Its file name.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// When it was uploaded.
    pub date: i64,
    /// What kind of document (its attributes follow from it).
    #[serde(default)]
    pub kind: MediaKind,
}

/// One listening data centre.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DcInfo {
    /// Its id.
    pub id: i32,
    /// Its TCP port on the listen address.
    pub port: u16,
}

/// Everything a restart keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// The application id clients must use.
    pub api_id: i32,
    /// The application hash.
    pub api_hash: String,
    /// The data centres.
    pub dcs: Vec<DcInfo>,
    /// The data centre new documents are stored in (`None`: where they are uploaded).
    pub file_dc: Option<i32>,
    /// Accounts.
    pub users: BTreeMap<i64, User>,
    /// Authorization keys.
    pub keys: Vec<KeyEntry>,
    /// Channels and supergroups.
    pub channels: BTreeMap<i64, Channel>,
    /// Basic groups.
    pub groups: BTreeMap<i64, Group>,
    /// Message boxes by account.
    pub boxes: BTreeMap<i64, MessageBox>,
    /// Documents.
    pub documents: BTreeMap<i64, Document>,
    /// Photos.
    #[serde(default)]
    pub photos: BTreeMap<i64, Photo>,
    /// Open takeout sessions: id → account.
    #[serde(default)]
    pub takeouts: BTreeMap<i64, i64>,
    /// The key file references are signed with (hex).
    pub secret: String,
    /// The user that owns the chat.
    pub owner: i64,
    /// The bot that administers it.
    pub bot: i64,
    /// The channel tgferry uses.
    pub channel: i64,
    /// The data centre each account's session names as home, and the keys it holds, for
    /// the printed session lines: (account, data centre) → key index in `keys`.
    pub sessions: BTreeMap<i64, BTreeMap<i32, usize>>,
    /// Keys of the login session (no account yet), by data centre.
    pub login_keys: BTreeMap<i32, usize>,
}

/// Where document bytes and upload parts live: memory, or files under the state
/// directory (`blobs/<document id>`, `uploads/<account>-<file id>-<big>/<part>`).
#[derive(Debug)]
pub enum Blobs {
    /// In memory.
    Memory {
        /// Documents.
        docs: HashMap<i64, Arc<Vec<u8>>>,
        /// Upload parts.
        parts: HashMap<UploadKey, BTreeMap<i32, Vec<u8>>>,
    },
    /// On disk.
    Dir(PathBuf),
}

/// An unfinished upload: the uploader, the client's file id, and whether it goes through
/// `saveBigFilePart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadKey {
    /// The uploading account.
    pub user: i64,
    /// The client's random file id.
    pub file_id: i64,
    /// Sent with `saveBigFilePart`.
    pub big: bool,
}

impl UploadKey {
    fn dir_name(&self) -> String {
        format!("{}-{}-{}", self.user, self.file_id, u8::from(self.big))
    }
}

impl Blobs {
    /// Stores part `index` of an upload.
    pub fn put_part(&mut self, key: UploadKey, index: i32, bytes: Vec<u8>) -> io::Result<()> {
        match self {
            Blobs::Memory { parts, .. } => {
                parts.entry(key).or_default().insert(index, bytes);
                Ok(())
            }
            Blobs::Dir(root) => {
                let dir = root.join("uploads").join(key.dir_name());
                fs::create_dir_all(&dir)?;
                fs::write(dir.join(index.to_string()), bytes)
            }
        }
    }

    /// Forgets an upload's parts.
    pub fn drop_upload(&mut self, key: UploadKey) {
        match self {
            Blobs::Memory { parts, .. } => {
                parts.remove(&key);
            }
            Blobs::Dir(root) => {
                let _ = fs::remove_dir_all(root.join("uploads").join(key.dir_name()));
            }
        }
    }

    /// Joins parts `0..count` of an upload into document `doc` and forgets the upload.
    pub fn assemble(&mut self, key: UploadKey, count: i32, doc: i64) -> io::Result<()> {
        match self {
            Blobs::Memory { parts, docs } => {
                let mut upload = parts.remove(&key).unwrap_or_default();
                let mut bytes = Vec::new();
                for i in 0..count {
                    bytes.extend(upload.remove(&i).unwrap_or_default());
                }
                docs.insert(doc, Arc::new(bytes));
                Ok(())
            }
            Blobs::Dir(root) => {
                let dir = root.join("uploads").join(key.dir_name());
                let blobs = root.join("blobs");
                fs::create_dir_all(&blobs)?;
                let tmp = blobs.join(format!("{doc}.tmp"));
                let mut out = fs::File::create(&tmp)?;
                for i in 0..count {
                    let mut part = fs::File::open(dir.join(i.to_string()))?;
                    io::copy(&mut part, &mut out)?;
                }
                out.sync_all()?;
                fs::rename(&tmp, blobs.join(doc.to_string()))?;
                let _ = fs::remove_dir_all(&dir);
                Ok(())
            }
        }
    }

    /// Stores `bytes` as file `id` (a document or photo made without an upload).
    pub fn put(&mut self, id: i64, bytes: &[u8]) -> io::Result<()> {
        match self {
            Blobs::Memory { docs, .. } => {
                docs.insert(id, Arc::new(bytes.to_vec()));
                Ok(())
            }
            Blobs::Dir(root) => {
                let blobs = root.join("blobs");
                fs::create_dir_all(&blobs)?;
                let tmp = blobs.join(format!("{id}.tmp"));
                fs::write(&tmp, bytes)?;
                fs::rename(&tmp, blobs.join(id.to_string()))
            }
        }
    }

    /// Up to `limit` bytes of document `doc` from `offset`.
    pub fn read(&self, doc: i64, offset: u64, limit: usize) -> io::Result<Vec<u8>> {
        match self {
            Blobs::Memory { docs, .. } => {
                let bytes = docs
                    .get(&doc)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such document"))?;
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(limit).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            Blobs::Dir(root) => {
                let mut file = fs::File::open(root.join("blobs").join(doc.to_string()))?;
                file.seek(io::SeekFrom::Start(offset))?;
                let mut out = Vec::with_capacity(limit);
                file.take(limit as u64).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }

    /// Replaces byte `at` of document `doc` with its complement (tests corrupt a part).
    pub fn corrupt(&mut self, doc: i64, at: u64) -> io::Result<()> {
        match self {
            Blobs::Memory { docs, .. } => {
                let bytes = docs
                    .get_mut(&doc)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such document"))?;
                let bytes = Arc::make_mut(bytes);
                let b = bytes
                    .get_mut(at as usize)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "past the end"))?;
                *b ^= 0xff;
                Ok(())
            }
            Blobs::Dir(root) => {
                let path = root.join("blobs").join(doc.to_string());
                let mut file = fs::OpenOptions::new().read(true).write(true).open(path)?;
                file.seek(io::SeekFrom::Start(at))?;
                let mut b = [0u8];
                file.read_exact(&mut b)?;
                file.seek(io::SeekFrom::Start(at))?;
                file.write_all(&[b[0] ^ 0xff])
            }
        }
    }
}

/// An upload's parts as the model tracks them (the bytes are in [`Blobs`]).
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// Size of each part received, and when.
    pub parts: BTreeMap<i32, (usize, i64)>,
    /// `file_total_parts` of `saveBigFilePart`.
    pub total: Option<i32>,
}

/// A login code sent by `auth.sendCode`.
#[derive(Debug, Clone)]
pub struct PendingCode {
    /// The number it was sent for.
    pub phone: String,
    /// The code.
    pub code: String,
    /// When (model time).
    pub sent: i64,
}

/// Requests and flood waits, for tests and the bench.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests by TL method name (the innermost call, wrappers not counted).
    pub requests: BTreeMap<String, u64>,
    /// Flood waits answered: the method and the seconds.
    pub flood_waits: Vec<(String, i64)>,
    /// Connections accepted.
    pub connections: u64,
    /// Bytes read from and written to clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Messages posted (texts and documents; not service messages).
    pub messages: u64,
    /// The same, by the account that posted them.
    pub messages_by: BTreeMap<i64, u64>,
    /// The connections that carried chunks of each upload (by file id).
    pub upload_connections: BTreeMap<i64, BTreeSet<u64>>,
    /// The connections that carried `upload.getFile` requests of each document (by id).
    pub download_connections: BTreeMap<i64, BTreeSet<u64>>,
    /// Bytes `upload.getFile` answered with, by document or photo id (every size of a
    /// photo counted under its id).
    pub served: BTreeMap<i64, u64>,
    /// Requests carried out inside a takeout session (`invokeWithTakeout`).
    pub takeout_requests: u64,
}

impl Stats {
    /// The most connections any one upload's chunks came over.
    pub fn most_upload_connections(&self) -> usize {
        self.upload_connections
            .values()
            .map(BTreeSet::len)
            .max()
            .unwrap_or(0)
    }

    /// The most connections any one document was downloaded over.
    pub fn most_download_connections(&self) -> usize {
        self.download_connections
            .values()
            .map(BTreeSet::len)
            .max()
            .unwrap_or(0)
    }

    /// One line for people and scripts: `requests=… messages=… flood_waits=…
    /// flood_wait_seconds=… connections=… upload_connections=… download_connections=…
    /// bytes_in=… bytes_out=… messages_by=…` (the two connection counts: the most one
    /// upload or one document's downloads used; `messages_by`: the messages each account
    /// posted, most first, `/`-separated), then the requests by method (`method=count`, most
    /// first).
    pub fn summary(&self) -> String {
        let total: u64 = self.requests.values().sum();
        let waited: i64 = self.flood_waits.iter().map(|(_, s)| s).sum();
        let mut methods: Vec<(&String, &u64)> = self.requests.iter().collect();
        methods.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let methods: Vec<String> = methods.iter().map(|(m, n)| format!("{m}={n}")).collect();
        format!(
            "requests={total} messages={} flood_waits={} flood_wait_seconds={waited} \
             connections={} upload_connections={} download_connections={} bytes_in={} \
             bytes_out={} messages_by={} takeout_requests={} | {}",
            self.messages,
            self.flood_waits.len(),
            self.connections,
            self.most_upload_connections(),
            self.most_download_connections(),
            self.bytes_in,
            self.bytes_out,
            {
                let mut by: Vec<u64> = self.messages_by.values().copied().collect();
                by.sort_unstable_by(|a, b| b.cmp(a));
                by.iter().map(u64::to_string).collect::<Vec<_>>().join("/")
            },
            self.takeout_requests,
            methods.join(" ")
        )
    }
}

/// The whole model: [`Persisted`] plus what a restart forgets.
#[derive(Debug)]
pub struct World {
    /// What a restart keeps.
    pub p: Persisted,
    /// Document bytes and upload parts.
    pub blobs: Blobs,
    /// The model's clock.
    pub clock: Arc<Clock>,
    /// How long upload parts are kept.
    pub part_lifetime: i64,
    /// How long file references stay valid.
    pub file_reference_lifetime: i64,
    /// Whether the message-rate rules apply.
    pub rate_limits: bool,
    /// Unfinished uploads.
    pub uploads: HashMap<UploadKey, Upload>,
    /// Login codes by `phone_code_hash`.
    pub codes: HashMap<String, PendingCode>,
    /// The last login code sent (tests and the binary read it).
    pub last_code: Option<String>,
    /// Keys that passed the code and wait for the password: key id → account.
    pub password_pending: HashMap<i64, i64>,
    /// Outstanding SRP challenges by `srp_id`.
    pub srp: HashMap<i64, (i64, Challenge)>,
    /// Exported authorizations: bytes → (account, target data centre).
    pub exported: HashMap<Vec<u8>, (i64, i32)>,
    /// Message-rate state per sender and chat.
    pub send_rates: HashMap<(i64, Peer), SendRate>,
    /// Recent sign-ins per bot (model time).
    pub bot_signins: HashMap<i64, VecDeque<i64>>,
    /// Sessions seen per key (for `new_session_created`).
    pub sessions_seen: HashSet<(i64, i64)>,
    /// Requests and flood waits.
    pub stats: Stats,
    /// Changed since the state directory was last written.
    pub dirty: bool,
}

/// A random non-zero i64 (ids, access hashes).
pub fn random_i64() -> i64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS gives random bytes");
    i64::from_le_bytes(b) | 1
}

/// A random id in `1..limit` (user and channel ids stay in the ranges Telegram uses).
pub fn random_id_below(limit: i64) -> i64 {
    (random_i64() & i64::MAX) % (limit - 1) + 1
}

impl World {
    /// The key entry with id `key_id`.
    pub fn key(&self, key_id: i64) -> Option<&KeyEntry> {
        self.p.keys.iter().find(|k| k.key.id() == key_id)
    }

    /// The key entry with id `key_id`, to change.
    pub fn key_mut(&mut self, key_id: i64) -> Option<&mut KeyEntry> {
        self.p.keys.iter_mut().find(|k| k.key.id() == key_id)
    }

    /// An account.
    pub fn user(&self, id: i64) -> Option<&User> {
        self.p.users.get(&id)
    }

    /// The message box of `user`.
    pub fn box_mut(&mut self, user: i64) -> &mut MessageBox {
        self.p.boxes.entry(user).or_default()
    }

    /// Now, model time.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Forgets upload parts older than the part lifetime.
    pub fn expire_uploads(&mut self) {
        let now = self.now();
        let lifetime = self.part_lifetime;
        let stale: Vec<UploadKey> = self
            .uploads
            .iter_mut()
            .filter_map(|(key, up)| {
                up.parts.retain(|_, (_, at)| now - *at < lifetime);
                up.parts.is_empty().then_some(*key)
            })
            .collect();
        for key in stale {
            self.uploads.remove(&key);
            self.blobs.drop_upload(key);
        }
    }

    /// A file reference for document `doc`, valid for the file reference lifetime from
    /// now: the issue time and a MAC over it.
    pub fn file_reference(&self, doc: i64) -> Vec<u8> {
        let at = self.now();
        let mut out = at.to_le_bytes().to_vec();
        out.extend_from_slice(&self.reference_mac(doc, at));
        out
    }

    fn reference_mac(&self, doc: i64, at: i64) -> [u8; 8] {
        use sha2::Digest as _;
        let digest = sha2::Sha256::new()
            .chain_update(self.p.secret.as_bytes())
            .chain_update(doc.to_le_bytes())
            .chain_update(at.to_le_bytes())
            .finalize();
        digest[..8].try_into().expect("8 bytes")
    }

    /// Whether `reference` was issued for `doc` and has not expired.
    pub fn reference_valid(&self, doc: i64, reference: &[u8]) -> bool {
        if reference.len() != 16 {
            return false;
        }
        let at = i64::from_le_bytes(reference[..8].try_into().expect("8 bytes"));
        reference[8..] == self.reference_mac(doc, at)
            && self.now() - at < self.file_reference_lifetime
    }

    /// Writes the persisted model to `dir/world.json` (atomically).
    pub fn save(&mut self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(&self.p).map_err(io::Error::other)?;
        let tmp = dir.join("world.json.tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join("world.json"))?;
        self.dirty = false;
        Ok(())
    }

    /// Reads `dir/world.json`, if there is one.
    pub fn load(dir: &Path) -> io::Result<Option<Persisted>> {
        match fs::read(dir.join("world.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join("world.json").display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A message by chat and id, as `viewer` sees it (basic groups and private chats in
    /// the viewer's box).
    pub fn message(&self, viewer: i64, peer: Peer, id: i32) -> Option<&Msg> {
        match peer {
            Peer::Channel(c) => self.p.channels.get(&c)?.messages.get(&id),
            _ => self
                .p
                .boxes
                .get(&viewer)?
                .messages
                .get(&id)
                .filter(|m| m.peer == peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> Channel {
        Channel {
            id: 1,
            access_hash: 1,
            title: "c".into(),
            username: None,
            broadcast: true,
            date: 0,
            creator: 1,
            admins: BTreeSet::new(),
            members: BTreeSet::new(),
            last_id: 0,
            messages: BTreeMap::new(),
            pts: 1,
            log: Vec::new(),
        }
    }

    #[test]
    fn the_log_records_each_change_and_forgets_the_oldest() {
        let mut c = channel();
        assert_eq!(c.log_start(), 1);
        assert_eq!(c.record(Change::New(1), 1), 2);
        assert_eq!(c.record(Change::Delete(vec![1, 2]), 2), 4);
        assert_eq!(c.log_start(), 1);
        for i in 0..crate::rules::CHANNEL_LOG_MAX as i32 {
            c.record(Change::New(i), 1);
        }
        assert_eq!(c.pts, 4 + crate::rules::CHANNEL_LOG_MAX as i32);
        assert_eq!(c.log_start(), 4, "the last CHANNEL_LOG_MAX pts are kept");
        c.record(Change::Edit(1), 1);
        assert_eq!(c.log_start(), 5);
    }
}
