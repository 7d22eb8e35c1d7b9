//! The MTProto message layer on the server's side of an encrypted connection: reading the
//! client's plaintext (salt, session id, one message, padding), opening containers and
//! `gzip_packed`, and sealing the server's messages (message ids, sequence numbers,
//! containers) into the plaintext that [`super::crypto`] encrypts.
//!
//! Constructors and layouts: <https://core.telegram.org/mtproto/description> and
//! <https://core.telegram.org/mtproto/service_messages>.

use std::io::{Read as _, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use grammers_tl_types::{Cursor, Deserializable, Serializable};

/// `msg_container#73f1f8dc messages:vector<%Message> = MessageContainer;`
pub const MSG_CONTAINER: u32 = 0x73f1f8dc;
/// `gzip_packed#3072cfa1 packed_data:string = Object;`
pub const GZIP_PACKED: u32 = 0x3072cfa1;
/// `rpc_result#f35c6d01 req_msg_id:long result:Object = RpcResult;`
pub const RPC_RESULT: u32 = 0xf35c6d01;
/// `msg_copy#e06046b2 orig_message:Message = MessageCopy;` (refused: not used any more).
pub const MSG_COPY: u32 = 0xe06046b2;

/// The most a container's messages may hold (grammers' `MessageContainer::MAXIMUM_SIZE`,
/// which it asserts on every message it reads: a larger one would crash the client).
pub const MAX_CONTAINER_PAYLOAD: usize = 1_044_448;

/// One message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id (time-based, divisible by 4).
    pub msg_id: i64,
    /// Its sequence number (odd when content-related).
    pub seq_no: i32,
    /// Its body: a constructor id and its fields.
    pub body: Vec<u8>,
}

impl Message {
    /// The body's constructor id.
    pub fn constructor(&self) -> Option<u32> {
        constructor_of(&self.body)
    }

    /// Content-related messages (requests, pings) need an acknowledgement.
    pub fn content_related(&self) -> bool {
        self.seq_no % 2 == 1
    }
}

/// The first four bytes as a constructor id.
pub fn constructor_of(body: &[u8]) -> Option<u32> {
    body.get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// A decrypted client packet: the header and the message it carries.
#[derive(Debug)]
pub struct Envelope {
    /// The server salt the client used.
    pub salt: i64,
    /// The client's session.
    pub session_id: i64,
    /// The message (possibly a container).
    pub message: Message,
}

/// Why a plaintext or a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MtpError {
    /// Truncated or lengths that do not add up.
    Malformed(&'static str),
    /// A `gzip_packed` that does not inflate.
    BadGzip,
}

fn read_i64(b: &[u8], at: usize) -> Result<i64, MtpError> {
    b.get(at..at + 8)
        .map(|s| i64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or(MtpError::Malformed("truncated header"))
}

fn read_i32(b: &[u8], at: usize) -> Result<i32, MtpError> {
    b.get(at..at + 4)
        .map(|s| i32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or(MtpError::Malformed("truncated header"))
}

/// Reads a decrypted packet: salt, session id, message id, sequence number, length,
/// body, then 12 to 1024 bytes of padding (MTProto 2.0).
pub fn open(plaintext: &[u8]) -> Result<Envelope, MtpError> {
    let salt = read_i64(plaintext, 0)?;
    let session_id = read_i64(plaintext, 8)?;
    let msg_id = read_i64(plaintext, 16)?;
    let seq_no = read_i32(plaintext, 24)?;
    let len = read_i32(plaintext, 28)?;
    let len = usize::try_from(len).map_err(|_| MtpError::Malformed("negative length"))?;
    if !len.is_multiple_of(4) {
        return Err(MtpError::Malformed("length not a multiple of 4"));
    }
    let body = plaintext
        .get(32..32 + len)
        .ok_or(MtpError::Malformed("length past the end"))?;
    let padding = plaintext.len() - 32 - len;
    if !(12..=1024).contains(&padding) {
        return Err(MtpError::Malformed("padding not 12 to 1024 bytes"));
    }
    Ok(Envelope {
        salt,
        session_id,
        message: Message {
            msg_id,
            seq_no,
            body: body.to_vec(),
        },
    })
}

/// The messages inside `message`: the container's, or the message itself. Bodies that are
/// `gzip_packed` are inflated.
pub fn unpack(message: Message) -> Result<Vec<Message>, MtpError> {
    match message.constructor() {
        Some(MSG_CONTAINER) => {
            let b = &message.body;
            let count = read_i32(b, 4)?;
            let count = usize::try_from(count).map_err(|_| MtpError::Malformed("count"))?;
            let mut at = 8;
            let mut out = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                let msg_id = read_i64(b, at)?;
                let seq_no = read_i32(b, at + 8)?;
                let len = usize::try_from(read_i32(b, at + 12)?)
                    .map_err(|_| MtpError::Malformed("negative length"))?;
                let body = b
                    .get(at + 16..at + 16 + len)
                    .ok_or(MtpError::Malformed("container message past the end"))?;
                at += 16 + len;
                let inner = Message {
                    msg_id,
                    seq_no,
                    body: inflate_if_packed(body.to_vec())?,
                };
                if inner.constructor() == Some(MSG_CONTAINER) {
                    return Err(MtpError::Malformed("container inside a container"));
                }
                out.push(inner);
            }
            Ok(out)
        }
        _ => Ok(vec![Message {
            body: inflate_if_packed(message.body)?,
            ..message
        }]),
    }
}

/// Inflates a `gzip_packed` body (any number of times); other bodies are returned as they
/// are.
pub fn inflate_if_packed(mut body: Vec<u8>) -> Result<Vec<u8>, MtpError> {
    while constructor_of(&body) == Some(GZIP_PACKED) {
        let packed = Vec::<u8>::from_bytes(&body[4..]).map_err(|_| MtpError::BadGzip)?;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .map_err(|_| MtpError::BadGzip)?;
        body = out;
    }
    Ok(body)
}

/// `gzip_packed` around `body`.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("writes to memory");
    let packed = encoder.finish().expect("writes to memory");
    let mut out = Vec::with_capacity(packed.len() + 8);
    GZIP_PACKED.serialize(&mut out);
    packed.serialize(&mut out);
    out
}

/// `rpc_result` for the request `req_msg_id`.
pub fn rpc_result(req_msg_id: i64, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + result.len());
    RPC_RESULT.serialize(&mut out);
    req_msg_id.serialize(&mut out);
    out.extend_from_slice(result);
    out
}

