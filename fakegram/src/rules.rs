//! Every rule of real Telegram the fake enforces, each written once here with where it
//! comes from. Handlers in `rpc.rs` call these functions and never repeat a number.
//!
//! Sources (quoted where the wording matters):
//! - FILES: <https://core.telegram.org/api/files>, "Uploading files" and "Downloading files".
//! - BOTFAQ: <https://core.telegram.org/bots/faq>, "My bot is hitting limits, how do I
//!   avoid this?".
//! - BOTAPI: <https://core.telegram.org/bots/api#deletemessage>.
//! - CONFIG: `help.getConfig` (<https://core.telegram.org/constructor/config>): the
//!   server's own limits, which the fake also returns there.
//! - ERRORS: the method pages' "Possible errors" (<https://core.telegram.org/method/…>).
//! - ISSUES: behaviour reported by users of other clients (cited per rule); these
//!   numbers are estimates and say so.
//! - DIFF: <https://core.telegram.org/method/updates.getChannelDifference> and
//!   <https://core.telegram.org/type/updates.ChannelDifference>.
//! - TAKEOUT: <https://core.telegram.org/api/takeout>.

use std::time::Duration;

use crate::rpc::RpcErr;

/// Largest upload part, and the part size that reaches the file size limit.
///
/// FILES: "All parts must have the same size (part_size) and the following conditions
/// must be met: `part_size % 1024 = 0` (divisible by 1KB); `524288 % part_size = 0` (512KB
/// must be evenly divisible by part_size). The last part does not have to satisfy these
/// conditions, provided its size is less than part_size."
pub const MAX_PART: usize = 512 * 1024;

/// Most parts in one upload: FILES "file_part, with a value ranging from 0 to the value
/// of the appropriate config parameter minus 1" — `upload_max_fileparts_default` (4000)
/// and `upload_max_fileparts_premium` (8000) in the client configuration
/// (<https://core.telegram.org/api/config#upload-max-fileparts-default>).
pub fn max_parts(premium: bool) -> i32 {
    if premium { 8000 } else { 4000 }
}

/// FILES: "Use upload.saveBigFilePart in case the full size of the file is more than
/// 10 MB and upload.saveFilePart for smaller files."
pub const BIG_FILE_THRESHOLD: u64 = 10 * 1024 * 1024;

/// How long uploaded parts wait for the message that uses them. FILES: "The storage
/// life of each portion of data is between several minutes and several hours (depending
/// on how busy the storage area is). After this time, the file part will become
/// unavailable." The fake keeps them for the configured time ([`crate::Config`]).
pub const DEFAULT_PART_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// A part as `upload.saveFilePart`/`saveBigFilePart` receive it: index in range, not
/// empty, not over [`MAX_PART`] (ERRORS of upload.saveBigFilePart: FILE_PART_INVALID,
/// FILE_PART_EMPTY, FILE_PART_TOO_BIG).
pub fn check_part(index: i32, len: usize, premium: bool) -> Result<(), RpcErr> {
    if index < 0 || index >= max_parts(premium) {
        return Err(RpcErr::bad("FILE_PART_INVALID"));
    }
    if len == 0 {
        return Err(RpcErr::bad("FILE_PART_EMPTY"));
    }
    if len > MAX_PART {
        return Err(RpcErr::bad("FILE_PART_TOO_BIG"));
    }
    Ok(())
}

/// `file_total_parts` of upload.saveBigFilePart: 1 to the account's maximum (ERRORS:
/// FILE_PARTS_INVALID "The number of file parts is invalid").
pub fn check_total_parts(total: i32, premium: bool) -> Result<(), RpcErr> {
    if total < 1 || total > max_parts(premium) {
        return Err(RpcErr::bad("FILE_PARTS_INVALID"));
    }
    Ok(())
}

