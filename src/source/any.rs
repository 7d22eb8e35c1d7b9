//! [`AnySource`]: whichever source `--source` names (a local folder, `rclone:REMOTE:PATH`
//! or `telegram:CHAT[,CHAT…]`) as one type, and [`SourceSpec`], that name parsed. Together with
//! [`crate::store::any::AnyStore`] this is the only place that knows every source backend:
//! adding one touches its own module and these two types, nothing in the command line or
//! the job.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::local::LocalSource;
use super::rclone::{PREFIX as RCLONE_PREFIX, RcloneReader, RcloneSource};
use super::telegram::{ChatOptions, ChatReader, ChatSource, PREFIX as TELEGRAM_PREFIX};
use super::{Listing, Source, SourceEntry, SourceError};
use crate::state::ChatCatalog;
use crate::telegram::api::ChatRef;
use crate::telegram::grammers::{GrammersApi, GrammersConfig};

/// A `--source` value, parsed (no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A folder on a local file system.
    Local(PathBuf),
    /// An rclone remote as rclone spells it (`nas:photos`, `:sftp,host=…:dir`).
    Rclone(String),
    /// Telegram chats whose media are the files.
    Telegram(Vec<ChatRef>),
}

impl SourceSpec {
    /// Parses a `--source` value: `rclone:REMOTE:PATH`, else a local folder. The error
    /// names the value and the fix.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("--source must not be empty".into());
        }
        if let Some(chats) = text.strip_prefix(TELEGRAM_PREFIX) {
            return super::telegram::parse_chats(chats).map(SourceSpec::Telegram);
        }
        match text.strip_prefix(RCLONE_PREFIX) {
            Some(remote) if remote.trim().is_empty() => Err(format!(
                "--source {text:?} names no remote: write rclone:REMOTE:PATH, e.g. \
                 rclone:nas:photos (`rclone listremotes` shows the configured ones)"
            )),
            Some(remote) => Ok(SourceSpec::Rclone(remote.to_owned())),
            None => Ok(SourceSpec::Local(PathBuf::from(text))),
        }
    }

    /// The local folder, for a local source.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match self {
            SourceSpec::Local(root) => Some(root),
            SourceSpec::Rclone(_) | SourceSpec::Telegram(_) => None,
        }
    }
}

/// A local folder or an rclone remote.
#[derive(Debug)]
// One per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnySource {
    /// A local folder.
    Local(LocalSource),
    /// An rclone remote.
    Rclone(RcloneSource),
    /// Telegram chats.
    Telegram(ChatSource<GrammersApi>),
}

impl AnySource {
    /// The source `spec` names, reading in windows of `part_size` where that matters (an
    /// rclone `cat` stops at a part's end); chats with `chat` options over `connections`
    /// each (`None`: the default). Nothing is touched until the first listing; a chat
    /// source's credentials are read (not used) here.
    pub fn open(
        spec: &SourceSpec,
        part_size: u64,
        chat: &ChatOptions,
        connections: Option<usize>,
    ) -> Result<Self, SourceError> {
        Ok(match spec {
            SourceSpec::Local(root) => AnySource::Local(LocalSource::new(root)),
            SourceSpec::Rclone(remote) => {
                AnySource::Rclone(RcloneSource::new(remote).with_read_window(part_size))
            }
            SourceSpec::Telegram(chats) => {
                let unavailable = |message: String| SourceError::Unavailable {
                    root: super::telegram::source_name(chats),
                    message,
                };
                let creds = crate::telegram::credentials::source_from_env()
                    .map_err(|e| unavailable(e.to_string()))?;
                let mut apis = Vec::new();
                for c in chats {
                    let mut config = GrammersConfig::from_credentials(creds.clone(), c.clone())
                        .map_err(|e| unavailable(e.to_string()))?;
                    if let Some(n) = connections {
                        config.connections = n;
                    }
                    config.reads_only = true;
                    config.takeout = chat.takeout;
                    apis.push((c.clone(), GrammersApi::new(config)));
                }
                AnySource::Telegram(ChatSource::new(apis, chat.clone()).map_err(unavailable)?)
            }
        })
    }
}

