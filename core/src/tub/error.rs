use thiserror::Error;

use crate::broker::{BrokerError, CallError};

/// Why a Tub operation failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TubError {
    /// The TLS configuration could not be built from the identity.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The swissnum is already registered.
    #[error("the name {0:?} is already registered")]
    NameInUse(String),
    /// Our own FURL names no registered object.
    #[error("no object is registered under a name starting with {0:?}")]
    UnknownName(String),
    /// No hint of the FURL led to its Tub.
    #[error("cannot connect to {furl}: {why}")]
    Unreachable {
        /// The FURL (its hints tell where we tried).
        furl: String,
        /// What happened at each hint.
        why: String,
    },
    /// The peer's broker refused the lookup (unknown swissnum: a remote
    /// `KeyError`), or the connection ended first.
    #[error("reference lookup failed: {0}")]
    Lookup(CallError),
    /// An accepted socket was refused: this many connections exist.
    #[error("refusing a connection: {0} connections are open")]
    TooManyConnections(usize),
    /// The reference's connection is not open (any more).
    #[error("the connection is not open (dead reference)")]
    NotConnected,
    /// The broker refused the operation.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}
