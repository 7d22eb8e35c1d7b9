//! The previous run's state artifact, found and downloaded through GitHub's REST API with
//! octocrab (DESIGN "GitHub Actions facts").
//!
//! Choosing: the repository's artifacts are listed by name
//! (`GET /repos/{o}/{r}/actions/artifacts?name=..&per_page=100&page=N`, into our own serde
//! types: octocrab's models break on null fields), and the newest (highest id) one that is
//! not expired, was made on the same branch, and by this repository rather than a fork is
//! taken. The run's conclusion does not matter: runs that spent their budget, timed out or
//! were cancelled carry the freshest state.
//!
//! Downloading: `GET .../artifacts/{id}/zip` answers with a redirect to blob storage, which
//! octocrab follows without the token. The body is a zip (from which only the state file and
//! its journal are taken, refusing any entry that would land outside the target) or, for an
//! artifact uploaded with `archive: false`, the state file itself. Sizes are capped, and
//! nothing large is held in memory: the download goes to a temp file beside the state, and
//! each entry is inflated straight into its own temp file, refused as soon as it passes
//! `--max-state-size` or the size its zip header declares (a zip bomb costs no memory).
//!
//! Every request is retried with backoff on network errors, 5xx answers and rate limits,
//! waiting as long as `Retry-After` or `x-ratelimit-reset` ask when that is within bounds.
//! The token is never printed: a server's message is shown only with every occurrence of
//! the token taken out, and error bodies are read up to 64 KiB.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where to look and what to take.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// REST API root, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api_url: String,
    /// `owner/name`.
    pub repository: String,
    /// The branch whose artifacts count.
    pub branch: String,
    /// The token (`GITHUB_TOKEN`), needing `actions: read`.
    pub token: Option<SecretString>,
    /// The artifact name.
    pub name: String,
    /// The local state file to write (its journal goes beside it).
    pub state_path: PathBuf,
    /// The largest download, and the largest file taken out of a zip.
    pub max_size: u64,
    /// How often and how long to retry.
    pub retry: RetryPolicy,
}

/// Retry bounds for API calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first backoff delay (doubling after that).
    pub min_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The longest single wait a rate limit may ask for; a longer one ends the fetch.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_retries: 5,
            max_wait: Duration::from_secs(300),
        }
    }
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The state (and its journal, when the artifact had one) was written.
    Found {
        /// The artifact's id.
        artifact_id: u64,
        /// The run that uploaded it.
        run_id: Option<u64>,
        /// When it was made.
        created_at: Option<String>,
        /// Whether a journal came with it.
        journal: bool,
    },
    /// No artifact of that name on this branch: a first run.
    NoArtifact,
    /// There were artifacts, but all have expired (or the chosen one answered 410).
    Expired {
        /// The newest expired one's id.
        artifact_id: u64,
    },
}

/// Errors fetching the state artifact.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A setting is missing or malformed.
    #[error("{0}")]
    Config(String),
    /// The API refused or failed, after retries where they help.
    #[error("GitHub API {what}: HTTP {status}: {message}{hint}")]
    Api {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The API could not be reached.
    #[error("GitHub API {what}: {message}")]
    Network {
        /// What was asked.
        what: String,
        /// The error.
        message: String,
    },
    /// A rate limit asks to wait longer than allowed.
    #[error(
        "GitHub API {what}: rate limited for {wait:?} more, longer than the {max:?} allowed; \
         try again later"
    )]
    RateLimited {
        /// What was asked.
        what: String,
        /// The wait asked for.
        wait: Duration,
        /// The longest wait allowed.
        max: Duration,
    },
    /// The artifact's content is refused.
    #[error("state artifact {artifact_id}: {message}; nothing was written")]
    BadArtifact {
        /// The artifact.
        artifact_id: u64,
        /// Why.
        message: String,
    },
    /// Writing the state failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// One page of `GET /repos/{o}/{r}/actions/artifacts`.
#[derive(Debug, Deserialize)]
struct ArtifactPage {
    #[serde(default)]
    total_count: u64,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

/// An artifact, with only the fields we use; every field may be null.
#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    /// Id; larger is newer.
    pub id: u64,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether it is gone.
    #[serde(default)]
    pub expired: Option<bool>,
    /// When it was made.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The run that made it.
    #[serde(default)]
    pub workflow_run: Option<WorkflowRun>,
}

/// The run an artifact came from.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    /// Run id.
    #[serde(default)]
    pub id: Option<u64>,
    /// The repository the run belongs to.
    #[serde(default)]
    pub repository_id: Option<u64>,
    /// The repository the run's code came from (a fork's id for fork pull requests).
    #[serde(default)]
    pub head_repository_id: Option<u64>,
    /// The branch.
    #[serde(default)]
    pub head_branch: Option<String>,
}

