//! A simulated network of sans-IO Tubs on a virtual clock, for tests.
//!
//! Compiled for this crate's own tests and, elsewhere, with the `testing`
//! feature: another crate's tests get it with
//! `foolscap-core = { ..., features = ["testing"] }` in `[dev-dependencies]`.
//!
//! A [`Net`] holds two or more core [`Tub`]s and plays every driver at once:
//! it moves the bytes [`Tub::poll_transmit`] gives to the other end of the
//! connection, carries out [`Transport::Dial`] and [`Transport::Close`],
//! collects each Tub's [`TubEvent`]s, and runs timers. Time is virtual: the
//! clock starts at the `Instant` the net was made and only moves when a test
//! moves it, so an hour of keepalives costs nothing (like quinn-proto's
//! test `Pair`).
//!
//! Runs repeat: randomness is seeded ([`NetConfig::seed`]) and tubids grow
//! with the Tub's index, so which side is the negotiation master never
//! changes. Identities are fresh, so the tubids (and the bytes that name
//! them) differ between runs, never their lengths; TLS brings randomness
//! of its own (keys, signatures): with it a few byte counts, and so the
//! pieces, differ too, never the virtual times.
//!
//! * Addresses: Tub `i` listens on `tcp:127.0.0.1:{FIRST_PORT + i}` (its
//!   location, so its FURLs carry it). A dial to one of those reaches that
//!   Tub; any other hint is refused with a [`TransportError`] of kind
//!   `ConnectionRefused`. Closing one end ([`Transport::Close`]) gives the
//!   other end EOF after the bytes already on their way.
//! * Bytes: each direction of a connection is an ordered pipe. Written bytes
//!   arrive [`NetConfig::latency`] later (per direction:
//!   [`Net::set_latency`]), cut at random points when [`NetConfig::split`]
//!   is on (the pieces of one write arrive together). A Tub reads one piece
//!   per connection per [`Net::step`], and only while
//!   [`Tub::wants_input`] says so and the test has not stalled the reader
//!   ([`Net::set_reading`], [`Net::set_tub_reading`]).
//! * Backlog: the bytes of a pipe not read yet, beyond
//!   [`NetConfig::socket_buffer`] (the kernel's share), are reported to the
//!   writer with [`Tub::set_backlog`], so a stalled reader makes the
//!   writer's output pile up and its flow control act.
//! * TLS-less mode ([`NetConfig::clear`]): connections are made with
//!   [`Tub::dial_connected_clear`] / [`Tub::accept_clear`].
//!
//! Driving it: [`Net::step`] does one round (dials due, one piece per
//! connection, due timers, then every drain) and says whether anything
//! moved; [`Net::run`] steps until nothing moves, without touching the
//! clock; [`Net::advance_to_next_deadline`] jumps the clock to the earliest
//! Tub deadline or arrival and runs; [`Net::run_until`] does that up to a
//! time and leaves the clock there; [`Net::drive`] jumps until no byte is in
//! flight; [`Net::wait_for`] steps and jumps until a condition holds.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use foolscap_core::testing::{Net, NetConfig};
//! use foolscap_core::tub::{TubConfig, TubEvent};
//! use foolscap_core::value::Value;
//!
//! // two Tubs, 20 ms apart, bytes cut at random points
//! let config = NetConfig { latency: Duration::from_millis(20), ..NetConfig::default() };
//! let mut net = Net::with_config(config, vec![TubConfig::default(); 2], Instant::now());
//! let (_calc, furl) = net.publish(0, "calc");
//! // Tub 0 answers every call with the number of arguments
//! net.respond_with(0, |call| Ok(Value::int(call.args.len() as i64)));
//! let calc = net.remote(1, &furl);
//! let start = net.now();
//! let call = net[1].call(&calc, "add", &[Value::int(1), Value::int(2)], &[]).unwrap();
//! assert_eq!(net.answer_of(1, call), Ok(Value::int(2)));
//! assert_eq!(net.now() - start, Duration::from_millis(40), "one round trip");
//! // an idle hour passes at once; keepalives keep the connection up
//! net.run_until(start + Duration::from_secs(3600));
//! assert!(net[1].is_connected(calc.connection()));
//! assert!(!net.take(1).iter().any(|e| matches!(e, TubEvent::Disconnected { .. })));
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use crate::broker::{CallError, Failure};
use crate::furl::{Furl, Hint};
use crate::id::{CallId, ConnectionId, DialId, ObjectId};
use crate::identity::{Identity, TubId};
use crate::rng::{Rng, SeededRng};
use crate::tub::{IncomingCall, Transport, TransportError, Tub, TubConfig, TubError, TubEvent};
use crate::value::{RemoteRef, Value};

