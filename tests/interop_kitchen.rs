//! Issue 4's proof, both directions and on both engines: the Python
//! checker (`tests/interop/kitchen_check.py`) against the Rust
//! kitchen-sink example (`--driver mio` and `--driver threads`), and the
//! Rust client (a Tub on the mio event loop or on threads) against the
//! Python twin (`tests/interop/kitchen_sink.py`). The same checks also run
//! against the server of their own language, so a check that is wrong
//! fails there too.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::kitchen::{
    lit, python_checker, same_structure, Client, Recorder, Server, ECHO_LITERALS, T,
};
use common::Driver;
use foolscap::broker::CallError;
use foolscap::value::{AnchorId, Copyable, Decimal, Text, Value};
use foolscap::Error;

fn assert_checker_passes(server: &Server) {
    let (passed, failed) = python_checker(&server.furl);
    assert!(
        failed.is_empty(),
        "kitchen_check.py: {} failed:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(passed >= 40, "only {passed} checks ran");
}

#[test]
fn python_client_cannot_tell_the_rust_mio_server_from_python() {
    assert_checker_passes(&Server::rust(Driver::Mio, &[]));
}

#[test]
fn python_client_cannot_tell_the_rust_threads_server_from_python() {
    assert_checker_passes(&Server::rust(Driver::Threads, &[]));
}

#[test]
fn python_client_cannot_tell_the_rust_tokio_server_from_python() {
    assert_checker_passes(&Server::rust(Driver::Tokio, &[]));
}

#[test]
fn python_checker_passes_against_the_python_server() {
    assert_checker_passes(&Server::python(&[]));
}

#[test]
fn rust_mio_client_against_the_python_server() {
    run_rust_checks(&Server::python(&[]), Driver::Mio);
}

#[test]
fn rust_threads_client_against_the_python_server() {
    run_rust_checks(&Server::python(&[]), Driver::Threads);
}

#[test]
fn rust_mio_client_against_the_rust_mio_server() {
    run_rust_checks(&Server::rust(Driver::Mio, &[]), Driver::Mio);
}

#[test]
fn rust_threads_client_against_the_rust_threads_server() {
    run_rust_checks(&Server::rust(Driver::Threads, &[]), Driver::Threads);
}

#[test]
fn rust_mio_client_against_the_rust_threads_server() {
    run_rust_checks(&Server::rust(Driver::Threads, &[]), Driver::Mio);
}

#[test]
fn rust_threads_client_against_the_rust_mio_server() {
    run_rust_checks(&Server::rust(Driver::Mio, &[]), Driver::Threads);
}

/// Python's `Tub.unsafeTracebacks = False` (`--no-tracebacks`; ours:
/// `BrokerConfig::unsafe_tracebacks`): a failure the server forwards
/// keeps its traceback by default and says `Traceback unavailable`
/// without, on the Python twin and on our server alike.
#[test]
fn the_no_tracebacks_option_python_and_rust() {
    for tracebacks in [true, false] {
        let extra: &[&str] = if tracebacks {
            &[]
        } else {
            &["--no-tracebacks"]
        };
        for server in [
            Server::python(extra),
            Server::rust(Driver::Mio, extra),
            Server::rust(Driver::Tokio, extra),
        ] {
            let c = Client::connect(&server.furl, Driver::Threads);
            let mine = c.tub.local(Arc::new(Recorder::default()));
            let f = c.failure("call_back", &[mine, Value::str("boom_traced")]);
            assert_eq!(f.value, "traced");
            let want = if tracebacks {
                common::kitchen::TRACEBACK
            } else {
                "Traceback unavailable\n"
            };
            assert_eq!(f.traceback, want, "tracebacks {tracebacks}");
        }
    }
}

#[test]
fn rust_tokio_client_against_the_python_server() {
    run_rust_checks(&Server::python(&[]), Driver::Tokio);
}

#[test]
fn rust_tokio_client_against_the_rust_tokio_server() {
    run_rust_checks(&Server::rust(Driver::Tokio, &[]), Driver::Tokio);
}

#[test]
fn rust_tokio_client_against_the_rust_mio_server() {
    run_rust_checks(&Server::rust(Driver::Mio, &[]), Driver::Tokio);
}

#[test]
fn rust_mio_client_against_the_rust_tokio_server() {
    run_rust_checks(&Server::rust(Driver::Tokio, &[]), Driver::Mio);
}

/// A named check of the Rust client.
type Check = (&'static str, fn(&Client));

/// Runs every check, then reports all failures at once.
fn run_rust_checks(server: &Server, driver: Driver) {
    let c = Client::connect(&server.furl, driver);
    let checks: &[Check] = &[
        ("echo_values", echo_values),
        ("echo_sharing_and_cycles", echo_sharing_and_cycles),
        ("keywords_and_echo_args", keywords_and_echo_args),
        ("add_length_pow2", add_length_pow2),
        ("big_values", big_values),
        ("point", point),
        ("unregistered_copyable", unregistered_copyable),
        ("failures", failures),
        ("counters_and_self", counters_and_self),
        ("identity", identity),
        ("notes_and_call_only", notes_and_call_only),
        ("call_back_home", call_back_home),
        ("call_backs", call_backs),
        ("types", types),
        ("concurrency", concurrency),
        ("unknown_method", unknown_method),
        ("hangup", hangup),
        ("disconnect_mid_call", disconnect_mid_call),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&c)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {msg}"));
        }
    }
    c.tub.shutdown();
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
}

