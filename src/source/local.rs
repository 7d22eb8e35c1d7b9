//! A local directory as a source: listing and reading through directory handles
//! ([`crate::beneath`]) with blocking calls in place (`crate::blocking`), and read-ahead
//! hints to the kernel for the files next in line.
//!
//! Nothing is ever reached through a symbolic link, at any moment: the listing walks
//! folders by handle (a folder swapped for a link between two steps is refused, not
//! entered), and every read or `stat` opens the file's folders again one component at a
//! time from the root's handle. Links found in the source are refused with a reason, like
//! sockets and devices. Names are kept exactly as [keys](super::key): on Unix any name a
//! file system holds (a backslash, bytes that are not UTF-8); elsewhere a name that is not
//! Unicode is refused per file.

use std::ffi::{OsStr, OsString};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt};

use super::{Listing, Source, SourceEntry, SourceError, key};
use crate::beneath::{self, Blocked, Dir, Kind};

/// A directory on a local file system.
#[derive(Debug, Clone)]
pub struct LocalSource {
    root: PathBuf,
    /// The root's handle, opened by the listing (or the first read) and kept, so every
    /// later read starts from the folder that was listed.
    dir: Arc<Mutex<Option<Arc<Dir>>>>,
}

impl LocalSource {
    /// A source rooted at `root` (checked when listing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalSource {
            root: root.into(),
            dir: Arc::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root's handle (blocking: opens it if nothing has yet).
    fn root_dir(&self) -> Result<Arc<Dir>, SourceError> {
        let mut dir = self.dir.lock().unwrap();
        if let Some(d) = &*dir {
            return Ok(d.clone());
        }
        let opened =
            Arc::new(
                beneath::open_root(&self.root).map_err(|e| SourceError::Unavailable {
                    root: self.root.display().to_string(),
                    message: format!("cannot be opened: {e}"),
                })?,
            );
        *dir = Some(opened.clone());
        Ok(opened)
    }

    /// The folder a file is in, opened beneath the root, and the file's name there
    /// (blocking).
    fn locate(&self, path: &str) -> Result<(Dir, OsString), SourceError> {
        let mut names = components(path)?;
        let name = names.pop().expect("a clean key has a component");
        let root = self.root_dir()?;
        let dir = beneath::open_dir(&root, &names, false).map_err(|b| blocked(path, b))?;
        Ok((dir, name))
    }

    /// Opens a listed file for reading (blocking): in one call where the system has it,
    /// else (or to say what is wrong) by walking its folders.
    fn open_file(&self, path: &str) -> Result<std::fs::File, SourceError> {
        let root = self.root_dir()?;
        if let Some(file) = beneath::open_fast(&root, &components(path)?, beneath::Fast::Read) {
            return checked_regular(file, path);
        }
        let (dir, name) = self.locate(path)?;
        open_regular(&dir, &name, path)
    }

    /// Looks at a listed file again (blocking), never through a link.
    fn look(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let root = self.root_dir()?;
        let found = beneath::open_fast(&root, &components(path)?, beneath::Fast::Look)
            .and_then(|file| file.metadata().ok());
        let (is_file, entry) = match found {
            Some(md) => (md.is_file(), entry_from_std(path, &md)),
            None => {
                let (dir, name) = self.locate(path)?;
                let md = dir.symlink_metadata(&name).map_err(|e| io_error(path, e))?;
                (md.is_file(), entry_from(path.to_owned(), &md))
            }
        };
        if !is_file {
            return Err(SourceError::Changed {
                path: path.into(),
                detail: "is no longer a regular file".into(),
            });
        }
        Ok(entry)
    }
}

