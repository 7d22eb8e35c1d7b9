//! The few lines a run prints when it stops: what it did, why it stopped, what is left.

use super::shown;
use crate::runner::RunReport;
use crate::state::StopReason;
use crate::time::{human_bytes, human_duration};

/// The end-of-run summary for people.
pub fn render(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let run = &r.run;
    let _ = writeln!(
        s,
        "stored {} files ({} parts, {}) in {}",
        run.files_completed,
        run.parts_stored,
        human_bytes(run.bytes),
        human_duration(r.elapsed)
    );
    let rate = run.bytes as f64 / r.elapsed.as_secs_f64().max(0.001);
    let left = match r.files_left {
        0 => String::new(),
        n => format!("{n} files ({}) left", human_bytes(r.bytes_left)),
    };
    let why = match r.stop_reason {
        StopReason::Complete => "done: everything in the source is stored".to_string(),
        StopReason::NothingToDo => "nothing to do: no file changed since the last run".to_string(),
        StopReason::BudgetSpent => {
            let eta = if rate > 0.0 {
                format!(
                    "; at {}/s that is about {} more",
                    human_bytes(rate as u64),
                    human_duration(std::time::Duration::from_secs_f64(
                        r.bytes_left as f64 / rate
                    ))
                )
            } else {
                String::new()
            };
            let hint = if run.parts_stored == 0 {
                "\nno part could be stored within the budget: raise --budget or lower --part-size"
            } else {
                ""
            };
            format!("stopped: time budget spent; {left}{eta}; the next run continues{hint}")
        }
        StopReason::RateLimited => format!(
            "stopped: the store asked to wait {}, longer than the budget left; {left}; come back after {}",
            r.rate_limit_wait.map(human_duration).unwrap_or_default(),
            run.resume_after.map(|t| t.to_string()).unwrap_or_default()
        ),
        StopReason::Interrupted => format!("stopped: interrupted by a signal; state saved; {left}"),
        StopReason::Error => format!(
            "stopped by an error: {}; state saved",
            shown(&r.fatal.as_ref().map(|e| e.to_string()).unwrap_or_default())
        ),
        StopReason::Killed => "killed".to_string(),
    };
    let _ = writeln!(s, "{why}");
    if !r.failed.is_empty() {
        let _ = writeln!(s, "{} files failed in this run:", r.failed.len());
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
            "{} files are given up after repeated failures; `tgferry retry STATE --all` tries them again",
            r.given_up.len()
        );
    }
    s
}
