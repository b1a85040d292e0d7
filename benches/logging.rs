//! The in-process logger, Rust and Python in one run:
//!
//! * an event nobody watches (stored in the history only): ns per event;
//! * an event below the generation threshold (dropped, number used);
//! * events written to a flogfile (`FLOGFILE`'s writer), plain and `.bz2`:
//!   events per second and bytes per event.
//!
//! Each event is `msg("request %s done", i, facility="bench", size=1024)`
//! (Python) and the same through `Logger::event` (Rust). Python's writer
//! is fed as an immediate observer (its `FLOGFILE` observer otherwise
//! runs on the next reactor turn) and closed before the file is measured;
//! ours is flushed (the bzip2 stream finished) before it is measured.
//!
//! * events delivered to one `flogtool tail`-like subscriber of the
//!   logport over TCP on 127.0.0.1 (publisher and subscriber Tubs in one
//!   process, Rust and Python alike): logged in batches of 1000 (half the
//!   publisher's 2000-event queue, so that none is dropped), each batch
//!   waited for until the subscriber has it; time per event delivered.
//!
//! `cargo bench --bench logging [-- N]` (N events per case, default
//! 200000, a tenth of it for the subscriber; `cargo test --benches` runs
//! 2000 as a smoke test).

use std::process::Command;
use std::time::Instant;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foolscap::logging::level::NOISY;
use foolscap::logging::{Event, Logger};
use foolscap::logport::{
    LogPublisher, RILogObserver, RILogObserverClient, RILogObserverServer, RILogPublisherClient,
};
use foolscap::typed::Failure;

#[path = "../tests/common/process.rs"]
mod process;

use process::{python, TempDir};

fn rust_events(l: &Logger, n: usize, level: i64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        l.event("request %s done")
            .arg(i as i64)
            .facility("bench")
            .field("size", 1024i64)
            .level(level)
            .log();
    }
    t.elapsed().as_secs_f64()
}

const PY: &str = r#"
import json, os, sys, time
from foolscap.logging import log
n = int(sys.argv[1]); d = sys.argv[2]
out = {}
def run(l, level):
    t = time.perf_counter()
    for i in range(n):
        l.msg("request %s done", i, facility="bench", size=1024, level=level)
    return time.perf_counter() - t
l = log.FoolscapLogger()
out["unwatched"] = run(l, log.OPERATIONAL)
l = log.FoolscapLogger()
l.set_generation_threshold(log.OPERATIONAL, facility="bench")
out["dropped"] = run(l, log.NOISY)
for name in ["py.flog", "py.flog.bz2"]:
    path = os.path.join(d, name)
    l = log.FoolscapLogger()
    lfo = log.LogFileObserver(path, log.OPERATIONAL)
    l.addImmediateObserver(lfo.msg)
    t = time.perf_counter()
    for i in range(n):
        l.msg("request %s done", i, facility="bench", size=1024)
    lfo._stop()
    out[name] = [time.perf_counter() - t, os.path.getsize(path)]
print(json.dumps(out))
"#;

/// Batches in which the subscriber case logs (within the publisher's
/// 2000-event queue).
const BATCH: usize = 1000;

/// An observer that counts what it gets.
struct Count(Arc<AtomicUsize>);

impl RILogObserver for Count {
    fn msg(&self, _logmsg: Event) -> Result<(), Failure> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn done(&self) {}
    fn new_incident(&self, _name: foolscap::value::Value, _trigger: Event) -> Result<(), Failure> {
        Ok(())
    }
    fn done_with_incident_catchup(&self) {}
}

/// Seconds for `n` events logged and delivered to one subscriber.
fn rust_subscribed(n: usize) -> f64 {
    let t = Duration::from_secs(60);
    let node = foolscap::threads::new_tub().unwrap();
    node.listen("127.0.0.1:0").unwrap();
    let l = Logger::new();
    let publisher = LogPublisher::new(l.clone());
    let furl = node.register(publisher.object(), None).unwrap();
    let tail = foolscap::threads::new_tub().unwrap();
    let lp = RILogPublisherClient::connect(&tail, &furl.to_string(), t).unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let observer =
        RILogObserverClient::local(&tail, Arc::new(RILogObserverServer(Count(got.clone()))));
    lp.subscribe_to_all(observer, None).unwrap();
    while publisher.stats().subscriptions == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = BATCH.min(n - sent);
        rust_events(&l, k, 20);
        sent += k;
        while got.load(Ordering::Relaxed) < sent {
            std::thread::yield_now();
        }
    }
    let s = start.elapsed().as_secs_f64();
    assert_eq!(publisher.stats().dropped, 0);
    tail.shutdown();
    node.shutdown();
    s
}

