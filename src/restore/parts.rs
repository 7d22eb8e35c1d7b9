//! Reading one stored part back: streamed from the store in chunks, its length checked,
//! plain parts hashed against the recorded SHA-256, vault parts authenticated segment by
//! segment through [`PartDecryptor`] before any plaintext goes on; plaintext goes to a file
//! (restore), a keyed MAC (verify) or nowhere.
//!
//! Memory per part in flight is constant: two read buffers of [`CHUNK`] bytes and the
//! decryptor's one segment. The CPU work (SHA-256, AES-GCM, the MAC, file writes) runs on
//! a blocking thread while the next chunk is read.

use std::fmt;
use std::io::Write;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::state::{Object, StoredPart};
use crate::store::{Store, StoreError};
use crate::vault::{
    MAC_LEN, NONCE_PREFIX_LEN, ObjectParams, PartDecryptor, PartMac, SALT_LEN, VaultError,
};

/// Bytes read from the store at a time.
pub(crate) const CHUNK: usize = 1 << 20;

/// What is wrong with a stored part, or with the catalog's record of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Issue {
    /// The store does not have it.
    Missing,
    /// The store has it with another length than recorded.
    WrongLength {
        /// Stored length the catalog records.
        expected: u64,
        /// Length in the store.
        found: u64,
    },
    /// Its bytes are not what was stored: a SHA-256 mismatch, or for the vault a part that
    /// fails the format's checks (flipped byte, truncated, swapped, reordered).
    Damaged(String),
    /// The store failed to answer (I/O error, timeout): nothing is known about the part.
    Unreadable(String),
    /// The catalog's own record is inconsistent (an object it does not hold, parameters
    /// that do not fit the part list): a bug or a crafted catalog.
    Catalog(String),
}

impl Issue {
    /// Whether the issue is known damage (so `verify --repair` acts on it), as opposed to
    /// a store that could not be read this time.
    pub fn is_damage(&self) -> bool {
        !matches!(self, Issue::Unreadable(_))
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Issue::Missing => f.write_str("missing from the store"),
            Issue::WrongLength { expected, found } => write!(
                f,
                "has {found} bytes in the store, {expected} recorded (truncated or replaced)"
            ),
            Issue::Damaged(why) => write!(f, "damaged or tampered with: {why}"),
            Issue::Unreadable(why) => write!(f, "could not be read: {why}"),
            Issue::Catalog(why) => write!(f, "the catalog is inconsistent: {why}"),
        }
    }
}

/// A part read failed: the part is bad, or writing the plaintext failed.
#[derive(Debug)]
pub(crate) enum PumpError {
    /// The part.
    Part(Issue),
    /// The output file.
    Write(std::io::Error),
}

impl From<Issue> for PumpError {
    fn from(i: Issue) -> Self {
        PumpError::Part(i)
    }
}

/// The issue for a vault error while reading a part.
fn vault_issue(e: VaultError) -> Issue {
    match e {
        VaultError::Damaged { reason, .. } => Issue::Damaged(reason.to_string()),
        e @ VaultError::UnsupportedVersion { .. } => Issue::Damaged(e.to_string()),
        e => Issue::Catalog(e.to_string()),
    }
}

/// The issue for a store error while reading a part.
fn store_issue(e: StoreError) -> Issue {
    match e {
        StoreError::Missing { .. } => Issue::Missing,
        e => Issue::Unreadable(e.to_string()),
    }
}

/// An object's parameters from the catalog, checked against its part list: the right
/// number of parts, each with the stored length the format gives.
pub(crate) fn object_params(obj: &Object) -> Result<ObjectParams, Issue> {
    let params = ObjectParams::new(
        [0; SALT_LEN],
        [0; NONCE_PREFIX_LEN],
        obj.size,
        obj.part_size,
    )
    .map_err(|e| Issue::Catalog(e.to_string()))?;
    check_part_count(&params, obj.parts.len())?;
    Ok(params)
}

/// The parameters one vault part was encrypted under: the object's arithmetic with the
/// part's own salt and nonce prefix from the catalog.
pub(crate) fn part_params(base: &ObjectParams, part: &StoredPart) -> Result<ObjectParams, Issue> {
    let salt = part
        .salt
        .as_deref()
        .and_then(crate::vault::parse_hex::<SALT_LEN>)
        .ok_or_else(|| Issue::Catalog(format!("part {} has no valid salt", part.loc)))?;
    let prefix = part
        .nonce_prefix
        .as_deref()
        .and_then(crate::vault::parse_hex::<NONCE_PREFIX_LEN>)
        .ok_or_else(|| Issue::Catalog(format!("part {} has no valid nonce prefix", part.loc)))?;
    ObjectParams::new(salt, prefix, base.size(), base.part_size())
        .map_err(|e| Issue::Catalog(e.to_string()))
}

/// Checks a part list's length against the parameters.
pub(crate) fn check_part_count(params: &ObjectParams, parts: usize) -> Result<(), Issue> {
    let n = params.part_count() as usize;
    if parts != n {
        return Err(Issue::Catalog(format!(
            "{parts} parts recorded, an object of {} bytes in parts of {} has {n}",
            params.size(),
            params.part_size()
        )));
    }
    Ok(())
}

/// Checks a recorded part's length against the format (vault parts only).
pub(crate) fn check_stored_len(
    params: &ObjectParams,
    index: u32,
    part: &StoredPart,
) -> Result<(), Issue> {
    let want = params.part_stored_len(index);
    if part.len != want {
        return Err(Issue::Catalog(format!(
            "part recorded as {} bytes, the format gives {want}",
            part.len
        )));
    }
    Ok(())
}

