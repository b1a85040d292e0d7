//! A Tub, sans-IO: every connection of one identity, its published objects
//! and its references, behind one state machine (docs/protocol.md
//! §2, 3.8, 5.8, 6).
//!
//! A [`Tub`] owns a [`Negotiation`] then a [`Session`] and a [`Broker`]
//! per connection, the Tub-level [`ConnectionTable`], and the table of
//! local objects the peers may reach. It is driven with one vocabulary,
//! the same at every layer: inputs are `handle_*` calls that take the
//! time, outputs are drained with `poll_*`.
//!
//! * Input: [`Tub::accept`] for an accepted socket, [`Tub::dial_connected`]
//!   / [`Tub::dial_failed`] for an outbound one, [`Tub::handle_input`] for
//!   received bytes, [`Tub::handle_eof`] for EOF and socket errors,
//!   [`Tub::handle_timeout`] when [`Tub::poll_timeout`] is due, and
//!   [`Tub::set_backlog`] for the bytes the transport still holds unsent.
//! * Output, three drains, by who consumes it: [`Tub::poll_transmit`]
//!   (bytes per connection), [`Tub::poll_transport`] (dial a hint, close a
//!   socket after its last bytes: [`Transport`]) and [`Tub::poll_event`]
//!   (what the application sees: [`TubEvent`]). Drain `poll_transmit`
//!   before `poll_transport`, so a [`Transport::Close`] follows its
//!   connection's last bytes.
//!
//! The application side: [`Tub::register`] publishes an object under a
//! swissnum and returns its FURL; [`Tub::get_reference`] turns a FURL into
//! a reference (reusing the one connection per remote Tub, dialling its
//! hints in order otherwise); [`Tub::call`] calls a reference;
//! incoming calls arrive as [`TubEvent::Call`] and are answered, at once
//! or later, with [`Tub::answer`].
//!
//! Flow control lives here too: calls from a peer are handed out at most
//! [`TubConfig::calls_per_round`] per connection between two `None`s of
//! `poll_event`, and none while the connection's unsent output is over
//! [`TubConfig::max_buffered_output`]; the rest wait in order.
//! [`Tub::wants_input`] tells the driver when to stop reading a socket.
//!
//! A driver's run loop, compiled and run here with no network at all: a
//! lookup of one of our own FURLs is answered with the object itself.
//!
//! ```
//! use std::time::Instant;
//! use foolscap_core::furl::Hint;
//! use foolscap_core::identity::Identity;
//! use foolscap_core::rng::SeededRng;
//! use foolscap_core::tub::{Transport, Tub, TubConfig, TubEvent};
//! use foolscap_core::value::Value;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::generate()?;
//! let mut now = Instant::now(); // the driver reads the clock, never the core
//! let mut tub = Tub::new(&identity, TubConfig::default(), Box::new(SeededRng::new(1)), now)?;
//! tub.set_location(vec![Hint::parse("tcp:127.0.0.1:5000")]);
//! let object = tub.new_object("");
//! let furl = tub.register(object, Some("calc"))?;
//! let lookup = tub.get_reference(&furl);
//! let mut buf = Vec::new();
//! let mut found = None;
//! // one turn of a driver's loop: bytes, then transport, then events
//! while let Some(conn) = tub.poll_transmit(&mut buf) {
//!     // write `buf` to `conn`'s socket, then report what it holds back
//!     tub.set_backlog(conn, 0);
//! }
//! while let Some(cmd) = tub.poll_transport() {
//!     match cmd {
//!         Transport::Dial { .. } => { /* connect, then dial_connected or dial_failed */ }
//!         Transport::Close(_conn) => { /* close the socket */ }
//!         _ => {}
//!     }
//! }
//! while let Some(event) = tub.poll_event() {
//!     match event {
//!         TubEvent::Reference { lookup: l, result } if l == lookup => found = Some(result?),
//!         TubEvent::Call(call) => tub.answer(call.id, Ok(Value::None))?,
//!         _ => {}
//!     }
//! }
//! assert_eq!(found, Some(Value::Local(object)));
//! // then sleep until a socket is ready or the next deadline
//! if let Some(deadline) = tub.poll_timeout() {
//!     now = deadline;
//!     tub.handle_timeout(now);
//! }
//! # Ok(()) }
//! ```

mod error;

// hashbrown's seeded foldhash, not SipHash: these maps are looked up
// several times per call (issue 16); their keys are our own ids or bounded
// by the broker's limits.
use hashbrown::{HashMap, HashSet};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::{
    fill_gifts, Broker, BrokerConfig, BrokerError, BrokerEvent, CallError, CloseReason, Export,
    Failure, ObjectId, ProtocolError, Registry, ReqId,
};
use crate::furl::{new_swissnum, Furl, Hint};
pub use crate::id::{CallId, DialId, IncomingId, LookupId};
use crate::identity::{Identity, TubId};
use crate::negotiation::{
    ConnectionId, ConnectionTable, Negotiation, NegotiationConfig, NegotiationError,
    NegotiationEvent, RecorderHandle, Session, TlsContext,
};
use crate::rng::Rng;
use crate::schema::{CopyableSchema, InterfaceSchema};
use crate::value::pyrepr::str_repr;
use crate::value::{RemoteRef, Text, TheirReference, Value};

/// Output buffers (plaintext scratch, a connection's TLS bytes) that grew
/// past this are given back once emptied, not kept for reuse: a large
/// answer or a burst of PONGs leaves no buffers of its size behind.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The list [`Tub`] drains a broker's events into is kept for the next
/// drain while it holds at most this many (a few KiB per Tub, not per
/// connection): a busy connection's batches of calls allocate nothing.
const KEEP_DRAINED: usize = 64;

/// A large message's serializer buffer stays with its connection for the
/// next large message while the connection is busy, and is given back
/// once it has sent no large message for this long: a busy connection
/// does not take fresh memory (and page faults) for every large message,
/// an idle one keeps no buffer of a large message's size.
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

pub use error::{DialError, DialFailure, TransportError, TubError};

/// Tub settings. Start from [`TubConfig::default`] and set the fields
/// you need.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TubConfig {
    /// Negotiation parameters (timeout, block size, vocab tables).
    pub negotiation: NegotiationConfig,
    /// Broker parameters for every connection (keepalive, limits).
    pub broker: BrokerConfig,
    /// How often received references that the application dropped are
    /// released (`decref`). Default: 1 s.
    pub release_interval: Duration,
    /// Most accepted connections still negotiating (not authenticated
    /// yet). At the limit [`Tub::accept`] evicts the oldest of them (it
    /// fails with [`NegotiationError::Evicted`] and its socket is closed)
    /// instead of refusing the new one; above half of it, inbound
    /// negotiations get [`NegotiationConfig::timeout_under_pressure`]
    /// instead of [`NegotiationConfig::timeout`]. 0 refuses every
    /// accepted socket ([`TubError::TooManyConnections`]). Default: 10,000.
    pub max_negotiating_connections: usize,
    /// Most established (negotiated) connections, either direction. A
    /// connection negotiated at the cap evicts the established one idle
    /// the longest among those that hold no reference and no call for
    /// either application ([`Broker::is_unused`]: what only the broker
    /// holds does not count) and is closed ([`CloseReason::Evicted`]);
    /// if every one holds
    /// something, the new one is closed instead
    /// ([`NegotiationError::TooManyConnections`]). Default: 10,000.
    pub max_established_connections: usize,
    /// Sees every connection's application bytes (plaintext phase and
    /// decrypted TLS data), for transcripts. Default: none (nothing is
    /// copied).
    pub recorder: Option<RecorderHandle>,
    /// Unsent bytes of one connection (what the transport holds, reported
    /// with [`Tub::set_backlog`]) above which none of its peer's calls
    /// are handed out and [`Tub::wants_input`] is false: a peer that does
    /// not read cannot make us build answers. Default: 1 MiB.
    pub max_buffered_output: usize,
    /// Calls from one connection handed out per round (between two
    /// `None`s of [`Tub::poll_event`]) while its output is under
    /// `max_buffered_output`, so one round's answers pass the bound by at
    /// most this many answers. Default: 16 (at least 1 is used).
    pub calls_per_round: usize,
    /// Calls from one connection handed out and not answered yet above
    /// which [`Tub::wants_input`] is false (name lookups waiting for
    /// [`Tub::answer_name_lookup`] count as calls). Default: 10,000.
    pub max_unanswered_calls: usize,
    /// Memory budget of the messages in progress over all connections
    /// (each one's as [`Broker::inbound_bytes`] counts it: wire bytes, a
    /// `Value` per decoded item or 8 bytes per int of a run held packed,
    /// and undecoded bytes). Over it, [`Tub::wants_input`] turns false for the
    /// connections holding the most, one more at each input; once every
    /// connection with a message in progress is paused and the sum is
    /// still over, the one holding the largest is dropped with
    /// [`ProtocolError::TubInboundBudget`]. At least
    /// [`crate::value::Limits::max_message_bytes`], so that any message
    /// those limits accept can complete alone. Default: 640 MiB.
    pub max_inbound_bytes: usize,
    /// Memory budget of one connection's message in progress (counted as
    /// for `max_inbound_bytes`); a connection over it is dropped with
    /// [`ProtocolError::ConnectionInboundBudget`]. Default: 640 MiB.
    pub max_connection_inbound_bytes: usize,
    /// Follow gifts (`their-reference`s) received from peers (Python's
    /// `accept-gifts` option). Off: a call carrying one fails with
    /// Python's Violation `gifts are prohibited in this Tub`, nothing is
    /// looked up and no `decgift` is sent. Default: on.
    pub accept_gifts: bool,
    /// Longest a received message waits for its gifts to be looked up;
    /// a gift still unresolved then fails as Python's connection timeout
    /// does (`foolscap.tokens.NegotiationError`, `no connection
    /// established within client timeout`). Default: 120 s (Python's
    /// client connection timeout).
    pub gift_timeout: Duration,
    /// Most gifts being looked up at once over all connections; a gift
    /// beyond it fails at once (a `foolscap.tokens.Violation`), so a
    /// flood of gifts holds no more. Default: 10,000.
    pub max_pending_gifts: usize,
    /// Calls from one connection queued behind a call that waits for its
    /// gifts (Python delivers them in order, after it); above it
    /// [`Tub::wants_input`] is false for that connection. Default: 1,000.
    pub max_calls_behind_gifts: usize,
}

impl TubConfig {
    /// Default `max_negotiating_connections`.
    pub const DEFAULT_MAX_NEGOTIATING_CONNECTIONS: usize = 10_000;
    /// Default `max_established_connections`.
    pub const DEFAULT_MAX_ESTABLISHED_CONNECTIONS: usize = 10_000;
    /// Default `max_buffered_output`.
    pub const DEFAULT_MAX_BUFFERED_OUTPUT: usize = 1 << 20;
    /// Default `calls_per_round`.
    pub const DEFAULT_CALLS_PER_ROUND: usize = 16;
    /// Default `max_unanswered_calls`.
    pub const DEFAULT_MAX_UNANSWERED_CALLS: usize = 10_000;
    /// Default `max_inbound_bytes`.
    pub const DEFAULT_MAX_INBOUND_BYTES: usize = 640 << 20;
    /// Default `max_connection_inbound_bytes`.
    pub const DEFAULT_MAX_CONNECTION_INBOUND_BYTES: usize = 640 << 20;
    /// Default `gift_timeout`.
    pub const DEFAULT_GIFT_TIMEOUT: Duration = Duration::from_secs(120);
    /// Default `max_pending_gifts`.
    pub const DEFAULT_MAX_PENDING_GIFTS: usize = 10_000;
    /// Default `max_calls_behind_gifts`.
    pub const DEFAULT_MAX_CALLS_BEHIND_GIFTS: usize = 1_000;

