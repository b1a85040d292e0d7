//! The flogfile reader's limits and refusals, and the writer's bytes.

use foolscap_logging::json::JsonLimits;
use foolscap_logging::repr::float_repr;
use foolscap_logging::{
    level, Dict, Event, FlogReader, FlogWriter, ReadError, ReadLimits, Value, MAGIC,
};

fn read_all(bytes: &[u8], limits: ReadLimits) -> Result<Vec<Value>, ReadError> {
    FlogReader::new(bytes, limits)?.collect()
}

#[test]
fn magic_refusals() {
    let l = ReadLimits::default();
    assert!(matches!(read_all(b"(dp0\nS'x'", l), Err(ReadError::Pickle)));
    assert!(matches!(
        read_all(b"pb://x@y/z\n", l),
        Err(ReadError::FurlFile)
    ));
    assert!(matches!(
        read_all(b"# foolscap flogfile v2\n", l),
        Err(ReadError::BadMagic)
    ));
    assert!(matches!(read_all(b"", l), Err(ReadError::BadMagic)));
    assert_eq!(read_all(MAGIC, l).unwrap(), vec![]);
}

#[test]
fn line_limit_bounds_the_buffer() {
    let limits = ReadLimits {
        max_line_bytes: 100,
        ..ReadLimits::default()
    };
    let mut ok = MAGIC.to_vec();
    ok.extend_from_slice(format!("\"{}\"\n", "x".repeat(98)).as_bytes());
    assert_eq!(read_all(&ok, limits).unwrap().len(), 1);
    // one more byte and the line is refused, without newline too
    let mut long = MAGIC.to_vec();
    long.extend_from_slice(format!("\"{}\"", "x".repeat(99)).as_bytes());
    assert!(matches!(
        read_all(&long, limits),
        Err(ReadError::LineTooLong { limit: 100 })
    ));
    let mut endless = MAGIC.to_vec();
    endless.extend(std::iter::repeat_n(b' ', 10_000));
    assert!(matches!(
        read_all(&endless, limits),
        Err(ReadError::LineTooLong { .. })
    ));
}

#[test]
fn depth_and_integer_limits() {
    let limits = ReadLimits {
        max_line_bytes: 1 << 20,
        json: JsonLimits {
            max_depth: 8,
            max_int_digits: 10,
        },
    };
    let deep = |n: usize| {
        let mut v = MAGIC.to_vec();
        v.extend(std::iter::repeat_n(b'[', n));
        v.extend(std::iter::repeat_n(b']', n));
        v.push(b'\n');
        v
    };
    assert!(read_all(&deep(8), limits).is_ok());
    assert!(matches!(
        read_all(&deep(9), limits),
        Err(ReadError::Json(_))
    ));
    // a million brackets: refused at the limit, no stack overflow
    assert!(matches!(
        read_all(&deep(1_000_000), ReadLimits::default()),
        Err(ReadError::Json(_))
    ));
    let int = |d: usize| [MAGIC.as_slice(), "9".repeat(d).as_bytes(), b"\n"].concat();
    assert!(read_all(&int(10), limits).is_ok());
    assert!(matches!(
        read_all(&int(11), limits),
        Err(ReadError::Json(_))
    ));
}

#[test]
fn errors_stop_the_reader() {
    let bytes = [MAGIC.as_slice(), b"{}\n\n{}\n"].concat();
    let mut r = FlogReader::new(&bytes[..], ReadLimits::default()).unwrap();
    assert!(r.next().unwrap().is_ok());
    let e = r.next().unwrap().unwrap_err();
    assert_eq!(e.to_string(), "Expecting value: line 2 column 1 (char 1)");
    assert!(r.next().is_none());
    let bad = [MAGIC.as_slice(), b"\"a\xffb\"\n"].concat();
    assert_eq!(
        read_all(&bad, ReadLimits::default())
            .unwrap_err()
            .to_string(),
        "'utf-8' codec can't decode byte 0xff in position 2: invalid utf-8"
    );
}

#[test]
fn writer_bytes_are_python_json_dumps() {
    let mut w = FlogWriter::new(Vec::new()).unwrap();
    let mut h = Dict::new();
    h.insert("pid", 7i64);
    w.write_header("tail", &h).unwrap();
    let mut e = Event::new(
        0,
        1796572040.8974633,
        level::UNUSUAL,
        "86ce119702263278",
        "h\u{e9} \u{1f600} \"q\"\n",
    );
    e.0.insert("big", Value::Int("1180591620717411303424".parse().unwrap()));
    e.0.insert(
        "x",
        Value::List(vec![
            f64::NAN.into(),
            f64::NEG_INFINITY.into(),
            1e16.into(),
            1e-5.into(),
            0.5.into(),
        ]),
    );
    w.write_event(&e, "local", 1.0).unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "# foolscap flogfile v1\n\
         {\"header\": {\"type\": \"tail\", \"pid\": 7}}\n\
         {\"from\": \"local\", \"rx_time\": 1.0, \"d\": {\"num\": 0, \"time\": 1796572040.8974633, \"level\": 23, \
         \"incarnation\": [\"86ce119702263278\", null], \"message\": \"h\\u00e9 \\ud83d\\ude00 \\\"q\\\"\\n\", \
         \"big\": 1180591620717411303424, \"x\": [NaN, -Infinity, 1e+16, 1e-05, 0.5]}}\n"
    );
}

#[test]
fn python_float_repr() {
    for (f, s) in [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (1e16, "1e+16"),
        (1234567890123456.0, "1234567890123456.0"),
        (1e-4, "0.0001"),
        (1.5e-5, "1.5e-05"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (1796572040.9199116, "1796572040.9199116"),
    ] {
        assert_eq!(float_repr(f), s);
    }
}

#[test]
fn level_names() {
    assert_eq!(level::parse("UNUSUAL"), Some(23));
    assert_eq!(level::parse("35"), Some(35));
    assert_eq!(level::name(40), Some("BAD"));
    assert_eq!(level::parse("LOUD"), None);
}
