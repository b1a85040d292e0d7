//! Python literal syntax for the foolscap-rs value model: a parser
//! ([`parse`]) and a printer that writes what Python's `repr()` would
//! ([`to_python`], [`write_python`]).
//!
//! The wire protocol never needs either: they serve the `foolscap` tool,
//! tests and examples, which write and show values the way a Python
//! programmer would. That is why they live outside the sans-IO core; the
//! core keeps only the quoting of str and bytes its wire texts need
//! ([`foolscap_core::value::pyrepr`]), and the printer here quotes through
//! it.
//!
//! ```
//! use foolscap_core::value::Value;
//!
//! let v = foolscap_literal::parse("{'k': [1, (b'\\x00', 2.5)], 'n': None}")?;
//! let Value::Dict(pairs) = &v else { panic!("a dict") };
//! assert_eq!(pairs[0].0, Value::str("k"));
//! assert_eq!(
//!     foolscap_literal::to_python(&v),
//!     "{'k': [1, (b'\\x00', 2.5)], 'n': None}"
//! );
//! # Ok::<(), foolscap_literal::LiteralError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod parse;
mod repr;

pub use parse::{parse, LiteralError, MAX_DEPTH};
pub use repr::{to_python, write_python, write_python_with, ReprError};
