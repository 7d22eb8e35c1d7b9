//! `tgferry restore`: the files a catalog records, written back under a folder.
//!
//! Each file goes to a temp file in its target folder (`.tgferry-restore-…`), part after
//! part, is fsynced, gets its recorded modification time, and only then is renamed to its
//! name; on any error, and on cancellation, the temp file is removed and the name is never
//! created or clobbered. Everything goes through the handle of the file's folder, opened
//! beneath the restore folder without following links ([`paths::target`]), so a folder
//! swapped for a link mid-way redirects nothing. Temp files that a killed restore left in a
//! folder are removed by the next restore that writes there. A failing file is reported
//! with the part that failed, and the others go on.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::parts::{self, Issue, PartRead, PumpError};
use super::paths::{self, Existing, Place, Selection};
use super::{RestoreError, check_jobs, for_each_concurrent, short_id};
use crate::beneath::{self, Dir};
use crate::report::shown;
use crate::state::{Completed, Encryption, FolderMeta, Object, State, StoredPart};
use crate::store::Store;
use crate::time::Timestamp;
use crate::vault::{MasterKey, ObjectParams, PartDecryptor};

/// What to restore, where, and how.
#[derive(Clone)]
pub struct RestoreOptions {
    /// The folder files are restored into (created if missing).
    pub to: PathBuf,
    /// Globs over relative paths ([`Selection`]); none restores everything.
    pub patterns: Vec<String>,
    /// Which version: 0 is the current content, 1 the one before, ... (vault only).
    pub version: usize,
    /// Replace existing files that differ from the restored one.
    pub overwrite: bool,
    /// Files restored at once.
    pub jobs: usize,
    /// Told about progress as it happens.
    pub events: Option<EventSink>,
    /// Cancelled (on a signal): files in flight stop, their temp files are removed, no
    /// new file starts, and the report says [`RestoreReport::interrupted`].
    pub cancel: Option<CancellationToken>,
}

impl RestoreOptions {
    /// Everything, current versions, into `to`, no overwriting, 4 files at once.
    pub fn new(to: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            to: to.into(),
            patterns: Vec::new(),
            version: 0,
            overwrite: false,
            jobs: 4,
            events: None,
            cancel: None,
        }
    }

    /// Only paths matching these globs.
    pub fn patterns<P: Into<String>>(mut self, patterns: impl IntoIterator<Item = P>) -> Self {
        self.patterns = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// `n` versions back.
    pub fn version(mut self, n: usize) -> Self {
        self.version = n;
        self
    }

    /// Replace differing existing files.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("to", &self.to)
            .field("patterns", &self.patterns)
            .field("version", &self.version)
            .field("overwrite", &self.overwrite)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// Progress of a restore, as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// What is about to be restored (files skipped or refused up front not counted).
    Planned {
        /// Files.
        files: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// Plaintext bytes written.
    Bytes(u64),
    /// A file is in place.
    Restored {
        /// Its path.
        path: &'a str,
        /// Its size.
        size: u64,
    },
    /// A file was left alone.
    Skipped(&'a Skipped),
    /// A file failed.
    Failed(&'a Failure),
}

/// Receives [`Event`]s (from several tasks: keep it quick).
pub type EventSink = Arc<dyn Fn(Event<'_>) + Send + Sync>;

/// A file left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its path.
    pub path: String,
    /// Why.
    pub reason: SkipReason,
}

/// Why a file was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A file of the same size and modification time is there already.
    AlreadyRestored,
    /// The file has fewer versions than asked for.
    NoSuchVersion {
        /// The version asked for.
        wanted: usize,
        /// Earlier versions stored.
        stored: usize,
    },
}

/// Shown with the path made safe to print ([`shown`]).
impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = shown(&self.path);
        match &self.reason {
            SkipReason::AlreadyRestored => write!(f, "{path}: already restored"),
            SkipReason::NoSuchVersion { wanted, stored: 0 } => write!(
                f,
                "{path}: has no version {wanted} (no earlier version is stored)"
            ),
            SkipReason::NoSuchVersion { wanted, stored } => write!(
                f,
                "{path}: has no version {wanted} (only {stored} earlier version{} stored)",
                if *stored == 1 { " is" } else { "s are" }
            ),
        }
    }
}

/// A file that could not be restored (or a pattern that matched nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The path (for an unmatched pattern, the pattern).
    pub path: String,
    /// What went wrong, naming the file and, for a bad part, the part.
    pub message: String,
}

