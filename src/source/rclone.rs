//! An rclone remote as a source: `--source rclone:REMOTE:PATH` reaches FTP, SFTP, WebDAV,
//! S3 and the cloud drives through rclone (docs/rclone.md).
//!
//! Every request goes to the run's one `rclone rcd` ([`crate::rclone::Rcd`]), shared with
//! an rclone store: a file costs requests, not processes.
//!
//! - Listing asks `operations/list` (recursive, files only, with hashes when the remote
//!   keeps them as metadata, so a listing never makes the server read every file).
//!   Transient listing failures are retried a few times (backon) before the run gives up.
//!   When a recursive listing fails below the root (a folder that may not be read), the
//!   tree is listed folder by folder instead, and the folders that fail are reported on
//!   their own, like unreadable folders of a local source.
//! - Reading asks for HTTP ranges ([`RangeReader`]) from an HTTP server the rcd serves the
//!   remote through ([`ReadVia::Listed`]: it knows the files from its folder listings, so
//!   a read is one request to the remote; `--rc-serve`, a lookup and a read, where the
//!   rclone is too old). A part starts where it starts, so a large file resumes at its
//!   next part without downloading the earlier ones, and nothing is staged on local disk.
//!   With a read window (the part size) each request stops at the part's end. Only a
//!   file read whole in one part goes through the served remote: it reads ahead in chunks
//!   that double from 8 MiB, which a part of a larger file would overrun; those parts go
//!   through `--rc-serve`. A small file next in line (its last part at most
//!   [`PREFETCH_MAX`], up to four times `--jobs` files ahead) is fetched ahead when the
//!   runner says it is coming ([`Source::prefetch`]), so a worker finds its bytes waiting
//!   instead of a round trip through a paced remote.
//! - `stat` (the change check after a read) lists the file's folder, one level, and that
//!   listing answers every check of the folder whose ticket was taken before it started
//!   (`FolderCheck`). A check takes its ticket when it is asked; a file fetched ahead
//!   took its ticket when its last byte came, so one listing vouches for every file fetched
//!   ahead until then; while files of the folder are still being fetched ahead, a listing
//!   waits for them a little ([`CHECK_LINGER`]) to vouch for them too. On a remote that
//!   spaces its requests (WebDAV's pacer: 10 ms) a small file then costs a little
//!   over one request (1.07 in the benchmark) instead of three. Files of folders with more than
//!   [`FOLDER_CHECK_MAX`] files, and any file the listing does not show, are looked at
//!   alone (`operations/stat`). A file found changed is dropped from the read
//!   server's cache, so its next read sees it as it is.
//!
//! rclone's failures are sorted into [`SourceError`] kinds: a missing binary, an
//! unconfigured remote, refused credentials and a root that does not exist make the source
//! [`SourceError::Unavailable`] with the fix in the message; a vanished file is
//! [`SourceError::Vanished`]; connection resets, timeouts, 5xx answers, a crashed rclone
//! and the like are [`SourceError::Transient`] and go through the runner's backoff. A read
//! that fails after it has delivered some bytes ends its reader with an I/O error (not a
//! short read), so the runner retries the part instead of taking the file as changed.
//! Secrets given inline in a connection string (`pass=`, `token=`, `key=`...) are masked in
//! every message.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio_util::task::AbortOnDropHandle;

use super::{Listing, Source, SourceEntry, SourceError};
use crate::rclone::rcd::ReadVia;
use crate::rclone::reader::RangeReader;
use crate::rclone::{Class, RcError, Rcd, RcloneConfig, Remote};
use crate::runner::RetryPolicy;
use crate::time::Timestamp;

pub use crate::rclone::BINARY_ENV;

/// The `--source` prefix that selects this source.
pub const PREFIX: &str = "rclone:";

/// A reader over a file of an rclone source.
pub type RcloneReader = RangeReader;

