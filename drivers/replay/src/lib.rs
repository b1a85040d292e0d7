//! Transcripts of foolscap connections: recording, parsing, and replaying
//! one side into the sans-IO core to compare with the other.
//!
//! # What is recorded
//!
//! The application bytes of each connection at the plaintext boundary, per
//! direction: the raw TCP bytes of the plaintext phase (`GET /id/...`, the
//! `101` or a refusal) and, after STARTTLS, the decrypted TLS application
//! data (hello, decision and error blocks, then banana). TLS records are
//! never recorded. Set a [`TranscriptWriter`] as the core's recorder
//! (`TubConfig::recorder = Some(RecorderHandle::new(Arc::new(writer)))`);
//! every driver that takes a `TubConfig` can then record.
//!
//! # Format
//!
//! The format of the Python reference captures (`shared/reference`), read
//! by the one parser [`Transcript::parse`]:
//!
//! ```text
//! # comment
//! CONN <n> <client-address> <server-address>      (`-` when unknown)
//! <n> C>S|S>C plain|tls <hex of one run of consecutive writes>
//! ```
//!
//! # Replay
//!
//! [`replay()`] feeds the recorded peer side of one connection into a core
//! Tub that runs without TLS (`Tub::accept_clear` /
//! `Tub::dial_connected_clear`), with a `SeededRng` and a virtual clock
//! that jumps to the core's timers when the recording shows output the
//! core has not produced yet. An [`Application`] registers objects, makes
//! calls and answers them. Our output is then compared with the recorded
//! side: the plaintext phase and negotiation blocks line by line, banana
//! token by token. The first difference is a [`Difference`] with context.
//!
//! # Variable fields
//!
//! Only declared [`Variable`]s may differ: `my-incarnation` (found
//! automatically in both hellos, and replaced wherever it recurs, such as
//! `current-connection`), plus what a replay declares: random swissnums,
//! ports, or a STRING that follows a given key (a Failure's `traceback`).
//! Each is replaced by `<name>` on both sides, so it must still be used
//! consistently. Nothing else is ignored.
//!
//! # Regenerating the project's transcripts
//!
//! `bash scripts/record-transcripts.sh` runs live sessions between the
//! threads engine (`drivers/replay/examples/record.rs`, recording) and
//! Python foolscap 24.9.0 in both directions and rewrites
//! `tests/transcripts/*.txt`; `tests/replay.rs` replays them (no Python
//! needed) and the Python reference captures.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod compare;
mod replay;
pub mod transcript;

pub use compare::{block_value, blocks_len, Compared, Difference, Part, Variable, CONTEXT};
pub use replay::{
    replay, Application, Replay, ReplayError, Report, MAX_TIMER_STEPS, MAX_VIRTUAL_TIME,
};
pub use transcript::{
    Chunk, Connection, ParseError, ParseLimits, Phase, SharedBuffer, Side, Transcript,
    TranscriptWriter,
};
