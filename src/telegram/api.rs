//! The narrow interface to Telegram ([`TelegramApi`]) and the facts it is built on: chunk
//! and part limits, the big-file threshold, download alignment, and the errors the store
//! needs to tell apart ([`TgError`]).
//!
//! An API value is bound to one account and one chat: [`TelegramApi::connect`] signs in and
//! resolves the chat, and every other call works in that chat. Uploads go chunk by chunk
//! ([`TelegramApi::save_file_part`]) and become a message with
//! [`TelegramApi::send_document`]; nothing of a half-sent upload is ever kept across runs
//! (Telegram forgets unsent chunks within hours).

use std::fmt;
use std::future::Future;

/// Upload chunk size: every chunk but the last of an upload is exactly this long.
pub const CHUNK: usize = 512 * 1024;
/// Files larger than this are uploaded with `upload.saveBigFilePart`.
pub const BIG_FILE_THRESHOLD: u64 = 10 * 1024 * 1024;
/// Most chunks in one upload (2000 MiB at 512 KiB).
pub const MAX_CHUNKS: u32 = 4000;
/// Most chunks in one upload for a Premium account (4000 MiB).
pub const MAX_CHUNKS_PREMIUM: u32 = 8000;
/// Download request size used by the store: a divisor of 1 MiB, so that no request
/// crosses a 1 MiB boundary when offsets are multiples of it.
///
/// Telegram takes up to 1 MiB, but not grammers: grammers-mtproto 0.11 asserts that every
/// message it reads is under 1,044,448 bytes (`MessageContainer::MAXIMUM_SIZE`), and the
/// answer to a 1 MiB `upload.getFile` is 1 MiB plus its headers, so the client's
/// connection task panics (seen over fakegram, which sends such an answer alone as
/// Telegram does). 512 KiB is the largest request grammers can read; speed comes from
/// several in flight on several connections instead.
pub const DOWNLOAD_CHUNK: u32 = 512 * 1024;
/// Most message ids in one `get_messages` call.
pub const MAX_IDS_PER_CALL: usize = 100;

/// The largest file (and so the largest part) an account can upload.
pub fn max_file_size(premium: bool) -> u64 {
    let chunks = if premium {
        MAX_CHUNKS_PREMIUM
    } else {
        MAX_CHUNKS
    };
    u64::from(chunks) * CHUNK as u64
}

/// Checks that a download request is one Telegram accepts: offset and limit multiples of
/// 4 KiB, limit dividing 1 MiB, and the request not crossing a 1 MiB boundary.
pub fn check_download(offset: u64, limit: u32) -> Result<(), TgError> {
    const MIB: u64 = 1024 * 1024;
    let l = u64::from(limit);
    if l == 0 || !l.is_multiple_of(4096) || !MIB.is_multiple_of(l) {
        return Err(TgError::Invalid("LIMIT_INVALID".into()));
    }
    if !offset.is_multiple_of(4096) || offset / MIB != (offset + l - 1) / MIB {
        return Err(TgError::Invalid("OFFSET_INVALID".into()));
    }
    Ok(())
}

/// The request size for reading a range of `len` bytes: the smallest power of two of at
/// least 4 KiB that holds it, at most [`DOWNLOAD_CHUNK`]. Every such size divides 1 MiB, so
/// requests at its multiples pass [`check_download`]; a range is read from the multiple
/// at or below its start, and one no longer than the size takes at most two requests.
pub fn download_window(len: u64) -> u32 {
    let window = len
        .clamp(4096, u64::from(DOWNLOAD_CHUNK))
        .next_power_of_two();
    u32::try_from(window).expect("at most DOWNLOAD_CHUNK")
}

/// Which chat a store lives in, as given after `telegram:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatRef {
    /// `me`: the account's own Saved Messages (user accounts only).
    Me,
    /// `@name`: a public username.
    Username(String),
    /// A numeric id, `-100…` for channels and supergroups as Telegram's apps show it.
    Id(i64),
}

impl ChatRef {
    /// Parses `me`, `@name` or a numeric id.
    pub fn parse(s: &str) -> Result<ChatRef, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("me") {
            return Ok(ChatRef::Me);
        }
        if let Some(name) = s.strip_prefix('@') {
            let ok = name.len() >= 4
                && name.len() <= 32
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            return if ok {
                Ok(ChatRef::Username(name.to_owned()))
            } else {
                Err(format!(
                    "`{s}` is not a Telegram username (4–32 letters, digits or _, starting with a letter)"
                ))
            };
        }
        match s.parse::<i64>() {
            Ok(id) if id != 0 => Ok(ChatRef::Id(id)),
            _ => Err(format!(
                "`{s}` is not a chat: use @username, a numeric id such as -1001234567890, or me"
            )),
        }
    }
}

