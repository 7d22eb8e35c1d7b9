//! A Telegram chat as a store: [`TelegramStore`] over any [`TelegramApi`] (the grammers
//! adapter in production, the in-memory double in tests).
//!
//! - A part is one document message; its location in the state is `msg:<id>`. Parts are
//!   sent in 512 KiB chunks, two in flight for every connection the API spreads them over
//!   ([`TelegramApi::connections`], `--tg-connections`) across all the store's uploads,
//!   and become a message only when every chunk is in: a run that stops mid-part leaves
//!   no message, and the part is sent again whole (Telegram forgets unsent chunks within
//!   hours, so nothing smaller is ever resumed).
//! - Vault parts get a neutral name (`<32 hex>.bin`) and no caption. Plain parts keep their
//!   file's name (`.001`, `.002`… when split) with the relative path and `#tgferry` as the
//!   caption, so they can be viewed in Telegram.
//! - Meta blobs (key file, catalog) are documents named `tgferry-<name>`; one pinned text
//!   message, the *index*, maps each name to its message id, so that a restore finds them
//!   with nothing but the chat.
//! - Several accounts (bots in one channel, [`TelegramStore::with_accounts`]): each new
//!   part and read goes to the next free account; the index and meta blobs stay with the
//!   first.
//! - Server-imposed waits (`FLOOD_WAIT_X`, `FLOOD_PREMIUM_WAIT_X`, `SLOWMODE_WAIT_X`) pause
//!   every request of that account; a wait is sat out when it ends before the wait
//!   deadline the runner set ([`Store::set_wait_deadline`]); a longer one sets the account
//!   aside and gives the part back at once (a zero [`StoreError::RateLimited`]) while
//!   another account is free, and otherwise surfaces as [`StoreError::RateLimited`] and
//!   the runner checkpoints and stops. Dropped connections are reconnected and the request
//!   retried (downloads resume at their offset).
//! - A ranged read ([`Store::open_range`]: a part inside a pack) downloads only the aligned
//!   requests that hold the range (`upload.getFile`'s rules, [`api::check_download`]),
//!   sized to the range ([`api::download_window`]), and cuts them to it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{PartInfo, Store, StoreError, Upload};
use crate::telegram::api::{
    self, Account, CHUNK, ChatRef, DOWNLOAD_CHUNK, MAX_IDS_PER_CALL, MessageInfo, TelegramApi,
    TgError, UploadRef,
};
use crate::telegram::wait::WaitDeadline;

/// Requests for file bytes in flight per connection of the API: one being carried and one
/// ready behind it, so that no connection idles between two.
const IN_FLIGHT_PER_CONNECTION: usize = 2;
/// Fewest requests for file bytes in flight (a single connection still pipelines).
const MIN_IN_FLIGHT: usize = 4;
/// Retries of one request after dropped connections.
const RECONNECTS: usize = 5;
/// Most prefetched message lookups kept.
const LOOKUP_CACHE: usize = 10_000;
/// First line of the pinned index message.
const INDEX_HEADER: &str = "tgferry index v1";
/// Marker line in the caption of plain-mode parts.
const PLAIN_MARKER: &str = "#tgferry";
/// Location of an empty part (Telegram refuses empty files; nothing is sent).
const EMPTY_LOC: &str = "empty";

/// What a bot is told about a message it may no longer delete.
const BOT_DELETE_RULE: &str = "a Telegram bot may not delete messages older than 48 hours, \
     even as an admin; delete it with a user session (TGFERRY_TG_SESSION from `tgferry \
     telegram login`, for example `tgferry prune` run with it) or by hand in the chat";

/// How a [`TelegramStore`] names and sizes what it sends.
#[derive(Debug, Clone, Default)]
pub struct TelegramOptions {
    /// Plain mode (`--encryption none`): parts keep their file's name and path.
    pub plain: bool,
    /// `--telegram-premium`: allow parts up to 4000 MiB (the account must be Premium).
    pub premium: bool,
}

/// A Telegram chat as a [`Store`].
pub struct TelegramStore<A: TelegramApi> {
    shared: Arc<Shared<A>>,
}

struct Shared<A> {
    api: A,
    /// `telegram:<chat>`, for messages.
    name: String,
    chat: ChatRef,
    options: TelegramOptions,
    /// More accounts (bots) sending into the same chat: parts and reads are spread over
    /// `api` (seat 0) and these (seats 1…); messages, the index and lookups stay on seat 0.
    others: Vec<A>,
    /// Each account's connection and flood-wait state, by seat.
    seats: Vec<Seat>,
    /// Turns taken round the seats, for spreading new parts and reads.
    turn: std::sync::atomic::AtomicUsize,
    /// Waits ending after this are not sat out.
    wait_deadline: WaitDeadline,
    /// Messages looked up by `len`, fetched 100 ids at a time.
    lookups: Mutex<HashMap<i32, Option<MessageInfo>>>,
    /// Highest message id seen (sent or looked up), a lower bound for prune's scan.
    highest_id: Mutex<i32>,
    /// Upload chunks in flight across all uploads: each holds one of these permits (and
    /// its 512 KiB), so memory stays bounded however many parts are sent at once.
    chunks: Arc<Semaphore>,
    /// Download requests in flight or read ahead across all readers: each holds a permit
    /// (and up to [`DOWNLOAD_CHUNK`]) until its bytes are handed on. Separate from
    /// `chunks`, so that a repack reading and writing at once never waits on itself.
    downloads: Arc<Semaphore>,
    /// The size of either: [`IN_FLIGHT_PER_CONNECTION`] per connection.
    in_flight: usize,
}

