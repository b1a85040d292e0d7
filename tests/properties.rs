//! Property tests: generated values (via `arbitrary`) survive
//! encode → decode → encode with identical bytes, whatever the input
//! chunking, and arbitrary bytes never panic the decoders.

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use foolscap::banana::VocabTable;
use foolscap::value::{Deserializer, Event, Limits, Serializer, Value};

/// A small deterministic PRNG (xorshift64*) to feed `Unstructured`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn has_anchor(v: &Value) -> bool {
    match v {
        Value::Anchor(..) | Value::Alias(_) => true,
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter().any(has_anchor)
        }
        Value::Dict(p) => p.iter().any(|(k, v)| has_anchor(k) || has_anchor(v)),
        Value::Copyable(c) => c.state.iter().any(|(_, v)| has_anchor(v)),
        _ => false,
    }
}

fn decode_chunked(bytes: &[u8], vocab: VocabTable, chunk: usize) -> Vec<Value> {
    let mut de = Deserializer::new(vocab, Limits::default());
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        de.feed(piece);
        while let Some(ev) = de.poll_event().expect("our own bytes decode") {
            match ev {
                Event::Value(v) => out.push(v),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(!de.in_message());
    out
}

#[test]
fn generated_values_round_trip() {
    let mut rng = Rng(0x5eed_f00d_dead_beef);
    let mut checked = 0;
    for case in 0..3000 {
        let len = 64 + (rng.next() % 2048) as usize;
        let raw = rng.bytes(len);
        let mut u = Unstructured::new(&raw);
        let Ok(v) = Value::arbitrary(&mut u) else {
            continue;
        };
        let vocab = if case % 2 == 0 {
            VocabTable::V1
        } else {
            VocabTable::EMPTY
        };
        let mut ser = Serializer::new(vocab);
        let mut bytes = BytesMut::new();
        ser.serialize(&v, &mut bytes)
            .expect("generated values serialize");
        let chunk = 1 + (rng.next() % 64) as usize;
        let back = decode_chunked(&bytes, vocab, chunk);
        assert_eq!(back.len(), 1);
        if !has_anchor(&v) {
            assert_eq!(back[0], v, "case {case}");
        }
        let mut again = BytesMut::new();
        Serializer::new(vocab)
            .serialize(&back[0], &mut again)
            .unwrap();
        assert_eq!(again, bytes, "case {case}: re-encoding differs");
        checked += 1;
    }
    assert!(checked > 2500, "only {checked} values generated");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    let words = [
        &[0x88u8][..],
        &[0x89],
        &[0x87],
        &[0x81],
        &[0x82],
        &[0x8a],
        &[0x04, 0x87],
        &[0x00, 0x88],
        &[0x03, 0x87],
        &[0x02, 0x87],
    ];
    for case in 0..20_000 {
        // mostly plausible token soup, sometimes pure noise
        let mut input = Vec::new();
        let n = rng.next() % 64;
        for _ in 0..n {
            if case % 4 == 0 {
                input.push(rng.next() as u8);
            } else {
                input.push((rng.next() % 8) as u8);
                input.extend_from_slice(words[(rng.next() % words.len() as u64) as usize]);
            }
        }
        for vocab in [VocabTable::V1, VocabTable::EMPTY] {
            let mut limits = Limits::default();
            limits.max_depth = 32;
            let mut de = Deserializer::new(vocab, limits);
            de.feed(&input);
            while let Ok(Some(_)) = de.poll_event() {}
        }
    }
}
