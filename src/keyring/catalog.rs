//! The encrypted catalog in the store (`META_CATALOG`): a run's state sealed under the
//! master key, saved after every run and read by restores, recoveries and the integrity
//! check of a state ([`check_state`]).

use super::KeyringError;
use crate::state::integrity::IntegrityReport;
use crate::state::{State, StateFile};
use crate::store::{META_CATALOG, Store};
use crate::vault::{MasterKey, open_catalog, seal_catalog};

/// Checks `file`'s integrity tags with the vault's key (`None`: a plain state, checked by
/// checksum). Entries that fail are compared with the store's catalog, read only then; what
/// neither vouches for is damage: with `repair` it is taken from the catalog or forgotten
/// ([`StateFile::settle_integrity`]), else the error names the files and the way out.
pub async fn check_state<T: Store>(
    store: &T,
    master: Option<&MasterKey>,
    file: &mut StateFile,
    repair: bool,
) -> Result<IntegrityReport, KeyringError> {
    let suspects = file.integrity_suspects(master);
    let catalog = match master {
        Some(master) if !suspects.is_empty() => match load_catalog(store, master).await {
            Ok(catalog) => catalog,
            Err(KeyringError::Store(e)) => return Err(KeyringError::Store(e)),
            // A catalog that does not open vouches for nothing.
            Err(e) => {
                tracing::warn!("the store's catalog cannot be compared with the state: {e}");
                None
            }
        },
        _ => None,
    };
    Ok(file.settle_integrity(master, suspects, catalog.as_ref(), repair)?)
}

/// Seals the state into the store as the catalog.
pub async fn save_catalog<T: Store>(
    store: &T,
    master: &MasterKey,
    state: &State,
) -> Result<(), KeyringError> {
    let json = serde_json::to_vec(state).expect("states serialize");
    let sealed = seal_catalog(master, &json)?;
    store.put_meta(META_CATALOG, &sealed).await?;
    Ok(())
}

/// Opens the catalog in the store; `None` if no run has saved one.
pub async fn load_catalog<T: Store>(
    store: &T,
    master: &MasterKey,
) -> Result<Option<State>, KeyringError> {
    let Some(sealed) = store.get_meta(META_CATALOG).await? else {
        return Ok(None);
    };
    let json = open_catalog(master, &sealed)?;
    crate::state::parse_state(std::path::Path::new("catalog"), &json)
        .map(Some)
        .map_err(|e| KeyringError::Catalog(e.to_string()))
}
