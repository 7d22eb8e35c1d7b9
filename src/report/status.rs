//! `tgferry status`: what a person wants to know about a state file after
//! `gh run download`, as text or as JSON for scripts.

use serde::Serialize;

use super::{count, shown};
use crate::state::{Failed, RunRecord, State, StopReason};
use crate::time::{Timestamp, human_bytes, human_time};

/// A state summarised.
#[derive(Debug, Serialize, PartialEq)]
pub struct Status {
    /// Source of the job.
    pub source: String,
    /// Store of the job.
    pub store: String,
    /// State format version.
    pub version: u32,
    /// When the state was last written.
    pub last_updated: Timestamp,
    /// Percent of the source's bytes stored, as of the last listing.
    pub percent_done: f64,
    /// Files stored.
    pub completed_files: u64,
    /// Their bytes.
    pub completed_bytes: u64,
    /// Files with stored parts but not finished.
    pub in_progress: Vec<InProgressStatus>,
    /// Files that failed and will be retried.
    pub failed: Vec<FailureStatus>,
    /// Files given up.
    pub given_up: Vec<FailureStatus>,
    /// Entries refused on purpose.
    pub skipped: u64,
    /// Source size at the last listing (files, bytes).
    pub source_files: u64,
    /// Source bytes at the last listing.
    pub source_bytes: u64,
    /// The last runs, newest last.
    pub last_runs: Vec<RunRecord>,
    /// Runs so far.
    pub runs: u64,
}

/// One unfinished multi-part file.
#[derive(Debug, Serialize, PartialEq)]
pub struct InProgressStatus {
    /// Path.
    pub path: String,
    /// Parts stored.
    pub parts_done: u64,
    /// Parts in all.
    pub parts_total: u64,
    /// Bytes stored.
    pub bytes_done: u64,
    /// File size.
    pub size: u64,
}

/// One failing file.
#[derive(Debug, Serialize, PartialEq)]
pub struct FailureStatus {
    /// Path.
    pub path: String,
    /// The failure entry.
    #[serde(flatten)]
    pub failure: Failed,
}

/// How many runs `status` shows.
const RUNS_SHOWN: usize = 5;

impl Status {
    /// Summarises a state.
    pub fn of(state: &State) -> Self {
        let completed_bytes: u64 = state.completed.values().map(|c| c.size).sum();
        let in_progress: Vec<_> = state
            .in_progress
            .iter()
            .map(|(path, ip)| InProgressStatus {
                path: path.clone(),
                parts_done: ip.parts.len() as u64,
                parts_total: ip.parts_total,
                bytes_done: ip.parts.iter().map(|p| p.len).sum(),
                size: ip.size,
            })
            .collect();
        let (given_up, failed): (Vec<_>, Vec<_>) = state
            .failed
            .iter()
            .map(|(path, f)| FailureStatus {
                path: path.clone(),
                failure: f.clone(),
            })
            .partition(|f| f.failure.given_up);
        let last = state
            .runs
            .iter()
            .rev()
            .find(|r| r.bytes_total > 0 || r.files_total > 0);
        let (source_files, source_bytes) = last.map_or((0, 0), |r| (r.files_total, r.bytes_total));
        // A changed file being stored again counts with its new parts only.
        let done = state
            .completed
            .iter()
            .filter(|(path, _)| !state.in_progress.contains_key(*path))
            .map(|(_, c)| c.size)
            .sum::<u64>()
            + in_progress.iter().map(|i| i.bytes_done).sum::<u64>();
        let percent = if source_bytes == 0 {
            if source_files == 0 || state.completed.len() as u64 >= source_files {
                100.0
            } else {
                0.0
            }
        } else {
            (100.0 * done as f64 / source_bytes as f64).min(100.0)
        };
        // 100 % means nothing is left: not while a file is in progress, or failed (or given
        // up) with no stored copy (99.9 % is what rounding to one decimal may show instead).
        let unstored_failure = state
            .failed
            .keys()
            .any(|path| !state.completed.contains_key(path));
        let left = !in_progress.is_empty() || unstored_failure || done < source_bytes;
        let percent_done = if left { percent.min(99.9) } else { percent };
        let skip = state.runs.len().saturating_sub(RUNS_SHOWN);
        Status {
            source: state.job.source.clone(),
            store: state.job.store.clone(),
            version: state.version,
            last_updated: state.last_updated,
            percent_done,
            completed_files: state.completed.len() as u64,
            completed_bytes,
            in_progress,
            failed,
            given_up,
            skipped: state.skipped.len() as u64,
            source_files,
            source_bytes,
            last_runs: state.runs[skip..].to_vec(),
            runs: state.stats.runs,
        }
    }

