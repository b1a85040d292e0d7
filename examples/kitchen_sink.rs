//! The kitchen-sink server: one foolscap object with a method for every
//! kind of thing a remote call can do (issue 4, section Tools).
//!
//! ```text
//! cargo run --release --example kitchen_sink -- FURLFILE [--port N] [--name SWISSNUM]
//!                                               [--certfile PEM] [--max-seconds S]
//!                                               [--driver mio|threads|tokio] [--listen HOST]
//! ```
//!
//! `--driver` picks the engine that carries the Tub: `mio` (the default)
//! runs it on a `foolscap::mio` event loop, where the objects, timers and
//! answer callbacks all run on the loop's one thread; `threads` runs it on
//! `foolscap::threads` (a reader and a writer per connection,
//! one timer thread); `tokio` runs it on `foolscap_tokio`, on a
//! current-thread tokio runtime that the main thread runs. The objects are
//! the same code on all three: they never block, answering at once or
//! later from a callback.
//!
//! It listens on `--listen HOST` (default 127.0.0.1; an IPv6 address
//! such as `::1`, with or without brackets, or a name, which is resolved)
//! at `--port` (0, the default, picks a free port) and puts the address
//! it bound into its FURL (`tcp:[::1]:PORT` for IPv6). It registers one
//! `KitchenSink` under SWISSNUM (`kitchen-sink` by default) and writes its
//! FURL, followed by a newline, to FURLFILE atomically (a temporary file
//! renamed into place). With `--certfile` the Tub's identity
//! is read from that PEM file, which is created if missing. The server exits
//! after `--max-seconds` (default 3600; a clean shutdown: on mio the
//! runtime gets 5 s to send answers already due), or on SIGTERM/SIGINT
//! with either driver (their default action ends the process; the FURL
//! file is complete or absent at any moment, so nothing needs cleaning
//! up).
//!
//! It is the Rust twin of `tests/interop/kitchen_sink.py`: same methods,
//! same answers, same failures (Python's exception types, parents and
//! messages), so that a Python caller cannot tell the two apart. Check it
//! with `tests/interop/kitchen_check.py FURL`.
//!
//! Things worth reading here for your own servers:
//! - [`Object`] implementations that answer at once ([`Call::reply`]) or
//!   later: from a timer ([`Tub::after`], `sleep` and `fail_later`) or from
//!   the answer of a call back into the caller (`call_back`);
//! - returning new objects ([`Tub::local`], `make_counter`);
//! - binding positional and keyword arguments the way Python does
//!   ([`Signature`], [`Call::bind`]);
//! - working with shared and cyclic values ([`Value::Anchor`] and
//!   [`Value::Alias`]): resolving aliases ([`Scope::resolve`]), and keeping
//!   parts of a message or sending them in another one ([`Scope::detach`],
//!   [`renumber`]);
//! - accepting a copyable type ([`Tub::register_copyable`], in `run`).
//!
//! Much of the rest only makes the answers Python's to the letter: the
//! messages of Python's TypeErrors, `is` on values CPython caches
//! ([`Identity`]), and, at the end, the part of Python's `decimal` that
//! `add` and `pow2` need ([`Dec`]). A server of your own can skip all that.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::atomic::{self, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foolscap::broker::{Failure, ObjectId};
use foolscap::mio::{LoopConfig, Runtime};
use foolscap::schema::{Argument, Constraint, InterfaceSchema, MethodSchema};
use foolscap::sharing::renumber;
use foolscap::value::{AnchorId, Copyable, Int, RemoteRef, Text, Value};
use foolscap::{BoundArgs, Call, Object, Scope, Signature, Tub, TubConfig};
use num_bigint::BigInt;

/// `big(n)` refuses n > 256 MiB.
const MAX_BIG: i64 = 256 * 1024 * 1024;
/// `pow2(n)` refuses n > 100000.
const MAX_POW2: i64 = 100_000;
/// `sleep(seconds)` is capped at 60 s.
const MAX_SLEEP: f64 = 60.0;
/// `notes()` keeps the last 100 notes.
const MAX_NOTES: usize = 100;
/// The copy type of what `point(x, y)` returns (Python's class `Point`).
const POINT_TYPE: &str = "kitchen-sink.Point";

// ---------------------------------------------------------------------------
// Python exceptions
// ---------------------------------------------------------------------------

/// The Failure Python foolscap sends for an exception whose class has the
/// given MRO (qualified names, most derived first, up to but without
/// `builtins.Exception`): the first is the type, all of them and the
/// standard bases the parents (what a Python caller's `f.check()` matches).
fn exception(mro: &[&str], message: impl Into<String>) -> Failure {
    let mut failure = Failure::new(mro[0], message);
    failure.parents = mro
        .iter()
        .chain(&[
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ])
        .map(|c| c.to_string())
        .collect();
    failure
}

/// `raise Class(message)` for a built-in exception class.
fn py_exception(class: &str, message: impl Into<String>) -> Failure {
    let qualified = format!("builtins.{class}");
    // the built-in classes between `class` and Exception in its MRO
    let between: &[&str] = match class {
        "ZeroDivisionError" | "OverflowError" => &["builtins.ArithmeticError"],
        "KeyError" | "IndexError" => &["builtins.LookupError"],
        _ => &[],
    };
    let mro: Vec<&str> = [qualified.as_str()]
        .into_iter()
        .chain(between.iter().copied())
        .collect();
    exception(&mro, message)
}

fn type_error(message: impl Into<String>) -> Failure {
    py_exception("TypeError", message)
}

fn value_error(message: impl Into<String>) -> Failure {
    py_exception("ValueError", message)
}

/// Python's `repr(x)`.
fn py_repr(v: &Value) -> String {
    match v.unanchored() {
        // (foolscap_literal::to_python writes float('nan') and float('inf'), which
        // evaluate back to the value, where Python prints nan and inf)
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        other => foolscap_literal::to_python(other),
    }
}

/// Python's `str(x)`: a str as it is, a Decimal as its text, anything
/// else as its repr.
fn py_str(v: &Value) -> String {
    match v.unanchored() {
        Value::Str(s) => s.as_str().to_string(),
        Value::Decimal(d) => d.as_str().to_string(),
        other => py_repr(other),
    }
}

// ---------------------------------------------------------------------------
// Shared and cyclic values
// ---------------------------------------------------------------------------

/// Which object a decoded argument is, as Python's `is` sees it.
#[derive(Debug, Clone, PartialEq)]
enum Identity {
    /// A value CPython keeps only one of (None, True, False, the small
    /// ints -5..=256, `()`, the str of at most one Latin-1 character, the
    /// bytes of at most one byte): equal values are the same object.
    Singleton(Value),
    /// One of the caller's objects.
    Remote(RemoteRef),
    /// One of our own objects, come home.
    Local(ObjectId),
    /// Anything else is a new object in every message (numbered `message`):
    /// the same one only where the message shares it (one anchor id) ...
    Anchored(u64, AnchorId),
    /// ... or at the very same place.
    Unique(u64, usize),
}

