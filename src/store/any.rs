//! [`AnyStore`]: whichever store `--store` names (a local folder, `telegram:CHAT` or
//! `rclone:REMOTE:PATH`), as one
//! type, and [`StoreSpec`], that name parsed. With [`crate::source::any::AnySource`] this is
//! the only place that knows every store backend: the job, restore and verify drive one
//! type for all of them, and adding a store touches its own module and this file.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::local::{LocalStore, LocalUpload};
use super::rclone::{PREFIX as RCLONE_PREFIX, RcloneStore, RcloneUpload};
use super::telegram::{TelegramOptions, TelegramReader, TelegramStore, TelegramUpload};
use super::{PartInfo, PartStat, Store, StoreError, Upload};
use crate::telegram::api::{ChatRef, TelegramApi};
use crate::telegram::credentials;
use crate::telegram::grammers::{GrammersApi, GrammersConfig};
use crate::time::Timestamp;

/// The prefix of a Telegram store: `telegram:CHAT`.
pub const TELEGRAM_PREFIX: &str = "telegram:";

/// A `--store` value, parsed (no I/O, no credentials read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// A folder on a local file system.
    Local(PathBuf),
    /// A Telegram chat.
    Telegram(ChatRef),
    /// An rclone remote as rclone spells it (`box:backup`, `:sftp,host=…:dir`).
    Rclone(String),
}

/// Errors opening the store a `--store` value names, before any I/O with it.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// The value cannot be a store (a malformed chat, nothing given).
    #[error("{0}")]
    Spec(String),
    /// The store's credentials are missing or malformed (`TGFERRY_TG_*`).
    #[error("{0} (nothing was written)")]
    Credentials(String),
    /// A store that must exist does not, or is not a folder.
    #[error("{0}")]
    Missing(String),
}

impl StoreSpec {
    /// Parses a `--store` value: `telegram:CHAT`, `rclone:REMOTE:PATH`, else a local
    /// folder.
    pub fn parse(text: &str) -> Result<Self, StoreOpenError> {
        if text.trim().is_empty() {
            return Err(StoreOpenError::Spec("--store must not be empty".into()));
        }
        if let Some(found) = RcloneStore::from_store(text, false) {
            return found
                .map(|_| StoreSpec::Rclone(text[RCLONE_PREFIX.len()..].to_owned()))
                .map_err(StoreOpenError::Spec);
        }
        match text.trim().strip_prefix(TELEGRAM_PREFIX) {
            Some(chat) => ChatRef::parse(chat)
                .map(StoreSpec::Telegram)
                .map_err(|e| StoreOpenError::Spec(format!("--store telegram:{chat}: {e}"))),
            None => Ok(StoreSpec::Local(PathBuf::from(text))),
        }
    }

    /// The local folder, for a local store.
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            StoreSpec::Local(root) => Some(root),
            StoreSpec::Telegram(_) | StoreSpec::Rclone(_) => None,
        }
    }
}

/// How a store is used, beyond where it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Plain mode (`--encryption none`): parts are the files themselves.
    pub plain: bool,
    /// The Telegram account has Premium (larger files).
    pub premium: bool,
    /// Telegram: connections file bytes are spread over (`None`: the default).
    pub tg_connections: Option<usize>,
}

impl AnyStore<GrammersApi> {
    /// Opens the store for writing (`run`, `init`, `prune`, `verify --repair`): a local
    /// folder is created by [`Store::prepare`] if missing; a Telegram chat's credentials are
    /// read from `TGFERRY_TG_*` and checked for shape, and nothing connects yet.
    pub fn open(spec: &StoreSpec, options: StoreOptions) -> Result<Self, StoreOpenError> {
        match spec {
            StoreSpec::Local(root) => match std::fs::metadata(root) {
                Ok(md) if !md.is_dir() => Err(StoreOpenError::Missing(format!(
                    "--store {} is a file, not a folder: give --store a folder (it is created \
                     if missing) or telegram:CHAT (nothing was written)",
                    root.display()
                ))),
                _ => Ok(AnyStore::Local(LocalStore::new(root))),
            },
            StoreSpec::Telegram(chat) => open_telegram(chat, options),
            StoreSpec::Rclone(remote) => {
                Ok(AnyStore::Rclone(RcloneStore::new(remote, options.plain)))
            }
        }
    }

