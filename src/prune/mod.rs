//! Prune: deleting from a store what nothing needs any more.
//!
//! Two kinds of leftovers accumulate: parts of uploads abandoned mid-file (a file that
//! changed or vanished for good while a run had stored some of its parts), and parts
//! nothing refers to (a run killed between sending a part and checkpointing it, parts
//! dropped by `verify --repair`). Prune deletes both, but only when they are older than
//! `--older-than` (7 days by default): a run elsewhere (CI, while prune runs on a laptop
//! with a downloaded state) may be storing parts that no saved state knows yet. What is
//! "referenced" is the union of the state and the store's own catalog (the newest run's
//! state), so a stale state file cannot make prune delete what a newer run stored; and
//! the store's run record ([`crate::job::run_record`]) lets the job refuse a state older
//! than the store before prune starts (plain stores have no catalog to fall back on).
//!
//! A vault pack (docs/format.md, "Packs") is a part like any other here: deleted when no
//! object uses it. Ranges of a used pack that no object uses (an object dropped by
//! `verify --repair`, a run killed between storing a pack and recording all of it) are
//! reported as dead bytes ([`PackUse`]); [`repack()`] copies the live objects of packs that
//! are mostly dead into new packs, then deletes the old ones.

pub mod repack;

pub use repack::{RepackOptions, RepackReport, repack};

use std::collections::HashSet;
use std::time::Duration;

use crate::state::StateFile;
use crate::state::model::State;
use crate::store::{PartInfo, Store, StoreError};
use crate::time::Timestamp;

/// What prune should do.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Only leftovers older than this are deleted.
    pub older_than: Duration,
    /// List what would be deleted, delete nothing, leave the state alone.
    pub dry_run: bool,
    /// The current time.
    pub now: Timestamp,
}

/// An abandoned upload: a file's unfinished parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// The file.
    pub path: String,
    /// When its upload started.
    pub started: Timestamp,
    /// Its parts' locations (those no completed file shares).
    pub locs: Vec<String>,
}

/// What prune found and did.
#[derive(Debug, Default)]
pub struct PruneReport {
    /// Abandoned uploads dropped from the state (their parts deleted).
    pub abandoned: Vec<Abandoned>,
    /// Unreferenced parts deleted (or, in a dry run, to delete).
    pub unreferenced: Vec<PartInfo>,
    /// Unreferenced parts kept because they are younger than `older_than`.
    pub too_recent: usize,
    /// Parts that could not be deleted, with the error.
    pub failed: Vec<(String, StoreError)>,
    /// Parts this account may not delete (a Telegram bot and messages older than 48
    /// hours), with who can: reported, not a failure.
    pub undeletable: Vec<(String, String)>,
    /// Bytes freed (or, in a dry run, that would be).
    pub bytes: u64,
    /// The vault packs objects still use, with how much of each they use.
    pub packs: Vec<PackUse>,
}

/// A pack that objects use, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUse {
    /// Its location.
    pub loc: String,
    /// Its stored length.
    pub len: u64,
    /// The bytes of it that objects use (the rest is dead).
    pub live: u64,
    /// The objects' ranges in it that only the store's catalog knows (the state does
    /// not): such a pack is never repacked from this state.
    pub unknown_to_state: bool,
}

impl PackUse {
    /// Bytes no object uses.
    pub fn dead(&self) -> u64 {
        self.len.saturating_sub(self.live)
    }
}

/// The packed ranges `(offset, len)` objects use, by pack location.
pub(crate) fn packed_ranges(
    state: &State,
) -> std::collections::BTreeMap<&str, HashSet<(u64, u64)>> {
    let mut ranges: std::collections::BTreeMap<&str, HashSet<(u64, u64)>> = Default::default();
    for part in state.objects.values().flat_map(|o| &o.parts) {
        if let Some(offset) = part.offset {
            ranges
                .entry(part.loc.as_str())
                .or_default()
                .insert((offset, part.len));
        }
    }
    ranges
}

/// How much of each pack the state and the catalog use, given the store's listing.
fn pack_use(state: &State, catalog: Option<&State>, listed: &[PartInfo]) -> Vec<PackUse> {
    let mine = packed_ranges(state);
    let theirs = catalog.map(packed_ranges).unwrap_or_default();
    let lens: std::collections::HashMap<&str, u64> =
        listed.iter().map(|p| (p.loc.as_str(), p.len)).collect();
    let mut locs: Vec<&str> = mine.keys().chain(theirs.keys()).copied().collect();
    locs.sort_unstable();
    locs.dedup();
    locs.into_iter()
        .filter_map(|loc| {
            let len = *lens.get(loc)?;
            let empty = HashSet::new();
            let (a, b) = (
                mine.get(loc).unwrap_or(&empty),
                theirs.get(loc).unwrap_or(&empty),
            );
            let live = a.union(b).map(|(_, l)| l).sum();
            Some(PackUse {
                loc: loc.to_owned(),
                len,
                live,
                unknown_to_state: !b.is_subset(a),
            })
        })
        .collect()
}

