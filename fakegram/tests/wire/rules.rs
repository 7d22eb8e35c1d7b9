//! Telegram's rules on messages over the wire: no history for bots, the 48-hour limits on
//! deleting (bots) and editing (basic groups), message rates, duplicate sends, pins.

use std::time::Duration;

use fakegram::{AccountKind, Chat, Config, Server};
use grammers_client::tl;

use crate::common::{
    bot_channel, bounded, client, history, random_id, rpc_name, send_text, sent_id, user_channel,
};

const DAY: u64 = 24 * 60 * 60;

fn channel_id(server: &Server) -> i64 {
    let Chat::Channel(id) = server.channel() else {
        unreachable!()
    };
    id
}

#[tokio::test]
async fn bots_cannot_read_history_but_fetch_by_id() {
    let server = Server::start(Config::default()).await.unwrap();
    let bot = client(&server.credentials(AccountKind::Bot));
    let (peer, channel) = bot_channel(&bot.client, channel_id(&server)).await;
    let id = sent_id(
        &send_text(&bot.client, &peer, "hello", random_id())
            .await
            .unwrap(),
    );
    let err = bounded(bot.client.invoke(&history(&peer)))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "BOT_METHOD_INVALID");
    let err = bounded(bot.client.invoke(&tl::functions::messages::GetDialogs {
        exclude_pinned: false,
        folder_id: None,
        offset_date: 0,
        offset_id: 0,
        offset_peer: tl::enums::InputPeer::Empty,
        limit: 10,
        hash: 0,
    }))
    .await
    .unwrap_err();
    assert_eq!(rpc_name(&err), "BOT_METHOD_INVALID");
    let got = bounded(bot.client.invoke(&tl::functions::channels::GetMessages {
        channel,
        id: vec![
            tl::types::InputMessageId { id }.into(),
            tl::types::InputMessageId { id: id + 1 }.into(),
        ],
    }))
    .await
    .unwrap();
    let got = crate::common::messages_of(got);
    assert!(matches!(&got[0], tl::enums::Message::Message(m) if m.message == "hello" && m.post));
    assert!(matches!(&got[1], tl::enums::Message::Empty(e) if e.id == id + 1));
    // The user reads history, newest first.
    let user = client(&server.credentials(AccountKind::User));
    let (upeer, _) = user_channel(&user.client, channel_id(&server)).await;
    let h =
        crate::common::messages_of(bounded(user.client.invoke(&history(&upeer))).await.unwrap());
    assert_eq!(h.len(), 1);
}

#[tokio::test]
async fn bots_cannot_delete_messages_older_than_48_hours_users_can() {
    let server = Server::start(Config::default()).await.unwrap();
    let bot = client(&server.credentials(AccountKind::Bot));
    let (peer, channel) = bot_channel(&bot.client, channel_id(&server)).await;
    let old = sent_id(
        &send_text(&bot.client, &peer, "old", random_id())
            .await
            .unwrap(),
    );
    server.advance(Duration::from_secs(2 * DAY));
    let new = sent_id(
        &send_text(&bot.client, &peer, "new", random_id())
            .await
            .unwrap(),
    );
    let delete = |ids: Vec<i32>| tl::functions::channels::DeleteMessages {
        channel: channel.clone(),
        id: ids,
    };
    let err = bounded(bot.client.invoke(&delete(vec![new, old])))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "MESSAGE_DELETE_FORBIDDEN");
    assert_eq!(
        server.messages(server.channel()).len(),
        2,
        "a refusal deletes nothing"
    );
    bounded(bot.client.invoke(&delete(vec![new])))
        .await
        .unwrap();
    // The owner may delete the bot's old post.
    let user = client(&server.credentials(AccountKind::User));
    let (_, uchannel) = user_channel(&user.client, channel_id(&server)).await;
    bounded(
        user.client
            .invoke(&tl::functions::channels::DeleteMessages {
                channel: uchannel,
                id: vec![old],
            }),
    )
    .await
    .unwrap();
    assert!(server.messages(server.channel()).is_empty());
}

