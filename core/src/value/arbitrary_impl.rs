//! Generated values for property tests and fuzzing.
//!
//! Every generated value is one a Python peer could send and that decodes
//! back to itself: dict keys are hashable, distinct under Python equality,
//! of one comparable kind and already sorted (as Python sends them); set
//! elements are distinct.

use arbitrary::{Arbitrary, Result, Unstructured};
use num_bigint::BigInt;

use super::pyops::{py_cmp, py_eq};
use super::{Copyable, Decimal, Int, Text, Value};

const MAX_DEPTH: u32 = 6;

impl<'a> Arbitrary<'a> for Value {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        value(u, 0, &mut 0)
    }
}

fn scalar(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Value::None,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(Int::from(i64::arbitrary(u)? >> u.int_in_range(0..=63)?)),
        3 => {
            let mag: Vec<u8> = u.arbitrary()?;
            Value::Int(Int::from(BigInt::from_bytes_be(
                if u.arbitrary()? {
                    num_bigint::Sign::Minus
                } else {
                    num_bigint::Sign::Plus
                },
                &mag,
            )))
        }
        4 => Value::Float(f64::from_bits(u.arbitrary()?)),
        5 => Value::Bytes(bytes::Bytes::from(Vec::<u8>::arbitrary(u)?)),
        6 => Value::Str(Text::from(String::arbitrary(u)?)),
        7 => {
            let words = ["list", "none", "unicode", "dict", "reference", "copyable"];
            let w = *u.choose(&words)?;
            if u.arbitrary()? {
                Value::bytes(w.as_bytes())
            } else {
                Value::str(w)
            }
        }
        8 => {
            let digits: u64 = u.arbitrary()?;
            let exp: i16 = u.arbitrary()?;
            let text = match u.int_in_range(0..=5)? {
                0 => "NaN".to_owned(),
                1 => "-Infinity".to_owned(),
                _ => format!(
                    "{}{}E{}",
                    if u.arbitrary()? { "-" } else { "" },
                    digits,
                    exp
                ),
            };
            Value::Decimal(Decimal::parse(&text).expect("generated decimal text is valid"))
        }
        _ => Value::Float(*u.choose(&[
            0.0,
            -0.0,
            1.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            5e-324,
        ])?),
    })
}

/// A hashable key of the given kind (0: int, 1: str, 2: bytes, 3: tuple).
fn key(u: &mut Unstructured<'_>, kind: u8) -> Result<Value> {
    Ok(match kind {
        0 => Value::int(i64::arbitrary(u)? >> u.int_in_range(0..=63)?),
        1 => Value::Str(Text::from(String::arbitrary(u)?)),
        2 => Value::Bytes(bytes::Bytes::from(Vec::<u8>::arbitrary(u)?)),
        _ => Value::Tuple(vec![
            Value::int(u.arbitrary::<i16>()? as i64),
            Value::str(if u.arbitrary()? { "a" } else { "b" }),
        ]),
    })
}

fn distinct(values: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(values.len());
    for v in values {
        if !out.iter().any(|o| py_eq(o, &v)) {
            out.push(v);
        }
    }
    out
}

fn value(u: &mut Unstructured<'_>, depth: u32, next_id: &mut u32) -> Result<Value> {
    if depth >= MAX_DEPTH || u.ratio(1, 2)? {
        return scalar(u);
    }
    let len = u.int_in_range(0..=6)?;
    let items = |u: &mut Unstructured<'_>, next_id: &mut u32| -> Result<Vec<Value>> {
        (0..len).map(|_| value(u, depth + 1, next_id)).collect()
    };
    Ok(match u.int_in_range(0..=5)? {
        0 => Value::List(items(u, next_id)?),
        1 => Value::Tuple(items(u, next_id)?),
        2 | 3 => {
            let kind = u.int_in_range(0..=3)?;
            let keys: Vec<Value> = (0..len).map(|_| key(u, kind)).collect::<Result<_>>()?;
            let mut keys = distinct(keys);
            keys.sort_by(|a, b| py_cmp(a, b).unwrap_or(std::cmp::Ordering::Equal));
            let frozen = u.int_in_range(0..=2)? == 0;
            if frozen {
                Value::FrozenSet(keys)
            } else if u.arbitrary()? {
                Value::Set(keys)
            } else {
                let mut pairs = Vec::with_capacity(keys.len());
                for k in keys {
                    pairs.push((k, value(u, depth + 1, next_id)?));
                }
                Value::Dict(pairs)
            }
        }
        4 => Value::Copyable(Box::new(Copyable {
            type_name: Text::from(*u.choose(&["kitchen-sink.Point", "test.Thing"])?),
            state: (0..len.min(3))
                .map(|i| {
                    Ok((
                        Text::from(["x", "y", "z"][i]),
                        value(u, depth + 1, next_id)?,
                    ))
                })
                .collect::<Result<_>>()?,
        })),
        _ => {
            // shared and cyclic structure: [anchor, alias] or a self-list
            let id = *next_id;
            *next_id += 1;
            let mut inner = items(u, next_id)?;
            if u.arbitrary()? {
                inner.push(Value::Alias(id));
                Value::Anchor(id, Box::new(Value::List(inner)))
            } else {
                Value::List(vec![
                    Value::Anchor(id, Box::new(Value::Tuple(inner))),
                    Value::Alias(id),
                ])
            }
        }
    })
}
