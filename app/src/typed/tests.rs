use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;

use super::*;

/// `x` to a value and back gives `x`, and the value is `expected`.
fn round_trip<T: ToValue + FromValue + PartialEq + Debug>(x: T, expected: Value) {
    let v = x.to_value();
    assert_eq!(v, expected, "{x:?} as a value");
    assert_eq!(T::from_value_alone(&v).unwrap(), x);
}

/// The text of the error converting `v` to `T`.
fn refusal<T: FromValue + Debug>(v: &Value) -> String {
    T::from_value_alone(v).unwrap_err().to_string()
}

fn i(n: i64) -> Value {
    Value::int(n)
}

fn big(b: BigInt) -> Value {
    Value::Int(Int::from(b))
}

#[test]
fn integers_round_trip_at_their_limits() {
    round_trip(i8::MIN, i(-128));
    round_trip(u8::MAX, i(255));
    round_trip(i16::MAX, i(32767));
    round_trip(u16::MAX, i(65535));
    round_trip(i32::MIN, i(i32::MIN as i64));
    round_trip(u32::MAX, i(u32::MAX as i64));
    round_trip(i64::MIN, i(i64::MIN));
    round_trip(u64::MAX, big(BigInt::from(u64::MAX)));
    round_trip(usize::MAX, big(BigInt::from(usize::MAX)));
    round_trip(isize::MIN, i(isize::MIN as i64));
    round_trip(i128::MIN, big(BigInt::from(i128::MIN)));
    round_trip(u128::MAX, big(BigInt::from(u128::MAX)));
    round_trip(5u128, i(5));
    let huge = BigInt::from(7).pow(1000);
    round_trip(huge.clone(), big(huge.clone()));
    round_trip(Int::from(huge.clone()), big(huge));
}

#[test]
fn integers_out_of_range_are_refused_with_the_range() {
    assert_eq!(
        refusal::<u8>(&i(256)),
        "value must be an int from 0 to 255 (u8), not 256"
    );
    assert_eq!(
        refusal::<u8>(&i(-1)),
        "value must be an int from 0 to 255 (u8), not -1"
    );
    assert_eq!(
        refusal::<i32>(&i(1 << 31)),
        "value must be an int from -2147483648 to 2147483647 (i32), not 2147483648"
    );
    assert_eq!(
        refusal::<u64>(&i(-1)),
        "value must be an int from 0 to 18446744073709551615 (u64), not -1"
    );
    assert_eq!(
        refusal::<i64>(&big(BigInt::from(u64::MAX))),
        "value must be an int from -9223372036854775808 to 9223372036854775807 (i64), not an int of 64 bits"
    );
    assert_eq!(
        refusal::<u128>(&big(-BigInt::from(2).pow(70))),
        "value must be an int from 0 to 340282366920938463463374607431768211455 (u128), not an int of 71 bits"
    );
}

#[test]
fn wrong_types_name_what_was_expected_and_what_came() {
    assert_eq!(
        refusal::<i64>(&Value::str("1")),
        "value must be int, not str"
    );
    // bool is not int (nor is a float)
    assert_eq!(
        refusal::<i64>(&Value::Bool(true)),
        "value must be int, not bool"
    );
    assert_eq!(
        refusal::<BigInt>(&Value::Float(1.0)),
        "value must be int, not float"
    );
    assert_eq!(refusal::<bool>(&i(1)), "value must be bool, not int");
    assert_eq!(
        refusal::<f64>(&Value::str("x")),
        "value must be float, not str"
    );
    assert_eq!(refusal::<()>(&i(0)), "value must be None, not int");
    assert_eq!(
        refusal::<String>(&Value::bytes(b"x")),
        "value must be str, not bytes"
    );
    assert_eq!(
        refusal::<Text>(&Value::None),
        "value must be str, not NoneType"
    );
    assert_eq!(
        refusal::<Bytes>(&Value::str("x")),
        "value must be bytes, not str"
    );
    assert_eq!(
        refusal::<Vec<i64>>(&Value::Tuple(vec![])),
        "value must be list, not tuple"
    );
    assert_eq!(
        refusal::<(i64,)>(&Value::List(vec![i(1)])),
        "value must be tuple, not list"
    );
    assert_eq!(
        refusal::<(i64, i64)>(&Value::Tuple(vec![i(1)])),
        "value must be a tuple of 2 items, not of 1"
    );
    assert_eq!(
        refusal::<BTreeSet<i64>>(&Value::List(vec![])),
        "value must be set, not list"
    );
    assert_eq!(
        refusal::<HashMap<String, i64>>(&Value::List(vec![])),
        "value must be dict, not list"
    );
    assert_eq!(
        refusal::<RemoteRef>(&i(1)),
        "value must be a remote reference, not int"
    );
    assert_eq!(
        refusal::<ObjectId>(&i(1)),
        "value must be one of our objects, not int"
    );
    assert_eq!(
        refusal::<f64>(&big(BigInt::from(2).pow(1024))),
        "value int too large to convert to float"
    );
}

