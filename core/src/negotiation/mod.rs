//! Connection negotiation (docs/protocol.md §3), both roles, as a
//! sans-IO state machine: bytes in, bytes and events out, time passed in.
//!
//! ```text
//! TCP client                                   TCP server
//! GET /id/<tubid> ───────────────────────────► plaintext::parse_request
//!                 ◄─────────────────────────── 101 Switching Protocols (or 500 ...)
//! TLS client (rustls, tls::TlsContext) ◄─────► TLS server, client certificate required
//! hello ◄───────────── exchange::Exchange ───► hello
//! the master (larger tubid) sends the decision; both switch to banana
//! ```
//!
//! The layers can be driven separately: [`plaintext`] and [`blocks`] are
//! pure functions, [`Exchange`] runs the hello/decision exchange on
//! plaintext, [`TlsContext`] builds the rustls connections, and
//! [`Negotiation`] ties them together. Once a connection is established,
//! [`Session`] carries it: ciphertext in and out, plaintext for the broker.
//!
//! Driving a [`Negotiation`]:
//!
//! 1. send what [`Negotiation::poll_transmit`] gives (the client's request
//!    is ready at once);
//! 2. pass received bytes to [`Negotiation::handle_input`], EOF to
//!    [`Negotiation::handle_eof`], and call [`Negotiation::handle_timeout`]
//!    at [`Negotiation::poll_timeout`];
//! 3. after each call, send [`Negotiation::poll_transmit`] and look at
//!    [`Negotiation::poll_event`]: on [`NegotiationEvent::Established`]
//!    continue with the [`Session`] (which holds whatever was left to
//!    send); on [`NegotiationEvent::Failed`] send what is left to transmit
//!    (the reply Python would give) and close the TCP connection.
//!
//! Two optional extras, set right after construction: a [`Recorder`]
//! ([`Negotiation::with_recorder`]) sees the connection's application
//! bytes, for transcripts; [`Negotiation::without_tls`] replaces TLS by a
//! pass-through channel, to replay recorded transcripts (never for real
//! peers).

pub mod blocks;
pub mod decision;
mod error;
mod exchange;
pub mod plaintext;
mod record;
mod session;
pub mod tls;

use std::time::{Duration, Instant};

use bytes::BytesMut;

pub use decision::{ConnectionId, ConnectionTable, LiveConnection};
pub use error::{NegotiationError, Side};
pub use exchange::{Exchange, Exchanged};
pub use plaintext::{PlaintextError, Refusal};
pub use record::{Direction, RecordPhase, Recorder, RecorderHandle};
pub use session::{Session, SessionError, SessionInfo};
pub use tls::{TlsContext, TlsOptions, WrongTubError};

/// The rustls this API exposes (errors, protocol versions).
pub use rustls;

use crate::identity::TubId;
use plaintext::BlockBuffer;
use record::Tap;
use session::Channel;

/// Negotiation parameters, Python's by default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NegotiationConfig {
    /// Time from TCP connect/accept to an established session. Python:
    /// 120 s for the server (and for a client's whole attempt).
    pub timeout: Duration,
    /// The shorter deadline of an inbound negotiation while the Tub is
    /// under pressure (more than half of
    /// [`crate::tub::TubConfig::max_negotiating_connections`] in use): the
    /// Tub gives it to every inbound connection accepted then and cuts the
    /// longer deadlines of those already negotiating to it. Python has no
    /// such mode. Default: 10 s
    /// ([`NegotiationConfig::DEFAULT_TIMEOUT_UNDER_PRESSURE`]).
    pub timeout_under_pressure: Duration,
    /// Longest request, response or block, blank line included. Python:
    /// 4096.
    pub max_block_bytes: usize,
    /// `initial-vocab-table-range` we offer; tables 0 and 1 exist.
    pub vocab_range: (u32, u32),
    /// Python's `handle-old-duplicate-connections` option: accept an offer
    /// from an old peer (no incarnation or no `last-connection`) when the
    /// existing connection is at least this old. Default: off.
    pub handle_old_duplicate_connections: Option<Duration>,
}

impl NegotiationConfig {
    /// Default `timeout` (Python's).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// Default `timeout_under_pressure`.
    pub const DEFAULT_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(10);
}

impl Default for NegotiationConfig {
    fn default() -> Self {
        NegotiationConfig {
            timeout: Self::DEFAULT_TIMEOUT,
            timeout_under_pressure: Self::DEFAULT_TIMEOUT_UNDER_PRESSURE,
            max_block_bytes: plaintext::MAX_BLOCK_BYTES,
            vocab_range: crate::banana::VocabTable::RANGE,
            handle_old_duplicate_connections: None,
        }
    }
}

/// How a negotiation ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum NegotiationEvent {
    /// The connection is ready for banana.
    Established(Box<Session>),
    /// It failed; send what is left to transmit, then close.
    Failed(NegotiationError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Plaintext,
    Tls,
    Finished,
}

