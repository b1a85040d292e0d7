//! Flow control through the driver seam: while an engine reports a
//! connection's unsent output over `TubConfig::max_buffered_output`, the
//! peer's calls wait, in order, and go on once it drains, a round of
//! `calls_per_round` at a time within one drive. Two driven Tubs are wired
//! back to back in memory by a minimal engine written here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use foolscap_app::{Call, DrivenTub, Driver, DriverIo, Object, PendingCalls, Tub, TubConfig};
use foolscap_core::id::{ConnectionId, DialId};
use foolscap_core::identity::Identity;
use foolscap_core::value::{RemoteRef, Value};

struct NoLoop;

impl Driver for NoLoop {
    fn wake(&self) {}
    fn listen(&self, _: std::net::TcpListener) -> std::io::Result<()> {
        Ok(())
    }
    fn stop_listening(&self) {}
    fn is_loop_thread(&self) -> bool {
        false
    }
    fn release(&self) {}
}

/// Unsent output over the default bound (1 MiB).
const STALLED: usize = 2 << 20;

/// What one side's drive asked of the transport.
#[derive(Default)]
struct Io {
    /// What this transport reports as unsent after each transmit.
    backlog: usize,
    sent: Vec<(ConnectionId, Vec<u8>)>,
    closed: Vec<ConnectionId>,
    dials: Vec<DialId>,
}

impl DriverIo for Io {
    fn transmit(&mut self, connection: ConnectionId, data: &mut Vec<u8>) -> usize {
        self.sent.push((connection, std::mem::take(data)));
        self.backlog
    }
    fn close(&mut self, connection: ConnectionId) {
        self.closed.push(connection);
    }
    fn dial(&mut self, dial: DialId, _host: String, _port: u16) {
        self.dials.push(dial);
    }
}

/// Records the argument of every call it starts, answers it at once.
struct Recorder(Mutex<Vec<i64>>);

impl Object for Recorder {
    fn call(&self, call: Call) {
        let n = call.arg(0, "n").and_then(Value::as_i64).unwrap_or(-1);
        self.0.lock().unwrap().push(n);
        call.answer(Value::int(n * 2));
    }
}

struct Net {
    tubs: [(Tub, DrivenTub); 2],
    io: [Io; 2],
    links: HashMap<(usize, ConnectionId), (usize, ConnectionId)>,
}

impl Net {
    fn new() -> Net {
        let side = || {
            let id = Identity::generate().unwrap();
            let mut config = TubConfig::default();
            config.calls_per_round = 4;
            Tub::with_driver(id, config, Arc::new(NoLoop)).unwrap()
        };
        let io = Io::default;
        Net {
            tubs: [side(), side()],
            io: [io(), io()],
            links: HashMap::new(),
        }
    }

