//! The threads engine: a reader and a writer thread per connection, an
//! accept thread per listener, a thread per dial, one timer thread.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use foolscap_core::negotiation::ConnectionId;
use foolscap_core::tub::DialId;

use crate::{
    Action, DriverIo, Shared, State, Tub, CALLS_PER_ROUND, CONNECT_TIMEOUT, MAX_BUFFERED_OUTPUT,
};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

pub(crate) enum WriterMsg {
    Data(Vec<u8>),
    Close,
}

/// A connection's writer thread, and the bytes queued for it.
pub(crate) struct Writer {
    tx: mpsc::Sender<WriterMsg>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn over_bound(&self) -> bool {
        self.queued.load(Ordering::Acquire) > MAX_BUFFERED_OUTPUT
    }
}

/// The core's output, handed to the writer threads.
pub(crate) struct WriterIo<'a> {
    pub(crate) writers: &'a mut HashMap<ConnectionId, Writer>,
    pub(crate) dials: Vec<Action>,
}

impl DriverIo for WriterIo<'_> {
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) {
        if let Some(w) = self.writers.get(&connection) {
            w.queued.fetch_add(data.len(), Ordering::AcqRel);
            let _ = w.tx.send(WriterMsg::Data(std::mem::take(data)));
        }
    }

    fn close(&mut self, connection: ConnectionId) {
        if let Some(w) = self.writers.remove(&connection) {
            let _ = w.tx.send(WriterMsg::Close);
        }
    }

    fn call_budget(&mut self, connection: ConnectionId) -> usize {
        match self.writers.get(&connection) {
            Some(w) if w.over_bound() => 0,
            _ => CALLS_PER_ROUND,
        }
    }

    fn dial(&mut self, dial: DialId, host: String, port: u16) {
        self.dials.push(Action::Dial(dial, host, port));
    }
}

/// Starts the accept thread of a listener. It ends (closing the
/// listener) at the first connection after the Tub stopped listening on
/// it or shut down.
pub(crate) fn spawn_acceptor(tub: &Tub, listener: TcpListener) -> std::io::Result<()> {
    let weak = Arc::downgrade(&tub.shared);
    let local = listener.local_addr()?;
    thread::Builder::new()
        .name("foolscap-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Some(shared) = weak.upgrade() else { return };
                let tub = Tub { shared };
                {
                    let st = tub.lock();
                    if st.shutdown || !st.listeners.contains(&local) {
                        return;
                    }
                }
                if let Ok(stream) = stream {
                    let mut st = tub.lock();
                    // over the connection limit the socket just closes
                    if let Ok(conn) = st.core.accept(Instant::now()) {
                        if let (Ok(l), Ok(p)) = (stream.local_addr(), stream.peer_addr()) {
                            st.core.set_addresses(conn, l, p);
                        }
                        if attach(&tub, &mut st, conn, stream).is_err() {
                            st.core.handle_eof(conn, Instant::now());
                        }
                    }
                    tub.finish(st);
                }
            }
        })?;
    Ok(())
}

/// Starts a dial thread (host names are resolved there).
pub(crate) fn spawn_dial(tub: &Tub, dial: DialId, host: String, port: u16) {
    let weak = Arc::downgrade(&tub.shared);
    let spawned = thread::Builder::new()
        .name("foolscap-dial".into())
        .spawn(move || dial_thread(weak, dial, host, port));
    if let Err(e) = spawned {
        tub.lock().core.dial_failed(dial, &e.to_string());
    }
}

/// Registers a socket for `conn` and starts its reader and writer.
fn attach(tub: &Tub, st: &mut State, conn: ConnectionId, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let reader = stream.try_clone()?;
    let mut writer = stream;
    let (tx, rx) = mpsc::channel::<WriterMsg>();
    let queued = Arc::new(AtomicUsize::new(0));
    st.writers.insert(
        conn,
        Writer {
            tx,
            queued: queued.clone(),
        },
    );
    st.open.insert(conn);
    let weak = Arc::downgrade(&tub.shared);
    let w = weak.clone();
    thread::Builder::new()
        .name("foolscap-write".into())
        .spawn(move || writer_thread(&mut writer, rx, &queued, &w))?;
    thread::Builder::new()
        .name("foolscap-read".into())
        .spawn(move || reader_thread(weak, conn, reader))?;
    Ok(())
}

fn dial_thread(weak: Weak<Shared>, dial: DialId, host: String, port: u16) {
    let result = connect(&host, port);
    let Some(shared) = weak.upgrade() else { return };
    let tub = Tub { shared };
    let mut st = tub.lock();
    match result {
        Ok(stream) => match st.core.dial_connected(dial, Instant::now()) {
            Some(conn) => {
                if let (Ok(l), Ok(p)) = (stream.local_addr(), stream.peer_addr()) {
                    st.core.set_addresses(conn, l, p);
                }
                if let Err(e) = attach(&tub, &mut st, conn, stream) {
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

/// `host` is bare, as a TCP hint holds it (`::1`, `fe80::1%eth0`, a
/// name or a dotted quad): what the resolver takes.
fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host name has no addresses")))
}

fn reader_thread(weak: Weak<Shared>, conn: ConnectionId, mut stream: TcpStream) {
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
        hold_back(&tub, conn);
    }
}

/// Backpressure: while calls of `conn` are held (its writer is over
/// [`MAX_BUFFERED_OUTPUT`]), read no more; start them, a round at a time,
/// as the writer drains.
fn hold_back(tub: &Tub, conn: ConnectionId) {
    let mut st = tub.lock();
    loop {
        let writer = match st.writers.get(&conn) {
            Some(w) if st.held.contains_key(&conn) && !st.shutdown => w,
            _ => return,
        };
        if writer.over_bound() {
            st = tub
                .shared
                .drained
                .wait_timeout(st, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        } else {
            // the next round of held calls starts (on this thread)
            tub.finish_now(st);
            st = tub.lock();
        }
    }
}

fn writer_thread(
    stream: &mut TcpStream,
    rx: mpsc::Receiver<WriterMsg>,
    queued: &AtomicUsize,
    tub: &Weak<Shared>,
) {
    // wakes a reader holding back once the queue is at the bound again
    let drained = |written: usize| {
        let before = queued.fetch_sub(written, Ordering::AcqRel);
        if before > MAX_BUFFERED_OUTPUT && before - written <= MAX_BUFFERED_OUTPUT {
            if let Some(shared) = tub.upgrade() {
                // under the lock, so a reader between its check and its
                // wait cannot miss it
                drop(shared.state.lock());
                shared.drained.notify_all();
            }
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
        drained(batch.len());
        batch.clear();
        if close {
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

pub(crate) fn timer_thread(weak: Weak<Shared>) {
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
        let mut writers = std::mem::take(&mut st.writers);
        let mut io = WriterIo {
            writers: &mut writers,
            dials: Vec::new(),
        };
        let mut actions = tub.process(&mut st, &mut io);
        actions.append(&mut io.dials);
        st.writers = writers;
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
