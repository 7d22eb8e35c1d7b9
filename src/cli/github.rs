//! `tgferry state fetch` and `run --state-from artifact`: the previous run's state from its
//! GitHub artifact, with the store's encrypted catalog as the fallback when it has expired.

use std::path::Path;

use super::args::{ArtifactArgs, FetchArgs};
use super::config;
use super::exit::{self, Exit};
use crate::github::artifacts::{self, Fetched};
use crate::keyring;
use crate::store::local::LocalStore;

/// `tgferry state fetch`.
pub async fn fetch(a: FetchArgs) -> Result<u8, Exit> {
    if a.state.exists() && !a.overwrite {
        return Err(Exit {
            code: exit::USAGE,
            message: format!(
                "{} already exists; pass --overwrite to replace it with the artifact's state",
                a.state.display()
            ),
        });
    }
    fetch_into(&a.artifact, &a.state, a.store.as_deref(), a.require).await?;
    Ok(exit::OK)
}

/// Fetches the state artifact into `state`; on expiry falls back to the catalog in
/// `store`. Without any state and without `require`, leaves `state` absent (a first run).
pub async fn fetch_into(
    a: &ArtifactArgs,
    state: &Path,
    store: Option<&str>,
    require: bool,
) -> Result<(), Exit> {
    let cfg = config::fetch_config(a, state).map_err(|e| Exit {
        code: exit::USAGE,
        message: e.0,
    })?;
    let fetched = artifacts::fetch(&cfg).await.map_err(|e| Exit {
        code: exit::for_fetch_error(&e),
        message: e.to_string(),
    })?;
    let missing = |message: String| Exit {
        code: exit::STATE_ARTIFACT_MISSING,
        message,
    };
    match fetched {
        Fetched::Found {
            artifact_id,
            run_id,
            created_at,
            journal,
        } => {
            eprintln!(
                "fetched the state from artifact {:?} (id {artifact_id}{}{}){} into {}",
                cfg.name,
                run_id.map(|r| format!(", run {r}")).unwrap_or_default(),
                created_at
                    .map(|c| format!(", made {c}"))
                    .unwrap_or_default(),
                if journal { " with its journal" } else { "" },
                state.display()
            );
            Ok(())
        }
        Fetched::NoArtifact if require => Err(missing(format!(
            "no state artifact named {:?} on branch {} of {}, and --require was given",
            cfg.name, cfg.branch, cfg.repository
        ))),
        Fetched::NoArtifact => {
            eprintln!(
                "no state artifact named {:?} on branch {} of {}: this is the first run, \
                 starting a new state",
                cfg.name, cfg.branch, cfg.repository
            );
            Ok(())
        }
        Fetched::Expired { artifact_id } => {
            eprintln!(
                "the newest state artifact {:?} (id {artifact_id}) has expired: artifacts are \
                 deleted after their retention days (raise `retention-days`, or run more often)",
                cfg.name
            );
            match store {
                Some(store) if from_catalog(store, state).await? => {
                    eprintln!(
                        "recovered the state from the encrypted catalog in {store} into {}",
                        state.display()
                    );
                    Ok(())
                }
                _ if require => Err(missing(format!(
                    "the state artifact {:?} has expired and the store has no catalog to \
                     recover it from, and --require was given",
                    cfg.name
                ))),
                _ => {
                    eprintln!(
                        "no catalog to recover from: starting a new state (files already \
                         stored will be stored again)"
                    );
                    Ok(())
                }
            }
        }
    }
}

/// Writes the store's catalog as the state; `false` when there is no vault, no catalog or
/// no passphrase.
async fn from_catalog(store_name: &str, state: &Path) -> Result<bool, Exit> {
    let Ok(pass) = keyring::passphrase_from_env() else {
        eprintln!(
            "no {} to open the store's catalog with",
            keyring::PASSPHRASE_ENV
        );
        return Ok(false);
    };
    let store = LocalStore::new(store_name);
    let keyring_err = |e: keyring::KeyringError| Exit {
        code: exit::for_keyring_error(&e),
        message: e.to_string(),
    };
    let (_, master, _) = match keyring::unlock(&store, store_name, &pass, false).await {
        Ok(v) => v,
        Err(keyring::KeyringError::NoVault { .. }) => return Ok(false),
        Err(e) => return Err(keyring_err(e)),
    };
    let Some(catalog) = keyring::load_catalog(&store, &master)
        .await
        .map_err(keyring_err)?
    else {
        return Ok(false);
    };
    crate::state::write_atomic(state, &catalog).map_err(|e| Exit {
        code: exit::for_state_error(&e),
        message: e.to_string(),
    })?;
    let _ = std::fs::remove_file(crate::state::journal::journal_path(state));
    Ok(true)
}
