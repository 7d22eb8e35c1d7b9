//! The Telegram store through the real grammers adapter ([`GrammersApi`]) over MTProto to
//! the loopback server (fakegram), with a real clock: a vault backup of a file split into
//! several parts (and a small one) through the runner, then a restore and a full verify
//! from the chat, for a user account and for a bot. The credentials are exactly what
//! `fakegram` prints for `TGFERRY_TG_*`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fakegram::{AccountKind, Config, Server};
use secrecy::SecretString;
use tgferry::keyring;
use tgferry::restore::{RestoreOptions, VerifyOptions, restore, verify};
use tgferry::runner::{Budget, Events, RunConfig, Runner, VaultKeys};
use tgferry::source::memory::MemorySource;
use tgferry::state::{Encryption, Job, LoadOptions, StateFile, StopReason};
use tgferry::store::telegram::{TelegramOptions, TelegramStore};
use tgferry::store::{META_KEY_FILE, Store};
use tgferry::telegram::api::ChatRef;
use tgferry::telegram::credentials;
use tgferry::telegram::grammers::{GrammersApi, GrammersConfig};
use tgferry::vault::{KdfParams, KeyFile};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;

/// The variables `fakegram` prints, as tgferry reads them from the environment.
fn env_of(creds: &fakegram::Credentials) -> HashMap<String, String> {
    HashMap::from([
        ("TGFERRY_TG_API_ID".to_owned(), creds.api_id.to_string()),
        ("TGFERRY_TG_API_HASH".to_owned(), creds.api_hash.clone()),
        ("TGFERRY_TG_SESSION".to_owned(), creds.session.clone()),
    ])
}

/// A store as `tgferry run --store telegram:<chat>` makes it (one per process: the
/// session lock allows one at a time).
fn store(env: &HashMap<String, String>, chat: &ChatRef) -> TelegramStore<GrammersApi> {
    let creds =
        credentials::from(&|k| env.get(k).cloned()).expect("the fake's variables are valid");
    let config =
        GrammersConfig::from_credentials(creds, chat.clone()).expect("the session imports");
    TelegramStore::new(
        GrammersApi::new(config),
        chat.clone(),
        TelegramOptions {
            plain: false,
            premium: false,
        },
    )
}

async fn vault_round_trip(kind: AccountKind, file_dc: Option<i32>) {
    let server = Server::start(Config {
        file_dc,
        ..Config::default()
    })
    .await
    .unwrap();
    let creds = server.credentials(kind);
    let env = env_of(&creds);
    let chat = ChatRef::parse(&creds.chat).unwrap();
    let name = format!("telegram:{chat}");
    let pass = SecretString::from("correct horse battery staple".to_owned());

    // The vault's key file, in the chat.
    {
        let store = store(&env, &chat);
        store
            .prepare()
            .await
            .expect("connects and resolves the chat");
        let params = KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let (key_file, _) = KeyFile::create(&pass, params).unwrap();
        store
            .put_meta(META_KEY_FILE, &key_file.to_json())
            .await
            .unwrap();
    }

    // One run: a file of three parts (1 MiB parts, so two 512 KiB chunks each) and a small one.
    let src = MemorySource::new();
    let mut files = BTreeMap::new();
    for (path, len) in [
        ("big/multi-part.bin", 2 * MIB + 300_000),
        ("small.txt", 4_000),
    ] {
        let data = common::bytes(len as u64, len);
        src.put(path, data.clone());
        files.insert(path.to_owned(), data);
    }
    let dir = common::tempdir();
    let state_path = dir.path().join("state.json");
    let job = Job {
        source: "mem:src".into(),
        store: name.clone(),
        encryption: Encryption::Vault,
        vault_id: None,
    };
    let state = {
        let store = Arc::new(store(&env, &chat));
        store.prepare().await.unwrap();
        let (mut file, _) = StateFile::open(&state_path, &job, &LoadOptions::default()).unwrap();
        let (key_file, master, _) = keyring::unlock(&*store, &name, &pass, false).await.unwrap();
        file.bind_vault(&key_file.vault_id_hex()).unwrap();
        let keys = Arc::new(VaultKeys::new(master));
        let config = RunConfig {
            part_size: MIB as u64,
            jobs: 2,
            vault: Some(Arc::clone(&keys)),
            ..RunConfig::default()
        };
        let now = Instant::now();
        let (events, mut rx) = Events::channel();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let runner = Runner::new(
            Arc::new(src.clone()),
            Arc::clone(&store),
            config,
            Budget::until(now, now + Duration::from_secs(120), Duration::ZERO),
            events,
            CancellationToken::new(),
        );
        let (file, report) = runner.run(file).await.map_err(|(_, e)| e).unwrap();
        drain.await.unwrap();
        assert_eq!(report.stop_reason, StopReason::Complete, "{report:?}");
        keyring::save_catalog(&*store, &keys.master, file.state())
            .await
            .unwrap();
        file.state().clone()
    };
    let big = &state.completed["big/multi-part.bin"];
    let parts = &state.objects[big.object.as_ref().unwrap()].parts;
    assert_eq!(parts.len(), 3, "three parts");

    // What the chat holds: every part a document of its own.
    let messages = server.messages(server.channel());
    let docs = messages.iter().filter(|m| m.document.is_some()).count();
    assert!(
        docs >= 5,
        "key file, 3 parts, small-file pack, catalog: {messages:#?}"
    );
    assert!(messages.iter().any(|m| m.pinned), "the index is pinned");
    assert!(server.requests("upload.saveFilePart") >= 6);

    // Read back from the chat with the passphrase, in a new store (a new process).
    let store = store(&env, &chat);
    store.prepare().await.unwrap();
    let (_, master, _) = keyring::unlock(&store, &name, &pass, false).await.unwrap();
    let out = common::tempdir();
    let restored = restore(
        &store,
        &state,
        Some(&master),
        &RestoreOptions::new(out.path()),
    )
    .await
    .unwrap();
    assert!(restored.is_success(), "{:?}", restored.failed);
    for (path, data) in &files {
        assert!(
            std::fs::read(out.path().join(path)).unwrap() == *data,
            "{path} restored"
        );
    }
    let checked = verify(&store, &state, Some(&master), &VerifyOptions::full())
        .await
        .unwrap();
    assert!(checked.is_clean(), "{:?}", checked.problems);
    assert!(server.requests("upload.getFile") >= 6);
    eprintln!("STATS {:?}", server.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stores_and_reads_back_a_multi_part_vault_file_over_mtproto() {
    tokio::time::timeout(
        Duration::from_secs(60),
        vault_round_trip(AccountKind::User, None),
    )
    .await
    .expect("the round trip ends within a minute");
}

/// The bot's documents are kept in data centre 4 (as Telegram keeps media away from an
/// account's home): every download goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_stores_and_reads_back_a_multi_part_vault_file_over_mtproto() {
    tokio::time::timeout(
        Duration::from_secs(60),
        vault_round_trip(AccountKind::Bot, Some(4)),
    )
    .await
    .expect("the round trip ends within a minute");
}
