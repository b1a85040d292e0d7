//! The one seam between the application's [`Tub`] handle and an engine.
//!
//! An engine (threads, an event loop, an async runtime) owns the sockets
//! and the threads. It makes a Tub with [`Tub::with_driver`], giving the
//! handle a [`Driver`] (how the handle asks it for attention) and keeping
//! the [`DrivenTub`] (how it feeds the Tub). Everything else (the core,
//! objects, callbacks, timers, flow control) is the handle's and the
//! core's: an engine holds no protocol logic.
//!
//! ```text
//! engine                                        DrivenTub (lock held briefly)
//! socket accepted ─────────────────────────────► accept(now) -> ConnectionId
//! outbound socket connected / failed ──────────► dial_connected(dial, now) / dial_failed
//! bytes read ──────────────────────────────────► handle_input(conn, now, bytes)
//! EOF or error ────────────────────────────────► handle_eof(conn, now)
//! socket drained ──────────────────────────────► set_backlog(conn, unsent bytes)
//! timer due ───────────────────────────────────► handle_timeout(now); poll_timeout()
//! woken, or after any of the above ────────────► drive(&mut io): runs objects and callbacks
//!         DriverIo::transmit(conn, bytes) ◄────  (core output, per connection)
//!         DriverIo::close(conn) ◄──────────────  (after its last bytes)
//!         DriverIo::dial(dial, host, port) ◄───  (a FURL hint to connect to)
//! before reading a socket ─────────────────────► wants_input(conn) (flow control)
//! ```
//!
//! # The order of a connection's calls
//!
//! The calls of one connection reach their objects in arrival order, one
//! at a time: call N+1 starts after [`Object::call`](crate::Object::call)
//! returned for call N (Python runs a connection's calls in turn on its
//! reactor, and applications rely on it). The core hands them out in
//! order and [`DrivenTub::drive`] keeps them so even when several threads
//! drive the Tub at once: a drive that polls a call of a connection whose
//! earlier call another drive is running queues it for that drive. What
//! an engine must do to keep the guarantee:
//!
//! - run objects only through [`DrivenTub::drive`] (any thread, any
//!   number of drives at once);
//! - ask [`DrivenTub::wants_input`] before reading a connection and not
//!   read it while it says no (it says no while calls of the connection
//!   wait for an earlier one, which bounds that queue), and look again
//!   when [`Driver::wake`] is called (it is, when such a queue empties);
//! - feed a connection's bytes in the order they were read.

use std::sync::Weak;
use std::time::Instant;

use foolscap_core::id::{ConnectionId, DialId};
use foolscap_core::tub::{PendingCalls, TransportError};

use crate::tub::{Shared, Tub};
use crate::Error;

/// What an engine does for the Tubs it carries.
pub trait Driver: Send + Sync + 'static {
    /// The Tub has work (output, events, a timer that moved), or a
    /// connection [`DrivenTub::wants_input`] refused may be read again:
    /// run [`DrivenTub::drive`] soon and look at held-back connections
    /// again. Called from any thread, without the Tub's lock, and often:
    /// coalesce wake-ups. Inside [`DrivenTub::drive`] for the same Tub the
    /// handle calls it only when a connection's queue of calls waiting for
    /// an earlier one emptied and before a callback blocks (other work is
    /// left to that drive).
    fn wake(&self);
    /// Accepts connections on `listener` (bound, blocking mode) for the
    /// Tub, with [`DrivenTub::accept`].
    fn listen(&self, listener: std::net::TcpListener) -> std::io::Result<()>;
    /// Stops accepting on the Tub's listeners (connections stay).
    fn stop_listening(&self);
    /// Whether the calling thread is one that must never wait for the
    /// network (an event loop's own thread): blocking waits there are
    /// refused with [`Error::WouldStallLoop`].
    fn is_loop_thread(&self) -> bool;
    /// The application dropped its last handle: close the Tub's sockets
    /// and let its threads end.
    fn release(&self);
    /// Runs `work` to completion: an object's answer that is a future
    /// ([`Call::answer_future`](crate::Call::answer_future)). An engine
    /// with an executor runs it there; the default polls it on a thread
    /// of its own (woken by its waker), as the threads engine runs
    /// connections. If it cannot be run, dropping it answers the call
    /// with a failure.
    fn spawn(&self, work: AnswerWork) {
        run_on_a_thread(work)
    }
    /// A blocking wait of the handle ([`Tub::call`], [`Tub::get_reference`],
    /// [`Tub::wait_for_answers`], ...) is about to start on the calling
    /// thread, which is not a loop thread ([`Driver::is_loop_thread`]). An
    /// engine whose loop runs on the threads that wait (a current-thread
    /// runtime) drives it here until `ready()` is true or `deadline`
    /// (`None`: no deadline) passes, and returns true; `ready` is cheap and
    /// is called again after each turn of the engine and whenever the
    /// thread wakes. The default returns false at once: the handle then
    /// waits as usual, for the engine's own threads to do the work.
    fn wait_here(&self, ready: &mut dyn FnMut() -> bool, deadline: Option<Instant>) -> bool {
        let _ = (ready, deadline);
        false
    }
}

