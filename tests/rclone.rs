//! rclone remotes as a source, end to end against real servers on 127.0.0.1 that the
//! tests start themselves: `rclone serve webdav`, `rclone serve sftp`, and an FTP server
//! (`rclone serve ftp` where the rclone build has it; Debian's 1.60 does not, so then
//! pyftpdlib from the python3-pyftpdlib package). .ci/run installs both; without them these
//! tests fail with a message saying what to install, never skip.
//!
//! Shown here: budget-limited runs over each protocol ending in a byte-identical restore;
//! a server killed in the middle of a large file (backoff, then resume at the right part,
//! with the bytes re-read counted by a proxy between tgferry and the server); files
//! changed on the server stored again; and the errors for a missing rclone binary, an
//! unconfigured remote, refused credentials and a missing path.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::rclone::{Kind, Server, USER, obscured, rclone, rclone_serves_ftp, text};
use common::{assert_exit, s};
use tgferry::source::Source;
use tgferry::source::rclone::RcloneSource;
use tgferry::state::State;
use tokio::io::AsyncReadExt;

const PASS: &str = "correct horse battery staple";
const MIB: usize = 1 << 20;
/// One test's folders: the served tree, the store, the state, rclone's config and cache.
struct Dirs {
    _tmp: tempfile::TempDir,
    served: PathBuf,
    store: PathBuf,
    state: PathBuf,
    cache: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = common::tempdir();
    let d = Dirs {
        served: tmp.path().join("served"),
        store: tmp.path().join("store"),
        state: tmp.path().join("state.json"),
        cache: tmp.path().join("rclone-cache"),
        _tmp: tmp,
    };
    std::fs::create_dir_all(&d.served).unwrap();
    std::fs::create_dir_all(&d.cache).unwrap();
    d
}

impl Dirs {
    /// A `tgferry` command whose rclone sees no config but the test's.
    fn tgferry(&self, args: &[&str]) -> Command {
        let mut c = common::tgferry(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("RCLONE_") {
                c.env_remove(k);
            }
        }
        c.env("RCLONE_CONFIG", self.cache.join("none.conf"))
            .env("RCLONE_CACHE_DIR", &self.cache)
            .env("TGFERRY_PASSPHRASE", PASS);
        c
    }

    /// `tgferry run` over `source` into the vault store.
    fn run(&self, source: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "run",
            "--source",
            source,
            "--store",
            s(&self.store),
            "--state",
            s(&self.state),
            "--encryption",
            "vault",
        ];
        args.extend_from_slice(extra);
        self.tgferry(&args)
    }

    /// Restores the store (from its catalog and the passphrase) and returns the tree.
    fn restore(&self, name: &str) -> BTreeMap<String, Vec<u8>> {
        let to = self.served.parent().unwrap().join(name);
        assert_exit(
            &mut self.tgferry(&["restore", "--store", s(&self.store), "--to", s(&to), "-q"]),
            0,
        );
        common::tree(&to)
    }
}

/// Writes a corpus: nested folders, spaces, unicode, empty files and one multi-part file.
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
        // One empty file: identical files stored at once would both be written.
        let len = if i == 2 {
            0
        } else {
            (i as usize * 7919) % 40_000 + 1
        };
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        files.insert(path, common::bytes(i, len));
    }
    files.insert("big/multi part.bin".into(), common::bytes(4242, big));
    write_files(root, &files);
    files
}

fn write_files(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (path, data) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
}

