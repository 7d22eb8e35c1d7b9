//! The Telegram store end to end over the in-memory Telegram ([`TelegramDouble`]), which
//! enforces the server's rules: the whole runner through multi-run, budget-limited backups
//! in vault and plain mode, restores from the pinned catalog with the passphrase alone,
//! flood waits of several lengths (sat out or stopped on), dropped connections while
//! uploading and downloading, lost chunks, verify against damaged and deleted messages,
//! and prune of abandoned and unreferenced parts (by a bot that cannot read history).
//! Everything runs on tokio's paused clock.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tgferry::keyring;
use tgferry::prune::{PruneOptions, prune};
use tgferry::restore::{Issue, RestoreOptions, RestoreReport, VerifyOptions, restore, verify};
use tgferry::runner::{Budget, Events, RunConfig, RunError, RunReport, Runner, VaultKeys};
use tgferry::source::memory::MemorySource;
use tgferry::state::model::StoredPart;
use tgferry::state::{Encryption, Job, LoadOptions, State, StateFile, StopReason};
use tgferry::store::telegram::{TelegramOptions, TelegramStore};
use tgferry::store::{META_KEY_FILE, Store, StoreError, Upload};
use tgferry::telegram::api::{ChatRef, TelegramApi, TgError, UploadRef, WaitKind};
use tgferry::telegram::double::{Op, TelegramDouble};
use tgferry::vault::{KdfParams, KeyFile, MasterKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;
const PASS: &str = "correct horse battery staple";
const CHAT: &str = "@vault_chan";

fn chat() -> ChatRef {
    ChatRef::parse(CHAT).unwrap()
}

fn store_name() -> String {
    format!("telegram:{CHAT}")
}

fn pass() -> SecretString {
    SecretString::from(PASS.to_owned())
}

/// Restores everything `state` records from `store` into a fresh folder.
async fn restore_all(
    store: &TelegramStore<TelegramDouble>,
    state: &State,
    master: Option<&MasterKey>,
) -> (tempfile::TempDir, RestoreReport) {
    let out = common::tempdir();
    let report = restore(store, state, master, &RestoreOptions::new(out.path()))
        .await
        .unwrap();
    (out, report)
}

/// One user's backup job: a source, a Telegram chat (the double) and a state file.
struct Job1 {
    _dir: tempfile::TempDir,
    state: PathBuf,
    src: MemorySource,
    tg: TelegramDouble,
    plain: bool,
    part_size: u64,
    /// Vault runs pack small files (the default); off, each file has messages of its own.
    packing: Option<tgferry::runner::Packing>,
}

impl Job1 {
    fn new(tg: TelegramDouble, plain: bool) -> Job1 {
        let dir = common::tempdir();
        Job1 {
            state: dir.path().join("state.json"),
            _dir: dir,
            src: MemorySource::new(),
            tg,
            plain,
            part_size: MIB as u64,
            packing: RunConfig::default().packing,
        }
    }

    fn job(&self) -> Job {
        Job {
            source: "mem:src".into(),
            store: store_name(),
            encryption: if self.plain {
                Encryption::None
            } else {
                Encryption::Vault
            },
            vault_id: None,
        }
    }

    /// A new store over the same chat, as a new process would make.
    fn store(&self) -> TelegramStore<TelegramDouble> {
        TelegramStore::new(
            self.tg.clone(),
            chat(),
            TelegramOptions {
                plain: self.plain,
                premium: false,
            },
        )
    }

    /// Creates the vault in the chat (cheap KDF parameters: tests are not about argon2).
    async fn init_vault(&self) {
        let store = self.store();
        store.prepare().await.unwrap();
        let params = KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let (key_file, _) = KeyFile::create(&pass(), params).unwrap();
        store
            .put_meta(META_KEY_FILE, &key_file.to_json())
            .await
            .unwrap();
    }

    /// One run as `tgferry run` does it: unlock, run, save the catalog.
    async fn try_run(&self, budget: Option<Duration>) -> Result<RunReport, RunError> {
        let store = Arc::new(self.store());
        let (mut file, _) =
            StateFile::open(&self.state, &self.job(), &LoadOptions::default()).unwrap();
        let mut config = RunConfig {
            part_size: self.part_size,
            jobs: 2,
            packing: self.packing,
            ..RunConfig::default()
        };
        if !self.plain {
            store.prepare().await?;
            let (key_file, master, _) = keyring::unlock(&*store, &store_name(), &pass(), false)
                .await
                .unwrap();
            file.bind_vault(&key_file.vault_id_hex()).unwrap();
            config.vault = Some(Arc::new(VaultKeys::new(master)));
        }
        let vault = config.vault.clone();
        let start = Instant::now();
        let budget = match budget {
            Some(b) => Budget::until(start, start + b, Duration::ZERO),
            None => Budget::unlimited(start),
        };
        let (events, mut rx) = Events::channel();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let runner = Runner::new(
            Arc::new(self.src.clone()),
            store.clone(),
            config,
            budget,
            events,
            CancellationToken::new(),
        );
        let result = runner.run(file).await;
        drain.await.unwrap();
        let (file, report) = result.map_err(|(_, e)| e)?;
        if let Some(keys) = vault {
            keyring::save_catalog(&*store, &keys.master, file.state())
                .await
                .unwrap();
        }
        Ok(report)
    }

    async fn run(&self, budget: Option<Duration>) -> RunReport {
        self.try_run(budget).await.unwrap()
    }

    /// Runs with `budget` until a run completes; returns every run's report.
    async fn run_until_complete(&self, budget: Duration) -> Vec<RunReport> {
        let mut reports = Vec::new();
        for _ in 0..40 {
            let report = self.run(Some(budget)).await;
            let stop = report.stop_reason;
            reports.push(report);
            if matches!(stop, StopReason::Complete | StopReason::NothingToDo) {
                return reports;
            }
            assert_eq!(stop, StopReason::BudgetSpent, "{:?}", reports.last());
        }
        panic!("40 runs did not complete the backup");
    }

    fn saved_state(&self) -> State {
        let (file, _) = StateFile::open(&self.state, &self.job(), &LoadOptions::default())
            .expect("state opens");
        file.state().clone()
    }

    /// The master key, unlocked from the chat with the passphrase.
    async fn master(&self, store: &TelegramStore<TelegramDouble>) -> MasterKey {
        store.prepare().await.unwrap();
        keyring::unlock(store, &store_name(), &pass(), false)
            .await
            .unwrap()
            .1
    }

    /// Every source file equals the restored one under `to`.
    fn assert_restored(&self, to: &Path, files: &BTreeMap<String, Vec<u8>>) {
        let got = common::tree(to);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>()
        );
        for (path, data) in files {
            assert!(got[path] == *data, "{path}: content differs");
        }
    }
}

