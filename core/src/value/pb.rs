//! The PB message grammar (docs/protocol.md §4.10, 5.4, 5.5), in
//! both directions: the top-level `call`, `answer` and `error` sequences
//! and a call's `arguments`, the order of their fields and the token rules
//! a receiver enforces on them (Python foolscap's call, answer and error
//! unslicers), and the writing of them by the [`Serializer`].
//!
//! The generic value decoder (`de/`) knows only that a frame may be one
//! of these ([`Frame::Pb`]): it hands such a frame's tokens, child values
//! and CLOSE to this module. What travels inside the messages is ordinary
//! values.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::de::{Deserializer, Event, Frame, OpenFrame, Out, Slot, Step};
use super::ser::{Anchors, NoRefs, RefEncoder, Serializer};
use super::sharing::{anchor_pass, dedup_pass, duplicate_dict_key, rehome_dropped};
use super::{DecodeError, EncodeError, Text, Value};
use crate::banana::encode::{put_i64, put_token_header};
use crate::banana::{Token, TypeByte};
use crate::schema::check::{check_call, Direction, Plan, Violation};
use crate::schema::InterfaceSchema;

/// The top-level messages of a PB connection, by the open type that
/// starts each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    /// `call` (§5.4): reqID, clid, method name, then `arguments`.
    Call,
    /// `answer` (§5.5): reqID and the result.
    Answer,
    /// `error` (§5.5): reqID and the failure.
    Error,
}

impl MessageKind {
    /// The open type (first index token) of the message.
    fn open_type(self) -> &'static str {
        match self {
            MessageKind::Call => "call",
            MessageKind::Answer => "answer",
            MessageKind::Error => "error",
        }
    }

    /// The message an open type starts, if it starts one.
    fn from_open_type(name: &[u8]) -> Option<MessageKind> {
        [MessageKind::Call, MessageKind::Answer, MessageKind::Error]
            .into_iter()
            .find(|kind| kind.open_type().as_bytes() == name)
    }
}

/// The open type of a call's argument list, the call's last field.
const ARGUMENTS: &str = "arguments";

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
#[non_exhaustive]
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

/// A PB sequence being received, in the state it needs (the decoder's
/// [`Frame::Pb`]).
#[derive(Debug)]
pub(super) enum PbFrame {
    /// PB `call`: reqID, clid, method name, then `arguments`.
    Call {
        req_id: Option<u64>,
        clid: Option<i64>,
        method: Option<Text>,
        args: Option<Arguments>,
    },
    /// PB `arguments`: count, positional values, keyword name/value pairs.
    Arguments {
        count: Option<u64>,
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
pub(super) struct Arguments {
    pub(super) positional: Vec<Value>,
    pub(super) keyword: Vec<(Text, Value)>,
}

/// The schema a message is checked against as it arrives: a call to an
/// object with a RemoteInterface, or the answer to a call whose target's
/// interface we know (docs/protocol.md §6.5).
#[derive(Debug)]
pub(super) struct MsgCheck {
    /// Shared with the deserializer's cache (copied when a copyable schema
    /// adds nodes).
    pub(super) plan: Arc<Plan>,
    /// For a call: its interface and method, for the whole-argument
    /// checks and the locations.
    pub(super) call: Option<CallCheck>,
    /// Whether the call's arguments (or the answer's result) follow the
    /// plan; `false` when only copyable attribute schemas apply.
    pub(super) declared: bool,
}

/// The method a checked call reaches.
#[derive(Debug)]
pub(super) struct CallCheck {
    pub(super) iface: Arc<InterfaceSchema>,
    /// The method's position in `iface.methods()`.
    pub(super) method: usize,
    /// The object, as locations show it.
    pub(super) object: crate::id::ObjectId,
}

/// Most method plans a deserializer keeps (schemas come from our own
/// declarations: this only bounds a connection's cache).
const PLAN_CACHE: usize = 32;

/// A plan cache entry: the interface (held, so its address stays unique),
/// the method's position, whether it is the result's plan, the plan.
pub(super) type CachedPlan = (Arc<InterfaceSchema>, usize, bool, Arc<Plan>);

/// A PB message whose reqID is known.
#[derive(Debug, Clone, Copy)]
pub(super) enum PbRequest {
    Call(u64),
    Answer(u64),
}

impl PbFrame {
    /// The empty frame of a top-level message.
    fn message(kind: MessageKind) -> PbFrame {
        match kind {
            MessageKind::Call => PbFrame::Call {
                req_id: None,
                clid: None,
                method: None,
                args: None,
            },
            MessageKind::Answer => PbFrame::Answer {
                req_id: None,
                value: None,
            },
            MessageKind::Error => PbFrame::Error {
                req_id: None,
                value: None,
            },
        }
    }

    /// The sequence's open type, as errors name it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            PbFrame::Call { .. } => MessageKind::Call.open_type(),
            PbFrame::Arguments { .. } => ARGUMENTS,
            PbFrame::Answer { .. } => MessageKind::Answer.open_type(),
            PbFrame::Error { .. } => MessageKind::Error.open_type(),
        }
    }

