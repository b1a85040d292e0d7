//! Round trips and receive rules of the value (de)serializer.

use bytes::BytesMut;

use super::*;
use crate::banana::VocabTable;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn encode(v: &Value, vocab: VocabTable) -> Vec<u8> {
    let mut out = BytesMut::new();
    Serializer::new(vocab).serialize(v, &mut out).unwrap();
    out.to_vec()
}

fn decode_events(bytes: &[u8], vocab: VocabTable) -> Result<Vec<Event>, DecodeError> {
    let mut de = Deserializer::new(vocab, Limits::default());
    de.feed(bytes);
    let mut out = Vec::new();
    while let Some(ev) = de.poll_event()? {
        out.push(ev);
    }
    assert!(!de.in_message(), "stream ended mid-message");
    Ok(out)
}

fn decode_one(bytes: &[u8], vocab: VocabTable) -> Result<Value, DecodeError> {
    let evs = decode_events(bytes, vocab)?;
    assert_eq!(evs.len(), 1, "{evs:?}");
    match evs.into_iter().next().unwrap() {
        Event::Value(v) => Ok(v),
        other => panic!("not a value: {other:?}"),
    }
}

fn decode_bytewise(bytes: &[u8], vocab: VocabTable) -> Vec<Event> {
    let mut de = Deserializer::new(vocab, Limits::default());
    let mut out = Vec::new();
    for b in bytes {
        de.feed(std::slice::from_ref(b));
        while let Some(ev) = de.poll_event().unwrap() {
            out.push(ev);
        }
    }
    out
}

fn d(s: &str) -> Value {
    Value::Decimal(Decimal::parse(s).unwrap())
}

fn sample_values() -> Vec<Value> {
    vec![
        Value::None,
        Value::Bool(true),
        Value::Bool(false),
        Value::int(0),
        Value::int((1 << 31) - 1),
        Value::int(1 << 31),
        Value::int(-(1 << 31)),
        Value::int(-(1 << 31) - 1),
        Value::int(i64::MIN),
        Value::int(i64::MAX),
        Value::Int(Int::from(num_bigint::BigInt::from(1) << 100_000usize)),
        Value::Int(Int::from(-(num_bigint::BigInt::from(1) << 64usize))),
        Value::Float(-0.0),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(5e-324),
        Value::bytes(b""),
        Value::bytes(b"list"),
        Value::bytes(&(0..=255).collect::<Vec<u8>>()),
        Value::str(""),
        Value::str("list"),
        Value::str("h\u{e9}llo \u{1f600} \0"),
        d("1.25"),
        d("-Infinity"),
        Value::List(vec![]),
        Value::Tuple(vec![Value::int(1)]),
        Value::Set(vec![Value::int(5), Value::str("x")]),
        Value::FrozenSet(vec![Value::Tuple(vec![])]),
        Value::Dict(vec![
            (Value::str("a"), Value::List(vec![Value::None])),
            (Value::str("b"), Value::Dict(vec![])),
        ]),
        Value::Copyable(Box::new(Copyable {
            type_name: Text::from("kitchen-sink.Point"),
            state: vec![
                (Text::from("x"), Value::int(1)),
                (Text::from("y"), Value::int(2)),
            ],
        })),
    ]
}

fn wire_refs() -> Vec<WireRef> {
    vec![
        WireRef::My(MyReference {
            clid: -2,
            interface: Some(bytes::Bytes::from_static(b"")),
            furl: None,
        }),
        WireRef::My(MyReference {
            clid: 7,
            interface: Some(bytes::Bytes::from_static(b"RIFoo")),
            furl: Some(bytes::Bytes::from_static(b"pb://x@tcp:h:1/y")),
        }),
        WireRef::Your(3),
        WireRef::Their(TheirReference {
            gift_id: 1,
            furl: bytes::Bytes::from_static(b"pb://x@tcp:h:1/y"),
        }),
    ]
}

