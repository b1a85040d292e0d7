//! `foolscap call FURL METHOD [ARG...] [NAME=ARG...]`: one remote call,
//! made from the main thread through a Tub on the mio event loop
//! (`--driver mio`, the default), on the threads engine
//! (`--driver threads`) or, with the async face, on a current-thread
//! tokio runtime that the main thread runs (`--driver tokio`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use foolscap_app::{load_or_create_identity, Error, Tub};
use foolscap_core::identity::Identity;
use foolscap_core::negotiation::{Recorder, RecorderHandle};
use foolscap_core::tub::TubConfig;
use foolscap_core::value::{Text, Value};
use foolscap_literal::to_python;
use foolscap_mio::{LoopConfig, Runtime};
use foolscap_replay::TranscriptWriter;

/// The engine that carries the calling Tub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// A mio event loop on a thread of its own.
    Mio,
    /// The threads engine: a reader and a writer thread per connection.
    Threads,
    /// The tokio engine, on a current-thread runtime (the async face).
    Tokio,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The engine that carries the calling Tub.
    #[arg(long, value_enum, default_value_t = Driver::Mio)]
    driver: Driver,
    /// Seconds allowed for connecting and for the answer (each).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    timeout: f64,
    /// Call as the Tub whose certificate and key are in this PEM file
    /// (created there if missing).
    #[arg(long, value_name = "PEM")]
    certfile: Option<PathBuf>,
    /// Write a transcript of the connection to this file: the plaintext
    /// phase and the decrypted stream per direction, in the line format
    /// of the shared Python captures (read by `foolscap_replay`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// The object's FURL (`pb://TUBID@HINTS/SWISSNUM`).
    furl: String,
    /// The method to call.
    method: String,
    /// Arguments as Python literals (the syntax of `foolscap encode`);
    /// `NAME=VALUE` passes a keyword argument.
    #[arg(value_name = "ARG", allow_negative_numbers = true)]
    args: Vec<String>,
}

/// Exit status for a remote failure.
const REMOTE_FAILURE: u8 = 1;
/// Exit status for a bad FURL, bad arguments or a connection problem.
const CONNECTION_PROBLEM: u8 = 2;

fn keyword(arg: &str) -> Option<(&str, &str)> {
    let (name, rest) = arg.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let ident = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    ident.then_some((name, rest))
}

pub fn run(args: CallArgs) -> ExitCode {
    let fail = |code: u8, msg: String| {
        eprintln!("foolscap call: {msg}");
        ExitCode::from(code)
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return fail(
            CONNECTION_PROBLEM,
            "--timeout must be a positive number".into(),
        );
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut positional = Vec::new();
    let mut kwargs = Vec::new();
    for (n, text) in args.args.iter().enumerate() {
        let (name, src) = match keyword(text) {
            Some((name, src)) => (Some(name), src),
            None => (None, text.as_str()),
        };
        let value = match foolscap_literal::parse(src) {
            Ok(v) => v,
            Err(e) => {
                return fail(
                    CONNECTION_PROBLEM,
                    format!("ARG #{} is not a valid literal: {e}", n + 1),
                )
            }
        };
        match name {
            Some(name) => kwargs.push((Text::from(name), value)),
            None => positional.push(value),
        }
    }
    let runtime = match args.driver {
        Driver::Mio => match Runtime::start(LoopConfig::default()) {
            Ok(rt) => Some(rt),
            Err(e) => {
                return fail(
                    CONNECTION_PROBLEM,
                    format!("cannot start the event loop: {e}"),
                )
            }
        },
        Driver::Threads | Driver::Tokio => None,
    };
    let tokio = match args.driver {
        Driver::Tokio => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let engine = foolscap_tokio::Engine::with_handle(
                    rt.handle().clone(),
                    foolscap_tokio::TokioConfig::default(),
                );
                Some((rt, engine))
            }
            Err(e) => {
                return fail(
                    CONNECTION_PROBLEM,
                    format!("cannot start the tokio runtime: {e}"),
                )
            }
        },
        _ => None,
    };
    let recorder = match &args.record {
        Some(path) => match TranscriptWriter::create(path) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                return fail(
                    CONNECTION_PROBLEM,
                    format!("cannot create {}: {e}", path.display()),
                )
            }
        },
        None => None,
    };
    let mut config = TubConfig::default();
    config.recorder = recorder
        .clone()
        .map(|w| RecorderHandle::new(w as Arc<dyn Recorder>));
    let identity = match &args.certfile {
        Some(path) => load_or_create_identity(path),
        None => Identity::generate().map_err(Error::from),
    };
    let tub = identity.and_then(|id| match (&runtime, &tokio) {
        (Some(rt), _) => rt.tub(id, config),
        (_, Some((_, engine))) => engine.tub(id, config).map(Tub::from),
        _ => foolscap_threads::tub(id, config),
    });
    let tub = match tub {
        Ok(t) => t,
        Err(e) => {
            if let Some(rt) = runtime {
                rt.shutdown(Duration::ZERO);
            }
            return fail(CONNECTION_PROBLEM, format!("cannot create a Tub: {e}"));
        }
    };
    let code = match &tokio {
        // the main thread runs the runtime, and the engine with it
        Some((rt, _)) => rt.block_on(call_async(
            foolscap_tokio::AsyncTub::new(tub.clone()),
            &args,
            &positional,
            &kwargs,
            timeout,
        )),
        // the calls below wait on this (the main) thread, never the loop's
        None => call(&tub, &args, &positional, &kwargs, timeout),
    };
    tub.shutdown();
    if let Some((rt, engine)) = tokio {
        rt.block_on(engine.shutdown(Duration::ZERO));
    }
    if let Some(rt) = runtime {
        // nobody calls us: nothing to wait for but our closing connection
        rt.shutdown(Duration::ZERO);
    }
    if let Some(w) = recorder {
        if let Err(e) = w.flush() {
            return fail(CONNECTION_PROBLEM, format!("writing the transcript: {e}"));
        }
    }
    code
}

