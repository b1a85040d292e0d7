//! Many connections to one server: the mio driver's server and the tokio
//! engine's (a multi-thread runtime of two workers) against Python
//! foolscap 24.9.0's (`benches/load_python.py serve`), measured with the
//! same Rust clients (client Tubs on one `foolscap-mio` loop in this
//! process; a Python client would be the bottleneck). Each server runs
//! in a process of its own (this binary again, with
//! `FOOLSCAP_LOAD_SERVE`), so its resident memory is its own.
//!
//! Rows, for each server:
//!
//! * `calls`: calls/s with 1, 10 and 100 client connections, 10 `add`
//!   calls in flight on each (every answer issues the next call and is
//!   checked), for a fixed time (default 3 s);
//! * `idle`: 1,000 and 10,000 idle connections, each to a fresh server
//!   process: the server's RSS growth (VmRSS) divided by the connections,
//!   after the handshake and `getReference`, and the time to connect them
//!   all (at most 256 negotiating at once);
//! * `held`: memory per call in flight: 2,000 `hold` calls on each of 10
//!   connections to a fresh server process, all outstanding at once (the
//!   server answers each after 8 s); the server's RSS growth and this
//!   process's (the client Tubs) divided by the 20,000 calls.
//!
//! One JSON line per row on stdout, then a table with the ratios Rust /
//! Python and tokio / mio. `cargo bench --bench load [-- SECONDS]`; `LOAD_PYTHON=0` skips
//! the Python server, `LOAD_IDLE=0` the idle rows, `LOAD_HELD=0` the held row; `LOAD_TOKIO_WORKERS`
//! sets the tokio server's workers (default 2, 0 for a current-thread
//! runtime). Run without `--bench` (`cargo test --benches`) it
//! makes a short smoke pass with few connections.
//!
//! Shared set-up with `tests/stress_mio.rs`: `tests/common/load.rs`.

#[path = "../tests/common/load.rs"]
mod load;
#[path = "../tests/common/process.rs"]
mod process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use foolscap::identity::Identity;
use foolscap::mio::{LoopConfig, Runtime};

const SERVE_ENV: &str = "FOOLSCAP_LOAD_SERVE";
/// `tokio`: the server process runs the tokio engine.
const ENGINE_ENV: &str = "FOOLSCAP_LOAD_ENGINE";
const GUARD: Duration = Duration::from_secs(180);
const INFLIGHT: usize = 10;
const WINDOW: usize = 256;
/// The `held` row's connections.
const HELD_CONNS: usize = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Rust,
    Tokio,
    Python,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Rust => "rust",
            Server::Tokio => "rust-tokio",
            Server::Python => "python",
        }
    }

    fn spawn(self, py: Option<&Path>, max_inbound: usize) -> load::ServerProcess {
        let cmd = match self {
            Server::Rust | Server::Tokio => {
                let mut c = Command::new(std::env::current_exe().expect("own path"));
                c.env(SERVE_ENV, max_inbound.to_string());
                if self == Server::Tokio {
                    c.env(ENGINE_ENV, "tokio");
                }
                c
            }
            Server::Python => {
                let mut c = Command::new(py.expect("python"));
                c.arg(process::repo_root().join("benches/load_python.py"))
                    .args(["serve", "--max-inbound", &max_inbound.to_string()]);
                c
            }
        };
        load::ServerProcess::spawn(cmd, GUARD).expect("server process")
    }
}

#[derive(Debug, Default, Clone)]
struct Results {
    /// (connections, calls/s)
    calls: Vec<(usize, f64)>,
    /// (connections, KiB per connection, seconds to connect)
    idle: Vec<(usize, f64, f64)>,
    /// (calls in flight, server bytes per call, client bytes per call)
    held: Option<(usize, f64, f64)>,
}

/// Waits until the client loop has closed every socket of dropped Tubs.
fn settle_clients(rt: &Runtime) {
    load::wait_until(Duration::from_secs(30), || rt.stats().sockets == 0);
}