/// An rclone remote (`nas:photos`, `:sftp,host=...:dir`) read through rclone.
#[derive(Debug)]
pub struct RcloneSource {
    config: RcloneConfig,
    remote: Remote,
    /// The source for messages (`rclone:REMOTE:PATH`, secrets masked).
    shown: String,
    rcd: OnceLock<Arc<Rcd>>,
    window: Option<u64>,
    list_retry: RetryPolicy,
    known: Mutex<HashMap<String, Known>>,
    /// How many files the last listing found in each folder (by remote name).
    folder_files: Mutex<HashMap<String, usize>>,
    /// The change checks in flight, by folder (remote name).
    checks: Mutex<HashMap<String, Weak<FolderCheck>>>,
    /// Parts being fetched ahead, oldest first (at most [`PREFETCH_KEEP`]).
    prefetched: Mutex<std::collections::VecDeque<Prefetched>>,
    /// Files whose bytes were all in when their ticket was taken (fetched ahead): the
    /// check after their read may be answered by any listing that started after it.
    vouched: Mutex<HashMap<String, Ticket>>,
}

/// The largest part fetched ahead (its bytes wait in memory for the worker).
pub const PREFETCH_MAX: u64 = 1 << 20;

/// Bytes fetched ahead and not yet taken at most: past this, hints are ignored.
const PREFETCH_BYTES: u64 = 32 << 20;

/// Parts fetched ahead at most; the oldest, never opened (a file the budget deferred), is
/// dropped for a new one.
const PREFETCH_KEEP: usize = 256;

/// A part being fetched ahead: the last part of `path`, from `offset`.
struct Prefetched {
    path: String,
    offset: u64,
    len: u64,
    /// The bytes, and the ticket taken once they were all in.
    task: AbortOnDropHandle<Result<(Bytes, Option<Ticket>), RcError>>,
}

/// A change check's place in line: its folder and its ticket.
type Ticket = (Arc<FolderCheck>, u64);

impl std::fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetched")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// Folders with at most this many files answer their files' change checks with one
/// listing for all the checks asked meanwhile; in a larger folder each listing would carry
/// more than it saves, and each file is looked at alone.
pub const FOLDER_CHECK_MAX: usize = 1000;

/// What the last listing (or look) said about a file.
#[derive(Debug, Clone)]
struct Known {
    size: u64,
    mtime: Timestamp,
    hashes: BTreeMap<String, String>,
}

/// The change checks of one folder (see the module docs): each check takes a ticket, and a
/// listing answers every ticket taken before it started.
#[derive(Debug)]
struct FolderCheck {
    /// The folder (remote name).
    folder: String,
    /// Tickets taken so far.
    asked: AtomicU64,
    /// Files of the folder being fetched ahead: each takes a ticket when it is in.
    fetching: AtomicU64,
    /// Told of every ticket taken and every fetch ahead that ended.
    moved: tokio::sync::Notify,
    /// The last ticket the latest listing answers, and that listing's files by name.
    latest: tokio::sync::Mutex<(u64, Option<FolderFiles>)>,
}

/// A listing of a folder waits at most this long for files of the folder still being
/// fetched ahead to come in, so that it vouches for them too (at most
/// [`CHECK_BATCH`] tickets waiting; not at all when none is being fetched).
pub const CHECK_LINGER: Duration = Duration::from_millis(100);

/// Unanswered tickets at which a listing stops waiting for more ([`CHECK_LINGER`]).
pub const CHECK_BATCH: u64 = 32;

/// A fetch ahead of a file of a folder, counted in [`FolderCheck::fetching`] until dropped.
struct Fetching(Arc<FolderCheck>);

impl Fetching {
    fn new(check: Arc<FolderCheck>) -> Self {
        check.fetching.fetch_add(1, Ordering::SeqCst);
        Fetching(check)
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.fetching.fetch_sub(1, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }
}

impl FolderCheck {
    /// A ticket for a check asked now: what was read before this call is vouched for by
    /// a listing that starts after it.
    fn ticket(self: &Arc<Self>) -> Ticket {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.moved.notify_waiters();
        (self.clone(), ticket)
    }

