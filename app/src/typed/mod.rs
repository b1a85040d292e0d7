//! Typed remote interfaces: Rust types in and out of [`Value`]s, and the
//! schema each type stands for.
//!
//! Three traits carry a Rust type across the wire:
//!
//! - [`ToValue`]: the value to send (infallible).
//! - [`FromValue`]: a received value as the Rust type, or a
//!   [`ConvertError`] (Python's `TypeError`, with a text that says where
//!   and what) — never a silent default.
//! - [`Constrained`]: the Python constraint the type stands for in a
//!   RemoteInterface schema (`i64` is `IntegerConstraint(8)`, `String` is
//!   `str`, ...), from which the [`remote_interface`](crate::remote_interface)
//!   macro derives a whole interface's schema.
//!
//! | Rust | Python value | constraint |
//! | --- | --- | --- |
//! | `bool` | `bool` | `bool` |
//! | `i8`, `i16`, `i32`, `u8`, `u16` | `int` | `IntegerConstraint()` (32-bit) |
//! | `u32` | `int` | `IntegerConstraint(4)` |
//! | `i64`, `u64`, `isize`, `usize` | `int` | `IntegerConstraint(8)` |
//! | `i128`, `u128` | `int` | `IntegerConstraint(16)` |
//! | [`BigInt`], [`Int`] | `int` | `int` (1024 bytes) |
//! | `f64` | `float` (an `int` is accepted) | `float` |
//! | `String`, [`Text`] (`&str` to send) | `str` | `str` |
//! | `Vec<u8>`, [`Bytes`] (`&[u8]` to send) | `bytes` | `bytes` |
//! | `()` | `None` | `None` |
//! | `Option<T>` | `None` or T | `ChoiceOf(T, None)` |
//! | `Vec<T>` (T not `u8`) | `list` | `ListOf(T)` |
//! | `(A, B, ...)` | `tuple` | `TupleOf(A, B, ...)` |
//! | `HashMap<K, V>`, `BTreeMap<K, V>` | `dict` | `DictOf(K, V)` |
//! | `HashSet<T>`, `BTreeSet<T>` | `set` (a `frozenset` is accepted) | `SetOf(T)` |
//! | [`RemoteRef`] | a reference to a peer's object | `Referenceable` |
//! | a typed client stub (`RIFooClient`) | a reference announced as `RIFoo` | `RIFoo` |
//! | [`ObjectId`] | one of our objects come home | `Referenceable` |
//! | a `#[derive(Copyable)]` struct | its `copyable` | `Any()` (Python has no copyable constraint) |
//! | [`Value`] | anything (detached from its message) | `Any()` |
//!
//! **Bytes are never a list of ints**: `Vec<u8>` and `&[u8]` are Python
//! `bytes` both ways (a `list` arriving for a `Vec<u8>` is refused); for a
//! list of small integers use a wider integer type (`Vec<u16>`). `u8` on
//! its own is an `int`.
//!
//! Conversions see through sharing: a value that arrived as an alias of
//! another part of its message ([`Value::Alias`]) converts as the value it
//! stands for, resolved in the message's [`Scope`] held by the
//! [`Context`]. A cycle meets [`MAX_DEPTH`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use foolscap_app::typed::{Constrained, FromValue, ToValue};
//! use foolscap_core::schema::Constraint;
//! use foolscap_core::value::Value;
//!
//! let scores: BTreeMap<String, Vec<u16>> = [("ann".to_string(), vec![3, 4])].into();
//! let v = scores.to_value();
//! assert_eq!(BTreeMap::<String, Vec<u16>>::from_value_alone(&v).unwrap(), scores);
//! assert_eq!(
//!     BTreeMap::<String, Vec<u16>>::constraint(),
//!     Constraint::dict_of(Constraint::text(), Constraint::list_of(Constraint::int32(), None), None)
//! );
//!
//! // bytes stay bytes; a str is not bytes
//! assert_eq!(b"ab".to_vec().to_value(), Value::bytes(b"ab"));
//! let err = Vec::<u8>::from_value_alone(&Value::str("ab")).unwrap_err();
//! assert_eq!(err.to_string(), "value must be bytes, not str");
//! ```

