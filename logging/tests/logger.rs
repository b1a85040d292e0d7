//! The in-process logger against the rules of Python's `FoolscapLogger`
//! (docs/logging.md §6): numbering, thresholds, history buffers, the
//! `log.msg` field rules, incidents (name, content, trailing limit,
//! timer, compression, observers) and the JSON of the values without a
//! JSON form.

use foolscap_logging::json;
use foolscap_logging::level::*;
use foolscap_logging::logger::{base32, incident_time};
use foolscap_logging::{files, flog, Dict, Event, Failure, Logger, ReadLimits, Value};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

fn d(pairs: &[(&str, Value)]) -> Dict {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(*k, v.clone());
    }
    d
}

fn keys(e: &Event) -> Vec<String> {
    e.0.iter().map(|(k, _)| k.to_owned()).collect()
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!(
        "foolscap-logger-{}-{}-{}",
        tag,
        std::process::id(),
        Logger::new().incarnation()
    ));
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn fields_are_filled_as_python_fills_them() {
    let l = Logger::new();
    assert_eq!(l.incarnation().len(), 16);
    assert!(l
        .incarnation()
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(l.msg(Dict::new()), 0);
    assert_eq!(l.msg(d(&[("message", "hello".into())])), 1);
    assert_eq!(
        l.msg(d(&[
            ("parent", 0i64.into()),
            ("level", NOISY.into()),
            ("message", "child".into())
        ])),
        2
    );
    l.msg(d(&[
        ("format", "%(n)d in %(w)s".into()),
        ("n", 2i64.into()),
        ("w", "box".into()),
    ]));
    l.msg(d(&[("message", 12i64.into())]));
    let h = l.history();
    // Python's key order: the caller's keys, then num, level, message, time, incarnation
    assert_eq!(
        keys(&h[0]),
        ["num", "level", "message", "time", "incarnation"]
    );
    assert_eq!(h[0].get("message"), Some(&Value::Str(String::new())));
    assert_eq!(
        keys(&h[1]),
        ["message", "num", "level", "time", "incarnation"]
    );
    assert_eq!(
        keys(&h[2]),
        ["parent", "level", "message", "num", "time", "incarnation"]
    );
    // with a format nothing else is added
    assert_eq!(
        keys(&h[3]),
        ["format", "n", "w", "num", "level", "time", "incarnation"]
    );
    assert_eq!(h[3].format_message().unwrap(), "2 in box");
    // message is str()-ed
    assert_eq!(h[4].get("message"), Some(&Value::Str("12".into())));
    assert_eq!(
        h[1].get("incarnation"),
        Some(&Value::Tuple(vec![
            Value::Str(l.incarnation()),
            Value::None
        ]))
    );
    assert_eq!(h[2].level(), NOISY);
    // a given time and num are kept
    l.msg(d(&[("num", 77i64.into()), ("time", 5.5.into())]));
    let last = l.history().pop().unwrap();
    assert_eq!(last.num(), Some(77));
    assert_eq!(last.get("time"), Some(&Value::Float(5.5)));
    assert_eq!(l.next_num(), 5);
}

#[test]
fn numbers_are_consumed_by_dropped_events() {
    let l = Logger::new();
    // default threshold NOISY: below it is dropped
    assert_eq!(l.msg(d(&[("level", 5i64.into())])), 0);
    l.set_generation_threshold(UNUSUAL, Some("app"));
    assert_eq!(l.generation_threshold(Some("app")), UNUSUAL);
    assert_eq!(l.generation_threshold(None), NOISY);
    let f = |lvl: i64, fac: Option<&str>| {
        let mut x = d(&[("level", lvl.into())]);
        if let Some(fac) = fac {
            x.insert("facility", fac);
        }
        l.msg(x)
    };
    assert_eq!(f(OPERATIONAL, Some("app")), 1); // dropped
    assert_eq!(f(OPERATIONAL, Some("app.sub")), 2); // exact facility only: kept
    assert_eq!(f(UNUSUAL, Some("app")), 3); // kept
    assert_eq!(f(OPERATIONAL, None), 4); // kept
    let nums: Vec<i64> = l.history().iter().map(|e| e.num().unwrap()).collect();
    assert_eq!(nums, [2, 3, 4]);
}

#[test]
fn history_keeps_100_per_facility_and_level() {
    let l = Logger::new();
    for i in 0..250i64 {
        l.msg(d(&[("message", format!("a{}", i).into())]));
        l.msg(d(&[("message", "b".into()), ("level", UNUSUAL.into())]));
        l.msg(d(&[("message", "c".into()), ("facility", "x".into())]));
    }
    let h = l.history();
    assert_eq!(h.len(), 300);
    assert!(h.windows(2).all(|w| w[0].num() < w[1].num()));
    assert_eq!(h[0].get("message"), Some(&Value::Str("a150".into())));
    l.set_buffer_size(UNUSUAL, 3, None);
    l.set_buffer_size(OPERATIONAL, 7, Some("x"));
    assert_eq!(l.history().len(), 110);
    l.set_buffer_size(UNUSUAL, 0, None);
    assert_eq!(l.history().len(), 107);
}

#[test]
fn observers_see_stored_events_and_can_log() {
    let l = Logger::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let l2 = l.clone();
    let id = l.add_observer(Arc::new(move |e: &Event| {
        s2.lock().unwrap().push(e.num().unwrap());
        // an observer may log (no lock is held while it runs)
        if e.facility() == "echo" {
            l2.msg(d(&[("message", "echoed".into())]));
        }
    }));
    l.msg(d(&[("level", 1i64.into())])); // dropped: not observed
    l.msg(d(&[("facility", "echo".into())]));
    l.remove_observer(id);
    l.msg(Dict::new());
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
}

#[test]
fn builder_and_macro() {
    let l = Logger::new();
    let p = l
        .event("connecting to %s")
        .arg("host")
        .facility("app.net")
        .log();
    let n = flog!(l, "%s of %d", "part", 3; level = WEIRD, parent = p, size = 10);
    #[derive(Debug)]
    struct Oops;
    impl std::fmt::Display for Oops {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("it broke")
        }
    }
    impl std::error::Error for Oops {}
    l.error(&Oops, Some("while testing")).level(BAD).log();
    let h = l.history();
    assert_eq!(h[0].format_message().unwrap(), "connecting to host");
    assert_eq!(h[0].facility(), "app.net");
    assert_eq!(h[1].num(), Some(n as i64));
    // Python's order for log.msg("%s of %d", "part", 3, level=…, parent=…, size=…)
    assert_eq!(
        keys(&h[1]),
        [
            "level",
            "parent",
            "size",
            "num",
            "message",
            "args",
            "time",
            "incarnation"
        ]
    );
    assert_eq!(h[1].format_message().unwrap(), "part of 3");
    assert_eq!(h[1].get("parent"), Some(&Value::from(p)));
    assert_eq!(h[1].get("size"), Some(&Value::from(10i64)));
    assert_eq!(
        keys(&h[2]),
        [
            "failure",
            "why",
            "isError",
            "level",
            "num",
            "message",
            "time",
            "incarnation"
        ]
    );
    let Some(Value::Failure(f)) = h[2].get("failure") else {
        panic!()
    };
    assert_eq!(f.value, "it broke");
    assert!(f.type_name.ends_with("Oops"));
    assert_eq!(h[2].format_message().unwrap(), "");
}

