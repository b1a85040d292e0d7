//! Tokens → values: a streaming deserializer with an explicit, bounded
//! stack, mirroring the receive rules of Python foolscap's unslicers.

use bytes::Bytes;
use smallvec::SmallVec;

use super::pyops::{py_eq, py_hash};
use super::{
    AnchorId, Copyable, Decimal, DecodeError, ErrorScope, Int, Limits, MyReference, Text,
    TheirReference, Value,
};
use crate::banana::{Token, TokenDecoder, VocabTable};

/// What the deserializer reports.
#[derive(Debug, Clone, PartialEq)]
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

/// A `call` message as received (docs/protocol.md §5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCall {
    /// Request ID; 0 means no answer is wanted.
    pub req_id: u64,
    /// Target clid: 0 is the broker, positive an object, negative a
    /// function or bound method.
    pub clid: i64,
    /// Method name (empty, and ignored, when `clid < 0`).
    pub method: Text,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments in wire order; a repeated name keeps its first
    /// position and its last value, as Python's dict does.
    pub kwargs: Vec<(Text, Value)>,
}

/// What the deserializer reports on a PB connection (see
/// [`Deserializer::pb_messages`]): the three top-level messages, the
/// violations the broker must answer, and the stream-level events.
#[derive(Debug, Clone, PartialEq)]
pub enum PbEvent {
    /// A complete `call`.
    Call(IncomingCall),
    /// A complete `answer`.
    Answer {
        /// The request it answers.
        req_id: u64,
        /// The result.
        value: Value,
    },
    /// A complete `error`; `failure` is the body as sent (normally a
    /// `twisted.python.failure.Failure` copyable).
    Error {
        /// The request it fails.
        req_id: u64,
        /// The failure value.
        failure: Value,
    },
    /// A call whose reqID was known was refused (a Violation, not ABORT)
    /// and discarded; Python answers it with an `error` (unless reqID 0).
    CallViolation {
        /// The refused call's reqID.
        req_id: u64,
        /// Why.
        error: DecodeError,
    },
    /// An `answer` or `error` whose reqID was known was refused and
    /// discarded; Python fails that local request with the Violation.
    AnswerViolation {
        /// The request to fail.
        req_id: u64,
        /// Why.
        error: DecodeError,
    },
    /// A top-level message was discarded silently (unknown top-level
    /// sequence, a Violation before the reqID, ABORT in a call, ...).
    Discarded(DecodeError),
    /// A PING; answer with PONG.
    Ping(u64),
    /// A PONG.
    Pong(u64),
    /// The peer's ERROR message.
    PeerError(Bytes),
}

/// What one step of decoding produced.
#[derive(Debug)]
enum Out {
    Ev(Event),
    Pb(PbEvent),
}

impl From<Event> for Out {
    fn from(e: Event) -> Out {
        Out::Ev(e)
    }
}

/// The sequence kinds a frame can be, in the state they need.
#[derive(Debug)]
enum Frame {
    Seq {
        kind: SeqKind,
        items: Vec<Value>,
        /// Open tuples/frozensets/copyables this one waits for (tuples and
        /// frozensets only; Python's TupleUnslicer waits on Deferreds).
        pending: Pending,
    },
    Dict {
        pairs: Vec<(Value, Value)>,
        key: Option<Value>,
        index: Option<hashbrown::HashMap<u64, SmallVec<[u32; 1]>>>,
    },
    None,
    Bool(Option<bool>),
    Unicode(Option<Text>),
    Decimal(Option<Decimal>),
    Reference(Option<Value>),
    MyRef {
        clid: Option<i64>,
        interface: Option<Bytes>,
        furl: Option<Bytes>,
    },
    YourRef(Option<u64>),
    TheirRef {
        gift: Option<u64>,
        furl: Option<Bytes>,
    },
    Copyable {
        type_name: Text,
        state: Vec<(Text, Value)>,
        attr: Option<Text>,
    },
    /// PB `call`: reqID, clid, method name, then `arguments`.
    Call {
        req_id: Option<u64>,
        clid: Option<i64>,
        method: Option<Text>,
        args: Option<Arguments>,
    },
    /// PB `arguments`: count, positional values, keyword name/value pairs.
    Arguments {
        count: Option<usize>,
        args: Arguments,
        name: Option<Text>,
    },
    /// PB `answer`.
    Answer {
        req_id: Option<u64>,
        value: Option<Value>,
    },
    /// PB `error`.
    Error {
        req_id: Option<u64>,
        value: Option<Value>,
    },
}

