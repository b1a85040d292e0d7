//! foolscap-rs: Foolscap object-capability RPC, wire-compatible with Python
//! `foolscap==24.9.0`.
//!
//! This facade re-exports the workspace crates (see `docs/architecture.md`):
//! the application API ([`Tub`], [`Object`], [`Call`], with Python's
//! argument binding ([`Signature`]) and shared values across messages
//! ([`Scope`], [`sharing`])), the engines that
//! carry it ([`threads`], [`mio`]) and the sans-IO core ([`core`]).
#![forbid(unsafe_code)]

pub use foolscap_app as app;
pub use foolscap_app::logport;
pub use foolscap_app::{
    as_remote, remote_interface, sharing, typed, Backoff, BoundArgs, Call, Callable, Copyable,
    Error, Object, ReconnectState, ReconnectionInfo, Reconnector, Scope, Signature, Target, Tub,
    TubConfig,
};
pub use foolscap_core as core;
pub use foolscap_core::{banana, broker, furl, id, identity, negotiation, rng, schema, tub, value};
/// The in-process logger, log events and flogfiles (feature `tracing`:
/// `logging::tracing_bridge`).
pub use foolscap_logging as logging;
pub use foolscap_mio as mio;
pub use foolscap_threads as threads;
#[cfg(feature = "tokio")]
pub use foolscap_tokio as tokio;

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
