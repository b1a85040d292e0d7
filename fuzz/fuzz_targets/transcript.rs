#![no_main]
//! The transcript parser on arbitrary input, with small limits.
//!
//! Checks: nothing panics; a transcript that parses writes back to text
//! that parses to the same comments, connections and data (line numbers
//! aside), and its streams are the concatenation of its lines.
use foolscap_replay::{ParseLimits, Phase, Side, Transcript};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut limits = ParseLimits::default();
    limits.max_line_bytes = 4096;
    limits.max_file_bytes = 1 << 16;
    limits.max_connections = 16;
    let Ok(t) = Transcript::parse_with(data, &limits) else {
        return;
    };
    let mut out = Vec::new();
    t.write_to(&mut out).expect("writing to a Vec");
    let back = Transcript::parse(&out).expect("our own output parses");
    assert_eq!(back.connections, t.connections);
    let strip = |t: &Transcript| -> Vec<(u64, Side, Phase, Vec<u8>)> {
        t.chunks
            .iter()
            .map(|c| (c.connection, c.from, c.phase, c.bytes.clone()))
            .collect()
    };
    assert_eq!(strip(&back), strip(&t));
    // comments written back are `# ` + text: equal unless the text had
    // a line break of its own (impossible after parsing)
    assert_eq!(back.comments, t.comments);
    for c in &t.connections {
        for from in [Side::Client, Side::Server] {
            for phase in [Phase::Plain, Phase::Tls] {
                let whole: Vec<u8> = t
                    .chunks
                    .iter()
                    .filter(|x| x.connection == c.number && x.from == from && x.phase == phase)
                    .flat_map(|x| x.bytes.clone())
                    .collect();
                assert_eq!(t.stream(c.number, from, phase), whole);
            }
        }
    }
});
