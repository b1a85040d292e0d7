//! The logport: a Tub's [`LogPublisher`], which serves
//! `RILogPublisher` over a [`Logger`]'s events and incidents with the
//! behaviour of Python's `foolscap.logging.publish` (docs/logging.md,
//! "The logport").
//!
//! Threads: the logger calls its observers on whatever thread logged
//! (possibly an engine's loop thread, possibly with an engine lock held),
//! so a subscription's observer only puts the event in its bounded queue
//! and wakes the publisher's sender thread; that thread makes the calls.
//! No lock of this module is held across a Tub call.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use foolscap_core::id::ObjectId;
use foolscap_core::value::pyrepr::str_repr;
use foolscap_core::value::Value as WireValue;
use foolscap_logging::flogfile::ReadLimits;
use foolscap_logging::logger::ObserverId;
use foolscap_logging::{files, Event, Logger, Value};

use super::convert::event_to_wire;
use super::interfaces::{
    AnyDict, Header, Incidents, RILogFileClient, RILogObserverClient, RILogPublisher,
    RILogPublisherServer, RISubscription, RISubscriptionClient, RISubscriptionServer, Versions,
};
use crate::typed::Failure;
use crate::{Object, Tub};

/// At most this many live `msg` calls of one subscription wait for their
/// answers (Python's `Subscription.MAX_IN_FLIGHT`).
pub const MAX_IN_FLIGHT: usize = 10;
/// At most this many events wait in one subscription's queue; newer ones
/// are dropped while it is full (Python's `Subscription.MAX_QUEUE_SIZE`).
pub const MAX_QUEUE_SIZE: usize = 2000;

/// The version of Python foolscap whose protocol we speak, sent by
/// `get_versions` as `foolscap` (what Python's tools print first).
pub const FOOLSCAP_PROTOCOL_VERSION: &str = "24.9.0";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Tub that may be gone: subscriptions do not keep their Tub alive.
#[derive(Clone)]
struct WeakTub(Weak<crate::tub::Shared>);

impl WeakTub {
    fn new(tub: &Tub) -> WeakTub {
        WeakTub(Arc::downgrade(&tub.shared))
    }
    fn get(&self) -> Option<Tub> {
        self.0.upgrade().map(|shared| Tub { shared })
    }
}

/// Counts of a publisher's subscriptions (for monitoring and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Event subscriptions running (started: events logged from now on
    /// reach them).
    pub subscriptions: usize,
    /// Incident subscriptions running.
    pub incident_subscriptions: usize,
    /// Events waiting in the queues of all subscriptions.
    pub queued: usize,
    /// `msg` calls waiting for their answers.
    pub in_flight: usize,
    /// Events dropped because a queue was full, since the start.
    pub dropped: u64,
}

/// Python's `LogPublisher`: serves `RILogPublisher` (wrap it with
/// [`LogPublisher::object`]). Cheap to clone; clones share the
/// subscriptions.
#[derive(Clone)]
pub struct LogPublisher {
    inner: Arc<PubInner>,
}

struct PubInner {
    logger: Logger,
    /// Wakes the sender thread (started with the first subscription).
    wake: Mutex<Option<mpsc::Sender<Arc<Sub>>>>,
    /// Running subscriptions, by the object id their RISubscription has
    /// in its Tub (for the deprecated `unsubscribe(subscription)`).
    subs: Mutex<HashMap<(usize, ObjectId), Arc<Sub>>>,
    dropped: std::sync::atomic::AtomicU64,
}

/// What a subscription delivers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Events,
    Incidents,
}

/// One queued delivery.
enum Item {
    Event(Arc<Event>),
    Incident(String, Arc<Event>),
}

struct Sub {
    kind: Kind,
    tub: WeakTub,
    /// The observer (a peer's reference, or one of our objects).
    observer: WireValue,
    publisher: Weak<PubInner>,
    state: Mutex<SubState>,
}

