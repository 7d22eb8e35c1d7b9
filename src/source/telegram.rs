//! The media of Telegram chats as a source (`--source telegram:CHAT[,CHAT…]`): every
//! message with a document, photo, video, audio file or voice note is a file, named by a
//! [`PathLayout`] (by default `<chat>/<YYYY-MM>/<message id>-<file name>`), with the
//! message's date as its time.
//!
//! What a chat holds is kept between runs in the state ([`ChatCatalog`]): a channel or
//! supergroup is read from where the last run stopped with `updates.getChannelDifference`
//! (new messages, edits and deletions since its update sequence number); a chat that is
//! not a channel (users only) gets its messages newer than the newest seen. A media
//! replaced by an edit is a changed file (its time becomes the edit's), so a vault keeps
//! the old version; a deleted message's file leaves the listing and stays stored.
//!
//! Files are read through the same download path as restore (aligned `upload.getFile`
//! windows on the connection pool, file references refreshed, `FILE_MIGRATE` followed),
//! from any offset, so a large video resumes at its next part. Telegram's media id is the
//! file's identity ([`Listing::identities`]): a media forwarded to several messages or
//! chats is read once. Flood waits are sat out when they end before the run's deadline,
//! otherwise they are [`SourceError::RateLimited`] and the run stops `rate_limited`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::{Listing, Source, SourceEntry, SourceError};
use crate::state::{ChatCatalog, ChatMedia};
use crate::telegram::api::{
    ChatChanges, ChatRef, DOWNLOAD_CHUNK, MAX_IDS_PER_CALL, MediaKind, MessageInfo, TelegramApi,
    TgError,
};
use crate::telegram::wait::WaitDeadline;
use crate::time::Timestamp;

/// What `--source` starts with for chats.
pub const PREFIX: &str = "telegram:";

/// The layout when `--tg-layout` is not given.
pub const DEFAULT_LAYOUT: &str = "{chat}/{yyyy}-{mm}/{id}-{name}";

/// Most rounds of `getChannelDifference` in one listing (100 updates each).
const MOST_ROUNDS: usize = 100_000;

/// Most tries of one request that lost its connection.
const CONNECTION_TRIES: u32 = 4;

/// One piece of a [`PathLayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Chat,
    Year,
    Month,
    Day,
    Id,
    Name,
    Kind,
}

/// How a message's media is named: a template of `{chat}` (the chat as given, without
/// `@`), `{yyyy}`, `{mm}`, `{dd}` (the message's date, UTC), `{id}` (the message id),
/// `{name}` (the file name, or `<kind>.<ext>` where Telegram gives none) and `{kind}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathLayout {
    pieces: Vec<Piece>,
    text: String,
}

impl PathLayout {
    /// Parses a template; it must hold `{id}`, so that two messages never share a path.
    pub fn parse(text: &str) -> Result<PathLayout, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("--tg-layout {text:?}: a `{{` is not closed"))?;
            pieces.push(match &rest[open + 1..close] {
                "chat" => Piece::Chat,
                "yyyy" => Piece::Year,
                "mm" => Piece::Month,
                "dd" => Piece::Day,
                "id" => Piece::Id,
                "name" => Piece::Name,
                "kind" => Piece::Kind,
                other => {
                    return Err(format!(
                        "--tg-layout {text:?}: unknown placeholder {{{other}}} (known: {{chat}}, \
                         {{yyyy}}, {{mm}}, {{dd}}, {{id}}, {{name}}, {{kind}})"
                    ));
                }
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        if !pieces.contains(&Piece::Id) {
            return Err(format!(
                "--tg-layout {text:?} has no {{id}}: two messages could get one path; add \
                 {{id}} (the default is {DEFAULT_LAYOUT:?})"
            ));
        }
        if text.starts_with('/')
            || text
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!(
                "--tg-layout {text:?} must be a relative path without empty, `.` or `..` parts"
            ));
        }
        Ok(PathLayout {
            pieces,
            text: text.to_owned(),
        })
    }

    /// Whether the layout names the chat (needed when a source has several).
    pub fn names_chat(&self) -> bool {
        self.pieces.contains(&Piece::Chat)
    }

    /// The path of message `id`'s media in chat folder `chat`.
    pub fn path(&self, chat: &str, id: i32, media: &ChatMedia) -> String {
        let day = media.date.to_zoned(jiff::tz::TimeZone::UTC);
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Chat => out.push_str(chat),
                Piece::Year => out.push_str(&format!("{:04}", day.year())),
                Piece::Month => out.push_str(&format!("{:02}", day.month())),
                Piece::Day => out.push_str(&format!("{:02}", day.day())),
                Piece::Id => out.push_str(&id.to_string()),
                Piece::Name => out.push_str(&file_name(media)),
                Piece::Kind => out.push_str(&media.kind),
            }
        }
        out
    }
}

