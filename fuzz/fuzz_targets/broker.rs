#![no_main]
//! A connected broker fed arbitrary plaintext (what arrives after
//! negotiation), as a hostile peer would send it.
//!
//! Input: byte 0: bit 7 selects vocab table 1 (else 0), bits 0-5 a chunk
//! size (0 = all at once); the rest is fed in chunks. Every incoming call
//! is answered with its own arguments (exercising the serializer on peer
//! data), timers are driven, and a registered object `calc` can be looked
//! up; a second object `schema` declares `foolscap_fuzz::fuzz_interface`,
//! so its calls are checked and their answers checked before sending. A
//! call carrying gifts (`their-reference`) gets its gifts
//! acknowledged (`decgift`) and filled in with `None`, as the Tub does
//! once they are looked up, and a reference from another connection is
//! sent back with each answer (a gift the peer may `decgift`). Checks:
//! nothing panics; output stays bounded by the input; the gift table
//! holds at most one entry per gift sent.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foolscap_core::banana::VocabTable;
use foolscap_core::broker::{fill_gifts, Broker, BrokerConfig, BrokerEvent, Export, Registry};
use foolscap_core::id::{ConnectionId, ObjectId};
use foolscap_core::value::{RemoteRef, Value};
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
    // a reference from another connection: answers carry it as a gift
    let foreign = RemoteRef::new(
        ConnectionId(2),
        5,
        Bytes::new(),
        Some(Bytes::from_static(b"pb://x@tcp:h:1/s")),
    );
    let mut sent_gifts = 0usize;
    for (i, piece) in stream.chunks(chunk).enumerate() {
        let now = start + Duration::from_secs(i as u64);
        broker.handle_plaintext(now, piece, &registry);
        while let Some(ev) = broker.poll_event() {
            match ev {
                BrokerEvent::Call(call) => {
                    let _ = broker.answer(call.req_id, &Value::List(call.args), &registry);
                }
                BrokerEvent::CallWithGifts(call, gifts) => {
                    assert!(gifts.len() <= BrokerConfig::DEFAULT_MAX_GIFTS_PER_MESSAGE);
                    for g in &gifts {
                        let _ = broker.decgift(g.gift_id);
                    }
                    let resolved = vec![Value::None; gifts.len()];
                    let mut args = Value::List(call.args);
                    fill_gifts(&mut args, &resolved);
                    let answer = Value::List(vec![args, Value::Remote(foreign.clone())]);
                    let _ = broker.answer(call.req_id, &answer, &registry);
                    sent_gifts += 1;
                }
                _ => {}
            }
        }
        assert!(broker.gifts_held() <= sent_gifts.max(1));
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
