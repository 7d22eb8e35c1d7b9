//! The session lines the fake hands out, in tgferry's portable format
//! (`tgferry-session-v1:` then URL-safe base64 of JSON: the home data centre, every data
//! centre's address and authorization key, and the signed-in account; tgferry's
//! `src/telegram/session.rs` reads it). Every data centre points at the fake, so
//! grammers, which takes each connection's address from the session, never leaves
//! 127.0.0.1.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;

/// What tgferry's session lines start with.
pub const SESSION_PREFIX: &str = "tgferry-session-v1:";

/// One data centre of a session: its address and the key the session holds for it.
#[derive(Debug, Clone)]
pub struct DcEntry {
    /// The data centre.
    pub id: i32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The authorization key.
    pub key: [u8; 256],
}

/// The account a session is signed in as.
#[derive(Debug, Clone, Copy)]
pub struct SessionUser {
    /// Its id.
    pub id: i64,
    /// Its access hash.
    pub access_hash: i64,
    /// A bot.
    pub bot: bool,
}

#[derive(Serialize)]
struct Wire {
    home_dc: i32,
    dcs: Vec<WireDc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<WireUser>,
}

#[derive(Serialize)]
struct WireDc {
    id: i32,
    ipv4: String,
    ipv6: String,
    key: String,
}

#[derive(Serialize)]
struct WireUser {
    id: i64,
    access_hash: Option<i64>,
    bot: bool,
}

/// The session line for `dcs` with `home` as home data centre, signed in as `user` (none
/// for a session that still has to log in).
pub fn session_line(home: i32, dcs: &[DcEntry], user: Option<SessionUser>) -> String {
    let wire = Wire {
        home_dc: home,
        dcs: dcs
            .iter()
            .map(|dc| WireDc {
                id: dc.id,
                ipv4: dc.addr.to_string(),
                ipv6: format!("[::1]:{}", dc.addr.port()),
                key: STANDARD.encode(dc.key),
            })
            .collect(),
        user: user.map(|u| WireUser {
            id: u.id,
            access_hash: Some(u.access_hash),
            bot: u.bot,
        }),
    };
    let json = serde_json::to_vec(&wire).expect("serializes");
    format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
}
