//! Folders that must not overlap: a local store and its local source, and a restore target
//! and its store. Compared by where they really are (symbolic links and `..` resolved), so
//! the same folder given by two spellings is still the same folder.
//!
//! Storing a folder into itself destroys data in plain mode (a part written under a
//! source file's name replaces it), and a store inside the source would store itself again
//! on every run; restoring into the store could overwrite its parts.

use std::path::{Component, Path, PathBuf};

/// How two folders overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlap {
    /// They are the same folder.
    Same,
    /// The first lies inside the second.
    Inside,
    /// The second lies inside the first, at this relative path (`/`-separated).
    Contains(String),
}

/// Where `path` really is: its canonical form if it exists; otherwise the canonical form of
/// its nearest existing ancestor with the rest appended (a store not created yet, a restore
/// target to be made). Relative paths are taken from the current folder.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut rest = Vec::new();
    let mut cursor = absolute.as_path();
    loop {
        if let Ok(real) = cursor.canonicalize() {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return normalize(&out);
        }
        match (cursor.file_name(), cursor.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                cursor = parent;
            }
            _ => return normalize(&absolute),
        }
    }
}

/// Drops `.` and folds `..` lexically (only in the part of a path that does not exist yet,
/// where no link can make that wrong).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// How `a` and `b` overlap, if they do.
pub fn overlap(a: &Path, b: &Path) -> Option<Overlap> {
    let (a, b) = (resolve(a), resolve(b));
    if a == b {
        return Some(Overlap::Same);
    }
    if a.starts_with(&b) {
        return Some(Overlap::Inside);
    }
    let rest = b.strip_prefix(&a).ok()?;
    // As a key (docs/state.md, "Path keys"), to be matched against the listing's keys.
    let parts: Vec<String> = rest
        .components()
        .map(|c| {
            crate::source::key::from_os(c.as_os_str())
                .unwrap_or_else(|| c.as_os_str().to_string_lossy().into_owned())
        })
        .collect();
    Some(Overlap::Contains(parts.join("/")))
}

/// Refuses a restore target that is a local store or lies inside it: restored files would
/// land among (and could replace) the store's parts.
pub fn check_restore_target(store: &Path, to: &Path) -> Result<(), String> {
    match overlap(to, store) {
        Some(Overlap::Same) | Some(Overlap::Inside) => Err(format!(
            "--to {} is inside the store {}: restored files would land among its parts; \
             restore into a folder outside the store (nothing was written)",
            to.display(),
            store.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_folder_are_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        assert_eq!(overlap(&src, &src.join("sub/..")), Some(Overlap::Same));
        assert_eq!(overlap(&src, &src.join("./")), Some(Overlap::Same));
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&src, &link).unwrap();
            assert_eq!(overlap(&src, &link), Some(Overlap::Same));
            assert_eq!(overlap(&link.join("sub"), &src), Some(Overlap::Inside));
        }
    }

    #[test]
    fn inside_and_containing_folders_are_told_apart_even_before_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        assert_eq!(
            overlap(&src, &src.join("backup/store")),
            Some(Overlap::Contains("backup/store".into()))
        );
        assert_eq!(overlap(&src.join("x/y"), &src), Some(Overlap::Inside));
        assert_eq!(overlap(&src, &dir.path().join("srcx")), None);
        assert_eq!(overlap(&src, &dir.path().join("other/../srcx")), None);
        assert_eq!(
            overlap(&dir.path().join("new/../src"), &src),
            Some(Overlap::Same)
        );
    }

    /// The store's place inside the source is a key, as the listing's paths are.
    #[cfg(unix)]
    #[test]
    fn a_store_inside_is_named_by_its_key() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"back\\up \xe9");
        assert_eq!(
            overlap(&src, &src.join(odd).join("store")),
            Some(Overlap::Contains("back\\\\up \\xe9/store".into()))
        );
    }
}
