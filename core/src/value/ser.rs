//! Value → tokens, byte-for-byte as Python foolscap's slicers write them.
//!
//! The PB messages that carry values (`call`, `answer`, `error`) are
//! written by the [`Serializer`] methods in `pb.rs`, next to the rules that
//! read them.

use std::sync::Arc;

use bytes::BytesMut;
use smallvec::SmallVec;

use super::pyops::py_cmp;
use super::sharing::{collect_tuples, SetEq};
use super::{AnchorId, Copyable, DecodeError, EncodeError, Text, Value, WireRef};
use crate::banana::encode::{put_big, put_float, put_i64, put_string, put_token_header};
use crate::banana::{TypeByte, VocabTable};
use crate::schema::{CopyableSchema, InterfaceSchema};

/// Turns the application's live references ([`Value::Local`],
/// [`Value::Remote`]) into their wire form for one connection. The broker
/// provides one; plain serialization refuses live references.
pub trait RefEncoder {
    /// The wire form of the live reference `v`.
    fn encode_ref(&mut self, v: &Value) -> Result<WireRef, EncodeError>;
}

/// Turns the reference sequences of a message being decoded into the
/// application's values, for one connection. The broker provides one;
/// plain decoding refuses references.
pub trait RefDecoder {
    /// The value for `r`, received at byte `offset`. An error with
    /// [`crate::value::ErrorScope::Message`] scope refuses the message (a
    /// Violation); with `Connection` scope it ends the stream.
    fn decode_ref(&mut self, r: WireRef, offset: u64) -> Result<Value, DecodeError>;

    /// The RemoteInterface of our object `clid` that a call is about to
    /// reach, and the object's description for Violation locations
    /// (Python's `str(obj)`). `None`: the call is not checked.
    fn call_schema(&mut self, clid: i64) -> Option<CallTarget> {
        let _ = clid;
        None
    }

    /// The interface and method (its position in the interface's
    /// `methods()`) of our request `req_id` whose answer is arriving, when
    /// we know the target's interface (its answer is then checked token by
    /// token). `None`: unchecked.
    fn answer_schema(&mut self, req_id: u64) -> Option<(Arc<InterfaceSchema>, usize)> {
        let _ = req_id;
        None
    }

    /// The attribute schema of copyable type `type_name` (Python's
    /// `stateSchema`), checked wherever such a copyable arrives.
    fn copyable_schema(&mut self, type_name: &str) -> Option<Arc<CopyableSchema>> {
        let _ = type_name;
        None
    }
}

/// The target of an incoming call whose object declares a RemoteInterface
/// ([`RefDecoder::call_schema`]).
#[derive(Debug, Clone)]
pub struct CallTarget {
    /// The interface.
    pub schema: Arc<InterfaceSchema>,
    /// The object (locations show it as
    /// [`crate::schema::check::describe_object`] does).
    pub object: crate::id::ObjectId,
}

/// Plain (de)serialization: live references and reference sequences are
/// refused, as Python's `foolscap.storage` refuses them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefs;

impl RefEncoder for NoRefs {
    fn encode_ref(&mut self, v: &Value) -> Result<WireRef, EncodeError> {
        Err(EncodeError::LiveReference(v.type_name()))
    }
}

impl RefDecoder for NoRefs {
    fn decode_ref(&mut self, r: WireRef, offset: u64) -> Result<Value, DecodeError> {
        Err(DecodeError::RefusedReference {
            offset,
            why: format!("{} outside a PB connection", r.sequence()),
            fatal: false,
        })
    }
}

/// Serializes values for one direction of a connection.
///
/// It owns that direction's OPEN counter (which never resets) and the
/// outgoing vocab table. Each [`Serializer::serialize`] call writes one
/// top-level message; shared containers ([`Value::Anchor`]/[`Value::Alias`])
/// are scoped to that call, as Python scopes them to one call or answer.
#[derive(Debug, Clone)]
pub struct Serializer {
    vocab: VocabTable,
    open_count: u64,
}

