//! Python literal syntax → [`Value`] (see [`parse`]), the inverse of
//! [`crate::to_python`]. Used by the `foolscap` tool and by tests to write
//! values the way a Python programmer would.
//!
//! The grammar is the subset of Python expressions that spells the value
//! model's data types: `None`, `True`, `False`, ints (any size, `0x`/`0o`/
//! `0b`, underscores), floats (plus `float('nan')`, `float('inf')`, ...),
//! `Decimal('1.5')`, bytes and str literals with every prefix and escape
//! Python knows (adjacent literals concatenate), lists, tuples, dicts,
//! sets, `set(...)` and `frozenset(...)`. Unary `-`/`+` apply to numbers.
//! Everything accepted means what Python's `eval` makes of it.
//!
//! Not accepted, although `eval` would: a tuple without parentheses at the
//! top level (`1, 2`), arithmetic (`2**70`, `1+2j`), comments, backslash
//! line continuations outside strings, `\N{...}` escapes, and surrogate
//! escapes in str literals (a Rust string cannot hold them).
//!
//! The parser keeps an explicit stack, so input nested up to
//! [`MAX_DEPTH`] levels never threatens the thread's stack.

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::{Num, ToPrimitive};
use thiserror::Error;

use foolscap_core::value::{py_eq, py_hash, Decimal, Int, Text, Value};

/// Deepest nesting of brackets and calls [`parse`] accepts.
pub const MAX_DEPTH: usize = 1000;

