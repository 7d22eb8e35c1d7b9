//! Moving one file: part by part from the source into the store, checkpointing each part
//! in the state's journal, and noticing when the file changes underneath.
//!
//! Plain mode never writes over a part the state points to. Where the store's locations
//! are names ([`Store::names_are_locations`]), a part whose name the state still uses (a
//! changed file's previous version, usually) is written *staged*
//! ([`Store::begin_staged`]); once the new version is recorded complete, each staged part
//! is placed under its name, the move recorded, and the staged copy removed ([`settle`]).
//! At every instant the state, with its journal, points only at whole parts holding what
//! it records; a run that was killed half-way is finished by the next one
//! ([`tidy_staged`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::events::{Event, Events};
use super::plan::{WorkItem, parts_total};
use crate::source::{Source, SourceEntry, SourceError};
use crate::state::{
    Completed, InProgress, Object, ObjectDraft, Record, StateError, StateFile, StoredPart, Version,
};
use crate::store::{STAGING_PREFIX, Store, StoreError, Upload};
use crate::vault::{
    ContentIdKey, MAC_LEN, MasterKey, NONCE_PREFIX_LEN, ObjectParams, PartEncryptor, PartMac,
    SALT_LEN, SEGMENT_SIZE, TAG_LEN, VaultError, content_id,
};

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
    /// A small file of a vault run went into the open pack (`deferred`: no, the budget
    /// had no room for its pack); `flushed` says how the packs uploaded meanwhile ended,
    /// which may be this file's own.
    Packed {
        /// The budget had no room: the file waits for the next run.
        deferred: bool,
        /// Packs uploaded while this file was added.
        flushed: Vec<super::pack::PackOutcome>,
    },
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
    /// Encryption refused the object (a bug or an impossible size).
    #[error(transparent)]
    Vault(#[from] VaultError),
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
    /// The vault keys; `None` for plain mode.
    pub vault: Option<Arc<VaultKeys>>,
    /// Segment buffers reused across parts.
    pub buffers: BufferPool,
    /// The run's pack writer: vault runs that pack small files ([`super::pack`]).
    pub packer: Option<Arc<super::pack::Packer>>,
    /// Files the source says hold the same content.
    pub twins: Arc<Twins>,
}

/// Files the source says hold the same content without reading them (one Telegram media
/// forwarded to several messages or chats: [`crate::source::Listing::identities`]). In a
/// vault run one of them is read; the others wait for it and are recorded as copies of
/// what it stored. A twin that waits in the open pack is not stored yet, so a small
/// file's twin may be read again (its bytes then count once in the pack's dead bytes).
#[derive(Debug, Default)]
pub struct Twins {
    /// The identity of every file that shares it with another, by path.
    identity: std::collections::HashMap<String, String>,
    /// The files with each shared identity.
    paths: std::collections::HashMap<String, Vec<String>>,
    /// One permit per shared identity: held while one of its files is worked on.
    turns: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Twins {
    /// The twins in a listing's identities.
    pub fn new(identities: &std::collections::BTreeMap<String, String>) -> Twins {
        let mut paths: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (path, identity) in identities {
            paths
                .entry(identity.clone())
                .or_default()
                .push(path.clone());
        }
        paths.retain(|_, p| p.len() > 1);
        let identity = identities
            .iter()
            .filter(|(_, i)| paths.contains_key(*i))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        Twins {
            identity,
            paths,
            turns: Mutex::default(),
        }
    }

    /// Waits until no twin of `path` is being worked on, and holds that turn; `None` for
    /// a file without twins.
    async fn turn(&self, path: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let identity = self.identity.get(path)?;
        let turn = self
            .turns
            .lock()
            .unwrap()
            .entry(identity.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1)))
            .clone();
        turn.acquire_owned().await.ok()
    }

    /// The stored object of a twin of `e` of the same size, if one is stored.
    fn stored(&self, state: &crate::state::State, e: &SourceEntry) -> Option<String> {
        let identity = self.identity.get(&e.path)?;
        self.paths[identity]
            .iter()
            .filter(|p| **p != e.path)
            .filter_map(|p| state.completed.get(p))
            .find(|c| c.size == e.size)
            .and_then(|c| c.object.clone())
    }
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
        item.resume = None;
        item.entry = now;
        let garbage = drop_in_progress(&mut ctx.state.lock().unwrap(), &item.entry.path)?;
        remove_all(&*ctx.store, garbage).await;
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

