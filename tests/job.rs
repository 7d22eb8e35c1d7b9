//! A job's life through the binary: where its state comes from when the file is gone (the
//! store's catalog, or a new state with `--fresh-state`), and folders that must not
//! overlap (a store that is, holds or lies inside its source; a restore into the store).

mod common;

use std::path::Path;

use common::{assert_exit, run_cmd, s, tgferry};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The part blobs of a local vault store.
fn vault_parts(store: &Path) -> usize {
    common::tree(store)
        .keys()
        .filter(|p| p.starts_with("data/"))
        .count()
}

fn vault_run(src: &Path, store: &Path, state: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec!["--encryption", "vault", "--part-size", "1MiB", "-q"];
    args.extend_from_slice(extra);
    let mut cmd = run_cmd(src, store, state, &args);
    cmd.env("TGFERRY_PASSPHRASE", "pass");
    cmd
}

#[test]
fn a_lost_state_starts_from_the_stores_catalog_and_stores_nothing_again() {
    let dir = common::tempdir();
    let (src, store, state) = common::job_paths(dir.path());
    let files = common::corpus(&src, 1 << 20);
    assert_exit(&mut vault_run(&src, &store, &state, &[]), 0);
    let parts = vault_parts(&store);
    let before = common::load(&state);
    assert_eq!(before.completed.len(), files.len());

    // The state is gone (a new runner, an expired artifact, a deleted file).
    std::fs::remove_file(&state).unwrap();
    let out = assert_exit(&mut vault_run(&src, &store, &state, &[]), 0);
    let said = text(&out);
    assert!(said.contains("starting from the catalog"), "{said}");
    assert!(!said.contains("starting a new one"), "{said}");
    assert_eq!(vault_parts(&store), parts, "something was stored again");
    let after = common::load(&state);
    assert_eq!(
        after.completed.keys().collect::<Vec<_>>(),
        before.completed.keys().collect::<Vec<_>>()
    );
    assert_eq!(after.job.vault_id, before.job.vault_id);
    assert_eq!(after.stats.total_uploaded, before.stats.total_uploaded);

    // A catalog of another source is not adopted without --force.
    std::fs::remove_file(&state).unwrap();
    let moved = dir.path().join("moved-src");
    std::fs::rename(&src, &moved).unwrap();
    let out = assert_exit(&mut vault_run(&moved, &store, &state, &[]), 6);
    assert!(text(&out).contains("--fresh-state"), "{}", text(&out));
    assert!(!state.exists(), "a refused run wrote a state");
    assert_exit(&mut vault_run(&moved, &store, &state, &["--force"]), 0);
    assert_eq!(vault_parts(&store), parts, "--force stored something again");

    // --fresh-state opts out: a new state, and everything is stored again.
    std::fs::remove_file(&state).unwrap();
    let out = assert_exit(
        &mut vault_run(&moved, &store, &state, &["--fresh-state"]),
        0,
    );
    assert!(text(&out).contains("starting a new one"), "{}", text(&out));
    assert!(vault_parts(&store) > parts);
}

#[test]
fn a_store_that_is_or_holds_its_source_is_refused_before_anything_is_written() {
    let dir = common::tempdir();
    let src = dir.path().join("src");
    let files = common::corpus(&src, 64 << 10);
    let outer = dir.path().join("outer");
    let inner = outer.join("photos");
    common::corpus(&inner, 64 << 10);
    let cases: Vec<(&Path, std::path::PathBuf, &str)> = vec![
        (&src, src.clone(), "is the same folder as"),
        (&src, src.join("a/.."), "is the same folder as"),
        (&inner, outer.clone(), "contains"),
    ];
    for (source, store, says) in cases {
        for encryption in ["none", "vault"] {
            let before = common::tree(source);
            let state = dir.path().join("state.json");
            let mut cmd = run_cmd(
                source,
                &store,
                &state,
                &["--encryption", encryption, "--part-size", "1MiB"],
            );
            cmd.env("TGFERRY_PASSPHRASE", "pass");
            let out = assert_exit(&mut cmd, 2);
            assert!(text(&out).contains(says), "{}", text(&out));
            assert_eq!(common::tree(source), before, "the source changed");
            assert!(!store.join(".tgferry").exists(), "the store was touched");
            assert!(!state.exists());
        }
    }
    assert_eq!(common::tree(&src), files);
}

#[cfg(unix)] // symbolic links
#[test]
fn a_store_reached_through_a_link_to_its_source_is_the_same_folder() {
    let dir = common::tempdir();
    let src = dir.path().join("src");
    common::corpus(&src, 64 << 10);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let before = common::tree(&src);
    let out = assert_exit(
        &mut run_cmd(&src, &link, dir.path().join("st.json"), &[]),
        2,
    );
    assert!(text(&out).contains("same folder"), "{}", text(&out));
    assert_eq!(common::tree(&src), before);
}

#[test]
fn a_store_inside_its_source_is_left_out_of_what_is_stored() {
    let dir = common::tempdir();
    let src = dir.path().join("src");
    let files = common::corpus(&src, 64 << 10);
    let store = src.join("backup/store");
    let state = dir.path().join("state.json");
    for encryption in ["none", "vault"] {
        let _ = std::fs::remove_file(&state);
        let _ = std::fs::remove_dir_all(&store);
        let mut cmd = run_cmd(
            &src,
            &store,
            &state,
            &["--encryption", encryption, "--part-size", "1MiB"],
        );
        cmd.env("TGFERRY_PASSPHRASE", "pass");
        let out = assert_exit(&mut cmd, 0);
        assert!(text(&out).contains("left out"), "{}", text(&out));
        let st = common::load(&state);
        assert!(
            st.completed.keys().all(|p| !p.starts_with("backup/")),
            "the store was stored into itself"
        );
        assert_eq!(st.completed.len(), files.len());
        // A second run finds nothing to do: the store's new files are not new work.
        let mut again = run_cmd(
            &src,
            &store,
            &state,
            &["--encryption", encryption, "--part-size", "1MiB"],
        );
        again.env("TGFERRY_PASSPHRASE", "pass");
        let out = assert_exit(&mut again, 0);
        assert!(
            text(&out).contains("nothing to do") || text(&out).contains("nothing changed"),
            "{}",
            text(&out)
        );
        assert_eq!(common::load(&state).completed.len(), files.len());
    }
}

#[test]
fn a_restore_into_its_own_store_is_refused() {
    let dir = common::tempdir();
    let (src, store, state) = common::job_paths(dir.path());
    common::corpus(&src, 64 << 10);
    assert_exit(&mut vault_run(&src, &store, &state, &[]), 0);
    let before = common::tree(&store);
    for to in [store.clone(), store.join("restored"), store.join("data/..")] {
        let mut cmd = tgferry(&["restore", "--store", s(&store), "--to", s(&to)]);
        cmd.env("TGFERRY_PASSPHRASE", "pass");
        let out = assert_exit(&mut cmd, 2);
        assert!(text(&out).contains("inside the store"), "{}", text(&out));
        assert_eq!(common::tree(&store), before, "the store changed");
    }
}