/// The message, made safe to print ([`shown`]).
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&shown(&self.message))
    }
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Paths restored, sorted.
    pub restored: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// Files left alone.
    pub skipped: Vec<Skipped>,
    /// Files that failed (nothing was left under their names).
    pub failed: Vec<Failure>,
    /// Patterns that matched no stored file (nor folder).
    pub unmatched: Vec<String>,
    /// Folders created or given their recorded permissions and modification time.
    pub folders: usize,
    /// The restore was cancelled ([`RestoreOptions::cancel`]): files not listed above were
    /// not restored, and no temp file of this restore is left.
    pub interrupted: bool,
    /// Temp files (`folder/.tgferry-restore-…`) that an earlier restore, killed before it
    /// could remove them, left in a folder this one wrote into; they were removed.
    pub stale_temps: Vec<String>,
}

impl RestoreReport {
    /// Nothing failed, every pattern matched and the restore was not interrupted.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.unmatched.is_empty() && !self.interrupted
    }

    fn sort(&mut self) {
        self.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        self.failed.sort_by(|a, b| a.path.cmp(&b.path));
    }
}

/// One file to restore: the version chosen and where its bytes are.
struct Job<'a> {
    path: &'a str,
    size: u64,
    mtime: Timestamp,
    /// Permission bits to give it, when the state recorded them.
    mode: Option<u32>,
    content: Content<'a>,
}

enum Content<'a> {
    Plain(&'a [StoredPart]),
    Vault { id: &'a str, object: &'a Object },
}

/// Shared by every file of one restore.
struct Ctx<'a, S> {
    store: &'a S,
    master: Option<&'a MasterKey>,
    opts: &'a RestoreOptions,
    /// The restore folder's handle; every target is opened beneath it.
    root: Arc<Dir>,
    /// Folders that got a new name (by key), fsynced once at the end.
    dirs: Mutex<BTreeMap<String, Arc<Dir>>>,
    /// Folders already searched for temp files of killed restores, and what was found.
    swept: Arc<Mutex<Sweep>>,
}

impl<S> Ctx<'_, S> {
    fn emit(&self, e: Event<'_>) {
        if let Some(sink) = &self.opts.events {
            sink(e);
        }
    }

    fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().is_some_and(|t| t.is_cancelled())
    }
}

/// How one file ended.
enum Outcome {
    Restored,
    Skipped(SkipReason),
    Failed(String),
    /// Cancelled before it was in place; nothing of it is left.
    Interrupted,
}

