//! The typed interface macro end to end, Rust to Rust on both engines:
//! schema derived from the Rust declaration, server adapter (binding,
//! conversion errors with their texts), client stub (blocking, callback,
//! references to the interface as arguments, answers later).

mod common;
#[path = "typed_iface/mod.rs"]
mod typed_iface;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{Driver, Engine};
use foolscap::typed::{BigInt, Constraint, Copyable as _, InterfaceSchema, RemoteInterface, Value};
use foolscap::value::Text;
use foolscap::Tub;
use typed_iface::{Point, TypedClient, TypedImpl, TypedServer};

const T: Duration = Duration::from_secs(30);

/// A Rust server and a Rust client on `driver`'s engine.
fn pair(engine: &Engine) -> (Tub, Tub, TypedClient) {
    let server = engine.tub();
    server.listen("127.0.0.1:0").unwrap();
    Point::register(&server);
    let furl = server
        .register(Arc::new(TypedServer(TypedImpl::default())), None)
        .unwrap();
    let client = engine.tub();
    Point::register(&client);
    let typed = TypedClient::connect(&client, &furl.to_string(), T).unwrap();
    (server, client, typed)
}

#[test]
fn the_schema_is_derived_from_the_rust_declaration() {
    let s: Arc<InterfaceSchema> = TypedClient::schema();
    assert_eq!(s.name(), "RITyped.foolscap-rs.example");
    assert_eq!(TypedServer::<TypedImpl>::NAME, s.name());
    let arg = |m: &str, i: usize| s.method(m).unwrap().arguments()[i].clone();
    assert_eq!(arg("add", 0).constraint(), &Constraint::int_bytes(8));
    assert_eq!(
        arg("put_bytes", 0).constraint(),
        &Constraint::byte_string(Some(65536))
    );
    assert_eq!(
        arg("put_list", 0).constraint(),
        &Constraint::list_of(Constraint::int_bytes(8), Some(100))
    );
    assert_eq!(arg("greet", 0).constraint(), &Constraint::unicode(Some(20)));
    assert!(arg("greet", 0).is_required());
    assert!(!arg("greet", 1).is_required());
    assert_eq!(arg("greet", 1).constraint(), &Constraint::int_bytes(4));
    assert_eq!(
        arg("maybe", 0).constraint(),
        &Constraint::choice_of([Constraint::int_bytes(8), Constraint::Nothing])
    );
    assert_eq!(
        s.method("maybe").unwrap().returns(),
        &Constraint::int_bytes(8).or_none()
    );
    assert_eq!(
        arg("maps", 1).constraint(),
        &Constraint::set_of(Constraint::text(), None)
    );
    assert_eq!(
        arg("call_back", 0).constraint(),
        &Constraint::reference_to("RITyped.foolscap-rs.example")
    );
    // the Reply is the answer, not an argument
    assert_eq!(s.method("call_back").unwrap().arguments().len(), 2);
    assert_eq!(
        s.method("later").unwrap().returns(),
        &Constraint::int_bytes(8)
    );
    assert_eq!(arg("int32", 0).constraint(), &Constraint::int32());
    assert_eq!(s.method("fail").unwrap().returns(), &Constraint::Nothing);
    assert_eq!(arg("move_point", 0).constraint(), &Constraint::Any);
    assert!(s.method("loose").unwrap().is_unconstrained());
    assert!(s.method("add").is_some_and(|m| !m.is_unconstrained()));
    // the server adapter announces it
    let server = TypedServer(TypedImpl::default());
    let object: &dyn foolscap::Object = &server;
    assert_eq!(object.interface(), "RITyped.foolscap-rs.example");
    assert_eq!(object.schema(), Some(s.clone()));
    assert_eq!(object.class_name(), "TypedImpl");
    // copyables list their attributes' constraints
    assert_eq!(
        Point::state_schema(),
        [
            ("x".to_string(), Constraint::int_bytes(8)),
            ("y".to_string(), Constraint::int_bytes(8)),
            ("label".to_string(), Constraint::text().or_none()),
        ]
    );
}

fn typed_calls(driver: Driver) {
    let engine = Engine::start(driver);
    let (_server, client, typed) = pair(&engine);
    typed_iface::exercise(&client, &typed, true);
}

