//! The in-process logger: Python's `foolscap.logging.log.FoolscapLogger`
//! (`log.msg`, `log.err`, history buffers, generation thresholds,
//! incidents, `FLOGFILE`), shared by every Tub of a process.
//!
//! Unlike the rest of the crate this module reads the system clock, makes
//! random numbers, writes files (incidents, `FLOGFILE`) and starts one
//! short-lived thread per incident (the 5-second trailing window).
//!
//! Locking: one lock guards numbering-independent state (thresholds,
//! buffers, observer lists); a second one the incident being recorded, and
//! a third the `FLOGFILE` sink. The order is always state → incident, and
//! no observer is ever called with any of them held.

use crate::event::Event;
use crate::files::{self, Output};
use crate::flogfile::FlogWriter;
use crate::level;
use crate::repr::{dict_repr, str_string};
use crate::value::{Dict, Failure, Value};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Events kept per (facility, level) pair unless [`Logger::set_buffer_size`]
/// says otherwise (Python's `DEFAULT_SIZELIMIT`).
pub const DEFAULT_BUFFER_SIZE: usize = 100;
/// The generation threshold of a facility nobody configured.
pub const DEFAULT_THRESHOLD: i64 = level::NOISY;
/// Incident file names remembered ([`Logger::recent_incidents`]).
pub const MAX_RECORDED_INCIDENTS: usize = 20;
/// How long an incident keeps recording after its trigger.
pub const INCIDENT_TRAILING_DELAY: Duration = Duration::from_secs(5);
/// How many events after the trigger an incident records at most.
pub const INCIDENT_TRAILING_EVENTS: usize = 100;

/// An event observer.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;
/// An incident observer: `(name, trigger)`.
pub type IncidentObserver = Arc<dyn Fn(&str, &Event) + Send + Sync>;

/// A handle on a logger (cheap to clone; all clones share one state).
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

/// Handle for removing an observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

/// One facility's threshold and history buffers (by level).
#[derive(Default)]
struct Facility {
    threshold: Option<i64>,
    sizes: HashMap<i64, usize>,
    buffers: HashMap<i64, VecDeque<Arc<Event>>>,
}

struct Inner {
    incarnation: String,
    next_num: AtomicU64,
    next_id: AtomicU64,
    state: Mutex<State>,
    incident: Mutex<Option<Recording>>,
    flogfile: Mutex<Option<FlogSink>>,
    /// Whether `flogfile` holds a sink (read without its lock).
    has_flogfile: std::sync::atomic::AtomicBool,
}

impl State {
    fn facility(&self, f: Option<&str>) -> Option<&Facility> {
        match f {
            None => Some(&self.no_facility),
            Some(f) => self.facilities.get(f),
        }
    }
    fn facility_mut(&mut self, f: Option<&str>) -> &mut Facility {
        match f {
            None => &mut self.no_facility,
            Some(f) => {
                if !self.facilities.contains_key(f) {
                    self.facilities.insert(f.to_owned(), Facility::default());
                }
                self.facilities.get_mut(f).expect("just inserted")
            }
        }
    }
    /// Every buffered event, unsorted.
    fn buffered(&self) -> Vec<Arc<Event>> {
        std::iter::once(&self.no_facility)
            .chain(self.facilities.values())
            .flat_map(|f| f.buffers.values())
            .flat_map(|q| q.iter().cloned())
            .collect()
    }
}

struct State {
    /// By facility name; the events without one are in `no_facility`.
    facilities: HashMap<String, Facility>,
    no_facility: Facility,
    observers: Arc<Vec<(ObserverId, Observer)>>,
    incident_observers: Arc<Vec<(ObserverId, IncidentObserver)>>,
    log_dir: Option<PathBuf>,
    recent_incidents: VecDeque<String>,
    incidents_declared: u64,
    incidents_recorded: u64,
    trailing_delay: Option<Duration>,
    trailing_events: usize,
    /// Incidents whose files are being finished (for `finish_incident`).
    finishing: Vec<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("incarnation", &self.inner.incarnation)
            .finish_non_exhaustive()
    }
}

