//! Log gatherers against Python foolscap 24.9.0, both sides
//! (docs/logging.md, "Gatherers"):
//!
//! * a Python node (`tests/interop/gatherer_node.py`, Tub option
//!   `log-gatherer-furl`) pushing to our `flogtool run-gatherer`, log and
//!   incident kinds, in directories made by our `flogtool create-*` and by
//!   Python's;
//! * our `create-*` directories started by Python's `twistd -y gatherer.tac`;
//! * a Rust node (`Tub::set_log_gatherer_furl`) pushing to Python's
//!   gatherers and to ours;
//! * the files the gatherers write, dumped by Python's `flogtool dump` and
//!   ours with identical output;
//! * reconnection after a gatherer restart.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::process::{repo_root, KillOnDrop, TempDir};
use common::python;

/// Generous limit per wait: CI machines are slow and shared.
const T: Duration = Duration::from_secs(60);

/// Our `flogtool`, built once in the profile of this test.
fn flogtool() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::process::cli_bin("flogtool"))
}

/// A script of the venv (`flogtool`, `twistd`), run by its interpreter.
fn py_script(name: &str) -> Command {
    let script = python().with_file_name(name);
    assert!(script.is_file(), "{} is missing", script.display());
    let mut cmd = Command::new(python());
    cmd.arg(script);
    cmd
}

fn output(mut cmd: Command) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP port free right now on 127.0.0.1 (gatherers refuse tcp:0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + T;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Rust,
    Python,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Log,
    Incident,
}

/// `flogtool create-gatherer` / `create-incident-gatherer` of `side`.
fn create(side: Side, kind: Kind, dir: &Path, extra: &[&str]) -> u16 {
    let port = free_port();
    let sub = match kind {
        Kind::Log => "create-gatherer",
        Kind::Incident => "create-incident-gatherer",
    };
    let mut cmd = match side {
        Side::Rust => Command::new(flogtool()),
        Side::Python => py_script("flogtool"),
    };
    cmd.arg(sub)
        .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
        .arg(format!("--location=tcp:127.0.0.1:{port}"))
        .args(extra)
        .arg(dir);
    let (ok, out, err) = output(cmd);
    assert!(ok, "{side:?} {sub}: {out}{err}");
    port
}

/// A running gatherer: its process, the lines it printed, its FURL.
struct Gatherer {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    furl: String,
}

impl Gatherer {
    /// Runs the directory with our `run-gatherer` or Python's twistd.
    fn start(side: Side, dir: &Path) -> Gatherer {
        let cmd = match side {
            Side::Rust => {
                let mut c = Command::new(flogtool());
                c.arg("run-gatherer").arg(dir);
                c
            }
            Side::Python => {
                let mut c = py_script("twistd");
                c.current_dir(dir)
                    .args(["-n", "--pidfile=", "--logfile=-", "-y", "gatherer.tac"]);
                c
            }
        };
        Self::start_command(cmd, dir)
    }

