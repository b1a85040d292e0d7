//! Remote calls per second, every client/server pair in one run:
//!
//! | client | server |
//! |--------|--------|
//! | Rust threads (threads engine, this process) | Rust threads (this process) |
//! | Rust mio (a mio event loop, this process) | Rust mio (another event loop, this process) |
//! | Rust tokio (async face, current-thread runtime) | Rust tokio (a two-worker runtime, this process) |
//! | Rust threads, Rust mio, Rust tokio | Python (`benches/calls_python.py serve`) |
//! | Python (`calls_python.py client`) | Rust threads, Rust mio, Rust tokio |
//! | Python | Python |
//!
//! "threads" is the threads engine (`foolscap::threads::new_tub`: a reader and a
//! writer thread per connection); "mio" is `foolscap::mio` (`Runtime`,
//! one loop thread carrying every socket; the client's and the server's
//! Tubs run on two separate loops, as two processes would). Blocking calls
//! wait on the bench's main thread in both cases; the in-flight row issues
//! each next call from the answer callback (on the loop thread for mio).
//! "tokio" is `foolscap_tokio`: the server's engine runs on a
//! multi-thread runtime of two workers, the client is async code (the
//! `AsyncTub` face: `call(..).await`) on a current-thread runtime that the
//! bench's main thread runs, with 100 tasks each awaiting its calls in
//! turn for the in-flight row.
//!
//! Rows: `sequential` (one `add(1, 2)` at a time), `inflight` (100
//! `add(1, 2)` outstanding at all times) and `echo` (sequential echo of
//! 1 MiB of bytes, MiB/s one way). Every answer is checked. The table
//! gives each figure and its ratio to Python -> Python.
//!
//! `cargo bench --bench calls [-- SECONDS]` (default 3 s per row;
//! `cargo test --benches` runs a short smoke pass).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use foolscap::mio::{LoopConfig, Runtime};
use foolscap::value::{RemoteRef, Value};
use foolscap::{Call, Object, Tub};

#[path = "../tests/common/process.rs"]
mod process;

use process::{python, repo_root, Server};

const INFLIGHT: usize = 100;
const ECHO_BYTES: usize = 1 << 20;
const T: Duration = Duration::from_secs(60);

/// The benchmark object: `echo(x)` and `add(a, b)`.
struct Bench;

impl Object for Bench {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "echo" => {
                let x = call.arg(0, "x").cloned().unwrap_or(Value::None);
                call.answer(x)
            }
            "add" => {
                let a = call.arg(0, "a").and_then(Value::as_i64).unwrap_or(0);
                let b = call.arg(1, "b").and_then(Value::as_i64).unwrap_or(0);
                call.answer(Value::int(a + b))
            }
            _ => call.no_such_method("Bench"),
        }
    }
}

/// The engine that carries a Rust Tub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Threads,
    Mio,
    Tokio,
}

/// What carries a Tub besides its handle (shut it down after the Tub).
enum Carrier {
    None,
    Mio(Runtime),
    Tokio(tokio::runtime::Runtime, foolscap_tokio::Engine),
}

impl Carrier {
    fn stop(self, grace: Duration) {
        match self {
            Carrier::None => {}
            Carrier::Mio(rt) => rt.shutdown(grace),
            Carrier::Tokio(rt, engine) => {
                engine.shutdown_blocking(grace);
                rt.shutdown_timeout(Duration::from_secs(1));
            }
        }
    }
}

/// A Tub on `driver`'s engine, and what carries it.
fn new_tub(driver: Driver) -> (Tub, Carrier) {
    match driver {
        Driver::Threads => (foolscap::threads::new_tub().expect("tub"), Carrier::None),
        Driver::Mio => {
            let rt = Runtime::start(LoopConfig::default()).expect("event loop");
            (rt.new_tub().expect("tub"), Carrier::Mio(rt))
        }
        Driver::Tokio => {
            // CALLS_TOKIO_SERVER_WORKERS: the server runtime's workers
            let workers = std::env::var("CALLS_TOKIO_SERVER_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(2);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let engine = foolscap_tokio::Engine::with_handle(
                rt.handle().clone(),
                foolscap_tokio::TokioConfig::default(),
            );
            let tub = engine.new_tub().expect("tub").into();
            (tub, Carrier::Tokio(rt, engine))
        }
    }
}

/// A Rust server on `driver`'s engine.
struct RustServer {
    tub: Tub,
    carrier: Carrier,
    furl: String,
}

