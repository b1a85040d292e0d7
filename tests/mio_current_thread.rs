//! The mio engine's current-thread runtime (`Runtime::current_thread`):
//! no loop thread; blocking waits of its Tubs drive the loop on the
//! waiting thread, one thread at a time (the others wait their turn and
//! are woken when their answer arrived or the loop is free), and
//! `Runtime::run` / `run_until` drive it for a server. The Python peers
//! are in tests/interop_typed.rs (a current-thread client calling Python's
//! server, a current-thread server answering Python's client).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foolscap::mio::{LoopConfig, Runtime};
use foolscap::tub::TubEvent;
use foolscap::value::Value;
use foolscap::{Call, Error, Object, Tub};

const T: Duration = Duration::from_secs(30);

/// `echo(x)` answers x; `hold()` keeps its call unanswered (in `held`)
/// until the test answers it; `stall(furl)` makes a blocking call from
/// inside the object and answers with what it got (its error's text).
#[derive(Default)]
struct Server {
    held: Mutex<Vec<Call>>,
}

impl Object for Server {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "echo" => {
                let x = call.args[0].clone();
                call.answer(x)
            }
            "hold" => self.held.lock().unwrap().push(call),
            "stall" => {
                let tub = call.tub();
                let r = tub.get_reference("pb://nobody@127.0.0.1:1/x", T);
                let text = match r {
                    Err(Error::WouldStallLoop) => "WouldStallLoop".to_string(),
                    other => format!("{other:?}"),
                };
                call.answer(Value::str(&text))
            }
            _ => call.no_such_method("Server"),
        }
    }
}

fn threaded_server() -> (Runtime, Tub, Arc<Server>, String) {
    let rt = Runtime::start(LoopConfig::default()).unwrap();
    let tub = rt.new_tub().unwrap();
    tub.listen("127.0.0.1:0").unwrap();
    let server = Arc::new(Server::default());
    let furl = tub.register(server.clone(), Some("server")).unwrap();
    (rt, tub, server, furl.to_string())
}

/// A current-thread client connected to a threaded server: the server's
/// runtime, its Tub and object, the client's runtime and Tub, and the
/// reference to the object.
fn connected() -> (Runtime, Tub, Arc<Server>, Runtime, Tub, Value) {
    let (srt, stub, server, furl) = threaded_server();
    let rt = current();
    let client = rt.new_tub().unwrap();
    let r = client.get_reference(&furl, T).unwrap();
    (srt, stub, server, rt, client, r)
}

fn current() -> Runtime {
    let rt = Runtime::current_thread(LoopConfig::default()).unwrap();
    assert!(rt.is_current_thread());
    rt
}

/// Polls `f` until it holds, or panics after `T`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn current_thread_client_calls_a_threaded_server() {
    let (srt, _stub, _server, rt, client, r) = connected();
    for i in 0..200 {
        let got = client.call(&r, "echo", &[Value::int(i)], &[], T).unwrap();
        assert_eq!(got, Value::int(i));
    }
    // the loop ran on this thread only: nothing else could have read the
    // answers
    assert!(rt.stats().turns > 0);
    assert_eq!(rt.stats().sockets, 1);
    rt.shutdown(T);
    srt.shutdown(T);
}

