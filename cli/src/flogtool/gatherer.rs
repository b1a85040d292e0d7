//! The Rust log gatherer and incident gatherer (`flogtool run-gatherer`):
//! the objects a node's `logport(nodeid, publisher)` call reaches, and what
//! they write (docs/logging.md, "Gatherers").
//!
//! Both answer every `msg`/`new_incident` with `None` and never fail them
//! (a failed call makes a Python publisher drop the subscription for good).
//! What a peer can make us hold is bounded: its messages by the Tub's value
//! limits ([`GathererLimits::max_message_bytes`]), the incident names
//! waiting to be fetched by [`GathererLimits::max_queued_incidents`]; events
//! go to disk as they arrive and are not kept.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use foolscap_app::logport::{event_from_wire_in, value_from_wire_in};
use foolscap_app::typed::Context;
use foolscap_app::{as_remote, Call, Object, Tub};
use foolscap_core::value::{RemoteRef, Text, Value as WireValue};
use foolscap_logging::flogfile::FlogWriter;
use foolscap_logging::{files, Dict, Event, Value};

/// RemoteInterface names a Python peer checks (docs §3.6).
pub const RI_LOG_GATHERER: &str = "RILogGatherer.foolscap.lothar.com";
/// The observer's interface: without it a Python publisher refuses to subscribe.
pub const RI_LOG_OBSERVER: &str = "RILogObserver.foolscap.lothar.com";

/// What a gatherer accepts from the nodes that report to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GathererLimits {
    /// Memory budget of one message from a node (an event, or a whole
    /// incident answered by `get_incident`): the Tub's
    /// `max_message_bytes`. A bigger message is discarded (that one event
    /// or incident is lost). Default: 64 MiB.
    pub max_message_bytes: usize,
    /// Incident names announced by one node and not yet fetched; past it
    /// further announcements are dropped (they are fetched on the node's
    /// next connection, whose catch-up starts after the newest incident
    /// saved). Default: 1000.
    pub max_queued_incidents: usize,
}

impl GathererLimits {
    /// Default `max_message_bytes`.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
    /// Default `max_queued_incidents`.
    pub const DEFAULT_MAX_QUEUED_INCIDENTS: usize = 1000;
}

impl Default for GathererLimits {
    fn default() -> Self {
        GathererLimits {
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_queued_incidents: Self::DEFAULT_MAX_QUEUED_INCIDENTS,
        }
    }
}

/// Seconds since the epoch, as Python's `time.time()`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Python's incident/gatherer time format: `2026-12-06--15-27-07Z` (UTC).
pub fn format_time(t: f64) -> String {
    foolscap_logging::logger::incident_time(t)
}