/// Restores the files of `state` selected by `opts` from `store` into `opts.to`.
///
/// `master` is needed for a vault catalog ([`RestoreError::NeedsKey`] otherwise). Files
/// that fail are reported in [`RestoreReport::failed`] and the rest goes on; nothing is
/// ever written outside `opts.to`, and no file name is created for a file that failed.
pub async fn restore<S: Store>(
    store: &S,
    state: &State,
    master: Option<&MasterKey>,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    check_jobs(opts.jobs)?;
    let vault = state.job.encryption == Encryption::Vault;
    if vault && master.is_none() {
        return Err(RestoreError::NeedsKey);
    }
    let selection = Selection::new(&opts.patterns)?;
    let mut hits = vec![false; opts.patterns.len()];
    let mut report = RestoreReport::default();
    let mut jobs = Vec::new();
    for (path, c) in &state.completed {
        if !selection.matches(path, &mut hits) {
            continue;
        }
        match pick(state, path, c, opts.version) {
            Ok(job) => jobs.push(job),
            Err(Outcome::Skipped(reason)) => report.skipped.push(Skipped {
                path: path.clone(),
                reason,
            }),
            Err(Outcome::Failed(message)) => report.failed.push(Failure {
                path: path.clone(),
                message,
            }),
            Err(Outcome::Restored | Outcome::Interrupted) => unreachable!("pick only chooses"),
        }
    }
    // Folders: those holding a selected file, and those a pattern selects (empty ones
    // included); children come before their parents, whose times are set last.
    let mut folders: Vec<(&str, &FolderMeta)> = state
        .meta
        .folders
        .iter()
        .filter(|(path, _)| {
            let prefix = format!("{path}/");
            selection.matches(path, &mut hits)
                || jobs.iter().any(|j: &Job<'_>| j.path.starts_with(&prefix))
        })
        .map(|(p, f)| (p.as_str(), f))
        .collect();
    folders.reverse();
    report.unmatched = opts
        .patterns
        .iter()
        .zip(&hits)
        .filter(|(_, hit)| !**hit)
        .map(|(p, _)| p.clone())
        .collect();
    let emit = |e: Event<'_>| {
        if let Some(sink) = &opts.events {
            sink(e);
        }
    };
    for s in &report.skipped {
        emit(Event::Skipped(s));
    }
    for f in &report.failed {
        emit(Event::Failed(f));
    }
    emit(Event::Planned {
        files: jobs.len(),
        bytes: jobs.iter().map(|j| j.size).sum(),
    });
    if jobs.is_empty() && folders.is_empty() {
        report.sort();
        return Ok(report);
    }
    let target_error = |source| RestoreError::Target {
        path: opts.to.clone(),
        source,
    };
    std::fs::create_dir_all(&opts.to).map_err(target_error)?;
    // The folder as named (a link there is the user's choice); nothing below it is
    // reached through a link.
    let root = Arc::new(beneath::open_root(&opts.to).map_err(target_error)?);
    let ctx = Ctx {
        store,
        master,
        opts,
        root,
        dirs: Mutex::new(BTreeMap::new()),
        swept: Arc::default(),
    };
    let outcomes = for_each_concurrent(&jobs, opts.jobs, |job| restore_one(&ctx, job)).await;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        match outcome {
            Outcome::Restored => {
                report.restored.push(job.path.to_owned());
                report.bytes += job.size;
            }
            Outcome::Skipped(reason) => report.skipped.push(Skipped {
                path: job.path.to_owned(),
                reason,
            }),
            Outcome::Failed(message) => report.failed.push(Failure {
                path: job.path.to_owned(),
                message,
            }),
            Outcome::Interrupted => report.interrupted = true,
        }
    }
    report.interrupted |= ctx.cancelled();
    if !report.interrupted {
        let root = ctx.root.clone();
        let owned: Vec<(String, FolderMeta)> = folders
            .iter()
            .map(|(p, f)| ((*p).to_owned(), (*f).clone()))
            .collect();
        let results = tokio::task::spawn_blocking(move || {
            owned
                .into_iter()
                .map(|(path, f)| {
                    let done = restore_folder(&root, &path, &f);
                    (path, done)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (path, done) in results {
            match done {
                Ok(()) => report.folders += 1,
                Err(message) => report.failed.push(Failure { path, message }),
            }
        }
    }
    // The renames survive a power cut once their folders are synced.
    let dirs = std::mem::take(&mut *ctx.dirs.lock().unwrap());
    let synced = tokio::task::spawn_blocking(move || {
        dirs.into_iter()
            .filter_map(|(key, d)| beneath::sync(&d).err().map(|e| (key, e)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (key, e) in synced {
        let key = if key.is_empty() { "." } else { key.as_str() };
        tracing::warn!("could not fsync the folder {}: {e}", shown(key));
    }
    let sweep = std::mem::take(&mut *ctx.swept.lock().unwrap());
    if !sweep.removed.is_empty() {
        tracing::warn!(
            "removed {} temp file(s) that a restore killed earlier left behind: {}",
            sweep.removed.len(),
            shown(&sweep.removed.join(", "))
        );
    }
    report.stale_temps = sweep.removed;
    report.sort();
    Ok(report)
}

/// Creates the folder `rel` beneath `root` if missing (never through a link) and gives it
/// its recorded permission bits and modification time.
fn restore_folder(root: &Dir, rel: &str, f: &FolderMeta) -> Result<(), String> {
    let place = paths::target(root, rel, true)
        .map_err(|e| format!("{rel}: {e}"))?
        .expect("created");
    let name = place.name.clone();
    let kind = place.dir.symlink_metadata(&name);
    match kind {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "{rel}: something other than a folder is in its place; left untouched"
            ));
        }
        Err(_) => place
            .dir
            .create_dir(&name)
            .map_err(|e| format!("{rel}: cannot create the folder: {e}"))?,
    }
    // Through the folder's parent handle: cap-std keeps every step beneath the restore
    // folder, and the entry was just seen to be a folder.
    #[cfg(unix)]
    if let Some(mode) = f.mode {
        use cap_std::fs::PermissionsExt;
        place
            .dir
            .set_permissions(
                &name,
                cap_std::fs::Permissions::from_mode(mode & KEPT_MODE_BITS),
            )
            .map_err(|e| format!("{rel}: cannot set its permissions: {e}"))?;
    }
    use cap_fs_ext::DirExt;
    let mtime = cap_fs_ext::SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(
        std::time::SystemTime::from(f.mtime),
    ));
    place
        .dir
        .set_times(&name, None, Some(mtime))
        .map_err(|e| format!("{rel}: cannot set its modification time: {e}"))?;
    Ok(())
}

/// Chooses the version of a file to restore.
fn pick<'a>(
    state: &'a State,
    path: &'a str,
    c: &'a Completed,
    version: usize,
) -> Result<Job<'a>, Outcome> {
    if let Err(message) = paths::check_relative(path) {
        return Err(Outcome::Failed(message));
    }
    if state.job.encryption == Encryption::None {
        if version > 0 {
            return Err(Outcome::Skipped(SkipReason::NoSuchVersion {
                wanted: version,
                stored: 0,
            }));
        }
        let total: u64 = c.parts.iter().map(|p| p.len).sum();
        if total != c.size || c.parts.is_empty() {
            return Err(Outcome::Failed(format!(
                "{path}: {}",
                Issue::Catalog(format!(
                    "{} parts of {total} bytes recorded for a file of {} bytes",
                    c.parts.len(),
                    c.size
                ))
            )));
        }
        return Ok(Job {
            path,
            size: c.size,
            mtime: c.mtime,
            mode: state.meta.modes.get(path).copied(),
            content: Content::Plain(&c.parts),
        });
    }
    let (size, mtime, id) = match version {
        0 => (c.size, c.mtime, c.object.as_deref()),
        n => match c.versions.get(n - 1) {
            Some(v) => (v.size, v.mtime, Some(v.object.as_str())),
            None => {
                return Err(Outcome::Skipped(SkipReason::NoSuchVersion {
                    wanted: n,
                    stored: c.versions.len(),
                }));
            }
        },
    };
    let catalog = |why: String| Outcome::Failed(format!("{path}: {}", Issue::Catalog(why)));
    let Some(id) = id else {
        return Err(catalog("the file has no object recorded".into()));
    };
    let Some(object) = state.objects.get(id) else {
        return Err(catalog(format!(
            "it names object {} which the catalog does not hold",
            short_id(id)
        )));
    };
    if object.size != size {
        return Err(catalog(format!(
            "the file is {size} bytes, its object {} holds {}",
            short_id(id),
            object.size
        )));
    }
    Ok(Job {
        path,
        size,
        mtime,
        mode: state.meta.modes.get(path).copied(),
        content: Content::Vault { id, object },
    })
}

/// Restores one file; never panics on bad data, never leaves a temp file.
async fn restore_one<S: Store>(ctx: &Ctx<'_, S>, job: &Job<'_>) -> Outcome {
    if ctx.cancelled() {
        return Outcome::Interrupted;
    }
    let outcome = match restore_inner(ctx, job).await {
        Ok(o) => o,
        Err(message) => Outcome::Failed(message),
    };
    match &outcome {
        Outcome::Restored => {
            tracing::info!("restored {}", shown(job.path));
            ctx.emit(Event::Restored {
                path: job.path,
                size: job.size,
            });
        }
        Outcome::Skipped(reason) => ctx.emit(Event::Skipped(&Skipped {
            path: job.path.to_owned(),
            reason: reason.clone(),
        })),
        Outcome::Failed(message) => ctx.emit(Event::Failed(&Failure {
            path: job.path.to_owned(),
            message: message.clone(),
        })),
        Outcome::Interrupted => {}
    }
    outcome
}

/// A temp file in a folder (by handle), removed unless it was renamed into place.
struct TempFile {
    dir: Arc<Dir>,
    name: Option<OsString>,
    /// `folder/name`, for messages.
    shown: String,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = self.dir.remove_file(name);
        }
    }
}

