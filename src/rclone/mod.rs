//! rclone, shared by the rclone source and the rclone store: one long-lived `rclone rcd`
//! per run ([`Rcd`]), spoken to over HTTP on 127.0.0.1, and what both sides need to make
//! sense of rclone's answers (the failure kinds, masking inline secrets).
//!
//! - [`rcd`]: starting, restarting and stopping the `rclone rcd` process, and its remote
//!   control API (JSON calls, ranged object reads through `--rc-serve`, streamed uploads
//!   through `operations/uploadfile`).
//! - [`reader`]: an object's bytes from an offset, read in windows through `--rc-serve`.
//!
//! A file costs requests, not processes: listing, stat, reads, writes, copies and deletes
//! all go through the one process, which keeps each remote's connections open between
//! requests (rclone's own cache of remotes).

pub mod rcd;
pub mod reader;

use std::ffi::OsString;
use std::path::PathBuf;

pub use rcd::{RcError, Rcd};

/// The environment variable naming the rclone binary (default `rclone`, found on `PATH`).
pub const BINARY_ENV: &str = "TGFERRY_RCLONE";

/// How to run rclone: the binary and the variables set for it on top of the inherited
/// environment. Sources and stores with the same settings share one [`Rcd`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcloneConfig {
    /// The binary.
    pub binary: PathBuf,
    /// Variables set for rclone (e.g. `RCLONE_CONFIG`), on top of this process's own.
    pub env: Vec<(String, OsString)>,
}

impl RcloneConfig {
    /// The binary named by `TGFERRY_RCLONE` (default `rclone`), no extra variables.
    pub fn from_env() -> Self {
        let binary = std::env::var_os(BINARY_ENV)
            .filter(|b| !b.is_empty())
            .map_or_else(|| PathBuf::from("rclone"), PathBuf::from);
        RcloneConfig {
            binary,
            env: Vec::new(),
        }
    }

    /// The value rclone sees for an environment variable.
    pub fn var(&self, key: &str) -> Option<OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os(key))
    }
}

/// The kinds of failure rclone reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The binary could not be run.
    NoBinary,
    /// The remote's name is not in the config.
    NotConfigured,
    /// The config is encrypted and no password was given.
    ConfigLocked,
    /// Credentials refused.
    Auth,
    /// Permission denied.
    Denied,
    /// The path does not exist.
    NotFound,
    /// A folder was expected and a file found.
    IsFile,
    /// The remote is out of space or over its quota.
    Full,
    /// Connection trouble, timeouts, server errors: may pass.
    Transient,
    /// Anything else.
    Other,
}

/// A remote as rclone spells it (`nas:photos`, `:sftp,host=h,pass=XXX:dir`), with the
/// inline secrets it carries, so that messages can mask them.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The remote as rclone takes it.
    pub fs: String,
    secrets: Vec<String>,
}

impl Remote {
    /// The remote `fs`.
    pub fn new(fs: &str) -> Self {
        Remote {
            fs: fs.to_owned(),
            secrets: secrets_of(fs),
        }
    }

    /// The remote's name (`nas` of `nas:photos`; the backend for connection strings).
    pub fn name(&self) -> String {
        let r = self.fs.strip_prefix(':').unwrap_or(&self.fs);
        r.split([':', ',']).next().unwrap_or_default().to_owned()
    }

    /// Whether the remote is a connection string (`:sftp,...:dir`), not a configured name.
    pub fn is_inline(&self) -> bool {
        self.fs.starts_with(':')
    }

    /// The rclone path of a file: the remote joined with a relative path.
    pub fn target(&self, rel: &str) -> String {
        let r = &self.fs;
        if r.ends_with(':') || r.ends_with('/') {
            format!("{r}{rel}")
        } else {
            format!("{r}/{rel}")
        }
    }