/// The text of a STRING or unicode value (Python's `six.ensure_text`).
fn text_of(v: &WireValue) -> Option<String> {
    match v.unanchored() {
        WireValue::Str(t) => Some(t.as_str().to_string()),
        WireValue::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// the log gatherer
// ---------------------------------------------------------------------------

/// The current output file of a log gatherer.
struct SaveFile {
    basedir: PathBuf,
    path: PathBuf,
    start: f64,
    out: FlogWriter<File>,
}

impl SaveFile {
    /// `from-<T0>---to-present.flog`, opened for append, with the magic
    /// line and the `gatherer` header (as Python: even when the file
    /// already existed).
    fn open(basedir: &Path, start: f64) -> std::io::Result<SaveFile> {
        let path = basedir.join(format!("from-{}---to-present.flog", format_time(start)));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut out = FlogWriter::new(f)?;
        let mut fields = Dict::new();
        fields.insert("start", start);
        out.write_header("gatherer", &fields)?;
        Ok(SaveFile {
            basedir: basedir.to_path_buf(),
            path,
            start,
            out,
        })
    }
}

/// The log gatherer: subscribes to every node that calls `logport` and
/// appends their events to one file.
pub struct LogGatherer {
    save: Mutex<Option<SaveFile>>,
    bzip: Option<PathBuf>,
}

impl LogGatherer {
    /// Starts the output file in `basedir`; `bzip` is the `bzip2` program
    /// that compresses rotated files, if wanted and found.
    pub fn start(basedir: &Path, bzip: Option<PathBuf>) -> std::io::Result<Arc<LogGatherer>> {
        let save = SaveFile::open(basedir, now())?;
        Ok(Arc::new(LogGatherer {
            save: Mutex::new(Some(save)),
            bzip,
        }))
    }

    /// Renames the current file to `from-<T0>---to-<T1>.flog`, starts
    /// `from-<T1>---to-present.flog`, and compresses the old one with
    /// `bzip2` if asked. Returns the rotated file's final name.
    pub fn rotate(&self) -> std::io::Result<PathBuf> {
        let mut guard = self.save.lock().unwrap_or_else(|e| e.into_inner());
        let Some(old) = guard.take() else {
            return Err(std::io::Error::other("no output file"));
        };
        let t1 = now();
        let rotated = old.basedir.join(format!(
            "from-{}---to-{}.flog",
            format_time(old.start),
            format_time(t1)
        ));
        let basedir = old.basedir.clone();
        let old_path = old.path.clone();
        drop(old.out);
        let renamed = std::fs::rename(&old_path, &rotated);
        *guard = Some(SaveFile::open(&basedir, t1)?);
        drop(guard);
        renamed?;
        if let Some(bzip) = &self.bzip {
            // an external process, as Python runs one
            match std::process::Command::new(bzip).arg(&rotated).status() {
                Ok(s) if s.success() => {
                    let mut name = rotated.into_os_string();
                    name.push(".bz2");
                    return Ok(PathBuf::from(name));
                }
                Ok(s) => eprintln!("bzip2 {} failed: {s}", rotated.display()),
                Err(e) => eprintln!("cannot run bzip2 {}: {e}", rotated.display()),
            }
        }
        Ok(rotated)
    }

    fn write(&self, from: &str, event: &Event) {
        let mut guard = self.save.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(save) = guard.as_mut() {
            if let Err(e) = save.out.write_event(event, from, now()) {
                println!("GATHERER: unable to serialize an event from {from}: {e}");
            }
        }
    }
}

/// What a log gatherer's Tub publishes: `RILogGatherer`.
pub struct LogGathererObject(pub Arc<LogGatherer>);

impl Object for LogGathererObject {
    fn interface(&self) -> &str {
        RI_LOG_GATHERER
    }
    fn class_name(&self) -> &str {
        "GathererService"
    }
    fn call(&self, call: Call) {
        if call.method.as_str() != "logport" {
            return call.no_such_method("GathererService");
        }
        let nodeid = call.arg(0, "nodeid").and_then(text_of).unwrap_or_default();
        let Some(publisher) = call.arg(1, "logport").and_then(as_remote).cloned() else {
            return call.answer(WireValue::None);
        };
        let tub = call.tub().clone();
        let observer = tub.local(Arc::new(LogObserver {
            nodeid,
            gatherer: self.0.clone(),
        }));
        // no catch-up: the events from now on; the subscription's
        // reference is dropped (the subscription lasts as long as the
        // connection)
        let sent = tub.call_async(
            &publisher,
            "subscribe_to_all",
            &[observer],
            &[],
            move |_| call.answer(WireValue::None),
        );
        if let Err(e) = sent {
            println!("GATHERER: cannot subscribe: {e}");
        }
    }
}

/// The observer a log gatherer hands to one node's publisher.
struct LogObserver {
    nodeid: String,
    gatherer: Arc<LogGatherer>,
}

impl Object for LogObserver {
    fn interface(&self) -> &str {
        RI_LOG_OBSERVER
    }
    fn class_name(&self) -> &str {
        "Observer"
    }
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "msg" => {
                let cx = Context::for_call(&call.args, &call.kwargs, None);
                match call.arg(0, "logmsg").map(|v| event_from_wire_in(v, &cx)) {
                    Some(Ok(e)) => self.gatherer.write(&self.nodeid, &e),
                    Some(Err(e)) => println!(
                        "GATHERER: unable to serialize an event from {}: {e}",
                        self.nodeid
                    ),
                    None => println!(
                        "GATHERER: a msg call from {} without its event",
                        self.nodeid
                    ),
                }
                call.answer(WireValue::None)
            }
            // never fail an observer call: the publisher would drop us
            _ => call.answer(WireValue::None),
        }
    }
}

