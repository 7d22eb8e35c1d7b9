//! The append-only journal that checkpoints progress between full state saves.
//!
//! Every finished part and file is one JSON line appended to `<state>.journal`, so a
//! checkpoint costs one small write however large the state is. The first line names the
//! state generation the journal extends; a journal whose generation does not match the
//! state file is stale (it was folded in already) and is ignored. A last line without its
//! newline is a write cut short by a kill and is dropped; any other unreadable line is
//! corruption and is reported, never guessed at.
//!
//! A line that changes a `completed` or `in_progress` entry also carries the entry's
//! integrity tag as it stands after the line (`"integrity"`, beside the record's fields),
//! so a replayed state can be checked like a saved one (`crate::state::integrity`). The
//! journal is read as a stream, one line at a time, and at most
//! [`crate::bounded::MAX_STATE_LEN`] bytes of it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::StateError;
use super::model::{Completed, Failed, InProgress, Object, RunRecord, Skipped, State, StoredPart};
use crate::time::Timestamp;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// First line: the state generation this journal extends.
    Header {
        /// Must equal the state file's `generation`.
        generation: u64,
        /// The state format version.
        version: u32,
    },
    /// A run started (counted in `stats.runs`).
    RunStarted {
        /// The run's record.
        run: RunRecord,
    },
    /// A run (re)started journaling after a full save, or updated its totals; carries its
    /// counts so far.
    Run {
        /// The run's record up to this point.
        run: RunRecord,
    },
    /// One part of a multi-part file was stored.
    PartStored {
        /// The file's path.
        path: String,
        /// The file's identity and part layout (parts left empty here).
        file: InProgress,
        /// Index of the part.
        index: u64,
        /// The stored part.
        part: StoredPart,
        /// Vault mode: the part's keyed MAC (hex).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// A file was stored completely.
    FileCompleted {
        /// The file's path.
        path: String,
        /// Its entry.
        entry: Completed,
        /// Parts written by this step that no `part_stored` line counted.
        fresh_parts: u64,
        /// Bytes of those parts.
        fresh_bytes: u64,
        /// Vault mode: the object stored by this step, if it is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<(String, Object)>,
    },
    /// A completed plain-mode file's part, stored staged while the state still pointed at
    /// the previous version under the part's name, now has that name (the staged copy is
    /// removed next).
    PartPlaced {
        /// The file's path.
        path: String,
        /// Index of the part.
        index: u64,
        /// The staged location the state pointed at.
        from: String,
        /// The part's own name, now holding the same bytes.
        to: String,
        /// The part's modification time under its name, where the store keeps one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        store_mtime: Option<Timestamp>,
    },
    /// A file failed for this run.
    FileFailed {
        /// The file's path.
        path: String,
        /// Its new failure entry.
        entry: Failed,
    },
    /// Parts stored for a file are no longer valid (the file changed).
    InProgressDropped {
        /// The file's path.
        path: String,
    },
    /// A source entry is refused on purpose.
    Skipped {
        /// The entry's path.
        path: String,
        /// Why.
        entry: Skipped,
    },
    /// A failure entry is gone (its file left the source or the filter).
    FailureCleared {
        /// The file's path.
        path: String,
    },
    /// A skipped entry is no longer refused (or no longer exists).
    SkipCleared {
        /// The entry's path.
        path: String,
    },
}

/// One journal line: a record and, for a record that changes a `completed` or
/// `in_progress` entry, that entry's integrity tag after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// The tag of the entry the record leaves (absent for other records, and in lines
    /// written before tgferry had tags, or without the vault's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

/// What replaying a journal found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replay {
    /// Records applied.
    pub applied: u64,
    /// A cut-short last line was dropped.
    pub dropped_partial_line: bool,
    /// A journal was present but belonged to an older generation.
    pub stale: bool,
    /// The run that was journaling when the process died, if any.
    pub interrupted_run: Option<RunRecord>,
}

