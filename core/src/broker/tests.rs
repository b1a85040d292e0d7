//! Broker and PB-message tests with scripted peers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::banana::encode::{put_error, put_ping_pong, put_string, put_token_header};
use crate::banana::{TypeByte, VocabTable};
use crate::identity::TubId;
use crate::value::{DecodeError, Deserializer, PbEvent, Serializer, Text, Value};
use crate::value::{TheirReference, WireRef, WireRefs};

const FURL: &str =
    "pb://vfbzu4bxrxknny4zy66zjcdszk5wc4k5@tcp:127.0.0.1:39375/calc5wuq7sfhgpqbltonngv7lp6dmqf";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn pb_events(table: VocabTable, bytes: &[u8]) -> Result<Vec<PbEvent>, DecodeError> {
    let mut de = Deserializer::new(table, Limits::default()).pb_messages();
    de.feed(bytes);
    let mut out = Vec::new();
    while let Some(ev) = de.poll_pb_event()? {
        out.push(ev);
    }
    Ok(out)
}

fn t1() -> VocabTable {
    VocabTable::by_index(1).unwrap()
}
fn t0() -> VocabTable {
    VocabTable::by_index(0).unwrap()
}

fn kw(name: &str, v: Value) -> (Text, Value) {
    (Text::from(name), v)
}

// ---- PB message decoding and encoding ----

#[test]
fn decodes_the_transcript_call_and_answer() {
    // 01-add, vocab table 1: call reqID 2 → clid 1 add(1, 2); answer 3
    let call = hex("02880b87 0281 0181 0382616464 03880c87 0281 0181 0281 0389 0289");
    let evs = pb_events(t1(), &call).unwrap();
    assert_eq!(
        evs,
        vec![PbEvent::Call(IncomingCall {
            req_id: 2,
            clid: 1,
            method: Text::from("add"),
            args: vec![Value::int(1), Value::int(2)],
            kwargs: vec![],
        })]
    );
    let answer = hex("02880d87 0281 0381 0289");
    assert_eq!(
        pb_events(t1(), &answer).unwrap(),
        vec![PbEvent::Answer {
            req_id: 2,
            value: Value::int(3)
        }]
    );
    // answer None to reqID 3
    let none = hex("03880d87 0381 04880087 0489 0389");
    assert_eq!(
        pb_events(t1(), &none).unwrap(),
        vec![PbEvent::Answer {
            req_id: 3,
            value: Value::None
        }]
    );
}

#[test]
fn writes_the_transcript_bootstrap_bytes() {
    let mut ser = Serializer::new(t1());
    let mut out = BytesMut::new();
    ser.write_call(
        &mut out,
        1,
        0,
        b"getReferenceByName",
        &[],
        &[kw("name", Value::bytes(b"calc5wuq7sfhgpqbltonngv7lp6dmqf"))],
    )
    .unwrap();
    let want = hex(
        "0088 0b87 0181 0081 1282 6765745265666572656e636542794e616d65 0188 0c87 0081
         0482 6e616d65 1f82 63616c633577757137736668677071626c746f6e6e6776376c7036646d7166
         0189 0089",
    );
    assert_eq!(&out[..], &want[..]);
    // the answer: my-reference clid 1, iface '', FURL
    let mut ser = Serializer::new(t1());
    let mut out = BytesMut::new();
    let mut refs = WireRefs::default();
    let r = refs.value(my_ref(1, Some(FURL)));
    ser.write_answer_with(&mut out, 1, &r, &mut refs).unwrap();
    let mut want = hex("0088 0d87 0181 0188 0f87 0181 0082 5982");
    want.extend_from_slice(FURL.as_bytes());
    want.extend(hex("0189 0089"));
    assert_eq!(&out[..], &want[..]);
}

#[test]
fn kwargs_are_sent_sorted_and_shared_values_round_trip() {
    let shared = Value::Anchor(0, Box::new(Value::List(vec![Value::int(10)])));
    let mut ser = Serializer::new(t0());
    let mut out = BytesMut::new();
    ser.write_call(
        &mut out,
        5,
        -2,
        b"",
        &[shared.clone(), Value::Alias(0)],
        &[kw("zz", Value::int(1)), kw("aa", Value::Alias(0))],
    )
    .unwrap();
    let evs = pb_events(t0(), &out).unwrap();
    let [PbEvent::Call(call)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(call.clid, -2);
    assert_eq!(call.kwargs[0].0.as_str(), "aa");
    assert_eq!(call.kwargs[1].0.as_str(), "zz");
    // anchors are numbered from the call's OPEN: call 0, arguments 1
    assert!(matches!(call.args[0], Value::Anchor(2, _)));
    assert_eq!(call.args[1], Value::Alias(2));
    assert_eq!(call.kwargs[0].1, Value::Alias(2));
    // re-encoding the decoded call reproduces the bytes
    let mut again = BytesMut::new();
    Serializer::new(t0())
        .write_call(&mut again, 5, -2, b"", &call.args, &call.kwargs)
        .unwrap();
    assert_eq!(again, out);
}

#[test]
fn a_repeated_keyword_keeps_its_place_and_last_value() {
    let mut b = BytesMut::new();
    let mut ser = Serializer::new(t0());
    let c = ser.open_sequence(&mut b, b"call");
    put_token_header(&mut b, 1, TypeByte::Int);
    put_token_header(&mut b, 1, TypeByte::Int);
    put_string(&mut b, b"m");
    let a = ser.open_sequence(&mut b, b"arguments");
    put_token_header(&mut b, 0, TypeByte::Int);
    for (k, v) in [(b"x", 1), (b"y", 2), (b"x", 3)] {
        put_string(&mut b, k);
        put_token_header(&mut b, v, TypeByte::Int);
    }
    ser.close(&mut b, a);
    ser.close(&mut b, c);
    let evs = pb_events(t0(), &b).unwrap();
    let [PbEvent::Call(call)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(
        call.kwargs,
        vec![kw("x", Value::int(3)), kw("y", Value::int(2))]
    );
}

/// Builds a raw call prefix: OPEN 'call' then `body`, no CLOSEs.
fn raw(f: impl FnOnce(&mut Serializer, &mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::new();
    let mut ser = Serializer::new(t0());
    f(&mut ser, &mut b);
    b
}

fn fatal(bytes: &[u8]) -> DecodeError {
    match pb_events(t0(), bytes) {
        Err(e) => e,
        Ok(evs) => panic!("expected a fatal error, got {evs:?}"),
    }
}

#[test]
fn malformed_calls_are_fatal() {
    let int = |b: &mut BytesMut, v| put_token_header(b, v, TypeByte::Int);
    // reqID not INT
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        put_string(b, b"x");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("request ID"))
    );
    // clid a STRING
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        put_string(b, b"x");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("object ID"))
    );
    // method an INT
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        int(b, 1);
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("method name"))
    );
    // an OPEN where the method name belongs
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        s.open_sequence(b, b"list");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("method name"))
    );
    // a list instead of arguments
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        s.open_sequence(b, b"list");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("'arguments'"))
    );
    // a primitive instead of arguments
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        int(b, 1);
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("'arguments'"))
    );
    // posarg count not INT
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        s.open_sequence(b, b"arguments");
        put_string(b, b"x");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("posarg"))
    );
    // kwarg name not STRING
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        s.open_sequence(b, b"arguments");
        int(b, 0);
        int(b, 5);
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("kwarg"))
    );
    // arguments ended before the promised positional values
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        let a = s.open_sequence(b, b"arguments");
        int(b, 2);
        int(b, 5);
        s.close(b, a);
    });
    assert!(matches!(
        fatal(&b),
        DecodeError::Incomplete {
            sequence: "arguments",
            ..
        }
    ));
    // a keyword name without its value
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        let a = s.open_sequence(b, b"arguments");
        int(b, 0);
        put_string(b, b"k");
        s.close(b, a);
    });
    assert!(matches!(
        fatal(&b),
        DecodeError::Incomplete {
            sequence: "arguments",
            ..
        }
    ));
    // call without arguments
    let b = raw(|s, b| {
        let c = s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        s.close(b, c);
    });
    assert!(matches!(
        fatal(&b),
        DecodeError::Incomplete {
            sequence: "call",
            ..
        }
    ));
    // something after the arguments
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        int(b, 1);
        int(b, 1);
        put_string(b, b"m");
        let a = s.open_sequence(b, b"arguments");
        int(b, 0);
        s.close(b, a);
        int(b, 9);
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("too many"))
    );
}

