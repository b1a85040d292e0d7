//! The calls of one connection reach the object in arrival order, one at
//! a time (each starts after the one before it returned), on every
//! engine, with flow control holding and releasing them: as Python runs
//! a connection's calls in turn on its reactor (docs/architecture.md,
//! "Order of calls"). Answerless calls (`callRemoteOnly`, reqID 0) and
//! calls with answers are mixed, the arguments are large and some
//! methods slow; the clients are a Rust Tub and Python foolscap.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{run_script_json, Driver};
use foolscap::tub::TubConfig;
use foolscap::value::Value;
use foolscap::{Call, Object};

const T: Duration = Duration::from_secs(60);
const COUNT: i64 = 400;

/// Records the order of `feed` and `ask` calls, and whether one started
/// while another was still running in it.
#[derive(Default)]
struct Order {
    seen: Mutex<Vec<i64>>,
    running: AtomicBool,
    overlaps: AtomicUsize,
    /// A slow object of a third Tub, for `relay`.
    far: Mutex<Option<Value>>,
}

impl Order {
    fn enter(&self, i: i64) {
        if self.running.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        // some calls are slow: the next ones pile up meanwhile
        if i % 3 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        self.seen.lock().unwrap().push(i);
        self.running.store(false, Ordering::SeqCst);
    }
}

impl Object for Order {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "feed" => {
                self.enter(call.args[0].as_i64().unwrap());
            }
            "ask" => {
                let i = call.args[0].as_i64().unwrap();
                self.enter(i);
                call.answer(Value::int(i))
            }
            // records its turn, then waits (blocking, threads engine) for
            // another Tub's slow answer: the connection's next calls may
            // start meanwhile, in order among themselves
            "relay" => {
                let i = call.args[0].as_i64().unwrap();
                self.enter(i);
                let far = self.far.lock().unwrap().clone().unwrap();
                let r = call.tub().call(&far, "slow", &[Value::int(i)], &[], T);
                assert_eq!(r.unwrap(), Value::int(i));
            }
            "done" => {
                let seen = self
                    .seen
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|i| Value::int(*i))
                    .collect();
                let overlaps = self.overlaps.load(Ordering::SeqCst) as i64;
                call.answer(Value::List(vec![Value::List(seen), Value::int(overlaps)]))
            }
            _ => call.no_such_method("Order"),
        }
    }
}

/// Flow control engaged at every step: one call of the connection per
/// round, one unanswered call, little output.
fn tight() -> TubConfig {
    let mut config = TubConfig::default();
    config.calls_per_round = 1;
    config.max_unanswered_calls = 1;
    config.max_buffered_output = 256;
    config
}

/// Does nothing: the ticker's target.
struct Noop;

impl Object for Noop {
    fn call(&self, _call: Call) {}
}

/// The server, and an application thread that keeps calling into it
/// meanwhile (as a flappserver's thread sending a process's output does):
/// engines drive the Tub from such threads' wake-ups too. It stops when
/// the returned flag is set.
fn serve(engine: &common::Engine) -> (foolscap::Tub, String, Ticker) {
    let server = engine.tub_with(foolscap::identity::Identity::generate().unwrap(), tight());
    server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Order::default()), None).unwrap();
    let ticker = tick(&server);
    (server, furl.to_string(), ticker)
}

/// An application thread that calls into `server` until dropped.
fn tick(server: &foolscap::Tub) -> Ticker {
    let stop = Arc::new(AtomicBool::new(false));
    let (tub, s) = (server.clone(), stop.clone());
    let noop = server.local(Arc::new(Noop));
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let _ = tub.call_only(&noop, "tick", &[], &[]);
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    Ticker(stop, Some(thread))
}

/// Stops the ticker thread when dropped.
struct Ticker(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn expect_in_order(answer: &Value) {
    let Value::List(parts) = answer else {
        panic!("{answer:?}")
    };
    let want: Vec<Value> = (0..COUNT).map(Value::int).collect();
    let Value::List(seen) = &parts[0] else {
        panic!("{answer:?}")
    };
    let first_wrong = seen.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        seen == &want,
        "calls out of order: first difference at {first_wrong:?}, {} seen",
        seen.len()
    );
    assert_eq!(
        parts[1],
        Value::int(0),
        "calls of one connection overlapped"
    );
}

