//! Segment encryption (AES-256-GCM in the STREAM construction) and the
//! streaming part encryptor and decryptor (docs/format.md, "Segment
//! encryption" and "Part blob").
//!
//! Segment `i` of an object is sealed under the object key with the 12-byte
//! nonce
//!
//! ```text
//! nonce_prefix (7 bytes) || i (u32 big-endian, 4 bytes) || last (1 byte: 0x01 for the
//! object's final segment, else 0x00)
//! ```
//!
//! and empty associated data: exactly `aead_stream::StreamBE32`. The counter
//! and flag bind every segment to its place, so a reordered, swapped,
//! dropped or re-flagged segment fails authentication.
//!
//! Layers, from the bottom:
//! - [`SegmentCipher`] (crate-private): seal/open one segment in place.
//! - [`ObjectCipher`]: one object's key and params; seals any segment at an
//!   explicit index, `&self` only, so several threads can share it.
//! - [`PartEncryptor`] / [`PartDecryptor`]: one part, segment after segment,
//!   constant memory whatever the part size; plus [`encrypt_part`] and
//!   [`decrypt_part`] for whole in-memory parts.

use aead_stream::aead::{self, Buffer};
use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::Aes256Gcm;

use super::error::{Damage, VaultError};
use super::format::{NONCE_PREFIX_LEN, ObjectParams, PART_HEADER_LEN, PartHeader, TAG_LEN};
use super::keys::MasterKey;

/// Seals and opens single segments: STREAM (big-endian 32-bit counter, 1-byte
/// last flag) over one AES-256-GCM key. Stateless; shareable across threads.
pub(crate) struct SegmentCipher {
    stream: StreamBE32<Aes256Gcm>,
}

impl SegmentCipher {
    /// A segment cipher from an AEAD key (already derived) and a nonce prefix.
    pub(crate) fn new(aead: Aes256Gcm, nonce_prefix: &[u8; NONCE_PREFIX_LEN]) -> Self {
        let prefix = aead_stream::Nonce::<Aes256Gcm, StreamBE32<Aes256Gcm>>::from(*nonce_prefix);
        SegmentCipher {
            stream: StreamBE32::from_aead(aead, &prefix),
        }
    }

    /// Encrypts `buf[..buf.len() - TAG_LEN]` in place and writes the tag into
    /// the last `TAG_LEN` bytes. `buf` must be at least `TAG_LEN` long.
    pub(crate) fn seal_in_place(&self, index: u32, last: bool, buf: &mut [u8]) {
        let len = buf.len() - TAG_LEN;
        let mut b = SliceBuffer { buf, len };
        self.stream
            .encrypt_in_place(index, last, &[], &mut b)
            .expect("AES-GCM seals any segment that fits the buffer");
    }

    /// Decrypts `buf` (ciphertext || tag) in place; on success the plaintext is
    /// `buf[..buf.len() - TAG_LEN]`. Any failure is one opaque error.
    pub(crate) fn open_in_place(&self, index: u32, last: bool, buf: &mut [u8]) -> Result<(), ()> {
        let len = buf.len();
        let mut b = SliceBuffer { buf, len };
        self.stream
            .decrypt_in_place(index, last, &[], &mut b)
            .map_err(|_| ())
    }
}