/// The outcome of choosing among listed artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The newest usable artifact's id.
    Use(u64),
    /// Only expired ones match; the newest of them.
    AllExpired(u64),
    /// None match.
    None,
}

/// Chooses the artifact by DESIGN's rules: exact name, same branch, this repository (not a
/// fork), not expired, newest id. The run's conclusion is not looked at.
pub fn choose(artifacts: &[Artifact], name: &str, branch: &str) -> Choice {
    let matching = artifacts.iter().filter(|a| {
        a.name.as_deref() == Some(name)
            && a.workflow_run.as_ref().is_some_and(|r| {
                r.head_branch.as_deref() == Some(branch)
                    && r.repository_id.is_some()
                    && r.head_repository_id == r.repository_id
            })
    });
    let (mut live, mut expired) = (None::<u64>, None::<u64>);
    for a in matching {
        let slot = if a.expired == Some(false) {
            &mut live
        } else {
            &mut expired
        };
        *slot = Some(slot.map_or(a.id, |v| v.max(a.id)));
    }
    match (live, expired) {
        (Some(id), _) => Choice::Use(id),
        (None, Some(id)) => Choice::AllExpired(id),
        (None, None) => Choice::None,
    }
}

/// One failed request, with what the server asked for.
#[derive(Debug)]
struct Attempt {
    status: Option<u16>,
    message: String,
    /// `Retry-After` or `x-ratelimit-reset`, when the server sent one.
    wait: Option<Duration>,
    retryable: bool,
}

/// Finds the state artifact and writes the state (and journal) to `cfg.state_path`.
pub async fn fetch(cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    let (owner, repo) = cfg
        .repository
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| {
            FetchError::Config(format!(
                "repository {:?} is not OWNER/NAME; set --repo or GITHUB_REPOSITORY",
                cfg.repository
            ))
        })?;
    if cfg.branch.is_empty() {
        return Err(FetchError::Config(
            "no branch: set --branch or GITHUB_REF_NAME".into(),
        ));
    }
    let crab = client(cfg)?;
    let name_q = form_encode(&cfg.name);
    let mut all = Vec::new();
    // At most 100 pages of 100: far more than the retention of a daily job ever keeps.
    for page in 1..=100u32 {
        let route = format!(
            "/repos/{owner}/{repo}/actions/artifacts?name={name_q}&per_page=100&page={page}"
        );
        let what = format!("listing artifacts named {:?} (page {page})", cfg.name);
        let body = get_bytes(&crab, &route, &what, cfg, 16 << 20, None)
            .await?
            .map_err(|(status, message)| api_error(&what, status, message))?;
        let page: ArtifactPage =
            serde_json::from_slice(&body).map_err(|e| FetchError::Network {
                what: what.clone(),
                message: format!("unexpected answer: {e}"),
            })?;
        let n = page.artifacts.len();
        all.extend(page.artifacts);
        if n < 100 || all.len() as u64 >= page.total_count {
            break;
        }
    }
    let id = match choose(&all, &cfg.name, &cfg.branch) {
        Choice::None => return Ok(Fetched::NoArtifact),
        Choice::AllExpired(id) => return Ok(Fetched::Expired { artifact_id: id }),
        Choice::Use(id) => id,
    };
    let chosen = all
        .iter()
        .find(|a| a.id == id)
        .expect("chosen from the list");
    let route = format!("/repos/{owner}/{repo}/actions/artifacts/{id}/zip");
    let what = format!("downloading artifact {id}");
    let download = TempPath::beside(&cfg.state_path, "download");
    match get_bytes(&crab, &route, &what, cfg, cfg.max_size, Some(&download)).await? {
        Ok(_) => {}
        Err((410, _)) => return Ok(Fetched::Expired { artifact_id: id }),
        Err((status, message)) => return Err(api_error(&what, status, message)),
    }
    let journal = install(&download, id, cfg)?;
    Ok(Fetched::Found {
        artifact_id: id,
        run_id: chosen.workflow_run.as_ref().and_then(|r| r.id),
        created_at: chosen.created_at.clone(),
        journal,
    })
}

