//! The checks behind the fuzz targets, as plain functions so that the
//! regression inputs in `fuzz/regressions/<target>/` can be replayed by an
//! ordinary `cargo test --manifest-path fuzz/Cargo.toml` on stable Rust.
//!
//! Every check panics when an invariant is broken; returning normally means
//! the input is fine (including inputs the decoders reject).

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use foolscap_core::banana::{
    encode::put_token, Token, TokenDecoder, TokenError, TokenLimits, VocabTable,
};
use foolscap_core::schema::{check_call, Direction, InterfaceSchema};
use foolscap_core::value::{
    CallTarget, DecodeError, Deserializer, Event, Limits, PbEvent, RefDecoder, Serializer, Value,
    WireRef, WireRefs,
};

/// Chunk size picked by the first input byte: 0 means "everything at once".
fn chunk_size(b: u8) -> usize {
    match b & 0x3f {
        0 => usize::MAX,
        n => n as usize,
    }
}

fn chunks(data: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    let size = size.min(data.len().max(1));
    data.chunks(size)
}

/// Token equality with FLOATs compared by bit pattern (`Token`'s derived
/// `==` says NaN != NaN).
pub fn same_token(a: &Token, b: &Token) -> bool {
    match (a, b) {
        (Token::Float(x), Token::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Errors are equal, except for the bytes a too-long header quotes: those
/// are what was buffered when it failed, which depends on the chunking (as
/// in Python), so the chunked ones need only be a prefix of the others.
fn same_error(chunked: &Option<TokenError>, whole: &Option<TokenError>) -> bool {
    match (chunked, whole) {
        (
            Some(TokenError::HeaderTooLong {
                offset: o1,
                limit: l1,
                received: r1,
            }),
            Some(TokenError::HeaderTooLong {
                offset: o2,
                limit: l2,
                received: r2,
            }),
        ) => o1 == o2 && l1 == l2 && r2.starts_with(r1),
        _ => chunked == whole,
    }
}

/// Decodes `data` fed in chunks of `size`, pulling after every chunk.
fn decode_tokens(data: &[u8], size: usize) -> (Vec<Token>, Option<TokenError>) {
    let mut limits = TokenLimits::default();
    limits.max_string_bytes = 1 << 20;
    let mut d = TokenDecoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks(data, size) {
        d.feed(chunk);
        loop {
            match d.next_token() {
                Ok(Some(t)) => out.push(t),
                Ok(None) => break,
                Err(e) => {
                    // errors are sticky
                    assert_eq!(
                        d.next_token(),
                        Err(e.clone()),
                        "token errors must be sticky"
                    );
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

/// `token_decoder`: first byte picks the chunk size, the rest is the stream.
pub fn check_token_decoder(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let (tokens, err) = decode_tokens(stream, chunk_size(first));

    // Chunking must not change what is decoded (nor where it fails).
    let (whole, whole_err) = decode_tokens(stream, usize::MAX);
    assert_eq!(
        tokens.len(),
        whole.len(),
        "chunked and whole decoding disagree on token count"
    );
    for (a, b) in tokens.iter().zip(&whole) {
        assert!(same_token(a, b), "chunked {a:?} != whole {b:?}");
    }
    assert!(
        same_error(&err, &whole_err),
        "chunked and whole decoding disagree on the error: {err:?} != {whole_err:?}"
    );

    // Every token survives put_token -> decode unchanged, as exactly one token.
    for t in &tokens {
        let mut buf = BytesMut::new();
        put_token(&mut buf, t);
        let encoded = buf.freeze();
        let mut d = TokenDecoder::default();
        d.feed(&encoded);
        let again = d.next_token().unwrap_or_else(|e| {
            panic!("re-encoding of {t:?} ({encoded:02x?}) fails to decode: {e}")
        });
        let again =
            again.unwrap_or_else(|| panic!("re-encoding of {t:?} ({encoded:02x?}) is incomplete"));
        assert!(
            same_token(t, &again),
            "{t:?} re-encoded as {encoded:02x?} decodes as {again:?}"
        );
        assert_eq!(
            d.buffered(),
            0,
            "re-encoding of {t:?} ({encoded:02x?}) has trailing bytes"
        );
        // and the re-encoding is canonical: encoding the decoded token again
        // gives the same bytes
        let mut buf2 = BytesMut::new();
        put_token(&mut buf2, &again);
        assert_eq!(
            &buf2[..],
            &encoded[..],
            "put_token is not deterministic for {t:?}"
        );
    }
}

/// Small limits so one fuzz input cannot make the deserializer hold much.
pub fn small_limits() -> Limits {
    let mut limits = Limits::default();
    limits.tokens.max_string_bytes = 1 << 20;
    limits.tokens.max_longint_bytes = 4 << 10;
    limits.max_depth = 64;
    limits.max_container_items = 1 << 16;
    limits.max_message_bytes = 1 << 20;
    limits.max_references = 1 << 12;
    limits
}

/// Serializes one value as one message with a fresh serializer.
pub fn encode(vocab: VocabTable, v: &Value) -> Bytes {
    encode_with(vocab, v, &mut WireRefs::default())
}

/// [`encode`], writing the reference sequences `refs` stands in for.
pub fn encode_with(vocab: VocabTable, v: &Value, refs: &mut WireRefs) -> Bytes {
    let mut out = BytesMut::new();
    Serializer::new(vocab)
        .serialize_with(v, &mut out, refs)
        .unwrap_or_else(|e| panic!("serializing {v:?} failed: {e}"));
    out.freeze()
}

/// Decodes bytes that must hold exactly one value (a fresh deserializer,
/// default limits, fed everything at once).
pub fn decode_one(vocab: VocabTable, wire: &[u8]) -> Value {
    decode_one_with(vocab, wire, &mut WireRefs::default())
}

/// [`decode_one`], keeping reference sequences in `refs`.
pub fn decode_one_with(vocab: VocabTable, wire: &[u8], refs: &mut WireRefs) -> Value {
    let mut de = Deserializer::new(vocab, Limits::default());
    de.feed(wire);
    let v = match de.poll_event_with(refs) {
        Ok(Some(Event::Value(v))) => v,
        other => panic!("decoding {wire:02x?} gave {other:?} instead of a value"),
    };
    match de.poll_event_with(refs) {
        Ok(None) => {}
        other => panic!("decoding {wire:02x?} gave {other:?} after the value"),
    }
    assert_eq!(de.buffered(), 0, "decoding {wire:02x?} left bytes behind");
    assert!(
        !de.in_message(),
        "decoding {wire:02x?} left a partial message"
    );
    v
}

/// `value_deserializer`: byte 0 picks the vocab table (bit 7), whether a
/// top-level primitive is refused (bit 6) and the chunk size (bits 0-5).
pub fn check_value_deserializer(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let vocab = if first & 0x80 != 0 {
        VocabTable::V1
    } else {
        VocabTable::EMPTY
    };
    let mut de = Deserializer::new(vocab, small_limits());
    if first & 0x40 != 0 {
        de = de.require_top_level_open();
    }
    // reference sequences are kept (a broker would resolve them)
    let mut refs = WireRefs::default();
    'feed: for chunk in chunks(stream, chunk_size(first)) {
        de.feed(chunk);
        loop {
            match de.poll_event_with(&mut refs) {
                Ok(Some(Event::Value(v))) => check_reencode(vocab, &v, &refs),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        de.poll_event_with(&mut refs),
                        Err(e.clone()),
                        "decode errors must be sticky"
                    );
                    break 'feed;
                }
            }
        }
    }
}

/// A decoded value re-encodes, decodes to the same value (up to dict pair
/// order and anchor numbering, which a re-encoding legitimately changes),
/// and the re-encoding is a fixed point.
pub fn check_reencode(vocab: VocabTable, v1: &Value, refs: &WireRefs) {
    if has_wide_clid(v1, refs) {
        // Known, Python-compatible asymmetry: the receiver accepts a
        // my-reference clid sent as INT/NEG of any size (Python's
        // ReferenceUnslicer does too), but a clid outside [-2**31, 2**31)
        // is *sent* as LONGINT/LONGNEG (Python's sendToken does too),
        // which the receiver refuses ("reference ID must be an INT or
        // NEG"). See regressions/value_deserializer/myref-clid-2pow31.
        return;
    }
    // one table both ways: equal reference sequences share a stand-in
    let mut refs = refs.clone();
    let b1 = encode_with(vocab, v1, &mut refs);
    let v2 = decode_one_with(vocab, &b1, &mut refs);
    // Sorting dict keys may move the first occurrence of a shared value
    // (the anchor) to another place, as Python's re-sending does; values
    // with anchors are checked by the byte fixed point below.
    if !has_anchor(v1) {
        assert_eq!(
            canonical(v1),
            canonical(&v2),
            "decode(encode(v)) != v\n v = {v1:?}\n wire = {b1:02x?}\n got = {v2:?}"
        );
    }
    let b2 = encode_with(vocab, &v2, &mut refs);
    assert_eq!(b1, b2, "encode(decode(encode(v))) != encode(v) for {v1:?}");
    if !has_dict(v1) && !has_anchor(v1) {
        assert_eq!(
            v1, &v2,
            "anchor- and dict-free value changed in a round trip"
        );
    }
}

/// `value_roundtrip`: an arbitrary value; serialize, deserialize, serialize.
pub fn check_value_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(v1_table) = bool::arbitrary(&mut u) else {
        return;
    };
    let Ok(v) = Value::arbitrary(&mut u) else {
        return;
    };
    let vocab = if v1_table {
        VocabTable::V1
    } else {
        VocabTable::EMPTY
    };
    let b1 = encode(vocab, &v);
    let decoded = decode_one(vocab, &b1);
    let b2 = encode(vocab, &decoded);
    assert_eq!(b1, b2, "serialize(deserialize(b)) != b for {v:?}");
    if has_anchor(&v) {
        assert_eq!(
            canonical(&v),
            canonical(&decoded),
            "round trip changed {v:?} into {decoded:?}"
        );
    } else {
        assert_eq!(v, decoded, "round trip changed an anchor-free value");
    }
}

fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter().collect()
        }
        Value::Dict(p) => p.iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Copyable(c) => c.state.iter().map(|(_, v)| v).collect(),
        Value::Anchor(_, inner) => vec![&**inner],
        _ => Vec::new(),
    }
}

fn has_wide_clid(v: &Value, refs: &WireRefs) -> bool {
    const LIM: i64 = 1 << 31;
    matches!(refs.get(v), Some(WireRef::My(r)) if !(-LIM..LIM).contains(&r.clid))
        || children(v).into_iter().any(|c| has_wide_clid(c, refs))
}

fn has_anchor(v: &Value) -> bool {
    matches!(v, Value::Anchor(..) | Value::Alias(_)) || children(v).into_iter().any(has_anchor)
}

fn has_dict(v: &Value) -> bool {
    matches!(v, Value::Dict(_)) || children(v).into_iter().any(has_dict)
}

/// A description of a value that ignores anchor ids (for ordering dict
/// pairs independently of them).
fn fingerprint(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Float(f) => {
            let _ = write!(out, "F{:016x}", f.to_bits());
        }
        Value::Anchor(_, inner) => {
            out.push('&');
            fingerprint(inner, out);
        }
        Value::Alias(_) => out.push('*'),
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            out.push_str(v.type_name());
            out.push('[');
            for c in i {
                fingerprint(c, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Dict(p) => {
            out.push_str("dict{");
            for (k, v) in p {
                fingerprint(k, out);
                out.push(':');
                fingerprint(v, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Copyable(c) => {
            let _ = write!(out, "copyable({:?})[", c.type_name.as_str());
            for (n, v) in &c.state {
                let _ = write!(out, "{:?}=", n.as_str());
                fingerprint(v, out);
                out.push(',');
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

/// The value without anchors that no alias refers to, with every dict's
/// pairs in one fixed order and anchors renumbered 0, 1, ... in pre-order.
///
/// An anchor without alias is legitimate in a decoded value: when a set's
/// only `reference` to a container is merged away as a duplicate of that
/// container (Python's `set.add` keeps the first), the container keeps its
/// anchor (see `regressions/value_deserializer/orphan-anchor-after-set-dedup`).
/// Re-encoding it writes no `reference`, so the decoded copy has no anchor.
pub fn canonical(v: &Value) -> Value {
    let mut aliases = std::collections::HashSet::new();
    collect_aliases(v, &mut aliases);
    let v = strip_orphan_anchors(v, &aliases);
    let mut v = sort_dicts(&v);
    let mut map = std::collections::HashMap::new();
    number_anchors(&v, &mut map);
    renumber(&mut v, &map);
    v
}

fn collect_aliases(v: &Value, out: &mut std::collections::HashSet<u32>) {
    if let Value::Alias(id) = v {
        out.insert(*id);
    }
    for c in children(v) {
        collect_aliases(c, out);
    }
}

fn strip_orphan_anchors(v: &Value, aliases: &std::collections::HashSet<u32>) -> Value {
    let map = |i: &Vec<Value>| {
        i.iter()
            .map(|c| strip_orphan_anchors(c, aliases))
            .collect::<Vec<_>>()
    };
    match v {
        Value::Anchor(id, inner) if !aliases.contains(id) => strip_orphan_anchors(inner, aliases),
        Value::Anchor(id, inner) => {
            Value::Anchor(*id, Box::new(strip_orphan_anchors(inner, aliases)))
        }
        Value::List(i) => Value::List(map(i)),
        Value::Tuple(i) => Value::Tuple(map(i)),
        Value::Set(i) => Value::Set(map(i)),
        Value::FrozenSet(i) => Value::FrozenSet(map(i)),
        Value::Dict(p) => Value::Dict(
            p.iter()
                .map(|(k, v)| {
                    (
                        strip_orphan_anchors(k, aliases),
                        strip_orphan_anchors(v, aliases),
                    )
                })
                .collect(),
        ),
        Value::Copyable(c) => {
            let mut c = (**c).clone();
            for (_, v) in &mut c.state {
                *v = strip_orphan_anchors(v, aliases);
            }
            Value::Copyable(Box::new(c))
        }
        other => other.clone(),
    }
}

fn sort_dicts(v: &Value) -> Value {
    let map = |i: &Vec<Value>| i.iter().map(sort_dicts).collect::<Vec<_>>();
    match v {
        Value::List(i) => Value::List(map(i)),
        Value::Tuple(i) => Value::Tuple(map(i)),
        Value::Set(i) => Value::Set(map(i)),
        Value::FrozenSet(i) => Value::FrozenSet(map(i)),
        Value::Dict(p) => {
            let mut pairs: Vec<(String, (Value, Value))> = p
                .iter()
                .map(|(k, v)| {
                    let mut f = String::new();
                    fingerprint(k, &mut f);
                    (f, (sort_dicts(k), sort_dicts(v)))
                })
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Dict(pairs.into_iter().map(|(_, p)| p).collect())
        }
        Value::Copyable(c) => {
            let mut c = (**c).clone();
            for (_, v) in &mut c.state {
                *v = sort_dicts(v);
            }
            Value::Copyable(Box::new(c))
        }
        Value::Anchor(id, inner) => Value::Anchor(*id, Box::new(sort_dicts(inner))),
        other => other.clone(),
    }
}

fn number_anchors(v: &Value, map: &mut std::collections::HashMap<u32, u32>) {
    if let Value::Anchor(id, _) = v {
        let n = map.len() as u32;
        map.entry(*id).or_insert(n);
    }
    for c in children(v) {
        number_anchors(c, map);
    }
}

fn renumber(v: &mut Value, map: &std::collections::HashMap<u32, u32>) {
    match v {
        Value::Anchor(id, inner) => {
            *id = map[id];
            renumber(inner, map);
        }
        Value::Alias(id) => *id = map.get(id).copied().unwrap_or(u32::MAX),
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter_mut().for_each(|c| renumber(c, map))
        }
        Value::Dict(p) => p.iter_mut().for_each(|(k, v)| {
            renumber(k, map);
            renumber(v, map)
        }),
        Value::Copyable(c) => c.state.iter_mut().for_each(|(_, v)| renumber(v, map)),
        _ => {}
    }
}

/// Runs the check of the named fuzz target on one input.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "token_decoder" => check_token_decoder(data),
        "value_deserializer" => check_value_deserializer(data),
        "value_roundtrip" => check_value_roundtrip(data),
        "schema_decoder" => check_schema_decoder(data),
        "flogfile_reader" => check_flogfile_reader(data),
        "event_from_wire" => check_event_from_wire(data),
        "http_head" => check_http_head(data),
        // these targets keep their checks in fuzz_targets/*.rs; their
        // corpora are exercised by running the fuzzer itself
        "plaintext_parser" | "negotiation_blocks" | "certificate" | "broker" | "transcript" => {}
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The interface of the `schema_decoder` target: one method per constraint
/// kind, with short names the fuzzer finds quickly.
pub fn fuzz_interface() -> std::sync::Arc<InterfaceSchema> {
    use foolscap_core::schema::{Argument, Constraint as C, MethodSchema};
    let one = |name: &str, c: C| {
        MethodSchema::new(name)
            .with_argument(Argument::required("x", c.clone()))
            .with_argument(Argument::optional("y", C::int()))
            .returning(c)
    };
    let list = C::list_of(C::tuple_of([C::int32(), C::byte_string(Some(4))]), Some(3));
    std::sync::Arc::new(
        InterfaceSchema::new("RIFuzz")
            .with_method(one("a", C::byte_string(Some(8))))
            .with_method(one("b", C::unicode(Some(3))))
            .with_method(one("c", C::int_bytes(8)))
            .with_method(one("d", C::number()))
            .with_method(one("e", C::boolean()))
            .with_method(one("f", C::Nothing))
            .with_method(one("g", list))
            .with_method(one(
                "h",
                C::dict_of(C::bytes(), C::set_of(C::int(), Some(2)), Some(2)),
            ))
            .with_method(one(
                "i",
                C::choice_of([C::int(), C::list_of(C::text(), None), C::Nothing]),
            ))
            .with_method(one("j", C::Any))
            .with_method(one("k", C::reference_to("RIOther")))
            .with_method(MethodSchema::unconstrained("l")),
    )
}

/// Gives [`fuzz_interface`] to object 1 and, for answers, to every odd
/// reqID (method by reqID, cycling through the methods).
struct SchemaRefs(std::sync::Arc<InterfaceSchema>, WireRefs);

impl RefDecoder for SchemaRefs {
    fn decode_ref(&mut self, r: WireRef, offset: u64) -> Result<Value, DecodeError> {
        self.1.decode_ref(r, offset)
    }

    fn call_schema(&mut self, clid: i64) -> Option<CallTarget> {
        (clid == 1).then(|| CallTarget {
            schema: self.0.clone(),
            object: foolscap_core::id::ObjectId(1),
        })
    }

    fn answer_schema(&mut self, req_id: u64) -> Option<(std::sync::Arc<InterfaceSchema>, usize)> {
        let methods = self.0.methods();
        (req_id % 2 == 1).then(|| (self.0.clone(), (req_id / 2) as usize % methods.len()))
    }
}

/// Decodes a PB stream against [`fuzz_interface`] in chunks of `size`.
fn decode_schema_events(
    vocab: VocabTable,
    data: &[u8],
    size: usize,
) -> (Vec<PbEvent>, Option<DecodeError>) {
    let mut de = Deserializer::new(vocab, small_limits()).pb_messages();
    let mut refs = SchemaRefs(fuzz_interface(), WireRefs::default());
    let mut out = Vec::new();
    let limit = small_limits().max_message_bytes * 2 + 4096;
    for chunk in chunks(data, size) {
        de.feed(chunk);
        loop {
            match de.poll_pb_event_with(&mut refs) {
                Ok(Some(ev)) => out.push(ev),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        de.poll_pb_event_with(&mut refs),
                        Err(e.clone()),
                        "errors must be sticky"
                    );
                    return (out, Some(e));
                }
            }
            assert!(de.in_progress_bytes() <= limit.max(chunk.len() * 2));
        }
    }
    (out, None)
}

/// The `schema_decoder` target: byte 0 bit 7 vocab table 1, bits 0-5 a
/// chunk size; the rest a PB stream whose calls to clid 1 and answers to
/// odd reqIDs are checked against [`fuzz_interface`]. Checks: no panic;
/// chunked decoding gives the same events and error as decoding at once;
/// every delivered call passes the whole-argument check or fails it with
/// a Violation (never a panic), and its values re-encode.
pub fn check_schema_decoder(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let vocab = if first & 0x80 != 0 {
        VocabTable::V1
    } else {
        VocabTable::EMPTY
    };
    let (whole, whole_err) = decode_schema_events(vocab, stream, usize::MAX);
    let (chunked, chunked_err) = decode_schema_events(vocab, stream, chunk_size(first));
    assert_eq!(whole, chunked, "chunked decoding changed the events");
    let token_error = |e: &Option<DecodeError>| match e {
        Some(DecodeError::Token(t)) => Some(t.clone()),
        _ => None,
    };
    match (&whole_err, &chunked_err) {
        (Some(DecodeError::Token(_)), Some(DecodeError::Token(_))) => assert!(
            same_error(&token_error(&chunked_err), &token_error(&whole_err)),
            "chunked decoding changed the error: {chunked_err:?} vs {whole_err:?}"
        ),
        _ => assert_eq!(whole_err, chunked_err, "chunked decoding changed the error"),
    }
    let iface = fuzz_interface();
    for ev in &whole {
        if let PbEvent::Call(c) = ev {
            if c.clid == 1 {
                if let Some(m) = iface.method(c.method.as_str()) {
                    let no = |_| None;
                    let _ = check_call(&iface, m, &c.args, &c.kwargs, Direction::Inbound, &no);
                    let _ = check_call(&iface, m, &c.args, &c.kwargs, Direction::Outbound, &no);
                }
            }
        }
    }
}

/// Seed inputs for `schema_decoder` (control byte 0: all at once, table
/// 0; then PB calls and answers that meet or break [`fuzz_interface`]).
pub fn schema_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let ser = || Serializer::new(VocabTable::EMPTY);
    let call = |method: &str, args: Vec<Value>, kwargs: Vec<(&str, Value)>| {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[0]);
        let kwargs: Vec<_> = kwargs
            .into_iter()
            .map(|(k, v)| (foolscap_core::value::Text::from(k), v))
            .collect();
        ser()
            .write_call(&mut out, 2, 1, method.as_bytes(), &args, &kwargs)
            .expect("a seed call");
        out.to_vec()
    };
    let answer = |req: u64, v: Value| {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[0]);
        ser()
            .write_answer(&mut out, req, &v)
            .expect("a seed answer");
        out.to_vec()
    };
    let int = Value::int;
    vec![
        (
            "call-bytes-too-long",
            call("a", vec![Value::bytes(&[b'x'; 9])], vec![]),
        ),
        (
            "call-text-ok",
            call("b", vec![Value::str("abc")], vec![("y", int(1))]),
        ),
        (
            "call-int-too-big",
            call(
                "c",
                vec![Value::Int(foolscap_core::value::Int::from(u64::MAX))],
                vec![],
            ),
        ),
        (
            "call-bool-for-int",
            call("c", vec![Value::Bool(true)], vec![]),
        ),
        (
            "call-list-of-tuples",
            call(
                "g",
                vec![Value::List(vec![
                    Value::Tuple(vec![
                        int(1),
                        Value::bytes(b"ab")
                    ]);
                    4
                ])],
                vec![],
            ),
        ),
        (
            "call-dict-of-sets",
            call(
                "h",
                vec![Value::Dict(vec![(
                    Value::bytes(b"k"),
                    Value::Set(vec![int(1), int(2), int(3)]),
                )])],
                vec![],
            ),
        ),
        (
            "call-choice-list",
            call(
                "i",
                vec![Value::List(vec![Value::str("x"), int(2)])],
                vec![],
            ),
        ),
        (
            "call-unknown-keyword",
            call("a", vec![], vec![("z", int(1))]),
        ),
        (
            "call-too-many",
            call("e", vec![Value::Bool(true), int(1), int(2)], vec![]),
        ),
        ("call-missing", call("f", vec![], vec![])),
        (
            "answer-list-full",
            answer(
                13,
                Value::List(vec![Value::Tuple(vec![int(1), Value::bytes(b"ab")]); 4]),
            ),
        ),
        ("answer-text-for-bytes", answer(1, Value::str("text"))),
    ]
}

/// A seed for the `broker` target: look up `schema` (the object declaring
/// [`fuzz_interface`]), then call it with conforming and non-conforming
/// arguments (control byte 0: table 0, all at once).
pub fn broker_schema_seed() -> Vec<u8> {
    use foolscap_core::value::Text;
    let mut ser = Serializer::new(VocabTable::EMPTY);
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0]);
    let kw = |k: &str, v: Value| (Text::from(k), v);
    ser.write_call(
        &mut out,
        1,
        0,
        b"getReferenceByName",
        &[],
        &[kw("name", Value::bytes(b"schema"))],
    )
    .expect("seed");
    let calls: Vec<(&[u8], Vec<Value>)> = vec![
        (b"a", vec![Value::bytes(b"12345678")]),
        (b"a", vec![Value::bytes(b"123456789")]),
        (b"b", vec![Value::str("abcd")]),
        (
            b"g",
            vec![Value::List(vec![Value::Tuple(vec![
                Value::int(1),
                Value::bytes(b"ab"),
            ])])],
        ),
        (
            b"h",
            vec![Value::Dict(vec![(
                Value::bytes(b"k"),
                Value::Set(vec![Value::int(1)]),
            )])],
        ),
        (b"i", vec![Value::List(vec![Value::str("x")])]),
        (b"e", vec![Value::int(1)]),
        (b"zz", vec![]),
    ];
    for (i, (method, args)) in calls.into_iter().enumerate() {
        ser.write_call(&mut out, 2 + i as u64, 1, method, &args, &[])
            .expect("seed");
    }
    out.to_vec()
}

/// Byte 0: bit 7 = the rest is bzip2-compressed (read as a `.bz2` flogfile
/// is); the rest: flogfile bytes, read with small limits (4 KiB lines, depth
/// 32, 300-digit integers). Checks: no panic and no line buffer past the
/// limit; every record renders through the dumper in every mode (errors
/// allowed, never a panic); every record written back by the writer reads
/// back as the same record (same Python repr), and a re-written line is a
/// fixed point of write-then-read.
pub fn check_flogfile_reader(data: &[u8]) {
    use foolscap_logging::dump::{DumpOptions, Dumper};
    use foolscap_logging::json::{self, JsonLimits};
    use foolscap_logging::repr::repr_string;
    use foolscap_logging::timefmt::{TimeMode, Utc};
    use foolscap_logging::{FlogReader, FlogWriter, ReadLimits};
    use std::io::{BufRead, BufReader};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = ReadLimits {
        max_line_bytes: 4096,
        json: JsonLimits {
            max_depth: 32,
            max_int_digits: 300,
        },
    };
    let input: Box<dyn BufRead + '_> = if mode & 0x80 != 0 {
        Box::new(BufReader::new(bzip2::read::MultiBzDecoder::new(rest)))
    } else {
        Box::new(rest)
    };
    let Ok(reader) = FlogReader::new(input, limits) else {
        return;
    };
    let modes = [
        DumpOptions::default(),
        DumpOptions {
            verbose: true,
            rx_time: true,
            timestamps: TimeMode::LongLocal,
            ..DumpOptions::default()
        },
        DumpOptions {
            just_numbers: true,
            timestamps: TimeMode::Epoch,
            ..DumpOptions::default()
        },
        DumpOptions {
            timestamps: TimeMode::Utc,
            ..DumpOptions::default()
        },
    ];
    let mut dumpers: Vec<Dumper<'_>> = modes.iter().map(|m| Dumper::new(*m, &Utc)).collect();
    let mut records = Vec::new();
    for (n, record) in reader.enumerate() {
        let Ok(record) = record else { break };
        for d in dumpers.iter_mut() {
            let mut out = String::new();
            let _ = d.record(&record, &mut out);
        }
        records.push(record);
        if n > 64 {
            break;
        }
    }
    let mut w = FlogWriter::new(Vec::new()).expect("write to memory");
    for r in &records {
        w.write_record(r).expect("write to memory");
    }
    let bytes = w.finish().expect("write to memory");
    let big = ReadLimits {
        max_line_bytes: 1 << 20,
        ..limits
    };
    let back: Vec<_> = FlogReader::new(&bytes[..], big)
        .expect("our magic")
        .collect::<Result<_, _>>()
        .expect("our records read back");
    assert_eq!(back.len(), records.len());
    for (a, b) in records.iter().zip(&back) {
        assert_eq!(repr_string(a), repr_string(b));
        let mut once = String::new();
        json::write(b, &mut once);
        let again = json::parse(&once, big.json).expect("our JSON parses");
        let mut twice = String::new();
        json::write(&again, &mut twice);
        assert_eq!(once, twice);
    }
}

