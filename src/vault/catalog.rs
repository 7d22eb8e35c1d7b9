//! The sealed catalog: the tool's catalog (JSON) encrypted into one
//! self-describing blob, so a restore needs only the store and the passphrase
//! (docs/format.md, "Catalog blob").
//!
//! Layout: a 52-byte header (`"TGFC" || version || salt || nonce_prefix ||
//! plaintext length`) followed by the plaintext's STREAM segments under a key
//! derived with the info string "tgferry v1 catalog". Unlike a part, a catalog
//! is read without outside knowledge, so everything needed is in the header;
//! a changed length shifts the final flag or the segment boundaries and fails
//! authentication.

use super::error::{Damage, VaultError, fill_random};
use super::format::{
    CATALOG_HEADER_LEN, CatalogHeader, NONCE_PREFIX_LEN, SALT_LEN, SEGMENT_SIZE, TAG_LEN,
    sealed_len, segment_count_for,
};
use super::keys::MasterKey;
use super::stream::SegmentCipher;

/// Encrypts the catalog `plaintext` under a fresh random salt and nonce prefix.
///
/// Errors: the system random generator failed, or the catalog is larger than
/// a format v1 blob can hold (about 4 PiB).
pub fn seal_catalog(master: &MasterKey, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    fill_random(&mut salt)?;
    fill_random(&mut nonce_prefix)?;
    seal_catalog_with(master, salt, nonce_prefix, plaintext)
}

/// [`seal_catalog`] with a given salt and nonce prefix, for test vectors.
/// Never reuse a salt: a real writer calls [`seal_catalog`].
pub fn seal_catalog_with(
    master: &MasterKey,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    seal_inner(master, salt, nonce_prefix, plaintext, SEGMENT_SIZE)
}

