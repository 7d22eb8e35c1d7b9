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
use tgferry::store::{META_KEY_FILE, Store, StoreError, Upload as _};
use tgferry::telegram::api::{ChatRef, TgError};
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

// ---------------------------------------------------------------------------------------
// A backup job over the wire, as tests/telegram.rs runs them over the double.
// ---------------------------------------------------------------------------------------

const PASS: &str = "correct horse battery staple";

fn pass() -> SecretString {
    SecretString::from(PASS.to_owned())
}

/// One backup job against a fakegram: the account's session, a source, a state file.
struct Wire {
    server: Server,
    env: HashMap<String, String>,
    chat: ChatRef,
    src: MemorySource,
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
    plain: bool,
    part_size: u64,
}

impl Wire {
    /// A fakegram without the message-rate rules (tests that want them turn them on).
    async fn start(kind: AccountKind) -> Wire {
        Wire::with(
            kind,
            Config {
                rate_limits: false,
                ..Config::default()
            },
        )
        .await
    }

    async fn with(kind: AccountKind, config: Config) -> Wire {
        let server = Server::start(config).await.unwrap();
        let creds = server.credentials(kind);
        let chat = ChatRef::parse(&creds.chat).unwrap();
        let dir = common::tempdir();
        Wire {
            env: env_of(&creds),
            chat,
            src: MemorySource::new(),
            state: dir.path().join("state.json"),
            _dir: dir,
            server,
            plain: false,
            part_size: MIB as u64,
        }
    }

    fn name(&self) -> String {
        format!("telegram:{}", self.chat)
    }

    fn store(&self) -> TelegramStore<GrammersApi> {
        self.store_with(tgferry::telegram::grammers::DEFAULT_CONNECTIONS)
    }

    /// A store whose file bytes travel on `connections` connections (`--tg-connections`),
    /// over every account in the environment (several bots: their session lines
    /// comma-separated), as `tgferry run` opens it.
    fn store_with(&self, connections: usize) -> TelegramStore<GrammersApi> {
        let creds = credentials::from(&|k| self.env.get(k).cloned()).expect("the fake's variables");
        let mut apis = GrammersConfig::every_account(creds, self.chat.clone())
            .unwrap()
            .into_iter()
            .map(|mut config| {
                config.connections = connections;
                GrammersApi::new(config)
            });
        let main = apis.next().unwrap();
        TelegramStore::with_accounts(
            main,
            apis.collect(),
            self.chat.clone(),
            TelegramOptions {
                plain: self.plain,
                premium: false,
            },
        )
    }

    fn job(&self) -> Job {
        Job {
            source: "mem:src".into(),
            store: self.name(),
            encryption: if self.plain {
                Encryption::None
            } else {
                Encryption::Vault
            },
            vault_id: None,
        }
    }

    async fn init_vault(&self) {
        let store = self.store();
        store.prepare().await.unwrap();
        let params = KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let (key_file, _) = KeyFile::create(&pass(), params).unwrap();
        store
            .put_meta(META_KEY_FILE, &key_file.to_json())
            .await
            .unwrap();
    }

    /// One run as `tgferry run` does it: connect, unlock, run, save the catalog.
    async fn try_run(
        &self,
        budget: Option<Duration>,
    ) -> Result<tgferry::runner::RunReport, String> {
        self.try_run_with(budget, CancellationToken::new()).await
    }

    async fn try_run_with(
        &self,
        budget: Option<Duration>,
        interrupt: CancellationToken,
    ) -> Result<tgferry::runner::RunReport, String> {
        let store = Arc::new(self.store());
        let (mut file, _) =
            StateFile::open(&self.state, &self.job(), &LoadOptions::default()).unwrap();
        let mut config = RunConfig {
            part_size: self.part_size,
            jobs: 2,
            ..RunConfig::default()
        };
        store.prepare().await.map_err(|e| e.to_string())?;
        if !self.plain {
            let (key_file, master, _) = keyring::unlock(&*store, &self.name(), &pass(), false)
                .await
                .unwrap();
            file.bind_vault(&key_file.vault_id_hex()).unwrap();
            config.vault = Some(Arc::new(VaultKeys::new(master)));
        }
        let vault = config.vault.clone();
        let start = Instant::now();
        let budget = match budget {
            Some(b) => Budget::until(start, start + b, Duration::ZERO),
            None => Budget::unlimited(start),
        };
        let (events, mut rx) = Events::channel();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let runner = Runner::new(
            Arc::new(self.src.clone()),
            store.clone(),
            config,
            budget,
            events,
            interrupt,
        );
        let result = runner.run(file).await;
        drain.await.unwrap();
        let (file, report) = result.map_err(|(_, e)| e.to_string())?;
        if let Some(keys) = vault {
            keyring::save_catalog(&*store, &keys.master, file.state())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(report)
    }

    /// A run stopped by a signal (SIGTERM) after `after`: it saves what it checkpointed.
    async fn interrupted_run(&self, after: Duration) -> tgferry::runner::RunReport {
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
        let r = self.try_run_with(None, stop).await.unwrap();
        timer.abort();
        r
    }

    async fn run(&self, budget: Option<Duration>) -> tgferry::runner::RunReport {
        self.try_run(budget).await.unwrap()
    }

    fn saved_state(&self) -> tgferry::state::State {
        let (file, _) = StateFile::open(&self.state, &self.job(), &LoadOptions::default())
            .expect("state opens");
        file.state().clone()
    }

    async fn master(&self, store: &TelegramStore<GrammersApi>) -> tgferry::vault::MasterKey {
        store.prepare().await.unwrap();
        keyring::unlock(store, &self.name(), &pass(), false)
            .await
            .unwrap()
            .1
    }

    /// Restores the saved state from the chat (a new process) and compares every file.
    async fn assert_restores(&self, files: &BTreeMap<String, Vec<u8>>) {
        let state = self.saved_state();
        let store = self.store();
        let master = if self.plain {
            None
        } else {
            Some(self.master(&store).await)
        };
        let out = common::tempdir();
        let r = restore(
            &store,
            &state,
            master.as_ref(),
            &RestoreOptions::new(out.path()),
        )
        .await
        .unwrap();
        assert!(r.is_success(), "{:?}", r.failed);
        let got = common::tree(out.path());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>()
        );
        for (path, data) in files {
            assert!(got[path] == *data, "{path}: content differs");
        }
    }