    /// Runs `cmd`, a gatherer of `dir`.
    fn start_command(mut cmd: Command, dir: &Path) -> Gatherer {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gatherer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // twistd prefixes each logged line with a time and a
                // system name in brackets
                let timestamped = line.len() > 11
                    && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                    && line.as_bytes()[10] == b'T';
                let line = match line.split_once("] ") {
                    Some((_, rest)) if timestamped => rest.trim_end().to_string(),
                    _ => line.trim_end().to_string(),
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut g = Gatherer {
            child: KillOnDrop(child),
            lines: rx,
            seen: Vec::new(),
            furl: String::new(),
        };
        let line = g.expect_line(|l| l.starts_with("Gatherer waiting at: "));
        g.furl = line["Gatherer waiting at: ".len()..].trim().to_string();
        let file = std::fs::read_to_string(dir.join("log_gatherer.furl")).unwrap();
        assert_eq!(file, format!("{}\n", g.furl));
        g
    }

    /// Waits for a printed line that passes `f`.
    fn expect_line(&mut self, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        if let Some(l) = self.seen.iter().find(|l| f(l)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("no such line; printed so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The printed lines that are the gatherer's own (not twistd's).
    fn own_lines(&self) -> Vec<String> {
        const OWN: [&str; 7] = [
            "Gatherer waiting at:",
            "classifying stored",
            "incidents already classified",
            "done classifying",
            "connected to ",
            "fetching incident ",
            "classified incidents/",
        ];
        self.seen
            .iter()
            .filter(|l| OWN.iter().any(|o| l.contains(o)))
            .cloned()
            .collect()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + T;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The Python node of `tests/interop/gatherer_node.py`.
struct PyNode {
    child: KillOnDrop,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
    tubid: String,
}

impl PyNode {
    fn start(gatherers: &[&str], logdir: Option<&Path>) -> PyNode {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/interop/gatherer_node.py"));
        for g in gatherers {
            cmd.args(["--gatherer", g]);
        }
        if let Some(d) = logdir {
            cmd.arg("--logdir").arg(d);
        }
        let mut child: Child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start gatherer_node.py");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut node = PyNode {
            child: KillOnDrop(child),
            stdin,
            out,
            tubid: String::new(),
        };
        let hello = node.read_json();
        node.tubid = hello["tubid"].as_str().unwrap().to_string();
        node
    }

    fn read_json(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("node output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn command(&mut self, cmd: &str) -> i64 {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.read_json()["num"].as_i64().unwrap()
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.0.wait_timeout_or_kill();
    }
}

trait WaitOrKill {
    fn wait_timeout_or_kill(&mut self) -> std::io::Result<()>;
}

impl WaitOrKill for Child {
    fn wait_timeout_or_kill(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }
}

/// The newest `from-*---to-present.flog` of a log gatherer directory (a
/// gatherer stopped leaves its file with that name too).
fn current_file(dir: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("from-") && n.ends_with("---to-present.flog")
        })
        .collect();
    found.sort();
    found.pop().expect("a from-*---to-present.flog file")
}

/// `flogtool dump ARGS FILE` by Python's and by ours: identical output
/// (stdout and success); returns it.
fn dump_both(file: &Path, args: &[&str]) -> String {
    let mut py = py_script("flogtool");
    py.env("TZ", "UTC").arg("dump").args(args).arg(file);
    let mut rs = Command::new(flogtool());
    rs.env("TZ", "UTC").arg("dump").args(args).arg(file);
    let (pok, pout, perr) = output(py);
    let (rok, rout, rerr) = output(rs);
    assert!(pok, "Python's dump of {}: {perr}", file.display());
    assert!(rok, "our dump of {}: {rerr}", file.display());
    assert_eq!(rout, pout, "dumps of {} differ", file.display());
    pout
}

/// Sends `msg ping` until the gatherer's file has one (the log gatherer
/// subscribes without catch-up: only events after its subscription count).
fn until_subscribed(node: &mut PyNode, dir: &Path) {
    wait_for("the log gatherer's subscription", || {
        node.command("msg ping");
        std::thread::sleep(Duration::from_millis(100));
        let text = std::fs::read_to_string(current_file(dir)).ok()?;
        text.contains("\"ping\"").then_some(())
    });
}

/// Waits until the file holds an event with `num` from `from`.
fn wait_event(dir: &Path, from: &str, num: i64) {
    wait_for(&format!("event #{num} from {from}"), || {
        let text = std::fs::read_to_string(current_file(dir)).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|r| r["from"] == from && r["d"]["num"] == num)
            .then_some(())
    });
}

fn python_node_to_log_gatherer(creator: Side, runner: Side) {
    let dir = TempDir::new("loggatherer");
    let base = dir.path().join("g");
    create(creator, Kind::Log, &base, &[]);
    let gatherer = Gatherer::start(runner, &base);
    let mut node = PyNode::start(&[&gatherer.furl], None);
    until_subscribed(&mut node, &base);
    let a = node.command("msg after the subscription");
    let b = node.command("shapes");
    wait_event(&base, &node.tubid, b);
    let file = current_file(&base);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# foolscap flogfile v1"));
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["header"]["type"], "gatherer");
    assert!(header["header"]["start"].is_f64());
    let dump = dump_both(&file, &[]);
    let short = &node.tubid[..8];
    assert!(
        dump.starts_with('\n'),
        "a gatherer file's dump starts empty: {dump}"
    );
    assert!(dump.contains(&format!("{short}#{a} ")), "{dump}");
    assert!(dump.contains(": after the subscription\n"), "{dump}");
    assert!(dump.contains(&format!("{short}#{b} ")), "{dump}");
    dump_both(&file, &["--verbose"]);
    dump_both(&file, &["--rx-time", "--timestamps=utc"]);
    drop(node);
    gatherer.stop();
}

#[test]
fn python_node_to_our_log_gatherer_in_our_directory() {
    python_node_to_log_gatherer(Side::Rust, Side::Rust);
}

#[test]
fn python_node_to_our_log_gatherer_in_pythons_directory() {
    python_node_to_log_gatherer(Side::Python, Side::Rust);
}

#[test]
fn our_log_gatherer_directory_runs_under_pythons_twistd() {
    python_node_to_log_gatherer(Side::Rust, Side::Python);
}

/// The gatherer's bytes: Python's gatherer and ours write the same event
/// records for the same events (up to `rx_time`).
#[test]
fn both_log_gatherers_write_the_same_records() {
    let dir = TempDir::new("loggatherer-same");
    let (pyg, rsg) = (dir.path().join("py"), dir.path().join("rs"));
    create(Side::Python, Kind::Log, &pyg, &[]);
    create(Side::Rust, Kind::Log, &rsg, &[]);
    let gp = Gatherer::start(Side::Python, &pyg);
    let gr = Gatherer::start(Side::Rust, &rsg);
    let mut node = PyNode::start(&[&gp.furl, &gr.furl], None);
    until_subscribed(&mut node, &pyg);
    until_subscribed(&mut node, &rsg);
    let first = node.command("msg first of the batch");
    node.command("shapes");
    let last = node.command("msg last of the batch");
    wait_event(&pyg, &node.tubid, last);
    wait_event(&rsg, &node.tubid, last);
    let records = |d: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(current_file(d))
            .unwrap()
            .lines()
            .skip(2)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| {
                r["d"]["num"]
                    .as_i64()
                    .is_some_and(|n| n >= first && n <= last)
            })
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("rx_time");
                r
            })
            .collect()
    };
    let (p, r) = (records(&pyg), records(&rsg));
    assert_eq!(p.len(), 3);
    assert_eq!(r, p);
    drop(node);
    gp.stop();
    gr.stop();
}

