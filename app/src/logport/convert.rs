//! Log events between the wire's values ([`foolscap_core::value::Value`])
//! and the logging crate's ([`foolscap_logging::Value`]), as Python's
//! publisher sends them and its observers receive them (docs/logging.md,
//! "The logport").
//!
//! Receiving accepts whatever a peer may put in an event: text and byte
//! keys (keys become text, as Python's `ensure_dict_str_keys` makes them),
//! tuples, sets, big integers, Failure copyables, references (kept as
//! their Python repr), shared containers. It refuses values nested deeper
//! than [`MAX_EVENT_DEPTH`], keys of other types (Python's observers raise
//! `TypeError` there too), and anything but a dict at the top.
//!
//! Sending writes what Python's publisher writes: keys as `unicode`,
//! tuples as `tuple`, bytes as a bare STRING, failures as the
//! `twisted.python.failure.Failure` copyable, big integers as LONGINT.

use std::cell::Cell;

use foolscap_core::broker::Failure as WireFailure;
use foolscap_core::value::pyrepr::{bytes_repr, str_repr};
use foolscap_core::value::{Int, Text, Value as WireValue};
use foolscap_logging::value::Failure;
use foolscap_logging::{Dict, Event, Value};

use crate::typed::Context;

/// How deep a received event may nest (containers in containers, shared
/// parts followed): Python's events are flat dicts with small values, and
/// converting costs stack per level (a few KiB in a debug build), so that
/// an engine thread with a small stack survives any input, cycles
/// included. Well within the flogfile reader's 512, so every event a tail
/// saves reads back. Deeper events are refused with
/// [`EventError::TooDeep`].
pub const MAX_EVENT_DEPTH: usize = 100;

/// How many values a received event may hold once its shared parts are
/// expanded (each alias counts as a copy of what it refers to): a message
/// that refers to one container many times over, level after level,
/// would otherwise expand exponentially. Past it the event is refused
/// with [`EventError::TooLarge`].
pub const MAX_EVENT_VALUES: usize = 1 << 20;

/// Why a received value is not an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event is not a dict.
    #[error("an event must be a dict, not {0}")]
    NotADict(&'static str),
    /// A dict key that is neither text nor UTF-8 bytes.
    #[error("an event's keys must be str or UTF-8 bytes, not {0}")]
    BadKey(String),
    /// Nested deeper than [`MAX_EVENT_DEPTH`].
    #[error("the event nests deeper than {MAX_EVENT_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_EVENT_VALUES`] values, shared parts expanded.
    #[error("the event holds more than {MAX_EVENT_VALUES} values")]
    TooLarge,
    /// A shared value the message does not hold.
    #[error("the event refers to a shared value its message does not hold")]
    DanglingAlias,
}

/// A received event (a dict with text or bytes keys).
pub fn event_from_wire(v: &WireValue) -> Result<Event, EventError> {
    let cx = Context::for_message(v, None);
    event_from_wire_in(v, &cx)
}

/// [`event_from_wire`] for a value of a larger message (a call's
/// argument), whose shared values `cx` resolves.
pub fn event_from_wire_in(v: &WireValue, cx: &Context<'_>) -> Result<Event, EventError> {
    let v = cx.resolve(v).map_err(|_| EventError::DanglingAlias)?;
    match v {
        WireValue::Dict(pairs) => Ok(Event(dict_from_wire(pairs, cx, 1, &Cell::new(0))?)),
        other => Err(EventError::NotADict(other.type_name())),
    }
}

/// A received value of an event.
pub fn value_from_wire(v: &WireValue) -> Result<Value, EventError> {
    let cx = Context::for_message(v, None);
    convert_in(v, &cx, 0, &Cell::new(0))
}

/// [`value_from_wire`] for a value of a larger message.
pub fn value_from_wire_in(v: &WireValue, cx: &Context<'_>) -> Result<Value, EventError> {
    convert_in(v, cx, 0, &Cell::new(0))
}

