#![no_main]
//! The plaintext phase parsers (request, response, block buffer) and the
//! FURL parser on arbitrary input.
//!
//! Input: byte 0 is a chunk size (`& 0x3f`, 0 = all at once); the rest is
//! fed to a `BlockBuffer` in chunks of that size and parsed as a request,
//! a response and a FURL. Checks: nothing panics; chunked feeding finds
//! the same blocks, leftover and errors as feeding at once; a parsed
//! request's tubid, when it is a tubid, survives format + parse; refusal
//! texts survive format + parse; a parsed FURL prints back to text that
//! parses to the same FURL.
use foolscap_core::furl::Furl;
use foolscap_core::identity::TubId;
use foolscap_core::negotiation::plaintext::{
    format_refusal, format_request, parse_request, parse_response, BlockBuffer, MAX_BLOCK_BYTES,
};
use foolscap_core::negotiation::{PlaintextError, Refusal};
use libfuzzer_sys::fuzz_target;

type Blocks = (Vec<Vec<u8>>, Result<(), ()>, Vec<u8>);

fn blocks(data: &[u8], chunk: usize) -> Blocks {
    let mut buf = BlockBuffer::new();
    let mut found = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.push(piece);
        loop {
            match buf.take_block(MAX_BLOCK_BYTES) {
                Ok(Some(b)) => found.push(b),
                Ok(None) => break,
                Err(_) => return (found, Err(()), Vec::new()),
            }
        }
    }
    (found, Ok(()), buf.take_rest())
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let chunk = (first & 0x3f) as usize;
    let whole = blocks(data, data.len());
    if chunk > 0 {
        let chunked = blocks(data, chunk);
        // an error can only come earlier when fed in pieces: Python-style
        // limits look at what is buffered, which depends on the pieces
        if whole.1.is_ok() && chunked.1.is_ok() {
            assert_eq!(whole, chunked);
        }
    }
    if let Ok(requested) = parse_request(data) {
        assert!(!requested.is_empty());
        if let Ok(t) = TubId::parse(&requested) {
            let req = format_request(&t, "host");
            assert_eq!(parse_request(&req[..req.len() - 4]).unwrap(), requested);
        }
    }
    if let Err(PlaintextError::Refused { refusal, .. }) = parse_response(data) {
        let again = format_refusal(&refusal.text());
        match parse_response(&again[..again.len() - 4]) {
            Err(PlaintextError::Refused { refusal: r2, .. }) => {
                if !refusal.text().contains(['\r', '\n']) {
                    assert_eq!(r2, refusal);
                }
            }
            other => panic!("a refusal parsed as {other:?}"),
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let reply = format_refusal(text);
        match parse_response(&reply[..reply.len() - 4]) {
            Err(PlaintextError::Refused { refusal, .. }) => {
                if !text.contains(['\r', '\n']) && matches!(refusal, Refusal::Other(_)) {
                    assert_eq!(refusal.text(), text);
                }
            }
            other => panic!("format_refusal({text:?}) parsed as {other:?}"),
        }
        if let Ok(furl) = Furl::parse(text) {
            let printed = furl.to_string();
            assert_eq!(Furl::parse(&printed).as_ref(), Ok(&furl));
        }
    }
});
