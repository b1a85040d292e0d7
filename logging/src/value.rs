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
    /// Python `bytes` (the wire's bare STRING). No JSON form: a flogfile
    /// holds it as an `UnJSONable` record with its `repr` (`b'...'`).
    Bytes(Vec<u8>),
    /// Python `set`, members in the order given (Python prints them in
    /// hash order). UnJSONable; repr `{1, 2}`, empty `set()`.
    Set(Vec<Value>),
    /// Python `frozenset`. UnJSONable; repr `frozenset({1, 2})`.
    FrozenSet(Vec<Value>),
    /// A twisted `Failure`: one copied from the wire, or made locally (see
    /// [`Failure`]). JSON: `{"@": "Failure", "str", "repr", "traceback"}`.
    Failure(Box<Failure>),
    /// Any other value without a JSON form, kept as its Python `repr`
    /// (e.g. `Decimal('1.5')`). UnJSONable with that repr; its `str` is
    /// that repr too (Python's `str` of the object may differ).
    Other(String),
}

/// A twisted `Failure` as an event carries it: the four attributes of the
/// `twisted.python.failure.Failure` copyable (all text). Python turns a
/// received one into a `CopiedFailure`, and so do we: `str`, `repr` and
/// the traceback in JSON are the ones a `CopiedFailure` gives, whether the
/// failure came over the wire or was made here from a Rust error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// `str()` of the exception (the error's message).
    pub value: String,
    /// The exception's qualified type name (e.g. `builtins.ValueError`).
    pub type_name: String,
    /// The traceback text.
    pub traceback: String,
    /// The qualified names of the exception's classes, most derived first.
    pub parents: Vec<String>,
}

impl Failure {
    /// A failure made from a Rust error: `value` is its `Display`,
    /// `type_name` the given name, `traceback` the chain of `source()`s
    /// (each as a `Caused by:` line) ending with `type_name: value`.
    pub fn from_error(type_name: &str, err: &(dyn std::error::Error + 'static)) -> Failure {
        let mut tb = String::from("Traceback (most recent call last):\n");
        let mut src = err.source();
        while let Some(e) = src {
            tb.push_str("  Caused by: ");
            tb.push_str(&e.to_string());
            tb.push('\n');
            src = e.source();
        }
        let value = err.to_string();
        tb.push_str(&format!("{}: {}\n", type_name, value));
        Failure {
            value,
            type_name: type_name.to_owned(),
            traceback: tb,
            parents: vec![type_name.to_owned()],
        }
    }
    /// `CopiedFailure.getTraceback()`: what a flogfile holds as `traceback`.
    pub fn get_traceback(&self) -> String {
        format!("Traceback from remote host -- {}", self.traceback)
    }
    /// `str()` of the (copied) failure.
    pub fn str_text(&self) -> String {
        format!("[CopiedFailure instance: {}]", self.get_traceback())
    }
    /// `repr()` of the (copied) failure.
    pub fn repr_text(&self) -> String {
        format!(
            "<foolscap.call.CopiedFailure {}: {}>",
            self.type_name, self.value
        )
    }
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
    /// The name of the Python type this value stands for (`NoneType`,
    /// `int`, `str`, `CopiedFailure`, ...), as Python's error texts print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Bytes(_) => "bytes",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Failure(_) => "CopiedFailure",
            Value::Other(_) => "object",
        }
    }
    /// Python's `repr()` of the value.
    pub fn repr(&self) -> String {
        crate::repr::repr_string(self)
    }
    /// Python's `str()` of the value.
    pub fn str_string(&self) -> String {
        crate::repr::str_string(self)
    }
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
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b)
    }
}
impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bytes(b.to_vec())
    }
}
impl From<Failure> for Value {
    fn from(f: Failure) -> Value {
        Value::Failure(Box::new(f))
    }
}
impl From<usize> for Value {
    fn from(i: usize) -> Value {
        Value::Int(i.into())
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i.into())
    }
}
impl From<Option<Value>> for Value {
    fn from(v: Option<Value>) -> Value {
        v.unwrap_or(Value::None)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}