/// Reads an object of type `T` from the front of `body` (after its constructor id, which
/// the caller matched) and returns it with what follows it.
pub fn read_then_rest<T: Deserializable>(body: &[u8]) -> Option<(T, Vec<u8>)> {
    let mut cursor = Cursor::from_slice(body.get(4..)?);
    let value = T::deserialize(&mut cursor).ok()?;
    let mut rest = Vec::new();
    cursor.read_to_end(&mut rest).ok()?;
    Some((value, rest))
}

/// A message the server sends.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Constructor and fields.
    pub body: Vec<u8>,
    /// Content-related (an RPC result, an update, a pong: the client acknowledges it) or not
    /// (acknowledgements, containers, service notices).
    pub content_related: bool,
}

/// The server's side of one MTProto session: its message ids and sequence numbers.
#[derive(Debug)]
pub struct ServerSession {
    /// The client's session id, echoed in every packet.
    pub id: i64,
    content_sent: i32,
    last_msg_id: i64,
}

impl ServerSession {
    /// The server's state for the client's session `id`.
    pub fn new(id: i64) -> ServerSession {
        ServerSession {
            id,
            content_sent: 0,
            last_msg_id: 0,
        }
    }

    /// A new server message id: Unix time in the high 32 bits, `1 mod 4` (a server
    /// message), always growing.
    fn next_msg_id(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970");
        let mut id = ((now.as_secs() as i64) << 32) | (i64::from(now.subsec_nanos()) & !3) | 1;
        if id <= self.last_msg_id {
            id = self.last_msg_id + 4;
        }
        self.last_msg_id = id;
        id
    }

    fn next_seq_no(&mut self, content_related: bool) -> i32 {
        if content_related {
            self.content_sent += 1;
            self.content_sent * 2 - 1
        } else {
            self.content_sent * 2
        }
    }

    fn write_message(&mut self, out: &mut Vec<u8>, body: &[u8], content_related: bool) {
        self.next_msg_id().serialize(out);
        self.next_seq_no(content_related).serialize(out);
        (body.len() as i32).serialize(out);
        out.extend_from_slice(body);
    }

