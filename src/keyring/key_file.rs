//! The vault's key file in the store (`META_KEY_FILE`): unlocked with the passphrase, or
//! created (by a first run or `tgferry init`).

use secrecy::SecretString;

use super::KeyringError;
use crate::store::{META_KEY_FILE, Store};
use crate::vault::{KdfParams, KeyFile, MasterKey};

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
