//! The connection after negotiation: TLS records in and out, plaintext
//! (banana) for the layer above. The broker never sees TLS, so it can be
//! driven from recorded plaintext transcripts alone.
//!
//! For replaying transcripts a connection can also run on a [`Channel`]
//! without TLS (see [`super::Negotiation::without_tls`]): bytes in and out
//! are then the plaintext TLS would have carried.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::decision::ConnectionId;
use super::record::{Direction, RecordPhase, Tap};
use crate::banana::VocabTable;
use crate::identity::TubId;

/// What a negotiation settled for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// This connection in its Tub's [`super::ConnectionTable`].
    pub connection_id: ConnectionId,
    /// Whether we opened the TCP connection (and were the TLS client).
    pub is_client: bool,
    /// Whether we were the master (the larger tubid).
    pub i_am_master: bool,
    /// Our tubid.
    pub my_tubid: TubId,
    /// The peer's tubid, proven by its certificate.
    pub peer_tubid: TubId,
    /// The peer's `my-incarnation`.
    pub peer_incarnation: Option<String>,
    /// The agreed banana version (3 with every Python 24.9.0 peer).
    pub banana_version: u32,
    /// The vocab table both directions start with.
    pub vocab: VocabTable,
    /// The decision's `current-connection` (`"<master incarnation>
    /// <seqnum>"`).
    pub current_connection: Option<String>,
    /// The older live connection to the same peer that this one replaces:
    /// shut it down (its pending calls fail with "replaced by a new
    /// connection").
    pub replaced: Option<ConnectionId>,
}

/// A TLS failure after negotiation (fatal to the connection).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The record layer failed (bad record, alert from the peer, ...).
    #[error("TLS failed: {0}")]
    Tls(rustls::Error),
}

/// Feeds ciphertext to rustls until `data` is used up, appending the
/// plaintext that comes out. Returns whether the peer sent close_notify.
pub(crate) fn pump(
    tls: &mut rustls::Connection,
    data: &mut &[u8],
    plaintext: &mut BytesMut,
) -> Result<bool, rustls::Error> {
    let mut closed = false;
    while !data.is_empty() {
        // reading from a slice cannot fail; a full rustls buffer can
        tls.read_tls(data)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let state = tls.process_new_packets()?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let start = plaintext.len();
            plaintext.resize(start + n, 0);
            tls.reader()
                .read_exact(&mut plaintext[start..])
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        closed |= state.peer_has_closed();
    }
    Ok(closed)
}

/// What carries a connection's application data: rustls, or (replay and
/// tests only) nothing at all.
// Unboxed on purpose: the production variant is the large one, and the
// connection lives boxed inside its Session or Negotiation anyway.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Channel {
    /// The production path.
    Tls(rustls::Connection),
    /// No encryption: input is plaintext, output is plaintext. `peer`
    /// stands for the tubid the peer's certificate would prove.
    Clear {
        /// The peer's tubid, given explicitly.
        peer: TubId,
        /// Plaintext waiting to be transmitted.
        outgoing: Vec<u8>,
    },
}

impl Channel {
    /// Feeds received bytes, appending the plaintext that comes out;
    /// returns whether the peer closed (TLS close_notify).
    pub(crate) fn pump(
        &mut self,
        data: &mut &[u8],
        plaintext: &mut BytesMut,
    ) -> Result<bool, rustls::Error> {
        match self {
            Channel::Tls(tls) => pump(tls, data, plaintext),
            Channel::Clear { .. } => {
                plaintext.extend_from_slice(data);
                *data = &[];
                Ok(false)
            }
        }
    }

    /// Queues plaintext for sending.
    pub(crate) fn write(&mut self, data: &[u8]) {
        match self {
            // with no buffer limit, rustls takes everything
            Channel::Tls(tls) => {
                let _ = std::io::Write::write_all(&mut tls.writer(), data);
            }
            Channel::Clear { outgoing, .. } => outgoing.extend_from_slice(data),
        }
    }

