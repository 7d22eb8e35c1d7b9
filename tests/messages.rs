//! What the binary says and how it exits, from a table: each case sets up a folder, runs
//! one command in it and checks the exit code (README's table), what the output must and
//! must never say, and what must not be left on disk.

mod common;

use std::path::Path;

use common::{assert_exit, tgferry};

/// Passphrase of every vault here.
const PASS: &str = "p";

/// One command and what it must do (built with [`run`], [`run_from`] or [`cmd`]).
struct Case {
    name: &'static str,
    /// Prepares the case's folder (which always holds `src/` with two files).
    setup: fn(&Path),
    /// The command line; `{dir}` is the case's folder (the working directory).
    args: Vec<&'static str>,
    env: &'static [(&'static str, &'static str)],
    code: i32,
    /// Each must appear in stdout or stderr.
    says: &'static [&'static str],
    /// None may appear.
    never: &'static [&'static str],
    /// Paths (relative to the folder) that must not exist afterwards.
    absent: &'static [&'static str],
}

/// `args` as typed, in an untouched folder, exiting 0, with nothing to check yet.
fn cmd(name: &'static str, args: &[&'static str]) -> Case {
    Case {
        name,
        setup: nothing,
        args: args.to_vec(),
        env: &[],
        code: 0,
        says: &[],
        never: &[],
        absent: &[],
    }
}

/// `run` from `source` into `store` with `state.json`.
fn run_from(name: &'static str, source: &'static str, store: &'static str) -> Case {
    cmd(
        name,
        &[
            "run",
            "--source",
            source,
            "--store",
            store,
            "--state",
            "state.json",
        ],
    )
}

/// [`RUN`] and `extra` flags.
fn run(name: &'static str, extra: &[&'static str]) -> Case {
    let mut case = cmd(name, RUN);
    case.args.extend_from_slice(extra);
    case
}

impl Case {
    fn setup(self, setup: fn(&Path)) -> Self {
        Case { setup, ..self }
    }
    fn env(self, env: &'static [(&'static str, &'static str)]) -> Self {
        Case { env, ..self }
    }
    fn code(self, code: i32) -> Self {
        Case { code, ..self }
    }
    fn says(self, says: &'static [&'static str]) -> Self {
        Case { says, ..self }
    }
    fn never(self, never: &'static [&'static str]) -> Self {
        Case { never, ..self }
    }
    fn absent(self, absent: &'static [&'static str]) -> Self {
        Case { absent, ..self }
    }
}

fn nothing(_: &Path) {}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tgferry(args);
    cmd.current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v.replace("{dir}", dir.to_str().unwrap()));
    }
    cmd.output().unwrap()
}

