//! The real grammers client, set up from a fake server's credentials the way tgferry
//! sets it up: every data centre's address and key from the session, grammers' retries
//! off, updates not read.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use fakegram::Credentials;
use grammers_client::Client;
use grammers_client::sender::{ConnectionParams, InvocationError, NoRetries, SenderPool};
use grammers_client::session::SessionData;
use grammers_client::session::storages::MemorySession;
use grammers_client::session::types::{DcOption, PeerAuth, PeerId, PeerInfo};
use grammers_client::tl;

/// A connected client; dropping it disconnects.
pub struct TestClient {
    pub client: Client,
    runner: tokio::task::JoinHandle<()>,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.client.disconnect();
        self.runner.abort();
    }
}

/// A grammers client for `creds`.
pub fn client(creds: &Credentials) -> TestClient {
    let mut data = SessionData {
        home_dc: creds.home_dc,
        ..SessionData::default()
    };
    for dc in &creds.dcs {
        let SocketAddr::V4(v4) = dc.addr else {
            panic!("the fake listens on IPv4")
        };
        data.dc_options.insert(
            dc.id,
            DcOption {
                id: dc.id,
                ipv4: SocketAddrV4::new(*v4.ip(), v4.port()),
                ipv6: SocketAddrV6::new(Ipv6Addr::LOCALHOST, v4.port(), 0, 0),
                auth_key: Some(dc.key),
            },
        );
    }
    if let Some(u) = creds.user {
        let info = PeerInfo::User {
            id: u.id,
            auth: Some(PeerAuth::from_hash(u.access_hash)),
            bot: Some(u.bot),
            is_self: Some(true),
        };
        data.peer_infos.insert(PeerId::user(u.id).unwrap(), info);
    }
    let session = Arc::new(MemorySession::from(data));
    let params = ConnectionParams {
        retry_policy: Box::new(NoRetries),
        ..ConnectionParams::default()
    };
    let pool = SenderPool::with_configuration(session, creds.api_id, params);
    let client = Client::new(pool.handle);
    drop(pool.updates);
    let runner = tokio::spawn(pool.runner.run());
    TestClient { client, runner }
}

/// Awaits `f`, failing the test after 20 s (no test may hang).
pub async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the fake answered within 20 s")
}

/// The RPC error as grammers parses it, name then value (`FILE_PART_3_MISSING` reads
/// `FILE_PART_MISSING_3`), or a description of another failure.
pub fn rpc_name(e: &InvocationError) -> String {
    match e {
        InvocationError::Rpc(r) => match r.value {
            Some(v) => format!("{}_{v}", r.name),
            None => r.name.clone(),
        },
        other => format!("not an RPC error: {other}"),
    }
}

/// `len` bytes of one random 4 KiB block over and over: cheap to make, and cheap for
/// grammers to gzip (it compresses every request at its best level).
pub fn repetitive(seed: u8, len: usize) -> Vec<u8> {
    let block = bytes(seed, 4096);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(block.len());
        out.extend_from_slice(&block[..n]);
    }
    out
}

/// A random non-zero id (file ids, random ids).
pub fn random_id() -> i64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    i64::from_le_bytes(b) | 1
}