#[test]
fn several_threads_block_at_once_on_one_current_thread_runtime() {
    let (srt, _stub, server, rt, client, r) = connected();
    // one thread waits for an answer that comes late: it may be the one
    // driving the loop, the others' answers must still reach them
    let holder = {
        let (client, r) = (client.clone(), r.clone());
        std::thread::spawn(move || client.call(&r, "hold", &[], &[], T))
    };
    eventually("the held call arrived", || {
        server.held.lock().unwrap().len() == 1
    });
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (client, r, done) = (client.clone(), r.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..100 {
                    let x = Value::int(w * 1000 + i);
                    assert_eq!(
                        client
                            .call(&r, "echo", std::slice::from_ref(&x), &[], T)
                            .unwrap(),
                        x
                    );
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 4);
    // the held call is answered from a thread of the server's: its
    // waiter wakes (whether it drives or waits for another driver)
    server
        .held
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .answer(Value::int(7));
    assert_eq!(holder.join().unwrap().unwrap(), Value::int(7));
    rt.shutdown(T);
    srt.shutdown(T);
}

#[test]
fn a_wait_times_out_while_another_thread_drives() {
    let (srt, _stub, server, rt, client, r) = connected();
    // alone: the driving thread's own deadline
    let e = client.call(&r, "hold", &[], &[], Duration::from_millis(100));
    assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
    // a thread drives for a long wait; another's short one still ends
    let holder = {
        let (client, r) = (client.clone(), r.clone());
        std::thread::spawn(move || client.call(&r, "hold", &[], &[], T))
    };
    eventually("the second held call arrived", || {
        server.held.lock().unwrap().len() == 2
    });
    let e = client.call(&r, "hold", &[], &[], Duration::from_millis(100));
    assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
    eventually("the third held call arrived", || {
        server.held.lock().unwrap().len() == 3
    });
    let held: Vec<Call> = std::mem::take(&mut *server.held.lock().unwrap());
    for c in held {
        c.answer(Value::int(1));
    }
    assert_eq!(holder.join().unwrap().unwrap(), Value::int(1));
    rt.shutdown(T);
    srt.shutdown(T);
}

#[test]
fn blocking_inside_the_loop_gets_would_stall_loop() {
    let (srt, _stub, _server, rt, client, r) = connected();
    // an answer callback runs on the driving thread: it is the loop's
    let seen = Arc::new(Mutex::new(None));
    {
        let (c, r2, seen, rt2) = (client.clone(), r.clone(), seen.clone(), rt.clone());
        client
            .call_async(&r, "echo", &[Value::int(1)], &[], move |_| {
                let blocked = c.call(&r2, "echo", &[Value::int(2)], &[], T);
                let ran = rt2.run_until(Instant::now() + T);
                *seen.lock().unwrap() = Some((blocked, ran));
            })
            .unwrap();
    }
    // a blocking call of this thread drives the loop, which runs the
    // callback above on this thread
    assert_eq!(
        client.call(&r, "echo", &[Value::int(3)], &[], T).unwrap(),
        Value::int(3)
    );
    let seen = seen.lock().unwrap().take().expect("the callback ran");
    assert!(matches!(seen.0, Err(Error::WouldStallLoop)), "{:?}", seen.0);
    assert!(matches!(seen.1, Err(Error::WouldStallLoop)), "{:?}", seen.1);
    rt.shutdown(T);
    srt.shutdown(T);
}

#[test]
fn a_server_driven_by_run_answers_and_its_objects_may_not_block() {
    let rt = current();
    let tub = rt.new_tub().unwrap();
    tub.listen("127.0.0.1:0").unwrap();
    let furl = tub
        .register(Arc::new(Server::default()), Some("server"))
        .unwrap()
        .to_string();
    let runner = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.run())
    };
    let crt = Runtime::start(LoopConfig::default()).unwrap();
    let client = crt.new_tub().unwrap();
    let r = client.get_reference(&furl, T).unwrap();
    assert_eq!(
        client.call(&r, "echo", &[Value::int(5)], &[], T).unwrap(),
        Value::int(5)
    );
    assert_eq!(
        client.call(&r, "stall", &[], &[], T).unwrap(),
        Value::str("WouldStallLoop")
    );
    // another thread's blocking call on the server's runtime waits for
    // the runner to carry it (a call of its own object)
    let r2 = tub.get_reference(&furl, T).unwrap();
    assert_eq!(
        tub.call(&r2, "echo", &[Value::int(6)], &[], T).unwrap(),
        Value::int(6)
    );
    // shutdown from here: the runner's `run` returns once the loop ended
    rt.shutdown(T);
    runner.join().unwrap().unwrap();
    assert_eq!(rt.stats().sockets, 0);
    let e = client.call(&r, "echo", &[Value::int(7)], &[], T);
    assert!(e.is_err(), "{e:?}");
    crt.shutdown(T);
}

