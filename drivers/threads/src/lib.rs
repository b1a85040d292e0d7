//! The threads engine: blocking `std::net` sockets, an accept thread per
//! listener, a reader thread per connection that speaks (and a writer
//! thread while a connection has bytes the kernel would not take), a
//! thread per outbound dial (host names are resolved there), one watcher
//! thread for accepted sockets that have not spoken yet, and one engine
//! thread per Tub for timers and for events nobody's input produced.
//!
//! ```no_run
//! # fn main() -> Result<(), foolscap_app::Error> {
//! let tub = foolscap_threads::new_tub()?;
//! tub.listen("127.0.0.1:0")?;
//! // tub.register(object, None)?; tub.call(...) from any thread
//! # Ok(()) }
//! ```
//!
//! Where application code runs: objects and callbacks run on the reader
//! thread of the connection whose input produced them, or on the Tub's
//! engine thread (timers, answers to lookups of our own FURLs, calls
//! released by flow control), or on whichever of them drives the Tub
//! first; never on an application thread. An application thread that
//! calls into the Tub only moves the bytes its call produced to the
//! socket (or, when the kernel would make it wait, to the connection's
//! writer thread).
//!
//! Order: several of these threads may drive the Tub at once, yet the
//! calls of one connection reach objects in arrival order, one at a time
//! (each after the one before returned), as on the other engines and in
//! Python. The drive that runs a connection's call runs the calls of that
//! connection that arrive meanwhile, after it; other drives leave them to
//! it, and the connection's reader does not read while some wait (it is
//! woken when they have started). Calls of different connections run side
//! by side. An object that waits in [`Tub::call`] lets its connection's
//! next calls start meanwhile (see `foolscap_app::Object`).
//!
//! Resources: an accepted socket waits for its first byte on one watcher
//! thread (a `mio` poller) shared by all, so an idle or half-open
//! connection costs its socket and the core's state, no thread. Its
//! reader thread starts with its first byte, with a read buffer of 1 KiB
//! that doubles while reads fill it. Bytes to send go to the socket from
//! the thread that produced them with a send that does not wait; what the
//! kernel does not take at once goes to the connection's writer thread,
//! which starts then (so a connection whose sends never wait has no
//! writer thread, and a message costs no thread hand-off), and later bytes
//! queue behind it until it has written all it holds.
//! [`ThreadsConfig::max_threads`] bounds the threads
//! of all connections and dials: a connection that needs a thread past
//! it is closed (a dial fails). Objects run with
//! [`ThreadsConfig::stack_size`] of stack (2 MiB by default).
//!
//! Flow control is the core's (`TubConfig::max_buffered_output`,
//! `calls_per_round`, `max_unanswered_calls`): each writer thread counts
//! the bytes queued for it and reports them (bytes the kernel took at
//! once were never queued); while the core says not to
//! read a connection, its reader thread waits for the writer to drain or
//! for answers (or for calls of its connection waiting for an earlier one
//! to start), and does not read.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod engine;

use foolscap_app::{load_or_create_identity, Error, Tub, TubConfig};
use foolscap_core::identity::Identity;

pub use engine::{ThreadsConfig, TooManyThreads, CONNECT_TIMEOUT};

/// A Tub with a new identity and the default settings, carried by its
/// own threads.
pub fn new_tub() -> Result<Tub, Error> {
    tub(Identity::generate()?, TubConfig::default())
}

/// A Tub with the identity in a certFile (created there if missing, like
/// Python's `Tub(certFile=...)`).
pub fn tub_with_cert_file(path: impl AsRef<std::path::Path>) -> Result<Tub, Error> {
    tub(load_or_create_identity(path)?, TubConfig::default())
}

/// A Tub with a given identity and settings, carried by its own threads.
pub fn tub(identity: Identity, config: TubConfig) -> Result<Tub, Error> {
    tub_with(identity, config, ThreadsConfig::default())
}

/// A Tub with a given identity, settings and engine settings (threads,
/// stacks, read buffers), carried by its own threads.
pub fn tub_with(
    identity: Identity,
    config: TubConfig,
    threads: ThreadsConfig,
) -> Result<Tub, Error> {
    engine::start(identity, config, threads)
}
