//! The connections file bytes travel on (`--tg-connections`). grammers-client keeps one
//! connection per data centre, so every chunk of an upload would queue on one TCP stream,
//! which Telegram paces (about 4.6 MiB/s on a free account). Telegram's file guide
//! recommends parallel queues on separate connections instead: the pool is `connections`
//! MTProto connections of their own to the home data centre, each its own TCP connection
//! and MTProto session (a random session id) under the session's authorization key, so
//! already signed in. `upload.saveFilePart`/`saveBigFilePart` and home data centre
//! `upload.getFile` take the least busy one ([`GrammersApi::invoke_file`]); everything else
//! (messages, sends, pins, files in other data centres) stays on the main connection.
//!
//! Each pool connection is a bare grammers `Sender` whose MTProto state is built with
//! gzip off. grammers-client gzips every request of 512 bytes or more at its best level
//! and keeps the result when smaller, and offers no setting for it: on encrypted chunks,
//! which never shrink, that was three quarters of tgferry's CPU time for an upload
//! (`perf`, bench/telegram.sh), and the cap on its speed on two cores.
//!
//! A pool connection carries one request at a time (what `Sender::invoke` offers); the
//! store keeps the pool busy with two requests per connection. A connection that drops,
//! or that Telegram closed while it idled, is opened again and the request sent once
//! more on the new one (uploading a chunk and reading a file are idempotent); a second
//! failure reaches the store as [`TgError::Disconnected`], which retries with backoff.

use std::sync::atomic::{AtomicUsize, Ordering};

use grammers_client::sender::{InvocationError, Sender, ServerAddr};
use grammers_client::session::Session as _;
use grammers_client::tl;
use grammers_mtproto::mtp::Encrypted;
use grammers_mtproto::transport::Full;

use super::conn::within_time;
use super::errors::map_invocation;
use super::{GrammersApi, MAX_CONNECTIONS};
use crate::telegram::api::TgError;

/// The pool: its connections, each with the number of requests on it (waiting included).
pub(super) struct Pool {
    conns: Vec<FileConn>,
    /// Where the next search for the least busy starts: ties go round the connections
    /// (when each request ends before the next starts, they would all go to the first).
    turn: AtomicUsize,
}

/// A connection of the pool, opened on first use and again after it drops.
struct FileConn {
    busy: AtomicUsize,
    sender: tokio::sync::Mutex<Option<Sender<Full, Encrypted>>>,
}

impl Pool {
    /// A pool of `connections` (clamped to 1..=[`MAX_CONNECTIONS`]), none open yet.
    pub(super) fn new(connections: usize) -> Pool {
        Pool {
            conns: (0..connections.clamp(1, MAX_CONNECTIONS))
                .map(|_| FileConn {
                    busy: AtomicUsize::new(0),
                    sender: tokio::sync::Mutex::new(None),
                })
                .collect(),
            turn: AtomicUsize::new(0),
        }
    }

    /// The number of connections.
    pub(super) fn size(&self) -> usize {
        self.conns.len()
    }

    /// The connection with the fewest requests on it (ties taken in turn), now one busier
    /// until the lease is dropped.
    fn lease(&self) -> Lease<'_> {
        let n = self.conns.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let conn = (0..n)
            .map(|i| &self.conns[(start + i) % n])
            .min_by_key(|c| c.busy.load(Ordering::Relaxed))
            .expect("at least one connection");
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Lease { conn }
    }
}

/// One request's hold on a connection of the pool.
struct Lease<'a> {
    conn: &'a FileConn,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.conn.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GrammersApi {
    /// `request` (uploading a chunk, or reading a home data centre file) on the least busy
    /// connection of the pool: see the module documentation. The outer error is a
    /// connection that could not be had; the inner result is Telegram's answer.
    pub(super) async fn invoke_file<R: tl::RemoteCall + Clone>(
        &self,
        request: &R,
    ) -> Result<Result<R::Return, InvocationError>, TgError> {
        // The session's lock and a bot's sign-in come first.
        self.ready()?;
        let lease = self.pool.lease();
        let mut sender = lease.conn.sender.lock().await;
        let mut reopened = false;
        loop {
            if sender.is_none() {
                *sender = Some(self.open_file_conn().await?);
                reopened = true;
            }
            let open = sender.as_mut().expect("opened above");
            let failure = match within_time(open.invoke(&self.outgoing(request))).await {
                Ok(Err(e)) if !matches!(e, InvocationError::Rpc(_)) => map_invocation(&e),
                Ok(answer) => return Ok(answer),
                Err(timed_out) => timed_out,
            };
            // The connection is gone (or stalled): a new one, once.
            *sender = None;
            if reopened {
                return Err(failure);
            }
            tracing::debug!("a pool connection to Telegram dropped ({failure}); opening it again");
        }
    }

    /// A new connection to the home data centre with the session's key and gzip off,
    /// introduced with `initConnection` as grammers introduces its own.
    async fn open_file_conn(&self) -> Result<Sender<Full, Encrypted>, TgError> {
        let home = self
            .session
            .home_dc_id()
            .map_err(|_| TgError::Other("the session has no home data centre".into()))?;
        let dc =
            self.session.dc_option(home).ok().flatten().ok_or_else(|| {
                TgError::Other(format!("the session knows no data centre {home}"))
            })?;
        let key = dc.auth_key.ok_or_else(|| {
            TgError::Unauthorized("the session holds no key for its home data centre".into())
        })?;
        let mtp = Encrypted::build().compression_threshold(None).finish(key);
        let address = ServerAddr::Tcp {
            address: dc.ipv4.into(),
        };
        let mut sender = within_time(Sender::connect(Full::new(), mtp, address))
            .await?
            .map_err(|e| map_invocation(&InvocationError::Io(e)))?;
        let init = tl::functions::InvokeWithLayer {
            layer: tl::LAYER,
            query: tl::functions::InitConnection {
                api_id: self.api_id,
                device_model: "tgferry".into(),
                system_version: std::env::consts::OS.into(),
                app_version: env!("CARGO_PKG_VERSION").into(),
                system_lang_code: "en".into(),
                lang_pack: String::new(),
                lang_code: "en".into(),
                proxy: None,
                params: None,
                query: tl::functions::help::GetConfig {},
            },
        };
        within_time(sender.invoke(&init))
            .await?
            .map_err(|e| map_invocation(&e))?;
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(pool: &Pool) -> Vec<usize> {
        pool.conns
            .iter()
            .map(|c| c.busy.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn requests_go_to_the_least_busy_connection() {
        let pool = Pool::new(3);
        let (a, b, c) = (pool.lease(), pool.lease(), pool.lease());
        assert_eq!(busy(&pool), [1, 1, 1]);
        // The second finishes first: it gets the next request.
        drop(b);
        let d = pool.lease();
        assert_eq!(busy(&pool), [1, 1, 1]);
        let e = pool.lease();
        assert_eq!(busy(&pool), [1, 2, 1]);
        drop((a, c, d, e));
        assert_eq!(busy(&pool), [0, 0, 0]);
        // One request at a time: they go round the connections, not all to the first.
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let lease = pool.lease();
            used.insert(busy(&pool).iter().position(|&b| b == 1));
            drop(lease);
        }
        assert_eq!(used.len(), 3, "each connection took one");
    }

    #[test]
    fn the_pool_has_one_to_max_connections() {
        assert_eq!(Pool::new(0).size(), 1);
        assert_eq!(Pool::new(5).size(), 5);
        assert_eq!(Pool::new(1000).size(), MAX_CONNECTIONS);
    }
}