    /// Document names in the chat, each with how many messages carry it.
    fn document_names(&self) -> BTreeMap<String, usize> {
        let chat = match self.chat {
            ChatRef::Id(id) if id < -1_000_000_000_000 => {
                fakegram::Chat::Channel(-id - 1_000_000_000_000)
            }
            ChatRef::Id(id) => fakegram::Chat::Group(-id),
            _ => self.server.channel(),
        };
        let mut names = BTreeMap::new();
        for m in self.server.messages(chat) {
            if let Some((name, _, _)) = m.document {
                *names.entry(name).or_default() += 1;
            }
        }
        names
    }
}

fn put(
    src: &MemorySource,
    files: &mut BTreeMap<String, Vec<u8>>,
    path: &str,
    seed: u64,
    len: usize,
) {
    let data = common::bytes(seed, len);
    src.put(path, data.clone());
    files.insert(path.to_owned(), data);
}

const HOURS_49: Duration = Duration::from_secs(49 * 3600);

async fn within_a_minute<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("done within a minute")
}

// ---------------------------------------------------------------------------------------
// The fixes of issue 12, each proved over the wire.
// ---------------------------------------------------------------------------------------

/// A bot may not delete messages older than 48 hours: the catalog it replaces two days
/// later stays in the chat (reported in the log) and the run still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_replaces_a_catalog_older_than_48_hours_without_failing_the_run() {
    within_a_minute(async {
        let w = Wire::start(AccountKind::Bot).await;
        w.init_vault().await;
        let mut files = BTreeMap::new();
        put(&w.src, &mut files, "a.bin", 1, 300_000);
        w.run(None).await;
        w.server.advance(HOURS_49);
        put(&w.src, &mut files, "b.bin", 2, 200_000);
        let report = w.try_run(None).await.expect("the run does not fail");
        assert_eq!(report.stop_reason, StopReason::Complete);
        // Both catalogs are in the chat: the old one could not be deleted.
        assert_eq!(w.document_names().get("tgferry-catalog"), Some(&2));
        w.assert_restores(&files).await;
    })
    .await;
}

/// Prune by a bot: leftovers older than 48 hours are kept and reported with who can
/// delete them; the prune does not fail. Younger ones are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_prune_reports_what_it_may_not_delete_and_how() {
    use tgferry::prune::{PruneOptions, prune};
    within_a_minute(async {
        let w = Wire::start(AccountKind::Bot).await;
        w.init_vault().await;
        let mut files = BTreeMap::new();
        put(&w.src, &mut files, "kept.bin", 1, 100_000);
        w.run(None).await;
        // An orphan part (a run killed before its checkpoint), then two days pass, then
        // another orphan.
        let store = w.store();
        store.prepare().await.unwrap();
        let orphan = |seed: u64| {
            let store = &store;
            async move {
                let mut up = store
                    .begin(&format!("data/0f/{:032x}", seed), 5_000)
                    .await
                    .unwrap();
                up.write(&common::bytes(seed, 5_000)).await.unwrap();
                up.finish().await.unwrap()
            }
        };
        let old = orphan(7).await;
        w.server.advance(HOURS_49);
        let young = orphan(8).await;
        let master = w.master(&store).await;
        let catalog = keyring::load_catalog(&store, &master)
            .await
            .unwrap()
            .unwrap();
        let (mut file, _) = StateFile::open(&w.state, &w.job(), &LoadOptions::default()).unwrap();
        let report = prune(
            &store,
            &mut file,
            Some(&catalog),
            &PruneOptions {
                older_than: Duration::ZERO,
                dry_run: false,
                // The fake's clock is 49 hours ahead: both orphans are older than now.
                now: tgferry::time::now() + jiff::SignedDuration::from_secs(50 * 3600),
            },
        )
        .await
        .expect("prune does not fail");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let gone: Vec<&str> = report.unreferenced.iter().map(|p| p.loc.as_str()).collect();
        assert_eq!(gone, [young.as_str()]);
        assert_eq!(report.undeletable.len(), 1, "{:?}", report.undeletable);
        let (loc, how) = &report.undeletable[0];
        assert_eq!(loc, &old);
        assert!(
            how.contains("48 hours") && how.contains("user session") && how.contains("by hand"),
            "{how}"
        );
        drop((file, store));
        w.assert_restores(&files).await;
    })
    .await;
}

/// AUTH_KEY_DUPLICATED: the session is dead; the error says so and how to make a new one
/// (not "in use, wait").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_session_is_reported_dead_with_the_way_to_a_new_one() {
    within_a_minute(async {
        let w = Wire::start(AccountKind::User).await;
        w.server.duplicate_session(AccountKind::User);
        let err = w.store().prepare().await.unwrap_err();
        let tgferry::store::StoreError::Denied { message, .. } = &err else {
            panic!("not a refusal: {err:?}");
        };
        assert!(
            message.contains("AUTH_KEY_DUPLICATED")
                && message.contains("two places")
                && message.contains("tgferry telegram login"),
            "{message}"
        );
        assert_eq!(tgferry::cli::exit::for_store_error(&err), 13);
    })
    .await;
}

/// A document send whose reply is lost (carried out, connection closed) is retried with
/// the same random id; Telegram's RANDOM_ID_DUPLICATE leads to the message already sent,
/// so no part is sent twice. The same for the index's text message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_reply_was_lost_is_not_sent_twice() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    within_a_minute(async {
        for kind in [AccountKind::User, AccountKind::Bot] {
            let w = Wire::start(kind).await;
            w.server
                .inject(fakegram::Fault::lose_reply(Some("messages.sendMessage")));
            w.init_vault().await;
            assert_eq!(w.server.pending_faults(), 0);
            let texts = w
                .server
                .messages(w.server.channel())
                .iter()
                .filter(|m| m.document.is_none() && m.pin_of.is_none())
                .count();
            assert_eq!(texts, 1, "{kind:?}: one index message");
            w.server
                .inject(fakegram::Fault::lose_reply(Some("messages.sendMedia")).times(2));
            let mut files = BTreeMap::new();
            put(&w.src, &mut files, "a.bin", 1, 2 * MIB + 5);
            put(&w.src, &mut files, "b.txt", 2, 3_000);
            let report = w.run(None).await;
            assert_eq!(report.stop_reason, StopReason::Complete, "{report:?}");
            assert_eq!(w.server.pending_faults(), 0);
            let names = w.document_names();
            assert!(names.values().all(|n| *n == 1), "{kind:?}: {names:#?}");
            w.assert_restores(&files).await;
        }
    })
    .await;
}

