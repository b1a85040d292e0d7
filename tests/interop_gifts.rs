//! Issue 12's proof for gifts (docs/protocol.md §5.6), against real
//! Python foolscap: three Tubs, A gives B a reference to C's object, each
//! role played by Rust while the others are Python
//! (`tests/interop/fsgifts.py`), all-Rust, and all-Python (so a wrong
//! expectation fails there too). The same steps run in every setup: a
//! gift with a call behind it (delivered after it), the same reference
//! twice, in a list and a dict, a gift in an answer (A gets back the
//! reference it holds), an object of C's that was never registered, a
//! name C withdrew (C's KeyError passed on), every gift acknowledged
//! (`decgift`: A holds nothing at the end), and an owner that is gone
//! (refused TCP).

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::process::{python, repo_root, Server};
use common::run_script_json;
use foolscap::value::Value;
use foolscap::{Call, Error, Object, Tub, TubConfig};
use serde_json::{json, Value as Json};

const T: Duration = Duration::from_secs(60);

// ---- the Rust objects (twins of fsgifts.py's) ----

/// C's object.
struct Thing {
    name: String,
}

impl Object for Thing {
    fn class_name(&self) -> &str {
        "Thing"
    }

    fn call(&self, call: Call) {
        match call.method.as_str() {
            "hello" => call.answer(Value::str(&format!("hello from {}", self.name))),
            "name" => call.answer(Value::str(&self.name)),
            "make" => {
                let name = match call.arg(0, "name") {
                    Some(Value::Str(s)) => s.as_str().to_owned(),
                    _ => "?".into(),
                };
                let made = call.tub().local(Arc::new(Thing { name }));
                call.answer(made)
            }
            "forget" => {
                call.tub().unregister("gone-swiss");
                call.answer(Value::None)
            }
            _ => call.no_such_method("Thing"),
        }
    }
}

/// B's object: calls whatever reference it gets, local or remote.
#[derive(Default)]
struct Receiver {
    log: Mutex<Vec<String>>,
    kept: Mutex<Option<Value>>,
}

/// Calls `hello` on each target and answers `call` with the list (or the
/// first failure), as Python's gatherResults does.
fn gather(tub: &Tub, targets: Vec<Value>, call: Call, single: bool) {
    let n = targets.len();
    let state = Arc::new(Mutex::new((vec![Value::None; n], n, Some(call))));
    if n == 0 {
        if let Some(c) = state.lock().unwrap().2.take() {
            c.answer(Value::List(Vec::new()));
        }
        return;
    }
    for (i, t) in targets.into_iter().enumerate() {
        let st = state.clone();
        let done = move |r: Result<Value, Error>| {
            let mut s = st.lock().unwrap();
            match r {
                Ok(v) => {
                    s.0[i] = v;
                    s.1 -= 1;
                    if s.1 == 0 {
                        let results = std::mem::take(&mut s.0);
                        if let Some(c) = s.2.take() {
                            let answer = if single {
                                results.into_iter().next().unwrap()
                            } else {
                                Value::List(results)
                            };
                            c.answer(answer);
                        }
                    }
                }
                Err(e) => {
                    if let Some(c) = s.2.take() {
                        c.fail(e.to_failure());
                    }
                }
            }
        };
        if let Err(e) = tub.call_async(&t, "hello", &[], &[], done) {
            if let Some(c) = state.lock().unwrap().2.take() {
                c.fail(e.to_failure());
            }
        }
    }
}

impl Object for Receiver {
    fn class_name(&self) -> &str {
        "Receiver"
    }