/// A corpus with every size that matters at 1 MiB parts and 512 KiB chunks.
fn corpus(src: &MemorySource) -> BTreeMap<String, Vec<u8>> {
    let sizes = [
        ("empty", 0),
        ("one-byte", 1),
        ("a/chunk", 512 * 1024),
        ("a/chunk+1", 512 * 1024 + 1),
        ("a/part", MIB),
        ("a/part-1", MIB - 1),
        ("b/multi part.bin", 3 * MIB + 12_345),
        ("b/deeper/small.txt", 4_000),
        ("c/big", 11 * MIB + 7),
    ];
    let mut files = BTreeMap::new();
    for (i, (path, len)) in sizes.iter().enumerate() {
        let data = common::bytes(i as u64 + 1, *len);
        src.put(path, data.clone());
        files.insert(path.to_string(), data);
    }
    // The same content twice: stored once in the vault.
    src.put("b/copy-of-part", files["a/part"].clone());
    files.insert("b/copy-of-part".into(), files["a/part"].clone());
    files
}

/// The parts a completed file's current content is stored in (vault or plain).
fn parts_of(state: &State, path: &str) -> Vec<StoredPart> {
    let c = &state.completed[path];
    match &c.object {
        Some(id) => state.objects[id].parts.clone(),
        None => c.parts.clone(),
    }
}

