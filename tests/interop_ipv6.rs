//! IPv6 end to end: a Tub that listens on `::1` publishes a FURL with
//! `tcp:[::1]:PORT` (one pair of brackets, the only IPv6 form Python's tcp
//! hint handler accepts) and is reachable through it, from Rust on either
//! engine and from Python foolscap; and Rust dials the IPv6 FURL a Python
//! Tub publishes.
//!
//! These tests need an IPv6 loopback. Without one they fail, naming the
//! cause, rather than skip: CI machines have `::1`, and a skipped test
//! would hide the day they do not.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use common::kitchen::{Client, Server, T};
use common::{run_script_json, Driver, Engine};
use foolscap::value::{RemoteRef, Value};
use foolscap::{Call, Object};
use serde_json::Value as Json;

const ENGINES: [Driver; 3] = [Driver::Mio, Driver::Threads, Driver::Tokio];

/// Panics, saying why, unless a socket can listen on `[::1]`.
fn require_ipv6_loopback() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        panic!(
            "this machine has no IPv6 loopback: binding [::1]:0 failed ({e}). \
             The IPv6 tests need `::1` (see `ip -6 addr`); they fail rather \
             than skip so that a machine without it is noticed."
        );
    }
}

/// Checks that `furl` names its Tub by `[::1]` and nothing else, written
/// with one pair of brackets.
fn assert_ipv6_loopback_furl(furl: &str) {
    assert!(furl.contains("@tcp:[::1]:"), "no tcp:[::1]: hint in {furl}");
    assert!(!furl.contains("[["), "host bracketed twice in {furl}");
    let parsed = foolscap::furl::Furl::parse(furl).expect("the FURL parses");
    let hints: Vec<_> = parsed.tcp_hints().collect();
    assert!(
        hints.len() == 1 && hints[0].0 == "::1",
        "hints of {furl}: {hints:?}"
    );
}

/// `add(1, 2)` from a Rust client on each engine.
fn rust_clients_add(furl: &str) {
    for driver in ENGINES {
        let c = Client::connect(furl, driver);
        assert_eq!(
            c.ok("add", &[Value::int(1), Value::int(2)]),
            Value::int(3),
            "add(1, 2) from a {} client",
            driver.name()
        );
        c.tub.shutdown();
    }
}

/// The kitchen-sink checks `add` (sums of every type), `counter` (a new
/// object, called through the same connection) and `call_back` (the
/// server calls the Python client back over it) from Python foolscap.
fn python_client_checks(furl: &str) {
    let only = "add,counter,call_back";
    let lines = run_script_json(
        "kitchen_check.py",
        &[furl, "--only", only],
        Duration::from_secs(300),
    );
    let failed: Vec<&Json> = lines
        .iter()
        .filter(|l| l.get("check").is_some() && l["ok"] != Json::Bool(true))
        .collect();
    assert!(
        failed.is_empty(),
        "kitchen_check.py against {furl}: {failed:?}"
    );
    let summary = lines
        .iter()
        .find(|l| l.get("summary").is_some())
        .unwrap_or_else(|| panic!("no summary from kitchen_check.py: {lines:?}"));
    assert_eq!(summary["passed"], Json::from(3), "{lines:?}");
}

struct Adder;

impl Object for Adder {
    fn call(&self, call: Call) {
        let a = call.arg(0, "a").and_then(Value::as_i64);
        let b = call.arg(1, "b").and_then(Value::as_i64);
        match (call.method.as_str(), a, b) {
            ("add", Some(a), Some(b)) => call.answer(Value::int(a + b)),
            _ => call.answer(Value::None),
        }
    }
}

/// `Tub::listen` on `[::1]` on either engine: the FURL it makes, and
/// calls through it from a Tub on either engine (in this process).
#[test]
fn a_tub_listening_on_ipv6_loopback_publishes_a_furl_both_engines_dial() {
    require_ipv6_loopback();
    for server_driver in ENGINES {
        let server_engine = Engine::start(server_driver);
        let server = server_engine.tub();
        let bound: SocketAddr = server.listen("[::1]:0").expect("listen on [::1]:0");
        assert!(bound.is_ipv6(), "{bound}");
        let furl = server.register(Arc::new(Adder), None).unwrap().to_string();
        assert_ipv6_loopback_furl(&furl);
        assert!(
            furl.contains(&format!("@tcp:[::1]:{}/", bound.port())),
            "{furl} for {bound}"
        );
        for client_driver in ENGINES {
            let client_engine = Engine::start(client_driver);
            let client = client_engine.tub();
            let what = format!(
                "{} client of a {} server",
                client_driver.name(),
                server_driver.name()
            );
            let adder: RemoteRef = match client.get_reference(&furl, T) {
                Ok(Value::Remote(r)) => r,
                other => panic!("{what}: get_reference({furl}) gave {other:?}"),
            };
            let sum = client.call(&adder, "add", &[Value::int(1), Value::int(2)], &[], T);
            assert_eq!(sum.expect(&what), Value::int(3), "{what}");
            client.shutdown();
        }
        server.shutdown();
    }
}

#[test]
fn rust_mio_kitchen_sink_on_ipv6_called_from_rust_and_python() {
    require_ipv6_loopback();
    let server = Server::rust(Driver::Mio, &["--listen", "::1"]);
    assert_ipv6_loopback_furl(&server.furl);
    rust_clients_add(&server.furl);
    python_client_checks(&server.furl);
}

#[test]
fn rust_threads_kitchen_sink_on_ipv6_called_from_rust_and_python() {
    require_ipv6_loopback();
    let server = Server::rust(Driver::Threads, &["--listen", "::1"]);
    assert_ipv6_loopback_furl(&server.furl);
    rust_clients_add(&server.furl);
    python_client_checks(&server.furl);
}

#[test]
fn rust_tokio_kitchen_sink_on_ipv6_called_from_rust_and_python() {
    require_ipv6_loopback();
    let server = Server::rust(Driver::Tokio, &["--listen", "::1"]);
    assert_ipv6_loopback_furl(&server.furl);
    rust_clients_add(&server.furl);
    python_client_checks(&server.furl);
}

/// The Python twin publishes `tcp:[::1]:PORT` too (it writes its location
/// itself), and both Rust engines dial it.
#[test]
fn python_kitchen_sink_on_ipv6_called_from_rust() {
    require_ipv6_loopback();
    let server = Server::python(&["--listen", "::1"]);
    assert_ipv6_loopback_furl(&server.furl);
    rust_clients_add(&server.furl);
}
