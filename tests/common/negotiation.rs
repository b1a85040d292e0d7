//! Blocking drivers of the sans-IO negotiation over `std::net`, a minimal
//! PB peer on top of a [`Session`] (just enough to prove the session
//! carries banana: `getReferenceByName`, `add`, `decref`), and the Python
//! processes of `tests/interop/fsnego.py`. Every wait has a deadline.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use foolscap::banana::{encode, Token, TokenDecoder, TypeByte, VocabTable};
use foolscap::furl::{Furl, Hint};
use foolscap::identity::Identity;
use foolscap::negotiation::{
    ConnectionTable, Negotiation, NegotiationConfig, NegotiationError, NegotiationEvent, Session,
    SessionInfo, TlsContext,
};
use foolscap::value::{MyReference, RefEncoder, Serializer, Value, WireRef, WireRefs};
use serde_json::Value as Json;

use super::{repo_root, PyProcess};

/// Test identities: `tests/data/<name>.pem`.
pub fn data_path(name: &str) -> PathBuf {
    repo_root().join("tests/data").join(format!("{name}.pem"))
}

pub fn identity(name: &str) -> Identity {
    let path = data_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Identity::from_cert_file(text).expect("test identity loads")
}

/// Negotiation settings for tests: Python's, with a short timeout.
pub fn test_config() -> NegotiationConfig {
    let mut config = NegotiationConfig::default();
    config.timeout = Duration::from_secs(20);
    config
}

fn write_all(sock: &mut TcpStream, data: &[u8]) -> bool {
    data.is_empty() || sock.write_all(data).is_ok()
}

/// Drives a negotiation over a socket until it ends or `deadline`.
pub fn negotiate(
    sock: &mut TcpStream,
    mut neg: Negotiation,
    table: &Mutex<ConnectionTable>,
    deadline: Instant,
) -> Result<Box<Session>, NegotiationError> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        out.clear();
        neg.poll_transmit(&mut out);
        let sent = write_all(sock, &out);
        match neg.poll_event() {
            Some(NegotiationEvent::Established(mut session)) => {
                out.clear();
                session.poll_transmit(&mut out);
                write_all(sock, &out);
                return Ok(session);
            }
            Some(NegotiationEvent::Failed(e)) => {
                out.clear();
                neg.poll_transmit(&mut out);
                write_all(sock, &out);
                return Err(e);
            }
            Some(other) => panic!("unexpected negotiation event {other:?}"),
            None => {}
        }
        if !sent {
            neg.handle_eof();
            continue;
        }
        let now = Instant::now();
        let wake = neg.poll_timeout().unwrap_or(deadline).min(deadline);
        if now >= wake {
            neg.handle_timeout(now);
            if now >= deadline && !neg.is_finished() {
                return Err(NegotiationError::Timeout);
            }
            continue;
        }
        sock.set_read_timeout(Some(wake - now))
            .expect("set_read_timeout");
        match sock.read(&mut buf) {
            Ok(0) => neg.handle_eof(),
            Ok(n) => neg.handle_input(Instant::now(), &buf[..n], &mut table.lock().unwrap()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                neg.handle_timeout(Instant::now())
            }
            Err(_) => neg.handle_eof(),
        }
    }
}

/// A decoded banana value, as much as these tests need.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Int(i64),
    Bytes(Vec<u8>),
    Seq(String, Vec<Node>),
    Other(String),
}

