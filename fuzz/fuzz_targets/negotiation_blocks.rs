#![no_main]
//! Hello/decision block parsing and the whole hello/decision exchange on
//! arbitrary plaintext, in both roles.
//!
//! Input: byte 0: bit 7 selects the role (client = non-master, dialling a
//! larger tubid; server = master), bits 0-5 a chunk size (0 = at once);
//! the rest is what the peer sends inside TLS. Checks: nothing panics;
//! `parse_block` output survives `format_block` + `parse_block`; the
//! exchange reaches the same outcome (same error, or the same settled
//! parameters and leftover) whether fed at once or in chunks; a failure
//! queues a reply (an error block that parses, or a banana ERROR token)
//! except when the peer itself refused.
use std::time::Instant;

use foolscap_core::identity::TubId;
use foolscap_core::negotiation::blocks::{format_block, parse_block};
use foolscap_core::negotiation::{
    ConnectionId, ConnectionTable, Exchange, NegotiationConfig, NegotiationError,
};
use libfuzzer_sys::fuzz_target;

const HIGH: &str = "vfbzu4bxrxknny4zy66zjcdszk5wc4k5";
const LOW: &str = "5ikfv7dz4s7kjm2cs6mnui7pekmu2wmp";

type Outcome = (Result<Option<String>, NegotiationError>, Vec<u8>);

fn exchange(client: bool, data: &[u8], chunk: usize, now: Instant) -> Outcome {
    let (high, low) = (TubId::parse(HIGH).unwrap(), TubId::parse(LOW).unwrap());
    let (me, peer, expected) = if client {
        (low, high, Some(high))
    } else {
        (high, low, None)
    };
    let mut table = ConnectionTable::with_incarnation("0123456789abcdef");
    let mut ex = Exchange::new(
        me,
        expected,
        ConnectionId(1),
        &NegotiationConfig::default(),
        &table,
    );
    ex.poll_output(&mut Vec::new());
    let mut result = Ok(None);
    let mut fed = 0;
    for piece in data.chunks(chunk.max(1)) {
        fed += piece.len();
        match ex.handle_plaintext(piece, Some(&peer), &mut table, now) {
            Ok(Some(mut done)) => {
                // what was not fed yet would follow the leftover
                done.leftover.extend_from_slice(&data[fed..]);
                result = Ok(Some(format!("{:?} {:?}", done.info, done.leftover)));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let mut out = Vec::new();
    ex.poll_output(&mut out);
    (result, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let client = first & 0x80 != 0;
    let chunk = (first & 0x3f) as usize;
    if let Ok(block) = parse_block(data) {
        let bytes = format_block(&block);
        assert_eq!(parse_block(&bytes[..bytes.len() - 4]).as_ref(), Ok(&block));
    }
    let now = Instant::now();
    let whole = exchange(client, data, data.len(), now);
    if chunk > 0 {
        let chunked = exchange(client, data, chunk, now);
        // the block limit counts buffered bytes, so chunking may only make
        // a difference to where a too-long block is noticed
        if !matches!(whole.0, Err(NegotiationError::BlockTooLong { .. })) {
            assert_eq!(whole.0, chunked.0);
        }
    }
    if let (Err(e), out) = &whole {
        if matches!(e, NegotiationError::Remote { .. }) {
            assert!(out.is_empty());
        } else if out.starts_with(b"banana-decision-version: 1\r\n") {
            let end = out.len() - 4;
            let reply = parse_block(&out[..end]).expect("our error block parses");
            assert_eq!(
                reply.get("error").map(String::as_str),
                Some(&*e.wire_text().replace(['\r', '\n'], " "))
            );
        } else {
            assert!(out.contains(&0x8d), "a banana ERROR token");
        }
    }
});