#[test]
fn typed_calls_on_threads() {
    typed_calls(Driver::Threads);
}

#[test]
fn typed_calls_on_mio() {
    typed_calls(Driver::Mio);
}

#[test]
fn typed_calls_on_tokio() {
    typed_calls(Driver::Tokio);
}

/// The failure a raw (untyped) call of the typed server gets.
fn raw_failure(
    client: &Tub,
    typed: &TypedClient,
    method: &str,
    args: &[Value],
    kwargs: &[(&str, Value)],
) -> (String, String) {
    let kwargs: Vec<(Text, Value)> = kwargs
        .iter()
        .map(|(k, v)| (Text::from(*k), v.clone()))
        .collect();
    let err = client
        .call(typed.reference().unwrap(), method, args, &kwargs, T)
        .expect_err("the call should fail");
    let f = err.failure().unwrap_or_else(|| panic!("not remote: {err}"));
    (f.type_name.clone(), f.value.clone())
}

/// A call of `nosuch` on `r`: refused locally by `client` (which knows
/// the interface), and sent by a Tub on the same engine that does not
/// know it, refused by the server's check of the interface it announced.
fn no_such_method(engine: &Engine, client: &Tub, r: &foolscap::value::RemoteRef) {
    match client.call(r, "nosuch", &[], &[], T) {
        Err(foolscap::Error::Violation(v)) => {
            assert!(v.to_string().ends_with(") does not offer nosuch',)"), "{v}")
        }
        other => panic!("{other:?}"),
    }
    let unknowing = engine.tub();
    let furl = String::from_utf8(r.furl().expect("the reference's FURL").to_vec()).unwrap();
    let raw = unknowing.get_reference(&furl, T).unwrap();
    let err = unknowing.call(&raw, "nosuch", &[], &[], T).unwrap_err();
    let iface = String::from_utf8(r.interface().to_vec()).unwrap();
    let f = err.failure().unwrap_or_else(|| panic!("not remote: {err}"));
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    assert_eq!(
        f.value,
        format!("Violation (<RootUnslicer>.<methodcall reqID=2 obj=<foolscap-rs object 1> iface={iface} methodname=nosuch>): (\"method 'nosuch' not defined in {iface}\",)")
    );
}

/// The unconstrained method `loose(a, b=None)`: no schema, so what a
/// caller gets for wrong arguments is the server adapter's binding and
/// conversion, Python's TypeError texts.
fn argument_errors(driver: Driver) {
    let engine = Engine::start(driver);
    let (_server, client, typed) = pair(&engine);
    let te = |v: &str| ("builtins.TypeError".to_string(), v.to_string());
    let i = Value::int;
    assert_eq!(
        client
            .call(
                typed.reference().unwrap(),
                "loose",
                &[i(1)],
                &[(Text::from("b"), Value::str("xy"))],
                T
            )
            .unwrap(),
        i(3)
    );
    assert_eq!(typed.loose(4, None).unwrap(), 4);
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[], &[]),
        te("TypedImpl.remote_loose() missing 1 required positional argument: 'a'")
    );
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[i(1), Value::None, i(3)], &[]),
        te("TypedImpl.remote_loose() takes from 2 to 3 positional arguments but 4 were given")
    );
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[i(1)], &[("a", i(2))]),
        te("TypedImpl.remote_loose() got multiple values for argument 'a'")
    );
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[i(1)], &[("z", i(2))]),
        te("TypedImpl.remote_loose() got an unexpected keyword argument 'z'")
    );
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[Value::str("1")], &[]),
        te("TypedImpl.remote_loose() argument 'a' must be int, not str")
    );
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[Value::Bool(true)], &[]),
        te("TypedImpl.remote_loose() argument 'a' must be int, not bool")
    );
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[i(1), Value::bytes(b"xy")], &[]),
        te("TypedImpl.remote_loose() argument 'b' must be str, not bytes")
    );
    let huge = Value::Int(BigInt::from(2).pow(64).into());
    assert_eq!(
        raw_failure(&client, &typed, "loose", &[huge], &[]),
        te("TypedImpl.remote_loose() argument 'a' must be an int from -9223372036854775808 to 9223372036854775807 (i64), not an int of 65 bits")
    );
    // a method the interface does not have: refused before sending by a
    // Tub that knows the interface (as Python's caller does), answered by
    // the server adapter for a Tub that does not
    no_such_method(&engine, &client, typed.reference().unwrap());
    // a shared value arrives once and converts at each place: mixed(x)
    // with the map and the set given as aliases of the same message
    let shared = Value::Tuple(vec![
        Value::Bool(false),
        Value::Float(1.0),
        Value::str("s"),
        Value::bytes(b"b"),
        i(1),
        Value::Tuple(vec![i(2), Value::str("t")]),
        Value::Dict(vec![]),
        Value::Set(vec![]),
    ]);
    let args = [Value::Anchor(1, Box::new(shared))];
    let back = client
        .call(typed.reference().unwrap(), "mixed", &args, &[], T)
        .unwrap();
    assert_eq!(back.as_seq().map(|s| s.len()), Some(8));
    assert_eq!(typed.add(1, 1).unwrap(), 2);
}

