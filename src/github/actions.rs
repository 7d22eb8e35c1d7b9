//! What a run shows on a GitHub Actions job page: a job summary (markdown appended to
//! `$GITHUB_STEP_SUMMARY`, kept under GitHub's 1 MiB), step outputs (`$GITHUB_OUTPUT` in
//! heredoc form), warning annotations for files given up (at most 10, GitHub's limit per
//! step) and log groups. Used only when `GITHUB_ACTIONS=true`; all rendering is pure so it
//! can be tested without a runner.
//!
//! File names and errors are untrusted text: in a workflow command they are escaped by
//! GitHub's rules ([`escape_data`], [`escape_property`]) after [`shown`] has written out
//! their control characters, so a name can neither end the command nor start another; in
//! the summary they are markdown-escaped the same way.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use crate::report::shown;
use crate::report::status::{Status, stop_word};
use crate::runner::RunReport;
use crate::time::{human_bytes, human_duration};

/// GitHub's cap on one step's summary.
pub const SUMMARY_LIMIT: usize = 1 << 20;
/// GitHub shows at most 10 annotations of a kind per step.
pub const MAX_ANNOTATIONS: usize = 10;

/// The runner's files, when running inside GitHub Actions.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    /// `$GITHUB_STEP_SUMMARY`.
    pub summary: Option<PathBuf>,
    /// `$GITHUB_OUTPUT`.
    pub output: Option<PathBuf>,
}

