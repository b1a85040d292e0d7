//! `tracing` → Foolscap (feature `tracing`): a
//! [`tracing_subscriber::Layer`] that logs every `tracing` event as a
//! Foolscap event, so what a Rust program and its libraries trace reaches
//! `FLOGFILE`, incidents, `flogtool tail` and log gatherers.
//!
//! ```
//! use tracing_subscriber::prelude::*;
//! let logger = foolscap_logging::Logger::new();
//! let subscriber = tracing_subscriber::registry()
//!     .with(foolscap_logging::tracing_bridge::FoolscapLayer::new(logger.clone()));
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::warn!(size = 3, "disk almost full");
//! });
//! let e = &logger.history()[0];
//! assert_eq!(e.format_message().unwrap(), "disk almost full");
//! assert_eq!(e.level(), foolscap_logging::level::WEIRD);
//! ```
//!
//! The mapping:
//!
//! | tracing | Foolscap |
//! | --- | --- |
//! | `TRACE` | 5 (below NOISY: dropped unless the facility's generation threshold is lowered) |
//! | `DEBUG` | NOISY (10) |
//! | `INFO` | OPERATIONAL (20) |
//! | `WARN` | WEIRD (30) — triggers an incident, as Python's Twisted bridge does for `warn` |
//! | `ERROR` | BAD (40) |
//!
//! * the target (`my_crate::net`) becomes the facility with `::` replaced
//!   by `.` (`my_crate.net`);
//! * the `message` field is the event's `message` (already formatted by
//!   `tracing`, so it is never `%`-formatted again); every other field is
//!   kept as a field of the same name: integers, floats, booleans and
//!   strings as themselves, `dyn Error` values as a failure, anything else
//!   as its `Debug` text;
//! * a span is logged too, when it is created (message = the span's name,
//!   its fields, facility from its target, field `span: true`): events and
//!   spans inside it carry its number as `parent`, so the web viewer shows
//!   the tree.

use crate::level;
use crate::logger::Logger;
use crate::value::{Dict, Failure, Value};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event as TracingEvent, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The Foolscap level of a `tracing` level (see the module's table).
pub fn level_of(l: &Level) -> i64 {
    match *l {
        Level::TRACE => 5,
        Level::DEBUG => level::NOISY,
        Level::INFO => level::OPERATIONAL,
        Level::WARN => level::WEIRD,
        _ => level::BAD,
    }
}

/// The facility of a `tracing` target.
pub fn facility_of(target: &str) -> String {
    target.replace("::", ".")
}

/// The layer; add it to a `tracing_subscriber::registry()`.
pub struct FoolscapLayer {
    logger: Logger,
}

impl FoolscapLayer {
    /// Events go to `logger`.
    pub fn new(logger: Logger) -> FoolscapLayer {
        FoolscapLayer { logger }
    }
    /// Events go to [`Logger::global`].
    pub fn global() -> FoolscapLayer {
        FoolscapLayer::new(Logger::global())
    }
}

/// The number a span was logged with (kept in the span's extensions).
struct SpanNum(u64);

struct Fields<'a>(&'a mut Dict);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{:?}", value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name(), value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name(), value);
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.0.insert(field.name(), Value::Int(value.into()));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.0.insert(field.name(), Value::Int(value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name(), value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name(), value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(
            field.name(),
            Failure::from_error("std::error::Error", value),
        );
    }
}

fn parent_num<S>(ctx: &Context<'_, S>, explicit: Option<&Id>, contextual: bool) -> Option<u64>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = match explicit {
        Some(id) => ctx.span(id),
        None if contextual => ctx.lookup_current(),
        None => None,
    }?;
    // the nearest enclosing span that was logged
    span.scope()
        .find_map(|s| s.extensions().get::<SpanNum>().map(|n| n.0))
}

impl<S> Layer<S> for FoolscapLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        let mut d = Dict::new();
        d.insert("message", meta.name());
        d.insert("facility", facility_of(meta.target()));
        d.insert("level", level_of(meta.level()));
        d.insert("span", true);
        attrs.record(&mut Fields(&mut d));
        if let Some(p) = parent_num(&ctx, attrs.parent(), attrs.is_contextual()) {
            d.insert("parent", p);
        }
        let num = self.logger.msg(d);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanNum(num));
        }
    }

    fn on_record(&self, _id: &Id, _values: &Record<'_>, _ctx: Context<'_, S>) {
        // a span's later fields: its event has been logged already
    }

    fn on_event(&self, event: &TracingEvent<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut d = Dict::new();
        d.insert("facility", facility_of(meta.target()));
        d.insert("level", level_of(meta.level()));
        event.record(&mut Fields(&mut d));
        if let Some(p) = parent_num(&ctx, event.parent(), event.is_contextual()) {
            d.insert("parent", p);
        }
        self.logger.msg(d);
    }
}
