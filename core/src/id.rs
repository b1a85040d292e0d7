//! Every identifier the core hands out, in one place.
//!
//! Identifiers are newtypes so that a connection number cannot be passed
//! where an object number is expected. The numbers that travel on the wire
//! keep Python's integer types ([`ReqId`], [`Clid`]): they are what a peer
//! sends, not handles we mint.

use std::fmt;

/// A request ID on one connection: ours count 1, 2, ...; 0 means "no
/// answer wanted" (`callRemoteOnly`).
pub type ReqId = u64;

/// A connection-local object number (a "clid"): 0 is the peer's broker,
/// positive numbers objects, negative ones functions and bound methods.
pub type Clid = i64;

/// One connection of a Tub (negotiating or open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The application's name for one of its local objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ObjectId(pub u64);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A request for a TCP connection, answered with
/// [`crate::tub::Tub::dial_connected`] or [`crate::tub::Tub::dial_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialId(pub u64);

/// A [`crate::tub::Tub::get_reference`] request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// One of our calls: the connection and its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId {
    /// The connection the call went out on.
    pub connection: ConnectionId,
    /// The broker's request id on it.
    pub req_id: ReqId,
}

/// A call from a peer waiting for [`crate::tub::Tub::answer`] (`req_id`
/// 0: no answer wanted, answering is a no-op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingId {
    /// The connection the call arrived on.
    pub connection: ConnectionId,
    /// The caller's request id.
    pub req_id: ReqId,
}

impl IncomingId {
    /// Whether the caller waits for an answer (not `callRemoteOnly`).
    pub fn wants_answer(&self) -> bool {
        self.req_id != 0
    }
}
