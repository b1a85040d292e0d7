//! `flappclient`: uses a flappserver service by its FURL, with the
//! command line, output and exit codes of Python's (docs/flapp.md).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foolscap_app::{as_remote, Call, Error, Object, Tub};
use foolscap_core::broker::{CallError, Failure};
use foolscap_core::tub::TubError;
use foolscap_core::value::{RemoteRef, Value};

use super::getopt::{self, flag, param, VERSION_TEXT};

/// Largest `read(size)` a server may ask for at once; larger requests get
/// this much (a hostile server cannot make us allocate at will). Python's
/// flappserver asks for 1 MiB.
pub const MAX_READ: usize = 16 * 1024 * 1024;

/// Bytes of our stdin read per `feed_stdin` (what Python reads from a
/// pipe at a time).
pub const STDIN_CHUNK: usize = 8192;

/// Bytes queued for the server and not yet sent above which we stop
/// reading our stdin.
pub const MAX_UNSENT_STDIN: usize = 1024 * 1024;

/// How long the connection and each call may take before we give up
/// (Python's client has no limit; a day stands for none).
const PATIENCE: Duration = Duration::from_secs(24 * 3600);

const MAIN_USAGE: &str = "Usage: flappclient [--furl=|--furlfile=] COMMAND
Options:
  -f, --furlfile=  file containing the FURL of the service
      --furl=      FURL of the service to contact
      --help       
      --version    

This client invokes a remote service that is running as     part of a
'flappserver'. Each service lives at a specific secret FURL,     which starts
with 'pb://'. This FURL can be passed on the command line     with --furl=FURL,
or it can be stored in a file (along with comment lines     that start with '#')
and passed with --furlfile=FILE.      Each service has a specific COMMAND type,
and the client invocation must     match the service. For more details on a
specific command, run     'flappclient COMMAND --help', e.g. 'flappclient
upload-file --help'.
Commands:
    run-command      cause a command to be run
    upload-file      upload a file
";

const UPLOAD_USAGE: &str = "Usage: flappclient [--furl=|--furlfile] upload-file SOURCEFILES..
Options:
  -h          
      --help  Display this help and exit.

This client sends one or more files to the upload-file     service waiting at
the given FURL. All files will be placed in the     pre-configured target
directory, using the basename of each SOURCEFILE     argument.
";

const RUN_USAGE: &str = "Usage: flappclient [--furl=|--furlfile] run-command
Options:
  -h          
      --help  Display this help and exit.
";

fn usage_error(argv0: &str, msg: &str, usage: &str) -> i32 {
    eprintln!("{argv0}:  {msg}");
    eprintln!();
    eprintln!("{usage}");
    1
}

/// The first line of a FURL file that starts with `pb://` once stripped.
fn read_furlfile(path: &str) -> Result<Option<String>, String> {
    let expanded = match path.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(rest),
            None => Path::new(path).to_path_buf(),
        },
        None => Path::new(path).to_path_buf(),
    };
    let text = std::fs::read(&expanded)
        .map_err(|e| format!("[Errno {}] {e}: '{path}'", e.raw_os_error().unwrap_or(0)))?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pb://"))
        .map(str::to_owned))
}

/// `flappclient ARGS`; returns the exit code.
pub fn main(argv0: &str, args: &[String]) -> i32 {
    let opts = [
        param("furl", None),
        param("furlfile", Some('f')),
        flag("help", None),
        flag("version", None),
    ];
    let p = match getopt::parse(args, &opts) {
        Ok(p) => p,
        Err(e) => return usage_error(argv0, &e, MAIN_USAGE),
    };
    for (name, _) in &p.opts {
        match *name {
            "help" => {
                println!("Usage: flappclient [--furl=|--furlfile=] COMMAND");
                return 0;
            }
            "version" => {
                print!("{VERSION_TEXT}");
                return 0;
            }
            _ => {}
        }
    }
    // the subcommand's own options and arguments
    let sub = p.rest.split_first();
    let sub_usage = match sub.map(|(c, _)| c.as_str()) {
        Some("upload-file") => UPLOAD_USAGE,
        Some("run-command") => RUN_USAGE,
        Some(other) => return usage_error(argv0, &format!("Unknown command: {other}"), MAIN_USAGE),
        None => MAIN_USAGE,
    };
    let sub_parsed = match sub {
        Some((_, rest)) => match getopt::parse(rest, &[flag("help", Some('h'))]) {
            Ok(sp) if sp.has("help") => {
                println!("{sub_usage}");
                return 0;
            }
            Ok(sp) => Some(sp),
            Err(e) => return usage_error(argv0, &e, sub_usage),
        },
        None => None,
    };
    let mut furl = p.value("furl").map(str::to_owned);
    if let Some(ff) = p.value("furlfile") {
        furl = match read_furlfile(ff) {
            Ok(f) => f,
            Err(e) => {
                // Python's open() fails while parsing the options
                eprintln!("flappclient command failed:");
                eprintln!("[Failure instance: Traceback: <class 'FileNotFoundError'>: {e}\n]");
                return 255;
            }
        };
    }
    let Some(furl) = furl.filter(|f| !f.is_empty()) else {
        return usage_error(argv0, "must provide --furl or --furlfile", sub_usage);
    };
    let (Some((cmd, _)), Some(sp)) = (sub, sub_parsed) else {
        return usage_error(argv0, "must specify a command", MAIN_USAGE);
    };
    if cmd == "run-command" && !sp.rest.is_empty() {
        return usage_error(argv0, "Too many arguments.", RUN_USAGE);
    }
    let tub = match foolscap_threads::new_tub() {
        Ok(t) => t,
        Err(e) => return failed(&local_failure("builtins.RuntimeError", &e.to_string())),
    };
    let outcome = match tub.get_reference(&furl, PATIENCE) {
        Ok(Value::Remote(r)) => match cmd.as_str() {
            "upload-file" => upload_files(&tub, &r, &sp.rest),
            _ => run_command(&tub, &r),
        },
        Ok(other) => Err(local_failure(
            "builtins.AttributeError",
            &format!(
                "'{}' object has no attribute 'callRemote'",
                other.type_name()
            ),
        )),
        Err(e) => Err(describe(e)),
    };
    let code = match outcome {
        Ok(code) => code,
        Err(text) => failed(&text),
    };
    let _ = std::io::stdout().flush();
    tub.shutdown();
    code
}

