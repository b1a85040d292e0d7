//! The application's Tub handle over the foolscap-rs sans-IO core, and
//! its blocking `std::net` engine.
//!
//! [`Tub`] wraps a [`foolscap_core::tub::Tub`] in a mutex, keeps the
//! application's objects ([`Object`]), answer callbacks and timers, and
//! is driven by one of two engines:
//!
//! * threads ([`Tub::new`], [`Tub::with_identity`]): one accept thread per
//!   listener, a reader and a writer thread per connection, a short-lived
//!   thread per outbound dial (host names are resolved there), and one
//!   timer thread for the core's timeouts and [`Tub::after`] callbacks.
//!   Objects are called on the reader thread of the connection the call
//!   arrived on. Output per connection is queued to its writer thread;
//!   above [`MAX_BUFFERED_OUTPUT`] the connection's calls wait and its
//!   reader stops reading until the writer drains;
//! * an event loop ([`Tub::with_driver`], used by `foolscap-mio`): the
//!   loop owns the sockets and calls the [`DrivenTub`] side; objects and
//!   callbacks run on the loop's thread, and other threads' calls wake it
//!   through [`Driver::wake`].
//!
//! The handle is cheap to clone and `Send + Sync`: any thread may call
//! through it. Objects answer through the [`Call`] handle at once or
//! later. Blocking calls ([`Tub::call`]) wait on the caller's thread;
//! inside an object method use [`Tub::call_async`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driven;
mod error;
mod object;
mod threads;

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use foolscap_core::broker::{Failure, ObjectId};
use foolscap_core::furl::{Furl, Hint};
use foolscap_core::identity::{Identity, TubId};
use foolscap_core::negotiation::ConnectionId;
use foolscap_core::rng::SystemRng;
use foolscap_core::tub::{
    CallId, DialId, IncomingCall, IncomingId, LookupId, Tub as CoreTub, TubConfig, TubEvent,
};
use foolscap_core::value::{RemoteRef, Text, Value};

pub use driven::{DrivenTub, Driver, DriverIo, PendingCalls};
pub use error::Error;
pub use object::{Call, Object};

/// How long a TCP connect to one hint may take (threads engine).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Threads engine: bytes queued for one connection's writer thread above
/// which none of that connection's calls start and its reader stops
/// reading (backpressure against a peer that does not read). Under it,
/// at most [`CALLS_PER_ROUND`] calls start per round, so the queue
/// passes the bound by at most that many answers.
pub const MAX_BUFFERED_OUTPUT: usize = 1 << 20;

/// Threads engine: calls from one connection started per round while its
/// output is under [`MAX_BUFFERED_OUTPUT`].
pub const CALLS_PER_ROUND: usize = 16;

type AnswerFn = Box<dyn FnOnce(Result<Value, Error>) + Send>;
type TimerFn = Box<dyn FnOnce() + Send>;
type WatchFn = Box<dyn FnOnce() + Send>;

/// A Tub driven by blocking sockets and threads. Clones share the Tub.
#[derive(Clone)]
pub struct Tub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Tub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tub")
            .field("tubid", &self.shared.tubid)
            .finish_non_exhaustive()
    }
}

struct Shared {
    tubid: TubId,
    identity: Identity,
    state: Mutex<State>,
    /// Wakes the timer thread when the next deadline may have moved.
    timer_wake: Condvar,
    /// Threads engine: a writer's queue fell to the bound, or the Tub
    /// shut down (readers holding back wait on it).
    drained: Condvar,
    engine: Engine,
}

/// What carries a Tub's I/O.
enum Engine {
    /// Threads per socket (this crate).
    Threads,
    /// An event loop that owns the sockets.
    Driven(Arc<dyn Driver>),
}

/// When the last handle goes, the writer threads see their channels close
/// and shut the sockets (the reader threads then end), and the accept
/// threads are woken to notice.
impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        st.shutdown = true;
        match &self.engine {
            Engine::Threads => {
                for addr in &st.listeners {
                    let _ = TcpStream::connect_timeout(addr, Duration::from_millis(200));
                }
            }
            Engine::Driven(d) => d.wake(),
        }
    }
}

use threads::Writer;