#[test]
fn errors_say_where_in_the_value() {
    let v = Value::List(vec![i(1), i(2), Value::str("3")]);
    assert_eq!(refusal::<Vec<i64>>(&v), "value[2] must be int, not str");
    let v = Value::Dict(vec![(Value::str("k"), Value::List(vec![Value::None]))]);
    assert_eq!(
        refusal::<BTreeMap<String, Vec<u8>>>(&v),
        "value['k'] must be bytes, not list"
    );
    assert_eq!(
        refusal::<HashMap<String, Vec<i64>>>(&v),
        "value['k'][0] must be int, not NoneType"
    );
    let v = Value::Dict(vec![(Value::bytes(b"k"), i(1))]);
    assert_eq!(
        refusal::<HashMap<String, i64>>(&v),
        "value key must be str, not bytes"
    );
    let v = Value::Tuple(vec![i(1), Value::Tuple(vec![i(2), i(3)])]);
    assert_eq!(
        refusal::<(i64, (i64, String))>(&v),
        "value[1][1] must be str, not int"
    );
    let v = Value::Set(vec![i(1), Value::None]);
    assert_eq!(
        refusal::<HashSet<i64>>(&v),
        "value[1] must be int, not NoneType"
    );
    // named by its place, as the server adapter names arguments
    let e = Vec::<i64>::from_value_alone(&Value::List(vec![Value::None]))
        .unwrap_err()
        .within("K.remote_f() argument 'items'");
    assert_eq!(
        e.to_string(),
        "K.remote_f() argument 'items'[0] must be int, not NoneType"
    );
    assert_eq!(e.message(), "must be int, not NoneType");
    let f = e.to_failure();
    assert!(f.check("builtins.TypeError"));
    assert_eq!(f.value, e.to_string());
}

#[test]
fn text_bytes_and_none() {
    round_trip(true, Value::Bool(true));
    round_trip(2.5f64, Value::Float(2.5));
    round_trip(f64::NEG_INFINITY, Value::Float(f64::NEG_INFINITY));
    // Python's float accepts an int
    assert_eq!(f64::from_value_alone(&i(3)).unwrap(), 3.0);
    round_trip("h\u{e9}".to_string(), Value::str("h\u{e9}"));
    round_trip(Text::from("t"), Value::str("t"));
    assert_eq!("s".to_value(), Value::str("s"));
    round_trip(Bytes::from_static(b"\x00b"), Value::bytes(b"\x00b"));
    round_trip((), Value::None);
    round_trip(Some(3u8), i(3));
    round_trip(None::<u8>, Value::None);
    round_trip(Box::new(7i16), i(7));
}

#[test]
fn vec_u8_is_bytes_never_a_list_of_ints() {
    round_trip(vec![1u8, 2], Value::bytes(&[1, 2]));
    assert_eq!([1u8, 2][..].to_value(), Value::bytes(&[1, 2]));
    assert_eq!(
        refusal::<Vec<u8>>(&Value::List(vec![i(1)])),
        "value must be bytes, not list"
    );
    assert_eq!(Vec::<u8>::constraint(), Constraint::bytes());
    assert_eq!(
        <Vec<u8> as MaxLen>::constraint_with_max_len(3),
        Constraint::byte_string(Some(3))
    );
    // u8 alone is an int; a wider int type gives a list of ints
    round_trip(5u8, i(5));
    round_trip(vec![1u16, 2], Value::List(vec![i(1), i(2)]));
    // a list of byte strings
    round_trip(
        vec![vec![1u8], vec![]],
        Value::List(vec![Value::bytes(&[1]), Value::bytes(&[])]),
    );
}

