//! A local directory as a store.
//!
//! Parts are written into `<root>/.tgferry/tmp/` and renamed into place once complete and
//! fsynced, so a part under its final name is always whole; a part that is abandoned is
//! never synced, and is removed at once (a small one) or by the next [`Store::prepare`] (a
//! large one: deleting it would hold up a stopping run). `.tgferry/` at the root is the
//! store's own; source
//! paths under it are refused. Staged parts live in `.tgferry/staged/<name>` and are
//! placed under their names by a hard link (a copy where links are not possible) renamed
//! over the name, so the staged part stays whole until the caller removes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{
    PartInfo, PartStat, RangeReader, STAGING_PREFIX, Store, StoreError, Upload, staged_name,
};
use crate::time::Timestamp;

/// The folder at the store root that belongs to tgferry itself.
pub const RESERVED_DIR: &str = ".tgferry";

/// A directory on a local file system.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    counter: AtomicU64,
    /// The store's lock (`.tgferry/lock`), held from `prepare` until the store is dropped.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl LocalStore {
    /// A store rooted at `root` (created by [`Store::prepare`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            counter: AtomicU64::new(0),
            lock: std::sync::Mutex::new(None),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(RESERVED_DIR).join("tmp")
    }

    fn error(&self, e: std::io::Error) -> StoreError {
        classify(&self.root, e)
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join(STAGING_PREFIX.trim_end_matches('/'))
    }

    /// The path of a stored part: a name [`resolve`](Self::resolve) accepts, or a staged
    /// part's location.
    fn resolve_loc(&self, loc: &str) -> Result<PathBuf, StoreError> {
        match loc.strip_prefix(STAGING_PREFIX) {
            Some(name) => Ok(self.staging_dir().join(self.checked(name)?)),
            None => self.resolve(loc),
        }
    }

    /// `name` if it is a clean relative path outside `.tgferry/`.
    fn checked<'a>(&self, name: &'a str) -> Result<&'a str, StoreError> {
        self.resolve(name).map(|_| name)
    }

    /// A read that failed: what `bounded` refuses (a FIFO, a device, a link, too large)
    /// names the blob; anything else is classified as usual.
    fn read_error(&self, name: &str, e: std::io::Error) -> StoreError {
        use std::io::ErrorKind::{InvalidData, InvalidInput};
        match e.kind() {
            InvalidData | InvalidInput => StoreError::Transient {
                message: format!("{}: {name} {e}", self.root.display()),
            },
            _ => self.error(e),
        }
    }

    fn resolve(&self, name: &str) -> Result<PathBuf, StoreError> {
        if !crate::source::is_clean_relative(name) {
            return Err(StoreError::Refused {
                name: name.into(),
                reason: "not a clean relative path".into(),
            });
        }
        if name == RESERVED_DIR || name.starts_with(".tgferry/") {
            return Err(StoreError::Refused {
                name: name.into(),
                reason: format!("{RESERVED_DIR}/ at the store root is tgferry's own folder"),
            });
        }
        // A plain part is named after its file's key: stored under the exact name.
        let names = crate::source::key::components(name).map_err(|reason| StoreError::Refused {
            name: name.into(),
            reason,
        })?;
        Ok(names.iter().fold(self.root.clone(), |path, n| path.join(n)))
    }
}

fn classify(root: &Path, e: std::io::Error) -> StoreError {
    use std::io::ErrorKind::*;
    let store = root.display().to_string();
    match e.kind() {
        StorageFull | QuotaExceeded | FileTooLarge => StoreError::Full {
            store,
            message: e.to_string(),
        },
        PermissionDenied | ReadOnlyFilesystem => StoreError::Unwritable {
            store,
            message: e.to_string(),
        },
        _ => StoreError::Transient {
            message: format!("{store}: {e}"),
        },
    }
}

/// Written bytes are handed to the disk in steps of this size while a part is written
/// (see [`BlockingFile::start_writeback`]), so the disk works while the next bytes are
/// encrypted instead of all at once in the part's final fsync.
const WRITEBACK_STEP: u64 = 4 << 20;

/// A part being written to a temp file.
#[derive(Debug)]
pub struct LocalUpload {
    root: PathBuf,
    file: Option<crate::blocking::BlockingFile>,
    tmp: PathBuf,
    dest: PathBuf,
    loc: String,
    /// Bytes written so far.
    written: u64,
    /// Bytes whose writeback has been started.
    flushed: u64,
    /// Set when the upload is dropped unfinished, so that a `finish` still syncing on its
    /// blocking thread does not put the part in place after all.
    abandoned: Arc<AtomicBool>,
}