/// Why [`parse`] refused its input. Every variant names the character
/// (not byte) offset into the input where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LiteralError {
    /// A token other than the ones the grammar allows there.
    #[error("expected {expected} at character {offset}, found {found}")]
    Expected {
        /// Character offset of the offending token.
        offset: usize,
        /// What the grammar wanted.
        expected: &'static str,
        /// What was there instead.
        found: String,
    },
    /// A character that starts no token.
    #[error("unexpected character {ch:?} at character {offset}")]
    UnexpectedChar {
        /// Character offset of the character.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// A malformed int or float literal.
    #[error("invalid number literal at character {offset}: {reason}")]
    InvalidNumber {
        /// Character offset of the literal.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A string literal without its closing quote.
    #[error("unterminated string literal starting at character {offset}")]
    UnterminatedString {
        /// Character offset of the literal (its prefix included).
        offset: usize,
    },
    /// A backslash escape Python would refuse (or that a Rust string cannot
    /// hold, such as a surrogate).
    #[error("invalid escape at character {offset}: {reason}")]
    InvalidEscape {
        /// Character offset of the backslash.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A non-ASCII character written directly inside a bytes literal.
    #[error("bytes literal may only contain ASCII characters, at character {offset}")]
    NonAsciiBytes {
        /// Character offset of the character.
        offset: usize,
    },
    /// Adjacent literals of which some are bytes and some str.
    #[error("cannot mix bytes and str literals, at character {offset}")]
    MixedBytesAndStr {
        /// Character offset of the literal that does not match the first.
        offset: usize,
    },
    /// A name that is not `None`, `True`, `False` or a supported call.
    #[error("unknown name {name:?} at character {offset}")]
    UnknownName {
        /// Character offset of the name.
        offset: usize,
        /// The name.
        name: String,
    },
    /// Unary `-` or `+` applied to something that is not an int, bool or
    /// float.
    #[error("bad operand type for unary {op}: '{type_name}', at character {offset}")]
    BadOperand {
        /// Character offset of the operator.
        offset: usize,
        /// `-` or `+`.
        op: char,
        /// Python's name of the operand's type.
        type_name: &'static str,
    },
    /// A call (`float(...)`, `Decimal(...)`, `set(...)`, `frozenset(...)`)
    /// with arguments it does not accept.
    #[error("invalid argument to {function}() at character {offset}: {reason}")]
    BadArgument {
        /// Character offset of the argument (or of the call).
        offset: usize,
        /// The function called.
        function: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A dict key or set element Python cannot hash (list, dict, set).
    #[error("unhashable type: '{type_name}', at character {offset}")]
    Unhashable {
        /// Character offset of the key or element.
        offset: usize,
        /// Python's name of its type.
        type_name: &'static str,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {limit} levels at character {offset}")]
    TooDeep {
        /// Character offset of the opening bracket that is one too many.
        offset: usize,
        /// The limit.
        limit: usize,
    },
}

impl LiteralError {
    /// Character offset into the input where the problem starts.
    pub fn offset(&self) -> usize {
        use LiteralError::*;
        match self {
            Expected { offset, .. }
            | UnexpectedChar { offset, .. }
            | InvalidNumber { offset, .. }
            | UnterminatedString { offset }
            | InvalidEscape { offset, .. }
            | NonAsciiBytes { offset }
            | MixedBytesAndStr { offset }
            | UnknownName { offset, .. }
            | BadOperand { offset, .. }
            | BadArgument { offset, .. }
            | Unhashable { offset, .. }
            | TooDeep { offset, .. } => *offset,
        }
    }

    fn offset_mut(&mut self) -> &mut usize {
        use LiteralError::*;
        match self {
            Expected { offset, .. }
            | UnexpectedChar { offset, .. }
            | InvalidNumber { offset, .. }
            | UnterminatedString { offset }
            | InvalidEscape { offset, .. }
            | NonAsciiBytes { offset }
            | MixedBytesAndStr { offset }
            | UnknownName { offset, .. }
            | BadOperand { offset, .. }
            | BadArgument { offset, .. }
            | Unhashable { offset, .. }
            | TooDeep { offset, .. } => offset,
        }
    }
}

/// Parses one Python literal expression (surrounding whitespace allowed)
/// into a [`Value`].
///
/// Dict literals with repeated keys keep the first key and the last value,
/// set literals keep the first of equal elements (Python's `==`, so `1`,
/// `1.0` and `True` are one key); unhashable keys and elements are errors,
/// as in Python.
pub fn parse(src: &str) -> Result<Value, LiteralError> {
    Parser {
        lex: Lexer { src, pos: 0 },
    }
    .run()
    .map_err(|mut e| {
        // Internally offsets are byte positions; report characters.
        let byte = (*e.offset_mut()).min(src.len());
        let chars = src.char_indices().take_while(|(i, _)| *i < byte).count();
        *e.offset_mut() = chars;
        e
    })
}

// ---------------------------------------------------------------- lexer

#[derive(Debug)]
enum Tok<'s> {
    Punct(u8),
    Name(&'s str),
    Int(Int),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    End,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Punct(c) => format!("'{}'", *c as char),
            Tok::Name(n) => format!("name {n:?}"),
            Tok::Int(_) | Tok::Float(_) => "a number".to_owned(),
            Tok::Str(_) => "a str literal".to_owned(),
            Tok::Bytes(_) => "a bytes literal".to_owned(),
            Tok::End => "end of input".to_owned(),
        }
    }
}

struct Lexer<'s> {
    src: &'s str,
    /// Byte position of the next character.
    pos: usize,
}

/// How a string literal starts: prefix length and flags.
#[derive(Clone, Copy)]
struct StrStart {
    prefix_len: usize,
    bytes: bool,
    raw: bool,
}

/// Text being built from a str or bytes literal.
enum Sink {
    Str(String),
    Bytes(Vec<u8>),
}

impl Sink {
    fn push_char(&mut self, c: char) {
        match self {
            Sink::Str(s) => s.push(c),
            // Callers only push ASCII into bytes.
            Sink::Bytes(b) => b.push(c as u8),
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'s> Lexer<'s> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') = self.byte(self.pos) {
            self.pos += 1;
        }
    }

    /// Whether a string literal starts at `at`.
    fn string_start(&self, at: usize) -> Option<StrStart> {
        let b = &self.src.as_bytes()[at.min(self.src.len())..];
        let prefix_len = b
            .iter()
            .take(3)
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if !matches!(b.get(prefix_len), Some(b'\'' | b'"')) {
            return None;
        }
        let prefix = self.src[at..at + prefix_len].to_ascii_lowercase();
        let (bytes, raw) = match prefix.as_str() {
            "" | "u" => (false, false),
            "r" => (false, true),
            "b" => (true, false),
            "br" | "rb" => (true, true),
            _ => return None,
        };
        Some(StrStart {
            prefix_len,
            bytes,
            raw,
        })
    }

    /// The next token and the byte offset where it starts.
    fn next(&mut self) -> Result<(Tok<'s>, usize), LiteralError> {
        self.skip_ws();
        let start = self.pos;
        let Some(c) = self.byte(start) else {
            return Ok((Tok::End, start));
        };
        let tok = match c {
            b'[' | b']' | b'(' | b')' | b'{' | b'}' | b',' | b':' | b'-' | b'+' => {
                self.pos += 1;
                Tok::Punct(c)
            }
            b'0'..=b'9' => self.number()?,
            b'.' if self.byte(start + 1).is_some_and(|d| d.is_ascii_digit()) => self.number()?,
            b'\'' | b'"' => self.strings()?,
            c if is_ident_start(c) => {
                if self.string_start(start).is_some() {
                    self.strings()?
                } else {
                    self.name()
                }
            }
            _ => {
                let ch = self.src[start..].chars().next().unwrap_or('\0');
                return Err(LiteralError::UnexpectedChar { offset: start, ch });
            }
        };
        Ok((tok, start))
    }

    /// A name, dotted names included (`decimal.Decimal`).
    fn name(&mut self) -> Tok<'s> {
        let start = self.pos;
        loop {
            while self.byte(self.pos).is_some_and(is_ident_char) {
                self.pos += 1;
            }
            if self.byte(self.pos) == Some(b'.')
                && self.byte(self.pos + 1).is_some_and(is_ident_start)
            {
                self.pos += 1;
            } else {
                break;
            }
        }
        Tok::Name(&self.src[start..self.pos])
    }

    /// Consumes `digit (_? digit)*` in `radix`; returns how many digits.
    fn digits(&mut self, radix: u32) -> usize {
        let is_digit = |c: Option<u8>| c.is_some_and(|c| (c as char).is_digit(radix));
        let mut n = 0;
        loop {
            if is_digit(self.byte(self.pos)) {
                self.pos += 1;
                n += 1;
            } else if n > 0
                && self.byte(self.pos) == Some(b'_')
                && is_digit(self.byte(self.pos + 1))
            {
                self.pos += 2;
                n += 1;
            } else {
                return n;
            }
        }
    }

    fn number(&mut self) -> Result<Tok<'s>, LiteralError> {
        let start = self.pos;
        let err = |reason| LiteralError::InvalidNumber {
            offset: start,
            reason,
        };
        let radix = match (
            self.byte(start),
            self.byte(start + 1).map(|c| c.to_ascii_lowercase()),
        ) {
            (Some(b'0'), Some(b'x')) => 16,
            (Some(b'0'), Some(b'o')) => 8,
            (Some(b'0'), Some(b'b')) => 2,
            _ => 10,
        };
        let tok = if radix != 10 {
            self.pos += 2;
            // An underscore may follow the prefix: 0x_ff.
            if self.byte(self.pos) == Some(b'_') {
                self.pos += 1;
            }
            if self.digits(radix) == 0 {
                return Err(err("missing digits after the base prefix"));
            }
            let text: String = self.src[start + 2..self.pos]
                .chars()
                .filter(|&c| c != '_')
                .collect();
            let big = BigInt::from_str_radix(&text, radix).map_err(|_| err("bad digits"))?;
            Tok::Int(Int::from(big))
        } else {
            let int_digits = self.digits(10);
            let mut is_float = false;
            if self.byte(self.pos) == Some(b'.') {
                self.pos += 1;
                is_float = true;
                let frac = self.digits(10);
                if int_digits == 0 && frac == 0 {
                    return Err(err("no digits"));
                }
            }
            if matches!(self.byte(self.pos), Some(b'e' | b'E')) {
                let save = self.pos;
                self.pos += 1;
                if matches!(self.byte(self.pos), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
                if self.digits(10) == 0 {
                    self.pos = save;
                    return Err(err("missing exponent digits"));
                }
                is_float = true;
            }
            let text: String = self.src[start..self.pos]
                .chars()
                .filter(|&c| c != '_')
                .collect();
            if is_float {
                Tok::Float(text.parse::<f64>().map_err(|_| err("bad float"))?)
            } else {
                if text.len() > 1 && text.starts_with('0') && text.bytes().any(|c| c != b'0') {
                    return Err(err(
                        "leading zeros in decimal integer literals are not permitted",
                    ));
                }
                let big = BigInt::from_str_radix(&text, 10).map_err(|_| err("bad digits"))?;
                Tok::Int(Int::from(big))
            }
        };
        if self
            .byte(self.pos)
            .is_some_and(|c| is_ident_char(c) || c == b'.')
        {
            return Err(err("invalid character after the number"));
        }
        Ok(tok)
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Result<Tok<'s>, LiteralError> {
        let first = self.pos;
        let Some(kind) = self.string_start(first) else {
            return Err(LiteralError::UnexpectedChar {
                offset: first,
                ch: '?',
            });
        };
        let mut sink = if kind.bytes {
            Sink::Bytes(Vec::new())
        } else {
            Sink::Str(String::new())
        };
        loop {
            let start = self.pos;
            let Some(this) = self.string_start(start) else {
                break;
            };
            if this.bytes != kind.bytes {
                return Err(LiteralError::MixedBytesAndStr { offset: start });
            }
            self.string_body(start, this, &mut sink)?;
            self.skip_ws();
        }
        Ok(match sink {
            Sink::Str(s) => Tok::Str(s),
            Sink::Bytes(b) => Tok::Bytes(b),
        })
    }

    /// Reads one literal (prefix at `start`) into `sink`.
    fn string_body(
        &mut self,
        start: usize,
        kind: StrStart,
        sink: &mut Sink,
    ) -> Result<(), LiteralError> {
        let src = self.src;
        let q = self.byte(start + kind.prefix_len).unwrap_or(b'\'');
        let quote3 = [q, q, q];
        let triple = src.as_bytes()[start + kind.prefix_len..].starts_with(&quote3);
        self.pos = start + kind.prefix_len + if triple { 3 } else { 1 };
        let unterminated = LiteralError::UnterminatedString { offset: start };
        loop {
            let at = self.pos;
            let Some(c) = src[at..].chars().next() else {
                return Err(unterminated);
            };
            if triple {
                if src.as_bytes()[at..].starts_with(&quote3) {
                    self.pos += 3;
                    return Ok(());
                }
            } else if c as u32 == q as u32 {
                self.pos += 1;
                return Ok(());
            } else if c == '\n' || c == '\r' {
                return Err(unterminated);
            }
            self.pos += c.len_utf8();
            if c != '\\' {
                if kind.bytes && !c.is_ascii() {
                    return Err(LiteralError::NonAsciiBytes { offset: at });
                }
                sink.push_char(c);
                continue;
            }
            let Some(e) = src[self.pos..].chars().next() else {
                return Err(unterminated);
            };
            if kind.bytes && !e.is_ascii() {
                return Err(LiteralError::NonAsciiBytes { offset: self.pos });
            }
            self.pos += e.len_utf8();
            if kind.raw {
                // Raw: the backslash stays, and protects the next character
                // (a quote or a newline) from ending the literal.
                sink.push_char('\\');
                sink.push_char(e);
                continue;
            }
            self.escape(at, e, kind.bytes, sink)?;
        }
    }

    /// Decodes the escape `\e` (backslash at `at`, `self.pos` after `e`).
    fn escape(
        &mut self,
        at: usize,
        e: char,
        bytes: bool,
        sink: &mut Sink,
    ) -> Result<(), LiteralError> {
        let bad = |reason: String| LiteralError::InvalidEscape { offset: at, reason };
        let simple = match e {
            '\n' => return Ok(()),
            '\r' => {
                if self.byte(self.pos) == Some(b'\n') {
                    self.pos += 1;
                }
                return Ok(());
            }
            '\\' | '\'' | '"' => Some(e),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(c) = simple {
            sink.push_char(c);
            return Ok(());
        }
        match e {
            '0'..='7' => {
                let mut v = e as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.byte(self.pos) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                match sink {
                    Sink::Bytes(b) => {
                        let byte = u8::try_from(v)
                            .map_err(|_| bad(format!("octal escape \\{v:o} is above \\377")))?;
                        b.push(byte);
                    }
                    Sink::Str(s) => s.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                }
                Ok(())
            }
            'x' => {
                let v = self
                    .hex_digits(2)
                    .ok_or_else(|| bad("truncated \\xXX escape".into()))?;
                match sink {
                    Sink::Bytes(b) => b.push(v as u8),
                    Sink::Str(s) => s.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                }
                Ok(())
            }
            'u' | 'U' if !bytes => {
                let n = if e == 'u' { 4 } else { 8 };
                let v = self
                    .hex_digits(n)
                    .ok_or_else(|| bad(format!("truncated \\{e}{} escape", "X".repeat(n))))?;
                let c = match char::from_u32(v) {
                    Some(c) => c,
                    None if (0xd800..0xe000).contains(&v) => {
                        return Err(bad(format!(
                            "surrogate code point U+{v:04X} cannot be held in a str here"
                        )))
                    }
                    None => return Err(bad(format!("illegal Unicode character U+{v:X}"))),
                };
                sink.push_char(c);
                Ok(())
            }
            'N' if !bytes => Err(bad("\\N{...} escapes are not supported".into())),
            _ => {
                // Python keeps unknown escapes as they are.
                sink.push_char('\\');
                sink.push_char(e);
                Ok(())
            }
        }
    }

    /// Exactly `n` hex digits at the current position.
    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let s = self.src.get(self.pos..self.pos + n)?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += n;
        u32::from_str_radix(s, 16).ok()
    }
}

