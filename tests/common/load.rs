//! Load set-up shared by `tests/stress_mio.rs` and `benches/load.rs`: the
//! server object, many client Tubs on mio runtimes or tokio engines
//! ([`Maker`]), calls kept in flight
//! on each connection, the process file limit and resident memory.
//!
//! Included with `#[path = ...] mod load;` (not part of `common/mod.rs`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foolscap::identity::Identity;
use foolscap::mio::{as_remote, Call, Object, Runtime, Tub};
use foolscap::tub::TubConfig;
use foolscap::value::{RemoteRef, Value};

/// The name the load object is registered under.
pub const NAME: &str = "load";

/// The server object:
///
/// * `add(a, b)` returns `a + b`;
/// * `echo(x)` returns `x`;
/// * `big(n)` returns `n` bytes (`b"x" * n`, at most [`Load::MAX_BIG`]);
/// * `hold(ms, x)` returns `x` after `ms` milliseconds (a call that is
///   still in progress when its caller goes away).
///
/// It counts what it was asked and what it answered; anything it finds
/// wrong (a bad argument, a panic) is counted in `problems`.
pub struct Load {
    /// Calls received (every method).
    pub calls: AtomicU64,
    /// `hold` calls received.
    pub held: AtomicU64,
    /// `hold` calls answered (after their delay).
    pub released: Arc<AtomicU64>,
    /// Calls with arguments the object did not expect.
    pub problems: AtomicU64,
    big: Bytes,
}

impl Load {
    /// The largest answer `big(n)` gives.
    pub const MAX_BIG: usize = 1 << 20;

    pub fn new() -> Arc<Load> {
        Arc::new(Load {
            calls: AtomicU64::new(0),
            held: AtomicU64::new(0),
            released: Arc::new(AtomicU64::new(0)),
            problems: AtomicU64::new(0),
            big: Bytes::from(vec![b'x'; Self::MAX_BIG]),
        })
    }
}

impl Object for Load {
    fn call(&self, call: Call) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match call.method.as_str() {
            "add" => {
                let a = call.arg(0, "a").and_then(Value::as_i64);
                let b = call.arg(1, "b").and_then(Value::as_i64);
                match (a, b) {
                    (Some(a), Some(b)) => call.answer(Value::int(a + b)),
                    _ => {
                        self.problems.fetch_add(1, Ordering::Relaxed);
                        call.answer(Value::None)
                    }
                }
            }
            "echo" => {
                let x = call.arg(0, "x").cloned().unwrap_or(Value::None);
                call.answer(x)
            }
            "big" => {
                let n = call.arg(0, "n").and_then(Value::as_i64).unwrap_or(0);
                let n = (n.max(0) as usize).min(Self::MAX_BIG);
                call.answer(Value::Bytes(self.big.slice(..n)))
            }
            "hold" => {
                self.held.fetch_add(1, Ordering::Relaxed);
                let ms = call.arg(0, "ms").and_then(Value::as_i64).unwrap_or(0);
                let x = call.arg(1, "x").cloned().unwrap_or(Value::None);
                let tub = call.tub().clone();
                let released = self.released.clone();
                tub.after(Duration::from_millis(ms.max(0) as u64), move || {
                    // the caller may be gone by now: the answer just goes
                    // nowhere
                    call.answer(x);
                    released.fetch_add(1, Ordering::Relaxed);
                });
            }
            _ => call.no_such_method("Load"),
        }
    }

    fn class_name(&self) -> &str {
        "Load"
    }
}

/// Raises this process's soft (and, if allowed, hard) limit on open files
/// to at least `want`; returns the soft limit now in force.
// (`rlim_t` is `u64` only on some targets)
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur >= want as libc::rlim_t {
            return r.rlim_cur as u64;
        }
        let raised = libc::rlimit {
            rlim_cur: want as libc::rlim_t,
            rlim_max: r.rlim_max.max(want as libc::rlim_t),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            // not allowed to raise the hard limit: go as far as it goes
            let soft = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur as u64
    }
}

/// Resident memory of process `pid` (`VmRSS` in `/proc/PID/status`), KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of this process, KiB.
pub fn own_rss_kib() -> u64 {
    rss_kib(std::process::id()).unwrap_or(0)
}

