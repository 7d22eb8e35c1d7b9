//! An rclone remote as a source: `--source rclone:REMOTE:PATH` reaches FTP, SFTP, WebDAV,
//! S3 and the cloud drives through the `rclone` binary (docs/rclone.md).
//!
//! - Listing runs `rclone lsjson -R --files-only --no-mimetype` (with `--hash` when the
//!   remote keeps hashes as metadata, so a listing never makes the server read every file)
//!   and parses it line by line, so a huge listing is never held as one JSON document.
//!   Transient listing failures are retried a few times (backon) before the run gives up.
//! - Reading streams `rclone cat --offset O --count N`: a part starts where it starts, so a
//!   large file resumes at its next part without downloading the earlier ones, and nothing
//!   is staged on local disk. With a read window (the part size) each `cat` stops at the
//!   part's end; a reader that goes past a window starts the next `cat` on its own.
//! - `stat` runs `rclone lsjson --stat` on the one file.
//!
//! rclone's failures are read from its exit status and its log on stderr and sorted into
//! [`SourceError`] kinds: a missing binary, an unconfigured remote, refused credentials and
//! a root that does not exist make the source [`SourceError::Unavailable`] with the fix in
//! the message; a vanished file is [`SourceError::Vanished`]; connection resets, timeouts,
//! 5xx answers and the like are [`SourceError::Transient`] and go through the runner's
//! backoff. A `cat` that fails after it has sent some bytes ends its reader with an I/O error
//! (not a short read), so the runner retries the part instead of taking the file as changed.
//! Secrets given inline in a connection string (`pass=`, `token=`, `key=`...) are masked in
//! every message.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{Listing, Source, SourceEntry, SourceError};
use crate::runner::RetryPolicy;
use crate::time::Timestamp;

/// The `--source` prefix that selects this source.
pub const PREFIX: &str = "rclone:";

/// The environment variable naming the rclone binary (default `rclone`, found on `PATH`).
pub const BINARY_ENV: &str = "TGFERRY_RCLONE";

/// rclone settings given to every rclone process unless the environment sets them: few
/// low-level retries, since the runner has its own backoff and a dead server should be
/// reported in seconds, not minutes.
const ENV_DEFAULTS: [(&str, &str); 1] = [("RCLONE_LOW_LEVEL_RETRIES", "3")];

/// Bytes of rclone's stderr kept for the error message.
const STDERR_KEEP: usize = 64 << 10;

/// The first read of a `cat`, done in `open` so that its errors keep their kind.
const PEEK: usize = 64 << 10;

/// An rclone remote (`nas:photos`, `:sftp,host=...:dir`) read through the rclone binary.
#[derive(Debug)]
pub struct RcloneSource {
    rc: Arc<Rclone>,
    window: Option<u64>,
    list_retry: RetryPolicy,
    known: Mutex<HashMap<String, Known>>,
}

/// What the last listing said about a file.
#[derive(Debug, Clone)]
struct Known {
    size: u64,
    hashes: BTreeMap<String, String>,
}

/// How to run rclone for one remote.
#[derive(Debug)]
struct Rclone {
    binary: PathBuf,
    remote: String,
    /// The source for messages (`rclone:REMOTE:PATH`, secrets masked).
    shown: String,
    secrets: Vec<String>,
    /// Variables set for rclone on top of the inherited environment.
    env: Vec<(String, std::ffi::OsString)>,
}

impl RcloneSource {
    /// The source for a `--source` value: `None` unless it starts with `rclone:`; an error
    /// message (naming the fix) when nothing follows the prefix.
    pub fn from_source(source: &str) -> Option<Result<Self, String>> {
        let remote = source.strip_prefix(PREFIX)?;
        if remote.trim().is_empty() {
            return Some(Err(format!(
                "--source {source:?} names no remote: write rclone:REMOTE:PATH, e.g. \
                 rclone:nas:photos (`rclone listremotes` shows the configured ones)"
            )));
        }
        Some(Ok(RcloneSource::new(remote)))
    }

