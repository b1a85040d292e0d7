//! Python's `==`, `hash()` and `<` on hashable values, as far as the wire
//! needs them: a receiver must reject a dict whose keys repeat under
//! Python's rules (`1`, `1.0`, `True` and `Decimal(1)` are one key), merge
//! equal set elements, and a sender must sort dict keys as Python does.
//!
//! Shared sub-values ([`Value::Anchor`]/[`Value::Alias`]), copyables and
//! gifts compare by identity; `my-reference`/`your-reference` by clid.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{FromPrimitive, Signed, ToPrimitive};

use super::decimal::DecimalParts;
use super::{Int, Value};

/// The Mersenne prime Python reduces numeric hashes by.
const MODULUS: u64 = (1 << 61) - 1;

enum Num<'a> {
    Int(IntRef<'a>),
    Float(f64),
    Decimal(DecimalParts<'a>),
}

#[derive(Clone, Copy)]
enum IntRef<'a> {
    Small(i64),
    Big(&'a BigInt),
}

impl IntRef<'_> {
    fn to_big(self) -> BigInt {
        match self {
            IntRef::Small(i) => BigInt::from(i),
            IntRef::Big(b) => b.clone(),
        }
    }
}

fn as_num(v: &Value) -> Option<Num<'_>> {
    Some(match v {
        Value::Bool(b) => Num::Int(IntRef::Small(*b as i64)),
        Value::Int(Int::Small(i)) => Num::Int(IntRef::Small(*i)),
        Value::Int(Int::Big(b)) => Num::Int(IntRef::Big(b)),
        Value::Float(f) => Num::Float(*f),
        Value::Decimal(d) => Num::Decimal(d.parts()),
        _ => return None,
    })
}

fn mulmod(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) % MODULUS as u128) as u64
}

fn powmod(mut base: u64, mut exp: u64) -> u64 {
    let mut acc = 1;
    base %= MODULUS;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mulmod(acc, base);
        }
        base = mulmod(base, base);
        exp >>= 1;
    }
    acc
}

/// `10**e mod P` for any integer `e` (negative: the modular inverse).
fn pow10mod(e: i64) -> u64 {
    if e >= 0 {
        powmod(10, e as u64)
    } else {
        // inverse of 10 mod P via Fermat
        powmod(powmod(10, MODULUS - 2), e.unsigned_abs())
    }
}

fn signed(neg: bool, h: u64) -> u64 {
    if neg {
        (MODULUS - h) % MODULUS
    } else {
        h
    }
}

fn big_mod(b: &BigInt) -> u64 {
    let m = b.abs().mod_floor(&BigInt::from(MODULUS));
    signed(b.sign() == Sign::Minus, m.to_u64().unwrap_or(0))
}

fn num_hash(n: &Num<'_>) -> u64 {
    match n {
        Num::Int(IntRef::Small(i)) => signed(*i < 0, i.unsigned_abs() % MODULUS),
        Num::Int(IntRef::Big(b)) => big_mod(b),
        Num::Float(f) => {
            if f.is_nan() {
                return 0x7ff8_dead;
            }
            if f.is_infinite() {
                return if *f > 0.0 { 314159 } else { MODULUS - 314159 };
            }
            let (m, e) = float_parts(*f);
            let h = mulmod(
                m.unsigned_abs() % MODULUS,
                powmod(2, e.rem_euclid(61) as u64),
            );
            signed(m < 0, h)
        }
        Num::Decimal(DecimalParts::Finite {
            negative,
            digits,
            exponent,
        }) => {
            let mut m = 0u64;
            for d in digits.bytes() {
                m = (mulmod(m, 10) + (d - b'0') as u64) % MODULUS;
            }
            signed(*negative, mulmod(m, pow10mod(*exponent)))
        }
        Num::Decimal(DecimalParts::Infinity { negative }) => {
            if *negative {
                MODULUS - 314159
            } else {
                314159
            }
        }
        Num::Decimal(DecimalParts::NaN { .. }) => 0x7ff8_dead,
    }
}