fn doc_ids(tg: &TelegramDouble) -> Vec<i32> {
    tg.messages()
        .iter()
        .filter(|m| m.name.is_some())
        .map(|m| m.id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn vault_backup_over_budget_limited_runs_restores_with_the_passphrase_alone() {
    let job = Job1::new(TelegramDouble::user().with_upload_speed(256 * 1024), false);
    job.init_vault().await;
    let files = corpus(&job.src);
    let reports = job.run_until_complete(Duration::from_secs(3)).await;
    let budget_stops = reports
        .iter()
        .filter(|r| r.stop_reason == StopReason::BudgetSpent)
        .count();
    assert!(budget_stops >= 3, "only {budget_stops} budget stops");
    for r in &reports {
        assert!(
            r.elapsed <= Duration::from_secs(3),
            "a run overran: {:?}",
            r.elapsed
        );
        assert!(r.failed.is_empty(), "{:?}", r.failed);
    }

    // Every part is a document with a neutral name and no caption; nothing names a file.
    let state = job.saved_state();
    let referenced = state.referenced_locs();
    let mut parts = 0;
    for m in job.tg.messages() {
        let Some(name) = &m.name else {
            assert!(m.pinned, "the only text message is the pinned index");
            assert!(m.text.starts_with("tgferry index v1"), "{}", m.text);
            continue;
        };
        if name.starts_with("tgferry-") {
            assert!(["tgferry-key.json", "tgferry-catalog"].contains(&name.as_str()));
            continue;
        }
        parts += 1;
        assert!(name.ends_with(".bin") && name.len() == 36, "{name}");
        assert_eq!(m.text, "", "vault parts have no caption");
        assert!(
            referenced.contains(format!("msg:{}", m.id).as_str()),
            "message {} is stored but not in the state",
            m.id
        );
        for path in files.keys() {
            let base = path.rsplit('/').next().unwrap();
            assert!(
                !name.contains(base) || base.len() < 4,
                "{name} leaks {path}"
            );
        }
    }
    // Each distinct content stored once (the copy is deduplicated), every part once.
    assert_eq!(
        parts,
        referenced.len(),
        "every recorded part is one message: nothing sent twice, nothing missing"
    );
    assert_eq!(
        job.tg
            .messages()
            .iter()
            .filter(|m| m.name.as_deref() == Some("tgferry-catalog"))
            .count(),
        1,
        "older catalogs are deleted when a new one is pinned"
    );
    assert_eq!(
        job.tg.messages().iter().filter(|m| m.pinned).count(),
        1,
        "one pinned index"
    );

    // Restore on a new machine: no state file, only the chat and the passphrase.
    let store = job.store();
    let master = job.master(&store).await;
    let catalog = keyring::load_catalog(&store, &master)
        .await
        .unwrap()
        .expect("the catalog is in the chat");
    let (out, report) = restore_all(&store, &catalog, Some(&master)).await;
    assert!(report.is_success(), "{:?}", report.failed);
    job.assert_restored(out.path(), &files);

    // And a full verify finds nothing wrong.
    let v = verify(&store, &catalog, Some(&master), &VerifyOptions::full())
        .await
        .unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
}

#[tokio::test(start_paused = true)]
async fn plain_mode_sends_files_as_themselves_split_into_numbered_pieces() {
    let mut job = Job1::new(TelegramDouble::user().with_upload_speed(512 * 1024), true);
    job.part_size = 2 * MIB as u64;
    let files = corpus(&job.src);
    let reports = job.run_until_complete(Duration::from_secs(2)).await;
    assert!(reports.len() >= 2, "the budget should split the backup");

    let docs: Vec<(String, String)> = job
        .tg
        .messages()
        .into_iter()
        .filter_map(|m| Some((m.name?, m.text)))
        .collect();
    let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
    // 11 MiB + 7 at 2 MiB parts: six pieces; 3 MiB: two; a whole part: one, unnumbered.
    for n in [
        "big.001",
        "big.006",
        "multi part.bin.001",
        "multi part.bin.002",
    ] {
        assert!(names.contains(&n), "{n} not among {names:?}");
    }
    assert!(!names.contains(&"big.007") && !names.contains(&"multi part.bin.003"));
    assert!(names.contains(&"small.txt") && names.contains(&"part"));
    assert!(!names.contains(&"empty"), "Telegram refuses empty files");
    let (_, caption) = docs.iter().find(|(n, _)| n == "small.txt").unwrap();
    assert_eq!(caption, "b/deeper/small.txt\n#tgferry");

    let store = job.store();
    store.prepare().await.unwrap();
    let (out, report) = restore_all(&store, &job.saved_state(), None).await;
    assert!(report.is_success(), "{:?}", report.failed);
    job.assert_restored(out.path(), &files);
}

#[tokio::test(start_paused = true)]
async fn flood_waits_that_fit_the_budget_are_sat_out() {
    for (kind, seconds) in [
        (WaitKind::Flood, 3),
        (WaitKind::PremiumFlood, 42),
        (WaitKind::SlowMode, 300),
    ] {
        let job = Job1::new(TelegramDouble::user(), false);
        job.init_vault().await;
        job.src.put("f", common::bytes(7, 3 * MIB));
        job.tg
            .inject(Op::SaveFilePart, TgError::Wait { seconds, kind });
        let report = job.run(Some(Duration::from_secs(3600))).await;
        assert_eq!(
            report.stop_reason,
            StopReason::Complete,
            "{kind:?} {seconds}"
        );
        assert!(
            report.elapsed >= Duration::from_secs(seconds.into()),
            "{kind:?}: the wait of {seconds} s was not honoured ({:?})",
            report.elapsed
        );
        assert!(report.elapsed < Duration::from_secs(u64::from(seconds) + 30));
        assert_eq!(job.tg.pending_faults(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_the_budget_stops_the_run_rate_limited_and_the_next_resumes() {
    for (kind, seconds) in [(WaitKind::Flood, 900), (WaitKind::SlowMode, 86_400)] {
        let mut job = Job1::new(TelegramDouble::user().with_upload_speed(MIB as u64), false);
        job.part_size = MIB as u64;
        job.init_vault().await;
        job.src.put("a", common::bytes(1, 3 * MIB));
        job.src.put("b", common::bytes(2, 3 * MIB));
        // The waits come after a part is in (the uploads share the connections, so which
        // part is sent first depends on timing; the first send gets through either way).
        job.tg
            .inject_after(Op::SendDocument, 1, TgError::Wait { seconds: 1, kind });
        job.tg
            .inject(Op::SendDocument, TgError::Wait { seconds: 1, kind });
        job.tg
            .inject(Op::SendDocument, TgError::Wait { seconds, kind });
        let first = job.run(Some(Duration::from_secs(600))).await;
        assert_eq!(first.stop_reason, StopReason::RateLimited, "{kind:?}");
        assert_eq!(
            first.rate_limit_wait,
            Some(Duration::from_secs(seconds.into()))
        );
        assert!(
            first.elapsed < Duration::from_secs(60),
            "the run gave up at once instead of waiting out the budget: {:?}",
            first.elapsed
        );
        let resume = first
            .run
            .resume_after
            .expect("the state says when to come back");
        assert!(resume.as_second() - first.run.ended.as_second() >= i64::from(seconds) - 1);
        let stored_before = first.run.parts_stored;
        assert!(stored_before >= 1, "parts stored before the wait are kept");

        let second = job.run(Some(Duration::from_secs(600))).await;
        assert_eq!(second.stop_reason, StopReason::Complete);
        assert_eq!(
            stored_before + second.run.parts_stored,
            6,
            "nothing stored twice, nothing lost"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_connections_while_uploading_reconnect_and_retry_the_part() {
    let job = Job1::new(TelegramDouble::user().with_upload_speed(MIB as u64), false);
    job.init_vault().await;
    let files = corpus(&job.src);
    // One drop reported by a request, one while chunks are on the wire.
    job.tg.inject(
        Op::SaveFilePart,
        TgError::Disconnected("connection reset".into()),
    );
    let tg = job.tg.clone();
    let dropper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        tg.drop_connection();
    });
    let report = job.run(None).await;
    dropper.await.unwrap();
    assert_eq!(report.stop_reason, StopReason::Complete);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(job.tg.calls(Op::Reconnect) >= 2);

    let store = job.store();
    let master = job.master(&store).await;
    let (out, r) = restore_all(&store, &job.saved_state(), Some(&master)).await;
    assert!(r.is_success(), "{:?}", r.failed);
    job.assert_restored(out.path(), &files);
}

#[tokio::test(start_paused = true)]
async fn a_chunk_the_server_lost_makes_the_part_go_again() {
    let job = Job1::new(TelegramDouble::user(), false);
    job.init_vault().await;
    let data = common::bytes(3, 2 * MIB + 99);
    job.src.put("f", data.clone());
    job.tg.lose_next_chunk();
    let report = job.run(None).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    let state = job.saved_state();
    // The key file, three parts, the one FILE_PART_X_MISSING refused, the catalog.
    assert_eq!(job.tg.calls(Op::SendDocument), 1 + 3 + 1 + 1);
    assert_eq!(
        job.tg.pending_uploads(),
        1,
        "the broken upload is left to expire"
    );

    let store = job.store();
    let master = job.master(&store).await;
    let (out, r) = restore_all(&store, &state, Some(&master)).await;
    assert!(r.is_success(), "{:?}", r.failed);
    assert!(std::fs::read(out.path().join("f")).unwrap() == data);
}

#[tokio::test(start_paused = true)]
async fn a_download_cut_off_resumes_at_its_offset() {
    let job = Job1::new(TelegramDouble::user(), false);
    job.init_vault().await;
    let data = common::bytes(4, 5 * MIB);
    job.src.put("f", data.clone());
    job.run(None).await;
    let state = job.saved_state();
    let stored: u64 = parts_of(&state, "f").iter().map(|p| p.len).sum();

    let slow = job.tg.clone().with_download_speed(MIB as u64);
    let store = job.store();
    let master = job.master(&store).await;
    let before = slow.bytes_downloaded();
    let tg = slow.clone();
    let dropper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2_300)).await;
        tg.drop_connection();
    });
    let (out, r) = restore_all(&store, &state, Some(&master)).await;
    dropper.await.unwrap();
    assert!(r.is_success(), "{:?}", r.failed);
    assert!(std::fs::read(out.path().join("f")).unwrap() == data);
    assert!(slow.calls(Op::Reconnect) >= 1);
    assert_eq!(
        slow.bytes_downloaded() - before,
        stored,
        "every byte fetched once: the cut download resumed where it stopped"
    );
}

/// Small files share packs (a message each per pack), and a restore reads each file's range
/// with the pack's message looked up once, not once per file in it.
#[tokio::test(start_paused = true)]
async fn small_files_in_packs_restore_with_one_lookup_per_pack() {
    let job = Job1::new(TelegramDouble::user(), false);
    job.init_vault().await;
    let mut files = BTreeMap::new();
    for i in 0..300u64 {
        let data = common::bytes(900 + i, 1_000 + (i as usize * 37) % 5_000);
        job.src.put(&format!("photos/{i:03}.jpg"), data.clone());
        files.insert(format!("photos/{i:03}.jpg"), data);
    }
    job.run(None).await;
    let state = job.saved_state();
    let packs: std::collections::BTreeSet<&str> = state
        .objects
        .values()
        .flat_map(|o| &o.parts)
        .map(|p| p.loc.as_str())
        .collect();
    assert_eq!(packs.len(), 1, "300 small files, one pack");
    let store = job.store();
    let master = job.master(&store).await;
    let before = job.tg.calls(Op::GetMessages);
    let (out, report) = restore_all(&store, &state, Some(&master)).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for (path, data) in &files {
        assert!(
            std::fs::read(out.path().join(path)).unwrap() == *data,
            "{path}"
        );
    }
    let lookups = job.tg.calls(Op::GetMessages) - before;
    assert!(lookups <= 3, "{lookups} message lookups for one pack");
}

#[tokio::test(start_paused = true)]
async fn verify_names_damaged_and_deleted_messages() {
    // A message per file, so that each can be damaged or deleted alone.
    let job = Job1 {
        packing: None,
        ..Job1::new(TelegramDouble::user(), false)
    };
    job.init_vault().await;
    job.src.put("kept", common::bytes(5, 100_000));
    job.src.put("flipped", common::bytes(6, 200_000));
    job.src.put("deleted", common::bytes(7, 300_000));
    job.run(None).await;
    let state = job.saved_state();
    let loc = |path: &str| parts_of(&state, path)[0].loc.clone();
    let id = |path: &str| loc(path)["msg:".len()..].parse::<i32>().unwrap();
    job.tg.corrupt(id("flipped"), 5_000);
    job.tg.delete_behind_our_back(id("deleted"));

    let store = job.store();
    let master = job.master(&store).await;
    let fast = verify(&store, &state, Some(&master), &VerifyOptions::fast())
        .await
        .unwrap();
    let broken: Vec<&str> = fast.broken_paths().into_iter().collect();
    assert_eq!(broken, ["deleted"], "a fast verify sees what is gone");
    assert!(
        fast.problems
            .iter()
            .any(|p| p.issue == Issue::Missing && p.part.as_ref().unwrap().2 == loc("deleted"))
    );

    let full = verify(&store, &state, Some(&master), &VerifyOptions::full())
        .await
        .unwrap();
    let broken: Vec<&str> = full.broken_paths().into_iter().collect();
    assert_eq!(broken, ["deleted", "flipped"]);
    assert!(
        full.problems
            .iter()
            .any(|p| matches!(p.issue, Issue::Damaged(_))
                && p.part.as_ref().unwrap().2 == loc("flipped"))
    );
}

/// Sends a vault-named part nothing refers to, as a run killed before its checkpoint
/// leaves behind.
async fn orphan(store: &TelegramStore<TelegramDouble>, len: usize) -> String {
    store.prepare().await.unwrap();
    let mut up = store
        .begin("data/0f/0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", len as u64)
        .await
        .unwrap();
    up.write(&common::bytes(9, len)).await.unwrap();
    up.finish().await.unwrap()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// A bot's chat with leftovers, every message dated `t0` on the double's clock: "done"
/// (stored by run 1, whose state has gone stale), "later" (stored by run 2, known to the
/// catalog only), "zz-abandoned" (started by run 2 and never finished), a gap of 150
/// messages deleted by someone else, a catalog blob a killed run sent but never indexed
/// (`stray`) and a part nothing refers to (`lost`). Prune runs from the stale state.
struct Leftovers {
    job: Job1,
    store: TelegramStore<TelegramDouble>,
    master: MasterKey,
    catalog: State,
    stale: State,
    current: State,
    abandoned_locs: Vec<String>,
    stray: String,
    lost: String,
    t0: jiff::Timestamp,
}

impl Leftovers {
    async fn new() -> Leftovers {
        let t0 = jiff::Timestamp::from_second(tgferry::time::now().as_second()).unwrap();
        // About 512 KiB/s per part (four chunks in flight).
        let tg = TelegramDouble::bot().with_upload_speed(128 * 1024);
        tg.set_now(t0.as_second());
        let mut job = Job1::new(tg, false);
        job.part_size = MIB as u64;
        job.init_vault().await;
        job.src.put("done", common::bytes(1, MIB + 5));
        job.run(None).await;
        let stale = job.saved_state();
        job.src.put("later", common::bytes(2, 1_000));
        job.src.put("zz-abandoned", common::bytes(3, 4 * MIB));
        let r = job.run(Some(Duration::from_secs(6))).await;
        assert_eq!(r.stop_reason, StopReason::BudgetSpent);
        let current = job.saved_state();
        let abandoned_locs: Vec<String> = current.in_progress["zz-abandoned"]
            .parts
            .iter()
            .map(|p| p.loc.clone())
            .collect();
        assert!(!abandoned_locs.is_empty());
        let store = job.store();
        for i in 0..150 {
            let id = job.tg.post_foreign(&format!("note {i}"));
            job.tg.delete_behind_our_back(id);
        }
        let stray = {
            let upload = UploadRef::new(5_000).unwrap();
            let tg = &job.tg;
            tg.save_file_part(&upload, 0, common::bytes(8, 5_000))
                .await
                .unwrap();
            let sent = tg.send_document(&upload, "tgferry-catalog", "").await;
            format!("msg:{}", sent.unwrap().id)
        };
        let lost = orphan(&store, 70_000).await;
        let master = job.master(&store).await;
        let catalog = keyring::load_catalog(&store, &master)
            .await
            .unwrap()
            .unwrap();
        assert!(
            job.tg.messages().iter().all(|m| m.date == t0.as_second()),
            "every message dated t0"
        );
        Leftovers {
            job,
            store,
            master,
            catalog,
            stale,
            current,
            abandoned_locs,
            stray,
            lost,
            t0,
        }
    }

    /// The job's state file holding the stale state (plus the abandoned draft).
    fn stale_file(&self) -> StateFile {
        let (mut file, _) =
            StateFile::open(&self.job.state, &self.job.job(), &LoadOptions::default()).unwrap();
        *file.state_mut() = self.stale.clone();
        file.state_mut().in_progress = self.current.in_progress.clone();
        file
    }

    /// Moves the double's clock (the date Telegram judges a message's age by) and gives
    /// prune options for the same moment.
    fn at(&self, later: Duration, older_than: Duration) -> PruneOptions {
        let now = self.t0 + jiff::SignedDuration::from_secs(later.as_secs() as i64);
        self.job.tg.set_now(now.as_second());
        PruneOptions {
            older_than,
            dry_run: false,
            now,
        }
    }

    /// What the catalog knows survives: "done" and "later" restore.
    async fn assert_catalog_restores(&self) {
        let (_out, r) = restore_all(&self.store, &self.catalog, Some(&self.master)).await;
        assert_eq!(r.restored, ["done", "later"], "{:?}", r.failed);
    }
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// Within Telegram's 48 hours a bot deletes: with `--older-than 1d`, 36 hours on, the
/// abandoned parts and both orphans go, and what the catalog needs stays.
#[tokio::test(start_paused = true)]
async fn prune_by_a_bot_within_48_hours_deletes_leftovers_and_keeps_what_the_catalog_needs() {
    let l = Leftovers::new().await;
    let mut file = l.stale_file();

    // Too recent for the default 7 days: nothing goes.
    let report = prune(
        &l.store,
        &mut file,
        Some(&l.catalog),
        &l.at(hours(1), days(7)),
    )
    .await
    .unwrap();
    assert!(report.abandoned.is_empty() && report.unreferenced.is_empty());
    assert!(report.too_recent >= 1);
    assert!(
        l.job.tg.calls(Op::LatestId) >= 1,
        "a bot tries history, then scans ids"
    );

    // 36 hours on, older than a day: the dry run lists, the real one deletes.
    let opts = l.at(hours(36), days(1));
    let dry = prune(
        &l.store,
        &mut file,
        Some(&l.catalog),
        &PruneOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.unreferenced.len(), 2);
    let ids_before = doc_ids(&l.job.tg);
    let report = prune(&l.store, &mut file, Some(&l.catalog), &opts)
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.undeletable.is_empty(), "{:?}", report.undeletable);
    assert_eq!(report.abandoned.len(), 1);
    assert_eq!(report.abandoned[0].path, "zz-abandoned");
    let gone: Vec<String> = report.unreferenced.iter().map(|p| p.loc.clone()).collect();
    assert_eq!(gone, [l.stray.clone(), l.lost.clone()]);
    let ids_after = doc_ids(&l.job.tg);
    assert_eq!(
        ids_before.len() - ids_after.len(),
        l.abandoned_locs.len() + 2,
        "exactly the abandoned parts and the two orphans are deleted"
    );
    assert!(!file.state().in_progress.contains_key("zz-abandoned"));
    l.assert_catalog_restores().await;
}

/// Past Telegram's 48 hours a bot may not delete (MESSAGE_DELETE_FORBIDDEN, even as an
/// admin): eight days on, prune deletes nothing, fails nothing, and reports every leftover
/// it kept with the two ways to remove it (a user session, or by hand).
#[tokio::test(start_paused = true)]
async fn prune_by_a_bot_past_48_hours_keeps_leftovers_and_says_who_can_delete_them() {
    let l = Leftovers::new().await;
    let mut file = l.stale_file();
    let ids_before = doc_ids(&l.job.tg);
    let report = prune(
        &l.store,
        &mut file,
        Some(&l.catalog),
        &l.at(days(8), days(7)),
    )
    .await
    .expect("prune does not fail");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(doc_ids(&l.job.tg), ids_before, "nothing deleted");
    let mut kept: Vec<String> = report
        .undeletable
        .iter()
        .map(|(loc, _)| loc.clone())
        .collect();
    kept.sort();
    let mut expected = l.abandoned_locs.clone();
    expected.extend([l.stray.clone(), l.lost.clone()]);
    expected.sort();
    assert_eq!(kept, expected, "every leftover reported as kept");
    for (_, how) in &report.undeletable {
        assert!(
            how.contains("48 hours") && how.contains("user session") && how.contains("by hand"),
            "{how}"
        );
    }
    assert!(report.unreferenced.is_empty(), "{:?}", report.unreferenced);
    // The abandoned draft leaves the state (its parts are reported); nothing the catalog
    // needs is touched.
    assert!(!file.state().in_progress.contains_key("zz-abandoned"));
    l.assert_catalog_restores().await;
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_chats_and_rights_end_the_run_with_the_fix() {
    for (tg, expect) in [
        (TelegramDouble::user().unauthorized(), "TGFERRY_TG_SESSION"),
        (TelegramDouble::user().chat_missing(), "account is a member"),
        (TelegramDouble::user().read_only(), "admin"),
    ] {
        let job = Job1::new(tg, true);
        job.src.put("f", common::bytes(1, 1000));
        // Refused at connection (an error) or at the first upload (the run's fatal error).
        let err = match job.try_run(None).await {
            Err(e) => e,
            Ok(report) => {
                assert_eq!(report.stop_reason, StopReason::Error);
                report.fatal.expect("a fatal error")
            }
        };
        let RunError::Store(StoreError::Denied { store, message }) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(store, &store_name());
        assert!(message.contains(expect), "{message}");
    }
    // Two processes on one session: the store is locked.
    let tg = TelegramDouble::user();
    tg.inject(Op::Connect, TgError::SessionInUse);
    let job = Job1::new(tg, true);
    job.src.put("f", common::bytes(1, 1000));
    let err = job.try_run(None).await.unwrap_err();
    assert!(
        matches!(err, RunError::Store(StoreError::Locked { .. })),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn parts_over_the_telegram_limit_are_refused_before_any_chunk_is_sent() {
    let tg = TelegramDouble::user();
    let job = Job1::new(tg.clone(), false);
    let store = job.store();
    store.prepare().await.unwrap();
    let err = store
        .begin(
            "data/ab/abababababababababababababababab",
            2000 * MIB as u64 + 1,
        )
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("--part-size"), "{err}");
    assert_eq!(tg.calls(Op::SaveFilePart), 0);

    // --telegram-premium on an account without Premium is refused at prepare.
    let premium = TelegramStore::new(
        tg.clone(),
        chat(),
        TelegramOptions {
            plain: false,
            premium: true,
        },
    );
    let err = premium.prepare().await.unwrap_err();
    assert!(err.to_string().contains("--telegram-premium"), "{err}");
    let premium_account = TelegramDouble::user().premium(true);
    let store = TelegramStore::new(
        premium_account,
        chat(),
        TelegramOptions {
            plain: false,
            premium: true,
        },
    );
    store.prepare().await.unwrap();
    assert!(
        store
            .begin(
                "data/ab/abababababababababababababababab",
                3000 * MIB as u64
            )
            .await
            .is_ok()
    );
}

// The command line. Nothing here may reach Telegram (there is no network in tests): every
// case is refused before a connection is made.

const HASH: &str = "0123456789abcdef0123456789abcdef";
const TOKEN_SECRET: &str = "AAEhBP0av28HkqQ-kqVsFaIcR9LxLr_3x4w";

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bad_chats_and_oversized_parts_are_usage_errors_before_any_credential_is_read() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    for (store, extra, says) in [
        ("telegram:vault", &[][..], "username"),
        ("telegram:@ab", &[][..], "4–32"),
        (
            "telegram:@vault_chan",
            &["--encryption", "none", "--part-size", "2001MiB"][..],
            "--part-size",
        ),
        (
            "telegram:@vault_chan",
            &["--encryption", "vault", "--part-size", "2000MiB"][..],
            "1999MiB",
        ),
    ] {
        let out = common::assert_exit(
            common::run_cmd(dir.path(), store, &state, extra).env("TGFERRY_PASSPHRASE", PASS),
            2,
        );
        let text = output_text(&out);
        assert!(text.contains(says), "{store} {extra:?}: {text}");
        assert!(!state.exists(), "no state is written for a refused command");
    }
    // With --telegram-premium the limit is 4000 MiB.
    let out = common::assert_exit(
        common::run_cmd(
            dir.path(),
            "telegram:@vault_chan",
            &state,
            &[
                "--encryption",
                "vault",
                "--part-size",
                "4000MiB",
                "--telegram-premium",
            ],
        )
        .env("TGFERRY_PASSPHRASE", PASS),
        2,
    );
    assert!(output_text(&out).contains("3999MiB"));
}

#[test]
fn missing_or_malformed_credentials_exit_13_naming_the_variable_not_the_value() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "TGFERRY_TG_API_ID"),
        (
            vec![("TGFERRY_TG_API_ID", "12345".into())],
            "TGFERRY_TG_API_HASH",
        ),
        (
            vec![
                ("TGFERRY_TG_API_ID", "12345".into()),
                ("TGFERRY_TG_API_HASH", HASH.into()),
            ],
            "TGFERRY_TG_BOT_TOKEN",
        ),
        (
            vec![
                ("TGFERRY_TG_API_ID", "12345".into()),
                ("TGFERRY_TG_API_HASH", "my-api-hash-is-secret".into()),
                ("TGFERRY_TG_BOT_TOKEN", format!("123:{TOKEN_SECRET}")),
            ],
            "TGFERRY_TG_API_HASH",
        ),
        (
            vec![
                ("TGFERRY_TG_API_ID", "12345".into()),
                ("TGFERRY_TG_API_HASH", HASH.into()),
                ("TGFERRY_TG_BOT_TOKEN", "wrong-shape-token-secret".into()),
            ],
            "TGFERRY_TG_BOT_TOKEN",
        ),
        (
            vec![
                ("TGFERRY_TG_API_ID", "12345".into()),
                ("TGFERRY_TG_API_HASH", HASH.into()),
                (
                    "TGFERRY_TG_SESSION",
                    "tgferry-session-v1:c2VjcmV0LXNlc3Npb24tYnl0ZXM=".into(),
                ),
            ],
            "TGFERRY_TG_SESSION",
        ),
        (
            vec![
                ("TGFERRY_TG_API_ID", "12345".into()),
                ("TGFERRY_TG_API_HASH", HASH.into()),
                ("TGFERRY_TG_BOT_TOKEN", format!("123:{TOKEN_SECRET}")),
                ("TGFERRY_TG_SESSION", "tgferry-session-v1:AAAA".into()),
            ],
            "TGFERRY_TG_SESSION",
        ),
    ];
    for (vars, named) in cases {
        let mut cmd = common::run_cmd(
            dir.path(),
            "telegram:@vault_chan",
            &state,
            &["--encryption", "none"],
        );
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = common::assert_exit(&mut cmd, 13);
        let text = output_text(&out);
        assert!(text.contains(named), "{vars:?}: {text}");
        for (k, v) in &vars {
            if *k != "TGFERRY_TG_API_ID" {
                assert!(!text.contains(v.as_str()), "{k}'s value leaked: {text}");
            }
        }
        assert!(!text.contains(TOKEN_SECRET) && !text.contains("c2VjcmV0"));
        assert!(
            !state.exists(),
            "nothing is written when credentials are refused"
        );
    }
}

#[test]
fn telegram_login_needs_the_app_and_a_phone_number_before_it_connects() {
    let out = common::assert_exit(&mut common::tgferry(&["telegram", "login"]), 13);
    assert!(output_text(&out).contains("TGFERRY_TG_API_ID"));
    let out = common::assert_exit(
        common::tgferry(&["telegram", "login"])
            .env("TGFERRY_TG_API_ID", "12345")
            .env("TGFERRY_TG_API_HASH", HASH)
            .stdin(std::process::Stdio::null()),
        13,
    );
    let text = output_text(&out);
    assert!(
        text.contains("Phone number") && text.contains("end of input"),
        "{text}"
    );
    assert!(!text.contains(HASH));
}

/// `tgferry prune --store STORE --state STATE EXTRA...` with the passphrase.
fn prune_cmd(store: &Path, state: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "prune",
        "--store",
        common::s(store),
        "--state",
        common::s(state),
    ];
    args.extend_from_slice(extra);
    let mut c = common::tgferry(&args);
    c.env("TGFERRY_PASSPHRASE", PASS);
    c
}

#[test]
fn prune_on_a_local_vault_deletes_old_orphans_only_after_a_dry_run_shows_them() {
    let dir = common::tempdir();
    let (src, store, state) = common::job_paths(dir.path());
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), common::bytes(1, 300_000)).unwrap();
    std::fs::write(src.join("sub/b.bin"), common::bytes(2, 70_000)).unwrap();
    common::assert_exit(
        common::run_cmd(&src, &store, &state, &["-q", "--encryption", "vault"])
            .env("TGFERRY_PASSPHRASE", PASS),
        0,
    );
    // A part a killed run sent but never recorded, 30 days old, and a fresh one.
    let old = store.join("data/ab/abababababababababababababababab");
    let young = store.join("data/cd/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd");
    for p in [&old, &young] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, common::bytes(3, 5_000)).unwrap();
    }
    let month_ago = std::time::SystemTime::now() - days(30);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();

    let prune = |extra: &[&str]| prune_cmd(&store, &state, extra);
    let out = common::assert_exit(&mut prune(&["--dry-run"]), 0);
    let text = output_text(&out);
    assert!(
        text.contains("would delete unreferenced part data/ab/abababab"),
        "{text}"
    );
    assert!(!text.contains("cdcdcdcd"), "{text}");
    assert!(old.exists(), "a dry run deletes nothing");

    let out = common::assert_exit(&mut prune(&["--older-than", "60d"]), 0);
    assert!(output_text(&out).contains("0 unreferenced parts"));
    assert!(old.exists());

    let out = common::assert_exit(&mut prune(&[]), 0);
    assert!(output_text(&out).contains("deleted unreferenced part data/ab/abababab"));
    assert!(!old.exists() && young.exists());

    // Everything the state records is still there.
    let to = dir.path().join("restored");
    common::assert_exit(
        common::tgferry(&[
            "restore",
            "--store",
            common::s(&store),
            "--to",
            common::s(&to),
        ])
        .env("TGFERRY_PASSPHRASE", PASS),
        0,
    );
    assert_eq!(common::tree(&to), common::tree(&src));

    // A wrong passphrase or a state of another store stops prune before it deletes.
    let out = common::assert_exit(prune(&[]).env("TGFERRY_PASSPHRASE", "wrong"), 10);
    assert!(output_text(&out).contains("passphrase"));
    let out = common::assert_exit(
        &mut prune_cmd(&dir.path().join("elsewhere"), &state, &[]),
        6,
    );
    assert!(output_text(&out).contains("belongs to store"));
    assert!(young.exists());
}

