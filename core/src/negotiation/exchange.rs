//! The hello/decision exchange, on plaintext: what runs inside TLS once
//! the plaintext phase is over. It knows nothing about TLS (it is told the
//! peer certificate's tubid), so it can be driven on its own, for example
//! from a recorded transcript.

use std::time::Instant;

use bytes::BytesMut;

use super::blocks::{error_block, format_block, parse_block, Hello};
use super::decision::{
    accept_decision, decide, evaluate_hello, ConnectionId, ConnectionTable, Offer,
};
use super::error::NegotiationError;
use super::plaintext::BlockBuffer;
use super::session::SessionInfo;
use super::NegotiationConfig;
use crate::identity::TubId;

/// What the peer expects from us next, which decides how a failure is
/// reported (docs/protocol.md §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPhase {
    /// Our hello is out; the peer reads blocks: send an error block.
    Blocks,
    /// We accepted the peer's hello as non-master, or sent our decision:
    /// the peer reads banana: send an ERROR token.
    Banana,
}

#[derive(Debug, Clone)]
enum State {
    AwaitHello,
    AwaitDecision(Box<Offer>),
    Done,
}

/// The exchange finished: the connection's parameters and the plaintext
/// that followed the last block (the first banana bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    /// What was settled.
    pub info: SessionInfo,
    /// Bytes that arrived glued to the last block.
    pub leftover: BytesMut,
}

/// One connection's hello/decision exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    is_client: bool,
    me: TubId,
    expected: Option<TubId>,
    config: NegotiationConfig,
    id: ConnectionId,
    buf: BlockBuffer,
    state: State,
    send_phase: SendPhase,
    out: Vec<u8>,
}

impl Exchange {
    /// Starts an exchange and queues our hello. `expected` is the tubid a
    /// TCP client dialled (`None` on the server side); a client's hello
    /// carries `last-connection` from the table.
    pub fn new(
        me: TubId,
        expected: Option<TubId>,
        id: ConnectionId,
        config: &NegotiationConfig,
        table: &ConnectionTable,
    ) -> Exchange {
        let hello = Hello {
            tubid: me,
            incarnation: table.incarnation().to_string(),
            last_connection: expected.map(|t| table.last_connection(&t)),
            vocab_range: config.vocab_range,
        };
        Exchange {
            is_client: expected.is_some(),
            me,
            expected,
            config: config.clone(),
            id,
            buf: BlockBuffer::new(),
            state: State::AwaitHello,
            send_phase: SendPhase::Blocks,
            out: format_block(&hello.to_block()),
        }
    }

    /// Moves the plaintext to send into `buf`.
    pub fn poll_output(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.out);
    }

    /// Feeds received plaintext. `peer_cert` is the tubid of the peer's
    /// certificate, known once the TLS handshake is done. On failure the
    /// reply Python would send (error block or banana ERROR) is queued.
    pub fn handle_plaintext(
        &mut self,
        data: &[u8],
        peer_cert: Option<&TubId>,
        table: &mut ConnectionTable,
        now: Instant,
    ) -> Result<Option<Exchanged>, NegotiationError> {
        if matches!(self.state, State::Done) {
            return Ok(None);
        }
        self.buf.push(data);
        match self.step(peer_cert, table, now) {
            Err(e) => {
                self.state = State::Done;
                self.reply_error(&e);
                Err(e)
            }
            ok => ok,
        }
    }

    fn step(
        &mut self,
        peer_cert: Option<&TubId>,
        table: &mut ConnectionTable,
        now: Instant,
    ) -> Result<Option<Exchanged>, NegotiationError> {
        let limit = self.config.max_block_bytes;
        loop {
            let Some(block) = self
                .buf
                .take_block(limit)
                .map_err(|_| NegotiationError::BlockTooLong { limit })?
            else {
                return Ok(None);
            };
            let block = parse_block(&block)?;
            match std::mem::replace(&mut self.state, State::Done) {
                State::AwaitHello => {
                    let offer =
                        evaluate_hello(&block, &self.me, peer_cert, self.expected.as_ref())?;
                    if offer.i_am_master {
                        let (decision, settled) = decide(
                            &offer,
                            self.id,
                            self.config.vocab_range,
                            self.config.handle_old_duplicate_connections,
                            table,
                            now,
                        )?;
                        self.out
                            .extend_from_slice(&format_block(&decision.to_block()));
                        return Ok(Some(self.finish(&offer, settled)));
                    }
                    self.send_phase = SendPhase::Banana;
                    self.state = State::AwaitDecision(Box::new(offer));
                }
                State::AwaitDecision(offer) => {
                    let settled = accept_decision(
                        &block,
                        &offer,
                        self.id,
                        self.config.vocab_range,
                        table,
                        now,
                    )?;
                    return Ok(Some(self.finish(&offer, settled)));
                }
                State::Done => return Ok(None),
            }
        }
    }

    fn finish(&mut self, offer: &Offer, settled: super::decision::Settled) -> Exchanged {
        self.send_phase = SendPhase::Banana;
        let info = SessionInfo {
            connection_id: self.id,
            is_client: self.is_client,
            i_am_master: offer.i_am_master,
            my_tubid: self.me,
            peer_tubid: offer.peer,
            peer_incarnation: offer.incarnation.clone(),
            banana_version: settled.version,
            vocab: settled.vocab,
            current_connection: settled.current_connection,
            replaced: settled.replaced,
        };
        let leftover = BytesMut::from(&self.buf.take_rest()[..]);
        Exchanged { info, leftover }
    }

    fn reply_error(&mut self, e: &NegotiationError) {
        if matches!(e, NegotiationError::Remote { .. }) {
            return; // the peer has already hung up
        }
        let text = e.wire_text().replace(['\r', '\n'], " ");
        match self.send_phase {
            SendPhase::Blocks => self
                .out
                .extend_from_slice(&format_block(&error_block(&text))),
            SendPhase::Banana => {
                let mut token = BytesMut::new();
                crate::banana::encode::put_error(&mut token, text.as_bytes());
                self.out.extend_from_slice(&token);
            }
        }
    }
}