    /// The folder's files as a listing that started after `ticket` was taken shows them:
    /// the latest one if it did, else a new one; `None` if listing failed.
    async fn answer(&self, ticket: u64, rcd: &Rcd, fs: &str) -> Option<FolderFiles> {
        let mut latest = self.latest.lock().await;
        if latest.0 < ticket {
            // A listing costs a request like a file's read does: while files of the folder
            // are still being fetched ahead, it waits a little for them, so that it
            // vouches for them too and their checks need no listing of their own.
            let until = tokio::time::Instant::now() + CHECK_LINGER;
            loop {
                let moved = self.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                let waiting = self.asked.load(Ordering::SeqCst) - latest.0;
                if self.fetching.load(Ordering::SeqCst) == 0 || waiting >= CHECK_BATCH {
                    break;
                }
                if tokio::time::timeout_at(until, moved).await.is_err() {
                    break;
                }
            }
            // Every ticket taken so far was taken before this listing starts.
            let answers = self.asked.load(Ordering::SeqCst);
            let items = list_items(rcd, fs, &self.folder, false, false).await.ok()?;
            let files = items
                .into_iter()
                .filter(|i| !i.is_dir)
                .map(|i| (i.path.clone(), i))
                .collect();
            *latest = (answers, Some(Arc::new(files)));
        }
        latest.1.clone()
    }
}

/// A folder listing's files, by name.
type FolderFiles = Arc<HashMap<String, Item>>;

impl RcloneSource {
    /// The source for a `--source` value: `None` unless it starts with `rclone:`; an error
    /// message (naming the fix) when nothing follows the prefix.
    pub fn from_source(source: &str) -> Option<Result<Self, String>> {
        let remote = source.strip_prefix(PREFIX)?;
        if remote.trim().is_empty() {
            return Some(Err(format!(
                "--source {source:?} names no remote: write rclone:REMOTE:PATH, e.g. \
                 rclone:nas:photos (`rclone listremotes` shows the configured ones)"
            )));
        }
        Some(Ok(RcloneSource::new(remote)))
    }

    /// A source over `remote` as rclone spells it (`nas:photos`, `:ftp,host=...:dir`), run
    /// with the binary named by `TGFERRY_RCLONE` (default `rclone`).
    pub fn new(remote: &str) -> Self {
        let remote = Remote::new(remote);
        RcloneSource {
            config: RcloneConfig::from_env(),
            shown: remote.redact(&format!("{PREFIX}{}", remote.fs)),
            remote,
            rcd: OnceLock::new(),
            window: None,
            list_retry: RetryPolicy::new(vec![
                Duration::from_secs(1),
                Duration::from_secs(3),
                Duration::from_secs(9),
            ]),
            known: Mutex::new(HashMap::new()),
            folder_files: Mutex::new(HashMap::new()),
            checks: Mutex::new(HashMap::new()),
            prefetched: Mutex::new(Default::default()),
            vouched: Mutex::new(HashMap::new()),
        }
    }

    /// How to read a file of `size` from `offset`: a whole file in one part through the
    /// served remote (one request to the remote); a part of a larger file through
    /// `--rc-serve`, whose reads stop at the part's end (the served remote reads ahead in
    /// chunks that double from 8 MiB, and a read that stops early would have made the
    /// remote send more than the part: the socket buffers' worth).
    fn read_via(&self, offset: u64, size: Option<u64>) -> ReadVia {
        match size {
            Some(size) if offset == 0 && self.window.is_none_or(|w| size <= w) => ReadVia::Listed,
            _ => ReadVia::RcServe,
        }
    }

    /// The bytes fetched ahead for `path` from `offset` and their ticket, if they were
    /// asked for and came.
    async fn take_prefetched(&self, path: &str, offset: u64) -> Option<(Bytes, Option<Ticket>)> {
        let fetching = {
            let mut prefetched = self.prefetched.lock().unwrap();
            let i = prefetched
                .iter()
                .position(|p| p.path == path && p.offset == offset)?;
            prefetched.remove(i)?
        };
        fetching.task.await.ok()?.ok()
    }