fn wait_server_conns(server: &mut load::ServerProcess, n: usize) -> load::ServerStats {
    let deadline = Instant::now() + GUARD;
    loop {
        let s = server.stats(GUARD).expect("server stats");
        if s.sockets >= n || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What each server is put through.
struct Plan<'a> {
    /// Client connections of the calls rows.
    conn_rows: &'a [usize],
    /// Idle connections of the idle rows.
    idle_rows: &'a [usize],
    /// The held row: calls per connection (0: no row) and hold time (ms).
    held: (usize, i64),
    /// Seconds per calls row.
    secs: f64,
}

fn run(kind: Server, py: Option<&Path>, rt: &Runtime, ids: &[Identity], plan: &Plan) -> Results {
    let Plan {
        conn_rows,
        idle_rows,
        held: held_per_conn,
        secs,
    } = *plan;
    let mut res = Results::default();
    let max_idle = idle_rows.iter().copied().max().unwrap_or(0);
    // calls/s: one server process, disjoint client identities per row
    let server = kind.spawn(py, 2 * max_idle.max(1_000));
    let mut next_id = 0;
    for &n in conn_rows {
        let clients = load::connect_many(
            std::slice::from_ref(rt),
            ids[next_id..next_id + n].to_vec(),
            &server.furl,
            WINDOW,
            GUARD,
        )
        .expect("connect");
        next_id += n;
        let warm = load::drive_calls(&clients, INFLIGHT, Some(20), Duration::ZERO, GUARD);
        assert_eq!(warm.error_count, 0, "warm-up: {:?}", warm.errors);
        let r = load::drive_calls(
            &clients,
            INFLIGHT,
            None,
            Duration::from_secs_f64(secs),
            GUARD,
        );
        assert_eq!(r.error_count, 0, "{} calls: {:?}", kind.name(), r.errors);
        let rate = r.answered as f64 / r.elapsed.as_secs_f64();
        println!(
            "{{\"bench\":\"load\",\"server\":\"{}\",\"row\":\"calls\",\"connections\":{n},\"inflight_per_connection\":{INFLIGHT},\"calls\":{},\"seconds\":{:.3},\"calls_per_s\":{rate:.0}}}",
            kind.name(),
            r.answered,
            r.elapsed.as_secs_f64()
        );
        res.calls.push((n, rate));
        drop(clients);
        settle_clients(rt);
    }
    drop(server);
    if held_per_conn.0 > 0 {
        res.held = Some(held(kind, py, rt, &ids[..HELD_CONNS], held_per_conn));
        settle_clients(rt);
    }
    // idle connections: a fresh server process per row
    for &n in idle_rows {
        let mut server = kind.spawn(py, 2 * n);
        std::thread::sleep(Duration::from_millis(500));
        let before = server.stats(GUARD).expect("stats");
        let t0 = Instant::now();
        let clients = load::connect_many(
            std::slice::from_ref(rt),
            ids[..n].to_vec(),
            &server.furl,
            WINDOW,
            GUARD,
        )
        .expect("connect");
        let connect = t0.elapsed().as_secs_f64();
        let s = wait_server_conns(&mut server, n);
        assert_eq!(s.sockets, n, "{} server connections", kind.name());
        std::thread::sleep(Duration::from_secs(1));
        let after = server.stats(GUARD).expect("stats");
        let per = (after.rss_kib as f64 - before.rss_kib as f64) / n as f64;
        // all still there and answering (not timed)
        let (ok, errors) = load::call_each(&clients, GUARD);
        assert_eq!(ok, n, "{} idle connections: {errors:?}", kind.name());
        println!(
            "{{\"bench\":\"load\",\"server\":\"{}\",\"row\":\"idle\",\"connections\":{n},\"rss_before_kib\":{},\"rss_after_kib\":{},\"kib_per_connection\":{per:.2},\"connect_seconds\":{connect:.3},\"connections_per_s\":{:.0}}}",
            kind.name(),
            before.rss_kib,
            after.rss_kib,
            n as f64 / connect
        );
        res.idle.push((n, per, connect));
        drop(server);
        drop(clients);
        settle_clients(rt);
    }
    res
}

/// Memory per call in flight: `per_conn` `hold(ms, k)` calls on each of
/// `HELD_CONNS` connections to a fresh server, all outstanding at once
/// (`ms` is long enough for every call to arrive before the first answer);
/// the server's RSS growth and this process's (the client Tubs) divided by
/// the calls. Returns (calls, server bytes per call, client bytes per call).
fn held(
    kind: Server,
    py: Option<&Path>,
    rt: &Runtime,
    ids: &[Identity],
    (per_conn, ms): (usize, i64),
) -> (usize, f64, f64) {
    let mut server = kind.spawn(py, 1_000);
    let clients = load::connect_many(
        std::slice::from_ref(rt),
        ids.to_vec(),
        &server.furl,
        WINDOW,
        GUARD,
    )
    .expect("connect");
    // warm both sides' per-call buffers first
    let warm = load::hold_calls(&clients, 10, 0);
    let errors = warm.wait(GUARD);
    assert!(errors.is_empty(), "{} warm-up: {errors:?}", kind.name());
    std::thread::sleep(Duration::from_millis(300));
    let before = server.stats(GUARD).expect("stats");
    let client_before = load::own_rss_kib();
    let n = clients.len() * per_conn;
    let calls = load::hold_calls(&clients, per_conn, ms);
    let arrived = load::wait_until(GUARD, || {
        server
            .stats(GUARD)
            .is_ok_and(|s| s.calls >= before.calls + n as u64)
    });
    assert!(arrived, "{}: held calls did not all arrive", kind.name());
    std::thread::sleep(Duration::from_millis(300));
    let after = server.stats(GUARD).expect("stats");
    let client_after = load::own_rss_kib();
    let early = calls.answered.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        early,
        0,
        "{}: answers came before every call was held (raise the hold time)",
        kind.name()
    );
    let server_bytes = (after.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / n as f64;
    let client_bytes = (client_after as f64 - client_before as f64) * 1024.0 / n as f64;
    let errors = calls.wait(GUARD);
    assert!(errors.is_empty(), "{} held calls: {errors:?}", kind.name());
    println!(
        "{{\"bench\":\"load\",\"server\":\"{}\",\"row\":\"held\",\"calls\":{n},\"rss_before_kib\":{},\"rss_after_kib\":{},\"server_bytes_per_call\":{server_bytes:.0},\"client_bytes_per_call\":{client_bytes:.0}}}",
        kind.name(),
        before.rss_kib,
        after.rss_kib,
    );
    drop(clients);
    drop(server);
    (n, server_bytes, client_bytes)
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.1}x", a / b),
        _ => "-".into(),
    }
}