#[test]
fn shutdown_drives_the_loop_to_its_end_on_the_calling_thread() {
    let (srt, stub, _server, furl) = threaded_server();
    let gone = Arc::new(AtomicBool::new(false));
    {
        let gone = gone.clone();
        stub.watch_connections(move |ev| {
            if matches!(ev, TubEvent::Disconnected { .. }) {
                gone.store(true, Ordering::SeqCst);
            }
        });
    }
    let rt = current();
    let client = rt.new_tub().unwrap();
    let r = client.get_reference(&furl, T).unwrap();
    assert_eq!(
        client.call(&r, "echo", &[Value::int(1)], &[], T).unwrap(),
        Value::int(1)
    );
    assert!(!gone.load(Ordering::SeqCst));
    // nobody drives; shutdown closes the connection (sent, FIN, the
    // peer's EOF) on this thread and returns once the loop ended
    rt.shutdown(T);
    assert_eq!(rt.stats().sockets, 0);
    eventually("the server saw the connection close", || {
        gone.load(Ordering::SeqCst)
    });
    // the runtime (kept alive here) is ended: new Tubs are refused, a
    // call fails at once, run returns at once
    assert!(matches!(rt.new_tub(), Err(Error::Shutdown)));
    assert!(client.call(&r, "echo", &[Value::int(2)], &[], T).is_err());
    assert!(!rt.run_until(Instant::now() + T).unwrap());
    rt.run().unwrap();
    drop(client);
    srt.shutdown(T);
}

#[test]
fn timers_run_only_while_a_thread_drives() {
    let rt = current();
    let tub = rt.new_tub().unwrap();
    let fired = Arc::new(AtomicBool::new(false));
    {
        let fired = fired.clone();
        tub.after(Duration::from_millis(1), move || {
            fired.store(true, Ordering::SeqCst)
        });
    }
    std::thread::sleep(Duration::from_millis(50));
    // due, but nobody drove the loop: it did not run
    assert!(!fired.load(Ordering::SeqCst));
    let end = Instant::now() + T;
    while !fired.load(Ordering::SeqCst) {
        assert!(Instant::now() < end, "the timer never ran");
        assert!(rt
            .run_until(Instant::now() + Duration::from_millis(20))
            .unwrap());
    }
    rt.shutdown(T);
}

#[test]
fn shutdown_within_drives_the_loop_until_the_last_answer_went_out() {
    let rt = current();
    let tub = rt.new_tub().unwrap();
    tub.listen("127.0.0.1:0").unwrap();
    let server = Arc::new(Server::default());
    let furl = tub.register(server.clone(), Some("server")).unwrap();
    let crt = Runtime::start(LoopConfig::default()).unwrap();
    let client = crt.new_tub().unwrap();
    let caller = {
        let (client, furl) = (client.clone(), furl.to_string());
        std::thread::spawn(move || {
            let r = client.get_reference(&furl, T)?;
            client.call(&r, "hold", &[], &[], T)
        })
    };
    // this thread drives the server until the call is in
    let end = Instant::now() + T;
    while server.held.lock().unwrap().is_empty() {
        assert!(Instant::now() < end, "the call never arrived");
        rt.run_until(Instant::now() + Duration::from_millis(10))
            .unwrap();
    }
    // answered from another thread while this one waits in
    // shutdown_within: the wait drives the loop, so the answer goes out
    // before the connection closes
    let answerer = {
        let server = server.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            server
                .held
                .lock()
                .unwrap()
                .pop()
                .unwrap()
                .answer(Value::int(9));
        })
    };
    tub.shutdown_within(T).unwrap();
    answerer.join().unwrap();
    assert_eq!(caller.join().unwrap().unwrap(), Value::int(9));
    rt.shutdown(T);
    crt.shutdown(T);
}

#[test]
fn blocking_calls_while_another_thread_runs_the_loop() {
    let (srt, _stub, _server, furl) = threaded_server();
    let rt = current();
    let client = rt.new_tub().unwrap();
    // the runner never lets go of the loop: every caller waits for it
    // to carry its answer
    let runner = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.run())
    };
    let r = client.get_reference(&furl, T).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (client, r) = (client.clone(), r.clone());
            std::thread::spawn(move || {
                for i in 0..100 {
                    let x = Value::int(w * 1000 + i);
                    let got = client.call(&r, "echo", std::slice::from_ref(&x), &[], T);
                    assert_eq!(got.unwrap(), x);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    rt.shutdown(T);
    runner.join().unwrap().unwrap();
    srt.shutdown(T);
}
