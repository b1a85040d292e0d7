//! Foolscap's severity levels: plain integers with names.

/// `NOISY` (10).
pub const NOISY: i64 = 10;
/// `OPERATIONAL` (20), the default level.
pub const OPERATIONAL: i64 = 20;
/// `UNUSUAL` (23).
pub const UNUSUAL: i64 = 23;
/// `INFREQUENT` (25).
pub const INFREQUENT: i64 = 25;
/// `CURIOUS` (28).
pub const CURIOUS: i64 = 28;
/// `WEIRD` (30): the default incident trigger.
pub const WEIRD: i64 = 30;
/// `SCARY` (35).
pub const SCARY: i64 = 35;
/// `BAD` (40).
pub const BAD: i64 = 40;

/// Every named level, lowest first.
pub const LEVELS: [(&str, i64); 8] = [
    ("NOISY", NOISY),
    ("OPERATIONAL", OPERATIONAL),
    ("UNUSUAL", UNUSUAL),
    ("INFREQUENT", INFREQUENT),
    ("CURIOUS", CURIOUS),
    ("WEIRD", WEIRD),
    ("SCARY", SCARY),
    ("BAD", BAD),
];

/// The name of a level that has one.
pub fn name(level: i64) -> Option<&'static str> {
    LEVELS.iter().find(|(_, v)| *v == level).map(|(n, _)| *n)
}

/// A level given as a number or a name (as `flogtool filter --above` takes it).
pub fn parse(text: &str) -> Option<i64> {
    text.trim()
        .parse()
        .ok()
        .or_else(|| LEVELS.iter().find(|(n, _)| *n == text).map(|(_, v)| *v))
}
