//! Connection establishment: TCP connect to negotiated session, measured
//! in one run for
//!
//! * Rust client -> Rust server (fresh ECDSA P-256 identities),
//! * Rust client -> Python server (`tests/interop/fsnego.py serve`, the
//!   RSA fixture `tub-high`),
//! * Python client -> the same Python server (`fsnego.py bench`, same
//!   client identity as the Rust client),
//!
//! printing medians and the ratios against Python -> Python. The Rust
//! numbers run from `TcpStream::connect` to `Established`; Python's from
//! its `connectionMade` (TCP already connected) to `switchToBanana`, so the
//! comparison slightly favours Python. Every connection is a reconnect of
//! the same client Tub, as in a long-running application.
//!
//! `cargo bench --bench connect [-- N]` (N connections per case, default
//! 200; `cargo test --benches` runs 5 per case as a smoke test).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foolscap::furl::Furl;
use foolscap::identity::Identity;
use foolscap::negotiation::{
    ConnectionTable, Negotiation, NegotiationConfig, NegotiationEvent, Session, TlsContext,
};
use foolscap::rng::SystemRng;

#[path = "../tests/common/process.rs"]
mod process;

use process::{python, repo_root, KillOnDrop, TempDir};

/// Drives one negotiation to its end over a blocking socket.
fn negotiate(
    sock: &mut TcpStream,
    mut neg: Negotiation,
    table: &mut ConnectionTable,
) -> Box<Session> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        out.clear();
        neg.poll_transmit(&mut out);
        if !out.is_empty() {
            sock.write_all(&out).expect("write");
        }
        match neg.poll_event() {
            Some(NegotiationEvent::Established(mut s)) => {
                out.clear();
                s.poll_transmit(&mut out);
                if !out.is_empty() {
                    sock.write_all(&out).expect("write");
                }
                return s;
            }
            Some(NegotiationEvent::Failed(e)) => panic!("negotiation failed: {e}"),
            Some(other) => panic!("unexpected negotiation event {other:?}"),
            None => {}
        }
        assert!(Instant::now() < deadline, "negotiation took too long");
        match sock.read(&mut buf) {
            Ok(0) => neg.handle_eof(),
            Ok(n) => neg.handle_input(Instant::now(), &buf[..n], table),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Connects `n` times (plus warm-up) and returns the times in ms.
fn rust_client(identity: &Identity, furl: &Furl, n: usize) -> Vec<f64> {
    let tls = TlsContext::new(identity).unwrap();
    let mut table = ConnectionTable::new(&mut SystemRng);
    let config = NegotiationConfig::default();
    let (host, port) = furl.tcp_hints().next().expect("a TCP hint");
    let addr = format!("{host}:{port}");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let start = Instant::now();
        let mut sock = TcpStream::connect(&addr).expect("connect");
        sock.set_nodelay(true).unwrap();
        let neg = Negotiation::client(&tls, &mut table, furl.tubid, host, &config, Instant::now());
        let mut session = negotiate(&mut sock, neg, &mut table);
        let elapsed = start.elapsed();
        if i >= n / 10 {
            samples.push(elapsed.as_secs_f64() * 1000.0);
        }
        session.close();
        let mut out = Vec::new();
        session.poll_transmit(&mut out);
        let _ = sock.write_all(&out);
        table.connection_closed(session.info().connection_id);
    }
    samples
}

/// A Rust server negotiating every connection in one thread; connections
/// stay open (unread) until it stops.
fn rust_server(identity: &Identity) -> (Furl, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let tls = TlsContext::new(identity).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let furl = Furl::parse(&format!(
        "pb://{}@tcp:127.0.0.1:{port}/bench",
        identity.tubid()
    ))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    listener.set_nonblocking(true).unwrap();
    let thread = std::thread::spawn(move || {
        let mut table = ConnectionTable::new(&mut SystemRng);
        let config = NegotiationConfig::default();
        let mut open = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    sock.set_nonblocking(false).unwrap();
                    sock.set_nodelay(true).unwrap();
                    let neg = Negotiation::server(&tls, &mut table, &config, Instant::now());
                    let session = negotiate(&mut sock, neg, &mut table);
                    if let Some(old) = session.info().replaced {
                        open.retain(|(id, _)| *id != old);
                    }
                    open.push((session.info().connection_id, sock));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    (furl, stop, thread)
}

struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
    n: usize,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        n: v.len(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // this is a smoke test with a few connections per case.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench_mode { 200 } else { 5 });
    let dir = TempDir::new("connect-bench");

    // Rust -> Rust
    let server_id = Identity::generate().unwrap();
    let client_id = Identity::generate().unwrap();
    let (furl, stop, thread) = rust_server(&server_id);
    let rr = stats(rust_client(&client_id, &furl, n));
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();

    // the Python server
    let py = python();
    let script = repo_root().join("tests/interop/fsnego.py");
    let mut server = KillOnDrop(
        Command::new(py)
            .arg(&script)
            .args([
                "serve",
                repo_root()
                    .join("tests/data/tub-high.pem")
                    .to_str()
                    .unwrap(),
                "--lifetime",
                "600",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fsnego.py serve"),
    );
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(&line).expect("JSON from fsnego.py serve");
    let py_furl = Furl::parse(j["furl"].as_str().unwrap()).unwrap();

    // Rust -> Python
    let rp = stats(rust_client(&client_id, &py_furl, n));

    // Python -> Python, same client identity
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, client_id.to_cert_file()).unwrap();
    let out = Command::new(py)
        .arg(&script)
        .args([
            "bench",
            cert.to_str().unwrap(),
            &py_furl.to_string(),
            "--count",
            &(n + n / 10).to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run fsnego.py bench");
    drop(server);
    drop(dir);
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from fsnego.py bench");
    let samples: Vec<f64> = j["samples_ms"]
        .as_array()
        .unwrap_or_else(|| panic!("fsnego.py bench: {j}"))
        .iter()
        .skip(n / 10)
        .map(|v| v.as_f64().unwrap())
        .collect();
    let pp = stats(samples);

    println!("connection establishment (TCP connect -> negotiated session), ms");
    println!(
        "{:<28} {:>6} {:>8} {:>8} {:>8} {:>12}",
        "case", "n", "median", "p10", "p90", "py->py / x"
    );
    for (name, s) in [
        ("rust -> rust (ECDSA)", &rr),
        ("rust -> python (RSA server)", &rp),
        ("python -> python", &pp),
    ] {
        println!(
            "{:<28} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>11.1}x",
            name,
            s.n,
            s.median,
            s.p10,
            s.p90,
            pp.median / s.median
        );
    }
}