    /// The change checks of the folder of `name` (a remote name), shared with every
    /// other check of it in flight; `None` for a folder too large for them.
    fn folder_check(&self, name: &str) -> Option<Arc<FolderCheck>> {
        let folder = folder_of(name);
        let small = self
            .folder_files
            .lock()
            .unwrap()
            .get(folder)
            .is_some_and(|n| *n <= FOLDER_CHECK_MAX);
        if !small {
            return None;
        }
        let mut checks = self.checks.lock().unwrap();
        checks.retain(|_, w| w.strong_count() > 0);
        if let Some(c) = checks.get(folder).and_then(Weak::upgrade) {
            return Some(c);
        }
        let c = Arc::new(FolderCheck {
            folder: folder.to_owned(),
            asked: AtomicU64::new(0),
            fetching: AtomicU64::new(0),
            moved: tokio::sync::Notify::new(),
            latest: tokio::sync::Mutex::new((0, None)),
        });
        checks.insert(folder.to_owned(), Arc::downgrade(&c));
        Some(c)
    }

    /// Uses this rclone binary.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.config.binary = binary.into();
        self
    }

    /// Reads in windows of `bytes` (the part size): each read request stops at the part's
    /// end instead of reading ahead into the next one.
    pub fn with_read_window(mut self, bytes: u64) -> Self {
        self.window = (bytes > 0).then_some(bytes);
        self
    }

    /// Sets an environment variable for rclone (e.g. `RCLONE_CONFIG`, or a remote's
    /// `RCLONE_CONFIG_NAS_*`), without touching this process's environment. Sources and
    /// stores with the same settings share one rclone process.
    pub fn with_env(mut self, key: impl Into<String>, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.config
            .env
            .push((key.into(), value.as_ref().to_owned()));
        self
    }

    /// Waits between tries of a listing that failed transiently (default 1 s, 3 s, 9 s).
    pub fn with_list_retry(mut self, policy: RetryPolicy) -> Self {
        self.list_retry = policy;
        self
    }

    /// The remote as rclone spells it.
    pub fn remote(&self) -> &str {
        &self.remote.fs
    }

    /// The run's rclone process this source uses (started at the first request).
    pub fn rcd(&self) -> &Arc<Rcd> {
        self.rcd.get_or_init(|| Rcd::shared(&self.config))
    }

    /// The hashes the remote gave for `path` in the last listing (`md5`, `sha1`, ...;
    /// empty when the remote keeps none or computing them would read the file).
    pub fn hashes(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let known = self.known.lock().unwrap();
        known.get(path).map(|k| k.hashes.clone())
    }

    fn unavailable(&self, message: String) -> SourceError {
        SourceError::Unavailable {
            root: self.shown.clone(),
            message,
        }
    }

    /// The error for a failure that concerns the whole source.
    fn root_error(&self, f: RcError) -> SourceError {
        let msg = self.remote.redact(&f.message);
        let message = match f.class {
            Class::NoBinary => msg,
            Class::NotConfigured => self.remote.not_configured(&msg),
            Class::ConfigLocked => format!(
                "the rclone config file is encrypted ({msg}): set RCLONE_CONFIG_PASS to its \
                 password"
            ),
            Class::Auth => format!(
                "the remote refused the credentials ({msg}): check the user, password, token \
                 or keys of the remote (passwords in the config or in RCLONE_CONFIG_*_PASS \
                 must be `rclone obscure`d)"
            ),
            Class::Denied => {
                format!("permission denied ({msg}): check that this account may read the path")
            }
            Class::NotFound => format!(
                "does not exist on the remote ({msg}): check the path after the remote name \
                 (`rclone lsf REMOTE:` lists the top level)"
            ),
            Class::IsFile => {
                "is a file, not a folder: --source takes a folder (rclone:REMOTE:FOLDER)".into()
            }
            Class::Transient => format!(
                "the remote could not be reached ({msg}): check that the server is up and \
                 reachable; the next run tries again"
            ),
            Class::Full | Class::Other => format!("rclone failed: {msg}"),
        };
        self.unavailable(message)
    }

    /// The error for a failure while reading or looking at one file.
    fn file_error(&self, path: &str, f: RcError) -> SourceError {
        match f.class {
            Class::NoBinary | Class::NotConfigured | Class::ConfigLocked | Class::Auth => {
                self.root_error(f)
            }
            Class::Denied => SourceError::Unreadable {
                path: path.to_owned(),
                message: self.remote.redact(&f.message),
            },
            Class::NotFound => SourceError::Vanished {
                path: path.to_owned(),
            },
            Class::IsFile | Class::Full | Class::Transient | Class::Other => {
                SourceError::Transient {
                    path: path.to_owned(),
                    message: self.remote.redact(&f.message),
                }
            }
        }
    }