enum Frame<'a> {
    Items {
        iter: std::slice::Iter<'a, Value>,
        close: u64,
    },
    /// A set's elements less those equal to an earlier one.
    Kept {
        iter: std::vec::IntoIter<&'a Value>,
        close: u64,
    },
    Pairs {
        iter: PairIter<'a>,
        pending_value: Option<&'a Value>,
        close: u64,
    },
    Attrs {
        iter: std::slice::Iter<'a, (Text, Value)>,
        pending_value: Option<&'a Value>,
        close: u64,
    },
}

enum PairIter<'a> {
    InOrder(std::slice::Iter<'a, (Value, Value)>),
    Sorted(std::vec::IntoIter<&'a (Value, Value)>),
}

impl<'a> Iterator for PairIter<'a> {
    type Item = &'a (Value, Value);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            PairIter::InOrder(i) => i.next(),
            PairIter::Sorted(i) => i.next(),
        }
    }
}

impl Serializer {
    /// A serializer whose OPEN counter starts at 0.
    pub fn new(vocab: VocabTable) -> Self {
        Serializer {
            vocab,
            open_count: 0,
        }
    }

    /// The number the next OPEN will carry.
    pub fn open_count(&self) -> u64 {
        self.open_count
    }

    /// The outgoing vocab table.
    pub fn vocab(&self) -> VocabTable {
        self.vocab
    }

    /// Writes an OPEN and returns its number.
    #[inline]
    pub fn open(&mut self, out: &mut BytesMut) -> u64 {
        let id = self.open_count;
        self.open_count += 1;
        put_token_header(out, id, TypeByte::Open);
        id
    }

    /// Writes the CLOSE for OPEN number `id`.
    #[inline]
    pub fn close(&self, out: &mut BytesMut, id: u64) {
        put_token_header(out, id, TypeByte::Close);
    }

    /// Writes a byte string as Python does: VOCAB if it is a word of the
    /// table, else STRING.
    #[inline]
    pub fn put_bytes(&self, out: &mut BytesMut, b: &[u8]) {
        match self.vocab.index_of(b) {
            Some(i) => put_token_header(out, i, TypeByte::Vocab),
            None => put_string(out, b),
        }
    }

    /// Opens a sequence of the given open type; returns the OPEN number.
    #[inline]
    pub fn open_sequence(&mut self, out: &mut BytesMut, open_type: &[u8]) -> u64 {
        let id = self.open(out);
        self.put_bytes(out, open_type);
        id
    }

    /// Writes one top-level message holding `value`. On error nothing is
    /// written and the OPEN counter is unchanged. Live references are
    /// refused ([`NoRefs`]).
    pub fn serialize(&mut self, value: &Value, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.serialize_with(value, out, &mut NoRefs)
    }

    /// [`Serializer::serialize`], writing live references as `refs` says.
    pub fn serialize_with(
        &mut self,
        value: &Value,
        out: &mut BytesMut,
        refs: &mut dyn RefEncoder,
    ) -> Result<(), EncodeError> {
        let start_len = out.len();
        let start_count = self.open_count;
        let mut anchors = Anchors::default();
        anchors.add_root(value);
        let r = self.write_value(value, out, &mut anchors, refs);
        if r.is_err() {
            out.truncate(start_len);
            self.open_count = start_count;
        }
        r
    }

