//! One client connection: the Full transport on TCP, MTProto 2.0 decryption, the service
//! messages (acknowledgements, pings, salts, new sessions), then each request to
//! [`crate::rpc`] under the world's lock, with the injected faults applied, and the
//! answers sealed, encrypted and written back — at most the configured bytes per second
//! each way.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grammers_crypto::DequeBuffer;
use grammers_mtproto::transport::{self, Full, Transport as _};
use grammers_tl_types::{self as tl, Deserializable, Identifiable, Serializable};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::Shared;
use crate::faults::Action;
use crate::rpc::{self, Ctx, RpcErr};
use crate::wire::crypto::{self, AuthKey};
use crate::wire::mtp::{self, Outgoing, ServerSession};

/// Largest packet a client may announce (grammers sends at most about 1 MiB).
const MAX_PACKET: i32 = 4 << 20;
/// Answers at least this long are sent as `gzip_packed` (as grammers does for requests),
/// except file bytes.
const GZIP_THRESHOLD: usize = 512;

/// A per-direction bandwidth cap: a pacing clock that lets a little ahead (a 20 ms burst).
struct Limiter {
    bytes_per_sec: Option<f64>,
    next: Instant,
}

impl Limiter {
    fn new(rate: Option<u64>) -> Limiter {
        Limiter {
            bytes_per_sec: rate.map(|r| r as f64),
            next: Instant::now(),
        }
    }

    async fn take(&mut self, n: usize) {
        let Some(rate) = self.bytes_per_sec else {
            return;
        };
        let now = Instant::now();
        self.next = self.next.max(now) + Duration::from_secs_f64(n as f64 / rate);
        let burst = Duration::from_millis(20);
        if self.next > now + burst {
            sleep_until(self.next - burst).await;
        }
    }
}

/// What the reader hands the writer.
enum Out {
    /// Messages for one session.
    Send {
        key: Arc<AuthKey>,
        session_id: i64,
        salt: i64,
        messages: Vec<Outgoing>,
    },
    /// Flush what is queued, then close.
    Close,
}

/// Why the reader stops.
enum Stop {
    /// The client went away or the server closes (fault, shutdown, bad input).
    Close,
}

/// Serves one accepted connection to data centre `dc` until either side closes it.
pub(crate) async fn serve(shared: Arc<Shared>, dc: i32, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (close_tx, close_rx) = watch::channel(false);
    shared.lock_conns().insert(conn_id, close_tx);
    shared.lock_world().stats.connections += 1;
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(Arc::clone(&shared), wr, rx));
    let mut reader = Reader {
        shared: Arc::clone(&shared),
        conn_id,
        dc,
        tx: tx.clone(),
        key: None,
        initialized: HashMap::new(),
        disconnect_at: None,
    };
    let _ = reader.run(rd, close_rx).await;
    let _ = tx.send(Out::Close);
    drop(tx);
    drop(reader);
    let _ = writer.await;
    shared.lock_conns().remove(&conn_id);
}

struct Reader {
    shared: Arc<Shared>,
    /// This connection's number ([`Ctx::conn`]).
    conn_id: u64,
    dc: i32,
    tx: mpsc::UnboundedSender<Out>,
    key: Option<Arc<AuthKey>>,
    /// Sessions that sent `initConnection`.
    initialized: HashMap<i64, bool>,
    /// `ping_delay_disconnect`'s deadline.
    disconnect_at: Option<Instant>,
}

