//! RemoteInterface schemas: what a method accepts and returns
//! (docs/protocol.md §6.5).
//!
//! A Python service declares its remote methods in a `RemoteInterface`
//! class: each argument's default value is its constraint, the method body
//! returns the return constraint, and the interface is announced by name
//! in the first `my-reference` of an object. This module is the data
//! model of those declarations: one [`Constraint`] per Python constraint
//! kind, [`MethodSchema`] and [`InterfaceSchema`]. The checks that apply
//! them (token by token as a call arrives, whole values when it is
//! complete, answers before they are sent) live beside the decoder that
//! feeds them.
//!
//! Schemas are plain values built once, usually by the typed interface
//! macro of `foolscap-app`, and shared with [`Arc`](std::sync::Arc).
//!
//! ```
//! use foolscap_core::schema::{Argument, Constraint, InterfaceSchema, MethodSchema};
//!
//! // class RILimited(RemoteInterface):
//! //     __remote_name__ = "RIKitchenSinkLimited.foolscap-rs.example"
//! //     def put_bytes(data=ByteStringConstraint(maxLength=65536)): return int
//! //     def put_list(items=ListOf(int, maxLength=100)): return int
//! let limited = InterfaceSchema::new("RIKitchenSinkLimited.foolscap-rs.example")
//!     .with_method(
//!         MethodSchema::new("put_bytes")
//!             .with_argument(Argument::required("data", Constraint::byte_string(Some(65536))))
//!             .returning(Constraint::int()),
//!     )
//!     .with_method(
//!         MethodSchema::new("put_list")
//!             .with_argument(Argument::required(
//!                 "items",
//!                 Constraint::list_of(Constraint::int(), Some(100)),
//!             ))
//!             .returning(Constraint::int()),
//!     );
//! assert_eq!(limited.method("put_list").unwrap().arguments().len(), 1);
//! assert!(limited.method("nosuch").is_none());
//! ```

use std::fmt;

pub mod check;

pub use check::{check_call, check_result, Direction, Violation};

/// Python's `int` shorthand: integers of up to this many body bytes.
pub const DEFAULT_INT_BYTES: usize = 1024;

/// `Any()` accepts LONGINT/LONGNEG tokens of at most this many bytes
/// directly under it.
pub const ANY_LONG_BYTES: usize = 1000;

/// One Python constraint kind (docs/protocol.md §6.5). Build them with the
/// constructors, which take Python's defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Constraint {
    /// `Any()`: anything. Limits are not passed down into containers.
    Any,
    /// `bytes` / `ByteStringConstraint(maxLength, minLength)`: STRING or
    /// VOCAB. A `max_length` of `Some(0)` is "no limit" at token time, as
    /// in Python.
    ByteString {
        /// Longest accepted, `None` for no limit.
        max_length: Option<usize>,
        /// Shortest accepted.
        min_length: usize,
    },
    /// `str` / `UnicodeConstraint(maxLength, minLength, regexp)`: a
    /// `unicode` sequence.
    Unicode {
        /// Longest accepted in characters, `None` for no limit.
        max_length: Option<usize>,
        /// Shortest accepted in characters.
        min_length: usize,
        /// A Python regular expression the whole text must match from its
        /// start (`re.search` semantics as Python applies them).
        regexp: Option<String>,
    },
    /// `int` / `IntegerConstraint(maxBytes)`.
    Integer {
        /// `None`: Python's `maxBytes=-1`, INT/NEG only (32-bit range);
        /// `Some(n)`: LONGINT/LONGNEG of at most `n` body bytes too.
        max_bytes: Option<usize>,
    },
    /// `float` / `NumberConstraint(maxBytes)`: FLOAT or any integer.
    Number {
        /// Largest LONGINT/LONGNEG body.
        max_bytes: usize,
    },
    /// `bool` / `BooleanConstraint(value)`.
    Boolean {
        /// `Some(v)`: only that value.
        value: Option<bool>,
    },
    /// `None`: the `none` sequence only.
    Nothing,
    /// `ListOf(c, maxLength, minLength)`.
    List {
        /// Each item's constraint.
        item: Box<Constraint>,
        /// Most items, `None` for no limit.
        max_length: Option<usize>,
        /// Fewest items.
        min_length: usize,
    },
    /// `TupleOf(c1, ..., cn)`: exactly n items.
    Tuple(Vec<Constraint>),
    /// `DictOf(kc, vc, maxKeys)`.
    Dict {
        /// Each key's constraint.
        key: Box<Constraint>,
        /// Each value's constraint.
        value: Box<Constraint>,
        /// Most entries, `None` for no limit.
        max_keys: Option<usize>,
    },
    /// `SetOf(c, maxLength, mutable)`.
    Set {
        /// Each member's constraint.
        item: Box<Constraint>,
        /// Most members, `None` for no limit.
        max_length: Option<usize>,
        /// `Some(true)`: only `set`; `Some(false)`: only `frozenset`.
        mutable: Option<bool>,
    },
    /// `ChoiceOf(c1, ..., cn)`: any alternative.
    Choice(Vec<Constraint>),
    /// A RemoteInterface class (`Some(name)`) or `Referenceable` (`None`):
    /// a reference, announced with that interface name.
    Reference {
        /// The interface name the reference must have been announced with.
        interface: Option<String>,
    },
    /// A zope Interface that is not a RemoteInterface: rejects every
    /// token (Python's `LocalInterfaceConstraint`).
    LocalInterface {
        /// The interface's name, for messages.
        name: String,
    },
}

