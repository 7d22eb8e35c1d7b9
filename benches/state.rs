//! State file benchmarks (issue 2): saving and loading a million-entry state, and the cost
//! of one checkpoint (`StateFile::record`) on a small and on a million-entry state.
//!
//! Run with `cargo bench --bench state`. `TGFERRY_BENCH_ENTRIES` changes the size of the
//! big state (default 1,000,000), e.g. `TGFERRY_BENCH_ENTRIES=100000` for a quick look.
//!
//! Targets (DESIGN.md "Performance anchors"): a million-entry state loaded and saved in
//! about a second; a checkpoint costs the same whatever the state's size.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use tgferry::state::{
    Completed, Encryption, InProgress, Job, LoadOptions, Record, State, StateFile, StoredPart,
    read_state, write_atomic,
};
use tgferry::time::Timestamp;

const SMALL: usize = 1_000;
const DEFAULT_BIG: usize = 1_000_000;
/// Parts of the multi-part file the checkpoint benchmark pretends to upload.
const PARTS_TOTAL: u64 = 64;
const PART_SIZE: u64 = 512 << 20;

fn big_entries() -> usize {
    std::env::var("TGFERRY_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_BIG)
}

fn job() -> Job {
    Job {
        source: "/data/archive".into(),
        store: "/mnt/backup".into(),
        encryption: Encryption::None,
        vault_id: None,
    }
}

/// A deterministic 64-hex-digit string standing in for a SHA-256 (splitmix64).
fn fake_sha256(seed: u64) -> String {
    let mut x = seed;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out
}

/// A state with `n` completed files of one part each, with realistic paths such as
/// `photos/2019/IMG_0012345.jpg`.
fn build_state(n: usize) -> State {
    const KINDS: [(&str, &str, &str); 4] = [
        ("photos", "IMG_", "jpg"),
        ("photos", "DSC", "NEF"),
        ("videos", "VID_", "mp4"),
        ("documents", "scan-", "pdf"),
    ];
    let mut state = State::new(job());
    let base = Timestamp::from_second(1_262_304_000).expect("valid timestamp"); // 2010-01-01
    for i in 0..n {
        let (dir, prefix, ext) = KINDS[i % KINDS.len()];
        let year = 2005 + (i / 7) % 20;
        let path = format!("{dir}/{year}/{prefix}{i:07}.{ext}");
        let size = 200_000 + (i as u64 * 7919) % 8_000_000;
        let mtime = base
            .checked_add(jiff::SignedDuration::new(
                i as i64 * 97,
                (i as i32 % 1000) * 1000,
            ))
            .expect("in range");
        let entry = Completed {
            size,
            mtime,
            stored_at: mtime,
            parts: vec![StoredPart {
                loc: path.clone(),
                len: size,
                sha256: fake_sha256(i as u64),
                salt: None,
                nonce_prefix: None,
                store_mtime: Some(mtime),
                offset: None,
            }],
            object: None,
            versions: Vec::new(),
        };
        state.completed.insert(path, entry);
    }
    state.stats.total_uploaded = n as u64;
    state.stats.total_parts = n as u64;
    state
}

fn bench_save_load(c: &mut Criterion) {
    let n = big_entries();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let state = build_state(n);
    write_atomic(&path, &state).expect("first save");
    let bytes = std::fs::metadata(&path).expect("state written").len();
    eprintln!(
        "state of {n} entries: {:.1} MiB on disk",
        bytes as f64 / (1 << 20) as f64
    );

    let mut group = c.benchmark_group("state");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::new("write_atomic", n), |b| {
        b.iter(|| write_atomic(&path, black_box(&state)).expect("save"));
    });
    drop(state);
    group.bench_function(BenchmarkId::new("read_state", n), |b| {
        b.iter(|| read_state(&path).expect("load").expect("present"));
    });
    group.finish();
}

/// A state file opened for a run, feeding it `part_stored` records.
struct Checkpointer {
    file: StateFile,
    template: Record,
    next_index: u64,
    /// Records since the last fold, and how many may follow before `record` folds.
    since_fold: u64,
    fold_budget: u64,
}

impl Checkpointer {
    fn open(dir: &Path, entries: usize) -> Self {
        let path = dir.join("state.json");
        write_atomic(&path, &build_state(entries)).expect("save");
        let (mut file, _) = StateFile::open(&path, &job(), &LoadOptions::default()).expect("open");
        let now = tgferry::time::now();
        file.begin_run(now).expect("begin run");
        let template = Record::PartStored {
            path: "videos/2024/holiday-4k-master.mov".into(),
            file: InProgress {
                size: PARTS_TOTAL * PART_SIZE,
                mtime: now,
                part_size: PART_SIZE,
                parts_total: PARTS_TOTAL,
                started: now,
                parts: Vec::new(),
                vault: None,
            },
            index: 0,
            part: StoredPart {
                loc: "videos/2024/holiday-4k-master.mov.001".into(),
                len: PART_SIZE,
                sha256: fake_sha256(u64::MAX),
                salt: None,
                nonce_prefix: None,
                store_mtime: Some(now),
                offset: None,
            },
            mac: None,
            at: now,
        };
        // `record` folds (saves the whole state) once the journal holds more records than
        // the state has entries (at least 10,000); stay below that so the timings show the
        // checkpoint itself. The fold's amortised share is the save time / this budget.
        let fold_budget = (entries as u64).max(10_000) - 10;
        Checkpointer {
            file,
            template,
            next_index: 0,
            since_fold: 0,
            fold_budget,
        }
    }

    fn next_record(&mut self) -> Record {
        let mut r = self.template.clone();
        if let Record::PartStored { index, .. } = &mut r {
            *index = self.next_index;
        }
        self.next_index = (self.next_index + 1) % PARTS_TOTAL;
        r
    }

    /// Times `iters` checkpoints, folding (untimed) whenever the journal gets near its limit.
    fn time(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            if self.since_fold >= self.fold_budget {
                self.file.begin_run(tgferry::time::now()).expect("fold");
                self.since_fold = 0;
            }
            let n = left.min(self.fold_budget - self.since_fold);
            let records: Vec<Record> = (0..n).map(|_| self.next_record()).collect();
            let start = Instant::now();
            for r in records {
                self.file.record(r).expect("record");
            }
            total += start.elapsed();
            self.since_fold += n;
            left -= n;
        }
        total
    }
}

fn bench_checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for entries in [SMALL, big_entries()] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cp = Checkpointer::open(dir.path(), entries);
        group.bench_function(BenchmarkId::new("record_part_stored", entries), |b| {
            b.iter_custom(|iters| cp.time(iters));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_save_load, bench_checkpoint);
criterion_main!(benches);
