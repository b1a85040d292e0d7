//! `flogtool classify-incident` and `flogtool web-viewer`:
//!
//! * classify-incident prints what Python foolscap 24.9.0's prints (and
//!   exits with its code) for the same incident files and classifier
//!   directory: categories from names, lists and None, classifiers that
//!   print, `-v` details of unknown incidents (failure included), a
//!   classifier that raises, a missing directory, a non-incident file;
//! * without a Python interpreter every incident is `unknown`; a hanging
//!   classifier is killed after the timeout; a flooding one is stopped;
//! * web-viewer serves pages whose content matches the file's events
//!   (Python-written files: the reference captures and one written now by
//!   Python's FLOGFILE), escapes what it shows, and refuses oversized or
//!   stalled requests without blocking other clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use foolscap_logging::value::{Dict, Value};
use foolscap_logging::{files, format_message, Event, ReadLimits};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flogfiles")
}

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = Command::new("bash")
        .arg(root.join("scripts/python-env.sh"))
        .output()
        .expect("run scripts/python-env.sh");
    assert!(env.status.success(), "scripts/python-env.sh failed");
    let python = String::from_utf8(env.stdout).expect("utf-8");
    PathBuf::from(python.lines().last().expect("python path").trim())
}

fn ours() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flogtool"))
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flogview-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

fn run_in(dir: &Path, tool: &Path, args: &[&str], envs: &[(&str, &OsStr)]) -> Output {
    let mut c = Command::new(tool);
    c.args(args).current_dir(dir).env("TZ", "UTC");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()))
}

use std::ffi::OsStr;

/// An incident file written by our writer with this trigger.
fn write_incident(path: &Path, trigger: Dict) {
    let mut w = files::create_bz2(path).expect("create");
    let mut h = Dict::new();
    h.insert("trigger", trigger.clone());
    h.insert("pid", 77);
    w.write_header("incident", &h).expect("header");
    w.write_event(&Event(trigger), "local", 1.5).expect("event");
    w.finish().expect("finish").finish().expect("finish");
}

fn trigger(num: u64, level: i64, message: &str) -> Dict {
    Event::new(num, 1_700_000_000.25, level, "0123456789abcdef", message).0
}

