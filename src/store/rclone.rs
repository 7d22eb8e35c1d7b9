//! Any rclone remote as a store: `--store rclone:REMOTE:PATH` (docs/rclone.md), through the
//! run's one `rclone rcd` ([`crate::rclone::Rcd`]), shared with an rclone source.
//!
//! - Parts are streamed to rclone (`operations/uploadfile`), never staged whole on local
//!   disk by tgferry. Where the remote can rename on the server (rclone's `Move`
//!   feature: SFTP, FTP, WebDAV, Drive), a part is written under `.tgferry/tmp/` and moved
//!   to its name once complete, so a part under its name is always whole and a killed
//!   upload leaves only a temp object, which a later [`Store::prepare`] removes once it is
//!   an hour old (on the side: the run does not wait for it). Elsewhere
//!   (object stores: S3 and the like) an upload is atomic by itself and goes straight to
//!   its name. Each finished part is looked at again (`operations/stat`): a stored length
//!   that differs from the bytes sent fails the part.
//! - Reads stream over HTTP from `--rc-serve`; a ranged read ([`Store::open_range`]: a
//!   part inside a pack) is one request with an HTTP `Range`.
//! - Meta blobs (key file, catalog, run record, under `.tgferry/`) are replaced so that a
//!   crash at any point leaves a readable blob: the new one is written whole under
//!   `.tgferry/meta-new/<name>.<hash>.<length>`, checked, and only then moved (or copied)
//!   over the old one; a reader that finds no blob under its name takes the newest
//!   complete one from there, recognised by its hash and length.
//! - A staged part (`.tgferry/staged/<name>`) is placed by a server-side copy (rclone
//!   copies through itself where the remote cannot).
//! - What the remote can do is asked from rclone (`operations/fsinfo`). A remote that
//!   keeps only media (Google Photos) takes plain mode only, folders flattened into file
//!   names, and cannot delete: prune reports what it would remove.
//!
//! There is no lock across processes on a remote: runs over one store must not overlap
//! (in GitHub Actions, a `concurrency` group).

use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use sha2::Digest;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use tokio_util::task::AbortOnDropHandle;

use super::{PartInfo, PartStat, STAGING_PREFIX, Store, StoreError, Upload, staged_name};
use crate::rclone::rcd::{RcUpload, ReadVia};
use crate::rclone::reader::RangeReader;
use crate::rclone::{Class, RcError, Rcd, RcloneConfig, Remote};
use crate::source::rclone::{FsInfo, Item, parse_mtime};
use crate::time::Timestamp;

/// The `--store` prefix that selects this store.
pub const PREFIX: &str = "rclone:";

/// The store's own folder on the remote (as in a local store).
const OWN: &str = ".tgferry";
/// Where parts are written before they are moved to their names.
const TMP_DIR: &str = ".tgferry/tmp";
/// How old a temp object must be for [`Store::prepare`] to take it for a leftover.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Where a new meta blob is written before it replaces the old one.
const META_NEW_DIR: &str = ".tgferry/meta-new";

/// An rclone remote as a store (see the module docs).
#[derive(Debug)]
pub struct RcloneStore {
    config: RcloneConfig,
    plain: bool,
    ctx: OnceLock<Arc<Ctx>>,
    remote: Remote,
    caps: OnceCell<Caps>,
    prepared: OnceCell<()>,
    /// Removing leftovers of killed uploads, stopped with the store.
    cleanup: Mutex<Option<AbortOnDropHandle<()>>>,
}

/// What uploads share with the store.
#[derive(Debug)]
struct Ctx {
    rcd: Arc<Rcd>,
    remote: Remote,
    /// The store for messages, secrets masked.
    shown: String,
}

/// What the remote can do.
#[derive(Debug, Clone)]
pub struct Caps {
    /// The backend (`sftp`, `s3`, `googlephotos`, ...), where known.
    pub backend: String,
    /// Renames on the server.
    pub can_move: bool,
    /// Copies on the server.
    pub can_copy: bool,
    /// Deletes objects.
    pub can_delete: bool,
    /// Keeps only photos and videos, in flat albums.
    pub media_only: bool,
    /// Keeps modification times to the second or better.
    pub precise_time: bool,
}