#[derive(Default)]
struct SubState {
    subscribed: bool,
    /// Unsubscribed (possibly before it started: then it never starts).
    ended: bool,
    /// Held back until the catch-up is out.
    starting: bool,
    /// A wake-up of the sender thread is pending.
    scheduled: bool,
    queue: VecDeque<Item>,
    in_flight: usize,
    observer_id: Option<ObserverId>,
    disconnect_watch: Option<u64>,
    key: Option<(usize, ObjectId)>,
}

impl Default for LogPublisher {
    fn default() -> Self {
        LogPublisher::new(Logger::global())
    }
}

impl LogPublisher {
    /// A publisher of `logger`'s events and incidents.
    pub fn new(logger: Logger) -> LogPublisher {
        LogPublisher {
            inner: Arc::new(PubInner {
                logger,
                wake: Mutex::new(None),
                subs: Mutex::new(HashMap::new()),
                dropped: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The logger it publishes.
    pub fn logger(&self) -> &Logger {
        &self.inner.logger
    }

    /// The object to register or pass (announces `RILogPublisher`).
    pub fn object(&self) -> Arc<dyn Object> {
        Arc::new(RILogPublisherServer(self.clone()))
    }

    /// The subscriptions' counts now.
    pub fn stats(&self) -> PublisherStats {
        let subs: Vec<Arc<Sub>> = lock(&self.inner.subs).values().cloned().collect();
        let mut s = PublisherStats {
            dropped: self
                .inner
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            ..PublisherStats::default()
        };
        for sub in subs {
            let st = lock(&sub.state);
            if !st.subscribed || st.starting {
                // answered, not started yet (or ended)
                continue;
            }
            match sub.kind {
                Kind::Events => s.subscriptions += 1,
                Kind::Incidents => s.incident_subscriptions += 1,
            }
            s.queued += st.queue.len();
            s.in_flight += st.in_flight;
        }
        s
    }

    /// The sender thread's wake-up channel (the thread starts with the
    /// first subscription and ends when every subscription and the
    /// publisher are gone).
    fn sender(&self) -> Option<mpsc::Sender<Arc<Sub>>> {
        let mut w = lock(&self.inner.wake);
        if w.is_none() {
            let (tx, rx) = mpsc::channel::<Arc<Sub>>();
            let spawned = std::thread::Builder::new()
                .name("foolscap-logport".into())
                .spawn(move || {
                    while let Ok(sub) = rx.recv() {
                        sub.send_some();
                    }
                });
            if spawned.is_err() {
                return None;
            }
            *w = Some(tx);
        }
        w.clone()
    }

    fn subscribe(
        &self,
        kind: Kind,
        observer: RILogObserverClient,
        catch_up: bool,
        since: String,
    ) -> Result<RISubscriptionClient, Failure> {
        let tub = observer.tub().clone();
        let sub = Arc::new(Sub {
            kind,
            tub: WeakTub::new(&tub),
            observer: crate::typed::ToValue::to_value(&observer),
            publisher: Arc::downgrade(&self.inner),
            state: Mutex::new(SubState::default()),
        });
        let handle = RISubscriptionClient::local(&tub, Arc::new(RISubscriptionServer(sub.clone())));
        if let WireValue::Local(id) = crate::typed::ToValue::to_value(&handle) {
            let key = (Arc::as_ptr(&tub.shared) as usize, id);
            lock(&sub.state).key = Some(key);
            lock(&self.inner.subs).insert(key, sub.clone());
        }
        // as Python: the answer first, the subscription on a later turn
        let publisher = self.clone();
        tub.after(Duration::ZERO, move || {
            publisher.start(&sub, catch_up, &since);
        });
        Ok(handle)
    }

    fn start(&self, sub: &Arc<Sub>, catch_up: bool, since: &str) {
        let (Some(tub), Some(wake)) = (sub.tub.get(), self.sender()) else {
            sub.unsubscribe();
            return;
        };
        {
            let mut st = lock(&sub.state);
            if st.ended {
                return;
            }
            st.subscribed = true;
            st.starting = true;
        }
        let logger = &self.inner.logger;
        let weak = Arc::downgrade(sub);
        let id = match sub.kind {
            Kind::Events => {
                let wake = wake.clone();
                logger.add_observer(Arc::new(move |e: &Event| {
                    if let Some(sub) = weak.upgrade() {
                        sub.enqueue(Item::Event(Arc::new(e.clone())), &wake);
                    }
                }))
            }
            Kind::Incidents => {
                let wake = wake.clone();
                logger.add_incident_observer(Arc::new(move |name: &str, trigger: &Event| {
                    if let Some(sub) = weak.upgrade() {
                        sub.enqueue(
                            Item::Incident(name.to_owned(), Arc::new(trigger.clone())),
                            &wake,
                        );
                    }
                }))
            }
        };
        let watch = match &sub.observer {
            WireValue::Remote(r) => {
                let weak = Arc::downgrade(sub);
                Some(tub.notify_on_disconnect(r, move || {
                    if let Some(sub) = weak.upgrade() {
                        sub.unsubscribe();
                    }
                }))
            }
            _ => None,
        };
        let still = {
            let mut st = lock(&sub.state);
            if st.subscribed {
                st.observer_id = Some(id);
                st.disconnect_watch = watch;
            }
            st.subscribed
        };
        if !still {
            // ended meanwhile (a disconnect): undo
            logger.remove_observer(id);
            if let Some(w) = watch {
                tub.cancel_disconnect_watch(w);
            }
            return;
        }
        if catch_up {
            match sub.kind {
                Kind::Events => {
                    for e in logger.history() {
                        let _ = tub.call_only(&sub.observer, "msg", &[event_to_wire(&e)], &[]);
                    }
                }
                Kind::Incidents => {
                    for (name, path) in self.incident_names(since) {
                        if let Some(trigger) = incident_trigger(&path) {
                            let args = [WireValue::bytes(name.as_bytes()), event_to_wire(&trigger)];
                            let _ = tub.call_only(&sub.observer, "new_incident", &args, &[]);
                        }
                    }
                    let _ = tub.call_only(&sub.observer, "done_with_incident_catchup", &[], &[]);
                }
            }
        }
        let go = {
            let mut st = lock(&sub.state);
            st.starting = false;
            let go = !st.queue.is_empty() && !st.scheduled;
            if go {
                st.scheduled = true;
            }
            go
        };
        if go {
            let _ = wake.send(sub.clone());
        }
    }

    /// `(name, path)` of every incident file named after `since` (Python's
    /// `list_incident_names`): `incident*` files in the log directory (the
    /// current one without), `*.tmp` excepted.
    fn incident_names(&self, since: &str) -> Vec<(String, PathBuf)> {
        let dir = self
            .inner
            .logger
            .log_dir()
            .unwrap_or_else(|| PathBuf::from("."));
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let Ok(fname) = entry.file_name().into_string() else {
                continue;
            };
            if !fname.starts_with("incident") || fname.ends_with(".tmp") {
                continue;
            }
            let base = fname.strip_suffix(".bz2").unwrap_or(&fname);
            let base = base.strip_suffix(".flog").unwrap_or(base);
            if base > since {
                // a name met twice (the `.flog` of one being finished
                // beside its `.flog.bz2`): the later listing wins, as in
                // Python's dict
                out.retain(|(n, _)| n != base);
                out.push((base.to_owned(), dir.join(&fname)));
            }
        }
        out.sort();
        out
    }
}

/// The trigger in an incident file's header (`None` for an empty or
/// unreadable file, or one that is no incident).
fn incident_trigger(path: &Path) -> Option<Event> {
    let mut r = files::open(path, ReadLimits::default()).ok()?;
    let rec = r.next_record()?.ok()?;
    let header = rec.as_dict()?.get("header")?.as_dict()?;
    if header.get("type")?.as_str()? != "incident" {
        return None;
    }
    match header.get("trigger")? {
        Value::Dict(d) => Some(Event(d.clone())),
        _ => None,
    }
}

/// Python's `six.ensure_str(v)`.
fn ensure_str(v: &WireValue) -> Result<String, Failure> {
    match v.unanchored() {
        WireValue::Str(s) => Ok(s.as_str().to_owned()),
        WireValue::Bytes(b) => std::str::from_utf8(b).map(str::to_owned).map_err(|e| {
            Failure::new(
                "builtins.UnicodeDecodeError",
                format!(
                    "'utf-8' codec can't decode byte 0x{:02x} in position {}: invalid start byte",
                    b[e.valid_up_to()],
                    e.valid_up_to()
                ),
            )
        }),
        other => Err(Failure::new(
            "builtins.TypeError",
            format!("not expecting type '<class '{}'>'", other.type_name()),
        )),
    }
}

/// Python's `KeyError(text)` (whose `str()` is the repr of the text).
fn key_error(text: &str) -> Failure {
    Failure::new("builtins.KeyError", str_repr(text))
}

impl Sub {
    /// The logger's observer: queue (or drop when full) and wake the
    /// sender; never blocks, never calls the Tub.
    fn enqueue(self: &Arc<Self>, item: Item, wake: &mpsc::Sender<Arc<Sub>>) {
        let go = {
            let mut st = lock(&self.state);
            if !st.subscribed {
                return;
            }
            if st.queue.len() < MAX_QUEUE_SIZE {
                st.queue.push_back(item);
            } else if let Some(p) = self.publisher.upgrade() {
                p.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let go = !st.scheduled && !st.starting;
            if go {
                st.scheduled = true;
            }
            go
        };
        if go {
            let _ = wake.send(self.clone());
        }
    }

    /// On the sender thread: sends what the in-flight limit allows.
    fn send_some(self: &Arc<Self>) {
        let Some(tub) = self.tub.get() else {
            self.unsubscribe();
            return;
        };
        let batch: Vec<Item> = {
            let mut st = lock(&self.state);
            st.scheduled = false;
            if st.starting {
                return;
            }
            let room = MAX_IN_FLIGHT.saturating_sub(st.in_flight);
            let n = room.min(st.queue.len());
            st.in_flight += n;
            st.queue.drain(..n).collect()
        };
        for item in batch {
            let (method, args) = match &item {
                Item::Event(e) => ("msg", vec![event_to_wire(e)]),
                Item::Incident(name, trigger) => (
                    "new_incident",
                    vec![WireValue::bytes(name.as_bytes()), event_to_wire(trigger)],
                ),
            };
            let me = self.clone();
            let sent = tub.call_async(&self.observer, method, &args, &[], move |r| {
                me.answered(r.is_ok());
            });
            if sent.is_err() {
                self.answered(false);
            }
        }
    }

    /// A live call was answered (`ok`) or failed.
    fn answered(self: &Arc<Self>, ok: bool) {
        if !ok {
            // any failed call ends the subscription (what is queued may
            // still go out, as in Python)
            lock(&self.state).in_flight -= 1;
            self.unsubscribe();
            return;
        }
        let go = {
            let mut st = lock(&self.state);
            st.in_flight -= 1;
            let go = !st.queue.is_empty() && !st.scheduled;
            if go {
                st.scheduled = true;
            }
            go
        };
        if go {
            if let Some(p) = self.publisher.upgrade() {
                if let Some(w) = lock(&p.wake).clone() {
                    let _ = w.send(self.clone());
                }
            }
        }
    }

    /// Ends the subscription (idempotent).
    fn unsubscribe(&self) {
        let (id, watch, key) = {
            let mut st = lock(&self.state);
            st.subscribed = false;
            st.ended = true;
            (
                st.observer_id.take(),
                st.disconnect_watch.take(),
                st.key.take(),
            )
        };
        let publisher = self.publisher.upgrade();
        if let (Some(id), Some(p)) = (id, &publisher) {
            p.logger.remove_observer(id);
        }
        if let (Some(w), Some(tub)) = (watch, self.tub.get()) {
            tub.cancel_disconnect_watch(w);
        }
        if let (Some(key), Some(p)) = (key, &publisher) {
            lock(&p.subs).remove(&key);
        }
    }
}

/// The RISubscription a subscriber holds.
impl RISubscription for Arc<Sub> {
    fn unsubscribe(&self) {
        Sub::unsubscribe(self)
    }
}

impl RILogPublisher for LogPublisher {
    fn get_versions(&self) -> Versions {
        let b = |s: &str| WireValue::bytes(s.as_bytes());
        let mut v = vec![(b("foolscap"), b(FOOLSCAP_PROTOCOL_VERSION))];
        for (k, val) in foolscap_logging::logger::app_versions().iter() {
            if let Value::Str(s) = val {
                v.push((b(k), b(s)));
            }
        }
        AnyDict(v)
    }

    fn get_pid(&self) -> i32 {
        std::process::id() as i32
    }

    fn subscribe_to_all(
        &self,
        observer: RILogObserverClient,
        catch_up: Option<bool>,
    ) -> Result<RISubscriptionClient, Failure> {
        self.subscribe(
            Kind::Events,
            observer,
            catch_up.unwrap_or(false),
            String::new(),
        )
    }

    fn unsubscribe(&self, subscription: WireValue) -> Result<(), Failure> {
        let no_attr = |t: &str| {
            Failure::new(
                "builtins.AttributeError",
                format!("'{t}' object has no attribute 'unsubscribe'"),
            )
        };
        match subscription.unanchored() {
            WireValue::Local(id) => {
                let found: Vec<Arc<Sub>> = lock(&self.inner.subs)
                    .iter()
                    .filter(|((_, i), _)| i == id)
                    .map(|(_, s)| s.clone())
                    .collect();
                if found.is_empty() {
                    // one of ours, but no running subscription: ended
                    // already (idempotent), or another object
                    return Ok(());
                }
                for s in found {
                    s.unsubscribe();
                }
                Ok(())
            }
            WireValue::Remote(_) => Err(no_attr("RemoteReference")),
            other => Err(no_attr(other.type_name())),
        }
    }

    fn enumerate_logfiles(&self) -> Result<Vec<RILogFileClient>, Failure> {
        Err(Failure::no_such_method(
            "LogPublisher",
            "enumerate_logfiles",
        ))
    }

    fn list_incidents(&self, since: Option<WireValue>) -> Result<Incidents, Failure> {
        let since = match since {
            Some(s) => ensure_str(&s)?,
            None => String::new(),
        };
        let mut out = Vec::new();
        for (name, path) in self.incident_names(&since) {
            if let Some(trigger) = incident_trigger(&path) {
                out.push((WireValue::str(&name), trigger));
            }
        }
        Ok(AnyDict(out))
    }

    fn subscribe_to_incidents(
        &self,
        observer: RILogObserverClient,
        catch_up: Option<bool>,
        since: Option<WireValue>,
    ) -> Result<RISubscriptionClient, Failure> {
        let since = match since {
            Some(s) => ensure_str(&s)?,
            None => String::new(),
        };
        self.subscribe(Kind::Incidents, observer, catch_up.unwrap_or(false), since)
    }

    fn get_incident(&self, incident_name: WireValue) -> Result<(Header, Vec<Event>), Failure> {
        let name = ensure_str(&incident_name)?;
        if !name.starts_with("incident") {
            return Err(key_error(&format!("bad incident name {name}")));
        }
        if name.contains('/') {
            return Err(Failure::new(
                "twisted.python.filepath.InsecurePath",
                format!(
                    "{} contains one or more directory separators",
                    str_repr(&name)
                ),
            ));
        }
        let dir = self
            .inner
            .logger
            .log_dir()
            .unwrap_or_else(|| PathBuf::from("."));
        let plain = dir.join(format!("{name}.flog"));
        let bz2 = dir.join(format!("{name}.flog.bz2"));
        let path = if bz2.exists() { bz2 } else { plain };
        let missing = || key_error(&format!("no incident named {name}"));
        let mut reader = files::open(&path, ReadLimits::default()).map_err(|_| missing())?;
        let bad = |what: &str| Failure::new("builtins.ValueError", what.to_owned());
        let header = match reader.next_record() {
            Some(Ok(rec)) => match rec.as_dict().and_then(|d| d.get("header")) {
                Some(Value::Dict(h)) => Event(h.clone()),
                _ => return Err(key_error("header")),
            },
            Some(Err(e)) => return Err(bad(&e.to_string())),
            None => return Err(Failure::new("builtins.StopIteration", "")),
        };
        let mut events = Vec::new();
        for rec in reader {
            let rec = rec.map_err(|e| bad(&e.to_string()))?;
            match rec.as_dict().and_then(|d| d.get("d")) {
                Some(Value::Dict(d)) => events.push(Event(d.clone())),
                _ => return Err(key_error("d")),
            }
        }
        Ok((header, events))
    }
}

impl Tub {
    /// This Tub's logport (Python's `getLogPort`): created on first use,
    /// publishing the Tub's logger ([`Tub::logger`]: the process-wide
    /// [`Logger::global`] unless [`Tub::set_logger`] gave another).
    pub fn logport(&self) -> Arc<LogPublisher> {
        if let Some(p) = self.lock().logport.publisher.clone() {
            return p;
        }
        let fresh = Arc::new(LogPublisher::new(self.logger()));
        self.lock().logport.publisher.get_or_insert(fresh).clone()
    }

    /// The logport's FURL (Python's `getLogPortFURL`): registers it on
    /// first use (under the swissnum of the logport FURL file when one
    /// was set and holds this Tub's FURL). Needs a location.
    pub fn logport_furl(&self) -> Result<foolscap_core::furl::Furl, crate::Error> {
        if let Some(f) = self.lock().logport.furl.clone() {
            return Ok(f);
        }
        let publisher = self.logport();
        let (file, name) = {
            let st = self.lock();
            (st.logport.furlfile.clone(), st.logport.swissnum.clone())
        };
        let furl = self.register(publisher.object(), name.as_deref())?;
        let mut st = self.lock();
        if let Some(f) = st.logport.furl.clone() {
            // registered meanwhile by another thread: keep the first
            return Ok(f);
        }
        st.logport.furl = Some(furl.clone());
        drop(st);
        if let Some(path) = file {
            write_furl_file(&path, &furl.to_string())?;
        }
        Ok(furl)
    }

    /// Python's Tub option `logport-furlfile`: once the Tub has a location
    /// (now, or when [`Tub::listen`] or [`Tub::set_location`] gives one),
    /// the logport is registered and its FURL written to `path` (`FURL\n`,
    /// mode 0600 when new). A file that already holds a FURL of this Tub
    /// gives its swissnum to the logport (a stable logport FURL across
    /// restarts with the same identity); one of another Tub is an error.
    pub fn set_logport_furlfile(&self, path: impl AsRef<Path>) -> Result<(), crate::Error> {
        let path = path.as_ref().to_path_buf();
        let swissnum = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let furl = foolscap_core::furl::Furl::parse(text.trim())?;
                if furl.tubid != self.tubid() {
                    return Err(crate::Error::WrongTubId {
                        expected: self.tubid().to_string(),
                        found: furl.tubid.to_string(),
                    });
                }
                Some(furl.swissnum)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(crate::Error::Io(Arc::new(e))),
        };
        let has_location = {
            let mut st = self.lock();
            st.logport.furlfile = Some(path);
            st.logport.swissnum = swissnum;
            !st.core.location().is_empty()
        };
        if has_location {
            self.logport_furl()?;
        }
        Ok(())
    }

    /// A location was just given: a pending logport FURL file is written.
    pub(crate) fn location_given(&self) {
        let pending = {
            let st = self.lock();
            st.logport.furlfile.is_some() && st.logport.furl.is_none()
        };
        if pending {
            // the file was checked when it was set; a write failing now
            // leaves the logport unregistered until logport_furl is asked
            let _ = self.logport_furl();
        }
    }
}

/// Writes `FURL\n` to `path`, created with mode 0600.
fn write_furl_file(path: &Path, furl: &str) -> Result<(), crate::Error> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| crate::Error::Io(Arc::new(e)))?;
    f.write_all(format!("{furl}\n").as_bytes())
        .map_err(|e| crate::Error::Io(Arc::new(e)))
}

/// What a Tub keeps of its logport.
#[derive(Default)]
pub(crate) struct TubLogport {
    publisher: Option<Arc<LogPublisher>>,
    furl: Option<foolscap_core::furl::Furl>,
    furlfile: Option<PathBuf>,
    swissnum: Option<String>,
}
