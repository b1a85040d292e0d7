//! Stress tests of the mio event-loop driver (`foolscap-mio`): many
//! connections on one server loop, peers that vanish mid-call, a peer that
//! never reads its answers, and 10,000 idle connections. The last three
//! run on the tokio engine (`foolscap-tokio`) too, and the never-reading
//! peer on the threads engine.
//!
//! Every timeout here is a hang guard, never a speed requirement. The
//! tests take a process-wide lock and run one at a time: they raise the
//! file limit, open thousands of sockets and one of them measures the
//! process's resident memory.
//!
//! Shared set-up (the server object, client Tubs, calls kept in flight)
//! is in `common/load.rs`, which `benches/load.rs` uses too.

#[path = "common/load.rs"]
mod load;

use load::{furl_port, serial, with_port, Maker, TokioRt};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use foolscap::mio::{as_remote, LoopConfig, Runtime};
use foolscap::value::Value;
use foolscap::TubConfig;

/// Hang guard for any one wait.
const GUARD: Duration = Duration::from_secs(120);

fn runtime(config: LoopConfig) -> Runtime {
    Runtime::start(config).expect("start runtime")
}

// ---------------------------------------------------------------- 1

/// 1,000 client connections (each its own Tub; two client loops) to one
/// server loop, 100 calls each with 10 in flight per connection: every
/// answer is checked and counted per connection, and the server object
/// saw exactly the calls made.
#[test]
fn thousand_connections_hundred_calls_each() {
    thousand_connections_hundred_calls_each_on(runtime(LoopConfig::default()), || {
        [
            runtime(LoopConfig::default()),
            runtime(LoopConfig::default()),
        ]
    });
}

/// The same on tokio: a two-worker server, clients on a multi-thread and
/// a current-thread runtime.
#[test]
fn thousand_connections_hundred_calls_each_on_tokio() {
    thousand_connections_hundred_calls_each_on(TokioRt::start(2), || {
        [TokioRt::start(1), TokioRt::start(0)]
    });
}

fn thousand_connections_hundred_calls_each_on<C: Maker>(
    server_rt: impl Maker,
    clients: impl FnOnce() -> [C; 2],
) {
    const CONNS: usize = 1_000;
    const CALLS: u64 = 100;
    let _serial = serial();
    load::raise_nofile(8_192);
    let t0 = Instant::now();
    let (_server, obj, furl) = load::serve(&server_rt, 20_000);
    let client_rts = clients();
    let ids = load::identities(CONNS);
    let t_ids = t0.elapsed();
    let clients = load::connect_many(&client_rts, ids, &furl, 200, GUARD).expect("connect");
    let t_conn = t0.elapsed();
    assert!(
        load::wait_until(GUARD, || server_rt.sockets() == CONNS),
        "server sockets: {}",
        server_rt.describe()
    );
    let report = load::drive_calls(&clients, 10, Some(CALLS), Duration::ZERO, GUARD);
    eprintln!(
        "1000 connections: identities {t_ids:?}, connected at {t_conn:?}, \
         {} calls in {:?}; server {}",
        report.answered,
        report.elapsed,
        server_rt.describe()
    );
    assert_eq!(report.error_count, 0, "errors: {:?}", report.errors);
    assert_eq!(report.answered, CONNS as u64 * CALLS);
    assert!(report.per_connection.iter().all(|&n| n == CALLS));
    assert_eq!(obj.calls.load(Ordering::Relaxed), CONNS as u64 * CALLS);
    assert_eq!(obj.problems.load(Ordering::Relaxed), 0);
    drop(clients);
    for rt in &client_rts {
        rt.stop(Duration::from_secs(5));
    }
    server_rt.stop(Duration::from_secs(5));
}

// ---------------------------------------------------------------- 2

const CHILD_FURL: &str = "STRESS_MIO_CHILD_FURL";
const CHILD_HOLDS: i64 = 50;
const CHILD_BIGS: i64 = 20;

