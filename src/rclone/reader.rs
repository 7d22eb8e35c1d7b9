//! An object's bytes from an offset, read through the run's `rclone rcd` (`--rc-serve`
//! with HTTP ranges). With a window (the part size) each request stops at the window's end
//! instead of making the remote read ahead into the next part; a reader that goes past a
//! window asks for the next one on its own. A read that breaks off ends with an I/O error,
//! never a silent short read; so does one that waits [`IDLE_TIMEOUT`] for a byte (the time
//! the caller takes between reads does not count).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, ReadBuf};

use super::rcd::{IDLE_TIMEOUT, ReadVia};
use super::{RcError, Rcd, Remote};

type Opening = Pin<Box<dyn Future<Output = Result<Option<Incoming>, RcError>> + Send>>;

/// Where a reader is.
enum Phase {
    /// A response body is arriving.
    Body(Incoming),
    /// The next window was asked for.
    Opening(Opening),
    /// Nothing more to read.
    Eof,
}

/// An object's bytes from an offset (see the module docs).
pub struct RangeReader {
    rcd: Arc<Rcd>,
    /// (Boxed: the reader is a variant of the source's reader enum, kept small.)
    remote: Box<Remote>,
    path: String,
    via: ReadVia,
    window: Option<u64>,
    /// The size the caller knows, if any: no request starts at or past it.
    end: Option<u64>,
    /// Offset of the next byte the current (or next) request delivers.
    next: u64,
    /// The current request's length, for windowed reads.
    count: Option<u64>,
    /// Bytes the current request delivered.
    delivered: u64,
    cur: Bytes,
    phase: Phase,
    /// When waiting for the next byte turns into an error.
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Whether the last poll returned `Pending` waiting for the body (the wait goes on).
    waiting: bool,
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("path", &self.path)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl RangeReader {
    /// Opens `path` of `remote` at `offset` and waits for the first answer, so that an
    /// error at the start (object gone, credentials refused) comes back with its kind.
    pub async fn open(
        rcd: Arc<Rcd>,
        remote: Remote,
        path: &str,
        via: ReadVia,
        offset: u64,
        window: Option<u64>,
        end: Option<u64>,
    ) -> Result<Self, RcError> {
        let mut r = RangeReader {
            rcd,
            remote: Box::new(remote),
            path: path.to_owned(),
            via,
            window: window.filter(|w| *w > 0),
            end,
            next: offset,
            count: None,
            delivered: 0,
            cur: Bytes::new(),
            phase: Phase::Eof,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            waiting: false,
        };
        if let Some(fut) = r.launch() {
            r.phase = match fut.await? {
                Some(body) => Phase::Body(body),
                None => Phase::Eof,
            };
        }
        Ok(r)
    }

    /// A reader over `bytes` of `path` from `offset`, fetched ahead of time and ending
    /// where the object does: it delivers them and ends, asking rclone for nothing.
    pub fn fetched(
        rcd: Arc<Rcd>,
        remote: Remote,
        path: &str,
        via: ReadVia,
        offset: u64,
        bytes: Bytes,
    ) -> Self {
        RangeReader {
            rcd,
            remote: Box::new(remote),
            path: path.to_owned(),
            via,
            window: None,
            end: None,
            next: offset + bytes.len() as u64,
            count: None,
            delivered: 0,
            cur: bytes,
            phase: Phase::Eof,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            waiting: false,
        }
    }

    /// The request for the next window; `None` when there is nothing left to read.
    fn launch(&mut self) -> Option<Opening> {
        if self.end.is_some_and(|e| self.next >= e) {
            return None;
        }
        // Not limited to the known size: an object that grew since is read as it is now
        // (the caller notices the change), never cut short here.
        self.count = self.window;
        self.delivered = 0;
        let (rcd, fs, path, from, via) = (
            self.rcd.clone(),
            self.remote.fs.clone(),
            self.path.clone(),
            self.next,
            self.via,
        );
        let to = self.count.map(|c| from + c - 1);
        Some(Box::pin(
            async move { rcd.get(&fs, &path, from, to, via).await },
        ))
    }

    fn io_error(&self, what: &str) -> std::io::Error {
        std::io::Error::other(format!(
            "reading {} through rclone failed: {}",
            self.remote.redact(&self.remote.target(&self.path)),
            self.remote.redact(what)
        ))
    }
}

impl AsyncRead for RangeReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        // A wait for the body goes on across polls that return `Pending`; the timer is
        // set when one starts (not on every read: that would cost a timer update each).
        let was_waiting = std::mem::replace(&mut this.waiting, false);
        loop {
            if !this.cur.is_empty() {
                let n = out.remaining().min(this.cur.len());
                out.put_slice(&this.cur[..n]);
                this.cur.advance(n);
                return Poll::Ready(Ok(()));
            }
            match &mut this.phase {
                Phase::Body(body) => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => {
                        if !was_waiting {
                            let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                            this.idle.as_mut().reset(deadline);
                        }
                        if this.idle.as_mut().poll(cx).is_ready() {
                            this.phase = Phase::Eof;
                            let what = format!(
                                "no byte for {}",
                                crate::time::human_duration(IDLE_TIMEOUT)
                            );
                            return Poll::Ready(Err(this.io_error(&what)));
                        }
                        this.waiting = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            this.delivered += data.len() as u64;
                            this.next += data.len() as u64;
                            this.cur = data;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.phase = Phase::Eof;
                        return Poll::Ready(Err(this.io_error(&e.to_string())));
                    }
                    Poll::Ready(None) => {
                        // A full window: the object may go on past it.
                        let full = this.count.is_some_and(|c| this.delivered == c);
                        this.phase = match full.then(|| this.launch()).flatten() {
                            Some(fut) => Phase::Opening(fut),
                            None => Phase::Eof,
                        };
                    }
                },
                Phase::Opening(fut) => match fut.as_mut().poll(cx) {
                    // (Bounded by the request itself; the body's wait starts afresh.)
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Some(body))) => this.phase = Phase::Body(body),
                    Poll::Ready(Ok(None)) => this.phase = Phase::Eof,
                    Poll::Ready(Err(e)) => {
                        this.phase = Phase::Eof;
                        return Poll::Ready(Err(this.io_error(&e.message)));
                    }
                },
                Phase::Eof => return Poll::Ready(Ok(())),
            }
        }
    }
}
