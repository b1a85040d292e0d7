//! The server's base directory, as Python's `flappserver` lays it out
//! (docs/flapp.md): `port`, `location`, `umask`, `furl_prefix`,
//! `tub.pem`, `services.json` (or the older `services/<swissnum>/`
//! files), `services/N/` and `flappserver.tac`; and the service
//! arguments, checked as `flappserver add` and the running server check
//! them.

use std::path::{Path, PathBuf};

use super::getopt::{self, flag, param, Opt};

/// Largest `services.json` (or old-style file) read: a base directory is
/// local configuration, but a runaway file must not exhaust memory.
pub const MAX_SERVICES_FILE: u64 = 16 * 1024 * 1024;

/// One configured service.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub swissnum: String,
    pub relative_basedir: String,
    pub kind: String,
    pub args: Vec<String>,
    pub comment: Option<String>,
}

/// Why the services could not be read.
#[derive(Debug)]
pub enum LoadError {
    Io(std::io::Error),
    /// Not JSON, or not the expected shape.
    Bad(String),
    /// `version` other than 1 (Python's `UnknownVersion`).
    UnknownVersion(i64),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "{e}"),
            LoadError::Bad(why) => write!(f, "bad services.json: {why}"),
            LoadError::UnknownVersion(v) => write!(
                f,
                "foolscap.appserver.server.UnknownVersion: unable to handle version {v}"
            ),
        }
    }
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.by_ref()
        .take(MAX_SERVICES_FILE + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_SERVICES_FILE {
        return Err(std::io::Error::other(format!(
            "{} is over {MAX_SERVICES_FILE} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// The services of `basedir`, in the order `services.json` holds them.
pub fn load(basedir: &Path) -> Result<Vec<Entry>, LoadError> {
    let file = basedir.join("services.json");
    match read_limited(&file) {
        Ok(text) => parse_services_json(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => load_old_style(basedir),
        Err(e) => Err(LoadError::Io(e)),
    }
}

fn parse_services_json(text: &[u8]) -> Result<Vec<Entry>, LoadError> {
    use serde_json::Value as J;
    let bad = |why: &str| LoadError::Bad(why.to_owned());
    let data: J = serde_json::from_slice(text).map_err(|e| LoadError::Bad(e.to_string()))?;
    let version = data
        .get("version")
        .and_then(J::as_i64)
        .ok_or_else(|| bad("no version"))?;
    if version != 1 {
        return Err(LoadError::UnknownVersion(version));
    }
    let services = data
        .get("services")
        .and_then(J::as_object)
        .ok_or_else(|| bad("no services"))?;
    let raw = String::from_utf8_lossy(text);
    let mut out = Vec::with_capacity(services.len());
    for (swissnum, s) in services {
        let text_of = |k: &str| s.get(k).and_then(J::as_str).map(str::to_owned);
        let args = s
            .get("args")
            .and_then(J::as_array)
            .ok_or_else(|| bad("args is not a list"))?
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("an arg is not text"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Entry {
            swissnum: swissnum.clone(),
            relative_basedir: text_of("relative_basedir")
                .ok_or_else(|| bad("no relative_basedir"))?,
            kind: text_of("type").ok_or_else(|| bad("no type"))?,
            args,
            comment: text_of("comment"),
        });
    }
    // serde_json's map is sorted; Python keeps the file's order (the
    // order services were added), which `add` preserves when it rewrites
    // the file: recover it from where each key first appears
    let pos = |e: &Entry| {
        raw.find(&format!("\"{}\"", e.swissnum))
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(pos);
    Ok(out)
}

/// The layout before `services.json`: `services/<swissnum>/service_type`,
/// `service_args` (a Python tuple literal), optional `comment`.
fn load_old_style(basedir: &Path) -> Result<Vec<Entry>, LoadError> {
    let services = basedir.join("services");
    let mut out = Vec::new();
    let dir = match std::fs::read_dir(&services) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LoadError::Io(e)),
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for swissnum in names {
        let sdir = services.join(&swissnum);
        let Ok(kind) = read_limited(&sdir.join("service_type")) else {
            continue;
        };
        let args_text = read_limited(&sdir.join("service_args")).map_err(LoadError::Io)?;
        let args_text = String::from_utf8_lossy(&args_text);
        let parsed = foolscap_literal::parse(args_text.trim())
            .map_err(|e| LoadError::Bad(format!("{}: {e}", sdir.display())))?;
        let items = match parsed {
            foolscap_core::value::Value::Tuple(v) | foolscap_core::value::Value::List(v) => v,
            _ => return Err(LoadError::Bad("service_args is not a tuple".into())),
        };
        let args = items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) => Some(s.to_owned()),
                None => v
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LoadError::Bad("service_args holds a non-string".into()))?;
        let comment = read_limited(&sdir.join("comment"))
            .ok()
            .map(|c| String::from_utf8_lossy(&c).trim().to_owned());
        out.push(Entry {
            relative_basedir: format!("services/{swissnum}"),
            swissnum,
            kind: String::from_utf8_lossy(&kind).trim().to_owned(),
            args,
            comment,
        });
    }
    Ok(out)
}

/// A JSON string as Python's `json.dump` writes it (`ensure_ascii`).
fn json_str(out: &mut String, s: &str) {
    foolscap_logging::json::write_str(s, out);
}

/// `services.json` exactly as Python's `json.dump(data, f, indent=2)`
/// writes it (no final newline).
pub fn services_json(entries: &[Entry]) -> String {
    let mut o = String::from("{\n  \"version\": 1,\n  \"services\": {");
    if entries.is_empty() {
        o.push('}');
    } else {
        for (i, e) in entries.iter().enumerate() {
            o.push_str(if i == 0 { "\n    " } else { ",\n    " });
            json_str(&mut o, &e.swissnum);
            o.push_str(": {\n      \"relative_basedir\": ");
            json_str(&mut o, &e.relative_basedir);
            o.push_str(",\n      \"type\": ");
            json_str(&mut o, &e.kind);
            o.push_str(",\n      \"args\": [");
            if e.args.is_empty() {
                o.push(']');
            } else {
                for (j, a) in e.args.iter().enumerate() {
                    o.push_str(if j == 0 { "\n        " } else { ",\n        " });
                    json_str(&mut o, a);
                }
                o.push_str("\n      ]");
            }
            o.push_str(",\n      \"comment\": ");
            match &e.comment {
                Some(c) => json_str(&mut o, c),
                None => o.push_str("null"),
            }
            o.push_str("\n    }");
        }
        o.push_str("\n  }");
    }
    o.push_str("\n}");
    o
}

/// Writes `services.json` through a temporary file and a rename, as
/// Python does, so a running server never reads half a file.
pub fn save(basedir: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let file = basedir.join("services.json");
    let tmp = basedir.join("services.json.tmp");
    std::fs::write(&tmp, services_json(entries))?;
    std::fs::rename(&tmp, &file)
}

/// `furl_prefix`, stripped.
pub fn furl_prefix(basedir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(basedir.join("furl_prefix"))?
        .trim()
        .to_owned())
}

/// `services/<max existing number + 1>`, relative to the base directory.
pub fn next_service_dir(basedir: &Path) -> std::io::Result<String> {
    let mut max = 0u64;
    for e in std::fs::read_dir(basedir.join("services"))? {
        if let Some(n) = e?.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            max = max.max(n);
        }
    }
    Ok(format!("services/{}", max.saturating_add(1)))
}

// ------------------------------------------------------------ service args

/// Why service arguments were refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildError {
    /// Twisted's `UsageError` (`Error: <text>` from `add`).
    Usage(String),
    /// `BadServiceArguments`.
    Bad(String),
    /// `UnknownServiceType`.
    UnknownType(String),
    /// `ValueError` (a `--mode` that is not a number: Python's `int()`
    /// raises it through the option parser).
    Value(String),
}

impl BuildError {
    /// The Python class, for failures sent to clients.
    pub fn class(&self) -> &'static str {
        match self {
            BuildError::Usage(_) => "twisted.python.usage.UsageError",
            BuildError::Bad(_) => "foolscap.appserver.services.BadServiceArguments",
            BuildError::UnknownType(_) => "foolscap.appserver.services.UnknownServiceType",
            BuildError::Value(_) => "builtins.ValueError",
        }
    }

    /// `str()` of the exception.
    pub fn text(&self) -> &str {
        match self {
            BuildError::Usage(t)
            | BuildError::Bad(t)
            | BuildError::UnknownType(t)
            | BuildError::Value(t) => t,
        }
    }
}

