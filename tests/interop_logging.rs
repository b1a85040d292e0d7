//! The in-process logger against Python foolscap 24.9.0 (docs/logging.md
//! §6):
//!
//! * `FLOGFILE` in a child process (plain and `.bz2`): Python's `flogtool
//!   dump` prints exactly what our dumper prints, in three option sets, and
//!   the events hold what Python's own `log.msg` makes of the same calls
//!   (same keys in the same order, same values but for time and
//!   incarnation), gaps of dropped numbers included;
//! * an incident: its name, its content (history, trigger, 100 trailing
//!   events), its compression, and Python's dump of it;
//! * the Tub's own events (connections, logLocalFailures,
//!   logRemoteFailures) with Python's texts, logged with no Tub lock held.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::process::{python, TempDir};
use foolscap::logging::dump::{DumpOptions, Dumper};
use foolscap::logging::level::*;
use foolscap::logging::timefmt::{TimeMode, Utc};
use foolscap::logging::{files, Dict, Event, Logger, ReadLimits, Value};
use foolscap::{Call, Object};

const CHILD: &str = "FOOLSCAP_RS_LOGGING_CHILD";

fn records(path: &Path) -> Vec<Value> {
    files::open(path, ReadLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|r| r.unwrap())
        .collect()
}

fn our_dump(path: &Path, opts: DumpOptions) -> String {
    let mut d = Dumper::new(opts, &Utc);
    let mut out = String::new();
    for r in records(path) {
        d.record(&r, &mut out).unwrap();
    }
    out
}

fn python_flogtool() -> std::path::PathBuf {
    python().with_file_name("flogtool")
}

/// Python's `flogtool dump` == ours, in three option sets.
fn assert_same_dump(path: &Path) {
    let sets: [(&[&str], DumpOptions); 3] = [
        (&[], DumpOptions::default()),
        (
            &["--verbose"],
            DumpOptions {
                verbose: true,
                ..DumpOptions::default()
            },
        ),
        (
            &["--rx-time", "--timestamps=epoch"],
            DumpOptions {
                rx_time: true,
                timestamps: TimeMode::Epoch,
                ..DumpOptions::default()
            },
        ),
    ];
    for (args, opts) in sets {
        let out = Command::new(python_flogtool())
            .arg("dump")
            .args(args)
            .arg(path)
            .env("TZ", "UTC")
            .output()
            .expect("run Python's flogtool");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "flogtool dump {args:?}: {stderr}");
        let py = String::from_utf8(out.stdout).unwrap();
        assert!(py.lines().count() > 5, "{py}");
        assert_eq!(py, our_dump(path, opts), "options {args:?}");
    }
}

/// The calls both sides make (Rust here, Python in `PY_EVENTS`).
fn log_the_events(l: &Logger) {
    let d = |pairs: Vec<(&str, Value)>, positional: Option<(&str, Vec<Value>)>| {
        let mut x = Dict::new();
        for (k, v) in pairs {
            x.insert(k, v);
        }
        l.msg_positional(x, positional.map(|(m, a)| (m.to_owned(), a)))
    };
    let p = d(vec![], Some(("hello from FLOGFILE", vec![])));
    d(
        vec![("parent", p.into()), ("level", NOISY.into())],
        Some(("noisy child", vec![])),
    );
    d(
        vec![
            ("format", "%(n)d items in %(where)s".into()),
            ("n", 2i64.into()),
            ("where", "box".into()),
            ("level", UNUSUAL.into()),
            ("facility", "app".into()),
        ],
        None,
    );
    d(vec![], Some(("positional %s", vec!["arg".into()])));
    d(vec![("level", 5i64.into())], Some(("dropped", vec![])));
    d(
        vec![
            ("s", Value::Set(vec![1i64.into(), 2i64.into()])),
            ("dec", Value::Other("Decimal('1.5')".into())),
            ("big", Value::Int(num_bigint::BigInt::from(1u8) << 70usize)),
            ("b", Value::Bytes(b"\x00\xffbin".to_vec())),
            (
                "t",
                Value::Tuple(vec![1i64.into(), Value::None, 0.5.into()]),
            ),
        ],
        Some(("h\u{e9}llo \u{2713}", vec![])),
    );
    d(vec![("message", 12i64.into())], None);
    d(vec![("args", Value::Tuple(vec![1i64.into()]))], None);
    d(
        vec![("level", BAD.into()), ("facility", "app.sub".into())],
        Some(("%d%% done, %s", vec![50i64.into(), Value::List(vec![])])),
    );
}