/// Runs with a small budget until everything is stored; returns the number of runs.
fn budget_limited_runs_then_restore(kind: Kind) {
    let t0 = Instant::now();
    let d = dirs();
    let files = corpus(&d.served, 14, 2 * MIB + 4321);
    let server = Server::start(kind, &d.served, &d.cache);
    let source = format!("rclone:{}", server.remote());
    let mut runs = 0;
    let mut budget_stops = 0;
    let mut last = String::new();
    // 600 ms per run, unless a loaded machine spends all of it starting up (unlocking the
    // vault, listing): then half as much again, until a run stores a part. The corpus needs
    // well over a second, so at least one run stops on its budget before the last one.
    let mut budget_ms = 600;
    loop {
        runs += 1;
        assert!(
            runs <= 30,
            "{kind:?}: no end after {runs} runs; the last said {last}"
        );
        let budget = format!("{budget_ms}ms");
        let out = assert_exit(
            &mut d.run(&source, &["--part-size", "1MiB", "--budget", &budget]),
            0,
        );
        let said = text(&out);
        assert!(
            !said.contains(obscured()),
            "{kind:?}: a secret shows: {said}"
        );
        if said.contains("time budget spent") {
            budget_stops += 1;
            if parts_stored(&said) == 0 {
                budget_ms = (budget_ms * 3 / 2).min(8000);
            }
            last = said;
            continue;
        }
        // The last budget-limited run may have stored the last part just as its budget
        // ran out: then this run finds nothing to do.
        assert!(
            said.contains("done: everything in the source is stored")
                || said.contains("nothing to do"),
            "{kind:?}: {said}"
        );
        break;
    }
    assert!(
        budget_stops >= 1,
        "{kind:?}: only {budget_stops} runs stopped on the budget"
    );
    let st = common::load(&d.state);
    assert_eq!(st.completed.len(), files.len());
    assert_eq!(
        st.stats.total_uploaded,
        files.len() as u64,
        "{kind:?}: each file stored once"
    );
    assert_each_part_counted_once(&st);
    assert!(
        d.restore("restored") == files,
        "{kind:?}: the restored tree differs from the served one"
    );
    eprintln!(
        "{kind:?}: {runs} runs ({budget_stops} stopped on the budget; budget at the end \
         {budget_ms} ms) and a restore in {:?}",
        t0.elapsed()
    );
}

