//! A mio event-loop driver for the foolscap-rs sans-IO core: one thread
//! carries many Tubs, listeners, connections and outbound dials.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = foolscap_mio::Runtime::start(foolscap_mio::LoopConfig::default())?;
//! let tub = runtime.new_tub()?; // the same handle as every engine's (foolscap-app)
//! tub.listen("127.0.0.1:0")?;
//! // tub.register(object, None)?, tub.call(...), ... from any thread
//! runtime.shutdown(std::time::Duration::from_secs(5));
//! # Ok(()) }
//! ```
//!
//! The application works with [`Tub`] handles (`Send + Sync`, the same
//! as every engine's, from `foolscap-app`): objects ([`Object`]) and answer callbacks
//! run on the loop's thread and must not block; other threads call
//! through the handle, which queues the work and wakes the loop
//! ([`mio::Waker`]). Blocking waits ([`Tub::call`],
//! [`Tub::get_reference`]) are refused on the loop's thread with
//! [`Error::WouldStallLoop`]. The calls of one connection reach objects
//! in arrival order, each after the one before returned (the loop drives
//! a Tub once at a time, through `DrivenTub::drive`, which keeps that
//! order; see [`Object`]).
//!
//! Slow work belongs off the loop: while one object's `call` runs, no
//! other connection of the loop is read or written. An object keeps the
//! [`Call`] (it is `Send`), does the work on a thread of the
//! application's own (or a pool), and answers from there; the answer
//! wakes the loop like any other handle call.
//!
//! ```
//! use foolscap_mio::{Call, Object};
//! use foolscap_core::value::Value;
//!
//! struct Slow;
//!
//! impl Object for Slow {
//!     fn call(&self, call: Call) {
//!         // the loop's thread returns at once; the work runs elsewhere
//!         std::thread::spawn(move || {
//!             let n = call.arg(0, "n").and_then(Value::as_i64).unwrap_or(0);
//!             let sum: i64 = (0..n).sum(); // stands for minutes of work
//!             call.answer(Value::int(sum));
//!         });
//!     }
//! }
//! ```
//!
//! Time: the loop sleeps until the earliest of the Tubs' timers
//! ([`foolscap_app::DrivenTub::poll_timeout`]: negotiation
//! deadlines, keepalives, reference releases, [`Tub::after`]), dial
//! timeouts and closing connections' deadlines.
//!
//! Nothing blocks the loop: numeric connection hints are dialled on it
//! with non-blocking connects; host names are resolved on a short-lived
//! thread each (the system resolver blocks), which hands the addresses
//! back to the loop.
//!
//! # A current-thread runtime
//!
//! [`Runtime::current_thread`] makes a runtime without a loop thread: the
//! loop runs on whichever application thread waits in a blocking call of
//! one of its Tubs ([`Tub::call`], [`Tub::get_reference`],
//! [`Tub::wait_for_answers`], a typed client's calls), for as long as it
//! waits, so a blocking call costs no thread hand-off on our side (the
//! threaded runtime hands each call to its loop thread and the answer
//! back). One thread drives at a time; other threads that wait meanwhile
//! sleep until their answer arrived (the driving thread carries it) or
//! the loop is free for them to drive. The driving thread is the loop's
//! thread while it drives: objects and callbacks run on it, and a
//! blocking wait there gets [`Error::WouldStallLoop`].
//!
//! While no thread drives, nothing happens: no socket is read or written,
//! no call from a peer answered, no timer run (keepalives, [`Tub::after`],
//! connect and close deadlines), as with tokio's current-thread runtime.
//! A server, or a client that needs its timers between calls, keeps a
//! thread in [`Runtime::run`] (or turns it now and then with
//! [`Runtime::run_until`]); [`Runtime::shutdown`] drives the loop to its
//! end on the calling thread.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use foolscap_core::value::Value;
//! use foolscap_mio::{Call, LoopConfig, Object, Runtime};
//!
//! struct Echo;
//! impl Object for Echo {
//!     fn call(&self, call: Call) {
//!         let v = call.args[0].clone();
//!         call.answer(v)
//!     }
//! }
//!
//! const T: Duration = Duration::from_secs(30);
//! // a server on a current-thread runtime, driven by a thread of its own
//! let server_rt = Runtime::current_thread(LoopConfig::default())?;
//! let server = server_rt.new_tub()?;
//! server.listen("127.0.0.1:0")?;
//! let furl = server.register(Arc::new(Echo), None)?.to_string();
//! let runner = {
//!     let rt = server_rt.clone();
//!     std::thread::spawn(move || rt.run())
//! };
//!
//! // a client whose blocking calls drive its loop on this thread
//! let client_rt = Runtime::current_thread(LoopConfig::default())?;
//! let client = client_rt.new_tub()?;
//! let echo = client.get_reference(&furl, T)?;
//! assert_eq!(client.call(&echo, "echo", &[Value::int(7)], &[], T)?, Value::int(7));
//!
//! client_rt.shutdown(T); // drives the loop to its end here
//! server_rt.shutdown(T); // the runner's `run` returns
//! runner.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! Backpressure is the core's flow control (`TubConfig::max_buffered_output`,
//! `calls_per_round`, `max_unanswered_calls`): the loop reports each
//! connection's queued bytes, and while the core says not to read a
//! connection the loop leaves its socket alone, so the peer's further
//! calls (the work that makes output) wait in the kernel. All resumes
//! once the queue drains.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod event_loop;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use foolscap_app::{DrivenTub, Driver};
use foolscap_core::identity::Identity;
use foolscap_core::tub::{DialId, TubConfig};

