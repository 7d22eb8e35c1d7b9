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
    let repack = match a.repack {
        Some(share) if !(0.0..=1.0).contains(&share) => {
            return Err(Exit::usage(config::UsageError(format!(
                "--repack={share} must be a share between 0 and 1 (0.5: packs less than half live)"
            ))));
        }
        Some(share) => Some(crate::prune::RepackOptions {
            below: share,
            pack_size: config::size("--pack-size", &a.pack_size).map_err(Exit::usage)?,
            dry_run: a.dry_run,
        }),
        None => None,
    };
    let open::ExistingJob {
        state: mut file,
        store,
        catalog,
        master,
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
    let mut worst = report.failed.first().map(|(_, e)| exit::for_store_error(e));
    if let Some(options) = repack {
        let repacked =
            crate::prune::repack(&store, &mut file, master.as_ref(), &report.packs, options)
                .await
                .map_err(|e| Exit {
                    code: exit::for_store_error(&e),
                    message: format!(
                        "repack stopped: {e}; nothing is lost (the old packs are kept), and \
                         the next prune deletes the copies left unreferenced"
                    ),
                })?;
        print!("{}", render_repack(&repacked, options));
        worst = worst.or(repacked
            .not_deleted
            .first()
            .map(|(_, e)| exit::for_store_error(e)));
    }
    Ok(worst.unwrap_or(exit::OK))
}

/// What the repack did, as printed.
fn render_repack(
    report: &crate::prune::RepackReport,
    options: crate::prune::RepackOptions,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if options.dry_run {
        "would repack"
    } else {
        "repacked"
    };
    for p in &report.old {
        let _ = writeln!(
            out,
            "{verb} {} ({} live of {})",
            p.loc,
            human_bytes(p.live),
            human_bytes(p.len)
        );
    }
    for (loc, e) in &report.not_deleted {
        let _ = writeln!(out, "could not delete the old pack {loc}: {e}");
    }
    let _ = writeln!(
        out,
        "{}: {} packs under {:.0}% live, {} dead freed, {} live copied into {} new packs",
        if options.dry_run {
            "repack dry run"
        } else {
            "repack"
        },
        report.old.len(),
        options.below * 100.0,
        human_bytes(report.freed()),
        human_bytes(report.copied),
        report.new.len()
    );
    out
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
    if !report.packs.is_empty() {
        let len: u64 = report.packs.iter().map(|p| p.len).sum();
        let dead: u64 = report.packs.iter().map(crate::prune::PackUse::dead).sum();
        let _ = writeln!(
            out,
            "packs: {} in use, {}, of which {} ({:.1}%) no object uses{}",
            report.packs.len(),
            human_bytes(len),
            human_bytes(dead),
            if len == 0 {
                0.0
            } else {
                dead as f64 * 100.0 / len as f64
            },
            if dead > 0 {
                "; `prune --repack` rewrites packs less than half live"
            } else {
                ""
            }
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
