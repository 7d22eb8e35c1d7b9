//! Telegram chats as a source (`--source telegram:…`), over the loopback server (fakegram)
//! with the real grammers client: chats of several hundred media messages ferried by the
//! real binary over killed and budget-limited runs into a local vault and restored byte for
//! byte (an edit stored as a new version, a deleted message's file kept, a forwarded
//! duplicate read once); and the reads themselves (`ChatSource`), following FILE_MIGRATE
//! and expired file references, sitting out a flood wait that fits and stopping on one
//! that does not.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{s, tgferry};
use fakegram::{AccountKind, Chat, Config, Fault, Server};
use tgferry::source::telegram::{ChatOptions, ChatSource};
use tgferry::source::{Source, SourceError, read_error};
use tgferry::state::StopReason;
use tgferry::telegram::api::ChatRef;
use tgferry::telegram::credentials;
use tgferry::telegram::grammers::{GrammersApi, GrammersConfig};

const MIB: usize = 1 << 20;
const PASS: &str = "a passphrase for the chat source tests";

/// The variables `fakegram` prints for an account.
fn env_of(creds: &fakegram::Credentials) -> Vec<(&'static str, String)> {
    vec![
        ("TGFERRY_TG_API_ID", creds.api_id.to_string()),
        ("TGFERRY_TG_API_HASH", creds.api_hash.clone()),
        ("TGFERRY_TG_SESSION", creds.session.clone()),
    ]
}

/// Writes `files` (name → bytes) into `dir`.
fn write_folder(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// What a message's media is called in the default layout: its file name, or
/// `photo.jpg` / `voice.ogg` for media Telegram gives no name (photos, voice notes).
fn file_name(posted: &str) -> String {
    let ext = posted.rsplit('.').next().unwrap_or("");
    match ext {
        "jpg" | "jpeg" | "png" | "webp" => "photo.jpg".into(),
        "oga" | "opus" => "voice.ogg".into(),
        _ => posted.into(),
    }
}

/// Every media message of `chat` (under folder `folder`) as the default layout names it,
/// with its current bytes, computed from the server's own view.
fn expected(server: &Server, chat: Chat, folder: &str) -> BTreeMap<String, Vec<u8>> {
    server
        .messages(chat)
        .into_iter()
        .filter_map(|m| {
            let (name, _, _) = m.document.clone().or(m.photo.clone())?;
            let day = tgferry::time::Timestamp::from_second(m.date)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC);
            let path = format!(
                "{folder}/{:04}-{:02}/{}-{}",
                day.year(),
                day.month(),
                m.id,
                file_name(&name)
            );
            Some((path, server.document_bytes(chat, m.id)?))
        })
        .collect()
}

/// `tgferry run` from `source` into a local vault at `store`.
fn run(
    env: &[(&str, String)],
    source: &str,
    store: &Path,
    state: &Path,
    extra: &[&str],
) -> Command {
    let mut args = vec![
        "run",
        "--source",
        source,
        "--store",
        s(store),
        "--state",
        s(state),
        "--encryption",
        "vault",
        "--part-size",
        "4MiB",
        "-q",
    ];
    args.extend_from_slice(extra);
    let mut cmd = tgferry(&args);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TGFERRY_PASSPHRASE", PASS);
    cmd
}

fn assert_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    stderr
}

fn last_stop(state: &Path) -> StopReason {
    common::load(state).runs.last().unwrap().stop_reason
}

