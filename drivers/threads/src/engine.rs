//! The engine's threads and the [`Driver`] they implement.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use foolscap_app::{DrivenTub, Driver, DriverIo, Error, Flushed, Tub, TubConfig};
use foolscap_core::id::{ConnectionId, DialId};
use foolscap_core::identity::Identity;
use foolscap_core::tub::TransportError;

/// How long a TCP connect to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The read buffer a connection starts with: an idle or half-open
/// connection holds no more (it doubles while reads fill it, up to
/// [`ThreadsConfig::max_read_buffer`]).
const READ_START: usize = 1024;

/// Memory maps one thread costs (its stack and guard page, and the
/// signal stack and guard page the Rust runtime gives every thread).
const MAPS_PER_THREAD: usize = 4;

/// Settings of the threads engine (the Tub's own are in [`TubConfig`]).
/// Start from [`ThreadsConfig::default`] and set the fields you need.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadsConfig {
    /// Most threads the engine runs for connections at once: a reader per
    /// connection that has sent a byte (accepted sockets wait for their
    /// first byte on one watcher thread for all), a writer per connection
    /// whose sends had to wait (from the first send the kernel did not
    /// take whole), a thread per outbound dial. A
    /// connection that needs a thread past the limit is closed (an
    /// ordinary refused connection; the number of connections is the
    /// core's [`TubConfig::max_negotiating_connections`] and
    /// [`TubConfig::max_established_connections`]), a dial fails.
    /// The Tub's [`TubConfig::max_established_connections`] is lowered to
    /// what the limit carries at two threads a connection, a quarter of
    /// the threads kept for connections that negotiate: 3/4 of
    /// (limit - 64) / 2, 4,476 by default (at that cap the core evicts
    /// the connection idle the longest that holds nothing).
    /// Default: [`ThreadsConfig::DEFAULT_MAX_THREADS`] (12,000). Whatever
    /// it says, the connection threads of all the process's threads-engine
    /// Tubs together stay within what the system's memory-map limit
    /// leaves room for (on Linux 9/10 of `vm.max_map_count` over four
    /// maps a thread: 14,744 at the default 65,530), as a thread that
    /// cannot map its signal stack aborts the process.
    pub max_threads: usize,
    /// Stack size of the engine's threads. Objects run on connection
    /// readers (usually the reader of the calling peer's connection) and
    /// on the engine thread (timers, released calls); any thread may end
    /// up dropping the Tub's state.
    /// Default: [`ThreadsConfig::DEFAULT_STACK_SIZE`] (2 MiB, Rust's
    /// own: the deepest value the decoder accepts, nested
    /// `Limits::max_depth` deep, takes between 1 and 2 MiB to decode,
    /// answer and drop in a debug build). It is address space: a thread
    /// keeps only the pages it touched resident (about 11 KiB for a
    /// reader waiting for input, whatever the size).
    pub stack_size: usize,
    /// Largest read buffer of one connection: it starts at 1 KiB and
    /// doubles while reads fill it. Default:
    /// [`ThreadsConfig::DEFAULT_MAX_READ_BUFFER`] (64 KiB).
    pub max_read_buffer: usize,
}

/// Why a connection or dial got no thread: the engine runs
/// [`ThreadsConfig::max_threads`] connection threads already, or the
/// process as many as the memory-map limit allows (carried in an
/// `std::io::Error` of kind `Other`: a dial fails with it, an accepted
/// connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyThreads {
    /// The limit in force.
    pub limit: usize,
}

impl std::fmt::Display for TooManyThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the threads engine runs its limit of {} connection threads",
            self.limit
        )
    }
}

impl std::error::Error for TooManyThreads {}

impl ThreadsConfig {
    /// Default `max_threads`.
    pub const DEFAULT_MAX_THREADS: usize = 12_000;
    /// Default `stack_size`.
    pub const DEFAULT_STACK_SIZE: usize = 2 * 1024 * 1024;
    /// Default `max_read_buffer`.
    pub const DEFAULT_MAX_READ_BUFFER: usize = 64 * 1024;
}