/// `n` fresh identities, made on all cores.
pub fn identities(n: usize) -> Vec<Identity> {
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(2)
        .min(n.max(1));
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let count = per.min(n.saturating_sub(t * per));
            std::thread::spawn(move || {
                (0..count)
                    .map(|_| Identity::generate().expect("identity"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("identity thread"))
        .collect()
}

/// An engine that makes Tubs: a mio [`Runtime`] or a [`TokioRt`].
pub trait Maker {
    /// A Tub with `id` and `config` on this engine.
    fn make_tub(&self, id: Identity, config: TubConfig) -> Result<Tub, foolscap::Error>;
    /// Open sockets (connections), as the engine counts them.
    fn sockets(&self) -> usize;
    /// The engine's counters, for a report.
    fn describe(&self) -> String;
    /// A clean shutdown of the engine.
    fn stop(&self, grace: Duration);
    /// A Tub with a new identity and the default settings.
    fn fresh_tub(&self) -> Tub {
        self.make_tub(
            Identity::generate().expect("identity"),
            TubConfig::default(),
        )
        .expect("tub")
    }
}

impl Maker for Runtime {
    fn make_tub(&self, id: Identity, config: TubConfig) -> Result<Tub, foolscap::Error> {
        self.tub(id, config)
    }
    fn sockets(&self) -> usize {
        self.stats().sockets
    }
    fn describe(&self) -> String {
        format!("{:?}", self.stats())
    }
    fn stop(&self, grace: Duration) {
        self.shutdown(grace)
    }
}

/// A tokio runtime of its own (`workers` threads, or a current-thread
/// runtime on a thread of its own for 0) and a `foolscap_tokio` engine on
/// it.
pub struct TokioRt {
    pub engine: foolscap_tokio::Engine,
    rt: Option<tokio::runtime::Runtime>,
    /// The thread that runs a current-thread runtime, and its stop signal.
    current: Option<(std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>)>,
}

impl TokioRt {
    pub fn start(workers: usize) -> TokioRt {
        let config = foolscap_tokio::TokioConfig::default();
        if workers == 0 {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let _ = tx.send(rt.handle().clone());
                rt.block_on(async move {
                    // the runtime runs until told to stop
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                });
            });
            let handle = rx.recv().expect("runtime handle");
            let engine = foolscap_tokio::Engine::with_handle(handle, config);
            return TokioRt {
                engine,
                rt: None,
                current: Some((thread, stop_tx)),
            };
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let engine = foolscap_tokio::Engine::with_handle(rt.handle().clone(), config);
        TokioRt {
            engine,
            rt: Some(rt),
            current: None,
        }
    }

    pub fn stats(&self) -> foolscap_tokio::EngineStats {
        self.engine.stats()
    }

    pub fn new_tub(&self) -> Result<Tub, foolscap::Error> {
        self.engine.new_tub().map(Tub::from)
    }

    /// A clean shutdown of the engine (the runtime ends when this drops).
    pub fn shutdown(&self, grace: Duration) {
        self.engine.shutdown_blocking(grace);
    }
}

impl Drop for TokioRt {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        if let Some((thread, stop)) = self.current.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Maker for TokioRt {
    fn make_tub(&self, id: Identity, config: TubConfig) -> Result<Tub, foolscap::Error> {
        self.engine.tub(id, config).map(Tub::from)
    }
    fn sockets(&self) -> usize {
        self.stats().sockets
    }
    fn describe(&self) -> String {
        format!("{:?}", self.stats())
    }
    fn stop(&self, grace: Duration) {
        self.shutdown(grace)
    }
}

/// A server Tub on `rt` listening on 127.0.0.1 with a [`Load`] registered
/// as [`NAME`]; up to `max_inbound` connections negotiating and as many
/// established.
pub fn serve(rt: &impl Maker, max_inbound: usize) -> (Tub, Arc<Load>, String) {
    let mut config = TubConfig::default();
    config.max_negotiating_connections = max_inbound;
    config.max_established_connections = max_inbound;
    serve_with(rt, config)
}

/// [`serve`] with the server Tub's settings given.
pub fn serve_with(rt: &impl Maker, config: TubConfig) -> (Tub, Arc<Load>, String) {
    let tub = rt
        .make_tub(Identity::generate().expect("identity"), config)
        .expect("server tub");
    tub.listen("127.0.0.1:0").expect("listen");
    let load = Load::new();
    let furl = tub
        .register(load.clone(), Some(NAME))
        .expect("register")
        .to_string();
    (tub, load, furl)
}

/// One client connection: its own Tub (a Tub keeps one connection per
/// peer) and the reference to the server's object.
pub struct Client {
    pub tub: Tub,
    pub target: RemoteRef,
}

/// Connects one client Tub per identity (spread over `rts` in turn) to
/// `furl`, with at most `window` connections negotiating at once.
/// Returns the clients in identity order, or the first failure.
pub fn connect_many(
    rts: &[impl Maker],
    ids: Vec<Identity>,
    furl: &str,
    window: usize,
    timeout: Duration,
) -> Result<Vec<Client>, String> {
    let furl = foolscap::furl::Furl::parse(furl).map_err(|e| e.to_string())?;
    let n = ids.len();
    let (tx, rx) = mpsc::channel::<(usize, Result<Value, foolscap::mio::Error>)>();
    let mut tubs = Vec::with_capacity(n);
    let mut refs: Vec<Option<RemoteRef>> = vec![None; n];
    let mut pending = 0usize;
    let mut failure = None;
    let mut take = |r: (usize, Result<Value, foolscap::mio::Error>),
                    refs: &mut Vec<Option<RemoteRef>>| match r.1 {
        Ok(v) => match as_remote(&v) {
            Some(rr) => refs[r.0] = Some(rr.clone()),
            None => failure = Some(format!("client {}: not a reference: {v:?}", r.0)),
        },
        Err(e) => {
            if failure.is_none() {
                failure = Some(format!("client {}: {e}", r.0));
            }
        }
    };
    for (i, id) in ids.into_iter().enumerate() {
        while pending >= window {
            let r = rx
                .recv_timeout(timeout)
                .map_err(|_| format!("no connection within {timeout:?}"))?;
            pending -= 1;
            take(r, &mut refs);
        }
        let tub = rts[i % rts.len()]
            .make_tub(id, TubConfig::default())
            .map_err(|e| e.to_string())?;
        let tx = tx.clone();
        tub.get_reference_async(&furl, move |r| {
            let _ = tx.send((i, r));
        });
        tubs.push(tub);
        pending += 1;
    }
    while pending > 0 {
        let r = rx
            .recv_timeout(timeout)
            .map_err(|_| format!("no connection within {timeout:?}"))?;
        pending -= 1;
        take(r, &mut refs);
    }
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(tubs
        .into_iter()
        .zip(refs)
        .map(|(tub, r)| Client {
            tub,
            target: r.expect("every lookup answered"),
        })
        .collect())
}

/// What [`drive_calls`] did.
#[derive(Debug, Default)]
pub struct CallReport {
    /// Correct answers, in all.
    pub answered: u64,
    /// Correct answers per connection.
    pub per_connection: Vec<u64>,
    /// Wrong answers and failed calls (the first few).
    pub errors: Vec<String>,
    /// Wrong answers and failed calls, in all.
    pub error_count: u64,
    /// From the first call issued to the last answer.
    pub elapsed: Duration,
}

struct Flow {
    tub: Tub,
    target: RemoteRef,
    /// `add(base, k)` is expected to answer `base + k`.
    base: i64,
    next: AtomicU64,
    limit: u64,
    answered: AtomicU64,
    shared: Arc<FlowShared>,
}

struct FlowShared {
    stop: AtomicBool,
    total: AtomicU64,
    errors: Mutex<(u64, Vec<String>)>,
    finished: Mutex<mpsc::Sender<()>>,
}

fn issue(flow: Arc<Flow>) {
    let k = flow.next.fetch_add(1, Ordering::Relaxed);
    if k >= flow.limit || flow.shared.stop.load(Ordering::Relaxed) {
        let _ = flow.shared.finished.lock().unwrap().send(());
        return;
    }
    let expected = flow.base + k as i64;
    let f2 = flow.clone();
    let sent = flow.tub.call_async(
        &flow.target,
        "add",
        &[Value::int(flow.base), Value::int(k as i64)],
        &[],
        move |r| match r {
            Ok(v) if v == Value::int(expected) => {
                f2.answered.fetch_add(1, Ordering::Relaxed);
                f2.shared.total.fetch_add(1, Ordering::Relaxed);
                issue(f2);
            }
            other => {
                fail(&f2, format!("add({}, {k}): {other:?}", f2.base));
            }
        },
    );
    if let Err(e) = sent {
        fail(&flow, format!("add({}, {k}) not sent: {e}", flow.base));
    }
}

fn fail(flow: &Flow, why: String) {
    let mut e = flow.shared.errors.lock().unwrap();
    e.0 += 1;
    if e.1.len() < 10 {
        e.1.push(why);
    }
    drop(e);
    let _ = flow.shared.finished.lock().unwrap().send(());
}

/// Keeps `inflight` `add` calls outstanding on every client connection
/// (each answer checked, then the next call issued from its callback)
/// until each connection made `per_connection` calls (`None`: until
/// `duration` has passed). `timeout` guards against a hang.
pub fn drive_calls(
    clients: &[Client],
    inflight: usize,
    per_connection: Option<u64>,
    duration: Duration,
    timeout: Duration,
) -> CallReport {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(FlowShared {
        stop: AtomicBool::new(false),
        total: AtomicU64::new(0),
        errors: Mutex::new((0, Vec::new())),
        finished: Mutex::new(tx),
    });
    let flows: Vec<Arc<Flow>> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Arc::new(Flow {
                tub: c.tub.clone(),
                target: c.target.clone(),
                base: (i as i64 + 1) * 1_000_000_000,
                next: AtomicU64::new(0),
                limit: per_connection.unwrap_or(u64::MAX),
                answered: AtomicU64::new(0),
                shared: shared.clone(),
            })
        })
        .collect();
    let start = Instant::now();
    for f in &flows {
        for _ in 0..inflight {
            issue(f.clone());
        }
    }
    if per_connection.is_none() {
        std::thread::sleep(duration);
        shared.stop.store(true, Ordering::Relaxed);
    }
    let deadline = start + timeout;
    let mut finished = 0;
    let expected = flows.len() * inflight;
    while finished < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(()) => finished += 1,
            Err(_) => {
                let mut e = shared.errors.lock().unwrap();
                e.0 += 1;
                e.1.push(format!(
                    "hang guard: {} of {expected} call chains finished within {timeout:?}",
                    finished
                ));
                shared.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    let (error_count, errors) = std::mem::take(&mut *shared.errors.lock().unwrap());
    CallReport {
        answered: shared.total.load(Ordering::Relaxed),
        per_connection: flows
            .iter()
            .map(|f| f.answered.load(Ordering::Relaxed))
            .collect(),
        errors,
        error_count,
        elapsed,
    }
}

/// Calls `add(i, 1)` once on every client, all at once; returns how many
/// answered correctly, and the first few failures.
pub fn call_each(clients: &[Client], timeout: Duration) -> (usize, Vec<String>) {
    let (tx, rx) = mpsc::channel();
    for (i, c) in clients.iter().enumerate() {
        let tx2 = tx.clone();
        let sent = c.tub.call_async(
            &c.target,
            "add",
            &[Value::int(i as i64), Value::int(1)],
            &[],
            move |r| {
                let _ = tx2.send((i, r));
            },
        );
        if let Err(e) = sent {
            let _ = tx.send((i, Err(e)));
        }
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut ok = 0;
    let mut errors = Vec::new();
    for _ in 0..clients.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Ok(v))) if v == Value::int(i as i64 + 1) => ok += 1,
            Ok((i, other)) => {
                if errors.len() < 10 {
                    errors.push(format!("client {i}: {other:?}"));
                }
            }
            Err(_) => {
                errors.push(format!("hang guard: answers missing after {timeout:?}"));
                break;
            }
        }
    }
    (ok, errors)
}

