use std::fmt;

use num_bigint::{BigInt, Sign};
use num_traits::ToPrimitive;

/// A Python `int` of any size: `i64` when it fits, a boxed [`BigInt`]
/// otherwise (the representation is canonical, so `==` is value equality).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Int {
    /// Fits in `i64`.
    Small(i64),
    /// Outside the `i64` range (never holds a value that fits).
    Big(Box<BigInt>),
}

impl Int {
    /// The value as `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Int::Small(i) => Some(*i),
            Int::Big(_) => None,
        }
    }

    /// The value as a [`BigInt`].
    pub fn to_bigint(&self) -> BigInt {
        match self {
            Int::Small(i) => BigInt::from(*i),
            Int::Big(b) => (**b).clone(),
        }
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        match self {
            Int::Small(i) => *i < 0,
            Int::Big(b) => b.sign() == Sign::Minus,
        }
    }

    /// Builds an `Int` from a sign and a big-endian magnitude.
    pub fn from_be_magnitude(negative: bool, magnitude: &[u8]) -> Int {
        let skip = magnitude.iter().take_while(|b| **b == 0).count();
        let mag = &magnitude[skip..];
        if mag.len() <= 8 {
            let mut b = [0u8; 8];
            b[8 - mag.len()..].copy_from_slice(mag);
            let m = u64::from_be_bytes(b);
            if negative {
                if m <= i64::MAX as u64 + 1 {
                    return Int::Small((m as i64).wrapping_neg());
                }
            } else if m <= i64::MAX as u64 {
                return Int::Small(m as i64);
            }
        }
        let sign = if negative { Sign::Minus } else { Sign::Plus };
        Int::Big(Box::new(BigInt::from_bytes_be(sign, mag)))
    }
}

impl From<i64> for Int {
    fn from(i: i64) -> Int {
        Int::Small(i)
    }
}

impl From<u64> for Int {
    fn from(u: u64) -> Int {
        match i64::try_from(u) {
            Ok(i) => Int::Small(i),
            Err(_) => Int::Big(Box::new(BigInt::from(u))),
        }
    }
}

impl From<BigInt> for Int {
    fn from(b: BigInt) -> Int {
        match b.to_i64() {
            Some(i) => Int::Small(i),
            None => Int::Big(Box::new(b)),
        }
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Int::Small(i) => fmt::Display::fmt(i, f),
            Int::Big(b) => fmt::Display::fmt(b, f),
        }
    }
}

impl fmt::Debug for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes() {
        assert_eq!(
            Int::from_be_magnitude(false, &[0x80, 0, 0, 0]),
            Int::Small(1 << 31)
        );
        assert_eq!(
            Int::from_be_magnitude(true, &[0x80, 0, 0, 0, 0, 0, 0, 0]),
            Int::Small(i64::MIN)
        );
        assert!(matches!(
            Int::from_be_magnitude(false, &[0x80, 0, 0, 0, 0, 0, 0, 0]),
            Int::Big(_)
        ));
        assert_eq!(Int::from_be_magnitude(true, &[]), Int::Small(0));
        assert_eq!(Int::from(BigInt::from(5)), Int::Small(5));
    }
}