/// Not a test: the peer that `peer_vanishing_mid_call` starts (this same
/// binary) and kills. It connects, sends `hold` calls the server answers
/// only later and `big` calls whose 1 MiB answers are still flowing,
/// says so on stdout and waits to be killed.
#[test]
#[ignore = "helper process of peer_vanishing_mid_call"]
fn vanishing_peer_child() {
    let Ok(furl) = std::env::var(CHILD_FURL) else {
        return;
    };
    let rt = runtime(LoopConfig::default());
    let tub = rt.fresh_tub();
    let r = tub.get_reference(&furl, GUARD).unwrap();
    let r = as_remote(&r).unwrap().clone();
    for i in 0..CHILD_HOLDS {
        tub.call_async(&r, "hold", &[Value::int(1_000), Value::int(i)], &[], |_| {})
            .unwrap();
    }
    for _ in 0..CHILD_BIGS {
        tub.call_async(&r, "big", &[Value::int(1 << 20)], &[], |_| {})
            .unwrap();
    }
    // (the test harness may have started this line: search, don't match)
    println!("\nCHILD-SENT");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(GUARD);
}

/// Peers that go away mid-call fail only their own calls:
///
/// * raw TCP clients that vanish in the middle of negotiation;
/// * an in-process client Tub that drops its connection with calls
///   outstanding: those calls fail with a connection error, nothing else;
/// * a client process stopped (SIGSTOP, so megabytes of answers pile up
///   for it) and then killed (SIGKILL) while the server holds calls of
///   it, which it answers later into a dead socket.
///
/// Meanwhile 20 other connections keep 10 calls each in flight for 5 s:
/// every one of their calls is answered, the server object answers the
/// dead peers' held calls without noticing anything, and afterwards the
/// server still serves the old connections and takes new ones.
#[test]
fn peer_vanishing_mid_call() {
    let _serial = serial();
    load::raise_nofile(4_096);
    peer_vanishing_mid_call_on(
        runtime(LoopConfig::default()),
        runtime(LoopConfig::default()),
    );
}

/// [`peer_vanishing_mid_call`] with a tokio server and tokio clients.
#[test]
fn peer_vanishing_mid_call_on_tokio() {
    let _serial = serial();
    load::raise_nofile(4_096);
    peer_vanishing_mid_call_on(TokioRt::start(2), TokioRt::start(0));
}

fn peer_vanishing_mid_call_on(server_rt: impl Maker, client_rt: impl Maker) {
    const GOOD: usize = 20;
    /// After the victims are gone: the server must still answer.
    const AFTER: Duration = Duration::from_secs(30);
    let t0 = Instant::now();
    let (_server, obj, furl) = load::serve(&server_rt, 20_000);
    let good = load::connect_many(
        std::slice::from_ref(&client_rt),
        load::identities(GOOD),
        &furl,
        GOOD,
        GUARD,
    )
    .expect("connect");

    // the other connections keep calling all along
    let (report_tx, report_rx) = mpsc::channel();
    let good_thread = std::thread::spawn(move || {
        let r = load::drive_calls(&good, 10, None, Duration::from_secs(5), AFTER);
        let _ = report_tx.send(r);
        good
    });

    // raw TCP peers that vanish during negotiation
    let port = furl_port(&furl);
    for partial in [
        &b"GET /id/"[..],
        b"GET /id/x HTTP/1.1\r\nHost: x\r\n",
        b"\x00\xff",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(partial).unwrap();
        drop(s);
    }

    // an in-process Tub that drops its connection with calls outstanding
    let victim = client_rt.fresh_tub();
    let vref = victim.get_reference(&furl, GUARD).unwrap();
    let vref = as_remote(&vref).unwrap().clone();
    let (vtx, vrx) = mpsc::channel();
    for i in 0..20 {
        let vtx = vtx.clone();
        victim
            .call_async(
                &vref,
                "hold",
                &[Value::int(500), Value::int(i)],
                &[],
                move |r| {
                    let _ = vtx.send(r);
                },
            )
            .unwrap();
    }
    assert!(load::wait_until(GUARD, || obj.held.load(Ordering::Relaxed) >= 20));
    victim.disconnect(&vref);
    for _ in 0..20 {
        let r = vrx.recv_timeout(GUARD).expect("the victim's calls end");
        let e = r.expect_err("a call on a dropped connection fails");
        assert!(e.is_connection_problem(), "{e:?}");
    }

    // a process stopped, then killed, mid-call
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "vanishing_peer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_FURL, &furl)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let sent = lines.any(|l| l.map(|l| l.contains("CHILD-SENT")).unwrap_or(false));
    assert!(sent, "the child did not get going");
    assert!(
        load::wait_until(GUARD, || obj.held.load(Ordering::Relaxed)
            >= 20 + CHILD_HOLDS as u64),
        "the child's calls did not arrive"
    );
    // it stops reading (answers pile up), then dies
    sigstop(child.id());
    std::thread::sleep(Duration::from_millis(200));
    child.kill().expect("kill");
    let _ = child.wait();
    let t_killed = t0.elapsed();

    let report = report_rx
        .recv_timeout(AFTER + Duration::from_secs(10))
        .expect("good calls finish");
    let good = good_thread.join().unwrap();
    eprintln!(
        "vanishing peers: child killed at {t_killed:?}; good calls {} in {:?} \
         (fewest on one connection {}); held {} released {}; server {}",
        report.answered,
        report.elapsed,
        report.per_connection.iter().min().unwrap(),
        obj.held.load(Ordering::Relaxed),
        obj.released.load(Ordering::Relaxed),
        server_rt.describe(),
    );
    assert_eq!(report.error_count, 0, "errors: {:?}", report.errors);
    assert!(report.per_connection.iter().all(|&n| n > 0));
    // the server answers the dead peers' held calls, into the void
    assert!(
        load::wait_until(AFTER, || obj.released.load(Ordering::Relaxed)
            == obj.held.load(Ordering::Relaxed)),
        "held calls not all answered: held {}, released {}",
        obj.held.load(Ordering::Relaxed),
        obj.released.load(Ordering::Relaxed)
    );
    assert_eq!(obj.problems.load(Ordering::Relaxed), 0);
    // the good connections still work, and a new client gets in
    let (ok, errors) = load::call_each(&good, AFTER);
    assert_eq!(
        ok,
        GOOD,
        "after the peers vanished the server no longer answers: {errors:?}; server {}",
        server_rt.describe()
    );
    // only the good connections are left on the server
    assert!(
        load::wait_until(AFTER, || server_rt.sockets() == GOOD),
        "server still has the dead peers' sockets: {}",
        server_rt.describe()
    );
    let late = client_rt.fresh_tub();
    let lref = late.get_reference(&furl, AFTER).unwrap();
    let v = late
        .call(
            as_remote(&lref).unwrap(),
            "add",
            &[Value::int(2), Value::int(3)],
            &[],
            AFTER,
        )
        .unwrap();
    assert_eq!(v, Value::int(5));
    eprintln!("vanishing peers: done at {:?}", t0.elapsed());
    drop(good);
    client_rt.stop(Duration::from_secs(5));
    server_rt.stop(Duration::from_secs(5));
}