fn client(cfg: &FetchConfig) -> Result<Octocrab, FetchError> {
    let mut b = Octocrab::builder()
        .base_uri(cfg.api_url.trim_end_matches('/'))
        .map_err(|e| FetchError::Config(format!("bad API URL {:?}: {e}", cfg.api_url)))?
        .set_connect_timeout(Some(Duration::from_secs(30)))
        .set_read_timeout(Some(Duration::from_secs(120)));
    if let Some(token) = &cfg.token {
        b = b.personal_token(token.expose_secret().to_owned());
    }
    b.build()
        .map_err(|e| FetchError::Config(format!("cannot set up the HTTP client: {e}")))
}

/// The most of an error answer's body that is read (for its message).
const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// GETs `route`, retrying what is worth retrying. `Ok(Err((status, message)))` is a final
/// non-success answer; a body over `limit` is an error. A successful body is returned in
/// memory, or written to `into` (then the returned bytes are empty).
async fn get_bytes(
    crab: &Octocrab,
    route: &str,
    what: &str,
    cfg: &FetchConfig,
    limit: u64,
    into: Option<&TempPath>,
) -> Result<Result<Vec<u8>, (u16, String)>, FetchError> {
    let policy = cfg.retry;
    let token = cfg.token.as_ref();
    let once = || async {
        let response = crab._get(route).await.map_err(|e| Attempt {
            status: None,
            message: redact(e.to_string(), token),
            wait: None,
            retryable: true,
        })?;
        let status = response.status().as_u16();
        let wait = wait_hint(response.headers());
        let success = (200..300).contains(&status);
        let mut sink = match into.filter(|_| success) {
            Some(path) => Sink::File(path.create().map_err(|e| Attempt {
                status: Some(status),
                message: format!("cannot write {}: {e}", path.0.display()),
                wait: None,
                retryable: false,
            })?),
            None => Sink::Memory(Vec::new()),
        };
        let cap = if success { limit } else { ERROR_BODY_LIMIT };
        let mut body = response.into_body();
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Attempt {
                status: Some(status),
                message: redact(format!("reading the answer: {e}"), token),
                wait: None,
                retryable: true,
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            got += data.len() as u64;
            if got > cap {
                if !success {
                    // Enough of an error body for its message.
                    break;
                }
                return Err(Attempt {
                    status: Some(status),
                    message: format!(
                        "larger than the {} cap (--max-state-size)",
                        crate::time::human_bytes(limit)
                    ),
                    wait: None,
                    retryable: false,
                });
            }
            sink.write(&data).map_err(|e| Attempt {
                status: Some(status),
                message: format!("cannot write the download: {e}"),
                wait: None,
                retryable: false,
            })?;
        }
        let body = sink.finish().map_err(|e| Attempt {
            status: Some(status),
            message: format!("cannot write the download: {e}"),
            wait: None,
            retryable: false,
        })?;
        if success {
            return Ok(Ok(body));
        }
        let message = redact(github_message(&body), token);
        let rate_limited = status == 429
            || (status == 403
                && (wait.is_some() || message.to_ascii_lowercase().contains("rate limit")));
        if status >= 500 || rate_limited {
            return Err(Attempt {
                status: Some(status),
                message,
                wait,
                retryable: true,
            });
        }
        Ok(Err((status, message)))
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_wait)
        .with_max_times(policy.max_retries)
        .with_jitter();
    let mut too_long = None;
    let result = once
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|a: &Attempt| a.retryable)
        .adjust(|a: &Attempt, delay| {
            let delay = delay?;
            match a.wait {
                Some(w) if w > policy.max_wait => {
                    too_long = Some(w);
                    None
                }
                Some(w) => Some(w.max(policy.min_delay)),
                None => Some(delay),
            }
        })
        .notify(|a: &Attempt, d| {
            eprintln!(
                "GitHub API {what}: {}{}; retrying in {:.1}s",
                a.status.map(|s| format!("HTTP {s}: ")).unwrap_or_default(),
                a.message,
                d.as_secs_f64()
            )
        })
        .await;
    match result {
        Ok(r) => Ok(r),
        Err(a) => {
            if let Some(wait) = too_long {
                return Err(FetchError::RateLimited {
                    what: what.to_owned(),
                    wait,
                    max: policy.max_wait,
                });
            }
            Err(match a.status {
                Some(status) => api_error(what, status, a.message),
                None => FetchError::Network {
                    what: what.to_owned(),
                    message: a.message,
                },
            })
        }
    }
}

/// Where a body goes: memory (API answers, error messages) or a temp file (a download).
enum Sink {
    Memory(Vec<u8>),
    File(std::io::BufWriter<std::fs::File>),
}

impl Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Memory(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            Sink::File(f) => f.write_all(data),
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Sink::Memory(v) => Ok(v),
            Sink::File(f) => f
                .into_inner()
                .map_err(|e| e.into_error())
                .map(|_| Vec::new()),
        }
    }
}

