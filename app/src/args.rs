//! Binding a call's arguments to a method's parameters as Python does.
//!
//! A Python peer calls `remote_<method>(*args, **kwargs)` and Python binds
//! them to the method's parameters, raising a `TypeError` when they do not
//! fit. A [`Signature`] describes such a method; [`Signature::bind`] (or
//! [`crate::Call::bind`]) binds a call's arguments by CPython's rules and
//! fails with the `TypeError` CPython raises, to the letter, so that a
//! caller cannot tell a Rust object from its Python twin.

use foolscap_core::broker::Failure;
use foolscap_core::value::{Text, Value};

use crate::Scope;

/// A remote method's Python signature, after `self`: its parameters in
/// order, how many of the last ones have defaults, its keyword-only
/// parameters, and whether it takes `*args` and `**kwargs`.
///
/// Its builders are `const`, so a table of signatures can be a constant.
/// Parameters are Python identifiers (error messages quote them as such).
/// Positional-only parameters (`/`) are not modelled.
///
/// ```
/// use foolscap_app::Signature;
///
/// /// def remote_add(self, a, b)
/// const ADD: Signature = Signature::new("add", &["a", "b"]);
/// /// def remote_fail_later(self, msg, seconds=0.05)
/// const FAIL_LATER: Signature = Signature::new("fail_later", &["msg", "seconds"]).defaults(1);
/// /// def remote_call_back(self, ref, method, *args)
/// const CALL_BACK: Signature = Signature::new("call_back", &["ref", "method"]).star_args();
/// /// def remote_echo_args(self, *args, **kwargs)
/// const ECHO_ARGS: Signature = Signature::new("echo_args", &[]).star_args().star_kwargs();
/// /// def remote_get(self, *, key, default=None)
/// const GET: Signature = Signature::new("get", &[])
///     .keyword_only(&["key", "default"])
///     .keyword_defaults(&["default"]);
///
/// assert_eq!(FAIL_LATER.method(), "fail_later");
/// assert_eq!(GET.parameters().collect::<Vec<_>>(), ["key", "default"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature<'s> {
    method: &'s str,
    params: &'s [&'s str],
    /// How many of the last `params` have defaults (Python's
    /// `len(__defaults__)`).
    defaults: usize,
    star_args: bool,
    keyword_only: &'s [&'s str],
    /// The keyword-only parameters with defaults (the keys of Python's
    /// `__kwdefaults__`).
    keyword_defaults: &'s [&'s str],
    star_kwargs: bool,
}

impl<'s> Signature<'s> {
    /// `def remote_<method>(self, params...)`: every parameter required,
    /// no `*args`, no keyword-only parameters, no `**kwargs`.
    ///
    /// ```
    /// use foolscap_app::Signature;
    ///
    /// let sig = Signature::new("add", &["a", "b"]);
    /// assert_eq!(sig.method(), "add");
    /// assert_eq!(sig.parameters().count(), 2);
    /// ```
    pub const fn new(method: &'s str, params: &'s [&'s str]) -> Self {
        Signature {
            method,
            params,
            defaults: 0,
            star_args: false,
            keyword_only: &[],
            keyword_defaults: &[],
            star_kwargs: false,
        }
    }

    /// The last `n` positional parameters have defaults.
    ///
    /// # Panics
    /// If `n` is more than the number of positional parameters (at
    /// compile time for a constant).
    ///
    /// ```
    /// use foolscap_app::Signature;
    ///
    /// // def remote_increment(self, by=1)
    /// let sig = Signature::new("increment", &["by"]).defaults(1);
    /// let bound = sig.bind("Counter", &[], &[]).unwrap();
    /// assert_eq!(bound.get(0), None); // not passed: the method's default applies
    /// ```
    pub const fn defaults(self, n: usize) -> Self {
        assert!(n <= self.params.len(), "more defaults than parameters");
        Signature {
            defaults: n,
            ..self
        }
    }

    /// The method takes `*args`: positional arguments beyond its
    /// parameters go to [`BoundArgs::rest`].
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::Value;
    ///
    /// let sig = Signature::new("call_back", &["ref", "method"]).star_args();
    /// let args = [Value::None, Value::str("m"), Value::int(1), Value::int(2)];
    /// let bound = sig.bind("Sink", &args, &[]).unwrap();
    /// assert_eq!(bound.rest(), [&Value::int(1), &Value::int(2)]);
    /// ```
    pub const fn star_args(self) -> Self {
        Signature {
            star_args: true,
            ..self
        }
    }

    /// Keyword-only parameters (after `*` or `*args`), all required unless
    /// named in [`Signature::keyword_defaults`]. They follow the
    /// positional parameters in [`BoundArgs::get`]'s numbering.
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::{Text, Value};
    ///
    /// // def remote_find(self, name, *, exact)
    /// let sig = Signature::new("find", &["name"]).keyword_only(&["exact"]);
    /// let (args, kwargs) = ([Value::str("x")], [(Text::from("exact"), Value::Bool(true))]);
    /// let bound = sig.bind("Index", &args, &kwargs).unwrap();
    /// assert_eq!(bound.get(1), Some(&Value::Bool(true)));
    /// assert_eq!(bound.named("exact"), Some(&Value::Bool(true)));
    /// ```
    pub const fn keyword_only(self, names: &'s [&'s str]) -> Self {
        Signature {
            keyword_only: names,
            ..self
        }
    }

