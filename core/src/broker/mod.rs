//! The broker: PB calls, answers and errors over a negotiated connection
//! (docs/protocol.md §5.4-5.8, 6), sans-IO.
//!
//! A [`Broker`] takes the plaintext banana a [`crate::negotiation::Session`]
//! delivers and gives back plaintext to send, events and timers, in the
//! style of `quinn-proto`: [`Broker::handle_plaintext`],
//! [`Broker::poll_transmit`], [`Broker::poll_event`], [`Broker::poll_timeout`]
//! and [`Broker::handle_timeout`]. It never blocks and never reads a clock.
//!
//! It numbers our requests, matches answers (in any order) to them,
//! delivers incoming calls to local objects as events to be answered later,
//! serves the clid-0 broker object (`getReferenceByName`, `decref`,
//! `decgift`), counts exported and imported references as Python does,
//! answers PING, pings an idle peer and fails every outstanding call when
//! the connection ends.

mod error;
mod failure;

// hashbrown's seeded foldhash (as for `incoming`), not SipHash: several
// lookups per call; every table is bounded by a limit of `BrokerConfig`.
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::banana::encode::{put_error, put_ping_pong};
use crate::banana::{TypeByte, VocabTable};
use crate::furl::Furl;
use crate::identity::TubId;
use crate::schema::check::{check_call, check_result, describe_object, Direction, Violation};
use crate::schema::{CopyableSchema, InterfaceSchema};
use crate::value::pyrepr::str_repr;
use crate::value::{
    CallTarget, DecodeError, Deserializer, EncodeError, IncomingCall, Limits, MyReference, PbEvent,
    RefDecoder, RefEncoder, RemoteRef, Serializer, Text, TheirReference, Value, WireRef,
};

pub use error::{BrokerError, CallError, CloseReason, ProtocolError};
pub use failure::{limits as failure_limits, Failure, FailureError, FAILURE_TYPE, NO_TRACEBACK};

pub use crate::id::{Clid, ConnectionId, ObjectId, ReqId};

/// A local object the peer may reach: what a [`Registry`] returns, and
/// what a `my-reference` to it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The application's id for the object.
    pub object: ObjectId,
    /// Its RemoteInterface name (`""` for none).
    pub interface: Bytes,
    /// Its FURL, sent with the first `my-reference` if present.
    pub furl: Option<Bytes>,
}

/// The Tub's published objects: swissnum → object.
pub trait Registry {
    /// The object registered under `name`, if any.
    fn lookup(&self, name: &[u8]) -> Option<Export>;

    /// How to send local object `object` when a [`Value::Local`] names it
    /// (its interface name and FURL). `None`: no interface, no FURL.
    fn describe(&self, object: ObjectId) -> Option<Export> {
        let _ = object;
        None
    }

    /// Whether a received `copyable` of this type name is accepted. Python
    /// accepts only registered RemoteCopy types (and Failures) and answers
    /// any other with a Violation, "unknown RemoteCopy name". Default:
    /// every type.
    fn accepts_copyable(&self, type_name: &str) -> bool {
        let _ = type_name;
        true
    }

    /// The RemoteInterface local object `object` declares: calls to it are
    /// checked as Python checks them (docs/protocol.md §6.5). Default:
    /// none.
    fn schema(&self, object: ObjectId) -> Option<Arc<InterfaceSchema>> {
        let _ = object;
        None
    }

    /// The attribute schema of copyable type `type_name` (Python's
    /// `stateSchema`), checked wherever one arrives. Default: none.
    fn copyable_schema(&self, type_name: &str) -> Option<Arc<CopyableSchema>> {
        let _ = type_name;
        None
    }

    /// Whether a name [`Registry::lookup`] does not know is left to the
    /// application (a [`BrokerEvent::NameLookup`], answered with
    /// [`Broker::answer_name_lookup`]) instead of failing at once.
    /// Default: no.
    fn defers_unknown_names(&self) -> bool {
        false
    }
}

/// A method's schema, as an incoming call or our outstanding request
/// needs it (the interface and the method's name).
type MethodRef = (Arc<InterfaceSchema>, usize);

/// A [`Registry`] with no objects (for messages that carry none).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObjects;

impl Registry for NoObjects {
    fn lookup(&self, _name: &[u8]) -> Option<Export> {
        None
    }
}

impl<S: BuildHasher> Registry for std::collections::HashMap<Vec<u8>, Export, S> {
    fn lookup(&self, name: &[u8]) -> Option<Export> {
        self.get(name).cloned()
    }

    fn describe(&self, object: ObjectId) -> Option<Export> {
        self.values().find(|e| e.object == object).cloned()
    }
}

/// Broker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// Send PING after this long without receiving anything (Python's
    /// `keepaliveTimeout`). Default: 240 s.
    pub keepalive: Option<Duration>,
    /// Drop the connection after this long without receiving anything
    /// (Python's `disconnectTimeout`). Default: off.
    pub disconnect_timeout: Option<Duration>,
    /// Value deserializer limits.
    pub limits: Limits,
    /// Most incoming calls waiting for our answer; a call beyond it is
    /// answered with a Violation. Default: 65536.
    pub max_incoming_calls: usize,
    /// Most distinct live references imported from the peer; more is
    /// fatal. Default: 1 Mi.
    pub max_imports: usize,
    /// Most gifts (`their-reference`s) in one received message; a message
    /// with more is refused with a Violation (its gifts are not looked
    /// up). Default: 1024.
    pub max_gifts_per_message: usize,
    /// Send failures' traceback text (Python's `Tub.unsafeTracebacks`,
    /// default on). Off: every `error` we send carries `Traceback
    /// unavailable\n` instead, forwarded failures included.
    pub unsafe_tracebacks: bool,
}

impl BrokerConfig {
    /// Default `keepalive`.
    pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(240);
    /// Default `max_incoming_calls`.
    pub const DEFAULT_MAX_INCOMING_CALLS: usize = 1 << 16;
    /// Default `max_imports`.
    pub const DEFAULT_MAX_IMPORTS: usize = 1 << 20;
    /// Default `max_gifts_per_message`.
    pub const DEFAULT_MAX_GIFTS_PER_MESSAGE: usize = 1024;
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            keepalive: Some(Self::DEFAULT_KEEPALIVE),
            disconnect_timeout: None,
            limits: Limits::default(),
            max_incoming_calls: Self::DEFAULT_MAX_INCOMING_CALLS,
            max_imports: Self::DEFAULT_MAX_IMPORTS,
            max_gifts_per_message: Self::DEFAULT_MAX_GIFTS_PER_MESSAGE,
            unsafe_tracebacks: true,
        }
    }
}