    /// Whether listing should ask for hashes: only when the remote has some and keeps
    /// them as metadata (`SlowHash` remotes, like SFTP and local disks, would read every
    /// file on every listing). Also what makes a root that is a file, or does not
    /// exist, fail here with its kind.
    async fn cheap_hashes(&self) -> Result<bool, RcError> {
        let info = self
            .rcd()
            .call("operations/fsinfo", &json!({ "fs": self.remote.fs }))
            .await?;
        let features: FsInfo = serde_json::from_value(info).map_err(|e| {
            RcError::from_message(&format!(
                "rclone's operations/fsinfo answered something unexpected: {e}"
            ))
        })?;
        let slow = features
            .features
            .get("SlowHash")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        Ok(!features.hashes.is_empty() && !slow)
    }

    /// Checks that the root is a folder rclone can reach and list (its top level, folders
    /// only): a job checks its source this way before it creates anything (a vault, a
    /// store, a state), so that a mistyped remote or path is reported first. A transient
    /// failure passes (the run's listing retries it).
    pub async fn check_root(&self) -> Result<(), SourceError> {
        let probe = async {
            self.cheap_hashes().await?;
            self.rcd()
                .call(
                    "operations/list",
                    &json!({
                        "fs": self.remote.fs,
                        "remote": "",
                        "opt": { "dirsOnly": true, "noMimeType": true, "noModTime": true },
                    }),
                )
                .await
        };
        match probe.await {
            Err(f) if f.class != Class::Transient => Err(self.root_error(f)),
            _ => Ok(()),
        }
    }

    /// Lists `dir` (relative to the root): recursively, or one level with folders.
    async fn list_dir(&self, dir: &str, recurse: bool, hash: bool) -> Result<Vec<Item>, RcError> {
        list_items(self.rcd(), &self.remote.fs, dir, recurse, hash).await
    }

    /// One listing attempt.
    async fn list_once(&self) -> Result<Listing, RcError> {
        let hash = self.cheap_hashes().await?;
        let mut listing = Listing::default();
        let mut known = HashMap::new();
        match self.list_dir("", true, hash).await {
            Ok(items) => {
                for item in items {
                    add_item(item, &mut listing, &mut known);
                }
            }
            Err(e) if matches!(e.class, Class::Denied | Class::NotFound | Class::Other) => {
                // Maybe only a folder below the root: list folder by folder.
                self.list_by_folder(hash, &mut listing, &mut known).await?;
            }
            Err(e) => return Err(e),
        }
        listing.files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut folders: HashMap<String, usize> = HashMap::new();
        for path in known.keys() {
            *folders
                .entry(folder_of(&remote_name(path)).to_owned())
                .or_default() += 1;
        }
        *self.folder_files.lock().unwrap() = folders;
        *self.known.lock().unwrap() = known;
        Ok(listing)
    }

    /// `path` looked at alone (`operations/stat`).
    async fn look_alone(&self, path: &str) -> Result<Item, SourceError> {
        let answer = self
            .rcd()
            .call(
                "operations/stat",
                &json!({
                    "fs": self.remote.fs,
                    "remote": remote_name(path),
                    "opt": { "noMimeType": true },
                }),
            )
            .await
            .map_err(|f| self.file_error(path, f))?;
        let item = answer.get("item").cloned().unwrap_or_default();
        if item.is_null() {
            return Err(SourceError::Vanished {
                path: path.to_owned(),
            });
        }
        serde_json::from_value(item).map_err(|e| SourceError::Transient {
            path: path.to_owned(),
            message: format!("rclone's operations/stat answered something unexpected: {e}"),
        })
    }