impl Node {
    pub fn int(&self) -> Option<i64> {
        match self {
            Node::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// Turns tokens into [`Node`] trees, iteratively.
struct TreeBuilder {
    stack: Vec<(Option<String>, Vec<Node>)>,
    vocab: VocabTable,
}

impl TreeBuilder {
    fn push(&mut self, node: Node) -> Option<Node> {
        match self.stack.last_mut() {
            Some((_, kids)) => {
                kids.push(node);
                None
            }
            None => Some(node),
        }
    }

    fn feed(&mut self, token: Token) -> Result<Option<Node>, String> {
        let bytes = match token {
            Token::Open(_) => {
                self.stack.push((None, Vec::new()));
                return Ok(None);
            }
            Token::Close(_) => {
                let (name, kids) = self.stack.pop().ok_or("CLOSE at top level")?;
                return Ok(self.push(Node::Seq(name.unwrap_or_default(), kids)));
            }
            Token::Int(v) => return Ok(self.push(Node::Int(v as i64))),
            Token::Neg(v) => return Ok(self.push(Node::Int(-(v as i64)))),
            Token::Error(e) => {
                return Err(format!("peer sent ERROR: {}", String::from_utf8_lossy(&e)))
            }
            Token::String(b) => b.to_vec(),
            Token::Vocab(i) => self
                .vocab
                .word(i)
                .ok_or(format!("undefined VOCAB {i}"))?
                .to_vec(),
            other => return Ok(self.push(Node::Other(format!("{other:?}")))),
        };
        if let Some((name @ None, _)) = self.stack.last_mut() {
            *name = Some(String::from_utf8_lossy(&bytes).into_owned());
            return Ok(None);
        }
        Ok(self.push(Node::Bytes(bytes)))
    }
}

/// An established connection driven by blocking reads.
pub struct Conn {
    pub sock: TcpStream,
    pub session: Box<Session>,
    decoder: TokenDecoder,
    tree: TreeBuilder,
    ser: Serializer,
    eof: bool,
}

impl Conn {
    pub fn new(sock: TcpStream, session: Box<Session>) -> Conn {
        let vocab = session.info().vocab;
        Conn {
            sock,
            session,
            decoder: TokenDecoder::default(),
            tree: TreeBuilder {
                stack: Vec::new(),
                vocab,
            },
            ser: Serializer::new(vocab),
            eof: false,
        }
    }

    pub fn info(&self) -> &SessionInfo {
        self.session.info()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        self.sock.write_all(&out)
    }

    pub fn send(&mut self, plaintext: &[u8]) -> std::io::Result<()> {
        self.session.write_plaintext(plaintext);
        self.flush()
    }

    /// One socket read into the session. False at EOF or close_notify.
    fn pump(&mut self, deadline: Instant) -> Result<bool, String> {
        if self.eof || self.session.peer_closed() {
            return Ok(false);
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or("deadline passed")?;
        self.sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.session
                    .handle_input(&buf[..n])
                    .map_err(|e| e.to_string())?;
                self.flush().map_err(|e| e.to_string())?;
                if let Some(p) = self.session.poll_plaintext() {
                    self.decoder.feed(&p);
                }
                Ok(!self.session.peer_closed())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err("deadline passed".into())
            }
            Err(_) => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// The next top-level message; answers PINGs on the way.
    pub fn next_message(&mut self, deadline: Instant) -> Result<Node, String> {
        if let Some(p) = self.session.poll_plaintext() {
            self.decoder.feed(&p); // bytes glued to the decision
        }
        loop {
            while let Some(token) = self.decoder.next_token().map_err(|e| e.to_string())? {
                match token {
                    Token::Ping(n) => {
                        let mut b = BytesMut::new();
                        encode::put_ping_pong(&mut b, n, TypeByte::Pong);
                        self.send(&b).map_err(|e| e.to_string())?;
                    }
                    Token::Pong(_) => {}
                    t => {
                        if let Some(node) = self.tree.feed(t)? {
                            return Ok(node);
                        }
                    }
                }
            }
            if !self.pump(deadline)? {
                return Err("connection closed".into());
            }
        }
    }

    /// Reads until the peer closes (true) or the deadline (false).
    pub fn wait_closed(&mut self, deadline: Instant) -> bool {
        loop {
            match self.pump(deadline) {
                Ok(true) => continue,
                Ok(false) => return true,
                Err(e) if e == "deadline passed" => return false,
                Err(_) => return true,
            }
        }
    }

    /// Sends `call` with positional and keyword arguments.
    pub fn call(
        &mut self,
        req: i64,
        clid: i64,
        method: &str,
        args: &[Value],
        kwargs: &[(&str, Value)],
    ) {
        let mut out = BytesMut::new();
        let call = self.ser.open_sequence(&mut out, b"call");
        encode::put_i64(&mut out, req);
        encode::put_i64(&mut out, clid);
        self.ser.put_bytes(&mut out, method.as_bytes());
        let arguments = self.ser.open_sequence(&mut out, b"arguments");
        encode::put_i64(&mut out, args.len() as i64);
        for a in args {
            self.ser.serialize(a, &mut out).expect("serializable");
        }
        for (k, v) in kwargs {
            self.ser.put_bytes(&mut out, k.as_bytes());
            self.ser.serialize(v, &mut out).expect("serializable");
        }
        self.ser.close(&mut out, arguments);
        self.ser.close(&mut out, call);
        self.send(&out).expect("send call");
    }

    /// Sends `answer` to a call.
    pub fn answer(&mut self, req: i64, value: &Value) {
        self.answer_with(req, value, &mut foolscap::value::NoRefs)
    }

    /// Sends `answer` to a call, its reference sequences as `refs` says.
    pub fn answer_with(&mut self, req: i64, value: &Value, refs: &mut dyn RefEncoder) {
        let mut out = BytesMut::new();
        let answer = self.ser.open_sequence(&mut out, b"answer");
        encode::put_i64(&mut out, req);
        self.ser
            .serialize_with(value, &mut out, refs)
            .expect("serializable");
        self.ser.close(&mut out, answer);
        self.send(&out).expect("send answer");
    }

    /// The answer to request `req` (other messages are skipped).
    pub fn wait_answer(&mut self, req: i64, deadline: Instant) -> Result<Node, String> {
        loop {
            match self.next_message(deadline)? {
                Node::Seq(kind, mut kids)
                    if kind == "answer" && kids.first() == Some(&Node::Int(req)) =>
                {
                    return Ok(kids.swap_remove(1));
                }
                Node::Seq(kind, kids)
                    if kind == "error" && kids.first() == Some(&Node::Int(req)) =>
                {
                    return Err(format!("remote error: {kids:?}"));
                }
                _ => {}
            }
        }
    }

    /// `getReferenceByName(swissnum)` then `add(a, b)` on the reference,
    /// as a Python client does it; returns the sum.
    pub fn get_reference_and_add(
        &mut self,
        swissnum: &str,
        a: i64,
        b: i64,
        deadline: Instant,
    ) -> Result<i64, String> {
        self.call(
            1,
            0,
            "getReferenceByName",
            &[],
            &[("name", Value::bytes(swissnum.as_bytes()))],
        );
        let clid = match self.wait_answer(1, deadline)? {
            Node::Seq(kind, kids) if kind == "my-reference" => {
                kids.first().and_then(Node::int).ok_or("no clid")?
            }
            other => return Err(format!("getReferenceByName answered {other:?}")),
        };
        self.call(2, clid, "add", &[Value::int(a), Value::int(b)], &[]);
        self.wait_answer(2, deadline)?
            .int()
            .ok_or_else(|| "add answered a non-int".into())
    }
}

/// Dials the first TCP hint of `furl` and negotiates.
pub fn dial(
    tls: &TlsContext,
    table: &Mutex<ConnectionTable>,
    furl: &Furl,
    deadline: Instant,
) -> Result<Conn, NegotiationError> {
    let (host, port) = furl.tcp_hints().next().expect("a TCP hint");
    dial_addr(tls, table, furl, (host, port), deadline)
}

pub fn dial_addr(
    tls: &TlsContext,
    table: &Mutex<ConnectionTable>,
    furl: &Furl,
    (host, port): (&str, u16),
    deadline: Instant,
) -> Result<Conn, NegotiationError> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .expect("numeric test address");
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|_| NegotiationError::Closed)?;
    sock.set_nodelay(true).ok();
    let neg = Negotiation::client(
        tls,
        &mut table.lock().unwrap(),
        furl.tubid,
        host,
        &test_config(),
        Instant::now(),
    );
    let session = negotiate(&mut sock, neg, table, deadline)?;
    Ok(Conn::new(sock, session))
}

/// What the Rust test server saw.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    Established(
        SessionInfo,
        Option<foolscap::negotiation::rustls::ProtocolVersion>,
    ),
    Failed(NegotiationError),
}

