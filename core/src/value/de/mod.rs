//! Tokens → values: a streaming deserializer with an explicit, bounded
//! stack, mirroring the receive rules of Python foolscap's unslicers.
//!
//! This file drives the stream: bytes to tokens, message boundaries and
//! budgets, discarding refused messages, and each OPEN's index phase.
//! `frames.rs` holds the sequence kinds and their receive rules. The PB
//! messages (`call`, `answer`, `error`, `arguments`) are frames too, whose
//! rules live in `../pb.rs`; the sharing post-passes that run when a
//! message completes live in `../sharing.rs`.

mod checks;
mod frames;

use bytes::Bytes;

pub(super) use frames::{Frame, OpenFrame, Slot};
use frames::{Pending, SeqKind, SlotKind};

use super::pb::{discarded, CachedPlan, MsgCheck, PbEvent, PbFrame, PbRequest};
use super::sharing::{anchor_pass, dedup_pass, duplicate_dict_key};
use super::{DecodeError, ErrorScope, Int, Limits, NoRefs, RefDecoder, Text, Value};
use crate::banana::TypeByte;
use crate::banana::{Token, TokenDecoder, VocabTable};
use crate::schema::check::NodeId;

/// What the deserializer reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A complete top-level value.
    Value(Value),
    /// A top-level message was refused (a message-scoped error: unknown
    /// open type, ABORT, a value-level limit, ...) and discarded up to its
    /// CLOSE. The stream stays usable.
    Discarded(DecodeError),
    /// A PING with its number; the connection answers with PONG.
    Ping(u64),
    /// A PONG with its number.
    Pong(u64),
    /// The peer's ERROR message; it is about to close the connection.
    PeerError(Bytes),
}

/// What one step of decoding produced.
#[derive(Debug)]
pub(super) enum Out {
    Ev(Event),
    Pb(PbEvent),
}

impl From<Event> for Out {
    fn from(e: Event) -> Out {
        Out::Ev(e)
    }
}

#[derive(Debug)]
struct IndexPhase {
    close_id: u64,
    slot: u32,
    /// First index token of a `copyable` waiting for the type name.
    copyable: bool,
    /// The constraint the sequence must meet (a schema'd message).
    node: Option<NodeId>,
}

#[derive(Debug)]
struct Discard {
    levels: usize,
    error: DecodeError,
    /// The PB message being discarded, if its reqID was known.
    pb: Option<PbRequest>,
    /// Already reported (a refused call or answer is reported at once).
    reported: bool,
}

/// A streaming value deserializer for one direction of a connection.
///
/// Feed it bytes as they arrive and poll events. Each top-level OPEN
/// starts a message; its value is delivered once its CLOSE arrives. The
/// whole message is never needed in one buffer, the stack is explicit
/// (bounded by [`Limits::max_depth`]), and every other resource a peer can
/// make us hold is bounded by a [`Limits`] field.
///
/// Errors of [`ErrorScope::Message`] are reported as
/// [`Event::Discarded`]; errors of [`ErrorScope::Connection`] are returned
/// as `Err` and are sticky.
#[derive(Debug)]
pub struct Deserializer {
    tokens: TokenDecoder,
    pub(super) vocab: VocabTable,
    pub(super) limits: Limits,
    /// Receiver-side OPEN counter: every OPEN, including discarded ones.
    object_count: u64,
    pub(super) stack: Vec<OpenFrame>,
    index: Option<IndexPhase>,
    discard: Option<Discard>,
    /// Object number of the current message's first OPEN.
    msg_base: u64,
    pub(super) slots: Vec<Slot>,
    /// The run of `i64` ints that the top list, tuple or set received
    /// last, not yet in its `items`: 8 bytes each instead of a `Value`'s
    /// 40 while the message is in progress. Moved into `items` before any
    /// other token is handled (so the frames always see every item) and
    /// before the sequence closes.
    packed: Vec<i64>,
    msg_bytes: usize,
    references: usize,
    pub(super) needs_dedup: bool,
    /// A dict key arrived after a `reference` beside other keys: keys are
    /// compared again once aliases resolve (`sharing::duplicate_dict_key`).
    pub(super) needs_key_check: bool,
    failed: Option<DecodeError>,
    /// Stream offset of the token being handled.
    pub(super) offset: u64,
    /// Whether bare primitive tokens are values at the top level (a value
    /// stream, like foolscap's storage banana) or a protocol error (a PB
    /// connection, where only OPEN may start a message).
    pub(super) top_level_primitives: bool,
    /// Whether this is a PB connection: top-level sequences are `call`,
    /// `answer` and `error` only.
    pub(super) pb: bool,
    /// The schema the message in progress is checked against, token by
    /// token (docs/protocol.md §6.5).
    pub(super) check: Option<MsgCheck>,
    /// Method plans built so far (bounded; see `pb::cached_plan`).
    pub(super) plan_cache: Vec<CachedPlan>,
}

