//! The value model: what travels inside banana sequences
//! (docs/protocol.md §5.1-5.3, 5.6, 5.7), and its streaming (de)serializer.
//!
//! [`Value`] mirrors Python's data model closely enough that a value
//! survives a round trip through a Python peer unchanged: bytes and str,
//! list and tuple, set and frozenset stay distinct, and bool is not int.
//!
//! ## Sharing and cycles
//! Python sends an object that appears twice in one message once, then
//! refers back to it by number (a `reference` sequence), which is also how
//! cycles travel. The value model keeps that structure explicitly, the way
//! YAML does: the first occurrence is wrapped in [`Value::Anchor`] and every
//! later occurrence (or a self-reference from inside it) is a
//! [`Value::Alias`] naming the same [`AnchorId`]. Anchor ids are scoped to
//! one top-level message. The [`Serializer`] turns them back into
//! `reference` sequences, so decode-then-encode reproduces Python's sharing
//! and cycles exactly, and no cycle ever becomes an `Rc` leak.

mod de;
mod decimal;
mod error;
mod int;
mod limits;
mod pb;
mod pyops;
pub mod pyrepr;
mod ser;
mod sharing;
mod text;
mod wire_refs;

#[cfg(feature = "arbitrary")]
mod arbitrary_impl;

use std::sync::Arc;

use bytes::Bytes;

use crate::id::ConnectionId;

pub use de::{Deserializer, Event};
pub use decimal::{Decimal, DecimalError};
pub use error::{DecodeError, EncodeError, ErrorScope};
pub use int::Int;
pub use limits::Limits;
pub use pb::{IncomingCall, PbEvent};
pub use pyops::{py_eq, py_hash};
pub use ser::{CallTarget, NoRefs, RefDecoder, RefEncoder, Serializer};
pub use text::Text;
pub use wire_refs::WireRefs;

/// Identifies one shared container within one top-level message.
pub type AnchorId = u32;

/// A value as it travels in a Foolscap message.
#[derive(Debug, Clone)]
pub enum Value {
    /// Python `None` (`none` sequence).
    None,
    /// Python `bool` (`boolean` sequence).
    Bool(bool),
    /// Python `int` of any size.
    Int(Int),
    /// Python `float`: every f64, including -0.0, infinities and NaNs.
    Float(f64),
    /// Python `bytes` (a bare STRING token).
    Bytes(Bytes),
    /// Python `str` (`unicode` sequence, UTF-8 on the wire).
    Str(Text),
    /// Python `decimal.Decimal`, kept in its canonical text form.
    Decimal(Decimal),
    /// Python `list`.
    List(Vec<Value>),
    /// Python `tuple`.
    Tuple(Vec<Value>),
    /// Python `set`, in wire order.
    Set(Vec<Value>),
    /// Python `frozenset` (`immutable-set`), in wire order.
    FrozenSet(Vec<Value>),
    /// Python `dict`, as key/value pairs in wire order (a Python sender
    /// sorts the keys; our serializer does the same).
    Dict(Vec<(Value, Value)>),
    /// The first occurrence of a container that appears again in the same
    /// message (as a [`Value::Alias`]).
    Anchor(AnchorId, Box<Value>),
    /// A later occurrence of the anchored container with this id.
    Alias(AnchorId),
    /// `copyable`: a pass-by-copy object (type name and attribute state).
    Copyable(Box<Copyable>),
    /// One of our own objects, by the application's id. The broker turns
    /// a received `your-reference` into this and sends it as a
    /// `my-reference` ([`WireRef`]); it never appears on the wire as such.
    Local(crate::id::ObjectId),
    /// A live reference to an object of a peer, as the broker resolved it
    /// from a `my-reference`. Sent back over its own connection it becomes
    /// a `your-reference`.
    Remote(RemoteRef),
}

/// A reference to an object that lives on the other side of one
/// connection: the application's handle for a received `my-reference`.
///
/// Equal handles name the same remote object (same connection, same
/// clid). A broker keeps one clone of each handle it gave out; when every
/// other clone has been dropped, the broker releases the reference
/// (`decref`) on its next sweep, as Python does when a RemoteReference is
/// garbage-collected.
#[derive(Clone)]
pub struct RemoteRef(Arc<RemoteRefInner>);

struct RemoteRefInner {
    connection: ConnectionId,
    clid: i64,
    interface: Bytes,
    furl: Option<Bytes>,
}

impl RemoteRef {
    /// A handle for `clid` on `connection` (brokers make these).
    pub fn new(
        connection: ConnectionId,
        clid: i64,
        interface: Bytes,
        furl: Option<Bytes>,
    ) -> RemoteRef {
        RemoteRef(Arc::new(RemoteRefInner {
            connection,
            clid,
            interface,
            furl,
        }))
    }

    /// The connection the reference arrived over.
    pub fn connection(&self) -> ConnectionId {
        self.0.connection
    }

    /// The peer's clid for the object (negative for a function).
    pub fn clid(&self) -> i64 {
        self.0.clid
    }