fn setup_run(dir: &Path, extra: &[&str], pass: bool) {
    let mut args = vec![
        "run",
        "--source",
        "src",
        "--store",
        "store",
        "--state",
        "state.json",
        "-q",
    ];
    args.extend_from_slice(extra);
    let env: &[(&str, &str)] = if pass {
        &[("TGFERRY_PASSPHRASE", PASS)]
    } else {
        &[]
    };
    let out = run_in(dir, &args, env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

fn vault_run(dir: &Path) {
    setup_run(dir, &["--encryption", "vault"], true);
}

fn sealed_run(dir: &Path) {
    setup_run(dir, &["--encryption", "vault", "--encrypt-state"], true);
}

fn plain_run(dir: &Path) {
    setup_run(dir, &[], false);
}

fn plain_run_then_store_deleted(dir: &Path) {
    plain_run(dir);
    std::fs::remove_dir_all(dir.join("store")).unwrap();
}

fn a_file(dir: &Path) {
    std::fs::write(dir.join("afile"), b"not a folder").unwrap();
}

/// A vault run restored into `out`, then a restored file changed there.
fn restored_then_changed(dir: &Path) {
    vault_run(dir);
    let out = run_in(
        dir,
        &["restore", "--store", "store", "--to", "out"],
        &[("TGFERRY_PASSPHRASE", PASS)],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::write(dir.join("out/one.txt"), b"changed").unwrap();
}

fn an_empty_store(dir: &Path) {
    std::fs::create_dir(dir.join("store")).unwrap();
}

fn an_empty_folder(dir: &Path) {
    std::fs::create_dir(dir.join("empty")).unwrap();
}

/// A state written by an earlier tgferry, which recorded the source and the store as
/// typed (relative) instead of canonical.
fn plain_run_recorded_as_typed(dir: &Path) {
    plain_run(dir);
    let path = dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["job"]["source"] = "src".into();
    state["job"]["store"] = "./store/".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
}

const VAULT: &[(&str, &str)] = &[
    ("TGFERRY_PASSPHRASE", PASS),
    ("TGFERRY_ENCRYPTION", "vault"),
];
/// A vault job over an rclone source, with a config of its own (no remote in it).
const RCLONE_VAULT: &[(&str, &str)] = &[
    ("TGFERRY_PASSPHRASE", PASS),
    ("TGFERRY_ENCRYPTION", "vault"),
    ("RCLONE_CONFIG", "{dir}/rclone.conf"),
];
const RUN: &[&str] = &[
    "run",
    "--source",
    "src",
    "--store",
    "store",
    "--state",
    "state.json",
];

fn cases() -> Vec<Case> {
    vec![
        run_from("a mistyped source is reported before a vault, store or state is created", "srx", "store")
            .env(VAULT)
            .code(8)
            .says(&["source srx: does not exist; check --source"])
            .never(&["created a new vault"])
            .absent(&["store", "state.json", "state.json.lock"]),
        run_from(
            "an rclone remote that is not configured is reported before a vault or store is created",
            "rclone:nosuchremote:photos",
            "store",
        )
        .env(RCLONE_VAULT)
        .code(8)
        .says(&["rclone:nosuchremote:photos", "\"nosuchremote\" is not configured"])
        .never(&["created a new vault"])
        .absent(&["store", "state.json", "state.json.lock"]),
        run_from(
            "an rclone path that does not exist leaves an existing store without a vault",
            "rclone::local:{dir}/srx",
            "store",
        )
        .setup(an_empty_store)
        .env(RCLONE_VAULT)
        .code(8)
        .says(&["srx: does not exist on the remote", "check the path"])
        .never(&["created a new vault"])
        .absent(&["store/.tgferry", "state.json", "state.json.lock"]),
        run("--budget 5M is ambiguous", &["--budget", "5M"])
            .code(2)
            .says(&["--budget \"5M\" is ambiguous", "5min"])
            .absent(&["store", "state.json.lock"]),
        run("--budget 5m is five minutes", &["--budget", "5m"])
            .says(&["done: everything in the source is stored"])
            .never(&["ambiguous"]),
        run("a bad value from the environment names its variable (tgferry's check)", &[])
            .env(&[("TGFERRY_BUDGET", "5x")])
            .code(2)
            .says(&["--budget (set by TGFERRY_BUDGET) \"5x\" is not a duration"])
            .absent(&["state.json.lock"]),
        run("a bad value from the environment names its variable (clap's check)", &[])
            .env(&[("TGFERRY_JOBS", "four")])
            .code(2)
            .says(&[
                "'--jobs <N>'",
                "the value comes from the environment variable TGFERRY_JOBS",
            ]),
        run("a value typed on the command line is not blamed on the environment", &["--jobs", "four"])
            .env(&[("TGFERRY_JOBS", "four")])
            .code(2)
            .says(&["'--jobs <N>'"])
            .never(&["TGFERRY_JOBS"]),
        run("a --deadline already past says so", &["--deadline", "2020-01-01T00:00:00Z"])
            .code(2)
            .says(&["--deadline \"2020-01-01T00:00:00Z\" is already past"])
            .absent(&["store", "state.json.lock"]),
        run_from("a store path that is a file", "src", "afile")
            .setup(a_file)
            .code(9)
            .says(&["--store afile is a file, not a folder"])
            .never(&["os error"])
            .absent(&["state.json", "state.json.lock"]),
        cmd("restore from a store without a vault exits 10", &["restore", "--store", "empty", "--to", "out"])
            .setup(an_empty_folder)
            .env(VAULT)
            .code(10)
            .says(&["has no vault key file"])
            .absent(&["out"]),
        cmd("restore says what it gave back", &["restore", "--store", "store", "--to", "out"])
            .setup(vault_run)
            .env(VAULT)
            .says(&[
                "restored 2 files (7 B) and 1 folder (with their permissions and times) into out in ",
            ]),
        cmd(
            "restoring over a changed file hints at --overwrite, not at damage",
            &["restore", "--store", "store", "--to", "out"],
        )
        .setup(restored_then_changed)
        .env(VAULT)
        .code(3)
        .says(&[
            "one.txt: a different file",
            "1 failed (see the errors above; --overwrite replaces files in the way)",
        ])
        .never(&["verify --full"]),
        cmd("init on a store that has a vault exits 10", &["init", "--store", "store"])
            .setup(vault_run)
            .env(VAULT)
            .code(10)
            .says(&["already has a vault"]),
        cmd("restore from a deleted store", &["restore", "--store", "gone", "--to", "out"])
            .env(VAULT)
            .code(9)
            .says(&["store gone does not exist: was it deleted or moved?"])
            .never(&["os error"])
            .absent(&["out", "gone"]),
        run("a run whose store was deleted does not start an empty one", &[])
            .setup(plain_run_then_store_deleted)
            .code(9)
            .says(&[
                "store",
                "does not exist, but the state state.json records 2 files stored in it",
            ])
            .absent(&["store"]),
        cmd("verify without a passphrase: why it needs one", &["verify", "--store", "store"])
            .setup(vault_run)
            .code(10)
            .says(&["needs a passphrase", "encrypted catalog"])
            .never(&["--encryption none` stores"]),
        run("run without a passphrase: the way around it", &[])
            .env(&[("TGFERRY_ENCRYPTION", "vault")])
            .code(10)
            .says(&[
                "needs a passphrase",
                "`--encryption none` stores plain copies",
            ])
            .absent(&["store", "state.json", "state.json.lock"]),
        cmd("status of a sealed state without the passphrase", &["status", "state.json.sealed"])
            .setup(sealed_run)
            .code(10)
            .says(&["needs a passphrase", "the state is sealed"])
            .never(&["--encryption none"]),
        cmd(
            "a restore pattern that matches nothing is no damage",
            &["restore", "--store", "store", "--to", "out", "nomatch/**"],
        )
        .setup(vault_run)
        .env(VAULT)
        .code(3)
        .says(&["no stored file matches", "1 pattern matched nothing"])
        .never(&["verify --full", "1 failed"]),
        run("a filter that matches nothing on a first run warns", &["--include", "*.nothing"])
            .says(&["warning: --include/--exclude match none of the 2 files in the source"])
            .never(&["since the last run", "everything in the source is stored"]),
        cmd(
            "plurals and no colour in a pipe",
            &[
                "-v",
                "run",
                "--source",
                "src",
                "--store",
                "store",
                "--state",
                "state.json",
                "--include",
                "one.txt",
            ],
        )
        .says(&[
            "stored 1 file (1 part, 3 B in the store) in ",
            "1 file (3 B) in the source",
        ])
        .never(&["1 files", "1 parts", "\x1b["]),
        run_from("the same folder by another path is the same job", "./src/", "{dir}/store")
            .setup(plain_run)
            .says(&["nothing to do: every file in the source is stored already"])
            .never(&["belongs to another job"]),
        run_from("a state that recorded the paths as typed is still this job's", "{dir}/src", "store")
            .setup(plain_run_recorded_as_typed)
            .says(&["nothing to do"])
            .never(&["belongs to another job"]),
        run_from("another folder is still another job", "src/sub", "store")
            .setup(plain_run)
            .code(6)
            .says(&["belongs to another job"]),
        run("inside GitHub Actions, a store in the runner's temporary folder is warned about", &[])
            .env(&[("GITHUB_ACTIONS", "true"), ("RUNNER_TEMP", "{dir}")])
            .says(&[
                "::warning title=tgferry%3A the store disappears after the job::the store ",
                "lies in the runner's $RUNNER_TEMP, which disappears after the job",
            ]),
        run("outside GitHub Actions, no such warning", &[])
            .env(&[("RUNNER_TEMP", "{dir}")])
            .never(&["disappears after the job"]),
        run("TGFERRY_QUIET=1", &[])
            .env(&[("TGFERRY_QUIET", "1")])
            .never(&["already stored ("]),
        run("TGFERRY_QUIET=yes", &[])
            .env(&[("TGFERRY_QUIET", "yes")])
            .never(&["already stored ("]),
        run("TGFERRY_QUIET=true", &[])
            .env(&[("TGFERRY_QUIET", "true")])
            .never(&["already stored ("]),
        run("TGFERRY_QUIET=0", &[])
            .env(&[("TGFERRY_QUIET", "0")])
            .says(&["already stored ("]),
        run("TGFERRY_QUIET=no", &[])
            .env(&[("TGFERRY_QUIET", "no")])
            .says(&["already stored ("]),
        run("TGFERRY_FORCE=false", &[]).env(&[("TGFERRY_FORCE", "false")]),
        run("TGFERRY_QUIET=maybe", &[])
            .env(&[("TGFERRY_QUIET", "maybe")])
            .code(2)
            .says(&["TGFERRY_QUIET"])
            .absent(&["store"]),
    ]
}

#[test]
fn messages_and_exit_codes() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = common::tempdir();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::write(root.join("src/one.txt"), b"one").unwrap();
        std::fs::write(root.join("src/two.txt"), b"two!").unwrap();
        (case.setup)(&root);
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| a.replace("{dir}", root.to_str().unwrap()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_in(&root, &args, case.env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut wrong = Vec::new();
        if out.status.code() != Some(case.code) {
            wrong.push(format!("exit {:?}, not {}", out.status.code(), case.code));
        }
        for s in case.says {
            if !text.contains(s) {
                wrong.push(format!("does not say {s:?}"));
            }
        }
        for s in case.never {
            if text.contains(s) {
                wrong.push(format!("says {s:?}"));
            }
        }
        for p in case.absent {
            if root.join(p).exists() {
                wrong.push(format!("left {p}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}\n{text}", case.name, wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The duration a run prints is the one `status` and the job summary show.
#[test]
fn one_duration_per_run() {
    let dir = common::tempdir();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/a"), b"a").unwrap();
    let summary = root.join("summary.md");
    let mut cmd = tgferry(RUN);
    cmd.current_dir(root)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary);
    let out = assert_exit(&mut cmd, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let took = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("stored ")?
                .rsplit_once(" in ")
                .map(|(_, d)| d)
        })
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains(&format!("| took | {took} |")), "{took}\n{md}");
    let mut status = tgferry(&["status", "state.json"]);
    status.current_dir(root);
    let shown = String::from_utf8_lossy(&assert_exit(&mut status, 0).stdout).into_owned();
    let line = shown
        .lines()
        .find(|l| l.contains(" complete "))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(line.contains(&format!(" {took} ")), "{took}\n{shown}");
    // Times in one form: RFC 3339 at whole seconds.
    assert!(
        line.split_whitespace()
            .next()
            .is_some_and(|t| t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T'),
        "{line}"
    );
    assert!(shown.contains("1 file "), "{shown}");
}

/// A refused run whose state never existed leaves no `<state>.lock`; one with a state
/// keeps it (it marks the state's place for the next run).
#[test]
fn a_refused_run_leaves_no_lock_file() {
    let dir = common::tempdir();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    // The passphrase is checked after the state is locked: the lock goes again.
    let out = run_in(root, RUN, &[("TGFERRY_ENCRYPTION", "vault")]);
    assert_eq!(out.status.code(), Some(10));
    assert!(!root.join("state.json.lock").exists());
    assert!(!root.join("state.json").exists());
}