/// The vault keys a run encrypts with.
#[derive(Debug)]
pub struct VaultKeys {
    /// The master key.
    pub master: MasterKey,
    /// The content-id key derived from it.
    pub content_id: ContentIdKey,
}

impl VaultKeys {
    /// Derives the run's keys from the master key.
    pub fn new(master: MasterKey) -> Self {
        VaultKeys {
            content_id: master.content_id_key(),
            master,
        }
    }
}

/// How the parts of one file are laid out in the store.
enum Layout<'a> {
    /// Plain copies named after the path.
    Plain,
    /// Encrypted parts of one object.
    Vault {
        keys: &'a VaultKeys,
        params: ObjectParams,
        macs: Vec<[u8; MAC_LEN]>,
    },
}

/// A fresh opaque name for a vault part: `data/ab/<32 hex>`.
pub(super) fn vault_part_name() -> Result<String, FileError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| VaultError::Misuse(format!("no randomness: {e}")))?;
    let id = hex::encode(id);
    Ok(format!("data/{}/{id}", &id[..2]))
}

async fn transfer_inner<S: Source, T: Store>(
    ctx: &Context<S, T>,
    item: &WorkItem,
) -> Result<FileOutcome, FileError> {
    let e = &item.entry;
    // A twin read by another worker is waited for, then copied rather than read again.
    let turn = match ctx.vault.is_some() && item.resume.is_none() {
        true => ctx.twins.turn(&e.path).await,
        false => None,
    };
    if turn.is_some() {
        let stored = ctx.twins.stored(ctx.state.lock().unwrap().state(), e);
        if let Some(id) = stored
            && let Some(outcome) = record_if_stored(ctx, e, &id)?
        {
            return Ok(outcome);
        }
    }
    if let (Some(keys), Some(packer)) = (ctx.vault.as_deref(), ctx.packer.as_deref())
        && item.resume.is_none()
        && packer.takes(e.size, ctx.part_size)
    {
        return pack_one(ctx, keys, packer, e).await;
    }
    let mut layout = match ctx.vault.as_deref() {
        None => Layout::Plain,
        Some(keys) => {
            let draft = item.resume.as_ref().and_then(|r| r.vault.as_ref());
            let resumed = draft.and_then(|d| {
                d.part_macs
                    .iter()
                    .map(|m| crate::vault::parse_hex(m))
                    .collect::<Option<Vec<_>>>()
            });
            let macs = match resumed {
                Some(macs) => macs,
                None => {
                    if item.resume.is_none()
                        && let Some(outcome) = dedup(ctx, keys, e).await?
                    {
                        return Ok(outcome);
                    }
                    Vec::new()
                }
            };
            // Only the arithmetic of this value is used: every part draws its own salt
            // and nonce prefix when it is encrypted.
            let params =
                ObjectParams::new([0; SALT_LEN], [0; NONCE_PREFIX_LEN], e.size, ctx.part_size)?;
            Layout::Vault { keys, params, macs }
        }
    };
    let n = match &layout {
        Layout::Plain => parts_total(e.size, ctx.part_size),
        Layout::Vault { params, .. } => params.part_count() as u64,
    };
    if matches!(layout, Layout::Plain) && n > 1 {
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
    let mut parts: Vec<StoredPart> = match (&item.resume, &layout) {
        (Some(r), Layout::Plain) => r.parts.clone(),
        (Some(r), Layout::Vault { macs, .. }) if r.parts.len() == macs.len() => r.parts.clone(),
        _ => Vec::new(),
    };
    if let Layout::Vault { macs, .. } = &mut layout {
        macs.truncate(parts.len());
    }
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
        let staged = match layout {
            Layout::Plain => plain_target(ctx, &e.path, k, n)?,
            Layout::Vault { .. } => false,
        };
        let t0 = Instant::now();
        let copied = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => None,
            r = copy_part(ctx, e, k, n, &layout, staged) => r?,
        };
        let Some((part, mac, now)) = copied else {
            // The run is stopping: the part in flight was dropped, never synced.
            return Ok(FileOutcome::Abandoned);
        };
        ctx.budget.observe(len, t0.elapsed());
        // Change detection: the file must look exactly as listed after the read.
        if now.size != e.size || now.mtime != e.mtime {
            let garbage = drop_in_progress(&mut ctx.state.lock().unwrap(), &e.path)?;
            // This part is not recorded anywhere: it goes too, unless a plain name is
            // still the completed copy's.
            let mut garbage = garbage;
            if !is_referenced(&ctx.state.lock().unwrap(), &e.path, &part.loc) {
                garbage.push(part.loc.clone());
            }
            remove_all(&*ctx.store, garbage).await;
            return Err(SourceError::Changed {
                path: e.path.clone(),
                detail: change_detail(e, &now),
            }
            .into());
        }
        let at = crate::time::now();
        parts.push(part.clone());
        if let (Layout::Vault { macs, .. }, Some(mac)) = (&mut layout, mac) {
            macs.push(mac);
        }
        if k + 1 < n {
            let record = Record::PartStored {
                path: e.path.clone(),
                file: InProgress {
                    size: e.size,
                    mtime: e.mtime,
                    part_size: ctx.part_size,
                    parts_total: n,
                    started,
                    parts: Vec::new(),
                    vault: match &layout {
                        Layout::Plain => None,
                        Layout::Vault { .. } => Some(ObjectDraft {
                            part_macs: Vec::new(),
                        }),
                    },
                },
                index: k,
                part,
                mac: mac.map(hex::encode),
                at,
            };
            ctx.state.lock().unwrap().record(record)?;
            ctx.events.emit(Event::PartStored {
                path: e.path.clone(),
                index: k,
                parts_total: n,
            });
            continue;
        }
        ctx.events.emit(Event::PartStored {
            path: e.path.clone(),
            index: k,
            parts_total: n,
        });
        let stored_len = parts.last().map_or(0, |p| p.len);
        let garbage = complete(ctx, e, &layout, parts.clone(), stored_len, at)?;
        // Parts nobody refers to any more: plain parts of the previous version under other
        // names, or a vault object that an identical file stored first.
        remove_all(&*ctx.store, garbage).await;
        if matches!(layout, Layout::Plain) {
            // The new version is recorded: its staged parts may take their names now.
            settle(&*ctx.store, &ctx.state, &e.path, &ctx.cancel).await?;
        }
    }
    ctx.events.emit(Event::FileCompleted {
        path: e.path.clone(),
        size: e.size,
    });
    Ok(FileOutcome::Completed)
}