pub use foolscap_app::{as_remote, Call, Error, Object, Tub};

/// Event loop settings. The defaults suit a server with many mostly idle
/// connections. Flow control is per Tub, in its `TubConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopConfig {
    /// Size of the loop's one read buffer (shared by every socket).
    /// Default: 64 KiB.
    pub read_chunk: usize,
    /// Reads from one socket per loop turn before others get theirs.
    /// Default: 16.
    pub reads_per_turn: usize,
    /// Time for a TCP connect to one address. Default: 30 s.
    pub connect_timeout: Duration,
    /// Time a closing connection gets to send what is queued and see the
    /// peer's EOF before its socket is dropped. Default: 5 s.
    pub close_timeout: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            read_chunk: 64 * 1024,
            reads_per_turn: 16,
            connect_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters the loop keeps (read with [`Runtime::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Tubs carried.
    pub tubs: usize,
    /// Open sockets (connections, dials in progress, closing ones).
    pub sockets: usize,
    /// Listening sockets.
    pub listeners: usize,
    /// Bytes queued for sending over all connections.
    pub buffered_output: usize,
    /// The most bytes ever queued for one connection.
    pub peak_buffered_output: usize,
    /// The most bytes one connection's output buffer ever held, written
    /// ones not yet dropped included (at most about twice what is queued).
    pub peak_output_buffer: usize,
    /// Connections whose reading is paused (backpressure).
    pub paused: usize,
    /// Times any connection's reading was paused.
    pub pauses: u64,
    /// Calls from peers already read but held back because their
    /// connection's output is over the bound (backpressure).
    pub held_calls: usize,
    /// Loop turns.
    pub turns: u64,
}

/// A running event loop (a thread). Clones share it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    shared: Arc<LoopShared>,
    /// A current-thread runtime's loop.
    seat: Option<Arc<Seat>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    tubs: Mutex<Vec<DrivenTub>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What the loop and the handles share.
pub(crate) struct LoopShared {
    waker: mio::Waker,
    inbox: Mutex<Inbox>,
    /// A wake-up is on its way (coalesces `Waker::wake` system calls).
    wake_pending: AtomicBool,
    loop_thread: OnceLock<ThreadId>,
    next_tub: AtomicUsize,
    /// Set by [`Runtime::shutdown`]: the loop ends once its sockets are
    /// closed.
    exit: AtomicBool,
    stats: Mutex<LoopStats>,
    turns: AtomicU64,
    /// A current-thread runtime: the loop thread is whichever thread
    /// drives the loop at the moment ([`Seat`]).
    current_thread: bool,
}

/// Work handed to the loop from other threads (or from callbacks).
#[derive(Default)]
pub(crate) struct Inbox {
    commands: Vec<Command>,
    /// Tubs that asked for [`DrivenTub::drive`].
    woken: Vec<usize>,
    /// A current-thread runtime's loop is being driven (a thread may be
    /// asleep in its poll and needs the waker); while nobody drives, work
    /// just waits here for the next driver.
    driven: bool,
}

pub(crate) enum Command {
    AddTub(usize, DrivenTub, Arc<AtomicBool>, usize),
    Listen(usize, std::net::TcpListener),
    StopListening(usize),
    Resolved {
        tub: usize,
        dial: DialId,
        result: Result<Vec<SocketAddr>, foolscap_app::TransportError>,
    },
}

thread_local! {
    /// The current-thread loops this thread drives now (their
    /// [`LoopShared`]'s address), innermost last.
    static DRIVING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl LoopShared {
    fn on_loop_thread(&self) -> bool {
        if self.current_thread {
            let me = self as *const LoopShared as usize;
            DRIVING.with(|d| d.borrow().contains(&me))
        } else {
            self.loop_thread.get() == Some(&std::thread::current().id())
        }
    }

    /// Queues a command and wakes the loop.
    fn send(&self, command: Command) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .commands
            .push(command);
        self.wake_loop();
    }

    fn wake_loop(&self) {
        if self.current_thread && !self.inbox.lock().unwrap_or_else(|e| e.into_inner()).driven {
            // the next driver finds the work in the inbox (it sets
            // `driven` under the same lock before it looks)
            return;
        }
        if !self.on_loop_thread() && !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// A current-thread runtime's loop, and whose turn it is to drive it
/// (one thread at a time: the leader; threads that wait meanwhile sleep
/// on `turn_over`, woken after each of its turns while they wait, and
/// when it lets go of the loop).
struct Seat {
    state: Mutex<SeatState>,
    turn_over: Condvar,
}

struct SeatState {
    /// The loop, while no thread drives it.
    parked: Option<Box<Parked>>,
    /// The loop has ended (shut down): nothing drives it any more.
    ended: bool,
    /// Threads asleep on `turn_over`.
    waiting: usize,
}

struct Parked {
    lp: event_loop::EventLoop,
    events: mio::Events,
}

impl Seat {
    fn lock(&self) -> std::sync::MutexGuard<'_, SeatState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on the calling thread until `ready()` or `deadline`, driving
    /// the loop whenever no other thread does. False if the loop has
    /// ended (the caller waits its own way).
    fn wait(
        &self,
        shared: &LoopShared,
        ready: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        let mut st = self.lock();
        loop {
            if ready() {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return true;
            }
            if st.ended {
                return false;
            }
            if let Some(mut parked) = st.parked.take() {
                drop(st);
                let mut lead = Lead {
                    seat: self,
                    shared,
                    parked: None,
                };
                let ended = lead.drive(&mut parked, ready, deadline);
                if !ended {
                    lead.parked = Some(parked);
                }
                drop(lead);
                st = self.lock();
                continue;
            }
            st.waiting += 1;
            st = match deadline {
                Some(d) => {
                    self.turn_over
                        .wait_timeout(st, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.turn_over.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
            st.waiting -= 1;
        }
    }
}

/// The thread driving a current-thread loop. Dropped (also when a panic
/// unwinds through the loop), it gives the loop back (or marks it ended)
/// and wakes the threads that wait.
struct Lead<'a> {
    seat: &'a Seat,
    shared: &'a LoopShared,
    /// The loop to give back; `None`: it ended.
    parked: Option<Box<Parked>>,
}

impl Lead<'_> {
    /// Turns the loop until `ready()`, `deadline` or its end; true if it
    /// ended.
    fn drive(
        &mut self,
        parked: &mut Parked,
        ready: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        let me = self.shared as *const LoopShared as usize;
        DRIVING.with(|d| d.borrow_mut().push(me));
        self.shared
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .driven = true;
        let mut first = true;
        loop {
            // the first turn has the caller's new work to hand out: its
            // poll would not wait (the next turn's does)
            if !parked.lp.turn(&mut parked.events, deadline, first) {
                return true;
            }
            first = false;
            if ready() || deadline.is_some_and(|d| d <= Instant::now()) {
                return false;
            }
            if self.seat.lock().waiting > 0 {
                // their answers may have arrived in this turn
                self.seat.turn_over.notify_all();
            }
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let me = self.shared as *const LoopShared as usize;
        DRIVING.with(|d| {
            let mut d = d.borrow_mut();
            if let Some(i) = d.iter().rposition(|&x| x == me) {
                d.remove(i);
            }
        });
        self.shared
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .driven = false;
        let mut st = self.seat.lock();
        match self.parked.take() {
            Some(p) => st.parked = Some(p),
            None => st.ended = true,
        }
        if st.waiting > 0 {
            self.seat.turn_over.notify_all();
        }
    }
}

/// One Tub's link to the loop ([`Driver`]).
struct TubLink {
    index: usize,
    /// Set while the Tub is queued for driving.
    woken: Arc<AtomicBool>,
    shared: Arc<LoopShared>,
    /// A current-thread runtime's loop.
    seat: Option<Arc<Seat>>,
}

impl Driver for TubLink {
    fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.shared
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .woken
                .push(self.index);
            self.shared.wake_loop();
        }
    }

    fn listen(&self, listener: std::net::TcpListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        self.shared.send(Command::Listen(self.index, listener));
        Ok(())
    }

    fn stop_listening(&self) {
        self.shared.send(Command::StopListening(self.index));
    }

    fn is_loop_thread(&self) -> bool {
        self.shared.on_loop_thread()
    }

    fn release(&self) {
        // the loop notices the dead Tub on its next drive of it
        self.wake();
    }

    fn wait_here(&self, ready: &mut dyn FnMut() -> bool, deadline: Option<Instant>) -> bool {
        match &self.seat {
            // a wait inside the loop's own turn would wait for itself
            Some(seat) if !self.shared.on_loop_thread() => seat.wait(&self.shared, ready, deadline),
            _ => false,
        }
    }
}

impl Runtime {
    fn new_loop(
        config: LoopConfig,
        current_thread: bool,
    ) -> std::io::Result<(Arc<LoopShared>, event_loop::EventLoop)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), event_loop::WAKER)?;
        let shared = Arc::new(LoopShared {
            waker,
            inbox: Mutex::new(Inbox::default()),
            wake_pending: AtomicBool::new(false),
            loop_thread: OnceLock::new(),
            next_tub: AtomicUsize::new(0),
            exit: AtomicBool::new(false),
            stats: Mutex::new(LoopStats::default()),
            turns: AtomicU64::new(0),
            current_thread,
        });
        let lp = event_loop::EventLoop::new(poll, shared.clone(), config);
        Ok((shared, lp))
    }

    /// A current-thread runtime: no thread of its own; its loop runs on
    /// whichever thread waits in a blocking call of one of its Tubs
    /// ([`Tub::call`], [`Tub::get_reference`], [`Tub::wait_for_answers`],
    /// a typed client's calls, ...), or in [`Runtime::run`] /
    /// [`Runtime::run_until`], for as long as it waits. One thread drives
    /// at a time; threads that wait meanwhile sleep until their answer
    /// arrived or the loop is free. The driving thread is the loop's
    /// thread: objects and callbacks run on it, and a blocking wait from
    /// inside them gets [`Error::WouldStallLoop`].
    ///
    /// While no thread drives, nothing happens: no socket is read or
    /// written, no call answered, no timer (keepalives, [`Tub::after`],
    /// connection and close deadlines) runs. A server, or a client that
    /// needs its timers between calls, keeps a thread in
    /// [`Runtime::run`]. This saves the two thread hand-offs per blocking
    /// call of [`Runtime::start`]'s loop thread (to the loop and back).
    pub fn current_thread(config: LoopConfig) -> std::io::Result<Runtime> {
        let (shared, lp) = Self::new_loop(config, true)?;
        let seat = Arc::new(Seat {
            state: Mutex::new(SeatState {
                parked: Some(Box::new(Parked {
                    lp,
                    events: mio::Events::with_capacity(event_loop::EVENTS),
                })),
                ended: false,
                waiting: 0,
            }),
            turn_over: Condvar::new(),
        });
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                shared,
                seat: Some(seat),
                thread: Mutex::new(None),
                tubs: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Whether this is a [`Runtime::current_thread`] runtime.
    pub fn is_current_thread(&self) -> bool {
        self.inner.seat.is_some()
    }

    /// Drives a [`Runtime::current_thread`] loop on the calling thread
    /// until it ends ([`Runtime::shutdown`], from another thread or from a
    /// callback). Threads that make blocking calls meanwhile wait for
    /// this one to carry their answers. On a runtime of
    /// [`Runtime::start`] (its loop has a thread of its own) it returns
    /// at once. [`Error::WouldStallLoop`] from inside the loop (an
    /// object or a callback).
    pub fn run(&self) -> Result<(), Error> {
        self.drive_here(None).map(|_| ())
    }

    /// [`Runtime::run`] until `deadline` at the latest. Returns whether
    /// the loop still runs (false once it ended).
    pub fn run_until(&self, deadline: Instant) -> Result<bool, Error> {
        self.drive_here(Some(deadline))
    }

    fn drive_here(&self, deadline: Option<Instant>) -> Result<bool, Error> {
        let Some(seat) = &self.inner.seat else {
            return Ok(!self.inner.shared.exit.load(Ordering::Acquire));
        };
        if self.inner.shared.on_loop_thread() {
            return Err(Error::WouldStallLoop);
        }
        Ok(seat.wait(&self.inner.shared, &mut || false, deadline))
    }

    /// Starts an event loop on a new thread.
    pub fn start(config: LoopConfig) -> std::io::Result<Runtime> {
        let (shared, lp) = Self::new_loop(config, false)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("foolscap-mio".into())
            .spawn(move || {
                let _ = ready_tx.send(());
                lp.run()
            })?;
        let _ = shared.loop_thread.set(thread.thread().id());
        let _ = ready_rx.recv();
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                shared,
                seat: None,
                thread: Mutex::new(Some(thread)),
                tubs: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A Tub with a new identity, carried by this loop.
    pub fn new_tub(&self) -> Result<Tub, Error> {
        self.tub(Identity::generate()?, TubConfig::default())
    }

    /// A Tub with the identity in a certFile (created there if missing).
    pub fn tub_with_cert_file(&self, path: impl AsRef<std::path::Path>) -> Result<Tub, Error> {
        let identity = foolscap_app::load_or_create_identity(path)?;
        self.tub(identity, TubConfig::default())
    }

    /// A Tub with a given identity and settings, carried by this loop.
    pub fn tub(&self, identity: Identity, config: TubConfig) -> Result<Tub, Error> {
        let shared = &self.inner.shared;
        if shared.exit.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let index = shared.next_tub.fetch_add(1, Ordering::Relaxed);
        let woken = Arc::new(AtomicBool::new(false));
        let link = Arc::new(TubLink {
            index,
            woken: woken.clone(),
            shared: shared.clone(),
            seat: self.inner.seat.clone(),
        });
        let max_buffered_output = config.max_buffered_output;
        let (tub, driven) = Tub::with_driver(identity, config, link)?;
        self.inner
            .tubs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(driven.clone());
        shared.send(Command::AddTub(index, driven, woken, max_buffered_output));
        Ok(tub)
    }

    /// The loop's counters, as of its last turn.
    pub fn stats(&self) -> LoopStats {
        let mut s = *self
            .inner
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.turns = self.inner.shared.turns.load(Ordering::Relaxed);
        s
    }

    /// A clean shutdown: every Tub stops listening and gets up to `grace`
    /// to answer the calls it already received
    /// ([`Tub::shutdown_within`]); then every connection closes (its
    /// queued bytes sent within [`LoopConfig::close_timeout`]), our own
    /// outstanding calls fail with [`Error::Shutdown`], and the loop's
    /// thread ends. Call it from outside the loop's thread.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let tubs: Vec<DrivenTub> = self
            .inner
            .tubs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let live: Vec<Tub> = tubs.iter().filter_map(|t| t.upgrade()).collect();
        // all stop listening, then drain together within the one deadline
        for t in &live {
            t.stop_listening();
        }
        if !self.inner.shared.on_loop_thread() {
            for t in &live {
                t.wait_for_answers(deadline);
            }
        }
        for t in &live {
            t.shutdown();
        }
        drop(live);
        let shared = &self.inner.shared;
        shared.exit.store(true, Ordering::Release);
        shared.wake_pending.store(false, Ordering::Release);
        let _ = shared.waker.wake();
        if shared.on_loop_thread() {
            return;
        }
        if let Some(seat) = &self.inner.seat {
            // drive the loop to its end here (or wait for the thread
            // that drives it to get there)
            seat.wait(shared, &mut || false, None);
            return;
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}
