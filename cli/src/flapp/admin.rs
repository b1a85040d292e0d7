//! `flappserver`'s commands: create, add, list, start, stop, restart,
//! with the output, errors and exit codes of Python's (docs/flapp.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::basedir::{self, BuildError, Built, Entry};
use super::getopt::{self, flag, param, Opt, VERSION_TEXT};
use super::serve::{self, Log};

const MAIN_USAGE: &str = "Usage: flappserver (create|add|list|start|stop)
Options:
      --help     Display this help and exit.
      --version  
Commands:
    add          add new service to an app server
    create       create a new app server
    list         list services in an app server
    restart      (first stop if necessary, then) start a server
    start        launch an app server
    stop         shut down an app server
";

fn create_usage() -> String {
    format!(
        "Usage: flappserver create [options] BASEDIR
Options:
  -h, --help       Display this help and exit.
  -l, --location=  (required) Tub location hints to use in generated FURLs. e.g.
                   'tcp:example.org:3116'
  -p, --port=      TCP port to listen on (strports string) [default: tcp:3116]
  -q, --quiet      Be silent upon success
      --umask=     (octal) file creation mask to use for the server. If not
                   provided, the current umask ({:04o}) is copied.
      --version    Display Twisted version and exit.
",
        current_umask()
    )
}

const ADD_USAGE: &str = "Usage: flappserver add [--comment C] BASEDIR SERVICE-TYPE SERVICE-ARGS..
Options:
  -c, --comment=  optional comment describing this service
  -h, --help      Display this help and exit.
  -q, --quiet     Be silent upon success
      --version   Display Twisted version and exit.

Use 'flappserver add BASEDIR SERVICE-TYPE --help' for details.

SERVICE-TYPE can be one of the following:
  run-command
  upload-file
";

const LIST_USAGE: &str = "Usage: flappserver list BASEDIR
Options:
  -h, --help     Display this help and exit.
      --version  Display Twisted version and exit.
";

const START_USAGE: &str = "Usage: flappserver start BASEDIR [twistd options]
Options:
  -h, --help     Display this help and exit.
      --version  Display Twisted version and exit.
";

const STOP_USAGE: &str = "Usage: flappserver stop BASEDIR
Options:
  -h, --help     Display this help and exit.
  -q, --quiet    Be silent when the server is not already running
      --version  Display Twisted version and exit.
";

const RESTART_USAGE: &str = "Usage: flappserver restart BASEDIR [twistd options]
Options:
  -h, --help     Display this help and exit.
      --version  Display Twisted version and exit.
";

/// The `flappserver.tac` Python's `twistd` runs: the same file Python's
/// `create` writes, with no stashed paths (the Python that runs it finds
/// foolscap on its own path).
const TACFILE: &str = "# -*- python -*-

# we record the path when 'flappserver create' is run, in case it was run out
# of a source tree. This is somewhat fragile, of course.

stashed_path = [
]

import sys
needed = [p for p in stashed_path if p not in sys.path]
sys.path = needed + sys.path
#print 'NEEDED', needed

from foolscap.appserver import server
from twisted.application import service

appserver = server.AppServer()
application = service.Application('flappserver')
appserver.setServiceParent(application)
";

/// A usage error: `<argv0>:  <message>`, an empty line and the usage, on
/// stdout; exit 1.
fn usage_error(argv0: &str, msg: &str, usage: &str) -> i32 {
    println!("{argv0}:  {msg}");
    println!();
    println!("{usage}");
    1
}