    /// These settings with `recorder` as the transcript tap.
    pub fn with_recorder(mut self, recorder: RecorderHandle) -> TubConfig {
        self.recorder = Some(recorder);
        self
    }
}

impl Default for TubConfig {
    fn default() -> Self {
        TubConfig {
            negotiation: NegotiationConfig::default(),
            broker: BrokerConfig::default(),
            release_interval: Duration::from_secs(1),
            max_negotiating_connections: Self::DEFAULT_MAX_NEGOTIATING_CONNECTIONS,
            max_established_connections: Self::DEFAULT_MAX_ESTABLISHED_CONNECTIONS,
            recorder: None,
            max_buffered_output: Self::DEFAULT_MAX_BUFFERED_OUTPUT,
            calls_per_round: Self::DEFAULT_CALLS_PER_ROUND,
            max_unanswered_calls: Self::DEFAULT_MAX_UNANSWERED_CALLS,
            max_inbound_bytes: Self::DEFAULT_MAX_INBOUND_BYTES,
            max_connection_inbound_bytes: Self::DEFAULT_MAX_CONNECTION_INBOUND_BYTES,
            accept_gifts: true,
            gift_timeout: Self::DEFAULT_GIFT_TIMEOUT,
            max_pending_gifts: Self::DEFAULT_MAX_PENDING_GIFTS,
            max_calls_behind_gifts: Self::DEFAULT_MAX_CALLS_BEHIND_GIFTS,
        }
    }
}

/// A call from a peer to one of our objects.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IncomingCall {
    /// Pass to [`Tub::answer`].
    pub id: IncomingId,
    /// The calling Tub.
    pub caller: TubId,
    /// The target object.
    pub object: ObjectId,
    /// The method name (empty when a function was called).
    pub method: Text,
    /// Positional arguments (references resolved: [`Value::Remote`] for
    /// the caller's objects, [`Value::Local`] for ours).
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Vec<(Text, Value)>,
}

/// What the Tub asks of the transport ([`Tub::poll_transport`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Open a TCP connection to `host:port`, then call
    /// [`Tub::dial_connected`] or [`Tub::dial_failed`].
    Dial {
        /// The request.
        dial: DialId,
        /// Host name or address (resolve it; IPv6 addresses come bare,
        /// without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Send what [`Tub::poll_transmit`] gave for this connection, then
    /// close its socket. Nothing more comes for it.
    Close(ConnectionId),
}

/// What the Tub reports to the application ([`Tub::poll_event`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TubEvent {
    /// A connection finished negotiating.
    Connected {
        /// The connection.
        connection: ConnectionId,
        /// The peer.
        peer: TubId,
    },
    /// A connection failed before it was negotiated (either side: an
    /// outbound failure also reaches the lookups that wanted it, as
    /// [`TubError::Unreachable`]).
    NegotiationFailed {
        /// The connection.
        connection: ConnectionId,
        /// We opened it.
        outbound: bool,
        /// Why.
        error: NegotiationError,
    },
    /// A negotiated connection ended (disconnect observers run here); its
    /// references are dead and its outstanding calls have failed. Its
    /// peer's calls held by flow control are dropped, and those handed
    /// out no longer count as waiting for an answer.
    Disconnected {
        /// The connection.
        connection: ConnectionId,
        /// The peer.
        peer: TubId,
        /// Why.
        reason: CloseReason,
    },
    /// A [`Tub::get_reference`] finished.
    Reference {
        /// The request.
        lookup: LookupId,
        /// A [`Value::Remote`] (or [`Value::Local`] for one of our own
        /// FURLs), or why not.
        result: Result<Value, TubError>,
    },
    /// A peer calls one of our objects: answer with [`Tub::answer`].
    Call(IncomingCall),
    /// One of our calls finished.
    Answer {
        /// The call.
        call: CallId,
        /// The answer or why it failed.
        result: Result<Value, CallError>,
    },
    /// No peer holds `object` any more and it is not registered: the
    /// application may drop it.
    ObjectUnused(ObjectId),
    /// A peer asked for a name no registered object holds, and a name
    /// lookup hook is set ([`Tub::set_name_lookup`]): answer with
    /// [`Tub::answer_name_lookup`].
    NameLookup(NameLookup),
}

/// A peer's `getReferenceByName` for a name the registered names do not
/// hold, left to the application ([`Tub::set_name_lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameLookup {
    /// What to answer ([`Tub::answer_name_lookup`]).
    pub id: NameLookupId,
    /// The connection it arrived on.
    pub connection: ConnectionId,
    /// The name asked for (a swissnum; not UTF-8 text is decoded
    /// lossily).
    pub name: String,
}

/// One [`NameLookup`] waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameLookupId(u64);

/// A [`NameLookup`] not answered yet.
#[derive(Debug)]
struct PendingName {
    connection: ConnectionId,
    req_id: ReqId,
    /// The name as it arrived.
    name: Bytes,
}

/// Calls from one connection's peer that the application has not
/// answered ([`Tub::pending_calls`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingCalls {
    /// Waiting for their turn (flow control), not handed out yet.
    pub held: usize,
    /// Handed out, not answered yet.
    pub unanswered: usize,
}

#[derive(Debug, Default)]
struct ObjectTable {
    by_name: HashMap<Vec<u8>, ObjectId>,
    info: HashMap<ObjectId, ObjectInfo>,
    /// Copyable type names accepted from peers.
    copyables: HashSet<String>,
    /// Their attribute schemas, where registered.
    copyable_schemas: HashMap<String, Arc<CopyableSchema>>,
    any_copyable: bool,
    /// Unknown names are left to the application ([`Tub::set_name_lookup`]).
    name_hook: bool,
}

#[derive(Debug, Clone, Default)]
struct ObjectInfo {
    interface: Bytes,
    /// The RemoteInterface its calls are checked against.
    schema: Option<Arc<InterfaceSchema>>,
    furl: Option<Bytes>,
    /// Names given with [`Tub::register`] (they keep the object alive).
    names: usize,
    /// The automatic name of an object sent while a location is set.
    weak_name: Option<String>,
}

/// Every connection's broker reads the one object table through this.
impl Registry for ObjectTable {
    fn lookup(&self, name: &[u8]) -> Option<Export> {
        let object = *self.by_name.get(name)?;
        let info = self.info.get(&object)?;
        Some(Export {
            object,
            interface: info.interface.clone(),
            furl: info.furl.clone(),
        })
    }

    fn describe(&self, object: ObjectId) -> Option<Export> {
        let info = self.info.get(&object)?;
        Some(Export {
            object,
            interface: info.interface.clone(),
            furl: info.furl.clone(),
        })
    }

    fn accepts_copyable(&self, type_name: &str) -> bool {
        self.any_copyable || self.copyables.contains(type_name)
    }

    fn schema(&self, object: ObjectId) -> Option<Arc<InterfaceSchema>> {
        self.info.get(&object)?.schema.clone()
    }

    fn copyable_schema(&self, type_name: &str) -> Option<Arc<CopyableSchema>> {
        self.copyable_schemas.get(type_name).cloned()
    }

    fn defers_unknown_names(&self) -> bool {
        self.name_hook
    }
}

enum ConnState {
    Negotiating(Box<Negotiation>),
    Open {
        session: Box<Session>,
        broker: Box<Broker>,
        peer: TubId,
    },
    Closed,
}

struct Conn {
    state: ConnState,
    /// The dial this connection answers (TCP client side).
    dial: Option<DialId>,
    /// Bytes to send.
    out: Vec<u8>,
    /// We opened it (TCP client).
    outbound: bool,
    /// The deadline filed for this connection in `Tub::timers`.
    timer: Option<Instant>,
    /// When this connection next releases the references the
    /// application dropped (set while it holds any).
    release_at: Option<Instant>,
    /// The broker keeps a large message's buffer for the next until then
    /// ([`IDLE_RELEASE`] after the last large message).
    keep_until: Option<Instant>,
    /// Calls from the peer waiting for their turn, in arrival order.
    held: VecDeque<IncomingCall>,
    /// Calls handed out this round.
    round: usize,
    /// Calls handed out and not answered.
    unanswered: usize,
    /// Bytes the transport holds unsent ([`Tub::set_backlog`]).
    backlog: usize,
    /// What the peer's message in progress holds
    /// ([`Broker::inbound_bytes`]), as last counted into
    /// `Tub::inbound_total`.
    inbound: usize,
    /// Paused because the Tub's inbound budget is exceeded (in force
    /// while it is).
    inbound_paused: bool,
    /// The last call either way (or the connection's start): which idle
    /// connection is evicted first at the established cap.
    last_active: Instant,
    /// Calls waiting for a gift-carrying call ahead of them (its
    /// [`GiftWait`]) to resolve its gifts, in arrival order.
    behind_gifts: VecDeque<Queued>,
    /// The hint we dialled (`tcp:HOST:PORT`), for an outbound connection.
    hint: Option<String>,
}

/// A call in [`Conn::behind_gifts`].
enum Queued {
    /// Waits for its own gifts.
    Gifts(u64),
    /// Ready, waits for those ahead.
    Ready(IncomingCall),
    /// A gift of it failed: answered with this failure in its turn.
    Failed(IncomingId, Failure),
}

/// Where a message waiting for its gifts goes once they are resolved.
enum GiftRoute {
    /// A peer's call: delivered (or failed) in its connection's order.
    Call(IncomingCall),
    /// The answer to one of our calls.
    Answer(CallId, Value),
    /// The answer to a lookup (`getReferenceByName`).
    Lookup(LookupId, Value),
}

/// A received message waiting for its gifts (docs/protocol.md §5.6).
struct GiftWait {
    /// The connection the gifts came over (`decgift` goes there).
    connection: ConnectionId,
    route: Option<GiftRoute>,
    gifts: Vec<TheirReference>,
    /// What each gift resolved to.
    resolved: Vec<Value>,
    /// Which gifts are resolved (or failed).
    done: Vec<bool>,
    /// The lookup resolving each gift, while it runs.
    lookups: Vec<Option<LookupId>>,
    /// The first gift that failed to resolve.
    failure: Option<Failure>,
    /// Gifts not resolved yet.
    left: usize,
    deadline: Instant,
}

impl Conn {
    /// Output made here and not yet given out by [`Tub::poll_transmit`]
    /// (PONGs and answers the last input produced, before the transport
    /// drove the Tub): it counts toward the output bound with the
    /// transport's backlog, so a transport that reads several times
    /// before it drives stops reading in time.
    fn unpolled_output(&self) -> usize {
        let broker = match &self.state {
            ConnState::Open { broker, .. } => broker.pending_output(),
            _ => 0,
        };
        self.out.len().saturating_add(broker)
    }

    fn new(state: ConnState, dial: Option<DialId>, now: Instant) -> Conn {
        Conn {
            state,
            outbound: dial.is_some(),
            dial,
            out: Vec::new(),
            timer: None,
            release_at: None,
            keep_until: None,
            held: VecDeque::new(),
            round: 0,
            unanswered: 0,
            backlog: 0,
            inbound: 0,
            inbound_paused: false,
            last_active: now,
            behind_gifts: VecDeque::new(),
            hint: None,
        }
    }

