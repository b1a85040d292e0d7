//! Python's `repr()` of `str` and `bytes`: the quoting that wire texts
//! need (failure texts, ERROR token texts), kept in one place so that every
//! text quotes exactly as a Python peer would.
//!
//! The full printer of values as Python literals lives in the
//! `foolscap-literal` crate, which quotes through these functions too.
//!
//! The rules, as CPython applies them:
//!
//! * The quote is `"` if the text holds `'` and no `"`, else `'`; the
//!   chosen quote and backslashes are escaped.
//! * `\t`, `\n` and `\r` print as such; other non-printable characters
//!   print as `\xhh`, `\uhhhh` or `\Uhhhhhhhh` (the shortest that fits).
//! * In a str, which characters are printable follows `str.isprintable()`
//!   for the control, format, separator and private-use characters and the
//!   noncharacters; other unassigned code points print as themselves. In
//!   bytes only printable ASCII prints as itself.

use std::fmt::{self, Write};

/// Python's `repr()` of a str: `'it''s'` → `"it's"`, `"a\nb"` → `'a\\nb'`.
pub fn str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing into a String cannot fail.
    let _ = write_str_repr(&mut out, s);
    out
}

/// Python's `repr()` of bytes: `b'\xff'` → `"b'\\xff'"`.
pub fn bytes_repr(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 3);
    // Writing into a String cannot fail.
    let _ = write_bytes_repr(&mut out, b);
    out
}

/// Writes Python's `repr()` of a str to `out`, in pieces, so a bounded
/// writer can stop early; fails only if `out` does.
pub fn write_str_repr<W: Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    let quote = quote_for(s.as_bytes());
    out.write_str(if quote == b'"' { "\"" } else { "'" })?;
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let plain = match c {
            '\\' => false,
            c if c as u32 == quote as u32 => false,
            ' '..='~' => true,
            c if (c as u32) <= 0x7f => false,
            c => is_printable(c),
        };
        if plain {
            continue;
        }
        out.write_str(&s[run..i])?;
        run = i + c.len_utf8();
        match c {
            '\\' => out.write_str("\\\\")?,
            '\t' => out.write_str("\\t")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            c if c as u32 == quote as u32 => {
                out.write_str(if quote == b'"' { "\\\"" } else { "\\'" })?
            }
            c => {
                let n = c as u32;
                if n <= 0xff {
                    write!(out, "\\x{n:02x}")?
                } else if n <= 0xffff {
                    write!(out, "\\u{n:04x}")?
                } else {
                    write!(out, "\\U{n:08x}")?
                }
            }
        }
    }
    out.write_str(&s[run..])?;
    out.write_str(if quote == b'"' { "\"" } else { "'" })
}

/// Writes Python's `repr()` of bytes to `out`, in pieces, so a bounded
/// writer can stop early; fails only if `out` does.
pub fn write_bytes_repr<W: Write + ?Sized>(out: &mut W, b: &[u8]) -> fmt::Result {
    let quote = quote_for(b);
    out.write_str(if quote == b'"' { "b\"" } else { "b'" })?;
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if (b' '..=b'~').contains(&c) && c != b'\\' && c != quote {
            continue;
        }
        // b[run..i] is printable ASCII, hence a valid str.
        out.write_str(std::str::from_utf8(&b[run..i]).unwrap_or(""))?;
        run = i + 1;
        match c {
            b'\\' => out.write_str("\\\\")?,
            b'\t' => out.write_str("\\t")?,
            b'\n' => out.write_str("\\n")?,
            b'\r' => out.write_str("\\r")?,
            b'"' => out.write_str("\\\"")?,
            b'\'' => out.write_str("\\'")?,
            c => write!(out, "\\x{c:02x}")?,
        }
    }
    out.write_str(std::str::from_utf8(&b[run..]).unwrap_or(""))?;
    out.write_str(if quote == b'"' { "\"" } else { "'" })
}

/// Python's quote choice: `"` if the text has `'` and no `"`, else `'`.
fn quote_for(b: &[u8]) -> u8 {
    if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    }
}