/// `f = m * 2**e` exactly, for finite `f`.
fn float_parts(f: f64) -> (i64, i64) {
    if f == 0.0 {
        return (0, 0);
    }
    let bits = f.to_bits();
    let neg = bits >> 63 != 0;
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = (bits & ((1 << 52) - 1)) as i64;
    let (m, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), exp - 1075)
    };
    (if neg { -m } else { m }, e)
}

/// Normalized finite decimal: digits without trailing zeros (`0` for zero).
fn normalize(negative: bool, digits: &str, exponent: i64) -> (bool, String, i64) {
    let t = digits.trim_end_matches('0');
    if t.is_empty() {
        return (false, "0".into(), 0);
    }
    let e = exponent.saturating_add((digits.len() - t.len()) as i64);
    (negative, t.to_owned(), e)
}

/// A finite float as an exact decimal (digits, exponent).
fn float_to_decimal(f: f64) -> (bool, String, i64) {
    let (m, e) = float_parts(f);
    let neg = m < 0;
    let m = BigInt::from(m.unsigned_abs());
    let (digits, exp) = if e >= 0 {
        ((m << e as usize).to_string(), 0)
    } else {
        let five = num_traits::pow(BigInt::from(5), e.unsigned_abs() as usize);
        ((m * five).to_string(), e)
    };
    normalize(neg, &digits, exp)
}

/// Ints longer than this many bits are never equal to a Decimal here
/// (keeps hostile comparisons cheap).
const MAX_DECIMAL_COMPARE_BITS: u64 = 20_000;

fn int_to_decimal(i: IntRef<'_>) -> Option<(bool, String, i64)> {
    let b = i.to_big();
    if b.bits() > MAX_DECIMAL_COMPARE_BITS {
        return None;
    }
    Some(normalize(b.is_negative(), &b.abs().to_string(), 0))
}

fn num_eq(a: &Num<'_>, b: &Num<'_>) -> bool {
    use Num::*;
    match (a, b) {
        (Int(x), Int(y)) => match (x, y) {
            (IntRef::Small(x), IntRef::Small(y)) => x == y,
            _ => x.to_big() == y.to_big(),
        },
        (Float(x), Float(y)) => x == y,
        (Int(i), Float(f)) | (Float(f), Int(i)) => {
            f.is_finite()
                && f.fract() == 0.0
                && BigInt::from_f64(*f).is_some_and(|fb| fb == i.to_big())
        }
        (Decimal(x), Decimal(y)) => match (x, y) {
            (
                DecimalParts::Finite {
                    negative: n1,
                    digits: d1,
                    exponent: e1,
                },
                DecimalParts::Finite {
                    negative: n2,
                    digits: d2,
                    exponent: e2,
                },
            ) => normalize(*n1, d1, *e1) == normalize(*n2, d2, *e2),
            (DecimalParts::Infinity { negative: a }, DecimalParts::Infinity { negative: b }) => {
                a == b
            }
            _ => false,
        },
        (Decimal(d), other) | (other, Decimal(d)) => {
            let (neg, digits, exp) = match d {
                DecimalParts::Finite {
                    negative,
                    digits,
                    exponent,
                } => normalize(*negative, digits, *exponent),
                DecimalParts::Infinity { negative } => {
                    return matches!(other, Float(f) if f.is_infinite() && (*f < 0.0) == *negative)
                }
                DecimalParts::NaN { .. } => return false,
            };
            let theirs = match other {
                Float(f) if f.is_finite() => Some(float_to_decimal(*f)),
                Float(_) => None,
                Int(i) => int_to_decimal(*i),
                Decimal(_) => unreachable!(),
            };
            theirs == Some((neg, digits, exp))
        }
    }
}

fn is_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Decimal(d) => d.is_nan(),
        _ => false,
    }
}

/// Python's `hash()` up to consistency with [`py_eq`]: equal values hash
/// equal (numbers across int/bool/float/Decimal included). `None` for
/// unhashable values (list, dict, set, or a tuple/frozenset holding one).
pub fn py_hash(v: &Value) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_into(v, &mut h)?;
    Some(h.finish())
}

