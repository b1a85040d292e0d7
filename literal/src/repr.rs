//! [`Value`] → Python literal syntax (see [`to_python`]), the inverse of
//! [`crate::parse`].
//!
//! The output is what Python's `repr()` prints for the same value, so that
//! `eval()` (with `from decimal import Decimal` in scope) gives an equal
//! value back, with these exceptions:
//!
//! * Shared sub-values ([`Value::Anchor`]/[`Value::Alias`]) print in full at
//!   each occurrence, like `repr`; a reference back to a container still
//!   being printed (a cycle) prints Python's recursion marker (`[...]`,
//!   `{...}`, `(...)`, `set(...)`, `frozenset(...)`, `<...>` for a
//!   copyable), which `eval` cannot turn back into the cycle.
//! * A NaN with the sign bit set prints as `-float('nan')` (Python prints
//!   `nan` for every NaN), so that the sign survives a round trip; other
//!   NaN payloads cannot be spelled and print as the plain NaN.
//! * Live references and copyables print in a readable form that is not
//!   Python syntax: `<my-reference clid=3 interface='' furl=None>`,
//!   `<copyable 'kitchen-sink.Point' {'x': 1, 'y': 2}>`.
//! * Ints above 2**14000 in magnitude print in hex (`0x...`): Python
//!   refuses to `eval` decimal literals of more than 4300 digits, and hex
//!   conversion stays linear in the size.
//! * Which characters count as printable follows Python's rules for the
//!   control, format, separator and private-use characters and the
//!   noncharacters; other unassigned code points print as themselves
//!   (str and bytes quote through [`foolscap_core::value::pyrepr`], as the
//!   core's wire texts do).
//!
//! The printer keeps an explicit stack, so deep values never threaten the
//! thread's stack, and [`write_python`] bounds the output: shared values
//! are expanded at each use, so a small hostile value can stand for an
//! exponentially large text.

use foolscap_core::value::{pyrepr, AnchorId, Int, Text, Value, WireRef, WireRefs};
use thiserror::Error;

/// Why [`write_python`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReprError {
    /// The text would be longer than the caller's bound.
    #[error("printed value would exceed {limit} bytes")]
    TooLong {
        /// The bound, in bytes.
        limit: usize,
    },
}

/// Prints `v` as Python would `repr()` it (see the module notes).
///
/// Unbounded: for values from untrusted input prefer [`write_python`].
pub fn to_python(v: &Value) -> String {
    let mut s = String::new();
    // With no bound there is nothing that can fail.
    let _ = write_python(v, &mut s, usize::MAX);
    s
}

/// Appends the Python text of `v` to `out`, failing once more than
/// `max_len` bytes would be appended. On failure `out` is left as it was.
pub fn write_python(v: &Value, out: &mut String, max_len: usize) -> Result<(), ReprError> {
    write_python_with(v, out, max_len, None)
}

/// [`write_python`] for a value decoded with `refs` (a printer of
/// captured streams): the stand-ins of reference sequences print as
/// `<my-reference clid=3 interface='' furl=None>`,
/// `<your-reference clid=5>` or `<their-reference gift_id=1 furl='...'>`.
pub fn write_python_with(
    v: &Value,
    out: &mut String,
    max_len: usize,
    refs: Option<&WireRefs>,
) -> Result<(), ReprError> {
    let start = out.len();
    let mut p = Printer {
        out: Out {
            limit: start.saturating_add(max_len),
            max_len,
            buf: out,
        },
        root: v,
        anchors: None,
        active: hashbrown::HashMap::new(),
        refs,
    };
    let r = p.run(v);
    if r.is_err() {
        p.out.buf.truncate(start);
    }
    r
}

// ---------------------------------------------------------------- output

/// The output string with its length bound.
struct Out<'o> {
    buf: &'o mut String,
    /// Largest allowed `buf.len()`.
    limit: usize,
    max_len: usize,
}