// ---------------------------------------------------------------------------
// the incident gatherer
// ---------------------------------------------------------------------------

/// Sorts a saved incident into categories: `classify_*.py` files in the
/// base directory, run by `flogtool classify-incident`'s code.
fn classify(basedir: &Path, trigger: &Event) -> Vec<String> {
    let mut cats = match classify_incident(basedir, trigger) {
        Ok(c) => c,
        Err(e) => {
            println!("cannot classify: {e}");
            Vec::new()
        }
    };
    cats.sort();
    cats.dedup();
    if cats.is_empty() {
        cats.push("unknown".into());
    }
    cats
}

/// The classifier of `flogtool classify-incident`.
fn classify_incident(basedir: &Path, trigger: &Event) -> Result<Vec<String>, String> {
    crate::classify::classify_incident(basedir, trigger)
}

/// The incident gatherer: fetches every incident of every node that calls
/// `logport`, saves and classifies them.
pub struct IncidentGatherer {
    basedir: PathBuf,
    limits: GathererLimits,
    /// Serialises the prints and the `classified/` appends.
    out: Mutex<()>,
}

impl IncidentGatherer {
    /// The incident gatherer of `basedir` (nothing done yet).
    pub fn new(basedir: &Path, limits: GathererLimits) -> Arc<IncidentGatherer> {
        Arc::new(IncidentGatherer {
            basedir: basedir.to_path_buf(),
            limits,
            out: Mutex::new(()),
        })
    }

    /// Creates `incidents/` and `classified/`, and classifies the stored
    /// incidents no category lists yet, printing as Python does. Returns
    /// how many it classified.
    pub fn classify_stored(&self) -> std::io::Result<usize> {
        let g = self;
        let basedir = self.basedir.as_path();
        let indir = basedir.join("incidents");
        std::fs::create_dir_all(&indir)?;
        let outdir = basedir.join("classified");
        std::fs::create_dir_all(&outdir)?;
        println!("classifying stored incidents");
        let mut already = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&outdir)? {
            let text = std::fs::read_to_string(entry?.path())?;
            for line in text.lines() {
                already.insert(basedir.join(line.trim()));
            }
        }
        println!("{} incidents already classified", already.len());
        let mut count = 0;
        for node in std::fs::read_dir(&indir)? {
            let node = node?;
            let tubid = node.file_name().to_string_lossy().into_owned();
            if !node.file_type()?.is_dir() {
                continue;
            }
            let mut names: Vec<String> = std::fs::read_dir(node.path())?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("incident-"))
                .collect();
            names.sort();
            for name in names {
                let abs = node.path().join(&name);
                if already.contains(&abs) {
                    continue;
                }
                let trigger = match load_trigger(&abs) {
                    Ok(t) => t,
                    Err(e) => {
                        println!("cannot read {}: {e}", abs.display());
                        continue;
                    }
                };
                let rel = format!("incidents/{tubid}/{name}");
                g.file_incident(&rel, &trigger);
                count += 1;
            }
        }
        println!("done classifying {count} stored incidents");
        Ok(count)
    }

    /// Appends `rel` to `classified/<category>` for each category, and
    /// prints `classified <rel> as [<categories>]`.
    fn file_incident(&self, rel: &str, trigger: &Event) {
        let cats = classify(&self.basedir, trigger);
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for c in &cats {
            let path = self.basedir.join("classified").join(c);
            let r = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(format!("{rel}\n").as_bytes()));
            if let Err(e) = r {
                println!("cannot write {}: {e}", path.display());
            }
        }
        println!("classified {rel} as [{}]", cats.join(","));
    }
}

