//! Plain blocking file I/O for the hot path of a run: a source file read and a store part
//! written straight from and into the caller's buffer.
//!
//! `tokio::fs::File` moves every read and write to the blocking thread pool through a
//! buffer of its own, so each byte is copied once more and each call changes threads; for
//! the vault, reading and writing 1 MiB segments, that was about a tenth of the CPU
//! (bench/vault.sh). Here the call blocks where it is: inside `block_in_place` on a
//! multi-thread runtime (the worker hands its other tasks to another thread first), and
//! directly elsewhere (a current-thread runtime, as in tests).

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, a short blocking call, without stalling the runtime's other tasks.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A file read with blocking reads into the caller's buffer (see the module docs).
#[derive(Debug)]
pub struct BlockingFile(std::fs::File);

impl BlockingFile {
    /// Wraps an open file.
    pub fn new(file: std::fs::File) -> Self {
        BlockingFile(file)
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        blocking(|| self.0.write_all(buf))
    }

    /// Starts writing `len` bytes from `offset` back to the disk without waiting for it
    /// (`posix_fadvise(DONTNEED)`: Linux starts an asynchronous writeback of the range's
    /// dirty pages, and drops only pages already clean, so the bytes just written stay
    /// cached). A later [`sync_data`](Self::sync_data) then has little left to wait for.
    /// Only a hint: other systems may ignore it, and where there is no such call it does
    /// nothing.
    pub fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        if let Some(len) = std::num::NonZeroU64::new(len) {
            let _ = blocking(|| {
                rustix::fs::fadvise(&self.0, offset, Some(len), rustix::fs::Advice::DontNeed)
            });
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        let _ = (offset, len);
    }

    /// Flushes the file's data to the disk (`fdatasync`).
    pub fn sync_data(&self) -> io::Result<()> {
        blocking(|| self.0.sync_data())
    }
}

impl AsyncRead for BlockingFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let file = &mut self.get_mut().0;
        let unfilled = buf.initialize_unfilled();
        let n = blocking(|| file.read(unfilled))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = BlockingFile::new(std::fs::File::create(&path).unwrap());
        w.write_all(&data[..1_000_000]).unwrap();
        w.write_all(&data[1_000_000..]).unwrap();
        w.sync_data().unwrap();
        let mut r = BlockingFile::new(std::fs::File::open(&path).unwrap());
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert!(back == data);
    }

    #[tokio::test]
    async fn reads_and_writes_on_a_current_thread_runtime() {
        round_trip().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_and_writes_on_a_multi_thread_runtime() {
        // Inside a spawned task, where block_in_place hands the worker's tasks over.
        tokio::spawn(round_trip()).await.unwrap();
        round_trip().await;
    }
}
