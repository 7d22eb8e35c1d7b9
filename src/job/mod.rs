//! One job's life: opening it, running it, finishing it. A *job* is a source, a store, a
//! format and (vault) a vault, with the state file that records it. The command line
//! builds a [`JobSpec`] from its flags and hands it here; everything about states, locks,
//! vaults, catalogs and run records is decided in this module, in the order below.
//!
//! # Opening ([`OpenJob::open`])
//! 1. **Store and source handles** from their specs ([`AnyStore`], [`AnySource`]):
//!    the source's root checked first (a local folder looked at, an rclone remote's top
//!    level listed), so a mistyped `--source` is reported before anything is created;
//!    the store's credentials checked for shape, nothing connects to it yet.
//! 2. **Overlaps** ([`overlap`]): a local store that is its local source, or that the
//!    source lies inside, is refused before anything is written; a store inside the
//!    source is left out of the listing.
//! 3. **Where the state comes from**: the local file; if there is none and the spec says
//!    [`StateOrigin::Artifact`], the previous run's GitHub artifact is fetched into its
//!    place first ([`artifact`]).
//! 4. **The state's lock**, then the state read, checked against the job, its journal
//!    replayed (a second process stops here, before touching the store).
//! 5. **The vault** (default format): the passphrase, the store prepared (its lock taken),
//!    the key file unlocked, or created when the state has no vault yet. A state file that
//!    did not exist is replaced by the store's catalog when the store has one (unless
//!    [`JobSpec::fresh_state`]), so a lost state never stores a whole library again. The
//!    state is then bound to the vault.
//! 6. **Whether the store is behind** the state ([`run_record`]): the last run could not
//!    write its catalog and run record, so this one writes them even if it stores nothing.
//!
//! # Running ([`OpenJob::run`])
//! The [`Runner`] lists, plans and works within the budget, checkpointing every part in
//! the state's journal, and saves the state whole at the end.
//!
//! # Finishing (in this order; each write needs the one before it)
//! 1. The state saved whole (by the runner): the state file is authoritative.
//! 2. The catalog (vault): the saved state sealed into the store, when the run changed
//!    anything, the state was new or replayed, or the store was behind.
//! 3. The run record, last, so that a store whose catalog write failed still counts as
//!    behind.
//! 4. The sealed state beside the state file (`--encrypt-state`).
//!
//! `restore`, `verify`, `prune` and `state fetch` use the same opening steps ([`open`],
//! [`artifact`]) rather than copies of them.

pub mod artifact;
mod error;
pub mod identity;
pub mod open;
pub mod overlap;
pub mod run_record;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub use error::JobError;

use crate::github::artifacts::FetchConfig;
use crate::keyring;
use crate::runner::{Budget, Events, RunConfig, RunReport, Runner, VaultKeys};
use crate::source::Source;
use crate::source::any::{AnySource, SourceSpec};
use crate::state::{Encryption, Job, LoadOptions, RunRecord, StateFile};
use crate::store::any::{AnyStore, StoreOptions, StoreSpec};
use crate::store::{Store, StoreError};
use crate::telegram::grammers::GrammersApi;
use crate::vault::KeyFile;

/// Where a run's state comes from when there is no state file yet.
#[derive(Debug, Clone, Default)]
pub enum StateOrigin {
    /// Only the local file (a new state, or the store's catalog, when there is none).
    #[default]
    Local,
    /// The previous run's GitHub artifact, fetched when there is no local file.
    Artifact(FetchConfig),
}

