//! `flogtool dump` and `filter` against Python foolscap 24.9.0:
//!
//! * every Python-written flogfile in `tests/flogfiles/` (copies of the
//!   reference captures) dumps to exactly the reference dump, in every
//!   option set the captures cover;
//! * the same output as Python's own `flogtool dump` run now, for those
//!   files and for files our writer produced (plain and `.bz2`), in every
//!   option set;
//! * our writer re-writes Python's files byte for byte (plain), and Python
//!   reads our `.bz2` files;
//! * `filter` prints and writes what Python's `filter` prints and writes;
//! * broken files fail as Python's dump fails (exit 1, same stdout).
//!
//! Python comes from `scripts/python-env.sh`; its `flogtool` is beside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use foolscap_logging::value::{Dict, Value};
use foolscap_logging::{files, Event, ReadLimits};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flogfiles")
}

fn python_flogtool() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = Command::new("bash")
        .arg(root.join("scripts/python-env.sh"))
        .output()
        .expect("run scripts/python-env.sh");
    assert!(env.status.success(), "scripts/python-env.sh failed");
    let python = String::from_utf8(env.stdout).expect("utf-8");
    let python = PathBuf::from(python.lines().last().expect("python path").trim());
    python.with_file_name("flogtool")
}

fn run(tool: &Path, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()))
}

fn ours(args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_flogtool")), args)
}

/// The option sets of the reference dumps, with the suffix of their file.
const OPTIONS: [(&[&str], &str); 6] = [
    (&[], "dump"),
    (&["--verbose"], "dump-verbose"),
    (&["--just-numbers"], "dump-just-numbers"),
    (&["--rx-time", "--timestamps=utc"], "dump-rx-time-utc"),
    (&["--timestamps=epoch"], "dump-epoch"),
    (&["--timestamps=long-local"], "dump-long-local"),
];

const FILES: [(&str, &str); 4] = [
    ("19-tail.flog", "19-tail"),
    ("21-incident.flog.bz2", "21-incident"),
    ("21-gatherer.flog", "21-gatherer"),
    ("env-flogfile.flog", "env-flogfile"),
];

fn dump_args<'a>(opts: &[&'a str], file: &'a str) -> Vec<&'a str> {
    let mut a = vec!["dump"];
    a.extend_from_slice(opts);
    a.push(file);
    a
}