/// Where a file is being written.
struct Target {
    place: Place,
    temp: TempFile,
    file: std::fs::File,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The prefix of restore temp files: `.tgferry-restore-<pid>-<tag>-<n>`, where `<tag>` is
/// drawn at random once per process, so a process can tell its own temp files from those
/// of a dead one that had the same pid.
pub(crate) const TEMP_PREFIX: &str = ".tgferry-restore-";

/// This process's temp file names start with this.
fn own_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut tag = [0u8; 4];
        let _ = getrandom::fill(&mut tag);
        format!("{TEMP_PREFIX}{}-{}-", std::process::id(), hex::encode(tag))
    })
}

async fn restore_inner<S: Store>(ctx: &Ctx<'_, S>, job: &Job<'_>) -> Result<Outcome, String> {
    let path = job.path;
    // What to read, checked before anything is created.
    let (parts, params): (&[StoredPart], Option<ObjectParams>) = match &job.content {
        Content::Plain(parts) => (parts, None),
        Content::Vault { id, object } => {
            let params = parts::object_params(object)
                .map_err(|i| format!("{path}: object {}: {i}", short_id(id)))?;
            (&object.parts, Some(params))
        }
    };
    let n = parts.len();
    let part_context =
        |k: usize, p: &StoredPart| format!("{path}: part {} of {n} ({})", k + 1, p.loc);
    if let Some(params) = &params {
        for (k, p) in parts.iter().enumerate() {
            parts::check_stored_len(params, k as u32, p)
                .map_err(|i| format!("{}: {i}", part_context(k, p)))?;
        }
    }
    let target = {
        let (root, rel, size, mtime, overwrite, swept) = (
            ctx.root.clone(),
            path.to_owned(),
            job.size,
            job.mtime,
            ctx.opts.overwrite,
            ctx.swept.clone(),
        );
        blocking(move || prepare(&root, &rel, size, mtime, overwrite, &swept)).await?
    };
    let Some(target) = target else {
        return Ok(Outcome::Skipped(SkipReason::AlreadyRestored));
    };
    let Target {
        place,
        temp,
        mut file,
    } = target;
    let on_bytes = |n: u64| ctx.emit(Event::Bytes(n));
    let mut written = 0u64;
    for (k, p) in parts.iter().enumerate() {
        let dec = match (&params, ctx.master) {
            (Some(params), Some(master)) => {
                let params = parts::part_params(params, p)
                    .map_err(|i| format!("{}: {i}", part_context(k, p)))?;
                Some(
                    PartDecryptor::new(master, &params, k as u32)
                        .map_err(|e| format!("{}: {e}", part_context(k, p)))?,
                )
            }
            _ => None,
        };
        let read = PartRead {
            dec,
            mac: None,
            out: Some(file),
        };
        let pump = parts::pump(ctx.store, p, read, &on_bytes);
        // Cancelled: the part in flight is dropped and so is the temp file (`temp`).
        let done = match &ctx.opts.cancel {
            Some(token) => tokio::select! {
                biased;
                _ = token.cancelled() => return Ok(Outcome::Interrupted),
                done = pump => done,
            },
            None => pump.await,
        }
        .map_err(|e| match e {
            PumpError::Part(issue) => format!("{}: {issue}", part_context(k, p)),
            PumpError::Write(e) => write_error(path, &temp, e),
        })?;
        written += done.plaintext;
        file = done.out.expect("the file comes back");
    }
    if written != job.size {
        return Err(format!(
            "{path}: {}",
            Issue::Catalog(format!(
                "the parts hold {written} bytes, the file is {} bytes",
                job.size
            ))
        ));
    }
    if ctx.cancelled() {
        return Ok(Outcome::Interrupted);
    }
    let (root, rel, mtime, mode, overwrite) = (
        ctx.root.clone(),
        path.to_owned(),
        job.mtime,
        job.mode,
        ctx.opts.overwrite,
    );
    let (folder, dir) =
        blocking(move || finish(&root, &rel, file, temp, place, (mtime, mode), overwrite)).await?;
    ctx.dirs.lock().unwrap().insert(folder, dir);
    Ok(Outcome::Restored)
}

