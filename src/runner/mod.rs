//! The runner: one budgeted run from a source into a store.
//!
//! It lists the source, plans against the state ([`plan`]), then keeps up to `jobs` files
//! moving ([`transfer`]) while it honours the budget ([`budget`]), retries transient
//! failures after the policy's waits ([`retry`]) without holding a worker, counts failures
//! per file across runs, and stops cleanly on budget, rate limits, signals and fatal errors.
//! Everything it learns goes into the state's journal as it happens; the caller saves the
//! state whole at the end ([`crate::state::StateFile::finish_run`] is called here).

pub mod budget;
pub mod events;
pub mod pack;
pub mod plan;
pub mod retry;
pub mod transfer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use budget::Budget;
pub use events::{Event, Events};
pub use plan::{Filter, Order, WorkItem};
pub use retry::RetryPolicy;

use crate::source::{Listing, Source, SourceError};
use crate::state::{Failed, FailureKind, Record, RunRecord, StateError, StateFile, StopReason};
use crate::store::{Store, StoreError};
pub use transfer::VaultKeys;
use transfer::{Context, FileError, FileOutcome};

/// How a run behaves (everything but the source, store, state and budget).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Files worked on at once.
    pub jobs: usize,
    /// Which files take part.
    pub filter: Filter,
    /// Runs a file may fail in before it is given up.
    pub max_failures: u32,
    /// Waits between tries within a run.
    pub retry: RetryPolicy,
    /// Work order.
    pub order: Order,
    /// Part size in bytes.
    pub part_size: u64,
    /// The vault keys for encrypted stores; `None` writes plain copies.
    pub vault: Option<Arc<VaultKeys>>,
    /// Vault runs: which files share packs and how large a pack grows ([`pack`]);
    /// `None`: every file gets parts of its own. Plain runs never pack.
    pub packing: Option<Packing>,
}

/// How a vault run packs small files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packing {
    /// Files of at most this many bytes (and one part) go into packs.
    pub threshold: u64,
    /// A pack is uploaded once it holds this many bytes.
    pub size: u64,
}

impl Default for Packing {
    fn default() -> Self {
        Packing {
            threshold: pack::DEFAULT_PACK_THRESHOLD,
            size: pack::DEFAULT_PACK_SIZE,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            jobs: 4,
            filter: Filter::default(),
            max_failures: 3,
            retry: RetryPolicy::default(),
            order: Order::Path,
            part_size: 512 << 20,
            vault: None,
            packing: Some(Packing::default()),
        }
    }
}

/// Errors that end a run before or while it works.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The source root is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The store is unusable (full, not writable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state could not be written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a run did and what is left.
#[derive(Debug)]
pub struct RunReport {
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// The run as recorded in the state's history.
    pub run: RunRecord,
    /// The fatal error, for [`StopReason::Error`].
    pub fatal: Option<RunError>,
    /// Files not yet stored (not counting given-up ones).
    pub files_left: u64,
    /// Their bytes (less parts already stored).
    pub bytes_left: u64,
    /// Files that failed in this run, with their errors.
    pub failed: Vec<(String, String)>,
    /// Files given up (in this run or before).
    pub given_up: Vec<String>,
    /// Files in the source after filters.
    pub files_total: u64,
    /// Their bytes.
    pub bytes_total: u64,
    /// For [`StopReason::RateLimited`]: how long the store or the source asked to wait.
    pub rate_limit_wait: Option<Duration>,
    /// Time since the budget started (process start for the command line), on tokio's
    /// clock. What people are shown is [`RunReport::took`].
    pub elapsed: Duration,
    /// Files the source listed before filters (to tell a filter that matches nothing).
    pub files_listed: u64,
    /// Where every file in the source (after filters) stands at the end.
    pub breakdown: Breakdown,
}

impl RunReport {
    /// How long the run took, from its start to its end as the state's run record has
    /// them: the one duration the summary, the job summary and `tgferry status` show.
    pub fn took(&self) -> Duration {
        self.run
            .ended
            .duration_since(self.run.started)
            .unsigned_abs()
    }
}

/// A number of files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Files.
    pub files: u64,
    /// Their bytes (whole sizes).
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, size: u64) {
        self.files += 1;
        self.bytes += size;
    }
}

/// Where every file in the source (after filters) stands when a run ends. Each file is in
/// exactly one class, so the classes add up to the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// Stored and unchanged.
    pub stored: Tally,
    /// Some of its parts stored, not all (resumed by the next run).
    pub partly_stored: Tally,
    /// Not stored yet (new, changed, or not reached), no failure.
    pub to_do: Tally,
    /// Failed, tried again by the next run.
    pub failing: Tally,
    /// Given up after repeated failures (until `tgferry retry`).
    pub given_up: Tally,
}

