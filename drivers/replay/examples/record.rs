//! Records a live session with the threads engine, for
//! `scripts/record-transcripts.sh`: the Rust side of the scenario that
//! `tests/interop/fsrecord.py` plays on the Python side.
//!
//! ```text
//! record serve CERTFILE OUT     # serves "recorded-target"; prints {"furl": ...};
//!                               # stops when stdin closes
//! record call CERTFILE OUT FURL # getReference, add, echo, fail, call_back
//! ```
//!
//! CERTFILE is created (with a fresh identity) if it does not exist. OUT
//! receives the transcript of every connection, recorded at the
//! plaintext boundary.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use foolscap_app::{load_or_create_identity, Call, Object, Tub};
use foolscap_core::broker::Failure;
use foolscap_core::negotiation::RecorderHandle;
use foolscap_core::tub::TubConfig;
use foolscap_core::value::Value;
use foolscap_replay::TranscriptWriter;

/// The swissnum the served object is registered under.
const NAME: &str = "recorded-target";
const TIMEOUT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn tub(certfile: &str, out: &str) -> Result<(Tub, Arc<TranscriptWriter>)> {
    let writer = Arc::new(TranscriptWriter::create(out)?);
    let config = TubConfig::default().with_recorder(RecorderHandle::new(writer.clone()));
    Ok((
        foolscap_threads::tub(load_or_create_identity(certfile)?, config)?,
        writer,
    ))
}

/// The served object: add, echo, fail, call_back.
struct Target;

impl Object for Target {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "add" => {
                let a = call.arg(0, "a").and_then(Value::as_i64).unwrap_or(0);
                let b = call.arg(1, "b").and_then(Value::as_i64).unwrap_or(0);
                call.answer(Value::int(a + b))
            }
            "echo" => {
                let kwargs = call
                    .kwargs
                    .iter()
                    .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                    .collect();
                let v = Value::List(vec![Value::List(call.args.clone()), Value::Dict(kwargs)]);
                call.answer(v)
            }
            "fail" => {
                let msg = match call.arg(0, "msg") {
                    Some(Value::Str(s)) => s.as_str().to_owned(),
                    _ => String::new(),
                };
                call.fail(Failure::new("builtins.ValueError", msg))
            }
            "call_back" => {
                // x goes on in another message: detached from this one
                let (Some(Value::Remote(observer)), Some(x)) = (
                    call.arg(0, "observer").cloned(),
                    call.arg(1, "x").map(|x| call.detach(x)),
                ) else {
                    return call.fail(Failure::new("builtins.TypeError", "bad arguments"));
                };
                let tub = call.tub().clone();
                let r = tub.call_async(&observer, "event", &[x], &[], move |r| match r {
                    Ok(v) => call.answer(v),
                    Err(e) => call.fail(e.to_failure()),
                });
                if let Err(e) = r {
                    eprintln!("call_back: {e}");
                }
            }
            _ => call.no_such_method("Target"),
        }
    }
}

/// The client's observer: event(x) -> "got " + x.
struct Observer;

impl Object for Observer {
    fn call(&self, call: Call) {
        match (call.method.as_str(), call.arg(0, "x")) {
            ("event", Some(Value::Str(x))) => {
                let v = Value::str(&format!("got {}", x.as_str()));
                call.answer(v)
            }
            _ => call.no_such_method("Observer"),
        }
    }
}

/// The arguments of the echo call (the 02-types values, sharing and a
/// cycle included).
pub fn rich_args() -> Vec<Value> {
    let Value::List(mut args) = foolscap_literal::parse(
        "[[1, 2], (3, 4), {'k': 'v'}, {5}, frozenset({6}), 'h\\u00e9llo', b'bytes', True, \
         False, None, 1.5, 1180591620717411303424, -5, -1099511627776, Decimal('1.25')]",
    )
    .expect("a literal") else {
        unreachable!()
    };
    let shared = Value::Anchor(
        1,
        Box::new(Value::List(vec![Value::int(10), Value::int(20)])),
    );
    args.push(Value::List(vec![shared, Value::Alias(1)]));
    args.push(Value::Anchor(
        2,
        Box::new(Value::List(vec![Value::Alias(2)])),
    ));
    args.push(Value::bytes(b"list"));
    args
}

fn serve(certfile: &str, out: &str) -> Result<()> {
    let (tub, writer) = tub(certfile, out)?;
    let addr = tub.listen("127.0.0.1:0")?;
    tub.set_location(&[&format!("tcp:{addr}")]);
    let furl = tub.register(Arc::new(Target), Some(NAME))?;
    writer.comment("foolscap-rs transcript: Python client (tests/interop/fsrecord.py call) -> Rust server (record serve)");
    writer.comment(&format!("furl: {furl}"));
    println!("{{\"furl\": \"{furl}\"}}");
    // serve until stdin closes
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    tub.shutdown();
    writer.flush()?;
    Ok(())
}

fn call(certfile: &str, out: &str, furl: &str) -> Result<()> {
    let (tub, writer) = tub(certfile, out)?;
    writer.comment("foolscap-rs transcript: Rust client (record call) -> Python server (tests/interop/fsrecord.py serve)");
    writer.comment(&format!("furl: {furl}"));
    let Value::Remote(target) = tub.get_reference(furl, TIMEOUT)? else {
        return Err("not a remote reference".into());
    };
    let sum = tub.call(
        &target,
        "add",
        &[Value::int(1), Value::int(2)],
        &[],
        TIMEOUT,
    )?;
    writer.comment(&format!("add(1, 2) -> {sum:?}"));
    let kw = [("kw".into(), Value::str("value"))];
    tub.call(&target, "echo", &rich_args(), &kw, TIMEOUT)?;
    let failed = tub.call(&target, "fail", &[Value::str("boom")], &[], TIMEOUT);
    writer.comment(&format!("fail('boom') -> {}", failed.is_err()));
    let observer = tub.local(Arc::new(Observer));
    let got = tub.call(
        &target,
        "call_back",
        &[observer, Value::str("ping")],
        &[],
        TIMEOUT,
    )?;
    writer.comment(&format!("call_back(observer, 'ping') -> {got:?}"));
    tub.shutdown();
    writer.flush()?;
    println!("{{\"ok\": true}}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", cert, out] => serve(cert, out),
        ["call", cert, out, furl] => call(cert, out, furl),
        _ => Err("usage: record serve CERTFILE OUT | record call CERTFILE OUT FURL".into()),
    }
}
