//! The socket plumbing: accept, dial, and a reader and a writer task per
//! connection. No protocol here: bytes go to the [`DrivenTub`] and come
//! from its drive.

use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use foolscap_app::{DrivenTub, TransportError};
use foolscap_core::id::{ConnectionId, DialId};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::{lock, EngineShared, Link};

/// Queued output above this capacity is given back once sent (idle
/// connections keep no large buffers), as on the mio engine.
const KEEP_CAPACITY: usize = 16 * 1024;

/// How long accepting waits after an error (out of file descriptors,
/// say) before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

thread_local! {
    /// The read buffer of the runtime thread (shared by every socket read
    /// on it; never held across an await).
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Which of two futures finished first.
enum First<A, B> {
    A(A),
    B(B),
}

/// Waits for the first of `a` and `b` (polled in that order).
async fn first<A: Future, B: Future>(a: A, b: B) -> First<A::Output, B::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(First::A(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(First::B(v));
        }
        Poll::Pending
    })
    .await
}

/// One connection, as the drive and its two tasks share it.
pub(crate) struct Conn {
    id: ConnectionId,
    out: Mutex<Out>,
    /// Wakes the writer task (more to send, or closing).
    writer: Notify,
    /// Set by [`Conn::close`].
    closing: AtomicBool,
    closed: Notify,
    /// Queued in `Link::drained`.
    drained: AtomicBool,
}

struct Out {
    /// `None` once our FIN is sent.
    sock: Option<Arc<OwnedWriteHalf>>,
    /// Counts the socket while its write half is open.
    guard: Option<Arc<SocketGuard>>,
    /// The writer task runs (it starts with the first bytes the kernel
    /// does not take at once, or a close: an idle connection has none).
    writer: bool,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// Closing: sent what is queued by then, or the socket goes.
    close_deadline: Option<tokio::time::Instant>,
    broken: bool,
    /// Bytes wait for the end of the drive that made them
    /// ([`DRIVE_WRITE`]).
    write_pending: bool,
}

/// A drive's output for a connection is written when the drive returns,
/// all rounds of it in one write (one wake-up of the peer), while the
/// connection's queue stays under this and under its Tub's
/// `max_buffered_output` (above either it is written at once, as the
/// core's flow control expects); as on the mio engine.
pub(crate) const DRIVE_WRITE: usize = 64 * 1024;