/// Stops a child process (it no longer reads its sockets).
fn sigstop(pid: u32) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(rc, 0, "kill({pid}, SIGSTOP)");
}

// ---------------------------------------------------------------- 3

/// A TCP relay between one client and the server whose server-to-client
/// direction can be stopped: the server then has a peer that does not
/// read.
struct Relay {
    port: u16,
    paused: Arc<(Mutex<bool>, Condvar)>,
}

impl Relay {
    fn start(server_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let paused = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = paused.clone();
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let upstream = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            let (mut c_in, mut u_out) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut u_out);
                let _ = u_out.shutdown(Shutdown::Write);
            });
            let (mut u_in, mut c_out) = (upstream, client);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                {
                    let (lock, cv) = &*p2;
                    let mut paused = lock.lock().unwrap();
                    while *paused {
                        paused = cv.wait(paused).unwrap();
                    }
                }
                match u_in.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = c_out.shutdown(Shutdown::Write);
        });
        Relay { port, paused }
    }

    fn pause(&self, paused: bool) {
        let (lock, cv) = &*self.paused;
        *lock.lock().unwrap() = paused;
        cv.notify_all();
    }
}

const NEVER_READ_ANSWER: usize = 64 * 1024;
const NEVER_READ_CALLS: usize = 1_000;