/// The incident files and the classifier directory of the classify tests.
fn classify_setup(dir: &Path) -> Vec<String> {
    std::fs::copy(data().join("21-incident.flog.bz2"), dir.join("py.flog.bz2")).expect("copy");
    write_incident(
        &dir.join("disk.flog.bz2"),
        trigger(1, 30, "disk full on /var"),
    );
    write_incident(&dir.join("net.flog.bz2"), trigger(2, 40, "net down"));
    let mut odd = trigger(3, 23, "caf\u{e9} <odd> \"quoted\"");
    odd.insert("format", "%(message)s with %(extra)r");
    odd.insert("extra", Value::List(vec![1.into(), "x".into()]));
    odd.insert(
        "failure",
        "Traceback (most recent call last):\n  boom\nValueError: bad",
    );
    write_incident(&dir.join("odd.flog.bz2"), odd);
    let cls = dir.join("cls");
    std::fs::create_dir_all(&cls).expect("mkdir");
    std::fs::write(
        cls.join("classify_disk.py"),
        "def classify_incident(trigger):\n    \
             if 'disk' in trigger.get('message', ''):\n        return 'disk'\n",
    )
    .expect("write");
    std::fs::write(
        cls.join("classify_levels.py"),
        "print('loading levels')\n\
         def classify_incident(trigger):\n    \
             print('looking at', trigger['num'])\n    \
             if trigger['level'] >= 40:\n        return ['bad', 'alert']\n    \
             if trigger['level'] == 30:\n        return ['weird']\n    \
             return []\n",
    )
    .expect("write");
    std::fs::write(
        cls.join("helper.py"),
        "raise SystemExit('not a classifier')\n",
    )
    .expect("w");
    [
        "py.flog.bz2",
        "disk.flog.bz2",
        "net.flog.bz2",
        "odd.flog.bz2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn same(dir: &Path, args: &[&str]) -> Output {
    let py = python();
    let flogtool = py.with_file_name("flogtool");
    let theirs = run_in(dir, &flogtool, args, &[]);
    let mine = run_in(dir, ours(), args, &[("FLOGTOOL_PYTHON", py.as_os_str())]);
    assert_eq!(
        String::from_utf8_lossy(&mine.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "stdout of {args:?}; ours' stderr: {}",
        String::from_utf8_lossy(&mine.stderr)
    );
    assert_eq!(
        mine.status.code(),
        theirs.status.code(),
        "exit code of {args:?}"
    );
    mine
}

#[test]
fn classify_matches_python() {
    let dir = tempdir("classify");
    let files = classify_setup(&dir);
    let f: Vec<&str> = files.iter().map(String::as_str).collect();
    let mut args = vec!["classify-incident", "-c", "cls"];
    args.extend(&f);
    let out = same(&dir, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("disk.flog.bz2: disk,weird\n"), "{text}");
    assert!(text.contains("net.flog.bz2: alert,bad\n"), "{text}");
    assert!(text.contains("odd.flog.bz2: unknown\n"), "{text}");
    assert!(text.starts_with("loading levels\n"), "{text}");
    // -v: details of the unknown ones (failure, non-ASCII, format)
    let mut args = vec!["classify-incident", "-v", "--classifier-directory=cls"];
    args.extend(&f);
    let out = same(&dir, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" FAILURE:\n Traceback"), "{text}");
    // no classifiers at all (the directory holds none): all unknown, with -v
    let mut args = vec!["classify-incident", "-v"];
    args.extend(&f);
    same(&dir, &args);
    // no files
    same(&dir, &["classify-incident", "-c", "cls"]);
}

#[test]
fn classify_failures_match_python() {
    let dir = tempdir("classify-fail");
    let files = classify_setup(&dir);
    let crash = dir.join("crash");
    std::fs::create_dir_all(&crash).expect("mkdir");
    std::fs::write(
        crash.join("classify_crash.py"),
        "def classify_incident(trigger):\n    \
             print('about to fail on', trigger['num'])\n    \
             if trigger['num'] == 2:\n        raise ValueError('no')\n    return 'fine'\n",
    )
    .expect("write");
    let f: Vec<&str> = files.iter().map(String::as_str).collect();
    let mut args = vec!["classify-incident", "-c", "crash"];
    args.extend(&f);
    let out = same(&dir, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ValueError: no"));
    // a missing directory, a file that is no incident, a missing file
    let out = same(&dir, &["classify-incident", "-c", "nowhere", "py.flog.bz2"]);
    assert_eq!(out.status.code(), Some(1));
    let plain = data().join("19-tail.flog");
    let plain = plain.to_str().expect("utf-8 path");
    let out = same(
        &dir,
        &["classify-incident", "-c", "cls", "py.flog.bz2", plain],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = same(
        &dir,
        &[
            "classify-incident",
            "-c",
            "cls",
            "disk.flog.bz2",
            "gone.flog.bz2",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn classify_without_python_says_unknown() {
    let dir = tempdir("classify-nopy");
    let files = classify_setup(&dir);
    let mut args = vec!["classify-incident", "-c", "cls"];
    args.extend(files.iter().map(String::as_str));
    let out = run_in(
        &dir,
        ours(),
        &args,
        &[("FLOGTOOL_PYTHON", OsStr::new("/nonexistent/python3"))],
    );
    assert_eq!(out.status.code(), Some(0));
    let want: String = files.iter().map(|f| format!("{f}: unknown\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert!(String::from_utf8_lossy(&out.stderr).contains("every incident is unknown"));
}

#[test]
fn hanging_or_flooding_classifiers_are_stopped() {
    let dir = tempdir("classify-hang");
    classify_setup(&dir);
    let py = python();
    for (name, body, expect) in [
        (
            "hang",
            "import time\ndef classify_incident(t):\n    time.sleep(3600)\n",
            "did not answer",
        ),
        (
            "flood",
            "import sys\ndef classify_incident(t):\n    sys.stderr.write('x' * 5000000)\n    return 'a'\n",
            "more than",
        ),
    ] {
        let cls = dir.join(name);
        std::fs::create_dir_all(&cls).expect("mkdir");
        std::fs::write(cls.join("classify_x.py"), body).expect("write");
        let cls = cls.to_str().expect("utf-8");
        let out = run_in(
            &dir,
            ours(),
            &["classify-incident", "-c", cls, "disk.flog.bz2"],
            &[
                ("FLOGTOOL_PYTHON", py.as_os_str()),
                ("FLOGTOOL_CLASSIFY_TIMEOUT", OsStr::new("2")),
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{name}: {err}");
    }
}

/// A running web viewer, killed on drop.
struct Viewer {
    child: Child,
    port: u16,
    said: Vec<String>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn viewer(file: &Path, extra: &[&str]) -> Viewer {
    // with -q the viewer prints no URL: give it a free port; viewers start
    // one at a time, so that no other one is handed that port meanwhile
    static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let quiet = extra.contains(&"-q");
    let _one_at_a_time = PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let port_arg = if quiet {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        Some(format!("--port=tcp:{p}:interface=127.0.0.1"))
    } else {
        None
    };
    let mut child = Command::new(ours())
        .arg("web-viewer")
        .args(extra)
        .args(&port_arg)
        .arg(file)
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn web-viewer");
    let mut r = BufReader::new(child.stdout.take().expect("stdout"));
    let mut said = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read") == 0 {
            break;
        }
        said.push(line.trim_end().to_string());
        if line.starts_with("http://") || (quiet && line.starts_with("starting..")) {
            break;
        }
    }
    let port = match &port_arg {
        Some(a) => {
            let p: u16 = a["--port=tcp:".len()..]
                .split(':')
                .next()
                .expect("port")
                .parse()
                .expect("port");
            // it is listening once it has loaded the file
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    child.try_wait().expect("wait").is_none(),
                    "viewer ended: {said:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            p
        }
        None => said
            .last()
            .expect("url")
            .trim_start_matches("http://localhost:")
            .trim_end_matches('/')
            .parse()
            .expect("port"),
    };
    Viewer { child, port, said }
}

/// (status line, body) of one request.
fn http(port: u16, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let answer = String::from_utf8(answer).expect("utf-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn get(port: u16, path: &str) -> String {
    let (status, body) = http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "GET {path}: {body}");
    body
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// The event dicts of a flogfile.
fn events(file: &Path) -> Vec<Dict> {
    files::open(file, ReadLimits::default())
        .expect("open")
        .filter_map(|r| match r.expect("record") {
            Value::Dict(mut r) => match r.remove("d") {
                Some(Value::Dict(d)) => Some(d),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn num(d: &Dict) -> i64 {
    d.get("num").and_then(Value::as_i64).expect("num")
}

/// The event numbers of a page, in order (from `">N</a></span>]`).
fn numbers_on(page: &str) -> Vec<i64> {
    page.split("</a></span>]")
        .filter_map(|part| part.rsplit('>').next()?.parse().ok())
        .collect()
}

/// Every page of a viewer on `file` agrees with the file's events.
fn check_pages(file: &Path) {
    let evs = events(file);
    let v = viewer(file, &["-t", "utc"]);
    assert_eq!(
        v.said[..3],
        ["starting..", "scanning..", "please point your browser at:"]
    );
    let front = get(v.port, "/");
    assert!(
        front.contains(&format!("<li>{} events covering", evs.len())),
        "{front}"
    );
    let mut levels = std::collections::BTreeMap::<i64, Vec<i64>>::new();
    for d in &evs {
        let l = d.get("level").and_then(Value::as_i64).unwrap_or(20);
        levels.entry(l).or_default().push(num(d));
    }
    for (l, nums) in &levels {
        assert!(
            front.contains(&format!(
                "<a href=\"/summary/0-{l}?timestamps=utc\">{} events</a> at level {l}",
                nums.len()
            )),
            "level {l}: {front}"
        );
        let page = get(v.port, &format!("/summary/0-{l}"));
        assert_eq!(&numbers_on(&page), nums, "summary of level {l}");
    }
    let mut by_num: Vec<i64> = evs.iter().map(num).collect();
    by_num.sort();
    for sort in ["nested", "number", "time"] {
        let page = get(v.port, &format!("/all-events?sort={sort}&timestamps=utc"));
        for d in &evs {
            let text = format_message(d).expect("format");
            assert!(page.contains(&escape(&text)), "{sort}: {text:?} missing");
        }
        let mut on = numbers_on(&page);
        assert_eq!(on.len(), evs.len(), "{sort}: every event once");
        if sort == "number" {
            assert_eq!(on, by_num);
        }
        if sort == "time" {
            let mut by_time: Vec<&Dict> = evs.iter().collect();
            by_time.sort_by(|a, b| {
                let t = |d: &Dict| d.get("time").and_then(Value::as_f64).unwrap_or(0.0);
                t(a).total_cmp(&t(b))
            });
            assert_eq!(on, by_time.iter().map(|d| num(d)).collect::<Vec<_>>());
        }
        on.sort();
        assert_eq!(on, by_num, "{sort}");
    }
    // the nested page puts each child, one level deeper, after its parent
    let nested = get(v.port, "/all-events?sort=nested");
    let depth_of = |n: i64| -> usize {
        let line = nested
            .lines()
            .find(|l| l.contains(&format!(">{n}</a></span>]")))
            .expect("event line");
        line.len() - line.trim_start_matches(' ').len()
    };
    for d in &evs {
        if let Some(p) = d.get("parent").and_then(Value::as_i64) {
            if evs.iter().any(|e| num(e) == p) {
                assert_eq!(depth_of(num(d)), depth_of(p) + 1, "child {}", num(d));
            }
        }
    }
    let css = get(v.port, "/flog.css");
    assert!(css.contains("span.BAD"));
    let (status, _) = http(v.port, "POST /reload HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 303 See Other");
    assert_eq!(get(v.port, "/"), front, "reloaded: same summary");
}

#[test]
fn web_viewer_pages_match_reference_files() {
    for f in [
        "21-incident.flog.bz2",
        "19-tail.flog",
        "21-gatherer.flog",
        "env-flogfile.flog",
    ] {
        check_pages(&data().join(f));
    }
    // the incident trigger is listed on the front page
    let v = viewer(&data().join("21-incident.flog.bz2"), &["-q"]);
    assert_eq!(v.said, ["starting.."]);
    let front = get(v.port, "/");
    assert!(
        front.contains("something WEIRD happened [INCIDENT-TRIGGER]"),
        "{front}"
    );
    assert!(front.contains("<li>PID 1689</li>"), "{front}");
    assert!(front.contains("<li>foolscap: 24.9.0</li>"), "{front}");
}

#[test]
fn web_viewer_reads_a_file_python_writes_now() {
    let dir = tempdir("web-python");
    let file = dir.join("py.flog");
    let script = "from foolscap.logging import log\n\
        from twisted.internet import reactor\n\
        p = log.msg('root <b>&amp;', level=log.UNUSUAL)\n\
        c = log.msg('child \\'\"', parent=p)\n\
        log.msg('grandchild %s', args=('<x>',), parent=c, level=log.NOISY)\n\
        log.msg(format='fmt %(n)d <i>', n=3, level=log.BAD)\n\
        log.msg('sibling', parent=p, failure=None)\n\
        reactor.callLater(0.2, reactor.stop)\n\
        reactor.run()\n";
    let out = Command::new(python())
        .args(["-c", script])
        .env("FLOGFILE", &file)
        .env("FLOGLEVEL", "10")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(events(&file).len(), 5, "python wrote the events");
    check_pages(&file);
    let v = viewer(&file, &[]);
    let page = get(v.port, "/all-events");
    assert!(page.contains("root &lt;b&gt;&amp;amp;"), "{page}");
    assert!(!page.contains("<b>&amp;"), "unescaped: {page}");
    // a JSON list as args is one argument (Python reads it back so)
    assert!(
        page.contains("grandchild [&#x27;&lt;x&gt;&#x27;]"),
        "{page}"
    );
    assert!(
        page.contains("UNUSUAL root"),
        "level name shown at UNUSUAL and above"
    );
}

#[test]
fn web_viewer_refuses_bad_requests_and_stays_available() {
    let v = viewer(&data().join("19-tail.flog"), &[]);
    // a client that sends nothing does not stop others
    let idle = TcpStream::connect(("127.0.0.1", v.port)).expect("connect");
    let _ = get(v.port, "/");
    // oversized request line and headers
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    assert!(http(v.port, &long).0.starts_with("HTTP/1.1 431"));
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    assert!(http(v.port, &format!("GET / HTTP/1.1\r\n{many}\r\n"))
        .0
        .starts_with("HTTP/1.1 431"));
    assert!(http(v.port, "NONSENSE\r\n\r\n")
        .0
        .starts_with("HTTP/1.1 400"));
    assert!(http(v.port, "GET /nope HTTP/1.1\r\n\r\n")
        .0
        .starts_with("HTTP/1.1 404"));
    assert!(http(v.port, "GET /reload HTTP/1.1\r\n\r\n")
        .0
        .starts_with("HTTP/1.1 405"));
    assert!(http(v.port, "GET /summary/9-20 HTTP/1.1\r\n\r\n")
        .0
        .starts_with("HTTP/1.1 404"));
    assert!(http(v.port, "GET /?timestamps=bogus HTTP/1.1\r\n\r\n")
        .0
        .starts_with("HTTP/1.1 400"));
    drop(idle);
    let _ = get(v.port, "/all-events?sort=time");
}

#[test]
fn web_viewer_caps_connections() {
    let v = viewer(&data().join("19-tail.flog"), &[]);
    // MAX_CONNECTIONS (32) silent clients hold every slot
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(("127.0.0.1", v.port)).expect("connect"))
        .collect();
    // the server takes them in order: once one more is refused, all are in
    let mut refused = false;
    for _ in 0..200 {
        let (status, _) = http(v.port, "GET / HTTP/1.1\r\n\r\n");
        if status.starts_with("HTTP/1.1 503") {
            refused = true;
            break;
        }
        assert_eq!(status, "HTTP/1.1 200 OK");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(refused, "a 33rd connection is refused while 32 are open");
    drop(idle);
    // the slots come back when the idle clients go
    let mut served = false;
    for _ in 0..500 {
        if http(v.port, "GET / HTTP/1.1\r\n\r\n").0 == "HTTP/1.1 200 OK" {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(served);
}

#[test]
fn web_viewer_open_uses_browser_or_says_none() {
    let dir = tempdir("web-open");
    let file = data().join("19-tail.flog");
    // without BROWSER: a notice, and the server runs
    let mut child = Command::new(ours())
        .args(["web-viewer", "-o"])
        .arg(&file)
        .env_remove("BROWSER")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut r = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    for _ in 0..5 {
        let mut l = String::new();
        r.read_line(&mut l).expect("read");
        lines.push(l);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines[4].starts_with("no browser configured"), "{lines:?}");
    // with BROWSER: it is run with the URL
    let script = dir.join("browser.sh");
    let got = dir.join("got-url");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" > {}\n", got.display()),
    )
    .expect("w");
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    let mut child = Command::new(ours())
        .args(["web-viewer", "-o"])
        .arg(&file)
        .env("BROWSER", &script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut r = BufReader::new(child.stdout.take().expect("stdout"));
    let mut url = String::new();
    while !url.starts_with("http://") {
        url.clear();
        assert!(r.read_line(&mut url).expect("read") > 0);
    }
    let mut seen = String::new();
    for _ in 0..500 {
        seen = std::fs::read_to_string(&got).unwrap_or_default();
        if seen.ends_with('\n') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen, url);
}

/// Python's own web viewer on `file`: (child, port).
fn python_viewer(file: &Path) -> (Viewer, u16) {
    let mut child = Command::new(python().with_file_name("flogtool"))
        .arg("web-viewer")
        .arg(file)
        .env("TZ", "UTC")
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn Python's web-viewer");
    let mut r = BufReader::new(child.stdout.take().expect("stdout"));
    let mut said = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("read") > 0,
            "Python's viewer ended: {said:?}"
        );
        said.push(line.trim_end().to_string());
        if line.starts_with("http://") {
            break;
        }
    }
    let port = said[said.len() - 1]
        .trim_start_matches("http://localhost:")
        .trim_end_matches('/')
        .parse()
        .expect("port");
    (Viewer { child, port, said }, port)
}

/// What both viewers' front pages must agree on: the pid, the count and
/// span line, and (count, level) per level.
fn front_facts(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with("<li>PID") || l.contains("events covering") {
                return Some(l.to_string());
            }
            let (count, rest) = l.split_once(" events</a> at level ")?;
            let count = count.rsplit('>').next()?;
            let level = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            Some(format!("{count} at {level}"))
        })
        .collect()
}

/// The nested event list: (indent, number, text) per event line.
fn nested_lines(page: &str) -> Vec<(usize, i64, String)> {
    page.lines()
        .filter(|l| l.contains("</a></span>]: "))
        .map(|l| {
            let indent = l.len() - l.trim_start_matches(' ').len();
            let n = numbers_on(l)[0];
            let text = l.split_once("</a></span>]: ").expect("text").1;
            let text = text.trim_end_matches("</span></li>");
            // Python shows a failure as the repr of its stored dict, we
            // show its text: compare up to there
            let text = text
                .split(" FAILURE:<pre>")
                .next()
                .unwrap_or("")
                .to_string();
            (indent, n, text)
        })
        .collect()
}

#[test]
fn web_viewer_agrees_with_pythons_viewer() {
    for f in ["env-flogfile.flog", "19-tail.flog", "21-incident.flog.bz2"] {
        let file = data().join(f);
        let (py, py_port) = python_viewer(&file);
        let ours = viewer(&file, &[]);
        assert_eq!(ours.said[..3], py.said[..3], "{f}: what they print");
        let theirs = get(py_port, "/");
        let mine = get(ours.port, "/");
        assert_eq!(front_facts(&mine), front_facts(&theirs), "{f}: front page");
        assert!(!front_facts(&mine).is_empty());
        // Python's viewer (on Python 3) serves the nested view whatever
        // the arguments: compare that
        let theirs = get(py_port, "/all-events");
        let mine = get(ours.port, "/all-events");
        let roots = |p: &str| {
            p.lines()
                .find(|l| l.contains(" root events"))
                .map(|l| l.split(' ').next().unwrap_or("").to_string())
        };
        assert_eq!(roots(&mine), roots(&theirs), "{f}: root events");
        assert_eq!(
            nested_lines(&mine),
            nested_lines(&theirs),
            "{f}: the nested events"
        );
        if f == "19-tail.flog" {
            assert!(mine.contains(
                " FAILURE:<pre>[CopiedFailure instance: Traceback from remote host -- Traceback"
            ));
        }
    }
}
