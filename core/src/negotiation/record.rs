//! Recording a connection's application bytes (for transcripts).
//!
//! A [`Recorder`] set in [`crate::tub::TubConfig::recorder`] sees every
//! connection of the Tub at the plaintext boundary: the raw bytes of the
//! plaintext phase (request, `101` or refusal) and the decrypted TLS
//! application data (hello, decision and error blocks, then banana), per
//! direction, in the order the core produced or consumed them. TLS records
//! themselves are never recorded. Without a recorder nothing is copied.

use std::sync::Arc;

use super::decision::ConnectionId;

/// Which way recorded bytes went, seen from the recording Tub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We sent them.
    Sent,
    /// The peer sent them.
    Received,
}

/// Which phase of the connection recorded bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordPhase {
    /// Raw TCP bytes before TLS starts (`plain` in a transcript).
    Plain,
    /// Application data inside TLS (`tls` in a transcript).
    Tls,
}

/// Receives a copy of every connection's application bytes.
///
/// Called from inside the core (under the driver's lock, if it has one):
/// keep it cheap, and never call back into the Tub.
pub trait Recorder: Send + Sync {
    /// A connection starts: `is_client` when we opened it (TCP client);
    /// `dialled` is the hint we connected to (`host`, `port`), if any.
    fn opened(&self, connection: ConnectionId, is_client: bool, dialled: Option<(&str, u16)>) {
        let _ = (connection, is_client, dialled);
    }

    /// The connection's socket addresses (`ip:port`), from the driver
    /// ([`crate::tub::Tub::set_addresses`]), right after it opened.
    fn addresses(&self, connection: ConnectionId, client: &str, server: &str) {
        let _ = (connection, client, server);
    }

    /// Bytes went `direction` on `connection` in `phase`.
    fn record(
        &self,
        connection: ConnectionId,
        direction: Direction,
        phase: RecordPhase,
        bytes: &[u8],
    );

    /// The connection ends (the driver is told to close its socket).
    fn closed(&self, connection: ConnectionId) {
        let _ = connection;
    }
}

/// A shared [`Recorder`], comparable by identity (so that configurations
/// holding one stay `PartialEq`).
#[derive(Clone)]
pub struct RecorderHandle(pub Arc<dyn Recorder>);

impl RecorderHandle {
    /// Wraps a recorder.
    pub fn new(recorder: Arc<dyn Recorder>) -> Self {
        RecorderHandle(recorder)
    }
}

impl PartialEq for RecorderHandle {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for RecorderHandle {}

impl std::fmt::Debug for RecorderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecorderHandle({:p})", Arc::as_ptr(&self.0))
    }
}

/// One connection's tap: a recorder (or none) and the connection's id.
#[derive(Clone, Default)]
pub(crate) struct Tap(Option<(RecorderHandle, ConnectionId)>);

impl Tap {
    pub(crate) fn new(recorder: RecorderHandle, connection: ConnectionId) -> Tap {
        Tap(Some((recorder, connection)))
    }

    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    #[inline]
    pub(crate) fn record(&self, direction: Direction, phase: RecordPhase, bytes: &[u8]) {
        if let Some((r, id)) = &self.0 {
            if !bytes.is_empty() {
                r.0.record(*id, direction, phase, bytes);
            }
        }
    }
}