const PY_EVENTS: &str = r#"
import sys
from decimal import Decimal
from twisted.internet import reactor
from foolscap.logging import log
def go():
    p = log.msg("hello from FLOGFILE")
    log.msg("noisy child", parent=p, level=log.NOISY)
    log.msg(format="%(n)d items in %(where)s", n=2, where="box", level=log.UNUSUAL, facility="app")
    log.msg("positional %s", "arg")
    log.msg("dropped", level=5)
    log.msg("h\u00e9llo \u2713", s={1, 2}, dec=Decimal("1.5"), big=2**70, b=b"\x00\xffbin", t=(1, None, 0.5))
    log.msg(message=12)
    log.msg(args=(1,))
    log.msg("%d%% done, %s", 50, [], level=log.BAD, facility="app.sub")
    reactor.callLater(0.2, reactor.stop)
reactor.callWhenRunning(go)
reactor.run()
"#;

/// The child process of `flogfile_from_a_child_process_matches_python`:
/// logs through `Logger::global()`, which reads FLOGFILE.
#[test]
fn child_writes_flogfile() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let l = Logger::global();
    // Python removes FLOGFILE from the environment
    assert!(std::env::var_os("FLOGFILE").is_none());
    let _done = l.flush_guard();
    log_the_events(&l);
    #[derive(Debug)]
    struct Broken;
    impl std::fmt::Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("it broke")
        }
    }
    impl std::error::Error for Broken {}
    l.error(&Broken, Some("testing")).level(SCARY).log();
}

fn events_of(path: &Path) -> Vec<Dict> {
    records(path)
        .into_iter()
        .filter_map(|r| r.as_dict()?.get("d")?.as_dict().cloned())
        .collect()
}

fn without_clock(mut d: Dict) -> Dict {
    d.remove("time");
    d.remove("incarnation");
    d
}

#[test]
fn flogfile_from_a_child_process_matches_python() {
    let dir = TempDir::new("flogfile");
    for (name, level) in [("rust.flog", "10"), ("rust.flog.bz2", "20")] {
        let path = dir.path().join(name);
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writes_flogfile",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("FLOGFILE", &path)
            .env("FLOGLEVEL", level)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        if name.ends_with(".bz2") {
            assert_eq!(&std::fs::read(&path).unwrap()[..3], b"BZh");
        }
        let recs = records(&path);
        let h = recs[0]
            .as_dict()
            .unwrap()
            .get("header")
            .unwrap()
            .as_dict()
            .unwrap();
        assert_eq!(h.get("type"), Some(&Value::from("log-file-observer")));
        assert_eq!(
            h.get("threshold"),
            Some(&Value::from(level.parse::<i64>().unwrap()))
        );
        assert_same_dump(&path);

        // Python's log.msg with the same calls, same FLOGLEVEL
        let py_path = dir.path().join(format!("py-{name}"));
        let out = Command::new(python())
            .args(["-c", PY_EVENTS])
            .env("FLOGFILE", &py_path)
            .env("FLOGLEVEL", level)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours: Vec<Dict> = events_of(&path).into_iter().map(without_clock).collect();
        let theirs: Vec<Dict> = events_of(&py_path).into_iter().map(without_clock).collect();
        // ours has one more: the failure event (Python's local Failure differs)
        assert_eq!(ours.len(), theirs.len() + 1, "{name}");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{name}");
        }
        let nums: Vec<i64> = theirs
            .iter()
            .map(|e| e.get("num").unwrap().as_i64().unwrap())
            .collect();
        let expected: &[i64] = if level == "10" {
            &[0, 1, 2, 3, 5, 6, 7, 8]
        } else {
            &[0, 2, 3, 5, 6, 7, 8]
        };
        assert_eq!(nums, expected, "{name}: dropped numbers leave gaps");
        let last = events_of(&path).pop().unwrap();
        assert!(matches!(
            last.get("failure"),
            Some(Value::Failure(_)) | Some(Value::Dict(_))
        ));
    }
}

#[test]
fn incident_file_is_read_by_python() {
    let dir = TempDir::new("incident");
    let l = Logger::new();
    l.set_log_dir(dir.path()).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    l.add_incident_observer(Arc::new(move |name: &str, trigger: &Event| {
        let _ = tx.lock().unwrap().send((name.to_owned(), trigger.clone()));
    }));
    let p = l.event("before the incident").log();
    l.event("context %s")
        .arg(Value::List(vec![1i64.into()]))
        .parent(p)
        .log();
    let t = l
        .event("something WEIRD happened")
        .level(WEIRD)
        .facility("app.incident")
        .log();
    for i in 0..150 {
        l.event(format!("trailing event {i}")).log();
    }
    let (name, trigger) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(trigger.num(), Some(t as i64));
    // incident-YYYY-MM-DD--HH-MM-SSZ-xxxxxxx
    let parts: Vec<&str> = name.splitn(2, '-').collect();
    assert_eq!(parts[0], "incident");
    assert_eq!(name.len(), "incident-2026-12-06--15-24-53Z-sta2k4i".len());
    assert!(name[9..].as_bytes()[20] == b'Z', "{name}");
    let path = dir.path().join(format!("{name}.flog.bz2"));
    let listing: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(listing.len(), 1);
    let evs = events_of(&path);
    assert_eq!(evs.len(), 3 + 100);
    assert_same_dump(&path);
    let out = Command::new(python_flogtool())
        .args(["dump"])
        .arg(&path)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("something WEIRD happened [INCIDENT-TRIGGER]"),
        "{text}"
    );
    assert!(text.contains("trailing event 99\n") && !text.contains("trailing event 100"));
}

