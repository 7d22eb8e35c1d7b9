//! Running the runner in a test: over the in-memory source and store, with the events
//! it emitted and when (tokio time since start), under any budget.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tgferry::runner::{Budget, Event, Events, RunConfig, RunReport, Runner};
use tgferry::source::memory::MemorySource;
use tgferry::state::{Encryption, Job, LoadOptions, StateFile};
use tgferry::store::memory::MemoryStore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The job every in-memory run belongs to.
pub fn job() -> Job {
    Job {
        source: "mem:src".into(),
        store: "mem:store".into(),
        encryption: Encryption::None,
        vault_id: None,
    }
}

/// What one run reported, with the events it emitted and when (tokio time since start).
pub struct Ran {
    /// The report.
    pub report: RunReport,
    /// The events, with when.
    pub events: Vec<(Duration, Event)>,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Runs once over `src` and `store` with the state at `state`.
pub async fn run_with(
    src: &MemorySource,
    store: &MemoryStore,
    state: &Path,
    cfg: RunConfig,
    budget: Option<Duration>,
    interrupt: CancellationToken,
) -> Ran {
    let (file, _) = StateFile::open(state, &job(), &LoadOptions::default()).unwrap();
    let start = Instant::now();
    let budget = match budget {
        Some(b) => Budget::until(start, start + b, Duration::ZERO),
        None => Budget::unlimited(start),
    };
    let (events, mut rx) = Events::channel();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            seen.push((start.elapsed(), ev));
        }
        seen
    });
    let runner = Runner::new(
        Arc::new(src.clone()),
        Arc::new(store.clone()),
        cfg,
        budget,
        events,
        interrupt,
    );
    let (_file, report) = runner.run(file).await.map_err(|(_, e)| e).unwrap();
    let elapsed = start.elapsed();
    Ran {
        report,
        events: collector.await.unwrap(),
        elapsed,
    }
}

/// [`run_with`] without an interrupt.
pub async fn run(
    src: &MemorySource,
    store: &MemoryStore,
    state: &Path,
    cfg: RunConfig,
    budget: Option<Duration>,
) -> Ran {
    run_with(src, store, state, cfg, budget, CancellationToken::new()).await
}
