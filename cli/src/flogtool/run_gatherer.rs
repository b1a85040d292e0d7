//! `flogtool run-gatherer DIR`: runs a gatherer directory made by
//! `flogtool create-gatherer` or `create-incident-gatherer` (ours or
//! Python's: the `gatherer.tac` tells which kind and its settings) in the
//! foreground, with the Rust gatherer of `gatherer.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use foolscap_app::{load_or_create_identity, Object, Tub, TubConfig};
use foolscap_core::furl::Furl;

use crate::gatherer::{
    GathererLimits, IncidentGatherer, IncidentGathererObject, LogGatherer, LogGathererObject,
};

/// `flogtool run-gatherer [options] DIR`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Largest message (event or incident) accepted from a node, in bytes.
    #[arg(long, default_value_t = GathererLimits::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Most incident names waiting to be fetched from one node.
    #[arg(long, default_value_t = GathererLimits::DEFAULT_MAX_QUEUED_INCIDENTS)]
    pub max_queued_incidents: usize,
    /// The gatherer's directory (with `port`, `location`, `gatherer.tac`).
    pub basedir: String,
}

/// The kind of gatherer a `gatherer.tac` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A log gatherer: rotation period, compress rotated files.
    Log {
        /// `--rotate` (seconds).
        rotate: Option<u64>,
        /// `--bzip`.
        bzip: bool,
    },
    /// An incident gatherer.
    Incident,
}

/// Reads the kind and settings from a tac file's text (Python's
/// `rotate = N` / `use_bzip = B` lines, or ours).
pub fn parse_tac(text: &str) -> Option<Kind> {
    if text.contains("IncidentGathererService(") {
        return Some(Kind::Incident);
    }
    if !text.contains("GathererService(") {
        return None;
    }
    let setting = |names: &[&str]| -> Option<String> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            names.contains(&k.trim()).then(|| v.trim().to_string())
        })
    };
    let rotate = setting(&["rotate", "ROTATE_SECONDS"])
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n > 0);
    let bzip = setting(&["use_bzip", "COMPRESS_ROTATED"]).is_some_and(|v| v == "True");
    Some(Kind::Log { rotate, bzip })
}

/// The listening address of a strports `port` file: `tcp:N`,
/// `tcp:N:interface=ADDR`, `tcp:port=N`, or a bare number.
pub fn parse_port(text: &str) -> Option<(String, u16)> {
    let mut parts = text.trim().split(':');
    let first = parts.next()?;
    let mut rest: Vec<&str> = parts.collect();
    if first != "tcp" {
        if !rest.is_empty() {
            return None;
        }
        rest = vec![first];
    }
    let (mut port, mut interface) = (None, String::from("0.0.0.0"));
    for (i, p) in rest.iter().enumerate() {
        match p.split_once('=') {
            Some(("port", v)) => port = v.parse().ok(),
            Some(("interface", v)) => interface = v.to_string(),
            Some(_) => return None,
            None if i == 0 => port = p.parse().ok(),
            None => return None,
        }
    }
    Some((interface, port?))
}