/// One account's state in the store: who it is, its flood waits, its reconnects.
#[derive(Default)]
struct Seat {
    account: OnceCell<Account>,
    /// No request of this account starts before this (a flood wait it sits out applies to
    /// the whole account).
    paused_until: Mutex<Option<Instant>>,
    /// A wait it was given that the run could not sit out: new parts and reads go to other
    /// accounts until then.
    blocked_until: Mutex<Option<Instant>>,
    /// Bumped by every reconnect, so that tasks hit by the same drop reconnect once.
    connection: tokio::sync::Mutex<u64>,
}

impl Seat {
    /// When this account takes requests again (`None`: now).
    fn free_at(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().unwrap();
        let blocked = *self.blocked_until.lock().unwrap();
        paused.max(blocked).filter(|at| *at > Instant::now())
    }
}

impl<A: TelegramApi> TelegramStore<A> {
    /// A store in `chat`, reached through `api` (not connected until [`Store::prepare`]).
    pub fn new(api: A, chat: ChatRef, options: TelegramOptions) -> Self {
        Self::with_accounts(api, Vec::new(), chat, options)
    }

    /// A store in `chat` whose parts and reads are spread over `api` and `others`, each
    /// account with its own connections and flood waits (several bots, each an admin of
    /// the channel: `TGFERRY_TG_BOT_TOKENS`). Messages other than parts go through `api`.
    pub fn with_accounts(api: A, others: Vec<A>, chat: ChatRef, options: TelegramOptions) -> Self {
        let connections: usize =
            api.connections() + others.iter().map(A::connections).sum::<usize>();
        let in_flight = (connections * IN_FLIGHT_PER_CONNECTION).max(MIN_IN_FLIGHT);
        let seats = (0..=others.len()).map(|_| Seat::default()).collect();
        TelegramStore {
            shared: Arc::new(Shared {
                api,
                name: format!("telegram:{chat}"),
                chat,
                options,
                others,
                seats,
                turn: std::sync::atomic::AtomicUsize::new(0),
                wait_deadline: WaitDeadline::default(),
                lookups: Mutex::new(HashMap::new()),
                highest_id: Mutex::new(0),
                chunks: Arc::new(Semaphore::new(in_flight)),
                downloads: Arc::new(Semaphore::new(in_flight)),
                in_flight,
            }),
        }
    }

    /// The underlying API (tests inspect the double through it).
    pub fn api(&self) -> &A {
        &self.shared.api
    }

    /// The largest part this store accepts for `account`.
    pub fn max_part(&self, account: &Account) -> u64 {
        api::max_file_size(account.premium && self.shared.options.premium)
    }
}

/// Parses `msg:<id>`.
fn message_id(loc: &str) -> Result<i32, StoreError> {
    loc.strip_prefix("msg:")
        .and_then(|id| id.parse::<i32>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| StoreError::Refused {
            name: loc.into(),
            reason: "not a Telegram part location (msg:<id>); the state does not belong to a \
                     Telegram store"
                .into(),
        })
}

fn location(id: i32) -> String {
    format!("msg:{id}")
}

/// The document name of a vault part: its random id, nothing else.
fn vault_document_name(name: &str) -> String {
    let id = name.rsplit('/').next().unwrap_or(name);
    format!("{id}.bin")
}