/// An `aead::Buffer` over a caller's slice: `len` bytes in use, the rest spare
/// room. Lets STREAM work in place without allocating.
struct SliceBuffer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl AsRef<[u8]> for SliceBuffer<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsMut<[u8]> for SliceBuffer<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Buffer for SliceBuffer<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> aead::Result<()> {
        let end = self.len.checked_add(other.len()).ok_or(aead::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(aead::Error)?
            .copy_from_slice(other);
        self.len = end;
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// One object's cipher: its derived key plus its [`ObjectParams`].
///
/// Seals or opens any segment at an explicit index through `&self`, so one
/// `ObjectCipher` can be shared by several threads, each encrypting its own
/// segments (the stateless "encrypt segment at index" API). Derive it once
/// per object: creation runs HKDF and the AES key schedule.
pub struct ObjectCipher {
    cipher: SegmentCipher,
    params: ObjectParams,
}

impl ObjectCipher {
    /// Derives the object key from the master key and the object's salt.
    pub fn new(master: &MasterKey, params: &ObjectParams) -> Self {
        ObjectCipher {
            cipher: SegmentCipher::new(master.object_cipher(params.salt()), params.nonce_prefix()),
            params: params.clone(),
        }
    }

    /// The object's parameters.
    pub fn params(&self) -> &ObjectParams {
        &self.params
    }

    /// Encrypts segment `index` of the object from `plaintext` into
    /// `out[..plaintext.len() + TAG_LEN]` and returns that length.
    ///
    /// `plaintext` must be exactly
    /// [`ObjectParams::segment_plaintext_len`]`(index)` bytes, and `out` at
    /// least `TAG_LEN` bytes longer; otherwise [`VaultError::Misuse`].
    pub fn encrypt_segment_at(
        &self,
        index: u32,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, VaultError> {
        let n = self.check_segment(index, plaintext.len())? + TAG_LEN;
        let out_len = out.len();
        let out = out.get_mut(..n).ok_or_else(|| {
            VaultError::Misuse(format!(
                "output buffer of {out_len} bytes is too small for segment {index} ({n} bytes)"
            ))
        })?;
        out[..plaintext.len()].copy_from_slice(plaintext);
        self.cipher
            .seal_in_place(index, self.params.is_final_segment(index), out);
        Ok(n)
    }

    /// Encrypts segment `index` in place: `buf` holds the plaintext followed by
    /// `TAG_LEN` spare bytes, and ends up holding the stored segment
    /// (ciphertext || tag). The fastest path: no copy, no allocation.
    ///
    /// `buf.len()` must be [`ObjectParams::segment_plaintext_len`]`(index) +
    /// TAG_LEN`; otherwise [`VaultError::Misuse`].
    pub fn encrypt_segment_at_in_place(
        &self,
        index: u32,
        buf: &mut [u8],
    ) -> Result<(), VaultError> {
        let pt_len = buf
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| VaultError::Misuse("in-place buffer shorter than the tag".into()))?;
        self.check_segment(index, pt_len)?;
        self.cipher
            .seal_in_place(index, self.params.is_final_segment(index), buf);
        Ok(())
    }

    /// Decrypts stored segment `index` in place: `buf` holds ciphertext || tag;
    /// on success the plaintext is `buf[..returned length]`.
    ///
    /// Errors: a wrong-length `buf` is [`VaultError::Misuse`]; a segment that
    /// does not authenticate is [`Damage::AuthFailed`].
    pub fn decrypt_segment_at_in_place(
        &self,
        index: u32,
        buf: &mut [u8],
    ) -> Result<usize, VaultError> {
        let pt_len = buf
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| VaultError::Misuse("stored segment shorter than the tag".into()))?;
        self.check_segment(index, pt_len)?;
        self.cipher
            .open_in_place(index, self.params.is_final_segment(index), buf)
            .map_err(|()| VaultError::Damaged {
                what: "part",
                reason: Damage::AuthFailed { segment: index },
            })?;
        Ok(pt_len)
    }

    /// Checks that `index` exists and that its plaintext is `pt_len` bytes;
    /// returns `pt_len`.
    fn check_segment(&self, index: u32, pt_len: usize) -> Result<usize, VaultError> {
        let n = self.params.segment_count();
        if index >= n {
            return Err(VaultError::Misuse(format!(
                "segment {index} out of range (object has {n})"
            )));
        }
        let expected = self.params.segment_plaintext_len(index);
        if pt_len != expected {
            return Err(VaultError::Misuse(format!(
                "segment {index} must hold {expected} plaintext bytes, got {pt_len}"
            )));
        }
        Ok(pt_len)
    }
}

impl std::fmt::Debug for ObjectCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCipher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn check_part_index(params: &ObjectParams, part: u32) -> Result<(), VaultError> {
    let n = params.part_count();
    if part >= n {
        return Err(VaultError::Misuse(format!(
            "part {part} out of range (object has {n})"
        )));
    }
    Ok(())
}

/// Encrypts one part, segment after segment, in order.
///
/// Write [`header`](Self::header) first, then for each segment the output of
/// [`encrypt_segment`](Self::encrypt_segment) (or
/// [`encrypt_segment_in_place`](Self::encrypt_segment_in_place)), then call
/// [`finish`](Self::finish). Each segment's plaintext is
/// [`next_segment_len`](Self::next_segment_len) bytes: `SEGMENT_SIZE`, except
/// the object's final segment.
pub struct PartEncryptor {
    cipher: ObjectCipher,
    part: u32,
    next: u32,
    end: u32,
}

impl PartEncryptor {
    /// An encryptor for part `part` of the object. Errors with
    /// [`VaultError::Misuse`] if the object has no such part.
    pub fn new(master: &MasterKey, params: &ObjectParams, part: u32) -> Result<Self, VaultError> {
        check_part_index(params, part)?;
        Ok(Self::from_cipher(ObjectCipher::new(master, params), part))
    }

    /// The encryptor of an existing part of `cipher`'s object.
    fn from_cipher(cipher: ObjectCipher, part: u32) -> Self {
        let next = cipher.params().part_first_segment(part);
        let end = next + cipher.params().part_segment_count(part);
        PartEncryptor {
            cipher,
            part,
            next,
            end,
        }
    }