/// Forgets the stored parts of an unfinished file (it changed, or its layout did) and
/// returns the locations to remove from the store: all of them but plain names that the
/// completed copy of the same path still uses.
pub fn drop_in_progress(state: &mut StateFile, path: &str) -> Result<Vec<String>, StateError> {
    let Some(ip) = state.state().in_progress.get(path).cloned() else {
        return Ok(Vec::new());
    };
    state.record(Record::InProgressDropped {
        path: path.to_owned(),
    })?;
    Ok(ip
        .parts
        .into_iter()
        .map(|p| p.loc)
        .filter(|loc| !is_referenced(state, path, loc))
        .collect())
}

/// Whether a stored location is still used by a completed file or a vault object. Parts
/// of a dropped draft are normally its own, but a hand-edited state must not be able to
/// make a run delete stored data; this scan runs only when a draft is dropped.
fn is_referenced(state: &StateFile, path: &str, loc: &str) -> bool {
    let st = state.state();
    st.completed
        .get(path)
        .is_some_and(|c| c.parts.iter().any(|p| p.loc == loc))
        || st
            .objects
            .values()
            .any(|o| o.parts.iter().any(|p| p.loc == loc))
        || st
            .completed
            .values()
            .any(|c| c.parts.iter().any(|p| p.loc == loc))
}

/// Whether part `k` of `n` of `path` (plain mode) is to be written staged: where the
/// store's locations are names and the state still points at what the part's name holds
/// (the file's previous version, usually). Refused when the staged location is in use
/// as well, which only a clash with another path's names can cause.
fn plain_target<S, T: Store>(
    ctx: &Context<S, T>,
    path: &str,
    k: u64,
    n: u64,
) -> Result<bool, FileError> {
    if !ctx.store.names_are_locations() {
        return Ok(false); // every upload gets a location of its own
    }
    let name = plain_part_name(path, k, n);
    let state = ctx.state.lock().unwrap();
    if !loc_in_use(state.state(), &name) {
        return Ok(false);
    }
    let staged = crate::store::staged_name(&name);
    if loc_in_use(state.state(), &staged) {
        return Err(StoreError::Refused {
            reason: format!(
                "the state points at the part stored under this name and at {staged} as \
                 well, so part {} of {path} has nowhere to go without replacing one (another \
                 file's names clash with this file's); rename one of them",
                k + 1
            ),
            name,
        }
        .into());
    }
    Ok(true)
}