/// A temp file beside the state (`.<name>.<what>-<pid>`), removed when dropped unless
/// renamed into place.
struct TempPath(PathBuf);

impl TempPath {
    fn beside(state: &Path, what: &str) -> Self {
        let dir = match state.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = state.file_name().unwrap_or_default().to_string_lossy();
        TempPath(dir.join(format!(".{name}.{what}-{}", std::process::id())))
    }

    /// Creates (or truncates) the file, its folder first.
    fn create(&self) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
        if let Some(dir) = self.0.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(std::io::BufWriter::new(std::fs::File::create(&self.0)?))
    }

    /// Renames the file to `to`.
    fn persist(self, to: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.0, to)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `message` with every occurrence of the token replaced: a server (or a proxy) may echo
/// what it was sent, and messages are printed.
fn redact(message: String, token: Option<&SecretString>) -> String {
    match token.map(|t| t.expose_secret()) {
        Some(t) if !t.is_empty() && message.contains(t) => message.replace(t, "[token]"),
        _ => message,
    }
}

/// How long the server asks to wait: `Retry-After` seconds, else the time until
/// `x-ratelimit-reset` when `x-ratelimit-remaining` is 0.
fn wait_hint(h: &http::HeaderMap) -> Option<Duration> {
    let num = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if num("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = num("x-ratelimit-reset")
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
    }
    None
}

fn github_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        message: Option<String>,
    }
    serde_json::from_slice::<Msg>(body)
        .ok()
        .and_then(|m| m.message)
        .unwrap_or_else(|| {
            let s = String::from_utf8_lossy(body);
            s.chars().take(200).collect::<String>().trim().to_owned()
        })
}

fn api_error(what: &str, status: u16, message: String) -> FetchError {
    let hint = match status {
        401 => "; the token is missing or invalid (pass GITHUB_TOKEN)",
        403 => "; the token needs `permissions: actions: read`",
        404 => {
            "; check the repository name (GITHUB_REPOSITORY), the API URL and that the token can read it"
        }
        _ => "",
    };
    FetchError::Api {
        what: what.to_owned(),
        status,
        message,
        hint,
    }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Moves the downloaded state (and journal) into place beside `cfg.state_path`; returns
/// whether a journal came with it.
fn install(download: &TempPath, artifact_id: u64, cfg: &FetchConfig) -> Result<bool, FetchError> {
    let bad = |message: String| FetchError::BadArtifact {
        artifact_id,
        message,
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    let state_name = cfg
        .state_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| FetchError::Config("the state path has no file name".into()))?;
    let journal_name = format!("{state_name}.journal");
    let journal_path = crate::state::journal::journal_path(&cfg.state_path);
    let mut file = std::fs::File::open(&download.0).map_err(io(&download.0))?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut file, &mut head).map_err(io(&download.0))?;
    let head = &head[..n];
    let journal = if head == b"PK\x03\x04" || head == b"PK\x05\x06" {
        file.rewind().map_err(io(&download.0))?;
        let state_tmp = TempPath::beside(&cfg.state_path, "fetch");
        let journal_tmp = TempPath::beside(&journal_path, "fetch");
        let mut journal = false;
        let mut failed_write = None;
        extract_zip(
            file,
            &state_name,
            &journal_name,
            cfg.max_size,
            |which, reader| {
                let tmp = match which {
                    ArtifactEntry::State => &state_tmp,
                    ArtifactEntry::Journal => {
                        journal = true;
                        &journal_tmp
                    }
                };
                let mut out = tmp.create().inspect_err(|e| {
                    failed_write = Some((tmp.0.clone(), e.kind()));
                })?;
                std::io::copy(reader, &mut out)?;
                out.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
            },
        )
        .map_err(|e| match failed_write.take() {
            Some((path, kind)) => FetchError::Io {
                path,
                source: kind.into(),
            },
            None => bad(e),
        })?;
        state_tmp
            .persist(&cfg.state_path)
            .map_err(io(&cfg.state_path))?;
        if journal {
            journal_tmp
                .persist(&journal_path)
                .map_err(io(&journal_path))?;
        }
        journal
    } else {
        // `archive: false`: the body is the state file itself (capped while downloaded).
        drop(file);
        std::fs::rename(&download.0, &cfg.state_path).map_err(io(&cfg.state_path))?;
        false
    };
    if !journal {
        // A journal left from elsewhere must not be replayed onto this state.
        match std::fs::remove_file(&journal_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(FetchError::Io {
                    path: journal_path,
                    source,
                });
            }
        }
    }
    Ok(journal)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Which file of a state artifact a zip entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactEntry {
    /// The state file.
    State,
    /// Its journal.
    Journal,
}

