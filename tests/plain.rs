//! Plain mode never writes over bytes the state points to: a changed file's new version
//! is staged while its previous one stays whole and restorable, and is switched in
//! (placed under its own names) only once it is complete. Checked at every instant of a
//! switch over the in-memory store (the state as a kill there would leave it, and the run
//! after such a kill), over the Telegram double, and by `verify`. All on tokio's paused
//! clock; the kills of the real binary are in tests/cli.rs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tgferry::restore::{Issue, VerifyOptions, verify};
use tgferry::runner::{Budget, Events, RunConfig, RunReport, Runner};
use tgferry::source::memory::MemorySource;
use tgferry::state::{Encryption, Job, LoadOptions, State, StateFile, StopReason};
use tgferry::store::memory::{MemoryStore, Snapshot};
use tgferry::store::{STAGING_PREFIX, Store, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;
/// The part size of the in-memory runs: small, so every instant can be replayed.
const PART: usize = 64 * 1024;

/// A temp folder on a RAM disk where there is one: these tests save states hundreds of
/// times, and an fsync on a busy disk can take a tenth of a second.
fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("tgferry-test-")
            .tempdir_in(shm)
    {
        return dir;
    }
    common::tempdir()
}

fn job(store: &str) -> Job {
    Job {
        source: "mem:src".into(),
        store: store.into(),
        encryption: Encryption::None,
        vault_id: None,
    }
}

/// One run, one file at a time.
async fn run_on<T: Store>(
    src: &MemorySource,
    store: Arc<T>,
    state: &Path,
    (store_name, part_size): (&str, usize),
    budget: Option<Duration>,
) -> RunReport {
    let (file, _) = StateFile::open(state, &job(store_name), &LoadOptions::default()).unwrap();
    let start = Instant::now();
    let budget = match budget {
        Some(b) => Budget::until(start, start + b, Duration::ZERO),
        None => Budget::unlimited(start),
    };
    let runner = Runner::new(
        Arc::new(src.clone()),
        store,
        RunConfig {
            part_size: part_size as u64,
            jobs: 1,
            ..RunConfig::default()
        },
        budget,
        Events::none(),
        CancellationToken::new(),
    );
    runner.run(file).await.map_err(|(_, e)| e).unwrap().1
}