    /// A source over `remote` as rclone spells it (`nas:photos`, `:ftp,host=...:dir`), run
    /// with the binary named by `TGFERRY_RCLONE` (default `rclone`).
    pub fn new(remote: &str) -> Self {
        let binary = std::env::var_os(BINARY_ENV)
            .filter(|b| !b.is_empty())
            .map_or_else(|| PathBuf::from("rclone"), PathBuf::from);
        let secrets = secrets_of(remote);
        let mut rc = Rclone {
            binary,
            remote: remote.to_owned(),
            shown: String::new(),
            secrets,
            env: Vec::new(),
        };
        rc.shown = rc.redact(&format!("{PREFIX}{remote}"));
        RcloneSource {
            rc: Arc::new(rc),
            window: None,
            list_retry: RetryPolicy::new(vec![
                Duration::from_secs(1),
                Duration::from_secs(3),
                Duration::from_secs(9),
            ]),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Uses this rclone binary.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        Arc::get_mut(&mut self.rc)
            .expect("not shared before the first read")
            .binary = binary.into();
        self
    }

    /// Reads in windows of `bytes` (the part size): each `rclone cat` gets `--count` so it
    /// stops at the part's end instead of reading ahead into the next one.
    pub fn with_read_window(mut self, bytes: u64) -> Self {
        self.window = (bytes > 0).then_some(bytes);
        self
    }

    /// Sets an environment variable for every rclone process this source starts (e.g.
    /// `RCLONE_CONFIG`, or a remote's `RCLONE_CONFIG_NAS_*`), without touching this
    /// process's environment.
    pub fn with_env(mut self, key: impl Into<String>, value: impl AsRef<std::ffi::OsStr>) -> Self {
        Arc::get_mut(&mut self.rc)
            .expect("not shared before the first read")
            .env
            .push((key.into(), value.as_ref().to_owned()));
        self
    }

    /// Waits between tries of a listing that failed transiently (default 1 s, 3 s, 9 s).
    pub fn with_list_retry(mut self, policy: RetryPolicy) -> Self {
        self.list_retry = policy;
        self
    }

    /// The remote as rclone spells it.
    pub fn remote(&self) -> &str {
        &self.rc.remote
    }

    /// The hashes the remote gave for `path` in the last listing (`md5`, `sha1`, ...;
    /// empty when the remote keeps none or computing them would read the file).
    pub fn hashes(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let known = self.known.lock().unwrap();
        known.get(path).map(|k| k.hashes.clone())
    }

    fn unavailable(&self, message: String) -> SourceError {
        SourceError::Unavailable {
            root: self.rc.shown.clone(),
            message,
        }
    }

    /// The error for a failure that concerns the whole source.
    fn root_error(&self, f: Failure) -> SourceError {
        let msg = f.message;
        let message = match f.class {
            Class::NoBinary => msg,
            Class::NotConfigured => {
                let name = self.rc.remote_name();
                let var = name.to_uppercase();
                let env_safe =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let rename = if env_safe {
                    String::new()
                } else {
                    " (a remote defined by environment variables needs a name of letters, \
                     digits and _ only)"
                        .to_owned()
                };
                format!(
                    "the rclone remote {name:?} is not configured ({msg}): create it with \
                     `rclone config`, or define it in the environment, e.g. from CI secrets: \
                     RCLONE_CONFIG_{var}_TYPE=sftp, RCLONE_CONFIG_{var}_HOST=..., \
                     RCLONE_CONFIG_{var}_USER=..., RCLONE_CONFIG_{var}_PASS=<the output of \
                     `rclone obscure PASSWORD`>{rename} (docs/rclone.md)"
                )
            }
            Class::ConfigLocked => format!(
                "the rclone config file is encrypted ({msg}): set RCLONE_CONFIG_PASS to its \
                 password"
            ),
            Class::Auth => format!(
                "the remote refused the credentials ({msg}): check the user, password, token \
                 or keys of the remote (passwords in the config or in RCLONE_CONFIG_*_PASS \
                 must be `rclone obscure`d)"
            ),
            Class::Denied => {
                format!("permission denied ({msg}): check that this account may read the path")
            }
            Class::NotFound => format!(
                "does not exist on the remote ({msg}): check the path after the remote name \
                 (`rclone lsf REMOTE:` lists the top level)"
            ),
            Class::IsFile => {
                "is a file, not a folder: --source takes a folder (rclone:REMOTE:FOLDER)".into()
            }
            Class::Transient => format!(
                "the remote could not be reached ({msg}): check that the server is up and \
                 reachable; the next run tries again"
            ),
            Class::Other => format!("rclone failed: {msg}"),
        };
        self.unavailable(message)
    }

    /// The error for a failure while reading or looking at one file.
    fn file_error(&self, path: &str, f: Failure) -> SourceError {
        match f.class {
            Class::NoBinary | Class::NotConfigured | Class::ConfigLocked | Class::Auth => {
                self.root_error(f)
            }
            Class::Denied => SourceError::Unreadable {
                path: path.to_owned(),
                message: f.message,
            },
            Class::NotFound => SourceError::Vanished {
                path: path.to_owned(),
            },
            Class::IsFile | Class::Transient | Class::Other => SourceError::Transient {
                path: path.to_owned(),
                message: f.message,
            },
        }
    }

    /// Whether listing should ask for hashes: only when the remote has some and keeps
    /// them as metadata (`SlowHash` remotes, like SFTP and local disks, would read every
    /// file on every listing).
    async fn cheap_hashes(&self) -> Result<bool, Failure> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Features {
            #[serde(default)]
            hashes: Vec<String>,
            #[serde(default)]
            features: HashMap<String, serde_json::Value>,
        }
        let out = self
            .rc
            .output(&["backend", "features", &self.rc.remote])
            .await?;
        let features: Features = serde_json::from_slice(&out).map_err(|e| Failure {
            class: Class::Other,
            message: format!("`rclone backend features` printed something unexpected: {e}"),
        })?;
        let slow = features
            .features
            .get("SlowHash")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        Ok(!features.hashes.is_empty() && !slow)
    }

