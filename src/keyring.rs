//! Opening the vault of a store: the passphrase from the environment, the key file kept in
//! the store (created on first use), and the encrypted catalog saved there after every run
//! so that a restore needs nothing but the store and the passphrase. With the key at hand,
//! [`check_state`] checks a state's integrity tags, comparing what fails with the catalog.

use secrecy::SecretString;

use crate::state::integrity::IntegrityReport;
use crate::state::{State, StateError, StateFile};
use crate::store::{META_CATALOG, META_KEY_FILE, Store, StoreError};
use crate::vault::{KdfParams, KeyFile, MasterKey, VaultError, open_catalog, seal_catalog};

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
         holding it); in GitHub Actions pass it from a secret (`tgferry run --encryption \
         none` stores plain copies without one)"
    )]
    NoPassphrase,
    /// The passphrase file could not be read.
    #[error("cannot read the passphrase file {path}: {message}")]
    PassphraseFile {
        /// The file.
        path: String,
        /// The OS error.
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

/// The passphrase from `TGFERRY_PASSPHRASE` or the file named by `TGFERRY_PASSPHRASE_FILE`
/// (one trailing newline removed).
pub fn passphrase_from_env() -> Result<SecretString, KeyringError> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    if let Some(path) = std::env::var_os(PASSPHRASE_FILE_ENV) {
        let failed = |message: String| KeyringError::PassphraseFile {
            path: path.to_string_lossy().into_owned(),
            message,
        };
        // A FIFO or /dev/stdin is fine here (process substitution), but never read
        // without end: /dev/zero is refused after 64 KiB.
        let bytes = std::fs::File::open(&path)
            .and_then(|f| {
                crate::bounded::read_to_end(f, crate::bounded::MAX_PASSPHRASE_FILE_LEN, 0)
            })
            .map_err(|e| failed(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| failed("it is not UTF-8 text".into()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        return Ok(SecretString::from(text.to_owned()));
    }
    Err(KeyringError::NoPassphrase)
}

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

/// Unlocks the store's vault; with `create`, makes one if the store has none. Returns the
/// key file, the master key and whether it was created now.
pub async fn unlock<T: Store>(
    store: &T,
    store_name: &str,
    passphrase: &SecretString,
    create: bool,
) -> Result<(KeyFile, MasterKey, bool), KeyringError> {
    match store.get_meta(META_KEY_FILE).await? {
        Some(bytes) => {
            let key_file = KeyFile::from_json(&bytes)?;
            let master = key_file.unlock(passphrase)?;
            Ok((key_file, master, false))
        }
        None if create => {
            let (key_file, master) = KeyFile::create(passphrase, KdfParams::default())?;
            store.put_meta(META_KEY_FILE, &key_file.to_json()).await?;
            Ok((key_file, master, true))
        }
        None => Err(KeyringError::NoVault {
            store: store_name.to_owned(),
        }),
    }
}

/// Creates a vault in a store that has none (`tgferry init`).
pub async fn init<T: Store>(
    store: &T,
    store_name: &str,
    passphrase: &SecretString,
) -> Result<KeyFile, KeyringError> {
    if store.get_meta(META_KEY_FILE).await?.is_some() {
        return Err(KeyringError::Exists {
            store: store_name.to_owned(),
        });
    }
    let (key_file, _) = KeyFile::create(passphrase, KdfParams::default())?;
    store.put_meta(META_KEY_FILE, &key_file.to_json()).await?;
    Ok(key_file)
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

/// The `format` field of a sealed state.
pub const SEALED_STATE_FORMAT: &str = "tgferry-sealed-state";

/// A state sealed for a public artifact (`--encrypt-state`): the vault's key file (the
/// master key wrapped by the passphrase, nothing secret without it) and the state sealed
/// in the catalog format, so the passphrase alone opens it, without the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedState {
    format: String,
    version: u32,
    key_file: serde_json::Value,
    /// The sealed state, hex.
    sealed: String,
}

/// Seals `state` under the vault's master key, with the key file beside it.
pub fn seal_state(
    key_file: &KeyFile,
    master: &MasterKey,
    state: &State,
) -> Result<Vec<u8>, KeyringError> {
    let json = serde_json::to_vec(state).expect("states serialize");
    let sealed = seal_catalog(master, &json)?;
    let envelope = SealedState {
        format: SEALED_STATE_FORMAT.to_owned(),
        version: 1,
        key_file: serde_json::from_slice(&key_file.to_json()).expect("key files are JSON"),
        sealed: hex::encode(sealed),
    };
    let mut out = serde_json::to_vec_pretty(&envelope).expect("envelopes serialize");
    out.push(b'\n');
    Ok(out)
}

/// Whether `bytes` are a sealed state rather than a plain one.
pub fn is_sealed_state(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        format: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.format)
        .is_some_and(|f| f == SEALED_STATE_FORMAT)
}

/// Opens a sealed state with the passphrase.
pub fn open_sealed_state(bytes: &[u8], passphrase: &SecretString) -> Result<State, KeyringError> {
    let envelope: SealedState = serde_json::from_slice(bytes)
        .map_err(|e| KeyringError::Catalog(format!("not a sealed state: {e}")))?;
    if envelope.version != 1 {
        return Err(KeyringError::Catalog(format!(
            "sealed state version {} is newer than this tgferry reads (1); upgrade tgferry",
            envelope.version
        )));
    }
    let key_file = KeyFile::from_json(&serde_json::to_vec(&envelope.key_file).unwrap_or_default())?;
    let master = key_file.unlock(passphrase)?;
    let sealed = hex::decode(&envelope.sealed)
        .map_err(|e| KeyringError::Catalog(format!("sealed state is not hex: {e}")))?;
    let json = open_catalog(&master, &sealed)?;
    crate::state::parse_state(std::path::Path::new("sealed state"), &json)
        .map_err(|e| KeyringError::Catalog(e.to_string()))
}

/// Where a state's sealed copy goes: `<state>.sealed`.
pub fn sealed_path(state: &std::path::Path) -> std::path::PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".sealed");
    std::path::PathBuf::from(name)
}

/// Writes `bytes` to `path` through a temp file and a rename.
pub fn write_sealed(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path))
}