impl Breakdown {
    /// Classifies the files `listing` holds under `filter`, from the state `state` and the
    /// files `left` for a later run.
    fn of(
        listing: &crate::source::Listing,
        filter: &Filter,
        state: &crate::state::State,
        left: &HashSet<&str>,
    ) -> Self {
        let mut b = Breakdown::default();
        for e in listing.files.iter().filter(|e| filter.matches(&e.path)) {
            let path = e.path.as_str();
            let class = match state.failed.get(path) {
                Some(f) if f.given_up => &mut b.given_up,
                Some(_) => &mut b.failing,
                None if state
                    .in_progress
                    .get(path)
                    .is_some_and(|ip| !ip.parts.is_empty()) =>
                {
                    &mut b.partly_stored
                }
                None if left.contains(path) => &mut b.to_do,
                None if state
                    .completed
                    .get(path)
                    .is_some_and(|c| c.size == e.size && c.mtime == e.mtime) =>
                {
                    &mut b.stored
                }
                None => &mut b.to_do,
            };
            class.add(e.size);
        }
        b
    }

    /// The files not stored as they are now (everything but [`Breakdown::stored`]).
    pub fn not_stored(&self) -> u64 {
        self.partly_stored.files + self.to_do.files + self.failing.files + self.given_up.files
    }
}

/// What a listing found about permissions and folders, for the files and folders the run
/// takes: a folder is kept when a file it takes lies under it, or when it is empty and the
/// filter takes its path.
fn meta_of(listing: &crate::source::Listing, filter: &Filter) -> crate::state::Meta {
    let mut holding: HashSet<&str> = HashSet::new();
    let mut meta = crate::state::Meta::default();
    for e in listing.files.iter().filter(|e| filter.matches(&e.path)) {
        for (i, _) in e.path.match_indices('/') {
            holding.insert(&e.path[..i]);
        }
        if let Some(mode) = listing.modes.get(&e.path) {
            meta.modes.insert(e.path.clone(), *mode);
        }
    }
    // The folders above a kept empty folder are kept too.
    for f in listing
        .folders
        .iter()
        .filter(|f| f.empty && filter.matches(&f.path))
    {
        holding.insert(&f.path);
        for (i, _) in f.path.match_indices('/') {
            holding.insert(&f.path[..i]);
        }
    }
    for f in &listing.folders {
        if holding.contains(f.path.as_str()) {
            meta.folders.insert(
                f.path.clone(),
                crate::state::FolderMeta {
                    mtime: f.mtime,
                    mode: f.mode,
                },
            );
        }
    }
    meta
}

