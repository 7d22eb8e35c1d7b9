//! `tgferry prune`: opens the job's state and (for a vault) the store's catalog, has
//! [`crate::prune`] delete leftovers older than `--older-than`, and prints what went.

use std::time::SystemTime;

use super::args::PruneArgs;
use super::config;
use super::exit::{self, Exit};
use super::restore::unlock;
use super::store::open_existing;
use crate::keyring;
use crate::prune::{PruneOptions, PruneReport};
use crate::state::{Encryption, StateFile};
use crate::store::Store;
use crate::time::human_bytes;

/// `tgferry prune`.
pub(super) async fn prune(a: PruneArgs, wall: SystemTime) -> Result<u8, Exit> {
    let older_than = config::duration("--older-than", &a.older_than).map_err(Exit::usage)?;
    let Some((mut file, _)) = StateFile::open_existing(&a.state).map_err(Exit::state)? else {
        return Err(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!(
                "no state file at {}; prune needs the state of the job that writes to {} \
                 (download the state artifact, or pass --state)",
                a.state.display(),
                a.store
            ),
        });
    };
    let job = file.state().job.clone();
    if job.store != config::job_name(&a.store) {
        return Err(Exit {
            code: exit::STATE_FOREIGN,
            message: format!(
                "{} belongs to store {}, not {}; prune a store with its own state",
                a.state.display(),
                job.store,
                a.store
            ),
        });
    }
    let vault = job.encryption == Encryption::Vault;
    let store = open_existing(&a.store, !vault)?;
    // The store's lock: no run writes to it while prune deletes.
    store.prepare().await.map_err(|e| Exit::run(e.into()))?;
    // A state older than the store's newest run does not know all it holds.
    if let Some(last) = crate::prune::last_run(&store)
        .await
        .map_err(|e| Exit::run(e.into()))?
        && last.runs > file.state().stats.runs
    {
        return Err(Exit {
            code: exit::STATE_FOREIGN,
            message: format!(
                "{} is older than store {}: it knows {} runs, the store was last changed by run \
                 {} (ended {}); prune with the newest state (tgferry state fetch), nothing was \
                 deleted",
                a.state.display(),
                a.store,
                file.state().stats.runs,
                last.runs,
                last.ended
            ),
        });
    }
    // What the newest run knows is kept too, however old the state file is.
    let catalog = if vault {
        let master = unlock(&store, &a.store, file.state()).await?;
        keyring::load_catalog(&store, &master)
            .await
            .map_err(Exit::keyring)?
    } else {
        None
    };
    let opts = PruneOptions {
        older_than,
        dry_run: a.dry_run,
        now: crate::time::from_system(wall),
    };
    let report = crate::prune::prune(&store, &mut file, catalog.as_ref(), &opts)
        .await
        .map_err(|e| Exit {
            code: exit::for_store_error(&e),
            message: format!("prune stopped: {e}"),
        })?;
    print!("{}", render(&report, &opts));
    Ok(match report.failed.first() {
        None => exit::OK,
        Some((_, e)) => exit::for_store_error(e),
    })
}

/// The report as printed: one line per deletion, then the totals.
fn render(report: &PruneReport, opts: &PruneOptions) -> String {
    use std::fmt::Write;
    let verb = if opts.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut out = String::new();
    for a in &report.abandoned {
        let _ = writeln!(
            out,
            "{verb} abandoned upload of {} (started {}, {} parts)",
            a.path,
            a.started,
            a.locs.len()
        );
    }
    for p in &report.unreferenced {
        let when = p
            .stored
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "{verb} unreferenced part {} ({}, stored {when})",
            p.loc,
            human_bytes(p.len)
        );
    }
    for (loc, e) in &report.failed {
        let _ = writeln!(out, "could not delete {loc}: {e}");
    }
    let _ = writeln!(
        out,
        "{}: {} abandoned uploads, {} unreferenced parts, {}; {} younger than {} kept",
        if opts.dry_run { "dry run" } else { "pruned" },
        report.abandoned.len(),
        report.unreferenced.len(),
        human_bytes(report.bytes),
        report.too_recent,
        humantime::format_duration(opts.older_than),
    );
    out
}