#[tokio::test(start_paused = true)]
async fn a_pinned_message_that_is_not_the_index_stops_before_a_second_vault_is_made() {
    let tg = TelegramDouble::user();
    let job = Job1::new(tg.clone(), false);
    tg.connect().await.unwrap();
    let foreign = tg.post_foreign("Welcome to the channel!");
    tg.pin(foreign).await.unwrap();
    let store = job.store();
    store.prepare().await.unwrap();
    let Err(err) = keyring::unlock(&store, &store_name(), &pass(), true).await else {
        panic!("a foreign pin must be refused");
    };
    let text = err.to_string();
    assert!(
        text.contains("not tgferry's index") && text.contains("unpin"),
        "{text}"
    );
    assert!(doc_ids(&tg).is_empty(), "no key file was sent");
}

#[tokio::test(start_paused = true)]
async fn plain_captions_too_long_for_telegram_are_shortened_and_the_file_restores() {
    let job = Job1::new(TelegramDouble::user(), true);
    let deep = format!("{}/photo.jpg", ["folder with a long name"; 60].join("/"));
    let data = common::bytes(11, 2_000);
    job.src.put(&deep, data.clone());
    let report = job.run(None).await;
    assert_eq!(
        report.stop_reason,
        StopReason::Complete,
        "{:?}",
        report.failed
    );
    let m = job
        .tg
        .messages()
        .into_iter()
        .find(|m| m.name.as_deref() == Some("photo.jpg"))
        .unwrap();
    assert!(m.text.encode_utf16().count() <= 1024, "{}", m.text.len());
    assert!(m.text.ends_with("…\n#tgferry"), "{}", m.text);

    let store = job.store();
    let (out, r) = restore_all(&store, &job.saved_state(), None).await;
    assert!(r.is_success(), "{:?}", r.failed);
    assert!(std::fs::read(out.path().join(&deep)).unwrap() == data);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_stays_down_does_not_keep_the_run_past_its_budget() {
    // About 1 MiB/s: the file needs 8 s, the connection goes down for good after 2 s.
    let job = Job1::new(TelegramDouble::user().with_upload_speed(256 * 1024), true);
    job.src.put("a", common::bytes(1, 8 * MIB));
    let tg = job.tg.clone();
    let cut = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..20 {
            tg.inject(
                Op::Reconnect,
                TgError::Disconnected("network is down".into()),
            );
        }
        tg.drop_connection();
    });
    let budget = Duration::from_secs(6);
    let report = job.run(Some(budget)).await;
    cut.await.unwrap();
    assert!(
        report.elapsed <= budget,
        "reconnect attempts ran past the budget: {:?}",
        report.elapsed
    );
    // The file failed in this run (the next run tries it again); nothing was recorded.
    assert_eq!(report.run.files_completed, 0);
    let (path, error) = &report.failed[0];
    assert_eq!(path, "a");
    assert!(error.contains("connection to Telegram lost"), "{error}");
    assert!(job.tg.calls(Op::Reconnect) >= 1);
}