/// The port of Tub 0; Tub `i` listens on `FIRST_PORT + i`.
pub const FIRST_PORT: u16 = 1234;

/// Steps [`Net::run`] takes before it decides the net never settles.
const MAX_STEPS: usize = 1_000_000;

/// How the simulated network behaves. Start from [`NetConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Seeds the byte splits and every Tub's random source (Tub `i` gets
    /// `SeededRng::new(seed + i + 1)`). Default: 0.
    pub seed: u64,
    /// One-way latency of every direction (one direction can be changed
    /// with [`Net::set_latency`]); a dial takes a round trip. Default: 0.
    pub latency: Duration,
    /// Cut delivered bytes at random points. Default: on.
    pub split: bool,
    /// Connect without TLS ([`Tub::accept_clear`]). Default: off.
    pub clear: bool,
    /// Unread bytes of one direction that do not count as the writer's
    /// backlog (what the kernels' socket buffers would hold). Default:
    /// 64 KiB.
    pub socket_buffer: usize,
    /// How far [`Net::wait_for`] (and the helpers built on it) may move
    /// the clock before it gives up. Default: one hour.
    pub horizon: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            seed: 0,
            latency: Duration::ZERO,
            split: true,
            clear: false,
            socket_buffer: 64 << 10,
            horizon: Duration::from_secs(3600),
        }
    }
}

/// Answers calls as they arrive ([`Net::respond_with`]).
type Responder = Box<dyn FnMut(&IncomingCall) -> Result<Value, Failure>>;

struct Node {
    tub: Tub,
    port: u16,
    /// Off: the Tub reads none of its connections (the test stalled it).
    reading: bool,
    events: Vec<(Instant, TubEvent)>,
    responder: Option<Responder>,
}

/// A Tub's connection: (Tub index, connection).
type EndKey = (usize, ConnectionId);

/// One piece on its way to an end: bytes, or EOF (`None`).
struct Piece {
    at: Instant,
    data: Option<Vec<u8>>,
}

/// One end of a simulated TCP connection.
struct End {
    /// The other end while it is open: what this end writes goes there.
    peer: Option<EndKey>,
    /// What is on its way to this end, in order.
    inbox: VecDeque<Piece>,
    /// Bytes in `inbox`.
    inbox_bytes: usize,
    /// Arrival time of the last piece queued (a pipe never reorders).
    last_at: Option<Instant>,
    /// Off: the test stalled this reader.
    reading: bool,
}

impl End {
    fn new(peer: Option<EndKey>) -> End {
        End {
            peer,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            last_at: None,
            reading: true,
        }
    }
}

/// A [`Transport::Dial`] on its way (a dial takes a round trip).
struct PendingDial {
    at: Instant,
    tub: usize,
    dial: DialId,
    host: String,
    port: u16,
}

/// Two or more Tubs on a simulated network with a virtual clock (see the
/// [module docs](self)). `net[i]` is Tub `i`.
pub struct Net {
    config: NetConfig,
    now: Instant,
    rng: SeededRng,
    nodes: Vec<Node>,
    /// Every open end; a BTreeMap so that runs are deterministic.
    ends: BTreeMap<EndKey, End>,
    dials: Vec<PendingDial>,
    /// One-way latencies set with [`Net::set_latency`], by (from, to).
    latencies: BTreeMap<(usize, usize), Duration>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("tubs", &self.nodes.len())
            .field("sockets", &self.sockets())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Index<usize> for Net {
    type Output = Tub;
    fn index(&self, tub: usize) -> &Tub {
        &self.nodes[tub].tub
    }
}

impl IndexMut<usize> for Net {
    fn index_mut(&mut self, tub: usize) -> &mut Tub {
        &mut self.nodes[tub].tub
    }
}

/// How many values [`tubid_rank`] takes: 32 symbols for each of the
/// first eight characters.
const TUBID_RANKS: u64 = 1 << 40;

/// A tubid's place among all tubids, from its first eight base32
/// characters, numbered in the byte order `TubId` compares by ('2'..'7'
/// before 'a'..'z').
fn tubid_rank(tubid: &TubId) -> u64 {
    tubid.as_str().bytes().take(8).fold(0, |rank, c| {
        let symbol = match c {
            b'2'..=b'7' => c - b'2',
            b'a'..=b'z' => c - b'a' + 6,
            _ => 0,
        };
        rank * 32 + u64::from(symbol)
    })
}

impl Net {
    /// `tubs` Tubs with default settings, on a default network, its
    /// virtual clock starting at `start` (the core reads no clock: a test
    /// passes `Instant::now()`).
    pub fn new(tubs: usize, start: Instant) -> Net {
        Net::with_config(
            NetConfig::default(),
            vec![TubConfig::default(); tubs],
            start,
        )
    }

