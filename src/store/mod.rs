//! Stores: where parts go. The runner sees only the [`Store`] trait; a local directory
//! ([`local::LocalStore`]) and an in-memory double for tests ([`memory::MemoryStore`])
//! implement it, and so do a Telegram chat ([`telegram::TelegramStore`]) and any rclone
//! remote ([`rclone::RcloneStore`]); [`any::AnyStore`] is whichever one `--store` names.
//!
//! A part is written through an [`Upload`] and becomes visible only when
//! [`Upload::finish`] returns its location; an upload dropped before that leaves nothing
//! behind under a final name, and is never synced to disk.
//!
//! Where a store's locations are the names parts are written under
//! ([`Store::names_are_locations`]: a folder, an rclone remote), writing a name
//! replaces what is stored there. A run that must not replace a part the state still
//! points to (a changed file's old version, in plain mode) writes the new part *staged*
//! ([`Store::begin_staged`], under [`STAGING_PREFIX`]), and once the state points at the
//! staged part, copies it under its name ([`Store::place`]). Stores whose every upload
//! gets a location of its own (Telegram messages) never need that.

pub mod any;
pub mod local;
pub mod memory;
pub mod rclone;
pub mod telegram;

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::time::Timestamp;

/// Where staged parts live in a store whose locations are names: under the store's own
/// folder, which no source path can name and no other write uses.
pub const STAGING_PREFIX: &str = ".tgferry/staged/";

/// The location of a part staged for `name` (see [`Store::begin_staged`]).
pub fn staged_name(name: &str) -> String {
    format!("{STAGING_PREFIX}{name}")
}

/// A reader over a byte range of a stored blob ([`Store::open_range`]).
pub type RangeReader = Box<dyn AsyncRead + Send + Unpin>;

/// What a store says about one stored part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStat {
    /// Its stored length.
    pub len: u64,
    /// Its modification time in the store, where the store keeps one that changes when
    /// the part is rewritten (a folder); `None` elsewhere.
    pub modified: Option<Timestamp>,
}

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
    /// A zero wait: the account that sent this part must wait, another may send it now
    /// (a store with several accounts); the part is tried again at once, not failed.
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
    /// The store keeps this part and this account may not delete it (a Telegram bot and a
    /// message older than 48 hours): reported, never a failure.
    #[error("could not delete {loc}: {reason}")]
    Undeletable {
        /// The part's location.
        loc: String,
        /// Why, and who can delete it.
        reason: String,
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

    /// [`finish`](Self::finish), also returning the part's modification time in the
    /// store where the store keeps one (see [`PartStat::modified`]), so that a later
    /// rewrite of the part can be noticed without reading it.
    fn finish_timed(
        self,
    ) -> impl Future<Output = Result<(String, Option<Timestamp>), StoreError>> + Send
    where
        Self: Sized,
    {
        async move { self.finish().await.map(|loc| (loc, None)) }
    }
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

    /// Whether a part's location is the name it was written under, so that writing a
    /// name replaces the part stored there (a folder; an rclone remote). `false` where
    /// every upload gets a location of its own and never replaces a stored part
    /// (Telegram: a new message each time). The default, `true`, is the safe assumption:
    /// a run then stages a part rather than replace one the state points to.
    fn names_are_locations(&self) -> bool {
        true
    }

    /// Starts writing a part that is to take the name `name` later, once the state no
    /// longer points at what `name` holds: it is stored meanwhile at
    /// [`staged_name`]`(name)`, which [`open`](Self::open), [`len`](Self::len),
    /// [`stat`](Self::stat) and [`remove`](Self::remove) accept, and which
    /// [`place`](Self::place) copies to `name`. Only called where
    /// [`names_are_locations`](Self::names_are_locations); the default refuses.
    fn begin_staged(
        &self,
        name: &str,
        len: u64,
    ) -> impl Future<Output = Result<Self::Upload, StoreError>> + Send {
        let _ = len;
        let refused = StoreError::Refused {
            name: name.to_owned(),
            reason: "this store cannot hold a staged part, so it cannot replace a stored \
                     copy without losing it first"
                .into(),
        };
        async move { Err(refused) }
    }

    /// Makes the bytes of the staged part `from` available under `name` as well,
    /// replacing what `name` held, and returns `name`'s modification time (as
    /// [`PartStat::modified`]). `from` is left as it is, so the state may point at either
    /// one at every instant: the caller records the move, then removes `from`. If this is
    /// interrupted or fails, `name` may hold anything, which is harmless because nothing
    /// points at it; it need not be atomic. The default refuses (the part then stays
    /// staged, still restorable).
    fn place(
        &self,
        from: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        let refused = StoreError::Refused {
            name: name.to_owned(),
            reason: format!("this store cannot copy the staged part {from} to it"),
        };
        async move { Err(refused) }
    }

    /// The staged parts the store holds (locations under [`STAGING_PREFIX`]), so that a
    /// run can remove those no state points at (left by a process that was killed). The
    /// default: none.
    fn staged(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Opens a stored part for reading.
    fn open(&self, loc: &str) -> impl Future<Output = Result<Self::Reader, StoreError>> + Send;

    /// Opens `len` bytes of a stored blob from byte `offset`: one part inside a pack
    /// (`StoredPart::offset`). The reader gives fewer than `len` bytes only if the blob
    /// ends first. The default opens the blob and reads its way to `offset`, which is
    /// correct everywhere and slow for a part far into a pack; stores override it to read
    /// only the range (a seek, an HTTP range, Telegram's aligned file requests).
    fn open_range(
        &self,
        loc: &str,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<RangeReader, StoreError>> + Send {
        let opened = self.open(loc);
        let loc = loc.to_owned();
        async move {
            let mut reader = opened.await?;
            let skipped = tokio::io::copy(&mut (&mut reader).take(offset), &mut tokio::io::sink())
                .await
                .map_err(|e| StoreError::Transient {
                    message: format!("reading {loc} up to byte {offset}: {e}"),
                })?;
            if skipped < offset {
                // The blob ends before the range starts: an empty reader says so.
                return Ok(Box::new(tokio::io::empty()) as RangeReader);
            }
            Ok(Box::new(reader.take(len)) as RangeReader)
        }
    }

    /// The stored length of a part, `None` if it is missing.
    fn len(&self, loc: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// The stored length and, where the store keeps one, the modification time of a
    /// part; `None` if it is missing. The default asks [`len`](Self::len) and knows no
    /// time.
    fn stat(&self, loc: &str) -> impl Future<Output = Result<Option<PartStat>, StoreError>> + Send {
        let len = self.len(loc);
        async move {
            Ok(len.await?.map(|len| PartStat {
                len,
                modified: None,
            }))
        }
    }

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