    /// `text` with the remote's inline secrets masked.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for s in &self.secrets {
            text = text.replace(s.as_str(), "***");
        }
        text
    }

    /// The backend type (`sftp`, `googlephotos`, ...) where it can be told without asking
    /// rclone: from a connection string, or from `RCLONE_CONFIG_<NAME>_TYPE`.
    pub fn known_type(&self, config: &RcloneConfig) -> Option<String> {
        if self.is_inline() {
            return Some(self.name());
        }
        let var = format!("RCLONE_CONFIG_{}_TYPE", self.name().to_uppercase());
        config
            .var(&var)
            .and_then(|v| v.into_string().ok())
            .filter(|t| !t.is_empty())
    }

    /// The message for a remote that is not configured, with the ways to configure it.
    pub fn not_configured(&self, msg: &str) -> String {
        let name = self.name();
        let var = name.to_uppercase();
        let env_safe =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let rename = if env_safe {
            String::new()
        } else {
            " (a remote defined by environment variables needs a name of letters, digits and \
             _ only)"
                .to_owned()
        };
        format!(
            "the rclone remote {name:?} is not configured ({msg}): create it with `rclone \
             config`, or define it in the environment, e.g. from CI secrets: \
             RCLONE_CONFIG_{var}_TYPE=sftp, RCLONE_CONFIG_{var}_HOST=..., \
             RCLONE_CONFIG_{var}_USER=..., RCLONE_CONFIG_{var}_PASS=<the output of `rclone \
             obscure PASSWORD`>{rename} (docs/rclone.md)"
        )
    }
}

/// Log lines without their date and time, and without chatter (NOTICE, INFO, DEBUG).
pub(crate) fn log_lines(log: &str) -> impl Iterator<Item = &str> {
    log.lines().filter_map(|line| {
        let line = strip_log_time(line.trim());
        let chatter = ["NOTICE:", "INFO  :", "INFO :", "DEBUG :", "DEBUG:"]
            .iter()
            .any(|p| line.starts_with(p));
        (!line.is_empty() && !chatter).then_some(line)
    })
}

/// `2026/11/22 04:22:22 ERROR : ...` -> `ERROR : ...`.
fn strip_log_time(line: &str) -> &str {
    let b = line.as_bytes();
    let looks_dated = b.len() > 20
        && b[4] == b'/'
        && b[7] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b' ';
    if looks_dated { &line[20..] } else { line }
}

/// The gist of an rclone message: `Failed to lsjson with 2 errors: last error was: error
/// in ListJSON: directory not found` -> `directory not found`.
pub(crate) fn tidy(line: &str) -> &str {
    let mut s = line.trim();
    loop {
        let before = s;
        for p in [
            "ERROR : ",
            "CRITICAL: ",
            "error in ListJSON: ",
            "NewFs: ",
            "failed to make Fs: ",
            "failed to find object: ",
        ] {
            s = s.strip_prefix(p).unwrap_or(s);
        }
        if let Some(rest) = s.strip_prefix("Failed to create file system for \"") {
            if let Some(i) = rest.find("\": ") {
                s = &rest[i + 3..];
            }
        } else if s.starts_with("Failed to ") {
            if let Some(i) = s.find(": last error was: ") {
                s = &s[i + ": last error was: ".len()..];
            } else if let Some(i) = s.find(": ") {
                s = &s[i + 2..];
            }
        }
        if s == before {
            return s;
        }
    }
}

