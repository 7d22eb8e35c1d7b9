//! `tgferry prune`: opens the job's state and (for a vault) the store's catalog, has
//! [`crate::prune`] delete leftovers older than `--older-than`, and prints what went.

use std::time::SystemTime;

use super::args::PruneArgs;
use super::config;
use super::exit::{self, Exit};
use super::store::open_existing;
use crate::job::open;
use crate::prune::{PruneOptions, PruneReport};
use crate::state::Encryption;
use crate::time::human_bytes;

/// `tgferry prune`.
pub(super) async fn prune(a: PruneArgs, wall: SystemTime) -> Result<u8, Exit> {
    let older_than = config::duration("--older-than", &a.older_than).map_err(Exit::usage)?;
    let open::ExistingJob {
        state: mut file,
        store,
        catalog,
        ..
    } = open::open_existing(
        &crate::job::identity::mask_secrets(&a.store),
        &a.state,
        open::ExistingOptions {
            same_store: true,
            not_older_than_store: true,
            catalog: true,
        },
        |encryption| open_existing(&a.store, encryption == Encryption::None),
    )
    .await?;
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
    for (loc, reason) in &report.undeletable {
        let _ = writeln!(
            out,
            "kept {loc}, which this account may not delete: {reason}"
        );
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