/// Finds the state and journal in a zip archive and hands each, state first, to `take` as
/// a reader of its inflated bytes. Refused (the error says why): an unreadable archive, an
/// entry name that would land outside the target folder, no state; an entry whose header
/// declares more than `max` bytes (before anything is inflated), or that inflates to more
/// than `max` or than its header declares (`take` then sees a read error). The state is the
/// entry named like `state_name`, or else the only entry that is not a journal.
pub fn extract_zip<R: Read + Seek>(
    archive: R,
    state_name: &str,
    journal_name: &str,
    max: u64,
    mut take: impl FnMut(ArtifactEntry, &mut dyn Read) -> std::io::Result<()>,
) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(archive).map_err(|e| format!("not a readable zip: {e}"))?;
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("not a readable zip: {e}"))?;
        let raw = entry
            .name()
            .map_err(|e| format!("bad entry name in the zip: {e}"))?
            .into_owned();
        let unsafe_name = raw.starts_with('/')
            || raw.starts_with('\\')
            || raw.contains(':')
            || raw.split(['/', '\\']).any(|c| c == "..")
            || entry.enclosed_name().is_none();
        if unsafe_name {
            return Err(format!(
                "entry {raw:?} would be written outside the target folder; refused"
            ));
        }
        if !entry.is_dir() {
            names.push((i, raw));
        }
    }
    let base = |n: &str| n.rsplit('/').next().unwrap_or(n).to_owned();
    let state_idx = names
        .iter()
        .find(|(_, n)| base(n) == state_name)
        .map(|(i, _)| *i)
        .or_else(|| {
            let others: Vec<_> = names
                .iter()
                .filter(|(_, n)| !n.ends_with(".journal"))
                .collect();
            (others.len() == 1).then(|| others[0].0)
        })
        .ok_or_else(|| {
            format!(
                "no {state_name} in the archive (it holds: {})",
                names
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let state_entry_name = names
        .iter()
        .find(|(i, _)| *i == state_idx)
        .map(|(_, n)| base(n))
        .unwrap_or_default();
    let journal_idx = names
        .iter()
        .find(|(_, n)| base(n) == journal_name || base(n) == format!("{state_entry_name}.journal"))
        .map(|(i, _)| *i);
    let cap = crate::time::human_bytes(max);
    let mut read = |i: usize, which| -> Result<(), String> {
        let entry = zip.by_index(i).map_err(|e| format!("bad zip entry: {e}"))?;
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let declared = entry.size();
        if declared > max {
            return Err(format!(
                "entry {name:?} is larger than the {cap} cap (--max-state-size): its header \
                 says {declared} bytes"
            ));
        }
        let mut capped = Capped {
            inner: entry,
            left: declared,
        };
        take(which, &mut capped).map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => format!(
                "entry {name:?} inflates to more than the {declared} bytes its header says: \
                 a damaged archive or a zip bomb; refused"
            ),
            _ => format!("bad zip entry {name:?}: {e}"),
        })
    };
    read(state_idx, ArtifactEntry::State)?;
    if let Some(i) = journal_idx {
        read(i, ArtifactEntry::Journal)?;
    }
    Ok(())
}

/// A reader that fails (`FileTooLarge`) as soon as it would give more than `left` bytes.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte more than allowed, to tell "ends here" from "goes on".
        let want = buf
            .len()
            .min(self.left.saturating_add(1).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(id: u64, name: &str, expired: bool, branch: &str, head_repo: u64) -> Artifact {
        Artifact {
            id,
            name: Some(name.into()),
            expired: Some(expired),
            created_at: None,
            workflow_run: Some(WorkflowRun {
                id: Some(id * 10),
                repository_id: Some(1),
                head_repository_id: Some(head_repo),
                head_branch: Some(branch.into()),
            }),
        }
    }

    #[test]
    fn choice_follows_the_rules() {
        let list = vec![
            art(5, "s", false, "main", 1),
            art(9, "s", true, "main", 1),
            art(8, "other", false, "main", 1),
            art(7, "s", false, "dev", 1),
            art(6, "s", false, "main", 2),
        ];
        assert_eq!(choose(&list, "s", "main"), Choice::Use(5));
        assert_eq!(choose(&list[1..2], "s", "main"), Choice::AllExpired(9));
        assert_eq!(choose(&list, "x", "main"), Choice::None);
    }

    #[test]
    fn names_are_query_encoded() {
        assert_eq!(form_encode("a b&c"), "a%20b%26c");
    }
}