/// Positional and keyword arguments of a call, in wire order.
#[derive(Debug, Default)]
struct Arguments {
    positional: Vec<Value>,
    keyword: Vec<(Text, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqKind {
    List,
    Tuple,
    Set,
    FrozenSet,
}

impl Frame {
    fn name(&self) -> &'static str {
        match self {
            Frame::Seq { kind, .. } => match kind {
                SeqKind::List => "list",
                SeqKind::Tuple => "tuple",
                SeqKind::Set => "set",
                SeqKind::FrozenSet => "immutable-set",
            },
            Frame::Dict { .. } => "dict",
            Frame::None => "none",
            Frame::Bool(_) => "boolean",
            Frame::Unicode(_) => "unicode",
            Frame::Decimal(_) => "decimal",
            Frame::Reference(_) => "reference",
            Frame::MyRef { .. } => "my-reference",
            Frame::YourRef(_) => "your-reference",
            Frame::TheirRef { .. } => "their-reference",
            Frame::Copyable { .. } => "copyable",
            Frame::Call { .. } => "call",
            Frame::Arguments { .. } => "arguments",
            Frame::Answer { .. } => "answer",
            Frame::Error { .. } => "error",
        }
    }
}

#[derive(Debug)]
struct OpenFrame {
    /// The OPEN header, which the CLOSE must repeat.
    close_id: u64,
    /// Index of this sequence's slot in the message's slot table.
    slot: u32,
    frame: Frame,
}

/// What one OPEN of the current message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// Not referenceable (none, boolean, unicode, ...) or not yet typed.
    Other,
    List,
    Dict,
    Set,
    /// A tuple, frozenset or copyable; `closed` once its CLOSE arrived.
    Immutable {
        closed: bool,
        hashable: bool,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    kind: SlotKind,
    referenced: bool,
    /// OPENs dropped after this sequence's last child (a dict's dangling
    /// key), so the anchor pass can keep counting.
    trailing_dropped: u32,
    /// For a closed tuple/frozenset: the sequences (still open when it
    /// closed) that it waits for; it is complete once they all closed.
    pending: Pending,
    /// A tuple/frozenset that waits for itself: it never completes.
    broken: bool,
    /// An `immutable-set`: a `reference` to it yields a tuple of its items,
    /// as Python's FrozenSetUnslicer registers the tuple it built.
    frozenset: bool,
    /// Message budget used when the sequence opened, and what its contents
    /// cost once closed (charged again for each copy a reference makes).
    opened_at: usize,
    cost: usize,
}

/// Slots of open tuples, frozensets or copyables a value waits for.
type Pending = SmallVec<[u32; 2]>;

#[derive(Debug)]
struct IndexPhase {
    close_id: u64,
    slot: u32,
    /// First index token of a `copyable` waiting for the type name.
    copyable: bool,
}

#[derive(Debug)]
struct Discard {
    levels: usize,
    error: DecodeError,
    /// The PB message being discarded, if its reqID was known.
    pb: Option<PbRequest>,
}

/// A PB message whose reqID is known.
#[derive(Debug, Clone, Copy)]
enum PbRequest {
    Call(u64),
    Answer(u64),
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
    vocab: VocabTable,
    limits: Limits,
    /// Receiver-side OPEN counter: every OPEN, including discarded ones.
    object_count: u64,
    stack: Vec<OpenFrame>,
    index: Option<IndexPhase>,
    discard: Option<Discard>,
    /// Object number of the current message's first OPEN.
    msg_base: u64,
    slots: Vec<Slot>,
    msg_bytes: usize,
    references: usize,
    needs_dedup: bool,
    failed: Option<DecodeError>,
    /// Stream offset of the token being handled.
    offset: u64,
    /// Whether bare primitive tokens are values at the top level (a value
    /// stream, like foolscap's storage banana) or a protocol error (a PB
    /// connection, where only OPEN may start a message).
    top_level_primitives: bool,
    /// Whether this is a PB connection: top-level sequences are `call`,
    /// `answer` and `error` only.
    pb: bool,
}

const VALUE_SIZE: usize = std::mem::size_of::<Value>();

type Step = Result<Option<Out>, DecodeError>;

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
            msg_bytes: 0,
            references: 0,
            needs_dedup: false,
            failed: None,
            offset: 0,
            top_level_primitives: true,
            pb: false,
        }
    }

    /// Refuses bare primitive tokens at the top level ("top-level must be
    /// OPEN"), as a PB connection does. Value streams accept them.
    pub fn require_top_level_open(mut self) -> Self {
        self.top_level_primitives = false;
        self
    }

    /// Makes this a PB connection's deserializer (implies
    /// [`Deserializer::require_top_level_open`]): the only top-level
    /// sequences are `call`, `answer` and `error` (docs/protocol.md
    /// §4.10, 5.4, 5.5), any other is discarded silently; poll it with
    /// [`Deserializer::poll_pb_event`].
    pub fn pb_messages(mut self) -> Self {
        self.top_level_primitives = false;
        self.pb = true;
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

    /// Whether a message is partly received (false between messages).
    pub fn in_message(&self) -> bool {
        !self.stack.is_empty() || self.index.is_some() || self.discard.is_some()
    }

    /// Decodes as far as the buffered bytes allow and returns the next
    /// event, `Ok(None)` when more bytes are needed.
    ///
    /// On a PB connection use [`Deserializer::poll_pb_event`]; this method
    /// skips PB messages.
    pub fn poll_event(&mut self) -> Result<Option<Event>, DecodeError> {
        loop {
            match self.poll_out()? {
                None => return Ok(None),
                Some(Out::Ev(e)) => return Ok(Some(e)),
                Some(Out::Pb(_)) => {}
            }
        }
    }

    /// Decodes as far as the buffered bytes allow and returns the next
    /// event of a PB connection, `Ok(None)` when more bytes are needed.
    /// `Err` is fatal (send ERROR and close) and sticky.
    pub fn poll_pb_event(&mut self) -> Result<Option<PbEvent>, DecodeError> {
        Ok(self.poll_out()?.map(|out| match out {
            Out::Pb(p) => p,
            Out::Ev(Event::Ping(n)) => PbEvent::Ping(n),
            Out::Ev(Event::Pong(n)) => PbEvent::Pong(n),
            Out::Ev(Event::PeerError(m)) => PbEvent::PeerError(m),
            Out::Ev(Event::Discarded(e)) => PbEvent::Discarded(e),
            // unreachable in PB mode: top-level values are refused
            Out::Ev(Event::Value(_)) => PbEvent::Discarded(DecodeError::UnknownOpenType {
                offset: self.offset,
                name: "value".into(),
            }),
        }))
    }

    fn poll_out(&mut self) -> Result<Option<Out>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let before = self.tokens.offset();
            let token = match self.tokens.next_token() {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fatal(e.into())),
            };
            self.offset = before;
            let step = self.handle(token, (self.tokens.offset() - before) as usize);
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

    fn fatal(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e.clone());
        self.stack.clear();
        self.slots.clear();
        e
    }

    /// Drops the partial message and skips the rest of it.
    fn start_discard(&mut self, error: DecodeError) -> Option<Out> {
        let levels = self.stack.len() + self.index.is_some() as usize;
        let pb = match self.stack.first().map(|f| &f.frame) {
            Some(Frame::Call {
                req_id: Some(r), ..
            }) if !matches!(error, DecodeError::Aborted { .. }) => Some(PbRequest::Call(*r)),
            Some(Frame::Answer {
                req_id: Some(r), ..
            })
            | Some(Frame::Error {
                req_id: Some(r), ..
            }) => Some(PbRequest::Answer(*r)),
            _ => None,
        };
        self.stack.clear();
        self.index = None;
        self.reset_message();
        if levels == 0 {
            return Some(discarded(error, pb));
        }
        self.discard = Some(Discard { levels, error, pb });
        None
    }

    fn reset_message(&mut self) {
        self.slots.clear();
        self.msg_bytes = 0;
        self.references = 0;
        self.needs_dedup = false;
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
        self.vocab
            .word(index)
            .map(Bytes::from_static)
            .ok_or(DecodeError::UndefinedVocab {
                offset: self.offset,
                index,
            })
    }

    fn handle(&mut self, token: Token, wire_len: usize) -> Step {
        let token = match self.fast_item(token, wire_len)? {
            Some(token) => token,
            None => return Ok(None),
        };
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
                    self.primitive(token)
                }
                other => Err(DecodeError::TopLevelNotOpen {
                    offset: self.offset,
                    token: other.type_byte().name(),
                }),
            };
        }
        self.charge(wire_len)?;
        if self.index.is_some() {
            return self.index_token(token);
        }
        match token {
            Token::Open(close_id) => {
                // Count the OPEN even when it is refused, so that discarding
                // finds its CLOSE and later reference numbers stay right.
                let allowed = self.check_open_allowed();
                self.begin_open(close_id)?;
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
                match top.frame {
                    Frame::Arguments { .. } => return self.finish_arguments(top),
                    Frame::Call { .. } | Frame::Answer { .. } | Frame::Error { .. } => {
                        return self.finish_pb(top)
                    }
                    _ => {}
                }
                let (value, waits) = self.finish(top)?;
                self.deliver(value, waits)
            }
            Token::Abort(_) => Err(DecodeError::Aborted {
                offset: self.offset,
            }),
            primitive => self.primitive(primitive),
        }
    }

    /// The hot path: a number or byte string inside a list, tuple or set.
    /// Gives the token back when it needs the general path.
    #[inline]
    fn fast_item(&mut self, token: Token, wire_len: usize) -> Result<Option<Token>, DecodeError> {
        if self.discard.is_some() || self.index.is_some() {
            return Ok(Some(token));
        }
        let Some(OpenFrame {
            frame: Frame::Seq { items, .. },
            ..
        }) = self.stack.last_mut()
        else {
            return Ok(Some(token));
        };
        let value = match token {
            Token::Int(v) if v <= i64::MAX as u64 => Value::Int(Int::Small(v as i64)),
            Token::Neg(v) if v <= i64::MAX as u64 => Value::Int(Int::Small(-(v as i64))),
            Token::Float(f) => Value::Float(f),
            Token::String(b) => Value::Bytes(b),
            other => return Ok(Some(other)),
        };
        if items.len() >= self.limits.max_container_items {
            return Err(DecodeError::TooManyItems {
                offset: self.offset,
                limit: self.limits.max_container_items,
            });
        }
        items.push(value);
        self.charge(wire_len + VALUE_SIZE)?;
        Ok(None)
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
        });
        if self.stack.len() + 1 > self.limits.max_depth {
            return Err(DecodeError::TooDeep {
                offset: self.offset,
                limit: self.limits.max_depth,
            });
        }
        Ok(None)
    }

    /// Python's `checkToken` for an OPEN arriving inside the top frame.
    fn check_open_allowed(&self) -> Result<(), DecodeError> {
        let top = &self.stack.last().expect("inside a sequence").frame;
        let refuse = |rule| {
            Err(DecodeError::UnexpectedToken {
                offset: self.offset,
                sequence: top.name(),
                token: "OPEN",
                rule,
            })
        };
        match top {
            Frame::Seq { items, .. } => self.check_items(items.len()),
            Frame::Dict { pairs, .. } => self.check_items(pairs.len()),
            Frame::Copyable { attr: None, .. } => refuse("attribute names must be STRINGs"),
            Frame::Copyable { state, .. } => self.check_items(state.len()),
            Frame::MyRef { clid: None, .. } => refuse("reference ID must be an INT or NEG"),
            Frame::MyRef { furl: Some(_), .. } => Err(DecodeError::TooManyParameters {
                offset: self.offset,
                sequence: "my-reference",
            }),
            Frame::MyRef { .. } | Frame::TheirRef { gift: Some(_), .. } => {
                Err(DecodeError::BadIndexToken {
                    offset: self.offset,
                    why: format!("{} parameters must be STRINGs", top.name()),
                })
            }
            Frame::Call { req_id: None, .. } => refuse("request ID must be an INT"),
            Frame::Call { clid: None, .. } => refuse("object ID must be an INT/NEG"),
            Frame::Call { method: None, .. } => refuse("method name must be a STRING"),
            Frame::Call { args: None, .. } => Ok(()),
            Frame::Call { .. } => refuse("too many objects given to CallUnslicer"),
            Frame::Arguments { count: None, .. } => refuse("posarg count must be an INT"),
            Frame::Arguments {
                count: Some(n),
                args,
                name: None,
            } if args.positional.len() >= *n => refuse("kwarg name must be a STRING"),
            Frame::Arguments { args, .. } => {
                self.check_items(args.positional.len() + args.keyword.len())
            }
            Frame::Answer { req_id: None, .. } | Frame::Error { req_id: None, .. } => {
                refuse("request ID must be an INT")
            }
            Frame::Answer { value: Some(_), .. } | Frame::Error { value: Some(_), .. } => {
                refuse("stop sending me stuff!")
            }
            Frame::Answer { .. } | Frame::Error { .. } => Ok(()),
            _ => refuse("it accepts no sequences"),
        }
    }

    fn check_items(&self, n: usize) -> Result<(), DecodeError> {
        if n >= self.limits.max_container_items {
            return Err(DecodeError::TooManyItems {
                offset: self.offset,
                limit: self.limits.max_container_items,
            });
        }
        Ok(())
    }

    fn index_token(&mut self, token: Token) -> Step {
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
            Token::Abort(_) => {
                return Err(DecodeError::Aborted {
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
        if self.pb && self.stack.is_empty() {
            let frame = match &name[..] {
                b"call" => Frame::Call {
                    req_id: None,
                    clid: None,
                    method: None,
                    args: None,
                },
                b"answer" => Frame::Answer {
                    req_id: None,
                    value: None,
                },
                b"error" => Frame::Error {
                    req_id: None,
                    value: None,
                },
                other => {
                    return Err(DecodeError::UnknownOpenType {
                        offset: self.offset,
                        name: String::from_utf8_lossy(other).into_owned(),
                    })
                }
            };
            return self.push_frame(frame, SlotKind::Other);
        }
        if let Some(OpenFrame {
            frame: Frame::Call { .. },
            ..
        }) = self.stack.last()
        {
            if &name[..] != b"arguments" {
                return Err(DecodeError::UnexpectedToken {
                    offset: self.offset,
                    sequence: "call",
                    token: "OPEN",
                    rule: "arguments must be an 'arguments' sequence",
                });
            }
            let frame = Frame::Arguments {
                count: None,
                args: Arguments::default(),
                name: None,
            };
            return self.push_frame(frame, SlotKind::Other);
        }
        let phase = self.index.as_mut().expect("in index phase");
        let utf8 = |b: &Bytes, offset| {
            Text::from_utf8(b.clone()).map_err(|_| DecodeError::InvalidUtf8 {
                offset,
                what: "an open type",
            })
        };
        if phase.copyable {
            let type_name = utf8(&name, self.offset)?;
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
                phase.copyable = true;
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
        });
        Ok(None)
    }

    fn unexpected(&self, token: &Token, rule: &'static str) -> DecodeError {
        DecodeError::UnexpectedToken {
            offset: self.offset,
            sequence: self.stack.last().map_or("top level", |f| f.frame.name()),
            token: token.type_byte().name(),
            rule,
        }
    }

    /// A primitive token (INT, NEG, LONGINT, LONGNEG, FLOAT, STRING, VOCAB)
    /// inside the top frame.
    fn primitive(&mut self, token: Token) -> Step {
        let offset = self.offset;
        let string = |me: &Self, t: &Token| -> Result<Option<Bytes>, DecodeError> {
            Ok(match t {
                Token::String(s) => Some(s.clone()),
                Token::Vocab(i) => Some(me.vocab_word(*i)?),
                _ => None,
            })
        };
        let Some(top_index) = self.stack.len().checked_sub(1) else {
            return self.deliver(primitive_value(self, token)?, Pending::new());
        };
        let token = match self.pb_primitive(top_index, token)? {
            Some(t) => t,
            None => return Ok(None),
        };
        match &self.stack[top_index].frame {
            Frame::Seq { .. } | Frame::Dict { .. } => {}
            Frame::Call { .. }
            | Frame::Arguments { .. }
            | Frame::Answer { .. }
            | Frame::Error { .. } => {}
            Frame::Copyable { attr: Some(_), .. } => {}
            Frame::Copyable {
                attr: None, state, ..
            } => {
                let Some(name) = string(self, &token)? else {
                    return Err(self.unexpected(&token, "attribute names must be STRINGs"));
                };
                let name = Text::from_utf8(name).map_err(|_| DecodeError::InvalidUtf8 {
                    offset,
                    what: "an attribute name",
                })?;
                if state.iter().any(|(n, _)| *n == name) {
                    return Err(DecodeError::DuplicateAttribute {
                        offset,
                        name: name.to_string(),
                    });
                }
                if let Frame::Copyable { attr, .. } = &mut self.stack[top_index].frame {
                    *attr = Some(name);
                }
                return Ok(None);
            }
            Frame::None => return Err(self.unexpected(&token, "it takes no tokens")),
            Frame::Bool(prev) => {
                let Token::Int(v) = token else {
                    return Err(self.unexpected(&token, "it only accepts an INT token"));
                };
                if prev.is_some() {
                    return Err(self.unexpected(&token, "it only accepts one token"));
                }
                self.stack[top_index].frame = Frame::Bool(Some(v != 0));
                return Ok(None);
            }
            Frame::Unicode(prev) => {
                let Some(s) = string(self, &token)? else {
                    return Err(self.unexpected(&token, "it only accepts strings"));
                };
                if prev.is_some() {
                    return Err(self.unexpected(&token, "already received a string"));
                }
                let text = Text::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8 {
                    offset,
                    what: "a unicode sequence",
                })?;
                self.stack[top_index].frame = Frame::Unicode(Some(text));
                return Ok(None);
            }
            Frame::Decimal(prev) => {
                let Some(s) = string(self, &token)? else {
                    return Err(self.unexpected(&token, "it only accepts strings"));
                };
                if prev.is_some() {
                    return Err(self.unexpected(&token, "already received a string"));
                }
                let text = std::str::from_utf8(&s).map_err(|_| DecodeError::InvalidUtf8 {
                    offset,
                    what: "a decimal sequence",
                })?;
                let d = Decimal::parse(text).map_err(|e| DecodeError::InvalidDecimal {
                    offset,
                    text: e.text,
                })?;
                self.stack[top_index].frame = Frame::Decimal(Some(d));
                return Ok(None);
            }
            Frame::Reference(prev) => {
                let Token::Int(target) = token else {
                    return Err(self.unexpected(&token, "it only accepts INTs"));
                };
                if prev.is_some() {
                    return Err(self.unexpected(&token, "it only accepts one int"));
                }
                let alias = self.resolve_reference(target)?;
                self.stack[top_index].frame = Frame::Reference(Some(alias));
                return Ok(None);
            }
            Frame::MyRef {
                clid, interface, ..
            } => {
                let clid_missing = clid.is_none();
                let interface_missing = interface.is_none();
                let (new_clid, text) = if clid_missing {
                    match token {
                        Token::Int(v) => (Some(i64::try_from(v).ok()), None),
                        Token::Neg(v) => (Some(0i64.checked_sub_unsigned(v)), None),
                        _ => {
                            return Err(
                                self.unexpected(&token, "reference ID must be an INT or NEG")
                            )
                        }
                    }
                } else {
                    let Some(s) = string(self, &token)? else {
                        return Err(DecodeError::BadIndexToken {
                            offset,
                            why: "my-reference parameters must be STRINGs".into(),
                        });
                    };
                    (None, Some(s))
                };
                let Frame::MyRef {
                    clid,
                    interface,
                    furl,
                } = &mut self.stack[top_index].frame
                else {
                    unreachable!()
                };
                if let Some(c) = new_clid {
                    *clid = Some(c.ok_or(DecodeError::UnexpectedToken {
                        offset,
                        sequence: "my-reference",
                        token: "INT",
                        rule: "clid out of range",
                    })?);
                } else if interface_missing {
                    *interface = text;
                } else if furl.is_none() {
                    *furl = text;
                } else {
                    return Err(DecodeError::TooManyParameters {
                        offset,
                        sequence: "my-reference",
                    });
                }
                return Ok(None);
            }
            Frame::YourRef(_) => {
                let Token::Int(v) = token else {
                    return Err(self.unexpected(&token, "your-reference ID must be an INT"));
                };
                self.stack[top_index].frame = Frame::YourRef(Some(v));
                return Ok(None);
            }
            Frame::TheirRef { gift, furl } => {
                if gift.is_none() {
                    let Token::Int(v) = token else {
                        return Err(
                            self.unexpected(&token, "their-reference giftID must be an INT")
                        );
                    };
                    self.stack[top_index].frame = Frame::TheirRef {
                        gift: Some(v),
                        furl: None,
                    };
                } else if furl.is_none() {
                    let Some(s) = string(self, &token)? else {
                        return Err(DecodeError::BadIndexToken {
                            offset,
                            why: "their-reference FURL must be a STRING".into(),
                        });
                    };
                    if let Frame::TheirRef { furl, .. } = &mut self.stack[top_index].frame {
                        *furl = Some(s);
                    }
                } else {
                    return Err(DecodeError::TooManyParameters {
                        offset,
                        sequence: "their-reference",
                    });
                }
                return Ok(None);
            }
        }
        // A value inside a container.
        let value = primitive_value(self, token)?;
        self.charge(VALUE_SIZE)?;
        self.deliver(value, Pending::new())
    }

    /// The token rules of `call`, `arguments`, `answer` and `error`
    /// (Python's `checkToken`s). Gives the token back when it is a value.
    fn pb_primitive(
        &mut self,
        top_index: usize,
        token: Token,
    ) -> Result<Option<Token>, DecodeError> {
        let offset = self.offset;
        let vocab = self.vocab;
        let string = |t: &Token| -> Result<Option<Bytes>, DecodeError> {
            Ok(match t {
                Token::String(s) => Some(s.clone()),
                Token::Vocab(i) => Some(
                    vocab
                        .word(*i)
                        .map(Bytes::from_static)
                        .ok_or(DecodeError::UndefinedVocab { offset, index: *i })?,
                ),
                _ => None,
            })
        };
        match &mut self.stack[top_index].frame {
            Frame::Call {
                req_id,
                clid,
                method,
                args,
            } => {
                let rule = if req_id.is_none() {
                    let Token::Int(r) = token else {
                        return Err(pb_unexpected(
                            offset,
                            "call",
                            &token,
                            "request ID must be an INT",
                        ));
                    };
                    *req_id = Some(r);
                    return Ok(None);
                } else if clid.is_none() {
                    let c = match token {
                        Token::Int(v) => i64::try_from(v).ok(),
                        Token::Neg(v) => 0i64.checked_sub_unsigned(v),
                        _ => {
                            return Err(pb_unexpected(
                                offset,
                                "call",
                                &token,
                                "object ID must be an INT/NEG",
                            ))
                        }
                    };
                    *clid = Some(c.ok_or_else(|| {
                        pb_unexpected(offset, "call", &token, "object ID out of range")
                    })?);
                    return Ok(None);
                } else if method.is_none() {
                    let negative = clid.is_some_and(|c| c < 0);
                    let Some(s) = string(&token)? else {
                        return Err(pb_unexpected(
                            offset,
                            "call",
                            &token,
                            "method name must be a STRING",
                        ));
                    };
                    let text = if negative {
                        // the target is a function: Python ignores the name
                        Text::from("")
                    } else {
                        Text::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8 {
                            offset,
                            what: "a method name",
                        })?
                    };
                    if let Frame::Call { method, .. } = &mut self.stack[top_index].frame {
                        *method = Some(text);
                    }
                    return Ok(None);
                } else if args.is_none() {
                    "arguments must be an 'arguments' sequence"
                } else {
                    "too many objects given to CallUnslicer"
                };
                Err(pb_unexpected(offset, "call", &token, rule))
            }
            Frame::Arguments {
                count: count @ None,
                ..
            } => {
                let Token::Int(n) = token else {
                    return Err(pb_unexpected(
                        offset,
                        "arguments",
                        &token,
                        "posarg count must be an INT",
                    ));
                };
                let limit = self.limits.max_container_items;
                *count = Some(
                    usize::try_from(n)
                        .ok()
                        .filter(|n| *n <= limit)
                        .ok_or(DecodeError::TooManyItems { offset, limit })?,
                );
                Ok(None)
            }
            Frame::Arguments {
                count: Some(n),
                args,
                name: None,
            } if args.positional.len() >= *n => {
                let Some(s) = string(&token)? else {
                    return Err(pb_unexpected(
                        offset,
                        "arguments",
                        &token,
                        "kwarg name must be a STRING",
                    ));
                };
                let text = Text::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8 {
                    offset,
                    what: "a keyword argument name",
                })?;
                if let Frame::Arguments { name, .. } = &mut self.stack[top_index].frame {
                    *name = Some(text);
                }
                Ok(None)
            }
            Frame::Arguments { .. } => Ok(Some(token)),
            Frame::Answer { req_id, value } | Frame::Error { req_id, value } => {
                if req_id.is_none() {
                    let Token::Int(r) = token else {
                        return Err(self.unexpected(&token, "request ID must be an INT"));
                    };
                    *req_id = Some(r);
                    return Ok(None);
                }
                if value.is_some() {
                    return Err(self.unexpected(&token, "stop sending me stuff!"));
                }
                Ok(Some(token))
            }
            _ => Ok(Some(token)),
        }
    }

    fn resolve_reference(&mut self, target: u64) -> Result<Value, DecodeError> {
        let dangling = DecodeError::DanglingReference {
            offset: self.offset,
            target,
        };
        let Some(rel) = target.checked_sub(self.msg_base) else {
            return Err(dangling);
        };
        let Some(slot) = usize::try_from(rel)
            .ok()
            .and_then(|r| self.slots.get_mut(r))
        else {
            return Err(dangling);
        };
        if slot.kind == SlotKind::Other {
            return Err(dangling);
        }
        slot.referenced = true;
        let copy_cost = if slot.frozenset { slot.cost } else { 0 };
        self.charge(copy_cost)?;
        self.references += 1;
        if self.references > self.limits.max_references {
            return Err(DecodeError::TooManyReferences {
                offset: self.offset,
                limit: self.limits.max_references,
            });
        }
        Ok(Value::Alias(rel as AnchorId))
    }

    /// Turns a closed frame into its value, with what it still waits for.
    fn finish(&mut self, open: OpenFrame) -> Result<(Value, Pending), DecodeError> {
        let offset = self.offset;
        let incomplete = |sequence| DecodeError::Incomplete { offset, sequence };
        let slot = open.slot as usize;
        let mut waits = Pending::new();
        let value = match open.frame {
            Frame::Seq {
                kind,
                items,
                pending,
            } => match kind {
                SeqKind::List => Value::List(items),
                SeqKind::Tuple => {
                    waits = self.close_immutable(slot, &items, pending);
                    Value::Tuple(items)
                }
                SeqKind::Set | SeqKind::FrozenSet => {
                    self.check_set(&items)?;
                    if kind == SeqKind::FrozenSet {
                        waits = self.close_immutable(slot, &items, pending);
                        Value::FrozenSet(items)
                    } else {
                        Value::Set(items)
                    }
                }
            },
            Frame::Dict { pairs, key, .. } => {
                if let Some(k) = key {
                    // Python drops a key that never got its value.
                    self.slots[slot].trailing_dropped = count_opens(&k);
                }
                Value::Dict(pairs)
            }
            Frame::None => Value::None,
            // Python returns None for an empty boolean/unicode/decimal.
            Frame::Bool(b) => b.map_or(Value::None, Value::Bool),
            Frame::Unicode(s) => s.map_or(Value::None, Value::Str),
            Frame::Decimal(d) => d.map_or(Value::None, Value::Decimal),
            Frame::Reference(r) => r.ok_or_else(|| incomplete("reference"))?,
            Frame::MyRef {
                clid,
                interface,
                furl,
            } => Value::MyReference(Box::new(MyReference {
                clid: clid.ok_or_else(|| incomplete("my-reference"))?,
                interface,
                furl,
            })),
            Frame::YourRef(clid) => {
                Value::YourReference(clid.ok_or_else(|| incomplete("your-reference"))?)
            }
            Frame::TheirRef { gift, furl } => match (gift, furl) {
                (Some(gift_id), Some(furl)) => {
                    Value::TheirReference(Box::new(TheirReference { gift_id, furl }))
                }
                _ => return Err(incomplete("their-reference")),
            },
            Frame::Copyable {
                type_name, state, ..
            } => {
                self.slots[slot].kind = SlotKind::Immutable {
                    closed: true,
                    hashable: true,
                };
                Value::Copyable(Box::new(Copyable { type_name, state }))
            }
            Frame::Call { .. }
            | Frame::Arguments { .. }
            | Frame::Answer { .. }
            | Frame::Error { .. } => {
                unreachable!("PB frames are finished by finish_pb")
            }
        };
        self.charge(VALUE_SIZE)?;
        Ok((value, waits))
    }

    /// What a child value waits for: an alias to a tuple, frozenset or
    /// copyable still being received, or a tuple/frozenset that closed
    /// while waiting for one that is still open.
    fn waits_of(&self, value: &Value, own: Pending) -> Pending {
        let still_open = |s: &u32| {
            self.slots.get(*s as usize).is_some_and(|s| {
                s.broken || matches!(s.kind, SlotKind::Immutable { closed: false, .. })
            })
        };
        match value {
            Value::Alias(rel) if still_open(rel) => smallvec::smallvec![*rel],
            Value::Alias(rel) => self
                .slots
                .get(*rel as usize)
                .map(|slot| slot.pending.iter().copied().filter(still_open).collect())
                .unwrap_or_default(),
            _ => own.into_iter().filter(still_open).collect(),
        }
    }

    /// Hands a finished value to the enclosing sequence, or completes the
    /// message.
    fn deliver(&mut self, value: Value, waits: Pending) -> Step {
        let offset = self.offset;
        if self.stack.is_empty() {
            return Ok(Some(self.finish_message(value)));
        }
        let waits = self.waits_of(&value, waits);
        let top = self.stack.last_mut().expect("inside a sequence");
        match &mut top.frame {
            Frame::Seq {
                kind,
                items,
                pending,
            } => {
                if items.len() >= self.limits.max_container_items {
                    return Err(DecodeError::TooManyItems {
                        offset,
                        limit: self.limits.max_container_items,
                    });
                }
                items.push(value);
                // only tuples and frozensets wait for their children
                if matches!(kind, SeqKind::Tuple | SeqKind::FrozenSet) {
                    for w in waits {
                        if !pending.contains(&w) {
                            pending.push(w);
                        }
                    }
                }
            }
            Frame::Dict {
                key: None, pairs, ..
            } => {
                if pairs.len() >= self.limits.max_container_items {
                    return Err(DecodeError::TooManyItems {
                        offset,
                        limit: self.limits.max_container_items,
                    });
                }
                if !waits.is_empty() {
                    return Err(DecodeError::IncompleteKey { offset });
                }
                if !self.hashable(&value) {
                    return Err(DecodeError::Unhashable {
                        offset,
                        what: "dict key",
                    });
                }
                self.check_duplicate_key(&value)?;
                if let Some(OpenFrame {
                    frame: Frame::Dict { key, .. },
                    ..
                }) = self.stack.last_mut()
                {
                    *key = Some(value);
                }
            }
            Frame::Dict { key, pairs, .. } => {
                let k = key.take().expect("dict key");
                pairs.push((k, value));
            }
            Frame::Copyable { attr, .. } => {
                let name = attr.take().expect("attribute name checked on arrival");
                if !waits.is_empty() {
                    return Err(DecodeError::UnreferenceableAttribute { offset });
                }
                if let Some(OpenFrame {
                    frame: Frame::Copyable { state, .. },
                    ..
                }) = self.stack.last_mut()
                {
                    state.push((name, value));
                }
            }
            Frame::Arguments { count, args, name } => {
                if args.positional.len() < count.unwrap_or(0) {
                    args.positional.push(value);
                } else {
                    let name = name.take().expect("keyword name checked on arrival");
                    // Python's dict: a repeated name keeps its place and
                    // takes the new value (the old one stays for the anchor
                    // pass, which needs every OPEN in wire order)
                    args.keyword.push((name, value));
                }
            }
            Frame::Answer { value: slot, .. } | Frame::Error { value: slot, .. } => {
                *slot = Some(value);
            }
            other => unreachable!("{} frames take no child values", other.name()),
        }
        Ok(None)
    }

    fn check_duplicate_key(&mut self, key: &Value) -> Result<(), DecodeError> {
        let offset = self.offset;
        let Some(OpenFrame {
            frame: Frame::Dict { pairs, index, .. },
            ..
        }) = self.stack.last_mut()
        else {
            unreachable!()
        };
        const LINEAR: usize = 8;
        if pairs.len() < LINEAR {
            if pairs.iter().any(|(k, _)| py_eq(k, key)) {
                return Err(DecodeError::DuplicateKey { offset });
            }
            return Ok(());
        }
        let index = index.get_or_insert_with(|| {
            let mut m: hashbrown::HashMap<u64, SmallVec<[u32; 1]>> = hashbrown::HashMap::new();
            for (i, (k, _)) in pairs.iter().enumerate() {
                m.entry(py_hash(k).unwrap_or(0)).or_default().push(i as u32);
            }
            m
        });
        let h = py_hash(key).unwrap_or(0);
        let bucket = index.entry(h).or_default();
        if bucket.iter().any(|&i| py_eq(&pairs[i as usize].0, key)) {
            return Err(DecodeError::DuplicateKey { offset });
        }
        bucket.push(pairs.len() as u32);
        Ok(())
    }

    /// Set and frozenset elements must be hashable; equal elements are
    /// merged later (Python's `set.add` keeps the first).
    fn check_set(&mut self, items: &[Value]) -> Result<(), DecodeError> {
        for v in items {
            if !self.hashable(v) {
                return Err(DecodeError::Unhashable {
                    offset: self.offset,
                    what: "set element",
                });
            }
        }
        // An alias may name an element of the same set; that only shows
        // once anchors are in place, so let the dedup pass look.
        if items.iter().any(|v| matches!(v, Value::Alias(_))) || has_duplicates(items) {
            self.needs_dedup = true;
        }
        Ok(())
    }

    /// Marks a closed tuple or frozenset and returns what it waits for.
    /// One that waits for itself (a cycle through tuples only) can never
    /// be built: Python keeps a placeholder for it, fails if it is used as
    /// a dict key, and delivers a broken object otherwise; we refuse the
    /// message when it ends (see `finish_message`).
    fn close_immutable(&mut self, slot: usize, items: &[Value], pending: Pending) -> Pending {
        if pending.contains(&(slot as u32)) {
            self.slots[slot].broken = true;
        }
        let hashable = items.iter().all(|v| self.hashable(v));
        self.slots[slot].kind = SlotKind::Immutable {
            closed: true,
            hashable,
        };
        self.slots[slot].pending = pending.clone();
        self.slots[slot].cost = self.msg_bytes - self.slots[slot].opened_at;
        pending
    }

    /// Whether Python could hash the value (no list, dict or set in it).
    fn hashable(&self, v: &Value) -> bool {
        match v {
            Value::List(_) | Value::Dict(_) | Value::Set(_) => false,
            Value::Tuple(items) | Value::FrozenSet(items) => items.iter().all(|i| self.hashable(i)),
            Value::Alias(rel) => !matches!(
                self.slots.get(*rel as usize).map(|s| s.kind),
                Some(SlotKind::List | SlotKind::Dict | SlotKind::Set)
                    | Some(SlotKind::Immutable {
                        hashable: false,
                        ..
                    })
            ),
            _ => true,
        }
    }

    /// Closes an `arguments` sequence into its `call` frame.
    fn finish_arguments(&mut self, open: OpenFrame) -> Step {
        let Frame::Arguments { count, args, name } = open.frame else {
            unreachable!()
        };
        if count.is_none_or(|n| args.positional.len() < n) || name.is_some() {
            return Err(DecodeError::Incomplete {
                offset: self.offset,
                sequence: "arguments",
            });
        }
        if let Some(OpenFrame {
            frame: Frame::Call { args: slot, .. },
            ..
        }) = self.stack.last_mut()
        {
            *slot = Some(args);
        }
        Ok(None)
    }

    /// Completes a top-level `call`, `answer` or `error`: resolves its
    /// sharing (anchors numbered from the message's first OPEN) and reports
    /// it.
    fn finish_pb(&mut self, open: OpenFrame) -> Step {
        let offset = self.offset;
        let incomplete = |sequence| DecodeError::Incomplete { offset, sequence };
        let (pb, first_open) = match &open.frame {
            Frame::Call {
                req_id: Some(r),
                args: Some(_),
                ..
            } => (PbRequest::Call(*r), 2),
            Frame::Call { .. } => return Err(incomplete("call")),
            Frame::Answer {
                req_id: Some(r),
                value: Some(_),
            }
            | Frame::Error {
                req_id: Some(r),
                value: Some(_),
            } => (PbRequest::Answer(*r), 1),
            Frame::Answer { .. } => return Err(incomplete("answer")),
            _ => return Err(incomplete("error")),
        };
        if self.slots.iter().any(|s| s.broken) {
            self.reset_message();
            return Ok(Some(discarded(
                DecodeError::UnresolvableCycle { offset },
                Some(pb),
            )));
        }
        let referenced = self.slots.iter().any(|s| s.referenced);
        let dedup = self.needs_dedup;
        let fix = |v: &mut Value, next: &mut u32, slots: &[Slot]| {
            if referenced {
                anchor_pass(v, next, slots, &mut Default::default());
            }
            if dedup {
                dedup_pass(v);
            }
        };
        let mut next = first_open;
        let event = match open.frame {
            Frame::Call {
                req_id: Some(req_id),
                clid: Some(clid),
                method: Some(method),
                args: Some(mut args),
            } => {
                for v in args
                    .positional
                    .iter_mut()
                    .chain(args.keyword.iter_mut().map(|(_, v)| v))
                {
                    fix(v, &mut next, &self.slots);
                }
                PbEvent::Call(IncomingCall {
                    req_id,
                    clid,
                    method,
                    args: args.positional,
                    kwargs: merge_keywords(args.keyword),
                })
            }
            Frame::Answer {
                req_id: Some(req_id),
                value: Some(mut value),
            } => {
                fix(&mut value, &mut next, &self.slots);
                PbEvent::Answer { req_id, value }
            }
            Frame::Error {
                req_id: Some(req_id),
                value: Some(mut failure),
            } => {
                fix(&mut failure, &mut next, &self.slots);
                PbEvent::Error { req_id, failure }
            }
            _ => unreachable!("checked above"),
        };
        self.reset_message();
        Ok(Some(Out::Pb(event)))
    }

    fn finish_message(&mut self, mut value: Value) -> Out {
        if self.slots.iter().any(|s| s.broken) {
            self.reset_message();
            return Event::Discarded(DecodeError::UnresolvableCycle {
                offset: self.offset,
            })
            .into();
        }
        if self.slots.iter().any(|s| s.referenced) {
            let mut next = 0u32;
            anchor_pass(&mut value, &mut next, &self.slots, &mut Default::default());
        }
        if self.needs_dedup {
            dedup_pass(&mut value);
        }
        self.reset_message();
        Event::Value(value).into()
    }
}

