//! Python's `%` string operator (`printf`-style formatting) over event
//! values, with the outcomes `format_message` distinguishes: text, a
//! `ValueError`/`TypeError` (rendered as "[formatting failed]"), or a
//! `KeyError` (which Python lets escape).

use crate::repr::{repr_string, str_string};
use crate::value::{Dict, Value};
use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};

/// The right-hand side of `fmt % args`.
#[derive(Clone, Copy, Debug)]
pub enum Args<'a> {
    /// A tuple: its items are the positional arguments.
    Tuple(&'a [Value]),
    /// Any other value: one positional argument. A dict (or a list, which
    /// Python also treats as a mapping here) also serves `%(key)s`.
    Single(&'a Value),
    /// A dict: `%(key)s` looks keys up; a positional conversion gets the
    /// whole dict (as `Single(Value::Dict)`, without copying it first).
    Mapping(&'a Dict),
}

#[derive(Clone, Copy)]
enum MapArg<'a> {
    Dict(&'a Dict),
    List,
}

/// Why `%` failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Python raises `ValueError` or `TypeError` (caught by the tools).
    ValueOrType(String),
    /// Python raises `KeyError` (not caught: the tools crash).
    Key(String),
}

fn ve<T>(msg: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError::ValueOrType(msg.into()))
}

/// `fmt % args`, as Python 3 computes it.
pub fn percent(fmt: &str, args: Args<'_>) -> Result<String, FormatError> {
    // the one positional argument of a mapping is the dict itself; it is
    // only materialised as a `Value` when a conversion asks for it
    let whole = std::cell::OnceCell::new();
    let (tuple, single, mapping): (Option<&[Value]>, Option<&Value>, Option<MapArg<'_>>) =
        match args {
            Args::Tuple(items) => (Some(items), None, None),
            Args::Single(v) => (
                None,
                Some(v),
                match v {
                    Value::Dict(d) => Some(MapArg::Dict(d)),
                    Value::List(_) => Some(MapArg::List),
                    _ => None,
                },
            ),
            Args::Mapping(d) => (None, None, Some(MapArg::Dict(d))),
        };
    let npositional = tuple.map_or(1, <[Value]>::len);
    let take = |next: &mut usize| -> Result<&Value, FormatError> {
        let v = match (tuple, single, args) {
            (Some(items), _, _) => items.get(*next),
            (None, Some(v), _) if *next == 0 => Some(v),
            (None, None, Args::Mapping(d)) if *next == 0 => {
                Some(whole.get_or_init(|| Value::Dict(d.clone())))
            }
            _ => None,
        };
        let v = v.ok_or_else(|| {
            FormatError::ValueOrType("not enough arguments for format string".into())
        })?;
        *next += 1;
        Ok(v)
    };
    let mut next = 0usize;
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut arg: Option<&Value> = None;
        if chars.get(i) == Some(&'(') {
            let Some(map) = mapping else {
                return ve("format requires a mapping");
            };
            let mut depth = 1;
            let start = i + 1;
            let mut j = start;
            while j < chars.len() {
                match chars[j] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j >= chars.len() {
                return ve("incomplete format key");
            }
            let key: String = chars[start..j].iter().collect();
            i = j + 1;
            match map {
                MapArg::Dict(d) => match d.get(&key) {
                    Some(v) => arg = Some(v),
                    None => {
                        let mut k = String::new();
                        crate::repr::str_repr(&key, &mut k);
                        return Err(FormatError::Key(k));
                    }
                },
                MapArg::List => return ve("list indices must be integers or slices, not str"),
            }
        }
        let mut left = false;
        let mut plus = false;
        let mut space = false;
        let mut alt = false;
        let mut zero = false;
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => left = true,
                '+' => plus = true,
                ' ' => space = true,
                '#' => alt = true,
                '0' => zero = true,
                _ => break,
            }
            i += 1;
        }
        let mut width: usize = 0;
        if chars.get(i) == Some(&'*') {
            i += 1;
            let w = take(&mut next)?;
            let Value::Int(w) = w else {
                return ve("* wants int");
            };
            let w = w
                .to_i64()
                .ok_or_else(|| FormatError::ValueOrType("width too big".into()))?;
            if w < 0 {
                left = true;
            }
            width = w.unsigned_abs() as usize;
        } else {
            while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                width = width.saturating_mul(10).saturating_add(d as usize);
                i += 1;
            }
        }
        let mut prec: Option<usize> = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            if chars.get(i) == Some(&'*') {
                i += 1;
                let p = take(&mut next)?;
                let Value::Int(p) = p else {
                    return ve("* wants int");
                };
                prec = Some(p.to_i64().unwrap_or(0).max(0) as usize);
            } else {
                let mut p = 0usize;
                while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                    p = p.saturating_mul(10).saturating_add(d as usize);
                    i += 1;
                }
                prec = Some(p);
            }
        }
        // Python caps widths and precisions near INT_MAX; a huge one would
        // allocate without bound here, so refuse it as Python refuses an
        // impossible allocation (MemoryError is not caught either way).
        if width > MAX_WIDTH || prec.unwrap_or(0) > MAX_WIDTH {
            return ve("width or precision too big");
        }
        while matches!(chars.get(i), Some('h' | 'l' | 'L')) {
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            return ve("incomplete format");
        };
        i += 1;
        if conv == '%' {
            out.push('%');
            continue;
        }
        let v = match arg {
            Some(v) => v,
            None => take(&mut next)?,
        };
        let (sign_body, numeric): ((String, String), bool) = match conv {
            's' | 'r' | 'a' => {
                let mut s = if conv == 's' {
                    str_string(v)
                } else {
                    repr_string(v)
                };
                if let Some(p) = prec {
                    s = s.chars().take(p).collect();
                }
                ((String::new(), s), false)
            }
            'd' | 'i' | 'u' => (int_body(v, conv, 10, false, alt)?, true),
            'o' => (int_body(v, conv, 8, false, alt)?, true),
            'x' => (int_body(v, conv, 16, false, alt)?, true),
            'X' => (int_body(v, conv, 16, true, alt)?, true),
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
                let f = match v {
                    Value::Float(f) => *f,
                    Value::Int(_) | Value::Bool(_) => v.as_f64().unwrap_or(f64::INFINITY),
                    _ => return ve(format!("must be real number, not {}", v.type_name())),
                };
                (float_body(f, conv, prec.unwrap_or(6), alt), true)
            }
            'c' => {
                let ch = match v {
                    Value::Int(n) => n
                        .to_u32()
                        .and_then(char::from_u32)
                        .ok_or_else(|| FormatError::ValueOrType("%c arg not in range".into()))?,
                    Value::Str(s) if s.chars().count() == 1 => s.chars().next().unwrap_or(' '),
                    _ => return ve("%c requires int or char"),
                };
                ((String::new(), ch.to_string()), false)
            }
            other => {
                return ve(format!(
                    "unsupported format character '{}' (0x{:x}) at index {}",
                    other,
                    other as u32,
                    i - 1
                ))
            }
        };
        let (mut sign, body) = sign_body;
        if numeric && sign.is_empty() {
            if plus {
                sign.push('+');
            } else if space {
                sign.push(' ');
            }
        }
        let len = sign.chars().count() + body.chars().count();
        let pad = width.saturating_sub(len);
        if left {
            out.push_str(&sign);
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && numeric {
            // zeros go after the sign and any 0x/0o prefix
            let (prefix, digits) =
                if alt && body.len() > 2 && matches!(&body[..2], "0x" | "0X" | "0o") {
                    body.split_at(2)
                } else {
                    ("", body.as_str())
                };
            out.push_str(&sign);
            out.push_str(prefix);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&sign);
            out.push_str(&body);
        }
    }
    if next < npositional && mapping.is_none() {
        return ve("not all arguments converted during string formatting");
    }
    Ok(out)
}

