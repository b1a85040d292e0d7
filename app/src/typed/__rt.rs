//! The runtime of the code `#[remote_interface]` and `#[derive(Copyable)]`
//! generate: the names it uses, and the few steps it repeats, kept here so
//! that the generated code stays short and readable.

pub use std::sync::{Arc, OnceLock};
pub use std::time::Duration;

pub use foolscap_core::broker::Failure;
pub use foolscap_core::id::ObjectId;
pub use foolscap_core::schema::{Argument, Constraint, InterfaceSchema, MethodSchema};
pub use foolscap_core::value::{RemoteRef, Text, Value};

pub use super::{
    Constrained, Context, ConvertError, Copyable, FromValue, MaxLen, Pending, RemoteInterface,
    Reply, ToValue,
};
pub use crate::{BoundArgs, Call, Error, Object, Scope, Signature, Tub};

/// How long a typed client's blocking call waits for its answer unless
/// told otherwise (`with_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The bare name of type `T` (`Calculator` for `my_app::Calculator<X>`),
/// Python's class name in error texts.
pub fn class_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
}

/// A call's arguments bound to a method's parameters.
pub enum Bound<'c> {
    /// Exactly one positional argument per parameter, no keywords: the
    /// common call, bound as it is.
    Positional(&'c [Value]),
    /// Any other call, bound by [`Signature::bind`].
    Bound(BoundArgs<'c>),
}

impl<'c> Bound<'c> {
    /// Parameter `i`, as in the message (the conversion resolves it).
    pub fn get(&self, i: usize) -> Option<&'c Value> {
        match self {
            Bound::Positional(args) => args.get(i),
            Bound::Bound(b) => b.raw(i),
        }
    }
}

/// Binds `call`'s arguments to `signature` (a method without `*args` or
/// `**kwargs`) as Python does, and a context to convert them in.
pub fn bind<'c>(
    call: &'c Call,
    class: fn() -> &'static str,
    signature: &Signature<'c>,
) -> Result<(Bound<'c>, Context<'c>), Failure> {
    let cx = Context::for_call(&call.args, &call.kwargs, Some(call.tub()));
    if call.kwargs.is_empty() && call.args.len() == signature.parameters().count() {
        return Ok((Bound::Positional(&call.args), cx));
    }
    Ok((Bound::Bound(call.bind(class(), signature)?), cx))
}

/// Parameter `i` (`name`) of `<class>.remote_<method>()`, bound and
/// required.
#[inline]
pub fn required<T: FromValue>(
    bound: &Bound<'_>,
    cx: &Context<'_>,
    i: usize,
    name: &str,
    class: fn() -> &'static str,
    method: &str,
) -> Result<T, Failure> {
    match bound.get(i) {
        Some(v) => T::from_value(v, cx).map_err(|e| argument_error(e, class, method, name)),
        // Signature::bind refuses a call without it
        None => Err(Failure::new(
            "builtins.TypeError",
            format!(
                "{}.remote_{method}() missing required argument '{name}'",
                class()
            ),
        )),
    }
}

/// An optional parameter: `None` when the call left it out.
pub fn optional<T: FromValue>(
    bound: &Bound<'_>,
    cx: &Context<'_>,
    i: usize,
    name: &str,
    class: fn() -> &'static str,
    method: &str,
) -> Result<Option<T>, Failure> {
    bound
        .get(i)
        .map(|v| T::from_value(v, cx).map_err(|e| argument_error(e, class, method, name)))
        .transpose()
}

#[cold]
fn argument_error(
    e: ConvertError,
    class: fn() -> &'static str,
    method: &str,
    name: &str,
) -> Failure {
    e.within(format!("{}.remote_{method}() argument '{name}'", class()))
        .to_failure()
}

/// A method's `Result` as the call's answer.
pub fn reply<T: ToValue, E: Into<Failure>>(result: Result<T, E>) -> Result<Value, Failure> {
    result.map(|v| v.to_value()).map_err(Into::into)
}

/// A typed client's arguments: positional in order until an optional one
/// is left out, by keyword after that (as a Python caller would).
#[derive(Debug, Default)]
pub struct Args {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Vec<(Text, Value)>,
    gap: bool,
}

impl Args {
    /// Room for `n` positional arguments.
    pub fn with_capacity(n: usize) -> Args {
        Args {
            args: Vec::with_capacity(n),
            kwargs: Vec::new(),
            gap: false,
        }
    }

    /// The next argument.
    pub fn push(&mut self, name: &str, value: Value) {
        if self.gap {
            self.kwargs.push((Text::from(name), value));
        } else {
            self.args.push(value);
        }
    }

    /// The next argument, optional: `None` is not sent.
    pub fn push_optional(&mut self, name: &str, value: Option<Value>) {
        match value {
            Some(v) => self.push(name, v),
            None => self.gap = true,
        }
    }
}

/// A typed client's answer as `T`.
pub fn answer<T: FromValue>(
    tub: &Tub,
    answer: Result<Value, Error>,
    interface: &str,
    method: &str,
) -> Result<T, Error> {
    let v = answer?;
    T::from_value(&v, &Context::for_message(&v, Some(tub)))
        .map_err(|e| Error::Convert(e.within(format!("the answer of {interface}.{method}()"))))
}

/// What a typed client stub refers to: a peer's object, or one of ours
/// (to pass as an argument; a stub cannot call it).
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A peer's object.
    Remote(RemoteRef),
    /// One of ours.
    Local(ObjectId),
}

