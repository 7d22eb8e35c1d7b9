//! [`JobError`]: why a job could not be opened, run or finished. Each variant carries what
//! the message needs to name the thing and the fix; the command line maps every variant to
//! an exit code in one exhaustive function (`cli::exit::for_job_error`).

use std::path::PathBuf;

use crate::github::artifacts::FetchError;
use crate::keyring::KeyringError;
use crate::runner::RunError;
use crate::state::StateError;
use crate::store::StoreError;
use crate::store::any::StoreOpenError;

/// Errors of a job's life.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Settings that cannot work together (checked before anything is touched).
    #[error("{0}")]
    Usage(String),
    /// The store named by `--store` cannot be opened (malformed, credentials, missing).
    #[error(transparent)]
    StoreOpen(#[from] StoreOpenError),
    /// The state file cannot be opened, read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The vault cannot be opened (passphrase, key file, catalog).
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run could not start (source or store unusable) or could not save its state.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The state artifact could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// There is no state file where one is needed.
    #[error("no state file at {}; {hint}", path.display())]
    NoState {
        /// The file.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
    /// The state artifact holds no state this tgferry reads.
    #[error("{0}")]
    BadArtifact(String),
    /// `--require` and no state anywhere (artifact, catalog).
    #[error("{0}")]
    NoStateArtifact(String),
    /// A state (or catalog) of another job, vault or time: using it would lose track of
    /// what is stored.
    #[error("{0}")]
    Foreign(String),
    /// The store has no vault where one is needed.
    #[error("{0}")]
    NoVault(String),
    /// The store has a vault but no catalog yet.
    #[error("{0}")]
    NoCatalog(String),
    /// The run's state was saved, but the store's catalog or run record was not written.
    #[error("the state was saved, but the store's catalog could not be written: {0}")]
    Records(StoreError),
    /// A file beside the state (a fetched or sealed state) could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
