//! Requests: opening the wrappers a client puts around them (`invokeWithLayer`,
//! `initConnection`, `invokeWithTakeout`), then carrying out each method the fake models
//! against the model (`World`) and answering with the TL types grammers reads. Every limit
//! comes from [`crate::rules`]; this module only applies them in the order Telegram does.

use std::collections::BTreeSet;

use grammers_tl_types::{self as tl, Cursor, Deserializable, Identifiable, Serializable};

use crate::media;
use crate::model::{
    Change, Document, Forward, MediaKind, Msg, Peer, PendingCode, Photo, Service, UploadKey, World,
    random_i64,
};
use crate::rules;
use crate::srp::{self, Challenge};

/// An RPC error: the code and the name Telegram would answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcErr {
    /// 303, 400, 401, 403, 406, 420, 500…
    pub code: i32,
    /// `FLOOD_WAIT_30`, `FILE_PART_3_MISSING`…
    pub message: String,
}

impl RpcErr {
    /// An error with this code and name.
    pub fn new(code: i32, message: impl Into<String>) -> RpcErr {
        RpcErr {
            code,
            message: message.into(),
        }
    }

    /// A 400 (bad request).
    pub fn bad(message: impl Into<String>) -> RpcErr {
        RpcErr::new(400, message)
    }

    /// `rpc_error` as the client reads it.
    pub fn to_bytes(&self) -> Vec<u8> {
        tl::enums::RpcError::Error(tl::types::RpcError {
            error_code: self.code,
            error_message: self.message.clone(),
        })
        .to_bytes()
    }
}

/// Who is calling: the data centre the connection reached and the key it uses.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The data centre.
    pub dc: i32,
    /// The authorization key's id.
    pub key_id: i64,
    /// Which connection (numbered from 0 as they are accepted).
    pub conn: u64,
}

/// What `initConnection` said.
#[derive(Debug, Clone)]
pub struct Init {
    /// The application id.
    pub api_id: i32,
}

/// A request with its wrappers opened.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method's constructor id.
    pub id: u32,
    /// The method's TL name (`upload.saveFilePart`).
    pub name: &'static str,
    /// Its fields (after the constructor id).
    pub body: Vec<u8>,
    /// `initConnection`, when the request came wrapped in it.
    pub init: Option<Init>,
    /// The takeout session of `invokeWithTakeout`, when the request came wrapped in it.
    pub takeout: Option<i64>,
}

/// The rest of a buffer, whatever it holds (the `query:!X` of a wrapper).
struct Rest(Vec<u8>);

impl Deserializable for Rest {
    fn deserialize(buf: &mut Cursor) -> tl::deserialize::Result<Self> {
        let mut out = Vec::new();
        buf.read_to_end(&mut out)?;
        Ok(Rest(out))
    }
}

impl Serializable for Rest {
    fn serialize(&self, buf: &mut impl Extend<u8>) {
        buf.extend(self.0.iter().copied());
    }
}

fn constructor(body: &[u8]) -> Result<u32, RpcErr> {
    crate::wire::mtp::constructor_of(body).ok_or_else(|| RpcErr::bad("INPUT_CONSTRUCTOR_INVALID"))
}

fn parse<T: Deserializable>(body: &[u8]) -> Result<T, RpcErr> {
    T::from_bytes(body).map_err(|_| RpcErr::bad("INPUT_FETCH_ERROR"))
}

/// Opens `invokeWithLayer`, `initConnection`, `invokeWithoutUpdates`,
/// `invokeWithTakeout` and `gzip_packed` around a request.
pub fn open_call(body: &[u8]) -> Result<Call, RpcErr> {
    let mut body = body.to_vec();
    let mut init = None;
    let mut takeout = None;
    loop {
        body = crate::wire::mtp::inflate_if_packed(body)
            .map_err(|_| RpcErr::bad("INPUT_FETCH_ERROR"))?;
        let id = constructor(&body)?;
        let fields = &body[4..];
        if id == tl::functions::InvokeWithLayer::<Rest>::CONSTRUCTOR_ID {
            // Any layer is served as the one grammers 0.11 speaks (tl::LAYER).
            let wrapped: tl::functions::InvokeWithLayer<Rest> = parse(fields)?;
            body = wrapped.query.0;
        } else if id == tl::functions::InitConnection::<Rest>::CONSTRUCTOR_ID {
            let wrapped: tl::functions::InitConnection<Rest> = parse(fields)?;
            init = Some(Init {
                api_id: wrapped.api_id,
            });
            body = wrapped.query.0;
        } else if id == tl::functions::InvokeWithoutUpdates::<Rest>::CONSTRUCTOR_ID {
            let wrapped: tl::functions::InvokeWithoutUpdates<Rest> = parse(fields)?;
            body = wrapped.query.0;
        } else if id == tl::functions::InvokeWithTakeout::<Rest>::CONSTRUCTOR_ID {
            // https://core.telegram.org/api/takeout: "each query must be wrapped using
            // invokeWithTakeout, with the id returned by account.initTakeoutSession".
            let wrapped: tl::functions::InvokeWithTakeout<Rest> = parse(fields)?;
            takeout = Some(wrapped.takeout_id);
            body = wrapped.query.0;
        } else {
            return Ok(Call {
                id,
                name: tl::name_for_id(id),
                body: fields.to_vec(),
                init,
                takeout,
            });
        }
    }
}

fn ok<T: Serializable>(value: T) -> Result<Vec<u8>, RpcErr> {
    Ok(value.to_bytes())
}