/// `event_from_wire` on any value (shared containers, dangling aliases,
/// deep nesting, odd keys, copyables included): never panics, refuses
/// what nests deeper than `MAX_EVENT_DEPTH`, and an accepted event is a
/// fixed point after one trip out and back (values without a wire form
/// of their own become their repr text on the way out, failures are
/// truncated to foolscap's limits; after that nothing changes).
pub fn check_event_from_wire(data: &[u8]) {
    use foolscap_app::logport::{event_from_wire, event_to_wire, EventError, MAX_EVENT_DEPTH};
    let mut u = Unstructured::new(data);
    let Ok(v) = Value::arbitrary(&mut u) else {
        return;
    };
    let shared = has_alias(&v);
    let e1 = match event_from_wire(&v) {
        Ok(e) => e,
        // aliases can lead deeper (a cycle) than the value's own nesting
        Err(EventError::TooDeep) => {
            assert!(
                shared || depth(&v) > MAX_EVENT_DEPTH,
                "refused as too deep: {v:?}"
            );
            return;
        }
        // only shared parts expand past the budget
        Err(EventError::TooLarge) => {
            assert!(shared, "refused as too large: {v:?}");
            return;
        }
        Err(_) => return,
    };
    let e2 = event_from_wire(&event_to_wire(&e1)).expect("our own event comes back");
    let e3 = event_from_wire(&event_to_wire(&e2)).expect("our own event comes back");
    // Debug: NaN floats compare equal by their text
    assert_eq!(format!("{e2:?}"), format!("{e3:?}"));
}

