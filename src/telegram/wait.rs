//! How long a Telegram request may wait ([`WaitDeadline`]): the store and a chat source
//! sit out a flood wait only when it ends before the run's stop time, or, without one
//! (restore, verify, prune, a run without a budget), when it is at most
//! [`WAIT_WITHOUT_DEADLINE`]. A longer wait comes back as a rate limit the caller stops on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Longest wait sat out when no deadline is set.
pub const WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// The instant waits must end before (set by the runner), shared by clones.
#[derive(Debug, Clone, Default)]
pub struct WaitDeadline(Arc<Mutex<Option<Instant>>>);

impl WaitDeadline {
    /// Sets (or, with `None`, clears) the stop time.
    pub fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap() = at;
    }

    /// Whether a wait of `wait` from now may be sat out.
    pub fn fits(&self, wait: Duration) -> bool {
        match *self.0.lock().unwrap() {
            Some(deadline) => Instant::now() + wait < deadline,
            None => wait <= WAIT_WITHOUT_DEADLINE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_fit_before_the_deadline_or_fifteen_minutes_without_one() {
        let waits = WaitDeadline::default();
        assert!(waits.fits(Duration::from_secs(900)));
        assert!(!waits.fits(Duration::from_secs(901)));
        waits
            .clone()
            .set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(waits.fits(Duration::from_secs(59)));
        assert!(!waits.fits(Duration::from_secs(60)), "it must end before");
        waits.set(None);
        assert!(waits.fits(Duration::from_secs(61)));
    }
}
