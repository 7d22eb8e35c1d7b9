//! Shared helpers for the integration tests: temp folders, corpora, a throttled store,
//! and a command wrapper around the built binary.
#![allow(dead_code)]

pub mod rclone;
pub mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tgferry::store::{PartInfo, Store, StoreError, Upload};

/// A fresh temp folder for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tgferry-test-")
        .tempdir()
        .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so corpora are reproducible.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes the standard corpus: 200+ files in nested folders, empty files, unicode names,
/// names with spaces, and one file of several parts at `part_size`.
pub fn corpus(root: &Path, part_size: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let dirs = [
        "",
        "a",
        "a/b",
        "a/b/c",
        "photos 2024",
        "música/ünïcode",
        "deep/1/2/3/4",
    ];
    for i in 0..210u64 {
        let dir = dirs[i as usize % dirs.len()];
        let name = match i % 5 {
            0 => format!("file {i}.txt"),
            1 => format!("ファイル-{i}.bin"),
            2 => format!("empty-{i}"),
            _ => format!("f{i}.dat"),
        };
        let len = if i % 5 == 2 {
            0
        } else {
            (i as usize * 7919) % 20_000 + 1
        };
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        files.insert(path, bytes(i, len));
    }
    files.insert("big/multi-part.bin".into(), bytes(999, part_size * 3 + 123));
    for (path, data) in &files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
    files
}

/// Reads a plain-mode store back into files: single parts as they are, `name.001`... joined.
pub fn read_plain_store(root: &Path, state: &tgferry::state::State) -> BTreeMap<String, Vec<u8>> {
    state
        .completed
        .iter()
        .map(|(path, c)| {
            let mut data = Vec::new();
            for p in &c.parts {
                data.extend(std::fs::read(root.join(&p.loc)).unwrap());
            }
            (path.clone(), data)
        })
        .collect()
}

/// The files under `root` (excluding the store's `.tgferry/` folder), path -> bytes.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(root, root)
}

fn walk(root: &Path, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == ".tgferry" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(root, &p));
        } else {
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
    out
}

/// A store wrapper whose uploads take at least `per_part` of tokio time each.
pub struct Throttled<T> {
    pub inner: T,
    pub per_part: Duration,
}

pub struct ThrottledUpload<U> {
    inner: U,
    per_part: Duration,
}

impl<U: Upload> Upload for ThrottledUpload<U> {
    async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        self.inner.write(buf).await
    }
    async fn finish(self) -> Result<String, StoreError> {
        tokio::time::sleep(self.per_part).await;
        self.inner.finish().await
    }
    async fn finish_timed(self) -> Result<(String, Option<tgferry::time::Timestamp>), StoreError> {
        tokio::time::sleep(self.per_part).await;
        self.inner.finish_timed().await
    }
}

impl<T: Store> Store for Throttled<T> {
    type Upload = ThrottledUpload<T::Upload>;
    type Reader = T::Reader;
    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }
    async fn begin(&self, name: &str, len: u64) -> Result<Self::Upload, StoreError> {
        Ok(ThrottledUpload {
            inner: self.inner.begin(name, len).await?,
            per_part: self.per_part,
        })
    }
    fn names_are_locations(&self) -> bool {
        self.inner.names_are_locations()
    }
    async fn begin_staged(&self, name: &str, len: u64) -> Result<Self::Upload, StoreError> {
        Ok(ThrottledUpload {
            inner: self.inner.begin_staged(name, len).await?,
            per_part: self.per_part,
        })
    }
    async fn place(
        &self,
        from: &str,
        name: &str,
    ) -> Result<Option<tgferry::time::Timestamp>, StoreError> {
        self.inner.place(from, name).await
    }
    async fn staged(&self) -> Result<Vec<String>, StoreError> {
        self.inner.staged().await
    }
    async fn stat(&self, loc: &str) -> Result<Option<tgferry::store::PartStat>, StoreError> {
        self.inner.stat(loc).await
    }
    async fn open(&self, loc: &str) -> Result<Self::Reader, StoreError> {
        self.inner.open(loc).await
    }
    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        self.inner.len(loc).await
    }
    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        self.inner.remove(loc).await
    }
    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_meta(name, bytes).await
    }
    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(name).await
    }
    async fn list_parts(&self, hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        self.inner.list_parts(hint).await
    }
}

/// A test path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The source folder, store folder and state file of a job under `dir`: `src/`, `store/`
/// and `state.json` (none is created).
pub fn job_paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("src"), dir.join("store"), dir.join("state.json"))
}

/// `tgferry run --source SRC --store STORE --state STATE EXTRA...`.
pub fn run_cmd(
    src: impl AsRef<Path>,
    store: impl AsRef<Path>,
    state: impl AsRef<Path>,
    extra: &[&str],
) -> Command {
    let (src, store, state) = (src.as_ref(), store.as_ref(), state.as_ref());
    let mut args = vec![
        "run",
        "--source",
        s(src),
        "--store",
        s(store),
        "--state",
        s(state),
    ];
    args.extend_from_slice(extra);
    tgferry(&args)
}

/// The built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tgferry"))
}

