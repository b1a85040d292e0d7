//! A blocking test driver of the sans-IO [`Broker`] over a negotiated
//! [`Session`] and `std::net`, a Rust Tub serving one object through it,
//! and the Python processes of `tests/interop/fsbroker.py`. Every wait has
//! a deadline.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foolscap::broker::{
    Broker, BrokerConfig, BrokerEvent, CallError, Export, Failure, InboundCall, Registry,
};
use foolscap::furl::{Furl, Hint};
use foolscap::id::ConnectionId;
use foolscap::identity::Identity;
use foolscap::negotiation::{ConnectionTable, Negotiation, Session, TlsContext};
use foolscap::rng::SeededRng;
use foolscap::value::Value;
use serde_json::Value as Json;

use super::negotiation::{negotiate, test_config};
use super::PyProcess;

/// A broker driven by blocking socket reads.
pub struct BrokerConn {
    pub sock: TcpStream,
    pub session: Box<Session>,
    pub broker: Broker,
    pub objects: Box<dyn Registry + Send>,
}

impl BrokerConn {
    pub fn new(sock: TcpStream, session: Box<Session>, registry: Box<dyn Registry + Send>) -> Self {
        let info = session.info().clone();
        let broker = Broker::new(
            info.vocab,
            BrokerConfig::default(),
            ConnectionId(0),
            Some(info.peer_tubid),
            Instant::now(),
        );
        let mut conn = BrokerConn {
            sock,
            session,
            broker,
            objects: registry,
        };
        conn.take_plaintext(); // bytes glued to the decision
        conn
    }

    fn take_plaintext(&mut self) {
        while let Some(p) = self.session.poll_plaintext() {
            self.broker
                .handle_plaintext(Instant::now(), &p, &*self.objects);
        }
    }

    /// Sends what the broker wrote.
    pub fn flush(&mut self) {
        let mut plain = Vec::new();
        self.broker.poll_transmit(&mut plain);
        self.session.write_plaintext(&plain);
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        if !out.is_empty() && self.sock.write_all(&out).is_err() {
            self.broker.connection_lost();
        }
    }