impl Default for ThreadsConfig {
    fn default() -> Self {
        ThreadsConfig {
            max_threads: Self::DEFAULT_MAX_THREADS,
            stack_size: Self::DEFAULT_STACK_SIZE,
            max_read_buffer: Self::DEFAULT_MAX_READ_BUFFER,
        }
    }
}

/// Connection threads the memory-map limit leaves room for, in the whole
/// process (a tenth of the maps stay for the heap, libraries and other
/// threads).
fn map_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .map_or(usize::MAX, |maps| maps / 10 * 9 / MAPS_PER_THREAD)
    })
}

/// Connection and dial threads of every threads-engine Tub of the
/// process: together they stay within [`map_budget`].
static PROCESS_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Takes a place in `counter` if it is under `max`.
fn reserve(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// The longest a reader held back by flow control sleeps before it looks
/// again (it is normally woken at once; this only bounds a missed wake).
const HOLD_BACK_RECHECK: Duration = Duration::from_secs(1);

/// How long the accept loop backs off after an `accept` error (out of
/// file descriptors or memory): doubling from the first to the last.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Threads kept out of the connection caps' share of
/// [`ThreadsConfig::max_threads`] (dials, and threads of closed
/// connections that have not ended yet).
const THREADS_RESERVE: usize = 64;

/// The core's established-connection cap lowered to what the thread
/// limit carries: an established connection takes two threads (reader
/// and writer), and a quarter of the threads stay for connections that
/// negotiate (a new one needs its reader and writer to get in). At the
/// cap the core evicts the established connection idle the longest that
/// holds nothing, so silent negotiated peers cannot take every thread
/// and lock a newcomer out with [`TooManyThreads`]. (Accepted sockets
/// that have not spoken take no thread: the negotiating cap stays.)
fn caps_within_threads(mut config: TubConfig, threads: &ThreadsConfig) -> TubConfig {
    let limit = threads.max_threads.min(map_budget());
    let established = limit.saturating_sub(THREADS_RESERVE) / 2 / 4 * 3;
    config.max_established_connections = config.max_established_connections.min(established);
    config
}

pub(crate) fn start(
    identity: Identity,
    config: TubConfig,
    threads: ThreadsConfig,
) -> Result<Tub, Error> {
    let config = caps_within_threads(config, &threads);
    let engine = Arc::new_cyclic(|me| Engine {
        me: me.clone(),
        driven: OnceLock::new(),
        writers: Mutex::new(Writers::default()),
        listeners: Mutex::new(Vec::new()),
        work: Mutex::new(Work::default()),
        work_cv: Condvar::new(),
        drained: Mutex::new(()),
        drained_cv: Condvar::new(),
        released: AtomicBool::new(false),
        held_readers: AtomicUsize::new(0),
        max_buffered_output: config.max_buffered_output,
        max_threads: threads.max_threads,
        threads: AtomicUsize::new(0),
        stack_size: threads.stack_size,
        max_read_buffer: threads.max_read_buffer.max(READ_START),
        watcher: OnceLock::new(),
    });
    let (tub, driven) = Tub::with_driver(identity, config, engine.clone())?;
    let _ = engine.driven.set(driven);
    let e = engine.clone();
    thread::Builder::new()
        .name("foolscap-engine".into())
        .stack_size(threads.stack_size)
        .spawn(move || e.engine_thread())?;
    Ok(tub)
}

/// Wake-ups for the engine thread.
#[derive(Default)]
struct Work {
    /// Something to drive (set by [`Driver::wake`]).
    pending: bool,
    /// The deadline the engine thread sleeps toward (`None`: awake; it
    /// reads the Tub's next deadline before it sleeps again).
    sleeping_until: Option<Instant>,
}

/// One Tub's threads engine.
struct Engine {
    /// Itself, for the threads it starts.
    me: Weak<Engine>,
    driven: OnceLock<DrivenTub>,
    /// Each open connection's writer thread.
    writers: Mutex<Writers>,
    /// Listening sockets (a duplicate of each, to end its accept loop).
    listeners: Mutex<Vec<Listening>>,
    work: Mutex<Work>,
    work_cv: Condvar,
    /// Readers held back by flow control wait here; writers that drained
    /// and answers that went out notify it.
    drained: Mutex<()>,
    drained_cv: Condvar,
    /// The application dropped the Tub.
    released: AtomicBool,
    /// Reader threads waiting in [`Engine::hold_back`].
    held_readers: AtomicUsize,
    /// The Tub's `TubConfig::max_buffered_output`.
    max_buffered_output: usize,
    /// [`ThreadsConfig::max_threads`].
    max_threads: usize,
    /// Connection and dial threads running (or reserved to start).
    threads: AtomicUsize,
    /// [`ThreadsConfig::stack_size`].
    stack_size: usize,
    /// [`ThreadsConfig::max_read_buffer`].
    max_read_buffer: usize,
    /// Accepted sockets waiting for their first byte (started with the
    /// first listener; `None` if no poller could be made: readers then
    /// start at once).
    watcher: OnceLock<Option<Arc<Watcher>>>,
}

/// Accepted sockets that have not sent a byte yet wait here, all on one
/// thread, with no reader thread of their own: an idle or half-open
/// connection costs its socket and the core's state, not a thread. The
/// first byte (or the end) starts its reader.
struct Watcher {
    registry: mio::Registry,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: usize,
    /// The reader's socket of each watched connection, by its token.
    by_token: HashMap<usize, (ConnectionId, Sock)>,
}

impl Watcher {
    /// Makes the poller and starts its thread.
    fn start(engine: &Arc<Engine>) -> std::io::Result<Arc<Watcher>> {
        let poll = mio::Poll::new()?;
        let watcher = Arc::new(Watcher {
            registry: poll.registry().try_clone()?,
            waiting: Mutex::new(Waiting::default()),
        });
        let w = watcher.clone();
        let e = engine.clone();
        thread::Builder::new()
            .name("foolscap-watch".into())
            .stack_size(engine.stack_size)
            .spawn(move || w.run(poll, &e))?;
        Ok(watcher)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches `reader` (the reader's socket of `conn`) for its first
    /// byte.
    fn watch(&self, conn: ConnectionId, reader: Sock) -> std::io::Result<()> {
        let fd = reader.as_raw_fd();
        let token = {
            let mut w = self.lock();
            let token = w.next;
            w.next = w.next.wrapping_add(1);
            w.by_token.insert(token, (conn, reader));
            token
        };
        let registered = self.registry.register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(token),
            mio::Interest::READABLE,
        );
        if registered.is_err() {
            self.lock().by_token.remove(&token);
        }
        registered
    }

    fn run(&self, mut poll: mio::Poll, engine: &Engine) {
        let mut events = mio::Events::with_capacity(256);
        loop {
            if engine.released.load(Ordering::Acquire) || !engine.is_driven_alive() {
                // the sockets close with the map
                self.lock().by_token.clear();
                return;
            }
            if poll
                .poll(&mut events, Some(Duration::from_secs(1)))
                .is_err()
            {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            for ev in &events {
                let Some((conn, reader)) = self.lock().by_token.remove(&ev.token().0) else {
                    continue;
                };
                let _ = self
                    .registry
                    .deregister(&mut mio::unix::SourceFd(&reader.as_raw_fd()));
                engine.start_reader_or_refuse(conn, reader);
            }
        }
    }
}

struct Listening {
    /// A duplicate of the listening socket: shutting it down ends the
    /// blocked `accept` (Linux answers it with `EINVAL`), so no wake-up
    /// connection to ourselves is needed.
    socket: TcpListener,
    stopped: Arc<AtomicBool>,
}

impl Listening {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Ok(dup) = self.socket.try_clone() {
            let _ = TcpStream::from(OwnedFd::from(dup)).shutdown(Shutdown::Both);
        }
    }
}

/// The writer threads, and what was sent to connections whose socket is
/// not attached yet: the core knows a connection (and may already give
/// its first bytes to a drive on another thread) a moment before its
/// writer exists.
#[derive(Default)]
struct Writers {
    by_conn: HashMap<ConnectionId, Writer>,
    /// Bytes for connections not attached yet, in order.
    early: HashMap<ConnectionId, Vec<u8>>,
    /// Connections the core closed before they were attached.
    closed_early: std::collections::HashSet<ConnectionId>,
}

/// A connection's writer thread, and the bytes queued for it. The thread
/// starts with the connection's first bytes to send: a connection that
/// sends nothing (idle, or half-open: a server speaks only after the
/// client's request) costs only its reader thread.
struct Writer {
    tx: mpsc::Sender<WriterMsg>,
    /// Bytes handed to the writer thread and not written yet (zero: the
    /// thread has written all it was given, so the next bytes may go to
    /// the socket directly).
    queued: Arc<AtomicUsize>,
    /// The socket, for sends that do not wait ([`send_now`]).
    stream: Sock,
    /// Until the writer thread starts: its socket and its channel's end.
    idle: Option<IdleWriter>,
}

/// A connection's socket, shared by its reader and writer (and the
/// watcher): one file descriptor per connection.
type Sock = Arc<TcpStream>;

struct IdleWriter {
    stream: Sock,
    rx: mpsc::Receiver<WriterMsg>,
}

/// A writer thread to start once the Tub's lock is released.
struct StartWriter {
    conn: ConnectionId,
    idle: IdleWriter,
    queued: Arc<AtomicUsize>,
}

enum WriterMsg {
    Data(Vec<u8>),
    Close,
}

impl Driver for Engine {
    fn wake(&self) {
        // the calling thread (an application's, usually) only moves the
        // bytes its call produced; events and objects run on the engine
        // thread, woken only when there are some or a deadline moved
        // earlier (a call's answer comes back through its reader thread)
        let flushed = match self.driven.get() {
            Some(driven) => {
                let mut io = self.io();
                let f = driven.flush(&mut io);
                self.finish_io(io);
                f
            }
            None => Flushed::default(),
        };
        let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
        let earlier = match (flushed.next_timeout, work.sleeping_until) {
            (Some(t), Some(sleeping)) => t < sleeping,
            _ => false,
        };
        if flushed.drive || earlier || self.released.load(Ordering::Acquire) {
            work.pending = true;
            drop(work);
            self.work_cv.notify_one();
        } else {
            drop(work);
        }
        // answers may let a reader held back by flow control go on
        if self.held_readers.load(Ordering::Acquire) > 0 {
            self.notify_readers();
        }
    }

    fn listen(&self, listener: TcpListener) -> std::io::Result<()> {
        let stopped = Arc::new(AtomicBool::new(false));
        let dup = listener.try_clone()?;
        let driven = self
            .driven
            .get()
            .cloned()
            .ok_or_else(|| std::io::Error::other("the engine has no Tub"))?;
        let engine = self.self_arc();
        self.watcher.get_or_init(|| Watcher::start(&engine).ok());
        let s = stopped.clone();
        thread::Builder::new()
            .name("foolscap-accept".into())
            .stack_size(self.stack_size)
            .spawn(move || accept_loop(engine, driven, listener, &s))?;
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Listening {
                socket: dup,
                stopped,
            });
        Ok(())
    }

    fn stop_listening(&self) {
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        for l in listeners {
            l.stop();
        }
    }

    fn is_loop_thread(&self) -> bool {
        false
    }

    fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.stop_listening();
        // writers close their sockets, which ends the readers
        let writers = std::mem::take(&mut *self.writers.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, w) in writers.by_conn {
            match w.idle {
                Some(idle) => {
                    let _ = idle.stream.shutdown(Shutdown::Both);
                }
                None => {
                    let _ = w.tx.send(WriterMsg::Close);
                }
            }
        }
        self.work_cv.notify_all();
        self.notify_readers();
    }
}