/// A peer that sends many calls with 64 KiB answers and never reads: the
/// server's queued output for it stays within `max_buffered_output` (plus
/// what one round of up to 16 calls can add), and the process's memory
/// barely grows. Once the peer reads again every answer arrives intact.
#[test]
fn peer_that_never_reads_is_bounded() {
    const BOUND: usize = 256 * 1024;
    // one round of calls_per_round answers, plus the one being written;
    // an answer on the wire: the string, its header, TLS framing
    const SLACK: usize = (TubConfig::DEFAULT_CALLS_PER_ROUND + 1) * (NEVER_READ_ANSWER + 1024);
    let _serial = serial();
    load::raise_nofile(4_096);
    let server_rt = runtime(LoopConfig::default());
    let mut config = TubConfig::default();
    config.max_buffered_output = BOUND;
    config.max_negotiating_connections = 100;
    config.max_established_connections = 100;
    let (_server, obj, furl) = load::serve_with(&server_rt, config);
    let stalled = never_reading_peer(&furl, &obj, || server_rt.stats());
    let stats = server_rt.stats();
    eprintln!("mio: bound {BOUND}, slack {SLACK}, stalled {stalled:?}, final {stats:?}");
    assert!(
        stats.peak_buffered_output <= BOUND + SLACK,
        "peak buffered output {} > bound {BOUND} + slack {SLACK}",
        stats.peak_buffered_output
    );
    // the calls it read and did not start wait, counted, until it reads
    assert!(stalled.held_calls > 0, "{stalled:?}");
    assert_eq!(stats.held_calls, 0, "{stats:?}");
    server_rt.shutdown(Duration::from_secs(5));
}

/// The same peer against the tokio engine: the same bound, the same
/// counters.
#[test]
fn peer_that_never_reads_is_bounded_on_tokio() {
    const BOUND: usize = 256 * 1024;
    const SLACK: usize = (TubConfig::DEFAULT_CALLS_PER_ROUND + 1) * (NEVER_READ_ANSWER + 1024);
    let _serial = serial();
    load::raise_nofile(4_096);
    let server_rt = TokioRt::start(2);
    let mut config = TubConfig::default();
    config.max_buffered_output = BOUND;
    config.max_negotiating_connections = 100;
    config.max_established_connections = 100;
    let (_server, obj, furl) = load::serve_with(&server_rt, config);
    let stalled = never_reading_peer(&furl, &obj, || server_rt.stats());
    let stats = server_rt.stats();
    eprintln!("tokio: bound {BOUND}, slack {SLACK}, stalled {stalled:?}, final {stats:?}");
    assert!(
        stats.peak_buffered_output <= BOUND + SLACK,
        "peak buffered output {} > bound {BOUND} + slack {SLACK}",
        stats.peak_buffered_output
    );
    assert!(stalled.held_calls > 0, "{stalled:?}");
    assert!(stalled.paused > 0, "{stalled:?}");
    assert_eq!(stats.held_calls, 0, "{stats:?}");
    server_rt.shutdown(Duration::from_secs(5));
}

/// The same peer against the threads engine (`foolscap::threads`): its writer
/// queue is bounded by `TubConfig::max_buffered_output` the same
/// way (no loop statistics there: the calls started and the memory tell).
#[test]
fn peer_that_never_reads_is_bounded_on_the_threads_engine() {
    let _serial = serial();
    load::raise_nofile(4_096);
    let server = foolscap::threads::new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let obj = load::Load::new();
    let furl = server.register(obj.clone(), None).unwrap().to_string();
    never_reading_peer(&furl, &obj, || ());
    server.shutdown();
}

