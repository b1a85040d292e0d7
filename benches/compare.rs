//! The Rust half of `benches/compare.sh`: times token decode, value decode
//! and value encode of the three benchmark inputs (`common/mod.rs`) and
//! prints one JSON line per (input, operation) on stdout:
//!
//! ```text
//! {"input":"ints","op":"decode","ns_per_op":…,"iters":…,"bytes":…,"values":…,"tokens":…}
//! ```
//!
//! Each row runs for at least `COMPARE_SECS` seconds (default 1) after a
//! warm-up. `decode` is timed per call around `feed_bytes` + poll (the
//! input copy it takes over is made outside the timed region: zero-copy, as
//! when a connection hands over the buffer it read into); `decode-copy`
//! feeds a borrowed slice with `feed`, so its time includes copying the
//! input. Both include dropping the decoded value. Encoding uses a fresh `Serializer` per call
//! writing into one reused `BytesMut`, like the criterion bench.
//!
//! Run without `--bench` (`cargo test --benches`), it does each operation
//! once.
//!
//! With `FOOLSCAP_COMPARE_DUMP=DIR` the encodings are also written to
//! `DIR/<input>.bin` so the Python side can check they are byte-identical.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use foolscap_core::banana::TokenDecoder;
use foolscap_core::value::Serializer;

mod common;

/// Runs `f` (which returns the time of its timed part) until `min` has been
/// spent in the timed part, at least 3 times; returns (ns per call, calls).
fn measure(min: Duration, mut f: impl FnMut() -> Duration) -> (f64, u64) {
    if min.is_zero() {
        return (f().as_nanos() as f64, 1);
    }
    // warm-up: a tenth of the budget
    let warm = Instant::now();
    while warm.elapsed() < min / 10 {
        f();
    }
    let mut spent = Duration::ZERO;
    let mut n = 0u64;
    while spent < min || n < 3 {
        spent += f();
        n += 1;
    }
    (spent.as_nanos() as f64 / n as f64, n)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // run every operation once as a smoke test.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("COMPARE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let min = Duration::from_secs_f64(if bench_mode { secs } else { 0.0 });
    let dump = std::env::var_os("FOOLSCAP_COMPARE_DUMP").map(std::path::PathBuf::from);

    for input in common::inputs() {
        if let Some(dir) = &dump {
            std::fs::create_dir_all(dir).expect("create dump dir");
            std::fs::write(dir.join(format!("{}.bin", input.name)), &input.wire)
                .expect("write dump");
        }
        let fresh = || -> Bytes { BytesMut::from(&input.wire[..]).freeze() };

        let token_decode = || {
            let wire = fresh();
            let start = Instant::now();
            let mut d = TokenDecoder::default();
            d.feed_bytes(wire);
            let mut n = 0u64;
            while let Some(t) = d.next_token().expect("valid") {
                black_box(&t);
                n += 1;
            }
            let t = start.elapsed();
            assert_eq!(n, input.tokens);
            t
        };
        let value_decode = || {
            let wire = fresh();
            let start = Instant::now();
            drop(black_box(common::decode(wire)));
            start.elapsed()
        };
        // The same, but fed from a borrowed slice (the decoder copies it in),
        // as when the received bytes are not owned.
        let value_decode_copy = || {
            let start = Instant::now();
            let mut de = foolscap_core::value::Deserializer::new(
                common::VOCAB,
                foolscap_core::value::Limits::default(),
            );
            de.feed(black_box(&input.wire));
            match de.poll_event() {
                Ok(Some(foolscap_core::value::Event::Value(v))) => drop(black_box(v)),
                other => panic!("did not decode: {other:?}"),
            }
            start.elapsed()
        };
        let mut out = BytesMut::with_capacity(input.wire.len());
        let mut value_encode = || {
            out.clear();
            let start = Instant::now();
            let mut ser = Serializer::new(common::VOCAB);
            ser.serialize(black_box(&input.value), &mut out)
                .expect("encodes");
            let t = start.elapsed();
            assert_eq!(out.len(), input.wire.len());
            t
        };

        let rows: [(&str, &mut dyn FnMut() -> Duration); 4] = [
            ("decode-tokens", &mut { token_decode }),
            ("decode", &mut { value_decode }),
            ("decode-copy", &mut { value_decode_copy }),
            ("encode", &mut value_encode),
        ];
        for (op, f) in rows {
            let (ns, iters) = measure(min, f);
            println!(
                "{{\"input\":\"{}\",\"op\":\"{}\",\"ns_per_op\":{:.1},\"iters\":{},\"bytes\":{},\"values\":{},\"tokens\":{}}}",
                input.name,
                op,
                ns,
                iters,
                input.wire.len(),
                input.values,
                input.tokens
            );
        }
    }
}
