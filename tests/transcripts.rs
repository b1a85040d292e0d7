//! Every banana stream in the reference captures of Python<->Python
//! sessions (`../shared/reference/transcripts`, beside the repository)
//! decodes into tokens that re-encode to the very same bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::BytesMut;
use foolscap::banana::{encode::put_token, TokenDecoder};

fn transcripts_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/transcripts");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have shared/ beside the repository: {} is missing",
        dir.display()
    );
    eprintln!("skipping: {} not found", dir.display());
    None
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The decrypted TLS stream of every (connection, direction) in a file.
fn tls_streams(text: &str) -> BTreeMap<(String, String), Vec<u8>> {
    let mut out: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 && f[2] == "tls" {
            out.entry((f[0].to_owned(), f[1].to_owned()))
                .or_default()
                .extend(unhex(f[3]));
        }
    }
    out
}

/// Strips the negotiation blocks (`banana-...` header blocks, each ended
/// by an empty line) that precede the banana stream.
fn banana_part(mut s: &[u8]) -> &[u8] {
    while s.starts_with(b"banana-") {
        match s.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => s = &s[i + 4..],
            None => return &[],
        }
    }
    s
}

#[test]
fn reference_streams_reencode_byte_for_byte() {
    let Some(dir) = transcripts_dir() else { return };
    let mut files = 0;
    let mut streams = 0;
    let mut tokens = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for ((conn, dir), stream) in tls_streams(&text) {
            let banana = banana_part(&stream);
            if banana.is_empty() {
                continue;
            }
            streams += 1;
            let mut dec = TokenDecoder::default();
            dec.feed(banana);
            let mut out = BytesMut::new();
            let mut ok_len = 0;
            loop {
                match dec.next_token() {
                    Ok(Some(t)) => {
                        put_token(&mut out, &t);
                        tokens += 1;
                        ok_len = dec.offset() as usize;
                    }
                    Ok(None) => break,
                    // 07-negotiation provokes framing errors on purpose
                    Err(e) => {
                        assert!(
                            path.to_string_lossy().contains("07-negotiation"),
                            "{} conn {conn} {dir}: {e}",
                            path.display()
                        );
                        break;
                    }
                }
            }
            assert_eq!(
                &out[..],
                &banana[..ok_len],
                "{} conn {conn} {dir}: re-encoding differs",
                path.display()
            );
        }
    }
    assert!(
        files >= 11,
        "expected the 11 reference transcripts, found {files}"
    );
    eprintln!("{files} files, {streams} streams, {tokens} tokens re-encoded identically");
}
