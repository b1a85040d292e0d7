//! `format_message` against results Python computed: each line of
//! `format_cases.jsonl` is `[event, ["ok", text] | ["key", repr(key)]]`,
//! written by Python 3.11's `json.dumps` from foolscap 24.9.0's own
//! `format_message` (so it also exercises our reader of Python's JSON).

use foolscap_logging::json::{parse, JsonLimits};
use foolscap_logging::{format_message, Value};

#[test]
fn format_message_as_python() {
    let text = include_str!("format_cases.jsonl");
    let mut n = 0;
    for line in text.lines() {
        let Value::List(pair) = parse(line, JsonLimits::default()).expect(line) else {
            panic!("{line}")
        };
        let (Value::Dict(event), Value::List(expected)) = (&pair[0], &pair[1]) else {
            panic!("{line}")
        };
        let got = match format_message(event) {
            Ok(t) => ("ok", t),
            Err(k) => ("key", k.0),
        };
        assert_eq!(
            (got.0, got.1.as_str()),
            (expected[0].as_str().unwrap(), expected[1].as_str().unwrap()),
            "{line}"
        );
        n += 1;
    }
    assert!(n >= 25);
}
