//! Which chat the store lives in and its pinned message. The chat is resolved once, at
//! connection, into a [`Target`]: `me` is Saved Messages (not for bots), `@name` goes through
//! `contacts.resolveUsername`, a bot API id (`-100…`) is found among the account's dialogs
//! or, for a bot (which cannot list dialogs), through `channels.getChannels`. The pinned
//! message is set with `messages.updatePinnedMessage` and read back with a search for users,
//! from the full channel info for bots.
//!
//! Messages themselves (reading, converting, deleting) are `messages.rs`'s.

use grammers_client::session::types::{PeerAuth, PeerId, PeerKind, PeerRef};
use grammers_client::tl;

use super::GrammersApi;
use super::conn::{Conn, answered};
use super::messages::{arrange, belongs, message_info, messages_of};
use crate::telegram::api::{ChatRef, MessageInfo, TgError};

/// The resolved chat.
#[derive(Clone)]
pub(super) struct Target {
    /// Where requests go.
    pub(super) peer: tl::enums::InputPeer,
    /// Set for channels and supergroups (their own message ids and methods).
    pub(super) channel: Option<tl::enums::InputChannel>,
    /// What a message's `peer_id` must be to belong to the chat.
    pub(super) id: PeerId,
}

/// The target for a peer the account can reach.
pub(super) fn target_of(peer: PeerRef) -> Target {
    Target {
        peer: (&peer).into(),
        channel: (peer.id.kind() == PeerKind::Channel).then(|| (&peer).into()),
        id: peer.id,
    }
}

/// The channels with id `id` among `chats` (what Telegram answered a lookup with).
fn channels_with_id(
    chats: &[tl::enums::Chat],
    id: PeerId,
) -> impl Iterator<Item = &tl::types::Channel> {
    chats.iter().filter_map(move |c| match c {
        tl::enums::Chat::Channel(c) if PeerId::channel(c.id) == Some(id) => Some(c),
        _ => None,
    })
}

impl GrammersApi {
    /// The configured chat as the account `me` reaches it.
    pub(super) async fn resolve(
        &self,
        conn: &Conn,
        me: &tl::types::User,
    ) -> Result<Target, TgError> {
        match &self.chat {
            ChatRef::Me => {
                if me.bot {
                    return Err(TgError::ChatNotFound(
                        "bots have no Saved Messages (`me`): use a channel or group the bot is an admin of".into(),
                    ));
                }
                Ok(Target {
                    peer: tl::enums::InputPeer::PeerSelf,
                    channel: None,
                    id: PeerId::user(me.id).ok_or_else(|| TgError::Other("bad user id".into()))?,
                })
            }
            ChatRef::Username(name) => {
                let tl::enums::contacts::ResolvedPeer::Peer(resolved) = self
                    .invoke(
                        conn,
                        &tl::functions::contacts::ResolveUsername {
                            username: name.clone(),
                            referer: None,
                        },
                    )
                    .await?;
                let id = PeerId::from(&resolved.peer);
                let auth = match id.kind() {
                    PeerKind::Channel => {
                        channels_with_id(&resolved.chats, id).find_map(|c| c.access_hash)
                    }
                    PeerKind::User => resolved.users.iter().find_map(|u| match u {
                        tl::enums::User::User(u) if PeerId::user(u.id) == Some(id) => u.access_hash,
                        _ => None,
                    }),
                    PeerKind::Chat => Some(0),
                };
                let auth = auth.ok_or_else(|| {
                    TgError::ChatNotFound(format!("@{name} cannot be reached by this account"))
                })?;
                Ok(target_of(PeerRef {
                    id,
                    auth: PeerAuth::from_hash(auth),
                }))
            }
            ChatRef::Id(raw) => {
                let id = PeerId::from_bot_api_dialog_id(*raw).ok_or_else(|| {
                    TgError::ChatNotFound(format!("{raw} is not a Telegram chat id"))
                })?;
                if id.kind() == PeerKind::Chat {
                    return Ok(target_of(id.to_ambient_ref()));
                }
                if me.bot {
                    return self.resolve_for_bot(conn, id, me).await;
                }
                // Resolved once, at login, into the session line.
                if let Some(hash) = self.session.chat_access_hash(id.bare_id_unchecked()) {
                    return Ok(target_of(PeerRef {
                        id,
                        auth: PeerAuth::from_hash(hash),
                    }));
                }
                tracing::info!(
                    "looking for chat {raw} among the account's dialogs; `tgferry telegram login \
                     --chat {raw}` makes a session that knows it"
                );
                match find_channel(conn, id).await? {
                    Some(hash) => Ok(target_of(PeerRef {
                        id,
                        auth: PeerAuth::from_hash(hash),
                    })),
                    None => Err(TgError::ChatNotFound(format!(
                        "{raw} is not among this account's chats (join it first, or use its \
                         @username)"
                    ))),
                }
            }
        }
    }

