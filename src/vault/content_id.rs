//! Keyed content ids for dedup (docs/format.md, "Content id").
//!
//! Identical content at several paths is stored once. The id that finds it is
//! keyed with a secret derived from the master key, so it is never a plain hash
//! of the plaintext: whoever sees it (in the catalog, the state file, logs)
//! cannot test it against a known file.
//!
//! ```text
//! part_mac   = BLAKE3-keyed(content_id_key, "tgferry v1 part" || part plaintext)
//! content_id = BLAKE3-keyed(content_id_key, "tgferry v1 content" || size (u64 BE)
//!                           || part_size (u64 BE) || part_mac_0 || ... || part_mac_{n-1})
//! ```
//!
//! BLAKE3-keyed is BLAKE3's `keyed_hash` mode with a 32-byte output: a PRF like
//! HMAC-SHA256, at two to four times its speed, which matters because the part MACs
//! cover every plaintext byte.
//!
//! Part MACs are computed per part, so a run that stopped after k parts keeps
//! their k MACs and resumes without reading those parts again.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use super::error::VaultError;
use super::format::{NONCE_PREFIX_LEN, ObjectParams, SALT_LEN};
use super::keys::ContentIdKey;

/// Domain-separation prefix of a part MAC.
const PART_PREFIX: &[u8] = b"tgferry v1 part";
/// Domain-separation prefix of a content id.
const CONTENT_PREFIX: &[u8] = b"tgferry v1 content";

/// Length of a part MAC and of a content id.
pub const MAC_LEN: usize = 32;

/// A keyed BLAKE3 hasher, its state (which holds the key) wiped on drop.
fn keyed(key: &ContentIdKey) -> Zeroizing<blake3::Hasher> {
    Zeroizing::new(blake3::Hasher::new_keyed(key.expose()))
}

/// Incremental keyed BLAKE3 over one part's plaintext: feed it the part in
/// chunks of any size, then [`finalize`](Self::finalize).
#[derive(Clone)]
pub struct PartMac(Zeroizing<blake3::Hasher>);

impl PartMac {
    /// Starts the MAC of one part.
    pub fn new(key: &ContentIdKey) -> Self {
        let mut mac = keyed(key);
        mac.update(PART_PREFIX);
        PartMac(mac)
    }

    /// Feeds the next bytes of the part's plaintext.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The part MAC, to keep (e.g. in the state) until the content id is made.
    pub fn finalize(self) -> [u8; MAC_LEN] {
        *self.0.finalize().as_bytes()
    }
}

impl fmt::Debug for PartMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartMac(..)")
    }
}

/// A keyed content id: equal ids mean equal content (same size, part size and
/// bytes) within one vault. Shown and parsed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; MAC_LEN]);

impl ContentId {
    /// The id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.to_hex())
    }
}

impl FromStr for ContentId {
    type Err = VaultError;

    /// Parses 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, VaultError> {
        let bad =
            || VaultError::Misuse(format!("not a content id (64 lowercase hex digits): {s:?}"));
        if s.len() != 2 * MAC_LEN || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; MAC_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(ContentId(out))
    }
}

