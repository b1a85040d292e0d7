//! Passing a gift end to end (issue 12): A gives B a reference to C's
//! object and B calls it once (`take(thing)`: B looks the gift up at C,
//! sends `decgift`, calls `hello`, answers). Time per gift with the B–C
//! connection already open (warm) and with a new B each time (fresh: TCP,
//! TLS and negotiation to C, then the lookup), for three Rust Tubs (threads
//! engine, one process) and three Python Tubs (`tests/interop/fsgifts.py
//! bench`, one process), in one run; prints medians and the ratios.
//!
//! `cargo bench --bench gifts [-- WARM FRESH]` (defaults 500 and 30;
//! `cargo test --benches` runs 5 and 2 as a smoke test).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foolscap::value::Value;
use foolscap::{Call, Object, Tub};

#[path = "../tests/common/process.rs"]
mod process;

const T: Duration = Duration::from_secs(60);

struct Thing;
impl Object for Thing {
    fn call(&self, call: Call) {
        call.answer(Value::str("hello from thing"))
    }
}

/// take(x): calls x.hello(), answers with it.
struct Receiver;
impl Object for Receiver {
    fn call(&self, call: Call) {
        let x = call.args[0].clone();
        let tub = call.tub().clone();
        let slot = Arc::new(Mutex::new(Some(call)));
        let s2 = slot.clone();
        let sent = tub.call_async(&x, "hello", &[], &[], move |r| {
            if let Some(c) = s2.lock().unwrap().take() {
                c.reply(r.map_err(|e| e.to_failure()));
            }
        });
        if let Err(e) = sent {
            if let Some(c) = slot.lock().unwrap().take() {
                c.fail(e.to_failure());
            }
        }
    }
}

fn server(obj: Arc<dyn Object>) -> (Tub, String) {
    let tub = foolscap::threads::new_tub().unwrap();
    tub.listen("127.0.0.1:0").unwrap();
    let furl = tub.register(obj, None).unwrap().to_string();
    (tub, furl)
}

fn rust(warm: usize, fresh: usize) -> (Vec<f64>, Vec<f64>) {
    let (_c, thing_furl) = server(Arc::new(Thing));
    let (_b, receiver_furl) = server(Arc::new(Receiver));
    let a = foolscap::threads::new_tub().unwrap();
    let thing = a.get_reference(&thing_furl, T).unwrap();
    let receiver = a.get_reference(&receiver_furl, T).unwrap();
    let take = |r: &Value| {
        let got = a
            .call(r, "take", std::slice::from_ref(&thing), &[], T)
            .unwrap();
        assert_eq!(got, Value::str("hello from thing"));
    };
    take(&receiver);
    let mut w = Vec::new();
    for _ in 0..warm {
        let t0 = Instant::now();
        take(&receiver);
        w.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let mut f = Vec::new();
    for _ in 0..fresh {
        let (b2, furl2) = server(Arc::new(Receiver));
        let r2 = a.get_reference(&furl2, T).unwrap();
        let t0 = Instant::now();
        take(&r2);
        f.push(t0.elapsed().as_secs_f64() * 1000.0);
        b2.shutdown();
    }
    (w, f)
}

fn python(warm: usize, fresh: usize) -> (Vec<f64>, Vec<f64>) {
    let out = std::process::Command::new(process::python())
        .arg(process::repo_root().join("tests/interop/fsgifts.py"))
        .args([
            "-",
            "bench",
            "--warm",
            &warm.to_string(),
            "--fresh",
            &fresh.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run fsgifts.py bench");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("warm_ms"))
        .expect("bench output");
    let j: serde_json::Value = serde_json::from_str(line).unwrap();
    let list = |k: &str| -> Vec<f64> {
        j[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    (list("warm_ms"), list("fresh_ms"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not
    let smoke = !std::env::args().any(|a| a == "--bench");
    let nums: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let (warm, fresh) = match (nums.first(), nums.get(1)) {
        (Some(&w), Some(&f)) => (w, f),
        _ if smoke => (5, 2),
        _ => (500, 30),
    };
    let (mut rw, mut rf) = rust(warm, fresh);
    let (mut pw, mut pf) = python(warm, fresh);
    let (rw, rf, pw, pf) = (
        median(&mut rw),
        median(&mut rf),
        median(&mut pw),
        median(&mut pf),
    );
    println!("gift end to end, median ms per gift ({warm} warm, {fresh} fresh)");
    println!("| B–C connection | Python | Rust | Python/Rust |");
    println!("| --- | --- | --- | --- |");
    println!("| already open | {pw:.3} | {rw:.3} | {:.1}× |", pw / rw);
    println!("| fresh | {pf:.3} | {rf:.3} | {:.1}× |", pf / rf);
}
