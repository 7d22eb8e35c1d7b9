//! An in-memory store for tests: parts held in memory, with injectable faults, a
//! simulated upload speed that waits through `tokio::time`, and an observer that sees the
//! store before and after every change (to check what a kill at that instant would leave).
//! Locations are names, as in a folder: writing a name replaces its part; staged parts
//! live under [`STAGING_PREFIX`]. The store counts the bytes its readers are given
//! ([`MemoryStore::bytes_read`]): a ranged read ([`Store::open_range`]) is given its
//! range only, so a test can tell it from a read of the whole part.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    PartInfo, PartStat, RangeReader, STAGING_PREFIX, Store, StoreError, Upload, staged_name,
};
use crate::time::Timestamp;

/// A stored part and its modification time (a counter, so every write gets a new one).
#[derive(Debug, Clone)]
struct Part {
    bytes: Vec<u8>,
    modified: Timestamp,
}

#[derive(Debug, Default)]
struct Inner {
    parts: BTreeMap<String, Part>,
    meta: BTreeMap<String, Vec<u8>>,
    faults: VecDeque<StoreError>,
    place_faults: VecDeque<StoreError>,
    writes: i64,
}

impl Inner {
    fn put(&mut self, loc: String, bytes: Vec<u8>) {
        self.writes += 1;
        let modified = Timestamp::from_second(1_000_000_000 + self.writes).expect("in range");
        self.parts.insert(loc, Part { bytes, modified });
    }
}

/// The parts of a store at one instant, location to bytes.
pub type Snapshot = BTreeMap<String, Vec<u8>>;

/// Called before and after every change to a [`MemoryStore`]'s parts.
type Observer = Arc<dyn Fn(&Snapshot) + Send + Sync>;

/// Parts in memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    bytes_written: Arc<AtomicU64>,
    bytes_read: Arc<AtomicU64>,
    speed: Option<u64>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("inner", &self.inner)
            .field("speed", &self.speed)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uploads take `len / speed` seconds of (tokio) time.
    pub fn with_speed(mut self, bytes_per_sec: u64) -> Self {
        self.speed = Some(bytes_per_sec);
        self
    }

    /// Makes the next `begin` (and `begin_staged`) calls fail with these errors, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = StoreError>) {
        self.inner.lock().unwrap().faults.extend(faults);
    }

    /// Makes the next `place` calls fail with these errors, in order.
    pub fn inject_place(&self, faults: impl IntoIterator<Item = StoreError>) {
        self.inner.lock().unwrap().place_faults.extend(faults);
    }

    /// Calls `f` with the store's parts before and after every change to them (a
    /// finished upload, a placed part, a removal): every instant a kill could find.
    pub fn observe(mut self, f: impl Fn(&Snapshot) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// The store's parts now.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().unwrap();
        inner
            .parts
            .iter()
            .map(|(loc, p)| (loc.clone(), p.bytes.clone()))
            .collect()
    }

    /// A store holding exactly `parts` (each with a fresh modification time).
    pub fn from_snapshot(parts: &Snapshot) -> Self {
        let store = Self::new();
        for (loc, bytes) in parts {
            store.inner.lock().unwrap().put(loc.clone(), bytes.clone());
        }
        store
    }

    /// Applies `change` to the parts, showing the observer the parts before and after.
    fn change<R>(&self, change: impl FnOnce(&mut Inner) -> R) -> R {
        if let Some(observe) = &self.observer {
            observe(&self.snapshot());
        }
        let r = change(&mut self.inner.lock().unwrap());
        if let Some(observe) = &self.observer {
            observe(&self.snapshot());
        }
        r
    }

    /// Bytes written by finished and unfinished uploads.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Bytes handed to readers: a whole part's length for each [`Store::open`], the
    /// range's for each [`Store::open_range`].
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// A stored part's bytes.
    pub fn get(&self, loc: &str) -> Option<Vec<u8>> {
        let inner = self.inner.lock().unwrap();
        inner.parts.get(loc).map(|p| p.bytes.clone())
    }

    /// Replaces a stored part's bytes (to simulate damage); its modification time
    /// changes, as a rewrite's would.
    pub fn set(&self, loc: &str, bytes: Vec<u8>) {
        self.inner.lock().unwrap().put(loc.into(), bytes);
    }

    /// Replaces a stored part's bytes and keeps its modification time (damage that a
    /// time does not show: a flipped bit on the disk).
    pub fn set_keeping_time(&self, loc: &str, bytes: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(part) = inner.parts.get_mut(loc) {
            part.bytes = bytes;
        }
    }

    /// All stored locations.
    pub fn locations(&self) -> Vec<String> {
        self.inner.lock().unwrap().parts.keys().cloned().collect()
    }
}

/// A part being written to a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryUpload {
    store: MemoryStore,
    name: String,
    buf: Vec<u8>,
}

impl Upload for MemoryUpload {
    async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if let Some(speed) = self.store.speed {
            tokio::time::sleep(Duration::from_secs_f64(buf.len() as f64 / speed as f64)).await;
        }
        self.store
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    async fn finish(self) -> Result<String, StoreError> {
        self.finish_timed().await.map(|(loc, _)| loc)
    }

    async fn finish_timed(self) -> Result<(String, Option<Timestamp>), StoreError> {
        let MemoryUpload { store, name, buf } = self;
        let modified = store.change(|inner| {
            inner.put(name.clone(), buf);
            inner.parts[&name].modified
        });
        Ok((name, Some(modified)))
    }
}