    /// The RemoteInterface name the peer declared (may be empty).
    pub fn interface(&self) -> &Bytes {
        &self.0.interface
    }

    /// The object's FURL, if the peer sent one.
    pub fn furl(&self) -> Option<&Bytes> {
        self.0.furl.as_ref()
    }

    /// How many clones of this handle exist (the broker's included).
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl PartialEq for RemoteRef {
    fn eq(&self, other: &RemoteRef) -> bool {
        self.0.connection == other.0.connection && self.0.clid == other.0.clid
    }
}

impl Eq for RemoteRef {}

impl std::hash::Hash for RemoteRef {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.connection.hash(h);
        self.0.clid.hash(h);
    }
}

impl std::fmt::Debug for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RemoteRef(connection {}, clid {})",
            self.0.connection, self.0.clid
        )
    }
}

/// A reference as it travels: one of the three reference sequences. The
/// application never sees these: a connection's broker turns received ones
/// into [`Value::Remote`] and [`Value::Local`] while the message is decoded
/// (a [`RefDecoder`]), and those back into these while it is encoded (a
/// [`RefEncoder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireRef {
    /// `my-reference`: an object that lives on the sender's side.
    My(MyReference),
    /// `your-reference`: an object the receiver exported earlier, by clid.
    Your(u64),
    /// `their-reference`: a gift of a third Tub's object.
    Their(TheirReference),
}

impl WireRef {
    /// The sequence's open type (`"my-reference"`, ...).
    pub fn sequence(&self) -> &'static str {
        match self {
            WireRef::My(_) => "my-reference",
            WireRef::Your(_) => "your-reference",
            WireRef::Their(_) => "their-reference",
        }
    }
}

/// The body of a `my-reference` sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyReference {
    /// The sender's clid: positive for objects, negative for functions and
    /// bound methods.
    pub clid: i64,
    /// RemoteInterface name, sent only the first time (`Some("")` when the
    /// object has none).
    pub interface: Option<Bytes>,
    /// The object's FURL, sent only the first time and only if it has one.
    pub furl: Option<Bytes>,
}

/// The body of a `their-reference` sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TheirReference {
    /// Gift id to acknowledge with `decgift`, 0 for "do not acknowledge".
    pub gift_id: u64,
    /// FURL of the gifted object.
    pub furl: Bytes,
}

/// A pass-by-copy object: its registered type name and attribute state in
/// wire order.
#[derive(Debug, Clone)]
pub struct Copyable {
    /// The registered copy type name (second index token).
    pub type_name: Text,
    /// Attribute name/value pairs (attribute names are bare STRINGs).
    pub state: Vec<(Text, Value)>,
}

impl Value {
    /// A `str` value.
    pub fn str(s: &str) -> Value {
        Value::Str(Text::from(s))
    }

    /// A `bytes` value (copies `b`).
    pub fn bytes(b: &[u8]) -> Value {
        Value::Bytes(Bytes::copy_from_slice(b))
    }

    /// An `int` value.
    pub fn int(i: i64) -> Value {
        Value::Int(Int::from(i))
    }

    /// Python's name for this value's type (`"NoneType"`, `"int"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::Decimal(_) => "Decimal",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Dict(_) => "dict",
            Value::Anchor(_, v) => v.type_name(),
            Value::Alias(_) => "alias",
            Value::Copyable(_) => "copyable",
            Value::Local(_) => "local object",
            Value::Remote(_) => "remote reference",
        }
    }

    /// Looks through an [`Value::Anchor`] wrapper.
    pub fn unanchored(&self) -> &Value {
        match self {
            Value::Anchor(_, v) => v,
            v => v,
        }
    }

    /// The `str` content, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self.unanchored() {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The `bytes` content, if this is `bytes`.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self.unanchored() {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is an `int` that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self.unanchored() {
            Value::Int(i) => i.to_i64(),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self.unanchored() {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }
}

/// Structural identity, not Python `==`: types must match exactly (so
/// `1 != True`, `[1] != (1,)`), floats compare by bit pattern (NaN equals
/// the same NaN, `0.0 != -0.0`), containers compare in order, anchors and
/// aliases must match by id. Use [`py_eq`] for Python's `==` on hashable
/// values.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (None, None) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Bytes(a), Bytes(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            (Decimal(a), Decimal(b)) => a == b,
            (List(a), List(b))
            | (Tuple(a), Tuple(b))
            | (Set(a), Set(b))
            | (FrozenSet(a), FrozenSet(b)) => a == b,
            (Dict(a), Dict(b)) => a == b,
            (Anchor(i, a), Anchor(j, b)) => i == j && a == b,
            (Alias(i), Alias(j)) => i == j,
            (Copyable(a), Copyable(b)) => a.type_name == b.type_name && a.state == b.state,
            (Local(a), Local(b)) => a == b,
            (Remote(a), Remote(b)) => a == b,
            _ => false,
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::int(i)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Text::from(s))
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}

#[cfg(test)]
mod tests;