#[test]
fn malformed_answers_and_errors_are_fatal() {
    let int = |b: &mut BytesMut, v| put_token_header(b, v, TypeByte::Int);
    let b = raw(|s, b| {
        s.open_sequence(b, b"answer");
        put_string(b, b"x");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("request ID"))
    );
    let b = raw(|s, b| {
        s.open_sequence(b, b"answer");
        int(b, 1);
        int(b, 1);
        int(b, 2);
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("stop sending"))
    );
    let b = raw(|s, b| {
        s.open_sequence(b, b"error");
        int(b, 1);
        int(b, 1);
        s.open_sequence(b, b"none");
    });
    assert!(
        matches!(fatal(&b), DecodeError::UnexpectedToken { rule, .. } if rule.contains("stop sending"))
    );
    let b = raw(|s, b| {
        let a = s.open_sequence(b, b"answer");
        int(b, 1);
        s.close(b, a);
    });
    assert!(matches!(
        fatal(&b),
        DecodeError::Incomplete {
            sequence: "answer",
            ..
        }
    ));
    let b = raw(|s, b| {
        let a = s.open_sequence(b, b"error");
        int(b, 1);
        s.close(b, a);
    });
    assert!(matches!(
        fatal(&b),
        DecodeError::Incomplete {
            sequence: "error",
            ..
        }
    ));
    // top-level primitive
    let b = raw(|_, b| int(b, 1));
    assert!(matches!(fatal(&b), DecodeError::TopLevelNotOpen { .. }));
}

#[test]
fn other_top_level_sequences_are_discarded_silently() {
    let mut b = raw(|s, b| {
        let l = s.open_sequence(b, b"list");
        put_token_header(b, 1, TypeByte::Int);
        s.close(b, l);
        let v = s.open_sequence(b, b"set-vocab");
        s.close(b, v);
    });
    let mut ser = Serializer::new(t0());
    // keep the OPEN numbers consistent: the peer already used two
    let _ = ser.open(&mut BytesMut::new());
    let _ = ser.open(&mut BytesMut::new());
    ser.write_answer(&mut b, 4, &Value::int(7)).unwrap();
    let evs = pb_events(t0(), &b).unwrap();
    assert!(matches!(
        evs[0],
        PbEvent::Discarded(DecodeError::UnknownOpenType { .. })
    ));
    assert!(matches!(
        evs[1],
        PbEvent::Discarded(DecodeError::UnknownOpenType { .. })
    ));
    assert_eq!(
        evs[2],
        PbEvent::Answer {
            req_id: 4,
            value: Value::int(7)
        }
    );
    // and a PB sequence is not a value
    let b = raw(|s, b| {
        s.open_sequence(b, b"answer");
        put_token_header(b, 1, TypeByte::Int);
        let c = s.open_sequence(b, b"call");
        s.close(b, c);
        s.close(b, 0);
    });
    assert!(matches!(
        &pb_events(t0(), &b).unwrap()[..],
        [PbEvent::AnswerViolation {
            req_id: 1,
            error: DecodeError::UnknownOpenType { .. }
        }]
    ));
}

#[test]
fn violations_inside_a_call_name_its_req_id_but_abort_does_not() {
    let call_with = |f: &dyn Fn(&mut Serializer, &mut BytesMut)| {
        raw(|s, b| {
            let c = s.open_sequence(b, b"call");
            put_token_header(b, 7, TypeByte::Int);
            put_token_header(b, 1, TypeByte::Int);
            put_string(b, b"m");
            let a = s.open_sequence(b, b"arguments");
            put_token_header(b, 1, TypeByte::Int);
            f(s, b);
            s.close(b, a);
            s.close(b, c);
        })
    };
    let b = call_with(&|s, b| {
        let i = s.open_sequence(b, b"instance");
        put_token_header(b, 1, TypeByte::Int);
        s.close(b, i);
    });
    assert!(matches!(
        &pb_events(t0(), &b).unwrap()[..],
        [PbEvent::CallViolation {
            req_id: 7,
            error: DecodeError::UnknownOpenType { .. }
        }]
    ));
    let b = call_with(&|s, b| {
        let l = s.open_sequence(b, b"list");
        put_token_header(b, l, TypeByte::Abort);
        s.close(b, l);
    });
    assert!(matches!(
        &pb_events(t0(), &b).unwrap()[..],
        [PbEvent::Discarded(DecodeError::Aborted { .. })]
    ));
}

// ---- the broker ----

/// A scripted peer: its own serializer and a PB deserializer for what the
/// broker sends.
struct Peer {
    ser: Serializer,
    de: Deserializer,
    now: Instant,
    /// Reference sequences both ways, by stand-in value.
    refs: WireRefs,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            ser: Serializer::new(t0()),
            de: Deserializer::new(t0(), Limits::default()).pb_messages(),
            now: Instant::now(),
            refs: WireRefs::default(),
        }
    }

    fn send(&mut self, b: &mut TestBroker, f: impl FnOnce(&mut Serializer, &mut BytesMut)) {
        let mut out = BytesMut::new();
        f(&mut self.ser, &mut out);
        b.handle_plaintext(self.now, &out);
    }

    fn call(
        &mut self,
        b: &mut TestBroker,
        req: u64,
        clid: i64,
        m: &str,
        args: &[Value],
        kw: &[(Text, Value)],
    ) {
        let mut out = BytesMut::new();
        self.ser
            .write_call_with(&mut out, req, clid, m.as_bytes(), args, kw, &mut self.refs)
            .unwrap();
        b.handle_plaintext(self.now, &out);
    }

    fn answer(&mut self, b: &mut TestBroker, req: u64, v: &Value) {
        let mut out = BytesMut::new();
        self.ser
            .write_answer_with(&mut out, req, v, &mut self.refs)
            .unwrap();
        b.handle_plaintext(self.now, &out);
    }

    /// The stand-in value that sends `r` (the same one for equal `r`s).
    fn v(&mut self, r: WireRef) -> Value {
        self.refs.value(r)
    }

    /// The reference sequence a value read from the broker stands for.
    fn wire(&self, v: &Value) -> WireRef {
        self.refs
            .get(v)
            .cloned()
            .unwrap_or_else(|| panic!("not a reference: {v:?}"))
    }

    fn error(&mut self, b: &mut TestBroker, req: u64, v: &Value) {
        self.send(b, |s, o| s.write_error(o, req, v).unwrap());
    }

    /// What the broker sent, decoded.
    fn read(&mut self, b: &mut TestBroker) -> Vec<PbEvent> {
        let mut buf = Vec::new();
        b.poll_transmit(&mut buf);
        self.de.feed(&buf);
        let mut out = Vec::new();
        while let Some(ev) = self.de.poll_pb_event_with(&mut self.refs).unwrap() {
            out.push(ev);
        }
        out
    }
}