/// Sorts a failure by rclone's exit code (`None` for an rc answer or a killed process)
/// and its message.
pub(crate) fn classify(code: Option<i32>, text: &str) -> Class {
    let t = text.to_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if any(&["didn't find section in config file"]) {
        return Class::NotConfigured;
    }
    if any(&[
        "unable to decrypt configuration",
        "rclone_config_pass",
        "configuration is encrypted",
        "couldn't decrypt",
    ]) {
        return Class::ConfigLocked;
    }
    if any(&[
        "unable to authenticate",
        "authentication failed",
        "unauthorized",
        "login incorrect",
        "invalid_grant",
        "invalid credentials",
        "signaturedoesnotmatch",
        "invalidaccesskeyid",
        "token expired",
        "couldn't fetch token",
        ": 530 ",
    ]) {
        return Class::Auth;
    }
    if any(&[
        "no space left",
        "quota exceeded",
        "quotaexceeded",
        "insufficient storage",
        "insufficient_storage",
        "storage quota",
        "over quota",
        "507 ",
        ": 552 ",
        "disk full",
    ]) {
        return Class::Full;
    }
    if any(&[
        "permission denied",
        "forbidden",
        "access denied",
        "accessdenied",
    ]) {
        return Class::Denied;
    }
    if any(&["is a file not a directory"]) {
        return Class::IsFile;
    }
    if matches!(code, Some(3 | 4))
        || any(&[
            "not found",
            "no such file",
            "no such directory",
            "doesn't exist",
            "does not exist",
            "nosuchkey",
            "nosuchbucket",
            ": 550 ",
        ])
    {
        return Class::NotFound;
    }
    if code == Some(5)
        || (code.is_none() && t.is_empty())
        || any(&[
            "connection refused",
            "connection reset",
            "connection lost",
            "connection closed",
            "broken pipe",
            "timeout",
            "timed out",
            "eof",
            "temporary",
            "try again",
            "too many requests",
            "internal server error",
            "bad gateway",
            "service unavailable",
            "gateway timeout",
            "no route to host",
            "network is unreachable",
            "host is down",
            "tls handshake",
            "use of closed network connection",
            "context canceled",
            ": 421 ",
            ": 425 ",
            ": 426 ",
        ])
    {
        return Class::Transient;
    }
    Class::Other
}

