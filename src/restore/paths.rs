//! Which catalog paths a restore takes ([`Selection`]: globs), and where each lands: a
//! catalog is untrusted input, so every path must be a clean [key](crate::source::key),
//! and its folders are opened beneath the restore folder one component at a time through
//! handles ([`crate::beneath`]), never following a symbolic link, so that nothing is
//! written outside even if a folder is swapped for a link while the restore works.

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::RestoreError;
use crate::beneath::{self, Blocked, Dir};
use crate::report::shown;
use crate::source::key;
use crate::time::Timestamp;

/// Globs over relative paths (`photos/**`, `**/*.jpg`, `notes.txt`), as in
/// `--include`: `*` stays within one folder, `**` crosses folders. A pattern that matches
/// a folder selects everything under it (`photos` is `photos/**` too). No pattern selects
/// everything.
#[derive(Debug, Clone)]
pub struct Selection {
    set: Option<GlobSet>,
    patterns: Vec<String>,
}

impl Selection {
    /// Builds a selection; errors name the bad pattern.
    pub fn new<P: AsRef<str>>(patterns: &[P]) -> Result<Self, RestoreError> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.as_ref().to_owned()).collect();
        if patterns.is_empty() {
            return Ok(Selection {
                set: None,
                patterns,
            });
        }
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            let mut glob = p.trim_start_matches("./").trim_end_matches('/');
            if glob.is_empty() || glob == "." {
                glob = "**";
            }
            let built = globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .or_else(|_| Glob::new(glob))
                .map_err(|e| RestoreError::Pattern {
                    pattern: p.clone(),
                    message: e.to_string(),
                })?;
            b.add(built);
        }
        let set = b.build().map_err(|e| RestoreError::Pattern {
            pattern: patterns.join(" "),
            message: e.to_string(),
        })?;
        Ok(Selection {
            set: Some(set),
            patterns,
        })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `path` (or a folder it is in) matches; marks in `hits` (one flag per
    /// pattern) every pattern that matched.
    pub fn matches(&self, path: &str, hits: &mut [bool]) -> bool {
        let Some(set) = &self.set else { return true };
        let mut found = Vec::new();
        let mut any = false;
        let ends = path
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(path.len()));
        for end in ends {
            set.matches_into(&path[..end], &mut found);
            for &i in &found {
                hits[i] = true;
                any = true;
            }
        }
        any
    }
}

/// Refuses a catalog path that is not a clean relative path (or, off Unix, a name this
/// platform cannot create); returns its components.
pub(crate) fn check_relative(rel: &str) -> Result<Vec<OsString>, String> {
    key::components(rel).map_err(|why| {
        format!(
            "refused {}: {why}; nothing was written for it",
            shown(&format!("{rel:?}"))
        )
    })
}

/// Where a file lands: the folder it goes into, opened beneath the restore folder
/// without following a link, and its name there.
pub(crate) struct Place {
    /// The folder, by handle: everything written for the file goes through it.
    pub dir: Arc<Dir>,
    /// The folder's key (`""` for the restore folder itself).
    pub folder: String,
    /// The file's name in it.
    pub name: OsString,
}

/// Walks the folders of `rel` beneath `root` one component at a time through handles
/// ([`crate::beneath`]: a link is never followed, at any moment), creating missing ones
/// when `create`. `Ok(None)` when not creating and a folder is missing (so nothing can be
/// in the way). Refuses a link or a file where a folder should be.
pub(crate) fn target(root: &Dir, rel: &str, create: bool) -> Result<Option<Place>, String> {
    let mut names = check_relative(rel)?;
    let name = names.pop().expect("a clean key has a component");
    let parts: Vec<&str> = rel.split('/').collect();
    let folder = parts[..parts.len() - 1].join("/");
    match beneath::open_dir(root, &names, create) {
        Ok(dir) => Ok(Some(Place {
            dir: Arc::new(dir),
            folder,
            name,
        })),
        Err(Blocked::Missing(_)) if !create => Ok(None),
        Err(b) => {
            let at = shown(&parts[..=b.at()].join("/")).into_owned();
            let rel = shown(rel);
            Err(match b {
                Blocked::Link(_) => format!(
                    "refused: {at} in the restore folder is a symbolic link, and nothing is \
                     written through links; move it away to restore {rel}"
                ),
                Blocked::NotDir(_) => {
                    format!("{at} in the restore folder is a file where {rel} needs a folder")
                }
                Blocked::Missing(_) => format!("the folder {at} vanished while it was made"),
                Blocked::Io(_, e) if create => format!("cannot create the folder {at}: {e}"),
                Blocked::Io(_, e) => format!("cannot examine {at}: {e}"),
            })
        }
    }
}

