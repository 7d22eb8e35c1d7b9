//! The state from the previous run's GitHub artifact (`run --state-from artifact` and
//! `tgferry state fetch`): downloaded into the state's path, opened with the passphrase
//! when it was sealed (`--encrypt-state`), and, when the artifact has expired, recovered
//! from the store's catalog if a store is given.

use std::path::Path;

use crate::github::artifacts::{self, FetchConfig, Fetched};
use crate::keyring;
use crate::store::Store;

use super::{JobError, Notice, open};

/// Where an expired artifact's state may be recovered from: a store and its name.
pub type CatalogFallback<'a, T> = Option<(&'a T, &'a str)>;

/// Fetches the state artifact into `state`; on expiry, falls back to the catalog in
/// `fallback`. Without any state and without `require`, leaves `state` absent (a first
/// run, or a run that starts from the store's catalog).
pub async fn fetch_state<T: Store>(
    cfg: &FetchConfig,
    state: &Path,
    fallback: CatalogFallback<'_, T>,
    require: bool,
    notice: &mut dyn FnMut(Notice),
) -> Result<(), JobError> {
    match artifacts::fetch(cfg).await? {
        Fetched::Found {
            artifact_id,
            run_id,
            created_at,
            journal,
        } => {
            if unseal_in_place(state)? {
                notice(Notice::SealedStateOpened);
            }
            check_fetched(cfg, state, artifact_id)?;
            notice(Notice::ArtifactFetched {
                name: cfg.name.clone(),
                artifact_id,
                run_id,
                created_at,
                journal,
                path: state.to_owned(),
            });
            Ok(())
        }
        Fetched::NoArtifact if require => Err(JobError::NoStateArtifact(format!(
            "no state artifact named {:?} on branch {} of {}, and --require was given",
            cfg.name, cfg.branch, cfg.repository
        ))),
        Fetched::NoArtifact => {
            notice(Notice::NoArtifact {
                name: cfg.name.clone(),
                branch: cfg.branch.clone(),
                repository: cfg.repository.clone(),
            });
            Ok(())
        }
        Fetched::Expired { artifact_id } => {
            notice(Notice::ArtifactExpired {
                name: cfg.name.clone(),
                artifact_id,
            });
            if let Some((store, name)) = fallback
                && from_catalog(store, name, state, notice).await?
            {
                notice(Notice::StateFromCatalog {
                    store: name.to_owned(),
                    path: state.to_owned(),
                });
                return Ok(());
            }
            if require {
                return Err(JobError::NoStateArtifact(format!(
                    "the state artifact {:?} has expired and the store has no catalog to \
                     recover it from, and --require was given",
                    cfg.name
                )));
            }
            Ok(())
        }
    }
}

/// Writes the store's catalog as the state at `path`; `false` when there is no vault, no
/// catalog or no passphrase.
async fn from_catalog<T: Store>(
    store: &T,
    name: &str,
    path: &Path,
    notice: &mut dyn FnMut(Notice),
) -> Result<bool, JobError> {
    if keyring::passphrase_from_env().is_err() {
        notice(Notice::NoPassphraseForCatalog);
        return Ok(false);
    }
    let vault = match open::unlock_vault(store, name, None, false).await {
        Ok(v) => v,
        Err(JobError::Keyring(keyring::KeyringError::NoVault { .. })) => return Ok(false),
        Err(e) => return Err(e),
    };
    let Some(catalog) = keyring::load_catalog(store, &vault.master).await? else {
        return Ok(false);
    };
    crate::state::write_atomic(path, &catalog)?;
    let _ = std::fs::remove_file(crate::state::journal::journal_path(path));
    Ok(true)
}

/// A fetched state that is sealed (`--encrypt-state`) is opened with the passphrase and
/// written plain (the runner's disk is private; only the artifact is public). `true` if it
/// was sealed.
fn unseal_in_place(state: &Path) -> Result<bool, JobError> {
    let bytes = crate::state::read_bytes(state)?.unwrap_or_default();
    if !keyring::is_sealed_state(&bytes) {
        return Ok(false);
    }
    let pass = keyring::passphrase_from_env()?;
    let plain = keyring::open_sealed_state(&bytes, &pass)?;
    crate::state::write_atomic(state, &plain)?;
    // The sealed state has its journal folded in.
    let _ = std::fs::remove_file(crate::state::journal::journal_path(state));
    Ok(true)
}

/// Checks that what the artifact held is a state this tgferry reads (with its journal); if
/// not, moves both aside so that no run starts from it, and says what it was.
fn check_fetched(cfg: &FetchConfig, state: &Path, artifact_id: u64) -> Result<(), JobError> {
    let Err(e) = crate::state::read_with_journal(state) else {
        return Ok(());
    };
    let aside = |path: &Path| {
        let mut to = path.as_os_str().to_owned();
        to.push(format!(".fetched-{artifact_id}"));
        let to = std::path::PathBuf::from(to);
        std::fs::rename(path, &to).ok().map(|()| to)
    };
    let journal = crate::state::journal::journal_path(state);
    let moved = aside(state);
    if journal.exists() {
        aside(&journal);
    }
    Err(JobError::BadArtifact(format!(
        "the state artifact {:?} (id {artifact_id}) does not hold a state this tgferry reads: \
         {e}; {}check --artifact-name, or delete the artifact so the next run starts from the \
         store's catalog",
        cfg.name,
        moved.map_or_else(String::new, |to| format!(
            "what it held was moved aside to {}; ",
            to.display()
        )),
    )))
}