    /// Drives both sides and moves bytes until nothing moves.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            for side in 0..2 {
                self.tubs[side].1.drive(&mut self.io[side]);
                for dial in std::mem::take(&mut self.io[side].dials) {
                    let now = Instant::now();
                    let c = self.tubs[side].1.dial_connected(dial, now).unwrap();
                    let s = self.tubs[1 - side].1.accept(now).unwrap();
                    self.links.insert((side, c), (1 - side, s));
                    self.links.insert((1 - side, s), (side, c));
                    moved = true;
                }
                for (conn, bytes) in std::mem::take(&mut self.io[side].sent) {
                    if let Some(&(other, oc)) = self.links.get(&(side, conn)) {
                        self.tubs[other].1.handle_input(oc, Instant::now(), &bytes);
                        moved = true;
                    }
                }
                for conn in std::mem::take(&mut self.io[side].closed) {
                    if let Some((other, oc)) = self.links.remove(&(side, conn)) {
                        self.links.remove(&(other, oc));
                        self.tubs[other].1.handle_eof(oc, Instant::now());
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn server_conn(&self) -> ConnectionId {
        self.links
            .keys()
            .find(|(side, _)| *side == 0)
            .map(|&(_, c)| c)
            .expect("a connection")
    }

    /// The server's transport stops (or starts again) taking bytes.
    fn stall_server(&mut self, stalled: bool) {
        let backlog = if stalled { STALLED } else { 0 };
        self.io[0].backlog = backlog;
        let conn = self.server_conn();
        self.tubs[0].1.set_backlog(conn, backlog);
    }
}

/// A server object on side 0 and side 1's reference to it.
fn connected(net: &mut Net) -> (Arc<Recorder>, RemoteRef) {
    let server = &net.tubs[0].0;
    server.set_location(&["tcp:127.0.0.1:1234"]);
    let obj = Arc::new(Recorder(Mutex::new(Vec::new())));
    let furl = server.register(obj.clone(), None).unwrap();
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    net.tubs[1]
        .0
        .get_reference_async(&furl, move |r| *g.lock().unwrap() = Some(r));
    net.run();
    let r = got.lock().unwrap().take().expect("an answer").unwrap();
    let Value::Remote(r) = r else { panic!("{r:?}") };
    (obj, r)
}

type Answers = Arc<Mutex<Vec<Value>>>;

fn send_calls(net: &Net, r: &RemoteRef, n: i64) -> Answers {
    let answers: Answers = Arc::default();
    for i in 0..n {
        let a = answers.clone();
        net.tubs[1]
            .0
            .call_async(r, "m", &[Value::int(i)], &[], move |v| {
                a.lock().unwrap().push(v.unwrap())
            })
            .unwrap();
    }
    answers
}

#[test]
fn calls_wait_in_order_while_output_is_stalled_and_go_on_later() {
    let mut net = Net::new();
    let (obj, r) = connected(&mut net);
    net.stall_server(true);
    let answers = send_calls(&net, &r, 40);
    net.run();
    let conn = net.server_conn();
    assert!(obj.0.lock().unwrap().is_empty());
    assert_eq!(net.tubs[0].1.pending_calls(conn).held, 40);
    assert_eq!(net.tubs[0].1.pending_calls(conn).unanswered, 0);
    assert!(!net.tubs[0].1.wants_input(conn));
    assert!(answers.lock().unwrap().is_empty());
    // drained: every call is started, in arrival order
    net.stall_server(false);
    net.run();
    let expected: Vec<i64> = (0..40).collect();
    assert_eq!(*obj.0.lock().unwrap(), expected);
    assert_eq!(net.tubs[0].1.pending_calls(conn), PendingCalls::default());
    assert!(net.tubs[0].1.wants_input(conn));
    let doubled: Vec<Value> = (0..40).map(|i| Value::int(i * 2)).collect();
    assert_eq!(*answers.lock().unwrap(), doubled);
}

#[test]
fn one_drive_goes_round_after_round_until_the_calls_run_out() {
    let mut net = Net::new();
    let (obj, r) = connected(&mut net);
    net.stall_server(true);
    send_calls(&net, &r, 10);
    net.run();
    assert!(obj.0.lock().unwrap().is_empty());
    // one drive, 4 calls per round, a transport that keeps up: round
    // after round, all go
    net.stall_server(false);
    net.tubs[0].1.drive(&mut net.io[0]);
    assert_eq!(obj.0.lock().unwrap().len(), 10);
    // a transport that stops taking bytes stops the next round: the
    // answers of the first 4 are over the bound
    send_calls(&net, &r, 10);
    net.io[0].backlog = STALLED;
    net.run();
    let conn = net.server_conn();
    assert_eq!(obj.0.lock().unwrap().len(), 14);
    assert_eq!(net.tubs[0].1.pending_calls(conn).held, 6);
}

#[test]
fn held_calls_go_with_their_connection() {
    let mut net = Net::new();
    let (obj, r) = connected(&mut net);
    net.stall_server(true);
    send_calls(&net, &r, 5);
    net.run();
    let conn = net.server_conn();
    assert_eq!(net.tubs[0].1.pending_calls(conn).held, 5);
    net.tubs[1].0.disconnect(&r);
    net.run();
    assert_eq!(net.tubs[0].1.pending_calls(conn), PendingCalls::default());
    assert_eq!(net.tubs[0].1.held_calls(), 0);
    net.io[0].backlog = 0;
    net.run();
    assert!(obj.0.lock().unwrap().is_empty());
}