/// Whether the state points at `loc`, for the locations plain mode writes: a path, a
/// path with a part number (`<path>.001`), and either one staged. Only the entries that
/// could own such a location are looked at, so this costs a few lookups whatever the
/// size of the state.
pub fn loc_in_use(state: &crate::state::State, loc: &str) -> bool {
    let name = loc.strip_prefix(STAGING_PREFIX).unwrap_or(loc);
    let numbered = name
        .rsplit_once('.')
        .filter(|(_, d)| d.len() >= 3 && d.bytes().all(|b| b.is_ascii_digit()))
        .map(|(base, _)| base);
    let uses = |parts: &[StoredPart]| parts.iter().any(|p| p.loc == loc);
    std::iter::once(name).chain(numbered).any(|owner| {
        state.completed.get(owner).is_some_and(|c| uses(&c.parts))
            || state.in_progress.get(owner).is_some_and(|i| uses(&i.parts))
    })
}

/// Moves a completed plain-mode file's staged parts under their names, one at a time:
/// the store copies the staged part to its name ([`Store::place`]; nothing points at the
/// name meanwhile), the move is recorded (`part_placed`), then the staged copy is removed.
/// A kill between any two steps leaves the state pointing at a whole part holding what it
/// records, and the next run's [`tidy_staged`] finishes the job. A part that cannot be
/// placed stays staged, restorable, for the next run to try again; so does every part
/// left when the run stops.
pub async fn settle<T: Store>(
    store: &T,
    state: &Mutex<StateFile>,
    path: &str,
    cancel: &CancellationToken,
) -> Result<(), StateError> {
    let staged: Vec<(usize, String, String)> = {
        let st = state.lock().unwrap();
        let Some(c) = st.state().completed.get(path) else {
            return Ok(());
        };
        let n = c.parts.len() as u64;
        c.parts
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                // Only where a run stages: the part's own name, under the staging prefix.
                let name = p.loc.strip_prefix(STAGING_PREFIX)?;
                (name == plain_part_name(path, k as u64, n))
                    .then(|| (k, p.loc.clone(), name.to_owned()))
            })
            .collect()
    };
    for (k, from, name) in staged {
        if cancel.is_cancelled() {
            break;
        }
        if loc_in_use(state.lock().unwrap().state(), &name) {
            tracing::warn!(
                "{path}: part {} stays at {from}: the state points at another part under {name}",
                k + 1
            );
            continue;
        }
        let store_mtime = match store.place(&from, &name).await {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(
                    "{path}: part {} stays at {from} (restorable from there; the next run tries \
                     again): it could not be placed under {name}: {err}",
                    k + 1
                );
                continue;
            }
        };
        state.lock().unwrap().record(Record::PartPlaced {
            path: path.to_owned(),
            index: k as u64,
            from: from.clone(),
            to: name,
            store_mtime,
        })?;
        remove_all(store, vec![from]).await;
    }
    Ok(())
}

/// Plain mode, at the start of a run: finishes the switches that a run killed half-way
/// left (completed files with staged parts are [`settle`]d), then removes staged parts
/// the state does not point at (a staged part finished, or placed, just before a kill).
/// Stores whose every upload has a location of its own never stage, and are left alone.
pub async fn tidy_staged<T: Store>(
    store: &T,
    state: &Mutex<StateFile>,
    cancel: &CancellationToken,
) -> Result<(), StateError> {
    if !store.names_are_locations() {
        return Ok(());
    }
    let unsettled: Vec<String> = state
        .lock()
        .unwrap()
        .state()
        .completed
        .iter()
        .filter(|(_, c)| c.parts.iter().any(|p| p.loc.starts_with(STAGING_PREFIX)))
        .map(|(path, _)| path.clone())
        .collect();
    for path in unsettled {
        settle(store, state, &path, cancel).await?;
    }
    let staged = match store.staged().await {
        Ok(staged) => staged,
        Err(err) => {
            tracing::warn!("could not list the store's staged parts: {err}");
            return Ok(());
        }
    };
    let unused = {
        let st = state.lock().unwrap();
        staged
            .into_iter()
            .filter(|loc| !loc_in_use(st.state(), loc))
            .collect()
    };
    remove_all(store, unused).await;
    Ok(())
}

