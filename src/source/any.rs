//! [`AnySource`]: whichever source `--source` names (a local folder or `rclone:REMOTE:PATH`)
//! as one type, and [`SourceSpec`], that name parsed. Together with
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
use super::{Listing, Source, SourceEntry, SourceError};

/// A `--source` value, parsed (no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A folder on a local file system.
    Local(PathBuf),
    /// An rclone remote as rclone spells it (`nas:photos`, `:sftp,host=…:dir`).
    Rclone(String),
}

impl SourceSpec {
    /// Parses a `--source` value: `rclone:REMOTE:PATH`, else a local folder. The error
    /// names the value and the fix.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("--source must not be empty".into());
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
            SourceSpec::Rclone(_) => None,
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
}

impl AnySource {
    /// The source `spec` names, reading in windows of `part_size` where that matters (an
    /// rclone `cat` stops at a part's end). Nothing is touched until the first listing.
    pub fn open(spec: &SourceSpec, part_size: u64) -> Self {
        match spec {
            SourceSpec::Local(root) => AnySource::Local(LocalSource::new(root)),
            SourceSpec::Rclone(remote) => {
                AnySource::Rclone(RcloneSource::new(remote).with_read_window(part_size))
            }
        }
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
        }
    }
}

/// A file being read from an [`AnySource`].
pub enum AnySourceReader {
    /// From a local folder.
    Local(crate::blocking::BlockingFile),
    /// From an rclone remote.
    Rclone(RcloneReader),
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
        }
    }
}

impl Source for AnySource {
    type Reader = AnySourceReader;

    async fn list(&self) -> Result<Listing, SourceError> {
        match self {
            AnySource::Local(s) => s.list().await,
            AnySource::Rclone(s) => s.list().await,
        }
    }

    async fn open(&self, path: &str, offset: u64) -> Result<AnySourceReader, SourceError> {
        match self {
            AnySource::Local(s) => s.open(path, offset).await.map(AnySourceReader::Local),
            AnySource::Rclone(s) => s.open(path, offset).await.map(AnySourceReader::Rclone),
        }
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        match self {
            AnySource::Local(s) => s.stat(path).await,
            AnySource::Rclone(s) => s.stat(path).await,
        }
    }

    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        match self {
            AnySource::Local(s) => s.prefetch(path, offset, len),
            AnySource::Rclone(s) => s.prefetch(path, offset, len),
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
        let e = SourceSpec::parse("rclone: ").unwrap_err();
        assert!(e.contains("names no remote"), "{e}");
        assert!(SourceSpec::parse(" ").is_err());
    }
}
