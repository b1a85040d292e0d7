//! The hardening attacks at full size, against our server on every engine
//! and against Python foolscap 24.9.0's, in one run: for each attack and
//! each server, the server's resident memory (before, peak, held) and the
//! latency of a legitimate client while the attack goes on.
//!
//! ```text
//! cargo bench --bench attack [-- FLAGS]
//!   --servers threads,mio,tokio,python   which servers (default: all four)
//!   --attacks idle,negotiated,list,ping   which attacks (default: all)
//!   --idle N          idle TCP connections (10400)
//!   --negotiated N    negotiated silent connections, fresh tubids (10000)
//!   --list-conns N    connections sending an unfinished list (8)
//!   --list-items N    items in each list (14700000)
//!   --ping-mib N      MiB of PINGs from a peer that never reads (256)
//!   --hold S          seconds the legitimate client measures while the
//!                     attack is held (5)
//!   --quick           small sizes: 1000 idle, 500 negotiated,
//!                     2 x 1,000,000 items, 16 MiB of PINGs, 2 s
//! ```
//!
//! Run without `--bench` (`cargo test --benches`) it makes a smoke pass
//! a twentieth of the `--quick` sizes.
//!
//! Every flag can also be given as an environment variable
//! (`ATTACK_IDLE=1000`, `ATTACK_SERVERS=mio`, `ATTACK_QUICK=1`, ...).
//! `ATTACK_WRAP=heaptrack` runs our servers under a profiler (the memory
//! figures are then the profiler's process's).
//!
//! Each server runs in a process of its own, a fresh one per attack (this
//! binary again with `FOOLSCAP_ATTACK_SERVE=threads|mio|tokio`, or
//! `benches/load_python.py serve`), with default settings; its memory is
//! read from `/proc/PID/status` (`VmRSS`, and `VmHWM` for the peak). The
//! attackers and the legitimate client run in this process; the client
//! has a mio loop of its own. It probes every 50 ms, alternating a call
//! `add(2, 3)` on a connection it keeps and, every fifth probe, a fresh
//! Tub that connects and calls once; probes before the attack are the
//! baseline, probes while the attack is held are the figures, and the
//! slowest call while the attack was being built is shown too. Nothing
//! is asserted: failures are counted and printed.
//!
//! The attacks (the hardening issue's):
//!
//! * `idle`: TCP connections that never send a byte (16 threads connect);
//! * `negotiated`: client Tubs with fresh identities that negotiate, look
//!   up a name that does not exist, and stay connected, silent;
//! * `list`: connections that each send a call `echo([...])` with a list
//!   of small ints, of which a relay forwards 90% and holds the rest back;
//! * `ping`: a negotiated connection that sends PINGs and never reads the
//!   PONGs (a 2 s write timeout tells when the server stopped reading).
//!
//! Shared set-up: `tests/common/load.rs` (the server object, the server
//! process protocol, client Tubs) and `tests/common/negotiation.rs` (a
//! raw negotiated connection).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/load.rs"]
mod load;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use foolscap::banana::{encode, TypeByte};
use foolscap::furl::Furl;
use foolscap::identity::Identity;
use foolscap::mio::{as_remote, LoopConfig, Runtime};
use foolscap::negotiation::{ConnectionTable, TlsContext};
use foolscap::rng::SeededRng;
use foolscap::value::Value;
use foolscap::TubConfig;

const SERVE_ENV: &str = "FOOLSCAP_ATTACK_SERVE";
/// Hang guard for any one wait.
const GUARD: Duration = Duration::from_secs(600);
/// Between two probes of the legitimate client.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// Every this many probes, one is a fresh connection.
const CONNECT_EVERY: u64 = 5;

// ---------------------------------------------------------------- settings