/// Removes parts nobody refers to; failures are logged, not fatal (the store keeps an
/// unreferenced blob, which `verify` does not mind).
pub async fn remove_all<T: Store>(store: &T, locs: Vec<String>) {
    for loc in locs {
        if let Err(err) = store.remove(&loc).await {
            tracing::warn!("could not remove the unused part {loc}: {err}");
        }
    }
}

/// Records a finished file; returns stored locations that are no longer referenced.
fn complete<S: Source, T: Store>(
    ctx: &Context<S, T>,
    e: &SourceEntry,
    layout: &Layout<'_>,
    parts: Vec<StoredPart>,
    last_stored: u64,
    at: crate::time::Timestamp,
) -> Result<Vec<String>, FileError> {
    let mut state = ctx.state.lock().unwrap();
    let old = state.state().completed.get(&e.path).cloned();
    let (record, garbage) = match layout {
        Layout::Plain => {
            // Old parts under the names that staged new parts are about to take are
            // replaced by `settle`, not removed first: the name always holds a whole file.
            let n = parts.len() as u64;
            let taken = |loc: &str| {
                parts.iter().enumerate().any(|(k, q)| {
                    q.loc == loc
                        || (q.loc.starts_with(STAGING_PREFIX)
                            && plain_part_name(&e.path, k as u64, n) == loc)
                })
            };
            let garbage = old
                .map(|o| {
                    o.parts
                        .into_iter()
                        .filter(|p| !taken(&p.loc))
                        .map(|p| p.loc)
                        .collect()
                })
                .unwrap_or_default();
            let record = Record::FileCompleted {
                path: e.path.clone(),
                entry: Completed {
                    size: e.size,
                    mtime: e.mtime,
                    stored_at: at,
                    parts,
                    object: None,
                    versions: Vec::new(),
                },
                fresh_parts: 1,
                fresh_bytes: last_stored,
                object: None,
            };
            (record, garbage)
        }
        Layout::Vault { keys, macs, .. } => {
            let id = content_id(&keys.content_id, e.size, ctx.part_size, macs)?.to_hex();
            let (object, garbage) = if state.state().objects.contains_key(&id) {
                // An identical file was stored while this one was: keep the first copy.
                (None, parts.iter().map(|p| p.loc.clone()).collect())
            } else {
                let object = Object {
                    size: e.size,
                    part_size: ctx.part_size,
                    stored_at: at,
                    parts,
                };
                (Some((id.clone(), object)), Vec::new())
            };
            let record = Record::FileCompleted {
                path: e.path.clone(),
                entry: vault_entry(e, &id, old, at),
                fresh_parts: 1,
                fresh_bytes: last_stored,
                object,
            };
            (record, garbage)
        }
    };
    state.record(record)?;
    Ok(garbage)
}

/// The completed entry for a file now stored as object `id`; a previous version with
/// other content is kept restorable in `versions`.
pub(super) fn vault_entry(
    e: &SourceEntry,
    id: &str,
    old: Option<Completed>,
    at: crate::time::Timestamp,
) -> Completed {
    let mut versions = Vec::new();
    if let Some(old) = old {
        if let Some(old_id) = old.object.as_ref().filter(|o| *o != id) {
            versions.push(Version {
                size: old.size,
                mtime: old.mtime,
                stored_at: old.stored_at,
                object: old_id.clone(),
            });
        }
        versions.extend(old.versions);
    }
    Completed {
        size: e.size,
        mtime: e.mtime,
        stored_at: at,
        parts: Vec::new(),
        object: Some(id.to_owned()),
        versions,
    }
}

