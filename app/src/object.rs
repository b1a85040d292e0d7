//! The application side of incoming calls: [`Object`] and the [`Call`]
//! handle that answers them.

use foolscap_core::broker::Failure;
use foolscap_core::id::{IncomingId, ObjectId};
use foolscap_core::identity::TubId;
use foolscap_core::value::{Text, Value};

use crate::Tub;

/// A remotely callable object (Python's `Referenceable`).
///
/// [`Object::call`] runs on a thread of the engine (a connection's
/// reader thread or the timer thread on the threads engine, the loop's
/// thread on an event loop), so it must not block: answer at once with
/// [`Call::reply`], or keep the [`Call`] (it is `Send`) and answer later,
/// for instance from the callback of [`Tub::call_async`], a
/// [`Tub::after`] timer, or a thread of the application's own that does
/// slow work.
pub trait Object: Send + Sync + 'static {
    /// Handles one call. Every call must be answered once; a [`Call`]
    /// dropped unanswered answers with a failure.
    fn call(&self, call: Call);

    /// The class name used in error messages (Python's class name).
    fn class_name(&self) -> &str {
        "Referenceable"
    }

    /// The RemoteInterface name sent with the first reference (`""`: none).
    fn interface(&self) -> &str {
        ""
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

    /// The argument named `name`, or else the positional argument `pos`.
    pub fn arg(&self, pos: usize, name: &str) -> Option<&Value> {
        self.kwargs
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(pos))
    }

    /// Answers with a value or a failure.
    pub fn reply(mut self, result: Result<Value, Failure>) {
        self.answered = true;
        // a connection that closed meanwhile has nobody to answer
        let _ = self.tub.answer(self.id, result);
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
            let _ = self.tub.answer(self.id, Err(f));
        }
    }
}
