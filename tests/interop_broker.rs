//! The broker against the real Python peer (`foolscap==24.9.0`) over real
//! sockets, both directions:
//!
//! * a Rust client gets a Python object by FURL and calls it: `add`, a
//!   method raising ValueError (a typed failure with Python's type name),
//!   an unknown method, `callRemoteOnly`, an echo of rich values, `decref`;
//! * a Python client calls a Rust-served object: an echo of rich values
//!   (sharing included), Rust-raised failures Python traps by type, an
//!   unknown method.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::broker::*;
use common::negotiation::{data_path, dial, identity};
use foolscap::broker::{BrokerEvent, CallError, CloseReason};
use foolscap::negotiation::{ConnectionTable, TlsContext};
use foolscap::rng::SeededRng;
use foolscap::value::{Text, Value};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn py(text: &str) -> Value {
    foolscap_literal::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn rust_client_calls_a_python_object() {
    let server = PyTarget::start(&data_path("tub-high"));
    let tls = TlsContext::new(&identity("tub-low")).unwrap();
    let table = Mutex::new(ConnectionTable::new(&mut SeededRng::new(11)));
    let conn = dial(&tls, &table, &server.furl, deadline()).expect("negotiation");
    let common::negotiation::Conn { sock, session, .. } = conn;
    let mut c = BrokerConn::new(sock, session, Box::new(HashMap::new()));

    // getReferenceByName
    let req = c
        .broker
        .get_reference_by_name(server.furl.swissnum.as_bytes())
        .unwrap();
    let r = c.wait(req, deadline()).expect("getReferenceByName");
    let Value::Remote(r) = r else {
        panic!("not a reference: {r:?}")
    };
    assert!(r.furl().is_some(), "first transmission carries the FURL");
    let clid = r.clid();

    // an ABORT with nothing open: Python's PB root ignores it (we do too)
    c.session.write_plaintext(&[0x00, 0x8a]);
    c.flush();

    // add(1, 2)
    let req = c
        .broker
        .call(
            clid,
            "add",
            &[Value::int(1), Value::int(2)],
            &[],
            &*c.objects,
        )
        .unwrap();
    assert_eq!(c.wait(req, deadline()), Ok(Value::int(3)));

    // many in flight, answered in order of arrival
    let reqs: Vec<u64> = (0..5)
        .map(|i| {
            c.broker
                .call(
                    clid,
                    "add",
                    &[Value::int(i), Value::int(100)],
                    &[],
                    &*c.objects,
                )
                .unwrap()
        })
        .collect();
    for (i, req) in reqs.into_iter().enumerate() {
        assert_eq!(c.wait(req, deadline()), Ok(Value::int(i as i64 + 100)));
    }

    // a method raising ValueError: a typed failure
    let req = c.broker.call(clid, "fail", &[], &[], &*c.objects).unwrap();
    let Err(CallError::Remote(f)) = c.wait(req, deadline()) else {
        panic!("fail() did not fail remotely")
    };
    assert_eq!(f.type_name, "builtins.ValueError");
    assert_eq!(f.value, "boom");
    assert_eq!(
        f.parents,
        [
            "builtins.ValueError",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object"
        ]
    );
    assert!(f.traceback.starts_with("Traceback"), "{}", f.traceback);

    // an unknown method
    let req = c
        .broker
        .call(clid, "nosuch", &[], &[], &*c.objects)
        .unwrap();
    let Err(CallError::Remote(f)) = c.wait(req, deadline()) else {
        panic!("nosuch() did not fail remotely")
    };
    assert_eq!(f.type_name, "builtins.AttributeError");
    assert_eq!(f.value, "'Target' object has no attribute 'remote_nosuch'");

    // callRemoteOnly: no answer, but the call ran (calls start in order)
    c.broker
        .call_only(clid, "note", &[Value::str("quiet")], &[], &*c.objects)
        .unwrap();
    let req = c.broker.call(clid, "notes", &[], &[], &*c.objects).unwrap();
    assert_eq!(c.wait(req, deadline()), Ok(py("['quiet']")));

    // rich values, shared containers and keywords survive a round trip
    let args = py(
        "({'k': 'v', 'n': [1, 2.5, None, True]}, b'bytes', (3, 4), {5}, frozenset([6]), \
          'h\\xe9llo', 1180591620717411303424, -5, -1099511627776, Decimal('1.25'), b'list')",
    );
    let Value::Tuple(mut args) = args else {
        unreachable!()
    };
    let shared = Value::Anchor(1000, Box::new(py("[10, 20]")));
    args.push(Value::List(vec![shared, Value::Alias(1000)]));
    let kwargs = [(Text::from("kw"), Value::str("value"))];
    let req = c
        .broker
        .call(clid, "echo", &args, &kwargs, &*c.objects)
        .unwrap();
    let got = c.wait(req, deadline()).expect("echo");
    let Value::List(parts) = got else {
        panic!("{got:?}")
    };
    let Value::List(back) = &parts[0] else {
        panic!("{parts:?}")
    };
    assert_eq!(back.len(), args.len());
    assert_eq!(back[..11], args[..11]);
    // the shared list came back shared (anchor ids are per message)
    let Value::List(pair) = &back[11] else {
        panic!("{:?}", back[11])
    };
    let (Value::Anchor(id, inner), Value::Alias(alias)) = (&pair[0], &pair[1]) else {
        panic!("sharing lost: {pair:?}")
    };
    assert_eq!(id, alias);
    assert_eq!(**inner, py("[10, 20]"));
    assert_eq!(parts[1], py("{'kw': 'value'}"));

    // a `reference` in one argument to a frozenset in another: Python's
    // receiver turns it into a tuple of the set's items (one scope per call)
    let args = [
        Value::Anchor(7, Box::new(Value::FrozenSet(vec![Value::int(1)]))),
        Value::Alias(7),
    ];
    let req = c
        .broker
        .call(clid, "echo", &args, &[], &*c.objects)
        .unwrap();
    let got = c.wait(req, deadline()).expect("echo");
    assert_eq!(got, py("[[frozenset([1]), (1,)], {}]"));

    // release the reference: decref(clid, count) is answered, then the
    // clid is gone
    let d = c.broker.release(clid).unwrap().expect("a decref call");
    c.flush();
    let until = Instant::now() + Duration::from_secs(5);
    while c.broker.outstanding_calls() > 0 && Instant::now() < until {
        if let Some(ev) = c.next_event(Instant::now() + Duration::from_millis(100)) {
            panic!("unexpected event while releasing (decref {d}): {ev:?}");
        }
    }
    assert_eq!(c.broker.outstanding_calls(), 0, "decref answered");
    assert!(c.broker.call(clid, "add", &[], &[], &*c.objects).is_err());

    // closing fails nothing (nothing outstanding) and reports Closed
    c.broker.close();
    assert_eq!(
        c.broker.poll_event(),
        Some(BrokerEvent::Closed(CloseReason::Local))
    );
    c.close();
}

#[test]
fn python_client_calls_a_rust_object() {
    let target = start_rust_target(&identity("tub-mid"));
    let furl = target.furl.to_string();
    let out = fsbroker(
        &[
            "call",
            data_path("tub-low").to_str().unwrap(),
            &furl,
            "--timeout",
            "60",
        ],
        Duration::from_secs(90),
    );
    let seen = target.thread.join().expect("Rust target thread");
    assert_eq!(out.len(), 1, "{out:?}");
    let j = &out[0];
    assert_eq!(j["echo_ok"], true, "{j}");
    assert_eq!(j["echo_shared"], true, "{j}");
    assert_eq!(j["fail"]["type"], "builtins.ValueError", "{j}");
    assert_eq!(j["fail"]["value"], "rust boom", "{j}");
    assert_eq!(j["fail"]["check_valueerror"], true, "{j}");
    assert_eq!(
        j["raise_custom"]["type"], "rustapp.errors.CustomError",
        "{j}"
    );
    assert_eq!(j["raise_custom"]["check_keyerror"], true, "{j}");
    assert_eq!(j["raise_custom"]["check_valueerror"], false, "{j}");
    assert_eq!(j["nosuch"]["type"], "builtins.AttributeError", "{j}");
    assert_eq!(j["nosuch"]["check_attributeerror"], true, "{j}");
    assert_eq!(
        j["nosuch"]["value"],
        "'Target' object has no attribute 'remote_nosuch'"
    );
    assert_eq!(j["after"], serde_json::json!([[1], {}]), "{j}");
    // Python's getReference went through our clid-0 broker (it is not an
    // event); the calls arrived in order; dropping its reference made
    // Python send decref(clid=1, count=1), which retired our export; the
    // connection ended with Python's Tub stopping
    assert!(
        seen.contains(&BrokerEvent::Released {
            clid: 1,
            object: foolscap::id::ObjectId(1)
        }),
        "{seen:?}"
    );
    let calls: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::Call(c) => Some(c.method.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["echo", "fail", "raise_custom", "nosuch", "echo"]);
    assert!(
        matches!(seen.last(), Some(BrokerEvent::Closed(_))),
        "{seen:?}"
    );
}

/// Connects to a fresh Python target, gets the object, writes `raw` (a
/// plaintext banana stream, `{clid}` patched in by the caller) and returns
/// how the connection ends.
fn python_answers_raw(raw: impl FnOnce(i64) -> Vec<u8>) -> Option<BrokerEvent> {
    let server = PyTarget::start(&data_path("tub-high"));
    let tls = TlsContext::new(&identity("tub-low")).unwrap();
    let table = Mutex::new(ConnectionTable::new(&mut SeededRng::new(12)));
    let conn = dial(&tls, &table, &server.furl, deadline()).expect("negotiation");
    let common::negotiation::Conn { sock, session, .. } = conn;
    let mut c = BrokerConn::new(sock, session, Box::new(HashMap::new()));
    let req = c
        .broker
        .get_reference_by_name(server.furl.swissnum.as_bytes())
        .unwrap();
    let Ok(Value::Remote(r)) = c.wait(req, deadline()) else {
        panic!("getReferenceByName")
    };
    c.session.write_plaintext(&raw(r.clid()));
    c.flush();
    let ev = c.next_event(deadline());
    c.close();
    ev
}

/// The raw `call` sequence (reqID 40, method `add`) with its `arguments`
/// written by `args`.
fn raw_call(clid: i64, args: impl FnOnce(&mut bytes::BytesMut)) -> Vec<u8> {
    use foolscap::banana::{encode as enc, TypeByte};
    let mut out = bytes::BytesMut::new();
    enc::put_token_header(&mut out, 90, TypeByte::Open);
    enc::put_string(&mut out, b"call");
    enc::put_token_header(&mut out, 40, TypeByte::Int);
    enc::put_token_header(&mut out, clid as u64, TypeByte::Int);
    enc::put_string(&mut out, b"add");
    args(&mut out);
    enc::put_token_header(&mut out, 90, TypeByte::Close);
    out.to_vec()
}

#[test]
fn python_hangs_up_on_a_short_argument_count_and_an_abort_before_the_open_type() {
    use foolscap::banana::{encode as enc, TypeByte};
    // a posarg count of 2**40 with two arguments: Python takes the count
    // and hangs up at the CLOSE ("'arguments' sequence ended too early");
    // our decoder refuses the same bytes the same way (broker unit tests)
    let ev = python_answers_raw(|clid| {
        raw_call(clid, |out| {
            enc::put_token_header(out, 91, TypeByte::Open);
            enc::put_string(out, b"arguments");
            enc::put_token_header(out, 1 << 40, TypeByte::Int);
            enc::put_token_header(out, 1, TypeByte::Int);
            enc::put_token_header(out, 2, TypeByte::Int);
            enc::put_token_header(out, 91, TypeByte::Close);
        })
    });
    match &ev {
        Some(BrokerEvent::Closed(CloseReason::PeerError(text))) => {
            let text = String::from_utf8_lossy(text);
            assert!(
                text.contains("'arguments' sequence ended too early"),
                "{text}"
            );
        }
        other => panic!("Python did not hang up: {other:?}"),
    }
    // OPEN, ABORT, CLOSE where the arguments belong: Python hangs up
    let ev = python_answers_raw(|clid| {
        raw_call(clid, |out| {
            enc::put_token_header(out, 91, TypeByte::Open);
            enc::put_token_header(out, 91, TypeByte::Abort);
            enc::put_token_header(out, 91, TypeByte::Close);
        })
    });
    assert!(
        matches!(ev, Some(BrokerEvent::Closed(_))),
        "Python did not hang up: {ev:?}"
    );
    // the same at the top level
    let ev = python_answers_raw(|_| vec![0x5a, 0x88, 0x5a, 0x8a, 0x5a, 0x89]);
    assert!(
        matches!(ev, Some(BrokerEvent::Closed(_))),
        "Python did not hang up: {ev:?}"
    );
}