/// Dedup: when an object of the same size is stored already, the file is read once to
/// compute its content id; if that content is stored, the file is recorded without
/// storing anything. Files of a size no object has are never read twice.
async fn dedup<S: Source, T: Store>(
    ctx: &Context<S, T>,
    keys: &VaultKeys,
    e: &SourceEntry,
) -> Result<Option<FileOutcome>, FileError> {
    let candidate = {
        let state = ctx.state.lock().unwrap();
        state
            .state()
            .objects
            .values()
            .any(|o| o.size == e.size && o.part_size == ctx.part_size)
    };
    if !candidate {
        return Ok(None);
    }
    let params = ObjectParams::new([0; SALT_LEN], [0; NONCE_PREFIX_LEN], e.size, ctx.part_size)?;
    let mut reader = ctx.source.open(&e.path, 0).await?;
    let mut buf = vec![0u8; SEGMENT_SIZE];
    let mut macs = Vec::with_capacity(params.part_count() as usize);
    for k in 0..params.part_count() {
        let mut mac = PartMac::new(&keys.content_id);
        let mut left = params.part_plaintext_len(k);
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let got = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Ok(Some(FileOutcome::Abandoned)),
                r = crate::source::read_full(&mut reader, &mut buf[..want]) => r.map_err(|err| crate::source::read_error(&e.path, err))?,
            };
            if got < want {
                return Err(SourceError::Changed {
                    path: e.path.clone(),
                    detail: "shorter than listed".into(),
                }
                .into());
            }
            mac.update(&buf[..got]);
            left -= got as u64;
        }
        macs.push(mac.finalize());
    }
    check_unchanged(ctx, e).await?;
    let id = content_id(&keys.content_id, e.size, ctx.part_size, &macs)?.to_hex();
    record_if_stored(ctx, e, &id)
}

/// Records `e` as a copy of the stored object `id`, if there is one (nothing is stored).
fn record_if_stored<S, T>(
    ctx: &Context<S, T>,
    e: &SourceEntry,
    id: &str,
) -> Result<Option<FileOutcome>, FileError> {
    let mut state = ctx.state.lock().unwrap();
    if !state.state().objects.contains_key(id) {
        return Ok(None);
    }
    let old = state.state().completed.get(&e.path).cloned();
    state.record(Record::FileCompleted {
        path: e.path.clone(),
        entry: vault_entry(e, id, old, crate::time::now()),
        fresh_parts: 0,
        fresh_bytes: 0,
        object: None,
    })?;
    drop(state);
    ctx.events.emit(Event::FileCompleted {
        path: e.path.clone(),
        size: e.size,
    });
    Ok(Some(FileOutcome::Completed))
}

/// A small file of a vault run: read and sealed whole, then recorded as a copy of a
/// stored content or added to the open pack.
async fn pack_one<S: Source, T: Store>(
    ctx: &Context<S, T>,
    keys: &VaultKeys,
    packer: &super::pack::Packer,
    e: &SourceEntry,
) -> Result<FileOutcome, FileError> {
    ctx.events.emit(Event::FileStarted {
        path: e.path.clone(),
        size: e.size,
        first_part: 0,
        parts_total: 1,
    });
    let Some(sealed) = super::pack::seal(ctx, keys, packer, e).await? else {
        return Ok(FileOutcome::Abandoned);
    };
    if let Some(done) = record_if_stored(ctx, e, sealed.id())? {
        packer.recycle(sealed);
        return Ok(done);
    }
    ctx.events.emit(Event::FilePacked {
        path: e.path.clone(),
    });
    let added = packer.add(ctx, e, sealed).await;
    Ok(FileOutcome::Packed {
        deferred: !added.packed,
        flushed: added.flushed,
    })
}

/// Fails with [`SourceError::Changed`] if `e` no longer looks as listed (size, mtime):
/// what was just read of it may mix two versions.
pub(super) async fn check_unchanged<S: Source, T: Store>(
    ctx: &Context<S, T>,
    e: &SourceEntry,
) -> Result<(), FileError> {
    let now = ctx.source.stat(&e.path).await?;
    if now.size != e.size || now.mtime != e.mtime {
        return Err(SourceError::Changed {
            path: e.path.clone(),
            detail: change_detail(e, &now),
        }
        .into());
    }
    Ok(())
}

pub(super) fn change_detail(was: &SourceEntry, now: &SourceEntry) -> String {
    if was.size != now.size {
        format!("size {} -> {}", was.size, now.size)
    } else {
        format!("mtime {} -> {}", was.mtime, now.mtime)
    }
}

