//! [`AnyStore`]: whichever store `--store` names (a local folder or `telegram:CHAT`), as one
//! type, so that the command line drives one runner, restore and verify for both.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::local::{LocalStore, LocalUpload};
use super::telegram::{TelegramReader, TelegramStore, TelegramUpload};
use super::{PartInfo, PartStat, Store, StoreError, Upload};
use crate::telegram::api::TelegramApi;
use crate::time::Timestamp;

/// A local folder or a Telegram chat reached through `T`.
pub enum AnyStore<T: TelegramApi> {
    /// A local folder.
    Local(LocalStore),
    /// A Telegram chat.
    Telegram(TelegramStore<T>),
}

/// A part being written to an [`AnyStore`].
pub enum AnyUpload<T: TelegramApi> {
    /// To a local folder.
    Local(LocalUpload),
    /// To Telegram.
    Telegram(TelegramUpload<T>),
}

/// A part being read from an [`AnyStore`].
pub enum AnyReader {
    /// From a local folder.
    Local(tokio::fs::File),
    /// From Telegram.
    Telegram(TelegramReader),
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
        }
    }
}

impl<T: TelegramApi> Upload for AnyUpload<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyUpload::Local(u) => u.write(buf).await,
            AnyUpload::Telegram(u) => u.write(buf).await,
        }
    }

    async fn finish(self) -> Result<String, StoreError> {
        match self {
            AnyUpload::Local(u) => u.finish().await,
            AnyUpload::Telegram(u) => u.finish().await,
        }
    }

    async fn finish_timed(self) -> Result<(String, Option<Timestamp>), StoreError> {
        match self {
            AnyUpload::Local(u) => u.finish_timed().await,
            AnyUpload::Telegram(u) => u.finish_timed().await,
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
        }
    }

    fn set_wait_deadline(&self, deadline: Option<tokio::time::Instant>) {
        match self {
            AnyStore::Local(s) => s.set_wait_deadline(deadline),
            AnyStore::Telegram(s) => s.set_wait_deadline(deadline),
        }
    }

    async fn begin(&self, name: &str, len: u64) -> Result<AnyUpload<T>, StoreError> {
        match self {
            AnyStore::Local(s) => s.begin(name, len).await.map(AnyUpload::Local),
            AnyStore::Telegram(s) => s.begin(name, len).await.map(AnyUpload::Telegram),
        }
    }

    fn names_are_locations(&self) -> bool {
        match self {
            AnyStore::Local(s) => s.names_are_locations(),
            AnyStore::Telegram(s) => s.names_are_locations(),
        }
    }

    async fn begin_staged(&self, name: &str, len: u64) -> Result<AnyUpload<T>, StoreError> {
        match self {
            AnyStore::Local(s) => s.begin_staged(name, len).await.map(AnyUpload::Local),
            AnyStore::Telegram(s) => s.begin_staged(name, len).await.map(AnyUpload::Telegram),
        }
    }

    async fn place(&self, from: &str, name: &str) -> Result<Option<Timestamp>, StoreError> {
        match self {
            AnyStore::Local(s) => s.place(from, name).await,
            AnyStore::Telegram(s) => s.place(from, name).await,
        }
    }

    async fn staged(&self) -> Result<Vec<String>, StoreError> {
        match self {
            AnyStore::Local(s) => s.staged().await,
            AnyStore::Telegram(s) => s.staged().await,
        }
    }

    async fn stat(&self, loc: &str) -> Result<Option<PartStat>, StoreError> {
        match self {
            AnyStore::Local(s) => s.stat(loc).await,
            AnyStore::Telegram(s) => s.stat(loc).await,
        }
    }

    async fn open(&self, loc: &str) -> Result<AnyReader, StoreError> {
        match self {
            AnyStore::Local(s) => s.open(loc).await.map(AnyReader::Local),
            AnyStore::Telegram(s) => s.open(loc).await.map(AnyReader::Telegram),
        }
    }

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        match self {
            AnyStore::Local(s) => s.len(loc).await,
            AnyStore::Telegram(s) => s.len(loc).await,
        }
    }

    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(s) => s.remove(loc).await,
            AnyStore::Telegram(s) => s.remove(loc).await,
        }
    }

    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(s) => s.put_meta(name, bytes).await,
            AnyStore::Telegram(s) => s.put_meta(name, bytes).await,
        }
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AnyStore::Local(s) => s.get_meta(name).await,
            AnyStore::Telegram(s) => s.get_meta(name).await,
        }
    }

    async fn list_parts(&self, hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        match self {
            AnyStore::Local(s) => s.list_parts(hint).await,
            AnyStore::Telegram(s) => s.list_parts(hint).await,
        }
    }
}
