//! Driving a [`Tub`] from an event loop: the loop owns the sockets and
//! the thread; the Tub handle asks it for attention through [`Driver`].
//!
//! The loop's side is a [`DrivenTub`]: it passes socket events and time
//! in ([`DrivenTub::accept`], [`DrivenTub::handle_input`],
//! [`DrivenTub::handle_timeout`], ...), and [`DrivenTub::drive`] hands the
//! core's output, closes and dials to a [`DriverIo`] and runs the
//! application's objects and callbacks, on the loop's thread.

use std::sync::Weak;
use std::time::Instant;

use foolscap_core::negotiation::ConnectionId;
use foolscap_core::tub::DialId;

use crate::{Action, Error, Shared, Tub, IN_CALLBACKS};

/// What an event loop does for the Tubs it carries.
pub trait Driver: Send + Sync + 'static {
    /// The Tub has work (output, events, a timer that moved): run
    /// [`DrivenTub::drive`] soon. Called from any thread and often, so it
    /// should be cheap (coalesce wake-ups).
    fn wake(&self);
    /// Accepts connections on `listener` (bound, blocking or not) for the
    /// Tub, with [`DrivenTub::accept`].
    fn listen(&self, listener: std::net::TcpListener) -> std::io::Result<()>;
    /// Stops accepting on the Tub's listeners (connections stay).
    fn stop_listening(&self);
    /// Whether the calling thread is the loop's own (blocking waits there
    /// are refused with [`Error::WouldStallLoop`]).
    fn is_loop_thread(&self) -> bool;
}

/// Where [`DrivenTub::drive`] puts what the core asks of the transport.
pub trait DriverIo {
    /// Bytes to send on `connection`, in order. Take (`std::mem::take`)
    /// what is kept past the call; the rest of `data` is reused.
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>);
    /// Send what was transmitted on `connection`, then close its socket.
    fn close(&mut self, connection: ConnectionId);
    /// Open a TCP connection to `host:port`, then
    /// [`DrivenTub::dial_connected`] or [`DrivenTub::dial_failed`].
    fn dial(&mut self, dial: DialId, host: String, port: u16);
    /// How many calls from `connection`'s peer the application may start
    /// now; the rest are held, in order, for a later
    /// [`DrivenTub::drive`]. A loop returns 0 while the connection's
    /// output is over its bound, so the answers to a peer that does not
    /// read are not made. Default: no limit.
    fn call_budget(&mut self, connection: ConnectionId) -> usize {
        let _ = connection;
        usize::MAX
    }
}

/// Calls from one connection's peer that the application has not
/// answered ([`DrivenTub::pending_calls`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCalls {
    /// Waiting for a call budget, not handed to objects yet.
    pub held: usize,
    /// Handed to objects, not answered yet.
    pub unanswered: usize,
}

/// The event loop's side of a [`Tub`]. It does not keep the Tub alive:
/// once the application dropped every handle, [`DrivenTub::is_alive`] is
/// false and the loop closes the Tub's sockets.
#[derive(Clone)]
pub struct DrivenTub {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for DrivenTub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrivenTub")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl DrivenTub {
    pub(crate) fn new(tub: &Tub) -> DrivenTub {
        DrivenTub {
            shared: std::sync::Arc::downgrade(&tub.shared),
        }
    }

    fn tub(&self) -> Option<Tub> {
        self.upgrade()
    }

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
        self.tub().is_none_or(|t| t.lock().shutdown)
    }

    /// A socket was accepted. Refused (close it) after shutdown or over
    /// the Tub's connection limit.
    pub fn accept(&self, now: Instant) -> Result<ConnectionId, Error> {
        let tub = self.tub().ok_or(Error::Shutdown)?;
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
        let tub = self.tub()?;
        let mut st = tub.lock();
        let conn = st.core.dial_connected(dial, now)?;
        st.open.insert(conn);
        Some(conn)
    }

    /// The socket addresses of `connection`, for a recorder's transcript
    /// (see `foolscap_core::tub::Tub::set_addresses`).
    pub fn set_addresses(
        &self,
        connection: ConnectionId,
        local: std::net::SocketAddr,
        peer: std::net::SocketAddr,
    ) {
        if let Some(tub) = self.tub() {
            tub.lock().core.set_addresses(connection, local, peer);
        }
    }

    /// The TCP connection for `dial` could not be opened.
    pub fn dial_failed(&self, dial: DialId, why: &str) {
        if let Some(tub) = self.tub() {
            tub.lock().core.dial_failed(dial, why);
        }
    }

    /// Bytes read from `connection`'s socket.
    pub fn handle_input(&self, connection: ConnectionId, now: Instant, data: &[u8]) {
        if let Some(tub) = self.tub() {
            tub.lock().core.handle_input(connection, now, data);
        }
    }

    /// `connection`'s socket reached EOF or failed.
    pub fn handle_eof(&self, connection: ConnectionId, now: Instant) {
        if let Some(tub) = self.tub() {
            tub.lock().core.handle_eof(connection, now);
        }
    }

    /// When [`DrivenTub::handle_timeout`] should next run: the core's
    /// timers and the application's [`Tub::after`] callbacks.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tub = self.tub()?;
        let st = tub.lock();
        let app = st.timers.peek().map(|r| r.0 .0);
        match (st.core.poll_timeout(), app) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the core's timers due at `now` and queues the application
    /// callbacks due for the next [`DrivenTub::drive`].
    pub fn handle_timeout(&self, now: Instant) {
        let Some(tub) = self.tub() else { return };
        let mut st = tub.lock();
        while let Some(std::cmp::Reverse((t, id))) = st.timers.peek().copied() {
            if t > now {
                break;
            }
            st.timers.pop();
            if let Some(f) = st.timer_fns.remove(&id) {
                st.due.push(f);
            }
        }
        if st.core.poll_timeout().is_some_and(|t| t <= now) {
            st.core.handle_timeout(now);
        }
    }

    /// Calls from peers on `connection` that objects have not answered
    /// yet, held or started (a loop stops reading the socket while any
    /// are held or too many are unanswered).
    pub fn pending_calls(&self, connection: ConnectionId) -> PendingCalls {
        let Some(tub) = self.tub() else {
            return PendingCalls::default();
        };
        let st = tub.lock();
        PendingCalls {
            held: st.held.get(&connection).map_or(0, |q| q.len()),
            unanswered: st.unanswered.get(&connection).copied().unwrap_or(0),
        }
    }

    /// Calls from peers held over all connections, waiting for a call
    /// budget ([`DriverIo::call_budget`]).
    pub fn held_calls(&self) -> usize {
        self.tub().map_or(0, |t| t.lock().held_total)
    }

    /// Hands the core's output, closes and dials to `io`, and runs the
    /// objects and callbacks that are due, until nothing is left. Call it
    /// after feeding input or time, and when [`Driver::wake`] asked.
    pub fn drive(&self, io: &mut dyn DriverIo) {
        let Some(tub) = self.tub() else { return };
        loop {
            let mut st = tub.lock();
            let mut actions = tub.process(&mut st, io);
            actions.extend(st.due.drain(..).map(Action::Run));
            drop(st);
            if actions.is_empty() {
                break;
            }
            let outer = IN_CALLBACKS.with(|c| c.replace(true));
            tub.run_actions(actions);
            IN_CALLBACKS.with(|c| c.set(outer));
        }
    }
}
