//! Live progress while a run works: an indicatif bar on a terminal, or one line at a
//! steady interval elsewhere (CI logs). Both count work done in earlier runs, so a run that
//! starts with 40% already stored starts at 40%.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{count, shown};
use crate::runner::Event;
use crate::time::{human_bytes, human_duration};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar with ETA (interactive terminal).
    Bar,
    /// A line at this interval (CI, pipes, files).
    Lines(Duration),
    /// Nothing but warnings.
    Quiet,
}

/// Picks the mode: a bar only on a terminal outside CI.
pub fn resolve(is_terminal: bool, is_ci: bool, quiet: bool, interval: Duration) -> ProgressMode {
    if quiet {
        ProgressMode::Quiet
    } else if is_terminal && !is_ci {
        ProgressMode::Bar
    } else {
        ProgressMode::Lines(interval)
    }
}

#[derive(Debug, Default)]
struct Totals {
    files_total: u64,
    files_done: u64,
    bytes_total: u64,
    bytes_done: u64,
    bytes_at_start: u64,
    /// Files being worked on, by path, as shown (with where a resumed one starts).
    current: std::collections::BTreeMap<String, String>,
    /// Small files sealed into the open pack, stored when it is.
    packed: std::collections::BTreeSet<String>,
    /// Time left in the budget when the line is drawn (`None`: no budget).
    budget_left: Option<Duration>,
}

impl Totals {
    /// Percent done; 100.0 only when every file is done (99.9 at most before that).
    fn percent(&self) -> f64 {
        let p = self.raw_percent();
        if self.files_done < self.files_total {
            p.min(99.9)
        } else {
            p
        }
    }

    fn raw_percent(&self) -> f64 {
        if self.bytes_total == 0 {
            if self.files_total == 0 {
                100.0
            } else {
                100.0 * self.files_done as f64 / self.files_total as f64
            }
        } else {
            100.0 * self.bytes_done.min(self.bytes_total) as f64 / self.bytes_total as f64
        }
    }

    /// Bytes a second since the run started.
    fn rate(&self, elapsed: Duration) -> f64 {
        let moved = self.bytes_done.saturating_sub(self.bytes_at_start);
        moved as f64 / elapsed.as_secs_f64().max(0.001)
    }

    /// `, ETA 9s` at the run's rate so far, with when the budget stops the run when that
    /// comes first; empty while nothing has moved or nothing is left.
    fn eta(&self, elapsed: Duration) -> String {
        let rate = self.rate(elapsed);
        let left = self.bytes_total.saturating_sub(self.bytes_done);
        if rate <= 0.0 || left == 0 {
            return String::new();
        }
        let eta = Duration::from_secs_f64(left as f64 / rate);
        match self.budget_left {
            // The budget ends the run before the rest is stored: say so.
            Some(b) if b < eta => format!(
                ", ETA {} (the budget stops this run in {}; the next run continues)",
                human_duration(eta),
                human_duration(b)
            ),
            _ => format!(", ETA {}", human_duration(eta)),
        }
    }

    /// The CI progress line.
    fn line(&self, elapsed: Duration) -> String {
        format!(
            "progress: {:.1}% ({} of {}), {} of {} files, {}/s{}{}",
            self.percent(),
            human_bytes(self.bytes_done),
            human_bytes(self.bytes_total),
            self.files_done,
            self.files_total,
            human_bytes(self.rate(elapsed) as u64),
            self.eta(elapsed),
            self.now(),
        )
    }

    /// The terminal bar's message, after its percent, bytes and rate: the same ETA and
    /// budget note as the CI line, then the files being worked on.
    fn bar_message(&self, elapsed: Duration) -> String {
        format!("{}{}", self.eta(elapsed), self.now())
            .trim_start_matches(", ")
            .to_owned()
    }

    /// The files being worked on: all of them, up to a few, then how many more.
    fn now(&self) -> String {
        const SHOWN: usize = 4;
        let packed = match self.packed.len() {
            0 => String::new(),
            n => format!(", {n} in the open pack"),
        };
        if self.current.is_empty() {
            return packed;
        }
        let mut names: Vec<&str> = self
            .current
            .values()
            .map(String::as_str)
            .take(SHOWN)
            .collect();
        let more = format!("{} more", self.current.len().saturating_sub(SHOWN));
        if self.current.len() > SHOWN {
            names.push(&more);
        }
        format!(
            ", now ({}): {}{packed}",
            self.current.len(),
            names.join(", ")
        )
    }
}