/// In a basic group a message can be edited for 48 hours only: two days on, a new index
/// is sent and pinned instead of editing the old one, and everything is found again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_group_index_older_than_48_hours_is_replaced_not_edited() {
    within_a_minute(async {
        let mut w = Wire::start(AccountKind::User).await;
        let group = w.server.create_group("vault group", false);
        w.chat = ChatRef::parse(&group.spec()).unwrap();
        w.init_vault().await;
        let mut files = BTreeMap::new();
        put(&w.src, &mut files, "a.bin", 1, 70_000);
        w.run(None).await;
        w.server.advance(HOURS_49);
        put(&w.src, &mut files, "b.bin", 2, 80_000);
        let report = w.try_run(None).await.expect("the run does not fail");
        assert_eq!(report.stop_reason, StopReason::Complete);
        w.assert_restores(&files).await;
        // The catalog in the chat is the newest (a lost state starts from it).
        let store = w.store();
        let master = w.master(&store).await;
        let catalog = keyring::load_catalog(&store, &master)
            .await
            .unwrap()
            .unwrap();
        assert!(catalog.completed.contains_key("b.bin"));
    })
    .await;
}

/// Answers `telegram login`'s questions from the fake: its phone, the code it sent, then
/// the passwords given, in order.
struct FakePrompt<'a> {
    server: &'a Server,
    passwords: Vec<&'static str>,
    asked: Vec<String>,
}

impl tgferry::telegram::login::Prompt for FakePrompt<'_> {
    fn ask(&mut self, question: &str) -> std::io::Result<String> {
        self.asked.push(question.to_owned());
        if question.starts_with("Phone") {
            Ok(self.server.phone())
        } else {
            Ok(self.server.last_login_code().expect("a code was sent"))
        }
    }
    fn ask_secret(&mut self, question: &str) -> std::io::Result<SecretString> {
        self.asked.push(question.to_owned());
        Ok(SecretString::from(self.passwords.remove(0)))
    }
}

fn login_session(server: &Server) -> tgferry::telegram::session::PortableSession {
    tgferry::telegram::session::PortableSession::import(&server.login_credentials().session)
        .unwrap()
}

/// `tgferry telegram login` over the wire: the phone moves to its home data centre
/// (PHONE_MIGRATE), a code, a wrong two-step password, then the right one (a retry needs
/// fresh SRP parameters: each challenge answers one check). With `--chat` the channel is
/// resolved at login and kept in the session line: runs never list the dialogs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_login_takes_a_code_a_wrong_then_the_right_password_and_keeps_the_chat() {
    within_a_minute(async {
        let server = Server::start(Config {
            password: Some("hunter2".into()),
            ..Config::default()
        })
        .await
        .unwrap();
        let creds = server.login_credentials();
        let chat = ChatRef::parse(&creds.chat).unwrap();
        let mut prompt = FakePrompt {
            server: &server,
            passwords: vec!["wrong", "hunter2"],
            asked: Vec::new(),
        };
        let session = tgferry::telegram::login::login_with(
            login_session(&server),
            creds.api_id,
            &SecretString::from(creds.api_hash.clone()),
            &mut prompt,
            Some(&chat),
        )
        .await
        .expect("the login succeeds on the second password");
        assert_eq!(prompt.asked.len(), 4, "{:?}", prompt.asked);
        assert!(
            prompt.asked[3].contains("not accepted"),
            "{:?}",
            prompt.asked
        );
        assert!(prompt.asked[2].contains("hint: the fakegram password"));
        let dialogs = server.requests("messages.getDialogs");
        assert!(dialogs >= 1, "the login resolved the chat");

        // A run with the new session: signed in, the chat known without a dialog scan.
        let env = HashMap::from([
            ("TGFERRY_TG_API_ID".to_owned(), creds.api_id.to_string()),
            ("TGFERRY_TG_API_HASH".to_owned(), creds.api_hash.clone()),
            (
                "TGFERRY_TG_SESSION".to_owned(),
                secrecy::ExposeSecret::expose_secret(&session).to_owned(),
            ),
        ]);
        let s = store(&env, &chat);
        s.prepare().await.expect("the new session works");
        s.put_meta("probe", b"hello").await.unwrap();
        assert_eq!(
            s.get_meta("probe").await.unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            server.requests("messages.getDialogs"),
            dialogs,
            "no dialog scan on a run"
        );
    })
    .await;
}