    /// One listing attempt.
    async fn list_once(&self) -> Result<Listing, Failure> {
        let hash = self.cheap_hashes().await?;
        let mut args = vec!["lsjson", "-R", "--files-only", "--no-mimetype"];
        if hash {
            args.push("--hash");
        }
        args.push(&self.rc.remote);
        let mut child = self.rc.spawn(&args)?;
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut listing = Listing::default();
        let mut known = HashMap::new();
        let mut garbled = None;
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    garbled.get_or_insert(format!("unreadable listing output: {e}"));
                    break;
                }
            };
            let t = line.trim();
            let t = t.strip_suffix(',').unwrap_or(t);
            if t.is_empty() || t == "[" || t == "]" {
                continue;
            }
            match serde_json::from_str::<Item>(t) {
                Ok(item) => add_item(item, &mut listing, &mut known),
                Err(e) => {
                    garbled.get_or_insert(format!("unexpected listing line {t:?}: {e}"));
                }
            }
        }
        let status = child.wait().await.map_err(|e| Failure {
            class: Class::Transient,
            message: format!("waiting for rclone: {e}"),
        })?;
        let log = stderr.await.unwrap_or_default();
        if !status.success() {
            // Folders below the root that could not be listed fail on their own, like
            // unreadable folders of a local source; anything else fails the listing.
            let partial = folder_errors(&log);
            let failure = self.rc.failure(status, &log);
            match partial {
                Some(folders) if garbled.is_none() => {
                    for (dir, message) in folders {
                        let message = self.rc.redact(&message);
                        listing
                            .errors
                            .push((dir.clone(), SourceError::Unreadable { path: dir, message }));
                    }
                }
                _ => return Err(failure),
            }
        }
        if let Some(message) = garbled {
            return Err(Failure {
                class: Class::Other,
                message,
            });
        }
        listing.files.sort_by(|a, b| a.path.cmp(&b.path));
        *self.known.lock().unwrap() = known;
        Ok(listing)
    }
}

