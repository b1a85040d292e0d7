//! The plaintext phase (docs/protocol.md §3.2): the client's
//! `GET /id/TUBID` request, the server's `101 Switching Protocols` reply
//! and its `500` refusals, plus the block buffer every negotiation phase
//! reads with.

use thiserror::Error;

use crate::identity::TubId;

/// Python's limit on the bytes buffered while waiting for one request,
/// response or block.
pub const MAX_BLOCK_BYTES: usize = 4096;

/// What the server writes to accept a request, byte for byte as Python.
pub const SWITCHING_PROTOCOLS: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0, PB/1.0\r\nConnection: Upgrade\r\n\r\n";

/// The reply text Python sends for every failure that is not one of its
/// "negotiation errors".
pub const INTERNAL_ERROR: &str = "internal server error, see logs";

/// A block longer than the limit, without its terminating blank line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("header too long: no blank line within {limit} bytes")]
pub struct HeaderTooLong {
    /// The limit that was exceeded.
    pub limit: usize,
}

/// Collects one phase's bytes until the blank line (`\r\n\r\n`) that ends
/// a request, response or block.
///
/// Python fails when more than 4096 bytes are buffered at once, glued data
/// included; this buffer only requires the block itself (with its blank
/// line) to fit, so a peer may glue data onto a block (Python peers never
/// glue more than a few hundred bytes).
#[derive(Debug, Default, Clone)]
pub struct BlockBuffer {
    buf: Vec<u8>,
    /// Bytes already searched for the terminator.
    scanned: usize,
}

impl BlockBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next complete block without its blank line, if one has arrived.
    pub fn take_block(&mut self, limit: usize) -> Result<Option<Vec<u8>>, HeaderTooLong> {
        let window = self.buf.len().min(limit);
        let start = self.scanned.saturating_sub(3);
        if let Some(i) = self.buf[start..window]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = start + i;
            let block = self.buf[..end].to_vec();
            self.buf.drain(..end + 4);
            self.scanned = 0;
            return Ok(Some(block));
        }
        self.scanned = window;
        if self.buf.len() > limit {
            return Err(HeaderTooLong { limit });
        }
        Ok(None)
    }

    /// Everything still buffered (bytes that followed the last block).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }
}

/// How a server refused a request (the text of its `500` reply).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `unknown TubID <tubid>`: the server holds no Tub with that tubid.
    UnknownTubId(String),
    /// `secure Tubs require encryption`: the request named no tubid.
    EncryptionRequired,
    /// `internal server error, see logs`: a malformed request, or any
    /// failure Python does not describe.
    Internal,
    /// Any other text.
    Other(String),
}

impl Refusal {
    /// The text after `Internal Server Error: `.
    pub fn text(&self) -> String {
        match self {
            Refusal::UnknownTubId(t) => format!("unknown TubID {t}"),
            Refusal::EncryptionRequired => "secure Tubs require encryption".into(),
            Refusal::Internal => INTERNAL_ERROR.into(),
            Refusal::Other(t) => t.clone(),
        }
    }

    fn from_text(text: &str) -> Refusal {
        if let Some(t) = text.strip_prefix("unknown TubID ") {
            Refusal::UnknownTubId(t.into())
        } else if text == "secure Tubs require encryption" {
            Refusal::EncryptionRequired
        } else if text == INTERNAL_ERROR {
            Refusal::Internal
        } else {
            Refusal::Other(text.into())
        }
    }
}

/// A failure in the plaintext phase.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum PlaintextError {
    #[error(transparent)]
    TooLong(#[from] HeaderTooLong),
    #[error("not a foolscap request: the first line {line:?} does not start with \"GET \"")]
    NotGet { line: String },
    #[error("malformed request line {line:?}: expected \"GET /id/TUBID HTTP/1.1\"")]
    BadRequestLine { line: String },
    #[error("request path {path:?} does not start with /id/")]
    NotIdPath { path: String },
    #[error("the request names no tubid (an unauthenticated Tub's request)")]
    EmptyTubId,
    #[error("request or response is not UTF-8")]
    NotUtf8,
    #[error("the request asks for tubid {requested:?}, which this server does not hold")]
    UnknownTubId { requested: String },
    #[error("the client sent {len} bytes after its request, before the 101 reply")]
    EarlyData { len: usize },
    #[error("the server refused the connection: {status_line:?}")]
    Refused {
        status_line: String,
        refusal: Refusal,
    },
    #[error("malformed response {line:?}: expected \"HTTP/1.1 101 Switching Protocols\"")]
    BadResponse { line: String },
    #[error("the 101 response does not upgrade to TLS (no \"Upgrade: TLS/1.0\")")]
    NoUpgrade,
}