impl Default for Logger {
    fn default() -> Logger {
        Logger::new()
    }
}

static GLOBAL: OnceLock<Logger> = OnceLock::new();

/// Seconds since the epoch, as Python's `time.time()`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The `versions` dict our headers carry (Python puts its application
/// versions there: `{"foolscap": …, "twisted": …}`).
pub fn app_versions() -> Dict {
    let mut d = Dict::new();
    d.insert("foolscap-rs", env!("CARGO_PKG_VERSION"));
    d
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::getrandom(&mut b).is_err() {
        // no OS randomness: mix the clock, the pid and a counter
        static SALT: AtomicU64 = AtomicU64::new(0);
        let mut x = (now().to_bits())
            ^ ((std::process::id() as u64) << 32)
            ^ SALT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        for byte in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
    }
    b
}

/// Foolscap's base32 (lowercase `a-z2-7`, no padding).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // an observer panicking elsewhere never leaves our state half-changed
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Logger {
    /// The process-wide logger (one incarnation per process, as Python).
    /// Created on first use; `FLOGFILE`/`FLOGLEVEL` are read then, and
    /// `FLOGFILE` is removed from the environment (so child processes do
    /// not write to the same file), as Python does. Call
    /// [`Logger::flush`] (or keep a [`FlushGuard`]) before the program
    /// ends so that a `FLOGFILE` is complete.
    pub fn global() -> Logger {
        GLOBAL
            .get_or_init(|| {
                let l = Logger::new();
                l.open_flogfile_from_env();
                l
            })
            .clone()
    }

    /// A private logger with its own incarnation, history and numbering
    /// (tests, embedding).
    pub fn new() -> Logger {
        let inc = random_bytes::<8>();
        let incarnation = inc.iter().map(|b| format!("{:02x}", b)).collect();
        Logger {
            inner: Arc::new(Inner {
                incarnation,
                next_num: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
                state: Mutex::new(State {
                    facilities: HashMap::new(),
                    no_facility: Facility::default(),
                    observers: Arc::new(Vec::new()),
                    incident_observers: Arc::new(Vec::new()),
                    log_dir: None,
                    recent_incidents: VecDeque::new(),
                    incidents_declared: 0,
                    incidents_recorded: 0,
                    trailing_delay: Some(INCIDENT_TRAILING_DELAY),
                    trailing_events: INCIDENT_TRAILING_EVENTS,
                    finishing: Vec::new(),
                }),
                incident: Mutex::new(None),
                flogfile: Mutex::new(None),
                has_flogfile: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Whether two handles share one logger.
    pub fn same(&self, other: &Logger) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// 16 lowercase hex characters.
    pub fn incarnation(&self) -> String {
        self.inner.incarnation.clone()
    }

    /// Python's `log.msg(**kw)`: `fields` are the caller's keyword
    /// arguments (message/format/args/level/facility/parent/failure/
    /// anything). Fills num (consumed even if dropped), time (now, unless
    /// given), level (20 unless given), incarnation. Applies the generation
    /// threshold, stores in history, feeds FLOGFILE, observers and the
    /// incident trigger. Returns the num.
    pub fn msg(&self, fields: Dict) -> u64 {
        self.msg_positional(fields, None)
    }

    /// `msg` with Python's positional arguments: `log.msg(message, *args,
    /// **fields)` (the message and args land after `num` and `level`, as
    /// in Python's dict; ignored when `fields` has `format` or `message`).
    pub fn msg_positional(
        &self,
        mut fields: Dict,
        positional: Option<(String, Vec<Value>)>,
    ) -> u64 {
        let num = match fields.get("num") {
            Some(v) => v.as_i64().map(|n| n as u64).unwrap_or(0),
            None => {
                let n = self.inner.next_num.fetch_add(1, Ordering::Relaxed);
                fields.insert("num", n);
                n
            }
        };
        if !fields.contains_key("level") {
            fields.insert("level", level::OPERATIONAL);
        }
        let lvl = match fields.get("level").and_then(Value::as_f64) {
            Some(l) => l,
            None => {
                // Python's `level < threshold` raises here: the call becomes
                // an internal-error event instead.
                let mut text = String::from("internal error in log._msg, args=(), kwargs=");
                dict_repr(&fields, &mut text);
                text.push_str(", exception=TypeError('level is not a number')");
                let mut d = Dict::new();
                d.insert("num", num);
                d.insert("level", level::WEIRD);
                d.insert("facility", "foolscap/internal-error");
                d.insert("message", text);
                fields = d;
                level::WEIRD as f64
            }
        };
        {
            let facility = fields.get("facility").and_then(Value::as_str);
            let st = lock(&self.inner.state);
            let threshold = st
                .facility(facility)
                .and_then(|f| f.threshold)
                .unwrap_or(DEFAULT_THRESHOLD);
            if lvl < threshold as f64 {
                return num;
            }
        }
        if fields.contains_key("format") {
        } else if let Some(m) = fields.get("message") {
            if !matches!(m, Value::Str(_)) {
                let s = str_string(m);
                fields.insert("message", s);
            }
        } else if let Some((m, args)) = positional {
            fields.insert("message", m);
            if !args.is_empty() {
                fields.insert("args", Value::Tuple(args));
            }
        } else {
            fields.insert("message", "");
        }
        if !fields.contains_key("time") {
            fields.insert("time", now());
        }
        if matches!(fields.get("stacktrace"), Some(Value::Bool(true))) {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let lines: Vec<Value> = bt.lines().map(|l| Value::Str(format!("{}\n", l))).collect();
            fields.insert("stacktrace", Value::List(lines));
        }
        fields.insert(
            "incarnation",
            Value::Tuple(vec![
                Value::Str(self.inner.incarnation.clone()),
                Value::None,
            ]),
        );
        let level_key = fields
            .get("level")
            .and_then(Value::as_i64)
            .unwrap_or(lvl as i64);
        let event = Arc::new(Event(fields));
        self.store(level_key, lvl, event);
        num
    }

    fn store(&self, level_key: i64, lvl: f64, event: Arc<Event>) {
        let mut st = lock(&self.inner.state);
        let fac = st.facility_mut(event.get("facility").and_then(Value::as_str));
        let size = fac
            .sizes
            .get(&level_key)
            .copied()
            .unwrap_or(DEFAULT_BUFFER_SIZE);
        let buf = fac.buffers.entry(level_key).or_default();
        buf.push_back(event.clone());
        while buf.len() > size {
            buf.pop_front();
        }
        let observers = st.observers.clone();
        // incidents: decided under the state lock, written under the
        // incident lock taken before the state lock is released (so no event
        // can slip between the history snapshot and the trailing events)
        let mut finishing = None;
        if st.log_dir.is_some() {
            let mut g = lock(&self.inner.incident);
            let trigger = lvl >= level::WEIRD as f64;
            if trigger {
                st.incidents_declared += 1;
            }
            let action = if g.is_some() {
                IncidentAction::Trailing
            } else if trigger {
                let mut hist = st.buffered();
                hist.sort_by_key(|e| e.num().unwrap_or(i64::MIN));
                let dir = st.log_dir.clone().unwrap_or_default();
                IncidentAction::Declare(hist, dir, st.trailing_delay, st.trailing_events)
            } else {
                IncidentAction::None
            };
            drop(st);
            finishing = self.incident_step(&mut g, action, &event);
        } else {
            drop(st);
        }
        match finishing {
            Some(Ok(rx)) => {
                let mut st = lock(&self.inner.state);
                st.finishing
                    .retain(|r| matches!(r.try_recv(), Err(mpsc::TryRecvError::Empty)));
                st.finishing.push(rx);
            }
            // no thread for the window: the history alone, completed here
            // (with no lock held)
            Some(Err(rec)) => rec.finish(self),
            None => {}
        }
        if self.inner.has_flogfile.load(Ordering::Relaxed) {
            if let Some(sink) = lock(&self.inner.flogfile).as_mut() {
                sink.event(&event, lvl);
            }
        }
        for (_, o) in observers.iter() {
            o(&event);
        }
    }

    /// Called with the incident lock held (and not the state lock); gives
    /// back the completion signal of an incident it started (or the
    /// incident itself when no thread could be started for it, to be
    /// completed once the lock is released).
    fn incident_step(
        &self,
        g: &mut Option<Recording>,
        action: IncidentAction,
        event: &Arc<Event>,
    ) -> Option<Result<mpsc::Receiver<()>, Recording>> {
        match action {
            IncidentAction::None => None,
            IncidentAction::Trailing => {
                let rec = g.as_mut()?;
                if rec.remaining > 0 {
                    rec.remaining -= 1;
                    rec.write(event, now());
                } else {
                    // the first event past the limit ends the recording
                    if let Some(rec) = g.take() {
                        rec.stop();
                    }
                }
                None
            }
            IncidentAction::Declare(hist, dir, delay, limit) => {
                match Recording::start(self, &dir, event.clone(), &hist, limit) {
                    Ok(rec) => {
                        let id = rec.id;
                        let (tx, rx) = mpsc::channel::<Recording>();
                        let (done_tx, done_rx) = mpsc::channel::<()>();
                        let logger = self.clone();
                        let spawned = std::thread::Builder::new()
                            .name("foolscap-incident".into())
                            .spawn(move || {
                                let rec = match delay {
                                    Some(d) => match rx.recv_timeout(d) {
                                        Ok(rec) => Some(rec),
                                        Err(_) => {
                                            let mut g = lock(&logger.inner.incident);
                                            if g.as_ref().is_some_and(|r| r.id == id) {
                                                g.take()
                                            } else {
                                                drop(g);
                                                rx.recv().ok()
                                            }
                                        }
                                    },
                                    None => rx.recv().ok(),
                                };
                                if let Some(rec) = rec {
                                    rec.finish(&logger);
                                }
                                let _ = done_tx.send(());
                            });
                        match spawned {
                            Ok(_) => {
                                let mut rec = rec;
                                rec.finisher = Some(tx);
                                if delay.is_none() {
                                    rec.stop();
                                } else {
                                    *g = Some(rec);
                                }
                                Some(Ok(done_rx))
                            }
                            Err(_) => Some(Err(rec)),
                        }
                    }
                    Err(e) => {
                        eprintln!("foolscap-logging: cannot write an incident file: {}", e);
                        None
                    }
                }
            }
        }
    }

    /// Python's `log.err(failure, why, **kw)`: logs `failure`, `why` (or
    /// None) and `isError=1` with the caller's `fields`; the message is `""`.
    pub fn err(&self, failure: Failure, why: Option<&str>, fields: Dict) -> u64 {
        let mut d = Dict::new();
        d.insert("failure", failure);
        d.insert("why", why.map(Value::from).unwrap_or(Value::None));
        d.insert("isError", 1i64);
        for (k, v) in fields.iter() {
            d.insert(k, v.clone());
        }
        self.msg(d)
    }

    /// Every event now in the history buffers, sorted by num (catch-up,
    /// incidents).
    pub fn history(&self) -> Vec<Event> {
        let mut all = lock(&self.inner.state).buffered();
        all.sort_by_key(|e| e.num().unwrap_or(i64::MIN));
        all.into_iter().map(|e| (*e).clone()).collect()
    }

    /// `f` is called once for every stored event (after it is stored, with
    /// no logger lock held, on the thread that logged it — which may be an
    /// engine's loop thread: do not block in `f`).
    pub fn add_observer(&self, f: Arc<dyn Fn(&Event) + Send + Sync>) -> ObserverId {
        let id = ObserverId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut st = lock(&self.inner.state);
        let mut v = (*st.observers).clone();
        v.push((id, f));
        st.observers = Arc::new(v);
        id
    }

    /// Remove an event or incident observer (unknown ids are ignored).
    pub fn remove_observer(&self, id: ObserverId) {
        let mut st = lock(&self.inner.state);
        if st.observers.iter().any(|(i, _)| *i == id) {
            let v = st
                .observers
                .iter()
                .filter(|(i, _)| *i != id)
                .cloned()
                .collect();
            st.observers = Arc::new(v);
        }
        if st.incident_observers.iter().any(|(i, _)| *i == id) {
            let v = st
                .incident_observers
                .iter()
                .filter(|(i, _)| *i != id)
                .cloned()
                .collect();
            st.incident_observers = Arc::new(v);
        }
    }

    /// Python's `log.setLogDir`: creates the directory, enables incidents
    /// there.
    pub fn set_log_dir(&self, dir: impl AsRef<Path>) -> std::io::Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let abs = std::path::absolute(dir)?;
        lock(&self.inner.state).log_dir = Some(abs);
        Ok(())
    }

    /// The incident directory, once [`Logger::set_log_dir`] gave one.
    pub fn log_dir(&self) -> Option<PathBuf> {
        lock(&self.inner.state).log_dir.clone()
    }

    /// `f(name, trigger)` is called after an incident file is complete
    /// (name = file name without `.flog.bz2`). Same threading rules as
    /// `add_observer` (it runs on the incident's own thread).
    pub fn add_incident_observer(&self, f: IncidentObserver) -> ObserverId {
        let id = ObserverId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut st = lock(&self.inner.state);
        let mut v = (*st.incident_observers).clone();
        v.push((id, f));
        st.incident_observers = Arc::new(v);
        id
    }

    /// Python's `set_generation_threshold(level, facility)`: events of that
    /// exact facility (`None`: events without one) below `level` are
    /// dropped (their number is still used up).
    pub fn set_generation_threshold(&self, level: i64, facility: Option<&str>) {
        lock(&self.inner.state).facility_mut(facility).threshold = Some(level);
    }

    /// The generation threshold of `facility` (default NOISY).
    pub fn generation_threshold(&self, facility: Option<&str>) -> i64 {
        lock(&self.inner.state)
            .facility(facility)
            .and_then(|f| f.threshold)
            .unwrap_or(DEFAULT_THRESHOLD)
    }

    /// Python's `set_buffer_size(level, size, facility)`: how many events of
    /// this (facility, level) pair the history keeps (default 100).
    pub fn set_buffer_size(&self, level: i64, size: usize, facility: Option<&str>) {
        let mut st = lock(&self.inner.state);
        let fac = st.facility_mut(facility);
        fac.sizes.insert(level, size);
        if let Some(q) = fac.buffers.get_mut(&level) {
            while q.len() > size {
                q.pop_front();
            }
        }
    }

    /// Change how long and for how many events an incident keeps recording
    /// after its trigger (Python's `TRAILING_DELAY` and
    /// `TRAILING_EVENT_LIMIT`: 5 s and 100; `None` records the history
    /// only, as Python's `NonTrailingIncidentReporter`). Applies to
    /// incidents declared afterwards.
    pub fn set_incident_trailing(&self, delay: Option<Duration>, events: usize) {
        let mut st = lock(&self.inner.state);
        st.trailing_delay = delay;
        st.trailing_events = events;
    }

    /// The paths of the last 20 incident files written (oldest first).
    pub fn recent_incidents(&self) -> Vec<PathBuf> {
        let st = lock(&self.inner.state);
        let dir = st.log_dir.clone().unwrap_or_default();
        st.recent_incidents
            .iter()
            .map(|n| dir.join(format!("{}.flog.bz2", n)))
            .collect()
    }

    /// (incidents declared, incidents recorded) so far: a trigger absorbed
    /// by an incident already recording counts as declared only.
    pub fn incident_counts(&self) -> (u64, u64) {
        let st = lock(&self.inner.state);
        (st.incidents_declared, st.incidents_recorded)
    }

    /// Stop the incident being recorded (if any) now and wait until every
    /// incident file is complete and its observers have been called.
    /// Not from inside an incident observer (it would wait for itself).
    pub fn finish_incidents(&self) {
        let taken = lock(&self.inner.incident).take();
        if let Some(rec) = taken {
            rec.stop();
        }
        let waits = std::mem::take(&mut lock(&self.inner.state).finishing);
        for w in waits {
            let _ = w.recv();
        }
    }

    /// Write a flogfile of every event from now on with `level >=
    /// threshold` (what `FLOGFILE`/`FLOGLEVEL` do): header
    /// `log-file-observer`, wrappers from `"local"`; compressed when the
    /// name ends in `.bz2`. Replaces (and completes) any earlier one.
    pub fn set_flogfile(&self, path: impl AsRef<Path>, threshold: i64) -> std::io::Result<()> {
        let mut w = files::create(path.as_ref())?;
        let mut h = Dict::new();
        h.insert("versions", app_versions());
        h.insert("pid", std::process::id());
        h.insert("threshold", threshold);
        w.write_header("log-file-observer", &h)?;
        let old = lock(&self.inner.flogfile).replace(FlogSink {
            w: Some(w),
            threshold,
        });
        self.inner.has_flogfile.store(true, Ordering::Relaxed);
        if let Some(mut old) = old {
            old.close();
        }
        Ok(())
    }

    fn open_flogfile_from_env(&self) {
        let Some(path) = std::env::var_os("FLOGFILE") else {
            return;
        };
        std::env::remove_var("FLOGFILE");
        if path.is_empty() {
            return;
        }
        let threshold = std::env::var("FLOGLEVEL")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(level::OPERATIONAL);
        if self.set_flogfile(&path, threshold).is_err() {
            eprintln!(
                "FLOGFILE: unable to write to {}, ignoring",
                Path::new(&path).display()
            );
        }
    }

    /// Make the `FLOGFILE` output complete on disk as it stands: a plain
    /// file is flushed; a `.bz2` file gets its compressed stream finished
    /// (later events go on in a further bzip2 stream of the same file,
    /// which Python's `bz2` reader and ours read as one). Call it before
    /// the program exits (the global logger is never dropped); a Tub's
    /// shutdown calls it.
    pub fn flush(&self) {
        if let Some(sink) = lock(&self.inner.flogfile).as_mut() {
            sink.flush();
        }
    }

    /// A guard that calls [`Logger::finish_incidents`] and
    /// [`Logger::flush`] when dropped: keep one in `main`.
    pub fn flush_guard(&self) -> FlushGuard {
        FlushGuard(self.clone())
    }
}

/// Completes the logger's files when dropped (see [`Logger::flush_guard`]).
#[must_use = "the files are completed when the guard is dropped"]
pub struct FlushGuard(Logger);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.0.finish_incidents();
        self.0.flush();
    }
}

enum IncidentAction {
    None,
    Trailing,
    Declare(Vec<Arc<Event>>, PathBuf, Option<Duration>, usize),
}

struct FlogSink {
    w: Option<FlogWriter<Output>>,
    threshold: i64,
}

impl FlogSink {
    fn event(&mut self, e: &Event, lvl: f64) {
        if lvl < self.threshold as f64 {
            return;
        }
        if let Some(w) = self.w.as_mut() {
            if w.write_event(e, "local", now()).is_err() {
                self.w = None;
            }
        }
    }
    fn flush(&mut self) {
        let Some(w) = self.w.take() else { return };
        match w.finish() {
            Ok(Output::Plain(f)) => self.w = Some(FlogWriter::resume(Output::Plain(f))),
            Ok(Output::Bz2(enc)) => {
                if let Ok(f) = enc.finish().and_then(|mut f| f.flush().map(|_| f)) {
                    let enc = bzip2::write::BzEncoder::new(f, bzip2::Compression::best());
                    self.w = Some(FlogWriter::resume(Output::Bz2(enc)));
                }
            }
            Err(_) => {}
        }
    }
    fn close(&mut self) {
        if let Some(w) = self.w.take() {
            if let Ok(out) = w.finish() {
                let _ = out.finish();
            }
        }
    }
}

struct Recording {
    id: u64,
    name: String,
    dir: PathBuf,
    trigger: Arc<Event>,
    remaining: usize,
    plain: FlogWriter<BufWriter<File>>,
    bz: FlogWriter<Output>,
    finisher: Option<mpsc::Sender<Recording>>,
}

static NEXT_RECORDING: AtomicU64 = AtomicU64::new(0);

/// `YYYY-MM-DD--HH-MM-SSZ` of a time in seconds since the epoch (UTC).
pub fn incident_time(t: f64) -> String {
    let (y, m, d, hh, mm, ss) = crate::timefmt::civil(t.floor() as i64);
    format!("{y:04}-{m:02}-{d:02}--{hh:02}-{mm:02}-{ss:02}Z")
}

impl Recording {
    fn start(
        _logger: &Logger,
        dir: &Path,
        trigger: Arc<Event>,
        hist: &[Arc<Event>],
        limit: usize,
    ) -> std::io::Result<Recording> {
        let t = now();
        let name = format!(
            "incident-{}-{}",
            incident_time(t),
            base32(&random_bytes::<4>())
        );
        let plain_path = dir.join(format!("{}.flog", name));
        let tmp_path = dir.join(format!("{}.flog.bz2.tmp", name));
        let mut plain = FlogWriter::new(BufWriter::new(File::create(&plain_path)?))?;
        let mut bz = files::create_bz2(&tmp_path)?;
        let mut h = Dict::new();
        h.insert("trigger", trigger.0.clone());
        h.insert("versions", app_versions());
        h.insert("pid", std::process::id());
        plain.write_header("incident", &h)?;
        bz.write_header("incident", &h)?;
        let mut rec = Recording {
            id: NEXT_RECORDING.fetch_add(1, Ordering::Relaxed),
            name,
            dir: dir.to_owned(),
            trigger,
            remaining: limit,
            plain,
            bz,
            finisher: None,
        };
        for e in hist {
            rec.write(e, t);
        }
        let _ = rec.plain.flush();
        Ok(rec)
    }

    fn write(&mut self, e: &Event, rx_time: f64) {
        let _ = self.plain.write_event(e, "local", rx_time);
        let _ = self.bz.write_event(e, "local", rx_time);
    }

    /// Hand the recording to its thread, which completes the files.
    fn stop(mut self) {
        if let Some(tx) = self.finisher.take() {
            let _ = tx.send(self);
        }
    }

    fn finish(self, logger: &Logger) {
        let base = self.dir.join(format!("{}.flog", self.name));
        let tmp = self.dir.join(format!("{}.flog.bz2.tmp", self.name));
        let done = self.dir.join(format!("{}.flog.bz2", self.name));
        let ok = self
            .bz
            .finish()
            .and_then(Output::finish)
            .and_then(|_| std::fs::rename(&tmp, &done));
        let _ = self.plain.finish();
        let _ = std::fs::remove_file(&base);
        if let Err(e) = ok {
            eprintln!(
                "foolscap-logging: cannot complete incident {}: {}",
                self.name, e
            );
            return;
        }
        let observers = {
            let mut st = lock(&logger.inner.state);
            st.incidents_recorded += 1;
            st.recent_incidents.push_back(self.name.clone());
            while st.recent_incidents.len() > MAX_RECORDED_INCIDENTS {
                st.recent_incidents.pop_front();
            }
            st.incident_observers.clone()
        };
        for (_, o) in observers.iter() {
            o(&self.name, &self.trigger);
        }
    }
}

impl Logger {
    /// The number the next `msg` without `num` will get.
    pub fn next_num(&self) -> u64 {
        self.inner.next_num.load(Ordering::Relaxed)
    }
}