/// Everything that identifies a job and how to open it, validated by the command line.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The source.
    pub source: SourceSpec,
    /// The store, and `--store` as typed (for messages).
    pub store: StoreSpec,
    /// `--store` as typed.
    pub store_name: String,
    /// The state file.
    pub state: PathBuf,
    /// The job identity recorded in the state (the vault id is learnt on opening).
    pub identity: Job,
    /// How to load the state.
    pub load: LoadOptions,
    /// Where the state comes from when there is no file.
    pub origin: StateOrigin,
    /// Start a new state even when the store has a catalog to start from.
    pub fresh_state: bool,
    /// Also write `<state>.sealed` (vault).
    pub encrypt_state: bool,
    /// The Telegram account has Premium.
    pub premium: bool,
    /// Telegram: connections file bytes are spread over (`None`: the default).
    pub tg_connections: Option<usize>,
    /// A `telegram:` source: how its files are named and which messages it takes.
    pub chat_options: crate::source::telegram::ChatOptions,
    /// The vault's passphrase; `None` reads it from the environment when it is needed
    /// ([`keyring::passphrase_from_env`]).
    pub passphrase: Option<SecretString>,
}

impl JobSpec {
    fn vault(&self) -> bool {
        self.identity.encryption == Encryption::Vault
    }
}

/// Something worth telling the user while a job opens or finishes (printed by the command
/// line, one line each).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A local state file exists, so the artifact was not fetched.
    LocalStateUsed {
        /// The state file.
        path: PathBuf,
    },
    /// The state artifact was downloaded.
    ArtifactFetched {
        /// The artifact's name.
        name: String,
        /// Its id.
        artifact_id: u64,
        /// The run that made it.
        run_id: Option<u64>,
        /// When.
        created_at: Option<String>,
        /// Whether a journal came with it.
        journal: bool,
        /// Where it went.
        path: PathBuf,
    },
    /// The fetched state was sealed and has been opened with the passphrase.
    SealedStateOpened,
    /// No artifact of that name: a first run.
    NoArtifact {
        /// The artifact's name.
        name: String,
        /// The branch.
        branch: String,
        /// The repository.
        repository: String,
    },
    /// The newest artifact has expired.
    ArtifactExpired {
        /// The artifact's name.
        name: String,
        /// Its id.
        artifact_id: u64,
    },
    /// No passphrase to open a store's catalog with.
    NoPassphraseForCatalog,
    /// The state was written from the store's catalog (`state fetch` after expiry).
    StateFromCatalog {
        /// The store.
        store: String,
        /// The state file written.
        path: PathBuf,
    },
    /// No state file and no catalog: a new state.
    FreshState {
        /// The state file.
        path: PathBuf,
    },
    /// No state file, so the run starts from the store's catalog.
    StartedFromCatalog {
        /// The state file.
        path: PathBuf,
        /// The store.
        store: String,
        /// Files the catalog knows as stored.
        files: usize,
        /// Runs it knows.
        runs: u64,
    },
    /// An unreadable state or journal was moved aside (`--on-corrupt-state fresh`).
    MovedAside {
        /// Where it went.
        path: PathBuf,
        /// It was the journal (the state and the journal lines before the damage stay).
        journal: bool,
    },
    /// The previous run died without saving; its journal was replayed.
    Recovered {
        /// When that run started.
        started: String,
        /// Checkpoints recovered.
        checkpoints: u64,
    },
    /// A new vault was created in the store.
    VaultCreated {
        /// Its id.
        id: String,
        /// The store.
        store: String,
    },
    /// The store lies inside the source and is left out of the listing.
    StoreInsideSource {
        /// Its path relative to the source.
        at: String,
    },
    /// The store asked to wait past the reserve before the catalog could be written.
    CatalogPostponed {
        /// How long it asked to wait.
        wait: Duration,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::time::human_duration;
        match self {
            Notice::LocalStateUsed { path } => write!(
                f,
                "{} exists: using it instead of the state artifact",
                path.display()
            ),
            Notice::ArtifactFetched {
                name,
                artifact_id,
                run_id,
                created_at,
                journal,
                path,
            } => write!(
                f,
                "fetched the state from artifact {name:?} (id {artifact_id}{}{}){} into {}",
                run_id.map(|r| format!(", run {r}")).unwrap_or_default(),
                created_at
                    .as_ref()
                    .map(|c| format!(", made {c}"))
                    .unwrap_or_default(),
                if *journal { " with its journal" } else { "" },
                path.display()
            ),
            Notice::SealedStateOpened => write!(f, "opened the sealed state with the passphrase"),
            Notice::NoArtifact {
                name,
                branch,
                repository,
            } => write!(
                f,
                "no state artifact named {name:?} on branch {branch} of {repository}: this is \
                 the first run, or the store's catalog holds the state"
            ),
            Notice::ArtifactExpired { name, artifact_id } => write!(
                f,
                "the newest state artifact {name:?} (id {artifact_id}) has expired: artifacts \
                 are deleted after their retention days (raise `retention-days`, or run more \
                 often)"
            ),
            Notice::NoPassphraseForCatalog => write!(
                f,
                "no {} to open the store's catalog with",
                keyring::PASSPHRASE_ENV
            ),
            Notice::StateFromCatalog { store, path } => write!(
                f,
                "recovered the state from the encrypted catalog in {store} into {}",
                path.display()
            ),
            Notice::FreshState { path } => {
                write!(f, "no state at {}: starting a new one", path.display())
            }
            Notice::StartedFromCatalog {
                path,
                store,
                files,
                runs,
            } => write!(
                f,
                "no state at {}: starting from the catalog in {store} ({} stored over {}), \
                 so nothing stored is stored again (--fresh-state starts a new state instead)",
                path.display(),
                crate::report::count(*files as u64, "file"),
                crate::report::count(*runs, "run")
            ),
            Notice::MovedAside {
                path,
                journal: true,
            } => write!(
                f,
                "the damaged journal was moved aside to {}; continuing from the state and the \
                 journal lines before the damage",
                path.display()
            ),
            Notice::MovedAside {
                path,
                journal: false,
            } => write!(
                f,
                "the unreadable state was moved aside to {}; starting a new one",
                path.display()
            ),
            Notice::Recovered {
                started,
                checkpoints,
            } => write!(
                f,
                "the previous run (started {started}) ended without saving; recovered {} from \
                 its journal",
                crate::report::count(*checkpoints, "checkpoint")
            ),
            Notice::VaultCreated { id, store } => write!(
                f,
                "created a new vault {id} in {store}: keep the passphrase safe, without it \
                 nothing can be restored"
            ),
            Notice::StoreInsideSource { at } => write!(
                f,
                "the store lies inside the source at {at}: it is left out of what is stored"
            ),
            Notice::CatalogPostponed { wait } => write!(
                f,
                "warning: the state was saved, but the store asks to wait {} before the \
                 catalog can be written; the next run writes it",
                human_duration(*wait)
            ),
        }
    }
}

