//! Nothing hangs or eats the machine (issue 18, item 5): a FIFO or device in place of a
//! stored part, the catalog, the key file, the state or its journal; `/dev/zero` as a
//! state or a passphrase file; a key file whose KDF settings would take a minute and a
//! GiB; a zip bomb in a state artifact. Each command runs under a deadline and is killed
//! (failing the test) if it does not finish.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{s, tgferry};

/// Runs `cmd`, killing it and failing if it is still running after `limit`.
fn within(limit: Duration, cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?} (killed): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

const PASS: &str = "correct horse battery staple";

/// A vault job with two files stored: (source, store, state).
fn vault_job(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (src, store, state) = common::job_paths(dir);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("b.txt"), b"bravo").unwrap();
    // Each file's part a blob of its own, so each can be swapped for something else.
    let mut run = common::run_cmd(
        &src,
        &store,
        &state,
        &["--encryption", "vault", "--pack-threshold", "0"],
    );
    run.env("TGFERRY_PASSPHRASE", PASS);
    common::assert_exit(&mut run, 0);
    (src, store, state)
}

fn vault_cmd(args: &[&str]) -> Command {
    let mut c = tgferry(args);
    c.env("TGFERRY_PASSPHRASE", PASS);
    c
}

/// Where the state says `path`'s current content is stored.
fn part_of(state: &Path, path: &str) -> String {
    let st = common::load(state);
    let id = st.completed[path].object.clone().unwrap();
    st.objects[&id].parts[0].loc.clone()
}

#[test]
fn a_fifo_or_a_link_to_a_device_in_place_of_a_part_fails_that_file_at_once() {
    let dir = common::tempdir();
    let (_src, store, state) = vault_job(dir.path());
    let fifo = store.join(part_of(&state, "a.txt"));
    mkfifo(&fifo);
    let dev = store.join(part_of(&state, "b.txt"));
    std::fs::remove_file(&dev).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &dev).unwrap();
    let limit = Duration::from_secs(30);
    let to = dir.path().join("back");
    for args in [
        vec!["restore", "--store", s(&store), "--to", s(&to)],
        vec![
            "restore",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--to",
            s(&to),
        ],
        vec!["verify", "--store", s(&store), "--full"],
        vec!["verify", "--store", s(&store), "--state", s(&state)],
    ] {
        let out = within(limit, &mut vault_cmd(&args));
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        if args[0] == "restore" || args.contains(&"--full") {
            assert!(err.contains("FIFO"), "{args:?}: {err}");
            assert!(err.contains("symbolic link"), "{args:?}: {err}");
        }
    }
}