/// The event for a discarded message: a violation to answer when the
/// message's reqID was known.
fn discarded(error: DecodeError, pb: Option<PbRequest>) -> Out {
    Out::Pb(match pb {
        Some(PbRequest::Call(req_id)) => PbEvent::CallViolation { req_id, error },
        Some(PbRequest::Answer(req_id)) => PbEvent::AnswerViolation { req_id, error },
        None => return Event::Discarded(error).into(),
    })
}

/// A fatal "wrong token here" error inside a PB sequence.
fn pb_unexpected(
    offset: u64,
    sequence: &'static str,
    token: &Token,
    rule: &'static str,
) -> DecodeError {
    DecodeError::UnexpectedToken {
        offset,
        sequence,
        token: token.type_byte().name(),
        rule,
    }
}

/// The value a primitive token stands for.
fn primitive_value(de: &Deserializer, token: Token) -> Result<Value, DecodeError> {
    Ok(match token {
        Token::Int(v) => Value::Int(Int::from(v)),
        Token::Neg(v) => Value::Int(match 0i64.checked_sub_unsigned(v) {
            Some(i) => Int::Small(i),
            None => Int::from_be_magnitude(true, &v.to_be_bytes()),
        }),
        Token::LongInt(m) => Value::Int(Int::from_be_magnitude(false, &m)),
        Token::LongNeg(m) => Value::Int(Int::from_be_magnitude(true, &m)),
        Token::Float(f) => Value::Float(f),
        Token::String(s) => Value::Bytes(s),
        Token::Vocab(i) => Value::Bytes(de.vocab_word(i)?),
        _ => unreachable!("structural tokens are handled by the caller"),
    })
}