/// Python's `str.isprintable()` for one non-ASCII character, as far as it
/// can be told without the Unicode tables: C1 controls, the Zs/Zl/Zp
/// separators, the Cf format characters, private use and noncharacters are
/// not printable (Unicode 14, as in Python 3.11).
fn is_printable(c: char) -> bool {
    const NOT_PRINTABLE: &[(u32, u32)] = &[
        (0x80, 0xA0),
        (0xAD, 0xAD),
        (0x600, 0x605),
        (0x61C, 0x61C),
        (0x6DD, 0x6DD),
        (0x70F, 0x70F),
        (0x890, 0x891),
        (0x8E2, 0x8E2),
        (0x1680, 0x1680),
        (0x180E, 0x180E),
        (0x2000, 0x200F),
        (0x2028, 0x202F),
        (0x205F, 0x2064),
        (0x2066, 0x206F),
        (0x3000, 0x3000),
        (0xE000, 0xF8FF),
        (0xFDD0, 0xFDEF),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        (0xF0000, 0x10FFFF),
    ];
    let n = c as u32;
    if n & 0xFFFE == 0xFFFE {
        // U+xFFFE and U+xFFFF in every plane are noncharacters.
        return false;
    }
    let i = NOT_PRINTABLE.partition_point(|&(_, hi)| hi < n);
    NOT_PRINTABLE.get(i).is_none_or(|&(lo, _)| lo > n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_like_python() {
        // Expected texts are CPython 3.11's repr().
        let cases = [
            ("", r"''"),
            ("abc", r"'abc'"),
            ("a'b", r#""a'b""#),
            ("a\"b", r#"'a"b'"#),
            ("a'\"b", r#"'a\'"b'"#),
            ("\\", r"'\\'"),
            ("\t\n\r\x00\x1f\x7f", r"'\t\n\r\x00\x1f\x7f'"),
            ("\u{80}\u{9f}\u{a0}\u{a1}\u{ad}\u{ff}", "'\\x80\\x9f\\xa0\u{a1}\\xad\u{ff}'"),
            ("é✓😀", "'é✓😀'"),
            (
                "\u{2028}\u{2029}\u{200b}\u{feff}\u{e000}\u{fdd0}\u{ffff}\u{1fffe}\u{e0001}\u{10ffff}\u{f0000}",
                r"'\u2028\u2029\u200b\ufeff\ue000\ufdd0\uffff\U0001fffe\U000e0001\U0010ffff\U000f0000'",
            ),
            ("\u{3000} x", r"'\u3000 x'"),
            (
                "Violation: can't \"x\"\n",
                r#"'Violation: can\'t "x"\n'"#,
            ),
        ];
        for (s, r) in cases {
            assert_eq!(str_repr(s), r, "{s:?}");
        }
    }

    #[test]
    fn bytes_like_python() {
        // Expected texts are CPython 3.11's repr().
        let cases: [(&[u8], &str); 8] = [
            (b"", "b''"),
            (b"abc", "b'abc'"),
            (b"a'b", r#"b"a'b""#),
            (b"a\"b", r#"b'a"b'"#),
            (b"a'\"b", r#"b'a\'"b'"#),
            (b"\\", r"b'\\'"),
            (
                b"\t\n\r\x00\x1f\x7f\x80\xff",
                r"b'\t\n\r\x00\x1f\x7f\x80\xff'",
            ),
            (b"~ ", "b'~ '"),
        ];
        for (b, r) in cases {
            assert_eq!(bytes_repr(b), r);
        }
    }

    #[test]
    fn printable_table() {
        for c in [
            '\u{a1}',
            '\u{378}',
            '\u{ac00}',
            '\u{fffd}',
            '\u{1f600}',
            '\u{e0100}',
        ] {
            assert!(is_printable(c), "{c:?}");
        }
        for c in [
            '\u{80}',
            '\u{a0}',
            '\u{ad}',
            '\u{2028}',
            '\u{2029}',
            '\u{202f}',
            '\u{fffe}',
            '\u{f8ff}',
            '\u{e007f}',
            '\u{10ffff}',
        ] {
            assert!(!is_printable(c), "{c:?}");
        }
    }

    /// A writer that refuses to grow past a bound, as the literal printer's.
    struct Bounded(String, usize);

    impl Write for Bounded {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if self.0.len() + s.len() > self.1 {
                return Err(fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_stops_the_quoting() {
        let long = "x\u{80}".repeat(1 << 16);
        let mut w = Bounded(String::new(), 100);
        assert_eq!(write_str_repr(&mut w, &long), Err(fmt::Error));
        assert!(w.0.len() <= 100 && w.0.starts_with("'x\\x80x"), "{}", w.0);
        let mut w = Bounded(String::new(), 100);
        assert_eq!(write_bytes_repr(&mut w, &[0u8; 1 << 16]), Err(fmt::Error));
        assert!(w.0.len() <= 100 && w.0.starts_with("b'\\x00"), "{}", w.0);
        let mut w = Bounded(String::new(), 100);
        assert_eq!(write_str_repr(&mut w, "it's"), Ok(()));
        assert_eq!(w.0, "\"it's\"");
    }
}
