//! flappserver / flappclient, ours and Python foolscap 24.9.0's, in one
//! run:
//!
//! * upload of one file (100 MB) with `flappclient upload-file`, for each
//!   pairing of client and server; MB/s over the whole client process
//!   (start, connect, transfer, exit), Python -> Python as the baseline;
//! * start-up: `flappserver start BASEDIR` (daemonizing) until the port
//!   accepts a TCP connection, ours and Python's (median of N starts).
//!
//! `cargo bench --bench flapp [-- MB STARTS]` (defaults 100 and 5);
//! `cargo test --benches` runs it with 1 MB and 1 start as a smoke test.

#[path = "../tests/common/flapp.rs"]
mod flapp;
#[path = "../tests/common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use flapp::{client, path_str, pattern, Basedir, Impl};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (mb, starts) = if bench {
        (
            nums.first().copied().unwrap_or(100),
            nums.get(1).copied().unwrap_or(5),
        )
    } else {
        (1, 1)
    };
    let size = mb * 1_000_000;
    let _ = process::OPTIMIZED_PROFILE.set("bench");
    eprintln!("building flappserver and flappclient ...");
    flapp::build();
    eprintln!("flapp bench: {mb} MB uploads, {starts} start-ups per implementation");
    let data = pattern(size, 42);

    let mut rates = Vec::new();
    for server in [Impl::Python, Impl::Rust] {
        let mut b = Basedir::create(server);
        let up = path_str(&b.uploads).to_owned();
        let furl = b.add(server, &["upload-file", &up]);
        b.start(server);
        let src = b.dir.path().join("payload.bin");
        std::fs::write(&src, &data).expect("payload");
        for client_impl in [Impl::Python, Impl::Rust] {
            eprintln!("  upload {client_impl:?} client -> {server:?} server ...");
            let _ = std::fs::remove_file(b.uploads.join("payload.bin"));
            let t0 = Instant::now();
            let out = client(client_impl, &furl, &["upload-file", path_str(&src)], b"");
            let took = t0.elapsed();
            assert!(out.status.success(), "upload failed: {out:?}");
            let got = std::fs::metadata(b.uploads.join("payload.bin")).map(|m| m.len());
            assert_eq!(got.ok(), Some(size as u64), "uploaded size");
            let rate = size as f64 / 1e6 / took.as_secs_f64();
            eprintln!("    {took:.2?} = {rate:.1} MB/s");
            rates.push((client_impl, server, rate));
        }
    }
    let base = rates
        .iter()
        .find(|(c, s, _)| *c == Impl::Python && *s == Impl::Python)
        .map(|r| r.2)
        .unwrap_or(1.0);
    println!("upload of {mb} MB (whole client process), MB/s:");
    for (c, s, r) in &rates {
        println!(
            "  {:<6} client -> {:<6} server: {r:8.1} MB/s  ({:.2}x Python->Python)",
            format!("{c:?}"),
            format!("{s:?}"),
            r / base
        );
    }

    println!("start-up (`flappserver start` until the port accepts), median of {starts}:");
    for imp in [Impl::Python, Impl::Rust] {
        let mut times: Vec<Duration> = Vec::new();
        for i in 0..starts {
            eprintln!("  start {imp:?} #{}", i + 1);
            let mut b = Basedir::create(imp);
            times.push(b.start(imp));
            let out = b.stop(imp);
            assert!(out.status.success(), "stop: {out:?}");
        }
        times.sort();
        let med = times[times.len() / 2];
        println!(
            "  {:<6}: {med:.2?}  (min {:.2?}, max {:.2?})",
            format!("{imp:?}"),
            times[0],
            times[times.len() - 1]
        );
    }
}
