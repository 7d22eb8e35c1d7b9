//! Bounded reads of what users and stores supply: every file or blob tgferry reads whole
//! (state, journal, key file, catalog, run record, passphrase file) has a size cap, and a
//! file that should be a regular file is opened without waiting on a FIFO or a device.
//!
//! A FIFO in place of a state or a stored part would block `open` until a writer came
//! (forever, in a CI job), and a device such as `/dev/zero` would be read without end. So
//! [`open_regular`] opens with `O_NONBLOCK` (and, for the store's own files, `O_NOFOLLOW`),
//! refuses anything that is not a regular file, then makes the descriptor blocking again
//! for the reads; [`read_to_end`] stops one byte past its cap. The caps are generous for
//! real data and small enough that a hostile file cannot make tgferry allocate more.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The largest state file (or sealed state, or journal) read: 1 GiB, about 1.5 million
/// vault files. The catalog in a store holds a state, so its plaintext has the same cap.
pub const MAX_STATE_LEN: u64 = 1 << 30;

/// The largest passphrase file read (`TGFERRY_PASSPHRASE_FILE`).
pub const MAX_PASSPHRASE_FILE_LEN: u64 = 64 << 10;

/// The largest meta blob other than the key file and the catalog (the store's record of
/// its last run, ~60 bytes).
pub const MAX_SMALL_META_LEN: u64 = 1 << 20;

/// The largest meta blob `name` a store hands back: the key file, the catalog (a sealed
/// state: [`MAX_STATE_LEN`] plus its header and one tag per MiB), anything else small.
pub fn meta_limit(name: &str) -> u64 {
    match name {
        crate::store::META_KEY_FILE => crate::vault::MAX_KEY_FILE_LEN as u64,
        crate::store::META_CATALOG => {
            let segments = MAX_STATE_LEN.div_ceil(crate::vault::SEGMENT_SIZE as u64);
            MAX_STATE_LEN
                + crate::vault::CATALOG_HEADER_LEN as u64
                + segments * crate::vault::TAG_LEN as u64
        }
        _ => MAX_SMALL_META_LEN,
    }
}

/// The error for something over its cap (`InvalidData`, so that no caller takes it for a
/// full disk).
pub fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "is larger than {} (the most tgferry reads here); not a file tgferry wrote",
            crate::time::human_bytes(limit)
        ),
    )
}

/// The error for something that should be a regular file and is not.
pub fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    )
}

/// Opens `path` for reading without waiting: a FIFO, device, socket or folder is refused
/// at once (and, unless `follow_links`, a symbolic link in the last component too), and
/// the descriptor is made blocking again before it is returned.
pub fn open_regular(path: &Path, follow_links: bool) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = OFlags::NONBLOCK;
        if !follow_links {
            flags |= OFlags::NOFOLLOW;
        }
        options.custom_flags(flags.bits() as i32);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(e) if !follow_links && is_symlink_refusal(&e) => {
            return Err(not_regular("a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(describe(&kind)));
    }
    #[cfg(unix)]
    {
        use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
        fcntl_getfl(&file).and_then(|flags| fcntl_setfl(&file, flags - OFlags::NONBLOCK))?;
    }
    Ok(file)
}

/// What a file that is not a regular file is, in words.
fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "not a file"
    }
}

/// `open(O_NOFOLLOW)` on a symbolic link fails with `ELOOP` (FreeBSD: `EMLINK`).
#[cfg(unix)]
fn is_symlink_refusal(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let refusals: &[Errno] = if cfg!(target_os = "freebsd") {
        &[Errno::LOOP, Errno::MLINK]
    } else {
        &[Errno::LOOP]
    };
    refusals
        .iter()
        .any(|r| e.raw_os_error() == Some(r.raw_os_error()))
}

/// Reads all of `reader`, failing with [`too_large`] past `limit` bytes (it reads at most
/// one byte more than the cap). `size_hint` presizes the buffer (capped by `limit`).
pub fn read_to_end(reader: impl Read, limit: u64, size_hint: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size_hint.min(limit) as usize);
    reader.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Reads a whole regular file of at most `limit` bytes (see [`open_regular`]); a file
/// that says it is larger is refused before anything is read.
pub fn read_file(path: &Path, limit: u64, follow_links: bool) -> io::Result<Vec<u8>> {
    let file = open_regular(path, follow_links)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(limit));
    }
    read_to_end(file, limit, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_cap_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [7u8; 10]).unwrap();
        assert_eq!(read_file(&path, 10, true).unwrap(), [7u8; 10]);
        let e = read_file(&path, 9, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("larger than"), "{e}");
        // A stream that does not say its size is cut at the cap too.
        let e = read_to_end(std::io::repeat(0), 1000, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[cfg(unix)]
    #[test]
    fn fifos_devices_folders_and_unwanted_links_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = read_file(&fifo, 100, true).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read_file(Path::new("/dev/zero"), 100, true).unwrap_err();
        assert!(e.to_string().contains("device"), "{e}");
        let e = read_file(dir.path(), 100, true).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_file(&link, 100, true).unwrap(), b"x");
        let e = read_file(&link, 100, false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