fn echo_values(c: &Client) {
    let big = format!("0x1{}", "0".repeat(250)); // 2**1000
    let mut values: Vec<Value> = ECHO_LITERALS.iter().map(|s| lit(s)).collect();
    values.push(lit(&big));
    values.push(Value::Float(f64::NAN));
    values.push(Value::bytes(&(0..=255).collect::<Vec<u8>>()));
    for v in &values {
        let back = c.ok("echo", std::slice::from_ref(v));
        assert!(
            same_structure(v, &back),
            "echo({v:?}) came back as {back:?}"
        );
    }
}

fn shared_list() -> Value {
    // x = [1, 2]; [x, x, (x,)]
    let a: AnchorId = 0;
    Value::List(vec![
        Value::Anchor(a, Box::new(lit("[1, 2]"))),
        Value::Alias(a),
        Value::Tuple(vec![Value::Alias(a)]),
    ])
}

fn cyclic_list() -> Value {
    // l = [1]; l.append(l)
    Value::Anchor(
        0,
        Box::new(Value::List(vec![Value::int(1), Value::Alias(0)])),
    )
}

fn cyclic_dict() -> Value {
    // d = {}; d['me'] = d
    Value::Anchor(
        0,
        Box::new(Value::Dict(vec![(Value::str("me"), Value::Alias(0))])),
    )
}

fn echo_sharing_and_cycles(c: &Client) {
    for v in [shared_list(), cyclic_list(), cyclic_dict()] {
        let back = c.ok("echo", std::slice::from_ref(&v));
        assert!(same_structure(&v, &back), "echo({v:?}) = {back:?}");
    }
}

fn keywords_and_echo_args(c: &Client) {
    let v = lit("{'k': [1, 2.5, b'x']}");
    let back = c
        .call_kw("echo", &[], &[(Text::from("x"), v.clone())])
        .unwrap();
    assert!(same_structure(&v, &back));
    let back = c
        .call_kw(
            "echo_args",
            &[Value::int(1), Value::str("two")],
            &[
                (Text::from("k"), Value::bytes(b"v")),
                (Text::from("a"), Value::None),
            ],
        )
        .unwrap();
    assert!(
        same_structure(&back, &lit("[[1, 'two'], {'a': None, 'k': b'v'}]")),
        "echo_args gave {back:?}"
    );
}

