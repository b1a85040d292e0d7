use thiserror::Error;

/// Bytes of a too-long header that [`TokenError::HeaderTooLong`] keeps:
/// what Python quotes in its error (65 header bytes and up to 200 more).
pub const HEADER_ERROR_CONTEXT: usize = 265;

/// A framing error in the token stream. Every one of these is fatal to the
/// connection: Python answers them with an ERROR token and hangs up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
// Fields: `offset` is the stream offset of the offending token; the
// others are named in the variant's message.
#[allow(missing_docs)]
#[non_exhaustive]
pub enum TokenError {
    /// More header digits than the limit (Python: 64). `received` holds
    /// the buffered bytes from the token's start (at most
    /// [`HEADER_ERROR_CONTEXT`]), which Python's error text quotes.
    #[error("token header at byte {offset} is longer than {limit} digits")]
    HeaderTooLong {
        offset: u64,
        limit: usize,
        received: Vec<u8>,
    },
    /// A header value does not fit 64 bits where the token needs a number.
    #[error("{kind} header at byte {offset} does not fit in 64 bits")]
    HeaderOverflow { offset: u64, kind: &'static str },
    /// 0x8B, 0x8C or 0x90..=0xFF.
    #[error("invalid type byte 0x{byte:02x} at byte {offset}")]
    InvalidTypeByte { offset: u64, byte: u8 },
    /// The obsolete LIST (0x80) token of "old banana".
    #[error("obsolete LIST token (old banana peer) at byte {offset}")]
    OldBanana { offset: u64 },
    /// A STRING, LONGINT, LONGNEG or ERROR body longer than its limit.
    #[error("{kind} body of {len} bytes at byte {offset} exceeds the limit of {limit}")]
    BodyTooLong {
        offset: u64,
        kind: &'static str,
        len: u64,
        limit: usize,
    },
}

impl TokenError {
    /// Stream offset of the token that caused the error.
    pub fn offset(&self) -> u64 {
        match *self {
            TokenError::HeaderTooLong { offset, .. }
            | TokenError::HeaderOverflow { offset, .. }
            | TokenError::InvalidTypeByte { offset, .. }
            | TokenError::OldBanana { offset }
            | TokenError::BodyTooLong { offset, .. } => offset,
        }
    }
}