#[test]
fn containers_round_trip() {
    round_trip(
        vec!["a".to_string(), "b".to_string()],
        Value::List(vec![Value::str("a"), Value::str("b")]),
    );
    round_trip(
        (1u8, "x".to_string(), (true,)),
        Value::Tuple(vec![
            i(1),
            Value::str("x"),
            Value::Tuple(vec![Value::Bool(true)]),
        ]),
    );
    round_trip(
        BTreeMap::from([("a".to_string(), vec![1i64]), ("b".to_string(), vec![])]),
        Value::Dict(vec![
            (Value::str("a"), Value::List(vec![i(1)])),
            (Value::str("b"), Value::List(vec![])),
        ]),
    );
    // a set is a Python set, never a frozenset
    round_trip(BTreeSet::from([2i64, 1]), Value::Set(vec![i(1), i(2)]));
    let hs = HashSet::from([5i32]);
    assert_eq!(hs.to_value(), Value::Set(vec![i(5)]));
    let hm = HashMap::from([(1i64, "one".to_string())]);
    assert_eq!(hm.to_value(), Value::Dict(vec![(i(1), Value::str("one"))]));
    assert_eq!(
        HashMap::<i64, String>::from_value_alone(&hm.to_value()).unwrap(),
        hm
    );
    // a frozenset that arrives is accepted as a set
    assert_eq!(
        HashSet::<i32>::from_value_alone(&Value::FrozenSet(vec![i(5)])).unwrap(),
        hs
    );
    // Value passes anything through
    let v = Value::List(vec![
        Value::FrozenSet(vec![Value::None]),
        Value::Float(f64::NAN),
    ]);
    round_trip(v.clone(), v);
}

#[test]
fn constraints_follow_the_table() {
    assert_eq!(bool::constraint(), Constraint::boolean());
    assert_eq!(i8::constraint(), Constraint::int32());
    assert_eq!(u8::constraint(), Constraint::int32());
    assert_eq!(u16::constraint(), Constraint::int32());
    assert_eq!(i32::constraint(), Constraint::int32());
    assert_eq!(u32::constraint(), Constraint::int_bytes(4));
    assert_eq!(i64::constraint(), Constraint::int_bytes(8));
    assert_eq!(usize::constraint(), Constraint::int_bytes(8));
    assert_eq!(u128::constraint(), Constraint::int_bytes(16));
    assert_eq!(BigInt::constraint(), Constraint::int());
    assert_eq!(Int::constraint(), Constraint::int());
    assert_eq!(f64::constraint(), Constraint::number());
    assert_eq!(<()>::constraint(), Constraint::Nothing);
    assert_eq!(String::constraint(), Constraint::text());
    assert_eq!(Bytes::constraint(), Constraint::bytes());
    assert_eq!(
        Option::<bool>::constraint(),
        Constraint::boolean().or_none()
    );
    assert_eq!(
        <(i32, String)>::constraint(),
        Constraint::tuple_of([Constraint::int32(), Constraint::text()])
    );
    assert_eq!(
        Vec::<String>::constraint_with_max_len(2),
        Constraint::list_of(Constraint::text(), Some(2))
    );
    assert_eq!(
        Option::<String>::constraint_with_max_len(5),
        Constraint::unicode(Some(5)).or_none()
    );
    assert_eq!(
        BTreeSet::<i64>::constraint_with_max_len(9),
        Constraint::set_of(Constraint::int_bytes(8), Some(9))
    );
    assert_eq!(
        HashMap::<String, bool>::constraint_with_max_len(4),
        Constraint::dict_of(Constraint::text(), Constraint::boolean(), Some(4))
    );
    assert_eq!(RemoteRef::constraint(), Constraint::any_reference());
    assert_eq!(Value::constraint(), Constraint::Any);
}

#[test]
fn conversions_see_through_sharing() {
    // f(x, [x, x]) with x = [1, 2]: the message holds x once
    let x = Value::List(vec![i(1), i(2)]);
    let args = vec![
        Value::Anchor(1, Box::new(x)),
        Value::List(vec![Value::Alias(1), Value::Alias(1)]),
    ];
    let scope = Scope::new(&args);
    let cx = Context::new(&scope, None);
    assert_eq!(Vec::<i64>::from_value(&args[0], &cx).unwrap(), [1, 2]);
    assert_eq!(
        Vec::<Vec<i64>>::from_value(&args[1], &cx).unwrap(),
        [[1, 2], [1, 2]]
    );
    // a Value taken out of its message is self-contained
    assert_eq!(
        Value::from_value(&args[1], &cx).unwrap(),
        Value::List(vec![
            Value::Anchor(1, Box::new(Value::List(vec![i(1), i(2)]))),
            Value::Alias(1)
        ])
    );
    // an alias the message does not anchor
    assert_eq!(
        Vec::<i64>::from_value(&Value::Alias(9), &cx)
            .unwrap_err()
            .to_string(),
        "value refers to shared value 9, which is not in its message"
    );
}

