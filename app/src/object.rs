//! The application side of incoming calls: [`Object`] and the [`Call`]
//! handle that answers them.

use foolscap_core::broker::Failure;
use foolscap_core::id::{IncomingId, ObjectId};
use foolscap_core::identity::TubId;
use foolscap_core::schema::InterfaceSchema;
use foolscap_core::value::{Text, Value};
use std::sync::Arc;

use crate::{BoundArgs, Scope, Signature, Tub};

/// A remotely callable object (Python's `Referenceable`).
///
/// [`Object::call`] runs on a thread of the engine (a connection's
/// reader thread or the timer thread on the threads engine, the loop's
/// thread on an event loop), so it must not block: answer at once with
/// [`Call::reply`], or keep the [`Call`] (it is `Send`) and answer later,
/// for instance from the callback of [`Tub::call_async`], a
/// [`Tub::after`] timer, or a thread of the application's own that does
/// slow work.
///
/// # Order
///
/// The calls that arrive on one connection (one peer Tub) reach objects
/// in the order they were sent, one at a time, on every engine: the next
/// call starts only after `call` returned for the one before (whether it
/// answered or kept its [`Call`] to answer later), so its effects come
/// first, as with Python's reactor. Answerless calls
/// (`callRemoteOnly`, [`Tub::call_only`]) and calls with answers are one
/// sequence. A `call` that waits in a blocking call of the handle
/// ([`Tub::call`], on the threads engine) lets the next calls of its
/// connection start meanwhile, as a Python method that returns a
/// Deferred does. Calls of different connections may run at the same
/// time (on different threads of the threads engine), and so may local
/// calls ([`Tub::call_async`] on a [`Value::Local`]) beside them.
pub trait Object: Send + Sync + 'static {
    /// Handles one call. Every call must be answered once; a [`Call`]
    /// dropped unanswered answers with a failure.
    fn call(&self, call: Call);

    /// The class name used in error messages (Python's class name).
    fn class_name(&self) -> &str {
        "Referenceable"
    }

    /// The RemoteInterface name sent with the first reference (`""`: none).
    /// An object with a [`Object::schema`] announces the schema's name.
    fn interface(&self) -> &str {
        ""
    }

    /// The RemoteInterface this object implements, if it declares one:
    /// calls to it are checked against the schema as a Python receiver
    /// checks them (docs/protocol.md §6.5), and its name is announced.
    fn schema(&self) -> Option<Arc<InterfaceSchema>> {
        None
    }
}