async fn run(
    src: &MemorySource,
    store: &MemoryStore,
    state: &Path,
    budget: Option<Duration>,
) -> RunReport {
    run_on(
        src,
        Arc::new(store.clone()),
        state,
        ("mem:store", PART),
        budget,
    )
    .await
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Checks that every part `state` points at (completed and in progress) is in `parts`,
/// whole, with the recorded SHA-256; returns each completed file's content.
fn whole(state: &State, parts: &Snapshot, when: &str) -> BTreeMap<String, Vec<u8>> {
    let recorded = state
        .completed
        .values()
        .flat_map(|c| &c.parts)
        .chain(state.in_progress.values().flat_map(|i| &i.parts));
    for p in recorded {
        let data = parts
            .get(&p.loc)
            .unwrap_or_else(|| panic!("{when}: {} is missing", p.loc));
        assert_eq!(data.len() as u64, p.len, "{when}: {} length", p.loc);
        assert_eq!(
            sha(data),
            p.sha256,
            "{when}: {} is not what the state says",
            p.loc
        );
    }
    state
        .completed
        .iter()
        .map(|(path, c)| {
            let data = c.parts.iter().flat_map(|p| parts[&p.loc].clone()).collect();
            (path.clone(), data)
        })
        .collect()
}

/// Every completed file sits under its own names, nothing is staged, and the store's
/// files (as a user sees them) are `files`.
fn settled(state: &State, store: &Snapshot, files: &BTreeMap<String, Vec<u8>>, when: &str) {
    assert_eq!(
        &whole(state, store, when),
        files,
        "{when}: restored content"
    );
    assert!(state.in_progress.is_empty(), "{when}");
    for (path, c) in &state.completed {
        let n = c.parts.len();
        for (k, p) in c.parts.iter().enumerate() {
            let name = if n == 1 {
                path.clone()
            } else {
                format!("{path}.{:03}", k + 1)
            };
            assert_eq!(
                p.loc,
                name,
                "{when}: {path} part {} is not under its name",
                k + 1
            );
        }
    }
    let staged: Vec<&String> = store
        .keys()
        .filter(|l| l.starts_with(STAGING_PREFIX))
        .collect();
    assert!(staged.is_empty(), "{when}: staged parts left: {staged:?}");
}

/// The store as a user sees it: every part outside the store's own folder.
fn tree_of(parts: &Snapshot) -> BTreeMap<String, Vec<u8>> {
    parts
        .iter()
        .filter(|(loc, _)| !loc.starts_with(".tgferry/"))
        .map(|(loc, data)| (loc.clone(), data.clone()))
        .collect()
}

/// What `files` look like in a plain store at [`PART`]-sized parts: under their own names, or in
/// numbered pieces.
fn named(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (path, data) in files {
        if data.len() <= PART {
            out.insert(path.clone(), data.clone());
            continue;
        }
        for (k, piece) in data.chunks(PART).enumerate() {
            out.insert(format!("{path}.{:03}", k + 1), piece.to_vec());
        }
    }
    out
}

/// The state a process killed now would leave: the state file and its journal, copied
/// into a folder of their own.
#[derive(Clone)]
struct Moment {
    parts: Snapshot,
    state: Option<Vec<u8>>,
    journal: Option<Vec<u8>>,
}

fn journal_of(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

impl Moment {
    fn take(parts: &Snapshot, state: &Path) -> Self {
        Moment {
            parts: parts.clone(),
            state: std::fs::read(state).ok(),
            journal: std::fs::read(journal_of(state)).ok(),
        }
    }

    /// Writes the state files into `dir`; returns the state's path.
    fn restore_files(&self, dir: &Path) -> PathBuf {
        let state = dir.join("state.json");
        if let Some(b) = &self.state {
            std::fs::write(&state, b).unwrap();
        }
        if let Some(b) = &self.journal {
            std::fs::write(journal_of(&state), b).unwrap();
        }
        state
    }
}

fn versions() -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let v1: BTreeMap<String, Vec<u8>> = [
        ("same.bin", common::bytes(1, 3 * PART)),
        ("grow.bin", common::bytes(2, 2 * PART)),
        ("shrink.bin", common::bytes(3, 3 * PART)),
        ("one.txt", common::bytes(4, 50)),
        ("keep.txt", common::bytes(5, 70)),
    ]
    .into_iter()
    .map(|(p, d)| (p.to_owned(), d))
    .collect();
    let mut v2 = v1.clone();
    v2.insert("same.bin".into(), common::bytes(11, 3 * PART));
    v2.insert("grow.bin".into(), common::bytes(12, 3 * PART - 7));
    v2.insert("shrink.bin".into(), common::bytes(13, 1000));
    v2.insert("one.txt".into(), common::bytes(14, 60));
    v2.insert("new.bin".into(), common::bytes(15, 2 * PART));
    (v1, v2)
}

/// A changed multi-part file whose new version stops half-way (the budget) leaves its
/// previous version whole under its names and in the state; the next run resumes the
/// new version from its staged parts, then switches it in.
#[tokio::test(start_paused = true)]
async fn a_changed_file_stopped_half_way_keeps_its_previous_version_whole() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    let v1 = common::bytes(1, 3 * PART);
    src.put("big.bin", v1.clone());
    let store = MemoryStore::new().with_speed(PART as u64); // a part a second
    run(&src, &store, &state, None).await;

    let v2 = common::bytes(2, 3 * PART);
    src.put("big.bin", v2.clone());
    // Two parts fit in 2.5 s, the third does not.
    let report = run(&src, &store, &state, Some(Duration::from_millis(2500))).await;
    assert_eq!(report.stop_reason, StopReason::BudgetSpent);
    assert_eq!(report.run.parts_stored, 2);
    let st = common::load(&state);
    assert_eq!(st.in_progress["big.bin"].parts.len(), 2);
    let files = whole(&st, &store.snapshot(), "after the stop");
    assert!(files["big.bin"] == v1, "the previous version restores");
    let by_name: Vec<u8> = (1..=3)
        .flat_map(|k| store.get(&format!("big.bin.{k:03}")).unwrap())
        .collect();
    assert!(by_name == v1, "the store still shows the previous version");

    let report = run(&src, &store, &state, None).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    assert_eq!(report.run.parts_stored, 1, "the staged parts were resumed");
    let st = common::load(&state);
    let expected = BTreeMap::from([("big.bin".to_owned(), v2)]);
    settled(&st, &store.snapshot(), &expected, "after the switch");
    assert_eq!(tree_of(&store.snapshot()), named(&expected));
}