/// What Python's `json.dumps(v, cls=flogfile.ExtendedEncoder)` printed for
/// these values (run against foolscap 24.9.0).
#[test]
fn values_without_json_form_encode_as_python() {
    let f = Failure {
        value: "boom".into(),
        type_name: "exceptions.ValueError".into(),
        traceback: "Traceback here\n".into(),
        parents: vec!["exceptions.ValueError".into()],
    };
    let v = Value::Dict(d(&[
        ("a", Value::Bytes(b"x".to_vec())),
        ("s", Value::Set(vec![1i64.into(), 2i64.into()])),
        ("e", Value::Set(vec![])),
        ("fs", Value::FrozenSet(vec![1i64.into()])),
        ("f", Value::Failure(Box::new(f))),
    ]));
    let mut out = String::new();
    json::write(&v, &mut out);
    let m = "log.msg() was given an object that could not be encoded into JSON. I've replaced it with this UnJSONable object. The object's repr is in .repr";
    let expect = format!(
        concat!(
            r#"{{"a": {{"@": "UnJSONable", "message": "{m}", "repr": "b'x'"}}, "#,
            r#""s": {{"@": "UnJSONable", "message": "{m}", "repr": "{{1, 2}}"}}, "#,
            r#""e": {{"@": "UnJSONable", "message": "{m}", "repr": "set()"}}, "#,
            r#""fs": {{"@": "UnJSONable", "message": "{m}", "repr": "frozenset({{1}})"}}, "#,
            r#""f": {{"@": "Failure", "str": "[CopiedFailure instance: Traceback from remote host -- Traceback here\n]", "#,
            r#""repr": "<foolscap.call.CopiedFailure exceptions.ValueError: boom>", "#,
            r#""traceback": "Traceback from remote host -- Traceback here\n"}}}}"#
        ),
        m = m
    );
    assert_eq!(out, expect);
    let r = |v: Value| foolscap_logging::repr::repr_string(&v);
    assert_eq!(r(Value::Bytes(b"a'b".to_vec())), r#"b"a'b""#);
    assert_eq!(r(Value::Bytes(b"a'\"".to_vec())), r#"b'a\'"'"#);
    assert_eq!(r(Value::Bytes(b"\x00\xffbin".to_vec())), r"b'\x00\xffbin'");
    assert_eq!(r(Value::FrozenSet(vec![])), "frozenset()");
    assert_eq!(r(Value::Other("Decimal('1.5')".into())), "Decimal('1.5')");
}

#[test]
fn incident_names() {
    assert_eq!(base32(&[0, 0, 0, 0]), "aaaaaaa");
    assert_eq!(base32(&[0xff; 4]), "777777y");
    assert_eq!(base32(b"\x12\x34\x56\x78"), "ci2fm6a");
    assert_eq!(incident_time(1796572084.59), "2026-12-06--15-48-04Z");
    assert_eq!(incident_time(0.0), "1970-01-01--00-00-00Z");
    assert_eq!(incident_time(951782400.0), "2000-02-29--00-00-00Z");
}

fn read_all(path: &std::path::Path) -> Vec<Value> {
    files::open(path, ReadLimits::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn incident_logger(tag: &str) -> (Logger, std::path::PathBuf, mpsc::Receiver<(String, Event)>) {
    let l = Logger::new();
    let dir = tempdir(tag);
    l.set_log_dir(&dir).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    l.add_incident_observer(Arc::new(move |name: &str, trig: &Event| {
        let _ = tx.lock().unwrap().send((name.to_owned(), trig.clone()));
    }));
    (l, dir, rx)
}

#[test]
fn incident_records_history_and_at_most_100_trailing_events() {
    let (l, dir, rx) = incident_logger("cap");
    for i in 0..5 {
        l.event(format!("before {}", i)).log();
    }
    let trig = l
        .event("something WEIRD")
        .level(WEIRD)
        .facility("app.incident")
        .log();
    // a second trigger inside the window is absorbed
    for i in 0..150 {
        let lvl = if i == 3 { BAD } else { OPERATIONAL };
        l.event(format!("trailing {}", i)).level(lvl).log();
    }
    let (name, trigger) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(trigger.num(), Some(trig as i64));
    assert!(name.starts_with("incident-"), "{}", name);
    let unique = name.rsplit('-').next().unwrap();
    assert_eq!(unique.len(), 7);
    assert!(unique
        .bytes()
        .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [format!("{}.flog.bz2", name)]);
    let path = dir.join(format!("{}.flog.bz2", name));
    // really bzip2
    assert_eq!(&std::fs::read(&path).unwrap()[..3], b"BZh");
    let recs = read_all(&path);
    let header = recs[0]
        .as_dict()
        .unwrap()
        .get("header")
        .unwrap()
        .as_dict()
        .unwrap();
    assert_eq!(header.get("type"), Some(&Value::from("incident")));
    assert_eq!(
        header.get("trigger").unwrap().as_dict().unwrap().get("num"),
        Some(&Value::from(trig))
    );
    assert!(header.get("pid").is_some() && header.get("versions").is_some());
    let events: Vec<&Dict> = recs[1..]
        .iter()
        .map(|r| r.as_dict().unwrap().get("d").unwrap().as_dict().unwrap())
        .collect();
    // 5 before + trigger + 100 trailing
    assert_eq!(events.len(), 106);
    let nums: Vec<i64> = events
        .iter()
        .map(|e| e.get("num").unwrap().as_i64().unwrap())
        .collect();
    assert_eq!(nums, (0..106).collect::<Vec<i64>>());
    for r in &recs[1..] {
        assert_eq!(
            r.as_dict().unwrap().get("from"),
            Some(&Value::from("local"))
        );
    }
    assert_eq!(l.recent_incidents(), vec![path]);
    assert_eq!(l.incident_counts(), (2, 1));
    // the next trigger starts a new incident
    l.event("again").level(SCARY).log();
    l.finish_incidents();
    let (name2, _) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_ne!(name2, name);
    assert_eq!(l.recent_incidents().len(), 2);
    let recs = read_all(&dir.join(format!("{}.flog.bz2", name2)));
    // history: 100 of level 20 (the buffer's cap), the first trigger, the BAD one, the new trigger
    assert_eq!(recs.len(), 1 + 100 + 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn incident_ends_by_timer_when_no_event_comes() {
    let (l, dir, rx) = incident_logger("timer");
    l.set_incident_trailing(Some(Duration::from_millis(100)), 100);
    l.event("before").log();
    l.event("weird").level(WEIRD).log();
    // no further event: only the timer can end it
    let (name, trigger) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(trigger.num(), Some(1));
    let recs = read_all(&dir.join(format!("{}.flog.bz2", name)));
    assert_eq!(recs.len(), 3);
    assert!(!dir.join(format!("{}.flog", name)).exists());
    assert!(!dir.join(format!("{}.flog.bz2.tmp", name)).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_incident_without_log_dir() {
    let l = Logger::new();
    l.event("weird").level(BAD).log();
    l.finish_incidents();
    assert_eq!(l.incident_counts(), (0, 0));
    assert!(l.recent_incidents().is_empty());
    assert_eq!(l.log_dir(), None);
}

#[test]
fn flogfile_sink_and_flush() {
    let dir = tempdir("sink");
    for name in ["out.flog", "out.flog.bz2"] {
        let l = Logger::new();
        let path = dir.join(name);
        l.set_flogfile(&path, OPERATIONAL).unwrap();
        l.event("kept").log();
        l.event("below").level(NOISY).log();
        l.flush();
        l.event("after flush").level(WEIRD).log();
        l.flush();
        let recs = read_all(&path);
        assert_eq!(recs.len(), 3, "{}", name);
        let h = recs[0]
            .as_dict()
            .unwrap()
            .get("header")
            .unwrap()
            .as_dict()
            .unwrap();
        assert_eq!(h.get("type"), Some(&Value::from("log-file-observer")));
        assert_eq!(h.get("threshold"), Some(&Value::from(OPERATIONAL)));
        let nums: Vec<i64> = recs[1..]
            .iter()
            .map(|r| {
                let r = r.as_dict().unwrap();
                assert_eq!(r.get("from"), Some(&Value::from("local")));
                assert!(r.get("rx_time").unwrap().as_f64().is_some());
                r.get("d")
                    .unwrap()
                    .as_dict()
                    .unwrap()
                    .get("num")
                    .unwrap()
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(nums, [0, 2]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