/// A service built from its stored type and arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// `upload-file [--mode=M] TARGETDIR`
    Upload { targetdir: PathBuf, mode: u32 },
    /// `run-command [flags] TARGETDIR COMMAND ARGS...`
    Run(RunOptions),
}

/// The flags and command of a `run-command` service.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub targetdir: String,
    pub argv: Vec<String>,
    pub accept_stdin: bool,
    pub send_stdout: bool,
    pub send_stderr: bool,
    pub log_stdin: bool,
    pub log_stdout: bool,
    pub log_stderr: bool,
}

const UPLOAD_OPTS: &[Opt] = &[
    flag("allow-subdirectories", None),
    param("mode", None),
    flag("help", None),
    flag("version", None),
];

const RUN_OPTS: &[Opt] = &[
    flag("accept-stdin", None),
    flag("no-stdin", None),
    flag("log-stdin", None),
    flag("no-log-stdin", None),
    flag("send-stdout", None),
    flag("no-stdout", None),
    flag("log-stdout", None),
    flag("no-log-stdout", None),
    flag("send-stderr", None),
    flag("no-stderr", None),
    flag("log-stderr", None),
    flag("no-log-stderr", None),
    flag("help", None),
    flag("version", None),
];

pub const UPLOAD_USAGE: &str = "Usage: flappserver add BASEDIR upload-file [options] TARGETDIR
Options:
      --allow-subdirectories  allow client to write to subdirectories
      --help                  Display this help and exit.
      --mode=                 (octal) mode to set uploaded files to, use 0644
                              for world-readable [default: 420]
      --version               Display Twisted version and exit.