    /// A Tub per config, on a network configured by `config`, its virtual
    /// clock starting at `start`.
    pub fn with_config(config: NetConfig, tubs: Vec<TubConfig>, start: Instant) -> Net {
        let now = start;
        let mut net = Net {
            rng: SeededRng::new(config.seed ^ 0x6e65_745f_7365_6564),
            config,
            now,
            nodes: Vec::new(),
            ends: BTreeMap::new(),
            dials: Vec::new(),
            latencies: BTreeMap::new(),
        };
        for c in tubs {
            net.add_tub(c);
        }
        net
    }

    /// Adds a Tub listening on the next port; returns its index. Its
    /// identity is fresh, with a tubid larger than every Tub's before it.
    pub fn add_tub(&mut self, config: TubConfig) -> usize {
        let index = self.nodes.len();
        let port = FIRST_PORT + u16::try_from(index).expect("fewer Tubs than ports");
        // tubids grow with the index, so the negotiation master of a
        // connection (the larger tubid) is the same on every run. Each new
        // one lands in the lowest eighth of the room left above the last:
        // taking any larger one would halve that room per Tub on average,
        // with a long tail (one draw near the top, and the next Tub needs
        // millions of key pairs); this way the room shrinks by 7/8 per
        // Tub and the eighth Tub takes about 20 draws.
        let floor = self.nodes.iter().map(|n| n.tub.tubid()).max();
        let low = floor.as_ref().map_or(0, tubid_rank);
        let limit = low + ((TUBID_RANKS - low) / 8).max(1);
        let identity = loop {
            let id = Identity::generate().expect("a fresh identity");
            let tubid = id.tubid();
            if floor.is_none_or(|f| tubid > f) && tubid_rank(&tubid) <= limit {
                break id;
            }
        };
        let seed = self.config.seed.wrapping_add(index as u64 + 1);
        let mut tub = Tub::new(&identity, config, Box::new(SeededRng::new(seed)), self.now)
            .expect("a Tub from a fresh identity");
        tub.set_location(vec![Hint::parse(&format!("tcp:127.0.0.1:{port}"))]);
        self.nodes.push(Node {
            tub,
            port,
            reading: true,
            events: Vec::new(),
            responder: None,
        });
        index
    }

    /// How many Tubs there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no Tubs.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The network settings.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Tub `tub`'s tubid.
    pub fn tubid(&self, tub: usize) -> TubId {
        self.nodes[tub].tub.tubid()
    }

    /// The port Tub `tub` listens on.
    pub fn port(&self, tub: usize) -> u16 {
        self.nodes[tub].port
    }

    /// Sets the one-way latency from Tub `from` to Tub `to` (bytes already
    /// on their way keep theirs; a pipe never reorders).
    pub fn set_latency(&mut self, from: usize, to: usize, latency: Duration) {
        self.latencies.insert((from, to), latency);
    }

    fn latency(&self, from: usize, to: usize) -> Duration {
        self.latencies
            .get(&(from, to))
            .copied()
            .unwrap_or(self.config.latency)
    }

    // ---- the application side ----

    /// A new object of Tub `tub` registered under `name`: its id and FURL.
    pub fn publish(&mut self, tub: usize, name: &str) -> (ObjectId, Furl) {
        let t = &mut self.nodes[tub].tub;
        let object = t.new_object("");
        let furl = t.register(object, Some(name)).expect("a free name");
        (object, furl)
    }

    /// From now on Tub `tub` answers each call as it arrives with what
    /// `responder` returns (those calls are not collected as events).
    pub fn respond_with(
        &mut self,
        tub: usize,
        responder: impl FnMut(&IncomingCall) -> Result<Value, Failure> + 'static,
    ) {
        self.nodes[tub].responder = Some(Box::new(responder));
    }

    /// Tub `tub`'s calls are collected as events again.
    pub fn stop_responding(&mut self, tub: usize) {
        self.nodes[tub].responder = None;
    }