/// How long opening a job waits for the source's check ([`AnySource::check_root`]) before
/// leaving the source to the run's listing.
const SOURCE_CHECK_LIMIT: Duration = Duration::from_secs(60);

/// How opening a job ended.
pub enum Opening<S, T> {
    /// Ready to run.
    Ready(Box<OpenJob<S, T>>),
    /// The store would not let the run start (Telegram asks to wait before signing in):
    /// recorded in the state as a `rate_limited` run with the time to come back.
    RateLimited {
        /// The run as recorded.
        run: RunRecord,
        /// How long the store asked to wait.
        wait: Duration,
    },
}

/// A job opened for a run: its state locked and loaded, its store prepared and its vault
/// unlocked (vault), nothing written to the state yet.
pub struct OpenJob<S, T> {
    source: Arc<S>,
    store: Arc<T>,
    state: StateFile,
    vault: Option<Arc<VaultKeys>>,
    sealer: Option<KeyFile>,
    /// Something in the state is new to the store (a new, replayed or adopted state).
    state_news: bool,
    store_behind: bool,
    /// A store inside the source, relative to it: left out of the listing.
    store_in_source: Option<String>,
}

/// A finished run.
pub struct Finished {
    /// The state, saved.
    pub state: StateFile,
    /// What the run did.
    pub report: RunReport,
    /// Warnings from finishing.
    pub notices: Vec<Notice>,
}

