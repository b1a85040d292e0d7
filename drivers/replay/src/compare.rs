//! Comparing what our core emitted with what a transcript recorded: the
//! plaintext phase and the negotiation blocks line by line, banana token
//! by token, after replacing declared variable fields by their names.

use std::fmt;

use bytes::Bytes;
use foolscap_core::banana::{Token, TokenDecoder, VocabTable};

use crate::transcript::Side;

/// A declared variable field: a value that legitimately differs between
/// the recording and the replay (an incarnation, a random swissnum, a
/// port, ...). Both sides are normalised before comparing: the recorded
/// value and our value are each replaced by `<name>` wherever they occur
/// in a header line, STRING or ERROR token. So the field may differ, but
/// it must be used consistently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// `recorded` in the transcript and `ours` in our output stand for the
    /// same thing.
    Substitute {
        /// The name shown in reports (`<name>`).
        name: String,
        /// The bytes in the recording.
        recorded: Vec<u8>,
        /// The bytes in our output.
        ours: Vec<u8>,
    },
    /// The STRING token that follows a STRING or VOCAB token equal to
    /// `key` (a dict key, such as a Failure's `traceback`) is replaced by
    /// `<name>` on both sides: its content is not compared.
    AfterKey {
        /// The name shown in reports.
        name: String,
        /// The key.
        key: Vec<u8>,
    },
}

impl Variable {
    /// A [`Variable::Substitute`].
    pub fn substitute(
        name: impl Into<String>,
        recorded: impl Into<Vec<u8>>,
        ours: impl Into<Vec<u8>>,
    ) -> Variable {
        Variable::Substitute {
            name: name.into(),
            recorded: recorded.into(),
            ours: ours.into(),
        }
    }

    /// A [`Variable::AfterKey`].
    pub fn after_key(name: impl Into<String>, key: impl Into<Vec<u8>>) -> Variable {
        Variable::AfterKey {
            name: name.into(),
            key: key.into(),
        }
    }
}

/// Which part of a direction's stream a difference is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The plaintext phase (request, 101, refusals), line by line.
    Plain,
    /// The negotiation blocks at the start of the TLS stream (hello,
    /// decision, error), line by line.
    Blocks,
    /// Banana, token by token.
    Banana,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Plain => "plaintext phase",
            Part::Blocks => "negotiation blocks",
            Part::Banana => "banana",
        })
    }
}

/// The first place where our output differs from the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The transcript's connection number.
    pub connection: u64,
    /// The direction (our side's), e.g. `S>C` when we play the server.
    pub from: Side,
    /// Plain, blocks or banana.
    pub part: Part,
    /// Index of the differing line or token within the part.
    pub index: usize,
    /// Byte offset of the recorded item within its phase's stream (`plain`
    /// or `tls`).
    pub offset: usize,
    /// The recorded item (`None`: the recording ends here).
    pub expected: Option<String>,
    /// Our item (`None`: our output ends here).
    pub actual: Option<String>,
    /// The items before it (equal on both sides), oldest first.
    pub before: Vec<String>,
    /// The recorded items after it.
    pub after_expected: Vec<String>,
    /// Our items after it.
    pub after_actual: Vec<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.part {
            Part::Banana => "token",
            _ => "line",
        };
        let stream = match self.part {
            Part::Plain => "plain",
            _ => "tls",
        };
        writeln!(
            f,
            "connection {} {} {}: {what} #{} differs (byte offset {} of the recorded {stream} stream)",
            self.connection,
            self.from.arrow(),
            self.part,
            self.index,
            self.offset
        )?;
        let or_end = |s: &Option<String>| s.clone().unwrap_or_else(|| "<end of stream>".into());
        for b in &self.before {
            writeln!(f, "    ...       {b}")?;
        }
        writeln!(f, "  recorded:   {}", or_end(&self.expected))?;
        writeln!(f, "  ours:       {}", or_end(&self.actual))?;
        for (label, items) in [
            ("recorded", &self.after_expected),
            ("ours", &self.after_actual),
        ] {
            if !items.is_empty() {
                writeln!(f, "  then {label}: {}", items.join("  "))?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Difference {}

/// Items of context shown before and after a difference.
pub const CONTEXT: usize = 4;

/// How much was compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compared {
    /// Plaintext-phase lines.
    pub plain_lines: usize,
    /// Negotiation block lines.
    pub block_lines: usize,
    /// Banana tokens.
    pub tokens: usize,
    /// Substitutions applied (both sides together).
    pub substitutions: usize,
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8], count: &mut usize) -> Vec<u8> {
    if from.is_empty() || data.len() < from.len() {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            *count += 1;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Applies the substitutions of one side (`recorded` or ours).
struct Normaliser<'a> {
    variables: &'a [Variable],
    recorded: bool,
    count: usize,
}

impl Normaliser<'_> {
    fn apply(&mut self, data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        for var in self.variables {
            if let Variable::Substitute {
                name,
                recorded,
                ours,
            } = var
            {
                let from = if self.recorded { recorded } else { ours };
                v = replace_all(&v, from, format!("<{name}>").as_bytes(), &mut self.count);
            }
        }
        v
    }
}