mod impls;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

pub use bytes::Bytes;
pub use foolscap_core::broker::Failure;
pub use foolscap_core::id::ObjectId;
pub use foolscap_core::schema::{Constraint, InterfaceSchema};
pub use foolscap_core::value::{Int, RemoteRef, Text, Value};
pub use num_bigint::BigInt;

use foolscap_core::identity::TubId;

/// `#[derive(Copyable)]`: see [`macro@crate::Copyable`].
pub use foolscap_macros::Copyable;

use crate::{Call, Scope, Tub};

/// How deep a conversion may nest (containers in containers, through
/// shared values): a value that goes deeper (a cycle met by a recursive
/// Rust type) is refused with a [`ConvertError`] instead of exhausting the
/// stack. Decoded values nest at most 1000 levels
/// (`foolscap_core::value::Limits`); only aliases can lead deeper.
pub const MAX_DEPTH: usize = 1000;

/// A Rust value to send: the [`Value`] it is.
pub trait ToValue {
    /// The value to send.
    fn to_value(&self) -> Value;

    /// How a slice of this type travels: a `list` (`u8` overrides this:
    /// `&[u8]` and `Vec<u8>` are `bytes`).
    #[doc(hidden)]
    fn slice_to_value(items: &[Self]) -> Value
    where
        Self: Sized,
    {
        Value::List(items.iter().map(ToValue::to_value).collect())
    }
}

/// A Rust value made from a received [`Value`].
pub trait FromValue: Sized {
    /// Converts `v` (a value of the message `cx` holds), or fails with
    /// what was expected and what came.
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError>;

    /// Converts a value that is a whole message of its own (an answer,
    /// say): aliases resolve within `v`, and references cannot become
    /// typed client stubs (they need a Tub: use [`Context::new`]).
    fn from_value_alone(v: &Value) -> Result<Self, ConvertError> {
        Self::from_value(v, &Context::for_message(v, None))
    }

    /// The value when there is none at all (a copyable without this
    /// attribute): `Option`s are `None`, the rest are missing.
    #[doc(hidden)]
    fn absent() -> Option<Self> {
        None
    }

    /// How a `Vec` of this type is received (`u8` overrides this).
    #[doc(hidden)]
    fn vec_from_value(v: &Value, cx: &Context<'_>) -> Result<Vec<Self>, ConvertError> {
        let items = match cx.resolve(v)? {
            Value::List(items) => items,
            other => return Err(ConvertError::expected("list", other)),
        };
        let _deeper = cx.enter()?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(Self::from_value(item, cx).map_err(|e| e.at_index(i))?);
        }
        Ok(out)
    }
}

/// The Python constraint a Rust type stands for in a schema.
pub trait Constrained {
    /// The constraint.
    fn constraint() -> Constraint;

    /// The constraint of a `Vec` of this type, with an optional maximum
    /// length (`u8` overrides this: `Vec<u8>` is `bytes`).
    #[doc(hidden)]
    fn vec_constraint(max_length: Option<usize>) -> Constraint
    where
        Self: Sized,
    {
        Constraint::list_of(Self::constraint(), max_length)
    }
}

/// Types with a length that a schema can limit: `#[max_len = N]` on an
/// argument of the [`remote_interface`](crate::remote_interface) macro
/// (strings, bytes, lists, sets, dicts, and `Option`s of them). Any other
/// type there does not compile.
pub trait MaxLen: Constrained {
    /// The type's constraint, at most `max` long (characters, bytes,
    /// items, members or keys).
    fn constraint_with_max_len(max: usize) -> Constraint;
}

/// Everything a type needs to be an argument or a result of a typed
/// interface.
pub trait Remote: ToValue + FromValue + Constrained {}