/// Stores part `k` of `n` of `entry` (plain mode: `staged`, or under its name); returns
/// the part, for the vault its keyed MAC, and the file as it looked after the read (the
/// look is taken while the store finishes the upload: on a remote both are round trips),
/// or `None` if the run stopped meanwhile (the part is dropped, never synced).
async fn copy_part<S: Source, T: Store>(
    ctx: &Context<S, T>,
    entry: &SourceEntry,
    k: u64,
    n: u64,
    layout: &Layout<'_>,
    staged: bool,
) -> Result<Option<CopiedPart>, FileError> {
    let offset = k * ctx.part_size;
    let len = (entry.size - offset).min(ctx.part_size);
    let read_err = |err: std::io::Error| crate::source::read_error(&entry.path, err);
    let short = |done: u64| SourceError::Changed {
        path: entry.path.clone(),
        detail: format!(
            "ended after {} bytes, {} expected",
            offset + done,
            entry.size
        ),
    };
    let reader = ctx.source.open(&entry.path, offset).await?;
    let mut reader = reader.take(len);
    match layout {
        Layout::Plain => {
            let mut hasher = Sha256::new();
            let name = plain_part_name(&entry.path, k, n);
            let mut upload = if staged {
                ctx.store.begin_staged(&name, len).await?
            } else {
                ctx.store.begin(&name, len).await?
            };
            let mut buf = vec![0u8; CHUNK_SIZE.min(len.max(1) as usize)];
            let mut done = 0u64;
            loop {
                // Reads and writes of a local file block in place and never yield, so the
                // run's stop is looked for here, between chunks.
                if ctx.cancel.is_cancelled() {
                    return Ok(None);
                }
                let got = crate::source::read_full(&mut reader, &mut buf)
                    .await
                    .map_err(read_err)?;
                if got == 0 {
                    break;
                }
                hasher.update(&buf[..got]);
                upload.write(&buf[..got]).await?;
                done += got as u64;
                ctx.events.emit(Event::Bytes(got as u64));
            }
            if done != len {
                return Err(short(done).into());
            }
            if ctx.cancel.is_cancelled() {
                return Ok(None); // not worth a sync any more
            }
            let (finished, now) = tokio::join!(upload.finish_timed(), ctx.source.stat(&entry.path));
            let (loc, store_mtime) = finished?;
            Ok(Some((
                StoredPart {
                    loc,
                    len,
                    sha256: hex::encode(hasher.finalize()),
                    salt: None,
                    nonce_prefix: None,
                    store_mtime,
                    offset: None,
                },
                None,
                now?,
            )))
        }
        Layout::Vault { params, .. } => {
            let keys = ctx.vault.clone().expect("vault layout has keys");
            let part = k as u32;
            // A fresh salt and nonce prefix for every part and every attempt at it: a part
            // retried after a change the size and mtime did not show can never reuse a
            // nonce (docs/format.md, "Writer invariants").
            let params = &ObjectParams::new_random(params.size(), params.part_size())?;
            let stored_len = params.part_stored_len(part);
            let mut enc = PartEncryptor::new(&keys.master, params, part)?;
            let mut upload = ctx.store.begin(&vault_part_name()?, stored_len).await?;
            upload.write(&enc.header()).await?;
            // Two stages on two tasks, so a single large file uses two cores: the reader
            // reads a segment and feeds the keyed MAC; this task encrypts it in place and
            // writes it. Three 1 MiB buffers circulate between them: memory stays
            // constant whatever the file size.
            let first = params.part_first_segment(part);
            let seg_lens: Vec<usize> = (0..params.part_segment_count(part))
                .map(|i| params.segment_plaintext_len(first + i))
                .collect();
            let (full_tx, mut full) = tokio::sync::mpsc::channel::<Vec<u8>>(PIPELINE_BUFFERS);
            let (empty, mut empty_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(PIPELINE_BUFFERS);
            for _ in 0..PIPELINE_BUFFERS {
                let cap = seg_lens.first().copied().unwrap_or(0) + TAG_LEN;
                let _ = empty.try_send(ctx.buffers.take(cap));
            }
            let reader_keys = keys.clone();
            let reading = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                let mut mac = PartMac::new(&reader_keys.content_id);
                let mut done = 0u64;
                for seg in seg_lens {
                    let Some(mut buf) = empty_rx.recv().await else {
                        return Ok(None); // the writer stopped
                    };
                    buf.resize(seg + TAG_LEN, 0);
                    let got = crate::source::read_full(&mut reader, &mut buf[..seg]).await?;
                    done += got as u64;
                    if got < seg {
                        return Err(ReadFailure::Short(done));
                    }
                    mac.update(&buf[..seg]);
                    if full_tx.send(buf).await.is_err() {
                        return Ok(None);
                    }
                }
                Ok(Some((mac.finalize(), empty_rx)))
            }));
            while let Some(mut buf) = full.recv().await {
                if ctx.cancel.is_cancelled() {
                    return Ok(None); // the reader is aborted as `reading` drops
                }
                let seg = buf.len() - TAG_LEN;
                enc.encrypt_segment_in_place(&mut buf)?;
                upload.write(&buf).await?;
                ctx.events.emit(Event::Bytes(seg as u64));
                let _ = empty.send(buf).await;
            }
            let mac = match reading.await {
                Ok(Ok(Some((mac, mut spare)))) => {
                    while let Ok(buf) = spare.try_recv() {
                        ctx.buffers.put(buf);
                    }
                    mac
                }
                Ok(Ok(None)) => {
                    return Err(StoreError::Transient {
                        message: "the part's pipeline stopped early".into(),
                    }
                    .into());
                }
                Ok(Err(ReadFailure::Io(err))) => return Err(read_err(err).into()),
                Ok(Err(ReadFailure::Short(done))) => return Err(short(done).into()),
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            };
            enc.finish()?;
            if ctx.cancel.is_cancelled() {
                return Ok(None); // not worth a sync any more
            }
            let (finished, now) = tokio::join!(upload.finish(), ctx.source.stat(&entry.path));
            let loc = finished?;
            // No hash of the ciphertext: every segment carries its GCM tag, and the part
            // its keyed MAC; hashing it again would cost a fifth of the CPU.
            Ok(Some((
                StoredPart {
                    loc,
                    len: stored_len,
                    sha256: String::new(),
                    salt: Some(hex::encode(params.salt())),
                    nonce_prefix: Some(hex::encode(params.nonce_prefix())),
                    store_mtime: None,
                    offset: None,
                },
                Some(mac),
                now?,
            )))
        }
    }
}