/// A Rust Tub serving an `add` object over real sockets, one thread per
/// connection, until dropped.
pub struct RustServer {
    pub furl: Furl,
    pub table: Arc<Mutex<ConnectionTable>>,
    pub events: mpsc::Receiver<ServerEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RustServer {
    pub fn start(identity: &Identity, seed: u64) -> RustServer {
        Self::start_with(TlsContext::new(identity).expect("TLS context"), seed)
    }

    pub fn start_with(tls: TlsContext, seed: u64) -> RustServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let furl = Furl::new(
            tls.tubid(),
            vec![Hint::Tcp {
                host: "127.0.0.1".into(),
                port,
                legacy: false,
            }],
            "calc",
        );
        let table = Arc::new(Mutex::new(ConnectionTable::new(
            &mut foolscap::rng::SeededRng::new(seed),
        )));
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (table, stop, furl) = (table.clone(), stop.clone(), furl.to_string());
            std::thread::spawn(move || accept_loop(listener, tls, table, tx, stop, furl))
        };
        RustServer {
            furl,
            table,
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// The next event, waiting up to `timeout`.
    pub fn event(&self, timeout: Duration) -> Option<ServerEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Registry = Arc<Mutex<HashMap<foolscap::negotiation::ConnectionId, TcpStream>>>;

fn accept_loop(
    listener: TcpListener,
    tls: TlsContext,
    table: Arc<Mutex<ConnectionTable>>,
    tx: mpsc::Sender<ServerEvent>,
    stop: Arc<AtomicBool>,
    furl: String,
) {
    let registry: Registry = Arc::default();
    let mut workers = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(240);
    while !stop.load(Ordering::SeqCst) && Instant::now() < give_up {
        match listener.accept() {
            Ok((sock, _)) => {
                let (tls, table, tx, furl, registry, stop) = (
                    tls.clone(),
                    table.clone(),
                    tx.clone(),
                    furl.clone(),
                    registry.clone(),
                    stop.clone(),
                );
                workers.push(std::thread::spawn(move || {
                    serve_connection(sock, tls, table, tx, furl, registry, stop)
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => break,
        }
    }
    for (_, sock) in registry.lock().unwrap().drain() {
        let _ = sock.shutdown(Shutdown::Both);
    }
    for w in workers {
        let _ = w.join();
    }
}

fn serve_connection(
    mut sock: TcpStream,
    tls: TlsContext,
    table: Arc<Mutex<ConnectionTable>>,
    tx: mpsc::Sender<ServerEvent>,
    furl: String,
    registry: Registry,
    stop: Arc<AtomicBool>,
) {
    sock.set_nonblocking(false).ok();
    sock.set_nodelay(true).ok();
    let neg = Negotiation::server(
        &tls,
        &mut table.lock().unwrap(),
        &test_config(),
        Instant::now(),
    );
    let session = match negotiate(
        &mut sock,
        neg,
        &table,
        Instant::now() + Duration::from_secs(20),
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(ServerEvent::Failed(e));
            return;
        }
    };
    let info = session.info().clone();
    if let Some(old) = info.replaced {
        // Python shuts the replaced connection down
        if let Some(s) = registry.lock().unwrap().remove(&old) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    registry
        .lock()
        .unwrap()
        .insert(info.connection_id, sock.try_clone().expect("clone socket"));
    let _ = tx.send(ServerEvent::Established(
        info.clone(),
        session.tls_version(),
    ));
    let mut conn = Conn::new(sock, session);
    let mut sent_furl = false;
    let mut refs = WireRefs::default();
    while !stop.load(Ordering::SeqCst) {
        let deadline = Instant::now() + Duration::from_millis(200);
        let msg = match conn.next_message(deadline) {
            Ok(m) => m,
            Err(e) if e == "deadline passed" => continue,
            Err(_) => break,
        };
        let Node::Seq(kind, kids) = msg else { continue };
        if kind != "call" {
            continue;
        }
        let (Some(req), Some(clid), Some(Node::Bytes(method))) = (
            kids.first().and_then(Node::int),
            kids.get(1).and_then(Node::int),
            kids.get(2),
        ) else {
            continue;
        };
        let args = match kids.get(3) {
            Some(Node::Seq(_, a)) => a.clone(),
            _ => Vec::new(),
        };
        if req == 0 {
            continue;
        }
        let answer = match (clid, method.as_slice()) {
            (0, b"getReferenceByName") => {
                let first = !sent_furl;
                sent_furl = true;
                refs.value(WireRef::My(MyReference {
                    clid: 1,
                    interface: first.then(|| bytes::Bytes::from_static(b"")),
                    furl: first.then(|| bytes::Bytes::from(furl.clone().into_bytes())),
                }))
            }
            (1, b"add") => {
                let n = args.first().and_then(Node::int).unwrap_or(0) as usize;
                Value::int(args[1..1 + n].iter().filter_map(Node::int).sum())
            }
            _ => Value::None,
        };
        conn.answer_with(req, &answer, &mut refs);
    }
    table.lock().unwrap().connection_closed(info.connection_id);
    registry.lock().unwrap().remove(&info.connection_id);
}

/// A proxy for one connection that rewrites `from` into `to` in the
/// client's request: a man in the middle pointing the client at another
/// Tub.
pub fn rewriting_proxy(target: SocketAddr, from: String, to: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let Ok(mut server) = TcpStream::connect(target) else {
            return;
        };
        let deadline = Duration::from_secs(20);
        client.set_read_timeout(Some(deadline)).ok();
        server.set_read_timeout(Some(deadline)).ok();
        let mut request = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let request = String::from_utf8_lossy(&request).replace(&from, &to);
        if server.write_all(request.as_bytes()).is_err() {
            return;
        }
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut s2);
            let _ = s2.shutdown(Shutdown::Write);
        });
        let _ = std::io::copy(&mut server, &mut client);
        let _ = client.shutdown(Shutdown::Both);
        let _ = up.join();
    });
    addr
}

/// A running `fsnego.py serve`; killed when dropped (it also stops when
/// its stdin closes, or after its lifetime).
pub struct PyServer {
    _process: PyProcess,
    pub furl: Furl,
    pub tubid: String,
    pub incarnation: String,
}

impl PyServer {
    pub fn start(certfile: &Path) -> PyServer {
        let (process, j) = PyProcess::serve("fsnego.py", certfile);
        let furl = Furl::parse(j["furl"].as_str().expect("furl")).expect("Python's FURL parses");
        PyServer {
            _process: process,
            furl,
            tubid: j["tubid"].as_str().unwrap().into(),
            incarnation: j["incarnation"].as_str().unwrap().into(),
        }
    }
}

/// Runs `fsnego.py ARGS` to completion (killed after `limit`) and returns
/// its JSON lines.
pub fn fsnego(args: &[&str], limit: Duration) -> Vec<Json> {
    super::run_script_json("fsnego.py", args, limit)
}
