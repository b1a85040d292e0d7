use std::fmt;

use thiserror::Error;

/// A Python `decimal.Decimal`, held as the canonical text Python's `str()`
/// gives it (`1.25`, `-0`, `1E+3`, `NaN`, `-Infinity`, ...), which is also
/// what travels on the wire.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    text: Box<str>,
}

/// Text that Python's `Decimal()` constructor would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid Decimal literal {text:?}")]
pub struct DecimalError {
    /// The refused text (at most 64 characters of it).
    pub text: String,
}

/// The parts of a parsed decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecimalParts<'a> {
    /// `coefficient * 10**exponent`; `digits` has no leading zeros except a
    /// lone `0`.
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
        payload: &'a str,
    },
}

impl Decimal {
    /// Parses text the way Python's `Decimal(str)` does (surrounding
    /// whitespace, `_` between digits, `inf`/`nan` in any case) and keeps
    /// its canonical form.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let parts = parse_parts(text).ok_or_else(|| DecimalError {
            text: text.chars().take(64).collect(),
        })?;
        Ok(Decimal {
            text: canonical(&parts).into_boxed_str(),
        })
    }

    /// The canonical text (Python's `str(d)`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn parts(&self) -> DecimalParts<'_> {
        parse_parts(&self.text).expect("canonical decimal text parses")
    }

    /// Whether this is a NaN (quiet or signaling).
    pub fn is_nan(&self) -> bool {
        matches!(self.parts(), DecimalParts::NaN { .. })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal('{}')", self.text)
    }
}

/// Strips `_` that stand between two digits; `None` if any other `_`.
fn strip_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok = i > 0
                && b[i - 1].is_ascii_digit()
                && b.get(i + 1).is_some_and(|n| n.is_ascii_digit());
            if !ok {
                return None;
            }
        } else {
            out.push(c as char);
        }
    }
    Some(out)
}

fn parse_parts(text: &str) -> Option<DecimalParts<'_>> {
    let s = text.trim();
    if !s.is_ascii() || s.is_empty() {
        return None;
    }
    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(DecimalParts::Infinity { negative });
    }
    for (prefix, signaling) in [("snan", true), ("nan", false)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            if !rest.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let payload = &body[prefix.len()..];
            let payload = payload.trim_start_matches('0');
            return Some(DecimalParts::NaN {
                negative,
                signaling,
                payload,
            });
        }
    }
    let body = strip_underscores(body)?;
    let (mantissa, exp_text) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (&body[..], None),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|c| c.is_ascii_digit())
        || !frac_part.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut exponent: i64 = match exp_text {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            e.parse().ok()?
        }
    };
    exponent = exponent.checked_sub(frac_part.len() as i64)?;
    let all = format!("{int_part}{frac_part}");
    let trimmed = all.trim_start_matches('0');
    let digits = if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    };
    Some(DecimalParts::Finite {
        negative,
        digits,
        exponent,
    })
}

/// Python's `Decimal.__str__` (the to-scientific-string conversion).
fn canonical(parts: &DecimalParts<'_>) -> String {
    let sign = |neg: bool| if neg { "-" } else { "" };
    match parts {
        DecimalParts::Infinity { negative } => format!("{}Infinity", sign(*negative)),
        DecimalParts::NaN {
            negative,
            signaling,
            payload,
        } => format!(
            "{}{}{}",
            sign(*negative),
            if *signaling { "sNaN" } else { "NaN" },
            payload
        ),
        DecimalParts::Finite {
            negative,
            digits,
            exponent,
        } => {
            let n = digits.len() as i64;
            let adjusted = exponent + n - 1;
            let mut out = String::from(sign(*negative));
            if *exponent <= 0 && adjusted >= -6 {
                let frac = (-exponent) as usize;
                if frac == 0 {
                    out.push_str(digits);
                } else if digits.len() > frac {
                    let (a, b) = digits.split_at(digits.len() - frac);
                    out.push_str(a);
                    out.push('.');
                    out.push_str(b);
                } else {
                    out.push_str("0.");
                    out.extend(std::iter::repeat_n('0', frac - digits.len()));
                    out.push_str(digits);
                }
            } else {
                out.push_str(&digits[..1]);
                if digits.len() > 1 {
                    out.push('.');
                    out.push_str(&digits[1..]);
                }
                out.push('E');
                out.push(if adjusted >= 0 { '+' } else { '-' });
                out.push_str(&adjusted.unsigned_abs().to_string());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        Decimal::parse(s).unwrap().to_string()
    }

    #[test]
    fn canonical_forms_match_python() {
        for (input, expect) in [
            ("1.25", "1.25"),
            ("-0", "-0"),
            ("1e3", "1E+3"),
            ("1E+3", "1E+3"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1E-7"),
            ("0E+3", "0E+3"),
            ("0.00", "0.00"),
            ("  12.50  ", "12.50"),
            ("1_000", "1000"),
            ("inf", "Infinity"),
            ("-INFINITY", "-Infinity"),
            ("nan", "NaN"),
            ("-nan", "-NaN"),
            ("sNaN", "sNaN"),
            ("NaN0123", "NaN123"),
            ("NaN0", "NaN"),
            (".5", "0.5"),
            ("5.", "5"),
            ("123.456e-10", "1.23456E-8"),
            ("-00012", "-12"),
            ("1.23E+5", "1.23E+5"),
            (
                "123456789012345678901234567890.123456789",
                "123456789012345678901234567890.123456789",
            ),
        ] {
            assert_eq!(c(input), expect, "{input}");
        }
    }

    #[test]
    fn refuses_what_python_refuses() {
        for bad in [
            "", " ", ".", "e5", "1e", "1_", "_1", "1__0", "1.2.3", "abc", "infinit", "nan1x",
            "1e+", "١",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?}");
        }
    }
}