    /// Tub `tub` looks `furl` up; steps (and moves the clock) until the
    /// result arrives.
    pub fn reference(&mut self, tub: usize, furl: &Furl) -> Result<Value, TubError> {
        let lookup = self.nodes[tub].tub.get_reference(furl);
        match self.wait_for(|net| {
            net.take_event(
                tub,
                |e| matches!(e, TubEvent::Reference { lookup: l, .. } if *l == lookup),
            )
        }) {
            TubEvent::Reference { result, .. } => result,
            _ => unreachable!("a Reference event"),
        }
    }

    /// Like [`Net::reference`], for a lookup that must give a remote
    /// reference.
    ///
    /// # Panics
    /// If it gives anything else.
    pub fn remote(&mut self, tub: usize, furl: &Furl) -> RemoteRef {
        match self.reference(tub, furl) {
            Ok(Value::Remote(r)) => r,
            other => panic!("Tub {tub}: no remote reference for {furl}: {other:?}"),
        }
    }

    /// Steps (and moves the clock) until Tub `tub` has the answer to
    /// `call`, and takes it.
    pub fn answer_of(&mut self, tub: usize, call: CallId) -> Result<Value, CallError> {
        let ev = self.wait_for(|net| {
            net.take_event(
                tub,
                |e| matches!(e, TubEvent::Answer { call: c, .. } if *c == call),
            )
        });
        match ev {
            TubEvent::Answer { result, .. } => result,
            _ => unreachable!("an Answer event"),
        }
    }

    /// Answers every call collected for Tub `tub` with `f`; returns how
    /// many. (Nothing moves until the next step.)
    pub fn answer_calls(
        &mut self,
        tub: usize,
        mut f: impl FnMut(&IncomingCall) -> Result<Value, Failure>,
    ) -> usize {
        let calls = self.take_calls(tub);
        for c in &calls {
            let result = f(c);
            // a call whose connection is gone cannot be answered, as in a
            // real application
            let _ = self.nodes[tub].tub.answer(c.id, result);
        }
        calls.len()
    }

    // ---- events ----

    /// Tub `tub`'s events collected so far, oldest first (not taken).
    pub fn events(&self, tub: usize) -> impl Iterator<Item = &TubEvent> {
        self.nodes[tub].events.iter().map(|(_, e)| e)
    }

    /// Takes Tub `tub`'s events.
    pub fn take(&mut self, tub: usize) -> Vec<TubEvent> {
        self.take_timed(tub).into_iter().map(|(_, e)| e).collect()
    }

    /// Takes Tub `tub`'s events with the virtual time each was collected
    /// at.
    pub fn take_timed(&mut self, tub: usize) -> Vec<(Instant, TubEvent)> {
        std::mem::take(&mut self.nodes[tub].events)
    }

    /// Takes Tub `tub`'s first event for which `f` holds.
    pub fn take_event(
        &mut self,
        tub: usize,
        mut f: impl FnMut(&TubEvent) -> bool,
    ) -> Option<TubEvent> {
        let events = &mut self.nodes[tub].events;
        let i = events.iter().position(|(_, e)| f(e))?;
        Some(events.remove(i).1)
    }

    /// Takes Tub `tub`'s incoming calls, leaving its other events.
    pub fn take_calls(&mut self, tub: usize) -> Vec<IncomingCall> {
        let mut calls = Vec::new();
        self.nodes[tub].events.retain(|(_, e)| match e {
            TubEvent::Call(c) => {
                calls.push(c.clone());
                false
            }
            _ => true,
        });
        calls
    }

    /// Takes Tub `tub`'s answers, leaving its other events.
    pub fn take_answers(&mut self, tub: usize) -> Vec<(CallId, Result<Value, CallError>)> {
        let mut answers = Vec::new();
        self.nodes[tub].events.retain(|(_, e)| match e {
            TubEvent::Answer { call, result } => {
                answers.push((*call, result.clone()));
                false
            }
            _ => true,
        });
        answers
    }

    // ---- connections ----

    /// Tub `tub`'s established connection to Tub `peer`.
    pub fn connection(&self, tub: usize, peer: usize) -> Option<ConnectionId> {
        let want = self.tubid(peer);
        let t = &self.nodes[tub].tub;
        self.ends_of(tub)
            .map(|(k, _)| k.1)
            .find(|&c| t.is_connected(c) && t.peer_of(c) == Some(want))
    }