fn dict_from_wire(
    pairs: &[(WireValue, WireValue)],
    cx: &Context<'_>,
    depth: usize,
    count: &Cell<usize>,
) -> Result<Dict, EventError> {
    let mut d = Dict::new();
    for (k, v) in pairs {
        let key = match cx.resolve(k).map_err(|_| EventError::DanglingAlias)? {
            WireValue::Str(s) => s.as_str().to_owned(),
            WireValue::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => s.to_owned(),
                Err(_) => return Err(EventError::BadKey(bytes_repr(b))),
            },
            other => return Err(EventError::BadKey(other.type_name().into())),
        };
        d.insert(key, convert_in(v, cx, depth, count)?);
    }
    Ok(d)
}

fn items(
    vs: &[WireValue],
    cx: &Context<'_>,
    depth: usize,
    count: &Cell<usize>,
) -> Result<Vec<Value>, EventError> {
    vs.iter().map(|v| convert_in(v, cx, depth, count)).collect()
}

fn convert_in(
    v: &WireValue,
    cx: &Context<'_>,
    depth: usize,
    count: &Cell<usize>,
) -> Result<Value, EventError> {
    count.set(count.get() + 1);
    if count.get() > MAX_EVENT_VALUES {
        return Err(EventError::TooLarge);
    }
    let v = cx.resolve(v).map_err(|_| EventError::DanglingAlias)?;
    let container = matches!(
        v,
        WireValue::List(_)
            | WireValue::Tuple(_)
            | WireValue::Set(_)
            | WireValue::FrozenSet(_)
            | WireValue::Dict(_)
    );
    let depth = if container { depth + 1 } else { depth };
    if depth > MAX_EVENT_DEPTH {
        return Err(EventError::TooDeep);
    }
    Ok(match v {
        WireValue::None => Value::None,
        WireValue::Bool(b) => Value::Bool(*b),
        WireValue::Float(f) => Value::Float(*f),
        WireValue::Str(s) => Value::Str(s.as_str().to_owned()),
        WireValue::List(vs) => Value::List(items(vs, cx, depth, count)?),
        WireValue::Tuple(vs) => Value::Tuple(items(vs, cx, depth, count)?),
        WireValue::Set(vs) => Value::Set(items(vs, cx, depth, count)?),
        WireValue::FrozenSet(vs) => Value::FrozenSet(items(vs, cx, depth, count)?),
        WireValue::Dict(pairs) => Value::Dict(dict_from_wire(pairs, cx, depth, count)?),
        // resolved above
        WireValue::Anchor(..) | WireValue::Alias(_) => return Err(EventError::DanglingAlias),
        leaf => leaf_from_wire(leaf),
    })
}

/// The values that hold no others, kept out of the recursive function so
/// that each level of nesting costs little stack.
#[inline(never)]
fn leaf_from_wire(v: &WireValue) -> Value {
    match v {
        WireValue::Int(i) => Value::Int(i.to_bigint()),
        WireValue::Bytes(b) => Value::Bytes(b.to_vec()),
        WireValue::Decimal(d) => Value::Other(format!("Decimal({})", str_repr(&d.to_string()))),
        WireValue::Copyable(c) => match WireFailure::from_value(v) {
            Ok(f) => Value::Failure(Box::new(Failure {
                value: f.value,
                type_name: f.type_name,
                traceback: f.traceback,
                parents: f.parents,
            })),
            // a copyable the Tub let in (accept_any_copyable) but that is
            // no Failure: its Python repr names its type
            Err(_) => Value::Other(format!("<RemoteCopy of {}>", c.type_name.as_str())),
        },
        WireValue::Remote(r) => Value::Other(format!("<RemoteReference at 0x{:x}>", r.clid())),
        WireValue::Local(id) => Value::Other(format!("<Referenceable {id}>")),
        other => Value::Other(format!("<{}>", other.type_name())),
    }
}

/// An event to send: what Python's publisher puts on the wire.
pub fn event_to_wire(e: &Event) -> WireValue {
    dict_to_wire(&e.0)
}