/// Carries out `call` for the key in `ctx` and returns the serialized answer.
pub fn execute(w: &mut World, ctx: &Ctx, call: &Call) -> Result<Vec<u8>, RpcErr> {
    use tl::functions as f;
    if w.key(ctx.key_id).is_some_and(|k| k.dead) {
        return Err(RpcErr::new(406, "AUTH_KEY_DUPLICATED"));
    }
    if let Some(id) = call.takeout {
        let me = me(w, ctx)?;
        if w.p.takeouts.get(&id) != Some(&me) {
            return Err(rules::takeout_invalid());
        }
        w.stats.takeout_requests += 1;
    }
    let b = &call.body[..];
    match call.id {
        f::help::GetConfig::CONSTRUCTOR_ID => ok(config(w, ctx)),
        f::updates::GetState::CONSTRUCTOR_ID => {
            let me = me(w, ctx)?;
            let pts = w.p.boxes.get(&me).map_or(0, |b| b.pts);
            ok(tl::enums::updates::State::State(
                tl::types::updates::State {
                    pts,
                    qts: 0,
                    date: w.now() as i32,
                    seq: 0,
                    unread_count: 0,
                },
            ))
        }
        f::users::GetUsers::CONSTRUCTOR_ID => get_users(w, ctx, parse(b)?),
        f::contacts::ResolveUsername::CONSTRUCTOR_ID => resolve_username(w, ctx, parse(b)?),
        f::messages::GetDialogs::CONSTRUCTOR_ID => get_dialogs(w, ctx, parse(b)?),
        f::channels::GetChannels::CONSTRUCTOR_ID => get_channels(w, ctx, parse(b)?),
        f::channels::GetFullChannel::CONSTRUCTOR_ID => get_full_channel(w, ctx, parse(b)?),
        f::upload::SaveFilePart::CONSTRUCTOR_ID => {
            let r: f::upload::SaveFilePart = parse(b)?;
            save_part(w, ctx, r.file_id, r.file_part, None, r.bytes)
        }
        f::upload::SaveBigFilePart::CONSTRUCTOR_ID => {
            let r: f::upload::SaveBigFilePart = parse(b)?;
            save_part(
                w,
                ctx,
                r.file_id,
                r.file_part,
                Some(r.file_total_parts),
                r.bytes,
            )
        }
        f::messages::SendMedia::CONSTRUCTOR_ID => send_media(w, ctx, parse(b)?),
        f::messages::SendMessage::CONSTRUCTOR_ID => send_message(w, ctx, parse(b)?),
        f::messages::EditMessage::CONSTRUCTOR_ID => edit_message(w, ctx, parse(b)?),
        f::messages::GetMessages::CONSTRUCTOR_ID => {
            let r: f::messages::GetMessages = parse(b)?;
            get_messages(w, ctx, None, r.id)
        }
        f::channels::GetMessages::CONSTRUCTOR_ID => {
            let r: f::channels::GetMessages = parse(b)?;
            get_messages(w, ctx, Some(r.channel), r.id)
        }
        f::messages::GetHistory::CONSTRUCTOR_ID => {
            let r: f::messages::GetHistory = parse(b)?;
            let me = me(w, ctx)?;
            rules::users_only(is_bot(w, me))?;
            let peer = peer_of(w, me, &r.peer, false)?;
            history(
                w,
                me,
                peer,
                r.offset_id,
                r.add_offset,
                r.limit,
                r.max_id,
                r.min_id,
                false,
            )
        }
        f::messages::Search::CONSTRUCTOR_ID => {
            let r: f::messages::Search = parse(b)?;
            let me = me(w, ctx)?;
            rules::users_only(is_bot(w, me))?;
            let peer = peer_of(w, me, &r.peer, false)?;
            let pinned = match r.filter {
                tl::enums::MessagesFilter::InputMessagesFilterPinned => true,
                tl::enums::MessagesFilter::InputMessagesFilterEmpty => false,
                _ => return Err(RpcErr::bad("FILTER_NOT_SUPPORTED")),
            };
            history(
                w,
                me,
                peer,
                r.offset_id,
                r.add_offset,
                r.limit,
                r.max_id,
                r.min_id,
                pinned,
            )
        }
        f::messages::UpdatePinnedMessage::CONSTRUCTOR_ID => pin(w, ctx, parse(b)?),
        f::messages::DeleteMessages::CONSTRUCTOR_ID => {
            let r: f::messages::DeleteMessages = parse(b)?;
            delete_messages(w, ctx, None, r.id)
        }
        f::channels::DeleteMessages::CONSTRUCTOR_ID => {
            let r: f::channels::DeleteMessages = parse(b)?;
            delete_messages(w, ctx, Some(r.channel), r.id)
        }
        f::upload::GetFile::CONSTRUCTOR_ID => get_file(w, ctx, parse(b)?),
        f::updates::GetChannelDifference::CONSTRUCTOR_ID => channel_difference(w, ctx, parse(b)?),
        f::account::InitTakeoutSession::CONSTRUCTOR_ID => {
            let me = me(w, ctx)?;
            // Bots cannot use it
            // (https://core.telegram.org/method/account.initTakeoutSession): user-only
            // methods answer bots BOT_METHOD_INVALID (rules::users_only).
            rules::users_only(is_bot(w, me))?;
            let id = random_i64();
            w.p.takeouts.insert(id, me);
            w.dirty = true;
            ok(tl::enums::account::Takeout::Takeout(
                tl::types::account::Takeout { id },
            ))
        }
        f::account::FinishTakeoutSession::CONSTRUCTOR_ID => {
            let me = me(w, ctx)?;
            // https://core.telegram.org/api/takeout: "terminate the session using
            // account.finishTakeoutSession (wrapping it in an invokeWithTakeout as
            // usual)"; unwrapped, it ends the account's sessions. With none open:
            // TAKEOUT_REQUIRED (403, "Possible errors" of
            // https://core.telegram.org/method/account.finishTakeoutSession).
            let before = w.p.takeouts.len();
            match call.takeout {
                Some(id) => {
                    w.p.takeouts.remove(&id);
                }
                None => w.p.takeouts.retain(|_, user| *user != me),
            }
            if w.p.takeouts.len() == before {
                return Err(RpcErr::new(403, "TAKEOUT_REQUIRED"));
            }
            w.dirty = true;
            ok(true)
        }
        f::auth::SendCode::CONSTRUCTOR_ID => send_code(w, ctx, parse(b)?),
        f::auth::SignIn::CONSTRUCTOR_ID => sign_in(w, ctx, parse(b)?),
        f::account::GetPassword::CONSTRUCTOR_ID => get_password(w, ctx),
        f::auth::CheckPassword::CONSTRUCTOR_ID => check_password(w, ctx, parse(b)?),
        f::auth::ImportBotAuthorization::CONSTRUCTOR_ID => import_bot(w, ctx, parse(b)?),
        f::auth::ExportAuthorization::CONSTRUCTOR_ID => {
            let r: f::auth::ExportAuthorization = parse(b)?;
            let me = me(w, ctx)?;
            if r.dc_id == ctx.dc || !w.p.dcs.iter().any(|d| d.id == r.dc_id) {
                return Err(RpcErr::bad("DC_ID_INVALID"));
            }
            let bytes = random_i64().to_le_bytes().repeat(4);
            w.exported.insert(bytes.clone(), (me, r.dc_id));
            ok(tl::enums::auth::ExportedAuthorization::Authorization(
                tl::types::auth::ExportedAuthorization { id: me, bytes },
            ))
        }
        f::auth::ImportAuthorization::CONSTRUCTOR_ID => {
            let r: f::auth::ImportAuthorization = parse(b)?;
            match w.exported.get(&r.bytes) {
                Some(&(user, dc)) if user == r.id && dc == ctx.dc => {
                    w.exported.remove(&r.bytes);
                    authorize(w, ctx, user)
                }
                _ => Err(RpcErr::bad("AUTH_BYTES_INVALID")),
            }
        }
        f::auth::LogOut::CONSTRUCTOR_ID => {
            me(w, ctx)?;
            if let Some(k) = w.key_mut(ctx.key_id) {
                k.user = None;
            }
            w.dirty = true;
            ok(tl::enums::auth::LoggedOut::Out(
                tl::types::auth::LoggedOut {
                    future_auth_token: None,
                },
            ))
        }
        _ => Err(RpcErr::bad(format!(
            "FAKEGRAM_METHOD_NOT_MODELED_{}",
            call.name.replace('.', "_").to_uppercase()
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Who is calling, and what they name.

/// The account the key is signed in as (401 AUTH_KEY_UNREGISTERED if none).
fn me(w: &World, ctx: &Ctx) -> Result<i64, RpcErr> {
    w.key(ctx.key_id)
        .and_then(|k| k.user)
        .ok_or_else(|| RpcErr::new(401, "AUTH_KEY_UNREGISTERED"))
}

fn is_bot(w: &World, user: i64) -> bool {
    w.user(user).is_some_and(|u| u.bot)
}

fn is_premium(w: &World, user: i64) -> bool {
    w.user(user).is_some_and(|u| u.premium)
}

/// The channel `id` if `me` may use it with `access_hash`: the right hash, or 0 from a
/// bot that is a member (how bots that cannot list dialogs name their channel).
fn channel_access(
    w: &World,
    me: i64,
    id: i64,
    access_hash: i64,
    write: bool,
) -> Result<i64, RpcErr> {
    let ch =
        w.p.channels
            .get(&id)
            .ok_or_else(|| RpcErr::bad("CHANNEL_INVALID"))?;
    let member = ch.members.contains(&me);
    let hash_ok = access_hash == ch.access_hash || (is_bot(w, me) && access_hash == 0 && member);
    if !hash_ok {
        return Err(RpcErr::bad("CHANNEL_INVALID"));
    }
    if !member && (write || ch.username.is_none()) {
        return Err(RpcErr::bad("CHANNEL_PRIVATE"));
    }
    Ok(id)
}

fn input_channel(
    w: &World,
    me: i64,
    c: &tl::enums::InputChannel,
    write: bool,
) -> Result<i64, RpcErr> {
    match c {
        tl::enums::InputChannel::Channel(c) => {
            channel_access(w, me, c.channel_id, c.access_hash, write)
        }
        _ => Err(RpcErr::bad("CHANNEL_INVALID")),
    }
}

fn peer_of(w: &World, me: i64, p: &tl::enums::InputPeer, write: bool) -> Result<Peer, RpcErr> {
    use tl::enums::InputPeer as I;
    match p {
        I::PeerSelf => {
            if is_bot(w, me) {
                return Err(RpcErr::bad("PEER_ID_INVALID"));
            }
            Ok(Peer::User(me))
        }
        I::User(u) => match w.user(u.user_id) {
            Some(user) if user.access_hash == u.access_hash || u.user_id == me => {
                if u.user_id == me && is_bot(w, me) {
                    return Err(RpcErr::bad("PEER_ID_INVALID"));
                }
                Ok(Peer::User(u.user_id))
            }
            _ => Err(RpcErr::bad("PEER_ID_INVALID")),
        },
        I::Chat(c) => match w.p.groups.get(&c.chat_id) {
            Some(g) if g.members.contains(&me) => Ok(Peer::Chat(c.chat_id)),
            Some(_) => Err(RpcErr::new(403, "CHAT_WRITE_FORBIDDEN")),
            None => Err(RpcErr::bad("PEER_ID_INVALID")),
        },
        I::Channel(c) => {
            channel_access(w, me, c.channel_id, c.access_hash, write).map(Peer::Channel)
        }
        _ => Err(RpcErr::bad("PEER_ID_INVALID")),
    }
}

// ---------------------------------------------------------------------------------------
// Views: the model as TL types, seen by one account.

/// Users and chats an answer mentions.
#[derive(Default)]
struct Refs {
    users: BTreeSet<i64>,
    channels: BTreeSet<i64>,
    groups: BTreeSet<i64>,
}

impl Refs {
    fn peer(&mut self, p: Peer) {
        match p {
            Peer::User(u) => {
                self.users.insert(u);
            }
            Peer::Chat(c) => {
                self.groups.insert(c);
            }
            Peer::Channel(c) => {
                self.channels.insert(c);
            }
        }
    }

    fn msg(&mut self, m: &Msg) {
        self.peer(m.peer);
        self.users.insert(m.from);
        if let Some(f) = &m.fwd {
            self.peer(f.peer);
            self.users.insert(f.from);
        }
    }

    fn users(&self, w: &World, viewer: i64) -> Vec<tl::enums::User> {
        self.users
            .iter()
            .filter_map(|id| w.user(*id))
            .map(|u| tl_user(u, viewer))
            .collect()
    }

    fn chats(&self, w: &World, viewer: i64) -> Vec<tl::enums::Chat> {
        let groups = self
            .groups
            .iter()
            .filter_map(|id| w.p.groups.get(id))
            .map(|g| tl_group(g, viewer));
        let channels = self
            .channels
            .iter()
            .filter_map(|id| w.p.channels.get(id))
            .map(|c| tl_channel(c, viewer));
        groups.chain(channels).collect()
    }
}

fn tl_user(u: &crate::model::User, viewer: i64) -> tl::enums::User {
    let me = u.id == viewer;
    tl::types::User {
        is_self: me,
        contact: false,
        mutual_contact: false,
        deleted: false,
        bot: u.bot,
        bot_chat_history: false,
        bot_nochats: false,
        verified: false,
        restricted: false,
        min: false,
        bot_inline_geo: false,
        support: false,
        scam: false,
        apply_min_photo: false,
        fake: false,
        bot_attach_menu: false,
        premium: u.premium,
        attach_menu_enabled: false,
        bot_can_edit: false,
        close_friend: false,
        stories_hidden: false,
        stories_unavailable: true,
        contact_require_premium: false,
        bot_business: false,
        bot_has_main_app: false,
        bot_forum_view: false,
        bot_forum_can_manage_topics: false,
        bot_can_manage_bots: false,
        bot_guestchat: false,
        bot_guard: false,
        id: u.id,
        access_hash: Some(u.access_hash),
        first_name: Some(u.first_name.clone()),
        last_name: None,
        username: u.username.clone(),
        phone: if me { u.phone.clone() } else { None },
        photo: None,
        status: None,
        bot_info_version: u.bot.then_some(1),
        restriction_reason: None,
        bot_inline_placeholder: None,
        lang_code: None,
        emoji_status: None,
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        bot_active_users: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_community_id: None,
    }
    .into()
}

fn all_rights() -> tl::enums::ChatAdminRights {
    tl::types::ChatAdminRights {
        change_info: true,
        post_messages: true,
        edit_messages: true,
        delete_messages: true,
        ban_users: true,
        invite_users: true,
        pin_messages: true,
        add_admins: true,
        anonymous: false,
        manage_call: true,
        other: true,
        manage_topics: false,
        post_stories: false,
        edit_stories: false,
        delete_stories: false,
        manage_direct_messages: false,
        manage_ranks: false,
        manage_linked_peers: false,
        manage_welcome_messages: false,
    }
    .into()
}

fn tl_channel(c: &crate::model::Channel, viewer: i64) -> tl::enums::Chat {
    tl::types::Channel {
        creator: c.creator == viewer,
        left: !c.members.contains(&viewer),
        broadcast: c.broadcast,
        verified: false,
        megagroup: !c.broadcast,
        restricted: false,
        signatures: false,
        min: false,
        scam: false,
        has_link: false,
        has_geo: false,
        slowmode_enabled: false,
        call_active: false,
        call_not_empty: false,
        fake: false,
        gigagroup: false,
        noforwards: false,
        join_to_send: false,
        join_request: false,
        forum: false,
        stories_hidden: false,
        stories_hidden_min: false,
        stories_unavailable: true,
        signature_profiles: false,
        autotranslation: false,
        broadcast_messages_allowed: false,
        monoforum: false,
        forum_tabs: false,
        id: c.id,
        access_hash: Some(c.access_hash),
        title: c.title.clone(),
        username: c.username.clone(),
        photo: tl::enums::ChatPhoto::Empty,
        date: c.date as i32,
        restriction_reason: None,
        admin_rights: c.is_admin(viewer).then(all_rights),
        banned_rights: None,
        default_banned_rights: None,
        participants_count: Some(c.members.len() as i32),
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        emoji_status: None,
        level: None,
        subscription_until_date: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_monoforum_id: None,
        linked_community_id: None,
    }
    .into()
}

fn tl_group(g: &crate::model::Group, viewer: i64) -> tl::enums::Chat {
    tl::types::Chat {
        creator: g.creator == viewer,
        left: !g.members.contains(&viewer),
        deactivated: false,
        call_active: false,
        call_not_empty: false,
        noforwards: false,
        id: g.id,
        title: g.title.clone(),
        photo: tl::enums::ChatPhoto::Empty,
        participants_count: g.members.len() as i32,
        date: g.date as i32,
        version: 1,
        migrated_to: None,
        admin_rights: None,
        default_banned_rights: None,
    }
    .into()
}

fn tl_peer(p: Peer) -> tl::enums::Peer {
    match p {
        Peer::User(user_id) => tl::types::PeerUser { user_id }.into(),
        Peer::Chat(chat_id) => tl::types::PeerChat { chat_id }.into(),
        Peer::Channel(channel_id) => tl::types::PeerChannel { channel_id }.into(),
    }
}

/// A document's attributes by kind, as Telegram's apps send them: a video's
/// `documentAttributeVideo`, music's `documentAttributeAudio`, each with the file name; a
/// voice note's `documentAttributeAudio{voice}` alone — voice notes carry no file name
/// (<https://core.telegram.org/constructor/documentAttributeAudio>: "voice: Whether this is
/// a voice message"). The fake knows no durations or frame sizes: they are 0.
fn attributes(d: &Document) -> Vec<tl::enums::DocumentAttribute> {
    let name: tl::enums::DocumentAttribute = tl::types::DocumentAttributeFilename {
        file_name: d.name.clone(),
    }
    .into();
    let audio = |voice: bool| -> tl::enums::DocumentAttribute {
        tl::types::DocumentAttributeAudio {
            voice,
            duration: 0,
            title: None,
            performer: None,
            waveform: None,
        }
        .into()
    };
    match d.kind {
        MediaKind::File | MediaKind::Photo => vec![name],
        MediaKind::Video => vec![
            tl::types::DocumentAttributeVideo {
                round_message: false,
                supports_streaming: true,
                nosound: false,
                duration: 0.0,
                w: 0,
                h: 0,
                preload_prefix_size: None,
                video_start_ts: None,
                video_codec: None,
            }
            .into(),
            name,
        ],
        MediaKind::Audio => vec![audio(false), name],
        MediaKind::Voice => vec![audio(true)],
    }
}

fn tl_document(w: &World, d: &Document) -> tl::enums::Document {
    tl::types::Document {
        id: d.id,
        access_hash: d.access_hash,
        file_reference: w.file_reference(d.id),
        date: d.date as i32,
        mime_type: d.mime.clone(),
        size: d.size as i64,
        thumbs: None,
        video_thumbs: None,
        dc_id: d.dc,
        attributes: attributes(d),
    }
    .into()
}

/// The small ("m") size of a photo, in pixels: the original fitted to 320x320.
fn small_dims(p: &Photo) -> (i32, i32) {
    media::fit_box((p.w, p.h), 320)
}

/// A photo with its sizes (see [`crate::media`]): the stripped preview "i", the small
/// `photoSize` "m" and the original as `photoSizeProgressive` "y", whose last prefix is
/// the whole file.
fn tl_photo(w: &World, p: &Photo) -> tl::enums::Photo {
    let (sw, sh) = small_dims(p);
    let head = w.blobs.read(p.id, 0, 16).unwrap_or_default();
    tl::types::Photo {
        has_stickers: false,
        id: p.id,
        access_hash: p.access_hash,
        file_reference: w.file_reference(p.id),
        date: p.date as i32,
        sizes: vec![
            tl::types::PhotoStrippedSize {
                r#type: media::THUMB_STRIPPED.into(),
                bytes: media::stripped(&head, (p.w, p.h)),
            }
            .into(),
            tl::types::PhotoSize {
                r#type: media::THUMB_SMALL.into(),
                w: sw,
                h: sh,
                size: media::small_len(p.size) as i32,
            }
            .into(),
            tl::types::PhotoSizeProgressive {
                r#type: media::THUMB_FULL.into(),
                w: p.w,
                h: p.h,
                sizes: media::progressive_sizes(p.size),
            }
            .into(),
        ],
        video_sizes: None,
        dc_id: p.dc,
    }
    .into()
}

/// The media of a message: `messageMediaPhoto`, or `messageMediaDocument` flagged
/// `video`/`voice` for those kinds.
fn tl_media(w: &World, m: &Msg) -> Option<tl::enums::MessageMedia> {
    if let Some(p) = m.photo.and_then(|p| w.p.photos.get(&p)) {
        return Some(
            tl::types::MessageMediaPhoto {
                spoiler: false,
                live_photo: false,
                photo: Some(tl_photo(w, p)),
                ttl_seconds: None,
                video: None,
            }
            .into(),
        );
    }
    let d = m.doc.and_then(|d| w.p.documents.get(&d))?;
    Some(
        tl::types::MessageMediaDocument {
            nopremium: false,
            spoiler: false,
            video: d.kind == MediaKind::Video,
            round: false,
            voice: d.kind == MediaKind::Voice,
            document: Some(tl_document(w, d)),
            alt_documents: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into(),
    )
}

/// `messageFwdHeader` of a forwarded message: from a broadcast channel, the channel and
/// its post id (`channel_post`); from elsewhere, the first sender
/// (<https://core.telegram.org/constructor/messageFwdHeader>).
fn tl_fwd(w: &World, f: &Forward) -> tl::enums::MessageFwdHeader {
    let post = broadcast(w, f.peer);
    tl::types::MessageFwdHeader {
        imported: false,
        saved_out: false,
        from_id: Some(if post {
            tl_peer(f.peer)
        } else {
            tl_peer(Peer::User(f.from))
        }),
        from_name: None,
        date: f.date as i32,
        channel_post: post.then_some(f.id),
        post_author: None,
        saved_from_peer: None,
        saved_from_msg_id: None,
        saved_from_id: None,
        saved_from_name: None,
        saved_date: None,
        psa_type: None,
    }
    .into()
}

fn broadcast(w: &World, p: Peer) -> bool {
    matches!(p, Peer::Channel(c) if w.p.channels.get(&c).is_some_and(|c| c.broadcast))
}

fn tl_message(w: &World, viewer: i64, m: &Msg) -> tl::enums::Message {
    let post = broadcast(w, m.peer);
    let from_id = (!post).then(|| tl_peer(Peer::User(m.from)));
    if let Some(Service::Pin(pinned)) = m.service {
        return tl::types::MessageService {
            out: m.from == viewer,
            mentioned: false,
            media_unread: false,
            reactions_are_possible: false,
            silent: true,
            post,
            legacy: false,
            id: m.id,
            from_id,
            peer_id: tl_peer(m.peer),
            saved_peer_id: None,
            reply_to: Some(reply_to(pinned)),
            date: m.date as i32,
            action: tl::enums::MessageAction::PinMessage,
            reactions: None,
            ttl_period: None,
        }
        .into();
    }
    let media = tl_media(w, m);
    tl::types::Message {
        out: m.from == viewer,
        mentioned: false,
        media_unread: false,
        silent: true,
        post,
        from_scheduled: false,
        legacy: false,
        edit_hide: false,
        pinned: m.pinned,
        noforwards: false,
        invert_media: false,
        offline: false,
        video_processing_pending: false,
        paid_suggested_post_stars: false,
        paid_suggested_post_ton: false,
        id: m.id,
        from_id,
        from_boosts_applied: None,
        from_rank: None,
        peer_id: tl_peer(m.peer),
        saved_peer_id: None,
        fwd_from: m.fwd.as_ref().map(|f| tl_fwd(w, f)),
        via_bot_id: None,
        via_business_bot_id: None,
        guestchat_via_from: None,
        reply_to: None,
        date: m.date as i32,
        message: m.text.clone(),
        media,
        reply_markup: None,
        entities: None,
        views: post.then_some(1),
        forwards: post.then_some(0),
        replies: None,
        edit_date: m.edit_date.map(|d| d as i32),
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

fn reply_to(id: i32) -> tl::enums::MessageReplyHeader {
    tl::types::MessageReplyHeader {
        reply_to_scheduled: false,
        forum_topic: false,
        quote: false,
        reply_to_ephemeral: false,
        reply_to_msg_id: Some(id),
        reply_to_peer_id: None,
        reply_from: None,
        reply_media: None,
        reply_to_top_id: None,
        quote_text: None,
        quote_entities: None,
        quote_offset: None,
        todo_item_id: None,
        poll_option: None,
    }
    .into()
}

fn notify_settings() -> tl::enums::PeerNotifySettings {
    tl::types::PeerNotifySettings {
        show_previews: None,
        silent: None,
        mute_until: None,
        ios_sound: None,
        android_sound: None,
        other_sound: None,
        stories_muted: None,
        stories_hide_sender: None,
        stories_ios_sound: None,
        stories_android_sound: None,
        stories_other_sound: None,
    }
    .into()
}

/// `updates` around `list`, with the users and chats they mention.
fn updates(
    w: &World,
    viewer: i64,
    list: Vec<tl::enums::Update>,
    refs: &Refs,
) -> tl::enums::Updates {
    tl::types::Updates {
        updates: list,
        users: refs.users(w, viewer),
        chats: refs.chats(w, viewer),
        date: w.now() as i32,
        seq: 0,
    }
    .into()
}

// ---------------------------------------------------------------------------------------
// Methods.

fn config(w: &World, ctx: &Ctx) -> tl::enums::Config {
    let now = w.now() as i32;
    tl::types::Config {
        default_p2p_contacts: false,
        preload_featured_stickers: false,
        revoke_pm_inbox: true,
        blocked_mode: false,
        force_try_ipv6: false,
        date: now,
        expires: now + 3600,
        test_mode: false,
        this_dc: ctx.dc,
        // Never any addresses: grammers would write them over the session's loopback ones.
        dc_options: Vec::new(),
        dc_txt_domain_name: String::new(),
        chat_size_max: 200,
        megagroup_size_max: 200_000,
        forwarded_count_max: 100,
        online_update_period_ms: 210_000,
        offline_blur_timeout_ms: 5_000,
        offline_idle_timeout_ms: 30_000,
        online_cloud_timeout_ms: 300_000,
        notify_cloud_delay_ms: 30_000,
        notify_default_delay_ms: 1_500,
        push_chat_period_ms: 60_000,
        push_chat_limit: 2,
        edit_time_limit: rules::EDIT_TIME_LIMIT as i32,
        revoke_time_limit: i32::MAX,
        revoke_pm_time_limit: i32::MAX,
        rating_e_decay: 2_419_200,
        stickers_recent_limit: 200,
        channels_read_media_period: 604_800,
        tmp_sessions: None,
        call_receive_timeout_ms: 20_000,
        call_ring_timeout_ms: 90_000,
        call_connect_timeout_ms: 30_000,
        call_packet_timeout_ms: 10_000,
        me_url_prefix: "https://t.me/".into(),
        autoupdate_url_prefix: None,
        gif_search_username: None,
        venue_search_username: None,
        img_search_username: None,
        static_maps_provider: None,
        caption_length_max: rules::caption_length_max(false) as i32,
        message_length_max: rules::MESSAGE_LENGTH_MAX as i32,
        webfile_dc_id: ctx.dc,
        suggested_lang_code: None,
        lang_pack_version: None,
        base_lang_pack_version: None,
        reactions_default: None,
        autologin_token: None,
    }
    .into()
}

fn get_users(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::users::GetUsers,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let mut out = Vec::new();
    for u in &r.id {
        let found = match u {
            tl::enums::InputUser::UserSelf => w.user(me),
            tl::enums::InputUser::User(u) => {
                w.user(u.user_id).filter(|x| x.access_hash == u.access_hash)
            }
            _ => None,
        };
        if let Some(found) = found {
            out.push(tl_user(found, me));
        }
    }
    ok(out)
}

fn resolve_username(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::contacts::ResolveUsername,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let name = r.username.trim_start_matches('@').to_lowercase();
    if name.len() < 4 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(RpcErr::bad("USERNAME_INVALID"));
    }
    let same = |u: &Option<String>| u.as_deref().is_some_and(|u| u.to_lowercase() == name);
    let peer = if let Some(u) = w.p.users.values().find(|u| same(&u.username)) {
        Peer::User(u.id)
    } else if let Some(c) = w.p.channels.values().find(|c| same(&c.username)) {
        Peer::Channel(c.id)
    } else {
        return Err(RpcErr::bad("USERNAME_NOT_OCCUPIED"));
    };
    let mut refs = Refs::default();
    refs.peer(peer);
    ok(tl::enums::contacts::ResolvedPeer::Peer(
        tl::types::contacts::ResolvedPeer {
            peer: tl_peer(peer),
            chats: refs.chats(w, me),
            users: refs.users(w, me),
        },
    ))
}

fn get_channels(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::channels::GetChannels,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let mut refs = Refs::default();
    for c in &r.id {
        refs.channels.insert(input_channel(w, me, c, false)?);
    }
    ok(tl::enums::messages::Chats::Chats(
        tl::types::messages::Chats {
            chats: refs.chats(w, me),
        },
    ))
}

fn latest_pinned<'a>(messages: impl DoubleEndedIterator<Item = &'a Msg>) -> Option<i32> {
    messages.rev().find(|m| m.pinned).map(|m| m.id)
}

fn get_full_channel(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::channels::GetFullChannel,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let id = input_channel(w, me, &r.channel, false)?;
    let c = &w.p.channels[&id];
    let full = tl::types::ChannelFull {
        can_view_participants: c.is_admin(me),
        can_set_username: c.creator == me,
        can_set_stickers: false,
        hidden_prehistory: false,
        can_set_location: false,
        has_scheduled: false,
        can_view_stats: false,
        blocked: false,
        can_delete_channel: c.creator == me,
        antispam: false,
        participants_hidden: false,
        translations_disabled: false,
        stories_pinned_available: false,
        view_forum_as_messages: false,
        restricted_sponsored: false,
        can_view_revenue: false,
        paid_media_allowed: false,
        can_view_stars_revenue: false,
        paid_reactions_available: false,
        stargifts_available: false,
        paid_messages_available: false,
        has_welcome_messages: false,
        id: c.id,
        about: String::new(),
        participants_count: Some(c.members.len() as i32),
        admins_count: Some(c.admins.len() as i32 + 1),
        kicked_count: None,
        banned_count: None,
        online_count: None,
        read_inbox_max_id: c.last_id,
        read_outbox_max_id: c.last_id,
        unread_count: 0,
        chat_photo: tl::types::PhotoEmpty { id: 0 }.into(),
        notify_settings: notify_settings(),
        exported_invite: None,
        bot_info: Vec::new(),
        migrated_from_chat_id: None,
        migrated_from_max_id: None,
        pinned_msg_id: latest_pinned(c.messages.values()),
        stickerset: None,
        available_min_id: None,
        folder_id: None,
        linked_chat_id: None,
        location: None,
        slowmode_seconds: None,
        slowmode_next_send_date: None,
        stats_dc: None,
        pts: c.pts,
        call: None,
        ttl_period: None,
        pending_suggestions: None,
        groupcall_default_join_as: None,
        theme_emoticon: None,
        requests_pending: None,
        recent_requesters: None,
        default_send_as: None,
        available_reactions: None,
        reactions_limit: None,
        stories: None,
        wallpaper: None,
        boosts_applied: None,
        boosts_unrestrict: None,
        emojiset: None,
        bot_verification: None,
        stargifts_count: None,
        send_paid_messages_stars: None,
        main_tab: None,
        guard_bot_id: None,
    };
    let mut refs = Refs::default();
    refs.channels.insert(id);
    ok(tl::enums::messages::ChatFull::Full(
        tl::types::messages::ChatFull {
            full_chat: full.into(),
            chats: refs.chats(w, me),
            users: Vec::new(),
        },
    ))
}

/// The dialogs of `me`: its channels and groups, Saved Messages and private chats, newest
/// top message first.
fn get_dialogs(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::messages::GetDialogs,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    rules::users_only(is_bot(w, me))?;
    // (top message date, peer, top message)
    let mut list: Vec<(i64, Peer, Option<Msg>)> = Vec::new();
    for c in w.p.channels.values().filter(|c| c.members.contains(&me)) {
        let top = c.messages.values().next_back().cloned();
        list.push((
            top.as_ref().map_or(c.date, |m| m.date),
            Peer::Channel(c.id),
            top,
        ));
    }
    let mut box_peers: BTreeSet<Peer> =
        w.p.groups
            .values()
            .filter(|g| g.members.contains(&me))
            .map(|g| Peer::Chat(g.id))
            .collect();
    if let Some(b) = w.p.boxes.get(&me) {
        box_peers.extend(b.messages.values().map(|m| m.peer));
    }
    for peer in box_peers {
        let top =
            w.p.boxes
                .get(&me)
                .and_then(|b| b.messages.values().rev().find(|m| m.peer == peer).cloned());
        let date = top.as_ref().map(|m| m.date).or_else(|| match peer {
            Peer::Chat(g) => w.p.groups.get(&g).map(|g| g.date),
            _ => None,
        });
        list.push((date.unwrap_or(0), peer, top));
    }
    list.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let total = list.len();
    let start = match &r.offset_peer {
        tl::enums::InputPeer::Empty => 0,
        p => {
            let offset = peer_of(w, me, p, false).ok();
            list.iter()
                .position(|(_, peer, _)| Some(*peer) == offset)
                .map_or(total, |i| i + 1)
        }
    };
    let limit = if r.limit <= 0 { 100 } else { r.limit as usize };
    let page: Vec<_> = list.into_iter().skip(start).take(limit).collect();
    let mut refs = Refs::default();
    let mut dialogs = Vec::new();
    let mut messages = Vec::new();
    for (_, peer, top) in &page {
        refs.peer(*peer);
        if let Some(m) = top {
            refs.msg(m);
            messages.push(tl_message(w, me, m));
        }
        let pts = match peer {
            Peer::Channel(c) => w.p.channels.get(c).map(|c| c.pts),
            _ => None,
        };
        let top_id = top.as_ref().map_or(0, |m| m.id);
        dialogs.push(
            tl::types::Dialog {
                pinned: false,
                unread_mark: false,
                view_forum_as_messages: false,
                peer: tl_peer(*peer),
                top_message: top_id,
                read_inbox_max_id: top_id,
                read_outbox_max_id: top_id,
                unread_count: 0,
                unread_mentions_count: 0,
                unread_reactions_count: 0,
                unread_poll_votes_count: 0,
                notify_settings: notify_settings(),
                pts,
                draft: None,
                folder_id: None,
                ttl_period: None,
            }
            .into(),
        );
    }
    let chats = refs.chats(w, me);
    let users = refs.users(w, me);
    if start == 0 && page.len() == total {
        ok(tl::enums::messages::Dialogs::Dialogs(
            tl::types::messages::Dialogs {
                dialogs,
                messages,
                chats,
                users,
            },
        ))
    } else {
        ok(tl::enums::messages::Dialogs::Slice(
            tl::types::messages::DialogsSlice {
                count: total as i32,
                dialogs,
                messages,
                chats,
                users,
            },
        ))
    }
}

fn save_part(
    w: &mut World,
    ctx: &Ctx,
    file_id: i64,
    index: i32,
    total: Option<i32>,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let premium = is_premium(w, me);
    if let Some(total) = total {
        rules::check_total_parts(total, premium)?;
        if index >= total {
            return Err(RpcErr::bad("FILE_PART_INVALID"));
        }
    }
    rules::check_part(index, bytes.len(), premium)?;
    w.expire_uploads();
    let key = UploadKey {
        user: me,
        file_id,
        big: total.is_some(),
    };
    let upload = w.uploads.entry(key).or_default();
    if let (Some(total), Some(before)) = (total, upload.total)
        && total != before
    {
        return Err(RpcErr::bad("FILE_PARTS_INVALID"));
    }
    upload.total = total.or(upload.total);
    w.stats
        .upload_connections
        .entry(file_id)
        .or_default()
        .insert(ctx.conn);
    let now = w.clock.now();
    let len = bytes.len();
    w.blobs
        .put_part(key, index, bytes)
        .map_err(|_| RpcErr::new(500, "FAKEGRAM_STORAGE_FAILED"))?;
    w.uploads
        .get_mut(&key)
        .expect("inserted above")
        .parts
        .insert(index, (len, now));
    ok(true)
}

/// What a new message holds.
#[derive(Debug, Default)]
struct Draft {
    text: String,
    doc: Option<i64>,
    photo: Option<i64>,
    fwd: Option<Forward>,
    service: Option<Service>,
    /// Its date (`None`: now).
    date: Option<i64>,
}

impl Draft {
    fn text(text: String) -> Draft {
        Draft {
            text,
            ..Draft::default()
        }
    }
}

/// The message as Telegram stores it, sent by `me` into `peer` (every basic group
/// member gets a copy in their box). Returns the sender's copy.
fn post(w: &mut World, me: i64, peer: Peer, draft: Draft, random_id: Option<i64>) -> Msg {
    let date = draft.date.unwrap_or_else(|| w.now());
    if draft.service.is_none() {
        w.stats.messages += 1;
        *w.stats.messages_by.entry(me).or_default() += 1;
    }
    let template = Msg {
        id: 0,
        date,
        from: me,
        peer,
        text: draft.text,
        doc: draft.doc,
        photo: draft.photo,
        fwd: draft.fwd,
        service: draft.service,
        edit_date: None,
        pinned: false,
        random_id,
    };
    w.dirty = true;
    match peer {
        Peer::Channel(c) => {
            let ch = w.p.channels.get_mut(&c).expect("checked by the caller");
            ch.last_id += 1;
            let m = Msg {
                id: ch.last_id,
                ..template
            };
            ch.record(Change::New(m.id), 1);
            ch.messages.insert(m.id, m.clone());
            m
        }
        Peer::Chat(g) => {
            let members: Vec<i64> = w.p.groups[&g].members.iter().copied().collect();
            let mut mine = None;
            for member in members {
                let b = w.box_mut(member);
                b.last_id += 1;
                b.pts += 1;
                let m = Msg {
                    id: b.last_id,
                    ..template.clone()
                };
                b.messages.insert(m.id, m.clone());
                if member == me {
                    mine = Some(m);
                }
            }
            mine.expect("the sender is a member")
        }
        Peer::User(other) => {
            if other != me {
                let b = w.box_mut(other);
                b.last_id += 1;
                b.pts += 1;
                let m = Msg {
                    id: b.last_id,
                    peer: Peer::User(me),
                    ..template.clone()
                };
                b.messages.insert(m.id, m);
            }
            let b = w.box_mut(me);
            b.last_id += 1;
            b.pts += 1;
            let m = Msg {
                id: b.last_id,
                ..template
            };
            b.messages.insert(m.id, m.clone());
            m
        }
    }
}

/// Whether `me` may post into `peer`, and the message-rate rules.
fn check_send(w: &mut World, me: i64, peer: Peer, random_id: i64) -> Result<(), RpcErr> {
    if let Peer::Channel(c) = peer {
        let ch = &w.p.channels[&c];
        if ch.broadcast && !ch.is_admin(me) {
            return Err(RpcErr::new(403, "CHAT_WRITE_FORBIDDEN"));
        }
    }
    let duplicate = match peer {
        Peer::Channel(c) => w.p.channels[&c]
            .messages
            .values()
            .rev()
            .take(1000)
            .any(|m| m.from == me && m.random_id == Some(random_id)),
        _ => w.p.boxes.get(&me).is_some_and(|b| {
            b.messages
                .values()
                .rev()
                .take(1000)
                .any(|m| m.from == me && m.peer == peer && m.random_id == Some(random_id))
        }),
    };
    if duplicate {
        return Err(RpcErr::bad("RANDOM_ID_DUPLICATE"));
    }
    if w.rate_limits {
        let bot_in_group = is_bot(w, me) && matches!(peer, Peer::Chat(_) | Peer::Channel(_));
        let now_ms = w.clock.now_ms();
        w.send_rates
            .entry((me, peer))
            .or_default()
            .admit(now_ms, bot_in_group)?;
    }
    Ok(())
}

/// The answer to a send: `updateMessageID` and the new message (channels and media), or
/// `updateShortSentMessage` (texts outside channels).
fn sent(w: &World, me: i64, m: &Msg, random_id: i64, short: bool) -> Vec<u8> {
    if short && !matches!(m.peer, Peer::Channel(_)) {
        return tl::enums::Updates::UpdateShortSentMessage(tl::types::UpdateShortSentMessage {
            out: true,
            id: m.id,
            pts: w.p.boxes.get(&me).map_or(0, |b| b.pts),
            pts_count: 1,
            date: m.date as i32,
            media: None,
            entities: None,
            ttl_period: None,
        })
        .to_bytes();
    }
    let mut refs = Refs::default();
    refs.msg(m);
    let message = tl_message(w, me, m);
    let new: tl::enums::Update = match m.peer {
        Peer::Channel(c) => tl::types::UpdateNewChannelMessage {
            message,
            pts: w.p.channels[&c].pts,
            pts_count: 1,
        }
        .into(),
        _ => tl::types::UpdateNewMessage {
            message,
            pts: w.p.boxes.get(&me).map_or(0, |b| b.pts),
            pts_count: 1,
        }
        .into(),
    };
    let list = vec![
        tl::types::UpdateMessageId {
            id: m.id,
            random_id,
        }
        .into(),
        new,
    ];
    updates(w, me, list, &refs).to_bytes()
}

fn send_message(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::messages::SendMessage,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let peer = peer_of(w, me, &r.peer, true)?;
    let text = rules::message_text(&r.message)?;
    check_send(w, me, peer, r.random_id)?;
    let m = post(w, me, peer, Draft::text(text), Some(r.random_id));
    Ok(sent(w, me, &m, r.random_id, true))
}

fn send_media(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::messages::SendMedia,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let peer = peer_of(w, me, &r.peer, true)?;
    let premium = is_premium(w, me);
    let caption = rules::caption(&r.message, premium)?;
    let tl::enums::InputMedia::UploadedDocument(media) = r.media else {
        return Err(RpcErr::bad("MEDIA_INVALID"));
    };
    let (file_id, parts, name, big) = match &media.file {
        tl::enums::InputFile::File(f) => (f.id, f.parts, f.name.clone(), false),
        tl::enums::InputFile::Big(f) => (f.id, f.parts, f.name.clone(), true),
        _ => return Err(RpcErr::bad("MEDIA_INVALID")),
    };
    if parts < 1 || parts > rules::max_parts(premium) {
        return Err(RpcErr::bad("FILE_PARTS_INVALID"));
    }
    w.expire_uploads();
    let key = UploadKey {
        user: me,
        file_id,
        big,
    };
    let upload = w.uploads.get(&key).cloned().unwrap_or_default();
    if big && upload.total.is_some_and(|t| t != parts) {
        return Err(RpcErr::bad("FILE_PARTS_INVALID"));
    }
    let sizes: Vec<Option<usize>> = (0..parts)
        .map(|i| upload.parts.get(&i).map(|p| p.0))
        .collect();
    // A repeated random id is refused before the parts are looked at: the first send
    // used them, and its retry (after a lost reply) must learn that it was sent.
    check_send(w, me, peer, r.random_id)?;
    let size = rules::check_assembled(&sizes, big)?;
    let name = media
        .attributes
        .iter()
        .find_map(|a| match a {
            tl::enums::DocumentAttribute::Filename(f) => Some(f.file_name.clone()),
            _ => None,
        })
        .unwrap_or(name);
    let doc = Document {
        id: random_i64(),
        access_hash: random_i64(),
        dc: w.p.file_dc.unwrap_or(ctx.dc),
        size,
        name,
        mime: media.mime_type.clone(),
        date: w.now(),
        kind: MediaKind::File,
    };
    w.blobs
        .assemble(key, parts, doc.id)
        .map_err(|_| RpcErr::new(500, "FAKEGRAM_STORAGE_FAILED"))?;
    w.uploads.remove(&key);
    let doc_id = doc.id;
    w.p.documents.insert(doc_id, doc);
    let draft = Draft {
        doc: Some(doc_id),
        ..Draft::text(caption)
    };
    let m = post(w, me, peer, draft, Some(r.random_id));
    Ok(sent(w, me, &m, r.random_id, false))
}

fn edit_message(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::messages::EditMessage,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let peer = peer_of(w, me, &r.peer, true)?;
    let now = w.now();
    let premium = is_premium(w, me);
    let m = w
        .message(me, peer, r.id)
        .filter(|m| m.service.is_none())
        .cloned()
        .ok_or_else(|| RpcErr::bad("MESSAGE_ID_INVALID"))?;
    let admin = matches!(peer, Peer::Channel(c) if w.p.channels[&c].is_admin(me));
    if m.from != me && !admin {
        return Err(RpcErr::new(403, "MESSAGE_AUTHOR_REQUIRED"));
    }
    if !matches!(peer, Peer::Channel(_)) && peer != Peer::User(me) {
        rules::check_edit_time(m.date, now)?;
    }
    let Some(text) = r.message else {
        return Err(RpcErr::bad("MESSAGE_NOT_MODIFIED"));
    };
    let text = if m.doc.is_some() {
        rules::caption(&text, premium)?
    } else {
        rules::message_text(&text)?
    };
    if text == m.text {
        return Err(RpcErr::bad("MESSAGE_NOT_MODIFIED"));
    }
    let edited = Msg {
        text,
        edit_date: Some(now),
        ..m
    };
    w.dirty = true;
    let update: tl::enums::Update = match peer {
        Peer::Channel(c) => {
            let ch = w.p.channels.get_mut(&c).expect("checked");
            let pts = ch.record(Change::Edit(edited.id), 1);
            ch.messages.insert(edited.id, edited.clone());
            tl::types::UpdateEditChannelMessage {
                message: tl_message(w, me, &edited),
                pts,
                pts_count: 1,
            }
            .into()
        }
        _ => {
            let b = w.box_mut(me);
            b.pts += 1;
            b.messages.insert(edited.id, edited.clone());
            let pts = b.pts;
            tl::types::UpdateEditMessage {
                message: tl_message(w, me, &edited),
                pts,
                pts_count: 1,
            }
            .into()
        }
    };
    let mut refs = Refs::default();
    refs.msg(&edited);
    ok(updates(w, me, vec![update], &refs))
}

fn get_messages(
    w: &mut World,
    ctx: &Ctx,
    channel: Option<tl::enums::InputChannel>,
    ids: Vec<tl::enums::InputMessage>,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let channel = channel
        .map(|c| input_channel(w, me, &c, false))
        .transpose()?;
    let mut refs = Refs::default();
    let mut out = Vec::new();
    for input in &ids {
        let found = match (input, channel) {
            (tl::enums::InputMessage::Id(i), Some(c)) => w.p.channels[&c].messages.get(&i.id),
            (tl::enums::InputMessage::Id(i), None) => {
                w.p.boxes.get(&me).and_then(|b| b.messages.get(&i.id))
            }
            (tl::enums::InputMessage::Pinned, Some(c)) => {
                let ch = &w.p.channels[&c];
                latest_pinned(ch.messages.values()).and_then(|id| ch.messages.get(&id))
            }
            _ => None,
        };
        match found {
            Some(m) => {
                refs.msg(m);
                out.push(tl_message(w, me, m));
            }
            None => {
                let id = match input {
                    tl::enums::InputMessage::Id(i) => i.id,
                    _ => 0,
                };
                out.push(tl::types::MessageEmpty { id, peer_id: None }.into());
            }
        }
    }
    let chats = refs.chats(w, me);
    let users = refs.users(w, me);
    match channel {
        Some(c) => ok(tl::enums::messages::Messages::ChannelMessages(
            tl::types::messages::ChannelMessages {
                inexact: false,
                pts: w.p.channels[&c].pts,
                count: out.len() as i32,
                offset_id_offset: None,
                messages: out,
                topics: Vec::new(),
                chats,
                users,
            },
        )),
        None => ok(tl::enums::messages::Messages::Messages(
            tl::types::messages::Messages {
                messages: out,
                topics: Vec::new(),
                chats,
                users,
            },
        )),
    }
}

/// updates.getChannelDifference (rules in [`rules`]: DIFF): the channel's log replayed
/// from `pts`. Messages posted since `pts` that still exist come in `new_messages` with
/// their current content (an edit folded in); other messages edited since come as one
/// `updateEditChannelMessage` each (current content, the pts of the last edit);
/// deletions and pins come as logged, in pts order. A message posted and deleted within
/// the range comes only in its `updateDeleteChannelMessages`: the difference replays the
/// channel's stored updates (the too-long case says "updates … were deleted from the
/// message box"), and a deleted message has no content left to send as new — the delete
/// is what keeps the client's copy right.
fn channel_difference(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::updates::GetChannelDifference,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let c = input_channel(w, me, &r.channel, false)?;
    match &r.filter {
        tl::enums::ChannelMessagesFilter::Empty => {}
        // Filtered differences are not modelled. Empty or reversed ranges are
        // RANGES_INVALID ("Invalid range provided", DIFF "Possible errors"); others get
        // the refusal messages.search gives a filter it does not support.
        tl::enums::ChannelMessagesFilter::Filter(f) => {
            let bad = f.ranges.is_empty()
                || f.ranges.iter().any(|r| {
                    let tl::enums::MessageRange::Range(r) = r;
                    r.min_id > r.max_id
                });
            return Err(RpcErr::bad(if bad {
                "RANGES_INVALID"
            } else {
                "FILTER_NOT_SUPPORTED"
            }));
        }
    }
    let ch = &w.p.channels[&c];
    rules::check_difference_pts(r.pts, ch.pts)?;
    let limit = rules::channel_difference_limit(r.limit, is_bot(w, me));
    let timeout = Some(rules::CHANNEL_DIFFERENCE_TIMEOUT);
    if r.pts == ch.pts {
        return ok(tl::enums::updates::ChannelDifference::Empty(
            tl::types::updates::ChannelDifferenceEmpty {
                r#final: true,
                pts: ch.pts,
                timeout,
            },
        ));
    }
    let mut refs = Refs::default();
    refs.channels.insert(c);
    if rules::difference_too_long(r.pts, ch.pts, limit, ch.log_start()) {
        let latest: Vec<&Msg> = ch.messages.values().rev().take(limit as usize).collect();
        let top = latest.first().map_or(0, |m| m.id);
        let messages = latest
            .iter()
            .map(|m| {
                refs.msg(m);
                tl_message(w, me, m)
            })
            .collect();
        let dialog = tl::types::Dialog {
            pinned: false,
            unread_mark: false,
            view_forum_as_messages: false,
            peer: tl_peer(Peer::Channel(c)),
            top_message: top,
            read_inbox_max_id: top,
            read_outbox_max_id: top,
            unread_count: 0,
            unread_mentions_count: 0,
            unread_reactions_count: 0,
            unread_poll_votes_count: 0,
            notify_settings: notify_settings(),
            pts: Some(ch.pts),
            draft: None,
            folder_id: None,
            ttl_period: None,
        };
        return ok(tl::enums::updates::ChannelDifference::TooLong(
            tl::types::updates::ChannelDifferenceTooLong {
                r#final: true,
                timeout,
                dialog: dialog.into(),
                messages,
                chats: refs.chats(w, me),
                users: refs.users(w, me),
            },
        ));
    }
    let entries = ch.log.iter().filter(|e| e.pts > r.pts);
    let mut new = BTreeSet::new();
    // Edited message → the pts of its last edit.
    let mut edited = std::collections::BTreeMap::new();
    // (pts, the update) of deletions and pins, and edits placed at their last pts.
    let mut other: Vec<(i32, tl::enums::Update)> = Vec::new();
    for e in entries {
        match &e.change {
            Change::New(id) => {
                new.insert(*id);
            }
            Change::Edit(id) => {
                if !new.contains(id) {
                    edited.insert(*id, e.pts);
                }
            }
            Change::Delete(ids) => other.push((
                e.pts,
                tl::types::UpdateDeleteChannelMessages {
                    channel_id: c,
                    messages: ids.clone(),
                    pts: e.pts,
                    pts_count: e.count,
                }
                .into(),
            )),
            Change::Pin(ids, pinned) => other.push((
                e.pts,
                tl::types::UpdatePinnedChannelMessages {
                    pinned: *pinned,
                    channel_id: c,
                    messages: ids.clone(),
                    pts: e.pts,
                    pts_count: e.count,
                }
                .into(),
            )),
        }
    }
    for (id, pts) in edited {
        // An edited message deleted later is told by its delete alone.
        if let Some(m) = ch.messages.get(&id) {
            refs.msg(m);
            other.push((
                pts,
                tl::types::UpdateEditChannelMessage {
                    message: tl_message(w, me, m),
                    pts,
                    pts_count: 1,
                }
                .into(),
            ));
        }
    }
    other.sort_by_key(|(pts, _)| *pts);
    let new_messages = new
        .iter()
        .filter_map(|id| ch.messages.get(id))
        .map(|m| {
            refs.msg(m);
            tl_message(w, me, m)
        })
        .collect();
    ok(tl::enums::updates::ChannelDifference::Difference(
        tl::types::updates::ChannelDifference {
            r#final: true,
            pts: ch.pts,
            timeout,
            new_messages,
            other_updates: other.into_iter().map(|(_, u)| u).collect(),
            chats: refs.chats(w, me),
            users: refs.users(w, me),
        },
    ))
}

/// messages.getHistory and messages.search (all, or the pinned ones): newest first.
#[allow(clippy::too_many_arguments)]
fn history(
    w: &World,
    me: i64,
    peer: Peer,
    offset_id: i32,
    add_offset: i32,
    limit: i32,
    max_id: i32,
    min_id: i32,
    pinned_only: bool,
) -> Result<Vec<u8>, RpcErr> {
    let all: Vec<&Msg> = match peer {
        Peer::Channel(c) => w.p.channels[&c].messages.values().rev().collect(),
        _ => {
            w.p.boxes
                .get(&me)
                .map(|b| {
                    b.messages
                        .values()
                        .rev()
                        .filter(|m| m.peer == peer)
                        .collect()
                })
                .unwrap_or_default()
        }
    };
    let all: Vec<&Msg> = all
        .into_iter()
        .filter(|m| !pinned_only || m.pinned)
        .collect();
    let count = all.len();
    let limit = if limit <= 0 {
        20
    } else {
        limit.min(100) as usize
    };
    let picked: Vec<&Msg> = all
        .into_iter()
        .filter(|m| offset_id <= 0 || m.id < offset_id)
        .filter(|m| max_id <= 0 || m.id < max_id)
        .filter(|m| min_id <= 0 || m.id > min_id)
        .skip(add_offset.max(0) as usize)
        .take(limit)
        .collect();
    let mut refs = Refs::default();
    refs.peer(peer);
    let messages: Vec<tl::enums::Message> = picked
        .iter()
        .map(|m| {
            refs.msg(m);
            tl_message(w, me, m)
        })
        .collect();
    let chats = refs.chats(w, me);
    let users = refs.users(w, me);
    match peer {
        Peer::Channel(c) => ok(tl::enums::messages::Messages::ChannelMessages(
            tl::types::messages::ChannelMessages {
                inexact: false,
                pts: w.p.channels[&c].pts,
                count: count as i32,
                offset_id_offset: None,
                messages,
                topics: Vec::new(),
                chats,
                users,
            },
        )),
        _ if messages.len() == count => ok(tl::enums::messages::Messages::Messages(
            tl::types::messages::Messages {
                messages,
                topics: Vec::new(),
                chats,
                users,
            },
        )),
        _ => ok(tl::enums::messages::Messages::Slice(
            tl::types::messages::MessagesSlice {
                inexact: false,
                count: count as i32,
                next_rate: None,
                offset_id_offset: None,
                search_flood: None,
                messages,
                topics: Vec::new(),
                chats,
                users,
            },
        )),
    }
}

fn pin(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::messages::UpdatePinnedMessage,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let peer = peer_of(w, me, &r.peer, true)?;
    if let Peer::Channel(c) = peer
        && !w.p.channels[&c].is_admin(me)
    {
        return Err(RpcErr::new(403, "CHAT_ADMIN_REQUIRED"));
    }
    if w.message(me, peer, r.id)
        .is_none_or(|m| m.service.is_some())
    {
        return Err(RpcErr::bad("MESSAGE_ID_INVALID"));
    }
    let pinned = !r.unpin;
    w.dirty = true;
    let update: tl::enums::Update = match peer {
        Peer::Channel(c) => {
            let ch = w.p.channels.get_mut(&c).expect("checked");
            if let Some(m) = ch.messages.get_mut(&r.id) {
                m.pinned = pinned;
            }
            let pts = ch.record(Change::Pin(vec![r.id], pinned), 1);
            tl::types::UpdatePinnedChannelMessages {
                pinned,
                channel_id: c,
                messages: vec![r.id],
                pts,
                pts_count: 1,
            }
            .into()
        }
        _ => {
            let b = w.box_mut(me);
            if let Some(m) = b.messages.get_mut(&r.id) {
                m.pinned = pinned;
            }
            b.pts += 1;
            tl::types::UpdatePinnedMessages {
                pinned,
                peer: tl_peer(peer),
                messages: vec![r.id],
                pts: b.pts,
                pts_count: 1,
            }
            .into()
        }
    };
    let mut list = vec![update];
    let mut refs = Refs::default();
    refs.peer(peer);
    // Pinning in a group or channel leaves a service message ("… pinned …"); Saved
    // Messages do not.
    if pinned && peer != Peer::User(me) {
        let draft = Draft {
            service: Some(Service::Pin(r.id)),
            ..Draft::default()
        };
        let service = post(w, me, peer, draft, None);
        refs.msg(&service);
        let message = tl_message(w, me, &service);
        list.push(match peer {
            Peer::Channel(c) => tl::types::UpdateNewChannelMessage {
                message,
                pts: w.p.channels[&c].pts,
                pts_count: 1,
            }
            .into(),
            _ => tl::types::UpdateNewMessage {
                message,
                pts: w.p.boxes.get(&me).map_or(0, |b| b.pts),
                pts_count: 1,
            }
            .into(),
        });
    }
    ok(updates(w, me, list, &refs))
}

fn delete_messages(
    w: &mut World,
    ctx: &Ctx,
    channel: Option<tl::enums::InputChannel>,
    ids: Vec<i32>,
) -> Result<Vec<u8>, RpcErr> {
    let me = me(w, ctx)?;
    let now = w.now();
    let bot = is_bot(w, me);
    let channel = channel
        .map(|c| input_channel(w, me, &c, true))
        .transpose()?;
    // Every message is checked before any is deleted: a refusal deletes nothing.
    let mut found = Vec::new();
    for id in &ids {
        let m = match channel {
            Some(c) => w.p.channels[&c].messages.get(id),
            None => w.p.boxes.get(&me).and_then(|b| b.messages.get(id)),
        };
        let Some(m) = m else { continue };
        let may = match (channel, m.peer) {
            (Some(c), _) => w.p.channels[&c].is_admin(me) || m.from == me,
            (None, Peer::Chat(g)) => m.from == me || w.p.groups[&g].creator == me,
            (None, _) => true,
        };
        if !may {
            return Err(RpcErr::new(403, "MESSAGE_DELETE_FORBIDDEN"));
        }
        if bot {
            rules::check_bot_delete(m.date, now)?;
        }
        found.push(*id);
    }
    w.dirty = true;
    let (pts, count) = match channel {
        Some(c) => {
            let ch = w.p.channels.get_mut(&c).expect("checked");
            for id in &found {
                ch.messages.remove(id);
            }
            if !found.is_empty() {
                ch.record(Change::Delete(found.clone()), found.len() as i32);
            }
            (ch.pts, found.len() as i32)
        }
        None => {
            let b = w.box_mut(me);
            for id in &found {
                b.messages.remove(id);
            }
            b.pts += found.len() as i32;
            (b.pts, found.len() as i32)
        }
    };
    ok(tl::enums::messages::AffectedMessages::Messages(
        tl::types::messages::AffectedMessages {
            pts,
            pts_count: count,
        },
    ))
}

fn get_file(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::upload::GetFile,
) -> Result<Vec<u8>, RpcErr> {
    me(w, ctx)?;
    rules::check_download(r.offset, r.limit, r.precise)?;
    // Which file, where it lives, when it was made, and whether the "m" size of a photo
    // is asked for (https://core.telegram.org/api/files, "Downloading files": documents
    // through inputDocumentFileLocation, photos through inputPhotoFileLocation with
    // thumb_size "taken from the type field of the desired PhotoSize").
    let (id, dc, date, small, reference) = match &r.location {
        tl::enums::InputFileLocation::InputDocumentFileLocation(loc) => {
            let doc =
                w.p.documents
                    .get(&loc.id)
                    .filter(|d| d.access_hash == loc.access_hash)
                    .ok_or_else(|| RpcErr::bad("FILE_ID_INVALID"))?;
            (doc.id, doc.dc, doc.date, None, &loc.file_reference)
        }
        tl::enums::InputFileLocation::InputPhotoFileLocation(loc) => {
            let photo =
                w.p.photos
                    .get(&loc.id)
                    .filter(|p| p.access_hash == loc.access_hash)
                    .ok_or_else(|| RpcErr::bad("FILE_ID_INVALID"))?;
            // Only the sizes the photo lists can be downloaded ("i" is inline): another
            // thumb_size is LOCATION_INVALID ("The provided location is invalid",
            // https://core.telegram.org/method/upload.getFile).
            let small = match loc.thumb_size.as_str() {
                media::THUMB_FULL => None,
                media::THUMB_SMALL => Some(media::small_len(photo.size)),
                _ => return Err(RpcErr::bad("LOCATION_INVALID")),
            };
            (photo.id, photo.dc, photo.date, small, &loc.file_reference)
        }
        _ => return Err(RpcErr::bad("LOCATION_INVALID")),
    };
    if dc != ctx.dc {
        return Err(RpcErr::new(303, format!("FILE_MIGRATE_{dc}")));
    }
    if reference.is_empty() {
        return Err(RpcErr::bad("FILE_REFERENCE_EMPTY"));
    }
    if !w.reference_valid(id, reference) {
        return Err(RpcErr::bad("FILE_REFERENCE_EXPIRED"));
    }
    w.stats
        .download_connections
        .entry(id)
        .or_default()
        .insert(ctx.conn);
    let bytes = match small {
        None => w.blobs.read(id, r.offset as u64, r.limit as usize),
        Some(len) => w.blobs.read(id, 0, len as usize).map(|prefix| {
            let blob = media::small_from_prefix(&prefix);
            let start = (r.offset as usize).min(blob.len());
            let end = start.saturating_add(r.limit as usize).min(blob.len());
            blob[start..end].to_vec()
        }),
    }
    .map_err(|_| RpcErr::new(500, "FAKEGRAM_STORAGE_FAILED"))?;
    *w.stats.served.entry(id).or_default() += bytes.len() as u64;
    ok(tl::enums::upload::File::File(tl::types::upload::File {
        r#type: tl::enums::storage::FileType::FilePartial,
        mtime: date as i32,
        bytes,
    }))
}

// ---------------------------------------------------------------------------------------
// Signing in.

fn check_app(w: &World, api_id: i32, api_hash: &str) -> Result<(), RpcErr> {
    if api_id != w.p.api_id || api_hash != w.p.api_hash {
        return Err(RpcErr::bad("API_ID_INVALID"));
    }
    Ok(())
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

fn authorize(w: &mut World, ctx: &Ctx, user: i64) -> Result<Vec<u8>, RpcErr> {
    if let Some(k) = w.key_mut(ctx.key_id) {
        k.user = Some(user);
    }
    w.password_pending.remove(&ctx.key_id);
    w.dirty = true;
    let u = w.user(user).expect("a known account");
    ok(tl::enums::auth::Authorization::Authorization(
        tl::types::auth::Authorization {
            setup_password_required: false,
            otherwise_relogin_days: None,
            tmp_sessions: None,
            future_auth_token: None,
            user: tl_user(u, user),
        },
    ))
}

fn send_code(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::auth::SendCode,
) -> Result<Vec<u8>, RpcErr> {
    check_app(w, r.api_id, &r.api_hash)?;
    let phone = digits(&r.phone_number);
    if phone.len() < 7 || phone.len() > 15 {
        return Err(RpcErr::bad("PHONE_NUMBER_INVALID"));
    }
    if let Some(u) =
        w.p.users
            .values()
            .find(|u| u.phone.as_deref().map(digits) == Some(phone.clone()))
        && u.home_dc != ctx.dc
    {
        return Err(RpcErr::new(303, format!("PHONE_MIGRATE_{}", u.home_dc)));
    }
    let code = format!("{:05}", (random_i64() & i64::MAX) % 100_000);
    let hash = format!("{:016x}", random_i64());
    w.codes.insert(
        hash.clone(),
        PendingCode {
            phone,
            code: code.clone(),
            sent: w.now(),
        },
    );
    tracing::info!(code = %code, "login code sent");
    w.last_code = Some(code);
    ok(tl::enums::auth::SentCode::Code(tl::types::auth::SentCode {
        r#type: tl::types::auth::SentCodeTypeApp { length: 5 }.into(),
        phone_code_hash: hash,
        next_type: None,
        timeout: None,
    }))
}

/// How long a login code is valid.
const CODE_LIFETIME: i64 = 5 * 60;

fn sign_in(w: &mut World, ctx: &Ctx, r: tl::functions::auth::SignIn) -> Result<Vec<u8>, RpcErr> {
    let Some(code) = r.phone_code.filter(|c| !c.is_empty()) else {
        return Err(RpcErr::bad("PHONE_CODE_EMPTY"));
    };
    let pending = w
        .codes
        .get(&r.phone_code_hash)
        .cloned()
        .ok_or_else(|| RpcErr::bad("PHONE_CODE_EXPIRED"))?;
    if pending.phone != digits(&r.phone_number) {
        return Err(RpcErr::bad("PHONE_NUMBER_INVALID"));
    }
    if w.now() - pending.sent > CODE_LIFETIME {
        return Err(RpcErr::bad("PHONE_CODE_EXPIRED"));
    }
    if code != pending.code {
        return Err(RpcErr::bad("PHONE_CODE_INVALID"));
    }
    w.codes.remove(&r.phone_code_hash);
    let Some(user) =
        w.p.users
            .values()
            .find(|u| u.phone.as_deref().map(digits) == Some(pending.phone.clone()))
            .cloned()
    else {
        return ok(tl::enums::auth::Authorization::SignUpRequired(
            tl::types::auth::AuthorizationSignUpRequired {
                terms_of_service: None,
            },
        ));
    };
    if user.password.is_some() {
        w.password_pending.insert(ctx.key_id, user.id);
        return Err(RpcErr::new(401, "SESSION_PASSWORD_NEEDED"));
    }
    authorize(w, ctx, user.id)
}

fn get_password(w: &mut World, ctx: &Ctx) -> Result<Vec<u8>, RpcErr> {
    let user = match w.password_pending.get(&ctx.key_id) {
        Some(&u) => u,
        None => me(w, ctx)?,
    };
    let verifier = w.user(user).and_then(|u| u.password.clone());
    let mut secure_random = vec![0u8; 256];
    getrandom::fill(&mut secure_random).expect("the OS gives random bytes");
    let mut new_salt = vec![0u8; 8];
    getrandom::fill(&mut new_salt).expect("the OS gives random bytes");
    let new_algo: tl::enums::PasswordKdfAlgo =
        tl::types::PasswordKdfAlgoSha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow {
            salt1: new_salt.clone(),
            salt2: verifier
                .as_ref()
                .map_or_else(|| new_salt.clone(), |v| v.salt2.clone()),
            g: srp::G,
            p: srp::p_bytes(),
        }
        .into();
    let new_secure_algo =
        tl::types::SecurePasswordKdfAlgoPbkdf2Hmacsha512iter100000 { salt: new_salt }.into();
    let Some(verifier) = verifier else {
        return ok(tl::enums::account::Password::Password(
            tl::types::account::Password {
                has_recovery: false,
                has_secure_values: false,
                has_password: false,
                current_algo: None,
                srp_b: None,
                srp_id: None,
                hint: None,
                email_unconfirmed_pattern: None,
                new_algo,
                new_secure_algo,
                secure_random,
                pending_reset_date: None,
                login_email_pattern: None,
            },
        ));
    };
    let challenge = Challenge::new(&verifier);
    let srp_id = random_i64();
    let srp_b = challenge.g_b.to_vec();
    w.srp.insert(srp_id, (user, challenge));
    ok(tl::enums::account::Password::Password(
        tl::types::account::Password {
            has_recovery: false,
            has_secure_values: false,
            has_password: true,
            current_algo: Some(
                tl::types::PasswordKdfAlgoSha256Sha256Pbkdf2Hmacsha512iter100000Sha256ModPow {
                    salt1: verifier.salt1.clone(),
                    salt2: verifier.salt2.clone(),
                    g: srp::G,
                    p: srp::p_bytes(),
                }
                .into(),
            ),
            srp_b: Some(srp_b),
            srp_id: Some(srp_id),
            hint: verifier.hint.clone(),
            email_unconfirmed_pattern: None,
            new_algo,
            new_secure_algo,
            secure_random,
            pending_reset_date: None,
            login_email_pattern: None,
        },
    ))
}

fn check_password(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::auth::CheckPassword,
) -> Result<Vec<u8>, RpcErr> {
    let tl::enums::InputCheckPasswordSrp::Srp(srp) = r.password else {
        return Err(RpcErr::bad("PASSWORD_HASH_INVALID"));
    };
    // Each srp_id answers one check, right or wrong: a retry needs account.getPassword
    // again (SRP_ID_INVALID otherwise).
    let (user, challenge) = w
        .srp
        .remove(&srp.srp_id)
        .ok_or_else(|| RpcErr::bad("SRP_ID_INVALID"))?;
    if w.password_pending.get(&ctx.key_id) != Some(&user) {
        return Err(RpcErr::bad("SRP_ID_INVALID"));
    }
    let verifier = w
        .user(user)
        .and_then(|u| u.password.clone())
        .ok_or_else(|| RpcErr::bad("PASSWORD_HASH_INVALID"))?;
    if !challenge.check(&verifier, &srp.a, &srp.m1) {
        return Err(RpcErr::bad("PASSWORD_HASH_INVALID"));
    }
    authorize(w, ctx, user)
}

fn import_bot(
    w: &mut World,
    ctx: &Ctx,
    r: tl::functions::auth::ImportBotAuthorization,
) -> Result<Vec<u8>, RpcErr> {
    check_app(w, r.api_id, &r.api_hash)?;
    let bot =
        w.p.users
            .values()
            .find(|u| u.bot && u.token.as_deref() == Some(r.bot_auth_token.as_str()))
            .cloned()
            .ok_or_else(|| RpcErr::bad("ACCESS_TOKEN_INVALID"))?;
    if bot.home_dc != ctx.dc {
        return Err(RpcErr::new(303, format!("USER_MIGRATE_{}", bot.home_dc)));
    }
    let now = w.now();
    rules::admit_bot_signin(w.bot_signins.entry(bot.id).or_default(), now)?;
    authorize(w, ctx, bot.id)
}

/// Posts `text` as `from` without the client (the server's handle uses it).
pub(crate) fn post_for_tests(w: &mut World, from: i64, peer: Peer, text: &str) -> i32 {
    post(w, from, peer, Draft::text(text.trim().to_owned()), None).id
}

/// Stores `bytes` as a new file named `name`, of the kind its extension says
/// ([`media::kind_of`]), in the data centre new files go to (the owner's home data centre
/// unless set); returns the draft of a message carrying it.
fn store_media(w: &mut World, name: &str, bytes: &[u8], date: i64) -> std::io::Result<Draft> {
    let id = random_i64();
    let home = w.user(w.p.owner).map_or(2, |u| u.home_dc);
    let dc = w.p.file_dc.unwrap_or(home);
    w.blobs.put(id, bytes)?;
    let size = bytes.len() as u64;
    let kind = media::kind_of(name);
    w.dirty = true;
    if kind == MediaKind::Photo {
        let (pw, ph) = media::image_size(bytes).unwrap_or((1280, 1280));
        w.p.photos.insert(
            id,
            Photo {
                id,
                access_hash: random_i64(),
                dc,
                size,
                name: name.to_owned(),
                w: pw,
                h: ph,
                date,
            },
        );
        return Ok(Draft {
            photo: Some(id),
            ..Draft::default()
        });
    }
    w.p.documents.insert(
        id,
        Document {
            id,
            access_hash: random_i64(),
            dc,
            size,
            name: name.to_owned(),
            mime: media::mime_of(name).to_owned(),
            date,
            kind,
        },
    );
    Ok(Draft {
        doc: Some(id),
        ..Draft::default()
    })
}

/// `from` posts the file `name` into `peer` without the client, dated `date` (`None`:
/// now); returns the message id.
pub(crate) fn post_media_for_tests(
    w: &mut World,
    from: i64,
    peer: Peer,
    name: &str,
    bytes: &[u8],
    date: Option<i64>,
) -> std::io::Result<i32> {
    let at = date.unwrap_or_else(|| w.now());
    let draft = Draft {
        date: Some(at),
        ..store_media(w, name, bytes, at)?
    };
    Ok(post(w, from, peer, draft, None).id)
}

/// `from` forwards message `id` of `source` (as `viewer` sees it) into `to`: the same
/// document or photo, text kept, with the forward header (a forward of a forward keeps the
/// first origin). `None` if there is no such message.
pub(crate) fn forward_for_tests(
    w: &mut World,
    from: i64,
    viewer: i64,
    source: Peer,
    id: i32,
    to: Peer,
) -> Option<i32> {
    let m = w.message(viewer, source, id)?.clone();
    let draft = Draft {
        text: m.text,
        doc: m.doc,
        photo: m.photo,
        fwd: Some(m.fwd.unwrap_or(Forward {
            peer: source,
            id,
            from: m.from,
            date: m.date,
        })),
        ..Draft::default()
    };
    Some(post(w, from, to, draft, None).id)
}

/// Replaces the media of message `id` of `peer` (as `viewer` sees it) with a new file
/// `name`, as an edit (`edit_date` now; a channel logs it). `false` if there is no such
/// message.
pub(crate) fn edit_media_for_tests(
    w: &mut World,
    viewer: i64,
    peer: Peer,
    id: i32,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<bool> {
    if w.message(viewer, peer, id).is_none() {
        return Ok(false);
    }
    let now = w.now();
    let draft = store_media(w, name, bytes, now)?;
    let edit = |m: &mut Msg| {
        m.doc = draft.doc;
        m.photo = draft.photo;
        m.edit_date = Some(now);
    };
    match peer {
        Peer::Channel(c) => {
            let ch = w.p.channels.get_mut(&c).expect("found above");
            if let Some(m) = ch.messages.get_mut(&id) {
                edit(m);
            }
            ch.record(Change::Edit(id), 1);
        }
        _ => {
            let b = w.box_mut(viewer);
            if let Some(m) = b.messages.get_mut(&id) {
                edit(m);
            }
            b.pts += 1;
        }
    }
    Ok(true)
}

/// Deletes message `id` of `peer` (as `viewer` sees it) without the client; a channel
/// logs it.
pub(crate) fn delete_for_tests(w: &mut World, viewer: i64, peer: Peer, id: i32) {
    w.dirty = true;
    match peer {
        Peer::Channel(c) => {
            if let Some(ch) = w.p.channels.get_mut(&c)
                && ch.messages.remove(&id).is_some()
            {
                ch.record(Change::Delete(vec![id]), 1);
            }
        }
        _ => {
            let b = w.box_mut(viewer);
            if b.messages.remove(&id).is_some() {
                b.pts += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_open_to_the_method() {
        let inner = tl::functions::help::GetConfig {};
        let wrapped = tl::functions::InvokeWithLayer {
            layer: tl::LAYER,
            query: tl::functions::InitConnection {
                api_id: 7,
                device_model: "d".into(),
                system_version: "s".into(),
                app_version: "a".into(),
                system_lang_code: "en".into(),
                lang_pack: String::new(),
                lang_code: "en".into(),
                proxy: None,
                params: None,
                query: inner,
            },
        };
        let call = open_call(&wrapped.to_bytes()).unwrap();
        assert_eq!(call.name, "help.getConfig");
        assert_eq!(call.init.unwrap().api_id, 7);
        let packed = crate::wire::mtp::gzip(&tl::functions::updates::GetState {}.to_bytes());
        assert_eq!(open_call(&packed).unwrap().name, "updates.getState");
        let takeout = tl::functions::InvokeWithLayer {
            layer: tl::LAYER,
            query: tl::functions::InvokeWithTakeout {
                takeout_id: 42,
                query: tl::functions::upload::GetFile {
                    precise: false,
                    cdn_supported: false,
                    location: tl::enums::InputFileLocation::InputTakeoutFileLocation,
                    offset: 0,
                    limit: 4096,
                },
            },
        };
        let call = open_call(&takeout.to_bytes()).unwrap();
        assert_eq!((call.name, call.takeout), ("upload.getFile", Some(42)));
    }
}