/// Looks the FURL up and makes the call; prints the answer or the failure.
fn call(
    tub: &Tub,
    args: &CallArgs,
    positional: &[Value],
    kwargs: &[(Text, Value)],
    timeout: Duration,
) -> ExitCode {
    let fail = |code: u8, msg: String| {
        eprintln!("foolscap call: {msg}");
        ExitCode::from(code)
    };
    // a tool that prints answers accepts every copyable type
    tub.accept_any_copyable(true);
    let target = match tub.get_reference(&args.furl, timeout) {
        Ok(Value::Remote(r)) => r,
        Ok(other) => {
            return fail(
                CONNECTION_PROBLEM,
                format!(
                    "the FURL names a {}, not a remote object",
                    other.type_name()
                ),
            )
        }
        Err(e) => return fail(CONNECTION_PROBLEM, e.to_string()),
    };
    let result = tub.call(&target, &args.method, positional, kwargs, timeout);
    report(result)
}

/// [`call`] with the async face of the tokio engine.
async fn call_async(
    tub: foolscap_tokio::AsyncTub,
    args: &CallArgs,
    positional: &[Value],
    kwargs: &[(Text, Value)],
    timeout: Duration,
) -> ExitCode {
    let fail = |code: u8, msg: String| {
        eprintln!("foolscap call: {msg}");
        ExitCode::from(code)
    };
    tub.accept_any_copyable(true);
    let looked_up = tokio::time::timeout(timeout, tub.get_reference(&args.furl))
        .await
        .unwrap_or(Err(Error::Timeout(timeout)));
    let target = match looked_up {
        Ok(Value::Remote(r)) => r,
        Ok(other) => {
            return fail(
                CONNECTION_PROBLEM,
                format!(
                    "the FURL names a {}, not a remote object",
                    other.type_name()
                ),
            )
        }
        Err(e) => return fail(CONNECTION_PROBLEM, e.to_string()),
    };
    let answer = tub.call(&target, &args.method, positional, kwargs);
    let result = tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or(Err(Error::Timeout(timeout)));
    report(result)
}

/// Prints the answer or the failure; the exit status.
fn report(result: Result<Value, Error>) -> ExitCode {
    let fail = |code: u8, msg: String| {
        eprintln!("foolscap call: {msg}");
        ExitCode::from(code)
    };
    match result {
        Ok(v) => {
            println!("{}", to_python(&v));
            ExitCode::SUCCESS
        }
        Err(Error::Call(foolscap_core::broker::CallError::Remote(f))) => {
            eprintln!("{}: {}", f.type_name, f.value);
            ExitCode::from(REMOTE_FAILURE)
        }
        Err(e @ Error::Call(foolscap_core::broker::CallError::Violation(_))) => {
            fail(REMOTE_FAILURE, e.to_string())
        }
        Err(e) => fail(CONNECTION_PROBLEM, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::keyword;

    #[test]
    fn keyword_arguments_are_identifiers_before_an_equals_sign() {
        assert_eq!(keyword("x=1"), Some(("x", "1")));
        assert_eq!(keyword("by_2=[1]"), Some(("by_2", "[1]")));
        assert_eq!(keyword("'a=b'"), None);
        assert_eq!(keyword("1=2"), None);
        assert_eq!(keyword("=2"), None);
        assert_eq!(keyword("{'k': 'a=b'}"), None);
    }
}