impl PlaintextError {
    /// The text Python would put in its reply for this failure.
    pub fn wire_text(&self) -> String {
        match self {
            PlaintextError::EmptyTubId => Refusal::EncryptionRequired.text(),
            PlaintextError::UnknownTubId { requested } => {
                Refusal::UnknownTubId(requested.clone()).text()
            }
            _ => INTERNAL_ERROR.into(),
        }
    }
}

/// The client's request, as Python writes it. `host` is the host part of
/// the hint being dialled (IPv6 without brackets).
pub fn format_request(target: &TubId, host: &str) -> Vec<u8> {
    format!(
        "GET /id/{target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
    )
    .into_bytes()
}

/// Parses a request (without its blank line) and returns the tubid text it
/// asks for, which the server then compares with its own. Python's rules:
/// the first line starts with `GET `, has exactly three words and a path
/// starting with `/id/`; every other line is ignored.
pub fn parse_request(header: &[u8]) -> Result<String, PlaintextError> {
    let first = first_line(header);
    let lossy = || String::from_utf8_lossy(first).into_owned();
    if !first.starts_with(b"GET ") {
        return Err(PlaintextError::NotGet { line: lossy() });
    }
    let words = py_split(first);
    let [_, path, _] = words[..] else {
        return Err(PlaintextError::BadRequestLine { line: lossy() });
    };
    let Some(tubid) = path.strip_prefix(b"/id/") else {
        return Err(PlaintextError::NotIdPath {
            path: String::from_utf8_lossy(path).into_owned(),
        });
    };
    let tubid = std::str::from_utf8(tubid).map_err(|_| PlaintextError::NotUtf8)?;
    if tubid.is_empty() {
        return Err(PlaintextError::EmptyTubId);
    }
    Ok(tubid.into())
}

/// The first line of a header: up to the first `\r\n` (Python splits
/// lines on `\r\n` only).
fn first_line(header: &[u8]) -> &[u8] {
    let end = header
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(header.len());
    &header[..end]
}

/// Python's `bytes.split()`: words separated by runs of ASCII whitespace
/// (space, tab, LF, VT, FF, CR).
fn py_split(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The server's refusal: one status line carrying the reason, then the
/// blank line (CR and LF in the text become spaces, as in Python).
pub fn format_refusal(text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 500 Internal Server Error: {}\r\n\r\n",
        text.replace(['\r', '\n'], " ")
    )
    .into_bytes()
}

