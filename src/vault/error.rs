//! The vault's one error type, [`VaultError`], and [`Damage`], the reason a
//! stored blob was rejected.
//!
//! Every message says what went wrong and, where there is one, what to do
//! about it. Cryptographic failures are deliberately collapsed: a segment that
//! does not authenticate is [`Damage::AuthFailed`], whatever the cause (flipped
//! byte, reordered or swapped segment, wrong key), as age does.

use std::fmt;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The passphrase does not unlock the key file (or the key file was
    /// altered: the two cannot be told apart).
    #[error(
        "wrong passphrase: it does not unlock this vault's key file \
         (check TGFERRY_PASSPHRASE; if it is right, the key file was altered)"
    )]
    WrongPassphrase,

    /// An empty passphrase was given.
    #[error("the passphrase is empty: set TGFERRY_PASSPHRASE")]
    EmptyPassphrase,

    /// A key file, part or catalog declares a format version this build does
    /// not know. Never guessed at.
    #[error(
        "{what} has format version {found}, but this tgferry reads only version {supported}: \
         it was written by a newer tgferry; upgrade tgferry to read it"
    )]
    UnsupportedVersion {
        /// What was being read ("key file", "part", "catalog").
        what: &'static str,
        /// The version found.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },

    /// The bytes are not a tgferry key file, or a field is malformed.
    #[error("not a valid tgferry key file: {reason}")]
    InvalidKeyFile {
        /// What is wrong with it.
        reason: String,
    },

    /// Argon2id parameters outside the accepted bounds, either asked for when
    /// creating a key file or found in one being read (a hostile key file
    /// could otherwise demand, say, 100 GiB of memory or a minute per command).
    #[error(
        "argon2id parameters out of bounds: {reason}; tgferry never writes such a key file, \
         so this one was altered or made elsewhere: put back the store's key file from a \
         backup"
    )]
    KdfParamsOutOfBounds {
        /// Which parameter and its bounds.
        reason: String,
    },

    /// A stored part or catalog failed a check: it was altered, truncated,
    /// extended, reordered or swapped. The data must not be used.
    #[error("{what} is damaged or was tampered with: {reason}")]
    Damaged {
        /// What was being read ("part", "catalog").
        what: &'static str,
        /// Why it was rejected.
        reason: Damage,
    },

    /// The caller broke an API contract (a part size that is not a multiple of
    /// the segment size, a segment of the wrong length, too few segments
    /// before `finish`, ...). A bug in the caller, not in the data.
    #[error("vault API misuse: {0}")]
    Misuse(String),

    /// The operating system's random generator failed.
    #[error("the system random generator failed: {0}")]
    Random(getrandom::Error),
}

/// Why a stored part or catalog was rejected; see [`VaultError::Damaged`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The blob does not start with the expected magic bytes.
    BadMagic,
    /// The header names another object: its salt or nonce prefix differ from
    /// what the catalog says (parts swapped between objects).
    WrongObject,
    /// The part starts at another segment than the catalog says (parts
    /// reordered within an object).
    WrongPosition {
        /// First segment index the catalog expects.
        expected: u32,
        /// First segment index in the header.
        found: u32,
    },
    /// The blob ends early: truncated, or its final segments are missing.
    Truncated {
        /// Expected length in bytes.
        expected: u64,
        /// Length received.
        found: u64,
    },
    /// Bytes follow the final segment.
    TrailingData,
    /// A segment failed authentication: a flipped byte, a reordered, swapped or
    /// re-flagged segment, or the wrong key. Segment numbers are indices in the
    /// whole object (or catalog).
    AuthFailed {
        /// Index of the segment that failed.
        segment: u32,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadMagic => f.write_str("bad magic bytes (not a tgferry blob)"),
            Damage::WrongObject => f.write_str("it belongs to another object"),
            Damage::WrongPosition { expected, found } => write!(
                f,
                "it starts at segment {found}, expected segment {expected} (parts out of order)"
            ),
            Damage::Truncated { expected, found } => write!(
                f,
                "truncated: {found} bytes, expected {expected} (data missing)"
            ),
            Damage::TrailingData => f.write_str("unexpected bytes after the final segment"),
            Damage::AuthFailed { segment } => {
                write!(f, "authentication failed at segment {segment}")
            }
        }
    }
}

impl From<getrandom::Error> for VaultError {
    fn from(e: getrandom::Error) -> Self {
        VaultError::Random(e)
    }
}

/// Fills `buf` from the operating system's random generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), VaultError> {
    getrandom::fill(buf).map_err(VaultError::from)
}
