//! The time budget: when a run must stop starting work, and whether a part fits.
//!
//! All time comes from `tokio::time::Instant`, so tests drive budgets with a paused clock.
//! The budget is measured from process start; `stop_at` is the deadline less the reserve
//! kept for saving state. No part starts unless it can finish by `stop_at` at the measured
//! throughput (with a safety margin); work still running at `stop_at` is abandoned.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Safety factor on throughput estimates: a part must fit with 25% to spare.
const MARGIN: f64 = 1.25;

/// A run's time budget and throughput estimate.
#[derive(Debug)]
pub struct Budget {
    started: Instant,
    deadline: Option<Instant>,
    stop_at: Option<Instant>,
    /// Exponentially weighted bytes per second of recent parts (per worker).
    rate: Mutex<Option<f64>>,
}

impl Budget {
    /// A budget with no deadline: the run goes on until the work is done.
    pub fn unlimited(started: Instant) -> Self {
        Budget {
            started,
            deadline: None,
            stop_at: None,
            rate: Mutex::new(None),
        }
    }

    /// A budget ending at `deadline`, of which `reserve` is kept for saving state.
    pub fn until(started: Instant, deadline: Instant, reserve: Duration) -> Self {
        Budget {
            started,
            deadline: Some(deadline),
            stop_at: Some(
                deadline
                    .checked_sub(reserve)
                    .unwrap_or(started)
                    .max(started),
            ),
            rate: Mutex::new(None),
        }
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The hard deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// When work must stop (deadline less reserve), if any.
    pub fn stop_at(&self) -> Option<Instant> {
        self.stop_at
    }

    /// Time left until `stop_at` (`None`: unlimited).
    pub fn remaining(&self) -> Option<Duration> {
        self.stop_at
            .map(|s| s.saturating_duration_since(Instant::now()))
    }

    /// True once `stop_at` has passed.
    pub fn is_spent(&self) -> bool {
        self.stop_at.is_some_and(|s| Instant::now() >= s)
    }

    /// Estimated time to move `bytes` at the measured per-worker throughput.
    pub fn estimate(&self, bytes: u64) -> Option<Duration> {
        let rate = (*self.rate.lock().unwrap())?;
        Some(Duration::from_secs_f64(bytes as f64 / rate * MARGIN))
    }

    /// Whether a part of `bytes` can start now and finish before `stop_at`.
    pub fn can_finish(&self, bytes: u64) -> bool {
        let Some(stop_at) = self.stop_at else {
            return true;
        };
        let now = Instant::now();
        if now >= stop_at {
            return false;
        }
        match self.estimate(bytes) {
            Some(need) => now + need <= stop_at,
            None => true,
        }
    }

    /// Whether waiting `wait` (then moving `bytes`) still fits before `stop_at`.
    pub fn fits_wait(&self, wait: Duration, bytes: u64) -> bool {
        let Some(stop_at) = self.stop_at else {
            return true;
        };
        let need = wait + self.estimate(bytes).unwrap_or_default();
        Instant::now() + need <= stop_at
    }

    /// Records that `bytes` took `took` for one worker.
    pub fn observe(&self, bytes: u64, took: Duration) {
        if bytes < 64 * 1024 || took < Duration::from_millis(1) {
            return; // too small to say anything about throughput
        }
        let sample = bytes as f64 / took.as_secs_f64();
        let mut rate = self.rate.lock().unwrap();
        *rate = Some(match *rate {
            Some(r) => r * 0.7 + sample * 0.3,
            None => sample,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_at_keeps_the_reserve() {
        let t0 = Instant::now();
        let b = Budget::until(t0, t0 + Duration::from_secs(100), Duration::from_secs(10));
        assert_eq!(b.stop_at(), Some(t0 + Duration::from_secs(90)));
        assert_eq!(b.remaining(), Some(Duration::from_secs(90)));
        tokio::time::advance(Duration::from_secs(91)).await;
        assert!(b.is_spent());
        assert!(!b.can_finish(1));
    }

    #[tokio::test(start_paused = true)]
    async fn parts_that_cannot_finish_do_not_start() {
        let t0 = Instant::now();
        let b = Budget::until(t0, t0 + Duration::from_secs(100), Duration::ZERO);
        assert!(b.can_finish(u64::MAX), "no estimate yet: optimistic");
        b.observe(10 << 20, Duration::from_secs(1)); // 10 MiB/s
        assert!(b.can_finish(500 << 20)); // 50 s * 1.25 < 100 s
        assert!(!b.can_finish(900 << 20)); // 90 s * 1.25 > 100 s
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!b.can_finish(500 << 20));
        assert!(b.can_finish(100 << 20));
        assert!(b.fits_wait(Duration::from_secs(20), 0));
        assert!(!b.fits_wait(Duration::from_secs(41), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_larger_than_budget_stops_at_once() {
        let t0 = Instant::now();
        let b = Budget::until(t0, t0 + Duration::from_secs(5), Duration::from_secs(60));
        assert!(b.is_spent());
    }
}
