//! The running server (`flappserver start`): a Tub listening on `port`,
//! announcing `location`, whose names are the swissnums of
//! `services.json`. As in Python, every lookup reads the entry of its
//! swissnum there and builds the service afresh (the Tub's name lookup
//! handler), so a service added, changed or removed is seen by the next
//! lookup, and a broken entry fails the lookup.
//!
//! Services announce no interface name, as Python's do (docs/flapp.md).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foolscap_app::{as_remote, Call, Object, Tub};
use foolscap_core::broker::Failure;
use foolscap_core::value::pyrepr::{bytes_repr, str_repr};
use foolscap_core::value::{RemoteRef, Value};

use super::basedir::{self, RunOptions, Service};

/// What each `read` asks the client's source for (Python's
/// `FileUploader` BLOCKSIZE): the wire shows it, so it is not tunable.
pub const UPLOAD_BLOCK: i64 = 1024 * 1024;

/// Bytes queued for a watcher's connection and not yet sent above which
/// the command's output is no longer read: the child then blocks on its
/// full pipe, so a command writing faster than the client reads cannot
/// grow the server's memory. Python has no such bound.
pub const MAX_UNSENT_OUTPUT: usize = 1024 * 1024;

/// Bytes of stdin received and not yet written to the child above which
/// the client's connection is dropped (its command's stdin is then
/// closed and the client exits 3). `feed_stdin` never waits: the engine
/// may deliver a connection's next calls on another thread meanwhile, so
/// a waiting `feed_stdin` could be overtaken by `close_stdin` and its
/// data lost. Python buffers without limit.
pub const MAX_QUEUED_STDIN: usize = 64 * 1024 * 1024;

/// Size of one read from the child's stdout or stderr.
pub const PIPE_READ: usize = 64 * 1024;

/// Uploads in progress at once (each has a thread); more fail with
/// `RuntimeError`.
pub const MAX_UPLOADS: usize = 64;

/// Commands running at once (each has three threads); more fail with
/// `RuntimeError`.
pub const MAX_COMMANDS: usize = 256;

/// The server's log (`twistd.log` or stdout), in twistd's line format.
#[derive(Clone)]
pub struct Log(Arc<Mutex<Box<dyn Write + Send>>>);

impl Log {
    pub fn new(out: Box<dyn Write + Send>) -> Log {
        Log(Arc::new(Mutex::new(out)))
    }

    pub fn msg(&self, text: &str) {
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+0000",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{stamp} [-] {text}");
        let _ = out.flush();
    }
}

/// What every service object shares.
struct Shared {
    basedir: PathBuf,
    log: Log,
    uploads: AtomicUsize,
    commands: AtomicUsize,
}

/// A service as one lookup built it (the peer's reference to it keeps
/// it alive).
struct ServiceObject {
    service: Service,
    shared: Arc<Shared>,
}

impl Object for ServiceObject {
    fn call(&self, call: Call) {
        match (self.service.clone(), call.method.as_str()) {
            (Service::Upload { targetdir, mode }, "putfile") => {
                putfile(&self.shared, call, targetdir, mode)
            }
            (Service::Upload { .. }, _) => no_such_method(call, "FileUploader"),
            (Service::Run(o), "execute") => execute(&self.shared, call, o),
            (Service::Run(_), _) => no_such_method(call, "CommandRunner"),
        }
    }

    fn class_name(&self) -> &str {
        "FlappService"
    }
}

/// A failure with a traceback text as Python formats one: Python's
/// client prints only the traceback of a remote failure, so its last
/// line must name the exception.
fn py_failure(class: &str, value: impl Into<String>) -> Failure {
    let mut f = Failure::new(class, value);
    f.traceback = traceback_of(&f);
    f
}

/// Ends as Twisted's traceback text does: the exception's qualified name
/// (`builtins.ValueError`, as Python's server sends it) and its text.
fn traceback_of(f: &Failure) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"flappserver (foolscap-rs)\", in a service\n{}: {}\n",
        f.type_name, f.value
    )
}