    /// Lists the tree one folder at a time; a folder below the root that fails is
    /// reported on its own (the root failing fails the listing).
    async fn list_by_folder(
        &self,
        hash: bool,
        listing: &mut Listing,
        known: &mut HashMap<String, Known>,
    ) -> Result<(), RcError> {
        let mut todo = vec![String::new()];
        while let Some(dir) = todo.pop() {
            let items = match self.list_dir(&dir, false, hash).await {
                Ok(items) => items,
                Err(e) if dir.is_empty() || e.class == Class::Transient => return Err(e),
                Err(e) => {
                    let message = self.remote.redact(&e.message);
                    listing
                        .errors
                        .push((dir.clone(), SourceError::Unreadable { path: dir, message }));
                    continue;
                }
            };
            for item in items {
                if item.is_dir {
                    todo.push(item.path);
                } else {
                    add_item(item, listing, known);
                }
            }
        }
        Ok(())
    }
}

/// What `operations/fsinfo` says about a remote (the part tgferry uses).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FsInfo {
    #[serde(default)]
    pub(crate) hashes: Vec<String>,
    #[serde(default)]
    pub(crate) features: HashMap<String, serde_json::Value>,
    /// The modification time precision, in nanoseconds.
    #[serde(default)]
    pub(crate) precision: Option<i64>,
}

impl Source for RcloneSource {
    type Reader = RcloneReader;

    async fn list(&self) -> Result<Listing, SourceError> {
        use backon::Retryable;
        let mut tries = 1u32;
        let result = (|| self.list_once())
            .retry(self.list_retry.clone())
            .when(|f: &RcError| f.class == Class::Transient)
            .notify(|f: &RcError, wait: Duration| {
                tries += 1;
                tracing::warn!(
                    "listing {} failed ({}); trying again in {}",
                    self.shown,
                    self.remote.redact(&f.message),
                    crate::time::human_duration(wait)
                );
            })
            .await;
        result.map_err(|mut f| {
            if f.class == Class::Transient && tries > 1 {
                f.message = format!("{tries} tries, the last: {}", f.message);
            }
            self.root_error(f)
        })
    }

    async fn open(&self, path: &str, offset: u64) -> Result<RcloneReader, SourceError> {
        let end = self.known.lock().unwrap().get(path).map(|k| k.size);
        let via = self.read_via(offset, end);
        // A read from now on: what vouched for an earlier one does not for this one.
        self.vouched.lock().unwrap().remove(path);
        if let Some((bytes, ticket)) = self.take_prefetched(path, offset).await
            && end == Some(offset + bytes.len() as u64)
        {
            if let Some(ticket) = ticket {
                self.vouched.lock().unwrap().insert(path.to_owned(), ticket);
            }
            return Ok(RangeReader::fetched(
                self.rcd().clone(),
                self.remote.clone(),
                &remote_name(path),
                via,
                offset,
                bytes,
            ));
        }
        match RangeReader::open(
            self.rcd().clone(),
            self.remote.clone(),
            &remote_name(path),
            via,
            offset,
            self.window,
            end,
        )
        .await
        {
            Ok(r) => Ok(r),
            // Some backends answer "not found" when the server is away: gone only if a
            // stat says so too.
            Err(f) if f.class == Class::NotFound => match self.stat(path).await {
                Ok(_) => Err(SourceError::Transient {
                    path: path.to_owned(),
                    message: self.remote.redact(&f.message),
                }),
                Err(e) => Err(e),
            },
            Err(f) => Err(self.file_error(path, f)),
        }
    }

    /// Four times as many as run at once: a file fetched ahead is vouched for by the next
    /// listing of its folder, so the deeper the line, the fewer listings (and the more of
    /// them are done before a worker asks).
    fn read_ahead_files(&self, jobs: usize) -> usize {
        4 * jobs
    }

