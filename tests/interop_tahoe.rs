//! `examples/tahoe_storage.rs`, a typed client declaring Tahoe's storage
//! interfaces, against a real Tahoe-LAFS storage node.
//!
//! The test installs `tahoe-lafs` into its own cached virtualenv
//! (`scripts/python-env.sh tahoe`), creates a node that offers storage on
//! a free loopback port, starts it, and runs the example against the
//! node's storage FURL. It never skips: without Python or Tahoe it fails.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{build_example, tahoe_python, KillOnDrop, TempDir};

/// A running Tahoe-LAFS node with storage enabled; stopped on drop.
struct TahoeNode {
    _child: KillOnDrop,
    furl: String,
    _dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl TahoeNode {
    fn start() -> TahoeNode {
        let tahoe = tahoe_python().with_file_name("tahoe");
        let dir = TempDir::new("tahoe");
        let node = dir.path().join("node");
        let port = free_port();
        eprintln!("interop_tahoe: creating a Tahoe-LAFS storage node on port {port}");
        let status = Command::new(&tahoe)
            .arg("create-node")
            .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
            .arg(format!("--location=tcp:127.0.0.1:{port}"))
            .args(["--webport=none", "--nickname=foolscap-rs-test"])
            .arg(&node)
            .stdout(Stdio::null())
            .status()
            .expect("run tahoe create-node");
        assert!(status.success(), "tahoe create-node failed");
        // `tahoe run` stops when its stdin closes unless told otherwise.
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log file");
        let child = Command::new(&tahoe)
            .args(["run", "--allow-stdin-close"])
            .arg(&node)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("run tahoe run");
        let child = KillOnDrop(child);
        let furl_file = node.join("private").join("storage.furl");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(furl) = ready(&furl_file, port) {
                return TahoeNode {
                    _child: child,
                    furl,
                    _dir: dir,
                };
            }
            assert!(
                Instant::now() < deadline,
                "the Tahoe node did not come up; its log:\n{}",
                std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The storage FURL once the node listens and has written it.
fn ready(furl_file: &Path, port: u16) -> Option<String> {
    let furl = std::fs::read_to_string(furl_file).ok()?;
    let furl = furl.trim();
    let listening = TcpStream::connect(("127.0.0.1", port)).is_ok();
    (furl.starts_with("pb://") && listening).then(|| furl.to_owned())
}

#[test]
fn tahoe_storage_example_stores_and_reads_back_a_share() {
    let node = TahoeNode::start();
    let example = build_example("tahoe_storage");
    let out = Command::new(&example)
        .arg(&node.furl)
        .args(["--size", "300000"])
        .output()
        .expect("run the tahoe_storage example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "tahoe_storage failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    // the caller-side check of Tahoe's declaration refused a 17-byte
    // storage index before sending it
    assert!(
        stderr.contains("('string too long (17 > 16)',)"),
        "stderr: {stderr}"
    );
}

#[test]
fn tahoe_storage_example_fails_clearly_for_a_wrong_furl() {
    let node = TahoeNode::start();
    // The node's Tub, but a swissnum it never published.
    let (base, _) = node.furl.rsplit_once('/').expect("a FURL");
    let wrong = format!("{base}/nosuchswissnum");
    let example = build_example("tahoe_storage");
    let out = Command::new(&example)
        .arg(&wrong)
        .output()
        .expect("run the tahoe_storage example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("tahoe_storage:"), "stderr: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"));
}
