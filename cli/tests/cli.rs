//! Runs the built `foolscap` binary.

use std::io::Write;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_bytes(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_foolscap"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn foolscap");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The binary may exit before reading everything.
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(args: &[&str], stdin: &str) -> Run {
    let (code, stdout, stderr) = run_bytes(args, stdin.as_bytes());
    Run {
        code,
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr,
    }
}

/// `foolscap encode ARGS` must succeed; returns its hex line.
fn encode(args: &[&str]) -> String {
    let mut all = vec!["encode"];
    all.extend_from_slice(args);
    let r = run(&all, "");
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(r.stdout.ends_with('\n'));
    r.stdout.trim_end().to_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn encode_matches_the_wire_reference() {
    // docs/protocol.md §5.2, with open numbers starting at 0
    let v1 = [
        ("None", "0088008700 89"),
        ("True", "00880187 0181 0089"),
        ("False", "00880187 0081 0089"),
        ("'héllo'", "00880887 0682 68c3a96c6c6f 0089"),
        (
            "Decimal('1.25')",
            "0088 0782 646563696d616c 0482 312e3235 0089",
        ),
        ("[1, 2]", "00880487018102810089"),
        ("(3, 4)", "00880587038104810089"),
        (
            "{'k': 'v'}",
            "00880387 0188 0887 0182 6b 0189 0288 0887 0182 76 0289 0089",
        ),
        ("{5}", "00880687 0581 0089"),
        ("frozenset([6])", "00880787 0681 0089"),
        ("b'bytes'", "0582 6279746573"),
        ("b'list'", "0487"),
        ("''", "00880887 0082 0089"),
        ("2147483648", "0485 80000000"),
        ("-2147483648", "0000000008 83"),
        ("-2147483649", "0486 80000001"),
        ("1.5", "84 3ff8000000000000"),
    ];
    for (lit, want) in v1 {
        assert_eq!(
            encode(&["--vocab", "1", "--", lit]),
            want.replace(' ', ""),
            "{lit}"
        );
    }
    // the default table is 0: what foolscap.storage.serialize writes
    assert_eq!(
        encode(&["[1, 2]"]),
        "008804826c69737401810281".to_owned() + "0089"
    );
    assert_eq!(encode(&["--vocab", "1", "[1, 2]"]), "00880487018102810089");
    // vocab table 0 spells the open type as a STRING (§5.2)
    assert_eq!(encode(&["--vocab", "0", "None"]), "008804826e6f6e650089");
    assert_eq!(encode(&["--vocab", "0", "b'list'"]), "04826c697374");
}

#[test]
fn one_serializer_for_all_values() {
    // OPEN numbers continue from one message to the next
    assert_eq!(
        encode(&["--vocab", "1", "None", "[None]", "-1"]),
        "0088008700890188048702880087028901890183"
    );
    let r = run_bytes(&["encode", "--vocab", "1", "--raw", "[1, 2]", "b'x'"], b"");
    assert_eq!(r.0, 0);
    assert_eq!(hex(&r.1), "008804870181028100890182 78".replace(' ', ""));
}

#[test]
fn encode_decode_round_trips() {
    let cases = [
        ("None", "None"),
        ("True", "True"),
        ("-7", "-7"),
        ("1180591620717411303424", "1180591620717411303424"),
        ("-1180591620717411303424", "-1180591620717411303424"),
        ("1e16", "1e+16"),
        ("-0.0", "-0.0"),
        ("float('nan')", "float('nan')"),
        ("-float('inf')", "-float('inf')"),
        ("Decimal('1.50')", "Decimal('1.50')"),
        ("b'a\\x00\\'\"'", "b'a\\x00\\'\"'"),
        ("'tab\\there\\u2028'", "'tab\\there\\u2028'"),
        (
            "[1, (2,), {3}, frozenset({4}), {}, set(), frozenset(), ()]",
            "[1, (2,), {3}, frozenset({4}), {}, set(), frozenset(), ()]",
        ),
        ("{'b': 1, 'a': [2]}", "{'a': [2], 'b': 1}"),
        ("{1: 'x', 1.0: 'y'}", "{1: 'y'}"),
        ("b'list'", "b'list'"),
    ];
    for vocab in ["0", "1"] {
        let mut args = vec!["encode", "--vocab", vocab, "--"];
        args.extend(cases.iter().map(|(lit, _)| *lit));
        let r = run(&args, "");
        assert_eq!(r.code, 0, "{}", r.stderr);
        let d = run(&["decode", "--vocab", vocab], &r.stdout);
        assert_eq!(d.code, 0, "{}", d.stderr);
        assert!(d.stderr.is_empty(), "{}", d.stderr);
        let want: Vec<&str> = cases.iter().map(|(_, out)| *out).collect();
        assert_eq!(d.stdout.lines().collect::<Vec<_>>(), want);
    }
}

#[test]
fn decode_reads_files_raw_bytes_and_spaced_hex() {
    let dir = std::env::temp_dir().join(format!("foolscap-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("stream.bin");
    std::fs::write(&raw, [0x00, 0x88, 0x04, 0x87, 0x01, 0x81, 0x00, 0x89]).unwrap();
    let r = run(&["decode", "--raw", raw.to_str().unwrap()], "");
    assert_eq!((r.code, r.stdout.as_str()), (0, "[1]\n"), "{}", r.stderr);
    let hexfile = dir.join("stream.hex");
    std::fs::write(&hexfile, "00 88\n04 87\t01 81\r\n00 89\n").unwrap();
    let r = run(&["decode", hexfile.to_str().unwrap()], "");
    assert_eq!((r.code, r.stdout.as_str()), (0, "[1]\n"), "{}", r.stderr);
    let r = run(&["decode", "-"], "0088 0487 0089 0188 0087 0189");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "[]\nNone\n"),
        "{}",
        r.stderr
    );
    let r = run(&["decode"], "");
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let r = run(&["decode", dir.join("missing").to_str().unwrap()], "");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokens_view() {
    let stream = encode(&["--vocab", "1", "[1, -5, 'é', (1.5,)]", "{b'k': None}"]);
    let r = run(&["decode", "--tokens"], &stream);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "\
OPEN 0
  VOCAB 4 'list'
  INT 1
  NEG 5
  OPEN 1
    VOCAB 8 'unicode'
    STRING b'\\xc3\\xa9'
  CLOSE 1
  OPEN 2
    VOCAB 5 'tuple'
    FLOAT 1.5
  CLOSE 2
CLOSE 0
OPEN 3
  VOCAB 3 'dict'
  STRING b'k'
  OPEN 4
    VOCAB 0 'none'
  CLOSE 4
CLOSE 3
"
    );
    // vocab 0: the same VOCAB index is just a number
    let r = run(&["decode", "--tokens", "--vocab", "0"], "0487 1987");
    assert_eq!(r.stdout, "VOCAB 4\nVOCAB 25\n");
    // big numbers, long strings, ABORT, ERROR, PING, PONG
    let long = format!("{}82{}", "4801", "61".repeat(200));
    let numbers = encode(&[
        "--",
        "1180591620717411303424",
        "-1180591620717411303424",
        "-2147483648",
    ]);
    let stream = format!("{numbers} 0488 038a 0489 028d6e6f 8e 058f {long}");
    let r = run(&["decode", "--tokens"], &stream);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = format!(
        "LONGINT 1180591620717411303424\nLONGNEG 1180591620717411303424\nNEG 2147483648\nOPEN 4\n  ABORT 3\nCLOSE 4\nERROR b'no'\nPING 0\nPONG 5\nSTRING b'{}' ... (200 bytes)\n",
        "a".repeat(64)
    );
    assert_eq!(r.stdout, want);
}

#[test]
fn stream_notes_go_to_stderr() {
    // PING, a message with an unknown open type (discarded), PONG, ERROR,
    // and values around them
    let stream =
        "0188 0487 0189  8e  0088 0882 696e7374616e6365 0181 0089  038f  0288 0087 0289  028d 6e6f";
    let r = run(&["decode"], stream);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "[]\nNone\n");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stderr);
    assert_eq!(lines[0], "# PING 0");
    assert!(
        lines[1].starts_with("# discarded: unknown open type \"instance\" at byte 9"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "# PONG 3");
    assert_eq!(lines[3], "# ERROR b'no'");
}