/// A file's error without the file's name in front (the report puts it there once).
fn without_path(path: &str, message: String) -> String {
    match message
        .strip_prefix(path)
        .and_then(|rest| rest.strip_prefix(": "))
    {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}

/// Records a run that could not start because the store or the source asks to wait `wait` first (a
/// flood wait on signing in): stop reason `rate_limited` and the time to come back;
/// nothing else in the state changes.
pub fn record_rate_limited_start(
    state: &mut StateFile,
    wait: Duration,
) -> Result<RunRecord, StateError> {
    let now = crate::time::now();
    state.begin_run(now)?;
    state.finish_run(|run| {
        run.stop_reason = StopReason::RateLimited;
        run.resume_after = jiff::SignedDuration::try_from(wait)
            .ok()
            .and_then(|w| now.checked_add(w).ok());
        run.detail = Some(format!(
            "Telegram asked to wait {} before anything could be done",
            crate::time::human_duration(wait)
        ));
    })
}

/// One run over a source and a store.
pub struct Runner<S, T> {
    source: Arc<S>,
    store: Arc<T>,
    config: RunConfig,
    budget: Arc<Budget>,
    events: Events,
    interrupt: CancellationToken,
}

/// Files waiting for their retry time.
struct Waiting {
    at: Instant,
    item: Pending,
}

/// A work item with its retry bookkeeping for this run.
struct Pending {
    item: WorkItem,
    backoff: std::vec::IntoIter<Duration>,
    tries: u32,
    last_error: Option<(String, FailureKind)>,
    /// The source was told this file is coming ([`Source::prefetch`]).
    prefetched: bool,
}

impl<S: Source, T: Store> Runner<S, T> {
    /// A runner; `interrupt` is cancelled by signal handlers to stop the run early.
    pub fn new(
        source: Arc<S>,
        store: Arc<T>,
        config: RunConfig,
        budget: Budget,
        events: Events,
        interrupt: CancellationToken,
    ) -> Self {
        Runner {
            source,
            store,
            config,
            budget: Arc::new(budget),
            events,
            interrupt,
        }
    }

    /// Runs until done, out of budget, rate-limited, interrupted or failed, then saves the
    /// state whole. Errors before any work (source or store unusable) are returned as
    /// `Err` with the state untouched; errors during work end the run with
    /// [`StopReason::Error`] and a saved state.
    pub async fn run(
        self,
        state: StateFile,
    ) -> Result<(StateFile, RunReport), (StateFile, RunError)> {
        // Server-imposed waits that end before the stop time are sat out by the source
        // and the store (connecting included); longer ones come back as rate limits and
        // stop the run.
        self.source.set_wait_deadline(self.budget.stop_at());
        self.source.restore_catalog(&state.state().telegram_chats);
        let mut state = state;
        let listed = self.source.list().await;
        // What the listing learnt is kept, also when a chat source had to stop listing
        // for a wait.
        if matches!(listed, Ok(_) | Err(SourceError::RateLimited { .. }))
            && let Some(chats) = self.source.catalog()
        {
            state.set_telegram_chats(chats);
        }
        let listing = match listed {
            Ok(l) => l,
            Err(SourceError::RateLimited { wait, .. }) => {
                return self.rate_limited_at_start(state, wait, &Listing::default());
            }
            Err(e) => return Err((state, e.into())),
        };
        self.store.set_wait_deadline(self.budget.stop_at());
        match self.store.prepare().await {
            Ok(()) => {}
            // Telegram may ask to wait before it even lets us sign in.
            Err(StoreError::RateLimited { wait }) => {
                return self.rate_limited_at_start(state, wait, &listing);
            }
            Err(e) => return Err((state, e.into())),
        }
        if let Err(e) = state.begin_run(crate::time::now()) {
            return Err((state, e.into()));
        }
        let state = Arc::new(Mutex::new(state));
        let result = self.work(&state, listing).await;
        let mut state = Arc::try_unwrap(state)
            .map_err(|_| ())
            .expect("all transfers finished")
            .into_inner()
            .unwrap();
        let mut report = result;
        let saved = state.finish_run(|run| {
            run.stop_reason = report.stop_reason;
            run.resume_after = report.rate_limit_wait.and_then(|w| {
                crate::time::now()
                    .checked_add(jiff::SignedDuration::try_from(w).ok()?)
                    .ok()
            });
            run.detail = report.fatal.as_ref().map(|e| e.to_string());
        });
        match saved {
            Ok(run) => report.run = run,
            Err(e) => return Err((state, e.into())),
        }
        report.elapsed = self.budget.started().elapsed();
        Ok((state, report))
    }

    /// The run stopped `rate_limited` before any work: recorded as such, state saved.
    #[allow(clippy::result_large_err)]
    fn rate_limited_at_start(
        &self,
        mut state: StateFile,
        wait: Duration,
        listing: &Listing,
    ) -> Result<(StateFile, RunReport), (StateFile, RunError)> {
        let files_total = listing.files.len() as u64;
        let bytes_total = listing.files.iter().map(|f| f.size).sum();
        match record_rate_limited_start(&mut state, wait) {
            Ok(run) => {
                let report = RunReport {
                    stop_reason: StopReason::RateLimited,
                    run,
                    fatal: None,
                    files_left: files_total,
                    bytes_left: bytes_total,
                    failed: Vec::new(),
                    given_up: Vec::new(),
                    files_total,
                    bytes_total,
                    rate_limit_wait: Some(wait),
                    elapsed: self.budget.started().elapsed(),
                    files_listed: files_total,
                    breakdown: Breakdown::default(),
                };
                Ok((state, report))
            }
            Err(e) => Err((state, e.into())),
        }
    }

    async fn work(
        &self,
        state: &Arc<Mutex<StateFile>>,
        listing: crate::source::Listing,
    ) -> RunReport {
        let cfg = &self.config;
        let plan = {
            let st = state.lock().unwrap();
            plan::plan(
                &listing,
                st.state(),
                &cfg.filter,
                cfg.order,
                cfg.part_size,
                cfg.vault.is_some(),
            )
        };
        let mut report = RunReport {
            stop_reason: StopReason::Complete,
            run: RunRecord::started(crate::time::now()),
            fatal: None,
            files_left: 0,
            bytes_left: 0,
            failed: Vec::new(),
            given_up: plan.given_up.clone(),
            files_total: plan.files_total,
            bytes_total: plan.bytes_total,
            rate_limit_wait: None,
            elapsed: Duration::ZERO,
            files_listed: listing.files.len() as u64,
            breakdown: Breakdown::default(),
        };
        match self.record_plan(state, &plan) {
            Ok(garbage) => transfer::remove_all(&*self.store, garbage).await,
            Err(e) => {
                report.stop_reason = StopReason::Error;
                report.fatal = Some(e.into());
                return report;
            }
        }
        if cfg.vault.is_none()
            && let Err(e) = transfer::tidy_staged(&*self.store, state, &self.interrupt).await
        {
            report.stop_reason = StopReason::Error;
            report.fatal = Some(e.into());
            return report;
        }
        self.events.emit(Event::Planned {
            files_total: plan.files_total,
            bytes_total: plan.bytes_total,
            files_done: plan.files_done,
            bytes_done: plan.bytes_done,
            files_todo: plan.work.len() as u64,
            given_up: plan.given_up.len() as u64,
        });
        for (path, error) in &listing.errors {
            // Folders or files that could not even be examined count as failures.
            let err = FileError::Source(error.clone());
            self.fail_for_run(state, path, &err, 1, &mut report);
        }
        state
            .lock()
            .unwrap()
            .set_meta(meta_of(&listing, &cfg.filter));
        if plan.work.is_empty() {
            report.stop_reason = StopReason::NothingToDo;
            report.breakdown = Breakdown::of(
                &listing,
                &cfg.filter,
                state.lock().unwrap().state(),
                &HashSet::new(),
            );
            self.events.emit(Event::Stopping {
                reason: report.stop_reason,
            });
            return report;
        }

        let cancel = self.interrupt.child_token();
        let ctx = Arc::new(Context {
            source: self.source.clone(),
            store: self.store.clone(),
            state: state.clone(),
            budget: self.budget.clone(),
            events: self.events.clone(),
            part_size: cfg.part_size,
            cancel: cancel.clone(),
            vault: cfg.vault.clone(),
            buffers: transfer::BufferPool::default(),
            packer: match (&cfg.vault, cfg.packing) {
                (Some(_), Some(p)) => Some(Arc::new(pack::Packer::new(p.threshold, p.size))),
                _ => None,
            },
            twins: Arc::new(transfer::Twins::new(&listing.identities)),
            listed: Arc::new(
                listing
                    .files
                    .iter()
                    .map(|e| e.path.clone())
                    .collect::<HashSet<_>>(),
            ),
        });
        let mut queue: VecDeque<Pending> = plan
            .work
            .into_iter()
            .map(|item| Pending {
                item,
                backoff: cfg.retry.clone().build(),
                tries: 0,
                last_error: None,
                prefetched: false,
            })
            .collect();
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut deferred: Vec<Pending> = Vec::new();
        let mut running: JoinSet<Done> = JoinSet::new();
        // Files in a pack not yet uploaded, and how packs ended for files whose own
        // outcome has not come back yet (a pack may be uploaded by another worker first).
        let mut packs = PackWaits::default();
        let mut outcomes: VecDeque<(Pending, FileOutcome)> = VecDeque::new();
        let mut paused_until: Option<Instant> = None;
        let mut stop: Option<StopReason> = None;

        loop {
            // A signal that a transfer saw first (and stopped for) is still the reason the
            // run stops, whichever branch of the select below ran first.
            if stop.is_none() && self.interrupt.is_cancelled() {
                stop = Some(StopReason::Interrupted);
                cancel.cancel();
            }
            let now = Instant::now();
            // Retries whose time has come go first.
            let (ready, still): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|w| w.at <= now);
            waiting = still;
            for w in ready.into_iter().rev() {
                queue.push_front(w.item);
            }
            let paused = paused_until.is_some_and(|p| p > now);
            if stop.is_none() && !paused {
                while running.len() < cfg.jobs.max(1) {
                    let Some(p) = queue.pop_front() else { break };
                    if !self.budget.can_finish(next_part(&p.item, cfg.part_size).1) {
                        deferred.push(p);
                        continue;
                    }
                    let ctx = ctx.clone();
                    running.spawn(async move {
                        let mut p = p;
                        if p.tries > 0 {
                            // A retry takes the file as it is now (it may have changed).
                            if let Err(e) = transfer::refresh(&ctx, &mut p.item).await {
                                return Done::File(Box::new(p), FileOutcome::Failed(e));
                            }
                        }
                        let outcome = transfer::transfer(&ctx, &p.item).await;
                        Done::File(Box::new(p), outcome)
                    });
                }
                // The next files in line (`jobs` of them, more for a remote source) are
                // read ahead while these run, so a worker rarely waits for a disk or a
                // remote to start a file.
                let ahead = self.source.read_ahead_files(cfg.jobs.max(1));
                for p in queue.iter_mut().take(ahead) {
                    if !p.prefetched {
                        p.prefetched = true;
                        let (offset, len) = next_part(&p.item, cfg.part_size);
                        self.source.prefetch(&p.item.entry.path, offset, len);
                    }
                }
            }
            if running.is_empty() {
                if stop.is_some() {
                    break;
                }
                let next = waiting.iter().map(|w| w.at).min();
                let no_more = queue.is_empty()
                    && (waiting.is_empty()
                        || matches!((next, self.budget.stop_at()), (Some(n), Some(s)) if n >= s));
                if no_more && let Some(packer) = ctx.packer.clone().filter(|p| p.has_open()) {
                    // Nothing else will join the open pack: it goes now.
                    let ctx = ctx.clone();
                    running.spawn(async move { Done::Flush(packer.flush(&ctx).await) });
                    continue;
                }
                if queue.is_empty() && waiting.is_empty() {
                    stop = Some(if deferred.is_empty() {
                        StopReason::Complete
                    } else {
                        StopReason::BudgetSpent
                    });
                    break;
                }
                let next = waiting.iter().map(|w| w.at).min();
                if queue.is_empty()
                    && let (Some(next), Some(stop_at)) = (next, self.budget.stop_at())
                    && next >= stop_at
                {
                    stop = Some(StopReason::BudgetSpent);
                    break;
                }
            }
            let wake = waiting
                .iter()
                .map(|w| w.at)
                .chain(paused_until.filter(|p| *p > now))
                .min();
            tokio::select! {
                joined = running.join_next(), if !running.is_empty() => {
                    match joined {
                        Some(Ok(Done::File(p, outcome))) => outcomes.push_back((*p, outcome)),
                        Some(Ok(Done::Flush(pack))) => {
                            packs.resolve(pack, &mut outcomes, &mut deferred);
                        }
                        Some(Err(e)) if e.is_cancelled() => {}
                        Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                        None => {}
                    }
                }
                _ = sleep_until_opt(wake), if wake.is_some() => {}
                _ = sleep_until_opt(self.budget.stop_at()), if stop.is_none() && self.budget.stop_at().is_some() => {
                    stop = Some(StopReason::BudgetSpent);
                    cancel.cancel();
                }
                _ = self.interrupt.cancelled(), if stop.is_none() => {
                    stop = Some(StopReason::Interrupted);
                    cancel.cancel();
                }
            }
            while let Some((mut p, outcome)) = outcomes.pop_front() {
                match outcome {
                    FileOutcome::Completed => {}
                    FileOutcome::Packed {
                        deferred: later,
                        flushed,
                    } => packs.packed(p, later, flushed, &mut outcomes, &mut deferred),
                    FileOutcome::Abandoned => deferred.push(p),
                    FileOutcome::Deferred => deferred.push(p),
                    FileOutcome::Failed(err) => {
                        if let Some(wait) = transfer::rate_limit(&err) {
                            let len = next_part(&p.item, cfg.part_size).1;
                            if stop.is_none() && self.budget.fits_wait(wait, len) {
                                if !wait.is_zero() {
                                    self.events.emit(Event::Waiting { wait });
                                }
                                paused_until = Some(Instant::now() + wait);
                                queue.push_front(p);
                            } else {
                                if stop.is_none() {
                                    stop = Some(StopReason::RateLimited);
                                    report.rate_limit_wait = Some(wait);
                                    cancel.cancel();
                                }
                                deferred.push(p);
                            }
                            continue;
                        }
                        if let Some(fatal) = fatal(&err) {
                            if stop.is_none() {
                                stop = Some(StopReason::Error);
                                report.fatal = Some(fatal);
                                cancel.cancel();
                            }
                            deferred.push(p);
                            continue;
                        }
                        p.tries += 1;
                        let kind = kind_of(&err);
                        p.last_error = Some((err.to_string(), kind));
                        let delay = match kind {
                            FailureKind::Transient if stop.is_none() => p.backoff.next(),
                            _ => None,
                        };
                        let at = delay.map(|d| Instant::now() + d);
                        match (delay, at) {
                            (Some(d), Some(at)) if self.budget.stop_at().is_none_or(|s| at < s) => {
                                self.events.emit(Event::FileRetry {
                                    path: p.item.entry.path.clone(),
                                    error: without_path(&p.item.entry.path, err.to_string()),
                                    retry_in: d,
                                });
                                waiting.push(Waiting { at, item: p });
                            }
                            _ => {
                                let path = p.item.entry.path.clone();
                                self.fail_for_run(state, &path, &err, p.tries, &mut report);
                                if report.fatal.is_some() && stop.is_none() {
                                    stop = Some(StopReason::Error);
                                    cancel.cancel();
                                }
                            }
                        }
                    }
                }
            }
            if stop.is_some() && !running.is_empty() {
                // Give transfers a moment to drop their parts cleanly, then cut them off.
                let grace = tokio::time::sleep(Duration::from_millis(1500));
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        joined = running.join_next() => match joined {
                            Some(Ok(Done::File(p, FileOutcome::Failed(err)))) if fatal(&err).is_none()
                                && transfer::rate_limit(&err).is_none() => {
                                let path = p.item.entry.path.clone();
                                self.fail_for_run(state, &path, &err, p.tries + 1, &mut report);
                            }
                            Some(Ok(Done::File(p, FileOutcome::Packed { deferred: later, flushed }))) => {
                                packs.packed(*p, later, flushed, &mut outcomes, &mut deferred);
                            }
                            Some(Ok(Done::File(p, _))) => deferred.push(*p),
                            Some(Ok(Done::Flush(pack))) => {
                                packs.resolve(pack, &mut outcomes, &mut deferred);
                            }
                            Some(Err(_)) => {}
                            None => break,
                        },
                        _ = &mut grace => {
                            running.abort_all();
                            while running.join_next().await.is_some() {}
                            break;
                        }
                    }
                }
            }
        }

        // Files of a pack that was never uploaded are not stored: the next run does them.
        // (Outcomes resolved after the loop, a pack's failure among them, count alike.)
        deferred.extend(packs.waiting.into_values());
        deferred.extend(outcomes.into_iter().map(|(p, _)| p));
        // Files waiting for a retry when the run ends have failed in this run.
        for w in waiting.drain(..) {
            let path = w.item.item.entry.path.clone();
            let (msg, kind) = w
                .item
                .last_error
                .clone()
                .unwrap_or_else(|| ("unknown".into(), FailureKind::Transient));
            self.record_failure(state, &path, msg, kind, w.item.tries, &mut report);
            deferred.push(w.item);
        }
        let left: Vec<&Pending> = deferred.iter().chain(queue.iter()).collect();
        report.files_left = left.len() as u64;
        report.bytes_left = left
            .iter()
            .map(|p| {
                let done: u64 = {
                    let st = state.lock().unwrap();
                    st.state()
                        .in_progress
                        .get(&p.item.entry.path)
                        .map(|ip| ip.parts.iter().map(|x| x.len).sum())
                        .unwrap_or(0)
                };
                p.item.entry.size.saturating_sub(done)
            })
            .sum();
        report.breakdown = {
            let left: HashSet<&str> = left.iter().map(|p| p.item.entry.path.as_str()).collect();
            Breakdown::of(&listing, &cfg.filter, state.lock().unwrap().state(), &left)
        };
        report.stop_reason = stop.unwrap_or(StopReason::Complete);
        if report.stop_reason == StopReason::Complete && report.files_left > 0 {
            report.stop_reason = StopReason::BudgetSpent;
        }
        // The deadline and the last file can finish in the same instant; with nothing
        // left, the run is complete whichever the loop saw first.
        if report.stop_reason == StopReason::BudgetSpent && report.files_left == 0 {
            report.stop_reason = StopReason::Complete;
        }
        self.events.emit(Event::Stopping {
            reason: report.stop_reason,
        });
        report
    }

    fn record_plan(
        &self,
        state: &Arc<Mutex<StateFile>>,
        plan: &plan::Plan,
    ) -> Result<Vec<String>, StateError> {
        let mut st = state.lock().unwrap();
        st.set_run_totals(plan.files_total, plan.bytes_total)?;
        let mut garbage = Vec::new();
        for path in &plan.stale_in_progress {
            garbage.extend(transfer::drop_in_progress(&mut st, path)?);
        }
        for path in &plan.failures_gone {
            st.record(Record::FailureCleared { path: path.clone() })?;
        }
        for (path, reason) in &plan.newly_refused {
            self.events.emit(Event::Skipped {
                path: path.clone(),
                reason: reason.clone(),
            });
            st.record(Record::Skipped {
                path: path.clone(),
                entry: crate::state::Skipped {
                    reason: reason.clone(),
                    since: crate::time::now(),
                },
            })?;
        }
        for path in &plan.no_longer_refused {
            st.record(Record::SkipCleared { path: path.clone() })?;
        }
        Ok(garbage)
    }

    fn fail_for_run(
        &self,
        state: &Arc<Mutex<StateFile>>,
        path: &str,
        err: &FileError,
        tries: u32,
        report: &mut RunReport,
    ) {
        if let FileError::State(e) = err {
            report.fatal = Some(RunError::State(clone_state_error(e)));
        }
        self.record_failure(state, path, err.to_string(), kind_of(err), tries, report);
    }

    fn record_failure(
        &self,
        state: &Arc<Mutex<StateFile>>,
        path: &str,
        message: String,
        kind: FailureKind,
        tries: u32,
        report: &mut RunReport,
    ) {
        let message = without_path(path, message);
        let now = crate::time::now();
        let mut st = state.lock().unwrap();
        let prev = st.state().failed.get(path).cloned();
        let attempts = prev.as_ref().map_or(0, |f| f.attempts) + 1;
        let given_up = attempts >= self.config.max_failures;
        let entry = Failed {
            attempts,
            tries: prev.as_ref().map_or(0, |f| f.tries) + tries.max(1),
            last_error: message.clone(),
            kind,
            first_failed: prev.as_ref().map_or(now, |f| f.first_failed),
            last_failed: now,
            given_up,
        };
        if let Err(e) = st.record(Record::FileFailed {
            path: path.to_owned(),
            entry,
        }) {
            report.fatal.get_or_insert(RunError::State(e));
        }
        drop(st);
        report.failed.push((path.to_owned(), message.clone()));
        if given_up {
            report.given_up.push(path.to_owned());
        }
        self.events.emit(Event::FileFailed {
            path: path.to_owned(),
            error: message,
            given_up,
        });
    }
}