impl<T: ToValue + FromValue + Constrained> Remote for T {}

/// A declared RemoteInterface: its name on the wire and its schema. The
/// [`remote_interface`](crate::remote_interface) macro implements it for
/// the client stub and the server adapter it generates.
pub trait RemoteInterface {
    /// The name announced in `my-reference` (Python's `__remote_name__`).
    const NAME: &'static str;

    /// The schema, built once and shared.
    fn schema() -> Arc<InterfaceSchema>;
}

/// A pass-by-copy type: `#[derive(Copyable)]` implements it with
/// [`ToValue`], [`FromValue`] and [`Constrained`].
pub trait Copyable: Remote {
    /// The registered copy type name (Python's `typeToCopy` /
    /// `copytype`).
    const TYPE_NAME: &'static str;

    /// Each attribute's constraint (Python's `stateSchema`).
    fn state_schema() -> Vec<(String, Constraint)>;

    /// Lets `tub` receive this type ([`Tub::register_copyable`]).
    fn register(tub: &Tub) {
        tub.register_copyable(Self::TYPE_NAME)
    }
}

/// What a conversion needs beyond the value: the message's [`Scope`]
/// (to follow aliases) and the Tub that typed references call through.
pub struct Context<'a> {
    scope: Scopes<'a>,
    tub: Option<&'a Tub>,
    depth: Cell<usize>,
}

/// A context's scope: given, or built from the message's values (a call's
/// arguments and keyword arguments) the first time an alias needs it
/// (most values have none).
enum Scopes<'a> {
    Given(&'a Scope<'a>),
    Lazy(
        &'a [Value],
        &'a [(Text, Value)],
        std::cell::OnceCell<Scope<'a>>,
    ),
}

impl<'a> Context<'a> {
    /// A context for the values of the message `scope` was built over;
    /// typed client stubs made from it call through `tub`.
    pub fn new(scope: &'a Scope<'a>, tub: Option<&'a Tub>) -> Context<'a> {
        Context {
            scope: Scopes::Given(scope),
            tub,
            depth: Cell::new(0),
        }
    }

    /// A context for `message`, a value that is a whole message of its
    /// own (an answer): its scope is built only if an alias needs it.
    pub fn for_message(message: &'a Value, tub: Option<&'a Tub>) -> Context<'a> {
        Context::for_call(std::slice::from_ref(message), &[], tub)
    }

    /// A context for the message of a call with these arguments: its
    /// scope is built only if an alias needs it.
    pub fn for_call(
        args: &'a [Value],
        kwargs: &'a [(Text, Value)],
        tub: Option<&'a Tub>,
    ) -> Context<'a> {
        Context {
            scope: Scopes::Lazy(args, kwargs, std::cell::OnceCell::new()),
            tub,
            depth: Cell::new(0),
        }
    }

    /// The message's scope.
    pub fn scope(&self) -> &Scope<'a> {
        match &self.scope {
            Scopes::Given(s) => s,
            Scopes::Lazy(args, kwargs, cell) => {
                cell.get_or_init(|| Scope::new(args.iter().chain(kwargs.iter().map(|(_, v)| v))))
            }
        }
    }

    /// The Tub typed references call through, if the context has one.
    pub fn tub(&self) -> Option<&'a Tub> {
        self.tub
    }

    /// The value `v` stands for: an anchor looked through, an alias
    /// followed to its anchored value (an alias the message does not
    /// anchor is an error).
    pub fn resolve<'v>(&'v self, v: &'v Value) -> Result<&'v Value, ConvertError> {
        match v {
            Value::Anchor(_, inner) => Ok(inner),
            Value::Alias(id) => self.scope().anchored(*id).ok_or_else(|| {
                ConvertError::new(format!(
                    "refers to shared value {id}, which is not in its message"
                ))
            }),
            v => Ok(v),
        }
    }

    /// One level deeper, until the guard is dropped; fails past
    /// [`MAX_DEPTH`].
    pub fn enter(&self) -> Result<DepthGuard<'_>, ConvertError> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(ConvertError::new(format!(
                "nests deeper than {MAX_DEPTH} levels (a cycle?)"
            )));
        }
        self.depth.set(depth);
        Ok(DepthGuard(&self.depth))
    }
}