/// Runs `flappserver` with `args` (without argv0); returns the exit code.
pub fn main(argv0: &str, args: &[String]) -> i32 {
    let top = [flag("help", None), flag("version", None)];
    let p = match getopt::parse(args, &top) {
        Ok(p) => p,
        Err(e) => return usage_error(argv0, &e, MAIN_USAGE),
    };
    for (name, _) in &p.opts {
        match *name {
            "help" => {
                println!("{MAIN_USAGE}");
                return 0;
            }
            "version" => {
                print!("{VERSION_TEXT}");
                return 0;
            }
            _ => {}
        }
    }
    let Some((cmd, rest)) = p.rest.split_first() else {
        return usage_error(argv0, "must specify a command", MAIN_USAGE);
    };
    let (opts, usage): (&[Opt], String) = match cmd.as_str() {
        "create" => (
            &[
                flag("help", Some('h')),
                flag("version", None),
                flag("quiet", Some('q')),
                param("port", Some('p')),
                param("location", Some('l')),
                param("umask", None),
            ],
            create_usage(),
        ),
        "add" => (
            &[
                flag("help", Some('h')),
                flag("version", None),
                flag("quiet", Some('q')),
                param("comment", Some('c')),
            ],
            ADD_USAGE.into(),
        ),
        "list" => (
            &[flag("help", Some('h')), flag("version", None)],
            LIST_USAGE.into(),
        ),
        "start" => (
            &[flag("help", Some('h')), flag("version", None)],
            START_USAGE.into(),
        ),
        "stop" => (
            &[
                flag("help", Some('h')),
                flag("version", None),
                flag("quiet", Some('q')),
            ],
            STOP_USAGE.into(),
        ),
        "restart" => (
            &[flag("help", Some('h')), flag("version", None)],
            RESTART_USAGE.into(),
        ),
        other => return usage_error(argv0, &format!("Unknown command: {other}"), MAIN_USAGE),
    };
    let p = match getopt::parse(rest, opts) {
        Ok(p) => p,
        Err(e) => return usage_error(argv0, &e, &usage),
    };
    for (name, _) in &p.opts {
        match *name {
            "help" => {
                println!("{usage}");
                return 0;
            }
            "version" => {
                print!("{VERSION_TEXT}");
                return 0;
            }
            _ => {}
        }
    }
    let wrong = || usage_error(argv0, "Wrong number of arguments.", &usage);
    match cmd.as_str() {
        "create" => {
            let [basedir] = p.rest.as_slice() else {
                return wrong();
            };
            let umask = match p.value("umask") {
                Some(u) => match u32::from_str_radix(u, 8) {
                    Ok(u) => u,
                    Err(_) => {
                        return usage_error(
                            argv0,
                            &format!("invalid literal for int() with base 8: '{u}'"),
                            &usage,
                        )
                    }
                },
                None => current_umask(),
            };
            let Some(location) = p.value("location").filter(|l| !l.is_empty()) else {
                return usage_error(argv0, "--location= is mandatory", &usage);
            };
            let port = p.value("port").unwrap_or("tcp:3116");
            create(basedir, port, location, umask, p.has("quiet"))
        }
        "add" => {
            let [basedir, kind, args @ ..] = p.rest.as_slice() else {
                return wrong();
            };
            add(basedir, kind, args, p.value("comment"), p.has("quiet"))
        }
        "list" => {
            let [basedir] = p.rest.as_slice() else {
                return wrong();
            };
            list(basedir)
        }
        "start" => {
            let [basedir, twistd @ ..] = p.rest.as_slice() else {
                return wrong();
            };
            start(basedir, twistd)
        }
        "stop" => {
            let [basedir] = p.rest.as_slice() else {
                return wrong();
            };
            stop(basedir, p.has("quiet"))
        }
        "restart" => {
            let [basedir, twistd @ ..] = p.rest.as_slice() else {
                return wrong();
            };
            let _ = stop(basedir, true);
            start(basedir, twistd)
        }
        _ => unreachable!("checked above"),
    }
}

/// The process's umask. rustix: std cannot read or set it, and rustix
/// offers it without unsafe code (reading it means setting it and back).
fn current_umask() -> u32 {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::empty());
    rustix::process::umask(old);
    old.bits()
}

