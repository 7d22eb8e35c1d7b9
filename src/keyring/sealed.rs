//! States sealed for a public artifact (`--encrypt-state`): the state in the catalog's
//! format with the vault's key file beside it, so the passphrase alone opens it.

use secrecy::SecretString;

use super::KeyringError;
use crate::state::State;
use crate::vault::{KeyFile, MasterKey, open_catalog, seal_catalog};

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