fn classifier(dir: &Path) {
    std::fs::write(
        dir.join("classify_weird.py"),
        "def classify_incident(trigger):\n    if 'WEIRD' in trigger.get('message', ''):\n        return 'weird'\n",
    )
    .unwrap();
}

fn python_node_to_incident_gatherer(creator: Side, runner: Side) {
    let dir = TempDir::new("incgatherer");
    let base = dir.path().join("g");
    let logdir = dir.path().join("logdir");
    create(creator, Kind::Incident, &base, &[]);
    classifier(&base);
    let mut g = Gatherer::start(runner, &base);
    g.expect_line(|l| l == "done classifying 0 stored incidents");
    let mut node = PyNode::start(&[&g.furl], Some(&logdir));
    let tubid = node.tubid.clone();
    g.expect_line(|l| l == format!("connected to {tubid}, last known incident is ").trim_end());
    // an incident recorded while the subscription is being made would be
    // announced twice by Python's publisher (in the catch-up, and live)
    wait_for("the incident subscription", || {
        (node.command("subscribers") == 1).then_some(())
    });
    node.command("msg before the incident");
    node.command("incident something WEIRD happened");
    let classified = g.expect_line(|l| l.starts_with("classified incidents/"));
    let name = wait_for("the node's incident file", || {
        let e = std::fs::read_dir(&logdir).ok()?;
        e.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".flog.bz2"))
    });
    let name = name.trim_end_matches(".flog.bz2").to_string();
    let rel = format!("incidents/{tubid}/{name}.flog.bz2");
    assert_eq!(classified, format!("classified {rel} as [weird]"));
    assert_eq!(
        std::fs::read_to_string(base.join("classified/weird")).unwrap(),
        format!("{rel}\n")
    );
    assert_eq!(
        std::fs::read_to_string(base.join(format!("incidents/{tubid}/latest"))).unwrap(),
        format!("{name}\n")
    );
    // the saved file: the node's events, from = tubid; both dumps agree
    let saved = base.join(&rel);
    let dump = dump_both(&saved, &[]);
    let original = dump_both(&logdir.join(format!("{name}.flog.bz2")), &[]);
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
            .collect()
    };
    assert_eq!(strip(&dump), strip(&original));
    assert!(dump.contains(&format!("{}#", &tubid[..8])));
    assert!(dump.contains(" [INCIDENT-TRIGGER]"));
    dump_both(&saved, &["--verbose"]);
    let first_lines = g.own_lines();
    assert_eq!(
        first_lines,
        vec![
            format!("Gatherer waiting at: {}", g.furl),
            "classifying stored incidents".into(),
            "0 incidents already classified".into(),
            "done classifying 0 stored incidents".into(),
            format!("connected to {tubid}, last known incident is"),
            format!("fetching incident {name}"),
            format!("classified {rel} as [weird]"),
        ]
        .into_iter()
        .map(|l: String| l.trim_end().to_string())
        .collect::<Vec<_>>()
    );

    // a restart: the stored incident is known; the node reconnects and
    // its catch-up starts after it
    g.stop();
    let mut g = Gatherer::start(runner, &base);
    g.expect_line(|l| l == "1 incidents already classified");
    g.expect_line(|l| l == "done classifying 0 stored incidents");
    g.expect_line(|l| l == format!("connected to {tubid}, last known incident is {name}"));
    drop(node);
    g.stop();
}