/// Connects through a [`Relay`], then stops reading while making
/// [`NEVER_READ_CALLS`] calls for 64 KiB answers; checks that the server
/// starts only some of them and that memory grows far less than the
/// answers would take, then reads again and checks every answer. Returns
/// `stats()` as it was while the peer did not read.
fn never_reading_peer<S: std::fmt::Debug>(
    furl: &str,
    obj: &load::Load,
    stats: impl Fn() -> S,
) -> S {
    const ANSWER: usize = NEVER_READ_ANSWER;
    const CALLS: usize = NEVER_READ_CALLS;
    let relay = Relay::start(furl_port(furl));
    let client_rt = runtime(LoopConfig::default());
    let client = client_rt.new_tub().unwrap();
    let r = client
        .get_reference(&with_port(furl, relay.port), GUARD)
        .unwrap();
    let r = as_remote(&r).unwrap().clone();
    let warm = client
        .call(&r, "big", &[Value::int(ANSWER as i64)], &[], GUARD)
        .unwrap();
    assert_eq!(warm.as_bytes().map(|b| b.len()), Some(ANSWER));
    let rss_before = load::own_rss_kib();

    relay.pause(true);
    let (tx, rx) = mpsc::channel();
    for i in 0..CALLS {
        let tx = tx.clone();
        client
            .call_async(&r, "big", &[Value::int(ANSWER as i64)], &[], move |r| {
                let _ = tx.send((i, r));
            })
            .unwrap();
    }
    // let the server go as far as it will: until no call starts for 1 s
    let mut last = 0;
    let mut still_since = Instant::now();
    let deadline = Instant::now() + GUARD;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = obj.calls.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let stalled = stats();
    let rss_stalled = load::own_rss_kib();
    let answered_while_stalled = obj.calls.load(Ordering::Relaxed) - 1;

    relay.pause(false);
    let mut got = 0;
    for _ in 0..CALLS {
        let (i, r) = rx.recv_timeout(GUARD).expect("answers arrive");
        let v = r.unwrap_or_else(|e| panic!("call {i}: {e}"));
        let b = v.as_bytes().expect("bytes");
        assert!(
            b.len() == ANSWER && b.iter().all(|&c| c == b'x'),
            "call {i}"
        );
        got += 1;
    }
    let growth = rss_stalled.saturating_sub(rss_before);
    eprintln!(
        "never-reading peer: {answered_while_stalled} of {CALLS} calls started while stalled, \
         RSS {rss_before} KiB -> {rss_stalled} KiB (+{growth} KiB); {got} answers after resuming"
    );
    assert_eq!(got, CALLS);
    assert!(
        answered_while_stalled < CALLS as u64,
        "the server answered every call of a peer that does not read"
    );
    // the answers held back are 62.5 MiB; the bound keeps them out of memory
    assert!(
        growth < 16 * 1024,
        "RSS grew by {growth} KiB while the peer did not read"
    );
    client_rt.shutdown(Duration::from_secs(5));
    stalled
}

// ---------------------------------------------------------------- 4

const SERVE_CHILD: &str = "STRESS_MIO_SERVE";
/// `tokio`: the server child runs the tokio engine.
const SERVE_ENGINE: &str = "STRESS_MIO_SERVE_ENGINE";

/// Not a test: the server process of `ten_thousand_idle_connections`
/// (this same binary), see `load::serve_stdio`.
#[test]
#[ignore = "helper process of ten_thousand_idle_connections"]
fn server_child() {
    let Ok(max) = std::env::var(SERVE_CHILD) else {
        return;
    };
    let max: usize = max.parse().expect("max_inbound");
    if std::env::var(SERVE_ENGINE).is_ok_and(|e| e == "tokio") {
        load::raise_nofile(2 * max as u64 + 1_000);
        let rt = TokioRt::start(2);
        load::serve_stdio_on(&rt, max);
        rt.shutdown(Duration::from_secs(2));
    } else {
        load::serve_stdio(LoopConfig::default(), max);
    }
}

/// 10,000 idle connections (10,000 client Tubs on two client loops)
/// held open to one server loop: all are connected (the server loop
/// counts 10,000 sockets, and still does after two idle seconds) and each
/// answers a call at the end. The server runs in a child process (this
/// binary again), so each side needs only 10,000 file descriptors.
#[test]
fn ten_thousand_idle_connections() {
    ten_thousand_idle_connections_on("mio", || {
        [
            runtime(LoopConfig::default()),
            runtime(LoopConfig::default()),
        ]
    });
}

/// [`ten_thousand_idle_connections`] with a tokio server (two workers)
/// and two tokio client engines (a multi-thread and a current-thread
/// runtime).
#[test]
fn ten_thousand_idle_connections_on_tokio() {
    ten_thousand_idle_connections_on("tokio", || [TokioRt::start(1), TokioRt::start(0)]);
}