/// Checks the server's response (without its blank line): Python requires
/// `101` as the second word of the first line and `Upgrade: TLS/1.0`
/// somewhere in the header. Anything else is a refusal, whose reason is
/// decoded from Python's `500` line.
pub fn parse_response(header: &[u8]) -> Result<(), PlaintextError> {
    let first = std::str::from_utf8(first_line(header)).map_err(|_| PlaintextError::NotUtf8)?;
    let words = py_split(first.as_bytes());
    match words.get(1).copied() {
        Some(status) if status == b"101" => {}
        Some(status) => {
            let reason = first
                .split_once("Internal Server Error: ")
                .map_or_else(|| first.to_string(), |(_, r)| r.to_string());
            let refusal = if status == b"500" {
                Refusal::from_text(&reason)
            } else {
                Refusal::Other(first.into())
            };
            return Err(PlaintextError::Refused {
                status_line: first.into(),
                refusal,
            });
        }
        None => return Err(PlaintextError::BadResponse { line: first.into() }),
    }
    if !header.windows(16).any(|w| w == b"Upgrade: TLS/1.0") {
        return Err(PlaintextError::NoUpgrade);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Vec<u8> {
        text.strip_suffix("\r\n\r\n")
            .unwrap_or(text)
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn request_and_response_bytes_are_pythons() {
        let t = TubId::parse("vfbzu4bxrxknny4zy66zjcdszk5wc4k5").unwrap();
        // transcript 01-add
        assert_eq!(
            format_request(&t, "127.0.0.1"),
            b"GET /id/vfbzu4bxrxknny4zy66zjcdszk5wc4k5 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
        );
        let req = format_request(&t, "::1");
        assert_eq!(
            parse_request(&block(std::str::from_utf8(&req).unwrap())).unwrap(),
            t.as_str()
        );
        assert_eq!(
            parse_response(&block(std::str::from_utf8(SWITCHING_PROTOCOLS).unwrap())),
            Ok(())
        );
        // transcript 07-negotiation, connections 1-3
        assert_eq!(
            format_refusal("unknown TubID aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            b"HTTP/1.1 500 Internal Server Error: unknown TubID aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
        );
        assert_eq!(
            format_refusal("a\r\nb"),
            b"HTTP/1.1 500 Internal Server Error: a  b\r\n\r\n"
        );
    }

    #[test]
    fn request_refusals() {
        let cases: [(&str, PlaintextError, &str); 6] = [
            (
                "GET / HTTP/1.1\r\nHost: x",
                PlaintextError::NotIdPath { path: "/".into() },
                INTERNAL_ERROR,
            ),
            (
                "GET /id/ HTTP/1.1\r\nHost: x",
                PlaintextError::EmptyTubId,
                "secure Tubs require encryption",
            ),
            (
                "POST /id/x HTTP/1.1",
                PlaintextError::NotGet {
                    line: "POST /id/x HTTP/1.1".into(),
                },
                INTERNAL_ERROR,
            ),
            (
                "GET /id/x",
                PlaintextError::BadRequestLine {
                    line: "GET /id/x".into(),
                },
                INTERNAL_ERROR,
            ),
            (
                "GET /id/x HTTP/1.1 extra",
                PlaintextError::BadRequestLine {
                    line: "GET /id/x HTTP/1.1 extra".into(),
                },
                INTERNAL_ERROR,
            ),
            ("", PlaintextError::NotUtf8, INTERNAL_ERROR),
        ];
        for (text, want, wire) in cases {
            let bytes = if want == PlaintextError::NotUtf8 {
                b"GET /id/\xe9 HTTP/1.1".to_vec()
            } else {
                text.as_bytes().to_vec()
            };
            let err = parse_request(&bytes).unwrap_err();
            assert_eq!(err, want, "{text}");
            assert_eq!(err.wire_text(), wire);
        }
        // other lines are ignored; any ASCII whitespace (here VT) splits words, as in Python
        assert_eq!(
            parse_request(b"GET /id/abc\x0bHTTP/1.0\r\nwhatever").unwrap(),
            "abc"
        );
        let err = PlaintextError::UnknownTubId {
            requested: "abc".into(),
        };
        assert_eq!(err.wire_text(), "unknown TubID abc");
    }

    #[test]
    fn response_refusals_are_understood() {
        let refused = |line: &str| match parse_response(line.as_bytes()) {
            Err(PlaintextError::Refused { refusal, .. }) => refusal,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(
            refused("HTTP/1.1 500 Internal Server Error: unknown TubID aaaa"),
            Refusal::UnknownTubId("aaaa".into())
        );
        assert_eq!(
            refused("HTTP/1.1 500 Internal Server Error: secure Tubs require encryption"),
            Refusal::EncryptionRequired
        );
        assert_eq!(
            refused("HTTP/1.1 500 Internal Server Error: internal server error, see logs"),
            Refusal::Internal
        );
        assert_eq!(
            refused("HTTP/1.1 500 Internal Server Error: odd"),
            Refusal::Other("odd".into())
        );
        assert_eq!(
            refused("HTTP/1.1 404 Not Found"),
            Refusal::Other("HTTP/1.1 404 Not Found".into())
        );
        assert!(matches!(
            parse_response(b"HTTP/1.1"),
            Err(PlaintextError::BadResponse { .. })
        ));
        assert!(matches!(
            parse_response(b""),
            Err(PlaintextError::BadResponse { .. })
        ));
        assert_eq!(
            parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: PB/1.0"),
            Err(PlaintextError::NoUpgrade)
        );
        for r in [
            Refusal::UnknownTubId("x".into()),
            Refusal::EncryptionRequired,
            Refusal::Internal,
            Refusal::Other("y".into()),
        ] {
            let reply = format_refusal(&r.text());
            assert_eq!(
                refused(std::str::from_utf8(&block(std::str::from_utf8(&reply).unwrap())).unwrap()),
                r
            );
        }
    }

    #[test]
    fn block_buffer_limits_and_leftovers() {
        let mut b = BlockBuffer::new();
        b.push(b"a: 1\r\n\r");
        assert_eq!(b.take_block(MAX_BLOCK_BYTES), Ok(None));
        b.push(b"\nrest");
        assert_eq!(b.take_block(MAX_BLOCK_BYTES), Ok(Some(b"a: 1".to_vec())));
        assert_eq!(b.take_block(MAX_BLOCK_BYTES), Ok(None));
        assert_eq!(b.take_rest(), b"rest");
        // a block of exactly the limit (terminator included) passes, one more byte fails
        let mut b = BlockBuffer::new();
        b.push(&[b'x'; 4092]);
        b.push(b"\r\n\r\nglued data beyond the limit is fine");
        assert_eq!(b.take_block(4096).unwrap().unwrap().len(), 4092);
        let mut b = BlockBuffer::new();
        b.push(&[b'x'; 4093]);
        assert_eq!(b.take_block(4096), Ok(None));
        b.push(b"\r\n\r\n");
        assert_eq!(b.take_block(4096), Err(HeaderTooLong { limit: 4096 }));
        // byte-at-a-time feeding finds the same block
        let mut b = BlockBuffer::new();
        for &byte in b"k: v\r\nk2: v2\r\n\r\nX" {
            b.push(&[byte]);
            if let Some(block) = b.take_block(4096).unwrap() {
                assert_eq!(block, b"k: v\r\nk2: v2");
            }
        }
        assert_eq!(b.take_rest(), b"X");
    }
}