impl OpenJob<AnySource, AnyStore<GrammersApi>> {
    /// Opens the job `spec` names over its real source and store. `stop_at` bounds the
    /// store's waits while opening (a flood wait on signing in).
    pub async fn open(
        spec: &JobSpec,
        part_size: u64,
        stop_at: Option<tokio::time::Instant>,
        notice: &mut dyn FnMut(Notice),
    ) -> Result<Opening<AnySource, AnyStore<GrammersApi>>, JobError> {
        // A mistyped source is reported before anything is created (a state, a vault, a
        // store). A remote that does not answer in time is left to the run's listing.
        let source = AnySource::open(
            &spec.source,
            part_size,
            &spec.chat_options,
            spec.tg_connections,
        )
        .map_err(|e| JobError::Run(crate::runner::RunError::Source(e)))?;
        let probe_until = tokio::time::Instant::now() + SOURCE_CHECK_LIMIT;
        let probe_until = stop_at.map_or(probe_until, |at| at.min(probe_until));
        if let Ok(checked) = tokio::time::timeout_at(probe_until, source.check_root()).await {
            checked.map_err(|e| JobError::Run(crate::runner::RunError::Source(e)))?;
        }
        // Credentials are checked (no I/O yet) before the state is touched.
        let store = AnyStore::open(
            &spec.store,
            StoreOptions {
                plain: !spec.vault(),
                premium: spec.premium,
                tg_connections: spec.tg_connections,
            },
        )?;
        Self::open_with(source, Arc::new(store), spec, stop_at, notice).await
    }
}

impl<S: Source, T: Store> OpenJob<S, T> {
    /// Opens the job `spec` names over `source` and `store` (tests pass doubles; the
    /// steps are those of the module documentation).
    pub async fn open_with(
        source: S,
        store: Arc<T>,
        spec: &JobSpec,
        stop_at: Option<tokio::time::Instant>,
        notice: &mut dyn FnMut(Notice),
    ) -> Result<Opening<S, T>, JobError> {
        let store_in_source = check_overlap(spec)?;
        if let Some(at) = &store_in_source {
            notice(Notice::StoreInsideSource { at: at.clone() });
        }
        if let StateOrigin::Artifact(cfg) = &spec.origin {
            if spec.state.exists() {
                notice(Notice::LocalStateUsed {
                    path: spec.state.clone(),
                });
            } else {
                // An expired artifact leaves no file: step 5 starts from the catalog.
                artifact::fetch_state::<T>(cfg, &spec.state, None, false, notice).await?;
            }
        }
        store.set_wait_deadline(stop_at);
        let (mut state, opened) = StateFile::open(&spec.state, &spec.identity, &spec.load)?;
        if let Some(root) = spec.store.local_root()
            && !opened.fresh
            && !spec.load.force
            && !state.state().completed.is_empty()
            && !root.exists()
        {
            return Err(crate::store::any::StoreOpenError::Missing(format!(
                "store {} does not exist, but the state {} records {} stored in it: if the \
                 store moved, pass its new place as --store (with --force); if it is lost, \
                 start over with a new --state file (nothing was written)",
                root.display(),
                spec.state.display(),
                crate::report::count(state.state().completed.len() as u64, "file")
            ))
            .into());
        }
        let mut vault = None;
        let mut sealer = None;
        let mut from_catalog = false;
        if spec.vault() {
            // The passphrase is checked before the store is touched.
            open::passphrase(spec.passphrase.as_ref())?;
            let unlocked = match store.prepare().await {
                Ok(()) => {
                    Self::unlock(&*store, spec, &mut state, opened.fresh, &mut from_catalog).await
                }
                Err(e) => Err(e.into()),
            };
            let unlocked = match unlocked {
                Ok(v) => v,
                Err(JobError::Store(StoreError::RateLimited { wait }))
                | Err(JobError::Keyring(keyring::KeyringError::Store(StoreError::RateLimited {
                    wait,
                }))) => {
                    let run = crate::runner::record_rate_limited_start(&mut state, wait)?;
                    return Ok(Opening::RateLimited { run, wait });
                }
                Err(e) => return Err(e),
            };
            state.bind_vault(&unlocked.key_file.vault_id_hex())?;
            // Damage in the state must not spread into the store (docs/state.md,
            // "Integrity"): with --on-corrupt fresh it is repaired from the catalog.
            let repair = spec.load.on_corrupt == crate::state::OnCorrupt::Fresh;
            keyring::check_state(&*store, Some(&unlocked.master), &mut state, repair).await?;
            if unlocked.created {
                notice(Notice::VaultCreated {
                    id: unlocked.key_file.vault_id_hex(),
                    store: spec.store_name.clone(),
                });
            }
            if spec.encrypt_state {
                sealer = Some(unlocked.key_file.clone());
            }
            vault = Some(Arc::new(VaultKeys::new(unlocked.master)));
        }
        if from_catalog {
            notice(Notice::StartedFromCatalog {
                path: spec.state.clone(),
                store: spec.store_name.clone(),
                files: state.state().completed.len(),
                runs: state.state().stats.runs,
            });
        } else if opened.fresh {
            notice(Notice::FreshState {
                path: spec.state.clone(),
            });
        }
        if let Some(aside) = &opened.moved_aside {
            notice(Notice::MovedAside {
                path: aside.clone(),
                journal: aside.to_string_lossy().contains(".journal.corrupt."),
            });
        }
        if let Some(run) = &opened.replay.interrupted_run {
            notice(Notice::Recovered {
                started: crate::time::human_time(run.started),
                checkpoints: opened.replay.applied,
            });
        }
        let store_behind = run_record::store_is_behind(&*store, state.state().stats.runs).await;
        Ok(Opening::Ready(Box::new(OpenJob {
            source: Arc::new(source),
            store,
            state,
            vault,
            sealer,
            state_news: opened.fresh || opened.replay.applied > 0 || from_catalog,
            store_behind,
            store_in_source,
        })))
    }