/// A `tgferry` command with a clean environment (no TGFERRY_* or CI variables leak in).
pub fn tgferry(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TGFERRY_") || k == "CI" || k.starts_with("GITHUB_") {
            c.env_remove(k);
        }
    }
    // Plain copies unless a test asks for the vault (`--encryption vault` wins over this).
    c.env("TGFERRY_ENCRYPTION", "none");
    c
}

/// Runs and returns the output, asserting the exit code.
pub fn assert_exit(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The state at `path`, with its journal replayed.
pub fn load(path: &Path) -> tgferry::state::State {
    tgferry::state::read_with_journal(path).unwrap().unwrap().0
}

/// Whether the journal beside a state exists.
pub fn journal_exists(state: &Path) -> bool {
    let mut p = state.as_os_str().to_owned();
    p.push(".journal");
    Path::new(&p).exists()
}

/// Swaps a folder for a symbolic link and back, as fast as it can, on a thread of its own:
/// the race of issue 18 item 3 (a folder of the source or of the restore target replaced by
/// a link to somewhere else while tgferry works in it). Bounded: at most `MAX_SWAPS`
/// swaps, and it stops (putting the folder back) when dropped.
#[cfg(unix)]
pub struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

#[cfg(unix)]
impl Swapper {
    /// At most this many swaps (about ten seconds of swapping).
    pub const MAX_SWAPS: u64 = 500_000;

    /// Starts swapping `folder` for a link to `target`, and returns once the first swap
    /// is done (so the race is on whatever runs next).
    pub fn start(folder: PathBuf, target: PathBuf) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let (first, swapped) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let aside = folder.with_extension("aside");
            let mut swaps = 0;
            while swaps < Self::MAX_SWAPS && !flag.load(Ordering::Relaxed) {
                if std::fs::rename(&folder, &aside).is_ok() {
                    if std::os::unix::fs::symlink(&target, &folder).is_ok() {
                        std::thread::yield_now();
                        let _ = std::fs::remove_file(&folder);
                    }
                    let _ = std::fs::rename(&aside, &folder);
                    swaps += 1;
                    let _ = first.send(());
                }
                std::thread::yield_now();
            }
            swaps
        });
        swapped
            .recv_timeout(Duration::from_secs(10))
            .expect("the swapper never swapped");
        Swapper {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops swapping (the folder is back in place) and says how many swaps were made.
    pub fn stop(mut self) -> u64 {
        self.finish()
    }

    fn finish(&mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

#[cfg(unix)]
impl Drop for Swapper {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Every file under `dir`, links not followed (paths relative to `dir`).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            found.extend(
                files_under(&e.path())
                    .into_iter()
                    .map(|p| Path::new(&e.file_name()).join(p)),
            );
        } else {
            found.push(PathBuf::from(e.file_name()));
        }
    }
    found
}

/// The `(offset, len)` ranges of a part of `n` bytes (over 2 MiB) every store's ranged-read
/// tests read: the
/// start, unaligned, across a 1 MiB boundary (small and large), ending exactly at the
/// end, past it (short), at or beyond it (empty), empty, whole, overflowing lengths.
pub fn range_cases(n: u64) -> Vec<(u64, u64)> {
    let mib: u64 = 1 << 20;
    vec![
        (0, 10),
        (12_345, 1_000),
        (mib - 1_000, 3_000),
        (2 * mib - 4_096, 8_192),
        (700_000, 1_500_000),
        (n - 100, 100),
        (n - 50, 100),
        (n, 10),
        (n + 10, 5),
        (7, 0),
        (0, n),
        (5, u64::MAX),
    ]
}

/// Reads `offset..offset + len` of `loc` (which holds `blob`) from `store` and compares it
/// with `blob`'s bytes there; `what` starts any failure message.
pub async fn assert_range<S: Store>(
    what: &str,
    store: &S,
    loc: &str,
    blob: &[u8],
    offset: u64,
    len: u64,
) {
    use tokio::io::AsyncReadExt;
    let n = blob.len() as u64;
    let mut got = Vec::new();
    store
        .open_range(loc, offset, len)
        .await
        .unwrap_or_else(|e| panic!("{what} range {offset}+{len}: {e}"))
        .read_to_end(&mut got)
        .await
        .unwrap_or_else(|e| panic!("{what} range {offset}+{len}: {e}"));
    let (start, end) = (
        offset.min(n) as usize,
        offset.saturating_add(len).min(n) as usize,
    );
    assert!(
        got == blob[start..end],
        "{what} range {offset}+{len}: {} bytes back, not bytes {start}..{end}",
        got.len()
    );
}

/// Writes `blob` to `store` as one part, `chunk` bytes per write; returns its location.
pub async fn store_blob<S: Store>(store: &S, blob: &[u8], chunk: usize) -> String {
    let mut up = store
        .begin(
            "data/ab/0123456789abcdef0123456789abcdef",
            blob.len() as u64,
        )
        .await
        .unwrap();
    for piece in blob.chunks(chunk.max(1)) {
        up.write(piece).await.unwrap();
    }
    up.finish().await.unwrap()
}