/// Whether `v` holds an alias (a shared part, possibly a cycle).
fn has_alias(v: &Value) -> bool {
    match v {
        Value::Alias(_) => true,
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter().any(has_alias)
        }
        Value::Dict(p) => p.iter().any(|(k, v)| has_alias(k) || has_alias(v)),
        Value::Anchor(_, inner) => has_alias(inner),
        Value::Copyable(c) => c.state.iter().any(|(_, v)| has_alias(v)),
        _ => false,
    }
}

/// Container nesting of `v` (aliases count as leaves).
fn depth(v: &Value) -> usize {
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            1 + i.iter().map(depth).max().unwrap_or(0)
        }
        Value::Dict(p) => 1 + p.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        Value::Anchor(_, inner) => depth(inner),
        _ => 0,
    }
}

// The web-viewer's request-head reader, included as the binary compiles
// it (the file uses only std). Not every item is used here.
#[allow(dead_code)]
#[path = "../../cli/src/flogtool/http.rs"]
mod http;

/// `flogtool web-viewer`'s request-head reader on arbitrary bytes, with
/// small limits: it never panics; an accepted head kept to the limits
/// (request line, header bytes, header count), a refused one says why.
pub fn check_http_head(data: &[u8]) {
    use std::io::BufReader;
    let lim = http::HttpLimits {
        max_request_line: 64,
        max_header_bytes: 256,
        max_headers: 4,
        ..http::HttpLimits::default()
    };
    // a small buffer, so that lines arrive in several reads
    let mut r = BufReader::with_capacity(7, data);
    match http::read_head(&mut r, &lim) {
        Ok(req) => {
            let line_end = data
                .iter()
                .position(|&b| b == b'\n')
                .expect("a whole request line");
            assert!(
                line_end <= lim.max_request_line + 2,
                "request line over the limit"
            );
            assert!(!req.method.is_empty() || data.starts_with(b" "));
            // what was read is bounded: every line by its own limit, and at
            // most `max_headers` header lines plus the empty one (a line's
            // trailing CRs are not counted in the header budget, so the
            // bound is per line)
            let consumed = data.len() - r.buffer().len() - r.get_ref().len();
            let bound =
                lim.max_request_line + 2 + (lim.max_headers + 1) * (lim.max_header_bytes + 2);
            assert!(consumed <= bound, "{consumed} bytes read for one head");
        }
        Err(http::HeadError::TooLarge(_) | http::HeadError::Bad(_) | http::HeadError::Gone) => {}
    }
}