/// `tgferry telegram login --bot`: one sign-in, a session line every run reuses. Signing in
/// on every run (a bare token) meets Telegram's flood wait on bot sign-ins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_signs_in_once_and_its_runs_reuse_the_session() {
    within_a_minute(async {
        let server = Server::start(Config::default()).await.unwrap();
        let creds = server.login_credentials();
        let hash = SecretString::from(creds.api_hash.clone());
        let token = SecretString::from(server.bot_token());
        let session = tgferry::telegram::login::login_bot(
            login_session(&server),
            creds.api_id,
            &hash,
            &token,
        )
        .await
        .expect("the bot signs in");
        let env = HashMap::from([
            ("TGFERRY_TG_API_ID".to_owned(), creds.api_id.to_string()),
            ("TGFERRY_TG_API_HASH".to_owned(), creds.api_hash.clone()),
            (
                "TGFERRY_TG_SESSION".to_owned(),
                secrecy::ExposeSecret::expose_secret(&session).to_owned(),
            ),
        ]);
        let chat = ChatRef::parse(&creds.chat).unwrap();
        // (Two requests: the first meets the bot's home data centre, USER_MIGRATE.)
        let signins = server.requests("auth.importBotAuthorization");
        for i in 0..6 {
            let s = store(&env, &chat);
            s.prepare().await.expect("the bot's session connects");
            s.put_meta("probe", format!("run {i}").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(
            server.requests("auth.importBotAuthorization"),
            signins,
            "runs do not sign in"
        );

        // Signing in again and again (what a bare token does on every run) is refused.
        let mut refused = None;
        for _ in 0..6 {
            match tgferry::telegram::login::login_bot(
                login_session(&server),
                creds.api_id,
                &hash,
                &token,
            )
            .await
            {
                Ok(_) => {}
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("Telegram floods frequent bot sign-ins");
        assert!(
            matches!(
                refused,
                tgferry::telegram::login::LoginError::Telegram(TgError::Wait { .. })
            ),
            "{refused}"
        );
    })
    .await;
}

/// Answers grammers panics on become clear errors: a login code that Telegram wants paid
/// for (auth.sentCodePaymentRequired), a code request answered with a finished login
/// (auth.sentCodeSuccess), and a dialog whose peer the answer leaves out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_grammers_would_panic_on_are_clear_errors() {
    use grammers_client::tl::{self, Serializable as _};
    within_a_minute(async {
        let server = Server::start(Config::default()).await.unwrap();
        let creds = server.login_credentials();
        let pay: tl::enums::auth::SentCode = tl::types::auth::SentCodePaymentRequired {
            store_product: "fake.login".into(),
            phone_code_hash: "0".into(),
            support_email_address: "support@example.org".into(),
            support_email_subject: "login".into(),
            premium_days: 0,
            currency: "EUR".into(),
            amount: 100,
        }
        .into();
        let success: tl::enums::auth::SentCode = tl::types::auth::SentCodeSuccess {
            authorization: tl::types::auth::Authorization {
                setup_password_required: false,
                otherwise_relogin_days: None,
                tmp_sessions: None,
                future_auth_token: None,
                user: tl::types::UserEmpty {
                    id: server.account(AccountKind::User),
                }
                .into(),
            }
            .into(),
        }
        .into();
        for (answer, says) in [
            (pay, ["payment", "official Telegram app"]),
            (success, ["auth.sentCodeSuccess", "tgferry telegram login"]),
        ] {
            server.inject(fakegram::Fault::reply("auth.sendCode", answer.to_bytes()));
            let mut prompt = FakePrompt {
                server: &server,
                passwords: vec![],
                asked: Vec::new(),
            };
            let err = tgferry::telegram::login::login_with(
                login_session(&server),
                creds.api_id,
                &SecretString::from(creds.api_hash.clone()),
                &mut prompt,
                None,
            )
            .await
            .unwrap_err();
            assert!(
                matches!(err, tgferry::telegram::login::LoginError::Unexpected(_)),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(says.iter().all(|s| text.contains(s)), "{text}");
            assert_eq!(
                prompt.asked.len(),
                1,
                "no code asked for: {:?}",
                prompt.asked
            );
            assert_eq!(server.pending_faults(), 0, "the answer was given");
        }

        // A dialog with a peer nobody described: the chat is not found, nothing panics.
        let dialogs: tl::enums::messages::Dialogs = tl::types::messages::Dialogs {
            dialogs: vec![
                tl::types::Dialog {
                    pinned: false,
                    unread_mark: false,
                    view_forum_as_messages: false,
                    peer: tl::types::PeerUser { user_id: 4242 }.into(),
                    top_message: 0,
                    read_inbox_max_id: 0,
                    read_outbox_max_id: 0,
                    unread_count: 0,
                    unread_mentions_count: 0,
                    unread_reactions_count: 0,
                    unread_poll_votes_count: 0,
                    notify_settings: tl::types::PeerNotifySettings {
                        show_previews: None,
                        silent: None,
                        mute_until: None,
                        ios_sound: None,
                        android_sound: None,
                        other_sound: None,
                        stories_muted: None,
                        stories_hide_sender: None,
                        stories_ios_sound: None,
                        stories_android_sound: None,
                        stories_other_sound: None,
                    }
                    .into(),
                    pts: None,
                    draft: None,
                    folder_id: None,
                    ttl_period: None,
                }
                .into(),
            ],
            messages: vec![],
            chats: vec![],
            users: vec![],
        }
        .into();
        server.inject(fakegram::Fault::reply(
            "messages.getDialogs",
            dialogs.to_bytes(),
        ));
        let user = server.credentials(AccountKind::User);
        let chat = ChatRef::parse(&user.chat).unwrap();
        let err = store(&env_of(&user), &chat).prepare().await.unwrap_err();
        assert!(
            err.to_string()
                .contains("is not among this account's chats"),
            "{err}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The scenarios of tests/telegram.rs, through the real client, for a bot and a user.
// ---------------------------------------------------------------------------------------

const KINDS: [AccountKind; 2] = [AccountKind::User, AccountKind::Bot];

/// A corpus of the shapes that matter at 1 MiB parts: empty, one chunk and one more byte,
/// several parts, a duplicate (a big file is in the chat-alone test).
fn corpus(src: &MemorySource) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (i, (path, len)) in [
        ("empty", 0),
        ("a/chunk+1", 512 * 1024 + 1),
        ("a/part", MIB),
        ("b/multi part.bin", 3 * MIB + 12_345),
        ("b/small.txt", 4_000),
    ]
    .into_iter()
    .enumerate()
    {
        put(src, &mut files, path, i as u64 + 1, len);
    }
    src.put("b/copy-of-part", files["a/part"].clone());
    files.insert("b/copy-of-part".into(), files["a/part"].clone());
    files
}

/// Budgeted runs at a capped line (4 MiB/s a connection: the 6.5 MiB corpus cannot be
/// stored within the first two runs, however fast the machine), one of them stopped by a signal,
/// until the backup completes; then a restore and a full verify from the chat, for a bot
/// and a user; a second run has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgeted_runs_and_a_signal_complete_and_restore_for_a_bot_and_a_user() {
    within_a_minute(async {
        for kind in KINDS {
            let w = Wire::with(
                kind,
                Config {
                    rate_limits: false,
                    conn_rate: Some(4 << 20),
                    ..Config::default()
                },
            )
            .await;
            w.init_vault().await;
            let files = corpus(&w.src);
            let first = w.run(Some(Duration::from_millis(700))).await;
            assert_eq!(first.stop_reason, StopReason::BudgetSpent, "{kind:?}");
            let stopped = w.interrupted_run(Duration::from_millis(400)).await;
            assert_eq!(stopped.stop_reason, StopReason::Interrupted, "{kind:?}");
            let mut reports = Vec::new();
            loop {
                let r = w.run(Some(Duration::from_secs(3))).await;
                let stop = r.stop_reason;
                reports.push(r);
                if stop == StopReason::Complete {
                    break;
                }
                assert_eq!(stop, StopReason::BudgetSpent, "{kind:?}: {reports:?}");
                assert!(reports.len() < 15, "{kind:?}: no progress");
            }
            assert_eq!(
                w.run(None).await.stop_reason,
                StopReason::NothingToDo,
                "{kind:?}"
            );
            w.assert_restores(&files).await;
            let state = w.saved_state();
            let store = w.store();
            let master = w.master(&store).await;
            let checked = verify(&store, &state, Some(&master), &VerifyOptions::full())
                .await
                .unwrap();
            assert!(checked.is_clean(), "{kind:?}: {:?}", checked.problems);
        }
    })
    .await;
}

/// Flood waits: one that ends before the budget is sat out (the run completes); one longer
/// than the budget stops the run `rate_limited` with the wait, and the next run resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_waits_that_fit_are_sat_out_and_longer_ones_stop_the_run() {
    within_a_minute(async {
        for kind in KINDS {
            let w = Wire::start(kind).await;
            w.init_vault().await;
            let mut files = BTreeMap::new();
            put(&w.src, &mut files, "one.bin", 1, 600_000);
            w.server
                .inject(fakegram::Fault::flood_wait(Some("upload.saveFilePart"), 1));
            let r = w.run(Some(Duration::from_secs(20))).await;
            assert_eq!(r.stop_reason, StopReason::Complete, "{kind:?}");
            assert_eq!(w.server.stats().flood_waits.len(), 1);

            put(&w.src, &mut files, "two.bin", 2, 300_000);
            w.server.inject(fakegram::Fault::flood_wait(
                Some("messages.sendMedia"),
                3600,
            ));
            let r = w.run(Some(Duration::from_secs(20))).await;
            assert_eq!(r.stop_reason, StopReason::RateLimited, "{kind:?}");
            assert_eq!(r.rate_limit_wait, Some(Duration::from_secs(3600)));
            let r = w.run(Some(Duration::from_secs(20))).await;
            assert_eq!(r.stop_reason, StopReason::Complete, "{kind:?}");
            w.assert_restores(&files).await;
        }
    })
    .await;
}

/// The chat alone restores: the pinned index leads to the key file and the catalog (the
/// newest run's state), with the passphrase and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_alone_restores_through_its_index_and_catalog() {
    within_a_minute(async {
        for kind in KINDS {
            let w = Wire::start(kind).await;
            w.init_vault().await;
            let mut files = BTreeMap::new();
            put(&w.src, &mut files, "x/one.bin", 1, MIB + 3);
            if kind == AccountKind::User {
                // Over 10 MiB: upload.saveBigFilePart.
                put(&w.src, &mut files, "x/big", 3, 11 * MIB + 7);
            }
            w.run(None).await;
            put(&w.src, &mut files, "x/two.bin", 2, 5_000);
            w.run(None).await;
            let pinned: Vec<_> = w
                .server
                .messages(w.server.channel())
                .into_iter()
                .filter(|m| m.pinned)
                .collect();
            assert_eq!(pinned.len(), 1, "{kind:?}: one pinned index");
            assert!(pinned[0].text.starts_with("tgferry index v1"));
            // A new process with nothing but the chat and the passphrase.
            let store = w.store();
            let master = w.master(&store).await;
            let catalog = keyring::load_catalog(&store, &master)
                .await
                .unwrap()
                .expect("the chat has a catalog");
            let out = common::tempdir();
            let r = restore(
                &store,
                &catalog,
                Some(&master),
                &RestoreOptions::new(out.path()),
            )
            .await
            .unwrap();
            assert!(r.is_success(), "{:?}", r.failed);
            for (path, data) in &files {
                assert!(
                    std::fs::read(out.path().join(path)).unwrap() == *data,
                    "{path}"
                );
            }
        }
    })
    .await;
}

/// Plain mode: each file is a document under its own name (split into `.001`, `.002`…
/// past a part), its path in the caption; it restores from the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_sends_files_as_themselves() {
    within_a_minute(async {
        for kind in KINDS {
            let mut w = Wire::start(kind).await;
            w.plain = true;
            let mut files = BTreeMap::new();
            put(&w.src, &mut files, "photos/holiday.jpg", 1, 300_000);
            put(&w.src, &mut files, "video.mp4", 2, 2 * MIB + 10);
            let r = w.run(None).await;
            assert_eq!(r.stop_reason, StopReason::Complete, "{kind:?}");
            let names = w.document_names();
            for name in [
                "holiday.jpg",
                "video.mp4.001",
                "video.mp4.002",
                "video.mp4.003",
            ] {
                assert!(names.contains_key(name), "{kind:?}: {names:?}");
            }
            let captions: Vec<String> = w
                .server
                .messages(w.server.channel())
                .into_iter()
                .filter(|m| m.document.is_some())
                .map(|m| m.text)
                .collect();
            assert!(
                captions.contains(&"photos/holiday.jpg\n#tgferry".to_owned()),
                "{captions:?}"
            );
            w.assert_restores(&files).await;
        }
    })
    .await;
}

/// Prune by a user (who may delete at any age): old leftovers go two days on, what the
/// catalog needs stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_prune_deletes_old_leftovers_and_keeps_what_the_catalog_needs() {
    use tgferry::prune::{PruneOptions, prune};
    within_a_minute(async {
        let w = Wire::start(AccountKind::User).await;
        w.init_vault().await;
        let mut files = BTreeMap::new();
        put(&w.src, &mut files, "kept.bin", 1, 100_000);
        w.run(None).await;
        let store = w.store();
        store.prepare().await.unwrap();
        let mut up = store
            .begin("data/0f/0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", 5_000)
            .await
            .unwrap();
        up.write(&common::bytes(9, 5_000)).await.unwrap();
        let orphan = up.finish().await.unwrap();
        w.server.advance(HOURS_49);
        let master = w.master(&store).await;
        let catalog = keyring::load_catalog(&store, &master)
            .await
            .unwrap()
            .unwrap();
        let (mut file, _) = StateFile::open(&w.state, &w.job(), &LoadOptions::default()).unwrap();
        let report = prune(
            &store,
            &mut file,
            Some(&catalog),
            &PruneOptions {
                older_than: Duration::from_secs(24 * 3600),
                dry_run: false,
                now: tgferry::time::now() + jiff::SignedDuration::from_secs(50 * 3600),
            },
        )
        .await
        .unwrap();
        assert!(report.failed.is_empty() && report.undeletable.is_empty());
        let gone: Vec<&str> = report.unreferenced.iter().map(|p| p.loc.as_str()).collect();
        assert_eq!(gone, [orphan.as_str()]);
        drop((file, store));
        w.assert_restores(&files).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The tgferry binary over the wire: killed for real, and a lost state.
// ---------------------------------------------------------------------------------------

/// `tgferry ARGS` as a child process with the fake's variables and the passphrase (and
/// nothing else of ours from the environment).
fn tgferry_cmd(env: &HashMap<String, String>, args: &[&str]) -> tokio::process::Command {
    let mut cmd = common::tgferry(args);
    cmd.envs(env)
        .env("TGFERRY_PASSPHRASE", PASS)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

/// Runs `tgferry ARGS` to its end; returns its standard error, asserting exit 0.
async fn tgferry_ok(env: &HashMap<String, String>, args: &[&str]) -> String {
    let out = tgferry_cmd(env, args).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "tgferry {args:?}: {:?}\n{err}",
        out.status
    );
    err
}

/// The ids of the messages in the fake's channel that are parts (documents not named
/// `tgferry-…`: the key file, catalogs and run records are).
fn part_ids(server: &Server) -> std::collections::BTreeSet<i32> {
    server
        .messages(server.channel())
        .into_iter()
        .filter(|m| {
            m.document
                .as_ref()
                .is_some_and(|(name, _, _)| !name.starts_with("tgferry-"))
        })
        .map(|m| m.id)
        .collect()
}

/// The message ids of every part a state refers to.
fn referenced_ids(state: &tgferry::state::State) -> std::collections::BTreeSet<i32> {
    state
        .referenced_locs()
        .into_iter()
        .map(|loc| loc.strip_prefix("msg:").unwrap().parse().unwrap())
        .collect()
}

/// The tgferry binary, SIGKILLed mid-run over MTProto (a hard kill, not a signal it can
/// handle), then run again to the end: every file restores byte for byte, and the only
/// parts in the chat the state does not use are ones sent before the kill (what the kill
/// lost between a send and its checkpoint); nothing is sent twice after it. Then the
/// state file is lost: `tgferry run` starts from the chat's catalog (the job layer's
/// path), sends no part again, and `tgferry restore` with the chat alone gives back
/// every file. For a bot and for a user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_killed_mid_run_resumes_and_a_lost_state_starts_from_the_catalog() {
    tokio::time::timeout(Duration::from_secs(60), async {
        for kind in KINDS {
            // 8 MiB/s a connection: the ~7.5 MiB corpus takes the run most of a second at
            // least, however fast the machine, and the kill comes after the second part
            // (5.5 MiB before the end).
            let server = Server::start(Config {
                rate_limits: false,
                conn_rate: Some(8 << 20),
                ..Config::default()
            })
            .await
            .unwrap();
            let creds = server.credentials(kind);
            let env = env_of(&creds);
            let store = format!("telegram:{}", creds.chat);
            let dir = common::tempdir();
            let (src, state) = (dir.path().join("src"), dir.path().join("state.json"));
            let mut files = BTreeMap::new();
            for (i, (path, len)) in [
                ("big.bin", 3 * MIB + 777),
                ("a/one", MIB),
                ("a/two", MIB + 1),
                ("b/three", 700_000),
                ("b/four", 900_000),
                ("c/small.txt", 3_000),
                ("c/empty", 0),
            ]
            .into_iter()
            .enumerate()
            {
                let data = common::bytes(i as u64 + 10, len);
                let at = src.join(path);
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(&at, &data).unwrap();
                files.insert(path.to_owned(), data);
            }
            let run_args = [
                "run",
                "--source",
                common::s(&src),
                "--store",
                &store,
                "--state",
                common::s(&state),
                "--encryption",
                "vault",
                "--part-size",
                "1MiB",
                "--jobs",
                "2",
            ];

            // The first run, killed once two parts are in the chat.
            let mut child = tgferry_cmd(&env, &run_args).spawn().unwrap();
            let waited = std::time::Instant::now();
            while part_ids(&server).len() < 2 {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{kind:?}: the run ended before the kill"
                );
                assert!(
                    waited.elapsed() < Duration::from_secs(20),
                    "{kind:?}: no part sent within 20 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{kind:?}: the run ended before the kill"
            );
            child.kill().await.unwrap(); // SIGKILL
            let before_kill = part_ids(&server);
            let last_before_kill = *before_kill.last().unwrap();

            // Run again to the end.
            tgferry_ok(&env, &run_args).await;
            let st = common::load(&state);
            assert_eq!(
                st.completed.keys().collect::<Vec<_>>(),
                files.keys().collect::<Vec<_>>(),
                "{kind:?}: every file stored"
            );
            let used = referenced_ids(&st);
            let in_chat = part_ids(&server);
            assert!(
                used.is_subset(&in_chat),
                "{kind:?}: every part is in the chat"
            );
            let lost: Vec<i32> = in_chat.difference(&used).copied().collect();
            assert!(
                lost.iter().all(|id| *id <= last_before_kill),
                "{kind:?}: parts sent after the kill and not used (sent twice): {lost:?}, \
                 last before the kill {last_before_kill}"
            );
            // fakegram's own count: every message the two runs posted is in the chat.
            let posted = server.stats().messages;

            // The state is lost: the next run starts from the chat's catalog and sends no
            // part again.
            std::fs::remove_file(&state).unwrap();
            let _ = std::fs::remove_file(tgferry::state::journal::journal_path(&state));
            let err = tgferry_ok(&env, &run_args).await;
            assert!(err.contains("starting from the catalog"), "{kind:?}: {err}");
            assert_eq!(part_ids(&server), in_chat, "{kind:?}: parts sent again");
            let parts_posted = server.stats().messages - posted;
            eprintln!(
                "{kind:?}: {} parts in the chat at the kill, {} used, lost by the kill {lost:?}, \
                 {parts_posted} messages by the run without a state",
                before_kill.len(),
                used.len()
            );
            assert!(
                parts_posted <= 3,
                "{kind:?}: {parts_posted} messages (at most a catalog, a run record, an index)"
            );
            assert_eq!(
                referenced_ids(&common::load(&state)),
                used,
                "{kind:?}: the same parts"
            );

            // The chat and the passphrase alone restore every file, byte for byte.
            let to = dir.path().join("restored");
            tgferry_ok(
                &env,
                &["restore", "--store", &store, "--to", common::s(&to)],
            )
            .await;
            assert!(
                common::tree(&to) == files,
                "{kind:?}: the restored tree differs from the source"
            );
        }
    })
    .await
    .expect("done within a minute");
}

/// Sends one vault-named part through `store` and returns its location.
async fn send_part<S: Store>(store: &S, seed: u64) -> String {
    let mut up = store
        .begin(&format!("data/0f/{seed:032x}"), 5_000)
        .await
        .unwrap();
    up.write(&common::bytes(seed, 5_000)).await.unwrap();
    up.finish().await.unwrap()
}

/// The double (tests/telegram.rs) and fakegram are one model of the 48-hour rule: through
/// the same store code, a bot deletes a part 47 h 59 min old and keeps (reports) one 48
/// hours old, in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_and_fakegram_agree_on_what_a_bot_may_delete() {
    use tgferry::store::StoreError;
    use tgferry::telegram::double::TelegramDouble;
    let ages = [
        Duration::from_secs(48 * 3600 - 60),
        Duration::from_secs(48 * 3600),
    ];
    let outcome = |r: Result<(), StoreError>| match r {
        Ok(()) => "deleted",
        Err(StoreError::Undeletable { .. }) => "kept",
        Err(e) => panic!("{e}"),
    };
    within_a_minute(async {
        let w = Wire::start(AccountKind::Bot).await;
        let store = w.store();
        store.prepare().await.unwrap();
        let mut wire = Vec::new();
        for (i, age) in ages.iter().enumerate() {
            let loc = send_part(&store, i as u64 + 1).await;
            w.server.advance(*age);
            wire.push(outcome(store.remove(&loc).await));
        }

        let tg = TelegramDouble::bot();
        let double = TelegramStore::new(
            tg.clone(),
            ChatRef::parse("@vault_chan").unwrap(),
            TelegramOptions {
                plain: false,
                premium: false,
            },
        );
        double.prepare().await.unwrap();
        let mut now = 1_700_000_000;
        let mut doubled = Vec::new();
        for (i, age) in ages.iter().enumerate() {
            tg.set_now(now);
            let loc = send_part(&double, i as u64 + 1).await;
            now += age.as_secs() as i64;
            tg.set_now(now);
            doubled.push(outcome(double.remove(&loc).await));
        }
        assert_eq!(wire, ["deleted", "kept"], "fakegram");
        assert_eq!(doubled, wire, "the double");
    })
    .await;
}

/// A part inside a pack is read over MTProto with the `upload.getFile` requests that hold
/// it and no others (fakegram refuses any Telegram would): exactly its bytes at unaligned
/// offsets, across 1 MiB boundaries, ending exactly at the part's end and past it; a small
/// range far into a large part in one small request; and still after the file reference
/// expired (fetched again) and after the file moved to another data centre
/// (FILE_MIGRATE, the authorization copied there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_over_mtproto_fetch_only_the_requests_that_hold_the_range() {
    within_a_minute(async {
        let w = Wire::start(AccountKind::User).await;
        let store = w.store();
        store.prepare().await.unwrap();
        let blob = common::bytes(47, 3 * MIB + 4321);
        let n = blob.len() as u64;
        let loc = common::store_blob(&store, &blob, blob.len()).await;
        let mib = MIB as u64;
        for (offset, len) in common::range_cases(n) {
            common::assert_range("", &store, &loc, &blob, offset, len).await;
        }

        // 200 bytes 3 MiB in: one request of 4 KiB, not the 3 MiB before them.
        let (requests, sent) = (
            w.server.requests("upload.getFile"),
            w.server.stats().bytes_out,
        );
        common::assert_range("", &store, &loc, &blob, 3 * mib + 100, 200).await;
        assert_eq!(w.server.requests("upload.getFile") - requests, 1);
        let sent = w.server.stats().bytes_out - sent;
        assert!(sent < 16 * 1024, "{sent} bytes sent for a 200-byte range");

        // File references expire: the message is fetched again, once.
        w.server.advance(Duration::from_secs(2 * 3600));
        common::assert_range("", &store, &loc, &blob, 2 * mib + 5, 70_000).await;
        // The file in another data centre: FILE_MIGRATE is followed.
        w.server.move_files(4);
        common::assert_range("", &store, &loc, &blob, mib - 1_000, 3_000).await;
        common::assert_range("", &store, &loc, &blob, n - 100, 100).await;
    })
    .await;
}

/// `--tg-connections`: one part's chunks and its downloads are spread over the pool (and
/// over one connection when it has one); a pool connection that drops mid-part is replaced
/// and the part still arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_travels_on_several_connections_and_survives_one_dropping() {
    within_a_minute(async {
        let w = Wire::start(AccountKind::User).await;
        // A big file (saveBigFilePart): 25 chunks of 512 KiB.
        let blob = common::bytes(48, 12 * MIB + 77);
        let n = blob.len() as u64;
        {
            let single = w.store_with(1);
            single.prepare().await.unwrap();
            let loc = common::store_blob(&single, &blob, 100_000).await;
            common::assert_range("", &single, &loc, &blob, 0, n).await;
            let stats = w.server.stats();
            assert_eq!(stats.most_upload_connections(), 1, "one connection");
            assert_eq!(stats.most_download_connections(), 1);
        }

        let store = w.store_with(4);
        store.prepare().await.unwrap();
        // The sixth chunk to arrive takes its connection down with it.
        w.server
            .inject(fakegram::Fault::drop_connection(Some("upload.saveBigFilePart")).after(5));
        let opened = w.server.stats().connections;
        let loc = common::store_blob(&store, &blob, 100_000).await;
        assert_eq!(w.server.pending_faults(), 0, "the drop happened");
        let stats = w.server.stats();
        assert!(
            stats.connections > opened + 4,
            "the dropped connection was replaced: {} connections after {opened}",
            stats.connections
        );
        // Every slot of the pool carried chunks, the dropped one's through its replacement
        // (the connection that dropped counts only if it carried a chunk before the fault,
        // which depends on timing: at least 4, usually 5).
        assert!(
            stats.most_upload_connections() >= 4,
            "the part's chunks went over all four slots: {}",
            stats.most_upload_connections()
        );
        // Downloads spread too (the single store's downloads used one).
        common::assert_range("", &store, &loc, &blob, 0, n).await;
        assert!(w.server.stats().most_download_connections() >= 4);
    })
    .await;
}

