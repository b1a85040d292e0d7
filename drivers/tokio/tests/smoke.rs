//! The tokio engine end to end, on both runtime flavours: listen, dial,
//! calls (sequential, in flight, async objects), cancellation, watching a
//! disconnection, graceful shutdown, and interplay with the threads
//! engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foolscap_core::broker::Failure;
use foolscap_core::value::{RemoteRef, Value};
use foolscap_tokio::{answer_async, as_remote, AsyncTub, Call, Engine, Error, Object, TokioConfig};
use tokio::sync::Notify;

/// `echo(x)`, `add(a, b)`, `later(x)` (answered from an async block after
/// a sleep), `hold(x)` (answered once `release` is notified).
struct Demo {
    release: Arc<Notify>,
    held: Arc<AtomicUsize>,
}

impl Object for Demo {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "echo" => {
                let v = call.args.first().cloned().unwrap_or(Value::None);
                call.answer(v)
            }
            "add" => {
                let a = call.arg(0, "a").and_then(Value::as_i64).unwrap_or(0);
                let b = call.arg(1, "b").and_then(Value::as_i64).unwrap_or(0);
                call.answer(Value::int(a + b))
            }
            "later" => {
                let v = call.args.first().cloned().unwrap_or(Value::None);
                answer_async(call, async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, Failure>(v)
                })
            }
            "hold" => {
                let v = call.args.first().cloned().unwrap_or(Value::None);
                let release = self.release.clone();
                self.held.fetch_add(1, Ordering::SeqCst);
                answer_async(call, async move {
                    release.notified().await;
                    Ok(v)
                })
            }
            _ => call.no_such_method("Demo"),
        }
    }
}

fn demo() -> (Arc<Demo>, Arc<Notify>, Arc<AtomicUsize>) {
    let release = Arc::new(Notify::new());
    let held = Arc::new(AtomicUsize::new(0));
    let d = Arc::new(Demo {
        release: release.clone(),
        held: held.clone(),
    });
    (d, release, held)
}

async fn reference(client: &AsyncTub, furl: &str) -> RemoteRef {
    let r = client.get_reference(furl).await.expect("reference");
    as_remote(&r).expect("remote").clone()
}

