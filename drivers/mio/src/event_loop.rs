//! The loop itself: sockets in a slab, Tubs by index, one read buffer.

// hashbrown's seeded foldhash, not SipHash: looked up on every event.
use hashbrown::{HashMap, HashSet};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foolscap_app::{DrivenTub, DriverIo, TransportError};
use foolscap_core::negotiation::ConnectionId;
use foolscap_core::tub::DialId;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::{Command, LoopConfig, LoopShared, LoopStats};

/// The waker's token (slots use their index).
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Queued output above this capacity is given back once sent (idle
/// connections keep no large buffers).
const KEEP_CAPACITY: usize = 16 * 1024;

/// Output a connection's input may make in one turn before the loop
/// drives instead of reading on.
const TURN_OUTPUT: usize = 64 * 1024;

/// Output a drive queues on a connection is written when the drive
/// returns, all rounds of it in one write, while the connection's queue
/// stays under this and under its Tub's `max_buffered_output` (above
/// either it is written at once, as the core's flow control expects).
const DRIVE_WRITE: usize = 64 * 1024;

/// The longest the loop sleeps with nothing due (it then checks whether
/// anybody still holds it).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Readiness events taken per poll.
pub(crate) const EVENTS: usize = 1024;

struct TubEntry {
    driven: DrivenTub,
    woken: Arc<AtomicBool>,
    conns: HashMap<ConnectionId, usize>,
    listeners: Vec<usize>,
    /// Every stream slot of this Tub (connecting, open, closing).
    streams: HashSet<usize>,
    /// The Tub's next timer, as filed in `EventLoop::tub_timers`.
    deadline: Option<Instant>,
    /// Its held calls, as of its last drive.
    held: usize,
    /// Its `TubConfig::max_buffered_output`: a connection's queue
    /// dropping below it is reported at once (held calls may go on).
    max_buffered_output: usize,
    /// Queued in `EventLoop::to_drive`.
    queued: bool,
}

enum Slot {
    Listener { tub: usize, listener: TcpListener },
    Stream(Box<Stream>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Non-blocking connect in progress (until the deadline).
    Connecting(Instant),
    Open,
    /// Sending what is queued, then waiting for the peer's EOF (until the
    /// deadline).
    Closing(Instant),
}

struct Stream {
    tub: usize,
    sock: TcpStream,
    phase: Phase,
    /// The connection, once the core knows it.
    conn: Option<ConnectionId>,
    /// Outbound: the dial and the addresses still to try.
    dial: Option<DialId>,
    more_addrs: Vec<SocketAddr>,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    sent: usize,
    /// Data may be waiting in the kernel (edge-triggered readiness).
    read_ready: bool,
    /// Reading is paused (backpressure).
    paused: bool,
    /// EOF or an error was seen on reading.
    read_closed: bool,
    /// The poller reported the peer's FIN or an error: read on until
    /// the socket says so (a short read does not end the reading then).
    read_hangup: bool,
    /// Our FIN was sent.
    write_shut: bool,
    /// Its output waits for the end of the drive (in
    /// `EventLoop::unwritten`).
    write_pending: bool,
}

impl Stream {
    fn queued(&self) -> usize {
        self.out.len() - self.sent
    }
}

/// Socket news that reaches a Tub only after its `drive` returns: the
/// Tub's lock is held while `drive` hands output to the loop, so the
/// loop must not call back into it then.
enum Deferred {
    /// A write found the peer gone (the slot, and its connection: the
    /// slot may be reused before the news is delivered).
    PeerClosed(usize, Option<ConnectionId>),
    /// A dial could not even start.
    DialFailed(usize, DialId, TransportError),
}

pub(crate) struct EventLoop {
    poll: Poll,
    shared: Arc<LoopShared>,
    config: LoopConfig,
    tubs: HashMap<usize, TubEntry>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    read_buf: Vec<u8>,
    to_drive: Vec<usize>,
    /// Streams that may have unread input (paused, or out of their turn's
    /// reads).
    backlog: HashSet<usize>,
    /// Streams with a deadline (connecting or closing).
    timed: HashSet<usize>,
    /// Each Tub's next timer, earliest first (a turn visits only the
    /// Tubs that are due).
    tub_timers: BTreeSet<(Instant, usize)>,
    /// Listener slots.
    listener_count: usize,
    /// Set while a Tub's `drive` runs (see [`Deferred`]).
    in_drive: bool,
    deferred: Vec<Deferred>,
    /// Streams whose output waits for the end of the drive
    /// ([`DRIVE_WRITE`]).
    unwritten: Vec<usize>,
    stats: LoopStats,
    /// The last turn polled (see [`EventLoop::turn`]).
    polled: bool,
}

impl EventLoop {
    pub(crate) fn new(poll: Poll, shared: Arc<LoopShared>, config: LoopConfig) -> EventLoop {
        EventLoop {
            poll,
            shared,
            read_buf: vec![0; config.read_chunk.max(1)],
            config,
            tubs: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            to_drive: Vec::new(),
            backlog: HashSet::new(),
            timed: HashSet::new(),
            tub_timers: BTreeSet::new(),
            listener_count: 0,
            in_drive: false,
            unwritten: Vec::new(),
            deferred: Vec::new(),
            stats: LoopStats::default(),
            polled: false,
        }
    }

    /// The threaded runtime's loop thread: turns until the loop ends.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        while self.turn(&mut events, None, false) {}
    }

    /// One turn: waits for readiness (until the loop's next timer, and
    /// not past `until`), then handles the sockets' events, the inbox,
    /// the backlog, the timers, and drives the Tubs that need it. False
    /// once the loop has ended (exiting with no socket left, or nobody
    /// can reach it any more); it must not turn again then.
    ///
    /// `skip_idle_poll`: when there is work at hand already (the poll would
    /// not wait) and the turn before did poll, skip this turn's poll (a
    /// system call; the next turn polls): a current-thread driver's first
    /// turn, which has the caller's new call to send.
    pub(crate) fn turn(
        &mut self,
        events: &mut Events,
        until: Option<Instant>,
        skip_idle_poll: bool,
    ) -> bool {
        let now = Instant::now();
        let exiting = self.shared.exit.load(Ordering::Acquire);
        if exiting && self.begin_exit(now) {
            return false;
        }
        if !exiting && self.tubs.is_empty() && Arc::strong_count(&self.shared) == 1 {
            // nobody can reach the loop any more
            return false;
        }
        let mut timeout = self.poll_timeout(now);
        if let Some(until) = until {
            let left = until.saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if skip_idle_poll && self.polled && timeout == Some(Duration::ZERO) {
            self.polled = false;
            events.clear();
        } else {
            self.polled = true;
            if let Err(e) = self.poll.poll(events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    return false;
                }
            }
        }
        let now = Instant::now();
        self.shared.turns.fetch_add(1, Ordering::Relaxed);
        for ev in events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            let i = ev.token().0;
            match self.slots.get(i) {
                Some(Some(Slot::Listener { .. })) => self.accept(i, now),
                Some(Some(Slot::Stream(_))) => {
                    if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                        self.writable(i, now);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        if let Some(Some(Slot::Stream(s))) = self.slots.get_mut(i) {
                            s.read_ready = true;
                            s.read_hangup |= ev.is_read_closed() || ev.is_error();
                        }
                        self.read(i, now);
                    }
                }
                _ => {}
            }
        }
        self.take_inbox(now);
        let backlog: Vec<usize> = self.backlog.iter().copied().collect();
        for i in backlog {
            self.read(i, now);
        }
        self.run_timers(now);
        self.drive_all(now);
        self.publish_stats();
        true
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let inbox_busy = {
            let inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
            !inbox.commands.is_empty() || !inbox.woken.is_empty()
        };
        if inbox_busy || !self.to_drive.is_empty() || self.backlog.iter().any(|&i| self.can_read(i))
        {
            return Some(Duration::ZERO);
        }
        // the waker must fire for work queued from here on
        self.shared.wake_pending.store(false, Ordering::Release);
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(&(d, _)) = self.tub_timers.first() {
            earliest(d);
        }
        for &i in &self.timed {
            if let Some(Some(Slot::Stream(s))) = self.slots.get(i) {
                match s.phase {
                    Phase::Connecting(d) | Phase::Closing(d) => earliest(d),
                    Phase::Open => {}
                }
            }
        }
        let wait = next.map_or(IDLE_POLL, |n| n.saturating_duration_since(now));
        Some(wait.min(IDLE_POLL))
    }

    // ---- slots ----

    fn insert(&mut self, slot: Slot) -> usize {
        let tub = match &slot {
            Slot::Listener { .. } => {
                self.listener_count += 1;
                None
            }
            Slot::Stream(s) => Some(s.tub),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        if let Some(t) = tub.and_then(|t| self.tubs.get_mut(&t)) {
            t.streams.insert(i);
        }
        i
    }

    fn stream(&mut self, i: usize) -> Option<&mut Stream> {
        match self.slots.get_mut(i) {
            Some(Some(Slot::Stream(s))) => Some(s),
            _ => None,
        }
    }

    /// Drops a socket and forgets it.
    fn remove(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        self.free.push(i);
        self.backlog.remove(&i);
        self.timed.remove(&i);
        match slot {
            Slot::Listener { tub, mut listener } => {
                self.listener_count -= 1;
                let _ = self.poll.registry().deregister(&mut listener);
                if let Some(t) = self.tubs.get_mut(&tub) {
                    t.listeners.retain(|&l| l != i);
                }
            }
            Slot::Stream(mut s) => {
                self.stats.buffered_output -= s.queued();
                let _ = self.poll.registry().deregister(&mut s.sock);
                if let Some(t) = self.tubs.get_mut(&s.tub) {
                    t.streams.remove(&i);
                    if let Some(c) = s.conn {
                        if t.conns.get(&c) == Some(&i) {
                            t.conns.remove(&c);
                        }
                    }
                }
                if s.paused {
                    self.stats.paused -= 1;
                }
            }
        }
    }

    fn queue_drive(&mut self, tub: usize) {
        if let Some(t) = self.tubs.get_mut(&tub) {
            if !t.queued {
                t.queued = true;
                self.to_drive.push(tub);
            }
        }
    }

    // ---- listening ----

    fn accept(&mut self, i: usize, now: Instant) {
        loop {
            let Some(Some(Slot::Listener { tub, listener })) = self.slots.get(i) else {
                return;
            };
            let tub = *tub;
            let (sock, _) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // e.g. out of file descriptors: try again on the next event
                Err(_) => return,
            };
            let Some(driven) = self.tubs.get(&tub).map(|t| t.driven.clone()) else {
                return;
            };
            let Ok(conn) = driven.accept(now) else {
                // over the Tub's limit or shut down: the socket just closes
                continue;
            };
            if let (Ok(l), Ok(p)) = (sock.local_addr(), sock.peer_addr()) {
                driven.set_addresses(conn, l, p);
            }
            let _ = sock.set_nodelay(true);
            let s = self.insert(Slot::Stream(Box::new(Stream {
                tub,
                sock,
                phase: Phase::Open,
                conn: Some(conn),
                dial: None,
                more_addrs: Vec::new(),
                out: Vec::new(),
                sent: 0,
                read_ready: false,
                paused: false,
                read_closed: false,
                read_hangup: false,
                write_shut: false,
                write_pending: false,
            })));
            if self.register(s).is_err() {
                driven.handle_eof(conn, now);
                self.remove(s);
            } else if let Some(t) = self.tubs.get_mut(&tub) {
                t.conns.insert(conn, s);
            }
            self.queue_drive(tub);
        }
    }

    fn register(&mut self, i: usize) -> std::io::Result<()> {
        let registry = self.poll.registry();
        match self.slots.get_mut(i) {
            Some(Some(Slot::Stream(s))) => registry.register(
                &mut s.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            ),
            Some(Some(Slot::Listener { listener, .. })) => {
                registry.register(listener, Token(i), Interest::READABLE)
            }
            _ => Ok(()),
        }
    }

    // ---- reading ----

    /// Whether reading `i` now would make progress (data may be waiting
    /// and nothing holds it back).
    fn can_read(&self, i: usize) -> bool {
        match self.slots.get(i) {
            Some(Some(Slot::Stream(s))) => {
                // a paused stream can go on once its cause is gone (the
                // queue drained, the held calls were started)
                s.read_ready && !s.read_closed && (!s.paused || !self.must_pause(s))
            }
            _ => false,
        }
    }

    /// Whether `i`'s reading must wait: the core's flow control says so
    /// (output over its bound, calls held, too many unanswered).
    fn must_pause(&self, s: &Stream) -> bool {
        match (s.conn, self.tubs.get(&s.tub)) {
            (Some(c), Some(t)) => !t.driven.wants_input(c),
            _ => false,
        }
    }

    fn read(&mut self, i: usize, now: Instant) {
        let mut reads = 0;
        loop {
            let pause = match self.slots.get(i) {
                Some(Some(Slot::Stream(s))) => {
                    if !s.read_ready || s.read_closed || matches!(s.phase, Phase::Connecting(_)) {
                        self.backlog.remove(&i);
                        return;
                    }
                    self.must_pause(s)
                }
                _ => {
                    self.backlog.remove(&i);
                    return;
                }
            };
            let s = self.stream(i).expect("checked");
            if pause != s.paused {
                s.paused = pause;
                if pause {
                    self.stats.paused += 1;
                    self.stats.pauses += 1;
                } else {
                    self.stats.paused -= 1;
                }
            }
            if pause {
                self.backlog.insert(i);
                return;
            }
            if reads >= self.config.reads_per_turn {
                self.backlog.insert(i);
                return;
            }
            let s = match self.slots.get_mut(i) {
                Some(Some(Slot::Stream(s))) => s,
                _ => return,
            };
            match s.sock.read(&mut self.read_buf) {
                Ok(0) => {
                    s.read_closed = true;
                    self.backlog.remove(&i);
                    self.peer_closed(i, now);
                    return;
                }
                Ok(n) => {
                    reads += 1;
                    // A read that did not fill the buffer emptied the
                    // socket's queue: with edge-triggered readiness, data
                    // arriving after it raises a new event, so the read
                    // that would only say WouldBlock is skipped (one system
                    // call per message fewer). The peer's FIN raises no
                    // further event once seen: after it, read on to EOF.
                    let drained = n < self.read_buf.len() && !s.read_hangup;
                    if drained {
                        s.read_ready = false;
                    }
                    let (tub, conn, phase) = (s.tub, s.conn, s.phase);
                    if let (Some(c), Phase::Open, Some(t)) = (conn, phase, self.tubs.get(&tub)) {
                        t.driven.handle_input(c, now, &self.read_buf[..n]);
                        // what that input made goes out before more is
                        // read: a burst of PINGs is answered a read's
                        // worth at a time, not in buffers of the bound's
                        // size at every stage
                        let made = t.driven.unpolled_output(c);
                        self.queue_drive(tub);
                        if made > TURN_OUTPUT && !drained {
                            self.backlog.insert(i);
                            return;
                        }
                    }
                    // a closing connection's input is discarded
                    if drained {
                        self.backlog.remove(&i);
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    s.read_ready = false;
                    self.backlog.remove(&i);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    s.read_closed = true;
                    self.backlog.remove(&i);
                    self.peer_closed(i, now);
                    return;
                }
            }
        }
    }

    /// EOF or a socket error: the core hears of it; a closing socket is
    /// done.
    fn peer_closed(&mut self, i: usize, now: Instant) {
        if self.in_drive {
            let conn = self.stream(i).and_then(|s| s.conn);
            self.deferred.push(Deferred::PeerClosed(i, conn));
            return;
        }
        let Some(s) = self.stream(i) else { return };
        match s.phase {
            Phase::Closing(_) => self.remove(i),
            Phase::Connecting(_) => self.connect_failed(
                i,
                TransportError::new(ErrorKind::ConnectionReset, "connection closed"),
                now,
            ),
            Phase::Open => {
                let (tub, conn) = (s.tub, s.conn);
                if let (Some(c), Some(t)) = (conn, self.tubs.get(&tub)) {
                    t.driven.handle_eof(c, now);
                    self.queue_drive(tub);
                } else {
                    self.remove(i);
                }
            }
        }
    }

    // ---- writing ----

    fn writable(&mut self, i: usize, now: Instant) {
        let Some(s) = self.stream(i) else { return };
        if let Phase::Connecting(_) = s.phase {
            self.check_connect(i, now);
            return;
        }
        self.flush(i, now);
    }

    /// Writes what is queued; unpauses reading below the bound; finishes
    /// a closing socket.
    fn flush(&mut self, i: usize, now: Instant) {
        let Some(Some(Slot::Stream(s))) = self.slots.get_mut(i) else {
            return;
        };
        let before = s.queued();
        let mut broken = false;
        while s.sent < s.out.len() {
            match s.sock.write(&s.out[s.sent..]) {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(n) => s.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            s.sent = s.out.len();
        }
        if s.sent == s.out.len() {
            s.out.clear();
            s.sent = 0;
            if s.out.capacity() > KEEP_CAPACITY {
                s.out = Vec::new();
            }
        }
        let after = s.queued();
        let (phase, empty, resume) = (s.phase, after == 0, s.paused && s.read_ready);
        let (tub, conn) = (s.tub, s.conn);
        self.stats.buffered_output = self.stats.buffered_output + after - before;
        // the core hears of every drain that starts over its bound (its
        // view is over the bound exactly when the queue is); below the
        // bound the figure the last transmit returned stands
        if let (Some(t), Some(c)) = (self.tubs.get(&tub), conn) {
            if before > t.max_buffered_output && after < before && !self.in_drive {
                t.driven.set_backlog(c, after);
                if after <= t.max_buffered_output {
                    // calls held for this connection may go on now
                    self.queue_drive(tub);
                }
            }
        }
        if broken {
            if let Some(s) = self.stream(i) {
                s.read_closed = true;
            }
            self.peer_closed(i, now);
            return;
        }
        if let (Phase::Closing(_), true) = (phase, empty) {
            self.shut_write(i);
        }
        if resume {
            self.backlog.insert(i);
        }
    }

    /// Queues bytes for a connection and writes what the kernel takes.
    fn transmit(&mut self, i: usize, data: &mut Vec<u8>, now: Instant) {
        let Some(Some(Slot::Stream(s))) = self.slots.get_mut(i) else {
            return;
        };
        if matches!(s.phase, Phase::Closing(_)) && s.write_shut {
            return;
        }
        let before = s.queued();
        // what was written goes before more is added, once it is at least
        // half the buffer: the buffer holds at most twice what is queued
        // (a peer that reads slowly but never quite catches up would
        // otherwise keep everything since the queue was last empty)
        if s.sent > 0 && s.sent >= s.out.len() / 2 {
            s.out.drain(..s.sent);
            s.sent = 0;
        }
        if s.out.is_empty() {
            std::mem::swap(&mut s.out, data);
        } else {
            s.out.extend_from_slice(data);
            // the caller's buffer is not kept at the size of a burst
            data.clear();
            if data.capacity() > KEEP_CAPACITY {
                *data = Vec::new();
            }
        }
        self.stats.peak_output_buffer = self.stats.peak_output_buffer.max(s.out.len());
        let queued = s.queued();
        let writing = matches!(s.phase, Phase::Open | Phase::Closing(_));
        self.stats.buffered_output += queued - before;
        let bound = self
            .tubs
            .get(&s.tub)
            .map_or(0, |t| t.max_buffered_output.min(DRIVE_WRITE));
        if writing && self.in_drive && queued <= bound {
            // the drive's later rounds add to it: one write (and one
            // wake-up of the peer) for all of them, when the drive returns
            if !s.write_pending {
                s.write_pending = true;
                self.unwritten.push(i);
            }
        } else if writing {
            self.flush(i, now);
        }
        if let Some(Some(Slot::Stream(s))) = self.slots.get(i) {
            self.stats.peak_buffered_output = self.stats.peak_buffered_output.max(s.queued());
        }
    }

    /// Writes the output drives left queued ([`DRIVE_WRITE`]) and tells
    /// the core what stays unsent, as a transmit does.
    fn write_unwritten(&mut self, now: Instant) {
        for i in std::mem::take(&mut self.unwritten) {
            let Some(s) = self.stream(i) else { continue };
            if !std::mem::take(&mut s.write_pending) {
                continue;
            }
            let (tub, conn) = (s.tub, s.conn);
            self.flush(i, now);
            let queued = self.stream(i).map_or(0, |s| s.queued());
            if let (Some(t), Some(c)) = (self.tubs.get(&tub), conn) {
                t.driven.set_backlog(c, queued);
            }
        }
    }

    /// Sends our FIN once everything is out; the socket is dropped at the
    /// peer's EOF or the close deadline.
    fn shut_write(&mut self, i: usize) {
        let Some(s) = self.stream(i) else { return };
        if !s.write_shut {
            s.write_shut = true;
            let _ = s.sock.shutdown(Shutdown::Write);
        }
        if s.read_closed {
            self.remove(i);
        }
    }

    /// The core is done with a connection: send the rest, then close.
    fn close(&mut self, i: usize, now: Instant) {
        let deadline = now + self.config.close_timeout;
        let Some(Some(Slot::Stream(s))) = self.slots.get_mut(i) else {
            return;
        };
        s.phase = Phase::Closing(deadline);
        // input from now on is read and dropped, whatever the bounds
        if s.paused {
            s.paused = false;
            self.stats.paused -= 1;
        }
        let (empty, ready, tub, conn) = (s.queued() == 0, s.read_ready, s.tub, s.conn);
        self.timed.insert(i);
        if let (Some(t), Some(c)) = (self.tubs.get_mut(&tub), conn) {
            if t.conns.get(&c) == Some(&i) {
                t.conns.remove(&c);
            }
        }
        if empty {
            self.shut_write(i);
        }
        if ready {
            self.backlog.insert(i);
        }
    }

    // ---- dialling ----

    /// `host` is bare, as a TCP hint holds it (`::1`, `fe80::1%eth0`, a
    /// name or a dotted quad).
    fn dial(&mut self, tub: usize, dial: DialId, host: String, port: u16) {
        match host.parse::<IpAddr>() {
            Ok(ip) => self.connect(tub, dial, vec![SocketAddr::new(ip, port)], Instant::now()),
            Err(_) => {
                // the system resolver blocks: ask it on a thread of its own
                let shared = self.shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("foolscap-resolve".into())
                    .spawn(move || {
                        let result = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.collect::<Vec<_>>())
                            .map_err(|e| TransportError::from(&e));
                        shared.send(Command::Resolved { tub, dial, result });
                    });
                if let Err(e) = spawned {
                    self.dial_failed(tub, dial, TransportError::from(&e));
                }
            }
        }
    }

    fn dial_failed(&mut self, tub: usize, dial: DialId, why: TransportError) {
        if self.in_drive {
            self.deferred.push(Deferred::DialFailed(tub, dial, why));
            return;
        }
        if let Some(t) = self.tubs.get(&tub) {
            t.driven.dial_failed(dial, why);
            self.queue_drive(tub);
        }
    }

    /// Starts a non-blocking connect to the first of `addrs`.
    fn connect(&mut self, tub: usize, dial: DialId, mut addrs: Vec<SocketAddr>, now: Instant) {
        let mut why = TransportError::new(ErrorKind::NotFound, "the host name has no addresses");
        while !addrs.is_empty() {
            let addr = addrs.remove(0);
            match TcpStream::connect(addr) {
                Ok(sock) => {
                    let s = self.insert(Slot::Stream(Box::new(Stream {
                        tub,
                        sock,
                        phase: Phase::Connecting(now + self.config.connect_timeout),
                        conn: None,
                        dial: Some(dial),
                        more_addrs: addrs,
                        out: Vec::new(),
                        sent: 0,
                        read_ready: false,
                        paused: false,
                        read_closed: false,
                        read_hangup: false,
                        write_shut: false,
                        write_pending: false,
                    })));
                    match self.register(s) {
                        Ok(()) => {
                            self.timed.insert(s);
                            return;
                        }
                        Err(e) => {
                            why = TransportError::from(&e);
                            addrs = self
                                .stream(s)
                                .map(|st| std::mem::take(&mut st.more_addrs))
                                .unwrap_or_default();
                            self.remove(s);
                        }
                    }
                }
                Err(e) => why = TransportError::from(&e),
            }
        }
        self.dial_failed(tub, dial, why);
    }

    fn check_connect(&mut self, i: usize, now: Instant) {
        let Some(s) = self.stream(i) else { return };
        let result = match s.sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(TransportError::from(&e)),
            Ok(None) => match s.sock.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => Err(TransportError::from(&e)),
            },
        };
        match result {
            Ok(()) => {
                let _ = s.sock.set_nodelay(true);
                let addrs = s
                    .sock
                    .local_addr()
                    .and_then(|l| Ok((l, s.sock.peer_addr()?)));
                let (tub, dial) = (s.tub, s.dial.take().expect("dialling"));
                let Some(t) = self.tubs.get(&tub) else {
                    self.remove(i);
                    return;
                };
                match t.driven.dial_connected(dial, now) {
                    Some(conn) => {
                        if let Ok((l, p)) = addrs {
                            t.driven.set_addresses(conn, l, p);
                        }
                        let s = self.stream(i).expect("present");
                        s.phase = Phase::Open;
                        s.conn = Some(conn);
                        s.more_addrs.clear();
                        self.timed.remove(&i);
                        if let Some(t) = self.tubs.get_mut(&tub) {
                            t.conns.insert(conn, i);
                        }
                        self.queue_drive(tub);
                        // data may have arrived with the connect
                        self.backlog.insert(i);
                        if let Some(s) = self.stream(i) {
                            s.read_ready = true;
                        }
                    }
                    None => self.remove(i),
                }
            }
            Err(why) => self.connect_failed(i, why, now),
        }
    }

    fn connect_failed(&mut self, i: usize, why: TransportError, now: Instant) {
        let Some(s) = self.stream(i) else { return };
        let (tub, dial, more) = (s.tub, s.dial.take(), std::mem::take(&mut s.more_addrs));
        self.remove(i);
        let Some(dial) = dial else { return };
        if more.is_empty() {
            self.dial_failed(tub, dial, why);
        } else {
            self.connect(tub, dial, more, now);
        }
    }

    // ---- commands, timers, driving ----

    fn take_inbox(&mut self, now: Instant) {
        let (commands, woken) = {
            let mut inbox = self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut inbox.commands),
                std::mem::take(&mut inbox.woken),
            )
        };
        for c in commands {
            match c {
                Command::AddTub(index, driven, woken, max_buffered_output) => {
                    self.tubs.insert(
                        index,
                        TubEntry {
                            driven,
                            woken,
                            max_buffered_output,
                            conns: HashMap::new(),
                            listeners: Vec::new(),
                            streams: HashSet::new(),
                            deadline: None,
                            held: 0,
                            queued: false,
                        },
                    );
                    self.queue_drive(index);
                }
                Command::Listen(tub, listener) => {
                    if !self.tubs.contains_key(&tub) {
                        continue;
                    }
                    let listener = TcpListener::from_std(listener);
                    let i = self.insert(Slot::Listener { tub, listener });
                    if self.register(i).is_ok() {
                        if let Some(t) = self.tubs.get_mut(&tub) {
                            t.listeners.push(i);
                        }
                    } else {
                        self.remove(i);
                    }
                }
                Command::StopListening(tub) => {
                    let listeners = self
                        .tubs
                        .get_mut(&tub)
                        .map(|t| std::mem::take(&mut t.listeners))
                        .unwrap_or_default();
                    for i in listeners {
                        self.remove(i);
                    }
                }
                Command::Resolved { tub, dial, result } => match result {
                    Ok(addrs) => self.connect(tub, dial, addrs, now),
                    Err(why) => self.dial_failed(tub, dial, why),
                },
            }
        }
        for tub in woken {
            self.queue_drive(tub);
        }
    }

    fn run_timers(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .tub_timers
            .range(..=(now, usize::MAX))
            .map(|&(_, i)| i)
            .collect();
        for i in due {
            self.set_tub_deadline(i, None);
            if let Some(t) = self.tubs.get(&i) {
                t.driven.handle_timeout(now);
            }
            self.queue_drive(i);
        }
        let timed: Vec<usize> = self.timed.iter().copied().collect();
        for i in timed {
            let Some(s) = self.stream(i) else {
                self.timed.remove(&i);
                continue;
            };
            match s.phase {
                Phase::Connecting(d) if d <= now => self.connect_failed(
                    i,
                    TransportError::new(ErrorKind::TimedOut, "timed out connecting"),
                    now,
                ),
                Phase::Closing(d) if d <= now => self.remove(i),
                _ => {}
            }
        }
    }

    /// Files a Tub's next timer in `tub_timers`.
    fn set_tub_deadline(&mut self, index: usize, deadline: Option<Instant>) {
        let Some(t) = self.tubs.get_mut(&index) else {
            return;
        };
        if t.deadline != deadline {
            if let Some(d) = t.deadline {
                self.tub_timers.remove(&(d, index));
            }
            if let Some(d) = deadline {
                self.tub_timers.insert((d, index));
            }
            t.deadline = deadline;
        }
    }

    fn drive_all(&mut self, now: Instant) {
        // driving may wake more Tubs (a callback calling another Tub)
        while !self.to_drive.is_empty() {
            let batch = std::mem::take(&mut self.to_drive);
            for index in batch {
                let Some(t) = self.tubs.get_mut(&index) else {
                    continue;
                };
                t.queued = false;
                t.woken.store(false, Ordering::Release);
                let driven = t.driven.clone();
                if !driven.is_alive() {
                    self.drop_tub(index, now);
                    continue;
                }
                let mut io = Io {
                    lp: self,
                    tub: index,
                    now,
                };
                io.lp.in_drive = true;
                driven.drive(&mut io);
                self.in_drive = false;
                self.write_unwritten(now);
                for d in std::mem::take(&mut self.deferred) {
                    match d {
                        Deferred::PeerClosed(i, conn) => {
                            if self.stream(i).is_some_and(|s| s.conn == conn) {
                                self.peer_closed(i, now)
                            }
                        }
                        Deferred::DialFailed(tub, dial, why) => self.dial_failed(tub, dial, why),
                    }
                }
                let deadline = driven.poll_timeout();
                self.set_tub_deadline(index, deadline);
                let held = driven.held_calls();
                if let Some(t) = self.tubs.get_mut(&index) {
                    self.stats.held_calls = self.stats.held_calls + held - t.held;
                    t.held = held;
                }
            }
            let woken = std::mem::take(
                &mut self
                    .shared
                    .inbox
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .woken,
            );
            for tub in woken {
                self.queue_drive(tub);
            }
        }
    }

    /// The application dropped a Tub: its sockets close (after sending
    /// what is queued).
    fn drop_tub(&mut self, index: usize, now: Instant) {
        self.set_tub_deadline(index, None);
        let Some(t) = self.tubs.remove(&index) else {
            return;
        };
        self.stats.held_calls -= t.held;
        for i in t.listeners {
            self.remove(i);
        }
        for i in t.streams {
            match self.stream(i).map(|s| s.phase) {
                Some(Phase::Open) => self.close(i, now),
                Some(Phase::Connecting(_)) => self.remove(i),
                _ => {}
            }
        }
    }

    /// Exiting: every Tub goes, sockets get their close deadline. True
    /// once no socket is left.
    fn begin_exit(&mut self, now: Instant) -> bool {
        let tubs: Vec<usize> = self.tubs.keys().copied().collect();
        for t in tubs {
            // drive once more so the last answers and closes go out
            self.queue_drive(t);
        }
        self.drive_all(now);
        let tubs: Vec<usize> = self.tubs.keys().copied().collect();
        for t in tubs {
            self.drop_tub(t, now);
        }
        self.run_timers(now);
        self.slots.iter().all(Option::is_none)
    }

    fn publish_stats(&mut self) {
        self.stats.tubs = self.tubs.len();
        self.stats.listeners = self.listener_count;
        self.stats.sockets = self.slots.len() - self.free.len() - self.stats.listeners;
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = self.stats;
    }
}

/// The loop as the core's transport, for one Tub's drive.
struct Io<'a> {
    lp: &'a mut EventLoop,
    tub: usize,
    now: Instant,
}

impl DriverIo for Io<'_> {
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) -> usize {
        let slot = self
            .lp
            .tubs
            .get(&self.tub)
            .and_then(|t| t.conns.get(&connection).copied());
        let Some(i) = slot else { return 0 };
        self.lp.transmit(i, data, self.now);
        match self.lp.slots.get(i) {
            Some(Some(Slot::Stream(s))) => s.queued(),
            _ => 0,
        }
    }

    fn close(&mut self, connection: ConnectionId) {
        let slot = self
            .lp
            .tubs
            .get(&self.tub)
            .and_then(|t| t.conns.get(&connection).copied());
        if let Some(i) = slot {
            self.lp.close(i, self.now);
        }
    }

    fn dial(&mut self, dial: DialId, host: String, port: u16) {
        self.lp.dial(self.tub, dial, host, port);
    }
}
