//! Remote calls per second, every client/server pair in one run:
//!
//! | client | server |
//! |--------|--------|
//! | Rust (blocking driver, this process) | Rust (blocking driver, this process) |
//! | Rust | Python (`benches/calls_python.py serve`) |
//! | Python (`calls_python.py client`) | Rust |
//! | Python | Python |
//!
//! Rows: `sequential` (one `add(1, 2)` at a time), `inflight` (100
//! `add(1, 2)` outstanding at all times) and `echo` (sequential echo of
//! 1 MiB of bytes, MiB/s one way). Every answer is checked. The table
//! gives each figure and its ratio to Python -> Python.
//!
//! `cargo bench --bench calls [-- SECONDS]` (default 3 s per row;
//! `cargo test --benches` runs a short smoke pass).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use foolscap::blocking::{Call, Object, Tub};
use foolscap::value::{RemoteRef, Value};

const INFLIGHT: usize = 100;
const ECHO_BYTES: usize = 1 << 20;
const T: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/python-env.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/python-env.sh");
    assert!(out.status.success(), "scripts/python-env.sh failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    PathBuf::from(text.lines().last().expect("python path").trim())
}

/// The benchmark object: `echo(x)` and `add(a, b)`.
struct Bench;

impl Object for Bench {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "echo" => {
                let x = call.arg(0, "x").cloned().unwrap_or(Value::None);
                call.answer(x)
            }
            "add" => {
                let a = call.arg(0, "a").and_then(Value::as_i64).unwrap_or(0);
                let b = call.arg(1, "b").and_then(Value::as_i64).unwrap_or(0);
                call.answer(Value::int(a + b))
            }
            _ => call.no_such_method("Bench"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    sequential: f64,
    inflight: f64,
    echo_mib: f64,
}

fn rust_client(furl: &str, secs: f64) -> Rates {
    let tub = Tub::new().expect("tub");
    let target = match tub.get_reference(furl, T).expect("connect") {
        Value::Remote(r) => r,
        other => panic!("not remote: {other:?}"),
    };
    let add = |tub: &Tub, r: &RemoteRef| {
        let v = tub
            .call(r, "add", &[Value::int(1), Value::int(2)], &[], T)
            .expect("add");
        assert_eq!(v, Value::int(3));
    };
    for _ in 0..200 {
        add(&tub, &target);
    }
    let dur = Duration::from_secs_f64(secs);
    // sequential
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        add(&tub, &target);
        n += 1;
    }
    let sequential = n as f64 / t0.elapsed().as_secs_f64();
    // in flight: each answer issues the next call until time is up
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    fn issue(
        tub: Tub,
        target: RemoteRef,
        done: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        tx: mpsc::Sender<()>,
    ) {
        let (t2, r2) = (tub.clone(), target.clone());
        tub.call_async(
            &target,
            "add",
            &[Value::int(1), Value::int(2)],
            &[],
            move |r| {
                assert_eq!(r.expect("add"), Value::int(3));
                done.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    let _ = tx.send(());
                } else {
                    issue(t2, r2, done, stop, tx);
                }
            },
        )
        .expect("call");
    }
    let t0 = Instant::now();
    for _ in 0..INFLIGHT {
        issue(
            tub.clone(),
            target.clone(),
            done.clone(),
            stop.clone(),
            tx.clone(),
        );
    }
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for _ in 0..INFLIGHT {
        rx.recv_timeout(T).expect("in-flight calls drain");
    }
    let inflight = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    // echo 1 MiB
    let payload = Value::bytes(&vec![b'x'; ECHO_BYTES]);
    tub.call(&target, "echo", std::slice::from_ref(&payload), &[], T)
        .expect("echo");
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        let back = tub
            .call(&target, "echo", std::slice::from_ref(&payload), &[], T)
            .expect("echo");
        assert!(back == payload);
        n += 1;
    }
    let echo_mib = n as f64 * ECHO_BYTES as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64();
    tub.shutdown();
    Rates {
        sequential,
        inflight,
        echo_mib,
    }
}

fn python_client(py: &Path, furl: &str, secs: f64) -> Rates {
    let out = Command::new(py)
        .arg(root().join("benches/calls_python.py"))
        .args(["client", furl, "--seconds", &secs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run calls_python.py client");
    assert!(out.status.success(), "calls_python.py client failed");
    let mut r = Rates::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let j: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let rate = j["calls_per_s"].as_f64().unwrap_or(0.0);
        match j["row"].as_str() {
            Some("sequential") => r.sequential = rate,
            Some("inflight") => r.inflight = rate,
            Some("echo") => r.echo_mib = j["mib_per_s"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    r
}

struct PyServer {
    child: Child,
    furl: String,
    dir: PathBuf,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn python_server(py: &Path) -> PyServer {
    let dir = std::env::temp_dir().join(format!("foolscap-rs-calls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let furlfile = dir.join("furl");
    let child = Command::new(py)
        .arg(root().join("benches/calls_python.py"))
        .arg("serve")
        .arg(&furlfile)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start calls_python.py serve");
    let mut server = PyServer {
        child,
        furl: String::new(),
        dir,
    };
    let deadline = Instant::now() + T;
    loop {
        if let Ok(text) = std::fs::read_to_string(&furlfile) {
            if !text.trim().is_empty() {
                server.furl = text.trim().to_owned();
                return server;
            }
        }
        // (dropping `server` kills the process)
        assert!(Instant::now() < deadline, "Python server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test" || a == "--list")
        || !std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if smoke { 0.2 } else { 3.0 });
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let py = python();
    let server = Tub::new().expect("tub");
    server.listen("127.0.0.1:0").expect("listen");
    let rust_furl = server
        .register(Arc::new(Bench), Some("kitchen-sink"))
        .expect("register")
        .to_string();
    let pys = python_server(&py);

    let rows = [
        ("Rust -> Rust", rust_client(&rust_furl, secs)),
        ("Rust -> Python", rust_client(&pys.furl, secs)),
        ("Python -> Rust", python_client(&py, &rust_furl, secs)),
        ("Python -> Python", python_client(&py, &pys.furl, secs)),
    ];
    let base = rows[3].1;
    println!(
        "{:<18} {:>14} {:>8} {:>16} {:>8} {:>14} {:>8}",
        "client -> server",
        "sequential/s",
        "ratio",
        "100 in flight/s",
        "ratio",
        "echo MiB/s",
        "ratio"
    );
    for (name, r) in &rows {
        println!(
            "{:<18} {:>14.0} {:>7.1}x {:>16.0} {:>7.1}x {:>14.1} {:>7.1}x",
            name,
            r.sequential,
            r.sequential / base.sequential,
            r.inflight,
            r.inflight / base.inflight,
            r.echo_mib,
            r.echo_mib / base.echo_mib,
        );
    }
    server.shutdown();
}