impl RcloneStore {
    /// The store for a `--store` value: `None` unless it starts with `rclone:`.
    pub fn from_store(store: &str, plain: bool) -> Option<Result<Self, String>> {
        let remote = store.strip_prefix(PREFIX)?;
        if remote.trim().is_empty() || !remote.contains(':') {
            return Some(Err(format!(
                "--store {store:?} names no remote: write rclone:REMOTE:PATH, e.g. \
                 rclone:storagebox:backup (`rclone listremotes` shows the configured ones)"
            )));
        }
        Some(Ok(RcloneStore::new(remote, plain)))
    }

    /// A store on `remote` as rclone spells it (`box:backup`, `:sftp,host=...:dir`), for
    /// plain mode (`--encryption none`) or a vault.
    pub fn new(remote: &str, plain: bool) -> Self {
        RcloneStore {
            config: RcloneConfig::from_env(),
            plain,
            ctx: OnceLock::new(),
            remote: Remote::new(remote),
            caps: OnceCell::new(),
            prepared: OnceCell::new(),
            cleanup: Mutex::new(None),
        }
    }

    /// Sets an environment variable for rclone (see
    /// [`RcloneSource::with_env`](crate::source::rclone::RcloneSource::with_env)).
    pub fn with_env(mut self, key: impl Into<String>, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.config
            .env
            .push((key.into(), value.as_ref().to_owned()));
        self
    }

    /// The store as shown in messages: `rclone:REMOTE:PATH`, inline secrets masked.
    pub fn shown(&self) -> String {
        self.remote.redact(&format!("{PREFIX}{}", self.remote.fs))
    }

    fn ctx(&self) -> &Arc<Ctx> {
        self.ctx.get_or_init(|| {
            Arc::new(Ctx {
                rcd: Rcd::shared(&self.config),
                remote: self.remote.clone(),
                shown: self.shown(),
            })
        })
    }

    /// The run's rclone process this store uses (started at the first request).
    pub fn rcd(&self) -> &Arc<Rcd> {
        &self.ctx().rcd
    }

    /// What the remote can do (asked once).
    pub async fn caps(&self) -> Result<&Caps, StoreError> {
        self.caps
            .get_or_try_init(|| async {
                let ctx = self.ctx();
                let info = ctx
                    .call("operations/fsinfo", json!({ "fs": ctx.remote.fs }))
                    .await
                    .map_err(|e| ctx.error(e, None))?;
                let info: FsInfo =
                    serde_json::from_value(info).map_err(|e| StoreError::Transient {
                        message: format!("rclone's operations/fsinfo answered oddly: {e}"),
                    })?;
                let backend = match self.remote.known_type(&self.config) {
                    Some(t) => t,
                    None => ctx
                        .call("config/get", json!({ "name": self.remote.name() }))
                        .await
                        .ok()
                        .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                };
                let feature = |k: &str| {
                    info.features
                        .get(k)
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                };
                let media_only = backend == "googlephotos";
                Ok(Caps {
                    can_move: feature("Move") && !media_only,
                    can_copy: feature("Copy") && !media_only,
                    can_delete: !media_only,
                    media_only,
                    precise_time: info.precision.is_some_and(|p| p <= 1_000_000_000),
                    backend,
                })
            })
            .await
    }