fn identity(v: &Value, scope: &Scope<'_>, message: u64) -> Identity {
    let resolved = scope.resolve(v);
    let singleton = match resolved {
        Value::None | Value::Bool(_) => true,
        Value::Int(i) => matches!(i.to_i64(), Some(-5..=256)),
        Value::Tuple(items) => items.is_empty(),
        Value::Str(s) => {
            s.as_str().chars().nth(1).is_none() && s.as_str().chars().all(|c| c <= '\u{ff}')
        }
        Value::Bytes(b) => b.len() <= 1,
        _ => false,
    };
    match v {
        _ if singleton => Identity::Singleton(resolved.clone()),
        Value::Anchor(id, _) | Value::Alias(id) => Identity::Anchored(message, *id),
        Value::Remote(r) => Identity::Remote(r.clone()),
        Value::Local(id) => Identity::Local(*id),
        other => Identity::Unique(message, other as *const Value as usize),
    }
}

// ---------------------------------------------------------------------------
// Python operations on values
// ---------------------------------------------------------------------------

/// Python's name for the type of a (resolved) value.
fn py_type(v: &Value, tub: &Tub) -> String {
    match v.unanchored() {
        Value::Remote(_) => "RemoteReference".into(),
        Value::Local(id) => class_of(tub, *id),
        Value::Copyable(c) if c.type_name.as_str() == POINT_TYPE => "Point".into(),
        Value::Copyable(c) => c.type_name.as_str().into(),
        Value::Decimal(_) => "decimal.Decimal".into(),
        other => other.type_name().into(),
    }
}

/// The class name of one of our objects.
fn class_of(tub: &Tub, id: ObjectId) -> String {
    tub.object(id)
        .map_or("Referenceable".into(), |o| o.class_name().to_string())
}

/// A Python number: bool and int are ints.
enum Num {
    Int(BigInt),
    Float(f64),
}

fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int(BigInt::from(*b as u8))),
        Value::Int(i) => Some(Num::Int(i.to_bigint())),
        Value::Float(f) => Some(Num::Float(*f)),
        _ => None,
    }
}

/// Python's `float(int)`: correctly rounded, OverflowError if too large.
fn int_to_float(i: &BigInt) -> Result<f64, Failure> {
    // Rust's float parsing rounds correctly
    let f: f64 = i.to_string().parse().unwrap_or(f64::INFINITY);
    if f.is_infinite() {
        return Err(py_exception(
            "OverflowError",
            "int too large to convert to float",
        ));
    }
    Ok(f)
}

fn num_to_float(n: &Num) -> Result<f64, Failure> {
    match n {
        Num::Int(i) => int_to_float(i),
        Num::Float(f) => Ok(*f),
    }
}

/// Python's `int(f)` of a float: exact, truncated toward zero.
fn float_to_int(f: f64) -> Result<BigInt, Failure> {
    if f.is_nan() {
        return Err(value_error("cannot convert float NaN to integer"));
    }
    if f.is_infinite() {
        return Err(py_exception(
            "OverflowError",
            "cannot convert float infinity to integer",
        ));
    }
    // f = mantissa * 2**exponent
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, biased - 1075)
    };
    let magnitude = if exponent >= 0 {
        BigInt::from(mantissa) << exponent as usize
    } else {
        BigInt::from(mantissa) >> (-exponent) as usize
    };
    Ok(if f < 0.0 { -magnitude } else { magnitude })
}

/// Python's `float(x)` for a number, a Decimal or a str.
fn py_float(v: &Value, tub: &Tub) -> Result<f64, Failure> {
    if let Some(n) = as_num(v) {
        return num_to_float(&n);
    }
    match v {
        Value::Decimal(d) => match Dec::parse(d.as_str()) {
            Dec::NaN {
                signaling: true, ..
            } => Err(value_error("cannot convert signaling NaN to float")),
            Dec::NaN { .. } => Ok(f64::NAN),
            _ => Ok(d.as_str().parse().unwrap_or(f64::NAN)),
        },
        Value::Str(s) => {
            let text = s.as_str().trim();
            // `_` may only stand between two digits
            let b = text.as_bytes();
            let underscores_ok = (0..b.len()).filter(|&i| b[i] == b'_').all(|i| {
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit()
            });
            match text.replace('_', "").parse() {
                Ok(f) if underscores_ok => Ok(f),
                _ => Err(value_error(format!(
                    "could not convert string to float: {}",
                    foolscap_literal::to_python(v)
                ))),
            }
        }
        other => Err(type_error(format!(
            "float() argument must be a string or a real number, not '{}'",
            py_type(other, tub)
        ))),
    }
}

/// Python's `a + b` (`op` is `"+"`), or `a += b` (`op` is `"+="`), for
/// resolved values. A list or tuple result holds the items of both as they
/// are (aliases included): the caller makes it self-contained with
/// [`Scope::detach`].
fn py_add(a: &Value, b: &Value, op: &str, tub: &Tub) -> Result<Value, Failure> {
    // list += iterable extends the list with the items
    if let (Value::List(x), "+=") = (a, op) {
        let items: Vec<Value> = match b {
            Value::List(y) | Value::Tuple(y) | Value::Set(y) | Value::FrozenSet(y) => y.clone(),
            Value::Dict(pairs) => pairs.iter().map(|(k, _)| k.clone()).collect(),
            Value::Str(t) => t
                .as_str()
                .chars()
                .map(|c| Value::from(c.to_string()))
                .collect(),
            Value::Bytes(bytes) => bytes.iter().map(|&byte| Value::int(byte.into())).collect(),
            other => {
                return Err(type_error(format!(
                    "'{}' object is not iterable",
                    py_type(other, tub)
                )))
            }
        };
        return Ok(Value::List(x.iter().cloned().chain(items).collect()));
    }
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(match (x, y) {
            (Num::Int(x), Num::Int(y)) => Value::Int(Int::from(x + y)),
            (x, y) => Value::Float(num_to_float(&x)? + num_to_float(&y)?),
        });
    }
    // Decimal + Decimal, Decimal + int, int + Decimal (not with floats)
    let as_dec = |v: &Value| match (v, as_num(v)) {
        (Value::Decimal(d), _) => Some(Dec::parse(d.as_str())),
        (_, Some(Num::Int(i))) => Some(Dec::from_int(&i)),
        _ => None,
    };
    if matches!(a, Value::Decimal(_)) || matches!(b, Value::Decimal(_)) {
        if let (Some(x), Some(y)) = (as_dec(a), as_dec(b)) {
            return Ok(x.add(&y)?.to_value());
        }
    }
    let concat = |x: &[Value], y: &[Value]| x.iter().chain(y).cloned().collect::<Vec<_>>();
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(Value::Str(Text::from(format!(
            "{}{}",
            x.as_str(),
            y.as_str()
        )))),
        (Value::Bytes(x), Value::Bytes(y)) => {
            Ok(Value::Bytes(Bytes::from([&x[..], &y[..]].concat())))
        }
        (Value::List(x), Value::List(y)) => Ok(Value::List(concat(x, y))),
        (Value::Tuple(x), Value::Tuple(y)) => Ok(Value::Tuple(concat(x, y))),
        _ => {
            let (ta, tb) = (py_type(a, tub), py_type(b, tub));
            Err(type_error(match a {
                Value::Str(_) | Value::List(_) | Value::Tuple(_) => {
                    format!("can only concatenate {ta} (not \"{tb}\") to {ta}")
                }
                Value::Bytes(_) => format!("can't concat {tb} to bytes"),
                _ => format!("unsupported operand type(s) for {op}: '{ta}' and '{tb}'"),
            }))
        }
    }
}

