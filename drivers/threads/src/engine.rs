//! The engine's threads and the [`Driver`] they implement.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
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

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The longest a reader held back by flow control sleeps before it looks
/// again (it is normally woken at once; this only bounds a missed wake).
const HOLD_BACK_RECHECK: Duration = Duration::from_secs(1);

/// How long the accept loop backs off after an `accept` error (out of
/// file descriptors or memory): doubling from the first to the last.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

pub(crate) fn start(identity: Identity, config: TubConfig) -> Result<Tub, Error> {
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
    });
    let (tub, driven) = Tub::with_driver(identity, config, engine.clone())?;
    let _ = engine.driven.set(driven);
    let e = engine.clone();
    thread::Builder::new()
        .name("foolscap-engine".into())
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

/// A connection's writer thread, and the bytes queued for it.
struct Writer {
    tx: mpsc::Sender<WriterMsg>,
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
        let s = stopped.clone();
        thread::Builder::new()
            .name("foolscap-accept".into())
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
            let _ = w.tx.send(WriterMsg::Close);
        }
        self.work_cv.notify_all();
        self.notify_readers();
    }
}

/// The core's output, handed to the writer threads.
struct WriterIo<'a> {
    engine: &'a Engine,
    dials: Vec<(DialId, String, u16)>,
}

impl DriverIo for WriterIo<'_> {
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) -> usize {
        let mut writers = self.engine.lock_writers();
        match writers.by_conn.get(&connection) {
            Some(w) => {
                let queued = w.queued.fetch_add(data.len(), Ordering::AcqRel) + data.len();
                let _ = w.tx.send(WriterMsg::Data(std::mem::take(data)));
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
            Some(w) => {
                let _ = w.tx.send(WriterMsg::Close);
            }
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
        }
    }

    /// Starts the dials `drive` asked for (outside the Tub's lock).
    fn finish_io(&self, io: WriterIo<'_>) {
        for (dial, host, port) in io.dials {
            let Some(driven) = self.driven.get().cloned() else {
                return;
            };
            let spawned = thread::Builder::new().name("foolscap-dial".into()).spawn({
                let engine = self.self_arc();
                let host = host.clone();
                move || engine.dial_thread(dial, &host, port)
            });
            if let Err(e) = spawned {
                driven.dial_failed(dial, TransportError::from(&e));
            }
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

    /// Registers a socket for `conn` and starts its reader and writer.
    fn attach(self: &Arc<Self>, conn: ConnectionId, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        let (tx, rx) = mpsc::channel::<WriterMsg>();
        let queued = Arc::new(AtomicUsize::new(0));
        let engine = self.clone();
        let q = queued.clone();
        let mut writer = stream;
        thread::Builder::new()
            .name("foolscap-write".into())
            .spawn(move || engine.writer_thread(conn, &mut writer, rx, &q))?;
        {
            let mut writers = self.lock_writers();
            if writers.closed_early.remove(&conn) {
                // the core gave up on it meanwhile: the writer shuts the
                // socket as its channel closes, which ends the reader too
                writers.early.remove(&conn);
                return Ok(());
            }
            // what the core sent before the writer existed goes first
            if let Some(early) = writers.early.remove(&conn) {
                queued.fetch_add(early.len(), Ordering::AcqRel);
                let _ = tx.send(WriterMsg::Data(early));
            }
            writers.by_conn.insert(conn, Writer { tx, queued });
        }
        let engine = self.clone();
        let spawned = thread::Builder::new()
            .name("foolscap-read".into())
            .spawn(move || engine.reader_thread(conn, reader));
        if let Err(e) = spawned {
            // the writer ends with its channel
            self.lock_writers().by_conn.remove(&conn);
            return Err(e);
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
                    if self.attach(conn, stream).is_err() {
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

    fn reader_thread(self: Arc<Self>, conn: ConnectionId, mut stream: TcpStream) {
        let Some(driven) = self.driven.get().cloned() else {
            return;
        };
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            if !driven.is_alive() {
                return;
            }
            if n == 0 {
                driven.handle_eof(conn, Instant::now());
                self.drive();
                return;
            }
            driven.handle_input(conn, Instant::now(), &buf[..n]);
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
        stream: &mut TcpStream,
        rx: mpsc::Receiver<WriterMsg>,
        queued: &AtomicUsize,
    ) {
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
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = listener.accept();
        if stopped.load(Ordering::Acquire) || !driven.is_alive() || driven.is_shut_down() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                stream
            }
            Err(_) => {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
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
        if engine.attach(conn, stream).is_err() {
            // no thread for it: an ordinary refused connection
            engine.refuse(&driven, conn);
        }
        engine.drive();
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