    /// The earliest of this connection's timers.
    fn deadline(&self) -> Option<Instant> {
        let state = match &self.state {
            ConnState::Negotiating(n) => n.poll_timeout(),
            ConnState::Open { broker, .. } => broker.poll_timeout(),
            ConnState::Closed => return None,
        };
        [state, self.release_at, self.keep_until]
            .into_iter()
            .flatten()
            .min()
    }
}

struct Dial {
    tubid: TubId,
    hints: Vec<(String, u16)>,
    /// Index of the hint being tried.
    next: usize,
    failures: Vec<DialFailure>,
    furl: String,
}

struct Lookup {
    furl: Furl,
}

/// One Tub: identity, connections, objects and references, sans-IO.
pub struct Tub {
    tubid: TubId,
    tls: TlsContext,
    table: ConnectionTable,
    config: TubConfig,
    rng: Box<dyn Rng + Send>,
    objects: ObjectTable,
    next_object: ObjectId,
    location: Vec<Hint>,
    conns: HashMap<ConnectionId, Conn>,
    /// The established connection to each peer.
    by_peer: HashMap<TubId, ConnectionId>,
    dials: HashMap<DialId, Dial>,
    dialing: HashMap<TubId, DialId>,
    next_dial: u64,
    lookups: HashMap<LookupId, Lookup>,
    next_lookup: u64,
    /// Lookups waiting for a connection to their Tub.
    waiting: HashMap<TubId, Vec<LookupId>>,
    /// Lookups whose getReferenceByName is on the wire.
    lookup_calls: HashMap<(ConnectionId, ReqId), LookupId>,
    /// Peers' lookups of unknown names left to the application.
    name_lookups: HashMap<NameLookupId, PendingName>,
    next_name_lookup: u64,
    dirty: VecDeque<ConnectionId>,
    dirty_set: HashSet<ConnectionId>,
    events: VecDeque<TubEvent>,
    transport: VecDeque<Transport>,
    /// Connections with held calls, in the order they get their turns.
    held_conns: VecDeque<ConnectionId>,
    /// Connections that were handed calls this round.
    round_conns: Vec<ConnectionId>,
    /// Calls held over all connections.
    held_total: usize,
    /// Calls handed out and not answered, over all connections.
    unanswered_total: usize,
    /// What the messages in progress hold, over all connections.
    inbound_total: usize,
    /// Every connection's next deadline, earliest first: timers cost
    /// the connections that are due, not all of them.
    timers: BTreeSet<(Instant, ConnectionId)>,
    /// The latest time a driver passed in (application calls use it).
    last_now: Instant,
    /// Reused buffer for plaintext on its way to TLS.
    scratch: Vec<u8>,
    /// Reused list of a broker's events being drained (kept while at
    /// most [`KEEP_DRAINED`] long).
    drained: Vec<TubEvent>,
    /// Accepted connections still negotiating, oldest (smallest id)
    /// first.
    negotiating: BTreeSet<ConnectionId>,
    /// Connections established and not closed yet.
    established: usize,
    /// The RemoteInterfaces this program knows, by announced name: a
    /// reference announced with one of these names is checked against it
    /// (Python's per-process RemoteInterface registry, per Tub here).
    /// Keyed by the name's bytes, as a reference announces it (no UTF-8
    /// check per call).
    interfaces: HashMap<Box<[u8]>, Arc<InterfaceSchema>>,
    /// The one of `interfaces` found last (calls mostly go to the same
    /// interface): checked by its name, cleared when one is added.
    last_interface: Option<Arc<InterfaceSchema>>,
    /// Received messages waiting for their gifts, by number.
    gift_waits: HashMap<u64, GiftWait>,
    next_gift_wait: u64,
    /// The lookups that resolve gifts: (wait, gift index).
    gift_lookups: HashMap<LookupId, (u64, usize)>,
    /// Each gift wait's deadline ([`TubConfig::gift_timeout`]).
    gift_deadlines: BTreeSet<(Instant, u64)>,
    /// Gifts being looked up ([`TubConfig::max_pending_gifts`]).
    pending_gifts: usize,
}

impl std::fmt::Debug for Tub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tub")
            .field("tubid", &self.tubid)
            .field("connections", &self.conns.len())
            .field("lookups", &self.lookups.len())
            .finish_non_exhaustive()
    }
}

impl Tub {
    /// A Tub with `identity`, drawing swissnums and its incarnation from
    /// `rng`, started at `now`.
    pub fn new(
        identity: &Identity,
        config: TubConfig,
        mut rng: Box<dyn Rng + Send>,
        now: Instant,
    ) -> Result<Tub, TubError> {
        let tls = TlsContext::new(identity).map_err(TubError::Tls)?;
        let table = ConnectionTable::new(&mut rng);
        Ok(Tub {
            tubid: identity.tubid(),
            tls,
            table,
            config,
            rng,
            objects: ObjectTable::default(),
            next_object: ObjectId(1),
            location: Vec::new(),
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            dials: HashMap::new(),
            dialing: HashMap::new(),
            next_dial: 1,
            lookups: HashMap::new(),
            next_lookup: 1,
            waiting: HashMap::new(),
            lookup_calls: HashMap::new(),
            name_lookups: HashMap::new(),
            next_name_lookup: 0,
            dirty: VecDeque::new(),
            dirty_set: HashSet::new(),
            events: VecDeque::new(),
            transport: VecDeque::new(),
            held_conns: VecDeque::new(),
            round_conns: Vec::new(),
            held_total: 0,
            unanswered_total: 0,
            inbound_total: 0,
            timers: BTreeSet::new(),
            last_now: now,
            scratch: Vec::new(),
            drained: Vec::new(),
            negotiating: BTreeSet::new(),
            established: 0,
            interfaces: HashMap::new(),
            last_interface: None,
            gift_waits: HashMap::new(),
            next_gift_wait: 1,
            gift_lookups: HashMap::new(),
            gift_deadlines: BTreeSet::new(),
            pending_gifts: 0,
        })
    }

    /// This Tub's tubid.
    pub fn tubid(&self) -> TubId {
        self.tubid
    }

    /// The connection hints put in FURLs made from now on.
    pub fn set_location(&mut self, hints: Vec<Hint>) {
        self.location = hints;
    }

    /// The hints put in FURLs.
    pub fn location(&self) -> &[Hint] {
        &self.location
    }

    // ---- objects ----

    /// A new local object id. The object is reachable once it is
    /// registered or sent (as [`Value::Local`]) to a peer.
    ///
    /// Like Python's Tub, once a location is set every object gets a
    /// random swissnum and FURL (sent with its first `my-reference`, so the
    /// peer can pass it on); that name does not keep the object alive.
    pub fn new_object(&mut self, interface: &str) -> ObjectId {
        let id = self.next_object;
        self.next_object.0 += 1;
        let weak_name = (!self.location.is_empty()).then(|| new_swissnum(&mut self.rng));
        let furl = weak_name.as_ref().map(|name| {
            Bytes::from(Furl::new(self.tubid, self.location.clone(), name.clone()).to_string())
        });
        let t = &mut self.objects;
        if let Some(name) = &weak_name {
            t.by_name.insert(name.clone().into_bytes(), id);
        }
        t.info.insert(
            id,
            ObjectInfo {
                interface: Bytes::copy_from_slice(interface.as_bytes()),
                schema: None,
                furl,
                names: 0,
                weak_name,
            },
        );
        id
    }

    /// [`Tub::new_object`] for an object that declares RemoteInterface
    /// `schema`: it is announced with the interface's name, and calls to
    /// it are checked against the interface as Python checks them (the
    /// method name, each argument token by token, the whole arguments,
    /// the result before it is sent; docs/protocol.md §6.5).
    pub fn new_object_with_schema(&mut self, schema: Arc<InterfaceSchema>) -> ObjectId {
        let id = self.new_object(schema.name());
        if let Some(info) = self.objects.info.get_mut(&id) {
            info.schema = Some(schema);
        }
        id
    }

