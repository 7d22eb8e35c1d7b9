//! Stores: where parts go. The runner sees only the [`Store`] trait; a local directory
//! ([`local::LocalStore`]) and an in-memory double for tests ([`memory::MemoryStore`])
//! implement it, and so does a Telegram chat ([`telegram::TelegramStore`]); [`any::AnyStore`]
//! is whichever one `--store` names.
//!
//! A part is written through an [`Upload`] and becomes visible only when
//! [`Upload::finish`] returns its location; an upload dropped before that leaves nothing
//! behind under a final name.

pub mod any;
pub mod local;
pub mod memory;
pub mod telegram;

use std::future::Future;
use std::time::Duration;

use tokio::io::AsyncRead;

/// Errors from a store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No space left: the run stops (state is saved).
    #[error("store {store} is full: {message}; free space or use another --store")]
    Full {
        /// The store.
        store: String,
        /// The OS error.
        message: String,
    },
    /// The store cannot be written at all: the run stops.
    #[error("store {store} cannot be written: {message}; check its permissions and --store")]
    Unwritable {
        /// The store.
        store: String,
        /// The OS error.
        message: String,
    },
    /// The store refuses us access (credentials, permissions, the wrong kind of chat): the
    /// run stops.
    #[error("store {store} refused access: {message}")]
    Denied {
        /// The store.
        store: String,
        /// What was refused and the fix.
        message: String,
    },
    /// Another process is using the store.
    #[error(
        "store {store} is in use by another tgferry process; wait for it to finish (in GitHub \
         Actions, give the workflow a `concurrency` group)"
    )]
    Locked {
        /// The store.
        store: String,
    },
    /// The store refuses this name (reserved or unsafe); the file fails, the run goes on.
    #[error("store refuses the name {name}: {reason}")]
    Refused {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The store asks to wait before the next upload (Telegram FLOOD_WAIT and friends).
    #[error("store asks to wait {} before uploading again", crate::time::human_duration(*wait))]
    RateLimited {
        /// How long.
        wait: Duration,
    },
    /// Something that may pass: I/O hiccup, dropped connection.
    #[error("store error: {message}")]
    Transient {
        /// What happened.
        message: String,
    },
    /// A recorded part is not in the store.
    #[error("part {loc} is missing from the store")]
    Missing {
        /// The part's location.
        loc: String,
    },
}

impl StoreError {
    /// True if the whole run must stop (the store as a whole is unusable).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Full { .. } | StoreError::Unwritable { .. } | StoreError::Denied { .. }
        )
    }
}

/// One part being written.
pub trait Upload: Send + 'static {
    /// Appends bytes.
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Makes the part durable and visible; returns its location for the state file.
    fn finish(self) -> impl Future<Output = Result<String, StoreError>> + Send;
}

/// A place parts are written to and read back from.
pub trait Store: Send + Sync + 'static {
    /// The upload type.
    type Upload: Upload;
    /// A reader over a stored part.
    type Reader: AsyncRead + Send + Unpin + 'static;

    /// Checks the store is usable (creating it if needed), takes the store's lock (a second
    /// process gets [`StoreError::Locked`]) and clears leftovers of killed uploads. Called
    /// before a run; calling it again in the same process does nothing.
    fn prepare(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets until when the store may sit out server-imposed waits itself (the run's stop
    /// time; `None`: no budget). Longer waits surface as [`StoreError::RateLimited`].
    fn set_wait_deadline(&self, deadline: Option<tokio::time::Instant>) {
        let _ = deadline;
    }

    /// Starts writing a part named `name` (a clean relative path) of `len` bytes.
    fn begin(
        &self,
        name: &str,
        len: u64,
    ) -> impl Future<Output = Result<Self::Upload, StoreError>> + Send;

    /// Opens a stored part for reading.
    fn open(&self, loc: &str) -> impl Future<Output = Result<Self::Reader, StoreError>> + Send;

    /// The stored length of a part, `None` if it is missing.
    fn len(&self, loc: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Removes a part (no error if it is already gone).
    fn remove(&self, loc: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces a small named blob of the store's own (the vault key file, the encrypted
    /// catalog) atomically.
    fn put_meta(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a blob written by [`Store::put_meta`]; `None` if there is none.
    fn get_meta(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Every vault part in the store (and, where the store can tell them from other
    /// content, plain parts), for `prune`. `hint` is the highest location the caller knows,
    /// for stores that cannot list (a bot in a Telegram chat scans message ids up to it).
    fn list_parts(
        &self,
        hint: Option<&str>,
    ) -> impl Future<Output = Result<Vec<PartInfo>, StoreError>> + Send;
}

/// A part found in a store by [`Store::list_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Its location, as the state records it.
    pub loc: String,
    /// Its stored length.
    pub len: u64,
    /// When it was stored (Unix seconds), if the store knows.
    pub stored: Option<i64>,
}

/// The key file's name among a store's meta blobs.
pub const META_KEY_FILE: &str = "key.json";
/// The encrypted catalog's name among a store's meta blobs.
pub const META_CATALOG: &str = "catalog";
