//! The state file: loading (with version and ownership checks), journaling, atomic saves
//! and the lock that keeps two processes off one state.
//!
//! Write ordering, which is what makes a kill at any instant safe:
//! 1. a part is stored completely in the store (the store's own temp-and-rename),
//! 2. then a journal line records it (one `write`, no rewrite of the state),
//! 3. then, at the end of a run (or when the journal grows as large as the state), the state
//!    is saved whole with a new generation (temp file, fsync, rename, fsync directory) and a
//!    new journal for that generation replaces the old one.
//!
//! A journal for an older generation is ignored, so a kill between 3's rename and the new
//! journal never applies a record twice.
//!
//! What identifies stored bytes is covered by integrity tags ([`integrity`]): a state is
//! checked before a run or an edit builds on it ([`StateFile::integrity_suspects`],
//! [`StateFile::settle_integrity`]; in the vault through `keyring::check_state`, which
//! has the key), and only a checked state gets fresh tags when it is saved.

pub mod integrity;
pub mod journal;
pub mod model;

use crate::job::identity::same_place;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use integrity::{Map, Problem, Suspect, Tagger};
pub use journal::{Record, Replay};
pub use model::*;

/// Errors from reading or writing a state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid state (bad JSON or missing fields).
    #[error(
        "state file {path} is not a valid tgferry state (line {line}, column {column}: {message}); \
         it was left untouched. Restore it from a backup or an earlier CI artifact, or rerun with \
         --on-corrupt-state fresh to move it aside and start over"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json said.
        message: String,
    },
    /// The journal beside the state is damaged in a way a kill cannot explain.
    #[error(
        "journal {path} is damaged at line {line} ({message}); the state and the journal were \
         left untouched. Move the journal aside to continue from the last full save (the \
         progress it recorded will be redone)"
    )]
    JournalCorrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// The file was written by a newer tgferry.
    #[error(
        "state file {path} has format version {found}, but this tgferry ({tool}) reads versions up \
         to {supported}; upgrade tgferry. The file was left untouched"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
        /// This build's version.
        tool: &'static str,
    },
    /// The state belongs to another source, store or encryption mode.
    #[error(
        "state file {path} belongs to another job ({found}), not to this one ({wanted}); use \
         another --state file, or --force if the source or store really moved (--force never \
         changes the encryption or the vault)"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// The job recorded in the file.
        found: Box<Job>,
        /// The job asked for.
        wanted: Box<Job>,
    },
    /// Entries that identify stored bytes do not match their integrity tags.
    #[error("{message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The entries that failed, sorted.
        damaged: Vec<Suspect>,
        /// The whole message: the files, what was left alone, and the way out.
        message: String,
    },
    /// Another process holds the state's lock.
    #[error(
        "state file {path} is in use by another tgferry process (lock {lock}); wait for it to \
         finish. In GitHub Actions, give the workflow a `concurrency` group"
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
}

/// What to do with a state file that cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorrupt {
    /// Stop with an error and leave the file alone.
    #[default]
    Fail,
    /// Move it aside to `<name>.corrupt.<timestamp>` and start fresh.
    Fresh,
}

/// How to open a state file for a run.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Accept a state that belongs to another job, adopting it for this one.
    pub force: bool,
    /// What to do with an unparsable file.
    pub on_corrupt: OnCorrupt,
}

/// What happened while opening a state.
#[derive(Debug, Default, Clone)]
pub struct Opened {
    /// No file existed: a fresh state was created.
    pub fresh: bool,
    /// A corrupt file was moved here (with `--on-corrupt-state fresh`).
    pub moved_aside: Option<PathBuf>,
    /// What the journal replay found.
    pub replay: Replay,
}

/// An open, locked state file with its journal: the only way a run changes state.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    _lock: File,
    state: State,
    run: Option<RunRecord>,
    journal: Option<journal::JournalWriter>,
    /// The state in memory differs from the file (fresh, replayed, adopted): the next run
    /// starts with a full save instead of only a new journal.
    dirty: bool,
    /// What tags this state's entries: a checksum in plain mode from the start; the vault's
    /// key once [`StateFile::settle_integrity`] was given it.
    tagger: Option<Tagger>,
    /// The entries passed (or were repaired by) the integrity check: what this process
    /// records and saves gets fresh tags. Until then, tags are kept as they were read.
    verified: bool,
    /// Some tags may not match their entries (edited through [`StateFile::state_mut`],
    /// confirmed or repaired by the check, or never tagged): the next save of a checked
    /// state rewrites them all. Otherwise [`StateFile::record`] keeps them up to date.
    stale_tags: bool,
    /// Plain mode: the entries that failed the check when the state was opened, until
    /// [`StateFile::settle_integrity`] judges them.
    pending: Vec<Suspect>,
    /// What to do with damage: the options the state was opened with.
    on_corrupt: OnCorrupt,
}