pub(crate) fn seal_inner(
    master: &MasterKey,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    plaintext: &[u8],
    seg: usize,
) -> Result<Vec<u8>, VaultError> {
    let too_large = || VaultError::Misuse("catalog too large for one blob".into());
    let len = plaintext.len() as u64;
    let n = segment_count_for(len, seg).ok_or_else(too_large)?;
    let stored = sealed_len(len, seg).ok_or_else(too_large)?;
    let total = usize::try_from(stored)
        .ok()
        .and_then(|s| s.checked_add(CATALOG_HEADER_LEN))
        .ok_or_else(too_large)?;
    let header = CatalogHeader {
        salt,
        nonce_prefix,
        plaintext_len: len,
    };
    let cipher = SegmentCipher::new(master.catalog_cipher(&salt), &nonce_prefix);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&header.to_bytes());
    for i in 0..n {
        let start = i as usize * seg;
        let chunk = &plaintext[start..(start + seg).min(plaintext.len())];
        let at = out.len();
        out.extend_from_slice(chunk);
        out.resize(at + chunk.len() + TAG_LEN, 0);
        cipher.seal_in_place(i, i + 1 == n, &mut out[at..]);
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// Decrypts a sealed catalog and returns its plaintext.
///
/// Errors: [`VaultError::UnsupportedVersion`] for a catalog from a newer
/// format; [`VaultError::Damaged`] for bad magic, truncation, trailing bytes
/// or any segment that fails authentication (including a wrong master key).
pub fn open_catalog(master: &MasterKey, blob: &[u8]) -> Result<Vec<u8>, VaultError> {
    open_inner(master, blob, SEGMENT_SIZE)
}

pub(crate) fn open_inner(
    master: &MasterKey,
    blob: &[u8],
    seg: usize,
) -> Result<Vec<u8>, VaultError> {
    let damaged = |reason| VaultError::Damaged {
        what: "catalog",
        reason,
    };
    let header = CatalogHeader::parse(blob)?;
    let len = header.plaintext_len;
    // A length no blob can have is as wrong as a truncated blob.
    let expected = sealed_len(len, seg)
        .and_then(|s| s.checked_add(CATALOG_HEADER_LEN as u64))
        .unwrap_or(u64::MAX);
    let found = blob.len() as u64;
    if found < expected {
        return Err(damaged(Damage::Truncated { expected, found }));
    }
    if found > expected {
        return Err(damaged(Damage::TrailingData));
    }
    let n = segment_count_for(len, seg).expect("expected length is finite");
    let cipher = SegmentCipher::new(master.catalog_cipher(&header.salt), &header.nonce_prefix);
    let mut out = Vec::with_capacity(len as usize);
    let mut buf = vec![0u8; seg.min(len as usize) + TAG_LEN];
    let mut rest = &blob[CATALOG_HEADER_LEN..];
    for i in 0..n {
        let pt_len = if i + 1 < n {
            seg
        } else {
            (len - u64::from(i) * seg as u64) as usize
        };
        let (segment, tail) = rest.split_at(pt_len + TAG_LEN);
        let buf = &mut buf[..pt_len + TAG_LEN];
        buf.copy_from_slice(segment);
        cipher
            .open_in_place(i, i + 1 == n, buf)
            .map_err(|()| damaged(Damage::AuthFailed { segment: i }))?;
        out.extend_from_slice(&buf[..pt_len]);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes([9; 32])
    }

    #[test]
    fn round_trips_across_segment_boundaries() {
        let seg = 16;
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 100] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let blob = seal_inner(&key(), [1; 32], [2; 7], &pt, seg).unwrap();
            assert_eq!(blob.len() as u64, 52 + sealed_len(len as u64, seg).unwrap());
            assert_eq!(open_inner(&key(), &blob, seg).unwrap(), pt, "len {len}");
        }
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_detected() {
        let seg = 16;
        let pt = b"{\"objects\":[1,2,3],\"name\":\"x\"}".to_vec();
        let blob = seal_inner(&key(), [1; 32], [2; 7], &pt, seg).unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x40;
            assert!(open_inner(&key(), &bad, seg).is_err(), "flip at {i}");
        }
        for cut in 0..blob.len() {
            assert!(
                open_inner(&key(), &blob[..cut], seg).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = blob.clone();
        long.push(0);
        assert!(matches!(
            open_inner(&key(), &long, seg),
            Err(VaultError::Damaged {
                reason: Damage::TrailingData,
                ..
            })
        ));
    }

    #[test]
    fn a_shorter_declared_length_fails_authentication() {
        // Drop the final segment and claim the shorter length: the new last
        // segment was sealed without the final flag.
        let seg = 16;
        let pt = [7u8; 40];
        let blob = seal_inner(&key(), [1; 32], [2; 7], &pt, seg).unwrap();
        let mut cut = blob[..52 + 2 * (16 + 16)].to_vec();
        cut[44..52].copy_from_slice(&32u64.to_be_bytes());
        assert!(matches!(
            open_inner(&key(), &cut, seg),
            Err(VaultError::Damaged {
                reason: Damage::AuthFailed { segment: 1 },
                ..
            })
        ));
    }

    #[test]
    fn huge_declared_length_is_truncation_not_allocation() {
        let blob = seal_catalog(&key(), b"{}").unwrap();
        let mut bad = blob.clone();
        bad[44..52].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            open_catalog(&key(), &bad),
            Err(VaultError::Damaged {
                reason: Damage::Truncated { .. },
                ..
            })
        ));
    }

    #[test]
    fn wrong_key_fails_and_version_is_checked() {
        let blob = seal_catalog(&key(), b"{}").unwrap();
        assert!(matches!(
            open_catalog(&MasterKey::from_bytes([8; 32]), &blob),
            Err(VaultError::Damaged {
                reason: Damage::AuthFailed { segment: 0 },
                ..
            })
        ));
        let mut v2 = blob.clone();
        v2[4] = 2;
        assert!(matches!(
            open_catalog(&key(), &v2),
            Err(VaultError::UnsupportedVersion {
                what: "catalog",
                found: 2,
                ..
            })
        ));
    }
}