/// `frozenset([t, t, ()])` with one shared empty tuple `t`.
fn shared_and_equal_tuples() -> Value {
    Value::FrozenSet(vec![
        Value::Anchor(900, Box::new(Value::Tuple(vec![]))),
        Value::Alias(900),
        Value::Tuple(vec![]),
    ])
}

fn add_length_pow2(c: &Client) {
    let cases = [
        ("1", "2", "3"),
        ("9223372036854775807", "1", "9223372036854775808"),
        ("-18446744073709551616", "18446744073709551616", "0"),
        ("'ab'", "'c'", "'abc'"),
        ("b'ab'", "b'c'", "b'abc'"),
        ("[1]", "[2, 'x']", "[1, 2, 'x']"),
    ];
    for (a, b, want) in cases {
        let got = c.ok("add", &[lit(a), lit(b)]);
        assert!(same_structure(&got, &lit(want)), "add({a}, {b}) = {got:?}");
    }
    // Decimal additions, rounded to the default context's 28 digits
    let decimal_cases = [
        ("1.5", "2.25", "3.75"),
        ("1.000", "-0.001", "0.999"),
        ("-5", "3", "-2"),
        ("2.5", "-2.5", "0.0"),
        ("5E-7", "-5.5E-7", "-5E-8"),
        ("1E+5", "1E-30", "100000.0000000000000000000000"),
        ("1E+30", "-1", "1.000000000000000000000000000E+30"),
        ("-0.5", "1E+40", "1.000000000000000000000000000E+40"),
        (
            "123456789012345678901234567890",
            "-123456789012345678901234567889",
            "1",
        ),
    ];
    let dec = |s: &str| lit(&format!("Decimal('{s}')"));
    for (a, b, want) in decimal_cases {
        let got = c.ok("add", &[dec(a), dec(b)]);
        assert_eq!(got, dec(want), "add(Decimal('{a}'), Decimal('{b}'))");
    }
    // a Decimal of a million digits adds in one pass over its digits
    // (it was quadratic: 14 s for four million)
    let sevens = Value::Decimal(Decimal::parse(&"7".repeat(1_000_000)).unwrap());
    let got = c.ok("add", &[sevens, Value::int(1)]);
    assert_eq!(got, dec("7.777777777777777777777777778E+999999"));
    let ones = Value::Decimal(Decimal::parse(&"1".repeat(100_000)).unwrap());
    let got = c.ok("add", &[ones, dec("-0.5")]);
    assert_eq!(got, dec("1.111111111111111111111111111E+99999"));
    let over = Value::Decimal(Decimal::parse(&"7".repeat(1_000_001)).unwrap());
    let f = c.failure("add", &[over, Value::int(1)]);
    assert_eq!(f.type_name, "decimal.Overflow");
    // "%d" of an int or Decimal over 4300 digits raises (Python 3.11's
    // limit), without converting it
    for n in [
        Value::Decimal(Decimal::parse(&"7".repeat(5_000)).unwrap()),
        dec("7E+4300"),
        lit(&format!("1{}", "0".repeat(4_300))),
    ] {
        let f = c.failure("big", &[n]);
        assert_eq!(f.type_name, "builtins.ValueError");
        assert!(
            f.value.contains("Exceeds the limit (4300 digits)"),
            "{}",
            f.value
        );
    }
    let f = c.failure("big", &[dec("7E+4299")]);
    assert!(f.value.starts_with("big(7000"), "{}", f.value);
    let f = c.failure("pow2", &[lit(&format!("-1{}", "0".repeat(4_300)))]);
    assert!(f.value.contains("Exceeds the limit"), "{}", f.value);
    assert_eq!(c.ok("length", &[lit("[1, 2, 3]")]), Value::int(3));
    assert_eq!(c.ok("length", &[lit("'abcd'")]), Value::int(4));
    // a shared () and an equal unshared one are one member (fuzz finding
    // frozenset-anchored-and-equal-tuple): 1, as Python's set holds them
    assert_eq!(c.ok("length", &[shared_and_equal_tuples()]), Value::int(1));
    assert_eq!(c.ok("pow2", &[Value::int(0)]), Value::int(1));
    assert_eq!(c.ok("pow2", &[Value::int(64)]), lit("18446744073709551616"));
    let big = c.ok("pow2", &[Value::int(100_000)]);
    let Value::Int(i) = &big else {
        panic!("pow2(100000) = {big:?}")
    };
    assert_eq!(i.to_string().len(), 30103, "2**100000 has 30103 digits");
    let f = c.failure("pow2", &[Value::int(100_001)]);
    assert_eq!(f.type_name, "builtins.ValueError");
}

