//! `flogtool`: Foolscap's log tool, with Python foolscap 24.9.0's command
//! line. Implemented: `dump` (the same output as Python's, byte for byte)
//! and `filter`.
//!
//! ```text
//! $ flogtool dump [-v] [-n] [-r] [-t MODE] FILE.flog[.bz2]
//! $ flogtool filter [--after=T] [--before=T] [--above=LEVEL] [--from=PREFIX]
//!                   [--strip-facility=PREFIX] [-v] OLDFILE [NEWFILE]
//! ```

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[path = "../flogtool/create_gatherer.rs"]
mod create_gatherer;
#[path = "../flogtool/create_incident_gatherer.rs"]
mod create_incident_gatherer;
#[path = "../flogtool/gatherer.rs"]
mod gatherer;
#[path = "../flogtool/run_gatherer.rs"]
mod run_gatherer;
#[path = "../flogtool/tail.rs"]
mod tail;
use foolscap_logging::dump::{DumpOptions, Dumper};
use foolscap_logging::files;
use foolscap_logging::flogfile::{ReadError, ReadLimits};
use foolscap_logging::level;
use foolscap_logging::repr::str_string;
use foolscap_logging::timefmt::{civil, LocalZone, TimeMode, MODES};
use foolscap_logging::Value;

#[path = "../flogtool/classify.rs"]
mod classify;
#[path = "../flogtool/http.rs"]
mod http;
#[path = "../flogtool/web.rs"]
mod web;

/// Foolscap's log tool (dump and filter flogfiles).
#[derive(Debug, Parser)]
#[command(name = "flogtool", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the events of a flogfile (`.flog` or `.flog.bz2`).
    Dump {
        /// Show every field of each event (and the header record).
        #[arg(short, long)]
        verbose: bool,
        /// Show only the time and number of each event.
        #[arg(short = 'n', long = "just-numbers")]
        just_numbers: bool,
        /// Show when each event was received as well as emitted.
        #[arg(short, long = "rx-time")]
        rx_time: bool,
        /// Timestamp format: short-local, long-local, utc or epoch.
        #[arg(short, long, default_value = "short-local", value_parser = parse_mode)]
        timestamps: TimeMode,
        /// The flogfile.
        dumpfile: String,
    },
    /// Copy the events of a flogfile that pass every given test.
    Filter {
        /// Keep events emitted after this time (whole seconds since the epoch).
        #[arg(long)]
        after: Option<i64>,
        /// Keep events emitted before this time (whole seconds since the epoch).
        #[arg(long)]
        before: Option<i64>,
        /// Keep events at this level or above (a number or a name such as UNUSUAL).
        #[arg(long, value_parser = parse_level)]
        above: Option<i64>,
        /// Keep events whose `from` starts with this prefix.
        #[arg(long = "from")]
        from: Option<String>,
        /// Drop events whose facility starts with this prefix.
        #[arg(long = "strip-facility")]
        strip_facility: Option<String>,
        /// Print each record's number (or HEADER) while copying.
        #[arg(short, long)]
        verbose: bool,
        /// The file to read.
        oldfile: String,
        /// The file to write (default: OLDFILE, replaced); `.bz2` compresses.
        newfile: Option<String>,
    },
    /// Make a log gatherer's directory (run it with twistd or run-gatherer).
    CreateGatherer(create_gatherer::Args),
    /// Make an incident gatherer's directory (run it with twistd or run-gatherer).
    CreateIncidentGatherer(create_incident_gatherer::Args),
    /// Run a gatherer directory (log or incident) in the foreground.
    RunGatherer(run_gatherer::Args),
    /// Sort incident files into categories with the `classify_*.py`
    /// classifiers of a directory (run by Python; see docs/logging.md).
    #[command(name = "classify-incident")]
    ClassifyIncident {
        /// The directory holding the classify_*.py files.
        #[arg(short = 'c', long = "classifier-directory", default_value = ".")]
        classifier_directory: String,
        /// Show the trigger of each unknown incident.
        #[arg(short, long)]
        verbose: bool,
        /// The incident files (`.flog.bz2`).
        files: Vec<String>,
    },
    /// Follow the events of a logport (a FURL, a file holding it, or a node directory).
    Tail(tail::TailArgs),
    /// Serve a flogfile as web pages (summary, all events, per level).
    #[command(name = "web-viewer")]
    WebViewer {
        /// Where to listen: an endpoint such as tcp:8080:interface=127.0.0.1
        /// (default: a free port on 127.0.0.1).
        #[arg(short, long)]
        port: Option<String>,
        /// Default timestamp format: short-local, long-local, utc or epoch.
        #[arg(short, long, default_value = "short-local", value_parser = parse_mode)]
        timestamps: TimeMode,
        /// Open the page in a browser ($BROWSER).
        #[arg(short, long)]
        open: bool,
        /// Print only `starting..`.
        #[arg(short, long)]
        quiet: bool,
        /// The flogfile.
        dumpfile: String,
    },
}