fn dict_to_wire(d: &Dict) -> WireValue {
    let mut pairs: Vec<(WireValue, WireValue)> = d
        .iter()
        .map(|(k, v)| (WireValue::Str(Text::from(k)), value_to_wire(v)))
        .collect();
    // Python's serializer sends a dict's keys sorted
    pairs.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
    WireValue::Dict(pairs)
}

/// One value of an event, to send.
pub fn value_to_wire(v: &Value) -> WireValue {
    match v {
        Value::None => WireValue::None,
        Value::Bool(b) => WireValue::Bool(*b),
        Value::Int(i) => WireValue::Int(Int::from(i.clone())),
        Value::Float(f) => WireValue::Float(*f),
        Value::Str(s) => WireValue::Str(Text::from(s.as_str())),
        Value::Bytes(b) => WireValue::bytes(b),
        Value::List(vs) => WireValue::List(vs.iter().map(value_to_wire).collect()),
        Value::Tuple(vs) => WireValue::Tuple(vs.iter().map(value_to_wire).collect()),
        Value::Set(vs) => WireValue::Set(vs.iter().map(value_to_wire).collect()),
        Value::FrozenSet(vs) => WireValue::FrozenSet(vs.iter().map(value_to_wire).collect()),
        Value::Dict(d) => dict_to_wire(d),
        Value::Failure(f) => WireFailure {
            type_name: f.type_name.clone(),
            parents: f.parents.clone(),
            value: f.value.clone(),
            traceback: f.traceback.clone(),
        }
        .to_value(),
        // no wire form of its own: its repr, as text
        Value::Other(repr) => WireValue::Str(Text::from(repr.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foolscap_core::value::Copyable;
    use num_bigint::BigInt;

    fn u(s: &str) -> WireValue {
        WireValue::str(s)
    }

    #[test]
    fn bytes_and_text_keys_become_text() {
        let v = WireValue::Dict(vec![
            (WireValue::bytes(b"num"), WireValue::int(3)),
            (u("message"), u("hi")),
        ]);
        let e = event_from_wire(&v).unwrap();
        assert_eq!(e.num(), Some(3));
        assert_eq!(e.get("message"), Some(&Value::Str("hi".into())));
    }

    #[test]
    fn refuses_non_dicts_bad_keys_and_deep_nesting() {
        assert_eq!(
            event_from_wire(&WireValue::List(vec![])),
            Err(EventError::NotADict("list"))
        );
        let v = WireValue::Dict(vec![(WireValue::int(1), WireValue::None)]);
        assert_eq!(event_from_wire(&v), Err(EventError::BadKey("int".into())));
        let v = WireValue::Dict(vec![(WireValue::bytes(b"\xff"), WireValue::None)]);
        assert_eq!(
            event_from_wire(&v),
            Err(EventError::BadKey("b'\\xff'".into()))
        );
        // the top dict is level 1: MAX_EVENT_DEPTH - 1 lists inside it pass
        let nest = |n: usize| {
            let mut inner = WireValue::None;
            for _ in 0..n {
                inner = WireValue::List(vec![inner]);
            }
            WireValue::Dict(vec![(u("x"), inner)])
        };
        assert!(event_from_wire(&nest(MAX_EVENT_DEPTH - 1)).is_ok());
        assert_eq!(
            event_from_wire(&nest(MAX_EVENT_DEPTH)),
            Err(EventError::TooDeep)
        );
    }

    #[test]
    fn values_keep_their_python_types_both_ways() {
        let failure = WireFailure::new("builtins.ZeroDivisionError", "division by zero");
        let big = BigInt::from(2).pow(70);
        let v = WireValue::Dict(vec![
            (
                u("args"),
                WireValue::Tuple(vec![u("abc"), WireValue::int(5)]),
            ),
            (u("blob"), WireValue::bytes(b"\x00\xffbin")),
            (u("big"), WireValue::Int(Int::from(big.clone()))),
            (u("failure"), failure.to_value()),
            (
                u("incarnation"),
                WireValue::Tuple(vec![u("86ce119702263278"), WireValue::None]),
            ),
            (u("s"), WireValue::Set(vec![WireValue::int(1)])),
            (u("fs"), WireValue::FrozenSet(vec![WireValue::int(2)])),
        ]);
        let e = event_from_wire(&v).unwrap();
        assert_eq!(e.get("blob"), Some(&Value::Bytes(b"\x00\xffbin".to_vec())));
        assert_eq!(e.get("big"), Some(&Value::Int(big)));
        match e.get("failure") {
            Some(Value::Failure(f)) => {
                assert_eq!(f.type_name, "builtins.ZeroDivisionError");
                assert_eq!(f.value, "division by zero");
                assert_eq!(f.parents[0], "builtins.ZeroDivisionError");
            }
            other => panic!("{other:?}"),
        }
        // back out: keys sorted, as Python sends them, same values
        let back = event_to_wire(&e);
        let WireValue::Dict(pairs) = &back else {
            panic!("{back:?}")
        };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(
            keys,
            ["args", "big", "blob", "failure", "fs", "incarnation", "s"]
        );
        let WireValue::Dict(orig) = &v else { panic!() };
        for (k, want) in orig {
            let got = &pairs.iter().find(|(k2, _)| k2 == k).unwrap().1;
            assert_eq!(got, want, "{k:?}");
        }
    }

    #[test]
    fn references_decimals_and_foreign_copyables_become_reprs() {
        let v = WireValue::Dict(vec![
            (
                u("d"),
                WireValue::Decimal(foolscap_core::value::Decimal::parse("1.5").unwrap()),
            ),
            (
                u("c"),
                WireValue::Copyable(Box::new(Copyable {
                    type_name: Text::from("app.Thing"),
                    state: vec![],
                })),
            ),
        ]);
        let e = event_from_wire(&v).unwrap();
        assert_eq!(e.get("d"), Some(&Value::Other("Decimal('1.5')".into())));
        assert_eq!(
            e.get("c"),
            Some(&Value::Other("<RemoteCopy of app.Thing>".into()))
        );
    }

    #[test]
    fn shared_containers_expand_within_a_budget() {
        // each level holds the previous one twice: 2^40 values expanded
        let mut v = WireValue::Anchor(0, Box::new(WireValue::List(vec![WireValue::int(1)])));
        for id in 1..40 {
            v = WireValue::Anchor(
                id,
                Box::new(WireValue::List(vec![v, WireValue::Alias(id - 1)])),
            );
        }
        let e = WireValue::Dict(vec![(u("x"), v)]);
        assert_eq!(event_from_wire(&e), Err(EventError::TooLarge));
        // a cycle meets the depth limit
        let cycle = WireValue::Dict(vec![(
            u("x"),
            WireValue::Anchor(0, Box::new(WireValue::List(vec![WireValue::Alias(0)]))),
        )]);
        assert_eq!(event_from_wire(&cycle), Err(EventError::TooDeep));
    }

    #[test]
    fn shared_containers_are_followed() {
        let shared = WireValue::List(vec![WireValue::int(1)]);
        let v = WireValue::Dict(vec![
            (u("a"), WireValue::Anchor(0, Box::new(shared.clone()))),
            (u("b"), WireValue::Alias(0)),
        ]);
        let e = event_from_wire(&v).unwrap();
        assert_eq!(e.get("a"), e.get("b"));
        let dangling = WireValue::Dict(vec![(u("b"), WireValue::Alias(9))]);
        assert_eq!(event_from_wire(&dangling), Err(EventError::DanglingAlias));
    }
}

#[cfg(test)]
mod stack {
    use super::*;

    /// A cycle (a list holding itself) meets MAX_EVENT_DEPTH well before a
    /// small thread stack runs out, even unoptimised.
    #[test]
    fn a_cycle_is_refused_on_a_512_kib_stack() {
        let refused = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(|| {
                let cycle = WireValue::Dict(vec![(
                    WireValue::str(""),
                    WireValue::Anchor(
                        0,
                        Box::new(WireValue::List(vec![
                            WireValue::bytes(b"dict"),
                            WireValue::Alias(0),
                        ])),
                    ),
                )]);
                event_from_wire(&cycle)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(refused, Err(EventError::TooDeep));
    }
}