/// `a + b` (or `a += b`) for two values of one message, as a
/// self-contained value.
fn add_in_scope(
    a: &Value,
    b: &Value,
    op: &str,
    scope: &Scope<'_>,
    tub: &Tub,
) -> Result<Value, Failure> {
    let sum = py_add(scope.resolve(a), scope.resolve(b), op, tub)?;
    Ok(scope.detach(&sum))
}

/// Python's `len(x)`.
fn py_len(v: &Value, tub: &Tub) -> Result<Value, Failure> {
    let n = match v {
        Value::Str(s) => s.as_str().chars().count(),
        Value::Bytes(b) => b.len(),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            items.len()
        }
        Value::Dict(pairs) => pairs.len(),
        other => {
            return Err(type_error(format!(
                "object of type '{}' has no len()",
                py_type(other, tub)
            )))
        }
    };
    Ok(Value::int(n as i64))
}

/// Python's comparison of a number with the int `limit` (`op` names the
/// operator for the TypeError of a non-number). `None`: unordered (a float
/// NaN, which makes every comparison false); a Decimal NaN raises.
fn py_compare(v: &Value, limit: i64, op: &str, tub: &Tub) -> Result<Option<Ordering>, Failure> {
    match (v, as_num(v)) {
        (_, Some(Num::Int(i))) => Ok(Some(i.cmp(&BigInt::from(limit)))),
        (_, Some(Num::Float(f))) => Ok(f.partial_cmp(&(limit as f64))),
        (Value::Decimal(d), _) => Dec::parse(d.as_str()).cmp_int(limit).map(Some),
        _ => Err(type_error(format!(
            "'{op}' not supported between instances of '{}' and 'int'",
            py_type(v, tub)
        ))),
    }
}

/// Python's limit on the digits of an int written in decimal
/// (`sys.get_int_max_str_digits()`, 3.11 and later).
const INT_MAX_STR_DIGITS: i64 = 4300;

fn int_str_limit() -> Failure {
    value_error(format!(
        "Exceeds the limit ({INT_MAX_STR_DIGITS} digits) for integer string conversion; \
         use sys.set_int_max_str_digits() to increase the limit"
    ))
}

/// Python's `"%d" % n` for a number. Over [`INT_MAX_STR_DIGITS`] digits it
/// raises as Python does, before any conversion: a BigInt's decimal
/// parse and print are quadratic in its digits.
fn percent_d(v: &Value) -> Result<String, Failure> {
    let text = match (v, as_num(v)) {
        (_, Some(Num::Int(i))) => {
            // 2**14300 has 4305 digits: more bits than that are too many
            if i.bits() > 14_300 {
                return Err(int_str_limit());
            }
            i.to_string()
        }
        (_, Some(Num::Float(f))) => float_to_int(f)?.to_string(),
        (Value::Decimal(d), _) => {
            let dec = Dec::parse(d.as_str());
            if let Dec::Finite {
                digits, exponent, ..
            } = &dec
            {
                if digits != "0" && digits.len() as i64 + exponent > INT_MAX_STR_DIGITS {
                    return Err(int_str_limit());
                }
            }
            dec.trunc()?.to_string()
        }
        _ => return Ok(py_str(v)),
    };
    if text.trim_start_matches('-').len() as i64 > INT_MAX_STR_DIGITS {
        return Err(int_str_limit());
    }
    Ok(text)
}

/// The delay of Twisted's `callLater(seconds, ...)`: it asserts
/// `seconds >= 0`, then adds the seconds to a float.
fn call_later_seconds(v: &Value, tub: &Tub) -> Result<f64, Failure> {
    if !matches!(
        py_compare(v, 0, ">=", tub)?,
        Some(Ordering::Greater | Ordering::Equal)
    ) {
        return Err(py_exception(
            "AssertionError",
            format!("{} is not greater than or equal to 0 seconds", py_str(v)),
        ));
    }
    match as_num(v) {
        Some(n) => num_to_float(&n),
        None => Err(type_error(format!(
            "unsupported operand type(s) for +: 'float' and '{}'",
            py_type(v, tub)
        ))),
    }
}

/// `types(x)`: the decoded type tree of `x` (see the issue and
/// kitchen_sink.py's `describe_type`). `ancestors` holds the anchor ids of
/// the containers being described around `v`: a container that is its own
/// ancestor is a `cycle`; one shared without a cycle is described in full
/// at each place.
fn describe(v: &Value, scope: &Scope<'_>, tub: &Tub, ancestors: &mut Vec<AnchorId>) -> String {
    if let Value::Anchor(id, _) | Value::Alias(id) = v {
        if ancestors.contains(id) {
            return "cycle".into();
        }
        ancestors.push(*id);
        let text = describe_plain(scope.resolve(v), scope, tub, ancestors);
        ancestors.pop();
        return text;
    }
    describe_plain(v, scope, tub, ancestors)
}

fn describe_plain(
    v: &Value,
    scope: &Scope<'_>,
    tub: &Tub,
    ancestors: &mut Vec<AnchorId>,
) -> String {
    let mut all = |items: &[Value], sorted: bool| {
        let mut parts: Vec<String> = items
            .iter()
            .map(|x| describe(x, scope, tub, ancestors))
            .collect();
        if sorted {
            // byte order of UTF-8 is code point order, as Python sorts str
            parts.sort();
        }
        parts.join(",")
    };
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "bool".into(),
        Value::Int(_) => "int".into(),
        Value::Float(_) => "float".into(),
        Value::Decimal(_) => "Decimal".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Str(_) => "str".into(),
        // (a gift would reach the method as a RemoteReference in Python)
        Value::Remote(_) => "rref".into(),
        Value::Local(id) => format!("local:{}", class_of(tub, *id)),
        Value::Copyable(c) => format!("copyable:{}", c.type_name.as_str()),
        Value::List(items) => format!("list[{}]", all(items, false)),
        Value::Tuple(items) => format!("tuple[{}]", all(items, false)),
        Value::Set(items) => format!("set[{}]", all(items, true)),
        Value::FrozenSet(items) => format!("frozenset[{}]", all(items, true)),
        Value::Dict(pairs) => {
            let mut parts: Vec<String> = pairs
                .iter()
                .map(|(k, x)| {
                    let k = describe(k, scope, tub, ancestors);
                    format!("{k}:{}", describe(x, scope, tub, ancestors))
                })
                .collect();
            parts.sort();
            format!("dict[{}]", parts.join(","))
        }
        // anything else a peer managed to send (should not happen)
        other => format!("other:{}", other.type_name()),
    }
}

// ---------------------------------------------------------------------------
// The objects
// ---------------------------------------------------------------------------

/// What `make_counter(start)` returns.
struct Counter {
    /// A self-contained value (normally an int).
    value: Mutex<Value>,
}

const COUNTER_METHODS: &[Signature] = &[
    Signature::new("increment", &["by"]).defaults(1),
    Signature::new("get", &[]),
];

