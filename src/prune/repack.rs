//! Repacking: the live objects of packs that are mostly dead are copied, byte for byte,
//! into new packs; the state (and the vault's catalog) are pointed at the copies and saved;
//! only then are the old packs deleted.
//!
//! Copying part blobs unchanged needs no key and reuses no nonce: each part keeps the salt
//! and nonce prefix it was encrypted under, and its own authentication. A kill at any step
//! loses nothing: before the state is saved, the new packs are unreferenced leftovers (the
//! next prune deletes them); after, the old packs are, once the catalog says so too.

use std::collections::HashMap;

use tokio::io::AsyncReadExt;

use super::{PackUse, packed_ranges};
use crate::state::StateFile;
use crate::store::{Store, StoreError};
use crate::vault::MasterKey;

/// What `prune --repack` should do.
#[derive(Debug, Clone, Copy)]
pub struct RepackOptions {
    /// Packs whose live share is below this (0 to 1) are repacked.
    pub below: f64,
    /// The size new packs are closed at.
    pub pack_size: u64,
    /// Say what would be repacked; write and delete nothing.
    pub dry_run: bool,
}

/// What a repack did.
#[derive(Debug, Default)]
pub struct RepackReport {
    /// The packs repacked (deleted), or in a dry run, that would be.
    pub old: Vec<PackUse>,
    /// The new packs.
    pub new: Vec<String>,
    /// Live bytes copied.
    pub copied: u64,
    /// Old packs that could not be deleted (they are unreferenced now: a later prune
    /// deletes them), with why.
    pub not_deleted: Vec<(String, StoreError)>,
}

impl RepackReport {
    /// Dead bytes the repack freed (or would free).
    pub fn freed(&self) -> u64 {
        self.old.iter().map(PackUse::dead).sum()
    }
}

/// Repacks the packs of `usage` whose live share is below `options.below`. The state is
/// saved, and with `master` the catalog too, before any old pack is deleted.
pub async fn repack<S: Store>(
    store: &S,
    state: &mut StateFile,
    master: Option<&MasterKey>,
    usage: &[PackUse],
    options: RepackOptions,
) -> Result<RepackReport, StoreError> {
    let old: Vec<PackUse> = usage
        .iter()
        .filter(|p| {
            // A pack that holds objects only the catalog knows stays as it is: this
            // state could not point them at their copies.
            !p.unknown_to_state && p.len > 0 && (p.live as f64) < options.below * p.len as f64
        })
        .cloned()
        .collect();
    let mut report = RepackReport::default();
    if options.dry_run || old.is_empty() {
        report.old = old;
        return Ok(report);
    }
    // Where each live range moves: (old pack, offset) -> (new pack, offset).
    let mut moves: HashMap<(String, u64), (String, u64)> = HashMap::new();
    let mut pending: Vec<((String, u64), u64)> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let ranges = packed_ranges(state.state())
        .into_iter()
        .map(|(loc, r)| (loc.to_owned(), r))
        .collect::<HashMap<_, _>>();
    for pack in &old {
        let mut live: Vec<(u64, u64)> = ranges
            .get(&pack.loc)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default();
        live.sort_unstable();
        for (offset, len) in live {
            if !buf.is_empty() && (buf.len() as u64).saturating_add(len) > options.pack_size {
                flush(store, &mut buf, &mut pending, &mut moves, &mut report).await?;
            }
            let mut reader = store.open_range(&pack.loc, offset, len).await?;
            let start = buf.len();
            (&mut reader)
                .take(len)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| StoreError::Transient {
                    message: format!("reading {} at {offset}: {e}", pack.loc),
                })?;
            if (buf.len() - start) as u64 != len {
                return Err(StoreError::Transient {
                    message: format!(
                        "{} ends before the object at {offset} ({len} bytes) does; run \
                         `tgferry verify --full` to see what is damaged",
                        pack.loc
                    ),
                });
            }
            pending.push(((pack.loc.clone(), offset), start as u64));
            report.copied += len;
        }
    }
    flush(store, &mut buf, &mut pending, &mut moves, &mut report).await?;
    // The copies are durable: the state points at them, then the catalog, then the old
    // packs go.
    for part in state
        .state_mut()
        .objects
        .values_mut()
        .flat_map(|o| o.parts.iter_mut())
    {
        if let Some(offset) = part.offset
            && let Some((loc, at)) = moves.get(&(part.loc.clone(), offset))
        {
            part.loc = loc.clone();
            part.offset = Some(*at);
        }
    }
    state.commit().map_err(|e| StoreError::Transient {
        message: format!("the state could not be saved: {e}"),
    })?;
    if let Some(master) = master {
        crate::keyring::save_catalog(store, master, state.state())
            .await
            .map_err(|e| StoreError::Transient {
                message: format!(
                    "the catalog could not be saved ({e}); the old packs are kept until the \
                     next run saves it"
                ),
            })?;
    }
    report.old = old;
    for pack in &report.old {
        if let Err(e) = store.remove(&pack.loc).await {
            if e.is_fatal() {
                return Err(e);
            }
            report.not_deleted.push((pack.loc.clone(), e));
        }
    }
    Ok(report)
}

/// Stores the new pack in `buf` and notes where its ranges went.
async fn flush<S: Store>(
    store: &S,
    buf: &mut Vec<u8>,
    pending: &mut Vec<((String, u64), u64)>,
    moves: &mut HashMap<(String, u64), (String, u64)>,
    report: &mut RepackReport,
) -> Result<(), StoreError> {
    if buf.is_empty() {
        return Ok(());
    }
    let loc = crate::runner::pack::write_pack(store, buf).await?;
    for (from, at) in pending.drain(..) {
        moves.insert(from, (loc.clone(), at));
    }
    buf.clear();
    report.new.push(loc);
    Ok(())
}