impl Target {
    /// The reference as a value.
    pub fn to_value(&self) -> Value {
        match self {
            Target::Remote(r) => Value::Remote(r.clone()),
            Target::Local(id) => Value::Local(*id),
        }
    }

    fn remote(&self, interface: &str, method: &str) -> Result<&RemoteRef, Error> {
        match self {
            Target::Remote(r) => Ok(r),
            Target::Local(_) => Err(Error::Convert(
                ConvertError::new("is one of our own objects: call it directly")
                    .within(format!("the target of {interface}.{method}()")),
            )),
        }
    }
}

/// A typed client's blocking call.
#[allow(clippy::too_many_arguments)]
pub fn call(
    tub: &Tub,
    target: &Target,
    interface: &str,
    method: &str,
    args: &[Value],
    kwargs: &[(Text, Value)],
    timeout: Duration,
) -> Result<Value, Error> {
    tub.call(
        target.remote(interface, method)?,
        method,
        args,
        kwargs,
        timeout,
    )
}

/// A typed client's call with a callback: `done` runs once, with the
/// answer (on an engine thread), or at once on this thread when the call
/// cannot be sent.
pub fn call_async<T: FromValue>(
    tub: &Tub,
    target: &Target,
    (interface, method): (&'static str, &'static str),
    args: &[Value],
    kwargs: &[(Text, Value)],
    done: impl FnOnce(Result<T, Error>) + Send + 'static,
) {
    match target.remote(interface, method) {
        Ok(remote) => {
            let t = tub.clone();
            tub.call_then(remote, method, args, kwargs, move |a| {
                done(answer(&t, a, interface, method))
            })
        }
        Err(e) => done(Err(e)),
    }
}

/// A typed client's call to `.await`: [`call_async`] filling a
/// [`Pending`](super::Pending).
pub fn call_future<T: FromValue + Send + 'static>(
    tub: &Tub,
    target: &Target,
    names: (&'static str, &'static str),
    args: &[Value],
    kwargs: &[(Text, Value)],
) -> super::Pending<T> {
    let (pending, fill) = super::Pending::channel();
    call_async(tub, target, names, args, kwargs, fill);
    pending
}

/// A reference announced as `interface` (or one of our objects that
/// announces it), and the Tub to call it through: what a typed client
/// stub is made of.
pub fn stub_parts(
    v: &Value,
    cx: &Context<'_>,
    interface: &str,
) -> Result<(Tub, Target), ConvertError> {
    let tub = || {
        cx.tub().ok_or_else(|| {
            ConvertError::new(format!(
                "is a reference to {interface}, which needs a Tub to call through (a Context without one)"
            ))
        })
    };
    let (announced, target) = match cx.resolve(v)? {
        Value::Remote(r) => (
            match std::str::from_utf8(r.interface()) {
                Ok(name) => name.to_string(),
                Err(_) => "an interface whose name is not UTF-8".to_string(),
            },
            Target::Remote(r.clone()),
        ),
        Value::Local(id) => (
            tub()?
                .object(*id)
                .map_or(String::new(), |o| o.interface().to_string()),
            Target::Local(*id),
        ),
        other => {
            return Err(ConvertError::expected(
                &format!("a reference to {interface}"),
                other,
            ))
        }
    };
    if announced != interface {
        return Err(ConvertError::new(format!(
            "must be a reference to {interface}, not to {}",
            if announced.is_empty() {
                "an object without an interface".to_string()
            } else {
                format!("'{announced}'")
            }
        )));
    }
    Ok((tub()?.clone(), target))
}

/// A copyable of `type_name` (Python sends its attributes by name).
pub fn copyable_value(type_name: &str, state: Vec<(Text, Value)>) -> Value {
    Value::Copyable(Box::new(foolscap_core::value::Copyable {
        type_name: Text::from(type_name),
        state,
    }))
}

/// The state of a received copyable of `type_name` whose attributes are
/// all among `fields`.
pub fn copyable_state<'v>(
    v: &'v Value,
    cx: &'v Context<'_>,
    type_name: &str,
    fields: &[&str],
) -> Result<&'v [(Text, Value)], ConvertError> {
    let c = match cx.resolve(v)? {
        Value::Copyable(c) => c,
        other => {
            return Err(ConvertError::expected(
                &format!("copyable '{type_name}'"),
                other,
            ))
        }
    };
    if c.type_name.as_str() != type_name {
        return Err(ConvertError::new(format!(
            "must be copyable '{type_name}', not copyable '{}'",
            c.type_name.as_str()
        )));
    }
    if let Some((name, _)) = c.state.iter().find(|(n, _)| !fields.contains(&n.as_str())) {
        return Err(ConvertError::new(format!(
            "has unknown attribute '{}'",
            name.as_str()
        )));
    }
    Ok(&c.state)
}

/// Attribute `name` of a copyable's state (the last one, should it come
/// twice); an absent one is `None` for an `Option`, an error otherwise.
pub fn attribute<T: FromValue>(
    state: &[(Text, Value)],
    name: &str,
    cx: &Context<'_>,
) -> Result<T, ConvertError> {
    match state.iter().rev().find(|(n, _)| n.as_str() == name) {
        Some((_, v)) => T::from_value(v, cx).map_err(|e| e.at_attribute(name)),
        None => {
            T::absent().ok_or_else(|| ConvertError::new(format!("is missing attribute '{name}'")))
        }
    }
}
