//! Typed interfaces against real Python, both directions and on both
//! engines: a Python client whose `RITyped` RemoteInterface has the same
//! declaration (`tests/interop/fstyped.py call`) calls the typed Rust
//! server of `tests/typed_iface`, and the typed Rust client calls the
//! Python server (`fstyped.py serve`). The Python client also runs
//! against the Python server, so a check that is wrong fails there too.

mod common;
#[path = "typed_iface/mod.rs"]
mod typed_iface;

use std::sync::Arc;
use std::time::Duration;

use common::process::TempDir;
use common::{run_script_json, Driver, Engine, PyProcess};
use foolscap::typed::Copyable as _;
use serde_json::{json, Value as Json};
use typed_iface::{Point, TypedClient, TypedImpl, TypedServer};

const T: Duration = Duration::from_secs(30);

/// `fstyped.py call` against `furl`: its one JSON object of results.
fn python_client(furl: &str) -> Json {
    let dir = TempDir::new("typed");
    let cert = dir.path().join("client.pem");
    let lines = run_script_json(
        "fstyped.py",
        &["call", cert.to_str().unwrap(), furl],
        Duration::from_secs(120),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let out = lines.into_iter().next().unwrap();
    assert!(out.get("error").is_none(), "fstyped.py call: {out}");
    out
}

/// A local Violation raised by the Python caller's own schema check:
/// nothing was sent.
fn local_violation(j: &Json, text: &str) {
    assert_eq!(j["type"], "foolscap.tokens.Violation", "{j}");
    assert_eq!(j["local"], true, "{j}");
    assert!(j["value"].as_str().unwrap().contains(text), "{j}");
}

fn remote_type_error(j: &Json, text: &str) {
    assert_eq!(j["type"], "builtins.TypeError", "{j}");
    assert_eq!(j["local"], false, "{j}");
    assert_eq!(j["value"], text, "{j}");
}

/// What the Python client sees from either server.
fn check_python_client(out: &Json, rust_server: bool) {
    // the server announced the interface, so the Python caller checks
    // its calls against its own declaration of it
    assert_eq!(out["interface"], "RITyped.foolscap-rs.example");
    assert_eq!(out["add"], json!({"ok": 3}));
    assert_eq!(out["add_kw"], json!({"ok": 3}));
    assert_eq!(out["put_bytes_limit"], json!({"ok": 65536}));
    local_violation(&out["put_bytes_over"], "string too long (65537 > 65536)");
    assert_eq!(out["put_list_limit"], json!({"ok": 100}));
    local_violation(&out["put_list_over"], "list too long");
    assert_eq!(out["greet"], json!({"ok": "hello ann"}));
    assert_eq!(out["greet_twice"], json!({"ok": "hello bohello bo"}));
    local_violation(&out["greet_over"], "string too long (21 > 20)");
    local_violation(&out["greet_bytes"], "not a unicode object");
    // a Python set comes back a set (never a frozenset), every type intact
    assert_eq!(out["mixed"], json!({"equal": true, "set": "set"}));
    assert_eq!(out["maps"], true);
    assert_eq!(out["maybe_none"], json!({"ok": null}));
    assert_eq!(out["maybe_4"], json!({"ok": 5}));
    assert_eq!(out["move_point"], true);
    assert_eq!(out["fail"]["type"], "builtins.ValueError");
    assert_eq!(out["fail"]["value"], "boom");
    assert_eq!(out["later"], json!({"ok": 42}));
    assert_eq!(out["call_back"], json!({"ok": 10}));
    assert_eq!(out["int32_limit"], json!({"ok": 2147483647}));
    local_violation(&out["int32_over"], "number too large");
    // Python's caller refuses a method its declaration lacks
    assert_eq!(out["nosuch"]["local"], true, "{}", out["nosuch"]);
    assert!(out["nosuch"]["value"]
        .as_str()
        .unwrap()
        .contains("does not offer nosuch"));
    // unconstrained: the receiver binds as CPython binds
    assert_eq!(out["loose"], json!({"ok": 3}));
    remote_type_error(
        &out["loose_missing"],
        "TypedImpl.remote_loose() missing 1 required positional argument: 'a'",
    );
    remote_type_error(
        &out["loose_extra"],
        "TypedImpl.remote_loose() takes from 2 to 3 positional arguments but 4 were given",
    );
    remote_type_error(
        &out["loose_duplicate"],
        "TypedImpl.remote_loose() got multiple values for argument 'a'",
    );
    remote_type_error(
        &out["loose_unknown"],
        "TypedImpl.remote_loose() got an unexpected keyword argument 'z'",
    );
    if rust_server {
        remote_type_error(
            &out["loose_type"],
            "TypedImpl.remote_loose() argument 'a' must be int, not str",
        );
    } else {
        assert_eq!(out["loose_type"]["type"], "builtins.TypeError");
    }
    assert_eq!(out["anything"], json!({"ok": [1, "two", "b'three'"]}));
    assert_eq!(out["after"], json!({"ok": 5}));
}

fn rust_server(driver: Driver) -> (Engine, foolscap::Tub, String) {
    let engine = Engine::start(driver);
    let tub = engine.tub();
    tub.listen("127.0.0.1:0").unwrap();
    Point::register(&tub);
    let furl = tub
        .register(Arc::new(TypedServer(TypedImpl::default())), Some("typed"))
        .unwrap();
    (engine, tub, furl.to_string())
}

#[test]
fn python_client_calls_the_typed_rust_server_on_threads() {
    let (_engine, _tub, furl) = rust_server(Driver::Threads);
    check_python_client(&python_client(&furl), true);
}

#[test]
fn python_client_calls_the_typed_rust_server_on_mio() {
    let (_engine, _tub, furl) = rust_server(Driver::Mio);
    check_python_client(&python_client(&furl), true);
}

#[test]
fn python_client_calls_the_python_server() {
    let dir = TempDir::new("typed");
    let (_py, hello) = PyProcess::serve("fstyped.py", &dir.path().join("server.pem"));
    check_python_client(&python_client(hello["furl"].as_str().unwrap()), false);
}

fn rust_client_calls_python(driver: Driver) {
    let dir = TempDir::new("typed");
    let (_py, hello) = PyProcess::serve("fstyped.py", &dir.path().join("server.pem"));
    let engine = Engine::start(driver);
    let client = engine.tub();
    Point::register(&client);
    let typed = TypedClient::connect(&client, hello["furl"].as_str().unwrap(), T).unwrap();
    typed_iface::exercise(&client, &typed, false);
}

#[test]
fn typed_rust_client_calls_the_python_server_on_threads() {
    rust_client_calls_python(Driver::Threads);
}

#[test]
fn typed_rust_client_calls_the_python_server_on_mio() {
    rust_client_calls_python(Driver::Mio);
}

#[test]
fn python_client_calls_the_typed_rust_server_on_tokio() {
    let (_engine, _tub, furl) = rust_server(Driver::Tokio);
    check_python_client(&python_client(&furl), true);
}

#[test]
fn typed_rust_client_calls_the_python_server_on_tokio() {
    rust_client_calls_python(Driver::Tokio);
}

/// The mio engine's current-thread runtime (`Runtime::current_thread`):
/// the typed client's blocking calls drive the loop on the test's thread
/// (Python's `call_back` calls our object during such a wait, `later`
/// answers after a timer of Python's).
#[test]
fn typed_rust_client_on_a_mio_current_thread_runtime_calls_the_python_server() {
    let dir = TempDir::new("typed");
    let (_py, hello) = PyProcess::serve("fstyped.py", &dir.path().join("server.pem"));
    let rt = foolscap::mio::Runtime::current_thread(foolscap::mio::LoopConfig::default()).unwrap();
    let client = rt.new_tub().unwrap();
    Point::register(&client);
    let typed = TypedClient::connect(&client, hello["furl"].as_str().unwrap(), T).unwrap();
    typed_iface::exercise(&client, &typed, false);
    rt.shutdown(T);
}

/// A typed Rust server on a current-thread runtime, driven by
/// `Runtime::run` on a thread of its own, answers the Python client.
#[test]
fn python_client_calls_the_typed_rust_server_on_a_mio_current_thread_runtime() {
    let rt = foolscap::mio::Runtime::current_thread(foolscap::mio::LoopConfig::default()).unwrap();
    let tub = rt.new_tub().unwrap();
    tub.listen("127.0.0.1:0").unwrap();
    Point::register(&tub);
    let furl = tub
        .register(Arc::new(TypedServer(TypedImpl::default())), Some("typed"))
        .unwrap();
    let runner = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.run())
    };
    check_python_client(&python_client(&furl.to_string()), true);
    rt.shutdown(T);
    runner.join().unwrap().unwrap();
}