/// Returned by [`Context::enter`]: one level up again when dropped.
pub struct DepthGuard<'c>(&'c Cell<usize>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// A received value that is not what the Rust type expects: where in the
/// value and what (a Python `TypeError` for a caller:
/// [`ConvertError::to_failure`]).
///
/// Its text is `<root><path> <message>`: the root names the whole value
/// (`value` unless [`ConvertError::within`] named it, e.g. `Calc.add()
/// argument 'a'`), the path the part (`[3]` a list item, `['k']` a dict
/// value, `.x` a copyable's attribute), the message what was wrong (`must
/// be int, not str`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    root: Option<String>,
    /// Path segments, innermost first (they are added as the error goes
    /// up).
    path: Vec<String>,
    message: String,
}

impl ConvertError {
    /// An error with this message (`must be int, not str`).
    pub fn new(message: impl Into<String>) -> ConvertError {
        ConvertError {
            root: None,
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// `must be <expected>, not <Python type of got>`.
    pub fn expected(expected: &str, got: &Value) -> ConvertError {
        ConvertError::new(format!("must be {expected}, not {}", got.type_name()))
    }

    /// The error was in item `i` of a list, tuple or set.
    pub fn at_index(self, i: usize) -> ConvertError {
        self.at(format!("[{i}]"))
    }

    /// The error was in a dict's value under `key` (Python repr).
    pub fn at_key(self, key: &Value) -> ConvertError {
        self.at(format!("[{}]", short_repr(key)))
    }

    /// The error was in a dict's key.
    pub fn in_key(self) -> ConvertError {
        self.at(" key".to_string())
    }

    /// The error was in a copyable's attribute `name`.
    pub fn at_attribute(self, name: &str) -> ConvertError {
        self.at(format!(".{name}"))
    }

    fn at(mut self, segment: String) -> ConvertError {
        self.path.push(segment);
        self
    }

    /// Names the whole value (`Calc.remote_add() argument 'a'`, `the
    /// answer of RICalc.add()`).
    pub fn within(mut self, root: impl Into<String>) -> ConvertError {
        self.root = Some(root.into());
        self
    }

    /// What was wrong, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error as Python's `builtins.TypeError` with this text.
    pub fn to_failure(&self) -> Failure {
        Failure::new("builtins.TypeError", self.to_string())
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.as_deref().unwrap_or("value"))?;
        for segment in self.path.iter().rev() {
            f.write_str(segment)?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for ConvertError {}

impl From<ConvertError> for Failure {
    fn from(e: ConvertError) -> Failure {
        e.to_failure()
    }
}

/// A key for an error's path: Python's repr of small keys, the type of
/// the rest.
fn short_repr(v: &Value) -> String {
    use foolscap_core::value::pyrepr::{bytes_repr, str_repr};
    match v.unanchored() {
        Value::Str(s) if s.len() <= 40 => str_repr(s.as_str()),
        Value::Bytes(b) if b.len() <= 40 => bytes_repr(b),
        Value::Int(i) => {
            let s = i.to_string();
            if s.len() <= 40 {
                s
            } else {
                "<int>".to_string()
            }
        }
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::None => "None".to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

/// A typed answer to give later: a method of a
/// [`remote_interface`](crate::remote_interface) trait that takes a
/// `Reply<T>` as its last parameter (and returns nothing) answers through
/// it, at once or later from any thread (keep it; it is `Send`). Dropped
/// unanswered, it answers with a failure, as a [`Call`] does.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use foolscap_app::typed::Reply;
///
/// // `crate = foolscap_app` for a program that uses foolscap-app itself
/// #[foolscap_app::remote_interface(name = "RISlow.example", crate = foolscap_app)]
/// trait Slow {
///     /// Python: `def double(x=int): return int`, answered later
///     fn double(&self, x: i64, reply: Reply<i64>);
/// }
///
/// struct Worker;
/// impl Slow for Worker {
///     fn double(&self, x: i64, reply: Reply<i64>) {
///         // slow work on a thread of our own; the engine's thread goes on
///         std::thread::spawn(move || reply.ok(2 * x));
///     }
/// }
///
/// let server = foolscap_threads::new_tub()?;
/// server.listen("127.0.0.1:0")?;
/// let furl = server.register(Arc::new(SlowServer(Worker)), None)?;
/// let client = foolscap_threads::new_tub()?;
/// let slow = SlowClient::connect(&client, &furl.to_string(), Duration::from_secs(10))?;
/// assert_eq!(slow.double(21)?, 42);
/// # Ok::<(), foolscap_app::Error>(())
/// ```
pub struct Reply<T> {
    call: Call,
    _answer: PhantomData<fn(T)>,
}

impl<T: ToValue> Reply<T> {
    /// The reply to `call`.
    pub fn new(call: Call) -> Reply<T> {
        Reply {
            call,
            _answer: PhantomData,
        }
    }

    /// Answers with the value or the failure.
    pub fn send<E: Into<Failure>>(self, result: Result<T, E>) {
        self.call
            .reply(result.map(|v| v.to_value()).map_err(Into::into))
    }

    /// Answers with a value.
    pub fn ok(self, value: T) {
        self.call.answer(value.to_value())
    }

    /// Answers with a failure.
    pub fn fail(self, failure: impl Into<Failure>) {
        self.call.fail(failure.into())
    }

    /// The Tub the call arrived at (to call others before answering).
    pub fn tub(&self) -> &Tub {
        self.call.tub()
    }

    /// The calling Tub.
    pub fn caller(&self) -> TubId {
        self.call.caller()
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Reply").field(&self.call).finish()
    }
}

/// What the code the macros generate uses; not an API.
#[doc(hidden)]
pub mod __rt;

/// The answer to a typed call, to `.await` on any executor (the
/// `<method>_future` methods of a client stub). The call is sent when the
/// `Pending` is made: start several, then await them. Dropping it stops
/// waiting (the answer, when it comes, is dropped); the connection is
/// not affected. Waiting needs no thread of its own and no particular
/// runtime: the engine's callback fills it and wakes the task.
#[must_use = "a Pending does nothing unless awaited (the call is sent already)"]
pub struct Pending<T> {
    slot: Arc<std::sync::Mutex<PendingSlot<T>>>,
}

struct PendingSlot<T> {
    result: Option<Result<T, crate::Error>>,
    waker: Option<std::task::Waker>,
    /// The result was taken (polled to completion).
    done: bool,
}

impl<T: Send + 'static> Pending<T> {
    /// An unanswered `Pending` and the callback that answers it.
    pub fn channel() -> (
        Pending<T>,
        impl FnOnce(Result<T, crate::Error>) + Send + 'static,
    ) {
        let slot = Arc::new(std::sync::Mutex::new(PendingSlot {
            result: None,
            waker: None,
            done: false,
        }));
        let filler = slot.clone();
        let fill = move |r: Result<T, crate::Error>| {
            let waker = {
                let mut s = filler.lock().unwrap_or_else(|p| p.into_inner());
                s.result = Some(r);
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        };
        (Pending { slot }, fill)
    }
}

impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, crate::Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => {
                s.done = true;
                std::task::Poll::Ready(r)
            }
            // polled again after its answer: as a dropped answer
            None if s.done => std::task::Poll::Ready(Err(crate::Error::Shutdown)),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Pending")
            .field("answered", &(s.result.is_some() || s.done))
            .finish()
    }
}