fn events(b: &mut TestBroker) -> Vec<BrokerEvent> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn registry() -> HashMap<Vec<u8>, Export> {
    let mut m = HashMap::new();
    m.insert(
        b"calc".to_vec(),
        Export {
            object: ObjectId(42),
            interface: Bytes::new(),
            furl: Some(Bytes::from_static(FURL.as_bytes())),
        },
    );
    m
}

/// A broker and the objects it serves, passed to every call that needs
/// them (as the Tub passes its object table).
struct TestBroker {
    b: Broker,
    objects: HashMap<Vec<u8>, Export>,
}

impl std::ops::Deref for TestBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.b
    }
}

impl std::ops::DerefMut for TestBroker {
    fn deref_mut(&mut self) -> &mut Broker {
        &mut self.b
    }
}

impl TestBroker {
    fn new(vocab: VocabTable, config: BrokerConfig, peer: Option<TubId>, now: Instant) -> Self {
        TestBroker {
            b: Broker::new(vocab, config, ConnectionId(0), peer, now),
            objects: registry(),
        }
    }

    fn handle_plaintext(&mut self, now: Instant, data: &[u8]) {
        self.b.handle_plaintext(now, data, &self.objects)
    }

    fn call(
        &mut self,
        clid: Clid,
        m: &str,
        args: &[Value],
        kw: &[(Text, Value)],
    ) -> Result<ReqId, BrokerError> {
        self.b.call(clid, m, args, kw, &self.objects)
    }

    fn call_only(
        &mut self,
        clid: Clid,
        m: &str,
        args: &[Value],
        kw: &[(Text, Value)],
    ) -> Result<(), BrokerError> {
        self.b.call_only(clid, m, args, kw, &self.objects)
    }

    fn answer(&mut self, req: ReqId, v: &Value) -> Result<(), BrokerError> {
        self.b.answer(req, v, &self.objects)
    }
}

fn broker(now: Instant) -> TestBroker {
    TestBroker::new(t0(), BrokerConfig::default(), None, now)
}

fn my_ref(clid: i64, furl: Option<&str>) -> WireRef {
    WireRef::My(MyReference {
        clid,
        interface: Some(Bytes::new()),
        furl: furl.map(|f| Bytes::copy_from_slice(f.as_bytes())),
    })
}

/// A `my-reference` after the first: the clid alone.
fn bare_ref(clid: i64) -> WireRef {
    WireRef::My(MyReference {
        clid,
        interface: None,
        furl: None,
    })
}

fn remote_failure(evs: &[PbEvent]) -> (u64, Failure) {
    match evs {
        [PbEvent::Error { req_id, failure }] => (*req_id, Failure::from_value(failure).unwrap()),
        other => panic!("expected one error, got {other:?}"),
    }
}

/// A client broker holding clid 1 from the peer.
fn client_with_ref() -> (TestBroker, Peer) {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    let req = b.get_reference_by_name(b"calc").unwrap();
    assert_eq!(req, 1);
    let got = peer.read(&mut b);
    let [PbEvent::Call(c)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (c.req_id, c.clid, c.method.as_str()),
        (1, 0, "getReferenceByName")
    );
    assert_eq!(c.kwargs, vec![kw("name", Value::bytes(b"calc"))]);
    let mine = peer.v(my_ref(1, None));
    peer.answer(&mut b, 1, &mine);
    let evs = events(&mut b);
    let [BrokerEvent::Answer {
        req_id: 1,
        value: Value::Remote(r),
    }] = &evs[..]
    else {
        panic!("{evs:?}")
    };
    // the handle names the peer's clid on this connection
    assert_eq!((r.connection(), r.clid()), (ConnectionId(0), 1));
    (b, peer)
}

#[test]
fn client_calls_get_answers_in_any_order() {
    let (mut b, mut peer) = client_with_ref();
    let r2 = b
        .call(1, "add", &[Value::int(1), Value::int(2)], &[])
        .unwrap();
    let r3 = b
        .call(1, "add", &[Value::int(3), Value::int(4)], &[])
        .unwrap();
    assert_eq!((r2, r3), (2, 3));
    assert_eq!(b.outstanding_calls(), 2);
    let sent = peer.read(&mut b);
    assert_eq!(sent.len(), 2);
    peer.answer(&mut b, 3, &Value::int(7));
    peer.answer(&mut b, 2, &Value::int(3));
    peer.answer(&mut b, 2, &Value::int(99)); // not waiting: ignored
    assert_eq!(
        events(&mut b),
        vec![
            BrokerEvent::Answer {
                req_id: 3,
                value: Value::int(7)
            },
            BrokerEvent::Answer {
                req_id: 2,
                value: Value::int(3)
            },
        ]
    );
    // callRemoteOnly: reqID 0, nothing outstanding
    b.call_only(1, "add", &[Value::int(1)], &[]).unwrap();
    let sent = peer.read(&mut b);
    assert!(matches!(&sent[..], [PbEvent::Call(c)] if c.req_id == 0));
    assert_eq!(b.outstanding_calls(), 0);
    // calls to unknown clids and positional args to functions are refused
    assert_eq!(b.call(5, "x", &[], &[]), Err(BrokerError::UnknownClid(5)));
}

#[test]
fn remote_errors_become_typed_failures() {
    let (mut b, mut peer) = client_with_ref();
    let r = b.call(1, "fail", &[], &[]).unwrap();
    let f = Failure::new("builtins.ValueError", "boom");
    peer.error(&mut b, r, &f.to_value());
    let evs = events(&mut b);
    let [BrokerEvent::Failed {
        req_id,
        error: CallError::Remote(got),
    }] = &evs[..]
    else {
        panic!("{evs:?}")
    };
    assert_eq!(*req_id, r);
    assert_eq!(got, &f);
    assert!(got.check("builtins.Exception"));
    // a unicode attribute is a Violation: the request fails, the connection stays
    let r = b.call(1, "fail", &[], &[]).unwrap();
    let bad = Value::Copyable(Box::new(crate::value::Copyable {
        type_name: Text::from(FAILURE_TYPE),
        state: vec![kw("type", Value::str("builtins.ValueError"))],
    }));
    peer.error(&mut b, r, &bad);
    assert!(matches!(
        &events(&mut b)[..],
        [BrokerEvent::Failed {
            error: CallError::Violation(_),
            ..
        }]
    ));
    assert!(!b.is_closed());
    // a missing attribute is fatal, as in Python
    let r = b.call(1, "fail", &[], &[]).unwrap();
    let missing = Value::Copyable(Box::new(crate::value::Copyable {
        type_name: Text::from(FAILURE_TYPE),
        state: vec![kw("type", Value::bytes(b"builtins.ValueError"))],
    }));
    peer.error(&mut b, r, &missing);
    let evs = events(&mut b);
    assert!(matches!(
        &evs[..],
        [
            BrokerEvent::Failed {
                error: CallError::ConnectionLost(_),
                ..
            },
            BrokerEvent::Closed(CloseReason::Protocol(ProtocolError::Failure(
                FailureError::Missing(_)
            )))
        ]
    ));
    let mut buf = Vec::new();
    b.poll_transmit(&mut buf);
    assert_eq!(
        buf.last()
            .map(|_| buf.iter().position(|&x| x == 0x8d).is_some()),
        Some(true)
    );
}

