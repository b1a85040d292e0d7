//! The machine's floor for `benches/calls.rs`: the same work as the call
//! rows through rustls alone over loopback, no RPC layer at all.
//!
//! Two threads, as in the Rust rows: this thread is the client, a second
//! thread the server. Both ends use the TLS configuration our engines use
//! (`TlsContext`: rustls with the ring provider, TLS 1.3 chosen, client
//! certificates, no resumption), blocking `TcpStream`s with `TCP_NODELAY`,
//! as the engines set it. The framing is the least that can carry the work:
//! a 4-byte big-endian length and the bytes; the server answers each frame
//! with the same bytes, read into and written from one reused buffer.
//!
//! Rows: `handshake` (TCP connect plus TLS 1.3 handshake, closed with
//! close_notify, per second), `pingpong` (sequential 64-byte requests, each
//! answered with 64 bytes, round trips per second, with p50/p99 latency)
//! and `echo` (sequential echo of 1 MiB, MiB/s one way, as the call rows).

use std::io::{BufReader, ErrorKind, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use foolscap::identity::Identity;
use foolscap::negotiation::rustls::{ClientConnection, ServerConnection, StreamOwned};
use foolscap::negotiation::TlsContext;

/// A socket read through a 64 KiB buffer: rustls asks for at most 4 KiB
/// of ciphertext at a time, a careful user reads the socket in larger
/// chunks (as our engines do), so one system call brings many records.
pub struct BufSock {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl BufSock {
    fn new(s: TcpStream) -> BufSock {
        let w = s.try_clone().expect("clone socket");
        BufSock {
            r: BufReader::with_capacity(64 * 1024, s),
            w,
        }
    }
}

impl Read for BufSock {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}

impl Write for BufSock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.w.write_vectored(bufs)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request and answer size of the ping-pong row.
pub const PING_BYTES: usize = 64;

/// What the floor measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    /// TCP connect + TLS 1.3 handshake, per second.
    pub handshakes: f64,
    /// Sequential 64-byte round trips per second.
    pub pingpong: f64,
    pub pingpong_p50_us: f64,
    pub pingpong_p99_us: f64,
    /// Sequential 1 MiB echo, MiB/s one way.
    pub echo_mib: f64,
    /// CPU time of the process (client and server threads) per round
    /// trip and per 1 MiB echo, in µs: the cost, which the load of a
    /// shared machine moves much less than the rates.
    pub cpu_pingpong_us: f64,
    pub cpu_echo_us: f64,
}

/// CPU seconds the live threads of this process have used, from each
/// thread's `/proc/self/task/TID/schedstat` (Linux, nanoseconds; 0
/// elsewhere). Take differences over intervals in which no thread ends.
pub fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(st) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += st
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 * 1e-9
}

/// p50 and p99 of a set of latencies, in µs.
pub fn percentiles(lat: &mut [Duration]) -> (f64, f64) {
    if lat.is_empty() {
        return (0.0, 0.0);
    }
    lat.sort_unstable();
    let at = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len() - 1);
        lat[i].as_secs_f64() * 1e6
    };
    (at(0.50), at(0.99))
}

/// The server: one thread that takes connections one at a time and
/// echoes each frame until the peer closes.
struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    buf.resize(n, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Header and payload in one buffer, built once per row: one write.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn write_frame<W: Write>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame)?;
    w.flush()
}

impl EchoServer {
    fn start(ctx: TlsContext) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            // the frame as read (header and bytes) is the answer: no copy
            let mut out = Vec::new();
            for sock in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(sock) = sock else { continue };
                let _ = sock.set_nodelay(true);
                let conn: ServerConnection = ctx.server().expect("tls server");
                let mut tls = StreamOwned::new(conn, BufSock::new(sock));
                loop {
                    out.resize(4, 0);
                    if tls.read_exact(&mut out[..4]).is_err() {
                        break;
                    }
                    let n = u32::from_be_bytes(out[..4].try_into().expect("4 bytes")) as usize;
                    out.resize(4 + n, 0);
                    if tls.read_exact(&mut out[4..]).is_err() {
                        break;
                    }
                    if tls.write_all(&out).and_then(|_| tls.flush()).is_err() {
                        break;
                    }
                }
            }
        });
        EchoServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Client = StreamOwned<ClientConnection, BufSock>;

fn connect(
    ctx: &TlsContext,
    server: &EchoServer,
    server_tubid: foolscap::identity::TubId,
) -> Client {
    let sock = TcpStream::connect(server.addr).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let conn = ctx.client(server_tubid).expect("tls client");
    let mut tls = StreamOwned::new(conn, BufSock::new(sock));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// Runs the three floor rows, each for `secs` seconds.
pub fn measure(secs: f64) -> Floor {
    let server_id = Identity::generate().expect("identity");
    let client_id = Identity::generate().expect("identity");
    let server_ctx = TlsContext::new(&server_id).expect("tls context");
    let client_ctx = TlsContext::new(&client_id).expect("tls context");
    let tubid = server_ctx.tubid();
    let server = EchoServer::start(server_ctx);
    let dur = Duration::from_secs_f64(secs);

    // handshake: connect, TLS 1.3 handshake, a one-byte frame and its
    // echo (so the server has finished its side too), close_notify
    let mut buf = Vec::new();
    let one = frame(b"x");
    let mut handshake = || {
        let mut tls = connect(&client_ctx, &server, tubid);
        write_frame(&mut tls, &one).expect("write");
        assert!(read_frame(&mut tls, &mut buf).expect("read"));
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    };
    for _ in 0..20 {
        handshake();
    }
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        handshake();
        n += 1;
    }
    let handshakes = n as f64 / t0.elapsed().as_secs_f64();

    // ping-pong
    let mut tls = connect(&client_ctx, &server, tubid);
    let ping = frame(&[7u8; PING_BYTES]);
    let once = |tls: &mut Client, buf: &mut Vec<u8>| {
        write_frame(tls, &ping).expect("write");
        assert!(read_frame(tls, buf).expect("read"));
        assert_eq!(buf.len(), PING_BYTES);
    };
    for _ in 0..1000 {
        once(&mut tls, &mut buf);
    }
    let mut lat = Vec::with_capacity(1 << 20);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    while t0.elapsed() < dur {
        let t = Instant::now();
        once(&mut tls, &mut buf);
        lat.push(t.elapsed());
    }
    let pingpong = lat.len() as f64 / t0.elapsed().as_secs_f64();
    let cpu_pingpong_us = (cpu_seconds() - c0) * 1e6 / lat.len() as f64;
    let (p50, p99) = percentiles(&mut lat);

    // 1 MiB echo
    let payload = vec![b'x'; 1 << 20];
    let framed = frame(&payload);
    let echo = |tls: &mut Client, buf: &mut Vec<u8>| {
        write_frame(tls, &framed).expect("write");
        assert!(read_frame(tls, buf).expect("read"));
        assert!(*buf == payload);
    };
    echo(&mut tls, &mut buf);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    while t0.elapsed() < dur {
        echo(&mut tls, &mut buf);
        n += 1;
    }
    let echo_mib = n as f64 / t0.elapsed().as_secs_f64();
    let cpu_echo_us = (cpu_seconds() - c0) * 1e6 / n as f64;
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    drop(tls);
    drop(server);
    Floor {
        handshakes,
        pingpong,
        pingpong_p50_us: p50,
        pingpong_p99_us: p99,
        echo_mib,
        cpu_pingpong_us,
        cpu_echo_us,
    }
}