    /// Publishes `object` under `name` (a fresh random swissnum if `None`)
    /// and returns its FURL. A name already in use is refused.
    pub fn register(&mut self, object: ObjectId, name: Option<&str>) -> Result<Furl, TubError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => new_swissnum(&mut self.rng),
        };
        let furl = Furl::new(self.tubid, self.location.clone(), name.clone());
        let text = Bytes::from(furl.to_string());
        let t = &mut self.objects;
        if t.by_name.contains_key(name.as_bytes()) {
            return Err(TubError::NameInUse(name));
        }
        let info = t.info.entry(object).or_default();
        info.names += 1;
        // the first name given explicitly replaces the automatic one
        let weak = if info.names == 1 {
            info.furl = Some(text);
            info.weak_name.take()
        } else {
            None
        };
        if let Some(weak) = weak {
            t.by_name.remove(weak.as_bytes());
        }
        t.by_name.insert(name.into_bytes(), object);
        Ok(furl)
    }

    /// Withdraws the name `name`: new lookups fail; references already
    /// given out keep working until released. Returns the object.
    pub fn unregister(&mut self, name: &str) -> Option<ObjectId> {
        let object = {
            let t = &mut self.objects;
            let object = t.by_name.remove(name.as_bytes())?;
            if let Some(info) = t.info.get_mut(&object) {
                info.names -= 1;
            }
            object
        };
        self.check_unused(object);
        Some(object)
    }

    /// Makes RemoteInterface `schema` known to this Tub, replacing one of
    /// the same name: references announced with its name are checked
    /// against it when we call them (docs/protocol.md §6.5).
    pub fn add_interface(&mut self, schema: Arc<InterfaceSchema>) {
        self.last_interface = None;
        self.interfaces
            .insert(schema.name().as_bytes().into(), schema);
    }

    /// The known RemoteInterface called `name`.
    pub fn interface(&self, name: &str) -> Option<&Arc<InterfaceSchema>> {
        self.interfaces.get(name.as_bytes())
    }

    /// Accepts received `copyable`s of type `type_name` (Python's
    /// RemoteCopy registration). Unregistered types are refused as Python
    /// refuses them: the call or answer carrying one fails with a
    /// Violation, and the connection goes on.
    pub fn register_copyable(&mut self, type_name: &str) {
        self.objects.copyables.insert(type_name.to_owned());
    }

    /// Accepts received `copyable`s of the schema's type and checks their
    /// attributes against it as they arrive, in every message (Python's
    /// `stateSchema`): an attribute the schema does not name, or a value
    /// its constraint refuses, fails the call or answer with a Violation
    /// (docs/protocol.md §6.5).
    pub fn register_copyable_schema(&mut self, schema: Arc<CopyableSchema>) {
        let name = schema.type_name().to_owned();
        self.objects.copyables.insert(name.clone());
        self.objects.copyable_schemas.insert(name, schema);
    }

    /// Accepts copyables of every type (for tools that only print what
    /// they receive).
    pub fn accept_any_copyable(&mut self, any: bool) {
        self.objects.any_copyable = any;
    }

    /// Leaves the names no registered object holds to the application
    /// (`true`), as Python's `Tub.registerNameLookupHandler` does: a peer's
    /// lookup of such a name becomes a [`TubEvent::NameLookup`], to answer
    /// with [`Tub::answer_name_lookup`]. The registered names are
    /// consulted first. Lookups of our own FURLs ([`Tub::get_reference`])
    /// see only the registered names. Default: off (an unknown name fails
    /// at once).
    pub fn set_name_lookup(&mut self, on: bool) {
        self.objects.name_hook = on;
    }

    /// Answers a [`TubEvent::NameLookup`], as Python answers what its
    /// lookup handler returned:
    ///
    /// * `Ok(Some(object))`: the peer gets a reference to `object` (made
    ///   with [`Tub::new_object`] or registered), which stays alive while
    ///   the peer holds it. An object with no registered name takes the
    ///   looked-up name as its FURL (Python records it as the object's
    ///   name) but is not registered under it: the next lookup of the name
    ///   is asked again.
    /// * `Ok(None)`: the peer gets Python's `KeyError`, "unable to find
    ///   reference for name starting with 'XX'".
    /// * `Err(failure)`: the peer gets `failure` (what Python sends when
    ///   its handler raises).
    ///
    /// A lookup whose connection closed meanwhile is dropped (an object
    /// given is then reported unused). Answering twice, or an unknown id,
    /// is [`TubError::UnknownLookup`].
    pub fn answer_name_lookup(
        &mut self,
        lookup: NameLookupId,
        result: Result<Option<ObjectId>, Failure>,
    ) -> Result<(), TubError> {
        let pending = self
            .name_lookups
            .remove(&lookup)
            .ok_or(TubError::UnknownLookup)?;
        let object = result.as_ref().ok().copied().flatten();
        if let Some(object) = object {
            self.name_object(object, &pending.name);
        }
        let result = result.map(|o| o.and_then(|o| self.objects.describe(o)));
        if let Ok(broker) = open_broker(&mut self.conns, pending.connection) {
            broker.answer_name_lookup(pending.req_id, &pending.name, result);
            if pending.req_id != 0 {
                if let Some(c) = self.conns.get_mut(&pending.connection) {
                    if c.unanswered > 0 {
                        c.unanswered -= 1;
                        self.unanswered_total -= 1;
                    }
                }
            }
            self.touch(pending.connection);
            self.pump(pending.connection, self.last_now);
        }
        if let Some(object) = object {
            self.check_unused(object);
        }
        Ok(())
    }

    /// Gives an object a lookup hook returned the looked-up name as its
    /// FURL, unless it has a registered one.
    fn name_object(&mut self, object: ObjectId, name: &[u8]) {
        let furl = (!self.location.is_empty()).then(|| {
            let name = String::from_utf8_lossy(name).into_owned();
            Bytes::from(Furl::new(self.tubid, self.location.clone(), name).to_string())
        });
        let t = &mut self.objects;
        let info = t.info.entry(object).or_default();
        if info.names > 0 || furl.is_none() {
            return;
        }
        info.furl = furl;
        if let Some(weak) = info.weak_name.take() {
            t.by_name.remove(weak.as_bytes());
        }
    }

    /// The object registered under `name`.
    pub fn lookup_name(&self, name: &str) -> Option<ObjectId> {
        self.objects.by_name.get(name.as_bytes()).copied()
    }

    fn check_unused(&mut self, object: ObjectId) {
        let named = self.objects.info.get(&object).is_some_and(|i| i.names > 0);
        if named {
            return;
        }
        let exported = self.conns.values().any(|c| match &c.state {
            ConnState::Open { broker, .. } => broker.exports_object(object),
            _ => false,
        });
        if !exported {
            let t = &mut self.objects;
            if let Some(weak) = t.info.remove(&object).and_then(|i| i.weak_name) {
                t.by_name.remove(weak.as_bytes());
            }
            self.events.push_back(TubEvent::ObjectUnused(object));
        }
    }

    // ---- references and calls ----

    /// Starts turning `furl` into a reference; the result arrives as
    /// [`TubEvent::Reference`]. Uses the live connection to the FURL's Tub
    /// if there is one, otherwise dials its TCP hints in order.
    pub fn get_reference(&mut self, furl: &Furl) -> LookupId {
        let lookup = LookupId(self.next_lookup);
        self.next_lookup += 1;
        if furl.tubid == self.tubid {
            let result = self
                .lookup_name(&furl.swissnum)
                .map(Value::Local)
                .ok_or_else(|| TubError::UnknownName(short(&furl.swissnum)));
            self.lookup_done(lookup, result);
            return lookup;
        }
        self.lookups.insert(lookup, Lookup { furl: furl.clone() });
        if let Some(&conn) = self.by_peer.get(&furl.tubid) {
            self.send_lookup(conn, lookup);
            return lookup;
        }
        self.waiting.entry(furl.tubid).or_default().push(lookup);
        if !self.dialing.contains_key(&furl.tubid) {
            let hints: Vec<(String, u16)> =
                furl.tcp_hints().map(|(h, p)| (h.to_owned(), p)).collect();
            let dial = DialId(self.next_dial);
            self.next_dial += 1;
            self.dials.insert(
                dial,
                Dial {
                    tubid: furl.tubid,
                    hints,
                    next: 0,
                    failures: Vec::new(),
                    furl: furl.to_string(),
                },
            );
            self.dialing.insert(furl.tubid, dial);
            self.try_next_hint(dial);
        }
        lookup
    }

    /// Calls `method` on `target`; the outcome arrives as
    /// [`TubEvent::Answer`].
    pub fn call(
        &mut self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<CallId, TubError> {
        let connection = target.connection();
        let schema = known_interface(&self.interfaces, &mut self.last_interface, target);
        let broker = open_broker(&mut self.conns, connection)?;
        let req_id =
            broker.call_checked(target.clid(), method, args, kwargs, &self.objects, schema)?;
        self.touch(connection);
        self.pump_written(connection);
        Ok(CallId { connection, req_id })
    }

    /// Python's `callRemoteOnly`: no answer, failures are silent (a
    /// Violation of a known interface is returned; nothing is sent).
    pub fn call_only(
        &mut self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<(), TubError> {
        let connection = target.connection();
        let schema = known_interface(&self.interfaces, &mut self.last_interface, target);
        let broker = open_broker(&mut self.conns, connection)?;
        broker.call_only_checked(target.clid(), method, args, kwargs, &self.objects, schema)?;
        self.touch(connection);
        self.pump(connection, self.last_now);
        Ok(())
    }

    /// Answers an incoming call. A value that cannot be sent is answered
    /// with a failure instead (and reported as the error).
    pub fn answer(
        &mut self,
        call: IncomingId,
        result: Result<Value, Failure>,
    ) -> Result<(), TubError> {
        if !call.wants_answer() {
            return Ok(());
        }
        let broker = open_broker(&mut self.conns, call.connection)?;
        let r = match result {
            Ok(v) => match broker.answer(call.req_id, &v, &self.objects) {
                Err(BrokerError::Encode(e)) => {
                    let f = Failure::new(
                        "foolscap.tokens.Violation",
                        format!("cannot serialize the answer: {e}"),
                    );
                    broker.fail(call.req_id, &f)?;
                    Err(TubError::Broker(BrokerError::Encode(e)))
                }
                r => r.map_err(TubError::from),
            },
            Err(f) => broker.fail(call.req_id, &f).map_err(TubError::from),
        };
        // a call answered twice, or never received, is not counted off
        // again: the flow-control counts would drift low
        let answered = !matches!(r, Err(TubError::Broker(BrokerError::UnknownRequest(_))));
        if let Some(c) = self.conns.get_mut(&call.connection) {
            if answered && c.unanswered > 0 {
                c.unanswered -= 1;
                self.unanswered_total -= 1;
            }
        }
        self.touch(call.connection);
        self.pump_written(call.connection);
        r
    }

    /// Closes the connection a reference lives on (its calls fail, its
    /// references die).
    pub fn disconnect(&mut self, connection: ConnectionId) {
        if let Ok(b) = self.broker_mut(connection) {
            b.close();
            self.pump(connection, self.last_now);
        }
    }

    /// The peer at the other end of a connection, if negotiated.
    pub fn peer_of(&self, connection: ConnectionId) -> Option<TubId> {
        match &self.conns.get(&connection)?.state {
            ConnState::Open { peer, .. } => Some(*peer),
            _ => None,
        }
    }

    /// The hint (`tcp:HOST:PORT`) an outbound connection was dialled
    /// at (Python's `winningHint`); `None` for one the peer opened.
    pub fn winning_hint(&self, connection: ConnectionId) -> Option<&str> {
        self.conns.get(&connection)?.hint.as_deref()
    }

    /// Whether the connection is established and open.
    pub fn is_connected(&self, connection: ConnectionId) -> bool {
        matches!(
            self.conns.get(&connection).map(|c| &c.state),
            Some(ConnState::Open { .. })
        )
    }

    fn broker_mut(&mut self, connection: ConnectionId) -> Result<&mut Broker, TubError> {
        open_broker(&mut self.conns, connection)
    }

    fn send_lookup(&mut self, conn: ConnectionId, lookup: LookupId) {
        let Some(name) = self.lookups.get(&lookup).map(|l| l.furl.swissnum.clone()) else {
            return;
        };
        match self.broker_mut(conn) {
            Ok(b) => match b.get_reference_by_name(name.as_bytes()) {
                Ok(req) => {
                    self.touch(conn);
                    self.lookup_calls.insert((conn, req), lookup);
                    self.mark_dirty(conn);
                }
                Err(e) => self.finish_lookup(lookup, Err(TubError::Broker(e))),
            },
            Err(e) => self.finish_lookup(lookup, Err(e)),
        }
    }

    fn finish_lookup(&mut self, lookup: LookupId, result: Result<Value, TubError>) {
        if self.lookups.remove(&lookup).is_some() {
            self.lookup_done(lookup, result);
        }
    }

    /// A lookup finished: to the gift it resolves, or to the application.
    fn lookup_done(&mut self, lookup: LookupId, result: Result<Value, TubError>) {
        match self.gift_lookups.remove(&lookup) {
            Some((wait, index)) => {
                self.pending_gifts -= 1;
                let result = result.map_err(|e| gift_failure(&e));
                self.gift_resolved(wait, index, result, true);
            }
            None => self
                .events
                .push_back(TubEvent::Reference { lookup, result }),
        }
    }

    // ---- transport ----

    fn try_next_hint(&mut self, dial: DialId) {
        let Some(d) = self.dials.get_mut(&dial) else {
            return;
        };
        if let Some((host, port)) = d.hints.get(d.next).cloned() {
            d.next += 1;
            self.transport
                .push_back(Transport::Dial { dial, host, port });
            return;
        }
        let Some(d) = self.dials.remove(&dial) else {
            return;
        };
        self.dialing.remove(&d.tubid);
        for lookup in self.waiting.remove(&d.tubid).unwrap_or_default() {
            let e = TubError::Unreachable {
                furl: d.furl.clone(),
                attempts: d.failures.clone(),
            };
            self.finish_lookup(lookup, Err(e));
        }
    }

    /// The TCP connection for `dial` is open: negotiation starts. Returns
    /// the connection's id (for [`Tub::handle_input`]), `None` if the dial
    /// is no longer wanted (close the socket).
    pub fn dial_connected(&mut self, dial: DialId, now: Instant) -> Option<ConnectionId> {
        self.dial_connected_with(dial, now, None)
    }

    /// **Replay and tests only**: like [`Tub::dial_connected`], but the
    /// connection runs without TLS ([`Negotiation::without_tls`]): after
    /// the plaintext phase, [`Tub::handle_input`] takes and
    /// [`Tub::poll_transmit`] gives the plaintext TLS would carry, and
    /// `peer` stands for the tubid the server's certificate would prove.
    /// No security at all: never for a real peer.
    pub fn dial_connected_clear(
        &mut self,
        dial: DialId,
        now: Instant,
        peer: TubId,
    ) -> Option<ConnectionId> {
        self.dial_connected_with(dial, now, Some(peer))
    }

    fn dial_connected_with(
        &mut self,
        dial: DialId,
        now: Instant,
        clear: Option<TubId>,
    ) -> Option<ConnectionId> {
        self.tick(now);
        let d = self.dials.get(&dial)?;
        if self.by_peer.contains_key(&d.tubid) {
            // an inbound connection got there first
            self.dials.remove(&dial);
            return None;
        }
        let (host, port) = d.hints[d.next - 1].clone();
        let mut neg = Negotiation::client(
            &self.tls,
            &mut self.table,
            d.tubid,
            &host,
            &self.config.negotiation,
            now,
        );
        let id = neg.connection_id();
        if let Some(r) = &self.config.recorder {
            r.0.opened(id, true, Some((&host, port)));
            neg = neg.with_recorder(r.clone());
        }
        if let Some(peer) = clear {
            neg = neg.without_tls(peer);
        }
        let mut conn = Conn::new(ConnState::Negotiating(Box::new(neg)), Some(dial), now);
        conn.hint = Some(hint_text(&host, port));
        self.conns.insert(id, conn);
        self.pump(id, now);
        Some(id)
    }

    /// The TCP connection for `dial` could not be opened: the next hint is
    /// tried, or the waiting lookups fail.
    pub fn dial_failed(&mut self, dial: DialId, error: TransportError) {
        self.hint_failed(dial, DialError::Transport(error));
    }

    fn hint_failed(&mut self, dial: DialId, error: DialError) {
        if let Some(d) = self.dials.get_mut(&dial) {
            let Some((h, p)) = d.next.checked_sub(1).and_then(|i| d.hints.get(i)) else {
                return;
            };
            let hint = hint_text(h, *p);
            d.failures.push(DialFailure { hint, error });
            self.try_next_hint(dial);
        }
    }

    /// A socket was accepted: negotiation starts as the server. At
    /// [`TubConfig::max_negotiating_connections`] the oldest connection
    /// still negotiating is evicted to make room (a [`Transport::Close`]
    /// for it follows); refused (close the socket) only when that limit
    /// is 0.
    pub fn accept(&mut self, now: Instant) -> Result<ConnectionId, TubError> {
        self.accept_with(now, None)
    }

    /// **Replay and tests only**: like [`Tub::accept`], but the connection
    /// runs without TLS ([`Negotiation::without_tls`]): after the
    /// plaintext phase, [`Tub::handle_input`] takes and
    /// [`Tub::poll_transmit`] gives the plaintext TLS would carry, and
    /// `peer` stands for the tubid the client's certificate would prove.
    /// No security at all: never for a real peer.
    pub fn accept_clear(&mut self, now: Instant, peer: TubId) -> Result<ConnectionId, TubError> {
        self.accept_with(now, Some(peer))
    }

    fn accept_with(
        &mut self,
        now: Instant,
        clear: Option<TubId>,
    ) -> Result<ConnectionId, TubError> {
        self.tick(now);
        let limit = self.config.max_negotiating_connections;
        if limit == 0 {
            return Err(TubError::TooManyConnections(0));
        }
        while self.negotiating.len() >= limit {
            let Some(&oldest) = self.negotiating.first() else {
                break;
            };
            self.evict_negotiation(oldest, limit);
        }
        let mut neg =
            Negotiation::server(&self.tls, &mut self.table, &self.config.negotiation, now);
        let id = neg.connection_id();
        if let Some(r) = &self.config.recorder {
            r.0.opened(id, false, None);
            neg = neg.with_recorder(r.clone());
        }
        if let Some(peer) = clear {
            neg = neg.without_tls(peer);
        }
        self.conns.insert(
            id,
            Conn::new(ConnState::Negotiating(Box::new(neg)), None, now),
        );
        self.negotiating.insert(id);
        self.refresh_timer(id);
        if self.negotiating.len() > limit / 2 {
            self.shorten_negotiations(now + self.config.negotiation.timeout_under_pressure);
        }
        Ok(id)
    }

    /// Inbound connections still negotiating (not authenticated yet).
    pub fn negotiating_connections(&self) -> usize {
        self.negotiating.len()
    }

    /// Connections established and not closed yet.
    pub fn established_connections(&self) -> usize {
        self.established
    }

    /// Drops an inbound connection still negotiating, to make room.
    fn evict_negotiation(&mut self, id: ConnectionId, limit: usize) {
        if !self.negotiating.remove(&id) {
            return;
        }
        self.negotiation_failed(id, NegotiationError::Evicted { limit });
        self.mark_dirty(id);
        self.refresh_timer(id);
    }

    /// Under pressure: no inbound negotiation may last past `cutoff`. The
    /// deadlines grow with the ids (every accept gets a later one, and a
    /// cut keeps the order), so the walk from the newest stops at the
    /// first one already due by then: each connection is cut at most once
    /// per pressure spell.
    fn shorten_negotiations(&mut self, cutoff: Instant) {
        let mut cut = Vec::new();
        for &id in self.negotiating.iter().rev() {
            let Some(Conn {
                state: ConnState::Negotiating(neg),
                ..
            }) = self.conns.get_mut(&id)
            else {
                continue;
            };
            if neg.poll_timeout().is_none_or(|t| t <= cutoff) {
                break;
            }
            neg.shorten_deadline(cutoff);
            cut.push(id);
        }
        for id in cut {
            self.refresh_timer(id);
        }
    }

    /// The established connection to evict for a new one: the one idle
    /// the longest (last call either way) among those holding no
    /// reference and no call in either direction.
    fn idle_victim(&self, except: ConnectionId) -> Option<ConnectionId> {
        self.conns
            .iter()
            .filter(|&(&id, c)| {
                id != except
                    && c.held.is_empty()
                    && c.unanswered == 0
                    && matches!(&c.state, ConnState::Open { broker, .. } if broker.is_unused())
            })
            .min_by_key(|&(&id, c)| (c.last_active, id))
            .map(|(&id, _)| id)
    }

    /// Notes a call on `connection` (either way) for the idle order.
    fn touch(&mut self, connection: ConnectionId) {
        let now = self.last_now;
        if let Some(c) = self.conns.get_mut(&connection) {
            c.last_active = now;
        }
    }

    /// The socket addresses of a connection, for the recorder
    /// ([`TubConfig::recorder`]) to name in its transcript; call it right
    /// after [`Tub::accept`] or [`Tub::dial_connected`]. Nothing else uses
    /// them.
    pub fn set_addresses(&mut self, connection: ConnectionId, local: SocketAddr, peer: SocketAddr) {
        let (Some(r), Some(c)) = (&self.config.recorder, self.conns.get(&connection)) else {
            return;
        };
        let (client, server) = if c.outbound {
            (local, peer)
        } else {
            (peer, local)
        };
        r.0.addresses(connection, &client.to_string(), &server.to_string());
    }

    /// Bytes received on a connection.
    pub fn handle_input(&mut self, connection: ConnectionId, now: Instant, data: &[u8]) {
        self.tick(now);
        let Some(conn) = self.conns.get_mut(&connection) else {
            return;
        };
        match &mut conn.state {
            ConnState::Negotiating(neg) => neg.handle_input(now, data, &mut self.table),
            ConnState::Open {
                session, broker, ..
            } => match session.handle_input(data) {
                Ok(()) => {
                    while let Some(p) = session.poll_plaintext() {
                        broker.handle_plaintext(now, &p, &self.objects);
                        if broker.is_closed() {
                            break;
                        }
                    }
                    if session.peer_closed() {
                        broker.connection_lost();
                    }
                }
                Err(_) => broker.connection_lost(),
            },
            ConnState::Closed => return,
        }
        self.pump(connection, now);
        self.enforce_inbound(connection, now);
    }

    /// The connection's socket reached EOF or failed.
    pub fn handle_eof(&mut self, connection: ConnectionId, now: Instant) {
        self.tick(now);
        let Some(conn) = self.conns.get_mut(&connection) else {
            return;
        };
        match &mut conn.state {
            ConnState::Negotiating(neg) => neg.handle_eof(),
            ConnState::Open { broker, .. } => broker.connection_lost(),
            ConnState::Closed => {
                conn.out.clear();
            }
        }
        self.pump(connection, now);
    }

    /// Bytes to send on some connection: fills `buf` (cleared first) and
    /// returns the connection, `None` when nothing is waiting.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<ConnectionId> {
        buf.clear();
        while let Some(id) = self.dirty.pop_front() {
            self.dirty_set.remove(&id);
            let mut rearm = false;
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            // move broker output through TLS
            if let ConnState::Open {
                session, broker, ..
            } = &mut conn.state
            {
                let mut plain = std::mem::take(&mut self.scratch);
                broker.poll_transmit(&mut plain);
                session.write_plaintext(&plain);
                plain.clear();
                if plain.capacity() <= KEEP_CAPACITY {
                    self.scratch = plain;
                } else {
                    // a large message's buffer (the broker's, handed
                    // over) goes back to the broker for the next one
                    // while the connection is busy
                    broker.keep_output_buffer(plain);
                    conn.keep_until = Some(self.last_now + IDLE_RELEASE);
                    rearm = true;
                }
                session.poll_transmit(&mut conn.out);
            }
            std::mem::swap(buf, &mut conn.out);
            if conn.out.capacity() > KEEP_CAPACITY {
                conn.out = Vec::new();
            }
            if matches!(conn.state, ConnState::Closed) {
                if let Some(t) = conn.timer {
                    self.timers.remove(&(t, id));
                }
                self.held_total -= conn.held.len();
                self.unanswered_total -= conn.unanswered;
                self.inbound_total -= conn.inbound;
                self.conns.remove(&id);
            } else if rearm {
                self.refresh_timer(id);
            }
            if !buf.is_empty() {
                return Some(id);
            }
        }
        None
    }

    /// The next thing the transport must do: dial a hint, or close a
    /// socket once the bytes [`Tub::poll_transmit`] gave for it are sent.
    pub fn poll_transport(&mut self) -> Option<Transport> {
        self.transport.pop_front()
    }

    /// The next application event. `None` ends a round of flow control:
    /// held calls get their next turns in the following round.
    pub fn poll_event(&mut self) -> Option<TubEvent> {
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        // held calls, one per connection per pass, in turn
        for _ in 0..self.held_conns.len() {
            let Some(id) = self.held_conns.pop_front() else {
                break;
            };
            let per_round = self.config.calls_per_round.max(1);
            let max_out = self.config.max_buffered_output;
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if conn.backlog > max_out || conn.round >= per_round {
                self.held_conns.push_back(id);
                continue;
            }
            let Some(call) = conn.held.pop_front() else {
                continue;
            };
            self.held_total -= 1;
            if !conn.held.is_empty() {
                self.held_conns.push_back(id);
            }
            self.hand_out(id, &call);
            return Some(TubEvent::Call(call));
        }
        for id in self.round_conns.drain(..) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.round = 0;
            }
        }
        None
    }

    /// Whether [`Tub::poll_event`] has something to give now (an event, or
    /// a held call whose turn it is).
    pub fn has_events(&self) -> bool {
        if !self.events.is_empty() {
            return true;
        }
        let per_round = self.config.calls_per_round.max(1);
        self.held_conns.iter().any(|id| {
            self.conns.get(id).is_some_and(|c| {
                !c.held.is_empty()
                    && c.backlog <= self.config.max_buffered_output
                    && c.round < per_round
            })
        })
    }

    /// Counts a call as handed to the application.
    fn hand_out(&mut self, id: ConnectionId, call: &IncomingCall) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.round == 0 {
            self.round_conns.push(id);
        }
        conn.round += 1;
        if call.id.wants_answer() {
            conn.unanswered += 1;
            self.unanswered_total += 1;
        }
    }

    /// A call from the peer: handed out now if it is the connection's
    /// turn, held otherwise.
    fn incoming_call(&mut self, id: ConnectionId, call: IncomingCall) {
        let per_round = self.config.calls_per_round.max(1);
        let max_out = self.config.max_buffered_output;
        let now = self.last_now;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.last_active = now;
        if conn.held.is_empty() && conn.backlog <= max_out && conn.round < per_round {
            self.hand_out(id, &call);
            self.events.push_back(TubEvent::Call(call));
            return;
        }
        if conn.held.is_empty() {
            self.held_conns.push_back(id);
        }
        conn.held.push_back(call);
        self.held_total += 1;
    }

    /// How many bytes the transport holds for `connection` that it has
    /// not sent yet. Over [`TubConfig::max_buffered_output`] no more of the
    /// peer's calls are handed out (and [`Tub::wants_input`] is false)
    /// until it drops again: report it after writing what
    /// [`Tub::poll_transmit`] gave, and whenever the socket drains.
    pub fn set_backlog(&mut self, connection: ConnectionId, bytes: usize) {
        if let Some(c) = self.conns.get_mut(&connection) {
            c.backlog = bytes;
        }
    }

    /// Output made for `connection` that [`Tub::poll_transmit`] has not
    /// taken yet (answers and PONGs from input handled since): an engine
    /// that reads several times per turn drives once this is more than a
    /// little, so a burst of input is not answered all at once in one
    /// large buffer.
    pub fn unpolled_output(&self, connection: ConnectionId) -> usize {
        self.conns.get(&connection).map_or(0, Conn::unpolled_output)
    }

    /// The bytes waiting to go out on `connection`: what the transport
    /// still holds (its last [`Tub::set_backlog`]) plus what this Tub made
    /// and [`Tub::poll_transmit`] has not given out yet. `None` once the
    /// connection is not open. A producer of reqID-0 calls (which no
    /// answer paces) waits while this is high.
    pub fn unsent_output(&self, connection: ConnectionId) -> Option<usize> {
        let c = self.conns.get(&connection)?;
        match c.state {
            ConnState::Open { .. } => Some(c.backlog.saturating_add(c.unpolled_output())),
            _ => None,
        }
    }

    /// Whether the driver should read `connection`'s socket now: false
    /// while its output (the transport's backlog and what this Tub made
    /// but [`Tub::poll_transmit`] has not given out yet, PONGs included)
    /// is over the bound, calls of it are held, or too many are
    /// unanswered (the peer's further calls then wait in the kernel and
    /// in the peer).
    pub fn wants_input(&self, connection: ConnectionId) -> bool {
        self.conns.get(&connection).is_none_or(|c| {
            c.held.is_empty()
                && c.behind_gifts.len() <= self.config.max_calls_behind_gifts
                && c.backlog.saturating_add(c.unpolled_output()) <= self.config.max_buffered_output
                && c.unanswered <= self.config.max_unanswered_calls
                && !(c.inbound_paused && self.inbound_total > self.config.max_inbound_bytes)
        })
    }

    /// What the peers' messages in progress hold over all connections
    /// (see [`TubConfig::max_inbound_bytes`]).
    pub fn inbound_bytes(&self) -> usize {
        self.inbound_total
    }

    /// Counts `id`'s message in progress into `inbound_total` again.
    fn count_inbound(&mut self, id: ConnectionId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let held = match &conn.state {
            ConnState::Open { broker, .. } => broker.inbound_bytes(),
            _ => 0,
        };
        self.inbound_total = self.inbound_total - conn.inbound + held;
        conn.inbound = held;
        if held == 0 {
            conn.inbound_paused = false;
        }
    }

    /// Enforces the inbound memory budgets after `id`'s input: `id` is
    /// dropped over the per-connection one; over the Tub's, the running
    /// connection holding the most is paused, or, when every connection
    /// with a message in progress is paused already, the one holding the
    /// largest is dropped (and the rest go on).
    fn enforce_inbound(&mut self, id: ConnectionId, now: Instant) {
        let per_conn = self.config.max_connection_inbound_bytes;
        if let Some(held) = self.conns.get(&id).map(|c| c.inbound) {
            if held > per_conn {
                let e = ProtocolError::ConnectionInboundBudget {
                    held,
                    limit: per_conn,
                };
                self.drop_for_memory(id, e, now);
            }
        }
        let limit = self.config.max_inbound_bytes;
        loop {
            if self.inbound_total <= limit {
                for c in self.conns.values_mut() {
                    c.inbound_paused = false;
                }
                return;
            }
            // largest first; on a tie, the newest connection
            let key = |(id, c): (&ConnectionId, &Conn)| (c.inbound, *id);
            let running = self
                .conns
                .iter()
                .filter(|(_, c)| c.inbound > 0 && !c.inbound_paused)
                .max_by_key(|&e| key(e))
                .map(|(id, _)| *id);
            if let Some(r) = running {
                self.conns.get_mut(&r).expect("present").inbound_paused = true;
                return;
            }
            let Some((largest, held)) = self
                .conns
                .iter()
                .filter(|(_, c)| c.inbound > 0)
                .max_by_key(|&e| key(e))
                .map(|(id, c)| (*id, c.inbound))
            else {
                return;
            };
            let e = ProtocolError::TubInboundBudget { held, limit };
            self.drop_for_memory(largest, e, now);
            for c in self.conns.values_mut() {
                c.inbound_paused = false;
            }
        }
    }

    /// Ends `id` for `error` (an ERROR token goes out) and accounts for
    /// it.
    fn drop_for_memory(&mut self, id: ConnectionId, error: ProtocolError, now: Instant) {
        if let Some(Conn {
            state: ConnState::Open { broker, .. },
            ..
        }) = self.conns.get_mut(&id)
        {
            broker.fail_protocol(error);
        }
        self.pump(id, now);
        if let Some(c) = self.conns.get(&id) {
            if c.inbound > 0 {
                // cannot happen: a closed broker holds nothing; never loop
                self.inbound_total -= c.inbound;
                let c = self.conns.get_mut(&id).expect("present");
                c.inbound = 0;
            }
        }
    }

    /// Calls from `connection`'s peer not answered yet, held or handed
    /// out.
    pub fn pending_calls(&self, connection: ConnectionId) -> PendingCalls {
        self.conns
            .get(&connection)
            .map_or_else(PendingCalls::default, |c| PendingCalls {
                held: c.held.len(),
                unanswered: c.unanswered,
            })
    }

    /// Calls held by flow control over all connections.
    pub fn held_calls(&self) -> usize {
        self.held_total
    }

    /// Calls from peers over all open connections that have not been
    /// answered yet (handed out or still held).
    pub fn calls_to_answer(&self) -> usize {
        self.held_total + self.unanswered_total
    }

    /// The capacity of a connection's serializer buffer (tests).
    #[cfg(test)]
    pub(crate) fn output_capacity(&self, id: ConnectionId) -> usize {
        match self.conns.get(&id).map(|c| &c.state) {
            Some(ConnState::Open { broker, .. }) => broker.output_capacity(),
            _ => 0,
        }
    }

    /// When [`Tub::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.timers.first().map(|&(t, _)| t);
        let gifts = self.gift_deadlines.first().map(|&(t, _)| t);
        match (conns, gifts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every timer due at `now`: negotiation deadlines, keepalives,
    /// disconnect timeouts, and the release of dropped references.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        self.gift_timeouts(now);
        let due: Vec<ConnectionId> = self
            .timers
            .range(..=(now, ConnectionId(u64::MAX)))
            .map(|&(_, id)| id)
            .collect();
        for id in due {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let sweep = conn.release_at.is_some_and(|t| now >= t);
            if sweep {
                conn.release_at = None;
            }
            let idle = conn.keep_until.is_some_and(|t| now >= t);
            if idle {
                conn.keep_until = None;
            }
            match &mut conn.state {
                ConnState::Negotiating(n) => n.handle_timeout(now),
                ConnState::Open { broker, .. } => {
                    broker.handle_timeout(now);
                    if sweep {
                        broker.release_dropped();
                    }
                    if idle {
                        broker.release_output_buffer();
                    }
                }
                ConnState::Closed => {}
            }
            self.pump(id, now);
        }
    }

    // ---- gifts received (docs/protocol.md §5.6) ----

    /// Gifts being looked up over all connections.
    pub fn pending_gifts(&self) -> usize {
        self.pending_gifts
    }

    /// Received messages waiting for their gifts.
    pub fn messages_waiting_for_gifts(&self) -> usize {
        self.gift_waits.len()
    }

    /// Gifts we sent that their recipients have not acknowledged
    /// (`decgift`), over all connections: each holds its reference.
    pub fn gifts_held(&self) -> usize {
        self.conns
            .values()
            .map(|c| match &c.state {
                ConnState::Open { broker, .. } => broker.gifts_held(),
                _ => 0,
            })
            .sum()
    }

    /// A peer's call: behind a call waiting for its gifts if there is one
    /// (Python's inbound queue is ordered), to flow control otherwise.
    fn queue_call(&mut self, id: ConnectionId, call: IncomingCall) {
        match self.conns.get_mut(&id) {
            Some(c) if !c.behind_gifts.is_empty() => c.behind_gifts.push_back(Queued::Ready(call)),
            Some(_) => self.incoming_call(id, call),
            None => {}
        }
    }

    /// A message arrived with gifts: each is looked up; the message goes
    /// on when all are resolved (or one failed).
    fn start_gifts(&mut self, id: ConnectionId, route: GiftRoute, gifts: Vec<TheirReference>) {
        let w = self.next_gift_wait;
        self.next_gift_wait += 1;
        let n = gifts.len();
        let deadline = self.last_now + self.config.gift_timeout;
        let is_call = matches!(route, GiftRoute::Call(_));
        self.gift_waits.insert(
            w,
            GiftWait {
                connection: id,
                route: Some(route),
                gifts: gifts.clone(),
                resolved: vec![Value::None; n],
                done: vec![false; n],
                lookups: vec![None; n],
                failure: None,
                left: n,
                deadline,
            },
        );
        self.gift_deadlines.insert((deadline, w));
        if is_call {
            if let Some(c) = self.conns.get_mut(&id) {
                c.behind_gifts.push_back(Queued::Gifts(w));
            }
        }
        for (i, gift) in gifts.into_iter().enumerate() {
            if !self.gift_waits.contains_key(&w) {
                break;
            }
            self.resolve_gift(w, i, gift);
        }
    }

    fn resolve_gift(&mut self, w: u64, i: usize, gift: TheirReference) {
        if !self.config.accept_gifts {
            let f = twisted_failure(
                "foolscap.tokens.Violation",
                "Violation: ('gifts are prohibited in this Tub',)",
                &[],
            );
            return self.gift_resolved(w, i, Err(f), false);
        }
        let text = String::from_utf8_lossy(&gift.furl).into_owned();
        let furl = if text.is_empty() {
            Err(twisted_failure(
                "foolscap.tokens.NoLocationHintsError",
                "",
                &[],
            ))
        } else {
            Furl::parse(&text).map_err(|_| {
                let why = format!("unknown FURL prefix in {}", str_repr(&text));
                twisted_failure("builtins.ValueError", &why, &[])
            })
        };
        let furl = match furl {
            Ok(f) => f,
            Err(f) => return self.gift_resolved(w, i, Err(f), true),
        };
        if self.pending_gifts >= self.config.max_pending_gifts {
            let why = format!(
                "more than {} gifts are being looked up",
                self.config.max_pending_gifts
            );
            let f = twisted_failure("foolscap.tokens.Violation", &why, &[]);
            return self.gift_resolved(w, i, Err(f), true);
        }
        self.pending_gifts += 1;
        // filed first: a lookup of one of our own FURLs finishes at once
        let lookup = LookupId(self.next_lookup);
        self.gift_lookups.insert(lookup, (w, i));
        if let Some(wait) = self.gift_waits.get_mut(&w) {
            wait.lookups[i] = Some(lookup);
        }
        self.get_reference(&furl);
    }

    /// Gift `i` of wait `w` resolved: `decgift` to its sender (`ack`),
    /// and the message goes on once every gift is resolved.
    fn gift_resolved(&mut self, w: u64, i: usize, result: Result<Value, Failure>, ack: bool) {
        let Some(wait) = self.gift_waits.get_mut(&w) else {
            return;
        };
        if wait.done[i] {
            return;
        }
        wait.done[i] = true;
        wait.lookups[i] = None;
        wait.left -= 1;
        match result {
            Ok(v) => wait.resolved[i] = v,
            Err(f) => {
                if wait.failure.is_none() {
                    wait.failure = Some(f);
                }
            }
        }
        let (conn, gift_id, left) = (wait.connection, wait.gifts[i].gift_id, wait.left);
        if ack {
            if let Ok(b) = self.broker_mut(conn) {
                if b.decgift(gift_id).is_ok() {
                    self.mark_dirty(conn);
                }
            }
        }
        if left == 0 {
            self.gift_wait_done(w);
        }
    }

    /// Every gift of wait `w` is resolved: the message goes on.
    fn gift_wait_done(&mut self, w: u64) {
        let Some(mut wait) = self.gift_waits.remove(&w) else {
            return;
        };
        self.gift_deadlines.remove(&(wait.deadline, w));
        let conn = wait.connection;
        match wait.route.take() {
            Some(GiftRoute::Call(mut call)) => {
                let entry = match wait.failure {
                    Some(f) => Queued::Failed(call.id, f),
                    None => {
                        for a in call.args.iter_mut() {
                            fill_gifts(a, &wait.resolved);
                        }
                        for (_, v) in call.kwargs.iter_mut() {
                            fill_gifts(v, &wait.resolved);
                        }
                        Queued::Ready(call)
                    }
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    for q in c.behind_gifts.iter_mut() {
                        if matches!(q, Queued::Gifts(n) if *n == w) {
                            *q = entry;
                            break;
                        }
                    }
                }
                self.advance_behind_gifts(conn);
            }
            Some(GiftRoute::Answer(call, mut value)) => {
                let result = match wait.failure {
                    Some(f) => Err(CallError::Remote(f)),
                    None => {
                        fill_gifts(&mut value, &wait.resolved);
                        Ok(value)
                    }
                };
                self.events.push_back(TubEvent::Answer { call, result });
            }
            Some(GiftRoute::Lookup(lookup, mut value)) => {
                let result = match wait.failure {
                    Some(f) => Err(TubError::Lookup(CallError::Remote(f))),
                    None => {
                        fill_gifts(&mut value, &wait.resolved);
                        Ok(value)
                    }
                };
                self.finish_lookup(lookup, result);
            }
            None => {}
        }
    }

    /// Hands out the calls at the head of `conn`'s queue that no longer
    /// wait for gifts, in order.
    fn advance_behind_gifts(&mut self, conn: ConnectionId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.behind_gifts.front() {
                Some(Queued::Ready(_)) | Some(Queued::Failed(..)) => {}
                _ => return,
            }
            match c.behind_gifts.pop_front() {
                Some(Queued::Ready(call)) => self.incoming_call(conn, call),
                Some(Queued::Failed(id, f)) => {
                    if let Ok(b) = self.broker_mut(conn) {
                        let _ = b.fail(id.req_id, &f);
                    }
                    self.pump(conn, self.last_now);
                }
                _ => return,
            }
        }
    }

    /// Forgets wait `w` (its connection closed): its lookups are dropped.
    fn drop_gift_wait(&mut self, w: u64) {
        let Some(wait) = self.gift_waits.remove(&w) else {
            return;
        };
        self.gift_deadlines.remove(&(wait.deadline, w));
        for lookup in wait.lookups.into_iter().flatten() {
            self.cancel_gift_lookup(lookup);
        }
    }

    fn cancel_gift_lookup(&mut self, lookup: LookupId) {
        if self.gift_lookups.remove(&lookup).is_some() {
            self.pending_gifts -= 1;
        }
        if let Some(l) = self.lookups.remove(&lookup) {
            if let Some(waiting) = self.waiting.get_mut(&l.furl.tubid) {
                waiting.retain(|x| *x != lookup);
            }
        }
    }

    /// Gifts still unresolved at their message's deadline fail as
    /// Python's client connection timeout does.
    fn gift_timeouts(&mut self, now: Instant) {
        while let Some(&(t, w)) = self.gift_deadlines.first() {
            if t > now {
                return;
            }
            self.gift_deadlines.pop_first();
            let Some(wait) = self.gift_waits.get(&w) else {
                continue;
            };
            let open: Vec<(usize, Option<LookupId>)> = (0..wait.done.len())
                .filter(|&i| !wait.done[i])
                .map(|i| (i, wait.lookups[i]))
                .collect();
            for (i, lookup) in open {
                if let Some(l) = lookup {
                    self.cancel_gift_lookup(l);
                }
                let f = twisted_failure(
                    "foolscap.tokens.NegotiationError",
                    "no connection established within client timeout",
                    &[],
                );
                self.gift_resolved(w, i, Err(f), true);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// Files the connection's earliest deadline in `timers` (again, if
    /// it moved).
    fn refresh_timer(&mut self, id: ConnectionId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let due = conn.deadline();
        if due != conn.timer {
            if let Some(t) = conn.timer {
                self.timers.remove(&(t, id));
            }
            if let Some(t) = due {
                self.timers.insert((t, id));
            }
            conn.timer = due;
        }
    }

    /// Starts the connection's release interval if it holds references
    /// and none is running.
    fn schedule_release(&mut self, id: ConnectionId, now: Instant) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if let ConnState::Open { broker, .. } = &conn.state {
                if conn.release_at.is_none() && broker.imported_count() > 0 {
                    conn.release_at = Some(now + self.config.release_interval);
                }
            }
        }
    }

    /// Notes that a connection may have output; [`Tub::poll_transmit`]
    /// encrypts it then, so many messages share TLS records.
    fn mark_dirty(&mut self, id: ConnectionId) {
        if self.dirty_set.insert(id) {
            self.dirty.push_back(id);
        }
    }

    /// One event drained from `id`'s broker, in wire order: calls go
    /// through flow control, the rest to the application.
    fn take_drained(&mut self, id: ConnectionId, ev: TubEvent) {
        match ev {
            TubEvent::Call(call) => self.queue_call(id, call),
            TubEvent::Reference { lookup, result } => {
                self.touch(id);
                self.lookup_done(lookup, result);
            }
            TubEvent::NameLookup(l) => {
                self.touch(id);
                // waits for the application as a handed-out call does
                let wants = self.name_lookups.get(&l.id).is_some_and(|p| p.req_id != 0);
                if let Some(c) = self.conns.get_mut(&id).filter(|_| wants) {
                    c.unanswered += 1;
                    self.unanswered_total += 1;
                }
                self.events.push_back(TubEvent::NameLookup(l));
            }
            ev => {
                self.touch(id);
                self.events.push_back(ev);
            }
        }
    }

    /// After a message was written on `id` (a call or an answer): its
    /// output is to move. A write changes nothing else a pump looks at
    /// (no broker event, no timer input, no inbound bytes, no import), so
    /// the full pump runs only when the broker has events all the same,
    /// or references wait for a release interval to be scheduled.
    fn pump_written(&mut self, id: ConnectionId) {
        let quiet = match self.conns.get(&id) {
            Some(Conn {
                state: ConnState::Open { broker, .. },
                release_at,
                ..
            }) => !broker.has_events() && (release_at.is_some() || broker.imported_count() == 0),
            _ => false,
        };
        if quiet {
            self.mark_dirty(id);
        } else {
            self.pump(id, self.last_now);
        }
    }

    /// Moves output and events out of one connection's state machines.
    fn pump(&mut self, id: ConnectionId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut outcome = None;
        if let ConnState::Negotiating(neg) = &mut conn.state {
            neg.poll_transmit(&mut conn.out);
            outcome = neg.poll_event();
        }
        match outcome {
            Some(NegotiationEvent::Established(session)) => self.established(id, session, now),
            Some(NegotiationEvent::Failed(e)) => self.negotiation_failed(id, e),
            None => {}
        }
        self.drain_broker(id, now);
        self.count_inbound(id);
        self.mark_dirty(id);
        self.refresh_timer(id);
    }

    fn established(&mut self, id: ConnectionId, mut session: Box<Session>, now: Instant) {
        let info = session.info().clone();
        let peer = info.peer_tubid;
        self.negotiating.remove(&id);
        // one to the same peer is replaced: the count does not grow
        let replaces = info.replaced.is_some() || self.by_peer.contains_key(&peer);
        let cap = self.config.max_established_connections;
        if !replaces && self.established >= cap {
            match self.idle_victim(id) {
                Some(victim) => {
                    if let Ok(b) = self.broker_mut(victim) {
                        b.evict();
                    }
                    self.pump(victim, now);
                }
                None => {
                    self.negotiation_failed(
                        id,
                        NegotiationError::TooManyConnections { limit: cap },
                    );
                    return;
                }
            }
        }
        self.established += 1;
        let mut broker = Box::new(Broker::new(
            info.vocab,
            self.config.broker.clone(),
            id,
            Some(peer),
            now,
        ));
        while let Some(p) = session.poll_plaintext() {
            broker.handle_plaintext(now, &p, &self.objects);
        }
        let conn = self.conns.get_mut(&id).expect("present");
        let dial = conn.dial.take();
        conn.state = ConnState::Open {
            session,
            broker,
            peer,
        };
        if let Some(dial) = dial {
            self.dials.remove(&dial);
            if self.dialing.get(&peer) == Some(&dial) {
                self.dialing.remove(&peer);
            }
        }
        if let Some(old) = info.replaced {
            self.disconnect(old);
        }
        if let Some(old) = self.by_peer.insert(peer, id) {
            if old != id && info.replaced != Some(old) {
                self.disconnect(old);
            }
        }
        self.events.push_back(TubEvent::Connected {
            connection: id,
            peer,
        });
        for lookup in self.waiting.remove(&peer).unwrap_or_default() {
            self.send_lookup(id, lookup);
        }
        // a dial still running to this peer is not needed any more
        if let Some(dial) = self.dialing.remove(&peer) {
            self.dials.remove(&dial);
        }
        self.schedule_release(id, now);
    }

    fn negotiation_failed(&mut self, id: ConnectionId, error: NegotiationError) {
        self.negotiating.remove(&id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.state = ConnState::Closed;
        let dial = conn.dial.take();
        let outbound = conn.outbound;
        self.table.connection_closed(id);
        self.transport.push_back(Transport::Close(id));
        self.events.push_back(TubEvent::NegotiationFailed {
            connection: id,
            outbound,
            error: error.clone(),
        });
        if let Some(r) = &self.config.recorder {
            r.0.closed(id);
        }
        if let Some(dial) = dial {
            let Some(tubid) = self.dials.get(&dial).map(|d| d.tubid) else {
                return;
            };
            if let Some(&live) = self.by_peer.get(&tubid) {
                // a connection to that Tub exists after all (duplicate)
                self.dials.remove(&dial);
                self.dialing.remove(&tubid);
                for lookup in self.waiting.remove(&tubid).unwrap_or_default() {
                    self.send_lookup(live, lookup);
                }
                return;
            }
            self.hint_failed(dial, DialError::Negotiation(error));
        }
    }

    fn drain_broker(&mut self, id: ConnectionId, now: Instant) {
        let mut released = Vec::new();
        // in wire order: calls go through flow control after the loop
        let mut drained = std::mem::take(&mut self.drained);
        // messages with gifts, each with its place among `drained`
        let mut gifted: Vec<(usize, GiftRoute, Vec<TheirReference>)> = Vec::new();
        let mut closed = None;
        {
            let Some(Conn {
                state: ConnState::Open { broker, peer, .. },
                ..
            }) = self.conns.get_mut(&id)
            else {
                return;
            };
            let peer = *peer;
            while let Some(ev) = broker.poll_event() {
                match ev {
                    BrokerEvent::Call(c) => drained.push(TubEvent::Call(IncomingCall {
                        id: IncomingId {
                            connection: id,
                            req_id: c.req_id,
                        },
                        caller: peer,
                        object: c.object,
                        method: c.method,
                        args: c.args,
                        kwargs: c.kwargs,
                    })),
                    BrokerEvent::Answer { req_id, value } => {
                        match self.lookup_calls.remove(&(id, req_id)) {
                            Some(lookup) => {
                                if self.lookups.remove(&lookup).is_some() {
                                    drained.push(TubEvent::Reference {
                                        lookup,
                                        result: Ok(value),
                                    });
                                }
                            }
                            None => drained.push(TubEvent::Answer {
                                call: CallId {
                                    connection: id,
                                    req_id,
                                },
                                result: Ok(value),
                            }),
                        }
                    }
                    BrokerEvent::Failed { req_id, error } => {
                        match self.lookup_calls.remove(&(id, req_id)) {
                            Some(lookup) => {
                                if self.lookups.remove(&lookup).is_some() {
                                    drained.push(TubEvent::Reference {
                                        lookup,
                                        result: Err(TubError::Lookup(error)),
                                    });
                                }
                            }
                            None => drained.push(TubEvent::Answer {
                                call: CallId {
                                    connection: id,
                                    req_id,
                                },
                                result: Err(error),
                            }),
                        }
                    }
                    BrokerEvent::CallWithGifts(c, gifts) => {
                        let call = IncomingCall {
                            id: IncomingId {
                                connection: id,
                                req_id: c.req_id,
                            },
                            caller: peer,
                            object: c.object,
                            method: c.method,
                            args: c.args,
                            kwargs: c.kwargs,
                        };
                        gifted.push((drained.len(), GiftRoute::Call(call), gifts));
                    }
                    BrokerEvent::AnswerWithGifts {
                        req_id,
                        value,
                        gifts,
                    } => {
                        let route = match self.lookup_calls.remove(&(id, req_id)) {
                            Some(lookup) => GiftRoute::Lookup(lookup, value),
                            None => GiftRoute::Answer(
                                CallId {
                                    connection: id,
                                    req_id,
                                },
                                value,
                            ),
                        };
                        gifted.push((drained.len(), route, gifts));
                    }
                    BrokerEvent::Released { object, .. } => released.push(object),
                    BrokerEvent::NameLookup { req_id, name } => {
                        let key = NameLookupId(self.next_name_lookup);
                        self.next_name_lookup += 1;
                        let text = String::from_utf8_lossy(&name).into_owned();
                        self.name_lookups.insert(
                            key,
                            PendingName {
                                connection: id,
                                req_id,
                                name,
                            },
                        );
                        drained.push(TubEvent::NameLookup(NameLookup {
                            id: key,
                            connection: id,
                            name: text,
                        }));
                    }
                    BrokerEvent::Closed(reason) => {
                        released.extend(broker.exported_objects());
                        closed = Some((peer, reason));
                    }
                }
            }
        }
        if gifted.is_empty() {
            // the common case: no gift to interleave (and no copy of a
            // peeked gift per event)
            for ev in drained.drain(..) {
                self.take_drained(id, ev);
            }
            if drained.capacity() <= KEEP_DRAINED {
                self.drained = drained;
            }
        } else {
            let mut gifted = gifted.into_iter().peekable();
            for (i, ev) in drained.drain(..).enumerate() {
                while let Some((_, route, gifts)) = gifted.next_if(|(at, _, _)| *at <= i) {
                    self.start_gifts(id, route, gifts);
                }
                self.take_drained(id, ev);
            }
            if drained.capacity() <= KEEP_DRAINED {
                self.drained = drained;
            }
            // by reference: moving the (large) iterator costs a copy per drain
            for (_, route, gifts) in gifted.by_ref() {
                self.start_gifts(id, route, gifts);
            }
        }
        if let Some((peer, reason)) = closed {
            // hand out the last bytes (an ERROR token, close_notify)
            if let Some(Conn {
                state: ConnState::Open {
                    session, broker, ..
                },
                out,
                ..
            }) = self.conns.get_mut(&id)
            {
                let mut plain = Vec::new();
                broker.poll_transmit(&mut plain);
                session.write_plaintext(&plain);
                session.close();
                session.poll_transmit(out);
            }
            if let Some(c) = self.conns.get_mut(&id) {
                c.state = ConnState::Closed;
                self.established -= 1;
                // held calls die with the connection (never handed out
                // after its Disconnected), and handed-out ones cannot be
                // answered any more: neither is left to answer
                self.held_total -= c.held.len();
                c.held.clear();
                self.unanswered_total -= c.unanswered;
                c.unanswered = 0;
                // calls behind gifts die with it too, and so do the
                // lookups of their gifts
                c.behind_gifts.clear();
            }
            let dead: Vec<u64> = self
                .gift_waits
                .iter()
                .filter(|(_, w)| w.connection == id && matches!(w.route, Some(GiftRoute::Call(_))))
                .map(|(n, _)| *n)
                .collect();
            for w in dead {
                self.drop_gift_wait(w);
            }
            self.mark_dirty(id);
            self.table.connection_closed(id);
            if self.by_peer.get(&peer) == Some(&id) {
                self.by_peer.remove(&peer);
            }
            self.events.push_back(TubEvent::Disconnected {
                connection: id,
                peer,
                reason,
            });
            self.transport.push_back(Transport::Close(id));
            if let Some(r) = &self.config.recorder {
                r.0.closed(id);
            }
        }
        for object in released {
            self.check_unused(object);
        }
        self.schedule_release(id, now);
    }
}

/// The interface `target` was announced with, if the Tub knows it (by
/// the announced bytes: a name that is not UTF-8 is never known); `last`
/// is the one found last, tried first.
fn known_interface<'a>(
    interfaces: &HashMap<Box<[u8]>, Arc<InterfaceSchema>>,
    last: &'a mut Option<Arc<InterfaceSchema>>,
    target: &RemoteRef,
) -> Option<&'a Arc<InterfaceSchema>> {
    let name: &[u8] = target.interface();
    if name.is_empty() {
        return None;
    }
    if last.as_ref().is_none_or(|s| s.name().as_bytes() != name) {
        *last = Some(interfaces.get(name)?.clone());
    }
    last.as_ref()
}

