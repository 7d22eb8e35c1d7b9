//! The on-store byte layouts and the arithmetic of segments and parts
//! (docs/format.md, "Objects, segments and parts", "Part blob", "Catalog blob").
//!
//! This module owns the constants that can never change for format v1
//! (magic bytes, version numbers, header widths, [`SEGMENT_SIZE`]), the
//! fixed-width headers ([`PartHeader`], the catalog header) with their
//! encoding and parsing, and [`ObjectParams`], which answers every "how many /
//! where / how long" question about an object's segments and parts. No
//! cryptography happens here.
//!
//! A pack (docs/format.md, "Packs") has no layout of its own to own here: it is
//! part blobs back to back, and a packed part is the byte range the catalog
//! records, read as part 0 of its one-part object.

use std::ops::Range;

use super::error::{Damage, VaultError, fill_random};

/// Plaintext bytes per segment: 1 MiB. Every segment but an object's last is
/// exactly this long. Part of format v1; never changes.
pub const SEGMENT_SIZE: usize = 1 << 20;

/// AES-GCM tag length: each stored segment is this much longer than its
/// plaintext.
pub const TAG_LEN: usize = 16;

/// Length of an object salt and of a catalog salt.
pub const SALT_LEN: usize = 32;

/// Length of a STREAM nonce prefix (12-byte AES-GCM nonce minus a 4-byte
/// counter and a 1-byte last-segment flag).
pub const NONCE_PREFIX_LEN: usize = 7;

/// Magic bytes opening every part blob.
pub const PART_MAGIC: [u8; 4] = *b"TGFP";

/// The part blob format version this build writes and reads.
pub const PART_VERSION: u8 = 1;

/// Length of the part header: `magic(4) || version(1) || object_salt(32) ||
/// nonce_prefix(7) || first_segment(4, u32 BE)`.
pub const PART_HEADER_LEN: usize = 48;

/// Magic bytes opening a sealed catalog.
pub const CATALOG_MAGIC: [u8; 4] = *b"TGFC";

/// The catalog blob format version this build writes and reads.
pub const CATALOG_VERSION: u8 = 1;

/// Length of the catalog header: `magic(4) || version(1) || salt(32) ||
/// nonce_prefix(7) || plaintext_len(8, u64 BE)`.
pub const CATALOG_HEADER_LEN: usize = 52;

/// Most segments one object (or catalog) may have: 2^32 - 1, so that segment
/// indices (0 to 2^32 - 2) and counts both fit the 32-bit STREAM counter.
/// Objects are thus limited to (2^32 - 1) MiB, about 4 PiB.
pub const MAX_SEGMENTS: u32 = u32::MAX;

/// Number of segments a plaintext of `len` bytes is cut into:
/// `max(1, ceil(len / seg))`. `None` past [`MAX_SEGMENTS`].
pub(crate) fn segment_count_for(len: u64, seg: usize) -> Option<u32> {
    u32::try_from(len.div_ceil(seg as u64).max(1)).ok()
}

/// Stored length of `len` plaintext bytes cut into segments of `seg` bytes:
/// `len + TAG_LEN * segments` (no header).
pub(crate) fn sealed_len(len: u64, seg: usize) -> Option<u64> {
    let n = segment_count_for(len, seg)?;
    len.checked_add(u64::from(n) * TAG_LEN as u64)
}

/// The header opening every part blob (48 bytes, see [`PART_HEADER_LEN`]).
///
/// It says which object the part belongs to (salt and nonce prefix) and where
/// the part starts in it (first segment index). A reader compares it with what
/// its catalog expects before decrypting anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    /// The object's salt, from which its key is derived.
    pub object_salt: [u8; SALT_LEN],
    /// The object's STREAM nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// Index in the object of the part's first segment.
    pub first_segment: u32,
}

