//! Child-process helpers for the tests and benches: the repository root,
//! the Python of `scripts/python-env.sh`, temporary directories, the
//! kitchen-sink example binary and kitchen-sink server processes.
//!
//! Depends on `std` only, so that other crates (the CLI's tests, the
//! benches) can include it with `#[path = ".../tests/common/process.rs"]
//! mod process;`; `tests/common/mod.rs` includes it as `common::process`.
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root: the nearest ancestor of the including crate's
/// manifest directory that holds this file.
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<&'static Path> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|d| d.join("tests/common/process.rs").is_file())
            .expect("the foolscap-rs workspace root")
    })
}

/// The interpreter of the cached virtualenv with `foolscap==24.9.0`
/// (created on first use by `scripts/python-env.sh`). Interop tests never
/// skip: without Python they fail, loudly.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| venv_python("foolscap"))
}

/// The interpreter of the second cached virtualenv, with `tahoe-lafs`
/// beside the same foolscap (`scripts/python-env.sh tahoe`); its `bin/`
/// holds the `tahoe` command.
pub fn tahoe_python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| venv_python("tahoe"))
}

fn venv_python(flavour: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/python-env.sh"))
        .arg(flavour)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/python-env.sh");
    assert!(
        out.status.success(),
        "scripts/python-env.sh {flavour} failed"
    );
    let path = String::from_utf8(out.stdout).expect("utf-8 path");
    PathBuf::from(path.lines().last().expect("python path").trim())
}

/// A directory (`foolscap-rs-TAG-PID-N` in the system's temporary
/// directory) removed on drop.
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

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The kitchen-sink example binary, built once per run in the profile of
/// the running test or bench (`cargo test --all-targets` compiles
/// examples only as test harnesses).
pub fn example_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_example("kitchen_sink")).clone()
}

/// Builds example `name` of the `foolscap` crate in the profile of the
/// running test or bench and returns its path.
pub fn build_example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["build", "-q", "-p", "foolscap", "--example", name]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(status.success(), "cargo build --example {name} failed");
    let bin = dir.join("examples").join(name);
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A server process that writes its FURL (and a newline) to a file named
/// on its command line; killed on drop, then its temporary directory is
/// removed.
pub struct Server {
    child: KillOnDrop,
    pub furl: String,
    _dir: TempDir,
}

impl Server {
    /// The Rust kitchen-sink example on the engine named `driver`
    /// (`--driver mio` or `--driver threads`).
    pub fn rust(driver: impl AsRef<str>, extra: &[&str]) -> Server {
        let mut cmd = Command::new(example_binary());
        cmd.args(["--driver", driver.as_ref()]);
        Self::kitchen(cmd, extra)
    }

    /// The server's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The Python twin (`tests/interop/kitchen_sink.py`).
    pub fn python(extra: &[&str]) -> Server {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/interop/kitchen_sink.py"));
        Self::kitchen(cmd, extra)
    }

    /// `CMD FURLFILE --max-seconds 600 EXTRA...`
    fn kitchen(cmd: Command, extra: &[&str]) -> Server {
        let after = [&["--max-seconds", "600"], extra].concat();
        Self::start(cmd, "kitchen-sink", &after)
    }

    /// Runs `CMD FURLFILE AFTER...` (stdin and stdout closed, stderr
    /// inherited) and waits up to 60 s for the FURL file; `what` names the
    /// server in panics.
    pub fn start(mut cmd: Command, what: &str, after: &[&str]) -> Server {
        let dir = TempDir::new(what);
        let furlfile = dir.0.join("furl");
        let child = cmd
            .arg(&furlfile)
            .args(after)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {what} server: {e}"));
        let mut server = Server {
            child: KillOnDrop(child),
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
                panic!("the {what} server exited early: {status}");
            }
            assert!(Instant::now() < deadline, "no FURL file after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The cargo profile [`cli_bin`] builds in when the running test or bench
/// was built optimized (default `release`; a bench sets `bench`).
pub static OPTIMIZED_PROFILE: OnceLock<&'static str> = OnceLock::new();

/// `foolscap-cli`'s binary `name` (`flogtool`, `flappserver`,
/// `flappclient`, `foolscap`), all of them built once per process in the
/// profile of the running test (optimized runs use [`OPTIMIZED_PROFILE`]).
pub fn cli_bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let optimized = dir.file_name().is_some_and(|n| n != "debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root())
            .args(["build", "-q", "-p", "foolscap-cli", "--bins"]);
        if optimized {
            let profile = OPTIMIZED_PROFILE.get().copied().unwrap_or("release");
            cmd.arg(format!("--profile={profile}"));
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of foolscap-cli's binaries failed"
        );
        dir.to_path_buf()
    });
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}
