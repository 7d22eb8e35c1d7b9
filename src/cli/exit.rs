//! Exit codes: one constant per outcome, documented in the README, and one exhaustive
//! mapping from errors to codes. An exit code not listed here is a failure.

use crate::runner::RunError;
use crate::state::StateError;

/// Everything stored, or the run stopped on its budget or a rate limit (state saved).
pub const OK: u8 = 0;
/// An unexpected internal error.
pub const INTERNAL: u8 = 1;
/// Bad command line: a flag's value, a missing argument.
pub const USAGE: u8 = 2;
/// The run finished (state saved) but some files failed in it.
pub const FILES_FAILED: u8 = 3;
/// The state file cannot be read or parsed (left untouched).
pub const STATE_UNREADABLE: u8 = 4;
/// The state file was written by a newer tgferry.
pub const STATE_TOO_NEW: u8 = 5;
/// The state file belongs to another source, store, format or vault.
pub const STATE_FOREIGN: u8 = 6;
/// Another process holds the state's (or the store's) lock.
pub const STATE_LOCKED: u8 = 7;
/// The source is missing or unusable.
pub const SOURCE_UNAVAILABLE: u8 = 8;
/// The store is full or cannot be written (state saved).
pub const STORE_UNAVAILABLE: u8 = 9;
/// No passphrase, a wrong one, a store without a vault, or (`init`) a store that has one
/// already (nothing was written).
pub const PASSPHRASE: u8 = 10;
/// `state fetch --require`: no state artifact (none, or all expired with no catalog).
pub const STATE_ARTIFACT_MISSING: u8 = 11;
/// The GitHub API failed after retries (or refused: token, permissions, repository).
pub const GITHUB_API: u8 = 12;
/// The store refused access (Telegram credentials refused, chat not found, no admin
/// rights), or its credentials are missing or malformed (`TGFERRY_TG_*`).
pub const STORE_DENIED: u8 = 13;
/// The state's record of what is stored fails its integrity check (damaged or altered);
/// nothing was stored and the state and the store's catalog were left as they were.
pub const STATE_DAMAGED: u8 = 14;
/// Stopped by SIGINT or SIGTERM (state saved).
pub const INTERRUPTED: u8 = 130;

/// A command's failure: the code and the message to print.
#[derive(Debug)]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// The message, naming the thing and the fix.
    pub message: String,
}

/// The exit code for a state error.
pub fn for_state_error(e: &StateError) -> u8 {
    match e {
        StateError::Io { .. } | StateError::Corrupt { .. } | StateError::JournalCorrupt { .. } => {
            STATE_UNREADABLE
        }
        StateError::Damaged { .. } => STATE_DAMAGED,
        StateError::Newer { .. } => STATE_TOO_NEW,
        StateError::Foreign { .. } => STATE_FOREIGN,
        StateError::Locked { .. } => STATE_LOCKED,
    }
}

/// The exit code for an error that ended a run.
pub fn for_run_error(e: &RunError) -> u8 {
    match e {
        RunError::Source(_) => SOURCE_UNAVAILABLE,
        RunError::Store(e) => for_store_error(e),
        RunError::State(e) => for_state_error(e),
    }
}

/// The exit code for a state-artifact error.
pub fn for_fetch_error(e: &crate::github::artifacts::FetchError) -> u8 {
    use crate::github::artifacts::FetchError as F;
    match e {
        F::Config(_) => USAGE,
        F::Api { .. } | F::Network { .. } | F::RateLimited { .. } => GITHUB_API,
        F::BadArtifact { .. } | F::Io { .. } => STATE_UNREADABLE,
    }
}

/// The exit code for a vault-opening error.
pub fn for_keyring_error(e: &crate::keyring::KeyringError) -> u8 {
    use crate::keyring::KeyringError as K;
    match e {
        K::NoPassphrase | K::PassphraseFile { .. } | K::NoVault { .. } | K::Exists { .. } => {
            PASSPHRASE
        }
        K::Vault(crate::vault::VaultError::WrongPassphrase) => PASSPHRASE,
        K::Vault(_) | K::Catalog(_) => STATE_UNREADABLE,
        K::Store(e) => for_store_error(e),
        K::State(e) => for_state_error(e),
    }
}

/// The exit code for a store error that ends a command.
pub fn for_store_error(e: &crate::store::StoreError) -> u8 {
    use crate::store::StoreError as S;
    match e {
        S::Locked { .. } => STATE_LOCKED,
        S::Denied { .. } => STORE_DENIED,
        _ => STORE_UNAVAILABLE,
    }
}

/// The exit code for an error of a job's life.
pub fn for_job_error(e: &crate::job::JobError) -> u8 {
    use crate::job::JobError as J;
    use crate::store::any::StoreOpenError as O;
    match e {
        J::Usage(_) | J::StoreOpen(O::Spec(_)) => USAGE,
        // A store without a vault, read without --state (a plain store needs its state):
        // README's code for a store without a vault.
        J::NoVault(_) => PASSPHRASE,
        J::StoreOpen(O::Credentials(_)) => STORE_DENIED,
        J::StoreOpen(O::Missing(_)) => STORE_UNAVAILABLE,
        J::State(e) => for_state_error(e),
        J::Keyring(e) => for_keyring_error(e),
        J::Store(e) | J::Records(e) => for_store_error(e),
        J::Run(e) => for_run_error(e),
        J::Fetch(e) => for_fetch_error(e),
        J::NoState { .. } | J::File { .. } | J::NoCatalog(_) | J::BadArtifact(_) => {
            STATE_UNREADABLE
        }
        J::NoStateArtifact(_) => STATE_ARTIFACT_MISSING,
        J::Foreign(_) => STATE_FOREIGN,
    }
}

impl From<crate::job::JobError> for Exit {
    fn from(e: crate::job::JobError) -> Self {
        Exit {
            code: for_job_error(&e),
            message: e.to_string(),
        }
    }
}