/// Renders events until the sender side closes; `stop_at` is when the budget stops the run
/// (`None`: no budget), so the ETA can say when the budget comes first.
pub async fn render(
    mut rx: UnboundedReceiver<Event>,
    mode: ProgressMode,
    stop_at: Option<tokio::time::Instant>,
) {
    let mut t = Totals::default();
    let started = tokio::time::Instant::now();
    let bar = match mode {
        ProgressMode::Bar => {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
                )
                .expect("valid template"),
            );
            Some(bar)
        }
        _ => None,
    };
    // The bar's message (ETA, budget, files) is redrawn every second.
    let mut tick = tokio::time::interval(match mode {
        ProgressMode::Lines(d) => d.max(Duration::from_millis(100)),
        ProgressMode::Bar => Duration::from_secs(1),
        ProgressMode::Quiet => Duration::from_secs(3600),
    });
    tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                apply(&mut t, &ev, bar.as_ref(), mode);
                if let Some(b) = &bar
                    && !matches!(ev, Event::Bytes(_))
                {
                    b.set_message(t.bar_message(started.elapsed()));
                }
            }
            _ = tick.tick(), if mode != ProgressMode::Quiet => {
                if t.files_total > 0 {
                    t.budget_left = stop_at.map(|s| s.saturating_duration_since(tokio::time::Instant::now()));
                    match &bar {
                        Some(b) => b.set_message(t.bar_message(started.elapsed())),
                        None => eprintln!("{}", t.line(started.elapsed())),
                    }
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn apply(t: &mut Totals, ev: &Event, bar: Option<&ProgressBar>, mode: ProgressMode) {
    let say = |msg: String| match bar {
        Some(b) => b.println(msg),
        None if mode != ProgressMode::Quiet => eprintln!("{msg}"),
        None => {}
    };
    match ev {
        Event::Planned {
            files_total,
            bytes_total,
            files_done,
            bytes_done,
            files_todo,
            given_up,
        } => {
            t.files_total = *files_total;
            t.bytes_total = *bytes_total;
            t.files_done = *files_done;
            t.bytes_done = *bytes_done;
            t.bytes_at_start = *bytes_done;
            if let Some(b) = bar {
                b.set_length(*bytes_total);
                b.set_position(*bytes_done);
                b.reset_eta();
            }
            let mut msg = format!(
                "{} ({}) in the source; {} already stored ({:.1}%), {} to do",
                count(*files_total, "file"),
                human_bytes(*bytes_total),
                files_done,
                t.percent(),
                files_todo
            );
            if *given_up > 0 {
                msg.push_str(&format!("; {given_up} given up (see `tgferry status`)"));
            }
            say(msg);
        }
        Event::FileStarted {
            path,
            first_part,
            parts_total,
            ..
        } => {
            let name = shown(path);
            let entry = if *first_part > 0 {
                format!(
                    "{name} (resuming at part {} of {parts_total})",
                    first_part + 1
                )
            } else {
                name.to_string()
            };
            t.current.insert(path.clone(), entry);
        }
        Event::Bytes(n) => {
            t.bytes_done += n;
            if let Some(b) = bar {
                b.inc(*n);
            }
        }
        Event::PartStored { .. } => {}
        Event::FilePacked { path } => {
            t.current.remove(path);
            t.packed.insert(path.clone());
        }
        Event::FileCompleted { path, .. } => {
            t.files_done += 1;
            t.current.remove(path);
            t.packed.remove(path);
        }
        Event::FileRetry {
            path,
            error,
            retry_in,
        } => {
            t.current.remove(path);
            t.packed.remove(path);
            say(format!(
                "retry in {}: {}: {}",
                human_duration(*retry_in),
                shown(path),
                shown(error)
            ));
        }
        Event::FileFailed {
            path,
            error,
            given_up,
        } => {
            t.current.remove(path);
            t.packed.remove(path);
            let tail = if *given_up {
                " (given up; `tgferry retry` resets it)"
            } else {
                ""
            };
            say(format!("failed: {}: {}{tail}", shown(path), shown(error)));
        }
        Event::Skipped { path, reason } => {
            say(format!("skipped: {}: {}", shown(path), shown(reason)))
        }
        Event::Waiting { wait } => say(format!(
            "store asks to wait {}; waiting",
            human_duration(*wait)
        )),
        Event::Stopping { .. } => {
            t.current.clear();
            t.packed.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_resolution() {
        let i = Duration::from_secs(30);
        assert_eq!(resolve(true, false, false, i), ProgressMode::Bar);
        assert_eq!(resolve(true, true, false, i), ProgressMode::Lines(i));
        assert_eq!(resolve(false, false, false, i), ProgressMode::Lines(i));
        assert_eq!(resolve(true, false, true, i), ProgressMode::Quiet);
    }

    #[test]
    fn progress_counts_earlier_runs() {
        let mut t = Totals::default();
        apply(
            &mut t,
            &Event::Planned {
                files_total: 10,
                bytes_total: 1000,
                files_done: 4,
                bytes_done: 400,
                files_todo: 6,
                given_up: 0,
            },
            None,
            ProgressMode::Quiet,
        );
        assert_eq!(t.percent(), 40.0);
        apply(&mut t, &Event::Bytes(100), None, ProgressMode::Quiet);
        apply(
            &mut t,
            &Event::FileCompleted {
                path: "x".into(),
                size: 100,
            },
            None,
            ProgressMode::Quiet,
        );
        let line = t.line(Duration::from_secs(1));
        assert!(
            line.starts_with("progress: 50.0% (500 B of 1000 B), 5 of 10 files, 100 B/s, ETA 5s"),
            "{line}"
        );
    }

    #[test]
    fn names_in_progress_lines_are_escaped() {
        let mut t = Totals::default();
        let path = "evil\n::error::x\x1b[2J".to_string();
        apply(
            &mut t,
            &Event::FileStarted {
                path: path.clone(),
                size: 1,
                first_part: 0,
                parts_total: 1,
            },
            None,
            ProgressMode::Quiet,
        );
        let line = t.line(Duration::from_secs(1));
        assert!(
            line.ends_with("now (1): evil\\x0a::error::x\\x1b[2J"),
            "{line}"
        );
        assert!(!line.contains('\n') && !line.contains('\x1b'));
    }

    fn started(t: &mut Totals, path: &str) {
        let ev = Event::FileStarted {
            path: path.into(),
            size: 1,
            first_part: 0,
            parts_total: 1,
        };
        apply(t, &ev, None, ProgressMode::Quiet);
    }

    #[test]
    fn files_waiting_in_the_open_pack_are_counted_apart_until_it_is_stored() {
        let mut t = Totals {
            files_total: 10,
            bytes_total: 100,
            ..Totals::default()
        };
        for p in ["a", "b", "c"] {
            started(&mut t, p);
        }
        for p in ["a", "b"] {
            let ev = Event::FilePacked { path: p.into() };
            apply(&mut t, &ev, None, ProgressMode::Quiet);
        }
        let line = t.line(Duration::from_secs(1));
        assert!(line.ends_with(", now (1): c, 2 in the open pack"), "{line}");
        for p in ["a", "b"] {
            let done = Event::FileCompleted {
                path: p.into(),
                size: 1,
            };
            apply(&mut t, &done, None, ProgressMode::Quiet);
        }
        let line = t.line(Duration::from_secs(1));
        assert!(line.ends_with(", now (1): c"), "{line}");
        assert_eq!(t.files_done, 2);
    }

    #[test]
    fn every_file_in_progress_is_counted() {
        let mut t = Totals {
            files_total: 10,
            bytes_total: 100,
            ..Totals::default()
        };
        for p in ["a", "b", "c", "d", "e", "f"] {
            started(&mut t, p);
        }
        let line = t.line(Duration::from_secs(1));
        assert!(line.ends_with(", now (6): a, b, c, d, 2 more"), "{line}");
        let done = Event::FileCompleted {
            path: "a".into(),
            size: 1,
        };
        apply(&mut t, &done, None, ProgressMode::Quiet);
        let failed = Event::FileFailed {
            path: "b".into(),
            error: "x".into(),
            given_up: false,
        };
        apply(&mut t, &failed, None, ProgressMode::Quiet);
        let line = t.line(Duration::from_secs(1));
        assert!(line.ends_with(", now (4): c, d, e, f"), "{line}");
    }

    #[test]
    fn the_eta_says_when_the_budget_stops_the_run_first() {
        let mut t = Totals {
            files_total: 2,
            bytes_total: 1000,
            bytes_done: 100,
            ..Totals::default()
        };
        // 100 B/s, 900 B left: 9s at this rate, and 5s left in the budget.
        t.budget_left = Some(Duration::from_secs(5));
        let line = t.line(Duration::from_secs(1));
        assert!(
            line.contains("ETA 9s (the budget stops this run in 5s; the next run continues)"),
            "{line}"
        );
        t.budget_left = Some(Duration::from_secs(3600));
        let line = t.line(Duration::from_secs(1));
        assert!(
            line.contains("ETA 9s") && !line.contains("budget"),
            "{line}"
        );
    }

    #[test]
    fn the_terminal_bar_says_when_the_budget_stops_the_run_first() {
        let mut t = Totals {
            files_total: 2,
            bytes_total: 1000,
            bytes_done: 100,
            ..Totals::default()
        };
        started(&mut t, "a");
        // 100 B/s, 900 B left: 9s at this rate, and 5s left in the budget.
        t.budget_left = Some(Duration::from_secs(5));
        assert_eq!(
            t.bar_message(Duration::from_secs(1)),
            "ETA 9s (the budget stops this run in 5s; the next run continues), now (1): a"
        );
        t.budget_left = Some(Duration::from_secs(3600));
        assert_eq!(t.bar_message(Duration::from_secs(1)), "ETA 9s, now (1): a");
        t.budget_left = None;
        assert_eq!(t.bar_message(Duration::from_secs(1)), "ETA 9s, now (1): a");
        // Nothing moved yet: no ETA, no budget note, only the files.
        t.budget_left = Some(Duration::from_secs(5));
        t.bytes_at_start = 100;
        assert_eq!(t.bar_message(Duration::from_secs(1)), "now (1): a");
    }
}
