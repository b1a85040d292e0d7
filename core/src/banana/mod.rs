//! The banana token layer: the self-delimiting tokens every Foolscap
//! connection speaks once negotiation is over (docs/protocol.md §4).
//!
//! * [`TokenDecoder`] turns bytes (split anywhere) into [`Token`]s.
//! * [`encode`] writes tokens into a [`bytes::BytesMut`] exactly as Python
//!   foolscap writes them.
//! * [`VocabTable`] holds the negotiated initial vocabulary (tables 0 and 1).
//!
//! This layer knows nothing about values: it does not count OPENs, resolve
//! VOCAB indices or check CLOSE numbers. That is the job of
//! [`crate::value::Deserializer`].

mod decoder;
pub mod encode;
mod error;
mod limits;
mod token;
mod vocab;

pub use decoder::TokenDecoder;
pub use error::{TokenError, HEADER_ERROR_CONTEXT};
pub use limits::TokenLimits;
pub use token::{Token, TypeByte, MAX_HEADER_DIGITS};
pub use vocab::VocabTable;
