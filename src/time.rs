//! Wall-clock timestamps as they appear in state files and reports.
//!
//! Durations and deadlines inside a run use `tokio::time::Instant` (so tests can pause the
//! clock); this module only deals with calendar time written down for people and jq.

use std::time::SystemTime;

pub use jiff::Timestamp;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Converts a file system time to a timestamp, keeping nanoseconds; times outside jiff's
/// range (years beyond ±9999) are clamped, which no real file system produces.
pub fn from_system(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or_else(|_| {
        if t < SystemTime::UNIX_EPOCH {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        }
    })
}

/// Formats a timestamp for people, in the one form every message uses: RFC 3339 in UTC
/// at whole seconds (`2026-11-22T06:00:00Z`), as `--deadline` takes it.
pub fn human_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Formats a duration for people: `1h 2m 3s`, at second precision.
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// Formats a byte count for people with binary units: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_humane() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn times_have_one_form() {
        let t: Timestamp = "2026-12-01T06:52:48.991439545Z".parse().unwrap();
        assert_eq!(human_time(t), "2026-12-01T06:52:48Z");
        let t: Timestamp = "2026-12-01T08:52:48+02:00".parse().unwrap();
        assert_eq!(human_time(t), "2026-12-01T06:52:48Z");
    }

    #[test]
    fn pre_epoch_times_survive() {
        let t = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(86_400);
        assert_eq!(from_system(t).to_string(), "1969-12-31T00:00:00Z");
    }
}
