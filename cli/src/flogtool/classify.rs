//! Incident classification: `flogtool classify-incident` and the function
//! the incident gatherer calls for each incident it fetches.
//!
//! Operators describe their incident categories as Python files
//! (`classify_*.py` in a directory, each defining
//! `classify_incident(trigger)` that answers a category name, a list of
//! names, or nothing). We keep those files working by running them: a
//! Python interpreter gets a small driver script of ours (below) that
//! loads every classifier file in the directory, reads the triggers as
//! JSON lines on its stdin, and answers one JSON list of categories per
//! trigger on its stdout.
//!
//! The interpreter is `$FLOGTOOL_PYTHON` when set, else `python3` from
//! `PATH`. Without classifier files no interpreter is started; without an
//! interpreter every incident is `unknown` (as Python's classifier says
//! when nothing matches). The interpreter's output is read up to
//! [`MAX_CLASSIFIER_OUTPUT`] bytes and it is killed after
//! [`DEFAULT_CLASSIFY_TIMEOUT`] per trigger (`$FLOGTOOL_CLASSIFY_TIMEOUT`
//! seconds when set), so a broken or hanging classifier cannot hang or
//! flood us.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use foolscap_logging::{json, Event, Value};

/// How long one trigger may take to classify (the interpreter's start,
/// loading the classifier files and the calls) before the interpreter is
/// killed; a batch of N triggers gets N times this.
pub const DEFAULT_CLASSIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes read from the interpreter's stdout (the answers) and,
/// separately, from its stderr (kept for the error message); more is an
/// error ([`ClassifyError::OutputTooLarge`]).
pub const MAX_CLASSIFIER_OUTPUT: usize = 1 << 20;

/// How long we wait for the interpreter's output pipes to close after it
/// exited (a process it started may hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The environment variable naming the Python interpreter to run
/// classifiers with (default `python3`, looked up on `PATH`).
pub const PYTHON_ENV: &str = "FLOGTOOL_PYTHON";

/// The environment variable overriding [`DEFAULT_CLASSIFY_TIMEOUT`]
/// (seconds per trigger).
pub const TIMEOUT_ENV: &str = "FLOGTOOL_CLASSIFY_TIMEOUT";

/// Our driver: loads the classifier files of the directory `argv[1]`
/// (in `os.listdir` order, as Python's flogtool), then answers one line
/// per trigger line. The classifiers' own prints go to stderr so that
/// stdout carries only answers.
const DRIVER: &str = r#"
import io, json, os, sys, traceback
answers = sys.stdout
try:
    where = os.path.expanduser(sys.argv[1])
    funcs = []
    sys.stdout = io.StringIO()
    for name in os.listdir(where):
        if name.startswith("classify_") and name.endswith(".py"):
            path = os.path.join(where, name)
            with open(path, "r") as fh:
                code = compile(fh.read(), path, "exec")
            scope = {}
            exec(code, scope)
            funcs.append(scope["classify_incident"])
    answers.write("+" + json.dumps(sys.stdout.getvalue()) + "\n")
    for line in sys.stdin:
        trigger = json.loads(line)
        found = set()
        sys.stdout = io.StringIO()
        for func in funcs:
            got = func(trigger)
            if got:
                if isinstance(got, str):
                    got = [got]
                found.update(got)
        found = sorted(found)
        for c in found:
            if not isinstance(c, str):
                raise TypeError("a classifier answered the category %r, not text" % (c,))
        answers.write("=" + json.dumps([sys.stdout.getvalue(), found]) + "\n")
        answers.flush()
except BaseException:
    if isinstance(sys.stdout, io.StringIO):
        answers.write("+" + json.dumps(sys.stdout.getvalue()) + "\n")
    sys.stdout = sys.stderr
    traceback.print_exc()
    sys.exit(1)
"#;