/// Python's `AttributeError` for a method a service does not have.
fn no_such_method(call: Call, class: &str) {
    let mut f = Failure::no_such_method(class, call.method.as_str());
    f.traceback = traceback_of(&f);
    call.fail(f)
}

fn type_error(msg: String) -> Failure {
    py_failure("builtins.TypeError", msg)
}

fn os_error(e: &std::io::Error, path: &Path) -> Failure {
    let errno = e.raw_os_error().unwrap_or(0);
    let class = match e.kind() {
        std::io::ErrorKind::NotFound => "builtins.FileNotFoundError",
        std::io::ErrorKind::PermissionDenied => "builtins.PermissionError",
        _ => "builtins.OSError",
    };
    py_failure(
        class,
        format!("[Errno {errno}] {e}: {}", str_repr(&path.to_string_lossy())),
    )
}

/// A counted slot of a limited resource, given back on drop.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(n: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        let mut cur = n.load(Ordering::Acquire);
        loop {
            if cur >= max {
                return None;
            }
            match n.compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Slot(n)),
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

// ------------------------------------------------------------ upload-file

/// Checks an upload's file name: one plain component, as Twisted's
/// `FilePath.child` demands, and also never `.` or empty (Python lets
/// those through and then fails, leaving a stray file next to the target
/// directory).
pub fn check_name(name: &str, targetdir: &Path) -> Result<(), Failure> {
    const INSECURE: &str = "twisted.python.filepath.InsecurePath";
    if name.contains('/') {
        return Err(py_failure(
            INSECURE,
            format!(
                "{} contains one or more directory separators",
                str_repr(name)
            ),
        ));
    }
    if name.contains('\0') {
        return Err(py_failure("builtins.ValueError", "embedded null byte"));
    }
    if name.is_empty() || name == "." || name == ".." {
        let newpath = match name {
            ".." => targetdir.parent().unwrap_or(targetdir),
            _ => targetdir,
        };
        return Err(py_failure(
            INSECURE,
            format!(
                "{} is not a child of {}",
                str_repr(&newpath.to_string_lossy()),
                targetdir.display()
            ),
        ));
    }
    Ok(())
}

fn putfile(shared: &Arc<Shared>, call: Call, targetdir: PathBuf, mode: u32) {
    let given = call.args.len() + call.kwargs.len();
    let (Some(name), Some(source)) = (call.arg(0, "name"), call.arg(1, "source")) else {
        return call.fail(type_error(format!(
            "FileUploader.remote_putfile() missing required arguments (got {given})"
        )));
    };
    if given != 2 {
        return call.fail(type_error(format!(
            "FileUploader.remote_putfile() takes 3 positional arguments but {} were given",
            given + 1
        )));
    }
    let name = call.resolve(name).clone();
    let source = call.detach(source);
    let name = match &name {
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(e) => {
                return call.fail(py_failure(
                    "builtins.UnicodeDecodeError",
                    format!("'utf-8' codec can't decode bytes: {e}"),
                ))
            }
        },
        other => match other.as_str() {
            Some(s) => s.to_owned(),
            None => {
                return call.fail(type_error(format!(
                    "not expecting type '{}'",
                    other.type_name()
                )))
            }
        },
    };
    let Some(source) = as_remote(&source).cloned() else {
        return call.fail(py_failure(
            "builtins.AttributeError",
            "the source has no attribute 'callRemote'",
        ));
    };
    if let Err(f) = check_name(&name, &targetdir) {
        return call.fail(f);
    }
    let shared = shared.clone();
    let tub = call.tub().clone();
    let spawned = std::thread::Builder::new()
        .name("flapp-upload".into())
        .spawn(move || {
            let Some(_slot) = Slot::take(&shared.uploads, MAX_UPLOADS) else {
                return call.fail(py_failure(
                    "builtins.RuntimeError",
                    format!("too many uploads in progress (at most {MAX_UPLOADS})"),
                ));
            };
            let result = receive(&tub, &source, &targetdir, &name, mode);
            call.reply(result.map(|()| Value::None));
        });
    if let Err(e) = spawned {
        eprintln!("flappserver: no thread for an upload: {e}");
    }
}