/// One incoming call: what was asked and how to answer.
pub struct Call {
    pub(crate) tub: Tub,
    pub(crate) id: IncomingId,
    pub(crate) object: ObjectId,
    pub(crate) caller: TubId,
    /// The method name.
    pub method: Text,
    /// Positional arguments ([`Value::Remote`] for the caller's objects,
    /// [`Value::Local`] for ours come home).
    pub args: Vec<Value>,
    /// Keyword arguments in wire order.
    pub kwargs: Vec<(Text, Value)>,
    pub(crate) answered: bool,
    /// Where the answer goes when the call came from this Tub itself (a
    /// reference come home, [`Tub::call_async`] on a [`Value::Local`]).
    pub(crate) local: Option<crate::tub::AnswerFn>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.id)
            .field("object", &self.object)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// The Tub the call arrived at.
    pub fn tub(&self) -> &Tub {
        &self.tub
    }

    /// The object called.
    pub fn object(&self) -> ObjectId {
        self.object
    }

    /// The calling Tub.
    pub fn caller(&self) -> TubId {
        self.caller
    }

    /// Whether the caller wants an answer (not `callRemoteOnly`).
    pub fn wants_answer(&self) -> bool {
        self.id.wants_answer()
    }

    /// The argument named `name`, or else the positional argument `pos`,
    /// resolved ([`Call::resolve`]): for `f(x, x)` the second argument,
    /// an alias of the first in the message, reads like the first.
    ///
    /// This is a quick look that knows nothing of the method's signature;
    /// [`Call::bind`] binds the arguments as Python does, with Python's
    /// errors.
    ///
    /// ```
    /// use foolscap_app::{Call, Object};
    /// use foolscap_core::value::Value;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use foolscap_app::Tub;
    /// # use foolscap_core::value::RemoteRef;
    /// # const T: Duration = Duration::from_secs(30);
    /// # /// A server with `object`, a client, and the client's reference to it.
    /// # fn connect(object: impl Object) -> (Tub, Tub, RemoteRef) {
    /// #     let server = foolscap_threads::new_tub().unwrap();
    /// #     server.listen("127.0.0.1:0").unwrap();
    /// #     let furl = server.register(Arc::new(object), None).unwrap();
    /// #     let client = foolscap_threads::new_tub().unwrap();
    /// #     let r = client.get_reference(&furl.to_string(), T).unwrap();
    /// #     let r = foolscap_app::as_remote(&r).unwrap().clone();
    /// #     (server, client, r)
    /// # }
    ///
    /// struct Sum;
    ///
    /// impl Object for Sum {
    ///     // remote_sum(self, a, b): the total of two lists of ints
    ///     fn call(&self, call: Call) {
    ///         let total = |v: Option<&Value>| -> i64 {
    ///             v.and_then(Value::as_seq)
    ///                 .map(|items| items.iter().filter_map(Value::as_i64).sum())
    ///                 .unwrap_or(0)
    ///         };
    ///         let sum = total(call.arg(0, "a")) + total(call.arg(1, "b"));
    ///         call.answer(Value::int(sum))
    ///     }
    /// }
    ///
    /// let (_server, client, sum) = connect(Sum);
    /// // sum(x, x) with x = [1, 2]: one list, sent once
    /// let x = Value::List(vec![Value::int(1), Value::int(2)]);
    /// let args = [Value::Anchor(1, Box::new(x)), Value::Alias(1)];
    /// assert_eq!(client.call(&sum, "sum", &args, &[], T).unwrap(), Value::int(6));
    /// ```
    pub fn arg(&self, pos: usize, name: &str) -> Option<&Value> {
        self.kwargs
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(pos))
            .map(|v| self.resolve(v))
    }

    /// The sharing scope of the call's message: every positional and
    /// keyword argument. Build it once to resolve or detach many values
    /// ([`Call::resolve`] and [`Call::detach`] build what they need each
    /// time).
    ///
    /// ```
    /// use foolscap_app::{Call, Object};
    /// use foolscap_core::value::{Text, Value};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use foolscap_app::Tub;
    /// # use foolscap_core::value::RemoteRef;
    /// # const T: Duration = Duration::from_secs(30);
    /// # /// A server with `object`, a client, and the client's reference to it.
    /// # fn connect(object: impl Object) -> (Tub, Tub, RemoteRef) {
    /// #     let server = foolscap_threads::new_tub().unwrap();
    /// #     server.listen("127.0.0.1:0").unwrap();
    /// #     let furl = server.register(Arc::new(object), None).unwrap();
    /// #     let client = foolscap_threads::new_tub().unwrap();
    /// #     let r = client.get_reference(&furl.to_string(), T).unwrap();
    /// #     let r = foolscap_app::as_remote(&r).unwrap().clone();
    /// #     (server, client, r)
    /// # }
    ///
    /// /// remote_lengths(self, *args, **kwargs): the length of each argument
    /// struct Lengths;
    ///
    /// impl Object for Lengths {
    ///     fn call(&self, call: Call) {
    ///         let scope = call.scope();
    ///         let all = call.args.iter().chain(call.kwargs.iter().map(|(_, v)| v));
    ///         let lengths = all
    ///             .map(|a| Value::int(scope.resolve(a).as_seq().map_or(-1, |s| s.len() as i64)))
    ///             .collect();
    ///         call.answer(Value::List(lengths))
    ///     }
    /// }
    ///
    /// let (_server, client, lengths) = connect(Lengths);
    /// // lengths(x, 5, k=x) with x = (1, 2, 3)
    /// let x = Value::Tuple(vec![Value::int(1), Value::int(2), Value::int(3)]);
    /// let args = [Value::Anchor(1, Box::new(x)), Value::int(5)];
    /// let kwargs = [(Text::from("k"), Value::Alias(1))];
    /// assert_eq!(
    ///     client.call(&lengths, "lengths", &args, &kwargs, T).unwrap(),
    ///     Value::List(vec![Value::int(3), Value::int(-1), Value::int(3)])
    /// );
    /// ```
    pub fn scope(&self) -> Scope<'_> {
        Scope::new(self.args.iter().chain(self.kwargs.iter().map(|(_, v)| v)))
    }

    /// The value `v` stands for in this call's message (see
    /// [`Scope::resolve`]): an alias is followed to the argument part
    /// anchored under its id, an anchor is looked through.
    ///
    /// ```
    /// use foolscap_app::{Call, Object};
    /// use foolscap_core::value::Value;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use foolscap_app::Tub;
    /// # use foolscap_core::value::RemoteRef;
    /// # const T: Duration = Duration::from_secs(30);
    /// # /// A server with `object`, a client, and the client's reference to it.
    /// # fn connect(object: impl Object) -> (Tub, Tub, RemoteRef) {
    /// #     let server = foolscap_threads::new_tub().unwrap();
    /// #     server.listen("127.0.0.1:0").unwrap();
    /// #     let furl = server.register(Arc::new(object), None).unwrap();
    /// #     let client = foolscap_threads::new_tub().unwrap();
    /// #     let r = client.get_reference(&furl.to_string(), T).unwrap();
    /// #     let r = foolscap_app::as_remote(&r).unwrap().clone();
    /// #     (server, client, r)
    /// # }
    ///
    /// /// remote_second_is_a_pair(self, *args)
    /// struct Second;
    ///
    /// impl Object for Second {
    ///     fn call(&self, call: Call) {
    ///         let second = call.args.get(1).map(|v| call.resolve(v));
    ///         let pair = second.and_then(Value::as_seq).map(|s| s.len()) == Some(2);
    ///         call.answer(Value::Bool(pair))
    ///     }
    /// }
    ///
    /// let (_server, client, second) = connect(Second);
    /// let x = Value::List(vec![Value::None, Value::None]);
    /// let args = [Value::Anchor(1, Box::new(x)), Value::Alias(1)];
    /// let answer = client.call(&second, "second_is_a_pair", &args, &[], T).unwrap();
    /// assert_eq!(answer, Value::Bool(true));
    /// ```
    pub fn resolve<'c>(&'c self, v: &'c Value) -> &'c Value {
        match v {
            Value::Anchor(_, inner) => inner,
            Value::Alias(id) => {
                let message = self.args.iter().chain(self.kwargs.iter().map(|(_, v)| v));
                crate::sharing::find_anchor(message, *id).unwrap_or(v)
            }
            v => v,
        }
    }

    /// A self-contained copy of `v`, a value of this call (an argument, a
    /// part of one, or something built from them), to keep or to send in
    /// another message (see [`Scope::detach`]). `v` may be resolved or
    /// not.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use foolscap_app::{Call, Object};
    /// use foolscap_core::value::Value;
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use foolscap_app::Tub;
    /// # use foolscap_core::value::RemoteRef;
    /// # const T: Duration = Duration::from_secs(30);
    /// # /// A server with `object`, a client, and the client's reference to it.
    /// # fn connect(object: impl Object) -> (Tub, Tub, RemoteRef) {
    /// #     let server = foolscap_threads::new_tub().unwrap();
    /// #     server.listen("127.0.0.1:0").unwrap();
    /// #     let furl = server.register(Arc::new(object), None).unwrap();
    /// #     let client = foolscap_threads::new_tub().unwrap();
    /// #     let r = client.get_reference(&furl.to_string(), T).unwrap();
    /// #     let r = foolscap_app::as_remote(&r).unwrap().clone();
    /// #     (server, client, r)
    /// # }
    ///
    /// /// remote_set(self, x) keeps x; remote_get(self) returns it.
    /// struct Cell(Mutex<Value>);
    ///
    /// impl Object for Cell {
    ///     fn call(&self, call: Call) {
    ///         let mut kept = self.0.lock().unwrap();
    ///         match (call.method.as_str(), call.arg(0, "x")) {
    ///             ("set", Some(x)) => {
    ///                 *kept = call.detach(x);
    ///                 drop(kept);
    ///                 call.answer(Value::None)
    ///             }
    ///             _ => {
    ///                 let value = kept.clone();
    ///                 drop(kept);
    ///                 call.answer(value)
    ///             }
    ///         }
    ///     }
    /// }
    ///
    /// let (_server, client, cell) = connect(Cell(Mutex::new(Value::None)));
    /// // set(y) with y = [y], then get() in another call
    /// let y = Value::Anchor(1, Box::new(Value::List(vec![Value::Alias(1)])));
    /// client.call(&cell, "set", &[y], &[], T).unwrap();
    /// let kept = client.call(&cell, "get", &[], &[], T).unwrap();
    /// let Value::Anchor(id, inner) = &kept else { panic!("{kept:?}") };
    /// assert_eq!(inner.as_seq(), Some(&[Value::Alias(*id)][..]));
    /// ```
    pub fn detach(&self, v: &Value) -> Value {
        self.scope().detach(v)
    }

    /// Binds the call's arguments to the signature of
    /// `<class>.remote_<method>` as Python 3 does, or fails with Python's
    /// `TypeError` (see [`Signature::bind`]); answer with that failure as
    /// it is.
    ///
    /// ```
    /// use foolscap_app::{Call, Object, Signature};
    /// use foolscap_core::value::{Text, Value};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use foolscap_app::Tub;
    /// # use foolscap_core::value::RemoteRef;
    /// # const T: Duration = Duration::from_secs(30);
    /// # /// A server with `object`, a client, and the client's reference to it.
    /// # fn connect(object: impl Object) -> (Tub, Tub, RemoteRef) {
    /// #     let server = foolscap_threads::new_tub().unwrap();
    /// #     server.listen("127.0.0.1:0").unwrap();
    /// #     let furl = server.register(Arc::new(object), None).unwrap();
    /// #     let client = foolscap_threads::new_tub().unwrap();
    /// #     let r = client.get_reference(&furl.to_string(), T).unwrap();
    /// #     let r = foolscap_app::as_remote(&r).unwrap().clone();
    /// #     (server, client, r)
    /// # }
    ///
    /// /// class Adder: def remote_add(self, a, b=1)
    /// struct Adder;
    ///
    /// const ADD: Signature = Signature::new("add", &["a", "b"]).defaults(1);
    ///
    /// impl Object for Adder {
    ///     fn class_name(&self) -> &str {
    ///         "Adder"
    ///     }
    ///
    ///     fn call(&self, call: Call) {
    ///         if call.method.as_str() != ADD.method() {
    ///             return call.no_such_method("Adder");
    ///         }
    ///         let result = call.bind("Adder", &ADD).map(|args| {
    ///             let a = args[0].as_i64().unwrap_or(0);
    ///             let b = args.get(1).map_or(Some(1), Value::as_i64).unwrap_or(0);
    ///             Value::int(a + b)
    ///         });
    ///         call.reply(result)
    ///     }
    /// }
    ///
    /// let (_server, client, adder) = connect(Adder);
    /// let add = |args: &[Value], kwargs: &[(Text, Value)]| client.call(&adder, "add", args, kwargs, T);
    /// assert_eq!(add(&[Value::int(2)], &[]).unwrap(), Value::int(3));
    /// assert_eq!(add(&[], &[(Text::from("a"), Value::int(2)), (Text::from("b"), Value::int(5))]).unwrap(), Value::int(7));
    /// let err = add(&[Value::int(1), Value::int(2), Value::int(3)], &[]).unwrap_err();
    /// let failure = err.failure().unwrap();
    /// assert!(failure.check("builtins.TypeError"));
    /// assert_eq!(failure.value, "Adder.remote_add() takes from 2 to 3 positional arguments but 4 were given");
    /// ```
    pub fn bind<'c>(
        &'c self,
        class: &str,
        signature: &Signature<'c>,
    ) -> Result<BoundArgs<'c>, Failure> {
        signature.bind(class, &self.args, &self.kwargs)
    }

    /// Answers with a value or a failure.
    pub fn reply(mut self, result: Result<Value, Failure>) {
        self.answered = true;
        if let Some(done) = self.local.take() {
            return self.tub.answer_local(done, result);
        }
        if let Err(f) = &result {
            // logLocalFailures (the Tub's lock is not held here)
            if let Some(logger) = self.tub.local_failure_logger() {
                crate::logging::local_failure(
                    &logger,
                    &self.tub.tubid(),
                    &self.caller,
                    self.id.req_id,
                    self.object.0,
                    self.method.as_str(),
                    &self.args,
                    &self.kwargs,
                    f,
                );
            }
        }
        // a connection that closed meanwhile has nobody to answer
        let _ = self.tub.answer(self.id, result);
    }

    /// Answers with what `work` resolves to, when it does: the object's
    /// method returns at once and is in effect an `async fn`. The engine
    /// runs `work` ([`Driver::spawn`](crate::driven::Driver::spawn): on
    /// tokio a task of its runtime, on the other engines a thread of its
    /// own). If `work` panics or is dropped unfinished, the call is
    /// answered with a failure, as an unanswered [`Call`] is.
    pub fn answer_future<F>(self, work: F)
    where
        F: std::future::Future<Output = Result<Value, Failure>> + Send + 'static,
    {
        let driver = self.tub.driver();
        driver.spawn(Box::pin(async move {
            let result = work.await;
            self.reply(result)
        }))
    }

    /// Answers with a value.
    pub fn answer(self, value: Value) {
        self.reply(Ok(value))
    }

    /// Answers with a failure.
    pub fn fail(self, failure: Failure) {
        self.reply(Err(failure))
    }

    /// Fails with Python's error for a method the object does not have.
    pub fn no_such_method(self, class: &str) {
        let f = Failure::no_such_method(class, self.method.as_str());
        self.fail(f)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            let f = Failure::new(
                "builtins.RuntimeError",
                format!("{} was never answered", self.method.as_str()),
            );
            match self.local.take() {
                Some(done) => self.tub.answer_local(done, Err(f)),
                None => {
                    let _ = self.tub.answer(self.id, Err(f));
                }
            }
        }
    }
}