impl Out {
    fn queued(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Writes what the kernel takes now.
    fn write_some(&mut self) {
        let Some(sock) = &self.sock else {
            self.sent = self.buf.len();
            return;
        };
        while self.sent < self.buf.len() {
            match sock.try_write(&self.buf[self.sent..]) {
                Ok(0) => self.broken = true,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => self.broken = true,
            }
            if self.broken {
                self.sent = self.buf.len();
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
    }
}

/// Counts a socket of a Tub while either of its tasks runs.
struct SocketGuard(Arc<Link>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0
            .engine
            .counters
            .sockets
            .fetch_sub(1, Ordering::Relaxed);
        if self.0.sockets.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.sockets_gone.notify_waiters();
        }
    }
}

/// Counts a listener while its task runs.
struct ListenerGuard(Arc<EngineShared>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.counters.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

fn max_update(cell: &std::sync::atomic::AtomicUsize, v: usize) {
    cell.fetch_max(v, Ordering::Relaxed);
}

impl Conn {
    /// Starts the writer task unless it runs (or the socket is done).
    fn ensure_writer(self: &Arc<Self>, o: &mut Out, link: &Arc<Link>) {
        if o.writer {
            self.writer.notify_one();
            return;
        }
        if let (Some(sock), Some(guard)) = (&o.sock, &o.guard) {
            o.writer = true;
            link.engine.handle.spawn(writer_task(
                link.clone(),
                self.clone(),
                sock.clone(),
                guard.clone(),
            ));
        }
    }

    /// Queues `data` and writes what the kernel takes; returns what
    /// stays queued, and whether the write waits for the end of the
    /// drive (`defer`, and under [`DRIVE_WRITE`]: then
    /// [`Conn::write_deferred`] must follow the drive). Runs inside the
    /// drive, with the Tub's lock held.
    pub(crate) fn transmit(
        self: &Arc<Self>,
        data: &mut Vec<u8>,
        link: &Arc<Link>,
        defer: bool,
    ) -> (usize, bool) {
        let engine = &link.engine;
        let mut o = lock(&self.out);
        if o.sock.is_none() {
            return (0, false);
        }
        let before = o.queued();
        // written bytes go before more is added once they are half the
        // buffer: it holds at most about twice what is queued
        if o.sent > 0 && o.sent >= o.buf.len() / 2 {
            let sent = o.sent;
            o.buf.drain(..sent);
            o.sent = 0;
        }
        if o.buf.is_empty() {
            std::mem::swap(&mut o.buf, data);
        } else {
            o.buf.extend_from_slice(data);
        }
        max_update(&engine.counters.peak_output_buffer, o.buf.len());
        max_update(&engine.counters.peak_buffered_output, o.queued());
        if defer
            && !o.writer
            && !o.broken
            && o.queued() <= link.max_buffered_output.min(DRIVE_WRITE)
        {
            // the drive's later rounds add to it
            let first = !std::mem::replace(&mut o.write_pending, true);
            let after = o.queued();
            drop(o);
            account(engine, before, after);
            return (after, first);
        }
        o.write_pending = false;
        o.write_some();
        let after = o.queued();
        if after > 0 || o.broken {
            self.ensure_writer(&mut o, link);
        }
        drop(o);
        account(engine, before, after);
        (after, false)
    }

    /// Writes what a drive left for its end ([`Conn::transmit`] with
    /// `defer`) and tells the core what stays queued.
    pub(crate) fn write_deferred(self: &Arc<Self>, link: &Arc<Link>, driven: &DrivenTub) {
        let mut o = lock(&self.out);
        if !std::mem::take(&mut o.write_pending) {
            return;
        }
        let before = o.queued();
        o.write_some();
        let after = o.queued();
        if after > 0 || o.broken {
            self.ensure_writer(&mut o, link);
        }
        drop(o);
        account(&link.engine, before, after);
        driven.set_backlog(self.id, after);
    }

    /// The core is done with the connection: send the rest, then close.
    pub(crate) fn close(self: &Arc<Self>, link: &Arc<Link>) {
        let mut o = lock(&self.out);
        o.close_deadline = Some(tokio::time::Instant::now() + link.engine.config.close_timeout);
        // what waits for the end of the drive goes with the rest
        o.write_pending = false;
        if o.writer || o.queued() > 0 {
            self.ensure_writer(&mut o, link);
        } else {
            // nothing to send: our FIN goes now (with the last handle of
            // the write half)
            o.sock = None;
            o.guard = None;
        }
        drop(o);
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Tells the core what is queued now (after a drain from above the
    /// bound). From the driving task, before its drive.
    pub(crate) fn report_backlog(&self, driven: &DrivenTub) {
        self.drained.store(false, Ordering::Release);
        let queued = lock(&self.out).queued();
        driven.set_backlog(self.id, queued);
    }

    /// Resolves once [`Conn::close`] ran.
    async fn until_closing(&self) {
        loop {
            let closed = self.closed.notified();
            let mut closed = pin!(closed);
            closed.as_mut().enable();
            if self.is_closing() {
                return;
            }
            closed.await;
        }
    }
}

fn account(engine: &EngineShared, before: usize, after: usize) {
    let c = &engine.counters.buffered_output;
    if after >= before {
        c.fetch_add(after - before, Ordering::Relaxed);
    } else {
        c.fetch_sub(before - after, Ordering::Relaxed);
    }
}

/// Hands a connected socket to the core (`register` gives its id) and
/// starts its tasks. The drive is kept out meanwhile: the core may have
/// bytes for the connection as soon as it knows it, and the drive must
/// find the connection to hand them to.
fn open(
    link: &Arc<Link>,
    sock: TcpStream,
    register: impl FnOnce(&DrivenTub) -> Option<ConnectionId>,
) {
    let addrs = sock.local_addr().and_then(|l| Ok((l, sock.peer_addr()?)));
    let gate = lock(&link.gate);
    let driven = link.driven();
    let Some(id) = register(driven) else { return };
    if let Ok((l, p)) = addrs {
        driven.set_addresses(id, l, p);
    }
    start(link, id, sock);
    drop(gate);
    // the new connection's first bytes, and any drive asked for meanwhile
    link.wake.notify_one();
}

/// Starts the tasks of a connection the core knows as `id`.
fn start(link: &Arc<Link>, id: ConnectionId, sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let (read, write) = sock.into_split();
    link.sockets.fetch_add(1, Ordering::AcqRel);
    link.engine.counters.sockets.fetch_add(1, Ordering::Relaxed);
    let guard = Arc::new(SocketGuard(link.clone()));
    let conn = Arc::new(Conn {
        id,
        out: Mutex::new(Out {
            sock: Some(Arc::new(write)),
            guard: Some(guard.clone()),
            writer: false,
            buf: Vec::new(),
            sent: 0,
            close_deadline: None,
            broken: false,
            write_pending: false,
        }),
        writer: Notify::new(),
        closing: AtomicBool::new(false),
        closed: Notify::new(),
        drained: AtomicBool::new(false),
    });
    lock(&link.conns).insert(id, conn.clone());
    link.engine
        .handle
        .spawn(reader_task(link.clone(), conn, read, guard));
}

enum Flush {
    /// Everything sent: the writer task ends.
    Idle,
    Blocked(Option<tokio::time::Instant>),
    Finished,
    Broken,
}

async fn writer_task(
    link: Arc<Link>,
    conn: Arc<Conn>,
    sock: Arc<OwnedWriteHalf>,
    _guard: Arc<SocketGuard>,
) {
    let engine = &link.engine;
    loop {
        let more = conn.writer.notified();
        let mut more = pin!(more);
        more.as_mut().enable();
        let state = {
            let mut o = lock(&conn.out);
            let before = o.queued();
            o.write_some();
            let after = o.queued();
            account(engine, before, after);
            if before > link.max_buffered_output
                && after < before
                && o.close_deadline.is_none()
                && !conn.drained.swap(true, Ordering::AcqRel)
            {
                // calls held for this connection may go on: the core
                // hears of it before the next drive
                lock(&link.drained).push(conn.clone());
                link.wake.notify_one();
            }
            if o.broken {
                o.sock = None;
                o.guard = None;
                Flush::Broken
            } else if after > 0 {
                Flush::Blocked(o.close_deadline)
            } else if o.close_deadline.is_some() {
                o.sock = None;
                o.guard = None;
                Flush::Finished
            } else {
                // all sent: the task ends (transmit starts another when
                // the kernel next leaves bytes over)
                o.writer = false;
                Flush::Idle
            }
        };
        match state {
            Flush::Idle => return,
            Flush::Blocked(None) => {
                if let First::A(Err(_)) = first(sock.writable(), more).await {
                    lock(&conn.out).broken = true;
                }
            }
            Flush::Blocked(Some(deadline)) => {
                match tokio::time::timeout_at(deadline, sock.writable()).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            Flush::Finished => break,
            Flush::Broken => {
                if !conn.is_closing() {
                    link.driven().handle_eof(conn.id, Instant::now());
                    link.wake.notify_one();
                }
                break;
            }
        }
    }
    // the queue goes with the socket (a broken or timed-out one)
    let mut o = lock(&conn.out);
    let queued = o.queued();
    o.buf = Vec::new();
    o.sent = 0;
    o.sock = None;
    o.guard = None;
    drop(o);
    account(engine, queued, 0);
    // dropping the last handle of the write half sends our FIN
}

enum Read {
    Data,
    Wait,
    Again,
    Eof,
}

async fn reader_task(
    link: Arc<Link>,
    conn: Arc<Conn>,
    sock: OwnedReadHalf,
    _guard: Arc<SocketGuard>,
) {
    let driven = link.driven().clone();
    let config = &link.engine.config;
    let counters = &link.engine.counters;
    loop {
        if conn.is_closing() {
            break;
        }
        if !driven.wants_input(conn.id) {
            counters.paused.fetch_add(1, Ordering::Relaxed);
            counters.pauses.fetch_add(1, Ordering::Relaxed);
            loop {
                let resume = link.resume.notified();
                let mut resume = pin!(resume);
                resume.as_mut().enable();
                if conn.is_closing() || driven.wants_input(conn.id) {
                    break;
                }
                first(resume, conn.until_closing()).await;
            }
            counters.paused.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        match first(sock.readable(), conn.until_closing()).await {
            First::A(Ok(())) => {}
            First::A(Err(_)) => {
                driven.handle_eof(conn.id, Instant::now());
                link.wake.notify_one();
                return;
            }
            First::B(()) => break,
        }
        let mut reads = 0;
        let mut got = false;
        loop {
            let r = READ_BUF.with(|b| {
                let mut b = b.borrow_mut();
                if b.len() < config.read_chunk.max(1) {
                    b.resize(config.read_chunk.max(1), 0);
                }
                let n = config.read_chunk.max(1);
                match sock.try_read(&mut b[..n]) {
                    Ok(0) => Read::Eof,
                    Ok(n) => {
                        driven.handle_input(conn.id, Instant::now(), &b[..n]);
                        Read::Data
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Read::Wait,
                    Err(e) if e.kind() == ErrorKind::Interrupted => Read::Again,
                    Err(_) => Read::Eof,
                }
            });
            match r {
                Read::Data => {
                    got = true;
                    reads += 1;
                    if reads >= config.reads_per_turn || !driven.wants_input(conn.id) {
                        break;
                    }
                }
                Read::Wait => break,
                Read::Again => {}
                Read::Eof => {
                    driven.handle_eof(conn.id, Instant::now());
                    link.wake.notify_one();
                    return;
                }
            }
        }
        if got {
            // the input's work (objects, answers) runs here, at once
            link.drive_here();
        }
        if reads >= config.reads_per_turn {
            tokio::task::yield_now().await;
        }
    }
    // closing: input is read and dropped until the peer's EOF or the
    // close deadline
    let deadline = lock(&conn.out).close_deadline;
    let deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + config.close_timeout);
    let _ = tokio::time::timeout_at(deadline, async {
        let mut scrap = [0u8; 1024];
        loop {
            if sock.readable().await.is_err() {
                return;
            }
            match sock.try_read(&mut scrap) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// Accepts connections for a Tub until aborted.
pub(crate) async fn accept_task(link: Arc<Link>, listener: TcpListener) {
    link.engine
        .counters
        .listeners
        .fetch_add(1, Ordering::Relaxed);
    let _guard = ListenerGuard(link.engine.clone());
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                // over the Tub's limit or shut down: the socket just closes
                open(&link, sock, |d| d.accept(Instant::now()).ok());
            }
            // e.g. out of file descriptors: try again in a moment
            Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
        }
    }
}

/// Opens the TCP connection of a dial: the host's addresses in turn,
/// each within [`crate::TokioConfig::connect_timeout`].
pub(crate) async fn dial_task(link: Arc<Link>, dial: DialId, host: String, port: u16) {
    let driven = link.driven().clone();
    let timeout = link.engine.config.connect_timeout;
    let addrs: Result<Vec<SocketAddr>, TransportError> = match host.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|a| a.collect())
            .map_err(|e| TransportError::from(&e)),
    };
    let mut why = TransportError::new(ErrorKind::NotFound, "the host name has no addresses");
    match addrs {
        Err(e) => why = e,
        Ok(addrs) => {
            for addr in addrs {
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(sock)) => {
                        // `None`: nobody needs the connection any more
                        open(&link, sock, |d| d.dial_connected(dial, Instant::now()));
                        return;
                    }
                    Ok(Err(e)) => why = TransportError::from(&e),
                    Err(_) => {
                        why = TransportError::new(ErrorKind::TimedOut, "timed out connecting")
                    }
                }
            }
        }
    }
    driven.dial_failed(dial, why);
    link.wake.notify_one();
}