/// The content id of an object of `size` bytes in parts of `part_size` bytes,
/// from its part MACs in order.
///
/// Errors with [`VaultError::Misuse`] if `part_size` is invalid or the number
/// of MACs is not the object's part count.
pub fn content_id(
    key: &ContentIdKey,
    size: u64,
    part_size: u64,
    part_macs: &[[u8; MAC_LEN]],
) -> Result<ContentId, VaultError> {
    // Validates part_size and size exactly as objects do.
    let params = ObjectParams::new([0; SALT_LEN], [0; NONCE_PREFIX_LEN], size, part_size)?;
    let parts = params.part_count() as usize;
    if part_macs.len() != parts {
        return Err(VaultError::Misuse(format!(
            "content id of {size} bytes in parts of {part_size} needs {parts} part MACs, got {}",
            part_macs.len()
        )));
    }
    let mut mac = keyed(key);
    mac.update(CONTENT_PREFIX);
    mac.update(&size.to_be_bytes());
    mac.update(&part_size.to_be_bytes());
    for m in part_macs {
        mac.update(m);
    }
    Ok(ContentId(*mac.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{MasterKey, SEGMENT_SIZE};

    const MIB: u64 = SEGMENT_SIZE as u64;

    fn part_mac(key: &ContentIdKey, data: &[u8]) -> [u8; 32] {
        let mut m = PartMac::new(key);
        m.update(data);
        m.finalize()
    }

    #[test]
    fn chunking_does_not_change_the_mac() {
        let key = MasterKey::from_bytes([5; 32]).content_id_key();
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = part_mac(&key, &data);
        let mut m = PartMac::new(&key);
        for c in data.chunks(13) {
            m.update(c);
        }
        assert_eq!(m.finalize(), whole);
    }

    /// Pins the primitive apart from the vectors: BLAKE3's keyed_hash over the
    /// prefixed message, whatever the chunking, and the official BLAKE3 test
    /// vector for keyed_hash (input byte i = i mod 251, key
    /// "whats the Elvish word for friend").
    #[test]
    fn macs_are_keyed_blake3_of_the_prefixed_message() {
        let key = MasterKey::from_bytes([3; 32]).content_id_key();
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let direct = blake3::keyed_hash(key.expose(), &[PART_PREFIX, &data].concat());
        assert_eq!(part_mac(&key, &data), *direct.as_bytes());
        for chunk in [1, 15, 64, 1023, 1024, 1025, 2999] {
            let mut m = PartMac::new(&key);
            for c in data.chunks(chunk) {
                m.update(c);
            }
            assert_eq!(m.finalize(), *direct.as_bytes(), "chunks of {chunk}");
        }

        let macs = [part_mac(&key, &data)];
        let msg = [
            CONTENT_PREFIX,
            &3000u64.to_be_bytes(),
            &MIB.to_be_bytes(),
            &macs[0],
        ]
        .concat();
        assert_eq!(
            content_id(&key, 3000, MIB, &macs).unwrap().0,
            *blake3::keyed_hash(key.expose(), &msg).as_bytes()
        );

        let spec_input: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            blake3::keyed_hash(b"whats the Elvish word for friend", &spec_input)
                .to_hex()
                .as_str(),
            "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"
        );
    }

    #[test]
    fn ids_depend_on_key_size_part_size_and_content() {
        let k1 = MasterKey::from_bytes([1; 32]).content_id_key();
        let k2 = MasterKey::from_bytes([2; 32]).content_id_key();
        let m = [part_mac(&k1, b"abc")];
        let base = content_id(&k1, 3, MIB, &m).unwrap();
        assert_ne!(base, content_id(&k1, 3, 2 * MIB, &m).unwrap());
        assert_ne!(
            base,
            content_id(&k2, 3, MIB, &[part_mac(&k2, b"abc")]).unwrap()
        );
        assert_ne!(
            base,
            content_id(&k1, 3, MIB, &[part_mac(&k1, b"abd")]).unwrap()
        );
        assert_eq!(
            base,
            content_id(&k1, 3, MIB, &[part_mac(&k1, b"abc")]).unwrap()
        );
    }

    #[test]
    fn wrong_number_of_macs_is_misuse() {
        let k = MasterKey::from_bytes([1; 32]).content_id_key();
        assert!(content_id(&k, MIB + 1, MIB, &[[0; 32]]).is_err());
        assert!(content_id(&k, 0, MIB, &[]).is_err());
        assert!(content_id(&k, 0, MIB, &[[0; 32]]).is_ok());
        assert!(content_id(&k, 1, 0, &[[0; 32]]).is_err());
    }

    #[test]
    fn hex_round_trip_is_strict() {
        let id = ContentId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<ContentId>().unwrap(), id);
        assert!(id.to_hex().to_uppercase().parse::<ContentId>().is_err());
        assert!("ab".parse::<ContentId>().is_err());
    }
}
