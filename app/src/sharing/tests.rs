//! Scope, resolve, detach and renumber on hand-built values and on values
//! the core's decoder produced.

use bytes::BytesMut;
use foolscap_core::banana::VocabTable;
use foolscap_core::value::{Deserializer, Event, Limits, Serializer};

use super::*;

fn list(items: Vec<Value>) -> Value {
    Value::List(items)
}

fn tuple(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

fn anchor(id: AnchorId, v: Value) -> Value {
    Value::Anchor(id, Box::new(v))
}

fn alias(id: AnchorId) -> Value {
    Value::Alias(id)
}

fn int(i: i64) -> Value {
    Value::int(i)
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = BytesMut::new();
    Serializer::new(VocabTable::EMPTY)
        .serialize(v, &mut out)
        .unwrap_or_else(|e| panic!("{v:?} does not encode: {e}"));
    out.to_vec()
}

/// What the decoder makes of `v` sent as one message.
fn decode(v: &Value) -> Value {
    let mut de = Deserializer::new(VocabTable::EMPTY, Limits::default());
    de.feed(&encode(v));
    match de.poll_event().unwrap() {
        Some(Event::Value(v)) => v,
        other => panic!("not a value: {other:?}"),
    }
}

#[test]
fn resolve_follows_aliases_across_the_arguments_of_a_message() {
    let x = list(vec![int(1), int(2)]);
    let args = [anchor(3, x.clone()), alias(3), int(4)];
    let kwargs = [alias(3), alias(8)];
    let scope = Scope::new(args.iter().chain(&kwargs));
    assert_eq!(scope.resolve(&args[0]), &x);
    assert_eq!(scope.resolve(&args[1]), &x);
    assert_eq!(scope.resolve(&kwargs[0]), &x);
    assert_eq!(scope.resolve(&args[1]).as_seq(), x.as_seq());
    assert_eq!(scope.resolve(&args[2]), &int(4));
    // not anchored in this message: stays as it is
    assert_eq!(scope.resolve(&kwargs[1]), &alias(8));
    assert_eq!(scope.anchored(3), Some(&x));
    assert_eq!(scope.anchored(8), None);
}

#[test]
fn resolve_finds_anchors_nested_anywhere_and_after_their_alias() {
    let inner = tuple(vec![int(7)]);
    let copyable = Value::Copyable(Box::new(Copyable {
        type_name: Text::from("t"),
        state: vec![(Text::from("a"), anchor(9, list(vec![])))],
    }));
    // the alias comes before its anchor (our serializer accepts that)
    let args = [
        alias(5),
        Value::Dict(vec![(anchor(5, inner.clone()), list(vec![copyable]))]),
        alias(9),
    ];
    let scope = Scope::new(&args);
    assert_eq!(scope.resolve(&args[0]), &inner);
    assert_eq!(scope.resolve(&args[2]), &list(vec![]));
}

#[test]
fn an_id_anchored_twice_resolves_to_its_first_anchor() {
    let args = [
        list(vec![anchor(1, list(vec![int(1)]))]),
        anchor(1, list(vec![int(2)])),
    ];
    let scope = Scope::new(&args);
    assert_eq!(scope.anchored(1), Some(&list(vec![int(1)])));
}

#[test]
fn detach_leaves_values_without_sharing_as_they_are() {
    let v = Value::Dict(vec![
        (Value::str("k"), list(vec![int(1), Value::None])),
        (tuple(vec![]), Value::bytes(b"b")),
    ]);
    assert_eq!(Scope::new([&v]).detach(&v), v);
    assert_eq!(Scope::default().detach(&int(3)), int(3));
}

#[test]
fn an_alias_out_of_the_part_brings_its_anchored_value_once() {
    let x = list(vec![int(1)]);
    let args = [anchor(5, x.clone()), list(vec![alias(5), int(2), alias(5)])];
    let scope = Scope::new(&args);
    assert_eq!(
        scope.detach(&args[1]),
        list(vec![anchor(1, x.clone()), int(2), alias(1)])
    );
    // met once: no anchor needed
    assert_eq!(scope.detach(&alias(5)), x);
    assert_eq!(scope.detach(&args[0]), x);
}

#[test]
fn anchors_are_renumbered_from_one_in_the_values_order() {
    let (a, b) = (list(vec![int(1)]), tuple(vec![int(2)]));
    let v = list(vec![
        anchor(40, a.clone()),
        anchor(17, b.clone()),
        alias(17),
        alias(40),
    ]);
    assert_eq!(
        Scope::new([&v]).detach(&v),
        list(vec![anchor(1, a), anchor(2, b), alias(2), alias(1)])
    );
}

#[test]
fn nested_anchors_are_shared_where_the_copy_meets_them_twice() {
    // m = [[7], x] with x = [7] shared inside, then g(m, x, m)
    let seven = list(vec![int(7)]);
    let m = list(vec![anchor(3, seven.clone()), alias(3)]);
    let args = [anchor(2, m), alias(3), alias(2)];
    let scope = Scope::new(&args);
    // x alone, then m alone
    assert_eq!(scope.detach(&args[1]), seven);
    assert_eq!(
        scope.detach(&args[2]),
        list(vec![anchor(1, seven.clone()), alias(1)])
    );
    // x and m together: x first in order, m met once
    assert_eq!(
        scope.detach_all([&args[1], &args[2]]),
        vec![anchor(1, seven.clone()), list(vec![alias(1), alias(1)])]
    );
    // all three: m twice
    assert_eq!(
        scope.detach_all(&args),
        vec![
            anchor(1, list(vec![anchor(2, seven), alias(2)])),
            alias(2),
            alias(1)
        ]
    );
}

#[test]
fn cycles_survive() {
    // y = [y]
    let y = anchor(8, list(vec![alias(8)]));
    let cycle = anchor(1, list(vec![alias(1)]));
    let args = [int(0), y.clone(), alias(8)];
    let scope = Scope::new(&args);
    assert_eq!(scope.detach(&args[1]), cycle);
    assert_eq!(scope.detach(&args[2]), cycle);
    // resolved, the value is still the one in the cycle
    assert_eq!(scope.detach(scope.resolve(&args[2])), cycle);
    assert_eq!(scope.detach(scope.resolve(&args[1])), cycle);
    // a list holding y twice
    assert_eq!(
        Scope::new([&y]).detach(&list(vec![alias(8), alias(8)])),
        list(vec![cycle, alias(1)])
    );
}

#[test]
fn a_part_of_a_cycle_keeps_its_place_in_it() {
    // a = [b], b = [a]: the message anchors only a (it met b once)
    let a = anchor(1, list(vec![list(vec![alias(1)])]));
    let scope = Scope::new([&a]);
    let b = &scope.resolve(&a).as_seq().unwrap()[0];
    // b' = [a'], a' = [b']: b' itself is in the cycle
    assert_eq!(scope.detach(b), anchor(1, list(vec![list(vec![alias(1)])])));
    // and so is each of several parts taken together
    let args = [a.clone()];
    let scope = Scope::new(&args);
    let b = &scope.resolve(&args[0]).as_seq().unwrap()[0];
    assert_eq!(
        scope.detach_all([b, &args[0]]),
        vec![
            anchor(1, list(vec![anchor(2, list(vec![alias(1)]))])),
            alias(2)
        ]
    );
}

#[test]
fn dict_keys_share_like_any_other_place() {
    let t = tuple(vec![int(1), int(2)]);
    // {t: t}
    let d = Value::Dict(vec![(anchor(1, t.clone()), alias(1))]);
    assert_eq!(Scope::new([&d]).detach(&d), d);
    // f(t, {t: "v"}, {t: t}): keys aliasing another argument
    let args = [
        anchor(4, t.clone()),
        Value::Dict(vec![(alias(4), Value::str("v"))]),
        Value::Dict(vec![(alias(4), alias(4))]),
    ];
    let scope = Scope::new(&args);
    assert_eq!(
        scope.detach(&args[1]),
        Value::Dict(vec![(t.clone(), Value::str("v"))])
    );
    assert_eq!(
        scope.detach(&args[2]),
        Value::Dict(vec![(anchor(1, t.clone()), alias(1))])
    );
    // a key that is its own dict's ... value's container: {(1, 2): [t]}
    let args = [Value::Dict(vec![(
        anchor(2, t.clone()),
        list(vec![alias(2)]),
    )])];
    assert_eq!(
        Scope::new(&args).detach(&args[0]),
        Value::Dict(vec![(anchor(1, t), list(vec![alias(1)]))])
    );
}

#[test]
fn an_alias_before_its_anchor_becomes_the_anchor() {
    let x = list(vec![int(1)]);
    // as a Rust caller may build it: the alias first in order
    let args = [list(vec![alias(6)]), anchor(6, x.clone())];
    let scope = Scope::new(&args);
    assert_eq!(scope.detach(&args[0]), list(vec![x.clone()]));
    assert_eq!(
        scope.detach_all(&args),
        vec![list(vec![anchor(1, x.clone())]), alias(1)]
    );
    // within one value
    let v = list(vec![alias(6), anchor(6, x.clone())]);
    assert_eq!(
        Scope::new([&v]).detach(&v),
        list(vec![anchor(1, x), alias(1)])
    );
}

#[test]
fn copyable_state_is_copied_with_its_sharing() {
    let x = list(vec![int(1)]);
    let point = |a, b| {
        Value::Copyable(Box::new(Copyable {
            type_name: Text::from("Point"),
            state: vec![(Text::from("x"), a), (Text::from("y"), b)],
        }))
    };
    let args = [anchor(2, x.clone()), point(alias(2), alias(2))];
    let scope = Scope::new(&args);
    assert_eq!(
        scope.detach(&args[1]),
        point(anchor(1, x.clone()), alias(1))
    );
    // a copyable that is itself shared (p.me = p)
    let p = anchor(3, point(alias(3), int(0)));
    assert_eq!(
        Scope::new([&p]).detach(&p),
        anchor(1, point(alias(1), int(0)))
    );
}

#[test]
fn the_same_top_level_container_twice_is_shared() {
    let x = list(vec![int(1)]);
    assert_eq!(
        Scope::default().detach_all([&x, &x]),
        vec![anchor(1, x.clone()), alias(1)]
    );
    // but not a value Python does not share
    let i = int(300);
    assert_eq!(Scope::default().detach_all([&i, &i]), vec![i.clone(), i]);
}

#[test]
fn an_alias_to_nothing_stays_one_under_an_id_of_its_own() {
    let x = list(vec![int(1)]);
    let args = [alias(99), anchor(3, x.clone()), alias(3), alias(99)];
    assert_eq!(
        Scope::new(&args).detach_all(&args),
        vec![alias(1), anchor(2, x), alias(2), alias(1)]
    );
}

#[test]
fn renumber_keeps_values_from_different_messages_apart() {
    let a = anchor(1, list(vec![alias(1)]));
    let b = list(vec![anchor(1, tuple(vec![])), alias(1)]);
    // an anchor nothing aliases is dropped; an alias before its anchor
    // takes its place
    let c = list(vec![
        anchor(5, list(vec![])),
        alias(7),
        anchor(7, list(vec![])),
    ]);
    assert_eq!(
        renumber([&a, &b, &c]),
        vec![
            a,
            list(vec![anchor(2, tuple(vec![])), alias(2)]),
            list(vec![list(vec![]), anchor(3, list(vec![])), alias(3)]),
        ]
    );
    let both = renumber([&b, &b]);
    let mut out = BytesMut::new();
    let message = list(both);
    Serializer::new(VocabTable::EMPTY)
        .serialize(&message, &mut out)
        .expect("renumbered values travel together");
}

/// Parts of a real decoded message, detached, encode exactly as the same
/// objects would when sent alone.
#[test]
fn detached_parts_of_a_decoded_message_encode_as_python_would_send_them() {
    // x = [1]; y = [y]; args = (x, [x, y], {"k": (x,)}, y)
    let x = list(vec![int(1)]);
    let sent = tuple(vec![
        anchor(1, x.clone()),
        list(vec![alias(1), anchor(2, list(vec![alias(2)]))]),
        Value::Dict(vec![(Value::str("k"), tuple(vec![alias(1)]))]),
        alias(2),
    ]);
    let message = decode(&sent);
    let args = message.as_seq().expect("a tuple").to_vec();
    let scope = Scope::new(&args);
    let y = anchor(1, list(vec![alias(1)]));
    let alone = [
        x.clone(),
        list(vec![x.clone(), y.clone()]),
        Value::Dict(vec![(Value::str("k"), tuple(vec![x.clone()]))]),
        y,
    ];
    for (arg, want) in args.iter().zip(&alone) {
        let detached = scope.detach(arg);
        assert_eq!(&detached, want, "{arg:?}");
        assert_eq!(encode(&detached), encode(want));
        assert_eq!(encode(&scope.detach(scope.resolve(arg))), encode(want));
    }
    // all of them again in a new message: the same bytes as the original
    let again = tuple(scope.detach_all(&args));
    assert_eq!(encode(&again), encode(&sent));
}