struct State {
    core: CoreTub,
    /// Connections with a socket (until their CloseTransport).
    open: HashSet<ConnectionId>,
    /// Calls from peers delivered to objects and not answered yet, per
    /// connection (an event loop stops reading above its limit).
    unanswered: HashMap<ConnectionId, usize>,
    /// Calls from peers not handed to objects yet because the
    /// connection's call budget ([`DriverIo::call_budget`]) ran out
    /// (backpressure), in arrival order.
    held: HashMap<ConnectionId, VecDeque<IncomingCall>>,
    /// Calls in `held`, over all connections.
    held_total: usize,
    /// Timer callbacks due, for the event loop's next [`DrivenTub::drive`].
    due: Vec<TimerFn>,
    /// Threads engine: each connection's writer thread.
    writers: HashMap<ConnectionId, Writer>,
    objects: HashMap<ObjectId, Arc<dyn Object>>,
    calls: HashMap<CallId, AnswerFn>,
    lookups: HashMap<LookupId, AnswerFn>,
    watchers: HashMap<ConnectionId, Vec<(u64, WatchFn)>>,
    next_watch: u64,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    timer_fns: HashMap<u64, TimerFn>,
    next_timer: u64,
    shutdown: bool,
    listeners: Vec<SocketAddr>,
    /// The deadline the timer thread sleeps toward (`None`: awake).
    timer_sleeps_until: Option<Instant>,
}

