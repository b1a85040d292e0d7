//! `flogtool create-incident-gatherer`: makes an incident gatherer's
//! directory as Python foolscap 24.9.0 does (`port`, `location`,
//! `gatherer.tac`), runnable both by Python's `twistd -y gatherer.tac` and
//! by `flogtool run-gatherer`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::create_gatherer::{check_port_and_location, write_basedir};

/// `flogtool create-incident-gatherer [options] BASEDIR`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Don't print instructions to stdout.
    #[arg(short, long)]
    pub quiet: bool,
    /// TCP port to listen on (strports string).
    #[arg(short, long, default_value = "tcp:3118")]
    pub port: String,
    /// (required) Tub location hints to use in generated FURLs, e.g.
    /// 'tcp:example.org:3118'.
    #[arg(short, long)]
    pub location: Option<String>,
    /// The directory to create (or fill).
    pub basedir: String,
}

/// The tac file of an incident gatherer (see `log_gatherer_tac`).
pub fn incident_gatherer_tac() -> String {
    "# -*- python -*-\n\
     # A foolscap incident gatherer, made by flogtool (foolscap-rs).\n\
     # Start it from this directory with `twistd -y gatherer.tac` (Python\n\
     # foolscap), or run it with `flogtool run-gatherer DIR` (foolscap-rs).\n\
     #\n\
     # Incidents are sorted into classified/<category> by the function\n\
     # classify_incident(trigger) of every classify_*.py file here; it\n\
     # returns a category name, a list of them, or None.\n\
     \n\
     from twisted.application import service\n\
     from foolscap.logging import gatherer\n\
     \n\
     application = service.Application(\"incident_gatherer\")\n\
     gatherer.IncidentGathererService().setServiceParent(application)\n"
        .to_string()
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let location = match check_port_and_location(&args.port, args.location.as_deref()) {
        Ok(l) => l,
        Err(msg) => {
            println!("{msg}");
            println!("Usage: flogtool create-incident-gatherer [options] --location=HINTS BASEDIR");
            return ExitCode::from(1);
        }
    };
    let basedir = Path::new(&args.basedir);
    if let Err(e) = write_basedir(basedir, &args.port, &location, &incident_gatherer_tac()) {
        eprintln!("flogtool: cannot create {}: {e}", args.basedir);
        return ExitCode::from(1);
    }
    if !args.quiet {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Incident Gatherer created in directory {}",
            args.basedir
        );
        let _ = writeln!(
            out,
            "Now run '(cd {} && twistd -y gatherer.tac)' to launch the daemon",
            args.basedir
        );
    }
    ExitCode::SUCCESS
}
