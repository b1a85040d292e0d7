//! The web-viewer's HTTP request heads, read with named bounds. Only `std`
//! is used here, so that the fuzz crate can include this file as it is
//! (`fuzz/fuzz_targets/http_head.rs`).

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The most bytes of a request line (`GET /path?query HTTP/1.1`).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// The most bytes of all header lines of one request together.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header lines of one request.
pub const MAX_HEADERS: usize = 100;
/// How long a client has to send its whole request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a response may block on a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused connection (over [`MAX_CONNECTIONS`]) is read from
/// before its `503` answer, so that closing it does not reset it.
pub const REFUSE_DRAIN: Duration = Duration::from_millis(50);
/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The bounds on what a client may send (defaults: the constants above).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// [`MAX_REQUEST_LINE`].
    pub max_request_line: usize,
    /// [`MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// [`MAX_HEADERS`].
    pub max_headers: usize,
    /// [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// [`WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_line: MAX_REQUEST_LINE,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            request_timeout: REQUEST_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// A byte source whose reads can be given a deadline.
pub trait ReadTimeout: Read {
    /// Let the next reads block for at most `left`.
    fn set_timeout(&self, left: Duration);
}

impl ReadTimeout for TcpStream {
    fn set_timeout(&self, left: Duration) {
        let _ = self.set_read_timeout(Some(left));
    }
}

/// Bytes already in memory never block.
impl ReadTimeout for &[u8] {
    fn set_timeout(&self, _left: Duration) {}
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a
/// byte; malformed escapes stay as they are; bytes that are not UTF-8 are
/// replaced).
pub fn url_unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed request head.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, `%`-decoded.
    pub path: String,
    /// The query's `key=value` pairs, decoded.
    pub query: Vec<(String, String)>,
}

/// Why a request was refused before it was understood.
#[derive(Debug)]
pub enum HeadError {
    /// the line or headers were too long (431/414)
    TooLarge(&'static str),
    /// not HTTP (400)
    Bad(&'static str),
    /// the client went away or was too slow: nothing to answer
    Gone,
}

/// Read one line of at most `max` bytes (without its CRLF) before `deadline`.
fn read_line<R: ReadTimeout>(
    r: &mut BufReader<R>,
    max: usize,
    deadline: Instant,
) -> Result<String, HeadError> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Gone);
        }
        r.get_ref().set_timeout(left);
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Gone),
        };
        if buf.is_empty() {
            return Err(HeadError::Gone);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(n) => (n + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max + 2 {
            return Err(HeadError::TooLarge("line too long"));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            return String::from_utf8(line).map_err(|_| HeadError::Bad("not UTF-8"));
        }
    }
}

/// Reads one request head within `lim` (line, header bytes and count,
/// the whole head before `request_timeout`).
pub fn read_head<R: ReadTimeout>(
    r: &mut BufReader<R>,
    lim: &HttpLimits,
) -> Result<Request, HeadError> {
    let deadline = Instant::now() + lim.request_timeout;
    let line = read_line(r, lim.max_request_line, deadline)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("bad request line"));
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return Err(HeadError::Bad("bad request line"));
    }
    let (mut total, mut count) = (0usize, 0usize);
    loop {
        let h = read_line(r, lim.max_header_bytes, deadline)?;
        if h.is_empty() {
            break;
        }
        total += h.len() + 2;
        count += 1;
        if total > lim.max_header_bytes || count > lim.max_headers {
            return Err(HeadError::TooLarge("headers too large"));
        }
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_unquote(k), url_unquote(v))
        })
        .collect();
    Ok(Request {
        method: method.to_string(),
        path: url_unquote(path),
        query,
    })
}
