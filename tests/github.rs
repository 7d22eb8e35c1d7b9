//! GitHub Actions: the state artifact fetched by the real octocrab client from a local HTTP
//! server on 127.0.0.1 that speaks GitHub's REST API (pages, redirects to blob storage, 410,
//! 5xx and rate limits), and the job summary and outputs `tgferry run` writes inside Actions.

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_exit, run_cmd, s, tgferry};
use serde_json::{Value, json};
use tgferry::github::artifacts::{FetchConfig, FetchError, Fetched, RetryPolicy, fetch};

const REPO_ID: u64 = 4242;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    auth: Option<String>,
}

/// A canned answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, v: Value) -> Self {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }
}

#[derive(Default)]
struct Api {
    artifacts: Vec<Value>,
    /// Download bodies by artifact id; a missing id answers 410 Gone.
    blobs: HashMap<u64, Vec<u8>>,
    /// Answers given before the real one, in order, to any API request.
    faults: VecDeque<Answer>,
    seen: Vec<Seen>,
    port: u16,
}

/// A small HTTP/1.1 server speaking the part of GitHub's REST API tgferry uses.
struct Server {
    api: Arc<Mutex<Api>>,
    url: String,
}

impl Server {
    fn start(api: Api) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let api = Arc::new(Mutex::new(Api { port, ..api }));
        let shared = api.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let api = shared.clone();
                std::thread::spawn(move || serve(stream, &api));
            }
        });
        Server {
            api,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.api.lock().unwrap().seen.clone()
    }
}

fn serve(stream: TcpStream, api: &Mutex<Api>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut auth = None;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            match k.to_ascii_lowercase().as_str() {
                "authorization" => auth = Some(v.trim().to_owned()),
                "content-length" => len = v.trim().parse().unwrap(),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let answer = answer(api, Seen { path, auth });
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            answer.status,
            answer.body.len()
        );
        for (k, v) in &answer.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&answer.body).is_err() {
            return;
        }
    }
}

fn answer(api: &Mutex<Api>, seen: Seen) -> Answer {
    let mut api = api.lock().unwrap();
    api.seen.push(seen.clone());
    let (path, query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
    let q: HashMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    if let Some(id) = path.strip_prefix("/blob/") {
        // Blob storage: no token may reach it.
        let id: u64 = id.parse().unwrap();
        return match api.blobs.get(&id) {
            Some(b) => Answer {
                status: 200,
                headers: vec![],
                body: b.clone(),
            },
            None => Answer::json(404, json!({"message": "blob gone"})),
        };
    }
    if seen.auth.as_deref() != Some("Bearer test-token") {
        return Answer::json(401, json!({"message": "Bad credentials"}));
    }
    if let Some(fault) = api.faults.pop_front() {
        return fault;
    }
    if path == "/repos/octo/ferry/actions/artifacts" {
        let name = q.get("name").copied().unwrap_or("");
        let per_page: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
        let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
        // GitHub filters by name; this server also lets a few others through, which the
        // client must ignore.
        let list: Vec<&Value> = api
            .artifacts
            .iter()
            .filter(|a| a["name"] == name || a["name"] == "sneaky-other-name")
            .collect();
        let items: Vec<Value> = list
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|v| (*v).clone())
            .collect();
        return Answer::json(200, json!({"total_count": list.len(), "artifacts": items}));
    }
    if let Some(rest) = path.strip_prefix("/repos/octo/ferry/actions/artifacts/")
        && let Some(id) = rest.strip_suffix("/zip")
    {
        let id: u64 = id.parse().unwrap();
        if !api.blobs.contains_key(&id) {
            return Answer::json(410, json!({"message": "Artifact has expired"}));
        }
        // Like GitHub: a redirect to another origin (blob storage).
        return Answer {
            status: 302,
            headers: vec![(
                "location".into(),
                format!("http://localhost:{}/blob/{id}", api.port),
            )],
            body: vec![],
        };
    }
    Answer::json(404, json!({"message": "Not Found"}))
}

