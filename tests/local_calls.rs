//! Calls to our own objects through the same API as remote ones (issue
//! 12, docs/protocol.md §5.6): eventual, as Python's LocalReferenceable —
//! the object runs on a later turn, never inside its caller, on both
//! engines.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Driver;
use foolscap::value::Value;
use foolscap::{Call, Error, Object};

const T: Duration = Duration::from_secs(30);

/// `go` calls `inner` on itself (a `Value::Local`) and answers with the
/// order things happened in.
#[derive(Default)]
struct Recursive {
    log: Arc<Mutex<Vec<&'static str>>>,
    /// The thread running `go`, while it runs.
    in_go: Mutex<Option<std::thread::ThreadId>>,
    /// `inner` ran inside `go` (on its thread, while it ran).
    reentered: std::sync::atomic::AtomicBool,
}

impl Object for Recursive {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "go" => {
                *self.in_go.lock().unwrap() = Some(std::thread::current().id());
                self.log.lock().unwrap().push("go starts");
                let me = Value::Local(call.object());
                let tub = call.tub().clone();
                let log = self.log.clone();
                tub.call_async(&me, "inner", &[Value::int(1)], &[], move |r| {
                    log.lock().unwrap().push("inner answered");
                    let order: Vec<Value> =
                        log.lock().unwrap().iter().map(|s| Value::str(s)).collect();
                    call.answer(Value::List(vec![r.unwrap(), Value::List(order)]))
                })
                .unwrap();
                self.log.lock().unwrap().push("go returns");
                *self.in_go.lock().unwrap() = None;
            }
            "inner" => {
                if *self.in_go.lock().unwrap() == Some(std::thread::current().id()) {
                    self.reentered
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                self.log.lock().unwrap().push("inner runs");
                let x = call.args[0].as_i64().unwrap();
                call.answer(Value::int(x + 1))
            }
            _ => call.no_such_method("Recursive"),
        }
    }
}

fn check(driver: Driver) {
    let engine = common::Engine::start(driver);
    let server = engine.tub();
    server.listen("127.0.0.1:0").unwrap();
    let object = Arc::new(Recursive::default());
    let furl = server.register(object.clone(), None).unwrap();
    let client = foolscap::threads::new_tub().unwrap();
    let r = client.get_reference(&furl.to_string(), T).unwrap();
    let got = client.call(&r, "go", &[], &[], T).unwrap();
    // never inside its caller
    assert!(!object.reentered.load(std::sync::atomic::Ordering::SeqCst));
    let Value::List(parts) = &got else {
        panic!("{got:?}")
    };
    assert_eq!(parts[0], Value::int(2));
    if driver == Driver::Mio {
        // one thread: the caller has returned before the callee runs
        let want: Vec<Value> = ["go starts", "go returns", "inner runs", "inner answered"]
            .iter()
            .map(|s| Value::str(s))
            .collect();
        assert_eq!(parts[1], Value::List(want));
    }
    // from an application thread, blocking, on the server's own object
    let local = server.local(Arc::new(Recursive::default()));
    assert_eq!(
        server
            .call(&local, "inner", &[Value::int(41)], &[], T)
            .unwrap(),
        Value::int(42)
    );
    // a failure of the object arrives as its Failure
    let f = server.call(&local, "nope", &[], &[], T).unwrap_err();
    assert_eq!(
        f.failure().unwrap().value,
        "'Recursive' object has no attribute 'remote_nope'"
    );
    // something that is no reference
    let e = server.call(&Value::int(5), "x", &[], &[], T).unwrap_err();
    assert!(matches!(e, Error::NotAReference("int")), "{e:?}");
    assert_eq!(e.to_string(), "'int' object has no attribute 'callRemote'");
}

#[test]
fn a_local_object_is_called_on_a_later_turn_threads() {
    check(Driver::Threads);
}

#[test]
fn a_local_object_is_called_on_a_later_turn_mio() {
    check(Driver::Mio);
}

#[test]
fn a_local_object_is_called_on_a_later_turn_tokio() {
    check(Driver::Tokio);
}
