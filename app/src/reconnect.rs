//! Python's `Tub.connectTo`: keep a reference to a FURL alive, connecting
//! again with Python's schedule whenever it is lost (docs/protocol.md
//! §6.6).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use foolscap_core::furl::Furl;
use foolscap_core::rng::{Rng, SystemRng};
use foolscap_core::value::Value;

use crate::{Error, Tub};

/// Python's reconnection schedule: the first attempt at once; after a
/// failure the delay is multiplied by e (capped at one hour, the cap
/// applied before the jitter) and then drawn from a normal distribution
/// around it with a standard deviation of 11.96 % (the drawn value is
/// kept and compounds); after a lost connection exactly one second.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    delay: f64,
}

impl Backoff {
    /// The delay a fresh schedule (and [`Backoff::reset`]) starts from.
    pub const INITIAL: f64 = 1.0;
    /// The factor per failure.
    pub const FACTOR: f64 = std::f64::consts::E;
    /// The cap, in seconds, before the jitter.
    pub const MAX_DELAY: f64 = 3600.0;
    /// The jitter's standard deviation, relative to the delay.
    pub const JITTER: f64 = 0.119_626_564_92;

    /// A fresh schedule.
    pub fn new() -> Backoff {
        Backoff {
            delay: Self::INITIAL,
        }
    }

    /// After a failed attempt: the wait before the next one.
    pub fn failed(&mut self, rng: &mut dyn Rng) -> Duration {
        let d = (self.delay * Self::FACTOR).min(Self::MAX_DELAY);
        let jittered = d + d * Self::JITTER * standard_normal(rng);
        // a draw far in the tail cannot make it negative or absurd
        self.delay = jittered.clamp(0.0, 2.0 * Self::MAX_DELAY);
        Duration::from_secs_f64(self.delay)
    }

    /// After a lost connection: one second, and the delay starts over.
    pub fn lost(&mut self) -> Duration {
        self.delay = Self::INITIAL;
        Duration::from_secs_f64(Self::INITIAL)
    }

    /// `reset()`: the delay starts over.
    pub fn reset(&mut self) {
        self.delay = Self::INITIAL;
    }

