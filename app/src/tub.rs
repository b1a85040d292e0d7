//! The application's Tub handle: one core Tub behind a mutex, with the
//! application's objects, answer callbacks and timers, moved by whichever
//! engine made it.

// hashbrown's seeded foldhash, not SipHash: looked up on every call and
// answer (issue 16).
use hashbrown::{HashMap, HashSet};
use std::collections::{BinaryHeap, VecDeque};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foolscap_core::broker::{CallError, Failure};
use foolscap_core::furl::{Furl, Hint};
use foolscap_core::id::{CallId, ConnectionId, IncomingId, LookupId, ObjectId};
use foolscap_core::identity::{Identity, TubId};
use foolscap_core::rng::SystemRng;
use foolscap_core::schema::InterfaceSchema;
use foolscap_core::tub::{
    IncomingCall, NameLookup, Transport, Tub as CoreTub, TubConfig, TubEvent,
};
use foolscap_core::value::{RemoteRef, Text, Value};

use crate::driven::{DrivenTub, Driver, DriverIo, Flushed};
use crate::{Call, Error, Object};

pub(crate) type AnswerFn = Box<dyn FnOnce(Result<Value, Error>) + Send>;
type TimerFn = Box<dyn FnOnce() + Send>;

/// The connection id of calls to our own objects (no connection carries
/// them; no real connection gets this id).
pub(crate) const LOCAL_CONNECTION: ConnectionId = ConnectionId(u64::MAX);
type WatchFn = Box<dyn FnOnce() + Send>;
type ConnectionWatchFn = Arc<dyn Fn(&TubEvent) + Send + Sync>;
/// What a name lookup handler answers ([`Tub::set_name_lookup`]).
pub type NameLookupResult = Result<Option<Arc<dyn Object>>, Failure>;
type NameLookupFn = Arc<dyn Fn(&str) -> NameLookupResult + Send + Sync>;

/// What a call is made on: one of a peer's objects, or one of ours (a
/// reference that came home, Python's `LocalReferenceable`).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A peer's object, called over its connection.
    Remote(&'a RemoteRef),
    /// One of this Tub's objects, called on a later turn of the engine.
    Local(ObjectId),
}

/// Anything [`Tub::call`] and its siblings can call: a [`RemoteRef`], or a
/// [`Value`] holding a [`Value::Remote`] or a [`Value::Local`], so an
/// object does not need to know whether a reference it received is one of
/// its peer's objects or one of its own come home.
pub trait Callable {
    /// The reference, `None` when the value is not one.
    fn target(&self) -> Option<Target<'_>>;

    /// Python's type name of what is not a reference (for the error).
    fn kind(&self) -> &'static str {
        "reference"
    }
}

impl Callable for RemoteRef {
    fn target(&self) -> Option<Target<'_>> {
        Some(Target::Remote(self))
    }
}

impl Callable for Value {
    fn target(&self) -> Option<Target<'_>> {
        match self.unanchored() {
            Value::Remote(r) => Some(Target::Remote(r)),
            Value::Local(id) => Some(Target::Local(*id)),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        self.unanchored().type_name()
    }
}

impl<T: Callable + ?Sized> Callable for &T {
    fn target(&self) -> Option<Target<'_>> {
        (**self).target()
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

/// A Tub: its identity, objects and connections. Clones share the Tub;
/// the handle is `Send + Sync`, so any thread may call through it. An
/// engine makes it (`foolscap_threads::tub`, `foolscap_mio::Runtime::tub`,
/// or any [`Driver`] with [`Tub::with_driver`]).
#[derive(Clone)]
pub struct Tub {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Tub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tub")
            .field("tubid", &self.shared.tubid)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    tubid: TubId,
    identity: Identity,
    state: Mutex<State>,
    /// Notified when the last call from a peer was answered
    /// ([`Tub::shutdown_within`] waits on it).
    answered: Condvar,
    driver: Arc<dyn Driver>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.driver.release();
    }
}

pub(crate) struct State {
    pub(crate) core: CoreTub,
    /// Connections with a socket (until their close).
    pub(crate) open: HashSet<ConnectionId>,
    pub(crate) shutdown: bool,
    /// Threads asleep in [`Tub::wait_for_answers`] (an answer notifies
    /// `Shared::answered` only while one waits).
    answer_waiters: usize,
    objects: HashMap<ObjectId, Arc<dyn Object>>,
    calls: HashMap<CallId, AnswerFn>,
    lookups: HashMap<LookupId, AnswerFn>,
    watchers: HashMap<ConnectionId, Vec<(u64, WatchFn)>>,
    next_watch: u64,
    /// Observers of every connection's news ([`Tub::watch_connections`]).
    connection_watchers: Vec<ConnectionWatchFn>,
    /// [`Tub::set_name_lookup`]'s handler.
    name_lookup: Option<NameLookupFn>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    timer_fns: HashMap<u64, TimerFn>,
    next_timer: u64,
    /// Timer callbacks due, for the next drive.
    due: Vec<TimerFn>,
    /// Reused output buffer.
    buf: Vec<u8>,
    /// [`Tub::connect_to`]'s reconnectors, stopped at shutdown.
    pub(crate) reconnectors: Vec<crate::reconnect::Handle>,
    /// Where the Tub's own log events go, and which it writes.
    pub(crate) log: crate::logging::LogConfig,
    /// Log gatherers to report to ([`Tub::set_log_gatherer_furl`]).
    pub(crate) log_gatherers: crate::log_gatherer::LogGatherers,
    /// The logport and its FURL file ([`Tub::logport`]).
    pub(crate) logport: crate::logport::publisher::TubLogport,
    /// Connections whose calls a drive is running: one call of a
    /// connection at a time, in arrival order ([`Tub::drive`]).
    pub(crate) in_hand: HashMap<ConnectionId, InHand>,
    /// Connections in `in_hand` whose drive let go (its call waits for
    /// an answer): the next drive takes their queued calls.
    orphaned: Vec<ConnectionId>,
}