/// A call from the peer to one of our objects.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundCall {
    /// Answer with [`Broker::answer`] or [`Broker::fail`]; 0 means the
    /// caller wants no answer.
    pub req_id: ReqId,
    /// The clid the peer used.
    pub clid: Clid,
    /// The target object.
    pub object: ObjectId,
    /// Method name (empty for a function).
    pub method: Text,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Vec<(Text, Value)>,
}

/// What the broker reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// The peer calls one of our objects.
    Call(InboundCall),
    /// One of our calls succeeded.
    Answer {
        /// Our request.
        req_id: ReqId,
        /// The result (a `my-reference` for `getReferenceByName`).
        value: Value,
    },
    /// One of our calls failed.
    Failed {
        /// Our request.
        req_id: ReqId,
        /// Why.
        error: CallError,
    },
    /// The peer released every reference to an exported object; its clid
    /// is retired.
    Released {
        /// The retired clid.
        clid: Clid,
        /// The object.
        object: ObjectId,
    },
    /// The connection ended; flush [`Broker::poll_transmit`] (it may hold
    /// an ERROR token) and close the transport. Nothing follows.
    Closed(CloseReason),
    /// A call from the peer carrying gifts (`their-reference`s): each
    /// gift stands in the arguments as [`gift_slot`]`(i)` until the Tub
    /// has looked it up ([`fill_gifts`]). The call is registered as
    /// waiting for an answer (answer or fail it as any other).
    CallWithGifts(InboundCall, Vec<TheirReference>),
    /// One of our calls succeeded with an answer carrying gifts, standing
    /// in it as [`gift_slot`]`(i)`.
    AnswerWithGifts {
        /// Our request.
        req_id: ReqId,
        /// The result, with gift slots.
        value: Value,
        /// The gifts, by slot.
        gifts: Vec<TheirReference>,
    },
    /// The peer asked (`getReferenceByName`) for a name the [`Registry`]
    /// does not hold, and it defers unknown names
    /// ([`Registry::defers_unknown_names`]): answer with
    /// [`Broker::answer_name_lookup`] (`req_id` 0: no answer is sent).
    NameLookup {
        /// The peer's request.
        req_id: ReqId,
        /// The name asked for.
        name: Bytes,
    },
}

/// The stand-in for the `index`-th gift of a received message, until the
/// gift is looked up: a [`Value::Local`] with an id no object gets
/// (counted down from the top of the range).
pub fn gift_slot(index: usize) -> Value {
    Value::Local(ObjectId(u64::MAX - 1 - index as u64))
}

/// The gift index a [`gift_slot`] stands for.
pub fn gift_index(v: &Value, gifts: usize) -> Option<usize> {
    match v {
        Value::Local(ObjectId(id)) => {
            let i = u64::MAX.checked_sub(1)?.checked_sub(*id)?;
            usize::try_from(i).ok().filter(|i| *i < gifts)
        }
        _ => None,
    }
}

/// Replaces every [`gift_slot`] in `v` (of a message with `resolved.len()`
/// gifts) by the value its gift resolved to.
pub fn fill_gifts(v: &mut Value, resolved: &[Value]) {
    let mut todo: Vec<&mut Value> = vec![v];
    while let Some(v) = todo.pop() {
        if let Some(i) = gift_index(v, resolved.len()) {
            *v = resolved[i].clone();
            continue;
        }
        match v {
            Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
                todo.extend(i.iter_mut())
            }
            Value::Dict(p) => p.iter_mut().for_each(|(k, x)| todo.extend([k, x])),
            Value::Copyable(c) => todo.extend(c.state.iter_mut().map(|(_, x)| x)),
            Value::Anchor(_, inner) => todo.push(inner),
            _ => {}
        }
    }
}

/// What an outstanding call of ours is for.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    /// The user's call; with the target's interface and the method when
    /// we know them (the answer is then checked).
    User(Option<MethodRef>),
    Decref(Clid),
}

#[derive(Debug)]
struct Exported {
    object: ObjectId,
    /// Times sent minus counts released by `decref`.
    refcount: u64,
    interface: Bytes,
    furl: Option<Bytes>,
}

#[derive(Debug)]
struct Imported {
    /// Times received since the last `decref` we sent.
    received: u64,
    /// The handle given to the application (the broker's clone).
    handle: RemoteRef,
}

/// Our exported objects on one connection: clid allocation and counts.
#[derive(Debug)]
struct ExportTable {
    next_clid: i64,
    exports: HashMap<Clid, Exported>,
    clid_of: HashMap<(ObjectId, bool), Clid>,
}

impl ExportTable {
    fn export_as(&mut self, export: &Export, function: bool) -> WireRef {
        let key = (export.object, function);
        let clid = *self.clid_of.entry(key).or_insert_with(|| {
            let n = self.next_clid;
            self.next_clid += 1;
            if function {
                -n
            } else {
                n
            }
        });
        let e = self.exports.entry(clid).or_insert_with(|| Exported {
            object: export.object,
            refcount: 0,
            interface: export.interface.clone(),
            furl: export.furl.clone(),
        });
        e.refcount += 1;
        let first = e.refcount == 1;
        WireRef::My(MyReference {
            clid,
            interface: first.then(|| e.interface.clone()),
            furl: if first { e.furl.clone() } else { None },
        })
    }
}

/// The gifts we sent on one connection (docs/protocol.md §5.6): giftIDs
/// from 1, one entry per (connection, clid) of the gifted reference while
/// `decgift`s have not brought its count to 0. An entry holds a clone of
/// the reference, so its owner's connection does not release it.
#[derive(Debug)]
struct GiftTable {
    next_id: u64,
    by_source: HashMap<(ConnectionId, Clid), u64>,
    gifts: HashMap<u64, Gift>,
}

#[derive(Debug)]
struct Gift {
    count: u64,
    held: RemoteRef,
}

impl GiftTable {
    fn new() -> GiftTable {
        GiftTable {
            next_id: 1,
            by_source: HashMap::new(),
            gifts: HashMap::new(),
        }
    }

    fn give(&mut self, r: &RemoteRef) -> WireRef {
        let key = (r.connection(), r.clid());
        let id = match self.by_source.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.by_source.insert(key, id);
                self.gifts.insert(
                    id,
                    Gift {
                        count: 0,
                        held: r.clone(),
                    },
                );
                id
            }
        };
        if let Some(g) = self.gifts.get_mut(&id) {
            g.count += 1;
        }
        // no FURL (its owner has no location): Python sends ''
        WireRef::Their(TheirReference {
            gift_id: id,
            furl: r.furl().cloned().unwrap_or_default(),
        })
    }

    /// `decgift(giftID, count)`: `false` for an unknown giftID.
    fn release(&mut self, id: u64, count: i64) -> bool {
        let Some(g) = self.gifts.get_mut(&id) else {
            return false;
        };
        if count > 0 {
            g.count = g.count.saturating_sub(count as u64);
        } else {
            // Python's subtraction adds
            g.count = g.count.saturating_add(count.unsigned_abs());
        }
        if g.count == 0 {
            let g = self.gifts.remove(&id).expect("present");
            self.by_source.remove(&(g.held.connection(), g.held.clid()));
        }
        true
    }

    fn clear(&mut self) {
        self.gifts.clear();
        self.by_source.clear();
    }
}

