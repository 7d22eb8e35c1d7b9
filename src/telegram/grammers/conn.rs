//! The connection to Telegram: [`Conn`] (a grammers client with its retries off, also what
//! `telegram login` signs in through), connecting (the session's lock, a bot's sign-in, who
//! the account is), reconnecting, the 180 s deadline on every answer ([`within_time`]), and
//! copying the account's authorization to another data centre ([`GrammersApi::copy_auth`]).
//!
//! Which chat the account works in is `chats.rs`'s (asked here once, at connection); what a
//! failed request becomes is `errors.rs`'s; following a file to its data centre is
//! `download.rs`'s, which calls [`GrammersApi::copy_auth`] there.

use std::sync::Arc;

use grammers_client::Client;
use grammers_client::sender::{ConnectionParams, InvocationError, NoRetries, SenderPool};
use grammers_client::tl;
use secrecy::ExposeSecret as _;

use super::GrammersApi;
use super::chats::Target;
use super::errors::{map_invocation, session_error};
use crate::telegram::api::{Account, TgError};
use crate::telegram::session::{PortableSession, SessionLock};

/// A live grammers client and the task driving its connections; dropping it disconnects
/// (the store's connection, and the one `login` uses).
pub(crate) struct Conn {
    pub(crate) client: Client,
    runner: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Connects with `session` (new keys land in it), grammers' retries turned off and
    /// updates not read.
    pub(crate) fn start(session: &PortableSession, api_id: i32) -> Conn {
        let params = ConnectionParams {
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            retry_policy: Box::new(NoRetries),
            ..ConnectionParams::default()
        };
        let pool = SenderPool::with_configuration(Arc::new(session.shared()), api_id, params);
        let client = Client::new(pool.handle);
        // Nothing here reads updates: dropping the receiver stops their delivery.
        drop(pool.updates);
        let runner = tokio::spawn(pool.runner.run());
        Conn { client, runner }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.client.disconnect();
        self.runner.abort();
    }
}

/// Longest wait for one answer: a stalled connection becomes [`TgError::Disconnected`]
/// instead of eating the run's time budget.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// `call`'s outcome, or [`TgError::Disconnected`] when it takes longer than
/// [`REQUEST_TIMEOUT`].
pub(super) async fn within_time<T>(call: impl Future<Output = T>) -> Result<T, TgError> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| {
            TgError::Disconnected(format!(
                "no answer from Telegram within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))
        })
}

/// A grammers call [`within_time`], its failure mapped by [`map_invocation`].
pub(super) async fn answered<T>(
    call: impl Future<Output = Result<T, InvocationError>>,
) -> Result<T, TgError> {
    within_time(call).await?.map_err(|e| map_invocation(&e))
}

/// [`TelegramApi::connect`](crate::telegram::api::TelegramApi::connect): once, however many
/// tasks ask at the same time.
pub(super) async fn connect(api: &GrammersApi) -> Result<Account, TgError> {
    let _connecting = api.connecting.lock().await;
    if let Some(account) = &api.state().account {
        return Ok(account.clone());
    }
    let lock = if api.bot_token.is_none() {
        if !api.session.has_home_key() {
            return Err(TgError::Unauthorized(
                "the session in TGFERRY_TG_SESSION holds no key: create one with `tgferry telegram login`".into(),
            ));
        }
        Some(SessionLock::acquire(&api.session).map_err(session_error)?)
    } else {
        None
    };
    let (conn, account, target) = api.connect_inner().await?;
    tracing::debug!(bot = account.bot, premium = account.premium, chat = %api.chat,
        connections = api.pool.size(), "connected to Telegram");
    let mut state = api.state();
    state.conn = Some(Arc::new(conn));
    state.target = Some(target);
    state.account = Some(account.clone());
    state.lock = lock;
    Ok(account)
}

/// [`TelegramApi::reconnect`](crate::telegram::api::TelegramApi::reconnect): a new
/// connection with the same session, proved by one cheap call.
pub(super) async fn reconnect(api: &GrammersApi) -> Result<(), TgError> {
    let _connecting = api.connecting.lock().await;
    if api.state().account.is_none() {
        return Err(TgError::Other("not connected".into()));
    }
    let conn = Arc::new(api.start());
    let old = api.state().conn.replace(Arc::clone(&conn));
    drop(old);
    // The session keeps the keys (and a bot's sign-in): a cheap call proves the link.
    api.invoke(&conn, &tl::functions::updates::GetState {})
        .await
        .map(drop)
}

/// A request as it is sent: itself, or wrapped in `invokeWithTakeout`
/// ([`GrammersApi::outgoing`]); Telegram's answer is the request's either way.
pub(super) enum Outgoing<'r, R> {
    /// The request as it is.
    Plain(&'r R),
    /// Inside the takeout session.
    Takeout(tl::functions::InvokeWithTakeout<R>),
}

impl<R: tl::Serializable> tl::Serializable for Outgoing<'_, R> {
    fn serialize(&self, buf: &mut impl Extend<u8>) {
        match self {
            Outgoing::Plain(request) => request.serialize(buf),
            Outgoing::Takeout(wrapped) => wrapped.serialize(buf),
        }
    }
}

impl<R: tl::RemoteCall> tl::RemoteCall for Outgoing<'_, R> {
    type Return = R::Return;
}