/// One connection's negotiation, either role.
pub struct Negotiation {
    tls_context: TlsContext,
    /// TCP client only: the tubid dialled.
    target: Option<TubId>,
    id: ConnectionId,
    deadline: Instant,
    phase: Phase,
    plain: BlockBuffer,
    max_block_bytes: usize,
    out: Vec<u8>,
    tls: Option<Channel>,
    /// Replay only: run without TLS, with this peer tubid.
    clear_peer: Option<TubId>,
    tap: Tap,
    exchange: Exchange,
    peer_cert: Option<TubId>,
    event: Option<NegotiationEvent>,
}

impl std::fmt::Debug for Negotiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiation")
            .field("id", &self.id)
            .field("me", &self.tls_context.tubid())
            .field("target", &self.target)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Negotiation {
    /// The TCP client's side: dials `target` (the FURL's tubid) at `host`
    /// (the hint's host, sent in the `Host:` line). The request is ready to
    /// transmit at once.
    pub fn client(
        tls: &TlsContext,
        table: &mut ConnectionTable,
        target: TubId,
        host: &str,
        config: &NegotiationConfig,
        now: Instant,
    ) -> Negotiation {
        let mut n = Self::new(tls, table, Some(target), config, now);
        n.out = plaintext::format_request(&target, host);
        n
    }

    /// The TCP server's side of an accepted connection.
    pub fn server(
        tls: &TlsContext,
        table: &mut ConnectionTable,
        config: &NegotiationConfig,
        now: Instant,
    ) -> Negotiation {
        Self::new(tls, table, None, config, now)
    }

    fn new(
        tls: &TlsContext,
        table: &mut ConnectionTable,
        target: Option<TubId>,
        config: &NegotiationConfig,
        now: Instant,
    ) -> Negotiation {
        let id = table.next_connection_id();
        Negotiation {
            tls_context: tls.clone(),
            target,
            id,
            deadline: now + config.timeout,
            phase: Phase::Plaintext,
            plain: BlockBuffer::new(),
            max_block_bytes: config.max_block_bytes,
            out: Vec::new(),
            tls: None,
            clear_peer: None,
            tap: Tap::default(),
            exchange: Exchange::new(tls.tubid(), target, id, config, table),
            peer_cert: None,
            event: None,
        }
    }

    /// Records this connection's application bytes (see [`Recorder`]):
    /// call right after [`Negotiation::client`] or [`Negotiation::server`]
    /// (a client's request, already queued, is recorded at once).
    pub fn with_recorder(mut self, recorder: RecorderHandle) -> Negotiation {
        self.tap = Tap::new(recorder, self.id);
        if self.phase == Phase::Plaintext {
            self.tap
                .record(Direction::Sent, RecordPhase::Plain, &self.out);
        }
        self
    }

    /// **Replay and tests only.** Runs this connection without TLS: after
    /// the plaintext phase, bytes in and out are the plaintext that TLS
    /// would carry (hello and decision blocks, then banana), and `peer`
    /// stands for the tubid that the peer's certificate would prove (a
    /// client still checks it against the tubid it dialled). Offers no
    /// security at all; never use it with a real peer. Call right after
    /// construction.
    pub fn without_tls(mut self, peer: TubId) -> Negotiation {
        self.clear_peer = Some(peer);
        self
    }

    /// This connection's id in the table.
    pub fn connection_id(&self) -> ConnectionId {
        self.id
    }

    /// Whether the negotiation has ended (one way or the other).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], table: &mut ConnectionTable) {
        if now >= self.deadline {
            self.handle_timeout(now);
        }
        match self.phase {
            Phase::Finished => {}
            Phase::Plaintext => {
                self.plain.push(data);
                self.plaintext_step(now, table);
            }
            Phase::Tls => self.tls_step(now, data, table),
        }
    }

    /// The peer closed the TCP connection.
    pub fn handle_eof(&mut self) {
        if self.phase != Phase::Finished {
            self.fail(NegotiationError::Closed);
        }
    }

    /// When [`Negotiation::handle_timeout`] must be called, while the
    /// negotiation runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.phase != Phase::Finished).then_some(self.deadline)
    }

    /// Brings the deadline forward to `at` if it is later (never moves it
    /// back). Re-read [`Negotiation::poll_timeout`] after.
    pub fn shorten_deadline(&mut self, at: Instant) {
        if at < self.deadline {
            self.deadline = at;
        }
    }

    /// Fails the negotiation if its time is up. Nothing is sent (Python
    /// just closes the connection).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Finished && now >= self.deadline {
            self.fail(NegotiationError::Timeout);
        }
    }

    /// Appends the bytes to send to `buf`; returns how many.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.append(&mut self.out);
        }
        n
    }

    /// The outcome, once.
    pub fn poll_event(&mut self) -> Option<NegotiationEvent> {
        self.event.take()
    }

    fn fail(&mut self, e: NegotiationError) {
        self.phase = Phase::Finished;
        self.event = Some(NegotiationEvent::Failed(e));
    }

    fn plaintext_step(&mut self, now: Instant, table: &mut ConnectionTable) {
        let header = match self.plain.take_block(self.max_block_bytes) {
            Ok(None) => return,
            Ok(Some(header)) => {
                if self.tap.is_on() {
                    // only the block is plaintext: what follows it in the
                    // same read is TLS
                    let block = [&header[..], b"\r\n\r\n"].concat();
                    self.tap
                        .record(Direction::Received, RecordPhase::Plain, &block);
                }
                Ok(header)
            }
            Err(e) => Err(PlaintextError::from(e)),
        };
        let result = header.and_then(|h| match self.target {
            Some(_) => plaintext::parse_response(&h),
            None => self.check_request(&h),
        });
        if let Err(e) = result {
            let text = e.wire_text();
            let reply = if self.target.is_some() {
                // Python's client has already switched its send phase, so
                // it reports this with an error block, in plaintext.
                blocks::format_block(&blocks::error_block(&text))
            } else {
                plaintext::format_refusal(&text)
            };
            self.tap.record(Direction::Sent, RecordPhase::Plain, &reply);
            self.out.extend_from_slice(&reply);
            return self.fail(e.into());
        }
        let tls = match (self.clear_peer, self.target) {
            (Some(peer), Some(target)) if peer != target => {
                return self.fail(NegotiationError::WrongTub {
                    expected: target,
                    actual: peer,
                })
            }
            (Some(peer), _) => Ok(Channel::Clear {
                peer,
                outgoing: Vec::new(),
            }),
            (None, Some(target)) => self
                .tls_context
                .client(target)
                .map(|c| Channel::Tls(rustls::Connection::from(c))),
            (None, None) => self
                .tls_context
                .server()
                .map(|c| Channel::Tls(rustls::Connection::from(c))),
        };
        let mut tls = match tls {
            Ok(tls) => tls,
            Err(e) => return self.fail(NegotiationError::Tls(e)),
        };
        if self.target.is_none() {
            self.tap.record(
                Direction::Sent,
                RecordPhase::Plain,
                plaintext::SWITCHING_PROTOCOLS,
            );
            self.out.extend_from_slice(plaintext::SWITCHING_PROTOCOLS);
        }
        // our hello waits in rustls until the handshake is done
        let mut hello = Vec::new();
        self.exchange.poll_output(&mut hello);
        self.tap.record(Direction::Sent, RecordPhase::Tls, &hello);
        tls.write(&hello);
        tls.flush(&mut self.out);
        self.tls = Some(tls);
        self.phase = Phase::Tls;
        // a client may have TLS bytes right behind the 101 (never in
        // practice: the TLS client speaks first)
        let rest = self.plain.take_rest();
        self.tls_step(now, &rest, table);
    }

    /// The server's checks of the request.
    fn check_request(&mut self, header: &[u8]) -> Result<(), PlaintextError> {
        let requested = plaintext::parse_request(header)?;
        if requested != self.tls_context.tubid().as_str() {
            return Err(PlaintextError::UnknownTubId { requested });
        }
        // The client must wait for the 101 before starting TLS: Python
        // would read early bytes as a hello and hang.
        if !self.plain.is_empty() {
            return Err(PlaintextError::EarlyData {
                len: self.plain.len(),
            });
        }
        Ok(())
    }

    fn tls_step(&mut self, now: Instant, mut data: &[u8], table: &mut ConnectionTable) {
        let Some(mut tls) = self.tls.take() else {
            return;
        };
        let mut plain = BytesMut::new();
        let closed = match tls.pump(&mut data, &mut plain) {
            Ok(closed) => closed,
            Err(e) => {
                tls.flush(&mut self.out);
                let e = match tls::wrong_tub(&e) {
                    Some(w) => NegotiationError::WrongTub {
                        expected: w.expected,
                        actual: w.actual,
                    },
                    None => NegotiationError::Tls(e),
                };
                return self.fail(e);
            }
        };
        if self.peer_cert.is_none() && !tls.is_handshaking() {
            self.peer_cert = tls.peer_tubid();
        }
        if !plain.is_empty() {
            self.tap
                .record(Direction::Received, RecordPhase::Tls, &plain);
            let result =
                self.exchange
                    .handle_plaintext(&plain, self.peer_cert.as_ref(), table, now);
            let mut reply = Vec::new();
            self.exchange.poll_output(&mut reply);
            self.tap.record(Direction::Sent, RecordPhase::Tls, &reply);
            tls.write(&reply);
            match result {
                Ok(None) => {}
                Ok(Some(done)) => {
                    tls.flush(&mut self.out);
                    let out = std::mem::take(&mut self.out);
                    let tap = std::mem::take(&mut self.tap);
                    let session = Session::with_channel(tls, tap, done.info, done.leftover, out);
                    self.phase = Phase::Finished;
                    self.event = Some(NegotiationEvent::Established(Box::new(session)));
                    return;
                }
                Err(e) => {
                    tls.send_close_notify();
                    tls.flush(&mut self.out);
                    return self.fail(e);
                }
            }
        }
        tls.flush(&mut self.out);
        self.tls = Some(tls);
        if closed {
            self.fail(NegotiationError::Closed);
        }
    }
}

#[cfg(test)]
mod tests;