// ---------------------------------------------------------------- parser

/// A pending unary operator: whether the operand is negated, and where the
/// first operator stands.
#[derive(Clone, Copy)]
struct Sign {
    negate: bool,
    plus_only: bool,
    offset: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Func {
    Float,
    Decimal,
    Set,
    FrozenSet,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Float => "float",
            Func::Decimal => "Decimal",
            Func::Set => "set",
            Func::FrozenSet => "frozenset",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BraceMode {
    Unknown,
    Dict,
    Set,
}

/// Hash buckets over the keys (or elements) collected so far, to find
/// repeats under Python's `==`.
#[derive(Default)]
struct KeyIndex {
    buckets: hashbrown::HashMap<u64, Vec<usize>>,
}

impl KeyIndex {
    /// The position of a key equal to `key` among those recorded, or
    /// records `key` as the one at `next` and returns `None`. `Err` with
    /// the type name when `key` is unhashable.
    fn find_or_insert<'a>(
        &mut self,
        key: &Value,
        next: usize,
        get: impl Fn(usize) -> &'a Value,
    ) -> Result<Option<usize>, &'static str> {
        let h = py_hash(key).ok_or_else(|| unhashable_part(key))?;
        let bucket = self.buckets.entry(h).or_default();
        if let Some(&i) = bucket.iter().find(|&&i| py_eq(get(i), key)) {
            return Ok(Some(i));
        }
        bucket.push(next);
        Ok(None)
    }
}

/// The type name of the unhashable part of `v` (the tuple's list, ...).
fn unhashable_part(v: &Value) -> &'static str {
    let mut cur = v;
    loop {
        match cur {
            Value::Tuple(items) | Value::FrozenSet(items) => {
                match items.iter().find(|i| py_hash(i).is_none()) {
                    Some(i) => cur = i,
                    None => return cur.type_name(),
                }
            }
            Value::Anchor(_, inner) => cur = inner,
            other => return other.type_name(),
        }
    }
}

/// Builds a set's elements, keeping the first of equal ones.
#[derive(Default)]
struct SetBuilder {
    items: Vec<Value>,
    index: KeyIndex,
}

impl SetBuilder {
    fn add(&mut self, v: Value, offset: usize) -> Result<(), LiteralError> {
        let items = &self.items;
        match self.index.find_or_insert(&v, items.len(), |i| &items[i]) {
            Ok(Some(_)) => {}
            Ok(None) => self.items.push(v),
            Err(type_name) => return Err(LiteralError::Unhashable { offset, type_name }),
        }
        Ok(())
    }
}

/// Builds a dict's pairs: the first key stays, the last value wins.
#[derive(Default)]
struct DictBuilder {
    pairs: Vec<(Value, Value)>,
    index: KeyIndex,
}

