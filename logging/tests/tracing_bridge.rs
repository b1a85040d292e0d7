//! The `tracing` bridge (feature `tracing`): levels, facility, fields,
//! message, errors and span parents.
#![cfg(feature = "tracing")]

use foolscap_logging::level::*;
use foolscap_logging::tracing_bridge::FoolscapLayer;
use foolscap_logging::{Logger, Value};
use tracing_subscriber::prelude::*;

mod net {
    pub fn connect() {
        let span = tracing::info_span!("connect", host = "example.org");
        let _g = span.enter();
        tracing::debug!(attempt = 2u64, "dialing %s");
        let inner = tracing::debug_span!("handshake");
        let _h = inner.enter();
        tracing::error!(
            error = &std::io::Error::other("refused") as &(dyn std::error::Error + 'static),
            "failed"
        );
    }
}

#[test]
fn tracing_events_become_foolscap_events() {
    let logger = Logger::new();
    let sub = tracing_subscriber::registry().with(FoolscapLayer::new(logger.clone()));
    tracing::subscriber::with_default(sub, || {
        tracing::trace!("too low");
        tracing::info!(
            count = 3,
            ratio = 0.5,
            ok = true,
            big = u128::MAX,
            name = "x",
            "hello {}",
            "world"
        );
        tracing::warn!(target: "my_app::disk", "almost full");
        net::connect();
    });
    let h = logger.history();
    // TRACE maps to 5: below the default threshold (NOISY), dropped, number used
    assert_eq!(h[0].num(), Some(1));
    let e = &h[0];
    assert_eq!(e.level(), OPERATIONAL);
    assert_eq!(e.facility(), "tracing_bridge");
    assert_eq!(e.format_message().unwrap(), "hello world");
    assert_eq!(e.get("count"), Some(&Value::from(3i64)));
    assert_eq!(e.get("ratio"), Some(&Value::Float(0.5)));
    assert_eq!(e.get("ok"), Some(&Value::Bool(true)));
    assert_eq!(e.get("big"), Some(&Value::Int(u128::MAX.into())));
    assert_eq!(e.get("name"), Some(&Value::from("x")));
    assert!(e.get("args").is_none());
    let w = &h[1];
    assert_eq!((w.level(), w.facility()), (WEIRD, "my_app.disk"));
    // the span, its event (a message never %-formatted), the inner span, its event
    let span = &h[2];
    assert_eq!(span.format_message().unwrap(), "connect");
    assert_eq!(span.get("span"), Some(&Value::Bool(true)));
    assert_eq!(span.get("host"), Some(&Value::from("example.org")));
    assert_eq!(span.facility(), "tracing_bridge.net");
    assert!(span.get("parent").is_none());
    let dial = &h[3];
    assert_eq!(dial.format_message().unwrap(), "dialing %s");
    assert_eq!(dial.level(), NOISY);
    assert_eq!(dial.get("parent"), span.get("num"));
    let hs = &h[4];
    assert_eq!(hs.get("parent"), span.get("num"));
    let failed = &h[5];
    assert_eq!(failed.level(), BAD);
    assert_eq!(failed.get("parent"), hs.get("num"));
    let Some(Value::Failure(f)) = failed.get("error") else {
        panic!("{:?}", failed)
    };
    assert_eq!(f.value, "refused");
    assert_eq!(h.len(), 6);
}
