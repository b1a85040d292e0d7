//! Codec throughput: token-level decode, value-level decode and value-level
//! encode of three inputs (see `common/mod.rs`):
//!
//! * `ints`: `list(range(100000))`
//! * `blobs`: 160 `bytes` of 64 KiB (10 MiB)
//! * `announcement`: a Tahoe-LAFS storage-server announcement (~4.4 KB)
//!
//! Token decode reports tokens/s (`Throughput::Elements`); value decode and
//! encode report bytes/s of the encoding (`Throughput::Bytes`).
//!
//! Decoding takes the buffer over without a copy (`feed_bytes` of a
//! uniquely owned buffer prepared outside the timed region, as a connection
//! hands over what it read), and the decoded value is dropped inside the
//! timed region. Encoding writes into one reused `BytesMut`.
//!
//! `cargo bench --bench codec` runs in about a minute and a half.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use foolscap_core::banana::TokenDecoder;
use foolscap_core::value::Serializer;

mod common;

fn fresh(wire: &[u8]) -> Bytes {
    BytesMut::from(wire).freeze()
}

fn codec(c: &mut Criterion) {
    for input in common::inputs() {
        let mut g = c.benchmark_group(input.name);
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(800))
            .measurement_time(Duration::from_secs(3));
        // Per-iteration setup copies the whole input: keep big ones out of
        // large batches.
        let batch = if input.wire.len() > 64 << 10 {
            BatchSize::PerIteration
        } else {
            BatchSize::SmallInput
        };

        g.throughput(Throughput::Elements(input.tokens));
        g.bench_function("decode-tokens", |b| {
            b.iter_batched(
                || fresh(&input.wire),
                |wire| {
                    let mut d = TokenDecoder::default();
                    d.feed_bytes(wire);
                    let mut n = 0u64;
                    while let Some(t) = d.next_token().expect("valid") {
                        black_box(&t);
                        n += 1;
                    }
                    assert_eq!(n, input.tokens);
                },
                batch,
            )
        });

        g.throughput(Throughput::Bytes(input.wire.len() as u64));
        g.bench_function("decode", |b| {
            b.iter_batched(
                || fresh(&input.wire),
                |wire| drop(black_box(common::decode(wire))),
                batch,
            )
        });

        let mut out = BytesMut::with_capacity(input.wire.len());
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                // A fresh serializer (two words) so OPEN numbers, and hence
                // the output, are the same every iteration.
                let mut ser = Serializer::new(common::VOCAB);
                ser.serialize(black_box(&input.value), &mut out)
                    .expect("encodes");
                assert_eq!(out.len(), input.wire.len());
            })
        });
        g.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