/// Calls in flight that the server holds (see [`hold_calls`]).
pub struct HeldCalls {
    answers: mpsc::Receiver<Result<Value, String>>,
    /// Answers received so far (any: right, wrong or failed).
    pub answered: Arc<AtomicU64>,
    /// Calls issued.
    pub issued: usize,
}

/// Issues `per_connection` `hold(ms, k)` calls on every client at once
/// (none waits for another): the server keeps each for `ms` before it
/// answers `k`, so while it holds them they are all in flight.
pub fn hold_calls(clients: &[Client], per_connection: usize, ms: i64) -> HeldCalls {
    let (tx, rx) = mpsc::channel();
    let answered = Arc::new(AtomicU64::new(0));
    for c in clients {
        for k in 0..per_connection as i64 {
            let (tx2, count) = (tx.clone(), answered.clone());
            let sent = c.tub.call_async(
                &c.target,
                "hold",
                &[Value::int(ms), Value::int(k)],
                &[],
                move |r| {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = tx2.send(match r {
                        Ok(v) if v == Value::int(k) => Ok(v),
                        other => Err(format!("hold({ms}, {k}): {other:?}")),
                    });
                },
            );
            if let Err(e) = sent {
                count_failure(&tx, &answered, format!("hold not sent: {e}"));
            }
        }
    }
    HeldCalls {
        answers: rx,
        answered,
        issued: clients.len() * per_connection,
    }
}