#[test]
fn reference_sequences_round_trip_through_ref_codecs() {
    for vocab in [VocabTable::EMPTY, VocabTable::V1] {
        let mut out_refs = WireRefs::default();
        let items: Vec<Value> = wire_refs().into_iter().map(|r| out_refs.value(r)).collect();
        let v = Value::List(items);
        let mut out = BytesMut::new();
        Serializer::new(vocab)
            .serialize_with(&v, &mut out, &mut out_refs)
            .unwrap();
        let mut de = Deserializer::new(vocab, Limits::default());
        de.feed(&out);
        let mut in_refs = WireRefs::default();
        let Some(Event::Value(back)) = de.poll_event_with(&mut in_refs).unwrap() else {
            panic!("one value")
        };
        assert_eq!(back, v);
        assert_eq!(in_refs.table, wire_refs());
        // without a RefDecoder the message is refused, the stream goes on
        let mut de = Deserializer::new(vocab, Limits::default());
        de.feed(&out);
        de.feed(&encode(&Value::int(5), vocab));
        match de.poll_event().unwrap() {
            Some(Event::Discarded(DecodeError::RefusedReference { fatal: false, .. })) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(de.poll_event().unwrap(), Some(Event::Value(Value::int(5))));
    }
}

#[test]
fn round_trip_both_tables_and_bytewise() {
    for vocab in [VocabTable::EMPTY, VocabTable::V1] {
        for v in sample_values() {
            let bytes = encode(&v, vocab);
            let back = decode_one(&bytes, vocab).unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(back, v, "{}", hex(&bytes));
            assert_eq!(
                decode_bytewise(&bytes, vocab),
                vec![Event::Value(v.clone())]
            );
            assert_eq!(encode(&back, vocab), bytes);
        }
    }
}

#[test]
fn bytes_from_the_reference() {
    // docs/protocol.md §5.2, open-IDs renumbered from 0
    let v1 = VocabTable::V1;
    assert_eq!(
        hex(&encode(&Value::None, v1)),
        "0088008700".to_owned() + "89"
    );
    assert_eq!(
        hex(&encode(&Value::Bool(true), v1)),
        "00880187018100".to_owned() + "89"
    );
    assert_eq!(
        hex(&encode(&Value::str("h\u{e9}llo"), v1)),
        "00880887068268c3a96c6c6f0089"
    );
    assert_eq!(
        hex(&encode(&d("1.25"), v1)),
        "0088078264656369".to_owned() + "6d616c0482312e32350089"
    );
    assert_eq!(
        hex(&encode(
            &Value::List(vec![Value::int(1), Value::int(2)]),
            v1
        )),
        "00880487018102810089"
    );
    assert_eq!(hex(&encode(&Value::bytes(b"list"), v1)), "0487");
    assert_eq!(
        hex(&encode(&Value::None, VocabTable::EMPTY)),
        "0088046e6f6e650089".replace("046e", "04826e")
    );
}

#[test]
fn shared_and_cyclic_from_02_types() {
    // [shared, shared] then a self-containing list, as in 02-types (ids 16..20)
    let stream = unhex("1088 0487 1188 0487 0a81 1481 1189 1288 0287 1181 1289 1089 1388 0487 1488 0287 1381 1489 1389");
    let mut de = Deserializer::new(VocabTable::V1, Limits::default());
    // skip ahead: pretend 16 OPENs were seen before by feeding 16 `none`s
    let mut pre = BytesMut::new();
    let mut ser = Serializer::new(VocabTable::V1);
    for _ in 0..16 {
        ser.serialize(&Value::None, &mut pre).unwrap();
    }
    de.feed(&pre);
    de.feed(&stream);
    let mut values = Vec::new();
    while let Some(Event::Value(v)) = de.poll_event().unwrap() {
        values.push(v);
    }
    assert_eq!(values.len(), 18);
    let shared = Value::List(vec![Value::int(10), Value::int(20)]);
    assert_eq!(
        values[16],
        Value::List(vec![Value::Anchor(1, Box::new(shared)), Value::Alias(1)])
    );
    assert_eq!(
        values[17],
        Value::Anchor(0, Box::new(Value::List(vec![Value::Alias(0)])))
    );
    // re-encoding with a serializer at the same position reproduces the bytes
    let mut out = BytesMut::new();
    ser.serialize(&values[16], &mut out).unwrap();
    ser.serialize(&values[17], &mut out).unwrap();
    assert_eq!(hex(&out), hex(&stream));
}

#[test]
fn dict_keys_are_sorted_like_python() {
    let v = Value::Dict(vec![
        (Value::str("b"), Value::int(1)),
        (Value::str("a"), Value::int(2)),
    ]);
    let sorted = Value::Dict(vec![
        (Value::str("a"), Value::int(2)),
        (Value::str("b"), Value::int(1)),
    ]);
    assert_eq!(encode(&v, VocabTable::V1), encode(&sorted, VocabTable::V1));
    // incomparable keys keep their order
    let mixed = Value::Dict(vec![
        (Value::str("b"), Value::int(1)),
        (Value::bytes(b"a"), Value::int(2)),
    ]);
    let back = decode_one(&encode(&mixed, VocabTable::V1), VocabTable::V1).unwrap();
    assert_eq!(back, mixed);
}

fn fatal(hexstr: &str) -> DecodeError {
    let err = decode_events(&unhex(hexstr), VocabTable::V1).unwrap_err();
    assert_eq!(err.scope(), ErrorScope::Connection, "{err}");
    err
}

fn discarded(hexstr: &str) -> DecodeError {
    let evs = decode_events(&unhex(hexstr), VocabTable::V1).unwrap();
    match &evs[..] {
        [Event::Discarded(e), ..] => e.clone(),
        other => panic!("expected a discard, got {other:?}"),
    }
}

#[test]
fn protocol_errors_are_fatal() {
    let mut pb = Deserializer::new(VocabTable::V1, Limits::default()).require_top_level_open();
    pb.feed(&[0x01, 0x81]);
    assert!(matches!(
        pb.poll_event(),
        Err(DecodeError::TopLevelNotOpen { .. })
    ));
    assert!(matches!(
        fatal("0088 0487 0189"),
        DecodeError::CloseMismatch {
            got: 1,
            expected: 0,
            ..
        }
    ));
    assert!(matches!(
        fatal("0088 6387"),
        DecodeError::UndefinedVocab { index: 99, .. }
    ));
    assert!(matches!(
        fatal("0088 0088"),
        DecodeError::OpenInIndex { .. }
    ));
    assert!(matches!(
        fatal("0088 0087 0181 0089"),
        DecodeError::UnexpectedToken { .. }
    ));
    assert!(matches!(
        fatal("0088 0187 0183 0089"),
        DecodeError::UnexpectedToken { .. }
    ));
    assert!(matches!(
        fatal("0088 0887 0182ff 0089"),
        DecodeError::InvalidUtf8 { .. }
    ));
    assert!(matches!(
        fatal("0088 0782646563696d616c 03827a7a7a 0089"),
        DecodeError::InvalidDecimal { .. }
    ));
    // dict with a duplicate key: 1 and True
    assert!(matches!(
        fatal("0088 0387 0181 0081 0188 0187 0181 0189 0081 0089"),
        DecodeError::DuplicateKey { .. }
    ));
    // dict with a list key
    assert!(matches!(
        fatal("0088 0387 0188 0487 0189 0081 0089"),
        DecodeError::Unhashable { .. }
    ));
    // set with a list element
    assert!(matches!(
        fatal("0088 0687 0188 0487 0189 0089"),
        DecodeError::Unhashable { .. }
    ));
    // reference to nothing / to a unicode
    assert!(matches!(
        fatal("0088 0487 0188 0287 0581 0189 0089"),
        DecodeError::DanglingReference { .. }
    ));
    assert!(matches!(
        fatal("0088 0487 0188 0887 0082 0189 0288 0287 0181 0289 0089"),
        DecodeError::DanglingReference { target: 1, .. }
    ));
    // a tuple that contains itself used as a dict key
    assert!(matches!(
        fatal("0088 0387 0188 0587 0288 0287 0181 0289 0189"),
        DecodeError::IncompleteKey { .. }
    ));
    // OPEN inside `none`
    assert!(matches!(
        fatal("0088 0087 0188"),
        DecodeError::UnexpectedToken { .. }
    ));
    // errors are sticky
    let mut de = Deserializer::new(VocabTable::V1, Limits::default());
    de.feed(&unhex("0089"));
    assert!(de.poll_event().is_err());
    de.feed(&unhex("0088008700 89"));
    assert!(de.poll_event().is_err());
}

#[test]
fn violations_cost_one_message() {
    assert!(matches!(
        discarded("0088 0882696e7374616e6365 0089"),
        DecodeError::UnknownOpenType { .. }
    ));
    assert!(matches!(
        discarded("0088 0487 0188 1387 0189 0089"),
        DecodeError::UnknownOpenType { .. }
    ));
    assert!(matches!(
        discarded("0088 0487 0181 008a 0089"),
        DecodeError::Aborted { .. }
    ));
    assert!(matches!(
        discarded("0088 0181 0089"),
        DecodeError::BadIndexToken { .. }
    ));
    // the stream continues afterwards, with OPEN numbering intact
    let evs = decode_events(
        &unhex("0088 1387 0188 0487 0189 0089  0288 0487 0388 0487 0389 0488 0287 0381 0489 0289"),
        VocabTable::V1,
    )
    .unwrap();
    assert!(matches!(
        evs[0],
        Event::Discarded(DecodeError::UnknownOpenType { .. })
    ));
    assert_eq!(
        evs[1],
        Event::Value(Value::List(vec![
            Value::Anchor(1, Box::new(Value::List(vec![]))),
            Value::Alias(1)
        ]))
    );
}

#[test]
fn limits_are_enforced() {
    let deep = {
        let mut v = Value::List(vec![]);
        for _ in 0..20 {
            v = Value::List(vec![v]);
        }
        v
    };
    let bytes = encode(&deep, VocabTable::V1);
    let limits = Limits {
        max_depth: 10,
        ..Limits::default()
    };
    let mut de = Deserializer::new(VocabTable::V1, limits.clone());
    de.feed(&bytes);
    de.feed(&encode(&Value::int(7), VocabTable::V1));
    de.feed(&encode(&Value::None, VocabTable::V1));
    assert!(matches!(
        de.poll_event(),
        Ok(Some(Event::Discarded(DecodeError::TooDeep {
            limit: 10,
            ..
        })))
    ));
    // the stream goes on after the discarded message
    assert_eq!(de.poll_event(), Ok(Some(Event::Value(Value::int(7)))));
    assert_eq!(de.poll_event(), Ok(Some(Event::Value(Value::None))));

    let many = Value::List((0..100).map(Value::int).collect());
    for limits in [
        Limits {
            max_container_items: 99,
            ..Limits::default()
        },
        Limits {
            max_message_bytes: 1000,
            ..Limits::default()
        },
    ] {
        let mut de = Deserializer::new(VocabTable::V1, limits);
        de.feed(&encode(&many, VocabTable::V1));
        assert!(matches!(de.poll_event(), Ok(Some(Event::Discarded(_)))));
    }
    // a refused OPEN is still counted: the discard ends at the right CLOSE
    let mut de = Deserializer::new(
        VocabTable::V1,
        Limits {
            max_container_items: 1,
            ..Limits::default()
        },
    );
    de.feed(&unhex(
        "0088 0487 0188 0487 0189 0288 0487 0289 0089  0388 0087 0389",
    ));
    assert!(matches!(
        de.poll_event(),
        Ok(Some(Event::Discarded(DecodeError::TooManyItems { .. })))
    ));
    assert_eq!(de.poll_event(), Ok(Some(Event::Value(Value::None))));
    let shared = Value::List(vec![
        Value::Anchor(0, Box::new(Value::List(vec![]))),
        Value::Alias(0),
        Value::Alias(0),
    ]);
    let mut de = Deserializer::new(
        VocabTable::V1,
        Limits {
            max_references: 1,
            ..Limits::default()
        },
    );
    de.feed(&encode(&shared, VocabTable::V1));
    assert!(matches!(
        de.poll_event(),
        Ok(Some(Event::Discarded(
            DecodeError::TooManyReferences { .. }
        )))
    ));
}

#[test]
fn python_quirks() {
    // an empty boolean / unicode decodes to None, as in Python
    assert_eq!(
        decode_one(&unhex("0088 0187 0089"), VocabTable::V1).unwrap(),
        Value::None
    );
    assert_eq!(
        decode_one(&unhex("0088 0887 0089"), VocabTable::V1).unwrap(),
        Value::None
    );
    // a dict's dangling key is dropped
    assert_eq!(
        decode_one(&unhex("0088 0387 0181 0281 0381 0089"), VocabTable::V1).unwrap(),
        Value::Dict(vec![(Value::int(1), Value::int(2))])
    );
    // equal set elements merge (1 and 1.0 and True)
    assert_eq!(
        decode_one(
            &unhex("0088 0687 0181 843ff0000000000000 0188 0187 0181 0189 0281 0089"),
            VocabTable::V1
        )
        .unwrap(),
        Value::Set(vec![Value::int(1), Value::int(2)])
    );
    // negative zero and an INT header beyond 64 bits
    assert_eq!(
        decode_one(&unhex("0088 0487 0083 0089"), VocabTable::V1).unwrap(),
        Value::List(vec![Value::int(0)])
    );
    // PING inside a sequence is reported and does not disturb it
    let evs = decode_events(&unhex("0088 0487 8e 0181 0089"), VocabTable::V1).unwrap();
    assert_eq!(
        evs,
        vec![
            Event::Ping(0),
            Event::Value(Value::List(vec![Value::int(1)]))
        ]
    );
}

#[test]
fn serializer_refuses_bad_anchors() {
    let mut out = BytesMut::new();
    let mut ser = Serializer::new(VocabTable::V1);
    assert_eq!(
        ser.serialize(&Value::Alias(3), &mut out),
        Err(EncodeError::UnknownAnchor(3))
    );
    assert!(out.is_empty());
    assert_eq!(ser.open_count(), 0);
    let twice = Value::List(vec![
        Value::Anchor(1, Box::new(Value::List(vec![]))),
        Value::Anchor(1, Box::new(Value::List(vec![]))),
    ]);
    assert_eq!(
        ser.serialize(&twice, &mut out),
        Err(EncodeError::DuplicateAnchor(1))
    );
    let bad = Value::Anchor(1, Box::new(Value::int(1)));
    assert!(matches!(
        ser.serialize(&bad, &mut out),
        Err(EncodeError::UnshareableAnchor(_))
    ));
}

#[test]
fn tuple_cycles_follow_python() {
    // a frozenset that contains itself can never be built: message refused
    let evs = decode_events(
        &unhex("0088 0487 0188 0787 0081 0288 0287 0181 0289 0189 0089"),
        VocabTable::V1,
    )
    .unwrap();
    assert!(matches!(
        evs[..],
        [Event::Discarded(DecodeError::UnresolvableCycle { .. })]
    ));
    // a tuple that reaches itself through a list is fine (Python completes it)
    let v = decode_one(
        &unhex("0088 0587 0188 0487 0288 0287 0081 0289 0189 0089"),
        VocabTable::V1,
    )
    .unwrap();
    assert_eq!(
        v,
        Value::Anchor(
            0,
            Box::new(Value::Tuple(vec![Value::List(vec![Value::Alias(0)])]))
        )
    );
    // ... but while it is open, an inner tuple waiting for it is no dict key
    assert!(matches!(
        fatal("0088 0587 0188 0387 0288 0587 0388 0287 0081 0389 0289 0181 0189 0089"),
        DecodeError::IncompleteKey { .. }
    ));
}

#[test]
fn sorting_a_dict_may_put_an_alias_before_its_anchor() {
    // {2: t, 1: t} with one shared tuple, received with keys in the order
    // 2, 1: sorted, key 1 comes first and carries the tuple, as Python
    // 24.9.0 re-sends it (found by fuzzing)
    let v = Value::Dict(vec![
        (
            Value::int(2),
            Value::Anchor(1, Box::new(Value::Tuple(vec![]))),
        ),
        (Value::int(1), Value::Alias(1)),
    ]);
    assert_eq!(
        hex(&encode(&v, VocabTable::V1)),
        "008803870181018805870189028102880287018102890089"
    );
    let back = decode_one(&encode(&v, VocabTable::V1), VocabTable::V1).unwrap();
    assert_eq!(
        back,
        Value::Dict(vec![
            (
                Value::int(1),
                Value::Anchor(1, Box::new(Value::Tuple(vec![])))
            ),
            (Value::int(2), Value::Alias(1)),
        ])
    );
}

/// What a message in progress holds ([`Deserializer::in_progress_bytes`],
/// which the Tub's inbound budget sums): nothing between messages; while
/// it lasts, its wire bytes plus 8 bytes per int a sequence received in a
/// row (held packed) or one `Value` per other item; nothing once
/// delivered. Prints the bytes per decoded small int (a `Value` is 40
/// bytes: `Bytes` and `Text` are 32, the tag 8; an int is 2 on the wire).
#[test]
fn a_message_in_progress_holds_its_wire_bytes_and_packed_ints() {
    use crate::banana::encode::{put_string, put_token_header};
    use crate::banana::TypeByte;
    const N: usize = 100_000;
    let mut de = Deserializer::new(VocabTable::EMPTY, Limits::default());
    assert_eq!(de.in_progress_bytes(), 0);
    let mut head = BytesMut::new();
    put_token_header(&mut head, 1, TypeByte::Open);
    put_string(&mut head, b"list");
    de.feed(&head);
    assert_eq!(de.poll_event(), Ok(None));
    let opened = de.in_progress_bytes();
    assert!(opened >= head.len(), "{opened}");
    // half a token waits undecoded
    let mut ints = BytesMut::new();
    for i in 0..N as u64 {
        let ty = if i % 2 == 0 {
            TypeByte::Int
        } else {
            TypeByte::Neg
        };
        put_token_header(&mut ints, i % 100, ty);
    }
    let wire = ints.len();
    de.feed(&ints[..1]);
    assert_eq!(de.poll_event(), Ok(None));
    assert_eq!(de.in_progress_bytes(), opened + 1);
    de.feed(&ints[1..]);
    assert_eq!(de.poll_event(), Ok(None));
    let held = de.in_progress_bytes() - opened;
    let value = std::mem::size_of::<Value>();
    assert!(
        (wire + 8 * N..=wire + 16 * N).contains(&held),
        "{held} for {N} ints in {wire} bytes"
    );
    eprintln!(
        "size_of: Value {value}, Int {}, Bytes {}, Text {}, Vec<Value> {}; \
         {N} small ints in a message in progress: {wire} wire bytes, {} bytes held \
         ({:.1} per int; {} as Values)",
        std::mem::size_of::<Int>(),
        std::mem::size_of::<bytes::Bytes>(),
        std::mem::size_of::<Text>(),
        std::mem::size_of::<Vec<Value>>(),
        held,
        held as f64 / N as f64,
        wire + N * value,
    );
    // another kind of item turns them into Values
    let mut more = BytesMut::new();
    put_string(&mut more, b"x");
    de.feed(&more);
    assert_eq!(de.poll_event(), Ok(None));
    assert_eq!(
        de.in_progress_bytes() - opened,
        wire + more.len() + (N + 1) * value
    );
    let mut close = BytesMut::new();
    put_token_header(&mut close, 1, TypeByte::Close);
    de.feed(&close);
    let Ok(Some(Event::Value(Value::List(v)))) = de.poll_event() else {
        panic!("a list")
    };
    assert_eq!(v.len(), N + 1);
    assert_eq!(v[..4], [0, -1, 2, -3].map(Value::int));
    assert_eq!(v[N - 1], Value::int(-99));
    assert_eq!(v[N], Value::bytes(b"x"));
    assert_eq!(de.in_progress_bytes(), 0);
}

#[test]
fn set_members_merge_under_python_equality_shared_or_not() {
    // (stream, what Python 24.9.0 decodes it to and re-sends, checked with
    // foolscap.storage's banana in the interop venv)
    let cases = [
        // frozenset([(), <reference to that ()>, ()]) (found by fuzzing):
        // Python: frozenset({()})
        (
            "88078701880587018988028701818901880587018989",
            "008807870188058701890089",
        ),
        // [frozenset([(1,), t=(1,)]), t]: Python keeps the first (1,) in
        // the set; t lives on in the list
        (
            "0088048701880787028805870181028903880587018103890189048802870381048900 89",
            "00880487018807870288058701810289018903880587018103890089",
        ),
        // the same with t = (1.0,): the set keeps (1,), the list (1.0,)
        (
            "008804870188078702880587018102890388058784 3ff0000000000000 03890189048802870381048900 89",
            "00880487018807870288058701810289018903880587843ff000000000000003890089",
        ),
        // frozenset([((),), (<reference to the inner ()>,)]): one element
        (
            "0088078701880587028805870289018903880587048802870281048903890089",
            "008807870188058702880587028901890089",
        ),
    ];
    for (input, python) in cases {
        let v = decode_one(&unhex(input), VocabTable::V1).unwrap();
        let again = encode(&v, VocabTable::V1);
        assert_eq!(hex(&again), python, "decoded {input} as {v:?}");
        // and the re-encoding is a fixed point
        let v2 = decode_one(&again, VocabTable::V1).unwrap();
        assert_eq!(hex(&encode(&v2, VocabTable::V1)), python);
    }
    let v = decode_one(&unhex(cases[0].0), VocabTable::V1).unwrap();
    let Value::FrozenSet(items) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(items.len(), 1, "{v:?}");
    let v = decode_one(&unhex(cases[2].0), VocabTable::V1).unwrap();
    assert_eq!(
        v,
        Value::List(vec![
            Value::FrozenSet(vec![Value::Tuple(vec![Value::int(1)])]),
            Value::Anchor(3, Box::new(Value::Tuple(vec![Value::Float(1.0)]))),
        ])
    );
}

#[test]
fn serializer_writes_a_set_as_python_holds_it() {
    // a shared tuple and an equal unshared one are one element, as the
    // receiver (and Python's set) would merge them
    let shared = Value::Anchor(1, Box::new(Value::Tuple(vec![])));
    let v = Value::FrozenSet(vec![shared.clone(), Value::Alias(1), Value::Tuple(vec![])]);
    assert_eq!(hex(&encode(&v, VocabTable::V1)), "008807870188058701890089");
    // an anchor dropped from the set is written in full where its alias is
    let v = Value::List(vec![
        Value::FrozenSet(vec![
            Value::Tuple(vec![Value::int(1)]),
            Value::Anchor(7, Box::new(Value::Tuple(vec![Value::Float(1.0)]))),
        ]),
        Value::Alias(7),
    ]);
    assert_eq!(
        hex(&encode(&v, VocabTable::V1)),
        "00880487018807870288058701810289018903880587843ff000000000000003890089"
    );
    // plain duplicates too
    let v = Value::Set(vec![Value::int(1), Value::Float(1.0), Value::int(2)]);
    let back = decode_one(&encode(&v, VocabTable::V1), VocabTable::V1).unwrap();
    assert_eq!(back, Value::Set(vec![Value::int(1), Value::int(2)]));
}

#[test]
fn a_reference_equal_to_another_dict_key_is_a_duplicate_key() {
    // Python 24.9.0 refuses both: BananaError "duplicate key ..." (fatal)
    for input in [
        // {t: 1, <reference to t>: 2} with t = (1,)
        "0088038701880587018101890181028802870181028902810089",
        // {(t,): 1, (<reference to t>,): 2}
        "0088038701880587028805870181028901890181038805870488028702810489038902810089",
    ] {
        assert!(
            matches!(
                decode_one(&unhex(input), VocabTable::V1),
                Err(DecodeError::DuplicateKey { .. })
            ),
            "{input}"
        );
    }
    // a reference that is not a key, and keys that differ, are fine
    let ok = Value::Dict(vec![
        (
            Value::Anchor(1, Box::new(Value::Tuple(vec![Value::int(1)]))),
            Value::int(1),
        ),
        (Value::Tuple(vec![Value::int(2)]), Value::Alias(1)),
    ]);
    let bytes = encode(&ok, VocabTable::V1);
    assert_eq!(decode_one(&bytes, VocabTable::V1).unwrap(), ok);
}

/// `[t0, t1, ..., frozenset([t_n, t_n-1])]` where t0 = () and each
/// t_k = (t_k-1,) shares the one before: comparing the last two chases
/// `n` references.
fn tuple_chain(n: u32) -> Value {
    let mut items = vec![Value::Anchor(0, Box::new(Value::Tuple(vec![])))];
    for k in 1..=n {
        items.push(Value::Anchor(
            k,
            Box::new(Value::Tuple(vec![Value::Alias(k - 1)])),
        ));
    }
    items.push(Value::FrozenSet(vec![Value::Alias(n), Value::Alias(n - 1)]));
    Value::List(items)
}

#[test]
fn long_reference_chains_in_set_members_do_not_exhaust_the_stack() {
    // encoding compares the members (the serializer writes a set as
    // Python holds it), and so does decoding; both stop chasing at
    // MAX_COMPARE_DEPTH and take the members for different
    let v = tuple_chain(200_000);
    let bytes = encode(&v, VocabTable::V1);
    let back = decode_one(&bytes, VocabTable::V1).unwrap();
    let Value::List(items) = &back else { panic!() };
    let Some(Value::FrozenSet(members)) = items.last() else {
        panic!()
    };
    assert_eq!(members.len(), 2);
    // short chains are compared in full: the two differ
    let v = tuple_chain(50);
    let back = decode_one(&encode(&v, VocabTable::V1), VocabTable::V1).unwrap();
    let Value::List(items) = &back else { panic!() };
    let Some(Value::FrozenSet(members)) = items.last() else {
        panic!()
    };
    assert_eq!(members.len(), 2);
}

#[test]
fn large_sets_merge_like_small_ones() {
    // 40 members (the sorted-by-hash path): 0..20, then 19.0 down to 0.0,
    // then a shared (1,) with an alias and an equal plain one
    let mut items: Vec<Value> = (0..20).map(Value::int).collect();
    items.extend((0..20).rev().map(|i| Value::Float(i as f64)));
    let shared = Value::Anchor(1, Box::new(Value::Tuple(vec![Value::int(1)])));
    let with_shared = |mut items: Vec<Value>| {
        items.push(shared.clone());
        items.push(Value::Alias(1));
        items.push(Value::Tuple(vec![Value::int(1)]));
        items
    };
    let mut want: Vec<Value> = (0..20).map(Value::int).collect();
    want.push(shared.clone());
    // the encoder writes only the first of equal members...
    let bytes = encode(&Value::Set(with_shared(items.clone())), VocabTable::V1);
    assert_eq!(bytes, encode(&Value::Set(want.clone()), VocabTable::V1));
    // ...and the decoder keeps only the first of those it receives
    let mut raw = BytesMut::new();
    let mut ser = Serializer::new(VocabTable::V1);
    let list = ser.open_sequence(&mut raw, b"list");
    let set = ser.open_sequence(&mut raw, b"set");
    for v in &items {
        ser.write_value(v, &mut raw, &mut Default::default(), &mut NoRefs)
            .unwrap();
    }
    let t = ser.open_sequence(&mut raw, b"tuple");
    crate::banana::encode::put_token_header(&mut raw, 1, crate::banana::TypeByte::Int);
    ser.close(&mut raw, t);
    let r = ser.open_sequence(&mut raw, b"reference");
    crate::banana::encode::put_token_header(&mut raw, t, crate::banana::TypeByte::Int);
    ser.close(&mut raw, r);
    let t2 = ser.open_sequence(&mut raw, b"tuple");
    crate::banana::encode::put_token_header(&mut raw, 1, crate::banana::TypeByte::Int);
    ser.close(&mut raw, t2);
    ser.close(&mut raw, set);
    ser.close(&mut raw, list);
    let back = decode_one(&raw, VocabTable::V1).unwrap();
    let Value::List(outer) = back else { panic!() };
    let Value::Set(got) = &outer[0] else { panic!() };
    assert_eq!(got.len(), 21, "{got:?}");
    assert_eq!(got[..20], want[..20]);
    assert!(matches!(&got[20], Value::Anchor(_, t) if **t == Value::Tuple(vec![Value::int(1)])));
}

#[test]
fn ints_of_one_hash_merge_by_value() {
    // multiples of 2**61 - 1 all have Python hash 0 (one run of the
    // sorted-by-hash path, told apart by value), with repeats, and
    // members of other types equal to some of them, before and after:
    // Decimal('5P') and 0.0 come first (the ints 5P and 0 are dropped),
    // False equals 0, Decimal('3P') equals the 3P before it
    let p = num_bigint::BigInt::from((1u64 << 61) - 1);
    let int = |k: u32| Value::Int(crate::value::Int::from(&p * k));
    let mut items = vec![d(&(&p * 5u32).to_string()), Value::Float(0.0)];
    items.extend((0..30).map(int));
    items.extend((0..30).step_by(2).map(int));
    items.push(Value::Bool(false));
    items.push(d(&(&p * 3u32).to_string()));
    items.push(Value::Float(0.5));
    let want: Vec<Value> = items[..2]
        .iter()
        .cloned()
        .chain((1..30).filter(|&k| k != 5).map(int))
        .chain([Value::Float(0.5)])
        .collect();
    assert_eq!(
        encode(&Value::Set(items.clone()), VocabTable::V1),
        encode(&Value::Set(want.clone()), VocabTable::V1)
    );
    let mut raw = BytesMut::new();
    let mut ser = Serializer::new(VocabTable::V1);
    let set = ser.open_sequence(&mut raw, b"set");
    for v in &items {
        ser.write_value(v, &mut raw, &mut Default::default(), &mut NoRefs)
            .unwrap();
    }
    ser.close(&mut raw, set);
    let back = decode_one(&raw, VocabTable::V1).unwrap();
    assert_eq!(back, Value::Set(want));
}

/// Fuzz finding: a frozenset referenced from inside itself through a dict
/// in a copyable (`frozenset([copyable('', none={0: <ref to the set>})])`).
/// Python builds it (the reference becomes a tuple of the set's items);
/// our values cannot hold that cycle, and the decoder used to deliver the
/// set with an alias pointing at nothing. The message is refused now,
/// and the stream goes on.
#[test]
fn a_frozenset_referenced_from_inside_itself_is_refused() {
    let stream = [
        0x88, 0x07, 0x87, 0x88, 0x12, 0x87, 0x82, 0x87, 0x88, 0x03, 0x87, 0x81, 0x88, 0x02, 0x87,
        0x81, 0x89, 0x89, 0x89, 0x89,
    ];
    let mut de = Deserializer::new(VocabTable::V1, Limits::default());
    de.feed(&stream);
    de.feed(&encode(&Value::int(5), VocabTable::V1));
    match de.poll_event().unwrap() {
        Some(Event::Discarded(DecodeError::UnresolvableCycle { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(de.poll_event().unwrap(), Some(Event::Value(Value::int(5))));
}
