use std::fmt;

use thiserror::Error;

use crate::broker::{BrokerError, CallError};
use crate::negotiation::NegotiationError;

/// Why a Tub operation failed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum TubError {
    /// The TLS configuration could not be built from the identity.
    #[error("TLS setup failed: {0}")]
    Tls(rustls::Error),
    /// The swissnum is already registered.
    #[error("the name {0:?} is already registered")]
    NameInUse(String),
    /// Our own FURL names no registered object.
    #[error("no object is registered under a name starting with {0:?}")]
    UnknownName(String),
    /// No hint of the FURL led to its Tub.
    #[error("cannot connect to {furl}: {}", Attempts(attempts))]
    Unreachable {
        /// The FURL (its hints tell where we tried).
        furl: String,
        /// What happened at each hint, in the order they were tried
        /// (empty: the FURL has no hint we can use).
        attempts: Vec<DialFailure>,
    },
    /// The peer's broker refused the lookup (unknown swissnum: a remote
    /// `KeyError`), or the connection ended first.
    #[error("reference lookup failed: {0}")]
    Lookup(CallError),
    /// An accepted socket was refused: `TubConfig::max_negotiating_connections`
    /// is this (0: accepting is off). A full table never refuses: the
    /// oldest negotiating connection is evicted instead.
    #[error("refusing a connection: the limit of negotiating connections is {0}")]
    TooManyConnections(usize),
    /// The reference's connection is not open (any more).
    #[error("the connection is not open (dead reference)")]
    NotConnected,
    /// The broker refused the operation.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// [`crate::tub::Tub::answer_name_lookup`] for a name lookup that is
    /// not waiting (answered already, or never reported).
    #[error("no such name lookup is waiting for its answer")]
    UnknownLookup,
}

impl TubError {
    /// The negotiation failures among the attempts of an
    /// [`TubError::Unreachable`] (a wrong tubid, a refused duplicate, no
    /// common vocab table ...), in order.
    pub fn negotiation_failures(&self) -> impl Iterator<Item = &NegotiationError> {
        let attempts = match self {
            TubError::Unreachable { attempts, .. } => attempts.as_slice(),
            _ => &[],
        };
        attempts.iter().filter_map(|a| match &a.error {
            DialError::Negotiation(e) => Some(e),
            DialError::Transport(_) => None,
        })
    }
}

/// One connection hint that did not lead to the FURL's Tub.
#[derive(Debug, Clone, PartialEq)]
pub struct DialFailure {
    /// The hint, as `tcp:HOST:PORT`.
    pub hint: String,
    /// What went wrong there.
    pub error: DialError,
}

impl fmt::Display for DialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.hint, self.error)
    }
}

/// Why one connection attempt failed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DialError {
    /// The TCP connection could not be opened (reported by the driver).
    #[error(transparent)]
    Transport(TransportError),
    /// The connection opened but negotiation failed.
    #[error(transparent)]
    Negotiation(NegotiationError),
}

/// A socket error as a driver reports it: the kind the operating system
/// gave and its message (the core keeps no `std::io::Error`, which is
/// neither `Clone` nor comparable).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct TransportError {
    /// What kind of failure (`ConnectionRefused`, `TimedOut`, ...).
    pub kind: std::io::ErrorKind,
    /// The operating system's message.
    pub message: String,
}

impl TransportError {
    /// A transport error of `kind` with `message`.
    pub fn new(kind: std::io::ErrorKind, message: impl Into<String>) -> TransportError {
        TransportError {
            kind,
            message: message.into(),
        }
    }
}

impl From<&std::io::Error> for TransportError {
    fn from(e: &std::io::Error) -> Self {
        TransportError::new(e.kind(), e.to_string())
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::from(&e)
    }
}

/// The attempts of an [`TubError::Unreachable`], for its message.
struct Attempts<'a>(&'a [DialFailure]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the FURL has no TCP connection hints");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