/// `len` bytes of a repeatable pattern seeded by `seed`.
pub fn bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The channel as the user names it (its access hash from the user's dialogs, as
/// grammers' `iter_dialogs` finds it).
pub async fn user_channel(c: &Client, id: i64) -> (tl::enums::InputPeer, tl::enums::InputChannel) {
    let mut dialogs = c.iter_dialogs();
    while let Some(d) = bounded(dialogs.next()).await.unwrap() {
        if d.peer.id() == PeerId::channel(id).unwrap() {
            let peer = d.peer.to_ref().await.unwrap().unwrap();
            return ((&peer).into(), (&peer).into());
        }
    }
    panic!("channel {id} is not among the user's dialogs")
}

/// The channel as a bot names it (access hash 0, checked with channels.getChannels).
pub async fn bot_channel(c: &Client, id: i64) -> (tl::enums::InputPeer, tl::enums::InputChannel) {
    let chats = bounded(c.invoke(&tl::functions::channels::GetChannels {
        id: vec![tl::types::InputChannel { channel_id: id, access_hash: 0 }.into()],
    }))
    .await
    .unwrap();
    let tl::enums::messages::Chats::Chats(chats) = chats else {
        panic!("a slice")
    };
    let Some(tl::enums::Chat::Channel(ch)) = chats.chats.first() else {
        panic!("no channel")
    };
    let hash = ch.access_hash.unwrap_or(0);
    (
        tl::types::InputPeerChannel {
            channel_id: id,
            access_hash: hash,
        }
        .into(),
        tl::types::InputChannel {
            channel_id: id,
            access_hash: hash,
        }
        .into(),
    )
}

/// Uploads `data` in parts of `part` bytes (saveBigFilePart when `big`); returns the
/// input file for sendMedia.
pub async fn upload(c: &Client, data: &[u8], part: usize, big: bool) -> tl::enums::InputFile {
    let file_id = random_id();
    let parts: Vec<&[u8]> = data.chunks(part).collect();
    let total = parts.len() as i32;
    for (i, p) in parts.iter().enumerate() {
        let ok = if big {
            bounded(c.invoke(&tl::functions::upload::SaveBigFilePart {
                file_id,
                file_part: i as i32,
                file_total_parts: total,
                bytes: p.to_vec(),
            }))
            .await
        } else {
            bounded(c.invoke(&tl::functions::upload::SaveFilePart {
                file_id,
                file_part: i as i32,
                bytes: p.to_vec(),
            }))
            .await
        };
        assert!(ok.unwrap(), "part {i} stored");
    }
    if big {
        tl::types::InputFileBig {
            id: file_id,
            parts: total,
            name: "f.bin".into(),
        }
        .into()
    } else {
        tl::types::InputFile {
            id: file_id,
            parts: total,
            name: "f.bin".into(),
            md5_checksum: String::new(),
        }
        .into()
    }
}

/// messages.sendMedia of an uploaded document.
pub async fn send_document(
    c: &Client,
    peer: &tl::enums::InputPeer,
    file: tl::enums::InputFile,
    name: &str,
    random_id: i64,
) -> Result<tl::enums::Updates, InvocationError> {
    bounded(
        c.invoke(&tl::functions::messages::SendMedia {
            silent: true,
            background: false,
            clear_draft: false,
            noforwards: false,
            update_stickersets_order: false,
            invert_media: false,
            allow_paid_floodskip: false,
            peer: peer.clone(),
            reply_to: None,
            media: tl::types::InputMediaUploadedDocument {
                nosound_video: false,
                force_file: true,
                spoiler: false,
                file,
                thumb: None,
                mime_type: "application/octet-stream".into(),
                attributes: vec![
                    tl::types::DocumentAttributeFilename {
                        file_name: name.into(),
                    }
                    .into(),
                ],
                stickers: None,
                video_cover: None,
                video_timestamp: None,
                ttl_seconds: None,
            }
            .into(),
            message: String::new(),
            random_id,
            reply_markup: None,
            entities: None,
            schedule_date: None,
            schedule_repeat_period: None,
            send_as: None,
            quick_reply_shortcut: None,
            effect: None,
            allow_paid_stars: None,
            suggested_post: None,
        }),
    )
    .await
}

/// messages.sendMessage.
pub async fn send_text(
    c: &Client,
    peer: &tl::enums::InputPeer,
    text: &str,
    random_id: i64,
) -> Result<tl::enums::Updates, InvocationError> {
    bounded(c.invoke(&tl::functions::messages::SendMessage {
        no_webpage: true,
        silent: true,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer: peer.clone(),
        reply_to: None,
        message: text.into(),
        random_id,
        reply_markup: None,
        entities: None,
        schedule_date: None,
        schedule_repeat_period: None,
        send_as: None,
        quick_reply_shortcut: None,
        effect: None,
        allow_paid_stars: None,
        suggested_post: None,
        rich_message: None,
    }))
    .await
}

/// The id of the message a send created (from updateMessageID or updateShortSentMessage).
pub fn sent_id(updates: &tl::enums::Updates) -> i32 {
    match updates {
        tl::enums::Updates::UpdateShortSentMessage(s) => s.id,
        tl::enums::Updates::Updates(u) => u
            .updates
            .iter()
            .find_map(|x| match x {
                tl::enums::Update::MessageId(m) => Some(m.id),
                _ => None,
            })
            .expect("an updateMessageID"),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// The messages of a messages.Messages answer.
pub fn messages_of(m: tl::enums::messages::Messages) -> Vec<tl::enums::Message> {
    match m {
        tl::enums::messages::Messages::Messages(m) => m.messages,
        tl::enums::messages::Messages::Slice(m) => m.messages,
        tl::enums::messages::Messages::ChannelMessages(m) => m.messages,
        tl::enums::messages::Messages::NotModified(_) => Vec::new(),
    }
}

/// channels.getMessages of one id: the document's location and DC, if it has one.
pub async fn document_of(
    c: &Client,
    channel: &tl::enums::InputChannel,
    id: i32,
) -> Option<(tl::enums::InputFileLocation, i32, i64)> {
    let m = bounded(c.invoke(&tl::functions::channels::GetMessages {
        channel: channel.clone(),
        id: vec![tl::types::InputMessageId { id }.into()],
    }))
    .await
    .unwrap();
    messages_of(m).into_iter().find_map(|m| match m {
        tl::enums::Message::Message(m) => match m.media {
            Some(tl::enums::MessageMedia::Document(d)) => match d.document {
                Some(tl::enums::Document::Document(d)) => Some((
                    tl::types::InputDocumentFileLocation {
                        id: d.id,
                        access_hash: d.access_hash,
                        file_reference: d.file_reference,
                        thumb_size: String::new(),
                    }
                    .into(),
                    d.dc_id,
                    d.size,
                )),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

/// upload.getFile in `dc`.
pub async fn get_file(
    c: &Client,
    dc: i32,
    location: &tl::enums::InputFileLocation,
    offset: i64,
    limit: i32,
) -> Result<Vec<u8>, InvocationError> {
    bounded(c.invoke_in_dc(
        dc,
        &tl::functions::upload::GetFile {
            precise: false,
            cdn_supported: false,
            location: location.clone(),
            offset,
            limit,
        },
    ))
    .await
    .map(|f| match f {
        tl::enums::upload::File::File(f) => f.bytes,
        tl::enums::upload::File::CdnRedirect(_) => panic!("no CDN in the fake"),
    })
}

/// `messages.getHistory`: the newest 10 messages of `peer`.
pub fn history(peer: &tl::enums::InputPeer) -> tl::functions::messages::GetHistory {
    tl::functions::messages::GetHistory {
        peer: peer.clone(),
        offset_id: 0,
        offset_date: 0,
        add_offset: 0,
        limit: 10,
        max_id: 0,
        min_id: 0,
        hash: 0,
    }
}
