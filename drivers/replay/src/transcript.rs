//! The transcript line format: one parser for our recordings and the
//! Python reference captures, and a writer that records a live Tub.
//!
//! ```text
//! # free-form comment
//! CONN <n> <client-address> <server-address>
//! <n> C>S|S>C plain|tls <hex>
//! ```
//!
//! `C` opened the TCP connection, `S` accepted it. A data line is one run
//! of consecutive writes in one direction; the stream of a direction is
//! the concatenation of its lines. Addresses that are not known are
//! written as `-`. Blank lines are allowed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use foolscap_core::negotiation::{ConnectionId, Direction, RecordPhase, Recorder};
use thiserror::Error;

/// Which end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that connected (`C`).
    Client,
    /// The side that accepted (`S`).
    Server,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// `C>S` for bytes from the client, `S>C` from the server.
    pub fn arrow(self) -> &'static str {
        match self {
            Side::Client => "C>S",
            Side::Server => "S>C",
        }
    }
}

/// Which phase of a connection a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Raw TCP bytes before TLS (`plain`).
    Plain,
    /// Decrypted TLS application data (`tls`).
    Tls,
}

impl Phase {
    /// The word used in the format.
    pub fn word(self) -> &'static str {
        match self {
            Phase::Plain => "plain",
            Phase::Tls => "tls",
        }
    }
}

impl From<RecordPhase> for Phase {
    fn from(p: RecordPhase) -> Phase {
        match p {
            RecordPhase::Plain => Phase::Plain,
            RecordPhase::Tls => Phase::Tls,
        }
    }
}

/// A `CONN` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection number used by its data lines.
    pub number: u64,
    /// The client's address (`-` when unknown).
    pub client: String,
    /// The server's address (`-` when unknown).
    pub server: String,
}

impl Connection {
    /// The port of the server address, if it has one.
    pub fn server_port(&self) -> Option<u16> {
        self.server.rsplit_once(':')?.1.parse().ok()
    }

    /// The host of the server address, if known.
    pub fn server_host(&self) -> Option<&str> {
        Some(self.server.rsplit_once(':')?.0)
    }
}

/// One data line: a run of bytes in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The connection number.
    pub connection: u64,
    /// Who sent the bytes.
    pub from: Side,
    /// `plain` or `tls`.
    pub phase: Phase,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The 1-based line number in the file.
    pub line: usize,
}

/// A parsed transcript.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The comment lines, without `#` and the space after it.
    pub comments: Vec<String>,
    /// The `CONN` lines, in file order.
    pub connections: Vec<Connection>,
    /// The data lines, in file order.
    pub chunks: Vec<Chunk>,
}

/// Bounds on what [`Transcript::parse_with`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseLimits {
    /// Longest line, in bytes (a data line holds twice its payload).
    /// Default: 64 MiB.
    pub max_line_bytes: usize,
    /// Largest file, in bytes. Default: 512 MiB.
    pub max_file_bytes: usize,
    /// Most `CONN` lines. Default: 10,000.
    pub max_connections: usize,
}