#[test]
fn a_violating_answer_fails_only_its_request() {
    let (mut b, mut peer) = client_with_ref();
    let r = b.call(1, "get", &[], &[]).unwrap();
    peer.send(&mut b, |s, o| {
        let a = s.open_sequence(o, b"answer");
        put_token_header(o, r, TypeByte::Int);
        let i = s.open_sequence(o, b"instance");
        s.close(o, i);
        s.close(o, a);
    });
    assert!(matches!(
        &events(&mut b)[..],
        [BrokerEvent::Failed {
            error: CallError::Violation(_),
            ..
        }]
    ));
    assert!(!b.is_closed());
}

#[test]
fn release_sends_decref_with_the_received_count() {
    let (mut b, mut peer) = client_with_ref();
    // received a second time inside an answer
    let r = b.call(1, "me", &[], &[]).unwrap();
    let again = peer.v(bare_ref(1));
    peer.answer(&mut b, r, &Value::List(vec![again]));
    events(&mut b);
    peer.read(&mut b);
    let d = b.release(1).unwrap().unwrap();
    let sent = peer.read(&mut b);
    let [PbEvent::Call(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!((c.req_id, c.clid, c.method.as_str()), (d, 0, "decref"));
    assert_eq!(
        c.kwargs,
        vec![kw("clid", Value::int(1)), kw("count", Value::int(2))]
    );
    assert_eq!(b.release(1).unwrap(), None); // nothing held meanwhile
    assert_eq!(b.call(1, "add", &[], &[]), Err(BrokerError::UnknownClid(1)));
    peer.answer(&mut b, d, &Value::None);
    assert_eq!(events(&mut b), vec![]); // decref answers are internal
    assert_eq!(b.call(1, "add", &[], &[]), Err(BrokerError::UnknownClid(1)));
}

#[test]
fn serves_get_reference_by_name_and_counts_exports() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    let name = [kw("name", Value::bytes(b"calc"))];
    peer.call(&mut b, 1, 0, "getReferenceByName", &[], &name);
    assert_eq!(
        peer.read(&mut b),
        vec![PbEvent::Answer {
            req_id: 1,
            value: peer.v(my_ref(1, Some(FURL)))
        }]
    );
    // later sends carry only the clid
    peer.call(&mut b, 2, 0, "getReferenceByName", &[], &name);
    let later = peer.v(bare_ref(1));
    assert_eq!(
        peer.read(&mut b),
        vec![PbEvent::Answer {
            req_id: 2,
            value: later
        }]
    );
    // unknown name: KeyError with a two-character hint
    peer.call(
        &mut b,
        3,
        0,
        "getReferenceByName",
        &[],
        &[kw("name", Value::bytes(b"nope"))],
    );
    let (req, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(req, 3);
    assert_eq!(f.type_name, "builtins.KeyError");
    assert_eq!(
        f.value,
        "\"unable to find reference for name starting with 'no'\""
    );
    // a unicode name is a Violation
    peer.call(
        &mut b,
        4,
        0,
        "getReferenceByName",
        &[],
        &[kw("name", Value::str("calc"))],
    );
    let (_, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    // an unknown broker method
    peer.call(&mut b, 5, 0, "frob", &[], &[]);
    let (_, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(f.value, "'Broker' object has no attribute 'remote_frob'");
    // decref more than sent: AssertionError; then the right count releases
    peer.call(
        &mut b,
        6,
        0,
        "decref",
        &[],
        &[kw("clid", Value::int(1)), kw("count", Value::int(3))],
    );
    let (_, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(f.type_name, "builtins.AssertionError");
    peer.call(
        &mut b,
        7,
        0,
        "decref",
        &[],
        &[kw("clid", Value::int(1)), kw("count", Value::int(1))],
    );
    assert_eq!(
        peer.read(&mut b),
        vec![PbEvent::Answer {
            req_id: 7,
            value: Value::None
        }]
    );
    assert_eq!(events(&mut b), vec![]);
    peer.call(
        &mut b,
        8,
        0,
        "decref",
        &[],
        &[kw("clid", Value::int(1)), kw("count", Value::int(1))],
    );
    assert_eq!(
        peer.read(&mut b),
        vec![PbEvent::Answer {
            req_id: 8,
            value: Value::None
        }]
    );
    assert_eq!(
        events(&mut b),
        vec![BrokerEvent::Released {
            clid: 1,
            object: ObjectId(42)
        }]
    );
    // unknown clid: ignored, answered None
    peer.call(
        &mut b,
        9,
        0,
        "decref",
        &[],
        &[kw("clid", Value::int(1)), kw("count", Value::int(1))],
    );
    assert_eq!(
        peer.read(&mut b),
        vec![PbEvent::Answer {
            req_id: 9,
            value: Value::None
        }]
    );
    // exported again: a new clid in first-time form
    peer.call(&mut b, 10, 0, "getReferenceByName", &[], &name);
    assert_eq!(
        peer.read(&mut b),
        vec![PbEvent::Answer {
            req_id: 10,
            value: peer.v(my_ref(2, Some(FURL)))
        }]
    );
}

#[test]
fn incoming_calls_are_answered_later_in_any_order() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    peer.call(
        &mut b,
        1,
        0,
        "getReferenceByName",
        &[],
        &[kw("name", Value::bytes(b"calc"))],
    );
    peer.read(&mut b);
    peer.call(&mut b, 2, 1, "echo", &[Value::int(5)], &[]);
    peer.call(&mut b, 3, 1, "boom", &[], &[kw("k", Value::None)]);
    peer.call(&mut b, 0, 1, "note", &[], &[]);
    let evs = events(&mut b);
    assert_eq!(evs.len(), 3);
    let BrokerEvent::Call(c) = &evs[0] else {
        panic!()
    };
    assert_eq!(
        (c.req_id, c.clid, c.object, c.method.as_str()),
        (2, 1, ObjectId(42), "echo")
    );
    assert!(matches!(&evs[2], BrokerEvent::Call(c) if c.req_id == 0));
    let f = Failure::new("builtins.ValueError", "no");
    b.fail(3, &f).unwrap();
    b.answer(2, &Value::int(5)).unwrap();
    b.answer(0, &Value::None).unwrap(); // reqID 0: nothing sent
    assert_eq!(
        b.answer(2, &Value::None),
        Err(BrokerError::UnknownRequest(2))
    );
    let sent = peer.read(&mut b);
    assert_eq!(sent.len(), 2);
    assert!(matches!(&sent[0], PbEvent::Error { req_id: 3, .. }));
    assert_eq!(
        sent[1],
        PbEvent::Answer {
            req_id: 2,
            value: Value::int(5)
        }
    );
    // unknown clid: Violation error, connection stays
    peer.call(&mut b, 4, 77, "add", &[], &[]);
    let (_, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    assert_eq!(
        f.value,
        "Violation (<RootUnslicer>.<methodcall reqID=4>): ('unknown CLID 77',)"
    );
    // a violation inside the call: error answer
    peer.send(&mut b, |s, o| {
        let c = s.open_sequence(o, b"call");
        put_token_header(o, 5, TypeByte::Int);
        put_token_header(o, 1, TypeByte::Int);
        put_string(o, b"m");
        let a = s.open_sequence(o, b"arguments");
        put_token_header(o, 1, TypeByte::Int);
        let i = s.open_sequence(o, b"instance");
        s.close(o, i);
        s.close(o, a);
        s.close(o, c);
    });
    let (req, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(req, 5);
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    assert!(!b.is_closed());
    // a your-reference to something we never exported
    let unknown = peer.v(WireRef::Your(9));
    peer.call(&mut b, 6, 1, "m", &[unknown], &[]);
    let (_, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
}

#[test]
fn a_duplicate_req_id_is_fatal() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    peer.call(
        &mut b,
        1,
        0,
        "getReferenceByName",
        &[],
        &[kw("name", Value::bytes(b"calc"))],
    );
    peer.read(&mut b);
    peer.call(&mut b, 2, 1, "slow", &[], &[]);
    peer.call(&mut b, 2, 1, "slow", &[], &[]);
    let evs = events(&mut b);
    assert!(matches!(
        evs.last(),
        Some(BrokerEvent::Closed(CloseReason::Protocol(
            ProtocolError::DuplicateReqId(2)
        )))
    ));
    let mut buf = Vec::new();
    b.poll_transmit(&mut buf);
    assert!(buf
        .windows(11)
        .any(|w| w == b"BananaError" || w == b"exception w"));
    assert_eq!(b.answer(2, &Value::None), Err(BrokerError::Closed));
}

#[test]
fn a_malformed_stream_sends_error_and_closes() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    let r = b.get_reference_by_name(b"x").unwrap();
    peer.read(&mut b);
    let mut out = BytesMut::new();
    put_token_header(&mut out, 1, TypeByte::Int);
    b.handle_plaintext(peer.now, &out);
    let evs = events(&mut b);
    assert_eq!(evs.len(), 2);
    assert!(
        matches!(&evs[0], BrokerEvent::Failed { req_id, error: CallError::ConnectionLost(_) } if *req_id == r)
    );
    assert!(matches!(
        &evs[1],
        BrokerEvent::Closed(CloseReason::Protocol(ProtocolError::Decode(
            DecodeError::TopLevelNotOpen { .. }
        )))
    ));
    let mut buf = Vec::new();
    b.poll_transmit(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.contains("BananaError(in <RootUnslicer>): ('top-level must be OPEN"),
        "{text}"
    );
    assert_eq!(b.call(0, "x", &[], &[]), Err(BrokerError::Closed));
}

#[test]
fn ping_pong_and_peer_error() {
    let peer = Peer::new();
    let mut b = broker(peer.now);
    let mut out = BytesMut::new();
    put_ping_pong(&mut out, 5, TypeByte::Ping);
    b.handle_plaintext(peer.now, &out);
    let mut buf = Vec::new();
    b.poll_transmit(&mut buf);
    let mut want = BytesMut::new();
    put_ping_pong(&mut want, 5, TypeByte::Pong);
    assert_eq!(&buf[..], &want[..]);
    let mut out = BytesMut::new();
    put_error(&mut out, b"bye");
    b.handle_plaintext(peer.now, &out);
    assert_eq!(
        events(&mut b),
        vec![BrokerEvent::Closed(CloseReason::PeerError(
            Bytes::from_static(b"bye")
        ))]
    );
}

#[test]
fn keepalive_pings_an_idle_peer_and_disconnect_timeout_closes() {
    let t0 = Instant::now();
    let config = BrokerConfig {
        keepalive: Some(Duration::from_secs(240)),
        disconnect_timeout: Some(Duration::from_secs(600)),
        ..BrokerConfig::default()
    };
    let mut b = TestBroker::new(VocabTable::by_index(0).unwrap(), config, None, t0);
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(240)));
    b.handle_timeout(t0 + Duration::from_secs(100));
    let mut buf = Vec::new();
    b.poll_transmit(&mut buf);
    assert!(buf.is_empty());
    b.handle_timeout(t0 + Duration::from_secs(240));
    b.poll_transmit(&mut buf);
    assert_eq!(buf, vec![0x8e]);
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(480)));
    // activity (a PONG) pushes the timers back
    let t1 = t0 + Duration::from_secs(300);
    b.handle_plaintext(t1, &[0x8f]);
    assert_eq!(b.poll_timeout(), Some(t1 + Duration::from_secs(240)));
    let r = b.get_reference_by_name(b"x").unwrap();
    b.handle_timeout(t1 + Duration::from_secs(600));
    let evs = events(&mut b);
    assert!(
        matches!(&evs[0], BrokerEvent::Failed { req_id, error: CallError::ConnectionLost(CloseReason::IdleTimeout) } if *req_id == r)
    );
    assert_eq!(evs[1], BrokerEvent::Closed(CloseReason::IdleTimeout));
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn a_reference_furl_must_name_the_peer() {
    let mut peer = Peer::new();
    let peer_tubid = TubId::parse("5ikfv7dz4s7kjm2cs6mnui7pekmu2wmp").unwrap();
    let mut b = TestBroker::new(t0(), BrokerConfig::default(), Some(peer_tubid), peer.now);
    b.get_reference_by_name(b"calc").unwrap();
    let mine = peer.v(my_ref(1, Some(FURL)));
    peer.answer(&mut b, 1, &mine);
    assert!(matches!(
        events(&mut b).last(),
        Some(BrokerEvent::Closed(CloseReason::Protocol(
            ProtocolError::BadReferenceFurl(_)
        )))
    ));
}

#[test]
fn close_fails_every_outstanding_call() {
    let (mut b, _peer) = client_with_ref();
    let a = b.call(1, "x", &[], &[]).unwrap();
    let c = b.call(1, "y", &[], &[]).unwrap();
    b.close();
    assert_eq!(
        events(&mut b),
        vec![
            BrokerEvent::Failed {
                req_id: a,
                error: CallError::ConnectionLost(CloseReason::Local)
            },
            BrokerEvent::Failed {
                req_id: c,
                error: CallError::ConnectionLost(CloseReason::Local)
            },
            BrokerEvent::Closed(CloseReason::Local),
        ]
    );
}

#[test]
fn failure_wire_form_follows_foolscap() {
    let f = Failure::new("builtins.ValueError", "boom");
    let v = f.to_value();
    let Value::Copyable(c) = &v else { panic!() };
    let names: Vec<&str> = c.state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["value", "type", "traceback", "parents"]);
    assert_eq!(c.state[0].1, Value::bytes(b"boom"));
    assert_eq!(c.state[2].1, Value::bytes(NO_TRACEBACK.as_bytes()));
    assert_eq!(Failure::from_value(&v).unwrap(), f);
    // truncation
    let long = Failure {
        type_name: "t".repeat(300),
        parents: vec!["p".repeat(250)],
        value: "v".repeat(1500),
        traceback: "x".repeat(700) + &"y".repeat(1300),
    };
    let back = Failure::from_value(&long.to_value()).unwrap();
    assert_eq!(back.value, "v".repeat(997) + "..");
    assert_eq!(back.type_name, "t".repeat(197) + "..");
    assert_eq!(back.parents[0], "p".repeat(197) + "..");
    assert_eq!(
        back.traceback,
        "x".repeat(700) + "\n\n-- TRACEBACK ELIDED --\n\n" + &"y".repeat(1200)
    );
    // receive checks
    let with = |state: Vec<(Text, Value)>| {
        Value::Copyable(Box::new(crate::value::Copyable {
            type_name: Text::from(FAILURE_TYPE),
            state,
        }))
    };
    let mut state = match f.to_value() {
        Value::Copyable(c) => c.state,
        _ => unreachable!(),
    };
    state[0].1 = Value::bytes(&[b'v'; 1001]);
    assert!(matches!(
        Failure::from_value(&with(state.clone())),
        Err(FailureError::TooLong { name: "value", .. })
    ));
    state[0].1 = Value::bytes(b"ok");
    state.push(kw("extra", Value::None));
    assert_eq!(
        Failure::from_value(&with(state)),
        Err(FailureError::UnknownAttribute("extra".into()))
    );
    assert!(matches!(
        Failure::from_value(&Value::int(1)),
        Err(FailureError::NotAFailure(_))
    ));
}

#[test]
fn a_reference_received_again_during_decref_stays_alive() {
    let (mut b, mut peer) = client_with_ref();
    let d = b.release(1).unwrap().unwrap();
    peer.read(&mut b);
    // the peer sends clid 1 again before it sees the decref
    let r = b.get_reference_by_name(b"calc").unwrap();
    peer.read(&mut b);
    let again = peer.v(bare_ref(1));
    peer.answer(&mut b, r, &again);
    peer.answer(&mut b, d, &Value::None);
    let evs = events(&mut b);
    let [BrokerEvent::Answer {
        req_id,
        value: Value::Remote(h),
    }] = &evs[..]
    else {
        panic!("{evs:?}")
    };
    assert_eq!((*req_id, h.clid()), (r, 1));
    // still callable, and the next decref carries the new count
    b.call(1, "add", &[], &[]).unwrap();
    let d2 = b.release(1).unwrap().unwrap();
    let sent = peer.read(&mut b);
    let Some(PbEvent::Call(c)) = sent.last() else {
        panic!("{sent:?}")
    };
    assert_eq!(c.req_id, d2);
    assert_eq!(c.kwargs[1], kw("count", Value::int(1)));
}

#[test]
fn a_negative_decref_count_adds_as_in_python() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    let name = [kw("name", Value::bytes(b"calc"))];
    peer.call(&mut b, 1, 0, "getReferenceByName", &[], &name);
    peer.read(&mut b);
    let dec = |n| [kw("clid", Value::int(1)), kw("count", Value::int(n))];
    peer.call(&mut b, 2, 0, "decref", &[], &dec(-1));
    peer.call(&mut b, 3, 0, "decref", &[], &dec(1));
    assert_eq!(events(&mut b), vec![]); // refcount 2 - 1 = 1: still exported
    peer.call(&mut b, 4, 0, "decref", &[], &dec(1));
    assert_eq!(
        events(&mut b),
        vec![BrokerEvent::Released {
            clid: 1,
            object: ObjectId(42)
        }]
    );
    let sent = peer.read(&mut b);
    assert!(sent.iter().all(|e| matches!(
        e,
        PbEvent::Answer {
            value: Value::None,
            ..
        }
    )));
}