    /// Runs `write`; on error, takes back what it wrote.
    pub(super) fn transaction(
        &mut self,
        out: &mut BytesMut,
        write: impl FnOnce(&mut Self, &mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let start_len = out.len();
        let start_count = self.open_count;
        let r = write(self, out);
        if r.is_err() {
            out.truncate(start_len);
            self.open_count = start_count;
        }
        r
    }

    /// Writes `value` inside a message whose anchor scope the caller owns
    /// (the PB message writers in `pb.rs` write call arguments, answers and
    /// failures this way).
    pub(crate) fn write_value<'a>(
        &mut self,
        value: &'a Value,
        out: &mut BytesMut,
        anchors: &mut Anchors<'a>,
        refs: &mut dyn RefEncoder,
    ) -> Result<(), EncodeError> {
        // a number or a byte string (most arguments and answers) is one
        // token, as `start` writes it: no stack of open sequences
        match value {
            Value::Int(super::Int::Small(i)) => {
                put_i64(out, *i);
                return Ok(());
            }
            Value::Bytes(b) => {
                self.put_bytes(out, b);
                return Ok(());
            }
            _ => {}
        }
        let mut stack: SmallVec<[Frame<'_>; 16]> = SmallVec::new();
        self.start(value, out, anchors, &mut stack, refs)?;
        while let Some(top) = stack.last_mut() {
            let next = match top {
                Frame::Items { iter, close } => match iter.next() {
                    Some(v) => v,
                    None => {
                        let id = *close;
                        stack.pop();
                        self.close(out, id);
                        continue;
                    }
                },
                Frame::Kept { iter, close } => match iter.next() {
                    Some(v) => v,
                    None => {
                        let id = *close;
                        stack.pop();
                        self.close(out, id);
                        continue;
                    }
                },
                Frame::Pairs {
                    iter,
                    pending_value,
                    close,
                } => {
                    if let Some(v) = pending_value.take() {
                        v
                    } else if let Some((k, v)) = iter.next() {
                        *pending_value = Some(v);
                        k
                    } else {
                        let id = *close;
                        stack.pop();
                        self.close(out, id);
                        continue;
                    }
                }
                Frame::Attrs {
                    iter,
                    pending_value,
                    close,
                } => {
                    if let Some(v) = pending_value.take() {
                        v
                    } else if let Some((name, v)) = iter.next() {
                        *pending_value = Some(v);
                        self.put_bytes(out, name.as_bytes());
                        continue;
                    } else {
                        let id = *close;
                        stack.pop();
                        self.close(out, id);
                        continue;
                    }
                }
            };
            self.start(next, out, anchors, &mut stack, refs)?;
        }
        Ok(())
    }

    /// Writes a leaf value completely, or opens a container and pushes the
    /// frame that will write its children.
    fn start<'a>(
        &mut self,
        value: &'a Value,
        out: &mut BytesMut,
        anchors: &mut Anchors<'a>,
        stack: &mut SmallVec<[Frame<'a>; 16]>,
        refs: &mut dyn RefEncoder,
    ) -> Result<(), EncodeError> {
        match value {
            Value::Int(super::Int::Small(i)) => put_i64(out, *i),
            Value::Int(super::Int::Big(b)) => {
                let (sign, mag) = b.to_bytes_be();
                put_big(out, sign == num_bigint::Sign::Minus, &mag);
            }
            Value::Float(f) => put_float(out, *f),
            Value::Bytes(b) => self.put_bytes(out, b),
            Value::None => {
                let id = self.open_sequence(out, b"none");
                self.close(out, id);
            }
            Value::Bool(b) => {
                let id = self.open_sequence(out, b"boolean");
                put_token_header(out, *b as u64, TypeByte::Int);
                self.close(out, id);
            }
            Value::Str(s) => {
                let id = self.open_sequence(out, b"unicode");
                self.put_bytes(out, s.as_bytes());
                self.close(out, id);
            }
            Value::Decimal(d) => {
                let id = self.open_sequence(out, b"decimal");
                self.put_bytes(out, d.as_str().as_bytes());
                self.close(out, id);
            }
            Value::List(items) => self.push_items(out, b"list", items, stack),
            Value::Tuple(items) => self.push_items(out, b"tuple", items, stack),
            Value::Set(items) => self.push_set(out, b"set", items, anchors, stack),
            Value::FrozenSet(items) => self.push_set(out, b"immutable-set", items, anchors, stack),
            Value::Dict(pairs) => {
                let close = self.open_sequence(out, b"dict");
                stack.push(Frame::Pairs {
                    iter: sorted_pairs(pairs),
                    pending_value: None,
                    close,
                });
            }
            Value::Copyable(c) => {
                let Copyable { type_name, state } = &**c;
                let close = self.open_sequence(out, b"copyable");
                self.put_bytes(out, type_name.as_bytes());
                stack.push(Frame::Attrs {
                    iter: state.iter(),
                    pending_value: None,
                    close,
                });
            }
            Value::Anchor(id, inner) => {
                check_shareable(inner)?;
                match anchors.get(*id) {
                    // an alias earlier in wire order (dict keys were sorted)
                    // already carried the value: refer back to it
                    Some(target) if !anchors.anchor_seen(*id) => {
                        anchors.mark_anchor_seen(*id);
                        self.put_reference(out, target);
                    }
                    Some(_) => return Err(EncodeError::DuplicateAnchor(*id)),
                    None => {
                        anchors.define(*id, self.open_count);
                        anchors.mark_anchor_seen(*id);
                        self.start(inner, out, anchors, stack, refs)?;
                    }
                }
            }
            Value::Alias(id) => {
                match anchors.get(*id) {
                    Some(target) => self.put_reference(out, target),
                    None => {
                        // The alias comes first in wire order (Python sends
                        // the full value at the first occurrence it meets).
                        let inner = anchors.find(*id).ok_or(EncodeError::UnknownAnchor(*id))?;
                        check_shareable(inner)?;
                        anchors.define(*id, self.open_count);
                        self.start(inner, out, anchors, stack, refs)?;
                    }
                }
            }
            Value::Local(_) | Value::Remote(_) => {
                let wire = refs.encode_ref(value)?;
                self.put_wire_ref(out, &wire);
            }
        }
        Ok(())
    }

    /// Writes a `my-reference`, `your-reference` or `their-reference`.
    fn put_wire_ref(&mut self, out: &mut BytesMut, wire: &WireRef) {
        match wire {
            WireRef::My(r) => {
                let id = self.open_sequence(out, b"my-reference");
                put_i64(out, r.clid);
                if r.interface.is_some() || r.furl.is_some() {
                    self.put_bytes(out, r.interface.as_deref().unwrap_or_default());
                }
                if let Some(furl) = &r.furl {
                    self.put_bytes(out, furl);
                }
                self.close(out, id);
            }
            WireRef::Your(clid) => {
                let id = self.open_sequence(out, b"your-reference");
                put_token_header(out, *clid, TypeByte::Int);
                self.close(out, id);
            }
            WireRef::Their(r) => {
                let id = self.open_sequence(out, b"their-reference");
                put_token_header(out, r.gift_id, TypeByte::Int);
                self.put_bytes(out, &r.furl);
                self.close(out, id);
            }
        }
    }

    fn put_reference(&mut self, out: &mut BytesMut, target: u64) {
        let open = self.open_sequence(out, b"reference");
        put_token_header(out, target, TypeByte::Int);
        self.close(out, open);
    }

    /// A set's elements as a Python set holds them: of equal elements
    /// (Python's `==`, a shared tuple equal to an unshared one) only the
    /// first, as the receiver would merge them (`sharing::dedup_pass`).
    fn push_set<'a>(
        &mut self,
        out: &mut BytesMut,
        open_type: &[u8],
        items: &'a [Value],
        anchors: &mut Anchors<'a>,
        stack: &mut SmallVec<[Frame<'a>; 16]>,
    ) {
        let keep = if items.len() > 1 {
            SetEq::new(anchors.tuples()).keep_mask(items)
        } else {
            None
        };
        let Some(keep) = keep else {
            return self.push_items(out, open_type, items, stack);
        };
        let kept: Vec<&'a Value> = items
            .iter()
            .zip(keep)
            .filter_map(|(v, k)| k.then_some(v))
            .collect();
        let close = self.open_sequence(out, open_type);
        stack.push(Frame::Kept {
            iter: kept.into_iter(),
            close,
        });
    }

    fn push_items<'a>(
        &mut self,
        out: &mut BytesMut,
        open_type: &[u8],
        items: &'a [Value],
        stack: &mut SmallVec<[Frame<'a>; 16]>,
    ) {
        let close = self.open_sequence(out, open_type);
        stack.push(Frame::Items {
            iter: items.iter(),
            close,
        });
    }
}

/// Only what Python's unslicers register can be the target of a
/// `reference`: list, tuple, dict, set, frozenset, copyable.
fn check_shareable(v: &Value) -> Result<(), EncodeError> {
    match v {
        Value::List(_)
        | Value::Tuple(_)
        | Value::Set(_)
        | Value::FrozenSet(_)
        | Value::Dict(_)
        | Value::Copyable(_) => Ok(()),
        other => Err(EncodeError::UnshareableAnchor(other.type_name())),
    }
}

/// Dict pairs in the order Python sends them: sorted by key where Python's
/// `sorted()` is well defined (all keys mutually comparable), else as given.
fn sorted_pairs(pairs: &[(Value, Value)]) -> PairIter<'_> {
    let in_order = pairs.windows(2).all(|w| {
        matches!(
            py_cmp(&w[0].0, &w[1].0),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        )
    });
    if in_order {
        return PairIter::InOrder(pairs.iter());
    }
    // Sort only if every key compares with the first (same comparable kind).
    let first = &pairs[0].0;
    if !pairs.iter().all(|(k, _)| py_cmp(first, k).is_some()) {
        return PairIter::InOrder(pairs.iter());
    }
    let mut refs: Vec<&(Value, Value)> = pairs.iter().collect();
    let mut comparable = true;
    refs.sort_by(|a, b| {
        py_cmp(&a.0, &b.0).unwrap_or_else(|| {
            comparable = false;
            std::cmp::Ordering::Equal
        })
    });
    if comparable {
        PairIter::Sorted(refs.into_iter())
    } else {
        PairIter::InOrder(pairs.iter())
    }
}