#[derive(Debug, Clone)]
struct Settings {
    servers: Vec<String>,
    attacks: Vec<String>,
    idle: usize,
    negotiated: usize,
    list_conns: usize,
    list_items: usize,
    ping_mib: usize,
    hold: f64,
    /// Probes before the attack.
    baseline: usize,
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // a flag's value: `--name V` or `--name=V`, else ATTACK_NAME
    let get = |name: &str| -> Option<String> {
        let flag = format!("--{name}");
        for (i, a) in args.iter().enumerate() {
            if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                return Some(v.to_owned());
            }
            if *a == flag {
                return Some(args.get(i + 1).cloned().unwrap_or_default());
            }
        }
        std::env::var(format!("ATTACK_{}", name.replace('-', "_").to_uppercase())).ok()
    };
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("ATTACK_QUICK").is_ok_and(|v| v != "0");
    // `cargo test --benches` runs benches without `--bench`: a smoke pass
    // of a few seconds (every attack on every server, tiny sizes)
    let smoke = !args.iter().any(|a| a == "--bench");
    let num = |name: &str, full: usize, small: usize| -> usize {
        get(name)
            .map(|v| v.replace('_', "").parse().expect("a number"))
            .unwrap_or(if smoke {
                (small / 20).max(1)
            } else if quick {
                small
            } else {
                full
            })
    };
    let list = |name: &str, all: &str| -> Vec<String> {
        get(name)
            .unwrap_or_else(|| all.to_owned())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    Settings {
        servers: list("servers", "threads,mio,tokio,python"),
        attacks: list("attacks", "idle,negotiated,list,ping"),
        idle: num("idle", 10_400, 1_000),
        negotiated: num("negotiated", 10_000, 500),
        list_conns: num("list-conns", 8, 2),
        list_items: num("list-items", 14_700_000, 1_000_000),
        ping_mib: num("ping-mib", 256, 16),
        baseline: if smoke { 5 } else { 40 },
        hold: get("hold")
            .map(|v| v.parse().expect("seconds"))
            .unwrap_or(if smoke {
                0.5
            } else if quick {
                2.0
            } else {
                5.0
            }),
    }
}

/// Progress on stderr, with the time since the start.
fn say(text: impl AsRef<str>) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.1}s] {}", text.as_ref());
}

// ---------------------------------------------------------------- servers