impl Source for RcloneSource {
    type Reader = RcloneReader;

    async fn list(&self) -> Result<Listing, SourceError> {
        use backon::Retryable;
        let mut tries = 1u32;
        let result = (|| self.list_once())
            .retry(self.list_retry.clone())
            .when(|f: &Failure| f.class == Class::Transient)
            .notify(|f: &Failure, wait: Duration| {
                tries += 1;
                tracing::warn!(
                    "listing {} failed ({}); trying again in {}",
                    self.rc.shown,
                    f.message,
                    crate::time::human_duration(wait)
                );
            })
            .await;
        result.map_err(|mut f| {
            if f.class == Class::Transient && tries > 1 {
                f.message = format!("{tries} tries, the last: {}", f.message);
            }
            self.root_error(f)
        })
    }

    async fn open(&self, path: &str, offset: u64) -> Result<RcloneReader, SourceError> {
        let end = self.known.lock().unwrap().get(path).map(|k| k.size);
        let mut reader = RcloneReader {
            rc: self.rc.clone(),
            target: self.rc.target(path),
            window: self.window,
            end,
            next: offset,
            count: None,
            delivered: 0,
            buf: Vec::new(),
            pos: 0,
            phase: Phase::Eof,
        };
        reader.start().await.map_err(|f| self.file_error(path, f))?;
        Ok(reader)
    }

    async fn stat(&self, path: &str) -> Result<SourceEntry, SourceError> {
        let target = self.rc.target(path);
        let out = self
            .rc
            .output(&["lsjson", "--stat", "--no-mimetype", &target])
            .await
            .map_err(|f| self.file_error(path, f))?;
        let item: Item = serde_json::from_slice(&out).map_err(|e| SourceError::Transient {
            path: path.to_owned(),
            message: format!("`rclone lsjson --stat` printed something unexpected: {e}"),
        })?;
        if item.is_dir {
            // Also what bucket-based remotes answer for a key that is gone.
            return Err(SourceError::Vanished {
                path: path.to_owned(),
            });
        }
        let size = u64::try_from(item.size).map_err(|_| SourceError::Unreadable {
            path: path.to_owned(),
            message: "the remote no longer knows its size".into(),
        })?;
        let mtime = parse_mtime(&item.mod_time).ok_or_else(|| SourceError::Unreadable {
            path: path.to_owned(),
            message: format!("unusable modification time {:?}", item.mod_time),
        })?;
        // Reads that follow (a retry after a change) go as far as the file does now.
        if let Some(k) = self.known.lock().unwrap().get_mut(path) {
            k.size = size;
        }
        Ok(SourceEntry {
            path: path.to_owned(),
            size,
            mtime,
        })
    }
}

/// One entry of `rclone lsjson`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    path: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    mod_time: String,
    #[serde(default)]
    is_dir: bool,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