    /// The part header, to be stored before the first segment.
    pub fn header(&self) -> [u8; PART_HEADER_LEN] {
        self.cipher.params().part_header(self.part).to_bytes()
    }

    /// Plaintext length the next segment must have, or `None` once every
    /// segment of the part has been encrypted.
    pub fn next_segment_len(&self) -> Option<usize> {
        (self.next < self.end).then(|| self.cipher.params().segment_plaintext_len(self.next))
    }

    /// Encrypts the next segment from `plaintext` into `out` (at least
    /// `plaintext.len() + TAG_LEN` bytes) and returns the number of bytes
    /// written. Errors with [`VaultError::Misuse`] if the part is complete or
    /// the plaintext has the wrong length.
    pub fn encrypt_segment(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, VaultError> {
        let index = self.take_index()?;
        let n = self.cipher.encrypt_segment_at(index, plaintext, out)?;
        self.next += 1;
        Ok(n)
    }

    /// Encrypts the next segment in place: `buf` is the plaintext followed by
    /// `TAG_LEN` spare bytes. Errors as [`encrypt_segment`](Self::encrypt_segment).
    pub fn encrypt_segment_in_place(&mut self, buf: &mut [u8]) -> Result<(), VaultError> {
        let index = self.take_index()?;
        self.cipher.encrypt_segment_at_in_place(index, buf)?;
        self.next += 1;
        Ok(())
    }

    /// Checks that every segment of the part was encrypted.
    pub fn finish(self) -> Result<(), VaultError> {
        if self.next < self.end {
            return Err(VaultError::Misuse(format!(
                "part {} finished after {} of {} segments",
                self.part,
                self.next - self.cipher.params().part_first_segment(self.part),
                self.cipher.params().part_segment_count(self.part)
            )));
        }
        Ok(())
    }

    fn take_index(&self) -> Result<u32, VaultError> {
        if self.next >= self.end {
            return Err(VaultError::Misuse(format!(
                "part {} already has all its segments",
                self.part
            )));
        }
        Ok(self.next)
    }
}

impl std::fmt::Debug for PartEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartEncryptor")
            .field("part", &self.part)
            .field("next_segment", &self.next)
            .field("end_segment", &self.end)
            .finish_non_exhaustive()
    }
}

/// Encrypts a whole part held in memory: `plaintext` is the part's plaintext
/// ([`ObjectParams::part_range`]); returns header || segments.
pub fn encrypt_part(
    master: &MasterKey,
    params: &ObjectParams,
    part: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    check_part_index(params, part)?;
    let expected = params.part_plaintext_len(part);
    if plaintext.len() as u64 != expected {
        return Err(VaultError::Misuse(format!(
            "part {part} must hold {expected} plaintext bytes, got {}",
            plaintext.len()
        )));
    }
    let stored = usize::try_from(params.part_stored_len(part))
        .map_err(|_| VaultError::Misuse("part too large for memory".into()))?;
    let mut out = vec![0u8; stored];
    let mut enc = PartEncryptor::new(master, params, part)?;
    out[..PART_HEADER_LEN].copy_from_slice(&enc.header());
    let (mut pos, mut input) = (PART_HEADER_LEN, plaintext);
    while let Some(len) = enc.next_segment_len() {
        let (seg, rest) = input.split_at(len);
        pos += enc.encrypt_segment(seg, &mut out[pos..])?;
        input = rest;
    }
    enc.finish()?;
    debug_assert_eq!(pos, out.len());
    Ok(out)
}

/// What one [`PartDecryptor::update`] call did.
#[derive(Debug)]
pub struct DecryptStep<'a> {
    /// How many bytes of the input were consumed; feed the rest again.
    pub consumed: usize,
    /// A segment's worth of authenticated plaintext, when one completed.
    pub plaintext: Option<&'a [u8]>,
}

/// Decrypts one part from its stored bytes, fed in chunks of any size (as they
/// come from a network or a file); constant memory (one segment).
///
/// Checks the header against what the caller's catalog expects (object salt
/// and nonce prefix, first segment), then authenticates and decrypts each
/// segment as soon as it is complete. Each plaintext handed out is
/// authentic, but the part is only known to be complete after
/// [`finish`](Self::finish) returns `Ok`: until then, treat the output as
/// provisional (e.g. write it to a temporary file).
///
/// ```
/// # use tgferry::vault::*;
/// # fn demo(master: &MasterKey, params: &ObjectParams, blob: &[u8]) -> Result<Vec<u8>, VaultError> {
/// let mut dec = PartDecryptor::new(master, params, 0)?;
/// let mut out = Vec::new();
/// for mut chunk in blob.chunks(64 * 1024) {
///     while !chunk.is_empty() {
///         let step = dec.update(chunk)?;
///         if let Some(pt) = step.plaintext {
///             out.extend_from_slice(pt);
///         }
///         chunk = &chunk[step.consumed..];
///     }
/// }
/// dec.finish()?;
/// # Ok(out) }
/// ```
pub struct PartDecryptor {
    cipher: ObjectCipher,
    part: u32,
    header: [u8; PART_HEADER_LEN],
    header_len: usize,
    /// Next segment to decrypt (index in the object) and one past the last.
    next: u32,
    end: u32,
    /// The segment being received: `filled` of `seg_len` bytes of ciphertext
    /// so far, in `buf` (sized for the part's longest segment, its first).
    buf: Vec<u8>,
    seg_len: usize,
    filled: usize,
    received: u64,
    expected_len: u64,
    poisoned: bool,
}