/// The uploaded parts `sizes[0..n]` as one file, checked when a message uses them:
/// every part present (FILE_PART_X_MISSING, X the first missing), all but the last of one
/// size that divides 512 KiB in whole KiB and the last no longer (FILES), and the right
/// method for the total size ([`BIG_FILE_THRESHOLD`]; FILE_PARTS_INVALID otherwise).
/// Returns the total size.
pub fn check_assembled(sizes: &[Option<usize>], big: bool) -> Result<u64, RpcErr> {
    if sizes.is_empty() {
        return Err(RpcErr::bad("FILE_PARTS_INVALID"));
    }
    if let Some(missing) = sizes.iter().position(Option::is_none) {
        return Err(RpcErr::bad(format!("FILE_PART_{missing}_MISSING")));
    }
    let sizes: Vec<usize> = sizes.iter().map(|s| s.unwrap_or(0)).collect();
    let part = sizes[0];
    if sizes.len() > 1 {
        if !part.is_multiple_of(1024) || !MAX_PART.is_multiple_of(part) {
            return Err(RpcErr::bad("FILE_PART_SIZE_INVALID"));
        }
        if sizes[..sizes.len() - 1].iter().any(|&s| s != part) {
            return Err(RpcErr::bad("FILE_PART_SIZE_CHANGED"));
        }
        if sizes[sizes.len() - 1] > part {
            return Err(RpcErr::bad("FILE_PART_SIZE_INVALID"));
        }
    }
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    if big != (total > BIG_FILE_THRESHOLD) {
        return Err(RpcErr::bad("FILE_PARTS_INVALID"));
    }
    Ok(total)
}

/// One `upload.getFile` request. FILES, "Downloading files": "offset must be divisible
/// by 4 KB; limit must be divisible by 4 KB; 1048576 (1 MB) must be divisible by limit;
/// offset / (1024 * 1024) == (offset + limit - 1) / (1024 * 1024) (file parts that are
/// being downloaded must always be inside the same megabyte-sized fragment)". With
/// `precise` ("Disable some checks on limit and offset values"): offset and limit
/// divisible by 1 KB and limit at most 1 MB.
pub fn check_download(offset: i64, limit: i32, precise: bool) -> Result<(), RpcErr> {
    const MIB: i64 = 1024 * 1024;
    let l = i64::from(limit);
    if offset < 0 {
        return Err(RpcErr::bad("OFFSET_INVALID"));
    }
    if precise {
        if l <= 0 || l % 1024 != 0 || l > MIB {
            return Err(RpcErr::bad("LIMIT_INVALID"));
        }
        if offset % 1024 != 0 {
            return Err(RpcErr::bad("OFFSET_INVALID"));
        }
        return Ok(());
    }
    if l <= 0 || l % 4096 != 0 || MIB % l != 0 {
        return Err(RpcErr::bad("LIMIT_INVALID"));
    }
    if offset % 4096 != 0 || offset / MIB != (offset + l - 1) / MIB {
        return Err(RpcErr::bad("OFFSET_INVALID"));
    }
    Ok(())
}

/// How long a file reference handed out with a message stays valid. File references
/// expire (<https://core.telegram.org/api/file_reference>: "file references can expire …
/// FILE_REFERENCE_EXPIRED … must be refetched"); Telegram does not publish for how long,
/// so the fake uses an hour unless configured otherwise ([`crate::Config`]).
pub const DEFAULT_FILE_REFERENCE_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Longest text, in UTF-16 code units: CONFIG `message_length_max` (4096).
pub const MESSAGE_LENGTH_MAX: usize = 4096;

/// Longest caption, in UTF-16 code units: CONFIG `caption_length_max` (1024) and the
/// client configuration's `caption_length_limit_premium` (4096).
pub fn caption_length_max(premium: bool) -> usize {
    if premium { 4096 } else { 1024 }
}

/// The text Telegram keeps: surrounding white space trimmed, not empty (MESSAGE_EMPTY),
/// at most [`MESSAGE_LENGTH_MAX`] (MESSAGE_TOO_LONG) — ERRORS of messages.sendMessage.
pub fn message_text(text: &str) -> Result<String, RpcErr> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RpcErr::bad("MESSAGE_EMPTY"));
    }
    if text.encode_utf16().count() > MESSAGE_LENGTH_MAX {
        return Err(RpcErr::bad("MESSAGE_TOO_LONG"));
    }
    Ok(text.to_owned())
}

/// A document's caption: trimmed, at most [`caption_length_max`] (MEDIA_CAPTION_TOO_LONG,
/// ERRORS of messages.sendMedia).
pub fn caption(text: &str, premium: bool) -> Result<String, RpcErr> {
    let text = text.trim();
    if text.encode_utf16().count() > caption_length_max(premium) {
        return Err(RpcErr::bad("MEDIA_CAPTION_TOO_LONG"));
    }
    Ok(text.to_owned())
}

