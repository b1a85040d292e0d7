//! `flappserver`: Foolscap's application server, interchangeable with
//! Python foolscap 24.9.0's (same command line, base directory, output
//! and exit codes). See docs/flapp.md.

#[path = "../flapp/admin.rs"]
mod admin;
#[path = "../flapp/basedir.rs"]
mod basedir;
#[path = "../flapp/getopt.rs"]
mod getopt;
#[path = "../flapp/serve.rs"]
mod serve;

fn main() {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_else(|| "flappserver".into());
    let rest: Vec<String> = args.collect();
    let code = admin::main(&argv0, &rest);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