#[test]
fn argument_errors_on_threads() {
    argument_errors(Driver::Threads);
}

#[test]
fn argument_errors_on_mio() {
    argument_errors(Driver::Mio);
}

#[test]
fn argument_errors_on_tokio() {
    argument_errors(Driver::Tokio);
}

#[test]
fn a_blocking_typed_call_on_the_loop_thread_is_refused() {
    blocking_in_a_callback_is_refused(Driver::Mio);
}

/// On tokio a callback runs inside the engine's drive, on a worker thread
/// that the answer needs just as well.
#[test]
fn a_blocking_typed_call_in_a_tokio_callback_is_refused() {
    blocking_in_a_callback_is_refused(Driver::Tokio);
}

fn blocking_in_a_callback_is_refused(driver: Driver) {
    let engine = Engine::start(driver);
    let (_server, _client, typed) = pair(&engine);
    let (tx, rx) = mpsc::channel();
    let t2 = typed.clone();
    typed.add_async(1, 1, move |_| {
        // inside a callback, on the loop's thread
        tx.send(t2.add(1, 2).map_err(|e| e.to_string())).unwrap();
    });
    let r = rx.recv_timeout(T).unwrap();
    assert!(r.unwrap_err().contains("stall"));
}

/// A call that cannot be sent (its connection is gone) still reaches the
/// callback, at once, with the error.
#[test]
fn a_call_that_cannot_be_sent_reaches_the_callback() {
    for driver in [Driver::Threads, Driver::Mio, Driver::Tokio] {
        cannot_be_sent(driver);
    }
}

fn cannot_be_sent(driver: Driver) {
    let engine = Engine::start(driver);
    let (_server, client, typed) = pair(&engine);
    assert_eq!(typed.add(1, 1).unwrap(), 2);
    client.disconnect(typed.reference().unwrap());
    let (tx, rx) = mpsc::channel();
    typed.add_async(1, 1, move |r| {
        tx.send(r.map_err(|e| e.to_string())).unwrap()
    });
    let err = rx.recv_timeout(T).unwrap().unwrap_err();
    assert!(err.contains("not open"), "{err}");
    assert!(typed.add(1, 1).is_err());
}

/// Python's interface inheritance: `class RIDerived(RIBase)`.
mod inheritance {
    use super::*;
    use foolscap::typed::RemoteInterface;

    #[foolscap::remote_interface(name = "RIBase.foolscap-rs.example")]
    pub trait Base {
        fn ping(&self, n: i64) -> i64;
        fn shared(&self) -> String;
    }

    #[foolscap::remote_interface(name = "RIDerived.foolscap-rs.example", extends = Base)]
    pub trait Derived {
        fn pong(&self, n: i64) -> i64;
        /// overrides the parent's method of the same name
        fn shared(&self) -> String;
    }

    struct Both;

    impl Base for Both {
        fn ping(&self, n: i64) -> i64 {
            n + 1
        }
        fn shared(&self) -> String {
            "base".into()
        }
    }

    impl Derived for Both {
        fn pong(&self, n: i64) -> i64 {
            n - 1
        }
        fn shared(&self) -> String {
            "derived".into()
        }
    }

    #[test]
    fn a_derived_interface_has_its_parents_methods() {
        let s = DerivedClient::schema();
        let names: Vec<&str> = s.methods().iter().map(|m| m.name()).collect();
        assert_eq!(names, ["pong", "shared", "ping"]);
        assert_eq!(BaseClient::schema().methods().len(), 2);
        for driver in [Driver::Threads, Driver::Mio, Driver::Tokio] {
            derived_calls(driver);
        }
    }