/// How long after sending a message outside a channel can still be edited: CONFIG
/// `edit_time_limit`, 172800 s (48 hours). Past it: MESSAGE_EDIT_TIME_EXPIRED (ERRORS of
/// messages.editMessage). Channel posts and Saved Messages have no limit.
pub const EDIT_TIME_LIMIT: i64 = 48 * 60 * 60;

/// Whether an edit of a message sent at `date` is still allowed at `now`.
pub fn check_edit_time(date: i64, now: i64) -> Result<(), RpcErr> {
    if now - date > EDIT_TIME_LIMIT {
        return Err(RpcErr::bad("MESSAGE_EDIT_TIME_EXPIRED"));
    }
    Ok(())
}

/// Bots cannot delete messages older than 48 hours, even as administrators: BOTAPI
/// deleteMessage, "A message can only be deleted if it was sent less than 48 hours ago";
/// over MTProto the refusal is `MESSAGE_DELETE_FORBIDDEN` (403).
pub const BOT_DELETE_LIMIT: i64 = 48 * 60 * 60;

/// Whether a bot may delete a message sent at `date` at `now`.
pub fn check_bot_delete(date: i64, now: i64) -> Result<(), RpcErr> {
    if now - date >= BOT_DELETE_LIMIT {
        return Err(RpcErr::new(403, "MESSAGE_DELETE_FORBIDDEN"));
    }
    Ok(())
}

/// Bots cannot read history: messages.getHistory, messages.search and messages.getDialogs
/// answer `BOT_METHOD_INVALID` ("This method can't be used by a bot", ERRORS; the method
/// pages say "Only users can use this method"). Fetching messages by id is allowed.
pub fn users_only(bot: bool) -> Result<(), RpcErr> {
    if bot {
        return Err(RpcErr::bad("BOT_METHOD_INVALID"));
    }
    Ok(())
}

/// BOTFAQ: "your bot will not be able to send more than 20 messages per minute to the
/// same group." The fake applies it to bots in groups and channels alike.
pub const BOT_GROUP_MESSAGES_PER_MINUTE: usize = 20;

/// BOTFAQ: "When sending messages inside a particular chat, avoid sending more than one
/// message per second. We may allow short bursts that go over this limit, but eventually
/// you'll begin receiving 429 errors." The fake lets any account send a burst of this
/// many messages into one chat, then one a second (an estimate: the burst is not
/// published).
pub const CHAT_BURST: u32 = 20;

/// The per-chat refill: one message a second (BOTFAQ, above).
pub const CHAT_MESSAGES_PER_SECOND: f64 = 1.0;

/// Bot sign-ins (`auth.importBotAuthorization`) allowed per bot in
/// [`BOT_SIGNIN_WINDOW`]; beyond, FLOOD_WAIT until the oldest leaves the window. ISSUES:
/// bots that sign in on every start draw waits of 1057 s (gram-js/gramjs#530), 2838 s
/// (EverythingSuckz/TG-FileStreamBot#87), 3135 s (hemantapkh/TorrentHunt#38); the count
/// and the window are estimates.
pub const BOT_SIGNINS_PER_WINDOW: usize = 5;

/// The window of [`BOT_SIGNINS_PER_WINDOW`].
pub const BOT_SIGNIN_WINDOW: i64 = 60 * 60;

/// A FLOOD_WAIT of `seconds` (420), as Telegram names it (ERRORS: "FLOOD_WAIT_%d Please
/// wait %d seconds before repeating the action").
pub fn flood_wait(seconds: i64) -> RpcErr {
    RpcErr::new(420, format!("FLOOD_WAIT_{}", seconds.max(1)))
}

/// Sliding-window and bucket state for the message-rate rules, per sender and chat.
#[derive(Debug, Default, Clone)]
pub struct SendRate {
    /// Unix times (ms) of the sends in the last minute (bots in groups and channels).
    recent_ms: std::collections::VecDeque<i64>,
    /// Tokens left of [`CHAT_BURST`] and when they were counted (ms).
    tokens: Option<(f64, i64)>,
}

