//! fakegram: a Telegram on 127.0.0.1 that the real grammers client talks to.
//!
//! It speaks MTProto 2.0 over TCP (the Full transport), one listener per data centre,
//! and models the part of Telegram tgferry uses: accounts (a user with an optional
//! two-step password, and a bot), a channel the user owns and the bot administers, basic
//! groups, uploads in parts, documents and photos (videos, music and voice notes by file
//! extension), messages, forwards, pins, edits, deletes, each channel's update log and
//! `updates.getChannelDifference`, downloads, takeout sessions, data centres and
//! authorization transfer between them — with Telegram's rules ([`rules`], each with its
//! source), a clock tests can move ([`Clock`]), a per-connection bandwidth cap and
//! injected faults ([`Fault`]). Chats full of media can be seeded from a folder
//! ([`Server::seed_chat`]).
//!
//! Telegram's RSA keys are built into every client, so no key exchange can be faked: the
//! fake makes the authorization keys itself and hands them out in tgferry's session line
//! ([`Credentials::session`]), with every data centre's address pointing at it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = fakegram::Server::start(fakegram::Config::default()).await?;
//! let creds = server.credentials(fakegram::AccountKind::User);
//! // TGFERRY_TG_API_ID, TGFERRY_TG_API_HASH, TGFERRY_TG_SESSION, TGFERRY_TG_CHAT:
//! println!("{}", creds.shell_line());
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod clock;
mod conn;
mod faults;
mod media;
mod model;
mod rpc;
pub mod rules;
mod session;
pub mod srp;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::Clock;
pub use faults::{Action, Fault, Faults};
use model::{Blobs, Channel, DcInfo, Group, Persisted, User, World, random_i64, random_id_below};
pub use model::{MediaKind, Stats};
pub use rpc::RpcErr;
pub use session::{DcEntry, SESSION_PREFIX, SessionUser, session_line};

/// Which account a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// The user that owns the channel.
    User,
    /// The bot that administers it.
    Bot,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data centres (at least two; default 1 to 5, like Telegram's).
    pub dcs: Vec<i32>,
    /// The accounts' home data centre (default 2).
    pub home_dc: i32,
    /// Where new documents are stored (`None`: the data centre they were uploaded to).
    pub file_dc: Option<i32>,
    /// Per-connection bandwidth cap, bytes a second each way (`None`: no cap).
    pub conn_rate: Option<u64>,
    /// Keep the model (and document bytes) here across restarts.
    pub state_dir: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1).
    pub listen: IpAddr,
    /// The first data centre's port; the others follow it (`None`: any free ports).
    pub port: Option<u16>,
    /// The user's two-step verification password.
    pub password: Option<String>,
    /// The user is Premium (8000 parts, 4096-character captions).
    pub premium: bool,
    /// Apply the message-rate rules ([`rules::SendRate`]).
    pub rate_limits: bool,
    /// How long uploaded parts wait for their message.
    pub part_lifetime: Duration,
    /// How long file references stay valid.
    pub file_reference_lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dcs: vec![1, 2, 3, 4, 5],
            home_dc: 2,
            file_dc: None,
            conn_rate: None,
            state_dir: None,
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            password: None,
            premium: false,
            rate_limits: true,
            part_lifetime: rules::DEFAULT_PART_LIFETIME,
            file_reference_lifetime: rules::DEFAULT_FILE_REFERENCE_LIFETIME,
        }
    }
}

/// What a client needs to use the fake: tgferry's environment variables, and the pieces
/// for a raw grammers client.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `TGFERRY_TG_API_ID`.
    pub api_id: i32,
    /// `TGFERRY_TG_API_HASH`.
    pub api_hash: String,
    /// `TGFERRY_TG_SESSION`: tgferry's session line.
    pub session: String,
    /// `TGFERRY_TG_CHAT`: the channel, as `-100…`.
    pub chat: String,
    /// The session's home data centre.
    pub home_dc: i32,
    /// Every data centre: address and key.
    pub dcs: Vec<DcEntry>,
    /// The signed-in account (`None` for the login session).
    pub user: Option<SessionUser>,
}

