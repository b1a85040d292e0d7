use std::sync::Arc;

use foolscap_core::broker::{CallError, Failure};
use foolscap_core::furl::FurlError;
use foolscap_core::identity::IdentityError;
use foolscap_core::tub::TubError;
use thiserror::Error;

/// What the Tub handle reports.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote call failed (remote exception, violation, lost
    /// connection).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The target's RemoteInterface (known through
    /// [`crate::Tub::add_interface`]) refused the call before anything
    /// was sent: Python's local Violation, with its text and location
    /// (`Violation (RIFoo.method(arg=)): ('string too long (11 > 10)',)`).
    #[error(transparent)]
    Violation(foolscap_core::schema::Violation),
    /// The Tub refused the operation or could not reach the peer (with
    /// each hint's transport or negotiation failure).
    #[error(transparent)]
    Tub(TubError),
    /// The FURL is malformed.
    #[error("bad FURL: {0}")]
    Furl(#[from] FurlError),
    /// The identity could not be created or loaded.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// A socket or file operation failed (`kind()` tells which kind).
    #[error("I/O: {0}")]
    Io(Arc<std::io::Error>),
    /// No answer within the time allowed.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// An answer (or another received value) was not what the Rust type
    /// of a typed interface expects (Python's `TypeError`).
    #[error(transparent)]
    Convert(#[from] crate::typed::ConvertError),
    /// The Tub was shut down.
    #[error("the Tub is shut down")]
    Shutdown,
    /// A blocking wait was asked on an event loop's own thread, which
    /// would stall the loop (use the `_async` form there).
    #[error("a blocking wait on the event loop's thread would stall it; use the async form")]
    WouldStallLoop,
    /// A FURL file holds the FURL of another Tub (Python's
    /// `WrongTubIdError`).
    #[error("WrongTubIdError: the FURL file names Tub {found}, not this Tub {expected}")]
    WrongTubId {
        /// This Tub's tubid.
        expected: String,
        /// The tubid in the file.
        found: String,
    },
    /// A call on a value that is no reference (its Python type name).
    #[error("'{0}' object has no attribute 'callRemote'")]
    NotAReference(&'static str),
}

impl Error {
    /// The remote exception, if the peer raised one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::Call(CallError::Remote(f)) => Some(f),
            _ => None,
        }
    }

    /// The kind of I/O error, for [`Error::Io`].
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether the failure is about reaching the peer (connection, FURL,
    /// timeout) rather than something the remote object did.
    pub fn is_connection_problem(&self) -> bool {
        !matches!(
            self,
            Error::Call(CallError::Remote(_))
                | Error::Call(CallError::Violation(_))
                | Error::Violation(_)
                | Error::Convert(_)
        )
    }

    /// This error as a Failure to relay to a caller (Python's types where
    /// Python has one: `DeadReferenceError`, `Violation`).
    pub fn to_failure(&self) -> Failure {
        match self {
            Error::Call(CallError::Remote(f)) => f.clone(),
            Error::Call(CallError::Violation(why)) => {
                Failure::new("foolscap.tokens.Violation", why.clone())
            }
            Error::Violation(v) => Failure::new("foolscap.tokens.Violation", v.to_string()),
            Error::Convert(e) => e.to_failure(),
            Error::Call(CallError::ConnectionLost(r)) => Failure::new(
                "foolscap.ipb.DeadReferenceError",
                format!("Connection was lost: {r}"),
            ),
            // Python's text for a call on a reference whose connection
            // is gone
            Error::Tub(TubError::NotConnected) => {
                Failure::new("foolscap.ipb.DeadReferenceError", "Calling Stale Broker")
            }
            other => Failure::new("foolscap.ipb.DeadReferenceError", other.to_string()),
        }
    }
}

impl From<TubError> for Error {
    fn from(e: TubError) -> Self {
        match e {
            TubError::Broker(foolscap_core::broker::BrokerError::Violation(v)) => {
                Error::Violation(v)
            }
            e => Error::Tub(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}