/// Sends one small part of `seed` through `store`, failing as the store fails.
async fn try_send(store: &TelegramStore<GrammersApi>, seed: u64) -> Result<String, StoreError> {
    let blob = common::bytes(seed, 1_000);
    let mut up = store.begin("data/ab/small", blob.len() as u64).await?;
    up.write(&blob).await?;
    up.finish().await
}

/// Several bots in one channel (their session lines in TGFERRY_TG_SESSION, as for
/// TGFERRY_TG_BOT_TOKENS): parts go round them, each within its own message limits; a
/// bot told to wait past the deadline is set aside while the others go on; with every bot
/// waiting the store is rate-limited; a bot that is not an admin is named before anything
/// is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_bots_share_the_parts_and_wait_apart() {
    within_a_minute(async {
        // Telegram's message-rate rules on: one bot may send 20 a minute into a channel.
        let mut w = Wire::with(AccountKind::Bot, Config::default()).await;
        let first = w.server.account(AccountKind::Bot);
        let (second, third) = (w.server.add_bot(true), w.server.add_bot(true));
        let ids = [first, second.user.unwrap().id, third.user.unwrap().id];
        let sessions = format!(
            "{},{},{}",
            w.env["TGFERRY_TG_SESSION"], second.session, third.session
        );
        w.env.insert("TGFERRY_TG_SESSION".into(), sessions);
        {
            let store = w.store();
            store.prepare().await.unwrap();
            let mut locs = Vec::new();
            for seed in 0..30 {
                locs.push(try_send(&store, seed).await.unwrap());
            }
            let stats = w.server.stats();
            assert!(stats.flood_waits.is_empty(), "{:?}", stats.flood_waits);
            let by: Vec<u64> = ids.iter().map(|id| stats.messages_by[id]).collect();
            assert_eq!(by, [10, 10, 10], "30 parts, ten a bot");
            // Reads go round the bots too, each finding the message itself.
            for (seed, loc) in locs.iter().enumerate().take(6) {
                let blob = common::bytes(seed as u64, 1_000);
                common::assert_range("", &store, loc, &blob, 0, blob.len() as u64).await;
            }

            // The second bot must wait an hour; the run has a minute.
            store.set_wait_deadline(Some(Instant::now() + Duration::from_secs(60)));
            w.server.inject(
                fakegram::Fault::flood_wait(Some("messages.sendMedia"), 3600).for_account(ids[1]),
            );
            let outcomes = [
                try_send(&store, 100).await,
                try_send(&store, 101).await,
                try_send(&store, 102).await,
            ];
            assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
            // Its part is to be sent again at once (on another bot), not failed.
            match &outcomes[1] {
                Err(StoreError::RateLimited { wait }) => assert!(wait.is_zero()),
                other => panic!("the waiting bot's part: {:?}", other.as_ref().map(drop)),
            }
            for seed in 103..109 {
                try_send(&store, seed).await.unwrap();
            }
            let by = w.server.stats().messages_by;
            assert_eq!(by[&ids[1]], 10, "nothing more went to the waiting bot");
            assert_eq!(by[&ids[0]] + by[&ids[2]], 20 + 8);

            // Every bot waits: the store stops rate-limited, for about the soonest end.
            for id in [ids[0], ids[2]] {
                w.server.inject(
                    fakegram::Fault::flood_wait(Some("messages.sendMedia"), 3600).for_account(id),
                );
            }
            let set_aside = try_send(&store, 200).await;
            assert!(matches!(set_aside, Err(StoreError::RateLimited { wait }) if wait.is_zero()));
            match try_send(&store, 201).await {
                Err(StoreError::RateLimited { wait }) => {
                    assert!(wait > Duration::from_secs(3000), "{wait:?}")
                }
                other => panic!("every bot waiting: {:?}", other.map(drop)),
            }
        }

        // A bot that is a member but not an admin: named, before anything is sent.
        let member = w.server.add_bot(false);
        let sessions = format!("{},{}", w.env["TGFERRY_TG_SESSION"], member.session);
        w.env.insert("TGFERRY_TG_SESSION".into(), sessions);
        let sent = w.server.stats().messages;
        let store = w.store();
        match store.prepare().await {
            Err(StoreError::Denied { message, .. }) => assert!(
                message.contains("account 4 of 4")
                    && message.contains("@fakegram_vault4_bot is not an admin"),
                "{message}"
            ),
            other => panic!("a bot that is not an admin: {other:?}"),
        }
        assert_eq!(w.server.stats().messages, sent);
    })
    .await;
}