impl SendRate {
    /// Admits one more message at `now_ms`, or says how long to wait (whole seconds,
    /// rounded up) under [`BOT_GROUP_MESSAGES_PER_MINUTE`] (bots into groups and
    /// channels) and [`CHAT_BURST`]/[`CHAT_MESSAGES_PER_SECOND`] (everyone).
    pub fn admit(&mut self, now_ms: i64, bot_in_group: bool) -> Result<(), RpcErr> {
        let (tokens, at) = self.tokens.unwrap_or((f64::from(CHAT_BURST), now_ms));
        let tokens = (tokens + (now_ms - at) as f64 / 1000.0 * CHAT_MESSAGES_PER_SECOND)
            .min(f64::from(CHAT_BURST));
        if tokens < 1.0 {
            let wait = ((1.0 - tokens) / CHAT_MESSAGES_PER_SECOND).ceil() as i64;
            self.tokens = Some((tokens, now_ms));
            return Err(flood_wait(wait));
        }
        if bot_in_group {
            while self
                .recent_ms
                .front()
                .is_some_and(|&t| now_ms - t >= 60_000)
            {
                self.recent_ms.pop_front();
            }
            if self.recent_ms.len() >= BOT_GROUP_MESSAGES_PER_MINUTE {
                let oldest = self.recent_ms[0];
                let wait = (60_000 - (now_ms - oldest) + 999) / 1000;
                self.tokens = Some((tokens, now_ms));
                return Err(flood_wait(wait));
            }
            self.recent_ms.push_back(now_ms);
        }
        self.tokens = Some((tokens - 1.0, now_ms));
        Ok(())
    }
}

/// Admits a bot sign-in at `now` given the earlier ones (Unix seconds), under
/// [`BOT_SIGNINS_PER_WINDOW`].
pub fn admit_bot_signin(
    history: &mut std::collections::VecDeque<i64>,
    now: i64,
) -> Result<(), RpcErr> {
    while history
        .front()
        .is_some_and(|&t| now - t >= BOT_SIGNIN_WINDOW)
    {
        history.pop_front();
    }
    if history.len() >= BOT_SIGNINS_PER_WINDOW {
        return Err(flood_wait(BOT_SIGNIN_WINDOW - (now - history[0])));
    }
    history.push_back(now);
    Ok(())
}

/// How many pts a channel's update log keeps. DIFF, `updates.channelDifferenceTooLong`:
/// "The passed pts is too old: one or more updates starting from the specified PTS were
/// deleted from the message box of this channel. For supergroups/channels, this usually
/// happens for updates older than latestPts - 100000".
pub const CHANNEL_LOG_MAX: usize = 100_000;

/// The most updates one `updates.getChannelDifference` returns: its `limit`, capped.
/// DIFF: "limit: How many updates to fetch, max 100000. Ordinary (non-bot) users are
/// supposed to pass 10-100" — so 100 for users, 100000 for bots; a limit below 1 counts
/// as 1.
pub fn channel_difference_limit(limit: i32, bot: bool) -> i32 {
    limit.clamp(1, if bot { 100_000 } else { 100 })
}

/// The `pts` a client asks a channel's difference from, against the channel's own.
/// DIFF, "Possible errors": PERSISTENT_TIMESTAMP_EMPTY ("Persistent timestamp empty")
/// for no pts (0 or below), PERSISTENT_TIMESTAMP_INVALID ("Persistent timestamp invalid")
/// for one the channel never reached (Telegram does not say which error a pts from the
/// future draws; the fake answers this one).
pub fn check_difference_pts(pts: i32, channel_pts: i32) -> Result<(), RpcErr> {
    if pts <= 0 {
        return Err(RpcErr::bad("PERSISTENT_TIMESTAMP_EMPTY"));
    }
    if pts > channel_pts {
        return Err(RpcErr::bad("PERSISTENT_TIMESTAMP_INVALID"));
    }
    Ok(())
}

/// Whether a difference from `pts` to `channel_pts` is too long for `limit` (or starts
/// before `log_start`, where the log was cut). Type page of updates.ChannelDifference:
/// channelDifferenceTooLong when "The provided pts + limit < remote pts. Simply, there
/// are too many updates to be fetched (more than limit)".
pub fn difference_too_long(pts: i32, channel_pts: i32, limit: i32, log_start: i32) -> bool {
    pts < log_start || i64::from(pts) + i64::from(limit) < i64::from(channel_pts)
}