/// How to run the classifiers.
#[derive(Clone, Debug)]
pub struct ClassifyConfig {
    /// The interpreter (default: `$FLOGTOOL_PYTHON`, else `python3`).
    pub python: OsString,
    /// Time allowed per trigger (default `$FLOGTOOL_CLASSIFY_TIMEOUT`
    /// seconds, else [`DEFAULT_CLASSIFY_TIMEOUT`]).
    pub timeout: Duration,
    /// Output bound (default [`MAX_CLASSIFIER_OUTPUT`]).
    pub max_output: usize,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            python: std::env::var_os(PYTHON_ENV).unwrap_or_else(|| "python3".into()),
            timeout: std::env::var(TIMEOUT_ENV)
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t > 0.0 && *t < 1e9)
                .map(Duration::from_secs_f64)
                .unwrap_or(DEFAULT_CLASSIFY_TIMEOUT),
            max_output: MAX_CLASSIFIER_OUTPUT,
        }
    }
}

/// Why classification failed.
#[derive(Debug)]
pub enum ClassifyError {
    /// The classifier directory cannot be listed.
    Directory(PathBuf, std::io::Error),
    /// The interpreter could not be started (not installed?).
    NoPython(OsString, std::io::Error),
    /// A classifier file failed to load, or a classifier raised: the
    /// interpreter's report (its last lines).
    Classifier(String),
    /// The interpreter took longer than the timeout and was killed.
    Timeout(Duration),
    /// The interpreter wrote more than the output limit.
    OutputTooLarge(usize),
    /// The interpreter answered something that is not our protocol.
    BadAnswer(String),
}

impl std::fmt::Display for ClassifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassifyError::Directory(d, e) => {
                write!(f, "cannot list classifier directory {}: {e}", d.display())
            }
            ClassifyError::NoPython(p, e) => write!(
                f,
                "cannot run the Python interpreter {:?} for the classifiers ({e}); set {PYTHON_ENV}",
                p
            ),
            ClassifyError::Classifier(s) => write!(f, "a classifier failed:\n{s}"),
            ClassifyError::Timeout(t) => {
                write!(f, "the classifiers did not answer within {t:?} (killed)")
            }
            ClassifyError::OutputTooLarge(n) => {
                write!(f, "the classifiers wrote more than {n} bytes (stopped)")
            }
            ClassifyError::BadAnswer(s) => write!(f, "the classifier driver answered {s:?}"),
        }
    }
}

