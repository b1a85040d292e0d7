//! Remote calls per second, every client/server pair in one run:
//!
//! | client | server |
//! |--------|--------|
//! | Rust threads (threads engine, this process) | Rust threads (this process) |
//! | Rust mio (a mio event loop, this process) | Rust mio (another event loop, this process) |
//! | Rust mio current-thread (`Runtime::current_thread`) | Rust mio (an event loop, this process) |
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
//! "mio current-thread" is a client on `Runtime::current_thread`: no loop
//! thread, the main thread drives the loop while it waits (in a blocking
//! call, or in `Runtime::run_until` for the in-flight row).
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
//! A second table compares a typed call (`#[remote_interface]`: client
//! stub, server adapter, conversions both ways) with the untyped call of
//! the first table, Rust to Rust on each engine in the same run: the
//! typed server (`RIBench`, same `add` and `echo`) is registered beside
//! the untyped one on the same Tubs. Besides the rates, it gives the
//! process's CPU time per call (client and server together), the cost
//! least disturbed by the rest of the machine; `typed` columns are
//! typed / untyped (for CPU time, above 1 is dearer).
//!
//! `cargo bench --bench calls [-- SECONDS] [--typed-only]` (default 3 s
//! per row; `--typed-only` runs only the second table; `--serve` starts
//! the three Rust servers alone, prints `ENGINE FURL` lines and serves
//! until stdin closes, for a client run by hand under a profiler;
//! `cargo test --benches` runs a short smoke pass).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foolscap::mio::{LoopConfig, Runtime};
use foolscap::value::{RemoteRef, Value};
use foolscap::{Call, Object, Tub};

#[path = "../tests/common/process.rs"]
mod process;

#[path = "common/floor.rs"]
mod floor;

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

/// The typed twin of `Bench`.
#[foolscap::remote_interface(name = "RIBench.foolscap-rs.example")]
trait BenchApi {
    fn add(&self, a: i64, b: i64) -> i64;
    fn echo(&self, x: Bytes) -> Bytes;
}

struct TypedBench;

impl BenchApi for TypedBench {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    fn echo(&self, x: Bytes) -> Bytes {
        x
    }
}

/// The engine that carries a Rust Tub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Threads,
    Mio,
    /// A mio runtime without a loop thread (`Runtime::current_thread`).
    MioCurrent,
    Tokio,
}

/// What carries a Tub besides its handle (shut it down after the Tub).
enum Carrier {
    None,
    Mio(Runtime),
    /// A current-thread runtime: runs only while a thread drives it.
    MioCurrent(Runtime),
    Tokio(tokio::runtime::Runtime, foolscap_tokio::Engine),
}

impl Carrier {
    fn stop(self, grace: Duration) {
        match self {
            Carrier::None => {}
            Carrier::Mio(rt) | Carrier::MioCurrent(rt) => rt.shutdown(grace),
            Carrier::Tokio(rt, engine) => {
                engine.shutdown_blocking(grace);
                rt.shutdown_timeout(Duration::from_secs(1));
            }
        }
    }
}