impl fmt::Display for ChatRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatRef::Me => f.write_str("me"),
            ChatRef::Username(n) => write!(f, "@{n}"),
            ChatRef::Id(id) => write!(f, "{id}"),
        }
    }
}

/// The signed-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// A bot (no message history, no Saved Messages).
    pub bot: bool,
    /// Telegram Premium (4000 MiB uploads).
    pub premium: bool,
    /// `@username` or the numeric id, for messages.
    pub name: String,
}

/// One upload in progress: the random file id Telegram knows it by and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRef {
    /// Random id chosen by the client.
    pub file_id: i64,
    /// Total bytes.
    pub size: u64,
    /// Number of chunks (`ceil(size / CHUNK)`, at least 1).
    pub total_chunks: u32,
    /// Sent with `saveBigFilePart` (size > [`BIG_FILE_THRESHOLD`]).
    pub big: bool,
}

impl UploadRef {
    /// A new upload of `size` bytes with a random file id.
    pub fn new(size: u64) -> Result<UploadRef, TgError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| TgError::Other(format!("no randomness: {e}")))?;
        let total = size.div_ceil(CHUNK as u64).max(1);
        Ok(UploadRef {
            file_id: i64::from_le_bytes(id),
            size,
            total_chunks: u32::try_from(total).unwrap_or(u32::MAX),
            big: size > BIG_FILE_THRESHOLD,
        })
    }

    /// Length of chunk `index`.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = u64::from(index) * CHUNK as u64;
        (self.size.saturating_sub(start)).min(CHUNK as u64) as usize
    }
}

/// A new random id for a send ([`TelegramApi::send_text`]).
pub fn random_id() -> Result<i64, TgError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| TgError::Other(format!("no randomness: {e}")))?;
    Ok(i64::from_le_bytes(id))
}

/// What kind of media a message carries (a source names files by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaKind {
    /// A file sent as a file.
    #[default]
    Document,
    /// A photo, read at its largest size.
    Photo,
    /// A video.
    Video,
    /// Music or another audio file.
    Audio,
    /// A voice note (Telegram gives it no file name).
    Voice,
}

impl MediaKind {
    /// The kind's name in paths and messages: `document`, `photo`, `video`, `audio`, `voice`.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Document => "document",
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Voice => "voice",
        }
    }
}

/// The media attached to a message: a document (any file, video, audio, voice) or a
/// photo at its largest size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentInfo {
    /// Its file name (empty when Telegram gives none: photos, voice notes).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Telegram's id of the document or photo: the same media forwarded to another
    /// message or chat keeps it (0 where unknown).
    pub media_id: i64,
    /// What it is.
    pub kind: MediaKind,
    /// Its MIME type (empty where Telegram gives none).
    pub mime: String,
}

/// A message in the chat, as far as the store and a chat source care.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageInfo {
    /// Message id (per chat for channels).
    pub id: i32,
    /// When it was sent, Unix seconds.
    pub date: i64,
    /// Its text or the document's caption.
    pub text: String,
    /// The document, if it has one.
    pub document: Option<DocumentInfo>,
    /// When it was last edited, Unix seconds.
    pub edit_date: Option<i64>,
}

/// What changed in a channel since an update sequence number (`pts`), as
/// `updates.getChannelDifference` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatChanges {
    /// Nothing changed; the channel is at `pts`.
    Nothing {
        /// The channel's update sequence number.
        pts: i32,
    },
    /// Too much changed to list: read the channel again, messages up to `top_id`, which
    /// makes the reader current to `pts`.
    TooLong {
        /// The update sequence number the channel is at.
        pts: i32,
        /// The newest message id.
        top_id: i32,
    },
    /// These changed, up to `pts`; `last` is false when more follow from there.
    Changed {
        /// The update sequence number these bring the reader to.
        pts: i32,
        /// No more changes after these.
        last: bool,
        /// New messages (as they are now).
        new: Vec<MessageInfo>,
        /// Messages edited (as they are now).
        edited: Vec<MessageInfo>,
        /// Ids of deleted messages.
        deleted: Vec<i32>,
    },
}

/// Why Telegram made us wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// `FLOOD_WAIT_X`.
    Flood,
    /// `FLOOD_PREMIUM_WAIT_X` (uploads faster than a free account may).
    PremiumFlood,
    /// `SLOWMODE_WAIT_X` (the chat has slow mode).
    SlowMode,
}