#[tokio::test]
async fn a_users_message_in_a_basic_group_cannot_be_edited_after_48_hours() {
    let server = Server::start(Config::default()).await.unwrap();
    let group = server.create_group("old school", false);
    let Chat::Group(chat_id) = group else {
        unreachable!()
    };
    let user = client(&server.credentials(AccountKind::User));
    let peer: tl::enums::InputPeer = tl::types::InputPeerChat { chat_id }.into();
    let id = sent_id(
        &send_text(&user.client, &peer, "index v1", random_id())
            .await
            .unwrap(),
    );
    let edit = |text: &str| tl::functions::messages::EditMessage {
        no_webpage: true,
        invert_media: false,
        peer: peer.clone(),
        id,
        message: Some(text.into()),
        media: None,
        reply_markup: None,
        entities: None,
        schedule_date: None,
        schedule_repeat_period: None,
        quick_reply_shortcut_id: None,
        rich_message: None,
    };
    let err = bounded(user.client.invoke(&edit("index v1")))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "MESSAGE_NOT_MODIFIED");
    bounded(user.client.invoke(&edit("index v2")))
        .await
        .unwrap();
    server.advance(Duration::from_secs(2 * DAY + 1));
    let err = bounded(user.client.invoke(&edit("index v3")))
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "MESSAGE_EDIT_TIME_EXPIRED");
    assert_eq!(server.messages(group)[0].text, "index v2");
    // A channel post has no such limit.
    let (cpeer, _) = user_channel(&user.client, channel_id(&server)).await;
    let cid = sent_id(
        &send_text(&user.client, &cpeer, "post", random_id())
            .await
            .unwrap(),
    );
    server.advance(Duration::from_secs(30 * DAY));
    bounded(user.client.invoke(&tl::functions::messages::EditMessage {
        peer: cpeer,
        id: cid,
        ..edit("post v2")
    }))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_bot_sends_at_most_20_messages_a_minute_into_a_channel() {
    let server = Server::start(Config::default()).await.unwrap();
    let bot = client(&server.credentials(AccountKind::Bot));
    let (peer, _) = bot_channel(&bot.client, channel_id(&server)).await;
    for i in 0..20 {
        send_text(&bot.client, &peer, &format!("m{i}"), random_id())
            .await
            .unwrap();
        server.advance(Duration::from_millis(1500));
    }
    let err = send_text(&bot.client, &peer, "one too many", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_30");
    assert_eq!(
        server.stats().flood_waits,
        vec![("messages.sendMessage".to_owned(), 30)]
    );
    server.advance(Duration::from_secs(30));
    send_text(&bot.client, &peer, "again", random_id())
        .await
        .unwrap();
}

#[tokio::test]
async fn anyone_gets_a_burst_then_about_one_message_a_second_per_chat() {
    let server = Server::start(Config::default()).await.unwrap();
    let user = client(&server.credentials(AccountKind::User));
    let me: tl::enums::InputPeer = tl::enums::InputPeer::PeerSelf;
    for i in 0..fakegram::rules::CHAT_BURST {
        send_text(&user.client, &me, &format!("m{i}"), random_id())
            .await
            .unwrap();
    }
    let err = send_text(&user.client, &me, "too fast", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "FLOOD_WAIT_1");
    server.advance(Duration::from_secs(1));
    send_text(&user.client, &me, "in time", random_id())
        .await
        .unwrap();
    assert_eq!(server.messages(Chat::Saved(AccountKind::User)).len(), 21);
}

#[tokio::test]
async fn the_same_random_id_is_not_sent_twice() {
    let server = Server::start(Config::default()).await.unwrap();
    let user = client(&server.credentials(AccountKind::User));
    let (peer, _) = user_channel(&user.client, channel_id(&server)).await;
    let rid = random_id();
    send_text(&user.client, &peer, "once", rid).await.unwrap();
    let err = send_text(&user.client, &peer, "once", rid)
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "RANDOM_ID_DUPLICATE");
    assert_eq!(server.messages(server.channel()).len(), 1);
}

#[tokio::test]
async fn pinning_in_a_channel_leaves_a_service_message_and_shows_in_full_info() {
    let server = Server::start(Config::default()).await.unwrap();
    let bot = client(&server.credentials(AccountKind::Bot));
    let (peer, channel) = bot_channel(&bot.client, channel_id(&server)).await;
    let index = sent_id(
        &send_text(&bot.client, &peer, "index", random_id())
            .await
            .unwrap(),
    );
    bounded(
        bot.client
            .invoke(&tl::functions::messages::UpdatePinnedMessage {
                silent: true,
                unpin: false,
                pm_oneside: false,
                peer: peer.clone(),
                id: index,
            }),
    )
    .await
    .unwrap();
    let messages = server.messages(server.channel());
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].pinned);
    assert_eq!(
        messages[1].pin_of,
        Some(index),
        "the service message takes the next id"
    );
    let tl::enums::messages::ChatFull::Full(full) = bounded(
        bot.client
            .invoke(&tl::functions::channels::GetFullChannel { channel }),
    )
    .await
    .unwrap();
    let tl::enums::ChatFull::ChannelFull(full) = full.full_chat else {
        panic!()
    };
    assert_eq!(full.pinned_msg_id, Some(index));
    // Only administrators pin in a channel; the user's own Saved Messages take no
    // service message.
    let user = client(&server.credentials(AccountKind::User));
    let me = tl::enums::InputPeer::PeerSelf;
    let saved = sent_id(
        &send_text(&user.client, &me, "note", random_id())
            .await
            .unwrap(),
    );
    bounded(
        user.client
            .invoke(&tl::functions::messages::UpdatePinnedMessage {
                silent: true,
                unpin: false,
                pm_oneside: false,
                peer: me,
                id: saved,
            }),
    )
    .await
    .unwrap();
    assert_eq!(server.messages(Chat::Saved(AccountKind::User)).len(), 1);
}

#[tokio::test]
async fn texts_and_captions_are_trimmed_and_limited() {
    let server = Server::start(Config::default()).await.unwrap();
    let user = client(&server.credentials(AccountKind::User));
    let me = tl::enums::InputPeer::PeerSelf;
    let err = send_text(&user.client, &me, "  \n ", random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "MESSAGE_EMPTY");
    let err = send_text(&user.client, &me, &"x".repeat(4097), random_id())
        .await
        .unwrap_err();
    assert_eq!(rpc_name(&err), "MESSAGE_TOO_LONG");
    send_text(&user.client, &me, "  padded  ", random_id())
        .await
        .unwrap();
    assert_eq!(
        server.messages(Chat::Saved(AccountKind::User))[0].text,
        "padded"
    );
}