impl Object for Counter {
    fn class_name(&self) -> &str {
        "Counter"
    }

    fn call(&self, call: Call) {
        let method = call.method.as_str();
        let Some(sig) = COUNTER_METHODS.iter().find(|s| s.method() == method) else {
            return call.no_such_method("Counter");
        };
        let result = call.bind("Counter", sig).and_then(|args| {
            let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
            if sig.method() == "increment" {
                // self.value += by (the two come from different messages:
                // give their anchors distinct ids first)
                let by = match args.get(0) {
                    Some(by) => args.scope().detach(by),
                    None => Value::int(1),
                };
                let both = renumber([&*value, &by]);
                *value = add_in_scope(&both[0], &both[1], "+=", &Scope::new(&both), call.tub())?;
            }
            Ok(value.clone())
        });
        call.reply(result)
    }
}

/// What `limited()` returns: an object that declares a RemoteInterface,
/// so its calls are checked as a Python `RemoteInterface` checks them (a
/// 16 MiB string for `put_bytes` is refused at its header, never
/// buffered).
struct Limited;

/// The name `limited()`'s object announces.
const LIMITED: &str = "RIKitchenSinkLimited.foolscap-rs.example";

/// ```python
/// class RIKitchenSinkLimited(RemoteInterface):
///     __remote_name__ = "RIKitchenSinkLimited.foolscap-rs.example"
///     def put_bytes(data=ByteStringConstraint(maxLength=65536)): return int
///     def put_list(items=ListOf(int, maxLength=100)): return int
/// ```
fn limited_schema() -> Arc<InterfaceSchema> {
    Arc::new(
        InterfaceSchema::new(LIMITED)
            .with_method(
                MethodSchema::new("put_bytes")
                    .with_argument(Argument::required(
                        "data",
                        Constraint::byte_string(Some(65536)),
                    ))
                    .returning(Constraint::int()),
            )
            .with_method(
                MethodSchema::new("put_list")
                    .with_argument(Argument::required(
                        "items",
                        Constraint::list_of(Constraint::int(), Some(100)),
                    ))
                    .returning(Constraint::int()),
            ),
    )
}

impl Object for Limited {
    fn class_name(&self) -> &str {
        "Limited"
    }

    fn schema(&self) -> Option<Arc<InterfaceSchema>> {
        Some(limited_schema())
    }

    fn call(&self, call: Call) {
        // the schema has checked the method name and the argument (its
        // type and size), and that it is there
        let len = match call.arg(0, "data").or_else(|| call.arg(0, "items")) {
            Some(Value::Bytes(b)) => b.len(),
            Some(Value::List(items)) => items.len(),
            _ => 0,
        };
        call.answer(Value::int(len as i64))
    }
}

/// The object registered under the swissnum.
struct KitchenSink {
    /// Calls delivered so far (also numbers the messages for [`Identity`]).
    calls: AtomicU64,
    /// The last [`MAX_NOTES`] notes, self-contained.
    notes: Mutex<VecDeque<Value>>,
    /// What `hold(x)` keeps (Python's `self.held`, initially None).
    held: Mutex<Identity>,
}

/// The methods' Python signatures (`def remote_<name>(self, ...)`).
const SINK_METHODS: &[Signature] = &[
    // values
    Signature::new("echo", &["x"]),
    Signature::new("echo_args", &[]).star_args().star_kwargs(),
    Signature::new("add", &["a", "b"]),
    Signature::new("length", &["x"]),
    Signature::new("big", &["n"]),
    Signature::new("pow2", &["n"]),
    Signature::new("point", &["x", "y"]),
    Signature::new("types", &["x"]),
    // failures
    Signature::new("fail", &["msg"]),
    Signature::new("divzero", &[]),
    Signature::new("fail_later", &["msg", "seconds"]).defaults(1),
    // references
    Signature::new("make_counter", &["start"]).defaults(1),
    Signature::new("get_self", &[]),
    Signature::new("limited", &[]),
    Signature::new("call_back", &["ref", "method"]).star_args(),
    Signature::new("call_back_only", &["ref", "method"]).star_args(),
    Signature::new("is_same", &["a", "b"]),
    Signature::new("hold", &["x"]),
    Signature::new("is_held", &["x"]),
    // state and timing
    Signature::new("count_calls", &[]),
    Signature::new("note", &["x"]),
    Signature::new("notes", &[]),
    Signature::new("log", &["msg"]),
    Signature::new("sleep", &["seconds"]),
    Signature::new("hangup", &["ref", "seconds"]).defaults(1),
];

/// Required parameter `i` as it is in the message (anchor or alias kept:
/// what identity and cycles are told by).
fn raw<'c>(args: &BoundArgs<'c>, i: usize) -> &'c Value {
    args.raw(i).expect("binding checked required parameters")
}

impl KitchenSink {
    fn new() -> Self {
        KitchenSink {
            calls: AtomicU64::new(0),
            notes: Mutex::new(VecDeque::new()),
            held: Mutex::new(Identity::Singleton(Value::None)),
        }
    }