#[test]
fn python_node_to_our_incident_gatherer_in_our_directory() {
    python_node_to_incident_gatherer(Side::Rust, Side::Rust);
}

#[test]
fn python_node_to_our_incident_gatherer_in_pythons_directory() {
    python_node_to_incident_gatherer(Side::Python, Side::Rust);
}

#[test]
fn our_incident_gatherer_directory_runs_under_pythons_twistd() {
    python_node_to_incident_gatherer(Side::Rust, Side::Python);
}

/// Our `create-*` writes what Python's writes (but the tac, ours in our
/// words), and prints the same.
#[test]
fn create_commands_match_pythons() {
    let dir = TempDir::new("create");
    for (sub, extra) in [
        ("create-gatherer", &["--rotate=60", "--bzip"][..]),
        ("create-incident-gatherer", &[][..]),
    ] {
        let run = |side: Side, name: &str, args: &[&str]| {
            let mut cmd = match side {
                Side::Rust => Command::new(flogtool()),
                Side::Python => py_script("flogtool"),
            };
            cmd.current_dir(dir.path()).arg(sub).args(args).arg(name);
            output(cmd)
        };
        let args = [
            &["--port=tcp:3999", "--location=tcp:example.org:3999"][..],
            extra,
        ]
        .concat();
        let (pok, pout, _) = run(Side::Python, "py", &args);
        let (rok, rout, _) = run(Side::Rust, "rs", &args);
        assert!(pok && rok);
        assert_eq!(rout.replace("rs", "py"), pout);
        for f in ["port", "location"] {
            assert_eq!(
                std::fs::read(dir.path().join("rs").join(f)).unwrap(),
                std::fs::read(dir.path().join("py").join(f)).unwrap()
            );
        }
        // quiet
        let (ok, out, _) = run(Side::Rust, "rsq", &[&args[..], &["--quiet"]].concat());
        assert!(ok && out.is_empty());
        // --location is mandatory: exit 1, the message on stdout
        let (ok, out, _) = run(Side::Rust, "none", &[]);
        assert!(!ok);
        assert!(
            out.starts_with("flogtool:  --location= is mandatory"),
            "{out}"
        );
        let (ok, _, _) = run(Side::Rust, "zero", &["--port=tcp:0", "--location=tcp:h:1"]);
        assert!(!ok);
        let _ = std::fs::remove_dir_all(dir.path().join("rs"));
        let _ = std::fs::remove_dir_all(dir.path().join("py"));
        let _ = std::fs::remove_dir_all(dir.path().join("rsq"));
    }
}