/// The calls of one connection while a drive runs them ([`Tub::drive`]).
pub(crate) struct InHand {
    /// The drive that runs them (`None`: it let go while its call waits
    /// in a blocking call; the next drive takes the queue).
    owner: Option<u64>,
    /// The connection's calls polled since, in arrival order: each
    /// starts once the one before it returned.
    pub(crate) queue: VecDeque<(Arc<dyn Object>, Call)>,
    /// The queue was not empty since the last wake-up: while it is not,
    /// the connection is not read ([`DrivenTub::wants_input`]), so the
    /// engine hears when it empties.
    held_back: bool,
}

impl State {
    /// The earliest of the core's deadlines and the application's timers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let app = self.timers.peek().map(|r| r.0 .0);
        match (self.core.poll_timeout(), app) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the core's timers due at `now`; application timers due move
    /// to `due`, for the next drive.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(std::cmp::Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(f) = self.timer_fns.remove(&id) {
                self.due.push(f);
            }
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
    }

    /// What a flush left for a drive: events, due timer callbacks, and the
    /// next deadline.
    pub(crate) fn after_flush(&self) -> Flushed {
        Flushed {
            drive: self.core.has_events() || !self.due.is_empty() || !self.orphaned.is_empty(),
            next_timeout: self.next_deadline(),
        }
    }

    /// Moves the core's bytes and transport commands to `io` (bytes
    /// first, so a close follows its connection's last bytes).
    pub(crate) fn flush(&mut self, io: &mut dyn DriverIo) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(conn) = self.core.poll_transmit(&mut buf) {
            let queued = io.transmit(conn, &mut buf);
            self.core.set_backlog(conn, queued);
        }
        // an engine may hand back a buffer of a burst's size: not kept
        if buf.capacity() <= 64 * 1024 {
            self.buf = buf;
        }
        while let Some(cmd) = self.core.poll_transport() {
            match cmd {
                Transport::Dial { dial, host, port } => io.dial(dial, host, port),
                Transport::Close(conn) => {
                    self.open.remove(&conn);
                    io.close(conn);
                }
                _ => {}
            }
        }
    }
}