    fn derived_calls(driver: Driver) {
        let engine = Engine::start(driver);
        let server = engine.tub();
        server.listen("127.0.0.1:0").unwrap();
        let furl = server
            .register(Arc::new(DerivedServer(Both)), None)
            .unwrap();
        let client = engine.tub();
        let derived = DerivedClient::connect(&client, &furl.to_string(), T).unwrap();
        assert_eq!(derived.pong(5).unwrap(), 4);
        // through the parent's stub (Deref), answered by the parent's part
        // of the server adapter
        assert_eq!(derived.ping(5).unwrap(), 6);
        // the derived interface's own method wins, as in Python
        assert_eq!(derived.shared().unwrap(), "derived");
        assert_eq!(
            client
                .call(derived.reference().unwrap(), "shared", &[], &[], T)
                .unwrap(),
            Value::str("derived")
        );
        no_such_method(&engine, &client, derived.reference().unwrap());
    }
}

/// The `_future` methods of the client stub, awaited in async code: on
/// the tokio engine (client and server), and on a threads-engine Tub
/// awaited from a tokio task (the future needs no particular engine).
#[test]
fn typed_futures_are_awaited_in_async_code() {
    for driver in [Driver::Tokio, Driver::Threads] {
        let engine = Engine::start(driver);
        let (_server, _client, typed) = pair(&engine);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(typed.add_future(1, 2).await.unwrap(), 3);
            // several in flight, awaited out of order
            let a = typed.greet_future("a".into(), Some(2));
            let b = typed.later_future(21);
            let c = typed.maybe_future(None);
            assert_eq!(b.await.unwrap(), 42);
            assert_eq!(c.await.unwrap(), None);
            assert_eq!(a.await.unwrap(), "hello ahello a");
            // the remote failure and a local refusal (the schema's)
            let f = typed.fail_future("no".into()).await.unwrap_err();
            assert_eq!(f.failure().unwrap().value, "no");
            let v = typed.put_list_future(vec![0; 101]).await.unwrap_err();
            assert!(matches!(v, foolscap::Error::Violation(_)), "{v:?}");
            // dropped before its answer: the connection goes on
            drop(typed.later_future(1));
            assert_eq!(typed.add_future(2, 2).await.unwrap(), 4);
        });
        // a call that cannot be sent is ready at once with the error
        let client = typed.tub().clone();
        client.disconnect(typed.reference().unwrap());
        let err = rt.block_on(typed.add_future(1, 1)).unwrap_err();
        assert!(err.to_string().contains("not open"), "{err}");
    }
}

/// An `async fn` whose future panics: the call is answered with a failure
/// (the Call dropped unanswered) and the connection goes on, on every
/// engine (tokio runs the future as a task, the others on a thread).
mod async_panics {
    use super::*;

    #[foolscap::remote_interface(name = "RIAsyncPanics.foolscap-rs.example")]
    pub trait AsyncPanics {
        async fn boom(&self, x: i64) -> i64;
        async fn echo(&self, x: i64) -> i64;
    }

    #[derive(Clone)]
    struct Imp;

    impl AsyncPanics for Imp {
        async fn boom(&self, x: i64) -> i64 {
            panic!("boom {x}")
        }
        async fn echo(&self, x: i64) -> i64 {
            x
        }
    }

    #[test]
    fn a_panicking_async_method_is_a_failure() {
        for driver in [Driver::Threads, Driver::Mio, Driver::Tokio] {
            let engine = Engine::start(driver);
            let server = engine.tub();
            server.listen("127.0.0.1:0").unwrap();
            let furl = server
                .register(Arc::new(AsyncPanicsServer(Imp)), None)
                .unwrap();
            let client = engine.tub();
            let c = AsyncPanicsClient::connect(&client, &furl.to_string(), T).unwrap();
            let err = c.boom(1).unwrap_err();
            assert_eq!(
                err.failure().map(|f| f.value.as_str()),
                Some("boom was never answered"),
                "{}: {err}",
                driver.name()
            );
            assert_eq!(c.echo(7).unwrap(), 7, "{}", driver.name());
        }
    }
}