thread_local! {
    /// Set while a driver thread runs application callbacks: calls and
    /// answers they make leave their output in the core, and the thread
    /// sends it all at once afterwards (one TLS record, one write, for a
    /// whole batch of answers).
    static IN_CALLBACKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Work to do once the lock is released.
enum Action {
    Object(Arc<dyn Object>, Call),
    Answer(AnswerFn, Result<Value, Error>),
    Run(TimerFn),
    Dial(DialId, String, u16),
}

impl Tub {
    /// A Tub with a new identity.
    pub fn new() -> Result<Tub, Error> {
        Self::with_identity(Identity::generate()?, TubConfig::default())
    }

    /// A Tub with the identity in a certFile (created there if missing,
    /// like Python's `Tub(certFile=...)`).
    pub fn with_cert_file(path: impl AsRef<std::path::Path>) -> Result<Tub, Error> {
        Self::with_identity(load_or_create_identity(path)?, TubConfig::default())
    }

    /// A Tub with a given identity and settings (threads engine).
    pub fn with_identity(identity: Identity, config: TubConfig) -> Result<Tub, Error> {
        let tub = Self::build(identity, config, Engine::Threads)?;
        let weak = Arc::downgrade(&tub.shared);
        thread::Builder::new()
            .name("foolscap-timer".into())
            .spawn(move || threads::timer_thread(weak))?;
        Ok(tub)
    }

    /// A Tub whose I/O an event loop carries out: the loop keeps the
    /// [`DrivenTub`] and feeds it socket events; `driver` is how the
    /// handle asks the loop for attention.
    pub fn with_driver(
        identity: Identity,
        config: TubConfig,
        driver: Arc<dyn Driver>,
    ) -> Result<(Tub, DrivenTub), Error> {
        let tub = Self::build(identity, config, Engine::Driven(driver))?;
        let driven = DrivenTub::new(&tub);
        Ok((tub, driven))
    }

    fn build(identity: Identity, config: TubConfig, engine: Engine) -> Result<Tub, Error> {
        let core = CoreTub::new(&identity, config, Box::new(SystemRng), Instant::now())?;
        let shared = Arc::new(Shared {
            tubid: identity.tubid(),
            identity,
            engine,
            state: Mutex::new(State {
                core,
                open: HashSet::new(),
                unanswered: HashMap::new(),
                held: HashMap::new(),
                held_total: 0,
                due: Vec::new(),
                writers: HashMap::new(),
                objects: HashMap::new(),
                calls: HashMap::new(),
                lookups: HashMap::new(),
                watchers: HashMap::new(),
                next_watch: 1,
                timers: BinaryHeap::new(),
                timer_fns: HashMap::new(),
                next_timer: 1,
                shutdown: false,
                listeners: Vec::new(),
                timer_sleeps_until: None,
            }),
            timer_wake: Condvar::new(),
            drained: Condvar::new(),
        });
        Ok(Tub { shared })
    }

    /// This Tub's tubid.
    pub fn tubid(&self) -> TubId {
        self.shared.tubid
    }

    /// This Tub's identity (write it with `to_cert_file` to keep it).
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- listening and objects ----

    /// Listens on `addr` (e.g. `"127.0.0.1:0"` or `"[::1]:0"`) and returns
    /// the bound address. If no location was set yet, FURLs get
    /// `tcp:HOST:PORT` for it (`tcp:[::1]:PORT` for IPv6).
    pub fn listen(&self, addr: impl ToSocketAddrs) -> Result<SocketAddr, Error> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        {
            let mut st = self.lock();
            if st.core.location().is_empty() {
                // the hint holds an IPv6 host bare; writing it brackets it
                st.core.set_location(vec![Hint::from_socket_addr(local)]);
            }
            if st.shutdown {
                return Err(Error::Shutdown);
            }
            st.listeners.push(local);
        }
        match &self.shared.engine {
            Engine::Threads => threads::spawn_acceptor(self, listener)?,
            Engine::Driven(d) => d.listen(listener)?,
        }
        Ok(local)
    }

    /// Sets the connection hints put into FURLs (e.g.
    /// `tcp:example.org:1234`).
    pub fn set_location(&self, hints: &[&str]) {
        let hints = hints.iter().map(|h| Hint::parse(h)).collect();
        self.lock().core.set_location(hints);
    }

    /// Makes `object` reachable: the [`Value::Local`] to put into calls
    /// and answers. Not published under any name; it stays alive while a
    /// peer holds a reference to it.
    pub fn local(&self, object: Arc<dyn Object>) -> Value {
        let mut st = self.lock();
        let id = st.core.new_object(object.interface());
        st.objects.insert(id, object);
        Value::Local(id)
    }

    /// Publishes `object` under `name` (a random swissnum if `None`) and
    /// returns its FURL.
    pub fn register(&self, object: Arc<dyn Object>, name: Option<&str>) -> Result<Furl, Error> {
        let mut st = self.lock();
        let id = st.core.new_object(object.interface());
        st.objects.insert(id, object);
        match st.core.register(id, name) {
            Ok(furl) => Ok(furl),
            Err(e) => {
                st.objects.remove(&id);
                Err(e.into())
            }
        }
    }

    /// Accepts received `copyable`s of this type (see
    /// [`foolscap_core::tub::Tub::register_copyable`]); others are refused
    /// with a Violation, as Python refuses unregistered RemoteCopy types.
    pub fn register_copyable(&self, type_name: &str) {
        self.lock().core.register_copyable(type_name);
    }

    /// Accepts copyables of every type.
    pub fn accept_any_copyable(&self, any: bool) {
        self.lock().core.accept_any_copyable(any);
    }

    /// Withdraws a name given to [`Tub::register`].
    pub fn unregister(&self, name: &str) -> bool {
        let mut st = self.lock();
        let found = st.core.unregister(name).is_some();
        self.finish(st);
        found
    }

    /// The local object behind a [`Value::Local`] id.
    pub fn object(&self, id: ObjectId) -> Option<Arc<dyn Object>> {
        self.lock().objects.get(&id).cloned()
    }

    // ---- references and calls ----

    /// Connects to the Tub of `furl` (or reuses the connection to it) and
    /// returns the reference: a [`Value::Remote`], or [`Value::Local`] for
    /// one of our own FURLs.
    pub fn get_reference(&self, furl: &str, timeout: Duration) -> Result<Value, Error> {
        self.may_block()?;
        let furl = Furl::parse(furl)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.get_reference_async(&furl, move |r| {
            let _ = tx.send(r);
        });
        self.flush_if_deferred();
        rx.recv_timeout(timeout)
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// [`Tub::get_reference`] without waiting: `done` runs with the result.
    pub fn get_reference_async(
        &self,
        furl: &Furl,
        done: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) {
        let mut st = self.lock();
        let lookup = st.core.get_reference(furl);
        st.lookups.insert(lookup, Box::new(done));
        self.finish(st);
    }

    /// Calls `method` and waits for the answer. Do not call it from an
    /// [`Object::call`] (use [`Tub::call_async`]): the answer may need the
    /// very thread that waits.
    pub fn call(
        &self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        timeout: Duration,
    ) -> Result<Value, Error> {
        self.may_block()?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.call_async(target, method, args, kwargs, move |r| {
            let _ = tx.send(r);
        })?;
        self.flush_if_deferred();
        rx.recv_timeout(timeout)
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Calls `method`; `done` runs with the answer (on a driver thread: it
    /// must not block).
    pub fn call_async(
        &self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        done: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        let mut st = self.lock();
        let call = st.core.call(target, method, args, kwargs)?;
        st.calls.insert(call, Box::new(done));
        self.finish(st);
        Ok(())
    }

    /// Python's `callRemoteOnly`: sends the call, wants no answer.
    pub fn call_only(
        &self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<(), Error> {
        let mut st = self.lock();
        st.core.call_only(target, method, args, kwargs)?;
        self.finish(st);
        Ok(())
    }

    pub(crate) fn answer(
        &self,
        id: IncomingId,
        result: Result<Value, Failure>,
    ) -> Result<(), Error> {
        let mut st = self.lock();
        if id.req_id != 0 {
            if let Some(n) = st.unanswered.get_mut(&id.connection) {
                *n = n.saturating_sub(1);
            }
        }
        let r = st.core.answer(id, result);
        self.finish(st);
        r.map_err(Error::from)
    }

    /// Whether the connection `reference` lives on is still open.
    pub fn is_connected(&self, reference: &RemoteRef) -> bool {
        self.lock()
            .core
            .is_connected(ConnectionId(reference.connection()))
    }

    /// Drops the connection `reference` arrived over.
    pub fn disconnect(&self, reference: &RemoteRef) {
        let mut st = self.lock();
        st.core.disconnect(ConnectionId(reference.connection()));
        self.finish(st);
    }

    /// Runs `f` when the connection of `reference` ends (at once if it
    /// already has). Returns a token for [`Tub::cancel_disconnect_watch`].
    pub fn notify_on_disconnect(
        &self,
        reference: &RemoteRef,
        f: impl FnOnce() + Send + 'static,
    ) -> u64 {
        let mut st = self.lock();
        let conn = ConnectionId(reference.connection());
        let token = st.next_watch;
        st.next_watch += 1;
        if st.core.is_connected(conn) {
            st.watchers
                .entry(conn)
                .or_default()
                .push((token, Box::new(f)));
            drop(st);
        } else {
            drop(st);
            f();
        }
        token
    }

    /// Forgets a [`Tub::notify_on_disconnect`] callback.
    pub fn cancel_disconnect_watch(&self, token: u64) {
        let mut removed = Vec::new();
        let mut st = self.lock();
        for w in st.watchers.values_mut() {
            if let Some(i) = w.iter().position(|(t, _)| *t == token) {
                removed.push(w.remove(i));
            }
        }
        // dropped without the lock: a callback may own a `Call`, whose drop
        // answers through the Tub
        drop(st);
        drop(removed);
    }

    /// Runs `f` after `delay` (on the timer thread, or the event loop's).
    pub fn after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        let id = st.next_timer;
        st.next_timer += 1;
        st.timers
            .push(std::cmp::Reverse((Instant::now() + delay, id)));
        st.timer_fns.insert(id, Box::new(f));
        drop(st);
        match &self.shared.engine {
            Engine::Threads => self.shared.timer_wake.notify_one(),
            Engine::Driven(d) => d.wake(),
        }
    }

    /// Closes every connection and listener at once; outstanding calls
    /// (ours and lookups) fail with [`Error::Shutdown`], calls from peers
    /// not answered yet are lost with their connection.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        let mut failed: Vec<AnswerFn> = st.calls.drain().map(|(_, f)| f).collect();
        failed.extend(st.lookups.drain().map(|(_, f)| f));
        let conns: Vec<ConnectionId> = st.open.iter().copied().collect();
        for c in conns {
            st.core.disconnect(c);
        }
        self.finish(st);
        let actions = failed
            .into_iter()
            .map(|f| Action::Answer(f, Err(Error::Shutdown)))
            .collect();
        self.run(actions);
        self.stop_listening();
        if let Engine::Threads = &self.shared.engine {
            self.shared.timer_wake.notify_all();
            self.shared.drained.notify_all();
        }
    }

    /// A clean shutdown: stops listening, lets the answers to calls
    /// already received go out (waiting at most `grace` for them), then
    /// [`Tub::shutdown`]. Waits on the calling thread, which must not be
    /// an event loop's.
    pub fn shutdown_within(&self, grace: Duration) -> Result<(), Error> {
        self.may_block()?;
        let deadline = Instant::now() + grace;
        self.stop_listening();
        while self.calls_to_answer() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        self.shutdown();
        Ok(())
    }

    /// Stops accepting connections on every listener (the connections
    /// stay open; [`Tub::listen`] may listen again).
    pub fn stop_listening(&self) {
        let listeners = std::mem::take(&mut self.lock().listeners);
        match &self.shared.engine {
            Engine::Threads => {
                for addr in listeners {
                    // wake the accept thread so it sees it is done
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
                }
            }
            Engine::Driven(d) => d.stop_listening(),
        }
    }

    /// Calls from peers, over all connections, that have not been
    /// answered yet (started or still held back).
    pub fn calls_to_answer(&self) -> usize {
        let st = self.lock();
        st.unanswered.values().sum::<usize>() + st.held_total
    }

    /// Blocking waits would stall an event loop's thread (the answer
    /// needs that very thread).
    fn may_block(&self) -> Result<(), Error> {
        match &self.shared.engine {
            Engine::Driven(d) if d.is_loop_thread() => Err(Error::WouldStallLoop),
            _ => Ok(()),
        }
    }

    // ---- the engine ----

    /// Moves the core's output to the sockets and its events to the
    /// application, then releases the lock and runs the callbacks. Inside
    /// callbacks this is left to the end of the batch. An event loop does
    /// this on its own thread once woken.
    fn finish(&self, st: MutexGuard<'_, State>) {
        match &self.shared.engine {
            Engine::Threads => {
                if IN_CALLBACKS.with(|c| c.get()) {
                    return;
                }
                self.finish_now(st)
            }
            Engine::Driven(d) => {
                drop(st);
                d.wake();
            }
        }
    }

    /// A blocking wait inside a callback must not sit on deferred output.
    fn flush_if_deferred(&self) {
        if matches!(self.shared.engine, Engine::Threads) && IN_CALLBACKS.with(|c| c.get()) {
            let st = self.lock();
            self.finish_now(st);
        }
    }

    fn finish_now(&self, mut st: MutexGuard<'_, State>) {
        let mut writers = std::mem::take(&mut st.writers);
        let mut io = threads::WriterIo {
            writers: &mut writers,
            dials: Vec::new(),
        };
        let mut actions = self.process(&mut st, &mut io);
        actions.append(&mut io.dials);
        st.writers = writers;
        let wake = st.timer_sleeps_until.is_some_and(|sleeping| {
            let next_timer = st.timers.peek().map(|r| r.0 .0);
            let next = match (st.core.poll_timeout(), next_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            next.is_some_and(|n| n < sleeping)
        });
        drop(st);
        if wake {
            self.shared.timer_wake.notify_one();
        }
        self.run(actions);
    }

    /// Hands the core's output to `io` and turns its events into work for
    /// the application, under the lock. Calls from peers go to objects
    /// while their connection's [`DriverIo::call_budget`] lasts; the rest
    /// wait in `held`, in order, for a later round.
    fn process(&self, st: &mut State, io: &mut dyn DriverIo) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut buf = Vec::new();
        // calls delivered this round, per connection
        let mut delivered: HashMap<ConnectionId, usize> = HashMap::new();
        if !st.held.is_empty() {
            // the answers of the last round count against the budgets
            while let Some(conn) = st.core.poll_transmit(&mut buf) {
                io.transmit(conn, &mut buf);
            }
            self.release_held(st, io, &mut delivered, &mut actions);
        }
        loop {
            while let Some(conn) = st.core.poll_transmit(&mut buf) {
                io.transmit(conn, &mut buf);
            }
            let Some(ev) = st.core.poll_event() else {
                break;
            };
            match ev {
                TubEvent::Dial { dial, host, port } => io.dial(dial, host, port),
                TubEvent::CloseTransport(conn) => {
                    st.open.remove(&conn);
                    st.unanswered.remove(&conn);
                    if let Some(q) = st.held.remove(&conn) {
                        st.held_total -= q.len();
                    }
                    io.close(conn);
                }
                TubEvent::Connected { .. } => {}
                TubEvent::Disconnected { connection, .. } => {
                    for (_, f) in st.watchers.remove(&connection).unwrap_or_default() {
                        actions.push(Action::Run(f));
                    }
                }
                TubEvent::Reference { lookup, result } => {
                    if let Some(f) = st.lookups.remove(&lookup) {
                        actions.push(Action::Answer(f, result.map_err(Error::from)));
                    }
                }
                TubEvent::Answer { call, result } => {
                    if let Some(f) = st.calls.remove(&call) {
                        actions.push(Action::Answer(f, result.map_err(Error::from)));
                    }
                }
                TubEvent::Call(c) => {
                    let conn = c.id.connection;
                    let used = delivered.get(&conn).copied().unwrap_or(0);
                    let waiting = st.held.get(&conn).is_some_and(|q| !q.is_empty());
                    if waiting || io.call_budget(conn) <= used {
                        st.held.entry(conn).or_default().push_back(c);
                        st.held_total += 1;
                    } else {
                        *delivered.entry(conn).or_default() += 1;
                        self.deliver(st, c, &mut actions);
                    }
                }
                TubEvent::ObjectUnused(id) => {
                    st.objects.remove(&id);
                }
            }
        }
        actions
    }

    /// Hands held calls to their objects as far as the budgets allow.
    fn release_held(
        &self,
        st: &mut State,
        io: &mut dyn DriverIo,
        delivered: &mut HashMap<ConnectionId, usize>,
        actions: &mut Vec<Action>,
    ) {
        let conns: Vec<ConnectionId> = st.held.keys().copied().collect();
        for conn in conns {
            let used = delivered.entry(conn).or_default();
            let budget = io.call_budget(conn);
            while *used < budget {
                let Some(c) = st.held.get_mut(&conn).and_then(VecDeque::pop_front) else {
                    break;
                };
                *used += 1;
                st.held_total -= 1;
                self.deliver(st, c, actions);
            }
            if st.held.get(&conn).is_some_and(VecDeque::is_empty) {
                st.held.remove(&conn);
            }
        }
    }

    /// Hands one call from a peer to its object (or answers it with a
    /// failure when the object is gone).
    fn deliver(&self, st: &mut State, c: IncomingCall, actions: &mut Vec<Action>) {
        if c.id.req_id != 0 {
            *st.unanswered.entry(c.id.connection).or_default() += 1;
        }
        let call = Call {
            tub: self.clone(),
            id: c.id,
            object: c.object,
            caller: c.caller,
            method: c.method,
            args: c.args,
            kwargs: c.kwargs,
            answered: false,
        };
        match st.objects.get(&c.object) {
            Some(obj) => actions.push(Action::Object(obj.clone(), call)),
            None => {
                let mut call = call;
                call.answered = true;
                if c.id.req_id != 0 {
                    if let Some(n) = st.unanswered.get_mut(&c.id.connection) {
                        *n = n.saturating_sub(1);
                    }
                }
                let f = Failure::new("builtins.KeyError", format!("no local object {}", c.object));
                let _ = st.core.answer(c.id, Err(f));
            }
        }
    }

    /// Runs callbacks without the lock, then sends what they produced.
    fn run(&self, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        if let Engine::Driven(d) = &self.shared.engine {
            self.run_actions(actions);
            d.wake();
            return;
        }
        let outer = IN_CALLBACKS.with(|c| c.replace(true));
        self.run_actions(actions);
        if !outer {
            IN_CALLBACKS.with(|c| c.set(false));
            let st = self.lock();
            self.finish_now(st);
        }
    }

    /// A panicking object or callback costs only its own call: the panic
    /// is caught here (an unanswered [`Call`] answers with a failure as it
    /// unwinds) and the driver thread goes on.
    fn run_actions(&self, actions: Vec<Action>) {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        for a in actions {
            match a {
                Action::Object(obj, call) => {
                    let _ = catch_unwind(AssertUnwindSafe(|| obj.call(call)));
                }
                Action::Answer(f, r) => {
                    let _ = catch_unwind(AssertUnwindSafe(|| f(r)));
                }
                Action::Run(f) => {
                    let _ = catch_unwind(AssertUnwindSafe(f));
                }
                Action::Dial(dial, host, port) => threads::spawn_dial(self, dial, host, port),
            }
        }
    }
}

/// The identity in a certFile, or a new one written there if the file is
/// missing (like Python's `Tub(certFile=...)`).
pub fn load_or_create_identity(path: impl AsRef<std::path::Path>) -> Result<Identity, Error> {
    let path = path.as_ref();
    match std::fs::read(path) {
        Ok(text) => Ok(Identity::from_cert_file(text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate()?;
            std::fs::write(path, id.to_cert_file())?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

/// The remote reference inside a value, if it is one.
pub fn as_remote(v: &Value) -> Option<&RemoteRef> {
    match v.unanchored() {
        Value::Remote(r) => Some(r),
        _ => None,
    }
}