    /// Fetches the last part of a small file ahead (see the module docs); anything else
    /// is left to its `open`.
    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        let size = self.known.lock().unwrap().get(path).map(|k| k.size);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if len == 0 || len > PREFETCH_MAX || size != Some(offset + len) {
            return;
        }
        let mut prefetched = self.prefetched.lock().unwrap();
        if prefetched
            .iter()
            .any(|p| p.path == path && p.offset == offset)
        {
            return;
        }
        if prefetched.iter().map(|p| p.len).sum::<u64>() + len > PREFETCH_BYTES {
            return;
        }
        if prefetched.len() >= PREFETCH_KEEP {
            prefetched.pop_front();
        }
        let name = remote_name(path).into_owned();
        let (rcd, remote, via, check) = (
            self.rcd().clone(),
            self.remote.clone(),
            self.read_via(offset, size),
            self.folder_check(&name),
        );
        let fetching = check.clone().map(Fetching::new);
        let task = runtime.spawn(async move {
            let _fetching = fetching; // counted until this ends, however it ends
            let mut r = RangeReader::open(
                rcd,
                remote,
                &name,
                via,
                offset,
                Some(len),
                Some(offset + len),
            )
            .await?;
            let mut bytes = Vec::with_capacity(len as usize);
            tokio::io::AsyncReadExt::read_to_end(&mut r, &mut bytes)
                .await
                .map_err(|e| RcError::from_message(&e.to_string()))?;
            // All the bytes are in: a listing that starts from now on vouches for them.
            // The worker's check starts one if none did since; that one then answers for
            // every file fetched ahead until then.
            Ok((Bytes::from(bytes), check.map(|c| c.ticket())))
        });
        prefetched.push_back(Prefetched {
            path: path.to_owned(),
            offset,
            len,
            task: AbortOnDropHandle::new(task),
        });
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let name = remote_name(path);
        // The check after a read of bytes fetched ahead may take a listing started since
        // they came; any other look takes a listing of its folder started from now on. A
        // folder too large for that, a failed listing or a file it does not show: the file
        // is looked at alone.
        let vouched = self.vouched.lock().unwrap().remove(path);
        let ticket = vouched.or_else(|| self.folder_check(&name).map(|c| c.ticket()));
        let seen = match ticket {
            Some((check, ticket)) => check
                .answer(ticket, self.rcd(), &self.remote.fs)
                .await
                .and_then(|files| files.get(&*name).cloned()),
            None => None,
        };
        let item = match seen {
            Some(item) => item,
            None => self.look_alone(path).await?,
        };
        if item.is_dir {
            return Err(SourceError::Vanished {
                path: path.to_owned(),
            });
        }
        let size = u64::try_from(item.size).map_err(|_| SourceError::Unreadable {
            path: path.to_owned(),
            message: "the remote no longer knows its size".into(),
        })?;
        let mtime = parse_mtime(&item.mod_time).ok_or_else(|| SourceError::Unreadable {
            path: path.to_owned(),
            message: format!("unusable modification time {:?}", item.mod_time),
        })?;
        // Reads that follow (a retry after a change) go as far as the file does now, and
        // the read server looks it up again.
        let changed = match self.known.lock().unwrap().get_mut(path) {
            Some(k) if (k.size, k.mtime) != (size, mtime) => {
                (k.size, k.mtime) = (size, mtime);
                true
            }
            _ => false,
        };
        if changed {
            self.rcd().forget(&self.remote.fs, &name).await;
        }
        Ok(SourceEntry {
            path: path.to_owned(),
            size,
            mtime,
        })
    }
}

/// One entry of an rclone listing.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Item {
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) size: i64,
    #[serde(default)]
    pub(crate) mod_time: String,
    #[serde(default)]
    pub(crate) is_dir: bool,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// Lists `dir` of the remote `fs` (relative to its root): recursively, or one level with
/// folders.
async fn list_items(
    rcd: &Rcd,
    fs: &str,
    dir: &str,
    recurse: bool,
    hash: bool,
) -> Result<Vec<Item>, RcError> {
    let answer = rcd
        .call(
            "operations/list",
            &json!({
                "fs": fs,
                "remote": dir,
                "opt": {
                    "recurse": recurse,
                    "filesOnly": recurse,
                    "noMimeType": true,
                    "showHash": hash,
                },
            }),
        )
        .await?;
    #[derive(Deserialize)]
    struct List {
        list: Vec<Item>,
    }
    let list: List = serde_json::from_value(answer).map_err(|e| {
        RcError::from_message(&format!(
            "rclone's operations/list answered something unexpected: {e}"
        ))
    })?;
    Ok(list.list)
}

/// The folder of a remote name (`""` for the root).
fn folder_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(folder, _)| folder)
}

