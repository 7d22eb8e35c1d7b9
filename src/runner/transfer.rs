//! Moving one file: part by part from the source into the store, checkpointing each part
//! in the state's journal, and noticing when the file changes underneath.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::events::{Event, Events};
use super::plan::{WorkItem, parts_total};
use crate::source::{Source, SourceEntry, SourceError};
use crate::state::{Completed, InProgress, Record, StateError, StateFile, StoredPart};
use crate::store::{Store, StoreError, Upload};

/// Bytes moved per read and write.
pub const CHUNK_SIZE: usize = 1 << 20;

/// How a file's turn ended.
#[derive(Debug)]
pub enum FileOutcome {
    /// Stored completely.
    Completed,
    /// The next part could not finish within the budget; stored parts are kept.
    Deferred,
    /// The run is stopping; the part in flight was dropped.
    Abandoned,
    /// It failed.
    Failed(FileError),
}

/// Why a file failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The checkpoint could not be written: the run must stop.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a file transfer needs from the run.
pub struct Context<S, T> {
    /// The source.
    pub source: Arc<S>,
    /// The store.
    pub store: Arc<T>,
    /// The state being journaled.
    pub state: Arc<Mutex<StateFile>>,
    /// The budget.
    pub budget: Arc<Budget>,
    /// Event sink.
    pub events: Events,
    /// Part size in bytes.
    pub part_size: u64,
    /// Cancelled when the run stops.
    pub cancel: CancellationToken,
    /// Every listed path, to refuse plain part names that collide with a real file.
    pub listed: Arc<std::collections::HashSet<String>>,
}

/// The store name of part `index` of `n` for `path` in plain mode: the path itself for a
/// single part, else `path.001`, `path.002`, ... (wider when there are over 999 parts).
pub fn plain_part_name(path: &str, index: u64, n: u64) -> String {
    if n == 1 {
        return path.to_owned();
    }
    let width = n.to_string().len().max(3);
    format!("{path}.{:0width$}", index + 1)
}

/// Looks at a file again before a retry: if it changed since it was listed, the entry is
/// updated and parts stored for the old content are dropped.
pub async fn refresh<S: Source, T: Store>(
    ctx: &Context<S, T>,
    item: &mut WorkItem,
) -> Result<(), FileError> {
    let now = ctx.source.stat(&item.entry.path).await?;
    if now.size != item.entry.size || now.mtime != item.entry.mtime {
        if item.resume.take().is_some() {
            ctx.state
                .lock()
                .unwrap()
                .record(Record::InProgressDropped {
                    path: item.entry.path.clone(),
                })?;
        }
        item.entry = now;
    } else {
        // Parts stored by an earlier try in this run count: resume after them.
        let state = ctx.state.lock().unwrap();
        item.resume = state
            .state()
            .in_progress
            .get(&item.entry.path)
            .filter(|ip| {
                ip.size == item.entry.size
                    && ip.mtime == item.entry.mtime
                    && ip.part_size == ctx.part_size
            })
            .cloned();
    }
    Ok(())
}

/// Works on one file until it is stored, deferred, abandoned or failed.
pub async fn transfer<S: Source, T: Store>(ctx: &Context<S, T>, item: &WorkItem) -> FileOutcome {
    match transfer_inner(ctx, item).await {
        Ok(outcome) => outcome,
        Err(e) => FileOutcome::Failed(e),
    }
}