impl ParseLimits {
    /// Default `max_line_bytes`.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;
    /// Default `max_file_bytes`.
    pub const DEFAULT_MAX_FILE_BYTES: usize = 512 << 20;
    /// Default `max_connections`.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Why a transcript was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The file is larger than `max_file_bytes`.
    #[error("transcript of {size} bytes is larger than the limit of {limit}")]
    FileTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A line is longer than `max_line_bytes`.
    #[error("line {line}: longer than the limit of {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// More `CONN` lines than `max_connections`.
    #[error("line {line}: more than {limit} connections")]
    TooManyConnections {
        /// 1-based line number.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A line is not UTF-8.
    #[error("line {line}: not UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line that is neither a comment, a `CONN` line nor a data line.
    #[error("line {line}: {why}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A connection number that is not a decimal number.
    #[error("line {line}: bad connection number {text:?}")]
    BadConnectionNumber {
        /// 1-based line number.
        line: usize,
        /// The text found.
        text: String,
    },
    /// A `CONN` line for a number already declared.
    #[error("line {line}: connection {number} declared twice")]
    DuplicateConnection {
        /// 1-based line number.
        line: usize,
        /// The connection.
        number: u64,
    },
    /// A data line for a connection without a `CONN` line before it.
    #[error("line {line}: connection {number} has no CONN line before it")]
    UnknownConnection {
        /// 1-based line number.
        line: usize,
        /// The connection.
        number: u64,
    },
    /// The direction is not `C>S` or `S>C`.
    #[error("line {line}: direction must be C>S or S>C, not {text:?}")]
    BadDirection {
        /// 1-based line number.
        line: usize,
        /// The text found.
        text: String,
    },
    /// The phase is not `plain` or `tls`.
    #[error("line {line}: phase must be plain or tls, not {text:?}")]
    BadPhase {
        /// 1-based line number.
        line: usize,
        /// The text found.
        text: String,
    },
    /// The payload is not an even number of hex digits.
    #[error("line {line}: bad hex at column {column}")]
    BadHex {
        /// 1-based line number.
        line: usize,
        /// 1-based column of the first bad digit (or the end, if odd).
        column: usize,
    },
}

fn unhex(s: &str, line: usize, column0: usize) -> Result<Vec<u8>, ParseError> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return Err(ParseError::BadHex {
            line,
            column: column0 + b.len() + 1,
        });
    }
    let digit = |i: usize| -> Result<u8, ParseError> {
        let c = b[i];
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(ParseError::BadHex {
                line,
                column: column0 + i + 1,
            }),
        }
    };
    (0..b.len())
        .step_by(2)
        .map(|i| Ok(digit(i)? << 4 | digit(i + 1)?))
        .collect()
}

impl Transcript {
    /// Parses a transcript with the default [`ParseLimits`].
    pub fn parse(text: &[u8]) -> Result<Transcript, ParseError> {
        Self::parse_with(text, &ParseLimits::default())
    }

    /// Parses a transcript.
    pub fn parse_with(text: &[u8], limits: &ParseLimits) -> Result<Transcript, ParseError> {
        if text.len() > limits.max_file_bytes {
            return Err(ParseError::FileTooLarge {
                size: text.len(),
                limit: limits.max_file_bytes,
            });
        }
        let mut t = Transcript::default();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            if raw.len() > limits.max_line_bytes {
                return Err(ParseError::LineTooLong {
                    line,
                    limit: limits.max_line_bytes,
                });
            }
            let mut raw = raw;
            while let Some(r) = raw.strip_suffix(b"\r") {
                raw = r;
            }
            let s = std::str::from_utf8(raw).map_err(|_| ParseError::NotUtf8 { line })?;
            if let Some(c) = s.strip_prefix('#') {
                t.comments.push(c.strip_prefix(' ').unwrap_or(c).to_owned());
                continue;
            }
            if s.trim().is_empty() {
                continue;
            }
            let words: Vec<&str> = s.split_ascii_whitespace().collect();
            let number = |text: &str| {
                text.parse::<u64>()
                    .map_err(|_| ParseError::BadConnectionNumber {
                        line,
                        text: text.chars().take(40).collect(),
                    })
            };
            if words[0] == "CONN" {
                let [_, n, client, server] = words[..] else {
                    return Err(ParseError::Malformed {
                        line,
                        why: "a CONN line has a number and two addresses",
                    });
                };
                let number = number(n)?;
                if t.connections.iter().any(|c| c.number == number) {
                    return Err(ParseError::DuplicateConnection { line, number });
                }
                if t.connections.len() >= limits.max_connections {
                    return Err(ParseError::TooManyConnections {
                        line,
                        limit: limits.max_connections,
                    });
                }
                t.connections.push(Connection {
                    number,
                    client: client.to_owned(),
                    server: server.to_owned(),
                });
                continue;
            }
            let [n, dir, phase, hex] = words[..] else {
                return Err(ParseError::Malformed {
                    line,
                    why: "expected a comment, a CONN line or `<n> <dir> <phase> <hex>`",
                });
            };
            let connection = number(n)?;
            if !t.connections.iter().any(|c| c.number == connection) {
                return Err(ParseError::UnknownConnection {
                    line,
                    number: connection,
                });
            }
            let from = match dir {
                "C>S" => Side::Client,
                "S>C" => Side::Server,
                _ => {
                    return Err(ParseError::BadDirection {
                        line,
                        text: dir.chars().take(40).collect(),
                    })
                }
            };
            let phase = match phase {
                "plain" => Phase::Plain,
                "tls" => Phase::Tls,
                _ => {
                    return Err(ParseError::BadPhase {
                        line,
                        text: phase.chars().take(40).collect(),
                    })
                }
            };
            // the hex is the last word; find its column for error messages
            let column0 = s.len() - s.trim_end().len();
            let column0 = s.len() - column0 - hex.len();
            let bytes = unhex(hex, line, column0)?;
            t.chunks.push(Chunk {
                connection,
                from,
                phase,
                bytes,
                line,
            });
        }
        Ok(t)
    }

    /// The `CONN` line of connection `n`.
    pub fn connection(&self, n: u64) -> Option<&Connection> {
        self.connections.iter().find(|c| c.number == n)
    }

    /// The concatenated bytes `from` sent on connection `n` in `phase`.
    pub fn stream(&self, n: u64, from: Side, phase: Phase) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|c| c.connection == n && c.from == from && c.phase == phase)
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// Writes the transcript in the line format (parsing the output gives
    /// the same transcript back).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        for c in &self.comments {
            writeln!(out, "# {c}")?;
        }
        // CONN lines first (data lines may only follow theirs), then the
        // data lines in their order
        for conn in &self.connections {
            writeln!(out, "CONN {} {} {}", conn.number, conn.client, conn.server)?;
        }
        for ch in &self.chunks {
            write_data_line(out, ch.connection, ch.from, ch.phase, &ch.bytes)?;
        }
        Ok(())
    }
}

