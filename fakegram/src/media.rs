//! What a file posted by name becomes, as Telegram's apps send it: a photo, a video, a
//! music file, a voice note or a plain document, chosen by its extension, with its MIME
//! type; and a photo's sizes — the stripped preview, the small "m" size (a different,
//! smaller blob derived from the image) and the original as the largest, "y".
//!
//! Source for the sizes: <https://core.telegram.org/api/files>, "Image thumbnail types"
//! (`m` box 320x320, `y` box 1280x1280, `i` strip) and "Stripped thumbnails"; photos are
//! downloaded with `inputPhotoFileLocation`, "thumb_size taken from the type field of the
//! desired PhotoSize".

use std::io;
use std::path::{Path, PathBuf};

use crate::model::MediaKind;

/// The small size of a photo: "m", box 320x320.
pub const THUMB_SMALL: &str = "m";

/// The largest size of a photo (its original bytes): "y", box 1280x1280, sent as
/// `photoSizeProgressive` as Telegram sends its largest JPEG sizes.
pub const THUMB_FULL: &str = "y";

/// The stripped preview inside the photo object: "i" (never downloaded).
pub const THUMB_STRIPPED: &str = "i";

/// Longest "m" blob.
const SMALL_MAX: u64 = 1024;

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The kind of a file posted as `name`: `.jpg .jpeg .png .webp` a photo, `.mp4 .mov
/// .mkv` a video, `.mp3 .m4a .flac .ogg` music, `.oga .opus` a voice note, anything else
/// a plain document.
pub fn kind_of(name: &str) -> MediaKind {
    match extension(name).as_str() {
        "jpg" | "jpeg" | "png" | "webp" => MediaKind::Photo,
        "mp4" | "mov" | "mkv" => MediaKind::Video,
        "mp3" | "m4a" | "flac" | "ogg" => MediaKind::Audio,
        "oga" | "opus" => MediaKind::Voice,
        _ => MediaKind::File,
    }
}

/// The MIME type of a file posted as `name` (`application/octet-stream` when unknown;
/// voice notes are `audio/ogg`, as Telegram's apps record them).
pub fn mime_of(name: &str) -> &'static str {
    match extension(name).as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "json" => "application/json",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// Width and height from a PNG, JPEG or WebP header, if it has one the fake can read.
pub fn image_size(b: &[u8]) -> Option<(i32, i32)> {
    let be32 = |at: usize| -> Option<i32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as i32)
    };
    let le16 = |at: usize| -> Option<i32> {
        Some(i32::from(u16::from_le_bytes(
            b.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // Walk the segments to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC).
        let mut at = 2;
        while at + 9 < b.len() {
            if b[at] != 0xff {
                return None;
            }
            let marker = b[at + 1];
            let len = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
            if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
                let h = u16::from_be_bytes([b[at + 5], b[at + 6]]);
                let w = u16::from_be_bytes([b[at + 7], b[at + 8]]);
                return Some((i32::from(w), i32::from(h)));
            }
            at += 2 + len;
        }
        return None;
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8X" => {
                let w = i32::from_le_bytes([*b.get(24)?, b[25], b[26], 0]) + 1;
                let h = i32::from_le_bytes([*b.get(27)?, b[28], b[29], 0]) + 1;
                Some((w, h))
            }
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some((
                    (bits & 0x3fff) as i32 + 1,
                    ((bits >> 14) & 0x3fff) as i32 + 1,
                ))
            }
            _ => None,
        };
    }
    None
}

/// `(w, h)` scaled down to fit a `side`-pixel box (never up).
pub fn fit_box((w, h): (i32, i32), side: i32) -> (i32, i32) {
    let longest = w.max(h);
    if longest <= side || longest <= 0 {
        return (w, h);
    }
    let scale = |x: i32| ((i64::from(x) * i64::from(side)) / i64::from(longest)).max(1) as i32;
    (scale(w), scale(h))
}

