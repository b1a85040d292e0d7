//! `foolscap`: encode Python literals as banana bytes, decode banana
//! streams back into Python literals (byte-compatible with Python
//! foolscap 24.9.0), and call remote objects by FURL.
//!
//! ```text
//! $ foolscap encode '[1, 2]'
//! 00880487018102810089
//! $ echo 00880487018102810089 | foolscap decode
//! [1, 2]
//! ```

mod call;

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::BytesMut;
use clap::{Args, Parser, Subcommand};
use foolscap_core::banana::{Token, TokenDecoder, TokenLimits, VocabTable};
use foolscap_core::value::{Deserializer, Event, Int, Limits, Serializer, Value, WireRefs};
use foolscap_literal::{to_python, write_python_with};

/// Encode and decode Foolscap's banana serialization.
#[derive(Debug, Parser)]
#[command(name = "foolscap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serialize Python literals, one top-level message each, and print the
    /// bytes as hex.
    Encode(EncodeArgs),
    /// Read a banana stream and print each top-level value as a Python
    /// literal, one per line. Notes (PING, PONG, ERROR, discarded
    /// messages) go to stderr; byte offsets in messages count bytes of the
    /// decoded stream.
    Decode(DecodeArgs),
    /// Call METHOD on the object at FURL and print the answer as a Python
    /// literal. Exit status 1: the remote object raised (its type and
    /// message go to stderr); 2: bad FURL or arguments, or the connection
    /// failed or timed out.
    Call(call::CallArgs),
}

#[derive(Debug, Args)]
struct EncodeArgs {
    /// Initial vocabulary table. 0 (the default): no VOCAB tokens, what
    /// `foolscap.storage.serialize` writes and any banana reader decodes;
    /// 1: the table PB connections negotiate.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1))]
    vocab: u32,
    /// Write the raw bytes to stdout instead of hex.
    #[arg(long)]
    raw: bool,
    /// Python literals, e.g. `[1, 2]`, `{'k': b'v'}`, `Decimal('1.5')`
    /// (put `--` before a value such as `-float('inf')`).
    #[arg(value_name = "VALUE", required = true, allow_negative_numbers = true)]
    values: Vec<String>,
}

#[derive(Debug, Args)]
struct DecodeArgs {
    /// Initial vocabulary table. 1 (the default): the table PB connections
    /// negotiate, which also reads every table-0 stream (those have no
    /// VOCAB tokens); 0: VOCAB tokens are errors.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1))]
    vocab: u32,
    /// The input is raw bytes, not hex.
    #[arg(long)]
    raw: bool,
    /// Print the token stream (one token per line, indented by nesting)
    /// instead of values. NEG and LONGNEG show their magnitude.
    #[arg(long)]
    tokens: bool,
    /// Fail once the printed values would exceed this many bytes (shared
    /// sub-values print in full each time, so a small stream can stand for
    /// a huge text).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_output: usize,
    /// Input file; `-` or nothing reads stdin. Hex digits and ASCII
    /// whitespace only, unless --raw.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

/// Why a command failed.
enum Failure {
    /// Report this and exit with status 1.
    Message(String),
    /// stdout was closed (`| head`): stop quietly.
    BrokenPipe,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Message(format!("cannot write output: {e}"))
        }
    }
}

