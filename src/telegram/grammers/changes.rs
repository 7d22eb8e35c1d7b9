//! Reading a chat as a source reads it: what changed in a channel since an update sequence
//! number (`updates.getChannelDifference`, new messages, edits and deletions in one answer)
//! and a page of history (`messages.getHistory`, for chats that are not channels, which
//! have no per-chat update sequence).
//!
//! What a raw message is to the source is `messages.rs`'s ([`message_info`]); downloading
//! media is `download.rs`'s, and every message seen here tells it where the media is.

use grammers_client::tl;

use super::GrammersApi;
use super::messages::{belongs, message_id, message_info, messages_of};
use crate::telegram::api::{ChatChanges, MessageInfo, TgError};

/// Most updates asked for in one `updates.getChannelDifference`: the most Telegram gives a
/// user account (bots may ask for up to 100,000; 100 keeps answers small for both).
/// Source: <https://core.telegram.org/method/updates.getChannelDifference>.
const DIFFERENCE_LIMIT: i32 = 100;

/// [`TelegramApi::changes`](crate::telegram::api::TelegramApi::changes).
pub(super) async fn changes(api: &GrammersApi, pts: i32) -> Result<ChatChanges, TgError> {
    use tl::enums::updates::ChannelDifference as D;
    let (conn, target, _) = api.ready()?;
    let Some(channel) = target.channel.clone() else {
        return Err(TgError::Invalid("CHANNEL_INVALID".into()));
    };
    let answer = api
        .invoke(
            &conn,
            &tl::functions::updates::GetChannelDifference {
                force: false,
                channel,
                filter: tl::enums::ChannelMessagesFilter::Empty,
                pts: pts.max(1),
                limit: DIFFERENCE_LIMIT,
            },
        )
        .await?;
    Ok(match answer {
        D::Empty(d) => ChatChanges::Nothing { pts: d.pts },
        D::TooLong(d) => {
            let (top_id, dialog_pts) = match &d.dialog {
                tl::enums::Dialog::Dialog(dialog) => (dialog.top_message, dialog.pts),
                _ => (0, None),
            };
            let top_id = d
                .messages
                .iter()
                .filter_map(message_id)
                .chain([top_id])
                .max()
                .unwrap_or(0);
            api.remember_locations(&d.messages, &target);
            ChatChanges::TooLong {
                pts: dialog_pts.unwrap_or(pts),
                top_id,
            }
        }
        D::Difference(d) => {
            api.remember_locations(&d.new_messages, &target);
            let new = d
                .new_messages
                .iter()
                .filter(|m| belongs(m, &target))
                .filter_map(message_info)
                .collect();
            let mut edited = Vec::new();
            let mut deleted = Vec::new();
            for update in &d.other_updates {
                match update {
                    tl::enums::Update::EditChannelMessage(u) if belongs(&u.message, &target) => {
                        // The media may be another now, or gone.
                        if let Some(id) = message_id(&u.message) {
                            api.forget_locations(&[id]);
                        }
                        api.remember_locations(std::slice::from_ref(&u.message), &target);
                        edited.extend(message_info(&u.message));
                    }
                    tl::enums::Update::DeleteChannelMessages(u) => {
                        api.forget_locations(&u.messages);
                        deleted.extend(&u.messages);
                    }
                    _ => {}
                }
            }
            ChatChanges::Changed {
                pts: d.pts,
                last: d.r#final,
                new,
                edited,
                deleted,
            }
        }
    })
}

/// [`TelegramApi::history`](crate::telegram::api::TelegramApi::history).
pub(super) async fn history(
    api: &GrammersApi,
    min_id: i32,
    before: i32,
) -> Result<Vec<MessageInfo>, TgError> {
    let (conn, target, bot) = api.ready()?;
    if bot {
        return Err(TgError::BotMethodInvalid);
    }
    let answer = api
        .invoke(
            &conn,
            &tl::functions::messages::GetHistory {
                peer: target.peer.clone(),
                offset_id: before.max(0),
                offset_date: 0,
                add_offset: 0,
                limit: 100,
                max_id: 0,
                min_id: min_id.max(0),
                hash: 0,
            },
        )
        .await?;
    let messages = messages_of(answer);
    api.remember_locations(&messages, &target);
    let mut found: Vec<MessageInfo> = messages
        .iter()
        .filter(|m| belongs(m, &target))
        .filter_map(message_info)
        .filter(|m| m.id > min_id && (before <= 0 || m.id < before))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.id));
    Ok(found)
}
