//! Shared helpers for the tests that drive the real Python peer.
#![allow(dead_code)]

pub mod broker;
pub mod flapp;
pub mod kitchen;
pub mod negotiation;
pub mod process;

use process::KillOnDrop;
pub use process::{python, repo_root};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use foolscap::banana::VocabTable;
use foolscap::value::{DecodeError, Deserializer, Event, Limits, Serializer, Value};
use serde_json::Value as Json;

/// Runs `tests/interop/fsinterop.py ARGS` with JSON lines on stdin and
/// returns the JSON lines it prints.
pub fn fsinterop(args: &[&str], input: &[Json]) -> Vec<Json> {
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/interop/fsinterop.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fsinterop.py");
    let mut stdin = child.stdin.take().expect("stdin");
    let payload: String = input.iter().map(|j| format!("{j}\n")).collect();
    let writer = std::thread::spawn(move || {
        stdin
            .write_all(payload.as_bytes())
            .expect("write to fsinterop.py");
    });
    let out = child.wait_with_output().expect("fsinterop.py output");
    writer.join().expect("writer thread");
    assert!(out.status.success(), "fsinterop.py {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Runs `tests/interop/SCRIPT ARGS` to completion (killed after `limit`)
/// and returns the JSON lines it prints.
pub fn run_script_json(script: &str, args: &[&str], limit: std::time::Duration) -> Vec<Json> {
    use std::io::Read;
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/interop").join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{script} {args:?} took longer than {limit:?}");
            }
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    let out = reader.join().expect("reader thread");
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A helper server `tests/interop/SCRIPT serve CERTFILE --lifetime 120`,
/// killed when dropped (it also stops when its stdin closes); `start`
/// returns it with the JSON of its first line (`furl`, `tubid`, ...).
pub struct PyProcess {
    _child: KillOnDrop,
    _stdin: std::process::ChildStdin,
}

impl PyProcess {
    pub fn serve(script: &str, certfile: &Path) -> (PyProcess, Json) {
        use std::io::BufRead;
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/interop").join(script))
            .args(["serve", certfile.to_str().unwrap(), "--lifetime", "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script} serve: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("first line from {script}: {e}"));
        let j: Json =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        (
            PyProcess {
                _child: KillOnDrop(child),
                _stdin: stdin,
            },
            j,
        )
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub fn vocab(n: u32) -> VocabTable {
    VocabTable::by_index(n).expect("vocab table 0 or 1")
}

/// Serializes one value as a message of its own (OPEN numbers from 0).
pub fn encode(v: &Value, table: VocabTable) -> Vec<u8> {
    let mut out = BytesMut::new();
    Serializer::new(table)
        .serialize(v, &mut out)
        .expect("serializable");
    out.to_vec()
}

/// Decodes a stream that should hold exactly one value.
pub fn decode_one(bytes: &[u8], table: VocabTable) -> Result<Value, String> {
    let mut de = Deserializer::new(table, Limits::default());
    de.feed(bytes);
    let mut values = Vec::new();
    loop {
        match de.poll_event() {
            Ok(Some(Event::Value(v))) => values.push(v),
            Ok(Some(other)) => return Err(format!("unexpected event {other:?}")),
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if de.in_message() || de.buffered() > 0 {
        return Err("truncated stream".into());
    }
    match values.len() {
        1 => Ok(values.pop().expect("one value")),
        n => Err(format!("{n} values")),
    }
}

/// Decodes a stream; `Err` on any refusal (fatal or a discarded message).
pub fn decode_verdict(bytes: &[u8], table: VocabTable) -> Result<Vec<Value>, DecodeError> {
    let mut de = Deserializer::new(table, Limits::default());
    de.feed(bytes);
    let mut values = Vec::new();
    while let Some(ev) = de.poll_event()? {
        match ev {
            Event::Value(v) => values.push(v),
            Event::Discarded(e) => return Err(e),
            _ => {}
        }
    }
    Ok(values)
}

/// The engine that carries a Tub: the mio event loop, threads per
/// socket (`foolscap::threads`) or tokio tasks (`foolscap_tokio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Mio,
    Threads,
    Tokio,
}

impl Driver {
    /// The name the tools take (`--driver NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Driver::Mio => "mio",
            Driver::Threads => "threads",
            Driver::Tokio => "tokio",
        }
    }
}

/// For `process::Server::rust(driver, ...)`.
impl AsRef<str> for Driver {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// Makes Tubs on one engine. For mio it owns an event loop of its own,
/// for tokio a multi-thread runtime of its own; either is shut down
/// (cleanly, on the dropping thread) when this is dropped.
pub struct Engine {
    pub driver: Driver,
    runtime: Option<foolscap::mio::Runtime>,
    tokio: Option<(tokio::runtime::Runtime, foolscap_tokio::Engine)>,
}

/// A tokio runtime (two workers) and an engine on it.
pub fn tokio_engine() -> (tokio::runtime::Runtime, foolscap_tokio::Engine) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a tokio runtime");
    let engine = foolscap_tokio::Engine::with_handle(
        rt.handle().clone(),
        foolscap_tokio::TokioConfig::default(),
    );
    (rt, engine)
}

impl Engine {
    pub fn start(driver: Driver) -> Engine {
        let runtime = match driver {
            Driver::Mio => Some(
                foolscap::mio::Runtime::start(foolscap::mio::LoopConfig::default())
                    .expect("start a mio event loop"),
            ),
            Driver::Threads | Driver::Tokio => None,
        };
        let tokio = (driver == Driver::Tokio).then(tokio_engine);
        Engine {
            driver,
            runtime,
            tokio,
        }
    }

    /// A Tub with a new identity.
    pub fn tub(&self) -> foolscap::Tub {
        match (&self.runtime, &self.tokio) {
            (Some(rt), _) => rt.new_tub().expect("mio tub"),
            (_, Some((_, engine))) => engine.new_tub().expect("tokio tub").into(),
            _ => foolscap::threads::new_tub().expect("threads tub"),
        }
    }

    /// A Tub with the given identity and settings.
    pub fn tub_with(
        &self,
        identity: foolscap::identity::Identity,
        config: foolscap::tub::TubConfig,
    ) -> foolscap::Tub {
        match (&self.runtime, &self.tokio) {
            (Some(rt), _) => rt.tub(identity, config).expect("mio tub"),
            (_, Some((_, engine))) => engine.tub(identity, config).expect("tokio tub").into(),
            _ => foolscap::threads::tub(identity, config).expect("threads tub"),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown(std::time::Duration::from_secs(5));
        }
        if let Some((rt, engine)) = self.tokio.take() {
            engine.shutdown_blocking(std::time::Duration::from_secs(5));
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}