#[test]
fn prune_refuses_a_state_older_than_the_store() {
    let dir = common::tempdir();
    let (src, store, state) = common::job_paths(dir.path());
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"first").unwrap();
    common::assert_exit(&mut common::run_cmd(&src, &store, &state, &["-q"]), 0);
    let stale = dir.path().join("stale.json");
    std::fs::copy(&state, &stale).unwrap();
    std::fs::write(src.join("b.txt"), b"second").unwrap();
    common::assert_exit(&mut common::run_cmd(&src, &store, &state, &["-q"]), 0);

    let prune = |state: &Path| prune_cmd(&store, state, &["--older-than", "0s"]);
    let out = common::assert_exit(&mut prune(&stale), 6);
    let text = output_text(&out);
    assert!(
        text.contains("older than store") && text.contains("nothing was deleted"),
        "{text}"
    );
    assert!(store.join("b.txt").exists());
    common::assert_exit(&mut prune(&state), 0);
    assert!(store.join("a.txt").exists() && store.join("b.txt").exists());
}

#[tokio::test(start_paused = true)]
async fn a_flood_wait_on_signing_in_is_sat_out_or_ends_the_run_rate_limited() {
    /// A bot job with one small file whose sign-in is met by a flood wait of `seconds`.
    async fn signing_in_after(seconds: u32) -> (Job1, RunReport) {
        let job = Job1::new(TelegramDouble::bot(), true);
        job.src.put("f", common::bytes(1, 3_000));
        let kind = WaitKind::Flood;
        job.tg.inject(Op::Connect, TgError::Wait { seconds, kind });
        let report = job.run(Some(Duration::from_secs(600))).await;
        (job, report)
    }
    // Short: sat out, then the run does its work.
    let (_, report) = signing_in_after(30).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    assert!(report.elapsed >= Duration::from_secs(30));

    // Longer than the budget: the run is recorded as rate limited, with when to come back.
    let (job, report) = signing_in_after(7_200).await;
    assert_eq!(report.stop_reason, StopReason::RateLimited);
    assert_eq!(report.rate_limit_wait, Some(Duration::from_secs(7_200)));
    assert!(
        report.elapsed < Duration::from_secs(1),
        "{:?}",
        report.elapsed
    );
    assert_eq!(report.files_left, 1);
    let saved = job.saved_state();
    let last = saved.runs.last().expect("the run is recorded");
    assert_eq!(last.stop_reason, StopReason::RateLimited);
    let back = last.resume_after.expect("and when to come back");
    assert!(back.as_second() - last.ended.as_second() >= 7_199);
    assert!(saved.completed.is_empty());

    // The next run (Telegram lets it in now) stores the file.
    let report = job.run(Some(Duration::from_secs(600))).await;
    assert_eq!(report.stop_reason, StopReason::Complete);
    assert!(job.saved_state().completed.contains_key("f"));
}