/// The trigger of a saved incident file (its header's `trigger`).
fn load_trigger(path: &Path) -> Result<Event, String> {
    let reader = files::open(path, Default::default()).map_err(|e| e.to_string())?;
    for record in reader {
        let record = record.map_err(|e| e.to_string())?;
        if let Some(Value::Dict(h)) = record.as_dict().and_then(|r| r.get("header")) {
            return match h.get("trigger") {
                Some(Value::Dict(t)) => Ok(Event(t.clone())),
                _ => Err("the header has no trigger".into()),
            };
        }
    }
    Err("no header".into())
}

/// What an incident gatherer's Tub publishes: `RILogGatherer`.
pub struct IncidentGathererObject(pub Arc<IncidentGatherer>);

impl Object for IncidentGathererObject {
    fn interface(&self) -> &str {
        RI_LOG_GATHERER
    }
    fn class_name(&self) -> &str {
        "IncidentGathererService"
    }
    fn call(&self, call: Call) {
        if call.method.as_str() != "logport" {
            return call.no_such_method("IncidentGathererService");
        }
        let Some(publisher) = call.arg(1, "logport").and_then(as_remote).cloned() else {
            return call.answer(WireValue::None);
        };
        // the nodeid argument is not trusted: the connection's tubid names
        // the node's directory (a tubid is 32 base32 characters)
        let tubid = call.caller().to_string();
        let dir = self.0.basedir.join("incidents").join(&tubid);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            println!("cannot create {}: {e}", dir.display());
            return call.answer(WireValue::None);
        }
        let latest = std::fs::read_to_string(dir.join("latest"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        {
            let _g = self.0.out.lock().unwrap_or_else(|e| e.into_inner());
            println!("connected to {tubid}, last known incident is {latest}");
        }
        let tub = call.tub().clone();
        let observer = Arc::new(IncidentObserver {
            gatherer: self.0.clone(),
            tub: tub.clone(),
            publisher: publisher.clone(),
            tubid,
            dir,
            state: Mutex::new(Fetching {
                wanted: VecDeque::new(),
                outstanding: false,
            }),
        });
        let local = tub.local(Arc::new(IncidentObserverObject(observer)));
        let kwargs = [
            (Text::from("catch_up"), WireValue::Bool(true)),
            (Text::from("since"), WireValue::bytes(latest.as_bytes())),
        ];
        let sent = tub.call_async(
            &publisher,
            "subscribe_to_incidents",
            &[local],
            &kwargs,
            move |_| call.answer(WireValue::None),
        );
        if let Err(e) = sent {
            println!("cannot subscribe to incidents: {e}");
        }
    }
}

struct Fetching {
    wanted: VecDeque<String>,
    outstanding: bool,
}

/// The observer an incident gatherer hands to one node's publisher.
struct IncidentObserver {
    gatherer: Arc<IncidentGatherer>,
    tub: Tub,
    publisher: RemoteRef,
    tubid: String,
    dir: PathBuf,
    state: Mutex<Fetching>,
}

/// Whether an incident name can be a file name in the node's directory
/// (Python's `FilePath.child` refuses separators and `.`/`..`).
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255
}