/// The core's output, handed to the writer threads.
struct WriterIo<'a> {
    engine: &'a Engine,
    dials: Vec<(DialId, String, u16)>,
    start: Vec<StartWriter>,
}

impl DriverIo for WriterIo<'_> {
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) -> usize {
        let mut writers = self.engine.lock_writers();
        match writers.by_conn.get_mut(&connection) {
            Some(w) => {
                // nothing waits for the writer thread: the calling thread
                // sends what the kernel takes at once, and only the rest
                // goes through the writer (one thread hand-off less per
                // message; a connection whose sends never have to wait
                // never starts its writer)
                if w.queued.load(Ordering::Acquire) == 0 {
                    match send_now(&w.stream, data) {
                        Ok(sent) if sent == data.len() => {
                            data.clear();
                            return 0;
                        }
                        Ok(sent) => {
                            data.drain(..sent);
                        }
                        Err(_) => {
                            // as the writer does when a write fails: the
                            // reader sees the end and tells the core
                            let _ = w.stream.shutdown(Shutdown::Both);
                            data.clear();
                            return 0;
                        }
                    }
                }
                let queued = w.queued.fetch_add(data.len(), Ordering::AcqRel) + data.len();
                let _ = w.tx.send(WriterMsg::Data(std::mem::take(data)));
                if let Some(idle) = w.idle.take() {
                    self.start.push(StartWriter {
                        conn: connection,
                        idle,
                        queued: w.queued.clone(),
                    });
                }
                queued
            }
            None => {
                // not attached yet: the writer gets these first
                let early = writers.early.entry(connection).or_default();
                early.extend_from_slice(data);
                early.len()
            }
        }
    }

    fn close(&mut self, connection: ConnectionId) {
        let mut writers = self.engine.lock_writers();
        match writers.by_conn.remove(&connection) {
            Some(w) => match w.idle {
                // nothing was ever sent: no writer to flush, just close
                Some(idle) => {
                    let _ = idle.stream.shutdown(Shutdown::Both);
                }
                None => {
                    let _ = w.tx.send(WriterMsg::Close);
                }
            },
            None => {
                writers.early.remove(&connection);
                writers.closed_early.insert(connection);
            }
        }
    }

    fn dial(&mut self, dial: DialId, host: String, port: u16) {
        self.dials.push((dial, host, port));
    }
}