/// The broker of an open connection (a free function so that callers can
/// borrow the object table beside it).
fn open_broker(
    conns: &mut HashMap<ConnectionId, Conn>,
    connection: ConnectionId,
) -> Result<&mut Broker, TubError> {
    match conns.get_mut(&connection).map(|c| &mut c.state) {
        Some(ConnState::Open { broker, .. }) if !broker.is_closed() => Ok(broker),
        _ => Err(TubError::NotConnected),
    }
}

/// A failure as Twisted makes one without a Python traceback
/// (docs/protocol.md §5.6): `bases` between the class and `Exception`.
fn twisted_failure(type_name: &str, value: &str, bases: &[&str]) -> Failure {
    let mut f = Failure::new(type_name, value);
    for (i, b) in bases.iter().enumerate() {
        f.parents.insert(1 + i, (*b).to_string());
    }
    f.traceback = format!("Traceback (most recent call last):\nFailure: {type_name}: {value}\n");
    f
}

/// What a gift's recipient answers when the gift's lookup failed, with
/// Python's types and texts (docs/protocol.md §5.6).
fn gift_failure(e: &TubError) -> Failure {
    match e {
        // the owner's own error, passed on
        TubError::Lookup(CallError::Remote(f)) => f.clone(),
        TubError::UnknownName(start) => {
            let msg = format!("unable to find reference for name starting with '{start}'");
            Failure::new("builtins.KeyError", str_repr(&msg))
        }
        TubError::Unreachable { attempts, .. } => match attempts.first().map(|a| &a.error) {
            None => twisted_failure("foolscap.tokens.NoLocationHintsError", "", &[]),
            Some(DialError::Transport(t)) if t.kind == std::io::ErrorKind::ConnectionRefused => {
                twisted_failure(
                    "twisted.internet.error.ConnectionRefusedError",
                    "Connection was refused by other side: 111: Connection refused.",
                    &["twisted.internet.error.ConnectError"],
                )
            }
            Some(DialError::Negotiation(NegotiationError::Timeout)) => twisted_failure(
                "foolscap.tokens.NegotiationError",
                "no connection established within client timeout",
                &[],
            ),
            Some(DialError::Transport(t)) => twisted_failure(
                "twisted.internet.error.ConnectError",
                &format!("An error occurred while connecting: {t}."),
                &[],
            ),
            Some(DialError::Negotiation(n)) => {
                twisted_failure("foolscap.tokens.NegotiationError", &n.to_string(), &[])
            }
        },
        other => twisted_failure("foolscap.ipb.DeadReferenceError", &other.to_string(), &[]),
    }
}

/// A TCP hint as FURLs write it (IPv6 addresses in brackets).
fn hint_text(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("tcp:[{host}]:{port}")
    } else {
        format!("tcp:{host}:{port}")
    }
}

/// The start of a swissnum, for error messages (never the whole secret).
fn short(name: &str) -> String {
    name.chars().take(2).collect()
}

#[cfg(test)]
mod gift_tests;
#[cfg(test)]
mod tests;
