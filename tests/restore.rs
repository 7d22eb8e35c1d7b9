//! `tgferry restore` and `tgferry verify` end to end: the built binary over real folders
//! (round trips at every size boundary, damaged stores, hostile catalogs, repair), and the
//! library over the in-memory store.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{assert_exit, run_cmd, s, tgferry};
use tgferry::restore::{RestoreOptions, VerifyOptions};
use tgferry::state::State;

const PASS: &str = "correct horse battery staple";
const MIB: usize = 1 << 20;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `tgferry` command that has the passphrase.
fn with_pass(args: &[&str]) -> Command {
    let mut c = tgferry(args);
    c.env("TGFERRY_PASSPHRASE", PASS);
    c
}

/// Writes `files` under `root`, each with its own modification time (nanoseconds too).
fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (i, (path, data)) in files.iter().enumerate() {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, data).unwrap();
        set_mtime(&full, 1_000_000_000 + i as u64 * 86_400, 123_456_789);
    }
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// The files under `to` equal `files`, byte for byte and modification time for time.
fn assert_restored(to: &Path, src: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let got = common::tree(to);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );
    for (path, data) in files {
        assert!(got[path] == *data, "{path}: content differs");
        assert_eq!(
            mtime(&to.join(path)),
            mtime(&src.join(path)),
            "{path}: mtime"
        );
    }
}

fn run_vault(src: &Path, store: &Path, state: &Path, part_size: &str) -> Output {
    run_vault_with(src, store, state, part_size, &[])
}

/// [`run_vault`] with more flags.
fn run_vault_with(
    src: &Path,
    store: &Path,
    state: &Path,
    part_size: &str,
    more: &[&str],
) -> Output {
    let mut args = vec![
        "run",
        "--source",
        s(src),
        "--store",
        s(store),
        "--state",
        s(state),
        "--encryption",
        "vault",
        "--part-size",
        part_size,
        "-q",
    ];
    args.extend_from_slice(more);
    assert_exit(&mut with_pass(&args), 0)
}

/// Paths under `dir` of restore temp files.
fn temp_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if !dir.exists() {
        return found;
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name()
            .to_string_lossy()
            .starts_with(".tgferry-restore-")
        {
            found.push(e.path());
        }
        if e.file_type().unwrap().is_dir() {
            found.extend(temp_leftovers(&e.path()));
        }
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn object_of<'a>(st: &'a State, path: &str) -> &'a tgferry::state::Object {
    &st.objects[st.completed[path].object.as_ref().unwrap()]
}

#[test]
fn help_texts_build() {
    for cmd in ["restore", "verify"] {
        let out = assert_exit(&mut tgferry(&[cmd, "--help"]), 0);
        assert!(text(&out).contains("--store"));
    }
    // --repair edits the state file, so it needs one.
    let dir = common::tempdir();
    let out = assert_exit(
        &mut tgferry(&["verify", "--store", s(dir.path()), "--repair"]),
        2,
    );
    assert!(text(&out).contains("--state"), "{}", text(&out));
}

#[test]
fn vault_round_trips_at_segment_and_part_boundaries() {
    let dir = common::tempdir();
    let cases: [(&str, &[usize]); 2] = [
        // Part size = segment size: 1 MiB ± 1 crosses both boundaries at once; 2 MiB + 5
        // is three parts.
        ("1MiB", &[0, 1, MIB - 1, MIB, MIB + 1, 2 * MIB + 5]),
        // Two segments per part: a part boundary that is not every segment boundary.
        ("2MiB", &[2 * MIB - 1, 2 * MIB, 2 * MIB + 1]),
    ];
    for (n, (part_size, sizes)) in cases.into_iter().enumerate() {
        let base = dir.path().join(format!("case{n}"));
        let (src, store, state) = (base.join("src"), base.join("store"), base.join("st.json"));
        let name = |i: usize, len: usize| format!("d{}/size-{len}.bin", i % 2);
        let files: BTreeMap<String, Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| (name(i, len), common::bytes(i as u64, len)))
            .collect();
        write_tree(&src, &files);
        run_vault(&src, &store, &state, part_size);
        let st = common::load(&state);
        let part = if n == 0 { MIB } else { 2 * MIB };
        for (i, &len) in sizes.iter().enumerate() {
            let parts = object_of(&st, &name(i, len)).parts.len();
            assert_eq!(parts, len.div_ceil(part).max(1), "{len}");
        }

        // From the store's catalog and the passphrase alone.
        let out_catalog = base.join("from-catalog");
        let out = assert_exit(
            &mut with_pass(&["restore", "--store", s(&store), "--to", s(&out_catalog)]),
            0,
        );
        assert!(
            text(&out).contains(&format!("restored {} files", files.len())),
            "{}",
            text(&out)
        );
        assert_restored(&out_catalog, &src, &files);

        // From the state file (the same code from there on: once is enough).
        if n > 0 {
            continue;
        }
        let out_state = base.join("from-state");
        assert_exit(
            &mut with_pass(&[
                "restore",
                "--store",
                s(&store),
                "--state",
                s(&state),
                "--to",
                s(&out_state),
                "--jobs",
                "1",
            ]),
            0,
        );
        assert_restored(&out_state, &src, &files);
        assert!(temp_leftovers(&base).is_empty());
    }
}

