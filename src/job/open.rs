//! The opening steps every command shares: unlocking a store's vault, finding the catalog
//! to read (a state file or the store's sealed catalog), and opening an existing job's
//! state for editing (`prune`, `verify --repair`). `run` goes through
//! [`super::OpenJob::open`], which is built from the same steps.

use std::path::Path;

use secrecy::SecretString;

use crate::keyring;
use crate::state::{Encryption, State, StateFile};
use crate::store::{META_KEY_FILE, Store};
use crate::vault::{KeyFile, MasterKey};

use super::JobError;
use super::run_record;

/// A store's vault, unlocked.
pub struct Vault {
    /// The key file (the master key wrapped by the passphrase).
    pub key_file: KeyFile,
    /// The master key.
    pub master: MasterKey,
    /// Whether the key file was created just now.
    pub created: bool,
}

/// The passphrase: `given`, else from the environment ([`keyring::passphrase_from_env`]).
pub fn passphrase(given: Option<&SecretString>) -> Result<SecretString, JobError> {
    match given {
        Some(p) => Ok(p.clone()),
        None => Ok(keyring::passphrase_from_env()?),
    }
}

/// Unlocks the vault of `store` (named `name` in messages) with the passphrase `given`, or
/// else the one from the environment; with `create`, makes one if the store has none.
pub async fn unlock_vault<T: Store>(
    store: &T,
    name: &str,
    given: Option<&SecretString>,
    create: bool,
) -> Result<Vault, JobError> {
    let pass = passphrase(given)?;
    let (key_file, master, created) = keyring::unlock(store, name, &pass, create).await?;
    Ok(Vault {
        key_file,
        master,
        created,
    })
}

/// Unlocks the store's vault (never creating one) and checks that `state` belongs to it.
pub async fn unlock_for_state<T: Store>(
    store: &T,
    name: &str,
    state: &State,
) -> Result<MasterKey, JobError> {
    let vault = unlock_vault(store, name, None, false).await?;
    let found = vault.key_file.vault_id_hex();
    if let Some(id) = state.job.vault_id.as_ref().filter(|id| **id != found) {
        return Err(JobError::Foreign(format!(
            "the state belongs to vault {id}, but store {name} holds vault {found}; check \
             --store and --state"
        )));
    }
    Ok(vault.master)
}

/// A catalog to read (`restore`, `verify`) and, for a vault, the key to read what it
/// describes.
pub struct Catalog {
    /// The state that says what is stored where.
    pub state: State,
    /// The master key, when it was needed and the job is a vault.
    pub master: Option<MasterKey>,
}

/// The catalog from the state file at `state_path`, else from the store; the vault is
/// unlocked when `need_key`, and always when the catalog comes from the store. Nothing is
/// written.
pub async fn open_catalog<T: Store>(
    store: &T,
    name: &str,
    state_path: Option<&Path>,
    need_key: bool,
) -> Result<Catalog, JobError> {
    if let Some(path) = state_path {
        let Some((state, _)) = crate::state::read_with_journal(path)? else {
            return Err(JobError::NoState {
                path: path.to_owned(),
                hint: "check --state, or leave it out to use the catalog saved in the store".into(),
            });
        };
        let master = if state.job.encryption == Encryption::Vault && need_key {
            Some(unlock_for_state(store, name, &state).await?)
        } else {
            None
        };
        return Ok(Catalog { state, master });
    }
    if store.get_meta(META_KEY_FILE).await?.is_none() {
        return Err(JobError::NoVault(format!(
            "store {name} has no vault key file ({META_KEY_FILE}), so it has no catalog to \
             read: if it is a plain store (--encryption none), pass its state with --state \
             FILE; if it should be a vault, check --store (the key file may have been \
             deleted)"
        )));
    }
    let vault = unlock_vault(store, name, None, false).await?;
    match keyring::load_catalog(store, &vault.master).await? {
        Some(state) => Ok(Catalog {
            state,
            master: Some(vault.master),
        }),
        None => Err(JobError::NoCatalog(format!(
            "store {name} has a vault but no catalog yet (no run with it has finished); pass \
             --state FILE"
        ))),
    }
}