impl AnySource {
    /// Checks that the source's root is a folder that is there (a local folder looked at,
    /// an rclone remote's top level listed): a job does this before it creates anything,
    /// so that a mistyped `--source` is reported first.
    pub async fn check_root(&self) -> Result<(), SourceError> {
        match self {
            AnySource::Local(s) => super::local::check_root(s.root()),
            AnySource::Rclone(s) => s.check_root().await,
            AnySource::Telegram(s) => s.check_root().await,
        }
    }
}

/// A file being read from an [`AnySource`].
pub enum AnySourceReader {
    /// From a local folder.
    Local(crate::blocking::BlockingFile),
    /// From an rclone remote.
    Rclone(RcloneReader),
    /// From a Telegram chat.
    Telegram(ChatReader),
}

impl AsyncRead for AnySourceReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AnySourceReader::Local(r) => Pin::new(r).poll_read(cx, buf),
            AnySourceReader::Rclone(r) => Pin::new(r).poll_read(cx, buf),
            AnySourceReader::Telegram(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl Source for AnySource {
    type Reader = AnySourceReader;

    async fn list(&self) -> Result<Listing, SourceError> {
        match self {
            AnySource::Local(s) => s.list().await,
            AnySource::Rclone(s) => s.list().await,
            AnySource::Telegram(s) => s.list().await,
        }
    }

    async fn open(&self, path: &str, offset: u64) -> Result<AnySourceReader, SourceError> {
        match self {
            AnySource::Local(s) => s.open(path, offset).await.map(AnySourceReader::Local),
            AnySource::Rclone(s) => s.open(path, offset).await.map(AnySourceReader::Rclone),
            AnySource::Telegram(s) => s.open(path, offset).await.map(AnySourceReader::Telegram),
        }
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        match self {
            AnySource::Local(s) => s.stat(path).await,
            AnySource::Rclone(s) => s.stat(path).await,
            AnySource::Telegram(s) => s.stat(path).await,
        }
    }

    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        match self {
            AnySource::Local(s) => s.prefetch(path, offset, len),
            AnySource::Rclone(s) => s.prefetch(path, offset, len),
            AnySource::Telegram(s) => s.prefetch(path, offset, len),
        }
    }

    fn read_ahead_files(&self, jobs: usize) -> usize {
        match self {
            AnySource::Local(s) => s.read_ahead_files(jobs),
            AnySource::Rclone(s) => s.read_ahead_files(jobs),
            AnySource::Telegram(s) => s.read_ahead_files(jobs),
        }
    }

    fn set_wait_deadline(&self, at: Option<tokio::time::Instant>) {
        if let AnySource::Telegram(s) = self {
            s.set_wait_deadline(at);
        }
    }

    fn restore_catalog(&self, chats: &std::collections::BTreeMap<String, ChatCatalog>) {
        if let AnySource::Telegram(s) = self {
            s.restore_catalog(chats);
        }
    }

    fn catalog(&self) -> Option<std::collections::BTreeMap<String, ChatCatalog>> {
        match self {
            AnySource::Telegram(s) => s.catalog(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            SourceSpec::parse("photos").unwrap(),
            SourceSpec::Local("photos".into())
        );
        assert_eq!(
            SourceSpec::parse("rclone:nas:photos").unwrap(),
            SourceSpec::Rclone("nas:photos".into())
        );
        assert_eq!(
            SourceSpec::parse("telegram:@media_chan, -1001234").unwrap(),
            SourceSpec::Telegram(vec![
                ChatRef::Username("media_chan".into()),
                ChatRef::Id(-1001234)
            ])
        );
        let e = SourceSpec::parse("telegram:@media_chan,@media_chan").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = SourceSpec::parse("telegram:chan").unwrap_err();
        assert!(e.contains("--source telegram:chan"), "{e}");
        let e = SourceSpec::parse("rclone: ").unwrap_err();
        assert!(e.contains("names no remote"), "{e}");
        assert!(SourceSpec::parse(" ").is_err());
    }
}
