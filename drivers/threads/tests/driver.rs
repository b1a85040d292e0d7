//! The threads engine, Rust to Rust (the Python peer is exercised by the
//! workspace's interop tests).

use std::sync::Arc;
use std::time::Duration;

use foolscap_app::{Call, Error, Object, Tub};
use foolscap_core::broker::CallError;
use foolscap_core::value::Value;

const T: Duration = Duration::from_secs(30);

struct Touchy;

impl Object for Touchy {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "panic" => panic!("a bug in an object"),
            "later" => {
                let tub = call.tub().clone();
                tub.after(Duration::from_millis(20), move || {
                    call.answer(Value::int(7))
                });
            }
            "forget" => drop(call),
            _ => call.answer(Value::str("ok")),
        }
    }
}

fn pair() -> (Tub, Tub, foolscap_core::value::RemoteRef) {
    let server = foolscap_threads::new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Touchy), None).unwrap();
    let client = foolscap_threads::new_tub().unwrap();
    let Value::Remote(r) = client.get_reference(&furl.to_string(), T).unwrap() else {
        panic!("not a remote reference")
    };
    (server, client, r)
}

#[test]
fn a_panicking_object_costs_only_its_call() {
    let (server, client, r) = pair();
    for method in ["panic", "forget"] {
        match client.call(&r, method, &[], &[], T) {
            Err(Error::Call(CallError::Remote(f))) => {
                assert_eq!(f.type_name, "builtins.RuntimeError", "{method}")
            }
            other => panic!("{method}: {other:?}"),
        }
    }
    assert_eq!(client.call(&r, "x", &[], &[], T).unwrap(), Value::str("ok"));
    assert_eq!(
        client.call(&r, "later", &[], &[], T).unwrap(),
        Value::int(7)
    );
    server.shutdown();
    client.shutdown();
}

#[test]
fn shutdown_fails_outstanding_calls_and_runs_disconnect_watchers() {
    let (server, client, r) = pair();
    let (tx, rx) = std::sync::mpsc::channel();
    let token = client.notify_on_disconnect(&r, move || {
        let _ = tx.send(());
    });
    let (tx2, rx2) = std::sync::mpsc::channel();
    let cancelled = client.notify_on_disconnect(&r, move || {
        let _ = tx2.send(());
    });
    client.cancel_disconnect_watch(cancelled);
    server.shutdown();
    rx.recv_timeout(T).expect("the watcher ran");
    assert!(rx2.try_recv().is_err(), "a cancelled watcher does not run");
    assert!(!client.is_connected(&r));
    assert!(client.call(&r, "x", &[], &[], T).is_err());
    let _ = token;
    client.shutdown();
}

#[test]
fn dropping_the_last_handle_closes_the_connections() {
    let (server, client, r) = pair();
    // the server's view of the client: a reference the client passes in
    let me = client.local(Arc::new(Touchy));
    let (tx, rx) = std::sync::mpsc::channel();
    struct Keep(std::sync::Mutex<Option<std::sync::mpsc::Sender<foolscap_core::value::RemoteRef>>>);
    impl Object for Keep {
        fn call(&self, call: Call) {
            if let Some(Value::Remote(r)) = call.args.first() {
                if let Some(tx) = self.0.lock().unwrap().take() {
                    let _ = tx.send(r.clone());
                }
            }
            call.answer(Value::None)
        }
    }
    let furl = server
        .register(
            Arc::new(Keep(std::sync::Mutex::new(Some(tx)))),
            Some("keep"),
        )
        .unwrap();
    let Value::Remote(keep) = client.get_reference(&furl.to_string(), T).unwrap() else {
        panic!()
    };
    client.call(&keep, "x", &[me], &[], T).unwrap();
    let theirs = rx.recv_timeout(T).unwrap();
    let (gone_tx, gone_rx) = std::sync::mpsc::channel();
    server.notify_on_disconnect(&theirs, move || {
        let _ = gone_tx.send(());
    });
    drop((client, r, keep));
    gone_rx
        .recv_timeout(T)
        .expect("the server saw the client go");
    server.shutdown();
}

#[test]
fn stop_listening_refuses_new_peers_and_keeps_the_connected_ones() {
    let (server, client, r) = pair();
    let furl = server.register(Arc::new(Touchy), None).unwrap().to_string();
    server.stop_listening();
    let newcomer = foolscap_threads::new_tub().unwrap();
    assert!(newcomer.get_reference(&furl, T).is_err());
    assert_eq!(client.call(&r, "x", &[], &[], T).unwrap(), Value::str("ok"));
    assert_eq!(server.calls_to_answer(), 0);
    server.shutdown();
    client.shutdown();
    newcomer.shutdown();
}

/// A connection's first bytes may be handed out by a drive on another
/// thread before the dial thread has attached the socket's writer: they
/// must wait for it, not vanish (which stalled negotiation until the
/// caller's timeout). Other threads keep the client's engine busy while
/// it dials, again and again.
#[test]
fn first_bytes_of_a_dial_are_not_lost_to_a_concurrent_drive() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = foolscap_threads::new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Touchy), None).unwrap().to_string();
    for _ in 0..30 {
        let client = foolscap_threads::new_tub().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let (client, stop) = (client.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // every wake-up flushes the core's output
                        client.after(Duration::from_secs(3600), || {});
                    }
                })
            })
            .collect();
        let got = client.get_reference(&furl, Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for b in busy {
            b.join().unwrap();
        }
        let Value::Remote(r) = got.expect("a reference within 10 s") else {
            panic!("not a remote reference")
        };
        assert_eq!(client.call(&r, "x", &[], &[], T).unwrap(), Value::str("ok"));
        client.shutdown();
    }
    server.shutdown();
}

/// Connection news reaches the application typed: a peer that speaks no
/// Foolscap is an inbound negotiation failure with its reason (Python
/// logs it; before, nobody heard of it), a real peer connects and goes.
#[test]
fn connection_news_is_reported_typed() {
    use foolscap_core::negotiation::NegotiationError;
    use foolscap_core::tub::TubEvent;
    use std::io::Write;
    use std::sync::Mutex;
    let server = foolscap_threads::new_tub().unwrap();
    let addr = server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Touchy), None).unwrap().to_string();
    let news: Arc<Mutex<Vec<TubEvent>>> = Arc::default();
    let n = news.clone();
    server.watch_connections(move |ev| n.lock().unwrap().push(ev.clone()));
    // not Foolscap at all
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.write_all(b"HELLO? this is not http\r\n\r\n").unwrap();
    let seen = |f: &dyn Fn(&TubEvent) -> bool| {
        let deadline = std::time::Instant::now() + T;
        while std::time::Instant::now() < deadline {
            if news.lock().unwrap().iter().any(f) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    };
    assert!(
        seen(&|e| matches!(
            e,
            TubEvent::NegotiationFailed {
                outbound: false,
                error: NegotiationError::Plaintext(_),
                ..
            }
        )),
        "{:?}",
        news.lock().unwrap()
    );
    // a real client: connected, then gone
    let client = foolscap_threads::new_tub().unwrap();
    let Value::Remote(r) = client.get_reference(&furl, T).unwrap() else {
        panic!("not a remote reference")
    };
    let peer = client.tubid();
    assert!(seen(
        &|e| matches!(e, TubEvent::Connected { peer: p, .. } if *p == peer)
    ));
    client.disconnect(&r);
    assert!(seen(
        &|e| matches!(e, TubEvent::Disconnected { peer: p, .. } if *p == peer)
    ));
    server.shutdown();
    client.shutdown();
}
