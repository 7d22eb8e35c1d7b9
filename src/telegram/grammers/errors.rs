//! What Telegram's failures become: an RPC error, by its name and value, a [`TgError`] that
//! says what the caller does next ([`map_rpc`]: wait, re-send a chunk, sign in again, fix
//! the chat, give up on this request); any other grammers error a disconnection or a plain
//! failure ([`map_invocation`]); a session that cannot be locked ([`session_error`]).
//!
//! Only the mapping lives here: no retries and no waiting (the store decides), and no request
//! is made. Timeouts are `conn.rs`'s, the download's own `FILE_MIGRATE` and
//! `FILE_REFERENCE_*` handling is `download.rs`'s.

use grammers_client::sender::{InvocationError, RpcError};
use grammers_client::tl;

use crate::telegram::api::{TgError, WaitKind};
use crate::telegram::session::SessionError;

/// Maps an RPC error, by its name (digits taken out, as grammers does) and value.
pub fn map_rpc(name: &str, value: Option<u32>) -> TgError {
    // Accept names that still carry their number (FLOOD_WAIT_31).
    if value.is_none() && name.contains(|c: char| c.is_ascii_digit()) {
        let parsed = RpcError::from(tl::types::RpcError {
            error_code: 400,
            error_message: name.to_owned(),
        });
        if parsed.value.is_some() {
            return map_rpc(&parsed.name, parsed.value);
        }
    }
    let named = || match value {
        Some(v) => format!("{name} ({v})"),
        None => name.to_owned(),
    };
    let wait = |kind| TgError::Wait {
        seconds: value.unwrap_or(1),
        kind,
    };
    match name {
        "FLOOD_WAIT" | "FLOOD_TEST_PHONE_WAIT" => wait(WaitKind::Flood),
        "FLOOD_PREMIUM_WAIT" => wait(WaitKind::PremiumFlood),
        "SLOWMODE_WAIT" => wait(WaitKind::SlowMode),
        "FILE_PART_MISSING" => match value {
            Some(chunk) => TgError::ChunkMissing { chunk },
            None => TgError::Invalid(name.to_owned()),
        },
        "AUTH_KEY_DUPLICATED" => TgError::SessionDuplicated,
        "AUTH_KEY_UNREGISTERED"
        | "AUTH_KEY_INVALID"
        | "AUTH_KEY_PERM_EMPTY"
        | "SESSION_REVOKED"
        | "SESSION_EXPIRED"
        | "SESSION_PASSWORD_NEEDED"
        | "USER_DEACTIVATED"
        | "USER_DEACTIVATED_BAN"
        | "ACCESS_TOKEN_INVALID"
        | "ACCESS_TOKEN_EXPIRED"
        | "API_ID_INVALID"
        | "API_ID_PUBLISHED_FLOOD"
        | "BOT_TOKEN_INVALID" => TgError::Unauthorized(format!(
            "{name}: check the api id and hash and the bot token, or make a new session with `tgferry telegram login`"
        )),
        "CHANNEL_INVALID"
        | "CHANNEL_PRIVATE"
        | "PEER_ID_INVALID"
        | "USERNAME_NOT_OCCUPIED"
        | "USERNAME_INVALID"
        | "CHAT_ID_INVALID"
        | "CHANNEL_PUBLIC_GROUP_NA"
        | "INPUT_USER_DEACTIVATED" => TgError::ChatNotFound(name.to_owned()),
        "CHAT_WRITE_FORBIDDEN"
        | "CHAT_ADMIN_REQUIRED"
        | "MESSAGE_DELETE_FORBIDDEN"
        | "MESSAGE_AUTHOR_REQUIRED"
        | "MESSAGE_EDIT_TIME_EXPIRED"
        | "CHAT_SEND_MEDIA_FORBIDDEN"
        | "CHAT_SEND_DOCS_FORBIDDEN"
        | "CHAT_SEND_PLAIN_FORBIDDEN"
        | "CHAT_FORBIDDEN"
        | "CHAT_RESTRICTED"
        | "USER_BANNED_IN_CHANNEL"
        | "PIN_RESTRICTED"
        | "RIGHT_FORBIDDEN" => TgError::Forbidden(name.to_owned()),
        "BOT_METHOD_INVALID" => TgError::BotMethodInvalid,
        "FILE_PARTS_INVALID"
        | "FILE_PART_SIZE_INVALID"
        | "FILE_PART_SIZE_CHANGED"
        | "FILE_PART_INVALID"
        | "FILE_PART_TOO_BIG"
        | "FILE_PART_EMPTY"
        | "FILE_ID_INVALID"
        | "FILE_REFERENCE_EXPIRED"
        | "FILE_REFERENCE_INVALID"
        | "LIMIT_INVALID"
        | "OFFSET_INVALID"
        | "MESSAGE_NOT_MODIFIED"
        | "MESSAGE_ID_INVALID"
        | "MESSAGE_IDS_EMPTY"
        | "MESSAGE_EMPTY"
        | "MESSAGE_TOO_LONG"
        | "MEDIA_CAPTION_TOO_LONG"
        | "MEDIA_EMPTY"
        | "MEDIA_INVALID"
        | "RANDOM_ID_DUPLICATE"
        | "CDN_REDIRECT_UNSUPPORTED" => TgError::Invalid(name.to_owned()),
        _ => TgError::Other(named()),
    }
}