#[test]
fn literal_errors_name_the_argument_and_offset() {
    let r = run(&["encode", "None", "[1, 2 3]"], "");
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.starts_with("foolscap encode: VALUE #2 is not a valid literal: expected ',' or ']' at character 6, found a number"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("\n  [1, 2 3]\n        ^\n"),
        "{}",
        r.stderr
    );
    for (lit, msg) in [
        ("{[1]: 2}", "unhashable type: 'list', at character 1"),
        (
            "'abc",
            "unterminated string literal starting at character 0",
        ),
        ("b'é'", "at character 2"),
        ("frob", "unknown name \"frob\" at character 0"),
        ("'\\ud800'", "surrogate"),
    ] {
        let r = run(&["encode", lit], "");
        assert_eq!(r.code, 1, "{lit}");
        assert!(r.stderr.contains(msg), "{lit}: {}", r.stderr);
    }
    // usage errors are clap's (status 2)
    assert_eq!(run(&["encode", "--vocab", "2", "1"], "").code, 2);
    assert_eq!(run(&["encode"], "").code, 2);
    assert_eq!(run(&["frobnicate"], "").code, 2);
}

#[test]
fn malformed_streams_fail_with_offsets() {
    let cases = [
        // bad hex
        ("0088 zz", "invalid hex input: 'z' at input byte 5"),
        ("008", "odd number of hex digits"),
        // token framing: 0x8b is no type byte
        ("0088 0487 018b", "invalid type byte 0x8b at byte 4"),
        // CLOSE that does not match its OPEN
        (
            "0088 0487 0189",
            "lost sync, got CLOSE(1) but expecting 0 at byte 4",
        ),
        // a VOCAB index outside the table
        ("0088 6387 0089", "undefined VOCAB index 99 at byte 2"),
        // boolean takes an INT only
        (
            "0088 0187 0182 61 0089",
            "boolean does not accept STRING at byte 4",
        ),
        // a dict with a list as key
        (
            "0088 0387 0188 0487 0189 0181 0089",
            "unhashable dict key at byte",
        ),
        // an over-long header
        (&"00".repeat(65), "longer than 64 digits"),
    ];
    for (input, msg) in cases {
        let r = run(&["decode"], input);
        assert_eq!(r.code, 1, "{input}: {}", r.stderr);
        assert!(r.stderr.starts_with("foolscap decode: "), "{}", r.stderr);
        assert!(r.stderr.contains(msg), "{input}: {}", r.stderr);
    }
    // values before the error are still printed
    let r = run(&["decode"], "0088 0087 0089  0188 0487 0289");
    assert_eq!((r.code, r.stdout.as_str()), (1, "None\n"));
    assert!(r.stderr.contains("expecting 1 at byte 10"), "{}", r.stderr);
    // tokens mode reports framing errors too
    let r = run(&["decode", "--tokens"], "0181 018b");
    assert_eq!((r.code, r.stdout.as_str()), (1, "INT 1\n"));
    assert!(
        r.stderr.contains("invalid type byte 0x8b at byte 2"),
        "{}",
        r.stderr
    );
}