const VALUE_SIZE: usize = std::mem::size_of::<Value>();

pub(super) type Step = Result<Option<Out>, DecodeError>;

impl Deserializer {
    /// A deserializer for a stream that uses `vocab` as its incoming table.
    pub fn new(vocab: VocabTable, limits: Limits) -> Self {
        Deserializer {
            tokens: TokenDecoder::new(limits.tokens.clone()),
            vocab,
            limits,
            object_count: 0,
            stack: Vec::new(),
            index: None,
            discard: None,
            msg_base: 0,
            slots: Vec::new(),
            packed: Vec::new(),
            msg_bytes: 0,
            references: 0,
            needs_dedup: false,
            needs_key_check: false,
            failed: None,
            offset: 0,
            top_level_primitives: true,
            pb: false,
            check: None,
            plan_cache: Vec::new(),
        }
    }

    /// Refuses bare primitive tokens at the top level ("top-level must be
    /// OPEN"), as a PB connection does. Value streams accept them.
    pub fn require_top_level_open(mut self) -> Self {
        self.top_level_primitives = false;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.tokens.feed(data);
    }

    /// Appends received bytes without copying them where possible.
    pub fn feed_bytes(&mut self, data: Bytes) {
        self.tokens.feed_bytes(data);
    }

    /// Stream offset of the next undecoded byte.
    pub fn offset(&self) -> u64 {
        self.tokens.offset()
    }

    /// Received bytes not yet decoded into tokens.
    pub fn buffered(&self) -> usize {
        self.tokens.buffered()
    }

    /// Memory the message in progress holds, as charged against
    /// [`Limits::max_message_bytes`] (its wire bytes plus
    /// `size_of::<Value>()` per decoded value), plus the received bytes
    /// not yet decoded (a partial token). 0 between messages with nothing
    /// buffered; a message being discarded holds nothing but its buffer.
    ///
    /// Ints that a list, tuple or set received in a row are held packed
    /// (8 bytes each) until another token arrives or the sequence closes,
    /// and count as such here, while `max_message_bytes` counts them as
    /// the `Value`s they become.
    pub fn in_progress_bytes(&self) -> usize {
        let message = if self.in_message() {
            let packed_as_values = self.packed.len() * VALUE_SIZE;
            (self.msg_bytes - packed_as_values.min(self.msg_bytes))
                .saturating_add(self.packed.capacity() * std::mem::size_of::<i64>())
        } else {
            0
        };
        message.saturating_add(self.tokens.buffered())
    }

    /// Whether a message is partly received (false between messages).
    pub fn in_message(&self) -> bool {
        !self.stack.is_empty() || self.index.is_some() || self.discard.is_some()
    }

    /// Decodes as far as the buffered bytes allow and returns the next
    /// event, `Ok(None)` when more bytes are needed.
    ///
    /// On a PB connection use [`Deserializer::poll_pb_event`]; this method
    /// skips PB messages. Reference sequences are refused (a Violation), as
    /// `foolscap.storage` refuses them; [`Deserializer::poll_event_with`]
    /// decodes them.
    pub fn poll_event(&mut self) -> Result<Option<Event>, DecodeError> {
        self.poll_event_with(&mut NoRefs)
    }

    /// [`Deserializer::poll_event`], turning reference sequences into
    /// values with `refs`.
    pub fn poll_event_with(
        &mut self,
        refs: &mut dyn RefDecoder,
    ) -> Result<Option<Event>, DecodeError> {
        loop {
            match self.poll_out(refs)? {
                None => return Ok(None),
                Some(Out::Ev(e)) => return Ok(Some(e)),
                Some(Out::Pb(_)) => {}
            }
        }
    }

