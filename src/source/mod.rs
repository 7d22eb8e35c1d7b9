//! Sources: where files come from. The runner sees only the [`Source`] trait; a local
//! directory ([`local::LocalSource`]), an rclone remote ([`rclone::RcloneSource`]), the
//! media of Telegram chats ([`telegram::ChatSource`]) and an in-memory double for tests
//! ([`memory::MemorySource`]) implement it.

pub mod any;
pub mod key;
pub mod local;
pub mod memory;
pub mod rclone;
pub mod telegram;

use std::future::Future;

use tokio::io::AsyncRead;

use crate::state::ChatCatalog;
use crate::time::Timestamp;

/// A regular file in a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The path relative to the source root as a [key]: `/`-separated, no `.` or
    /// `..`, a backslash written `\\` and bytes that are not UTF-8 as `\xHH`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub mtime: Timestamp,
}

/// What listing a source found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Regular files.
    pub files: Vec<SourceEntry>,
    /// Entries refused on purpose, with the reason (not regular files, names this
    /// platform or remote cannot keep).
    pub refused: Vec<(String, String)>,
    /// Entries that could not be examined (permission denied on a folder, ...).
    pub errors: Vec<(String, SourceError)>,
    /// Permission bits (`mode & 0o7777`) of the files, where the source has them (a local
    /// folder on Unix; rclone remotes say nothing).
    pub modes: std::collections::BTreeMap<String, u32>,
    /// The folders under the root (not the root), empty ones included.
    pub folders: Vec<FolderEntry>,
    /// What the source knows identifies a file's content without reading it (a Telegram
    /// media id), by path: files with the same identity and size have the same bytes, so
    /// a vault run reads only one of them.
    pub identities: std::collections::BTreeMap<String, String>,
}

/// A folder a listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// Its path relative to the source, as a [key].
    pub path: String,
    /// Its modification time.
    pub mtime: Timestamp,
    /// Its permission bits, where the source has them.
    pub mode: Option<u32>,
    /// It holds nothing at all.
    pub empty: bool,
}

/// Errors from a source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The source root itself is missing or unusable: the whole run stops.
    #[error("source {root}: {message}")]
    Unavailable {
        /// The source as given.
        root: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The file is gone.
    #[error("{path}: no longer exists in the source")]
    Vanished {
        /// The file.
        path: String,
    },
    /// The file cannot be read (permission denied and the like); retried next run.
    #[error("{path}: cannot be read: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A read failed in a way that may pass (I/O error, timeout).
    #[error("{path}: read failed: {message}")]
    Transient {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The source asks to wait longer than the run may (a Telegram flood wait past the
    /// budget): the run stops `rate_limited`, nothing is lost, the next run goes on.
    #[error("{what}: Telegram asks to wait {} before the next request", crate::time::human_duration(*wait))]
    RateLimited {
        /// What was being read.
        what: String,
        /// How long.
        wait: std::time::Duration,
    },
    /// The file changed while it was read; it is read again later.
    #[error("{path}: changed while being read ({detail})")]
    Changed {
        /// The file.
        path: String,
        /// What changed.
        detail: String,
    },
}

impl SourceError {
    /// True if retrying within the same run may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Transient { .. } | SourceError::Changed { .. }
        )
    }
}

/// A place files are read from.
pub trait Source: Send + Sync + 'static {
    /// A reader over one file's bytes.
    type Reader: AsyncRead + Send + Unpin + 'static;

    /// Lists every file under the root.
    fn list(&self) -> impl Future<Output = Result<Listing, SourceError>> + Send;

    /// Opens `path` for reading from byte `offset`.
    fn open(
        &self,
        path: &str,
        offset: u64,
    ) -> impl Future<Output = Result<Self::Reader, SourceError>> + Send;

    /// Looks at one file again (size and mtime), to notice changes during a read.
    fn stat(&self, path: &str) -> impl Future<Output = Result<SourceEntry, SourceError>> + Send;

    /// The latest instant a wait asked for by the source (a flood wait) may end for the
    /// source to sit it out; a longer wait is [`SourceError::RateLimited`]. The runner
    /// sets it before listing. The default has no waits.
    fn set_wait_deadline(&self, at: Option<tokio::time::Instant>) {
        let _ = at;
    }

    /// Hands over what the state kept of the source's chats from earlier runs (a
    /// `telegram:` source; others ignore it), before the listing.
    fn restore_catalog(&self, chats: &std::collections::BTreeMap<String, ChatCatalog>) {
        let _ = chats;
    }

    /// What to keep of the source's chats for the next run, after a listing (`None`:
    /// nothing, the state's entry is left as it is).
    fn catalog(&self) -> Option<std::collections::BTreeMap<String, ChatCatalog>> {
        None
    }

    /// A hint that `len` bytes of `path` from `offset` will be read soon, so the source
    /// can start fetching them while other files are processed. Never waits and never
    /// fails: a wrong or useless hint costs nothing but the hint. The default ignores it.
    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        let _ = (path, offset, len);
    }

    /// How many files next in line the runner hints at ([`Source::prefetch`]) when it
    /// runs `jobs` at a time. The default: as many as run at once.
    fn read_ahead_files(&self, jobs: usize) -> usize {
        jobs
    }
}

/// A source error from a failed read of `path`: the [`SourceError`] a reader carried
/// inside the I/O error (a Telegram reader's flood wait), else a transient failure.
pub fn read_error(path: &str, err: std::io::Error) -> SourceError {
    match err.get_ref().and_then(|e| e.downcast_ref::<SourceError>()) {
        Some(inner) => inner.clone(),
        None => SourceError::Transient {
            path: path.to_owned(),
            message: err.to_string(),
        },
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read (short only at the
/// end). Used for sources and for stored parts alike.
pub async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Checks that a relative path is a clean [key]: `/`-separated, no empty, `.` or `..`
/// part, not absolute, no NUL, and a backslash only in the escapes `\\` and `\xHH` (so
/// it decodes to exactly one name). `/`, `.` and NUL are never escaped, so checking the
/// key's text checks the name's bytes.
pub fn is_clean_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && key::decode(path).is_some()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::is_clean_relative;

    #[test]
    fn clean_paths() {
        for ok in [
            "a",
            "a/b",
            "dir with space/ü.txt",
            "a..b",
            ".hidden",
            "back\\\\slash",
            "caf\\xe9",
            "\\\\..\\\\",
        ] {
            assert!(is_clean_relative(ok), "{ok}");
        }
        let not_keys = ["a\\b", "a\\..\\b", "\\x41", "a\\"];
        for bad in ["", "/a", "a//b", "a/./b", "../a", "a/..", "a\0"]
            .into_iter()
            .chain(not_keys)
        {
            assert!(!is_clean_relative(bad), "{bad:?}");
        }
    }
}
