//! Live progress while a run works: an indicatif bar on a terminal, or one line at a
//! steady interval elsewhere (CI logs). Both count work done in earlier runs, so a run that
//! starts with 40% already stored starts at 40%.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use super::shown;
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
    current: Option<String>,
}

impl Totals {
    fn percent(&self) -> f64 {
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

    fn line(&self, elapsed: Duration) -> String {
        let moved = self.bytes_done.saturating_sub(self.bytes_at_start);
        let rate = moved as f64 / elapsed.as_secs_f64().max(0.001);
        let left = self.bytes_total.saturating_sub(self.bytes_done);
        let eta = if rate > 0.0 && left > 0 {
            format!(
                ", ETA {}",
                human_duration(Duration::from_secs_f64(left as f64 / rate))
            )
        } else {
            String::new()
        };
        format!(
            "progress: {:.1}% ({} of {}), {} of {} files, {}/s{}{}",
            self.percent(),
            human_bytes(self.bytes_done),
            human_bytes(self.bytes_total),
            self.files_done,
            self.files_total,
            human_bytes(rate as u64),
            eta,
            self.current
                .as_deref()
                .map(|c| format!(", now: {c}"))
                .unwrap_or_default(),
        )
    }
}

/// Renders events until the sender side closes.
pub async fn render(mut rx: UnboundedReceiver<Event>, mode: ProgressMode) {
    let mut t = Totals::default();
    let started = tokio::time::Instant::now();
    let bar = match mode {
        ProgressMode::Bar => {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            Some(bar)
        }
        _ => None,
    };
    let mut tick = tokio::time::interval(match mode {
        ProgressMode::Lines(d) => d.max(Duration::from_millis(100)),
        _ => Duration::from_secs(3600),
    });
    tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                apply(&mut t, &ev, bar.as_ref(), mode);
            }
            _ = tick.tick(), if matches!(mode, ProgressMode::Lines(_)) => {
                if t.files_total > 0 {
                    eprintln!("{}", t.line(started.elapsed()));
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
                "{} files ({}) in the source; {} already stored ({:.1}%), {} to do",
                files_total,
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
            let path = shown(path);
            t.current = Some(if *first_part > 0 {
                format!(
                    "{path} (resuming at part {} of {parts_total})",
                    first_part + 1
                )
            } else {
                path.to_string()
            });
            if let Some(b) = bar {
                b.set_message(path.into_owned());
            }
        }
        Event::Bytes(n) => {
            t.bytes_done += n;
            if let Some(b) = bar {
                b.inc(*n);
            }
        }
        Event::PartStored { .. } => {}
        Event::FileCompleted { .. } => t.files_done += 1,
        Event::FileRetry {
            path,
            error,
            retry_in,
        } => {
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
        Event::Stopping { .. } => t.current = None,
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
        assert!(line.ends_with("now: evil\\x0a::error::x\\x1b[2J"), "{line}");
        assert!(!line.contains('\n') && !line.contains('\x1b'));
    }
}