    /// The methods that answer at once. `message` numbers this call.
    fn answer_now(
        &self,
        call: &Call,
        method: &str,
        args: &BoundArgs<'_>,
        message: u64,
    ) -> Result<Value, Failure> {
        let tub = call.tub();
        let scope = args.scope();
        let arg = |i| &args[i];
        match method {
            // -- values ----------------------------------------------------
            "echo" => Ok(scope.detach(raw(args, 0))),
            "echo_args" => {
                // [list(args), dict(kwargs)]
                let rest = args.rest().iter().map(|&v| v.clone()).collect();
                let kwargs = args
                    .extra()
                    .iter()
                    .map(|&(name, v)| (Value::Str(name.clone()), v.clone()))
                    .collect();
                let answer = Value::List(vec![Value::List(rest), Value::Dict(kwargs)]);
                Ok(scope.detach(&answer))
            }
            "add" => add_in_scope(raw(args, 0), raw(args, 1), "+", scope, tub),
            "length" => py_len(arg(0), tub),
            "big" => {
                let n = arg(0);
                if py_compare(n, MAX_BIG, ">", tub)? == Some(Ordering::Greater) {
                    return Err(value_error(format!(
                        "big({}): n must be at most {MAX_BIG}",
                        percent_d(n)?
                    )));
                }
                match as_num(n) {
                    // b"x" * n: empty for n <= 0
                    Some(Num::Int(n)) => {
                        let len = usize::try_from(&n).unwrap_or(0);
                        Ok(Value::Bytes(Bytes::from(vec![b'x'; len])))
                    }
                    _ => Err(type_error(format!(
                        "can't multiply sequence by non-int of type '{}'",
                        py_type(n, tub)
                    ))),
                }
            }
            "pow2" => {
                let n = arg(0);
                if py_compare(n, MAX_POW2, ">", tub)? == Some(Ordering::Greater) {
                    return Err(value_error(format!(
                        "pow2({}): n must be at most {MAX_POW2}",
                        percent_d(n)?
                    )));
                }
                if py_compare(n, 0, "<", tub)? == Some(Ordering::Less) {
                    return Err(value_error(format!(
                        "pow2({}): n must not be negative",
                        percent_d(n)?
                    )));
                }
                // 2 ** n: an int, or for a float or Decimal n one of those
                match (n, as_num(n)) {
                    (_, Some(Num::Int(n))) => {
                        let n = usize::try_from(&n).expect("0 <= n <= MAX_POW2");
                        Ok(Value::Int(Int::from(BigInt::from(1u8) << n)))
                    }
                    (_, Some(Num::Float(f))) => {
                        let r = 2f64.powf(f);
                        if r.is_infinite() {
                            Err(py_exception(
                                "OverflowError",
                                "(34, 'Numerical result out of range')",
                            ))
                        } else {
                            Ok(Value::Float(r))
                        }
                    }
                    (Value::Decimal(d), _) => Ok(Dec::parse(d.as_str()).pow2()?.to_value()),
                    _ => unreachable!("py_compare accepts numbers only"),
                }
            }
            "point" => {
                let state = ["x", "y"]
                    .into_iter()
                    .map(Text::from)
                    .zip(scope.detach_all([raw(args, 0), raw(args, 1)]))
                    .collect();
                Ok(Value::Copyable(Box::new(Copyable {
                    type_name: Text::from(POINT_TYPE),
                    state,
                })))
            }
            "types" => Ok(Value::str(&describe(
                raw(args, 0),
                scope,
                tub,
                &mut Vec::new(),
            ))),

            // -- failures --------------------------------------------------
            "fail" => Err(value_error(py_str(arg(0)))),
            "divzero" => Err(py_exception("ZeroDivisionError", "division by zero")),

            // -- references ------------------------------------------------
            "make_counter" => {
                let start = match args.get(0) {
                    Some(v) => scope.detach(v),
                    None => Value::int(0),
                };
                Ok(tub.local(Arc::new(Counter {
                    value: Mutex::new(start),
                })))
            }
            "get_self" => Ok(Value::Local(call.object())),
            "limited" => Ok(tub.local(Arc::new(Limited))),
            "call_back_only" => {
                let (target, method) = call_target(args, tub, "callRemoteOnly")?;
                let rest = scope.detach_all(args.rest().iter().copied());
                // like callRemoteOnly, ignore what happens to it
                let _ = tub.call_only(&target, &method, &rest, &[]);
                Ok(Value::None)
            }
            "is_same" => Ok(Value::Bool(
                identity(raw(args, 0), scope, message) == identity(raw(args, 1), scope, message),
            )),
            "hold" => {
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) =
                    identity(raw(args, 0), scope, message);
                Ok(Value::None)
            }
            "is_held" => {
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                Ok(Value::Bool(identity(raw(args, 0), scope, message) == *held))
            }

            // -- state -----------------------------------------------------
            "count_calls" => Ok(Value::int(self.calls.load(atomic::Ordering::SeqCst) as i64)),
            "note" => {
                let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
                notes.push_back(scope.detach(raw(args, 0)));
                while notes.len() > MAX_NOTES {
                    notes.pop_front();
                }
                Ok(Value::None)
            }
            "log" => {
                // one Foolscap event in the Tub's logger (Python's log.msg)
                tub.logger()
                    .event(py_str(arg(0)))
                    .facility("kitchen-sink")
                    .level(foolscap::logging::level::OPERATIONAL)
                    .log();
                Ok(Value::None)
            }
            "notes" => {
                // notes from different calls: give their anchors distinct ids
                let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
                Ok(Value::List(renumber(notes.iter())))
            }
            "hangup" => {
                let Value::Remote(target) = arg(0) else {
                    return Err(no_attribute(arg(0), "tracker", tub));
                };
                let seconds = match args.get(1) {
                    Some(s) => call_later_seconds(s, tub)?,
                    None => 0.1,
                };
                // drop the connection over which ref arrived, after answering
                let (target, timer_tub) = (target.clone(), tub.clone());
                tub.after(delay(seconds), move || timer_tub.disconnect(&target));
                Ok(Value::Bool(true))
            }
            _ => unreachable!("{method} is in SINK_METHODS"),
        }
    }
}

/// Python's AttributeError for `x.name`.
fn no_attribute(v: &Value, name: &str, tub: &Tub) -> Failure {
    py_exception(
        "AttributeError",
        format!("'{}' object has no attribute '{name}'", py_type(v, tub)),
    )
}

/// The `ref` and `method` arguments of call_back and call_back_only
/// (`ref.call_with(method, ...)` in Python).
fn call_target(
    args: &BoundArgs<'_>,
    tub: &Tub,
    call_with: &str,
) -> Result<(Value, String), Failure> {
    // one of our own objects come home is called as Python calls a
    // LocalReferenceable: on a later turn
    let target = match &args[0] {
        v @ (Value::Remote(_) | Value::Local(_)) => v.clone(),
        other => return Err(no_attribute(other, call_with, tub)),
    };
    match &args[1] {
        Value::Str(m) => Ok((target, m.as_str().to_string())),
        // (what foolscap says when it cannot send the method name)
        other => Err(type_error(format!(
            "not expecting type '<class '{}'>'",
            py_type(other, tub)
        ))),
    }
}

/// A timer delay in seconds (negative: at once; at most 30 years, which
/// is never for this server).
fn delay(seconds: f64) -> Duration {
    const NEVER: f64 = 30.0 * 365.0 * 86400.0;
    Duration::from_secs_f64(if seconds > 0.0 {
        seconds.min(NEVER)
    } else {
        0.0
    })
}

impl Object for KitchenSink {
    fn class_name(&self) -> &str {
        "KitchenSink"
    }