/// Deletes abandoned uploads and unreferenced parts older than `options.older_than`.
///
/// `catalog` is the store's newest catalog, if it has one; whatever it refers to is kept.
/// The state is saved (committed) when abandoned uploads were dropped from it.
pub async fn prune<S: Store>(
    store: &S,
    state: &mut StateFile,
    catalog: Option<&State>,
    options: &PruneOptions,
) -> Result<PruneReport, StoreError> {
    let cutoff = options.now.as_second() - options.older_than.as_secs() as i64;
    let mut report = PruneReport::default();

    // Abandoned uploads: the state's own drafts, dropped from the state once their parts
    // are gone (a part whose delete failed keeps its draft for the next prune).
    let mut keep: HashSet<String> = HashSet::new();
    {
        let st = state.state();
        let in_use: HashSet<&str> = st
            .completed
            .values()
            .flat_map(|c| &c.parts)
            .chain(st.objects.values().flat_map(|o| &o.parts))
            .map(|p| p.loc.as_str())
            .chain(catalog.into_iter().flat_map(completed_locs))
            .collect();
        for (path, ip) in &st.in_progress {
            if ip.started.as_second() > cutoff {
                keep.extend(ip.parts.iter().map(|p| p.loc.clone()));
                continue;
            }
            let own: Vec<_> = ip
                .parts
                .iter()
                .filter(|p| !in_use.contains(p.loc.as_str()))
                .collect();
            report.bytes += own.iter().map(|p| p.len).sum::<u64>();
            report.abandoned.push(Abandoned {
                path: path.clone(),
                started: ip.started,
                locs: own.into_iter().map(|p| p.loc.clone()).collect(),
            });
        }
    }
    let mut dropped = Vec::new();
    for a in &report.abandoned {
        let mut ok = true;
        if !options.dry_run {
            for loc in &a.locs {
                if let Err(e) = store.remove(loc).await {
                    if let StoreError::Undeletable { reason, .. } = e {
                        // Nothing more to do from here: the draft goes, the report says
                        // who can delete the part.
                        report.undeletable.push((loc.clone(), reason));
                        continue;
                    }
                    if e.is_fatal() {
                        return Err(e);
                    }
                    report.failed.push((loc.clone(), e));
                    ok = false;
                }
            }
        }
        if ok {
            dropped.push(a.path.clone());
        }
    }
    if !options.dry_run && !dropped.is_empty() {
        let st = state.state_mut();
        for path in &dropped {
            st.in_progress.remove(path);
        }
        state.commit().map_err(|e| StoreError::Transient {
            message: format!("the state could not be saved: {e}"),
        })?;
    }

    // Unreferenced parts.
    let mut referenced: HashSet<String> = state
        .state()
        .referenced_locs()
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(c) = catalog {
        referenced.extend(c.referenced_locs().into_iter().map(str::to_owned));
    }
    referenced.extend(keep);
    // A bot cannot read a chat's history: Telegram stores scan message ids up to the
    // highest one the state knows.
    let hint = referenced
        .iter()
        .filter_map(|l| l.strip_prefix("msg:")?.parse::<i32>().ok())
        .max()
        .map(|id| format!("msg:{id}"));
    let dropped_locs: HashSet<&String> = report.abandoned.iter().flat_map(|a| &a.locs).collect();
    let listed = store.list_parts(hint.as_deref()).await?;
    report.packs = pack_use(state.state(), catalog, &listed);
    for part in listed {
        if referenced.contains(&part.loc) || dropped_locs.contains(&part.loc) {
            continue;
        }
        if part.stored.is_some_and(|t| t > cutoff) {
            report.too_recent += 1;
            continue;
        }
        if !options.dry_run
            && let Err(e) = store.remove(&part.loc).await
        {
            if let StoreError::Undeletable { reason, .. } = e {
                report.undeletable.push((part.loc.clone(), reason));
                continue;
            }
            if e.is_fatal() {
                return Err(e);
            }
            report.failed.push((part.loc.clone(), e));
            continue;
        }
        report.bytes += part.len;
        report.unreferenced.push(part);
    }
    Ok(report)
}

/// Locations of completed files and objects in a state (not its drafts).
fn completed_locs(state: &State) -> impl Iterator<Item = &str> {
    state
        .completed
        .values()
        .flat_map(|c| &c.parts)
        .chain(state.objects.values().flat_map(|o| &o.parts))
        .map(|p| p.loc.as_str())
}