    /// Moves everything ready to send into `out`.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        match self {
            Channel::Tls(tls) => {
                while tls.wants_write() {
                    if tls.write_tls(out).is_err() {
                        break;
                    }
                }
            }
            Channel::Clear { outgoing, .. } => out.append(outgoing),
        }
    }

    /// Whether the TLS handshake is still running.
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Channel::Tls(tls) => tls.is_handshaking(),
            Channel::Clear { .. } => false,
        }
    }

    /// The tubid of the peer's certificate, once known.
    pub(crate) fn peer_tubid(&self) -> Option<TubId> {
        match self {
            Channel::Tls(tls) => tls
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| TubId::of_certificate(c)),
            Channel::Clear { peer, .. } => Some(*peer),
        }
    }

    /// Sends TLS close_notify (nothing without TLS).
    pub(crate) fn send_close_notify(&mut self) {
        if let Channel::Tls(tls) = self {
            tls.send_close_notify();
        }
    }
}

/// An established connection: feed it the bytes read from the socket,
/// take plaintext out, write plaintext in, send what it transmits.
pub struct Session {
    channel: Channel,
    tap: Tap,
    info: SessionInfo,
    received: BytesMut,
    outgoing: Vec<u8>,
    peer_closed: bool,
    failed: Option<SessionError>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .field("received", &self.received.len())
            .field("outgoing", &self.outgoing.len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl Session {
    #[cfg(test)]
    pub(crate) fn new(
        tls: rustls::Connection,
        info: SessionInfo,
        received: BytesMut,
        outgoing: Vec<u8>,
    ) -> Session {
        Self::with_channel(Channel::Tls(tls), Tap::default(), info, received, outgoing)
    }

    pub(crate) fn with_channel(
        channel: Channel,
        tap: Tap,
        info: SessionInfo,
        received: BytesMut,
        outgoing: Vec<u8>,
    ) -> Session {
        Session {
            channel,
            tap,
            info,
            received,
            outgoing,
            peer_closed: false,
            failed: None,
        }
    }

    /// What was negotiated.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Feeds bytes read from the socket. Plaintext that arrived glued to
    /// the last negotiation block is already waiting before the first call.
    pub fn handle_input(&mut self, mut data: &[u8]) -> Result<(), SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let start = self.received.len();
        let result = self.channel.pump(&mut data, &mut self.received);
        if self.tap.is_on() {
            let got = &self.received[start.min(self.received.len())..];
            self.tap.record(Direction::Received, RecordPhase::Tls, got);
        }
        match result {
            Ok(closed) => {
                self.peer_closed |= closed;
                Ok(())
            }
            Err(e) => {
                self.flush();
                let e = SessionError::Tls(e);
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// All plaintext received so far, if any.
    pub fn poll_plaintext(&mut self) -> Option<Bytes> {
        (!self.received.is_empty()).then(|| self.received.split().freeze())
    }

    /// Plaintext bytes waiting to be polled.
    pub fn plaintext_buffered(&self) -> usize {
        self.received.len()
    }

    /// Encrypts `data` for sending (buffered without limit; send what
    /// [`Session::poll_transmit`] returns).
    pub fn write_plaintext(&mut self, data: &[u8]) {
        if data.is_empty() || self.failed.is_some() {
            return;
        }
        self.tap.record(Direction::Sent, RecordPhase::Tls, data);
        // a piece at a time, each encrypted and moved out before the next:
        // the TLS records in between never hold more than a piece (all at
        // once, a large answer was held three times at its peak: the
        // plaintext, every record, and the bytes to send; the records'
        // memory, freed, stayed with the allocator)
        for piece in data.chunks(Self::WRITE_PIECE) {
            self.channel.write(piece);
            self.flush();
        }
    }

    /// Plaintext encrypted at a time by [`Session::write_plaintext`].
    const WRITE_PIECE: usize = 256 * 1024;

    /// Appends the bytes to send to `buf`; returns how many.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        self.flush();
        let n = self.outgoing.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.outgoing);
        } else {
            buf.append(&mut self.outgoing);
        }
        n
    }

    /// Sends TLS close_notify (the TCP connection may be closed after
    /// transmitting it).
    pub fn close(&mut self) {
        self.channel.send_close_notify();
        self.flush();
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The TLS version in use.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.channel {
            Channel::Tls(tls) => tls.protocol_version(),
            Channel::Clear { .. } => None,
        }
    }

    /// The TLS cipher suite in use.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        match &self.channel {
            Channel::Tls(tls) => tls.negotiated_cipher_suite().map(|s| s.suite()),
            Channel::Clear { .. } => None,
        }
    }

    /// Whether this session runs without TLS (replay and tests only).
    pub fn is_clear(&self) -> bool {
        matches!(self.channel, Channel::Clear { .. })
    }

    fn flush(&mut self) {
        self.channel.flush(&mut self.outgoing);
    }
}
