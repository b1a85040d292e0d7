//! JSON as Python's `json` module reads and writes it for flogfiles:
//! `NaN`/`Infinity` literals, integers of any size, dict key order kept,
//! `json.dumps` default spacing and `ensure_ascii` escapes.

use crate::repr::float_repr;
use crate::value::{Dict, Value};
use num_bigint::BigInt;

/// Limits on one JSON record (a flogfile line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonLimits {
    /// Deepest nesting of lists/dicts accepted. Default 512 (Python's own
    /// parser gives up near its recursion limit, 1000).
    pub max_depth: usize,
    /// Most digits in one integer literal. Default 4300, Python 3.11's
    /// `int` string-conversion limit (beyond it `json.loads` fails too).
    pub max_int_digits: usize,
}

impl Default for JsonLimits {
    fn default() -> JsonLimits {
        JsonLimits {
            max_depth: 512,
            max_int_digits: 4300,
        }
    }
}

/// A JSON syntax error, with Python's wording where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: line {line} column {col} (char {pos})")]
pub struct JsonError {
    /// What was wrong.
    pub msg: String,
    /// Character (not byte) offset in the text.
    pub pos: usize,
    /// Line of `pos` (from 1), as Python counts it.
    pub line: usize,
    /// Column of `pos` (from 1), as Python counts it.
    pub col: usize,
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    limits: JsonLimits,
}

/// Parse one JSON document (surrounding whitespace allowed).
pub fn parse(s: &str, limits: JsonLimits) -> Result<Value, JsonError> {
    let mut p = Parser {
        s,
        b: s.as_bytes(),
        i: 0,
        limits,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("Extra data", p.i));
    }
    Ok(v)
}

