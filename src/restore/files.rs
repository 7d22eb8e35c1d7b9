//! `tgferry restore`: the files a catalog records, written back under a folder.
//!
//! Each file goes to a temp file in its target folder (`.tgferry-restore-…`), part after
//! part, is fsynced, gets its recorded modification time, and only then is renamed to its
//! name; on any error the temp file is removed and the name is never created or
//! clobbered. A failing file is reported with the part that failed, and the others go on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::parts::{self, Issue, PartRead, PumpError};
use super::paths::{self, Existing, Selection};
use super::{RestoreError, check_jobs, for_each_concurrent, short_id};
use crate::state::{Completed, Encryption, Object, State, StoredPart};
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

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            SkipReason::AlreadyRestored => write!(f, "{}: already restored", self.path),
            SkipReason::NoSuchVersion { wanted, stored: 0 } => write!(
                f,
                "{}: has no version {wanted} (no earlier version is stored)",
                self.path
            ),
            SkipReason::NoSuchVersion { wanted, stored } => write!(
                f,
                "{}: has no version {wanted} (only {stored} earlier version{} stored)",
                self.path,
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

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
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
    /// Patterns that matched no stored file.
    pub unmatched: Vec<String>,
}

impl RestoreReport {
    /// Nothing failed and every pattern matched.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.unmatched.is_empty()
    }
}

/// One file to restore: the version chosen and where its bytes are.
struct Job<'a> {
    path: &'a str,
    size: u64,
    mtime: Timestamp,
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
    /// Folders that got a new name, fsynced once at the end.
    dirs: Mutex<BTreeSet<PathBuf>>,
}

impl<S> Ctx<'_, S> {
    fn emit(&self, e: Event<'_>) {
        if let Some(sink) = &self.opts.events {
            sink(e);
        }
    }
}

/// How one file ended.
enum Outcome {
    Restored,
    Skipped(SkipReason),
    Failed(String),
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
            Err(Outcome::Restored) => unreachable!("pick never restores"),
        }
    }
    report.unmatched = opts
        .patterns
        .iter()
        .zip(&hits)
        .filter(|(_, hit)| !**hit)
        .map(|(p, _)| p.clone())
        .collect();
    let ctx = Ctx {
        store,
        master,
        opts,
        dirs: Mutex::new(BTreeSet::new()),
    };
    for s in &report.skipped {
        ctx.emit(Event::Skipped(s));
    }
    for f in &report.failed {
        ctx.emit(Event::Failed(f));
    }
    ctx.emit(Event::Planned {
        files: jobs.len(),
        bytes: jobs.iter().map(|j| j.size).sum(),
    });
    if !jobs.is_empty() {
        std::fs::create_dir_all(&opts.to).map_err(|source| RestoreError::Target {
            path: opts.to.clone(),
            source,
        })?;
    }
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
        }
    }
    // The renames survive a power cut once their folders are synced.
    let dirs = std::mem::take(&mut *ctx.dirs.lock().unwrap());
    let synced = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .filter_map(|d| crate::state::sync_dir(d).err().map(|e| (d.clone(), e)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (dir, e) in synced {
        tracing::warn!("could not fsync the folder {}: {e}", dir.display());
    }
    report.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    report.failed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
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
        content: Content::Vault { id, object },
    })
}

