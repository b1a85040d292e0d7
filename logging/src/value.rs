//! The values an event holds, as Python holds them after `json.loads` (or
//! after receiving them over the wire): ordered dicts, big integers, floats
//! with `NaN`/`Infinity`, tuples distinct from lists.

use num_bigint::BigInt;

/// One value of an event field (a Python object, restricted to what the
/// flogfile JSON and the wire carry).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Python `None` (JSON `null`).
    None,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` of any size.
    Int(BigInt),
    /// Python `float` (including NaN and the infinities).
    Float(f64),
    /// Python `str`.
    Str(String),
    /// Python `list` (JSON arrays read back are lists).
    List(Vec<Value>),
    /// Python `tuple` (written to JSON as a list).
    Tuple(Vec<Value>),
    /// Python `dict` with text keys, in insertion order.
    Dict(Dict),
    /// Python `bytes`.
    Bytes(Vec<u8>),
    /// Python `set`.
    Set(Vec<Value>),
    /// Python `frozenset`.
    FrozenSet(Vec<Value>),
    /// A twisted Failure (copyable from the wire, or made locally).
    Failure(Box<Failure>),
    /// Any other value without a JSON form, kept as its Python repr.
    Other(String),
}

/// A twisted Failure as an event carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// `str()` of the exception.
    pub value: String,
    /// Qualified class name.
    pub type_name: String,
    /// Formatted traceback text.
    pub traceback: String,
    /// Qualified names of the class and its bases.
    pub parents: Vec<String>,
}

/// A Python dict with text keys that keeps insertion order; setting an
/// existing key replaces its value in place (as Python does).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dict(Vec<(String, Value)>);

impl Dict {
    /// An empty dict.
    pub fn new() -> Dict {
        Dict(Vec::new())
    }
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    /// Set `key` (replacing in place when present, appending otherwise).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.0.push((key, value));
        }
    }
    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }
    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the dict is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Value {
    /// The text of a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The dict of a `Dict`.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// An integer that fits `i64` (bools count, as in Python).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(i).ok(),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    /// A number as `f64` (int, bool or float), as Python's `float()` of it.
    pub fn as_f64(&self) -> Option<f64> {
        use num_traits::ToPrimitive;
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => i.to_f64(),
            Value::Bool(b) => Some(*b as i64 as f64),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i.into())
    }
}
impl From<u64> for Value {
    fn from(i: u64) -> Value {
        Value::Int(i.into())
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i.into())
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<Dict> for Value {
    fn from(d: Dict) -> Value {
        Value::Dict(d)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}
