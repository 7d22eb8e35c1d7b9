//! New messages in the chat: a document's chunks (`upload.saveFilePart`, or
//! `upload.saveBigFilePart` for a big file), the document message built from them
//! (`messages.sendMedia`), a text message (`messages.sendMessage`), and the new message
//! recovered from Telegram's answer ([`sent_message`]: by the random id sent with it, else
//! only the one message that is exactly what was sent).
//!
//! Chunk sizes and the big-file threshold are decided in the API's [`UploadRef`]; messages
//! already in the chat are `messages.rs`'s.

use grammers_client::tl;

use super::GrammersApi;
use super::errors::map_invocation;
use super::messages::{document_info, message_info};
use crate::telegram::api::{DocumentInfo, MessageInfo, TgError, UploadRef};

/// [`TelegramApi::save_file_part`](crate::telegram::api::TelegramApi::save_file_part).
pub(super) async fn save_file_part(
    api: &GrammersApi,
    upload: &UploadRef,
    index: u32,
    bytes: Vec<u8>,
) -> Result<(), TgError> {
    // Chunks spread over the pool: each on the connection with the fewest in flight.
    let saved = if upload.big {
        api.invoke_file(&tl::functions::upload::SaveBigFilePart {
            file_id: upload.file_id,
            file_part: index as i32,
            file_total_parts: upload.total_chunks as i32,
            bytes,
        })
        .await?
        .map_err(|e| map_invocation(&e))?
    } else {
        api.invoke_file(&tl::functions::upload::SaveFilePart {
            file_id: upload.file_id,
            file_part: index as i32,
            bytes,
        })
        .await?
        .map_err(|e| map_invocation(&e))?
    };
    if saved {
        Ok(())
    } else {
        Err(TgError::Other(format!(
            "Telegram did not store chunk {index} of the upload"
        )))
    }
}

/// [`TelegramApi::send_document`](crate::telegram::api::TelegramApi::send_document).
pub(super) async fn send_document(
    api: &GrammersApi,
    upload: &UploadRef,
    name: &str,
    caption: &str,
) -> Result<MessageInfo, TgError> {
    let (conn, target, _) = api.ready()?;
    // One random id per logical send: the upload's own, the same on every retry.
    let random_id = upload.file_id;
    let request = tl::functions::messages::SendMedia {
        silent: true,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer: target.peer.clone(),
        reply_to: None,
        media: uploaded_document(upload, name),
        message: caption.to_owned(),
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
    };
    let updates = api.invoke(&conn, &request).await?;
    let fallback = DocumentInfo {
        name: name.to_owned(),
        size: upload.size,
        ..DocumentInfo::default()
    };
    sent_message(&updates, random_id, caption, Some(fallback))
}

/// [`TelegramApi::send_text`](crate::telegram::api::TelegramApi::send_text).
pub(super) async fn send_text(
    api: &GrammersApi,
    text: &str,
    random_id: i64,
) -> Result<MessageInfo, TgError> {
    let (conn, target, _) = api.ready()?;
    let request = tl::functions::messages::SendMessage {
        no_webpage: true,
        silent: true,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer: target.peer.clone(),
        reply_to: None,
        message: text.to_owned(),
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
    };
    let updates = api.invoke(&conn, &request).await?;
    sent_message(&updates, random_id, text, None)
}

/// The document to send for a finished upload.
fn uploaded_document(upload: &UploadRef, name: &str) -> tl::enums::InputMedia {
    let file = if upload.big {
        tl::types::InputFileBig {
            id: upload.file_id,
            parts: upload.total_chunks as i32,
            name: name.to_owned(),
        }
        .into()
    } else {
        tl::types::InputFile {
            id: upload.file_id,
            parts: upload.total_chunks as i32,
            name: name.to_owned(),
            md5_checksum: String::new(),
        }
        .into()
    };
    tl::types::InputMediaUploadedDocument {
        nosound_video: false,
        force_file: true,
        spoiler: false,
        file,
        thumb: None,
        mime_type: "application/octet-stream".into(),
        attributes: vec![
            tl::types::DocumentAttributeFilename {
                file_name: name.to_owned(),
            }
            .into(),
        ],
        stickers: None,
        video_cover: None,
        video_timestamp: None,
        ttl_seconds: None,
    }
    .into()
}

/// The message a send created, from the `Updates` Telegram answered with: the id reported
/// for `random_id`, and the new message with that id. When only the id and date come back
/// (`updateShortSentMessage`), `text` and `document` fill in what was sent.
pub(super) fn sent_message(
    updates: &tl::enums::Updates,
    random_id: i64,
    text: &str,
    document: Option<DocumentInfo>,
) -> Result<MessageInfo, TgError> {
    use tl::enums::{Update, Updates};
    let list: Vec<&Update> = match updates {
        Updates::Updates(u) => u.updates.iter().collect(),
        Updates::Combined(u) => u.updates.iter().collect(),
        Updates::UpdateShort(u) => vec![&u.update],
        Updates::UpdateShortSentMessage(s) => {
            return Ok(MessageInfo {
                id: s.id,
                date: i64::from(s.date),
                text: text.to_owned(),
                document: s.media.as_ref().and_then(document_info).or(document),
                edit_date: None,
            });
        }
        Updates::TooLong | Updates::UpdateShortMessage(_) | Updates::UpdateShortChatMessage(_) => {
            Vec::new()
        }
    };
    let id = list.iter().find_map(|u| match u {
        Update::MessageId(m) if m.random_id == random_id => Some(m.id),
        _ => None,
    });
    let new_messages = list.iter().filter_map(|u| match u {
        Update::NewMessage(m) => Some(&m.message),
        Update::NewChannelMessage(m) => Some(&m.message),
        _ => None,
    });
    // Without the random id's update, only a message that is exactly what we sent (text or
    // caption, document name and size) and the only such one is taken: recording another
    // message's id for a part would lose the part.
    let mut found = None;
    let mut candidates = 0;
    for message in new_messages {
        let Some(info) = message_info(message) else {
            continue;
        };
        match id {
            Some(id) if info.id == id => return Ok(info),
            None if is_outgoing(message) && is_what_we_sent(&info, text, document.as_ref()) => {
                candidates += 1;
                found = Some(info);
            }
            _ => {}
        }
    }
    match (found, candidates) {
        (Some(info), 1) => Ok(info),
        _ => Err(TgError::Other(
            "Telegram did not report the sent message unambiguously".into(),
        )),
    }
}

