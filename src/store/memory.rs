//! An in-memory store for tests: parts held in memory, with injectable faults and a
//! simulated upload speed that waits through `tokio::time`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{PartInfo, Store, StoreError, Upload};

#[derive(Debug, Default)]
struct Inner {
    parts: BTreeMap<String, Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    faults: VecDeque<StoreError>,
}

/// Parts in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    bytes_written: Arc<AtomicU64>,
    speed: Option<u64>,
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

    /// Makes the next `begin` calls fail with these errors, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = StoreError>) {
        self.inner.lock().unwrap().faults.extend(faults);
    }

    /// Bytes written by finished and unfinished uploads.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// A stored part's bytes.
    pub fn get(&self, loc: &str) -> Option<Vec<u8>> {
        self.inner.lock().unwrap().parts.get(loc).cloned()
    }

    /// Replaces a stored part's bytes (to simulate damage).
    pub fn set(&self, loc: &str, bytes: Vec<u8>) {
        self.inner.lock().unwrap().parts.insert(loc.into(), bytes);
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
        let mut inner = self.store.inner.lock().unwrap();
        inner.parts.insert(self.name.clone(), self.buf);
        Ok(self.name)
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

    async fn open(&self, loc: &str) -> Result<Self::Reader, StoreError> {
        self.get(loc)
            .map(std::io::Cursor::new)
            .ok_or_else(|| StoreError::Missing { loc: loc.into() })
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
        self.inner.lock().unwrap().parts.remove(loc);
        Ok(())
    }

    async fn list_parts(&self, _hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .parts
            .iter()
            .map(|(loc, b)| PartInfo {
                loc: loc.clone(),
                len: b.len() as u64,
                stored: None,
            })
            .collect())
    }
}