/// An artifact as GitHub lists it, nulls included.
fn artifact(id: u64, name: &str, expired: bool, branch: &str, head_repo: u64) -> Value {
    json!({
        "id": id,
        "node_id": "MDg6QXJ0aWZhY3Qx",
        "name": name,
        "size_in_bytes": 1234,
        "url": format!("https://api.github.com/repos/octo/ferry/actions/artifacts/{id}"),
        "archive_download_url": format!("https://api.github.com/repos/octo/ferry/actions/artifacts/{id}/zip"),
        "expired": expired,
        "digest": null,
        "created_at": "2026-11-01T05:00:00Z",
        "expires_at": null,
        "updated_at": null,
        "workflow_run": {
            "id": id * 10,
            "repository_id": REPO_ID,
            "head_repository_id": head_repo,
            "head_branch": branch,
            "head_sha": null
        }
    })
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn config(server: &Server, dir: &Path) -> FetchConfig {
    FetchConfig {
        api_url: server.url.clone(),
        repository: "octo/ferry".into(),
        branch: "main".into(),
        token: Some("test-token".to_string().into()),
        name: "tgferry-state".into(),
        state_path: dir.join("tgferry-state.json"),
        max_size: 1 << 20,
        retry: RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_retries: 4,
            max_wait: Duration::from_secs(5),
        },
    }
}

const STATE: &[u8] = b"{\"the\": \"state\"}\n";
const JOURNAL: &[u8] = b"{\"journal\": 1}\n";