impl PartDecryptor {
    /// A decryptor for part `part` of the object described by `params` (from
    /// the caller's catalog). Errors with [`VaultError::Misuse`] if the object
    /// has no such part.
    pub fn new(master: &MasterKey, params: &ObjectParams, part: u32) -> Result<Self, VaultError> {
        check_part_index(params, part)?;
        Ok(Self::from_cipher(ObjectCipher::new(master, params), part))
    }

    /// The decryptor of an existing part of `cipher`'s object.
    fn from_cipher(cipher: ObjectCipher, part: u32) -> Self {
        let params = cipher.params();
        let next = params.part_first_segment(part);
        let end = next + params.part_segment_count(part);
        let first_len = params.segment_plaintext_len(next) + TAG_LEN;
        let expected_len = params.part_stored_len(part);
        PartDecryptor {
            part,
            header: [0; PART_HEADER_LEN],
            header_len: 0,
            next,
            end,
            buf: vec![0; first_len],
            seg_len: first_len,
            filled: 0,
            received: 0,
            expected_len,
            poisoned: false,
            cipher,
        }
    }

    /// Stored length of the part in bytes: what [`finish`](Self::finish)
    /// expects to have been fed.
    pub fn expected_len(&self) -> u64 {
        self.expected_len
    }

    /// Consumes bytes from `input`, up to the end of the header or of the
    /// current segment, and returns how many it took plus, when a segment
    /// completed, its plaintext. Call again with the rest of `input`.
    ///
    /// Errors ([`VaultError::Damaged`] unless noted): a header for another
    /// object ([`Damage::WrongObject`]) or place ([`Damage::WrongPosition`]),
    /// bad magic, an unknown version ([`VaultError::UnsupportedVersion`]), a
    /// segment that fails authentication, bytes past the end
    /// ([`Damage::TrailingData`]). After an error the decryptor is spent.
    pub fn update(&mut self, input: &[u8]) -> Result<DecryptStep<'_>, VaultError> {
        if self.poisoned {
            return Err(VaultError::Misuse(
                "part decryptor used after an error".into(),
            ));
        }
        self.poisoned = true;
        let step = self.update_inner(input)?;
        self.poisoned = false;
        let consumed = step.consumed;
        self.received += consumed as u64;
        Ok(match step.plaintext {
            Some(len) => DecryptStep {
                consumed,
                plaintext: Some(&self.buf[..len]),
            },
            None => DecryptStep {
                consumed,
                plaintext: None,
            },
        })
    }

    /// [`update`](Self::update) returning the plaintext as a length into `buf`.
    fn update_inner(&mut self, input: &[u8]) -> Result<Step, VaultError> {
        if input.is_empty() {
            return Ok(Step::none(0));
        }
        if self.header_len < PART_HEADER_LEN {
            let n = (PART_HEADER_LEN - self.header_len).min(input.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
            self.header_len += n;
            if self.header_len == PART_HEADER_LEN {
                self.check_header()?;
            }
            return Ok(Step::none(n));
        }
        if self.next >= self.end {
            return Err(self.damaged(Damage::TrailingData));
        }
        let want = self.seg_len - self.filled;
        let n = want.min(input.len());
        self.buf[self.filled..self.filled + n].copy_from_slice(&input[..n]);
        self.filled += n;
        if self.filled < self.seg_len {
            return Ok(Step::none(n));
        }
        let index = self.next;
        let pt_len = self
            .cipher
            .decrypt_segment_at_in_place(index, &mut self.buf[..self.seg_len])?;
        self.next += 1;
        self.filled = 0;
        if self.next < self.end {
            self.seg_len = self.cipher.params().segment_plaintext_len(self.next) + TAG_LEN;
        }
        Ok(Step {
            consumed: n,
            plaintext: Some(pt_len),
        })
    }

    fn check_header(&self) -> Result<(), VaultError> {
        let found = PartHeader::parse(&self.header)?;
        let params = self.cipher.params();
        if found.object_salt != *params.salt() || found.nonce_prefix != *params.nonce_prefix() {
            return Err(self.damaged(Damage::WrongObject));
        }
        let expected = params.part_first_segment(self.part);
        if found.first_segment != expected {
            return Err(self.damaged(Damage::WrongPosition {
                expected,
                found: found.first_segment,
            }));
        }
        Ok(())
    }

    /// Checks that the whole part was received: the header and every segment
    /// through the last one (which carries the final flag if this is the
    /// object's final part). Errors with [`Damage::Truncated`] otherwise.
    pub fn finish(self) -> Result<(), VaultError> {
        if self.poisoned {
            return Err(VaultError::Misuse(
                "part decryptor finished after an error".into(),
            ));
        }
        if self.header_len < PART_HEADER_LEN {
            let n = self.header_len.min(4);
            if self.header[..n] != super::format::PART_MAGIC[..n] {
                return Err(self.damaged(Damage::BadMagic));
            }
        }
        if self.header_len < PART_HEADER_LEN || self.next < self.end {
            return Err(self.damaged(Damage::Truncated {
                expected: self.expected_len,
                found: self.received,
            }));
        }
        debug_assert_eq!(self.received, self.expected_len);
        Ok(())
    }

    fn damaged(&self, reason: Damage) -> VaultError {
        VaultError::Damaged {
            what: "part",
            reason,
        }
    }
}