    /// Bots cannot list dialogs: a channel is tried with access hash 0 (what bots may use).
    /// In a broadcast channel only admins may post: a bot that is not one, or may not post,
    /// is refused here, by name, before anything is sent.
    async fn resolve_for_bot(
        &self,
        conn: &Conn,
        id: PeerId,
        me: &tl::types::User,
    ) -> Result<Target, TgError> {
        if id.kind() != PeerKind::Channel {
            return Ok(target_of(id.to_ambient_ref()));
        }
        let peer = id.to_ambient_ref();
        let chats = self
            .invoke(
                conn,
                &tl::functions::channels::GetChannels {
                    id: vec![(&peer).into()],
                },
            )
            .await?;
        let chats = match chats {
            tl::enums::messages::Chats::Chats(c) => c.chats,
            tl::enums::messages::Chats::Slice(c) => c.chats,
        };
        let found = channels_with_id(&chats, id).next();
        if let Some(c) = found
            && !self.reads_only
            && c.broadcast
            && !c.creator
            && !matches!(&c.admin_rights, Some(tl::enums::ChatAdminRights::Rights(r)) if r.post_messages)
        {
            let name = me
                .username
                .as_ref()
                .map_or_else(|| format!("bot {}", me.id), |u| format!("@{u}"));
            return Err(TgError::Forbidden(format!(
                "{name} is not an admin of channel {id} with the right to post messages"
            )));
        }
        let auth = found.map(|c| c.access_hash.unwrap_or(0));
        match auth {
            Some(hash) => Ok(target_of(PeerRef {
                id,
                auth: PeerAuth::from_hash(hash),
            })),
            None => Err(TgError::ChatNotFound(format!(
                "{} cannot be reached by this bot (add it to the channel as an admin)",
                id
            ))),
        }
    }
}

/// Most pages of dialogs read when looking for a chat (100 dialogs each).
const DIALOG_PAGES: usize = 50;

