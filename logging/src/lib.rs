//! Foolscap's logging data model and its file format, compatible with
//! Python foolscap 24.9.0 (see `docs/logging.md`):
//!
//! * [`level`]: the named severity levels and their numbers;
//! * [`Value`]/[`Dict`]/[`Event`]: an event as Python stores it, and
//!   [`format_message`] rendering it exactly as Python does (`%` included);
//! * [`flogfile`]: the flogfile reader (with [`ReadLimits`]) and writer,
//!   [`files`] opening them by name (`.bz2` compressed);
//! * [`dump`]: what `flogtool dump` prints for each record.
//!
//! * [`logger`]: the in-process [`Logger`] (Python's `log.msg`, history,
//!   thresholds, incidents, `FLOGFILE`).
//!
//! Nothing here touches the network; only [`files`] and [`logger`] open
//! files, and only [`logger`] reads the clock and starts threads.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod builder;
pub mod dump;
pub mod event;
pub mod files;
pub mod flogfile;
pub mod json;
pub mod level;
pub mod logger;
pub mod pyformat;
pub mod repr;
pub mod timefmt;
#[cfg(feature = "tracing")]
pub mod tracing_bridge;
pub mod value;

pub use builder::EventBuilder;
pub use event::{format_message, Event, MissingKey};
pub use flogfile::{FlogReader, FlogWriter, ReadError, ReadLimits, MAGIC};
pub use logger::{FlushGuard, Logger, ObserverId};
pub use value::{Dict, Failure, Value};