/// Maps any grammers error: RPC errors by [`map_rpc`] (server-side failures and timeouts,
/// codes 500 and up or negative, as [`TgError::Disconnected`]), lost connections as
/// [`TgError::Disconnected`].
pub(crate) fn map_invocation(error: &InvocationError) -> TgError {
    match error {
        InvocationError::Rpc(rpc) => match map_rpc(&rpc.name, rpc.value) {
            TgError::Other(m) if rpc.code >= 500 || rpc.code < 0 => {
                TgError::Disconnected(format!("Telegram failed the request ({m})"))
            }
            mapped => mapped,
        },
        InvocationError::Io(_)
        | InvocationError::Transport(_)
        | InvocationError::Dropped(_)
        | InvocationError::Deserialize(_)
        | InvocationError::Authentication(_) => TgError::Disconnected(error.to_string()),
        InvocationError::InvalidDc => {
            TgError::Other("Telegram pointed to an unknown data centre".into())
        }
        InvocationError::Session(_) => TgError::Other("the session storage failed".into()),
    }
}

/// Maps a failure to lock or read the session: in use elsewhere, unusable, or unreadable.
pub(super) fn session_error(e: SessionError) -> TgError {
    match e {
        SessionError::InUse { .. } => TgError::SessionInUse,
        SessionError::Malformed(_) => TgError::Unauthorized(e.to_string()),
        SessionError::Io(_) => TgError::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i32, message: &str) -> InvocationError {
        InvocationError::Rpc(RpcError::from(tl::types::RpcError {
            error_code: code,
            error_message: message.into(),
        }))
    }

    #[test]
    fn rpc_errors_map_by_what_the_caller_does() {
        let wait = |seconds, kind| TgError::Wait { seconds, kind };
        assert_eq!(
            map_invocation(&rpc(420, "FLOOD_WAIT_31")),
            wait(31, WaitKind::Flood)
        );
        assert_eq!(
            map_invocation(&rpc(420, "FLOOD_PREMIUM_WAIT_7")),
            wait(7, WaitKind::PremiumFlood)
        );
        assert_eq!(
            map_invocation(&rpc(420, "SLOWMODE_WAIT_300")),
            wait(300, WaitKind::SlowMode)
        );
        assert_eq!(map_rpc("FLOOD_WAIT_5", None), wait(5, WaitKind::Flood));
        assert_eq!(
            map_invocation(&rpc(400, "FILE_PART_17_MISSING")),
            TgError::ChunkMissing { chunk: 17 }
        );
        assert_eq!(
            map_rpc("FILE_PART_0_MISSING", None),
            TgError::ChunkMissing { chunk: 0 }
        );
        for name in [
            "AUTH_KEY_UNREGISTERED",
            "SESSION_REVOKED",
            "USER_DEACTIVATED",
            "ACCESS_TOKEN_INVALID",
            "API_ID_INVALID",
            "AUTH_KEY_INVALID",
        ] {
            assert!(
                matches!(map_invocation(&rpc(401, name)), TgError::Unauthorized(m) if m.contains(name)),
                "{name}"
            );
        }
        assert_eq!(
            map_invocation(&rpc(406, "AUTH_KEY_DUPLICATED")),
            TgError::SessionDuplicated
        );
        for name in [
            "CHANNEL_INVALID",
            "CHANNEL_PRIVATE",
            "PEER_ID_INVALID",
            "USERNAME_NOT_OCCUPIED",
            "USERNAME_INVALID",
        ] {
            assert_eq!(map_rpc(name, None), TgError::ChatNotFound(name.into()));
        }
        for name in [
            "CHAT_WRITE_FORBIDDEN",
            "CHAT_ADMIN_REQUIRED",
            "MESSAGE_DELETE_FORBIDDEN",
            "CHAT_SEND_MEDIA_FORBIDDEN",
        ] {
            assert_eq!(map_rpc(name, None), TgError::Forbidden(name.into()));
        }
        assert_eq!(
            map_invocation(&rpc(400, "BOT_METHOD_INVALID")),
            TgError::BotMethodInvalid
        );
        for name in [
            "FILE_PARTS_INVALID",
            "FILE_PART_SIZE_INVALID",
            "LIMIT_INVALID",
            "OFFSET_INVALID",
            "MESSAGE_NOT_MODIFIED",
        ] {
            assert_eq!(
                map_invocation(&rpc(400, name)),
                TgError::Invalid(name.into())
            );
        }
        assert_eq!(
            map_invocation(&rpc(400, "SOMETHING_NEW")),
            TgError::Other("SOMETHING_NEW".into())
        );
        assert_eq!(
            map_rpc("FILE_MIGRATE", Some(4)),
            TgError::Other("FILE_MIGRATE (4)".into())
        );
        assert!(matches!(
            map_invocation(&rpc(500, "INTERDC_2_CALL_ERROR")),
            TgError::Disconnected(_)
        ));
        assert!(matches!(
            map_invocation(&rpc(-503, "Timeout")),
            TgError::Disconnected(_)
        ));
    }

    #[test]
    fn transport_errors_are_disconnections() {
        let io = InvocationError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(map_invocation(&io), TgError::Disconnected(_)));
        assert!(matches!(
            map_invocation(&InvocationError::Dropped("runner gone")),
            TgError::Disconnected(_)
        ));
    }
}