struct Failing;

impl Object for Failing {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "fail" => call.fail(foolscap::broker::Failure::new(
                "builtins.ValueError",
                "nope",
            )),
            _ => call.answer(foolscap::value::Value::int(1)),
        }
    }
}

#[test]
fn the_tub_logs_connections_and_failures_without_its_lock() {
    for driver in [common::Driver::Threads, common::Driver::Mio] {
        let engine = common::Engine::start(driver);
        let (server, client) = (engine.tub(), engine.tub());
        let (ls, lc) = (Logger::new(), Logger::new());
        server.set_logger(ls.clone());
        client.set_logger(lc.clone());
        assert!(server.logger().same(&ls));
        server.set_log_local_failures(true);
        client.set_log_remote_failures(true);
        // an observer that calls back into the Tub: it would deadlock if
        // the Tub logged with its lock held
        let seen = Arc::new(Mutex::new(Vec::new()));
        for (l, tub) in [(&ls, &server), (&lc, &client)] {
            let (tub, seen) = (tub.clone(), seen.clone());
            l.add_observer(Arc::new(move |_e: &Event| {
                let _ = tub.calls_to_answer();
                seen.lock().unwrap().push(());
            }));
        }
        let addr = server.listen("127.0.0.1:0").unwrap();
        server.set_location(&[&format!("tcp:127.0.0.1:{}", addr.port())]);
        let furl = server.register(Arc::new(Failing), Some("failing")).unwrap();
        let r = client
            .get_reference(&furl.to_string(), Duration::from_secs(30))
            .unwrap();
        let err = client.call(
            &r,
            "fail",
            &[foolscap::value::Value::int(7)],
            &[],
            Duration::from_secs(30),
        );
        assert!(err.is_err());
        // the server's log: established, then the local failure
        let texts = |l: &Logger| -> Vec<(i64, String, String)> {
            l.history()
                .iter()
                .map(|e| {
                    (
                        e.level(),
                        e.facility().to_owned(),
                        e.format_message().unwrap(),
                    )
                })
                .collect()
        };
        let s = texts(&ls);
        let me = &server.tubid().to_string()[..4];
        let them = &client.tubid().to_string()[..4];
        assert_eq!(
            s[0],
            (
                OPERATIONAL,
                "foolscap.connection".into(),
                format!("connection to {them} established")
            )
        );
        assert_eq!(
            s[1],
            (
                UNUSUAL,
                String::new(),
                format!("an inbound callRemote that we [{me}] executed (on behalf of someone else, TubID {them}) failed")
            )
        );
        assert!(
            s[2].2.starts_with(" reqID=") && s[2].2.ends_with("methname=fail"),
            "{:?}",
            s[2]
        );
        assert_eq!(s[3].2, " args=(7,)");
        assert_eq!(s[4].2, " kwargs=()");
        assert_eq!(s[5].2, " the LOCAL failure was:");
        let local = &ls.history()[5];
        let Some(Value::Failure(f)) = local.get("failure") else {
            panic!()
        };
        assert_eq!(
            (f.type_name.as_str(), f.value.as_str()),
            ("builtins.ValueError", "nope")
        );
        assert_eq!(local.get("parent"), ls.history()[1].get("num"));
        assert_eq!(
            ls.history()[0].get("tubID"),
            Some(&Value::from(server.tubid().to_string()))
        );
        // the client's: established, then the remote failure
        let c = texts(&lc);
        assert_eq!(c[0].2, format!("connection to {me} established"));
        assert_eq!(
            c[1],
            (
                UNUSUAL,
                String::new(),
                format!("an outbound callRemote (that we [{them}] sent to someone else [{me}]) failed on the far end")
            )
        );
        assert_eq!(c[3].2, " the REMOTE failure was:");
        assert_eq!(c[3].0, NOISY);
        // a lost connection
        client.shutdown();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !texts(&ls)
            .iter()
            .any(|t| t.2 == format!("connection to {them} lost"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no 'lost' event: {:?}",
                texts(&ls)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(seen.lock().unwrap().len() >= 10);
        server.shutdown();
    }
}

/// The kitchen sink's `log(msg)` (one event, facility `kitchen-sink`)
/// exists on both twins and answers None.
#[test]
fn kitchen_sink_log_method() {
    use common::kitchen::Client;
    use common::process::Server;
    for server in [Server::python(&[]), Server::rust(common::Driver::Mio, &[])] {
        let c = Client::connect(&server.furl, common::Driver::Threads);
        let r = c.ok("log", &[foolscap::value::Value::str("hello from a client")]);
        assert_eq!(r, foolscap::value::Value::None);
    }
}