/// The runner over several bots: a bot told to wait an hour leaves its part to the others
/// and the run completes; with every bot told to wait the run stops `rate_limited`,
/// nothing lost, and the next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_several_bots_goes_on_while_one_waits_and_stops_when_all_do() {
    within_a_minute(async {
        let mut w = Wire::start(AccountKind::Bot).await;
        let (second, third) = (w.server.add_bot(true), w.server.add_bot(true));
        let ids = [
            w.server.account(AccountKind::Bot),
            second.user.unwrap().id,
            third.user.unwrap().id,
        ];
        let sessions = format!(
            "{},{},{}",
            w.env["TGFERRY_TG_SESSION"], second.session, third.session
        );
        w.env.insert("TGFERRY_TG_SESSION".into(), sessions);
        w.init_vault().await;
        let wait_an_hour =
            |id| fakegram::Fault::flood_wait(Some("messages.sendMedia"), 3600).for_account(id);
        let mut files = BTreeMap::new();

        put(&w.src, &mut files, "a.bin", 1, 300_000);
        w.server.inject(wait_an_hour(ids[0]));
        let r = w.run(Some(Duration::from_secs(20))).await;
        assert_eq!(r.stop_reason, StopReason::Complete);
        assert!(
            r.failed.is_empty(),
            "a part set aside is not a failure: {:?}",
            r.failed
        );
        assert_eq!(
            w.server.pending_faults(),
            0,
            "the first bot was told to wait"
        );
        let by = w.server.stats().messages_by;
        assert!(
            by.get(&ids[1]).or(by.get(&ids[2])).is_some(),
            "another bot sent the part"
        );

        put(&w.src, &mut files, "b.bin", 2, 300_000);
        for id in ids {
            w.server.inject(wait_an_hour(id));
        }
        let r = w.run(Some(Duration::from_secs(20))).await;
        assert_eq!(r.stop_reason, StopReason::RateLimited);
        let wait = r.rate_limit_wait.expect("how long to wait");
        assert!(wait > Duration::from_secs(3000), "{wait:?}");

        let r = w.run(Some(Duration::from_secs(20))).await;
        assert_eq!(r.stop_reason, StopReason::Complete);
        w.assert_restores(&files).await;
    })
    .await;
}