fn failed(text: &str) -> i32 {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "flappclient command failed:");
    let _ = writeln!(err, "{text}");
    255
}

fn local_failure(class: &str, value: &str) -> String {
    format!("[Failure instance: Traceback (failure with no frames): <class '{class}'>: {value}\n]")
}

/// A failure as Python's client prints it (the class and message; the
/// remote traceback where the server sent one).
fn describe(e: Error) -> String {
    match e {
        Error::Call(CallError::Remote(f)) | Error::Tub(TubError::Lookup(CallError::Remote(f))) => {
            remote_failure(&f)
        }
        Error::Tub(TubError::Unreachable { attempts, .. }) => match attempts.last() {
            None => local_failure("foolscap.tokens.NoLocationHintsError", ""),
            Some(a) if a.to_string().contains("refused") => local_failure(
                "twisted.internet.error.ConnectionRefusedError",
                "Connection was refused by other side: 111: Connection refused.",
            ),
            Some(a) => local_failure("twisted.internet.error.ConnectError", &a.to_string()),
        },
        Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => local_failure(
            "twisted.internet.error.ConnectionRefusedError",
            "Connection was refused by other side: 111: Connection refused.",
        ),
        Error::Furl(f) => local_failure("builtins.ValueError", &f.to_string()),
        other => local_failure("foolscap.ipb.DeadReferenceError", &other.to_string()),
    }
}

fn remote_failure(f: &Failure) -> String {
    // Python prints a CopiedFailure as its traceback text alone; a
    // failure without one still names its exception here
    let tb = f.traceback.trim_end();
    let last = format!("{}: {}", f.type_name, f.value);
    let shown = f
        .type_name
        .strip_prefix("builtins.")
        .unwrap_or(&f.type_name);
    if tb.contains(&last) || tb.contains(&format!("{shown}: {}", f.value)) {
        format!("[CopiedFailure instance: Traceback from remote host -- {tb}\n]")
    } else {
        format!("[CopiedFailure instance: Traceback from remote host -- {tb}\n{last}\n]")
    }
}

// ------------------------------------------------------------ upload-file

/// Answers the server's `read(size)` from a local file.
struct Source {
    file: Mutex<std::fs::File>,
}

impl Object for Source {
    fn call(&self, call: Call) {
        if call.method.as_str() != "read" {
            return call.no_such_method("Uploader");
        }
        let Some(size) = call.arg(0, "size").and_then(Value::as_i64) else {
            return call.fail(Failure::new(
                "builtins.TypeError",
                "argument should be integer or None",
            ));
        };
        // Python's read(-1) reads everything; we cap every read
        let size = usize::try_from(size).unwrap_or(MAX_READ).min(MAX_READ);
        let mut buf = vec![0u8; size];
        let mut filled = 0;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        while filled < size {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return call.fail(Failure::new("builtins.OSError", e.to_string()));
                }
            }
        }
        drop(file);
        buf.truncate(filled);
        call.answer(Value::Bytes(Bytes::from(buf)));
    }

    fn class_name(&self) -> &str {
        "Uploader"
    }
}