fn write_data_line(
    out: &mut impl Write,
    n: u64,
    from: Side,
    phase: Phase,
    bytes: &[u8],
) -> std::io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = format!("{n} {} {} ", from.arrow(), phase.word()).into_bytes();
    line.reserve(bytes.len() * 2 + 1);
    for b in bytes {
        line.push(HEX[usize::from(b >> 4)]);
        line.push(HEX[usize::from(b & 15)]);
    }
    line.push(b'\n');
    out.write_all(&line)
}

/// A clonable in-memory sink (for [`TranscriptWriter::new`] in tests).
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ConnState {
    number: u64,
    is_client: bool,
    client: String,
    server: String,
    announced: bool,
}

struct WriterState {
    out: Box<dyn Write + Send>,
    conns: HashMap<ConnectionId, ConnState>,
    next_number: u64,
    /// The run being collected: connection, sender, phase, bytes.
    run: Option<(ConnectionId, Side, Phase, Vec<u8>)>,
    error: Option<std::io::Error>,
}

impl WriterState {
    fn conn(&mut self, id: ConnectionId) -> &mut ConnState {
        let next = &mut self.next_number;
        self.conns.entry(id).or_insert_with(|| {
            let number = *next;
            *next += 1;
            ConnState {
                number,
                is_client: false,
                client: "-".into(),
                server: "-".into(),
                announced: false,
            }
        })
    }

    fn end_run(&mut self) {
        let Some((id, from, phase, bytes)) = self.run.take() else {
            return;
        };
        let c = self.conn(id);
        let number = c.number;
        let conn_line = (!c.announced).then(|| {
            c.announced = true;
            format!("CONN {} {} {}\n", c.number, c.client, c.server)
        });
        let r = (|| {
            if let Some(l) = conn_line {
                self.out.write_all(l.as_bytes())?;
            }
            write_data_line(&mut self.out, number, from, phase, &bytes)
        })();
        self.keep(r);
    }

    fn keep(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }
}

