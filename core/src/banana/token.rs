use bytes::Bytes;

/// Most base-128 digits a token header may have (Python: "token prefix is
/// limited to 64 bytes"). A longer header is fatal to the connection.
pub const MAX_HEADER_DIGITS: usize = 64;

/// The type byte that ends every token header (high bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TypeByte {
    /// Obsolete "old banana" list; receiving it is fatal.
    List = 0x80,
    /// Non-negative integer in the header.
    Int = 0x81,
    /// Byte string; the header is its length.
    String = 0x82,
    /// Negative integer; the header is its magnitude.
    Neg = 0x83,
    /// 8-byte big-endian IEEE-754 double; the header is ignored.
    Float = 0x84,
    /// Big-endian magnitude of a large positive integer; header = length.
    LongInt = 0x85,
    /// Big-endian magnitude of a large negative integer; header = length.
    LongNeg = 0x86,
    /// Index into the receiver's incoming vocabulary table.
    Vocab = 0x87,
    /// Start of a sequence; the header is the sender's open counter.
    Open = 0x88,
    /// End of a sequence; the header repeats the OPEN's number.
    Close = 0x89,
    /// The sender gave up on the current sequence.
    Abort = 0x8A,
    /// Fatal-error report; the header is the message length.
    Error = 0x8D,
    /// Keepalive probe; answered by PONG with the same header.
    Ping = 0x8E,
    /// Keepalive answer.
    Pong = 0x8F,
}

impl TypeByte {
    /// Maps a byte with the high bit set to its type, `None` for the unused
    /// values (0x8B, 0x8C and 0x90..=0xFF).
    #[inline]
    pub fn from_byte(b: u8) -> Option<TypeByte> {
        Some(match b {
            0x80 => TypeByte::List,
            0x81 => TypeByte::Int,
            0x82 => TypeByte::String,
            0x83 => TypeByte::Neg,
            0x84 => TypeByte::Float,
            0x85 => TypeByte::LongInt,
            0x86 => TypeByte::LongNeg,
            0x87 => TypeByte::Vocab,
            0x88 => TypeByte::Open,
            0x89 => TypeByte::Close,
            0x8A => TypeByte::Abort,
            0x8D => TypeByte::Error,
            0x8E => TypeByte::Ping,
            0x8F => TypeByte::Pong,
            _ => return None,
        })
    }

    /// The protocol's name for this type byte.
    pub fn name(self) -> &'static str {
        match self {
            TypeByte::List => "LIST",
            TypeByte::Int => "INT",
            TypeByte::String => "STRING",
            TypeByte::Neg => "NEG",
            TypeByte::Float => "FLOAT",
            TypeByte::LongInt => "LONGINT",
            TypeByte::LongNeg => "LONGNEG",
            TypeByte::Vocab => "VOCAB",
            TypeByte::Open => "OPEN",
            TypeByte::Close => "CLOSE",
            TypeByte::Abort => "ABORT",
            TypeByte::Error => "ERROR",
            TypeByte::Ping => "PING",
            TypeByte::Pong => "PONG",
        }
    }
}

/// One decoded banana token.
///
/// Byte bodies are [`Bytes`] slices of the decoder's input buffer, so a large
/// STRING is handed out without being copied again.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// INT: a non-negative integer that fits the header (any size up to
    /// 64 bits here; larger INT headers are delivered as [`Token::LongInt`]).
    Int(u64),
    /// NEG: the magnitude of a negative integer (0 is accepted: "negative
    /// zero" decodes to 0).
    Neg(u64),
    /// LONGINT: big-endian magnitude of a non-negative integer.
    LongInt(Bytes),
    /// LONGNEG: big-endian magnitude of a negative integer.
    LongNeg(Bytes),
    /// FLOAT: an IEEE-754 double.
    Float(f64),
    /// STRING: a byte string.
    String(Bytes),
    /// VOCAB: an index into the receiver's incoming vocab table.
    Vocab(u64),
    /// OPEN with the sender's open counter.
    Open(u64),
    /// CLOSE with the open counter of the sequence being closed.
    Close(u64),
    /// ABORT of the current sequence.
    Abort(u64),
    /// ERROR: the peer's fatal-error message (it closes the connection).
    Error(Bytes),
    /// PING with its number (foolscap sends 0).
    Ping(u64),
    /// PONG echoing a PING's number.
    Pong(u64),
}

impl Token {
    /// The type byte this token is written with.
    pub fn type_byte(&self) -> TypeByte {
        match self {
            Token::Int(_) => TypeByte::Int,
            Token::Neg(_) => TypeByte::Neg,
            Token::LongInt(_) => TypeByte::LongInt,
            Token::LongNeg(_) => TypeByte::LongNeg,
            Token::Float(_) => TypeByte::Float,
            Token::String(_) => TypeByte::String,
            Token::Vocab(_) => TypeByte::Vocab,
            Token::Open(_) => TypeByte::Open,
            Token::Close(_) => TypeByte::Close,
            Token::Abort(_) => TypeByte::Abort,
            Token::Error(_) => TypeByte::Error,
            Token::Ping(_) => TypeByte::Ping,
            Token::Pong(_) => TypeByte::Pong,
        }
    }
}
