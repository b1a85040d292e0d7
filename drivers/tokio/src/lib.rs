//! A tokio engine for the foolscap-rs sans-IO core, and the async face of
//! the Tub handle ([`AsyncTub`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), foolscap_app::Error> {
//! // inside a tokio runtime (multi-thread or current-thread)
//! let engine = foolscap_tokio::Engine::new(foolscap_tokio::TokioConfig::default());
//! let tub = engine.new_tub()?; // an AsyncTub: the usual handle plus async methods
//! tub.listen("127.0.0.1:0")?;
//! // let r = tub.get_reference(&furl).await?; tub.call(remote, "add", &args, &[]).await?
//! engine.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! The engine is an implementation of the one `Driver` seam of
//! `foolscap-app` plus its socket and timer plumbing; the protocol is the
//! core's and the handle's. Per Tub it runs one task that drives it (runs
//! its objects and callbacks, hands its output to the sockets) when woken
//! or when its next timer is due; per listener an accept task; per dial a
//! task (host names resolved with tokio's resolver); per connection a
//! reader task, which drives the Tub itself after its input, and a writer
//! task while the kernel leaves bytes over. A drive's output for a
//! connection goes to the socket in one write when the drive returns (all
//! its rounds of calls and answers together), while the connection's queue
//! stays under 64 KiB and the Tub's `max_buffered_output`; above either it
//! is written at once. It works on the multi-thread
//! and the current-thread runtime alike.
//!
//! Objects and callbacks run inside a drive (on the driving task or a
//! reader task) and must not block; the calls of one connection reach
//! objects in arrival order, each after the one before returned (one
//! drive of a Tub at a time, behind its gate, and `DrivenTub::drive`
//! keeps that order whatever the engine does);
//! blocking waits of the handle ([`Tub::call`], [`Tub::get_reference`])
//! made from there are refused with [`Error::WouldStallLoop`]. An object
//! may answer later from an `async` block: [`answer_async`] spawns it and
//! answers the [`Call`] with its result.
//!
//! Backpressure is the core's flow control, as on the mio engine
//! (`TubConfig::max_buffered_output`, `calls_per_round`,
//! `max_unanswered_calls`): transmit reports each connection's queued
//! bytes, the writer task reports drains from above the bound, and while
//! the core says not to read a connection its reader task leaves the
//! socket alone, so a peer that does not read our answers cannot make us
//! read (and answer) more of its calls: what it sends waits in the
//! kernel. [`TokioConfig`] holds the engine's own settings (the same as
//! the mio engine's `LoopConfig`); [`EngineStats`] counts what it holds.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod face;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use foolscap_app::{DrivenTub, Driver, DriverIo};
use foolscap_core::id::{ConnectionId, DialId};
use foolscap_core::identity::Identity;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use face::{answer_async, AsyncTub, Connections, Reply};
pub use foolscap_app::{as_remote, Call, Error, Object, Tub, TubConfig};

use conn::Conn;

/// The engine's settings (the mio engine's `LoopConfig`, same names and
/// defaults). Flow control is per Tub, in its `TubConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokioConfig {
    /// Size of the read buffer, one per runtime thread (shared by every
    /// socket read on it). Default: 64 KiB.
    pub read_chunk: usize,
    /// Reads from one socket before its task lets others run. Default: 16.
    pub reads_per_turn: usize,
    /// Time for a TCP connect to one address. Default: 30 s.
    pub connect_timeout: Duration,
    /// Time a closing connection gets to send what is queued and see the
    /// peer's EOF before its socket is dropped. Default: 5 s.
    pub close_timeout: Duration,
}