/// Not a bench: the server process, `threads`, `mio` or `tokio` (a
/// multi-thread runtime), default settings.
/// Speaks the protocol of `load::ServerProcess`; its `sockets` figure is
/// its open file descriptors.
fn serve_child(engine: &str) {
    use std::io::BufRead;
    load::raise_nofile(
        std::env::var("ATTACK_NOFILE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX >> 1),
    );
    let config = TubConfig::default();
    let mut rt = None;
    let mut tokio = None;
    let tub = match engine {
        "threads" => foolscap::threads::tub(Identity::generate().unwrap(), config).unwrap(),
        "tokio" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            let e = foolscap_tokio::Engine::with_handle(
                runtime.handle().clone(),
                foolscap_tokio::TokioConfig::default(),
            );
            let tub = e.tub(Identity::generate().unwrap(), config).unwrap();
            tokio = Some((runtime, e));
            tub.into()
        }
        _ => {
            let r = Runtime::start(LoopConfig::default()).unwrap();
            let tub = r.tub(Identity::generate().unwrap(), config).unwrap();
            rt = Some(r);
            tub
        }
    };
    tub.listen("127.0.0.1:0").unwrap();
    let obj = load::Load::new();
    let furl = tub.register(obj.clone(), Some(load::NAME)).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "\nFURL {furl}").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
            writeln!(
                out,
                "STATS {fds} {} {}",
                obj.calls.load(Ordering::Relaxed),
                load::own_rss_kib()
            )
            .unwrap();
            out.flush().unwrap();
        }
    }
    drop((tub, obj));
    if let Some(rt) = rt {
        rt.shutdown(Duration::from_secs(2));
    }
    if let Some((runtime, e)) = tokio {
        e.shutdown_blocking(Duration::from_secs(2));
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

fn spawn_server(kind: &str, nofile: u64) -> load::ServerProcess {
    let cmd = if kind == "python" {
        let mut c = Command::new(common::python());
        c.arg(common::repo_root().join("benches/load_python.py"))
            .args([
                "serve",
                "--max-inbound",
                &nofile.saturating_sub(1_000).to_string(),
            ]);
        c
    } else if let Ok(wrap) = std::env::var("ATTACK_WRAP") {
        // a profiler around our server (`ATTACK_WRAP=heaptrack`); its
        // figures are then the wrapper's
        let mut c = Command::new(wrap);
        c.arg(std::env::current_exe().expect("own path"))
            .env(SERVE_ENV, kind)
            .env("ATTACK_NOFILE", nofile.to_string());
        c
    } else {
        let mut c = Command::new(std::env::current_exe().expect("own path"));
        c.env(SERVE_ENV, kind)
            .env("ATTACK_NOFILE", nofile.to_string());
        c
    };
    load::ServerProcess::spawn(cmd, GUARD).expect("server process")
}

/// A `/proc/PID/status` field, KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- the legitimate client

const BASELINE: u8 = 0;
const BUILDING: u8 = 1;
const HELD: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Probe {
    phase: u8,
    connect: bool,
    /// `None`: failed (or hung past the guard).
    took: Option<Duration>,
}

/// A legitimate client on a mio loop of its own, probing until stopped.
struct Prober {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(furl: &str, ids: Vec<Identity>) -> Prober {
        let phase = Arc::new(AtomicU8::new(BASELINE));
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (p, s, pr, f) = (
            phase.clone(),
            stop.clone(),
            probes.clone(),
            failures.clone(),
        );
        let furl = furl.to_owned();
        let thread = std::thread::spawn(move || {
            let rt = Runtime::start(LoopConfig::default()).expect("prober runtime");
            let timeout = Duration::from_secs(30);
            let mut ids = ids.into_iter();
            let mut kept: Option<(foolscap::mio::Tub, foolscap::value::RemoteRef)> = None;
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let phase = p.load(Ordering::Relaxed);
                let connect = kept.is_none() || n % CONNECT_EVERY == CONNECT_EVERY - 1;
                n += 1;
                let t = Instant::now();
                let outcome: Result<(), String> = if connect {
                    let id = ids
                        .next()
                        .unwrap_or_else(|| Identity::generate().expect("identity"));
                    let tub = rt.tub(id, TubConfig::default()).expect("client tub");
                    let r = tub
                        .get_reference(&furl, timeout)
                        .map_err(|e| e.to_string())
                        .and_then(|r| as_remote(&r).cloned().ok_or("not a reference".into()));
                    r.and_then(|target| {
                        let v = tub
                            .call(
                                &target,
                                "add",
                                &[Value::int(2), Value::int(3)],
                                &[],
                                timeout,
                            )
                            .map_err(|e| e.to_string())?;
                        if kept.is_none() {
                            kept = Some((tub, target));
                        }
                        (v == Value::int(5))
                            .then_some(())
                            .ok_or(format!("connect + add: {v:?}"))
                    })
                } else {
                    let (tub, target) = kept.as_ref().unwrap();
                    tub.call(target, "add", &[Value::int(2), Value::int(3)], &[], timeout)
                        .map_err(|e| e.to_string())
                        .and_then(|v| {
                            (v == Value::int(5))
                                .then_some(())
                                .ok_or(format!("add: {v:?}"))
                        })
                };
                let took = t.elapsed();
                if let Err(e) = &outcome {
                    let mut f = f.lock().unwrap();
                    if f.len() < 5 {
                        f.push(format!(
                            "{} probe: {e}",
                            if connect { "connect" } else { "call" }
                        ));
                    }
                    // a dropped kept connection: connect again next time
                    if !connect {
                        kept = None;
                    }
                }
                pr.lock().unwrap().push(Probe {
                    phase,
                    connect,
                    took: outcome.ok().map(|_| took),
                });
                std::thread::sleep(PROBE_EVERY.saturating_sub(took));
            }
            drop(kept);
            rt.shutdown(Duration::from_secs(2));
        });
        Prober {
            phase,
            stop,
            probes,
            failures,
            thread: Some(thread),
        }
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Waits until at least `n` probes of the current phase were made.
    fn wait_probes(&self, n: usize) {
        let phase = self.phase.load(Ordering::Relaxed);
        load::wait_until(GUARD, || {
            self.probes
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.phase == phase)
                .count()
                >= n
        });
    }

    fn finish(mut self) -> (Vec<Probe>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let probes = std::mem::take(&mut *self.probes.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (probes, failures)
    }
}

/// Latencies of one kind of probe in one phase.
#[derive(Debug, Clone, Default)]
struct Lat {
    n: usize,
    failed: usize,
    median: Option<Duration>,
    p99: Option<Duration>,
    max: Option<Duration>,
}

fn lat(probes: &[Probe], phase: u8, connect: bool) -> Lat {
    let mine: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.phase == phase && p.connect == connect)
        .collect();
    let mut ok: Vec<Duration> = mine.iter().filter_map(|p| p.took).collect();
    ok.sort();
    let at = |q: f64| -> Option<Duration> {
        (!ok.is_empty()).then(|| ok[((ok.len() - 1) as f64 * q).round() as usize])
    };
    Lat {
        n: mine.len(),
        failed: mine.len() - ok.len(),
        median: at(0.5),
        p99: at(0.99),
        max: ok.last().copied(),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

impl std::fmt::Display for Lat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{} ms",
            ms(self.median),
            ms(self.p99),
            ms(self.max)
        )?;
        if self.failed > 0 {
            write!(f, " ({} of {} failed)", self.failed, self.n)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- attacks

/// What an attack left behind to hold, and what it says about itself.
struct Held {
    keep: Vec<Box<dyn std::any::Any>>,
    note: String,
}

/// `n` TCP connections that never send a byte.
fn attack_idle(port: u16, n: usize) -> Held {
    let threads = 16.min(n.max(1));
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let parts: Vec<_> = (0..threads)
        .map(|t| {
            let k = n / threads + usize::from(t < n % threads);
            let (opened, failed) = (opened.clone(), failed.clone());
            std::thread::spawn(move || {
                (0..k)
                    .filter_map(|_| match TcpStream::connect(("127.0.0.1", port)) {
                        Ok(s) => {
                            opened.fetch_add(1, Ordering::Relaxed);
                            Some(s)
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut last = Instant::now();
    while parts.iter().any(|p| !p.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            say(format!(
                "  idle: {} of {n} connected",
                opened.load(Ordering::Relaxed)
            ));
        }
    }
    let socks: Vec<TcpStream> = parts.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let failed = failed.load(Ordering::Relaxed);
    Held {
        note: format!("{} idle connected, {failed} connects failed", socks.len()),
        keep: vec![Box::new(socks)],
    }
}

/// Negotiated silent peers, in chunks of 1,000 (progress between them).
fn attack_negotiated(rts: &[Runtime], ids: &[Identity], furl: &str) -> Held {
    let mut tubs = Vec::new();
    let mut other = 0;
    let mut failures = Vec::new();
    for chunk in ids.chunks(1_000) {
        match load::connect_silent_many(rts, chunk.to_vec(), furl, 256, GUARD) {
            Ok((t, o)) => {
                tubs.extend(t);
                other += o;
            }
            Err(e) => failures.push(e),
        }
        say(format!(
            "  negotiated: {} of {} connected ({other} lookups ended otherwise than \
             with the server's KeyError)",
            tubs.len(),
            ids.len()
        ));
    }
    Held {
        note: format!(
            "{} negotiated silent peers, {other} lookups ended otherwise{}",
            tubs.len(),
            if failures.is_empty() {
                String::new()
            } else {
                format!("; {failures:?}")
            }
        ),
        keep: vec![Box::new(tubs)],
    }
}

/// A TCP relay for one client whose client-to-server direction can be
/// cut: after [`CutRelay::cut_after`] it forwards that many more bytes
/// and swallows the rest.
struct CutRelay {
    port: u16,
    allow: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
}

impl CutRelay {
    fn start(server_port: u16) -> CutRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let allow = Arc::new(AtomicU64::new(u64::MAX));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (a2, f2) = (allow.clone(), forwarded.clone());
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let upstream = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            let (mut c_in, mut u_out) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match c_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let left = a2.load(Ordering::Acquire);
                    let pass = (n as u64).min(left) as usize;
                    if left != u64::MAX {
                        a2.fetch_sub(pass as u64, Ordering::AcqRel);
                    }
                    if pass > 0 {
                        if u_out.write_all(&buf[..pass]).is_err() {
                            break;
                        }
                        f2.fetch_add(pass as u64, Ordering::Relaxed);
                    }
                }
                let _ = u_out.shutdown(Shutdown::Write);
            });
            let (mut u_in, mut c_out) = (upstream, client);
            let _ = std::io::copy(&mut u_in, &mut c_out);
            let _ = c_out.shutdown(Shutdown::Write);
        });
        CutRelay {
            port,
            allow,
            forwarded,
        }
    }
}

/// `conns` connections each sending `echo([0, 1, ..., 99, 0, ...])` of
/// `items` ints, 90% of it forwarded; returns once the relays have
/// passed it all, or nothing for 10 s (the server stopped reading).
fn attack_list(rt: &Runtime, furl: &str, conns: usize, items: usize) -> Held {
    let big = Value::List((0..items).map(|i| Value::int((i % 100) as i64)).collect());
    // two bytes per item on the wire
    let pass = (2 * items) as u64 * 9 / 10;
    let failed = Arc::new(AtomicUsize::new(0));
    let mut kept = Vec::new();
    for _ in 0..conns {
        let relay = CutRelay::start(load::furl_port(furl));
        let tub = rt.new_tub().unwrap();
        let r = tub
            .get_reference(&load::with_port(furl, relay.port), GUARD)
            .unwrap();
        let r = as_remote(&r).unwrap().clone();
        relay.allow.store(pass, Ordering::Release);
        let failed = failed.clone();
        tub.call_async(&r, "echo", std::slice::from_ref(&big), &[], move |r| {
            if r.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
        kept.push((relay, tub));
    }
    drop(big);
    let mut last = 0;
    let mut still_since = Instant::now();
    let mut said = Instant::now();
    let deadline = Instant::now() + GUARD;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now: u64 = kept
            .iter()
            .map(|(r, _)| r.forwarded.load(Ordering::Relaxed))
            .sum();
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if now >= pass * conns as u64 || still_since.elapsed() > Duration::from_secs(10) {
            break;
        }
        if said.elapsed() > Duration::from_secs(2) {
            said = Instant::now();
            say(format!(
                "  list: {} MB forwarded to the server (of {} MB), {} attackers dropped",
                now / 1_000_000,
                pass * conns as u64 / 1_000_000,
                failed.load(Ordering::Relaxed)
            ));
        }
    }
    Held {
        note: format!(
            "{} MB of unfinished calls forwarded; {} of {conns} attackers dropped",
            last / 1_000_000,
            failed.load(Ordering::Relaxed)
        ),
        keep: vec![Box::new(kept), Box::new(failed)],
    }
}

/// A negotiated connection sending `mib` MiB of PINGs and never reading;
/// stops when a write has blocked for 2 s (the server stopped reading).
fn attack_ping(furl: &str, mib: usize) -> Held {
    let furl: Furl = furl.parse().unwrap();
    let tls = TlsContext::new(&Identity::generate().unwrap()).unwrap();
    let table = Mutex::new(ConnectionTable::new(&mut SeededRng::new(7)));
    let mut conn =
        common::negotiation::dial(&tls, &table, &furl, Instant::now() + GUARD).expect("negotiate");
    let mut chunk = BytesMut::new();
    let mut n = 0u64;
    while chunk.len() < 64 * 1024 {
        encode::put_ping_pong(&mut chunk, n, TypeByte::Ping);
        n += 1;
    }
    conn.sock
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let flood = mib << 20;
    let mut sent = 0;
    let mut said = Instant::now();
    let mut stalled = false;
    while sent < flood {
        if conn.send(&chunk).is_err() {
            stalled = true;
            break;
        }
        sent += chunk.len();
        if said.elapsed() > Duration::from_secs(2) {
            said = Instant::now();
            say(format!("  ping: {} of {mib} MiB sent", sent >> 20));
        }
    }
    Held {
        note: format!(
            "{:.1} MiB of PINGs sent of {mib} MiB{}",
            sent as f64 / (1 << 20) as f64,
            if stalled {
                " (then the server stopped reading)"
            } else {
                " (all read by the server)"
            }
        ),
        keep: vec![Box::new(conn)],
    }
}

// ---------------------------------------------------------------- one run

struct Row {
    attack: String,
    server: String,
    rss_before: u64,
    peak: u64,
    rss_held: u64,
    call_base: Lat,
    call_build: Lat,
    call_held: Lat,
    connect_base: Lat,
    connect_held: Lat,
    failures: Vec<String>,
    note: String,
}

fn run_one(
    s: &Settings,
    attack: &str,
    server_kind: &str,
    nofile: u64,
    ids: &[Identity],
    probe_ids: Vec<Identity>,
) -> Row {
    say(format!("{attack} against {server_kind}: starting a server"));
    let mut server = spawn_server(server_kind, nofile);
    let pid = server.pid();
    let furl = server.furl.clone();
    let prober = Prober::start(&furl, probe_ids);
    prober.wait_probes(s.baseline);
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = server.stats(GUARD).map(|s| s.rss_kib).unwrap_or(0);
    say(format!(
        "{attack} against {server_kind}: baseline taken, RSS {} MiB; attacking",
        rss_before >> 10
    ));
    prober.set_phase(BUILDING);
    let rts: Vec<Runtime> = (0..2)
        .map(|_| Runtime::start(LoopConfig::default()).expect("runtime"))
        .collect();
    let port = load::furl_port(&furl);
    let held = match attack {
        "idle" => attack_idle(port, s.idle),
        "negotiated" => attack_negotiated(&rts, &ids[..s.negotiated.min(ids.len())], &furl),
        "list" => attack_list(&rts[0], &furl, s.list_conns, s.list_items),
        "ping" => attack_ping(&furl, s.ping_mib),
        other => panic!("no attack {other:?}"),
    };
    std::thread::sleep(Duration::from_millis(500));
    let stats = server.stats(GUARD);
    say(format!(
        "{attack} against {server_kind}: {}; server {stats:?}; measuring for {} s",
        held.note, s.hold
    ));
    prober.set_phase(HELD);
    std::thread::sleep(Duration::from_secs_f64(s.hold));
    prober.wait_probes(10);
    let rss_held = server.stats(GUARD).map(|s| s.rss_kib).unwrap_or(0);
    let peak = status_kib(pid, "VmHWM:");
    let (probes, failures) = prober.finish();
    say(format!("{attack} against {server_kind}: done, letting go"));
    let Held { keep, note } = held;
    drop(keep);
    drop(server);
    for rt in rts {
        rt.shutdown(Duration::from_secs(10));
    }
    Row {
        attack: attack.to_owned(),
        server: server_kind.to_owned(),
        rss_before,
        peak,
        rss_held,
        call_base: lat(&probes, BASELINE, false),
        call_build: lat(&probes, BUILDING, false),
        call_held: lat(&probes, HELD, false),
        connect_base: lat(&probes, BASELINE, true),
        connect_held: lat(&probes, HELD, true),
        failures,
        note,
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn main() {
    if let Ok(engine) = std::env::var(SERVE_ENV) {
        serve_child(&engine);
        return;
    }
    let s = settings();
    say(format!("settings: {s:?}"));
    // both sides hold up to `idle` or `negotiated` sockets, plus a few
    let want = (s.idle.max(s.negotiated) + 2_000) as u64;
    // the soft limit up to the hard one; past it if we may (root)
    let mut nofile = load::raise_nofile(u64::MAX >> 1);
    if nofile < want {
        nofile = load::raise_nofile(want);
    }
    say(format!("open-file limit raised to {nofile}"));
    let mut s = s;
    if nofile < want {
        let fit = nofile.saturating_sub(2_000) as usize;
        say(format!(
            "WARNING: the hard open-file limit ({nofile}) is too low for {} connections; \
             sizes cut to {fit} (raise it with `ulimit -Hn` as root)",
            s.idle.max(s.negotiated)
        ));
        s.idle = s.idle.min(fit);
        s.negotiated = s.negotiated.min(fit);
    }
    let wants_negotiated = s.attacks.iter().any(|a| a == "negotiated");
    let probes_per_run = 200;
    let runs = s.servers.len() * s.attacks.len();
    let n_ids = if wants_negotiated { s.negotiated } else { 0 } + probes_per_run * runs;
    say(format!("making {n_ids} identities"));
    let mut ids = load::identities(n_ids);
    let mut probe_pool = ids.split_off(if wants_negotiated { s.negotiated } else { 0 });
    say("identities made");
    let mut rows = Vec::new();
    for attack in &s.attacks {
        for server in &s.servers {
            let probe_ids = probe_pool.split_off(probe_pool.len().saturating_sub(probes_per_run));
            let row = run_one(&s, attack, server, nofile, &ids, probe_ids);
            println!(
                "{{\"bench\":\"attack\",\"attack\":\"{}\",\"server\":\"{}\",\"rss_before_kib\":{},\"peak_kib\":{},\"rss_held_kib\":{},\"call_base_median_ms\":\"{}\",\"call_build_max_ms\":\"{}\",\"call_held_median_ms\":\"{}\",\"call_held_max_ms\":\"{}\",\"connect_base_median_ms\":\"{}\",\"connect_held_median_ms\":\"{}\",\"connect_held_max_ms\":\"{}\",\"failed_probes\":{},\"note\":{:?}}}",
                row.attack,
                row.server,
                row.rss_before,
                row.peak,
                row.rss_held,
                ms(row.call_base.median),
                ms(row.call_build.max),
                ms(row.call_held.median),
                ms(row.call_held.max),
                ms(row.connect_base.median),
                ms(row.connect_held.median),
                ms(row.connect_held.max),
                row.call_held.failed + row.connect_held.failed,
                row.note
            );
            rows.push(row);
        }
    }
    println!();
    println!(
        "sizes: {} idle; {} negotiated; {} x {} items; {} MiB of PINGs. \
         Latency: median/p99/max of the legitimate client's probes",
        s.idle, s.negotiated, s.list_conns, s.list_items, s.ping_mib
    );
    println!(
        "{:<11} {:<8} {:>8} {:>8} {:>8} {:>26} {:>16} {:>26} {:>28} {:>28}",
        "attack",
        "server",
        "RSS MiB",
        "peak",
        "held",
        "call before",
        "call max, build",
        "call during",
        "connect+call before",
        "connect+call during"
    );
    for r in &rows {
        println!(
            "{:<11} {:<8} {:>8} {:>8} {:>8} {:>26} {:>16} {:>26} {:>28} {:>28}",
            r.attack,
            r.server,
            mib(r.rss_before),
            mib(r.peak),
            mib(r.rss_held),
            r.call_base.to_string(),
            format!(
                "{} ms{}",
                ms(r.call_build.max),
                if r.call_build.failed > 0 {
                    format!(" ({} failed)", r.call_build.failed)
                } else {
                    String::new()
                }
            ),
            r.call_held.to_string(),
            r.connect_base.to_string(),
            r.connect_held.to_string()
        );
    }
    println!();
    for r in &rows {
        println!("{} / {}: {}", r.attack, r.server, r.note);
        for f in &r.failures {
            println!("    failed probe: {f}");
        }
    }
}