/// Largest width or precision honoured in a `%` conversion.
pub const MAX_WIDTH: usize = 1 << 20;

fn int_body(
    v: &Value,
    conv: char,
    radix: u32,
    upper: bool,
    alt: bool,
) -> Result<(String, String), FormatError> {
    let n: BigInt = match v {
        Value::Int(n) => n.clone(),
        Value::Bool(b) => BigInt::from(*b as i64),
        Value::Float(f) if radix == 10 => {
            if !f.is_finite() {
                return ve("cannot convert float to integer");
            }
            num_bigint::BigInt::from(f.trunc() as i128)
        }
        _ if radix == 10 => {
            return ve(format!(
                "%{} format: a real number is required, not {}",
                conv,
                v.type_name()
            ))
        }
        _ => {
            return ve(format!(
                "%{} format: an integer is required, not {}",
                conv,
                v.type_name()
            ))
        }
    };
    let sign = if n.is_negative() { "-" } else { "" }.to_owned();
    let mut digits = n.abs().to_str_radix(radix);
    if upper {
        digits = digits.to_uppercase();
    }
    if alt && radix != 10 {
        let p = match (radix, upper) {
            (8, _) => "0o",
            (16, false) => "0x",
            _ => "0X",
        };
        digits = format!("{}{}", p, digits);
    }
    let _ = n.is_zero();
    Ok((sign, digits))
}

fn exp_form(f: f64, prec: usize, upper: bool) -> String {
    let s = format!("{:.*e}", prec, f);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!(
        "{}{}{}{:02}",
        m,
        if upper { 'E' } else { 'e' },
        if e < 0 { '-' } else { '+' },
        e.abs()
    )
}

fn float_body(f: f64, conv: char, prec: usize, alt: bool) -> (String, String) {
    let upper = conv.is_ascii_uppercase();
    let sign = if f.is_sign_negative() && !f.is_nan() {
        "-"
    } else {
        ""
    }
    .to_owned();
    let a = f.abs();
    if !a.is_finite() {
        let t = if a.is_nan() { "nan" } else { "inf" };
        return (sign, if upper { t.to_uppercase() } else { t.into() });
    }
    let body = match conv {
        'f' | 'F' => {
            let mut s = format!("{:.*}", prec, a);
            if alt && prec == 0 {
                s.push('.');
            }
            s
        }
        'e' | 'E' => exp_form(a, prec, upper),
        _ => {
            let p = prec.max(1);
            let probe = format!("{:.*e}", p - 1, a);
            let x: i64 = probe
                .split_once('e')
                .and_then(|(_, e)| e.parse().ok())
                .unwrap_or(0);
            let mut s = if x >= -4 && x < p as i64 {
                format!("{:.*}", (p as i64 - 1 - x).max(0) as usize, a)
            } else {
                exp_form(a, p - 1, upper)
            };
            if !alt {
                let (m, e) = match s.find(['e', 'E']) {
                    Some(k) => (s[..k].to_owned(), s[k..].to_owned()),
                    None => (s.clone(), String::new()),
                };
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.').to_owned()
                } else {
                    m
                };
                s = m + &e;
            }
            s
        }
    };
    (sign, body)
}