type Outcome = Result<(), Failure>;

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Message(msg.into()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Encode(args) => ("encode", encode(args)),
        Command::Decode(args) => ("decode", decode(args)),
        Command::Call(args) => return call::run(args),
    };
    match result {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(msg)) => {
            eprintln!("foolscap {name}: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn vocab_table(index: u32) -> VocabTable {
    VocabTable::by_index(index).unwrap_or(VocabTable::V1)
}

// ---------------------------------------------------------------- encode

fn encode(args: EncodeArgs) -> Outcome {
    let mut ser = Serializer::new(vocab_table(args.vocab));
    let mut out = BytesMut::new();
    for (n, text) in args.values.iter().enumerate() {
        let value = foolscap_literal::parse(text).map_err(|e| {
            let mut msg = format!("VALUE #{} is not a valid literal: {e}", n + 1);
            // Point at the offending character when the argument fits a line.
            if !text.contains(['\n', '\r']) && text.chars().count() <= 200 {
                let _ = write!(msg, "\n  {text}\n  {}^", " ".repeat(e.offset()));
            }
            Failure::Message(msg)
        })?;
        if let Err(e) = ser.serialize(&value, &mut out) {
            return fail(format!("VALUE #{} cannot be serialized: {e}", n + 1));
        }
    }
    let mut stdout = io::stdout().lock();
    if args.raw {
        stdout.write_all(&out)?;
    } else {
        let mut hex = String::with_capacity(out.len() * 2 + 1);
        for b in out.iter() {
            let _ = write!(hex, "{b:02x}");
        }
        hex.push('\n');
        stdout.write_all(hex.as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- decode

fn read_input(file: Option<&PathBuf>) -> Result<Vec<u8>, Failure> {
    let mut data = Vec::new();
    match file {
        Some(path) if path.as_os_str() != "-" => {
            data = std::fs::read(path)
                .map_err(|e| Failure::Message(format!("cannot read {}: {e}", path.display())))?;
        }
        _ => {
            io::stdin()
                .lock()
                .read_to_end(&mut data)
                .map_err(|e| Failure::Message(format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(data)
}

/// Hex digits separated by any ASCII whitespace.
fn unhex(text: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<(u8, usize)> = None;
    for (i, &c) in text.iter().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let Some(v) = (c as char).to_digit(16) else {
            let shown = match c {
                0x20..=0x7e => format!("{:?}", c as char),
                _ => format!("byte 0x{c:02x}"),
            };
            return fail(format!("invalid hex input: {shown} at input byte {i}"));
        };
        match high.take() {
            None => high = Some((v as u8, i)),
            Some((h, _)) => out.push(h << 4 | v as u8),
        }
    }
    if let Some((_, i)) = high {
        return fail(format!(
            "invalid hex input: odd number of hex digits (the last one at input byte {i})"
        ));
    }
    Ok(out)
}

fn decode(args: DecodeArgs) -> Outcome {
    let input = read_input(args.file.as_ref())?;
    let data = if args.raw { input } else { unhex(&input)? };
    let vocab = vocab_table(args.vocab);
    if args.tokens {
        print_tokens(&data, vocab)
    } else {
        print_values(&data, vocab, args.max_output)
    }
}

fn print_values(data: &[u8], vocab: VocabTable, max_output: usize) -> Outcome {
    let mut de = Deserializer::new(vocab, Limits::default());
    de.feed(data);
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let mut printed = 0usize;
    let mut count = 0usize;
    let mut line = String::new();
    // Diagnostics go to stderr, in order with the values on stdout.
    let note = |stdout: &mut io::BufWriter<io::StdoutLock<'_>>, msg: String| -> Outcome {
        stdout.flush()?;
        eprintln!("{msg}");
        Ok(())
    };
    // reference sequences print as what they are (`<my-reference ...>`),
    // one top-level value at a time
    let mut refs = WireRefs::default();
    loop {
        refs.table.clear();
        let event = match de.poll_event_with(&mut refs) {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => {
                stdout.flush()?;
                return fail(format!("malformed stream: {e}"));
            }
        };
        match event {
            Event::Value(v) => {
                count += 1;
                line.clear();
                // The bound covers the whole output, newlines included.
                let budget = max_output.saturating_sub(printed).saturating_sub(1);
                if printed >= max_output
                    || write_python_with(&v, &mut line, budget, Some(&refs)).is_err()
                {
                    stdout.flush()?;
                    return fail(format!(
                        "value #{count} would take the output past --max-output ({max_output} bytes)"
                    ));
                }
                printed += line.len() + 1;
                line.push('\n');
                stdout.write_all(line.as_bytes())?;
            }
            Event::Discarded(e) => note(&mut stdout, format!("# discarded: {e}"))?,
            Event::Ping(n) => note(&mut stdout, format!("# PING {n}"))?,
            Event::Pong(n) => note(&mut stdout, format!("# PONG {n}"))?,
            Event::PeerError(msg) => note(
                &mut stdout,
                format!("# ERROR {}", to_python(&Value::Bytes(msg))),
            )?,
            other => note(&mut stdout, format!("# {other:?}"))?,
        }
    }
    stdout.flush()?;
    if de.in_message() || de.buffered() > 0 {
        let what = if de.buffered() > 0 {
            "a token"
        } else {
            "a message"
        };
        return fail(format!(
            "truncated stream: the input ends inside {what} at byte {} ({} undecoded bytes)",
            de.offset(),
            de.buffered()
        ));
    }
    Ok(())
}

/// Most bytes of a STRING or ERROR body shown by `--tokens`.
const SHOW_BYTES: usize = 64;

fn show_bytes(b: &[u8]) -> String {
    if b.len() <= SHOW_BYTES {
        to_python(&Value::bytes(b))
    } else {
        format!(
            "{} ... ({} bytes)",
            to_python(&Value::bytes(&b[..SHOW_BYTES])),
            b.len()
        )
    }
}

/// One line of `--tokens` output (without indentation).
fn describe(token: &Token, vocab: VocabTable) -> String {
    match token {
        Token::Int(n) => format!("INT {n}"),
        Token::Neg(n) => format!("NEG {n}"),
        Token::LongInt(m) => format!(
            "LONGINT {}",
            to_python(&Value::Int(Int::from_be_magnitude(false, m)))
        ),
        Token::LongNeg(m) => format!(
            "LONGNEG {}",
            to_python(&Value::Int(Int::from_be_magnitude(false, m)))
        ),
        Token::Float(f) => format!("FLOAT {}", to_python(&Value::Float(*f))),
        Token::String(b) => format!("STRING {}", show_bytes(b)),
        Token::Vocab(i) => match vocab.word(*i) {
            Some(w) => format!(
                "VOCAB {i} {}",
                to_python(&Value::str(&String::from_utf8_lossy(w)))
            ),
            None => format!("VOCAB {i}"),
        },
        Token::Open(n) => format!("OPEN {n}"),
        Token::Close(n) => format!("CLOSE {n}"),
        Token::Abort(n) => format!("ABORT {n}"),
        Token::Error(b) => format!("ERROR {}", show_bytes(b)),
        Token::Ping(n) => format!("PING {n}"),
        Token::Pong(n) => format!("PONG {n}"),
    }
}

fn print_tokens(data: &[u8], vocab: VocabTable) -> Outcome {
    let mut dec = TokenDecoder::new(TokenLimits::default());
    dec.feed(data);
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let mut depth = 0usize;
    loop {
        let token = match dec.next_token() {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err(e) => {
                stdout.flush()?;
                return fail(format!("malformed stream: {e}"));
            }
        };
        if let Token::Close(_) = token {
            depth = depth.saturating_sub(1);
        }
        writeln!(
            stdout,
            "{:indent$}{}",
            "",
            describe(&token, vocab),
            indent = depth * 2
        )?;
        if let Token::Open(_) = token {
            depth += 1;
        }
    }
    stdout.flush()?;
    if dec.buffered() > 0 {
        return fail(format!(
            "truncated stream: the input ends inside a token at byte {} ({} undecoded bytes)",
            dec.offset(),
            dec.buffered()
        ));
    }
    if depth > 0 {
        return fail(format!(
            "truncated stream: the input ends at byte {} inside {depth} open sequence(s)",
            dec.offset()
        ));
    }
    Ok(())
}