    /// `name` if the store may write it: a clean relative path outside `.tgferry/`.
    fn checked<'a>(&self, name: &'a str) -> Result<&'a str, StoreError> {
        if !crate::source::is_clean_relative(name) || name == OWN || name.starts_with(".tgferry/") {
            return Err(StoreError::Refused {
                name: name.into(),
                reason: "not a clean relative path outside the store's own .tgferry/ folder".into(),
            });
        }
        Ok(name)
    }

    /// A location the store may read or remove: a name, or a staged part.
    fn checked_loc<'a>(&self, loc: &'a str) -> Result<&'a str, StoreError> {
        match loc.strip_prefix(STAGING_PREFIX) {
            Some(rest) if crate::source::is_clean_relative(rest) => Ok(loc),
            _ => self.checked(loc),
        }
    }

    /// Where a part named `name` is stored: its name, or on a remote of flat albums the
    /// name with its folders joined by `∕` (U+2215).
    fn location(&self, caps: &Caps, name: &str) -> String {
        if caps.media_only {
            name.replace('/', "\u{2215}")
        } else {
            name.to_owned()
        }
    }

    async fn begin_at(&self, loc: String, len: u64) -> Result<RcloneUpload, StoreError> {
        let caps = self.caps().await?.clone();
        let ctx = self.ctx().clone();
        let tmp = caps
            .can_move
            .then(|| format!("{TMP_DIR}/{}", random_name()));
        let at = tmp.as_deref().unwrap_or(&loc);
        let (dir, file) = split(at);
        let up = ctx
            .rcd
            .upload(&ctx.remote.fs, dir, file, len)
            .await
            .map_err(|e| ctx.error(e, None))?;
        Ok(RcloneUpload {
            ctx,
            up,
            loc,
            tmp,
            written: 0,
            precise_time: caps.precise_time,
        })
    }

    async fn meta_blob(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let ctx = self.ctx();
        let mut r = match ctx.open(path, 0, None).await {
            Ok(r) => r,
            Err(e) if e.class == Class::NotFound => return Ok(None),
            Err(e) => return Err(ctx.error(e, None)),
        };
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .await
            .map_err(|e| StoreError::Transient {
                message: e.to_string(),
            })?;
        Ok(Some(bytes))
    }
}

impl Ctx {
    /// A reader over the object `path` from `offset`, to its end or `window` bytes on,
    /// through `--rc-serve`: a store reads what it may have just written, which a served
    /// remote's cached listing may not show yet.
    async fn open(
        &self,
        path: &str,
        offset: u64,
        window: Option<u64>,
    ) -> Result<RangeReader, RcError> {
        let end = window.map(|w| offset + w);
        let (rcd, remote) = (self.rcd.clone(), self.remote.clone());
        RangeReader::open(rcd, remote, path, ReadVia::RcServe, offset, window, end).await
    }

