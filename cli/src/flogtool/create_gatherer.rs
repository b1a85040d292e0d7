//! `flogtool create-gatherer`: makes a log gatherer's directory as Python
//! foolscap 24.9.0 does (`port`, `location`, `gatherer.tac`), runnable both
//! by Python's `twistd -y gatherer.tac` and by `flogtool run-gatherer`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `flogtool create-gatherer [options] GATHERER_DIRECTORY`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Compress each rotated output file with bzip2.
    #[arg(short, long)]
    pub bzip: bool,
    /// Don't print instructions to stdout.
    #[arg(short, long)]
    pub quiet: bool,
    /// TCP port to listen on (strports string).
    #[arg(short, long, default_value = "tcp:3117")]
    pub port: String,
    /// (required) Tub location hints to use in generated FURLs, e.g.
    /// 'tcp:example.org:3117'.
    #[arg(short, long)]
    pub location: Option<String>,
    /// Rotate the output file every N seconds.
    #[arg(short, long)]
    pub rotate: Option<u64>,
    /// The directory to create (or fill).
    pub basedir: String,
}

/// The checks Python's options make: `--location` is mandatory, and the
/// port must be a fixed, plain TCP one. Err = the message (exit 1).
pub fn check_port_and_location(port: &str, location: Option<&str>) -> Result<String, String> {
    if port.starts_with("ssl:") || port == "tcp:0" {
        return Err(format!(
            "flogtool:  --port={port} is refused: a gatherer needs a fixed TCP port (not tcp:0, not ssl:)"
        ));
    }
    match location {
        Some(l) if !l.is_empty() => Ok(l.to_string()),
        _ => Err("flogtool:  --location= is mandatory".into()),
    }
}

/// Writes `port`, `location` and `gatherer.tac` into `basedir` (created
/// with its parents if missing; an existing directory is reused and the
/// three files replaced, as Python does).
pub fn write_basedir(basedir: &Path, port: &str, location: &str, tac: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(basedir)?;
    std::fs::write(basedir.join("port"), format!("{port}\n"))?;
    std::fs::write(basedir.join("location"), format!("{location}\n"))?;
    std::fs::write(basedir.join("gatherer.tac"), tac)
}

/// The tac file of a log gatherer: what Python's twistd needs to run
/// foolscap's own gatherer service from this directory. `run-gatherer`
/// reads the two settings back from it.
pub fn log_gatherer_tac(rotate: Option<u64>, bzip: bool) -> String {
    let rotate = rotate.map_or_else(|| "None".to_string(), |n| n.to_string());
    let bzip = if bzip { "True" } else { "False" };
    format!(
        "# -*- python -*-\n\
         # A foolscap log gatherer, made by flogtool (foolscap-rs).\n\
         # Start it from this directory with `twistd -y gatherer.tac` (Python\n\
         # foolscap), or run it with `flogtool run-gatherer DIR` (foolscap-rs).\n\
         \n\
         from twisted.application import service\n\
         from foolscap.logging import gatherer\n\
         \n\
         ROTATE_SECONDS = {rotate}\n\
         COMPRESS_ROTATED = {bzip}\n\
         \n\
         application = service.Application(\"log_gatherer\")\n\
         gatherer.GathererService(ROTATE_SECONDS, COMPRESS_ROTATED).setServiceParent(application)\n"
    )
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let location = match check_port_and_location(&args.port, args.location.as_deref()) {
        Ok(l) => l,
        Err(msg) => {
            println!("{msg}");
            println!(
                "Usage: flogtool create-gatherer [options] --location=HINTS GATHERER_DIRECTORY"
            );
            return ExitCode::from(1);
        }
    };
    let basedir = Path::new(&args.basedir);
    let tac = log_gatherer_tac(args.rotate, args.bzip);
    if let Err(e) = write_basedir(basedir, &args.port, &location, &tac) {
        eprintln!("flogtool: cannot create {}: {e}", args.basedir);
        return ExitCode::from(1);
    }
    if !args.quiet {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Gatherer created in directory {}", args.basedir);
        let _ = writeln!(
            out,
            "Now run '(cd {} && twistd -y gatherer.tac)' to launch the daemon",
            args.basedir
        );
    }
    ExitCode::SUCCESS
}