fn ten_thousand_idle_connections_on<C: Maker>(engine: &str, clients: impl FnOnce() -> [C; 2]) {
    const CONNS: usize = 10_000;
    let _serial = serial();
    let limit = load::raise_nofile(CONNS as u64 + 1_000);
    assert!(
        limit >= CONNS as u64 + 100,
        "the file limit ({limit}) is too low for {CONNS} connections"
    );
    let t0 = Instant::now();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "server_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(SERVE_CHILD, (2 * CONNS).to_string())
    .env(SERVE_ENGINE, engine);
    let mut server = load::ServerProcess::spawn(cmd, GUARD).expect("server process");
    let client_rts = clients();
    let ids = load::identities(CONNS);
    let t_ids = t0.elapsed();
    let clients = load::connect_many(&client_rts, ids, &server.furl, 256, GUARD).expect("connect");
    let t_conn = t0.elapsed();
    let mut stats = server.stats(GUARD).unwrap();
    let deadline = Instant::now() + GUARD;
    while stats.sockets != CONNS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stats = server.stats(GUARD).unwrap();
    }
    assert_eq!(stats.sockets, CONNS, "server: {stats:?}");
    // idle for a moment (keepalive timers and release sweeps run)
    std::thread::sleep(Duration::from_secs(2));
    let stats = server.stats(GUARD).unwrap();
    assert_eq!(stats.sockets, CONNS, "server after 2 s idle: {stats:?}");
    let (ok, errors) = load::call_each(&clients, GUARD);
    let t_calls = t0.elapsed();
    let after = server.stats(GUARD).unwrap();
    eprintln!(
        "10k idle ({engine}): identities {t_ids:?}, connected at {t_conn:?}, \
         called at {t_calls:?}; server {stats:?} then {after:?}; client engines {} {}",
        client_rts[0].describe(),
        client_rts[1].describe(),
    );
    assert_eq!(ok, CONNS, "{errors:?}");
    assert_eq!(after.calls, CONNS as u64);
    drop(server);
    drop(clients);
    for rt in &client_rts {
        rt.stop(Duration::from_secs(5));
    }
    eprintln!("10k idle: shut down at {:?}", t0.elapsed());
}

// ---------------------------------------------------------------- 5

/// Silent peers fill both connection limits of a server loop (lowered
/// here): negotiated peers with fresh tubids that hold nothing, and raw
/// sockets that never send a byte. A legitimate client still connects and
/// its call is answered: at the established cap an idle silent peer is
/// evicted for it, at the negotiating limit the oldest silent socket. The
/// server never holds more sockets than the two limits allow.
#[test]
fn silent_peers_at_the_connection_limits_do_not_lock_a_client_out() {
    silent_peers_on(
        runtime(LoopConfig::default()),
        runtime(LoopConfig::default()),
    );
}

/// The same against a tokio server (tokio clients).
#[test]
fn silent_peers_at_the_connection_limits_do_not_lock_a_client_out_on_tokio() {
    silent_peers_on(TokioRt::start(2), TokioRt::start(0));
}