/// Python-style rendering of bytes, shortened.
fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 100;
    let mut s = String::from("b'");
    for &c in b.iter().take(MAX) {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    if b.len() > MAX {
        s.push_str(&format!("...({} bytes)", b.len()));
    }
    s
}

fn show_token(t: &Token, vocab: &VocabTable) -> String {
    match t {
        Token::Int(v) => format!("INT {v}"),
        Token::Neg(v) => format!("NEG -{v}"),
        Token::LongInt(b) => format!("LONGINT {}", show_bytes(b)),
        Token::LongNeg(b) => format!("LONGNEG {}", show_bytes(b)),
        Token::Float(v) => format!("FLOAT {v:?}"),
        Token::String(b) => format!("STRING {}", show_bytes(b)),
        Token::Vocab(i) => match vocab.word(*i) {
            Some(w) => format!("VOCAB {i} ({})", show_bytes(w)),
            None => format!("VOCAB {i}"),
        },
        Token::Open(n) => format!("OPEN({n})"),
        Token::Close(n) => format!("CLOSE({n})"),
        Token::Abort(n) => format!("ABORT({n})"),
        Token::Error(b) => format!("ERROR {}", show_bytes(b)),
        Token::Ping(n) => format!("PING {n}"),
        Token::Pong(n) => format!("PONG {n}"),
    }
}

/// One side's items, normalised, with their offsets and display text.
struct Items {
    items: Vec<(usize, Vec<u8>, String)>,
    /// Set when the stream could not be split into items.
    trailing_error: Option<String>,
}

fn line_items(data: &[u8], base: usize, norm: &mut Normaliser<'_>) -> Items {
    let mut items = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = data[off..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| off + i + 2)
            .unwrap_or(data.len());
        let n = norm.apply(&data[off..end]);
        let shown = show_bytes(&n);
        items.push((base + off, n, shown));
        off = end;
    }
    Items {
        items,
        trailing_error: None,
    }
}

fn token_items(data: &[u8], base: usize, vocab: &VocabTable, norm: &mut Normaliser<'_>) -> Items {
    let mut dec = TokenDecoder::default();
    dec.feed(data);
    let mut items: Vec<(usize, Vec<u8>, String)> = Vec::new();
    let mut prev_key: Option<Vec<u8>> = None;
    let mut trailing_error = None;
    loop {
        let at = base + dec.offset() as usize;
        let t = match dec.next_token() {
            Ok(Some(t)) => t,
            Ok(None) => {
                if dec.buffered() > 0 {
                    trailing_error =
                        Some(format!("{} bytes of an unfinished token", dec.buffered()));
                }
                break;
            }
            Err(e) => {
                trailing_error = Some(format!("undecodable: {e}"));
                break;
            }
        };
        let mut masked = None;
        if let (Some(k), Token::String(_)) = (&prev_key, &t) {
            for var in norm.variables {
                if let Variable::AfterKey { name, key } = var {
                    if key == k {
                        masked = Some(Token::String(Bytes::from(format!("<{name}>"))));
                        norm.count += 1;
                    }
                }
            }
        }
        prev_key = match &t {
            Token::String(b) => Some(b.to_vec()),
            Token::Vocab(i) => vocab.word(*i).map(|w| w.to_vec()),
            _ => None,
        };
        let t = match (masked, t) {
            (Some(m), _) => m,
            (None, Token::String(b)) => Token::String(Bytes::from(norm.apply(&b))),
            (None, Token::Error(b)) => Token::Error(Bytes::from(norm.apply(&b))),
            (None, t) => t,
        };
        let mut key = bytes::BytesMut::new();
        foolscap_core::banana::encode::put_token(&mut key, &t);
        items.push((at, key.to_vec(), show_token(&t, vocab)));
    }
    Items {
        items,
        trailing_error,
    }
}

/// Where the compared streams come from, for reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub connection: u64,
    pub from: Side,
}

fn first_difference(
    origin: Origin,
    part: Part,
    expected: &Items,
    actual: &Items,
) -> Result<usize, Box<Difference>> {
    let (e, a) = (&expected.items, &actual.items);
    let n = e.len().max(a.len());
    for i in 0..n {
        let (ei, ai) = (e.get(i), a.get(i));
        let same = matches!((ei, ai), (Some(x), Some(y)) if x.1 == y.1);
        if same {
            continue;
        }
        let shown = |items: &Vec<(usize, Vec<u8>, String)>, errs: &Option<String>| {
            items
                .get(i)
                .map(|x| x.2.clone())
                .or_else(|| errs.as_ref().map(|e| format!("<{e}>")))
        };
        let after = |items: &Vec<(usize, Vec<u8>, String)>| {
            items
                .iter()
                .skip(i + 1)
                .take(CONTEXT)
                .map(|x| x.2.clone())
                .collect()
        };
        return Err(Box::new(Difference {
            connection: origin.connection,
            from: origin.from,
            part,
            index: i,
            offset: ei
                .or(e.last())
                .map(|x| x.0 + if ei.is_some() { 0 } else { x.1.len() })
                .unwrap_or(0),
            expected: shown(e, &expected.trailing_error),
            actual: shown(a, &actual.trailing_error),
            before: e[i.saturating_sub(CONTEXT)..i]
                .iter()
                .map(|x| x.2.clone())
                .collect(),
            after_expected: after(e),
            after_actual: after(a),
        }));
    }
    if let Some(err) = expected
        .trailing_error
        .as_ref()
        .or(actual.trailing_error.as_ref())
    {
        let which = if expected.trailing_error.is_some() {
            "recorded"
        } else {
            "ours"
        };
        return Err(Box::new(Difference {
            connection: origin.connection,
            from: origin.from,
            part,
            index: n,
            offset: e.last().map(|x| x.0).unwrap_or(0),
            expected: Some(format!("<{which} stream ends with {err}>")),
            actual: None,
            before: e[n.saturating_sub(CONTEXT)..]
                .iter()
                .map(|x| x.2.clone())
                .collect(),
            after_expected: Vec::new(),
            after_actual: Vec::new(),
        }));
    }
    Ok(n)
}