#[test]
fn a_fifo_in_place_of_the_catalog_or_the_key_file_is_an_error_not_a_hang() {
    let dir = common::tempdir();
    let (_src, store, state) = vault_job(dir.path());
    let limit = Duration::from_secs(30);
    let to = dir.path().join("back");
    let catalog = store.join(".tgferry/catalog");
    let saved = std::fs::read(&catalog).unwrap();
    mkfifo(&catalog);
    let out = within(
        limit,
        &mut vault_cmd(&["restore", "--store", s(&store), "--to", s(&to)]),
    );
    assert_eq!(code(&out), 9, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("catalog is a FIFO"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&catalog).unwrap();
    std::fs::write(&catalog, saved).unwrap();

    let key = store.join(".tgferry/key.json");
    mkfifo(&key);
    let out = within(
        limit,
        &mut vault_cmd(&[
            "verify",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--full",
        ]),
    );
    assert_eq!(code(&out), 9, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("key.json is a FIFO"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_fifo_or_a_device_as_the_state_or_its_journal_is_refused_at_once() {
    let dir = common::tempdir();
    let limit = Duration::from_secs(20);
    let out = within(limit, &mut tgferry(&["status", "/dev/zero"]));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a device, not a regular file"),
        "{}",
        stderr(&out)
    );

    let (src, store, state) = common::job_paths(dir.path());
    std::fs::create_dir_all(&src).unwrap();
    mkfifo(&state);
    let out = within(limit, &mut common::run_cmd(&src, &store, &state, &[]));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("FIFO"), "{}", stderr(&out));
    let out = within(limit, &mut tgferry(&["status", s(&state)]));
    assert_eq!(code(&out), 4, "{}", stderr(&out));

    std::fs::remove_file(&state).unwrap();
    common::assert_exit(&mut common::run_cmd(&src, &store, &state, &[]), 0);
    let journal = dir.path().join("state.json.journal");
    mkfifo(&journal);
    let out = within(limit, &mut tgferry(&["status", s(&state)]));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("FIFO"), "{}", stderr(&out));
}

#[test]
fn a_state_over_the_size_cap_is_refused_before_it_is_read() {
    let dir = common::tempdir();
    let state = dir.path().join("huge.json");
    // A sparse file: 1 GiB + 1 byte that takes no disk.
    let f = std::fs::File::create(&state).unwrap();
    f.set_len(tgferry::bounded::MAX_STATE_LEN + 1).unwrap();
    let out = within(
        Duration::from_secs(20),
        &mut tgferry(&["status", s(&state)]),
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is larger than 1.0 GiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dev_zero_as_the_passphrase_file_is_refused_after_64_kib() {
    let dir = common::tempdir();
    let store = dir.path().join("store");
    let mut cmd = tgferry(&["init", "--store", s(&store)]);
    cmd.env("TGFERRY_PASSPHRASE_FILE", "/dev/zero");
    let out = within(Duration::from_secs(20), &mut cmd);
    assert_eq!(code(&out), 10, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is larger than 64.0 KiB"),
        "{}",
        stderr(&out)
    );
    assert!(!store.join(".tgferry/key.json").exists());
}

#[test]
fn a_key_file_whose_kdf_costs_a_minute_is_reported_as_altered_at_once() {
    let dir = common::tempdir();
    let (_src, store, state) = vault_job(dir.path());
    let key = store.join(".tgferry/key.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    // What the old bounds let through: 1 GiB, 64 passes (54 s and 1 GiB per command).
    v["kdf"]["m_cost_kib"] = (1u32 << 20).into();
    v["kdf"]["t_cost"] = 64.into();
    std::fs::write(&key, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let out = within(
        Duration::from_secs(20),
        &mut vault_cmd(&[
            "verify",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--full",
        ]),
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("out of bounds") && err.contains("altered"),
        "{err}"
    );
}

/// The artifact zip's entries are inflated straight into a file, refused past their cap:
/// a bomb (a small zip inflating to far more than `--max-state-size`, whether its header
/// says so or lies) never reaches memory.
#[test]
fn zip_bombs_are_refused_by_their_header_or_while_inflating() {
    use std::io::Write;
    use tgferry::github::artifacts::{ArtifactEntry, extract_zip};

    let big = 64usize << 20;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("tgferry-state.json", opts).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..big >> 20 {
        w.write_all(&zeros).unwrap();
    }
    let honest = w.finish().unwrap().into_inner();
    assert!(honest.len() < 1 << 20, "a bomb: {} bytes", honest.len());
    let max = 1 << 20;
    let mut seen = 0u64;
    let err = extract_zip(
        std::io::Cursor::new(&honest),
        "tgferry-state.json",
        "tgferry-state.json.journal",
        max,
        |_, r| {
            seen += std::io::copy(r, &mut std::io::sink())?;
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(seen, 0, "refused from its header, before inflating");
    assert!(err.contains("--max-state-size"), "{err}");

    // The same bomb with a header that claims 100 bytes (local header and central
    // directory both patched): refused once it inflates past that.
    let mut lying = honest.clone();
    let size = (big as u32).to_le_bytes();
    let mut patched = 0;
    for i in 0..lying.len() - 4 {
        if lying[i..i + 4] == size {
            lying[i..i + 4].copy_from_slice(&100u32.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2);
    let mut seen = 0u64;
    let err = extract_zip(
        std::io::Cursor::new(&lying),
        "tgferry-state.json",
        "tgferry-state.json.journal",
        max,
        |which, r| {
            assert_eq!(which, ArtifactEntry::State);
            let mut buf = [0u8; 4096];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                seen += n as u64;
            }
        },
    )
    .unwrap_err();
    assert!(
        seen <= 100,
        "no more than the header says was handed on: {seen}"
    );
    // Whichever notices first, the zip crate or tgferry's own cap.
    assert!(
        err.contains("zip bomb") || err.contains("larger than its declared"),
        "{err}"
    );
}