fn from_rust(driver: Driver) {
    let engine = common::Engine::start(driver);
    let (_server, furl, _ticker) = serve(&engine);
    let client = foolscap::threads::new_tub().unwrap();
    let r = client.get_reference(&furl, T).unwrap();
    let big = Value::Bytes(vec![b'x'; 4096].into());
    let answered = Arc::new(AtomicUsize::new(0));
    for i in 0..COUNT {
        if i % 5 == 4 {
            let answered = answered.clone();
            client
                .call_async(&r, "ask", &[Value::int(i)], &[], move |a| {
                    assert_eq!(a.unwrap(), Value::int(i));
                    answered.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        } else {
            client
                .call_only(&r, "feed", &[Value::int(i), big.clone()], &[])
                .unwrap();
        }
    }
    let got = client.call(&r, "done", &[], &[], T).unwrap();
    expect_in_order(&got);
    assert_eq!(answered.load(Ordering::SeqCst), (COUNT / 5) as usize);
}

fn from_python(driver: Driver) {
    let engine = common::Engine::start(driver);
    let (_server, furl, _ticker) = serve(&engine);
    let count = COUNT.to_string();
    let lines = run_script_json("call_order.py", &[&furl, &count], Duration::from_secs(300));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let Some(serde_json::Value::Array(parts)) = lines[0].get("ok") else {
        panic!("{lines:?}")
    };
    let seen: Vec<i64> = parts[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (0..COUNT).collect();
    let first_wrong = seen.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        seen == want,
        "calls out of order: first difference at {first_wrong:?}, {} seen",
        seen.len()
    );
    assert_eq!(parts[1], 0, "calls of one connection overlapped");
}

/// Sleeps a little, then answers its argument.
struct Slow;

impl Object for Slow {
    fn call(&self, call: Call) {
        std::thread::sleep(Duration::from_millis(5));
        let v = call.args[0].clone();
        call.answer(v)
    }
}

/// Threads engine: a call that waits in `Tub::call` (for a third Tub)
/// lets the next calls of its connection start, and they still run in
/// order, one at a time, however the drives pass them around.
#[test]
fn calls_after_a_blocking_call_run_in_order_threads() {
    let engine = common::Engine::start(Driver::Threads);
    let server = engine.tub_with(foolscap::identity::Identity::generate().unwrap(), tight());
    server.listen("127.0.0.1:0").unwrap();
    let order = Arc::new(Order::default());
    let furl = server.register(order.clone(), None).unwrap();
    let third = foolscap::threads::new_tub().unwrap();
    third.listen("127.0.0.1:0").unwrap();
    let slow = third.register(Arc::new(Slow), None).unwrap();
    *order.far.lock().unwrap() = Some(server.get_reference(&slow.to_string(), T).unwrap());
    let _ticker = tick(&server);
    let client = foolscap::threads::new_tub().unwrap();
    let r = client.get_reference(&furl.to_string(), T).unwrap();
    for i in 0..COUNT {
        // one: a second could start on the reader of the connection to
        // the third Tub while the first waits, and wait for an answer only
        // that blocked thread would read (a hazard of blocking in objects
        // on this engine, order or not)
        let method = if i == 7 { "relay" } else { "feed" };
        client
            .call_only(&r, method, &[Value::int(i), Value::int(0)], &[])
            .unwrap();
    }
    let got = client.call(&r, "done", &[], &[], T).unwrap();
    expect_in_order(&got);
}

#[test]
fn calls_of_one_connection_run_in_order_threads() {
    from_rust(Driver::Threads);
}

#[test]
fn calls_of_one_connection_run_in_order_mio() {
    from_rust(Driver::Mio);
}

#[test]
fn calls_of_one_connection_run_in_order_tokio() {
    from_rust(Driver::Tokio);
}

#[test]
fn python_calls_of_one_connection_run_in_order_threads() {
    from_python(Driver::Threads);
}

#[test]
fn python_calls_of_one_connection_run_in_order_mio() {
    from_python(Driver::Mio);
}

#[test]
fn python_calls_of_one_connection_run_in_order_tokio() {
    from_python(Driver::Tokio);
}
