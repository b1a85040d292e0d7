//! The sequence kinds the value decoder builds, the bookkeeping of one
//! message's OPENs (slots), and each kind's receive rules: which tokens and
//! child sequences it takes, how it closes into a [`Value`], and how a
//! `reference` to it resolves.

use bytes::Bytes;
use smallvec::SmallVec;

use super::{Deserializer, Step, VALUE_SIZE};
use crate::banana::Token;
use crate::value::pb::PbFrame;
use crate::value::pyops::{py_eq, py_hash};
use crate::value::sharing::{count_opens, has_duplicates};
use crate::value::{
    AnchorId, Copyable, Decimal, DecodeError, Int, MyReference, RefDecoder, Text, TheirReference,
    Value, WireRef,
};

/// The sequence kinds a frame can be, in the state they need.
#[derive(Debug)]
pub(in crate::value) enum Frame {
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
    /// A PB sequence (`call`, `arguments`, `answer`, `error`), whose
    /// rules are the PB grammar's (`pb.rs`).
    Pb(PbFrame),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::value) enum SeqKind {
    List,
    Tuple,
    Set,
    FrozenSet,
}

impl Frame {
    pub(super) fn name(&self) -> &'static str {
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
            Frame::Pb(frame) => frame.name(),
        }
    }
}

#[derive(Debug)]
pub(in crate::value) struct OpenFrame {
    /// The OPEN header, which the CLOSE must repeat.
    pub(super) close_id: u64,
    /// Index of this sequence's slot in the message's slot table.
    pub(super) slot: u32,
    pub(in crate::value) frame: Frame,
    /// The constraint this sequence's contents are checked against, token
    /// by token (a schema'd message; `None`: unchecked).
    pub(super) node: Option<crate::schema::check::NodeId>,
    /// A `ChoiceOf` the sequence met: its value is checked whole when it
    /// closes (docs/protocol.md §6.5).
    pub(super) choice: Option<crate::schema::check::NodeId>,
}

/// What one OPEN of the current message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotKind {
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
pub(in crate::value) struct Slot {
    pub(super) kind: SlotKind,
    pub(in crate::value) referenced: bool,
    /// OPENs dropped after this sequence's last child (a dict's dangling
    /// key), so the anchor pass can keep counting.
    pub(in crate::value) trailing_dropped: u32,
    /// For a closed tuple/frozenset: the sequences (still open when it
    /// closed) that it waits for; it is complete once they all closed.
    pub(super) pending: Pending,
    /// A tuple/frozenset that waits for itself: it never completes.
    pub(in crate::value) broken: bool,
    /// An `immutable-set`: a `reference` to it yields a tuple of its items,
    /// as Python's FrozenSetUnslicer registers the tuple it built.
    pub(in crate::value) frozenset: bool,
    /// Message budget used when the sequence opened, and what its contents
    /// cost once closed (charged again for each copy a reference makes).
    pub(super) opened_at: usize,
    pub(super) cost: usize,
}

/// Slots of open tuples, frozensets or copyables a value waits for.
pub(in crate::value) type Pending = SmallVec<[u32; 2]>;

impl Deserializer {
    /// Python's `checkToken` for an OPEN arriving inside the top frame.
    pub(super) fn check_open_allowed(&self) -> Result<(), DecodeError> {
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
            Frame::Pb(frame) => self.check_open_in_pb(frame),
            _ => refuse("it accepts no sequences"),
        }
    }

    pub(in crate::value) fn check_items(&self, n: usize) -> Result<(), DecodeError> {
        if n >= self.limits.max_container_items {
            return Err(DecodeError::TooManyItems {
                offset: self.offset,
                limit: self.limits.max_container_items,
            });
        }
        Ok(())
    }

    /// A primitive token (INT, NEG, LONGINT, LONGNEG, FLOAT, STRING, VOCAB)
    /// inside the top frame.
    pub(super) fn primitive(&mut self, token: Token, refs: &mut dyn RefDecoder) -> Step {
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
        let token = match self.pb_primitive(top_index, token, refs)? {
            Some(t) => t,
            None => return Ok(None),
        };
        match &self.stack[top_index].frame {
            Frame::Seq { .. } | Frame::Dict { .. } => {}
            Frame::Pb(_) => {}
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
                if self.check.is_some() {
                    self.check_attribute()?;
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
        if slot.frozenset && matches!(slot.kind, SlotKind::Immutable { closed: false, .. }) {
            // A frozenset referenced from inside itself (through a list,
            // dict or copyable). Python builds it, the inner reference
            // becoming a tuple of the set's items that contains them;
            // our values cannot hold that cycle, so the message is
            // refused (docs/protocol.md §10).
            return Err(DecodeError::UnresolvableCycle {
                offset: self.offset,
            });
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
    pub(super) fn finish(
        &mut self,
        open: OpenFrame,
        refs: &mut dyn RefDecoder,
    ) -> Result<(Value, Pending), DecodeError> {
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
            } => refs.decode_ref(
                WireRef::My(MyReference {
                    clid: clid.ok_or_else(|| incomplete("my-reference"))?,
                    interface,
                    furl,
                }),
                offset,
            )?,
            Frame::YourRef(clid) => refs.decode_ref(
                WireRef::Your(clid.ok_or_else(|| incomplete("your-reference"))?),
                offset,
            )?,
            Frame::TheirRef { gift, furl } => match (gift, furl) {
                (Some(gift_id), Some(furl)) => {
                    refs.decode_ref(WireRef::Their(TheirReference { gift_id, furl }), offset)?
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
            Frame::Pb(_) => {
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
            // most values wait for nothing: no filtering pass
            _ if own.is_empty() => own,
            _ => own.into_iter().filter(still_open).collect(),
        }
    }

    /// Hands a finished value to the enclosing sequence, or completes the
    /// message.
    pub(super) fn deliver(&mut self, value: Value, waits: Pending) -> Step {
        let offset = self.offset;
        if self.stack.is_empty() {
            return self.finish_message(value).map(Some);
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
                let pairs_empty = pairs.is_empty();
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
                if self.references > 0 && !pairs_empty {
                    self.needs_key_check = true;
                }
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
            Frame::Pb(frame) => frame.take_value(value),
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
        // An alias (anywhere in the elements, this message has had one if
        // `references` counts any) may make two elements equal; that only
        // shows once anchors are in place, so let the dedup pass look.
        if items.len() > 1 && (self.references > 0 || has_duplicates(items)) {
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
