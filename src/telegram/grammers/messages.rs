//! Messages already in the chat: read by id (`channels.getMessages` in a channel,
//! `messages.getMessages` elsewhere, where ids are the account's own and other chats'
//! messages are dropped), the latest id, an edit, deletes (outside channels only of ids that
//! really are in the chat), and what the store sees of a raw message ([`message_info`],
//! [`document_info`]).
//!
//! New messages are `send.rs`'s; where a message's document is downloaded from is
//! `download.rs`'s (every fetch here hands it the locations it saw).

use std::collections::HashMap;

use grammers_client::session::types::PeerId;
use grammers_client::tl;

use super::GrammersApi;
use super::chats::Target;
use super::conn::Conn;
use crate::telegram::api::{DocumentInfo, MAX_IDS_PER_CALL, MediaKind, MessageInfo, TgError};

impl GrammersApi {
    /// The messages with `ids`, as Telegram answers (any order, other chats' included
    /// outside channels).
    pub(super) async fn get_raw_messages(
        &self,
        conn: &Conn,
        target: &Target,
        ids: &[i32],
    ) -> Result<Vec<tl::enums::Message>, TgError> {
        let id: Vec<tl::enums::InputMessage> = ids
            .iter()
            .map(|&id| tl::types::InputMessageId { id }.into())
            .collect();
        let messages = match &target.channel {
            Some(channel) => {
                self.invoke(
                    conn,
                    &tl::functions::channels::GetMessages {
                        channel: channel.clone(),
                        id,
                    },
                )
                .await?
            }
            None => {
                self.invoke(conn, &tl::functions::messages::GetMessages { id })
                    .await?
            }
        };
        Ok(messages_of(messages))
    }
}

