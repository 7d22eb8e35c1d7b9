//! Telegram: a chat (a private channel, a group or Saved Messages) as a store.
//!
//! Every call to Telegram goes through one narrow interface, [`api::TelegramApi`]: a chat
//! bound at connection, 512 KiB upload chunks, documents, messages by id, downloads by
//! offset, deletes and one pinned index message. Two things implement it:
//!
//! - [`grammers::GrammersApi`]: the real thing, MTProto through grammers-client, with the
//!   session persisted by [`session`] so that CI can carry it as a secret, and created by
//!   [`login`];
//! - [`double::TelegramDouble`]: an in-memory Telegram for tests that enforces the server's
//!   rules (chunk sizes, part counts, the big-file threshold, missing parts, message ids,
//!   no history for bots) and injects flood waits and dropped connections.
//!
//! [`crate::store::telegram::TelegramStore`] turns either into a [`crate::store::Store`].

pub mod api;
pub mod credentials;
pub mod double;
pub mod grammers;
pub mod login;
pub mod reader;
pub mod session;
pub mod wait;