    fn call(&self, call: Call) {
        let tub = call.tub().clone();
        let method = call.method.as_str().to_owned();
        if ["take", "take_all", "take_in", "keep", "ping"].contains(&method.as_str()) {
            self.log.lock().unwrap().push(method.clone());
        }
        match method.as_str() {
            "take" => {
                let x = call.detach(&call.args[0]);
                gather(&tub, vec![x], call, true)
            }
            "take_all" => {
                let xs = call.args.iter().map(|a| call.detach(a)).collect();
                gather(&tub, xs, call, false)
            }
            "take_in" => {
                let items = match call.detach(&call.args[0]) {
                    Value::Dict(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
                    Value::List(items) => items,
                    _ => Vec::new(),
                };
                gather(&tub, items, call, false)
            }
            "same" => {
                let same = call.arg(0, "a") == call.arg(1, "b");
                call.answer(Value::Bool(same))
            }
            "keep" => {
                *self.kept.lock().unwrap() = Some(call.detach(&call.args[0]));
                call.answer(Value::None)
            }
            "give" => {
                let kept = self.kept.lock().unwrap().clone().unwrap_or(Value::None);
                call.answer(kept)
            }
            "ping" => call.answer(Value::str("pong")),
            "hello" => call.answer(Value::str("hello from receiver")),
            "log" => {
                let log = self.log.lock().unwrap();
                call.answer(Value::List(log.iter().map(|s| Value::str(s)).collect()))
            }
            _ => call.no_such_method("Receiver"),
        }
    }
}

// ---- the roles ----

/// A Tub on the threads engine, listening on 127.0.0.1.
fn rust_tub(config: TubConfig) -> Tub {
    let identity = foolscap::identity::Identity::generate().unwrap();
    let tub = foolscap::threads::tub(identity, config).unwrap();
    tub.listen("127.0.0.1:0").unwrap();
    tub
}

/// C in Rust: `(tub, thing FURL, gone FURL)`.
fn rust_owner() -> (Tub, String, String) {
    let tub = rust_tub(TubConfig::default());
    let thing = tub.register(
        Arc::new(Thing {
            name: "thing".into(),
        }),
        Some("thing-swiss"),
    );
    let gone = tub.register(
        Arc::new(Thing {
            name: "gone".into(),
        }),
        Some("gone-swiss"),
    );
    (tub, thing.unwrap().to_string(), gone.unwrap().to_string())
}

/// B in Rust.
fn rust_recipient(config: TubConfig) -> (Tub, String) {
    let tub = rust_tub(config);
    let furl = tub
        .register(Arc::new(Receiver::default()), Some("receiver-swiss"))
        .unwrap();
    (tub, furl.to_string())
}

/// C in Python: the server and its two FURLs.
fn python_owner() -> (Server, String, String) {
    let server = python_server(&["owner"]);
    let mut lines = server.furl.lines();
    let thing = lines.next().unwrap().to_owned();
    let gone = lines.next().unwrap().to_owned();
    (server, thing, gone)
}

fn python_server(args: &[&str]) -> Server {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(repo_root().join("tests/interop/fsgifts.py"));
    let after = [args, &["--max-seconds", "300"]].concat();
    Server::start(cmd, "fsgifts", &after)
}

/// A in Python: its steps.
fn python_sender(receiver: &str, thing: &str, gone: &str) -> Vec<Json> {
    let out = run_script_json(
        "fsgifts.py",
        &["-", "sender", receiver, thing, gone],
        Duration::from_secs(200),
    );
    assert_eq!(out.last(), Some(&json!({"done": true})), "{out:?}");
    out[..out.len() - 1].to_vec()
}

fn ok(v: Json) -> Json {
    json!({ "ok": v })
}

fn step(name: &str, result: Json) -> Json {
    json!({"step": name, "result": result})
}

/// As JSON, the way fsgifts.py reports it.
fn to_json(v: &Value) -> Json {
    match v.unanchored() {
        Value::Str(s) => json!(s.as_str()),
        Value::Bool(b) => json!(b),
        Value::None => Json::Null,
        Value::List(items) | Value::Tuple(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        other => json!(format!("{other:?}")),
    }
}

fn outcome(r: Result<Value, Error>) -> Json {
    match r {
        Ok(v) => ok(to_json(&v)),
        Err(e) => {
            let f = e.to_failure();
            json!({"fail": f.type_name, "value": f.value})
        }
    }
}

/// A in Rust: the same steps as fsgifts.py's sender.
fn rust_sender(receiver: &str, thing: &str, gone: &str) -> Vec<Json> {
    let tub = rust_tub(TubConfig::default());
    let r = tub.get_reference(receiver, T).unwrap();
    let th = tub.get_reference(thing, T).unwrap();
    let mut out = Vec::new();
    let call = |m: &str, args: &[Value]| tub.call(&r, m, args, &[], T);
    // 1. a gift and a call right behind it
    let (tx1, rx1) = mpsc::channel();
    let (tx2, rx2) = mpsc::channel();
    tub.call_async(&r, "take", std::slice::from_ref(&th), &[], move |x| {
        let _ = tx1.send(x);
    })
    .unwrap();
    tub.call_async(&r, "ping", &[], &[], move |x| {
        let _ = tx2.send(x);
    })
    .unwrap();
    out.push(step("take", outcome(rx1.recv_timeout(T).unwrap())));
    out.push(step("ping", outcome(rx2.recv_timeout(T).unwrap())));
    let log = call("log", &[]).unwrap();
    let last_two = match &log {
        Value::List(items) => Value::List(items[items.len() - 2..].to_vec()),
        other => other.clone(),
    };
    out.push(step("order", ok(to_json(&last_two))));
    // 2. twice, in a list, in a dict
    out.push(step(
        "take_all",
        outcome(call("take_all", &[th.clone(), th.clone()])),
    ));
    let list = Value::List(vec![th.clone(), th.clone()]);
    out.push(step("take_in_list", outcome(call("take_in", &[list]))));
    let dict = Value::Dict(vec![(Value::str("a"), th.clone())]);
    out.push(step("take_in_dict", outcome(call("take_in", &[dict]))));
    out.push(step(
        "same",
        outcome(call("same", &[th.clone(), th.clone()])),
    ));
    // 3. a gift in an answer
    call("keep", std::slice::from_ref(&th)).unwrap();
    let back = call("give", &[]).unwrap();
    out.push(step("give_back", ok(json!(back == th))));
    // 4. an object never registered
    let other = tub
        .call(&th, "make", &[Value::str("other")], &[], T)
        .unwrap();
    out.push(step("take_made", outcome(call("take", &[other]))));
    // 5. a name withdrawn
    let g = tub.get_reference(gone, T).unwrap();
    tub.call(&g, "forget", &[], &[], T).unwrap();
    out.push(step("take_unknown_name", outcome(call("take", &[g]))));
    // decgift accounting
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tub.gifts_held() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    out.push(step("gifts_held", ok(json!(tub.gifts_held()))));
    out
}

/// What every setup must report.
fn expected() -> Vec<Json> {
    let hello = "hello from thing";
    vec![
        step("take", ok(json!(hello))),
        step("ping", ok(json!("pong"))),
        step("order", ok(json!(["take", "ping"]))),
        step("take_all", ok(json!([hello, hello]))),
        step("take_in_list", ok(json!([hello, hello]))),
        step("take_in_dict", ok(json!([hello]))),
        step("same", ok(json!(true))),
        step("give_back", ok(json!(true))),
        step("take_made", ok(json!("hello from other"))),
        step(
            "take_unknown_name",
            json!({"fail": "builtins.KeyError",
                   "value": "\"unable to find reference for name starting with 'go'\""}),
        ),
        step("gifts_held", ok(json!(0))),
    ]
}

fn check(got: Vec<Json>) {
    let want = expected();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "\nall steps: {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn all_python_sets_the_expectations() {
    let (_c, thing, gone) = python_owner();
    let b = python_server(&["recipient"]);
    check(python_sender(&b.furl, &thing, &gone));
}

#[test]
fn rust_sender_python_recipient_python_owner() {
    let (_c, thing, gone) = python_owner();
    let b = python_server(&["recipient"]);
    check(rust_sender(&b.furl, &thing, &gone));
}

#[test]
fn python_sender_rust_recipient_python_owner() {
    let (_c, thing, gone) = python_owner();
    let (_b, receiver) = rust_recipient(TubConfig::default());
    check(python_sender(&receiver, &thing, &gone));
}

#[test]
fn python_sender_python_recipient_rust_owner() {
    let (_c, thing, gone) = rust_owner();
    let b = python_server(&["recipient"]);
    check(python_sender(&b.furl, &thing, &gone));
}

#[test]
fn all_rust() {
    let (_c, thing, gone) = rust_owner();
    let (_b, receiver) = rust_recipient(TubConfig::default());
    check(rust_sender(&receiver, &thing, &gone));
}

/// B refuses gifts: Python's Violation, and no `decgift` (A keeps its
/// hold).
#[test]
fn a_recipient_that_refuses_gifts_python_and_rust() {
    let (_c, thing, _gone) = python_owner();
    let py_b = python_server(&["recipient", "--no-gifts"]);
    let mut config = TubConfig::default();
    config.accept_gifts = false;
    let (_rust_b, rust_b) = rust_recipient(config);
    let want = json!({"fail": "foolscap.tokens.Violation",
                      "value": "Violation: ('gifts are prohibited in this Tub',)"});
    for receiver in [py_b.furl.as_str(), rust_b.as_str()] {
        let tub = rust_tub(TubConfig::default());
        let r = tub.get_reference(receiver, T).unwrap();
        let th = tub.get_reference(&thing, T).unwrap();
        let got = outcome(tub.call(&r, "take", std::slice::from_ref(&th), &[], T));
        assert_eq!(got, want, "{receiver}");
        assert_eq!(
            tub.call(&r, "ping", &[], &[], T).unwrap(),
            Value::str("pong")
        );
        assert_eq!(tub.gifts_held(), 1, "no decgift came");
    }
}

/// The owner is gone (its port refuses): the recipient answers with
/// Twisted's ConnectionRefusedError, Python and Rust alike, and the call
/// behind it goes on.
#[test]
fn a_gift_whose_owner_is_gone_fails_with_connection_refused() {
    let (c, thing, _gone) = python_owner();
    let py_b = python_server(&["recipient"]);
    let (_rust_b, rust_b) = rust_recipient(TubConfig::default());
    let tub = rust_tub(TubConfig::default());
    let th = tub.get_reference(&thing, T).unwrap();
    let receivers: Vec<Value> = [py_b.furl.as_str(), rust_b.as_str()]
        .iter()
        .map(|f| tub.get_reference(f, T).unwrap())
        .collect();
    drop(c);
    // (let the loss of C reach every Tub)
    std::thread::sleep(Duration::from_millis(500));
    for r in &receivers {
        let got = outcome(tub.call(r, "take", std::slice::from_ref(&th), &[], T));
        assert_eq!(
            got,
            json!({"fail": "twisted.internet.error.ConnectionRefusedError",
                   "value": "Connection was refused by other side: 111: Connection refused."})
        );
        assert_eq!(
            tub.call(r, "ping", &[], &[], T).unwrap(),
            Value::str("pong")
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tub.gifts_held() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tub.gifts_held(), 0, "decgift after a failed lookup too");
}

/// A gift pointing back at its recipient (Python sends one for a
/// reference that came to A from elsewhere; here a reference with B's own
/// FURL): Python B calls it through a loopback reference, Rust B gets
/// its own object, called on a later turn.
#[test]
fn a_gift_pointing_at_the_recipient() {
    let py_b = python_server(&["recipient"]);
    let (_rust_b, rust_b) = rust_recipient(TubConfig::default());
    for receiver in [py_b.furl.as_str(), rust_b.as_str()] {
        let tub = rust_tub(TubConfig::default());
        let r = tub.get_reference(receiver, T).unwrap();
        // a reference as if A had it from another Tub: B's own FURL
        let elsewhere = foolscap::value::RemoteRef::new(
            foolscap::id::ConnectionId(u64::MAX - 7),
            1,
            Default::default(),
            Some(receiver.as_bytes().to_vec().into()),
        );
        let got = outcome(tub.call(&r, "take", &[Value::Remote(elsewhere)], &[], T));
        assert_eq!(got, ok(json!("hello from receiver")), "{receiver}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tub.gifts_held() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(tub.gifts_held(), 0, "{receiver}");
    }
}

/// A gift pointing back at its sender (Python A gifts its own loopback
/// reference): B looks it up over the A-B connection itself.
#[test]
fn a_gift_pointing_at_the_sender() {
    let py_b = python_server(&["recipient"]);
    let (_rust_b, rust_b) = rust_recipient(TubConfig::default());
    for receiver in [py_b.furl.as_str(), rust_b.as_str()] {
        let out = run_script_json(
            "fsgifts.py",
            &["-", "sender-loopback", receiver],
            Duration::from_secs(100),
        );
        assert_eq!(
            out,
            vec![
                step("take_loopback", ok(json!("hello from a-thing"))),
                json!({"done": true})
            ],
            "{receiver}"
        );
    }
}

/// A reference whose owner has no location carries no FURL: Python and we
/// send the gift with an empty FURL, and the recipient (Python or Rust)
/// fails the call with NoLocationHintsError.
#[test]
fn a_gift_without_a_furl_fails_with_no_location_hints() {
    /// Keeps what it is given.
    #[derive(Default)]
    struct Inbox(Mutex<Option<Value>>);
    impl Object for Inbox {
        fn call(&self, call: Call) {
            *self.0.lock().unwrap() = Some(call.detach(&call.args[0]));
            call.answer(Value::None)
        }
    }
    let a = rust_tub(TubConfig::default());
    let inbox = Arc::new(Inbox::default());
    let inbox_furl = a.register(inbox.clone(), None).unwrap().to_string();
    // C never listens: its objects have no FURL
    let c = foolscap::threads::new_tub().unwrap();
    let at_a = c.get_reference(&inbox_furl, T).unwrap();
    let thing = c.local(Arc::new(Thing { name: "c".into() }));
    c.call(&at_a, "put", &[thing], &[], T).unwrap();
    let furlless = inbox.0.lock().unwrap().clone().unwrap();
    let py_b = python_server(&["recipient"]);
    let (_rust_b, rust_b) = rust_recipient(TubConfig::default());
    for receiver in [py_b.furl.as_str(), rust_b.as_str()] {
        let r = a.get_reference(receiver, T).unwrap();
        let got = outcome(a.call(&r, "take", std::slice::from_ref(&furlless), &[], T));
        assert_eq!(
            got,
            json!({"fail": "foolscap.tokens.NoLocationHintsError", "value": ""}),
            "{receiver}"
        );
    }
}

/// All-Rust again, the owner and the recipient on one mio event loop (the
/// recipient's lookup, `decgift` and call all run on the loop's thread).
#[test]
fn all_rust_with_owner_and_recipient_on_the_mio_loop() {
    owner_and_recipient_on(common::Driver::Mio);
}

/// The same on one tokio runtime (the lookup, `decgift` and call run in
/// the engine's drives, on its worker threads).
#[test]
fn all_rust_with_owner_and_recipient_on_tokio() {
    owner_and_recipient_on(common::Driver::Tokio);
}

fn owner_and_recipient_on(driver: common::Driver) {
    let engine = common::Engine::start(driver);
    let c = engine.tub();
    c.listen("127.0.0.1:0").unwrap();
    let thing = c
        .register(
            Arc::new(Thing {
                name: "thing".into(),
            }),
            Some("thing-swiss"),
        )
        .unwrap()
        .to_string();
    let gone = c
        .register(
            Arc::new(Thing {
                name: "gone".into(),
            }),
            Some("gone-swiss"),
        )
        .unwrap()
        .to_string();
    let b = engine.tub();
    b.listen("127.0.0.1:0").unwrap();
    let receiver = b
        .register(Arc::new(Receiver::default()), Some("receiver-swiss"))
        .unwrap()
        .to_string();
    check(rust_sender(&receiver, &thing, &gone));
}
