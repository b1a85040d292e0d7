//! `flogtool dump` of a big flogfile (default 100 MB): our `flogtool`
//! binary against Python foolscap 24.9.0's, in the same run, on the same
//! file, both writing to a pipe this process reads (and hashes, to check
//! that the two outputs are identical). A third row times the library
//! alone (`files::open` + `Dumper` into a reused `String`, no process).
//!
//! The file is generated once (deterministic: the same events every run)
//! as `target/flogdump-bench/events-<MB>MB.flog`: a mix of plain messages,
//! `format` events with keyword fields, `message % args` events, parents,
//! facilities, every level, some failures and some non-ASCII text.
//!
//! Progress goes to stderr; one JSON line per row and a table (MB/s of the
//! flogfile, the ratio Python time / ours) to stdout.
//! `cargo bench --bench flogdump [-- MB]`; run without `--bench`
//! (`cargo test --benches`) it makes a 1 MB smoke pass.

#[path = "../tests/common/process.rs"]
mod process;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use foolscap_logging::dump::{DumpOptions, Dumper};
use foolscap_logging::timefmt::Utc;
use foolscap_logging::value::{Dict, Value};
use foolscap_logging::{files, json, Event, ReadLimits, MAGIC};

/// A small deterministic generator (no dependency on `rand`).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 12] = [
    "connection",
    "negotiation",
    "broker",
    "reference",
    "call",
    "answer",
    "timeout",
    "peer",
    "caf\u{e9}",
    "storage",
    "lease",
    "share",
];

fn generate(path: &Path, bytes: u64) {
    eprintln!(
        "flogdump: generating {} ({} MB)",
        path.display(),
        bytes >> 20
    );
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let tmp = path.with_extension("tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create"));
    let mut line = String::new();
    let mut put = |w: &mut std::io::BufWriter<std::fs::File>, rec: Value| -> u64 {
        line.clear();
        json::write(&rec, &mut line);
        line.push('\n');
        w.write_all(line.as_bytes()).expect("write");
        line.len() as u64
    };
    w.write_all(MAGIC).expect("magic");
    let mut h = Dict::new();
    h.insert("type", "log-file-observer");
    h.insert("threshold", 10);
    h.insert("pid", 4242);
    let mut v = Dict::new();
    v.insert("foolscap", "24.9.0");
    v.insert("twisted", "24.3.0");
    h.insert("versions", v);
    let mut rec = Dict::new();
    rec.insert("header", h);
    put(&mut w, Value::Dict(rec));
    let mut rng = Lcg(0x5eed);
    let mut written = 0u64;
    let mut num = 0u64;
    let mut t = 1_700_000_000.0f64;
    let levels = [10, 20, 20, 20, 20, 23, 25, 28, 30, 35, 40];
    while written < bytes {
        let level = levels[rng.below(levels.len() as u64) as usize];
        let w1 = WORDS[rng.below(12) as usize];
        let w2 = WORDS[rng.below(12) as usize];
        let mut e = Event::new(num, t, level, "2f0ab26e35e35957", "");
        e.0.remove("message");
        match rng.below(20) {
            0..=9 => e.0.insert(
                "message",
                format!("{w1} {w2} finished in {} ms", rng.below(5000)),
            ),
            10..=13 => {
                e.0.insert(
                    "format",
                    "%(what)s from %(peer)s: %(count)d items (%(ratio).2f)",
                );
                e.0.insert("what", w1);
                e.0.insert("peer", format!("tub-{:x}", rng.next()));
                e.0.insert("count", rng.below(100_000));
                e.0.insert("ratio", rng.below(10_000) as f64 / 7.0);
            }
            14..=17 => {
                e.0.insert("message", "%s: %r after %d tries");
                e.0.insert(
                    "args",
                    Value::Tuple(vec![
                        w1.into(),
                        Value::List(vec![w2.into(), 3.into()]),
                        rng.below(9).into(),
                    ]),
                );
            }
            18 => {
                e.0.insert("message", format!("{w1} failed"));
                let tb = format!(
                    "Traceback (most recent call last):\n  File \"x.py\", line {}, in f\nbuiltins.ValueError: {w2}\n",
                    rng.below(900)
                );
                let mut f = Dict::new();
                f.insert("@", "Failure");
                f.insert("str", format!("[Failure instance: {tb}]"));
                f.insert(
                    "repr",
                    format!("<twisted.python.failure.Failure builtins.ValueError: {w2}>"),
                );
                f.insert("traceback", tb);
                e.0.insert("failure", f);
            }
            _ => e.0.insert("message", ""),
        }
        if num > 0 && rng.below(3) == 0 {
            e.0.insert("parent", num - 1 - rng.below(num.min(20)));
        }
        if rng.below(2) == 0 {
            e.0.insert("facility", format!("foolscap.{w1}"));
        }
        let mut rec = Dict::new();
        rec.insert("from", "local");
        rec.insert("rx_time", t + 0.0001);
        rec.insert("d", e.0);
        written += put(&mut w, Value::Dict(rec));
        num += 1;
        t += rng.below(1000) as f64 / 1e4;
    }
    w.flush().expect("flush");
    drop(w);
    std::fs::rename(&tmp, path).expect("rename");
}