fn count_failure(tx: &mpsc::Sender<Result<Value, String>>, n: &AtomicU64, why: String) {
    n.fetch_add(1, Ordering::Relaxed);
    let _ = tx.send(Err(why));
}

impl HeldCalls {
    /// Waits for every answer; returns the first few failures (none: all
    /// answered right).
    pub fn wait(self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut errors = Vec::new();
        for _ in 0..self.issued {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if errors.len() < 10 {
                        errors.push(e);
                    }
                }
                Err(_) => {
                    errors.push(format!("hang guard: answers missing after {timeout:?}"));
                    break;
                }
            }
        }
        errors
    }
}

/// Waits until `f` holds (checked every 10 ms) or `timeout` passes;
/// returns whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- child process server

/// A server in a process of its own, so that its file descriptors and
/// resident memory are its own: [`serve_stdio`] on the child's side,
/// [`ServerProcess`] on the parent's. The protocol: the child prints
/// `FURL <furl>`; to each `stats` line on its stdin it answers
/// `STATS <sockets> <calls> <rss KiB>`; at EOF it shuts down and exits.
/// Lines may share their line with a test harness's output, so markers
/// are searched for anywhere in a line.
pub fn serve_stdio(config: foolscap::mio::LoopConfig, max_inbound: usize) {
    // up to max_inbound established and as many negotiating
    raise_nofile(2 * max_inbound as u64 + 1_000);
    let rt = Runtime::start(config).expect("runtime");
    serve_stdio_on(&rt, max_inbound);
    rt.shutdown(Duration::from_secs(2));
}