fn parse_mtime(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

fn add_item(item: Item, listing: &mut Listing, known: &mut HashMap<String, Known>) {
    if item.is_dir {
        return;
    }
    // The remote's names are text; a backslash in one is escaped in its key.
    let path = super::key::from_text(&item.path).into_owned();
    if !super::is_clean_relative(&path) {
        listing.refused.push((
            path,
            "the name cannot be stored as a clean relative path".into(),
        ));
        return;
    }
    let Ok(size) = u64::try_from(item.size) else {
        listing.refused.push((
            path,
            "the remote does not know its size (e.g. a Google Docs document); export it \
             to a regular file first"
                .into(),
        ));
        return;
    };
    let Some(mtime) = parse_mtime(&item.mod_time) else {
        listing.refused.push((
            path,
            format!(
                "the remote gave no usable modification time ({:?})",
                item.mod_time
            ),
        ));
        return;
    };
    known.insert(
        path.clone(),
        Known {
            size,
            hashes: item.hashes,
        },
    );
    listing.files.push(SourceEntry { path, size, mtime });
}

/// For a listing that failed only in folders below the root: those folders and their
/// errors. `None` when the root failed or some error is not a folder's.
fn folder_errors(log: &str) -> Option<Vec<(String, String)>> {
    let mut folders = Vec::new();
    for line in log_lines(log) {
        let Some(rest) = line.strip_prefix("ERROR : ") else {
            continue;
        };
        let (dir, message) = rest.split_once(": error listing: ")?;
        if dir.is_empty() {
            return None;
        }
        let class = classify(Some(1), message);
        if matches!(class, Class::Transient | Class::Other | Class::Auth) {
            return None;
        }
        folders.push((dir.to_owned(), message.to_owned()));
    }
    (!folders.is_empty()).then_some(folders)
}

/// The kinds of failure rclone reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
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
    /// The source root is a file.
    IsFile,
    /// Connection trouble, timeouts, server errors: may pass.
    Transient,
    /// Anything else.
    Other,
}

/// A failed rclone command.
#[derive(Debug, Clone)]
struct Failure {
    class: Class,
    message: String,
}