fn hash_into<H: Hasher>(v: &Value, h: &mut H) -> Option<()> {
    if let Some(n) = as_num(v) {
        0u8.hash(h);
        num_hash(&n).hash(h);
        return Some(());
    }
    match v {
        Value::None => 1u8.hash(h),
        Value::Bytes(b) => {
            2u8.hash(h);
            b.hash(h);
        }
        Value::Str(s) => {
            3u8.hash(h);
            s.hash(h);
        }
        Value::Tuple(items) => {
            4u8.hash(h);
            items.len().hash(h);
            for i in items {
                hash_into(i, h)?;
            }
        }
        Value::FrozenSet(items) => {
            5u8.hash(h);
            let mut acc: u64 = 0;
            for i in items {
                acc = acc.wrapping_add(py_hash(i)?.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            }
            acc.hash(h);
        }
        Value::Anchor(id, inner) => {
            // identity: an anchored value equals only itself and its aliases
            if !is_hashable(inner) {
                return None;
            }
            6u8.hash(h);
            id.hash(h);
        }
        Value::Alias(id) => {
            6u8.hash(h);
            id.hash(h);
        }
        Value::Copyable(c) => {
            10u8.hash(h);
            c.type_name.hash(h);
        }
        Value::Local(id) => {
            11u8.hash(h);
            id.hash(h);
        }
        Value::Remote(r) => {
            12u8.hash(h);
            r.hash(h);
        }
        Value::List(_) | Value::Dict(_) | Value::Set(_) => return None,
        Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Decimal(_) => unreachable!(),
    }
    Some(())
}

/// Whether Python could use this value as a dict key or set element.
pub(crate) fn is_hashable(v: &Value) -> bool {
    match v {
        Value::List(_) | Value::Dict(_) | Value::Set(_) => false,
        Value::Tuple(items) | Value::FrozenSet(items) => items.iter().all(is_hashable),
        Value::Anchor(_, inner) => is_hashable(inner),
        _ => true,
    }
}

/// Python's `==` between hashable values (see the module notes for what
/// compares by identity). NaN never equals anything, as for two distinct
/// NaN objects in Python.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_eq(&x, &y);
    }
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::FrozenSet(x), Value::FrozenSet(y)) => {
            // equal as sets: every element of each is in the other
            x.iter().all(|p| y.iter().any(|q| py_eq(p, q)))
                && y.iter().all(|q| x.iter().any(|p| py_eq(p, q)))
        }
        (Value::Anchor(i, _) | Value::Alias(i), Value::Anchor(j, _) | Value::Alias(j)) => i == j,
        (Value::Local(x), Value::Local(y)) => x == y,
        (Value::Remote(x), Value::Remote(y)) => x == y,
        _ => false,
    }
}

/// Python's `<`-based ordering where it is a total order on the two
/// values: numbers (except NaN), str, bytes, and tuples of those. `None`
/// where Python would raise or where `<` is only a partial order (sets).
pub(crate) fn py_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    if is_nan(a) || is_nan(b) {
        return None;
    }
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_cmp(&x, &y);
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.cmp(y)),
        (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_cmp(p, q);
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => None,
    }
}

fn num_cmp(a: &Num<'_>, b: &Num<'_>) -> Option<Ordering> {
    use Num::*;
    match (a, b) {
        (Int(IntRef::Small(x)), Int(IntRef::Small(y))) => Some(x.cmp(y)),
        (Int(x), Int(y)) => Some(x.to_big().cmp(&y.to_big())),
        (Float(x), Float(y)) => x.partial_cmp(y),
        (Int(i), Float(f)) => int_float_cmp(*i, *f),
        (Float(f), Int(i)) => int_float_cmp(*i, *f).map(Ordering::reverse),
        (Decimal(x), Decimal(y)) => decimal_cmp(x, y),
        _ => None,
    }
}

