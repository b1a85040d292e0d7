//! Replaying one side of a transcript into the sans-IO core and comparing
//! what the core emits with the recorded other side.
//!
//! The core runs without TLS ([`Tub::accept_clear`] /
//! [`Tub::dial_connected_clear`]), with a [`SeededRng`] and a virtual clock:
//! the peer's recorded runs are fed in recorded order, and after each one
//! everything the core wants to send is drained. When the recording shows
//! our side sending before the peer's next run and the core has not sent
//! that much yet, the clock jumps to the core's next timer (keepalive,
//! release of dropped references), at most [`MAX_TIMER_STEPS`] times.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foolscap_core::banana::VocabTable;
use foolscap_core::identity::{Identity, TubId};
use foolscap_core::negotiation::{ConnectionId, Direction, RecordPhase, Recorder, RecorderHandle};
use foolscap_core::rng::SeededRng;
use foolscap_core::tub::{Transport, Tub, TubConfig, TubEvent};
use thiserror::Error;

use crate::compare::{self, block_value, Compared, Difference, Origin, Variable};
use crate::transcript::{Phase, Side, Transcript};

/// Most timer jumps while waiting for one expected output.
pub const MAX_TIMER_STEPS: usize = 64;

/// The furthest the virtual clock may move from the start.
pub const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(24 * 3600);

/// The application above the core during a replay: what is registered,
/// which calls are made, how calls are answered.
pub trait Application {
    /// Runs once before any bytes: register objects, set the location, and
    /// (when replaying the client) start the first `get_reference`.
    fn start(&mut self, tub: &mut Tub);

    /// Every application event of the Tub (the harness carries out its
    /// transport commands, `Dial` and `Close`). Drop references you no longer need: the
    /// core releases them (`decref`) when the clock reaches its sweep.
    fn event(&mut self, tub: &mut Tub, event: TubEvent);
}

/// What to replay.
pub struct Replay<'a> {
    /// The recording.
    pub transcript: &'a Transcript,
    /// Its connection number to replay.
    pub connection: u64,
    /// The side our core plays.
    pub we_are: Side,
    /// Our identity (the recorded side's certificate, for conformance).
    pub identity: Identity,
    /// The peer's tubid (its certificate's, in the recording).
    pub peer: TubId,
    /// Tub settings (keepalive, ...). Its recorder is replaced.
    pub config: TubConfig,
    /// Seed of the Tub's [`SeededRng`] (incarnation, swissnums).
    pub seed: u64,
    /// Declared variable fields besides the automatic ones (the
    /// incarnation in `my-incarnation` and wherever it recurs).
    pub variables: Vec<Variable>,
}

/// A successful replay: how much was fed and compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The recorded peer runs fed to the core.
    pub runs_fed: usize,
    /// Peer bytes fed.
    pub bytes_fed: usize,
    /// Timer jumps of the virtual clock.
    pub timers_fired: usize,
    /// What was compared.
    pub compared: Compared,
    /// All variable fields used (declared and automatic).
    pub variables: Vec<Variable>,
}

/// Why a replay failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The transcript has no such connection, or nothing from the peer.
    #[error("transcript: {0}")]
    Transcript(String),
    /// The Tub could not be built or did not do what the replay needs
    /// (for example no dial from a client application).
    #[error("replay setup: {0}")]
    Setup(String),
    /// Our output differs from the recording.
    #[error("{0}")]
    Differs(Box<Difference>),
}

/// Collects what the core sends on each connection, per phase.
#[derive(Default)]
struct Sent(Mutex<Vec<(ConnectionId, RecordPhase, Vec<u8>)>>);

impl Recorder for Sent {
    fn record(&self, c: ConnectionId, d: Direction, p: RecordPhase, bytes: &[u8]) {
        if d == Direction::Sent {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((c, p, bytes.to_vec()));
        }
    }
}

impl Sent {
    fn stream(&self, c: ConnectionId, phase: RecordPhase) -> Vec<u8> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .filter(|r| r.0 == c && r.1 == phase)
            .flat_map(|r| r.2.iter().copied())
            .collect()
    }
}

struct Run<'a, A: Application> {
    tub: Tub,
    app: &'a mut A,
    peer: TubId,
    conn: Option<ConnectionId>,
    /// Everything `poll_transmit` gave for our connection.
    transmitted: Vec<u8>,
    closed: bool,
    start: Instant,
    now: Instant,
    timers: usize,
}