    /// Step 5: the vault unlocked (or created), after the state is replaced by the store's
    /// catalog when there was no state file.
    async fn unlock(
        store: &T,
        spec: &JobSpec,
        state: &mut StateFile,
        fresh: bool,
        from_catalog: &mut bool,
    ) -> Result<open::Vault, JobError> {
        if fresh && !spec.fresh_state {
            match open::unlock_vault(store, &spec.store_name, spec.passphrase.as_ref(), false).await
            {
                Ok(vault) => {
                    if let Some(catalog) = keyring::load_catalog(store, &vault.master).await? {
                        state
                            .adopt_catalog(catalog, &spec.identity, spec.load.force)
                            .map_err(|e| match e {
                                crate::state::StateError::Foreign { found, .. } => {
                                    JobError::Foreign(format!(
                                        "no state at {}, and the catalog in {} belongs to \
                                         another job ({found}); pass --force if the source \
                                         or store really moved, or --fresh-state to start a \
                                         new state (what is stored would be stored again)",
                                        spec.state.display(),
                                        spec.store_name
                                    ))
                                }
                                other => other.into(),
                            })?;
                        *from_catalog = true;
                    }
                    return Ok(vault);
                }
                Err(JobError::Keyring(keyring::KeyringError::NoVault { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        // A state that already belongs to a vault never creates a new one: its objects
        // would be unreadable under the new key.
        let create = state.state().job.vault_id.is_none();
        open::unlock_vault(store, &spec.store_name, spec.passphrase.as_ref(), create).await
    }

    /// The state as it stands.
    pub fn state(&self) -> &StateFile {
        &self.state
    }

    /// The store.
    pub fn store(&self) -> &Arc<T> {
        &self.store
    }

    /// Runs the job and finishes it (see the module documentation for the order of the
    /// writes). `reserve` bounds the store's waits while finishing.
    pub async fn run(
        self,
        mut config: RunConfig,
        budget: Budget,
        reserve: Duration,
        events: Events,
        interrupt: CancellationToken,
    ) -> Result<Finished, JobError> {
        config.vault = self.vault.clone();
        if let Some(at) = &self.store_in_source {
            config.filter = config.filter.without_subtree(at);
        }
        let runner = Runner::new(
            self.source,
            self.store.clone(),
            config,
            budget,
            events,
            interrupt,
        );
        let (state, report) = runner.run(self.state).await.map_err(|(_, e)| e)?;
        let mut notices = Vec::new();
        // A run that stored nothing leaves the catalog as it was.
        let changed = report.run.files_completed > 0 || report.run.parts_stored > 0;
        if changed || self.state_news || self.store_behind {
            // The reserve is the time kept for saving: waits past it are not sat out.
            self.store
                .set_wait_deadline(Some(tokio::time::Instant::now() + reserve));
            match write_records(&*self.store, self.vault.as_deref(), state.state()).await {
                Ok(()) => {}
                Err(StoreError::RateLimited { wait }) => {
                    notices.push(Notice::CatalogPostponed { wait });
                }
                Err(e) => return Err(JobError::Records(e)),
            }
        }
        if let (Some(key_file), Some(keys)) = (&self.sealer, &self.vault) {
            write_sealed_state(state.path(), key_file, keys, state.state())?;
        }
        Ok(Finished {
            state,
            report,
            notices,
        })
    }
}

/// Step 2 of opening: refuses a local store that is its local source or holds it; returns
/// where a store inside the source lies, relative to it.
fn check_overlap(spec: &JobSpec) -> Result<Option<String>, JobError> {
    let (Some(source), Some(store)) = (spec.source.local_root(), spec.store.local_root()) else {
        return Ok(None);
    };
    let refuse = |how: &str| {
        Err(JobError::Usage(format!(
            "--store {} {how} --source {}: storing a folder into itself would overwrite or \
             delete its files; choose a store outside the source (nothing was written)",
            store.display(),
            source.display()
        )))
    };
    match overlap::overlap(source, store) {
        None => Ok(None),
        Some(overlap::Overlap::Same) => refuse("is the same folder as"),
        Some(overlap::Overlap::Inside) => refuse("contains"),
        Some(overlap::Overlap::Contains(at)) => Ok(Some(at)),
    }
}

/// Writes what a run leaves in the store besides its parts: the encrypted catalog (vault),
/// then the run record, last.
async fn write_records<T: Store>(
    store: &T,
    vault: Option<&VaultKeys>,
    state: &crate::state::State,
) -> Result<(), StoreError> {
    if let Some(keys) = vault {
        // The catalog makes the store restorable with the passphrase alone.
        keyring::save_catalog(store, &keys.master, state)
            .await
            .map_err(|e| match e {
                keyring::KeyringError::Store(e) => e,
                other => StoreError::Transient {
                    message: other.to_string(),
                },
            })?;
    }
    run_record::record_run(store, state).await
}

/// Writes `<state>.sealed`: `state` sealed under the vault's master key, beside its key file.
pub fn write_sealed_state(
    state_path: &std::path::Path,
    key_file: &KeyFile,
    keys: &VaultKeys,
    state: &crate::state::State,
) -> Result<(), JobError> {
    seal_into(
        &keyring::sealed_path(state_path),
        key_file,
        &keys.master,
        state,
    )
}

/// Seals `state` into the file `out`.
pub fn seal_into(
    out: &std::path::Path,
    key_file: &KeyFile,
    master: &crate::vault::MasterKey,
    state: &crate::state::State,
) -> Result<(), JobError> {
    let bytes = keyring::seal_state(key_file, master, state)?;
    keyring::write_sealed(out, &bytes).map_err(|source| JobError::File {
        action: "write",
        path: out.to_owned(),
        source,
    })
}
