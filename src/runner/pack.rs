//! Packs: small files of a vault run share stored parts (docs/format.md, "Packs").
//!
//! A file no larger than the pack threshold is read whole, its content id computed (so a
//! content already stored is recorded without storing anything, whichever pack holds it),
//! and its one part encrypted in memory. The sealed part is appended to the run's open
//! pack ([`Packer`]); once the pack reaches its target size, or the budget would not let
//! a larger one finish, or the run has nothing else to do, the pack is uploaded as one
//! stored part, and only then is each of its objects recorded in the state with the
//! pack's location and its own offset and length. A pack in progress is never visible as
//! complete: a kill loses at most the pack in flight, whose files the next run stores
//! again.
//!
//! One pack is open at a time, and the task that fills it uploads it while holding it, so
//! at most one pack is in memory (plus each worker's file being sealed): other workers
//! wait for the upload, which costs little, because a pack is one store request where its
//! files would have been hundreds.

use tokio::time::Instant;

use super::Event;
use super::transfer::{Context, FileError, vault_entry, vault_part_name};
use crate::source::{Source, SourceEntry, SourceError};
use crate::state::{Object, Record, StoredPart};
use crate::store::{Store, StoreError, Upload};
use crate::vault::{
    MAC_LEN, ObjectParams, PART_HEADER_LEN, PartEncryptor, PartMac, TAG_LEN, content_id,
};

/// The default largest file that goes into a pack.
pub const DEFAULT_PACK_THRESHOLD: u64 = 8 << 20;
/// The default size a pack is closed at.
pub const DEFAULT_PACK_SIZE: u64 = 64 << 20;
/// The size packs close at under a deadline until the store's throughput is known.
pub const PROBE_PACK_SIZE: u64 = 256 << 10;

/// One object in the open pack.
#[derive(Debug, Clone)]
struct Member {
    entry: SourceEntry,
    id: String,
    offset: u64,
    len: u64,
    salt: String,
    nonce_prefix: String,
}

/// The pack being filled.
#[derive(Debug, Default)]
struct OpenPack {
    bytes: Vec<u8>,
    members: Vec<Member>,
}

/// How the upload of a pack ended, for the files in it.
#[derive(Debug)]
pub enum PackOutcome {
    /// The pack is stored and its files recorded as completed.
    Stored {
        /// The files recorded.
        paths: Vec<String>,
    },
    /// The upload failed; the files are not stored.
    Failed {
        /// The files that were in the pack.
        paths: Vec<String>,
        /// Why.
        error: FileError,
    },
    /// The run stopped before the pack could be uploaded; the files are not stored.
    Dropped {
        /// The files that were in the pack.
        paths: Vec<String>,
    },
}

/// A small file sealed in memory: its one part, ready for a pack.
pub struct Sealed {
    id: String,
    bytes: Vec<u8>,
    salt: String,
    nonce_prefix: String,
}