/// What went wrong talking to Telegram, sorted by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TgError {
    /// Wait this many seconds before the next request.
    #[error("Telegram asks to wait {seconds} s ({kind:?})")]
    Wait {
        /// Seconds.
        seconds: u32,
        /// Which wait.
        kind: WaitKind,
    },
    /// `FILE_PART_X_MISSING`: a chunk of the upload never arrived; the upload must be redone.
    #[error("Telegram is missing chunk {chunk} of the upload (FILE_PART_{chunk}_MISSING)")]
    ChunkMissing {
        /// The chunk.
        chunk: u32,
    },
    /// The connection dropped or timed out: reconnect and retry.
    #[error("connection to Telegram lost: {0}")]
    Disconnected(String),
    /// The credentials are not (or no longer) valid: bad api id/hash, bot token, revoked
    /// or logged-out session.
    #[error("Telegram refused the credentials: {0}")]
    Unauthorized(String),
    /// The session is locked by another process on this machine.
    #[error("the Telegram session is in use by another process")]
    SessionInUse,
    /// `AUTH_KEY_DUPLICATED`: Telegram saw the session used from two places at once and
    /// revoked it; it is dead, waiting does not help.
    #[error(
        "Telegram revoked the session because it was used from two places at once \
         (AUTH_KEY_DUPLICATED); it is dead: make a new one with `tgferry telegram login` and \
         never use one session in two processes"
    )]
    SessionDuplicated,
    /// The chat does not exist or cannot be seen by this account.
    #[error("chat not found: {0}")]
    ChatNotFound(String),
    /// The account may not do this in the chat (not an admin, cannot post).
    #[error("not allowed in this chat: {0}")]
    Forbidden(String),
    /// A method bots may not call (`BOT_METHOD_INVALID`), such as reading history.
    #[error("bots cannot do this (BOT_METHOD_INVALID)")]
    BotMethodInvalid,
    /// The request was malformed (a bug in the caller): sizes, offsets, limits.
    #[error("Telegram rejected the request: {0}")]
    Invalid(String),
    /// Any other error.
    #[error("Telegram error: {0}")]
    Other(String),
}

