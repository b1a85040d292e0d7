//! Shared arguments through a real call, Rust to Rust: `f(x, x)` arrives
//! as an anchor and an alias, and the object reads both alike.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foolscap_app::{Call, Object, Signature, Tub};
use foolscap_core::value::{RemoteRef, Text, Value};

const T: Duration = Duration::from_secs(30);

/// `def remote_bound(self, a, b, *, c)`
const BOUND: Signature = Signature::new("bound", &["a", "b"]).keyword_only(&["c"]);

struct Probe {
    kept: Mutex<Value>,
}

/// The lengths `as_seq` reads from each value (-1: not a sequence).
fn lengths<'a>(values: impl IntoIterator<Item = Option<&'a Value>>) -> Value {
    Value::List(
        values
            .into_iter()
            .map(|v| Value::int(v.and_then(Value::as_seq).map_or(-1, |s| s.len() as i64)))
            .collect(),
    )
}

impl Object for Probe {
    fn class_name(&self) -> &str {
        "Probe"
    }

    fn call(&self, call: Call) {
        match call.method.as_str() {
            // f(a, b): what as_seq reads from each argument, and whether
            // the second really came as an alias
            "f" => {
                let read = lengths([call.arg(0, "a"), call.arg(1, "b")]);
                let alias = Value::Bool(matches!(call.args.get(1), Some(Value::Alias(_))));
                call.answer(Value::List(vec![read, alias]))
            }
            "bound" => {
                let result = call
                    .bind("Probe", &BOUND)
                    .map(|args| lengths([args.get(0), args.get(1), args.named("c")]));
                call.reply(result)
            }
            // keep(a, b): keeps b, an alias of a, past this call
            "keep" => {
                let kept = call.arg(1, "b").map(|b| call.detach(b));
                *self.kept.lock().unwrap() = kept.unwrap_or(Value::None);
                call.answer(Value::None)
            }
            "kept" => {
                let kept = self.kept.lock().unwrap().clone();
                call.answer(kept)
            }
            _ => call.no_such_method("Probe"),
        }
    }
}

fn pair() -> (Tub, Tub, RemoteRef) {
    let server = foolscap_threads::new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let probe = Probe {
        kept: Mutex::new(Value::None),
    };
    let furl = server.register(Arc::new(probe), None).unwrap();
    let client = foolscap_threads::new_tub().unwrap();
    let Value::Remote(r) = client.get_reference(&furl.to_string(), T).unwrap() else {
        panic!("not a remote reference")
    };
    (server, client, r)
}

fn shared_list() -> Value {
    Value::Anchor(
        1,
        Box::new(Value::List(vec![
            Value::int(1),
            Value::str("two"),
            Value::None,
        ])),
    )
}

#[test]
fn both_arguments_of_f_x_x_read_as_the_shared_list() {
    let (server, client, probe) = pair();
    let args = [shared_list(), Value::Alias(1)];
    let answer = client.call(&probe, "f", &args, &[], T).unwrap();
    assert_eq!(
        answer,
        Value::List(vec![
            Value::List(vec![Value::int(3), Value::int(3)]),
            Value::Bool(true)
        ])
    );
    // by keyword, and bound to a signature
    let kwargs = [(Text::from("b"), Value::Alias(1))];
    let answer = client.call(&probe, "f", &args[..1], &kwargs, T).unwrap();
    assert_eq!(
        answer,
        Value::List(vec![
            Value::List(vec![Value::int(3), Value::int(3)]),
            Value::Bool(false)
        ])
    );
    let kwargs = [(Text::from("c"), Value::Alias(1))];
    let answer = client.call(&probe, "bound", &args, &kwargs, T).unwrap();
    assert_eq!(
        answer,
        Value::List(vec![Value::int(3), Value::int(3), Value::int(3)])
    );
    server.shutdown();
    client.shutdown();
}

#[test]
fn binding_errors_reach_the_caller_as_python_words_them() {
    let (server, client, probe) = pair();
    let args = [shared_list(), Value::Alias(1)];
    let err = client.call(&probe, "bound", &args, &[], T).unwrap_err();
    let failure = err.failure().expect("a remote failure");
    assert_eq!(failure.type_name, "builtins.TypeError");
    assert_eq!(
        failure.value,
        "Probe.remote_bound() missing 1 required keyword-only argument: 'c'"
    );
    server.shutdown();
    client.shutdown();
}

#[test]
fn a_detached_alias_is_kept_and_sent_in_a_later_answer() {
    let (server, client, probe) = pair();
    // keep(y, y) with y = [y, 5]: the kept alias is still the cycle
    let y = Value::Anchor(
        1,
        Box::new(Value::List(vec![Value::Alias(1), Value::int(5)])),
    );
    client
        .call(&probe, "keep", &[y, Value::Alias(1)], &[], T)
        .unwrap();
    let kept = client.call(&probe, "kept", &[], &[], T).unwrap();
    let Value::Anchor(id, inner) = &kept else {
        panic!("not shared: {kept:?}")
    };
    assert_eq!(
        inner.as_seq(),
        Some(&[Value::Alias(*id), Value::int(5)][..])
    );
    server.shutdown();
    client.shutdown();
}
