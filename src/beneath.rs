//! Folders and files beneath a root folder, reached one component at a time through
//! directory handles and never through a symbolic link: how the local source reads and
//! how a restore writes, so that a folder swapped for a link at any moment cannot lead
//! either outside its root.
//!
//! A path is never resolved through a link. The root is opened once, as the user named it;
//! below it each folder is opened from its parent's handle with `O_NOFOLLOW` (on Linux
//! through `openat2` with `RESOLVE_BENEATH`, by cap-std), so a link in its place is
//! refused instead of followed, and the files in it are then opened, created, renamed and
//! removed relative to that handle. A folder that is replaced after its handle was opened
//! does not redirect anything: the handle still names the folder that was there. On Linux
//! a file that is only read is opened in one call instead ([`open_fast`]: `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, which refuses a link in any component).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt};
pub use cap_std::fs::Dir;

/// Opens the root folder itself as the user named it (a link in that path is the user's
/// own choice and is followed), readable, so it can be listed and synced.
pub fn open_root(path: &Path) -> io::Result<Dir> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32)
            .open(path)?;
        Ok(Dir::from_std_file(file))
    }
    #[cfg(not(unix))]
    {
        Dir::open_ambient_dir(path, cap_std::ambient_authority())
    }
}

/// Opens the folder `name` in `dir`, refusing a symbolic link (and anything that is not a
/// folder), readable so it can be listed and synced.
pub fn open_child_dir(dir: &Dir, name: &OsStr) -> io::Result<Dir> {
    let mut options = cap_std::fs::OpenOptions::new();
    options
        .read(true)
        .follow(FollowSymlinks::No)
        .maybe_dir(true);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::DIRECTORY.bits() as i32);
    }
    let file = dir.open_with(name, &options)?;
    if !file.metadata()?.is_dir() {
        return Err(io::Error::from(io::ErrorKind::NotADirectory));
    }
    Ok(Dir::from_std_file(file.into_std()))
}

/// What an entry of a folder is, looked at without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing of that name.
    Missing,
    /// A symbolic link.
    Link,
    /// A folder.
    Dir,
    /// A regular file.
    File,
    /// Something else (FIFO, socket, device).
    Other,
}

/// Looks at `name` in `dir` without following a link.
pub fn kind(dir: &Dir, name: &OsStr) -> io::Result<Kind> {
    match dir.symlink_metadata(name) {
        Ok(md) => {
            let ft = md.file_type();
            Ok(if ft.is_symlink() {
                Kind::Link
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else {
                Kind::Other
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Kind::Missing),
        Err(e) => Err(e),
    }
}

/// Why a walk down to a folder stopped, with the index of the component it stopped at.
#[derive(Debug)]
pub enum Blocked {
    /// That component is a symbolic link.
    Link(usize),
    /// That component is not a folder.
    NotDir(usize),
    /// That component does not exist (and the walk was not to create it).
    Missing(usize),
    /// That component could not be opened or created.
    Io(usize, io::Error),
}

impl Blocked {
    /// The index of the component the walk stopped at.
    pub fn at(&self) -> usize {
        match self {
            Blocked::Link(i) | Blocked::NotDir(i) | Blocked::Missing(i) | Blocked::Io(i, _) => *i,
        }
    }
}

/// Opens the folder `names` (one component each) beneath `dir`, one at a time, never
/// following a link; with `create`, missing folders are made. No names: `dir` again.
pub fn open_dir(dir: &Dir, names: &[OsString], create: bool) -> Result<Dir, Blocked> {
    let mut current: Option<Dir> = None;
    for (i, name) in names.iter().enumerate() {
        let parent = current.as_ref().unwrap_or(dir);
        let next = match open_child_dir(parent, name) {
            Ok(next) => next,
            Err(e) => match kind(parent, name) {
                Ok(Kind::Missing) if create => {
                    match parent.create_dir(name) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(Blocked::Io(i, e)),
                    }
                    // Opened like any other: what is there now may be a link already.
                    open_child_dir(parent, name).map_err(|e| blocked(parent, name, i, e))?
                }
                // Made since the attempt (restores make folders side by side): open it.
                Ok(Kind::Dir) if e.kind() == io::ErrorKind::NotFound => {
                    open_child_dir(parent, name).map_err(|e| blocked(parent, name, i, e))?
                }
                _ => return Err(blocked(parent, name, i, e)),
            },
        };
        current = Some(next);
    }
    match current {
        Some(d) => Ok(d),
        None => dir.try_clone().map_err(|e| Blocked::Io(0, e)),
    }
}

/// Why `name` in `parent` could not be opened as a folder.
fn blocked(parent: &Dir, name: &OsStr, i: usize, e: io::Error) -> Blocked {
    match kind(parent, name) {
        Ok(Kind::Missing) => Blocked::Missing(i),
        // Missing when it was opened, made since (restores make folders side by side).
        Ok(Kind::Dir) if e.kind() == io::ErrorKind::NotFound => Blocked::Missing(i),
        Ok(Kind::Link) => Blocked::Link(i),
        Ok(Kind::File | Kind::Other) => Blocked::NotDir(i),
        Ok(Kind::Dir) | Err(_) => Blocked::Io(i, e),
    }
}

/// What [`open_fast`] opens a file as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// To read, without waiting on a FIFO (`O_RDONLY | O_NONBLOCK`).
    Read,
    /// Only to look at (`O_PATH`): `fstat` it.
    Look,
}

/// Opens the file at `names` beneath `dir` in one `openat2` call that refuses a link in
/// any component, `..` and absolute paths (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and
/// a link as the file itself (`O_NOFOLLOW`; with [`Fast::Look`] the link itself is
/// opened, for the caller to see). `None` on any error or where the call is missing (Linux
/// before 5.6, a seccomp filter, other systems): the caller then walks with [`open_dir`],
/// which also says precisely what is in the way.
pub fn open_fast(dir: &Dir, names: &[OsString], how: Fast) -> Option<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        use std::sync::atomic::{AtomicBool, Ordering};

        use rustix::fs::{Mode, OFlags, ResolveFlags};
        static MISSING: AtomicBool = AtomicBool::new(false);
        if MISSING.load(Ordering::Relaxed) {
            return None;
        }
        let mut path = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
        }
        let flags = OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | match how {
                Fast::Read => OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
                Fast::Look => OFlags::PATH,
            };
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dir, path.as_slice(), flags, Mode::empty(), resolve) {
            Ok(fd) => Some(std::fs::File::from(fd)),
            Err(rustix::io::Errno::NOSYS) => {
                MISSING.store(true, Ordering::Relaxed);
                None
            }
            Err(_) => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, names, how);
        None
    }
}