/// A few hundred media of every kind: small photos, voice notes, audio, documents.
fn library(seed: u64, n: usize) -> BTreeMap<String, Vec<u8>> {
    let exts = ["jpg", "oga", "mp3", "txt", "pdf", "png", "m4a", "bin"];
    (0..n)
        .map(|i| {
            let len = 1_000 + (i * 7_919) % 60_000;
            (
                format!("m{i:03}.{}", exts[i % exts.len()]),
                common::bytes(seed * 1_000 + i as u64, len),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_ferried_over_killed_and_budgeted_runs_restore_byte_for_byte() {
    // 1 MiB/s a connection: runs take seconds, so kills and budgets land mid-way.
    let server = Server::start(Config {
        conn_rate: Some(MIB as u64),
        ..Config::default()
    })
    .await
    .unwrap();
    let dir = common::tempdir();
    let mut one = library(1, 220);
    one.insert(
        "zz-holiday.mp4".into(),
        common::bytes(77, 12 * MIB + 12_345),
    );
    write_folder(&dir.path().join("one"), &one);
    write_folder(&dir.path().join("two"), &library(2, 60));
    let chat_one = server
        .seed_chat("media_one", &dir.path().join("one"))
        .unwrap();
    let chat_two = server
        .seed_chat("media_two", &dir.path().join("two"))
        .unwrap();
    // Duplicates across the chats: media of one forwarded into two.
    let first_ids: Vec<i32> = server.messages(chat_one).iter().map(|m| m.id).collect();
    for id in [first_ids[3], first_ids[10], first_ids[17]] {
        server.forward(chat_one, id, chat_two);
    }
    let env = env_of(&server.credentials(AccountKind::User));
    let source = "telegram:@media_one,@media_two";
    let (store, state) = (dir.path().join("store"), dir.path().join("state.json"));

    // Runs killed at different moments, then runs with a budget, until all is stored.
    let mut kills = 0;
    for round in 0..12u64 {
        if kills >= 4 {
            break;
        }
        let mut child = run(&env, source, &store, &state, &["--jobs", "4"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400 + round * 150));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 3, "only {kills} kills landed");
    let mut budgeted = Vec::new();
    for _ in 0..20 {
        assert_ok(&mut run(&env, source, &store, &state, &["--budget", "3s"]));
        let stop = last_stop(&state);
        budgeted.push(stop);
        if matches!(stop, StopReason::Complete | StopReason::NothingToDo) {
            break;
        }
    }
    assert!(
        matches!(
            budgeted.last(),
            Some(StopReason::Complete | StopReason::NothingToDo)
        ),
        "{budgeted:?}"
    );
    let st = common::load(&state);
    let mut want = expected(&server, chat_one, "media_one");
    want.extend(expected(&server, chat_two, "media_two"));
    assert_eq!(want.len(), 221 + 63);
    assert_eq!(
        st.completed.keys().cloned().collect::<Vec<_>>(),
        want.keys().cloned().collect::<Vec<_>>()
    );
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert_eq!(st.telegram_chats["@media_one"].media.len(), 221);

    // Between runs: a media replaced by an edit, a message deleted.
    let msgs = server.messages(chat_one);
    // m003.txt is edited (the same name, new content); m006.m4a is deleted.
    let (edited, deleted) = (msgs[3].id, msgs[6].id);
    let deleted_bytes = server.document_bytes(chat_one, deleted).unwrap();
    let path_of = |id: i32| {
        want.keys()
            .find(|p| p.starts_with("media_one/") && p.contains(&format!("/{id}-")))
            .unwrap()
            .clone()
    };
    let (edited_path, deleted_path) = (path_of(edited), path_of(deleted));
    let before = st.completed[&edited_path].clone();
    server.edit_media(
        chat_one,
        edited,
        "m003.txt",
        b"a new text, edited between runs",
    );
    server.delete_message(chat_one, deleted);
    assert_ok(&mut run(&env, source, &store, &state, &[]));
    let st = common::load(&state);
    let after = &st.completed[&edited_path];
    assert_ne!(after.object, before.object, "the edit is stored again");
    assert_eq!(after.versions.len(), 1, "the old content is a version");
    assert_eq!(Some(&after.versions[0].object), before.object.as_ref());
    assert!(
        st.completed.contains_key(&deleted_path),
        "a deleted message's file stays"
    );
    assert!(!st.telegram_chats["@media_one"].media.contains_key(&deleted));

    // The large video forwarded into the other chat is not read again.
    let video = msgs.last().unwrap().id;
    let media = server.media_id(chat_one, video).unwrap();
    let served = server.bytes_served(media);
    assert!(served >= 12 * MIB as u64);
    let copy = server.forward(chat_one, video, chat_two);
    assert_ok(&mut run(&env, source, &store, &state, &[]));
    assert_eq!(
        server.bytes_served(media),
        served,
        "the duplicate was not downloaded"
    );
    let st = common::load(&state);
    let video_path = path_of(video);
    let copy_path = expected(&server, chat_two, "media_two")
        .into_keys()
        .find(|p| p.contains(&format!("/{copy}-")))
        .unwrap();
    assert_eq!(
        st.completed[&copy_path].object,
        st.completed[&video_path].object
    );

    // Restored from the store alone: every file as the chats hold it now, the deleted
    // message's file as it was.
    let mut want = expected(&server, chat_one, "media_one");
    want.extend(expected(&server, chat_two, "media_two"));
    want.insert(deleted_path.clone(), deleted_bytes);
    let to = dir.path().join("restored");
    let mut restore = tgferry(&["restore", "--store", s(&store), "--to", s(&to), "-q"]);
    restore.env("TGFERRY_PASSPHRASE", PASS);
    assert_ok(&mut restore);
    let got = common::tree(&to);
    assert_eq!(got.len(), want.len());
    for (path, bytes) in &want {
        assert!(got.get(path) == Some(bytes), "{path} differs");
    }
    assert_eq!(got[&edited_path], b"a new text, edited between runs");
    server.shutdown().await;
}

/// A chat source over the account `kind`, as `--source telegram:@<name>` makes it.
fn chat_source(server: &Server, kind: AccountKind, name: &str) -> ChatSource<GrammersApi> {
    let env = env_of(&server.credentials(kind));
    let creds =
        credentials::from(&|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let chat = ChatRef::parse(&format!("@{name}")).unwrap();
    let mut config = GrammersConfig::from_credentials(creds, chat.clone()).unwrap();
    config.reads_only = true;
    config.connections = 2;
    ChatSource::new(
        vec![(chat, GrammersApi::new(config))],
        ChatOptions::default(),
    )
    .unwrap()
}

async fn read_all(source: &ChatSource<GrammersApi>, path: &str) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut reader = source.open(path, 0).await.unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_file_migrate_and_expired_references_and_stop_on_long_flood_waits() {
    let server = Server::start(Config::default()).await.unwrap();
    let dir = common::tempdir();
    let files = BTreeMap::from([
        ("a-doc.pdf".to_owned(), common::bytes(1, 3 * MIB / 2 + 77)),
        ("b-photo.jpg".to_owned(), common::bytes(2, 200_000)),
        ("c-clip.mp4".to_owned(), common::bytes(3, MIB + 5)),
    ]);
    write_folder(dir.path(), &files);
    let chat = server.seed_chat("read_tests", dir.path()).unwrap();
    let want = expected(&server, chat, "read_tests");

    for kind in [AccountKind::User, AccountKind::Bot] {
        let source = chat_source(&server, kind, "read_tests");
        source.set_wait_deadline(Some(tokio::time::Instant::now() + Duration::from_secs(60)));
        let listing = source.list().await.unwrap();
        assert_eq!(listing.files.len(), 3, "{kind:?}");
        assert_eq!(listing.identities.len(), 3);
        let path = |prefix: &str| want.keys().find(|p| p.ends_with(prefix)).unwrap().clone();
        // A read from the middle starts where it is asked to.
        {
            use tokio::io::AsyncReadExt as _;
            let p = path("a-doc.pdf");
            let mut reader = source.open(&p, MIB as u64 + 10).await.unwrap();
            let mut tail = Vec::new();
            reader.read_to_end(&mut tail).await.unwrap();
            assert_eq!(tail, want[&p][MIB + 10..]);
        }
        // The files move to another data centre: FILE_MIGRATE is followed.
        server.move_files(4);
        let p = path("a-doc.pdf");
        assert_eq!(read_all(&source, &p).await.unwrap(), want[&p], "{kind:?}");
        // File references expire: the message is fetched again.
        let fetched = server.requests("channels.getMessages");
        server.advance(Duration::from_secs(2 * 3600));
        let p = path("photo.jpg");
        assert_eq!(read_all(&source, &p).await.unwrap(), want[&p], "{kind:?}");
        assert!(server.requests("channels.getMessages") > fetched);
        // A flood wait that ends before the deadline is sat out...
        server.inject(Fault::flood_wait(Some("upload.getFile"), 1));
        let p = path("c-clip.mp4");
        assert_eq!(read_all(&source, &p).await.unwrap(), want[&p]);
        // ...one that does not is the rate limit the run stops on.
        server.inject(Fault::flood_wait(Some("upload.getFile"), 3600));
        let err = read_all(&source, &p).await.unwrap_err();
        match read_error(&p, err) {
            SourceError::RateLimited { wait, .. } => assert_eq!(wait.as_secs(), 3600),
            other => panic!("{other:?}"),
        }
        server.move_files(2);
    }

    // A listing asked to wait too long stops, keeping what it knew.
    let source = chat_source(&server, AccountKind::User, "read_tests");
    source.set_wait_deadline(Some(tokio::time::Instant::now() + Duration::from_secs(60)));
    source.list().await.unwrap();
    let known = source.catalog().unwrap();
    server.post_media(chat, "d-late.txt", b"late");
    server.inject(Fault::flood_wait(
        Some("updates.getChannelDifference"),
        3600,
    ));
    match source.list().await {
        Err(SourceError::RateLimited { wait, .. }) => assert_eq!(wait.as_secs(), 3600),
        other => panic!("{other:?}"),
    }
    assert_eq!(source.catalog().unwrap(), known);
    assert_eq!(source.list().await.unwrap().files.len(), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_wait_past_the_budget_ends_the_run_rate_limited_with_nothing_lost() {
    let server = Server::start(Config::default()).await.unwrap();
    let dir = common::tempdir();
    let mut files = library(5, 30);
    files.insert("big.mkv".into(), common::bytes(9, 6 * MIB));
    write_folder(&dir.path().join("media"), &files);
    let chat = server
        .seed_chat("flood_tests", &dir.path().join("media"))
        .unwrap();
    let env = env_of(&server.credentials(AccountKind::User));
    let (store, state) = (dir.path().join("store"), dir.path().join("state.json"));
    // The big file's second window asks for an hour.
    server.inject(Fault::flood_wait(Some("upload.getFile"), 3600).after(40));
    let stderr = assert_ok(&mut run(
        &env,
        "telegram:@flood_tests",
        &store,
        &state,
        &["--budget", "10m", "--jobs", "1", "-v"],
    ));
    let st = common::load(&state);
    let last = st.runs.last().unwrap();
    assert_eq!(last.stop_reason, StopReason::RateLimited, "{stderr}");
    assert!(last.resume_after.is_some());
    assert!(
        st.failed.is_empty(),
        "a wait is no failure: {:?}",
        st.failed
    );
    assert!(st.completed.len() < files.len());
    // The next run (the wait over) stores the rest, and everything restores.
    assert_ok(&mut run(&env, "telegram:@flood_tests", &store, &state, &[]));
    assert_eq!(last_stop(&state), StopReason::Complete);
    let to = dir.path().join("restored");
    let mut restore = tgferry(&["restore", "--store", s(&store), "--to", s(&to), "-q"]);
    restore.env("TGFERRY_PASSPHRASE", PASS);
    assert_ok(&mut restore);
    assert_eq!(common::tree(&to), expected(&server, chat, "flood_tests"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_into_a_telegram_vault_with_one_user_session_for_both() {
    let server = Server::start(Config::default()).await.unwrap();
    let dir = common::tempdir();
    let mut files = library(7, 12);
    files.insert("clip.mov".into(), common::bytes(8, 5 * MIB + 3));
    write_folder(&dir.path().join("media"), &files);
    let chat = server
        .seed_chat("from_here", &dir.path().join("media"))
        .unwrap();
    let creds = server.credentials(AccountKind::User);
    let env = env_of(&creds);
    let store = format!("telegram:{}", creds.chat);
    let state = dir.path().join("state.json");
    let mut args = vec![
        "run",
        "--source",
        "telegram:@from_here",
        "--store",
        &store,
        "--state",
        s(&state),
        "--encryption",
        "vault",
        "-q",
    ];
    let mut cmd = tgferry(&args);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TGFERRY_PASSPHRASE", PASS);
    assert_ok(&mut cmd);
    assert_eq!(last_stop(&state), StopReason::Complete);
    let to = dir.path().join("restored");
    args = vec!["restore", "--store", &store, "--to", s(&to), "-q"];
    let mut restore = tgferry(&args);
    restore
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TGFERRY_PASSPHRASE", PASS);
    assert_ok(&mut restore);
    assert_eq!(common::tree(&to), expected(&server, chat, "from_here"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeout_session_carries_the_reads_of_a_user_and_is_refused_to_a_bot() {
    let server = Server::start(Config::default()).await.unwrap();
    let dir = common::tempdir();
    write_folder(&dir.path().join("media"), &library(11, 6));
    let chat = server
        .seed_chat("export_me", &dir.path().join("media"))
        .unwrap();
    let store = dir.path().join("copies");
    let plain = |kind: AccountKind, state: &str| {
        let env = env_of(&server.credentials(kind));
        let state = dir.path().join(state);
        let mut cmd = tgferry(&[
            "run",
            "--source",
            "telegram:@export_me",
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--tg-takeout",
            "-q",
        ]);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    };
    assert_eq!(server.stats().takeout_requests, 0);
    assert_ok(&mut plain(AccountKind::User, "user.json"));
    let stats = server.stats();
    assert!(stats.takeout_requests >= 6, "{}", stats.summary());
    assert_eq!(server.requests("account.initTakeoutSession"), 1);
    let want = expected(&server, chat, "export_me");
    let got = common::tree(&store);
    assert_eq!(got, want);
    // A bot has no takeout: refused before anything is written, saying what to do.
    let out = common::assert_exit(&mut plain(AccountKind::Bot, "bot.json"), 8);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("drop --tg-takeout"), "{stderr}");
    assert!(!dir.path().join("bot.json").exists());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_group_is_read_by_history_newer_than_the_newest_seen() {
    let server = Server::start(Config::default()).await.unwrap();
    let group = server.create_group("family", true);
    let Chat::Group(id) = group else {
        unreachable!()
    };
    let chat = ChatRef::Id(-id);
    let source_for = |kind: AccountKind| {
        let env = env_of(&server.credentials(kind));
        let creds =
            credentials::from(&|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .unwrap();
        let mut config = GrammersConfig::from_credentials(creds, chat.clone()).unwrap();
        config.reads_only = true;
        let options = ChatOptions {
            layout: tgferry::source::telegram::PathLayout::parse("{id}-{name}").unwrap(),
            ..ChatOptions::default()
        };
        ChatSource::new(vec![(chat.clone(), GrammersApi::new(config))], options).unwrap()
    };
    for (i, name) in ["a.txt", "b.jpg", "c.oga"].into_iter().enumerate() {
        server.post_media(group, name, &common::bytes(i as u64, 3000 + i));
    }
    server.post_as_user(group, "no media here");
    let source = source_for(AccountKind::User);
    let names = |l: &tgferry::source::Listing| {
        let mut n: Vec<String> = l.files.iter().map(|f| f.path.clone()).collect();
        n.sort();
        n
    };
    let first = source.list().await.unwrap();
    assert_eq!(names(&first).len(), 3, "{:?}", names(&first));
    let pages = server.requests("messages.getHistory");
    // Only what is newer than the newest seen is read next time.
    let late = server.post_media(group, "d.pdf", b"late");
    let second = source.list().await.unwrap();
    assert_eq!(second.files.len(), 4);
    assert!(names(&second).contains(&format!("{late}-d.pdf")));
    assert!(server.requests("messages.getHistory") <= pages + 2);
    assert_eq!(
        read_all(&source, &format!("{late}-d.pdf")).await.unwrap(),
        b"late"
    );
    assert_eq!(source.catalog().unwrap()[&chat.to_string()].top_id, late);
    // A bot cannot read a group's history: the source says what to use instead.
    match source_for(AccountKind::Bot).list().await {
        Err(SourceError::Unavailable { message, .. }) => {
            assert!(message.contains("bots can read only channels"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}