#[test]
fn patterns_versions_and_existing_files() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    let photo = common::bytes(1, 3000);
    let mut files: BTreeMap<String, Vec<u8>> = [
        ("photos/2024/a.jpg", photo.clone()),
        ("photos/2024/copy of a.jpg", photo.clone()), // one object, two paths
        ("photos/b.jpg", common::bytes(2, 500)),
        ("docs/notes.txt", b"first draft".to_vec()),
        ("docs/old.txt", b"never changes".to_vec()),
        ("top.txt", b"top".to_vec()),
    ]
    .into_iter()
    .map(|(p, d)| (p.to_string(), d))
    .collect();
    write_tree(&src, &files);
    run_vault(&src, &store, &state, "1MiB");
    let first_notes_mtime = mtime(&src.join("docs/notes.txt"));
    // The file changes between runs: the first content stays restorable as version 1.
    std::fs::write(src.join("docs/notes.txt"), b"second, longer draft").unwrap();
    set_mtime(&src.join("docs/notes.txt"), 1_700_000_000, 5);
    files.insert("docs/notes.txt".into(), b"second, longer draft".to_vec());
    run_vault(&src, &store, &state, "1MiB");
    let st = common::load(&state);
    assert_eq!(st.completed["docs/notes.txt"].versions.len(), 1);
    assert_eq!(
        st.completed["photos/2024/a.jpg"].object,
        st.completed["photos/2024/copy of a.jpg"].object
    );

    let restore = |to: &Path, extra: &[&str]| {
        let mut args = vec!["restore", "--store", s(&store), "--to", s(to)];
        args.extend_from_slice(extra);
        with_pass(&args)
    };
    let only = |keys: &[&str]| -> BTreeMap<String, Vec<u8>> {
        keys.iter()
            .map(|k| (k.to_string(), files[*k].clone()))
            .collect()
    };

    // A folder selects everything under it.
    let to = dir.path().join("photos-only");
    assert_exit(&mut restore(&to, &["photos"]), 0);
    assert_restored(
        &to,
        &src,
        &only(&[
            "photos/2024/a.jpg",
            "photos/2024/copy of a.jpg",
            "photos/b.jpg",
        ]),
    );
    // Globs: `**/` matches no folder too; `*` stays in one folder.
    let to = dir.path().join("globs");
    assert_exit(&mut restore(&to, &["**/*.txt", "photos/*.jpg"]), 0);
    assert_restored(
        &to,
        &src,
        &only(&["docs/notes.txt", "docs/old.txt", "top.txt", "photos/b.jpg"]),
    );
    // A pattern that matches nothing is an error; the rest is restored.
    let to = dir.path().join("unmatched");
    let out = assert_exit(&mut restore(&to, &["nothing/here/**", "top.txt"]), 3);
    assert!(text(&out).contains("nothing/here/**"), "{}", text(&out));
    assert_restored(&to, &src, &only(&["top.txt"]));

    // One version back: the first content with its own mtime; files with no earlier
    // version are reported and skipped, which is not a failure.
    let to = dir.path().join("version-1");
    let out = assert_exit(&mut restore(&to, &["docs", "--version", "1"]), 0);
    assert_eq!(
        std::fs::read(to.join("docs/notes.txt")).unwrap(),
        b"first draft"
    );
    assert_eq!(mtime(&to.join("docs/notes.txt")), first_notes_mtime);
    assert!(!to.join("docs/old.txt").exists());
    assert!(
        text(&out).contains("docs/old.txt: has no version 1"),
        "{}",
        text(&out)
    );
    assert_exit(&mut restore(&to, &["docs", "--version", "2"]), 0);
    assert!(!to.join("docs/old.txt").exists());

    // Existing files: identical ones are skipped, different ones are left alone unless
    // --overwrite.
    let to = dir.path().join("all");
    assert_exit(&mut restore(&to, &[]), 0);
    assert_restored(&to, &src, &files);
    let out = assert_exit(&mut restore(&to, &[]), 0);
    assert!(text(&out).contains("6 already there"), "{}", text(&out));
    std::fs::write(to.join("top.txt"), b"edited after the restore").unwrap();
    let out = assert_exit(&mut restore(&to, &[]), 3);
    assert!(
        text(&out).contains("top.txt") && text(&out).contains("--overwrite"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(to.join("top.txt")).unwrap(),
        b"edited after the restore"
    );
    assert_exit(&mut restore(&to, &["--overwrite"]), 0);
    assert_restored(&to, &src, &files);
    assert!(temp_leftovers(dir.path()).is_empty());
}

/// Alters a copy of the store (given the state that describes it).
type Mutate = Box<dyn Fn(&Path, &State) + Sync>;

/// One way of damaging a store, and what it must do.
struct Damage {
    name: &'static str,
    mutate: Mutate,
    /// The files that must fail, and the part named for the first of them.
    broken: &'static [&'static str],
    part: &'static str,
    /// Whether the fast (length-only) verify notices.
    fast_notices: bool,
}

fn part_path(store: &Path, st: &State, file: &str, k: usize) -> PathBuf {
    store.join(&object_of(st, file).parts[k].loc)
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at(b.len());
    b[i] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

fn swap(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    std::fs::write(a, y).unwrap();
    std::fs::write(b, x).unwrap();
}

const VICTIM: &str = "v/victim.bin";
const SMALL: &str = "small.txt";

fn damages() -> Vec<Damage> {
    fn d(
        name: &'static str,
        broken: &'static [&'static str],
        part: &'static str,
        fast_notices: bool,
        mutate: impl Fn(&Path, &State) + Sync + 'static,
    ) -> Damage {
        Damage {
            name,
            mutate: Box::new(mutate),
            broken,
            part,
            fast_notices,
        }
    }
    // The victim is 1 MiB + 100 bytes in parts of 1 MiB: part 1 is the header, one full
    // segment and its tag; part 2 the header and a 100-byte final segment.
    vec![
        d(
            "flip a header byte",
            &[VICTIM],
            "part 1 of 2",
            false,
            |st_dir, st| flip(&part_path(st_dir, st, VICTIM, 0), |_| 5),
        ),
        d(
            "flip a byte of the first segment",
            &[VICTIM],
            "part 1 of 2",
            false,
            |p, st| flip(&part_path(p, st, VICTIM, 0), |_| 48 + 1000),
        ),
        d(
            "flip a tag byte",
            &[VICTIM],
            "part 1 of 2",
            false,
            |p, st| flip(&part_path(p, st, VICTIM, 0), |len| len - 9),
        ),
        d(
            "flip the last byte",
            &[VICTIM],
            "part 2 of 2",
            false,
            |p, st| flip(&part_path(p, st, VICTIM, 1), |len| len - 1),
        ),
        d(
            "truncate a part",
            &[VICTIM],
            "part 1 of 2",
            true,
            |p, st| {
                let path = part_path(p, st, VICTIM, 0);
                let b = std::fs::read(&path).unwrap();
                std::fs::write(&path, &b[..b.len() - 1000]).unwrap();
            },
        ),
        d(
            "delete the last part",
            &[VICTIM],
            "part 2 of 2",
            true,
            |p, st| std::fs::remove_file(part_path(p, st, VICTIM, 1)).unwrap(),
        ),
        d(
            "swap two parts of one object",
            &[VICTIM],
            "part 1 of 2",
            true,
            |p, st| swap(&part_path(p, st, VICTIM, 0), &part_path(p, st, VICTIM, 1)),
        ),
        // Both blobs are 164 bytes: only reading them tells.
        d(
            "swap parts of two objects",
            &[VICTIM, SMALL],
            "part 2 of 2",
            false,
            |p, st| swap(&part_path(p, st, VICTIM, 1), &part_path(p, st, SMALL, 0)),
        ),
    ]
}