/// Restores one file; never panics on bad data, never leaves a temp file.
async fn restore_one<S: Store>(ctx: &Ctx<'_, S>, job: &Job<'_>) -> Outcome {
    let outcome = match restore_inner(ctx, job).await {
        Ok(o) => o,
        Err(message) => Outcome::Failed(message),
    };
    match &outcome {
        Outcome::Restored => {
            tracing::info!("restored {}", job.path);
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
    }
    outcome
}

/// A temp file that is removed unless it was renamed into place.
struct TempFile {
    path: Option<PathBuf>,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Where a file is being written.
struct Target {
    dest: PathBuf,
    temp: TempFile,
    file: std::fs::File,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The prefix of restore temp files.
pub(crate) const TEMP_PREFIX: &str = ".tgferry-restore-";

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
        let (root, rel, size, mtime, overwrite) = (
            ctx.opts.to.clone(),
            path.to_owned(),
            job.size,
            job.mtime,
            ctx.opts.overwrite,
        );
        blocking(move || prepare(&root, &rel, size, mtime, overwrite)).await?
    };
    let Some(target) = target else {
        return Ok(Outcome::Skipped(SkipReason::AlreadyRestored));
    };
    let Target {
        dest,
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
        let done = parts::pump(ctx.store, p, read, &on_bytes)
            .await
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
    let (root, rel, mtime, overwrite) = (
        ctx.opts.to.clone(),
        path.to_owned(),
        job.mtime,
        ctx.opts.overwrite,
    );
    let dir = blocking(move || finish(&root, &rel, file, temp, &dest, mtime, overwrite)).await?;
    ctx.dirs.lock().unwrap().insert(dir);
    Ok(Outcome::Restored)
}

fn write_error(path: &str, temp: &TempFile, e: std::io::Error) -> String {
    let at = temp.path.as_deref().unwrap_or(Path::new("?"));
    format!("{path}: cannot write {}: {e}", at.display())
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

/// Checks the target, creates its folders and a temp file beside it; `None` when the
/// file is there already.
fn prepare(
    root: &Path,
    rel: &str,
    size: u64,
    mtime: Timestamp,
    overwrite: bool,
) -> Result<Option<Target>, String> {
    // First without creating anything: a file that cannot be restored leaves no folders.
    let dest = paths::target(root, rel, false).map_err(|e| format!("{rel}: {e}"))?;
    match paths::existing(&dest, size, mtime).map_err(|e| format!("{rel}: {e}"))? {
        Existing::Same => return Ok(None),
        Existing::Other(what) if !overwrite => {
            return Err(format!(
                "{rel}: {what} is in the way at {}; left untouched (pass --overwrite to \
                 replace it)",
                dest.display()
            ));
        }
        _ => {}
    }
    let dest = paths::target(root, rel, true).map_err(|e| format!("{rel}: {e}"))?;
    let dir = dest
        .parent()
        .expect("a target is inside the root")
        .to_owned();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => {
                return Ok(Some(Target {
                    dest,
                    temp: TempFile { path: Some(temp) },
                    file,
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "{rel}: cannot create a temp file in {}: {e}",
                    dir.display()
                ));
            }
        }
    }
}

/// Sets the modification time, fsyncs, checks the target once more and renames the temp
/// file into place; returns the folder to fsync.
fn finish(
    root: &Path,
    rel: &str,
    file: std::fs::File,
    mut temp: TempFile,
    dest: &Path,
    mtime: Timestamp,
    overwrite: bool,
) -> Result<PathBuf, String> {
    let io = |e: std::io::Error, temp: &TempFile| write_error(rel, temp, e);
    file.set_modified(std::time::SystemTime::from(mtime))
        .map_err(|e| io(e, &temp))?;
    file.sync_all().map_err(|e| io(e, &temp))?;
    drop(file);
    // The folders may have changed while the parts were read.
    let again = paths::target(root, rel, false).map_err(|e| format!("{rel}: {e}"))?;
    debug_assert_eq!(again, dest);
    if !overwrite && std::fs::symlink_metadata(dest).is_ok() {
        return Err(format!(
            "{rel}: something appeared at {} during the restore; left untouched (pass \
             --overwrite to replace it)",
            dest.display()
        ));
    }
    let from = temp.path.take().expect("temp file present");
    if let Err(e) = std::fs::rename(&from, dest) {
        temp.path = Some(from);
        return Err(format!("{rel}: cannot rename into place: {e}"));
    }
    Ok(dest.parent().expect("inside the root").to_owned())
}