    /// Opens a store that must already exist (`restore`, `verify`): a local folder is
    /// checked, never created.
    pub fn open_existing(spec: &StoreSpec, options: StoreOptions) -> Result<Self, StoreOpenError> {
        let StoreSpec::Local(root) = spec else {
            return Self::open(spec, options);
        };
        let shown = root.display();
        match std::fs::metadata(root) {
            Ok(md) if md.is_dir() => Ok(AnyStore::Local(LocalStore::new(root))),
            Ok(_) => Err(StoreOpenError::Missing(format!(
                "--store {shown} is a file, not a folder: a local store is the folder a run \
                 stored into; check --store"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreOpenError::Missing(format!(
                    "store {shown} does not exist: was it deleted or moved? Check --store \
                     (a local store is the folder `tgferry run` stored into)"
                )))
            }
            Err(e) => Err(StoreOpenError::Missing(format!(
                "store {shown} cannot be opened: {e}; check --store"
            ))),
        }
    }
}

fn open_telegram(
    chat: &ChatRef,
    options: StoreOptions,
) -> Result<AnyStore<GrammersApi>, StoreOpenError> {
    let creds = credentials::from_env().map_err(|e| StoreOpenError::Credentials(e.to_string()))?;
    let mut apis = GrammersConfig::every_account(creds, chat.clone())
        .map_err(|e| StoreOpenError::Credentials(e.to_string()))?
        .into_iter()
        .map(|mut config| {
            if let Some(n) = options.tg_connections {
                config.connections = n;
            }
            GrammersApi::new(config)
        });
    let main = apis.next().expect("credentials hold at least one account");
    Ok(AnyStore::Telegram(TelegramStore::with_accounts(
        main,
        apis.collect(),
        chat.clone(),
        TelegramOptions {
            plain: options.plain,
            premium: options.premium,
        },
    )))
}

/// A local folder, a Telegram chat reached through `T`, or an rclone remote.
// One per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyStore<T: TelegramApi> {
    /// A local folder.
    Local(LocalStore),
    /// A Telegram chat.
    Telegram(TelegramStore<T>),
    /// An rclone remote.
    Rclone(RcloneStore),
}

/// A part being written to an [`AnyStore`].
pub enum AnyUpload<T: TelegramApi> {
    /// To a local folder.
    Local(LocalUpload),
    /// To Telegram.
    Telegram(TelegramUpload<T>),
    /// To an rclone remote.
    Rclone(RcloneUpload),
}

/// A part being read from an [`AnyStore`].
pub enum AnyReader {
    /// From a local folder.
    Local(tokio::fs::File),
    /// From Telegram.
    Telegram(TelegramReader),
    /// From an rclone remote.
    Rclone(crate::rclone::reader::RangeReader),
}

impl AsyncRead for AnyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AnyReader::Local(f) => Pin::new(f).poll_read(cx, buf),
            AnyReader::Telegram(r) => Pin::new(r).poll_read(cx, buf),
            AnyReader::Rclone(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl<T: TelegramApi> Upload for AnyUpload<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyUpload::Local(u) => u.write(buf).await,
            AnyUpload::Telegram(u) => u.write(buf).await,
            AnyUpload::Rclone(u) => u.write(buf).await,
        }
    }

    async fn finish(self) -> Result<String, StoreError> {
        match self {
            AnyUpload::Local(u) => u.finish().await,
            AnyUpload::Telegram(u) => u.finish().await,
            AnyUpload::Rclone(u) => u.finish().await,
        }
    }

    async fn finish_timed(self) -> Result<(String, Option<Timestamp>), StoreError> {
        match self {
            AnyUpload::Local(u) => u.finish_timed().await,
            AnyUpload::Telegram(u) => u.finish_timed().await,
            AnyUpload::Rclone(u) => u.finish_timed().await,
        }
    }
}

impl<T: TelegramApi> Store for AnyStore<T> {
    type Upload = AnyUpload<T>;
    type Reader = AnyReader;