/// Sends live references on one connection: our objects as
/// `my-reference`s, the peer's own objects back as `your-reference`s,
/// references from other connections as gifts (`their-reference`).
struct ConnRefs<'a> {
    exports: &'a mut ExportTable,
    gifts: &'a mut GiftTable,
    registry: &'a dyn Registry,
    connection: ConnectionId,
}

impl RefEncoder for ConnRefs<'_> {
    fn encode_ref(&mut self, v: &Value) -> Result<WireRef, EncodeError> {
        match v {
            Value::Local(object) => {
                let export = self.registry.describe(*object).unwrap_or(Export {
                    object: *object,
                    interface: Bytes::new(),
                    furl: None,
                });
                let export = Export {
                    object: *object,
                    ..export
                };
                Ok(self.exports.export_as(&export, false))
            }
            Value::Remote(r) if r.connection() == self.connection && r.clid() > 0 => {
                Ok(WireRef::Your(r.clid() as u64))
            }
            // a function going home would be a NEG your-reference, which
            // kills a Python receiver's connection: refused
            Value::Remote(r) if r.connection() != self.connection => Ok(self.gifts.give(r)),
            other => Err(EncodeError::LiveReference(other.type_name())),
        }
    }
}

/// Writes one prepared wire reference (the answer to `getReferenceByName`).
struct Prepared(Option<WireRef>);

impl RefEncoder for Prepared {
    fn encode_ref(&mut self, v: &Value) -> Result<WireRef, EncodeError> {
        self.0
            .take()
            .ok_or(EncodeError::LiveReference(v.type_name()))
    }
}

/// Turns the reference sequences of a message being decoded into live
/// references, as each closes (Python tracks them the same way): a
/// `my-reference` becomes the connection's one [`RemoteRef`] handle for its
/// clid (counted for `decref`, its FURL checked against the peer), a
/// `your-reference` the [`Value::Local`] object it names.
struct Received<'a> {
    imports: &'a mut HashMap<Clid, Imported>,
    exports: &'a ExportTable,
    config: &'a BrokerConfig,
    connection: ConnectionId,
    peer: Option<TubId>,
    /// The gifts of the message being decoded, by slot.
    gifts: &'a mut Vec<TheirReference>,
    /// The error that ends the connection, kept typed for its close
    /// reason.
    fatal: Option<ProtocolError>,
    /// Our objects' interfaces (the receiver's checks).
    objects: &'a dyn Registry,
    /// Our requests whose target's interface we know (the answer checks).
    /// (Their schemas are kept with them.)
    outstanding: &'a HashMap<ReqId, Pending>,
}

impl Received<'_> {
    fn fatal(&mut self, e: ProtocolError, offset: u64) -> DecodeError {
        let why = e.to_string();
        self.fatal = Some(e);
        DecodeError::RefusedReference {
            offset,
            why,
            fatal: true,
        }
    }
}

impl RefDecoder for Received<'_> {
    fn decode_ref(&mut self, r: WireRef, offset: u64) -> Result<Value, DecodeError> {
        match r {
            WireRef::My(r) => {
                if let (Some(furl), Some(peer)) = (&r.furl, self.peer) {
                    let text = String::from_utf8_lossy(furl);
                    match Furl::parse(&text) {
                        Ok(f) if f.tubid == peer => {}
                        _ => {
                            let e = ProtocolError::BadReferenceFurl(text.into_owned());
                            return Err(self.fatal(e, offset));
                        }
                    }
                }
                if !self.imports.contains_key(&r.clid)
                    && self.imports.len() >= self.config.max_imports
                {
                    let e = ProtocolError::TooManyImports(self.config.max_imports);
                    return Err(self.fatal(e, offset));
                }
                let connection = self.connection;
                let imp = self.imports.entry(r.clid).or_insert_with(|| Imported {
                    received: 0,
                    handle: RemoteRef::new(
                        connection,
                        r.clid,
                        r.interface.clone().unwrap_or_default(),
                        r.furl.clone(),
                    ),
                });
                imp.received += 1;
                Ok(Value::Remote(imp.handle.clone()))
            }
            WireRef::Your(clid) => i64::try_from(clid)
                .ok()
                .and_then(|c| self.exports.exports.get(&c))
                .map(|e| Value::Local(e.object))
                .ok_or_else(|| DecodeError::RefusedReference {
                    offset,
                    why: format!("unknown clid {clid} in your-reference"),
                    fatal: false,
                }),
            // the Tub looks the gift up before the message is delivered
            WireRef::Their(t) => {
                if self.gifts.len() >= self.config.max_gifts_per_message {
                    return Err(DecodeError::RefusedReference {
                        offset,
                        why: format!(
                            "more than {} gifts in one message",
                            self.config.max_gifts_per_message
                        ),
                        fatal: false,
                    });
                }
                self.gifts.push(t);
                Ok(gift_slot(self.gifts.len() - 1))
            }
        }
    }

    fn call_schema(&mut self, clid: i64) -> Option<CallTarget> {
        let object = self.exports.exports.get(&clid)?.object;
        Some(CallTarget {
            schema: self.objects.schema(object)?,
            object,
        })
    }

    fn answer_schema(&mut self, req_id: u64) -> Option<(Arc<InterfaceSchema>, usize)> {
        match self.outstanding.get(&req_id) {
            Some(Pending::User(Some(m))) => Some(m.clone()),
            _ => None,
        }
    }

    fn copyable_schema(&mut self, type_name: &str) -> Option<Arc<CopyableSchema>> {
        self.objects.copyable_schema(type_name)
    }
}