/// A key's components, or the error that refuses it.
fn components(path: &str) -> Result<Vec<OsString>, SourceError> {
    key::components(path).map_err(|message| SourceError::Unreadable {
        path: path.into(),
        message,
    })
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

/// The error for a file whose folders could not be walked down to.
fn blocked(path: &str, b: Blocked) -> SourceError {
    let changed = |detail: &str| SourceError::Changed {
        path: path.into(),
        detail: detail.into(),
    };
    match b {
        Blocked::Link(_) => changed("a folder on its path is now a symbolic link"),
        Blocked::NotDir(_) => changed("a folder on its path is no longer a folder"),
        Blocked::Missing(_) => SourceError::Vanished { path: path.into() },
        Blocked::Io(_, e) => io_error(path, e),
    }
}

fn entry_from_std(path: &str, md: &std::fs::Metadata) -> SourceEntry {
    SourceEntry {
        path: path.to_owned(),
        size: md.len(),
        mtime: crate::time::from_system(md.modified().unwrap_or(std::time::UNIX_EPOCH)),
    }
}

/// The permission bits of a file or folder (Unix only).
fn mode_of(md: &cap_std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use cap_std::fs::MetadataExt;
        Some(md.mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        None
    }
}

fn entry_from(path: String, md: &cap_std::fs::Metadata) -> SourceEntry {
    let mtime = md
        .modified()
        .map(|t| t.into_std())
        .unwrap_or(std::time::UNIX_EPOCH);
    SourceEntry {
        path,
        size: md.len(),
        mtime: crate::time::from_system(mtime),
    }
}

/// Opens a listed file, `name` in the folder `dir`, for reading. What was a regular file
/// when listed may have been replaced since: a FIFO would block `open` until a writer
/// came (a CI job hung for good), a symbolic link in its place would be followed. So the
/// open does not wait (`O_NONBLOCK`) nor follow a link (`O_NOFOLLOW`), anything that is
/// not a regular file is refused, and on Unix the descriptor is then made blocking again
/// for the reads. (The folders above it were opened the same way: see [`beneath`].)
fn open_regular(dir: &Dir, name: &OsStr, path: &str) -> Result<std::fs::File, SourceError> {
    let changed = |now: &str| SourceError::Changed {
        path: path.into(),
        detail: format!("is {now}"),
    };
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No).nonblock(true);
    let file = match dir.open_with(name, &options) {
        Ok(file) => file.into_std(),
        Err(e) => {
            return Err(match beneath::kind(dir, name) {
                Ok(Kind::Link) => changed("now a symbolic link"),
                _ => io_error(path, e),
            });
        }
    };
    checked_regular(file, path)
}