impl PartHeader {
    /// Encodes the header: `"TGFP" || 0x01 || object_salt || nonce_prefix ||
    /// first_segment (u32 BE)`.
    pub fn to_bytes(&self) -> [u8; PART_HEADER_LEN] {
        let mut out = [0u8; PART_HEADER_LEN];
        out[0..4].copy_from_slice(&PART_MAGIC);
        out[4] = PART_VERSION;
        out[5..37].copy_from_slice(&self.object_salt);
        out[37..44].copy_from_slice(&self.nonce_prefix);
        out[44..48].copy_from_slice(&self.first_segment.to_be_bytes());
        out
    }

    /// Parses a header from the first [`PART_HEADER_LEN`] bytes of `bytes`.
    ///
    /// Errors: shorter input is [`Damage::Truncated`], other magic bytes are
    /// [`Damage::BadMagic`], another version is
    /// [`VaultError::UnsupportedVersion`].
    pub fn parse(bytes: &[u8]) -> Result<Self, VaultError> {
        let damaged = |reason| VaultError::Damaged {
            what: "part",
            reason,
        };
        if bytes.len() < PART_HEADER_LEN {
            // Check what we have of the magic first: garbage is not "truncated".
            let n = bytes.len().min(4);
            if bytes[..n] != PART_MAGIC[..n] {
                return Err(damaged(Damage::BadMagic));
            }
            return Err(damaged(Damage::Truncated {
                expected: PART_HEADER_LEN as u64,
                found: bytes.len() as u64,
            }));
        }
        if bytes[0..4] != PART_MAGIC {
            return Err(damaged(Damage::BadMagic));
        }
        if bytes[4] != PART_VERSION {
            return Err(VaultError::UnsupportedVersion {
                what: "part",
                found: u64::from(bytes[4]),
                supported: u64::from(PART_VERSION),
            });
        }
        Ok(PartHeader {
            object_salt: bytes[5..37].try_into().expect("32 bytes"),
            nonce_prefix: bytes[37..44].try_into().expect("7 bytes"),
            first_segment: u32::from_be_bytes(bytes[44..48].try_into().expect("4 bytes")),
        })
    }
}

/// The header opening a sealed catalog (52 bytes, see [`CATALOG_HEADER_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CatalogHeader {
    /// The catalog's salt, from which its key is derived.
    pub salt: [u8; SALT_LEN],
    /// The catalog's STREAM nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// Length of the plaintext catalog in bytes.
    pub plaintext_len: u64,
}

impl CatalogHeader {
    /// Encodes the header: `"TGFC" || 0x01 || salt || nonce_prefix ||
    /// plaintext_len (u64 BE)`.
    pub fn to_bytes(self) -> [u8; CATALOG_HEADER_LEN] {
        let mut out = [0u8; CATALOG_HEADER_LEN];
        out[0..4].copy_from_slice(&CATALOG_MAGIC);
        out[4] = CATALOG_VERSION;
        out[5..37].copy_from_slice(&self.salt);
        out[37..44].copy_from_slice(&self.nonce_prefix);
        out[44..52].copy_from_slice(&self.plaintext_len.to_be_bytes());
        out
    }

    /// Parses a catalog header; errors as [`PartHeader::parse`].
    pub fn parse(bytes: &[u8]) -> Result<Self, VaultError> {
        let damaged = |reason| VaultError::Damaged {
            what: "catalog",
            reason,
        };
        let n = bytes.len().min(4);
        if bytes[..n] != CATALOG_MAGIC[..n] {
            return Err(damaged(Damage::BadMagic));
        }
        if bytes.len() >= 5 && bytes[4] != CATALOG_VERSION {
            return Err(VaultError::UnsupportedVersion {
                what: "catalog",
                found: u64::from(bytes[4]),
                supported: u64::from(CATALOG_VERSION),
            });
        }
        if bytes.len() < CATALOG_HEADER_LEN {
            return Err(damaged(Damage::Truncated {
                expected: CATALOG_HEADER_LEN as u64,
                found: bytes.len() as u64,
            }));
        }
        Ok(CatalogHeader {
            salt: bytes[5..37].try_into().expect("32 bytes"),
            nonce_prefix: bytes[37..44].try_into().expect("7 bytes"),
            plaintext_len: u64::from_be_bytes(bytes[44..52].try_into().expect("8 bytes")),
        })
    }
}

