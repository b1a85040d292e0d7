//! The logport against Python foolscap 24.9.0 (docs/logging.md, "The
//! logport"):
//!
//! * Python's `flogtool tail` (live, `--catch-up`, `--verbose`,
//!   `--save-to` then Python's `dump`) on our publisher prints what ours
//!   prints, line for line (times masked);
//! * our `flogtool tail` on a Python node prints what Python's prints;
//! * every RILogPublisher method and the incident methods from a Python
//!   client, on our publisher and on Python's, with the same answers and
//!   error texts; ours as a client of Python's;
//! * the bounds: a subscriber that stops answering holds at most 10 calls
//!   in flight and 2000 queued events; a failed `msg` or the observer's
//!   disconnect ends a subscription;
//! * the logport FURL file; our tail's `ERROR`, `Disconnected` and
//!   reconnection.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{repo_root, KillOnDrop, TempDir};
use common::python;
use foolscap::logport::{
    LogPublisher, RILogObserver, RILogObserverClient, RILogObserverServer, RILogPublisherClient,
};
use foolscap::typed::Failure;
use foolscap::value::Value as WireValue;
use foolscap::{Call, Object, Tub};
use foolscap_logging::value::Failure as LogFailure;
use foolscap_logging::{Dict, Event, Logger, Value};
use serde_json::Value as Json;

/// Generous limit for every wait: CI machines are slow and shared.
const T: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ helpers

/// Our `flogtool`, built once per run in the profile of this test.
fn our_flogtool() -> PathBuf {
    common::process::cli_bin("flogtool")
}

/// Python's `flogtool` (beside the venv's python).
fn python_flogtool() -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(python().with_file_name("flogtool"));
    cmd
}

