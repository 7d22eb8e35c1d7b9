//! tgferry moves large file collections into a store (a Telegram chat or a local directory)
//! from time-budgeted runs, checkpointing into a portable JSON state file so that the next
//! run carries on exactly where this one stopped.
//!
//! The crate is layered the way data flows (see `docs/architecture.md`):
//!
//! - [`source`]: where files come from ([`source::Source`]: local directory, in-memory double).
//! - [`store`]: where parts go ([`store::Store`]: Telegram, local directory, in-memory double).
//! - [`blocking`]: plain file reads and writes on the hot path, without tokio's extra copy.
//! - [`beneath`]: folders and files under a root reached without following a link.
//! - [`bounded`]: size caps and FIFO-safe opens for everything read whole.
//! - [`state`]: the state file model, its schema, atomic saves and the append-only journal.
//! - [`vault`]: the encrypted format (docs/format.md): keys, parts, content ids, catalog.
//! - [`keyring`]: a store's vault: passphrase, key file, encrypted catalog.
//! - [`runner`]: the budgeted loop: scheduling, retries with backoff, failure cap, stopping.
//! - [`restore`]: getting files back out of a store (`restore`) and checking it (`verify`).
//! - [`prune`]: deleting abandoned uploads and parts nothing refers to.
//! - [`rclone`]: the one long-lived `rclone rcd` of a run, shared by rclone sources and stores.
//! - [`report`]: turning runner events and states into progress bars, CI lines and status text.
//! - [`telegram`]: Telegram through one narrow interface, the grammers adapter and a double.
//! - [`github`]: GitHub Actions: the state artifact through the REST API, job summaries.
//! - [`cli`]: the command line; the only module that knows about clap.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod beneath;
pub mod blocking;
pub mod bounded;
pub mod cli;
pub mod github;
pub mod job;
pub mod keyring;
pub mod prune;
pub mod rclone;
pub mod report;
pub mod restore;
pub mod runner;
pub mod source;
pub mod state;
pub mod store;
pub mod telegram;
pub mod time;
pub mod vault;