/// Log lines without their date and time, and without chatter (NOTICE, INFO, DEBUG).
fn log_lines(log: &str) -> impl Iterator<Item = &str> {
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

/// The gist of an rclone log line: `Failed to lsjson with 2 errors: last error was: error
/// in ListJSON: directory not found` -> `directory not found`.
fn tidy(line: &str) -> &str {
    let mut s = line.trim();
    loop {
        let before = s;
        for p in ["ERROR : ", "CRITICAL: ", "error in ListJSON: ", "NewFs: "] {
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

/// Sorts a failure by rclone's exit code and log text.
fn classify(code: Option<i32>, text: &str) -> Class {
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
        || code.is_none()
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
fn secrets_of(remote: &str) -> Vec<String> {
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

impl Rclone {
    /// The remote's name (`nas` of `nas:photos`; the backend for connection strings).
    fn remote_name(&self) -> String {
        let r = self.remote.strip_prefix(':').unwrap_or(&self.remote);
        let name = r.split([':', ',']).next().unwrap_or_default();
        name.to_owned()
    }

    /// The rclone path of a file: the remote joined with a relative path.
    /// The remote path of a file, from its key (the name it stands for).
    fn target(&self, rel: &str) -> String {
        let rel = super::key::to_text(rel).unwrap_or(std::borrow::Cow::Borrowed(rel));
        let r = &self.remote;
        if r.ends_with(':') || r.ends_with('/') {
            format!("{r}{rel}")
        } else {
            format!("{r}/{rel}")
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for s in &self.secrets {
            text = text.replace(s.as_str(), "***");
        }
        text
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(args)
            // Never wait for a password on a terminal: CI has none.
            .arg("--ask-password=false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in ENV_DEFAULTS {
            if std::env::var_os(k).is_none() && !self.env.iter().any(|(e, _)| e == k) {
                c.env(k, v);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn spawn(&self, args: &[&str]) -> Result<Child, Failure> {
        self.command(args)
            .spawn()
            .map_err(|e| self.spawn_failure(e))
    }

    fn spawn_failure(&self, e: std::io::Error) -> Failure {
        let bin = self.binary.display();
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "rclone is not installed or not on PATH (tried {bin:?}): install it \
                 (apt-get install rclone, or the rclone.org install script), or set \
                 {BINARY_ENV} to the path of the rclone binary"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "{bin:?} cannot be run (permission denied): make it executable, or set \
                 {BINARY_ENV} to the path of the rclone binary"
            ),
            _ => format!("{bin:?} could not be started: {e}"),
        };
        Failure {
            class: Class::NoBinary,
            message,
        }
    }

    /// The failure of a finished rclone process.
    fn failure(&self, status: ExitStatus, log: &str) -> Failure {
        let lines: Vec<&str> = log_lines(log).collect();
        let text = lines.join("\n");
        let class = classify(status.code(), &text);
        let last = tidy(lines.last().copied().unwrap_or_default());
        let message = if last.is_empty() {
            format!("rclone exited with {status} and said nothing")
        } else {
            self.redact(last)
        };
        Failure { class, message }
    }

    /// Runs rclone to the end and returns its stdout.
    async fn output(&self, args: &[&str]) -> Result<Vec<u8>, Failure> {
        let child = self.spawn(args)?;
        let out = child.wait_with_output().await.map_err(|e| Failure {
            class: Class::Transient,
            message: format!("waiting for rclone: {e}"),
        })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failure(out.status, &String::from_utf8_lossy(&out.stderr)))
        }
    }
}

/// Reads a child's stderr on the side, keeping its tail.
fn collect_stderr(child: &mut Child) -> JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else {
            return String::new();
        };
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_KEEP {
                kept.drain(..kept.len() - STDERR_KEEP);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

type Finish = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// A running `rclone cat`.
struct Running {
    child: Child,
    stdout: ChildStdout,
    stderr: JoinHandle<String>,
}

/// Where a reader is.
enum Phase {
    /// A `cat` is running.
    Streaming(Box<Running>),
    /// Its output ended: waiting for its exit status.
    Finishing(Finish),
    /// Nothing more to read.
    Eof,
}

/// A file's bytes from an offset, streamed from `rclone cat`.
///
/// When rclone fails after sending some bytes the reader ends with an I/O error naming
/// rclone's complaint, never with a silent early end.
pub struct RcloneReader {
    rc: Arc<Rclone>,
    target: String,
    window: Option<u64>,
    /// The size the listing gave, if known: no `cat` starts at or past it.
    end: Option<u64>,
    /// Offset of the next byte the current (or next) `cat` delivers.
    next: u64,
    /// The current `cat`'s `--count`.
    count: Option<u64>,
    /// Bytes the current `cat` delivered.
    delivered: u64,
    /// Bytes read ahead by `open`.
    buf: Vec<u8>,
    pos: usize,
    phase: Phase,
}

impl std::fmt::Debug for RcloneReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcloneReader")
            .field("target", &self.rc.redact(&self.target))
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl RcloneReader {
    /// Starts the first `cat` and reads its first bytes, so that an error at the start
    /// (file gone, credentials refused) comes back with its kind.
    async fn start(&mut self) -> Result<(), Failure> {
        if !self.launch()? {
            return Ok(());
        }
        let Phase::Streaming(running) = &mut self.phase else {
            unreachable!("just launched");
        };
        let mut first = vec![0u8; PEEK];
        let n = running.stdout.read(&mut first).await.unwrap_or(0);
        if n > 0 {
            first.truncate(n);
            self.buf = first;
            self.pos = 0;
            self.delivered += n as u64;
            self.next += n as u64;
            return Ok(());
        }
        // Nothing came: the file is empty here, or rclone failed.
        match std::mem::replace(&mut self.phase, Phase::Eof) {
            Phase::Streaming(running) => {
                finish(self.rc.clone(), *running).await?;
                self.phase = Phase::Eof;
                Ok(())
            }
            _ => unreachable!(),
        }
    }

    /// Starts a `cat` at `next`; false when there is nothing left to read.
    fn launch(&mut self) -> Result<bool, Failure> {
        let left = self.end.map(|e| e.saturating_sub(self.next));
        if left == Some(0) {
            self.phase = Phase::Eof;
            return Ok(false);
        }
        // Not limited to the listed size: a file that grew since is read as it is now
        // (the runner notices the change), never cut short here.
        let count = self.window;
        let offset = self.next.to_string();
        let count_s = count.map(|c| c.to_string());
        let mut args = vec!["cat"];
        if self.next > 0 {
            args.extend(["--offset", &offset]);
        }
        if let Some(c) = &count_s {
            args.extend(["--count", c]);
        }
        args.push(&self.target);
        let mut child = self.rc.spawn(&args)?;
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        self.count = count;
        self.delivered = 0;
        self.phase = Phase::Streaming(Box::new(Running {
            child,
            stdout,
            stderr,
        }));
        Ok(true)
    }
}

/// Waits for a `cat` whose output ended; its failure if it failed.
async fn finish(rc: Arc<Rclone>, running: Running) -> Result<(), Failure> {
    let Running {
        mut child,
        stdout,
        stderr,
    } = running;
    drop(stdout);
    let status = child.wait().await.map_err(|e| Failure {
        class: Class::Transient,
        message: format!("waiting for rclone: {e}"),
    })?;
    let log = stderr.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(rc.failure(status, &log))
    }
}

fn io_error(f: Failure) -> std::io::Error {
    std::io::Error::other(format!("rclone cat failed: {}", f.message))
}

impl AsyncRead for RcloneReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.buf.len() {
                let n = out.remaining().min(this.buf.len() - this.pos);
                out.put_slice(&this.buf[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.buf.len() {
                    this.buf = Vec::new();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match &mut this.phase {
                Phase::Streaming(running) => {
                    let before = out.filled().len();
                    match Pin::new(&mut running.stdout).poll_read(cx, out) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            this.phase = Phase::Eof;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(())) => {
                            let n = (out.filled().len() - before) as u64;
                            if n > 0 || out.remaining() == 0 {
                                this.delivered += n;
                                this.next += n;
                                return Poll::Ready(Ok(()));
                            }
                            let Phase::Streaming(running) =
                                std::mem::replace(&mut this.phase, Phase::Eof)
                            else {
                                unreachable!()
                            };
                            this.phase =
                                Phase::Finishing(Box::pin(finish(this.rc.clone(), *running)));
                        }
                    }
                }
                Phase::Finishing(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(f)) => {
                        this.phase = Phase::Eof;
                        return Poll::Ready(Err(io_error(f)));
                    }
                    Poll::Ready(Ok(())) => {
                        this.phase = Phase::Eof;
                        // A full window: the file may go on past it.
                        let full = this.count.is_some_and(|c| c > 0 && this.delivered == c);
                        if !full {
                            return Poll::Ready(Ok(()));
                        }
                        match this.launch() {
                            Ok(true) => {}
                            Ok(false) => return Poll::Ready(Ok(())),
                            Err(f) => return Poll::Ready(Err(io_error(f))),
                        }
                    }
                },
                Phase::Eof => return Poll::Ready(Ok(())),
            }
        }
    }
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
                Some(1),
                "Failed to lsjson: 501 No such directory.",
                Class::NotFound,
            ),
            (Some(1), "open /x: permission denied", Class::Denied),
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
                "Failed to backend: didn't find section in config file",
                "didn't find section in config file",
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
                   2026/11/22 04:22:33 ERROR : : error listing: directory not found\n\
                   2026/11/22 04:22:33 Failed to lsjson with 2 errors: last error was: directory not found\n";
        let lines: Vec<_> = log_lines(log).collect();
        assert_eq!(
            lines,
            [
                "ERROR : : error listing: directory not found",
                "Failed to lsjson with 2 errors: last error was: directory not found"
            ]
        );
        assert_eq!(folder_errors(log), None, "the root failed");
        let sub = "2026/11/22 04:22:33 ERROR : private: error listing: permission denied\n\
                   2026/11/22 04:22:33 Failed to lsjson with 2 errors: last error was: permission denied\n";
        assert_eq!(
            folder_errors(sub),
            Some(vec![("private".into(), "permission denied".into())])
        );
    }

    #[test]
    fn connection_string_secrets_are_found() {
        let s = secrets_of(":sftp,host=127.0.0.1,user=u,pass=SECRETobscured,port=22:dir");
        assert_eq!(s, ["SECRETobscured"]);
        let s = secrets_of("nas,pass='quoted:value',key_file_pass=abc:photos");
        assert!(s.contains(&"'quoted:value'".to_string()), "{s:?}");
        assert!(s.contains(&"quoted:value".to_string()), "{s:?}");
        assert!(s.contains(&"abc".to_string()), "{s:?}");
        assert!(secrets_of("nas:photos").is_empty());
        let src = RcloneSource::new(":webdav,url='http://h:1',user=u,pass=hunter22:x");
        assert_eq!(
            src.rc.shown,
            "rclone::webdav,url='http://h:1',user=u,pass=***:x"
        );
    }

    #[test]
    fn targets_and_names() {
        let t = |r: &str| RcloneSource::new(r).rc.target("a/b.txt");
        assert_eq!(t("nas:"), "nas:a/b.txt");
        assert_eq!(t("nas:photos"), "nas:photos/a/b.txt");
        assert_eq!(t("nas:photos/"), "nas:photos/a/b.txt");
        assert_eq!(t(":sftp,host=h:"), ":sftp,host=h:a/b.txt");
        let back = RcloneSource::new("nas:").rc.target("a\\\\b.txt");
        assert_eq!(
            back, "nas:a\\b.txt",
            "a key's escaped backslash is one in the name"
        );
        assert_eq!(RcloneSource::new("my-nas:x").rc.remote_name(), "my-nas");
        let f = || Failure {
            class: Class::NotConfigured,
            message: "didn't find section in config file".into(),
        };
        let msg = RcloneSource::new("my_nas:x").root_error(f()).to_string();
        assert!(msg.contains("RCLONE_CONFIG_MY_NAS_TYPE"), "{msg}");
        assert!(!msg.contains("letters, digits"), "{msg}");
        let msg = RcloneSource::new("my-nas:x").root_error(f()).to_string();
        assert!(msg.contains("letters, digits and _ only"), "{msg}");
        assert_eq!(RcloneSource::new(":ftp,host=h:x").rc.remote_name(), "ftp");
        assert!(RcloneSource::from_source("/local/dir").is_none());
        assert!(RcloneSource::from_source("rclone:").unwrap().is_err());
        assert_eq!(
            RcloneSource::from_source("rclone:nas:photos")
                .unwrap()
                .unwrap()
                .remote(),
            "nas:photos"
        );
    }

    #[test]
    fn listing_items() {
        let mut listing = Listing::default();
        let mut known = HashMap::new();
        for line in [
            r#"{"Path":"a.txt","Name":"a.txt","Size":11,"ModTime":"2026-11-22T04:21:58.123456789+01:00","IsDir":false,"Hashes":{"md5":"5eb6"}}"#,
            r#"{"Path":"dir","Name":"dir","Size":-1,"ModTime":"2026-11-22T04:21:58Z","IsDir":true}"#,
            r#"{"Path":"doc","Name":"doc","Size":-1,"ModTime":"2026-11-22T04:21:58Z","IsDir":false}"#,
            r#"{"Path":"a/../b","Name":"b","Size":1,"ModTime":"2026-11-22T04:21:58Z","IsDir":false}"#,
            r#"{"Path":"c","Name":"c","Size":1,"ModTime":"","IsDir":false}"#,
        ] {
            add_item(
                serde_json::from_str(line).unwrap(),
                &mut listing,
                &mut known,
            );
        }
        assert_eq!(listing.files.len(), 1);
        let f = &listing.files[0];
        assert_eq!((f.path.as_str(), f.size), ("a.txt", 11));
        assert_eq!(f.mtime.to_string(), "2026-11-22T03:21:58.123456789Z");
        assert_eq!(known["a.txt"].hashes["md5"], "5eb6");
        let refused: Vec<_> = listing.refused.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(refused, ["doc", "a/../b", "c"]);
    }
}
