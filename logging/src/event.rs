//! A log event as Python stores it (a flat dict with text keys) and its
//! rendering to text (`format_message`).

use crate::pyformat::{percent, Args, FormatError};
use crate::repr::str_string;
use crate::value::{Dict, Value};

/// An event: the dict of fields (`num`, `time`, `level`, `incarnation`,
/// `message` or `format`, `args`, `facility`, `parent`, `failure`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event(pub Dict);

/// `format_message` could not produce text because the format names a key
/// the event does not have (Python's tools crash with `KeyError` here).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("KeyError: {0}")]
pub struct MissingKey(pub String);

impl Event {
    /// An event with the fields every reader needs: `num`, `time`, `level`,
    /// `incarnation` (`[hex16, None]`) and `message`.
    pub fn new(num: u64, time: f64, level: i64, incarnation: &str, message: &str) -> Event {
        let mut d = Dict::new();
        d.insert("num", num);
        d.insert("time", time);
        d.insert("level", level);
        d.insert(
            "incarnation",
            Value::Tuple(vec![Value::Str(incarnation.into()), Value::None]),
        );
        d.insert("message", message);
        Event(d)
    }
    /// The field `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
    /// The event number.
    pub fn num(&self) -> Option<i64> {
        self.get("num").and_then(Value::as_i64)
    }
    /// The level (OPERATIONAL when absent).
    pub fn level(&self) -> i64 {
        self.get("level")
            .and_then(Value::as_i64)
            .unwrap_or(crate::level::OPERATIONAL)
    }
    /// The facility (`""` when absent).
    pub fn facility(&self) -> &str {
        self.get("facility").and_then(Value::as_str).unwrap_or("")
    }
    /// The text of the event, as Python's `format_message` gives it.
    pub fn format_message(&self) -> Result<String, MissingKey> {
        format_message(&self.0)
    }
}

/// Python's `format_message(event)`: `format % event`, else `message %
/// args`, else `message`, else `""`; a `ValueError`/`TypeError` gives
/// `<message or "[no message]"> [formatting failed]`.
pub fn format_message(d: &Dict) -> Result<String, MissingKey> {
    let r = if let Some(f) = d.get("format") {
        match f {
            Value::Str(f) => percent(f, Args::Mapping(d)),
            _ => Err(FormatError::ValueOrType("format is not text".into())),
        }
    } else if let Some(args) = d.get("args") {
        match d.get("message") {
            Some(Value::Str(m)) => match args {
                Value::Tuple(items) => percent(m, Args::Tuple(items)),
                other => percent(m, Args::Single(other)),
            },
            // Python asserts here; the AssertionError escapes like KeyError
            _ => return Err(MissingKey("'message'".into())),
        }
    } else if let Some(m) = d.get("message") {
        match m {
            Value::Str(m) => Ok(m.clone()),
            _ => return Err(MissingKey("'message' is not text".into())),
        }
    } else {
        Ok(String::new())
    };
    match r {
        Ok(s) => Ok(s),
        Err(FormatError::Key(k)) => Err(MissingKey(k)),
        Err(FormatError::ValueOrType(_)) => {
            let m = match d.get("message") {
                Some(m) => str_string(m),
                None => "[no message]".into(),
            };
            Ok(format!("{} [formatting failed]", m))
        }
    }
}
