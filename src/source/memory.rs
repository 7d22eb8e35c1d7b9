//! An in-memory source for tests: files held in memory, with injectable faults and a
//! simulated read speed that waits through `tokio::time` (so a paused clock drives it).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use super::{Listing, Source, SourceEntry, SourceError};
use crate::time::Timestamp;

/// A fault to inject into the next open of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The open fails with a transient error.
    Transient,
    /// The open fails with a permanent error (like permission denied).
    Unreadable,
    /// The file's mtime changes right after it is opened, as if written to while read.
    ChangeWhileRead,
}

#[derive(Debug, Clone)]
struct File {
    data: Arc<Vec<u8>>,
    mtime: Timestamp,
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<String, File>,
    faults: HashMap<String, VecDeque<Fault>>,
    /// Opens and prefetch hints in the order they came.
    log: Vec<Access>,
}

/// One access to a [`MemorySource`], as [`MemorySource::accesses`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `open(path, offset)`.
    Open {
        /// The file.
        path: String,
        /// Where reading starts.
        offset: u64,
    },
    /// `prefetch(path, offset, len)`.
    Prefetch {
        /// The file.
        path: String,
        /// Where the hinted range starts.
        offset: u64,
        /// The hinted range's length.
        len: u64,
    },
}

/// Files in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    inner: Arc<Mutex<Inner>>,
    bytes_read: Arc<AtomicU64>,
    /// Simulated read speed in bytes per second (`None`: instant).
    speed: Option<u64>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads take `len / speed` seconds of (tokio) time.
    pub fn with_speed(mut self, bytes_per_sec: u64) -> Self {
        self.speed = Some(bytes_per_sec);
        self
    }

    /// Adds or replaces a file, with a new mtime.
    pub fn put(&self, path: &str, data: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap();
        let n = inner.files.len() as i64;
        let prev = inner.files.get(path).map(|f| f.mtime);
        let mtime = match prev {
            Some(t) => t + jiff::SignedDuration::from_secs(1),
            None => Timestamp::from_second(1_700_000_000 + n).unwrap(),
        };
        inner.files.insert(
            path.into(),
            File {
                data: Arc::new(data),
                mtime,
            },
        );
    }

    /// Queues faults for the next opens of `path`.
    pub fn inject(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut inner = self.inner.lock().unwrap();
        inner.faults.entry(path.into()).or_default().extend(faults);
    }

    /// Bytes handed out by readers so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// How many times `path` was opened.
    pub fn opens(&self, path: &str) -> u64 {
        let inner = self.inner.lock().unwrap();
        let opens = inner
            .log
            .iter()
            .filter(|a| matches!(a, Access::Open { path: p, .. } if p == path));
        opens.count() as u64
    }

    /// Every open and prefetch hint so far, in order.
    pub fn accesses(&self) -> Vec<Access> {
        self.inner.lock().unwrap().log.clone()
    }

    /// The content of a file.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        let inner = self.inner.lock().unwrap();
        inner.files.get(path).map(|f| f.data.to_vec())
    }
}

impl Source for MemorySource {
    type Reader = MemoryReader;

    async fn list(&self) -> Result<Listing, SourceError> {
        let inner = self.inner.lock().unwrap();
        Ok(Listing {
            files: inner
                .files
                .iter()
                .map(|(p, f)| SourceEntry {
                    path: p.clone(),
                    size: f.data.len() as u64,
                    mtime: f.mtime,
                })
                .collect(),
            ..Listing::default()
        })
    }

    async fn open(&self, path: &str, offset: u64) -> Result<MemoryReader, SourceError> {
        let mut inner = self.inner.lock().unwrap();
        inner.log.push(Access::Open {
            path: path.into(),
            offset,
        });
        let fault = inner.faults.get_mut(path).and_then(|q| q.pop_front());
        let file = inner
            .files
            .get_mut(path)
            .ok_or_else(|| SourceError::Vanished { path: path.into() })?;
        let data = file.data.clone();
        match fault {
            Some(Fault::Transient) => {
                return Err(SourceError::Transient {
                    path: path.into(),
                    message: "injected transient fault".into(),
                });
            }
            Some(Fault::Unreadable) => {
                return Err(SourceError::Unreadable {
                    path: path.into(),
                    message: "injected: permission denied".into(),
                });
            }
            Some(Fault::ChangeWhileRead) => {
                file.mtime += jiff::SignedDuration::from_secs(1);
            }
            None => {}
        }
        Ok(MemoryReader {
            data,
            pos: offset as usize,
            speed: self.speed,
            sleep: None,
            counter: self.bytes_read.clone(),
        })
    }

    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        self.inner.lock().unwrap().log.push(Access::Prefetch {
            path: path.into(),
            offset,
            len,
        });
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let inner = self.inner.lock().unwrap();
        let f = inner
            .files
            .get(path)
            .ok_or_else(|| SourceError::Vanished { path: path.into() })?;
        Ok(SourceEntry {
            path: path.into(),
            size: f.data.len() as u64,
            mtime: f.mtime,
        })
    }
}

/// Reads a [`MemorySource`] file, pacing itself to the simulated speed.
pub struct MemoryReader {
    data: Arc<Vec<u8>>,
    pos: usize,
    speed: Option<u64>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    counter: Arc<AtomicU64>,
}

impl AsyncRead for MemoryReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let n = buf
            .remaining()
            .min(this.data.len().saturating_sub(this.pos));
        if let Some(speed) = this.speed
            && n > 0
        {
            let sleep = this.sleep.get_or_insert_with(|| {
                let secs = n as f64 / speed as f64;
                Box::pin(tokio::time::sleep(Duration::from_secs_f64(secs)))
            });
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        this.counter.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}
