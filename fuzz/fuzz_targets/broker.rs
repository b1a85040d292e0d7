#![no_main]
//! A connected broker fed arbitrary plaintext (what arrives after
//! negotiation), as a hostile peer would send it.
//!
//! Input: byte 0: bit 7 selects vocab table 1 (else 0), bits 0-5 a chunk
//! size (0 = all at once); the rest is fed in chunks. Every incoming call
//! is answered with its own arguments (exercising the serializer on peer
//! data), timers are driven, and a registered object `calc` can be looked
//! up; a second object `schema` declares `foolscap_fuzz::fuzz_interface`,
//! so its calls are checked and their answers checked before sending.
//! Checks: nothing panics; output stays bounded by the input.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foolscap_core::banana::VocabTable;
use foolscap_core::broker::{Broker, BrokerConfig, BrokerEvent, Export, Registry};
use foolscap_core::id::{ConnectionId, ObjectId};
use foolscap_core::value::Value;
use libfuzzer_sys::fuzz_target;

/// `calc` (unchecked) and `schema` (with the fuzz interface).
struct Objects(HashMap<Vec<u8>, Export>);

impl Registry for Objects {
    fn lookup(&self, name: &[u8]) -> Option<Export> {
        self.0.lookup(name)
    }

    fn describe(&self, object: ObjectId) -> Option<Export> {
        self.0.describe(object)
    }

    fn schema(
        &self,
        object: ObjectId,
    ) -> Option<std::sync::Arc<foolscap_core::schema::InterfaceSchema>> {
        (object == ObjectId(8)).then(foolscap_fuzz::fuzz_interface)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let vocab = if first & 0x80 != 0 {
        VocabTable::V1
    } else {
        VocabTable::EMPTY
    };
    let chunk = match (first & 0x3f) as usize {
        0 => stream.len().max(1),
        n => n,
    };
    let mut config = BrokerConfig::default();
    config.limits.max_message_bytes = 1 << 20;
    config.limits.max_depth = 64;
    let mut registry = HashMap::new();
    registry.insert(
        b"calc".to_vec(),
        Export {
            object: ObjectId(7),
            interface: Bytes::new(),
            furl: None,
        },
    );
    registry.insert(
        b"schema".to_vec(),
        Export {
            object: ObjectId(8),
            interface: Bytes::from_static(b"RIFuzz"),
            furl: None,
        },
    );
    let registry = Objects(registry);
    let start = Instant::now();
    let mut broker = Broker::new(vocab, config, ConnectionId(1), None, start);
    let mut out = Vec::new();
    for (i, piece) in stream.chunks(chunk).enumerate() {
        let now = start + Duration::from_secs(i as u64);
        broker.handle_plaintext(now, piece, &registry);
        while let Some(ev) = broker.poll_event() {
            if let BrokerEvent::Call(call) = ev {
                let _ = broker.answer(call.req_id, &Value::List(call.args), &registry);
            }
        }
        out.clear();
        broker.poll_transmit(&mut out);
        // answers echo what arrived: never wildly more than the input
        assert!(
            out.len() <= 64 * (stream.len() + 64),
            "{} bytes out for {} in",
            out.len(),
            stream.len()
        );
    }
    broker.handle_timeout(start + Duration::from_secs(100_000));
    while broker.poll_event().is_some() {}
});