fn parse_mode(s: &str) -> Result<TimeMode, String> {
    TimeMode::parse(s).ok_or_else(|| format!("--timestamps= must be one of ({})", MODES.join(", ")))
}

fn parse_level(s: &str) -> Result<i64, String> {
    level::parse(s).ok_or_else(|| format!("unknown level {s}"))
}

/// The local zone from the operating system (what Python's
/// `time.localtime` uses); UTC when it cannot be determined.
struct SystemZone;

impl LocalZone for SystemZone {
    fn offset_at(&self, unix_secs: i64) -> i32 {
        time::OffsetDateTime::from_unix_timestamp(unix_secs)
            .ok()
            .and_then(|t| time::UtcOffset::local_offset_at(t).ok())
            .map(|o| o.whole_seconds())
            .unwrap_or(0)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Python's flogtool prints usage errors on stdout and exits 1.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = write!(io::stdout(), "{}", e.render());
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Dump {
            verbose,
            just_numbers,
            rx_time,
            timestamps,
            dumpfile,
        } => dump(
            &dumpfile,
            DumpOptions {
                verbose,
                just_numbers,
                rx_time,
                timestamps,
            },
        ),
        Command::Filter {
            after,
            before,
            above,
            from,
            strip_facility,
            verbose,
            oldfile,
            newfile,
        } => {
            let f = FilterArgs {
                after,
                before,
                above,
                from,
                strip_facility,
                verbose,
            };
            match filter(&oldfile, newfile.as_deref(), &f) {
                Ok(()) => ExitCode::SUCCESS,
                Err(msg) => {
                    eprintln!("{msg}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CreateGatherer(a) => create_gatherer::run(&a),
        Command::CreateIncidentGatherer(a) => create_incident_gatherer::run(&a),
        Command::RunGatherer(a) => run_gatherer::run(&a),
        Command::ClassifyIncident {
            classifier_directory,
            verbose,
            files,
        } => classify::run(&classifier_directory, verbose, &files),
        Command::Tail(args) => tail::run(args),
        Command::WebViewer {
            port,
            timestamps,
            open,
            quiet,
            dumpfile,
        } => web::run(
            web::WebArgs {
                port,
                timestamps,
                open,
                quiet,
                file: dumpfile,
            },
            &SystemZone,
            ctime,
        ),
    }
}

/// Print the error Python's dumper prints for a file it cannot read.
fn report_read_error(file: &str, e: &ReadError) {
    match e {
        ReadError::FurlFile => eprintln!(
            "Error: {file} appears to be a FURL file.\n\
             Perhaps you meant to run 'flogtool tail' instead of 'flogtool dump'?"
        ),
        ReadError::Pickle => eprintln!(
            "Error: {file} appears to be an old-style\n\
             (pickle-based) flogfile, which cannot be loaded safely.\n\
             Only a flogtool from foolscap 0.12.7 or earlier reads it (and\n\
             loading it lets its author run code on your computer)."
        ),
        ReadError::BadMagic => eprintln!("Error: {file} does not appear to be a flogfile.\n"),
        e if e.is_value_error() => eprintln!("truncated pickle file? ({file}): {e}"),
        e => eprintln!("Error: {file}: {e}"),
    }
}

fn dump(file: &str, opts: DumpOptions) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let zone = SystemZone;
    let mut dumper = Dumper::new(opts, &zone);
    let mut text = String::new();
    let reader = match files::open(Path::new(file), ReadLimits::default()) {
        Ok(r) => r,
        Err(e) => {
            report_read_error(file, &e);
            return ExitCode::from(1);
        }
    };
    let mut status = ExitCode::SUCCESS;
    for record in reader {
        text.clear();
        let result = match record {
            Ok(r) => dumper.record(&r, &mut text).map_err(|e| e.to_string()),
            Err(e) => {
                let _ = out.flush();
                report_read_error(file, &e);
                status = ExitCode::from(1);
                break;
            }
        };
        if out.write_all(text.as_bytes()).is_err() {
            // a closed pipe (`flogtool dump F | head`): stop quietly
            return ExitCode::from(1);
        }
        if let Err(e) = result {
            let _ = out.flush();
            eprintln!("flogtool dump: cannot render this event in {file}: {e}");
            status = ExitCode::from(1);
            break;
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    status
}

struct FilterArgs {
    after: Option<i64>,
    before: Option<i64>,
    above: Option<i64>,
    from: Option<String>,
    strip_facility: Option<String>,
    verbose: bool,
}

/// Python's `time.ctime(t)` in the local zone: `Thu Nov 14 22:13:20 2023`.
fn ctime(t: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = t.saturating_add(SystemZone.offset_at(t) as i64);
    let (y, mo, d, h, mi, s) = civil(local);
    let wd = DAYS[local.div_euclid(86400).rem_euclid(7) as usize];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        wd,
        MONTHS[(mo - 1) as usize],
        d,
        h,
        mi,
        s,
        y
    )
}

fn filter(oldfile: &str, newfile: Option<&str>, f: &FilterArgs) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    let target = newfile.unwrap_or(oldfile);
    let in_place = target == oldfile;
    let tmp;
    let write_to = if in_place {
        let _ = writeln!(stdout, "modifying event file in place");
        tmp = format!("{target}.tmp");
        tmp.as_str()
    } else {
        target
    };
    let reader = files::open(Path::new(oldfile), ReadLimits::default()).map_err(|e| {
        report_read_error(oldfile, &e);
        String::from("flogtool filter: nothing written")
    })?;
    // `.bz2` on the *target* name decides the compression, as in Python.
    let mut writer = if target.ends_with(".bz2") && !write_to.ends_with(".bz2") {
        files::create_bz2(Path::new(write_to))
    } else {
        files::create(Path::new(write_to))
    }
    .map_err(|e| format!("cannot write {write_to}: {e}"))?;
    if let Some(a) = f.after {
        let _ = writeln!(stdout, " --after: removing events before {}", ctime(a));
    }
    if let Some(b) = f.before {
        let _ = writeln!(stdout, " --before: removing events after {}", ctime(b));
    }
    if let Some(l) = f.above.filter(|l| *l != 0) {
        let _ = writeln!(stdout, " --above: removing events below level {l}");
    }
    if let Some(p) = f.from.as_deref().filter(|p| !p.is_empty()) {
        let _ = writeln!(
            stdout,
            " --from: retaining events only from tubid prefix {p}"
        );
    }
    if let Some(p) = &f.strip_facility {
        let _ = writeln!(
            stdout,
            "--strip-facility: removing events for {p} and children"
        );
    }
    let (mut total, mut copied) = (0u64, 0u64);
    for record in reader {
        let record = record.map_err(|e| format!("truncated pickle file? ({oldfile}): {e}"))?;
        let d = match &record {
            Value::Dict(r) => match r.get("d") {
                Some(Value::Dict(d)) => Some((r, d)),
                Some(_) => return Err(format!("{oldfile}: an event's 'd' is not a dict")),
                None => None,
            },
            _ => None,
        };
        if f.verbose {
            let line = match d {
                Some((_, d)) => d.get("num").map(str_string).ok_or("KeyError: 'num'")?,
                None => "HEADER".into(),
            };
            let _ = writeln!(stdout, "{line}");
        }
        total += 1;
        if let Some((r, d)) = d {
            let num = |k: &str| -> Result<f64, String> {
                d.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("{oldfile}: an event has no numeric '{k}'"))
            };
            if let Some(b) = f.before {
                if num("time")? >= b as f64 {
                    continue;
                }
            }
            if let Some(a) = f.after {
                if num("time")? <= a as f64 {
                    continue;
                }
            }
            if let Some(l) = f.above {
                if num("level")? < l as f64 {
                    continue;
                }
            }
            if let Some(p) = &f.from {
                let from = r.get("from").and_then(Value::as_str).unwrap_or("");
                if !from.starts_with(p.as_str()) {
                    continue;
                }
            }
            if let Some(p) = &f.strip_facility {
                let fac = d.get("facility").and_then(Value::as_str).unwrap_or("");
                if fac.starts_with(p.as_str()) {
                    continue;
                }
            }
        }
        copied += 1;
        writer
            .write_record(&record)
            .map_err(|e| format!("cannot write {write_to}: {e}"))?;
    }
    writer
        .finish()
        .and_then(|o| o.finish())
        .map_err(|e| format!("cannot write {write_to}: {e}"))?;
    if in_place {
        std::fs::rename(write_to, target).map_err(|e| format!("cannot replace {target}: {e}"))?;
    }
    let _ = writeln!(stdout, "copied {copied} of {total} events into new file");
    Ok(())
}