/// The double's download rules (`api::check_download`, which the grammers adapter also
/// checks before it sends) and fakegram's (`rules::check_download`, non-precise) are one
/// model: they accept and refuse the same requests, with the same error.
#[test]
fn the_double_and_fakegram_agree_on_download_alignment() {
    use tgferry::telegram::api::{check_download, download_window};
    let mib = MIB as u64;
    let offsets = [
        0,
        1024,
        4096,
        8192,
        12_288,
        512 * 1024,
        768 * 1024,
        mib - 4096,
        mib - 8192,
        mib,
        3 * mib + 4096,
        100,
    ];
    let limits = [
        0u32,
        1024,
        3000,
        4096,
        8192,
        12_288,
        65_536,
        512 * 1024,
        MIB as u32,
        2 * MIB as u32,
    ];
    for offset in offsets {
        for limit in limits {
            let ours = check_download(offset, limit).map_err(|e| match e {
                TgError::Invalid(m) => m,
                e => panic!("{e}"),
            });
            let fake = fakegram::rules::check_download(offset as i64, limit as i32, false)
                .map_err(|e| e.message);
            assert_eq!(ours, fake, "offset {offset}, limit {limit}");
        }
    }
    // The windows ranged reads use are requests fakegram takes.
    for len in [1, 4096, 4097, 100_000, 600_000, u64::MAX] {
        let window = download_window(len);
        for k in 0..300u64 {
            let offset = k * u64::from(window);
            assert!(
                fakegram::rules::check_download(offset as i64, window as i32, false).is_ok(),
                "{offset}+{window}"
            );
        }
    }
}