/// The classifier files in `basedir` (names starting `classify_` and
/// ending `.py`), sorted.
pub fn classifier_files(basedir: &Path) -> Result<Vec<PathBuf>, ClassifyError> {
    let rd = std::fs::read_dir(basedir)
        .map_err(|e| ClassifyError::Directory(basedir.to_path_buf(), e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| ClassifyError::Directory(basedir.to_path_buf(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("classify_") && name.ends_with(".py") {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The categories of `trigger` according to the classifiers in `basedir`
/// (sorted; empty = `unknown`). This is what the incident gatherer calls.
/// No classifier files, or no Python to run them with: empty (unknown).
/// Uses [`ClassifyConfig::default`] (so `$FLOGTOOL_PYTHON` applies).
pub fn classify_incident(basedir: &Path, trigger: &Event) -> Result<Vec<String>, String> {
    let triggers = [Value::Dict(trigger.0.clone())];
    match classify_batch(basedir, &triggers, &ClassifyConfig::default()) {
        Ok(mut batch) => Ok(batch.answers.pop().unwrap_or_default().categories),
        Err((_, ClassifyError::NoPython(..))) => Ok(Vec::new()),
        Err((_, e)) => Err(e.to_string()),
    }
}

/// The classifiers' answer for one trigger.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// What the classifiers printed while classifying it.
    pub printed: String,
    /// The categories, sorted (empty = unknown).
    pub categories: Vec<String>,
}

/// The answers of one interpreter run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// What the classifier files printed while loading.
    pub before: String,
    /// One answer per trigger, in order.
    pub answers: Vec<Answer>,
    /// What a failing classifier printed before it failed.
    pub after: String,
}

/// Classify several triggers with one interpreter run. On failure, the
/// answers obtained before it come with the error (the classifiers run
/// in order, so they belong to the first triggers).
pub fn classify_batch(
    basedir: &Path,
    triggers: &[Value],
    cfg: &ClassifyConfig,
) -> Result<Batch, (Batch, ClassifyError)> {
    let files = classifier_files(basedir).map_err(|e| (Batch::default(), e))?;
    if files.is_empty() {
        return Ok(Batch {
            answers: vec![Answer::default(); triggers.len()],
            ..Batch::default()
        });
    }
    let mut input = String::new();
    for t in triggers {
        json::write(t, &mut input);
        input.push('\n');
    }
    let mut child = Command::new(&cfg.python)
        .arg("-c")
        .arg(DRIVER)
        .arg(basedir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            (
                Batch::default(),
                ClassifyError::NoPython(cfg.python.clone(), e),
            )
        })?;
    // feed and drain on threads so that full pipes cannot block us
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let limit = cfg.max_output;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let drain = |r: Option<Box<dyn Read + Send>>, tx: mpsc::Sender<()>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&buf);
        thread::spawn(move || {
            if let Some(mut r) = r {
                let mut chunk = [0u8; 8192];
                loop {
                    match r.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut b = shared.lock().unwrap_or_else(|p| p.into_inner());
                            b.extend_from_slice(&chunk[..n]);
                            if b.len() > limit {
                                break;
                            }
                        }
                    }
                }
            }
            let _ = tx.send(());
        });
        buf
    };
    let out_buf = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        done_tx.clone(),
    );
    let err_buf = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        done_tx,
    );
    let timeout = cfg
        .timeout
        .saturating_mul(u32::try_from(triggers.len().max(1)).unwrap_or(u32::MAX));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let mut too_much = false;
    let status = loop {
        let big = |b: &Arc<Mutex<Vec<u8>>>| b.lock().map(|b| b.len() > limit).unwrap_or(true);
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if big(&out_buf) || big(&err_buf) => {
                too_much = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(_) => {
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    // The interpreter is gone; its pipes close unless something it
    // started still holds them: wait for the drains a little, not forever.
    let grace = Instant::now() + DRAIN_GRACE;
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    drop(feeder); // it ends when the pipe closes
    let take = |b: &Arc<Mutex<Vec<u8>>>| {
        let mut v = b.lock().map(|b| b.clone()).unwrap_or_default();
        v.truncate(limit + 1);
        v
    };
    let out = take(&out_buf);
    let err = take(&err_buf);
    if too_much {
        return Err((Batch::default(), ClassifyError::OutputTooLarge(limit)));
    }
    let mut batch = Batch::default();
    let text = String::from_utf8_lossy(&out);
    let bad = |l: &str| ClassifyError::BadAnswer(l.chars().take(200).collect());
    for line in text.lines() {
        let parsed = json::parse(&line[line.len().min(1)..], Default::default());
        match (line.as_bytes().first(), parsed) {
            (Some(b'+'), Ok(Value::Str(said))) => {
                if batch.answers.is_empty() && batch.before.is_empty() {
                    batch.before = said
                } else {
                    batch.after = said
                }
            }
            (Some(b'='), Ok(Value::List(mut items))) if items.len() == 2 => {
                let cats = match items.pop() {
                    Some(Value::List(c)) => c,
                    _ => return Err((batch, bad(line))),
                };
                let printed = match items.pop() {
                    Some(Value::Str(p)) => p,
                    _ => return Err((batch, bad(line))),
                };
                let mut categories = Vec::new();
                for c in cats {
                    match c {
                        Value::Str(c) => categories.push(c),
                        _ => return Err((batch, bad(line))),
                    }
                }
                batch.answers.push(Answer {
                    printed,
                    categories,
                });
            }
            _ => return Err((batch, bad(line))),
        }
    }
    if out.len() > limit || err.len() > limit {
        return Err((batch, ClassifyError::OutputTooLarge(limit)));
    }
    if timed_out {
        return Err((batch, ClassifyError::Timeout(timeout)));
    }
    let ok = status.map(|s| s.success()).unwrap_or(false);
    if !ok || batch.answers.len() != triggers.len() {
        let report = String::from_utf8_lossy(&err);
        let lines: Vec<&str> = report.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        return Err((batch, ClassifyError::Classifier(tail)));
    }
    Ok(batch)
}

/// Read an incident file: its header's `trigger` (every record is read,
/// as Python's classifier loads the whole incident).
fn load_trigger(file: &str) -> Result<Value, String> {
    use foolscap_logging::{files, ReadLimits};
    if !file.ends_with(".bz2") {
        return Err(format!(
            "AssertionError: {file} is not an incident file (.bz2)"
        ));
    }
    let mut reader =
        files::open(Path::new(file), ReadLimits::default()).map_err(|e| format!("{file}: {e}"))?;
    let header = match reader.next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(format!("{file}: {e}")),
        None => return Err(format!("{file}: StopIteration (no records)")),
    };
    let trigger = header
        .as_dict()
        .and_then(|r| r.get("header"))
        .ok_or_else(|| format!("{file}: KeyError: 'header'"))?
        .as_dict()
        .and_then(|h| h.get("trigger"))
        .ok_or_else(|| format!("{file}: KeyError: 'trigger'"))?
        .clone();
    for record in reader {
        let r = record.map_err(|e| format!("{file}: {e}"))?;
        if r.as_dict().and_then(|r| r.get("d")).is_none() {
            return Err(format!("{file}: KeyError: 'd'"));
        }
    }
    Ok(trigger)
}

/// What `-v` adds for an unknown incident: the trigger's text, its JSON,
/// its failure (if any), a blank line.
fn details(trigger: &Value, out: &mut String) -> Result<(), String> {
    use foolscap_logging::format_message;
    use foolscap_logging::repr::str_string;
    let d = trigger
        .as_dict()
        .ok_or("TypeError: the trigger is not a dict")?;
    let text = format_message(d).map_err(|e| e.to_string())?;
    out.push_str(&text);
    out.push('\n');
    json::write(trigger, out);
    out.push('\n');
    if let Some(f) = d.get("failure") {
        out.push_str(" FAILURE:\n");
        for line in str_string(f).split('\n') {
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Ok(())
}

/// `flogtool classify-incident [-c DIR] [-v] FILE…`: prints
/// `FILE: cat1,cat2` per file (`unknown` when no classifier claims it).
/// Exit 0, or 1 after the first file that cannot be read or classified
/// (the lines for the files before it are printed first).
pub fn run(dir: &str, verbose: bool, files: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let cfg = ClassifyConfig::default();
    let dir_path = expand_user(dir);
    // Python loads the classifiers before reading any incident
    let has_files = match classifier_files(&dir_path) {
        Ok(f) => !f.is_empty(),
        Err(e) => {
            eprintln!("flogtool classify-incident: {e}");
            return ExitCode::from(1);
        }
    };
    let mut triggers = Vec::new();
    let mut failure = None;
    for f in files {
        match load_trigger(&expand_user(f).to_string_lossy()) {
            Ok(t) => triggers.push(t),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let batch = match classify_batch(&dir_path, &triggers, &cfg) {
        Ok(b) => b,
        Err((b, ClassifyError::NoPython(p, e))) if b.answers.is_empty() && has_files => {
            eprintln!(
                "flogtool classify-incident: cannot run {:?} ({e}): every incident is unknown (set {PYTHON_ENV})",
                p
            );
            Batch {
                answers: vec![Answer::default(); triggers.len()],
                ..Batch::default()
            }
        }
        Err((b, e)) => {
            failure = Some(e.to_string());
            b
        }
    };
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let mut text = batch.before.clone();
    for ((f, answer), trigger) in files.iter().zip(&batch.answers).zip(&triggers) {
        let cats = &answer.categories;
        text.push_str(&answer.printed);
        if cats.is_empty() {
            text.push_str(&format!("{f}: unknown\n"));
        } else {
            text.push_str(&format!("{f}: {}\n", cats.join(",")));
        }
        if cats.is_empty() && verbose {
            if let Err(e) = details(trigger, &mut text) {
                let _ = w.write_all(text.as_bytes());
                let _ = w.flush();
                eprintln!("flogtool classify-incident: {f}: {e}");
                return ExitCode::from(1);
            }
        }
        if w.write_all(text.as_bytes()).is_err() {
            return ExitCode::from(1);
        }
        text.clear();
    }
    text.push_str(&batch.after);
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
    match failure {
        Some(e) => {
            eprintln!("flogtool classify-incident: {e}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

/// `~/x` → `$HOME/x` (Python's `os.path.expanduser` for the common case).
fn expand_user(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if p == "~" => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| p.into()),
        _ => PathBuf::from(p),
    }
}