#[test]
fn a_catalog_the_last_run_could_not_write_is_written_by_the_next_even_with_nothing_to_do() {
    let dir = common::tempdir();
    let (src, store, state) = common::job_paths(dir.path());
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"kept").unwrap();
    let run = || {
        let mut c = common::run_cmd(&src, &store, &state, &["-q", "--encryption", "vault"]);
        c.env("TGFERRY_PASSPHRASE", PASS);
        c
    };
    common::assert_exit(&mut run(), 0);
    let catalog = store.join(".tgferry/catalog");
    let record = store.join(".tgferry/last-run");
    assert!(catalog.exists() && record.exists());
    // As if the first run's writes after the state save had failed.
    std::fs::remove_file(&catalog).unwrap();
    std::fs::remove_file(&record).unwrap();
    let out = common::assert_exit(&mut run(), 0);
    assert!(
        output_text(&out).contains("nothing"),
        "{}",
        output_text(&out)
    );
    assert!(catalog.exists() && record.exists(), "the store caught up");
    // A store that is not behind is left alone by a run with nothing to do.
    let before = std::fs::metadata(&catalog).unwrap().modified().unwrap();
    common::assert_exit(&mut run(), 0);
    assert_eq!(
        std::fs::metadata(&catalog).unwrap().modified().unwrap(),
        before
    );
}