/// Reads the file from `source` into `NAME.partial`, then renames it over
/// `NAME` and applies the mode; on any failure the partial file goes.
fn receive(
    tub: &Tub,
    source: &RemoteRef,
    targetdir: &Path,
    name: &str,
    mode: u32,
) -> Result<(), Failure> {
    let target = targetdir.join(name);
    let partial = targetdir.join(format!("{name}.partial"));
    // a leftover partial file (or a symlink planted there) is removed,
    // never followed: the new one is created exclusively
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(os_error(&e, &partial)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| os_error(&e, &partial))?;
    let copied = (|| -> Result<(), Failure> {
        loop {
            let answer = tub
                .call(
                    source,
                    "read",
                    &[Value::int(UPLOAD_BLOCK)],
                    &[],
                    Duration::from_secs(24 * 3600),
                )
                .map_err(failure_of)?;
            let data = match answer.unanchored() {
                Value::Bytes(b) => b.clone(),
                other => {
                    return Err(type_error(format!(
                        "a bytes-like object is required, not '{}'",
                        other.type_name()
                    )))
                }
            };
            if data.is_empty() {
                return Ok(());
            }
            file.write_all(&data).map_err(|e| os_error(&e, &partial))?;
        }
    })();
    let finished = copied.and_then(|()| {
        file.flush().map_err(|e| os_error(&e, &partial))?;
        drop(file);
        std::fs::rename(&partial, &target).map_err(|e| os_error(&e, &target))?;
        set_mode(&target, mode).map_err(|e| os_error(&e, &target))
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    finished
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// The failure to relay for an error of one of our calls: the peer's own
/// failure when it sent one (Python passes it through unchanged).
fn failure_of(e: foolscap_app::Error) -> Failure {
    use foolscap_core::broker::CallError;
    match e {
        foolscap_app::Error::Call(CallError::Remote(f)) => f,
        other => py_failure(
            "foolscap.ipb.DeadReferenceError",
            format!("Connection was lost ({other})"),
        ),
    }
}

// ------------------------------------------------------------ run-command

fn execute(shared: &Arc<Shared>, call: Call, o: RunOptions) {
    let given = call.args.len() + call.kwargs.len();
    let Some(watcher) = call.arg(0, "watcher") else {
        return call.fail(type_error(
            "CommandRunner.remote_execute() missing 1 required positional argument: 'watcher'"
                .into(),
        ));
    };
    if given != 1 {
        return call.fail(type_error(format!(
            "CommandRunner.remote_execute() takes 2 positional arguments but {} were given",
            given + 1
        )));
    }
    let watcher = call.detach(watcher);
    let Some(watcher) = as_remote(&watcher).cloned() else {
        return call.fail(py_failure(
            "builtins.AttributeError",
            "the watcher has no attribute 'callRemote'",
        ));
    };
    if o.argv.is_empty() {
        return call.fail(py_failure(
            "builtins.IndexError",
            "tuple index out of range",
        ));
    }
    let Some(slot) = Slot::take(&shared.commands, MAX_COMMANDS) else {
        return call.fail(py_failure(
            "builtins.RuntimeError",
            format!("too many commands running (at most {MAX_COMMANDS})"),
        ));
    };
    std::mem::forget(slot); // given back by the waiter thread
    let tub = call.tub().clone();
    let argv_repr = format!(
        "({}{})",
        o.argv
            .iter()
            .map(|a| str_repr(a))
            .collect::<Vec<_>>()
            .join(", "),
        if o.argv.len() == 1 { "," } else { "" }
    );
    shared.log.msg(&format!(
        "command started in dir {}: {argv_repr}",
        o.targetdir
    ));
    // no shell: the program is looked up on PATH, the environment is ours
    let spawned = Command::new(&o.argv[0])
        .args(&o.argv[1..])
        .current_dir(&o.targetdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            // Python forks first, and the child reports the failed exec on
            // its stderr and exits 1
            let text = format!(
                "Upon execvpe {} {argv_repr} in environment id: {e}\n",
                o.argv[0]
            );
            let log = shared.log.clone();
            let counter = shared.clone();
            if o.send_stderr {
                let _ = tub.call_only(&watcher, "stderr", &[Value::bytes(text.as_bytes())], &[]);
            }
            log.msg("process ended (signal=None, rc=1)");
            let _ = tub.call_only(&watcher, "done", &[Value::None, Value::int(1)], &[]);
            counter.commands.fetch_sub(1, Ordering::AcqRel);
            return call.answer(Value::None);
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdin = child.stdin.take();
    let relay =
        |pipe: Option<Box<dyn Read + Send>>, method: &'static str, send: bool, log: bool| {
            let (tub, watcher, l) = (tub.clone(), watcher.clone(), shared.log.clone());
            std::thread::Builder::new()
                .name(format!("flapp-{method}"))
                .spawn(move || {
                    if let Some(p) = pipe {
                        relay_pipe(p, &tub, &watcher, method, send, log.then_some(&l));
                    }
                })
        };
    let out_thread = relay(
        stdout.map(|p| Box::new(p) as Box<dyn Read + Send>),
        "stdout",
        o.send_stdout,
        o.log_stdout,
    );
    let err_thread = relay(
        stderr.map(|p| Box::new(p) as Box<dyn Read + Send>),
        "stderr",
        o.send_stderr,
        o.log_stderr,
    );
    // Without --accept-stdin the child's stdin stays open and unwritten
    // until it exits, as in Python (a command reading it waits).
    let (answer, kept_stdin) = if o.accept_stdin {
        let command = StdinCommand::start(stdin, o.log_stdin, shared.log.clone(), watcher.clone());
        let c2 = command.clone();
        tub.notify_on_disconnect(&watcher, move || c2.close());
        (call.tub().local(command), None)
    } else {
        (Value::None, stdin)
    };
    let shared2 = shared.clone();
    let waiter = std::thread::Builder::new()
        .name("flapp-wait".into())
        .spawn(move || {
            let status = wait_child(&mut child);
            drop(kept_stdin);
            for t in [out_thread, err_thread].into_iter().flatten() {
                let _ = t.join();
            }
            let (signal, code) = status;
            let show = |v: Option<i32>| v.map_or("None".to_owned(), |n| n.to_string());
            shared2.log.msg(&format!(
                "process ended (signal={}, rc={})",
                show(signal),
                show(code)
            ));
            let int = |v: Option<i32>| v.map_or(Value::None, |n| Value::int(n.into()));
            let _ = tub.call_only(&watcher, "done", &[int(signal), int(code)], &[]);
            shared2.commands.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = waiter {
        eprintln!("flappserver: no thread to wait for a command: {e}");
    }
    call.answer(answer);
}

/// `(signal, exit code)`: exactly one is set.
fn wait_child(child: &mut Child) -> (Option<i32>, Option<i32>) {
    match child.wait() {
        Ok(status) => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = status.signal() {
                    return (Some(sig), None);
                }
            }
            (None, status.code())
        }
        Err(_) => (None, Some(1)),
    }
}

/// Copies one of the child's pipes to the watcher as it arrives, reading
/// no more while [`MAX_UNSENT_OUTPUT`] bytes wait to go out. Once the
/// watcher's connection is gone the output is read and dropped (the
/// command keeps running, as in Python).
fn relay_pipe(
    mut pipe: Box<dyn Read + Send>,
    tub: &Tub,
    watcher: &RemoteRef,
    method: &str,
    send: bool,
    log: Option<&Log>,
) {
    let mut buf = vec![0u8; PIPE_READ];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let data = &buf[..n];
        if let Some(log) = log {
            let sent = if send { "sent" } else { "not sent" };
            log.msg(&format!("{method} ({sent}): {}", bytes_repr(data)));
        }
        if !send {
            continue;
        }
        // pace by what is still queued for the watcher's connection
        let mut pause = Duration::from_millis(1);
        while tub
            .unsent_output(watcher)
            .is_some_and(|n| n > MAX_UNSENT_OUTPUT)
        {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        let _ = tub.call_only(
            watcher,
            method,
            &[Value::Bytes(Bytes::copy_from_slice(data))],
            &[],
        );
    }
}

/// The object `execute` returns with `--accept-stdin`: `feed_stdin` and
/// `close_stdin`, written to the child by a thread of its own.
struct StdinCommand {
    state: Mutex<StdinState>,
    changed: Condvar,
    log: Option<Log>,
    /// The client's watcher: its connection is dropped when stdin is over
    /// [`MAX_QUEUED_STDIN`].
    watcher: Option<RemoteRef>,
}

struct StdinState {
    queue: std::collections::VecDeque<Bytes>,
    queued: usize,
    closed: bool,
    /// The writer is gone (the child closed its stdin or exited).
    dead: bool,
}

impl StdinCommand {
    fn start(
        stdin: Option<ChildStdin>,
        log_stdin: bool,
        log: Log,
        watcher: RemoteRef,
    ) -> Arc<StdinCommand> {
        let c = Arc::new(StdinCommand {
            state: Mutex::new(StdinState {
                queue: Default::default(),
                queued: 0,
                closed: false,
                dead: stdin.is_none(),
            }),
            changed: Condvar::new(),
            log: log_stdin.then_some(log),
            watcher: Some(watcher),
        });
        if let Some(stdin) = stdin {
            let c2 = c.clone();
            let _ = std::thread::Builder::new()
                .name("flapp-stdin".into())
                .spawn(move || c2.write_all(stdin));
        }
        c
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdinState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_all(&self, mut stdin: ChildStdin) {
        loop {
            let next = {
                let mut st = self.lock();
                loop {
                    if let Some(b) = st.queue.pop_front() {
                        st.queued -= b.len();
                        self.changed.notify_all();
                        break Some(b);
                    }
                    if st.closed {
                        break None;
                    }
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(data) = next else {
                break; // dropping stdin closes the pipe
            };
            if stdin.write_all(&data).is_err() {
                break;
            }
        }
        let mut st = self.lock();
        st.dead = true;
        st.queue.clear();
        st.queued = 0;
        self.changed.notify_all();
    }

    fn close(&self) {
        let mut st = self.lock();
        if !st.closed {
            st.closed = true;
            if let Some(l) = &self.log {
                l.msg("stdin closed");
            }
        }
        self.changed.notify_all();
    }
}

impl Object for StdinCommand {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "feed_stdin" => {
                let data = match call.arg(0, "data").map(|v| call.resolve(v)) {
                    Some(Value::Bytes(b)) => b.clone(),
                    Some(other) => {
                        let t = match other.type_name() {
                            "str" | "text" => "str",
                            t => t,
                        };
                        return call.fail(type_error(format!(
                            "stdin can accept only strings of bytes, not '<class '{t}'>'"
                        )));
                    }
                    None => {
                        return call.fail(type_error(
                            "Command.remote_feed_stdin() missing 1 required positional argument: 'data'"
                                .into(),
                        ))
                    }
                };
                if let Some(l) = &self.log {
                    l.msg(&format!("stdin: {}", bytes_repr(&data)));
                }
                let mut st = self.lock();
                if !st.dead && !st.closed {
                    if st.queued + data.len() > MAX_QUEUED_STDIN {
                        drop(st);
                        if let Some(l) = &self.log {
                            l.msg("stdin over its limit: dropping the client");
                        }
                        if let Some(w) = &self.watcher {
                            call.tub().disconnect(w);
                        }
                        self.close();
                        return call.fail(py_failure(
                            "builtins.RuntimeError",
                            format!("over {MAX_QUEUED_STDIN} bytes of stdin waiting"),
                        ));
                    }
                    st.queued += data.len();
                    st.queue.push_back(data);
                    self.changed.notify_all();
                }
                drop(st);
                call.answer(Value::None);
            }
            "close_stdin" => {
                self.close();
                call.answer(Value::None);
            }
            _ => no_such_method(call, "Command"),
        }
    }

    fn class_name(&self) -> &str {
        "Command"
    }
}

// ------------------------------------------------------------ the names

/// The Tub's name lookup handler: the service stored under `name`, built
/// afresh from `services.json` (or the old layout) as Python's server
/// builds it on every lookup. An unknown name is Python's `KeyError`; a
/// broken entry fails the lookup with the exception Python raises.
fn lookup(shared: &Arc<Shared>, name: &str) -> foolscap_app::NameLookupResult {
    match basedir::lookup(&shared.basedir, name) {
        Ok(Some(service)) => Ok(Some(Arc::new(ServiceObject {
            service,
            shared: shared.clone(),
        }))),
        Ok(None) => Ok(None),
        Err(e) => Err(py_failure(e.class(), e.text())),
    }
}

/// Parses a Twisted strports listen string (`tcp:PORT[:interface=IP]`,
/// `PORT`) into an address to bind.
pub fn listen_addr(port: &str) -> Result<String, String> {
    let body = port.strip_prefix("tcp:").unwrap_or(port);
    // `\:` escapes a colon (IPv6 interfaces)
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ':' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let (mut num, mut interface) = (None, String::from("0.0.0.0"));
    for (i, p) in parts.iter().enumerate() {
        match p.split_once('=') {
            Some(("port", v)) => num = Some(v.to_owned()),
            Some(("interface", v)) => interface = v.to_owned(),
            Some((_, _)) => {} // backlog= and the like
            None if i == 0 => num = Some(p.clone()),
            None => return Err(format!("unsupported port description {port:?}")),
        }
    }
    let num: u16 = num
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no port number in {port:?}"))?;
    Ok(if interface.contains(':') {
        format!("[{interface}]:{num}")
    } else {
        format!("{interface}:{num}")
    })
}

/// Runs the server in this process until it is killed. `basedir` is the
/// current directory already.
pub fn serve(basedir: &Path, log: Log, stdout_banner: &mut dyn Write) -> Result<(), String> {
    let read = |f: &str| {
        std::fs::read_to_string(basedir.join(f))
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("{}: {e}", basedir.join(f).display()))
    };
    let port = read("port")?;
    let location = read("location")?;
    if location.is_empty() {
        return Err(format!(
            "This flappserver was created without '--location=': edit '{}' to hold e.g. 'tcp:example.org:12345' (we listen on {port})",
            basedir.join("location").display()
        ));
    }
    // One event-loop thread runs every call of every connection, in the
    // order they arrived: `feed_stdin` and `close_stdin` are reqID-0 calls
    // whose order is the data's order (every engine keeps a connection's
    // calls in order; docs/architecture.md "Order of calls"). Nothing the services do
    // on that thread blocks: uploads and commands have threads of their
    // own.
    let engine = foolscap_mio::Runtime::start(foolscap_mio::LoopConfig::default())
        .map_err(|e| format!("event loop: {e}"))?;
    let tub = engine
        .tub_with_cert_file(basedir.join("tub.pem"))
        .map_err(|e| format!("tub.pem: {e}"))?;
    let hints: Vec<&str> = location.split(',').collect();
    tub.set_location(&hints);
    let shared = Arc::new(Shared {
        basedir: basedir.to_path_buf(),
        log: log.clone(),
        uploads: AtomicUsize::new(0),
        commands: AtomicUsize::new(0),
    });
    // every name is looked up in the base directory when asked for
    tub.set_name_lookup(move |name| lookup(&shared, name));
    let addr = listen_addr(&port)?;
    let _ = writeln!(stdout_banner, "Server Running");
    let _ = stdout_banner.flush();
    let bound = tub
        .listen(addr.as_str())
        .map_err(|e| format!("Couldn't listen on {addr}: {e}"))?;
    log.msg(&format!(
        "flappserver (foolscap-rs) starting on {}",
        bound.port()
    ));
    // the event loop's thread serves; this one only keeps the Tub
    loop {
        std::thread::park();
    }
}