impl RustServer {
    fn start(driver: Driver) -> RustServer {
        let (tub, carrier) = new_tub(driver);
        tub.listen("127.0.0.1:0").expect("listen");
        let furl = tub
            .register(Arc::new(Bench), Some("kitchen-sink"))
            .expect("register")
            .to_string();
        RustServer { tub, carrier, furl }
    }

    fn stop(self) {
        match self.carrier {
            Carrier::None => self.tub.shutdown(),
            c => c.stop(Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    sequential: f64,
    inflight: f64,
    echo_mib: f64,
}

fn rust_client(driver: Driver, furl: &str, secs: f64) -> Rates {
    if driver == Driver::Tokio {
        let workers = std::env::var("CALLS_TOKIO_CLIENT_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        return tokio_client(furl, secs, workers);
    }
    let (tub, carrier) = new_tub(driver);
    let target = match tub.get_reference(furl, T).expect("connect") {
        Value::Remote(r) => r,
        other => panic!("not remote: {other:?}"),
    };
    let add = |tub: &Tub, r: &RemoteRef| {
        let v = tub
            .call(r, "add", &[Value::int(1), Value::int(2)], &[], T)
            .expect("add");
        assert_eq!(v, Value::int(3));
    };
    for _ in 0..200 {
        add(&tub, &target);
    }
    let dur = Duration::from_secs_f64(secs);
    // sequential
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        add(&tub, &target);
        n += 1;
    }
    let sequential = n as f64 / t0.elapsed().as_secs_f64();
    // in flight: each answer issues the next call until time is up
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    fn issue(
        tub: Tub,
        target: RemoteRef,
        done: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        tx: mpsc::Sender<()>,
    ) {
        let (t2, r2) = (tub.clone(), target.clone());
        tub.call_async(
            &target,
            "add",
            &[Value::int(1), Value::int(2)],
            &[],
            move |r| {
                assert_eq!(r.expect("add"), Value::int(3));
                done.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    let _ = tx.send(());
                } else {
                    issue(t2, r2, done, stop, tx);
                }
            },
        )
        .expect("call");
    }
    let t0 = Instant::now();
    for _ in 0..INFLIGHT {
        issue(
            tub.clone(),
            target.clone(),
            done.clone(),
            stop.clone(),
            tx.clone(),
        );
    }
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for _ in 0..INFLIGHT {
        rx.recv_timeout(T).expect("in-flight calls drain");
    }
    let inflight = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    // echo 1 MiB
    let payload = Value::bytes(&vec![b'x'; ECHO_BYTES]);
    tub.call(&target, "echo", std::slice::from_ref(&payload), &[], T)
        .expect("echo");
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        let back = tub
            .call(&target, "echo", std::slice::from_ref(&payload), &[], T)
            .expect("echo");
        assert!(back == payload);
        n += 1;
    }
    let echo_mib = n as f64 * ECHO_BYTES as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
    tub.shutdown();
    carrier.stop(Duration::ZERO);
    Rates {
        sequential,
        inflight,
        echo_mib,
    }
}

/// The rows of a tokio client: async code on a current-thread runtime
/// that this thread runs.
fn tokio_client(furl: &str, secs: f64, workers: usize) -> Rates {
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let rates = rt.block_on(async {
        let engine = foolscap_tokio::Engine::new(foolscap_tokio::TokioConfig::default());
        let tub = engine.new_tub().expect("tub");
        let target = match tub.get_reference(furl).await.expect("connect") {
            Value::Remote(r) => r,
            other => panic!("not remote: {other:?}"),
        };
        let add = |tub: foolscap_tokio::AsyncTub, r: RemoteRef| async move {
            let v = tub
                .call(&r, "add", &[Value::int(1), Value::int(2)], &[])
                .await
                .expect("add");
            assert_eq!(v, Value::int(3));
        };
        for _ in 0..200 {
            add(tub.clone(), target.clone()).await;
        }
        let dur = Duration::from_secs_f64(secs);
        // sequential
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < dur {
            add(tub.clone(), target.clone()).await;
            n += 1;
        }
        let sequential = n as f64 / t0.elapsed().as_secs_f64();
        // in flight: 100 tasks, each awaiting its calls in turn
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..INFLIGHT)
            .map(|_| {
                let (tub, target, stop) = (tub.clone(), target.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        add(tub.clone(), target.clone()).await;
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        tokio::time::sleep(dur).await;
        stop.store(true, Ordering::Relaxed);
        let mut done = 0;
        for t in tasks {
            done += t.await.expect("in-flight task");
        }
        let inflight = done as f64 / t0.elapsed().as_secs_f64();
        // echo 1 MiB
        let payload = Value::bytes(&vec![b'x'; ECHO_BYTES]);
        tub.call(&target, "echo", std::slice::from_ref(&payload), &[])
            .await
            .expect("echo");
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < dur {
            let back = tub
                .call(&target, "echo", std::slice::from_ref(&payload), &[])
                .await
                .expect("echo");
            assert!(back == payload);
            n += 1;
        }
        let echo_mib = n as f64 * ECHO_BYTES as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
        engine.shutdown(Duration::ZERO).await;
        Rates {
            sequential,
            inflight,
            echo_mib,
        }
    });
    rates
}

fn python_client(py: &Path, furl: &str, secs: f64) -> Rates {
    let out = Command::new(py)
        .arg(repo_root().join("benches/calls_python.py"))
        .args(["client", furl, "--seconds", &secs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run calls_python.py client");
    assert!(out.status.success(), "calls_python.py client failed");
    let mut r = Rates::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let j: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let rate = j["calls_per_s"].as_f64().unwrap_or(0.0);
        match j["row"].as_str() {
            Some("sequential") => r.sequential = rate,
            Some("inflight") => r.inflight = rate,
            Some("echo") => r.echo_mib = j["mib_per_s"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    r
}

/// `calls_python.py serve FURLFILE`.
fn python_server(py: &Path) -> Server {
    let mut cmd = Command::new(py);
    cmd.arg(repo_root().join("benches/calls_python.py"))
        .arg("serve");
    Server::start(cmd, "calls_python.py", &[])
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test" || a == "--list")
        || !std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if smoke { 0.2 } else { 3.0 });
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let py = python();
    let threads = RustServer::start(Driver::Threads);
    let mio = RustServer::start(Driver::Mio);
    let tok = RustServer::start(Driver::Tokio);
    let pys = python_server(py);

    let rows = [
        (
            "Rust threads -> Rust threads",
            rust_client(Driver::Threads, &threads.furl, secs),
        ),
        (
            "Rust mio -> Rust mio",
            rust_client(Driver::Mio, &mio.furl, secs),
        ),
        (
            "Rust tokio -> Rust tokio",
            rust_client(Driver::Tokio, &tok.furl, secs),
        ),
        (
            "Rust mio -> Rust tokio",
            rust_client(Driver::Mio, &tok.furl, secs),
        ),
        (
            "Rust tokio -> Rust mio",
            rust_client(Driver::Tokio, &mio.furl, secs),
        ),
        (
            "Rust threads -> Python",
            rust_client(Driver::Threads, &pys.furl, secs),
        ),
        (
            "Rust mio -> Python",
            rust_client(Driver::Mio, &pys.furl, secs),
        ),
        (
            "Rust tokio -> Python",
            rust_client(Driver::Tokio, &pys.furl, secs),
        ),
        (
            "Python -> Rust threads",
            python_client(py, &threads.furl, secs),
        ),
        ("Python -> Rust mio", python_client(py, &mio.furl, secs)),
        ("Python -> Rust tokio", python_client(py, &tok.furl, secs)),
        ("Python -> Python", python_client(py, &pys.furl, secs)),
    ];
    let base = rows[rows.len() - 1].1;
    println!(
        "{:<28} {:>14} {:>8} {:>16} {:>8} {:>14} {:>8}",
        "client -> server",
        "sequential/s",
        "ratio",
        "100 in flight/s",
        "ratio",
        "echo MiB/s",
        "ratio"
    );
    for (name, r) in &rows {
        println!(
            "{:<28} {:>14.0} {:>7.1}x {:>16.0} {:>7.1}x {:>14.1} {:>7.1}x",
            name,
            r.sequential,
            r.sequential / base.sequential,
            r.inflight,
            r.inflight / base.inflight,
            r.echo_mib,
            r.echo_mib / base.echo_mib,
        );
    }
    let ratio = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1);
    if let (Some(t), Some(m)) = (
        ratio("Rust tokio -> Rust tokio"),
        ratio("Rust mio -> Rust mio"),
    ) {
        println!(
            "tokio/mio (Rust -> Rust): sequential {:.2}, 100 in flight {:.2}, echo {:.2}",
            t.sequential / m.sequential,
            t.inflight / m.inflight,
            t.echo_mib / m.echo_mib
        );
    }
    threads.stop();
    mio.stop();
    tok.stop();
}