#[test]
fn reference_dumps_match() {
    let mut compared = 0;
    for (file, stem) in FILES {
        let path = data().join(file);
        for (opts, suffix) in OPTIONS {
            let Ok(expected) = std::fs::read(data().join(format!("{stem}.{suffix}"))) else {
                continue;
            };
            let out = ours(&dump_args(opts, path.to_str().unwrap()));
            assert!(out.status.success(), "{file} {opts:?}: {out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&expected),
                "{file} {opts:?}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 10, "every reference dump compared");
}

fn same_as_python(python: &Path, file: &Path, what: &str) {
    for (opts, _) in OPTIONS.iter().chain(
        [
            (&["-v", "-r", "-t", "epoch"][..], ""),
            (&["-n", "-t", "utc"][..], ""),
        ]
        .iter(),
    ) {
        let args = dump_args(opts, file.to_str().unwrap());
        let theirs = run(python, &args);
        let mine = ours(&args);
        assert_eq!(
            String::from_utf8_lossy(&mine.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{what}: {opts:?}"
        );
        assert_eq!(mine.status.code(), theirs.status.code(), "{what}: {opts:?}");
        assert!(theirs.status.success(), "{what}: {opts:?}: {theirs:?}");
    }
}

#[test]
fn python_dump_agrees_on_python_files() {
    let python = python_flogtool();
    for (file, _) in FILES {
        same_as_python(&python, &data().join(file), file);
    }
}

/// Re-write every record of `src` with our writer into `dst`.
fn rewrite(src: &Path, dst: &Path) {
    let reader = files::open(src, ReadLimits::default()).expect("open");
    let mut w = files::create(dst).expect("create");
    for r in reader {
        w.write_record(&r.expect("record")).expect("write");
    }
    w.finish().expect("finish").finish().expect("finish");
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flogtool-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

#[test]
fn our_writer_rewrites_python_files_exactly() {
    let dir = tempdir("rewrite");
    for (file, _) in FILES {
        let plain = dir.join(file.trim_end_matches(".bz2"));
        rewrite(&data().join(file), &plain);
        let original = if file.ends_with(".bz2") {
            let mut v = Vec::new();
            let f = std::fs::File::open(data().join(file)).unwrap();
            std::io::Read::read_to_end(&mut bzip2::read::BzDecoder::new(f), &mut v).unwrap();
            v
        } else {
            std::fs::read(data().join(file)).unwrap()
        };
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(&plain).unwrap()),
            String::from_utf8_lossy(&original),
            "{file}: json.dumps bytes"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn python_dump_reads_our_files() {
    let python = python_flogtool();
    let dir = tempdir("ours");
    // Python's files, re-written by us, compressed and not
    for (file, _) in FILES {
        let stem = file.trim_end_matches(".bz2");
        for name in [stem.to_string(), format!("{stem}.bz2")] {
            let ours_path = dir.join(&name);
            rewrite(&data().join(file), &ours_path);
            same_as_python(&python, &ours_path, &name);
            // and Python prints the same for ours as for its own
            let a = run(&python, &["dump", ours_path.to_str().unwrap()]);
            let b = run(&python, &["dump", data().join(file).to_str().unwrap()]);
            assert_eq!(a.stdout, b.stdout, "{name}");
        }
    }
    // events built in Rust, covering the formatting rules
    for name in ["built.flog", "built.flog.bz2"] {
        let path = dir.join(name);
        write_built(&path);
        same_as_python(&python, &path, name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file with an incident header and events exercising `format`, `args`
/// (a list: one argument), failures, non-ASCII text, Python repr of every
/// value kind, and `%` conversions with flags, widths and precisions.
fn write_built(path: &Path) {
    let inc = "0123456789abcdef";
    let mut w = files::create(path).expect("create");
    let mut trigger = Event::new(3, 1700000000.25, 30, inc, "the trigger");
    trigger.0.insert("facility", "app.x");
    let mut h = Dict::new();
    h.insert("trigger", trigger.0.clone());
    let mut versions = Dict::new();
    versions.insert("foolscap-rs", "0.1.0");
    versions.insert("foolscap", "24.9.0");
    h.insert("versions", versions);
    h.insert("pid", 4242i64);
    w.write_header("incident", &h).expect("header");
    let mut num = 0u64;
    let mut ev = |w: &mut foolscap_logging::FlogWriter<files::Output>, f: &dyn Fn(&mut Dict)| {
        let mut e = Event::new(num, 1700000000.0 + num as f64 * 0.001234567, 20, inc, "");
        e.0.remove("message");
        f(&mut e.0);
        w.write_event(&e, "rusttubid-and-more", 1700000001.5 + num as f64)
            .expect("event");
        num += 1;
    };
    let msg = |m: &str| {
        let m = m.to_owned();
        move |d: &mut Dict| d.insert("message", m.clone())
    };
    ev(&mut w, &msg("plain"));
    ev(&mut w, &msg("100% sure, %(kw)s literal"));
    ev(
        &mut w,
        &msg("h\u{e9}llo \u{2713} \u{1f600} tab\there 'q' \"dq\""),
    );
    ev(&mut w, &|d| d.insert("message", "the trigger"));
    ev(&mut w, &|d| {
        d.insert("format", "%(n)d items in %(where)s, %(f).2f%% %(n)05d|%(n)-4d|%(n)+d|%(n)x|%(n)#o|%(where)r|%(f)g|%(big)e|%(none)s|%(t)s");
        d.insert("n", 42i64);
        d.insert("where", "box");
        d.insert("f", 2.71875);
        d.insert("big", 1.5e300);
        d.insert("none", Value::None);
        d.insert("t", true);
    });
    ev(&mut w, &|d| {
        d.insert("message", "positional %s");
        d.insert("args", Value::List(vec!["arg".into()]));
    });
    ev(&mut w, &|d| {
        d.insert("message", "positional %s and %d");
        d.insert("args", Value::Tuple(vec!["abc".into(), 5i64.into()]));
    });
    ev(&mut w, &|d| {
        d.insert("message", "bad %y conversion");
        d.insert("args", Value::List(vec![]));
    });
    ev(&mut w, &|d| {
        d.insert("format", "no placeholders");
    });
    ev(&mut w, &|d| {
        d.insert("format", "whole %s");
        d.insert("x", 1i64);
    });
    ev(&mut w, &|d| {
        let mut f = Dict::new();
        f.insert("@", "Failure");
        f.insert(
            "str",
            "[Failure instance: Traceback: <class 'ValueError'>: boom\nline two\n]",
        );
        f.insert(
            "repr",
            "<twisted.python.failure.Failure builtins.ValueError: boom>",
        );
        f.insert("traceback", "Traceback...\n");
        d.insert("failure", f);
        d.insert("why", Value::None);
        d.insert("isError", 1i64);
        d.insert("message", "");
    });
    ev(&mut w, &|d| {
        d.insert("message", "values");
        d.insert("nan", f64::NAN);
        d.insert("inf", f64::INFINITY);
        d.insert("ninf", f64::NEG_INFINITY);
        d.insert("small", 1.5e-7);
        d.insert("large", 1e16);
        d.insert("third", 1.0 / 3.0);
        d.insert("int", Value::Int("1180591620717411303424".parse().unwrap()));
        d.insert("neg", -7i64);
        d.insert(
            "list",
            Value::List(vec![
                Value::None,
                true.into(),
                false.into(),
                Value::Tuple(vec![]),
            ]),
        );
        d.insert("ctl", "\u{0}\u{7f}\u{a0}\u{2028}\\");
        let mut inner = Dict::new();
        inner.insert("k'ey", Value::List(vec![1i64.into(), 2.5.into()]));
        d.insert("dict", inner);
    });
    ev(&mut w, &|d| {
        d.insert("message", "child");
        d.insert("parent", 0i64);
        d.insert("facility", "app.sub");
        d.insert("level", 10i64);
    });
    w.finish().expect("finish").finish().expect("finish");
}

#[test]
fn filter_matches_python() {
    let python = python_flogtool();
    let dir = tempdir("filter");
    let src = data().join("19-tail.flog");
    let cases: [&[&str]; 6] = [
        &[],
        &["--above=UNUSUAL"],
        &["--above", "20", "--strip-facility=foolscap"],
        &["--after=1796572041", "--before=1796572100", "-v"],
        &["--from=vfbz"],
        &["--from=nobody"],
    ];
    for (n, opts) in cases.iter().enumerate() {
        for ext in ["flog", "flog.bz2"] {
            let mut outs = Vec::new();
            for (who, tool) in [
                ("py", python.clone()),
                ("rs", PathBuf::from(env!("CARGO_BIN_EXE_flogtool"))),
            ] {
                let dst = dir.join(format!("{who}-{n}.{ext}"));
                let mut args = vec!["filter"];
                args.extend_from_slice(opts);
                args.push(src.to_str().unwrap());
                args.push(dst.to_str().unwrap());
                let out = run(&tool, &args);
                assert!(out.status.success(), "{who} {opts:?}: {out:?}");
                // the written file, as Python dumps it
                let dump = run(&python, &["dump", "-v", dst.to_str().unwrap()]);
                assert!(dump.status.success(), "{who} {opts:?}: {dump:?}");
                let bytes = if ext == "flog" {
                    std::fs::read(&dst).unwrap()
                } else {
                    Vec::new()
                };
                outs.push((out.stdout, dump.stdout, bytes));
            }
            assert_eq!(
                String::from_utf8_lossy(&outs[0].0),
                String::from_utf8_lossy(&outs[1].0),
                "{opts:?}: stdout"
            );
            assert_eq!(outs[0].1, outs[1].1, "{opts:?} {ext}: dump of the result");
            assert_eq!(outs[0].2, outs[1].2, "{opts:?} {ext}: file bytes");
        }
    }
    // in place
    for (who, tool) in [
        ("py", python.clone()),
        ("rs", PathBuf::from(env!("CARGO_BIN_EXE_flogtool"))),
    ] {
        let f = dir.join(format!("{who}-inplace.flog"));
        std::fs::copy(&src, &f).unwrap();
        let out = run(&tool, &["filter", "--above=23", f.to_str().unwrap()]);
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "modifying event file in place\n --above: removing events below level 23\ncopied 7 of 33 events into new file\n"
        );
    }
    assert_eq!(
        std::fs::read(dir.join("py-inplace.flog")).unwrap(),
        std::fs::read(dir.join("rs-inplace.flog")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_files_fail_as_python_does() {
    let python = python_flogtool();
    let dir = tempdir("broken");
    let good = std::fs::read(data().join("env-flogfile.flog")).unwrap();
    let lines: Vec<&[u8]> = good.split_inclusive(|b| *b == b'\n').collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"hello world, not a flogfile at all\n".to_vec()),
        ("furl", b"pb://abc@tcp:127.0.0.1:1/swiss\n".to_vec()),
        ("pickle", b"(dp0\nS'header'\np1\n".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 40].to_vec()),
        ("blank-line", [lines[0], lines[1], b"\n", lines[2]].concat()),
        ("concatenated", [good.clone(), good.clone()].concat()),
        ("no-incarnation", [lines[0], lines[1], b"{\"from\": \"x\", \"rx_time\": 1.0, \"d\": {\"num\": 1, \"time\": 2.5, \"message\": \"m\"}}\n"].concat()),
        ("key-error", [lines[0], lines[1], b"{\"from\": \"x\", \"rx_time\": 1.0, \"d\": {\"num\": 1, \"time\": 2.5, \"incarnation\": null, \"format\": \"%(nope)s\"}}\n"].concat()),
        ("bad-utf8", [lines[0], lines[1], b"{\"from\": \"\xff\"}\n"].concat()),
        ("header-only-magic", good[..23].to_vec()),
        ("huge-int", [lines[0], b"{\"d\": 1", &vec![b'0'; 5000][..], b"}\n"].concat()),
    ];
    for (name, bytes) in cases {
        let f = dir.join(format!("{name}.flog"));
        std::fs::write(&f, &bytes).unwrap();
        let theirs = run(&python, &["dump", f.to_str().unwrap()]);
        let mine = ours(&["dump", f.to_str().unwrap()]);
        assert_eq!(
            String::from_utf8_lossy(&mine.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{name}: stdout"
        );
        assert_eq!(
            mine.status.code(),
            theirs.status.code(),
            "{name}: exit status {mine:?}"
        );
        let first = |o: &Output| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        };
        if matches!(
            name,
            "garbage" | "furl" | "empty" | "truncated" | "blank-line" | "concatenated"
        ) {
            assert_eq!(first(&mine), first(&theirs), "{name}: stderr");
        }
    }
    // a bz2 file without the suffix is not a flogfile; with it, it is
    let bz = dir.join("incident.flog");
    std::fs::copy(data().join("21-incident.flog.bz2"), &bz).unwrap();
    let mine = ours(&["dump", bz.to_str().unwrap()]);
    assert_eq!(mine.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&mine.stderr),
        format!(
            "Error: {} does not appear to be a flogfile.\n\n",
            bz.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn local_times_follow_tz_as_python() {
    let python = python_flogtool();
    let file = data().join("19-tail.flog");
    for tz in ["America/New_York", "Asia/Kolkata"] {
        for mode in ["short-local", "long-local"] {
            let args = ["dump", "-t", mode, file.to_str().unwrap()];
            let with_tz = |tool: &Path| {
                Command::new(tool)
                    .args(args)
                    .env("TZ", tz)
                    .output()
                    .expect("run flogtool")
            };
            let theirs = with_tz(&python);
            let mine = with_tz(Path::new(env!("CARGO_BIN_EXE_flogtool")));
            assert!(theirs.status.success());
            assert_eq!(
                String::from_utf8_lossy(&mine.stdout),
                String::from_utf8_lossy(&theirs.stdout),
                "{tz} {mode}"
            );
        }
    }
}