#[test]
fn a_damaged_part_fails_its_file_alone_and_verify_names_it() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    let files: BTreeMap<String, Vec<u8>> = [
        (VICTIM, common::bytes(1, MIB + 100)),
        (SMALL, common::bytes(2, 100)),
        ("keep/a.txt", common::bytes(3, 2000)),
        ("keep/b.bin", common::bytes(4, 30_000)),
        ("keep/empty", Vec::new()),
    ]
    .into_iter()
    .map(|(p, d)| (p.to_string(), d))
    .collect();
    write_tree(&src, &files);
    // Each file's parts blobs of their own, so that each damage hits one file; damage
    // inside a pack is `damage_inside_a_pack_fails_only_the_objects_it_touches`.
    run_vault_with(&src, &store, &state, "1MiB", &["--pack-threshold", "0"]);
    let st = common::load(&state);
    assert_eq!(object_of(&st, VICTIM).parts.len(), 2);
    assert_eq!(
        object_of(&st, VICTIM).parts[1].len,
        object_of(&st, SMALL).parts[0].len
    );
    // A clean store verifies both ways.
    for full in [true, false] {
        let mut args = vec!["verify", "--store", s(&store), "--state", s(&state)];
        if full {
            args.push("--full");
        }
        assert_exit(&mut with_pass(&args), 0);
    }

    let damages = damages();
    std::thread::scope(|scope| {
        for (i, damage) in damages.iter().enumerate() {
            let (dir, src, state, st, files) = (dir.path(), &src, &state, &st, &files);
            let store = &store;
            scope.spawn(move || {
                let name = damage.name;
                let base = dir.join(format!("damage-{i}"));
                let copy = base.join("store");
                copy_dir(store, &copy);
                (damage.mutate)(&copy, st);
                // Every other case reads the store's own catalog instead of the state.
                let to = base.join("out");
                let mut args = vec!["restore", "--store", s(&copy), "--to", s(&to)];
                if i % 2 == 0 {
                    args.extend(["--state", s(state)]);
                }
                let out = assert_exit(&mut with_pass(&args), 3);
                let msg = text(&out);
                let first = damage.broken[0];
                assert!(
                    msg.lines()
                        .any(|l| l.contains(first) && l.contains(damage.part)),
                    "{name}: no line names {first} and {}:\n{msg}",
                    damage.part
                );
                let mut expected = files.clone();
                for b in damage.broken {
                    expected.remove(*b);
                    assert!(msg.contains(b), "{name}: {b} not named:\n{msg}");
                    assert!(!to.join(b).exists(), "{name}: {b} was created");
                }
                assert_restored(&to, src, &expected);
                assert!(temp_leftovers(&to).is_empty(), "{name}: temp file left");

                let verify = |full: bool| {
                    let mut args = vec!["verify", "--store", s(&copy), "--state", s(state)];
                    if full {
                        args.push("--full");
                    }
                    with_pass(&args).output().unwrap()
                };
                let out = verify(true);
                assert_eq!(out.status.code(), Some(3), "{name}: {}", text(&out));
                for b in damage.broken {
                    assert!(
                        text(&out).contains(b),
                        "{name}: verify --full:\n{}",
                        text(&out)
                    );
                }
                let out = verify(false);
                let code = if damage.fast_notices { 3 } else { 0 };
                assert_eq!(out.status.code(), Some(code), "{name}: {}", text(&out));
                if damage.fast_notices {
                    assert!(text(&out).contains(VICTIM), "{name}: {}", text(&out));
                }
            });
        }
    });
}

#[test]
fn a_wrong_or_missing_passphrase_stops_before_anything_is_written() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f.txt"), b"secret").unwrap();
    run_vault(&src, &store, &state, "1MiB");
    let to = dir.path().join("out");
    for with_state in [false, true] {
        let mut args = vec!["restore", "--store", s(&store), "--to", s(&to)];
        if with_state {
            args.extend(["--state", s(&state)]);
        }
        let mut wrong = tgferry(&args);
        wrong.env("TGFERRY_PASSPHRASE", "not the passphrase");
        let out = assert_exit(&mut wrong, 10);
        assert!(text(&out).contains("wrong passphrase"), "{}", text(&out));
        assert_exit(&mut tgferry(&args), 10);
        assert!(!to.exists(), "--to was created");
    }
    let mut wrong = tgferry(&["verify", "--store", s(&store), "--full"]);
    wrong.env("TGFERRY_PASSPHRASE", "not the passphrase");
    assert_exit(&mut wrong, 10);
    // A plain store has no catalog: without --state there is nothing to read. A store
    // without a vault exits 10, as the README's table says.
    let plain = dir.path().join("plain-store");
    std::fs::create_dir_all(&plain).unwrap();
    let out = assert_exit(
        &mut tgferry(&["restore", "--store", s(&plain), "--to", s(&to)]),
        10,
    );
    assert!(text(&out).contains("--state"), "{}", text(&out));
    assert!(!to.exists());
}