/// [`serve_stdio`] on any engine (the caller raised the file limit, and
/// shuts the engine down after).
pub fn serve_stdio_on(rt: &impl Maker, max_inbound: usize) {
    use std::io::{BufRead, Write};
    let (tub, load, furl) = serve(rt, max_inbound);
    let mut out = std::io::stdout();
    writeln!(out, "\nFURL {furl}").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            writeln!(
                out,
                "STATS {} {} {}",
                rt.sockets(),
                load.calls.load(Ordering::Relaxed),
                own_rss_kib()
            )
            .unwrap();
            out.flush().unwrap();
        }
    }
    drop(tub);
}

/// The parent's side of a server process (see [`serve_stdio`]; the
/// Python server of `benches/load_python.py` speaks the same protocol).
pub struct ServerProcess {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub furl: String,
}

/// What a server process reports.
#[derive(Debug, Clone, Copy)]
pub struct ServerStats {
    pub sockets: usize,
    pub calls: u64,
    pub rss_kib: u64,
}

impl ServerProcess {
    /// Starts `cmd` (stdin and stdout are taken over) and waits for its
    /// FURL.
    pub fn spawn(mut cmd: std::process::Command, timeout: Duration) -> Result<Self, String> {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start server process: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut p = ServerProcess {
            child,
            stdin,
            lines,
            furl: String::new(),
        };
        p.furl = p.expect("FURL ", timeout)?;
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn expect(&mut self, marker: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("server process: no {marker:?} line within {timeout:?}"))?;
            if let Some(at) = line.find(marker) {
                return Ok(line[at + marker.len()..].trim().to_owned());
            }
        }
    }

    /// Asks for the server's counters.
    pub fn stats(&mut self, timeout: Duration) -> Result<ServerStats, String> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "stats")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("server process: {e}"))?;
        let text = self.expect("STATS ", timeout)?;
        let f: Vec<u64> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 3 {
            return Err(format!("server process: bad STATS line {text:?}"));
        }
        Ok(ServerStats {
            sockets: f[0] as usize,
            calls: f[1],
            rss_kib: f[2],
        })
    }
}