fn big_values(c: &Client) {
    assert_eq!(c.ok("big", &[Value::int(10)]), Value::bytes(b"xxxxxxxxxx"));
    let n = 16 << 20;
    let Value::Bytes(b) = c.ok("big", &[Value::int(n)]) else {
        panic!("big(16 MiB) is not bytes")
    };
    assert!(b.len() == n as usize && b.iter().all(|&x| x == b'x'));
    let payload = Value::bytes(&vec![7u8; 16 << 20]);
    let back = c.ok("echo", std::slice::from_ref(&payload));
    assert!(back == payload, "16 MiB echo differs");
    let f = c.failure("big", &[Value::int((256 << 20) + 1)]);
    assert_eq!(f.type_name, "builtins.ValueError");
}

fn point(c: &Client) {
    let p = c.ok("point", &[Value::int(1), Value::int(2)]);
    let Value::Copyable(cp) = &p else {
        panic!("point gave {p:?}")
    };
    assert_eq!(cp.type_name.as_str(), "kitchen-sink.Point");
    assert_eq!(
        cp.state,
        vec![
            (Text::from("x"), Value::int(1)),
            (Text::from("y"), Value::int(2))
        ]
    );
    let mine = Value::Copyable(Box::new(Copyable {
        type_name: Text::from("kitchen-sink.Point"),
        state: vec![
            (Text::from("x"), Value::str("a")),
            (Text::from("y"), lit("[1]")),
        ],
    }));
    let back = c.ok("echo", std::slice::from_ref(&mine));
    assert!(same_structure(&mine, &back), "echo(Point) = {back:?}");
}

fn unregistered_copyable(c: &Client) {
    // the server has no RemoteCopy for this name: a Violation answer
    let alien = Value::Copyable(Box::new(Copyable {
        type_name: Text::from("no.such.Type"),
        state: vec![(Text::from("a"), Value::int(1))],
    }));
    let f = c.failure("echo", &[alien]);
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    assert!(f.value.contains("unknown RemoteCopy name"), "{}", f.value);
    // and a client without Point registered refuses the answer
    let bare = c.engine.tub();
    let Value::Remote(sink) = bare.get_reference(&c.furl, T).unwrap() else {
        panic!("not remote")
    };
    match bare.call(&sink, "point", &[Value::int(1), Value::int(2)], &[], T) {
        Err(Error::Call(CallError::Violation(why))) => {
            assert!(why.contains("unknown RemoteCopy name"), "{why}")
        }
        r => panic!("point without a registered Point gave {r:?}"),
    }
    // the connection goes on
    let back = bare.call(&sink, "echo", &[Value::int(5)], &[], T).unwrap();
    assert_eq!(back, Value::int(5));
    bare.shutdown();
}

fn failures(c: &Client) {
    let f = c.failure("fail", &[Value::str("boom")]);
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("builtins.ValueError", "boom")
    );
    assert!(f.check("builtins.Exception"), "parents: {:?}", f.parents);
    let f = c.failure("divzero", &[]);
    assert_eq!(f.type_name, "builtins.ZeroDivisionError");
    assert!(
        f.check("builtins.ArithmeticError"),
        "parents: {:?}",
        f.parents
    );
    let t0 = Instant::now();
    let f = c.failure("fail_later", &[Value::str("late")]);
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("builtins.KeyError", "'late'")
    );
    let f = c
        .call_kw(
            "fail_later",
            &[Value::str("x")],
            &[(Text::from("seconds"), Value::Float(0.3))],
        )
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        f.failure().map(|f| f.type_name.as_str()),
        Some("builtins.KeyError")
    );
}

