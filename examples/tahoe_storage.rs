//! A client of a real Tahoe-LAFS storage server.
//!
//! ```text
//! cargo run --release --example tahoe_storage -- STORAGE_FURL [--size BYTES]
//! ```
//!
//! It stores one immutable share of random bytes under a fresh storage
//! index, reads it back, compares, prints `ok` and exits 0; on any
//! failure it prints what went wrong and exits 1 (2 for a bad command
//! line).
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foolscap::app::{Call, Object};
use foolscap::core::broker::Failure;
use foolscap::core::rng::{Rng, SystemRng};
use foolscap::core::value::{Int, RemoteRef, Value};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The canary `allocate_buckets` wants: an object the server watches (a
/// lost canary before `close` makes it drop the upload). Nobody calls it.
struct Canary;

impl Object for Canary {
    fn call(&self, call: Call) {
        let failure = Failure::no_such_method("Canary", &call.method.to_string());
        call.fail(failure);
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut furl = None;
    let mut size = 100_000usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => match args.next().and_then(|s| s.parse().ok()) {
                Some(n) => size = n,
                None => return usage("--size needs a number of bytes"),
            },
            _ if furl.is_none() && !a.starts_with('-') => furl = Some(a),
            _ => return usage(&format!("unexpected argument {a:?}")),
        }
    }
    let Some(furl) = furl else {
        return usage("missing STORAGE_FURL");
    };
    match run(&furl, size) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tahoe_storage: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("tahoe_storage: {problem}\nusage: tahoe_storage STORAGE_FURL [--size BYTES]");
    ExitCode::from(2)
}

fn random(n: usize) -> Bytes {
    let mut b = vec![0; n];
    SystemRng.fill(&mut b);
    Bytes::from(b)
}

fn remote(v: &Value, what: &str) -> Result<RemoteRef, String> {
    foolscap::as_remote(v)
        .cloned()
        .ok_or_else(|| format!("{what}: expected a reference, got {}", v.type_name()))
}

fn run(furl: &str, size: usize) -> Result<(), String> {
    let tub = foolscap::threads::new_tub().map_err(|e| e.to_string())?;
    let server = tub
        .get_reference(furl, TIMEOUT)
        .map_err(|e| format!("connecting: {e}"))?;
    let server = remote(&server, "the storage FURL")?;
    let call = |target: &RemoteRef, method: &str, args: &[Value]| {
        tub.call(target, method, args, &[], TIMEOUT)
            .map_err(|e| format!("{method}: {e}"))
    };

    let version = call(&server, "get_version", &[])?;
    eprintln!("server: {version:?}");

    let share = random(size);
    let storage_index = random(16);
    let canary = tub.local(Arc::new(Canary));
    let allocated = call(
        &server,
        "allocate_buckets",
        &[
            Value::Bytes(storage_index.clone()),
            Value::Bytes(random(32)),
            Value::Bytes(random(32)),
            Value::Set(vec![Value::int(0)]),
            Value::Int(Int::from(size as i64)),
            canary,
        ],
    )?;
    let writer = match &allocated {
        Value::Tuple(items) if items.len() == 2 => match &items[1] {
            Value::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_i64() == Some(0))
                .map(|(_, w)| remote(w, "bucket writer"))
                .transpose()?,
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| format!("allocate_buckets: no writer for share 0 in {allocated:?}"))?;
    call(
        &writer,
        "write",
        &[Value::int(0), Value::Bytes(share.clone())],
    )?;
    call(&writer, "close", &[])?;

    let buckets = call(&server, "get_buckets", &[Value::Bytes(storage_index)])?;
    let reader = match &buckets {
        Value::Dict(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_i64() == Some(0))
            .map(|(_, r)| remote(r, "bucket reader"))
            .transpose()?,
        _ => None,
    }
    .ok_or_else(|| format!("get_buckets: no reader for share 0 in {buckets:?}"))?;
    let back = call(
        &reader,
        "read",
        &[Value::int(0), Value::Int(Int::from(size as i64))],
    )?;
    match back.as_bytes() {
        Some(b) if *b == share => Ok(()),
        Some(b) => Err(format!(
            "read back {} bytes that differ from the {} written",
            b.len(),
            size
        )),
        None => Err(format!("read: expected bytes, got {}", back.type_name())),
    }
}