/// How long the "m" blob of a photo of `size` bytes is: half the image, at most 1 KiB
/// (at least one byte of a non-empty image).
pub fn small_len(size: u64) -> u64 {
    (size / 2).clamp(1, SMALL_MAX).min(size)
}

/// The "m" blob from the first [`small_len`] bytes of the image: each byte inverted, so
/// it always differs from the original and is smaller (a stand-in for the 320-pixel
/// JPEG Telegram would make).
pub fn small_from_prefix(prefix: &[u8]) -> Vec<u8> {
    prefix.iter().map(|b| !b).collect()
}

/// `sizes` of the largest size's `photoSizeProgressive`: the prefixes at a quarter, half
/// and three quarters, then the whole image (increasing, ending at its size).
pub fn progressive_sizes(size: u64) -> Vec<i32> {
    let size = size.min(i32::MAX as u64) as i32;
    let mut out: Vec<i32> = [size / 4, size / 2, size / 4 * 3, size]
        .into_iter()
        .filter(|s| *s > 0)
        .collect();
    out.dedup();
    out
}

/// The stripped preview's payload (see the module documentation): the header bytes
/// Telegram's format starts with (version 1, height and width of a 40-pixel box), then a
/// few bytes of the image, standing in for the real, tiny JPEG body.
pub fn stripped(image: &[u8], (w, h): (i32, i32)) -> Vec<u8> {
    let (w, h) = fit_box((w, h), 40);
    let mut out = vec![1, h.clamp(1, 255) as u8, w.clamp(1, 255) as u8];
    out.extend(image.iter().take(16));
    out
}

/// Every regular file under `dir`, recursively (symbolic links are not followed), with
/// its file name, in the byte order of the paths relative to `dir`.
pub fn files_under(dir: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    if !dir.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not a folder"));
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot list {}: {e}", d.display())))?;
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    let relative = |p: &PathBuf| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .as_os_str()
            .as_encoded_bytes()
            .to_vec()
    };
    found.sort_by_cached_key(relative);
    Ok(found
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (p, name)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_types_by_extension() {
        assert_eq!(kind_of("a.JPG"), MediaKind::Photo);
        assert_eq!(kind_of("dir.v2/clip.mkv"), MediaKind::Video);
        assert_eq!(kind_of("song.flac"), MediaKind::Audio);
        assert_eq!(kind_of("note.opus"), MediaKind::Voice);
        assert_eq!(kind_of("README"), MediaKind::File);
        assert_eq!(mime_of("x.mov"), "video/quicktime");
        assert_eq!(mime_of("x.oga"), "audio/ogg");
        assert_eq!(mime_of("x.bin"), "application/octet-stream");
    }

    #[test]
    fn image_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(640u32.to_be_bytes());
        png.extend(480u32.to_be_bytes());
        assert_eq!(image_size(&png), Some((640, 480)));
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc2, 0, 17, 8, 0, 100, 0, 200, 3, 0, 0,
        ];
        assert_eq!(image_size(&jpeg), Some((200, 100)));
        assert_eq!(image_size(b"not an image"), None);
        assert_eq!(fit_box((2560, 1280), 320), (320, 160));
        assert_eq!(fit_box((100, 50), 320), (100, 50));
    }

    #[test]
    fn files_in_byte_order_of_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["b/z.txt", "a.jpg", "B.mp3", "b/a/x.bin", "b-c.opus"] {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, p).unwrap();
        }
        let names: Vec<String> = files_under(dir.path())
            .unwrap()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(names, ["B.mp3", "a.jpg", "b-c.opus", "x.bin", "z.txt"]);
        assert!(files_under(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(small_len(10_000), 1024);
        assert_eq!(small_len(10), 5);
        assert_eq!(small_len(1), 1);
        assert_eq!(small_len(0), 0);
        assert_eq!(small_from_prefix(&[0, 0xff]), vec![0xff, 0]);
        assert_eq!(progressive_sizes(1000), vec![250, 500, 750, 1000]);
        assert_eq!(progressive_sizes(2), vec![1, 2]);
        assert_eq!(*progressive_sizes(7).last().unwrap(), 7);
    }
}