fn remote(v: Value) -> foolscap::value::RemoteRef {
    match v {
        Value::Remote(r) => r,
        other => panic!("expected a remote reference, got {other:?}"),
    }
}

fn counters_and_self(c: &Client) {
    let counter = remote(
        c.call_kw("make_counter", &[], &[(Text::from("start"), Value::int(5))])
            .unwrap(),
    );
    let t = &c.tub;
    assert_eq!(
        t.call(&counter, "increment", &[], &[], T).unwrap(),
        Value::int(6)
    );
    let by = [(Text::from("by"), Value::int(10))];
    assert_eq!(
        t.call(&counter, "increment", &[], &by, T).unwrap(),
        Value::int(16)
    );
    assert_eq!(
        t.call(&counter, "get", &[], &[], T).unwrap(),
        Value::int(16)
    );
    let zero = remote(c.ok("make_counter", &[]));
    assert_eq!(t.call(&zero, "get", &[], &[], T).unwrap(), Value::int(0));
    // every object the server sends comes with its own FURL (the server
    // has a location), and that FURL leads back to the same object
    let furl = String::from_utf8(counter.furl().expect("a FURL").to_vec()).unwrap();
    assert!(
        furl.starts_with(&c.furl[..c.furl.find('@').unwrap()]),
        "{furl}"
    );
    assert_eq!(remote(t.get_reference(&furl, T).unwrap()), counter);
    // get_self is the very reference we hold
    let me = remote(c.ok("get_self", &[]));
    assert_eq!(me, c.sink);
    let n = t.call(&me, "count_calls", &[], &[], T).unwrap();
    assert!(n.as_i64().unwrap() > 0);
}

fn identity(c: &Client) {
    let counter = c.ok("make_counter", &[]);
    let other = c.ok("make_counter", &[]);
    let yes = c.ok("is_same", &[counter.clone(), counter.clone()]);
    assert_eq!(yes, Value::Bool(true));
    assert_eq!(
        c.ok("is_same", &[counter.clone(), other.clone()]),
        Value::Bool(false)
    );
    c.ok("hold", std::slice::from_ref(&counter));
    assert_eq!(
        c.ok("is_held", std::slice::from_ref(&counter)),
        Value::Bool(true)
    );
    assert_eq!(
        c.ok("is_held", std::slice::from_ref(&other)),
        Value::Bool(false)
    );
    // one of our own objects, sent twice, is the same object over there
    let mine = c.tub.local(Arc::new(Recorder::default()));
    c.ok("hold", std::slice::from_ref(&mine));
    assert_eq!(
        c.ok("is_held", std::slice::from_ref(&mine)),
        Value::Bool(true)
    );
    let before = c.ok("count_calls", &[]).as_i64().unwrap();
    let after = c.ok("count_calls", &[]).as_i64().unwrap();
    assert_eq!(after, before + 1, "count_calls counts itself");
}

fn notes_and_call_only(c: &Client) {
    for i in 0..105 {
        c.tub
            .call_only(&c.sink, "note", &[Value::int(i)], &[])
            .unwrap();
    }
    // the calls are delivered in order, before this answered one
    let notes = c.ok("notes", &[]);
    let want: Vec<Value> = (5..105).map(Value::int).collect();
    assert_eq!(notes, Value::List(want));
}

fn call_backs(c: &Client) {
    let rec = Arc::new(Recorder::default());
    let mine = c.tub.local(rec.clone());
    let got = c.ok(
        "call_back",
        &[mine.clone(), Value::str("twice"), Value::int(21)],
    );
    assert_eq!(got, Value::int(42));
    let f = c.failure("call_back", &[mine.clone(), Value::str("boom")]);
    assert_eq!(f.type_name, "builtins.RuntimeError");
    assert_eq!(
        c.ok(
            "call_back_only",
            &[mine.clone(), Value::str("record"), Value::str("hi")]
        ),
        Value::None
    );
    let deadline = Instant::now() + T;
    while rec.seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "record was never called");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rec.seen.lock().unwrap()[0], Value::str("hi"));
}