fn silent_peers_on(server_rt: impl Maker, client_rt: impl Maker) {
    const NEGOTIATING: usize = 64;
    const ESTABLISHED: usize = 32;
    const NEGOTIATED: usize = 48;
    const RAW: usize = 300;
    let _serial = serial();
    load::raise_nofile(4_096);
    let mut config = TubConfig::default();
    config.max_negotiating_connections = NEGOTIATING;
    config.max_established_connections = ESTABLISHED;
    let (_server, obj, furl) = load::serve_with(&server_rt, config);
    let ids = load::identities(NEGOTIATED);
    let (attackers, _) =
        load::connect_silent_many(std::slice::from_ref(&client_rt), ids, &furl, 16, GUARD)
            .expect("silent peers");
    assert!(
        load::wait_until(GUARD, || server_rt.sockets() == ESTABLISHED),
        "{}",
        server_rt.describe()
    );
    let raw: Vec<TcpStream> = (0..RAW)
        .map(|_| TcpStream::connect(("127.0.0.1", furl_port(&furl))).expect("connect"))
        .collect();
    assert!(
        load::wait_until(GUARD, || server_rt.sockets() == ESTABLISHED + NEGOTIATING),
        "{}",
        server_rt.describe()
    );
    let t = Instant::now();
    let (client, answer) = load::connect_and_call(&client_rt, &furl, GUARD);
    let took = t.elapsed();
    assert_eq!(answer.expect("the client's call"), Value::int(5));
    assert_eq!(obj.calls.load(Ordering::Relaxed), 1);
    // the server closed the oldest raw sockets (and one more for the
    // client's socket while it negotiated)
    let closed = raw
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            // nothing is ever sent to them: EOF or a reset once closed
            !matches!((&**s).read(&mut [0u8; 1]),
                Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    eprintln!(
        "limits {NEGOTIATING}/{ESTABLISHED}, {NEGOTIATED} silent peers, {RAW} raw sockets: \
         client connect + call {took:?}; {closed} raw sockets closed; server {}",
        server_rt.describe()
    );
    assert!(closed > RAW - NEGOTIATING, "{closed} closed");
    assert!(server_rt.sockets() <= ESTABLISHED + NEGOTIATING);
    drop((client, attackers, raw));
    client_rt.stop(Duration::from_secs(5));
    server_rt.stop(Duration::from_secs(5));
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Not a test: a measurement, run by hand (`cargo test --release --test
/// stress_mio lockout_latency -- --ignored --nocapture`). A server with
/// the default limits (10,000 negotiating, 10,000 established) in a child
/// process; `LOCKOUT_NEGOTIATED` (default 10,000) silent negotiated peers
/// with fresh tubids, then `LOCKOUT_RAW` (default 9,000) raw sockets that
/// never send a byte, kept coming at `LOCKOUT_FLOOD` new ones a second
/// (default 0; the oldest of this side's are dropped beyond
/// `LOCKOUT_RAW`; the first ones from `LOCKOUT_FLOOD_THREADS`, default
/// 16, threads at once); then `LOCKOUT_SAMPLES` (default 20) legitimate clients
/// one after the other, each a fresh Tub that connects and calls once.
/// Prints the latencies; asserts only that every call is answered.
#[test]
#[ignore = "measurement, run by hand"]
fn lockout_latency_at_default_limits() {
    let negotiated = env_usize("LOCKOUT_NEGOTIATED", 10_000);
    let raw = env_usize("LOCKOUT_RAW", 9_000);
    let flood = env_usize("LOCKOUT_FLOOD", 0);
    let samples = env_usize("LOCKOUT_SAMPLES", 20);
    let threads = env_usize("LOCKOUT_FLOOD_THREADS", 16).max(1);
    let _serial = serial();
    let limit = load::raise_nofile(20_000);
    let t0 = Instant::now();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "server_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(
        SERVE_CHILD,
        TubConfig::DEFAULT_MAX_ESTABLISHED_CONNECTIONS.to_string(),
    );
    let mut server = load::ServerProcess::spawn(cmd, GUARD).expect("server process");
    let furl = server.furl.clone();
    let port = furl_port(&furl);
    let rts = [
        runtime(LoopConfig::default()),
        runtime(LoopConfig::default()),
    ];
    let ids = load::identities(negotiated);
    let (attackers, other) =
        load::connect_silent_many(&rts, ids, &furl, 256, GUARD).expect("silent peers");
    let t_neg = t0.elapsed();
    let stats = server.stats(GUARD).unwrap();
    eprintln!(
        "lockout: file limit {limit}; {negotiated} silent negotiated peers in {t_neg:?} \
         ({other} lookups ended otherwise); server {stats:?}"
    );
    // the raw flood, on a thread of its own
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // in parallel: a connect whose SYN met a full listen queue
            // waits a second for its retry, and must not hold up the rest
            let parts: Vec<_> = (0..threads)
                .map(|t| {
                    let n = raw / threads + usize::from(t < raw % threads);
                    std::thread::spawn(move || {
                        (0..n)
                            .map_while(|_| TcpStream::connect(("127.0.0.1", port)).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut held: std::collections::VecDeque<TcpStream> = parts
                .into_iter()
                .flat_map(|h| h.join().expect("raw connects"))
                .collect();
            let mut opened = held.len();
            let _ = ready_tx.send(held.len());
            let start = Instant::now();
            while flood > 0 && !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * flood as f64) as usize;
                while opened < raw + due {
                    if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                        held.push_back(s);
                    }
                    opened += 1;
                    if held.len() > raw {
                        held.pop_front();
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened
        })
    };
    let raw_open = ready_rx.recv_timeout(GUARD).expect("raw sockets");
    let t_raw = t0.elapsed();
    let stats = server.stats(GUARD).unwrap();
    eprintln!("lockout: {raw_open} raw sockets open at {t_raw:?}; server {stats:?}");
    let mut took = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        let (client, answer) = load::connect_and_call(&rts[0], &furl, GUARD);
        took.push(t.elapsed());
        assert_eq!(answer.expect("the client's call"), Value::int(5));
        clients.push(client);
    }
    let stats = server.stats(GUARD).unwrap();
    stop.store(true, Ordering::Relaxed);
    let opened = flooder.join().unwrap();
    took.sort();
    eprintln!(
        "lockout: {samples} clients connect + call: min {:?} median {:?} max {:?} \
         (all {took:?}); raw sockets opened {opened}; server after {stats:?}",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    );
    drop(server);
    drop((clients, attackers));
    for rt in &rts {
        rt.shutdown(Duration::from_secs(5));
    }
}