    /// The other end of Tub `tub`'s connection `connection`, while it is
    /// open.
    pub fn peer_end(&self, tub: usize, connection: ConnectionId) -> Option<(usize, ConnectionId)> {
        self.ends.get(&(tub, connection))?.peer
    }

    /// A socket from outside the net that Tub `tub` accepts now and that
    /// never sends a byte nor reads one (a silent attacker): its id on
    /// the Tub, or why [`Tub::accept`] refused it. It stays until the Tub
    /// closes it.
    pub fn connect_silent(&mut self, tub: usize) -> Result<ConnectionId, TubError> {
        let now = self.now;
        let id = self.nodes[tub].tub.accept(now)?;
        self.ends.insert((tub, id), End::new(None));
        Ok(id)
    }

    /// Whether Tub `tub` still has `connection`'s socket open.
    pub fn is_open(&self, tub: usize, connection: ConnectionId) -> bool {
        self.ends.contains_key(&(tub, connection))
    }

    /// Simulated TCP connections with at least one end open.
    pub fn sockets(&self) -> usize {
        self.ends
            .iter()
            .filter(|(k, e)| e.peer.is_none_or(|p| **k < p))
            .count()
    }

    /// Stalls (`false`) or resumes Tub `tub`'s reading of `connection`:
    /// what its peer writes piles up and counts as the peer's backlog.
    pub fn set_reading(&mut self, tub: usize, connection: ConnectionId, reading: bool) {
        if let Some(e) = self.ends.get_mut(&(tub, connection)) {
            e.reading = reading;
        }
    }

    /// Stalls (`false`) or resumes Tub `tub`'s reading of all its
    /// connections, present and future (its timers still run).
    pub fn set_tub_reading(&mut self, tub: usize, reading: bool) {
        self.nodes[tub].reading = reading;
    }

    /// The backlog last reported to Tub `tub` for `connection`: bytes it
    /// wrote that its peer has not read, beyond the socket buffer.
    pub fn backlog(&self, tub: usize, connection: ConnectionId) -> usize {
        self.ends
            .get(&(tub, connection))
            .and_then(|e| e.peer)
            .and_then(|p| self.ends.get(&p))
            .map_or(0, |e| {
                e.inbox_bytes.saturating_sub(self.config.socket_buffer)
            })
    }

    /// Bytes written and not read yet, over every connection.
    pub fn unread_bytes(&self) -> usize {
        self.ends.values().map(|e| e.inbox_bytes).sum()
    }

    fn ends_of(&self, tub: usize) -> impl Iterator<Item = (&EndKey, &End)> {
        self.ends
            .range((tub, ConnectionId(0))..=(tub, ConnectionId(u64::MAX)))
    }

    // ---- driving ----

    /// One round: dials that are due connect, every Tub reads one piece
    /// per connection that has one due, runs its due timers, and is
    /// drained (bytes, transport, events). Returns whether anything moved.
    /// The clock stays.
    pub fn step(&mut self) -> bool {
        let mut moved = self.connect_due();
        for i in 0..self.nodes.len() {
            moved |= self.read(i);
            moved |= self.timeouts(i);
            moved |= self.drain(i);
        }
        moved
    }

    /// Steps until nothing moves. The clock stays.
    ///
    /// # Panics
    /// If the Tubs never settle (a livelock).
    pub fn run(&mut self) {
        for _ in 0..MAX_STEPS {
            if !self.step() {
                return;
            }
        }
        panic!("the net did not settle in {MAX_STEPS} steps");
    }

    /// The earliest future moment something is due: a Tub deadline, a
    /// dial, or bytes in flight (bytes that arrived but are not read do
    /// not count).
    pub fn next_deadline(&self) -> Option<Instant> {
        let tubs = self.nodes.iter().filter_map(|n| n.tub.poll_timeout());
        tubs.chain(self.next_arrival()).min()
    }

    /// The next dial or arrival of bytes, later than now.
    fn next_arrival(&self) -> Option<Instant> {
        let dials = self.dials.iter().map(|d| d.at);
        let bytes = self
            .ends
            .values()
            .filter_map(|e| e.inbox.front())
            .map(|p| p.at)
            .filter(|&t| t > self.now);
        dials.chain(bytes).min()
    }

    /// Runs, then moves the clock to [`Net::next_deadline`] and runs
    /// again. Returns the new time, `None` (clock unchanged) when nothing
    /// is scheduled.
    ///
    /// # Panics
    /// If a Tub keeps a deadline that is already due (a driver would spin).
    pub fn advance_to_next_deadline(&mut self) -> Option<Instant> {
        self.run();
        let next = self.next_deadline()?;
        self.jump(next);
        self.run();
        Some(self.now)
    }