fn upload_files(tub: &Tub, service: &RemoteRef, files: &[String]) -> Result<i32, String> {
    for path in files {
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = std::fs::File::open(expand(path)).map_err(|e| {
            let class = match e.kind() {
                std::io::ErrorKind::NotFound => "builtins.FileNotFoundError",
                std::io::ErrorKind::PermissionDenied => "builtins.PermissionError",
                _ => "builtins.OSError",
            };
            format!(
                "[Failure instance: Traceback: <class '{}'>: [Errno {}] {e}: '{path}'\n]",
                class.trim_start_matches("builtins."),
                e.raw_os_error().unwrap_or(0)
            )
        })?;
        let source = tub.local(Arc::new(Source {
            file: Mutex::new(file),
        }));
        tub.call(
            service,
            "putfile",
            &[Value::bytes(name.as_bytes()), source],
            &[],
            PATIENCE,
        )
        .map_err(describe)?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{name}: uploaded");
        let _ = out.flush();
    }
    Ok(0)
}

fn expand(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => Path::new(path).to_path_buf(),
    }
}

// ------------------------------------------------------------ run-command

enum Outcome {
    Done(i32),
    Lost,
}

/// The watcher passed to `execute`: writes what the command prints to
/// our stdout and stderr as it comes.
struct Watcher {
    done: Mutex<Option<mpsc::Sender<Outcome>>>,
    /// When output last arrived (see `feed`).
    last_output: Mutex<Instant>,
}

impl Object for Watcher {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            m @ ("stdout" | "stderr") => {
                let Some(Value::Bytes(data)) = call.arg(0, "data").map(|v| call.resolve(v)) else {
                    return call.fail(Failure::new("builtins.AssertionError", ""));
                };
                *self.last_output.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                let ok = if m == "stdout" {
                    let mut o = std::io::stdout().lock();
                    o.write_all(data).and_then(|()| o.flush())
                } else {
                    let mut o = std::io::stderr().lock();
                    o.write_all(data).and_then(|()| o.flush())
                };
                let _ = ok;
                call.answer(Value::None);
            }
            "done" => {
                let signal = call.arg(0, "signal").cloned().unwrap_or(Value::None);
                let code = call.arg(1, "exitcode").cloned().unwrap_or(Value::None);
                let rc = if truthy(&signal) {
                    127
                } else {
                    // sys.exit(None) is 0; other ints are taken mod 256
                    code.as_i64().map_or(0, |c| (c & 0xff) as i32)
                };
                if let Some(tx) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = tx.send(Outcome::Done(rc));
                }
                call.answer(Value::None);
            }
            _ => call.no_such_method("RunCommand"),
        }
    }

    fn class_name(&self) -> &str {
        "RunCommand"
    }
}

fn truthy(v: &Value) -> bool {
    match v.unanchored() {
        Value::None => false,
        Value::Bool(b) => *b,
        other => other.as_i64().is_none_or(|n| n != 0),
    }
}

fn run_command(tub: &Tub, service: &RemoteRef) -> Result<i32, String> {
    let (tx, rx) = mpsc::channel();
    let lost = tx.clone();
    tub.notify_on_disconnect(service, move || {
        let _ = lost.send(Outcome::Lost);
    });
    let watcher = Arc::new(Watcher {
        done: Mutex::new(Some(tx)),
        last_output: Mutex::new(Instant::now()),
    });
    let answer = tub
        .call(
            service,
            "execute",
            &[tub.local(watcher.clone())],
            &[],
            PATIENCE,
        )
        .map_err(describe)?;
    if let Some(command) = as_remote(&answer).cloned() {
        let (tub2, w2) = (tub.clone(), watcher.clone());
        let _ = std::thread::Builder::new()
            .name("flappclient-stdin".into())
            .spawn(move || feed(&tub2, &command, &w2));
    }
    match rx.recv() {
        Ok(Outcome::Done(rc)) => Ok(rc),
        Ok(Outcome::Lost) | Err(_) => Ok(3),
    }
}

/// Sends our stdin to the command, then closes its stdin. Before closing,
/// waits until the command's output has been quiet for a moment (at most [`CLOSE_GRACE`]): a Python flappserver
/// whose command exits while output is still in flight can drop the tail
/// of that output.
fn feed(tub: &Tub, command: &RemoteRef, watcher: &Watcher) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; STDIN_CHUNK];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        while tub
            .unsent_output(command)
            .is_some_and(|n| n > MAX_UNSENT_STDIN)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if tub
            .call_only(
                command,
                "feed_stdin",
                &[Value::Bytes(Bytes::copy_from_slice(&buf[..n]))],
                &[],
            )
            .is_err()
        {
            return;
        }
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    while Instant::now() < deadline {
        let quiet = watcher
            .last_output
            .lock()
            .map(|t| t.elapsed() >= QUIET)
            .unwrap_or(true);
        if quiet {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = tub.call_only(command, "close_stdin", &[], &[]);
}

/// Output silence taken as "the command has caught up" before stdin is
/// closed.
const QUIET: Duration = Duration::from_millis(50);

/// The longest we wait for that silence.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