/// True for a document name [`vault_document_name`] makes.
fn is_vault_document(name: &str) -> bool {
    name.strip_suffix(".bin")
        .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Longest caption Telegram takes from an account without Premium, in UTF-16 units.
const MAX_CAPTION: usize = 1024;

/// The caption of a plain part: its path (shortened with `…` if Telegram would refuse it)
/// and the marker line.
fn plain_caption(path: &str) -> String {
    let room = MAX_CAPTION - PLAIN_MARKER.len() - 1;
    if path.encode_utf16().count() <= room {
        return format!("{path}\n{PLAIN_MARKER}");
    }
    let mut short = String::new();
    let mut used = 1; // the ellipsis
    for c in path.chars() {
        used += c.len_utf16();
        if used > room {
            break;
        }
        short.push(c);
    }
    format!("{short}…\n{PLAIN_MARKER}")
}

/// What a meta blob's document name starts with.
const META_PREFIX: &str = "tgferry-";

fn meta_document_name(name: &str) -> String {
    format!("{META_PREFIX}{name}")
}

/// The pinned index: meta name → message id.
fn parse_index(text: &str) -> Option<BTreeMap<String, i32>> {
    let body = text.strip_prefix(INDEX_HEADER)?.trim();
    serde_json::from_str(body).ok()
}

fn render_index(index: &BTreeMap<String, i32>) -> String {
    format!(
        "{INDEX_HEADER}\n{}",
        serde_json::to_string(index).expect("maps serialize")
    )
}

impl<A: TelegramApi> Shared<A> {
    fn see(&self, id: i32) {
        let mut h = self.highest_id.lock().unwrap();
        *h = (*h).max(id);
    }

    /// Maps an error that retries could not cure.
    fn error(&self, e: TgError) -> StoreError {
        let store = self.name.clone();
        match e {
            TgError::Wait { seconds, .. } => StoreError::RateLimited {
                wait: Duration::from_secs(seconds.into()),
            },
            TgError::SessionInUse => StoreError::Locked { store },
            e @ TgError::SessionDuplicated => StoreError::Denied {
                store,
                message: format!("{e}; store the new session line as TGFERRY_TG_SESSION"),
            },
            TgError::Unauthorized(m) => StoreError::Denied {
                store,
                message: format!(
                    "{m}; check TGFERRY_TG_API_ID, TGFERRY_TG_API_HASH and TGFERRY_TG_BOT_TOKEN, \
                     or make a new session with `tgferry telegram login` for TGFERRY_TG_SESSION"
                ),
            },
            TgError::ChatNotFound(m) => StoreError::Denied {
                store,
                message: format!(
                    "the chat cannot be found ({m}); check the chat after telegram: and that the \
                     account is a member (docs/telegram.md)"
                ),
            },
            TgError::Forbidden(m) => StoreError::Denied {
                store,
                message: format!(
                    "the account may not post, pin or delete there ({m}); make it an admin of \
                     the channel with those rights (docs/telegram.md)"
                ),
            },
            TgError::ChunkMissing { chunk } => StoreError::Transient {
                message: format!(
                    "Telegram lost chunk {chunk} of an upload (FILE_PART_{chunk}_MISSING); the \
                     part is sent again"
                ),
            },
            e @ (TgError::Disconnected(_) | TgError::Other(_) | TgError::BotMethodInvalid) => {
                StoreError::Transient {
                    message: e.to_string(),
                }
            }
            TgError::Invalid(m) => StoreError::Transient {
                message: format!("Telegram rejected a request ({m})"),
            },
        }
    }

    /// The API of account `seat` (0 is the main one).
    fn api_of(&self, seat: usize) -> &A {
        match seat.checked_sub(1) {
            Some(i) => &self.others[i],
            None => &self.api,
        }
    }

    /// The account for a new part or read: the first free one from the next turn on, or
    /// else the one free soonest.
    fn pick_seat(&self) -> usize {
        let n = self.seats.len();
        let start = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&seat| self.seats[seat].free_at())
            .unwrap_or(0)
    }

    /// Waits out a pause set by an earlier flood wait of account `seat`.
    async fn wait_for_pause(&self, seat: usize) {
        loop {
            let until = *self.seats[seat].paused_until.lock().unwrap();
            match until {
                Some(at) if at > Instant::now() => tokio::time::sleep_until(at).await,
                _ => return,
            }
        }
    }

    async fn reconnect(&self, seat: usize, seen: u64) {
        let mut generation = self.seats[seat].connection.lock().await;
        if *generation == seen {
            // Failure here shows up as another Disconnected on the retried request.
            let _ = self.api_of(seat).reconnect().await;
            *generation += 1;
        }
    }

    /// Runs one request of the main account, connecting first if this is its first.
    async fn call<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TgError>>,
    {
        self.call_on(0, request).await
    }

    /// Runs one request of account `seat`, connecting it first if this is its first.
    async fn call_on<T, F, Fut>(&self, seat: usize, request: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TgError>>,
    {
        self.connected_seat(seat).await?;
        self.request(seat, request).await
    }

    /// Runs one request of account `seat`: sits out flood waits that fit, reconnects after
    /// drops. A wait that does not fit sets the account aside and ends the request as
    /// [`StoreError::RateLimited`]: with the wait until the soonest account is free when
    /// none is free before the deadline, else with a zero wait (the part goes again at
    /// once, on another account).
    async fn request<T, F, Fut>(&self, seat: usize, mut request: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TgError>>,
    {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(RECONNECTS)
            .build();
        let state = &self.seats[seat];
        loop {
            self.wait_for_pause(seat).await;
            let seen = *state.connection.lock().await;
            match request().await {
                Ok(v) => return Ok(v),
                Err(TgError::Wait { seconds, kind }) => {
                    let wait = Duration::from_secs(seconds.into());
                    let until = Instant::now() + wait;
                    if !self.wait_deadline.fits(wait) {
                        return Err(self.set_aside(seat, until, TgError::Wait { seconds, kind }));
                    }
                    tracing::info!(seconds, ?kind, seat, "Telegram asks to wait; waiting");
                    let mut paused = state.paused_until.lock().unwrap();
                    *paused = Some(paused.map_or(until, |p| p.max(until)));
                }
                Err(TgError::Disconnected(m)) => match backoff.next() {
                    Some(delay) if self.wait_deadline.fits(delay) => {
                        tracing::warn!("connection to Telegram lost ({m}); reconnecting");
                        tokio::time::sleep(delay).await;
                        self.reconnect(seat, seen).await;
                    }
                    _ => return Err(self.error(TgError::Disconnected(m))),
                },
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// Account `seat` was told to wait until `until`, past what may be sat out: it is set
    /// aside until then, and `wait` becomes the store's error (see [`Shared::request`]).
    fn set_aside(&self, seat: usize, until: Instant, wait: TgError) -> StoreError {
        {
            let mut blocked = self.seats[seat].blocked_until.lock().unwrap();
            *blocked = Some(blocked.map_or(until, |b| b.max(until)));
        }
        let free_other =
            (0..self.seats.len())
                .filter(|&other| other != seat)
                .any(|other| match self.seats[other].free_at() {
                    None => true,
                    Some(at) => self.wait_deadline.fits(at - Instant::now()),
                });
        if !free_other {
            // Every account must wait: the soonest any is free is when to come back.
            let soonest = (0..self.seats.len())
                .filter_map(|s| self.seats[s].free_at())
                .min()
                .unwrap_or(until);
            if soonest >= until {
                return self.error(wait);
            }
            let left = soonest.saturating_duration_since(Instant::now());
            return StoreError::RateLimited {
                wait: Duration::from_secs(left.as_secs_f64().ceil().max(1.0) as u64),
            };
        }
        let who = self.seats[seat]
            .account
            .get()
            .map_or_else(|| format!("account {}", seat + 1), |a| a.name.clone());
        tracing::info!(
            "{who} must wait {} s ({wait}); its part goes again on another account",
            until.saturating_duration_since(Instant::now()).as_secs()
        );
        // A zero wait: the part is tried again at once (and picks a free account).
        StoreError::RateLimited {
            wait: Duration::ZERO,
        }
    }

    /// Connects account `seat` and checks it can keep a store in the chat.
    async fn prepare_seat(&self, seat: usize) -> Result<(), StoreError> {
        let account = self.connected_seat(seat).await?;
        if account.bot && self.chat == ChatRef::Me {
            return Err(StoreError::Denied {
                store: self.name.clone(),
                message: "a bot has no Saved Messages; use a channel (telegram:@name or \
                          telegram:-100…) or a user session"
                    .into(),
            });
        }
        if self.options.premium && !account.premium {
            return Err(StoreError::Denied {
                store: self.name.clone(),
                message: format!(
                    "--telegram-premium is set but {} has no Telegram Premium; drop the flag \
                     and keep --part-size at most 2000MiB",
                    account.name
                ),
            });
        }
        Ok(())
    }

    /// Connects the main account on first use (restore and verify never call `prepare`).
    async fn connected(&self) -> Result<&Account, StoreError> {
        self.connected_seat(0).await
    }

    /// Connects account `seat` on first use.
    async fn connected_seat(&self, seat: usize) -> Result<&Account, StoreError> {
        self.seats[seat]
            .account
            .get_or_try_init(|| async { self.request(seat, || self.api_of(seat).connect()).await })
            .await
    }

    /// Looks up a message, 100 ids at a time from `id` on (parts sit at consecutive ids).
    async fn lookup(&self, id: i32) -> Result<Option<MessageInfo>, StoreError> {
        // Kept on a hit: a pack is looked up once for each object in it (a restore of
        // 10,000 small files asked for its few packs 9,995 times).
        if let Some(m) = self.lookups.lock().unwrap().get(&id) {
            return Ok(m.clone());
        }
        let ids: Vec<i32> = (id..id.saturating_add(MAX_IDS_PER_CALL as i32)).collect();
        let found = self.call(|| self.api.get_messages(&ids)).await?;
        let mut lookups = self.lookups.lock().unwrap();
        // Prefetched ids nobody asked for (other files' parts, meta) would pile up over
        // a verify of a large chat: the cache is a window, not a copy of the chat.
        if lookups.len() > LOOKUP_CACHE {
            lookups.clear();
        }
        let mut first = None;
        for (i, m) in ids.iter().zip(found) {
            if let Some(m) = &m {
                self.see(m.id);
            }
            if *i == id {
                first = Some(m.clone());
            }
            // Only messages that exist are kept: an id found empty may be the next one
            // this store sends (a run and a verify can share the store).
            if m.is_some() {
                lookups.insert(*i, m);
            }
        }
        Ok(first.flatten())
    }

    /// The pinned index. A pinned message that is not ours is an error, never "no
    /// index": taking it for one would make a new vault beside the old one.
    async fn index(&self) -> Result<Option<(i32, BTreeMap<String, i32>)>, StoreError> {
        let pinned = self
            .call(|| async {
                match self.api.pinned().await {
                    // Bots can read pins only in channels.
                    Err(TgError::BotMethodInvalid) => Err(TgError::Forbidden(
                        "a bot can keep tgferry's index only in a channel; use a channel, or a \
                         user session (TGFERRY_TG_SESSION)"
                            .into(),
                    )),
                    other => other,
                }
            })
            .await?;
        let Some(pinned) = pinned else {
            return Ok(None);
        };
        self.see(pinned.id);
        match parse_index(&pinned.text) {
            Some(index) => Ok(Some((pinned.id, index))),
            None => Err(StoreError::Denied {
                store: self.name.clone(),
                message: format!(
                    "the chat's newest pinned message ({}) is not tgferry's index, through which \
                     tgferry finds its key file and catalog; unpin it (tgferry's own pin is \
                     the one starting with `{INDEX_HEADER}`) and run again",
                    pinned.id
                ),
            }),
        }
    }

    /// Deletes `ids`: `false` when the account is a bot that may not (Telegram answers
    /// MESSAGE_DELETE_FORBIDDEN for messages older than 48 hours), which callers report
    /// and never treat as a failure.
    async fn delete(&self, ids: &[i32]) -> Result<bool, StoreError> {
        let bot = self.connected().await?.bot;
        self.call(|| async {
            match self.api.delete_messages(ids).await {
                Ok(()) => Ok(true),
                Err(TgError::Forbidden(m)) if bot && m == "MESSAGE_DELETE_FORBIDDEN" => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Runs a send (`send` retried on dropped connections with the same random id); when
    /// Telegram answers RANDOM_ID_DUPLICATE, an earlier try was carried out and its reply
    /// lost: the message already sent is looked up (`sent` tells it) instead of sending
    /// it twice.
    async fn send_once<F, Fut>(
        &self,
        seat: usize,
        send: F,
        sent: impl Fn(&MessageInfo) -> bool,
    ) -> Result<MessageInfo, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<MessageInfo, TgError>>,
    {
        let mut send = send;
        let outcome = self
            .call_on(seat, || {
                let attempt = send();
                async move {
                    match attempt.await {
                        Err(TgError::Invalid(m)) if m == "RANDOM_ID_DUPLICATE" => Ok(None),
                        other => other.map(Some),
                    }
                }
            })
            .await?;
        if let Some(info) = outcome {
            self.see(info.id);
            return Ok(info);
        }
        tracing::info!("a send's reply was lost; looking up the message it made");
        match self.find_recent(&sent).await? {
            Some(info) => {
                self.see(info.id);
                Ok(info)
            }
            None => Err(StoreError::Transient {
                message: format!(
                    "Telegram says a message was already sent to {} (RANDOM_ID_DUPLICATE) but \
                     it cannot be found",
                    self.name
                ),
            }),
        }
    }

    /// The newest message after the highest id seen that `wanted` accepts: ids are read
    /// 100 at a time (what bots may do) from there until a batch holds no message at all.
    async fn find_recent(
        &self,
        wanted: &impl Fn(&MessageInfo) -> bool,
    ) -> Result<Option<MessageInfo>, StoreError> {
        let bot = self.connected().await?.bot;
        let mut start = *self.highest_id.lock().unwrap() + 1;
        if !bot && start == 1 {
            let latest = self.call(|| self.api.latest_id()).await?.unwrap_or(0);
            start = (latest - MAX_IDS_PER_CALL as i32 + 1).max(1);
        }
        let mut found = None;
        loop {
            let ids: Vec<i32> = (start..start.saturating_add(MAX_IDS_PER_CALL as i32)).collect();
            let batch = self.call(|| self.api.get_messages(&ids)).await?;
            if batch.iter().all(Option::is_none) {
                return Ok(found);
            }
            for m in batch.into_iter().flatten() {
                if wanted(&m) {
                    found = Some(m);
                }
            }
            start = start.saturating_add(MAX_IDS_PER_CALL as i32);
        }
    }

    /// Deletes the message `id` that held `what` before it was replaced; a bot's message
    /// older than 48 hours stays, reported in the log (never a failed run).
    async fn delete_replaced(&self, what: &str, id: i32) -> Result<(), StoreError> {
        if !self.delete(&[id]).await? {
            tracing::warn!(
                "{}: the previous {what} (message {id}) stays in the chat: {BOT_DELETE_RULE}",
                self.name
            );
        }
        Ok(())
    }

    /// Sends and pins a new index.
    async fn new_index(&self, text: &str) -> Result<i32, StoreError> {
        let random_id = api::random_id().map_err(|e| self.error(e))?;
        let sent = self
            .send_once(
                0,
                || self.api.send_text(text, random_id),
                |m| m.document.is_none() && m.text.trim() == text.trim(),
            )
            .await?;
        self.call(|| self.api.pin(sent.id)).await?;
        Ok(sent.id)
    }

    /// Sends a whole in-memory blob as a document.
    async fn send_blob(
        self: &Arc<Self>,
        name: &str,
        caption: &str,
        bytes: &[u8],
    ) -> Result<i32, StoreError> {
        // Meta blobs go through the main account, as the index that names them does.
        let mut upload = TelegramUpload::start(self.clone(), 0, bytes.len() as u64, name, caption)?;
        upload.write(bytes).await?;
        let loc = upload.finish().await?;
        message_id(&loc)
    }

    async fn download_all(&self, id: i32, size: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(size as usize);
        while (out.len() as u64) < size {
            let offset = out.len() as u64;
            let chunk = self
                .call(|| self.api.download(id, offset, DOWNLOAD_CHUNK))
                .await?;
            if chunk.is_empty() {
                return Err(StoreError::Transient {
                    message: format!(
                        "message {id} of {} ended after {offset} of {size} bytes",
                        self.name
                    ),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// A part being sent to Telegram: chunks go out as they fill, a few at a time.
pub struct TelegramUpload<A: TelegramApi> {
    shared: Arc<Shared<A>>,
    /// The account that sends it, chunks and message (a file id is the account's own).
    seat: usize,
    upload: UploadRef,
    name: String,
    caption: String,
    chunk: Vec<u8>,
    next_chunk: u32,
    written: u64,
    in_flight: JoinSet<Result<(), StoreError>>,
}

impl<A: TelegramApi> TelegramUpload<A> {
    fn start(
        shared: Arc<Shared<A>>,
        seat: usize,
        len: u64,
        name: &str,
        caption: &str,
    ) -> Result<Self, StoreError> {
        let upload = UploadRef::new(len).map_err(|e| shared.error(e))?;
        Ok(TelegramUpload {
            shared,
            seat,
            upload,
            name: name.into(),
            caption: caption.into(),
            chunk: Vec::with_capacity(CHUNK.min(len as usize)),
            next_chunk: 0,
            written: 0,
            in_flight: JoinSet::new(),
        })
    }

    /// Sends the filled chunk once the store has room for one more in flight (failures of
    /// this part's earlier chunks surface here).
    async fn send_chunk(&mut self) -> Result<(), StoreError> {
        while self.in_flight.len() >= self.shared.in_flight {
            self.join_one().await?;
        }
        let permit = Arc::clone(&self.shared.chunks)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let bytes = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let index = self.next_chunk;
        self.next_chunk += 1;
        let (shared, seat) = (self.shared.clone(), self.seat);
        let upload = self.upload;
        self.in_flight.spawn(async move {
            let _permit = permit;
            shared
                .call_on(seat, || {
                    shared
                        .api_of(seat)
                        .save_file_part(&upload, index, bytes.clone())
                })
                .await
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), StoreError> {
        match self.in_flight.join_next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Some(Err(e)) => Err(StoreError::Transient {
                message: format!("upload task stopped: {e}"),
            }),
            None => Ok(()),
        }
    }
}

impl<A: TelegramApi> Upload for TelegramUpload<A> {
    async fn write(&mut self, mut buf: &[u8]) -> Result<(), StoreError> {
        if self.written + buf.len() as u64 > self.upload.size {
            return Err(StoreError::Transient {
                message: format!(
                    "part {} grew past its announced {} bytes",
                    self.name, self.upload.size
                ),
            });
        }
        self.written += buf.len() as u64;
        while !buf.is_empty() {
            let take = (CHUNK - self.chunk.len()).min(buf.len());
            self.chunk.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.chunk.len() == CHUNK {
                self.send_chunk().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<String, StoreError> {
        if self.written != self.upload.size {
            return Err(StoreError::Transient {
                message: format!(
                    "part {} ended after {} of {} bytes",
                    self.name, self.written, self.upload.size
                ),
            });
        }
        if self.upload.size == 0 {
            return Ok(EMPTY_LOC.into());
        }
        if !self.chunk.is_empty() {
            self.send_chunk().await?;
        }
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        let (shared, seat) = (self.shared.clone(), self.seat);
        let (upload, name, caption) = (self.upload, self.name, self.caption);
        let sent = shared
            .send_once(
                seat,
                || shared.api_of(seat).send_document(&upload, &name, &caption),
                |m| {
                    m.document
                        .as_ref()
                        .is_some_and(|d| d.name == name && d.size == upload.size)
                        && m.text.trim() == caption.trim()
                },
            )
            .await?;
        Ok(location(sent.id))
    }
}

/// Reads a stored part, or a range of one: a task downloads it in aligned requests,
/// resuming at the offset reached after a dropped connection, and hands the chunks over a
/// small channel.
pub type TelegramReader = crate::telegram::reader::ChunkReader;

/// Which bytes of which document a [`TelegramReader`] reads, and in what requests.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The message.
    id: i32,
    /// Its document's size.
    size: u64,
    /// The first byte read.
    start: u64,
    /// One past the last byte read (at most `size`).
    end: u64,
    /// The request size: a power of two from 4 KiB to [`DOWNLOAD_CHUNK`], so requests at
    /// its multiples pass [`api::check_download`].
    step: u32,
}

impl Window {
    /// Starts the task that downloads `w`: requests of `w.step` bytes at its multiples,
    /// from the one at or below `w.start` until `w.end`, a few in flight and taken in
    /// order (one at a time a single large file would download at one request per round
    /// trip); of each answer only the bytes inside the range are handed on.
    fn spawn<A: TelegramApi>(self, shared: Arc<Shared<A>>) -> TelegramReader {
        let w = self;
        let (tx, rx) = mpsc::channel(2);
        // Each read on one account (it finds the message itself), spread over them.
        let seat = shared.pick_seat();
        let task = tokio::spawn(async move {
            let Window {
                id,
                size,
                start,
                end,
                step,
            } = w;
            let stride = u64::from(step);
            let mut in_flight = VecDeque::new();
            // An empty range asks for nothing.
            let mut next = if start < end {
                start - start % stride
            } else {
                end
            };
            loop {
                while in_flight.len() < shared.in_flight && next < end {
                    // A permit for each request until its bytes are handed on: waited for
                    // only when this reader has nothing in flight to hand on meanwhile.
                    let permits = Arc::clone(&shared.downloads);
                    let permit = if in_flight.is_empty() {
                        permits.acquire_owned().await.expect("never closed")
                    } else {
                        match permits.try_acquire_owned() {
                            Ok(permit) => permit,
                            Err(_) => break,
                        }
                    };
                    let (shared, offset) = (shared.clone(), next);
                    let request = tokio::spawn(async move {
                        shared
                            .call_on(seat, || shared.api_of(seat).download(id, offset, step))
                            .await
                    });
                    in_flight.push_back((
                        offset,
                        tokio_util::task::AbortOnDropHandle::new(request),
                        permit,
                    ));
                    next += stride;
                }
                let Some((offset, request, _permit)) = in_flight.pop_front() else {
                    return;
                };
                let expected = stride.min(size - offset) as usize;
                let item = match request.await {
                    Ok(Ok(mut chunk)) if chunk.len() == expected => {
                        // The range's bytes of it: the first request may start before the
                        // range, the last end after it.
                        chunk.truncate((end - offset) as usize);
                        chunk.drain(..start.saturating_sub(offset) as usize);
                        Ok(chunk)
                    }
                    Ok(Ok(chunk)) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "message {id} gave {} bytes at offset {offset} of {size}, not {expected}",
                            chunk.len()
                        ),
                    )),
                    Ok(Err(e)) => Err(io::Error::other(e.to_string())),
                    Err(e) => Err(io::Error::other(format!("download task stopped: {e}"))),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        TelegramReader::new(rx, task)
    }
}

impl<A: TelegramApi> TelegramStore<A> {
    /// The message id and document size of the part at `loc`.
    async fn document(&self, loc: &str) -> Result<(i32, u64), StoreError> {
        let id = message_id(loc)?;
        match self.shared.lookup(id).await? {
            Some(MessageInfo {
                document: Some(d), ..
            }) => Ok((id, d.size)),
            _ => Err(StoreError::Missing { loc: loc.into() }),
        }
    }
}

impl<A: TelegramApi> Store for TelegramStore<A> {
    type Upload = TelegramUpload<A>;
    type Reader = TelegramReader;

    /// Connects every account (each must reach the chat and, a bot, be an admin that may
    /// post there) before anything is sent.
    async fn prepare(&self) -> Result<(), StoreError> {
        let s = &self.shared;
        for seat in 0..s.seats.len() {
            s.prepare_seat(seat).await.map_err(|e| match e {
                StoreError::Denied { store, message } if s.seats.len() > 1 => StoreError::Denied {
                    store,
                    message: format!("account {} of {}: {message}", seat + 1, s.seats.len()),
                },
                e => e,
            })?;
        }
        Ok(())
    }

    fn set_wait_deadline(&self, deadline: Option<Instant>) {
        self.shared.wait_deadline.set(deadline);
    }

    /// Every part is a new message (`msg:<id>`): an upload never replaces a stored part,
    /// so nothing is ever staged.
    fn names_are_locations(&self) -> bool {
        false
    }

    async fn begin(&self, name: &str, len: u64) -> Result<TelegramUpload<A>, StoreError> {
        let s = &self.shared;
        let max = self.max_part(s.connected().await?);
        if len > max {
            return Err(StoreError::Refused {
                name: name.into(),
                reason: format!(
                    "{len} bytes is more than a Telegram file may hold ({} MiB); use a smaller \
                     --part-size",
                    max >> 20
                ),
            });
        }
        let (doc, caption) = if s.options.plain {
            let base = name.rsplit('/').next().unwrap_or(name);
            (base.to_owned(), plain_caption(name))
        } else {
            (vault_document_name(name), String::new())
        };
        TelegramUpload::start(s.clone(), s.pick_seat(), len, &doc, &caption)
    }

    async fn open(&self, loc: &str) -> Result<TelegramReader, StoreError> {
        if loc == EMPTY_LOC {
            return Ok(TelegramReader::empty());
        }
        let (id, size) = self.document(loc).await?;
        let whole = Window {
            id,
            size,
            start: 0,
            end: size,
            step: DOWNLOAD_CHUNK,
        };
        Ok(whole.spawn(self.shared.clone()))
    }

    /// Only the requests that hold the range: aligned windows of
    /// [`api::download_window`]`(len)` bytes from the one the range starts in, each cut to
    /// the range.
    async fn open_range(
        &self,
        loc: &str,
        offset: u64,
        len: u64,
    ) -> Result<super::RangeReader, StoreError> {
        if loc == EMPTY_LOC {
            return Ok(Box::new(tokio::io::empty()));
        }
        let (id, size) = self.document(loc).await?;
        let start = offset.min(size);
        let end = offset.saturating_add(len).min(size);
        let range = Window {
            id,
            size,
            start,
            end,
            step: api::download_window(end - start),
        };
        Ok(Box::new(range.spawn(self.shared.clone())))
    }

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        if loc == EMPTY_LOC {
            return Ok(Some(0));
        }
        let id = message_id(loc)?;
        Ok(self
            .shared
            .lookup(id)
            .await?
            .and_then(|m| m.document)
            .map(|d| d.size))
    }

    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        if loc == EMPTY_LOC {
            return Ok(());
        }
        let id = message_id(loc)?;
        let s = &self.shared;
        s.lookups.lock().unwrap().remove(&id);
        if s.delete(&[id]).await? {
            Ok(())
        } else {
            Err(StoreError::Undeletable {
                loc: loc.into(),
                reason: BOT_DELETE_RULE.into(),
            })
        }
    }

    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let s = &self.shared;
        let id = s.send_blob(&meta_document_name(name), "", bytes).await?;
        let (index_id, mut index) = match s.index().await? {
            Some((at, index)) => (Some(at), index),
            None => (None, BTreeMap::new()),
        };
        let old = index.insert(name.to_owned(), id);
        let text = render_index(&index);
        match index_id {
            Some(at) => {
                let edited = s
                    .call(|| async {
                        match s.api.edit_text(at, &text).await {
                            // The index already says this (a retried put after a lost reply).
                            Err(TgError::Invalid(m)) if m == "MESSAGE_NOT_MODIFIED" => Ok(true),
                            // Outside channels a message can be edited for 48 hours only.
                            Err(TgError::Forbidden(m)) if m == "MESSAGE_EDIT_TIME_EXPIRED" => {
                                Ok(false)
                            }
                            other => other.map(|()| true),
                        }
                    })
                    .await?;
                if !edited {
                    // A new index, pinned; the old one is deleted where the account may.
                    s.new_index(&text).await?;
                    s.delete_replaced("index", at).await?;
                }
            }
            None => {
                s.new_index(&text).await?;
            }
        }
        if let Some(old) = old.filter(|o| *o != id) {
            s.delete_replaced(name, old).await?;
        }
        Ok(())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let s = &self.shared;
        let Some((_, index)) = s.index().await? else {
            return Ok(None);
        };
        let Some(&id) = index.get(name) else {
            return Ok(None);
        };
        let ids = [id];
        let found = s.call(|| s.api.get_messages(&ids)).await?;
        let Some(doc) = found.into_iter().flatten().next().and_then(|m| m.document) else {
            return Err(StoreError::Missing {
                loc: format!("{} (message {id}, {name})", s.name),
            });
        };
        // A blob larger than any key file, catalog or run record is not ours: never
        // downloaded into memory.
        let limit = crate::bounded::meta_limit(name);
        if doc.size > limit {
            return Err(StoreError::Transient {
                message: format!(
                    "{}: {name} (message {id}) is {} bytes, more than the {limit} tgferry reads",
                    s.name, doc.size
                ),
            });
        }
        s.download_all(id, doc.size).await.map(Some)
    }

    async fn list_parts(&self, hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        let s = &self.shared;
        let bot = s.connected().await?.bot;
        let mut top = hint.and_then(|l| message_id(l).ok()).unwrap_or(0);
        top = top.max(*s.highest_id.lock().unwrap());
        let mut indexed: Vec<i32> = Vec::new();
        if let Some((at, index)) = s.index().await? {
            indexed = index.values().copied().collect();
            top = top.max(at).max(indexed.iter().copied().max().unwrap_or(0));
        }
        // Bots cannot read history: they scan past the highest known id until several
        // whole batches of ids are empty (a gap of deleted messages is not the end).
        let latest = s
            .call(|| async {
                match s.api.latest_id().await {
                    Err(TgError::BotMethodInvalid) if bot => Ok(None),
                    other => other,
                }
            })
            .await?;
        let empty_batches_to_stop = if latest.is_some() { 1 } else { 10 };
        top = top.max(latest.unwrap_or(0));
        let mut parts = Vec::new();
        let mut start = 1i32;
        let mut empty_batches = 0;
        loop {
            let ids: Vec<i32> = (start..start.saturating_add(MAX_IDS_PER_CALL as i32)).collect();
            let found = s.call(|| s.api.get_messages(&ids)).await?;
            let any = found.iter().any(Option::is_some);
            for m in found.into_iter().flatten() {
                let Some(doc) = &m.document else { continue };
                // A meta blob the index does not point to was left by a run stopped
                // between sending it and updating the index.
                let stray_meta = doc.name.starts_with(META_PREFIX) && !indexed.contains(&m.id);
                let ours = is_vault_document(&doc.name)
                    || stray_meta
                    || (s.options.plain && m.text.ends_with(PLAIN_MARKER));
                if ours {
                    parts.push(PartInfo {
                        loc: location(m.id),
                        len: doc.size,
                        stored: Some(m.date),
                    });
                }
            }
            start = start.saturating_add(MAX_IDS_PER_CALL as i32);
            empty_batches = if any { 0 } else { empty_batches + 1 };
            if (start > top && empty_batches >= empty_batches_to_stop) || start == i32::MAX {
                break;
            }
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip() {
        assert_eq!(message_id(&location(42)).unwrap(), 42);
        assert!(message_id("msg:0").is_err());
        assert!(message_id("data/ab/cd").is_err());
        assert!(message_id("msg:x").is_err());
    }

    #[test]
    fn vault_names_are_neutral() {
        let n = vault_document_name("data/ab/ab0123456789abcdef0123456789abcd");
        assert_eq!(n, "ab0123456789abcdef0123456789abcd.bin");
        assert!(is_vault_document(&n));
        assert!(!is_vault_document("holiday.jpg"));
        assert!(!is_vault_document("tgferry-catalog"));
    }

    #[test]
    fn index_round_trip() {
        let mut i = BTreeMap::new();
        i.insert("key.json".to_string(), 3);
        i.insert("catalog".to_string(), 9);
        assert_eq!(parse_index(&render_index(&i)), Some(i));
        assert_eq!(parse_index("hello"), None);
    }
}