    /// The next broker event, `None` at the deadline.
    pub fn next_event(&mut self, deadline: Instant) -> Option<BrokerEvent> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.flush();
            if let Some(ev) = self.broker.poll_event() {
                return Some(ev);
            }
            let now = Instant::now();
            if now >= deadline || self.broker.is_closed() {
                return None;
            }
            let wake = self.broker.poll_timeout().unwrap_or(deadline).min(deadline);
            if wake <= now {
                self.broker.handle_timeout(now);
                continue;
            }
            self.sock
                .set_read_timeout(Some(wake - now))
                .expect("read timeout");
            match self.sock.read(&mut buf) {
                Ok(0) => self.broker.connection_lost(),
                Ok(n) => {
                    if self.session.handle_input(&buf[..n]).is_err() {
                        self.broker.connection_lost();
                        continue;
                    }
                    self.take_plaintext();
                    if self.session.peer_closed() {
                        self.broker.connection_lost();
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.broker.handle_timeout(Instant::now())
                }
                Err(_) => self.broker.connection_lost(),
            }
        }
    }

    /// Waits for the outcome of our call `req`; other events are not
    /// expected here.
    pub fn wait(&mut self, req: u64, deadline: Instant) -> Result<Value, CallError> {
        loop {
            match self.next_event(deadline) {
                Some(BrokerEvent::Answer { req_id, value }) if req_id == req => return Ok(value),
                Some(BrokerEvent::Failed { req_id, error }) if req_id == req => return Err(error),
                Some(BrokerEvent::Released { .. }) => {}
                other => panic!("while waiting for answer {req}: {other:?}"),
            }
        }
    }

    /// Closes TLS and the socket.
    pub fn close(mut self) {
        self.broker.close();
        self.session.close();
        self.flush();
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// How the Rust test object answers: `echo` returns `[list(args),
/// kwargs]`, `fail` raises ValueError, `raise_custom` a KeyError subclass,
/// anything else has no such method.
pub fn serve_target(conn: &mut BrokerConn, call: InboundCall) {
    let InboundCall {
        req_id,
        method,
        args,
        kwargs,
        ..
    } = call;
    let result = match method.as_str() {
        "echo" => Ok(Value::List(vec![
            Value::List(args),
            Value::Dict(
                kwargs
                    .into_iter()
                    .map(|(k, v)| (Value::Str(k), v))
                    .collect(),
            ),
        ])),
        "fail" => Err(Failure::new("builtins.ValueError", "rust boom")),
        "raise_custom" => Err(Failure {
            type_name: "rustapp.errors.CustomError".into(),
            parents: [
                "rustapp.errors.CustomError",
                "builtins.KeyError",
                "builtins.LookupError",
                "builtins.Exception",
                "builtins.BaseException",
                "builtins.object",
            ]
            .map(String::from)
            .to_vec(),
            value: "'custom from rust'".into(),
            traceback: "Traceback (most recent call last):\n  (in Rust)\n".into(),
        }),
        other => Err(Failure::no_such_method("Target", other)),
    };
    match result {
        Ok(v) => conn
            .broker
            .answer(req_id, &v, &*conn.objects)
            .expect("answer"),
        Err(f) => conn.broker.fail(req_id, &f).expect("fail"),
    }
}

/// A Rust Tub listening on 127.0.0.1 that serves one connection with the
/// target object registered as "target"; the thread returns what it saw.
pub struct RustTarget {
    pub furl: Furl,
    pub thread: JoinHandle<Vec<BrokerEvent>>,
}

pub fn start_rust_target(identity: &Identity) -> RustTarget {
    let tls = TlsContext::new(identity).expect("TLS context");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let furl = Furl::new(
        tls.tubid(),
        vec![Hint::Tcp {
            host: "127.0.0.1".into(),
            port,
            legacy: false,
        }],
        "target",
    );
    let furl_text = furl.to_string();
    let thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        sock.set_nodelay(true).ok();
        let table = Mutex::new(ConnectionTable::new(&mut SeededRng::new(7)));
        let neg = Negotiation::server(
            &tls,
            &mut table.lock().unwrap(),
            &test_config(),
            Instant::now(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let session = negotiate(&mut sock, neg, &table, deadline).expect("negotiation");
        let mut registry = HashMap::new();
        registry.insert(
            b"target".to_vec(),
            Export {
                object: foolscap::id::ObjectId(1),
                interface: Bytes::new(),
                furl: Some(Bytes::from(furl_text.into_bytes())),
            },
        );
        let mut conn = BrokerConn::new(sock, session, Box::new(registry));
        let mut seen = Vec::new();
        while let Some(ev) = conn.next_event(deadline) {
            seen.push(ev.clone());
            match ev {
                BrokerEvent::Call(call) => serve_target(&mut conn, call),
                BrokerEvent::Closed(_) => break,
                _ => {}
            }
        }
        seen
    });
    RustTarget { furl, thread }
}

/// A running `fsbroker.py serve`; killed when dropped.
pub struct PyTarget {
    _process: PyProcess,
    pub furl: Furl,
}

impl PyTarget {
    pub fn start(certfile: &Path) -> PyTarget {
        let (process, j) = PyProcess::serve("fsbroker.py", certfile);
        let furl = Furl::parse(j["furl"].as_str().expect("furl")).expect("Python's FURL parses");
        PyTarget {
            _process: process,
            furl,
        }
    }
}

/// Runs `fsbroker.py ARGS` to completion (killed after `limit`) and returns
/// its JSON lines.
pub fn fsbroker(args: &[&str], limit: Duration) -> Vec<Json> {
    super::run_script_json("fsbroker.py", args, limit)
}
