//! The Tub's own Foolscap log events (connections, negotiation failures,
//! call failures when asked), with the facilities and texts Python's Tub
//! uses. Every function here only *builds* a closure; the Tub runs it
//! after releasing its lock, because observers may call back into the Tub.

use foolscap_core::broker::{CallError, CloseReason};
use foolscap_core::identity::TubId;
use foolscap_core::negotiation::NegotiationError;
use foolscap_core::value::Value as WireValue;
use foolscap_logging::level::{NOISY, OPERATIONAL, UNUSUAL};
use foolscap_logging::{Dict, Logger, Value};

use crate::error::Error;

/// The Tub's logging options (Python's Tub options `logLocalFailures` and
/// `logRemoteFailures`, both off by default).
#[derive(Clone)]
pub(crate) struct LogConfig {
    pub(crate) logger: Logger,
    pub(crate) local_failures: bool,
    pub(crate) remote_failures: bool,
}

impl LogConfig {
    pub(crate) fn new() -> LogConfig {
        LogConfig {
            logger: Logger::global(),
            local_failures: false,
            remote_failures: false,
        }
    }
}

/// Python's `getShortTubID`: the first four characters.
pub(crate) fn short(t: &TubId) -> String {
    t.as_str().chars().take(4).collect()
}

/// Longest `repr` of call arguments written into an event.
const MAX_ARGS_REPR: usize = 1000;

fn wire_repr(v: &[WireValue]) -> String {
    let t = WireValue::Tuple(v.to_vec());
    let mut s = String::new();
    match foolscap_literal::write_python(&t, &mut s, MAX_ARGS_REPR) {
        Ok(()) => s,
        Err(_) => format!("<{} values>", v.len()),
    }
}

/// A `foolscap_core` failure as an event's `failure` value.
pub(crate) fn failure(f: &foolscap_core::broker::Failure) -> foolscap_logging::Failure {
    foolscap_logging::Failure {
        value: f.value.clone(),
        type_name: f.type_name.clone(),
        traceback: f.traceback.clone(),
        parents: f.parents.clone(),
    }
}

fn ev(pairs: Vec<(&str, Value)>) -> Dict {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(k, v);
    }
    d
}

/// Python's `tub.log(...)`: the event carries the Tub's `tubID`.
pub(crate) fn tub_log(logger: &Logger, me: &TubId, mut fields: Dict) -> u64 {
    fields.insert("tubID", me.as_str());
    logger.msg(fields)
}

/// A connection finished negotiating.
pub(crate) fn connected(logger: &Logger, me: &TubId, peer: &TubId) {
    tub_log(
        logger,
        me,
        ev(vec![
            ("format", "connection to %(peer_short)s established".into()),
            ("peer_short", short(peer).into()),
            ("peer", peer.as_str().into()),
            ("facility", "foolscap.connection".into()),
            ("level", OPERATIONAL.into()),
        ]),
    );
}

/// A negotiated connection ended: Python's `connection to <short> lost`.
pub(crate) fn disconnected(logger: &Logger, me: &TubId, peer: &TubId, reason: &CloseReason) {
    tub_log(
        logger,
        me,
        ev(vec![
            (
                "message",
                format!("connection to {} lost", short(peer)).into(),
            ),
            ("facility", "foolscap.connection".into()),
            ("reason", reason.to_string().into()),
        ]),
    );
}

/// A connection failed before it was negotiated. Python logs a benign
/// failure (one the peer reported, a duplicate) at NOISY and others at
/// OPERATIONAL, as `negotiationFailed…` in `foolscap.negotiation`.
pub(crate) fn negotiation_failed(
    logger: &Logger,
    me: &TubId,
    outbound: bool,
    e: &NegotiationError,
) {
    let (message, level) = match e {
        NegotiationError::Duplicate { .. } => {
            ("negotiationFailed: DuplicateConnection".into(), NOISY)
        }
        NegotiationError::Remote { message } => {
            (format!("negotiationFailed: remote: {}", message), NOISY)
        }
        _ => (format!("negotiationFailed: {}", e), OPERATIONAL),
    };
    tub_log(
        logger,
        me,
        ev(vec![
            ("message", message.into()),
            ("facility", "foolscap.negotiation".into()),
            ("level", level.into()),
            ("outbound", outbound.into()),
        ]),
    );
}

/// What [`remote_failure`] needs of a call sent.
pub(crate) struct SentCall {
    pub(crate) me: TubId,
    pub(crate) peer: Option<TubId>,
    pub(crate) interface: String,
    pub(crate) method: String,
    pub(crate) clid: i64,
}

/// `logRemoteFailures`: one of our calls failed on the far end (Python's
/// three events, same texts and levels; no facility, as in Python).
pub(crate) fn remote_failure(logger: &Logger, c: &SentCall, result: &Result<WireValue, Error>) {
    let Err(Error::Call(CallError::Remote(f))) = result else {
        return;
    };
    let their = c.peer.as_ref().map(short).unwrap_or_else(|| "<???>".into());
    let lp = logger.msg(ev(vec![
        (
            "message",
            format!(
                "an outbound callRemote (that we [{}] sent to someone else [{}]) failed on the far end",
                short(&c.me),
                their
            )
            .into(),
        ),
        ("level", UNUSUAL.into()),
    ]));
    let iface = if c.interface.is_empty() {
        "?"
    } else {
        &c.interface
    };
    logger.msg(ev(vec![
        (
            "message",
            format!(
                " reqID=?, rref=<RemoteReference clid={}>, methname={}.{}",
                c.clid, iface, c.method
            )
            .into(),
        ),
        ("level", NOISY.into()),
        ("parent", lp.into()),
    ]));
    logger.msg(ev(vec![
        ("message", " the REMOTE failure was:".into()),
        ("failure", failure(f).into()),
        ("level", NOISY.into()),
        ("parent", lp.into()),
    ]));
}

/// `logLocalFailures`: a call from a peer that one of our objects
/// answered with a failure (Python's events, same texts and levels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn local_failure(
    logger: &Logger,
    me: &TubId,
    caller: &TubId,
    req_id: u64,
    object: u64,
    method: &str,
    args: &[WireValue],
    kwargs: &[(foolscap_core::value::Text, WireValue)],
    f: &foolscap_core::broker::Failure,
) {
    let lp = logger.msg(ev(vec![
        (
            "message",
            format!(
                "an inbound callRemote that we [{}] executed (on behalf of someone else, TubID {}) failed",
                short(me),
                short(caller)
            )
            .into(),
        ),
        ("level", UNUSUAL.into()),
    ]));
    let child = |text: String| {
        logger.msg(ev(vec![
            ("message", text.into()),
            ("level", NOISY.into()),
            ("parent", lp.into()),
        ]));
    };
    child(format!(
        " reqID={}, rref=<object {}>, methname={}",
        req_id, object, method
    ));
    child(format!(" args={}", wire_repr(args)));
    let kw: Vec<WireValue> = kwargs
        .iter()
        .map(|(k, v)| WireValue::Tuple(vec![WireValue::str(k.as_str()), v.clone()]))
        .collect();
    child(format!(" kwargs={}", wire_repr(&kw)));
    logger.msg(ev(vec![
        ("message", " the LOCAL failure was:".into()),
        ("failure", failure(f).into()),
        ("level", NOISY.into()),
        ("parent", lp.into()),
    ]));
}