impl Store for MemoryStore {
    type Upload = MemoryUpload;
    type Reader = std::io::Cursor<Vec<u8>>;

    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn begin(&self, name: &str, _len: u64) -> Result<MemoryUpload, StoreError> {
        if let Some(fault) = self.inner.lock().unwrap().faults.pop_front() {
            return Err(fault);
        }
        Ok(MemoryUpload {
            store: self.clone(),
            name: name.into(),
            buf: Vec::new(),
        })
    }

    async fn begin_staged(&self, name: &str, len: u64) -> Result<MemoryUpload, StoreError> {
        self.begin(&staged_name(name), len).await
    }

    async fn place(&self, from: &str, name: &str) -> Result<Option<Timestamp>, StoreError> {
        if let Some(fault) = self.inner.lock().unwrap().place_faults.pop_front() {
            return Err(fault);
        }
        self.change(|inner| {
            let part = inner
                .parts
                .get(from)
                .cloned()
                .ok_or_else(|| StoreError::Missing { loc: from.into() })?;
            let modified = part.modified;
            inner.parts.insert(name.into(), part);
            Ok(Some(modified))
        })
    }

    async fn staged(&self) -> Result<Vec<String>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .parts
            .keys()
            .filter(|loc| loc.starts_with(STAGING_PREFIX))
            .cloned()
            .collect())
    }

    async fn stat(&self, loc: &str) -> Result<Option<PartStat>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.parts.get(loc).map(|p| PartStat {
            len: p.bytes.len() as u64,
            modified: Some(p.modified),
        }))
    }

    async fn open(&self, loc: &str) -> Result<Self::Reader, StoreError> {
        let bytes = self
            .get(loc)
            .ok_or_else(|| StoreError::Missing { loc: loc.into() })?;
        self.bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(std::io::Cursor::new(bytes))
    }

    /// The range only, copied out of the part (counted in [`MemoryStore::bytes_read`]).
    async fn open_range(
        &self,
        loc: &str,
        offset: u64,
        len: u64,
    ) -> Result<RangeReader, StoreError> {
        let range = {
            let inner = self.inner.lock().unwrap();
            let bytes = &inner
                .parts
                .get(loc)
                .ok_or_else(|| StoreError::Missing { loc: loc.into() })?
                .bytes;
            let end = bytes.len() as u64;
            let start = offset.min(end);
            let stop = offset.saturating_add(len).min(end);
            bytes[start as usize..stop as usize].to_vec()
        };
        self.bytes_read
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        Ok(Box::new(std::io::Cursor::new(range)))
    }

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(loc).map(|b| b.len() as u64))
    }

    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap();
        inner.meta.insert(name.into(), bytes.to_vec());
        Ok(())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.lock().unwrap().meta.get(name).cloned())
    }

    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        self.change(|inner| inner.parts.remove(loc));
        Ok(())
    }

    async fn list_parts(&self, _hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .parts
            .iter()
            .map(|(loc, p)| PartInfo {
                loc: loc.clone(),
                len: p.bytes.len() as u64,
                stored: None,
            })
            .collect())
    }
}

/// Ranged reads checked against the bytes of a part, for the stores' tests.
#[cfg(test)]
pub(crate) mod ranges {
    use tokio::io::AsyncReadExt;

    use super::super::{Store, StoreError};

    /// `(offset, len)` pairs at the edges of a part of `n` bytes: the start, an unaligned
    /// middle, a range ending exactly at the end, one running past it (short), one
    /// starting at or past the end (empty), an empty range, and lengths that would
    /// overflow an end offset.
    pub(crate) fn cases(n: u64) -> Vec<(u64, u64)> {
        vec![
            (0, 10.min(n)),
            (n / 2 + 3, 1001.min(n / 4)),
            (n - 100, 100),
            (n - 50, 100),
            (n, 10),
            (n + 10, 5),
            (7, 0),
            (0, n),
            (5, u64::MAX),
        ]
    }

    /// Reads every [`cases`] range of `loc` (which holds `blob`) and compares it with the
    /// slice of `blob`; a range of `missing`, a part the store does not hold, is
    /// [`StoreError::Missing`].
    pub(crate) async fn assert_ranges<S: Store>(store: &S, loc: &str, blob: &[u8], missing: &str) {
        let n = blob.len() as u64;
        for (offset, len) in cases(n) {
            let mut got = Vec::new();
            store
                .open_range(loc, offset, len)
                .await
                .unwrap_or_else(|e| panic!("range {offset}+{len}: {e}"))
                .read_to_end(&mut got)
                .await
                .unwrap();
            let start = offset.min(n) as usize;
            let end = offset.saturating_add(len).min(n) as usize;
            assert!(
                got == blob[start..end],
                "range {offset}+{len}: {} bytes back, not bytes {start}..{end}",
                got.len()
            );
        }
        match store.open_range(missing, 3, 4).await {
            Err(StoreError::Missing { loc }) => assert_eq!(loc, missing),
            other => panic!("a missing part: {:?}", other.map(|_| ())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ranged read returns exactly the range, and is given only those bytes: a small
    /// range far into a large part does not read the part (the default `open_range`
    /// would: it opens the part and reads its way to the offset).
    #[tokio::test]
    async fn a_ranged_read_is_given_its_range_only() {
        let store = MemoryStore::new();
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        store.set("pack", blob.clone());
        ranges::assert_ranges(&store, "pack", &blob, "gone").await;

        let before = store.bytes_read();
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(
            &mut store.open_range("pack", 250_000, 100).await.unwrap(),
            &mut got,
        )
        .await
        .unwrap();
        assert!(got == blob[250_000..250_100]);
        assert_eq!(store.bytes_read() - before, 100, "the range, not the part");
    }
}
