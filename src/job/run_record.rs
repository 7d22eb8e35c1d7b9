//! The run record: a small blob in the store naming the newest run that changed it (the
//! state's run count after that run, and when it ended).
//!
//! Every run that changes a store writes it last, after the catalog
//! ([`super`]'s write order), so that a store whose catalog write failed still counts as
//! behind its state and gets both from the next run. `prune` and `job` read it to refuse a
//! state older than the store (plain stores have no catalog to fall back on).

use crate::state::model::State;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

/// The store's meta blob naming the newest run that changed it.
pub const META_LAST_RUN: &str = "last-run";

/// The newest run that changed a store, as recorded in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    /// The state's run count after that run (`stats.runs`).
    pub runs: u64,
    /// When it ended.
    pub ended: Timestamp,
}

/// Records in the store that the run which produced `state` changed it.
pub async fn record_run<S: Store>(store: &S, state: &State) -> Result<(), StoreError> {
    let last = LastRun {
        runs: state.stats.runs,
        ended: crate::time::now(),
    };
    let json = serde_json::to_vec(&last).expect("serializes");
    store.put_meta(META_LAST_RUN, &json).await
}

/// The newest run recorded in the store; `None` for stores no run has recorded itself in
/// (or a record that cannot be read, which only costs the check).
pub async fn last_run<S: Store>(store: &S) -> Result<Option<LastRun>, StoreError> {
    Ok(store
        .get_meta(META_LAST_RUN)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Whether the store lags behind a state that has seen `runs` runs: the last run could not
/// write its catalog and run record (or no run ever did), so the next run writes them even
/// if it stores nothing. A record that cannot be read counts as behind.
pub async fn store_is_behind<S: Store>(store: &S, runs: u64) -> bool {
    match last_run(store).await {
        Ok(Some(last)) => last.runs < runs,
        Ok(None) => runs > 0,
        Err(_) => true,
    }
}
