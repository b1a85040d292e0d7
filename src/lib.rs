//! foolscap-rs: Foolscap object-capability RPC, wire-compatible with Python
//! `foolscap==24.9.0`.
//!
//! This facade re-exports the workspace crates; see `docs/architecture.md`.
#![forbid(unsafe_code)]

pub use foolscap_blocking as blocking;
pub use foolscap_core as core;
pub use foolscap_core::{banana, broker, furl, identity, negotiation, rng, tub, value};
pub use foolscap_mio as mio;