// ------------------------------------------------------------ a Rust node

/// An event of the process's logger (Python's `log.msg(message, **kw)`).
fn rust_msg(message: &str, level: i64, extra: &[(&str, foolscap_logging::Value)]) -> i64 {
    let mut d = foolscap_logging::Dict::new();
    d.insert("message", message);
    d.insert("level", level);
    for (k, v) in extra {
        d.insert(*k, v.clone());
    }
    foolscap_logging::Logger::global().msg(d) as i64
}

/// Every event record of a log gatherer's files with `num` in the range,
/// without `rx_time`.
fn records(dir: &Path, from: &str, nums: std::ops::RangeInclusive<i64>) -> Vec<serde_json::Value> {
    std::fs::read_to_string(current_file(dir))
        .unwrap()
        .lines()
        .skip(2)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["from"] == from)
        .filter(|r| r["d"]["num"].as_i64().is_some_and(|n| nums.contains(&n)))
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("rx_time");
            r
        })
        .collect()
}

/// A Rust Tub with `set_log_gatherer_furl` reporting to Python's log and
/// incident gatherers and to ours at once: the same records in both log
/// gatherers' files, the same incident saved and classified by both
/// incident gatherers; then both log gatherers restart and the node
/// reconnects to each and reports again.
#[test]
fn rust_node_to_pythons_and_our_gatherers() {
    use foolscap_logging::Value as L;
    let dir = TempDir::new("rustnode");
    let logdir = dir.path().join("logdir");
    foolscap_logging::Logger::global()
        .set_log_dir(&logdir)
        .unwrap();
    let (pyl, rsl, pyi, rsi) = (
        dir.path().join("pyl"),
        dir.path().join("rsl"),
        dir.path().join("pyi"),
        dir.path().join("rsi"),
    );
    create(Side::Python, Kind::Log, &pyl, &[]);
    create(Side::Rust, Kind::Log, &rsl, &[]);
    create(Side::Python, Kind::Incident, &pyi, &[]);
    create(Side::Rust, Kind::Incident, &rsi, &[]);
    classifier(&pyi);
    classifier(&rsi);
    let gpl = Gatherer::start(Side::Python, &pyl);
    let grl = Gatherer::start(Side::Rust, &rsl);
    let mut gpi = Gatherer::start(Side::Python, &pyi);
    let mut gri = Gatherer::start(Side::Rust, &rsi);

    let tub = foolscap::threads::new_tub().unwrap();
    let furls = [&gpl.furl, &grl.furl, &gpi.furl, &gri.furl];
    tub.set_log_gatherer_furl(furls).unwrap();
    // the gatherers are offered the logport once the Tub has a location
    tub.listen("127.0.0.1:0").unwrap();
    let tubid = tub.tubid().to_string();
    let publisher = tub.logport();
    wait_for("four subscriptions", || {
        let s = publisher.stats();
        (s.subscriptions == 2 && s.incident_subscriptions == 2).then_some(())
    });
    for g in [&mut gpi, &mut gri] {
        g.expect_line(|l| l == format!("connected to {tubid}, last known incident is").as_str());
    }

    let first = rust_msg("first event of the Rust node", 20, &[]);
    rust_msg(
        "values",
        20,
        &[
            ("t", L::Tuple(vec![L::from(1i64), L::from("two")])),
            ("b", L::Bytes(b"raw\xff".to_vec())),
            ("big", L::Int(num_bigint::BigInt::from(1u128 << 70))),
            ("f", L::from(1.5)),
            ("none", L::None),
            ("u", L::from("h\u{e9}llo \u{2713}")),
        ],
    );
    let last = rust_msg("last event of the batch", 20, &[]);
    for d in [&pyl, &rsl] {
        wait_event(d, &tubid, last);
    }
    let p = records(&pyl, &tubid, first..=last);
    let r = records(&rsl, &tubid, first..=last);
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!(r, p);
    let dump = dump_both(&current_file(&rsl), &[]);
    assert!(dump.contains(": first event of the Rust node\n"), "{dump}");
    dump_both(&current_file(&pyl), &["--verbose"]);

    // an incident: fetched, saved, classified by both incident gatherers
    rust_msg("before the incident", 20, &[]);
    rust_msg(
        "something WEIRD happened",
        30,
        &[("facility", L::from("app.incident"))],
    );
    let mut saved = Vec::new();
    for (g, base) in [(&mut gpi, &pyi), (&mut gri, &rsi)] {
        let line = g.expect_line(|l| l.starts_with("classified incidents/"));
        let rel = line
            .strip_prefix("classified ")
            .and_then(|l| l.strip_suffix(" as [weird]"))
            .unwrap_or_else(|| panic!("{line}"))
            .to_string();
        assert!(
            rel.starts_with(&format!("incidents/{tubid}/incident-")),
            "{rel}"
        );
        assert_eq!(
            std::fs::read_to_string(base.join("classified/weird")).unwrap(),
            format!("{rel}\n")
        );
        saved.push(base.join(&rel));
    }
    // both saved files hold the same records (but rx_time)
    let events = |f: &Path| -> Vec<serde_json::Value> {
        let text = dump_both(f, &["--verbose"]);
        text.lines()
            .map(|l| serde_json::Value::String(l.to_string()))
            .collect()
    };
    assert_eq!(events(&saved[0]), events(&saved[1]));

    // restart both log gatherers: the node reconnects to each
    gpl.stop();
    grl.stop();
    wait_for("the subscriptions to end", || {
        (publisher.stats().subscriptions == 0).then_some(())
    });
    let gpl = Gatherer::start(Side::Python, &pyl);
    let grl = Gatherer::start(Side::Rust, &rsl);
    wait_for("the node to reconnect", || {
        (publisher.stats().subscriptions == 2).then_some(())
    });
    let again = rust_msg("after the restart", 20, &[]);
    for d in [&pyl, &rsl] {
        wait_event(d, &tubid, again);
    }
    tub.shutdown();
    for g in [gpl, grl, gpi, gri] {
        g.stop();
    }
}

