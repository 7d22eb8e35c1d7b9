//! The vault: tgferry's encryption format, version 1. The spec is
//! `docs/format.md`; this module is its implementation and quotes it.
//!
//! What it owns: the passphrase-wrapped key file, the master key and the keys
//! derived from it, the streaming encryption of objects into parts, keyed
//! content ids for dedup, and the sealed catalog. What it does not: reading
//! sources, talking to stores, the state file. Everything here is pure
//! computation on bytes; no I/O, no clocks.
//!
//! Which API for which case:
//! - Create or open a vault: [`KeyFile::create`], [`KeyFile::from_json`] then
//!   [`KeyFile::unlock`] → [`MasterKey`].
//! - Store an object: [`ObjectParams::new_random`] (keep it in the catalog),
//!   then per part a [`PartEncryptor`] fed one segment at a time (constant
//!   memory), or [`ObjectCipher::encrypt_segment_at`] from several threads,
//!   or [`encrypt_part`] for a part in memory.
//! - Read a part back: [`PartDecryptor`] fed chunks as they arrive, or
//!   [`decrypt_part`]. Both check the part against the catalog's
//!   [`ObjectParams`] and part index.
//! - Dedup: [`PartMac`] per part while reading, then [`content_id`].
//! - The catalog: [`seal_catalog`] / [`open_catalog`].
//! - The state file's integrity tags: [`MasterKey::state_key`] → [`StateKey`].
//!
//! ```
//! use secrecy::SecretString;
//! use tgferry::vault::*;
//!
//! # fn main() -> Result<(), VaultError> {
//! let pass = SecretString::from("correct horse battery staple");
//! let cheap = KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }; // tests only
//! let (key_file, master) = KeyFile::create(&pass, cheap)?;
//! let master_again = KeyFile::from_json(&key_file.to_json())?.unlock(&pass)?;
//! assert_eq!(master, master_again);
//!
//! let data = b"hello, vault";
//! let params = ObjectParams::new_random(data.len() as u64, 512 * SEGMENT_SIZE as u64)?;
//! let blob = encrypt_part(&master, &params, 0, data)?;
//! assert_eq!(decrypt_part(&master, &params, 0, &blob)?, data);
//! # Ok(()) }
//! ```

mod catalog;
mod content_id;
mod error;
mod format;
mod keyfile;
mod keys;
mod stream;

pub use catalog::{open_catalog, seal_catalog, seal_catalog_with};
pub use content_id::{ContentId, MAC_LEN, PartMac, content_id};
pub use error::{Damage, VaultError};
pub use format::{
    CATALOG_HEADER_LEN, CATALOG_MAGIC, CATALOG_VERSION, MAX_SEGMENTS, NONCE_PREFIX_LEN,
    ObjectParams, PART_HEADER_LEN, PART_MAGIC, PART_VERSION, PartHeader, SALT_LEN, SEGMENT_SIZE,
    TAG_LEN,
};
pub use keyfile::{
    KDF_SALT_LEN, KEYFILE_FORMAT, KEYFILE_VERSION, KdfParams, KeyFile, MAX_KEY_FILE_LEN,
    VAULT_ID_LEN, WRAP_NONCE_LEN, WRAPPED_KEY_LEN,
};
pub use keys::{ContentIdKey, KEY_LEN, MasterKey, StateKey};
pub use stream::{
    DecryptStep, ObjectCipher, PartDecryptor, PartEncryptor, decrypt_part, encrypt_part,
};

/// Parses exactly `N` bytes of hex (salts, nonce prefixes, MACs as the catalog keeps them).
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