/// A [`Recorder`] that writes the transcript format: set it in
/// `TubConfig::recorder` (through a `RecorderHandle`) and every
/// connection of that Tub is written, numbered 1, 2, ... in the order
/// they open. Consecutive writes in one direction share a line. The
/// `CONN` line is written with the connection's first bytes, so
/// [`TranscriptWriter::set_addresses`] may still fill in the addresses
/// after `accept`/`dial_connected`.
pub struct TranscriptWriter {
    state: Mutex<WriterState>,
}

impl std::fmt::Debug for TranscriptWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriptWriter").finish_non_exhaustive()
    }
}

impl TranscriptWriter {
    /// Writes to `out` (wrap a file in a `BufWriter`; call
    /// [`TranscriptWriter::flush`] at the end).
    pub fn new(out: impl Write + Send + 'static) -> TranscriptWriter {
        TranscriptWriter {
            state: Mutex::new(WriterState {
                out: Box::new(out),
                conns: HashMap::new(),
                next_number: 1,
                run: None,
                error: None,
            }),
        }
    }

    /// Creates (or truncates) a file.
    pub fn create(path: impl AsRef<std::path::Path>) -> std::io::Result<TranscriptWriter> {
        let f = std::fs::File::create(path)?;
        Ok(Self::new(std::io::BufWriter::new(f)))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `# text` (each line of `text` becomes one comment line).
    pub fn comment(&self, text: &str) {
        let mut s = self.state();
        s.end_run();
        for l in text.lines() {
            let r = writeln!(s.out, "# {l}");
            s.keep(r);
        }
    }

    /// The addresses of a connection (`ip:port`), for its `CONN` line, if
    /// it has not been written yet.
    pub fn set_addresses(&self, connection: ConnectionId, client: &str, server: &str) {
        let mut s = self.state();
        let c = s.conn(connection);
        c.client = client.to_owned();
        c.server = server.to_owned();
    }

    /// The transcript number of a connection (once it has opened).
    pub fn number_of(&self, connection: ConnectionId) -> Option<u64> {
        self.state().conns.get(&connection).map(|c| c.number)
    }

    /// Ends the current line and flushes the sink; reports the first write
    /// error since the last call.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut s = self.state();
        s.end_run();
        let r = s.out.flush();
        s.keep(r);
        match s.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for TranscriptWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl Recorder for TranscriptWriter {
    fn opened(&self, connection: ConnectionId, is_client: bool, dialled: Option<(&str, u16)>) {
        let mut s = self.state();
        let c = s.conn(connection);
        c.is_client = is_client;
        if let Some((host, port)) = dialled {
            if c.server == "-" {
                c.server = format!("{host}:{port}");
            }
        }
    }

    fn addresses(&self, connection: ConnectionId, client: &str, server: &str) {
        self.set_addresses(connection, client, server);
    }

    fn record(
        &self,
        connection: ConnectionId,
        direction: Direction,
        phase: RecordPhase,
        bytes: &[u8],
    ) {
        let mut s = self.state();
        let is_client = s.conn(connection).is_client;
        let from = match (direction, is_client) {
            (Direction::Sent, true) | (Direction::Received, false) => Side::Client,
            _ => Side::Server,
        };
        let phase = Phase::from(phase);
        match &mut s.run {
            Some((id, f, p, run)) if *id == connection && *f == from && *p == phase => {
                run.extend_from_slice(bytes)
            }
            _ => {
                s.end_run();
                s.run = Some((connection, from, phase, bytes.to_vec()));
            }
        }
    }

    fn closed(&self, connection: ConnectionId) {
        let mut s = self.state();
        if matches!(&s.run, Some((id, ..)) if *id == connection) {
            s.end_run();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_format_and_writes_it_back() {
        let text = b"# a comment\n#bare\n\nCONN 1 127.0.0.1:1 127.0.0.1:2\n\
                     1 C>S plain 4745540d0a\n1 S>C tls 00FF\n";
        let t = Transcript::parse(text).unwrap();
        assert_eq!(t.comments, ["a comment", "bare"]);
        assert_eq!(t.connection(1).unwrap().server_port(), Some(2));
        assert_eq!(t.chunks.len(), 2);
        assert_eq!(t.stream(1, Side::Server, Phase::Tls), [0, 255]);
        let mut out = Vec::new();
        t.write_to(&mut out).unwrap();
        let back = Transcript::parse(&out).unwrap();
        assert_eq!(
            (&back.comments, &back.connections),
            (&t.comments, &t.connections)
        );
        let strip = |t: &Transcript| -> Vec<(u64, Side, Phase, Vec<u8>)> {
            t.chunks
                .iter()
                .map(|c| (c.connection, c.from, c.phase, c.bytes.clone()))
                .collect()
        };
        assert_eq!(strip(&back), strip(&t));
    }

    #[test]
    fn refuses_bad_lines_with_their_number() {
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"1 C>S tls 00\n",
                ParseError::UnknownConnection { line: 1, number: 1 },
            ),
            (
                b"CONN 1 a b\n1 C>S tls 0\n",
                ParseError::BadHex {
                    line: 2,
                    column: 12,
                },
            ),
            (
                b"CONN 1 a b\n1 C>S tls 0g\n",
                ParseError::BadHex {
                    line: 2,
                    column: 12,
                },
            ),
            (
                b"CONN 1 a b\n1 X>S tls 00\n",
                ParseError::BadDirection {
                    line: 2,
                    text: "X>S".into(),
                },
            ),
            (
                b"CONN 1 a b\n1 C>S tcp 00\n",
                ParseError::BadPhase {
                    line: 2,
                    text: "tcp".into(),
                },
            ),
            (
                b"CONN x a b\n",
                ParseError::BadConnectionNumber {
                    line: 1,
                    text: "x".into(),
                },
            ),
            (
                b"CONN 1 a b\nCONN 1 a b\n",
                ParseError::DuplicateConnection { line: 2, number: 1 },
            ),
            (b"\xff\n", ParseError::NotUtf8 { line: 1 }),
        ];
        for (text, want) in cases {
            assert_eq!(&Transcript::parse(text).unwrap_err(), want);
        }
        assert!(matches!(
            Transcript::parse(b"CONN 1 a\n"),
            Err(ParseError::Malformed { line: 1, .. })
        ));
        let limits = ParseLimits {
            max_line_bytes: 8,
            ..ParseLimits::default()
        };
        assert_eq!(
            Transcript::parse_with(b"CONN 1 a b\n", &limits).unwrap_err(),
            ParseError::LineTooLong { line: 1, limit: 8 }
        );
        let limits = ParseLimits {
            max_file_bytes: 4,
            ..ParseLimits::default()
        };
        assert!(matches!(
            Transcript::parse_with(b"CONN 1 a b\n", &limits),
            Err(ParseError::FileTooLarge { .. })
        ));
    }

    #[test]
    fn the_writer_joins_runs_and_numbers_connections() {
        let buf = SharedBuffer::new();
        let w = TranscriptWriter::new(buf.clone());
        let (a, b) = (ConnectionId(7), ConnectionId(9));
        w.comment("hello");
        w.opened(a, true, Some(("127.0.0.1", 5)));
        w.record(a, Direction::Sent, RecordPhase::Plain, b"GE");
        w.record(a, Direction::Sent, RecordPhase::Plain, b"T");
        w.record(a, Direction::Received, RecordPhase::Plain, b"1");
        w.opened(b, false, None);
        w.set_addresses(b, "10.0.0.1:1", "10.0.0.2:2");
        w.record(b, Direction::Received, RecordPhase::Tls, b"x");
        w.record(a, Direction::Sent, RecordPhase::Tls, b"y");
        w.closed(a);
        w.flush().unwrap();
        let text = String::from_utf8(buf.contents()).unwrap();
        assert_eq!(
            text,
            "# hello\nCONN 1 - 127.0.0.1:5\n1 C>S plain 474554\n1 S>C plain 31\n\
             CONN 2 10.0.0.1:1 10.0.0.2:2\n2 C>S tls 78\n1 C>S tls 79\n"
        );
        let t = Transcript::parse(text.as_bytes()).unwrap();
        assert_eq!(t.stream(1, Side::Client, Phase::Plain), b"GET");
    }
}
