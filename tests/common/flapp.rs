//! flappserver / flappclient processes of either implementation, for
//! tests/interop_flapp.rs and benches/flapp.rs. Depends on `std` and
//! `process.rs` only (include both with `#[path]`).
#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::process::{python, TempDir};

/// Which implementation runs a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Rust,
    Python,
}

/// Builds our binaries (once per run, in the profile of the running test
/// or bench); call it before timing anything.
pub fn build() {
    let _ = rust_bin("flappserver");
}

fn rust_bin(name: &str) -> PathBuf {
    super::process::cli_bin(name)
}

impl Impl {
    pub fn tool(self, name: &str) -> Command {
        match self {
            Impl::Rust => Command::new(rust_bin(name)),
            Impl::Python => {
                let mut c = Command::new(python());
                c.arg(python().with_file_name(name));
                c
            }
        }
    }
}

/// Runs a tool to completion with `stdin` fed to it.
pub fn run(imp: Impl, tool: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = imp
        .tool(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{imp:?} {tool}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A base directory in a temporary directory, with `uploads/` and
/// `work/` beside it. Stopped (if started) and removed on drop.
pub struct Basedir {
    pub dir: TempDir,
    pub base: PathBuf,
    pub port: u16,
    pub uploads: PathBuf,
    pub work: PathBuf,
    running: Option<Impl>,
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Basedir {
    /// `flappserver create` by `imp` on a free port.
    pub fn create(imp: Impl) -> Basedir {
        let dir = TempDir::new("flapp");
        let base = dir.path().join("server");
        let uploads = dir.path().join("uploads");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&uploads).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let port = free_port();
        let out = run(
            imp,
            "flappserver",
            &[
                "create",
                "--quiet",
                &format!("--port=tcp:{port}:interface=127.0.0.1"),
                &format!("--location=tcp:127.0.0.1:{port}"),
                path_str(&base),
            ],
            b"",
        );
        assert!(out.status.success(), "{imp:?} create: {out:?}");
        Basedir {
            dir,
            base,
            port,
            uploads,
            work,
            running: None,
        }
    }

    /// `flappserver add [OPTIONS] BASEDIR TYPE ARGS` by `imp` (`args`
    /// starts with the options of `add`): the FURL.
    pub fn add(&self, imp: Impl, args: &[&str]) -> String {
        let opts = args.iter().take_while(|a| a.starts_with('-')).count();
        let (opts, rest) = args.split_at(opts);
        let out = run(
            imp,
            "flappserver",
            &[&["add"], opts, &[path_str(&self.base)], rest].concat(),
            b"",
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{imp:?} add {args:?}: {out:?}");
        text.lines()
            .find_map(|l| l.strip_prefix("FURL is "))
            .unwrap_or_else(|| panic!("no FURL in {text:?}"))
            .trim()
            .to_owned()
    }

    /// `flappserver start BASEDIR` (daemonizing) by `imp`, then waits
    /// until the port accepts; returns how long that took.
    pub fn start(&mut self, imp: Impl) -> Duration {
        let t0 = Instant::now();
        let out = run(imp, "flappserver", &["start", path_str(&self.base)], b"");
        assert!(out.status.success(), "{imp:?} start: {out:?}");
        self.running = Some(imp);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return t0.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "{imp:?} server never listened:\n{}",
                std::fs::read_to_string(self.base.join("twistd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The running server's pid.
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(self.base.join("twistd.pid"))
            .expect("twistd.pid")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// `flappserver stop BASEDIR` by `imp`.
    pub fn stop(&mut self, imp: Impl) -> Output {
        self.running = None;
        run(imp, "flappserver", &["stop", path_str(&self.base)], b"")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("twistd.log")).unwrap_or_default()
    }
}

impl Drop for Basedir {
    fn drop(&mut self) {
        if let Some(imp) = self.running.take() {
            let _ = self.stop(imp);
        }
    }
}

/// `flappclient --furl FURL ARGS` by `imp`, with `stdin`.
pub fn client(imp: Impl, furl: &str, args: &[&str], stdin: &[u8]) -> Output {
    let furl_arg = format!("--furl={furl}");
    run(
        imp,
        "flappclient",
        &[&[furl_arg.as_str()], args].concat(),
        stdin,
    )
}

/// Deterministic bytes that are not all alike.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Runs a local program with `stdin`; returns its stdout.
pub fn run_cmd(program: &str, stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    out.stdout
}
