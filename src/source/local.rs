//! A local directory as a source: listing with walkdir, reading with blocking calls in
//! place (`crate::blocking`), and read-ahead hints to the kernel for the files next in line.
//!
//! Symbolic links are not followed (they are refused with a reason, like sockets and
//! devices), so a source can never lead the run outside its root. Names that are not UTF-8
//! are refused per file rather than mangled.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use super::{Listing, Source, SourceEntry, SourceError};

/// A directory on a local file system.
#[derive(Debug, Clone)]
pub struct LocalSource {
    root: PathBuf,
}

impl LocalSource {
    /// A source rooted at `root` (checked when listing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalSource { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

fn io_error(path: &str, e: std::io::Error) -> SourceError {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => SourceError::Vanished { path: path.into() },
        PermissionDenied | IsADirectory | InvalidInput => SourceError::Unreadable {
            path: path.into(),
            message: e.to_string(),
        },
        _ => SourceError::Transient {
            path: path.into(),
            message: e.to_string(),
        },
    }
}

fn entry_from(path: String, md: &std::fs::Metadata) -> SourceEntry {
    SourceEntry {
        path,
        size: md.len(),
        mtime: crate::time::from_system(md.modified().unwrap_or(std::time::UNIX_EPOCH)),
    }
}

/// Opens a listed file for reading. What was a regular file when listed may have been
/// replaced since: a FIFO would block `open` until a writer came (a CI job hung for
/// good), a symbolic link in its place would be followed. So on Unix the open does not
/// wait (`O_NONBLOCK`) nor follow a symbolic link in the last component (`O_NOFOLLOW`),
/// anything that is not a regular file is refused, and the descriptor is then made
/// blocking again for the reads. (A folder higher up replaced by a link is still
/// followed; `openat2(RESOLVE_BENEATH)` would close that too.)
fn open_regular(full: &Path, path: &str) -> Result<std::fs::File, SourceError> {
    let changed = |now: &str| SourceError::Changed {
        path: path.into(),
        detail: format!("is {now}"),
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32);
    }
    let file = match options.open(full) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(e) if is_symlink_refusal(&e) => return Err(changed("now a symbolic link")),
        Err(e) => return Err(io_error(path, e)),
    };
    match file.metadata() {
        Ok(md) if md.is_file() => {}
        Ok(_) => return Err(changed("no longer a regular file")),
        Err(e) => return Err(io_error(path, e)),
    }
    #[cfg(unix)]
    {
        use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
        fcntl_getfl(&file)
            .and_then(|flags| fcntl_setfl(&file, flags - OFlags::NONBLOCK))
            .map_err(|e| io_error(path, e.into()))?;
    }
    Ok(file)
}

/// `open(O_NOFOLLOW)` on a symbolic link fails with `ELOOP` (FreeBSD: `EMLINK`).
#[cfg(unix)]
fn is_symlink_refusal(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let refusals: &[Errno] = if cfg!(target_os = "freebsd") {
        &[Errno::LOOP, Errno::MLINK]
    } else {
        &[Errno::LOOP]
    };
    refusals
        .iter()
        .any(|r| e.raw_os_error() == Some(r.raw_os_error()))
}

/// Lists `root` recursively (blocking).
fn list_blocking(root: &Path) -> Result<Listing, SourceError> {
    let unavailable = |message: String| SourceError::Unavailable {
        root: root.display().to_string(),
        message,
    };
    match std::fs::metadata(root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(unavailable(
                "is not a directory; --source takes a folder".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unavailable(
                "does not exist; check --source (or TGFERRY_SOURCE)".into(),
            ));
        }
        Err(e) => return Err(unavailable(format!("cannot be read: {e}"))),
    }
    let mut listing = Listing::default();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for item in walker {
        let entry = match item {
            Ok(entry) => entry,
            Err(e) => {
                let rel = e
                    .path()
                    .and_then(|p| p.strip_prefix(root).ok())
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                let message = e
                    .io_error()
                    .map(|io| io.to_string())
                    .unwrap_or_else(|| e.to_string());
                listing
                    .errors
                    .push((rel.clone(), SourceError::Unreadable { path: rel, message }));
                continue;
            }
        };
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel_str) = rel.to_str() else {
            let shown = rel.to_string_lossy().into_owned();
            listing.refused.push((
                shown,
                "the name is not valid UTF-8 and cannot be kept losslessly; rename it".into(),
            ));
            continue;
        };
        let key = if std::path::MAIN_SEPARATOR == '/' {
            rel_str.to_owned()
        } else {
            rel_str.replace(std::path::MAIN_SEPARATOR, "/")
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        if ft.is_symlink() {
            listing
                .refused
                .push((key, "symbolic link (links are not followed)".into()));
            continue;
        }
        if !ft.is_file() {
            listing
                .refused
                .push((key, "not a regular file (socket, device or pipe)".into()));
            continue;
        }
        if !super::is_clean_relative(&key) {
            listing.refused.push((
                key,
                "the name cannot be stored as a clean relative path".into(),
            ));
            continue;
        }
        match entry.metadata() {
            Ok(md) => listing.files.push(entry_from(key, &md)),
            Err(e) => {
                let message = e
                    .io_error()
                    .map(|io| io.to_string())
                    .unwrap_or_else(|| e.to_string());
                listing
                    .errors
                    .push((key.clone(), SourceError::Unreadable { path: key, message }));
            }
        }
    }
    Ok(listing)
}