    /// The current delay, in seconds.
    pub fn delay(&self) -> f64 {
        self.delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// A draw from N(0, 1) (Box-Muller).
fn standard_normal(rng: &mut dyn Rng) -> f64 {
    let mut uniform = || {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        // (0, 1]: never 0, whose log is infinite
        ((u64::from_le_bytes(b) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    let (u1, u2) = (uniform(), uniform());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Where a [`Reconnector`] is (Python's `getReconnectionInfo().state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectState {
    /// Not started yet.
    Unstarted,
    /// An attempt is running.
    Connecting,
    /// Connected; the callback has the reference.
    Connected,
    /// Waiting for the next attempt.
    Waiting,
    /// Stopped ([`Reconnector::stop`]): no more attempts.
    Stopped,
}

/// Python's reconnection info.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReconnectionInfo {
    /// Where the reconnector is.
    pub state: ReconnectState,
    /// When the last attempt started.
    pub last_attempt: Option<SystemTime>,
    /// When the next attempt is due (kept after a success, as Python
    /// keeps it).
    pub next_attempt: Option<SystemTime>,
    /// Why the last attempt failed (cleared by a success); an
    /// unreachable FURL lists each hint's failure.
    pub last_failure: Option<Error>,
    /// Each hint's status after the last attempt, in Python's words:
    /// `successful` for the hint a connection was made at (none when an
    /// existing connection was reused), `connection refused`, `failed to
    /// connect: ...`, `negotiation failed: ...` after a failure.
    pub hint_statuses: Vec<(String, String)>,
    /// The hint the current connection was made at (Python's
    /// `winningHint`).
    pub winning_hint: Option<String>,
    /// When the last successful attempt finished (`establishedAt`).
    pub established_at: Option<SystemTime>,
}

type ConnectedFn = Box<dyn FnMut(Value) + Send>;

pub(crate) struct Inner {
    /// Weak: the Tub keeps its reconnectors, not the other way round.
    tub: Weak<crate::tub::Shared>,
    furl: Furl,
    callback: ConnectedFn,
    backoff: Backoff,
    state: ReconnectState,
    /// Scheduled retries older than this are stale (reset, stop).
    generation: u64,
    last_attempt: Option<SystemTime>,
    next_attempt: Option<SystemTime>,
    next_due: Option<std::time::Instant>,
    last_failure: Option<Error>,
    watch: Option<u64>,
    winning_hint: Option<String>,
    established_at: Option<SystemTime>,
}

/// What [`Tub::connect_to`] returns: keeps trying until stopped. Dropping
/// it does not stop it (as in Python, the Tub keeps it); call
/// [`Reconnector::stop`].
#[derive(Clone)]
pub struct Reconnector {
    inner: Arc<Mutex<Inner>>,
}

impl Inner {
    fn tub(&self) -> Option<Tub> {
        self.tub.upgrade().map(|shared| Tub { shared })
    }
}

impl std::fmt::Debug for Reconnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("Reconnector")
            .field("furl", &i.furl.to_string())
            .field("state", &i.state)
            .finish_non_exhaustive()
    }
}

impl Reconnector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No further attempts, and the callback is never called again (not
    /// even for an attempt already running) and is dropped. A live
    /// connection is left alone.
    pub fn stop(&self) {
        let mut i = self.lock();
        i.state = ReconnectState::Stopped;
        i.generation += 1;
        i.next_due = None;
        // the callback is dropped (outside the lock: what it owns may
        // wake others), so that what waits on it sees the end
        let callback = std::mem::replace(&mut i.callback, Box::new(|_| {}));
        let cancel = match (i.watch.take(), i.tub()) {
            (Some(w), Some(tub)) => Some((w, tub)),
            _ => None,
        };
        drop(i);
        drop(callback);
        if let Some((w, tub)) = cancel {
            tub.cancel_disconnect_watch(w);
        }
    }

    /// The delay starts over; a scheduled retry moves to one second from
    /// now.
    pub fn reset(&self) {
        let mut i = self.lock();
        i.backoff.reset();
        if i.state == ReconnectState::Waiting {
            let delay = Duration::from_secs_f64(Backoff::INITIAL);
            schedule(&self.inner, &mut i, delay);
        }
    }

    /// Time until the scheduled attempt, `None` if none is scheduled.
    pub fn delay_until_next_attempt(&self) -> Option<Duration> {
        let i = self.lock();
        if i.state != ReconnectState::Waiting {
            return None;
        }
        i.next_due
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
    }

    /// Python's `getReconnectionInfo()`.
    pub fn info(&self) -> ReconnectionInfo {
        let i = self.lock();
        let hint_statuses = match (&i.last_failure, &i.winning_hint) {
            (Some(e), _) => hint_statuses(e),
            (None, Some(h)) => vec![(h.clone(), "successful".to_owned())],
            (None, None) => Vec::new(),
        };
        ReconnectionInfo {
            state: i.state,
            last_attempt: i.last_attempt,
            next_attempt: i.next_attempt,
            hint_statuses,
            last_failure: i.last_failure.clone(),
            winning_hint: i.winning_hint.clone(),
            established_at: i.established_at,
        }
    }
}

/// Python's connector status texts for the hints of a failed attempt.
fn hint_statuses(e: &Error) -> Vec<(String, String)> {
    use foolscap_core::tub::{DialError, TubError};
    let Error::Tub(TubError::Unreachable { attempts, .. }) = e else {
        return Vec::new();
    };
    attempts
        .iter()
        .map(|a| {
            let status = match &a.error {
                DialError::Transport(t) if t.kind == std::io::ErrorKind::ConnectionRefused => {
                    "connection refused".to_owned()
                }
                DialError::Transport(t) => format!("failed to connect: {t}"),
                DialError::Negotiation(n) => format!("negotiation failed: {n}"),
                other => format!("failed to connect: {other}"),
            };
            (a.hint.clone(), status)
        })
        .collect()
}

/// Files a retry after `delay` (a new generation: older ones are stale).
fn schedule(inner: &Arc<Mutex<Inner>>, i: &mut Inner, delay: Duration) {
    i.generation += 1;
    let generation = i.generation;
    i.state = ReconnectState::Waiting;
    i.next_attempt = Some(SystemTime::now() + delay);
    i.next_due = Some(std::time::Instant::now() + delay);
    let weak = Arc::downgrade(inner);
    if let Some(tub) = i.tub() {
        tub.after(delay, move || {
            if let Some(inner) = weak.upgrade() {
                attempt(&inner, Some(generation));
            }
        });
    }
}

/// One attempt (`generation`: the retry that asked for it, if any).
fn attempt(inner: &Arc<Mutex<Inner>>, generation: Option<u64>) {
    let mut i = inner.lock().unwrap_or_else(|e| e.into_inner());
    if i.state == ReconnectState::Stopped || generation.is_some_and(|g| g != i.generation) {
        return;
    }
    i.state = ReconnectState::Connecting;
    i.last_attempt = Some(SystemTime::now());
    i.next_due = None;
    let generation = i.generation;
    let (Some(tub), furl) = (i.tub(), i.furl.clone()) else {
        return;
    };
    drop(i);
    let weak: Weak<Mutex<Inner>> = Arc::downgrade(inner);
    tub.get_reference_async(&furl, move |result| {
        if let Some(inner) = weak.upgrade() {
            finished(&inner, generation, result);
        }
    });
}

fn finished(inner: &Arc<Mutex<Inner>>, generation: u64, result: Result<Value, Error>) {
    let mut i = inner.lock().unwrap_or_else(|e| e.into_inner());
    if i.state == ReconnectState::Stopped || generation != i.generation {
        return;
    }
    match result {
        Ok(reference) => {
            i.state = ReconnectState::Connected;
            i.last_failure = None;
            i.established_at = Some(SystemTime::now());
            i.winning_hint = match (&reference, i.tub()) {
                (Value::Remote(r), Some(tub)) => tub
                    .lock()
                    .core
                    .winning_hint(r.connection())
                    .map(str::to_owned),
                _ => None,
            };
            // the reference's connection: a loss starts over after 1 s
            if let (Value::Remote(r), Some(tub)) = (&reference, i.tub()) {
                let weak = Arc::downgrade(inner);
                let watch = tub.notify_on_disconnect(r, move || {
                    if let Some(inner) = weak.upgrade() {
                        let mut i = inner.lock().unwrap_or_else(|e| e.into_inner());
                        if i.state != ReconnectState::Connected {
                            return;
                        }
                        i.watch = None;
                        let delay = i.backoff.lost();
                        schedule(&inner, &mut i, delay);
                    }
                });
                i.watch = Some(watch);
            }
            // the callback runs without the lock (it may stop us)
            let mut callback = std::mem::replace(&mut i.callback, Box::new(|_| {}));
            drop(i);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(reference)));
            let mut i = inner.lock().unwrap_or_else(|e| e.into_inner());
            if i.state != ReconnectState::Stopped {
                i.callback = callback;
            } else {
                // stopped meanwhile: let it go (after the lock) as stop does
                drop(i);
                drop(callback);
            }
        }
        Err(e) => {
            i.last_failure = Some(e);
            let delay = i.backoff.failed(&mut SystemRng);
            schedule(inner, &mut i, delay);
        }
    }
}

impl Tub {
    /// Python's `Tub.connectTo`: gets a reference to `furl` now (reusing
    /// a connection to its Tub), calls `connected` with it, and whenever
    /// the connection is lost or an attempt fails, tries again on Python's
    /// schedule ([`Backoff`]). `connected` runs on an engine thread, once
    /// per connection.
    pub fn connect_to(
        &self,
        furl: &str,
        connected: impl FnMut(Value) + Send + 'static,
    ) -> Result<Reconnector, Error> {
        let furl = Furl::parse(furl)?;
        if self.lock().shutdown {
            return Err(Error::Shutdown);
        }
        let inner = Arc::new(Mutex::new(Inner {
            tub: Arc::downgrade(&self.shared),
            furl,
            callback: Box::new(connected),
            backoff: Backoff::new(),
            state: ReconnectState::Unstarted,
            generation: 0,
            last_attempt: None,
            next_attempt: None,
            next_due: None,
            last_failure: None,
            watch: None,
            winning_hint: None,
            established_at: None,
        }));
        self.lock().reconnectors.push(inner.clone());
        attempt(&inner, None);
        Ok(Reconnector { inner })
    }
}

/// Stops every reconnector of a Tub being shut down.
pub(crate) fn stop_all(all: Vec<Handle>) {
    for inner in all {
        Reconnector { inner }.stop();
    }
}

pub(crate) type Handle = Arc<Mutex<Inner>>;

#[cfg(test)]
mod tests {
    use super::*;
    use foolscap_core::rng::SeededRng;