/// An unfinished part of at least this many bytes is left in the temp folder when it is
/// dropped, for the next [`Store::prepare`] to remove: deleting a large file that was
/// just written waits for its writeback and frees its blocks (half a second for 512 MiB
/// on a busy disk), and a run that is stopping must not wait for that.
const LEAVE_BEHIND: u64 = 16 << 20;

impl Upload for LocalUpload {
    async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let file = self.file.as_mut().expect("upload used after finish");
        file.write_all(buf).map_err(|e| classify(&self.root, e))?;
        self.written += buf.len() as u64;
        if self.written - self.flushed >= WRITEBACK_STEP {
            file.start_writeback(self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(())
    }

    async fn finish(self) -> Result<String, StoreError> {
        self.finish_timed().await.map(|(loc, _)| loc)
    }

    async fn finish_timed(mut self) -> Result<(String, Option<Timestamp>), StoreError> {
        let file = self.file.take().expect("upload finished twice");
        let (tmp, dest) = (self.tmp.clone(), self.dest.clone());
        let abandoned = self.abandoned.clone();
        // All of it on one blocking thread: a caller that gives up on this part (the run
        // stops) drops this future while the sync runs, and is not held up by it; the
        // part is then not put in place.
        let done = tokio::task::spawn_blocking(move || {
            file.sync_data()?;
            drop(file);
            if abandoned.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the part was abandoned"));
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&tmp, &dest)?;
            let modified = modified(&std::fs::metadata(&dest)?);
            if let Some(parent) = dest.parent() {
                crate::state::sync_dir(parent)?;
            }
            Ok::<_, std::io::Error>(modified)
        });
        let modified = done
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| classify(&self.root, e))?;
        Ok((std::mem::take(&mut self.loc), modified))
    }
}

/// A file's modification time, where the file system keeps one.
fn modified(md: &std::fs::Metadata) -> Option<Timestamp> {
    md.modified().ok().map(crate::time::from_system)
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Not finished: the temp file is all there is, never synced. A small one is
        // removed; a large one is left for the next prepare(), as a kill leaves it.
        if self.file.is_some() || !self.loc.is_empty() {
            self.abandoned.store(true, Ordering::SeqCst);
            if self.written < LEAVE_BEHIND {
                let _ = std::fs::remove_file(&self.tmp);
            }
        }
    }
}

impl LocalStore {
    /// Starts a temp file in the store's tmp folder that `finish` renames to `dest`.
    async fn begin_tmp(&self, dest: PathBuf) -> Result<LocalUpload, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp_dir()
            .join(format!("{}-{n}.part", std::process::id()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| self.error(e))?
            .into_std()
            .await;
        let file = crate::blocking::BlockingFile::new(file);
        Ok(LocalUpload {
            root: self.root.clone(),
            file: Some(file),
            tmp,
            dest,
            loc: String::from("meta"),
            written: 0,
            flushed: 0,
            abandoned: Arc::default(),
        })
    }

    fn meta_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(StoreError::Refused {
                name: name.into(),
                reason: "not a meta blob name".into(),
            });
        }
        Ok(self.root.join(RESERVED_DIR).join(name))
    }
}

impl Store for LocalStore {
    type Upload = LocalUpload;
    type Reader = tokio::fs::File;