#[cfg(unix)] // symbolic links
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_paths_in_a_state_or_catalog_never_write_outside() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok.txt"), b"fine").unwrap();
    run_vault(&src, &store, &state, "1MiB");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let abs = format!("{}/abs.txt", s(&outside));
    let evil = [
        "../escape.txt",
        "a/../../up.txt",
        abs.as_str(),
        "link/inside.txt",
        "link",
    ];
    let mut crafted = common::load(&state);
    let ok = crafted.completed["ok.txt"].clone();
    for p in evil {
        crafted.completed.insert(p.to_string(), ok.clone());
    }
    let crafted_state = dir.path().join("crafted.json");
    std::fs::write(&crafted_state, serde_json::to_vec_pretty(&crafted).unwrap()).unwrap();

    let check = |to: &Path, out: Output| {
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let msg = text(&out);
        for p in evil {
            assert!(msg.contains(p), "{p} not named:\n{msg}");
        }
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "something was written outside"
        );
        for escaped in ["escape.txt", "up.txt"] {
            assert!(!dir.path().join(escaped).exists());
        }
        assert_eq!(std::fs::read(to.join("ok.txt")).unwrap(), b"fine");
        assert!(
            std::fs::symlink_metadata(to.join("link"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "the link was replaced without --overwrite"
        );
    };
    // The restore folder holds a link to the outside.
    let prepare = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir(&to).unwrap();
        std::os::unix::fs::symlink(&outside, to.join("link")).unwrap();
        to
    };

    let to = prepare("from-state");
    let out = with_pass(&[
        "restore",
        "--store",
        s(&store),
        "--state",
        s(&crafted_state),
        "--to",
        s(&to),
    ])
    .output()
    .unwrap();
    check(&to, out);

    // The same paths sealed into the store's catalog, as someone with the key could.
    let local = tgferry::store::local::LocalStore::new(&store);
    let pass = secrecy::SecretString::from(PASS);
    let (_, master, _) = tgferry::keyring::unlock(&local, "store", &pass, false)
        .await
        .unwrap();
    tgferry::keyring::save_catalog(&local, &master, &crafted)
        .await
        .unwrap();
    let to = prepare("from-catalog");
    let out = with_pass(&["restore", "--store", s(&store), "--to", s(&to)])
        .output()
        .unwrap();
    check(&to, out);
    // The library says the same without the CLI.
    let to = prepare("library");
    let report =
        tgferry::restore::restore(&local, &crafted, Some(&master), &RestoreOptions::new(&to))
            .await
            .unwrap();
    assert_eq!(report.restored, ["ok.txt"]);
    let mut failed: Vec<&str> = report.failed.iter().map(|f| f.path.as_str()).collect();
    failed.sort();
    let mut want = evil.to_vec();
    want.sort();
    assert_eq!(failed, want);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn repair_forgets_a_damaged_file_and_the_next_run_stores_it_again() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    let files: BTreeMap<String, Vec<u8>> = [
        ("victim.txt", common::bytes(5, 5000)),
        ("fine.txt", common::bytes(6, 700)),
    ]
    .into_iter()
    .map(|(p, d)| (p.to_string(), d))
    .collect();
    write_tree(&src, &files);
    run_vault(&src, &store, &state, "1MiB");
    let st = common::load(&state);
    flip(&part_path(&store, &st, "victim.txt", 0), |len| len / 2);

    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--store", s(&store), "--state", s(&state)];
        args.extend_from_slice(extra);
        with_pass(&args)
    };
    let out = assert_exit(&mut verify(&["--full"]), 3);
    assert!(text(&out).contains("used by victim.txt"), "{}", text(&out));
    assert!(text(&out).contains("--repair"), "{}", text(&out));
    let out = assert_exit(&mut verify(&["--full", "--repair"]), 3);
    assert!(
        text(&out).contains("marked for storing again: victim.txt"),
        "{}",
        text(&out)
    );
    let st = common::load(&state);
    assert!(!st.completed.contains_key("victim.txt"));
    assert!(st.completed.contains_key("fine.txt"));
    // The state and the store's catalog agree now: a restore skips nothing silently.
    let to = dir.path().join("before-run");
    assert_exit(
        &mut with_pass(&["restore", "--store", s(&store), "--to", s(&to)]),
        0,
    );
    assert!(!to.join("victim.txt").exists());

    let out = run_vault(&src, &store, &state, "1MiB");
    assert!(text(&out).contains("stored 1 file ("), "{}", text(&out));
    assert_exit(&mut verify(&["--full"]), 0);
    let to = dir.path().join("after-run");
    assert_exit(
        &mut with_pass(&["restore", "--store", s(&store), "--to", s(&to)]),
        0,
    );
    assert_restored(&to, &src, &files);
}

#[test]
fn plain_store_round_trip_and_damage() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    let files: BTreeMap<String, Vec<u8>> = [
        ("a/multi.bin", common::bytes(7, 2500)), // three parts of 1000 bytes
        ("a/b/one.txt", common::bytes(8, 999)),
        ("empty", Vec::new()),
        ("ünïcode name.txt", common::bytes(9, 10)),
    ]
    .into_iter()
    .map(|(p, d)| (p.to_string(), d))
    .collect();
    write_tree(&src, &files);
    assert_exit(
        &mut run_cmd(&src, &store, &state, &["--part-size", "1000", "-q"]),
        0,
    );
    assert_eq!(common::load(&state).completed["a/multi.bin"].parts.len(), 3);
    let restore = |to: &Path| {
        tgferry(&[
            "restore",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--to",
            s(to),
        ])
    };
    let to = dir.path().join("out");
    assert_exit(&mut restore(&to), 0);
    assert_restored(&to, &src, &files);
    let verify = |full: bool| {
        let mut args = vec!["verify", "--store", s(&store), "--state", s(&state)];
        if full {
            args.push("--full");
        }
        tgferry(&args)
    };
    assert_exit(&mut verify(true), 0);

    flip(&store.join("a/multi.bin.002"), |_| 10);
    let to = dir.path().join("damaged");
    let out = assert_exit(&mut restore(&to), 3);
    assert!(
        text(&out).contains("a/multi.bin: part 2 of 3 (a/multi.bin.002)")
            && text(&out).contains("SHA-256"),
        "{}",
        text(&out)
    );
    assert!(!to.join("a/multi.bin").exists());
    assert!(temp_leftovers(&to).is_empty());
    assert_eq!(common::tree(&to).len(), files.len() - 1);
    let out = assert_exit(&mut verify(true), 3);
    assert!(text(&out).contains("a/multi.bin.002"), "{}", text(&out));
    // The flip rewrote the part, so its time changed: the fast check reads it too.
    let out = assert_exit(&mut verify(false), 3);
    assert!(text(&out).contains("a/multi.bin.002"), "{}", text(&out));
    std::fs::remove_file(store.join("a/b/one.txt")).unwrap();
    let out = assert_exit(&mut verify(false), 3);
    assert!(text(&out).contains("a/b/one.txt"), "{}", text(&out));
}

