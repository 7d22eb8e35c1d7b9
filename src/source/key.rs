//! Path keys: how a file's name is written as the text that keys it everywhere (the
//! state's maps, the journal, the catalog, plain-mode part names), losslessly for any name
//! a Unix file system can hold.
//!
//! A key is the path relative to the source root, components joined by `/`, written as
//! UTF-8 text, with exactly two escapes:
//!
//! - a backslash (a legal byte in a Unix name) is written `\\`;
//! - each byte that is not part of valid UTF-8 is written `\xHH` (two lowercase hex
//!   digits), as `caf\xe9.txt` for the Latin-1 name `café.txt`.
//!
//! Nothing else is escaped, so every UTF-8 name without a backslash is its own key (and
//! every key written before the escapes existed keeps its meaning). The mapping is one to
//! one: every name has exactly one key ([`encode`]) and a key stands for exactly one name
//! ([`decode`]); text that is not the key of its own decoding (a `\` followed by anything
//! else, uppercase hex, `\xHH` for a byte that is valid UTF-8 where it stands) is not a key
//! and is refused, so an escaped key and a real name can never collide.
//!
//! Showing a key to people is another matter (control characters, terminal escapes): see
//! [`crate::report::shown`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// The key of a name given as bytes (a whole relative path with `/` separators, or one
/// component).
pub fn encode(bytes: &[u8]) -> String {
    let mut key = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                key.push_str("\\\\");
            } else {
                key.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(key, "\\x{b:02x}");
        }
    }
    key
}

/// The key of a name of this platform (one component, or a relative path with `/`
/// separators); `None` where it cannot be kept: off Unix, a name that is not Unicode.
pub fn from_os(name: &std::ffi::OsStr) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(encode(name.as_bytes()))
    }
    #[cfg(not(unix))]
    {
        name.to_str().map(|n| from_text(n).into_owned())
    }
}

/// The key of a name that is text (a UTF-8 name from a remote): only backslashes are
/// escaped.
pub fn from_text(name: &str) -> Cow<'_, str> {
    if name.contains('\\') {
        Cow::Owned(name.replace('\\', "\\\\"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The exact bytes `key` stands for, or `None` if it is not a key (see the module docs).
pub fn decode(key: &str) -> Option<Cow<'_, [u8]>> {
    if !key.contains('\\') {
        return Some(Cow::Borrowed(key.as_bytes()));
    }
    let mut out = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', hi, lo, tail @ ..] => {
                out.push(hex_digit(*hi)? << 4 | hex_digit(*lo)?);
                rest = tail;
            }
            _ => return None,
        }
    }
    // Canonical: only bytes that are not UTF-8 where they stand may be `\xHH`.
    (encode(&out) == key).then_some(Cow::Owned(out))
}

/// The name `key` stands for if it is UTF-8 text (for remotes whose names are text);
/// `None` if it is not a key or stands for bytes that are not UTF-8.
pub fn to_text(key: &str) -> Option<Cow<'_, str>> {
    match decode(key)? {
        Cow::Borrowed(_) => Some(Cow::Borrowed(key)),
        Cow::Owned(bytes) => String::from_utf8(bytes).ok().map(Cow::Owned),
    }
}

/// A lowercase hex digit's value.
fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    }
}

/// The components of a key as names of this platform, checked to be clean: no empty,
/// `.` or `..` component, no NUL, not absolute. On Unix every key of such a name has its
/// exact bytes back; elsewhere only names that are text without a backslash (which there
/// would be a separator) can be, and the error says so.
pub fn components(key: &str) -> Result<Vec<std::ffi::OsString>, String> {
    if !super::is_clean_relative(key) {
        return Err(
            "not a clean relative path (absolute, or an empty, `.` or `..` component, \
             a NUL, or a backslash that is not `\\\\` or `\\xHH`)"
                .into(),
        );
    }
    let bytes = decode(key).expect("a clean key decodes");
    bytes.split(|&b| b == b'/').map(os_name).collect()
}

#[cfg(unix)]
fn os_name(bytes: &[u8]) -> Result<std::ffi::OsString, String> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::ffi::OsStr::from_bytes(bytes).to_owned())
}

#[cfg(not(unix))]
fn os_name(bytes: &[u8]) -> Result<std::ffi::OsString, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\\') => Ok(text.into()),
        _ => Err(
            "the name holds bytes that are not UTF-8 or a backslash, which this \
                  platform cannot give a file name; restore it on Unix"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_without_a_backslash_are_their_own_key() {
        for name in [
            "a",
            "photos 2024/ünï €.jpg",
            "a..b",
            "x%y:z",
            "tab\there",
            "::x",
        ] {
            assert_eq!(encode(name.as_bytes()), name);
            assert_eq!(decode(name).unwrap(), name.as_bytes());
            assert_eq!(from_text(name), name);
        }
    }

    #[test]
    fn backslashes_and_bytes_that_are_not_utf8_are_escaped_and_come_back() {
        let cases: &[(&[u8], &str)] = &[
            (b"a\\b", "a\\\\b"),
            (b"caf\xe9.txt", "caf\\xe9.txt"),
            (b"\xff\xfe", "\\xff\\xfe"),
            // A cut-short sequence, then ASCII: each byte of it escaped on its own.
            (b"\xe2\x82.x", "\\xe2\\x82.x"),
            // A real name that looks like an escape keeps its backslash escaped.
            (b"\\xe9", "\\\\xe9"),
            (b"dir\\/\xc3", "dir\\\\/\\xc3"),
        ];
        for &(bytes, key) in cases {
            assert_eq!(encode(bytes), key, "{bytes:?}");
            assert_eq!(decode(key).unwrap(), bytes, "{key}");
        }
        assert_eq!(from_text("a\\b"), "a\\\\b");
        assert_eq!(to_text("a\\\\b").unwrap(), "a\\b");
        assert_eq!(to_text("caf\\xe9"), None, "not text");
    }

    #[test]
    fn text_that_is_not_the_key_of_its_own_name_is_refused() {
        for bad in [
            "a\\b",       // unknown escape
            "a\\",        // cut short
            "\\x4",       // one digit
            "\\x41",      // "A" is UTF-8: its key is "A"
            "\\xE9",      // uppercase hex
            "\\x2f",      // "/" is UTF-8
            "\\x00",      // so is NUL
            "\\xc3\\xa9", // "é" in UTF-8: its key is "é"
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_byte_string_round_trips() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len % 17)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly the interesting bytes: backslash, 'x', hex digits, high bytes.
                    [b'\\', b'x', b'e', b'9', 0xe9, 0xc3, 0xa9, 0xff, b'a'][x as usize % 9]
                })
                .collect();
            let key = encode(&bytes);
            assert_eq!(decode(&key).unwrap(), bytes.as_slice(), "{key}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn components_are_exact_bytes_and_clean() {
        use std::os::unix::ffi::OsStrExt;
        let c = components("a\\\\b/caf\\xe9").unwrap();
        assert_eq!(c[0].as_bytes(), b"a\\b");
        assert_eq!(c[1].as_bytes(), b"caf\xe9");
        // `\\..\\` is one odd component on Unix, not a way up.
        assert_eq!(components("\\\\..\\\\").unwrap()[0].as_bytes(), b"\\..\\");
        for bad in ["", "/a", "a//b", "a/../b", "..", "a\\q", "\\x41"] {
            assert!(components(bad).is_err(), "{bad}");
        }
    }
}