async fn transfer_inner<S: Source, T: Store>(
    ctx: &Context<S, T>,
    item: &WorkItem,
) -> Result<FileOutcome, FileError> {
    let e = &item.entry;
    let n = parts_total(e.size, ctx.part_size);
    if n > 1 {
        for k in 0..n {
            let name = plain_part_name(&e.path, k, n);
            if ctx.listed.contains(&name) {
                return Err(StoreError::Refused {
                    name,
                    reason: format!(
                        "part {} of {} would take the name of another source file; rename one \
                         of them or use a --part-size above the file's size",
                        k + 1,
                        e.path
                    ),
                }
                .into());
            }
        }
    }
    let mut parts: Vec<StoredPart> = item
        .resume
        .as_ref()
        .map(|r| r.parts.clone())
        .unwrap_or_default();
    let started = item
        .resume
        .as_ref()
        .map(|r| r.started)
        .unwrap_or_else(crate::time::now);
    ctx.events.emit(Event::FileStarted {
        path: e.path.clone(),
        size: e.size,
        first_part: parts.len() as u64,
        parts_total: n,
    });
    for k in parts.len() as u64..n {
        let offset = k * ctx.part_size;
        let len = (e.size - offset).min(ctx.part_size);
        if !ctx.budget.can_finish(len) {
            return Ok(FileOutcome::Deferred);
        }
        let t0 = Instant::now();
        let name = plain_part_name(&e.path, k, n);
        let part = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Ok(FileOutcome::Abandoned),
            r = copy_part(ctx, e, offset, len, &name) => r?,
        };
        ctx.budget.observe(len, t0.elapsed());
        // Change detection: the file must look exactly as listed after the read.
        let now = ctx.source.stat(&e.path).await?;
        if now.size != e.size || now.mtime != e.mtime {
            if !parts.is_empty() {
                ctx.state
                    .lock()
                    .unwrap()
                    .record(Record::InProgressDropped {
                        path: e.path.clone(),
                    })?;
            }
            return Err(SourceError::Changed {
                path: e.path.clone(),
                detail: change_detail(e, &now),
            }
            .into());
        }
        let at = crate::time::now();
        let last = k + 1 == n;
        let record = if last {
            parts.push(part);
            Record::FileCompleted {
                path: e.path.clone(),
                entry: Completed {
                    size: e.size,
                    mtime: e.mtime,
                    stored_at: at,
                    parts: parts.clone(),
                },
                fresh_parts: 1,
                fresh_bytes: len,
            }
        } else {
            let record = Record::PartStored {
                path: e.path.clone(),
                file: InProgress {
                    size: e.size,
                    mtime: e.mtime,
                    part_size: ctx.part_size,
                    parts_total: n,
                    started,
                    parts: Vec::new(),
                },
                index: k,
                part: part.clone(),
                at,
            };
            parts.push(part);
            record
        };
        let replaced = {
            let mut state = ctx.state.lock().unwrap();
            let old = state.state().completed.get(&e.path).cloned();
            state.record(record)?;
            old.filter(|_| last)
        };
        ctx.events.emit(Event::PartStored {
            path: e.path.clone(),
            index: k,
            parts_total: n,
        });
        // Plain mode mirrors: parts of the previous version under other names go.
        if let Some(old) = replaced {
            for p in old
                .parts
                .iter()
                .filter(|p| !parts.iter().any(|q| q.loc == p.loc))
            {
                if let Err(err) = ctx.store.remove(&p.loc).await {
                    tracing::warn!("could not remove the old part {}: {err}", p.loc);
                }
            }
        }
    }
    ctx.events.emit(Event::FileCompleted {
        path: e.path.clone(),
        size: e.size,
    });
    Ok(FileOutcome::Completed)
}

fn change_detail(was: &SourceEntry, now: &SourceEntry) -> String {
    if was.size != now.size {
        format!("size {} -> {}", was.size, now.size)
    } else {
        format!("mtime {} -> {}", was.mtime, now.mtime)
    }
}

/// Copies `len` bytes at `offset` of `entry` into a new part named `name`.
async fn copy_part<S: Source, T: Store>(
    ctx: &Context<S, T>,
    entry: &SourceEntry,
    offset: u64,
    len: u64,
    name: &str,
) -> Result<StoredPart, FileError> {
    let reader = ctx.source.open(&entry.path, offset).await?;
    let mut reader = reader.take(len);
    let mut upload = ctx.store.begin(name, len).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_SIZE.min(len.max(1) as usize)];
    let mut done = 0u64;
    loop {
        let n = read_full(&mut reader, &mut buf)
            .await
            .map_err(|err| SourceError::Transient {
                path: entry.path.clone(),
                message: err.to_string(),
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        upload.write(&buf[..n]).await?;
        done += n as u64;
        ctx.events.emit(Event::Bytes(n as u64));
    }
    if done != len {
        return Err(SourceError::Changed {
            path: entry.path.clone(),
            detail: format!(
                "ended after {} bytes, {} expected",
                offset + done,
                entry.size
            ),
        }
        .into());
    }
    let loc = upload.finish().await?;
    Ok(StoredPart {
        loc,
        len,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Reads until `buf` is full or the reader ends.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// How long a store's rate-limit wait was, if the error is one.
pub fn rate_limit(err: &FileError) -> Option<Duration> {
    match err {
        FileError::Store(StoreError::RateLimited { wait }) => Some(*wait),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::plain_part_name;

    #[test]
    fn part_names() {
        assert_eq!(plain_part_name("a/b.bin", 0, 1), "a/b.bin");
        assert_eq!(plain_part_name("a/b.bin", 0, 2), "a/b.bin.001");
        assert_eq!(plain_part_name("a/b.bin", 11, 12), "a/b.bin.012");
        assert_eq!(plain_part_name("x", 0, 1500), "x.0001");
    }
}