/// Reads and parses a state file without locking or replaying; `Ok(None)` if absent.
pub fn read_state(path: &Path) -> Result<Option<State>, StateError> {
    match read_bytes(path)? {
        Some(bytes) => parse_state(path, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Reads a state file's bytes (plain or sealed) without waiting on a FIFO or reading a
/// device, and at most [`crate::bounded::MAX_STATE_LEN`] of them; `Ok(None)` if absent.
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match crate::bounded::read_file(path, crate::bounded::MAX_STATE_LEN, true) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses state bytes, telling a too-new file from a corrupt one.
pub fn parse_state(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    #[derive(serde::Deserialize)]
    struct VersionProbe {
        version: u32,
    }
    let newer = |found: u32| StateError::Newer {
        path: path.to_owned(),
        found,
        supported: STATE_VERSION,
        tool: env!("CARGO_PKG_VERSION"),
    };
    match serde_json::from_slice::<State>(bytes) {
        Ok(state) if state.version > STATE_VERSION => Err(newer(state.version)),
        Ok(state) if state.version == 0 => Err(StateError::Corrupt {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: format!(
                "format version 0 does not exist (versions start at 1; this build writes \
                 {STATE_VERSION})"
            ),
        }),
        Ok(state) => Ok(state),
        Err(e) => {
            if let Ok(probe) = serde_json::from_slice::<VersionProbe>(bytes)
                && probe.version > STATE_VERSION
            {
                return Err(newer(probe.version));
            }
            Err(StateError::Corrupt {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })
        }
    }
}

/// Reads a state and replays its journal, for read-only views such as `tgferry status`.
pub fn read_with_journal(path: &Path) -> Result<Option<(State, Replay)>, StateError> {
    let Some(mut state) = read_state(path)? else {
        return Ok(None);
    };
    let replay = journal::replay(path, &mut state)?;
    // A run that journaled but did not finish was killed, unless it is still running
    // (its process holds the lock).
    let running = File::open(lock_path(path))
        .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)));
    if let Some(mut killed) = replay.interrupted_run.clone().filter(|_| !running) {
        killed.stop_reason = StopReason::Killed;
        state.push_run(killed);
    }
    Ok(Some((state, replay)))
}

