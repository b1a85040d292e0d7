//! Remote exceptions: the `twisted.python.failure.Failure` copyable
//! (docs/protocol.md §5.5).

use bytes::Bytes;
use thiserror::Error;

use crate::value::pyrepr::str_repr;
use crate::value::{Copyable, Text, Value};

/// The copyable type name a Failure travels under.
pub const FAILURE_TYPE: &str = "twisted.python.failure.Failure";

/// What a Tub sends when tracebacks are disabled.
pub const NO_TRACEBACK: &str = "Traceback unavailable\n";

/// A remote exception, as a foolscap `CopiedFailure` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Qualified class name, e.g. `builtins.ValueError`.
    pub type_name: String,
    /// Qualified names of the class and its bases, most derived first
    /// (what Python's `check()`/`trap()` match against).
    pub parents: Vec<String>,
    /// `str()` of the exception.
    pub value: String,
    /// Formatted traceback text.
    pub traceback: String,
}

/// Why a received Failure copyable was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FailureError {
    /// Not a `twisted.python.failure.Failure` copyable (a Violation).
    #[error("error body is not a {FAILURE_TYPE} copyable but a {0}")]
    NotAFailure(String),
    /// An attribute other than type, value, traceback and parents (a
    /// Violation).
    #[error("unknown attribute '{0}'")]
    UnknownAttribute(String),
    /// An attribute that is not a bare STRING (or, for parents, not a list
    /// of them): a Violation.
    #[error("Failure attribute {0} must be bytes")]
    NotBytes(&'static str),
    /// An attribute over its size limit (a Violation).
    #[error("Failure attribute {name} is {len} bytes, over its limit of {limit}")]
    TooLong {
        /// The attribute.
        name: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An attribute that is not UTF-8 (Python's `ensure_str` raises).
    #[error("Failure attribute {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    /// A required attribute is missing: Python's Failure factory raises,
    /// which kills the connection.
    #[error("Failure attribute {0} is missing")]
    Missing(&'static str),
}

impl FailureError {
    /// Whether Python would drop the connection (a missing attribute)
    /// rather than fail the one request.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FailureError::Missing(_))
    }
}

/// Receive limits of foolscap's `FailureConstraint`, in bytes.
pub mod limits {
    /// `type`.
    pub const TYPE: usize = 200;
    /// `value`.
    pub const VALUE: usize = 1000;
    /// `traceback`.
    pub const TRACEBACK: usize = 2000;
    /// Each entry of `parents`.
    pub const PARENT: usize = 200;
}

const STANDARD_BASES: [&str; 3] = [
    "builtins.Exception",
    "builtins.BaseException",
    "builtins.object",
];

impl Failure {
    /// A failure of an exception class deriving directly from `Exception`
    /// (parents: the class, `Exception`, `BaseException`, `object`), with
    /// no traceback.
    pub fn new(type_name: impl Into<String>, value: impl Into<String>) -> Failure {
        let type_name = type_name.into();
        let mut parents = vec![type_name.clone()];
        parents.extend(STANDARD_BASES.iter().map(|s| s.to_string()));
        Failure {
            type_name,
            parents,
            value: value.into(),
            traceback: NO_TRACEBACK.into(),
        }
    }

    /// A `foolscap.tokens.Violation`, worded as Python words one raised
    /// while receiving call `req_id`.
    pub fn violation(req_id: u64, why: &str) -> Failure {
        Failure::new(
            "foolscap.tokens.Violation",
            format!(
                "Violation (<RootUnslicer>.<methodcall reqID={req_id}>): ({},)",
                str_repr(why)
            ),
        )
    }

    /// Python's `AttributeError` for a missing `remote_<method>`.
    pub fn no_such_method(class: &str, method: &str) -> Failure {
        Failure::new(
            "builtins.AttributeError",
            format!("'{class}' object has no attribute 'remote_{method}'"),
        )
    }

    /// Whether the exception is of class `qualified_name` or derives from
    /// it (Python's `Failure.check`).
    pub fn check(&self, qualified_name: &str) -> bool {
        self.type_name == qualified_name || self.parents.iter().any(|p| p == qualified_name)
    }

    /// The wire form, truncated as foolscap truncates what it sends:
    /// value and type to limit−3 characters plus `..`, each parent to 197
    /// characters plus `..`, a traceback over 1900 characters to its first
    /// 700, an elision marker and its last 1200.
    pub fn to_value(&self) -> Value {
        let b = |s: String| Value::Bytes(Bytes::from(s.into_bytes()));
        let parents = self
            .parents
            .iter()
            .map(|p| b(truncate(p, limits::PARENT)))
            .collect();
        Value::Copyable(Box::new(Copyable {
            type_name: Text::from(FAILURE_TYPE),
            state: vec![
                (Text::from("value"), b(truncate(&self.value, limits::VALUE))),
                (
                    Text::from("type"),
                    b(truncate(&self.type_name, limits::TYPE)),
                ),
                (Text::from("traceback"), b(elide_traceback(&self.traceback))),
                (Text::from("parents"), Value::List(parents)),
            ],
        }))
    }

    /// Reads a received Failure copyable, with the checks of foolscap's
    /// `FailureConstraint` and `CopiedFailure`.
    pub fn from_value(v: &Value) -> Result<Failure, FailureError> {
        let Value::Copyable(c) = v.unanchored() else {
            return Err(FailureError::NotAFailure(v.type_name().into()));
        };
        if c.type_name.as_str() != FAILURE_TYPE {
            return Err(FailureError::NotAFailure(c.type_name.to_string()));
        }
        let (mut type_name, mut value, mut traceback, mut parents) = (None, None, None, None);
        for (name, attr) in &c.state {
            match name.as_str() {
                "type" => type_name = Some(text(attr, "type", limits::TYPE)?),
                "value" => value = Some(text(attr, "value", limits::VALUE)?),
                "traceback" => traceback = Some(text(attr, "traceback", limits::TRACEBACK)?),
                "parents" => {
                    let Value::List(items) = attr.unanchored() else {
                        return Err(FailureError::NotBytes("parents"));
                    };
                    parents = Some(
                        items
                            .iter()
                            .map(|p| text(p, "parents", limits::PARENT))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                other => return Err(FailureError::UnknownAttribute(other.into())),
            }
        }
        Ok(Failure {
            type_name: type_name.ok_or(FailureError::Missing("type"))?,
            value: value.ok_or(FailureError::Missing("value"))?,
            traceback: traceback.ok_or(FailureError::Missing("traceback"))?,
            parents: parents.ok_or(FailureError::Missing("parents"))?,
        })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.type_name, self.value)
    }
}

impl std::error::Error for Failure {}

fn text(v: &Value, name: &'static str, limit: usize) -> Result<String, FailureError> {
    let Value::Bytes(b) = v else {
        return Err(FailureError::NotBytes(name));
    };
    if b.len() > limit {
        return Err(FailureError::TooLong {
            name,
            len: b.len(),
            limit,
        });
    }
    String::from_utf8(b.to_vec()).map_err(|_| FailureError::InvalidUtf8(name))
}

/// foolscap's `truncate`: over `limit` characters, keep `limit - 3` and
/// append `..`.
fn truncate(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_string();
    }
    let mut out: String = s.chars().take(limit - 3).collect();
    out.push_str("..");
    out
}

/// foolscap's traceback elision for tracebacks over 1900 characters.
fn elide_traceback(s: &str) -> String {
    let n = s.chars().count();
    if n <= 1900 {
        return s.to_string();
    }
    let head: String = s.chars().take(700).collect();
    let tail: String = s.chars().skip(n - 1200).collect();
    format!("{head}\n\n-- TRACEBACK ELIDED --\n\n{tail}")
}