fn create(basedir: &str, port: &str, location: &str, umask: u32, quiet: bool) -> i32 {
    let dir = Path::new(basedir);
    if std::fs::symlink_metadata(dir).is_ok() {
        eprintln!("Refusing to touch pre-existing directory {basedir}");
        return 1;
    }
    let made = (|| -> Result<String, String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        std::fs::create_dir_all(dir.join("services")).map_err(|e| io(basedir, e))?;
        set_dir_mode(dir).map_err(|e| io(basedir, e))?;
        std::fs::write(dir.join("port"), format!("{port}\n")).map_err(|e| io("port", e))?;
        std::fs::write(dir.join("location"), format!("{location}\n"))
            .map_err(|e| io("location", e))?;
        std::fs::write(dir.join("umask"), format!("{umask:04o}\n")).map_err(|e| io("umask", e))?;
        basedir::save(dir, &[]).map_err(|e| io("services.json", e))?;
        let identity = foolscap_app::load_or_create_identity(dir.join("tub.pem"))
            .map_err(|e| format!("tub.pem: {e}"))?;
        let tubid = identity.tubid().to_string();
        std::fs::write(
            dir.join("furl_prefix"),
            format!("pb://{tubid}@{location}/\n"),
        )
        .map_err(|e| io("furl_prefix", e))?;
        std::fs::write(dir.join("flappserver.tac"), TACFILE).map_err(|e| io("tac", e))?;
        Ok(tubid)
    })();
    match made {
        Ok(tubid) => {
            // Python's AppServer announces itself while creating the key
            println!("Server Running");
            if !quiet {
                println!("Foolscap Application Server created in {basedir}");
                println!("TubID {tubid}, listening on port {port}");
                println!("Now launch the daemon with 'flappserver start {basedir}'");
            }
            0
        }
        Err(e) => {
            eprintln!("Command failed:\n{e}");
            255
        }
    }
}

#[cfg(unix)]
fn set_dir_mode(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn set_dir_mode(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

fn add(basedir: &str, kind: &str, args: &[String], comment: Option<&str>, quiet: bool) -> i32 {
    let dir = Path::new(basedir);
    let mut entries = match basedir::load(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let relative = match basedir::next_service_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {}: {e}", dir.join("services").display());
            return 1;
        }
    };
    let service_dir = dir.join(&relative);
    if let Err(e) = std::fs::create_dir_all(&service_dir) {
        eprintln!("Error: {}: {e}", service_dir.display());
        return 1;
    }
    // the arguments are checked by building the service, as Python does
    let built = basedir::build(kind, args);
    if !matches!(built, Ok(Built::Service(_))) {
        let _ = std::fs::remove_dir_all(&service_dir);
    }
    match built {
        Ok(Built::Service(_)) => {}
        Ok(Built::Help(text)) => {
            println!("{text}");
            return 0;
        }
        Ok(Built::Version) => {
            print!("{VERSION_TEXT}");
            return 0;
        }
        Err(BuildError::UnknownType(t)) => {
            eprintln!("Traceback (most recent call last):");
            eprintln!("foolscap.appserver.services.UnknownServiceType: {t}");
            return 1;
        }
        Err(BuildError::Value(t)) => {
            eprintln!("Traceback (most recent call last):");
            eprintln!("ValueError: {t}");
            return 1;
        }
        Err(e) => {
            eprintln!("Error: {}", e.text());
            return 1;
        }
    }
    let swissnum = new_swissnum();
    entries.push(Entry {
        swissnum: swissnum.clone(),
        relative_basedir: relative,
        kind: kind.to_owned(),
        args: args.to_vec(),
        comment: comment.map(str::to_owned),
    });
    if let Err(e) = basedir::save(dir, &entries) {
        eprintln!("Error: services.json: {e}");
        return 1;
    }
    let prefix = match basedir::furl_prefix(dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: furl_prefix: {e}");
            return 1;
        }
    };
    if !quiet {
        println!("Service added in {}", service_dir.display());
        println!("FURL is {prefix}{swissnum}");
    }
    0
}

