//! The job's identity as the state records it: a local folder as its canonical absolute
//! path (so `photos`, `./photos/` and `/home/me/photos` are one job), a remote the way
//! the user gave it with trailing slashes dropped and inline secrets of rclone connection
//! strings masked, so that the state, the catalog and messages hold no password.
//!
//! States written before local paths were canonical record them as typed; [`same_place`]
//! still takes such a state as this job's (its identity is then rewritten in the
//! canonical form).

use std::path::{Path, PathBuf};

/// Whether a source or store names something other than a local folder.
fn is_remote(s: &str) -> bool {
    let t = s.trim();
    t.starts_with("rclone:") || t.starts_with("telegram:")
}

/// A source or store as recorded in the state: a local folder canonical (the longest part
/// of it that exists resolved, the rest appended), a remote with trailing slashes dropped
/// and secrets masked.
pub fn job_name(s: &str) -> String {
    let t = s.trim_end_matches('/');
    let t = if t.is_empty() { s } else { t };
    if t.starts_with("rclone:") {
        mask_secrets(t)
    } else if is_remote(t) {
        t.to_owned()
    } else {
        canonical(Path::new(s)).unwrap_or_else(|| t.to_owned())
    }
}

/// `path` made absolute with every link and `..` of its existing part resolved; the part
/// that does not exist yet (a store a first run creates) is appended as written. `None`
/// when nothing of it resolves or the rest holds `..`.
fn canonical(path: &Path) -> Option<String> {
    let mut base = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut found) = std::fs::canonicalize(&base) {
            for name in rest.iter().rev() {
                found.push(name);
            }
            return found.to_str().map(str::to_owned);
        }
        let (Some(parent), Some(name)) = (base.parent(), base.file_name()) else {
            return None;
        };
        rest.push(name.to_owned());
        base = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.to_owned()
        };
    }
}

/// Whether `recorded` (a source or store as a state or catalog records it) is the place
/// `wanted` ([`job_name`] of this run's flag) names: the same text, or a local path
/// recorded as typed by an earlier tgferry that resolves to the same folder.
pub fn same_place(recorded: &str, wanted: &str) -> bool {
    recorded == wanted
        || (!is_remote(recorded) && !is_remote(wanted) && job_name(recorded) == wanted)
}

/// Masks inline secrets of rclone connection strings (`:sftp,user=u,pass=XYZ:dir`), so the
/// job identity (kept in the state, the catalog and error messages) holds no password and
/// does not change when a password is obscured anew.
pub fn mask_secrets(s: &str) -> String {
    const SECRET_KEYS: [&str; 7] = [
        "pass",
        "password",
        "token",
        "key",
        "secret_access_key",
        "client_secret",
        "key_pem",
    ];
    let mut out = String::with_capacity(s.len());
    for (i, piece) in s.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        match piece.split_once('=') {
            Some((k, v)) if SECRET_KEYS.contains(&k.trim()) => {
                // The value runs to the next ',' or, for the last option, to the ':' that
                // starts the path.
                let tail = v.find(':').map(|at| &v[at..]).unwrap_or("");
                out.push_str(k);
                out.push_str("=***");
                out.push_str(tail);
            }
            _ => out.push_str(piece),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{job_name, mask_secrets, same_place};

    #[test]
    fn one_folder_by_any_path_is_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("photos")).unwrap();
        let want = root.join("photos").to_str().unwrap().to_owned();
        for spelling in [
            root.join("photos"),
            root.join("photos/"),
            root.join("./photos"),
            root.join("photos/../photos"),
            root.join("x/../photos"),
        ] {
            let s = spelling.to_str().unwrap();
            if s.contains("x/..") {
                // A missing folder before `..` cannot be resolved: kept as typed.
                assert_eq!(job_name(s), s);
                continue;
            }
            assert_eq!(job_name(s), want, "{s}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("photos"), root.join("link")).unwrap();
            assert_eq!(job_name(root.join("link").to_str().unwrap()), want);
        }
        // A store a first run creates: its existing part resolved, the rest appended.
        let store = root.join("photos/../new/store");
        assert_eq!(
            job_name(store.to_str().unwrap()),
            root.join("new/store").to_str().unwrap()
        );
        // Remotes are kept as written.
        assert_eq!(job_name("telegram:@chan"), "telegram:@chan");
        assert_eq!(job_name("rclone:nas:photos/"), "rclone:nas:photos");
    }

    #[test]
    fn a_path_recorded_as_typed_is_the_same_place() {
        let cwd = std::env::current_dir().unwrap();
        let here = job_name(".");
        assert_eq!(here, cwd.canonicalize().unwrap().to_str().unwrap());
        assert!(same_place(".", &here));
        assert!(same_place("./", &here));
        assert!(!same_place("./nonexistent-elsewhere", &here));
        assert!(!same_place("telegram:@a", "telegram:@b"));
        assert!(same_place("telegram:@a", "telegram:@a"));
    }

    #[test]
    fn inline_secrets_are_masked() {
        assert_eq!(
            mask_secrets("rclone::sftp,host=127.0.0.1,user=u,pass=AbC123:photos"),
            "rclone::sftp,host=127.0.0.1,user=u,pass=***:photos"
        );
        assert_eq!(
            mask_secrets("rclone::webdav,url=http,pass=x,vendor=other:d"),
            "rclone::webdav,url=http,pass=***,vendor=other:d"
        );
        assert_eq!(mask_secrets("rclone:nas:photos"), "rclone:nas:photos");
        assert_eq!(mask_secrets("/data/a=b,c"), "/data/a=b,c");
    }
}