impl GrammersApi {
    /// One request on `conn`, [`answered`].
    /// Inside a takeout session (`--tg-takeout`) every request is wrapped in
    /// `invokeWithTakeout`.
    pub(super) async fn invoke<R: tl::RemoteCall + Clone>(
        &self,
        conn: &Conn,
        request: &R,
    ) -> Result<R::Return, TgError> {
        answered(conn.client.invoke(&self.outgoing(request))).await
    }

    /// `request` as it goes out: inside the takeout session once one is started (only
    /// then is it copied, to be wrapped).
    pub(super) fn outgoing<'r, R: Clone>(&self, request: &'r R) -> Outgoing<'r, R> {
        match *super::lock(&self.takeout_id) {
            Some(takeout_id) => Outgoing::Takeout(tl::functions::InvokeWithTakeout {
                takeout_id,
                query: request.clone(),
            }),
            None => Outgoing::Plain(request),
        }
    }

    /// Starts a takeout session (`account.initTakeoutSession`) for reading chats and their
    /// files: user accounts only. Telegram may first ask the user to confirm the export in
    /// another app (`TAKEOUT_INIT_DELAY_X`): that is no wait to sit out in a run.
    async fn start_takeout(&self, conn: &Conn, me: &tl::types::User) -> Result<(), TgError> {
        if me.bot {
            return Err(TgError::Forbidden(
                "--tg-takeout starts a takeout session, which only user accounts have; a bot \
                 reads without it: drop --tg-takeout"
                    .into(),
            ));
        }
        let request = tl::functions::account::InitTakeoutSession {
            contacts: false,
            message_users: true,
            message_chats: true,
            message_megagroups: true,
            message_channels: true,
            files: true,
            file_max_size: Some(4000 * 1024 * 1024),
        };
        match within_time(conn.client.invoke(&request)).await? {
            Ok(tl::enums::account::Takeout::Takeout(t)) => {
                *super::lock(&self.takeout_id) = Some(t.id);
                Ok(())
            }
            Err(InvocationError::Rpc(e)) if e.name == "TAKEOUT_INIT_DELAY" => {
                Err(TgError::Forbidden(format!(
                    "Telegram delays this data export by {} (TAKEOUT_INIT_DELAY): confirm it \
                     in a Telegram app under the export request it sent, or run without \
                     --tg-takeout",
                    crate::time::human_duration(std::time::Duration::from_secs(u64::from(
                        e.value.unwrap_or(0)
                    )))
                )))
            }
            Err(e) => Err(map_invocation(&e)),
        }
    }

    fn start(&self) -> Conn {
        Conn::start(&self.session, self.api_id)
    }

    async fn connect_inner(&self) -> Result<(Conn, Account, Target), TgError> {
        let conn = self.start();
        if let Some(token) = &self.bot_token {
            answered(
                conn.client
                    .bot_sign_in(token.expose_secret(), self.api_hash.expose_secret()),
            )
            .await?;
        }
        let users = self
            .invoke(
                &conn,
                &tl::functions::users::GetUsers {
                    id: vec![tl::enums::InputUser::UserSelf],
                },
            )
            .await?;
        let Some(tl::enums::User::User(me)) = users.into_iter().next() else {
            return Err(TgError::Unauthorized(
                "Telegram did not return the signed-in account".into(),
            ));
        };
        let account = Account {
            bot: me.bot,
            premium: me.premium,
            name: me
                .username
                .as_ref()
                .map_or_else(|| me.id.to_string(), |u| format!("@{u}")),
        };
        let target = self.resolve(&conn, &me).await?;
        if self.takeout {
            self.start_takeout(&conn, &me).await?;
        }
        Ok((conn, account, target))
    }

    /// Makes the account known in data centre `dc` (export from home, import there).
    /// Unless `again`, a copy another task made meanwhile is enough.
    pub(super) async fn copy_auth(
        &self,
        conn: &Conn,
        dc: i32,
        again: bool,
    ) -> Result<(), InvocationError> {
        let mut copied = self.auth_copied.lock().await;
        if !again && copied.contains(&dc) {
            // Another download copied it while this one waited (a genuinely lost
            // authorization ends after the caller's few attempts).
            return Ok(());
        }
        let tl::enums::auth::ExportedAuthorization::Authorization(exported) = conn
            .client
            .invoke(&tl::functions::auth::ExportAuthorization { dc_id: dc })
            .await?;
        conn.client
            .invoke_in_dc(
                dc,
                &tl::functions::auth::ImportAuthorization {
                    id: exported.id,
                    bytes: exported.bytes,
                },
            )
            .await?;
        copied.insert(dc);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::api;
    use super::*;
    use crate::telegram::api::TelegramApi as _;
    use crate::telegram::grammers::Credential;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_becomes_a_disconnection() {
        let stalled = within_time(std::future::pending::<()>()).await;
        assert!(matches!(stalled, Err(TgError::Disconnected(_))));
        assert_eq!(within_time(async { 5 }).await, Ok(5));
    }

    #[tokio::test]
    async fn a_session_in_use_is_refused_before_any_network() {
        let mut key = [0u8; 256];
        getrandom::fill(&mut key).unwrap();
        let session = PortableSession::with_key(2, key);
        let held = SessionLock::as_another_process(&session);
        let api = api(Credential::Session(session.shared()));
        assert_eq!(api.connect().await, Err(TgError::SessionInUse));
        drop(held);
    }
}