impl Reader {
    async fn run(
        &mut self,
        mut rd: tokio::net::tcp::OwnedReadHalf,
        mut close: watch::Receiver<bool>,
    ) -> Result<(), Stop> {
        let mut framing = Full::new();
        let mut limiter = Limiter::new(self.shared.conn_rate);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let deadline = self.disconnect_at;
            let n = tokio::select! {
                r = rd.read(&mut chunk) => r.map_err(|_| Stop::Close)?,
                _ = close.changed() => return Err(Stop::Close),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    tracing::debug!("no ping within ping_delay_disconnect's delay: closing");
                    return Err(Stop::Close);
                }
            };
            if n == 0 {
                return Ok(());
            }
            limiter.take(n).await;
            self.shared.lock_world().stats.bytes_in += n as u64;
            buf.extend_from_slice(&chunk[..n]);
            loop {
                if buf.len() >= 4 {
                    let len = i32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
                    if len > MAX_PACKET {
                        tracing::warn!(len, "a client announced an oversized packet: closing");
                        return Err(Stop::Close);
                    }
                }
                match framing.unpack(&mut buf[..]) {
                    Ok(offset) => {
                        let packet = buf[offset.data_range.clone()].to_vec();
                        buf.drain(..offset.next_offset);
                        self.packet(packet)?;
                    }
                    Err(transport::Error::MissingBytes) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bad transport frame: closing");
                        return Err(Stop::Close);
                    }
                }
            }
        }
    }

    fn send(&self, key: &Arc<AuthKey>, session_id: i64, messages: Vec<Outgoing>) {
        if messages.is_empty() {
            return;
        }
        let _ = self.tx.send(Out::Send {
            key: Arc::clone(key),
            session_id,
            salt: self.shared.salt,
            messages,
        });
    }

    /// One transport packet: an encrypted message from the client.
    fn packet(&mut self, mut packet: Vec<u8>) -> Result<(), Stop> {
        let Some(key_id) = crypto::packet_key_id(&packet) else {
            return Err(Stop::Close);
        };
        if key_id == 0 {
            // A plain message: the client wants to make a key. Telegram's RSA keys are
            // built into the client, so no such exchange can be faked; never answer -404
            // (grammers would start one): close instead.
            tracing::warn!(
                dc = self.dc,
                "a client without an authorization key connected: fakegram cannot do the key exchange; use a session from fakegram"
            );
            return Err(Stop::Close);
        }
        let key = match &self.key {
            Some(k) if k.id() == key_id => Arc::clone(k),
            Some(_) => return Err(Stop::Close),
            None => {
                let w = self.shared.lock_world();
                match w.key(key_id) {
                    Some(k) if k.dc == self.dc => {
                        let k = Arc::new(k.key.clone());
                        drop(w);
                        self.key = Some(Arc::clone(&k));
                        k
                    }
                    _ => {
                        tracing::warn!(
                            dc = self.dc,
                            "a client used a key this data centre does not know: closing"
                        );
                        return Err(Stop::Close);
                    }
                }
            }
        };
        let plaintext = crypto::decrypt_from_client(&key, &mut packet).map_err(|e| {
            tracing::warn!(?e, "undecryptable packet: closing");
            Stop::Close
        })?;
        let envelope = mtp::open(plaintext).map_err(|e| {
            tracing::warn!(?e, "malformed message: closing");
            Stop::Close
        })?;
        let session_id = envelope.session_id;
        let mut out = Vec::new();
        let first = envelope.message.msg_id;
        if self
            .shared
            .lock_world()
            .sessions_seen
            .insert((key_id, session_id))
        {
            out.push(Outgoing {
                body: tl::enums::NewSession::Created(tl::types::NewSessionCreated {
                    first_msg_id: first,
                    unique_id: crate::model::random_i64(),
                    server_salt: self.shared.salt,
                })
                .to_bytes(),
                content_related: true,
            });
        }
        if let Some(code) = bad_msg_code(&envelope, self.shared.salt) {
            let body = if code == 48 {
                tl::enums::BadMsgNotification::BadServerSalt(tl::types::BadServerSalt {
                    bad_msg_id: envelope.message.msg_id,
                    bad_msg_seqno: envelope.message.seq_no,
                    error_code: 48,
                    new_server_salt: self.shared.salt,
                })
            } else {
                tl::enums::BadMsgNotification::Notification(tl::types::BadMsgNotification {
                    bad_msg_id: envelope.message.msg_id,
                    bad_msg_seqno: envelope.message.seq_no,
                    error_code: code,
                })
            };
            out.push(Outgoing {
                body: body.to_bytes(),
                content_related: false,
            });
            self.send(&key, session_id, out);
            return Ok(());
        }
        let messages = mtp::unpack(envelope.message).map_err(|e| {
            tracing::warn!(?e, "malformed container: closing");
            Stop::Close
        })?;
        let mut acks = Vec::new();
        let mut close_after = false;
        for m in messages {
            self.message(&key, session_id, m, &mut out, &mut acks, &mut close_after)?;
            if close_after {
                break;
            }
        }
        if close_after {
            // The request was carried out; its reply (and the rest of this packet's) is lost.
            return Err(Stop::Close);
        }
        if !acks.is_empty() {
            out.push(Outgoing {
                body: tl::enums::MsgsAck::Ack(tl::types::MsgsAck { msg_ids: acks }).to_bytes(),
                content_related: false,
            });
        }
        self.send(&key, session_id, out);
        Ok(())
    }

    fn message(
        &mut self,
        key: &Arc<AuthKey>,
        session_id: i64,
        m: mtp::Message,
        out: &mut Vec<Outgoing>,
        acks: &mut Vec<i64>,
        close_after: &mut bool,
    ) -> Result<(), Stop> {
        let Some(id) = m.constructor() else {
            return Err(Stop::Close);
        };
        let fields = &m.body[4..];
        match id {
            tl::types::MsgsAck::CONSTRUCTOR_ID
            | tl::types::HttpWait::CONSTRUCTOR_ID
            | mtp::MSG_COPY => {}
            tl::functions::Ping::CONSTRUCTOR_ID => {
                if let Ok(p) = tl::functions::Ping::from_bytes(fields) {
                    out.push(pong(m.msg_id, p.ping_id));
                }
            }
            tl::functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
                if let Ok(p) = tl::functions::PingDelayDisconnect::from_bytes(fields) {
                    self.disconnect_at = Some(
                        Instant::now() + Duration::from_secs(p.disconnect_delay.max(1) as u64),
                    );
                    out.push(pong(m.msg_id, p.ping_id));
                }
            }
            tl::functions::GetFutureSalts::CONSTRUCTOR_ID => {
                let num = tl::functions::GetFutureSalts::from_bytes(fields).map_or(1, |g| g.num);
                out.push(Outgoing {
                    body: future_salts(m.msg_id, num, self.shared.salt),
                    content_related: false,
                });
            }
            tl::functions::DestroySession::CONSTRUCTOR_ID => {
                let sid =
                    tl::functions::DestroySession::from_bytes(fields).map_or(0, |d| d.session_id);
                let known = self
                    .shared
                    .lock_world()
                    .sessions_seen
                    .remove(&(key.id(), sid));
                let body = if known {
                    tl::enums::DestroySessionRes::DestroySessionOk(tl::types::DestroySessionOk {
                        session_id: sid,
                    })
                } else {
                    tl::enums::DestroySessionRes::DestroySessionNone(
                        tl::types::DestroySessionNone { session_id: sid },
                    )
                };
                out.push(Outgoing {
                    body: body.to_bytes(),
                    content_related: false,
                });
            }
            tl::functions::RpcDropAnswer::CONSTRUCTOR_ID => {
                let unknown = tl::enums::RpcDropAnswer::RpcAnswerUnknown.to_bytes();
                out.push(Outgoing {
                    body: mtp::rpc_result(m.msg_id, &unknown),
                    content_related: false,
                });
            }
            tl::types::MsgsStateReq::CONSTRUCTOR_ID => {}
            _ => self.request(key, session_id, m, out, acks, close_after)?,
        }
        Ok(())
    }

    fn request(
        &mut self,
        key: &Arc<AuthKey>,
        session_id: i64,
        m: mtp::Message,
        out: &mut Vec<Outgoing>,
        acks: &mut Vec<i64>,
        close_after: &mut bool,
    ) -> Result<(), Stop> {
        let ctx = Ctx {
            dc: self.dc,
            key_id: key.id(),
            conn: self.conn_id,
        };
        let call = match rpc::open_call(&m.body) {
            Ok(call) => call,
            Err(e) => {
                out.push(result(m.msg_id, Err(e), "?"));
                return Ok(());
            }
        };
        let mut w = self.shared.lock_world();
        *w.stats.requests.entry(call.name.to_owned()).or_default() += 1;
        let answer = if let Some(init) = &call.init
            && init.api_id != w.p.api_id
        {
            Err(RpcErr::bad("API_ID_INVALID"))
        } else {
            if call.init.is_some() {
                self.initialized.insert(session_id, true);
            }
            if !self.initialized.get(&session_id).copied().unwrap_or(false) {
                Err(RpcErr::bad("CONNECTION_NOT_INITED"))
            } else {
                let account = w.key(ctx.key_id).and_then(|k| k.user);
                let fault = self
                    .shared
                    .lock_faults()
                    .take_for(call.name, self.dc, account);
                match fault {
                    Some(Action::Drop) => {
                        tracing::info!(method = call.name, "fault: dropping the connection");
                        return Err(Stop::Close);
                    }
                    Some(Action::Error { code, message }) => Err(RpcErr::new(code, message)),
                    Some(Action::Reply(answer)) => {
                        tracing::info!(method = call.name, "fault: a made-up answer");
                        Ok(answer)
                    }
                    Some(Action::LoseReply) => {
                        let _ = rpc::execute(&mut w, &ctx, &call);
                        tracing::info!(method = call.name, "fault: reply lost");
                        *close_after = true;
                        return Ok(());
                    }
                    Some(Action::Delay(by)) => {
                        let answer = rpc::execute(&mut w, &ctx, &call);
                        note_flood(&mut w.stats, call.name, &answer);
                        drop(w);
                        let reply = result(m.msg_id, answer, call.name);
                        let tx = self.tx.clone();
                        let (key, salt) = (Arc::clone(key), self.shared.salt);
                        acks.push(m.msg_id);
                        tokio::spawn(async move {
                            tokio::time::sleep(by).await;
                            let _ = tx.send(Out::Send {
                                key,
                                session_id,
                                salt,
                                messages: vec![reply],
                            });
                        });
                        return Ok(());
                    }
                    None => rpc::execute(&mut w, &ctx, &call),
                }
            }
        };
        note_flood(&mut w.stats, call.name, &answer);
        drop(w);
        out.push(result(m.msg_id, answer, call.name));
        Ok(())
    }
}

