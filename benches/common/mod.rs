//! Benchmark inputs shared by `benches/codec.rs` (criterion) and
//! `benches/compare.rs` (the Rust half of `benches/compare.sh`).
//!
//! Keep in sync with `benches/compare_python.py`, which builds the same
//! values in Python; `compare.sh` checks that both sides encode them to
//! identical bytes.
#![allow(dead_code)]

use bytes::BytesMut;
use foolscap_core::banana::{TokenDecoder, VocabTable};
use foolscap_core::value::{Deserializer, Event, Limits, Serializer, Value};

/// The vocab table both sides use (a Broker's, after negotiation).
pub const VOCAB: VocabTable = VocabTable::V1;

pub const N_INTS: usize = 100_000;
pub const N_BLOBS: usize = 160;
pub const BLOB_SIZE: usize = 65536;

/// One benchmark input: the value, its encoding and its sizes.
pub struct Input {
    pub name: &'static str,
    pub value: Value,
    pub wire: Vec<u8>,
    /// Values counted for values/s (see `count_values`).
    pub values: u64,
    /// Tokens in `wire`.
    pub tokens: u64,
}

/// (a) `list(range(100000))`.
pub fn ints() -> Value {
    Value::List((0..N_INTS as i64).map(Value::int).collect())
}

/// (b) 10 MiB as 160 `bytes` of 64 KiB: `[bytes([i]) * 65536 for i in range(160)]`.
pub fn blobs() -> Value {
    Value::List(
        (0..N_BLOBS)
            .map(|i| Value::Bytes(bytes::Bytes::from(vec![i as u8; BLOB_SIZE])))
            .collect(),
    )
}

/// `n` deterministic bytes: `(seed + 7*i) mod 256`.
fn pattern(n: usize, seed: usize) -> Value {
    Value::Bytes(
        (0..n)
            .map(|i| ((seed + 7 * i) & 0xff) as u8)
            .collect::<Vec<u8>>()
            .into(),
    )
}

fn b32(seed: usize, n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..n)
        .map(|i| ALPHABET[(seed * 13 + 5 * i) % 32] as char)
        .collect()
}

fn furl(seed: usize, host: &str) -> String {
    format!(
        "pb://{}@tcp:{}:44801,tcp:10.0.{}.17:44801/{}",
        b32(seed, 32),
        host,
        seed,
        b32(seed + 1, 32)
    )
}

fn dict(pairs: Vec<(&str, Value)>) -> Value {
    Value::Dict(pairs.into_iter().map(|(k, v)| (Value::str(k), v)).collect())
}

fn s(x: impl AsRef<str>) -> Value {
    Value::str(x.as_ref())
}