impl Default for PathLayout {
    fn default() -> Self {
        PathLayout::parse(DEFAULT_LAYOUT).expect("the default layout is valid")
    }
}

impl std::fmt::Display for PathLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A media's file name as one path component: Telegram's name with `/`, `\` and control
/// characters made `_`, or `<kind>.<ext>` (from its MIME type) where it has none.
pub fn file_name(media: &ChatMedia) -> String {
    let cleaned: String = media
        .name
        .trim()
        .chars()
        .map(|c| match c {
            '/' | '\\' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    match cleaned.as_str() {
        "" => format!("{}.{}", media.kind, extension(&media.mime, &media.kind)),
        "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    }
}

/// The usual extension for a MIME type, else for a kind of media.
fn extension(mime: &str, kind: &str) -> &'static str {
    match mime {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        _ => match kind {
            "photo" => "jpg",
            "video" => "mp4",
            "voice" => "ogg",
            "audio" => "mp3",
            _ => "bin",
        },
    }
}

/// Where `--since` or `--until` puts a bound: a date (UTC midnight) or time, or a
/// message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Messages sent at or after (since) / before (until) this time.
    Time(Timestamp),
    /// Messages with ids at or above (since) / below (until) this one.
    Id(i32),
}

impl Bound {
    /// Parses `2024-05-01`, an RFC 3339 time, or a message id.
    pub fn parse(flag: &str, text: &str) -> Result<Bound, String> {
        let text = text.trim();
        if let Ok(id) = text.parse::<i32>() {
            return if id > 0 {
                Ok(Bound::Id(id))
            } else {
                Err(format!("{flag} {text}: a message id is positive"))
            };
        }
        if let Ok(date) = text.parse::<jiff::civil::Date>() {
            return date
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| Bound::Time(z.timestamp()))
                .map_err(|e| format!("{flag} {text}: {e}"));
        }
        text.parse::<Timestamp>().map(Bound::Time).map_err(|_| {
            format!(
                "{flag} {text:?} is neither a date (2024-05-01), a time (2024-05-01T12:00:00Z) \
                 nor a message id (12345)"
            )
        })
    }

    fn after(&self, id: i32, media: &ChatMedia) -> bool {
        match self {
            Bound::Time(t) => media.date >= *t,
            Bound::Id(first) => id >= *first,
        }
    }
}

/// How a chat source lists and reads.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// How paths are made.
    pub layout: PathLayout,
    /// Only messages from here on.
    pub since: Option<Bound>,
    /// Only messages before this.
    pub until: Option<Bound>,
    /// Read inside a takeout session (user accounts).
    pub takeout: bool,
}

impl ChatOptions {
    /// Checks the options fit a source of `chats` chats: several need `{chat}` in the
    /// layout, or their files could collide.
    pub fn check(&self, chats: usize) -> Result<(), String> {
        if chats > 1 && !self.layout.names_chat() {
            return Err(format!(
                "--tg-layout {:?} has no {{chat}}, but --source names {chats} chats: their \
                 files could collide; add {{chat}}",
                self.layout.to_string()
            ));
        }
        Ok(())
    }
}

/// `--source` for `chats`: `telegram:` and the chats as given, comma-separated.
pub fn source_name(chats: &[ChatRef]) -> String {
    let labels: Vec<String> = chats.iter().map(ToString::to_string).collect();
    format!("{PREFIX}{}", labels.join(","))
}

/// Parses what follows `telegram:` in `--source`: one chat or several, comma-separated.
pub fn parse_chats(text: &str) -> Result<Vec<ChatRef>, String> {
    let mut chats = Vec::new();
    for part in text.split(',').map(str::trim) {
        let chat = ChatRef::parse(part).map_err(|e| format!("--source telegram:{text}: {e}"))?;
        if chats.contains(&chat) {
            return Err(format!("--source telegram:{text} names {part} twice"));
        }
        chats.push(chat);
    }
    Ok(chats)
}

/// The folder a chat's media go under with `{chat}`: the chat as given, without `@`.
pub fn chat_folder(chat: &ChatRef) -> String {
    match chat {
        ChatRef::Me => "me".into(),
        ChatRef::Username(name) => name.clone(),
        ChatRef::Id(id) => id.to_string(),
    }
}

/// One chat of the source.
#[derive(Debug)]
struct Chat<A> {
    /// As given (`@name`, `-100…`, `me`): the key of its catalog and of messages.
    label: String,
    /// What `{chat}` becomes.
    folder: String,
    api: Arc<A>,
    connected: tokio::sync::OnceCell<()>,
}

/// A file of the last listing: where its bytes are.
#[derive(Debug, Clone, Copy)]
struct Located {
    chat: usize,
    id: i32,
    size: u64,
    time: Timestamp,
}

/// The media of one or more Telegram chats: see the module documentation.
#[derive(Debug)]
pub struct ChatSource<A> {
    /// The source as `--source` names it.
    name: String,
    chats: Vec<Chat<A>>,
    options: ChatOptions,
    waits: WaitDeadline,
    catalogs: Mutex<BTreeMap<String, ChatCatalog>>,
    files: Mutex<HashMap<String, Located>>,
}

impl<A: TelegramApi> ChatSource<A> {
    /// A source over `chats`, each with its own API bound to it. Several chats need a
    /// layout with `{chat}`.
    pub fn new(chats: Vec<(ChatRef, A)>, options: ChatOptions) -> Result<Self, String> {
        options.check(chats.len())?;
        let refs: Vec<ChatRef> = chats.iter().map(|(chat, _)| chat.clone()).collect();
        Ok(ChatSource {
            name: source_name(&refs),
            chats: chats
                .into_iter()
                .map(|(chat, api)| Chat {
                    label: chat.to_string(),
                    folder: chat_folder(&chat),
                    api: Arc::new(api),
                    connected: tokio::sync::OnceCell::new(),
                })
                .collect(),
            options,
            waits: WaitDeadline::default(),
            catalogs: Mutex::new(BTreeMap::new()),
            files: Mutex::new(HashMap::new()),
        })
    }

    /// Connects every chat (signs in, finds the chat): a job does this before it creates
    /// anything, so that a chat that cannot be read is reported first. A flood wait on
    /// signing in is left to the listing.
    pub async fn check_root(&self) -> Result<(), SourceError> {
        for chat in &self.chats {
            match self.connect(chat).await {
                Err(SourceError::RateLimited { .. }) => {}
                other => other?,
            }
        }
        Ok(())
    }

    async fn connect(&self, chat: &Chat<A>) -> Result<(), SourceError> {
        let root = &self.name;
        chat.connected
            .get_or_try_init(|| async {
                call(&*chat.api, &self.waits, &chat.label, || chat.api.connect())
                    .await
                    .map(drop)
                    .map_err(|e| listing_error(root, &chat.label, e))
            })
            .await
            .map(drop)
    }

    /// Brings one chat's catalog up to date.
    async fn refresh(&self, index: usize) -> Result<(), SourceError> {
        let chat = &self.chats[index];
        self.connect(chat).await?;
        let root = &self.name;
        let failed = |e| listing_error(root, &chat.label, e);
        let mut catalog = self.catalog_of(&chat.label);
        if chat.api.is_channel() {
            for _ in 0..MOST_ROUNDS {
                let pts = catalog.pts.max(1);
                let changes = call(&*chat.api, &self.waits, &chat.label, || {
                    chat.api.changes(pts)
                })
                .await
                .map_err(failed)?;
                match changes {
                    ChatChanges::Nothing { pts } => {
                        catalog.pts = pts;
                        break;
                    }
                    ChatChanges::TooLong { pts, top_id } => {
                        self.read_whole(chat, &mut catalog, top_id).await?;
                        let stuck = pts <= catalog.pts.max(1);
                        catalog.pts = pts;
                        if stuck {
                            // Telegram named no newer sequence number: read whole again
                            // next run rather than here.
                            self.keep(&chat.label, &catalog);
                            break;
                        }
                    }
                    ChatChanges::Changed {
                        pts,
                        last,
                        new,
                        edited,
                        deleted,
                    } => {
                        for m in new.iter().chain(&edited) {
                            apply(&mut catalog, m);
                        }
                        for id in deleted {
                            catalog.media.remove(&id);
                        }
                        catalog.pts = pts;
                        if last {
                            self.keep(&chat.label, &catalog);
                            break;
                        }
                    }
                }
                self.keep(&chat.label, &catalog);
            }
        } else {
            // Not a channel: no update sequence of its own; messages newer than the
            // newest seen, read newest first in pages, recorded once all are read.
            let mut found = Vec::new();
            let mut before = 0;
            for _ in 0..MOST_ROUNDS {
                let top = catalog.top_id;
                let page = call(&*chat.api, &self.waits, &chat.label, || {
                    chat.api.history(top, before)
                })
                .await
                .map_err(|e| match e {
                    TgError::BotMethodInvalid => SourceError::Unavailable {
                        root: root.clone(),
                        message: format!(
                            "{}: bots can read only channels they are admins of; use a \
                             channel, or a user session (TGFERRY_TG_SOURCE_SESSION)",
                            chat.label
                        ),
                    },
                    e => failed(e),
                })?;
                let Some(oldest) = page.iter().map(|m| m.id).min() else {
                    break;
                };
                before = oldest;
                found.extend(page);
            }
            for m in found.iter().rev() {
                apply(&mut catalog, m);
            }
        }
        self.keep(&chat.label, &catalog);
        Ok(())
    }

    /// Reads a channel again by message id, 1 to `top_id`: what it holds replaces the
    /// catalog's media.
    async fn read_whole(
        &self,
        chat: &Chat<A>,
        catalog: &mut ChatCatalog,
        top_id: i32,
    ) -> Result<(), SourceError> {
        let root = &self.name;
        let ids: Vec<i32> = (1..=top_id.max(0)).collect();
        let mut media = BTreeMap::new();
        for batch in ids.chunks(MAX_IDS_PER_CALL) {
            let found = call(&*chat.api, &self.waits, &chat.label, || {
                chat.api.get_messages(batch)
            })
            .await
            .map_err(|e| listing_error(root, &chat.label, e))?;
            for m in found.into_iter().flatten() {
                let old = catalog.media.get(&m.id);
                if let Some(entry) = media_entry(&m, old) {
                    media.insert(m.id, entry);
                }
            }
        }
        catalog.media = media;
        catalog.top_id = catalog.top_id.max(top_id);
        Ok(())
    }

    fn catalog_of(&self, label: &str) -> ChatCatalog {
        self.catalogs
            .lock()
            .unwrap()
            .get(label)
            .cloned()
            .unwrap_or_default()
    }

    fn keep(&self, label: &str, catalog: &ChatCatalog) {
        self.catalogs
            .lock()
            .unwrap()
            .insert(label.to_owned(), catalog.clone());
    }

    fn in_range(&self, id: i32, media: &ChatMedia) -> bool {
        self.options.since.is_none_or(|b| b.after(id, media))
            && self.options.until.is_none_or(|b| !b.after(id, media))
    }

    fn located(&self, path: &str) -> Result<Located, SourceError> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .ok_or_else(|| SourceError::Vanished { path: path.into() })
    }
}

/// A message's media as the catalog keeps it (`None` without media); an edit that kept
/// the media keeps the entry as it was.
fn media_entry(m: &MessageInfo, old: Option<&ChatMedia>) -> Option<ChatMedia> {
    let d = m.document.as_ref()?;
    let identity = media_key(d.kind, d.media_id);
    if let Some(old) = old
        && media_key_of(old) == identity
    {
        return Some(old.clone());
    }
    let date = Timestamp::from_second(m.date).unwrap_or(Timestamp::UNIX_EPOCH);
    // A media that replaced another (an edit) takes the edit's time.
    let replaced = old.map(|_| {
        m.edit_date
            .and_then(|t| Timestamp::from_second(t).ok())
            .unwrap_or_else(crate::time::now)
    });
    Some(ChatMedia {
        name: d.name.clone(),
        size: d.size,
        kind: d.kind.name().into(),
        mime: d.mime.clone(),
        media_id: d.media_id,
        date,
        replaced,
    })
}

/// Applies a new or edited message to a catalog.
fn apply(catalog: &mut ChatCatalog, m: &MessageInfo) {
    catalog.top_id = catalog.top_id.max(m.id);
    match media_entry(m, catalog.media.get(&m.id)) {
        Some(entry) => {
            catalog.media.insert(m.id, entry);
        }
        None => {
            catalog.media.remove(&m.id);
        }
    }
}

/// What identifies a media's content: photos and documents have ids of their own kinds.
fn media_key(kind: MediaKind, id: i64) -> String {
    match kind {
        MediaKind::Photo => format!("telegram-photo:{id}"),
        _ => format!("telegram-document:{id}"),
    }
}

fn media_key_of(media: &ChatMedia) -> String {
    let kind = match media.kind.as_str() {
        "photo" => MediaKind::Photo,
        _ => MediaKind::Document,
    };
    media_key(kind, media.media_id)
}

/// One request, with Telegram's waits sat out when they fit and a lost connection tried
/// again after reconnecting.
async fn call<A, T, F, Fut>(
    api: &A,
    waits: &WaitDeadline,
    what: &str,
    request: F,
) -> Result<T, TgError>
where
    A: TelegramApi,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, TgError>>,
{
    let mut lost = 0;
    loop {
        match request().await {
            Err(TgError::Wait { seconds, kind }) => {
                let wait = Duration::from_secs(u64::from(seconds));
                if !waits.fits(wait) {
                    return Err(TgError::Wait { seconds, kind });
                }
                tracing::info!(
                    "{what}: Telegram asks to wait {}; waiting",
                    crate::time::human_duration(wait)
                );
                tokio::time::sleep(wait).await;
            }
            Err(TgError::Disconnected(e)) if lost + 1 < CONNECTION_TRIES => {
                lost += 1;
                tracing::info!("{what}: connection lost ({e}); reconnecting");
                if let Err(e) = api.reconnect().await {
                    tracing::info!("{what}: reconnecting failed: {e}");
                }
            }
            other => return other,
        }
    }
}

/// A Telegram error while listing, as a source error: a wait is a rate limit, anything
/// about the account or the chat makes the source unavailable, the rest is transient.
fn listing_error(root: &str, chat: &str, e: TgError) -> SourceError {
    match e {
        TgError::Wait { seconds, .. } => SourceError::RateLimited {
            what: format!("{root} ({chat})"),
            wait: Duration::from_secs(u64::from(seconds)),
        },
        TgError::Disconnected(m) | TgError::Other(m) | TgError::Invalid(m) => {
            SourceError::Transient {
                path: chat.to_owned(),
                message: format!("Telegram: {m}"),
            }
        }
        e @ (TgError::ChunkMissing { .. } | TgError::BotMethodInvalid) => SourceError::Transient {
            path: chat.to_owned(),
            message: e.to_string(),
        },
        e => SourceError::Unavailable {
            root: root.to_owned(),
            message: format!(
                "{chat}: {e}; check TGFERRY_TG_* (or TGFERRY_TG_SOURCE_*) and that the \
                 account can see the chat (a bot must be an admin of the channel)"
            ),
        },
    }
}

impl<A: TelegramApi> Source for ChatSource<A> {
    type Reader = ChatReader;

    async fn list(&self) -> Result<Listing, SourceError> {
        for index in 0..self.chats.len() {
            self.refresh(index).await?;
        }
        let catalogs = self.catalogs.lock().unwrap().clone();
        let mut listing = Listing::default();
        let mut files = HashMap::new();
        for (index, chat) in self.chats.iter().enumerate() {
            let Some(catalog) = catalogs.get(&chat.label) else {
                continue;
            };
            for (&id, media) in &catalog.media {
                if !self.in_range(id, media) {
                    continue;
                }
                let path = self.options.layout.path(&chat.folder, id, media);
                if !super::is_clean_relative(&path) {
                    listing.refused.push((
                        path,
                        format!(
                            "message {id} of {}: its path under --tg-layout is not a clean \
                             relative path; choose another --tg-layout",
                            chat.label
                        ),
                    ));
                    continue;
                }
                let time = media.replaced.unwrap_or(media.date);
                listing.identities.insert(path.clone(), media_key_of(media));
                listing.files.push(SourceEntry {
                    path: path.clone(),
                    size: media.size,
                    mtime: time,
                });
                files.insert(
                    path,
                    Located {
                        chat: index,
                        id,
                        size: media.size,
                        time,
                    },
                );
            }
        }
        *self.files.lock().unwrap() = files;
        Ok(listing)
    }

    async fn open(&self, path: &str, offset: u64) -> Result<ChatReader, SourceError> {
        let at = self.located(path)?;
        let chat = &self.chats[at.chat];
        self.connect(chat).await?;
        Ok(start_reading(
            chat.api.clone(),
            self.waits.clone(),
            path.to_owned(),
            at.id,
            offset,
            at.size,
        ))
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let at = self.located(path)?;
        Ok(SourceEntry {
            path: path.to_owned(),
            size: at.size,
            mtime: at.time,
        })
    }

    fn set_wait_deadline(&self, at: Option<Instant>) {
        self.waits.set(at);
    }

    fn restore_catalog(&self, chats: &BTreeMap<String, ChatCatalog>) {
        let mut catalogs = self.catalogs.lock().unwrap();
        for chat in &self.chats {
            if let Some(known) = chats.get(&chat.label) {
                catalogs.insert(chat.label.clone(), known.clone());
            }
        }
    }

    fn catalog(&self) -> Option<BTreeMap<String, ChatCatalog>> {
        Some(self.catalogs.lock().unwrap().clone())
    }
}

/// A media file being read: a task fetches its windows ahead, several at once (twice the
/// API's connections), and hands them over in order.
pub type ChatReader = crate::telegram::reader::ChunkReader;

/// Starts reading message `id`'s media of `size` bytes from `offset`: a task fetches it
/// in aligned windows, twice the API's connections in flight, and sends them in order; it
/// stops early when the reader is dropped.
fn start_reading<A: TelegramApi>(
    api: Arc<A>,
    waits: WaitDeadline,
    path: String,
    id: i32,
    offset: u64,
    size: u64,
) -> ChatReader {
    let ahead = (api.connections() * 2).max(2);
    let (tx, rx) = mpsc::channel(ahead);
    ChatReader::new(
        rx,
        tokio::spawn(async move {
            let window = u64::from(DOWNLOAD_CHUNK);
            let start = offset - offset % window;
            let mut skip = (offset - start) as usize;
            let mut next = start;
            // Window requests in flight, in order; those left when the read ends are aborted.
            let mut flight: VecDeque<AbortOnDropHandle<Result<Vec<u8>, TgError>>> = VecDeque::new();
            if offset >= size {
                return;
            }
            let spawn = |at: u64| {
                let (api, waits, what) = (api.clone(), waits.clone(), path.clone());
                tokio::spawn(async move {
                    call(&*api, &waits, &what, || {
                        api.download(id, at, DOWNLOAD_CHUNK)
                    })
                    .await
                })
            };
            loop {
                while flight.len() < ahead && next < size {
                    flight.push_back(AbortOnDropHandle::new(spawn(next)));
                    next += window;
                }
                let Some(handle) = flight.pop_front() else {
                    break;
                };
                let answer = match handle.await {
                    Ok(answer) => answer,
                    Err(e) => Err(TgError::Other(format!("download task failed: {e}"))),
                };
                let mut piece = match answer {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let _ = tx.send(Err(read_failure(&path, e))).await;
                        return;
                    }
                };
                // Telegram answers a window short only at the media's end.
                let end = piece.len() < DOWNLOAD_CHUNK as usize;
                if skip > 0 {
                    piece.drain(..skip.min(piece.len()));
                    skip = 0;
                }
                if tx.send(Ok(piece)).await.is_err() || end {
                    break;
                }
            }
        }),
    )
}

/// A failed window as the I/O error the reader returns, carrying the source error the
/// runner acts on ([`super::read_error`]).
fn read_failure(path: &str, e: TgError) -> std::io::Error {
    let err = match e {
        TgError::Wait { seconds, .. } => SourceError::RateLimited {
            what: path.to_owned(),
            wait: Duration::from_secs(u64::from(seconds)),
        },
        TgError::Invalid(m) if m == "MESSAGE_ID_INVALID" => SourceError::Vanished {
            path: path.to_owned(),
        },
        TgError::Unauthorized(_)
        | TgError::SessionDuplicated
        | TgError::SessionInUse
        | TgError::ChatNotFound(_)
        | TgError::Forbidden(_) => SourceError::Unavailable {
            root: path.to_owned(),
            message: e.to_string(),
        },
        e => SourceError::Transient {
            path: path.to_owned(),
            message: e.to_string(),
        },
    };
    std::io::Error::other(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::api::DocumentInfo;

    fn media(name: &str, kind: &str, mime: &str, date: i64) -> ChatMedia {
        ChatMedia {
            name: name.into(),
            size: 10,
            kind: kind.into(),
            mime: mime.into(),
            media_id: 7,
            date: Timestamp::from_second(date).unwrap(),
            replaced: None,
        }
    }

    fn message(id: i32, media_id: i64, kind: MediaKind, edit: Option<i64>) -> MessageInfo {
        MessageInfo {
            id,
            date: 1_700_000_000,
            text: String::new(),
            document: Some(DocumentInfo {
                name: "a.mp4".into(),
                size: 5,
                media_id,
                kind,
                mime: "video/mp4".into(),
            }),
            edit_date: edit,
        }
    }

    #[test]
    fn paths_follow_the_layout() {
        let layout = PathLayout::default();
        // 2023-11-14T22:13:20Z
        let m = media("clip.mp4", "video", "video/mp4", 1_700_000_000);
        assert_eq!(layout.path("family", 42, &m), "family/2023-11/42-clip.mp4");
        let voice = media("", "voice", "audio/ogg", 1_700_000_000);
        assert_eq!(
            layout.path("family", 43, &voice),
            "family/2023-11/43-voice.ogg"
        );
        let photo = media("", "photo", "", 1_700_000_000);
        assert_eq!(
            layout.path("-1001", 44, &photo),
            "-1001/2023-11/44-photo.jpg"
        );
        let odd = media(" a/b\\c\u{7}.txt ", "document", "", 1_700_000_000);
        assert_eq!(layout.path("c", 45, &odd), "c/2023-11/45-a_b_c_.txt");
        let custom = PathLayout::parse("{kind}/{yyyy}/{mm}/{dd}/{chat}-{id}").unwrap();
        assert_eq!(custom.path("c", 46, &m), "video/2023/11/14/c-46");
        assert!(custom.names_chat());
        assert!(!PathLayout::parse("{id}").unwrap().names_chat());
    }

    #[test]
    fn bad_layouts_are_refused_with_the_fix() {
        for (bad, says) in [
            ("{chat}/{name}", "has no {id}"),
            ("{chat}/{id", "not closed"),
            ("{chat}/{idx}", "unknown placeholder {idx}"),
            ("/{id}", "relative path"),
            ("{chat}//{id}", "relative path"),
            ("../{id}", "relative path"),
        ] {
            let e = PathLayout::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn bounds_are_dates_times_or_ids() {
        assert_eq!(Bound::parse("--since", "120").unwrap(), Bound::Id(120));
        assert_eq!(
            Bound::parse("--since", "2023-11-14").unwrap(),
            Bound::Time("2023-11-14T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            Bound::parse("--until", "2023-11-14T22:13:20Z").unwrap(),
            Bound::Time(Timestamp::from_second(1_700_000_000).unwrap())
        );
        assert!(
            Bound::parse("--since", "0")
                .unwrap_err()
                .contains("positive")
        );
        assert!(
            Bound::parse("--since", "last week")
                .unwrap_err()
                .contains("--since")
        );
        let m = media("a", "document", "", 1_700_000_000);
        assert!(Bound::Id(5).after(5, &m) && !Bound::Id(6).after(5, &m));
        let day = Bound::parse("--since", "2023-11-14").unwrap();
        let next = Bound::parse("--until", "2023-11-15").unwrap();
        assert!(day.after(1, &m) && !next.after(1, &m));
    }

    #[test]
    fn an_edit_that_replaces_the_media_is_a_new_version_and_one_that_keeps_it_is_not() {
        let mut catalog = ChatCatalog::default();
        apply(&mut catalog, &message(3, 100, MediaKind::Video, None));
        let first = catalog.media[&3].clone();
        assert_eq!((catalog.top_id, first.replaced), (3, None));
        // A caption edit: the same media, nothing changes.
        apply(
            &mut catalog,
            &message(3, 100, MediaKind::Video, Some(1_700_000_500)),
        );
        assert_eq!(catalog.media[&3], first);
        // The media replaced: the edit's time is the file's new time.
        apply(
            &mut catalog,
            &message(3, 101, MediaKind::Video, Some(1_700_000_900)),
        );
        let now = &catalog.media[&3];
        assert_eq!(now.media_id, 101);
        assert_eq!(now.replaced, Timestamp::from_second(1_700_000_900).ok());
        assert_eq!(now.date, first.date);
        // A message that lost its media leaves the catalog.
        let mut text = message(3, 0, MediaKind::Document, Some(1_700_001_000));
        text.document = None;
        apply(&mut catalog, &text);
        assert!(catalog.media.is_empty());
        assert_eq!(catalog.top_id, 3);
    }

    #[test]
    fn photos_and_documents_with_one_id_are_different_media() {
        assert_ne!(
            media_key(MediaKind::Photo, 9),
            media_key(MediaKind::Document, 9)
        );
        assert_eq!(
            media_key(MediaKind::Video, 9),
            media_key(MediaKind::Voice, 9)
        );
    }

    #[test]
    fn chats_parse_and_name_their_folders() {
        let chats = parse_chats("@family_media, -1001234567890,me").unwrap();
        let folders: Vec<String> = chats.iter().map(chat_folder).collect();
        assert_eq!(folders, ["family_media", "-1001234567890", "me"]);
        assert!(
            parse_chats("@ab")
                .unwrap_err()
                .contains("--source telegram:@ab")
        );
    }
}