impl Carrier {
    /// Lets the in-flight row run for `dur`, then stops it and waits for
    /// its `INFLIGHT` last answers (each sends on `rx`'s channel). A
    /// current-thread runtime runs only while this thread drives it.
    fn in_flight(&self, dur: Duration, stop: &AtomicBool, rx: &mpsc::Receiver<()>) {
        let current = match self {
            Carrier::MioCurrent(rt) => Some(rt),
            _ => None,
        };
        match current {
            Some(rt) => {
                rt.run_until(Instant::now() + dur).expect("run");
            }
            None => std::thread::sleep(dur),
        }
        stop.store(true, Ordering::Relaxed);
        let drain_end = Instant::now() + T;
        let mut drained = 0;
        while drained < INFLIGHT {
            match current {
                Some(rt) => {
                    while rx.try_recv().is_ok() {
                        drained += 1;
                    }
                    assert!(Instant::now() < drain_end, "in-flight calls drain");
                    if drained < INFLIGHT {
                        rt.run_until(Instant::now() + Duration::from_millis(10))
                            .expect("run");
                    }
                }
                None => {
                    rx.recv_timeout(T).expect("in-flight calls drain");
                    drained += 1;
                }
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
        Driver::MioCurrent => {
            let rt = Runtime::current_thread(LoopConfig::default()).expect("event loop");
            (rt.new_tub().expect("tub"), Carrier::MioCurrent(rt))
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
    /// The typed server (`BenchApiServer`) on the same Tub.
    typed_furl: String,
}

impl RustServer {
    fn start(driver: Driver) -> RustServer {
        let (tub, carrier) = new_tub(driver);
        tub.listen("127.0.0.1:0").expect("listen");
        let furl = tub
            .register(Arc::new(Bench), Some("kitchen-sink"))
            .expect("register")
            .to_string();
        let typed_furl = tub
            .register(Arc::new(BenchApiServer(TypedBench)), Some("typed"))
            .expect("register")
            .to_string();
        RustServer {
            tub,
            carrier,
            furl,
            typed_furl,
        }
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
    /// CPU time of this process (client and server together) per call,
    /// in µs, sequential and in flight: what a call costs, much less
    /// disturbed by other work on the machine than the rates are.
    cpu_sequential_us: f64,
    cpu_inflight_us: f64,
    /// CPU time of this process per 1 MiB echo (both ways), in µs.
    cpu_echo_us: f64,
    /// Latency of the sequential calls, p50 and p99, in µs.
    p50_us: f64,
    p99_us: f64,
}

/// CPU seconds this process has used (all threads, user and system).
fn cpu_seconds() -> f64 {
    floor::cpu_seconds()
}

/// The smaller of two figures, 0 meaning not measured.
fn min_set(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        b
    } else if b == 0.0 {
        a
    } else {
        a.min(b)
    }
}

impl Rates {
    /// The better of each figure.
    fn best(self, other: Rates) -> Rates {
        Rates {
            sequential: self.sequential.max(other.sequential),
            inflight: self.inflight.max(other.inflight),
            echo_mib: self.echo_mib.max(other.echo_mib),
            cpu_sequential_us: min_set(self.cpu_sequential_us, other.cpu_sequential_us),
            cpu_inflight_us: min_set(self.cpu_inflight_us, other.cpu_inflight_us),
            cpu_echo_us: min_set(self.cpu_echo_us, other.cpu_echo_us),
            p50_us: min_set(self.p50_us, other.p50_us),
            p99_us: min_set(self.p99_us, other.p99_us),
        }
    }
}

/// How long to run `row` ("seq", "inflight", "echo"): `secs`, or zero
/// when `CALLS_ONLY` (a comma-separated list of rows, for profilers) does
/// not name it.
fn row_time(row: &str, secs: f64) -> Duration {
    match std::env::var("CALLS_ONLY") {
        Ok(only) if !only.split(',').any(|r| r == row) => Duration::ZERO,
        _ => Duration::from_secs_f64(secs),
    }
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
    let dur = row_time("seq", secs);
    // sequential
    let mut lat = Vec::with_capacity(1 << 20);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while t0.elapsed() < dur {
        let t = Instant::now();
        add(&tub, &target);
        lat.push(t.elapsed());
        n += 1;
    }
    let sequential = n as f64 / t0.elapsed().as_secs_f64();
    let (p50_us, p99_us) = floor::percentiles(&mut lat);
    let cpu_sequential_us = (cpu_seconds() - c0) * 1e6 / n as f64;
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
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..INFLIGHT {
        issue(
            tub.clone(),
            target.clone(),
            done.clone(),
            stop.clone(),
            tx.clone(),
        );
    }
    carrier.in_flight(row_time("inflight", secs), &stop, &rx);
    let inflight = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    let cpu_inflight_us = (cpu_seconds() - c0) * 1e6 / done.load(Ordering::Relaxed) as f64;
    // echo 1 MiB
    let payload = Value::bytes(&vec![b'x'; ECHO_BYTES]);
    tub.call(&target, "echo", std::slice::from_ref(&payload), &[], T)
        .expect("echo");
    let dur = row_time("echo", secs);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while t0.elapsed() < dur {
        let back = tub
            .call(&target, "echo", std::slice::from_ref(&payload), &[], T)
            .expect("echo");
        assert!(back == payload);
        n += 1;
    }
    let echo_mib = n as f64 * ECHO_BYTES as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
    let cpu_echo_us = (cpu_seconds() - c0) * 1e6 / n as f64;
    tub.shutdown();
    carrier.stop(Duration::ZERO);
    Rates {
        sequential,
        inflight,
        echo_mib,
        cpu_sequential_us,
        cpu_inflight_us,
        cpu_echo_us,
        p50_us,
        p99_us,
    }
}

/// `rust_client`'s rows through the typed client stub.
fn typed_client(driver: Driver, furl: &str, secs: f64) -> Rates {
    let (tub, runtime) = new_tub(driver);
    let target = BenchApiClient::connect(&tub, furl, T).expect("connect");
    let add = |target: &BenchApiClient| assert_eq!(target.add(1, 2).expect("add"), 3);
    for _ in 0..200 {
        add(&target);
    }
    let dur = Duration::from_secs_f64(secs);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while t0.elapsed() < dur {
        add(&target);
        n += 1;
    }
    let sequential = n as f64 / t0.elapsed().as_secs_f64();
    let cpu_sequential_us = (cpu_seconds() - c0) * 1e6 / n as f64;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    fn issue(
        target: BenchApiClient,
        done: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        tx: mpsc::Sender<()>,
    ) {
        let again = target.clone();
        target.add_async(1, 2, move |r| {
            assert_eq!(r.expect("add"), 3);
            done.fetch_add(1, Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) {
                let _ = tx.send(());
            } else {
                issue(again, done, stop, tx);
            }
        });
    }
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..INFLIGHT {
        issue(target.clone(), done.clone(), stop.clone(), tx.clone());
    }
    runtime.in_flight(dur, &stop, &rx);
    let inflight = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    let cpu_inflight_us = (cpu_seconds() - c0) * 1e6 / done.load(Ordering::Relaxed) as f64;
    let payload = Bytes::from(vec![b'x'; ECHO_BYTES]);
    target.echo(payload.clone()).expect("echo");
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        let back = target.echo(payload.clone()).expect("echo");
        assert!(back == payload);
        n += 1;
    }
    let echo_mib = n as f64 * ECHO_BYTES as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
    drop(target);
    tub.shutdown();
    runtime.stop(Duration::ZERO);
    Rates {
        sequential,
        inflight,
        echo_mib,
        cpu_sequential_us,
        cpu_inflight_us,
        ..Rates::default()
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
        let mut lat = Vec::with_capacity(1 << 20);
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut n = 0u64;
        while t0.elapsed() < dur {
            let t = Instant::now();
            add(tub.clone(), target.clone()).await;
            lat.push(t.elapsed());
            n += 1;
        }
        let sequential = n as f64 / t0.elapsed().as_secs_f64();
        let (p50_us, p99_us) = floor::percentiles(&mut lat);
        let cpu_sequential_us = (cpu_seconds() - c0) * 1e6 / n as f64;
        // in flight: 100 tasks, each awaiting its calls in turn
        let stop = Arc::new(AtomicBool::new(false));
        let (t0, c0) = (Instant::now(), cpu_seconds());
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
        let cpu_inflight_us = (cpu_seconds() - c0) * 1e6 / done as f64;
        // echo 1 MiB
        let payload = Value::bytes(&vec![b'x'; ECHO_BYTES]);
        tub.call(&target, "echo", std::slice::from_ref(&payload), &[])
            .await
            .expect("echo");
        let (t0, c0) = (Instant::now(), cpu_seconds());
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
        let cpu_echo_us = (cpu_seconds() - c0) * 1e6 / n as f64;
        engine.shutdown(Duration::ZERO).await;
        Rates {
            sequential,
            inflight,
            echo_mib,
            cpu_sequential_us,
            cpu_inflight_us,
            cpu_echo_us,
            p50_us,
            p99_us,
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
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--fixed") {
        let kind = args.get(i + 1).expect("--fixed typed|untyped N");
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).expect("N");
        return fixed_run(kind, n);
    }
    let flag = |f: &str| std::env::args().any(|a| a == f);
    let threads = RustServer::start(Driver::Threads);
    let mio = RustServer::start(Driver::Mio);
    let tok = RustServer::start(Driver::Tokio);
    if flag("--serve") {
        // the three servers alone, for a client run by hand (a Python
        // client under a profiler): their FURLs on stdout, one per line,
        // then serve until stdin closes
        for (name, s) in [("threads", &threads), ("mio", &mio), ("tokio", &tok)] {
            println!("{name} {}", s.furl);
        }
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    } else if flag("--mio-only") || flag("--mio-current-only") {
        // one row, nothing else in the process: for profilers
        let (client, name) = if flag("--mio-current-only") {
            (Driver::MioCurrent, "Rust mio current-thread -> Rust mio")
        } else {
            (Driver::Mio, "Rust mio -> Rust mio")
        };
        let r = rust_client(client, &mio.furl, secs);
        let n = |rate: f64, row: &str| (rate * row_time(row, secs).as_secs_f64()).round();
        println!(
            "calls: sequential {}, in flight {}, echoes {}",
            n(r.sequential, "seq"),
            n(r.inflight, "inflight"),
            n(r.echo_mib, "echo")
        );
        println!(
            "{name}: sequential {:.0}/s (p50 {:.1} us, p99 {:.1} us, \
             CPU {:.2} us), 100 in flight {:.0}/s (CPU {:.2} us), \
             echo {:.1} MiB/s (CPU {:.0} us)",
            r.sequential,
            r.p50_us,
            r.p99_us,
            r.cpu_sequential_us,
            r.inflight,
            r.cpu_inflight_us,
            r.echo_mib,
            r.cpu_echo_us
        );
    } else if flag("--floor-only") {
        floor_table(floor::measure(secs), &[]);
    } else if flag("--rust-only") {
        let f = floor::measure(secs);
        let rows = rust_rows(&threads, &mio, &tok, secs);
        floor_table(f, &rows);
    } else if !flag("--typed-only") {
        untyped_table(&threads, &mio, &tok, secs);
    }
    if !(flag("--mio-only")
        || flag("--mio-current-only")
        || flag("--floor-only")
        || flag("--rust-only")
        || flag("--serve"))
    {
        typed_table(&threads, &mio, secs);
    }
    threads.stop();
    mio.stop();
    tok.stop();
}

/// `--fixed typed|untyped N`: exactly N `add(1, 2)` calls, 100 in
/// flight, client and server on two mio loops of this process, then exit.
/// For instruction counts, which the load of a shared machine does not
/// move: run it under `valgrind --tool=callgrind` with N and 2N; the
/// difference over N is the instructions per call (setup cancels out).
fn fixed_run(kind: &str, n: u64) {
    /// Counts shared by the calls of a fixed run.
    #[derive(Clone)]
    struct Fixed {
        n: u64,
        issued: Arc<AtomicU64>,
        done: Arc<AtomicU64>,
        tx: mpsc::Sender<()>,
    }
    impl Fixed {
        /// Whether one more call may go.
        fn take(&self) -> bool {
            self.issued.fetch_add(1, Ordering::Relaxed) < self.n
        }
        fn answered(&self) {
            if self.done.fetch_add(1, Ordering::Relaxed) + 1 == self.n {
                let _ = self.tx.send(());
            }
        }
    }
    fn typed(target: BenchApiClient, f: Fixed) {
        if !f.take() {
            return;
        }
        let again = target.clone();
        target.add_async(1, 2, move |r| {
            assert_eq!(r.expect("add"), 3);
            f.answered();
            typed(again, f);
        });
    }
    fn untyped(tub: Tub, target: RemoteRef, f: Fixed) {
        if !f.take() {
            return;
        }
        let (t2, r2) = (tub.clone(), target.clone());
        tub.call_async(
            &target,
            "add",
            &[Value::int(1), Value::int(2)],
            &[],
            move |r| {
                assert_eq!(r.expect("add"), Value::int(3));
                f.answered();
                untyped(t2, r2, f);
            },
        )
        .expect("call");
    }
    let server = RustServer::start(Driver::Mio);
    let (tub, runtime) = new_tub(Driver::Mio);
    let (tx, rx) = mpsc::channel::<()>();
    let f = Fixed {
        n,
        issued: Arc::new(AtomicU64::new(0)),
        done: Arc::new(AtomicU64::new(0)),
        tx,
    };
    match kind {
        "typed" => {
            let target = BenchApiClient::connect(&tub, &server.typed_furl, T).expect("connect");
            for _ in 0..INFLIGHT {
                typed(target.clone(), f.clone());
            }
        }
        _ => {
            let target = match tub.get_reference(&server.furl, T).expect("connect") {
                Value::Remote(r) => r,
                other => panic!("not remote: {other:?}"),
            };
            for _ in 0..INFLIGHT {
                untyped(tub.clone(), target.clone(), f.clone());
            }
        }
    }
    rx.recv_timeout(Duration::from_secs(3600))
        .expect("all answered");
    println!("{kind}: {} calls", f.done.load(Ordering::Relaxed));
    tub.shutdown();
    runtime.stop(Duration::ZERO);
    server.stop();
}

/// The Rust -> Rust rows.
fn rust_rows(
    threads: &RustServer,
    mio: &RustServer,
    tok: &RustServer,
    secs: f64,
) -> Vec<(&'static str, Rates)> {
    vec![
        (
            "Rust threads -> Rust threads",
            rust_client(Driver::Threads, &threads.furl, secs),
        ),
        (
            "Rust mio -> Rust mio",
            rust_client(Driver::Mio, &mio.furl, secs),
        ),
        (
            "Rust mio current-thread -> Rust mio",
            rust_client(Driver::MioCurrent, &mio.furl, secs),
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
    ]
}

/// The floor (rustls alone over loopback) and each Rust -> Rust row as a
/// percentage of it, from the same run: by rate, and by CPU cost (floor
/// CPU time per operation / ours), which the machine's load moves less.
fn floor_table(f: floor::Floor, rows: &[(&'static str, Rates)]) {
    println!();
    println!(
        "{:<36} {:>12} {:>6} {:>8} {:>8} {:>8} {:>6} {:>10} {:>6} {:>9} {:>6} {:>12}",
        "floor vs ours",
        "sequential/s",
        "floor",
        "p50 us",
        "p99 us",
        "CPU us",
        "floor",
        "echo MiB/s",
        "floor",
        "CPU us",
        "floor",
        "handshakes/s"
    );
    println!(
        "{:<36} {:>12.0} {:>6} {:>8.1} {:>8.1} {:>8.2} {:>6} {:>10.1} {:>6} {:>9.0} {:>6} {:>12.0}",
        "rustls alone (floor)",
        f.pingpong,
        "100%",
        f.pingpong_p50_us,
        f.pingpong_p99_us,
        f.cpu_pingpong_us,
        "100%",
        f.echo_mib,
        "100%",
        f.cpu_echo_us,
        "100%",
        f.handshakes
    );
    let pct = |a: f64, b: f64| format!("{:.0}%", 100.0 * a / b);
    for (name, r) in rows {
        println!(
            "{:<36} {:>12.0} {:>6} {:>8.1} {:>8.1} {:>8.2} {:>6} {:>10.1} {:>6} {:>9.0} {:>6} {:>12}",
            name,
            r.sequential,
            pct(r.sequential, f.pingpong),
            r.p50_us,
            r.p99_us,
            r.cpu_sequential_us,
            pct(f.cpu_pingpong_us, r.cpu_sequential_us),
            r.echo_mib,
            pct(r.echo_mib, f.echo_mib),
            r.cpu_echo_us,
            pct(f.cpu_echo_us, r.cpu_echo_us),
            "",
        );
    }
    println!(
        "(floor %: rate / floor rate, and floor CPU time / ours per operation; \
         CPU us: this process, client and server threads together)"
    );
}

/// Every client/server pair, untyped.
fn untyped_table(threads: &RustServer, mio: &RustServer, tok: &RustServer, secs: f64) {
    let py = python();
    let pys = python_server(py);
    let f = floor::measure(secs);
    let mut rows = rust_rows(threads, mio, tok, secs);
    let rust_to_rust = rows.len();
    rows.extend([
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
    ]);
    let base = rows[rows.len() - 1].1;
    println!(
        "{:<36} {:>14} {:>8} {:>16} {:>8} {:>14} {:>8}",
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
            "{:<36} {:>14.0} {:>7.1}x {:>16.0} {:>7.1}x {:>14.1} {:>7.1}x",
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
    floor_table(f, &rows[..rust_to_rust]);
}

/// Typed vs untyped, Rust to Rust, each pair measured back to back.
fn typed_table(threads: &RustServer, mio: &RustServer, secs: f64) {
    println!();
    println!(
        "{:<48} {:>14} {:>8} {:>16} {:>8} {:>14} {:>8} {:>12} {:>8} {:>12} {:>8}",
        "typed vs untyped",
        "sequential/s",
        "typed",
        "100 in flight/s",
        "typed",
        "echo MiB/s",
        "typed",
        "CPU us/call",
        "typed",
        "in flight",
        "typed"
    );
    for (name, driver, server) in [
        ("Rust threads -> Rust threads", Driver::Threads, threads),
        ("Rust mio -> Rust mio", Driver::Mio, mio),
        (
            "Rust mio current-thread -> Rust mio",
            Driver::MioCurrent,
            mio,
        ),
    ] {
        // interleaved three times, the best of each kind: drift in the
        // machine's load hits both alike
        let mut untyped = Rates::default();
        let mut typed = Rates::default();
        for _ in 0..3 {
            untyped = untyped.best(rust_client(driver, &server.furl, secs));
            typed = typed.best(typed_client(driver, &server.typed_furl, secs));
        }
        for (kind, r) in [("untyped", untyped), ("typed", typed)] {
            println!(
                "{:<48} {:>14.0} {:>7.3}x {:>16.0} {:>7.3}x {:>14.1} {:>7.3}x {:>12.2} {:>7.3}x {:>12.2} {:>7.3}x",
                format!("{name} ({kind})"),
                r.sequential,
                r.sequential / untyped.sequential,
                r.inflight,
                r.inflight / untyped.inflight,
                r.echo_mib,
                r.echo_mib / untyped.echo_mib,
                r.cpu_sequential_us,
                r.cpu_sequential_us / untyped.cpu_sequential_us,
                r.cpu_inflight_us,
                r.cpu_inflight_us / untyped.cpu_inflight_us,
            );
        }
    }
}
