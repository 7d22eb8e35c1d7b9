//! The connections file bytes travel on. grammers keeps one connection per data centre, so
//! every chunk of an upload would queue on one TCP stream, which Telegram paces (about
//! 4.6 MiB/s on a free account). Telegram's file guide recommends parallel queues on
//! separate connections instead: the pool is the main connection plus `connections - 1`
//! more grammers clients on the same session, each its own TCP connection and MTProto
//! session (grammers draws a random session id per connection) under the same
//! authorization key. `upload.saveFilePart`/`saveBigFilePart` and `upload.getFile` in the
//! home data centre take the least busy one ([`GrammersApi::lease`]); everything else
//! (messages, sends, pins, files in other data centres) stays on the main connection.
//!
//! A pool connection that drops is replaced by a fresh one on the same session
//! ([`GrammersApi::replace_dropped`]); the request is retried by the store like any other
//! dropped request. The main connection is replaced by `reconnect`, as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::conn::Conn;
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

/// One request's hold on a pool connection: the connection, and its slot (freed on drop).
pub(super) struct Lease<'a> {
    load: &'a Load,
    /// Which connection: 0 is the main one.
    pub(super) slot: usize,
    /// The connection itself.
    pub(super) conn: Arc<Conn>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.load.busy[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

impl GrammersApi {
    /// Starts the pool's extra connections (after signing in, so that they find the
    /// session's key and, for a bot, its sign-in). Nothing is sent until they are used.
    pub(super) fn start_pool(&self) -> Vec<Arc<Conn>> {
        (1..self.pool.size())
            .map(|_| Arc::new(self.start()))
            .collect()
    }

    /// The least busy connection of the pool for one file request.
    pub(super) fn lease(&self) -> Result<Lease<'_>, TgError> {
        let state = self.state();
        let main = state
            .conn
            .as_ref()
            .ok_or_else(|| TgError::Other("not connected".into()))?;
        let slot = self.pool.take();
        // Before the pool is started (or when it is smaller), the main connection serves.
        let conn = slot
            .checked_sub(1)
            .and_then(|i| state.extra.get(i))
            .unwrap_or(main);
        Ok(Lease {
            load: &self.pool,
            slot,
            conn: Arc::clone(conn),
        })
    }

    /// After `result` of a request on `lease`: a pool connection that dropped is replaced
    /// (once, however many requests on it failed). The main connection is `reconnect`'s.
    pub(super) fn replace_dropped<T>(&self, lease: &Lease<'_>, result: &Result<T, TgError>) {
        if lease.slot == 0 || !matches!(result, Err(TgError::Disconnected(_))) {
            return;
        }
        let mut state = self.state();
        if let Some(extra) = state.extra.get_mut(lease.slot - 1)
            && Arc::ptr_eq(extra, &lease.conn)
        {
            tracing::debug!(
                slot = lease.slot,
                "a pool connection to Telegram dropped; starting another"
            );
            *extra = Arc::new(self.start());
        }
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