async fn calls_and_cancellation() {
    let engine = Engine::new(TokioConfig::default());
    let server = engine.new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let (obj, release, held) = demo();
    let furl = server.register(obj, Some("demo")).unwrap().to_string();
    let client = engine.new_tub().unwrap();
    let r = reference(&client, &furl).await;

    // sequential
    for i in 0..50i64 {
        let v = client
            .call(&r, "add", &[Value::int(i), Value::int(1)], &[])
            .await;
        assert_eq!(v.unwrap(), Value::int(i + 1));
    }
    // 100 in flight
    let replies: Vec<_> = (0..100i64)
        .map(|i| client.call(&r, "echo", &[Value::int(i)], &[]))
        .collect();
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.await.unwrap(), Value::int(i as i64));
    }
    // an object answering from an async block
    let v = client.call(&r, "later", &[Value::from("x")], &[]).await;
    assert_eq!(v.unwrap(), Value::from("x"));
    // a dropped call future: no more waiting, the connection goes on
    let dropped = client.call(&r, "hold", &[Value::int(7)], &[]);
    while held.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(dropped);
    release.notify_one();
    let v = client.call(&r, "echo", &[Value::int(8)], &[]).await;
    assert_eq!(v.unwrap(), Value::int(8));
    assert!(client.is_connected(&r));
    // a missing method is the peer's failure, not ours
    let e = client.call(&r, "nope", &[], &[]).await.unwrap_err();
    assert!(e.failure().is_some(), "{e:?}");
    // call_only
    client.call_only(&r, "echo", &[Value::int(1)], &[]).unwrap();
    // a bad FURL fails at once
    assert!(matches!(
        client.get_reference("pb://nonsense").await,
        Err(Error::Furl(_))
    ));

    // waiting for a disconnection
    let watch = client.disconnected(&r);
    client.disconnect(&r);
    tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("disconnected");
    assert!(!client.is_connected(&r));
    assert!(engine.stats().drives > 0);
    engine.shutdown(Duration::from_secs(2)).await;
    assert_eq!(engine.stats().sockets, 0, "{:?}", engine.stats());
    assert_eq!(engine.stats().listeners, 0, "{:?}", engine.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_cancellation_multi_thread() {
    calls_and_cancellation().await;
}

#[tokio::test(flavor = "current_thread")]
async fn calls_and_cancellation_current_thread() {
    calls_and_cancellation().await;
}

/// A shutdown lets the answer to a call already received go out.
async fn graceful_shutdown() {
    let engine = Engine::new(TokioConfig::default());
    let server = engine.new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let (obj, release, held) = demo();
    let furl = server.register(obj, None).unwrap().to_string();
    let client_engine = Engine::new(TokioConfig::default());
    let client = client_engine.new_tub().unwrap();
    let r = reference(&client, &furl).await;
    let reply = client.call(&r, "hold", &[Value::int(5)], &[]);
    while held.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stopping = {
        let server = server.clone();
        tokio::spawn(async move { server.shutdown(Duration::from_secs(20)).await })
    };
    // the answer is not made yet: the shutdown waits for it
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!stopping.is_finished());
    release.notify_one();
    assert_eq!(reply.await.unwrap(), Value::int(5));
    stopping.await.unwrap();
    // and new peers are refused
    let other = client_engine.new_tub().unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), other.get_reference(&furl))
        .await
        .expect("refused, not hung");
    assert!(e.is_err());
    engine.shutdown(Duration::from_secs(1)).await;
    client_engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_multi_thread() {
    graceful_shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn graceful_shutdown_current_thread() {
    graceful_shutdown().await;
}

/// Blocking waits inside an object are refused (they would stall the
/// engine); from a thread of the application's own they work, with a
/// threads-engine peer.
#[test]
fn blocking_handle_and_the_threads_engine() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::with_handle(rt.handle().clone(), TokioConfig::default());
    let server = engine.new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();

    struct Blocker(std::sync::Mutex<Option<RemoteRef>>);
    impl Object for Blocker {
        fn call(&self, call: Call) {
            let r = self.0.lock().unwrap().clone().unwrap();
            let e = call
                .tub()
                .call(&r, "echo", &[], &[], Duration::from_secs(1))
                .unwrap_err();
            call.answer(Value::from(matches!(e, Error::WouldStallLoop)))
        }
    }
    let (obj, _, _) = demo();
    let furl = server.register(obj, Some("demo")).unwrap().to_string();
    let blocker = Arc::new(Blocker(std::sync::Mutex::new(None)));
    let bfurl = server
        .register(blocker.clone(), Some("blocker"))
        .unwrap()
        .to_string();
    let own = server
        .tub()
        .get_reference(&furl, Duration::from_secs(10))
        .unwrap();
    let _ = own;

    let threads = foolscap_threads::new_tub().unwrap();
    let r = threads
        .get_reference(&furl, Duration::from_secs(10))
        .unwrap();
    let r = as_remote(&r).unwrap().clone();
    let v = threads
        .call(
            &r,
            "add",
            &[Value::int(2), Value::int(3)],
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(v, Value::int(5));
    // the server calls back over the same connection from inside an object
    let client = engine.new_tub().unwrap();
    let cr = client
        .tub()
        .get_reference(&furl, Duration::from_secs(10))
        .unwrap();
    let cr = as_remote(&cr).unwrap().clone();
    *blocker.0.lock().unwrap() = Some(cr);
    let b = threads
        .get_reference(&bfurl, Duration::from_secs(10))
        .unwrap();
    let b = as_remote(&b).unwrap().clone();
    let v = threads
        .call(&b, "block", &[], &[], Duration::from_secs(10))
        .unwrap();
    assert_eq!(v, Value::from(true));
    engine.shutdown_blocking(Duration::from_secs(2));
}