fn int_float_cmp(i: IntRef<'_>, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f.is_infinite() {
        return Some(if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    let floor = BigInt::from_f64(f.floor())?;
    let ib = i.to_big();
    Some(match ib.cmp(&floor) {
        Ordering::Equal if f.fract() != 0.0 => Ordering::Less,
        o => o,
    })
}

fn decimal_cmp(x: &DecimalParts<'_>, y: &DecimalParts<'_>) -> Option<Ordering> {
    use DecimalParts::*;
    type Key = (i8, Option<(bool, String, i64)>);
    let key = |p: &DecimalParts<'_>| -> Option<Key> {
        match p {
            Infinity { negative: true } => Some((-1, None)),
            Infinity { negative: false } => Some((1, None)),
            Finite {
                negative,
                digits,
                exponent,
            } => Some((0, Some(normalize(*negative, digits, *exponent)))),
            NaN { .. } => None,
        }
    };
    let (kx, fx) = key(x)?;
    let (ky, fy) = key(y)?;
    if kx != 0 || ky != 0 {
        return Some(kx.cmp(&ky));
    }
    let (nx, dx, ex) = fx?;
    let (ny, dy, ey) = fy?;
    let zero_x = dx == "0";
    let zero_y = dy == "0";
    let sign = |neg: bool, zero: bool| {
        if zero {
            0
        } else if neg {
            -1
        } else {
            1
        }
    };
    let (sx, sy) = (sign(nx, zero_x), sign(ny, zero_y));
    if sx != sy || sx == 0 {
        return Some(sx.cmp(&sy));
    }
    // same sign, both non-zero: compare magnitudes
    let adj_x = ex + dx.len() as i64;
    let adj_y = ey + dy.len() as i64;
    let mag = adj_x.cmp(&adj_y).then_with(|| {
        let n = dx.len().max(dy.len());
        let pad = |d: &str| format!("{d:0<n$}");
        pad(&dx).cmp(&pad(&dy))
    });
    Some(if sx < 0 { mag.reverse() } else { mag })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Decimal;

    fn d(s: &str) -> Value {
        Value::Decimal(Decimal::parse(s).unwrap())
    }

    #[test]
    fn numeric_tower() {
        let one = [
            Value::int(1),
            Value::Bool(true),
            Value::Float(1.0),
            d("1"),
            d("1.000"),
        ];
        for a in &one {
            for b in &one {
                assert!(py_eq(a, b), "{a:?} == {b:?}");
                assert_eq!(py_hash(a), py_hash(b), "hash {a:?} {b:?}");
            }
        }
        let half = [Value::Float(0.5), d("0.5"), d("5E-1")];
        for a in &half {
            for b in &half {
                assert!(py_eq(a, b));
                assert_eq!(py_hash(a), py_hash(b));
            }
        }
        assert!(!py_eq(&Value::Float(0.1), &d("0.1")));
        assert!(py_eq(&Value::Float(-0.0), &Value::int(0)));
        assert!(!py_eq(&Value::Float(f64::NAN), &Value::Float(f64::NAN)));
        let big = Value::Int(Int::from(BigInt::from(1) << 70));
        assert!(py_eq(&big, &Value::Float(2f64.powi(70))));
        assert_eq!(py_hash(&big), py_hash(&Value::Float(2f64.powi(70))));
        assert!(py_eq(&big, &d("1180591620717411303424")));
        assert_eq!(py_hash(&big), py_hash(&d("1180591620717411303424")));
        assert!(!py_eq(&Value::str("a"), &Value::bytes(b"a")));
    }

    #[test]
    fn ordering() {
        assert_eq!(
            py_cmp(&Value::int(1), &Value::Float(1.5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            py_cmp(&Value::Float(2.5), &Value::int(2)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            py_cmp(&Value::Bool(true), &Value::int(0)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            py_cmp(&Value::str("é"), &Value::str("z")),
            Some(Ordering::Greater)
        );
        assert_eq!(py_cmp(&Value::str("a"), &Value::bytes(b"a")), None);
        assert_eq!(py_cmp(&d("-1.5"), &d("-1.25")), Some(Ordering::Less));
        assert_eq!(py_cmp(&d("10"), &d("9.99")), Some(Ordering::Greater));
        let t1 = Value::Tuple(vec![Value::int(1), Value::str("b")]);
        let t2 = Value::Tuple(vec![Value::Float(1.0), Value::str("a"), Value::None]);
        assert_eq!(py_cmp(&t1, &t2), Some(Ordering::Greater));
        assert!(!is_hashable(&Value::Tuple(vec![Value::List(vec![])])));
        assert!(py_hash(&Value::List(vec![])).is_none());
    }
}