impl Constraint {
    /// `bytes` with an optional maximum length (Python's
    /// `ByteStringConstraint(maxLength)`).
    pub fn byte_string(max_length: Option<usize>) -> Constraint {
        Constraint::ByteString {
            max_length,
            min_length: 0,
        }
    }

    /// `bytes`: any byte string.
    pub fn bytes() -> Constraint {
        Constraint::byte_string(None)
    }

    /// `UnicodeConstraint(maxLength)`.
    pub fn unicode(max_length: Option<usize>) -> Constraint {
        Constraint::Unicode {
            max_length,
            min_length: 0,
            regexp: None,
        }
    }

    /// `str`: any text.
    pub fn text() -> Constraint {
        Constraint::unicode(None)
    }

    /// Python's `int` shorthand: up to 1024 bytes.
    pub fn int() -> Constraint {
        Constraint::Integer {
            max_bytes: Some(DEFAULT_INT_BYTES),
        }
    }

    /// `IntegerConstraint()`: 32-bit (INT/NEG tokens only).
    pub fn int32() -> Constraint {
        Constraint::Integer { max_bytes: None }
    }

    /// `IntegerConstraint(n)`: up to `n` bytes (Tahoe's `Offset` is 8).
    pub fn int_bytes(n: usize) -> Constraint {
        Constraint::Integer { max_bytes: Some(n) }
    }

    /// `float`: a float or any integer up to 1024 bytes.
    pub fn number() -> Constraint {
        Constraint::Number {
            max_bytes: DEFAULT_INT_BYTES,
        }
    }

    /// `bool`.
    pub fn boolean() -> Constraint {
        Constraint::Boolean { value: None }
    }

    /// `ListOf(item, maxLength)`.
    pub fn list_of(item: Constraint, max_length: Option<usize>) -> Constraint {
        Constraint::List {
            item: Box::new(item),
            max_length,
            min_length: 0,
        }
    }

    /// `TupleOf(items...)`.
    pub fn tuple_of(items: impl IntoIterator<Item = Constraint>) -> Constraint {
        Constraint::Tuple(items.into_iter().collect())
    }

    /// `DictOf(key, value, maxKeys)`.
    pub fn dict_of(key: Constraint, value: Constraint, max_keys: Option<usize>) -> Constraint {
        Constraint::Dict {
            key: Box::new(key),
            value: Box::new(value),
            max_keys,
        }
    }

    /// `SetOf(item, maxLength)` (either kind of set, as Python's default).
    pub fn set_of(item: Constraint, max_length: Option<usize>) -> Constraint {
        Constraint::Set {
            item: Box::new(item),
            max_length,
            mutable: None,
        }
    }

    /// `ChoiceOf(alternatives...)`.
    pub fn choice_of(alternatives: impl IntoIterator<Item = Constraint>) -> Constraint {
        Constraint::Choice(alternatives.into_iter().collect())
    }

    /// A reference announced with interface `name` (a RemoteInterface
    /// class used as a constraint).
    pub fn reference_to(name: impl Into<String>) -> Constraint {
        Constraint::Reference {
            interface: Some(name.into()),
        }
    }

    /// `Referenceable`: any reference.
    pub fn any_reference() -> Constraint {
        Constraint::Reference { interface: None }
    }

    /// `ChoiceOf(c, None)`, the usual spelling of an optional value.
    pub fn or_none(self) -> Constraint {
        Constraint::Choice(vec![self, Constraint::Nothing])
    }
}

/// The attribute schema of a copyable type (Python's `stateSchema`, an
/// `AttributeDictConstraint` on the RemoteCopy class): wherever a
/// `copyable` of this type arrives, each attribute is checked against its
/// constraint as it arrives, and an attribute the schema does not name is
/// refused (`unknown attribute 'z'`). Missing attributes are not
/// detected, as in Python. Register it with the Tub's
/// `register_copyable_schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyableSchema {
    type_name: String,
    attributes: Vec<(String, Constraint)>,
    accept_unknown: bool,
}

impl CopyableSchema {
    /// A schema for copyables of type `type_name` with no attributes yet.
    pub fn new(type_name: impl Into<String>) -> CopyableSchema {
        CopyableSchema {
            type_name: type_name.into(),
            attributes: Vec::new(),
            accept_unknown: false,
        }
    }

    /// Adds attribute `name` with its constraint.
    pub fn with_attribute(mut self, name: impl Into<String>, c: Constraint) -> CopyableSchema {
        self.attributes.push((name.into(), c));
        self
    }