/// Keyword arguments as Python's dict keeps them: a repeated name stays at
/// its first position with its last value.
fn merge_keywords(pairs: Vec<(Text, Value)>) -> Vec<(Text, Value)> {
    let mut out: Vec<(Text, Value)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name, value)),
        }
    }
    out
}

/// How many OPENs the wire form of `v` contains.
fn count_opens(v: &Value) -> u32 {
    match v {
        Value::Int(_) | Value::Float(_) | Value::Bytes(_) => 0,
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            1 + i.iter().map(count_opens).sum::<u32>()
        }
        Value::Dict(p) => {
            1 + p
                .iter()
                .map(|(k, v)| count_opens(k) + count_opens(v))
                .sum::<u32>()
        }
        Value::Copyable(c) => 1 + c.state.iter().map(|(_, v)| count_opens(v)).sum::<u32>(),
        Value::Anchor(_, inner) => count_opens(inner),
        _ => 1,
    }
}

/// Wraps every referenced container in an [`Value::Anchor`] whose id is
/// its OPEN's position in the message (the id its aliases carry). Walks in
/// wire order, counting OPENs exactly as they arrived.
fn anchor_pass(
    v: &mut Value,
    next: &mut u32,
    slots: &[Slot],
    frozen: &mut hashbrown::HashMap<u32, Vec<Value>>,
) {
    let opens_here = !matches!(v, Value::Int(_) | Value::Float(_) | Value::Bytes(_));
    if !opens_here {
        return;
    }
    let my = *next;
    *next += 1;
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            for c in i {
                anchor_pass(c, next, slots, frozen);
            }
        }
        Value::Dict(p) => {
            for (k, val) in p {
                anchor_pass(k, next, slots, frozen);
                anchor_pass(val, next, slots, frozen);
            }
        }
        Value::Copyable(c) => {
            for (_, val) in &mut c.state {
                anchor_pass(val, next, slots, frozen);
            }
        }
        Value::Alias(id) => {
            if let Some(items) = frozen.get(id) {
                *v = Value::Tuple(items.clone());
            }
        }
        _ => {}
    }
    if let Some(slot) = slots.get(my as usize) {
        *next += slot.trailing_dropped;
        if slot.referenced {
            if let (true, Value::FrozenSet(items)) = (slot.frozenset, &*v) {
                frozen.insert(my, items.iter().map(shared_copy).collect());
            } else {
                let inner = std::mem::replace(v, Value::None);
                *v = Value::Anchor(my, Box::new(inner));
            }
        }
    }
}