fn note_flood(stats: &mut crate::model::Stats, method: &str, answer: &Result<Vec<u8>, RpcErr>) {
    if let Err(e) = answer
        && e.code == 420
    {
        let secs = e
            .message
            .rsplit('_')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        stats.flood_waits.push((method.to_owned(), secs));
    }
}

/// A bad_msg_notification code for the envelope, if it deserves one: 48 for a salt that
/// is not the server's, 18 for a message id not divisible by 4, 16/17 for one more than
/// 300 s in the past or 30 s in the future (the service messages page).
fn bad_msg_code(envelope: &mtp::Envelope, salt: i64) -> Option<i32> {
    let id = envelope.message.msg_id;
    if id % 4 != 0 {
        return Some(18);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let at = id >> 32;
    if at < now - 300 {
        return Some(16);
    }
    if at > now + 30 {
        return Some(17);
    }
    if envelope.salt != salt {
        return Some(48);
    }
    None
}

fn pong(msg_id: i64, ping_id: i64) -> Outgoing {
    Outgoing {
        body: tl::enums::Pong::Pong(tl::types::Pong { msg_id, ping_id }).to_bytes(),
        content_related: false,
    }
}

/// `future_salts`: the server's one salt for each of the next `num` hours (at most 64).
fn future_salts(req_msg_id: i64, num: i32, salt: i64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i32);
    let start = now - 60;
    let salts = (0..num.clamp(2, 64))
        .map(|i| tl::types::FutureSalt {
            valid_since: start + i * 3600,
            valid_until: start + (i + 1) * 3600 + 600,
            salt,
        })
        .collect();
    tl::enums::FutureSalts::Salts(tl::types::FutureSalts {
        req_msg_id,
        now,
        salts: tl::RawVec(salts),
    })
    .to_bytes()
}

