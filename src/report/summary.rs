//! The few lines a run prints when it stops: what it did, why it stopped, what is left.
//! [`headline`] is the one sentence on why it stopped, shared with the job summary, so
//! the two never disagree.

use super::{count, shown};
use crate::runner::RunReport;
use crate::state::StopReason;
use crate::time::{human_bytes, human_duration, human_time};

/// Whether everything in the source is stored: the run got through its work and no file
/// failed or is given up.
pub fn all_stored(r: &RunReport) -> bool {
    matches!(
        r.stop_reason,
        StopReason::Complete | StopReason::NothingToDo
    ) && r.files_left == 0
        && r.failed.is_empty()
        && r.given_up.is_empty()
        && r.breakdown.not_stored() == 0
}

/// The files that failed or are given up, said once: `2 files failed in this run, 1 file
/// is given up`.
fn failures(r: &RunReport) -> String {
    let mut parts = Vec::new();
    let failed_now = r
        .failed
        .iter()
        .filter(|(p, _)| !r.given_up.contains(p))
        .count() as u64;
    if failed_now > 0 {
        parts.push(format!("{} failed in this run", count(failed_now, "file")));
    }
    let earlier = r.breakdown.failing.files.saturating_sub(failed_now);
    if earlier > 0 && r.stop_reason == StopReason::NothingToDo {
        parts.push(format!("{} failed before", count(earlier, "file")));
    }
    if !r.given_up.is_empty() {
        let n = r.given_up.len() as u64;
        parts.push(format!(
            "{} given up",
            if n == 1 {
                "1 file is".to_owned()
            } else {
                format!("{n} files are")
            }
        ));
    }
    parts.join(", ")
}

/// Why the run stopped, in one sentence (no trailing newline). Says "everything in the
/// source is stored" only when that is true.
pub fn headline(r: &RunReport) -> String {
    let run = &r.run;
    let left = match r.files_left {
        0 => String::new(),
        n => format!("{} ({}) left", count(n, "file"), human_bytes(r.bytes_left)),
    };
    let with_left = |s: &str| {
        if left.is_empty() {
            s.to_owned()
        } else {
            format!("{s}; {left}")
        }
    };
    match r.stop_reason {
        StopReason::Complete | StopReason::NothingToDo if all_stored(r) => {
            if r.stop_reason == StopReason::Complete {
                "done: everything in the source is stored".to_owned()
            } else if r.files_total == 0 {
                if r.files_listed > 0 {
                    format!(
                        "nothing to do: --include/--exclude match none of the {} in the source",
                        count(r.files_listed, "file")
                    )
                } else {
                    "nothing to do: the source holds no files".to_owned()
                }
            } else {
                "nothing to do: every file in the source is stored already".to_owned()
            }
        }
        StopReason::Complete | StopReason::NothingToDo => format!(
            "not everything is stored: {}; every other file in the source is stored{}",
            failures(r),
            if r.breakdown.failing.files > 0
                || r.failed.iter().any(|(p, _)| !r.given_up.contains(p))
            {
                "; the next run tries the failed ones again"
            } else {
                ""
            }
        ),
        StopReason::BudgetSpent => format!(
            "{}; the next run continues",
            with_left("stopped: time budget spent")
        ),
        StopReason::RateLimited => {
            let mut s = format!(
                "stopped: Telegram asked to wait {}, longer than the budget left",
                r.rate_limit_wait.map(human_duration).unwrap_or_default()
            );
            if !left.is_empty() {
                s = format!("{s}; {left}");
            }
            if let Some(t) = run.resume_after {
                s.push_str(&format!("; come back after {}", human_time(t)));
            }
            s
        }
        StopReason::Interrupted => with_left("stopped: interrupted by a signal; state saved"),
        StopReason::Error => format!(
            "stopped by an error: {}; state saved",
            shown(&r.fatal.as_ref().map(|e| e.to_string()).unwrap_or_default())
        ),
        StopReason::Killed => "killed".to_string(),
    }
}