/// At most this much of a file is read ahead on a hint: enough to cover a typical
/// photo or document whole; past it the kernel's own sequential read-ahead takes over.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
    allow(dead_code)
)]
const PREFETCH_MAX: u64 = 16 << 20;

impl Source for LocalSource {
    type Reader = crate::blocking::BlockingFile;

    async fn list(&self) -> Result<Listing, SourceError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_blocking(&root))
            .await
            .map_err(|e| SourceError::Unavailable {
                root: self.root.display().to_string(),
                message: format!("listing stopped: {e}"),
            })?
    }

    async fn open(&self, path: &str, offset: u64) -> Result<Self::Reader, SourceError> {
        let full = self.full(path);
        let file = crate::blocking::blocking(|| {
            let mut file = open_regular(&full, path)?;
            if offset > 0 {
                std::io::Seek::seek(&mut file, SeekFrom::Start(offset))
                    .map_err(|e| io_error(path, e))?;
            }
            Ok::<_, SourceError>(file)
        })?;
        Ok(crate::blocking::BlockingFile::new(file))
    }

    /// Asks the kernel to read ahead up to 16 MiB of a file that is next in line, from
    /// where its next part starts (`posix_fadvise(WILLNEED)` starts the reads and
    /// returns), so a worker that opens it finds it in the page cache instead of waiting
    /// on the disk. Outside a tokio runtime, or for nothing to read, it does nothing.
    fn prefetch(&self, path: &str, offset: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        if let (Some(len), Ok(runtime)) = (
            std::num::NonZeroU64::new(len.min(PREFETCH_MAX)),
            tokio::runtime::Handle::try_current(),
        ) {
            let (full, path) = (self.full(path), path.to_owned());
            runtime.spawn_blocking(move || {
                if let Ok(file) = open_regular(&full, &path) {
                    let _ =
                        rustix::fs::fadvise(&file, offset, Some(len), rustix::fs::Advice::WillNeed);
                }
            });
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        let _ = (path, offset, len);
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let md = tokio::fs::symlink_metadata(self.full(path))
            .await
            .map_err(|e| io_error(path, e))?;
        if !md.is_file() {
            return Err(SourceError::Changed {
                path: path.into(),
                detail: "is no longer a regular file".into(),
            });
        }
        Ok(entry_from(path.to_owned(), &md))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `full` on a thread of its own and says whether it was refused, failing the
    /// test (rather than hanging it) if the open blocks.
    #[cfg(unix)]
    fn refused_promptly(full: PathBuf) -> bool {
        let (done, opened) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(open_regular(&full, "file").is_err()));
        opened
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the open blocked")
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_symlink_swapped_in_after_listing_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("pipe"), b"was a file").unwrap();
        std::fs::write(root.join("link"), b"was a file").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside the root").unwrap();
        let source = LocalSource::new(&root);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(source.list()).unwrap().files.len(), 2);

        std::fs::remove_file(root.join("pipe")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::remove_file(root.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();

        for path in ["pipe", "link"] {
            // Reads and read-ahead hints both open through open_regular.
            assert!(refused_promptly(root.join(path)), "{path} opened");
            match rt.block_on(source.open(path, 0)) {
                Err(SourceError::Changed { path: p, detail }) => {
                    assert_eq!(p, path);
                    let expected = if path == "pipe" {
                        "is no longer a regular file"
                    } else {
                        "is now a symbolic link"
                    };
                    assert_eq!(detail, expected);
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}