/// One PB connection's broker, sans-IO.
pub struct Broker {
    config: BrokerConfig,
    /// This connection's number in its Tub, stamped on every [`RemoteRef`]
    /// received, so a reference sent back over the same connection
    /// becomes a `your-reference`.
    connection: ConnectionId,
    /// The peer's tubid: a `my-reference` FURL naming another Tub is fatal
    /// (§5.6). `None` skips the check.
    peer: Option<TubId>,
    de: Deserializer,
    ser: Serializer,
    out: BytesMut,
    events: VecDeque<BrokerEvent>,
    next_req: ReqId,
    /// Our requests waiting for an answer (a user's call whose target's
    /// interface we know keeps it, its answer is checked against it).
    outstanding: HashMap<ReqId, Pending>,
    incoming: hashbrown::HashSet<ReqId>,
    /// Incoming calls to objects with an interface: their result is
    /// checked before it is sent (P4).
    incoming_schemas: HashMap<ReqId, (MethodRef, ObjectId)>,
    exported: ExportTable,
    imports: HashMap<Clid, Imported>,
    /// Gifts we sent on this connection.
    gifts: GiftTable,
    /// Gifts of the peer's message being decoded.
    msg_gifts: Vec<TheirReference>,
    last_rx: Instant,
    last_ping: Option<Instant>,
    closed: Option<CloseReason>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("outstanding", &self.outstanding.len())
            .field("incoming", &self.incoming.len())
            .field("exports", &self.exported.exports.len())
            .field("imports", &self.imports.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker for `connection` to `peer` (`None`: the peer's tubid is
    /// not checked), negotiated with `vocab`, started at `now`. The objects
    /// it serves are passed to each call that may need them (a
    /// [`Registry`]).
    pub fn new(
        vocab: VocabTable,
        config: BrokerConfig,
        connection: ConnectionId,
        peer: Option<TubId>,
        now: Instant,
    ) -> Broker {
        Broker {
            de: Deserializer::new(vocab, config.limits.clone()).pb_messages(),
            ser: Serializer::new(vocab),
            config,
            connection,
            peer,
            out: BytesMut::new(),
            events: VecDeque::new(),
            next_req: 1,
            outstanding: HashMap::new(),
            incoming: hashbrown::HashSet::new(),
            incoming_schemas: HashMap::new(),
            exported: ExportTable {
                next_clid: 1,
                exports: HashMap::new(),
                clid_of: HashMap::new(),
            },
            imports: HashMap::new(),
            gifts: GiftTable::new(),
            msg_gifts: Vec::new(),
            last_rx: now,
            last_ping: None,
            closed: None,
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Memory the peer's message in progress holds: its wire bytes and
    /// decoded items, plus received bytes not yet decoded
    /// ([`Deserializer::in_progress_bytes`]); 0 once closed.
    pub fn inbound_bytes(&self) -> usize {
        if self.closed.is_some() {
            0
        } else {
            self.de.in_progress_bytes()
        }
    }

    /// Ends the connection for a protocol error found outside the broker
    /// (the Tub's inbound memory budget): an ERROR token goes out as for
    /// every protocol error, outstanding calls fail, then
    /// [`BrokerEvent::Closed`].
    pub fn fail_protocol(&mut self, error: ProtocolError) {
        self.protocol_error(error);
    }

    /// Our calls still waiting for an answer.
    pub fn outstanding_calls(&self) -> usize {
        self.outstanding.len()
    }

    /// Feeds plaintext received at `now`; `objects` answers lookups and
    /// says which copyables are accepted.
    pub fn handle_plaintext(&mut self, now: Instant, data: &[u8], objects: &dyn Registry) {
        if self.closed.is_some() || data.is_empty() {
            return;
        }
        self.last_rx = now;
        self.de.feed(data);
        loop {
            let mut refs = Received {
                imports: &mut self.imports,
                exports: &self.exported,
                config: &self.config,
                connection: self.connection,
                peer: self.peer,
                gifts: &mut self.msg_gifts,
                fatal: None,
                objects,
                outstanding: &self.outstanding,
            };
            let ev = self.de.poll_pb_event_with(&mut refs);
            let fatal = refs.fatal.take();
            match ev {
                Ok(Some(ev)) => {
                    // a message ended: its gifts go with it (or with it
                    // refused, nowhere)
                    let gifts = match ev {
                        PbEvent::Ping(_) | PbEvent::Pong(_) | PbEvent::PeerError(_) => Vec::new(),
                        _ => std::mem::take(&mut self.msg_gifts),
                    };
                    if let Err(e) = self.handle_pb(ev, gifts, objects) {
                        self.protocol_error(e);
                        return;
                    }
                    if self.closed.is_some() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.protocol_error(fatal.unwrap_or_else(|| e.into()));
                    return;
                }
            }
        }
    }

    /// Bytes written (answers, PONGs, calls) and not yet taken by
    /// [`Broker::poll_transmit`].
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Appends plaintext to send to `buf`; returns how many bytes. Output
    /// of [`Broker::HAND_OVER`] bytes or more given to an empty `buf` is
    /// handed over without a copy (a large answer is not held twice);
    /// a buffer that grew past that is not kept for reuse.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        if n == 0 {
            // nothing queued: a buffer kept for the next large message
            // (`keep_output_buffer`) stays
            return 0;
        }
        if buf.is_empty() && n >= Self::HAND_OVER {
            *buf = std::mem::take(&mut self.out).into();
            return n;
        }
        buf.extend_from_slice(&self.out);
        self.out.clear();
        if self.out.capacity() > Self::HAND_OVER {
            self.out = BytesMut::new();
        }
        n
    }

    /// See [`Broker::poll_transmit`].
    pub const HAND_OVER: usize = 64 * 1024;

    /// Takes back a buffer [`Broker::poll_transmit`] handed over (emptied)
    /// to serialize the next messages into, when nothing is queued and
    /// it is larger than the one in use: a busy connection reuses a large
    /// message's memory. [`Broker::release_output_buffer`] gives it back.
    pub fn keep_output_buffer(&mut self, mut buf: Vec<u8>) {
        if self.out.is_empty() && buf.capacity() > self.out.capacity() {
            buf.clear();
            // Vec -> Bytes -> BytesMut keeps the allocation (unique)
            if let Ok(out) = bytes::Bytes::from(buf).try_into_mut() {
                self.out = out;
            }
        }
    }

    /// Gives back an output buffer larger than [`Broker::HAND_OVER`] that
    /// holds nothing (the connection went idle).
    pub fn release_output_buffer(&mut self) {
        if self.out.is_empty() && self.out.capacity() > Self::HAND_OVER {
            self.out = BytesMut::new();
        }
    }

    /// The capacity of the output buffer (tests, memory accounting).
    pub fn output_capacity(&self) -> usize {
        self.out.capacity()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// Whether [`Broker::poll_event`] has something to hand out.
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`Broker::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let ping = self.config.keepalive.map(|k| self.idle_since() + k);
        let drop = self.config.disconnect_timeout.map(|d| self.last_rx + d);
        match (ping, drop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers: PING after `keepalive` of silence (again every
    /// `keepalive` while it lasts), close after `disconnect_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if let Some(d) = self.config.disconnect_timeout {
            if now >= self.last_rx + d {
                self.shut(CloseReason::IdleTimeout);
                return;
            }
        }
        if let Some(k) = self.config.keepalive {
            if now >= self.idle_since() + k {
                put_ping_pong(&mut self.out, 0, TypeByte::Ping);
                self.last_ping = Some(now);
            }
        }
    }

    fn idle_since(&self) -> Instant {
        match self.last_ping {
            Some(p) if p > self.last_rx => p,
            _ => self.last_rx,
        }
    }

    /// Closes the connection locally: outstanding calls fail with
    /// [`CallError::ConnectionLost`], then [`BrokerEvent::Closed`].
    pub fn close(&mut self) {
        self.shut(CloseReason::Local);
    }

    /// Closes the connection to make room for another
    /// ([`CloseReason::Evicted`]); like [`Broker::close`] otherwise.
    pub fn evict(&mut self) {
        self.shut(CloseReason::Evicted);
    }

    /// Whether the connection holds nothing for either application: no
    /// reference of the peer that our application holds, none of ours the
    /// peer holds, no call either way (ours outstanding, theirs
    /// unanswered). What the broker keeps on its own does not count: a
    /// reference received in a message the application never saw (a
    /// peer can put one in the arguments of a call to our broker without
    /// any FURL) and the `decref` of one, which a silent peer never
    /// answers.
    pub fn is_unused(&self) -> bool {
        self.closed.is_none()
            && self.exported.exports.is_empty()
            && self.incoming.is_empty()
            && self.imports.values().all(|i| i.handle.handle_count() == 1)
            && self
                .outstanding
                .values()
                .all(|p| !matches!(p, Pending::User(_)))
    }

    /// The transport ended (EOF, TLS close, socket error).
    pub fn connection_lost(&mut self) {
        self.shut(CloseReason::Lost);
    }

    // ---- our calls ----

    /// Calls `method` on the peer's object `clid` (0 for its broker);
    /// keyword arguments are sent in sorted name order. The answer arrives
    /// as [`BrokerEvent::Answer`] or [`BrokerEvent::Failed`] with the
    /// returned reqID.
    pub fn call(
        &mut self,
        clid: Clid,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        objects: &dyn Registry,
    ) -> Result<ReqId, BrokerError> {
        self.call_checked(clid, method, args, kwargs, objects, None)
    }

    /// [`Broker::call`] to a target whose RemoteInterface we know
    /// (`schema`, from the name its `my-reference` announced): the
    /// arguments are checked first, as Python's caller checks them, and a
    /// Violation sends nothing but uses up the reqID; the answer is then
    /// checked token by token against the method's result constraint
    /// (docs/protocol.md §6.5).
    pub fn call_checked(
        &mut self,
        clid: Clid,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        objects: &dyn Registry,
        schema: Option<&Arc<InterfaceSchema>>,
    ) -> Result<ReqId, BrokerError> {
        self.check_target(clid, args)?;
        let req = self.next_req;
        let checked = match schema {
            Some(iface) if clid > 0 => {
                match self.check_outbound(iface, clid, method, args, kwargs, objects) {
                    Ok(m) => m,
                    Err(v) => {
                        self.next_req += 1;
                        return Err(BrokerError::Violation(v));
                    }
                }
            }
            _ => None,
        };
        self.write_call(req, clid, method, args, kwargs, objects)?;
        self.next_req += 1;
        self.outstanding.insert(req, Pending::User(checked));
        Ok(req)
    }

    /// Python's caller-side checks of a call to an object announced with
    /// interface `iface`; gives the method for the answer check.
    fn check_outbound(
        &self,
        iface: &Arc<InterfaceSchema>,
        clid: Clid,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        objects: &dyn Registry,
    ) -> Result<Option<MethodRef>, Violation> {
        let Some(index) = iface.methods().iter().position(|m| m.name() == method) else {
            let furl = self
                .imports
                .get(&clid)
                .and_then(|i| {
                    i.handle
                        .furl()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                })
                .unwrap_or_default();
            return Err(Violation::new(format!(
                "{}(<RemoteReference at clid {clid} [{furl}]>) does not offer {method}",
                iface.name()
            )));
        };
        let local = |o: ObjectId| {
            objects
                .describe(o)
                .map(|e| String::from_utf8_lossy(&e.interface).into_owned())
        };
        let m = &iface.methods()[index];
        check_call(iface, m, args, kwargs, Direction::Outbound, &local)?;
        Ok((!m.is_unconstrained()).then(|| (iface.clone(), index)))
    }

    /// Python's `callRemoteOnly`: a call with reqID 0, never answered.
    pub fn call_only(
        &mut self,
        clid: Clid,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        objects: &dyn Registry,
    ) -> Result<(), BrokerError> {
        self.call_only_checked(clid, method, args, kwargs, objects, None)
    }

    /// [`Broker::call_only`] to a target whose RemoteInterface we know:
    /// the arguments are checked first, as for [`Broker::call_checked`]
    /// (Python's `callRemoteOnly` checks them too and drops the call
    /// silently; we return the Violation).
    pub fn call_only_checked(
        &mut self,
        clid: Clid,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        objects: &dyn Registry,
        schema: Option<&Arc<InterfaceSchema>>,
    ) -> Result<(), BrokerError> {
        self.check_target(clid, args)?;
        if let Some(iface) = schema.filter(|_| clid > 0) {
            self.check_outbound(iface, clid, method, args, kwargs, objects)?;
        }
        self.write_call(0, clid, method, args, kwargs, objects)
    }

    /// Asks the peer's broker for the object published as `name` (a FURL's
    /// swissnum). The answer is a `my-reference`; its clid is then
    /// callable.
    pub fn get_reference_by_name(&mut self, name: &[u8]) -> Result<ReqId, BrokerError> {
        self.call(
            0,
            "getReferenceByName",
            &[],
            &[(Text::from("name"), Value::bytes(name))],
            &NoObjects,
        )
    }

    /// Releases every reference to `clid` received so far: sends
    /// `decref(clid, count)` with the count received (§6.2). The clid is
    /// forgotten once the peer acknowledges, unless it was received again
    /// meanwhile. `None` when nothing is held.
    pub fn release(&mut self, clid: Clid) -> Result<Option<ReqId>, BrokerError> {
        let Some(imp) = self.imports.get_mut(&clid) else {
            return Ok(None);
        };
        if imp.received == 0 {
            return Ok(None);
        }
        let count = std::mem::take(&mut imp.received);
        let req = self.next_req;
        let kwargs = [
            (Text::from("clid"), Value::int(clid)),
            (Text::from("count"), Value::Int(count.into())),
        ];
        if let Err(e) = self.write_call(req, 0, "decref", &[], &kwargs, &NoObjects) {
            if let Some(imp) = self.imports.get_mut(&clid) {
                imp.received = count;
            }
            return Err(e);
        }
        self.next_req += 1;
        self.outstanding.insert(req, Pending::Decref(clid));
        Ok(Some(req))
    }

    fn check_target(&self, clid: Clid, args: &[Value]) -> Result<(), BrokerError> {
        if self.closed.is_some() {
            return Err(BrokerError::Closed);
        }
        // a released clid may be retired by the peer any moment now
        if clid != 0 && self.imports.get(&clid).is_none_or(|i| i.received == 0) {
            return Err(BrokerError::UnknownClid(clid));
        }
        if clid < 0 && !args.is_empty() {
            return Err(BrokerError::PositionalToFunction);
        }
        Ok(())
    }

    fn write_call(
        &mut self,
        req: ReqId,
        clid: Clid,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        objects: &dyn Registry,
    ) -> Result<(), BrokerError> {
        if self.closed.is_some() {
            return Err(BrokerError::Closed);
        }
        let method = if clid < 0 { "" } else { method };
        let mut refs = ConnRefs {
            exports: &mut self.exported,
            gifts: &mut self.gifts,
            registry: objects,
            connection: self.connection,
        };
        self.ser.write_call_with(
            &mut self.out,
            req,
            clid,
            method.as_bytes(),
            args,
            kwargs,
            &mut refs,
        )?;
        Ok(())
    }

    // ---- their calls ----

    /// Whether `object` is exported on this connection (the peer may still
    /// call it).
    pub fn exports_object(&self, object: ObjectId) -> bool {
        self.exported.clid_of.contains_key(&(object, false))
            || self.exported.clid_of.contains_key(&(object, true))
    }

    /// The objects exported on this connection.
    pub fn exported_objects(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.exported.exports.values().map(|e| e.object)
    }

    /// Releases every received reference whose handles the application has
    /// all dropped (only the broker's own clone is left): sends `decref`
    /// for each, as Python does when a RemoteReference is collected.
    /// Returns how many were released.
    pub fn release_dropped(&mut self) -> usize {
        if self.closed.is_some() {
            return 0;
        }
        let dropped: Vec<Clid> = self
            .imports
            .iter()
            .filter(|(_, i)| i.received > 0 && i.handle.handle_count() == 1)
            .map(|(c, _)| *c)
            .collect();
        let mut n = 0;
        for clid in dropped {
            if let Ok(Some(_)) = self.release(clid) {
                n += 1;
            }
        }
        n
    }

    /// References received from the peer and not yet released.
    pub fn imported_count(&self) -> usize {
        self.imports.len()
    }

    /// Gifts we sent on this connection that the peer has not
    /// acknowledged (`decgift`) yet: each holds its reference.
    pub fn gifts_held(&self) -> usize {
        self.gifts.gifts.len()
    }

    /// Acknowledges a received gift once it was looked up, success or
    /// failure: `decgift(count=1, giftID)` with reqID 0, as Python does
    /// (nothing for giftID 0).
    pub fn decgift(&mut self, gift_id: u64) -> Result<(), BrokerError> {
        if gift_id == 0 {
            return Ok(());
        }
        let kwargs = [
            (Text::from("count"), Value::int(1)),
            (Text::from("giftID"), Value::Int(gift_id.into())),
        ];
        self.write_call(0, 0, "decgift", &[], &kwargs, &NoObjects)
    }

    /// Answers incoming call `req_id` with `value`. On an encoding error
    /// nothing is sent and the call still waits (fail it instead). When
    /// the object declares an interface the value is checked against the
    /// method's result constraint first (P4); a Violation is sent to the
    /// caller instead and returned.
    pub fn answer(
        &mut self,
        req_id: ReqId,
        value: &Value,
        objects: &dyn Registry,
    ) -> Result<(), BrokerError> {
        if req_id == 0 {
            return Ok(());
        }
        self.take_incoming(req_id)?;
        if let Some(((iface, index), object)) = self.incoming_schemas.remove(&req_id) {
            if let Some(m) = iface.methods().get(index) {
                let local = |o: ObjectId| {
                    objects
                        .describe(o)
                        .map(|e| String::from_utf8_lossy(&e.interface).into_owned())
                };
                if let Err(v) = check_result(m, value, Direction::Outbound, &local) {
                    let v = v.at(format!(
                        "in return value of {}.{}",
                        describe_object(object),
                        m.name()
                    ));
                    self.send_error(
                        req_id,
                        &Failure::new("foolscap.tokens.Violation", v.to_string()),
                    );
                    return Err(BrokerError::Violation(v));
                }
            }
        }
        let mut refs = ConnRefs {
            exports: &mut self.exported,
            gifts: &mut self.gifts,
            registry: objects,
            connection: self.connection,
        };
        if let Err(e) = self
            .ser
            .write_answer_with(&mut self.out, req_id, value, &mut refs)
        {
            self.incoming.insert(req_id);
            return Err(e.into());
        }
        Ok(())
    }

    /// Fails incoming call `req_id` with a remote exception.
    pub fn fail(&mut self, req_id: ReqId, failure: &Failure) -> Result<(), BrokerError> {
        if req_id == 0 {
            return Ok(());
        }
        self.take_incoming(req_id)?;
        self.incoming_schemas.remove(&req_id);
        self.send_error(req_id, failure);
        Ok(())
    }

    fn take_incoming(&mut self, req_id: ReqId) -> Result<(), BrokerError> {
        if self.closed.is_some() {
            return Err(BrokerError::Closed);
        }
        if !self.incoming.remove(&req_id) {
            return Err(BrokerError::UnknownRequest(req_id));
        }
        Ok(())
    }

    fn send_error(&mut self, req_id: ReqId, failure: &Failure) {
        if req_id == 0 || self.closed.is_some() {
            return;
        }
        let value = if self.config.unsafe_tracebacks {
            failure.to_value()
        } else {
            Failure {
                traceback: NO_TRACEBACK.into(),
                ..failure.clone()
            }
            .to_value()
        };
        self.ser
            .write_error(&mut self.out, req_id, &value)
            .expect("a Failure copyable always serializes");
    }

    /// Answers a `getReferenceByName` with a reference to `export`.
    fn send_reference(&mut self, req_id: ReqId, export: &Export) {
        if req_id == 0 || self.closed.is_some() {
            return;
        }
        let wire = self.exported.export_as(export, false);
        self.ser
            .write_answer_with(
                &mut self.out,
                req_id,
                &Value::Local(export.object),
                &mut Prepared(Some(wire)),
            )
            .expect("a my-reference always serializes");
    }

    /// Answers the peer's `getReferenceByName` reported as a
    /// [`BrokerEvent::NameLookup`]: the object found (`Some`), Python's
    /// `KeyError` for an unknown name (`None`, as if the registry had been
    /// asked alone), or the application's failure. Nothing is sent for a
    /// `req_id` of 0 or once the connection is closed.
    pub fn answer_name_lookup(
        &mut self,
        req_id: ReqId,
        name: &[u8],
        result: Result<Option<Export>, Failure>,
    ) {
        match result {
            Ok(Some(export)) => self.send_reference(req_id, &export),
            Ok(None) => self.send_error(req_id, &unknown_name(name)),
            Err(f) => self.send_error(req_id, &f),
        }
    }

    fn send_answer(&mut self, req_id: ReqId, value: &Value) {
        if req_id == 0 {
            return;
        }
        self.ser
            .write_answer(&mut self.out, req_id, value)
            .expect("broker answers always serialize");
    }

    // ---- receiving ----

    fn handle_pb(
        &mut self,
        ev: PbEvent,
        gifts: Vec<TheirReference>,
        objects: &dyn Registry,
    ) -> Result<(), ProtocolError> {
        match ev {
            PbEvent::Call(call) => self.incoming_call(call, gifts, objects)?,
            PbEvent::Answer { req_id, value } => match self.take_outstanding(req_id) {
                None => {} // not waiting: Python discards it
                Some(Pending::Decref(clid)) => self.decref_done(clid),
                Some(Pending::User(_)) => {
                    match Self::check_copyables(std::iter::once(&value), objects) {
                        Ok(()) if !gifts.is_empty() => {
                            self.events.push_back(BrokerEvent::AnswerWithGifts {
                                req_id,
                                value,
                                gifts,
                            })
                        }
                        Ok(()) => self.events.push_back(BrokerEvent::Answer { req_id, value }),
                        Err(why) => self.events.push_back(BrokerEvent::Failed {
                            req_id,
                            error: CallError::Violation(why),
                        }),
                    }
                }
            },
            PbEvent::Error { req_id, failure } => {
                let Some(pending) = self.take_outstanding(req_id) else {
                    return Ok(());
                };
                let error = match Failure::from_value(&failure) {
                    Ok(f) => CallError::Remote(f),
                    Err(e) if e.is_fatal() => {
                        // fails with the connection, like every other call
                        self.outstanding.insert(req_id, pending);
                        return Err(ProtocolError::Failure(e));
                    }
                    Err(e) => CallError::Violation(e.to_string()),
                };
                match pending {
                    Pending::Decref(clid) => self.decref_done(clid),
                    Pending::User(_) => {
                        self.events.push_back(BrokerEvent::Failed { req_id, error })
                    }
                }
            }
            PbEvent::CallViolation { req_id, error } => {
                let failure = match &error {
                    DecodeError::Violation { violation, .. } => {
                        Failure::new("foolscap.tokens.Violation", violation.to_string())
                    }
                    _ => Failure::violation(req_id, &error.to_string()),
                };
                self.send_error(req_id, &failure);
            }
            PbEvent::AnswerViolation { req_id, error } => match self.take_outstanding(req_id) {
                Some(Pending::User(_)) => self.events.push_back(BrokerEvent::Failed {
                    req_id,
                    error: CallError::Violation(error.to_string()),
                }),
                Some(Pending::Decref(clid)) => self.decref_done(clid),
                None => {}
            },
            PbEvent::Discarded(_) | PbEvent::Pong(_) => {}
            PbEvent::Ping(n) => put_ping_pong(&mut self.out, n, TypeByte::Pong),
            PbEvent::PeerError(msg) => self.shut(CloseReason::PeerError(msg)),
        }
        Ok(())
    }

    /// Our request `req_id` is answered (or failed): no longer waited for.
    fn take_outstanding(&mut self, req_id: ReqId) -> Option<Pending> {
        self.outstanding.remove(&req_id)
    }

    fn incoming_call(
        &mut self,
        call: IncomingCall,
        gifts: Vec<TheirReference>,
        objects: &dyn Registry,
    ) -> Result<(), ProtocolError> {
        let req = call.req_id;
        if req != 0 && self.incoming.contains(&req) {
            return Err(ProtocolError::DuplicateReqId(req));
        }
        if call.clid == 0 {
            return self.broker_call(call, objects);
        }
        let Some(object) = self.exported.exports.get(&call.clid).map(|e| e.object) else {
            self.send_error(
                req,
                &Failure::violation(req, &format!("unknown CLID {}", call.clid)),
            );
            return Ok(());
        };
        let values = call.args.iter().chain(call.kwargs.iter().map(|(_, v)| v));
        if let Err(why) = Self::check_copyables(values, objects) {
            self.send_error(req, &Failure::violation(req, &why));
            return Ok(());
        }
        if req != 0 {
            if self.incoming.len() >= self.config.max_incoming_calls {
                let why = format!(
                    "more than {} calls waiting for an answer",
                    self.config.max_incoming_calls
                );
                self.send_error(req, &Failure::violation(req, &why));
                return Ok(());
            }
            self.incoming.insert(req);
            if let Some(schema) = objects.schema(object) {
                let name = call.method.as_str();
                // a method the interface lacks is not checked
                if let Some(index) = schema.methods().iter().position(|m| m.name() == name) {
                    self.incoming_schemas.insert(req, ((schema, index), object));
                }
            }
        }
        let inbound = InboundCall {
            req_id: req,
            clid: call.clid,
            object,
            method: call.method,
            args: call.args,
            kwargs: call.kwargs,
        };
        self.events.push_back(if gifts.is_empty() {
            BrokerEvent::Call(inbound)
        } else {
            BrokerEvent::CallWithGifts(inbound, gifts)
        });
        Ok(())
    }

    /// The clid-0 broker object (§5.8).
    fn broker_call(
        &mut self,
        call: IncomingCall,
        objects: &dyn Registry,
    ) -> Result<(), ProtocolError> {
        let req = call.req_id;
        let arg = |name: &str, pos: usize| -> Option<&Value> {
            call.kwargs
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v)
                .or_else(|| call.args.get(pos))
        };
        let given = call.args.len() + call.kwargs.len();
        match call.method.as_str() {
            "getReferenceByName" => {
                let Some(Value::Bytes(name)) = arg("name", 0).map(Value::unanchored) else {
                    let why = "getReferenceByName needs name= bytes";
                    self.send_error(req, &Failure::violation(req, why));
                    return Ok(());
                };
                if given != 1 {
                    self.send_error(req, &Failure::violation(req, "unexpected arguments"));
                    return Ok(());
                }
                match objects.lookup(name) {
                    Some(export) => self.send_reference(req, &export),
                    None if objects.defers_unknown_names() => {
                        self.events.push_back(BrokerEvent::NameLookup {
                            req_id: req,
                            name: name.clone(),
                        });
                    }
                    None => self.send_error(req, &unknown_name(name)),
                }
            }
            "decref" => {
                let (Some(clid), Some(count)) = (
                    arg("clid", 0).and_then(Value::as_i64),
                    arg("count", 1).and_then(Value::as_i64),
                ) else {
                    let why = "decref needs clid= and count= ints";
                    self.send_error(req, &Failure::violation(req, why));
                    return Ok(());
                };
                match self.decref(clid, count) {
                    Ok(()) => self.send_answer(req, &Value::None),
                    Err(f) => self.send_error(req, &f),
                }
            }
            "decgift" => {
                let (Some(gift), Some(count)) = (
                    arg("giftID", 0).and_then(Value::as_i64),
                    arg("count", 1).and_then(Value::as_i64),
                ) else {
                    let why = "decgift needs giftID= and count= ints";
                    self.send_error(req, &Failure::violation(req, why));
                    return Ok(());
                };
                let known = u64::try_from(gift).is_ok_and(|g| self.gifts.release(g, count));
                if known {
                    self.send_answer(req, &Value::None);
                } else {
                    // Python's table lookup raises (nothing is sent for
                    // reqID 0, the usual case)
                    self.send_error(req, &Failure::new("builtins.KeyError", gift.to_string()));
                }
            }
            other => {
                let f = Failure::no_such_method("Broker", other);
                self.send_error(req, &f);
            }
        }
        Ok(())
    }

    /// `remote_decref`: Python asserts `clid != 0` and `refcount >= count`
    /// (an AssertionError answer); an unknown clid is ignored.
    fn decref(&mut self, clid: Clid, count: i64) -> Result<(), Failure> {
        if clid == 0 {
            return Err(Failure::new("builtins.AssertionError", ""));
        }
        let Some(e) = self.exported.exports.get_mut(&clid) else {
            return Ok(());
        };
        if count < 0 {
            // Python's assertion holds and the subtraction adds
            e.refcount = e.refcount.saturating_add(count.unsigned_abs());
            return Ok(());
        }
        if e.refcount < count as u64 {
            return Err(Failure::new(
                "builtins.AssertionError",
                format!("decref({count}) but refcount was {}", e.refcount),
            ));
        }
        e.refcount -= count as u64;
        if e.refcount == 0 {
            let object = e.object;
            self.exported.exports.remove(&clid);
            self.exported.clid_of.remove(&(object, clid < 0));
            self.events
                .push_back(BrokerEvent::Released { clid, object });
        }
        Ok(())
    }

    /// The peer acknowledged our `decref`: forget the clid unless it was
    /// received again meanwhile.
    fn decref_done(&mut self, clid: Clid) {
        if self.imports.get(&clid).is_some_and(|i| i.received == 0) {
            self.imports.remove(&clid);
        }
    }

    /// Checks the copyables in received values against the accepted
    /// RemoteCopy names; `Err(why)` is a Violation. (References were
    /// resolved while the message was decoded: [`Received`].)
    ///
    /// The values are walked last first, depth first (the order decides
    /// which name a Violation reports); a value with nothing inside needs
    /// no stack, so plain arguments and answers allocate nothing.
    fn check_copyables<'a>(
        values: impl DoubleEndedIterator<Item = &'a Value>,
        objects: &dyn Registry,
    ) -> Result<(), String> {
        let mut todo: Vec<&Value> = Vec::new();
        for top in values.rev() {
            if !matches!(
                top,
                Value::List(_)
                    | Value::Tuple(_)
                    | Value::Set(_)
                    | Value::FrozenSet(_)
                    | Value::Dict(_)
                    | Value::Copyable(_)
                    | Value::Anchor(..)
            ) {
                continue;
            }
            todo.push(top);
            while let Some(v) = todo.pop() {
                match v {
                    Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
                        todo.extend(i)
                    }
                    Value::Dict(p) => p.iter().for_each(|(k, x)| todo.extend([k, x])),
                    Value::Copyable(c) => {
                        let name = c.type_name.as_str();
                        if name != FAILURE_TYPE && !objects.accepts_copyable(name) {
                            return Err(format!("unknown RemoteCopy name '{name}'"));
                        }
                        todo.extend(c.state.iter().map(|(_, x)| x))
                    }
                    Value::Anchor(_, inner) => todo.push(inner),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn protocol_error(&mut self, e: ProtocolError) {
        if self.closed.is_some() {
            return;
        }
        const INTERNAL: &str = "exception while processing data, more information in the logfiles";
        let text = match &e {
            ProtocolError::Decode(d) => match d.python_banana_text() {
                Some(why) => format!("BananaError(in <RootUnslicer>): ({},)", str_repr(&why)),
                None => INTERNAL.into(),
            },
            _ => INTERNAL.into(),
        };
        put_error(&mut self.out, text.as_bytes());
        self.shut(CloseReason::Protocol(e));
    }

    fn shut(&mut self, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason.clone());
        let mut reqs: Vec<(ReqId, Pending)> = self.outstanding.drain().collect();
        reqs.sort_unstable_by_key(|(r, _)| *r);
        for (req_id, pending) in reqs {
            if matches!(pending, Pending::User(_)) {
                self.events.push_back(BrokerEvent::Failed {
                    req_id,
                    error: CallError::ConnectionLost(reason.clone()),
                });
            }
        }
        self.incoming.clear();
        self.incoming_schemas.clear();
        self.exported.exports.clear();
        self.exported.clid_of.clear();
        self.imports.clear();
        self.gifts.clear();
        self.msg_gifts.clear();
        self.events.push_back(BrokerEvent::Closed(reason));
    }
}

/// Python's failure for a name no one holds (its `KeyError`, naming only
/// the name's first two characters).
fn unknown_name(name: &[u8]) -> Failure {
    let hint: String = String::from_utf8_lossy(name).chars().take(2).collect();
    let msg = format!("unable to find reference for name starting with '{hint}'");
    let mut f = Failure::new("builtins.KeyError", str_repr(&msg));
    // Python's tools print a remote failure as its traceback alone
    // (flappclient, for one): the last line names the exception, as
    // Python's does
    f.traceback = format!(
        "Traceback (most recent call last):\n  File \"foolscap-rs\", in getReferenceByName\nbuiltins.KeyError: {}\n",
        f.value
    );
    f
}

#[cfg(test)]
mod tests;
