//! Getting files back out of a store, and checking that they can be.
//!
//! What it owns: `tgferry restore` ([`restore()`]: catalog paths → files under a folder)
//! and `tgferry verify` ([`verify()`]: every recorded part is there, whole, and for the
//! vault authentic; [`repair()`]: forget what is damaged so the next run stores it again).
//! What it does not: finding the catalog and unlocking the vault (the CLI does that with
//! [`crate::keyring`]), the format itself ([`crate::vault`]), saving states
//! ([`crate::state`]).
//!
//! Both read parts the same way (`parts.rs`): streamed from
//! [`crate::store::Store::open`] in chunks with the recorded length checked; plain parts
//! hashed against their recorded SHA-256, vault parts fed through a
//! [`crate::vault::PartDecryptor`] so that no plaintext is handed out before its segment
//! authenticated; constant memory whatever the size. The hashing, decryption and file
//! writes run on blocking threads while the next chunk is read, so `jobs` files at once
//! use several cores.
//!
//! Nothing is ever written outside the restore folder: a catalog is untrusted input, and
//! every target path is checked (`paths.rs`), one component at a time without following
//! links, before anything is created and again just before the final rename.
//!
//! ```no_run
//! # async fn demo(state: tgferry::state::State, master: tgferry::vault::MasterKey)
//! # -> Result<(), tgferry::restore::RestoreError> {
//! use tgferry::restore::{RestoreOptions, VerifyOptions, restore, verify};
//! use tgferry::store::local::LocalStore;
//!
//! let store = LocalStore::new("/mnt/backup");
//! let checked = verify(&store, &state, Some(&master), &VerifyOptions::full()).await?;
//! assert!(checked.is_clean(), "{:?}", checked.problems);
//! let opts = RestoreOptions::new("/tmp/restored").patterns(["photos/**"]);
//! let report = restore(&store, &state, Some(&master), &opts).await?;
//! println!("{} files back, {} failed", report.restored.len(), report.failed.len());
//! # Ok(()) }
//! ```

mod files;
mod parts;
mod paths;
mod verify;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

pub use files::{
    Event, EventSink, Failure, RestoreOptions, RestoreReport, SkipReason, Skipped, restore,
};
pub use parts::Issue;
pub use paths::Selection;
pub use verify::{
    Problem, RepairReport, Subject, User, VerifyOptions, VerifyReport, repair, verify,
};

/// Most files (or objects) worked on at once.
pub const MAX_JOBS: usize = 64;

/// Errors that stop a restore or a verify before it starts. Problems with single files or
/// parts are not errors: they are counted in the report and the rest goes on.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A pattern is not a valid glob.
    #[error("pattern {pattern:?} is not a valid glob: {message}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What globset said.
        message: String,
    },
    /// The catalog describes a vault and no master key was given.
    #[error(
        "the catalog describes an encrypted vault: reading its parts needs the passphrase \
         (TGFERRY_PASSPHRASE)"
    )]
    NeedsKey,
    /// The restore folder cannot be created.
    #[error("cannot create the restore folder {}: {source}", path.display())]
    Target {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `jobs` out of range.
    #[error("--jobs {0} must be between 1 and {MAX_JOBS}")]
    Jobs(usize),
}

/// Runs `f` over every item, at most `jobs` at once, on the current task (the futures
/// borrow; the heavy work inside them goes to blocking threads). Results come back in
/// item order.
async fn for_each_concurrent<'a, T, R, F, Fut>(items: &'a [T], jobs: usize, f: F) -> Vec<R>
where
    F: Fn(&'a T) -> Fut,
    Fut: Future<Output = R>,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let r = f(item).await;
            results.lock().unwrap()[i] = Some(r);
        }
    };
    let mut workers: Vec<Pin<Box<_>>> = (0..jobs.clamp(1, items.len().max(1)))
        .map(|_| Box::pin(worker()))
        .collect();
    std::future::poll_fn(|cx| {
        workers.retain_mut(|w| w.as_mut().poll(cx).is_pending());
        if workers.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    drop(workers);
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// A content id shortened for messages.
fn short_id(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

fn check_jobs(jobs: usize) -> Result<(), RestoreError> {
    if jobs == 0 || jobs > MAX_JOBS {
        return Err(RestoreError::Jobs(jobs));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::for_each_concurrent;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn work_runs_concurrently_and_results_keep_their_order() {
        let items: Vec<u64> = (0..10).collect();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let start = tokio::time::Instant::now();
        let out = for_each_concurrent(&items, 3, |&i| {
            let (running, peak) = (&running, &peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10 + (9 - i))).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert!(
            start.elapsed() < Duration::from_millis(80),
            "ran in parallel"
        );
        assert!(
            for_each_concurrent(&[] as &[u8], 4, |_| async {})
                .await
                .is_empty()
        );
    }
}