/// The end-of-run summary for people.
pub fn render(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let run = &r.run;
    let _ = writeln!(
        s,
        "stored {} ({}, {} in the store) in {}",
        count(run.files_completed, "file"),
        count(run.parts_stored, "part"),
        human_bytes(run.bytes),
        human_duration(r.took())
    );
    let mut why = headline(r);
    if r.stop_reason == StopReason::BudgetSpent {
        let rate = run.bytes as f64 / r.took().as_secs_f64().max(0.001);
        if rate > 0.0 {
            why = why.replace(
                "; the next run continues",
                &format!(
                    "; at {}/s that is about {} more; the next run continues",
                    human_bytes(rate as u64),
                    human_duration(std::time::Duration::from_secs_f64(
                        r.bytes_left as f64 / rate
                    ))
                ),
            );
        }
        if run.parts_stored == 0 {
            why.push_str(
                "\nno part could be stored within the budget: raise --budget or lower --part-size",
            );
        }
    }
    let _ = writeln!(s, "{why}");
    if !r.failed.is_empty() {
        let _ = writeln!(
            s,
            "{} in this run:",
            if r.failed.len() == 1 {
                "1 file failed".to_owned()
            } else {
                format!("{} files failed", r.failed.len())
            }
        );
        for (path, err) in r.failed.iter().take(20) {
            let _ = writeln!(s, "  {}: {}", shown(path), shown(err));
        }
        if r.failed.len() > 20 {
            let _ = writeln!(
                s,
                "  ... and {} more (see `tgferry status`)",
                r.failed.len() - 20
            );
        }
    }
    if !r.given_up.is_empty() {
        let _ = writeln!(
            s,
            "{} after repeated failures; `tgferry retry STATE --all` tries {} again",
            if r.given_up.len() == 1 {
                "1 file is given up".to_owned()
            } else {
                format!("{} files are given up", r.given_up.len())
            },
            if r.given_up.len() == 1 { "it" } else { "them" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Breakdown, Tally};

    fn report(stop: StopReason) -> RunReport {
        RunReport {
            stop_reason: stop,
            run: crate::state::RunRecord::started(crate::time::now()),
            fatal: None,
            files_left: 0,
            bytes_left: 0,
            failed: Vec::new(),
            given_up: Vec::new(),
            files_total: 3,
            bytes_total: 30,
            rate_limit_wait: None,
            elapsed: std::time::Duration::from_secs(5),
            files_listed: 3,
            breakdown: Breakdown {
                stored: Tally {
                    files: 3,
                    bytes: 30,
                },
                ..Breakdown::default()
            },
        }
    }

    #[test]
    fn a_run_with_failed_files_never_says_everything_is_stored() {
        let mut r = report(StopReason::Complete);
        assert_eq!(headline(&r), "done: everything in the source is stored");
        r.failed = vec![("b.txt".into(), "cannot be read: denied".into())];
        r.breakdown.stored = Tally {
            files: 2,
            bytes: 20,
        };
        r.breakdown.failing = Tally {
            files: 1,
            bytes: 10,
        };
        let text = render(&r);
        assert!(
            !text.contains("everything in the source is stored"),
            "{text}"
        );
        assert!(
            text.contains("not everything is stored: 1 file failed in this run"),
            "{text}"
        );
        assert!(text.contains("1 file failed in this run:\n  b.txt: cannot be read"));
        assert!(!all_stored(&r));
        // Given up in this run: said once, as given up.
        r.given_up = vec!["b.txt".into()];
        r.breakdown.failing = Tally::default();
        r.breakdown.given_up = Tally {
            files: 1,
            bytes: 10,
        };
        let line = headline(&r);
        assert_eq!(
            line,
            "not everything is stored: 1 file is given up; every other file in the source is \
             stored"
        );
        // Nothing to do, but a file given up earlier: not "everything is stored" either.
        let mut r = report(StopReason::NothingToDo);
        r.given_up = vec!["x".into()];
        r.breakdown.given_up = Tally { files: 1, bytes: 1 };
        assert!(headline(&r).starts_with("not everything is stored"));
    }

    #[test]
    fn nothing_to_do_says_why() {
        let r = report(StopReason::NothingToDo);
        assert_eq!(
            headline(&r),
            "nothing to do: every file in the source is stored already"
        );
        let mut r = report(StopReason::NothingToDo);
        r.files_total = 0;
        r.breakdown = Breakdown::default();
        assert_eq!(
            headline(&r),
            "nothing to do: --include/--exclude match none of the 3 files in the source"
        );
        r.files_listed = 0;
        assert_eq!(headline(&r), "nothing to do: the source holds no files");
    }

    #[test]
    fn counts_take_their_number() {
        let mut r = report(StopReason::Complete);
        r.run.files_completed = 1;
        r.run.parts_stored = 1;
        r.run.ended = r.run.started + std::time::Duration::from_secs(2);
        let text = render(&r);
        assert!(
            text.starts_with("stored 1 file (1 part, 0 B in the store) in 2s\n"),
            "{text}"
        );
        r.stop_reason = StopReason::BudgetSpent;
        r.files_left = 1;
        r.bytes_left = 5;
        assert!(headline(&r).contains("; 1 file (5 B) left; the next run continues"));
    }
}