impl Drop for ServerProcess {
    /// Closes its stdin (it exits), killing it if it has not within 10 s.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Negotiated silent peers: one client Tub per identity (spread over
/// `rts`) connects to the Tub of `furl`, looks up a name that does not
/// exist there (so it holds nothing), and stays connected, silent. At most
/// `window` negotiate at once. Returns the Tubs (keep them: dropping one
/// closes its connection) and how many lookups failed other than with the
/// server's "no such name" (connections closed, refused).
pub fn connect_silent_many(
    rts: &[impl Maker],
    ids: Vec<Identity>,
    furl: &str,
    window: usize,
    timeout: Duration,
) -> Result<(Vec<Tub>, usize), String> {
    let base = foolscap::furl::Furl::parse(furl).map_err(|e| e.to_string())?;
    let wrong = foolscap::furl::Furl::new(base.tubid, base.hints.clone(), "nothing-here");
    let (tx, rx) = mpsc::channel::<Result<Value, foolscap::mio::Error>>();
    let mut tubs = Vec::with_capacity(ids.len());
    let mut pending = 0usize;
    let mut other = 0usize;
    let mut take = |r: Result<Value, foolscap::mio::Error>| {
        // the expected outcome is a remote KeyError
        let unknown = matches!(&r, Err(e) if e.to_string().contains("KeyError"));
        if !unknown {
            other += 1;
        }
    };
    for (i, id) in ids.into_iter().enumerate() {
        while pending >= window {
            let r = rx
                .recv_timeout(timeout)
                .map_err(|_| format!("no lookup answered within {timeout:?}"))?;
            pending -= 1;
            take(r);
        }
        let tub = rts[i % rts.len()]
            .make_tub(id, TubConfig::default())
            .map_err(|e| e.to_string())?;
        let tx = tx.clone();
        tub.get_reference_async(&wrong, move |r| {
            let _ = tx.send(r);
        });
        tubs.push(tub);
        pending += 1;
    }
    while pending > 0 {
        let r = rx
            .recv_timeout(timeout)
            .map_err(|_| format!("no lookup answered within {timeout:?}"))?;
        pending -= 1;
        take(r);
    }
    Ok((tubs, other))
}

/// A legitimate client: a fresh Tub on `rt` looks up `furl` and calls
/// `add(2, 3)` on it. Returns the Tub (it keeps the connection) and the
/// answer.
pub fn connect_and_call(
    rt: &impl Maker,
    furl: &str,
    timeout: Duration,
) -> (Tub, Result<Value, foolscap::mio::Error>) {
    let tub = rt
        .make_tub(
            Identity::generate().expect("identity"),
            TubConfig::default(),
        )
        .expect("client tub");
    let answer = tub.get_reference(furl, timeout).and_then(|r| {
        let target = as_remote(&r).expect("a remote reference").clone();
        tub.call(
            &target,
            "add",
            &[Value::int(2), Value::int(3)],
            &[],
            timeout,
        )
    });
    (tub, answer)
}

/// One test at a time in a test binary that measures its own process (or
/// its children's) memory and sockets.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The TCP port in a `pb://TUBID@tcp:127.0.0.1:PORT/NAME` FURL.
pub fn furl_port(furl: &str) -> u16 {
    let hints = furl.split('@').nth(1).expect("hints");
    let first = hints.split(['/', ',']).next().expect("hint");
    first.rsplit(':').next().unwrap().parse().expect("port")
}

/// The same FURL with its loopback hint's port replaced (to go through a
/// relay).
pub fn with_port(furl: &str, port: u16) -> String {
    let old = furl_port(furl);
    furl.replacen(
        &format!("tcp:127.0.0.1:{old}/"),
        &format!("tcp:127.0.0.1:{port}/"),
        1,
    )
}