    #[test]
    fn failures_multiply_the_delay_by_e_with_jitter_and_a_cap() {
        let mut rng = SeededRng::new(7);
        // the mean over many schedules follows e^k up to the cap
        let runs = 4000;
        let mut sums = [0.0f64; 12];
        for _ in 0..runs {
            let mut b = Backoff::new();
            for s in sums.iter_mut() {
                *s += b.failed(&mut rng).as_secs_f64();
            }
        }
        let means: Vec<f64> = sums.iter().map(|s| s / runs as f64).collect();
        for (k, m) in means.iter().enumerate().take(7) {
            let want = Backoff::FACTOR.powi(k as i32 + 1);
            assert!(
                (m / want - 1.0).abs() < 0.05,
                "failure {}: {m} vs {want}",
                k + 1
            );
        }
        // capped: about an hour from the ninth failure on
        for m in &means[9..] {
            assert!((m / 3600.0 - 1.0).abs() < 0.05, "{m}");
        }
    }

    #[test]
    fn the_jitter_is_about_twelve_percent() {
        let mut rng = SeededRng::new(3);
        let draws: Vec<f64> = (0..20_000)
            .map(|_| Backoff::new().failed(&mut rng).as_secs_f64() / Backoff::FACTOR)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(
            (var.sqrt() - Backoff::JITTER).abs() < 0.005,
            "{}",
            var.sqrt()
        );
    }

    #[test]
    fn a_lost_connection_and_reset_start_over_at_one_second() {
        let mut rng = SeededRng::new(1);
        let mut b = Backoff::new();
        b.failed(&mut rng);
        b.failed(&mut rng);
        assert!(b.delay() > 3.0);
        assert_eq!(b.lost(), Duration::from_secs(1));
        assert_eq!(b.delay(), 1.0);
        b.failed(&mut rng);
        b.reset();
        assert_eq!(b.delay(), 1.0);
    }
}