    async fn call(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, RcError> {
        self.rcd.call(method, &params).await
    }

    /// The store error for an rclone failure (concerning `loc` where given).
    fn error(&self, e: RcError, loc: Option<&str>) -> StoreError {
        let msg = self.remote.redact(&e.message);
        let store = self.shown.clone();
        match e.class {
            Class::NoBinary => StoreError::Unwritable {
                store,
                message: msg,
            },
            Class::NotConfigured => StoreError::Denied {
                store,
                message: self.remote.not_configured(&msg),
            },
            Class::ConfigLocked => StoreError::Denied {
                store,
                message: format!(
                    "the rclone config file is encrypted ({msg}): set RCLONE_CONFIG_PASS to \
                     its password"
                ),
            },
            Class::Auth => StoreError::Denied {
                store,
                message: format!(
                    "the remote refused the credentials ({msg}): check the user, password, \
                     token or keys of the remote (passwords in the config or in \
                     RCLONE_CONFIG_*_PASS must be `rclone obscure`d)"
                ),
            },
            Class::Denied => StoreError::Denied {
                store,
                message: format!(
                    "permission denied ({msg}): check that this account may write the path"
                ),
            },
            Class::Full => StoreError::Full {
                store,
                message: msg,
            },
            Class::IsFile => StoreError::Unwritable {
                store,
                message: format!("{msg}: the store path is a file, not a folder"),
            },
            Class::NotFound => match loc {
                Some(loc) => StoreError::Missing { loc: loc.into() },
                None => StoreError::Transient {
                    message: format!("{store}: {msg}"),
                },
            },
            Class::Transient | Class::Other => StoreError::Transient {
                message: format!("{store}: {msg}"),
            },
        }
    }

    async fn stat(&self, loc: &str) -> Result<Option<Item>, StoreError> {
        let answer = match self
            .call(
                "operations/stat",
                json!({ "fs": self.remote.fs, "remote": loc, "opt": { "noMimeType": true } }),
            )
            .await
        {
            Ok(a) => a,
            Err(e) if e.class == Class::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e, Some(loc))),
        };
        let item = answer.get("item").cloned().unwrap_or_default();
        if item.is_null() {
            return Ok(None);
        }
        let item: Item = serde_json::from_value(item).map_err(|e| StoreError::Transient {
            message: format!("rclone's operations/stat answered oddly: {e}"),
        })?;
        Ok((!item.is_dir).then_some(item))
    }

    async fn delete(&self, loc: &str) -> Result<(), StoreError> {
        match self
            .call(
                "operations/deletefile",
                json!({ "fs": self.remote.fs, "remote": loc }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class == Class::NotFound => Ok(()),
            Err(e) => Err(self.error(e, Some(loc))),
        }
    }

    /// Copies or moves `from` to `to` on the remote (replacing `to`).
    async fn transfer(&self, method: &str, from: &str, to: &str) -> Result<(), StoreError> {
        // Removed first: rclone skips a copy onto an object of the same size and time,
        // which a rewritten part of the same length may be.
        self.delete(to).await?;
        self.call(
            method,
            json!({
                "srcFs": self.remote.fs, "srcRemote": from,
                "dstFs": self.remote.fs, "dstRemote": to,
            }),
        )
        .await
        .map(|_| ())
        .map_err(|e| self.error(e, Some(from)))
    }

    /// Lists the files under `dir`, recursively; none if it does not exist.
    async fn list(&self, dir: &str) -> Result<Vec<Item>, StoreError> {
        let answer = match self
            .call(
                "operations/list",
                json!({
                    "fs": self.remote.fs,
                    "remote": dir,
                    "opt": { "recurse": true, "filesOnly": true, "noMimeType": true },
                }),
            )
            .await
        {
            Ok(a) => a,
            Err(e) if e.class == Class::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e, None)),
        };
        let items = answer.get("list").cloned().unwrap_or_default();
        let items: Vec<Item> =
            serde_json::from_value(items).map_err(|e| StoreError::Transient {
                message: format!("rclone's operations/list answered oddly: {e}"),
            })?;
        // Paths are the root's; older rclones gave them relative to `dir`.
        let prefix = format!("{dir}/");
        Ok(items
            .into_iter()
            .map(|mut i| {
                if !i.path.starts_with(&prefix) {
                    i.path = format!("{prefix}{}", i.path);
                }
                i
            })
            .collect())
    }
}

fn random_name() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is unavailable");
    hex::encode(b)
}

/// `a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`).
fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, file)) => (dir, file),
        None => ("", path),
    }
}

/// A part being written to an rclone remote.
pub struct RcloneUpload {
    ctx: Arc<Ctx>,
    up: RcUpload,
    loc: String,
    /// Where it is written before it takes its name, if it is moved there.
    tmp: Option<String>,
    written: u64,
    precise_time: bool,
}

impl Upload for RcloneUpload {
    async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        self.up
            .write(buf)
            .await
            .map_err(|e| self.ctx.error(e, None))?;
        self.written += buf.len() as u64;
        Ok(())
    }

    async fn finish(self) -> Result<String, StoreError> {
        self.finish_timed().await.map(|(loc, _)| loc)
    }

    async fn finish_timed(self) -> Result<(String, Option<Timestamp>), StoreError> {
        let RcloneUpload {
            ctx,
            up,
            loc,
            tmp,
            written,
            precise_time,
        } = self;
        up.finish().await.map_err(|e| ctx.error(e, None))?;
        if let Some(tmp) = &tmp {
            ctx.transfer("operations/movefile", tmp, &loc).await?;
        }
        let Some(item) = ctx.stat(&loc).await? else {
            return Err(StoreError::Transient {
                message: format!("{}: {loc} is not there after its upload", ctx.shown),
            });
        };
        if item.size != written as i64 {
            return Err(StoreError::Transient {
                message: format!(
                    "{}: {loc} holds {} bytes after an upload of {written}",
                    ctx.shown, item.size
                ),
            });
        }
        let modified = precise_time.then(|| parse_mtime(&item.mod_time)).flatten();
        Ok((loc, modified))
    }
}