/// The sharing scope of one message: anchor id → OPEN number of the
/// container written for it, and (built on first need) anchor id → value,
/// for an alias that wire order puts before its anchor.
#[derive(Debug, Default)]
pub(crate) struct Anchors<'a> {
    written: hashbrown::HashMap<AnchorId, u64>,
    anchor_nodes: hashbrown::HashSet<AnchorId>,
    roots: SmallVec<[&'a Value; 4]>,
    index: Option<hashbrown::HashMap<AnchorId, &'a Value>>,
    /// Anchored tuples (for comparing set elements), built on first need.
    tuples: Option<hashbrown::HashMap<AnchorId, Value>>,
}

impl<'a> Anchors<'a> {
    /// Registers a top-level value of the message (for `find`).
    pub(crate) fn add_root(&mut self, v: &'a Value) {
        self.roots.push(v);
        self.index = None;
        self.tuples = None;
    }

    /// The message's anchored tuples by id (see `sharing::SetEq`).
    fn tuples(&mut self) -> &hashbrown::HashMap<AnchorId, Value> {
        let roots = &self.roots;
        self.tuples.get_or_insert_with(|| {
            let mut out = hashbrown::HashMap::new();
            for r in roots {
                collect_tuples(r, &mut out);
            }
            out
        })
    }