/// An answer being worked out ([`Driver::spawn`]).
pub type AnswerWork = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// [`Driver::spawn`]'s default: a thread that polls `work`, parked
/// between wake-ups, and ends with it.
pub fn run_on_a_thread(work: AnswerWork) {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark()
        }
    }
    // if no thread can be made, `work` is dropped: the call is answered
    // with a failure (as an unanswered Call is)
    let _ = std::thread::Builder::new()
        .name("foolscap-answer".into())
        .spawn(move || {
            let mut work = work;
            let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
            let mut cx = std::task::Context::from_waker(&waker);
            while work.as_mut().poll(&mut cx).is_pending() {
                std::thread::park();
            }
        });
}

/// Where [`DrivenTub::drive`] puts what the core asks of the transport.
pub trait DriverIo {
    /// Bytes to send on `connection`, in order. Take (`std::mem::take`)
    /// what is kept past the call; the rest of `data` is reused. Returns
    /// the bytes now queued for the connection and not yet taken by the
    /// kernel (the core's flow control holds the peer's calls above
    /// `TubConfig::max_buffered_output`).
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) -> usize;
    /// Send what was transmitted on `connection`, then close its socket.
    fn close(&mut self, connection: ConnectionId);
    /// Open a TCP connection to `host:port` (an IPv6 address comes without
    /// brackets), then [`DrivenTub::dial_connected`] or
    /// [`DrivenTub::dial_failed`].
    fn dial(&mut self, dial: DialId, host: String, port: u16);
}

/// The engine's side of a [`Tub`]. It does not keep the Tub alive: once
/// the application dropped every handle, [`DrivenTub::is_alive`] is false
/// and the engine closes the Tub's sockets.
#[derive(Clone)]
pub struct DrivenTub {
    pub(crate) shared: Weak<Shared>,
}