    /// The keyword-only parameters that have defaults (any of them, in any
    /// order, as in Python).
    ///
    /// ```
    /// use foolscap_app::Signature;
    ///
    /// // def remote_get(self, *, key, default=None)
    /// let sig = Signature::new("get", &[])
    ///     .keyword_only(&["key", "default"])
    ///     .keyword_defaults(&["default"]);
    /// let err = sig.bind("Store", &[], &[]).unwrap_err();
    /// assert_eq!(err.value, "Store.remote_get() missing 1 required keyword-only argument: 'key'");
    /// ```
    pub const fn keyword_defaults(self, names: &'s [&'s str]) -> Self {
        Signature {
            keyword_defaults: names,
            ..self
        }
    }

    /// The method takes `**kwargs`: keyword arguments that name no
    /// parameter go to [`BoundArgs::extra`].
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::{Text, Value};
    ///
    /// let sig = Signature::new("echo_args", &[]).star_args().star_kwargs();
    /// let kwargs = [(Text::from("k"), Value::str("v"))];
    /// let bound = sig.bind("Sink", &[], &kwargs).unwrap();
    /// assert_eq!(bound.extra()[0].0.as_str(), "k");
    /// ```
    pub const fn star_kwargs(self) -> Self {
        Signature {
            star_kwargs: true,
            ..self
        }
    }

    /// The method's name (without `remote_`).
    ///
    /// ```
    /// use foolscap_app::Signature;
    ///
    /// assert_eq!(Signature::new("echo", &["x"]).method(), "echo");
    /// ```
    pub const fn method(&self) -> &'s str {
        self.method
    }

    /// The parameters' names in [`BoundArgs::get`]'s numbering: the
    /// positional ones, then the keyword-only ones.
    ///
    /// ```
    /// use foolscap_app::Signature;
    ///
    /// let sig = Signature::new("f", &["a", "b"]).keyword_only(&["c"]);
    /// assert_eq!(sig.parameters().collect::<Vec<_>>(), ["a", "b", "c"]);
    /// ```
    pub fn parameters(&self) -> impl Iterator<Item = &'s str> {
        self.params.iter().chain(self.keyword_only).copied()
    }

    /// Binds positional `args` and keyword `kwargs` (in the order they
    /// came) to this signature as Python 3 binds a call of
    /// `<class>.remote_<method>`, or fails with the `TypeError` CPython
    /// raises, word for word (as CPython 3.11, the interop tests' Python,
    /// words them; `self` counts among the positional arguments, as it
    /// does there). In CPython's order: the first keyword argument that
    /// names a parameter already given ("got multiple values for argument
    /// 'a'") or no parameter ("got an unexpected keyword argument 'z'"),
    /// then too many positional arguments, then missing positional
    /// arguments, then missing keyword-only arguments.
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::{Text, Value};
    ///
    /// const ADD: Signature = Signature::new("add", &["a", "b"]);
    /// let (args, kwargs) = ([Value::int(1)], [(Text::from("b"), Value::int(2))]);
    /// let bound = ADD.bind("Adder", &args, &kwargs).unwrap();
    /// assert_eq!((bound[0].as_i64(), bound["b"].as_i64()), (Some(1), Some(2)));
    ///
    /// let err = ADD.bind("Adder", &[Value::int(1)], &[]).unwrap_err();
    /// assert_eq!(err.type_name, "builtins.TypeError");
    /// assert_eq!(err.value, "Adder.remote_add() missing 1 required positional argument: 'b'");
    /// ```
    pub fn bind<'c>(
        &self,
        class: &str,
        args: &'c [Value],
        kwargs: &'c [(Text, Value)],
    ) -> Result<BoundArgs<'c>, Failure>
    where
        's: 'c,
    {
        // only a failure needs the text
        let qualname = || format!("{class}.remote_{}()", self.method);
        let n = self.params.len();
        let mut values: Vec<Option<&'c Value>> = vec![None; n + self.keyword_only.len()];
        let mut rest = Vec::new();
        for (i, v) in args.iter().enumerate() {
            if i < n {
                values[i] = Some(v);
            } else {
                rest.push(v);
            }
        }
        let mut extra = Vec::new();
        for (name, v) in kwargs {
            match self.parameters().position(|p| p == name.as_str()) {
                Some(i) if values[i].is_some() => {
                    return Err(type_error(format!(
                        "{} got multiple values for argument '{}'",
                        qualname(),
                        name.as_str()
                    )))
                }
                Some(i) => values[i] = Some(v),
                None if self.star_kwargs => extra.push((name, v)),
                None => {
                    return Err(type_error(format!(
                        "{} got an unexpected keyword argument '{}'",
                        qualname(),
                        name.as_str()
                    )))
                }
            }
        }
        if args.len() > n && !self.star_args {
            return Err(self.too_many_positional(&qualname(), args.len(), &values[n..]));
        }
        let missing: Vec<&str> = (args.len()..n - self.defaults)
            .filter(|&i| values[i].is_none())
            .map(|i| self.params[i])
            .collect();
        if !missing.is_empty() {
            return Err(missing_arguments(&qualname(), "positional", &missing));
        }
        let missing: Vec<&str> = self
            .keyword_only
            .iter()
            .zip(&values[n..])
            .filter(|(name, v)| v.is_none() && !self.keyword_defaults.contains(name))
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(missing_arguments(&qualname(), "keyword-only", &missing));
        }
        Ok(BoundArgs {
            params: self.params,
            keyword_only: self.keyword_only,
            values,
            rest,
            extra,
            scope: Scope::new(args.iter().chain(kwargs.iter().map(|(_, v)| v))),
        })
    }

    /// CPython's TypeError for `given` positional arguments (without
    /// `self`) to a method without `*args` that takes fewer.
    fn too_many_positional(
        &self,
        qualname: &str,
        given: usize,
        keyword_only: &[Option<&Value>],
    ) -> Failure {
        // CPython counts `self` in both numbers
        let (takes, given) = (self.params.len() + 1, given + 1);
        let (takes, plural) = if self.defaults > 0 {
            (format!("from {} to {takes}", takes - self.defaults), true)
        } else {
            (takes.to_string(), takes != 1)
        };
        let kw_given = keyword_only.iter().filter(|v| v.is_some()).count();
        let kw_note = if kw_given > 0 {
            format!(
                " positional argument{} (and {kw_given} keyword-only argument{})",
                s(given),
                s(kw_given)
            )
        } else {
            String::new()
        };
        type_error(format!(
            "{qualname} takes {takes} positional argument{} but {given}{kw_note} {} given",
            if plural { "s" } else { "" },
            if given == 1 && kw_given == 0 {
                "was"
            } else {
                "were"
            }
        ))
    }
}