/// At every instant of a run that stores changed files (before and after each change to
/// the store), the state a kill would leave points only at whole parts holding what it
/// records, and every completed file restores as one of its versions. A run started from
/// any of those instants finishes the switch: every file under its own names, nothing
/// staged left.
#[tokio::test(start_paused = true)]
async fn every_instant_of_a_switch_is_restorable_and_recovers() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    let (v1, v2) = versions();
    for (path, data) in &v1 {
        src.put(path, data.clone());
    }
    let instants: Arc<Mutex<Vec<Moment>>> = Arc::default();
    let seen = instants.clone();
    let state_path = state.clone();
    let store = MemoryStore::new().observe(move |parts| {
        seen.lock().unwrap().push(Moment::take(parts, &state_path));
    });
    run(&src, &store, &state, None).await;
    instants.lock().unwrap().clear();
    for (path, data) in &v2 {
        if v1.get(path) != Some(data) {
            src.put(path, data.clone());
        }
    }
    let report = run(&src, &store, &state, None).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    let instants = std::mem::take(&mut *instants.lock().unwrap());
    assert!(instants.len() >= 20, "only {} instants", instants.len());

    for (i, at) in instants.iter().enumerate() {
        let when = format!("instant {i}");
        let copy = tempdir();
        let state = at.restore_files(copy.path());
        let st = common::load(&state);
        for (path, data) in whole(&st, &at.parts, &when) {
            assert!(
                v1.get(&path) == Some(&data) || v2[&path] == data,
                "{when}: {path} restores as neither version"
            );
        }
        // The next run, after a kill here.
        let store = MemoryStore::from_snapshot(&at.parts);
        let report = run(&src, &store, &state, None).await;
        assert!(report.failed.is_empty(), "{when}: {:?}", report.failed);
        let st = common::load(&state);
        settled(&st, &store.snapshot(), &v2, &when);
    }
    assert!(
        instants
            .iter()
            .any(|i| i.parts.keys().any(|l| l.starts_with(STAGING_PREFIX))),
        "nothing was staged"
    );
    settled(&common::load(&state), &store.snapshot(), &v2, "the end");
    // What users see: their files under their own names, as they are now (the part
    // files of shrink.bin's old version are gone).
    assert_eq!(tree_of(&store.snapshot()), named(&v2));
}

/// A store that cannot place a part leaves it staged, restorable from there, and the
/// next run (with nothing else to do) places it.
#[tokio::test(start_paused = true)]
async fn a_part_that_cannot_be_placed_stays_staged_until_the_next_run() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    src.put("a.bin", common::bytes(1, 2 * PART));
    let store = MemoryStore::new();
    run(&src, &store, &state, None).await;
    let v2 = common::bytes(2, 2 * PART);
    src.put("a.bin", v2.clone());
    store.inject_place([StoreError::Transient {
        message: "the disk hiccuped".into(),
    }]);
    let report = run(&src, &store, &state, None).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    assert!(report.failed.is_empty());
    let st = common::load(&state);
    let locs: Vec<&str> = st.completed["a.bin"]
        .parts
        .iter()
        .map(|p| p.loc.as_str())
        .collect();
    assert_eq!(locs, [".tgferry/staged/a.bin.001", "a.bin.002"]);
    assert!(whole(&st, &store.snapshot(), "staged")["a.bin"] == v2);

    let report = run(&src, &store, &state, None).await;
    assert_eq!(report.stop_reason, StopReason::NothingToDo);
    let expected = BTreeMap::from([("a.bin".to_owned(), v2)]);
    settled(
        &common::load(&state),
        &store.snapshot(),
        &expected,
        "next run",
    );
}

/// A part's name that the state gives to another file's stored copy (a file since
/// deleted from the source, whose name a growing file's parts now take) is never
/// written over: the part stays staged, and both files restore.
#[tokio::test(start_paused = true)]
async fn a_name_another_stored_copy_uses_is_never_written_over() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    let old = common::bytes(1, 100);
    src.put("x.001", old.clone());
    src.put("x", common::bytes(2, 10));
    let store = MemoryStore::new();
    run(&src, &store, &state, None).await;

    // x.001 leaves the source (its stored copy stays recorded); x grows to two parts.
    let src2 = MemorySource::new();
    let x = common::bytes(3, PART + 5);
    src2.put("x", x.clone());
    let report = run(&src2, &store, &state, None).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let st = common::load(&state);
    let files = whole(&st, &store.snapshot(), "after");
    assert!(files["x.001"] == old, "the deleted file's copy restores");
    assert!(files["x"] == x);
    assert_eq!(st.completed["x"].parts[0].loc, ".tgferry/staged/x.001");
    assert_eq!(st.completed["x"].parts[1].loc, "x.002");
}

