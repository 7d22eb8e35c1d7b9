//! An in-memory Telegram for tests. [`TelegramDouble`] owns one account, one chat (its
//! messages, documents and pins) and the server's unfinished uploads, and enforces the rules
//! the real server does: chunk sizes, part counts, the big-file threshold, missing parts,
//! message ids that only grow, no history for bots, no deletes by bots of messages older
//! than 48 hours (`MESSAGE_DELETE_FORBIDDEN`), one message per random id
//! (`RANDOM_ID_DUPLICATE`), download alignment. Like Telegram it also
//! trims texts and captions, limits their length, refuses an edit that changes nothing
//! (`MESSAGE_NOT_MODIFIED`) and keeps several pins, showing the newest that still exists.
//!
//! Tests inject faults (flood waits, dropped connections, lost chunks), simulate line speed
//! through `tokio::time` and inspect what was sent. The double is `Clone`: every clone is
//! the same server, so a test keeps one handle while the store owns another.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::api::{
    Account, BIG_FILE_THRESHOLD, CHUNK, DocumentInfo, MAX_CHUNKS, MAX_CHUNKS_PREMIUM,
    MAX_IDS_PER_CALL, MessageInfo, TelegramApi, TgError, UploadRef, check_download,
};

/// Longest message text, in UTF-16 units (`message_length_max`).
const TEXT_LIMIT: usize = 4096;
/// Longest document caption, in UTF-16 units (`caption_length_limit_default`).
const CAPTION_LIMIT: usize = 1024;
/// Longest document caption for a Premium account (`caption_length_limit_premium`).
const CAPTION_LIMIT_PREMIUM: usize = 4096;

/// How old a message a bot may still delete, in seconds (48 hours).
const BOT_DELETE_LIMIT: i64 = 48 * 60 * 60;

/// A [`TelegramApi`] method, for fault injection and call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`TelegramApi::connect`].
    Connect,
    /// [`TelegramApi::reconnect`].
    Reconnect,
    /// [`TelegramApi::save_file_part`].
    SaveFilePart,
    /// [`TelegramApi::send_document`].
    SendDocument,
    /// [`TelegramApi::send_text`].
    SendText,
    /// [`TelegramApi::edit_text`].
    EditText,
    /// [`TelegramApi::get_messages`].
    GetMessages,
    /// [`TelegramApi::latest_id`].
    LatestId,
    /// [`TelegramApi::download`].
    Download,
    /// [`TelegramApi::delete_messages`].
    DeleteMessages,
    /// [`TelegramApi::pin`].
    Pin,
    /// [`TelegramApi::pinned`].
    Pinned,
    /// Any method: a fault for it hits the next call of whatever kind; as a counter, all calls.
    Any,
}

/// A message in the double's chat, as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Message id.
    pub id: i32,
    /// When it was sent, Unix seconds.
    pub date: i64,
    /// Its text, or the document's caption.
    pub text: String,
    /// The document's file name, if it has one.
    pub name: Option<String>,
    /// The document's size, if it has one.
    pub size: Option<u64>,
    /// Pinned (Telegram keeps several pins; [`TelegramApi::pinned`] shows the newest).
    pub pinned: bool,
    /// Posted by someone else ([`TelegramDouble::post_foreign`]).
    pub foreign: bool,
}

#[derive(Debug)]
struct Message {
    date: i64,
    text: String,
    document: Option<(String, Vec<u8>)>,
    foreign: bool,
}

#[derive(Debug)]
struct Upload {
    shape: UploadRef,
    chunks: BTreeMap<u32, Vec<u8>>,
}

#[derive(Debug)]
struct Inner {
    account: Account,
    unauthorized: bool,
    chat_missing: bool,
    read_only: bool,
    upload_speed: Option<u64>,
    download_speed: Option<u64>,
    connected: bool,
    dropped: bool,
    now: Option<i64>,
    last_id: i32,
    messages: BTreeMap<i32, Message>,
    /// Pinned ids, oldest pin first.
    pins: Vec<i32>,
    uploads: HashMap<i64, Upload>,
    /// Queued faults: the op they match, the matching calls still let through first, and
    /// the error.
    faults: VecDeque<(Op, u32, TgError)>,
    chunks_to_lose: u32,
    calls: HashMap<Op, u64>,
    bytes_uploaded: u64,
    bytes_downloaded: u64,
    /// The random ids of every message sent (a repeat is refused).
    random_ids: std::collections::HashSet<i64>,
}

/// An in-memory Telegram chat implementing [`TelegramApi`]; clones share the same server.
#[derive(Debug, Clone)]
pub struct TelegramDouble {
    inner: Arc<Mutex<Inner>>,
}

fn invalid(what: &str) -> TgError {
    TgError::Invalid(what.into())
}

