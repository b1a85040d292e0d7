//! Binding, and every TypeError text, as CPython 3.11 words it (each
//! expected message was printed by CPython for the same call of a method
//! of a class `K`).

use super::*;

fn kw(pairs: &[(&str, i64)]) -> Vec<(Text, Value)> {
    pairs
        .iter()
        .map(|(n, v)| (Text::from(*n), Value::int(*v)))
        .collect()
}

fn ints(n: i64) -> Vec<Value> {
    (1..=n).map(Value::int).collect()
}

/// The TypeError of calling `sig` with `n` positional arguments (1, 2,
/// ...) and keyword arguments `kwargs`.
fn error(sig: Signature, n: i64, kwargs: &[(&str, i64)]) -> String {
    let (args, kwargs) = (ints(n), kw(kwargs));
    match sig.bind("K", &args, &kwargs) {
        Ok(bound) => panic!("bound: {bound:?}"),
        Err(f) => {
            assert_eq!(f.type_name, "builtins.TypeError");
            assert!(f.check("builtins.Exception"));
            f.value
        }
    }
}

const AB: Signature = Signature::new("ab", &["a", "b"]);
const ABC: Signature = Signature::new("abc", &["a", "b", "c"]);
const ABCD: Signature = Signature::new("abcd", &["a", "b", "c", "d"]);
const NONE: Signature = Signature::new("none", &[]);
const A: Signature = Signature::new("a", &["a"]);
const ADEF: Signature = Signature::new("adef", &["a", "b"]).defaults(1);
const ABDEF: Signature = Signature::new("abdef", &["a", "b", "c"]).defaults(1);
const KWONLY: Signature = Signature::new("kwonly", &[]).keyword_only(&["key"]);
const MIXED: Signature = Signature::new("mixed", &["a"])
    .keyword_only(&["b", "c", "d"])
    .keyword_defaults(&["c"]);
const AB_KW: Signature = Signature::new("ab_kw", &["a"]).keyword_only(&["b"]);
const STAR: Signature = Signature::new("star", &["a"]).star_args();
const STARKW: Signature = Signature::new("starkw", &["a"]).star_kwargs();
const BOTH: Signature = Signature::new("both", &[])
    .star_args()
    .keyword_only(&["key"])
    .star_kwargs();

#[test]
fn missing_positional_arguments() {
    assert_eq!(
        error(A, 0, &[]),
        "K.remote_a() missing 1 required positional argument: 'a'"
    );
    assert_eq!(
        error(AB, 0, &[]),
        "K.remote_ab() missing 2 required positional arguments: 'a' and 'b'"
    );
    assert_eq!(
        error(ABC, 0, &[]),
        "K.remote_abc() missing 3 required positional arguments: 'a', 'b', and 'c'"
    );
    assert_eq!(
        error(ABCD, 1, &[]),
        "K.remote_abcd() missing 3 required positional arguments: 'b', 'c', and 'd'"
    );
    assert_eq!(
        error(ABDEF, 0, &[]),
        "K.remote_abdef() missing 2 required positional arguments: 'a' and 'b'"
    );
    assert_eq!(
        error(ADEF, 0, &[("b", 2)]),
        "K.remote_adef() missing 1 required positional argument: 'a'"
    );
    assert_eq!(
        error(STAR, 0, &[]),
        "K.remote_star() missing 1 required positional argument: 'a'"
    );
    // positional ones are reported before keyword-only ones
    assert_eq!(
        error(AB_KW, 0, &[]),
        "K.remote_ab_kw() missing 1 required positional argument: 'a'"
    );
}

#[test]
fn missing_keyword_only_arguments() {
    assert_eq!(
        error(KWONLY, 0, &[]),
        "K.remote_kwonly() missing 1 required keyword-only argument: 'key'"
    );
    assert_eq!(
        error(MIXED, 1, &[]),
        "K.remote_mixed() missing 2 required keyword-only arguments: 'b' and 'd'"
    );
    assert_eq!(
        error(MIXED, 1, &[("c", 5)]),
        "K.remote_mixed() missing 2 required keyword-only arguments: 'b' and 'd'"
    );
    assert_eq!(
        error(BOTH, 1, &[]),
        "K.remote_both() missing 1 required keyword-only argument: 'key'"
    );
}

#[test]
fn too_many_positional_arguments() {
    assert_eq!(
        error(AB, 3, &[]),
        "K.remote_ab() takes 3 positional arguments but 4 were given"
    );
    assert_eq!(
        error(NONE, 1, &[]),
        "K.remote_none() takes 1 positional argument but 2 were given"
    );
    assert_eq!(
        error(NONE, 2, &[]),
        "K.remote_none() takes 1 positional argument but 3 were given"
    );
    assert_eq!(
        error(ADEF, 3, &[]),
        "K.remote_adef() takes from 2 to 3 positional arguments but 4 were given"
    );
    assert_eq!(
        error(KWONLY, 1, &[]),
        "K.remote_kwonly() takes 1 positional argument but 2 were given"
    );
    // reported before a missing keyword-only argument
    assert_eq!(
        error(AB_KW, 2, &[]),
        "K.remote_ab_kw() takes 2 positional arguments but 3 were given"
    );
}

