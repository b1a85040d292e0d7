//! The kitchen-sink servers (Rust example on either engine, and the
//! Python twin) as child processes, the Python checker, and the same
//! checks made by a Rust client on either engine.

use std::sync::Mutex;
use std::time::Duration;

use foolscap::broker::{CallError, Failure};
use foolscap::value::{Text, Value};
use foolscap::{Call, Error, Object, Tub};
use serde_json::Value as Json;

use super::{encode, run_script_json, vocab, Driver, Engine};

/// A kitchen-sink server process, killed on drop: `Server::rust(driver,
/// extra)` (the example on a [`Driver`]'s engine) or `Server::python(extra)`.
pub type Server = super::process::Server;

/// Generous per-call limit: CI machines are slow and shared.
pub const T: Duration = Duration::from_secs(60);

/// Runs `kitchen_check.py FURL`; returns the failed checks' lines and the
/// number passed.
pub fn python_checker(furl: &str) -> (usize, Vec<Json>) {
    let lines = run_script_json("kitchen_check.py", &[furl], Duration::from_secs(600));
    let summary = lines
        .iter()
        .find(|l| l.get("summary").is_some())
        .unwrap_or_else(|| panic!("no summary from kitchen_check.py: {lines:?}"));
    let passed = summary["passed"].as_u64().expect("passed count") as usize;
    let failed: Vec<Json> = lines
        .iter()
        .filter(|l| l.get("check").is_some() && l["ok"] != Json::Bool(true))
        .cloned()
        .collect();
    (passed, failed)
}

// ------------------------------------------------------------ Rust client

/// The traceback text of the Rust client's `boom_traced` failure.
pub const TRACEBACK: &str =
    "Traceback (most recent call last):\n  File \"client.py\", line 1, in boom\nRuntimeError: traced\n";

/// An object of the Rust client that the server calls back.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<Value>>,
}

impl Object for Recorder {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "twice" => {
                let x = call.arg(0, "x").and_then(Value::as_i64).unwrap_or(0);
                call.answer(Value::int(x * 2));
            }
            "boom" => {
                let mut f = Failure::new("builtins.RuntimeError", "client says no");
                f.parents = vec![
                    "builtins.RuntimeError".into(),
                    "builtins.Exception".into(),
                    "builtins.BaseException".into(),
                    "builtins.object".into(),
                ];
                call.fail(f)
            }
            "boom_traced" => {
                let mut f = Failure::new("builtins.RuntimeError", "traced");
                f.traceback = TRACEBACK.into();
                call.fail(f)
            }
            "record" => {
                let x = call.arg(0, "x").cloned().unwrap_or(Value::None);
                self.seen.lock().unwrap().push(x);
                call.answer(Value::None)
            }
            _ => call.no_such_method("Recorder"),
        }
    }

    fn class_name(&self) -> &str {
        "Recorder"
    }
}

pub fn lit(s: &str) -> Value {
    foolscap_literal::parse(s).unwrap_or_else(|e| panic!("literal {s:?}: {e}"))
}

/// The same structure, sharing and cycles included: equal canonical bytes
/// once set elements are put in one order (Python iterates sets in hash
/// order, so a set may come back reordered).
pub fn same_structure(a: &Value, b: &Value) -> bool {
    encode(&sorted_sets(a), vocab(0)) == encode(&sorted_sets(b), vocab(0))
}

fn sorted_sets(v: &Value) -> Value {
    let sort = |items: &[Value]| {
        let mut items: Vec<Value> = items.iter().map(sorted_sets).collect();
        items.sort_by_key(|x| encode(x, vocab(0)));
        items
    };
    match v {
        Value::Set(items) => Value::Set(sort(items)),
        Value::FrozenSet(items) => Value::FrozenSet(sort(items)),
        Value::List(items) => Value::List(items.iter().map(sorted_sets).collect()),
        Value::Tuple(items) => Value::Tuple(items.iter().map(sorted_sets).collect()),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .iter()
                .map(|(k, x)| (sorted_sets(k), sorted_sets(x)))
                .collect(),
        ),
        Value::Anchor(id, inner) => Value::Anchor(*id, Box::new(sorted_sets(inner))),
        other => other.clone(),
    }
}

/// The client side of the kitchen-sink checks, run against `furl`. Its
/// Tub runs on its own engine (for mio, an event loop of its own, shut
/// down when the client is dropped).
pub struct Client {
    pub tub: Tub,
    pub sink: foolscap::value::RemoteRef,
    pub furl: String,
    // dropped last: the event loop outlives the Tub handle
    pub engine: Engine,
}

impl Client {
    pub fn connect(furl: &str, driver: Driver) -> Client {
        let engine = Engine::start(driver);
        let tub = engine.tub();
        tub.register_copyable("kitchen-sink.Point");
        let sink = match tub.get_reference(furl, T).expect("get_reference") {
            Value::Remote(r) => r,
            other => panic!("not a remote reference: {other:?}"),
        };
        Client {
            tub,
            sink,
            furl: furl.to_owned(),
            engine,
        }
    }

    /// Another client of the same server on the same kind of engine.
    pub fn another(&self) -> Client {
        Client::connect(&self.furl, self.engine.driver)
    }

    pub fn call(&self, method: &str, args: &[Value]) -> Result<Value, Error> {
        self.tub.call(&self.sink, method, args, &[], T)
    }

    pub fn call_kw(
        &self,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<Value, Error> {
        self.tub.call(&self.sink, method, args, kwargs, T)
    }

    pub fn ok(&self, method: &str, args: &[Value]) -> Value {
        self.call(method, args)
            .unwrap_or_else(|e| panic!("{method}{args:?} failed: {e}"))
    }

    pub fn failure(&self, method: &str, args: &[Value]) -> Failure {
        match self.call(method, args) {
            Err(Error::Call(CallError::Remote(f))) => f,
            other => panic!("{method} should fail remotely, got {other:?}"),
        }
    }
}

/// Values of every type, sharing and cycles included, as Python literals.
pub const ECHO_LITERALS: &[&str] = &[
    "None",
    "True",
    "False",
    "0",
    "-1",
    "2147483648",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "-1267650600228229401496703205376",
    "0.0",
    "-0.0",
    "1.5",
    "float('inf')",
    "-float('inf')",
    "1e300",
    "5e-324",
    "b''",
    "b'\\x00\\xff'",
    "''",
    "'h\\xe9llo \\U0001f600'",
    "'\\x00'",
    "Decimal('1.50')",
    "Decimal('-0')",
    "Decimal('1E+3')",
    "[]",
    "()",
    "[1, 'a', b'b', None]",
    "(1, (2, (3,)))",
    "{1, 2, 3}",
    "set()",
    "frozenset({'a', 'b'})",
    "{}",
    "{'a': 1, 'b': [2, 3]}",
    "{(1, 2): 'tuple key', (0, 5): 'another'}",
    "{b'k': {'nested': {'deep': [1, [2, [3]]]}}}",
    "{True: 2, 2.5: 3, -7: 4}",
    "[{'x': (1, frozenset({2}))}, {3: {4}}]",
];