/// Applies one record to the state and to the run being tracked; the integrity tag of an
/// entry the record changes is removed (see [`apply_tagged`]).
pub fn apply(state: &mut State, run: &mut Option<RunRecord>, record: &Record) {
    apply_tagged(state, run, record, None);
}

/// Applies one record, setting the integrity tag of the entry it changes to `tag` (or
/// removing it if `None`, so that an untagged change never keeps an older tag).
pub fn apply_tagged(
    state: &mut State,
    run: &mut Option<RunRecord>,
    record: &Record,
    tag: Option<&str>,
) {
    let set = |map: &mut std::collections::BTreeMap<String, String>, path: &str| match tag {
        Some(t) => {
            map.insert(path.to_owned(), t.to_owned());
        }
        None => {
            map.remove(path);
        }
    };
    match record {
        Record::Header { .. } => {}
        Record::Run { run: r } => *run = Some(r.clone()),
        Record::RunStarted { run: r } => {
            state.stats.runs += 1;
            *run = Some(r.clone());
        }
        Record::PartStored {
            path,
            file,
            index,
            part,
            mac,
            at,
        } => {
            let entry = state
                .in_progress
                .entry(path.clone())
                .or_insert_with(|| file.clone());
            let same_object = entry.vault.is_some() == file.vault.is_some();
            if entry.size != file.size
                || entry.mtime != file.mtime
                || entry.part_size != file.part_size
                || !same_object
            {
                *entry = file.clone();
            }
            let index = *index as usize;
            entry.parts.truncate(index);
            if entry.parts.len() == index {
                entry.parts.push(part.clone());
            }
            if let (Some(draft), Some(mac)) = (entry.vault.as_mut(), mac) {
                draft.part_macs.truncate(index);
                draft.part_macs.push(mac.clone());
            }
            set(&mut state.integrity.in_progress, path);
            state.stats.total_parts += 1;
            state.stats.total_bytes += part.len;
            if let Some(r) = run {
                r.parts_stored += 1;
                r.bytes += part.len;
                r.ended = *at;
            }
        }
        Record::FileCompleted {
            path,
            entry,
            fresh_parts,
            fresh_bytes,
            object,
        } => {
            if let Some((id, object)) = object {
                state.objects.insert(id.clone(), object.clone());
            }
            state.in_progress.remove(path);
            state.integrity.in_progress.remove(path);
            state.failed.remove(path);
            state.completed.insert(path.clone(), entry.clone());
            set(&mut state.integrity.completed, path);
            state.stats.total_uploaded += 1;
            state.stats.total_parts += fresh_parts;
            state.stats.total_bytes += fresh_bytes;
            if let Some(r) = run {
                r.files_completed += 1;
                r.parts_stored += fresh_parts;
                r.bytes += fresh_bytes;
                r.ended = entry.stored_at;
            }
        }
        Record::PartPlaced {
            path,
            index,
            from,
            to,
            store_mtime,
        } => {
            // Only if the state still points at the staged copy (a record that no longer
            // matches changes nothing).
            let part = state
                .completed
                .get_mut(path)
                .and_then(|c| c.parts.get_mut(usize::try_from(*index).ok()?))
                .filter(|p| p.loc == *from);
            if let Some(part) = part {
                part.loc = to.clone();
                part.store_mtime = *store_mtime;
                // The location is covered by the entry's tag.
                set(&mut state.integrity.completed, path);
            }
        }
        Record::FileFailed { path, entry } => {
            state.failed.insert(path.clone(), entry.clone());
            state.stats.total_failed += 1;
            if let Some(r) = run {
                r.files_failed += 1;
                r.ended = entry.last_failed;
            }
        }
        Record::InProgressDropped { path } => {
            state.in_progress.remove(path);
            state.integrity.in_progress.remove(path);
        }
        Record::Skipped { path, entry } => {
            state.skipped.insert(path.clone(), entry.clone());
        }
        Record::FailureCleared { path } => {
            state.failed.remove(path);
        }
        Record::SkipCleared { path } => {
            state.skipped.remove(path);
        }
    }
}