impl std::fmt::Debug for PartDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartDecryptor")
            .field("part", &self.part)
            .field("next_segment", &self.next)
            .field("end_segment", &self.end)
            .field("received", &self.received)
            .field("expected_len", &self.expected_len)
            .finish_non_exhaustive()
    }
}

/// A step's result before borrowing the plaintext out of the buffer.
struct Step {
    consumed: usize,
    plaintext: Option<usize>,
}

impl Step {
    fn none(consumed: usize) -> Self {
        Step {
            consumed,
            plaintext: None,
        }
    }
}

/// Decrypts a whole part held in memory: checks it against `params` and
/// `part` like [`PartDecryptor`] and returns its plaintext.
pub fn decrypt_part(
    master: &MasterKey,
    params: &ObjectParams,
    part: u32,
    blob: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let mut dec = PartDecryptor::new(master, params, part)?;
    let capacity = params.part_plaintext_len(part).min(blob.len() as u64);
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut input = blob;
    while !input.is_empty() {
        let step = dec.update(input)?;
        if let Some(pt) = step.plaintext {
            out.extend_from_slice(pt);
        }
        input = &input[step.consumed..];
    }
    dec.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::format::SEGMENT_SIZE;
    use aes_gcm::{AeadInOut, KeyInit};
    use proptest::prelude::*;

    const SALT: [u8; 32] = [0x11; 32];
    const PREFIX: [u8; 7] = [0x22; 7];

    fn master() -> MasterKey {
        MasterKey::from_bytes([0x42; 32])
    }

    fn data(len: u64) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Params with a small segment size so tests cross many boundaries fast.
    fn small(size: u64, segs_per_part: u64, seg: usize) -> ObjectParams {
        ObjectParams::with_segment_size(SALT, PREFIX, size, segs_per_part * seg as u64, seg)
            .unwrap()
    }

    /// Encrypts every part, alternating the in-place and copying APIs.
    fn encrypt_all(params: &ObjectParams, pt: &[u8]) -> Vec<Vec<u8>> {
        (0..params.part_count())
            .map(|k| {
                let mut enc = PartEncryptor::new(&master(), params, k).unwrap();
                let mut blob = enc.header().to_vec();
                let r = params.part_range(k);
                let mut input = &pt[r.start as usize..r.end as usize];
                let mut out = Vec::new();
                let mut i = 0;
                while let Some(len) = enc.next_segment_len() {
                    let (seg, rest) = input.split_at(len);
                    if i % 2 == 0 {
                        let mut buf = seg.to_vec();
                        buf.resize(len + TAG_LEN, 0);
                        enc.encrypt_segment_in_place(&mut buf).unwrap();
                        blob.extend_from_slice(&buf);
                    } else {
                        out.resize(len + TAG_LEN, 0);
                        let n = enc.encrypt_segment(seg, &mut out).unwrap();
                        blob.extend_from_slice(&out[..n]);
                    }
                    input = rest;
                    i += 1;
                }
                assert!(input.is_empty());
                enc.finish().unwrap();
                assert_eq!(blob.len() as u64, params.part_stored_len(k));
                assert_eq!(
                    blob,
                    encrypt_part(&master(), params, k, &pt[r.start as usize..r.end as usize])
                        .unwrap()
                );
                blob
            })
            .collect()
    }

    /// Decrypts a blob feeding it in chunks of `chunk` bytes.
    fn decrypt_chunked(
        params: &ObjectParams,
        part: u32,
        blob: &[u8],
        chunk: usize,
    ) -> Result<Vec<u8>, VaultError> {
        let mut dec = PartDecryptor::new(&master(), params, part)?;
        let mut out = Vec::new();
        for mut c in blob.chunks(chunk) {
            while !c.is_empty() {
                let step = dec.update(c)?;
                if let Some(pt) = step.plaintext {
                    out.extend_from_slice(pt);
                }
                c = &c[step.consumed..];
            }
        }
        dec.finish()?;
        Ok(out)
    }

    fn round_trip(params: &ObjectParams) {
        let pt = data(params.size());
        let blobs = encrypt_all(params, &pt);
        let mut joined = Vec::new();
        for (k, blob) in blobs.iter().enumerate() {
            let k = k as u32;
            let whole = decrypt_part(&master(), params, k, blob).unwrap();
            for chunk in [1, 7, 4096, usize::MAX] {
                if chunk == 1 && blob.len() > 100_000 {
                    continue;
                }
                assert_eq!(decrypt_chunked(params, k, blob, chunk).unwrap(), whole);
            }
            joined.extend_from_slice(&whole);
        }
        assert_eq!(joined, pt, "size {}", params.size());
    }

    fn damage(err: VaultError) -> Damage {
        match err {
            VaultError::Damaged { reason, .. } => reason,
            other => panic!("expected Damaged, got {other:?}"),
        }
    }

    #[test]
    fn object_cipher_is_shareable_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<ObjectCipher>();
        check::<PartEncryptor>();
        check::<PartDecryptor>();
    }

    #[test]
    fn boundaries_with_the_real_segment_size() {
        // One pass each way: unoptimized AES-GCM runs at ~10 MB/s.
        let seg = SEGMENT_SIZE as u64;
        for size in [0, 1, seg - 1, seg, seg + 1] {
            let params = ObjectParams::new(SALT, PREFIX, size, seg).unwrap();
            let pt = data(size);
            let mut joined = Vec::new();
            for k in 0..params.part_count() {
                let r = params.part_range(k);
                let blob =
                    encrypt_part(&master(), &params, k, &pt[r.start as usize..r.end as usize])
                        .unwrap();
                assert_eq!(blob.len() as u64, params.part_stored_len(k));
                joined.extend(decrypt_chunked(&params, k, &blob, 65536).unwrap());
            }
            assert_eq!(joined, pt, "size {size}");
        }
    }

    #[test]
    fn boundaries_with_small_segments() {
        let seg = 16u64;
        let part = 4 * seg;
        for size in [
            0,
            1,
            seg - 1,
            seg,
            seg + 1,
            part - 1,
            part,
            part + 1,
            2 * part,
            3 * part + 5,
        ] {
            round_trip(&small(size, 4, 16));
        }
    }

    #[test]
    fn nonce_layout_is_prefix_counter_be_flag() {
        // Recompute segment 1 (final) of a 2-segment object with plain AES-GCM.
        let params = small(20, 4, 16);
        let pt = data(20);
        let blob = &encrypt_all(&params, &pt)[0];
        let mut key = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&SALT), &[0x42; 32])
            .expand(b"tgferry v1 object", &mut key)
            .unwrap();
        let aead = Aes256Gcm::new_from_slice(&key).unwrap();
        for (index, last, range) in [(0u32, 0u8, 0..16), (1, 1, 16..20)] {
            let mut nonce = [0u8; 12];
            nonce[..7].copy_from_slice(&PREFIX);
            nonce[7..11].copy_from_slice(&index.to_be_bytes());
            nonce[11] = last;
            let mut seg = pt[range.clone()].to_vec();
            let tag = aead
                .encrypt_inout_detached(&nonce.into(), b"", seg.as_mut_slice().into())
                .unwrap();
            seg.extend_from_slice(&tag);
            let at = PART_HEADER_LEN + index as usize * 32;
            assert_eq!(&blob[at..at + seg.len()], &seg[..], "segment {index}");
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_detected() {
        let params = small(40, 2, 16); // parts of 32 + 8 bytes
        let blobs = encrypt_all(&params, &data(40));
        for (k, blob) in blobs.iter().enumerate() {
            for cut in 0..blob.len() {
                let err = decrypt_part(&master(), &params, k as u32, &blob[..cut]).unwrap_err();
                let d = damage(err);
                assert!(
                    matches!(d, Damage::Truncated { .. } | Damage::AuthFailed { .. }),
                    "cut {cut}: {d:?}"
                );
            }
            for i in 0..blob.len() {
                for bit in 0..8 {
                    let mut bad = blob.clone();
                    bad[i] ^= 1 << bit;
                    assert!(
                        decrypt_part(&master(), &params, k as u32, &bad).is_err(),
                        "part {k} byte {i} bit {bit}"
                    );
                }
            }
        }
    }

    #[test]
    fn truncation_at_a_segment_boundary_is_reported_by_finish() {
        let params = small(40, 4, 16); // one part, segments of 16, 16, 8
        let blob = &encrypt_all(&params, &data(40))[0];
        let cut = &blob[..PART_HEADER_LEN + 2 * 32];
        let mut dec = PartDecryptor::new(&master(), &params, 0).unwrap();
        let mut rest = cut;
        let mut got = 0;
        while !rest.is_empty() {
            let step = dec.update(rest).unwrap();
            got += step.plaintext.map_or(0, <[u8]>::len);
            rest = &rest[step.consumed..];
        }
        assert_eq!(got, 32, "complete segments are handed out");
        assert_eq!(
            damage(dec.finish().unwrap_err()),
            Damage::Truncated {
                expected: params.part_stored_len(0),
                found: cut.len() as u64
            }
        );
    }

    #[test]
    fn reordered_segments_fail_authentication() {
        let params = small(48, 4, 16);
        let blob = encrypt_all(&params, &data(48)).remove(0);
        let mut swapped = blob.clone();
        let (a, b) = (PART_HEADER_LEN, PART_HEADER_LEN + 32);
        swapped[a..a + 32].copy_from_slice(&blob[b..b + 32]);
        swapped[b..b + 32].copy_from_slice(&blob[a..a + 32]);
        assert_eq!(
            damage(decrypt_part(&master(), &params, 0, &swapped).unwrap_err()),
            Damage::AuthFailed { segment: 0 }
        );
    }

    #[test]
    fn parts_swapped_reordered_or_relabelled_are_detected() {
        let a = small(64, 2, 16);
        let b = ObjectParams::with_segment_size([0x33; 32], PREFIX, 64, 32, 16).unwrap();
        let pa = encrypt_all(&a, &data(64));
        let pb = encrypt_all(&b, &data(64));
        // Another object's part in our place.
        assert_eq!(
            damage(decrypt_part(&master(), &a, 0, &pb[0]).unwrap_err()),
            Damage::WrongObject
        );
        // Our own part 1 where part 0 is expected.
        assert_eq!(
            damage(decrypt_part(&master(), &a, 0, &pa[1]).unwrap_err()),
            Damage::WrongPosition {
                expected: 0,
                found: 2
            }
        );
        // Part 1 with its header rewritten to claim position 0.
        let mut relabelled = pa[1].clone();
        relabelled[44..48].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            damage(decrypt_part(&master(), &a, 0, &relabelled).unwrap_err()),
            Damage::AuthFailed { segment: 0 }
        );
        // Another object's part with its header rewritten to ours.
        let mut forged = pb[0].clone();
        forged[..PART_HEADER_LEN].copy_from_slice(&pa[0][..PART_HEADER_LEN]);
        assert_eq!(
            damage(decrypt_part(&master(), &a, 0, &forged).unwrap_err()),
            Damage::AuthFailed { segment: 0 }
        );
        // A different nonce prefix is another object too.
        let c = ObjectParams::with_segment_size(SALT, [0x23; 7], 64, 32, 16).unwrap();
        assert_eq!(
            damage(decrypt_part(&master(), &c, 0, &pa[0]).unwrap_err()),
            Damage::WrongObject
        );
        // The wrong master key.
        let other = MasterKey::from_bytes([1; 32]);
        assert!(matches!(
            decrypt_part(&other, &a, 0, &pa[0]),
            Err(VaultError::Damaged {
                reason: Damage::AuthFailed { segment: 0 },
                ..
            })
        ));
    }

    #[test]
    fn a_non_final_part_cannot_pass_as_the_final_one() {
        // Same salt and prefix, but the catalog claims the object ends after
        // part 0: its last segment was sealed without the final flag.
        let long = small(64, 2, 16);
        let short = small(32, 2, 16);
        let blob = encrypt_all(&long, &data(64)).remove(0);
        assert_eq!(
            damage(decrypt_part(&master(), &short, 0, &blob).unwrap_err()),
            Damage::AuthFailed { segment: 1 }
        );
    }

    #[test]
    fn trailing_data_is_rejected() {
        let params = small(20, 4, 16);
        let mut blob = encrypt_all(&params, &data(20)).remove(0);
        blob.push(0);
        assert_eq!(
            damage(decrypt_part(&master(), &params, 0, &blob).unwrap_err()),
            Damage::TrailingData
        );
    }

    #[test]
    fn header_errors_come_before_any_decryption() {
        let params = small(20, 4, 16);
        let blob = encrypt_all(&params, &data(20)).remove(0);
        let mut bad = blob.clone();
        bad[0] = b'X';
        assert_eq!(
            damage(decrypt_part(&master(), &params, 0, &bad).unwrap_err()),
            Damage::BadMagic
        );
        assert_eq!(
            damage(decrypt_part(&master(), &params, 0, b"XY").unwrap_err()),
            Damage::BadMagic
        );
        bad = blob.clone();
        bad[4] = 9;
        assert!(matches!(
            decrypt_part(&master(), &params, 0, &bad),
            Err(VaultError::UnsupportedVersion { found: 9, .. })
        ));
        assert!(matches!(
            decrypt_part(&master(), &params, 0, &[]),
            Err(VaultError::Damaged {
                reason: Damage::Truncated { found: 0, .. },
                ..
            })
        ));
    }

    #[test]
    fn a_spent_decryptor_stays_spent() {
        let params = small(20, 4, 16);
        let mut dec = PartDecryptor::new(&master(), &params, 0).unwrap();
        assert!(dec.update(&[0; 48]).is_err());
        assert!(matches!(dec.update(&[0; 4]), Err(VaultError::Misuse(_))));
        assert!(matches!(dec.finish(), Err(VaultError::Misuse(_))));
    }

    #[test]
    fn encryptor_misuse_is_an_error() {
        let params = small(40, 4, 16);
        let mut enc = PartEncryptor::new(&master(), &params, 0).unwrap();
        let mut out = [0u8; 64];
        assert!(
            enc.encrypt_segment(&[0; 15], &mut out).is_err(),
            "short segment"
        );
        assert!(
            enc.encrypt_segment(&[0; 16], &mut out[..31]).is_err(),
            "small out"
        );
        enc.encrypt_segment(&[0; 16], &mut out).unwrap();
        assert!(matches!(
            PartEncryptor::new(&master(), &params, 0).unwrap().finish(),
            Err(VaultError::Misuse(_))
        ));
        let mut short = enc;
        short.encrypt_segment(&[0; 16], &mut out).unwrap();
        assert!(
            short.encrypt_segment(&[0; 9], &mut out).is_err(),
            "final is 8"
        );
        short.encrypt_segment(&[0; 8], &mut out).unwrap();
        assert_eq!(short.next_segment_len(), None);
        assert!(
            short.encrypt_segment(&[], &mut out).is_err(),
            "one too many"
        );
        short.finish().unwrap();
        assert!(PartEncryptor::new(&master(), &params, 1).is_err());
        assert!(PartDecryptor::new(&master(), &params, 1).is_err());
        assert!(encrypt_part(&master(), &params, 0, &[0; 39]).is_err());
    }

    #[test]
    fn segments_encrypted_on_several_threads_match_the_sequential_part() {
        let params = small(16 * 9 + 3, 20, 16);
        let pt = data(params.size());
        let sequential = encrypt_all(&params, &pt).remove(0);
        let cipher = ObjectCipher::new(&master(), &params);
        let n = params.segment_count();
        let mut segments: Vec<Vec<u8>> = vec![Vec::new(); n as usize];
        std::thread::scope(|s| {
            for (i, slot) in segments.iter_mut().enumerate() {
                let (cipher, pt) = (&cipher, &pt);
                s.spawn(move || {
                    let i = i as u32;
                    let len = cipher.params().segment_plaintext_len(i);
                    let start = i as usize * 16;
                    let mut out = vec![0u8; len + TAG_LEN];
                    cipher
                        .encrypt_segment_at(i, &pt[start..start + len], &mut out)
                        .unwrap();
                    *slot = out;
                });
            }
        });
        let mut parallel = params.part_header(0).to_bytes().to_vec();
        parallel.extend(segments.concat());
        assert_eq!(parallel, sequential);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_round_trip(
            size in 0u64..400,
            segs_per_part in 1u64..5,
            chunk in 1usize..100,
        ) {
            let params = small(size, segs_per_part, 16);
            let pt = data(size);
            let blobs = encrypt_all(&params, &pt);
            let mut joined = Vec::new();
            for (k, blob) in blobs.iter().enumerate() {
                joined.extend(decrypt_chunked(&params, k as u32, blob, chunk).unwrap());
            }
            prop_assert_eq!(joined, pt);
        }

        #[test]
        fn prop_any_single_flip_is_detected(
            size in 0u64..100,
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let params = small(size, 2, 16);
            let mut blobs = encrypt_all(&params, &data(size));
            let part = (blobs.len() - 1) as u32;
            let blob = &mut blobs[part as usize];
            let i = at.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert!(decrypt_part(&master(), &params, part, blob).is_err());
        }
    }
}
