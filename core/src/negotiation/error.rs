use thiserror::Error;

use super::blocks::BlockError;
use super::plaintext::{PlaintextError, INTERNAL_ERROR};
use crate::identity::TubId;

/// Which side cannot handle a value ("I can't handle ..." / "You can't
/// handle ..." in Python's messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This side.
    Me,
    /// The peer.
    Peer,
}

/// Why a negotiation failed. [`NegotiationError::wire_text`] is what
/// Python would tell the peer about it; `Display` says more.
#[derive(Debug, Clone, PartialEq, Error)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The plaintext request or response was refused or malformed.
    #[error(transparent)]
    Plaintext(#[from] PlaintextError),
    /// A hello or decision block that does not parse.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// More than the limit buffered while waiting for a block inside TLS.
    #[error("negotiation block too long: no blank line within {limit} bytes")]
    BlockTooLong { limit: usize },
    /// The TLS handshake or record layer failed.
    #[error("TLS failed: {0}")]
    Tls(rustls::Error),
    /// The peer's certificate is not the one the FURL names.
    #[error("connected to the wrong Tub: the FURL names tubid {expected}, the peer's certificate is tubid {actual}")]
    WrongTub { expected: TubId, actual: TubId },
    /// The hello has only the pre-0.1 `banana-negotiation-version` key.
    #[error("the peer speaks foolscap-0.0.5 or earlier")]
    OldPeer,
    /// The hello has no `banana-negotiation-range`.
    #[error("the peer's hello has no banana-negotiation-range")]
    NoBananaRange,
    /// A range, index or number field that does not parse.
    #[error("malformed {key} value {value:?} in the peer's block")]
    BadField { key: &'static str, value: String },
    /// No common banana version or vocab table.
    #[error("{} can't handle {what} {value}", match side { Side::Me => "we", Side::Peer => "the peer" })]
    Unsupported {
        side: Side,
        what: &'static str,
        value: i64,
    },
    /// The hello says `negotiation-forced: True`, which Python refuses.
    #[error("the peer forces negotiation parameters, which foolscap does not support")]
    Forced,
    /// A hello claiming a tubid over a connection without a certificate.
    #[error("the peer claims a tubid but presented no certificate")]
    NoCertificate,
    /// The hello's `my-tub-id` is not the peer certificate's tubid.
    #[error("TubID mismatch: the peer's hello claims {claimed:?} but its certificate is tubid {certificate}")]
    TubIdMismatch {
        claimed: Option<String>,
        certificate: TubId,
    },
    /// We are the master and refused the offer: a live connection to that
    /// Tub exists and the offer does not show it is stale.
    #[error("refused a duplicate connection from {peer}")]
    Duplicate { peer: TubId },
    /// The peer refused us (it sent an error block).
    #[error("the peer refused the connection: {message}")]
    Remote { message: String },
    /// The decision block has no `banana-decision-version`.
    #[error("the decision has no banana-decision-version")]
    NoDecisionVersion,
    /// The decision's vocab table hash differs from ours.
    #[error("vocab table {index}: our hash {ours}, the master's {theirs}")]
    VocabHashMismatch {
        index: u32,
        ours: String,
        theirs: String,
    },
    /// The peer did not finish in time (Python: 120 s).
    #[error("negotiation timeout")]
    Timeout,
    /// The peer closed the connection during negotiation.
    #[error("the peer closed the connection during negotiation")]
    Closed,
    /// Dropped by the Tub to make room: it was the oldest inbound
    /// connection still negotiating when a new one arrived at
    /// `TubConfig::max_negotiating_connections`.
    #[error("evicted: the oldest of {limit} connections still negotiating")]
    Evicted { limit: usize },
    /// Negotiated, but `TubConfig::max_established_connections` are
    /// established and none can be evicted (each holds references or
    /// calls): the new connection is closed instead.
    #[error("refused: {limit} connections are established and all are in use")]
    TooManyConnections { limit: usize },
}

impl NegotiationError {
    /// The reason Python would send the peer: the text of its
    /// "NegotiationError"s, and `internal server error, see logs` for
    /// everything else.
    pub fn wire_text(&self) -> String {
        use NegotiationError::*;
        match self {
            Plaintext(e) => e.wire_text(),
            OldPeer => "Peer is speaking foolscap-0.0.5 or earlier, which is not compatible with this version. Please upgrade the peer.".into(),
            NoBananaRange => "No valid banana-negotiation sequence seen".into(),
            Unsupported { side, what, value } => format!(
                "{} can't handle {what} {value}",
                match side {
                    Side::Me => "I",
                    Side::Peer => "You",
                }
            ),
            Duplicate { .. } => "Duplicate connection".into(),
            NoDecisionVersion => "No banana-decision-version value".into(),
            VocabHashMismatch { index, ours, theirs } => format!(
                "Our hash for vocab-table-index {index} ({ours}) does not match your hash ({theirs})"
            ),
            Timeout => "negotiation timeout".into(),
            _ => INTERNAL_ERROR.into(),
        }
    }

    /// Whether this is a duplicate-connection refusal, by us or the peer.
    pub fn is_duplicate_connection(&self) -> bool {
        match self {
            NegotiationError::Duplicate { .. } => true,
            NegotiationError::Remote { message } => message.ends_with("Duplicate connection"),
            _ => false,
        }
    }
}