impl Out<'_> {
    fn too_long(&self) -> ReprError {
        ReprError::TooLong {
            limit: self.max_len,
        }
    }

    /// Fails unless `n` more bytes fit.
    fn reserve(&self, n: usize) -> Result<(), ReprError> {
        if self.buf.len().saturating_add(n) > self.limit {
            return Err(self.too_long());
        }
        Ok(())
    }

    fn push_str(&mut self, s: &str) -> Result<(), ReprError> {
        self.reserve(s.len())?;
        self.buf.push_str(s);
        Ok(())
    }

    fn push_fmt(&mut self, args: std::fmt::Arguments<'_>) -> Result<(), ReprError> {
        match args.as_str() {
            Some(s) => self.push_str(s),
            None => self.push_str(&args.to_string()),
        }
    }

    /// A str literal with Python's quote choice and escapes.
    fn str_repr(&mut self, s: &str) -> Result<(), ReprError> {
        // `Out` fails as a writer only when the bound is reached.
        pyrepr::write_str_repr(self, s).map_err(|_| self.too_long())
    }

    /// A bytes literal with Python's quote choice and escapes.
    fn bytes_repr(&mut self, b: &[u8]) -> Result<(), ReprError> {
        pyrepr::write_bytes_repr(self, b).map_err(|_| self.too_long())
    }

    /// Optional bytes that are usually text (an interface name, a FURL).
    fn opt_text(&mut self, b: Option<&[u8]>) -> Result<(), ReprError> {
        match b {
            None => self.push_str("None"),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => self.str_repr(s),
                Err(_) => self.bytes_repr(b),
            },
        }
    }

    fn int_repr(&mut self, i: &Int) -> Result<(), ReprError> {
        match i {
            Int::Small(v) => self.push_fmt(format_args!("{v}")),
            Int::Big(b) => {
                let bits = b.bits();
                if bits > HEX_ABOVE_BITS {
                    // Check the size before the (linear) conversion.
                    self.reserve((bits / 4 + 3) as usize)?;
                    let sign = if b.sign() == num_bigint::Sign::Minus {
                        "-"
                    } else {
                        ""
                    };
                    self.push_fmt(format_args!("{sign}0x{:x}", b.magnitude()))
                } else {
                    // Lower bound on the digits: fail before converting.
                    self.reserve((bits as f64 * std::f64::consts::LOG10_2) as usize)?;
                    self.push_fmt(format_args!("{b}"))
                }
            }
        }
    }

    fn float_repr(&mut self, f: f64) -> Result<(), ReprError> {
        let mut s = String::new();
        float_repr_into(f, &mut s);
        self.push_str(&s)
    }
}

/// Lets the core's quoting functions write straight into the bounded
/// output: a piece that does not fit fails with `fmt::Error`, which the
/// callers turn back into [`ReprError::TooLong`].
impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s).map_err(|_| std::fmt::Error)
    }
}

/// Ints with more bits print in hex (every int up to this size has fewer
/// than Python's 4300-digit `eval` limit).
const HEX_ABOVE_BITS: u64 = 14_000;

/// Python's `repr(float)`: the shortest digits that round-trip, in
/// scientific notation when the decimal exponent is below -4 or above 16.
fn float_repr_into(f: f64, out: &mut String) {
    if f.is_nan() {
        // Python prints every NaN as `nan`; keeping the sign bit costs
        // nothing and lets a negative NaN survive the round trip.
        out.push_str(if f.is_sign_negative() {
            "-float('nan')"
        } else {
            "float('nan')"
        });
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 {
            "float('inf')"
        } else {
            "-float('inf')"
        });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    if let Some(even) = tie_to_even(f.abs(), &digits, exp) {
        digits = even;
    }
    let n = digits.len() as i32;
    // value = 0.DIGITS * 10**decpt
    let decpt = exp + 1;
    if neg {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", e.unsigned_abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-decpt) as usize));
        out.push_str(&digits);
    } else if decpt < n {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else {
        out.push_str(&digits);
        out.push_str(&"0".repeat((decpt - n) as usize));
        out.push_str(".0");
    }
}

/// Where two shortest digit strings are equally near `f` (its exact value
/// ends in a 5 just past them), Python picks the one with an even last
/// digit and Rust the one above. Returns Python's choice when it differs
/// from `digits` (the value being `d.ddd * 10**exp`).
fn tie_to_even(f: f64, digits: &str, exp: i32) -> Option<String> {
    let last = *digits.as_bytes().last()?;
    if last % 2 == 0 {
        return None;
    }
    // f = m * 2**e exactly, with m odd.
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let mut m = bits & ((1 << 52) - 1);
    let mut e = if biased == 0 {
        -1074
    } else {
        m |= 1 << 52;
        biased - 1075
    };
    if m == 0 {
        return None;
    }
    let tz = m.trailing_zeros();
    m >>= tz;
    e += tz as i32;
    // With more than 26 fractional bits the exact decimal expansion has
    // more than 18 significant digits: no tie at 17 digits or fewer.
    if e < -26 {
        return None;
    }
    let (exact, mut e10) = if e >= 0 {
        ((num_bigint::BigUint::from(m) << e as usize).to_string(), 0)
    } else {
        ((m as u128 * 5u128.pow(e.unsigned_abs())).to_string(), e)
    };
    let sig = exact.trim_end_matches('0');
    e10 += (exact.len() - sig.len()) as i32;
    if sig.len() != digits.len() + 1 || !sig.ends_with('5') || e10 + sig.len() as i32 - 1 != exp {
        return None;
    }
    // The two candidates are sig[..n] and sig[..n] + 1; keep the even one.
    let mut even = sig.as_bytes()[..digits.len()].to_vec();
    if even.last()? % 2 == 1 {
        let l = even.last_mut()?;
        if *l == b'9' {
            return None;
        }
        *l += 1;
    }
    let even = String::from_utf8(even).ok()?;
    if even == digits {
        return None;
    }
    let text = format!("{}.{}e{exp}", &even[..1], &even[1..]);
    (text.parse::<f64>() == Ok(f)).then_some(even)
}

// ---------------------------------------------------------------- printer

/// Work left in a container being printed.
enum Frame<'a> {
    Items {
        iter: std::slice::Iter<'a, Value>,
        first: bool,
        close: &'static str,
    },
    Pairs {
        iter: std::slice::Iter<'a, (Value, Value)>,
        first: bool,
        value: Option<&'a Value>,
    },
    Attrs {
        iter: std::slice::Iter<'a, (Text, Value)>,
        first: bool,
        value: Option<&'a Value>,
    },
    /// The anchored value with this id is done.
    Leave(AnchorId),
}