/// `timeout` of channel differences: DIFF, updates.channelDifference "Clients are
/// supposed to refetch the channel difference after timeout seconds have elapsed".
/// Telegram does not publish the value; the fake says 30 s (an estimate).
pub const CHANNEL_DIFFERENCE_TIMEOUT: i32 = 30;

/// A public username: account.updateUsername
/// (<https://core.telegram.org/method/account.updateUsername>) "Accepted characters: A-z
/// (case-insensitive), 0-9 and underscores. Length: 5-32 characters", beginning with a
/// letter and not ending with an underscore (as channels.updateUsername refuses with
/// USERNAME_INVALID, <https://core.telegram.org/method/channels.updateUsername>).
pub fn username_valid(name: &str) -> bool {
    let b = name.as_bytes();
    (5..=32).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1] != b'_'
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `invokeWithTakeout` with an id that is not an open takeout session of the caller:
/// TAKEOUT_INVALID, "The specified takeout ID is invalid" (400; "Possible errors" of
/// messages.getHistory and account.finishTakeoutSession,
/// <https://core.telegram.org/method/account.finishTakeoutSession>).
pub fn takeout_invalid() -> RpcErr {
    RpcErr::bad("TAKEOUT_INVALID")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(e: RpcErr) -> String {
        e.message
    }

    #[test]
    fn part_sizes() {
        let k = |n: usize| Some(n * 1024);
        assert_eq!(
            check_assembled(&[k(512), k(512), k(3)], false).unwrap(),
            1027 * 1024
        );
        assert_eq!(
            check_assembled(&[k(128), k(128), Some(5)], false).unwrap(),
            256 * 1024 + 5
        );
        assert_eq!(check_assembled(&[Some(7)], false).unwrap(), 7);
        assert_eq!(
            name(check_assembled(&[k(512), None, k(1)], false).unwrap_err()),
            "FILE_PART_1_MISSING"
        );
        assert_eq!(
            name(check_assembled(&[k(384), k(384), k(1)], false).unwrap_err()),
            "FILE_PART_SIZE_INVALID"
        );
        assert_eq!(
            name(check_assembled(&[k(512), k(256), k(1)], false).unwrap_err()),
            "FILE_PART_SIZE_CHANGED"
        );
        assert_eq!(
            name(check_assembled(&[k(256), k(512)], false).unwrap_err()),
            "FILE_PART_SIZE_INVALID"
        );
        // Small files through saveFilePart, big ones through saveBigFilePart.
        let twenty: Vec<Option<usize>> = vec![k(512); 20];
        assert!(
            check_assembled(&twenty, false).is_ok(),
            "exactly 10 MiB is small"
        );
        assert_eq!(
            name(check_assembled(&twenty, true).unwrap_err()),
            "FILE_PARTS_INVALID"
        );
        let mut twenty_one = twenty.clone();
        twenty_one.push(Some(1));
        assert!(check_assembled(&twenty_one, true).is_ok());
        assert_eq!(
            name(check_assembled(&twenty_one, false).unwrap_err()),
            "FILE_PARTS_INVALID"
        );
        assert_eq!(
            name(check_part(4000, 1, false).unwrap_err()),
            "FILE_PART_INVALID"
        );
        assert!(check_part(7999, 1, true).is_ok());
        assert_eq!(
            name(check_part(0, MAX_PART + 1, false).unwrap_err()),
            "FILE_PART_TOO_BIG"
        );
        assert_eq!(
            name(check_part(0, 0, false).unwrap_err()),
            "FILE_PART_EMPTY"
        );
    }

    #[test]
    fn download_alignment() {
        assert!(check_download(0, 512 * 1024, false).is_ok());
        assert!(check_download(1536 * 1024, 512 * 1024, false).is_ok());
        assert!(check_download(3 * 1024 * 1024, 1024 * 1024, false).is_ok());
        assert_eq!(
            name(check_download(768 * 1024, 512 * 1024, false).unwrap_err()),
            "OFFSET_INVALID"
        );
        assert_eq!(
            name(check_download(100, 4096, false).unwrap_err()),
            "OFFSET_INVALID"
        );
        assert_eq!(
            name(check_download(0, 3 * 4096, false).unwrap_err()),
            "LIMIT_INVALID"
        );
        assert_eq!(
            name(check_download(0, 2 * 1024 * 1024, false).unwrap_err()),
            "LIMIT_INVALID"
        );
        assert!(check_download(1024, 3 * 1024, true).is_ok());
        assert_eq!(
            name(check_download(0, 1000, true).unwrap_err()),
            "LIMIT_INVALID"
        );
    }

    #[test]
    fn bots_send_twenty_a_minute_into_a_group() {
        let mut rate = SendRate::default();
        let mut t = 0;
        for _ in 0..BOT_GROUP_MESSAGES_PER_MINUTE {
            rate.admit(t, true).unwrap();
            t += 1_500; // slower than one a second: the bucket never runs dry
        }
        let err = rate.admit(t, true).unwrap_err();
        assert_eq!(err.code, 420);
        assert_eq!(err.message, "FLOOD_WAIT_30"); // the first send leaves the minute at 60 s
        assert!(rate.admit(60_000, true).is_ok());
    }

    #[test]
    fn anyone_gets_a_burst_then_one_a_second() {
        let mut rate = SendRate::default();
        for _ in 0..CHAT_BURST {
            rate.admit(0, false).unwrap();
        }
        assert_eq!(rate.admit(0, false).unwrap_err().message, "FLOOD_WAIT_1");
        assert!(rate.admit(1_000, false).is_ok());
        assert!(rate.admit(1_000, false).is_err());
    }

    #[test]
    fn age_limits() {
        assert!(check_bot_delete(0, BOT_DELETE_LIMIT - 1).is_ok());
        let e = check_bot_delete(0, BOT_DELETE_LIMIT).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (403, "MESSAGE_DELETE_FORBIDDEN")
        );
        assert!(check_edit_time(0, EDIT_TIME_LIMIT).is_ok());
        assert_eq!(
            name(check_edit_time(0, EDIT_TIME_LIMIT + 1).unwrap_err()),
            "MESSAGE_EDIT_TIME_EXPIRED"
        );
    }

    #[test]
    fn bot_sign_ins_flood() {
        let mut h = std::collections::VecDeque::new();
        for i in 0..BOT_SIGNINS_PER_WINDOW as i64 {
            admit_bot_signin(&mut h, i * 10).unwrap();
        }
        let e = admit_bot_signin(&mut h, 100).unwrap_err();
        assert_eq!(e.message, format!("FLOOD_WAIT_{}", BOT_SIGNIN_WINDOW - 100));
        assert!(admit_bot_signin(&mut h, BOT_SIGNIN_WINDOW).is_ok());
    }

    #[test]
    fn channel_differences() {
        assert_eq!(channel_difference_limit(1000, false), 100);
        assert_eq!(channel_difference_limit(1000, true), 1000);
        assert_eq!(channel_difference_limit(1_000_000, true), 100_000);
        assert_eq!(channel_difference_limit(0, false), 1);
        assert!(check_difference_pts(5, 5).is_ok());
        assert_eq!(
            name(check_difference_pts(6, 5).unwrap_err()),
            "PERSISTENT_TIMESTAMP_INVALID"
        );
        assert_eq!(
            name(check_difference_pts(0, 5).unwrap_err()),
            "PERSISTENT_TIMESTAMP_EMPTY"
        );
        assert!(!difference_too_long(1, 101, 100, 1));
        assert!(difference_too_long(1, 102, 100, 1));
        assert!(difference_too_long(3, 4, 100, 4), "before the log");
    }

    #[test]
    fn usernames() {
        for ok in ["vault", "My_vault_2", &"a".repeat(32)] {
            assert!(username_valid(ok), "{ok}");
        }
        for bad in [
            "vlt",
            "2vault",
            "vault_",
            "va-ult",
            "vaült",
            &"a".repeat(33),
        ] {
            assert!(!username_valid(bad), "{bad}");
        }
    }

    #[test]
    fn texts() {
        assert_eq!(message_text("  hi \n").unwrap(), "hi");
        assert_eq!(name(message_text(" \n").unwrap_err()), "MESSAGE_EMPTY");
        assert_eq!(
            name(message_text(&"é".repeat(4097)).unwrap_err()),
            "MESSAGE_TOO_LONG"
        );
        assert!(caption(&"a".repeat(1024), false).is_ok());
        assert_eq!(
            name(caption(&"a".repeat(1025), false).unwrap_err()),
            "MEDIA_CAPTION_TOO_LONG"
        );
        assert!(caption(&"a".repeat(4096), true).is_ok());
    }
}
