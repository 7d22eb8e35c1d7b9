//! `tgferry restore` and `tgferry verify`: finding the catalog (a state file, or the
//! store's encrypted catalog), unlocking the vault before anything is written, and
//! printing what [`crate::restore`] did. The work itself is the library's.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{RestoreArgs, VerifyArgs};
use super::config::UsageError;
use super::exit::{self, Exit};
use super::store::{CliStore, open_existing as open_store};
use crate::job::identity::mask_secrets;
use crate::job::open;
use crate::keyring;
use crate::report::shown;
use crate::restore::{
    Event, RestoreError, RestoreOptions, Selection, SkipReason, VerifyOptions, VerifyReport,
};
use crate::state::State;
use crate::time::{human_bytes, human_duration};
use crate::vault::MasterKey;

fn usage(message: String) -> Exit {
    Exit::usage(UsageError(message))
}

fn library_error(e: RestoreError) -> Exit {
    let code = match e {
        RestoreError::NeedsKey => exit::PASSPHRASE,
        RestoreError::Pattern { .. } | RestoreError::Jobs(_) | RestoreError::Target { .. } => {
            exit::USAGE
        }
    };
    Exit {
        code,
        message: e.to_string(),
    }
}

fn check_jobs(jobs: usize) -> Result<(), Exit> {
    if jobs == 0 || jobs > crate::restore::MAX_JOBS {
        return Err(library_error(RestoreError::Jobs(jobs)));
    }
    Ok(())
}

/// A byte progress bar on a terminal, unless quiet.
fn progress_bar(quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {percent:>3}% {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    Some(bar)
}

/// Prints a line on stderr without tearing the bar (names in it made safe to print).
fn say(bar: Option<&ProgressBar>, line: &str) {
    let line = shown(line);
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// `tgferry restore`.
pub(super) async fn restore(a: RestoreArgs) -> Result<u8, Exit> {
    let started = Instant::now();
    check_jobs(a.jobs)?;
    Selection::new(&a.patterns).map_err(library_error)?;
    if let Ok(md) = std::fs::metadata(&a.to)
        && !md.is_dir()
    {
        return Err(usage(format!(
            "--to {} exists and is not a folder",
            a.to.display()
        )));
    }
    if let Some(root) = crate::store::any::StoreSpec::parse(&a.store)
        .ok()
        .as_ref()
        .and_then(|s| s.local_root())
    {
        crate::job::overlap::check_restore_target(root, &a.to).map_err(usage)?;
    }
    let store = open_store(&a.store, false)?;
    // Everything that can fail without writing fails here, before --to is created.
    let catalog =
        open::open_catalog(&store, &mask_secrets(&a.store), a.state.as_deref(), true).await?;
    let bar = progress_bar(a.quiet);
    let sink_bar = bar.clone();
    let quiet = a.quiet;
    // A signal stops the restore with its temp files removed (a second one exits at once).
    let cancel = tokio_util::sync::CancellationToken::new();
    super::watch_signals(cancel.clone());
    let opts = RestoreOptions {
        to: a.to.clone(),
        patterns: a.patterns.clone(),
        version: a.version,
        overwrite: a.overwrite,
        jobs: a.jobs,
        events: Some(Arc::new(move |e: Event<'_>| match e {
            Event::Planned { bytes, .. } => {
                if let Some(bar) = &sink_bar {
                    bar.set_length(bytes);
                }
            }
            Event::Bytes(n) => {
                if let Some(bar) = &sink_bar {
                    bar.inc(n);
                }
            }
            Event::Restored { .. } => {}
            Event::Skipped(s) => {
                if !quiet && s.reason != SkipReason::AlreadyRestored {
                    say(sink_bar.as_ref(), &format!("skipped {s}"));
                }
            }
            Event::Failed(f) => say(sink_bar.as_ref(), &format!("error: {f}")),
        })),
        cancel: Some(cancel),
    };
    let result =
        crate::restore::restore(&store, &catalog.state, catalog.master.as_ref(), &opts).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(library_error)?;
    for p in &report.unmatched {
        eprintln!(
            "error: no stored file matches {} (`tgferry status` and the state list what \
             is stored)",
            shown(&format!("{p:?}"))
        );
    }
    let already = report
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::AlreadyRestored)
        .count();
    let folders = if report.folders > 0 {
        format!(
            " and {} (with their permissions and times)",
            count(report.folders, "folder")
        )
    } else {
        String::new()
    };
    let mut line = format!(
        "restored {} ({}){folders} into {} in {}",
        count(report.restored.len(), "file"),
        human_bytes(report.bytes),
        a.to.display(),
        human_duration(started.elapsed())
    );
    if already > 0 {
        line += &format!("; {already} already there");
    }
    if report.skipped.len() > already {
        line += &format!(
            "; {} without version {}",
            report.skipped.len() - already,
            a.version
        );
    }
    if !report.unmatched.is_empty() {
        let n = report.unmatched.len();
        line += &format!(
            "; {} matched nothing",
            if n == 1 {
                "1 pattern".to_owned()
            } else {
                format!("{n} patterns")
            }
        );
    }
    if !report.failed.is_empty() {
        // Only a file that could not be restored hints at damage in the store; files in
        // the way (a restore into a folder that changed since) hint at --overwrite.
        let in_the_way = report
            .failed
            .iter()
            .filter(|f| f.message.contains(" is in the way"))
            .count();
        let hint = if in_the_way == report.failed.len() {
            "--overwrite replaces files in the way"
        } else {
            "`tgferry verify --full` lists every damaged part"
        };
        line += &format!(
            "; {} failed (see the errors above; {hint})",
            report.failed.len()
        );
    }
    if report.interrupted {
        line += "; interrupted by a signal before the rest (restore again to finish)";
    }
    println!("{line}");
    Ok(if report.interrupted {
        exit::INTERRUPTED
    } else if report.is_success() {
        exit::OK
    } else {
        exit::FILES_FAILED
    })
}

