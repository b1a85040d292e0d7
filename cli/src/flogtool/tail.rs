//! `flogtool tail`: follow a logport's events (Python's `flogtool tail`,
//! docs/logging.md "flogtool tail").
//!
//! Connects with a Reconnector (retrying forever), then for every
//! connection: `get_pid`, `get_versions`, `subscribe_to_all(observer[,
//! True])`; prints each event as Python does, optionally saves them to a
//! flogfile, prints `Disconnected` when the connection drops and starts
//! over when it comes back. A failed setup call prints `ERROR <failure>`
//! and ends the program with exit code 0, as Python's does.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use foolscap_app::logport::{
    RILogObserver, RILogObserverClient, RILogObserverServer, RILogPublisherClient,
};
use foolscap_app::typed::Failure;
use foolscap_app::{Error, Tub};
use foolscap_core::broker::CallError;
use foolscap_core::furl::Furl;
use foolscap_core::value::Value as WireValue;
use foolscap_logging::flogfile::FlogWriter;
use foolscap_logging::repr::dict_repr;
use foolscap_logging::timefmt::{format_time, TimeMode};
use foolscap_logging::{format_message, Dict, Event, Value};

use super::{parse_mode, SystemZone};

/// How long a setup call may wait for its answer (Python waits forever;
/// a lost connection fails it at once).
const SETUP_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Options of `flogtool tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Catch up with recent events.
    #[arg(short, long = "catch-up")]
    catch_up: bool,
    /// Save events to the given file. The file will be overwritten.
    #[arg(short, long = "save-to")]
    save_to: Option<String>,
    /// Show all event arguments.
    #[arg(short, long)]
    verbose: bool,
    /// Format for timestamps: short-local, long-local, utc or epoch.
    #[arg(short, long, default_value = "short-local", value_parser = parse_mode)]
    timestamps: TimeMode,
    /// LOGPORT.furl, a file holding it, or a node directory (with logport.furl).
    target: String,
}

/// A line (or lines) on standard output, flushed at once so that a reader
/// of a pipe sees each event as it comes.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The FURL a TARGET names, as Python's option parser finds it.
fn target_furl(target: &str) -> Result<String, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    if target.starts_with("pb:") {
        Ok(target.to_string())
    } else if Path::new(target).is_file() {
        read(Path::new(target))
    } else if Path::new(target).is_dir() {
        read(&Path::new(target).join("logport.furl"))
    } else {
        Err(format!("RuntimeError: Can't use tail target: {target}"))
    }
}

/// `flogtool tail`.
pub fn run(args: TailArgs) -> ExitCode {
    let furl = match target_furl(&args.target) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let tubid = match Furl::parse(&furl) {
        Ok(f) => f.tubid.to_string(),
        Err(e) => {
            eprintln!("ValueError: {e}");
            return ExitCode::from(1);
        }
    };
    say("starting..");
    say("Connecting..");
    let tub = match foolscap_threads::new_tub() {
        Ok(t) => t,
        Err(e) => {
            say(&format!("ERROR {}", failure_text(&e)));
            return ExitCode::SUCCESS;
        }
    };
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let options = Arc::new(args);
    let t = tub.clone();
    let connected = move |publisher: WireValue| {
        let tub = t.clone();
        let options = options.clone();
        let tubid = tubid.clone();
        let stop = stop_tx.clone();
        // the setup calls wait for their answers: not on the engine's thread
        std::thread::spawn(move || {
            if let Err(e) = setup(&tub, publisher, &options, &tubid) {
                say(&format!("ERROR {}", failure_text(&e)));
                let _ = stop.send(());
            }
        });
    };
    let reconnector = match tub.connect_to(&furl, connected) {
        Ok(r) => r,
        Err(e) => {
            say(&format!("ERROR {}", failure_text(&e)));
            return ExitCode::SUCCESS;
        }
    };
    // runs until a setup call fails (or forever)
    let _ = stop_rx.recv();
    reconnector.stop();
    tub.shutdown();
    ExitCode::SUCCESS
}

/// Python's `str()` of the failure a setup call ended with.
fn failure_text(e: &Error) -> String {
    match e {
        Error::Call(CallError::Remote(f)) => format!(
            "[CopiedFailure instance: Traceback from remote host -- {}]",
            f.traceback
        ),
        other => {
            let f = other.to_failure();
            format!(
                "[Failure instance: Traceback (failure with no frames): <class '{}'>: {}\n]",
                f.type_name, f.value
            )
        }
    }
}

/// One connection's sequence: pid, versions, save file header, subscribe.
fn setup(tub: &Tub, publisher: WireValue, options: &TailArgs, tubid: &str) -> Result<(), Error> {
    let reference = match &publisher {
        WireValue::Remote(r) => r.clone(),
        other => {
            return Err(Error::NotAReference(other.type_name()));
        }
    };
    tub.notify_on_disconnect(&reference, || say("Disconnected"));
    let lp = RILogPublisherClient::new(tub, reference).with_timeout(SETUP_TIMEOUT);
    // the save file is opened (and truncated) for each connection
    let saver = match &options.save_to {
        Some(path) => {
            let f = File::create(path).map_err(|e| Error::Io(Arc::new(e)))?;
            let w = FlogWriter::new(f).map_err(|e| Error::Io(Arc::new(e)))?;
            Some(w)
        }
        None => None,
    };
    let pid = match lp.get_pid() {
        Ok(pid) => {
            say(&format!("Connected (to pid {pid})"));
            Some(pid)
        }
        Err(_) => {
            say("Connected (unable to get pid)");
            None
        }
    };
    let versions = lp.get_versions()?;
    let mut text: Vec<(String, String)> = versions
        .0
        .iter()
        .map(|(k, v)| (py_str(k), py_str(v)))
        .collect();
    text.sort();
    say("Remote Versions:");
    for (k, v) in &text {
        say(&format!(" {k}: {v}"));
    }
    let saver = match saver {
        Some(mut w) => {
            let mut vd = Dict::new();
            for (k, v) in &text {
                vd.insert(k.as_str(), v.as_str());
            }
            let mut fields = Dict::new();
            fields.insert("versions", vd);
            fields.insert("pid", pid.map_or(Value::None, |p| Value::from(p as i64)));
            let _ = w.write_header("tail", &fields);
            Some(Mutex::new(w))
        }
        None => None,
    };
    let printer = Printer {
        verbose: options.verbose,
        timestamps: options.timestamps,
        from: tubid.chars().take(8).collect(),
        saver,
    };
    let observer = RILogObserverClient::local(tub, Arc::new(RILogObserverServer(printer)));
    let catch_up = options.catch_up.then_some(true);
    lp.subscribe_to_all(observer, catch_up)?;
    Ok(())
}

/// Python's `six.ensure_str(x)` of a versions entry (`str()` of other
/// values).
fn py_str(v: &WireValue) -> String {
    match v.unanchored() {
        WireValue::Str(s) => s.as_str().to_owned(),
        WireValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => match foolscap_app::logport::value_from_wire(other) {
            Ok(v) => foolscap_logging::repr::str_string(&v),
            Err(_) => String::new(),
        },
    }
}

/// The observer: prints each event (and saves it).
struct Printer {
    verbose: bool,
    timestamps: TimeMode,
    from: String,
    saver: Option<Mutex<FlogWriter<File>>>,
}

/// Python's `KeyError` for a missing field.
fn key_error(key: &str) -> Failure {
    Failure::new("builtins.KeyError", format!("'{key}'"))
}

/// Python's `"%d" % v`: an int, or a float truncated; a `TypeError`
/// otherwise.
fn percent_d(v: &Value) -> Result<String, Failure> {
    match v {
        Value::Int(i) => Ok(i.to_string()),
        Value::Bool(b) => Ok((*b as i64).to_string()),
        Value::Float(f) if f.is_finite() => Ok(format!("{}", f.trunc() as i128)),
        other => Err(Failure::new(
            "builtins.TypeError",
            format!(
                "%d format: a real number is required, not {}",
                other.type_name()
            ),
        )),
    }
}

impl Printer {
    /// The lines Python prints for `d` (or the exception it raises).
    fn lines(&self, d: &Dict) -> Result<String, Failure> {
        if self.verbose {
            let mut s = String::new();
            dict_repr(d, &mut s);
            return Ok(s);
        }
        let time = d.get("time").ok_or_else(|| key_error("time"))?;
        let time = time.as_f64().ok_or_else(|| {
            Failure::new(
                "builtins.TypeError",
                format!("must be real number, not {}", time.type_name()),
            )
        })?;
        let time_s = format_time(time, self.timestamps, &SystemZone);
        let msg = format_message(d).map_err(|e| Failure::new("builtins.KeyError", e.0))?;
        let level = match d.get("level") {
            Some(l) => percent_d(l)?,
            None => "20".to_string(),
        };
        let num = percent_d(d.get("num").ok_or_else(|| key_error("num"))?)?;
        let mut out = format!("{time_s} L{level} []#{num} {msg}");
        if let Some(f) = d.get("failure") {
            out.push_str("\n FAILURE:");
            let text = match f {
                Value::Failure(f) => f.str_text(),
                other => foolscap_logging::repr::str_string(other),
            };
            for line in text.split('\n') {
                out.push_str("\n ");
                out.push_str(line);
            }
        }
        Ok(out)
    }
}

impl RILogObserver for Printer {
    fn msg(&self, logmsg: Event) -> Result<(), Failure> {
        let text = self.lines(&logmsg.0)?;
        say(&text);
        if let Some(saver) = &self.saver {
            let rx_time = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let mut w = saver.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = w.write_event(&logmsg, &self.from, rx_time) {
                let mut d = String::new();
                dict_repr(&logmsg.0, &mut d);
                say(&format!("GATHERER: unable to serialize {d}: {e}"));
            }
        }
        Ok(())
    }
    fn done(&self) {}
    fn new_incident(&self, _name: WireValue, _trigger: Event) -> Result<(), Failure> {
        Ok(())
    }
    fn done_with_incident_catchup(&self) {}
}
