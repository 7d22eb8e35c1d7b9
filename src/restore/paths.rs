//! Which catalog paths a restore takes ([`Selection`]: globs), and where each lands: a
//! catalog is untrusted input, so every target is checked to stay inside the restore
//! folder, one component at a time, never following a symbolic link.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::RestoreError;
use crate::source::is_clean_relative;
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

/// Refuses a catalog path that is not a clean relative path.
pub(crate) fn check_relative(rel: &str) -> Result<(), String> {
    if is_clean_relative(rel) {
        return Ok(());
    }
    Err(format!(
        "refused {rel:?}: not a clean relative path (absolute, or an empty, `.` or `..` \
         component, a backslash or NUL); nothing was written for it"
    ))
}

/// Walks the folders of `rel` under `root` one component at a time with
/// `symlink_metadata` (links are never followed), creating missing ones when `create`,
/// and returns the target path. Refuses a link or a file where a folder should be.
pub(crate) fn target(root: &Path, rel: &str, create: bool) -> Result<PathBuf, String> {
    check_relative(rel)?;
    let (parents, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    let mut dir = root.to_path_buf();
    let mut shown = String::new();
    for c in parents.split('/').filter(|c| !c.is_empty()) {
        dir.push(c);
        if !shown.is_empty() {
            shown.push('/');
        }
        shown.push_str(c);
        let mut created = false;
        loop {
            match std::fs::symlink_metadata(&dir) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(format!(
                        "refused: {shown} in the restore folder is a symbolic link, and \
                         nothing is written through links; move it away to restore {rel}"
                    ));
                }
                Ok(md) if md.is_dir() => break,
                Ok(_) => {
                    return Err(format!(
                        "{shown} in the restore folder is a file where {rel} needs a folder"
                    ));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && !create => {
                    // Nothing further down exists: nothing can be in the way.
                    return Ok(root.join(rel));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && !created => {
                    created = true;
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(format!("cannot create the folder {shown}: {e}"));
                        }
                    }
                }
                Err(e) => return Err(format!("cannot examine {shown}: {e}")),
            }
        }
    }
    Ok(dir.join(name))
}

/// What is at a target path already.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing.
    Absent,
    /// A regular file of the same size and modification time: restored already.
    Same,
    /// Something else, described.
    Other(String),
}

/// Looks at `path` without following a link. A folder in the way is an error.
pub(crate) fn existing(path: &Path, size: u64, mtime: Timestamp) -> Result<Existing, String> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(format!("cannot examine {}: {e}", path.display())),
    };
    let ft = md.file_type();
    if ft.is_dir() {
        return Err(format!(
            "a folder is in the way at {}; move it to restore the file",
            path.display()
        ));
    }
    if ft.is_symlink() {
        return Ok(Existing::Other("a symbolic link".into()));
    }
    if !ft.is_file() {
        return Ok(Existing::Other("not a regular file".into()));
    }
    let modified = md.modified().ok().map(crate::time::from_system);
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

    #[test]
    fn targets_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("to");
        std::fs::create_dir(&root).unwrap();
        for bad in ["../escape", "/abs", "a/../../b", "", "a//b", "a\\..\\b"] {
            let e = target(&root, bad, true).unwrap_err();
            assert!(e.contains("refused"), "{bad}: {e}");
        }
        let t = target(&root, "a/b/c.txt", true).unwrap();
        assert_eq!(t, root.join("a/b/c.txt"));
        assert!(root.join("a/b").is_dir());
        // Not creating: a missing folder ends the walk.
        assert_eq!(target(&root, "n/m/f", false).unwrap(), root.join("n/m/f"));
        assert!(!root.join("n").exists());
        // A file where a folder should be.
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(
            target(&root, "file/x", true)
                .unwrap_err()
                .contains("file where")
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_root_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("to"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
        for create in [true, false] {
            let e = target(&root, "a/link/sub/f", create).unwrap_err();
            assert!(e.contains("a/link") && e.contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // The final name being a link is "something else" (replaced only with --overwrite).
        let now = crate::time::now();
        assert!(matches!(
            existing(&root.join("a/link"), 0, now).unwrap(),
            Existing::Other(_)
        ));
        assert!(existing(&root.join("a"), 0, now).is_err());
        assert_eq!(
            existing(&root.join("none"), 0, now).unwrap(),
            Existing::Absent
        );
    }
}