/// A file's name on the remote, from its key (the name it stands for).
fn remote_name(key: &str) -> std::borrow::Cow<'_, str> {
    super::key::to_text(key).unwrap_or(std::borrow::Cow::Borrowed(key))
}

pub(crate) fn parse_mtime(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

fn add_item(item: Item, listing: &mut Listing, known: &mut HashMap<String, Known>) {
    if item.is_dir {
        return;
    }
    // The remote's names are text; a backslash in one is escaped in its key.
    let path = super::key::from_text(&item.path).into_owned();
    if !super::is_clean_relative(&path) {
        listing.refused.push((
            path,
            "the name cannot be stored as a clean relative path".into(),
        ));
        return;
    }
    let Ok(size) = u64::try_from(item.size) else {
        listing.refused.push((
            path,
            "the remote does not know its size (e.g. a Google Docs document); export it \
             to a regular file first"
                .into(),
        ));
        return;
    };
    let Some(mtime) = parse_mtime(&item.mod_time) else {
        listing.refused.push((
            path,
            format!(
                "the remote gave no usable modification time ({:?})",
                item.mod_time
            ),
        ));
        return;
    };
    known.insert(
        path.clone(),
        Known {
            size,
            mtime,
            hashes: item.hashes,
        },
    );
    listing.files.push(SourceEntry { path, size, mtime });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_escaped_backslash_is_one_in_the_remote_name() {
        assert_eq!(remote_name("a\\\\b.txt"), "a\\b.txt");
        assert_eq!(remote_name("a/b.txt"), "a/b.txt");
    }

    #[test]
    fn names_and_masking() {
        let src = RcloneSource::new(":webdav,url='http://h:1',user=u,pass=hunter22:x");
        assert_eq!(
            src.shown,
            "rclone::webdav,url='http://h:1',user=u,pass=***:x"
        );
        let f = || RcError {
            class: Class::NotConfigured,
            message: "didn't find section in config file".into(),
        };
        let msg = RcloneSource::new("my_nas:x").root_error(f()).to_string();
        assert!(msg.contains("RCLONE_CONFIG_MY_NAS_TYPE"), "{msg}");
        let leak = RcloneSource::new(":sftp,host=h,pass=hunter22:x");
        let msg = leak
            .root_error(RcError {
                class: Class::Other,
                message: "bad :sftp,host=h,pass=hunter22:x".into(),
            })
            .to_string();
        assert!(!msg.contains("hunter22"), "{msg}");
        assert!(RcloneSource::from_source("/local/dir").is_none());
        assert!(RcloneSource::from_source("rclone:").unwrap().is_err());
        assert_eq!(
            RcloneSource::from_source("rclone:nas:photos")
                .unwrap()
                .unwrap()
                .remote(),
            "nas:photos"
        );
    }

    #[test]
    fn listing_items() {
        let mut listing = Listing::default();
        let mut known = HashMap::new();
        for line in [
            r#"{"Path":"a.txt","Name":"a.txt","Size":11,"ModTime":"2026-11-22T04:21:58.123456789+01:00","IsDir":false,"Hashes":{"md5":"5eb6"}}"#,
            r#"{"Path":"dir","Name":"dir","Size":-1,"ModTime":"2026-11-22T04:21:58Z","IsDir":true}"#,
            r#"{"Path":"doc","Name":"doc","Size":-1,"ModTime":"2026-11-22T04:21:58Z","IsDir":false}"#,
            r#"{"Path":"a/../b","Name":"b","Size":1,"ModTime":"2026-11-22T04:21:58Z","IsDir":false}"#,
            r#"{"Path":"c","Name":"c","Size":1,"ModTime":"","IsDir":false}"#,
        ] {
            add_item(
                serde_json::from_str(line).unwrap(),
                &mut listing,
                &mut known,
            );
        }
        assert_eq!(listing.files.len(), 1);
        let f = &listing.files[0];
        assert_eq!((f.path.as_str(), f.size), ("a.txt", 11));
        assert_eq!(f.mtime.to_string(), "2026-11-22T03:21:58.123456789Z");
        assert_eq!(known["a.txt"].hashes["md5"], "5eb6");
        let refused: Vec<_> = listing.refused.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(refused, ["doc", "a/../b", "c"]);
    }
}