    fn call(&self, call: Call) {
        // every call delivered counts, unknown methods and bad arguments too
        let message = self.calls.fetch_add(1, atomic::Ordering::SeqCst) + 1;
        let Some(sig) = SINK_METHODS
            .iter()
            .find(|s| s.method() == call.method.as_str())
        else {
            return call.no_such_method("KitchenSink");
        };
        let args = match call.bind("KitchenSink", sig) {
            Ok(args) => args,
            Err(f) => return call.fail(f),
        };
        let tub = call.tub().clone();
        match sig.method() {
            // -- the methods that answer later --------------------------------
            "fail_later" => {
                // KeyError's str() is the repr of its argument
                let failure = py_exception("KeyError", py_repr(&args[0]));
                let seconds = match args.get(1) {
                    Some(s) => match call_later_seconds(s, &tub) {
                        Ok(s) => s,
                        Err(f) => return call.fail(f),
                    },
                    None => 0.05,
                };
                tub.after(delay(seconds), move || call.fail(failure));
            }
            "sleep" => {
                let seconds = match py_float(&args[0], &tub) {
                    Ok(s) => s,
                    Err(f) => return call.fail(f),
                };
                // max(0.0, min(seconds, MAX_SLEEP)) with Python's NaN rules
                let seconds = if MAX_SLEEP < seconds {
                    MAX_SLEEP
                } else {
                    seconds
                };
                let seconds = if seconds > 0.0 { seconds } else { 0.0 };
                // a timer answers later (on the timer thread or the event loop);
                // meanwhile other calls are served
                tub.after(delay(seconds), move || call.answer(Value::None));
            }
            "call_back" => {
                // the answer (or failure) of the call back is our answer
                let (target, method) = match call_target(&args, &tub, "callRemote") {
                    Ok(t) => t,
                    Err(f) => return call.fail(f),
                };
                let rest = args.scope().detach_all(args.rest().iter().copied());
                // the Call goes to the callback, unless the call cannot start
                let slot = Arc::new(Mutex::new(Some(call)));
                let in_callback = slot.clone();
                let sent = tub.call_async(&target, &method, &rest, &[], move |result| {
                    if let Some(call) = in_callback.lock().unwrap_or_else(|e| e.into_inner()).take()
                    {
                        call.reply(result.map_err(|e| e.to_failure()));
                    }
                });
                if let Err(e) = sent {
                    if let Some(call) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        call.fail(e.to_failure());
                    }
                }
            }
            // -- the others answer at once ----------------------------------
            _ => {
                let result = self.answer_now(&call, sig.method(), &args, message);
                call.reply(result);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Just enough of Python's `decimal` (default context) for add, pow2 and
// comparisons with Decimal arguments
// ---------------------------------------------------------------------------

/// The default context: 28 digits, ROUND_HALF_EVEN, exponents within
/// ±999999; InvalidOperation and Overflow raise.
const DEC_PREC: i64 = 28;
const DEC_EMAX: i64 = 999_999;
const DEC_EMIN: i64 = -999_999;

/// A Decimal taken apart.
#[derive(Debug, Clone)]
enum Dec {
    /// `(-1)**negative * coefficient * 10**exponent`; the coefficient's
    /// digits have no leading zeros (zero is `"0"`).
    Finite {
        negative: bool,
        digits: String,
        exponent: i64,
    },
    Infinity {
        negative: bool,
    },
    NaN {
        negative: bool,
        signaling: bool,
        payload: String,
    },
}

fn invalid_operation() -> Failure {
    exception(
        &[
            "decimal.InvalidOperation",
            "decimal.DecimalException",
            "builtins.ArithmeticError",
        ],
        "[<class 'decimal.InvalidOperation'>]",
    )
}

fn decimal_overflow() -> Failure {
    exception(
        &[
            "decimal.Overflow",
            "decimal.Inexact",
            "decimal.Rounded",
            "decimal.DecimalException",
            "builtins.ArithmeticError",
        ],
        "[<class 'decimal.Overflow'>]",
    )
}

/// Compares two coefficients (ASCII digits without leading zeros).
fn cmp_digits(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `a + b` for two coefficients, in one pass over their digits.
fn add_digits(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let digit = |d: &[u8]| d.len().checked_sub(i + 1).map_or(0, |at| d[at] - b'0');
        let sum = digit(a) + digit(b) + carry;
        out.push(b'0' + sum % 10);
        carry = sum / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// `a - b` for two coefficients with `a > b`, without leading zeros.
fn sub_digits(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0;
    for i in 0..a.len() {
        let x = (a[a.len() - 1 - i] - b'0') as i8;
        let y = b.len().checked_sub(i + 1).map_or(0, |at| b[at] - b'0') as i8;
        let mut d = x - y - borrow;
        borrow = i8::from(d < 0);
        if d < 0 {
            d += 10;
        }
        out.push(b'0' + d as u8);
    }
    while out.len() > 1 && out.last() == Some(&b'0') {
        out.pop();
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

impl Dec {
    /// Parses the text of a received Decimal.
    fn parse(text: &str) -> Dec {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let lower = rest.to_ascii_lowercase();
        if lower == "infinity" || lower == "inf" {
            return Dec::Infinity { negative };
        }
        for (prefix, signaling) in [("snan", true), ("nan", false)] {
            if let Some(payload) = lower.strip_prefix(prefix) {
                return Dec::NaN {
                    negative,
                    signaling,
                    payload: payload.to_string(),
                };
            }
        }
        let (mantissa, exponent) = match lower.split_once('e') {
            Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
            None => (lower.as_str(), 0),
        };
        let (int_part, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        Dec::finite(
            negative,
            format!("{int_part}{fraction}"),
            exponent - fraction.len() as i64,
        )
    }

    fn finite(negative: bool, digits: String, exponent: i64) -> Dec {
        let digits = digits.trim_start_matches('0');
        Dec::Finite {
            negative,
            digits: if digits.is_empty() {
                "0".into()
            } else {
                digits.into()
            },
            exponent,
        }
    }

    /// `Decimal(i)`.
    fn from_int(i: &BigInt) -> Dec {
        let text = i.to_string();
        match text.strip_prefix('-') {
            Some(digits) => Dec::finite(true, digits.into(), 0),
            None => Dec::finite(false, text, 0),
        }
    }

    /// Python's `str(d)`, which is also how a Decimal travels.
    fn to_value(&self) -> Value {
        let text = match self {
            Dec::Infinity { negative } => format!("{}Infinity", if *negative { "-" } else { "" }),
            Dec::NaN {
                negative,
                signaling,
                payload,
            } => format!(
                "{}{}NaN{payload}",
                if *negative { "-" } else { "" },
                if *signaling { "s" } else { "" }
            ),
            Dec::Finite {
                negative,
                digits,
                exponent,
            } => {
                let len = digits.len() as i64;
                let left_digits = exponent + len;
                let dot = if *exponent <= 0 && left_digits > -6 {
                    left_digits
                } else {
                    1
                };
                let (int_part, frac_part) = if dot <= 0 {
                    (
                        "0".to_string(),
                        format!(".{}{digits}", "0".repeat(-dot as usize)),
                    )
                } else if dot >= len {
                    (
                        format!("{digits}{}", "0".repeat((dot - len) as usize)),
                        String::new(),
                    )
                } else {
                    (
                        digits[..dot as usize].to_string(),
                        format!(".{}", &digits[dot as usize..]),
                    )
                };
                let exp = if left_digits == dot {
                    String::new()
                } else {
                    format!("E{:+}", left_digits - dot)
                };
                format!(
                    "{}{int_part}{frac_part}{exp}",
                    if *negative { "-" } else { "" }
                )
            }
        };
        Value::Decimal(foolscap::value::Decimal::parse(&text).expect("canonical Decimal text"))
    }

    /// The context's `_fix`: rounds a finite result to the precision and
    /// exponent range (ROUND_HALF_EVEN), raising Overflow.
    fn fix(negative: bool, digits: String, exponent: i64) -> Result<Dec, Failure> {
        let e_tiny = DEC_EMIN - DEC_PREC + 1;
        let e_top = DEC_EMAX - DEC_PREC + 1;
        if digits == "0" {
            return Ok(Dec::finite(
                negative,
                digits,
                exponent.clamp(e_tiny, DEC_EMAX),
            ));
        }
        let mut exp_min = digits.len() as i64 + exponent - DEC_PREC;
        if exp_min > e_top {
            return Err(decimal_overflow());
        }
        exp_min = exp_min.max(e_tiny);
        if exponent >= exp_min {
            return Ok(Dec::finite(negative, digits, exponent));
        }
        // keep `keep` digits, round the rest away
        let keep = digits.len() as i64 + exponent - exp_min;
        let (kept, rest) = if keep < 0 {
            (String::new(), "1".to_string())
        } else {
            let (k, r) = digits.split_at(keep as usize);
            (k.to_string(), r.to_string())
        };
        let exact_half = rest.starts_with('5') && rest[1..].bytes().all(|b| b == b'0');
        let last_even = kept
            .bytes()
            .last()
            .is_none_or(|d| matches!(d, b'0' | b'2' | b'4' | b'6' | b'8'));
        let up = rest.as_bytes()[0] >= b'5' && !(exact_half && last_even);
        let mut coefficient = if kept.is_empty() {
            "0".to_string()
        } else {
            kept
        };
        if up {
            coefficient = (coefficient.parse::<BigInt>().expect("digits") + 1u8).to_string();
            if coefficient.len() as i64 > DEC_PREC {
                coefficient.pop();
                exp_min += 1;
            }
        }
        if exp_min > e_top {
            return Err(decimal_overflow());
        }
        Ok(Dec::finite(negative, coefficient, exp_min))
    }

    /// `self + other` (`Decimal.__add__`).
    fn add(&self, other: &Dec) -> Result<Dec, Failure> {
        use Dec::*;
        match (self, other) {
            (
                NaN {
                    signaling: true, ..
                },
                _,
            )
            | (
                _,
                NaN {
                    signaling: true, ..
                },
            ) => Err(invalid_operation()),
            (NaN { .. }, _) => Ok(self.clone()),
            (_, NaN { .. }) => Ok(other.clone()),
            (Infinity { negative: a }, Infinity { negative: b }) if a != b => {
                Err(invalid_operation())
            }
            (Infinity { .. }, _) => Ok(self.clone()),
            (_, Infinity { .. }) => Ok(other.clone()),
            (
                Finite {
                    negative: n1,
                    digits: d1,
                    exponent: e1,
                },
                Finite {
                    negative: n2,
                    digits: d2,
                    exponent: e2,
                },
            ) => {
                let exp = (*e1).min(*e2);
                let (zero1, zero2) = (d1 == "0", d2 == "0");
                if zero1 && zero2 {
                    return Dec::fix(*n1 && *n2, "0".into(), exp);
                }
                // zero + x: x with at least the zero's exponent's digits
                let rescaled = |n: bool, d: &str, e: i64| {
                    let exp = exp.max(e - DEC_PREC - 1);
                    Dec::fix(n, format!("{d}{}", "0".repeat((e - exp) as usize)), exp)
                };
                if zero1 {
                    return rescaled(*n2, d2, *e2);
                }
                if zero2 {
                    return rescaled(*n1, d1, *e1);
                }
                // _normalize: an operand far below the other's last digit
                // only matters for rounding; shrink it to a single digit
                let (mut hi, mut lo) = ((*n1, d1.clone(), *e1), (*n2, d2.clone(), *e2));
                if hi.2 < lo.2 {
                    std::mem::swap(&mut hi, &mut lo);
                }
                let floor = hi.2 + (-1i64).min(hi.1.len() as i64 - DEC_PREC - 2);
                if lo.1.len() as i64 + lo.2 - 1 < floor {
                    lo = (lo.0, "1".into(), floor);
                }
                // the coefficients aligned on lo's exponent, added digit
                // by digit (linear: a BigInt's decimal parse and print are
                // quadratic, and a Decimal may have millions of digits)
                let shifted = format!("{}{}", hi.1, "0".repeat((hi.2 - lo.2) as usize));
                let (negative, digits) = if hi.0 == lo.0 {
                    (hi.0, add_digits(&shifted, &lo.1))
                } else {
                    match cmp_digits(&shifted, &lo.1) {
                        Ordering::Equal => return Dec::fix(false, "0".into(), exp),
                        Ordering::Greater => (hi.0, sub_digits(&shifted, &lo.1)),
                        Ordering::Less => (lo.0, sub_digits(&lo.1, &shifted)),
                    }
                };
                Dec::fix(negative, digits, lo.2)
            }
        }
    }

    /// Comparison with an int; a NaN raises InvalidOperation.
    fn cmp_int(&self, limit: i64) -> Result<Ordering, Failure> {
        match self {
            Dec::NaN { .. } => Err(invalid_operation()),
            Dec::Infinity { negative: true } => Ok(Ordering::Less),
            Dec::Infinity { negative: false } => Ok(Ordering::Greater),
            Dec::Finite {
                negative,
                digits,
                exponent,
            } => {
                let adjusted = exponent + digits.len() as i64 - 1;
                if digits == "0" || adjusted < -1 {
                    // |self| < 0.1: on the same side of every int as 0
                    // (or of 0 itself, by its sign)
                    return Ok(match 0.cmp(&limit) {
                        Ordering::Equal if digits == "0" => Ordering::Equal,
                        Ordering::Equal if *negative => Ordering::Less,
                        Ordering::Equal => Ordering::Greater,
                        other => other,
                    });
                } else if adjusted > 20 {
                    // beyond every i64
                    return Ok(if *negative {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    });
                };
                // the integer part (at most 21 digits here) and whether a
                // fraction follows: no parse of the whole coefficient
                let point = (digits.len() as i64 + exponent).max(0) as usize;
                let (int_digits, fraction) = digits.split_at(point.min(digits.len()));
                let mut magnitude = if int_digits.is_empty() {
                    BigInt::from(0u8)
                } else {
                    int_digits.parse::<BigInt>().expect("digits")
                };
                if *exponent > 0 {
                    magnitude *= BigInt::from(10u8).pow(*exponent as u32);
                }
                let has_fraction = fraction.bytes().any(|d| d != b'0');
                // |self| against |limit| with the sign taken out
                let against = if *negative {
                    -BigInt::from(limit)
                } else {
                    BigInt::from(limit)
                };
                let order = match magnitude.cmp(&against) {
                    Ordering::Equal if has_fraction => Ordering::Greater,
                    other => other,
                };
                Ok(if *negative { order.reverse() } else { order })
            }
        }
    }

    /// `int(self)`, truncated toward zero.
    fn trunc(&self) -> Result<BigInt, Failure> {
        match self {
            Dec::NaN { .. } => Err(value_error("cannot convert NaN to integer")),
            Dec::Infinity { .. } => Err(py_exception(
                "OverflowError",
                "cannot convert Infinity to integer",
            )),
            Dec::Finite {
                negative,
                digits,
                exponent,
            } => {
                let magnitude = if *exponent >= 0 {
                    digits.parse::<BigInt>().expect("digits")
                        * BigInt::from(10u8).pow(*exponent as u32)
                } else if -exponent >= digits.len() as i64 {
                    BigInt::from(0u8)
                } else {
                    digits[..(digits.len() as i64 + exponent) as usize]
                        .parse::<BigInt>()
                        .expect("digits")
                };
                Ok(if *negative { -magnitude } else { magnitude })
            }
        }
    }

    /// `2 ** self` for an integral `0 <= self <= MAX_POW2` (pow2 has
    /// checked the range). Non-integral powers are not implemented here.
    fn pow2(&self) -> Result<Dec, Failure> {
        let n = self.trunc()?;
        if self.fraction_is_nonzero() {
            return Err(py_exception(
                "NotImplementedError",
                "this example computes 2 ** Decimal(n) for integral n only",
            ));
        }
        let n = usize::try_from(&n).expect("0 <= n <= MAX_POW2");
        let power = (BigInt::from(1u8) << n).to_string();
        Dec::fix(false, power, 0)
    }

    fn fraction_is_nonzero(&self) -> bool {
        match self {
            Dec::Finite {
                digits, exponent, ..
            } if *exponent < 0 => {
                let cut = (digits.len() as i64 + exponent).max(0) as usize;
                digits[cut..].bytes().any(|b| b != b'0')
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

/// The engine that carries the Tub (`--driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// A `foolscap::mio` event loop (the default).
    Mio,
    /// `foolscap::threads` per connection.
    Threads,
    /// `foolscap_tokio` on a current-thread runtime.
    Tokio,
}

struct Options {
    furl_file: String,
    listen: String,
    port: u16,
    name: String,
    cert_file: Option<String>,
    max_seconds: f64,
    driver: Driver,
    /// `--no-tracebacks`: Python's `Tub.unsafeTracebacks = False`.
    no_tracebacks: bool,
    /// `--logport-furlfile FILE`: publish the logport, its FURL written there.
    logport_furlfile: Option<String>,
    /// `--log-gatherer-furl FURL` (repeatable): Python's Tub option
    /// log-gatherer-furl, the logport offered to these gatherers.
    log_gatherer_furls: Vec<String>,
}

const USAGE: &str = "usage: kitchen_sink FURLFILE [--port N] [--name SWISSNUM] \
                     [--certfile PEM] [--max-seconds S] [--driver mio|threads|tokio] \
                     [--listen HOST] [--no-tracebacks] [--logport-furlfile FILE] \
                     [--log-gatherer-furl FURL]...";

/// The time `--max-seconds` leaves the mio runtime for answers already due.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn parse_options() -> Result<Options, String> {
    let mut opts = Options {
        furl_file: String::new(),
        listen: "127.0.0.1".into(),
        port: 0,
        name: "kitchen-sink".into(),
        cert_file: None,
        max_seconds: 3600.0,
        driver: Driver::Mio,
        no_tracebacks: false,
        logport_furlfile: None,
        log_gatherer_furls: Vec::new(),
    };
    let mut furl_file = None;
    let mut argv = std::env::args().skip(1);
    while let Some(a) = argv.next() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if a == "--no-tracebacks" {
            opts.no_tracebacks = true;
            continue;
        }
        if !a.starts_with("--") {
            if furl_file.replace(a.clone()).is_some() {
                return Err(format!("unexpected argument: {a}"));
            }
            continue;
        }
        // --opt VALUE or --opt=VALUE
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = argv.next().ok_or(format!("{a} needs a value"))?;
                (a.clone(), v)
            }
        };
        let bad = |_| format!("bad value for {name}: {value}");
        match name.as_str() {
            "--port" => opts.port = value.parse().map_err(bad)?,
            "--listen" => {
                // `[::1]` as well as `::1`: brackets are how IPv6 addresses
                // are written next to a port, so people type them
                let host = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
                opts.listen = host.unwrap_or(&value).to_string();
                if opts.listen.is_empty() {
                    return Err(format!("bad value for {name}: {value}"));
                }
            }
            "--name" => opts.name = value.clone(),
            "--certfile" => opts.cert_file = Some(value.clone()),
            "--logport-furlfile" => opts.logport_furlfile = Some(value.clone()),
            "--log-gatherer-furl" => opts.log_gatherer_furls.push(value.clone()),
            "--max-seconds" => {
                opts.max_seconds = value
                    .parse()
                    .map_err(|_| format!("bad value for {name}: {value}"))?
            }
            "--driver" => {
                opts.driver = match value.as_str() {
                    "mio" => Driver::Mio,
                    "threads" => Driver::Threads,
                    "tokio" => Driver::Tokio,
                    _ => {
                        return Err(format!(
                            "bad value for {name}: {value} (mio, threads or tokio)"
                        ))
                    }
                }
            }
            _ => return Err(format!("unknown option: {name}")),
        }
    }
    opts.furl_file = furl_file.ok_or("FURLFILE is required")?;
    Ok(opts)
}

/// Writes `text` to a temporary file and renames it into place, so that a
/// reader sees the whole file or none.
fn write_atomically(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp.{}", std::process::id());
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn run(opts: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let identity = match &opts.cert_file {
        Some(path) => foolscap::app::load_or_create_identity(path)?,
        None => foolscap::identity::Identity::generate()?,
    };
    let mut config = TubConfig::default();
    // errors then say `Traceback unavailable` (ours never carry a Python
    // traceback anyway, but forwarded ones do)
    config.broker.unsafe_tracebacks = !opts.no_tracebacks;
    if opts.driver == Driver::Tokio {
        // the main thread runs the runtime: the objects run on it
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async {
            let engine = foolscap_tokio::Engine::new(foolscap_tokio::TokioConfig::default());
            let tub = engine.tub(identity, config)?;
            serve(opts, &tub)?;
            // (tokio sleeps at most about two years at a time)
            let year = Duration::from_secs(365 * 86400);
            tokio::time::sleep(delay(opts.max_seconds).min(year)).await;
            engine.shutdown(SHUTDOWN_GRACE).await;
            Ok(())
        });
    }
    // the same Tub handle on every engine; only its making differs
    let runtime = match opts.driver {
        Driver::Mio => Some(Runtime::start(LoopConfig::default())?),
        Driver::Threads | Driver::Tokio => None,
    };
    let tub = match &runtime {
        Some(rt) => rt.tub(identity, config)?,
        None => foolscap::threads::tub(identity, config)?,
    };
    serve(opts, &tub)?;
    // everything else happens on the event loop's thread or the Tub's
    // threads
    std::thread::sleep(delay(opts.max_seconds));
    match runtime {
        // stops listening, lets due answers out, closes, ends the loop
        Some(rt) => rt.shutdown(SHUTDOWN_GRACE),
        None => tub.shutdown(),
    }
    Ok(())
}

/// Listens, publishes the kitchen sink and writes its FURL.
fn serve(opts: &Options, tub: &Tub) -> Result<(), Box<dyn std::error::Error>> {
    // like Python's RemoteCopy registration: received Points are accepted
    // (and echoed back); other copyable types are refused with a Violation
    tub.register_copyable(POINT_TYPE);
    // the FURL gets the bound address as its location: tcp:127.0.0.1:PORT,
    // tcp:[::1]:PORT
    tub.listen((opts.listen.as_str(), opts.port))?;
    if let Some(path) = &opts.logport_furlfile {
        // Python's Tub option logport-furlfile
        tub.set_logport_furlfile(path)?;
    }
    if !opts.log_gatherer_furls.is_empty() {
        // Python's Tub option log-gatherer-furl
        tub.set_log_gatherer_furl(&opts.log_gatherer_furls)?;
    }
    let furl = tub.register(Arc::new(KitchenSink::new()), Some(&opts.name))?;
    write_atomically(&opts.furl_file, &format!("{furl}\n"))?;
    Ok(())
}

fn main() {
    let opts = parse_options().unwrap_or_else(|e| {
        eprintln!("{USAGE}\nkitchen_sink: error: {e}");
        std::process::exit(2);
    });
    if let Err(e) = run(&opts) {
        eprintln!("kitchen_sink: {e}");
        std::process::exit(1);
    }
}