impl Parser<'_> {
    fn err(&self, msg: &str, at: usize) -> JsonError {
        let before = &self.s[..floor_char(self.s, at.min(self.b.len()))];
        let pos = before.chars().count();
        let (line, col) = match before.rfind('\n') {
            Some(nl) => (
                before.matches('\n').count() + 1,
                before[nl + 1..].chars().count() + 1,
            ),
            None => (1, pos + 1),
        };
        JsonError {
            msg: msg.to_owned(),
            pos,
            line,
            col,
        }
    }
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn starts(&self, lit: &str) -> bool {
        self.b[self.i..].starts_with(lit.as_bytes())
    }
    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        let Some(&c) = self.b.get(self.i) else {
            return Err(self.err("Expecting value", self.i));
        };
        match c {
            b'{' | b'[' if depth >= self.limits.max_depth => {
                Err(self.err("nesting deeper than the limit", self.i))
            }
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => Ok(Value::Str(self.string()?)),
            b'n' if self.starts("null") => {
                self.i += 4;
                Ok(Value::None)
            }
            b't' if self.starts("true") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            b'f' if self.starts("false") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            b'N' if self.starts("NaN") => {
                self.i += 3;
                Ok(Value::Float(f64::NAN))
            }
            b'I' if self.starts("Infinity") => {
                self.i += 8;
                Ok(Value::Float(f64::INFINITY))
            }
            b'-' if self.starts("-Infinity") => {
                self.i += 9;
                Ok(Value::Float(f64::NEG_INFINITY))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err("Expecting value", self.i)),
        }
    }
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return Err(self.err("Expecting value", start)),
        }
        let int_end = i;
        let mut is_float = false;
        if b.get(i) == Some(&b'.') && matches!(b.get(i + 1), Some(b'0'..=b'9')) {
            is_float = true;
            i += 1;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if matches!(b.get(j), Some(b'0'..=b'9')) {
                while matches!(b.get(j), Some(b'0'..=b'9')) {
                    j += 1;
                }
                is_float = true;
                i = j;
            }
        }
        let text = &self.s[start..i];
        if is_float {
            let f: f64 = text
                .parse()
                .map_err(|_| self.err("Expecting value", start))?;
            self.i = i;
            Ok(Value::Float(f))
        } else {
            let digits = int_end - start - usize::from(b[start] == b'-');
            if digits > self.limits.max_int_digits {
                return Err(self.err("Exceeds the limit for integer string conversion", start));
            }
            // most ints fit an i64: skip the general (slower) conversion
            let n: BigInt = if digits <= 18 {
                text.parse::<i64>()
                    .map_err(|_| self.err("Expecting value", start))?
                    .into()
            } else {
                text.parse()
                    .map_err(|_| self.err("Expecting value", start))?
            };
            self.i = i;
            Ok(Value::Int(n))
        }
    }
    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.b.get(at..at + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    }
    fn string(&mut self) -> Result<String, JsonError> {
        let start = self.i;
        self.i += 1;
        // the common case, no escapes: one exact allocation
        let run = self.i;
        while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\' | 0..=0x1f) {
            self.i += 1;
        }
        if self.b.get(self.i) == Some(&b'"') {
            let out = self.s[run..self.i].to_owned();
            self.i += 1;
            return Ok(out);
        }
        self.i = run;
        let mut out = String::new();
        loop {
            let run = self.i;
            while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\' | 0..=0x1f) {
                self.i += 1;
            }
            out.push_str(&self.s[run..self.i]);
            match self.b.get(self.i) {
                None => return Err(self.err("Unterminated string starting at", start)),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let e = self.b.get(self.i + 1).copied();
                    let simple = match e {
                        Some(b'"') => Some('"'),
                        Some(b'\\') => Some('\\'),
                        Some(b'/') => Some('/'),
                        Some(b'b') => Some('\u{8}'),
                        Some(b'f') => Some('\u{c}'),
                        Some(b'n') => Some('\n'),
                        Some(b'r') => Some('\r'),
                        Some(b't') => Some('\t'),
                        _ => None,
                    };
                    if let Some(c) = simple {
                        out.push(c);
                        self.i += 2;
                        continue;
                    }
                    if e != Some(b'u') {
                        return Err(self.err("Invalid \\escape", self.i));
                    }
                    let Some(u) = self.hex4(self.i + 2) else {
                        return Err(self.err("Invalid \\uXXXX escape", self.i + 1));
                    };
                    self.i += 6;
                    let c = if (0xd800..0xdc00).contains(&u)
                        && self.b.get(self.i) == Some(&b'\\')
                        && self.b.get(self.i + 1) == Some(&b'u')
                    {
                        match self.hex4(self.i + 2) {
                            Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                                self.i += 6;
                                char::from_u32(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00))
                            }
                            _ => None,
                        }
                    } else {
                        char::from_u32(u)
                    };
                    // A lone surrogate is legal for Python but not in a Rust
                    // string: it becomes U+FFFD.
                    out.push(c.unwrap_or('\u{fffd}'));
                }
                Some(_) => return Err(self.err("Invalid control character at", self.i)),
            }
        }
    }
    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::List(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.err("Expecting ',' delimiter", self.i)),
            }
        }
    }
    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.i += 1;
        let mut d = Dict::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Dict(d));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("Expecting property name enclosed in double quotes", self.i));
            }
            let k = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("Expecting ':' delimiter", self.i));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth)?;
            d.insert(k, v);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Dict(d));
                }
                _ => return Err(self.err("Expecting ',' delimiter", self.i)),
            }
        }
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The `message` of the record Python's flogfile encoder writes in place
/// of a value JSON cannot hold (the wording is the encoder's output, which
/// readers may compare).
pub const UNJSONABLE_MESSAGE: &str = "log.msg() was given an object that could not be encoded into JSON. I've replaced it with this UnJSONable object. The object's repr is in .repr";

/// Write `v` as Python's `json.dumps(v, cls=ExtendedEncoder)` does for a
/// flogfile (tuples become lists; bytes, sets and other values without a
/// JSON form become `UnJSONable` records, failures `Failure` records).
pub fn write(v: &Value, out: &mut String) {
    match v {
        Value::None => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => {
            if f.is_nan() {
                out.push_str("NaN")
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
            } else {
                out.push_str(&float_repr(*f))
            }
        }
        Value::Str(s) => write_str(s, out),
        Value::List(items) | Value::Tuple(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Failure(f) => {
            out.push_str("{\"@\": \"Failure\", \"str\": ");
            write_str(&f.str_text(), out);
            out.push_str(", \"repr\": ");
            write_str(&f.repr_text(), out);
            out.push_str(", \"traceback\": ");
            write_str(&f.get_traceback(), out);
            out.push('}');
        }
        Value::Bytes(_) | Value::Set(_) | Value::FrozenSet(_) | Value::Other(_) => {
            out.push_str("{\"@\": \"UnJSONable\", \"message\": ");
            write_str(UNJSONABLE_MESSAGE, out);
            out.push_str(", \"repr\": ");
            write_str(&crate::repr::repr_string(v), out);
            out.push('}');
        }
        Value::Dict(d) => {
            out.push('{');
            for (n, (k, item)) in d.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write_str(k, out);
                out.push_str(": ");
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// `s` as a JSON string the way Python's `json.dumps` writes it by default
/// (`ensure_ascii`: everything outside printable ASCII as `\uXXXX`).
pub fn write_str(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
        }
    }
    out.push('"');
}