#[tokio::test]
async fn the_newest_usable_artifact_is_chosen_across_pages() {
    let mut artifacts = Vec::new();
    // 230 artifacts, newest first as GitHub lists them; old ones of this branch.
    for id in (1..=230u64).rev() {
        let a = match id {
            // Newer than the right one, each unusable for its own reason:
            230 | 221 => artifact(id, "tgferry-state", true, "main", REPO_ID), // expired
            225 => artifact(id, "sneaky-other-name", false, "main", REPO_ID),
            220 => artifact(id, "tgferry-state", false, "feature", REPO_ID),
            215 => artifact(id, "tgferry-state", false, "main", 999), // a fork
            // The right one: its run spent its budget and was cancelled, which must not
            // matter; older ones came from successful runs.
            150 => artifact(id, "tgferry-state", false, "main", REPO_ID),
            _ if id % 2 == 0 => artifact(id, "tgferry-state", false, "main", REPO_ID),
            _ => {
                let mut a = artifact(id, "tgferry-state", false, "main", REPO_ID);
                a["workflow_run"] = Value::Null; // artifacts of deleted runs
                a
            }
        };
        artifacts.push(a);
    }
    // Ids 151..230 that were otherwise usable become unusable: expired.
    for a in &mut artifacts {
        let id = a["id"].as_u64().unwrap();
        if id > 150 && ![225, 220, 215].contains(&id) {
            a["expired"] = json!(true);
        }
    }
    let mut blobs = HashMap::new();
    blobs.insert(
        150,
        zip_of(&[
            ("tgferry-state.json", STATE),
            ("tgferry-state.json.journal", JOURNAL),
        ]),
    );
    blobs.insert(148, zip_of(&[("tgferry-state.json", &b"older"[..])]));
    let server = Server::start(Api {
        artifacts,
        blobs,
        ..Api::default()
    });
    let dir = common::tempdir();
    let cfg = config(&server, dir.path());
    // A journal lying around from elsewhere is replaced.
    std::fs::write(dir.path().join("tgferry-state.json.journal"), b"stale").unwrap();
    let got = fetch(&cfg).await.unwrap();
    assert_eq!(
        got,
        Fetched::Found {
            artifact_id: 150,
            run_id: Some(1500),
            created_at: Some("2026-11-01T05:00:00Z".into()),
            journal: true
        }
    );
    assert_eq!(std::fs::read(&cfg.state_path).unwrap(), STATE);
    assert_eq!(
        std::fs::read(dir.path().join("tgferry-state.json.journal")).unwrap(),
        JOURNAL
    );
    let seen = server.seen();
    let pages: Vec<_> = seen
        .iter()
        .filter(|s| s.path.contains("/artifacts?"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    for (i, p) in pages.iter().enumerate() {
        assert!(p.path.contains("name=tgferry-state"), "{}", p.path);
        assert!(p.path.contains("per_page=100"), "{}", p.path);
        assert!(p.path.contains(&format!("page={}", i + 1)), "{}", p.path);
    }
    let blob = seen.iter().find(|s| s.path == "/blob/150").unwrap();
    assert_eq!(blob.auth, None, "the token must not follow the redirect");
}

#[tokio::test]
async fn no_artifact_is_a_first_run() {
    let server = Server::start(Api {
        artifacts: vec![artifact(1, "other", false, "main", REPO_ID)],
        ..Api::default()
    });
    let dir = common::tempdir();
    let cfg = config(&server, dir.path());
    assert_eq!(fetch(&cfg).await.unwrap(), Fetched::NoArtifact);
    assert!(!cfg.state_path.exists());
}

#[tokio::test]
async fn expired_artifacts_are_reported() {
    // All expired in the listing.
    let server = Server::start(Api {
        artifacts: vec![
            artifact(7, "tgferry-state", true, "main", REPO_ID),
            artifact(3, "tgferry-state", true, "main", REPO_ID),
        ],
        ..Api::default()
    });
    let dir = common::tempdir();
    let cfg = config(&server, dir.path());
    assert_eq!(
        fetch(&cfg).await.unwrap(),
        Fetched::Expired { artifact_id: 7 }
    );
    // Listed as live, but the download answers 410 Gone.
    let server = Server::start(Api {
        artifacts: vec![artifact(8, "tgferry-state", false, "main", REPO_ID)],
        ..Api::default()
    });
    let cfg = config(&server, dir.path());
    assert_eq!(
        fetch(&cfg).await.unwrap(),
        Fetched::Expired { artifact_id: 8 }
    );
    assert!(!cfg.state_path.exists());
}

#[tokio::test]
async fn a_raw_artifact_is_the_state_itself() {
    let mut blobs = HashMap::new();
    blobs.insert(5, STATE.to_vec());
    let server = Server::start(Api {
        artifacts: vec![artifact(5, "tgferry-state", false, "main", REPO_ID)],
        blobs,
        ..Api::default()
    });
    let dir = common::tempdir();
    let cfg = config(&server, dir.path());
    let got = fetch(&cfg).await.unwrap();
    assert!(
        matches!(got, Fetched::Found { journal: false, .. }),
        "{got:?}"
    );
    assert_eq!(std::fs::read(&cfg.state_path).unwrap(), STATE);
}

#[tokio::test]
async fn unsafe_and_oversized_zips_are_refused() {
    let mut blobs = HashMap::new();
    blobs.insert(
        5,
        zip_of(&[
            ("tgferry-state.json", STATE),
            ("../escape.json", &b"evil"[..]),
        ]),
    );
    blobs.insert(6, zip_of(&[("/etc/tgferry-state.json", STATE)]));
    blobs.insert(
        7,
        zip_of(&[("tgferry-state.json", vec![b' '; 4096].as_slice())]),
    );
    let mut artifacts = vec![artifact(5, "tgferry-state", false, "main", REPO_ID)];
    let server = Server::start(Api {
        artifacts: artifacts.clone(),
        blobs: blobs.clone(),
        ..Api::default()
    });
    let root = common::tempdir();
    let dir = root.path().join("work");
    std::fs::create_dir(&dir).unwrap();
    let cfg = config(&server, &dir);
    let err = fetch(&cfg).await.unwrap_err();
    assert!(matches!(err, FetchError::BadArtifact { .. }), "{err}");
    assert!(err.to_string().contains("../escape.json"), "{err}");
    assert!(!cfg.state_path.exists());
    assert!(!root.path().join("escape.json").exists());

    artifacts[0] = artifact(6, "tgferry-state", false, "main", REPO_ID);
    let server = Server::start(Api {
        artifacts: artifacts.clone(),
        blobs: blobs.clone(),
        ..Api::default()
    });
    let err = fetch(&config(&server, &dir)).await.unwrap_err();
    assert!(matches!(err, FetchError::BadArtifact { .. }), "{err}");

    artifacts[0] = artifact(7, "tgferry-state", false, "main", REPO_ID);
    let server = Server::start(Api {
        artifacts,
        blobs,
        ..Api::default()
    });
    let mut cfg = config(&server, &dir);
    cfg.max_size = 1000;
    let err = fetch(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
    assert!(!cfg.state_path.exists());
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_waited_out() {
    let mut blobs = HashMap::new();
    blobs.insert(5, STATE.to_vec());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let faults = VecDeque::from(vec![
        Answer::json(502, json!({"message": "Bad Gateway"})),
        Answer::json(503, json!({"message": "unavailable"})),
        // Primary rate limit: reset is now, so the wait is about a second.
        Answer {
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), now.to_string()),
            ],
            body: json!({"message": "API rate limit exceeded"})
                .to_string()
                .into_bytes(),
        },
        // Secondary rate limit with Retry-After.
        Answer {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: b"{\"message\": \"secondary rate limit\"}".to_vec(),
        },
    ]);
    let server = Server::start(Api {
        artifacts: vec![artifact(5, "tgferry-state", false, "main", REPO_ID)],
        blobs,
        faults,
        ..Api::default()
    });
    let dir = common::tempdir();
    let cfg = config(&server, dir.path());
    let t = Instant::now();
    let got = fetch(&cfg).await.unwrap();
    assert!(matches!(got, Fetched::Found { .. }), "{got:?}");
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "waits honoured: {took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(std::fs::read(&cfg.state_path).unwrap(), STATE);

    // A server that keeps failing: bounded retries, then a clear error.
    let server = Server::start(Api {
        faults: (0..20)
            .map(|_| Answer::json(500, json!({"message": "boom"})))
            .collect(),
        ..Api::default()
    });
    let err = fetch(&config(&server, dir.path())).await.unwrap_err();
    assert!(matches!(err, FetchError::Api { status: 500, .. }), "{err}");
    assert_eq!(server.seen().len(), 5, "one try and four retries");

    // A rate limit far in the future is not waited for.
    let server = Server::start(Api {
        faults: VecDeque::from(vec![Answer {
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), (now + 3600).to_string()),
            ],
            body: b"{\"message\": \"API rate limit exceeded\"}".to_vec(),
        }]),
        ..Api::default()
    });
    let err = fetch(&config(&server, dir.path())).await.unwrap_err();
    assert!(matches!(err, FetchError::RateLimited { .. }), "{err}");

    // A bad token is not retried and says what to do, without the token.
    let server = Server::start(Api::default());
    let mut cfg = config(&server, dir.path());
    cfg.token = Some("wrong-secret".to_string().into());
    let err = fetch(&cfg).await.unwrap_err();
    assert!(matches!(err, FetchError::Api { status: 401, .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));
    assert_eq!(server.seen().len(), 1);
}