impl Engine {
    fn self_arc(&self) -> Arc<Engine> {
        // `self` is borrowed from an `Arc`, so it is alive
        self.me
            .upgrade()
            .expect("the engine is alive while borrowed")
    }

    fn lock_writers(&self) -> std::sync::MutexGuard<'_, Writers> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self) -> WriterIo<'_> {
        WriterIo {
            engine: self,
            dials: Vec::new(),
            start: Vec::new(),
        }
    }

    /// Starts the writers and dials `drive` asked for (outside the Tub's
    /// lock).
    fn finish_io(&self, io: WriterIo<'_>) {
        for w in io.start {
            self.start_writer(w);
        }
        for (dial, host, port) in io.dials {
            let Some(driven) = self.driven.get().cloned() else {
                return;
            };
            let engine = self.self_arc();
            let spawned = self.spawn_counted("foolscap-dial", self.stack_size, move || {
                engine.dial_thread(dial, &host, port)
            });
            if let Err(e) = spawned {
                driven.dial_failed(dial, TransportError::from(&e));
            }
        }
    }

    /// Starts a connection thread within [`ThreadsConfig::max_threads`]
    /// (it counts until `f` returns).
    fn spawn_counted(
        &self,
        name: &str,
        stack_size: usize,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let max = self.max_threads;
        if !reserve(&self.threads, max) {
            return Err(std::io::Error::other(TooManyThreads { limit: max }));
        }
        if !reserve(&PROCESS_THREADS, map_budget()) {
            self.threads.fetch_sub(1, Ordering::AcqRel);
            return Err(std::io::Error::other(TooManyThreads {
                limit: map_budget(),
            }));
        }
        /// Gives the thread's places back however the thread ends.
        struct Counted(Arc<Engine>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.threads.fetch_sub(1, Ordering::AcqRel);
                PROCESS_THREADS.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let counted = Counted(self.self_arc());
        let spawned = thread::Builder::new()
            .name(name.into())
            .stack_size(stack_size)
            .spawn(move || {
                let _counted = counted;
                f();
            });
        // on failure the closure, and `counted` with it, is dropped
        spawned.map(drop)
    }

    fn is_driven_alive(&self) -> bool {
        self.driven.get().is_some_and(|d| d.is_alive())
    }

    /// A watched connection spoke (or ended): its reader starts, or, with
    /// no thread for it, it is refused. One the core closed meanwhile is
    /// just dropped.
    fn start_reader_or_refuse(&self, conn: ConnectionId, reader: Sock) {
        if !self.lock_writers().by_conn.contains_key(&conn) {
            return;
        }
        let engine = self.self_arc();
        let spawned = self.spawn_counted("foolscap-read", self.stack_size, move || {
            engine.reader_thread(conn, reader)
        });
        if spawned.is_err() {
            self.close_unattached(conn);
            if let Some(driven) = self.driven.get() {
                self.refuse(driven, conn);
            }
        }
    }

    /// Closes the socket of a connection whose reader could not start.
    fn close_unattached(&self, conn: ConnectionId) {
        if let Some(w) = self.lock_writers().by_conn.remove(&conn) {
            if let Some(idle) = w.idle {
                let _ = idle.stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Starts a connection's writer thread; without one the connection is
    /// closed (its reader sees the end and tells the core).
    fn start_writer(&self, w: StartWriter) {
        let StartWriter { conn, idle, queued } = w;
        let shut = idle.stream.clone();
        let engine = self.self_arc();
        let IdleWriter { stream, rx } = idle;
        let spawned = self.spawn_counted("foolscap-write", self.stack_size, move || {
            engine.writer_thread(conn, &stream, rx, &queued)
        });
        if spawned.is_err() {
            // its entry stays until the core closes it (sends to it go
            // nowhere)
            let _ = shut.shutdown(Shutdown::Both);
        }
    }

    /// Drives the Tub on the calling thread (an engine thread).
    fn drive(&self) {
        if let Some(driven) = self.driven.get() {
            let mut io = self.io();
            driven.drive(&mut io);
            self.finish_io(io);
        }
    }

    fn notify_readers(&self) {
        // under the lock, so a reader between its check and its wait
        // cannot miss it
        drop(self.drained.lock().unwrap_or_else(|e| e.into_inner()));
        self.drained_cv.notify_all();
    }

    /// Timers, and events that no reader's input produced.
    fn engine_thread(self: Arc<Engine>) {
        let Some(driven) = self.driven.get().cloned() else {
            return;
        };
        loop {
            if self.released.load(Ordering::Acquire) || !driven.is_alive() {
                return;
            }
            let now = Instant::now();
            driven.handle_timeout(now);
            self.drive();
            let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
            if work.pending {
                work.pending = false;
                continue;
            }
            if driven.is_shut_down() && self.lock_writers().by_conn.is_empty() {
                return;
            }
            // sleep until the next deadline (at most a second, to notice
            // the Tub going away), read under the work lock so a wake
            // that files an earlier one sees `sleeping_until`
            let next = driven.poll_timeout();
            let wait = next
                .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            work.sleeping_until = Some(now + wait);
            let (mut work, _) = self
                .work_cv
                .wait_timeout(work, wait)
                .unwrap_or_else(|e| e.into_inner());
            work.sleeping_until = None;
            work.pending = false;
        }
    }

    /// Registers a socket for `conn` and starts its reader, or (`watch`:
    /// an accepted socket) has it wait for its first byte in the watcher;
    /// its writer starts with its first bytes to send.
    fn attach(
        self: &Arc<Self>,
        conn: ConnectionId,
        stream: TcpStream,
        watch: bool,
    ) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let stream = Arc::new(stream);
        let reader = stream.clone();
        let (tx, rx) = mpsc::channel::<WriterMsg>();
        let queued = Arc::new(AtomicUsize::new(0));
        let mut start = None;
        {
            let mut writers = self.lock_writers();
            if writers.closed_early.remove(&conn) {
                // the core gave up on it meanwhile
                writers.early.remove(&conn);
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            let direct = stream.clone();
            let mut idle = Some(IdleWriter { stream, rx });
            // what the core sent before the socket was attached goes first
            if let Some(early) = writers.early.remove(&conn) {
                queued.fetch_add(early.len(), Ordering::AcqRel);
                let _ = tx.send(WriterMsg::Data(early));
                start = idle.take().map(|idle| StartWriter {
                    conn,
                    idle,
                    queued: queued.clone(),
                });
            }
            writers.by_conn.insert(
                conn,
                Writer {
                    tx,
                    queued,
                    stream: direct,
                    idle,
                },
            );
        }
        let watcher = match watch && start.is_none() {
            true => self.watcher.get().cloned().flatten(),
            false => None,
        };
        let spawned = match watcher {
            Some(w) => w.watch(conn, reader),
            None => {
                let engine = self.clone();
                self.spawn_counted("foolscap-read", self.stack_size, move || {
                    engine.reader_thread(conn, reader)
                })
            }
        };
        if let Err(e) = spawned {
            // the socket closes as its entry (or the writer's channel) goes
            self.close_unattached(conn);
            if let Some(w) = start {
                let _ = w.idle.stream.shutdown(Shutdown::Both);
            }
            return Err(e);
        }
        if let Some(w) = start {
            self.start_writer(w);
        }
        Ok(())
    }

    /// A connection the core knows but that got no threads: the core
    /// closes it, and nothing of it is kept here.
    fn refuse(&self, driven: &DrivenTub, conn: ConnectionId) {
        driven.handle_eof(conn, Instant::now());
        self.drive();
        let mut writers = self.lock_writers();
        writers.early.remove(&conn);
        writers.closed_early.remove(&conn);
    }

    fn dial_thread(self: Arc<Self>, dial: DialId, host: &str, port: u16) {
        let result = connect(host, port);
        let Some(driven) = self.driven.get().cloned() else {
            return;
        };
        match result {
            Ok(stream) => match driven.dial_connected(dial, Instant::now()) {
                Some(conn) => {
                    if let (Ok(l), Ok(p)) = (stream.local_addr(), stream.peer_addr()) {
                        driven.set_addresses(conn, l, p);
                    }
                    if self.attach(conn, stream, false).is_err() {
                        self.refuse(&driven, conn);
                    }
                }
                None => {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            },
            Err(e) => driven.dial_failed(dial, TransportError::from(&e)),
        }
        self.drive();
    }

    fn reader_thread(self: Arc<Self>, conn: ConnectionId, stream: Sock) {
        let Some(driven) = self.driven.get().cloned() else {
            return;
        };
        let mut buf = vec![0u8; READ_START];
        loop {
            let n = match (&*stream).read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            // a busy connection reads more at a time
            let grow = n == buf.len() && buf.len() < self.max_read_buffer;
            if !driven.is_alive() {
                return;
            }
            if n == 0 {
                driven.handle_eof(conn, Instant::now());
                self.drive();
                return;
            }
            driven.handle_input(conn, Instant::now(), &buf[..n]);
            if grow {
                buf.resize((buf.len() * 2).min(self.max_read_buffer), 0);
            }
            self.drive();
            if !self.lock_writers().by_conn.contains_key(&conn) {
                return;
            }
            self.hold_back(&driven, conn);
        }
    }

    /// Flow control: while the core says not to read `conn`, wait for its
    /// writer to drain or for answers (held calls start on this thread as
    /// they get their turns).
    fn hold_back(&self, driven: &DrivenTub, conn: ConnectionId) {
        loop {
            if driven.wants_input(conn)
                || !self.lock_writers().by_conn.contains_key(&conn)
                || driven.is_shut_down()
            {
                return;
            }
            self.drive();
            let guard = self.drained.lock().unwrap_or_else(|e| e.into_inner());
            self.held_readers.fetch_add(1, Ordering::AcqRel);
            if !driven.wants_input(conn) {
                let _ = self
                    .drained_cv
                    .wait_timeout(guard, HOLD_BACK_RECHECK)
                    .unwrap_or_else(|e| e.into_inner());
            }
            self.held_readers.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn writer_thread(
        &self,
        conn: ConnectionId,
        stream: &TcpStream,
        rx: mpsc::Receiver<WriterMsg>,
        queued: &AtomicUsize,
    ) {
        let mut stream = stream;
        let driven = self.driven.get().cloned();
        // the core hears of a drain that starts over its bound (its view
        // is over the bound exactly when the queue is; below it the figure
        // the last transmit returned stands), and held-back readers with it
        let drained = |written: usize| {
            let before = queued.fetch_sub(written, Ordering::AcqRel);
            if before > self.max_buffered_output {
                if let Some(d) = &driven {
                    d.set_backlog(conn, before - written);
                }
                self.notify_readers();
            }
        };
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
                // nothing more will be written: let held calls go (their
                // answers are dropped) so the reader sees the end
                drained(queued.load(Ordering::Acquire));
                return;
            }
            if !batch.is_empty() {
                drained(batch.len());
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
}

/// Sends what the kernel takes of `data` now, without waiting (the
/// socket stays in blocking mode for its reader and writer threads; this
/// one send does not block). Returns the bytes sent: all, some, or none
/// when the send buffer is full.
fn send_now(stream: &TcpStream, data: &[u8]) -> std::io::Result<usize> {
    use rustix::net::SendFlags;
    let mut sent = 0;
    while sent < data.len() {
        match rustix::net::send(
            stream,
            &data[sent..],
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// Accepts connections until the listener is stopped or the Tub is gone.
/// `accept` errors (out of file descriptors or memory) are answered with
/// a growing pause, never a spin, and the connections we have are served
/// meanwhile.
fn accept_loop(
    engine: Arc<Engine>,
    driven: DrivenTub,
    listener: TcpListener,
    stopped: &AtomicBool,
) {
    let mut backoff = None;
    loop {
        let accepted = listener.accept();
        if stopped.load(Ordering::Acquire) || !driven.is_alive() || driven.is_shut_down() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = None;
                stream
            }
            Err(_) => {
                let pause = accept_backoff(backoff);
                thread::sleep(pause);
                backoff = Some(pause);
                continue;
            }
        };
        // over the connection limit (or shut down) the socket just closes
        let Ok(conn) = driven.accept(Instant::now()) else {
            continue;
        };
        if let (Ok(l), Ok(p)) = (stream.local_addr(), stream.peer_addr()) {
            driven.set_addresses(conn, l, p);
        }
        if engine.attach(conn, stream, true).is_err() {
            // no thread for it: an ordinary refused connection
            engine.refuse(&driven, conn);
        }
        engine.drive();
    }
}

/// The pause after a failed `accept`, given the one after the failure
/// before (`None`: the last `accept` succeeded).
fn accept_backoff(previous: Option<Duration>) -> Duration {
    match previous {
        None => ACCEPT_BACKOFF.0,
        Some(p) => (p * 2).clamp(ACCEPT_BACKOFF.0, ACCEPT_BACKOFF.1),
    }
}

fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host name has no addresses")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of file descriptors, every `accept` fails at once: the loop
    /// pauses 10 ms, then twice as long each time up to 1 s (never a
    /// spin), and starts over after a success.
    #[test]
    fn accept_errors_back_off_from_10_ms_to_1_s() {
        let mut pauses = Vec::new();
        let mut previous = None;
        for _ in 0..10 {
            let p = accept_backoff(previous);
            pauses.push(p.as_millis());
            previous = Some(p);
        }
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(accept_backoff(None), Duration::from_millis(10));
    }
}