const PY_TAIL: &str = r#"
import sys, time
from twisted.internet import reactor, defer
from zope.interface import implementer
from foolscap.api import Tub, Referenceable
from foolscap.logging import log
from foolscap.logging.publish import LogPublisher
from foolscap.logging.interfaces import RILogObserver
from foolscap.util import allocate_tcp_port
n = int(sys.argv[1]); BATCH = 1000
@implementer(RILogObserver)
class Count(Referenceable):
    got = 0; want = 0; d = None
    def remote_msg(self, e):
        self.got += 1
        if self.d and self.got >= self.want:
            d, self.d = self.d, None
            d.callback(None)
@defer.inlineCallbacks
def main():
    l = log.FoolscapLogger()
    node = Tub(); node.startService()
    port = allocate_tcp_port()
    node.listenOn("tcp:%d:interface=127.0.0.1" % port)
    node.setLocation("tcp:127.0.0.1:%d" % port)
    furl = node.registerReference(LogPublisher(l))
    tail = Tub(); tail.startService()
    lp = yield tail.getReference(furl)
    c = Count()
    yield lp.callRemote("subscribe_to_all", c)
    d = defer.Deferred(); reactor.callLater(0.2, d.callback, None); yield d
    t = time.perf_counter(); sent = 0
    while sent < n:
        k = min(BATCH, n - sent)
        for i in range(k):
            l.msg("request %s done", sent + i, facility="bench", size=1024)
        sent += k
        c.want = sent
        if c.got < sent:
            c.d = defer.Deferred()
            yield c.d
    print(time.perf_counter() - t)
    reactor.stop()
reactor.callWhenRunning(main)
reactor.run()
"#;

fn row(case: &str, n: usize, rust_s: f64, py_s: f64, sizes: Option<(u64, u64)>) {
    let (r_ns, p_ns) = (rust_s * 1e9 / n as f64, py_s * 1e9 / n as f64);
    let bytes = match sizes {
        Some((r, p)) => format!(" | {:.1} | {:.1}", r as f64 / n as f64, p as f64 / n as f64),
        None => " | - | -".into(),
    };
    println!(
        "| {case} | {r_ns:.0} ns ({:.0}/s) | {p_ns:.0} ns ({:.0}/s) | {:.1}x{bytes} |",
        n as f64 / rust_s,
        n as f64 / py_s,
        p_ns / r_ns
    );
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench_mode { 200_000 } else { 2000 });
    let dir = TempDir::new("logging-bench");

    let l = Logger::new();
    let unwatched = rust_events(&l, n, 20);
    assert_eq!(l.history().len(), 100);
    let l = Logger::new();
    l.set_generation_threshold(20, Some("bench"));
    let dropped = rust_events(&l, n, NOISY);
    assert!(l.history().is_empty());
    let mut files = Vec::new();
    for name in ["rust.flog", "rust.flog.bz2"] {
        let path = dir.path().join(name);
        let l = Logger::new();
        l.set_flogfile(&path, 20).unwrap();
        let t = Instant::now();
        rust_events(&l, n, 20);
        l.flush();
        let s = t.elapsed().as_secs_f64();
        files.push((s, std::fs::metadata(&path).unwrap().len()));
    }

    let out = Command::new(python())
        .args(["-c", PY, &n.to_string(), dir.path().to_str().unwrap()])
        .output()
        .expect("run Python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from Python");
    let f = |k: &str| py[k].as_f64().unwrap();
    let file = |k: &str| (py[k][0].as_f64().unwrap(), py[k][1].as_u64().unwrap());

    println!("{n} events per case");
    println!(
        "| case | Rust per event | Python per event | Python/Rust | bytes/event Rust | Python |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    row(
        "nobody watches (history only)",
        n,
        unwatched,
        f("unwatched"),
        None,
    );
    row(
        "below the threshold (dropped)",
        n,
        dropped,
        f("dropped"),
        None,
    );
    let (ps, pb) = file("py.flog");
    row(
        "to a flogfile, plain",
        n,
        files[0].0,
        ps,
        Some((files[0].1, pb)),
    );
    let (ps, pb) = file("py.flog.bz2");
    row(
        "to a flogfile, .bz2",
        n,
        files[1].0,
        ps,
        Some((files[1].1, pb)),
    );
    let nt = (n / 10).max(BATCH);
    let rs = rust_subscribed(nt);
    let out = Command::new(python())
        .args(["-c", PY_TAIL, &nt.to_string()])
        .output()
        .expect("run Python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py_s: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds from Python");
    row(
        &format!("delivered to one tail subscriber ({nt} events)"),
        nt,
        rs,
        py_s,
        None,
    );
}
