//! A blocking `std::net` driver for the foolscap-rs sans-IO core.
//!
//! [`Tub`] wraps a [`foolscap_core::tub::Tub`] in a mutex and gives it
//! threads: one accept thread per listener, a reader and a writer thread
//! per connection, a short-lived thread per outbound dial (host names are
//! resolved there), and one timer thread for the core's timeouts and the
//! application's [`Tub::after`] callbacks. The handle is cheap to clone and
//! `Send + Sync`: any thread may call through it.
//!
//! Objects ([`Object`]) are called on the reader thread of the connection
//! the call arrived on, outside the lock; they answer through the [`Call`]
//! handle at once or later. Blocking calls ([`Tub::call`]) wait on the
//! caller's thread; inside an object method use [`Tub::call_async`].
//!
//! Output per connection is queued to its writer thread without a bound
//! (the mio driver of issue 5 adds backpressure).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod object;

use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
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
    CallId, DialId, IncomingId, LookupId, Tub as CoreTub, TubConfig, TubEvent,
};
use foolscap_core::value::{RemoteRef, Text, Value};

pub use error::Error;
pub use object::{Call, Object};

/// How long a TCP connect to one hint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

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
}

/// When the last handle goes, the writer threads see their channels close
/// and shut the sockets (the reader threads then end), and the accept
/// threads are woken to notice.
impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        st.shutdown = true;
        for addr in &st.listeners {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(200));
        }
    }
}

enum WriterMsg {
    Data(Vec<u8>),
    Close,
}

struct State {
    core: CoreTub,
    writers: HashMap<ConnectionId, mpsc::Sender<WriterMsg>>,
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
        let path = path.as_ref();
        let identity = match std::fs::read(path) {
            Ok(text) => Identity::from_cert_file(text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate()?;
                std::fs::write(path, id.to_cert_file())?;
                id
            }
            Err(e) => return Err(e.into()),
        };
        Self::with_identity(identity, TubConfig::default())
    }

    /// A Tub with a given identity and settings.
    pub fn with_identity(identity: Identity, config: TubConfig) -> Result<Tub, Error> {
        let core = CoreTub::new(&identity, config, Box::new(SystemRng), Instant::now())?;
        let shared = Arc::new(Shared {
            tubid: identity.tubid(),
            identity,
            state: Mutex::new(State {
                core,
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
        });
        let weak = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("foolscap-timer".into())
            .spawn(move || timer_thread(weak))?;
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

    /// Listens on `addr` (e.g. `"127.0.0.1:0"`) and returns the bound
    /// address. If no location was set yet, FURLs get `tcp:HOST:PORT` for
    /// it.
    pub fn listen(&self, addr: impl ToSocketAddrs) -> Result<SocketAddr, Error> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        {
            let mut st = self.lock();
            if st.core.location().is_empty() {
                let host = match local.ip() {
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    std::net::IpAddr::V4(ip) => ip.to_string(),
                };
                st.core.set_location(vec![Hint::Tcp {
                    host,
                    port: local.port(),
                    legacy: false,
                }]);
            }
            st.listeners.push(local);
        }
        let weak = Arc::downgrade(&self.shared);
        thread::Builder::new()
            .name("foolscap-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Some(shared) = weak.upgrade() else { return };
                    let tub = Tub { shared };
                    if tub.lock().shutdown {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let mut st = tub.lock();
                        // over the connection limit the socket just closes
                        if let Ok(conn) = st.core.accept(Instant::now()) {
                            if tub.attach(&mut st, conn, stream).is_err() {
                                st.core.handle_eof(conn, Instant::now());
                            }
                        }
                        tub.finish(st);
                    }
                }
            })?;
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

    /// Runs `f` on the timer thread after `delay`.
    pub fn after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        let id = st.next_timer;
        st.next_timer += 1;
        st.timers
            .push(std::cmp::Reverse((Instant::now() + delay, id)));
        st.timer_fns.insert(id, Box::new(f));
        drop(st);
        self.shared.timer_wake.notify_one();
    }

    /// Closes every connection and listener; outstanding calls fail.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        let conns: Vec<ConnectionId> = st.writers.keys().copied().collect();
        for c in conns {
            st.core.disconnect(c);
        }
        let listeners = std::mem::take(&mut st.listeners);
        self.finish(st);
        for addr in listeners {
            // wake the accept thread so it sees the shutdown
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
        self.shared.timer_wake.notify_all();
    }

    // ---- the engine ----

    /// Registers a socket for `conn` and starts its reader and writer.
    fn attach(&self, st: &mut State, conn: ConnectionId, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        let mut writer = stream;
        let (tx, rx) = mpsc::channel::<WriterMsg>();
        st.writers.insert(conn, tx);
        thread::Builder::new()
            .name("foolscap-write".into())
            .spawn(move || writer_thread(&mut writer, rx))?;
        let weak = Arc::downgrade(&self.shared);
        thread::Builder::new()
            .name("foolscap-read".into())
            .spawn(move || reader_thread(weak, conn, reader))?;
        Ok(())
    }

    /// Moves the core's output to the sockets and its events to the
    /// application, then releases the lock and runs the callbacks. Inside
    /// callbacks this is left to the end of the batch.
    fn finish(&self, st: MutexGuard<'_, State>) {
        if IN_CALLBACKS.with(|c| c.get()) {
            return;
        }
        self.finish_now(st)
    }

    /// A blocking wait inside a callback must not sit on deferred output.
    fn flush_if_deferred(&self) {
        if IN_CALLBACKS.with(|c| c.get()) {
            let st = self.lock();
            self.finish_now(st);
        }
    }

    fn finish_now(&self, mut st: MutexGuard<'_, State>) {
        let actions = self.process(&mut st);
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

    fn process(&self, st: &mut State) -> Vec<Action> {
        let mut actions = Vec::new();
        loop {
            let mut buf = Vec::new();
            while let Some(conn) = st.core.poll_transmit(&mut buf) {
                if let Some(w) = st.writers.get(&conn) {
                    let _ = w.send(WriterMsg::Data(std::mem::take(&mut buf)));
                }
            }
            let Some(ev) = st.core.poll_event() else {
                break;
            };
            match ev {
                TubEvent::Dial { dial, host, port } => actions.push(Action::Dial(dial, host, port)),
                TubEvent::CloseTransport(conn) => {
                    if let Some(w) = st.writers.remove(&conn) {
                        let _ = w.send(WriterMsg::Close);
                    }
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
                            let f = Failure::new(
                                "builtins.KeyError",
                                format!("no local object {}", c.object),
                            );
                            let _ = st.core.answer(c.id, Err(f));
                        }
                    }
                }
                TubEvent::ObjectUnused(id) => {
                    st.objects.remove(&id);
                }
            }
        }
        actions
    }

    /// Runs callbacks without the lock, then sends what they produced.
    fn run(&self, actions: Vec<Action>) {
        if actions.is_empty() {
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
                Action::Dial(dial, host, port) => {
                    let weak = Arc::downgrade(&self.shared);
                    let spawned = thread::Builder::new()
                        .name("foolscap-dial".into())
                        .spawn(move || dial_thread(weak, dial, host, port));
                    if let Err(e) = spawned {
                        self.lock().core.dial_failed(dial, &e.to_string());
                    }
                }
            }
        }
    }
}