    /// Seals `messages` into plaintexts (salt, session id, then one message or a container
    /// of several), each small enough for the client to read.
    pub fn seal(&mut self, salt: i64, messages: Vec<Outgoing>) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut batch_len = 0;
        for m in messages {
            let len = m.body.len() + 16;
            if !batch.is_empty()
                && (batch_len + len > MAX_CONTAINER_PAYLOAD - 64 || batch.len() >= 100)
            {
                packets.push(self.seal_batch(salt, std::mem::take(&mut batch)));
                batch_len = 0;
            }
            batch_len += len;
            batch.push(m);
        }
        if !batch.is_empty() {
            packets.push(self.seal_batch(salt, batch));
        }
        packets
    }

    fn seal_batch(&mut self, salt: i64, batch: Vec<Outgoing>) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + batch.iter().map(|m| m.body.len() + 16).sum::<usize>());
        salt.serialize(&mut out);
        self.id.serialize(&mut out);
        if batch.len() == 1 {
            let m = &batch[0];
            self.write_message(&mut out, &m.body, m.content_related);
            return out;
        }
        let mut inner = Vec::new();
        MSG_CONTAINER.serialize(&mut inner);
        (batch.len() as i32).serialize(&mut inner);
        for m in &batch {
            self.write_message(&mut inner, &m.body, m.content_related);
        }
        self.write_message(&mut out, &inner, false);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext(message: &[u8], padding: usize) -> Vec<u8> {
        let mut p = Vec::new();
        7i64.serialize(&mut p);
        9i64.serialize(&mut p);
        p.extend_from_slice(message);
        p.extend(std::iter::repeat_n(0u8, padding));
        p
    }

    fn message(msg_id: i64, seq_no: i32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        msg_id.serialize(&mut m);
        seq_no.serialize(&mut m);
        (body.len() as i32).serialize(&mut m);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_plain_message_and_a_container() {
        let one = message(4, 1, &[1, 2, 3, 4]);
        let env = open(&plaintext(&one, 16)).unwrap();
        assert_eq!((env.salt, env.session_id), (7, 9));
        assert_eq!(env.message.body, vec![1, 2, 3, 4]);
        assert!(env.message.content_related());

        let mut container = Vec::new();
        MSG_CONTAINER.serialize(&mut container);
        2i32.serialize(&mut container);
        container.extend(message(8, 3, &[5, 6, 7, 8]));
        container.extend(message(12, 4, &gzip(&[9, 9, 9, 9])));
        let env = open(&plaintext(&message(16, 4, &container), 12)).unwrap();
        let inner = unpack(env.message).unwrap();
        assert_eq!(inner.len(), 2);
        assert_eq!(
            (inner[0].msg_id, inner[0].body.clone()),
            (8, vec![5, 6, 7, 8])
        );
        assert_eq!(
            (inner[1].msg_id, inner[1].body.clone()),
            (12, vec![9, 9, 9, 9])
        );
    }

    #[test]
    fn bad_lengths_and_padding_are_refused() {
        let one = message(4, 1, &[1, 2, 3, 4]);
        assert!(open(&plaintext(&one, 4)).is_err(), "padding under 12");
        assert!(open(&plaintext(&one, 2000)).is_err(), "padding over 1024");
        let mut long = one.clone();
        long[12] = 200;
        assert!(open(&plaintext(&long, 16)).is_err(), "length past the end");
    }

    #[test]
    fn sealed_messages_number_content_and_wrap_several() {
        let mut s = ServerSession::new(42);
        let one = s.seal(
            1,
            vec![Outgoing {
                body: vec![1, 0, 0, 0],
                content_related: true,
            }],
        );
        assert_eq!(one.len(), 1);
        let env = open(&[one[0].clone(), vec![0; 12]].concat()).unwrap();
        assert_eq!((env.salt, env.session_id, env.message.seq_no), (1, 42, 1));
        assert_eq!(env.message.msg_id % 4, 1);

        let two = s.seal(
            1,
            vec![
                Outgoing {
                    body: vec![2, 0, 0, 0],
                    content_related: false,
                },
                Outgoing {
                    body: vec![3, 0, 0, 0],
                    content_related: true,
                },
            ],
        );
        let env = open(&[two[0].clone(), vec![0; 12]].concat()).unwrap();
        // A container is not content-related: an even number, counted after what it holds.
        assert_eq!(env.message.seq_no, 4);
        let inner = unpack(env.message).unwrap();
        assert_eq!(inner.iter().map(|m| m.seq_no).collect::<Vec<_>>(), [2, 3]);
        assert!(inner[0].msg_id < inner[1].msg_id);
    }

    #[test]
    fn large_answers_are_not_put_in_one_container() {
        let mut s = ServerSession::new(1);
        let big = vec![0u8; 600 * 1024];
        let packets = s.seal(
            0,
            vec![
                Outgoing {
                    body: big.clone(),
                    content_related: true,
                },
                Outgoing {
                    body: big,
                    content_related: true,
                },
            ],
        );
        assert_eq!(packets.len(), 2);
    }
}