/// Run `cmd`, reading its stdout: (seconds, output bytes, hash).
fn timed(mut cmd: Command) -> (f64, u64, u64) {
    let start = Instant::now();
    let mut child = cmd
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
        total += n as u64;
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{cmd:?} failed");
    (start.elapsed().as_secs_f64(), total, hasher.finish())
}

fn our_flogtool() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(process::repo_root()).args([
        "build",
        "-q",
        "-p",
        "foolscap-cli",
        "--bin",
        "flogtool",
    ]);
    if release {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("cargo build").success(),
        "build flogtool"
    );
    dir.join("flogtool")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mb: u64 = if bench {
        args.iter()
            .filter(|a| !a.starts_with('-'))
            .find_map(|a| a.parse().ok())
            .unwrap_or(100)
    } else {
        1
    };
    let root = process::repo_root();
    let file = root.join(format!("target/flogdump-bench/events-{mb}MB.flog"));
    if !file.exists() {
        generate(&file, mb << 20);
    }
    let size = std::fs::metadata(&file).expect("stat").len();
    let size_mb = size as f64 / (1 << 20) as f64;
    eprintln!("flogdump: building our flogtool");
    let ours = our_flogtool();
    let python_flogtool = process::python().with_file_name("flogtool");

    eprintln!("flogdump: library (in process)");
    let start = Instant::now();
    let mut dumper = Dumper::new(DumpOptions::default(), &Utc);
    let mut text = String::new();
    let mut lib_bytes = 0u64;
    for r in files::open(&file, ReadLimits::default()).expect("open") {
        text.clear();
        dumper
            .record(&r.expect("record"), &mut text)
            .expect("render");
        lib_bytes += text.len() as u64;
    }
    let lib = start.elapsed().as_secs_f64();

    eprintln!("flogdump: our flogtool dump");
    let mut c = Command::new(&ours);
    c.arg("dump").arg(&file);
    let (rust, rust_bytes, rust_hash) = timed(c);
    eprintln!("flogdump: Python's flogtool dump");
    let mut c = Command::new(&python_flogtool);
    c.arg("dump").arg(&file);
    let (py, py_bytes, py_hash) = timed(c);

    let identical = rust_hash == py_hash && rust_bytes == py_bytes;
    assert_eq!(
        lib_bytes, rust_bytes,
        "the library and the binary print the same"
    );
    for (name, secs, out) in [
        ("rust-library", lib, lib_bytes),
        ("rust", rust, rust_bytes),
        ("python", py, py_bytes),
    ] {
        println!(
            "{{\"bench\": \"flogdump\", \"impl\": \"{name}\", \"file_bytes\": {size}, \"output_bytes\": {out}, \"seconds\": {secs:.3}, \"mb_per_s\": {:.1}}}",
            size_mb / secs
        );
    }
    println!();
    println!(
        "flogtool dump of a {size_mb:.1} MB flogfile (output {:.1} MB)",
        rust_bytes as f64 / (1 << 20) as f64
    );
    println!("  {:<14} {:>9} {:>9}", "", "seconds", "MB/s");
    println!(
        "  {:<14} {:>9.2} {:>9.1}",
        "rust library",
        lib,
        size_mb / lib
    );
    println!(
        "  {:<14} {:>9.2} {:>9.1}",
        "rust flogtool",
        rust,
        size_mb / rust
    );
    println!("  {:<14} {:>9.2} {:>9.1}", "python", py, size_mb / py);
    println!(
        "  python / rust: {:.1}x; outputs identical: {}",
        py / rust,
        if identical { "yes" } else { "NO" }
    );
    assert!(identical, "our dump differs from Python's");
}