/// The library over the in-memory store: no CLI, no key derivation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_restores_and_verifies_any_store() {
    let dir = common::tempdir();
    let data = common::bytes(11, MIB + 7);
    let files = BTreeMap::from([
        ("big.bin".to_owned(), data.clone()),
        ("dir/small.txt".to_owned(), b"small".to_vec()),
    ]);
    let (store, state, master) = memory_vault(dir.path(), &files).await;

    tgferry::keyring::save_catalog(&store, &master, &state)
        .await
        .unwrap();
    let report = tgferry::restore::verify(&store, &state, Some(&master), &VerifyOptions::full())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.parts, 3);
    let to = dir.path().join("out");
    let opts = RestoreOptions::new(&to);
    let report = tgferry::restore::restore(&store, &state, Some(&master), &opts)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(std::fs::read(to.join("big.bin")).unwrap(), data);
    assert_eq!(std::fs::read(to.join("dir/small.txt")).unwrap(), b"small");
    // Without the key, a vault is not readable.
    assert!(
        tgferry::restore::restore(&store, &state, None, &opts)
            .await
            .is_err()
    );

    // Damage the second part of big.bin.
    let loc = &object_of(&state, "big.bin").parts[1].loc;
    let mut blob = store.get(loc).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    store.set(loc, blob);
    // Files already in place (same size and mtime) are not read again.
    let report = tgferry::restore::restore(&store, &state, Some(&master), &opts)
        .await
        .unwrap();
    assert_eq!((report.skipped.len(), report.failed.len()), (2, 0));
    let to = dir.path().join("out2");
    let report =
        tgferry::restore::restore(&store, &state, Some(&master), &RestoreOptions::new(&to))
            .await
            .unwrap();
    assert_eq!(report.restored, ["dir/small.txt"]);
    assert_eq!(report.failed.len(), 1);
    let msg = &report.failed[0].message;
    assert!(
        msg.starts_with("big.bin: part 2 of 2") && msg.contains("authentication failed"),
        "{msg}"
    );
    assert!(!to.join("big.bin").exists());
    let report = tgferry::restore::verify(&store, &state, Some(&master), &VerifyOptions::full())
        .await
        .unwrap();
    let broken: Vec<&str> = report.broken_paths().into_iter().collect();
    assert_eq!(broken, ["big.bin"]);
    let mut state = state;
    let fixed = tgferry::restore::repair(&mut state, &report);
    assert_eq!(fixed.files, ["big.bin"]);
    assert_eq!(fixed.objects.len(), 1);
    assert!(!state.completed.contains_key("big.bin"));
}

/// A vault state and store (in memory) holding `files`, stored by the library.
async fn memory_vault(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
) -> (
    tgferry::store::memory::MemoryStore,
    State,
    tgferry::vault::MasterKey,
) {
    use tgferry::runner::{Budget, Events, RunConfig, Runner, VaultKeys};
    use tgferry::source::memory::MemorySource;
    use tgferry::state::{Encryption, Job, LoadOptions, StateFile};
    use tgferry::store::memory::MemoryStore;
    use tgferry::vault::MasterKey;

    let src = MemorySource::new();
    for (path, data) in files {
        src.put(path, data.clone());
    }
    let store = MemoryStore::new();
    let job = Job {
        source: "mem:src".into(),
        store: "mem:store".into(),
        encryption: Encryption::Vault,
        vault_id: None,
    };
    let (file, _) = StateFile::open(&dir.join("st.json"), &job, &LoadOptions::default()).unwrap();
    let runner = Runner::new(
        Arc::new(src),
        Arc::new(store.clone()),
        RunConfig {
            part_size: MIB as u64,
            vault: Some(Arc::new(VaultKeys::new(MasterKey::from_bytes([7; 32])))),
            ..RunConfig::default()
        },
        Budget::unlimited(tokio::time::Instant::now()),
        Events::none(),
        tokio_util::sync::CancellationToken::new(),
    );
    let (file, report) = runner.run(file).await.map_err(|(_, e)| e).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (store, file.state().clone(), MasterKey::from_bytes([7; 32]))
}