fn table(rust: &Results, tokio: &Results, python: Option<&Results>) {
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "row", "Rust mio", "Rust tokio", "Python", "tokio/mio", "mio/Python", "tokio/Python"
    );
    for (i, &(n, r)) in rust.calls.iter().enumerate() {
        let t = tokio.calls.get(i).map(|x| x.1);
        let p = python.and_then(|p| p.calls.get(i)).map(|x| x.1);
        println!(
            "{:<34} {:>12.0} {:>12} {:>12} {:>10} {:>12} {:>12}",
            format!("calls/s, {n} connection(s) x {INFLIGHT}"),
            r,
            t.map_or("-".into(), |t| format!("{t:.0}")),
            p.map_or("-".into(), |p| format!("{p:.0}")),
            t.map_or("-".into(), |t| format!("{:.2}", t / r)),
            ratio(r, p),
            t.map_or("-".into(), |t| ratio(t, p))
        );
    }
    for (i, &(n, kib, secs)) in rust.idle.iter().enumerate() {
        let t = tokio.idle.get(i);
        let p = python.and_then(|p| p.idle.get(i));
        println!(
            "{:<34} {:>12.1} {:>12} {:>12} {:>10} {:>12} {:>12}",
            format!("KiB per idle connection, {n}"),
            kib,
            t.map_or("-".into(), |t| format!("{:.1}", t.1)),
            p.map_or("-".into(), |p| format!("{:.1}", p.1)),
            t.map_or("-".into(), |t| format!("{:.2}", t.1 / kib)),
            // smaller is better: Python / Rust
            p.map_or("-".into(), |p| ratio(p.1, Some(kib))),
            match (t, p) {
                (Some(t), Some(p)) => ratio(p.1, Some(t.1)),
                _ => "-".into(),
            }
        );
        println!(
            "{:<34} {:>12.2} {:>12} {:>12} {:>10} {:>12} {:>12}",
            format!("seconds to connect {n}"),
            secs,
            t.map_or("-".into(), |t| format!("{:.2}", t.2)),
            p.map_or("-".into(), |p| format!("{:.2}", p.2)),
            t.map_or("-".into(), |t| format!("{:.2}", t.2 / secs)),
            p.map_or("-".into(), |p| ratio(p.2, Some(secs))),
            match (t, p) {
                (Some(t), Some(p)) => ratio(p.2, Some(t.2)),
                _ => "-".into(),
            }
        );
    }
    if let Some((n, server, client)) = rust.held {
        let t = tokio.held;
        let p = python.and_then(|p| p.held);
        println!(
            "{:<34} {:>12.0} {:>12} {:>12} {:>10} {:>12} {:>12}",
            format!("server bytes per call held, {n}"),
            server,
            t.map_or("-".into(), |t| format!("{:.0}", t.1)),
            p.map_or("-".into(), |p| format!("{:.0}", p.1)),
            t.map_or("-".into(), |t| format!("{:.2}", t.1 / server)),
            p.map_or("-".into(), |p| ratio(p.1, Some(server))),
            match (t, p) {
                (Some(t), Some(p)) => ratio(p.1, Some(t.1)),
                _ => "-".into(),
            }
        );
        println!(
            "{:<34} {:>12.0} {:>12} {:>12} {:>10} {:>12} {:>12}",
            format!("client bytes per call in flight, {n}"),
            client,
            t.map_or("-".into(), |t| format!("{:.0}", t.2)),
            p.map_or("-".into(), |p| format!("{:.0}", p.2)),
            "-",
            "-",
            "-"
        );
    }
    println!("(x ratios: how many times better Rust is than Python; tokio/mio: the plain quotient, calls above 1 and KiB or seconds below 1 favour tokio; goals: >= 300,000 calls/s with 100 connections, < 16 KiB per idle connection, tokio within 20% of mio)");
}