    /// The request that refusing this top-level message for `error` must
    /// answer, if its reqID arrived (a call refused by ABORT is dropped
    /// silently).
    pub(super) fn request(&self, error: &DecodeError) -> Option<PbRequest> {
        match self {
            PbFrame::Call {
                req_id: Some(r), ..
            } if !matches!(error, DecodeError::Aborted { .. }) => Some(PbRequest::Call(*r)),
            PbFrame::Answer {
                req_id: Some(r), ..
            }
            | PbFrame::Error {
                req_id: Some(r), ..
            } => Some(PbRequest::Answer(*r)),
            _ => None,
        }
    }

    /// Takes a finished child value (the decoder's `deliver`).
    pub(super) fn take_value(&mut self, value: Value) {
        match self {
            PbFrame::Arguments { count, args, name } => {
                if (args.positional.len() as u64) < count.unwrap_or(0) {
                    args.positional.push(value);
                } else {
                    let name = name.take().expect("keyword name checked on arrival");
                    // Python's dict: a repeated name keeps its place and
                    // takes the new value (the old one stays for the anchor
                    // pass, which needs every OPEN in wire order)
                    args.keyword.push((name, value));
                }
            }
            PbFrame::Answer { value: slot, .. } | PbFrame::Error { value: slot, .. } => {
                *slot = Some(value);
            }
            PbFrame::Call { .. } => {
                unreachable!("{} frames take no child values", self.name())
            }
        }
    }
}

impl Deserializer {
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

    /// Decodes as far as the buffered bytes allow and returns the next
    /// event of a PB connection, `Ok(None)` when more bytes are needed.
    /// `Err` is fatal (send ERROR and close) and sticky. Reference
    /// sequences are refused (a Violation); a broker decodes them with
    /// [`Deserializer::poll_pb_event_with`].
    pub fn poll_pb_event(&mut self) -> Result<Option<PbEvent>, DecodeError> {
        self.poll_pb_event_with(&mut super::NoRefs)
    }