impl Store for RcloneStore {
    type Upload = RcloneUpload;
    type Reader = RangeReader;

    async fn prepare(&self) -> Result<(), StoreError> {
        self.prepared
            .get_or_try_init(|| async {
                let caps = self.caps().await?.clone();
                let ctx = self.ctx();
                if caps.media_only && !self.plain {
                    return Err(StoreError::Denied {
                        store: ctx.shown.clone(),
                        message: format!(
                            "a {} remote keeps only photos and videos, so it cannot hold a \
                             vault: use it in plain mode (--encryption none), one file per \
                             part (docs/rclone.md)",
                            caps.backend
                        ),
                    });
                }
                if !caps.media_only {
                    ctx.call(
                        "operations/mkdir",
                        json!({ "fs": ctx.remote.fs, "remote": "" }),
                    )
                    .await
                    .map_err(|e| ctx.error(e, None))?;
                }
                if caps.can_move {
                    // Leftovers of uploads that were killed, removed on the side (the run
                    // need not wait) once they are an hour old: a server may still hold
                    // an upload its client died in the middle of (`rclone serve webdav`
                    // hangs on deleting such a file), and without a lock across
                    // processes a fresh one may be another run's.
                    let ctx = ctx.clone();
                    let cleanup = tokio::spawn(async move {
                        let left = match ctx.list(TMP_DIR).await {
                            Ok(left) => left,
                            Err(e) => {
                                tracing::debug!("listing {TMP_DIR} for leftovers: {e}");
                                return;
                            }
                        };
                        let cutoff = crate::time::now() - LEFTOVER_AGE;
                        let old = |i: &Item| parse_mtime(&i.mod_time).is_some_and(|t| t < cutoff);
                        for item in left.into_iter().filter(old) {
                            if let Err(e) = ctx.delete(&item.path).await {
                                tracing::debug!("removing the leftover {}: {e}", item.path);
                            }
                        }
                    });
                    *self.cleanup.lock().unwrap() = Some(AbortOnDropHandle::new(cleanup));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn begin(&self, name: &str, len: u64) -> Result<RcloneUpload, StoreError> {
        let name = self.checked(name)?;
        let caps = self.caps().await?.clone();
        self.begin_at(self.location(&caps, name), len).await
    }

    async fn begin_staged(&self, name: &str, len: u64) -> Result<RcloneUpload, StoreError> {
        let name = self.checked(name)?;
        if self.caps().await?.media_only {
            return Err(StoreError::Refused {
                name: name.into(),
                reason: "this remote keeps only media and cannot hold a staged part".into(),
            });
        }
        self.begin_at(staged_name(name), len).await
    }

    async fn place(&self, from: &str, name: &str) -> Result<Option<Timestamp>, StoreError> {
        let name = self.checked(name)?;
        let caps = self.caps().await?.clone();
        let ctx = self.ctx();
        ctx.transfer("operations/copyfile", from, name).await?;
        let item = ctx.stat(name).await?.ok_or_else(|| StoreError::Transient {
            message: format!("{}: {name} is not there after its copy", ctx.shown),
        })?;
        Ok(caps
            .precise_time
            .then(|| parse_mtime(&item.mod_time))
            .flatten())
    }

    async fn staged(&self) -> Result<Vec<String>, StoreError> {
        let dir = STAGING_PREFIX.trim_end_matches('/');
        Ok(self
            .ctx()
            .list(dir)
            .await?
            .into_iter()
            .map(|i| i.path)
            .collect())
    }

    async fn open(&self, loc: &str) -> Result<RangeReader, StoreError> {
        let loc = self.checked_loc(loc)?;
        let ctx = self.ctx();
        ctx.open(loc, 0, None)
            .await
            .map_err(|e| ctx.error(e, Some(loc)))
    }

    /// One HTTP range request through the rcd (the reader the source uses, with the range
    /// as its only window), so the remote reads the range and nothing else.
    async fn open_range(
        &self,
        loc: &str,
        offset: u64,
        len: u64,
    ) -> Result<super::RangeReader, StoreError> {
        let loc = self.checked_loc(loc)?;
        let ctx = self.ctx();
        if len == 0 {
            // No byte to ask for: only whether the part is there.
            return match ctx.stat(loc).await? {
                Some(_) => Ok(Box::new(tokio::io::empty())),
                None => Err(StoreError::Missing { loc: loc.into() }),
            };
        }
        // A range whose end is past what HTTP ranges can name (a length meaning "to the
        // end") asks for the rest of the object, cut at `len` here.
        let window = offset
            .checked_add(len)
            .filter(|end| *end <= i64::MAX as u64)
            .map(|_| len);
        let opened = ctx.open(loc, offset, window).await;
        let reader = match opened {
            Ok(reader) => reader,
            // A range that starts at or past the end is "not found" through some backends
            // (S3): the object is asked after, and is empty from there if it is there.
            Err(e) if e.class == Class::NotFound && offset > 0 => {
                return match ctx.stat(loc).await? {
                    Some(item) if item.size.max(0) as u64 <= offset => {
                        Ok(Box::new(tokio::io::empty()))
                    }
                    _ => Err(ctx.error(e, Some(loc))),
                };
            }
            Err(e) => return Err(ctx.error(e, Some(loc))),
        };
        // (Also holds a server that answers with more than it was asked for.)
        Ok(Box::new(reader.take(len)))
    }

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.stat(loc).await?.map(|s| s.len))
    }

    async fn stat(&self, loc: &str) -> Result<Option<PartStat>, StoreError> {
        let loc = self.checked_loc(loc)?;
        let precise = self.caps().await?.precise_time;
        Ok(self.ctx().stat(loc).await?.map(|item| PartStat {
            len: item.size.max(0) as u64,
            modified: precise.then(|| parse_mtime(&item.mod_time)).flatten(),
        }))
    }

    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        let loc = self.checked_loc(loc)?;
        let caps = self.caps().await?;
        if !caps.can_delete {
            return Err(StoreError::Refused {
                name: loc.into(),
                reason: format!(
                    "rclone cannot delete from a {} remote: remove it by hand (in the \
                     Google Photos app for Google Photos)",
                    caps.backend
                ),
            });
        }
        self.ctx().delete(loc).await
    }

    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_meta_name(name)?;
        let caps = self.caps().await?.clone();
        if caps.media_only {
            // Nowhere to keep it; plain mode needs none of it to restore.
            tracing::debug!("a {} remote keeps no {name}", caps.backend);
            return Ok(());
        }
        let ctx = self.ctx();
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        let file = format!("{name}.{}.{}", &digest[..16], bytes.len());
        let tmp = format!("{META_NEW_DIR}/{file}");
        let dest = format!("{OWN}/{name}");
        let mut up = ctx
            .rcd
            .upload(&ctx.remote.fs, META_NEW_DIR, &file, bytes.len() as u64)
            .await
            .map_err(|e| ctx.error(e, None))?;
        up.write(bytes).await.map_err(|e| ctx.error(e, None))?;
        up.finish().await.map_err(|e| ctx.error(e, None))?;
        match ctx.stat(&tmp).await? {
            Some(item) if item.size == bytes.len() as i64 => {}
            _ => {
                return Err(StoreError::Transient {
                    message: format!("{}: {tmp} was not stored whole", ctx.shown),
                });
            }
        }
        if caps.can_move {
            ctx.transfer("operations/movefile", &tmp, &dest).await
        } else if caps.can_copy {
            ctx.transfer("operations/copyfile", &tmp, &dest).await?;
            ctx.delete(&tmp).await
        } else {
            let mut up = ctx
                .rcd
                .upload(&ctx.remote.fs, OWN, name, bytes.len() as u64)
                .await
                .map_err(|e| ctx.error(e, None))?;
            up.write(bytes).await.map_err(|e| ctx.error(e, None))?;
            up.finish().await.map_err(|e| ctx.error(e, None))?;
            ctx.delete(&tmp).await
        }
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_meta_name(name)?;
        if self.caps().await?.media_only {
            return Ok(None);
        }
        if let Some(bytes) = self.meta_blob(&format!("{OWN}/{name}")).await? {
            return Ok(Some(bytes));
        }
        // Replaced by a process that stopped between removing the old blob and moving
        // the new one in: the new one, if it was written whole.
        let mut candidates: Vec<Item> = self
            .ctx()
            .list(META_NEW_DIR)
            .await?
            .into_iter()
            .filter(|i| {
                split(&i.path)
                    .1
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|rest| rest.split('.').count() == 2)
            })
            .collect();
        candidates.sort_by(|a, b| b.mod_time.cmp(&a.mod_time));
        for item in candidates {
            let file = split(&item.path).1;
            let mut tail = file[name.len() + 1..].split('.');
            let (Some(hash), Some(len)) = (tail.next(), tail.next()) else {
                continue;
            };
            let Some(bytes) = self.meta_blob(&item.path).await? else {
                continue;
            };
            let digest = hex::encode(sha2::Sha256::digest(&bytes));
            if len == bytes.len().to_string() && digest.starts_with(hash) {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    async fn list_parts(&self, _hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        Ok(self
            .ctx()
            .list("data")
            .await?
            .into_iter()
            .filter_map(|item| {
                let mut it = item.path.split('/');
                let (Some("data"), Some(dir), Some(name), None) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return None;
                };
                if !hex(dir, 2) || !hex(name, 32) {
                    return None;
                }
                Some(PartInfo {
                    len: item.size.max(0) as u64,
                    stored: parse_mtime(&item.mod_time).map(|t| t.as_second()),
                    loc: item.path,
                })
            })
            .collect())
    }
}

fn check_meta_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Refused {
            name: name.into(),
            reason: "not a meta blob name".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_values() {
        assert!(RcloneStore::from_store("/local", false).is_none());
        for bad in ["rclone:", "rclone: ", "rclone:nocolon"] {
            let e = RcloneStore::from_store(bad, false).unwrap().unwrap_err();
            assert!(e.contains("rclone:REMOTE:PATH"), "{e}");
        }
        let s = RcloneStore::from_store("rclone::sftp,host=h,pass=hunter22:dir", true)
            .unwrap()
            .unwrap();
        assert_eq!(s.shown(), "rclone::sftp,host=h,pass=***:dir");
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
    }

    #[test]
    fn names_outside_the_own_folder_only() {
        let s = RcloneStore::new("x:y", false);
        for bad in [".tgferry", ".tgferry/lock", "../a", "a//b", ""] {
            assert!(s.checked(bad).is_err(), "{bad}");
        }
        assert!(s.checked_loc(".tgferry/staged/a/b").is_ok());
        assert!(s.checked_loc(".tgferry/staged/../x").is_err());
        assert!(s.checked("a/b.jpg").is_ok());
        let caps = Caps {
            backend: "googlephotos".into(),
            can_move: false,
            can_copy: false,
            can_delete: false,
            media_only: true,
            precise_time: false,
        };
        assert_eq!(s.location(&caps, "a/b.jpg"), "a\u{2215}b.jpg");
    }

    #[test]
    fn errors_are_sorted_and_masked() {
        let ctx = Ctx {
            rcd: Rcd::shared(&RcloneConfig::from_env()),
            remote: Remote::new(":s3,secret_access_key=hunter22:b"),
            shown: "rclone::s3,secret_access_key=***:b".into(),
        };
        let e = |class, m: &str| {
            ctx.error(
                RcError {
                    class,
                    message: m.into(),
                },
                Some("data/ab/cd"),
            )
        };
        assert!(matches!(e(Class::Full, "quota"), StoreError::Full { .. }));
        assert!(e(Class::Auth, "x").is_fatal());
        assert!(e(Class::NotConfigured, "x").is_fatal());
        assert!(matches!(
            e(Class::NotFound, "object not found"),
            StoreError::Missing { .. }
        ));
        let t = e(
            Class::Transient,
            "dial :s3,secret_access_key=hunter22:b: refused",
        );
        assert!(!t.is_fatal());
        assert!(!t.to_string().contains("hunter22"), "{t}");
    }
}