/// Issue 18 item 3: a folder of `--to` swapped for a link to the outside again and again
/// while restores write into it. Nothing may land outside, and no temp file may stay
/// behind, in the target, the folder moved aside or the outside.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_folder_swapped_for_a_link_during_restores_never_leads_outside() {
    let dir = common::tempdir();
    let mut files = BTreeMap::new();
    for i in 0..10 {
        files.insert(format!("d/f{i:02}"), common::bytes(i, 3000 + i as usize));
    }
    files.insert("d/big".into(), common::bytes(99, 2 * MIB + 5));
    let (store, state, master) = memory_vault(dir.path(), &files).await;
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let (mut escaped, mut left) = (Vec::new(), Vec::new());
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let to = dir.path().join(format!("to{round}"));
        std::fs::create_dir_all(to.join("d")).unwrap();
        let swapper = common::Swapper::start(to.join("d"), outside.clone());
        let mut opts = RestoreOptions::new(&to);
        opts.jobs = 4;
        let report = tgferry::restore::restore(&store, &state, Some(&master), &opts)
            .await
            .unwrap();
        assert!(swapper.stop() > 0, "the swapper never swapped");
        let out = common::files_under(&outside);
        if !out.is_empty() {
            escaped.push((round, out.clone()));
            for f in out {
                std::fs::remove_file(outside.join(f)).unwrap();
            }
        }
        let mut temps = temp_leftovers(&to);
        temps.extend(temp_leftovers(&to.join("d.aside")));
        if !temps.is_empty() {
            left.push((round, temps));
        }
        // Whatever was restored is whole, wherever inside `to` it landed.
        for path in &report.restored {
            let there = [to.join(path), to.join(path.replace("d/", "d.aside/"))];
            let got = there.iter().find_map(|p| std::fs::read(p).ok());
            assert!(got.as_ref() == Some(&files[path]), "{path}: not whole");
        }
    }
    assert!(
        escaped.is_empty(),
        "restored files landed outside the target in {} of {ROUNDS} restores: {escaped:?}",
        escaped.len()
    );
    assert!(
        left.is_empty(),
        "temp files left behind in {} of {ROUNDS} restores: {left:?}",
        left.len()
    );
}

/// A store whose reads of one part never come back (a stalled download).
struct Stalling {
    inner: tgferry::store::memory::MemoryStore,
    stall: String,
}

impl tgferry::store::Store for Stalling {
    type Upload = <tgferry::store::memory::MemoryStore as tgferry::store::Store>::Upload;
    type Reader = <tgferry::store::memory::MemoryStore as tgferry::store::Store>::Reader;
    async fn prepare(&self) -> Result<(), tgferry::store::StoreError> {
        self.inner.prepare().await
    }
    async fn begin(
        &self,
        name: &str,
        len: u64,
    ) -> Result<Self::Upload, tgferry::store::StoreError> {
        self.inner.begin(name, len).await
    }
    async fn open(&self, loc: &str) -> Result<Self::Reader, tgferry::store::StoreError> {
        if loc == self.stall {
            std::future::pending::<()>().await;
        }
        self.inner.open(loc).await
    }
    async fn len(&self, loc: &str) -> Result<Option<u64>, tgferry::store::StoreError> {
        self.inner.len(loc).await
    }
    async fn remove(&self, loc: &str) -> Result<(), tgferry::store::StoreError> {
        self.inner.remove(loc).await
    }
    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), tgferry::store::StoreError> {
        self.inner.put_meta(name, bytes).await
    }
    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, tgferry::store::StoreError> {
        self.inner.get_meta(name).await
    }
    async fn list_parts(
        &self,
        hint: Option<&str>,
    ) -> Result<Vec<tgferry::store::PartInfo>, tgferry::store::StoreError> {
        self.inner.list_parts(hint).await
    }
}

/// Cancelling a restore (what a signal does) while a file is being written removes that
/// file's temp file and starts nothing more; the report says it was interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_restore_leaves_no_temp_file() {
    let dir = common::tempdir();
    let mut files = BTreeMap::new();
    files.insert("a/one".to_string(), b"one".to_vec());
    files.insert("b/stall".to_string(), common::bytes(3, 2 * MIB + 1));
    let (store, state, master) = memory_vault(dir.path(), &files).await;
    // The second part of b/stall never arrives: its temp file is open, half written.
    let stall = object_of(&state, "b/stall").parts[1].loc.clone();
    let store = Stalling {
        inner: store,
        stall,
    };
    let to = dir.path().join("to");
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut opts = RestoreOptions::new(&to);
    opts.cancel = Some(cancel.clone());
    let restore = async { tgferry::restore::restore(&store, &state, Some(&master), &opts).await };
    let watch = async {
        let started = std::time::Instant::now();
        // a/one is restored whole (the files may be restored side by side) and b/stall
        // is half written when the cancel comes.
        while temp_leftovers(&to.join("b")).is_empty() || !to.join("a/one").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no temp file appeared, or a/one was never restored"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
    };
    let (report, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(restore, watch)
    })
    .await
    .expect("the restore stopped when cancelled");
    let report = report.unwrap();
    assert!(report.interrupted && !report.is_success(), "{report:?}");
    assert_eq!(report.restored, ["a/one"]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(temp_leftovers(&to), Vec::<PathBuf>::new());
    assert!(!to.join("b/stall").exists());
}

/// Temp files that a killed restore left behind are removed by the next restore into
/// that folder: those of a process that is gone, or of this process's pid from before (a
/// reused pid); a live process's are left alone.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_files_of_a_killed_restore_are_removed_by_the_next_one() {
    let dir = common::tempdir();
    let mut files = BTreeMap::new();
    files.insert("d/f".to_string(), b"content".to_vec());
    files.insert("top".to_string(), b"top".to_vec());
    let (store, state, master) = memory_vault(dir.path(), &files).await;
    let to = dir.path().join("to");
    std::fs::create_dir_all(to.join("d")).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let planted = [
        format!(".tgferry-restore-{gone_pid}-0a1b2c3d-7"), // its process is gone
        format!(".tgferry-restore-{}-0a1b2c3d-1", std::process::id()), // this pid, earlier
        format!(".tgferry-restore-{gone_pid}-3"),          // the older form
    ];
    for name in &planted {
        std::fs::write(to.join("d").join(name), b"half a file").unwrap();
    }
    // A restore still running (pid 1 always runs) and a file that only looks like one.
    let live = to.join("d/.tgferry-restore-1-00000000-5");
    std::fs::write(&live, b"in use").unwrap();
    std::fs::write(to.join("d/.tgferry-restore-notes"), b"mine").unwrap();
    let report =
        tgferry::restore::restore(&store, &state, Some(&master), &RestoreOptions::new(&to))
            .await
            .unwrap();
    assert!(report.is_success(), "{report:?}");
    let mut removed = report.stale_temps.clone();
    removed.sort();
    let mut want: Vec<String> = planted.iter().map(|n| format!("d/{n}")).collect();
    want.sort();
    assert_eq!(removed, want);
    for name in &planted {
        assert!(!to.join("d").join(name).exists(), "{name}");
    }
    assert!(live.exists());
    assert!(to.join("d/.tgferry-restore-notes").exists());
    assert_eq!(std::fs::read(to.join("d/f")).unwrap(), b"content");
}