    async fn prepare(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(s) => s.prepare().await,
            AnyStore::Telegram(s) => s.prepare().await,
            AnyStore::Rclone(s) => s.prepare().await,
        }
    }

    fn set_wait_deadline(&self, deadline: Option<tokio::time::Instant>) {
        match self {
            AnyStore::Local(s) => s.set_wait_deadline(deadline),
            AnyStore::Telegram(s) => s.set_wait_deadline(deadline),
            AnyStore::Rclone(s) => s.set_wait_deadline(deadline),
        }
    }

    async fn begin(&self, name: &str, len: u64) -> Result<AnyUpload<T>, StoreError> {
        match self {
            AnyStore::Local(s) => s.begin(name, len).await.map(AnyUpload::Local),
            AnyStore::Telegram(s) => s.begin(name, len).await.map(AnyUpload::Telegram),
            AnyStore::Rclone(s) => s.begin(name, len).await.map(AnyUpload::Rclone),
        }
    }

    fn names_are_locations(&self) -> bool {
        match self {
            AnyStore::Local(s) => s.names_are_locations(),
            AnyStore::Telegram(s) => s.names_are_locations(),
            AnyStore::Rclone(s) => s.names_are_locations(),
        }
    }

    async fn begin_staged(&self, name: &str, len: u64) -> Result<AnyUpload<T>, StoreError> {
        match self {
            AnyStore::Local(s) => s.begin_staged(name, len).await.map(AnyUpload::Local),
            AnyStore::Telegram(s) => s.begin_staged(name, len).await.map(AnyUpload::Telegram),
            AnyStore::Rclone(s) => s.begin_staged(name, len).await.map(AnyUpload::Rclone),
        }
    }

    async fn place(&self, from: &str, name: &str) -> Result<Option<Timestamp>, StoreError> {
        match self {
            AnyStore::Local(s) => s.place(from, name).await,
            AnyStore::Telegram(s) => s.place(from, name).await,
            AnyStore::Rclone(s) => s.place(from, name).await,
        }
    }

    async fn staged(&self) -> Result<Vec<String>, StoreError> {
        match self {
            AnyStore::Local(s) => s.staged().await,
            AnyStore::Telegram(s) => s.staged().await,
            AnyStore::Rclone(s) => s.staged().await,
        }
    }

    async fn stat(&self, loc: &str) -> Result<Option<PartStat>, StoreError> {
        match self {
            AnyStore::Local(s) => s.stat(loc).await,
            AnyStore::Telegram(s) => s.stat(loc).await,
            AnyStore::Rclone(s) => s.stat(loc).await,
        }
    }

    async fn open(&self, loc: &str) -> Result<AnyReader, StoreError> {
        match self {
            AnyStore::Local(s) => s.open(loc).await.map(AnyReader::Local),
            AnyStore::Telegram(s) => s.open(loc).await.map(AnyReader::Telegram),
            AnyStore::Rclone(s) => s.open(loc).await.map(AnyReader::Rclone),
        }
    }

    async fn open_range(
        &self,
        loc: &str,
        offset: u64,
        len: u64,
    ) -> Result<super::RangeReader, StoreError> {
        match self {
            AnyStore::Local(s) => s.open_range(loc, offset, len).await,
            AnyStore::Telegram(s) => s.open_range(loc, offset, len).await,
            AnyStore::Rclone(s) => s.open_range(loc, offset, len).await,
        }
    }

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        match self {
            AnyStore::Local(s) => s.len(loc).await,
            AnyStore::Telegram(s) => s.len(loc).await,
            AnyStore::Rclone(s) => s.len(loc).await,
        }
    }

    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(s) => s.remove(loc).await,
            AnyStore::Telegram(s) => s.remove(loc).await,
            AnyStore::Rclone(s) => s.remove(loc).await,
        }
    }

    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(s) => s.put_meta(name, bytes).await,
            AnyStore::Telegram(s) => s.put_meta(name, bytes).await,
            AnyStore::Rclone(s) => s.put_meta(name, bytes).await,
        }
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AnyStore::Local(s) => s.get_meta(name).await,
            AnyStore::Telegram(s) => s.get_meta(name).await,
            AnyStore::Rclone(s) => s.get_meta(name).await,
        }
    }

    async fn list_parts(&self, hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        match self {
            AnyStore::Local(s) => s.list_parts(hint).await,
            AnyStore::Telegram(s) => s.list_parts(hint).await,
            AnyStore::Rclone(s) => s.list_parts(hint).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            StoreSpec::parse("/srv/backup").unwrap(),
            StoreSpec::Local("/srv/backup".into())
        );
        assert_eq!(
            StoreSpec::parse("telegram:me").unwrap(),
            StoreSpec::Telegram(ChatRef::Me)
        );
        assert!(matches!(
            StoreSpec::parse("telegram:x"),
            Err(StoreOpenError::Spec(_))
        ));
        assert!(matches!(StoreSpec::parse(""), Err(StoreOpenError::Spec(_))));
        assert_eq!(
            StoreSpec::parse("rclone::sftp,host=h:dir").unwrap(),
            StoreSpec::Rclone(":sftp,host=h:dir".into())
        );
        match StoreSpec::parse("rclone:") {
            Err(StoreOpenError::Spec(m)) => assert!(m.contains("rclone:REMOTE:PATH"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