/// Staged parts the state does not point at (a part finished, or placed, just before a
/// kill) are removed by the next run; those of an unfinished new version stay.
#[tokio::test(start_paused = true)]
async fn staged_parts_nothing_points_at_are_removed_by_the_next_run() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    src.put("a.bin", common::bytes(1, 3 * PART));
    let store = MemoryStore::new().with_speed(PART as u64);
    run(&src, &store, &state, None).await;
    src.put("a.bin", common::bytes(2, 3 * PART));
    run(&src, &store, &state, Some(Duration::from_millis(1500))).await;
    assert_eq!(common::load(&state).in_progress["a.bin"].parts.len(), 1);
    store.set(".tgferry/staged/a.bin.002", common::bytes(9, PART));
    store.set(".tgferry/staged/gone/b.txt", b"left by a kill".to_vec());

    // A budget too short for any part: the run only tidies.
    run(&src, &store, &state, Some(Duration::from_millis(10))).await;
    let staged: Vec<String> = store.staged().await.unwrap();
    assert_eq!(staged, [".tgferry/staged/a.bin.001"]);
}

/// Fast `verify` notices a plain part that was rewritten in the store since it was
/// stored, even with the same length (as an overwrite in place leaves it): its time
/// changed and its content differs. One rewritten with the same content is fine.
#[tokio::test(start_paused = true)]
async fn fast_verify_notices_a_part_rewritten_with_the_same_length() {
    let dir = tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    src.put("a.bin", common::bytes(1, 2 * PART));
    src.put("b.txt", common::bytes(2, 40));
    let store = MemoryStore::new();
    run(&src, &store, &state, None).await;
    let st = common::load(&state);
    assert!(st.completed["b.txt"].parts[0].store_mtime.is_some());
    let fast = VerifyOptions::fast();
    assert!(verify(&store, &st, None, &fast).await.unwrap().is_clean());

    store.set("a.bin.002", common::bytes(3, PART)); // same length, new content
    store.set("b.txt", common::bytes(2, 40)); // rewritten as it was
    let report = verify(&store, &st, None, &fast).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.part.as_ref().unwrap().2, "a.bin.002");
    assert!(matches!(p.issue, Issue::Damaged(_)), "{:?}", p.issue);
    assert!(p.issue.to_string().contains("modified"), "{}", p.issue);

    // Damage that leaves the time alone (a flipped bit) is for `verify --full` to find.
    store.set_keeping_time("a.bin.001", common::bytes(7, PART));
    let report = verify(&store, &st, None, &fast).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let report = verify(&store, &st, None, &VerifyOptions::full())
        .await
        .unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

/// Over Telegram every part is a new message and nothing is replaced: a changed file's
/// new version never stages, and its previous version stays whole until the switch.
#[tokio::test(start_paused = true)]
async fn over_telegram_a_changed_file_keeps_its_previous_messages_until_it_is_complete() {
    use tgferry::store::telegram::{TelegramOptions, TelegramStore};
    use tgferry::telegram::api::ChatRef;
    use tgferry::telegram::double::TelegramDouble;

    let dir = tempdir();
    let state = dir.path().join("state.json");
    // A part (two chunks in flight at once) takes 4 s.
    let tg = TelegramDouble::user().with_upload_speed(128 * 1024);
    let store = || {
        Arc::new(TelegramStore::new(
            tg.clone(),
            ChatRef::parse("@plain").unwrap(),
            TelegramOptions {
                plain: true,
                premium: false,
            },
        ))
    };
    let name = ("telegram:@plain", MIB);
    let src = MemorySource::new();
    let v1 = common::bytes(1, 3 * MIB);
    src.put("big.bin", v1.clone());
    run_on(&src, store(), &state, name, None).await;
    let old = common::load(&state).completed["big.bin"].parts.clone();

    src.put("big.bin", common::bytes(2, 3 * MIB));
    let report = run_on(&src, store(), &state, name, Some(Duration::from_secs(6))).await;
    assert_eq!(report.stop_reason, StopReason::BudgetSpent);
    let st = common::load(&state);
    assert_eq!(
        st.completed["big.bin"].parts, old,
        "the previous version is kept"
    );
    assert!(!st.in_progress["big.bin"].parts.is_empty());
    let parts: Vec<_> = st.in_progress["big.bin"].parts.iter().chain(&old).collect();
    assert!(parts.iter().all(|p| !p.loc.starts_with(STAGING_PREFIX)));
    let store = store();
    store.prepare().await.unwrap();
    let report = verify(&*store, &st, None, &VerifyOptions::full())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);

    let report = run_on(&src, store.clone(), &state, name, None).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    let st = common::load(&state);
    assert!(
        st.completed["big.bin"]
            .parts
            .iter()
            .all(|p| !old.contains(p))
    );
    let report = verify(&*store, &st, None, &VerifyOptions::full())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}
