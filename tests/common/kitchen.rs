//! The kitchen-sink servers (Rust example and Python twin) as child
//! processes, the Python checker, and the same checks made by a Rust
//! client through the blocking driver.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foolscap::blocking::{Call, Error, Object, Tub};
use foolscap::broker::{CallError, Failure};
use foolscap::value::{literal, Text, Value};
use serde_json::Value as Json;

use super::{encode, python, repo_root, run_script_json, vocab};

/// Generous per-call limit: CI machines are slow and shared.
pub const T: Duration = Duration::from_secs(60);

/// A kitchen-sink server process, killed on drop.
pub struct Server {
    child: Child,
    pub furl: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "foolscap-rs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The example binary, built once per test run in this test's profile
/// (`cargo test --all-targets` compiles examples only as test harnesses).
pub fn example_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root()).args([
            "build",
            "-q",
            "-p",
            "foolscap",
            "--example",
            "kitchen_sink",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build --example kitchen_sink");
        assert!(
            status.success(),
            "cargo build --example kitchen_sink failed"
        );
        let bin = dir.join("examples").join("kitchen_sink");
        assert!(bin.exists(), "{} is missing", bin.display());
        bin
    })
    .clone()
}

impl Server {
    /// The Rust example server.
    pub fn rust(extra: &[&str]) -> Server {
        Self::start(Command::new(example_binary()), extra)
    }

    /// The Python twin (`tests/interop/kitchen_sink.py`).
    pub fn python(extra: &[&str]) -> Server {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/interop/kitchen_sink.py"));
        Self::start(cmd, extra)
    }

    fn start(mut cmd: Command, extra: &[&str]) -> Server {
        let dir = TempDir::new("kitchen");
        let furlfile = dir.0.join("furl");
        let child = cmd
            .arg(&furlfile)
            .args(["--max-seconds", "600"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the kitchen-sink server");
        let mut server = Server {
            child,
            furl: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&furlfile) {
                if text.ends_with('\n') {
                    server.furl = text.trim().to_owned();
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the kitchen-sink server exited early: {status}");
            }
            assert!(Instant::now() < deadline, "no FURL file after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `kitchen_check.py FURL`; returns the failed checks' lines and the
/// number passed.
pub fn python_checker(furl: &str) -> (usize, Vec<Json>) {
    let lines = run_script_json("kitchen_check.py", &[furl], Duration::from_secs(600));
    let summary = lines
        .iter()
        .find(|l| l.get("summary").is_some())
        .unwrap_or_else(|| panic!("no summary from kitchen_check.py: {lines:?}"));
    let passed = summary["passed"].as_u64().expect("passed count") as usize;
    let failed: Vec<Json> = lines
        .iter()
        .filter(|l| l.get("check").is_some() && l["ok"] != Json::Bool(true))
        .cloned()
        .collect();
    (passed, failed)
}

// ------------------------------------------------------------ Rust client

/// An object of the Rust client that the server calls back.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<Value>>,
}

impl Object for Recorder {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "twice" => {
                let x = call.arg(0, "x").and_then(Value::as_i64).unwrap_or(0);
                call.answer(Value::int(x * 2));
            }
            "boom" => {
                let mut f = Failure::new("builtins.RuntimeError", "client says no");
                f.parents = vec![
                    "builtins.RuntimeError".into(),
                    "builtins.Exception".into(),
                    "builtins.BaseException".into(),
                    "builtins.object".into(),
                ];
                call.fail(f)
            }
            "record" => {
                let x = call.arg(0, "x").cloned().unwrap_or(Value::None);
                self.seen.lock().unwrap().push(x);
                call.answer(Value::None)
            }
            _ => call.no_such_method("Recorder"),
        }
    }

    fn class_name(&self) -> &str {
        "Recorder"
    }
}

pub fn lit(s: &str) -> Value {
    literal::parse(s).unwrap_or_else(|e| panic!("literal {s:?}: {e}"))
}

/// The same structure, sharing and cycles included: equal canonical bytes
/// once set elements are put in one order (Python iterates sets in hash
/// order, so a set may come back reordered).
pub fn same_structure(a: &Value, b: &Value) -> bool {
    encode(&sorted_sets(a), vocab(0)) == encode(&sorted_sets(b), vocab(0))
}

fn sorted_sets(v: &Value) -> Value {
    let sort = |items: &[Value]| {
        let mut items: Vec<Value> = items.iter().map(sorted_sets).collect();
        items.sort_by_key(|x| encode(x, vocab(0)));
        items
    };
    match v {
        Value::Set(items) => Value::Set(sort(items)),
        Value::FrozenSet(items) => Value::FrozenSet(sort(items)),
        Value::List(items) => Value::List(items.iter().map(sorted_sets).collect()),
        Value::Tuple(items) => Value::Tuple(items.iter().map(sorted_sets).collect()),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .iter()
                .map(|(k, x)| (sorted_sets(k), sorted_sets(x)))
                .collect(),
        ),
        Value::Anchor(id, inner) => Value::Anchor(*id, Box::new(sorted_sets(inner))),
        other => other.clone(),
    }
}

/// The client side of the kitchen-sink checks, run against `furl`.
pub struct Client {
    pub tub: Tub,
    pub sink: foolscap::value::RemoteRef,
    pub furl: String,
}

impl Client {
    pub fn connect(furl: &str) -> Client {
        let tub = Tub::new().expect("tub");
        tub.register_copyable("kitchen-sink.Point");
        let sink = match tub.get_reference(furl, T).expect("get_reference") {
            Value::Remote(r) => r,
            other => panic!("not a remote reference: {other:?}"),
        };
        Client {
            tub,
            sink,
            furl: furl.to_owned(),
        }
    }

    pub fn call(&self, method: &str, args: &[Value]) -> Result<Value, Error> {
        self.tub.call(&self.sink, method, args, &[], T)
    }

    pub fn call_kw(
        &self,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<Value, Error> {
        self.tub.call(&self.sink, method, args, kwargs, T)
    }

    pub fn ok(&self, method: &str, args: &[Value]) -> Value {
        self.call(method, args)
            .unwrap_or_else(|e| panic!("{method}{args:?} failed: {e}"))
    }

    pub fn failure(&self, method: &str, args: &[Value]) -> Failure {
        match self.call(method, args) {
            Err(Error::Call(CallError::Remote(f))) => f,
            other => panic!("{method} should fail remotely, got {other:?}"),
        }
    }
}

/// Values of every type, sharing and cycles included, as Python literals.
pub const ECHO_LITERALS: &[&str] = &[
    "None",
    "True",
    "False",
    "0",
    "-1",
    "2147483648",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "-1267650600228229401496703205376",
    "0.0",
    "-0.0",
    "1.5",
    "float('inf')",
    "-float('inf')",
    "1e300",
    "5e-324",
    "b''",
    "b'\\x00\\xff'",
    "''",
    "'h\\xe9llo \\U0001f600'",
    "'\\x00'",
    "Decimal('1.50')",
    "Decimal('-0')",
    "Decimal('1E+3')",
    "[]",
    "()",
    "[1, 'a', b'b', None]",
    "(1, (2, (3,)))",
    "{1, 2, 3}",
    "set()",
    "frozenset({'a', 'b'})",
    "{}",
    "{'a': 1, 'b': [2, 3]}",
    "{(1, 2): 'tuple key', (0, 5): 'another'}",
    "{b'k': {'nested': {'deep': [1, [2, [3]]]}}}",
    "{True: 2, 2.5: 3, -7: 4}",
    "[{'x': (1, frozenset({2}))}, {3: {4}}]",
];