/// What is at a target already.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing.
    Absent,
    /// A regular file of the same size and modification time: restored already.
    Same,
    /// Something else, described.
    Other(String),
}

/// Looks at `name` in `dir` without following a link (`shown` names it in messages). A
/// folder in the way is an error.
pub(crate) fn existing(
    dir: &Dir,
    name: &OsStr,
    shown: &str,
    size: u64,
    mtime: Timestamp,
) -> Result<Existing, String> {
    let md = match dir.symlink_metadata(name) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(format!("cannot examine {shown}: {e}")),
    };
    let ft = md.file_type();
    if ft.is_dir() {
        return Err(format!(
            "a folder is in the way at {shown}; move it to restore the file"
        ));
    }
    if ft.is_symlink() {
        return Ok(Existing::Other("a symbolic link".into()));
    }
    if !ft.is_file() {
        return Ok(Existing::Other("not a regular file".into()));
    }
    let modified = md
        .modified()
        .ok()
        .map(|t| crate::time::from_system(t.into_std()));
    if md.len() == size && modified == Some(mtime) {
        return Ok(Existing::Same);
    }
    Ok(Existing::Other(format!(
        "a different file ({} bytes, modified {})",
        md.len(),
        modified.map_or_else(|| "at an unknown time".into(), |m| m.to_string())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(p: &[&str]) -> Selection {
        Selection::new(p).unwrap()
    }

    #[test]
    fn globs_select_files_and_folders() {
        let s = sel(&["photos", "**/*.txt", "a/*.bin", "./x/"]);
        let mut hits = vec![false; 4];
        assert!(s.matches("photos/2024/a.jpg", &mut hits));
        assert!(s.matches("photos", &mut hits));
        assert!(!s.matches("photos2/a.jpg", &mut hits));
        assert!(s.matches("deep/er/notes.txt", &mut hits));
        assert!(s.matches("a/f.bin", &mut hits));
        assert!(!s.matches("a/b/f.bin", &mut hits), "* stays in one folder");
        assert_eq!(hits, [true, true, true, false]);
        assert!(s.matches("x/y", &mut hits));
        assert!(hits[3]);
        let all = sel(&[]);
        assert!(all.matches("anything/at/all", &mut []));
        assert!(matches!(
            Selection::new(&["a/[b"]),
            Err(RestoreError::Pattern { .. })
        ));
    }

    /// The path a place stands for, for comparing.
    fn path_of(root: &std::path::Path, p: &Place) -> std::path::PathBuf {
        root.join(&p.folder).join(&p.name)
    }

    #[test]
    fn targets_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("to");
        std::fs::create_dir(&root).unwrap();
        let handle = beneath::open_root(&root).unwrap();
        for bad in [
            "../escape",
            "/abs",
            "a/../../b",
            "",
            "a//b",
            "a\\..\\b",
            "\\x41",
        ] {
            let e = target(&handle, bad, true).err().unwrap();
            assert!(e.contains("refused"), "{bad}: {e}");
        }
        let t = target(&handle, "a/b/c.txt", true).unwrap().unwrap();
        assert_eq!(path_of(&root, &t), root.join("a/b/c.txt"));
        assert_eq!(t.folder, "a/b");
        assert!(root.join("a/b").is_dir());
        // Not creating: a missing folder ends the walk.
        assert!(target(&handle, "n/m/f", false).unwrap().is_none());
        assert!(!root.join("n").exists());
        // A file where a folder should be.
        std::fs::write(root.join("file"), b"x").unwrap();
        let e = target(&handle, "file/x", true).err().unwrap();
        assert!(e.contains("file where"), "{e}");
        // At the root itself.
        let t = target(&handle, "top", false).unwrap().unwrap();
        assert_eq!((t.folder.as_str(), t.name.to_str()), ("", Some("top")));
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_root_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("to"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
        let handle = beneath::open_root(&root).unwrap();
        for create in [true, false] {
            let e = target(&handle, "a/link/sub/f", create).err().unwrap();
            assert!(e.contains("a/link") && e.contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // The final name being a link is "something else" (replaced only with --overwrite).
        let now = crate::time::now();
        let a = target(&handle, "a/x", false).unwrap().unwrap();
        assert!(matches!(
            existing(&a.dir, OsStr::new("link"), "a/link", 0, now).unwrap(),
            Existing::Other(_)
        ));
        assert!(existing(&handle, OsStr::new("a"), "a", 0, now).is_err());
        assert_eq!(
            existing(&handle, OsStr::new("none"), "none", 0, now).unwrap(),
            Existing::Absent
        );
    }
}