/// The tokio server's worker threads: `LOAD_TOKIO_WORKERS`, default 2
/// (0: a current-thread runtime).
fn tokio_workers() -> usize {
    std::env::var("LOAD_TOKIO_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2)
}

fn main() {
    if let Ok(max) = std::env::var(SERVE_ENV) {
        let max: usize = max.parse().expect("max inbound");
        if std::env::var(ENGINE_ENV).is_ok_and(|e| e == "tokio") {
            load::raise_nofile(2 * max as u64 + 1_000);
            let rt = load::TokioRt::start(tokio_workers());
            load::serve_stdio_on(&rt, max);
            rt.shutdown(Duration::from_secs(2));
        } else {
            load::serve_stdio(LoopConfig::default(), max);
        }
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench { 3.0 } else { 0.2 });
    let conn_rows: &[usize] = &[1, 10, 100];
    let idle_rows: &[usize] = match (bench, std::env::var("LOAD_IDLE").is_ok_and(|v| v == "0")) {
        (_, true) => &[],
        (true, false) => &[1_000, 10_000],
        (false, false) => &[20, 50],
    };
    // LOAD_HELD=0 skips the held row: (calls per connection, hold ms)
    let held_per_conn = match (bench, std::env::var("LOAD_HELD").is_ok_and(|v| v == "0")) {
        (_, true) => (0, 0),
        (true, false) => (2_000, 8_000),
        (false, false) => (20, 1_000),
    };
    let with_python = std::env::var("LOAD_PYTHON").map_or(true, |v| v != "0");
    let max_idle = idle_rows.iter().copied().max().unwrap_or(0);
    let limit = load::raise_nofile(max_idle as u64 + 1_000);
    assert!(
        limit > max_idle as u64 + 100,
        "open-file limit {limit} is too low"
    );
    let py = with_python.then(process::python);
    let t0 = Instant::now();
    let need = max_idle.max(conn_rows.iter().sum()).max(HELD_CONNS);
    let ids = load::identities(need);
    eprintln!("{need} client identities in {:?}", t0.elapsed());
    let rt = Runtime::start(LoopConfig::default()).expect("client loop");
    let plan = Plan {
        conn_rows,
        idle_rows,
        held: held_per_conn,
        secs,
    };
    let rust = run(Server::Rust, None, &rt, &ids, &plan);
    let tokio = run(Server::Tokio, None, &rt, &ids, &plan);
    let python = py.map(|p| run(Server::Python, Some(p), &rt, &ids, &plan));
    table(&rust, &tokio, python.as_ref());
    rt.shutdown(Duration::from_secs(5));
}