    fn define(&mut self, id: AnchorId, open: u64) {
        self.written.insert(id, open);
    }

    fn get(&self, id: AnchorId) -> Option<u64> {
        self.written.get(&id).copied()
    }

    fn anchor_seen(&self, id: AnchorId) -> bool {
        self.anchor_nodes.contains(&id)
    }

    fn mark_anchor_seen(&mut self, id: AnchorId) {
        self.anchor_nodes.insert(id);
    }

    /// The anchored value with this id anywhere in the message.
    fn find(&mut self, id: AnchorId) -> Option<&'a Value> {
        let roots = &self.roots;
        let index = self.index.get_or_insert_with(|| {
            let mut index = hashbrown::HashMap::new();
            let mut todo: Vec<&'a Value> = roots.to_vec();
            while let Some(v) = todo.pop() {
                match v {
                    Value::Anchor(id, inner) => {
                        index.entry(*id).or_insert(&**inner);
                        todo.push(inner);
                    }
                    Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
                        todo.extend(i.iter())
                    }
                    Value::Dict(p) => p.iter().for_each(|(k, x)| todo.extend([k, x])),
                    Value::Copyable(c) => todo.extend(c.state.iter().map(|(_, x)| x)),
                    _ => {}
                }
            }
            index
        });
        index.get(&id).copied()
    }
}
