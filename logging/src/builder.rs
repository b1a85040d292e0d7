//! A Rust face on [`Logger::msg`]: a builder and the [`flog!`](crate::flog) macro.
//!
//! ```
//! use foolscap_logging::{flog, level, Logger};
//! let logger = Logger::new();
//! let parent = logger.event("connecting to %s").arg("example.org").facility("app.net").log();
//! logger
//!     .format("%(n)d items in %(where)s")
//!     .field("n", 2)
//!     .field("where", "box")
//!     .level(level::UNUSUAL)
//!     .parent(parent)
//!     .log();
//! flog!(logger, "plain text");
//! flog!(logger, "%s of %d", "part", 3; level = level::WEIRD, facility = "app", size = 10);
//! # assert_eq!(logger.history().len(), 4);
//! ```

use crate::logger::Logger;
use crate::value::{Dict, Failure, Value};

/// An event being put together; [`EventBuilder::log`] hands it to the
/// logger and gives its number.
#[must_use = "nothing is logged until .log() is called"]
pub struct EventBuilder {
    logger: Logger,
    fields: Dict,
    message: Option<String>,
    args: Vec<Value>,
}

impl Logger {
    /// An event with `message` (`%`-formatted against its [`args`] if any
    /// are added, else kept as it is).
    ///
    /// [`args`]: EventBuilder::arg
    pub fn event(&self, message: impl Into<String>) -> EventBuilder {
        EventBuilder {
            logger: self.clone(),
            fields: Dict::new(),
            message: Some(message.into()),
            args: Vec::new(),
        }
    }
    /// An event with a `format` (`format % event`: `%(key)s` names other
    /// fields).
    pub fn format(&self, format: impl Into<String>) -> EventBuilder {
        let mut fields = Dict::new();
        fields.insert("format", format.into());
        EventBuilder {
            logger: self.clone(),
            fields,
            message: None,
            args: Vec::new(),
        }
    }
    /// Python's `log.err(failure)` for a Rust error: `failure` is made
    /// from `err` (its type name, its text and its chain of sources),
    /// `why` as given, `isError=1`, message `""`. Add fields (level,
    /// facility, …) to the builder before `.log()`.
    pub fn error<E: std::error::Error + 'static>(
        &self,
        err: &E,
        why: Option<&str>,
    ) -> EventBuilder {
        let f = Failure::from_error(std::any::type_name::<E>(), err);
        let mut fields = Dict::new();
        fields.insert("failure", f);
        fields.insert("why", why.map(Value::from).unwrap_or(Value::None));
        fields.insert("isError", 1i64);
        EventBuilder {
            logger: self.clone(),
            fields,
            message: None,
            args: Vec::new(),
        }
    }
}

impl EventBuilder {
    /// The severity (default OPERATIONAL, 20).
    pub fn level(self, level: i64) -> EventBuilder {
        self.field("level", level)
    }
    /// The facility (a dotted name such as `app.net`).
    pub fn facility(self, facility: impl Into<String>) -> EventBuilder {
        self.field("facility", facility.into())
    }
    /// The number of the parent event.
    pub fn parent(self, parent: u64) -> EventBuilder {
        self.field("parent", parent)
    }
    /// Add a positional argument for `message % args`.
    pub fn arg(mut self, v: impl Into<Value>) -> EventBuilder {
        self.args.push(v.into());
        self
    }
    /// Set all positional arguments at once.
    pub fn args(mut self, args: Vec<Value>) -> EventBuilder {
        self.args = args;
        self
    }
    /// Attach a failure (Python's `failure=`).
    pub fn failure(self, f: Failure) -> EventBuilder {
        self.field("failure", f)
    }
    /// Any other field.
    pub fn field(mut self, key: impl Into<String>, v: impl Into<Value>) -> EventBuilder {
        self.fields.insert(key, v);
        self
    }
    /// The fields as [`Logger::msg`] would take them (message and args
    /// as keyword arguments).
    pub fn into_fields(mut self) -> Dict {
        if let Some(m) = self.message.take() {
            self.fields.insert("message", m);
            if !self.args.is_empty() {
                self.fields.insert("args", Value::Tuple(self.args));
            }
        }
        self.fields
    }
    /// Log the event; its number (for `parent`). The message and its
    /// arguments are passed as Python's positional arguments.
    pub fn log(self) -> u64 {
        let positional = self.message.map(|m| (m, self.args));
        self.logger.msg_positional(self.fields, positional)
    }
}

/// Log one event: `flog!(logger, "message %s", args…; key = value, …)`.
///
/// The message is `%`-formatted against the arguments when there are some
/// (Python's `log.msg("text %s", x)`); `key = value` pairs become fields
/// (`level`, `facility`, `parent` or anything else). Gives the event's
/// number.
#[macro_export]
macro_rules! flog {
    ($logger:expr, $msg:expr $(, $arg:expr)* $(,)? $(; $($key:ident = $val:expr),* $(,)?)?) => {{
        #[allow(unused_mut)]
        let mut b = $crate::Logger::event(&$logger, $msg);
        $( b = b.arg($arg); )*
        $($( b = b.field(stringify!($key), $val); )*)?
        b.log()
    }};
}