    fn jump(&mut self, to: Instant) {
        if to <= self.now {
            let stuck = self
                .nodes
                .iter()
                .position(|n| n.tub.poll_timeout().is_some_and(|t| t <= self.now));
            panic!("nothing moves at {to:?} though it is due (Tub {stuck:?}'s timer?)");
        }
        self.now = to;
    }

    /// Handles everything due up to `deadline`, moving the clock from one
    /// deadline to the next, and leaves the clock at `deadline` (if it is
    /// later than now).
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            self.run();
            match self.next_deadline() {
                Some(t) if t <= deadline => self.jump(t),
                _ => break,
            }
        }
        if deadline > self.now {
            self.now = deadline;
            self.run();
        }
    }

    /// [`Net::run_until`] `now + d`.
    pub fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs and moves the clock (through any Tub deadlines on the way)
    /// until no byte and no dial is in flight.
    pub fn drive(&mut self) {
        loop {
            self.run();
            if self.next_arrival().is_none() {
                return;
            }
            let next = self.next_deadline().expect("an arrival is scheduled");
            self.jump(next);
        }
    }

    /// Steps, and moves the clock to the next deadline whenever nothing
    /// moves, until `f` gives a value; `f` is asked before every step.
    ///
    /// # Panics
    /// If nothing is scheduled or the clock would pass
    /// [`NetConfig::horizon`] from now first.
    pub fn wait_for<T>(&mut self, mut f: impl FnMut(&mut Net) -> Option<T>) -> T {
        let limit = self.now + self.config.horizon;
        let mut steps = 0;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if self.step() {
                steps += 1;
                assert!(steps < MAX_STEPS, "the net does not settle");
                continue;
            }
            match self.next_deadline() {
                Some(t) if t <= limit => self.jump(t),
                next => panic!(
                    "waited in vain: next deadline {:?} after {:?}",
                    next.map(|t| t - self.now),
                    self.config.horizon
                ),
            }
        }
    }

    /// Dials that are due connect or are refused.
    fn connect_due(&mut self) -> bool {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dials)
            .into_iter()
            .partition(|d| d.at <= now);
        self.dials = later;
        let moved = !due.is_empty();
        for d in due {
            let target = (d.host == "127.0.0.1")
                .then(|| self.nodes.iter().position(|n| n.port == d.port))
                .flatten();
            let Some(j) = target else {
                let refused = TransportError::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                );
                self.nodes[d.tub].tub.dial_failed(d.dial, refused);
                continue;
            };
            self.connect(d.tub, d.dial, j);
        }
        moved
    }

    /// Writes `data` on Tub `tub`'s end of `connection` behind what it
    /// wrote so far, as a hostile peer would: hand-made bytes that the Tub
    /// itself never produced (with [`NetConfig::clear`], plaintext banana
    /// after negotiation). Nothing happens if the end is closed.
    pub fn inject(&mut self, tub: usize, connection: ConnectionId, data: &[u8]) {
        self.send((tub, connection), data);
    }

    /// Tub `i`'s dial reaches Tub `j`, which accepts it.
    fn connect(&mut self, i: usize, dial: DialId, j: usize) {
        let (now, clear) = (self.now, self.config.clear);
        let (me, them) = (self.tubid(i), self.tubid(j));
        let client = &mut self.nodes[i].tub;
        let c = if clear {
            client.dial_connected_clear(dial, now, them)
        } else {
            client.dial_connected(dial, now)
        };
        let server = &mut self.nodes[j].tub;
        let s = if clear {
            server.accept_clear(now, me)
        } else {
            server.accept(now)
        };
        match (c, s) {
            (Some(c), Ok(s)) => {
                self.ends.insert((i, c), End::new(Some((j, s))));
                self.ends.insert((j, s), End::new(Some((i, c))));
            }
            // the client no longer wants it and closes it: the server
            // reads EOF
            (None, Ok(s)) => self.half_open((j, s), i),
            // the server refuses it (closes it at once): the client reads
            // EOF
            (Some(c), Err(_)) => self.half_open((i, c), j),
            (None, Err(_)) => {}
        }
    }

    /// An end whose peer closed at once: it gets EOF.
    fn half_open(&mut self, key: EndKey, from: usize) {
        let mut end = End::new(None);
        let at = self.now + self.latency(from, key.0);
        end.last_at = Some(at);
        end.inbox.push_back(Piece { at, data: None });
        self.ends.insert(key, end);
    }

    /// Tub `i` reads one due piece on each connection it reads.
    fn read(&mut self, i: usize) -> bool {
        let now = self.now;
        let keys: Vec<EndKey> = self.ends_of(i).map(|(k, _)| *k).collect();
        let mut moved = false;
        for key in keys {
            let node = &mut self.nodes[i];
            let Some(end) = self.ends.get_mut(&key) else {
                continue;
            };
            let due = end.inbox.front().is_some_and(|p| p.at <= now);
            if !due || !end.reading || !node.reading || !node.tub.wants_input(key.1) {
                continue;
            }
            let piece = end.inbox.pop_front().expect("due");
            moved = true;
            match piece.data {
                Some(bytes) => {
                    end.inbox_bytes -= bytes.len();
                    node.tub.handle_input(key.1, now, &bytes);
                    self.report_backlog(key);
                }
                None => node.tub.handle_eof(key.1, now),
            }
        }
        moved
    }

    /// Tells the Tub writing to `to` its backlog.
    fn report_backlog(&mut self, to: EndKey) {
        let Some(end) = self.ends.get(&to) else {
            return;
        };
        if let Some((j, c)) = end.peer {
            let backlog = end.inbox_bytes.saturating_sub(self.config.socket_buffer);
            self.nodes[j].tub.set_backlog(c, backlog);
        }
    }

    /// Runs Tub `i`'s timers if one is due; whether its deadline moved.
    fn timeouts(&mut self, i: usize) -> bool {
        let tub = &mut self.nodes[i].tub;
        match tub.poll_timeout() {
            Some(t) if t <= self.now => {
                tub.handle_timeout(self.now);
                tub.poll_timeout() != Some(t)
            }
            _ => false,
        }
    }

    /// Drains Tub `i`: bytes, then transport commands (so a close follows
    /// its connection's last bytes), then events (one round of flow
    /// control).
    fn drain(&mut self, i: usize) -> bool {
        let mut moved = false;
        let mut buf = Vec::new();
        while let Some(c) = self.nodes[i].tub.poll_transmit(&mut buf) {
            moved = true;
            self.send((i, c), &buf);
        }
        while let Some(cmd) = self.nodes[i].tub.poll_transport() {
            moved = true;
            match cmd {
                Transport::Dial { dial, host, port } => {
                    let rtt = match self.nodes.iter().position(|n| n.port == port) {
                        Some(j) => self.latency(i, j) + self.latency(j, i),
                        None => self.config.latency * 2,
                    };
                    self.dials.push(PendingDial {
                        at: self.now + rtt,
                        tub: i,
                        dial,
                        host,
                        port,
                    });
                }
                Transport::Close(c) => self.close((i, c)),
            }
        }
        let now = self.now;
        let node = &mut self.nodes[i];
        while let Some(ev) = node.tub.poll_event() {
            moved = true;
            match (&ev, node.responder.as_mut()) {
                (TubEvent::Call(call), Some(respond)) => {
                    let result = respond(call);
                    // a call whose connection is gone cannot be answered,
                    // as in a real application
                    let _ = node.tub.answer(call.id, result);
                }
                _ => node.events.push((now, ev)),
            }
        }
        moved
    }

    /// Bytes written on `from` go into its peer's pipe (nowhere if the
    /// peer is gone).
    fn send(&mut self, from: EndKey, bytes: &[u8]) {
        let Some(to) = self.ends.get(&from).and_then(|e| e.peer) else {
            return;
        };
        let at = self.now + self.latency(from.0, to.0);
        let pieces = self.cut(bytes);
        let end = self.ends.get_mut(&to).expect("an open peer end");
        let at = end.last_at.map_or(at, |last| last.max(at));
        end.last_at = Some(at);
        for p in pieces {
            end.inbox_bytes += p.len();
            end.inbox.push_back(Piece { at, data: Some(p) });
        }
        self.report_backlog(to);
    }

    /// `from` closes: its peer reads EOF after what is on its way, and
    /// what the peer writes from now on is lost.
    fn close(&mut self, from: EndKey) {
        let Some(end) = self.ends.remove(&from) else {
            return;
        };
        let Some(to) = end.peer else {
            return;
        };
        let at = self.now + self.latency(from.0, to.0);
        if let Some(other) = self.ends.get_mut(&to) {
            other.peer = None;
            let at = other.last_at.map_or(at, |last| last.max(at));
            other.last_at = Some(at);
            other.inbox.push_back(Piece { at, data: None });
        }
        // what the peer wrote to us is gone with our socket
        self.nodes[to.0].tub.set_backlog(to.1, 0);
    }

    /// Cuts `bytes` into pieces: whole, or at random points (often small
    /// pieces, so that every parser meets partial input).
    fn cut(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        if !self.config.split {
            return vec![bytes.to_vec()];
        }
        let mut pieces = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let r = self.random();
            let mut n = 1 + (r % rest.len() as u64) as usize;
            if r >> 63 == 1 {
                n = n.min(1 + ((r >> 32) % 16) as usize);
            }
            let (piece, tail) = rest.split_at(n);
            pieces.push(piece.to_vec());
            rest = tail;
        }
        pieces
    }

    fn random(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiation::NegotiationError;
    use crate::tub::{DialError, DialFailure};

    #[test]
    fn time_moves_only_when_asked() {
        let mut net = Net::new(2, Instant::now());
        let start = net.now();
        assert!(!net.step(), "nothing to do");
        assert_eq!(net.next_deadline(), None);
        assert_eq!(net.advance_to_next_deadline(), None);
        net.run_until(start + Duration::from_secs(5));
        assert_eq!(net.now(), start + Duration::from_secs(5));
        assert!(net.tubid(0) < net.tubid(1));
        assert_eq!((net.port(0), net.port(1)), (FIRST_PORT, FIRST_PORT + 1));
        assert_eq!(
            net[1].location()[0].to_string(),
            format!("tcp:127.0.0.1:{}", FIRST_PORT + 1)
        );
    }

    #[test]
    fn other_hints_are_refused_after_a_round_trip() {
        let config = NetConfig {
            latency: Duration::from_millis(7),
            ..NetConfig::default()
        };
        let mut net = Net::with_config(config, vec![TubConfig::default(); 2], Instant::now());
        let (_, furl) = net.publish(0, "x");
        let start = net.now();
        for hint in ["tcp:127.0.0.1:9", "tcp:example.org:1234"] {
            let elsewhere = Furl::new(furl.tubid, vec![Hint::parse(hint)], "x");
            let Err(TubError::Unreachable { attempts, .. }) = net.reference(1, &elsewhere) else {
                panic!("reached {hint}")
            };
            let [DialFailure {
                error: DialError::Transport(e),
                ..
            }] = &attempts[..]
            else {
                panic!("{attempts:?}")
            };
            assert_eq!(e.kind, std::io::ErrorKind::ConnectionRefused);
        }
        assert_eq!(net.now() - start, Duration::from_millis(28));
        assert_eq!(net.sockets(), 0);
    }

    #[test]
    fn a_refused_accept_is_eof_for_the_client() {
        let server = TubConfig {
            max_negotiating_connections: 0,
            ..TubConfig::default()
        };
        let mut net = Net::with_config(
            NetConfig::default(),
            vec![server, TubConfig::default()],
            Instant::now(),
        );
        let (_, furl) = net.publish(0, "x");
        let Err(e) = net.reference(1, &furl) else {
            panic!("connected")
        };
        assert_eq!(
            e.negotiation_failures().collect::<Vec<_>>(),
            vec![&NegotiationError::Closed]
        );
        assert_eq!(net.sockets(), 0);
        assert_eq!(net.take(0), vec![]);
    }

    #[test]
    fn closing_delivers_the_last_bytes_then_eof() {
        let config = NetConfig {
            latency: Duration::from_millis(3),
            ..NetConfig::default()
        };
        let mut net = Net::with_config(config, vec![TubConfig::default(); 2], Instant::now());
        let (_, furl) = net.publish(0, "x");
        let r = net.remote(1, &furl);
        let call = net[1].call(&r, "m", &[], &[]).unwrap();
        net.drive();
        let [c] = &net.take_calls(0)[..] else {
            panic!("one call")
        };
        // the answer and the close leave together: the answer arrives
        net[0].answer(c.id, Ok(Value::int(5))).unwrap();
        net[0].disconnect(c.id.connection);
        assert_eq!(net.answer_of(1, call), Ok(Value::int(5)));
        net.drive();
        assert!(!net[1].is_connected(r.connection()));
        assert_eq!(net.sockets(), 0);
        assert_eq!(net.unread_bytes(), 0);
    }
}
