use bytes::Bytes;
use thiserror::Error;

use super::failure::{Failure, FailureError};
use super::{Clid, ReqId};
use crate::value::{DecodeError, EncodeError};

/// Why a connection ended (docs/protocol.md §4.8, 4.10, 6.6).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed it ([`super::Broker::close`]).
    #[error("closed locally")]
    Local,
    /// The transport ended ([`super::Broker::connection_lost`]).
    #[error("connection was lost")]
    Lost,
    /// The peer sent an ERROR token.
    #[error("peer reported an error: {}", String::from_utf8_lossy(.0))]
    PeerError(Bytes),
    /// The Tub closed it to make room for a new connection at
    /// `TubConfig::max_established_connections`: it was the one idle the
    /// longest of those holding no references and no calls.
    #[error("evicted: the connection cap was reached and this connection was idle")]
    Evicted,
    /// Nothing arrived for `disconnect_timeout`.
    #[error("no data received for the disconnect timeout")]
    IdleTimeout,
    /// The peer broke the protocol; we sent ERROR.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// A protocol error by the peer: fatal, answered with an ERROR token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The token stream or a sequence was malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A `call` reused a reqID whose call is still unanswered.
    #[error("duplicate reqID {0}")]
    DuplicateReqId(ReqId),
    /// An `error` whose Failure lacks a required attribute.
    #[error("bad Failure: {0}")]
    Failure(FailureError),
    /// A `my-reference` FURL that is not the peer's.
    #[error("inbound reference claims bad tubid: {0}")]
    BadReferenceFurl(String),
    /// More imported references than `BrokerConfig::max_imports`.
    #[error("more than {0} live references imported from the peer")]
    TooManyImports(usize),
    /// The peer's message in progress held more memory than
    /// `TubConfig::max_connection_inbound_bytes` (`held` bytes, as
    /// [`crate::broker::Broker::inbound_bytes`] counts them).
    #[error(
        "message in progress holds {held} bytes, over the per-connection inbound budget of {limit}"
    )]
    ConnectionInboundBudget {
        /// What the message in progress held.
        held: usize,
        /// The per-connection budget.
        limit: usize,
    },
    /// The messages in progress over all of the Tub's connections held
    /// more than `TubConfig::max_inbound_bytes` while every connection
    /// with one was paused, and this connection's was the largest.
    #[error("message in progress holds {held} bytes, the largest while the Tub's inbound budget of {limit} is exceeded")]
    TubInboundBudget {
        /// What this connection's message in progress held.
        held: usize,
        /// The Tub-wide budget.
        limit: usize,
    },
}

/// Why one of our outgoing calls failed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The remote method raised (the peer's `error` message).
    #[error("remote exception {0}")]
    Remote(Failure),
    /// The answer or error was refused while receiving it (a Violation);
    /// the connection goes on.
    #[error("violation in the answer: {0}")]
    Violation(String),
    /// The connection ended first (Python's `DeadReferenceError`).
    #[error("connection was lost: {0}")]
    ConnectionLost(CloseReason),
}

/// A local API misuse or a value that cannot be sent.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
    /// A call to a clid the peer never sent us (or that we released).
    #[error("no live reference with clid {0}")]
    UnknownClid(Clid),
    /// Functions (negative clids) take keyword arguments only.
    #[error("functions take keyword arguments only")]
    PositionalToFunction,
    /// `answer`/`fail` for a request that is not waiting for one.
    #[error("no incoming call {0} is waiting for an answer")]
    UnknownRequest(ReqId),
    /// The value cannot be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A schema refused our call's arguments before anything was sent (the
    /// call's reqID is used up, as Python uses it), or our answer (the
    /// caller got the Violation instead): docs/protocol.md §6.5.
    #[error(transparent)]
    Violation(#[from] crate::schema::Violation),
}
