//! `flappclient`: calls a flappserver service (`upload-file`,
//! `run-command`) by its FURL; interchangeable with Python foolscap
//! 24.9.0's (same command line, output and exit codes). See
//! docs/flapp.md.

#[path = "../flapp/client.rs"]
mod client;
#[path = "../flapp/getopt.rs"]
mod getopt;

fn main() {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_else(|| "flappclient".into());
    let rest: Vec<String> = args.collect();
    let code = client::main(&argv0, &rest);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}