#[test]
fn truncated_streams_fail() {
    let full = encode(&["[1, 'abc']"]);
    for cut in [2, 4, 10, 14, full.len() - 2] {
        let r = run(&["decode"], &full[..cut]);
        assert_eq!(r.code, 1, "{cut}");
        assert!(r.stdout.is_empty());
        assert!(r.stderr.contains("truncated stream"), "{}", r.stderr);
    }
    let r = run(&["decode"], "0088 0487 0582 6162");
    assert!(
        r.stderr
            .contains("ends inside a token at byte 4 (4 undecoded bytes)"),
        "{}",
        r.stderr
    );
    let r = run(&["decode"], "0088 0487 0181");
    assert!(
        r.stderr.contains("ends inside a message at byte 6"),
        "{}",
        r.stderr
    );
    let r = run(&["decode", "--tokens"], "0088 0487 0181");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("inside 1 open sequence"), "{}", r.stderr);
    let r = run(&["decode", "--tokens"], "0088 0582 61");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("inside a token at byte 2"),
        "{}",
        r.stderr
    );
}

#[test]
fn deep_nesting() {
    let lit = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let stream = encode(&[&lit]);
    let r = run(&["decode"], &stream);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim_end(), lit);
    let r = run(&["decode", "--tokens"], &stream);
    assert_eq!(r.code, 0);
    let last_open = r.stdout.lines().nth(2 * 499).unwrap();
    assert_eq!(last_open, format!("{}OPEN 499", " ".repeat(2 * 499)));
    // deeper than the literal parser's limit
    let too_deep = format!("{}{}", "[".repeat(1001), "]".repeat(1001));
    let r = run(&["encode", &too_deep], "");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("nesting deeper than 1000 levels at character 1000"),
        "{}",
        r.stderr
    );
}