impl DictBuilder {
    fn insert(&mut self, k: Value, v: Value, offset: usize) -> Result<(), LiteralError> {
        let pairs = &self.pairs;
        match self.index.find_or_insert(&k, pairs.len(), |i| &pairs[i].0) {
            Ok(Some(i)) => self.pairs[i].1 = v,
            Ok(None) => self.pairs.push((k, v)),
            Err(type_name) => return Err(LiteralError::Unhashable { offset, type_name }),
        }
        Ok(())
    }
}

enum FrameKind {
    List(Vec<Value>),
    Paren {
        items: Vec<Value>,
        comma: bool,
    },
    Brace {
        mode: BraceMode,
        set: SetBuilder,
        dict: DictBuilder,
        /// A value just read whose role (set element or dict key) the next
        /// token decides.
        held: Option<(Value, usize)>,
        /// A dict key waiting for its value.
        key: Option<(Value, usize)>,
    },
    Call {
        func: Func,
        args: Vec<(Value, usize)>,
    },
}

struct Frame {
    kind: FrameKind,
    /// Offset of the opening bracket (or of the called name).
    start: usize,
    /// Unary operator in front of this frame's value.
    sign: Option<Sign>,
}

struct Parser<'s> {
    lex: Lexer<'s>,
}

fn expected(offset: usize, expected: &'static str, found: &Tok<'_>) -> LiteralError {
    LiteralError::Expected {
        offset,
        expected,
        found: found.describe(),
    }
}

impl Parser<'_> {
    fn run(mut self) -> Result<Value, LiteralError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut sign: Option<Sign> = None;
        // Whether a value is expected next (else a separator or closer).
        let mut want_value = true;
        // Whether, while a value is expected, the innermost bracket may
        // close instead (right after it opened, or after a comma).
        let mut may_close = false;
        loop {
            let (tok, at) = self.lex.next()?;
            // The value completed by this token, and where it started.
            let done: (Value, usize);
            if want_value {
                match tok {
                    Tok::Punct(c @ (b'-' | b'+')) => {
                        let s = sign.get_or_insert(Sign {
                            negate: false,
                            plus_only: true,
                            offset: at,
                        });
                        if c == b'-' {
                            s.negate = !s.negate;
                            s.plus_only = false;
                        }
                        may_close = false;
                        continue;
                    }
                    Tok::Punct(c @ (b'[' | b'(' | b'{')) => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(LiteralError::TooDeep {
                                offset: at,
                                limit: MAX_DEPTH,
                            });
                        }
                        let kind = match c {
                            b'[' => FrameKind::List(Vec::new()),
                            b'(' => FrameKind::Paren {
                                items: Vec::new(),
                                comma: false,
                            },
                            _ => FrameKind::Brace {
                                mode: BraceMode::Unknown,
                                set: SetBuilder::default(),
                                dict: DictBuilder::default(),
                                held: None,
                                key: None,
                            },
                        };
                        stack.push(Frame {
                            kind,
                            start: at,
                            sign: sign.take(),
                        });
                        may_close = true;
                        continue;
                    }
                    Tok::Punct(c @ (b']' | b')' | b'}'))
                        if may_close && closes(stack.last(), c) =>
                    {
                        let frame = stack.pop().ok_or_else(|| expected(at, "a value", &tok))?;
                        done = finish(frame)?;
                    }
                    Tok::Name(name) => match name {
                        "None" => done = (apply_sign(sign.take(), Value::None)?, at),
                        "True" => done = (apply_sign(sign.take(), Value::Bool(true))?, at),
                        "False" => done = (apply_sign(sign.take(), Value::Bool(false))?, at),
                        _ => {
                            let func = match name {
                                "float" => Func::Float,
                                "Decimal" | "decimal.Decimal" => Func::Decimal,
                                "set" => Func::Set,
                                "frozenset" => Func::FrozenSet,
                                _ => {
                                    return Err(LiteralError::UnknownName {
                                        offset: at,
                                        name: name.to_owned(),
                                    })
                                }
                            };
                            let (paren, pat) = self.lex.next()?;
                            if !matches!(paren, Tok::Punct(b'(')) {
                                return Err(expected(pat, "'(' after the function name", &paren));
                            }
                            if stack.len() >= MAX_DEPTH {
                                return Err(LiteralError::TooDeep {
                                    offset: pat,
                                    limit: MAX_DEPTH,
                                });
                            }
                            stack.push(Frame {
                                kind: FrameKind::Call {
                                    func,
                                    args: Vec::new(),
                                },
                                start: at,
                                sign: sign.take(),
                            });
                            may_close = true;
                            continue;
                        }
                    },
                    Tok::Int(i) => done = (apply_sign(sign.take(), Value::Int(i))?, at),
                    Tok::Float(f) => done = (apply_sign(sign.take(), Value::Float(f))?, at),
                    Tok::Str(s) => done = (apply_sign(sign.take(), Value::Str(Text::from(s)))?, at),
                    Tok::Bytes(b) => {
                        done = (apply_sign(sign.take(), Value::Bytes(Bytes::from(b)))?, at)
                    }
                    other => return Err(expected(at, "a value", &other)),
                }
            } else {
                // After a value: a separator or the innermost closer.
                let Some(top) = stack.last_mut() else {
                    return Err(expected(at, "end of input", &tok));
                };
                match (&mut top.kind, &tok) {
                    (FrameKind::List(_), Tok::Punct(b','))
                    | (FrameKind::Call { .. }, Tok::Punct(b',')) => {
                        want_value = true;
                        may_close = true;
                        continue;
                    }
                    (FrameKind::Paren { comma, .. }, Tok::Punct(b',')) => {
                        *comma = true;
                        want_value = true;
                        may_close = true;
                        continue;
                    }
                    (FrameKind::List(_), Tok::Punct(b']'))
                    | (FrameKind::Paren { .. }, Tok::Punct(b')'))
                    | (FrameKind::Call { .. }, Tok::Punct(b')')) => {
                        let frame = stack.pop().ok_or_else(|| expected(at, "a value", &tok))?;
                        done = finish(frame)?;
                    }
                    (FrameKind::List(_), _) => return Err(expected(at, "',' or ']'", &tok)),
                    (FrameKind::Paren { .. } | FrameKind::Call { .. }, _) => {
                        return Err(expected(at, "',' or ')'", &tok))
                    }
                    (
                        FrameKind::Brace {
                            mode,
                            set,
                            held,
                            key,
                            ..
                        },
                        t,
                    ) => {
                        if let Some((v, voff)) = held.take() {
                            match t {
                                Tok::Punct(b':') if *mode != BraceMode::Set => {
                                    *mode = BraceMode::Dict;
                                    *key = Some((v, voff));
                                    want_value = true;
                                    may_close = false;
                                    continue;
                                }
                                Tok::Punct(b',' | b'}') if *mode != BraceMode::Dict => {
                                    *mode = BraceMode::Set;
                                    set.add(v, voff)?;
                                    if matches!(t, Tok::Punct(b',')) {
                                        want_value = true;
                                        may_close = true;
                                        continue;
                                    }
                                }
                                _ => {
                                    let what = match mode {
                                        BraceMode::Dict => "':'",
                                        BraceMode::Set => "',' or '}'",
                                        BraceMode::Unknown => "':', ',' or '}'",
                                    };
                                    return Err(expected(at, what, t));
                                }
                            }
                        } else {
                            // A dict value was just stored.
                            match t {
                                Tok::Punct(b',') => {
                                    want_value = true;
                                    may_close = true;
                                    continue;
                                }
                                Tok::Punct(b'}') => {}
                                _ => return Err(expected(at, "',' or '}'", t)),
                            }
                        }
                        let frame = stack.pop().ok_or_else(|| expected(at, "a value", &tok))?;
                        done = finish(frame)?;
                    }
                }
            }
            // Hand the completed value to the enclosing frame.
            let (value, vstart) = done;
            let Some(top) = stack.last_mut() else {
                let (end, eat) = self.lex.next()?;
                return match end {
                    Tok::End => Ok(value),
                    other => Err(expected(eat, "end of input", &other)),
                };
            };
            match &mut top.kind {
                FrameKind::List(items) | FrameKind::Paren { items, .. } => items.push(value),
                FrameKind::Call { func, args } => {
                    if !args.is_empty() {
                        return Err(LiteralError::BadArgument {
                            offset: vstart,
                            function: func.name(),
                            reason: "takes at most 1 argument".into(),
                        });
                    }
                    args.push((value, vstart));
                }
                FrameKind::Brace {
                    dict, held, key, ..
                } => match key.take() {
                    Some((k, koff)) => dict.insert(k, value, koff)?,
                    None => *held = Some((value, vstart)),
                },
            }
            want_value = false;
            may_close = false;
        }
    }
}