/// Every file under `root` by its exact name bytes (links and the store's own folder
/// left out).
#[cfg(unix)]
fn tree_bytes(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeMap::new();
    for rel in common::files_under(root) {
        let full = root.join(&rel);
        let bytes = rel.as_os_str().as_bytes().to_vec();
        if bytes.starts_with(b".tgferry") || full.symlink_metadata().unwrap().is_symlink() {
            continue;
        }
        out.insert(bytes, std::fs::read(full).unwrap());
    }
    out
}

/// Issue 18 item 7: names holding a backslash or bytes that are not UTF-8 are stored
/// under exact keys (a name that looks like an escape does not collide with the escape),
/// shown as 100% done, and restored byte for byte, in both formats; names that could
/// drive a terminal or a GitHub log are printed escaped.
#[cfg(unix)]
#[test]
fn odd_names_are_stored_and_restored_exactly_and_printed_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = common::tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let wanted: &[&[u8]] = &[
        b"a\\b.txt",
        b"caf\xe9.txt",
        b"caf\\xe9.txt",
        b"\xff\xfe",
        b"dir\xe9/inner \\ name",
        b"line\nbreak::error::x",
        b"esc\x1b[31mred",
        b"##[warning]legacy",
        b"  ::notice::lead",
        b"plain.txt",
    ];
    let mut names = Vec::new();
    for &name in wanted {
        let full = src.join(std::ffi::OsStr::from_bytes(name));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        // Some file systems (APFS) take only UTF-8 names: leave those cases out there.
        match std::fs::write(&full, [name, b" content"].concat()) {
            Ok(()) => names.push(name),
            Err(e) => eprintln!("{}: {e}: not tested here", String::from_utf8_lossy(name)),
        }
    }
    let link = b"link\n::error::pwned\x1b[2J";
    std::os::unix::fs::symlink("plain.txt", src.join(std::ffi::OsStr::from_bytes(link))).unwrap();
    let expected = tree_bytes(&src);
    assert_eq!(expected.len(), names.len());

    let hostile = |text: &str| {
        for line in text.lines() {
            assert!(!line.trim_start().starts_with("::"), "a command: {line:?}");
            assert!(!line.contains("##["), "a legacy command: {line:?}");
            assert!(!line.contains('\x1b'), "a terminal escape: {line:?}");
        }
    };
    for mode in ["vault", "none"] {
        let (store, state, to) = (
            dir.path().join(format!("store-{mode}")),
            dir.path().join(format!("{mode}.json")),
            dir.path().join(format!("to-{mode}")),
        );
        let out = assert_exit(
            &mut with_pass(&[
                "run",
                "--source",
                s(&src),
                "--store",
                s(&store),
                "--state",
                s(&state),
                "--encryption",
                mode,
            ]),
            0,
        );
        let printed = text(&out);
        hostile(&printed);
        assert!(
            printed.contains("skipped: link\\x0a::error::pwned\\x1b[2J"),
            "{printed}"
        );
        let st = common::load(&state);
        let keys: Vec<&str> = st.completed.keys().map(String::as_str).collect();
        let mut want: Vec<String> = names
            .iter()
            .map(|n| tgferry::source::key::encode(n))
            .collect();
        want.sort();
        assert_eq!(keys, want, "{mode}");
        assert!(st.failed.is_empty(), "{:?}", st.failed);
        // The state stays JSON that jq reads, the keys text that says what they stand for.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert!(
            json["completed"].get("caf\\xe9.txt").is_some()
                || !names.contains(&&b"caf\xe9.txt"[..])
        );
        assert!(json["completed"].get("a\\\\b.txt").is_some());

        let out = assert_exit(&mut tgferry(&["status", s(&state)]), 0);
        let shown = text(&out);
        hostile(&shown);
        assert!(shown.contains("progress: 100.0%"), "{shown}");
        assert!(
            shown.contains(&format!("completed    {:>8} files", names.len())),
            "{shown}"
        );

        if mode == "none" {
            // A plain store keeps readable copies under the exact names.
            assert_eq!(tree_bytes(&store), expected);
        }
        let out = assert_exit(
            &mut with_pass(&[
                "restore",
                "--store",
                s(&store),
                "--state",
                s(&state),
                "--to",
                s(&to),
            ]),
            0,
        );
        hostile(&text(&out));
        assert_eq!(
            tree_bytes(&to),
            expected,
            "{mode}: restored names and bytes"
        );
    }

    // Failures with such names are printed escaped by status too.
    let state = dir.path().join("none.json");
    let mut st = common::load(&state);
    let failed = tgferry::state::Failed {
        attempts: 3,
        tries: 3,
        last_error: "line\nbreak::error::x: cannot be read\n::error::again".into(),
        kind: tgferry::state::FailureKind::Permanent,
        first_failed: st.last_updated,
        last_failed: st.last_updated,
        given_up: true,
    };
    st.failed
        .insert("##[warning]legacy\n::error::x".into(), failed);
    std::fs::write(&state, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    let out = assert_exit(&mut tgferry(&["status", s(&state)]), 0);
    let shown = text(&out);
    hostile(&shown);
    assert!(
        shown.contains("##\\x5bwarning]legacy\\x0a::error::x [given up]"),
        "{shown}"
    );
}

