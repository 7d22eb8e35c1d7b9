//! `tgferry restore` and `tgferry verify`: finding the catalog (a state file, or the
//! store's encrypted catalog), unlocking the vault before anything is written, and
//! printing what [`crate::restore`] did. The work itself is the library's.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{RestoreArgs, VerifyArgs};
use super::config::UsageError;
use super::exit::{self, Exit};
use super::store::{CliStore, open_existing as open_store};
use crate::keyring;
use crate::restore::{
    Event, RestoreError, RestoreOptions, Selection, SkipReason, VerifyOptions, VerifyReport,
};
use crate::state::{Encryption, State, StateFile};
use crate::store::{META_KEY_FILE, Store};
use crate::time::{human_bytes, human_duration};
use crate::vault::MasterKey;

/// A catalog and, for a vault, the key to read what it describes.
pub(super) struct Catalog {
    pub(super) state: State,
    pub(super) master: Option<MasterKey>,
}

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

/// Unlocks the store's vault (never creating one) and checks that `state` belongs to it.
pub(super) async fn unlock(store: &CliStore, name: &str, state: &State) -> Result<MasterKey, Exit> {
    let pass = keyring::passphrase_from_env().map_err(Exit::keyring)?;
    let (key_file, master, _) = keyring::unlock(store, name, &pass, false)
        .await
        .map_err(Exit::keyring)?;
    let found = key_file.vault_id_hex();
    if let Some(id) = state.job.vault_id.as_ref().filter(|id| **id != found) {
        return Err(Exit {
            code: exit::STATE_FOREIGN,
            message: format!(
                "the state belongs to vault {id}, but store {name} holds vault {found}; check \
                 --store and --state"
            ),
        });
    }
    Ok(master)
}

/// The catalog from `--state`, else from the store; the vault is unlocked when
/// `need_key`, or always when the catalog comes from the store. Nothing is written.
pub(super) async fn open_catalog(
    store: &CliStore,
    name: &str,
    state: Option<&Path>,
    need_key: bool,
) -> Result<Catalog, Exit> {
    if let Some(path) = state {
        let Some((state, _)) = crate::state::read_with_journal(path).map_err(Exit::state)? else {
            return Err(Exit {
                code: exit::STATE_UNREADABLE,
                message: format!(
                    "no state file at {}; check --state, or leave it out to use the catalog \
                     saved in the store",
                    path.display()
                ),
            });
        };
        let master = if state.job.encryption == Encryption::Vault && need_key {
            Some(unlock(store, name, &state).await?)
        } else {
            None
        };
        return Ok(Catalog { state, master });
    }
    let has_vault = store.get_meta(META_KEY_FILE).await.map_err(|e| Exit {
        code: exit::for_store_error(&e),
        message: e.to_string(),
    })?;
    if has_vault.is_none() {
        return Err(usage(format!(
            "store {name} has no vault (no key file {META_KEY_FILE}), so it has no catalog: \
             a plain store (--encryption none) is read through its state file; pass --state FILE"
        )));
    }
    let pass = keyring::passphrase_from_env().map_err(Exit::keyring)?;
    let (_, master, _) = keyring::unlock(store, name, &pass, false)
        .await
        .map_err(Exit::keyring)?;
    match keyring::load_catalog(store, &master)
        .await
        .map_err(Exit::keyring)?
    {
        Some(state) => Ok(Catalog {
            state,
            master: Some(master),
        }),
        None => Err(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!(
                "store {name} has a vault but no catalog yet (no run with it has finished); \
                 pass --state FILE"
            ),
        }),
    }
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

/// Prints a line on stderr without tearing the bar.
fn say(bar: Option<&ProgressBar>, line: &str) {
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
    let store = open_store(&a.store, false)?;
    // Everything that can fail without writing fails here, before --to is created.
    let catalog = open_catalog(&store, &a.store, a.state.as_deref(), true).await?;
    let bar = progress_bar(a.quiet);
    let sink_bar = bar.clone();
    let quiet = a.quiet;
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
    };
    let result =
        crate::restore::restore(&store, &catalog.state, catalog.master.as_ref(), &opts).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(library_error)?;
    for p in &report.unmatched {
        eprintln!(
            "error: no stored file matches {p:?} (`tgferry status` and the state list what \
             is stored)"
        );
    }
    let already = report
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::AlreadyRestored)
        .count();
    let mut line = format!(
        "restored {} ({}) into {} in {}",
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
    let failed = report.failed.len() + report.unmatched.len();
    if failed > 0 {
        line += &format!(
            "; {failed} failed (see the errors above; `tgferry verify --full` lists every \
             damaged part)"
        );
    }
    println!("{line}");
    Ok(if report.is_success() {
        exit::OK
    } else {
        exit::FILES_FAILED
    })
}

/// `tgferry verify`.
pub(super) async fn verify(a: VerifyArgs) -> Result<u8, Exit> {
    let started = Instant::now();
    check_jobs(a.jobs)?;
    let store = open_store(&a.store, false)?;
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
        let Some((mut file, _)) = StateFile::open_existing(path).map_err(Exit::state)? else {
            return Err(Exit {
                code: exit::STATE_UNREADABLE,
                message: format!("no state file at {}", path.display()),
            });
        };
        // Repair rewrites the state and the catalog: one process per store, like a run.
        store.prepare().await.map_err(|e| Exit::run(e.into()))?;
        let master = if file.state().job.encryption == Encryption::Vault {
            Some(unlock(&store, &a.store, file.state()).await?)
        } else {
            None
        };
        let integrity = keyring::check_state(&store, master.as_ref(), &mut file, true)
            .await
            .map_err(Exit::keyring)?;
        for line in integrity.lines() {
            println!("{line}");
        }
        let report = check(&store, file.state(), master.as_ref(), &opts, bar.as_ref()).await?;
        let fixed = crate::restore::repair(file.state_mut(), &report);
        if fixed.changed() || integrity.changed() {
            file.commit().map_err(Exit::state)?;
        }
        for path in &fixed.files {
            println!("marked for storing again: {path}");
        }
        for user in &fixed.versions {
            println!("forgot the damaged {user}");
        }
        for user in &fixed.orphaned_versions {
            println!("no longer listed (its file was marked): {user}");
        }
        for path in &fixed.in_progress {
            println!("will start over: {path} (was in progress)");
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
        let need_key = a.full || a.state.is_none();
        let catalog = open_catalog(&store, &a.store, a.state.as_deref(), need_key).await?;
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
                a.store
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
        eprintln!("error: {p}");
    }
    Ok(report)
}