/// A copy that shares what the original shares: anchors become aliases.
fn shared_copy(v: &Value) -> Value {
    match v {
        Value::Anchor(id, _) => Value::Alias(*id),
        Value::List(i) => Value::List(i.iter().map(shared_copy).collect()),
        Value::Tuple(i) => Value::Tuple(i.iter().map(shared_copy).collect()),
        Value::Set(i) => Value::Set(i.iter().map(shared_copy).collect()),
        Value::FrozenSet(i) => Value::FrozenSet(i.iter().map(shared_copy).collect()),
        Value::Dict(p) => Value::Dict(
            p.iter()
                .map(|(k, x)| (shared_copy(k), shared_copy(x)))
                .collect(),
        ),
        Value::Copyable(c) => Value::Copyable(Box::new(super::Copyable {
            type_name: c.type_name.clone(),
            state: c
                .state
                .iter()
                .map(|(n, x)| (n.clone(), shared_copy(x)))
                .collect(),
        })),
        other => other.clone(),
    }
}

fn has_duplicates(items: &[Value]) -> bool {
    if items.len() < 16 {
        return items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| py_eq(a, b)));
    }
    let mut seen: hashbrown::HashMap<u64, SmallVec<[usize; 1]>> = hashbrown::HashMap::new();
    for (i, v) in items.iter().enumerate() {
        let bucket = seen.entry(py_hash(v).unwrap_or(0)).or_default();
        if bucket.iter().any(|&j| py_eq(&items[j], v)) {
            return true;
        }
        bucket.push(i);
    }
    false
}

/// Merges equal set elements as Python's `set.add` does (first one kept;
/// an anchored element is never dropped, so its aliases stay valid).
fn dedup_pass(v: &mut Value) {
    match v {
        Value::Set(items) | Value::FrozenSet(items) => {
            for c in items.iter_mut() {
                dedup_pass(c);
            }
            if has_duplicates(items) {
                let mut kept: Vec<Value> = Vec::with_capacity(items.len());
                for item in std::mem::take(items) {
                    let dup =
                        !matches!(item, Value::Anchor(..)) && kept.iter().any(|k| py_eq(k, &item));
                    if !dup {
                        kept.push(item);
                    }
                }
                *items = kept;
            }
        }
        Value::List(i) | Value::Tuple(i) => i.iter_mut().for_each(dedup_pass),
        Value::Dict(p) => p.iter_mut().for_each(|(k, v)| {
            dedup_pass(k);
            dedup_pass(v)
        }),
        Value::Copyable(c) => c.state.iter_mut().for_each(|(_, v)| dedup_pass(v)),
        Value::Anchor(_, inner) => dedup_pass(inner),
        _ => {}
    }
}