/// A recursive Rust type meets a cycle: refused at MAX_DEPTH, no stack
/// overflow.
#[derive(Debug, PartialEq)]
struct Tree(Vec<Tree>);

impl FromValue for Tree {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        Vec::<Tree>::from_value(v, cx).map(Tree)
    }
}

#[test]
fn a_cycle_stops_at_the_depth_limit() {
    // y = [y]
    let y = Value::Anchor(1, Box::new(Value::List(vec![Value::Alias(1)])));
    let err = Tree::from_value_alone(&y).unwrap_err();
    assert_eq!(
        err.message(),
        format!("nests deeper than {MAX_DEPTH} levels (a cycle?)")
    );
    // a deep but finite value converts
    let mut v = Value::List(vec![]);
    for _ in 0..500 {
        v = Value::List(vec![v]);
    }
    assert!(Tree::from_value_alone(&v).is_ok());
}

#[test]
fn the_depth_guard_unwinds() {
    let scope = Scope::default();
    let cx = Context::new(&scope, None);
    {
        let _a = cx.enter().unwrap();
        let _b = cx.enter().unwrap();
        assert_eq!(cx.depth.get(), 2);
    }
    assert_eq!(cx.depth.get(), 0);
}

#[test]
fn typed_references_need_a_tub() {
    // a stub made from a remote reference without a Tub to call through
    let r = RemoteRef::new(
        foolscap_core::id::ConnectionId(1),
        3,
        Bytes::from_static(b"RIX"),
        None,
    );
    let v = Value::Remote(r.clone());
    assert_eq!(RemoteRef::from_value_alone(&v).unwrap(), r);
    let err = __rt::stub_parts(&v, &Context::new(&Scope::default(), None), "RIX").unwrap_err();
    assert_eq!(
        err.to_string(),
        "value is a reference to RIX, which needs a Tub to call through (a Context without one)"
    );
    let err = __rt::stub_parts(&v, &Context::new(&Scope::default(), None), "RIY").unwrap_err();
    assert_eq!(
        err.to_string(),
        "value must be a reference to RIY, not to 'RIX'"
    );
    let err = __rt::stub_parts(&i(1), &Context::new(&Scope::default(), None), "RIY").unwrap_err();
    assert_eq!(err.to_string(), "value must be a reference to RIY, not int");
}

#[test]
fn copyable_helpers() {
    let v = __rt::copyable_value("t.P", vec![(Text::from("x"), i(1))]);
    let scope = Scope::default();
    let cx = Context::new(&scope, None);
    let state = __rt::copyable_state(&v, &cx, "t.P", &["x", "y"]).unwrap();
    assert_eq!(__rt::attribute::<i64>(state, "x", &cx).unwrap(), 1);
    assert_eq!(
        __rt::attribute::<Option<i64>>(state, "y", &cx).unwrap(),
        None
    );
    assert_eq!(
        __rt::attribute::<i64>(state, "y", &cx)
            .unwrap_err()
            .to_string(),
        "value is missing attribute 'y'"
    );
    assert_eq!(
        __rt::attribute::<String>(state, "x", &cx)
            .unwrap_err()
            .to_string(),
        "value.x must be str, not int"
    );
    assert_eq!(
        __rt::copyable_state(&v, &cx, "t.P", &["y"])
            .unwrap_err()
            .to_string(),
        "value has unknown attribute 'x'"
    );
    assert_eq!(
        __rt::copyable_state(&v, &cx, "t.Q", &["x"])
            .unwrap_err()
            .to_string(),
        "value must be copyable 't.Q', not copyable 't.P'"
    );
    assert_eq!(
        __rt::copyable_state(&i(1), &cx, "t.Q", &["x"])
            .unwrap_err()
            .to_string(),
        "value must be copyable 't.Q', not int"
    );
}

#[test]
fn client_arguments_go_by_keyword_after_a_gap() {
    let mut a = __rt::Args::with_capacity(3);
    a.push("a", i(1));
    a.push_optional("b", None);
    a.push_optional("c", Some(i(3)));
    assert_eq!(a.args, [i(1)]);
    assert_eq!(a.kwargs, [(Text::from("c"), i(3))]);
}

#[test]
fn class_names_are_bare() {
    assert_eq!(__rt::class_name::<Tree>(), "Tree");
    assert_eq!(__rt::class_name::<Vec<Tree>>(), "Vec");
}