/// Whether `info` has the text and document (name and size) we sent.
fn is_what_we_sent(info: &MessageInfo, text: &str, document: Option<&DocumentInfo>) -> bool {
    let same_doc = match (document, &info.document) {
        (None, None) => true,
        (Some(a), Some(b)) => a.name == b.name && a.size == b.size,
        _ => false,
    };
    same_doc && info.text.trim() == text.trim()
}

/// Whether a message was sent by this account (or posted in its channel).
fn is_outgoing(message: &tl::enums::Message) -> bool {
    match message {
        tl::enums::Message::Message(m) => m.out || m.post,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{channel_peer, document, message};
    use super::*;

    #[test]
    fn sent_messages_are_found_in_updates() {
        let sent = message(
            21,
            channel_peer(99),
            "cap",
            Some(document(Some("a.bin"), 10)),
        );
        let other = message(20, channel_peer(99), "someone else's", None);
        let updates: tl::enums::Updates = tl::types::Updates {
            updates: vec![
                tl::types::UpdateMessageId {
                    id: 21,
                    random_id: 555,
                }
                .into(),
                tl::types::UpdateNewChannelMessage {
                    message: other,
                    pts: 1,
                    pts_count: 1,
                }
                .into(),
                tl::types::UpdateNewChannelMessage {
                    message: sent,
                    pts: 2,
                    pts_count: 1,
                }
                .into(),
            ],
            users: vec![],
            chats: vec![],
            date: 0,
            seq: 0,
        }
        .into();
        let info = sent_message(&updates, 555, "cap", None).unwrap();
        assert_eq!(info.id, 21);
        assert_eq!(info.document.unwrap().name, "a.bin");

        let short: tl::enums::Updates = tl::types::UpdateShortSentMessage {
            out: true,
            id: 30,
            pts: 1,
            pts_count: 1,
            date: 1_700_000_999,
            media: None,
            entities: None,
            ttl_period: None,
        }
        .into();
        assert_eq!(
            sent_message(&short, 1, "hello", None).unwrap(),
            MessageInfo {
                id: 30,
                date: 1_700_000_999,
                text: "hello".into(),
                document: None,
                edit_date: None,
            }
        );
        assert!(matches!(
            sent_message(&tl::enums::Updates::TooLong, 1, "x", None),
            Err(TgError::Other(_))
        ));
    }

    #[test]
    fn without_the_random_id_only_the_one_exact_message_is_taken() {
        let wrap = |messages: Vec<tl::enums::Message>| -> tl::enums::Updates {
            tl::types::Updates {
                updates: messages
                    .into_iter()
                    .enumerate()
                    .map(|(i, message)| {
                        tl::types::UpdateNewChannelMessage {
                            message,
                            pts: i as i32,
                            pts_count: 1,
                        }
                        .into()
                    })
                    .collect(),
                users: vec![],
                chats: vec![],
                date: 0,
                seq: 0,
            }
            .into()
        };
        let ours = DocumentInfo {
            name: "a.bin".into(),
            size: 10,
            ..DocumentInfo::default()
        };
        // Another part sent at the same time, then ours.
        let other = message(40, channel_peer(9), "", Some(document(Some("b.bin"), 10)));
        let sent = message(41, channel_peer(9), "", Some(document(Some("a.bin"), 10)));
        let updates = wrap(vec![other.clone(), sent.clone()]);
        let info = sent_message(&updates, 1, "", Some(ours.clone())).unwrap();
        assert_eq!(info.id, 41);
        // Only someone else's message: never taken for ours.
        assert!(sent_message(&wrap(vec![other]), 1, "", Some(ours.clone())).is_err());
        // Two that look the same: ambiguous.
        let twin = message(42, channel_peer(9), "", Some(document(Some("a.bin"), 10)));
        assert!(sent_message(&wrap(vec![sent, twin]), 1, "", Some(ours)).is_err());
    }

    #[test]
    fn uploads_become_documents() {
        let small = UploadRef {
            file_id: 9,
            size: 100,
            total_chunks: 1,
            big: false,
        };
        let tl::enums::InputMedia::UploadedDocument(doc) = uploaded_document(&small, "p.bin")
        else {
            panic!("not an uploaded document");
        };
        assert!(doc.force_file);
        assert_eq!(doc.mime_type, "application/octet-stream");
        assert!(matches!(doc.file, tl::enums::InputFile::File(ref f) if f.parts == 1 && f.id == 9));
        let big = UploadRef {
            file_id: 9,
            size: 11 << 20,
            total_chunks: 22,
            big: true,
        };
        let tl::enums::InputMedia::UploadedDocument(doc) = uploaded_document(&big, "p.bin") else {
            panic!("not an uploaded document");
        };
        assert!(matches!(doc.file, tl::enums::InputFile::Big(ref f) if f.parts == 22));
    }
}