/// (c) A Tahoe-LAFS storage-server announcement (about 4.4 KB encoded):
/// ~20 str keys mapping to str, bytes, ints (small and > 2**31), a float,
/// bools, None, a tuple, lists and nested dicts.
pub fn announcement() -> Value {
    let storage_v1 = dict(vec![
        ("maximum-immutable-share-size", Value::int(1 << 40)),
        (
            "maximum-mutable-share-size",
            Value::int(69105 * 1000 * 1000 * 1000 * 1000),
        ),
        ("available-space", Value::int(12_345_678_901_234)),
        ("tolerates-immutable-read-overrun", Value::Bool(true)),
        (
            "delete-mutable-shares-with-zero-length-writev",
            Value::Bool(true),
        ),
        ("fills-holes-with-zero-bytes", Value::Bool(true)),
        ("prevents-read-past-end-of-share-data", Value::Bool(true)),
        (
            "gbs-anonymous-storage-url",
            s(format!(
                "https://storage01.example.net:8443/storage/v1/{}",
                b32(3, 52)
            )),
        ),
        ("gbs-mutable-write-batch", Value::int(64)),
    ]);
    let app_versions = dict(
        [
            ("tahoe-lafs", "1.19.0"),
            ("foolscap", "24.9.0"),
            ("twisted", "24.7.0"),
            ("python", "3.11.7"),
            ("platform", "Linux-debian_12-x86_64-64bit_ELF"),
            ("pyOpenSSL", "24.2.1"),
            ("cryptography", "43.0.1"),
            ("zfec", "1.5.7.4"),
            ("pycryptopp", "not installed"),
            ("attrs", "24.2.0"),
            ("klein", "23.12.0"),
            ("werkzeug", "3.0.4"),
            ("treq", "24.9.1"),
            ("cbor2", "5.6.4"),
            ("pycddl", "0.6.1"),
            ("magic-wormhole", "0.15.0"),
            ("setuptools", "75.1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k, s(v)))
        .collect(),
    );
    let options = (0..3usize)
        .map(|i| {
            dict(vec![
                (
                    "name",
                    s(if i == 0 {
                        "anonymous-storage".to_owned()
                    } else {
                        format!("privatestorageio-zkapauthz-v{i}")
                    }),
                ),
                (
                    "storage-server-FURL",
                    s(furl(10 + i, "storage01.example.net")),
                ),
                (
                    "ristretto-issuer-root-url",
                    s(format!("https://issuer.example.net/v{}/", i + 1)),
                ),
                ("pass-value", Value::int(1_000_000 * (i as i64 + 1))),
                ("default-token-count", Value::int(50_000)),
                ("lease.crawl-interval.mean", Value::int(864_000)),
                ("lease.crawl-interval.range", Value::int(86_400)),
                ("lease.min-time-remaining", Value::int(0)),
                (
                    "allowed-public-keys",
                    Value::List(vec![s(b32(20 + i, 44) + "="), s(b32(30 + i, 44) + "=")]),
                ),
            ])
        })
        .collect();
    let certificates = (0..2usize)
        .map(|i| {
            dict(vec![
                (
                    "certificate",
                    s(format!(
                        "{{\"expires\": {}, \"public_key\": \"pub-v0-{}\", \"version\": 1}}",
                        1_750_000_000 + i,
                        b32(40 + i, 52)
                    )),
                ),
                ("signature", pattern(64, 100 + i)),
            ])
        })
        .collect();
    dict(vec![
        (
            "anonymous-storage-FURL",
            s(furl(1, "storage01.example.net")),
        ),
        ("permutation-seed-base32", s(b32(2, 32))),
        ("nickname", s("storage01 \u{2603} rack-7")),
        ("my-version", s("tahoe-lafs/1.19.0")),
        ("oldest-supported", s("1.0")),
        ("service-name", s("storage")),
        ("seqnum", Value::int(1_718_000_123)),
        ("nonce", pattern(32, 1)),
        (
            "anonymous-storage-public-key",
            Value::bytes(format!("pub-v0-{}", b32(5, 52)).as_bytes()),
        ),
        ("signature", pattern(64, 2)),
        ("last-seen", Value::Float(1_718_000_123.25)),
        ("uptime-seconds", Value::int(-1)),
        (
            "connection-hints",
            Value::List(vec![
                s("tcp:storage01.example.net:44801"),
                s("tcp:10.0.0.17:44801"),
                s(format!("tor:{}.onion:44801", b32(6, 56))),
            ]),
        ),
        (
            "listen-ports",
            Value::Tuple(vec![Value::int(44801), Value::int(8443), Value::int(3456)]),
        ),
        ("grid-manager-certificates", Value::List(certificates)),
        ("storage-options", Value::List(options)),
        ("app-versions", app_versions),
        (
            "http://allmydata.org/tahoe/protocols/storage/v1",
            storage_v1,
        ),
        ("introducer-furl", Value::None),
        ("accepting-immutable-shares", Value::Bool(true)),
        ("accepting-mutable-shares", Value::Bool(false)),
    ])
}

/// Values in the tree, containers included (a dict counts its keys and
/// values), as `count_values` in compare_python.py.
pub fn count_values(v: &Value) -> u64 {
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            1 + i.iter().map(count_values).sum::<u64>()
        }
        Value::Dict(p) => {
            1 + p
                .iter()
                .map(|(k, v)| count_values(k) + count_values(v))
                .sum::<u64>()
        }
        _ => 1,
    }
}

/// Encodes one value as one message with a fresh serializer.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = BytesMut::new();
    Serializer::new(VOCAB)
        .serialize(v, &mut out)
        .expect("benchmark input encodes");
    out.to_vec()
}

/// Counts the tokens in a buffer (token layer only).
pub fn count_tokens(wire: &[u8]) -> u64 {
    let mut d = TokenDecoder::default();
    d.feed(wire);
    let mut n = 0;
    while d.next_token().expect("valid token stream").is_some() {
        n += 1;
    }
    assert_eq!(d.buffered(), 0);
    n
}

/// Decodes a buffer holding exactly one message.
pub fn decode(wire: bytes::Bytes) -> Value {
    let mut de = Deserializer::new(VOCAB, Limits::default());
    de.feed_bytes(wire);
    match de.poll_event() {
        Ok(Some(Event::Value(v))) => v,
        other => panic!("benchmark input did not decode: {other:?}"),
    }
}

/// The three inputs: (a) ints, (b) blobs, (c) announcement.
pub fn inputs() -> Vec<Input> {
    [
        ("ints", ints as fn() -> Value),
        ("blobs", blobs),
        ("announcement", announcement),
    ]
    .into_iter()
    .map(|(name, build)| {
        let value = build();
        let wire = encode(&value);
        let values = match name {
            "announcement" => count_values(&value),
            _ => match &value {
                Value::List(i) => i.len() as u64,
                _ => unreachable!(),
            },
        };
        let tokens = count_tokens(&wire);
        let decoded = decode(bytes::Bytes::from(wire.clone()));
        assert_eq!(encode(&decoded), wire, "{name} does not round-trip");
        Input {
            name,
            value,
            wire,
            values,
            tokens,
        }
    })
    .collect()
}
