//! Issue 12's reconnection and disconnect notification (docs/protocol.md
//! §6.6): `Tub::connect_to` against a real Python server that is stopped
//! and restarted (same port, same identity, so the same FURL), and the
//! notification rules (once per lost connection, at once on a dead one,
//! never for a local shutdown).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::process::{Server, TempDir};
use common::{Driver, Engine};
use foolscap::value::Value;
use foolscap::{ReconnectState, TubConfig};

const T: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn python_sink(port: u16, cert: &std::path::Path) -> Server {
    Server::python(&[
        "--port",
        &port.to_string(),
        "--certfile",
        cert.to_str().unwrap(),
    ])
}

#[test]
fn connect_to_reconnects_to_a_restarted_python_server() {
    reconnects(Driver::Threads);
}

#[test]
fn connect_to_reconnects_to_a_restarted_python_server_mio() {
    reconnects(Driver::Mio);
}

#[test]
fn connect_to_reconnects_to_a_restarted_python_server_tokio() {
    reconnects(Driver::Tokio);
}

fn reconnects(driver: Driver) {
    let dir = TempDir::new("reconnect");
    let cert = dir.path().join("server.pem");
    let port = free_port();
    let server = python_sink(port, &cert);
    let furl = server.furl.clone();

    let engine = Engine::start(driver);
    let tub = engine.tub_with(
        foolscap::identity::Identity::generate().unwrap(),
        TubConfig::default(),
    );
    let (tx, rx) = mpsc::channel();
    let rc = tub
        .connect_to(&furl, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
    let first = rx.recv_timeout(T).expect("connected");
    let info = rc.info();
    assert_eq!(info.state, ReconnectState::Connected);
    let hint = format!("tcp:127.0.0.1:{port}");
    assert_eq!(info.winning_hint.as_deref(), Some(hint.as_str()));
    assert_eq!(
        info.hint_statuses,
        vec![(hint.clone(), "successful".to_owned())]
    );
    assert!(info.established_at.is_some());
    assert_eq!(
        tub.call(&first, "echo", &[Value::int(1)], &[], T).unwrap(),
        Value::int(1)
    );
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let (lost_tx, lost_rx) = mpsc::channel();
    tub.notify_on_disconnect(foolscap::as_remote(&first).unwrap(), move || {
        f.fetch_add(1, Ordering::SeqCst);
        let _ = lost_tx.send(());
    });

    // the server goes away: the watcher fires once, the reconnector waits
    drop(server);
    lost_rx.recv_timeout(T).expect("disconnect noticed");
    // restarted: the reconnector gets a new reference
    let server = python_sink(port, &cert);
    assert_eq!(server.furl, furl, "same identity, same port, same FURL");
    let second = rx.recv_timeout(T).expect("reconnected");
    assert_ne!(second, first, "a new reference after the reconnection");
    assert_eq!(
        tub.call(&second, "echo", &[Value::str("again")], &[], T)
            .unwrap(),
        Value::str("again")
    );
    assert_eq!(fired.load(Ordering::SeqCst), 1, "once per lost connection");
    assert!(rc.info().last_failure.is_none(), "cleared by the success");

    // with the server gone and restarts failing, reset() brings the next
    // attempt back to one second
    drop(server);
    let deadline = std::time::Instant::now() + T;
    loop {
        let info = rc.info();
        if info.state == ReconnectState::Waiting && info.last_failure.is_some() {
            // a failed attempt: Python's per-hint status words
            assert_eq!(info.hint_statuses.len(), 1, "{info:?}");
            assert_eq!(info.hint_statuses[0].1, "connection refused");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    rc.reset();
    let next = rc.delay_until_next_attempt().expect("a retry is scheduled");
    assert!(next <= Duration::from_secs(1), "{next:?}");

    // stopped: no more attempts, no more callbacks
    rc.stop();
    assert_eq!(rc.info().state, ReconnectState::Stopped);
    assert_eq!(rc.delay_until_next_attempt(), None);
    let _server = python_sink(port, &cert);
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "a stopped reconnector calls back no more"
    );
}

#[test]
fn disconnect_watchers_fire_once_at_once_on_dead_connections_and_not_at_shutdown() {
    for driver in [Driver::Threads, Driver::Mio, Driver::Tokio] {
        disconnect_watchers(driver);
    }
}

fn disconnect_watchers(driver: Driver) {
    let engine = Engine::start(driver);
    let server = engine.tub();
    server.listen("127.0.0.1:0").unwrap();
    struct Nop;
    impl foolscap::Object for Nop {
        fn call(&self, call: foolscap::Call) {
            call.answer(Value::None)
        }
    }
    let furl = server.register(Arc::new(Nop), None).unwrap().to_string();
    let client = engine.tub();
    let r = client.get_reference(&furl, T).unwrap();
    let r = foolscap::as_remote(&r).unwrap().clone();

    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    client.notify_on_disconnect(&r, move || {
        let _ = tx2.send("first");
    });
    client.disconnect(&r);
    assert_eq!(rx.recv_timeout(T).unwrap(), "first");
    // calls on it fail at once, as Python's do
    let e = client.call(&r, "x", &[], &[], T).unwrap_err();
    let f = e.to_failure();
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("foolscap.ipb.DeadReferenceError", "Calling Stale Broker")
    );
    // on a dead connection: still called, on a later turn
    let tx3 = tx.clone();
    client.notify_on_disconnect(&r, move || {
        let _ = tx3.send("dead");
    });
    assert_eq!(rx.recv_timeout(T).unwrap(), "dead");

    // a local shutdown fires nothing
    let r = client.get_reference(&furl, T).unwrap();
    let r = foolscap::as_remote(&r).unwrap().clone();
    client.notify_on_disconnect(&r, move || {
        let _ = tx.send("at shutdown");
    });
    client.shutdown();
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "shutdown fired a watcher"
    );
    // and the peer's side sees an ordinary loss
    drop(server);
}