impl Actions {
    /// `Some` inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub fn from_env() -> Option<Self> {
        if std::env::var("GITHUB_ACTIONS").ok().as_deref() != Some("true") {
            return None;
        }
        let path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Some(Actions {
            summary: path("GITHUB_STEP_SUMMARY"),
            output: path("GITHUB_OUTPUT"),
        })
    }

    /// Writes the summary, the outputs and the annotations for a finished run. Failures to
    /// write are warned about, never fatal: the state is what matters.
    pub fn finish(&self, report: &RunReport, status: &Status) {
        if let Some(path) = &self.summary {
            append(path, &summary(report, status));
        }
        if let Some(path) = &self.output {
            append(path, &outputs(&Outputs::of(report, status)));
        }
        let mut err = std::io::stderr().lock();
        for line in annotations(&report.given_up, status) {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Writes the outputs for a run that ended in an error before it could report.
    pub fn failed(&self, message: &str) {
        if let Some(path) = &self.output {
            let o = Outputs {
                done: false,
                remaining: None,
                completed: None,
                failed: None,
                stop_reason: "error",
            };
            append(path, &outputs(&o));
        }
        if let Some(path) = &self.summary {
            append(
                path,
                &format!("## tgferry\n\n**The run failed:** {}\n", md(message)),
            );
        }
    }
}

/// The runner's folders that GitHub empties or throws away after the job, by the
/// variables that name them (and `/tmp`).
const EPHEMERAL_DIRS: [&str; 3] = ["RUNNER_TEMP", "GITHUB_WORKSPACE", "RUNNER_TOOL_CACHE"];

/// A warning when a local store (`store`, canonical as the job identity records it) lies
/// under a folder of the runner that does not outlive the job: the next run would find
/// an empty store. `var` reads the environment (tests pass their own).
pub fn ephemeral_store_warning(
    store: &std::path::Path,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<String> {
    let under = |dir: &std::path::Path| {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        store.starts_with(&dir)
    };
    let (name, _) = EPHEMERAL_DIRS
        .iter()
        .filter_map(|k| {
            var(k)
                .filter(|v| !v.is_empty())
                .map(|v| (*k, PathBuf::from(v)))
        })
        .chain(std::iter::once(("/tmp", PathBuf::from("/tmp"))))
        .find(|(_, dir)| under(dir))?;
    let place = if name == "/tmp" {
        "/tmp".to_owned()
    } else {
        format!("${name}")
    };
    Some(format!(
        "the store {} lies in the runner's {place}, which disappears after the job: the next \
         run finds the store empty. Store into Telegram (telegram:CHAT), an rclone remote, or \
         a folder on a self-hosted runner's own disk outside its work folders \
         (docs/github-actions.md)",
        store.display()
    ))
}

/// Starts a collapsible log group (on stderr, in order with the progress lines).
pub fn group(title: &str) {
    eprintln!("::group::{}", escape_data(&shown(title)));
}

/// Ends the log group.
pub fn end_group() {
    eprintln!("::endgroup::");
}

fn append(path: &PathBuf, text: &str) {
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = result {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

/// The step outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// Everything in the source is stored (nothing left, nothing given up).
    pub done: bool,
    /// Files not yet stored.
    pub remaining: Option<u64>,
    /// Files stored in all (the whole state, not only this run).
    pub completed: Option<u64>,
    /// Files failing in the state (retried later or given up).
    pub failed: Option<u64>,
    /// Why the run stopped, as in the state file.
    pub stop_reason: &'static str,
}

impl Outputs {
    /// The outputs of a finished run.
    pub fn of(report: &RunReport, status: &Status) -> Self {
        let failed = (status.failed.len() + status.given_up.len()) as u64;
        Outputs {
            done: crate::report::summary::all_stored(report) && failed == 0,
            remaining: Some(report.files_left),
            completed: Some(status.completed_files),
            failed: Some(failed),
            stop_reason: stop_word(report.stop_reason),
        }
    }
}

/// `$GITHUB_OUTPUT` lines in heredoc form (`name<<DELIM`, value, `DELIM`).
pub fn outputs(o: &Outputs) -> String {
    let mut s = String::new();
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for (name, value) in [
        ("done", o.done.to_string()),
        ("remaining", num(o.remaining)),
        ("completed", num(o.completed)),
        ("failed", num(o.failed)),
        ("stop-reason", o.stop_reason.to_string()),
    ] {
        let delim = delimiter(&value);
        let _ = write!(s, "{name}<<{delim}\n{value}\n{delim}\n");
    }
    s
}

/// A heredoc delimiter that does not occur in `value`.
fn delimiter(value: &str) -> String {
    let mut n = 0u32;
    loop {
        let d = format!("ghadelimiter_tgferry_{n}");
        if !value.contains(&d) {
            return d;
        }
        n += 1;
    }
}

/// `::warning::` lines for files given up: at most [`MAX_ANNOTATIONS`], then a count.
pub fn annotations(given_up: &[String], status: &Status) -> Vec<String> {
    let mut lines = Vec::new();
    for raw in given_up.iter().take(MAX_ANNOTATIONS) {
        let why = status
            .given_up
            .iter()
            .find(|f| &f.path == raw)
            .map(|f| shown(&f.failure.last_error))
            .unwrap_or("failed in too many runs".into());
        let path = shown(raw);
        lines.push(format!(
            "::warning title={}::{}",
            escape_property(&format!("tgferry gave up on {path}")),
            escape_data(&format!(
                "{path}: {why}; `tgferry retry STATE {path}` tries it again"
            ))
        ));
    }
    if given_up.len() > MAX_ANNOTATIONS {
        lines.push(format!(
            "::warning title=tgferry::{}",
            escape_data(&format!(
                "and {} more files given up (see the job summary or `tgferry status`)",
                given_up.len() - MAX_ANNOTATIONS
            ))
        ));
    }
    lines
}

/// Escapes a workflow command's message (its data, after the second `::`) by GitHub's
/// rules: `%`, CR and LF.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (`title=...`) by GitHub's rules: as data,
/// and `:` and `,`, which would end the value.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Untrusted text for the markdown summary: control characters written out, markdown
/// escaped.
fn md(s: &str) -> String {
    md_escape(&shown(s))
}

fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '*' | '_' | '`' | '<' | '>' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// The job summary: this run and the totals as tables, files given up, what is left.
/// Lists are cut so the whole stays under [`SUMMARY_LIMIT`].
pub fn summary(r: &RunReport, st: &Status) -> String {
    let mut s = String::new();
    let run = &r.run;
    let _ = writeln!(
        s,
        "## tgferry: {}\n",
        md_escape(&shown(&crate::report::summary::headline(r)))
    );
    let _ = writeln!(s, "### This run\n");
    let _ = writeln!(s, "| | |\n| --- | --- |");
    let _ = writeln!(s, "| stop reason | `{}` |", stop_word(r.stop_reason));
    let _ = writeln!(s, "| took | {} |", human_duration(r.took()));
    let _ = writeln!(s, "| files stored | {} |", run.files_completed);
    let _ = writeln!(s, "| parts stored | {} |", run.parts_stored);
    let _ = writeln!(s, "| bytes stored | {} |", human_bytes(run.bytes));
    let _ = writeln!(s, "| files failed | {} |", r.failed.len());
    if let Some(t) = run.resume_after {
        let _ = writeln!(s, "| come back after | {} |", crate::time::human_time(t));
    }
    if let Some(e) = &r.fatal {
        let _ = writeln!(s, "| error | {} |", md(&e.to_string()));
    }
    // Every file in the source is in one row, so the rows add up to the first.
    let b = &r.breakdown;
    let _ = writeln!(s, "\n### Totals\n");
    let _ = writeln!(s, "| | files | bytes |\n| --- | ---: | ---: |");
    for (what, t) in [
        ("stored", b.stored),
        ("partly stored (resumed next run)", b.partly_stored),
        ("not stored yet", b.to_do),
        ("failing, retried next run", b.failing),
        ("given up", b.given_up),
    ] {
        let _ = writeln!(s, "| {what} | {} | {} |", t.files, human_bytes(t.bytes));
    }
    let _ = writeln!(
        s,
        "| **in the source** | **{}** | **{}** |",
        r.files_total,
        human_bytes(r.bytes_total)
    );
    let _ = writeln!(
        s,
        "\n{:.1}% done after {}.",
        st.percent_done,
        crate::report::count(st.runs, "run")
    );
    // Lists last, cut to fit.
    let budget = SUMMARY_LIMIT - 4096;
    if !st.given_up.is_empty() {
        let _ = writeln!(
            s,
            "\n### Given up\n\n`tgferry retry STATE --all` tries these again.\n\n| file | runs failed | last error |\n| --- | ---: | --- |"
        );
        list(
            &mut s,
            budget,
            st.given_up.iter().map(|f| {
                format!(
                    "| {} | {} | {} |",
                    md(&f.path),
                    f.failure.attempts,
                    md(&f.failure.last_error)
                )
            }),
        );
    }
    if !r.failed.is_empty() {
        let _ = writeln!(
            s,
            "\n### Failed in this run\n\n| file | error |\n| --- | --- |"
        );
        list(
            &mut s,
            budget,
            r.failed
                .iter()
                .map(|(p, e)| format!("| {} | {} |", md(p), md(e))),
        );
    }
    if !st.in_progress.is_empty() {
        let _ = writeln!(
            s,
            "\n### Partly stored\n\n| file | parts | stored |\n| --- | ---: | ---: |"
        );
        list(
            &mut s,
            budget,
            st.in_progress.iter().map(|p| {
                format!(
                    "| {} | {} of {} | {} of {} |",
                    md(&p.path),
                    p.parts_done,
                    p.parts_total,
                    human_bytes(p.bytes_done),
                    human_bytes(p.size)
                )
            }),
        );
    }
    s.push('\n');
    s
}

fn list(s: &mut String, budget: usize, rows: impl ExactSizeIterator<Item = String>) {
    let total = rows.len();
    for (i, row) in rows.enumerate() {
        if s.len() + row.len() + 1 > budget {
            let _ = writeln!(s, "\n… and {} more (see `tgferry status`)", total - i);
            return;
        }
        let _ = writeln!(s, "{row}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StopReason;

    #[test]
    fn outputs_are_heredocs() {
        let o = Outputs {
            done: true,
            remaining: Some(0),
            completed: Some(5),
            failed: Some(0),
            stop_reason: "complete",
        };
        let text = outputs(&o);
        assert!(text.starts_with("done<<ghadelimiter_tgferry_0\ntrue\nghadelimiter_tgferry_0\n"));
        assert!(text.contains("stop-reason<<"));
        assert_eq!(
            delimiter("ghadelimiter_tgferry_0"),
            "ghadelimiter_tgferry_1"
        );
    }

    #[test]
    fn a_store_on_the_runners_passing_folders_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (temp, work, kept) = (root.join("temp"), root.join("work"), root.join("kept"));
        for d in [&temp, &work, &kept] {
            std::fs::create_dir(d).unwrap();
        }
        let env = |k: &str| match k {
            "RUNNER_TEMP" => Some(temp.clone().into_os_string()),
            "GITHUB_WORKSPACE" => Some(work.clone().into_os_string()),
            _ => None,
        };
        let w = ephemeral_store_warning(&temp.join("store"), env).unwrap();
        assert!(
            w.contains("$RUNNER_TEMP, which disappears after the job"),
            "{w}"
        );
        let w = ephemeral_store_warning(&work.join("a/store"), env).unwrap();
        assert!(w.contains("$GITHUB_WORKSPACE"), "{w}");
        let w = ephemeral_store_warning(std::path::Path::new("/tmp/x/store"), env).unwrap();
        assert!(w.contains("runner's /tmp"), "{w}");
        if !kept.starts_with("/tmp") {
            assert_eq!(ephemeral_store_warning(&kept.join("store"), env), None);
        }
        assert_eq!(
            ephemeral_store_warning(std::path::Path::new("/srv/backup"), env),
            None
        );
        // `/tmpfoo` is not under `/tmp`.
        assert_eq!(
            ephemeral_store_warning(std::path::Path::new("/tmpfoo/store"), env),
            None
        );
    }

    #[test]
    fn command_values_are_escaped() {
        assert_eq!(escape_data("a%b\nc\rd"), "a%25b%0Ac%0Dd");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
    }

    /// A status in which `name` was given up with `error`.
    fn given_up(name: &str, error: &str) -> Status {
        let mut state = crate::state::State::new(crate::state::Job {
            source: "src".into(),
            store: "store".into(),
            encryption: crate::state::Encryption::None,
            vault_id: None,
        });
        let now = crate::time::now();
        state.failed.insert(
            name.into(),
            crate::state::Failed {
                attempts: 3,
                tries: 3,
                last_error: error.into(),
                kind: crate::state::FailureKind::Permanent,
                first_failed: now,
                last_failed: now,
                given_up: true,
            },
        );
        Status::of(&state)
    }

    /// The commands a GitHub runner would find in `lines`: `::name ...::` after leading
    /// white space, or `##[name` anywhere (its legacy form).
    fn commands(lines: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        for text in lines {
            for line in text.split('\n') {
                let t = line.trim_start();
                if let Some(rest) = t.strip_prefix("::") {
                    found.push(rest.split("::").next().unwrap_or("").to_owned());
                }
                if let Some(i) = line.find("##[") {
                    found.push(line[i..].to_owned());
                }
            }
        }
        found
    }

    #[test]
    fn a_name_cannot_inject_workflow_commands_into_annotations() {
        for name in [
            "a\n::error::injected",
            "x::set-output name=done::true",
            "p%0A::error::pre-escaped",
            "##[add-mask]secret",
            "t,itle=x:y\r\n::stop-commands::tok",
            "\x1b]8;;http://evil\x07link",
        ] {
            let status = given_up(name, &format!("{name}: cannot be read\n::error::e"));
            let lines = annotations(&[name.to_owned()], &status);
            assert_eq!(lines.len(), 1);
            // One command, ours: a warning with a title property, nothing else.
            let found = commands(&lines);
            assert_eq!(found.len(), 1, "{name:?}: {found:?}");
            assert!(found[0].starts_with("warning title="), "{found:?}");
            let line = &lines[0];
            assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\x1b'));
            // The title property holds no bare `:` or `,` that would end it early.
            let title = line
                .strip_prefix("::warning title=")
                .and_then(|rest| rest.split_once("::"))
                .map(|(title, _)| title)
                .unwrap();
            assert!(!title.contains(',') && !title.contains(':'), "{title}");
            // `%` in the name is escaped, so `%0A` in it stays text for the runner.
            if name.contains('%') {
                assert!(line.contains("%250A"), "{line}");
            }
        }
    }

    #[test]
    fn names_in_the_summary_stay_in_their_table_cell() {
        let status = given_up("a|b\n| c\x1b[31m", "oops\n## heading");
        let report = RunReport {
            stop_reason: StopReason::Complete,
            run: crate::state::RunRecord::started(crate::time::now()),
            fatal: None,
            files_left: 0,
            bytes_left: 0,
            failed: vec![("f\n::error::x".into(), "e\x1b[0m".into())],
            given_up: Vec::new(),
            files_total: 1,
            bytes_total: 0,
            rate_limit_wait: None,
            elapsed: std::time::Duration::from_secs(1),
            files_listed: 1,
            breakdown: Default::default(),
        };
        let text = summary(&report, &status);
        let row = text
            .lines()
            .find(|l| l.starts_with("| a"))
            .expect("the given-up row");
        assert_eq!(
            row,
            "| a\\|b\\\\x0a\\| c\\\\x1b\\[31m | 3 | oops\\\\x0a## heading |"
        );
        let failed = text.lines().find(|l| l.starts_with("| f\\")).unwrap();
        assert_eq!(failed, "| f\\\\x0a::error::x | e\\\\x1b\\[0m |");
    }
}