/// A channel's access hash, found among the account's dialogs (`messages.getDialogs`, read
/// raw: grammers' dialog iterator panics on a dialog whose peer the answer leaves out).
pub(crate) async fn find_channel(conn: &Conn, id: PeerId) -> Result<Option<i64>, TgError> {
    use tl::enums::messages::Dialogs;
    let mut request = tl::functions::messages::GetDialogs {
        exclude_pinned: false,
        folder_id: None,
        offset_date: 0,
        offset_id: 0,
        offset_peer: tl::enums::InputPeer::Empty,
        limit: 100,
        hash: 0,
    };
    for _ in 0..DIALOG_PAGES {
        let (dialogs, messages, users, chats, last) =
            match answered(conn.client.invoke(&request)).await? {
                Dialogs::Dialogs(d) => (d.dialogs, d.messages, d.users, d.chats, true),
                Dialogs::Slice(d) => {
                    let last = d.dialogs.len() < request.limit as usize;
                    (d.dialogs, d.messages, d.users, d.chats, last)
                }
                Dialogs::NotModified(_) => return Ok(None),
            };
        if let Some(c) = channels_with_id(&chats, id).next() {
            return Ok(Some(c.access_hash.unwrap_or(0)));
        }
        // The next page starts after this page's last dialog (its peer and top message).
        let Some(tl::enums::Dialog::Dialog(tail)) = dialogs.last() else {
            return Ok(None);
        };
        if last {
            return Ok(None);
        }
        let offset_peer = match &tail.peer {
            tl::enums::Peer::Channel(p) => chats.iter().find_map(|c| match c {
                tl::enums::Chat::Channel(c) if c.id == p.channel_id => Some(
                    tl::types::InputPeerChannel {
                        channel_id: c.id,
                        access_hash: c.access_hash.unwrap_or(0),
                    }
                    .into(),
                ),
                _ => None,
            }),
            tl::enums::Peer::User(p) => users.iter().find_map(|u| match u {
                tl::enums::User::User(u) if u.id == p.user_id => Some(
                    tl::types::InputPeerUser {
                        user_id: u.id,
                        access_hash: u.access_hash.unwrap_or(0),
                    }
                    .into(),
                ),
                _ => None,
            }),
            tl::enums::Peer::Chat(p) => {
                Some(tl::types::InputPeerChat { chat_id: p.chat_id }.into())
            }
        };
        // A dialog whose peer the answer left out ends the scan, never the process.
        let Some(offset_peer) = offset_peer else {
            return Ok(None);
        };
        let top = messages.iter().find_map(|m| match m {
            tl::enums::Message::Message(m) if m.id == tail.top_message => Some(m.date),
            tl::enums::Message::Service(m) if m.id == tail.top_message => Some(m.date),
            _ => None,
        });
        request.offset_peer = offset_peer;
        request.offset_id = tail.top_message;
        request.offset_date = top.unwrap_or(0);
        request.exclude_pinned = true;
    }
    Ok(None)
}

/// [`TelegramApi::pin`](crate::telegram::api::TelegramApi::pin).
pub(super) async fn pin(api: &GrammersApi, id: i32) -> Result<(), TgError> {
    let (conn, target, _) = api.ready()?;
    api.invoke(
        &conn,
        &tl::functions::messages::UpdatePinnedMessage {
            silent: true,
            unpin: false,
            pm_oneside: false,
            peer: target.peer.clone(),
            id,
        },
    )
    .await
    .map(drop)
}

/// [`TelegramApi::pinned`](crate::telegram::api::TelegramApi::pinned): a search for the
/// pinned message for users; bots (who may not search) read the pinned id from the full
/// channel info, and have no way to it outside channels.
pub(super) async fn pinned(api: &GrammersApi) -> Result<Option<MessageInfo>, TgError> {
    let (conn, target, bot) = api.ready()?;
    if !bot {
        let found = api
            .invoke(
                &conn,
                &tl::functions::messages::Search {
                    peer: target.peer.clone(),
                    q: String::new(),
                    from_id: None,
                    saved_peer_id: None,
                    saved_reaction: None,
                    top_msg_id: None,
                    filter: tl::enums::MessagesFilter::InputMessagesFilterPinned,
                    min_date: 0,
                    max_date: 0,
                    offset_id: 0,
                    add_offset: 0,
                    limit: 1,
                    max_id: 0,
                    min_id: 0,
                    hash: 0,
                },
            )
            .await?;
        return Ok(messages_of(found)
            .iter()
            .filter(|m| belongs(m, &target))
            .find_map(message_info));
    }
    let Some(channel) = &target.channel else {
        return Err(TgError::BotMethodInvalid);
    };
    let tl::enums::messages::ChatFull::Full(full) = api
        .invoke(
            &conn,
            &tl::functions::channels::GetFullChannel {
                channel: channel.clone(),
            },
        )
        .await?;
    let pinned = match full.full_chat {
        tl::enums::ChatFull::ChannelFull(c) => c.pinned_msg_id,
        _ => None,
    };
    let Some(id) = pinned else {
        return Ok(None);
    };
    let messages = api.get_raw_messages(&conn, &target, &[id]).await?;
    Ok(arrange(&messages, &target, &[id]).pop().flatten())
}