/// One of the server's own counters sent back to it: the server calls it
/// as a local object, eventually (the `call_back_only` increment has run
/// before our next call arrives).
fn call_back_home(c: &Client) {
    let counter = c.ok("make_counter", &[Value::int(5)]);
    let got = c.ok(
        "call_back",
        &[counter.clone(), Value::str("increment"), Value::int(2)],
    );
    assert_eq!(got, Value::int(7));
    let only = c.ok(
        "call_back_only",
        &[counter.clone(), Value::str("increment"), Value::int(3)],
    );
    assert_eq!(only, Value::None);
    let now = c
        .tub
        .call(&counter, "increment", &[Value::int(0)], &[], T)
        .unwrap();
    assert_eq!(now, Value::int(10));
    let f = c.failure("call_back", &[counter, Value::str("nope")]);
    assert_eq!(f.type_name, "builtins.AttributeError");
    assert_eq!(f.value, "'Counter' object has no attribute 'remote_nope'");
}

fn types(c: &Client) {
    let counter = c.ok("make_counter", &[]);
    let me = c.ok("get_self", &[]);
    let mine = c.tub.local(Arc::new(Recorder::default()));
    let point = c.ok("point", &[Value::int(1), Value::int(2)]);
    let cases: Vec<(Value, &str)> = vec![
        (lit("(1, b'x', ['s'])"), "tuple[int,bytes,list[str]]"),
        (lit("None"), "None"),
        (lit("True"), "bool"),
        (lit("1.5"), "float"),
        (lit("Decimal('1')"), "Decimal"),
        (lit("{2, 'a', None}"), "set[None,int,str]"),
        (lit("frozenset({b'x'})"), "frozenset[bytes]"),
        (lit("{'a': 1, 'b': 2.5}"), "dict[str:float,str:int]"),
        (lit("[]"), "list[]"),
        (mine, "rref"),
        (counter, "local:Counter"),
        (me, "local:KitchenSink"),
        (point, "copyable:kitchen-sink.Point"),
        (cyclic_list(), "list[int,cycle]"),
        (shared_and_equal_tuples(), "frozenset[tuple[]]"),
        (
            shared_list(),
            "list[list[int,int],list[int,int],tuple[list[int,int]]]",
        ),
    ];
    for (v, want) in cases {
        let got = c.ok("types", std::slice::from_ref(&v));
        assert_eq!(got, Value::str(want), "types({v:?})");
    }
}