    /// [`Deserializer::poll_pb_event`], turning reference sequences into
    /// live references with `refs` as each one closes.
    pub fn poll_pb_event_with(
        &mut self,
        refs: &mut dyn super::RefDecoder,
    ) -> Result<Option<PbEvent>, DecodeError> {
        Ok(self.poll_out(refs)?.map(|out| match out {
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

    /// The PB frame that the open type `name` starts, if it starts one: at
    /// the top level of a PB connection one of the three messages (any
    /// other sequence is refused), inside a `call` its `arguments` (and
    /// nothing else). `None` elsewhere: that OPEN starts a value.
    pub(super) fn open_pb_frame(&self, name: &[u8]) -> Result<Option<PbFrame>, DecodeError> {
        if self.pb && self.stack.is_empty() {
            return match MessageKind::from_open_type(name) {
                Some(kind) => Ok(Some(PbFrame::message(kind))),
                None => Err(DecodeError::UnknownOpenType {
                    offset: self.offset,
                    name: String::from_utf8_lossy(name).into_owned(),
                }),
            };
        }
        if let Some(OpenFrame {
            frame: Frame::Pb(PbFrame::Call { .. }),
            ..
        }) = self.stack.last()
        {
            if name != ARGUMENTS.as_bytes() {
                return Err(DecodeError::UnexpectedToken {
                    offset: self.offset,
                    sequence: "call",
                    token: "OPEN",
                    rule: "arguments must be an 'arguments' sequence",
                });
            }
            return Ok(Some(PbFrame::Arguments {
                count: None,
                args: Arguments::default(),
                name: None,
            }));
        }
        Ok(None)
    }

    /// Python's `checkToken` for an OPEN arriving inside a PB frame.
    pub(super) fn check_open_in_pb(&self, frame: &PbFrame) -> Result<(), DecodeError> {
        let refuse = |rule| {
            Err(DecodeError::UnexpectedToken {
                offset: self.offset,
                sequence: frame.name(),
                token: "OPEN",
                rule,
            })
        };
        match frame {
            PbFrame::Call { req_id: None, .. } => refuse("request ID must be an INT"),
            PbFrame::Call { clid: None, .. } => refuse("object ID must be an INT/NEG"),
            PbFrame::Call { method: None, .. } => refuse("method name must be a STRING"),
            PbFrame::Call { args: None, .. } => Ok(()),
            PbFrame::Call { .. } => refuse("too many objects given to CallUnslicer"),
            PbFrame::Arguments { count: None, .. } => refuse("posarg count must be an INT"),
            PbFrame::Arguments {
                count: Some(n),
                args,
                name: None,
            } if args.positional.len() as u64 >= *n => refuse("kwarg name must be a STRING"),
            PbFrame::Arguments { args, .. } => {
                self.check_items(args.positional.len() + args.keyword.len())
            }
            PbFrame::Answer { req_id: None, .. } | PbFrame::Error { req_id: None, .. } => {
                refuse("request ID must be an INT")
            }
            PbFrame::Answer { value: Some(_), .. } | PbFrame::Error { value: Some(_), .. } => {
                refuse("stop sending me stuff!")
            }
            PbFrame::Answer { .. } | PbFrame::Error { .. } => Ok(()),
        }
    }

    /// The token rules of `call`, `arguments`, `answer` and `error`
    /// (Python's `checkToken`s). Gives the token back when it is a value.
    pub(super) fn pb_primitive(
        &mut self,
        top_index: usize,
        token: Token,
        refs: &mut dyn super::RefDecoder,
    ) -> Result<Option<Token>, DecodeError> {
        let offset = self.offset;
        let vocab = self.vocab;
        let string = |t: &Token| -> Result<Option<Bytes>, DecodeError> {
            Ok(match t {
                Token::String(s) => Some(s.clone()),
                // a match, so the error is built only when it happens
                Token::Vocab(i) => match vocab.word(*i) {
                    Some(w) => Some(Bytes::from_static(w)),
                    None => return Err(DecodeError::UndefinedVocab { offset, index: *i }),
                },
                _ => None,
            })
        };
        let Frame::Pb(frame) = &mut self.stack[top_index].frame else {
            return Ok(Some(token));
        };
        match frame {
            PbFrame::Call {
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
                    let (req, target) = (req_id.unwrap_or(0), *clid);
                    if let Frame::Pb(PbFrame::Call { method, .. }) =
                        &mut self.stack[top_index].frame
                    {
                        *method = Some(text.clone());
                    }
                    if let Some(c) = target.filter(|&c| c > 0) {
                        self.method_schema(req, c, text, refs)?;
                    }
                    return Ok(None);
                } else if args.is_none() {
                    "arguments must be an 'arguments' sequence"
                } else {
                    "too many objects given to CallUnslicer"
                };
                Err(pb_unexpected(offset, "call", &token, rule))
            }
            PbFrame::Arguments {
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
                // Any count is taken, as Python takes it: the items that
                // actually arrive are bounded (`max_container_items`), and
                // a count the arguments never reach is fatal at the CLOSE
                // (Python: "'arguments' sequence ended too early").
                *count = Some(n);
                Ok(None)
            }
            PbFrame::Arguments {
                count: Some(n),
                args,
                name: None,
            } if args.positional.len() as u64 >= *n => {
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
                if let Frame::Pb(PbFrame::Arguments { name, .. }) = &mut self.stack[top_index].frame
                {
                    *name = Some(text);
                }
                if self.check.is_some() {
                    self.check_keyword(top_index)?;
                }
                Ok(None)
            }
            PbFrame::Arguments { .. } => Ok(Some(token)),
            PbFrame::Answer { req_id, value } | PbFrame::Error { req_id, value } => {
                if req_id.is_none() {
                    let Token::Int(r) = token else {
                        return Err(self.unexpected(&token, "request ID must be an INT"));
                    };
                    *req_id = Some(r);
                    if matches!(frame, PbFrame::Answer { .. }) {
                        self.answer_plan(r, refs);
                    }
                    return Ok(None);
                }
                if value.is_some() {
                    return Err(self.unexpected(&token, "stop sending me stuff!"));
                }
                Ok(Some(token))
            }
        }
    }

    /// P1: the method a call names, when its target declares a
    /// RemoteInterface: a method the interface lacks is a Violation;
    /// otherwise the call's arguments are checked against the method's.
    fn method_schema(
        &mut self,
        req_id: u64,
        clid: i64,
        method: Text,
        refs: &mut dyn super::RefDecoder,
    ) -> Result<(), DecodeError> {
        let Some(target) = refs.call_schema(clid) else {
            return Ok(());
        };
        let name = method.as_str();
        let Some(index) = target
            .schema
            .methods()
            .iter()
            .position(|m| m.name() == name)
        else {
            let at = format!(
                "<RootUnslicer>.<methodcall reqID={req_id} obj={} iface={} methodname={name}>",
                crate::schema::check::describe_object(target.object),
                target.schema.name()
            );
            let why = format!("method '{name}' not defined in {}", target.schema.name());
            return Err(DecodeError::Violation {
                offset: self.offset,
                violation: Box::new(Violation::new(why).at(at)),
            });
        };
        if target.schema.methods()[index].is_unconstrained() {
            return Ok(());
        }
        // (no copyable can come before the method name: nothing to keep)
        let plan = self.cached_plan(&target.schema, index, false);
        self.check = Some(MsgCheck {
            declared: true,
            plan,
            call: Some(CallCheck {
                method: index,
                iface: target.schema,
                object: target.object,
            }),
        });
        Ok(())
    }

    /// The plan of method `index` of `iface` (its arguments, or with
    /// `result` its result), built once per connection.
    fn cached_plan(
        &mut self,
        iface: &Arc<InterfaceSchema>,
        index: usize,
        result: bool,
    ) -> Arc<Plan> {
        if let Some((.., plan)) = self
            .plan_cache
            .iter()
            .find(|(i, m, r, _)| Arc::ptr_eq(i, iface) && *m == index && *r == result)
        {
            return plan.clone();
        }
        let m = &iface.methods()[index];
        let plan = Arc::new(if result {
            Plan::result(m.returns())
        } else {
            Plan::arguments(m)
        });
        if self.plan_cache.len() >= PLAN_CACHE {
            self.plan_cache.remove(0);
        }
        self.plan_cache
            .push((iface.clone(), index, result, plan.clone()));
        plan
    }

    /// P2: a keyword argument's name, as it arrives.
    fn check_keyword(&self, top_index: usize) -> Result<(), DecodeError> {
        let (Some(check), Frame::Pb(PbFrame::Arguments { count, args, name })) =
            (self.check.as_ref(), &self.stack[top_index].frame)
        else {
            return Ok(());
        };
        let Some(name) = name else { return Ok(()) };
        let declared = &check.plan.args;
        let positional = count.unwrap_or(0).min(declared.len() as u64) as usize;
        let given_before = declared[..positional]
            .iter()
            .any(|(a, _)| a == name.as_str())
            || args.keyword.iter().any(|(k, _)| k == name);
        if given_before {
            return Err(self.violation(format!(
                "got multiple values for keyword argument '{}'",
                name.as_str()
            )));
        }
        if !declared.iter().any(|(a, _)| a == name.as_str()) {
            return Err(self.violation(format!("unknown argument '{}'", name.as_str())));
        }
        Ok(())
    }

    /// The caller's check of an answer: the method's result constraint,
    /// token by token, when we know the target's interface.
    fn answer_plan(&mut self, req_id: u64, refs: &mut dyn super::RefDecoder) {
        let Some((iface, index)) = refs.answer_schema(req_id) else {
            return;
        };
        let Some(m) = iface.methods().get(index) else {
            return;
        };
        if m.is_unconstrained() || matches!(m.returns(), crate::schema::Constraint::Any) {
            return;
        }
        let plan = self.cached_plan(&iface, index, true);
        self.check = Some(MsgCheck {
            plan,
            call: None,
            declared: true,
        });
    }

    /// Closes an `arguments` sequence into its `call` frame.
    pub(super) fn finish_arguments(&mut self, frame: PbFrame) -> Step {
        let PbFrame::Arguments { count, args, name } = frame else {
            unreachable!()
        };
        if count.is_none_or(|n| (args.positional.len() as u64) < n) || name.is_some() {
            return Err(DecodeError::Incomplete {
                offset: self.offset,
                sequence: "arguments",
            });
        }
        if let Some(OpenFrame {
            frame: Frame::Pb(PbFrame::Call { args: slot, .. }),
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
    pub(super) fn finish_pb(&mut self, frame: PbFrame) -> Step {
        let offset = self.offset;
        let incomplete = |sequence| DecodeError::Incomplete { offset, sequence };
        let (pb, first_open) = match &frame {
            PbFrame::Call {
                req_id: Some(r),
                args: Some(_),
                ..
            } => (PbRequest::Call(*r), 2),
            PbFrame::Call { .. } => return Err(incomplete("call")),
            PbFrame::Answer {
                req_id: Some(r),
                value: Some(_),
            }
            | PbFrame::Error {
                req_id: Some(r),
                value: Some(_),
            } => (PbRequest::Answer(*r), 1),
            PbFrame::Answer { .. } => return Err(incomplete("answer")),
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
        let key_check = self.needs_key_check;
        // One sharing scope for the whole message: a `reference` in one
        // call argument may name a container in another (a frozenset's
        // copies included), and set merging may move an anchor between them.
        let fix = |roots: &mut [&mut Value], slots: &[Slot]| {
            if referenced {
                let mut next = first_open;
                let mut frozen = Default::default();
                for v in roots.iter_mut() {
                    anchor_pass(v, &mut next, slots, &mut frozen);
                }
            }
            if dedup {
                dedup_pass(roots);
            }
            if key_check && duplicate_dict_key(roots) {
                return Err(DecodeError::DuplicateKey { offset });
            }
            Ok(())
        };
        let event = match frame {
            PbFrame::Call {
                req_id: Some(req_id),
                clid: Some(clid),
                method: Some(method),
                args: Some(mut args),
            } => {
                // the common plain call needs no pass: no table of roots
                if referenced || dedup || key_check {
                    let mut roots: Vec<&mut Value> = args
                        .positional
                        .iter_mut()
                        .chain(args.keyword.iter_mut().map(|(_, v)| v))
                        .collect();
                    fix(&mut roots, &self.slots)?;
                }
                let (mut kwargs, dropped) = merge_keywords(args.keyword);
                let mut positional = args.positional;
                if !dropped.is_empty() {
                    let mut roots: Vec<&mut Value> = positional
                        .iter_mut()
                        .chain(kwargs.iter_mut().map(|(_, v)| v))
                        .collect();
                    rehome_dropped(dropped, &mut roots);
                }
                // P3: each argument whole, then the missing ones
                if let Some(call) = self.check.as_ref().and_then(|c| c.call.as_ref()) {
                    if let Some(m) = call.iface.methods().get(call.method) {
                        let no_locals = |_| None;
                        if let Err(v) = check_call(
                            &call.iface,
                            m,
                            &positional,
                            &kwargs,
                            Direction::Inbound,
                            &no_locals,
                        ) {
                            self.reset_message();
                            return Ok(Some(discarded(
                                DecodeError::Violation {
                                    offset,
                                    violation: Box::new(v),
                                },
                                Some(pb),
                            )));
                        }
                    }
                }
                PbEvent::Call(IncomingCall {
                    req_id,
                    clid,
                    method,
                    args: positional,
                    kwargs,
                })
            }
            PbFrame::Answer {
                req_id: Some(req_id),
                value: Some(mut value),
            } => {
                fix(&mut [&mut value], &self.slots)?;
                PbEvent::Answer { req_id, value }
            }
            PbFrame::Error {
                req_id: Some(req_id),
                value: Some(mut failure),
            } => {
                fix(&mut [&mut failure], &self.slots)?;
                PbEvent::Error { req_id, failure }
            }
            _ => unreachable!("checked above"),
        };
        self.reset_message();
        Ok(Some(Out::Pb(event)))
    }
}

/// The event for a discarded message: a violation to answer when the
/// message's reqID was known.
pub(super) fn discarded(error: DecodeError, pb: Option<PbRequest>) -> Out {
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

/// Keyword arguments as Python's dict keeps them: a repeated name stays at
/// its first position with its last value.
/// Also returns the values replaced (they may hold anchors other
/// arguments alias, see `sharing::rehome_dropped`).
/// Names are found through a hash table (randomly seeded), not by a scan
/// of the names before: many keywords cost linear time.
fn merge_keywords(pairs: Vec<(Text, Value)>) -> (Vec<(Text, Value)>, Vec<Value>) {
    if pairs.len() < 2 {
        // nothing to repeat: no table (most calls have no keywords)
        return (pairs, Vec::new());
    }
    let mut out: Vec<(Text, Value)> = Vec::with_capacity(pairs.len());
    let mut at: hashbrown::HashMap<Text, usize> = hashbrown::HashMap::with_capacity(pairs.len());
    let mut dropped = Vec::new();
    for (name, value) in pairs {
        match at.get(&name) {
            Some(&i) => dropped.push(std::mem::replace(&mut out[i].1, value)),
            None => {
                at.insert(name.clone(), out.len());
                out.push((name, value));
            }
        }
    }
    (out, dropped)
}

/// Writing PB messages. Each message is one sharing scope; on error
/// nothing is written and the OPEN counter is unchanged.
impl Serializer {
    /// Writes a PB `call` (docs/protocol.md §5.4): reqID, clid,
    /// method name, then `arguments` with the positional values and the
    /// keyword arguments in sorted name order. Arguments form one sharing
    /// scope. On error nothing is written and the OPEN counter is
    /// unchanged.
    pub fn write_call(
        &mut self,
        out: &mut BytesMut,
        req_id: u64,
        clid: i64,
        method: &[u8],
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<(), EncodeError> {
        self.write_call_with(out, req_id, clid, method, args, kwargs, &mut NoRefs)
    }

    /// [`Serializer::write_call`] with live references encoded by `refs`.
    #[allow(clippy::too_many_arguments)]
    pub fn write_call_with(
        &mut self,
        out: &mut BytesMut,
        req_id: u64,
        clid: i64,
        method: &[u8],
        args: &[Value],
        kwargs: &[(Text, Value)],
        refs: &mut dyn RefEncoder,
    ) -> Result<(), EncodeError> {
        let mut sorted: Vec<&(Text, Value)> = kwargs.iter().collect();
        sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut anchors = Anchors::default();
        for v in args.iter().chain(sorted.iter().map(|(_, v)| v)) {
            anchors.add_root(v);
        }
        self.transaction(out, |me, out| {
            let call = me.open_sequence(out, MessageKind::Call.open_type().as_bytes());
            put_token_header(out, req_id, TypeByte::Int);
            put_i64(out, clid);
            me.put_bytes(out, method);
            let arguments = me.open_sequence(out, ARGUMENTS.as_bytes());
            put_token_header(out, args.len() as u64, TypeByte::Int);
            for v in args {
                me.write_value(v, out, &mut anchors, refs)?;
            }
            for (name, v) in sorted {
                me.put_bytes(out, name.as_bytes());
                me.write_value(v, out, &mut anchors, refs)?;
            }
            me.close(out, arguments);
            me.close(out, call);
            Ok(())
        })
    }

    /// Writes a PB `answer`: reqID and one value (its own sharing scope).
    pub fn write_answer(
        &mut self,
        out: &mut BytesMut,
        req_id: u64,
        value: &Value,
    ) -> Result<(), EncodeError> {
        self.write_reply(out, MessageKind::Answer, req_id, value, &mut NoRefs)
    }

    /// [`Serializer::write_answer`] with live references encoded by
    /// `refs`.
    pub fn write_answer_with(
        &mut self,
        out: &mut BytesMut,
        req_id: u64,
        value: &Value,
        refs: &mut dyn RefEncoder,
    ) -> Result<(), EncodeError> {
        self.write_reply(out, MessageKind::Answer, req_id, value, refs)
    }

    /// Writes a PB `error`: reqID and the failure (normally the
    /// `twisted.python.failure.Failure` copyable).
    pub fn write_error(
        &mut self,
        out: &mut BytesMut,
        req_id: u64,
        failure: &Value,
    ) -> Result<(), EncodeError> {
        self.write_reply(out, MessageKind::Error, req_id, failure, &mut NoRefs)
    }

    /// Writes an `answer` or `error`: reqID, then the value.
    fn write_reply(
        &mut self,
        out: &mut BytesMut,
        kind: MessageKind,
        req_id: u64,
        value: &Value,
        refs: &mut dyn RefEncoder,
    ) -> Result<(), EncodeError> {
        let mut anchors = Anchors::default();
        anchors.add_root(value);
        self.transaction(out, |me, out| {
            let id = me.open_sequence(out, kind.open_type().as_bytes());
            put_token_header(out, req_id, TypeByte::Int);
            me.write_value(value, out, &mut anchors, refs)?;
            me.close(out, id);
            Ok(())
        })
    }
}