    /// Python's `acceptUnknown=True`: attributes the schema does not name
    /// are taken unchecked instead of refused.
    pub fn accepting_unknown(mut self) -> CopyableSchema {
        self.accept_unknown = true;
        self
    }

    /// The copyable type name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The attributes and their constraints.
    pub fn attributes(&self) -> &[(String, Constraint)] {
        &self.attributes
    }

    /// Whether unknown attributes are taken.
    pub fn accepts_unknown(&self) -> bool {
        self.accept_unknown
    }
}

/// One declared argument of a remote method.
#[derive(Debug, Clone, PartialEq)]
pub struct Argument {
    name: String,
    constraint: Constraint,
    required: bool,
}

impl Argument {
    /// An argument the caller must give.
    pub fn required(name: impl Into<String>, constraint: Constraint) -> Argument {
        Argument {
            name: name.into(),
            constraint,
            required: true,
        }
    }

    /// An argument wrapped in Python's `Optional(c, default)`: the caller
    /// may leave it out (the method's own default applies).
    pub fn optional(name: impl Into<String>, constraint: Constraint) -> Argument {
        Argument {
            name: name.into(),
            constraint,
            required: false,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its constraint.
    pub fn constraint(&self) -> &Constraint {
        &self.constraint
    }

    /// Whether a call must give it.
    pub fn is_required(&self) -> bool {
        self.required
    }
}

/// One remote method: its arguments in order and its return constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSchema {
    name: String,
    arguments: Vec<Argument>,
    returns: Constraint,
    unconstrained: bool,
    /// Whether no two arguments share a name (the usual case: then the
    /// argument a lookup by name finds is the one at its own position).
    distinct_names: bool,
}

impl MethodSchema {
    /// A method with no arguments that returns `None` (a Python method
    /// whose body is only a docstring).
    pub fn new(name: impl Into<String>) -> MethodSchema {
        MethodSchema {
            name: name.into(),
            arguments: Vec::new(),
            returns: Constraint::Nothing,
            unconstrained: false,
            distinct_names: true,
        }
    }

    /// Python's `UnconstrainedMethod()`: any arguments, any result.
    pub fn unconstrained(name: impl Into<String>) -> MethodSchema {
        MethodSchema {
            name: name.into(),
            arguments: Vec::new(),
            returns: Constraint::Any,
            unconstrained: true,
            distinct_names: true,
        }
    }

    /// Adds the next argument (the order maps positional arguments to
    /// names).
    pub fn with_argument(mut self, argument: Argument) -> MethodSchema {
        self.distinct_names &= !self.arguments.iter().any(|a| a.name == argument.name);
        self.arguments.push(argument);
        self
    }

    /// Sets the return constraint.
    pub fn returning(mut self, returns: Constraint) -> MethodSchema {
        self.returns = returns;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its arguments, in positional order.
    pub fn arguments(&self) -> &[Argument] {
        &self.arguments
    }

    /// The argument called `name`, with its position.
    pub fn argument(&self, name: &str) -> Option<(usize, &Argument)> {
        self.arguments
            .iter()
            .enumerate()
            .find(|(_, a)| a.name == name)
    }

    /// The return constraint.
    pub fn returns(&self) -> &Constraint {
        &self.returns
    }

    /// Whether no two arguments share a name.
    pub(crate) fn has_distinct_names(&self) -> bool {
        self.distinct_names
    }

    /// Whether this is `UnconstrainedMethod()` (no checks at all).
    pub fn is_unconstrained(&self) -> bool {
        self.unconstrained
    }
}

/// A RemoteInterface: its name on the wire and its methods (inherited
/// ones included).
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceSchema {
    name: String,
    methods: Vec<MethodSchema>,
}

impl InterfaceSchema {
    /// An interface with no methods yet. `name` is what Python's
    /// `__remote_name__` says, or else the bare class name.
    pub fn new(name: impl Into<String>) -> InterfaceSchema {
        InterfaceSchema {
            name: name.into(),
            methods: Vec::new(),
        }
    }

    /// Adds (or replaces, as a Python subclass overrides) a method.
    pub fn with_method(mut self, method: MethodSchema) -> InterfaceSchema {
        match self.methods.iter_mut().find(|m| m.name == method.name) {
            Some(slot) => *slot = method,
            None => self.methods.push(method),
        }
        self
    }

    /// Takes every method of `parent` that this interface does not define
    /// itself (Python's interface inheritance).
    pub fn inheriting(mut self, parent: &InterfaceSchema) -> InterfaceSchema {
        for m in &parent.methods {
            if self.method(&m.name).is_none() {
                self.methods.push(m.clone());
            }
        }
        self
    }

    /// The name announced in `my-reference`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The method called `name`.
    pub fn method(&self, name: &str) -> Option<&MethodSchema> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// Every method.
    pub fn methods(&self) -> &[MethodSchema] {
        &self.methods
    }
}

impl fmt::Display for InterfaceSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests;
