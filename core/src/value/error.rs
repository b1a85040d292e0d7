use thiserror::Error;

use crate::banana::TokenError;

/// How much an error costs (docs/protocol.md §4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorScope {
    /// A "Violation": the offending top-level message is discarded up to
    /// its CLOSE and the connection goes on (inside a call, it becomes an
    /// error answer to that call).
    Message,
    /// A protocol error: the token stream is malformed; send ERROR and
    /// drop the connection.
    Connection,
}

/// An error found while decoding values. [`DecodeError::scope`] says
/// whether it costs one message or the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
// Fields: `offset` is the stream offset of the offending token; the
// others are named in the variant's message.
#[allow(missing_docs)]
#[non_exhaustive]
pub enum DecodeError {
    // ---- connection-fatal: the stream is malformed ----
    /// Broken token framing.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A token other than OPEN (or PING/PONG/ERROR) between messages.
    #[error("top-level must be OPEN, got {token} at byte {offset}")]
    TopLevelNotOpen { offset: u64, token: &'static str },
    /// CLOSE whose number is not the innermost open sequence's.
    #[error("lost sync, got CLOSE({got}) but expecting {expected} at byte {offset}")]
    CloseMismatch {
        offset: u64,
        got: u64,
        expected: u64,
    },
    /// OPEN where an index token (the open type) was required.
    #[error("OPEN token followed by OPEN at byte {offset}")]
    OpenInIndex { offset: u64 },
    /// ABORT before the sequence said what type it is (Python then loses
    /// sync at the sequence's CLOSE and hangs up).
    #[error("ABORT before the open type at byte {offset}")]
    AbortInIndex { offset: u64 },
    /// CLOSE before the sequence said what type it is.
    #[error("CLOSE before the open type at byte {offset}")]
    CloseInIndex { offset: u64 },
    /// VOCAB index not in the negotiated table.
    #[error("undefined VOCAB index {index} at byte {offset}")]
    UndefinedVocab { offset: u64, index: u64 },
    /// A token the sequence's grammar does not allow there.
    #[error("{sequence} does not accept {token} at byte {offset}: {rule}")]
    UnexpectedToken {
        offset: u64,
        sequence: &'static str,
        token: &'static str,
        rule: &'static str,
    },
    /// A sequence closed before its required content.
    #[error("{sequence} ended too early at byte {offset}")]
    Incomplete { offset: u64, sequence: &'static str },
    /// Text in a `unicode` sequence (or a name) that is not UTF-8.
    #[error("invalid UTF-8 in {what} at byte {offset}")]
    InvalidUtf8 { offset: u64, what: &'static str },
    /// A `decimal` body Python's `Decimal()` would refuse.
    #[error("invalid decimal {text:?} at byte {offset}")]
    InvalidDecimal { offset: u64, text: String },
    /// A `reference` to an object that does not exist in this message or
    /// cannot be referenced.
    #[error("dangling reference {target} at byte {offset}")]
    DanglingReference { offset: u64, target: u64 },
    /// A dict key that repeats an earlier key (Python equality).
    #[error("duplicate dict key at byte {offset}")]
    DuplicateKey { offset: u64 },
    /// A dict key or set element Python cannot hash (list, dict, set).
    #[error("unhashable {what} at byte {offset}")]
    Unhashable { offset: u64, what: &'static str },
    /// A dict key that is a tuple still being built (cycle through itself).
    #[error("incomplete object as dictionary key at byte {offset}")]
    IncompleteKey { offset: u64 },
    /// A copyable attribute repeated.
    #[error("duplicate attribute name {name:?} at byte {offset}")]
    DuplicateAttribute { offset: u64, name: String },
    /// A copyable attribute whose value is a sequence still being built.
    #[error("unreferenceable object in attribute at byte {offset}")]
    UnreferenceableAttribute { offset: u64 },

    // ---- message-scoped: the message is discarded ----
    /// An open type nobody registered (`instance`, `module`, ...).
    #[error("unknown open type {name:?} at byte {offset}")]
    UnknownOpenType { offset: u64, name: String },
    /// An index token that is not STRING/VOCAB, or is too long.
    #[error("bad index token at byte {offset}: {why}")]
    BadIndexToken { offset: u64, why: String },
    /// The sender aborted the sequence.
    #[error("ABORT received at byte {offset}")]
    Aborted { offset: u64 },
    /// A tuple or frozenset that contains itself with no list, dict or set
    /// in between: Python can never finish building it.
    #[error("tuple or frozenset that contains itself at byte {offset}")]
    UnresolvableCycle { offset: u64 },
    /// Too many parameters in a reference sequence.
    #[error("too many parameters in {sequence} at byte {offset}")]
    TooManyParameters { offset: u64, sequence: &'static str },
    /// Nesting deeper than [`super::Limits::max_depth`].
    #[error("nesting deeper than {limit} at byte {offset}")]
    TooDeep { offset: u64, limit: usize },
    /// A container with more than [`super::Limits::max_container_items`].
    #[error("container with more than {limit} items at byte {offset}")]
    TooManyItems { offset: u64, limit: usize },
    /// A message over [`super::Limits::max_message_bytes`].
    #[error("message larger than {limit} bytes at byte {offset}")]
    MessageTooLarge { offset: u64, limit: usize },
    /// More `reference` sequences than [`super::Limits::max_references`].
    #[error("more than {limit} shared references in one message at byte {offset}")]
    TooManyReferences { offset: u64, limit: usize },

    /// A schema refused the message (docs/protocol.md §6.5); the text is
    /// Python's `str(Violation)`.
    #[error("{violation}")]
    Violation {
        offset: u64,
        violation: Box<crate::schema::Violation>,
    },

    // ---- either: the receiver's RefDecoder decides ----
    /// A reference sequence the receiver refused ([`super::RefDecoder`]):
    /// a Violation, or (`fatal`) the end of the connection.
    #[error("{why}")]
    RefusedReference {
        offset: u64,
        why: String,
        fatal: bool,
    },
}

impl DecodeError {
    /// The text of the BananaError Python raises for this stream, as its
    /// ERROR token carries it (without the `BananaError(in ...)` frame);
    /// `None` where Python fails with an internal exception instead (it
    /// then sends only a generic text). Errors Python has no counterpart
    /// for keep our own description.
    pub fn python_banana_text(&self) -> Option<String> {
        use DecodeError::*;
        Some(match self {
            Token(TokenError::HeaderTooLong { received, .. }) => format!(
                "token prefix is limited to 64 bytes: but got {}",
                crate::value::pyrepr::bytes_repr(received)
            ),
            Token(TokenError::InvalidTypeByte { byte, .. }) => {
                format!("Invalid Type Byte 0x{byte:x}")
            }
            Token(TokenError::BodyTooLong { kind: "ERROR", .. }) => "oversized ERROR token".into(),
            TopLevelNotOpen { .. } => "top-level must be OPEN".into(),
            OpenInIndex { .. } => "OPEN token followed by OPEN".into(),
            Incomplete {
                sequence: "arguments",
                ..
            } => "'arguments' sequence ended too early".into(),
            CloseMismatch { got, expected, .. } => {
                format!("lost sync, got CLOSE({got}) but expecting {expected}")
            }
            // a KeyError inside Python's decoder
            UndefinedVocab { .. } => return None,
            // an exception inside Python's reference tracking
            RefusedReference { fatal: true, .. } => return None,
            other => other.to_string(),
        })
    }

    /// Whether this error costs the message or the connection.
    pub fn scope(&self) -> ErrorScope {
        use DecodeError::*;
        match self {
            UnknownOpenType { .. }
            | BadIndexToken { .. }
            | Aborted { .. }
            | UnresolvableCycle { .. }
            | TooManyParameters { .. }
            | TooDeep { .. }
            | TooManyItems { .. }
            | MessageTooLarge { .. }
            | TooManyReferences { .. }
            | Violation { .. }
            | RefusedReference { fatal: false, .. } => ErrorScope::Message,
            _ => ErrorScope::Connection,
        }
    }
}

/// A value the serializer cannot send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An [`super::Value::Alias`] whose anchor was not serialized earlier
    /// in the same message (or is not an ancestor still being written).
    #[error("alias {0} has no anchor earlier in the message")]
    UnknownAnchor(u32),
    /// The same anchor id appears twice in one message.
    #[error("anchor {0} defined twice in one message")]
    DuplicateAnchor(u32),
    /// An anchor on a value Python cannot share (only list, tuple, dict,
    /// set, frozenset and copyable can be referenced).
    #[error("a {0} cannot be shared by reference")]
    UnshareableAnchor(&'static str),
    /// A live reference ([`super::Value::Local`] or [`super::Value::Remote`])
    /// outside a broker, or one the broker cannot send on this connection
    /// (a function reference going home, which Python would send as a
    /// fatal NEG `your-reference`).
    #[error("cannot send this {0} on this connection")]
    LiveReference(&'static str),
}
