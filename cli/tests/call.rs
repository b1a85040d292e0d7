//! `foolscap call` on every engine (`--driver mio`, the default,
//! `--driver threads` and `--driver tokio`) against the Python kitchen-sink server
//! (`tests/interop/kitchen_sink.py`, foolscap 24.9.0) and against our own
//! (`examples/kitchen_sink.rs`, run on the same engine as the client):
//! answers printed as Python literals, keyword arguments, remote failures
//! (exit status 1, Python's type and message on stderr) and connection
//! problems (exit status 2). Python comes from `scripts/python-env.sh`;
//! without it these tests fail, they never skip.

use std::process::{Command, Stdio};

#[path = "../../tests/common/process.rs"]
mod process;

use process::Server;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `foolscap call --driver DRIVER --timeout 60 FURL ARGS...`
fn call(driver: &str, furl: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_foolscap"))
        .args(["call", "--driver", driver, "--timeout", "60", furl])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run foolscap call");
    Run {
        code: out.status.code().expect("an exit status"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn answers(driver: &str, furl: &str, args: &[&str], want: &str) {
    let r = call(driver, furl, args);
    assert_eq!(
        (r.code, r.stdout.trim_end()),
        (0, want),
        "foolscap call --driver {driver} {args:?}: stderr {}",
        r.stderr
    );
}

fn fails_remotely(driver: &str, furl: &str, args: &[&str], want: &str) {
    let r = call(driver, furl, args);
    assert_eq!(
        r.code, 1,
        "foolscap call --driver {driver} {args:?} should fail remotely: stdout {:?}, stderr {:?}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains(want),
        "foolscap call --driver {driver} {args:?}: stderr {:?} lacks {want:?}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "stdout {:?}", r.stdout);
}

/// What every server answers the same way, Python's or ours.
fn check_calls(driver: &str, server: &Server) {
    let furl = server.furl.as_str();
    answers(driver, furl, &["add", "1", "2"], "3");
    answers(
        driver,
        furl,
        &["add", "18446744073709551616", "-1"],
        "18446744073709551615",
    );
    answers(
        driver,
        furl,
        &["echo", "{'k': [1, b'x', 2.5, None, (True,)]}"],
        "{'k': [1, b'x', 2.5, None, (True,)]}",
    );
    answers(
        driver,
        furl,
        &["echo_args", "1", "name='x'"],
        "[[1], {'name': 'x'}]",
    );
    // an answer given later, from a timer
    answers(driver, furl, &["sleep", "0.2"], "None");
    // a copyable of a type the tool never registered: it accepts any
    answers(
        driver,
        furl,
        &["point", "1", "2"],
        "<copyable 'kitchen-sink.Point' {'x': 1, 'y': 2}>",
    );
    fails_remotely(
        driver,
        furl,
        &["fail", "'boom'"],
        "builtins.ValueError: boom",
    );
    fails_remotely(driver, furl, &["divzero"], "builtins.ZeroDivisionError");
    fails_remotely(
        driver,
        furl,
        &["fail_later", "'late'", "seconds=0.1"],
        "builtins.KeyError: 'late'",
    );
    fails_remotely(driver, furl, &["no_such_method"], "AttributeError");
    // a bad argument is refused before connecting
    let r = call(driver, furl, &["add", "[1,"]);
    assert_eq!(r.code, 2, "stderr {:?}", r.stderr);
    // a wrong swissnum: the lookup fails, a connection problem
    let wrong = format!("{}-nope", furl);
    let r = call(driver, &wrong, &["add", "1", "2"]);
    assert_eq!(r.code, 2, "stderr {:?}", r.stderr);
}

/// Nobody listens on the FURL's port: exit status 2, not a hang.
fn check_refused(driver: &str) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let furl = format!("pb://dzhnbzw6xbgcdwlmb66quvxw4ftl3sye@tcp:127.0.0.1:{port}/x");
    let r = call(driver, &furl, &["add", "1", "2"]);
    assert_eq!(r.code, 2, "stdout {:?}, stderr {:?}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty());
}

#[test]
fn call_mio_against_the_python_server() {
    check_calls("mio", &Server::python(&[]));
}

#[test]
fn call_threads_against_the_python_server() {
    check_calls("threads", &Server::python(&[]));
}

#[test]
fn call_mio_against_the_rust_mio_server() {
    check_calls("mio", &Server::rust("mio", &[]));
}

#[test]
fn call_threads_against_the_rust_threads_server() {
    check_calls("threads", &Server::rust("threads", &[]));
}

#[test]
fn call_mio_against_the_rust_threads_server() {
    let server = Server::rust("threads", &[]);
    answers("mio", &server.furl, &["add", "1", "2"], "3");
    fails_remotely(
        "mio",
        &server.furl,
        &["fail", "'x'"],
        "builtins.ValueError: x",
    );
}

#[test]
fn call_threads_against_the_rust_mio_server() {
    let server = Server::rust("mio", &[]);
    answers("threads", &server.furl, &["add", "1", "2"], "3");
    fails_remotely(
        "threads",
        &server.furl,
        &["fail", "'x'"],
        "builtins.ValueError: x",
    );
}

#[test]
fn call_tokio_against_the_python_server() {
    check_calls("tokio", &Server::python(&[]));
}

#[test]
fn call_tokio_against_the_rust_tokio_server() {
    check_calls("tokio", &Server::rust("tokio", &[]));
}

#[test]
fn call_tokio_against_the_rust_mio_server() {
    let server = Server::rust("mio", &[]);
    answers("tokio", &server.furl, &["add", "1", "2"], "3");
    fails_remotely(
        "tokio",
        &server.furl,
        &["fail", "'x'"],
        "builtins.ValueError: x",
    );
}

#[test]
fn call_mio_against_the_rust_tokio_server() {
    let server = Server::rust("tokio", &[]);
    answers("mio", &server.furl, &["add", "1", "2"], "3");
    fails_remotely(
        "mio",
        &server.furl,
        &["fail", "'x'"],
        "builtins.ValueError: x",
    );
}

#[test]
fn call_tokio_connection_refused_is_a_connection_problem() {
    check_refused("tokio");
}

#[test]
fn call_tokio_records_a_transcript() {
    check_record("tokio");
}

#[test]
fn call_mio_connection_refused_is_a_connection_problem() {
    check_refused("mio");
}

#[test]
fn call_threads_connection_refused_is_a_connection_problem() {
    check_refused("threads");
}

#[test]
fn call_defaults_to_mio_and_refuses_unknown_drivers() {
    let help = Command::new(env!("CARGO_BIN_EXE_foolscap"))
        .args(["call", "--help"])
        .output()
        .expect("run foolscap call --help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--driver"), "{text}");
    assert!(text.contains("[default: mio]"), "{text}");
    let r = Command::new(env!("CARGO_BIN_EXE_foolscap"))
        .args(["call", "--driver", "smoke-signals", "pb://x@tcp:h:1/s", "m"])
        .output()
        .expect("run foolscap call");
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("possible values: mio, threads, tokio"));
}

/// `--record FILE` writes the session in the transcript format: one
/// connection with its real addresses, the plaintext upgrade, then the
/// decrypted stream carrying the call.
fn check_record(driver: &str) {
    use foolscap_replay::{Phase, Side, Transcript};

    let server = Server::python(&[]);
    let dir = process::TempDir::new("call-record");
    let file = dir.path().join("session.txt");
    let file_arg = file.to_str().expect("utf-8 path");
    let r = call(
        driver,
        &server.furl,
        &["--record", file_arg, "add", "1", "2"],
    );
    assert_eq!((r.code, r.stdout.trim_end()), (0, "3"), "{}", r.stderr);
    let t = Transcript::parse(&std::fs::read(&file).expect("a transcript")).unwrap();
    assert_eq!(t.connections.len(), 1, "{t:?}");
    let c = &t.connections[0];
    let port = server
        .furl
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap();
    assert_eq!(c.server, format!("127.0.0.1:{port}"));
    assert!(c.client.starts_with("127.0.0.1:"), "{c:?}");
    let get = t.stream(c.number, Side::Client, Phase::Plain);
    assert!(get.starts_with(b"GET /id/"), "{get:?}");
    let ok = t.stream(c.number, Side::Server, Phase::Plain);
    assert!(ok.starts_with(b"HTTP/1.1 101 "), "{ok:?}");
    let calls = t.stream(c.number, Side::Client, Phase::Tls);
    let has = |s: &[u8], w: &[u8]| s.windows(w.len()).any(|x| x == w);
    assert!(has(&calls, b"getReferenceByName") && has(&calls, b"add"));
}

#[test]
fn call_mio_records_a_transcript() {
    check_record("mio");
}

#[test]
fn call_threads_records_a_transcript() {
    check_record("threads");
}