/// Whether closer `c` ends the innermost frame while a value is expected
/// (an empty container or a trailing comma).
fn closes(top: Option<&Frame>, c: u8) -> bool {
    match top.map(|f| &f.kind) {
        Some(FrameKind::List(_)) => c == b']',
        Some(FrameKind::Paren { .. } | FrameKind::Call { .. }) => c == b')',
        Some(FrameKind::Brace { key: None, .. }) => c == b'}',
        _ => false,
    }
}

/// Applies a unary operator, as Python does for numbers (`-True` is `-1`).
fn apply_sign(sign: Option<Sign>, v: Value) -> Result<Value, LiteralError> {
    let Some(s) = sign else {
        return Ok(v);
    };
    let op = if s.plus_only { '+' } else { '-' };
    Ok(match v {
        Value::Int(i) if s.negate => Value::Int(negate(i)),
        Value::Int(i) => Value::Int(i),
        Value::Bool(b) => Value::Int(Int::Small(if s.negate { -(b as i64) } else { b as i64 })),
        Value::Float(f) => Value::Float(if s.negate { -f } else { f }),
        other => {
            return Err(LiteralError::BadOperand {
                offset: s.offset,
                op,
                type_name: other.type_name(),
            })
        }
    })
}

fn negate(i: Int) -> Int {
    match i {
        Int::Small(v) => match v.checked_neg() {
            Some(n) => Int::Small(n),
            None => Int::from(-BigInt::from(v)),
        },
        Int::Big(b) => Int::from(-*b),
    }
}

/// Turns a closed frame into its value (with its unary operator applied).
fn finish(frame: Frame) -> Result<(Value, usize), LiteralError> {
    let start = frame.start;
    let value = match frame.kind {
        FrameKind::List(items) => Value::List(items),
        FrameKind::Paren { mut items, comma } => {
            if !comma && items.len() == 1 {
                items.pop().unwrap_or(Value::None)
            } else {
                Value::Tuple(items)
            }
        }
        FrameKind::Brace {
            mode, set, dict, ..
        } => match mode {
            BraceMode::Set => Value::Set(set.items),
            BraceMode::Dict | BraceMode::Unknown => Value::Dict(dict.pairs),
        },
        FrameKind::Call { func, args } => call(func, start, args.into_iter().next())?,
    };
    Ok((apply_sign(frame.sign, value)?, start))
}

/// Evaluates one of the supported calls.
fn call(func: Func, start: usize, arg: Option<(Value, usize)>) -> Result<Value, LiteralError> {
    let bad = |offset, reason: String| LiteralError::BadArgument {
        offset,
        function: func.name(),
        reason,
    };
    let Some((arg, at)) = arg else {
        return Ok(match func {
            Func::Float => Value::Float(0.0),
            Func::Decimal => {
                Value::Decimal(Decimal::parse("0").map_err(|e| bad(start, e.to_string()))?)
            }
            Func::Set => Value::Set(Vec::new()),
            Func::FrozenSet => Value::FrozenSet(Vec::new()),
        });
    };
    match func {
        Func::Float => Ok(Value::Float(match &arg {
            Value::Float(f) => *f,
            Value::Bool(b) => *b as u8 as f64,
            Value::Int(i) => {
                let f = i.to_bigint().to_f64().unwrap_or(f64::INFINITY);
                if !f.is_finite() {
                    return Err(bad(at, "int too large to convert to float".into()));
                }
                f
            }
            Value::Str(s) => float_from_str(s)
                .ok_or_else(|| bad(at, format!("could not convert string to float: {:?}", &**s)))?,
            other => {
                return Err(bad(
                    at,
                    format!("must be a str or a number, not {}", other.type_name()),
                ))
            }
        })),
        Func::Decimal => {
            let text = match &arg {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => (*b as u8).to_string(),
                other => {
                    return Err(bad(
                        at,
                        format!(
                            "only str and int are supported here, not {}",
                            other.type_name()
                        ),
                    ))
                }
            };
            Decimal::parse(&text)
                .map(Value::Decimal)
                .map_err(|e| bad(at, e.to_string()))
        }
        Func::Set | Func::FrozenSet => {
            let mut set = SetBuilder::default();
            match arg {
                Value::List(items)
                | Value::Tuple(items)
                | Value::Set(items)
                | Value::FrozenSet(items) => {
                    for v in items {
                        set.add(v, at)?;
                    }
                }
                Value::Dict(pairs) => {
                    for (k, _) in pairs {
                        set.add(k, at)?;
                    }
                }
                Value::Str(s) => {
                    let mut buf = [0u8; 4];
                    for c in s.chars() {
                        set.add(Value::str(c.encode_utf8(&mut buf)), at)?;
                    }
                }
                Value::Bytes(b) => {
                    for &byte in b.iter() {
                        set.add(Value::int(byte as i64), at)?;
                    }
                }
                other => {
                    return Err(bad(
                        at,
                        format!("'{}' object is not iterable", other.type_name()),
                    ))
                }
            }
            Ok(if func == Func::Set {
                Value::Set(set.items)
            } else {
                Value::FrozenSet(set.items)
            })
        }
    }
}