/// Refuses an opened file that is not a regular file, and makes it blocking again.
fn checked_regular(file: std::fs::File, path: &str) -> Result<std::fs::File, SourceError> {
    let changed = |now: &str| SourceError::Changed {
        path: path.into(),
        detail: format!("is {now}"),
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

/// A folder still to be listed: its name in its parent (whose handle is kept only while
/// some of its folders wait), and its key.
struct Pending {
    parent: Arc<Dir>,
    name: OsString,
    key: String,
}

/// Lists `root` recursively (blocking), depth first in byte order of names, and returns
/// the root's handle with it.
/// Checks that `root` is a folder that can be looked at (blocking): a job checks its
/// source this way before it creates anything (a vault, a store, a state).
pub fn check_root(root: &Path) -> Result<(), SourceError> {
    let unavailable = |message: String| SourceError::Unavailable {
        root: root.display().to_string(),
        message,
    };
    match std::fs::metadata(root) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(unavailable(
            "is not a directory; --source takes a folder".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(unavailable(
            "does not exist; check --source (or TGFERRY_SOURCE)".into(),
        )),
        Err(e) => Err(unavailable(format!("cannot be read: {e}"))),
    }
}

fn list_blocking(root: &Path) -> Result<(Listing, Dir), SourceError> {
    let unavailable = |message: String| SourceError::Unavailable {
        root: root.display().to_string(),
        message,
    };
    check_root(root)?;
    let root_dir =
        beneath::open_root(root).map_err(|e| unavailable(format!("cannot be read: {e}")))?;
    let mut listing = Listing::default();
    let unreadable = |key: &str, e: std::io::Error| {
        (
            key.to_owned(),
            SourceError::Unreadable {
                path: key.to_owned(),
                message: e.to_string(),
            },
        )
    };
    let mut folders: Vec<(Arc<Dir>, String)> = vec![(
        Arc::new(
            root_dir
                .try_clone()
                .map_err(|e| unavailable(format!("cannot be read: {e}")))?,
        ),
        String::new(),
    )];
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let (dir, prefix) = match folders.pop() {
            Some(next) => next,
            None => match pending.pop() {
                None => break,
                Some(p) => match beneath::open_child_dir(&p.parent, &p.name) {
                    Ok(dir) => (Arc::new(dir), p.key),
                    // Listed as a folder, a link now: refused like any link, never entered.
                    Err(_) if beneath::kind(&p.parent, &p.name).ok() == Some(Kind::Link) => {
                        listing
                            .refused
                            .push((p.key, "symbolic link (links are not followed)".into()));
                        continue;
                    }
                    Err(e) => {
                        listing.errors.push(unreadable(&p.key, e));
                        continue;
                    }
                },
            },
        };
        let mut entries = match dir
            .entries()
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(entries) => entries,
            Err(e) if prefix.is_empty() => return Err(unavailable(format!("cannot be read: {e}"))),
            Err(e) => {
                listing.errors.push(unreadable(&prefix, e));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        if !prefix.is_empty()
            && let Ok(md) = dir.dir_metadata()
        {
            listing.folders.push(super::FolderEntry {
                path: prefix.clone(),
                mtime: crate::time::from_system(
                    md.modified()
                        .map(|t| t.into_std())
                        .unwrap_or(std::time::UNIX_EPOCH),
                ),
                mode: mode_of(&md),
                empty: entries
                    .iter()
                    .all(|e| e.file_name() == "." || e.file_name() == ".."),
            });
        }
        let mut subfolders = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let Some(component) = key::from_os(&name) else {
                let shown = format!("{prefix}{}", name.to_string_lossy());
                listing.refused.push((
                    shown,
                    "the name is not Unicode, which this platform cannot keep losslessly; \
                     rename it"
                        .into(),
                ));
                continue;
            };
            let key = if prefix.is_empty() {
                component
            } else {
                format!("{prefix}/{component}")
            };
            let mut ft = entry.file_type();
            // Some file systems do not say in the listing: ask without following a link.
            if ft
                .as_ref()
                .is_ok_and(|t| !t.is_dir() && !t.is_file() && !t.is_symlink())
            {
                ft = entry.metadata().map(|md| md.file_type());
            }
            let ft = match ft {
                Ok(ft) => ft,
                Err(e) => {
                    listing.errors.push(unreadable(&key, e));
                    continue;
                }
            };
            if ft.is_dir() {
                subfolders.push(Pending {
                    parent: dir.clone(),
                    name,
                    key,
                });
            } else if ft.is_symlink() {
                listing
                    .refused
                    .push((key, "symbolic link (links are not followed)".into()));
            } else if !ft.is_file() {
                listing
                    .refused
                    .push((key, "not a regular file (socket, device or pipe)".into()));
            } else if !super::is_clean_relative(&key) {
                listing.refused.push((
                    key,
                    "the name cannot be stored as a clean relative path".into(),
                ));
            } else {
                match entry.metadata() {
                    Ok(md) if md.is_file() => {
                        if let Some(mode) = mode_of(&md) {
                            listing.modes.insert(key.clone(), mode);
                        }
                        listing.files.push(entry_from(key, &md))
                    }
                    Ok(_) => listing
                        .refused
                        .push((key, "not a regular file (socket, device or pipe)".into())),
                    Err(e) => listing.errors.push(unreadable(&key, e)),
                }
            }
        }
        // Depth first, in name order: the first subfolder is listed next.
        pending.extend(subfolders.into_iter().rev());
    }
    Ok((listing, root_dir))
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
        let (listing, dir) = tokio::task::spawn_blocking(move || list_blocking(&root))
            .await
            .map_err(|e| SourceError::Unavailable {
                root: self.root.display().to_string(),
                message: format!("listing stopped: {e}"),
            })??;
        *self.dir.lock().unwrap() = Some(Arc::new(dir));
        Ok(listing)
    }

    async fn open(&self, path: &str, offset: u64) -> Result<Self::Reader, SourceError> {
        let file = crate::blocking::blocking(|| {
            let mut file = self.open_file(path)?;
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
            let (source, path) = (self.clone(), path.to_owned());
            runtime.spawn_blocking(move || {
                if let Ok(file) = source.open_file(&path) {
                    let _ =
                        rustix::fs::fadvise(&file, offset, Some(len), rustix::fs::Advice::WillNeed);
                }
            });
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        let _ = (path, offset, len);
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let (source, key) = (self.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || source.look(&key))
            .await
            .unwrap_or_else(|e| {
                Err(SourceError::Transient {
                    path: path.into(),
                    message: e.to_string(),
                })
            })
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
        std::thread::spawn(move || {
            let dir = beneath::open_root(full.parent().unwrap()).unwrap();
            done.send(open_regular(&dir, full.file_name().unwrap(), "file").is_err())
        });
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