/// Where the next part of a file starts, and its length.
fn next_part(item: &WorkItem, part_size: u64) -> (u64, u64) {
    let done = item.resume.as_ref().map_or(0, |r| r.parts.len() as u64);
    let offset = done * part_size;
    (
        offset,
        item.entry.size.saturating_sub(offset).min(part_size),
    )
}

fn kind_of(err: &FileError) -> FailureKind {
    match err {
        FileError::Source(e) if e.is_transient() => FailureKind::Transient,
        FileError::Store(StoreError::Transient { .. } | StoreError::Missing { .. }) => {
            FailureKind::Transient
        }
        _ => FailureKind::Permanent,
    }
}

fn fatal(err: &FileError) -> Option<RunError> {
    match err {
        FileError::Store(e) if e.is_fatal() => Some(RunError::Store(e.clone())),
        FileError::Source(e @ SourceError::Unavailable { .. }) => Some(RunError::Source(e.clone())),
        FileError::State(e) => Some(RunError::State(clone_state_error(e))),
        _ => None,
    }
}

/// State errors hold an `io::Error`, which does not clone; keep kind and message.
fn clone_state_error(e: &StateError) -> StateError {
    match e {
        StateError::Io { path, source } => StateError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => StateError::Io {
            path: Default::default(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// What a worker task of the run gives back.
enum Done {
    /// A file's turn ended.
    File(Box<Pending>, FileOutcome),
    /// The open pack was uploaded at the end of the work (or failed to be).
    Flush(pack::PackOutcome),
}

/// How a pack ended for one file in it.
enum Resolution {
    /// Stored and recorded.
    Stored,
    /// The upload failed.
    Failed(FileError),
    /// The run stopped first.
    Dropped,
}

impl Resolution {
    /// Passes the file on: a failure to the failure handling, a dropped pack's file to
    /// the next run.
    fn apply(
        self,
        p: Pending,
        outcomes: &mut VecDeque<(Pending, FileOutcome)>,
        deferred: &mut Vec<Pending>,
    ) {
        match self {
            Resolution::Stored => {}
            Resolution::Failed(err) => outcomes.push_back((p, FileOutcome::Failed(err))),
            Resolution::Dropped => deferred.push(p),
        }
    }
}

/// Files in packs not yet uploaded, and how packs ended for files whose own outcome has
/// not come back yet (a pack may be uploaded by another worker first).
#[derive(Default)]
struct PackWaits {
    waiting: HashMap<String, Pending>,
    early: HashMap<String, Resolution>,
}

impl PackWaits {
    /// A file's turn ended in a pack (`later`: no, the budget deferred it), with the
    /// packs uploaded meanwhile.
    fn packed(
        &mut self,
        p: Pending,
        later: bool,
        flushed: Vec<pack::PackOutcome>,
        outcomes: &mut VecDeque<(Pending, FileOutcome)>,
        deferred: &mut Vec<Pending>,
    ) {
        if later {
            deferred.push(p);
        } else {
            let path = p.item.entry.path.clone();
            match self.early.remove(&path) {
                Some(done) => done.apply(p, outcomes, deferred),
                None => {
                    self.waiting.insert(path, p);
                }
            }
        }
        for pack in flushed {
            self.resolve(pack, outcomes, deferred);
        }
    }

    /// Applies a pack's outcome to the files in it, or keeps it for files whose own
    /// outcome has not come back yet.
    fn resolve(
        &mut self,
        pack: pack::PackOutcome,
        outcomes: &mut VecDeque<(Pending, FileOutcome)>,
        deferred: &mut Vec<Pending>,
    ) {
        let (paths, error, dropped) = match pack {
            pack::PackOutcome::Stored { paths } => (paths, None, false),
            pack::PackOutcome::Dropped { paths } => (paths, None, true),
            pack::PackOutcome::Failed { paths, error } => (paths, Some(error), false),
        };
        for path in paths {
            let how = match &error {
                Some(e) => Resolution::Failed(duplicate(e)),
                None if dropped => Resolution::Dropped,
                None => Resolution::Stored,
            };
            match self.waiting.remove(&path) {
                Some(p) => how.apply(p, outcomes, deferred),
                None => {
                    self.early.insert(path, how);
                }
            }
        }
    }
}

/// A copy of a file error, for each file of a pack that failed.
fn duplicate(err: &FileError) -> FileError {
    match err {
        FileError::Source(e) => FileError::Source(e.clone()),
        FileError::Store(e) => FileError::Store(e.clone()),
        FileError::State(e) => FileError::State(clone_state_error(e)),
        FileError::Vault(e) => FileError::Store(StoreError::Transient {
            message: e.to_string(),
        }),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;
    use crate::source::{Listing, SourceEntry};
    use crate::state::{Completed, Encryption, InProgress, Job, State};

    #[test]
    fn an_error_names_its_file_once() {
        let e = SourceError::Unreadable {
            path: "a/b.txt".into(),
            message: "denied".into(),
        };
        assert_eq!(
            without_path("a/b.txt", e.to_string()),
            "cannot be read: denied"
        );
        assert_eq!(
            without_path("other", e.to_string()),
            "a/b.txt: cannot be read: denied"
        );
    }

    #[test]
    fn the_breakdown_adds_up_to_the_source() {
        let t = |s| crate::time::Timestamp::from_second(s).unwrap();
        let entry = |path: &str, size| SourceEntry {
            path: path.into(),
            size,
            mtime: t(1),
        };
        let listing = Listing {
            files: ["stored", "partly", "todo", "failing", "gone", "skipped/x"]
                .iter()
                .zip([1, 2, 3, 4, 5, 6])
                .map(|(p, n)| entry(p, n))
                .collect(),
            ..Listing::default()
        };
        let mut st = State::new(Job {
            source: "s".into(),
            store: "t".into(),
            encryption: Encryption::None,
            vault_id: None,
        });
        let done = Completed {
            size: 1,
            mtime: t(1),
            stored_at: t(2),
            parts: Vec::new(),
            object: None,
            versions: Vec::new(),
        };
        st.completed.insert("stored".into(), done);
        let mut ip = InProgress {
            size: 2,
            mtime: t(1),
            part_size: 1,
            parts_total: 2,
            started: t(2),
            parts: Vec::new(),
            vault: None,
        };
        ip.parts.push(crate::state::StoredPart {
            loc: "partly.001".into(),
            len: 1,
            sha256: String::new(),
            salt: None,
            nonce_prefix: None,
            store_mtime: None,
            offset: None,
        });
        st.in_progress.insert("partly".into(), ip);
        let failed = |given_up| Failed {
            attempts: 1,
            tries: 1,
            last_error: "x".into(),
            kind: FailureKind::Transient,
            first_failed: t(3),
            last_failed: t(3),
            given_up,
        };
        st.failed.insert("failing".into(), failed(false));
        st.failed.insert("gone".into(), failed(true));
        let filter = Filter::new(&[], &["skipped/**".into()]).unwrap();
        let left: HashSet<&str> = ["todo", "partly"].into_iter().collect();
        let b = Breakdown::of(&listing, &filter, &st, &left);
        let one = |files, bytes| Tally { files, bytes };
        assert_eq!(b.stored, one(1, 1));
        assert_eq!(b.partly_stored, one(1, 2));
        assert_eq!(b.to_do, one(1, 3));
        assert_eq!(b.failing, one(1, 4));
        assert_eq!(b.given_up, one(1, 5));
        assert_eq!(b.not_stored(), 4);
        let all = [b.stored, b.partly_stored, b.to_do, b.failing, b.given_up];
        assert_eq!(all.iter().map(|t| t.files).sum::<u64>(), 5);
        assert_eq!(all.iter().map(|t| t.bytes).sum::<u64>(), 15);
    }
}
