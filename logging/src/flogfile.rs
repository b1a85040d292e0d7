//! The flogfile format: a 23-byte magic line, then one JSON record per
//! line (a `{"header": …}` record, then `{"from", "rx_time", "d"}` event
//! wrappers). Readers and writers work over any `BufRead`/`Write`; the
//! `.bz2` decision (by file name, as Python makes it) is in [`crate::files`].

use crate::event::Event;
use crate::json::{self, JsonError, JsonLimits};
use crate::value::{Dict, Value};
use std::io::{BufRead, Read, Write};

/// The first line of every flogfile.
pub const MAGIC: &[u8; 23] = b"# foolscap flogfile v1\n";

/// Limits on what a reader accepts from a (possibly hostile) file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Longest record line, in bytes (after decompression). Default 64 MiB:
    /// far above any event Python writes, and the only buffer the reader
    /// holds, so a file without newlines (or a bz2 bomb) cannot grow memory
    /// past it.
    pub max_line_bytes: usize,
    /// Nesting and integer-size limits of each record's JSON.
    pub json: JsonLimits,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_line_bytes: 64 << 20,
            json: JsonLimits::default(),
        }
    }
}

/// Why a flogfile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading (or decompressing) failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The content starts with `(dp0`: an old pickle-based flogfile, which
    /// is never loaded.
    #[error("old-style (pickle-based) flogfile")]
    Pickle,
    /// The content starts with `pb:`: a FURL file, not a flogfile.
    #[error("a FURL file, not a flogfile")]
    FurlFile,
    /// The content does not start with the magic line.
    #[error("not a flogfile")]
    BadMagic,
    /// A line is not UTF-8 (Python's `UnicodeDecodeError`).
    #[error("'utf-8' codec can't decode byte 0x{byte:02x} in position {pos}: invalid utf-8")]
    Utf8 {
        /// The offending byte.
        byte: u8,
        /// Its offset in the line.
        pos: usize,
    },
    /// A line is not one complete JSON value (empty, truncated, a second
    /// magic line, …).
    #[error("{0}")]
    Json(#[from] JsonError),
    /// A line is longer than [`ReadLimits::max_line_bytes`].
    #[error("record line longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
}

impl ReadError {
    /// Whether Python reports this error as a bad file (`ValueError`,
    /// printed as "truncated pickle file?") rather than as a wrong kind of
    /// file.
    pub fn is_value_error(&self) -> bool {
        matches!(
            self,
            ReadError::Utf8 { .. } | ReadError::Json(_) | ReadError::LineTooLong { .. }
        )
    }
}

/// Reads records from a flogfile, one line at a time.
pub struct FlogReader<R> {
    inner: R,
    limits: ReadLimits,
    line: Vec<u8>,
    done: bool,
}

impl<R: BufRead> FlogReader<R> {
    /// Check the magic line and get ready to read records.
    pub fn new(mut inner: R, limits: ReadLimits) -> Result<FlogReader<R>, ReadError> {
        let mut head = Vec::with_capacity(MAGIC.len());
        (&mut inner)
            .take(MAGIC.len() as u64)
            .read_to_end(&mut head)?;
        if head != MAGIC {
            return Err(if head.starts_with(b"(dp0") {
                ReadError::Pickle
            } else if head.starts_with(b"pb:") {
                ReadError::FurlFile
            } else {
                ReadError::BadMagic
            });
        }
        Ok(FlogReader {
            inner,
            limits,
            line: Vec::new(),
            done: false,
        })
    }

    /// The next record, `None` at the end of the file. After an error the
    /// reader stays finished.
    pub fn next_record(&mut self) -> Option<Result<Value, ReadError>> {
        if self.done {
            return None;
        }
        let r = self.read_record();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }

    fn read_record(&mut self) -> Option<Result<Value, ReadError>> {
        self.line.clear();
        let limit = self.limits.max_line_bytes;
        let n = match (&mut self.inner)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut self.line)
        {
            Ok(n) => n,
            Err(e) => return Some(Err(e.into())),
        };
        if n == 0 {
            return None;
        }
        let body_len = self.line.len() - usize::from(self.line.last() == Some(&b'\n'));
        if body_len > limit {
            return Some(Err(ReadError::LineTooLong { limit }));
        }
        let text = match std::str::from_utf8(&self.line) {
            Ok(t) => t,
            Err(e) => {
                let pos = e.valid_up_to();
                return Some(Err(ReadError::Utf8 {
                    byte: self.line[pos],
                    pos,
                }));
            }
        };
        Some(json::parse(text, self.limits.json).map_err(ReadError::from))
    }
}

impl<R: BufRead> Iterator for FlogReader<R> {
    type Item = Result<Value, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// Writes a flogfile as Python does (`json.dumps` spacing, one record per
/// line).
pub struct FlogWriter<W: Write> {
    inner: W,
    buf: String,
}

impl<W: Write> FlogWriter<W> {
    /// Write the magic line.
    pub fn new(mut inner: W) -> std::io::Result<FlogWriter<W>> {
        inner.write_all(MAGIC)?;
        Ok(FlogWriter {
            inner,
            buf: String::new(),
        })
    }
    /// Go on writing records to `inner`, which already holds the magic
    /// line (and maybe records).
    pub fn resume(inner: W) -> FlogWriter<W> {
        FlogWriter {
            inner,
            buf: String::new(),
        }
    }
    /// Write any record (a header or wrapper dict, or one read elsewhere).
    pub fn write_record(&mut self, record: &Value) -> std::io::Result<()> {
        self.buf.clear();
        json::write(record, &mut self.buf);
        self.buf.push('\n');
        self.inner.write_all(self.buf.as_bytes())
    }
    /// Write `{"header": {"type": TYPE, …fields}}`.
    pub fn write_header(&mut self, kind: &str, fields: &Dict) -> std::io::Result<()> {
        let mut h = Dict::new();
        h.insert("type", kind);
        for (k, v) in fields.iter() {
            h.insert(k, v.clone());
        }
        let mut rec = Dict::new();
        rec.insert("header", h);
        self.write_record(&Value::Dict(rec))
    }
    /// Write `{"from": FROM, "rx_time": RX_TIME, "d": EVENT}`.
    pub fn write_event(&mut self, event: &Event, from: &str, rx_time: f64) -> std::io::Result<()> {
        let mut rec = Dict::new();
        rec.insert("from", from);
        rec.insert("rx_time", rx_time);
        rec.insert("d", event.0.clone());
        self.write_record(&Value::Dict(rec))
    }
    /// Flush the inner writer.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
    /// Flush and give back the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}