#[test]
fn mutated_streams_never_panic() {
    // valid traffic from a peer: bootstrap, calls with shared values,
    // answers, errors
    let mut ser = Serializer::new(t0());
    let mut stream = BytesMut::new();
    let mut refs = WireRefs::default();
    let (three, one) = (refs.value(my_ref(3, None)), refs.value(my_ref(1, None)));
    let shared = Value::Anchor(0, Box::new(Value::List(vec![Value::int(1)])));
    ser.write_call(
        &mut stream,
        1,
        0,
        b"getReferenceByName",
        &[],
        &[kw("name", Value::bytes(b"calc"))],
    )
    .unwrap();
    ser.write_call_with(
        &mut stream,
        2,
        1,
        b"m",
        &[shared, Value::Alias(0), three],
        &[kw("k", Value::Tuple(vec![Value::str("x")]))],
        &mut refs,
    )
    .unwrap();
    ser.write_answer_with(&mut stream, 1, &one, &mut refs)
        .unwrap();
    ser.write_error(
        &mut stream,
        2,
        &Failure::new("builtins.ValueError", "x").to_value(),
    )
    .unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut bytes = stream.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[i] = next() as u8,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, next() as u8),
            }
        }
        let now = Instant::now();
        let mut b = broker(now);
        b.get_reference_by_name(b"calc").unwrap();
        b.get_reference_by_name(b"calc").unwrap();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = ((next() as usize) % 7 + 1).min(rest.len());
            b.handle_plaintext(now, &rest[..n]);
            rest = &rest[n..];
        }
        while let Some(ev) = b.poll_event() {
            if let BrokerEvent::Call(c) = ev {
                let _ = b.answer(c.req_id, &Value::Alias(99));
                let _ = b.fail(c.req_id, &Failure::new("x.Y", "z"));
            }
        }
        b.handle_timeout(now + Duration::from_secs(1000));
        let mut out = Vec::new();
        b.poll_transmit(&mut out);
    }
}