/// `rpc_result` for `req_msg_id`: the answer (gzip-packed when long, except file bytes)
/// or the error.
fn result(req_msg_id: i64, answer: Result<Vec<u8>, RpcErr>, method: &str) -> Outgoing {
    let body = match answer {
        Ok(bytes) if bytes.len() >= GZIP_THRESHOLD && method != "upload.getFile" => {
            let packed = mtp::gzip(&bytes);
            if packed.len() < bytes.len() {
                packed
            } else {
                bytes
            }
        }
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!(method, code = e.code, error = %e.message, "rpc error");
            e.to_bytes()
        }
    };
    Outgoing {
        body: mtp::rpc_result(req_msg_id, &body),
        content_related: true,
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    let mut framing = Full::new();
    let mut sessions: HashMap<i64, ServerSession> = HashMap::new();
    let mut limiter = Limiter::new(shared.conn_rate);
    'outer: while let Some(out) = rx.recv().await {
        let Out::Send {
            key,
            session_id,
            salt,
            messages,
        } = out
        else {
            break;
        };
        let session = sessions
            .entry(session_id)
            .or_insert_with(|| ServerSession::new(session_id));
        for plaintext in session.seal(salt, messages) {
            let packet = crypto::encrypt_for_client(&key, plaintext);
            let mut buffer = DequeBuffer::with_capacity(packet.len() + 4, 8);
            buffer.extend(packet.iter());
            framing.pack(&mut buffer);
            for piece in buffer[..].chunks(16 * 1024) {
                limiter.take(piece.len()).await;
                if wr.write_all(piece).await.is_err() {
                    break 'outer;
                }
            }
            shared.lock_world().stats.bytes_out += buffer.len() as u64;
        }
    }
    let _ = wr.shutdown().await;
}