impl IncidentObserver {
    /// Fetches the next wanted incident unless one is on its way.
    fn fetch_next(self: &Arc<Self>) {
        let name = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.outstanding {
                return;
            }
            let Some(name) = st.wanted.pop_front() else {
                return;
            };
            st.outstanding = true;
            name
        };
        {
            let _g = self.gatherer.out.lock().unwrap_or_else(|e| e.into_inner());
            println!("fetching incident {name}");
        }
        let me = self.clone();
        let n = name.clone();
        self.tub.call_then(
            &self.publisher,
            "get_incident",
            &[WireValue::bytes(name.as_bytes())],
            &[],
            move |r| {
                match r {
                    Ok(v) => {
                        if let Err(e) = me.save(&n, &v) {
                            println!("cannot save incident {n}: {e}");
                        }
                    }
                    Err(e) => println!("get_incident({n}) failed: {e}"),
                }
                me.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .outstanding = false;
                me.fetch_next();
            },
        );
    }

    /// Saves `(header, events)` as `<name>.flog.bz2`, updates `latest`,
    /// classifies it.
    fn save(&self, name: &str, answer: &WireValue) -> Result<(), String> {
        let parts = answer
            .as_seq()
            .ok_or("the answer is not a (header, events) pair")?;
        let [header, events] = parts else {
            return Err("the answer is not a (header, events) pair".into());
        };
        let cx = Context::for_message(answer, None);
        let header = match value_from_wire_in(header, &cx) {
            Ok(Value::Dict(d)) => d,
            Ok(_) => return Err("the incident's header is not a dict".into()),
            Err(e) => return Err(format!("the incident's header: {e}")),
        };
        let events = events
            .as_seq()
            .ok_or("the incident's events are not a list")?;
        let rx_time = now();
        let path = self.dir.join(format!("{name}.flog.bz2"));
        let tmp = self.dir.join(format!("{name}.flog.bz2.tmp"));
        let write = || -> std::io::Result<()> {
            let mut w = files::create_bz2(&tmp)?;
            let mut rec = Dict::new();
            rec.insert("header", header.clone());
            w.write_record(&Value::Dict(rec))?;
            for e in events {
                match event_from_wire_in(e, &cx) {
                    Ok(e) => w.write_event(&e, &self.tubid, rx_time)?,
                    Err(e) => println!("incident {name}: an event skipped: {e}"),
                }
            }
            w.finish()?.finish()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::write(self.dir.join("latest"), format!("{name}\n"))
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })?;
        let trigger = match header.get("trigger") {
            Some(Value::Dict(t)) => Event(t.clone()),
            _ => Event(Dict::new()),
        };
        let rel = format!("incidents/{}/{name}.flog.bz2", self.tubid);
        self.gatherer.file_incident(&rel, &trigger);
        Ok(())
    }
}

/// A handle that lets `Object::call` reach the `Arc` of the observer.
struct IncidentObserverObject(Arc<IncidentObserver>);

impl Object for IncidentObserverObject {
    fn interface(&self) -> &str {
        RI_LOG_OBSERVER
    }
    fn class_name(&self) -> &str {
        "IncidentObserver"
    }
    fn call(&self, call: Call) {
        if call.method.as_str() == "new_incident" {
            let me = &self.0;
            match call.arg(0, "name").and_then(text_of) {
                Some(name) if safe_name(&name) => {
                    let mut st = me.state.lock().unwrap_or_else(|e| e.into_inner());
                    if st.wanted.len() < me.gatherer.limits.max_queued_incidents {
                        st.wanted.push_back(name);
                    } else {
                        println!(
                            "{}: more than {} incidents waiting, {name} dropped",
                            me.tubid, me.gatherer.limits.max_queued_incidents
                        );
                    }
                }
                Some(name) => println!("{}: refused incident name {name:?}", me.tubid),
                None => println!("{}: an incident name that is not a string", me.tubid),
            }
            call.answer(WireValue::None);
            me.fetch_next();
        } else {
            // done_with_incident_catchup, and anything else: None
            call.answer(WireValue::None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_names_that_could_leave_the_node_directory_are_refused() {
        assert!(safe_name("incident-2026-12-06--15-48-04Z-d4xlini"));
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn file_times_in_pythons_format() {
        // 1796572047.5 is 2026-12-06 15:47:27.5 UTC
        assert_eq!(format_time(1796572047.5), "2026-12-06--15-47-27Z");
        assert_eq!(format_time(0.0), "1970-01-01--00-00-00Z");
    }

    #[test]
    fn limits_defaults() {
        let l = GathererLimits::default();
        assert_eq!(l.max_message_bytes, 64 << 20);
        assert_eq!(l.max_queued_incidents, 1000);
    }
}