impl Credentials {
    /// `export TGFERRY_TG_API_ID=… TGFERRY_TG_API_HASH=… TGFERRY_TG_SESSION=… TGFERRY_TG_CHAT=…`
    /// (one line for `eval`; no value needs quoting).
    pub fn shell_line(&self) -> String {
        format!(
            "export TGFERRY_TG_API_ID={} TGFERRY_TG_API_HASH={} TGFERRY_TG_SESSION={} TGFERRY_TG_CHAT={}",
            self.api_id, self.api_hash, self.session, self.chat
        )
    }
}

/// A chat in the model, for inspection and for tests that add chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chat {
    /// A channel or supergroup.
    Channel(i64),
    /// A basic group.
    Group(i64),
    /// An account's Saved Messages.
    Saved(AccountKind),
}

impl Chat {
    /// The chat as tgferry's `--store telegram:<chat>` names it (`-100…`, `-…`, `me`).
    pub fn spec(&self) -> String {
        match self {
            Chat::Channel(id) => format!("-100{id}"),
            Chat::Group(id) => format!("-{id}"),
            Chat::Saved(_) => "me".into(),
        }
    }
}

/// A message as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// Its id.
    pub id: i32,
    /// When it was sent (model time).
    pub date: i64,
    /// Its sender.
    pub from: i64,
    /// Its text or caption.
    pub text: String,
    /// Its document: file name, size and the data centre holding it.
    pub document: Option<(String, u64, i32)>,
    /// Its photo: the name it was posted under, size of the largest size, data centre.
    pub photo: Option<(String, u64, i32)>,
    /// The kind of its media (`None`: no media).
    pub kind: Option<MediaKind>,
    /// When it was last edited.
    pub edit_date: Option<i64>,
    /// A forward: the id of the message first posted (in the chat it came from).
    pub forward_of: Option<i32>,
    /// Pinned.
    pub pinned: bool,
    /// A service message about pinning this message id.
    pub pin_of: Option<i32>,
}

/// What connections and the server's handle share.
pub(crate) struct Shared {
    pub(crate) world: Mutex<World>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) conn_rate: Option<u64>,
    pub(crate) salt: i64,
    pub(crate) conns: Mutex<HashMap<u64, watch::Sender<bool>>>,
    pub(crate) next_conn: AtomicU64,
}