/// `tgferry verify`.
pub(super) async fn verify(a: VerifyArgs) -> Result<u8, Exit> {
    let started = Instant::now();
    check_jobs(a.jobs)?;
    let bar = progress_bar(a.quiet);
    let sink_bar = bar.clone();
    let opts = VerifyOptions {
        full: a.full,
        jobs: a.jobs,
        progress: Some(Arc::new(move |n| {
            if let Some(bar) = &sink_bar {
                bar.inc(n);
            }
        })),
    };
    let report = if a.repair {
        let path = a
            .state
            .as_deref()
            .expect("clap requires --state with --repair");
        // Repair rewrites the state and the catalog: one process per store, like a run.
        let open::ExistingJob {
            state: mut file,
            store,
            master,
            ..
        } = open::open_existing(
            &mask_secrets(&a.store),
            path,
            open::ExistingOptions::default(),
            |_| open_store(&a.store, false),
        )
        .await?;
        let integrity = keyring::check_state(&store, master.as_ref(), &mut file, true)
            .await
            .map_err(Exit::keyring)?;
        for line in integrity.lines() {
            println!("{}", shown(&line));
        }
        let report = check(&store, file.state(), master.as_ref(), &opts, bar.as_ref()).await?;
        let fixed = crate::restore::repair(file.state_mut(), &report);
        if fixed.changed() || integrity.changed() {
            file.commit().map_err(Exit::state)?;
        }
        for path in &fixed.files {
            println!("marked for storing again: {}", shown(path));
        }
        for user in &fixed.versions {
            println!("forgot the damaged {}", shown(&user.to_string()));
        }
        for user in &fixed.orphaned_versions {
            println!(
                "no longer listed (its file was marked): {}",
                shown(&user.to_string())
            );
        }
        for path in &fixed.in_progress {
            println!("will start over: {} (was in progress)", shown(path));
        }
        if let Some(master) = &master
            && (!report.is_clean() || integrity.changed())
        {
            keyring::save_catalog(&store, master, file.state())
                .await
                .map_err(Exit::keyring)?;
        }
        if fixed.changed() {
            println!(
                "repaired {}: {} files and {} earlier versions forgotten, {} damaged objects \
                 dropped; the next `tgferry run` stores what is still in the source again",
                path.display(),
                fixed.files.len(),
                fixed.versions.len(),
                fixed.objects.len()
            );
        }
        if fixed.unresolved > 0 {
            println!(
                "{} problems were left alone (the store could not be read): run verify again",
                fixed.unresolved
            );
        }
        report
    } else {
        let store = open_store(&a.store, false)?;
        let need_key = a.full || a.state.is_none();
        let catalog = open::open_catalog(
            &store,
            &mask_secrets(&a.store),
            a.state.as_deref(),
            need_key,
        )
        .await?;
        let master = catalog.master.as_ref();
        let report = check(&store, &catalog.state, master, &opts, bar.as_ref()).await?;
        if !report.is_clean() {
            let state = a
                .state
                .as_deref()
                .map_or("FILE".into(), |p| p.display().to_string());
            println!(
                "to store the damaged files again: tgferry verify --repair --store {} --state \
                 {state}, then tgferry run",
                mask_secrets(&a.store)
            );
        }
        report
    };
    let how = if a.full { "byte by byte" } else { "by length" };
    let verdict = if report.is_clean() {
        "no problem".to_string()
    } else {
        format!(
            "{}; {} cannot be restored as {} now",
            count(report.problems.len(), "problem"),
            count(report.broken_paths().len(), "file"),
            if report.broken_paths().len() == 1 {
                "it is"
            } else {
                "they are"
            }
        )
    };
    println!(
        "verify: checked {} ({}) {how} in {}: {verdict}",
        count(report.parts as usize, "part"),
        human_bytes(report.bytes),
        human_duration(started.elapsed())
    );
    Ok(if report.is_clean() {
        exit::OK
    } else {
        exit::FILES_FAILED
    })
}

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => format!("{n} {thing}s"),
    }
}

/// Runs the check with a progress bar and prints every problem.
async fn check(
    store: &CliStore,
    state: &State,
    master: Option<&MasterKey>,
    opts: &VerifyOptions,
    bar: Option<&ProgressBar>,
) -> Result<VerifyReport, Exit> {
    if let Some(bar) = bar {
        bar.set_length(VerifyReport::bytes_recorded(state));
    }
    let result = crate::restore::verify(store, state, master, opts).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(library_error)?;
    for p in &report.problems {
        eprintln!("error: {}", shown(&p.to_string()));
    }
    Ok(report)
}
