//! The master key and every key derived from it (docs/format.md, "Key
//! derivation").
//!
//! The master key is 32 random bytes, wrapped in the key file and never stored
//! in clear. All working keys come from it by HKDF-SHA256 with distinct info
//! strings, so no key is ever used for two purposes. Keys live in zeroized
//! memory and their `Debug` output shows nothing.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::{VaultError, fill_random};

/// Length in bytes of the master key and of every derived key.
pub const KEY_LEN: usize = 32;

/// HKDF info string for the content-id key.
pub(crate) const INFO_CONTENT_ID: &[u8] = b"tgferry v1 content-id";
/// HKDF info string for an object key.
pub(crate) const INFO_OBJECT: &[u8] = b"tgferry v1 object";
/// HKDF info string for a catalog key.
pub(crate) const INFO_CATALOG: &[u8] = b"tgferry v1 catalog";
/// HKDF info string for the key of the state file's integrity tags.
pub(crate) const INFO_STATE: &[u8] = b"tgferry v1 state integrity";

/// The vault's 256-bit master key: the root of every other key.
///
/// Zeroized on drop; `Debug` prints nothing secret. Get one from
/// [`KeyFile::unlock`](super::KeyFile::unlock) or
/// [`KeyFile::create`](super::KeyFile::create).
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl MasterKey {
    /// Draws a fresh master key from the operating system's random generator.
    pub fn generate() -> Result<Self, VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self::from_bytes(*bytes))
    }

    /// Wraps known key bytes (test vectors, or a key just unwrapped).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut bytes = Zeroizing::new(bytes);
        MasterKey(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            *k = *bytes;
            zeroize::Zeroize::zeroize(&mut *bytes);
        }))
    }

    /// The raw key bytes, for wrapping and derivation inside the vault.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }

    /// Derives the key for keyed content ids (`info = "tgferry v1 content-id"`,
    /// no salt).
    pub fn content_id_key(&self) -> ContentIdKey {
        ContentIdKey(hkdf_sha256(None, self.expose(), INFO_CONTENT_ID))
    }

    /// Derives the key of the state file's integrity tags (`info = "tgferry v1 state
    /// integrity"`, no salt; docs/state.md, "integrity").
    pub fn state_key(&self) -> StateKey {
        StateKey(hkdf_sha256(None, self.expose(), INFO_STATE))
    }

    /// The AES-256-GCM cipher for one object, from its salt.
    pub(crate) fn object_cipher(&self, salt: &[u8; 32]) -> Aes256Gcm {
        let key = hkdf_sha256(Some(salt), self.expose(), INFO_OBJECT);
        Aes256Gcm::new(<&aes_gcm::Key<Aes256Gcm>>::from(&*key))
    }

    /// The AES-256-GCM cipher for one sealed catalog, from its salt.
    pub(crate) fn catalog_cipher(&self, salt: &[u8; 32]) -> Aes256Gcm {
        let key = hkdf_sha256(Some(salt), self.expose(), INFO_CATALOG);
        Aes256Gcm::new(<&aes_gcm::Key<Aes256Gcm>>::from(&*key))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Constant-time comparison (for tests and key checks; no early exit).
impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        let diff = self
            .expose()
            .iter()
            .zip(other.expose())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl Eq for MasterKey {}

/// The key for keyed content ids (see [`PartMac`](super::PartMac)), derived
/// from the master key. Zeroized on drop; `Debug` prints nothing secret.
pub struct ContentIdKey(Zeroizing<[u8; KEY_LEN]>);

impl ContentIdKey {
    /// The raw key bytes, for keyed BLAKE3.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for ContentIdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentIdKey([redacted])")
    }
}

/// The key of a vault state's integrity tags (keyed BLAKE3 over what identifies stored
/// bytes; see `crate::state::integrity`), derived from the master key. Zeroized on drop;
/// `Debug` prints nothing secret.
#[derive(Clone)]
pub struct StateKey(Zeroizing<[u8; KEY_LEN]>);

impl StateKey {
    /// A keyed BLAKE3 hasher under this key.
    pub fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.0)
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey([redacted])")
    }
}

/// HKDF-SHA256 (RFC 5869) with a 32-byte output. `salt = None` means the RFC's
/// default: 32 zero bytes.
fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_nothing_secret() {
        let key = MasterKey::from_bytes([0xab; 32]);
        let shown = format!("{key:?} {:?} {:?}", key.content_id_key(), key.state_key());
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_salt() {
        let key = MasterKey::from_bytes([7; 32]);
        let a = hkdf_sha256(Some(&[1; 32]), key.expose(), INFO_OBJECT);
        let b = hkdf_sha256(Some(&[2; 32]), key.expose(), INFO_OBJECT);
        let c = hkdf_sha256(Some(&[1; 32]), key.expose(), INFO_CATALOG);
        let d = hkdf_sha256(None, key.expose(), INFO_CONTENT_ID);
        let e = hkdf_sha256(None, key.expose(), INFO_STATE);
        assert_ne!(*d, *e);
        assert_ne!(*key.state_key().0, *key.content_id_key().expose());
        assert_ne!(*a, *b);
        assert_ne!(*a, *c);
        assert_ne!(*a, *d);
        assert_ne!(*key.content_id_key().expose(), *key.expose());
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        // RFC 5869 A.1, truncated to our 32-byte output.
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm = hkdf_sha256(Some(&salt), &ikm, &info);
        assert_eq!(
            hex::encode(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn master_key_eq_is_by_value() {
        assert_eq!(
            MasterKey::from_bytes([1; 32]),
            MasterKey::from_bytes([1; 32])
        );
        assert_ne!(
            MasterKey::from_bytes([1; 32]),
            MasterKey::from_bytes([2; 32])
        );
    }
}