/// A child whose stdout lines are collected as they come.
struct Proc {
    child: KillOnDrop,
    lines: Arc<Mutex<Vec<String>>>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child: Child = cmd
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Proc {
            child: KillOnDrop(child),
            lines,
            stdin,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until some line satisfies `f`.
    fn wait_line(&self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + T;
        loop {
            if self.lines().iter().any(|l| f(l)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no line {what} in:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_contains(&self, text: &str) {
        self.wait_line(text, |l| l.contains(text));
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write stdin");
        stdin.flush().unwrap();
    }

    /// Waits for the process to end; its exit code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + T;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // let the reader take the last lines
                std::thread::sleep(Duration::from_millis(100));
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `flogtool tail ARGS` (ours or Python's).
fn tail(ours: bool, args: &[&str]) -> Proc {
    let mut cmd = if ours {
        Command::new(our_flogtool())
    } else {
        python_flogtool()
    };
    cmd.arg("tail").args(args);
    Proc::spawn(cmd)
}

/// Output with event times masked (`HH:MM:SS.mmm` at the start of a
/// line).
fn masked(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let b = l.as_bytes();
            if b.len() > 12 && b[2] == b':' && b[5] == b':' && b[8] == b'.' {
                format!("TIME{}", &l[12..])
            } else {
                l.clone()
            }
        })
        .collect()
}

/// The lines from the first containing `from` to the first after it
/// containing `to` (inclusive).
fn slice(lines: &[String], from: &str, to: &str) -> Vec<String> {
    let a = lines
        .iter()
        .position(|l| l.contains(from))
        .unwrap_or_else(|| panic!("no {from} in\n{}", lines.join("\n")));
    let b = a + lines[a..]
        .iter()
        .position(|l| l.contains(to))
        .unwrap_or_else(|| panic!("no {to} in\n{}", lines.join("\n")));
    lines[a..=b].to_vec()
}

fn d(pairs: &[(&str, Value)]) -> Dict {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(*k, v.clone());
    }
    d
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

/// A Rust node: a Tub serving a publisher of its own Logger, incidents
/// in a temporary log directory.
struct RustNode {
    _tub: Tub,
    logger: Logger,
    publisher: LogPublisher,
    furl: String,
    _dir: TempDir,
}

impl RustNode {
    fn start() -> RustNode {
        let dir = TempDir::new("logport-node");
        let tub = foolscap::threads::new_tub().unwrap();
        tub.listen("127.0.0.1:0").unwrap();
        let logger = Logger::new();
        logger.set_log_dir(dir.path().join("logdir")).unwrap();
        logger.set_incident_trailing(Some(Duration::from_millis(300)), 100);
        let publisher = LogPublisher::new(logger.clone());
        let furl = tub.register(publisher.object(), None).unwrap().to_string();
        RustNode {
            _tub: tub,
            logger,
            publisher,
            furl,
            _dir: dir,
        }
    }

    /// The events `lognode.py shapes TAG` logs, logged by us.
    fn shapes(&self, tag: &str) {
        let l = &self.logger;
        l.msg(d(&[("message", s(&format!("{tag}: plain")))]));
        l.msg_positional(
            Dict::new(),
            Some((
                format!("{tag}: positional %s and %d"),
                vec![s("abc"), Value::from(5i64)],
            )),
        );
        l.msg(d(&[
            ("format", s("%(tag)s: %(name)s has %(count)d items")),
            ("tag", s(tag)),
            ("name", s("box")),
            ("count", Value::from(3i64)),
            ("level", Value::from(23i64)),
            ("facility", s("app.sub")),
        ]));
        let p = l.msg(d(&[
            ("message", s(&format!("{tag}: parent"))),
            ("level", Value::from(10i64)),
        ]));
        l.msg(d(&[
            ("message", s(&format!("{tag}: child"))),
            ("parent", Value::from(p)),
            ("level", Value::from(25i64)),
        ]));
        let failure = LogFailure {
            value: "division by zero".into(),
            type_name: "builtins.ZeroDivisionError".into(),
            traceback: "Traceback (most recent call last):\n  File \"x.rs\", line 1, in f\nbuiltins.ZeroDivisionError: division by zero\n".into(),
            parents: vec![
                "builtins.ZeroDivisionError".into(),
                "builtins.ArithmeticError".into(),
                "builtins.Exception".into(),
                "builtins.BaseException".into(),
                "builtins.object".into(),
            ],
        };
        l.err(
            failure,
            Some(&format!("{tag}: caught")),
            d(&[("level", Value::from(35i64)), ("facility", s("app.err"))]),
        );
        l.msg(d(&[
            ("message", s(&format!("{tag}: values"))),
            ("data", Value::Bytes(b"\x00\xffbin".to_vec())),
            (
                "nested",
                Value::Dict(d(&[(
                    "k",
                    Value::List(vec![
                        Value::from(1i64),
                        Value::Float(2.5),
                        Value::None,
                        Value::Bool(true),
                    ]),
                )])),
            ),
            ("tup", Value::Tuple(vec![Value::from(1i64), s("x")])),
            ("big", Value::Int(num_bigint::BigInt::from(2).pow(70))),
            ("s", Value::Set(vec![Value::from(3i64)])),
            ("fs", Value::FrozenSet(vec![Value::from(4i64)])),
        ]));
        l.msg(d(&[
            ("message", s(&format!("{tag}: literal %(kw)s"))),
            ("kw", s("x")),
        ]));
        l.msg(d(&[
            ("message", s(&format!("{tag}: last"))),
            ("level", Value::from(28i64)),
        ]));
    }

    /// What `lognode.py weird TAG` logs; waits for the incident file.
    fn weird(&self, tag: &str) {
        let l = &self.logger;
        l.msg(d(&[("message", s(&format!("{tag}: before")))]));
        l.msg(d(&[
            ("message", s(&format!("{tag}: weird"))),
            ("level", Value::from(30i64)),
        ]));
        l.msg(d(&[("message", s(&format!("{tag}: after")))]));
        l.finish_incidents();
    }

    fn wait_stats(&self, what: &str, f: impl Fn(&foolscap::logport::PublisherStats) -> bool) {
        let deadline = Instant::now() + T;
        loop {
            let st = self.publisher.stats();
            if f(&st) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {st:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A Python node (`tests/interop/lognode.py`) and its logport FURL.
struct PyNode {
    proc: Proc,
    furl: String,
    _dir: TempDir,
}

impl PyNode {
    fn start() -> PyNode {
        let dir = TempDir::new("logport-pynode");
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/interop/lognode.py"))
            .arg(dir.path());
        let proc = Proc::spawn(cmd);
        proc.wait_line("ready", |l| l == "ready");
        let furlfile = dir.path().join("logport.furl");
        let deadline = Instant::now() + T;
        let furl = loop {
            if let Ok(t) = std::fs::read_to_string(&furlfile) {
                if t.ends_with('\n') {
                    break t.trim().to_string();
                }
            }
            assert!(Instant::now() < deadline, "no logport.furl");
            std::thread::sleep(Duration::from_millis(20));
        };
        PyNode {
            proc,
            furl,
            _dir: dir,
        }
    }

    /// Waits until `n` incident files are complete (Python finishes one
    /// 5 s after its trigger; a trigger within that window is absorbed).
    fn wait_incidents(&self, n: usize) {
        let dir = self._dir.path().join("logdir");
        let deadline = Instant::now() + T;
        loop {
            let done = std::fs::read_dir(&dir)
                .map(|e| {
                    e.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".flog.bz2"))
                        .count()
                })
                .unwrap_or(0);
            if done >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{done} incidents of {n}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&mut self, cmd: &str) {
        self.proc.send(cmd);
        let done = format!("done {cmd}");
        self.proc.wait_line(&done, |l| l == done);
    }
}

/// `logclient.py FURL ARGS`, its JSON lines collected.
fn logclient(furl: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/interop/logclient.py"))
        .arg(furl)
        .args(args);
    Proc::spawn(cmd)
}

fn json_lines(p: &Proc) -> Vec<Json> {
    p.lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn find<'a>(lines: &'a [Json], what: &str) -> &'a Json {
    lines
        .iter()
        .find(|j| j["what"] == what)
        .unwrap_or_else(|| panic!("no {what} in {lines:?}"))
}

// ------------------------------------------------------------ tails

#[test]
fn python_tail_and_ours_print_the_same_events_of_our_publisher() {
    let node = RustNode::start();
    node.shapes("pre");
    let dir = TempDir::new("logport-tail");
    let py_save = dir.path().join("py.flog");
    let rs_save = dir.path().join("rs.flog");
    let py = tail(
        false,
        &[
            "--catch-up",
            "--save-to",
            py_save.to_str().unwrap(),
            &node.furl,
        ],
    );
    let rs = tail(
        true,
        &[
            "--catch-up",
            "--save-to",
            rs_save.to_str().unwrap(),
            &node.furl,
        ],
    );
    let pyv = tail(false, &["-c", "-v", "-t", "epoch", &node.furl]);
    let rsv = tail(true, &["-c", "-v", "-t", "epoch", &node.furl]);
    for p in [&py, &rs] {
        p.wait_contains("pre: last");
    }
    for p in [&pyv, &rsv] {
        p.wait_contains("'message': 'pre: last'");
    }
    // every tail is subscribed: live events now
    node.wait_stats("four subscriptions", |s| s.subscriptions == 4);
    node.shapes("live");
    for p in [&py, &rs] {
        p.wait_contains("live: last");
    }
    for p in [&pyv, &rsv] {
        p.wait_contains("'message': 'live: last'");
    }
    let (py_out, rs_out) = (masked(&py.lines()), masked(&rs.lines()));
    assert_eq!(py_out, rs_out);
    // what they printed is what Python prints for these events
    let pid = format!("Connected (to pid {})", std::process::id());
    assert_eq!(py_out[..3], ["starting..", "Connecting..", pid.as_str()]);
    assert_eq!(py_out[3], "Remote Versions:");
    assert_eq!(py_out[4], " foolscap: 24.9.0");
    assert!(py_out[5].starts_with(" foolscap-rs: "), "{py_out:?}");
    for want in [
        "TIME L20 []#1 pre: positional abc and 5",
        "TIME L23 []#2 pre: box has 3 items",
        "TIME L35 []#5 ",
        " FAILURE:",
        " [CopiedFailure instance: Traceback from remote host -- Traceback (most recent call last):",
        " builtins.ZeroDivisionError: division by zero",
        " ]",
        "TIME L20 []#7 pre: literal %(kw)s",
        "TIME L28 []#17 live: last",
    ] {
        assert!(py_out.iter().any(|l| l == want), "{want:?} in {py_out:#?}");
    }
    assert_eq!(pyv.lines(), rsv.lines());
    assert!(
        pyv.lines()
            .iter()
            .any(|l| l.contains("'data': b'\\x00\\xffbin'")
                && l.contains("'tup': (1, 'x')")
                && l.contains("'s': {3}")
                && l.contains("'fs': frozenset({4})")
                && l.contains("'big': 1180591620717411303424")),
        "{:#?}",
        pyv.lines()
    );
    assert!(pyv.lines().iter().any(|l| l.contains(
        "'failure': <foolscap.call.CopiedFailure builtins.ZeroDivisionError: division by zero>"
    )));
    // Python's tail writes its file through a buffer: stop it as a user
    // would (^C) so that the buffer is written
    for p in [&py, &rs] {
        let pid = p.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
    }
    let (mut py, mut rs) = (py, rs);
    py.wait_exit();
    rs.wait_exit();
    drop((pyv, rsv));

    // the saved files: Python's dump reads ours as it reads Python's, and
    // our dump prints the same
    let dump_py = |file: &Path| {
        let out = python_flogtool()
            .env("TZ", "UTC")
            .arg("dump")
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let py_dump = dump_py(&py_save);
    assert!(py_dump.contains("live: last"), "{py_dump}");
    assert_eq!(dump_py(&rs_save), py_dump);
    let ours = Command::new(our_flogtool())
        .env("TZ", "UTC")
        .arg("dump")
        .arg(&rs_save)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(ours.stdout).unwrap(), py_dump);
    // headers: type tail, the versions as text, the pid
    let header = |file: &Path| {
        let text = std::fs::read_to_string(file).unwrap();
        let line = text.lines().nth(1).unwrap().to_string();
        serde_json::from_str::<Json>(&line).unwrap()
    };
    assert_eq!(header(&rs_save), header(&py_save));
}

#[test]
fn our_tail_prints_what_pythons_prints_for_a_python_node() {
    let mut node = PyNode::start();
    node.command("shapes pre");
    let py = tail(false, &["--catch-up", &node.furl]);
    let rs = tail(true, &["--catch-up", &node.furl]);
    for p in [&py, &rs] {
        p.wait_contains("pre: last");
    }
    // each tail's own connection makes live events at the node: wait
    // until both have seen the other's (so both are subscribed)
    node.command("shapes warm");
    for p in [&py, &rs] {
        p.wait_contains("warm: last");
    }
    node.command("shapes t1");
    for p in [&py, &rs] {
        p.wait_contains("t1: last");
    }
    let (py_out, rs_out) = (masked(&py.lines()), masked(&rs.lines()));
    assert_eq!(py_out[..6], rs_out[..6], "the connection and versions");
    assert_eq!(
        slice(&py_out, "pre: plain", "pre: last"),
        slice(&rs_out, "pre: plain", "pre: last")
    );
    let live = slice(&py_out, "t1: plain", "t1: last");
    assert_eq!(live, slice(&rs_out, "t1: plain", "t1: last"));
    assert!(live.iter().any(|l| l == " FAILURE:"), "{live:#?}");
    assert!(live.iter().any(|l| l.ends_with("t1: positional abc and 5")));

    let pyv = tail(false, &["-v", &node.furl]);
    let rsv = tail(true, &["-v", &node.furl]);
    // no catch-up: log until both show live events (both subscribed)
    let deadline = Instant::now() + T;
    for k in 0.. {
        node.command(&format!("shapes w{k}"));
        let want = format!("'message': 'w{k}: last'");
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until
            && ![&pyv, &rsv]
                .iter()
                .all(|p| p.lines().iter().any(|l| l.contains(&want)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if [&pyv, &rsv]
            .iter()
            .all(|p| p.lines().iter().any(|l| l.contains(&want)))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the -v tails never subscribed");
    }
    node.command("shapes t2");
    for p in [&pyv, &rsv] {
        p.wait_contains("'message': 't2: last'");
    }
    let v = slice(&pyv.lines(), "'t2: plain'", "'t2: last'");
    assert_eq!(v, slice(&rsv.lines(), "'t2: plain'", "'t2: last'"));
    assert!(v
        .iter()
        .any(|l| l.contains("'s': {3}") && l.contains("b'\\x00\\xffbin'")));
}

#[test]
fn tail_of_something_else_prints_error_and_exits_zero_like_pythons() {
    // a Python kitchen-sink object: no get_pid, no get_versions
    let server = common::process::Server::python(&[]);
    let mut py = tail(false, &[&server.furl]);
    let mut rs = tail(true, &[&server.furl]);
    assert_eq!(py.wait_exit(), 0);
    assert_eq!(rs.wait_exit(), 0);
    let (p, r) = (py.lines(), rs.lines());
    assert_eq!(p, r);
    assert_eq!(p[2], "Connected (unable to get pid)");
    assert!(p[3].starts_with("ERROR [CopiedFailure instance: Traceback from remote host -- "));

    // a target that is no FURL, file or directory
    let out = Command::new(our_flogtool())
        .args(["tail", "/nonexistent/target"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("RuntimeError: Can't use tail target: /nonexistent/target"));
    assert!(out.stdout.is_empty());
}

#[test]
fn our_tail_prints_disconnected_and_starts_over_when_the_node_returns() {
    let identity = foolscap::identity::Identity::generate().unwrap();
    let logger = Logger::new();
    let start = |port: u16| {
        let tub = foolscap::threads::tub(identity.clone(), Default::default()).unwrap();
        let addr = tub.listen(("127.0.0.1", port)).unwrap();
        let furl = tub
            .register(LogPublisher::new(logger.clone()).object(), Some("logport"))
            .unwrap();
        (tub, addr.port(), furl.to_string())
    };
    let (tub, port, furl) = start(0);
    let dir = TempDir::new("logport-reconnect");
    let save = dir.path().join("t.flog");
    let rs = tail(true, &["--save-to", save.to_str().unwrap(), &furl]);
    rs.wait_contains("Remote Versions:");
    logger.msg(d(&[("message", s("first run"))]));
    rs.wait_contains("first run");
    tub.shutdown();
    drop(tub);
    rs.wait_contains("Disconnected");
    let (tub2, _, furl2) = start(port);
    assert_eq!(furl2, furl);
    let deadline = Instant::now() + T;
    // the whole sequence again, then events of the second run
    loop {
        let n = rs
            .lines()
            .iter()
            .filter(|l| l.starts_with("Connected (to pid"))
            .count();
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", rs.lines());
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + T;
    while !rs.lines().iter().any(|l| l.contains("second run")) {
        logger.msg(d(&[("message", s("second run"))]));
        assert!(Instant::now() < deadline, "{:#?}", rs.lines());
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = rs.lines();
    let gone = lines.iter().position(|l| l == "Disconnected").unwrap();
    assert!(
        lines[gone + 1].starts_with("Connected (to pid "),
        "{lines:#?}"
    );
    assert_eq!(lines[gone + 2], "Remote Versions:");
    assert_eq!(lines.iter().filter(|l| *l == "Connecting..").count(), 1);
    // the save file was started over: only the second run's events
    let text = std::fs::read_to_string(&save).unwrap();
    assert!(
        text.contains("second run") && !text.contains("first run"),
        "{text}"
    );
    tub2.shutdown();
}

// ------------------------------------------------------------ methods

#[test]
fn a_python_client_gets_the_same_answers_from_our_publisher_as_from_pythons() {
    let node = RustNode::start();
    let py_node = PyNode::start();
    let ours = logclient(&node.furl, &["methods"]);
    let theirs = logclient(&py_node.furl, &["methods"]);
    for p in [&ours, &theirs] {
        p.wait_line("unsubscribe", |l| {
            l.contains("\"unsubscribe\"") || l.contains("crash")
        });
    }
    let (a, b) = (json_lines(&ours), json_lines(&theirs));
    assert_eq!(find(&a, "versions")["types"], find(&b, "versions")["types"]);
    assert_eq!(find(&a, "versions")["types"], serde_json::json!(["bytes"]));
    assert_eq!(find(&a, "pid"), find(&b, "pid"));
    let gets = |v: &[Json]| -> Vec<Json> {
        v.iter()
            .filter(|j| j["what"] == "get_incident")
            .cloned()
            .collect()
    };
    assert_eq!(gets(&a), gets(&b));
    assert_eq!(
        gets(&a)[0]["result"],
        serde_json::json!(["error", "KeyError", "'bad incident name bogus'"])
    );
    assert_eq!(
        find(&a, "enumerate_logfiles"),
        find(&b, "enumerate_logfiles")
    );
    assert_eq!(find(&a, "unsubscribe"), find(&b, "unsubscribe"));
    assert_eq!(
        find(&a, "unsubscribe")["int"],
        serde_json::json!([
            "error",
            "AttributeError",
            "'int' object has no attribute 'unsubscribe'"
        ])
    );
    // both subscriptions ended (deprecated form, then idempotent)
    node.wait_stats("no subscription", |s| s.subscriptions == 0);
}

#[test]
fn a_python_client_lists_gets_and_follows_our_incidents_as_pythons() {
    let node = RustNode::start();
    node.weird("a");
    let mut py_node = PyNode::start();
    py_node.command("weird a");
    py_node.wait_incidents(1);
    let ours = logclient(&node.furl, &["incidents"]);
    let theirs = logclient(&py_node.furl, &["incidents"]);
    for p in [&ours, &theirs] {
        p.wait_line("subscribed", |l| {
            l.contains("\"subscribed\"") || l.contains("crash")
        });
    }
    node.weird("b");
    py_node.command("weird b");
    for p in [&ours, &theirs] {
        p.wait_line("live", |l| l.contains("\"live\"") || l.contains("crash"));
    }
    let (a, b) = (json_lines(&ours), json_lines(&theirs));
    let names = |v: &Json| -> Vec<String> {
        v["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n[0].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(find(&a, "list")), ["str"]);
    assert_eq!(names(find(&a, "list")), names(find(&b, "list")));
    assert_eq!(
        find(&a, "list")["messages"],
        serde_json::json!(["a: weird"])
    );
    assert_eq!(find(&a, "list")["messages"], find(&b, "list")["messages"]);
    assert_eq!(
        find(&a, "list")["incarnation_types"],
        find(&b, "list")["incarnation_types"]
    );
    assert_eq!(find(&a, "list_since_last")["names"], serde_json::json!([]));
    assert_eq!(find(&a, "list_since_last"), find(&b, "list_since_last"));
    let get = |v: &[Json]| {
        let g = find(v, "get");
        let ours: Vec<Json> = g["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.as_str().is_some_and(|m| m.starts_with("a: ")))
            .cloned()
            .collect();
        (
            g["header_type"].clone(),
            g["header_keys"].clone(),
            g["trigger"].clone(),
            ours,
        )
    };
    assert_eq!(get(&a), get(&b));
    assert_eq!(get(&a).0, "incident");
    assert_eq!(
        get(&a).3,
        ["a: before", "a: weird", "a: after"].map(Json::from)
    );
    let incidents = |v: &[Json], what: &str| -> Vec<(Json, Json)> {
        find(v, what)["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i[0].clone(), i[2].clone()))
            .collect()
    };
    assert_eq!(incidents(&a, "catchup"), incidents(&b, "catchup"));
    assert_eq!(
        incidents(&a, "catchup"),
        [(Json::from("bytes"), Json::from("a: weird"))]
    );
    assert_eq!(incidents(&a, "live"), incidents(&b, "live"));
    assert_eq!(
        incidents(&a, "live"),
        [(Json::from("bytes"), Json::from("b: weird"))]
    );
}

/// An observer that hands what it receives to the test.
struct Collect(Mutex<mpsc::Sender<(String, String)>>);

impl Collect {
    fn send(&self, kind: &str, text: String) {
        let _ = self.0.lock().unwrap().send((kind.to_string(), text));
    }
}

impl RILogObserver for Collect {
    fn msg(&self, logmsg: Event) -> Result<(), Failure> {
        self.send("msg", logmsg.format_message().unwrap_or_default());
        Ok(())
    }
    fn done(&self) {}
    fn new_incident(&self, name: WireValue, trigger: Event) -> Result<(), Failure> {
        let kind = match name {
            WireValue::Bytes(_) => "bytes",
            _ => "other",
        };
        self.send(
            "incident",
            format!("{kind} {}", trigger.format_message().unwrap_or_default()),
        );
        Ok(())
    }
    fn done_with_incident_catchup(&self) {
        self.send("done", String::new());
    }
}

#[test]
fn our_client_lists_gets_and_follows_pythons_incidents() {
    let mut py_node = PyNode::start();
    py_node.command("weird a");
    py_node.wait_incidents(1);
    let tub = foolscap::threads::new_tub().unwrap();
    let lp = RILogPublisherClient::connect(&tub, &py_node.furl, T).unwrap();
    let (tx, rx) = mpsc::channel();
    let observer =
        RILogObserverClient::local(&tub, Arc::new(RILogObserverServer(Collect(Mutex::new(tx)))));
    lp.subscribe_to_incidents(observer, Some(true), Some(WireValue::bytes(b"")))
        .unwrap();
    assert_eq!(
        rx.recv_timeout(T).unwrap(),
        ("incident".to_string(), "bytes a: weird".to_string())
    );
    assert_eq!(rx.recv_timeout(T).unwrap().0, "done");
    py_node.command("weird b");
    let listed = lp.list_incidents(None).unwrap();
    let names: Vec<String> = listed.text_keys().map(|(k, _)| k).collect();
    assert!(!names.is_empty());
    let (header, events) = lp.get_incident(WireValue::str(&names[0])).unwrap();
    assert_eq!(header.get("type"), Some(&s("incident")));
    assert!(events
        .iter()
        .any(|e| e.get("message") == Some(&s("a: weird"))));
    let err = lp.get_incident(WireValue::str("nope")).unwrap_err();
    let f = err.failure().unwrap();
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("builtins.KeyError", "'bad incident name nope'")
    );
    let err = lp.enumerate_logfiles().unwrap_err();
    assert_eq!(
        err.failure().unwrap().value,
        "'LogPublisher' object has no attribute 'remote_enumerate_logfiles'"
    );
    // the live incident of "weird b", 5 s later
    assert_eq!(
        rx.recv_timeout(T).unwrap(),
        ("incident".to_string(), "bytes b: weird".to_string())
    );
    tub.shutdown();
}

// ------------------------------------------------------------ bounds

/// An observer that never answers `msg` (keeps every call).
struct Stalled(Mutex<Vec<Call>>);

impl Object for Stalled {
    fn call(&self, call: Call) {
        self.0.lock().unwrap().push(call);
    }
    fn interface(&self) -> &str {
        "RILogObserver.foolscap.lothar.com"
    }
}

#[test]
fn a_subscriber_that_stops_answering_holds_at_most_10_calls_and_2000_events() {
    let node = RustNode::start();
    let client = foolscap::threads::new_tub().unwrap();
    let lp = RILogPublisherClient::connect(&client, &node.furl, T).unwrap();
    let stalled = Arc::new(Stalled(Mutex::new(Vec::new())));
    let observer = client.local(stalled.clone());
    let _sub = client
        .call(
            lp.reference().unwrap(),
            "subscribe_to_all",
            &[observer],
            &[],
            T,
        )
        .unwrap();
    node.wait_stats("subscribed", |s| s.subscriptions == 1);
    for i in 0..10 {
        node.logger.msg(d(&[("message", s(&format!("first {i}")))]));
    }
    node.wait_stats("10 in flight", |s| s.in_flight == 10 && s.queued == 0);
    let rss_before = rss_kib();
    let payload = "x".repeat(1000);
    for i in 0..5000 {
        node.logger.msg(d(&[
            ("message", s(&format!("more {i}"))),
            ("pad", s(&payload)),
        ]));
    }
    let st = node.publisher.stats();
    assert_eq!(
        (st.in_flight, st.queued, st.dropped),
        (10, foolscap::logport::MAX_QUEUE_SIZE, 3000)
    );
    // more of the same: nothing grows
    for i in 0..50_000 {
        node.logger.msg(d(&[
            ("message", s(&format!("even more {i}"))),
            ("pad", s(&payload)),
        ]));
    }
    let st = node.publisher.stats();
    assert_eq!((st.in_flight, st.queued, st.dropped), (10, 2000, 53_000));
    eprintln!(
        "RSS: {rss_before} KiB with 10 events in flight, {} KiB after 55000 more 1 kB events to a stalled subscriber (2000 queued)",
        rss_kib()
    );
    assert_eq!(stalled.0.lock().unwrap().len(), 10);
    // the observer's connection goes: the subscription ends
    client.shutdown();
    node.wait_stats("ended by the disconnect", |s| s.subscriptions == 0);
}

fn rss_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_failed_msg_ends_the_subscription_but_dropping_its_reference_does_not() {
    let node = RustNode::start();
    let client = foolscap::threads::new_tub().unwrap();
    let lp = RILogPublisherClient::connect(&client, &node.furl, T).unwrap();
    let (tx, rx) = mpsc::channel();
    let observer = RILogObserverClient::local(
        &client,
        Arc::new(RILogObserverServer(Collect(Mutex::new(tx)))),
    );
    let sub = lp.subscribe_to_all(observer, None).unwrap();
    // dropping our reference to the subscription changes nothing
    drop(sub);
    node.wait_stats("subscribed", |s| s.subscriptions == 1);
    node.logger.msg(d(&[("message", s("kept"))]));
    assert_eq!(rx.recv_timeout(T).unwrap().1, "kept");
    // a format naming a missing key: our observer's format_message fails
    // quietly, so make the failure explicit with a Python tail instead
    let pytail = tail(false, &[&node.furl]);
    let rstail = tail(true, &[&node.furl]);
    pytail.wait_contains("Remote Versions:");
    rstail.wait_contains("Remote Versions:");
    node.wait_stats("three subscriptions", |s| s.subscriptions == 3);
    node.logger.msg(d(&[("format", s("%(nokey)s"))]));
    // both tails fail that msg call (Python's KeyError): both end
    node.wait_stats("the failing ones ended", |s| s.subscriptions == 1);
    node.logger.msg(d(&[("message", s("after"))]));
    // ours still gets events; Python's tail got none after the failure
    let mut seen = Vec::new();
    while !seen.iter().any(|t: &String| t == "after") {
        seen.push(rx.recv_timeout(T).unwrap().1);
    }
    assert!(!pytail.lines().iter().any(|l| l.contains("after")));
    assert!(!rstail.lines().iter().any(|l| l.contains("after")));
    client.shutdown();
}

// ------------------------------------------------------------ FURL file

#[test]
fn the_logport_furl_file_is_written_once_located_and_keeps_its_swissnum() {
    let dir = TempDir::new("logport-furlfile");
    let file = dir.path().join("logport.furl");
    let identity = foolscap::identity::Identity::generate().unwrap();
    let tub = foolscap::threads::tub(identity.clone(), Default::default()).unwrap();
    tub.set_logport_furlfile(&file).unwrap();
    // no location yet: nothing written
    assert!(!file.exists());
    tub.listen("127.0.0.1:0").unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let furl = tub.logport_furl().unwrap().to_string();
    assert_eq!(text, format!("{furl}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Python's tail reaches it through the file, ours through the
    // directory holding `logport.furl`
    let py = tail(false, &[file.to_str().unwrap()]);
    py.wait_contains("Remote Versions:");
    let rs = tail(true, &[dir.path().to_str().unwrap()]);
    rs.wait_contains("Remote Versions:");
    drop((py, rs));
    tub.shutdown();
    // the same identity again: the same swissnum
    let tub2 = foolscap::threads::tub(identity, Default::default()).unwrap();
    tub2.set_logport_furlfile(&file).unwrap();
    tub2.listen("127.0.0.1:0").unwrap();
    let furl2 = tub2.logport_furl().unwrap();
    assert_eq!(furl2.swissnum, furl.rsplit('/').next().unwrap());
    tub2.shutdown();
    // another Tub: refused
    let other = foolscap::threads::new_tub().unwrap();
    let err = other.set_logport_furlfile(&file).unwrap_err();
    assert!(matches!(err, foolscap::Error::WrongTubId { .. }), "{err}");
}

#[test]
fn both_kitchen_sinks_publish_their_logport_with_logport_furlfile() {
    let dir = TempDir::new("logport-kitchen");
    for (i, rust) in [true, false].into_iter().enumerate() {
        let file = dir.path().join(format!("logport-{i}.furl"));
        let extra = ["--logport-furlfile", file.to_str().unwrap()];
        let server = if rust {
            common::process::Server::rust("mio", &extra)
        } else {
            common::process::Server::python(&extra)
        };
        let deadline = Instant::now() + T;
        while !std::fs::read_to_string(&file).is_ok_and(|t| t.ends_with('\n')) {
            assert!(Instant::now() < deadline, "no {}", file.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        // the same Tub as the kitchen sink, another swissnum
        let text = std::fs::read_to_string(&file).unwrap();
        let tubid = |f: &str| f.split('@').next().unwrap().to_string();
        assert_eq!(tubid(text.trim()), tubid(&server.furl));
        assert_ne!(text.trim(), server.furl);
        for ours in [true, false] {
            let t = tail(ours, &["--catch-up", file.to_str().unwrap()]);
            let pid = format!("Connected (to pid {})", server.pid());
            t.wait_line(&pid, |l| l == pid);
            t.wait_contains("Remote Versions:");
        }
    }
}