/// The parts a run stored, from its summary (`stored 2 files (3 parts, ...)`).
fn parts_stored(summary: &str) -> u64 {
    summary
        .lines()
        .find(|l| l.starts_with("stored "))
        .and_then(|l| l.split_once(" ("))
        .and_then(|(_, rest)| rest.split_once(" part"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

/// Every stored part was counted once in the totals: nothing was stored twice. (A pack
/// is one stored part, whatever number of objects it holds.)
fn assert_each_part_counted_once(st: &State) {
    let parts: Vec<_> = st.objects.values().flat_map(|o| o.parts.iter()).collect();
    let stored: std::collections::HashSet<&str> = parts.iter().map(|p| p.loc.as_str()).collect();
    assert_eq!(st.stats.total_parts, stored.len() as u64);
    assert_eq!(
        st.stats.total_bytes,
        parts.iter().map(|p| p.len).sum::<u64>()
    );
}

#[test]
fn webdav_budget_limited_runs_restore_byte_for_byte() {
    budget_limited_runs_then_restore(Kind::RcloneWebdav);
}

#[test]
fn sftp_budget_limited_runs_restore_byte_for_byte() {
    budget_limited_runs_then_restore(Kind::Sftp);
}

#[test]
fn ftp_budget_limited_runs_restore_byte_for_byte() {
    budget_limited_runs_then_restore(if rclone_serves_ftp() {
        Kind::RcloneFtp
    } else {
        Kind::Ftp
    });
}

/// A TCP proxy on 127.0.0.1 in front of a server: counts the bytes sent to tgferry, can
/// slow them down, and can be pointed at a restarted server on another port.
struct Proxy {
    port: u16,
    upstream: Arc<AtomicU16>,
    down: Arc<AtomicU64>,
    slow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            upstream: Arc::new(AtomicU16::new(upstream)),
            down: Arc::new(AtomicU64::new(0)),
            slow: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (up, dn, sl, stop) = (
            proxy.upstream.clone(),
            proxy.down.clone(),
            proxy.slow.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", up.load(Ordering::SeqCst)))
                else {
                    continue; // the server is down: the client sees the door close
                };
                let (dn, sl) = (dn.clone(), sl.clone());
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                dn.fetch_add(n as u64, Ordering::SeqCst);
                                if sl.load(Ordering::SeqCst) {
                                    // About 4 MiB/s.
                                    std::thread::sleep(Duration::from_millis(4));
                                }
                                if client.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
        });
        proxy
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The `part_stored` lines of the journal for `path`: (index, location).
fn journal_parts(state: &Path, path: &str) -> Vec<(u64, String)> {
    let mut journal = state.as_os_str().to_owned();
    journal.push(".journal");
    let Ok(text) = std::fs::read_to_string(&journal) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "part_stored" && v["path"] == path)
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                v["part"]["loc"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits (at most `limit`) until the journal shows `n` stored parts of `path`.
async fn wait_for_parts(state: &Path, path: &str, n: usize, limit: Duration) {
    let t0 = Instant::now();
    while journal_parts(state, path).len() < n {
        assert!(
            t0.elapsed() < limit,
            "{path}: fewer than {n} parts stored after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Collects a child's stderr as it comes.
fn follow_stderr(child: &mut tokio::process::Child) -> Arc<std::sync::Mutex<String>> {
    use tokio::io::AsyncBufReadExt;
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("tgferry finished within 30 s")
        .unwrap()
}

fn object_parts(st: &State, path: &str) -> Vec<String> {
    let id = st.completed[path].object.as_ref().unwrap();
    st.objects[id].parts.iter().map(|p| p.loc.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_file_backoff_then_resume_at_the_right_part() {
    let t0 = Instant::now();
    let d = dirs();
    let big_len = 6 * MIB + 777;
    let mut files = BTreeMap::new();
    files.insert("big.bin".to_string(), common::bytes(1, big_len));
    files.insert("notes/a.txt".to_string(), b"small".to_vec());
    write_files(&d.served, &files);
    let mut server = Server::start(Kind::RcloneWebdav, &d.served, &d.cache);
    let proxy = Proxy::start(server.port);
    let source = format!("rclone:{}", server.remote_via(proxy.port));
    let spawn = |backoff: &str| {
        let mut cmd = d.run(
            &source,
            &[
                "--part-size",
                "1MiB",
                "--jobs",
                "1",
                "--order",
                "large-first",
                "--backoff",
                backoff,
            ],
        );
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        tokio::process::Command::from(cmd).spawn().unwrap()
    };

    // Run 1: the server dies after two parts; once the run has put the part that was
    // cut off into its 10 s backoff, the server comes back, and the same run resumes at
    // that part. (Starting a server can take over 2 s on a loaded 2-core machine.)
    proxy.slow.store(true, Ordering::SeqCst);
    let mut run = spawn("10s");
    let log = follow_stderr(&mut run);
    wait_for_parts(&d.state, "big.bin", 2, Duration::from_secs(10)).await;
    server.kill();
    let t_kill = Instant::now();
    while !log.lock().unwrap().contains("retry in 10s: big.bin") {
        assert!(
            t_kill.elapsed() < Duration::from_secs(10),
            "no retry 10 s after the kill: {}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No part can be stored while the server is down: these are all the run has.
    let before: Vec<String> = journal_parts(&d.state, "big.bin")
        .into_iter()
        .map(|(_, loc)| loc)
        .collect();
    let k = before.len();
    assert!((2..7).contains(&k), "{k} parts stored before the kill");
    proxy.down.store(0, Ordering::SeqCst);
    proxy.slow.store(false, Ordering::SeqCst);
    let server2 = Server::start(Kind::RcloneWebdav, &d.served, &d.cache);
    proxy.upstream.store(server2.port, Ordering::SeqCst);
    assert!(
        t_kill.elapsed() < Duration::from_secs(10),
        "the server was back only {:?} after the kill, after the backoff",
        t_kill.elapsed()
    );
    let out = finish(run).await;
    let said = format!("{}{}", text(&out), log.lock().unwrap());
    assert_eq!(out.status.code(), Some(0), "{said}");
    let st = common::load(&d.state);
    let parts = object_parts(&st, "big.bin");
    assert_eq!(parts.len(), 7);
    assert_eq!(
        parts[..k],
        before[..],
        "parts stored before the kill are kept"
    );
    assert_each_part_counted_once(&st);
    // Re-read after the restart: the rest of the file from part k, not the whole file
    // (the small file and the listings add a few KiB).
    let reread = proxy.down.load(Ordering::SeqCst);
    let rest = (big_len - k * MIB) as u64;
    assert!(
        (rest..rest + 256 * 1024).contains(&reread),
        "re-read {reread} bytes after the restart; the rest of the file from part {k} is {rest}"
    );

    // Run 2, later: a new large file; the server dies after two parts and stays down
    // through the backoff, so the run ends with the file failed and its parts kept.
    let big2_len = 5 * MIB + 99;
    let big2 = common::bytes(2, big2_len);
    files.insert("big2.bin".into(), big2.clone());
    std::fs::write(d.served.join("big2.bin"), &big2).unwrap();
    proxy.slow.store(true, Ordering::SeqCst);
    let run = spawn("500ms");
    wait_for_parts(&d.state, "big2.bin", 2, Duration::from_secs(10)).await;
    drop(server2);
    let out = finish(run).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let st = common::load(&d.state);
    let kept: Vec<String> = st.in_progress["big2.bin"]
        .parts
        .iter()
        .map(|p| p.loc.clone())
        .collect();
    let k2 = kept.len();
    assert!((2..6).contains(&k2), "{k2} parts kept");
    assert_eq!(st.failed["big2.bin"].attempts, 1);

    // Run 3, with the server back: resumes big2.bin at part k2 and reads only the rest.
    let server3 = Server::start(Kind::RcloneWebdav, &d.served, &d.cache);
    proxy.upstream.store(server3.port, Ordering::SeqCst);
    proxy.slow.store(false, Ordering::SeqCst);
    proxy.down.store(0, Ordering::SeqCst);
    let out = finish(spawn("1s")).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let st = common::load(&d.state);
    let parts = object_parts(&st, "big2.bin");
    assert_eq!(parts.len(), 6);
    assert_eq!(parts[..k2], kept[..], "parts stored by run 2 are kept");
    let run3 = st.runs.last().unwrap();
    assert_eq!(run3.parts_stored, (6 - k2) as u64, "only the missing parts");
    assert!(st.failed.is_empty() && st.in_progress.is_empty());
    assert_each_part_counted_once(&st);
    let reread = proxy.down.load(Ordering::SeqCst);
    let rest = (big2_len - k2 * MIB) as u64;
    assert!(
        (rest..rest + 256 * 1024).contains(&reread),
        "run 3 read {reread} bytes; the rest of big2.bin from part {k2} is {rest}"
    );
    assert!(d.restore("restored") == files, "restored tree differs");
    eprintln!("kill and resume: {:?}", t0.elapsed());
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn files_changed_on_the_server_are_stored_again() {
    let t0 = Instant::now();
    let d = dirs();
    let photos = d.served.join("photos");
    let mut files = corpus(&photos, 8, MIB + 5);
    let server = Server::start(Kind::Sftp, &d.served, &d.cache);
    // A named remote defined only by environment variables, as in CI.
    let with_remote = |mut cmd: Command| {
        cmd.env("RCLONE_CONFIG_MY_NAS_TYPE", "sftp")
            .env("RCLONE_CONFIG_MY_NAS_HOST", "127.0.0.1")
            .env("RCLONE_CONFIG_MY_NAS_PORT", server.port.to_string())
            .env("RCLONE_CONFIG_MY_NAS_USER", USER)
            .env("RCLONE_CONFIG_MY_NAS_PASS", obscured());
        cmd
    };
    let source = "rclone:my_nas:photos";
    let run = || with_remote(d.run(source, &["--part-size", "1MiB"]));
    assert_exit(&mut run(), 0);
    let out = assert_exit(&mut run(), 0);
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));

    // Same size, new bytes, a new time; a longer file; a new file.
    let same_size = files.keys().find(|k| k.ends_with(".dat")).unwrap().clone();
    let same_size = same_size.as_str();
    let mut new = files[same_size].clone();
    new.iter_mut().for_each(|b| *b = b.wrapping_add(1));
    std::fs::write(photos.join(same_size), &new).unwrap();
    set_mtime(
        &photos.join(same_size),
        SystemTime::now() + Duration::from_secs(86_400),
    );
    files.insert(same_size.into(), new);
    let longer = "file 0.txt";
    files
        .get_mut(longer)
        .unwrap()
        .extend_from_slice(b" and more");
    std::fs::write(photos.join(longer), &files[longer]).unwrap();
    std::fs::create_dir_all(photos.join("new")).unwrap();
    std::fs::write(photos.join("new/arrival.txt"), b"hello").unwrap();
    files.insert("new/arrival.txt".into(), b"hello".to_vec());

    let out = assert_exit(&mut run(), 0);
    let said = text(&out);
    assert!(said.contains("stored 3 files"), "{said}");
    assert!(said.contains("7 already stored"), "{said}");
    let st = common::load(&d.state);
    assert_eq!(st.job.source, source, "the job is the source as given");
    assert_eq!(
        st.completed[same_size].versions.len(),
        1,
        "old version kept"
    );
    assert_eq!(st.completed[longer].versions.len(), 1, "old version kept");
    assert_eq!(st.stats.total_uploaded, 9 + 3);
    assert!(d.restore("restored") == files, "restored tree differs");
    eprintln!("changed files: {:?}", t0.elapsed());
}

#[test]
fn missing_rclone_unknown_remote_refused_login_and_missing_path_are_clear_errors() {
    let d = dirs();
    std::fs::write(d.served.join("x.txt"), "x").unwrap();
    let server = Server::start(Kind::Sftp, &d.served, &d.cache);
    let bad_pass = {
        let out = Command::new(rclone())
            .args(["obscure", "not-the-password"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let wrong_login = format!(
        "rclone::sftp,host=127.0.0.1,port={},user={USER},pass={bad_pass}:",
        server.port
    );
    let missing_path = format!("rclone:{}no/such/folder", server.remote());
    let cases: Vec<(&str, String, Option<&str>, &[&str])> = vec![
        (
            "missing binary",
            format!("rclone:{}", server.remote()),
            Some("/nonexistent/rclone"),
            &[
                "rclone is not installed",
                "/nonexistent/rclone",
                "apt-get install rclone",
                "TGFERRY_RCLONE",
            ],
        ),
        (
            "unknown remote",
            "rclone:nosuch_nas:photos".into(),
            None,
            &[
                "rclone:nosuch_nas:photos",
                "\"nosuch_nas\" is not configured",
                "rclone config",
                "RCLONE_CONFIG_NOSUCH_NAS_TYPE",
            ],
        ),
        (
            "refused login",
            wrong_login,
            None,
            &[
                "refused the credentials",
                "unable to authenticate",
                "obscure",
            ],
        ),
        (
            "missing path",
            missing_path,
            None,
            &["no/such/folder", "does not exist"],
        ),
        (
            "a file",
            format!("rclone:{}x.txt", server.remote()),
            None,
            &["x.txt", "is a file, not a folder"],
        ),
    ];
    for (name, source, binary, needles) in cases {
        let t0 = Instant::now();
        let mut cmd = d.run(&source, &[]);
        if let Some(b) = binary {
            cmd.env("TGFERRY_RCLONE", b);
        }
        let out = assert_exit(&mut cmd, 8);
        let said = text(&out);
        for needle in needles {
            assert!(said.contains(needle), "{name}: {needle:?} not in {said}");
        }
        for secret in [obscured(), bad_pass.as_str()] {
            assert!(!said.contains(secret), "{name}: a secret shows: {said}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{name}: took {:?}",
            t0.elapsed()
        );
        assert!(
            !d.state.exists(),
            "{name}: no state for a run that could not start"
        );
    }
    // `rclone:` alone is a usage error.
    let out = assert_exit(&mut d.run("rclone:", &[]), 2);
    assert!(text(&out).contains("rclone:REMOTE:PATH"), "{}", text(&out));
}

async fn read(src: &RcloneSource, path: &str, offset: u64) -> Vec<u8> {
    let mut r = src.open(path, offset).await.unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    got
}

/// The library over rclone's local backend: windowed reads from any offset return the
/// right bytes, reading past a window starts the next `cat`, and remote hashes are kept
/// where the remote has them cheaply (the hasher backend here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_offsets_in_windows_and_keeps_cheap_hashes() {
    use sha2::Digest;
    rclone();
    let d = dirs();
    let data = common::bytes(9, 300_000);
    std::fs::write(d.served.join("f.bin"), &data).unwrap();
    std::fs::write(d.served.join("empty"), b"").unwrap();
    // rclone 1.60's hasher backend lists fine but fails its reads ("database stopped"):
    // it gives the hashes, the local backend the bytes.
    let hasher = format!(":hasher,remote='{}':", s(&d.served));
    let remote = s(&d.served).to_owned();
    // rclone sees the test's own (empty) config and cache, not the user's.
    let make_on = |remote: &str, window: Option<u64>| {
        let src = RcloneSource::new(remote)
            .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
            .with_env("RCLONE_CACHE_DIR", &d.cache);
        match window {
            Some(w) => src.with_read_window(w),
            None => src,
        }
    };
    let make = |window: Option<u64>| make_on(&remote, window);
    let hashed = make_on(&hasher, None);
    let listing = hashed.list().await.unwrap();
    assert_eq!(listing.files.len(), 2);
    let hashes = hashed.hashes("f.bin").unwrap();
    assert_eq!(
        hashes["sha256"],
        hex::encode(sha2::Sha256::digest(&data)),
        "{hashes:?}"
    );
    // The local backend hashes by reading the file: no hashes asked for.
    let src = make(Some(64 * 1024));
    assert_eq!(src.list().await.unwrap().files.len(), 2);
    assert_eq!(src.hashes("f.bin"), Some(BTreeMap::new()));
    for offset in [0u64, 1, 65_535, 65_536, 200_000, 299_999, 300_000] {
        let got = read(&src, "f.bin", offset).await;
        assert!(got == data[offset as usize..], "offset {offset}");
    }
    assert!(read(&src, "empty", 0).await.is_empty());
    // Without a listing (no known size) the windows end where the file does.
    let fresh = make(Some(100_000));
    assert!(read(&fresh, "f.bin", 0).await == data);
    // Without a window: one `cat` to the end.
    let whole = make(None);
    assert!(read(&whole, "f.bin", 123).await == data[123..]);
    let e = src.stat("f.bin").await.unwrap();
    assert_eq!(e.size, data.len() as u64);
    // A file that grew since the listing is read whole once it has been looked at again
    // (as the runner does before a retry).
    let grown = common::bytes(10, 400_000);
    std::fs::write(d.served.join("f.bin"), &grown).unwrap();
    assert_eq!(src.stat("f.bin").await.unwrap().size, 400_000);
    assert!(read(&src, "f.bin", 0).await == grown);
    assert!(read(&src, "f.bin", 327_680).await == grown[327_680..]);
    match src.stat("gone.bin").await {
        Err(tgferry::source::SourceError::Vanished { path }) => assert_eq!(path, "gone.bin"),
        other => panic!("{other:?}"),
    }
    match src.open("gone.bin", 0).await {
        Err(tgferry::source::SourceError::Vanished { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// The change checks of files read together share one listing of their folder, and a check
/// still sees a change made after an earlier check's listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_checks_of_a_folder_share_a_listing() {
    rclone();
    let d = dirs();
    let album = d.served.join("album");
    std::fs::create_dir_all(&album).unwrap();
    for i in 0..16u64 {
        std::fs::write(
            album.join(format!("p{i:02}.jpg")),
            common::bytes(i, 1000 + i as usize),
        )
        .unwrap();
    }
    let src = Arc::new(
        RcloneSource::new(s(&d.served))
            .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
            .with_env("RCLONE_CACHE_DIR", &d.cache),
    );
    assert_eq!(src.list().await.unwrap().files.len(), 16);
    let before = src.rcd().calls();
    let checks: Vec<_> = (0..16u64)
        .map(|i| {
            let src = src.clone();
            tokio::spawn(async move { src.stat(&format!("album/p{i:02}.jpg")).await })
        })
        .collect();
    for (i, c) in checks.into_iter().enumerate() {
        let e = c.await.unwrap().unwrap();
        assert_eq!(e.size, 1000 + i as u64, "{}", e.path);
    }
    let listings = src.rcd().calls() - before;
    assert!(
        listings <= 4,
        "16 checks of one folder at once made {listings} rc calls"
    );
    // A later check lists again: it sees the file as it is now.
    std::fs::write(album.join("p03.jpg"), b"rewritten").unwrap();
    assert_eq!(src.stat("album/p03.jpg").await.unwrap().size, 9);
    assert!(read(&src, "album/p03.jpg", 0).await == b"rewritten");
}

/// Files fetched ahead are vouched for by the listing their folder's first check makes:
/// it waits (at most `CHECK_LINGER`) for the fetches still under way, so the checks that
/// follow need no listing of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_waits_for_files_fetched_ahead_so_one_listing_vouches_for_all() {
    rclone();
    let d = dirs();
    let album = d.served.join("ahead");
    std::fs::create_dir_all(&album).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("ahead/p{i}.jpg")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(d.served.join(n), common::bytes(i as u64, 3000)).unwrap();
    }
    std::fs::write(d.served.join("first.jpg"), b"x").unwrap();
    let src = RcloneSource::new(s(&d.served))
        .with_env("RCLONE_CONFIG", d.cache.join("none.conf"))
        .with_env("RCLONE_CACHE_DIR", &d.cache);
    src.list().await.unwrap();
    // The read server is started by a first read (an rc call of its own).
    assert_eq!(read(&src, "first.jpg", 0).await, b"x");
    let before = src.rcd().calls();
    for n in &names {
        src.prefetch(n, 0, 3000);
    }
    for (i, n) in names.iter().enumerate() {
        assert_eq!(read(&src, n, 0).await, common::bytes(i as u64, 3000));
        assert_eq!(src.stat(n).await.unwrap().size, 3000);
    }
    let listings = src.rcd().calls() - before;
    assert_eq!(listings, 1, "8 files fetched ahead, then checked");
}