struct Printer<'a, 'o> {
    out: Out<'o>,
    root: &'a Value,
    /// Anchor id → anchored value, built when the first alias shows up.
    anchors: Option<hashbrown::HashMap<AnchorId, &'a Value>>,
    /// Anchors being printed (ancestors of the current position), with
    /// their nesting count and recursion marker.
    active: hashbrown::HashMap<AnchorId, (u32, &'static str)>,
    /// The reference sequences behind stand-in values, if printing a
    /// captured stream.
    refs: Option<&'a WireRefs>,
}

/// Python's recursion marker for a value of this type.
fn marker(v: &Value) -> &'static str {
    match v.unanchored() {
        Value::List(_) => "[...]",
        Value::Dict(_) => "{...}",
        Value::Tuple(_) => "(...)",
        Value::Set(_) => "set(...)",
        Value::FrozenSet(_) => "frozenset(...)",
        Value::Copyable(_) => "<...>",
        _ => "...",
    }
}

/// Maps every anchor id in `root` to its value (the first one, if an id is
/// repeated).
fn collect_anchors(root: &Value) -> hashbrown::HashMap<AnchorId, &Value> {
    let mut map = hashbrown::HashMap::new();
    let mut todo = vec![root];
    while let Some(v) = todo.pop() {
        match v {
            Value::Anchor(id, inner) => {
                map.entry(*id).or_insert(&**inner);
                todo.push(inner);
            }
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => {
                todo.extend(items.iter().rev());
            }
            Value::Dict(pairs) => {
                for (k, v) in pairs.iter().rev() {
                    todo.push(v);
                    todo.push(k);
                }
            }
            Value::Copyable(c) => todo.extend(c.state.iter().rev().map(|(_, v)| v)),
            _ => {}
        }
    }
    map
}