/// Registers `object` with the swissnum of the FURL already in `furlfile`
/// (if it is this Tub's), writes the FURL there (mode 0600 when the file
/// is new), as Python's `registerReference(furlFile=)`.
pub fn register_with_furlfile(
    tub: &Tub,
    object: Arc<dyn Object>,
    furlfile: &Path,
) -> Result<Furl, String> {
    let old = std::fs::read_to_string(furlfile).ok();
    let old = old.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let name = match old {
        Some(text) => {
            let f = Furl::parse(text).map_err(|e| format!("{}: {e}", furlfile.display()))?;
            if f.tubid != tub.tubid() {
                return Err(format!(
                    "I cannot keep using the old FURL from {}: its TubID is not mine ({})",
                    furlfile.display(),
                    tub.tubid()
                ));
            }
            Some(f.swissnum)
        }
        None => None,
    };
    let furl = tub
        .register(object, name.as_deref())
        .map_err(|e| e.to_string())?;
    let is_new = !furlfile.exists();
    std::fs::write(furlfile, format!("{furl}\n")).map_err(|e| e.to_string())?;
    if is_new {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(furlfile, std::fs::Permissions::from_mode(0o600));
    }
    Ok(furl)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Runs the command (until SIGTERM or SIGINT).
pub fn run(args: &Args) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flogtool run-gatherer: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: &Args) -> Result<(), String> {
    let basedir = Path::new(&args.basedir);
    let tac = std::fs::read_to_string(basedir.join("gatherer.tac"))
        .map_err(|e| format!("{}/gatherer.tac: {e}", args.basedir))?;
    let kind = parse_tac(&tac).ok_or_else(|| {
        format!(
            "{}/gatherer.tac starts neither a log gatherer nor an incident gatherer",
            args.basedir
        )
    })?;
    let obsolete = "Please create a new gatherer, with both --port and --location";
    let port = std::fs::read_to_string(basedir.join("port")).map_err(|_| obsolete)?;
    let location = std::fs::read_to_string(basedir.join("location")).map_err(|_| obsolete)?;
    let (host, port_num) =
        parse_port(&port).ok_or_else(|| format!("cannot listen on {:?}", port.trim()))?;
    let limits = GathererLimits {
        max_message_bytes: args.max_message_bytes,
        max_queued_incidents: args.max_queued_incidents,
    };

    let identity =
        load_or_create_identity(basedir.join("gatherer.pem")).map_err(|e| e.to_string())?;
    let mut config = TubConfig::default();
    config.broker.limits.max_message_bytes = limits.max_message_bytes;
    let tub = foolscap_threads::tub(identity, config).map_err(|e| e.to_string())?;
    tub.listen((host.as_str(), port_num))
        .map_err(|e| format!("cannot listen on {}: {e}", port.trim()))?;
    let hints: Vec<&str> = location.trim().split(',').collect();
    tub.set_location(&hints);

    let furlfile = basedir.join("log_gatherer.furl");
    let mut log_gatherer = None;
    let mut incident_gatherer = None;
    let object: Arc<dyn Object> = match &kind {
        Kind::Log { bzip, .. } => {
            let bzip = if *bzip { which("bzip2") } else { None };
            let g = LogGatherer::start(basedir, bzip).map_err(|e| e.to_string())?;
            log_gatherer = Some(g.clone());
            Arc::new(LogGathererObject(g))
        }
        Kind::Incident => {
            let g = IncidentGatherer::new(basedir, limits);
            incident_gatherer = Some(g.clone());
            Arc::new(IncidentGathererObject(g))
        }
    };
    let furl = register_with_furlfile(&tub, object, &furlfile)?;
    println!("Gatherer waiting at: {furl}");
    if let Some(g) = &incident_gatherer {
        // after the FURL, as Python's service start does
        g.classify_stored().map_err(|e| e.to_string())?;
    }

    if let (
        Some(g),
        Kind::Log {
            rotate: Some(secs), ..
        },
    ) = (&log_gatherer, &kind)
    {
        let g = g.clone();
        let period = Duration::from_secs(*secs);
        std::thread::spawn(move || loop {
            std::thread::sleep(period);
            if let Err(e) = g.rotate() {
                println!("cannot rotate: {e}");
            }
        });
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| e.to_string())?;
    for sig in signals.forever() {
        if sig == SIGHUP {
            if let Some(g) = &log_gatherer {
                if let Err(e) = g.rotate() {
                    println!("cannot rotate: {e}");
                }
            }
            continue;
        }
        break;
    }
    drop(incident_gatherer);
    tub.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tac_files_of_both_kinds_and_both_authors() {
        let ours = crate::create_gatherer::log_gatherer_tac(Some(600), true);
        assert_eq!(
            parse_tac(&ours),
            Some(Kind::Log {
                rotate: Some(600),
                bzip: true
            })
        );
        let ours = crate::create_gatherer::log_gatherer_tac(None, false);
        assert_eq!(
            parse_tac(&ours),
            Some(Kind::Log {
                rotate: None,
                bzip: false
            })
        );
        let py = "rotate = 10\nuse_bzip = True\ngs = gatherer.GathererService(rotate, use_bzip)\n";
        assert_eq!(
            parse_tac(py),
            Some(Kind::Log {
                rotate: Some(10),
                bzip: true
            })
        );
        let ours = crate::create_incident_gatherer::incident_gatherer_tac();
        assert_eq!(parse_tac(&ours), Some(Kind::Incident));
        assert_eq!(parse_tac("print('hello')\n"), None);
    }

    #[test]
    fn strports() {
        assert_eq!(parse_port("tcp:3117\n"), Some(("0.0.0.0".into(), 3117)));
        assert_eq!(
            parse_port("tcp:3117:interface=127.0.0.1"),
            Some(("127.0.0.1".into(), 3117))
        );
        assert_eq!(parse_port("tcp:port=9"), Some(("0.0.0.0".into(), 9)));
        assert_eq!(parse_port("3118"), Some(("0.0.0.0".into(), 3118)));
        assert_eq!(parse_port("ssl:3117"), None);
        assert_eq!(parse_port("tcp:x"), None);
        assert_eq!(parse_port("tcp:1:backlog"), None);
    }
}
