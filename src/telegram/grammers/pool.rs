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

use std::sync::Arc;
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

/// How many connections file bytes use, and how many requests each has in flight.
pub(super) struct Load {
    busy: Vec<AtomicUsize>,
}

impl Load {
    /// A pool of `connections` (clamped to 1..=[`MAX_CONNECTIONS`]).
    pub(super) fn new(connections: usize) -> Load {
        Load {
            busy: (0..connections.clamp(1, MAX_CONNECTIONS))
                .map(|_| AtomicUsize::new(0))
                .collect(),
        }
    }

    /// The number of connections.
    pub(super) fn size(&self) -> usize {
        self.busy.len()
    }

    /// The slot with the fewest requests in flight (the lowest on a tie), now one busier.
    fn take(&self) -> usize {
        let slot = (0..self.busy.len())
            .min_by_key(|&i| self.busy[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        self.busy[slot].fetch_add(1, Ordering::Relaxed);
        slot
    }
}

/// One request's hold on a slot of the pool (freed on drop).
struct Lease<'a> {
    load: &'a Load,
    slot: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.load.busy[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection of the pool, opened on first use and again after it drops.
pub(super) struct FileConn {
    sender: tokio::sync::Mutex<Option<Sender<Full, Encrypted>>>,
}

impl FileConn {
    fn new() -> FileConn {
        FileConn {
            sender: tokio::sync::Mutex::new(None),
        }
    }
}

/// The pool's connections (none are open yet).
pub(super) fn connections(load: &Load) -> Vec<Arc<FileConn>> {
    (0..load.size())
        .map(|_| Arc::new(FileConn::new()))
        .collect()
}

impl GrammersApi {
    /// `request` (uploading a chunk, or reading a home data centre file) on the least busy
    /// connection of the pool: see the module documentation. The outer error is a
    /// connection that could not be had; the inner result is Telegram's answer.
    pub(super) async fn invoke_file<R: tl::RemoteCall>(
        &self,
        request: &R,
    ) -> Result<Result<R::Return, InvocationError>, TgError> {
        let lease = Lease {
            load: &self.pool,
            slot: self.pool.take(),
        };
        let conn = self
            .state()
            .files
            .get(lease.slot)
            .cloned()
            .ok_or_else(|| TgError::Other("not connected".into()))?;
        let mut sender = conn.sender.lock().await;
        let mut reopened = false;
        loop {
            if sender.is_none() {
                *sender = Some(self.open_file_conn().await?);
                reopened = true;
            }
            let open = sender.as_mut().expect("opened above");
            let failure = match within_time(open.invoke(request)).await {
                Ok(Err(e)) if !matches!(e, InvocationError::Rpc(_)) => map_invocation(&e),
                Ok(answer) => return Ok(answer),
                Err(timed_out) => timed_out,
            };
            // The connection is gone (or stalled): a new one, once.
            *sender = None;
            if reopened {
                return Err(failure);
            }
            tracing::debug!(
                slot = lease.slot,
                "a pool connection to Telegram dropped ({failure}); opening it again"
            );
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

    #[test]
    fn requests_go_to_the_least_busy_connection() {
        let load = Load::new(3);
        assert_eq!((load.take(), load.take(), load.take()), (0, 1, 2));
        // Slot 1 finishes first: it gets the next request.
        load.busy[1].fetch_sub(1, Ordering::Relaxed);
        assert_eq!(load.take(), 1);
        assert_eq!(load.take(), 0);
    }

    #[test]
    fn the_pool_has_one_to_max_connections() {
        assert_eq!(Load::new(0).size(), 1);
        assert_eq!(Load::new(5).size(), 5);
        assert_eq!(Load::new(1000).size(), MAX_CONNECTIONS);
    }
}