impl<'a> Printer<'a, '_> {
    fn run(&mut self, v: &'a Value) -> Result<(), ReprError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        self.emit(v, &mut stack)?;
        while let Some(top) = stack.last_mut() {
            let next = match top {
                Frame::Items { iter, first, close } => match iter.next() {
                    Some(item) => {
                        if !std::mem::replace(first, false) {
                            self.out.push_str(", ")?;
                        }
                        item
                    }
                    None => {
                        let close = *close;
                        stack.pop();
                        self.out.push_str(close)?;
                        continue;
                    }
                },
                Frame::Pairs { iter, first, value } => {
                    if let Some(v) = value.take() {
                        self.out.push_str(": ")?;
                        v
                    } else if let Some((k, v)) = iter.next() {
                        if !std::mem::replace(first, false) {
                            self.out.push_str(", ")?;
                        }
                        *value = Some(v);
                        k
                    } else {
                        stack.pop();
                        self.out.push_str("}")?;
                        continue;
                    }
                }
                Frame::Attrs { iter, first, value } => {
                    if let Some(v) = value.take() {
                        v
                    } else if let Some((name, v)) = iter.next() {
                        if !std::mem::replace(first, false) {
                            self.out.push_str(", ")?;
                        }
                        *value = Some(v);
                        self.out.str_repr(name)?;
                        self.out.push_str(": ")?;
                        continue;
                    } else {
                        stack.pop();
                        self.out.push_str("}>")?;
                        continue;
                    }
                }
                Frame::Leave(id) => {
                    let id = *id;
                    stack.pop();
                    self.leave(id);
                    continue;
                }
            };
            self.emit(next, &mut stack)?;
        }
        Ok(())
    }

    fn enter(&mut self, id: AnchorId, inner: &Value, stack: &mut Vec<Frame<'a>>) {
        self.active.entry(id).or_insert((0, marker(inner))).0 += 1;
        stack.push(Frame::Leave(id));
    }

    fn leave(&mut self, id: AnchorId) {
        if let Some(e) = self.active.get_mut(&id) {
            e.0 -= 1;
            if e.0 == 0 {
                self.active.remove(&id);
            }
        }
    }

    /// Prints a leaf completely, or opens a container and pushes the frame
    /// that prints the rest of it.
    fn emit(&mut self, mut v: &'a Value, stack: &mut Vec<Frame<'a>>) -> Result<(), ReprError> {
        loop {
            match v {
                Value::Anchor(id, inner) => {
                    self.enter(*id, inner, stack);
                    v = inner;
                    continue;
                }
                Value::Alias(id) => {
                    if let Some((_, m)) = self.active.get(id) {
                        return self.out.push_str(m);
                    }
                    let root = self.root;
                    let target = self
                        .anchors
                        .get_or_insert_with(|| collect_anchors(root))
                        .get(id)
                        .copied();
                    match target {
                        Some(inner) => {
                            self.enter(*id, inner, stack);
                            v = inner;
                            continue;
                        }
                        None => return self.out.push_fmt(format_args!("<alias {id}>")),
                    }
                }
                _ => {}
            }
            break;
        }
        let out = &mut self.out;
        match v {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => out.int_repr(i),
            Value::Float(f) => out.float_repr(*f),
            Value::Bytes(b) => out.bytes_repr(b),
            Value::Str(s) => out.str_repr(s),
            Value::Decimal(d) => {
                out.push_str("Decimal(")?;
                out.str_repr(d.as_str())?;
                out.push_str(")")
            }
            Value::List(items) => open_items(out, stack, items, "[", "]", "[]"),
            Value::Tuple(items) => {
                let close = if items.len() == 1 { ",)" } else { ")" };
                open_items(out, stack, items, "(", close, "()")
            }
            Value::Set(items) => open_items(out, stack, items, "{", "}", "set()"),
            Value::FrozenSet(items) => {
                open_items(out, stack, items, "frozenset({", "})", "frozenset()")
            }
            Value::Dict(pairs) => {
                out.push_str("{")?;
                stack.push(Frame::Pairs {
                    iter: pairs.iter(),
                    first: true,
                    value: None,
                });
                Ok(())
            }
            Value::Copyable(c) => {
                out.push_str("<copyable ")?;
                out.str_repr(&c.type_name)?;
                out.push_str(" {")?;
                stack.push(Frame::Attrs {
                    iter: c.state.iter(),
                    first: true,
                    value: None,
                });
                Ok(())
            }
            Value::Local(id) => match self.refs.and_then(|r| r.get(v)) {
                Some(WireRef::My(r)) => {
                    out.push_fmt(format_args!("<my-reference clid={} interface=", r.clid))?;
                    out.opt_text(r.interface.as_deref())?;
                    out.push_str(" furl=")?;
                    out.opt_text(r.furl.as_deref())?;
                    out.push_str(">")
                }
                Some(WireRef::Your(clid)) => {
                    out.push_fmt(format_args!("<your-reference clid={clid}>"))
                }
                Some(WireRef::Their(r)) => {
                    out.push_fmt(format_args!("<their-reference gift_id={} furl=", r.gift_id))?;
                    out.opt_text(Some(&r.furl))?;
                    out.push_str(">")
                }
                _ => out.push_fmt(format_args!("<local object {id}>")),
            },
            Value::Remote(r) => out.push_fmt(format_args!(
                "<RemoteReference connection={} clid={}>",
                r.connection(),
                r.clid()
            )),
            // Handled above.
            Value::Anchor(..) | Value::Alias(_) => Ok(()),
        }
    }
}