/// "s" unless there is one.
fn s(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// CPython's TypeError for missing arguments of one `kind` ("positional"
/// or "keyword-only"): `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`.
fn missing_arguments(qualname: &str, kind: &str, names: &[&str]) -> Failure {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let list = match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., a, b] => format!("{}, {a}, and {b}", init.join(", ")),
        [] => unreachable!("something is missing"),
    };
    type_error(format!(
        "{qualname} missing {} required {kind} argument{}: {list}",
        names.len(),
        s(names.len())
    ))
}

fn type_error(message: String) -> Failure {
    Failure::new("builtins.TypeError", message)
}

/// A call's arguments bound to a method's parameters by
/// [`Signature::bind`] or [`crate::Call::bind`], borrowed from the call.
///
/// Parameters are numbered as [`Signature::parameters`] lists them;
/// [`BoundArgs::get`] and indexing (`bound[0]`, `bound["x"]`) give the
/// value resolved in the call's [`Scope`] (an alias followed to its
/// anchored value), [`BoundArgs::raw`] as it is in the message.
///
/// ```
/// use foolscap_app::Signature;
/// use foolscap_core::value::Value;
///
/// // f(x, x) with a shared list x
/// let x = Value::List(vec![Value::int(1)]);
/// let args = [Value::Anchor(1, Box::new(x.clone())), Value::Alias(1)];
/// let bound = Signature::new("f", &["a", "b"]).bind("K", &args, &[]).unwrap();
/// assert_eq!(bound[0].as_seq(), x.as_seq());
/// assert_eq!(bound[1].as_seq(), x.as_seq());
/// assert_eq!(bound.raw(1), Some(&Value::Alias(1)));
/// ```
#[derive(Debug, Clone)]
pub struct BoundArgs<'c> {
    /// The parameters' names, positional then keyword-only.
    params: &'c [&'c str],
    keyword_only: &'c [&'c str],
    values: Vec<Option<&'c Value>>,
    rest: Vec<&'c Value>,
    extra: Vec<(&'c Text, &'c Value)>,
    scope: Scope<'c>,
}