impl Default for TokioConfig {
    fn default() -> Self {
        TokioConfig {
            read_chunk: 64 * 1024,
            reads_per_turn: 16,
            connect_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of an [`Engine`] (read with [`Engine::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Tubs carried.
    pub tubs: usize,
    /// Open sockets (connections, closing ones; not dials in progress).
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
    /// Calls from peers already read but held back by flow control
    /// (their connection's output over the bound), as of each Tub's last
    /// drive.
    pub held_calls: usize,
    /// Times a Tub was driven.
    pub drives: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    tubs: AtomicUsize,
    sockets: AtomicUsize,
    listeners: AtomicUsize,
    buffered_output: AtomicUsize,
    peak_buffered_output: AtomicUsize,
    peak_output_buffer: AtomicUsize,
    paused: AtomicUsize,
    pauses: AtomicU64,
    held_calls: AtomicUsize,
    drives: AtomicU64,
}

/// What the engine's Tubs share.
pub(crate) struct EngineShared {
    pub(crate) handle: Handle,
    pub(crate) config: TokioConfig,
    pub(crate) counters: Counters,
    links: Mutex<Vec<Arc<Link>>>,
    exit: AtomicBool,
}

/// A tokio engine: makes Tubs whose sockets, timers and drives are tasks
/// on one runtime. Clones share it.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<EngineShared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Set while this thread drives a Tub (runs objects and callbacks):
    /// blocking waits there are refused.
    static IN_DRIVE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl Engine {
    /// An engine on the runtime the calling code runs in.
    ///
    /// # Panics
    /// Outside a tokio runtime (use [`Engine::with_handle`] there).
    pub fn new(config: TokioConfig) -> Engine {
        Engine::with_handle(Handle::current(), config)
    }

    /// An engine whose tasks run on the runtime of `handle` (callable
    /// from any thread).
    pub fn with_handle(handle: Handle, config: TokioConfig) -> Engine {
        Engine {
            shared: Arc::new(EngineShared {
                handle,
                config,
                counters: Counters::default(),
                links: Mutex::new(Vec::new()),
                exit: AtomicBool::new(false),
            }),
        }
    }

    /// A Tub with a new identity and the default settings.
    pub fn new_tub(&self) -> Result<AsyncTub, Error> {
        self.tub(Identity::generate()?, TubConfig::default())
    }

    /// A Tub with the identity in a certFile (created there if missing).
    pub fn tub_with_cert_file(&self, path: impl AsRef<std::path::Path>) -> Result<AsyncTub, Error> {
        let identity = foolscap_app::load_or_create_identity(path)?;
        self.tub(identity, TubConfig::default())
    }

    /// A Tub with a given identity and settings, carried by this engine.
    pub fn tub(&self, identity: Identity, config: TubConfig) -> Result<AsyncTub, Error> {
        if self.shared.exit.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let link = Arc::new_cyclic(|me| Link {
            me: me.clone(),
            engine: self.shared.clone(),
            driven: OnceLock::new(),
            wake: Notify::new(),
            resume: Notify::new(),
            drove: Notify::new(),
            conns: Mutex::new(HashMap::new()),
            drained: Mutex::new(Vec::new()),
            listeners: Mutex::new(Vec::new()),
            stopped_listeners: Mutex::new(Vec::new()),
            max_buffered_output: config.max_buffered_output,
            sockets: AtomicUsize::new(0),
            sockets_gone: Notify::new(),
            gate: Mutex::new(()),
            sleeping_until: Mutex::new(None),
            held: AtomicUsize::new(0),
            wanted: AtomicBool::new(false),
        });
        let (tub, driven) = Tub::with_driver(identity, config, link.clone())?;
        let _ = link.driven.set(driven);
        self.shared.counters.tubs.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.links).push(link.clone());
        self.shared.handle.spawn(drive_task(link));
        Ok(AsyncTub::new(tub))
    }

    /// The engine's counters, as of now.
    pub fn stats(&self) -> EngineStats {
        let c = &self.shared.counters;
        EngineStats {
            tubs: c.tubs.load(Ordering::Relaxed),
            sockets: c.sockets.load(Ordering::Relaxed),
            listeners: c.listeners.load(Ordering::Relaxed),
            buffered_output: c.buffered_output.load(Ordering::Relaxed),
            peak_buffered_output: c.peak_buffered_output.load(Ordering::Relaxed),
            peak_output_buffer: c.peak_output_buffer.load(Ordering::Relaxed),
            paused: c.paused.load(Ordering::Relaxed),
            pauses: c.pauses.load(Ordering::Relaxed),
            held_calls: c.held_calls.load(Ordering::Relaxed),
            drives: c.drives.load(Ordering::Relaxed),
        }
    }

    /// A clean shutdown: every Tub stops listening and gets up to `grace`
    /// to answer the calls it already received; then every connection
    /// closes (its queued bytes sent within
    /// [`TokioConfig::close_timeout`]), our own outstanding calls fail
    /// with [`Error::Shutdown`], and the engine makes no more Tubs.
    /// Returns once the sockets are closed.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.shared.exit.store(true, Ordering::Release);
        let links: Vec<Arc<Link>> = std::mem::take(&mut *lock(&self.shared.links));
        let live: Vec<(Arc<Link>, Tub)> = links
            .into_iter()
            .filter_map(|l| l.driven().upgrade().map(|t| (l, t)))
            .collect();
        for (_, t) in &live {
            t.stop_listening();
        }
        for (link, t) in &live {
            link.wait_answered(t, deadline).await;
        }
        for (_, t) in &live {
            t.shutdown();
        }
        let close = tokio::time::Instant::now() + self.shared.config.close_timeout;
        for (link, _) in &live {
            link.wait_closed(close).await;
            link.wait_listeners_stopped(close).await;
        }
    }

    /// [`Engine::shutdown`] from a thread outside the runtime (it blocks
    /// the calling thread until done).
    pub fn shutdown_blocking(&self, grace: Duration) {
        let engine = self.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.shared.handle.spawn(async move {
            engine.shutdown(grace).await;
            let _ = tx.send(());
        });
        let _ = rx.recv();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One Tub's link to the engine ([`Driver`]).
pub(crate) struct Link {
    me: std::sync::Weak<Link>,
    pub(crate) engine: Arc<EngineShared>,
    driven: OnceLock<DrivenTub>,
    /// Asks the driving task for a drive.
    wake: Notify,
    /// Readers paused by flow control wait on it (after every drive and
    /// drain).
    pub(crate) resume: Notify,
    /// Notified after every drive.
    drove: Notify,
    /// The open connections, for the drive's output.
    pub(crate) conns: Mutex<HashMap<ConnectionId, Arc<Conn>>>,
    /// Connections whose queue drained from above the bound since the
    /// last drive: the core hears of it before the next.
    pub(crate) drained: Mutex<Vec<Arc<Conn>>>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    /// Listener tasks aborted and perhaps not ended yet (an abort takes
    /// effect when the task is next polled): [`Engine::shutdown`] waits
    /// for them.
    stopped_listeners: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) max_buffered_output: usize,
    /// Sockets of this Tub still open.
    pub(crate) sockets: AtomicUsize,
    pub(crate) sockets_gone: Notify,
    /// Held by every drive and flush (so they never interleave, and the
    /// core's backlog figures are reported in order with transmits), and
    /// while a new connection becomes known to the core and to
    /// [`Link::conns`] (see `conn::open`).
    pub(crate) gate: Mutex<()>,
    /// When the driving task sleeps until: `Some(None)` until woken,
    /// `None` while that is being worked out (a deadline found then wakes
    /// it).
    sleeping_until: Mutex<Option<Option<Instant>>>,
    /// Held calls as of the last drive (for [`EngineStats::held_calls`]).
    held: AtomicUsize,
    /// A drive was asked for (see [`Link::drive_here`]).
    wanted: AtomicBool,
}

impl Link {
    pub(crate) fn driven(&self) -> &DrivenTub {
        self.driven.get().expect("set at creation")
    }

    /// Sets this Tub's count of held calls (and the engine's total).
    fn count_held(&self, now: usize) {
        let was = self.held.swap(now, Ordering::AcqRel);
        let c = &self.engine.counters.held_calls;
        if now > was {
            c.fetch_add(now - was, Ordering::Relaxed);
        } else {
            c.fetch_sub(was - now, Ordering::Relaxed);
        }
    }

    /// The gate, if no drive or flush holds it now.
    pub(crate) fn try_gate(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.gate.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Reports drains, then drives the Tub: objects and callbacks run on
    /// the calling thread. Call with the gate held.
    fn drive_gated(self: &Arc<Self>, driven: &DrivenTub) {
        let drained: Vec<Arc<Conn>> = std::mem::take(&mut *lock(&self.drained));
        for c in drained {
            c.report_backlog(driven);
        }
        self.engine.counters.drives.fetch_add(1, Ordering::Relaxed);
        IN_DRIVE.with(|d| d.set(d.get() + 1));
        let mut io = Io {
            link: self,
            defer: true,
            unwritten: Vec::new(),
        };
        driven.drive(&mut io);
        IN_DRIVE.with(|d| d.set(d.get() - 1));
        // one write per connection for all the drive's rounds
        for c in io.unwritten {
            c.write_deferred(self, driven);
        }
    }

    /// What follows every drive, once the gate is released: paused
    /// readers look again, waiters for answers too.
    fn after_drive(&self, driven: &DrivenTub) {
        self.resume.notify_waiters();
        self.drove.notify_waiters();
        self.count_held(driven.held_calls());
    }

    /// Wakes the driving task if the Tub's next deadline is earlier than
    /// the one it sleeps until.
    fn check_deadline(&self, next: Option<Instant>) {
        let sleeping = *lock(&self.sleeping_until);
        if let Some(t) = next {
            match sleeping {
                Some(Some(s)) if s <= t => {}
                _ => self.wake.notify_one(),
            }
        }
    }

    /// A drive on the calling task (a reader that fed input, the driving
    /// task). If a drive or flush holds the gate, the request is left to
    /// its holder, who looks at `wanted` after letting the gate go: no
    /// task waits for the gate, and no request is lost.
    pub(crate) fn drive_here(self: &Arc<Self>) {
        self.drive_combined();
        // the drive may have moved the Tub's next deadline
        self.check_deadline(self.driven().poll_timeout());
    }

    /// [`Link::drive_here`] without the deadline check (the driving task
    /// looks at the deadline itself).
    fn drive_combined(self: &Arc<Self>) {
        let driven = self.driven();
        self.wanted.store(true, Ordering::SeqCst);
        loop {
            let Some(gate) = self.try_gate() else {
                return;
            };
            if !self.wanted.swap(false, Ordering::SeqCst) {
                // a drive that started after the request covered it
                return;
            }
            self.drive_gated(driven);
            drop(gate);
            self.after_drive(driven);
            if !self.wanted.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    /// After a flush or a new connection let the gate go: a drive asked
    /// for meanwhile is the driving task's.
    pub(crate) fn after_gate(&self) {
        if self.wanted.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    async fn wait_answered(&self, tub: &Tub, deadline: tokio::time::Instant) {
        loop {
            let drove = self.drove.notified();
            tokio::pin!(drove);
            drove.as_mut().enable();
            if tub.calls_to_answer() == 0 {
                return;
            }
            // every answer is followed by a drive
            if tokio::time::timeout_at(deadline, drove).await.is_err() {
                return;
            }
        }
    }

    /// Until the aborted listener tasks have ended (their sockets closed)
    /// or `deadline`.
    async fn wait_listeners_stopped(&self, deadline: tokio::time::Instant) {
        let stopped: Vec<JoinHandle<()>> = lock(&self.stopped_listeners).drain(..).collect();
        for task in stopped {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
    }

    async fn wait_closed(&self, deadline: tokio::time::Instant) {
        loop {
            let gone = self.sockets_gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.sockets.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                return;
            }
        }
    }

    /// Every connection closes (after sending what is queued), listeners
    /// stop: the Tub is gone.
    fn close_all(self: &Arc<Self>) {
        self.stop_listening();
        let conns: Vec<Arc<Conn>> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in conns {
            c.close(self);
        }
    }
}

impl Driver for Link {
    /// From a thread of the application's own: moves what the caller's
    /// operation produced to the sockets at once (`DrivenTub::flush`:
    /// output only, no object runs on the caller's thread), and wakes the
    /// driving task for the rest: events, or an earlier deadline. From a
    /// task (async code on a runtime), or inside a drive or flush: only
    /// wakes the driving task, which then moves the output of every task
    /// that ran meanwhile in one batch.
    fn wake(&self) {
        if Handle::try_current().is_ok() {
            self.wake.notify_one();
            return;
        }
        let Some(link) = self.me.upgrade() else {
            return;
        };
        let Some(gate) = link.try_gate() else {
            self.wake.notify_one();
            return;
        };
        // a flush writes at once (nothing follows it to write later)
        let flushed = link.driven().flush(&mut Io {
            link: &link,
            defer: false,
            unwritten: Vec::new(),
        });
        drop(gate);
        link.after_gate();
        if flushed.drive {
            self.wake.notify_one();
        } else {
            self.check_deadline(flushed.next_timeout);
        }
    }

    fn listen(&self, listener: std::net::TcpListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let _guard = self.engine.handle.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let Some(link) = self.me.upgrade() else {
            return Err(std::io::Error::other("the Tub is gone"));
        };
        let task = self.engine.handle.spawn(conn::accept_task(link, listener));
        lock(&self.listeners).push(task);
        Ok(())
    }

    fn stop_listening(&self) {
        let stopping: Vec<JoinHandle<()>> = lock(&self.listeners).drain(..).collect();
        for l in &stopping {
            l.abort();
        }
        let mut stopped = lock(&self.stopped_listeners);
        stopped.retain(|t| !t.is_finished());
        stopped.extend(stopping);
    }

    fn is_loop_thread(&self) -> bool {
        IN_DRIVE.with(|d| d.get() > 0)
    }

    fn release(&self) {
        // the driving task sees the Tub gone and closes its sockets
        self.wake.notify_one();
    }

    /// An object's answer from an `async fn`: a task of the runtime.
    fn spawn(&self, work: foolscap_app::AnswerWork) {
        self.engine.handle.spawn(work);
    }
}

/// The task that drives one Tub: when woken, when its timer is due.
async fn drive_task(link: Arc<Link>) {
    let driven = link.driven().clone();
    loop {
        if !driven.is_alive() {
            break;
        }
        *lock(&link.sleeping_until) = None;
        let now = Instant::now();
        if driven.poll_timeout().is_some_and(|t| t <= now) {
            driven.handle_timeout(now);
        }
        link.drive_combined();
        let woken = link.wake.notified();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        let deadline = driven.poll_timeout();
        *lock(&link.sleeping_until) = Some(deadline);
        match deadline {
            Some(t) => {
                let _ = tokio::time::timeout_at(t.into(), woken).await;
            }
            None => woken.await,
        }
    }
    link.count_held(0);
    link.close_all();
    link.engine.counters.tubs.fetch_sub(1, Ordering::Relaxed);
    lock(&link.engine.links).retain(|l| !Arc::ptr_eq(l, &link));
}

/// The engine as the core's transport, for one drive.
struct Io<'a> {
    link: &'a Arc<Link>,
    /// Output may wait for the end of the drive (not in a flush).
    defer: bool,
    /// Connections whose output waits for the end of the drive
    /// ([`conn::DRIVE_WRITE`]).
    unwritten: Vec<Arc<Conn>>,
}

impl DriverIo for Io<'_> {
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) -> usize {
        let conn = lock(&self.link.conns).get(&connection).cloned();
        match conn {
            Some(c) => {
                let (queued, deferred) = c.transmit(data, self.link, self.defer);
                if deferred {
                    self.unwritten.push(c);
                }
                queued
            }
            None => 0,
        }
    }

    fn close(&mut self, connection: ConnectionId) {
        let conn = lock(&self.link.conns).remove(&connection);
        if let Some(c) = conn {
            c.close(self.link);
        }
    }

    fn dial(&mut self, dial: DialId, host: String, port: u16) {
        let link = self.link.clone();
        self.link
            .engine
            .handle
            .spawn(conn::dial_task(link, dial, host, port));
    }
}
