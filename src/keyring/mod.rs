//! Opening the vault of a store, one file per thing it keeps: the passphrase from the
//! environment ([`passphrase`]), the key file kept in the store and created on first use
//! ([`key_file`]), the encrypted catalog saved there after every run so that a restore
//! needs nothing but the store and the passphrase, and the check of a state's integrity
//! tags against it ([`catalog`]), and states sealed for a public artifact ([`sealed`]).
//! The functions are re-exported here; the errors of all four are [`KeyringError`].

pub mod catalog;
pub mod key_file;
pub mod passphrase;
pub mod sealed;

pub use catalog::{check_state, load_catalog, save_catalog};
pub use key_file::{init, unlock};
pub use passphrase::passphrase_from_env;
pub use sealed::{
    SEALED_STATE_FORMAT, is_sealed_state, open_sealed_state, seal_state, sealed_path, write_sealed,
};

use crate::state::StateError;
use crate::store::{META_KEY_FILE, StoreError};
use crate::vault::VaultError;

/// The environment variable holding the passphrase.
pub const PASSPHRASE_ENV: &str = "TGFERRY_PASSPHRASE";
/// The environment variable naming a file that holds the passphrase.
pub const PASSPHRASE_FILE_ENV: &str = "TGFERRY_PASSPHRASE_FILE";

/// Errors opening a vault.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No passphrase was given.
    #[error(
        "the vault needs a passphrase: set {PASSPHRASE_ENV} (or {PASSPHRASE_FILE_ENV} to a file \
         holding it); in GitHub Actions pass it from a secret"
    )]
    NoPassphrase,
    /// The passphrase file could not be read.
    #[error("the passphrase file {path} ({PASSPHRASE_FILE_ENV}): {message}")]
    PassphraseFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store has no key file and none may be created here.
    #[error(
        "store {store} has no vault key file ({META_KEY_FILE}); run `tgferry run` or \
         `tgferry init` with this store first, or check --store"
    )]
    NoVault {
        /// The store.
        store: String,
    },
    /// `init` on a store that has a vault.
    #[error("store {store} already has a vault (key file {META_KEY_FILE}); nothing was changed")]
    Exists {
        /// The store.
        store: String,
    },
    /// Key file or catalog problems, including a wrong passphrase.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog decrypted but is not a state.
    #[error("the catalog in the store is not a valid state: {0}")]
    Catalog(String),
    /// The state failed its integrity check (or could not be saved aside while repaired).
    #[error(transparent)]
    State(#[from] StateError),
}