thread_local! {
    /// The Tubs this thread is driving (running their callbacks) right
    /// now, with each drive's token: work those callbacks create is left
    /// to that drive, so a whole batch of answers shares one TLS record
    /// and one write.
    static DRIVING: std::cell::RefCell<Vec<(usize, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The calls running on this thread (innermost last): Tub, drive
    /// token and connection, so a call that blocks lets go of its own
    /// connection (and of no other the drive holds).
    static RUNNING: std::cell::RefCell<Vec<(usize, u64, ConnectionId)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// What is left of the batch of each drive on this thread (innermost
    /// last): a call that lets go of its connection takes the later
    /// calls of that connection out of it, to run after it elsewhere.
    static BATCHES: std::cell::RefCell<Vec<Batch>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The rest of one drive's round of work ([`Tub::run_actions`]).
struct Batch {
    key: usize,
    token: u64,
    rest: VecDeque<Action>,
}

/// Tokens of drives (owners of [`InHand`] connections; 0 is none).
static NEXT_DRIVE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Work to do once the lock is released.
enum Action {
    Object(Arc<dyn Object>, Call),
    Answer(AnswerFn, Result<Value, Error>),
    Run(TimerFn),
}

impl Tub {
    /// A Tub with `identity` and `config` whose I/O `driver` carries out:
    /// the engine keeps the [`DrivenTub`] and feeds it socket events.
    pub fn with_driver(
        identity: Identity,
        config: TubConfig,
        driver: Arc<dyn Driver>,
    ) -> Result<(Tub, DrivenTub), Error> {
        let core = CoreTub::new(&identity, config, Box::new(SystemRng), Instant::now())?;
        let shared = Arc::new(Shared {
            tubid: identity.tubid(),
            identity,
            driver,
            answered: Condvar::new(),
            state: Mutex::new(State {
                core,
                open: HashSet::new(),
                shutdown: false,
                answer_waiters: 0,
                objects: HashMap::new(),
                calls: HashMap::new(),
                lookups: HashMap::new(),
                watchers: HashMap::new(),
                next_watch: 1,
                connection_watchers: Vec::new(),
                name_lookup: None,
                timers: BinaryHeap::new(),
                timer_fns: HashMap::new(),
                next_timer: 1,
                due: Vec::new(),
                buf: Vec::new(),
                reconnectors: Vec::new(),
                log: crate::logging::LogConfig::new(),
                log_gatherers: Default::default(),
                logport: Default::default(),
                in_hand: HashMap::new(),
                orphaned: Vec::new(),
            }),
        });
        let driven = DrivenTub {
            shared: Arc::downgrade(&shared),
        };
        Ok((Tub { shared }, driven))
    }

    /// This Tub's tubid.
    pub fn tubid(&self) -> TubId {
        self.shared.tubid
    }

    /// This Tub's identity (write it with `to_cert_file` to keep it).
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- listening and objects ----

    /// Listens on `addr` (e.g. `"127.0.0.1:0"` or `"[::1]:0"`) and returns
    /// the bound address. If no location was set yet, FURLs get
    /// `tcp:HOST:PORT` for it.
    pub fn listen(&self, addr: impl ToSocketAddrs) -> Result<SocketAddr, Error> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        {
            let mut st = self.lock();
            if st.shutdown {
                return Err(Error::Shutdown);
            }
            if st.core.location().is_empty() {
                st.core.set_location(vec![Hint::from_socket_addr(local)]);
            }
        }
        self.shared.driver.listen(listener)?;
        self.location_given();
        self.connect_to_log_gatherers();
        Ok(local)
    }

    /// Sets the connection hints put into FURLs (e.g.
    /// `tcp:example.org:1234`).
    pub fn set_location(&self, hints: &[&str]) {
        let hints = hints.iter().map(|h| Hint::parse(h)).collect();
        self.lock().core.set_location(hints);
        self.location_given();
        self.connect_to_log_gatherers();
    }

    /// Makes `object` reachable: the [`Value::Local`] to put into calls
    /// and answers. Not published under any name; it stays alive while a
    /// peer holds a reference to it.
    pub fn local(&self, object: Arc<dyn Object>) -> Value {
        let mut st = self.lock();
        let id = match object.schema() {
            Some(schema) => st.core.new_object_with_schema(schema),
            None => st.core.new_object(object.interface()),
        };
        st.objects.insert(id, object);
        Value::Local(id)
    }

    /// Publishes `object` under `name` (a random swissnum if `None`) and
    /// returns its FURL.
    pub fn register(&self, object: Arc<dyn Object>, name: Option<&str>) -> Result<Furl, Error> {
        let mut st = self.lock();
        let id = match object.schema() {
            Some(schema) => st.core.new_object_with_schema(schema),
            None => st.core.new_object(object.interface()),
        };
        st.objects.insert(id, object);
        match st.core.register(id, name) {
            Ok(furl) => Ok(furl),
            Err(e) => {
                st.objects.remove(&id);
                Err(e.into())
            }
        }
    }

    /// Accepts received copyables of the schema's type and checks their
    /// attributes against it wherever they arrive (Python's
    /// `stateSchema`).
    pub fn register_copyable_schema(&self, schema: Arc<foolscap_core::schema::CopyableSchema>) {
        self.lock().core.register_copyable_schema(schema);
    }

    /// Makes RemoteInterface `schema` known to this Tub: references
    /// announced with its name are checked against it when we call them,
    /// as Python checks references whose interface it knows.
    pub fn add_interface(&self, schema: Arc<InterfaceSchema>) {
        self.lock().core.add_interface(schema);
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
        let found = self.lock().core.unregister(name).is_some();
        self.finish();
        found
    }

    /// Asks `handler` for the names no registered object holds, as
    /// Python's `Tub.registerNameLookupHandler` does: when a peer looks up
    /// a name (a FURL's swissnum) that [`Tub::register`] did not give,
    /// `handler` gets it and answers
    ///
    /// * `Ok(Some(object))`: the peer gets a reference to `object`, which
    ///   stays alive while the peer holds it. The object's FURL is the
    ///   looked-up one, but it is not registered: the next lookup of the
    ///   name asks `handler` again (Python's flappserver builds a fresh
    ///   service object each time).
    /// * `Ok(None)`: the lookup fails with Python's `KeyError`, "unable to
    ///   find reference for name starting with 'XX'".
    /// * `Err(failure)`: the lookup fails with `failure` (Python sends the
    ///   exception its handler raised). A handler that panics fails the
    ///   lookup with a `builtins.RuntimeError`.
    ///
    /// `handler` runs on the engine's thread that handles the peer's
    /// connection, as the objects' calls do, without the Tub's lock: it
    /// may use the Tub. One handler at a time (Python keeps a list and
    /// asks each in turn: chain them in `handler`); a second call replaces
    /// the first. Lookups of our own FURLs ([`Tub::get_reference`]) see
    /// only the registered names.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use foolscap_app::{Call, Object, Tub};
    /// use foolscap_core::broker::Failure;
    /// use foolscap_core::value::Value;
    ///
    /// /// Answers every call with the name it was found under.
    /// struct Named(String);
    ///
    /// impl Object for Named {
    ///     fn call(&self, call: Call) {
    ///         call.answer(Value::str(&self.0));
    ///     }
    /// }
    ///
    /// let server = foolscap_threads::new_tub().unwrap();
    /// server.listen("127.0.0.1:0").unwrap();
    /// server.set_name_lookup(|name| match name {
    ///     "broken" => Err(Failure::new("builtins.ValueError", "'broken'")),
    ///     n if n.starts_with("user-") => Ok(Some(Arc::new(Named(n.to_owned())) as _)),
    ///     _ => Ok(None),
    /// });
    /// // a FURL of the server's: its tubid and hints, another swissnum
    /// let anchor = server.register(Arc::new(Named("anchor".into())), None).unwrap();
    /// let furl = |name: &str| anchor.to_string().replace(&anchor.swissnum, name);
    ///
    /// let client = foolscap_threads::new_tub().unwrap();
    /// let t = Duration::from_secs(30);
    /// let alice = client.get_reference(&furl("user-alice"), t).unwrap();
    /// let answer = client.call(&alice, "whoami", &[], &[], t).unwrap();
    /// assert_eq!(answer.as_str(), Some("user-alice"));
    /// assert!(client.get_reference(&furl("nobody"), t).is_err());
    /// assert!(client.get_reference(&furl("broken"), t).is_err());
    /// ```
    pub fn set_name_lookup(
        &self,
        handler: impl Fn(&str) -> NameLookupResult + Send + Sync + 'static,
    ) {
        let mut st = self.lock();
        st.name_lookup = Some(Arc::new(handler));
        st.core.set_name_lookup(true);
    }

    /// Removes [`Tub::set_name_lookup`]'s handler: unknown names fail at
    /// once again.
    pub fn clear_name_lookup(&self) {
        let mut st = self.lock();
        st.name_lookup = None;
        st.core.set_name_lookup(false);
    }

    /// Runs the name lookup handler for `lookup` (without the lock) and
    /// answers it.
    fn run_name_lookup(&self, handler: Option<NameLookupFn>, lookup: NameLookup) {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        let result = match handler {
            Some(h) => catch_unwind(AssertUnwindSafe(|| h(&lookup.name))).unwrap_or_else(|_| {
                Err(Failure::new(
                    "builtins.RuntimeError",
                    "the name lookup handler panicked",
                ))
            }),
            None => Ok(None),
        };
        let mut st = self.lock();
        let result = result.map(|found| {
            found.map(|object| {
                let id = match object.schema() {
                    Some(schema) => st.core.new_object_with_schema(schema),
                    None => st.core.new_object(object.interface()),
                };
                st.objects.insert(id, object);
                id
            })
        });
        let _ = st.core.answer_name_lookup(lookup.id, result);
        drop(st);
        self.finish();
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
        self.wait(rx, timeout)
    }

    /// [`Tub::get_reference`] without waiting: `done` runs with the result
    /// (on an engine thread: it must not block).
    pub fn get_reference_async(
        &self,
        furl: &Furl,
        done: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) {
        let mut st = self.lock();
        let lookup = st.core.get_reference(furl);
        st.lookups.insert(lookup, Box::new(done));
        drop(st);
        self.finish();
    }

    /// Calls `method` and waits for the answer. Not from inside an
    /// [`Object::call`] or a callback (use [`Tub::call_async`]): the
    /// answer may need the very thread that waits.
    pub fn call(
        &self,
        target: &(impl Callable + ?Sized),
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
        self.wait(rx, timeout)
    }

    /// Calls `method`; `done` runs with the answer (on an engine thread:
    /// it must not block). `target` may be one of our own objects (a
    /// [`Value::Local`] that came home): the call then starts on a later
    /// turn of the engine, never inside this one, as Python's
    /// `LocalReferenceable` does (a call made inside a drive runs after
    /// the callbacks of that drive; on the threads engine another engine
    /// thread may take it up meanwhile, as calls of other connections
    /// may run beside others there), and its failure arrives as [`Error::Call`] with the
    /// object's [`Failure`].
    pub fn call_async(
        &self,
        target: &(impl Callable + ?Sized),
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        done: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        let remote = match target.target() {
            Some(Target::Remote(r)) => r,
            Some(Target::Local(id)) => {
                return self.call_local(id, method, args, kwargs, 1, Box::new(done))
            }
            None => return Err(Error::NotAReference(target.kind())),
        };
        let mut st = self.lock();
        let call = st.core.call(remote, method, args, kwargs)?;
        let done = self.log_remote_failure(&st, remote, method, Box::new(done));
        st.calls.insert(call, done);
        drop(st);
        self.finish();
        Ok(())
    }

    /// With `logRemoteFailures` on, `done` is wrapped to log a failure the
    /// far end sent (after the Tub's lock is released, as answers run).
    fn log_remote_failure(
        &self,
        st: &State,
        remote: &RemoteRef,
        method: &str,
        done: AnswerFn,
    ) -> AnswerFn {
        if !st.log.remote_failures {
            return done;
        }
        let logger = st.log.logger.clone();
        let sent = crate::logging::SentCall {
            me: self.shared.tubid,
            peer: st.core.peer_of(remote.connection()),
            interface: String::from_utf8_lossy(remote.interface()).into_owned(),
            method: method.to_owned(),
            clid: remote.clid(),
        };
        Box::new(move |r| {
            crate::logging::remote_failure(&logger, &sent, &r);
            done(r)
        })
    }

    /// [`Tub::call_async`] whose `done` also hears of a call that cannot
    /// be sent: it runs once, with the answer (on an engine thread), or at
    /// once on this thread with the error.
    pub fn call_then(
        &self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        done: impl FnOnce(Result<Value, Error>) + Send + 'static,
    ) {
        let mut st = self.lock();
        match st.core.call(target, method, args, kwargs) {
            Ok(call) => {
                let done = self.log_remote_failure(&st, target, method, Box::new(done));
                st.calls.insert(call, done);
                drop(st);
                self.finish();
            }
            Err(e) => {
                drop(st);
                done(Err(e.into()))
            }
        }
    }

    /// Python's `callRemoteOnly`: sends the call, wants no answer (for
    /// one of our own objects: runs it on a later turn, its answer
    /// ignored).
    pub fn call_only(
        &self,
        target: &(impl Callable + ?Sized),
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<(), Error> {
        let remote = match target.target() {
            Some(Target::Remote(r)) => r,
            Some(Target::Local(id)) => {
                return self.call_local(id, method, args, kwargs, 0, Box::new(|_| {}))
            }
            None => return Err(Error::NotAReference(target.kind())),
        };
        self.lock().core.call_only(remote, method, args, kwargs)?;
        self.finish();
        Ok(())
    }

    /// An eventual send to one of our own objects: the [`Call`] reaches
    /// the object on the engine's next turn (never inside the caller's),
    /// and its answer reaches `done` on a turn after that.
    fn call_local(
        &self,
        object: ObjectId,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
        req_id: u64,
        done: AnswerFn,
    ) -> Result<(), Error> {
        let mut st = self.lock();
        if st.shutdown {
            return Err(Error::Shutdown);
        }
        let call = Call {
            tub: self.clone(),
            id: IncomingId {
                connection: LOCAL_CONNECTION,
                req_id,
            },
            object,
            caller: self.shared.tubid,
            method: Text::from(method),
            args: args.to_vec(),
            kwargs: kwargs.to_vec(),
            answered: false,
            local: Some(done),
        };
        let run: TimerFn = match st.objects.get(&object).cloned() {
            Some(obj) => Box::new(move || obj.call(call)),
            // an object the Tub forgot: Python's getattr would fail
            None => Box::new(move || {
                let f = Failure::new("builtins.KeyError", format!("no local object {object}"));
                call.fail(f)
            }),
        };
        st.due.push(run);
        drop(st);
        // a drive on this thread takes it after the current callbacks
        self.finish();
        Ok(())
    }

    /// Delivers the answer of a local call on a later turn.
    pub(crate) fn answer_local(&self, done: AnswerFn, result: Result<Value, Failure>) {
        let result = result.map_err(|f| Error::Call(CallError::Remote(f)));
        let mut st = self.lock();
        st.due.push(Box::new(move || done(result)));
        drop(st);
        self.finish();
    }

    pub(crate) fn answer(
        &self,
        id: IncomingId,
        result: Result<Value, Failure>,
    ) -> Result<(), Error> {
        let mut st = self.lock();
        let r = st.core.answer(id, result);
        // a notify is a system call: only when a thread waits for it
        let idle = st.answer_waiters > 0 && st.core.calls_to_answer() == 0;
        drop(st);
        if idle {
            self.shared.answered.notify_all();
        }
        self.finish();
        r.map_err(Error::from)
    }

    /// Whether the connection `reference` lives on is still open.
    pub fn is_connected(&self, reference: &RemoteRef) -> bool {
        self.lock().core.is_connected(reference.connection())
    }

    /// The bytes not yet sent on the connection `reference` lives on
    /// (queued in the engine or not yet handed to it); `None` once that
    /// connection is closed. Callers sending a stream of calls that no
    /// answer paces (`call_only`) wait while it is high, so a slow peer
    /// cannot make them queue without bound.
    pub fn unsent_output(&self, reference: &RemoteRef) -> Option<usize> {
        self.lock().core.unsent_output(reference.connection())
    }

    /// Drops the connection `reference` arrived over.
    pub fn disconnect(&self, reference: &RemoteRef) {
        self.lock().core.disconnect(reference.connection());
        self.finish();
    }

    /// Runs `f` once when the connection of `reference` ends, for any
    /// reason but [`Tub::shutdown`] (on the engine's next turn if it
    /// already has), as Python's `notifyOnDisconnect`. Returns a token
    /// for [`Tub::cancel_disconnect_watch`].
    pub fn notify_on_disconnect(
        &self,
        reference: &RemoteRef,
        f: impl FnOnce() + Send + 'static,
    ) -> u64 {
        let mut st = self.lock();
        let conn = reference.connection();
        let token = st.next_watch;
        st.next_watch += 1;
        if st.core.is_connected(conn) {
            st.watchers
                .entry(conn)
                .or_default()
                .push((token, Box::new(f)));
            drop(st);
        } else {
            // already gone: on the next turn, as Python does
            st.due.push(Box::new(f));
            drop(st);
            self.shared.driver.wake();
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

    /// Calls `f` (on an engine thread) with the news of every connection:
    /// [`TubEvent::Connected`], [`TubEvent::Disconnected`] and
    /// [`TubEvent::NegotiationFailed`] (an inbound connection that never
    /// became a peer, or an outbound one, with the typed reason), for
    /// logging and monitoring.
    pub fn watch_connections(&self, f: impl Fn(&TubEvent) + Send + Sync + 'static) {
        self.lock().connection_watchers.push(Arc::new(f));
    }

    /// Runs `f` after `delay` (on an engine thread).
    pub fn after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        let id = st.next_timer;
        st.next_timer += 1;
        st.timers
            .push(std::cmp::Reverse((Instant::now() + delay, id)));
        st.timer_fns.insert(id, Box::new(f));
        drop(st);
        // the engine must see the new deadline even inside a drive
        self.shared.driver.wake();
    }

    /// Closes every connection and listener at once; outstanding calls
    /// (ours and lookups) fail with [`Error::Shutdown`], calls from peers
    /// not answered yet are lost with their connection.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        // a local shutdown fires no disconnect watchers (Python's
        // stopService), and stops every reconnector
        let watchers = std::mem::take(&mut st.watchers);
        let reconnectors = std::mem::take(&mut st.reconnectors);
        let mut failed: Vec<AnswerFn> = st.calls.drain().map(|(_, f)| f).collect();
        failed.extend(st.lookups.drain().map(|(_, f)| f));
        let conns: Vec<ConnectionId> = st.open.iter().copied().collect();
        for c in conns {
            st.core.disconnect(c);
        }
        drop(st);
        drop(watchers);
        crate::reconnect::stop_all(reconnectors);
        self.shared.answered.notify_all();
        self.stop_listening();
        let actions = failed
            .into_iter()
            .map(|f| Action::Answer(f, Err(Error::Shutdown)))
            .collect();
        self.run_actions(actions, 0);
        self.shared.driver.wake();
        // a FLOGFILE is complete on disk once a Tub has shut down
        let logger = self.logger();
        logger.flush();
    }

    /// The logger this Tub's own events go to ([`Logger::global`] unless
    /// [`Tub::set_logger`] gave another).
    ///
    /// [`Logger::global`]: foolscap_logging::Logger::global
    pub fn logger(&self) -> foolscap_logging::Logger {
        self.lock().log.logger.clone()
    }

    /// Send this Tub's events to `logger` (tests, embedding).
    pub fn set_logger(&self, logger: foolscap_logging::Logger) {
        self.lock().log.logger = logger;
    }

    /// Python's Tub option `logLocalFailures`: log the calls from peers
    /// that our objects answer with a failure (an UNUSUAL event and NOISY
    /// details: method, arguments, the failure). Off by default.
    pub fn set_log_local_failures(&self, on: bool) {
        self.lock().log.local_failures = on;
    }

    /// Python's Tub option `logRemoteFailures`: log the calls we sent that
    /// failed on the far end (an UNUSUAL event and NOISY details). Off by
    /// default.
    pub fn set_log_remote_failures(&self, on: bool) {
        self.lock().log.remote_failures = on;
    }

    /// Python's `tub.log(...)`: log `fields` (as [`Logger::msg`] takes
    /// them) with this Tub's `tubID` added; gives the event's number.
    ///
    /// [`Logger::msg`]: foolscap_logging::Logger::msg
    pub fn log(&self, fields: foolscap_logging::Dict) -> u64 {
        let logger = self.logger();
        crate::logging::tub_log(&logger, &self.shared.tubid, fields)
    }

    /// The options a failed local answer is logged with, when
    /// `logLocalFailures` is on.
    pub(crate) fn local_failure_logger(&self) -> Option<foolscap_logging::Logger> {
        let st = self.lock();
        st.log.local_failures.then(|| st.log.logger.clone())
    }

    /// A clean shutdown: stops listening, lets the answers to calls
    /// already received go out (waiting at most `grace` for them), then
    /// [`Tub::shutdown`]. Waits on the calling thread, which must not be
    /// an event loop's.
    pub fn shutdown_within(&self, grace: Duration) -> Result<(), Error> {
        self.may_block()?;
        let deadline = Instant::now() + grace;
        self.stop_listening();
        self.wait_for_answers(deadline);
        self.shutdown();
        Ok(())
    }

    /// Waits (on the calling thread, which must not be an event loop's)
    /// until every call from a peer received so far is answered, or
    /// `deadline` passes, or the Tub shuts down. Returns whether all were
    /// answered.
    pub fn wait_for_answers(&self, deadline: Instant) -> bool {
        if !self.shared.driver.is_loop_thread() {
            let mut done = || {
                let st = self.lock();
                st.core.calls_to_answer() == 0 || st.shutdown
            };
            if self.shared.driver.wait_here(&mut done, Some(deadline)) {
                return self.lock().core.calls_to_answer() == 0;
            }
        }
        let mut st = self.lock();
        while st.core.calls_to_answer() > 0 && !st.shutdown {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st.answer_waiters += 1;
            st = self
                .shared
                .answered
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.answer_waiters -= 1;
        }
        st.core.calls_to_answer() == 0
    }

    /// Stops accepting connections on every listener (the connections
    /// stay open; [`Tub::listen`] may listen again).
    pub fn stop_listening(&self) {
        self.shared.driver.stop_listening();
    }

    /// Gifts this Tub sent that their recipients have not acknowledged
    /// yet (`decgift`); each holds its reference (docs/protocol.md §5.6).
    pub fn gifts_held(&self) -> usize {
        self.lock().core.gifts_held()
    }

    /// Gifts received and being looked up.
    pub fn pending_gifts(&self) -> usize {
        self.lock().core.pending_gifts()
    }

    /// Calls from peers, over all connections, that have not been
    /// answered yet (started or still held back).
    pub fn calls_to_answer(&self) -> usize {
        self.lock().core.calls_to_answer()
    }

    /// Blocking waits would stall an event loop's thread (the answer
    /// needs that very thread).
    fn may_block(&self) -> Result<(), Error> {
        if self.shared.driver.is_loop_thread() {
            return Err(Error::WouldStallLoop);
        }
        Ok(())
    }

    /// Waits for a blocking call's result. A wait inside this Tub's own
    /// drive (a callback that blocks) must not sit on output left for the
    /// end of that drive: the engine is woken first.
    fn wait(
        &self,
        rx: mpsc::Receiver<Result<Value, Error>>,
        timeout: Duration,
    ) -> Result<Value, Error> {
        if self.driving_here() {
            // the call waiting here yields its connection, as a call that
            // answers later does: the connection's next calls may start
            self.let_go_here();
            self.shared.driver.wake();
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut got = None;
        let handled = self.shared.driver.wait_here(
            &mut || {
                if got.is_none() {
                    got = rx.try_recv().ok();
                }
                got.is_some()
            },
            deadline,
        );
        if let Some(result) = got.or_else(|| rx.try_recv().ok()) {
            return result;
        }
        if handled {
            return Err(Error::Timeout(timeout));
        }
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        rx.recv_timeout(left).map_err(|_| Error::Timeout(timeout))?
    }

    // ---- driving ----

    /// The engine's side of the seam.
    pub(crate) fn driver(&self) -> Arc<dyn Driver> {
        self.shared.driver.clone()
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.shared) as *const () as usize
    }

    fn driving_here(&self) -> bool {
        let key = self.key();
        DRIVING.with(|d| d.borrow().iter().any(|(k, _)| *k == key))
    }

    /// The call of this Tub running on this thread (the innermost) waits
    /// for an answer: its drive lets go of its connection. The later
    /// calls of that connection in the drive's batch go back to the front
    /// of its queue, which the next drive takes. (Other connections the
    /// drive holds stay held.)
    fn let_go_here(&self) {
        let key = self.key();
        let Some((token, conn)) = RUNNING.with(|r| {
            r.borrow()
                .iter()
                .rev()
                .find(|(k, _, _)| *k == key)
                .map(|(_, t, c)| (*t, *c))
        }) else {
            return;
        };
        let mut st = self.lock();
        let Some(h) = st.in_hand.get_mut(&conn).filter(|h| h.owner == Some(token)) else {
            // let go already (a second wait of the same call)
            return;
        };
        let later = BATCHES.with(|b| {
            let mut b = b.borrow_mut();
            let Some(batch) = b
                .iter_mut()
                .rev()
                .find(|x| x.key == key && x.token == token)
            else {
                return Vec::new();
            };
            let mut later = Vec::new();
            let mut keep = VecDeque::with_capacity(batch.rest.len());
            for a in batch.rest.drain(..) {
                match a {
                    Action::Object(obj, call) if call.id.connection == conn => {
                        later.push((obj, call))
                    }
                    other => keep.push_back(other),
                }
            }
            batch.rest = keep;
            later
        });
        for c in later.into_iter().rev() {
            h.queue.push_front(c);
        }
        h.owner = None;
        if h.queue.is_empty() {
            st.in_hand.remove(&conn);
        } else {
            h.held_back = true;
            st.orphaned.push(conn);
        }
    }

    /// At the start of a drive's round, under the lock: the calls other
    /// drives queued for the connections this drive holds (to run in
    /// order in this round, each after the one before returned), the
    /// connections it is done with let go, and connections let go by a
    /// waiting drive taken over. Returns whether a held-back connection's
    /// queue emptied (its reader may go on).
    fn next_in_hand(
        st: &mut State,
        token: u64,
        owned: &mut Vec<ConnectionId>,
        actions: &mut Vec<Action>,
    ) -> bool {
        let mut freed = false;
        let mut i = 0;
        while i < owned.len() {
            let conn = owned[i];
            let Some(h) = st.in_hand.get_mut(&conn).filter(|h| h.owner == Some(token)) else {
                owned.swap_remove(i);
                continue;
            };
            if h.queue.is_empty() {
                freed |= h.held_back;
                st.in_hand.remove(&conn);
                owned.swap_remove(i);
                continue;
            }
            freed |= std::mem::take(&mut h.held_back);
            actions.extend(h.queue.drain(..).map(|(o, c)| Action::Object(o, c)));
            i += 1;
        }
        for conn in std::mem::take(&mut st.orphaned) {
            let Some(h) = st.in_hand.get_mut(&conn).filter(|h| h.owner.is_none()) else {
                continue;
            };
            h.owner = Some(token);
            owned.push(conn);
            freed |= std::mem::take(&mut h.held_back);
            actions.extend(h.queue.drain(..).map(|(o, c)| Action::Object(o, c)));
        }
        freed
    }

    /// Asks the engine to move what the last operation produced, unless
    /// this thread is driving this Tub already (that drive moves it, in
    /// one batch).
    fn finish(&self) {
        if !self.driving_here() {
            self.shared.driver.wake();
        }
    }

    /// [`DrivenTub::drive`]: rounds of output, events and callbacks until
    /// nothing is left.
    ///
    /// Calls of one connection run one at a time, in arrival order, even
    /// when several threads drive the Tub at once (the threads engine):
    /// the first drive to poll a connection's call holds the connection
    /// until it has run every call of it polled meanwhile (other drives
    /// queue them for it, and the connection is not read while some are
    /// queued); a call that waits in a blocking call of the handle lets go
    /// of its connection, so a call that waits for the same peer does not
    /// lock it.
    pub(crate) fn drive(&self, io: &mut dyn DriverIo) {
        let key = self.key();
        let token = NEXT_DRIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        DRIVING.with(|d| d.borrow_mut().push((key, token)));
        let mut owned = Vec::new();
        loop {
            let mut st = self.lock();
            let mut actions = Vec::new();
            let freed = Self::next_in_hand(&mut st, token, &mut owned, &mut actions);
            self.process(&mut st, io, token, &mut owned, &mut actions);
            actions.extend(st.due.drain(..).map(Action::Run));
            drop(st);
            if freed {
                // a reader held back while calls of its connection were
                // queued may read again
                self.shared.driver.wake();
            }
            if actions.is_empty() {
                break;
            }
            self.run_actions(actions, token);
        }
        DRIVING.with(|d| {
            let mut d = d.borrow_mut();
            if let Some(i) = d.iter().rposition(|e| *e == (key, token)) {
                d.remove(i);
            }
        });
    }

    /// One round: hands the core's output to `io` and turns its events
    /// into work for the application, under the lock. The core's flow
    /// control decides which calls from peers are handed out this round.
    fn process(
        &self,
        st: &mut State,
        io: &mut dyn DriverIo,
        token: u64,
        owned: &mut Vec<ConnectionId>,
        actions: &mut Vec<Action>,
    ) {
        // the core's output goes first; taking events makes none, only a
        // call answered here (its object is gone) does: flushed at once
        st.flush(io);
        loop {
            let Some(ev) = st.core.poll_event() else {
                break;
            };
            if matches!(
                ev,
                TubEvent::Connected { .. }
                    | TubEvent::Disconnected { .. }
                    | TubEvent::NegotiationFailed { .. }
            ) {
                let (logger, me, e) = (st.log.logger.clone(), self.shared.tubid, ev.clone());
                actions.push(Action::Run(Box::new(move || match &e {
                    TubEvent::Connected { peer, .. } => {
                        crate::logging::connected(&logger, &me, peer)
                    }
                    TubEvent::Disconnected { peer, reason, .. } => {
                        crate::logging::disconnected(&logger, &me, peer, reason)
                    }
                    TubEvent::NegotiationFailed {
                        outbound, error, ..
                    } => crate::logging::negotiation_failed(&logger, &me, *outbound, error),
                    _ => {}
                })));
                for w in &st.connection_watchers {
                    let (w, ev) = (w.clone(), ev.clone());
                    actions.push(Action::Run(Box::new(move || w(&ev))));
                }
            }
            match ev {
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
                    let answered_here = self.deliver(st, c, token, owned, actions);
                    if answered_here {
                        st.flush(io);
                    }
                }
                TubEvent::ObjectUnused(id) => {
                    st.objects.remove(&id);
                }
                TubEvent::NameLookup(lookup) => {
                    let (tub, handler) = (self.clone(), st.name_lookup.clone());
                    actions.push(Action::Run(Box::new(move || {
                        tub.run_name_lookup(handler, lookup)
                    })));
                }
                _ => {}
            }
        }
    }

    /// Hands one call from a peer to its object (or answers it with a
    /// failure when the object is gone): to run in this round if no drive
    /// holds its connection (this drive then holds it), queued behind the
    /// connection's earlier calls otherwise. Returns whether it answered
    /// the call here (output to flush).
    fn deliver(
        &self,
        st: &mut State,
        c: IncomingCall,
        token: u64,
        owned: &mut Vec<ConnectionId>,
        actions: &mut Vec<Action>,
    ) -> bool {
        let call = Call {
            tub: self.clone(),
            id: c.id,
            object: c.object,
            caller: c.caller,
            method: c.method,
            args: c.args,
            kwargs: c.kwargs,
            answered: false,
            local: None,
        };
        match st.objects.get(&c.object) {
            Some(obj) => {
                let obj = obj.clone();
                let conn = c.id.connection;
                match st.in_hand.get_mut(&conn) {
                    // this drive holds it: its queue was taken at the
                    // start of the round, so this call follows them
                    Some(h) if h.owner == Some(token) => {
                        actions.push(Action::Object(obj, call));
                    }
                    Some(h) => {
                        h.queue.push_back((obj, call));
                        h.held_back = true;
                    }
                    None => {
                        st.in_hand.insert(
                            conn,
                            InHand {
                                owner: Some(token),
                                queue: VecDeque::new(),
                                held_back: false,
                            },
                        );
                        owned.push(conn);
                        actions.push(Action::Object(obj, call));
                    }
                }
                false
            }
            None => {
                let mut call = call;
                call.answered = true;
                let f = Failure::new("builtins.KeyError", format!("no local object {}", c.object));
                let _ = st.core.answer(c.id, Err(f));
                true
            }
        }
    }

    /// A panicking object or callback costs only its own call: the panic
    /// is caught here (an unanswered [`Call`] answers with a failure as it
    /// unwinds) and the engine's thread goes on.
    ///
    /// The batch waits in [`BATCHES`] while it runs, so a call that lets
    /// go of its connection can take its connection's later calls out.
    fn run_actions(&self, actions: Vec<Action>, token: u64) {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        let key = self.key();
        let depth = BATCHES.with(|b| {
            let mut b = b.borrow_mut();
            b.push(Batch {
                key,
                token,
                rest: actions.into(),
            });
            b.len()
        });
        loop {
            let next = BATCHES.with(|b| {
                b.borrow_mut()
                    .get_mut(depth - 1)
                    .and_then(|batch| batch.rest.pop_front())
            });
            let Some(a) = next else {
                break;
            };
            match a {
                Action::Object(obj, call) => {
                    let running = (key, token, call.id.connection);
                    RUNNING.with(|r| r.borrow_mut().push(running));
                    let _ = catch_unwind(AssertUnwindSafe(|| obj.call(call)));
                    RUNNING.with(|r| {
                        let mut r = r.borrow_mut();
                        if let Some(i) = r.iter().rposition(|e| *e == running) {
                            r.remove(i);
                        }
                    });
                }
                Action::Answer(f, r) => {
                    let _ = catch_unwind(AssertUnwindSafe(|| f(r)));
                }
                Action::Run(f) => {
                    let _ = catch_unwind(AssertUnwindSafe(f));
                }
            }
        }
        BATCHES.with(|b| b.borrow_mut().truncate(depth - 1));
    }
}