/// 32 base32 characters from 160 random bits, like Python's
/// `generateSwissnumber(160)`.
fn new_swissnum() -> String {
    let mut bytes = [0u8; 20];
    getrandom_fill(&mut bytes);
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(32);
    let (mut acc, mut bits) = (0u32, 0);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// Random bytes from the operating system.
fn getrandom_fill(buf: &mut [u8]) {
    use std::io::Read;
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if read.is_err() {
        // no /dev/urandom: the hash of a fresh key is random as well
        let id = foolscap_core::identity::Identity::generate().expect("an identity");
        let t = id.tubid().to_string();
        for (d, s) in buf.iter_mut().zip(t.bytes()) {
            *d = s;
        }
    }
}

fn list(basedir: &str) -> i32 {
    let dir = Path::new(basedir);
    let (prefix, entries) = match (basedir::furl_prefix(dir), basedir::load(dir)) {
        (Ok(p), Ok(e)) => (p, e),
        (Err(e), _) => {
            eprintln!("Error: furl_prefix: {e}");
            return 1;
        }
        (_, Err(e)) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let mut entries = entries;
    entries.sort_by(|a, b| a.swissnum.cmp(&b.swissnum));
    let mut out = String::new();
    for s in &entries {
        out.push('\n');
        out.push_str(&format!("{}:\n", s.swissnum));
        out.push_str(&format!(" {} {}\n", s.kind, s.args.join(" ")));
        if let Some(c) = s.comment.as_deref().filter(|c| !c.is_empty()) {
            out.push_str(&format!(" # {c}\n"));
        }
        out.push_str(&format!(" {prefix}{}\n", s.swissnum));
        out.push_str(&format!(
            " {}\n",
            Path::new(basedir).join(&s.relative_basedir).display()
        ));
    }
    out.push('\n');
    print!("{out}");
    0
}

// ------------------------------------------------------------ start / stop

/// The twistd options we honour.
struct Twistd {
    nodaemon: bool,
    logfile: Option<String>,
    pidfile: String,
}

fn parse_twistd(args: &[String]) -> Result<Twistd, String> {
    let opts = [
        flag("nodaemon", Some('n')),
        param("logfile", Some('l')),
        param("pidfile", None),
        flag("no_save", Some('o')),
        param("umask", None),
    ];
    let p = getopt::parse(args, &opts)?;
    if let Some(extra) = p.rest.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok(Twistd {
        nodaemon: p.has("nodaemon"),
        logfile: p.value("logfile").map(str::to_owned),
        pidfile: p.value("pidfile").unwrap_or("twistd.pid").to_owned(),
    })
}

fn start(basedir: &str, twistd_args: &[String]) -> i32 {
    let has_tac = std::fs::read_dir(basedir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".tac"))
        })
        .unwrap_or(false);
    if !has_tac {
        eprintln!("{basedir} does not look like a node directory (no .tac file)");
        return 1;
    }
    let tw = match parse_twistd(twistd_args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Usage: twistd [options]\ntwistd: {e}");
            return 1;
        }
    };
    if let Err(e) = std::env::set_current_dir(basedir) {
        eprintln!("{basedir}: {e}");
        return 1;
    }
    eprintln!("Launching Server...");
    if tw.nodaemon {
        run_foreground(&tw)
    } else {
        daemonize(&tw)
    }
}

/// The pid in a pid file, if it names a live process.
fn live_pid(pidfile: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Whether process `pid` exists (signal 0). rustix: std cannot signal an
/// arbitrary pid, and rustix does it without unsafe code.
fn alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => match rustix::process::test_kill_process(p) {
            Ok(()) => true,
            Err(e) => e != rustix::io::Errno::SRCH,
        },
        None => false,
    }
}