/// The journal's path for a state file: `<state>.journal`.
pub fn journal_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Replays the journal beside `state_path` (if any) onto `state`.
pub fn replay(state_path: &Path, state: &mut State) -> Result<Replay, StateError> {
    let path = journal_path(state_path);
    let file = match crate::bounded::open_regular(&path, true) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    replay_from(std::io::BufReader::new(file), &path, state)
}

/// Replays a journal read from `reader` (named `path` in errors) onto `state`: at most
/// [`crate::bounded::MAX_STATE_LEN`] bytes, one line in memory at a time.
pub fn replay_from(
    reader: impl BufRead,
    path: &Path,
    state: &mut State,
) -> Result<Replay, StateError> {
    let limit = crate::bounded::MAX_STATE_LEN;
    let mut reader = reader.take(limit + 1);
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = Replay::default();
    let mut run = None;
    let mut line = Vec::new();
    let mut read = 0u64;
    for i in 0.. {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        read += n as u64;
        if read > limit {
            return Err(io(crate::bounded::too_large(limit)));
        }
        if n == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            // A write cut short by a kill: only possible on the last line.
            out.dropped_partial_line = true;
            break;
        }
        let parsed: Line = serde_json::from_slice(&line[..line.len() - 1]).map_err(|e| {
            StateError::JournalCorrupt {
                path: path.to_owned(),
                line: i + 1,
                message: e.to_string(),
            }
        })?;
        if i == 0 {
            match parsed.record {
                Record::Header { generation, .. } if generation == state.generation => continue,
                Record::Header { .. } => {
                    out.stale = true;
                    return Ok(out);
                }
                _ => {
                    return Err(StateError::JournalCorrupt {
                        path: path.to_owned(),
                        line: 1,
                        message: "the first line is not a journal header".into(),
                    });
                }
            }
        }
        apply_tagged(state, &mut run, &parsed.record, parsed.integrity.as_deref());
        out.applied += 1;
    }
    out.interrupted_run = run;
    Ok(out)
}

/// [`Line`] borrowed, for writing.
#[derive(Serialize)]
struct LineRef<'a> {
    #[serde(flatten)]
    record: &'a Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    integrity: Option<&'a str>,
}

/// Appends records to the journal file.
#[derive(Debug)]
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    last_sync: Instant,
    records: u64,
    buf: Vec<u8>,
}

/// Longest time a written record may wait for `fdatasync` (power-cut durability; a kill of
/// the process loses nothing that `write` returned for).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl JournalWriter {
    /// Creates (truncating) the journal for `state_path` with a header for `generation`.
    pub fn create(state_path: &Path, generation: u64) -> Result<Self, StateError> {
        let path = journal_path(state_path);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?;
        let mut writer = JournalWriter {
            file,
            path,
            last_sync: Instant::now(),
            records: 0,
            buf: Vec::with_capacity(512),
        };
        writer.append(&Record::Header {
            generation,
            version: super::model::STATE_VERSION,
        })?;
        writer.sync()?;
        Ok(writer)
    }

    /// Appends one record with a single `write` call.
    pub fn append(&mut self, record: &Record) -> Result<(), StateError> {
        self.append_tagged(record, None)
    }

    /// Appends one record with the integrity tag of the entry it leaves, in one `write`.
    pub fn append_tagged(&mut self, record: &Record, tag: Option<&str>) -> Result<(), StateError> {
        self.buf.clear();
        let line = LineRef {
            record,
            integrity: tag,
        };
        serde_json::to_writer(&mut self.buf, &line).expect("journal records serialize");
        self.buf.push(b'\n');
        self.file
            .write_all(&self.buf)
            .map_err(|source| StateError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.records += 1;
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes the journal to disk.
    pub fn sync(&mut self) -> Result<(), StateError> {
        self.last_sync = Instant::now();
        self.file.sync_data().map_err(|source| StateError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Records appended since the header.
    pub fn records(&self) -> u64 {
        self.records.saturating_sub(1)
    }
}