fn concurrency(c: &Client) {
    // a slow call does not hold up a quick one
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    c.tub
        .call_async(&c.sink, "sleep", &[Value::Float(0.5)], &[], move |r| {
            let _ = tx2.send(("sleep", r));
        })
        .unwrap();
    c.tub
        .call_async(&c.sink, "echo", &[Value::int(1)], &[], move |r| {
            let _ = tx.send(("echo", r));
        })
        .unwrap();
    let first = rx.recv_timeout(T).unwrap();
    assert_eq!(first.0, "echo");
    let second = rx.recv_timeout(T).unwrap();
    assert_eq!((second.0, second.1.unwrap()), ("sleep", Value::None));
    // 1000 calls in flight at once
    let n = 1000;
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        let v = Value::List(vec![Value::int(i), Value::str(&format!("n{i}"))]);
        c.tub
            .call_async(&c.sink, "echo", std::slice::from_ref(&v), &[], {
                let v = v.clone();
                move |r| {
                    let _ = tx.send(r.map(|got| got == v));
                }
            })
            .unwrap();
    }
    let ok = AtomicUsize::new(0);
    for _ in 0..n {
        if rx.recv_timeout(T).unwrap().unwrap() {
            ok.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(ok.load(Ordering::Relaxed), n as usize);
}

fn unknown_method(c: &Client) {
    let e = c.call("no_such_method", &[]).unwrap_err();
    let f = e.failure().expect("a remote failure");
    assert_eq!(f.type_name, "builtins.AttributeError");
    assert_eq!(c.ok("echo", &[Value::int(7)]), Value::int(7));
}

fn hangup(c: &Client) {
    // its own Tub: the hang-up must not disturb the other checks
    let other = c.another();
    let mine = other.tub.local(Arc::new(Recorder::default()));
    let (tx, rx) = mpsc::channel();
    other.tub.notify_on_disconnect(&other.sink, move || {
        let _ = tx.send(());
    });
    assert_eq!(other.ok("hangup", &[mine]), Value::Bool(true));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server dropped the connection");
    match other.call("echo", &[Value::int(1)]) {
        Err(Error::Tub(_)) | Err(Error::Call(CallError::ConnectionLost(_))) => {}
        r => panic!("a call over the dropped connection gave {r:?}"),
    }
    let again = c.another();
    assert_eq!(again.ok("echo", &[Value::int(2)]), Value::int(2));
    again.tub.shutdown();
    other.tub.shutdown();
}

fn disconnect_mid_call(c: &Client) {
    let other = c.another();
    let (tx, rx) = mpsc::channel();
    other
        .tub
        .call_async(&other.sink, "sleep", &[Value::Float(2.0)], &[], move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    other.tub.shutdown();
    match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
        // our own shutdown fails our outstanding calls with its own error
        Err(Error::Shutdown) => {}
        r => panic!("the interrupted call gave {r:?}"),
    }
    // the server keeps serving everyone else, also after the sleep ends
    assert_eq!(c.ok("echo", &[Value::int(3)]), Value::int(3));
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(c.ok("echo", &[Value::int(4)]), Value::int(4));
}

/// A `/proc/self/status` field, KiB.
fn own_status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Not a test: a measurement of the receiving side of a large answer,
/// run by hand (`cargo test --release --test interop_kitchen
/// large_answer_received -- --ignored --nocapture`, `ANSWER_MB`, default
/// 200; `ANSWER_DRIVER`, `mio`, `threads` or `tokio`): a Rust client calls the
/// Python twin's `big(n)` and prints its own peak resident memory over
/// its size (one engine per run: the peak is the process's). (The
/// sending side: the README's performance section.)
#[test]
#[ignore = "measurement, run by hand"]
fn large_answer_received() {
    let mb: usize = std::env::var("ANSWER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let n = mb * 1_000_000;
    let server = Server::python(&[]);
    let driver = match std::env::var("ANSWER_DRIVER").as_deref() {
        Ok("threads") => Driver::Threads,
        Ok("tokio") => Driver::Tokio,
        _ => Driver::Mio,
    };
    {
        let c = Client::connect(&server.furl, driver);
        let _ = c.ok("big", &[Value::int(10)]);
        let before = own_status_kib("VmRSS:");
        // the peak so far is this process's own business: the answer's
        // peak shows as growth over the resident memory before it
        let peak_before = own_status_kib("VmHWM:");
        let t = Instant::now();
        let got = c.ok("big", &[Value::int(n as i64)]);
        let took = t.elapsed();
        let Value::Bytes(b) = &got else {
            panic!("big({n}) is not bytes")
        };
        assert_eq!(b.len(), n);
        let peak = own_status_kib("VmHWM:");
        eprintln!(
            "{driver:?} client, {mb} MB answer from Python in {took:?}: RSS before {} MiB, \
             peak {} MiB (before the call {} MiB): {:.2}x the answer",
            before >> 10,
            peak >> 10,
            peak_before >> 10,
            (peak.saturating_sub(before) * 1024) as f64 / n as f64
        );
        drop(got);
        c.tub.shutdown();
    }
}