fn run_foreground(tw: &Twistd) -> i32 {
    let pidfile = PathBuf::from(&tw.pidfile);
    if let Some(pid) = live_pid(&pidfile) {
        eprintln!(
            "Another twistd server is running, PID {pid}\n\n\
             This could either be a previously started instance of your application or a\n\
             different application entirely. To start a new one, either run it in some other\n\
             directory, or use the --pidfile and --logfile parameters to avoid clashes.\n"
        );
        return 1;
    }
    if let Ok(text) = std::fs::read_to_string(&pidfile) {
        eprintln!("Removing stale pidfile {}", text.trim());
        let _ = std::fs::remove_file(&pidfile);
    }
    if !tw.pidfile.is_empty() {
        if let Err(e) = std::fs::write(&pidfile, format!("{}", std::process::id())) {
            eprintln!("{}: {e}", pidfile.display());
            return 1;
        }
    }
    // twistd: in the foreground the log goes to stdout unless a file is named
    let log: Box<dyn Write + Send> = match tw.logfile.as_deref() {
        None | Some("-") => Box::new(std::io::stdout()),
        Some(f) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
        {
            Ok(file) => Box::new(file),
            Err(e) => {
                eprintln!("{f}: {e}");
                return 1;
            }
        },
    };
    let log = Log::new(log);
    // the daemon applies the umask recorded at creation
    if let Ok(text) = std::fs::read_to_string("umask") {
        if let Ok(m) = u32::from_str_radix(text.trim(), 8) {
            rustix::process::umask(rustix::fs::Mode::from_bits_truncate(m));
        }
    }
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let result = serve::serve(&here, log.clone(), &mut std::io::stdout());
    let _ = std::fs::remove_file(&pidfile);
    match result {
        Ok(()) => 0,
        Err(e) => {
            log.msg(&e);
            eprintln!("{e}");
            1
        }
    }
}

/// Starts this program again with `--nodaemon` in a process group of its
/// own, stdin from /dev/null and its output appended to `twistd.log`
/// (what twistd's daemon mode gives), then waits until it wrote its pid
/// file and listens, or failed.
fn daemonize(tw: &Twistd) -> i32 {
    let logfile = tw.logfile.clone().unwrap_or_else(|| "twistd.log".into());
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&logfile)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{logfile}: {e}");
            return 1;
        }
    };
    let pidfile = PathBuf::from(&tw.pidfile);
    if let Some(pid) = live_pid(&pidfile) {
        eprintln!("Another twistd server is running, PID {pid}");
        return 1;
    }
    let start_len = std::fs::metadata(&logfile).map(|m| m.len()).unwrap_or(0);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot find this program: {e}");
            return 1;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.args(["start", ".", "--nodaemon", &format!("--logfile={logfile}")])
        .arg(format!("--pidfile={}", tw.pidfile))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .stderr(Stdio::from(log));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // not killed with the terminal's process group
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the server: {e}");
            return 1;
        }
    };
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read(&logfile).unwrap_or_default();
            let tail = String::from_utf8_lossy(&text[(start_len as usize).min(text.len())..]);
            eprintln!("the server exited at once ({status}):\n{tail}");
            return 1;
        }
        let started = std::fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == pid.to_string());
        let listening = std::fs::read(&logfile).is_ok_and(|t| {
            String::from_utf8_lossy(&t[(start_len as usize).min(t.len())..])
                .contains("starting on ")
        });
        if started && listening {
            println!("Server Running");
            return 0;
        }
        if Instant::now() > deadline {
            eprintln!("the server did not start within 60 s (see {logfile})");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop(basedir: &str, quiet: bool) -> i32 {
    let pidfile = Path::new(basedir).join("twistd.pid");
    let Ok(text) = std::fs::read_to_string(&pidfile) else {
        if !quiet {
            eprintln!("{basedir} does not look like a running node directory (no twistd.pid)");
        }
        return 2;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        eprintln!("invalid literal for int() with base 10: {:?}", text.trim());
        return 1;
    };
    let signal = |sig: rustix::process::Signal| -> bool {
        rustix::process::Pid::from_raw(pid)
            .is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
    };
    if !signal(rustix::process::Signal::TERM) {
        let _ = std::fs::remove_file(&pidfile);
        eprintln!("process {pid} wasn't running, removing twistd.pid to cleanup");
        return 2;
    }
    // (sic: Python's message names the wrong signal)
    eprintln!("SIGKILL sent to process {pid}, waiting for shutdown");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if !alive(pid) || is_zombie(pid) {
            let _ = std::fs::remove_file(&pidfile);
            eprintln!("process {pid} terminated");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("Process {pid} didn't respond to SIGTERM, sending SIGKILL.");
    signal(rustix::process::Signal::KILL);
    let _ = std::fs::remove_file(&pidfile);
    0
}

/// A process that exited but was not reaped yet (its parent is a test
/// harness, say) is gone for our purposes.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