/// Writes `state` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, state: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = parent_dir(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer_pretty(&mut w, state).map_err(std::io::Error::other)?;
        w.write_all(b"\n")?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs a directory so a rename in it survives a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Drop for StateFile {
    /// A run refused before its state was ever saved leaves no empty `<state>.lock`
    /// behind (removed while the lock is still held).
    fn drop(&mut self) {
        if !self.path.exists() {
            let _ = std::fs::remove_file(lock_path(&self.path));
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Tries an exclusive lock a few times over about 100 ms: a lock can be held for an
/// instant by a child process of the holder between fork and exec (descriptors are
/// close-on-exec), which must not look like a concurrent run. Returns `Ok(false)` if the
/// lock stays taken.
pub fn try_lock_briefly(file: &File) -> std::io::Result<bool> {
    for attempt in 0..5 {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if attempt < 4 => {
                // A blocking pause in synchronous set-up code, before any run starts.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(false)
}

/// Takes the exclusive lock beside a state file, failing at once if another process has it.
fn lock(path: &Path) -> Result<File, StateError> {
    let lock = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| StateError::Io {
            path: lock.clone(),
            source,
        })?;
    match try_lock_briefly(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(StateError::Locked {
            path: path.to_owned(),
            lock,
        }),
        Err(source) => Err(StateError::Io { path: lock, source }),
    }
}

impl StateFile {
    /// Locks and loads the state at `path` for `job`, replaying its journal; creates a fresh
    /// state if there is none. Nothing is written until [`StateFile::begin_run`].
    pub fn open(path: &Path, job: &Job, opts: &LoadOptions) -> Result<(Self, Opened), StateError> {
        Self::open_inner(path, Some(job), opts)
    }

    /// Locks and loads an existing state for editing (`tgferry retry`); `Ok(None)` if there
    /// is no file.
    pub fn open_existing(path: &Path) -> Result<Option<(Self, Opened)>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open_inner(path, None, &LoadOptions::default()).map(Some)
    }

    fn open_inner(
        path: &Path,
        job: Option<&Job>,
        opts: &LoadOptions,
    ) -> Result<(Self, Opened), StateError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let lock = lock(path)?;
        let mut opened = Opened::default();
        let loaded = match read_state(path) {
            Err(StateError::Corrupt { .. } | StateError::JournalCorrupt { .. })
                if opts.on_corrupt == OnCorrupt::Fresh =>
            {
                opened.moved_aside = Some(move_aside(path)?);
                None
            }
            other => other?,
        };
        let mut state = match loaded {
            Some(state) => state,
            None => {
                let Some(job) = job else {
                    return Err(StateError::Io {
                        path: path.to_owned(),
                        source: std::io::ErrorKind::NotFound.into(),
                    });
                };
                opened.fresh = opened.moved_aside.is_none();
                State::new(job.clone())
            }
        };
        let mut adopted = false;
        if let Some(job) = job {
            // A job without a vault id (not known before the store is opened) matches any;
            // `bind_vault` checks it later. The format of a state never changes, even with
            // --force: its stored data would not be readable the other way.
            let vault_ok = job.vault_id.is_none() || job.vault_id == state.job.vault_id;
            let format_ok = job.encryption == state.job.encryption && vault_ok;
            let place_ok = same_place(&state.job.source, &job.source)
                && same_place(&state.job.store, &job.store);
            if !format_ok || (!place_ok && !opts.force) {
                return Err(StateError::Foreign {
                    path: path.to_owned(),
                    found: Box::new(state.job.clone()),
                    wanted: Box::new(job.clone()),
                });
            }
            // Adopted with --force, or recorded as typed by an earlier tgferry (migrated to
            // the canonical form).
            if state.job.source != job.source || state.job.store != job.store {
                state.job.source = job.source.clone();
                state.job.store = job.store.clone();
                adopted = true;
            }
        }
        match journal::replay(path, &mut state) {
            Ok(replay) => opened.replay = replay,
            Err(e @ StateError::JournalCorrupt { .. }) if opts.on_corrupt == OnCorrupt::Fresh => {
                // Replay stopped at the damage; what came before it is kept in memory and
                // saved whole at the start of the run.
                tracing::warn!("{e}");
                opened.moved_aside = Some(move_aside(&journal::journal_path(path))?);
            }
            Err(e) => return Err(e),
        }
        if let Some(mut killed) = opened.replay.interrupted_run.clone() {
            killed.stop_reason = StopReason::Killed;
            state.push_run(killed);
        }
        let dirty = opened.fresh
            || opened.moved_aside.is_some()
            || opened.replay.applied > 0
            || opened.replay.interrupted_run.is_some()
            || adopted;
        // A plain state is checked now, before anything edits it (its checksums need no
        // key); what fails is settled by the first save. The vault waits for its key.
        let plain = state.job.encryption == Encryption::None;
        let stale_tags = state.integrity.scheme != integrity::SCHEME;
        let pending = if plain {
            integrity::triage(&Tagger::Checksum, &state)
        } else {
            Vec::new()
        };
        Ok((
            StateFile {
                path: path.to_owned(),
                _lock: lock,
                state,
                run: None,
                journal: None,
                dirty,
                tagger: plain.then_some(Tagger::Checksum),
                verified: plain && pending.is_empty(),
                stale_tags,
                pending,
                on_corrupt: opts.on_corrupt,
            },
            opened,
        ))
    }

    /// Ties the state to the store's vault: a state without a vault id takes `id`; a state
    /// of another vault is refused (its objects cannot be decrypted with this key).
    pub fn bind_vault(&mut self, id: &str) -> Result<(), StateError> {
        match &self.state.job.vault_id {
            Some(own) if own == id => Ok(()),
            Some(_) => {
                let mut wanted = self.state.job.clone();
                wanted.vault_id = Some(id.to_owned());
                Err(StateError::Foreign {
                    path: self.path.clone(),
                    found: Box::new(self.state.job.clone()),
                    wanted: Box::new(wanted),
                })
            }
            None => {
                self.state.job.vault_id = Some(id.to_owned());
                self.dirty = true;
                Ok(())
            }
        }
    }

    /// Replaces a state that had no file with the store's catalog (the state the store's
    /// last run sealed into it), checked against `job` like a state file: another format
    /// or vault is refused, another source or store only without `force`. The next
    /// [`StateFile::begin_run`] saves it whole.
    pub fn adopt_catalog(
        &mut self,
        mut catalog: State,
        job: &Job,
        force: bool,
    ) -> Result<(), StateError> {
        let found = &catalog.job;
        let format_ok = found.encryption == job.encryption
            && (job.vault_id.is_none() || job.vault_id == found.vault_id);
        let place_ok =
            same_place(&found.source, &job.source) && same_place(&found.store, &job.store);
        if !format_ok || (!place_ok && !force) {
            return Err(StateError::Foreign {
                path: self.path.clone(),
                found: Box::new(found.clone()),
                wanted: Box::new(job.clone()),
            });
        }
        catalog.job.source = job.source.clone();
        catalog.job.store = job.store.clone();
        self.state = catalog;
        self.dirty = true;
        Ok(())
    }

    /// The state as it stands, journal included.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run being journaled, if any.
    pub fn current_run(&self) -> Option<&RunRecord> {
        self.run.as_ref()
    }

    /// Records the source's size as listed at the start of the run.
    pub fn set_run_totals(&mut self, files_total: u64, bytes_total: u64) -> Result<(), StateError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        run.files_total = files_total;
        run.bytes_total = bytes_total;
        let run = run.clone();
        self.record(Record::Run { run })
    }

    /// Folds everything into a full save and starts a fresh journal for a new run. A plain
    /// state is checked against its integrity tags first ([`StateError::Damaged`]); a vault
    /// state is checked by `keyring::check_state`, which has the key.
    pub fn begin_run(&mut self, started: crate::time::Timestamp) -> Result<(), StateError> {
        self.check_plain()?;
        let run = RunRecord::started(started);
        if self.dirty {
            self.state.stats.runs += 1;
            self.run = Some(run);
            return self.fold();
        }
        // Nothing to fold: the file on disk is this state (but for the run counter, which
        // the journal's run record carries), so only a fresh journal is needed. This keeps
        // a no-change run to one full save.
        self.journal = Some(journal::JournalWriter::create(
            &self.path,
            self.state.generation,
        )?);
        self.record(Record::RunStarted { run })
    }

    /// Applies a record and appends it to the journal (one small write), with the
    /// integrity tag of the entry it changes once the state was checked.
    pub fn record(&mut self, record: Record) -> Result<(), StateError> {
        journal::apply_tagged(&mut self.state, &mut self.run, &record, None);
        let tag = match &self.tagger {
            Some(tagger) if self.verified => tagger.tag_of(&self.state, &record),
            _ => None,
        };
        if let Some(tag) = &tag {
            integrity::set_tag(&mut self.state, &record, tag);
        }
        if let Some(j) = self.journal.as_mut() {
            j.append_tagged(&record, tag.as_deref())?;
            // Folding when the journal has as many records as the state has entries keeps
            // the journal (and its replay) bounded at an amortised constant cost per record.
            let entries = (self.state.completed.len() + self.state.failed.len()) as u64;
            if j.records() > entries.max(10_000) {
                self.fold()?;
            }
        }
        Ok(())
    }

    /// Saves the whole state with a new generation and restarts the journal.
    fn fold(&mut self) -> Result<(), StateError> {
        self.state.generation += 1;
        self.save_whole()?;
        self.dirty = false;
        let mut j = journal::JournalWriter::create(&self.path, self.state.generation)?;
        if let Some(run) = &self.run {
            j.append(&Record::Run { run: run.clone() })?;
        }
        self.journal = Some(j);
        Ok(())
    }

    fn save_whole(&mut self) -> Result<(), StateError> {
        if self.verified
            && self.stale_tags
            && let Some(tagger) = &self.tagger
        {
            tagger.retag_all(&mut self.state);
            self.stale_tags = false;
        }
        self.state.version = STATE_VERSION;
        self.state.tool_version = env!("CARGO_PKG_VERSION").to_string();
        self.state.last_updated = crate::time::now();
        write_atomic(&self.path, &self.state)
    }

    /// Ends the run: records it in the history, saves the whole state and removes the journal.
    pub fn finish_run(
        &mut self,
        finish: impl FnOnce(&mut RunRecord),
    ) -> Result<RunRecord, StateError> {
        let mut run = self
            .run
            .take()
            .unwrap_or_else(|| RunRecord::started(crate::time::now()));
        run.ended = crate::time::now();
        finish(&mut run);
        self.state.push_run(run.clone());
        self.commit()?;
        Ok(run)
    }

    /// Saves the whole state now (used by commands that edit it, like `retry`), with a
    /// new generation, and removes the journal it folded in.
    pub fn commit(&mut self) -> Result<(), StateError> {
        self.check_plain()?;
        self.state.generation += 1;
        self.save_whole()?;
        self.journal = None;
        let jpath = journal::journal_path(&self.path);
        match std::fs::remove_file(&jpath) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                path: jpath,
                source,
            }),
        }
    }

    /// Records what the run's listing found about permissions and folders (saved with the
    /// state at the end of the run; not covered by integrity tags, so no tag goes stale).
    pub fn set_meta(&mut self, meta: Meta) {
        self.state.meta = meta;
    }

    /// Records what a chat source knows of its chats (saved with the state; not covered
    /// by integrity tags, like [`StateFile::set_meta`]).
    pub fn set_telegram_chats(&mut self, chats: std::collections::BTreeMap<String, ChatCatalog>) {
        self.state.telegram_chats = chats;
    }

    /// Mutable access for commands that edit the state outside a run (`retry`); call
    /// [`StateFile::commit`] afterwards.
    pub fn state_mut(&mut self) -> &mut State {
        self.stale_tags = true;
        &mut self.state
    }
}

