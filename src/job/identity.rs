//! The job's identity as the state records it: the source and store written the way the
//! user gave them, normalised (trailing slashes dropped) and with inline secrets of rclone
//! connection strings masked, so that the state, the catalog and messages hold no
//! password.

/// A source or store as recorded in the state: trailing slashes dropped, secrets masked.
pub fn job_name(s: &str) -> String {
    let t = s.trim_end_matches('/');
    let t = if t.is_empty() { s } else { t };
    if t.starts_with("rclone:") {
        mask_secrets(t)
    } else {
        t.to_owned()
    }
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
    use super::mask_secrets;

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
