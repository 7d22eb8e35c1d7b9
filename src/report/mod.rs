//! Reports: turning runner events and states into what people read: a progress bar on a
//! terminal, steady progress lines in CI, the end-of-run summary and `tgferry status`.
//!
//! Everything a report prints that came from a file name, a state or an error goes
//! through [`shown`] first, so a name can neither drive the terminal nor issue GitHub
//! workflow commands.

pub mod progress;
pub mod status;
pub mod summary;

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` (a path key, an error, anything read from a state) made safe to print on a
/// terminal and in a GitHub Actions log:
///
/// - control characters (C0, DEL, C1: newlines, `ESC` that starts terminal escape
///   sequences, ...) are written `\xHH` (below U+0080) or `\u{HH}`, and so are the
///   characters that reorder or break text invisibly (bidirectional controls, U+2028 and
///   U+2029), so a name cannot add a line, move the cursor or disguise itself;
/// - a `::` at the start (after any white space) has its first colon written `\x3a`, and
///   the `[` of `##[` is written `\x5b`: the GitHub runner takes a log line that starts
///   with `::` (after trimming white space) or holds `##[` anywhere as a workflow
///   command.
///
/// Nothing else changes; backslashes stay as they are, so a [key](crate::source::key)
/// keeps its own escapes and the result stays unambiguous (a key never holds `\x` for a
/// byte below 0x80). Applying it twice changes nothing more.
pub fn shown(text: &str) -> Cow<'_, str> {
    let rest = text.trim_start();
    let command_at = rest.starts_with("::").then(|| text.len() - rest.len());
    if command_at.is_none() && !text.contains("##[") && !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        if Some(i) == command_at {
            out.push_str("\\x3a");
        } else if c == '[' && out.ends_with("##") {
            out.push_str("\\x5b");
        } else if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// `n` and a noun in the right number: `1 file`, `2 files`, `0 files`. `noun` is the
/// singular; the plural adds `s` (every noun a report counts takes `s`).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Characters that act instead of showing: controls, and the invisible ones that reorder
/// or break lines.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::{count, shown};

    #[test]
    fn counts_take_the_right_number() {
        assert_eq!(count(0u64, "file"), "0 files");
        assert_eq!(count(1u64, "file"), "1 file");
        assert_eq!(count(2u64, "part"), "2 parts");
    }

    #[test]
    fn ordinary_names_and_key_escapes_are_shown_as_they_are() {
        for text in [
            "photos/2024 summer/ünï €.jpg",
            "caf\\xe9.txt",
            "back\\\\slash",
            "Foo::Bar.3pm",
            "a/::b",
            "50% done, a:b",
            "#hash ## not[",
        ] {
            assert_eq!(shown(text), text);
            assert!(matches!(shown(text), std::borrow::Cow::Borrowed(_)));
        }
    }

    #[test]
    fn terminal_escapes_and_line_breaks_are_escaped() {
        assert_eq!(shown("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(shown("a\nb\rc\td\x7f"), "a\\x0ab\\x0dc\\x09d\\x7f");
        assert_eq!(shown("x\u{9b}31m"), "x\\u{9b}31m"); // C1 CSI
        assert_eq!(shown("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(shown("line\u{2028}break"), "line\\u{2028}break");
    }

    #[test]
    fn workflow_commands_cannot_be_issued_by_a_name() {
        let cases = [
            ("::error::pwned", "\\x3a:error::pwned"),
            ("  ::warning title=x::y", "  \\x3a:warning title=x::y"),
            ("\u{3000}::add-mask::s", "\u{3000}\\x3a:add-mask::s"),
            (
                "a\n::set-output name=done::true",
                "a\\x0a::set-output name=done::true",
            ),
            ("x ##[warning]y", "x ##\\x5bwarning]y"),
            ("##[stop-commands]tok", "##\\x5bstop-commands]tok"),
        ];
        for (text, want) in cases {
            let got = shown(text);
            assert_eq!(got, want);
            // What the runner would see: no line starts with `::`, none holds `##[`.
            for line in format!("failed: {got}\n  {got}\n{got}").lines() {
                assert!(!line.trim_start().starts_with("::"), "{line}");
                assert!(!line.contains("##["), "{line}");
            }
            assert_eq!(shown(&got), got, "applying it again changes nothing");
        }
    }
}