impl Shared {
    pub(crate) fn lock_world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_conns(&self) -> MutexGuard<'_, HashMap<u64, watch::Sender<bool>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Telegram (see the crate documentation). Dropping it stops it.
pub struct Server {
    shared: Arc<Shared>,
    clock: Arc<Clock>,
    addrs: BTreeMap<i32, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    state_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut b = [0u8; 35];
    getrandom::fill(&mut b).expect("the OS gives random bytes");
    b.iter()
        .map(|x| ALPHABET[(*x as usize) % ALPHABET.len()] as char)
        .collect()
}

/// A new model: the user, the bot, the channel, and keys for every data centre.
fn fresh(config: &Config) -> Persisted {
    let owner = 1_000_000_000 + random_id_below(5_000_000_000);
    let bot = 6_000_000_000 + random_id_below(1_000_000_000);
    let channel = 1_000_000_000 + random_id_below(1_000_000_000);
    let now = clock::Clock::default().now();
    let mut users = BTreeMap::new();
    users.insert(
        owner,
        User {
            id: owner,
            access_hash: random_i64(),
            first_name: "Fakegram".into(),
            username: Some("fakegram_owner".into()),
            phone: Some(format!("+1555010{:04}", random_id_below(10_000))),
            bot: false,
            premium: config.premium,
            token: None,
            home_dc: config.home_dc,
            password: config
                .password
                .as_deref()
                .map(|p| srp::Verifier::new(p, Some("the fakegram password".into()))),
        },
    );
    users.insert(
        bot,
        User {
            id: bot,
            access_hash: random_i64(),
            first_name: "Fakegram bot".into(),
            username: Some("fakegram_vault_bot".into()),
            phone: None,
            bot: true,
            premium: false,
            token: Some(format!("{bot}:{}", random_token())),
            home_dc: config.home_dc,
            password: None,
        },
    );
    let mut channels = BTreeMap::new();
    channels.insert(
        channel,
        Channel {
            id: channel,
            access_hash: random_i64(),
            title: "fakegram vault".into(),
            username: None,
            broadcast: true,
            date: now,
            creator: owner,
            admins: BTreeSet::from([bot]),
            members: BTreeSet::from([owner, bot]),
            last_id: 0,
            messages: BTreeMap::new(),
            pts: 1,
            log: Vec::new(),
        },
    );
    let secret = format!("{:016x}{:016x}", random_i64(), random_i64());
    let mut p = Persisted {
        api_id: 100_000 + random_id_below(900_000) as i32,
        api_hash: format!("{:016x}{:016x}", random_i64(), random_i64()),
        dcs: Vec::new(),
        file_dc: config.file_dc,
        users,
        keys: Vec::new(),
        channels,
        groups: BTreeMap::new(),
        boxes: BTreeMap::new(),
        documents: BTreeMap::new(),
        photos: BTreeMap::new(),
        takeouts: BTreeMap::new(),
        secret,
        owner,
        bot,
        channel,
        sessions: BTreeMap::new(),
        login_keys: BTreeMap::new(),
    };
    let add = |dc: i32, user: Option<i64>, keys: &mut Vec<model::KeyEntry>| {
        keys.push(model::KeyEntry {
            key: wire::crypto::AuthKey::random(),
            dc,
            user,
            dead: false,
        });
        keys.len() - 1
    };
    for account in [owner, bot] {
        let mut map = BTreeMap::new();
        for &dc in &config.dcs {
            let user = (dc == config.home_dc).then_some(account);
            map.insert(dc, add(dc, user, &mut p.keys));
        }
        p.sessions.insert(account, map);
    }
    for &dc in &config.dcs {
        let i = add(dc, None, &mut p.keys);
        p.login_keys.insert(dc, i);
    }
    p
}

impl Server {
    /// Starts a server: loads the state directory's model if there is one (else makes a
    /// new one) and listens for each data centre.
    pub async fn start(config: Config) -> io::Result<Server> {
        if config.dcs.len() < 2 || !config.dcs.contains(&config.home_dc) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "fakegram needs at least two data centres, the home data centre among them",
            ));
        }
        let loaded = match &config.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                World::load(dir)?
            }
            None => None,
        };
        let restarted = loaded.is_some();
        let mut p = loaded.unwrap_or_else(|| fresh(&config));
        let mut listeners = Vec::new();
        let mut addrs = BTreeMap::new();
        let dc_ids: Vec<i32> = if restarted {
            p.dcs.iter().map(|d| d.id).collect()
        } else {
            config.dcs.clone()
        };
        for (i, dc) in dc_ids.iter().enumerate() {
            let port = match (restarted, config.port) {
                (true, _) => p.dcs.iter().find(|d| d.id == *dc).map_or(0, |d| d.port),
                (false, Some(base)) => base + i as u16,
                (false, None) => 0,
            };
            let listener = TcpListener::bind(SocketAddr::new(config.listen, port))
                .await
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot listen for data centre {dc} on {}:{port}: {e}",
                            config.listen
                        ),
                    )
                })?;
            addrs.insert(*dc, listener.local_addr()?);
            listeners.push((*dc, listener));
        }
        p.dcs = addrs
            .iter()
            .map(|(id, a)| DcInfo {
                id: *id,
                port: a.port(),
            })
            .collect();
        let clock = Arc::new(Clock::default());
        let blobs = match &config.state_dir {
            Some(dir) => Blobs::Dir(dir.clone()),
            None => Blobs::Memory {
                docs: HashMap::new(),
                parts: HashMap::new(),
            },
        };
        let world = World {
            p,
            blobs,
            clock: Arc::clone(&clock),
            part_lifetime: config.part_lifetime.as_secs() as i64,
            file_reference_lifetime: config.file_reference_lifetime.as_secs() as i64,
            rate_limits: config.rate_limits,
            uploads: HashMap::new(),
            codes: HashMap::new(),
            last_code: None,
            password_pending: HashMap::new(),
            srp: HashMap::new(),
            exported: HashMap::new(),
            send_rates: HashMap::new(),
            bot_signins: HashMap::new(),
            sessions_seen: Default::default(),
            stats: Stats::default(),
            dirty: true,
        };
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            faults: Mutex::new(Faults::default()),
            conn_rate: config.conn_rate,
            salt: random_i64(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        });
        let mut tasks = Vec::new();
        for (dc, listener) in listeners {
            let shared = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(conn::serve(Arc::clone(&shared), dc, stream));
                        }
                        Err(e) => {
                            tracing::warn!(dc, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
        if let Some(dir) = config.state_dir.clone() {
            let shared = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    save(&shared, &dir);
                }
            }));
        }
        let server = Server {
            shared,
            clock,
            addrs,
            tasks,
            state_dir: config.state_dir,
        };
        server.flush();
        Ok(server)
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.shared.lock_world()
    }

    /// Where each data centre listens.
    pub fn addrs(&self) -> &BTreeMap<i32, SocketAddr> {
        &self.addrs
    }

    /// The model's clock: move it forward to make time pass for the server.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Moves the model's clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn dc_entries(&self, keys: &BTreeMap<i32, usize>) -> Vec<DcEntry> {
        let w = self.world();
        keys.iter()
            .map(|(dc, i)| DcEntry {
                id: *dc,
                addr: self.addrs[dc],
                key: *w.p.keys[*i].key.bytes(),
            })
            .collect()
    }

    fn account_id(&self, kind: AccountKind) -> i64 {
        let w = self.world();
        match kind {
            AccountKind::User => w.p.owner,
            AccountKind::Bot => w.p.bot,
        }
    }

    /// The credentials of `kind`'s session (signed in, with keys for every data centre;
    /// only the home one is authorized, as after a real login).
    pub fn credentials(&self, kind: AccountKind) -> Credentials {
        self.credentials_of(self.account_id(kind))
    }

    /// Adds a bot to the model, a member of the channel and, when `admin`, its
    /// administrator (several bots sending into one channel); its credentials, as
    /// [`Server::credentials`] gives them. Each bot has its own message-rate limits.
    pub fn add_bot(&self, admin: bool) -> Credentials {
        let id = {
            let mut w = self.world();
            let id = 6_000_000_000 + random_id_below(1_000_000_000);
            let n = w.p.users.values().filter(|u| u.bot).count() + 1;
            let home_dc = w.user(w.p.bot).expect("the first bot").home_dc;
            w.p.users.insert(
                id,
                User {
                    id,
                    access_hash: random_i64(),
                    first_name: format!("Fakegram bot {n}"),
                    username: Some(format!("fakegram_vault{n}_bot")),
                    phone: None,
                    bot: true,
                    premium: false,
                    token: Some(format!("{id}:{}", random_token())),
                    home_dc,
                    password: None,
                },
            );
            let dcs: Vec<i32> = w.p.dcs.iter().map(|d| d.id).collect();
            let mut map = BTreeMap::new();
            for dc in dcs {
                w.p.keys.push(model::KeyEntry {
                    key: wire::crypto::AuthKey::random(),
                    dc,
                    user: (dc == home_dc).then_some(id),
                    dead: false,
                });
                map.insert(dc, w.p.keys.len() - 1);
            }
            w.p.sessions.insert(id, map);
            let channel = w.p.channel;
            let c = w.p.channels.get_mut(&channel).expect("the channel");
            c.members.insert(id);
            if admin {
                c.admins.insert(id);
            }
            id
        };
        self.credentials_of(id)
    }

    fn credentials_of(&self, id: i64) -> Credentials {
        let (keys, user, api_id, api_hash, chat) = {
            let w = self.world();
            let u = w.user(id).expect("the account exists");
            (
                w.p.sessions[&id].clone(),
                SessionUser {
                    id,
                    access_hash: u.access_hash,
                    bot: u.bot,
                },
                w.p.api_id,
                w.p.api_hash.clone(),
                Chat::Channel(w.p.channel).spec(),
            )
        };
        let home = self.world().user(id).expect("exists").home_dc;
        let dcs = self.dc_entries(&keys);
        Credentials {
            api_id,
            api_hash,
            session: session_line(home, &dcs, Some(user)),
            chat,
            home_dc: home,
            dcs,
            user: Some(user),
        }
    }

    /// A session with keys for every data centre and no account, for logging in with a
    /// code (and password). Its home data centre is the first one (not the accounts'), so
    /// that the login meets `PHONE_MIGRATE_X`.
    pub fn login_credentials(&self) -> Credentials {
        let keys = self.world().p.login_keys.clone();
        let dcs = self.dc_entries(&keys);
        let home = dcs[0].id;
        let (api_id, api_hash, chat) = {
            let w = self.world();
            (
                w.p.api_id,
                w.p.api_hash.clone(),
                Chat::Channel(w.p.channel).spec(),
            )
        };
        Credentials {
            api_id,
            api_hash,
            session: session_line(home, &dcs, None),
            chat,
            home_dc: home,
            dcs,
            user: None,
        }
    }

    /// The user's phone number (for `auth.sendCode`).
    pub fn phone(&self) -> String {
        let w = self.world();
        w.user(w.p.owner)
            .and_then(|u| u.phone.clone())
            .unwrap_or_default()
    }

    /// The last login code sent.
    pub fn last_login_code(&self) -> Option<String> {
        self.world().last_code.clone()
    }

    /// The bot's token.
    pub fn bot_token(&self) -> String {
        let w = self.world();
        w.user(w.p.bot)
            .and_then(|u| u.token.clone())
            .unwrap_or_default()
    }

    /// The id of `kind`'s account.
    pub fn account(&self, kind: AccountKind) -> i64 {
        self.account_id(kind)
    }

    /// The channel the user owns and the bot administers.
    pub fn channel(&self) -> Chat {
        Chat::Channel(self.world().p.channel)
    }

    /// Adds a channel (broadcast) owned by the user, with the bot as administrator when
    /// `with_bot`, public when `username` is set.
    pub fn create_channel(&self, title: &str, username: Option<&str>, with_bot: bool) -> Chat {
        let mut w = self.world();
        let id = 1_000_000_000 + random_id_below(1_000_000_000);
        let (owner, bot) = (w.p.owner, w.p.bot);
        let mut members = BTreeSet::from([owner]);
        let mut admins = BTreeSet::new();
        if with_bot {
            members.insert(bot);
            admins.insert(bot);
        }
        let now = w.now();
        w.p.channels.insert(
            id,
            Channel {
                id,
                access_hash: random_i64(),
                title: title.into(),
                username: username.map(str::to_owned),
                broadcast: true,
                date: now,
                creator: owner,
                admins,
                members,
                last_id: 0,
                messages: BTreeMap::new(),
                pts: 1,
                log: Vec::new(),
            },
        );
        w.dirty = true;
        Chat::Channel(id)
    }

    /// Adds a basic group made by the user, with the bot as member when `with_bot`.
    pub fn create_group(&self, title: &str, with_bot: bool) -> Chat {
        let mut w = self.world();
        let id = 100_000_000 + random_id_below(900_000_000);
        let (owner, bot) = (w.p.owner, w.p.bot);
        let mut members = BTreeSet::from([owner]);
        if with_bot {
            members.insert(bot);
        }
        let now = w.now();
        w.p.groups.insert(
            id,
            Group {
                id,
                title: title.into(),
                date: now,
                creator: owner,
                members,
            },
        );
        w.dirty = true;
        Chat::Group(id)
    }

    /// The messages of `chat` (as the user sees them; a bot's Saved Messages as the bot),
    /// oldest first.
    pub fn messages(&self, chat: Chat) -> Vec<MessageView> {
        let w = self.world();
        let view = |m: &model::Msg| MessageView {
            id: m.id,
            date: m.date,
            from: m.from,
            text: m.text.clone(),
            document: m
                .doc
                .and_then(|d| w.p.documents.get(&d))
                .map(|d| (d.name.clone(), d.size, d.dc)),
            photo: m
                .photo
                .and_then(|p| w.p.photos.get(&p))
                .map(|p| (p.name.clone(), p.size, p.dc)),
            kind: match (m.doc, m.photo) {
                (_, Some(_)) => Some(MediaKind::Photo),
                (Some(d), _) => w.p.documents.get(&d).map(|d| d.kind),
                _ => None,
            },
            edit_date: m.edit_date,
            forward_of: m.fwd.map(|f| f.id),
            pinned: m.pinned,
            pin_of: m.service.map(|model::Service::Pin(id)| id),
        };
        match chat {
            Chat::Channel(id) => {
                w.p.channels
                    .get(&id)
                    .map(|c| c.messages.values().map(view).collect())
                    .unwrap_or_default()
            }
            Chat::Group(id) => {
                w.p.boxes
                    .get(&w.p.owner)
                    .map(|b| {
                        b.messages
                            .values()
                            .filter(|m| m.peer == model::Peer::Chat(id))
                            .map(view)
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Chat::Saved(kind) => {
                let user = match kind {
                    AccountKind::User => w.p.owner,
                    AccountKind::Bot => w.p.bot,
                };
                w.p.boxes
                    .get(&user)
                    .map(|b| {
                        b.messages
                            .values()
                            .filter(|m| m.peer == model::Peer::User(user))
                            .map(view)
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }

    /// The account whose box holds `chat`'s messages, and the chat as the model names it.
    fn locate(w: &World, chat: Chat) -> (i64, model::Peer) {
        match chat {
            Chat::Channel(c) => (w.p.owner, model::Peer::Channel(c)),
            Chat::Group(g) => (w.p.owner, model::Peer::Chat(g)),
            Chat::Saved(AccountKind::User) => (w.p.owner, model::Peer::User(w.p.owner)),
            Chat::Saved(AccountKind::Bot) => (w.p.bot, model::Peer::User(w.p.bot)),
        }
    }

    /// The document or photo id of message `id` in `chat` (`None`: no such message, or
    /// no media).
    pub fn media_id(&self, chat: Chat, id: i32) -> Option<i64> {
        let w = self.world();
        let (viewer, peer) = Self::locate(&w, chat);
        let m = w.message(viewer, peer, id)?;
        m.doc.or(m.photo)
    }

    /// The bytes of the document (or the original of the photo) of message `id` in
    /// `chat`.
    pub fn document_bytes(&self, chat: Chat, id: i32) -> Option<Vec<u8>> {
        let file = self.media_id(chat, id)?;
        let w = self.world();
        let size = match w.p.documents.get(&file) {
            Some(d) => d.size,
            None => w.p.photos.get(&file)?.size,
        };
        w.blobs.read(file, 0, size as usize).ok()
    }

    /// Flips one byte of the document (or photo) of message `id` (a corrupted part).
    pub fn corrupt(&self, chat: Chat, id: i32, at: u64) -> io::Result<()> {
        let file = self
            .media_id(chat, id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no document"))?;
        self.world().blobs.corrupt(file, at)
    }

    /// The user posts the file `name` (`bytes`) into `chat` as Telegram's apps would: a
    /// photo, video, music file, voice note or plain document by its extension
    /// (`.jpg .jpeg .png .webp`, `.mp4 .mov .mkv`, `.mp3 .m4a .flac .ogg`, `.oga .opus`,
    /// anything else); a channel's update log records it. Returns the message id.
    pub fn post_media(&self, chat: Chat, name: &str, bytes: &[u8]) -> i32 {
        let mut w = self.world();
        let owner = w.p.owner;
        let (_, peer) = Self::locate(&w, chat);
        let peer = match peer {
            model::Peer::User(_) => model::Peer::User(owner),
            p => p,
        };
        rpc::post_media_for_tests(&mut w, owner, peer, name, bytes, None)
            .expect("the file store takes the bytes")
    }

    /// The user forwards message `id` of `from` into `to`: the same document or photo
    /// (same id and access hash) in a new message with a forward header. Returns the new
    /// message's id. Panics if there is no such message.
    pub fn forward(&self, from: Chat, id: i32, to: Chat) -> i32 {
        let mut w = self.world();
        let owner = w.p.owner;
        let (viewer, source) = Self::locate(&w, from);
        let (_, target) = Self::locate(&w, to);
        let target = match target {
            model::Peer::User(_) => model::Peer::User(owner),
            p => p,
        };
        rpc::forward_for_tests(&mut w, owner, viewer, source, id, target)
            .unwrap_or_else(|| panic!("no message {id} in {from:?}"))
    }

    /// Replaces the media of message `id` of `chat` with a new file `name` (a new
    /// document or photo id, kind by extension), as an edit: `edit_date` now, logged as
    /// an edit in a channel. Panics if there is no such message.
    pub fn edit_media(&self, chat: Chat, id: i32, name: &str, bytes: &[u8]) {
        let mut w = self.world();
        let (viewer, peer) = Self::locate(&w, chat);
        let found = rpc::edit_media_for_tests(&mut w, viewer, peer, id, name, bytes)
            .expect("the file store takes the bytes");
        assert!(found, "no message {id} in {chat:?}");
    }

    /// Bytes `upload.getFile` has answered with for document or photo `media_id` (every
    /// size of a photo counted), so a test can see a file was downloaded once.
    pub fn bytes_served(&self, media_id: i64) -> u64 {
        self.world()
            .stats
            .served
            .get(&media_id)
            .copied()
            .unwrap_or(0)
    }

    /// Makes every bot of the server a member and administrator of channel `chat` (bots
    /// added since it was seeded, as `--bots` adds on each start).
    pub fn make_bots_admins(&self, chat: Chat) {
        let mut w = self.world();
        let bots: Vec<i64> = w.p.users.values().filter(|u| u.bot).map(|u| u.id).collect();
        if let Chat::Channel(id) = chat
            && let Some(ch) = w.p.channels.get_mut(&id)
        {
            ch.members.extend(&bots);
            ch.admins.extend(&bots);
            w.dirty = true;
        }
    }

    /// The channel with @`username` (any case), if there is one.
    pub fn find_channel(&self, username: &str) -> Option<Chat> {
        let name = username.trim_start_matches('@');
        self.world()
            .p
            .channels
            .values()
            .find(|c| {
                c.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name))
            })
            .map(|c| Chat::Channel(c.id))
    }

    /// Makes a public broadcast channel @`username` owned by the user, with every bot of
    /// the server (the first and those [`Server::add_bot`] added) an administrator, and
    /// posts every regular file under `dir` (recursively; symbolic links are skipped) as
    /// one media message named by its file name, kind by extension as in
    /// [`Server::post_media`] — in the byte order of their paths relative to `dir`, dated
    /// one second apart and ending now. Refuses a username Telegram would refuse or one
    /// taken; errors name the folder.
    pub fn seed_chat(&self, username: &str, dir: &Path) -> io::Result<Chat> {
        let fail = |kind: io::ErrorKind, what: String| {
            io::Error::new(
                kind,
                format!("seeding @{username} from {}: {what}", dir.display()),
            )
        };
        if !rules::username_valid(username) {
            return Err(fail(
                io::ErrorKind::InvalidInput,
                "a username is 5 to 32 letters, digits and underscores, begins with a letter \
                 and does not end with an underscore"
                    .into(),
            ));
        }
        if self.find_channel(username).is_some()
            || self.world().p.users.values().any(|u| {
                u.username
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(username))
            })
        {
            return Err(fail(
                io::ErrorKind::AlreadyExists,
                "the username is taken".into(),
            ));
        }
        let files = media::files_under(dir).map_err(|e| fail(e.kind(), e.to_string()))?;
        let chat = self.create_channel(username, Some(username), false);
        self.make_bots_admins(chat);
        let Chat::Channel(id) = chat else {
            unreachable!("create_channel makes channels")
        };
        // The channel is as old as its first message.
        if let Some(ch) = self.world().p.channels.get_mut(&id) {
            ch.date -= files.len() as i64;
        }
        let n = files.len() as i64;
        for (i, (path, name)) in files.iter().enumerate() {
            let bytes = std::fs::read(path)
                .map_err(|e| fail(e.kind(), format!("cannot read {}: {e}", path.display())))?;
            let mut w = self.world();
            let date = w.now() - (n - 1 - i as i64);
            let owner = w.p.owner;
            rpc::post_media_for_tests(
                &mut w,
                owner,
                model::Peer::Channel(id),
                name,
                &bytes,
                Some(date),
            )
            .map_err(|e| fail(e.kind(), format!("cannot store {}: {e}", path.display())))?;
        }
        Ok(chat)
    }

    /// Someone else (the user, for a chat the bot uses) posts `text`.
    pub fn post_as_user(&self, chat: Chat, text: &str) -> i32 {
        let mut w = self.world();
        let owner = w.p.owner;
        let peer = match chat {
            Chat::Channel(c) => model::Peer::Channel(c),
            Chat::Group(g) => model::Peer::Chat(g),
            Chat::Saved(_) => model::Peer::User(owner),
        };
        rpc::post_for_tests(&mut w, owner, peer, text)
    }

    /// Deletes message `id` of `chat` behind the client's back (a channel logs the
    /// delete: its pts moves by one).
    pub fn delete_message(&self, chat: Chat, id: i32) {
        let mut w = self.world();
        let (viewer, peer) = Self::locate(&w, chat);
        rpc::delete_for_tests(&mut w, viewer, peer, id);
    }

    /// Moves every document and photo to data centre `dc` (downloads elsewhere get
    /// FILE_MIGRATE).
    pub fn move_files(&self, dc: i32) {
        let mut w = self.world();
        for d in w.p.documents.values_mut() {
            d.dc = dc;
        }
        for p in w.p.photos.values_mut() {
            p.dc = dc;
        }
        w.dirty = true;
    }

    /// Stores new documents in data centre `dc` (`None`: where they are uploaded).
    pub fn set_file_dc(&self, dc: Option<i32>) {
        let mut w = self.world();
        w.p.file_dc = dc;
        w.dirty = true;
    }

    /// Declares `kind`'s keys used from two places at once: every later request with them
    /// fails with AUTH_KEY_DUPLICATED (406), as Telegram does for a session that was
    /// copied.
    pub fn duplicate_session(&self, kind: AccountKind) {
        let id = self.account_id(kind);
        let mut w = self.world();
        let keys: Vec<usize> = w.p.sessions[&id].values().copied().collect();
        for i in keys {
            w.p.keys[i].dead = true;
        }
        w.dirty = true;
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock_faults().push(fault);
    }

    /// Faults queued and not yet spent.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock_faults().pending()
    }

    /// Closes every open connection now.
    pub fn drop_connections(&self) {
        for close in self.shared.lock_conns().values() {
            let _ = close.send(true);
        }
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.shared.lock_conns().len()
    }

    /// Requests and flood waits so far.
    pub fn stats(&self) -> Stats {
        self.world().stats.clone()
    }

    /// Requests of one method so far (`upload.saveFilePart`).
    pub fn requests(&self, method: &str) -> u64 {
        self.world()
            .stats
            .requests
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// Upload parts waiting for their message.
    pub fn pending_uploads(&self) -> usize {
        self.world().uploads.len()
    }

    /// Stops the server: closes every connection and listener (their ports are free when
    /// this returns) and writes the state directory.
    pub async fn shutdown(mut self) {
        self.flush();
        self.drop_connections();
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }

    /// Writes the state directory now (the server also does every second it changed).
    pub fn flush(&self) {
        if let Some(dir) = &self.state_dir {
            save(&self.shared, dir);
        }
    }
}

/// Writes the model to `dir` if it changed.
fn save(shared: &Shared, dir: &std::path::Path) {
    let mut w = shared.lock_world();
    if w.dirty
        && let Err(e) = w.save(dir)
    {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot write the state directory");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.flush();
        for t in &self.tasks {
            t.abort();
        }
        self.drop_connections();
    }
}