impl std::fmt::Debug for DrivenTub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrivenTub")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl DrivenTub {
    /// The application's handle, while it exists.
    pub fn upgrade(&self) -> Option<Tub> {
        self.shared.upgrade().map(|shared| Tub { shared })
    }

    /// Whether the application still holds the Tub.
    pub fn is_alive(&self) -> bool {
        self.shared.strong_count() > 0
    }

    /// Whether [`Tub::shutdown`] ran (or the Tub is gone).
    pub fn is_shut_down(&self) -> bool {
        self.upgrade().is_none_or(|t| t.lock().shutdown)
    }

    /// A socket was accepted. Refused (close it) after shutdown or over
    /// the Tub's connection limit.
    pub fn accept(&self, now: Instant) -> Result<ConnectionId, Error> {
        let tub = self.upgrade().ok_or(Error::Shutdown)?;
        let mut st = tub.lock();
        if st.shutdown {
            return Err(Error::Shutdown);
        }
        let conn = st.core.accept(now)?;
        st.open.insert(conn);
        Ok(conn)
    }

    /// The TCP connection for `dial` is open: the connection to feed, or
    /// `None` (close the socket: nobody needs it any more).
    pub fn dial_connected(&self, dial: DialId, now: Instant) -> Option<ConnectionId> {
        let tub = self.upgrade()?;
        let mut st = tub.lock();
        let conn = st.core.dial_connected(dial, now)?;
        st.open.insert(conn);
        Some(conn)
    }

    /// The TCP connection for `dial` could not be opened.
    pub fn dial_failed(&self, dial: DialId, error: TransportError) {
        if let Some(tub) = self.upgrade() {
            tub.lock().core.dial_failed(dial, error);
        }
    }

    /// The socket addresses of `connection`, for a recorder's transcript
    /// (see `foolscap_core::tub::Tub::set_addresses`).
    pub fn set_addresses(
        &self,
        connection: ConnectionId,
        local: std::net::SocketAddr,
        peer: std::net::SocketAddr,
    ) {
        if let Some(tub) = self.upgrade() {
            tub.lock().core.set_addresses(connection, local, peer);
        }
    }

    /// Bytes read from `connection`'s socket.
    pub fn handle_input(&self, connection: ConnectionId, now: Instant, data: &[u8]) {
        if let Some(tub) = self.upgrade() {
            tub.lock().core.handle_input(connection, now, data);
        }
    }

    /// `connection`'s socket reached EOF or failed.
    pub fn handle_eof(&self, connection: ConnectionId, now: Instant) {
        if let Some(tub) = self.upgrade() {
            tub.lock().core.handle_eof(connection, now);
        }
    }

    /// The bytes queued for `connection` and not yet taken by the kernel
    /// changed (the socket drained): see [`DriverIo::transmit`].
    pub fn set_backlog(&self, connection: ConnectionId, bytes: usize) {
        if let Some(tub) = self.upgrade() {
            tub.lock().core.set_backlog(connection, bytes);
        }
    }

    /// Whether to read `connection`'s socket now (false under flow
    /// control: output over its bound, calls held, too many unanswered;
    /// and while calls of it wait for an earlier call of it, running in
    /// another drive, to return). When it turns true again without input
    /// of the connection, [`Driver::wake`] is called.
    pub fn wants_input(&self, connection: ConnectionId) -> bool {
        self.upgrade().is_none_or(|t| {
            let st = t.lock();
            st.core.wants_input(connection)
                && st
                    .in_hand
                    .get(&connection)
                    .is_none_or(|h| h.queue.is_empty())
        })
    }

    /// Output made for `connection` and not taken yet
    /// (`foolscap_core::tub::Tub::unpolled_output`).
    pub fn unpolled_output(&self, connection: ConnectionId) -> usize {
        self.upgrade()
            .map_or(0, |t| t.lock().core.unpolled_output(connection))
    }

    /// When [`DrivenTub::handle_timeout`] should next run: the core's
    /// timers and the application's [`Tub::after`] callbacks.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tub = self.upgrade()?;
        let st = tub.lock();
        st.next_deadline()
    }

    /// Runs the core's timers due at `now` and queues the application
    /// callbacks due for the next [`DrivenTub::drive`].
    pub fn handle_timeout(&self, now: Instant) {
        let Some(tub) = self.upgrade() else { return };
        tub.lock().handle_timeout(now);
    }

    /// Calls from peers on `connection` that objects have not answered
    /// yet, held or started.
    pub fn pending_calls(&self, connection: ConnectionId) -> PendingCalls {
        self.upgrade().map_or_else(PendingCalls::default, |t| {
            t.lock().core.pending_calls(connection)
        })
    }

    /// Calls from peers held by flow control over all connections.
    pub fn held_calls(&self) -> usize {
        self.upgrade().map_or(0, |t| t.lock().core.held_calls())
    }

    /// Hands the core's output, closes and dials to `io`, and runs the
    /// objects and callbacks that are due, until nothing is left. Call it
    /// after feeding input or time, and when [`Driver::wake`] asked.
    /// Several threads may drive at once: the calls of one connection
    /// still run one at a time, in arrival order (see the module docs); a
    /// drive that finds a connection's earlier call running elsewhere
    /// leaves its later calls to that drive and does not wait.
    pub fn drive(&self, io: &mut dyn DriverIo) {
        if let Some(tub) = self.upgrade() {
            tub.drive(io);
        }
    }

    /// Hands the core's output, closes and dials to `io` without running
    /// any object or callback (an engine that must not run application
    /// code on the calling thread flushes with this, and drives
    /// elsewhere), and says whether a drive is needed for the rest.
    pub fn flush(&self, io: &mut dyn DriverIo) -> Flushed {
        match self.upgrade() {
            Some(tub) => {
                let mut st = tub.lock();
                st.flush(io);
                st.after_flush()
            }
            None => Flushed::default(),
        }
    }
}

/// What [`DrivenTub::flush`] left to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flushed {
    /// Events or callbacks wait for a [`DrivenTub::drive`].
    pub drive: bool,
    /// The Tub's next deadline ([`DrivenTub::poll_timeout`]).
    pub next_timeout: Option<Instant>,
}
