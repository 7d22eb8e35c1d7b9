//! What `restore` gives back besides content: permission bits, empty folders and folder
//! modification times, recorded by a run in the state and the vault's catalog.

mod common;

#[cfg(unix)]
#[test]
fn restore_gives_back_permissions_empty_folders_and_folder_times() {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use common::{assert_exit, run_cmd, s, tgferry};

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let set_mtime = |p: &Path, t| std::fs::File::open(p).unwrap().set_modified(t).unwrap();
    let dir = common::tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::create_dir_all(src.join("empty/inner")).unwrap();
    std::fs::create_dir_all(src.join("private")).unwrap();
    std::fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    std::fs::write(src.join("private/notes"), b"n").unwrap();
    std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(
        src.join("private/notes"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(src.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        src.join("empty/inner"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    for d in ["bin", "empty", "empty/inner", "private"] {
        set_mtime(&src.join(d), old);
    }
    for (name, vault) in [("plain", false), ("vault", true)] {
        let store = dir.path().join(format!("{name}-store"));
        let state = dir.path().join(format!("{name}.json"));
        let mut run = run_cmd(&src, &store, &state, &["-q"]);
        if vault {
            run.env("TGFERRY_ENCRYPTION", "vault")
                .env("TGFERRY_PASSPHRASE", "p");
        }
        assert_exit(&mut run, 0);
        let to = dir.path().join(format!("{name}-restored"));
        // The vault restores from its catalog (passphrase only), plain from the state.
        let mut restore = if vault {
            let mut c = tgferry(&["restore", "--store", s(&store), "--to", s(&to)]);
            c.env("TGFERRY_PASSPHRASE", "p");
            c
        } else {
            tgferry(&[
                "restore",
                "--store",
                s(&store),
                "--to",
                s(&to),
                "--state",
                s(&state),
            ])
        };
        let out = assert_exit(&mut restore, 0);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(mode(&to.join("bin/tool")), 0o750, "{name}: {said}");
        assert_eq!(mode(&to.join("private/notes")), 0o600, "{name}");
        assert_eq!(mode(&to.join("private")), 0o700, "{name}");
        assert!(
            to.join("empty/inner").is_dir(),
            "{name}: empty folders come back"
        );
        assert_eq!(mode(&to.join("empty/inner")), 0o751, "{name}");
        for d in ["bin", "empty", "empty/inner", "private"] {
            assert_eq!(mtime(&to.join(d)), old, "{name}: {d}'s time");
        }
    }
}

/// Set-user-id and friends are never set from a state (which may come from anywhere).
#[cfg(unix)]
#[test]
fn a_state_cannot_make_a_restored_file_set_user_id() {
    use std::os::unix::fs::PermissionsExt;

    use common::{assert_exit, run_cmd, s, tgferry};

    let dir = common::tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let (store, state) = (dir.path().join("store"), dir.path().join("state.json"));
    assert_exit(&mut run_cmd(&src, &store, &state, &["-q"]), 0);
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    st["meta"]["modes"]["f"] = 0o4777.into();
    std::fs::write(&state, serde_json::to_vec(&st).unwrap()).unwrap();
    let to = dir.path().join("to");
    let mut restore = tgferry(&[
        "restore",
        "--store",
        s(&store),
        "--to",
        s(&to),
        "--state",
        s(&state),
    ]);
    assert_exit(&mut restore, 0);
    let mode = std::fs::metadata(to.join("f"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o777);
}