fn dropped() -> TgError {
    TgError::Disconnected("connection dropped (double)".into())
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Sleeps `len / speed` seconds of tokio time.
async fn transfer(len: usize, speed: Option<u64>) {
    if let Some(speed) = speed {
        tokio::time::sleep(Duration::from_secs_f64(len as f64 / speed as f64)).await;
    }
}

/// The server's checks on one chunk, all before looking at the data beyond its length.
fn check_part(upload: &UploadRef, index: u32, len: usize, premium: bool) -> Result<(), TgError> {
    let cap = if premium {
        MAX_CHUNKS_PREMIUM
    } else {
        MAX_CHUNKS
    };
    let expected_total = upload.size.div_ceil(CHUNK as u64).max(1);
    if upload.total_chunks > cap
        || u64::from(upload.total_chunks) != expected_total
        || upload.big != (upload.size > BIG_FILE_THRESHOLD)
    {
        return Err(invalid("FILE_PARTS_INVALID"));
    }
    if index >= upload.total_chunks {
        return Err(invalid("FILE_PART_INVALID"));
    }
    if len == 0 {
        return Err(invalid("FILE_PART_EMPTY"));
    }
    if len > CHUNK {
        return Err(invalid("FILE_PART_TOO_BIG"));
    }
    if len != upload.chunk_len(index) {
        return Err(invalid("FILE_PART_SIZE_INVALID"));
    }
    Ok(())
}

impl Inner {
    fn new(bot: bool) -> Inner {
        Inner {
            account: Account {
                bot,
                premium: false,
                name: if bot { "@double_bot" } else { "@double_user" }.into(),
            },
            unauthorized: false,
            chat_missing: false,
            read_only: false,
            upload_speed: None,
            download_speed: None,
            connected: false,
            dropped: false,
            now: None,
            last_id: 0,
            messages: BTreeMap::new(),
            pins: Vec::new(),
            uploads: HashMap::new(),
            faults: VecDeque::new(),
            chunks_to_lose: 0,
            calls: HashMap::new(),
            bytes_uploaded: 0,
            bytes_downloaded: 0,
            random_ids: std::collections::HashSet::new(),
        }
    }

    fn now(&self) -> i64 {
        self.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        })
    }

    fn check_post(&self, refusal: &str) -> Result<(), TgError> {
        if self.read_only {
            return Err(TgError::Forbidden(refusal.into()));
        }
        Ok(())
    }

    /// The text Telegram stores: trimmed, non-empty, at most [`TEXT_LIMIT`].
    fn message_text(text: &str) -> Result<String, TgError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid("MESSAGE_EMPTY"));
        }
        if utf16_len(text) > TEXT_LIMIT {
            return Err(invalid("MESSAGE_TOO_LONG"));
        }
        Ok(text.into())
    }

    /// The caption Telegram stores: trimmed, at most the account's caption limit.
    fn caption(&self, caption: &str) -> Result<String, TgError> {
        let caption = caption.trim();
        let limit = if self.account.premium {
            CAPTION_LIMIT_PREMIUM
        } else {
            CAPTION_LIMIT
        };
        if utf16_len(caption) > limit {
            return Err(invalid("MEDIA_CAPTION_TOO_LONG"));
        }
        Ok(caption.into())
    }

    fn post(&mut self, text: String, document: Option<(String, Vec<u8>)>, foreign: bool) -> i32 {
        self.last_id += 1;
        let message = Message {
            date: self.now(),
            text,
            document,
            foreign,
        };
        self.messages.insert(self.last_id, message);
        self.last_id
    }

    fn info(&self, id: i32) -> Option<MessageInfo> {
        let m = self.messages.get(&id)?;
        Some(MessageInfo {
            id,
            date: m.date,
            text: m.text.clone(),
            document: m.document.as_ref().map(|(name, bytes)| DocumentInfo {
                name: name.clone(),
                size: bytes.len() as u64,
                ..DocumentInfo::default()
            }),
            edit_date: None,
        })
    }

    fn remove(&mut self, id: i32) {
        self.messages.remove(&id);
        self.pins.retain(|&p| p != id);
    }
}

impl TelegramDouble {
    fn with(bot: bool) -> TelegramDouble {
        TelegramDouble {
            inner: Arc::new(Mutex::new(Inner::new(bot))),
        }
    }

    /// A chat reached by a (non-Premium) user account.
    pub fn user() -> TelegramDouble {
        TelegramDouble::with(false)
    }

    /// A chat reached by a bot: no history ([`TgError::BotMethodInvalid`] on `latest_id`).
    pub fn bot() -> TelegramDouble {
        TelegramDouble::with(true)
    }

    /// Makes the account Premium or not (8000 chunks per upload, longer captions).
    pub fn premium(self, premium: bool) -> TelegramDouble {
        self.lock().account.premium = premium;
        self
    }

    /// The credentials are refused: `connect` fails with [`TgError::Unauthorized`].
    pub fn unauthorized(self) -> TelegramDouble {
        self.lock().unauthorized = true;
        self
    }

    /// The chat does not exist: `connect` fails with [`TgError::ChatNotFound`].
    pub fn chat_missing(self) -> TelegramDouble {
        self.lock().chat_missing = true;
        self
    }

    /// The account may read but not post: sends, edits, pins and deletes fail with
    /// [`TgError::Forbidden`].
    pub fn read_only(self) -> TelegramDouble {
        self.lock().read_only = true;
        self
    }

    /// Each `save_file_part` takes `len / bytes_per_sec` seconds of tokio time.
    pub fn with_upload_speed(self, bytes_per_sec: u64) -> TelegramDouble {
        assert!(bytes_per_sec > 0, "upload speed must be positive");
        self.lock().upload_speed = Some(bytes_per_sec);
        self
    }

    /// Each `download` takes `len / bytes_per_sec` seconds of tokio time.
    pub fn with_download_speed(self, bytes_per_sec: u64) -> TelegramDouble {
        assert!(bytes_per_sec > 0, "download speed must be positive");
        self.lock().download_speed = Some(bytes_per_sec);
        self
    }

    /// Dates new messages `unix_secs` from now on (the default is the system clock).
    pub fn set_now(&self, unix_secs: i64) {
        self.lock().now = Some(unix_secs);
    }