/// Length of the negotiation blocks at the start of a TLS stream (each
/// starts with `banana-` and ends with a blank line).
pub fn blocks_len(tls: &[u8]) -> usize {
    let mut n = 0;
    while tls[n..].starts_with(b"banana-") {
        match tls[n..].windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => n += i + 4,
            None => return tls.len(),
        }
    }
    n
}

/// The value of `key` in the first block of a TLS stream.
pub fn block_value<'a>(tls: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let end = blocks_len(tls);
    tls[..end].split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(key.as_bytes())?.strip_prefix(b": ")?;
        Some(rest)
    })
}

/// Compares one direction: `plain` and `tls` streams, recorded vs ours.
pub(crate) fn compare_direction(
    origin: Origin,
    recorded: (&[u8], &[u8]),
    ours: (&[u8], &[u8]),
    variables: &[Variable],
    vocab: &VocabTable,
) -> Result<Compared, Box<Difference>> {
    let mut rec = Normaliser {
        variables,
        recorded: true,
        count: 0,
    };
    let mut our = Normaliser {
        variables,
        recorded: false,
        count: 0,
    };
    let mut c = Compared {
        plain_lines: first_difference(
            origin,
            Part::Plain,
            &line_items(recorded.0, 0, &mut rec),
            &line_items(ours.0, 0, &mut our),
        )?,
        ..Compared::default()
    };
    let (rb, ob) = (blocks_len(recorded.1), blocks_len(ours.1));
    c.block_lines = first_difference(
        origin,
        Part::Blocks,
        &line_items(&recorded.1[..rb], 0, &mut rec),
        &line_items(&ours.1[..ob], 0, &mut our),
    )?;
    c.tokens = first_difference(
        origin,
        Part::Banana,
        &token_items(&recorded.1[rb..], rb, vocab, &mut rec),
        &token_items(&ours.1[ob..], ob, vocab, &mut our),
    )?;
    c.substitutions = rec.count + our.count;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            connection: 1,
            from: Side::Server,
        }
    }

    #[test]
    fn substitutions_and_masks_apply_to_both_sides() {
        let vars = [
            Variable::substitute("incarnation", "aaaa", "bbbb"),
            Variable::after_key("traceback", "traceback"),
        ];
        let rec = b"banana-x: aaaa 1\r\n\r\n\x05\x82aaaaa\x09\x82traceback\x03\x82abc";
        let ours = b"banana-x: bbbb 1\r\n\r\n\x05\x82bbbba\x09\x82traceback\x02\x82zz";
        let c = compare_direction(origin(), (b"", rec), (b"", ours), &vars, &VocabTable::EMPTY)
            .unwrap();
        assert_eq!((c.block_lines, c.tokens), (2, 3));
    }

    #[test]
    fn the_first_differing_token_is_reported_with_context() {
        let rec = b"\x00\x88\x01\x81\x03\x82add\x00\x89";
        let ours = b"\x00\x88\x01\x81\x03\x82sub\x00\x89";
        let d = compare_direction(origin(), (b"", rec), (b"", ours), &[], &VocabTable::EMPTY)
            .unwrap_err();
        assert_eq!((d.part, d.index, d.offset), (Part::Banana, 2, 4));
        assert_eq!(d.expected.as_deref(), Some("STRING b'add'"));
        assert_eq!(d.actual.as_deref(), Some("STRING b'sub'"));
        assert_eq!(d.before, ["OPEN(0)", "INT 1"]);
        assert_eq!(d.after_expected, ["CLOSE(0)"]);
        let text = d.to_string();
        assert!(text.contains("connection 1 S>C banana: token #2"), "{text}");
    }

    #[test]
    fn a_missing_tail_is_a_difference() {
        let d = compare_direction(
            origin(),
            (b"GET /\r\nHost: x\r\n\r\n", b""),
            (b"GET /\r\n", b""),
            &[],
            &VocabTable::EMPTY,
        )
        .unwrap_err();
        assert_eq!((d.part, d.index, d.offset), (Part::Plain, 1, 7));
        assert_eq!(d.actual, None);
    }
}
