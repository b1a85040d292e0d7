//! The `foolscap` tool against the real Python peer: Python's bytes decode
//! and print as values Python evaluates back; our encodings decode in
//! Python (`foolscap.storage.unserialize` and a table-1 Banana) and match
//! Python's own bytes. The driver script is `tests/interop/cli_check.py`.

use std::path::Path;
use std::process::Command;

#[test]
fn cli_against_python_foolscap() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = Command::new("bash")
        .arg(root.join("scripts/python-env.sh"))
        .output()
        .expect("run scripts/python-env.sh");
    assert!(
        env.status.success(),
        "scripts/python-env.sh failed: {}",
        String::from_utf8_lossy(&env.stderr)
    );
    let python = String::from_utf8(env.stdout).expect("utf-8");
    let python = python
        .lines()
        .last()
        .expect("python path")
        .trim()
        .to_owned();
    let out = Command::new(python)
        .arg(root.join("tests/interop/cli_check.py"))
        .arg(env!("CARGO_BIN_EXE_foolscap"))
        .output()
        .expect("run cli_check.py");
    assert!(
        out.status.success(),
        "cli_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8(out.stdout).expect("utf-8 report");
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("JSON report");
    let failures = report["failures"].as_array().expect("failures");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let checks = report["checks"].as_u64().unwrap_or(0);
    assert!(checks >= 200, "only {checks} checks ran");
    eprintln!(
        "{} cases, {checks} checks against Python foolscap",
        report["cases"]
    );
}
