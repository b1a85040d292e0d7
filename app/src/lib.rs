//! The application's face of foolscap-rs: the [`Tub`] handle, remotely
//! callable [`Object`]s and the [`Call`]s they answer, and the one
//! [`Driver`] seam every engine implements.
//!
//! A Tub is made by an engine: `foolscap_threads` (blocking `std::net`,
//! threads per connection), `foolscap_mio` (one event-loop thread for many
//! Tubs), or any other through [`Tub::with_driver`]. The handle is the
//! same whichever engine carries it: cheap to clone, `Send + Sync`.
//!
//! ```
//! use std::sync::Arc;
//! use foolscap_app::{Call, Object};
//! use foolscap_core::value::Value;
//!
//! /// Python's `class Adder(Referenceable): def remote_add(self, a, b)`.
//! struct Adder;
//!
//! impl Object for Adder {
//!     fn call(&self, call: Call) {
//!         match call.method.as_str() {
//!             "add" => {
//!                 let a = call.arg(0, "a").and_then(Value::as_i64).unwrap_or(0);
//!                 let b = call.arg(1, "b").and_then(Value::as_i64).unwrap_or(0);
//!                 call.answer(Value::int(a + b)) // or keep `call` and answer later
//!             }
//!             _ => call.no_such_method("Adder"),
//!         }
//!     }
//! }
//! let _adder: Arc<dyn Object> = Arc::new(Adder);
//! ```
//!
//! Arguments arrive as Python sent them. [`Call::bind`] binds them to a
//! method's [`Signature`] with Python's rules and `TypeError`s. A container
//! passed twice in one call (`f(x, x)`) arrives once, the later
//! occurrences as [`Value::Alias`]es: [`Call::arg`] and [`BoundArgs`]
//! resolve them, and [`Call::detach`] copies a value out of its call so
//! that it can be kept or sent in another message (see [`sharing`]).
//!
//! Objects run on an engine's thread and must not block: answer at once,
//! or keep the [`Call`] (it is `Send`) and answer later, for instance from
//! the callback of [`Tub::call_async`] or a [`Tub::after`] timer. Slow
//! work belongs on a thread of the application's own, which answers the
//! kept `Call` when it is done. Blocking waits ([`Tub::call`],
//! [`Tub::get_reference`]) are for application threads.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// the typed interfaces of `logport` name the runtime as `foolscap_app`
extern crate self as foolscap_app;

mod args;
mod driven;
mod error;
mod log_gatherer;
mod logging;
pub mod logport;
mod object;
mod reconnect;
pub mod sharing;
mod tub;
pub mod typed;

pub use args::{BoundArgs, Signature};
pub use driven::{AnswerWork, DrivenTub, Driver, DriverIo, Flushed};
pub use error::Error;
pub use foolscap_core::tub::{PendingCalls, TransportError, TubConfig};
pub use object::{Call, Object};
pub use reconnect::{Backoff, ReconnectState, ReconnectionInfo, Reconnector};
pub use sharing::Scope;
pub use tub::{Callable, NameLookupResult, Target, Tub};
pub use typed::Copyable;

#[doc(inline)]
pub use foolscap_macros::remote_interface;

use foolscap_core::identity::Identity;
use foolscap_core::value::{RemoteRef, Value};

/// The identity in a certFile, or a new one written there if the file is
/// missing (like Python's `Tub(certFile=...)`).
pub fn load_or_create_identity(path: impl AsRef<std::path::Path>) -> Result<Identity, Error> {
    let path = path.as_ref();
    match std::fs::read(path) {
        Ok(text) => Ok(Identity::from_cert_file(text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate()?;
            std::fs::write(path, id.to_cert_file())?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

/// The remote reference inside a value, if it is one.
pub fn as_remote(v: &Value) -> Option<&RemoteRef> {
    match v.unanchored() {
        Value::Remote(r) => Some(r),
        _ => None,
    }
}
