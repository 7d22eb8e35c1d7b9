//! A local directory as a store.
//!
//! Parts are written into `<root>/.tgferry/tmp/` and renamed into place once complete and
//! fsynced, so a part under its final name is always whole. `.tgferry/` at the root is the
//! store's own; source paths under it are refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{PartInfo, Store, StoreError, Upload};

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
        Ok(self.root.join(name))
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
}

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

    async fn finish(mut self) -> Result<String, StoreError> {
        let file = self.file.take().expect("upload finished twice");
        let root = self.root.clone();
        let result = async {
            file.sync_data()?;
            drop(file);
            if let Some(parent) = self.dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&self.tmp, &self.dest).await?;
            if let Some(parent) = self.dest.parent() {
                let parent = parent.to_owned();
                tokio::task::spawn_blocking(move || crate::state::sync_dir(&parent))
                    .await
                    .map_err(std::io::Error::other)??;
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        result.map_err(|e| classify(&root, e))?;
        Ok(std::mem::take(&mut self.loc))
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Not finished: the temp file is all there is; remove it (a kill leaves it for
        // the next prepare()).
        if self.file.is_some() || !self.loc.is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
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

    async fn open(&self, loc: &str) -> Result<tokio::fs::File, StoreError> {
        let path = self.resolve(loc)?;
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

    async fn len(&self, loc: &str) -> Result<Option<u64>, StoreError> {
        let path = self.resolve(loc)?;
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
        let path = self.resolve(loc)?;
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