/// A plain store and a state of `n` files that all point at one stored part, so a restore
/// has many files to write, cheaply; returns the store and the state.
fn many_files_state(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let (src, store, state) = common::job_paths(dir);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("one.bin"), common::bytes(5, 64 << 10)).unwrap();
    assert_exit(&mut run_cmd(&src, &store, &state, &["-q"]), 0);
    let mut st = common::load(&state);
    let one = st.completed.remove("one.bin").unwrap();
    for i in 0..n {
        st.completed.insert(format!("many/f{i:04}"), one.clone());
    }
    let many = dir.join("many.json");
    std::fs::write(&many, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    (store, many)
}

/// Waits (bounded) until `found` says yes.
fn wait_for(what: &str, mut found: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !found() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGINT and SIGTERM stop a restore within 2 s, exit 130, and leave no temp file.
#[cfg(unix)]
#[test]
fn a_signal_stops_a_restore_promptly_without_temp_files() {
    use std::process::Stdio;
    let dir = common::tempdir();
    let (store, state) = many_files_state(dir.path(), 2000);
    for signal in ["-INT", "-TERM"] {
        let to = dir.path().join(format!("to{signal}"));
        let mut child = tgferry(&[
            "restore",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--to",
            s(&to),
            "--jobs",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for("a restored file", || to.join("many/f0000").exists());
        let sent = std::time::Instant::now();
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        wait_for("the exit", || child.try_wait().unwrap().is_some());
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "{signal}: slow to stop"
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "{signal}: {}", text(&out));
        assert!(text(&out).contains("interrupted"), "{}", text(&out));
        assert_eq!(temp_leftovers(&to), Vec::<PathBuf>::new(), "{signal}");
        let restored = common::files_under(&to.join("many")).len();
        assert!(
            restored < 2000,
            "{signal}: the restore finished before the signal"
        );
    }
}

/// A restore killed outright (SIGKILL) cannot clean up; the next restore into the same
/// folder removes its temp files and says so.
#[cfg(unix)]
#[test]
fn the_next_restore_removes_what_a_killed_one_left() {
    use std::process::Stdio;
    let dir = common::tempdir();
    let (store, state) = many_files_state(dir.path(), 2000);
    let to = dir.path().join("to");
    let mut left = Vec::new();
    for _ in 0..20 {
        let mut child = tgferry(&[
            "restore",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--to",
            s(&to),
            "--overwrite",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        wait_for("a temp file", || !temp_leftovers(&to).is_empty());
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        left = temp_leftovers(&to);
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "no kill landed while a temp file existed");
    let out = assert_exit(
        &mut tgferry(&[
            "restore",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--to",
            s(&to),
            "--overwrite",
            "many/f000*",
        ]),
        0,
    );
    assert_eq!(temp_leftovers(&to), Vec::<PathBuf>::new());
    let said = text(&out);
    assert!(
        said.contains("temp file(s) that a restore killed earlier left behind"),
        "{said}"
    );
}

/// Damage inside a pack fails the objects whose ranges it touches and no other: a flipped
/// byte in one object fails that file alone; a pack cut short fails the objects past the
/// cut. Restore and `verify --full` name exactly those; the rest of the pack restores.
#[test]
fn damage_inside_a_pack_fails_only_the_objects_it_touches() {
    let dir = common::tempdir();
    let (src, store, state) = (
        dir.path().join("src"),
        dir.path().join("store"),
        dir.path().join("st.json"),
    );
    let files: BTreeMap<String, Vec<u8>> = (0..6u64)
        .map(|i| {
            (
                format!("p/{i}.jpg"),
                common::bytes(40 + i, 3_000 + i as usize * 500),
            )
        })
        .chain([("p/empty".to_string(), Vec::new())])
        .collect();
    write_tree(&src, &files);
    run_vault(&src, &store, &state, "1MiB");
    let st = common::load(&state);
    let pack = &object_of(&st, "p/0.jpg").parts[0].loc;
    for path in files.keys() {
        let part = &object_of(&st, path).parts[0];
        assert_eq!(&part.loc, pack, "{path} is in the one pack");
        assert!(part.offset.is_some());
    }
    let range = |path: &str| {
        let p = &object_of(&st, path).parts[0];
        let start = p.offset.unwrap() as usize;
        (start, start + p.len as usize)
    };
    // (name, damage, the files it breaks)
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Damage<'_>, Vec<String>)> = vec![
        (
            "a byte of one object's segment",
            Box::new(|copy: &Path| flip(&copy.join(pack), |_| range("p/3.jpg").0 + 48 + 100)),
            vec!["p/3.jpg".into()],
        ),
        (
            "the pack cut inside its last object",
            Box::new(|copy: &Path| {
                let path = copy.join(pack);
                let b = std::fs::read(&path).unwrap();
                std::fs::write(&path, &b[..b.len() - 10]).unwrap();
            }),
            {
                let last = files.keys().max_by_key(|p| range(p).1).unwrap();
                vec![last.clone()]
            },
        ),
    ];
    for (i, (name, damage, broken)) in cases.into_iter().enumerate() {
        let copy = dir.path().join(format!("copy-{i}"));
        copy_dir(&store, &copy);
        damage(&copy);
        let to = dir.path().join(format!("out-{i}"));
        let out = assert_exit(
            &mut with_pass(&[
                "restore",
                "--store",
                s(&copy),
                "--state",
                s(&state),
                "--to",
                s(&to),
            ]),
            3,
        );
        let msg = text(&out);
        let mut expected = files.clone();
        for b in &broken {
            assert!(msg.contains(b.as_str()), "{name}: {b} not named:\n{msg}");
            assert!(!to.join(b).exists(), "{name}: {b} was created");
            expected.remove(b);
        }
        assert_restored(&to, &src, &expected);
        let out = with_pass(&[
            "verify",
            "--store",
            s(&copy),
            "--state",
            s(&state),
            "--full",
        ])
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(3), "{name}: {}", text(&out));
        for path in files.keys() {
            let named = text(&out).lines().any(|l| l.contains(path.as_str()));
            assert_eq!(
                named,
                broken.contains(path),
                "{name}: {path} in\n{}",
                text(&out)
            );
        }
    }
}