#[test]
fn live_references_travel_as_wire_references() {
    let (mut b, mut peer) = client_with_ref();
    let r = b.call(1, "me", &[], &[]).unwrap();
    let again = peer.v(bare_ref(1));
    peer.answer(&mut b, r, &again);
    let evs = events(&mut b);
    let [BrokerEvent::Answer {
        value: Value::Remote(h),
        ..
    }] = &evs[..]
    else {
        panic!("{evs:?}")
    };
    peer.read(&mut b);
    // the peer's object goes home as your-reference, ours as my-reference
    b.call(
        1,
        "m",
        &[Value::Remote(h.clone()), Value::Local(ObjectId(7))],
        &[],
    )
    .unwrap();
    let sent = peer.read(&mut b);
    let [PbEvent::Call(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(peer.wire(&c.args[0]), WireRef::Your(1));
    let WireRef::My(mine) = peer.wire(&c.args[1]) else {
        panic!("{:?}", c.args[1])
    };
    // object 7 is not in the registry: no interface name, no FURL
    assert_eq!(mine.interface.as_deref(), Some(&b""[..]));
    assert_eq!(mine.furl, None);
    // the peer sends it back: it arrives as the local object
    let clid = mine.clid as u64;
    let yours = peer.v(WireRef::Your(clid));
    peer.call(&mut b, 9, 1, "x", &[yours], &[]);
    let evs = events(&mut b);
    let [BrokerEvent::Call(ic)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(ic.args, vec![Value::Local(ObjectId(7))]);
}

fn gift(gift_id: u64, furl: &str) -> WireRef {
    WireRef::Their(TheirReference {
        gift_id,
        furl: Bytes::copy_from_slice(furl.as_bytes()),
    })
}

/// docs/protocol.md §5.6: a reference from another connection goes as a
/// gift; giftIDs from 1, reused while the entry lives; held until the
/// `decgift`s bring its count to 0.
#[test]
fn a_reference_from_another_connection_is_sent_as_a_gift() {
    let (mut b, mut peer) = client_with_ref();
    let foreign = RemoteRef::new(ConnectionId(99), 1, Bytes::new(), Some(FURL.into()));
    let furlless = RemoteRef::new(ConnectionId(99), 2, Bytes::new(), None);
    let args = [
        Value::Remote(foreign.clone()),
        Value::List(vec![Value::Remote(foreign.clone())]),
        Value::Remote(furlless.clone()),
    ];
    b.call(1, "m", &args, &[]).unwrap();
    let sent = peer.read(&mut b);
    let [PbEvent::Call(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(peer.wire(&c.args[0]), gift(1, FURL));
    let Value::List(inner) = &c.args[1] else {
        panic!("{:?}", c.args[1])
    };
    assert_eq!(peer.wire(&inner[0]), gift(1, FURL));
    // no FURL: Python sends ''
    assert_eq!(peer.wire(&c.args[2]), gift(2, ""));
    assert_eq!(b.gifts_held(), 2);
    drop(args);
    // the gift table holds the reference (its owner's broker would not
    // release it)
    assert_eq!(foreign.handle_count(), 2);
    let decgift = |peer: &mut Peer, b: &mut TestBroker, id: i64, count: i64| {
        let kwargs = [kw("count", Value::int(count)), kw("giftID", Value::int(id))];
        peer.call(b, 0, 0, "decgift", &[], &kwargs);
    };
    decgift(&mut peer, &mut b, 1, 1);
    assert_eq!(b.gifts_held(), 2, "one of two sends acknowledged");
    decgift(&mut peer, &mut b, 1, 1);
    decgift(&mut peer, &mut b, 2, 1);
    assert_eq!(b.gifts_held(), 0);
    assert_eq!(foreign.handle_count(), 1);
    // an unknown giftID with reqID 0: nothing comes back
    decgift(&mut peer, &mut b, 5, 1);
    assert!(peer.read(&mut b).is_empty());
    assert!(!b.is_closed());
    // a new send takes a new giftID
    b.call(1, "m", &[Value::Remote(foreign.clone())], &[])
        .unwrap();
    let sent = peer.read(&mut b);
    let [PbEvent::Call(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(peer.wire(&c.args[0]), gift(3, FURL));
    // and the connection's loss drops the table
    b.connection_lost();
    assert_eq!(b.gifts_held(), 0);
    assert_eq!(foreign.handle_count(), 1);
}

/// A received gift stands as a slot in its call until the Tub looks it
/// up; the broker sends `decgift` as Python does (never for giftID 0).
#[test]
fn a_received_gift_is_reported_with_its_call_and_acknowledged_on_request() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    let g = peer.v(gift(4, FURL));
    let args = [Value::List(vec![g.clone(), Value::int(1)]), g];
    peer.call(&mut b, 3, 0, "x", &[], &[]);
    let _ = events(&mut b);
    let _ = peer.read(&mut b);
    // a call to an exported object carries the gift
    let export = Export {
        object: ObjectId(7),
        interface: Bytes::new(),
        furl: None,
    };
    let _ = b.exported.export_as(&export, false);
    peer.call(&mut b, 4, 1, "take", &args, &[]);
    let evs = events(&mut b);
    let [BrokerEvent::CallWithGifts(c, gifts)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(gifts.len(), 2, "each their-reference is its own gift");
    assert_eq!(
        c.args,
        vec![Value::List(vec![gift_slot(0), Value::int(1)]), gift_slot(1)]
    );
    let mut filled = c.args.clone();
    let resolved = [Value::str("x"), Value::str("y")];
    for v in filled.iter_mut() {
        fill_gifts(v, &resolved);
    }
    assert_eq!(
        filled,
        vec![
            Value::List(vec![Value::str("x"), Value::int(1)]),
            Value::str("y")
        ]
    );
    b.decgift(4).unwrap();
    b.decgift(0).unwrap();
    let sent = peer.read(&mut b);
    let [PbEvent::Call(d)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!((d.req_id, d.clid, d.method.as_str()), (0, 0, "decgift"));
    assert_eq!(
        d.kwargs,
        vec![kw("count", Value::int(1)), kw("giftID", Value::int(4))]
    );
}

/// More gifts in one message than the limit: the message is refused.
#[test]
fn too_many_gifts_in_one_message_refuse_it() {
    let mut peer = Peer::new();
    let config = BrokerConfig {
        max_gifts_per_message: 2,
        ..BrokerConfig::default()
    };
    let mut b = TestBroker::new(t0(), config, None, peer.now);
    let export = Export {
        object: ObjectId(7),
        interface: Bytes::new(),
        furl: None,
    };
    let _ = b.exported.export_as(&export, false);
    let args: Vec<Value> = (1..=3).map(|i| peer.v(gift(i, FURL))).collect();
    peer.call(&mut b, 4, 1, "take", &args, &[]);
    assert!(events(&mut b).is_empty());
    let (req, f) = remote_failure(&peer.read(&mut b));
    assert_eq!(req, 4);
    assert!(
        f.value.contains("more than 2 gifts in one message"),
        "{}",
        f.value
    );
    assert!(!b.is_closed());
}

#[test]
fn dropped_handles_are_released_by_the_sweep() {
    let (mut b, mut peer) = client_with_ref();
    // client_with_ref dropped its handle: only the broker's clone is left
    assert_eq!(b.release_dropped(), 1);
    let sent = peer.read(&mut b);
    let [PbEvent::Call(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(c.method.as_str(), "decref");
    assert_eq!(b.release_dropped(), 0);
    // a handle still held is not released
    let r = b.get_reference_by_name(b"calc").unwrap();
    peer.read(&mut b);
    let mine = peer.v(my_ref(2, None));
    peer.answer(&mut b, r, &mine);
    let evs = events(&mut b);
    assert_eq!(b.release_dropped(), 0);
    drop(evs);
    assert_eq!(b.release_dropped(), 1);
}

/// The ERROR texts Python 24.9.0 sends for these malformed streams
/// (captured in the shared reference, 07-negotiation conns 8, 9, 12).
#[test]
fn fatal_stream_errors_send_pythons_texts() {
    let error_sent = |input: &[u8]| {
        let peer = Peer::new();
        let mut b = broker(peer.now);
        b.handle_plaintext(peer.now, input);
        let mut buf = Vec::new();
        b.poll_transmit(&mut buf);
        // the whole output is one ERROR token
        let mut d = crate::banana::TokenDecoder::default();
        d.feed(&buf);
        match d.next_token() {
            Ok(Some(crate::banana::Token::Error(text))) => text.to_vec(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        error_sent(&[0x01, 0x81]),
        b"BananaError(in <RootUnslicer>): ('top-level must be OPEN',)"
    );
    let mut long = vec![0x01; 66];
    long.push(0x81);
    let want = format!(
        "BananaError(in <RootUnslicer>): (\"token prefix is limited to 64 bytes: but got b'{}\\\\x81'\",)",
        "\\\\x01".repeat(66)
    );
    assert_eq!(String::from_utf8(error_sent(&long)).unwrap(), want);
    assert_eq!(want.len(), 420);
    // OPEN, then VOCAB 5, which table 0 (this connection's) does not define
    assert_eq!(
        error_sent(&[0x00, 0x88, 0x05, 0x87]),
        b"exception while processing data, more information in the logfiles"
    );
}

#[test]
fn what_only_the_broker_holds_leaves_a_connection_unused() {
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    assert!(b.is_unused());
    // a peer without any FURL puts a reference in the arguments of a call
    // to our broker: refused, but the reference was received
    let r = peer.v(my_ref(7, None));
    peer.call(&mut b, 1, 0, "getReferenceByName", &[r], &[]);
    remote_failure(&peer.read(&mut b));
    assert_eq!(b.imported_count(), 1);
    assert!(b.is_unused());
    // its decref, which a silent peer never answers
    assert_eq!(b.release_dropped(), 1);
    assert_eq!(b.outstanding_calls(), 1);
    assert!(b.is_unused());
    // a call of our application counts
    let (mut b, _peer) = client_with_ref();
    assert!(b.is_unused());
    b.call(1, "add", &[], &[]).unwrap();
    assert!(!b.is_unused());
}

#[test]
fn a_reference_the_application_holds_or_an_export_makes_it_used() {
    let (mut b, mut peer) = client_with_ref();
    let r = b.get_reference_by_name(b"calc").unwrap();
    peer.read(&mut b);
    let again = peer.v(bare_ref(1));
    peer.answer(&mut b, r, &again);
    let held = events(&mut b);
    assert!(!b.is_unused(), "{held:?}");
    drop(held);
    assert!(b.is_unused());
    // a peer that looked up one of our objects holds it
    let mut peer = Peer::new();
    let mut b = broker(peer.now);
    peer.call(
        &mut b,
        1,
        0,
        "getReferenceByName",
        &[Value::bytes(b"calc")],
        &[],
    );
    assert!(!b.is_unused());
}

#[test]
fn a_reference_across_call_arguments_finds_its_frozenset() {
    // call(frozenset{1}, <reference to it>): as inside one answer, the
    // reference yields a tuple of the set's items (Python 24.9.0 echoes
    // these bytes back as [frozenset({1}), (1,)], tests/interop_broker.rs)
    let mut out = BytesMut::new();
    Serializer::new(t1())
        .write_call(
            &mut out,
            3,
            1,
            b"echo",
            &[
                Value::Anchor(9, Box::new(Value::FrozenSet(vec![Value::int(1)]))),
                Value::Alias(9),
            ],
            &[],
        )
        .unwrap();
    let evs = pb_events(t1(), &out).unwrap();
    let [PbEvent::Call(call)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(
        call.args,
        vec![
            Value::FrozenSet(vec![Value::int(1)]),
            Value::Tuple(vec![Value::int(1)]),
        ]
    );
    // the same two values in one answer list
    let mut out = BytesMut::new();
    let list = Value::List(vec![
        Value::Anchor(9, Box::new(Value::FrozenSet(vec![Value::int(1)]))),
        Value::Alias(9),
    ]);
    Serializer::new(t1())
        .write_answer(&mut out, 3, &list)
        .unwrap();
    let evs = pb_events(t1(), &out).unwrap();
    assert_eq!(
        evs,
        vec![PbEvent::Answer {
            req_id: 3,
            value: Value::List(call.args.clone()),
        }]
    );
}

#[test]
fn abort_edge_cases_follow_python() {
    let add = hex("02880b87 0281 0181 0382616464 03880c87 0281 0181 0281 0389 0289");
    // ABORT with nothing open: Python's PB root absorbs it, the stream
    // goes on (tests/interop_broker.rs proves it against Python)
    let mut input = hex("008a");
    input.extend_from_slice(&add);
    let evs = pb_events(t1(), &input).unwrap();
    assert!(
        matches!(&evs[..], [PbEvent::Call(c)] if c.req_id == 2),
        "{evs:?}"
    );
    // ABORT right after an OPEN, before the open type: Python stays in the
    // index phase and loses sync at the CLOSE (or the next OPEN): fatal
    assert!(matches!(
        pb_events(t1(), &hex("0088 008a 0089")),
        Err(DecodeError::AbortInIndex { .. })
    ));
    // storage mode still refuses a top-level ABORT
    let mut de = Deserializer::new(t1(), Limits::default());
    de.feed(&hex("008a"));
    assert!(matches!(
        de.poll_event(),
        Err(DecodeError::TopLevelNotOpen { .. })
    ));
}

#[test]
fn a_posarg_count_the_arguments_never_reach_is_fatal_as_in_python() {
    // count 2**40 (far over max_container_items), one argument, CLOSE:
    // Python takes any count and raises "'arguments' sequence ended too
    // early" at the CLOSE (a BananaError: it hangs up)
    let b = raw(|s, b| {
        s.open_sequence(b, b"call");
        put_token_header(b, 1, TypeByte::Int);
        put_token_header(b, 1, TypeByte::Int);
        put_string(b, b"m");
        let a = s.open_sequence(b, b"arguments");
        put_token_header(b, 1 << 40, TypeByte::Int);
        put_token_header(b, 7, TypeByte::Int);
        s.close(b, a);
    });
    let e = fatal(&b);
    assert!(
        matches!(
            e,
            DecodeError::Incomplete {
                sequence: "arguments",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.python_banana_text().as_deref(),
        Some("'arguments' sequence ended too early")
    );
    // a count that the arguments reach is fine however it was written
    let b = raw(|s, b| {
        let c = s.open_sequence(b, b"call");
        put_token_header(b, 1, TypeByte::Int);
        put_token_header(b, 1, TypeByte::Int);
        put_string(b, b"m");
        let a = s.open_sequence(b, b"arguments");
        put_token_header(b, 1, TypeByte::Int);
        put_token_header(b, 7, TypeByte::Int);
        s.close(b, a);
        s.close(b, c);
    });
    let evs = pb_events(t0(), &b).unwrap();
    assert!(matches!(&evs[..], [PbEvent::Call(c)] if c.args == [Value::int(7)]));
}

#[test]
fn a_reference_equal_to_another_dict_key_in_a_call_is_fatal() {
    let dict = Value::Dict(vec![
        (
            Value::Anchor(4, Box::new(Value::Tuple(vec![Value::int(1)]))),
            Value::int(1),
        ),
        (Value::Alias(4), Value::int(2)),
    ]);
    let mut out = BytesMut::new();
    Serializer::new(t1())
        .write_call(&mut out, 3, 1, b"echo", &[dict], &[])
        .unwrap();
    assert!(matches!(
        pb_events(t1(), &out),
        Err(DecodeError::DuplicateKey { .. })
    ));
}

#[test]
fn a_repeated_keyword_keeps_what_other_arguments_share_with_its_first_value() {
    // m(x=L, y=<reference to L>, x=3) with L = [10]: Python's kwargs are
    // {x: 3, y: L}; the list must survive in y, not as a dangling alias
    let mut b = BytesMut::new();
    let mut ser = Serializer::new(t0());
    let c = ser.open_sequence(&mut b, b"call");
    put_token_header(&mut b, 1, TypeByte::Int);
    put_token_header(&mut b, 1, TypeByte::Int);
    put_string(&mut b, b"m");
    let a = ser.open_sequence(&mut b, b"arguments");
    put_token_header(&mut b, 0, TypeByte::Int);
    put_string(&mut b, b"x");
    let list = ser.open_sequence(&mut b, b"list");
    put_token_header(&mut b, 10, TypeByte::Int);
    ser.close(&mut b, list);
    put_string(&mut b, b"y");
    let r = ser.open_sequence(&mut b, b"reference");
    put_token_header(&mut b, list, TypeByte::Int);
    ser.close(&mut b, r);
    put_string(&mut b, b"x");
    put_token_header(&mut b, 3, TypeByte::Int);
    ser.close(&mut b, a);
    ser.close(&mut b, c);
    let evs = pb_events(t0(), &b).unwrap();
    let [PbEvent::Call(call)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(call.kwargs[0], kw("x", Value::int(3)));
    assert_eq!(call.kwargs[1].0.as_str(), "y");
    let Value::Anchor(_, inner) = &call.kwargs[1].1 else {
        panic!("{:?}", call.kwargs)
    };
    assert_eq!(**inner, Value::List(vec![Value::int(10)]));
    // and the call can be sent on
    let mut again = BytesMut::new();
    Serializer::new(t0())
        .write_call(&mut again, 1, 1, b"m", &call.args, &call.kwargs)
        .unwrap();
}

/// Python's `unsafeTracebacks = False`: every error we send says
/// `Traceback unavailable`, forwarded failures included.
#[test]
fn without_unsafe_tracebacks_errors_carry_no_traceback() {
    for unsafe_tracebacks in [true, false] {
        let mut peer = Peer::new();
        let config = BrokerConfig {
            unsafe_tracebacks,
            ..BrokerConfig::default()
        };
        let mut b = TestBroker::new(t0(), config, None, peer.now);
        let export = Export {
            object: ObjectId(7),
            interface: Bytes::new(),
            furl: None,
        };
        let _ = b.exported.export_as(&export, false);
        peer.call(&mut b, 4, 1, "m", &[], &[]);
        let evs = events(&mut b);
        let [BrokerEvent::Call(c)] = &evs[..] else {
            panic!("{evs:?}")
        };
        let mut f = Failure::new("builtins.ValueError", "boom");
        f.traceback =
            "Traceback (most recent call last):\n  File \"x.py\"\nValueError: boom\n".into();
        b.fail(c.req_id, &f).unwrap();
        let (_, got) = remote_failure(&peer.read(&mut b));
        let want = if unsafe_tracebacks {
            f.traceback.clone()
        } else {
            NO_TRACEBACK.to_owned()
        };
        assert_eq!(got.traceback, want);
        assert_eq!(got.value, "boom");
    }
}
