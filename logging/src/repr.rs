//! Python's `repr()` and `str()` of event values, as `flogtool dump
//! --verbose` and `%s`/`%r` print them.

use crate::value::{Dict, Value};

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for
/// decimal exponents -4..16, scientific (`1e+16`, `1.5e-05`) otherwise.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let sci = format!("{:e}", f);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    }
    out
}

/// Whether Python's `str.isprintable()` holds for `c` (approximated for
/// the non-ASCII categories Python treats as unprintable: controls,
/// separators other than space, common format characters, surrogates and
/// private use).
fn printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20
        || (0x7f..0xa1).contains(&u)
        || u == 0xad
        || u == 0x61c
        || u == 0x1680
        || u == 0x180e
        || (0x2000..0x2010).contains(&u)
        || (0x2028..0x2030).contains(&u)
        || (0x205f..0x2070).contains(&u)
        || u == 0x3000
        || (0xd800..0xf900).contains(&u)
        || u == 0xfeff
        || (0xfff9..0xfffc).contains(&u)
        || (0xf0000..=0x10ffff).contains(&u)
        || (0xe0000..0xe1000).contains(&u))
}

/// Python's `repr(str)`.
pub fn str_repr(s: &str, out: &mut String) {
    use std::fmt::Write;
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(q);
}

/// Python's `repr(v)`.
pub fn repr(v: &Value, out: &mut String) {
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => match i64::try_from(i) {
            Ok(small) => out.push_str(itoa_i64(small, &mut [0; 20])),
            Err(_) => out.push_str(&i.to_string()),
        },
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => str_repr(s, out),
        Value::List(items) => {
            out.push('[');
            seq(items, out);
            out.push(']');
        }
        Value::Tuple(items) => {
            out.push('(');
            seq(items, out);
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Value::Dict(d) => dict_repr(d, out),
        Value::Bytes(b) => bytes_repr(b, out),
        Value::Set(items) if items.is_empty() => out.push_str("set()"),
        Value::Set(items) => {
            out.push('{');
            seq(items, out);
            out.push('}');
        }
        Value::FrozenSet(items) if items.is_empty() => out.push_str("frozenset()"),
        Value::FrozenSet(items) => {
            out.push_str("frozenset({");
            seq(items, out);
            out.push_str("})");
        }
        Value::Failure(f) => out.push_str(&f.repr_text()),
        Value::Other(r) => out.push_str(r),
    }
}

/// Python's `repr(bytes)`.
pub fn bytes_repr(b: &[u8], out: &mut String) {
    use std::fmt::Write;
    let q = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(q);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c as char == q => {
                out.push('\\');
                out.push(q);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{:02x}", c);
            }
        }
    }
    out.push(q);
}

/// Python's `repr(dict)`.
pub fn dict_repr(d: &Dict, out: &mut String) {
    out.push('{');
    for (n, (k, item)) in d.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        str_repr(k, out);
        out.push_str(": ");
        repr(item, out);
    }
    out.push('}');
}

fn seq(items: &[Value], out: &mut String) {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        repr(item, out);
    }
}

/// `repr(v)` as a new string.
pub fn repr_string(v: &Value) -> String {
    let mut s = String::new();
    repr(v, &mut s);
    s
}

/// Python's `str(v)`: the text itself for a `str`, the failure's `str`
/// for a failure, `repr` otherwise.
pub fn str_string(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Failure(f) => f.str_text(),
        _ => repr_string(v),
    }
}

/// Decimal text of `n` in `buf` (faster than formatting a big int).
pub(crate) fn itoa_i64(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("")
}