    /// The text for people. Everything taken from the state (a file that may come from
    /// anywhere) is made safe to print ([`shown`]).
    pub fn render(&self, state_path: &str) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "state:    {} (format {}, written {})",
            shown(state_path),
            self.version,
            human_time(self.last_updated)
        );
        let _ = writeln!(
            s,
            "job:      {} -> {}",
            shown(&self.source),
            shown(&self.store)
        );
        let _ = writeln!(
            s,
            "progress: {:.1}% of {} ({} at the last listing)",
            self.percent_done,
            human_bytes(self.source_bytes),
            count(self.source_files, "file")
        );
        // A column of counts: the noun keeps its width either way.
        let files = |n: usize| if n == 1 { "file " } else { "files" };
        let _ = writeln!(
            s,
            "  completed    {:>8} {}  {}",
            self.completed_files,
            files(self.completed_files as usize),
            human_bytes(self.completed_bytes)
        );
        let _ = writeln!(
            s,
            "  in progress  {:>8} {}",
            self.in_progress.len(),
            files(self.in_progress.len())
        );
        for ip in &self.in_progress {
            let _ = writeln!(
                s,
                "    {}: {} of {} parts ({} of {})",
                shown(&ip.path),
                ip.parts_done,
                ip.parts_total,
                human_bytes(ip.bytes_done),
                human_bytes(ip.size)
            );
        }
        let _ = writeln!(
            s,
            "  failed       {:>8} {}  (retried by the next run)",
            self.failed.len(),
            files(self.failed.len())
        );
        let _ = writeln!(
            s,
            "  given up     {:>8} {}  (`tgferry retry STATE PATH...` or `--all` tries them again)",
            self.given_up.len(),
            files(self.given_up.len())
        );
        let _ = writeln!(
            s,
            "  skipped      {:>8} {}",
            self.skipped,
            if self.skipped == 1 {
                "entry"
            } else {
                "entries"
            }
        );
        if !self.last_runs.is_empty() {
            let _ = writeln!(s, "last runs ({} in all):", self.runs);
            for r in &self.last_runs {
                let took = r.ended.duration_since(r.started);
                let _ = writeln!(
                    s,
                    "  {}  {:>9}  {:<13} {}, {}, {} in the store{}",
                    human_time(r.started),
                    crate::time::human_duration(took.unsigned_abs()),
                    stop_word(r.stop_reason),
                    count(r.files_completed, "file"),
                    count(r.parts_stored, "part"),
                    human_bytes(r.bytes),
                    r.resume_after
                        .map(|t| format!(", come back after {}", human_time(t)))
                        .unwrap_or_default()
                        + &r.detail
                            .as_deref()
                            .map(|d| format!(": {}", shown(d)))
                            .unwrap_or_default()
                );
            }
        }
        let failures: Vec<_> = self.given_up.iter().chain(&self.failed).collect();
        if !failures.is_empty() {
            let _ = writeln!(s, "failures:");
            for f in failures {
                let _ = writeln!(
                    s,
                    "  {}{}: failed in {}, last {}: {}",
                    shown(&f.path),
                    if f.failure.given_up {
                        " [given up]"
                    } else {
                        ""
                    },
                    count(f.failure.attempts, "run"),
                    human_time(f.failure.last_failed),
                    shown(&f.failure.last_error)
                );
            }
        }
        s
    }
}

/// The stop reason as written in state files.
pub fn stop_word(r: StopReason) -> &'static str {
    match r {
        StopReason::Complete => "complete",
        StopReason::NothingToDo => "nothing_to_do",
        StopReason::BudgetSpent => "budget_spent",
        StopReason::RateLimited => "rate_limited",
        StopReason::Interrupted => "interrupted",
        StopReason::Error => "error",
        StopReason::Killed => "killed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Completed, Encryption, InProgress, Job};

    fn ts(s: i64) -> crate::time::Timestamp {
        crate::time::Timestamp::from_second(s).unwrap()
    }

    fn state_of(sizes: &[(&str, u64)], listed_bytes: u64) -> State {
        let mut st = State::new(Job {
            source: "s".into(),
            store: "t".into(),
            encryption: Encryption::None,
            vault_id: None,
        });
        for (path, size) in sizes {
            st.completed.insert(
                (*path).into(),
                Completed {
                    size: *size,
                    mtime: ts(1),
                    stored_at: ts(2),
                    parts: Vec::new(),
                    object: None,
                    versions: Vec::new(),
                },
            );
        }
        st.runs.push(RunRecord {
            started: ts(1),
            ended: ts(2),
            stop_reason: StopReason::BudgetSpent,
            files_completed: 0,
            files_failed: 0,
            parts_stored: 0,
            bytes: 0,
            resume_after: None,
            detail: None,
            tool_version: String::new(),
            files_total: sizes.len() as u64,
            bytes_total: listed_bytes,
        });
        st
    }

    #[test]
    fn everything_stored_is_100_percent() {
        let st = state_of(&[("a", 100), ("b", 100)], 200);
        assert_eq!(Status::of(&st).percent_done, 100.0);
    }

    #[test]
    fn a_file_in_progress_is_never_100_percent() {
        // `b` changed and is being stored again: its old copy does not count as done.
        let mut st = state_of(&[("a", 100), ("b", 100)], 200);
        st.in_progress.insert(
            "b".into(),
            InProgress {
                size: 100,
                mtime: ts(3),
                part_size: 64,
                parts_total: 2,
                started: ts(4),
                parts: Vec::new(),
                vault: None,
            },
        );
        assert_eq!(Status::of(&st).percent_done, 50.0);
        // Nearly done still does not round up to 100.0.
        let mut st = state_of(&[("a", 19_999)], 20_000);
        st.in_progress.insert(
            "b".into(),
            InProgress {
                size: 1,
                mtime: ts(3),
                part_size: 64,
                parts_total: 1,
                started: ts(4),
                parts: Vec::new(),
                vault: None,
            },
        );
        let status = Status::of(&st);
        assert!(status.percent_done < 100.0);
        assert!(!status.render("s.json").contains("100.0%"));
    }
}