/// Flushes a folder's entries (new names, renames) to the disk; nothing to do where
/// folders cannot be synced.
pub fn sync(dir: &Dir) -> io::Result<()> {
    #[cfg(unix)]
    rustix::fs::fsync(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn names(p: &[&str]) -> Vec<OsString> {
        p.iter().map(OsString::from).collect()
    }

    #[test]
    fn walks_down_creates_and_refuses_links_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("a/b")).unwrap();
        std::fs::write(root_path.join("a/file"), b"x").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("a/link")).unwrap();
        let root = open_root(&root_path).unwrap();

        let b = open_dir(&root, &names(&["a", "b"]), false).unwrap();
        b.write("new", b"in b").unwrap();
        assert_eq!(std::fs::read(root_path.join("a/b/new")).unwrap(), b"in b");
        assert!(matches!(
            open_dir(&root, &names(&["a", "link", "x"]), true),
            Err(Blocked::Link(1))
        ));
        assert!(matches!(
            open_dir(&root, &names(&["a", "file", "x"]), true),
            Err(Blocked::NotDir(1))
        ));
        assert!(matches!(
            open_dir(&root, &names(&["a", "none", "x"]), false),
            Err(Blocked::Missing(1))
        ));
        assert!(!root_path.join("a/none").exists());
        let made = open_dir(&root, &names(&["a", "n", "m"]), true).unwrap();
        sync(&made).unwrap();
        assert!(root_path.join("a/n/m").is_dir());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(kind(&root, OsStr::new("a")).unwrap(), Kind::Dir);
        let a = open_dir(&root, &names(&["a"]), false).unwrap();
        assert_eq!(kind(&a, OsStr::new("link")).unwrap(), Kind::Link);
        assert_eq!(kind(&a, OsStr::new("file")).unwrap(), Kind::File);
        assert_eq!(kind(&a, OsStr::new("gone")).unwrap(), Kind::Missing);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_one_call_open_refuses_a_link_anywhere() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("a/b")).unwrap();
        std::fs::write(root_path.join("a/b/f"), b"inside").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"outside").unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("a/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root_path.join("a/b/flink")).unwrap();
        let root = open_root(&root_path).unwrap();
        let mut f = open_fast(&root, &names(&["a", "b", "f"]), Fast::Read).unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut f, &mut got).unwrap();
        assert_eq!(got, "inside");
        assert!(open_fast(&root, &names(&["a", "link", "f"]), Fast::Read).is_none());
        assert!(open_fast(&root, &names(&["a", "b", "flink"]), Fast::Read).is_none());
        assert!(
            open_fast(
                &root,
                &names(&["a", "..", "..", "outside", "f"]),
                Fast::Read
            )
            .is_none()
        );
        // Looking at a link opens the link itself, which says what it is.
        let look = open_fast(&root, &names(&["a", "b", "flink"]), Fast::Look).unwrap();
        assert!(look.metadata().unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_handle_keeps_naming_its_folder_after_a_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("d")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let root = open_root(&root_path).unwrap();
        let d = open_dir(&root, &names(&["d"]), false).unwrap();
        std::fs::rename(root_path.join("d"), root_path.join("d.aside")).unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("d")).unwrap();
        d.write("f", b"still inside").unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(
            std::fs::read(root_path.join("d.aside/f")).unwrap(),
            b"still inside"
        );
    }
}