/// Python's `float(str)`: surrounding whitespace, a sign, `inf`,
/// `infinity` and `nan` in any case, or a decimal float literal with
/// underscores between digits.
fn float_from_str(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => {
            let b = body.as_bytes();
            let mut digits = String::with_capacity(b.len());
            let mut seen_digit = false;
            for (i, &c) in b.iter().enumerate() {
                match c {
                    b'0'..=b'9' => {
                        seen_digit = true;
                        digits.push(c as char);
                    }
                    b'_' => {
                        let ok = i > 0
                            && b[i - 1].is_ascii_digit()
                            && b.get(i + 1).is_some_and(|n| n.is_ascii_digit());
                        if !ok {
                            return None;
                        }
                    }
                    b'.' | b'e' | b'E' => digits.push(c as char),
                    // A sign only starts an exponent here.
                    b'+' | b'-' if i > 0 && matches!(b[i - 1], b'e' | b'E') => {
                        digits.push(c as char)
                    }
                    _ => return None,
                }
            }
            if !seen_digit {
                return None;
            }
            // Rust's grammar for these characters matches Python's.
            digits.parse::<f64>().ok()?
        }
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Value {
        match parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn err(s: &str) -> LiteralError {
        match parse(s) {
            Ok(v) => panic!("{s:?} parsed as {v:?}"),
            Err(e) => e,
        }
    }

    fn big(s: &str) -> Value {
        Value::Int(Int::from(BigInt::from_str_radix(s, 10).unwrap()))
    }

    fn d(s: &str) -> Value {
        Value::Decimal(Decimal::parse(s).unwrap())
    }

    #[test]
    fn constants() {
        assert_eq!(p("None"), Value::None);
        assert_eq!(p("  True\n"), Value::Bool(true));
        assert_eq!(p("False"), Value::Bool(false));
        assert_eq!(p("-True"), Value::int(-1));
        assert_eq!(p("+False"), Value::int(0));
    }

    #[test]
    fn ints() {
        for (src, v) in [
            ("0", 0),
            ("00", 0),
            ("0_0", 0),
            ("7", 7),
            ("-7", -7),
            ("+7", 7),
            ("--7", 7),
            ("- 7", -7),
            ("1_000_000", 1_000_000),
            ("0x_fF", 255),
            ("0XFF", 255),
            ("0o17", 15),
            ("0O1_7", 15),
            ("0b1010", 10),
            ("-0b1", -1),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(p(src), Value::int(v), "{src}");
        }
        assert_eq!(p("9223372036854775808"), big("9223372036854775808"));
        assert_eq!(p("-9223372036854775809"), big("-9223372036854775809"));
        assert_eq!(p("0x1"), Value::int(1));
        let huge = "1".repeat(300);
        assert_eq!(p(&huge), big(&huge));
        assert_eq!(p(&format!("-{huge}")), big(&format!("-{huge}")));
        // i64::MIN negated is big
        assert_eq!(p("--9223372036854775808"), big("9223372036854775808"));
        assert!(matches!(
            p("9223372036854775807"),
            Value::Int(Int::Small(_))
        ));
        assert!(matches!(
            p("-(9223372036854775808)"),
            Value::Int(Int::Small(i64::MIN))
        ));
    }

    #[test]
    fn bad_numbers() {
        for bad in [
            "01", "1_", "1__0", "0x", "0x_", "0x1_", "0b2", "0o8", "1a", "1j", "1e", "1e+",
            "1.2.3", "0_", "1._5",
        ] {
            assert!(
                matches!(err(bad), LiteralError::InvalidNumber { offset: 0, .. }),
                "{bad}"
            );
        }
        assert!(matches!(
            err("[1, 02]"),
            LiteralError::InvalidNumber { offset: 4, .. }
        ));
    }

    #[test]
    fn floats() {
        for (src, v) in [
            ("1.5", 1.5),
            ("1e10", 1e10),
            ("1E-3", 1e-3),
            (".5", 0.5),
            ("5.", 5.0),
            ("1_000.5", 1000.5),
            ("1.5e1_0", 1.5e10),
            ("00.5", 0.5),
            ("0e0", 0.0),
            ("1e999", f64::INFINITY),
            ("-1e999", f64::NEG_INFINITY),
            ("5e-324", 5e-324),
            ("1.7976931348623157e+308", f64::MAX),
            ("float('inf')", f64::INFINITY),
            ("float('-inf')", f64::NEG_INFINITY),
            ("float('+inf')", f64::INFINITY),
            ("float(' Infinity ')", f64::INFINITY),
            ("-float('inf')", f64::NEG_INFINITY),
            ("float('1_0.5')", 10.5),
            ("float('-1e3')", -1000.0),
            ("float(2)", 2.0),
            ("float(-2.5)", -2.5),
            ("float()", 0.0),
            ("float('.5',)", 0.5),
        ] {
            assert_eq!(p(src), Value::Float(v), "{src}");
        }
        assert_eq!(unwrap_float(p("-0.0")).to_bits(), (-0.0f64).to_bits());
        assert_eq!(
            unwrap_float(p("-float('0')")).to_bits(),
            (-0.0f64).to_bits()
        );
        assert!(unwrap_float(p("float('nan')")).is_nan());
        assert!(unwrap_float(p("float('NaN')")).is_nan());
        assert_eq!(p("float('nan')"), Value::Float(f64::NAN));
        assert!(unwrap_float(p("-float('nan')")).is_nan());
        for bad in [
            "float('x')",
            "float('1_')",
            "float('')",
            "float([])",
            "float(1, 2)",
            "float(2**3)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            err(&format!("float({})", "9".repeat(400))),
            LiteralError::BadArgument { offset: 6, .. }
        ));
    }

    fn unwrap_float(v: Value) -> f64 {
        match v {
            Value::Float(f) => f,
            other => panic!("not a float: {other:?}"),
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(p("Decimal('1.5')"), d("1.5"));
        assert_eq!(p("decimal.Decimal(\"-0\")"), d("-0"));
        assert_eq!(p("Decimal('1e3')"), d("1E+3"));
        assert_eq!(p("Decimal('NaN')"), d("NaN"));
        assert_eq!(p("Decimal(5)"), d("5"));
        assert_eq!(p("Decimal(-5)"), d("-5"));
        assert_eq!(p("Decimal()"), d("0"));
        assert!(matches!(
            err("Decimal('x')"),
            LiteralError::BadArgument { offset: 8, .. }
        ));
        assert!(matches!(
            err("Decimal(1.5)"),
            LiteralError::BadArgument { .. }
        ));
        assert!(matches!(
            err("-Decimal('1')"),
            LiteralError::BadOperand {
                offset: 0,
                op: '-',
                ..
            }
        ));
        assert!(matches!(
            err("Decimal"),
            LiteralError::Expected { offset: 7, .. }
        ));
        assert!(matches!(
            err("decimal.Dec('1')"),
            LiteralError::UnknownName { .. }
        ));
    }

    #[test]
    fn bytes_literals() {
        for (src, v) in [
            (r"b''", &b""[..]),
            (r#"b"abc""#, b"abc"),
            (r"B'a'", b"a"),
            (
                r#"b'\\ \' \" \a \b \f \n \r \t \v'"#,
                b"\\ ' \" \x07 \x08 \x0c \n \r \t \x0b",
            ),
            (r"b'\x00\xff\xAb'", b"\x00\xff\xab"),
            (r"b'\0\12\101\1011'", b"\x00\x0aA\x411"),
            (r"b'\377'", b"\xff"),
            ("b'a\\\nb'", b"ab"),
            ("b'a\\\r\nb'", b"ab"),
            (r"b'\q\u1234'", b"\\q\\u1234"),
            (r"rb'\n\''", b"\\n\\'"),
            (r"Br'\x'", b"\\x"),
            (r"bR'a\\'", b"a\\\\"),
            ("b'''a\n'b'''", b"a\n'b"),
            (r#"b"""x""""#, b"x"),
            ("b'a' b\"b\" rb'\\c'", b"ab\\c"),
        ] {
            assert_eq!(p(src), Value::bytes(v), "{src}");
        }
        assert!(matches!(
            err("b'é'"),
            LiteralError::NonAsciiBytes { offset: 2 }
        ));
        assert!(matches!(
            err(r"b'\é'"),
            LiteralError::NonAsciiBytes { offset: 3 }
        ));
        assert!(matches!(
            err(r"b'\400'"),
            LiteralError::InvalidEscape { offset: 2, .. }
        ));
        assert!(matches!(
            err(r"b'\x4'"),
            LiteralError::InvalidEscape { offset: 2, .. }
        ));
        assert!(matches!(
            err(r"b'\xg0'"),
            LiteralError::InvalidEscape { .. }
        ));
        assert!(matches!(
            err("b'a' 'b'"),
            LiteralError::MixedBytesAndStr { offset: 5 }
        ));
        assert!(matches!(
            err("'a' b'b'"),
            LiteralError::MixedBytesAndStr { offset: 4 }
        ));
    }

    #[test]
    fn str_literals() {
        for (src, v) in [
            ("''", ""),
            ("\"\"", ""),
            ("'abc'", "abc"),
            ("u'abc'", "abc"),
            ("U\"x\"", "x"),
            ("'é✓😀'", "é✓😀"),
            (r"'\u00e9\U0001F600\xe9\351'", "é😀éé"),
            (r"'\777'", "\u{1ff}"),
            (r#"'\'\"'"#, "'\""),
            (r#""'""#, "'"),
            (r"'\q'", "\\q"),
            (r"r'\n\u1234'", "\\n\\u1234"),
            (r"R'\''", "\\'"),
            ("'''a\nb'c''d'''", "a\nb'c''d"),
            ("\"\"\"a\"\"b\"\"\"", "a\"\"b"),
            ("'a' \"b\"\n r'\\c' u'd'", "ab\\cd"),
            ("('a'\n'b')", "ab"),
            ("'a\\\nb'", "ab"),
            ("'\\\\'", "\\"),
        ] {
            assert_eq!(p(src), Value::str(v), "{src}");
        }
        assert!(matches!(
            err(r"'\ud800'"),
            LiteralError::InvalidEscape { offset: 1, .. }
        ));
        assert!(matches!(
            err(r"'\U00110000'"),
            LiteralError::InvalidEscape { .. }
        ));
        assert!(matches!(err(r"'\u12'"), LiteralError::InvalidEscape { .. }));
        assert!(matches!(
            err(r"'ab\N{DASH}'"),
            LiteralError::InvalidEscape { offset: 3, .. }
        ));
        assert!(matches!(
            err("'abc"),
            LiteralError::UnterminatedString { offset: 0 }
        ));
        assert!(matches!(
            err("[1, 'a\nb']"),
            LiteralError::UnterminatedString { offset: 4 }
        ));
        assert!(matches!(
            err("'''abc''"),
            LiteralError::UnterminatedString { offset: 0 }
        ));
        assert!(matches!(
            err(r"r'abc\'"),
            LiteralError::UnterminatedString { offset: 0 }
        ));
        assert!(matches!(
            err("'abc\\"),
            LiteralError::UnterminatedString { offset: 0 }
        ));
        // offsets count characters, not bytes
        assert!(matches!(
            err("'éé' x"),
            LiteralError::Expected { offset: 5, .. }
        ));
        assert!(matches!(err("f'x'"), LiteralError::UnknownName { .. }));
    }

    #[test]
    fn containers() {
        let i = Value::int;
        assert_eq!(p("[]"), Value::List(vec![]));
        assert_eq!(p("[1]"), Value::List(vec![i(1)]));
        assert_eq!(p("[1, 2,]"), Value::List(vec![i(1), i(2)]));
        assert_eq!(p("()"), Value::Tuple(vec![]));
        assert_eq!(p("(1)"), i(1));
        assert_eq!(p("((1))"), i(1));
        assert_eq!(p("-(1)"), i(-1));
        assert_eq!(p("(1,)"), Value::Tuple(vec![i(1)]));
        assert_eq!(p("(1, 2)"), Value::Tuple(vec![i(1), i(2)]));
        assert_eq!(p("(1, 2, )"), Value::Tuple(vec![i(1), i(2)]));
        assert_eq!(p("{}"), Value::Dict(vec![]));
        assert_eq!(
            p("{1: 'a', 'b': [2]}"),
            Value::Dict(vec![
                (i(1), Value::str("a")),
                (Value::str("b"), Value::List(vec![i(2)]))
            ])
        );
        assert_eq!(p("{1: 2,}"), Value::Dict(vec![(i(1), i(2))]));
        assert_eq!(p("{1}"), Value::Set(vec![i(1)]));
        assert_eq!(p("{1, 2,}"), Value::Set(vec![i(1), i(2)]));
        assert_eq!(p("set()"), Value::Set(vec![]));
        assert_eq!(p("set([1, 2])"), Value::Set(vec![i(1), i(2)]));
        assert_eq!(p("set((1,))"), Value::Set(vec![i(1)]));
        assert_eq!(p("set({3})"), Value::Set(vec![i(3)]));
        assert_eq!(p("set({})"), Value::Set(vec![]));
        assert_eq!(p("set({4: 5})"), Value::Set(vec![i(4)]));
        assert_eq!(
            p("set('aba')"),
            Value::Set(vec![Value::str("a"), Value::str("b")])
        );
        assert_eq!(p("set(b'ab')"), Value::Set(vec![i(97), i(98)]));
        assert_eq!(p("frozenset()"), Value::FrozenSet(vec![]));
        assert_eq!(p("frozenset({1, 2})"), Value::FrozenSet(vec![i(1), i(2)]));
        assert_eq!(p("frozenset([2, 1])"), Value::FrozenSet(vec![i(2), i(1)]));
        assert_eq!(p("frozenset(frozenset([1]))"), Value::FrozenSet(vec![i(1)]));
        assert_eq!(
            p("{frozenset(): ()}"),
            Value::Dict(vec![(Value::FrozenSet(vec![]), Value::Tuple(vec![]))])
        );
        assert_eq!(
            p(" [ ( 1 , ) , { 'k' : { 2 } } , [ ] ] "),
            Value::List(vec![
                Value::Tuple(vec![i(1)]),
                Value::Dict(vec![(Value::str("k"), Value::Set(vec![i(2)]))]),
                Value::List(vec![]),
            ])
        );
    }

    #[test]
    fn duplicates_follow_python() {
        let i = Value::int;
        // first key kept, last value wins
        assert_eq!(
            p("{1: 'a', 1.0: 'b', True: 'c'}"),
            Value::Dict(vec![(i(1), Value::str("c"))])
        );
        assert_eq!(
            p("{1: 'a', 2: 'b', 1: 'c'}"),
            Value::Dict(vec![(i(1), Value::str("c")), (i(2), Value::str("b"))])
        );
        assert_eq!(p("{1, 1.0, True, 2}"), Value::Set(vec![i(1), i(2)]));
        assert_eq!(
            p("{(1, 'a'), (1.0, 'a')}"),
            Value::Set(vec![Value::Tuple(vec![i(1), Value::str("a")])])
        );
        assert_eq!(p("{Decimal('1.0'), 1}"), Value::Set(vec![d("1.0")]));
        assert_eq!(
            p("{'a', b'a'}"),
            Value::Set(vec![Value::str("a"), Value::bytes(b"a")])
        );
        assert_eq!(p("frozenset([0, -0.0, 0.0])"), Value::FrozenSet(vec![i(0)]));
        // NaNs are distinct objects in Python
        match p("{float('nan'), float('nan')}") {
            Value::Set(items) => assert_eq!(items.len(), 2),
            other => panic!("{other:?}"),
        }
        // many keys: hash buckets
        let src = format!(
            "{{{}}}",
            (0..100)
                .map(|n| format!("{}: {n}", n % 10))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match p(&src) {
            Value::Dict(pairs) => {
                assert_eq!(pairs.len(), 10);
                assert_eq!(pairs[3], (i(3), i(93)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unhashable() {
        assert!(matches!(
            err("{[1]: 2}"),
            LiteralError::Unhashable {
                offset: 1,
                type_name: "list"
            }
        ));
        assert!(matches!(
            err("{1: 2, {}: 3}"),
            LiteralError::Unhashable {
                offset: 7,
                type_name: "dict"
            }
        ));
        assert!(matches!(
            err("{1, set()}"),
            LiteralError::Unhashable {
                offset: 4,
                type_name: "set"
            }
        ));
        assert!(matches!(
            err("{(1, [2]): 3}"),
            LiteralError::Unhashable {
                offset: 1,
                type_name: "list"
            }
        ));
        assert!(matches!(
            err("{[]}"),
            LiteralError::Unhashable { offset: 1, .. }
        ));
        assert!(matches!(
            err("frozenset([[1]])"),
            LiteralError::Unhashable { offset: 10, .. }
        ));
        assert!(matches!(err("set([{}])"), LiteralError::Unhashable { .. }));
        // values may be unhashable
        assert!(parse("{1: [2], 3: {}}").is_ok());
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "a value"),
            ("   ", 3, "a value"),
            ("[", 1, "a value"),
            ("[1", 2, "',' or ']'"),
            ("[1 2]", 3, "',' or ']'"),
            ("[,]", 1, "a value"),
            ("[1,,]", 3, "a value"),
            ("(,)", 1, "a value"),
            ("(1 2)", 3, "',' or ')'"),
            ("{1: }", 4, "a value"),
            ("{1: 2, 3}", 8, "':'"),
            ("{1, 2: 3}", 5, "',' or '}'"),
            ("{1 2}", 3, "':', ',' or '}'"),
            ("{:}", 1, "a value"),
            ("[1]]", 3, "end of input"),
            ("1 2", 2, "end of input"),
            ("[1)", 2, "',' or ']'"),
            ("-", 1, "a value"),
            ("[-]", 2, "a value"),
            ("set", 3, "'(' after the function name"),
            ("set(1 2)", 6, "',' or ')'"),
        ];
        for &(src, offset, what) in cases {
            match err(src) {
                LiteralError::Expected {
                    offset: o,
                    expected,
                    ..
                } => {
                    assert_eq!((o, expected), (offset, what), "{src:?}");
                }
                other => panic!("{src:?}: {other}"),
            }
        }
        assert!(matches!(
            err("foo"),
            LiteralError::UnknownName { offset: 0, .. }
        ));
        assert!(matches!(
            err("[1, none]"),
            LiteralError::UnknownName { offset: 4, .. }
        ));
        assert!(matches!(
            err("1 + 2"),
            LiteralError::Expected { offset: 2, .. }
        ));
        assert!(matches!(
            err("@"),
            LiteralError::UnexpectedChar { offset: 0, ch: '@' }
        ));
        assert!(matches!(
            err("[1, é]"),
            LiteralError::UnexpectedChar {
                offset: 4, ch: 'é'
            }
        ));
        assert!(matches!(
            err("-'a'"),
            LiteralError::BadOperand {
                offset: 0,
                op: '-',
                type_name: "str"
            }
        ));
        assert!(matches!(
            err("+[]"),
            LiteralError::BadOperand {
                offset: 0,
                op: '+',
                type_name: "list"
            }
        ));
        assert!(matches!(
            err("set(1, 2)"),
            LiteralError::BadArgument { offset: 7, .. }
        ));
        assert!(matches!(
            err("set(1)"),
            LiteralError::BadArgument { offset: 4, .. }
        ));
        let e = err("[1, 2 3]");
        assert_eq!(e.offset(), 6);
        assert_eq!(
            e.to_string(),
            "expected ',' or ']' at character 6, found a number"
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let mut v = p(&ok);
        let mut depth = 0;
        while let Value::List(mut items) = v {
            depth += 1;
            v = items.pop().unwrap_or(Value::None);
        }
        assert_eq!(depth, MAX_DEPTH);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            err(&deep),
            LiteralError::TooDeep {
                offset: MAX_DEPTH,
                limit: MAX_DEPTH
            }
        );
        // a hostile input far deeper fails fast on a small stack
        let hostile = "([{".repeat(200_000);
        let r = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || parse(&hostile).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        assert!(matches!(r, Err(LiteralError::TooDeep { .. })));
        // a deep ok value drops fine too
        let nested = format!("{})){}", "(".repeat(999), ",)".repeat(997));
        assert!(matches!(p(&nested), Value::Tuple(_)));
    }
}