/// The run's pack writer.
#[derive(Debug)]
pub struct Packer {
    /// Files of at most this many bytes are packed.
    pub threshold: u64,
    /// A pack is uploaded once it holds this many bytes.
    pub target: u64,
    open: tokio::sync::Mutex<OpenPack>,
    /// Buffers small files were sealed in, kept for the next ones: allocating (and
    /// zeroing) a fresh one of up to the threshold per file left the allocator holding
    /// hundreds of MiB it had freed (a 1 GiB run peaked at 240 MiB instead of 40).
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Sealing buffers kept at most.
const SPARE_BUFFERS: usize = 8;

/// What adding a file to the open pack did: whether the file is in a pack (the open
/// one, or one uploaded meanwhile) or waits for the next run, and how the packs uploaded
/// during the call ended.
#[derive(Debug)]
pub struct Added {
    /// The file is in a pack; false: the budget has no room for it (deferred).
    pub packed: bool,
    /// Packs uploaded during the call, the file's own among them if it was.
    pub flushed: Vec<PackOutcome>,
}

impl Packer {
    /// A pack writer for files of at most `threshold` bytes, closing packs at `target`.
    pub fn new(threshold: u64, target: u64) -> Self {
        Packer {
            threshold,
            target: target.max(1),
            open: tokio::sync::Mutex::new(OpenPack::default()),
            spare: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A buffer of `len` bytes to seal a file in (its old contents are overwritten).
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self.spare.lock().unwrap().pop().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Keeps a sealed file's buffer for the next one.
    pub fn recycle(&self, sealed: Sealed) {
        let mut spare = self.spare.lock().unwrap();
        if spare.len() < SPARE_BUFFERS {
            spare.push(sealed.bytes);
        }
    }

    /// Whether `size` bytes go into a pack (the object must be one part).
    pub fn takes(&self, size: u64, part_size: u64) -> bool {
        size <= self.threshold && size <= part_size
    }

    /// Whether a pack is open with files in it.
    /// (A pack being written to counts as open.)
    pub fn has_open(&self) -> bool {
        self.open.try_lock().map_or(true, |o| !o.members.is_empty())
    }

    /// Adds a sealed file to the open pack, uploading the pack when it is full (or when
    /// the budget would not let it grow): the caller's file is then stored too, or not.
    pub async fn add<S: Source, T: Store>(
        &self,
        ctx: &Context<S, T>,
        entry: &SourceEntry,
        sealed: Sealed,
    ) -> Added {
        let len = sealed.bytes.len() as u64;
        let mut open = self.open.lock().await;
        if open.members.is_empty() {
            // Bytes without members are those of a pack whose upload was cut off.
            open.bytes.clear();
        }
        let mut flushed = Vec::new();
        let grown = open.bytes.len() as u64 + len;
        let target = self.target_now(ctx);
        if !open.members.is_empty() && (grown > target || !ctx.budget.can_finish(grown)) {
            // The pack cannot take this file: it goes now, and the file starts the next.
            flushed.push(self.upload(ctx, &mut open).await);
        }
        if ctx.cancel.is_cancelled() || !ctx.budget.can_finish(len) {
            self.recycle(sealed);
            return Added {
                packed: false,
                flushed,
            };
        }
        let offset = open.bytes.len() as u64;
        if open.bytes.capacity() == 0 {
            let target = usize::try_from(self.target).unwrap_or(usize::MAX);
            open.bytes.reserve_exact(target.max(sealed.bytes.len()));
        }
        open.bytes.extend_from_slice(&sealed.bytes);
        open.members.push(Member {
            entry: entry.clone(),
            id: sealed.id.clone(),
            offset,
            len,
            salt: sealed.salt.clone(),
            nonce_prefix: sealed.nonce_prefix.clone(),
        });
        self.recycle(sealed);
        if open.bytes.len() as u64 >= target {
            flushed.push(self.upload(ctx, &mut open).await);
        }
        Added {
            packed: true,
            flushed,
        }
    }

    /// The size the open pack closes at. Under a deadline, until the run has measured the
    /// store's throughput, packs are small ([`PROBE_PACK_SIZE`]): a first pack of the
    /// full size could take longer than the budget, be cut off at the deadline, and be
    /// tried again, as large, by every run after.
    fn target_now<S, T>(&self, ctx: &Context<S, T>) -> u64 {
        if ctx.budget.stop_at().is_some() && ctx.budget.estimate(1).is_none() {
            self.target.min(PROBE_PACK_SIZE)
        } else {
            self.target
        }
    }

    /// Uploads the open pack, if it holds anything (the run has nothing else for it).
    pub async fn flush<S: Source, T: Store>(&self, ctx: &Context<S, T>) -> PackOutcome {
        let mut open = self.open.lock().await;
        self.upload(ctx, &mut open).await
    }

    /// Uploads `open` (left empty) and records its files.
    async fn upload<S: Source, T: Store>(
        &self,
        ctx: &Context<S, T>,
        open: &mut OpenPack,
    ) -> PackOutcome {
        // The pack's buffer is kept (emptied) for the next pack, whatever happens.
        let members = std::mem::take(&mut open.members);
        let paths: Vec<String> = members.iter().map(|m| m.entry.path.clone()).collect();
        if members.is_empty() {
            open.bytes.clear();
            return PackOutcome::Stored { paths };
        }
        let t0 = Instant::now();
        let stored = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => None,
            r = write_pack(&*ctx.store, &open.bytes) => Some(r),
        };
        let bytes = open.bytes.len() as u64;
        open.bytes.clear();
        let loc = match stored {
            None => return PackOutcome::Dropped { paths },
            Some(Err(error)) => {
                return PackOutcome::Failed {
                    paths,
                    error: error.into(),
                };
            }
            Some(Ok(loc)) => loc,
        };
        ctx.budget.observe(bytes, t0.elapsed());
        match record(ctx, &loc, &members) {
            Ok(()) => {}
            Err(error) => return PackOutcome::Failed { paths, error },
        }
        for m in &members {
            ctx.events.emit(Event::FileCompleted {
                path: m.entry.path.clone(),
                size: m.entry.size,
            });
        }
        PackOutcome::Stored { paths }
    }
}

/// Writes a pack (part blobs back to back) as one stored part under a fresh opaque name;
/// returns its location. Also used by `prune --repack`.
pub(crate) async fn write_pack<T: Store>(store: &T, bytes: &[u8]) -> Result<String, StoreError> {
    let name = vault_part_name().map_err(|e| StoreError::Transient {
        message: e.to_string(),
    })?;
    let mut upload = store.begin(&name, bytes.len() as u64).await?;
    for chunk in bytes.chunks(super::transfer::CHUNK_SIZE) {
        upload.write(chunk).await?;
    }
    upload.finish().await
}

/// Records every file of a stored pack as completed, its object pointing into the pack.
fn record<S, T>(ctx: &Context<S, T>, loc: &str, members: &[Member]) -> Result<(), FileError> {
    let mut state = ctx.state.lock().unwrap();
    let at = crate::time::now();
    let mut first = true;
    for m in members {
        let object = (!state.state().objects.contains_key(&m.id)).then(|| {
            let object = Object {
                size: m.entry.size,
                part_size: ctx.part_size,
                stored_at: at,
                parts: vec![StoredPart {
                    loc: loc.to_owned(),
                    len: m.len,
                    sha256: String::new(),
                    salt: Some(m.salt.clone()),
                    nonce_prefix: Some(m.nonce_prefix.clone()),
                    store_mtime: None,
                    offset: Some(m.offset),
                }],
            };
            (m.id.clone(), object)
        });
        let old = state.state().completed.get(&m.entry.path).cloned();
        state.record(Record::FileCompleted {
            path: m.entry.path.clone(),
            entry: vault_entry(&m.entry, &m.id, old, at),
            // The pack is one stored part, counted with its first file.
            fresh_parts: u64::from(std::mem::take(&mut first)),
            fresh_bytes: m.len,
            object,
        })?;
    }
    Ok(())
}

/// Reads a small file whole and seals its one part in memory. Returns the content id with
/// the sealed bytes; the caller records a content already stored instead of packing it.
pub async fn seal<S: Source, T: Store>(
    ctx: &Context<S, T>,
    keys: &super::VaultKeys,
    packer: &Packer,
    e: &SourceEntry,
) -> Result<Option<Sealed>, FileError> {
    // A fresh salt and nonce prefix, as for every part (docs/format.md, "Writer
    // invariants").
    let params = ObjectParams::new_random(e.size, ctx.part_size)?;
    debug_assert_eq!(params.part_count(), 1);
    let stored_len = usize::try_from(params.part_stored_len(0))
        .map_err(|_| crate::vault::VaultError::Misuse("part too large for memory".into()))?;
    let mut bytes = packer.buffer(stored_len);
    let mut enc = PartEncryptor::new(&keys.master, &params, 0)?;
    bytes[..PART_HEADER_LEN].copy_from_slice(&enc.header());
    let mut reader = ctx.source.open(&e.path, 0).await?;
    let mut mac = PartMac::new(&keys.content_id);
    let seg_lens: Vec<usize> = (0..params.part_segment_count(0))
        .map(|i| params.segment_plaintext_len(i))
        .collect();
    let mut pos = PART_HEADER_LEN;
    let mut done = 0u64;
    for &len in &seg_lens {
        let seg = &mut bytes[pos..pos + len];
        let got = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Ok(None),
            r = crate::source::read_full(&mut reader, seg) => r.map_err(|err| crate::source::read_error(&e.path, err))?,
        };
        done += got as u64;
        if got < len {
            return Err(SourceError::Changed {
                path: e.path.clone(),
                detail: format!("ended after {done} bytes, {} expected", e.size),
            }
            .into());
        }
        mac.update(seg);
        ctx.events.emit(Event::Bytes(len as u64));
        pos += len + TAG_LEN;
    }
    drop(reader);
    // Change detection: the file must look exactly as listed after the read.
    super::transfer::check_unchanged(ctx, e).await?;
    let mac: [u8; MAC_LEN] = mac.finalize();
    let id = content_id(&keys.content_id, e.size, ctx.part_size, &[mac])?.to_hex();
    let mut pos = PART_HEADER_LEN;
    for len in seg_lens {
        enc.encrypt_segment_in_place(&mut bytes[pos..pos + len + TAG_LEN])?;
        pos += len + TAG_LEN;
    }
    enc.finish()?;
    Ok(Some(Sealed {
        id,
        bytes,
        salt: hex::encode(params.salt()),
        nonce_prefix: hex::encode(params.nonce_prefix()),
    }))
}

impl Sealed {
    /// The content id of the sealed file.
    pub fn id(&self) -> &str {
        &self.id
    }
}