/// A part [`copy_part`] stored: the part, the vault's keyed MAC of it, and the file as it
/// looked once it was read.
type CopiedPart = (StoredPart, Option<[u8; MAC_LEN]>, SourceEntry);

/// Buffers circulating between the reading and the encrypting stage of one part.
const PIPELINE_BUFFERS: usize = 3;

/// Segment buffers kept for the next part, so a run allocates them once per worker rather
/// than once per part (the allocator would otherwise hold on to freed ones per thread).
#[derive(Debug, Default)]
pub struct BufferPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    /// Buffers kept at most (enough for 16 parts in flight).
    const MAX: usize = 16 * PIPELINE_BUFFERS;

    /// A buffer with at least `cap` bytes of capacity. A kept buffer keeps its length
    /// (and old contents), so resizing it to a segment's length zeroes nothing: zeroing a
    /// fresh 1 MiB for every part cost 6% of a backup's CPU.
    fn take(&self, cap: usize) -> Vec<u8> {
        let mut buf = self.0.lock().unwrap().pop().unwrap_or_default();
        buf.reserve(cap.saturating_sub(buf.len()));
        buf
    }

    /// Gives a buffer back.
    fn put(&self, buf: Vec<u8>) {
        let mut pool = self.0.lock().unwrap();
        if pool.len() < Self::MAX {
            pool.push(buf);
        }
    }
}

/// Why the reading stage stopped.
enum ReadFailure {
    /// An I/O error.
    Io(std::io::Error),
    /// The file ended early, after this many bytes of the part.
    Short(u64),
}

impl From<std::io::Error> for ReadFailure {
    fn from(e: std::io::Error) -> Self {
        ReadFailure::Io(e)
    }
}

/// How long a store's or source's rate-limit wait was, if the error is one.
pub fn rate_limit(err: &FileError) -> Option<Duration> {
    match err {
        FileError::Store(StoreError::RateLimited { wait }) => Some(*wait),
        FileError::Source(SourceError::RateLimited { wait, .. }) => Some(*wait),
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
