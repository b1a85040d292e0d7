//! The RemoteInterfaces of Foolscap's logging (Python's
//! `foolscap.logging.interfaces`), with Python's names and constraints:
//! [`RILogPublisher`] (the logport), [`RILogObserver`] (what subscribes),
//! [`RISubscription`] (what a subscription returns), [`RILogGatherer`]
//! (what nodes offer their logport to) and [`RILogFile`] (declared, as in
//! Python; nothing implements it).
//!
//! Each trait gives a client stub (`RILogPublisherClient`, ...) and a
//! server adapter (`RILogObserverServer(impl)`, ...): see
//! [`remote_interface`](crate::remote_interface).
//!
//! Events travel as [`Event`] (Python's `DictOf(Any(), Any())`): received
//! with [`event_from_wire_in`], sent with [`event_to_wire`].

use foolscap_core::schema::Constraint;
use foolscap_core::value::Value;
use foolscap_logging::Event;

use super::convert::{event_from_wire_in, event_to_wire};
use crate::typed::{Constrained, Context, ConvertError, Failure, FromValue, Remote, ToValue};

impl ToValue for Event {
    fn to_value(&self) -> Value {
        event_to_wire(self)
    }
}

impl FromValue for Event {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        event_from_wire_in(v, cx).map_err(|e| ConvertError::new(e.to_string()))
    }
}

impl Constrained for Event {
    /// Python's `Event = DictOf(Any(), Any())`.
    fn constraint() -> Constraint {
        Constraint::dict_of(Constraint::Any, Constraint::Any, None)
    }
}

/// Python's `DictOf(Any(), V)`: a dict whose keys may be anything (Python
/// sends `str` or `bytes`), as key/value pairs in the order they came.
#[derive(Clone, Debug, PartialEq)]
pub struct AnyDict<V>(pub Vec<(Value, V)>);

impl<V> Default for AnyDict<V> {
    fn default() -> Self {
        AnyDict(Vec::new())
    }
}

impl<V> AnyDict<V> {
    /// The value under a text or bytes key equal to `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0
            .iter()
            .find(|(k, _)| key_text(k).as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// The entries with text (or UTF-8 bytes) keys, as text, in order.
    pub fn text_keys(&self) -> impl Iterator<Item = (String, &V)> {
        self.0
            .iter()
            .filter_map(|(k, v)| key_text(k).map(|k| (k, v)))
    }
}

/// A `str` key, or a `bytes` one decoded as UTF-8 (Python's
/// `six.ensure_str`).
pub fn key_text(k: &Value) -> Option<String> {
    match k.unanchored() {
        Value::Str(s) => Some(s.as_str().to_owned()),
        Value::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    }
}

impl<V: ToValue> ToValue for AnyDict<V> {
    fn to_value(&self) -> Value {
        Value::Dict(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect(),
        )
    }
}

impl<V: FromValue> FromValue for AnyDict<V> {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        let pairs = match cx.resolve(v)? {
            Value::Dict(pairs) => pairs,
            other => return Err(ConvertError::expected("dict", other)),
        };
        let _deeper = cx.enter()?;
        let mut out = Vec::with_capacity(pairs.len());
        for (k, item) in pairs {
            let key = cx.scope().detach(k);
            let value = V::from_value(item, cx).map_err(|e| e.at_key(&key))?;
            out.push((key, value));
        }
        Ok(AnyDict(out))
    }
}

impl<V: Constrained> Constrained for AnyDict<V> {
    fn constraint() -> Constraint {
        Constraint::dict_of(Constraint::Any, V::constraint(), None)
    }
}

/// What `get_versions` answers: Python's publisher sends `bytes` keys and
/// values (`{b"foolscap": b"24.9.0", ...}`).
pub type Versions = AnyDict<Value>;

/// What `list_incidents` answers: incident name → trigger event.
pub type Incidents = AnyDict<Event>;

/// Python's `Header = DictOf(Any(), Any())`: a flogfile's header dict.
pub type Header = Event;

/// Python's `RILogObserver`: what receives events and incidents.
#[crate::remote_interface(name = "RILogObserver.foolscap.lothar.com", crate = foolscap_app)]
pub trait RILogObserver {
    /// One event (live: answered with None; catch-up: sent with reqID 0).
    fn msg(&self, logmsg: Event) -> Result<(), Failure>;
    /// Declared for RILogFile's `get_events`; Python never sends it.
    fn done(&self);
    /// An incident finished (`name` comes as bytes from Python).
    fn new_incident(&self, name: Value, trigger: Event) -> Result<(), Failure>;
    /// The end of an incident catch-up.
    fn done_with_incident_catchup(&self);
}