#[tokio::test(start_paused = true)]
async fn one_large_file_downloads_several_requests_at_a_time() {
    let mut job = Job1::new(TelegramDouble::user(), false);
    job.part_size = 4 * MIB as u64;
    job.init_vault().await;
    let data = common::bytes(12, 4 * MIB);
    job.src.put("big", data.clone());
    job.run(None).await;
    let state = job.saved_state();

    // 512 KiB per request per second: one request at a time would take 8 s for this part.
    let _slow = job.tg.clone().with_download_speed(512 * 1024);
    let store = job.store();
    let master = job.master(&store).await;
    let out = common::tempdir();
    let start = Instant::now();
    let opts = RestoreOptions {
        jobs: 1,
        ..RestoreOptions::new(out.path())
    };
    let r = restore(&store, &state, Some(&master), &opts).await.unwrap();
    assert!(r.is_success(), "{:?}", r.failed);
    assert!(std::fs::read(out.path().join("big")).unwrap() == data);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// A job over the double opened as `tgferry run` opens it ([`OpenJob`]), with the state at
/// `state`, run to the end.
async fn job_run(j: &Job1, fresh_state: bool) -> (State, Vec<String>) {
    use tgferry::job::{JobSpec, Notice, OpenJob, Opening, StateOrigin};
    use tgferry::source::any::SourceSpec;
    use tgferry::store::any::StoreSpec;
    let spec = JobSpec {
        source: SourceSpec::Local("mem:src".into()),
        store: StoreSpec::Telegram(chat()),
        store_name: store_name(),
        state: j.state.clone(),
        identity: j.job(),
        load: LoadOptions::default(),
        origin: StateOrigin::Local,
        fresh_state,
        encrypt_state: false,
        premium: false,
        tg_connections: None,
        chat_options: Default::default(),
        passphrase: Some(pass()),
    };
    let mut notices = Vec::new();
    let opening = OpenJob::open_with(
        j.src.clone(),
        Arc::new(j.store()),
        &spec,
        None,
        &mut |n: Notice| notices.push(n.to_string()),
    )
    .await
    .unwrap();
    let Opening::Ready(job) = opening else {
        panic!("rate limited at start")
    };
    let config = RunConfig {
        part_size: j.part_size,
        jobs: 2,
        ..RunConfig::default()
    };
    let start = Instant::now();
    let finished = job
        .run(
            config,
            Budget::unlimited(start),
            Duration::from_secs(60),
            Events::none(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(finished.report.failed.is_empty());
    (finished.state.state().clone(), notices)
}

#[tokio::test(start_paused = true)]
async fn a_lost_state_starts_from_the_chats_catalog_and_sends_nothing_again() {
    let j = Job1::new(TelegramDouble::user(), false);
    let files = corpus(&j.src);
    j.init_vault().await;
    let (first, notices) = job_run(&j, false).await;
    assert_eq!(first.completed.len(), files.len());
    assert!(notices.iter().any(|n| n.contains("starting a new one")));
    // Documents that are parts (meta blobs are `tgferry-…` documents).
    let parts = |tg: &TelegramDouble| {
        tg.messages()
            .iter()
            .filter(|m| m.name.as_ref().is_some_and(|n| !n.starts_with("tgferry-")))
            .count()
    };
    let sent = parts(&j.tg);

    std::fs::remove_file(&j.state).unwrap();
    let (second, notices) = job_run(&j, false).await;
    assert!(
        notices
            .iter()
            .any(|n| n.contains("starting from the catalog")),
        "{notices:?}"
    );
    assert_eq!(parts(&j.tg), sent, "parts were sent again");
    assert_eq!(
        second.completed.keys().collect::<Vec<_>>(),
        first.completed.keys().collect::<Vec<_>>()
    );
    let store = j.store();
    let master = j.master(&store).await;
    let (out, report) = restore_all(&store, &second, Some(&master)).await;
    assert!(report.failed.is_empty());
    j.assert_restored(out.path(), &files);

    // --fresh-state: a new state, and every part goes again.
    std::fs::remove_file(&j.state).unwrap();
    let (_, notices) = job_run(&j, true).await;
    assert!(notices.iter().any(|n| n.contains("starting a new one")));
    assert!(parts(&j.tg) > sent);
}

/// A part inside a pack is read with the aligned requests that hold it and no others
/// (the double refuses a request Telegram would: offset and limit multiples of 4 KiB,
/// limit dividing 1 MiB, no request across a 1 MiB boundary): exactly its bytes at every
/// edge, a small range far into a large part in one 4 KiB request, and a connection
/// dropped in the middle of a range resumed at its offset.
#[tokio::test(start_paused = true)]
async fn ranged_reads_download_only_the_requests_that_hold_the_range() {
    let tg = TelegramDouble::user();
    let store = TelegramStore::new(
        tg.clone(),
        chat(),
        TelegramOptions {
            plain: false,
            premium: false,
        },
    );
    store.prepare().await.unwrap();
    let blob = common::bytes(43, 5 * MIB + 777);
    let n = blob.len() as u64;
    let loc = common::store_blob(&store, &blob, blob.len()).await;
    for (offset, len) in common::range_cases(n) {
        common::assert_range("", &store, &loc, &blob, offset, len).await;
    }

    // 100 bytes 4 MiB in: one request of 4 KiB, not the 5 MiB before and around them.
    let (calls, bytes) = (tg.calls(Op::Download), tg.bytes_downloaded());
    common::assert_range("", &store, &loc, &blob, 4 * MIB as u64 + 12_345, 100).await;
    assert_eq!(tg.calls(Op::Download) - calls, 1);
    assert_eq!(tg.bytes_downloaded() - bytes, 4096);
    // 3000 bytes across the 1 MiB boundary: the 4 KiB on each side of it.
    let (calls, bytes) = (tg.calls(Op::Download), tg.bytes_downloaded());
    common::assert_range("", &store, &loc, &blob, MIB as u64 - 1_000, 3_000).await;
    assert_eq!(tg.calls(Op::Download) - calls, 2);
    assert_eq!(tg.bytes_downloaded() - bytes, 8192);
    // The last 100 bytes: the last 4 KiB window, short at the end of the part.
    let (calls, bytes) = (tg.calls(Op::Download), tg.bytes_downloaded());
    common::assert_range("", &store, &loc, &blob, n - 100, 100).await;
    assert_eq!(tg.calls(Op::Download) - calls, 1);
    assert_eq!(tg.bytes_downloaded() - bytes, n % 4096);
    // Nothing to read: no request.
    let calls = tg.calls(Op::Download);
    common::assert_range("", &store, &loc, &blob, 12_345, 0).await;
    common::assert_range("", &store, &loc, &blob, n + 1, 10).await;
    assert_eq!(tg.calls(Op::Download), calls);

    // A connection dropped under a ranged read: reconnected, resumed, every byte right.
    let reconnects = tg.calls(Op::Reconnect);
    tg.inject(Op::Download, TgError::Disconnected("cut".into()));
    common::assert_range("", &store, &loc, &blob, 1_234_567, 2_000_000).await;
    assert!(tg.calls(Op::Reconnect) > reconnects);

    match store.open_range("msg:9999", 0, 10).await {
        Err(StoreError::Missing { loc }) => assert_eq!(loc, "msg:9999"),
        other => panic!("a missing part: {:?}", other.map(|_| ())),
    }
    common::assert_range("", &store, "empty", &[], 0, 10).await;
}