fn open_items<'a>(
    out: &mut Out<'_>,
    stack: &mut Vec<Frame<'a>>,
    items: &'a [Value],
    open: &'static str,
    close: &'static str,
    empty: &'static str,
) -> Result<(), ReprError> {
    if items.is_empty() {
        return out.push_str(empty);
    }
    out.push_str(open)?;
    stack.push(Frame::Items {
        iter: items.iter(),
        first: true,
        close,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use bytes::Bytes;
    use foolscap_core::value::{py_eq, Copyable, Decimal, MyReference, TheirReference};
    use num_bigint::BigInt;

    fn d(s: &str) -> Value {
        Value::Decimal(Decimal::parse(s).unwrap())
    }

    fn pow2(n: usize) -> BigInt {
        BigInt::from(1u8) << n
    }

    fn big(b: BigInt) -> Value {
        Value::Int(Int::from(b))
    }

    #[test]
    fn scalars() {
        let cases = [
            (Value::None, "None"),
            (Value::Bool(true), "True"),
            (Value::Bool(false), "False"),
            (Value::int(0), "0"),
            (Value::int(-42), "-42"),
            (Value::int(i64::MIN), "-9223372036854775808"),
            (big(pow2(70)), "1180591620717411303424"),
            (big(-pow2(70)), "-1180591620717411303424"),
            (d("1.25"), "Decimal('1.25')"),
            (d("-Infinity"), "Decimal('-Infinity')"),
            (d("1e3"), "Decimal('1E+3')"),
        ];
        for (v, s) in cases {
            assert_eq!(to_python(&v), s);
        }
        // Beyond Python's 4300-digit eval limit ints print in hex.
        let huge = pow2(20_000);
        let text = to_python(&big(-huge.clone()));
        assert!(text.starts_with("-0x1000"), "{}", &text[..10]);
        assert_eq!(text.len(), 3 + 20_000 / 4 + 1);
        assert_eq!(parse(&text).unwrap(), big(-huge));
        let edge: BigInt = pow2(14_000) - 1u8;
        let text = to_python(&big(edge.clone()));
        assert!(text.starts_with("26299"));
        assert_eq!(text.len(), 4215);
        assert!(to_python(&big(edge + 1)).starts_with("0x1"));
    }

    /// (bits, Python's repr), checked with CPython 3.11 (except for the
    /// sign of NaNs, see the module notes).
    const FLOATS: &[(u64, &str)] = &[
        (0x0000000000000000, "0.0"),
        (0x8000000000000000, "-0.0"),
        (0x3ff0000000000000, "1.0"),
        (0xbff0000000000000, "-1.0"),
        (0x3ff8000000000000, "1.5"),
        (0x3fb999999999999a, "0.1"),
        (0x3fd3333333333334, "0.30000000000000004"),
        (0x3fd5555555555555, "0.3333333333333333"),
        (0x3fe5555555555555, "0.6666666666666666"),
        (0x4341c37937e08000, "1e+16"),
        (0x430c6bf526340000, "1000000000000000.0"),
        (0x4341c37937e07fff, "9999999999999998.0"),
        (0x4376345785d8a000, "1e+17"),
        (0x437b69b4ba630f35, "1.2345678901234568e+17"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3ee4f8b588e368f1, "1e-05"),
        (0x3f202e4b6ce5dc68, "0.00012345"),
        (0x3eef75104d551d69, "1.5e-05"),
        (0x0000000000000001, "5e-324"),
        (0x0010000000000000, "2.2250738585072014e-308"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x4059000000000000, "100.0"),
        (0x40c81cd6c8b43958, "12345.678"),
        (0x3f1a36e2eb1c432c, "9.999999999999999e-05"),
        (0x400921fb54442d18, "3.141592653589793"),
        (0x4340000000000001, "9007199254740994.0"),
        (0xbdf12e0be826d695, "-2.5e-10"),
        (0x7e37e43c8800759c, "1e+300"),
        (0x0008d83aff3e96b1, "1.23e-308"),
        (0x4011666666666666, "4.35"),
        (0x3fd3333333333333, "0.3"),
        (0x3e7ad7f29abcaf48, "1e-07"),
        (0x43118b54f22aeb03, "1234567890123456.8"),
        // ties between two shortest candidates go to the even digit
        (0xc318ab069c92298d, "-1735861081508451.2"),
        (0x42d9636d03665f08, "111659285584252.12"),
        (0xc2d0542b3f3e8468, "-71814755449361.62"),
        (0x7ff0000000000000, "float('inf')"),
        (0xfff0000000000000, "-float('inf')"),
        (0x7ff8000000000000, "float('nan')"),
        (0xfff8000000000000, "-float('nan')"),
        // other NaN payloads cannot be spelled; the sign is kept
        (0x7ff0000000000001, "float('nan')"),
        (0xfff8000000000001, "-float('nan')"),
    ];

    #[test]
    fn floats_like_python() {
        for &(bits, s) in FLOATS {
            let f = f64::from_bits(bits);
            assert_eq!(to_python(&Value::Float(f)), s, "{bits:#x}");
            let back = parse(s).unwrap();
            if f.is_nan() {
                assert_eq!(back, Value::Float(f64::NAN.copysign(f)));
            } else {
                assert_eq!(back, Value::Float(f), "{s}");
            }
        }
    }

    #[test]
    fn str_escapes_like_python() {
        // Expected texts are CPython 3.11's repr().
        let cases = [
            ("", r"''"),
            ("abc", r"'abc'"),
            ("a'b", r#""a'b""#),
            ("a\"b", r#"'a"b'"#),
            ("a'\"b", r#"'a\'"b'"#),
            ("\\", r"'\\'"),
            ("\t\n\r\x00\x1f\x7f", r"'\t\n\r\x00\x1f\x7f'"),
            ("\u{80}\u{9f}\u{a0}\u{a1}\u{ad}\u{ff}", "'\\x80\\x9f\\xa0\u{a1}\\xad\u{ff}'"),
            ("é✓😀", "'é✓😀'"),
            (
                "\u{2028}\u{2029}\u{200b}\u{feff}\u{e000}\u{fdd0}\u{ffff}\u{1fffe}\u{e0001}\u{10ffff}\u{f0000}",
                r"'\u2028\u2029\u200b\ufeff\ue000\ufdd0\uffff\U0001fffe\U000e0001\U0010ffff\U000f0000'",
            ),
            ("\u{3000} x", r"'\u3000 x'"),
        ];
        for (s, r) in cases {
            assert_eq!(to_python(&Value::str(s)), r, "{s:?}");
            assert_eq!(parse(r).unwrap(), Value::str(s), "{r}");
        }
    }

    #[test]
    fn bytes_escapes_like_python() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "b''"),
            (b"abc", "b'abc'"),
            (b"a'b", r#"b"a'b""#),
            (b"a\"b", r#"b'a"b'"#),
            (b"a'\"b", r#"b'a\'"b'"#),
            (b"\\", r"b'\\'"),
            (
                b"\t\n\r\x00\x1f\x7f\x80\xff",
                r"b'\t\n\r\x00\x1f\x7f\x80\xff'",
            ),
            (b"~ ", "b'~ '"),
        ];
        for (b, r) in cases {
            assert_eq!(to_python(&Value::bytes(b)), r);
            assert_eq!(parse(r).unwrap(), Value::bytes(b), "{r}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(
            parse(&to_python(&Value::bytes(&all))).unwrap(),
            Value::bytes(&all)
        );
    }

    #[test]
    fn containers() {
        let i = Value::int;
        let cases = [
            (Value::List(vec![]), "[]"),
            (Value::List(vec![i(1), i(2)]), "[1, 2]"),
            (Value::Tuple(vec![]), "()"),
            (Value::Tuple(vec![i(1)]), "(1,)"),
            (Value::Tuple(vec![i(1), i(2)]), "(1, 2)"),
            (Value::Set(vec![]), "set()"),
            (Value::Set(vec![i(1), i(2)]), "{1, 2}"),
            (Value::FrozenSet(vec![]), "frozenset()"),
            (Value::FrozenSet(vec![i(1), i(2)]), "frozenset({1, 2})"),
            (Value::Dict(vec![]), "{}"),
            (
                Value::Dict(vec![
                    (Value::str("k"), Value::List(vec![])),
                    (i(2), Value::None),
                ]),
                "{'k': [], 2: None}",
            ),
            (
                Value::List(vec![
                    Value::Tuple(vec![Value::Tuple(vec![])]),
                    Value::Set(vec![Value::FrozenSet(vec![])]),
                ]),
                "[((),), {frozenset()}]",
            ),
        ];
        for (v, s) in cases {
            assert_eq!(to_python(&v), s);
            assert_eq!(parse(s).unwrap(), v, "{s}");
        }
    }

    #[test]
    fn references_and_copyables() {
        let mut refs = WireRefs::default();
        let printed = |refs: &WireRefs, v: &Value| {
            let mut s = String::new();
            write_python_with(v, &mut s, usize::MAX, Some(refs)).unwrap();
            s
        };
        let mine = refs.value(WireRef::My(MyReference {
            clid: 3,
            interface: Some(Bytes::new()),
            furl: None,
        }));
        assert_eq!(
            printed(&refs, &mine),
            "<my-reference clid=3 interface='' furl=None>"
        );
        let mine = refs.value(WireRef::My(MyReference {
            clid: -2,
            interface: Some(Bytes::from_static(b"RIFoo")),
            furl: Some(Bytes::from_static(b"pb://x@y/z\xff")),
        }));
        assert_eq!(
            printed(&refs, &mine),
            r"<my-reference clid=-2 interface='RIFoo' furl=b'pb://x@y/z\xff'>"
        );
        let mine = refs.value(WireRef::My(MyReference {
            clid: 1,
            interface: None,
            furl: None,
        }));
        assert_eq!(
            printed(&refs, &mine),
            "<my-reference clid=1 interface=None furl=None>"
        );
        let yours = refs.value(WireRef::Your(5));
        assert_eq!(printed(&refs, &yours), "<your-reference clid=5>");
        let theirs = refs.value(WireRef::Their(TheirReference {
            gift_id: 1,
            furl: Bytes::from_static(b"pb://t@h/s"),
        }));
        assert_eq!(
            printed(&refs, &theirs),
            "<their-reference gift_id=1 furl='pb://t@h/s'>"
        );
        // without the table a stand-in is what it is: a local object
        assert_eq!(to_python(&yours), "<local object 3>");
        let point = Value::Copyable(Box::new(Copyable {
            type_name: Text::from("kitchen-sink.Point"),
            state: vec![
                (Text::from("x"), Value::int(1)),
                (Text::from("y"), Value::int(2)),
            ],
        }));
        assert_eq!(
            to_python(&point),
            "<copyable 'kitchen-sink.Point' {'x': 1, 'y': 2}>"
        );
        let empty = Value::Copyable(Box::new(Copyable {
            type_name: Text::from("t"),
            state: vec![],
        }));
        assert_eq!(to_python(&empty), "<copyable 't' {}>");
    }

    #[test]
    fn cycles_print_markers() {
        let i = Value::int;
        let a = |id, v: Value| Value::Anchor(id, Box::new(v));
        let cases = [
            (a(0, Value::List(vec![i(1), Value::Alias(0)])), "[1, [...]]"),
            (
                a(0, Value::Dict(vec![(i(1), Value::Alias(0))])),
                "{1: {...}}",
            ),
            (
                a(0, Value::Tuple(vec![Value::List(vec![Value::Alias(0)])])),
                "([(...)],)",
            ),
            (
                a(0, Value::Set(vec![Value::Tuple(vec![Value::Alias(0)])])),
                "{(set(...),)}",
            ),
            (
                a(0, Value::FrozenSet(vec![Value::Alias(0)])),
                "frozenset({frozenset(...)})",
            ),
            (
                a(
                    0,
                    Value::Copyable(Box::new(Copyable {
                        type_name: Text::from("t.T"),
                        state: vec![(Text::from("me"), Value::Alias(0))],
                    })),
                ),
                "<copyable 't.T' {'me': <...>}>",
            ),
            // an inner cycle inside an outer one
            (
                a(
                    0,
                    Value::List(vec![a(
                        1,
                        Value::List(vec![Value::Alias(0), Value::Alias(1)]),
                    )]),
                ),
                "[[[...], [...]]]",
            ),
            (Value::Alias(7), "<alias 7>"),
            (Value::List(vec![Value::Alias(7), i(1)]), "[<alias 7>, 1]"),
        ];
        for (v, s) in cases {
            assert_eq!(to_python(&v), s);
        }
    }

    #[test]
    fn shared_values_print_in_full() {
        let i = Value::int;
        let a = |id, v: Value| Value::Anchor(id, Box::new(v));
        let shared = Value::List(vec![a(0, Value::List(vec![i(10), i(20)])), Value::Alias(0)]);
        assert_eq!(to_python(&shared), "[[10, 20], [10, 20]]");
        // an alias that expands to a value with its own cycle
        let v = Value::List(vec![
            a(3, Value::List(vec![i(1), Value::Alias(3)])),
            Value::Dict(vec![(Value::str("again"), Value::Alias(3))]),
        ]);
        assert_eq!(to_python(&v), "[[1, [...]], {'again': [1, [...]]}]");
        // an alias to a sibling's descendant
        let v = Value::Tuple(vec![
            Value::List(vec![a(5, Value::Tuple(vec![i(1)]))]),
            Value::Alias(5),
        ]);
        assert_eq!(to_python(&v), "([(1,)], (1,))");
        assert_eq!(
            parse("([(1,)], (1,))").unwrap(),
            Value::Tuple(vec![
                Value::List(vec![Value::Tuple(vec![i(1)])]),
                Value::Tuple(vec![i(1)])
            ])
        );
    }

    /// `[x, x]` where x is `[y, y]` ... 64 levels: 2**64 copies of `[]`.
    fn exponential_dag(levels: u32) -> Value {
        let mut v = Value::Anchor(0, Box::new(Value::List(vec![])));
        for id in 1..=levels {
            v = Value::Anchor(id, Box::new(Value::List(vec![v, Value::Alias(id - 1)])));
        }
        v
    }

    #[test]
    fn output_bound() {
        let v = Value::List(vec![Value::int(1)]);
        let mut s = String::from("prefix:");
        assert_eq!(write_python(&v, &mut s, 3), Ok(()));
        assert_eq!(s, "prefix:[1]");
        let mut s = String::from("prefix:");
        assert_eq!(
            write_python(&v, &mut s, 2),
            Err(ReprError::TooLong { limit: 2 })
        );
        assert_eq!(s, "prefix:");
        // small DAG, huge text: refused quickly
        let dag = exponential_dag(64);
        let small = to_python(&exponential_dag(3));
        assert_eq!(small, "[[[[], []], [[], []]], [[[], []], [[], []]]]");
        let t = std::time::Instant::now();
        let mut s = String::new();
        assert_eq!(
            write_python(&dag, &mut s, 1 << 20),
            Err(ReprError::TooLong { limit: 1 << 20 })
        );
        assert!(s.is_empty());
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        // long strings and big ints are refused without being printed whole
        let long = Value::Bytes(Bytes::from(vec![0u8; 1 << 20]));
        assert!(write_python(&long, &mut String::new(), 1000).is_err());
        let bigint = big(BigInt::from(7).pow(100_000));
        assert!(write_python(&bigint, &mut String::new(), 1000).is_err());
        assert!(write_python(&big(pow2(100_000)), &mut String::new(), 1000).is_err());
        assert!(write_python(&Value::Float(0.1), &mut String::new(), 2).is_err());
    }

    #[test]
    fn deep_values_on_a_small_stack() {
        let text = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let mut v = Value::int(0);
                for n in 0..1000u32 {
                    v = match n % 6 {
                        0 => Value::List(vec![v]),
                        1 => Value::Tuple(vec![v]),
                        2 => Value::Dict(vec![(Value::int(n as i64), v)]),
                        3 => Value::Anchor(n, Box::new(Value::List(vec![v, Value::Alias(n)]))),
                        4 => Value::Copyable(Box::new(Copyable {
                            type_name: Text::from("t"),
                            state: vec![(Text::from("a"), v)],
                        })),
                        _ => Value::FrozenSet(vec![v]),
                    };
                }
                let s = to_python(&v);
                // Take the value apart iteratively: Value's own drop recurses.
                let mut todo = vec![v];
                while let Some(v) = todo.pop() {
                    match v {
                        Value::List(items) | Value::Tuple(items) | Value::FrozenSet(items) => {
                            todo.extend(items)
                        }
                        Value::Dict(pairs) => {
                            todo.extend(pairs.into_iter().flat_map(|(k, v)| [k, v]))
                        }
                        Value::Anchor(_, inner) => todo.push(*inner),
                        Value::Copyable(c) => todo.extend(c.state.into_iter().map(|(_, v)| v)),
                        _ => {}
                    }
                }
                s
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(
            text.starts_with("[{998: ([frozenset({<copyable 't' {'a': [{992: (["),
            "{}",
            &text[..60]
        );
        assert!(text.contains("[...]"));
    }

    /// A small deterministic generator (xorshift) for the round-trip corpus.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn char(&mut self) -> char {
            let n = match self.below(6) {
                0 => self.below(0x80) as u32,
                1 => 0x80 + self.below(0x80) as u32,
                2 => [
                    b'\'' as u32,
                    b'"' as u32,
                    b'\\' as u32,
                    0x7f,
                    0x2028,
                    0xfeff,
                ][self.below(6) as usize],
                3 => self.below(0x10000) as u32,
                _ => self.below(0x110000) as u32,
            };
            char::from_u32(n).unwrap_or('\u{fffd}')
        }

        fn scalar(&mut self) -> Value {
            match self.below(10) {
                0 => Value::None,
                1 => Value::Bool(self.below(2) == 1),
                2 => Value::int((self.next() as i64) >> self.below(64)),
                3 => {
                    let bits = 60 + self.below(200);
                    let b = (BigInt::from(self.next()) << bits) + self.next();
                    big(if self.below(2) == 0 { -b } else { b })
                }
                4 => {
                    let f = match self.below(4) {
                        0 => [
                            0.0,
                            -0.0,
                            f64::INFINITY,
                            f64::NEG_INFINITY,
                            f64::NAN,
                            5e-324,
                            1e16,
                            1e-5,
                        ][self.below(8) as usize],
                        _ => f64::from_bits(self.next()),
                    };
                    Value::Float(if f.is_nan() { f64::NAN.copysign(f) } else { f })
                }
                5 => {
                    let n = self.below(12);
                    Value::Bytes(
                        (0..n)
                            .map(|_| self.next() as u8)
                            .collect::<Vec<u8>>()
                            .into(),
                    )
                }
                6 | 7 => {
                    let n = self.below(12);
                    Value::from((0..n).map(|_| self.char()).collect::<String>())
                }
                8 => {
                    let t = match self.below(5) {
                        0 => "NaN".to_owned(),
                        1 => "-Infinity".to_owned(),
                        2 => "-0".to_owned(),
                        _ => format!(
                            "{}E{}",
                            self.next() as i64 >> self.below(64),
                            self.below(100) as i64 - 50
                        ),
                    };
                    d(&t)
                }
                _ => Value::int(self.below(5) as i64),
            }
        }

        fn hashable(&mut self, depth: u32) -> Value {
            match self.below(8) {
                0 if depth < 3 => {
                    let n = self.below(4);
                    Value::Tuple((0..n).map(|_| self.hashable(depth + 1)).collect())
                }
                1 if depth < 3 => Value::FrozenSet(self.distinct(depth + 1)),
                _ => self.scalar(),
            }
        }

        fn distinct(&mut self, depth: u32) -> Vec<Value> {
            let n = self.below(5);
            let mut out: Vec<Value> = Vec::new();
            for _ in 0..n {
                let k = self.hashable(depth);
                if !out.iter().any(|o| py_eq(o, &k)) {
                    out.push(k);
                }
            }
            out
        }

        fn value(&mut self, depth: u32) -> Value {
            if depth >= 4 || self.below(3) == 0 {
                return self.hashable(depth);
            }
            let n = self.below(5);
            match self.below(5) {
                0 => Value::List((0..n).map(|_| self.value(depth + 1)).collect()),
                1 => Value::Tuple((0..n).map(|_| self.value(depth + 1)).collect()),
                2 => Value::Set(self.distinct(depth + 1)),
                3 => Value::FrozenSet(self.distinct(depth + 1)),
                _ => {
                    let keys = self.distinct(depth + 1);
                    Value::Dict(
                        keys.into_iter()
                            .map(|k| (k, self.value(depth + 1)))
                            .collect(),
                    )
                }
            }
        }
    }

    #[test]
    fn round_trip_corpus() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for n in 0..3000 {
            let v = g.value(0);
            let text = to_python(&v);
            match parse(&text) {
                Ok(back) => assert_eq!(back, v, "#{n}: {text}"),
                Err(e) => panic!("#{n}: {text}: {e}"),
            }
        }
    }
}