    /// Queues a fault: the next call matching `op` (any call for [`Op::Any`]) fails with
    /// `error` and has no effect. Faults are taken in the order queued, the first matching
    /// one per call. A [`TgError::Disconnected`] fault also drops the connection.
    pub fn inject(&self, op: Op, error: TgError) {
        self.inject_after(op, 0, error);
    }

    /// Queues a fault that lets `pass` matching calls through first (while it is the first
    /// matching fault), then acts as [`TelegramDouble::inject`]'s.
    pub fn inject_after(&self, op: Op, pass: u32, error: TgError) {
        self.lock().faults.push_back((op, pass, error));
    }

    /// Faults queued and not yet hit.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// Drops the connection: calls in flight and every later call fail with
    /// [`TgError::Disconnected`] until `reconnect` (or `connect`).
    pub fn drop_connection(&self) {
        self.lock().dropped = true;
    }

    /// The next accepted `save_file_part` returns `Ok` but the server forgets the chunk,
    /// so that `send_document` reports it missing. Calls add up.
    pub fn lose_next_chunk(&self) {
        self.lock().chunks_to_lose += 1;
    }

    /// Someone else posts `text` in the chat (it takes a message id; we cannot edit it).
    pub fn post_foreign(&self, text: &str) -> i32 {
        let mut inner = self.lock();
        inner.post(text.trim().into(), None, true)
    }

    /// Calls made to `op` (all calls for [`Op::Any`]), failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        let inner = self.lock();
        match op {
            Op::Any => inner.calls.values().sum(),
            op => inner.calls.get(&op).copied().unwrap_or(0),
        }
    }

    /// Bytes of the chunks the server accepted (re-sent and lost chunks included).
    pub fn bytes_uploaded(&self) -> u64 {
        self.lock().bytes_uploaded
    }

    /// Bytes returned by downloads.
    pub fn bytes_downloaded(&self) -> u64 {
        self.lock().bytes_downloaded
    }

    /// Uploads with chunks on the server that have not been sent as a document.
    pub fn pending_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// The chat's messages, oldest first.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let inner = self.lock();
        inner
            .messages
            .iter()
            .map(|(&id, m)| ChatMessage {
                id,
                date: m.date,
                text: m.text.clone(),
                name: m.document.as_ref().map(|(name, _)| name.clone()),
                size: m.document.as_ref().map(|(_, bytes)| bytes.len() as u64),
                pinned: inner.pins.contains(&id),
                foreign: m.foreign,
            })
            .collect()
    }

    /// The bytes of the document of message `id`, if it exists and has one.
    pub fn document_bytes(&self, id: i32) -> Option<Vec<u8>> {
        let inner = self.lock();
        inner
            .messages
            .get(&id)?
            .document
            .as_ref()
            .map(|(_, b)| b.clone())
    }

    /// Flips byte `byte_index` of the document of message `id` (panics if there is none).
    pub fn corrupt(&self, id: i32, byte_index: usize) {
        let mut inner = self.lock();
        let (_, bytes) = inner
            .messages
            .get_mut(&id)
            .and_then(|m| m.document.as_mut())
            .unwrap_or_else(|| panic!("message {id} has no document"));
        bytes[byte_index] ^= 0xff;
    }

    /// Deletes message `id` as someone else would (no call counted; no fault taken).
    pub fn delete_behind_our_back(&self, id: i32) {
        self.lock().remove(id);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a call: counts it, checks the connection and takes a matching fault.
    fn begin(&self, op: Op) -> Result<MutexGuard<'_, Inner>, TgError> {
        let mut inner = self.lock();
        *inner.calls.entry(op).or_default() += 1;
        if op != Op::Connect {
            if !inner.connected {
                return Err(TgError::Other("not connected".into()));
            }
            if inner.dropped && op != Op::Reconnect {
                return Err(dropped());
            }
        }
        let fault = inner
            .faults
            .iter()
            .position(|(o, _, _)| *o == op || *o == Op::Any);
        if let Some(i) = fault
            && inner.faults[i].1 > 0
        {
            inner.faults[i].1 -= 1;
            return Ok(inner);
        }
        if let Some((_, _, error)) = fault.and_then(|i| inner.faults.remove(i)) {
            if matches!(error, TgError::Disconnected(_)) {
                inner.dropped = true;
            }
            return Err(error);
        }
        Ok(inner)
    }

    /// Resumes a call after a simulated transfer: it fails if the connection dropped meanwhile.
    fn resume(&self) -> Result<MutexGuard<'_, Inner>, TgError> {
        let inner = self.lock();
        if inner.dropped {
            return Err(dropped());
        }
        Ok(inner)
    }
}

impl TelegramApi for TelegramDouble {
    async fn connect(&self) -> Result<Account, TgError> {
        let mut inner = self.begin(Op::Connect)?;
        if inner.unauthorized {
            return Err(TgError::Unauthorized(
                "AUTH_KEY_UNREGISTERED (double)".into(),
            ));
        }
        if inner.chat_missing {
            return Err(TgError::ChatNotFound("CHANNEL_INVALID (double)".into()));
        }
        inner.connected = true;
        inner.dropped = false;
        Ok(inner.account.clone())
    }

    async fn reconnect(&self) -> Result<(), TgError> {
        let mut inner = self.begin(Op::Reconnect)?;
        inner.dropped = false;
        Ok(())
    }