    pub(super) fn poll_out(
        &mut self,
        refs: &mut dyn RefDecoder,
    ) -> Result<Option<Out>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let mut before = self.tokens.offset();
            // a short token first: it has no body to refuse before it
            // arrives
            let token = match self.tokens.next_small_token() {
                Some(t) => t,
                None => {
                    if self.check.is_some() || self.discard.is_some() {
                        if let Some(ev) = self.skip_refused_body()? {
                            return Ok(Some(ev));
                        }
                        before = self.tokens.offset();
                    }
                    match self.tokens.next_token() {
                        Ok(Some(t)) => t,
                        Ok(None) => return Ok(None),
                        Err(e) => return Err(self.fatal(e.into())),
                    }
                }
            };
            self.offset = before;
            let step = self.handle(token, (self.tokens.offset() - before) as usize, refs);
            match step {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(e) if e.scope() == ErrorScope::Message => {
                    if let Some(ev) = self.start_discard(e) {
                        return Ok(Some(ev));
                    }
                }
                Err(e) => return Err(self.fatal(e)),
            }
        }
    }

    /// A STRING, LONGINT or LONGNEG whose header has arrived, in a message
    /// being discarded or refused by the schema for its type or announced
    /// size: its body is skipped as it arrives, never buffered.
    fn skip_refused_body(&mut self) -> Result<Option<Out>, DecodeError> {
        loop {
            let Some((ty @ (TypeByte::String | TypeByte::LongInt | TypeByte::LongNeg), Some(len))) =
                self.tokens.peek_body_header()
            else {
                return Ok(None);
            };
            if self.discard.is_some() {
                if self.tokens.skip_token().is_none() {
                    return Ok(None);
                }
                continue;
            }
            if self.stack.is_empty() || self.index.is_some() {
                return Ok(None);
            }
            let offset = self.tokens.offset();
            let Err(e) = self.check_header(ty, len) else {
                return Ok(None);
            };
            if self.tokens.skip_token().is_none() {
                return Ok(None);
            }
            self.offset = offset;
            if let Some(ev) = self.start_discard(e) {
                return Ok(Some(ev));
            }
        }
    }

    fn fatal(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e.clone());
        self.stack.clear();
        self.slots.clear();
        self.packed = Vec::new();
        e
    }

    /// Drops the partial message and skips the rest of it.
    fn start_discard(&mut self, error: DecodeError) -> Option<Out> {
        let levels = self.stack.len() + self.index.is_some() as usize;
        let pb = match self.stack.first().map(|f| &f.frame) {
            Some(Frame::Pb(frame)) => frame.request(&error),
            _ => None,
        };
        self.stack.clear();
        self.index = None;
        self.reset_message();
        if levels == 0 {
            return Some(discarded(error, pb));
        }
        if pb.is_some() {
            // Python reports a refused call or answer at once, while the
            // rest of it is still arriving (and skipped)
            self.discard = Some(Discard {
                levels,
                error: error.clone(),
                pb,
                reported: true,
            });
            return Some(discarded(error, pb));
        }
        self.discard = Some(Discard {
            levels,
            error,
            pb,
            reported: false,
        });
        None
    }

    pub(super) fn reset_message(&mut self) {
        self.check = None;
        self.slots.clear();
        self.packed = Vec::new();
        self.msg_bytes = 0;
        self.references = 0;
        self.needs_dedup = false;
        self.needs_key_check = false;
    }

    fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        self.msg_bytes = self.msg_bytes.saturating_add(bytes);
        if self.msg_bytes > self.limits.max_message_bytes {
            return Err(DecodeError::MessageTooLarge {
                offset: self.offset,
                limit: self.limits.max_message_bytes,
            });
        }
        Ok(())
    }

    fn vocab_word(&self, index: u64) -> Result<Bytes, DecodeError> {
        // a match, so the error is built only when it happens
        match self.vocab.word(index) {
            Some(w) => Ok(Bytes::from_static(w)),
            None => Err(DecodeError::UndefinedVocab {
                offset: self.offset,
                index,
            }),
        }
    }

    fn handle(&mut self, token: Token, wire_len: usize, refs: &mut dyn RefDecoder) -> Step {
        let token = match self.fast_item(token, wire_len)? {
            Some(token) => token,
            None => return Ok(None),
        };
        if !self.packed.is_empty() {
            self.unpack();
        }
        match token {
            Token::Ping(n) => return Ok(Some(Event::Ping(n).into())),
            Token::Pong(n) => return Ok(Some(Event::Pong(n).into())),
            Token::Error(msg) => return Ok(Some(Event::PeerError(msg).into())),
            _ => {}
        }
        if let Some(d) = &mut self.discard {
            match token {
                Token::Open(_) => {
                    self.object_count += 1;
                    d.levels += 1;
                }
                Token::Close(_) => {
                    d.levels -= 1;
                    if d.levels == 0 {
                        let d = self.discard.take().expect("discarding");
                        if d.reported {
                            return Ok(None);
                        }
                        return Ok(Some(discarded(d.error, d.pb)));
                    }
                }
                Token::Vocab(i) => {
                    self.vocab_word(i)?;
                }
                _ => {}
            }
            return Ok(None);
        }
        if self.stack.is_empty() && self.index.is_none() {
            return match token {
                // Python's PB root absorbs the "violation" an ABORT with
                // nothing open raises: the token is ignored (storage mode
                // keeps refusing it, as Python's storage root reports it)
                Token::Abort(_) if self.pb => Ok(None),
                Token::Open(close_id) => {
                    self.msg_base = self.object_count;
                    self.charge(wire_len)?;
                    self.begin_open(close_id)
                }
                Token::Int(_)
                | Token::Neg(_)
                | Token::LongInt(_)
                | Token::LongNeg(_)
                | Token::Float(_)
                | Token::String(_)
                | Token::Vocab(_)
                    if self.top_level_primitives =>
                {
                    self.primitive(token, refs)
                }
                other => Err(DecodeError::TopLevelNotOpen {
                    offset: self.offset,
                    token: other.type_byte().name(),
                }),
            };
        }
        self.charge(wire_len)?;
        if self.index.is_some() {
            return self.index_token(token, refs);
        }
        let node = match (&token, self.check.is_some()) {
            (Token::Close(_) | Token::Abort(_), _) | (_, false) => Ok(None),
            _ => self.check_value_token(&token),
        };
        match token {
            Token::Open(close_id) => {
                // Count the OPEN even when it is refused, so that discarding
                // finds its CLOSE and later reference numbers stay right.
                let allowed = self.check_open_allowed();
                self.begin_open(close_id)?;
                let node = node?;
                if let Some(phase) = &mut self.index {
                    phase.node = node;
                }
                allowed.map(|()| None)
            }
            Token::Close(n) => {
                let top = self.stack.last().expect("inside a sequence");
                if top.close_id != n {
                    return Err(DecodeError::CloseMismatch {
                        offset: self.offset,
                        got: n,
                        expected: top.close_id,
                    });
                }
                let top = self.stack.pop().expect("inside a sequence");
                match top {
                    OpenFrame {
                        frame: Frame::Pb(frame @ PbFrame::Arguments { .. }),
                        ..
                    } => self.finish_arguments(frame),
                    OpenFrame {
                        frame: Frame::Pb(frame),
                        ..
                    } => self.finish_pb(frame),
                    top => {
                        let choice = top.choice;
                        let (value, waits) = self.finish(top, refs)?;
                        if let Some(choice) = choice {
                            self.check_choice(choice, &value)?;
                        }
                        self.deliver(value, waits)
                    }
                }
            }
            Token::Abort(_) => Err(DecodeError::Aborted {
                offset: self.offset,
            }),
            primitive => {
                node?;
                self.primitive(primitive, refs)
            }
        }
    }

    /// The hot path: a number or byte string inside a list, tuple or set.
    /// An `i64` int joins the packed run; anything else moves the run into
    /// the items first. Gives the token back when it needs the general
    /// path.
    #[inline]
    fn fast_item(&mut self, token: Token, wire_len: usize) -> Result<Option<Token>, DecodeError> {
        if self.discard.is_some() || self.index.is_some() || self.check.is_some() {
            return Ok(Some(token));
        }
        let Some(OpenFrame {
            frame: Frame::Seq { items, .. },
            ..
        }) = self.stack.last_mut()
        else {
            return Ok(Some(token));
        };
        let int = match token {
            Token::Int(v) if v <= i64::MAX as u64 => Ok(v as i64),
            Token::Neg(v) if v <= i64::MAX as u64 => Ok(-(v as i64)),
            Token::Float(f) => Err(Value::Float(f)),
            Token::String(b) => Err(Value::Bytes(b)),
            other => return Ok(Some(other)),
        };
        if items.len() + self.packed.len() >= self.limits.max_container_items {
            return Err(DecodeError::TooManyItems {
                offset: self.offset,
                limit: self.limits.max_container_items,
            });
        }
        match int {
            Ok(i) => self.packed.push(i),
            Err(value) => {
                if !self.packed.is_empty() {
                    unpack_into(items, &mut self.packed);
                }
                items.push(value);
            }
        }
        self.charge(wire_len + VALUE_SIZE)?;
        Ok(None)
    }

    /// Moves the packed ints into the top sequence's items.
    fn unpack(&mut self) {
        if let Some(OpenFrame {
            frame: Frame::Seq { items, .. },
            ..
        }) = self.stack.last_mut()
        {
            unpack_into(items, &mut self.packed);
        } else {
            debug_assert!(false, "packed ints without a sequence");
            self.packed = Vec::new();
        }
    }

    /// Counts an OPEN and enters its index phase.
    fn begin_open(&mut self, close_id: u64) -> Step {
        self.object_count += 1;
        let slot = self.slots.len();
        self.charge(std::mem::size_of::<Slot>())?;
        self.slots.push(Slot {
            kind: SlotKind::Other,
            referenced: false,
            trailing_dropped: 0,
            pending: Pending::new(),
            broken: false,
            frozenset: false,
            opened_at: self.msg_bytes,
            cost: 0,
        });
        self.index = Some(IndexPhase {
            close_id,
            slot: slot as u32,
            copyable: false,
            node: None,
        });
        if self.stack.len() + 1 > self.limits.max_depth {
            return Err(DecodeError::TooDeep {
                offset: self.offset,
                limit: self.limits.max_depth,
            });
        }
        Ok(None)
    }

    fn index_token(&mut self, token: Token, refs: &mut dyn RefDecoder) -> Step {
        let name = match token {
            Token::String(s) => {
                if s.len() > self.limits.max_index_bytes {
                    return Err(DecodeError::BadIndexToken {
                        offset: self.offset,
                        why: format!(
                            "STRING token is too long, {}>{}",
                            s.len(),
                            self.limits.max_index_bytes
                        ),
                    });
                }
                s
            }
            Token::Vocab(i) => self.vocab_word(i)?,
            Token::Open(_) => {
                return Err(DecodeError::OpenInIndex {
                    offset: self.offset,
                })
            }
            Token::Close(_) => {
                return Err(DecodeError::CloseInIndex {
                    offset: self.offset,
                })
            }
            // Python reports it to the parent but stays in the index
            // phase, so the sequence's CLOSE (or any OPEN) that must follow
            // loses sync and it hangs up: fatal here too
            Token::Abort(_) => {
                return Err(DecodeError::AbortInIndex {
                    offset: self.offset,
                })
            }
            other => {
                return Err(DecodeError::BadIndexToken {
                    offset: self.offset,
                    why: format!(
                        "index token {} not STRING or VOCAB",
                        other.type_byte().name()
                    ),
                })
            }
        };
        if let Some(frame) = self.open_pb_frame(&name)? {
            return self.push_frame(Frame::Pb(frame), SlotKind::Other);
        }
        let phase = self.index.as_ref().expect("in index phase");
        if let (Some(node), false) = (phase.node, phase.copyable) {
            self.check_opentype(node, &name)?;
        }
        let utf8 = |b: &Bytes, offset| {
            Text::from_utf8(b.clone()).map_err(|_| DecodeError::InvalidUtf8 {
                offset,
                what: "an open type",
            })
        };
        if self.index.as_ref().is_some_and(|p| p.copyable) {
            let type_name = utf8(&name, self.offset)?;
            if let Some(node) = self.copyable_node(type_name.as_str(), refs) {
                if let Some(phase) = &mut self.index {
                    phase.node = Some(node);
                }
            }
            let frame = Frame::Copyable {
                type_name,
                state: Vec::new(),
                attr: None,
            };
            return self.push_frame(
                frame,
                SlotKind::Immutable {
                    closed: false,
                    hashable: true,
                },
            );
        }
        let (frame, kind) = match &name[..] {
            b"list" => (
                Frame::Seq {
                    kind: SeqKind::List,
                    items: Vec::new(),
                    pending: Pending::new(),
                },
                SlotKind::List,
            ),
            b"tuple" => (
                Frame::Seq {
                    kind: SeqKind::Tuple,
                    items: Vec::new(),
                    pending: Pending::new(),
                },
                SlotKind::Immutable {
                    closed: false,
                    hashable: true,
                },
            ),
            b"set" => (
                Frame::Seq {
                    kind: SeqKind::Set,
                    items: Vec::new(),
                    pending: Pending::new(),
                },
                SlotKind::Set,
            ),
            b"immutable-set" => (
                Frame::Seq {
                    kind: SeqKind::FrozenSet,
                    items: Vec::new(),
                    pending: Pending::new(),
                },
                SlotKind::Immutable {
                    closed: false,
                    hashable: true,
                },
            ),
            b"dict" => (
                Frame::Dict {
                    pairs: Vec::new(),
                    key: None,
                    index: None,
                },
                SlotKind::Dict,
            ),
            b"none" => (Frame::None, SlotKind::Other),
            b"boolean" => (Frame::Bool(None), SlotKind::Other),
            b"unicode" => (Frame::Unicode(None), SlotKind::Other),
            b"decimal" => (Frame::Decimal(None), SlotKind::Other),
            b"reference" => (Frame::Reference(None), SlotKind::Other),
            b"my-reference" => (
                Frame::MyRef {
                    clid: None,
                    interface: None,
                    furl: None,
                },
                SlotKind::Other,
            ),
            b"your-reference" => (Frame::YourRef(None), SlotKind::Other),
            b"their-reference" => (
                Frame::TheirRef {
                    gift: None,
                    furl: None,
                },
                SlotKind::Other,
            ),
            b"copyable" => {
                if let Some(phase) = &mut self.index {
                    phase.copyable = true;
                }
                return Ok(None);
            }
            other => {
                return Err(DecodeError::UnknownOpenType {
                    offset: self.offset,
                    name: String::from_utf8_lossy(other).into_owned(),
                })
            }
        };
        self.push_frame(frame, kind)
    }

    fn push_frame(&mut self, frame: Frame, kind: SlotKind) -> Step {
        let phase = self.index.take().expect("in index phase");
        let (node, choice) = self.frame_node(phase.node, &frame);
        let slot = &mut self.slots[phase.slot as usize];
        slot.kind = kind;
        slot.frozenset = matches!(
            frame,
            Frame::Seq {
                kind: SeqKind::FrozenSet,
                ..
            }
        );
        self.stack.push(OpenFrame {
            close_id: phase.close_id,
            slot: phase.slot,
            frame,
            node,
            choice,
        });
        Ok(None)
    }

    pub(super) fn unexpected(&self, token: &Token, rule: &'static str) -> DecodeError {
        DecodeError::UnexpectedToken {
            offset: self.offset,
            sequence: self.stack.last().map_or("top level", |f| f.frame.name()),
            token: token.type_byte().name(),
            rule,
        }
    }

    pub(super) fn finish_message(&mut self, mut value: Value) -> Result<Out, DecodeError> {
        if self.slots.iter().any(|s| s.broken) {
            self.reset_message();
            return Ok(Event::Discarded(DecodeError::UnresolvableCycle {
                offset: self.offset,
            })
            .into());
        }
        if self.slots.iter().any(|s| s.referenced) {
            let mut next = 0u32;
            anchor_pass(&mut value, &mut next, &self.slots, &mut Default::default());
        }
        if self.needs_dedup {
            dedup_pass(&mut [&mut value]);
        }
        if self.needs_key_check && duplicate_dict_key(&[&mut value]) {
            return Err(DecodeError::DuplicateKey {
                offset: self.offset,
            });
        }
        self.reset_message();
        Ok(Event::Value(value).into())
    }
}

/// Appends `packed` to `items` as `Value`s and empties it (its memory goes
/// back unless it is small).
fn unpack_into(items: &mut Vec<Value>, packed: &mut Vec<i64>) {
    items.reserve(packed.len());
    items.extend(packed.iter().map(|&i| Value::Int(Int::Small(i))));
    if packed.capacity() > 1024 {
        *packed = Vec::new();
    } else {
        packed.clear();
    }
}