fn dial_thread(weak: std::sync::Weak<Shared>, dial: DialId, host: String, port: u16) {
    let result = connect(&host, port);
    let Some(shared) = weak.upgrade() else { return };
    let tub = Tub { shared };
    let mut st = tub.lock();
    match result {
        Ok(stream) => match st.core.dial_connected(dial, Instant::now()) {
            Some(conn) => {
                if let Err(e) = tub.attach(&mut st, conn, stream) {
                    st.core.handle_eof(conn, Instant::now());
                    drop(e);
                }
            }
            None => {
                let _ = stream.shutdown(Shutdown::Both);
            }
        },
        Err(e) => st.core.dial_failed(dial, &e.to_string()),
    }
    tub.finish(st);
}

fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host name has no addresses")))
}

fn reader_thread(weak: std::sync::Weak<Shared>, conn: ConnectionId, mut stream: TcpStream) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let Some(shared) = weak.upgrade() else { return };
        let tub = Tub { shared };
        let mut st = tub.lock();
        if n == 0 {
            st.core.handle_eof(conn, Instant::now());
            tub.finish(st);
            return;
        }
        st.core.handle_input(conn, Instant::now(), &buf[..n]);
        let closed = !st.writers.contains_key(&conn);
        tub.finish(st);
        if closed {
            return;
        }
    }
}

fn writer_thread(stream: &mut TcpStream, rx: mpsc::Receiver<WriterMsg>) {
    let mut batch = Vec::new();
    while let Ok(msg) = rx.recv() {
        let mut close = false;
        match msg {
            WriterMsg::Data(d) => batch = d,
            WriterMsg::Close => close = true,
        }
        // gather whatever else is queued into one write
        while !close {
            match rx.try_recv() {
                Ok(WriterMsg::Data(d)) => batch.extend_from_slice(&d),
                Ok(WriterMsg::Close) => close = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() && stream.write_all(&batch).is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        batch.clear();
        if close {
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn timer_thread(weak: std::sync::Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let tub = Tub {
            shared: shared.clone(),
        };
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.timer_sleeps_until = None;
        if st.shutdown && st.writers.is_empty() {
            return;
        }
        let now = Instant::now();
        // run what is due
        let mut due = Vec::new();
        while let Some(std::cmp::Reverse((t, id))) = st.timers.peek().copied() {
            if t > now {
                break;
            }
            st.timers.pop();
            if let Some(f) = st.timer_fns.remove(&id) {
                due.push(Action::Run(f));
            }
        }
        if st.core.poll_timeout().is_some_and(|t| t <= now) {
            st.core.handle_timeout(now);
        }
        let mut actions = tub.process(&mut st);
        actions.append(&mut due);
        if !actions.is_empty() {
            drop(st);
            tub.run(actions);
            continue;
        }
        // sleep until the next deadline (at most a second, to notice the
        // Tub going away)
        let next_timer = st.timers.peek().map(|r| r.0 .0);
        let next = match (st.core.poll_timeout(), next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(now + Duration::from_secs(1)),
        };
        let wait = next
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        st.timer_sleeps_until = Some(now + wait);
        drop(tub);
        let _ = shared
            .timer_wake
            .wait_timeout(st, wait)
            .map(|(g, _)| drop(g));
    }
}

/// The remote reference inside a value, if it is one.
pub fn as_remote(v: &Value) -> Option<&RemoteRef> {
    match v.unanchored() {
        Value::Remote(r) => Some(r),
        _ => None,
    }
}