#[test]
fn max_output_bounds_shared_values() {
    // [[1], <reference to the inner list>]
    let shared = "0088 0487  0188 0487 0181 0189  0288 0287 0181 0289  0089";
    let r = run(&["decode"], shared);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "[[1], [1]]\n"),
        "{}",
        r.stderr
    );
    let r = run(&["decode", "--max-output", "11"], shared);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["decode", "--max-output", "10"], shared);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("value #1 would take the output past --max-output (10 bytes)"),
        "{}",
        r.stderr
    );
    // the bound covers the whole output, not each value
    let two = format!("{shared} 0388 0487 0389");
    let r = run(&["decode", "--max-output", "14"], &two);
    assert_eq!((r.code, r.stdout.as_str()), (0, "[[1], [1]]\n[]\n"));
    let r = run(&["decode", "--max-output", "13"], &two);
    assert_eq!((r.code, r.stdout.as_str()), (1, "[[1], [1]]\n"));
    // exponential sharing: each list holds the previous one twice
    let r = run(&["decode", "--max-output", "100000"], &doubling_stream(60));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--max-output (100000 bytes)"),
        "{}",
        r.stderr
    );
    let r = run(&["decode"], &doubling_stream(3));
    assert_eq!(r.stdout, "[[[[], []], [[], []]], [[[], []], [[], []]]]\n");
}

/// A banana INT-style header for `n` (base-128 digits, little-endian).
fn header(mut n: u64) -> String {
    let mut s = String::new();
    loop {
        s.push_str(&format!("{:02x}", n & 0x7f));
        n >>= 7;
        if n == 0 {
            return s;
        }
    }
}

/// `[[...x, x], [...x, x]]` nested `levels` deep, each inner list sent
/// once and then referenced.
fn doubling_stream(levels: u64) -> String {
    // Open lists 0..levels, innermost empty; on the way out each list
    // gets a reference to its child as second item.
    let mut s = String::new();
    let mut next = 0u64;
    let mut ids = Vec::new();
    for _ in 0..=levels {
        s.push_str(&format!("{}88 0487 ", header(next)));
        ids.push(next);
        next += 1;
    }
    // close the innermost
    let inner = ids.pop().unwrap();
    s.push_str(&format!("{}89 ", header(inner)));
    let mut child = inner;
    while let Some(id) = ids.pop() {
        let r = next;
        next += 1;
        s.push_str(&format!(
            "{}88 0287 {}81 {}89 {}89 ",
            header(r),
            header(child),
            header(r),
            header(id)
        ));
        child = id;
    }
    s
}
