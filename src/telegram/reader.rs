//! [`ChunkReader`]: the bytes of a file that a task downloads ahead, handed over in order
//! through a small channel, as an [`AsyncRead`]. The Telegram store's part reader and a
//! chat source's media reader are both one; the task is aborted when the reader is dropped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

/// Reads the chunks a download task sends, in order; an error sent ends the read with it.
#[derive(Debug)]
pub struct ChunkReader {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    _task: AbortOnDropHandle<()>,
}

impl ChunkReader {
    /// A reader of what `task` sends on the channel `chunks` receives from.
    pub fn new(
        chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
        task: tokio::task::JoinHandle<()>,
    ) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Vec::new(),
            pos: 0,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// A reader with nothing to read.
    pub fn empty() -> ChunkReader {
        let (_, rx) = mpsc::channel(1);
        ChunkReader::new(rx, tokio::spawn(async {}))
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.current.len() {
                let n = (self.current.len() - self.pos).min(buf.remaining());
                let start = self.pos;
                buf.put_slice(&self.current[start..start + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn chunks_read_in_order_and_an_error_ends_the_read() {
        let (tx, rx) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            for chunk in [b"ab".to_vec(), Vec::new(), b"cde".to_vec()] {
                tx.send(Ok(chunk)).await.unwrap();
            }
            tx.send(Err(io::Error::other("gone"))).await.unwrap();
        });
        let mut reader = ChunkReader::new(rx, task);
        let mut got = [0u8; 5];
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcde");
        let err = reader.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(err.to_string(), "gone");
        let mut all = Vec::new();
        ChunkReader::empty().read_to_end(&mut all).await.unwrap();
        assert!(all.is_empty());
    }
}
