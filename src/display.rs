//! Text for people: user-controlled strings made safe to print to a terminal,
//! and measured the way a terminal lays them out.
//!
//! Labels, argv, scopes, paths, environment names and a failed run's stderr
//! come from users and commands, and a terminal obeys control characters: an
//! ESC or C1 CSI starts a sequence that can retitle the window, clear the
//! screen or move the cursor over what was printed. Human output therefore
//! shows them as escapes, the way `ls -b` does. `--json` has serde_json's
//! escaping instead, and cached output is data: `show --stdout` and `run`
//! copy it byte for byte and never come here.
//!
//! The scheme, one for all human output:
//!
//! | input | shown as |
//! | --- | --- |
//! | `\` | `\\` |
//! | tab, newline, carriage return, ESC | `\t`, `\n`, `\r`, `\e` |
//! | other C0 controls (U+0000..U+001F) and DEL | `\xNN`, two lowercase hex digits: BEL is `\x07` |
//! | C1 controls (U+0080..U+009F) | `\u0080`..`\u009f` |
//! | bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) | `\u202e` and so on |
//! | zero-width characters (U+200B..U+200D, U+2060, U+FEFF) | `\u200b` and so on |
//! | a byte that is not part of valid UTF-8 | `\xNN`: `\xff` |
//!
//! Every backslash in the result starts an escape, so the mapping cannot be
//! inverted ambiguously: different inputs always look different (which a lossy
//! U+FFFD replacement does not give). `\xNN` below 0x80 is a control byte and
//! from 0x80 up an invalid one, so the two never collide. The escapes are also
//! what bash's `$'...'` quoting reads, which lets [`crate::key`] print a
//! command line that stays pasteable.

use std::borrow::Cow;
use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr;

/// True for the characters a terminal may act on rather than draw: C0
/// controls, DEL and C1 controls.
pub fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}')
}

/// True for characters that draw nothing yet change how a line reads: the
/// bidirectional controls reorder the text around them (a row's columns can
/// be made to show swapped, as in the "Trojan Source" attacks), and the
/// zero-width ones make two different strings look alike.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// `text` with control characters and backslashes escaped (see the module
/// docs); borrowed when there is nothing to escape, as for most labels.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_keeping(text, &[])
}

/// Bytes of unknown encoding (argv, paths, stderr) as one escaped line: valid
/// UTF-8 as in [`escape`], every other byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    escape_bytes_keeping(bytes, &[])
}

/// Like [`escape_bytes`] but for a block of lines shown as lines (a failed
/// run's stderr in `show`): newlines and tabs stay as they are, since they
/// only lay text out; everything else a terminal could act on is escaped.
pub fn escape_block(bytes: &[u8]) -> Cow<'_, str> {
    escape_bytes_keeping(bytes, &['\n', '\t'])
}

/// Columns `text` takes on a terminal: 2 for CJK and most emoji, 0 for
/// combining marks. Meant for text already escaped, so no controls.
pub fn width(text: &str) -> usize {
    text.width()
}

/// `text` cut to at most `max` columns, an ellipsis marking the cut and
/// counted within `max`. Cuts between characters only: a wide character
/// that would straddle the limit is left out whole.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if width(text) <= max {
        return Cow::Borrowed(text);
    }
    let Some(room) = max.checked_sub(1) else {
        return Cow::Borrowed("");
    };
    // Measured as growing prefixes rather than summed per char: unicode-width
    // gives some sequences (emoji with ZWJ or variation selectors) a width
    // that differs from the sum of their parts.
    let mut end = 0;
    for (at, c) in text.char_indices() {
        let next = at + c.len_utf8();
        if width(&text[..next]) > room {
            break;
        }
        end = next;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

fn escape_keeping<'a>(text: &'a str, keep: &[char]) -> Cow<'a, str> {
    if !text.chars().any(|c| needs_escape(c, keep)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    push_escaped(&mut out, text, keep);
    Cow::Owned(out)
}

fn escape_bytes_keeping<'a>(bytes: &'a [u8], keep: &[char]) -> Cow<'a, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return escape_keeping(text, keep);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid(), keep);
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char, keep: &[char]) -> bool {
    (c == '\\' || is_control(c) || is_invisible(c)) && !keep.contains(&c)
}