This service allows clients to upload files to a specific directory.
";

pub const RUN_USAGE: &str =
    "Usage: flappserver add BASEDIR run-command [options] TARGETDIR COMMAND..
Options:
      --accept-stdin   allow client to write to COMMAND stdin
      --help           Display this help and exit.
      --log-stderr     log outbound stderr (to twistd.log) [default]
      --log-stdin      log incoming stdin (to twistd.log)
      --log-stdout     log outbound stdout (to twistd.log)
      --no-log-stderr  do not log outbound stderr
      --no-log-stdin   do not log incoming stdin [default]
      --no-log-stdout  do not log oubound stdout [default]
      --no-stderr      do not send COMMAND stderr to client
      --no-stdin       do not write to COMMAND stdin [default]
      --no-stdout      do not send COMMAND stdout to client
      --send-stderr    send COMMAND stderr to client [default]
      --send-stdout    send COMMAND stdout to client [default]
      --version        Display Twisted version and exit.

This service allows clients to execute a pre-configured command and receive
the exit code, optionally providing stdin and receiving stdout/stderr.
";

/// What `--help` inside service arguments asks for.
#[derive(Debug, PartialEq)]
pub enum Built {
    Service(Service),
    /// `--help`: print this and exit 0.
    Help(&'static str),
    /// `--version`.
    Version,
}

/// Builds a service from its type and arguments, as Python's
/// `build_service`: relative paths resolve against the current directory.
pub fn build(kind: &str, args: &[String]) -> Result<Built, BuildError> {
    match kind {
        "upload-file" => {
            let p = getopt::parse(args, UPLOAD_OPTS).map_err(BuildError::Usage)?;
            let mut mode = 0o644;
            for (name, value) in &p.opts {
                match *name {
                    "help" => return Ok(Built::Help(UPLOAD_USAGE)),
                    "version" => return Ok(Built::Version),
                    "mode" => {
                        let v = value.as_deref().unwrap_or("");
                        // a leading 0 means octal, anything else decimal
                        let base = if v.starts_with('0') { 8 } else { 10 };
                        mode = u32::from_str_radix(v, base).map_err(|_| {
                            BuildError::Value(format!(
                                "invalid literal for int() with base {base}: '{v}'"
                            ))
                        })?;
                    }
                    _ => {}
                }
            }
            let [target] = p.rest.as_slice() else {
                return Err(BuildError::Usage("Wrong number of arguments.".into()));
            };
            let targetdir = std::path::absolute(target)
                .map_err(|e| BuildError::Bad(format!("targetdir '{target}': {e}")))?;
            if p.has("allow-subdirectories") {
                return Err(BuildError::Bad(
                    "--allow-subdirectories is not yet implemented".into(),
                ));
            }
            if !targetdir.exists() {
                return Err(BuildError::Bad(format!(
                    "targetdir '{}' must already exist",
                    targetdir.display()
                )));
            }
            if !writable(&targetdir) {
                return Err(BuildError::Bad(format!(
                    "targetdir '{}' must be writeable",
                    targetdir.display()
                )));
            }
            Ok(Built::Service(Service::Upload { targetdir, mode }))
        }
        "run-command" => {
            let p = getopt::parse(args, RUN_OPTS).map_err(BuildError::Usage)?;
            let mut o = RunOptions {
                targetdir: String::new(),
                argv: Vec::new(),
                accept_stdin: false,
                send_stdout: true,
                send_stderr: true,
                log_stdin: false,
                log_stdout: false,
                log_stderr: true,
            };
            for (name, _) in &p.opts {
                match *name {
                    "help" => return Ok(Built::Help(RUN_USAGE)),
                    "version" => return Ok(Built::Version),
                    "accept-stdin" => o.accept_stdin = true,
                    "no-stdin" => o.accept_stdin = false,
                    "log-stdin" => o.log_stdin = true,
                    "no-log-stdin" => o.log_stdin = false,
                    "send-stdout" => o.send_stdout = true,
                    "no-stdout" => o.send_stdout = false,
                    "log-stdout" => o.log_stdout = true,
                    "no-log-stdout" => o.log_stdout = false,
                    "send-stderr" => o.send_stderr = true,
                    "no-stderr" => o.send_stderr = false,
                    "log-stderr" => o.log_stderr = true,
                    "no-log-stderr" => o.log_stderr = false,
                    _ => {}
                }
            }
            let Some((target, argv)) = p.rest.split_first() else {
                return Err(BuildError::Usage("Wrong number of arguments.".into()));
            };
            o.targetdir = target.clone();
            o.argv = argv.to_vec();
            Ok(Built::Service(Service::Run(o)))
        }
        other => Err(BuildError::UnknownType(other.to_owned())),
    }
}

/// `os.access(path, W_OK)`, without unsafe code: a directory is writable
/// by us if a file can be created in it; a file if it opens for writing.
fn writable(path: &Path) -> bool {
    if path.is_dir() {
        // the permission bits say it in the common case; root passes
        // them all, as access() does
        let probe = path.join(format!(".flappserver-probe-{}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                true
            }
            Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
        }
    } else {
        std::fs::OpenOptions::new().append(true).open(path).is_ok()
    }
}

/// The service stored under `swissnum`, built the way the running server
/// builds it on each use. `Ok(None)`: no such service.
pub fn lookup(basedir: &Path, swissnum: &str) -> Result<Option<Service>, BuildError> {
    let entries = load(basedir).map_err(|e| BuildError::Bad(e.to_string()))?;
    let Some(e) = entries.into_iter().find(|e| e.swissnum == swissnum) else {
        return Ok(None);
    };
    match build(&e.kind, &e.args)? {
        Built::Service(s) => Ok(Some(s)),
        // `--help` inside stored arguments: Python's parser would exit
        Built::Help(_) | Built::Version => Err(BuildError::Usage("SystemExit: 0".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_json_as_python_writes_it() {
        assert_eq!(
            services_json(&[]),
            "{\n  \"version\": 1,\n  \"services\": {}\n}"
        );
        let e = Entry {
            swissnum: "abc".into(),
            relative_basedir: "services/1".into(),
            kind: "run-command".into(),
            args: vec!["d".into(), "é\"".into()],
            comment: None,
        };
        let text = services_json(std::slice::from_ref(&e));
        assert_eq!(
            text,
            "{\n  \"version\": 1,\n  \"services\": {\n    \"abc\": {\n      \"relative_basedir\": \"services/1\",\n      \"type\": \"run-command\",\n      \"args\": [\n        \"d\",\n        \"\\u00e9\\\"\"\n      ],\n      \"comment\": null\n    }\n  }\n}"
        );
        assert_eq!(parse_services_json(text.as_bytes()).unwrap(), vec![e]);
    }

    #[test]
    fn mode_is_octal_only_with_a_leading_zero() {
        let dir = std::env::temp_dir();
        let d = dir.to_str().unwrap().to_owned();
        let m = |a: &str| match build("upload-file", &[a.to_owned(), d.clone()]) {
            Ok(Built::Service(Service::Upload { mode, .. })) => mode,
            other => panic!("{other:?}"),
        };
        assert_eq!(m("--mode=0644"), 0o644);
        assert_eq!(m("--mode=644"), 644);
    }
}
