//! Foolscap's logport: the logging RemoteInterfaces
//! ([`interfaces`]), log events to and from the wire ([`convert`]), and
//! the publisher a Tub serves (docs/logging.md, "The logport").

pub mod convert;
pub mod interfaces;
pub mod publisher;

pub use convert::{
    event_from_wire, event_from_wire_in, event_to_wire, value_from_wire, value_from_wire_in,
    value_to_wire, EventError, MAX_EVENT_DEPTH, MAX_EVENT_VALUES,
};
pub use interfaces::{
    AnyDict, Header, Incidents, RILogFile, RILogFileClient, RILogFileServer, RILogGatherer,
    RILogGathererClient, RILogGathererServer, RILogObserver, RILogObserverClient,
    RILogObserverServer, RILogPublisher, RILogPublisherClient, RILogPublisherServer,
    RISubscription, RISubscriptionClient, RISubscriptionServer, Versions,
};
pub use publisher::{LogPublisher, PublisherStats, MAX_IN_FLIGHT, MAX_QUEUE_SIZE};