fn write_error(path: &str, temp: &TempFile, e: std::io::Error) -> String {
    format!("{path}: cannot write {}: {e}", temp.shown)
}

/// Runs a blocking file-system step off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(e.to_string()),
    }
}

/// `folder/name` for messages (`name` alone in the restore folder itself).
fn in_folder(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

/// Checks the target, creates its folders and a temp file beside it; `None` when the
/// file is there already.
fn prepare(
    root: &Dir,
    rel: &str,
    size: u64,
    mtime: Timestamp,
    overwrite: bool,
    swept: &Mutex<Sweep>,
) -> Result<Option<Target>, String> {
    // First without creating anything: a file that cannot be restored leaves no folders.
    if let Some(place) = paths::target(root, rel, false).map_err(|e| format!("{rel}: {e}"))? {
        match paths::existing(&place.dir, &place.name, rel, size, mtime)
            .map_err(|e| format!("{rel}: {e}"))?
        {
            Existing::Same => return Ok(None),
            Existing::Other(what) if !overwrite => {
                return Err(format!(
                    "{rel}: {what} is in the way; left untouched (pass --overwrite to \
                     replace it)"
                ));
            }
            _ => {}
        }
    }
    let place = paths::target(root, rel, true)
        .map_err(|e| format!("{rel}: {e}"))?
        .expect("made when creating");
    sweep(&place, swept);
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{n}", own_prefix());
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        match place.dir.open_with(&name, &options) {
            Ok(file) => {
                let temp = TempFile {
                    dir: place.dir.clone(),
                    shown: in_folder(&place.folder, &name),
                    name: Some(name.into()),
                };
                return Ok(Some(Target {
                    place,
                    temp,
                    file: file.into_std(),
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let folder = if place.folder.is_empty() {
                    "the restore folder".to_owned()
                } else {
                    place.folder.clone()
                };
                return Err(format!("{rel}: cannot create a temp file in {folder}: {e}"));
            }
        }
    }
}

/// The permission bits a restore gives back: read, write and execute for owner, group and
/// others. Set-user-id, set-group-id and sticky bits are never set from a catalog (which
/// is untrusted input).
const KEPT_MODE_BITS: u32 = 0o777;

/// Sets the modification time (and the permission bits), fsyncs, checks the target once more and renames the temp
/// file into place (in the folder's handle, so never through a link); returns the folder
/// to fsync.
fn finish(
    root: &Dir,
    rel: &str,
    file: std::fs::File,
    mut temp: TempFile,
    place: Place,
    (mtime, mode): (Timestamp, Option<u32>),
    overwrite: bool,
) -> Result<(String, Arc<Dir>), String> {
    let io = |e: std::io::Error, temp: &TempFile| write_error(rel, temp, e);
    file.set_modified(std::time::SystemTime::from(mtime))
        .map_err(|e| io(e, &temp))?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode & KEPT_MODE_BITS))
            .map_err(|e| io(e, &temp))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.sync_all().map_err(|e| io(e, &temp))?;
    drop(file);
    // The folders may have been moved or replaced while the parts were read: the file goes
    // in only if its folder is still the one at its place under the restore folder.
    let again = paths::target(root, rel, false).map_err(|e| format!("{rel}: {e}"))?;
    if !again.is_some_and(|a| same_folder(&a.dir, &place.dir)) {
        return Err(format!(
            "{rel}: its folder was moved or replaced during the restore; nothing was put \
             in place (restore it again)"
        ));
    }
    if !overwrite && place.dir.symlink_metadata(&place.name).is_ok() {
        return Err(format!(
            "{rel}: something appeared in its place during the restore; left untouched \
             (pass --overwrite to replace it)"
        ));
    }
    let from = temp.name.take().expect("temp file present");
    if let Err(e) = place.dir.rename(&from, &place.dir, &place.name) {
        temp.name = Some(from);
        return Err(format!("{rel}: cannot rename into place: {e}"));
    }
    Ok((place.folder, place.dir))
}

/// Whether two handles name the same folder.
fn same_folder(a: &Dir, b: &Dir) -> bool {
    #[cfg(unix)]
    {
        use cap_std::fs::MetadataExt;
        match (a.dir_metadata(), b.dir_metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}

/// Temp files of killed restores: which folders were searched, what was removed.
#[derive(Debug, Default)]
struct Sweep {
    folders: HashSet<String>,
    removed: Vec<String>,
}

/// The first time a restore writes into a folder, removes the temp files that a restore
/// killed earlier (SIGKILL, a power cut) left there: those of a process that no longer
/// runs, or of this pid from before (another random tag). Others are a restore running
/// now, and are left alone (and named in a warning).
fn sweep(place: &Place, swept: &Mutex<Sweep>) {
    if !swept.lock().unwrap().folders.insert(place.folder.clone()) {
        return;
    }
    let Ok(entries) = place.dir.entries() else {
        return;
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        if name.starts_with(own_prefix()) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let dead = match pid {
            Some(pid) if pid == std::process::id() => true,
            Some(pid) => !alive(pid),
            None => false,
        };
        let shown_name = in_folder(&place.folder, name);
        if !dead {
            tracing::warn!(
                "{} looks like the temp file of a restore still running (pid {}); left alone",
                shown(&shown_name),
                pid.map_or("?".into(), |p| p.to_string())
            );
        } else if place.dir.remove_file(name).is_ok() {
            removed.push(shown_name);
        }
    }
    swept.lock().unwrap().removed.extend(removed);
}

/// Whether a process with this id runs (on doubt, yes).
#[cfg(unix)]
fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Whether a process with this id runs: not known here, so yes (its temp files are
/// reported, not removed).
#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    true
}