/// Renames a damaged file to `<name>.corrupt.<timestamp>`.
fn move_aside(path: &Path) -> Result<PathBuf, StateError> {
    let stamp = jiff::Zoned::now().strftime("%Y%m%dT%H%M%S").to_string();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt.{stamp}"));
    let aside = PathBuf::from(name);
    std::fs::rename(path, &aside).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    tracing::warn!(
        "moved the unreadable file {} aside to {}",
        path.display(),
        aside.display()
    );
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            source: "src".into(),
            store: "store".into(),
            encryption: Encryption::None,
            vault_id: None,
        }
    }

    #[test]
    fn a_clean_run_saves_once_and_a_killed_one_is_recovered_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let (mut f, opened) = StateFile::open(&path, &job(), &LoadOptions::default()).unwrap();
        assert!(opened.fresh);
        f.begin_run(crate::time::now()).unwrap();
        f.finish_run(|r| r.stop_reason = StopReason::Complete)
            .unwrap();
        let saved = std::fs::read(&path).unwrap();
        drop(f);

        // A clean state: begin_run writes only a journal, not the whole file.
        let (mut f, _) = StateFile::open(&path, &job(), &LoadOptions::default()).unwrap();
        f.begin_run(crate::time::now()).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            saved,
            "no full save at the start"
        );
        f.record(Record::Skipped {
            path: "sock".into(),
            entry: Skipped {
                reason: "socket".into(),
                since: crate::time::now(),
            },
        })
        .unwrap();
        drop(f); // killed: no finish_run

        let (f, opened) = StateFile::open(&path, &job(), &LoadOptions::default()).unwrap();
        assert_eq!(opened.replay.applied, 2);
        let st = f.state();
        assert_eq!(st.stats.runs, 2);
        assert!(st.skipped.contains_key("sock"));
        let kinds: Vec<_> = st.runs.iter().map(|r| r.stop_reason).collect();
        assert_eq!(kinds, [StopReason::Complete, StopReason::Killed]);
    }

    #[test]
    fn a_stale_journal_is_never_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let (mut f, _) = StateFile::open(&path, &job(), &LoadOptions::default()).unwrap();
        f.begin_run(crate::time::now()).unwrap();
        f.record(Record::Skipped {
            path: "x".into(),
            entry: Skipped {
                reason: "r".into(),
                since: crate::time::now(),
            },
        })
        .unwrap();
        // Simulate a kill between the full save and the journal's removal: keep a copy of
        // the journal, finish, put the old journal back.
        let jpath = journal::journal_path(&path);
        let old = std::fs::read(&jpath).unwrap();
        f.finish_run(|_| {}).unwrap();
        drop(f);
        std::fs::write(&jpath, old).unwrap();
        let (f, opened) = StateFile::open(&path, &job(), &LoadOptions::default()).unwrap();
        assert!(opened.replay.stale);
        assert_eq!(opened.replay.applied, 0);
        assert_eq!(f.state().stats.runs, 1);
        assert_eq!(f.state().runs.len(), 1);
    }
}
