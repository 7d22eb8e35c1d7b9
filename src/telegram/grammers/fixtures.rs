//! Test fixtures shared by the parts' unit tests: raw messages and documents as grammers
//! decodes them, a channel [`Target`], and an unconnected [`GrammersApi`].

use grammers_client::session::types::{PeerAuth, PeerId, PeerRef};
use grammers_client::tl;
use secrecy::SecretString;

use super::chats::{Target, target_of};
use super::{Credential, GrammersApi, GrammersConfig};
use crate::telegram::api::ChatRef;

/// An API for Saved Messages signed in with `credential`, not connected.
pub(super) fn api(credential: Credential) -> GrammersApi {
    GrammersApi::new(GrammersConfig {
        api_id: 1,
        api_hash: SecretString::from("x"),
        credential,
        chat: ChatRef::Me,
        connections: 1,
        reads_only: false,
        takeout: false,
    })
}

/// A document named `name` (if given) of `size` bytes in data centre 4.
pub(super) fn document(name: Option<&str>, size: i64) -> tl::enums::MessageMedia {
    let mut attributes: Vec<tl::enums::DocumentAttribute> =
        vec![tl::types::DocumentAttributeImageSize { w: 1, h: 1 }.into()];
    if let Some(name) = name {
        attributes.push(
            tl::types::DocumentAttributeFilename {
                file_name: name.into(),
            }
            .into(),
        );
    }
    tl::types::MessageMediaDocument {
        nopremium: false,
        spoiler: false,
        video: false,
        round: false,
        voice: false,
        document: Some(
            tl::types::Document {
                id: 77,
                access_hash: 88,
                file_reference: vec![1, 2, 3],
                date: 1_700_000_000,
                mime_type: "application/octet-stream".into(),
                size,
                thumbs: None,
                video_thumbs: None,
                dc_id: 4,
                attributes,
            }
            .into(),
        ),
        alt_documents: None,
        video_cover: None,
        video_timestamp: None,
        ttl_seconds: None,
    }
    .into()
}

/// An outgoing message `id` in `peer`.
pub(super) fn message(
    id: i32,
    peer: tl::enums::Peer,
    text: &str,
    media: Option<tl::enums::MessageMedia>,
) -> tl::enums::Message {
    tl::types::Message {
        out: true,
        mentioned: false,
        media_unread: false,
        silent: false,
        post: false,
        from_scheduled: false,
        legacy: false,
        edit_hide: false,
        pinned: false,
        noforwards: false,
        invert_media: false,
        offline: false,
        video_processing_pending: false,
        paid_suggested_post_stars: false,
        paid_suggested_post_ton: false,
        id,
        from_id: None,
        from_boosts_applied: None,
        from_rank: None,
        peer_id: peer,
        saved_peer_id: None,
        fwd_from: None,
        via_bot_id: None,
        via_business_bot_id: None,
        guestchat_via_from: None,
        reply_to: None,
        date: 1_700_000_123,
        message: text.into(),
        media,
        reply_markup: None,
        entities: None,
        views: None,
        forwards: None,
        replies: None,
        edit_date: None,
        post_author: None,
        grouped_id: None,
        reactions: None,
        restriction_reason: None,
        ttl_period: None,
        quick_reply_shortcut_id: None,
        effect: None,
        factcheck: None,
        report_delivery_until_date: None,
        paid_message_stars: None,
        suggested_post: None,
        schedule_repeat_period: None,
        summary_from_language: None,
        rich_message: None,
    }
    .into()
}

/// Channel `id` as a message's peer.
pub(super) fn channel_peer(id: i64) -> tl::enums::Peer {
    tl::types::PeerChannel { channel_id: id }.into()
}

/// Channel `id` as the store's chat.
pub(super) fn channel_target(id: i64) -> Target {
    target_of(PeerRef {
        id: PeerId::channel(id).unwrap(),
        auth: PeerAuth::from_hash(5),
    })
}