#[test]
fn too_many_positional_arguments_with_keyword_only_ones_given() {
    assert_eq!(
        error(KWONLY, 1, &[("key", 1)]),
        "K.remote_kwonly() takes 1 positional argument but 2 positional arguments \
         (and 1 keyword-only argument) were given"
    );
    assert_eq!(
        error(MIXED, 2, &[("b", 1)]),
        "K.remote_mixed() takes 2 positional arguments but 3 positional arguments \
         (and 1 keyword-only argument) were given"
    );
    assert_eq!(
        error(MIXED, 2, &[("b", 1), ("d", 2)]),
        "K.remote_mixed() takes 2 positional arguments but 3 positional arguments \
         (and 2 keyword-only arguments) were given"
    );
    // one with a default counts too
    assert_eq!(
        error(MIXED, 2, &[("c", 1)]),
        "K.remote_mixed() takes 2 positional arguments but 3 positional arguments \
         (and 1 keyword-only argument) were given"
    );
}

#[test]
fn multiple_values_for_an_argument() {
    assert_eq!(
        error(A, 1, &[("a", 2)]),
        "K.remote_a() got multiple values for argument 'a'"
    );
    assert_eq!(
        error(AB, 1, &[("b", 2), ("a", 3)]),
        "K.remote_ab() got multiple values for argument 'a'"
    );
    assert_eq!(
        error(STAR, 1, &[("a", 2)]),
        "K.remote_star() got multiple values for argument 'a'"
    );
    // **kwargs does not take a parameter's name
    assert_eq!(
        error(STARKW, 1, &[("a", 2), ("z", 3)]),
        "K.remote_starkw() got multiple values for argument 'a'"
    );
}

#[test]
fn unexpected_keyword_arguments() {
    assert_eq!(
        error(A, 0, &[("z", 2)]),
        "K.remote_a() got an unexpected keyword argument 'z'"
    );
    // reported before too many positional arguments
    assert_eq!(
        error(A, 2, &[("z", 3)]),
        "K.remote_a() got an unexpected keyword argument 'z'"
    );
    // the first keyword argument at fault, in the order they came
    assert_eq!(
        error(AB, 1, &[("z", 1), ("a", 2)]),
        "K.remote_ab() got an unexpected keyword argument 'z'"
    );
    assert_eq!(
        error(AB, 1, &[("a", 2), ("z", 1)]),
        "K.remote_ab() got multiple values for argument 'a'"
    );
    // the name as sent, not quoted again
    let kwargs = [(Text::from("it's"), Value::None)];
    assert_eq!(
        A.bind("K", &[], &kwargs).unwrap_err().value,
        "K.remote_a() got an unexpected keyword argument 'it's'"
    );
}

#[test]
fn binds_positional_and_keyword_arguments_to_parameters() {
    let args = ints(1);
    let kwargs = kw(&[("b", 2)]);
    let bound = AB.bind("K", &args, &kwargs).unwrap();
    assert_eq!(
        (bound.get(0), bound.get(1)),
        (Some(&Value::int(1)), Some(&Value::int(2)))
    );
    assert_eq!((&bound["a"], &bound[1]), (&Value::int(1), &Value::int(2)));
    assert_eq!(bound.get(2), None);
    assert!(bound.rest().is_empty() && bound.extra().is_empty());

    // a parameter with a default, passed by keyword or not at all
    let kwargs = kw(&[("b", 5)]);
    let bound = ADEF.bind("K", &args, &kwargs).unwrap();
    assert_eq!(bound.named("b"), Some(&Value::int(5)));
    let bound = ADEF.bind("K", &args, &[]).unwrap();
    assert_eq!(bound.named("b"), None);

    // *args, keyword-only and **kwargs together
    let args = ints(3);
    let kwargs = kw(&[("x", 7), ("key", 8), ("y", 9)]);
    let bound = BOTH.bind("K", &args, &kwargs).unwrap();
    assert_eq!(bound.rest(), [&args[0], &args[1], &args[2]]);
    assert_eq!(bound.named("key"), Some(&Value::int(8)));
    assert_eq!(
        bound
            .extra()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_i64().unwrap()))
            .collect::<Vec<_>>(),
        [("x", 7), ("y", 9)]
    );
    let kwargs = kw(&[("d", 4), ("b", 2)]);
    let bound = MIXED.bind("K", &args[..1], &kwargs).unwrap();
    assert_eq!(
        (0..4)
            .map(|i| bound.get(i).and_then(Value::as_i64))
            .collect::<Vec<_>>(),
        [Some(1), Some(2), None, Some(4)]
    );
}

#[test]
fn bound_values_are_resolved_in_the_calls_scope() {
    let x = Value::List(vec![Value::int(1)]);
    let args = [Value::Anchor(2, Box::new(x.clone())), Value::Alias(2)];
    let kwargs = [(Text::from("c"), Value::Alias(2))];
    let sig = Signature::new("f", &["a", "b", "c"]);
    let bound = sig.bind("K", &args, &kwargs).unwrap();
    for i in 0..3 {
        assert_eq!(bound.get(i).and_then(Value::as_seq), x.as_seq(), "{i}");
    }
    assert_eq!(bound.raw(1), Some(&Value::Alias(2)));
    assert_eq!(bound.scope().detach(&bound[2]), x);
}

#[test]
#[should_panic(expected = "parameter 1 was not passed")]
fn indexing_a_parameter_not_passed_panics() {
    let args = ints(1);
    let bound = ADEF.bind("K", &args, &[]).unwrap();
    let _ = &bound[1];
}