/// [`TelegramApi::get_messages`](crate::telegram::api::TelegramApi::get_messages); the
/// documents' locations are kept for the downloads that follow.
pub(super) async fn get_messages(
    api: &GrammersApi,
    ids: &[i32],
) -> Result<Vec<Option<MessageInfo>>, TgError> {
    if ids.len() > MAX_IDS_PER_CALL {
        return Err(TgError::Invalid("LIMIT_INVALID".into()));
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (conn, target, _) = api.ready()?;
    let messages = api.get_raw_messages(&conn, &target, ids).await?;
    api.remember_locations(&messages, &target);
    Ok(arrange(&messages, &target, ids))
}

/// [`TelegramApi::latest_id`](crate::telegram::api::TelegramApi::latest_id): from the
/// chat's history.
pub(super) async fn latest_id(api: &GrammersApi) -> Result<Option<i32>, TgError> {
    let (conn, target, _) = api.ready()?;
    let history = api
        .invoke(
            &conn,
            &tl::functions::messages::GetHistory {
                peer: target.peer.clone(),
                offset_id: 0,
                offset_date: 0,
                add_offset: 0,
                limit: 1,
                max_id: 0,
                min_id: 0,
                hash: 0,
            },
        )
        .await?;
    Ok(messages_of(history).iter().filter_map(message_id).max())
}

/// [`TelegramApi::edit_text`](crate::telegram::api::TelegramApi::edit_text).
pub(super) async fn edit_text(api: &GrammersApi, id: i32, text: &str) -> Result<(), TgError> {
    let (conn, target, _) = api.ready()?;
    let request = tl::functions::messages::EditMessage {
        no_webpage: true,
        invert_media: false,
        peer: target.peer.clone(),
        id,
        message: Some(text.to_owned()),
        media: None,
        reply_markup: None,
        entities: None,
        schedule_date: None,
        schedule_repeat_period: None,
        quick_reply_shortcut_id: None,
        rich_message: None,
    };
    api.invoke(&conn, &request).await.map(drop)
}

/// [`TelegramApi::delete_messages`](crate::telegram::api::TelegramApi::delete_messages), in
/// batches of [`MAX_IDS_PER_CALL`]; their documents' locations are forgotten.
pub(super) async fn delete_messages(api: &GrammersApi, ids: &[i32]) -> Result<(), TgError> {
    let (conn, target, _) = api.ready()?;
    for batch in ids.chunks(MAX_IDS_PER_CALL) {
        api.forget_locations(batch);
        match &target.channel {
            Some(channel) => {
                api.invoke(
                    &conn,
                    &tl::functions::channels::DeleteMessages {
                        channel: channel.clone(),
                        id: batch.to_vec(),
                    },
                )
                .await?;
            }
            None => {
                // Outside channels message ids are per account: delete only ids that
                // really are in this chat.
                let messages = api.get_raw_messages(&conn, &target, batch).await?;
                let ours: Vec<i32> = messages
                    .iter()
                    .filter(|m| belongs(m, &target))
                    .filter_map(message_id)
                    .filter(|id| batch.contains(id))
                    .collect();
                if ours.is_empty() {
                    continue;
                }
                api.invoke(
                    &conn,
                    &tl::functions::messages::DeleteMessages {
                        revoke: true,
                        id: ours,
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// The messages of any `messages.Messages` answer.
pub(super) fn messages_of(messages: tl::enums::messages::Messages) -> Vec<tl::enums::Message> {
    use tl::enums::messages::Messages as M;
    match messages {
        M::Messages(m) => m.messages,
        M::Slice(m) => m.messages,
        M::ChannelMessages(m) => m.messages,
        M::NotModified(_) => Vec::new(),
    }
}

/// A message's id (`None` for an empty one).
pub(super) fn message_id(message: &tl::enums::Message) -> Option<i32> {
    match message {
        tl::enums::Message::Empty(_) => None,
        tl::enums::Message::Message(m) => Some(m.id),
        tl::enums::Message::Service(m) => Some(m.id),
    }
}

/// Whether a (non-empty) message is in the target chat.
pub(super) fn belongs(message: &tl::enums::Message, target: &Target) -> bool {
    match message {
        tl::enums::Message::Empty(_) => false,
        tl::enums::Message::Message(m) => PeerId::from(&m.peer_id) == target.id,
        tl::enums::Message::Service(m) => PeerId::from(&m.peer_id) == target.id,
    }
}

/// The messages for `ids`, in order: `None` where Telegram has none in this chat.
pub(super) fn arrange(
    messages: &[tl::enums::Message],
    target: &Target,
    ids: &[i32],
) -> Vec<Option<MessageInfo>> {
    let by_id: HashMap<i32, MessageInfo> = messages
        .iter()
        .filter(|m| belongs(m, target))
        .filter_map(message_info)
        .map(|m| (m.id, m))
        .collect();
    ids.iter().map(|id| by_id.get(id).cloned()).collect()
}

/// What the store sees of a message (`None` for an empty one). Service messages (a pin,
/// a title change) count as messages without text.
pub(super) fn message_info(message: &tl::enums::Message) -> Option<MessageInfo> {
    match message {
        tl::enums::Message::Empty(_) => None,
        tl::enums::Message::Message(m) => Some(MessageInfo {
            id: m.id,
            date: i64::from(m.date),
            text: m.message.clone(),
            document: m.media.as_ref().and_then(document_info),
            edit_date: m.edit_date.map(i64::from),
        }),
        tl::enums::Message::Service(m) => Some(MessageInfo {
            id: m.id,
            date: i64::from(m.date),
            text: String::new(),
            document: None,
            edit_date: None,
        }),
    }
}

/// The media of a message, if it has a document or a photo (a photo at its largest size).
pub(super) fn document_info(media: &tl::enums::MessageMedia) -> Option<DocumentInfo> {
    if let Some(photo) = photo_of(media) {
        let (_, size) = largest_photo_size(photo)?;
        return Some(DocumentInfo {
            name: String::new(),
            size,
            media_id: photo.id,
            kind: MediaKind::Photo,
            mime: "image/jpeg".into(),
        });
    }
    let doc = document_of(media)?;
    let mut name = String::new();
    let mut kind = MediaKind::Document;
    for attribute in &doc.attributes {
        match attribute {
            tl::enums::DocumentAttribute::Filename(f) => name.clone_from(&f.file_name),
            tl::enums::DocumentAttribute::Video(_) => kind = MediaKind::Video,
            tl::enums::DocumentAttribute::Audio(a) if a.voice => kind = MediaKind::Voice,
            tl::enums::DocumentAttribute::Audio(_) => kind = MediaKind::Audio,
            _ => {}
        }
    }
    Some(DocumentInfo {
        name,
        size: u64::try_from(doc.size).unwrap_or(0),
        media_id: doc.id,
        kind,
        mime: doc.mime_type.clone(),
    })
}

/// The photo in a message's media (not an empty one).
pub(super) fn photo_of(media: &tl::enums::MessageMedia) -> Option<&tl::types::Photo> {
    match media {
        tl::enums::MessageMedia::Photo(mp) => match mp.photo.as_ref()? {
            tl::enums::Photo::Photo(p) => Some(p),
            tl::enums::Photo::Empty(_) => None,
        },
        _ => None,
    }
}

/// A photo's largest size that is a file of its own: its type (the `thumb_size` to
/// download it with) and its bytes. Stripped, cached and path sizes are inline previews,
/// not files; a progressive size's bytes are its last (full) step.
pub(super) fn largest_photo_size(photo: &tl::types::Photo) -> Option<(String, u64)> {
    photo
        .sizes
        .iter()
        .filter_map(|size| match size {
            tl::enums::PhotoSize::Size(s) => Some((s.r#type.clone(), s.size)),
            tl::enums::PhotoSize::Progressive(p) => {
                Some((p.r#type.clone(), p.sizes.iter().copied().max()?))
            }
            _ => None,
        })
        .max_by_key(|(_, size)| *size)
        .map(|(kind, size)| (kind, u64::try_from(size).unwrap_or(0)))
}

/// The document in a message's media (not an empty one).
pub(super) fn document_of(media: &tl::enums::MessageMedia) -> Option<&tl::types::Document> {
    match media {
        tl::enums::MessageMedia::Document(md) => match md.document.as_ref()? {
            tl::enums::Document::Document(d) => Some(d),
            tl::enums::Document::Empty(_) => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{channel_peer, channel_target, document, message};
    use super::*;

    #[test]
    fn messages_and_documents_convert() {
        let m = message(
            12,
            channel_peer(99),
            "caption",
            Some(document(Some("part-0001.bin"), 3 << 20)),
        );
        assert_eq!(
            message_info(&m),
            Some(MessageInfo {
                id: 12,
                date: 1_700_000_123,
                text: "caption".into(),
                document: Some(DocumentInfo {
                    name: "part-0001.bin".into(),
                    size: 3 << 20,
                    media_id: 77,
                    kind: MediaKind::Document,
                    mime: "application/octet-stream".into(),
                }),
                edit_date: None,
            })
        );
        let unnamed = message(13, channel_peer(99), "", Some(document(None, 5)));
        assert_eq!(
            message_info(&unnamed).unwrap().document,
            Some(DocumentInfo {
                name: String::new(),
                size: 5,
                media_id: 77,
                kind: MediaKind::Document,
                mime: "application/octet-stream".into(),
            })
        );
        let text = message(14, channel_peer(99), "index", None);
        assert_eq!(message_info(&text).unwrap().document, None);
        let empty: tl::enums::Message = tl::types::MessageEmpty {
            id: 15,
            peer_id: None,
        }
        .into();
        assert_eq!(message_info(&empty), None);
    }

    #[test]
    fn get_messages_keeps_order_and_drops_other_chats() {
        let target = channel_target(99);
        let messages = vec![
            message(3, channel_peer(99), "three", None),
            tl::types::MessageEmpty {
                id: 2,
                peer_id: None,
            }
            .into(),
            message(1, channel_peer(99), "one", None),
            message(4, channel_peer(100), "elsewhere", None),
        ];
        let got = arrange(&messages, &target, &[1, 2, 3, 4, 5]);
        let texts: Vec<Option<&str>> = got
            .iter()
            .map(|m| m.as_ref().map(|m| m.text.as_str()))
            .collect();
        assert_eq!(texts, [Some("one"), None, Some("three"), None, None]);

        let me = Target {
            peer: tl::enums::InputPeer::PeerSelf,
            channel: None,
            id: PeerId::user(42).unwrap(),
        };
        let saved = message(7, tl::types::PeerUser { user_id: 42 }.into(), "mine", None);
        let private = message(
            8,
            tl::types::PeerUser { user_id: 43 }.into(),
            "theirs",
            None,
        );
        assert!(belongs(&saved, &me));
        assert!(!belongs(&private, &me));
    }
}