impl<A: Application> Run<'_, A> {
    fn drain(&mut self) -> Result<(), ReplayError> {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            while let Some(c) = self.tub.poll_transmit(&mut buf) {
                moved = true;
                if Some(c) == self.conn {
                    self.transmitted.extend_from_slice(&buf);
                }
            }
            while let Some(cmd) = self.tub.poll_transport() {
                moved = true;
                match cmd {
                    Transport::Dial { dial, host, port } => {
                        if self.conn.is_some() {
                            return Err(ReplayError::Setup(format!(
                                "a second dial (to {host}:{port}): one connection is replayed"
                            )));
                        }
                        let c = self.tub.dial_connected_clear(dial, self.now, self.peer);
                        self.conn = Some(c.ok_or_else(|| {
                            ReplayError::Setup("the Tub dropped its dial".into())
                        })?);
                    }
                    Transport::Close(c) if Some(c) == self.conn => self.closed = true,
                    _ => {}
                }
            }
            while let Some(ev) = self.tub.poll_event() {
                moved = true;
                self.app.event(&mut self.tub, ev);
            }
            if !moved {
                return Ok(());
            }
        }
    }

    /// Lets timers run until we have sent `target` bytes (or no timer
    /// helps).
    fn catch_up(&mut self, target: usize) -> Result<(), ReplayError> {
        let mut steps = 0;
        while self.transmitted.len() < target && steps < MAX_TIMER_STEPS && !self.closed {
            let Some(t) = self.tub.poll_timeout() else {
                break;
            };
            if t.saturating_duration_since(self.start) > MAX_VIRTUAL_TIME {
                break;
            }
            self.now = self.now.max(t);
            self.tub.handle_timeout(self.now);
            steps += 1;
            self.timers += 1;
            self.drain()?;
        }
        Ok(())
    }
}

/// Replays `spec` with `app` above the core; `Ok` when our output equals
/// the recording modulo the variable fields.
pub fn replay<A: Application>(spec: Replay<'_>, app: &mut A) -> Result<Report, ReplayError> {
    let t = spec.transcript;
    let n = spec.connection;
    if t.connection(n).is_none() {
        return Err(ReplayError::Transcript(format!("no connection {n}")));
    }
    let chunks: Vec<_> = t.chunks.iter().filter(|c| c.connection == n).collect();
    let sent = Arc::new(Sent::default());
    let mut config = spec.config;
    config.recorder = Some(RecorderHandle::new(sent.clone()));
    let start = Instant::now();
    let tub = Tub::new(
        &spec.identity,
        config,
        Box::new(SeededRng::new(spec.seed)),
        start,
    )
    .map_err(|e| ReplayError::Setup(e.to_string()))?;
    let mut run = Run {
        tub,
        app,
        peer: spec.peer,
        conn: None,
        transmitted: Vec::new(),
        closed: false,
        start,
        now: start,
        timers: 0,
    };
    run.app.start(&mut run.tub);
    if spec.we_are == Side::Server {
        let c = run
            .tub
            .accept_clear(start, spec.peer)
            .map_err(|e| ReplayError::Setup(e.to_string()))?;
        run.conn = Some(c);
    }
    run.drain()?;
    let mut report = Report::default();
    let mut expected_so_far = 0;
    for chunk in &chunks {
        if chunk.from == spec.we_are {
            expected_so_far += chunk.bytes.len();
            continue;
        }
        run.catch_up(expected_so_far)?;
        let Some(c) = run.conn else {
            return Err(ReplayError::Setup(
                "the client application never asked for a connection".into(),
            ));
        };
        if run.closed {
            break;
        }
        run.tub.handle_input(c, run.now, &chunk.bytes);
        report.runs_fed += 1;
        report.bytes_fed += chunk.bytes.len();
        run.drain()?;
    }
    run.catch_up(expected_so_far)?;
    report.timers_fired = run.timers;
    let Some(c) = run.conn else {
        return Err(ReplayError::Setup("no connection was made".into()));
    };

    let ours_plain = sent.stream(c, RecordPhase::Plain);
    let ours_tls = sent.stream(c, RecordPhase::Tls);
    // without TLS, the wire carries exactly what the recorder saw
    if run.transmitted != [&ours_plain[..], &ours_tls[..]].concat() {
        return Err(ReplayError::Setup(
            "the recorder's copy differs from the transmitted bytes".into(),
        ));
    }
    let rec_plain = t.stream(n, spec.we_are, Phase::Plain);
    let rec_tls = t.stream(n, spec.we_are, Phase::Tls);

    let mut variables = Vec::new();
    if let (Some(r), Some(o)) = (
        block_value(&rec_tls, "my-incarnation"),
        block_value(&ours_tls, "my-incarnation"),
    ) {
        variables.push(Variable::substitute("my-incarnation", r, o));
    }
    variables.extend(spec.variables);
    // both directions start with the table the decision chose
    let peer_tls = t.stream(n, spec.we_are.other(), Phase::Tls);
    let vocab = block_value(&rec_tls, "initial-vocab-table-index")
        .or_else(|| block_value(&peer_tls, "initial-vocab-table-index"))
        .and_then(|v| std::str::from_utf8(v).ok()?.split(' ').next()?.parse().ok())
        .and_then(VocabTable::by_index)
        .unwrap_or(VocabTable::EMPTY);
    let origin = Origin {
        connection: n,
        from: spec.we_are,
    };
    report.compared = compare::compare_direction(
        origin,
        (&rec_plain, &rec_tls),
        (&ours_plain, &ours_tls),
        &variables,
        &vocab,
    )
    .map_err(ReplayError::Differs)?;
    report.variables = variables;
    Ok(report)
}