/// The async face: `AsyncTub::connect_to` gives each connection's
/// reference from `next().await`, across a restart of the Python server;
/// stopping the reconnector ends the stream.
#[test]
fn async_connect_to_yields_each_connection() {
    let dir = TempDir::new("reconnect");
    let cert = dir.path().join("server.pem");
    let port = free_port();
    let server = python_sink(port, &cert);
    let furl = server.furl.clone();
    let (rt, engine) = common::tokio_engine();
    let tub = engine.new_tub().unwrap();
    rt.block_on(async {
        let mut conns = tub.connect_to(&furl).unwrap();
        let first = tokio::time::timeout(T, conns.next())
            .await
            .unwrap()
            .expect("connected");
        let echo = |r: foolscap::value::RemoteRef, v: Value| {
            let tub = tub.clone();
            async move { tub.call(&r, "echo", &[v], &[]).await }
        };
        assert_eq!(
            echo(first.clone(), Value::int(1)).await.unwrap(),
            Value::int(1)
        );
        // the server goes away and comes back: the next connection
        drop(server);
        tokio::time::timeout(T, tub.disconnected(&first))
            .await
            .unwrap();
        let server = python_sink(port, &cert);
        let second = tokio::time::timeout(T, conns.next())
            .await
            .unwrap()
            .expect("reconnected");
        assert_ne!(second, first);
        assert_eq!(
            echo(second, Value::str("again")).await.unwrap(),
            Value::str("again")
        );
        assert_eq!(conns.reconnector().info().state, ReconnectState::Connected);
        // stopped: the stream ends
        conns.reconnector().stop();
        assert_eq!(tokio::time::timeout(T, conns.next()).await.unwrap(), None);
        drop(server);
    });
    engine.shutdown_blocking(Duration::from_secs(5));
    rt.shutdown_timeout(Duration::from_secs(5));
}
