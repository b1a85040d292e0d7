//! The parser's fast paths (ints of up to 18 digits, strings without
//! escapes) and the printer's (ints that fit an i64) give the same values
//! and text as the general paths, at and around their edges.

use foolscap_logging::json::{parse, write};
use foolscap_logging::repr::repr_string;
use foolscap_logging::Value;
use num_bigint::BigInt;

#[test]
fn ints_around_the_fast_path_edges() {
    for text in [
        "0",
        "-0",
        "7",
        "-7",
        "123456789012345678",
        "-999999999999999999",
        "1000000000000000000",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "12345678901234567890123",
    ] {
        let v = parse(text, Default::default()).expect("parse");
        let want: BigInt = text.parse().expect("bigint");
        assert_eq!(v, Value::Int(want.clone()), "{text}");
        let canonical = want.to_string();
        assert_eq!(repr_string(&v), canonical, "{text}");
        let mut out = String::new();
        write(&v, &mut out);
        assert_eq!(out, canonical, "{text}");
    }
}

#[test]
fn strings_with_and_without_escapes() {
    for (text, want) in [
        (r#""""#, ""),
        (r#""plain text""#, "plain text"),
        (r#""caf\u00e9 \"q\" \\ end""#, "café \"q\" \\ end"),
        (r#""tail escape\n""#, "tail escape\n"),
        ("\"caf\u{e9} raw\"", "café raw"),
    ] {
        let v = parse(text, Default::default()).expect("parse");
        assert_eq!(v, Value::Str(want.into()), "{text}");
    }
    assert!(parse("\"unterminated", Default::default()).is_err());
    assert!(parse("\"bad \\q escape\"", Default::default()).is_err());
}