/// Python's `RILogFile`: declared there, implemented nowhere (24.9.0).
#[crate::remote_interface(name = "RILogFile.foolscap.lothar.com", crate = foolscap_app)]
pub trait RILogFile {
    /// `(TubID, int, (int, int), (int, int), int, DictOf(Any(), int))`.
    #[allow(clippy::type_complexity)]
    fn get_header(&self) -> (Value, i32, (i32, i32), (i32, i32), i32, AnyDict<i32>);
    /// Sends every event of the file to `receiver`, then `done()`.
    fn get_events(&self, receiver: RILogObserverClient);
}

/// Python's `RISubscription`: what `subscribe_to_*` answers.
#[crate::remote_interface(name = "RISubscription.foolscap.lothar.com", crate = foolscap_app)]
pub trait RISubscription {
    /// Ends the subscription (idempotent); nothing is sent after its
    /// answer.
    fn unsubscribe(&self);
}

/// Python's `RILogPublisher`: the logport.
#[crate::remote_interface(name = "RILogPublisher.foolscap.lothar.com", crate = foolscap_app)]
pub trait RILogPublisher {
    /// `DictOf(Any(), Any())`: program name → version.
    fn get_versions(&self) -> Versions;
    /// The process id.
    fn get_pid(&self) -> i32;
    /// Every event from now on (after the buffered ones if `catch_up`).
    fn subscribe_to_all(
        &self,
        observer: RILogObserverClient,
        #[optional] catch_up: Option<bool>,
    ) -> Result<RISubscriptionClient, Failure>;
    /// The deprecated form of `subscription.unsubscribe()`.
    fn unsubscribe(&self, subscription: Value) -> Result<(), Failure>;
    /// Not implemented by Python's publisher (an AttributeError).
    fn enumerate_logfiles(&self) -> Result<Vec<RILogFileClient>, Failure>;
    /// Incident name → trigger, for the incidents named after `since`.
    fn list_incidents(&self, #[optional] since: Option<Value>) -> Result<Incidents, Failure>;
    /// Every incident finished from now on (after the stored ones named
    /// after `since` if `catch_up`).
    fn subscribe_to_incidents(
        &self,
        observer: RILogObserverClient,
        #[optional] catch_up: Option<bool>,
        #[optional] since: Option<Value>,
    ) -> Result<RISubscriptionClient, Failure>;
    /// An incident's header and events.
    fn get_incident(&self, incident_name: Value) -> Result<(Header, Vec<Event>), Failure>;
}

/// Python's `RILogGatherer`: where nodes offer their logport.
#[crate::remote_interface(name = "RILogGatherer.foolscap.lothar.com", crate = foolscap_app)]
pub trait RILogGatherer {
    /// `nodeid` is the node's tubid (Python sends bytes).
    fn logport(&self, nodeid: Value, logport: RILogPublisherClient);
}

/// Every type above is a typed argument or result.
#[allow(dead_code)]
fn assert_remote<T: Remote>() {}
#[allow(dead_code)]
fn all_remote() {
    assert_remote::<Event>();
    assert_remote::<Versions>();
    assert_remote::<Incidents>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::RemoteInterface;
    use foolscap_core::schema::InterfaceSchema;

    fn schema_of<I: RemoteInterface>() -> std::sync::Arc<InterfaceSchema> {
        I::schema()
    }

    #[test]
    fn names_are_pythons() {
        assert_eq!(
            schema_of::<RILogPublisherClient>().name(),
            "RILogPublisher.foolscap.lothar.com"
        );
        assert_eq!(
            schema_of::<RILogObserverClient>().name(),
            "RILogObserver.foolscap.lothar.com"
        );
        assert_eq!(
            schema_of::<RISubscriptionClient>().name(),
            "RISubscription.foolscap.lothar.com"
        );
        assert_eq!(
            schema_of::<RILogGathererClient>().name(),
            "RILogGatherer.foolscap.lothar.com"
        );
        assert_eq!(
            schema_of::<RILogFileClient>().name(),
            "RILogFile.foolscap.lothar.com"
        );
    }

    #[test]
    fn publisher_arguments_have_pythons_constraints() {
        let s = schema_of::<RILogPublisherClient>();
        let sub = s.method("subscribe_to_all").unwrap();
        let args = sub.arguments();
        assert_eq!(args.len(), 2);
        assert!(args[0].is_required());
        assert!(!args[1].is_required());
        let inc = s.method("subscribe_to_incidents").unwrap();
        assert_eq!(inc.arguments().len(), 3);
        assert!(!inc.arguments()[2].is_required());
        for m in [
            "get_versions",
            "get_pid",
            "unsubscribe",
            "enumerate_logfiles",
            "list_incidents",
            "get_incident",
        ] {
            assert!(s.method(m).is_some(), "{m}");
        }
        assert_eq!(
            Event::constraint(),
            Constraint::dict_of(Constraint::Any, Constraint::Any, None)
        );
    }
}