    async fn save_file_part(
        &self,
        upload: &UploadRef,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<(), TgError> {
        let speed = {
            let inner = self.begin(Op::SaveFilePart)?;
            check_part(upload, index, bytes.len(), inner.account.premium)?;
            if let Some(up) = inner.uploads.get(&upload.file_id)
                && up.shape != *upload
            {
                return Err(invalid("FILE_PARTS_INVALID"));
            }
            inner.upload_speed
        };
        transfer(bytes.len(), speed).await;
        let mut inner = self.resume()?;
        inner.bytes_uploaded += bytes.len() as u64;
        if inner.chunks_to_lose > 0 {
            inner.chunks_to_lose -= 1;
            return Ok(());
        }
        let up = inner
            .uploads
            .entry(upload.file_id)
            .or_insert_with(|| Upload {
                shape: *upload,
                chunks: BTreeMap::new(),
            });
        up.chunks.insert(index, bytes);
        Ok(())
    }

    async fn send_document(
        &self,
        upload: &UploadRef,
        name: &str,
        caption: &str,
    ) -> Result<MessageInfo, TgError> {
        let mut inner = self.begin(Op::SendDocument)?;
        inner.check_post("CHAT_WRITE_FORBIDDEN")?;
        if inner.random_ids.contains(&upload.file_id) {
            return Err(invalid("RANDOM_ID_DUPLICATE"));
        }
        if upload.size == 0 {
            return Err(invalid("FILE_PARTS_INVALID"));
        }
        let caption = inner.caption(caption)?;
        let Some(up) = inner.uploads.get(&upload.file_id) else {
            return Err(TgError::ChunkMissing { chunk: 0 });
        };
        if up.shape != *upload {
            return Err(invalid("FILE_PARTS_INVALID"));
        }
        if let Some(chunk) = (0..upload.total_chunks).find(|i| !up.chunks.contains_key(i)) {
            return Err(TgError::ChunkMissing { chunk });
        }
        let up = inner
            .uploads
            .remove(&upload.file_id)
            .expect("looked up above");
        let bytes: Vec<u8> = up.chunks.into_values().flatten().collect();
        if bytes.len() as u64 != upload.size {
            return Err(invalid("FILE_PARTS_INVALID"));
        }
        let id = inner.post(caption, Some((name.into(), bytes)), false);
        inner.random_ids.insert(upload.file_id);
        Ok(inner.info(id).expect("just posted"))
    }

    async fn send_text(&self, text: &str, random_id: i64) -> Result<MessageInfo, TgError> {
        let mut inner = self.begin(Op::SendText)?;
        inner.check_post("CHAT_WRITE_FORBIDDEN")?;
        if inner.random_ids.contains(&random_id) {
            return Err(invalid("RANDOM_ID_DUPLICATE"));
        }
        let text = Inner::message_text(text)?;
        let id = inner.post(text, None, false);
        inner.random_ids.insert(random_id);
        Ok(inner.info(id).expect("just posted"))
    }

    async fn edit_text(&self, id: i32, text: &str) -> Result<(), TgError> {
        let mut inner = self.begin(Op::EditText)?;
        inner.check_post("CHAT_WRITE_FORBIDDEN")?;
        let Some(m) = inner.messages.get(&id) else {
            return Err(invalid("MESSAGE_ID_INVALID"));
        };
        if m.foreign {
            return Err(TgError::Forbidden("MESSAGE_AUTHOR_REQUIRED".into()));
        }
        let text = if m.document.is_some() {
            inner.caption(text)?
        } else {
            Inner::message_text(text)?
        };
        let m = inner.messages.get_mut(&id).expect("looked up above");
        if m.text == text {
            return Err(invalid("MESSAGE_NOT_MODIFIED"));
        }
        m.text = text;
        Ok(())
    }

    async fn get_messages(&self, ids: &[i32]) -> Result<Vec<Option<MessageInfo>>, TgError> {
        let inner = self.begin(Op::GetMessages)?;
        if ids.len() > MAX_IDS_PER_CALL {
            return Err(invalid("LIMIT_INVALID"));
        }
        Ok(ids.iter().map(|&id| inner.info(id)).collect())
    }

    async fn latest_id(&self) -> Result<Option<i32>, TgError> {
        let inner = self.begin(Op::LatestId)?;
        if inner.account.bot {
            return Err(TgError::BotMethodInvalid);
        }
        Ok(inner.messages.keys().next_back().copied())
    }

    async fn download(&self, id: i32, offset: u64, limit: u32) -> Result<Vec<u8>, TgError> {
        let (bytes, speed) = {
            let inner = self.begin(Op::Download)?;
            check_download(offset, limit)?;
            let Some((_, data)) = inner.messages.get(&id).and_then(|m| m.document.as_ref()) else {
                return Err(invalid("MESSAGE_ID_INVALID"));
            };
            let len = data.len() as u64;
            let start = offset.min(len) as usize;
            let end = (offset + u64::from(limit)).min(len) as usize;
            (data[start..end].to_vec(), inner.download_speed)
        };
        transfer(bytes.len(), speed).await;
        let mut inner = self.resume()?;
        inner.bytes_downloaded += bytes.len() as u64;
        Ok(bytes)
    }

    async fn delete_messages(&self, ids: &[i32]) -> Result<(), TgError> {
        let mut inner = self.begin(Op::DeleteMessages)?;
        inner.check_post("CHAT_ADMIN_REQUIRED")?;
        // Bots may not delete messages older than 48 hours, even as admins; every id is
        // checked before any is deleted (fakegram's rules::check_bot_delete).
        let now = inner.now();
        if inner.account.bot
            && ids.iter().any(|id| {
                inner
                    .messages
                    .get(id)
                    .is_some_and(|m| now - m.date >= BOT_DELETE_LIMIT)
            })
        {
            return Err(TgError::Forbidden("MESSAGE_DELETE_FORBIDDEN".into()));
        }
        for &id in ids {
            inner.remove(id);
        }
        Ok(())
    }

    async fn pin(&self, id: i32) -> Result<(), TgError> {
        let mut inner = self.begin(Op::Pin)?;
        inner.check_post("CHAT_ADMIN_REQUIRED")?;
        if !inner.messages.contains_key(&id) {
            return Err(invalid("MESSAGE_ID_INVALID"));
        }
        inner.pins.retain(|&p| p != id);
        inner.pins.push(id);
        Ok(())
    }

    async fn pinned(&self) -> Result<Option<MessageInfo>, TgError> {
        let inner = self.begin(Op::Pinned)?;
        Ok(inner.pins.last().and_then(|&id| inner.info(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::api::{DOWNLOAD_CHUNK, WaitKind};
    use tokio::time::Instant;

    fn rid() -> i64 {
        crate::telegram::api::random_id().unwrap()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn connected(tg: TelegramDouble) -> TelegramDouble {
        tg.connect().await.unwrap();
        tg
    }

    /// Uploads `bytes` chunk by chunk, in order.
    async fn upload(tg: &TelegramDouble, bytes: &[u8]) -> UploadRef {
        let u = UploadRef::new(bytes.len() as u64).unwrap();
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            tg.save_file_part(&u, i as u32, chunk.to_vec())
                .await
                .unwrap();
        }
        u
    }

    fn fake(size: u64) -> UploadRef {
        UploadRef {
            file_id: 7,
            size,
            total_chunks: size.div_ceil(CHUNK as u64) as u32,
            big: size > BIG_FILE_THRESHOLD,
        }
    }

    #[tokio::test]
    async fn connect_comes_first_and_reports_the_account() {
        let tg = TelegramDouble::user().premium(true);
        assert_eq!(
            tg.send_text("hi", rid()).await,
            Err(TgError::Other("not connected".into()))
        );
        let account = tg.connect().await.unwrap();
        assert!(!account.bot && account.premium);
        assert!(TelegramDouble::bot().connect().await.unwrap().bot);

        let bad = TelegramDouble::bot().unauthorized();
        assert!(matches!(bad.connect().await, Err(TgError::Unauthorized(_))));
        assert!(matches!(bad.latest_id().await, Err(TgError::Other(_))));
        let missing = TelegramDouble::user().chat_missing();
        assert!(matches!(
            missing.connect().await,
            Err(TgError::ChatNotFound(_))
        ));
    }

    #[tokio::test]
    async fn read_only_chats_refuse_changes_but_not_reads() {
        let tg = connected(TelegramDouble::user().read_only()).await;
        let id = tg.post_foreign("theirs");
        let forbidden = |r: Result<(), TgError>| matches!(r, Err(TgError::Forbidden(_)));
        assert!(matches!(
            tg.send_text("x", rid()).await,
            Err(TgError::Forbidden(_))
        ));
        assert!(forbidden(tg.edit_text(id, "x").await));
        assert!(forbidden(tg.pin(id).await));
        assert!(forbidden(tg.delete_messages(&[id]).await));
        let u = upload(&tg, &data(10)).await; // uploading chunks is not posting
        assert!(matches!(
            tg.send_document(&u, "f", "").await,
            Err(TgError::Forbidden(_))
        ));
        assert_eq!(
            tg.get_messages(&[id]).await.unwrap()[0]
                .as_ref()
                .unwrap()
                .text,
            "theirs"
        );
        assert_eq!(tg.latest_id().await, Ok(Some(id)));
    }

    #[tokio::test]
    async fn chunks_must_be_full_except_the_last() {
        let tg = connected(TelegramDouble::user()).await;
        let bytes = data(2 * CHUNK + 100);
        let u = UploadRef::new(bytes.len() as u64).unwrap();
        let err = |s: &str| Err(TgError::Invalid(s.into()));
        let short = tg.save_file_part(&u, 0, vec![0; CHUNK - 1]).await;
        assert_eq!(short, err("FILE_PART_SIZE_INVALID"));
        assert_eq!(
            tg.save_file_part(&u, 2, vec![0; 99]).await,
            err("FILE_PART_SIZE_INVALID")
        );
        assert_eq!(
            tg.save_file_part(&u, 2, vec![0; CHUNK]).await,
            err("FILE_PART_SIZE_INVALID")
        );
        assert_eq!(
            tg.save_file_part(&u, 1, vec![0; CHUNK + 1]).await,
            err("FILE_PART_TOO_BIG")
        );
        assert_eq!(
            tg.save_file_part(&u, 1, vec![]).await,
            err("FILE_PART_EMPTY")
        );
        assert_eq!(
            tg.save_file_part(&u, 3, vec![0; 100]).await,
            err("FILE_PART_INVALID")
        );
        assert_eq!(tg.bytes_uploaded(), 0);

        // Any order, re-sent chunks: the last write wins.
        tg.save_file_part(&u, 2, bytes[2 * CHUNK..].to_vec())
            .await
            .unwrap();
        tg.save_file_part(&u, 0, vec![9; CHUNK]).await.unwrap();
        tg.save_file_part(&u, 1, bytes[CHUNK..2 * CHUNK].to_vec())
            .await
            .unwrap();
        tg.save_file_part(&u, 0, bytes[..CHUNK].to_vec())
            .await
            .unwrap();
        let m = tg.send_document(&u, "a.bin", "cap").await.unwrap();
        assert!(tg.document_bytes(m.id) == Some(bytes.clone()));
        assert_eq!(
            m.document.unwrap(),
            DocumentInfo {
                name: "a.bin".into(),
                size: 2 * CHUNK as u64 + 100,
                ..DocumentInfo::default()
            }
        );
        assert_eq!(tg.bytes_uploaded(), bytes.len() as u64 + CHUNK as u64);
        assert_eq!(tg.pending_uploads(), 0);
    }

    #[tokio::test]
    async fn part_count_is_capped_on_the_first_chunk() {
        let user = connected(TelegramDouble::user()).await;
        let premium = connected(TelegramDouble::user().premium(true)).await;
        let over = fake(u64::from(MAX_CHUNKS) * CHUNK as u64 + 1);
        let parts_invalid = Err(TgError::Invalid("FILE_PARTS_INVALID".into()));
        assert_eq!(
            user.save_file_part(&over, 0, vec![0; CHUNK]).await,
            parts_invalid
        );
        assert_eq!(
            premium.save_file_part(&over, 0, vec![0; CHUNK]).await,
            Ok(())
        );
        let at_cap = fake(u64::from(MAX_CHUNKS) * CHUNK as u64);
        assert_eq!(
            user.save_file_part(&at_cap, 0, vec![0; CHUNK]).await,
            Ok(())
        );
        let over_premium = fake(u64::from(MAX_CHUNKS_PREMIUM) * CHUNK as u64 + 1);
        let r = premium
            .save_file_part(&over_premium, 0, vec![0; CHUNK])
            .await;
        assert_eq!(r, parts_invalid);
        // A shape that does not add up is refused too.
        let wrong_total = UploadRef {
            total_chunks: 3,
            ..fake(CHUNK as u64)
        };
        assert_eq!(
            user.save_file_part(&wrong_total, 0, vec![0; CHUNK]).await,
            parts_invalid
        );
    }

    #[tokio::test]
    async fn big_files_go_through_big_parts_and_small_ones_do_not() {
        let tg = connected(TelegramDouble::user()).await;
        let parts_invalid = Err(TgError::Invalid("FILE_PARTS_INVALID".into()));
        let small = UploadRef {
            big: true,
            ..fake(BIG_FILE_THRESHOLD)
        };
        assert_eq!(
            tg.save_file_part(&small, 0, vec![0; CHUNK]).await,
            parts_invalid
        );
        let big = UploadRef {
            big: false,
            ..fake(BIG_FILE_THRESHOLD + 1)
        };
        assert_eq!(
            tg.save_file_part(&big, 0, vec![0; CHUNK]).await,
            parts_invalid
        );
        for size in [BIG_FILE_THRESHOLD, BIG_FILE_THRESHOLD + 1] {
            let u = UploadRef::new(size).unwrap();
            assert_eq!(tg.save_file_part(&u, 0, vec![0; CHUNK]).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn missing_chunks_are_reported_and_uploads_are_consumed() {
        let tg = connected(TelegramDouble::user()).await;
        let bytes = data(3 * CHUNK);
        let u = UploadRef::new(bytes.len() as u64).unwrap();
        tg.save_file_part(&u, 0, bytes[..CHUNK].to_vec())
            .await
            .unwrap();
        tg.save_file_part(&u, 2, bytes[2 * CHUNK..].to_vec())
            .await
            .unwrap();
        assert_eq!(
            tg.send_document(&u, "f", "").await,
            Err(TgError::ChunkMissing { chunk: 1 })
        );
        tg.save_file_part(&u, 1, bytes[CHUNK..2 * CHUNK].to_vec())
            .await
            .unwrap();
        let m = tg.send_document(&u, "f", "").await.unwrap();
        assert!(tg.document_bytes(m.id) == Some(bytes.clone()));
        // Sending the same upload again is the same send (its file id is the random id).
        assert_eq!(
            tg.send_document(&u, "f", "").await,
            Err(TgError::Invalid("RANDOM_ID_DUPLICATE".into()))
        );
        // Another send of its parts finds them consumed.
        let again = UploadRef {
            file_id: u.file_id ^ 1,
            ..u
        };
        assert_eq!(
            tg.send_document(&again, "f", "").await,
            Err(TgError::ChunkMissing { chunk: 0 })
        );

        // A chunk the server loses.
        tg.lose_next_chunk();
        let u = upload(&tg, &bytes).await;
        assert_eq!(
            tg.send_document(&u, "f", "").await,
            Err(TgError::ChunkMissing { chunk: 0 })
        );
        assert_eq!(tg.messages().len(), 1);
    }

    #[tokio::test]
    async fn empty_files_are_refused() {
        let tg = connected(TelegramDouble::user()).await;
        let u = UploadRef::new(0).unwrap();
        let r = tg.save_file_part(&u, 0, vec![]).await;
        assert_eq!(r, Err(TgError::Invalid("FILE_PART_EMPTY".into())));
        let r = tg.send_document(&u, "empty", "").await;
        assert_eq!(r, Err(TgError::Invalid("FILE_PARTS_INVALID".into())));
    }

    #[tokio::test]
    async fn ids_increase_and_are_never_reused() {
        let tg = connected(TelegramDouble::user()).await;
        tg.set_now(1_700_000_000);
        assert_eq!(tg.latest_id().await, Ok(None));
        let a = tg.send_text("one", rid()).await.unwrap();
        let u = upload(&tg, &data(1000)).await;
        let b = tg.send_document(&u, "two", "caption").await.unwrap();
        assert_eq!((a.id, b.id, a.date), (1, 2, 1_700_000_000));
        tg.delete_messages(&[2, 99]).await.unwrap();
        assert_eq!(tg.latest_id().await, Ok(Some(1)));
        assert_eq!(tg.send_text("three", rid()).await.unwrap().id, 3);
        let got = tg.get_messages(&[3, 2, 1, 50]).await.unwrap();
        let ids: Vec<_> = got.iter().map(|m| m.as_ref().map(|m| m.id)).collect();
        assert_eq!(ids, [Some(3), None, Some(1), None]);
        let r = tg.get_messages(&[1; MAX_IDS_PER_CALL + 1]).await;
        assert_eq!(r, Err(TgError::Invalid("LIMIT_INVALID".into())));
        tg.delete_behind_our_back(3);
        assert_eq!(tg.latest_id().await, Ok(Some(1)));
        assert_eq!(tg.post_foreign("someone"), 4);
        assert_eq!(tg.send_text("five", rid()).await.unwrap().id, 5);
    }

    #[tokio::test]
    async fn bots_cannot_read_history_but_can_fetch_by_id() {
        let tg = connected(TelegramDouble::bot()).await;
        tg.send_text("x", rid()).await.unwrap();
        assert_eq!(tg.latest_id().await, Err(TgError::BotMethodInvalid));
        assert!(tg.get_messages(&[1]).await.unwrap()[0].is_some());
    }

    #[tokio::test]
    async fn edits_follow_telegram() {
        let tg = connected(TelegramDouble::user()).await;
        let id = tg.send_text("  index v1\n", rid()).await.unwrap().id;
        assert_eq!(tg.messages()[0].text, "index v1", "Telegram trims text");
        let err = |s: &str| Err(TgError::Invalid(s.into()));
        assert_eq!(
            tg.edit_text(id, "index v1").await,
            err("MESSAGE_NOT_MODIFIED")
        );
        assert_eq!(tg.edit_text(id, " ").await, err("MESSAGE_EMPTY"));
        tg.edit_text(id, "index v2").await.unwrap();
        assert_eq!(
            tg.get_messages(&[id]).await.unwrap()[0]
                .as_ref()
                .unwrap()
                .text,
            "index v2"
        );
        let long = "x".repeat(TEXT_LIMIT + 1);
        assert_eq!(tg.edit_text(id, &long).await, err("MESSAGE_TOO_LONG"));
        assert!(
            matches!(tg.send_text(&long, rid()).await, Err(TgError::Invalid(e)) if e == "MESSAGE_TOO_LONG")
        );
        let foreign = tg.post_foreign("theirs");
        assert!(matches!(
            tg.edit_text(foreign, "mine").await,
            Err(TgError::Forbidden(_))
        ));
        tg.delete_messages(&[id]).await.unwrap();
        assert_eq!(
            tg.edit_text(id, "index v3").await,
            err("MESSAGE_ID_INVALID")
        );

        let u = upload(&tg, &data(10)).await;
        let caption = "c".repeat(CAPTION_LIMIT + 1);
        assert!(tg.send_document(&u, "f", &caption).await.is_err());
        let doc = tg.send_document(&u, "f", "").await.unwrap().id;
        assert_eq!(
            tg.edit_text(doc, &caption).await,
            err("MEDIA_CAPTION_TOO_LONG")
        );
        tg.edit_text(doc, "new caption").await.unwrap();
        assert_eq!(tg.messages().last().unwrap().text, "new caption");
    }

    #[tokio::test]
    async fn the_newest_surviving_pin_is_the_pinned_message() {
        let tg = connected(TelegramDouble::user()).await;
        assert_eq!(tg.pinned().await, Ok(None));
        assert_eq!(
            tg.pin(1).await,
            Err(TgError::Invalid("MESSAGE_ID_INVALID".into()))
        );
        for text in ["a", "b", "c"] {
            tg.send_text(text, rid()).await.unwrap();
        }
        tg.pin(1).await.unwrap();
        tg.pin(2).await.unwrap();
        assert_eq!(tg.pinned().await.unwrap().unwrap().id, 2);
        tg.pin(1).await.unwrap(); // re-pinning brings it to the top
        assert_eq!(tg.pinned().await.unwrap().unwrap().id, 1);
        tg.delete_messages(&[1]).await.unwrap();
        assert_eq!(tg.pinned().await.unwrap().unwrap().id, 2);
        let pins: Vec<_> = tg.messages().iter().map(|m| m.pinned).collect();
        assert_eq!(pins, [true, false]);
        tg.delete_behind_our_back(2);
        assert_eq!(tg.pinned().await, Ok(None));
    }

    #[tokio::test]
    async fn downloads_are_aligned_and_sliced() {
        let tg = connected(TelegramDouble::user()).await;
        let bytes = data(3 * CHUNK + 5000);
        let u = upload(&tg, &bytes).await;
        let id = tg.send_document(&u, "f", "").await.unwrap().id;
        let text = tg.send_text("no document", rid()).await.unwrap().id;
        let step = u64::from(DOWNLOAD_CHUNK);

        // Compared with `assert!` so that a failure does not print megabytes.
        let first = tg.download(id, 0, DOWNLOAD_CHUNK).await.unwrap();
        assert!(first == bytes[..CHUNK]);
        let last = tg.download(id, 3 * step, DOWNLOAD_CHUNK).await.unwrap();
        assert!(last == bytes[3 * CHUNK..]);
        assert!(tg.download(id, 4 * step, DOWNLOAD_CHUNK).await == Ok(vec![]));
        let small = tg.download(id, 8192, 4096).await.unwrap();
        assert!(small == bytes[8192..12288]);
        assert_eq!(tg.bytes_downloaded(), (CHUNK + 5000 + 4096) as u64);

        let refusal = |r: Result<Vec<u8>, TgError>| match r {
            Err(TgError::Invalid(e)) => e,
            r => panic!("not refused: {:?}", r.map(|b| b.len())),
        };
        let crossing = 768 * 1024; // aligned, but crosses the 1 MiB boundary
        assert_eq!(
            refusal(tg.download(id, crossing, DOWNLOAD_CHUNK).await),
            "OFFSET_INVALID"
        );
        assert_eq!(refusal(tg.download(id, 100, 4096).await), "OFFSET_INVALID");
        assert_eq!(refusal(tg.download(id, 0, 3000).await), "LIMIT_INVALID");
        assert_eq!(
            refusal(tg.download(99, crossing, DOWNLOAD_CHUNK).await),
            "OFFSET_INVALID"
        );
        assert_eq!(
            refusal(tg.download(99, 0, DOWNLOAD_CHUNK).await),
            "MESSAGE_ID_INVALID"
        );
        assert_eq!(
            refusal(tg.download(text, 0, DOWNLOAD_CHUNK).await),
            "MESSAGE_ID_INVALID"
        );

        tg.corrupt(id, 10);
        let damaged = tg.document_bytes(id).unwrap();
        assert_eq!(damaged[10], bytes[10] ^ 0xff);
        assert!(damaged[11..] == bytes[11..] && damaged[..10] == bytes[..10]);
    }

    #[tokio::test]
    async fn injected_faults_are_taken_in_order_by_matching_calls() {
        let tg = connected(TelegramDouble::user()).await;
        let flood = |seconds| TgError::Wait {
            seconds,
            kind: WaitKind::Flood,
        };
        tg.inject(Op::SaveFilePart, flood(30));
        tg.inject(Op::Any, flood(5));
        tg.inject(Op::SaveFilePart, flood(60));
        assert_eq!(tg.send_text("a", rid()).await, Err(flood(5)));
        let u = UploadRef::new(10).unwrap();
        assert_eq!(tg.save_file_part(&u, 0, data(10)).await, Err(flood(30)));
        assert_eq!(tg.save_file_part(&u, 0, data(10)).await, Err(flood(60)));
        assert_eq!(tg.pending_faults(), 0);
        assert_eq!(tg.bytes_uploaded(), 0, "faulted calls have no effect");
        assert_eq!(tg.pending_uploads(), 0);
        tg.save_file_part(&u, 0, data(10)).await.unwrap();
        assert_eq!(
            tg.send_text("a", rid()).await.unwrap().id,
            1,
            "the faulted send took no id"
        );
        assert_eq!(tg.calls(Op::SaveFilePart), 3);
        assert_eq!(tg.calls(Op::SendText), 2);
        assert_eq!(tg.calls(Op::Any), 6); // connect included
    }

    #[tokio::test]
    async fn a_dropped_connection_stays_dropped_until_reconnect() {
        let tg = connected(TelegramDouble::user()).await;
        tg.inject(Op::SendText, TgError::Disconnected("reset".into()));
        assert_eq!(
            tg.send_text("a", rid()).await,
            Err(TgError::Disconnected("reset".into()))
        );
        assert!(matches!(
            tg.get_messages(&[1]).await,
            Err(TgError::Disconnected(_))
        ));
        assert!(matches!(
            tg.latest_id().await,
            Err(TgError::Disconnected(_))
        ));
        tg.inject(Op::Reconnect, TgError::Disconnected("still down".into()));
        assert!(tg.reconnect().await.is_err());
        assert!(matches!(
            tg.send_text("a", rid()).await,
            Err(TgError::Disconnected(_))
        ));
        tg.reconnect().await.unwrap();
        assert_eq!(tg.send_text("a", rid()).await.unwrap().id, 1);

        tg.drop_connection();
        assert!(matches!(tg.pinned().await, Err(TgError::Disconnected(_))));
        tg.reconnect().await.unwrap();
        assert_eq!(tg.pinned().await, Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn speeds_take_tokio_time() {
        let tg = TelegramDouble::user()
            .with_upload_speed(CHUNK as u64)
            .with_download_speed(2 * CHUNK as u64);
        tg.connect().await.unwrap();
        let t0 = Instant::now();
        let bytes = data(3 * CHUNK + CHUNK / 2);
        let u = upload(&tg, &bytes).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(3500));
        let id = tg.send_document(&u, "f", "").await.unwrap().id;
        let t1 = Instant::now();
        tg.download(id, 0, DOWNLOAD_CHUNK).await.unwrap();
        assert_eq!(t1.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drop_during_a_transfer_fails_it_without_effect() {
        let tg = connected(TelegramDouble::user().with_upload_speed(CHUNK as u64)).await;
        let u = UploadRef::new(CHUNK as u64).unwrap();
        let sending = tokio::spawn({
            let tg = tg.clone();
            async move { tg.save_file_part(&u, 0, vec![1; CHUNK]).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        tg.drop_connection();
        assert!(matches!(
            sending.await.unwrap(),
            Err(TgError::Disconnected(_))
        ));
        assert_eq!((tg.bytes_uploaded(), tg.pending_uploads()), (0, 0));
    }
}
