//! The sans-IO core of foolscap-rs.
//!
//! Bytes in, bytes and events out: nothing here touches sockets, threads,
//! clocks or global state. The layers, bottom up:
//!
//! * [`banana`]: the token codec (docs/protocol.md §4).
//! * [`value`]: the value model and its streaming (de)serializer (§5.1-5.3,
//!   5.7), plus the Python `repr()` quoting of str and bytes that wire
//!   texts need (the full literal syntax is the `foolscap-literal` crate).
//! * [`identity`], [`furl`]: Tub identities, tubids and FURLs (§2).
//! * [`negotiation`]: connection establishment, both roles, plaintext phase,
//!   TLS and hello/decision (§3), ending in a plaintext [`negotiation::Session`].
//! * [`broker`]: PB calls, answers, errors and references on one
//!   connection (§5.4-5.8, 6).
//! * [`tub`]: a Tub's connections, objects and references together.
//! * [`id`]: every identifier the core hands out.
//! * [`rng`]: injectable randomness.
//! * [`schema`]: RemoteInterface constraints and method schemas (§6.5).
//! * `testing` (with the `testing` feature, and in this crate's tests): a
//!   simulated network of Tubs on a virtual clock.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod banana;
pub mod broker;
pub mod furl;
pub mod id;
pub mod identity;
pub mod negotiation;
pub mod rng;
pub mod schema;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tub;
pub mod value;
