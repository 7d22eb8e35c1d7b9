//! `tgferry state fetch` and `run --state-from artifact`: the previous run's state from its
//! GitHub artifact, with the store's encrypted catalog as the fallback when it has expired.

use std::path::Path;

use super::args::{ArtifactArgs, FetchArgs, SealArgs};
use super::config;
use super::exit::{self, Exit};
use crate::github::artifacts::{self, Fetched};
use crate::keyring;

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
            unseal_in_place(state)?;
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
    let store = super::store::open(store_name, false, false)?;
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

fn keyring_exit(e: keyring::KeyringError) -> Exit {
    Exit {
        code: exit::for_keyring_error(&e),
        message: e.to_string(),
    }
}

/// A fetched state that is sealed (`--encrypt-state`) is opened with the passphrase and
/// written plain (the runner's disk is private; only the artifact is public).
fn unseal_in_place(state: &Path) -> Result<(), Exit> {
    let bytes = crate::state::read_bytes(state)
        .map_err(|e| Exit {
            code: exit::for_state_error(&e),
            message: e.to_string(),
        })?
        .unwrap_or_default();
    if !keyring::is_sealed_state(&bytes) {
        return Ok(());
    }
    let pass = keyring::passphrase_from_env().map_err(keyring_exit)?;
    let plain = keyring::open_sealed_state(&bytes, &pass).map_err(keyring_exit)?;
    crate::state::write_atomic(state, &plain).map_err(|e| Exit {
        code: exit::for_state_error(&e),
        message: e.to_string(),
    })?;
    // The sealed state has its journal folded in.
    let _ = std::fs::remove_file(crate::state::journal::journal_path(state));
    eprintln!("opened the sealed state with the passphrase");
    Ok(())
}

/// `tgferry state seal`.
pub async fn seal(a: SealArgs) -> Result<u8, Exit> {
    let Some((state, _)) = crate::state::read_with_journal(&a.state).map_err(|e| Exit {
        code: exit::for_state_error(&e),
        message: e.to_string(),
    })?
    else {
        return Err(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!("no state file at {}: nothing to seal", a.state.display()),
        });
    };
    let pass = keyring::passphrase_from_env().map_err(keyring_exit)?;
    let store = super::store::open(&a.store, false, false)?;
    let (key_file, master, _) = keyring::unlock(&store, &a.store, &pass, false)
        .await
        .map_err(keyring_exit)?;
    let out = keyring::sealed_path(&a.state);
    write_sealed_state(&out, &key_file, &master, &state)?;
    eprintln!("sealed {} into {}", a.state.display(), out.display());
    Ok(exit::OK)
}

/// Seals `state` into `out`.
pub fn write_sealed_state(
    out: &Path,
    key_file: &crate::vault::KeyFile,
    master: &crate::vault::MasterKey,
    state: &crate::state::State,
) -> Result<(), Exit> {
    let bytes = keyring::seal_state(key_file, master, state).map_err(keyring_exit)?;
    keyring::write_sealed(out, &bytes).map_err(|e| Exit {
        code: exit::STATE_UNREADABLE,
        message: format!("cannot write {}: {e}", out.display()),
    })
}

/// Reads a state for `tgferry status`: a sealed one is opened with the passphrase.
pub fn read_for_status(path: &Path) -> Result<Option<crate::state::State>, Exit> {
    let Some(head) = crate::state::read_bytes(path).map_err(|e| Exit {
        code: exit::for_state_error(&e),
        message: e.to_string(),
    })?
    else {
        return Ok(None);
    };
    if keyring::is_sealed_state(&head) {
        let pass = keyring::passphrase_from_env().map_err(keyring_exit)?;
        return keyring::open_sealed_state(&head, &pass)
            .map(Some)
            .map_err(keyring_exit);
    }
    crate::state::read_with_journal(path)
        .map(|o| o.map(|(s, _)| s))
        .map_err(|e| Exit {
            code: exit::for_state_error(&e),
            message: e.to_string(),
        })
}