/// Everything needed to encrypt or decrypt one object, and the arithmetic of
/// its segments and parts. The caller keeps these four values in its catalog.
///
/// Invariant the caller MUST keep: one `ObjectParams` (salt, nonce prefix)
/// never encrypts two different plaintexts. If the source changed after an
/// attempt started, even one whose upload failed, draw new params with
/// [`ObjectParams::new_random`]; reusing them would reuse AES-GCM nonces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectParams {
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    size: u64,
    part_size: u64,
    /// Always [`SEGMENT_SIZE`] outside this crate's unit tests.
    segment_size: usize,
}

impl ObjectParams {
    /// Validates and wraps the parameters of an object of `size` plaintext
    /// bytes split into parts of `part_size` plaintext bytes.
    ///
    /// Errors ([`VaultError::Misuse`]): `part_size` is zero or not a multiple
    /// of [`SEGMENT_SIZE`]; `size` needs more than [`MAX_SEGMENTS`] segments.
    pub fn new(
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        size: u64,
        part_size: u64,
    ) -> Result<Self, VaultError> {
        Self::with_segment_size(salt, nonce_prefix, size, part_size, SEGMENT_SIZE)
    }

    /// Like [`ObjectParams::new`] with a fresh random salt and nonce prefix:
    /// what a writer uses for every new object.
    pub fn new_random(size: u64, part_size: u64) -> Result<Self, VaultError> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        fill_random(&mut salt)?;
        fill_random(&mut nonce_prefix)?;
        Self::new(salt, nonce_prefix, size, part_size)
    }

    /// `new` with another segment size: lets unit tests cross many segment
    /// boundaries quickly. The on-store format always uses [`SEGMENT_SIZE`].
    pub(crate) fn with_segment_size(
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        size: u64,
        part_size: u64,
        segment_size: usize,
    ) -> Result<Self, VaultError> {
        if part_size == 0 || !part_size.is_multiple_of(segment_size as u64) {
            return Err(VaultError::Misuse(format!(
                "part size {part_size} is not a positive multiple of the segment size {segment_size}"
            )));
        }
        if segment_count_for(size, segment_size).is_none() {
            return Err(VaultError::Misuse(format!(
                "object of {size} bytes needs more than {MAX_SEGMENTS} segments"
            )));
        }
        Ok(ObjectParams {
            salt,
            nonce_prefix,
            size,
            part_size,
            segment_size,
        })
    }

    /// The object's salt (input to its key derivation).
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The object's STREAM nonce prefix.
    pub fn nonce_prefix(&self) -> &[u8; NONCE_PREFIX_LEN] {
        &self.nonce_prefix
    }

    /// Plaintext size of the object in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Plaintext bytes per part (the last part may hold fewer).
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Segments per full part: `part_size / SEGMENT_SIZE`.
    fn segments_per_part(&self) -> u64 {
        self.part_size / self.segment_size as u64
    }

    /// Number of segments: `max(1, ceil(size / SEGMENT_SIZE))`. An empty object
    /// is one empty final segment.
    pub fn segment_count(&self) -> u32 {
        segment_count_for(self.size, self.segment_size).expect("checked in new")
    }

    /// Number of parts: `max(1, ceil(size / part_size))`.
    pub fn part_count(&self) -> u32 {
        let n = self.size.div_ceil(self.part_size).max(1);
        u32::try_from(n).expect("parts <= segments <= MAX_SEGMENTS")
    }

    /// Whether `part` is the object's last part.
    pub fn is_final_part(&self, part: u32) -> bool {
        part + 1 == self.part_count()
    }

    /// Plaintext byte range of `part` within the object.
    ///
    /// Panics if `part >= part_count()`.
    pub fn part_range(&self, part: u32) -> Range<u64> {
        self.check_part(part);
        let start = u64::from(part) * self.part_size;
        let end = (start + self.part_size).min(self.size);
        start..end
    }

    /// Plaintext length of `part` in bytes.
    ///
    /// Panics if `part >= part_count()`.
    pub fn part_plaintext_len(&self, part: u32) -> u64 {
        let r = self.part_range(part);
        r.end - r.start
    }

    /// Index in the object of `part`'s first segment.
    ///
    /// Panics if `part >= part_count()`.
    pub fn part_first_segment(&self, part: u32) -> u32 {
        self.check_part(part);
        u32::try_from(u64::from(part) * self.segments_per_part())
            .expect("segment indices fit in u32 (checked in new)")
    }

    /// Number of segments in `part`.
    ///
    /// Panics if `part >= part_count()`.
    pub fn part_segment_count(&self, part: u32) -> u32 {
        segment_count_for(self.part_plaintext_len(part), self.segment_size)
            .expect("a part has no more segments than its object")
    }

    /// Stored length of `part`'s blob: `PART_HEADER_LEN + plaintext length +
    /// TAG_LEN * segments`.
    ///
    /// Panics if `part >= part_count()`.
    pub fn part_stored_len(&self, part: u32) -> u64 {
        PART_HEADER_LEN as u64
            + self.part_plaintext_len(part)
            + TAG_LEN as u64 * u64::from(self.part_segment_count(part))
    }

    /// Plaintext length of segment `index` of the object: `SEGMENT_SIZE`
    /// except for the last segment, which holds the rest (0 bytes only for an
    /// empty object).
    ///
    /// Panics if `index >= segment_count()`.
    pub fn segment_plaintext_len(&self, index: u32) -> usize {
        let n = self.segment_count();
        assert!(index < n, "segment {index} out of range (object has {n})");
        if index + 1 < n {
            self.segment_size
        } else {
            let rest = self.size - u64::from(index) * self.segment_size as u64;
            usize::try_from(rest).expect("at most one segment")
        }
    }

    /// Whether segment `index` is the object's final segment (its nonce
    /// carries the last-segment flag).
    pub fn is_final_segment(&self, index: u32) -> bool {
        u64::from(index) + 1 == u64::from(self.segment_count())
    }

    /// The header of `part`'s blob.
    ///
    /// Panics if `part >= part_count()`.
    pub fn part_header(&self, part: u32) -> PartHeader {
        PartHeader {
            object_salt: self.salt,
            nonce_prefix: self.nonce_prefix,
            first_segment: self.part_first_segment(part),
        }
    }

    fn check_part(&self, part: u32) {
        let n = self.part_count();
        assert!(part < n, "part {part} out of range (object has {n})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = SEGMENT_SIZE as u64;

    fn params(size: u64, part_size: u64) -> ObjectParams {
        ObjectParams::new([1; 32], [2; 7], size, part_size).unwrap()
    }

    #[test]
    fn header_layout_is_byte_exact() {
        let h = PartHeader {
            object_salt: [0xaa; 32],
            nonce_prefix: [0xbb; 7],
            first_segment: 0x0102_0304,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..5], b"TGFP\x01");
        assert_eq!(&b[5..37], &[0xaa; 32]);
        assert_eq!(&b[37..44], &[0xbb; 7]);
        assert_eq!(&b[44..], &[1, 2, 3, 4]);
        assert_eq!(PartHeader::parse(&b).unwrap(), h);
    }

    #[test]
    fn header_parse_errors_are_typed() {
        let mut b = params(1, MIB).part_header(0).to_bytes();
        assert!(matches!(
            PartHeader::parse(&b[..10]),
            Err(VaultError::Damaged {
                reason: Damage::Truncated { .. },
                ..
            })
        ));
        b[4] = 2;
        assert!(matches!(
            PartHeader::parse(&b),
            Err(VaultError::UnsupportedVersion { found: 2, .. })
        ));
        b[0] = b'X';
        assert!(matches!(
            PartHeader::parse(&b),
            Err(VaultError::Damaged {
                reason: Damage::BadMagic,
                ..
            })
        ));
    }

    #[test]
    fn catalog_header_round_trips() {
        let h = CatalogHeader {
            salt: [3; 32],
            nonce_prefix: [4; 7],
            plaintext_len: 0x0102_0304_0506_0708,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..5], b"TGFC\x01");
        assert_eq!(&b[44..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(CatalogHeader::parse(&b).unwrap(), h);
    }

    #[test]
    fn part_size_must_be_a_positive_multiple_of_the_segment() {
        for bad in [0, 1, MIB - 1, MIB + 1, 3 * MIB / 2] {
            assert!(matches!(
                ObjectParams::new([0; 32], [0; 7], 10, bad),
                Err(VaultError::Misuse(_))
            ));
        }
        assert!(ObjectParams::new([0; 32], [0; 7], 10, 2 * MIB).is_ok());
    }

    #[test]
    fn size_limit_is_the_32_bit_counter() {
        let max = u64::from(MAX_SEGMENTS) * MIB;
        assert!(ObjectParams::new([0; 32], [0; 7], max, 512 * MIB).is_ok());
        assert!(ObjectParams::new([0; 32], [0; 7], max + 1, 512 * MIB).is_err());
        let p = params(max, 512 * MIB);
        let last = p.part_count() - 1;
        assert_eq!(p.segment_count(), MAX_SEGMENTS);
        assert_eq!(
            u64::from(p.part_first_segment(last)) + u64::from(p.part_segment_count(last)),
            u64::from(MAX_SEGMENTS)
        );
        assert!(p.is_final_segment(u32::MAX - 1));
        let one_mib_parts = params(max, MIB);
        assert_eq!(one_mib_parts.part_count(), MAX_SEGMENTS);
    }

    #[test]
    fn arithmetic_at_the_boundaries() {
        // (size, part_size, parts, segments)
        let cases = [
            (0, MIB, 1, 1),
            (1, MIB, 1, 1),
            (MIB - 1, MIB, 1, 1),
            (MIB, MIB, 1, 1),
            (MIB + 1, MIB, 2, 2),
            (2 * MIB - 1, 2 * MIB, 1, 2),
            (2 * MIB, 2 * MIB, 1, 2),
            (2 * MIB + 1, 2 * MIB, 2, 3),
            (5 * MIB + 3, 2 * MIB, 3, 6),
        ];
        for (size, part_size, parts, segments) in cases {
            let p = params(size, part_size);
            assert_eq!(p.part_count(), parts, "{size}/{part_size}");
            assert_eq!(p.segment_count(), segments, "{size}/{part_size}");
            let mut total_pt = 0;
            let mut next_segment = 0;
            for k in 0..parts {
                let r = p.part_range(k);
                assert_eq!(r.start, total_pt);
                total_pt = r.end;
                assert_eq!(p.part_first_segment(k), next_segment);
                next_segment += p.part_segment_count(k);
                let seg_pt: u64 = (p.part_first_segment(k)..next_segment)
                    .map(|i| p.segment_plaintext_len(i) as u64)
                    .sum();
                assert_eq!(seg_pt, p.part_plaintext_len(k));
                assert_eq!(
                    p.part_stored_len(k),
                    48 + seg_pt + 16 * u64::from(p.part_segment_count(k))
                );
                assert_eq!(p.is_final_part(k), k + 1 == parts);
            }
            assert_eq!(total_pt, size);
            assert_eq!(next_segment, segments);
        }
    }

    #[test]
    fn empty_object_is_one_empty_final_segment() {
        let p = params(0, MIB);
        assert_eq!(p.segment_plaintext_len(0), 0);
        assert!(p.is_final_segment(0));
        assert_eq!(p.part_stored_len(0), 48 + 16);
    }
}