/// The kitchen sinks' `--log-gatherer-furl`: each offers its logport to our
/// incident gatherer, which subscribes (it prints the node's tubid).
#[test]
fn kitchen_sinks_offer_their_logport() {
    let dir = TempDir::new("kitchen-gatherer");
    let base = dir.path().join("g");
    create(Side::Rust, Kind::Incident, &base, &[]);
    let mut g = Gatherer::start(Side::Rust, &base);
    let furl = g.furl.clone();
    for server in [
        common::process::Server::rust("threads", &["--log-gatherer-furl", &furl]),
        common::process::Server::python(&["--log-gatherer-furl", &furl]),
    ] {
        let tubid = server.furl["pb://".len().."pb://".len() + 32].to_string();
        g.expect_line(|l| l == format!("connected to {tubid}, last known incident is").as_str());
    }
    g.stop();
}

// ------------------------------------------------------------ node side, in-process

/// One `logport` call as a gatherer saw it: (wants an answer, nodeid,
/// publisher's interface name, publisher's FURL).
type Offer = (bool, Vec<u8>, String, String);

/// A gatherer that records each `logport` call.
struct Recorder(std::sync::Mutex<Vec<Offer>>);

impl foolscap::Object for Recorder {
    fn interface(&self) -> &str {
        "RILogGatherer.foolscap.lothar.com"
    }
    fn call(&self, call: foolscap::Call) {
        let nodeid = call
            .arg(0, "nodeid")
            .and_then(|v| v.as_bytes())
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let (iface, furl) = match call.arg(1, "logport").and_then(foolscap::app::as_remote) {
            Some(r) => (
                String::from_utf8_lossy(r.interface()).into_owned(),
                r.furl()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        self.0
            .lock()
            .unwrap()
            .push((call.wants_answer(), nodeid, iface, furl));
        call.answer(foolscap::value::Value::None)
    }
}

/// `set_log_gatherer_furlfile` (one FURL a line, blank lines ignored) and
/// `set_log_gatherer_furl`: nothing before the Tub has a location; then
/// `logport(<tubid bytes>, <publisher announced as RILogPublisher, with
/// the logport's FURL>)` with reqID 0 to each gatherer, and again on every
/// reconnection; a missing furl file means no gatherer; a malformed FURL
/// is refused.
#[test]
fn node_offers_its_logport_once_it_has_a_location_and_after_each_reconnection() {
    use std::sync::Arc;
    let dir = TempDir::new("nodeside");
    let gatherer_tub = foolscap::threads::new_tub().unwrap();
    gatherer_tub.listen("127.0.0.1:0").unwrap();
    let (a, b) = (
        Arc::new(Recorder(Default::default())),
        Arc::new(Recorder(Default::default())),
    );
    let furl_a = gatherer_tub.register(a.clone(), None).unwrap();
    let furl_b = gatherer_tub.register(b.clone(), None).unwrap();
    let furlfile = dir.path().join("gatherers");
    std::fs::write(&furlfile, format!("\n{furl_a}\n\n  {furl_b}  \n\n")).unwrap();

    let node = foolscap::threads::new_tub().unwrap();
    assert!(node.set_log_gatherer_furl(["pb://not-a-furl"]).is_err());
    node.set_log_gatherer_furlfile(&furlfile);
    node.set_log_gatherer_furlfile(dir.path().join("missing"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        a.0.lock().unwrap().is_empty(),
        "offered before the location"
    );
    node.set_location(&["tcp:127.0.0.1:1"]);
    let tubid = node.tubid().to_string();
    let logport = node.logport_furl().unwrap().to_string();
    for r in [&a, &b] {
        wait_for("the logport offer", || {
            (r.0.lock().unwrap().len() == 1).then_some(())
        });
        let got = r.0.lock().unwrap()[0].clone();
        assert_eq!(
            got,
            (
                false,
                tubid.as_bytes().to_vec(),
                "RILogPublisher.foolscap.lothar.com".to_string(),
                logport.clone()
            )
        );
    }
    // the gatherer's Tub stops and comes back (same key, port and names):
    // the node reconnects and offers again
    let port = furl_a.tcp_hints().next().unwrap().1;
    let cert = gatherer_tub.identity().to_cert_file();
    gatherer_tub.shutdown();
    let identity = foolscap::identity::Identity::from_cert_file(cert).unwrap();
    let again = foolscap::threads::tub(identity, foolscap::TubConfig::default()).unwrap();
    again.listen(("127.0.0.1", port)).unwrap();
    let (a2, b2) = (
        Arc::new(Recorder(Default::default())),
        Arc::new(Recorder(Default::default())),
    );
    again.register(a2.clone(), Some(&furl_a.swissnum)).unwrap();
    again.register(b2.clone(), Some(&furl_b.swissnum)).unwrap();
    for r in [&a2, &b2] {
        wait_for("the offer after reconnecting", || {
            (r.0.lock().unwrap().len() == 1).then_some(())
        });
        assert_eq!(r.0.lock().unwrap()[0].3, logport, "the logport FURL stays");
    }
    node.shutdown();
    again.shutdown();
}

// ------------------------------------------------------------ rotation, limits

/// Names of the rotated files of a log gatherer directory.
fn rotated(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("from-") && !n.contains("---to-present"))
        .collect();
    v.sort();
    v
}

/// Checks a rotated file's name: `from-<T0>---to-<T1>.flog[.bz2]` with
/// Python's time format.
fn check_rotated_name(name: &str, bz2: bool) {
    let time = "2026-12-06--15-27-07Z".len();
    let rest = name.strip_prefix("from-").unwrap();
    assert_eq!(&rest[time..time + 6], "---to-", "{name}");
    let suffix = &rest[2 * time + 6..];
    assert_eq!(suffix, if bz2 { ".flog.bz2" } else { ".flog" }, "{name}");
}

/// SIGHUP rotates our log gatherer's file (as Python's): the old file is
/// renamed `from-T0---to-T1.flog` and, with `--bzip`, compressed by the
/// bzip2 program; events after it go to the new file; both read by
/// Python's dump.
#[test]
fn our_log_gatherer_rotates_on_sighup_and_compresses() {
    let dir = TempDir::new("rotate");
    let base = dir.path().join("g");
    create(Side::Rust, Kind::Log, &base, &["--bzip"]);
    let g = Gatherer::start(Side::Rust, &base);
    let mut node = PyNode::start(&[&g.furl], None);
    until_subscribed(&mut node, &base);
    let before = node.command("msg before the rotation");
    wait_event(&base, &node.tubid, before);
    let status = Command::new("kill")
        .args(["-HUP", &g.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let names = wait_for("the rotated file", || {
        let r = rotated(&base);
        (r.len() == 1 && r[0].ends_with(".bz2")).then_some(r)
    });
    check_rotated_name(&names[0], true);
    let old = dump_both(&base.join(&names[0]), &[]);
    assert!(old.contains(": before the rotation\n"), "{old}");
    let after = node.command("msg after the rotation");
    wait_event(&base, &node.tubid, after);
    let new = dump_both(&current_file(&base), &[]);
    assert!(new.contains(": after the rotation\n"), "{new}");
    assert!(!new.contains("before the rotation"), "{new}");
    drop(node);
    g.stop();
}

/// `--rotate=N` in a directory made by Python's create-gatherer: our
/// gatherer reads it from Python's tac and rotates on its own.
#[test]
fn our_log_gatherer_rotates_on_the_timer_of_a_python_tac() {
    let dir = TempDir::new("rotate-timer");
    let base = dir.path().join("g");
    create(Side::Python, Kind::Log, &base, &["--rotate=1"]);
    let g = Gatherer::start(Side::Rust, &base);
    let names = wait_for("two rotations", || {
        let r = rotated(&base);
        (r.len() >= 2).then_some(r)
    });
    for n in &names {
        check_rotated_name(n, false);
        // each holds the magic line and the gatherer header
        let dump = dump_both(&base.join(n), &[]);
        assert_eq!(dump, "\n");
    }
    g.stop();
}

/// A node sending an event bigger than the gatherer's
/// `--max-message-bytes`: that message is discarded, the gatherer lives
/// on and keeps gathering another node's events.
#[test]
fn an_event_over_the_limit_is_discarded_and_the_gatherer_lives_on() {
    let dir = TempDir::new("limits");
    let base = dir.path().join("g");
    create(Side::Rust, Kind::Log, &base, &[]);
    let mut cmd = Command::new(flogtool());
    cmd.args(["run-gatherer", "--max-message-bytes=100000"])
        .arg(&base);
    let mut g = Gatherer::start_command(cmd, &base);
    let mut big = PyNode::start(&[&g.furl], None);
    until_subscribed(&mut big, &base);
    let n = big.command(&format!("msg {}", "x".repeat(400_000)));
    let mut small = PyNode::start(&[&g.furl], None);
    until_subscribed(&mut small, &base);
    let m = small.command("msg still gathering");
    wait_event(&base, &small.tubid, m);
    let text = std::fs::read_to_string(current_file(&base)).unwrap();
    assert!(!text.contains(&"x".repeat(1000)), "the big event was kept");
    assert!(g.child.try_wait().unwrap().is_none(), "the gatherer died");
    let _ = n;
    drop(big);
    drop(small);
    g.expect_line(|l| l.starts_with("Gatherer waiting at"));
    g.stop();
}