impl<'c> BoundArgs<'c> {
    /// Parameter `i`, resolved: `None` for one with a default that was
    /// not passed (the method's default applies) or past the last.
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::Value;
    ///
    /// let sig = Signature::new("make_counter", &["start"]).defaults(1);
    /// let bound = sig.bind("Sink", &[], &[]).unwrap();
    /// assert_eq!(bound.get(0).and_then(Value::as_i64).unwrap_or(0), 0);
    /// let args = [Value::int(5)];
    /// let bound = sig.bind("Sink", &args, &[]).unwrap();
    /// assert_eq!(bound.get(0).and_then(Value::as_i64), Some(5));
    /// ```
    pub fn get(&self, i: usize) -> Option<&'c Value> {
        self.raw(i).map(|v| self.scope.resolve(v))
    }

    /// The parameter called `name`, resolved (see [`BoundArgs::get`]).
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::Value;
    ///
    /// let args = [Value::int(1), Value::int(2)];
    /// let bound = Signature::new("add", &["a", "b"]).bind("K", &args, &[]).unwrap();
    /// assert_eq!(bound.named("b"), Some(&Value::int(2)));
    /// assert_eq!(bound.named("c"), None);
    /// ```
    pub fn named(&self, name: &str) -> Option<&'c Value> {
        let i = self
            .params
            .iter()
            .chain(self.keyword_only)
            .position(|n| *n == name)?;
        self.get(i)
    }

    /// Parameter `i` as it is in the message: a shared container is a
    /// [`Value::Anchor`] or a [`Value::Alias`] there (what tells whether
    /// two arguments are the same object).
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::Value;
    ///
    /// let args = [Value::Anchor(2, Box::new(Value::List(vec![]))), Value::Alias(2)];
    /// let bound = Signature::new("is_same", &["a", "b"]).bind("K", &args, &[]).unwrap();
    /// assert!(matches!(bound.raw(0), Some(Value::Anchor(2, _))));
    /// assert_eq!(bound.raw(1), Some(&Value::Alias(2)));
    /// ```
    pub fn raw(&self, i: usize) -> Option<&'c Value> {
        self.values.get(i).copied().flatten()
    }

    /// What `*args` collected, as in the message (resolve them with
    /// [`BoundArgs::scope`], or pass them on with [`Scope::detach_all`]).
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::Value;
    ///
    /// let args = [Value::int(1), Value::int(2)];
    /// let bound = Signature::new("f", &["a"]).star_args().bind("K", &args, &[]).unwrap();
    /// assert_eq!(bound.rest(), [&Value::int(2)]);
    /// ```
    pub fn rest(&self) -> &[&'c Value] {
        &self.rest
    }

    /// What `**kwargs` collected, in the order the call sent them, values
    /// as in the message.
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::{Text, Value};
    ///
    /// let kwargs = [(Text::from("a"), Value::int(1)), (Text::from("z"), Value::int(2))];
    /// let bound = Signature::new("f", &["a"]).star_kwargs().bind("K", &[], &kwargs).unwrap();
    /// assert_eq!(bound.extra(), [(&Text::from("z"), &Value::int(2))]);
    /// ```
    pub fn extra(&self) -> &[(&'c Text, &'c Value)] {
        &self.extra
    }

    /// The call's sharing scope (all its arguments): to resolve the
    /// values of [`BoundArgs::rest`] and [`BoundArgs::extra`], or to
    /// [`Scope::detach`] an argument to keep or send on.
    ///
    /// ```
    /// use foolscap_app::Signature;
    /// use foolscap_core::value::Value;
    ///
    /// let x = Value::List(vec![Value::int(1)]);
    /// let args = [Value::Anchor(3, Box::new(x.clone())), Value::Alias(3)];
    /// let bound = Signature::new("f", &["a"]).star_args().bind("K", &args, &[]).unwrap();
    /// assert_eq!(bound.scope().resolve(bound.rest()[0]), &x);
    /// assert_eq!(bound.scope().detach(bound.rest()[0]), x);
    /// ```
    pub fn scope(&self) -> &Scope<'c> {
        &self.scope
    }
}

/// `bound[i]`: [`BoundArgs::get`] for a parameter the binding guarantees
/// (a required one).
///
/// # Panics
/// If parameter `i` has a default and was not passed, or does not exist.
impl std::ops::Index<usize> for BoundArgs<'_> {
    type Output = Value;

    fn index(&self, i: usize) -> &Value {
        match self.get(i) {
            Some(v) => v,
            None => panic!("parameter {i} was not passed (it has a default: use get)"),
        }
    }
}

/// `bound["name"]`: [`BoundArgs::named`] for a parameter the binding
/// guarantees (a required one).
///
/// # Panics
/// If the parameter has a default and was not passed, or does not exist.
impl std::ops::Index<&str> for BoundArgs<'_> {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        match self.named(name) {
            Some(v) => v,
            None => panic!("parameter '{name}' was not passed (or has a default: use named)"),
        }
    }
}

#[cfg(test)]
mod tests;