/// How one part is read.
pub(crate) struct PartRead {
    /// The vault decryptor for this part; `None` for a plain part (stored = plaintext).
    pub dec: Option<PartDecryptor>,
    /// A keyed MAC over the plaintext, for `verify --full`.
    pub mac: Option<PartMac>,
    /// Where the plaintext goes.
    pub out: Option<std::fs::File>,
}

/// What reading a part gave.
pub(crate) struct PartDone {
    /// The output file, back for the next part.
    pub out: Option<std::fs::File>,
    /// Plaintext bytes.
    pub plaintext: u64,
    /// The MAC, when one was asked for.
    pub mac: Option<[u8; MAC_LEN]>,
}

/// The state moved to a blocking thread for each chunk.
struct Work {
    read: PartRead,
    /// Over the stored bytes, when the catalog recorded a SHA-256 (plain parts).
    hasher: Option<Sha256>,
}

impl Work {
    /// Hashes a chunk of stored bytes and passes its plaintext on; returns how much
    /// plaintext came out.
    fn feed(&mut self, mut chunk: &[u8]) -> Result<u64, PumpError> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(chunk);
        }
        let PartRead { dec, mac, out } = &mut self.read;
        let mut emit = |pt: &[u8]| -> Result<(), PumpError> {
            if let Some(mac) = mac.as_mut() {
                mac.update(pt);
            }
            if let Some(out) = out.as_mut() {
                out.write_all(pt).map_err(PumpError::Write)?;
            }
            Ok(())
        };
        let Some(dec) = dec.as_mut() else {
            emit(chunk)?;
            return Ok(chunk.len() as u64);
        };
        let mut produced = 0;
        while !chunk.is_empty() {
            let step = dec.update(chunk).map_err(vault_issue)?;
            if let Some(pt) = step.plaintext {
                emit(pt)?;
                produced += pt.len() as u64;
            }
            chunk = &chunk[step.consumed..];
        }
        Ok(produced)
    }
}

/// Reads part `part` from the store through `read`, calling `on_plaintext` with each
/// amount of plaintext passed on. Checks, in order: the vault's own checks (header,
/// every segment, nothing missing or extra), the stored length, the SHA-256.
pub(crate) async fn pump<S: Store>(
    store: &S,
    part: &StoredPart,
    read: PartRead,
    on_plaintext: &(dyn Fn(u64) + Sync),
) -> Result<PartDone, PumpError> {
    if read.dec.is_none() && part.sha256.is_empty() {
        // A plain part's hash is its only check.
        return Err(Issue::Catalog("no SHA-256 recorded for a plain part".into()).into());
    }
    let (mut reader, limit): (crate::store::RangeReader, u64) = match part.offset {
        // A part inside a pack: exactly its range (what follows is the next part).
        Some(offset) => (
            store
                .open_range(&part.loc, offset, part.len)
                .await
                .map_err(store_issue)?,
            part.len,
        ),
        None => {
            // One byte past the recorded length is enough to know the part is too long.
            let limit = part.len.saturating_add(1);
            let reader = store.open(&part.loc).await.map_err(store_issue)?;
            (Box::new(reader.take(limit)), limit)
        }
    };
    let cap = usize::try_from(limit).map_or(CHUNK, |l| l.min(CHUNK));
    let (mut cur, mut next) = (vec![0u8; cap], vec![0u8; cap]);
    let mut work = Box::new(Work {
        read,
        hasher: (!part.sha256.is_empty()).then(Sha256::new),
    });
    let unreadable = |e: std::io::Error| Issue::Unreadable(format!("{}: {e}", part.loc));
    let mut n = crate::source::read_full(&mut reader, &mut cur)
        .await
        .map_err(unreadable)?;
    let (mut received, mut plaintext) = (0u64, 0u64);
    while n > 0 {
        received += n as u64;
        let buf = std::mem::take(&mut cur);
        let handle = tokio::task::spawn_blocking(move || {
            let fed = work.feed(&buf[..n]);
            (work, buf, fed)
        });
        let (read, joined) = tokio::join!(crate::source::read_full(&mut reader, &mut next), handle);
        let (w, buf, fed) = match joined {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(Issue::Unreadable(e.to_string()).into()),
        };
        (work, cur) = (w, buf);
        let fed = fed?;
        plaintext += fed;
        on_plaintext(fed);
        n = read.map_err(unreadable)?;
        std::mem::swap(&mut cur, &mut next);
    }
    let Work { read, hasher } = *work;
    if let Some(dec) = read.dec {
        dec.finish().map_err(vault_issue)?;
    }
    if received != part.len {
        let found = match (part.offset, store.len(&part.loc).await) {
            (None, Ok(Some(len))) => len,
            // A pack's length says nothing about one part's: report what its range held.
            _ => received,
        };
        return Err(Issue::WrongLength {
            expected: part.len,
            found,
        }
        .into());
    }
    // Vault parts record no hash: their segments are authenticated instead.
    if hasher.is_some_and(|h| hex::encode(h.finalize()) != part.sha256) {
        return Err(Issue::Damaged("its SHA-256 differs from the one recorded".into()).into());
    }
    Ok(PartDone {
        out: read.out,
        plaintext,
        mac: read.mac.map(PartMac::finalize),
    })
}