    async fn prepare(&self) -> Result<(), StoreError> {
        if self.lock.lock().unwrap().is_some() {
            return Ok(()); // prepared already by this process
        }
        let own = self.root.join(RESERVED_DIR);
        tokio::fs::create_dir_all(&own)
            .await
            .map_err(|e| self.error(e))?;
        // One process per store: a second one must not clear the first one's temp files
        // or race it to create the vault's key file.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(own.join("lock"))
            .map_err(|e| self.error(e))?;
        match crate::state::try_lock_briefly(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(StoreError::Locked {
                    store: self.root.display().to_string(),
                });
            }
            Err(e) => return Err(self.error(e)),
        }
        *self.lock.lock().unwrap() = Some(file);
        let tmp = self.tmp_dir();
        if tmp.exists() {
            tokio::fs::remove_dir_all(&tmp)
                .await
                .map_err(|e| self.error(e))?;
        }
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| self.error(e))?;
        // A write probe: fail now, with a clear message, rather than on every file.
        let probe = tmp.join("probe");
        tokio::fs::write(&probe, b"tgferry")
            .await
            .map_err(|e| self.error(e))?;
        tokio::fs::remove_file(&probe)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn begin(&self, name: &str, _len: u64) -> Result<LocalUpload, StoreError> {
        let dest = self.resolve(name)?;
        let mut upload = self.begin_tmp(dest).await?;
        upload.loc = name.to_owned();
        Ok(upload)
    }

    async fn begin_staged(&self, name: &str, _len: u64) -> Result<LocalUpload, StoreError> {
        let loc = staged_name(self.checked(name)?);
        let dest = self.resolve_loc(&loc)?;
        let mut upload = self.begin_tmp(dest).await?;
        upload.loc = loc;
        Ok(upload)
    }

    async fn place(&self, from: &str, name: &str) -> Result<Option<Timestamp>, StoreError> {
        if !from.starts_with(STAGING_PREFIX) {
            return Err(StoreError::Refused {
                name: from.into(),
                reason: "only a staged part is placed under another name".into(),
            });
        }
        let src = self.resolve_loc(from)?;
        let dest = self.resolve(name)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp_dir()
            .join(format!("{}-{n}.place", std::process::id()));
        let placed = tokio::task::spawn_blocking(move || place_blocking(&src, &tmp, &dest))
            .await
            .map_err(|e| StoreError::Transient {
                message: format!("placing {name} stopped: {e}"),
            })?;
        placed.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Missing { loc: from.into() }
            } else {
                self.error(e)
            }
        })
    }

    async fn staged(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.staging_dir();
        let walk = tokio::task::spawn_blocking(move || list_staged(&dir));
        walk.await
            .map_err(|e| StoreError::Transient {
                message: format!("listing stopped: {e}"),
            })?
            .map_err(|e| self.error(e))
    }

    async fn stat(&self, loc: &str) -> Result<Option<PartStat>, StoreError> {
        let path = self.resolve_loc(loc)?;
        match tokio::fs::symlink_metadata(&path).await {
            Ok(md) if md.is_file() => Ok(Some(PartStat {
                len: md.len(),
                modified: modified(&md),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn open(&self, loc: &str) -> Result<tokio::fs::File, StoreError> {
        let path = self.resolve_loc(loc)?;
        // A FIFO or device in a part's place would block the read (or never end), a link
        // would lead outside the store: refused at once (`bounded::open_regular`).
        match crate::bounded::open_regular(&path, false) {
            Ok(file) => Ok(tokio::fs::File::from_std(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Missing { loc: loc.into() })
            }
            Err(e) => Err(self.read_error(loc, e)),
        }
    }

    /// The part opened as [`open`](Store::open) does, then a seek to `offset`: nothing
    /// before the range is read.
    async fn open_range(
        &self,
        loc: &str,
        offset: u64,
        len: u64,
    ) -> Result<RangeReader, StoreError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = self.open(loc).await?;
        // (A seek past the end is allowed; reads there give nothing.)
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| self.read_error(loc, e))?;
        Ok(Box::new(file.take(len)))
    }

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        let path = self.resolve_loc(loc)?;
        // Like `open`, a link is not a part.
        match tokio::fs::symlink_metadata(&path).await {
            Ok(md) if md.is_file() => Ok(Some(md.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn put_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.meta_path(name)?;
        let mut upload = self.begin_tmp(path.clone()).await?;
        upload.write(bytes).await?;
        upload.finish().await.map(|_| ())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.meta_path(name)?;
        let limit = crate::bounded::meta_limit(name);
        let read =
            tokio::task::spawn_blocking(move || crate::bounded::read_file(&path, limit, false));
        match read.await.map_err(std::io::Error::other) {
            Ok(Ok(b)) => Ok(Some(b)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Ok(Err(e)) | Err(e) => Err(self.read_error(&format!("{RESERVED_DIR}/{name}"), e)),
        }
    }

    async fn remove(&self, loc: &str) -> Result<(), StoreError> {
        let path = self.resolve_loc(loc)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn list_parts(&self, _hint: Option<&str>) -> Result<Vec<PartInfo>, StoreError> {
        let data = self.root.join("data");
        let walk = tokio::task::spawn_blocking(move || list_vault_parts(&data));
        walk.await
            .map_err(|e| StoreError::Transient {
                message: format!("listing stopped: {e}"),
            })?
            .map_err(|e| self.error(e))
    }
}

/// Gives `dest` the bytes of `src` and leaves `src` as it is: a hard link (or, where the
/// file system has none, a synced copy) made at `tmp` and renamed over `dest`, so `dest`
/// is whole whenever it has its name. Returns `dest`'s modification time.
fn place_blocking(src: &Path, tmp: &Path, dest: &Path) -> std::io::Result<Option<Timestamp>> {
    let _ = std::fs::remove_file(tmp);
    if std::fs::hard_link(src, tmp).is_err() {
        // FAT, some network file systems: copy instead (the bytes were synced once as
        // the staged part; the copy is synced before it takes the name).
        let copied = std::fs::copy(src, tmp).and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(tmp)?
                .sync_data()
        });
        if let Err(e) = copied {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
    }
    let renamed = (|| {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(tmp, dest)
    })();
    // Gone after a rename, unless `dest` was that link already (rename then does
    // nothing): either way nothing is left in the temp folder.
    let _ = std::fs::remove_file(tmp);
    renamed?;
    let modified = modified(&std::fs::metadata(dest)?);
    if let Some(parent) = dest.parent() {
        crate::state::sync_dir(parent)?;
    }
    Ok(modified)
}

/// Every file under the staging folder, as a staged location.
fn list_staged(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut locs = Vec::new();
    if !dir.exists() {
        return Ok(locs);
    }
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .map_err(std::io::Error::other)?;
        // Names the store never writes (not UTF-8, not clean) are not its to remove.
        let Some(rel) = rel.to_str() else { continue };
        let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
        if crate::source::is_clean_relative(&rel) {
            locs.push(staged_name(&rel));
        }
    }
    Ok(locs)
}

/// Vault parts under `data/`: `data/<2 hex>/<32 hex>`, nothing else.
fn list_vault_parts(data: &Path) -> std::io::Result<Vec<PartInfo>> {
    let mut parts = Vec::new();
    if !data.exists() {
        return Ok(parts);
    }
    for entry in walkdir::WalkDir::new(data).min_depth(2).max_depth(2) {
        let entry = entry.map_err(std::io::Error::other)?;
        let name = entry.file_name().to_string_lossy();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        let dir = entry
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !entry.file_type().is_file() || !hex(&name, 32) || !hex(&dir, 2) {
            continue;
        }
        let md = entry.metadata().map_err(std::io::Error::other)?;
        let stored = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        parts.push(PartInfo {
            loc: format!("data/{dir}/{name}"),
            len: md.len(),
            stored,
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read(store: &LocalStore, loc: &str) -> Vec<u8> {
        let mut back = Vec::new();
        let mut file = store.open(loc).await.unwrap();
        file.read_to_end(&mut back).await.unwrap();
        back
    }

    /// A staged part lives under `.tgferry/staged/`, is listed there, and is placed under
    /// its name without being moved: both hold the bytes until the caller removes it.
    /// Source names cannot reach the staging folder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_part_is_placed_under_its_name_and_stays_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.prepare().await.unwrap();
        let mut old = store.begin("d/a.bin", 3).await.unwrap();
        old.write(b"old").await.unwrap();
        assert_eq!(old.finish().await.unwrap(), "d/a.bin");

        let mut new = store.begin_staged("d/a.bin", 3).await.unwrap();
        new.write(b"new").await.unwrap();
        let (loc, staged_time) = new.finish_timed().await.unwrap();
        assert_eq!(loc, ".tgferry/staged/d/a.bin");
        assert!(staged_time.is_some());
        assert_eq!(
            read(&store, "d/a.bin").await,
            b"old",
            "the name is untouched"
        );
        assert_eq!(store.staged().await.unwrap(), std::slice::from_ref(&loc));

        let placed = store.place(&loc, "d/a.bin").await.unwrap();
        assert_eq!(read(&store, "d/a.bin").await, b"new");
        assert_eq!(read(&store, &loc).await, b"new", "the staged copy stays");
        assert_eq!(
            store.stat("d/a.bin").await.unwrap().unwrap().modified,
            placed
        );
        store.remove(&loc).await.unwrap();
        assert!(store.staged().await.unwrap().is_empty());
        assert_eq!(read(&store, "d/a.bin").await, b"new");
        assert!(
            std::fs::read_dir(store.tmp_dir()).unwrap().next().is_none(),
            "nothing left in the temp folder"
        );

        for refused in [".tgferry/staged/x", ".tgferry/lock"] {
            assert!(matches!(
                store.begin(refused, 1).await,
                Err(StoreError::Refused { .. })
            ));
        }
        assert!(matches!(
            store.place("d/a.bin", "d/b.bin").await,
            Err(StoreError::Refused { .. })
        ));
        assert!(matches!(
            store.place(".tgferry/staged/gone", "gone").await,
            Err(StoreError::Missing { .. })
        ));
    }

    /// An upload dropped unfinished, or while it finishes, is never put in place; a
    /// small one is removed at once, a large one by the next process's `prepare()`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_upload_is_never_put_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.prepare().await.unwrap();
        let tmp_files = || std::fs::read_dir(store.tmp_dir()).unwrap().count();
        let mut upload = store.begin("a.bin", 1 << 20).await.unwrap();
        upload.write(&vec![7; 1 << 20]).await.unwrap();
        drop(upload);
        let mut upload = store.begin("b.bin", 1 << 20).await.unwrap();
        upload.write(&vec![7; 1 << 20]).await.unwrap();
        // Dropped at its first wait: while the sync runs on its blocking thread.
        let mut finishing = Box::pin(upload.finish());
        assert!(futures_poll_once(finishing.as_mut()).await.is_none());
        drop(finishing);
        assert_eq!(tmp_files(), 0, "small parts are removed at once");

        let mut upload = store.begin("c.bin", LEAVE_BEHIND).await.unwrap();
        upload.write(&vec![7; LEAVE_BEHIND as usize]).await.unwrap();
        let mut finishing = Box::pin(upload.finish());
        assert!(futures_poll_once(finishing.as_mut()).await.is_none());
        drop(finishing);
        assert_eq!(
            tmp_files(),
            1,
            "a large part is left for the next prepare()"
        );
        // The sync it was in finishes on its own, and does not put the part in place.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for name in ["a.bin", "b.bin", "c.bin"] {
            assert_eq!(store.len(name).await.unwrap(), None, "{name}");
        }
        drop(store);
        let next = LocalStore::new(dir.path());
        next.prepare().await.unwrap();
        assert_eq!(std::fs::read_dir(next.tmp_dir()).unwrap().count(), 0);
    }

    /// Polls a future once: its output, or `None` if it is waiting.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    /// A ranged read gives exactly the range: from the start, an unaligned middle,
    /// ending at the part's end, past it (short), beyond it (empty), empty; a missing
    /// part is `Missing`; a staged part is read like any other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ranged_read_gives_exactly_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.prepare().await.unwrap();
        let blob: Vec<u8> = (0..200_003u32).map(|i| (i * 13 % 253) as u8).collect();
        for staged in [false, true] {
            let mut up = if staged {
                store.begin_staged("data/ab/pack", blob.len() as u64).await
            } else {
                store.begin("data/ab/pack", blob.len() as u64).await
            }
            .unwrap();
            up.write(&blob).await.unwrap();
            let loc = up.finish().await.unwrap();
            crate::store::memory::ranges::assert_ranges(&store, &loc, &blob, "data/00/gone").await;
        }
        assert!(matches!(
            store.open_range(".tgferry/lock", 0, 1).await,
            Err(StoreError::Refused { .. })
        ));
    }

    /// A part longer than several writeback steps, written in uneven pieces, reads back
    /// whole: the writeback hints never change what is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_part_written_past_several_writeback_steps_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.prepare().await.unwrap();
        let data: Vec<u8> = (0..(WRITEBACK_STEP * 2 + 12_345) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut upload = store.begin("x.bin", data.len() as u64).await.unwrap();
        for piece in data.chunks(700_001) {
            upload.write(piece).await.unwrap();
        }
        assert!(
            upload.flushed >= WRITEBACK_STEP * 2,
            "writeback was started"
        );
        let loc = upload.finish().await.unwrap();
        let mut back = Vec::new();
        store
            .open(&loc)
            .await
            .unwrap()
            .read_to_end(&mut back)
            .await
            .unwrap();
        assert!(back == data, "the part reads back byte for byte");
    }
}