/// All Telegram access tgferry needs, bound to one account and one chat.
///
/// Implementations must be cheap to share (`&self` everywhere) and safe to call from
/// several tasks at once; they never sleep on flood waits themselves (the store decides,
/// knowing the budget) and never retry.
pub trait TelegramApi: Send + Sync + 'static {
    /// Connects, signs in and resolves the chat; must be called (once) before anything else.
    fn connect(&self) -> impl Future<Output = Result<Account, TgError>> + Send;

    /// Drops the connection and connects again (after [`TgError::Disconnected`]).
    fn reconnect(&self) -> impl Future<Output = Result<(), TgError>> + Send;

    /// How many connections file bytes ([`TelegramApi::save_file_part`],
    /// [`TelegramApi::download`]) are spread over: the store keeps twice as many requests
    /// in flight.
    fn connections(&self) -> usize {
        1
    }

    /// Sends chunk `index` of an upload: exactly [`CHUNK`] bytes, except the last chunk.
    fn save_file_part(
        &self,
        upload: &UploadRef,
        index: u32,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), TgError>> + Send;

    /// Sends a finished upload to the chat as a document named `name` with `caption`. The
    /// upload's `file_id` is the send's random id: sending the same upload again (after a
    /// reply was lost) fails with `Invalid("RANDOM_ID_DUPLICATE")` and sends nothing.
    fn send_document(
        &self,
        upload: &UploadRef,
        name: &str,
        caption: &str,
    ) -> impl Future<Output = Result<MessageInfo, TgError>> + Send;

    /// Sends a text message with `random_id`, one per logical send (kept across retries):
    /// a repeat fails with `Invalid("RANDOM_ID_DUPLICATE")` and sends nothing.
    fn send_text(
        &self,
        text: &str,
        random_id: i64,
    ) -> impl Future<Output = Result<MessageInfo, TgError>> + Send;

    /// Replaces the text of one of our messages. Like Telegram, an edit that changes
    /// nothing fails with `Invalid("MESSAGE_NOT_MODIFIED")`.
    fn edit_text(&self, id: i32, text: &str) -> impl Future<Output = Result<(), TgError>> + Send;

    /// Fetches up to [`MAX_IDS_PER_CALL`] messages by id; `None` where there is none
    /// (never sent, or deleted). Bots may call this.
    fn get_messages(
        &self,
        ids: &[i32],
    ) -> impl Future<Output = Result<Vec<Option<MessageInfo>>, TgError>> + Send;

    /// The newest message id in the chat (`messages.getHistory`); bots get
    /// [`TgError::BotMethodInvalid`].
    fn latest_id(&self) -> impl Future<Output = Result<Option<i32>, TgError>> + Send;

    /// Reads `limit` bytes at `offset` of the document of message `id` (fewer at its end);
    /// the request must pass [`check_download`].
    fn download(
        &self,
        id: i32,
        offset: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<u8>, TgError>> + Send;

    /// Deletes messages (ids that are already gone are ignored).
    fn delete_messages(&self, ids: &[i32]) -> impl Future<Output = Result<(), TgError>> + Send;

    /// Whether the chat is a channel or supergroup (its changes can be asked for with
    /// [`TelegramApi::changes`]); valid after [`TelegramApi::connect`].
    fn is_channel(&self) -> bool {
        false
    }

    /// What changed in the channel since update sequence number `pts` (at least 1).
    fn changes(&self, pts: i32) -> impl Future<Output = Result<ChatChanges, TgError>> + Send {
        let _ = pts;
        async { Err(TgError::Invalid("CHANNEL_INVALID".into())) }
    }

    /// Up to 100 messages newer than `min_id` and older than `before` (0: no bound),
    /// newest first (`messages.getHistory`); bots get [`TgError::BotMethodInvalid`].
    fn history(
        &self,
        min_id: i32,
        before: i32,
    ) -> impl Future<Output = Result<Vec<MessageInfo>, TgError>> + Send {
        let _ = (min_id, before);
        async { Err(TgError::BotMethodInvalid) }
    }

    /// Pins a message (silently).
    fn pin(&self, id: i32) -> impl Future<Output = Result<(), TgError>> + Send;

    /// The pinned message, if any.
    fn pinned(&self) -> impl Future<Output = Result<Option<MessageInfo>, TgError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_refs() {
        assert_eq!(ChatRef::parse("me"), Ok(ChatRef::Me));
        assert_eq!(
            ChatRef::parse("@my_vault"),
            Ok(ChatRef::Username("my_vault".into()))
        );
        assert_eq!(
            ChatRef::parse("-1001234567890"),
            Ok(ChatRef::Id(-1001234567890))
        );
        assert!(ChatRef::parse("@ab").is_err());
        assert!(ChatRef::parse("@1abc").is_err());
        assert!(ChatRef::parse("vault").is_err());
        assert!(ChatRef::parse("0").is_err());
        assert_eq!(ChatRef::parse("-1001").unwrap().to_string(), "-1001");
    }

    #[test]
    fn upload_shapes() {
        let u = UploadRef::new(0).unwrap();
        assert_eq!((u.total_chunks, u.big, u.chunk_len(0)), (1, false, 0));
        let u = UploadRef::new(BIG_FILE_THRESHOLD).unwrap();
        assert_eq!((u.total_chunks, u.big), (20, false));
        let u = UploadRef::new(BIG_FILE_THRESHOLD + 1).unwrap();
        assert_eq!((u.total_chunks, u.big, u.chunk_len(20)), (21, true, 1));
        assert_eq!(max_file_size(false), 2000 * 1024 * 1024);
        assert_eq!(max_file_size(true), 4000 * 1024 * 1024);
    }

    #[test]
    fn download_alignment() {
        assert!(check_download(0, DOWNLOAD_CHUNK).is_ok());
        assert!(check_download(3 * 512 * 1024, DOWNLOAD_CHUNK).is_ok());
        assert!(check_download(768 * 1024, DOWNLOAD_CHUNK).is_err()); // crosses 1 MiB
        assert!(check_download(100, 4096).is_err());
        assert!(check_download(0, 3000).is_err());
        assert!(check_download(0, 3 * 4096).is_err()); // does not divide 1 MiB
    }

    #[test]
    fn download_windows_are_requests_telegram_takes() {
        assert_eq!(download_window(0), 4096);
        assert_eq!(download_window(1), 4096);
        assert_eq!(download_window(4097), 8192);
        assert_eq!(download_window(100_000), 128 * 1024);
        assert_eq!(download_window(u64::MAX), DOWNLOAD_CHUNK);
        for shift in 0..=20 {
            let window = download_window(1 << shift);
            assert!(u64::from(window) >= (1u64 << shift).min(u64::from(DOWNLOAD_CHUNK)));
            for k in 0..600u64 {
                let offset = k * u64::from(window);
                assert!(check_download(offset, window).is_ok(), "{offset}+{window}");
            }
        }
    }
}