/// What [`open_existing`] checks and loads besides the state.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExistingOptions {
    /// Refuse a state whose job names another store (`prune`).
    pub same_store: bool,
    /// Refuse a state older than the store's run record (`prune`: it would not know all
    /// the store holds).
    pub not_older_than_store: bool,
    /// Also load the store's catalog (vault).
    pub catalog: bool,
}

/// An existing job opened for editing: its state locked, its store prepared (and so
/// locked, for a local store), its vault unlocked.
pub struct ExistingJob<T> {
    /// The state, locked.
    pub state: StateFile,
    /// The store.
    pub store: T,
    /// The master key (vault).
    pub master: Option<MasterKey>,
    /// The store's catalog, when asked for and there is one.
    pub catalog: Option<State>,
}

/// Opens the job whose state is at `state_path` on the store named `name` for editing
/// (`prune`, `verify --repair`): the state's lock first, then the store, made by
/// `make_store` for the state's format, is prepared (its lock taken, like a run), then the
/// vault is unlocked.
pub async fn open_existing<T: Store>(
    name: &str,
    state_path: &Path,
    options: ExistingOptions,
    make_store: impl FnOnce(Encryption) -> Result<T, JobError>,
) -> Result<ExistingJob<T>, JobError> {
    let Some((state, _)) = StateFile::open_existing(state_path)? else {
        return Err(JobError::NoState {
            path: state_path.to_owned(),
            hint: format!(
                "this needs the state of the job that writes to {name} (download the state \
                 artifact, or pass --state)"
            ),
        });
    };
    if options.same_store
        && !super::identity::same_place(&state.state().job.store, &super::identity::job_name(name))
    {
        return Err(JobError::Foreign(format!(
            "{} belongs to store {}, not {name}; use a store's own state",
            state_path.display(),
            state.state().job.store,
        )));
    }
    let store = make_store(state.state().job.encryption)?;
    store.prepare().await?;
    if options.not_older_than_store
        && let Some(last) = run_record::last_run(&store).await?
        && last.runs > state.state().stats.runs
    {
        return Err(JobError::Foreign(format!(
            "{} is older than store {name}: it knows {} runs, the store was last changed by \
             run {} (ended {}); use the newest state (tgferry state fetch); nothing was deleted or changed",
            state_path.display(),
            state.state().stats.runs,
            last.runs,
            last.ended
        )));
    }
    let (master, catalog) = if state.state().job.encryption == Encryption::Vault {
        let master = unlock_for_state(&store, name, state.state()).await?;
        let catalog = if options.catalog {
            keyring::load_catalog(&store, &master).await?
        } else {
            None
        };
        (Some(master), catalog)
    } else {
        (None, None)
    };
    Ok(ExistingJob {
        state,
        store,
        master,
        catalog,
    })
}

/// Creates a vault in a store that has none (`tgferry init`), with the passphrase from the
/// environment; the store is prepared (locked) first.
pub async fn init_vault<T: Store>(store: &T, name: &str) -> Result<KeyFile, JobError> {
    let pass = passphrase(None)?;
    store.prepare().await?;
    Ok(keyring::init(store, name, &pass).await?)
}

/// Resets the failure counts of `paths` (all failed files when `None`) in the state at
/// `state_path` (`tgferry retry`), so the next run tries them again; returns how many. A
/// path that is not failed is refused and nothing is changed.
pub fn reset_failures(state_path: &Path, paths: Option<&[String]>) -> Result<usize, JobError> {
    let Some((mut file, _)) = StateFile::open_existing(state_path)? else {
        return Err(JobError::NoState {
            path: state_path.to_owned(),
            hint: "check the path (`tgferry status` reads the same file)".into(),
        });
    };
    let failed = &file.state().failed;
    let targets: Vec<String> = match paths {
        None => failed.keys().cloned().collect(),
        Some(paths) => {
            let unknown: Vec<&str> = paths
                .iter()
                .filter(|p| !failed.contains_key(*p))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(JobError::Usage(format!(
                    "not failed in {}: {}; `tgferry status` lists the failed paths (nothing \
                     was changed)",
                    state_path.display(),
                    unknown.join(", ")
                )));
            }
            paths.to_vec()
        }
    };
    for path in &targets {
        file.state_mut().failed.remove(path);
    }
    file.commit()?;
    Ok(targets.len())
}