fn push_escaped(out: &mut String, text: &str, keep: &[char]) {
    for c in text.chars() {
        if !needs_escape(c, keep) {
            out.push(c);
            continue;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{80}'..='\u{9f}' | '\u{100}'.. => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            _ => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_untouched() {
        for text in ["git status", "天気 ☀️", "a'b\"c", ""] {
            assert!(
                matches!(escape(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
            assert!(matches!(escape_bytes(text.as_bytes()), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn controls_are_shown_not_sent() {
        assert_eq!(
            escape("\x1b]0;pwned\x07\x1b[2J\r\n\t\0\x7f"),
            r"\e]0;pwned\x07\e[2J\r\n\t\x00\x7f"
        );
        // U+009B is CSI on terminals that take 8-bit controls.
        assert_eq!(escape("a\u{9b}2Jb\u{80}"), r"a\u009b2Jb\u0080");
        // Just past the C1 range: a printable character.
        assert_eq!(escape("\u{a0}é"), "\u{a0}é");
    }

    #[test]
    fn bidi_and_zero_width_characters_are_shown_not_sent() {
        // A right-to-left override makes "exe.txt" read as "txt.exe".
        assert_eq!(escape("a\u{202e}b\u{202c}"), r"a\u202eb\u202c");
        for c in [
            '\u{061c}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}',
            '\u{202b}', '\u{202d}', '\u{2060}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{feff}',
        ] {
            let shown = escape_bytes(c.to_string().as_bytes()).into_owned();
            assert_eq!(shown, format!("\\u{:04x}", u32::from(c)), "{c:?}");
            assert_eq!(escape_block(c.to_string().as_bytes()), shown);
        }
        // Neighbours that draw something stay as they are.
        for text in ["\u{2010}", "\u{2070}", "\u{fefe}", "\u{0627}"] {
            assert!(matches!(escape(text), Cow::Borrowed(_)), "{text:?}");
        }
    }

    #[test]
    fn backslashes_are_doubled_so_escapes_cannot_be_forged() {
        assert_eq!(escape(r"\e"), r"\\e");
        assert_ne!(escape(r"\e"), escape("\x1b"));
        assert_ne!(escape_bytes(br"\xff"), escape_bytes(b"\xff"));
    }

    #[test]
    fn invalid_utf8_bytes_show_as_hex_and_stay_distinct() {
        assert_eq!(escape_bytes(b"a\xffb\xfe"), r"a\xffb\xfe");
        assert_ne!(escape_bytes(b"\xff"), escape_bytes(b"\xfe"));
        // A truncated multi-byte character, then valid text with a control.
        assert_eq!(escape_bytes(b"\xe5\xa4x\x1b"), r"\xe5\xa4x\e");
        // The C1 character U+009B (C2 9B) and the lone byte 9B differ.
        assert_ne!(escape_bytes(b"\xc2\x9b"), escape_bytes(b"\x9b"));
        assert_eq!(escape_bytes(b"\xc2\x9b\x9b"), r"\u009b\x9b");
    }

    #[test]
    fn blocks_keep_their_lines_and_tabs() {
        assert_eq!(
            escape_block(b"one\n\ttwo\r\n\x1b[2J\xff\n"),
            "one\n\ttwo\\r\n\\e[2J\\xff\n"
        );
        assert!(matches!(escape_block(b"a\nb\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn width_counts_columns_not_chars() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("天気"), 4);
        assert_eq!(width("🌈"), 2);
        assert_eq!(width("e\u{301}"), 1);
    }

    #[test]
    fn cut_fits_the_width_with_its_ellipsis() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdefg", 6), "abcde…");
        // 天 is two columns: after 天天 (4) there is room for one more column
        // only, so the third 天 is left out rather than split.
        assert_eq!(cut("天天天天", 6), "天天…");
        assert_eq!(width(&cut("天天天天", 6)), 5);
        assert_eq!(cut("a天天天", 6), "a天天…");
        assert_eq!(cut("🌈🌈🌈🌈", 5), "🌈🌈…");
        for max in 0..12 {
            for text in ["天気予報です", "a🌈b🌈c🌈d", "plain text here"] {
                assert!(width(&cut(text, max)) <= max, "{text} in {max}");
            }
        }
        assert_eq!(cut("abc", 0), "");
        assert_eq!(cut("abc", 1), "…");
    }
}