/// Values of inline secrets in a connection string (`:sftp,host=h,pass=XXX:dir`), so that
/// messages can mask them.
pub(crate) fn secrets_of(remote: &str) -> Vec<String> {
    let body = remote.strip_prefix(':').unwrap_or(remote);
    let mut params = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for ch in body.chars() {
        match quote {
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                cur.push(ch);
            }
            None => match ch {
                '\'' | '"' => {
                    quote = Some(ch);
                    cur.push(ch);
                }
                ',' => params.push(std::mem::take(&mut cur)),
                ':' => break,
                _ => cur.push(ch),
            },
        }
    }
    params.push(cur);
    let mut secrets = Vec::new();
    for p in params.iter().skip(1) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let k = k.trim().to_lowercase();
        let sensitive = ["pass", "secret", "token", "key", "credential", "sas_url"]
            .iter()
            .any(|s| k.contains(s));
        if sensitive && v.len() >= 3 {
            secrets.push(v.to_owned());
            let unquoted = v.trim_matches(|c| c == '\'' || c == '"');
            if unquoted != v && unquoted.len() >= 3 {
                secrets.push(unquoted.to_owned());
            }
        }
    }
    // Longest first, so a secret inside another is not half-masked.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_rclone_complaints() {
        let cases: &[(Option<i32>, &str, Class)] = &[
            (
                Some(1),
                "Failed to create file system for \"nosuch:path\": didn't find section in config file",
                Class::NotConfigured,
            ),
            (
                None,
                "failed to make Fs: didn't find section in config file (\"nosuch\")",
                Class::NotConfigured,
            ),
            (
                Some(1),
                "NewFs: couldn't connect SSH: ssh: handshake failed: ssh: unable to authenticate",
                Class::Auth,
            ),
            (
                Some(1),
                "error in ListJSON: couldn't list files: Unauthorized: 401 Unauthorized",
                Class::Auth,
            ),
            (
                Some(1),
                "NewFs: failed to make FTP connection to \"127.0.0.1:2121\": 530 Authentication failed.",
                Class::Auth,
            ),
            (
                Some(3),
                "Failed to lsjson: directory not found",
                Class::NotFound,
            ),
            (
                None,
                "failed to find object: object not found",
                Class::NotFound,
            ),
            (
                Some(1),
                "Failed to lsjson: 501 No such directory.",
                Class::NotFound,
            ),
            (Some(1), "open /x: permission denied", Class::Denied),
            (None, "write /x: no space left on device", Class::Full),
            (None, "QuotaExceeded: over the bucket's quota", Class::Full),
            (
                Some(1),
                "Failed to backend: is a file not a directory",
                Class::IsFile,
            ),
            (
                Some(1),
                "couldn't connect SSH: dial tcp 127.0.0.1:18029: connect: connection refused",
                Class::Transient,
            ),
            (Some(1), "Failed to cat: unexpected EOF", Class::Transient),
            (Some(1), "last error was: connection lost", Class::Transient),
            (Some(1), "503 Service Unavailable", Class::Transient),
            (None, "", Class::Transient),
            (Some(5), "something odd", Class::Transient),
            (Some(1), "something odd", Class::Other),
            (None, "something odd", Class::Other),
        ];
        for (code, text, want) in cases {
            assert_eq!(classify(*code, text), *want, "{text}");
        }
    }

    #[test]
    fn messages_are_tidied() {
        for (line, want) in [
            (
                "Failed to lsjson with 2 errors: last error was: error in ListJSON: directory not found",
                "directory not found",
            ),
            (
                "Failed to create file system for \":sftp,host=h,url='a: b'\": NewFs: couldn't connect SSH: x",
                "couldn't connect SSH: x",
            ),
            ("Failed to cat: unexpected EOF", "unexpected EOF"),
            (
                "failed to find object: object not found",
                "object not found",
            ),
            (
                "ERROR : a.txt: Failed to open: 416",
                "a.txt: Failed to open: 416",
            ),
        ] {
            assert_eq!(tidy(line), want);
        }
    }

    #[test]
    fn log_lines_drop_time_and_chatter() {
        let log = "2026/11/22 04:22:00 NOTICE: Config file \"/x\" not found - using defaults\n\
                   2026/11/22 04:22:33 ERROR : : error listing: directory not found\n";
        let lines: Vec<_> = log_lines(log).collect();
        assert_eq!(lines, ["ERROR : : error listing: directory not found"]);
    }

    #[test]
    fn connection_string_secrets_are_found_and_masked() {
        let s = secrets_of(":sftp,host=127.0.0.1,user=u,pass=SECRETobscured,port=22:dir");
        assert_eq!(s, ["SECRETobscured"]);
        let s = secrets_of("nas,pass='quoted:value',key_file_pass=abc:photos");
        assert!(s.contains(&"'quoted:value'".to_string()), "{s:?}");
        assert!(s.contains(&"quoted:value".to_string()), "{s:?}");
        assert!(s.contains(&"abc".to_string()), "{s:?}");
        assert!(secrets_of("nas:photos").is_empty());
        let r = Remote::new(":s3,access_key_id=AKIA123,secret_access_key=shh-123:bucket");
        assert_eq!(
            r.redact(&format!("failed for {}", r.fs)),
            "failed for :s3,access_key_id=***,secret_access_key=***:bucket"
        );
    }

    #[test]
    fn targets_names_and_types() {
        let t = |r: &str| Remote::new(r).target("a/b.txt");
        assert_eq!(t("nas:"), "nas:a/b.txt");
        assert_eq!(t("nas:photos"), "nas:photos/a/b.txt");
        assert_eq!(t("nas:photos/"), "nas:photos/a/b.txt");
        assert_eq!(t(":sftp,host=h:"), ":sftp,host=h:a/b.txt");
        assert_eq!(Remote::new("my-nas:x").name(), "my-nas");
        assert_eq!(Remote::new(":ftp,host=h:x").name(), "ftp");
        let config = RcloneConfig {
            binary: "rclone".into(),
            env: vec![("RCLONE_CONFIG_GP_TYPE".into(), "googlephotos".into())],
        };
        assert_eq!(
            Remote::new("gp:album/x").known_type(&config).as_deref(),
            Some("googlephotos")
        );
        assert_eq!(
            Remote::new(":sftp,host=h:").known_type(&config).as_deref(),
            Some("sftp")
        );
        let msg = Remote::new("my_nas:x").not_configured("x");
        assert!(msg.contains("RCLONE_CONFIG_MY_NAS_TYPE"), "{msg}");
        assert!(!msg.contains("letters, digits"), "{msg}");
        let msg = Remote::new("my-nas:x").not_configured("x");
        assert!(msg.contains("letters, digits and _ only"), "{msg}");
    }
}