/// A server's message is shown only with the token taken out, however it echoes it.
#[tokio::test]
async fn a_server_message_that_echoes_the_token_is_printed_without_it() {
    let server = Server::start(Api {
        faults: VecDeque::from(vec![Answer::json(
            404,
            json!({"message": "no repository for Bearer test-token (test-token)"}),
        )]),
        ..Api::default()
    });
    let dir = common::tempdir();
    let err = fetch(&config(&server, dir.path())).await.unwrap_err();
    assert!(matches!(err, FetchError::Api { status: 404, .. }), "{err}");
    let text = err.to_string();
    assert!(!text.contains("test-token"), "{text}");
    assert!(
        text.contains("no repository for Bearer [token] ([token])"),
        "{text}"
    );

    // An error body that is not JSON (a proxy's page) is cut, and redacted the same way.
    let mut page = b"<html>token=test-token ".to_vec();
    page.extend(std::iter::repeat_n(b'x', 1 << 20));
    let server = Server::start(Api {
        faults: VecDeque::from(vec![Answer {
            status: 400,
            headers: vec![],
            body: page,
        }]),
        ..Api::default()
    });
    let err = fetch(&config(&server, dir.path())).await.unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("test-token") && text.contains("[token]"),
        "{text}"
    );
}

/// A zip bomb in the state artifact is refused from its header, naming the flag that
/// raises the cap, and nothing is left behind; so is a download over the cap.
#[tokio::test]
async fn a_zip_bomb_or_an_oversized_download_leaves_nothing_behind() {
    let zeros = vec![0u8; 64 << 20];
    let mut blobs = HashMap::new();
    blobs.insert(5, zip_of(&[("tgferry-state.json", zeros.as_slice())]));
    blobs.insert(6, vec![b'{'; 2 << 20]);
    let server = Server::start(Api {
        artifacts: vec![artifact(5, "tgferry-state", false, "main", REPO_ID)],
        blobs: blobs.clone(),
        ..Api::default()
    });
    let dir = common::tempdir();
    let cfg = config(&server, dir.path());
    let err = fetch(&cfg).await.unwrap_err();
    assert!(matches!(err, FetchError::BadArtifact { .. }), "{err}");
    assert!(err.to_string().contains("(--max-state-size)"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing written: {left:?}");

    let server = Server::start(Api {
        artifacts: vec![artifact(6, "tgferry-state", false, "main", REPO_ID)],
        blobs,
        ..Api::default()
    });
    let err = fetch(&config(&server, dir.path())).await.unwrap_err();
    assert!(err.to_string().contains("(--max-state-size)"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

/// `tgferry` with the GitHub variables pointing at `server`.
fn gh(server: &Server, args: &[&str]) -> std::process::Command {
    let mut c = tgferry(args);
    c.env("GITHUB_REPOSITORY", "octo/ferry")
        .env("GITHUB_REF_NAME", "main")
        .env("GITHUB_TOKEN", "test-token")
        .env("GITHUB_API_URL", &server.url)
        .env("TGFERRY_GITHUB_RETRY_DELAY", "10ms");
    c
}

#[test]
fn state_fetch_command_first_run_require_and_catalog_fallback() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let server = Server::start(Api::default());
    let out = assert_exit(
        &mut gh(&server, &["state", "fetch", "--state", s(&state)]),
        0,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("first run"), "{err}");
    assert!(!state.exists());
    let out = assert_exit(
        &mut gh(
            &server,
            &["state", "fetch", "--state", s(&state), "--require"],
        ),
        11,
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("test-token"));

    // A vault run leaves an encrypted catalog in the store; an expired artifact then falls
    // back to it.
    let (src, store) = (dir.path().join("src"), dir.path().join("store"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let local = dir.path().join("local.json");
    assert_exit(
        run_cmd(&src, &store, &local, &["--encryption", "vault", "-q"])
            .env("TGFERRY_PASSPHRASE", "correct horse"),
        0,
    );
    let server = Server::start(Api {
        artifacts: vec![artifact(9, "tgferry-state", true, "main", REPO_ID)],
        ..Api::default()
    });
    let out = assert_exit(
        gh(
            &server,
            &["state", "fetch", "--state", s(&state), "--store", s(&store)],
        )
        .env("TGFERRY_PASSPHRASE", "correct horse"),
        0,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expired") && err.contains("catalog"), "{err}");
    let recovered = common::load(&state);
    assert!(recovered.completed.contains_key("a.txt"));
    // An existing state is not overwritten without --overwrite.
    assert_exit(
        &mut gh(&server, &["state", "fetch", "--state", s(&state)]),
        2,
    );
}

/// Parses `$GITHUB_OUTPUT`'s heredoc form.
fn parse_outputs(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delim) = line.split_once("<<").expect("heredoc form");
        let mut value = Vec::new();
        for l in lines.by_ref() {
            if l == delim {
                break;
            }
            value.push(l);
        }
        out.insert(name.to_owned(), value.join("\n"));
    }
    out
}

#[test]
fn a_run_inside_actions_writes_a_summary_and_outputs() {
    let dir = common::tempdir();
    let (src, store) = (dir.path().join("src"), dir.path().join("store"));
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("f{i}.txt")), vec![b'x'; 100 * i + 1]).unwrap();
    }
    // A first run elsewhere stores two files; its state is the artifact.
    let prior = dir.path().join("prior.json");
    assert_exit(
        &mut run_cmd(&src, &store, &prior, &["--include", "f0.txt,f1.txt", "-q"]),
        0,
    );
    let mut blobs = HashMap::new();
    blobs.insert(
        3,
        zip_of(&[(
            "tgferry-state.json",
            std::fs::read(&prior).unwrap().as_slice(),
        )]),
    );
    let server = Server::start(Api {
        artifacts: vec![artifact(3, "tgferry-state", false, "main", REPO_ID)],
        blobs,
        ..Api::default()
    });
    let summary = dir.path().join("summary.md");
    let outputs = dir.path().join("outputs");
    let state = dir.path().join("tgferry-state.json");
    let out = assert_exit(
        gh(
            &server,
            &[
                "run",
                "--source",
                s(&src),
                "--store",
                s(&store),
                "--state",
                s(&state),
                "--state-from",
                "artifact",
            ],
        )
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs),
        0,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fetched the state from artifact"), "{err}");
    assert!(
        err.contains("::group::") && err.contains("::endgroup::"),
        "{err}"
    );
    let o = parse_outputs(&std::fs::read_to_string(&outputs).unwrap());
    assert_eq!(o["done"], "true");
    assert_eq!(o["remaining"], "0");
    assert_eq!(o["completed"], "5");
    assert_eq!(o["failed"], "0");
    assert_eq!(o["stop-reason"], "complete");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("## tgferry"), "{md}");
    assert!(
        md.contains("### This run") && md.contains("### Totals"),
        "{md}"
    );
    assert!(
        md.contains("| files stored | 3 |"),
        "only the three new files: {md}"
    );
    assert!(md.len() < 1 << 20);
}

#[test]
fn an_encrypted_state_needs_the_passphrase_and_comes_back_through_fetch() {
    let dir = common::tempdir();
    let (src, store) = (dir.path().join("src"), dir.path().join("store"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("secret-name.txt"), b"hello").unwrap();
    let state = dir.path().join("tgferry-state.json");
    let pass = "correct horse";
    assert_exit(
        run_cmd(
            &src,
            &store,
            &state,
            &["--encryption", "vault", "--encrypt-state", "-q"],
        )
        .env("TGFERRY_PASSPHRASE", pass),
        0,
    );
    let sealed_path = dir.path().join("tgferry-state.json.sealed");
    let sealed = std::fs::read(&sealed_path).unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("secret-name"),
        "no file name in the sealed state"
    );
    // `state seal` does the same from the state file (and its journal).
    std::fs::remove_file(&sealed_path).unwrap();
    assert_exit(
        tgferry(&["state", "seal", "--state", s(&state), "--store", s(&store)])
            .env("TGFERRY_PASSPHRASE", pass),
        0,
    );
    let sealed = std::fs::read(&sealed_path).unwrap();
    // status: the passphrase opens it; without one, exit 10; a wrong one, exit 10.
    let out = assert_exit(
        tgferry(&["status", s(&sealed_path)]).env("TGFERRY_PASSPHRASE", pass),
        0,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("completed"));
    assert_exit(&mut tgferry(&["status", s(&sealed_path)]), 10);
    assert_exit(
        tgferry(&["status", s(&sealed_path)]).env("TGFERRY_PASSPHRASE", "wrong"),
        10,
    );
    // The sealed artifact (zipped as upload-artifact does) is opened by fetch.
    let mut blobs = HashMap::new();
    blobs.insert(
        4,
        zip_of(&[("tgferry-state.json.sealed", sealed.as_slice())]),
    );
    let server = Server::start(Api {
        artifacts: vec![artifact(4, "tgferry-state", false, "main", REPO_ID)],
        blobs,
        ..Api::default()
    });
    let fetched = dir.path().join("fetched").join("tgferry-state.json");
    assert_exit(
        gh(&server, &["state", "fetch", "--state", s(&fetched)]).env("TGFERRY_PASSPHRASE", pass),
        0,
    );
    assert!(
        common::load(&fetched)
            .completed
            .contains_key("secret-name.txt")
    );
    // --encrypt-state without the vault is refused.
    assert_exit(&mut run_cmd(&src, &store, &state, &["--encrypt-state"]), 2);
}

#[test]
fn an_artifact_that_holds_no_state_is_refused_and_moved_aside() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let mut blobs = HashMap::new();
    blobs.insert(5, b"<html>not a state</html>".to_vec());
    let server = Server::start(Api {
        artifacts: vec![artifact(5, "tgferry-state", false, "main", REPO_ID)],
        blobs,
        ..Api::default()
    });
    let out = assert_exit(
        &mut gh(&server, &["state", "fetch", "--state", s(&state)]),
        4,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not hold a state"), "{err}");
    assert!(!state.exists(), "a run would start from it");
    assert!(dir.path().join("state.json.fetched-5").exists());
    // A run fetching it stops the same way, before touching the store.
    let store = dir.path().join("store");
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let mut run = gh(
        &server,
        &[
            "run",
            "--source",
            s(&dir.path().join("src")),
            "--store",
            s(&store),
            "--state",
            s(&state),
            "--state-from",
            "artifact",
        ],
    );
    assert_exit(&mut run, 4);
    assert!(!state.exists());
    assert!(!store.exists());
}
