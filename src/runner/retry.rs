//! Retry timing as data: the tiers a transiently failing file waits through.
//!
//! The policy is a [`backon::BackoffBuilder`], so the same value drives the runner's
//! per-file retry queue (where a waiting file must not hold a worker) and plain
//! `backon::Retryable` loops around store and API calls.

use std::time::Duration;

/// The default tiers: 30 s, 1 min, 2 min, 5 min, 10 min.
pub const DEFAULT_TIERS: [Duration; 5] = [
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(300),
    Duration::from_secs(600),
];

/// Waits between tries of one file within a run; when they run out, the file has failed
/// for this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    tiers: Vec<Duration>,
}

impl RetryPolicy {
    /// A policy with these waits, in order.
    pub fn new(tiers: Vec<Duration>) -> Self {
        RetryPolicy { tiers }
    }

    /// The waits.
    pub fn tiers(&self) -> &[Duration] {
        &self.tiers
    }

    /// Parses `30s,1m,2m` (humantime durations separated by commas); an empty list means
    /// no retries within a run.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(RetryPolicy::new(Vec::new()));
        }
        text.split(',')
            .map(|t| {
                humantime::parse_duration(t.trim())
                    .map_err(|e| format!("{t:?} is not a duration ({e}); write e.g. 30s,1m,2m"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(RetryPolicy::new)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(DEFAULT_TIERS.to_vec())
    }
}

impl backon::BackoffBuilder for RetryPolicy {
    type Backoff = std::vec::IntoIter<Duration>;

    fn build(self) -> Self::Backoff {
        self.tiers.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn default_tiers_in_order_then_exhausted() {
        let delays: Vec<_> = RetryPolicy::default().build().collect();
        let secs: Vec<_> = delays.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 300, 600]);
    }

    #[test]
    fn parse_lists() {
        assert_eq!(
            RetryPolicy::parse("1s, 2m").unwrap().tiers(),
            [Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert!(RetryPolicy::parse("none").unwrap().tiers().is_empty());
        let err = RetryPolicy::parse("30s,soon").unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }
}
