//! Two sans-IO Tubs wired back to back in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::broker::CallError;
use crate::rng::SeededRng;

struct Net {
    tubs: [Tub; 2],
    /// (tub index, connection) -> (other tub index, its connection)
    links: HashMap<(usize, ConnectionId), (usize, ConnectionId)>,
    events: [Vec<TubEvent>; 2],
    now: Instant,
    /// Connect without TLS (the replay channel).
    clear: bool,
}

fn tub(seed: u64, now: Instant) -> Tub {
    tub_with(seed, now, TubConfig::default())
}

fn tub_with(seed: u64, now: Instant, config: TubConfig) -> Tub {
    let id = Identity::generate().unwrap();
    Tub::new(&id, config, Box::new(SeededRng::new(seed)), now).unwrap()
}

impl Net {
    fn new() -> Net {
        Self::with_configs(TubConfig::default(), TubConfig::default(), false)
    }

    fn with_configs(server: TubConfig, client: TubConfig, clear: bool) -> Net {
        let now = Instant::now();
        let mut server = tub_with(1, now, server);
        server.set_location(vec![Hint::parse("tcp:127.0.0.1:1234")]);
        Net {
            tubs: [server, tub_with(2, now, client)],
            links: HashMap::new(),
            events: [Vec::new(), Vec::new()],
            now,
            clear,
        }
    }

    /// Moves bytes both ways and collects events until nothing moves;
    /// dials to port 1234 reach tub 0, any other port is refused.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            for side in 0..2 {
                let mut buf = Vec::new();
                while let Some(conn) = self.tubs[side].poll_transmit(&mut buf) {
                    if let Some(&(other, oc)) = self.links.get(&(side, conn)) {
                        self.tubs[other].handle_input(oc, self.now, &buf);
                        moved = true;
                    }
                }
                while let Some(cmd) = self.tubs[side].poll_transport() {
                    moved = true;
                    match cmd {
                        Transport::Dial { dial, port, .. } => {
                            if port == 1234 && self.clear {
                                let (me, them) =
                                    (self.tubs[side].tubid(), self.tubs[1 - side].tubid());
                                let c = self.tubs[side]
                                    .dial_connected_clear(dial, self.now, them)
                                    .unwrap();
                                let s = self.tubs[1 - side].accept_clear(self.now, me).unwrap();
                                self.links.insert((side, c), (1 - side, s));
                                self.links.insert((1 - side, s), (side, c));
                            } else if port == 1234 {
                                let c = self.tubs[side].dial_connected(dial, self.now).unwrap();
                                let s = self.tubs[1 - side].accept(self.now).unwrap();
                                self.links.insert((side, c), (1 - side, s));
                                self.links.insert((1 - side, s), (side, c));
                            } else {
                                let refused = TransportError::new(
                                    std::io::ErrorKind::ConnectionRefused,
                                    "connection refused",
                                );
                                self.tubs[side].dial_failed(dial, refused);
                            }
                        }
                        Transport::Close(c) => {
                            if let Some((other, oc)) = self.links.remove(&(side, c)) {
                                self.links.remove(&(other, oc));
                                self.tubs[other].handle_eof(oc, self.now);
                            }
                        }
                    }
                }
                while let Some(ev) = self.tubs[side].poll_event() {
                    moved = true;
                    self.events[side].push(ev);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn take(&mut self, side: usize) -> Vec<TubEvent> {
        std::mem::take(&mut self.events[side])
    }

    /// Answers every call to tub 0 with `[method, args]`.
    fn serve(&mut self) {
        for ev in self.take(0) {
            if let TubEvent::Call(c) = ev {
                let v = Value::List(vec![Value::str(c.method.as_str()), Value::List(c.args)]);
                self.tubs[0].answer(c.id, Ok(v)).unwrap();
            }
        }
        self.run();
    }

    fn reference(&mut self, furl: &Furl) -> Result<Value, TubError> {
        let lookup = self.tubs[1].get_reference(furl);
        self.run();
        let evs = self.take(1);
        evs.into_iter()
            .find_map(|e| match e {
                TubEvent::Reference { lookup: l, result } if l == lookup => Some(result),
                _ => None,
            })
            .expect("a Reference event")
    }
}

fn answers(evs: Vec<TubEvent>) -> Vec<(CallId, Result<Value, CallError>)> {
    evs.into_iter()
        .filter_map(|e| match e {
            TubEvent::Answer { call, result } => Some((call, result)),
            _ => None,
        })
        .collect()
}

#[test]
fn get_reference_then_call_and_answer() {
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    assert_eq!(furl.to_string().split('/').next_back(), Some("calc"));
    let Ok(Value::Remote(r)) = net.reference(&furl) else {
        panic!("no reference")
    };
    let call = net.tubs[1].call(&r, "add", &[Value::int(1)], &[]).unwrap();
    net.run();
    let evs = net.take(0);
    assert!(evs.iter().any(|e| matches!(e, TubEvent::Connected { .. })));
    let Some(TubEvent::Call(c)) = evs.into_iter().find(|e| matches!(e, TubEvent::Call(_))) else {
        panic!("no call")
    };
    assert_eq!((c.object, c.method.as_str()), (obj, "add"));
    assert_eq!(c.caller, net.tubs[1].tubid());
    net.tubs[0].answer(c.id, Ok(Value::int(3))).unwrap();
    net.run();
    assert_eq!(answers(net.take(1)), vec![(call, Ok(Value::int(3)))]);
}

#[test]
fn one_connection_per_remote_tub() {
    let mut net = Net::new();
    let a = net.tubs[0].new_object("");
    let b = net.tubs[0].new_object("");
    let fa = net.tubs[0].register(a, Some("a")).unwrap();
    let fb = net.tubs[0].register(b, None).unwrap();
    let Ok(Value::Remote(ra)) = net.reference(&fa) else {
        panic!()
    };
    let Ok(Value::Remote(rb)) = net.reference(&fb) else {
        panic!()
    };
    assert_eq!(ra.connection(), rb.connection());
    assert_ne!(ra, rb);
    assert_eq!(net.links.len(), 2, "one TCP connection");
    // the same FURL twice gives the same handle
    let Ok(Value::Remote(ra2)) = net.reference(&fa) else {
        panic!()
    };
    assert_eq!(ra, ra2);
}

#[test]
fn unknown_names_and_unreachable_tubs_fail_the_lookup() {
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    let wrong = Furl::new(furl.tubid, furl.hints.clone(), "nope");
    match net.reference(&wrong) {
        Err(TubError::Lookup(CallError::Remote(f))) => assert_eq!(f.type_name, "builtins.KeyError"),
        other => panic!("{other:?}"),
    }
    // hints are tried in order: the refused one, then the good one
    let hints = vec![
        Hint::parse("tcp:127.0.0.1:9"),
        Hint::parse("tcp:127.0.0.1:1234"),
    ];
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    let two = Furl::new(furl.tubid, hints, "calc");
    assert!(matches!(net.reference(&two), Ok(Value::Remote(_))));
    // nothing answers
    let mut net = Net::new();
    let dead = Furl::new(furl.tubid, vec![Hint::parse("tcp:127.0.0.1:9")], "calc");
    match net.reference(&dead) {
        Err(e @ TubError::Unreachable { .. }) => {
            let TubError::Unreachable { attempts, .. } = &e else {
                unreachable!()
            };
            assert!(e.to_string().contains("refused"), "{e}");
            assert!(matches!(
                &attempts[..],
                [DialFailure {
                    error: DialError::Transport(TransportError {
                        kind: std::io::ErrorKind::ConnectionRefused,
                        ..
                    }),
                    ..
                }]
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn our_own_furl_gives_the_local_object() {
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("me")).unwrap();
    let lookup = net.tubs[0].get_reference(&furl);
    assert_eq!(
        net.tubs[0].poll_event(),
        Some(TubEvent::Reference {
            lookup,
            result: Ok(Value::Local(obj))
        })
    );
    assert_eq!(
        net.tubs[0].register(obj, Some("me")),
        Err(TubError::NameInUse("me".into()))
    );
}

#[test]
fn disconnect_fails_calls_and_reports_both_sides() {
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(&furl) else {
        panic!()
    };
    let call = net.tubs[1].call(&r, "slow", &[], &[]).unwrap();
    net.run();
    net.tubs[0].disconnect(ConnectionId(net.links[&(1, r.connection())].1 .0));
    net.run();
    let evs = net.take(1);
    assert!(matches!(
        &answers(evs.clone())[..],
        [(c, Err(CallError::ConnectionLost(_)))] if *c == call
    ));
    assert!(evs
        .iter()
        .any(|e| matches!(e, TubEvent::Disconnected { .. })));
    assert!(net
        .take(0)
        .iter()
        .any(|e| matches!(e, TubEvent::Disconnected { .. })));
    assert_eq!(
        net.tubs[1].call(&r, "again", &[], &[]),
        Err(TubError::NotConnected)
    );
    // a new lookup dials again
    assert!(matches!(net.reference(&furl), Ok(Value::Remote(_))));
}

#[test]
fn objects_travel_both_ways_and_unused_ones_are_reported() {
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(&furl) else {
        panic!()
    };
    // tub 1 sends one of its objects; tub 0 receives a Remote and echoes
    // it back, so tub 1 gets its Local object home
    let mine = net.tubs[1].new_object("");
    net.tubs[1]
        .call(&r, "m", &[Value::Local(mine)], &[])
        .unwrap();
    net.run();
    let Some(TubEvent::Call(c)) = net
        .take(0)
        .into_iter()
        .find(|e| matches!(e, TubEvent::Call(_)))
    else {
        panic!()
    };
    assert!(matches!(c.args[0], Value::Remote(_)));
    let back = c.args[0].clone();
    net.tubs[0].answer(c.id, Ok(back)).unwrap();
    drop(c);
    net.run();
    assert_eq!(answers(net.take(1))[0].1, Ok(Value::Local(mine)));
    // tub 0 dropped every handle: after the sweep it releases, and tub 1
    // learns its object is unused
    net.now += Duration::from_secs(2);
    net.tubs[0].handle_timeout(net.now);
    net.run();
    assert!(net.take(1).contains(&TubEvent::ObjectUnused(mine)));
    // the registered object is never reported unused
    drop(r);
    net.now += Duration::from_secs(2);
    net.tubs[1].handle_timeout(net.now);
    net.run();
    assert!(!net.take(0).contains(&TubEvent::ObjectUnused(obj)));
    net.serve();
}

#[test]
fn objects_sent_with_a_location_get_a_furl_like_python() {
    let mut net = Net::new();
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(&furl) else {
        panic!()
    };
    // the registered name is the one sent, not an automatic one
    assert_eq!(r.furl().map(|f| &f[..]), Some(furl.to_string().as_bytes()));
    let counter = net.tubs[0].new_object("");
    net.tubs[1].call(&r, "make", &[], &[]).unwrap();
    net.run();
    let Some(TubEvent::Call(c)) = net
        .take(0)
        .into_iter()
        .find(|e| matches!(e, TubEvent::Call(_)))
    else {
        panic!()
    };
    net.tubs[0].answer(c.id, Ok(Value::Local(counter))).unwrap();
    net.run();
    let Ok(Value::Remote(cr)) = answers(net.take(1)).remove(0).1 else {
        panic!()
    };
    let text = String::from_utf8(cr.furl().expect("a FURL").to_vec()).unwrap();
    let cfurl = Furl::parse(&text).unwrap();
    assert_eq!(cfurl.tubid, net.tubs[0].tubid());
    // that FURL leads to the same object
    assert_eq!(net.reference(&cfurl), Ok(Value::Remote(cr)));
}

#[test]
fn accepting_stops_at_the_connection_limit() {
    let now = Instant::now();
    let id = Identity::generate().unwrap();
    let config = TubConfig {
        max_inbound_connections: 2,
        ..TubConfig::default()
    };
    let mut t = Tub::new(&id, config, Box::new(SeededRng::new(3)), now).unwrap();
    let a = t.accept(now).unwrap();
    t.accept(now).unwrap();
    assert_eq!(t.accept(now), Err(TubError::TooManyConnections(2)));
    // a closed connection makes room again
    t.handle_eof(a, now);
    let mut buf = Vec::new();
    while t.poll_transmit(&mut buf).is_some() {}
    while t.poll_event().is_some() {}
    assert!(t.accept(now).is_ok());
}

type RecordedBytes = (ConnectionId, Direction, RecordPhase, Vec<u8>);
type Opened = (ConnectionId, bool, Option<(String, u16)>);

/// Everything a recorder saw.
#[derive(Default)]
struct Memory {
    records: std::sync::Mutex<Vec<RecordedBytes>>,
    opened: std::sync::Mutex<Vec<Opened>>,
    addresses: std::sync::Mutex<Vec<(ConnectionId, String, String)>>,
}

impl Recorder for Memory {
    fn opened(&self, connection: ConnectionId, is_client: bool, dialled: Option<(&str, u16)>) {
        let d = dialled.map(|(h, p)| (h.to_owned(), p));
        self.opened.lock().unwrap().push((connection, is_client, d));
    }

    fn addresses(&self, connection: ConnectionId, client: &str, server: &str) {
        let a = (connection, client.to_owned(), server.to_owned());
        self.addresses.lock().unwrap().push(a);
    }

    fn record(&self, connection: ConnectionId, direction: Direction, phase: RecordPhase, b: &[u8]) {
        let r = (connection, direction, phase, b.to_vec());
        self.records.lock().unwrap().push(r);
    }
}

impl Memory {
    fn stream(&self, direction: Direction, phase: RecordPhase) -> Vec<u8> {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|r| r.1 == direction && r.2 == phase)
            .flat_map(|r| r.3.clone())
            .collect()
    }
}

use crate::negotiation::{Direction, RecordPhase, Recorder};

fn recorded_call(clear: bool) -> (Arc<Memory>, Arc<Memory>) {
    let (sm, cm) = (Arc::new(Memory::default()), Arc::new(Memory::default()));
    let config = |m: &Arc<Memory>| TubConfig {
        recorder: Some(RecorderHandle::new(m.clone())),
        ..TubConfig::default()
    };
    let mut net = Net::with_configs(config(&sm), config(&cm), clear);
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    let Value::Remote(r) = net.reference(&furl).unwrap() else {
        panic!("a remote reference")
    };
    net.tubs[1].call(&r, "add", &[Value::int(1)], &[]).unwrap();
    net.run();
    net.serve();
    assert_eq!(answers(net.take(1)).len(), 1);
    (sm, cm)
}

#[test]
fn the_recorder_sees_the_plaintext_phase_and_the_decrypted_stream() {
    for clear in [false, true] {
        let (server, client) = recorded_call(clear);
        let get = client.stream(Direction::Sent, RecordPhase::Plain);
        assert!(get.starts_with(b"GET /id/") && get.ends_with(b"\r\n\r\n"));
        assert_eq!(server.stream(Direction::Received, RecordPhase::Plain), get);
        let ok = server.stream(Direction::Sent, RecordPhase::Plain);
        assert_eq!(ok, crate::negotiation::plaintext::SWITCHING_PROTOCOLS);
        assert_eq!(client.stream(Direction::Received, RecordPhase::Plain), ok);
        // what one side sent inside TLS is exactly what the other received
        for (a, b) in [(&server, &client), (&client, &server)] {
            let sent = a.stream(Direction::Sent, RecordPhase::Tls);
            assert!(sent.starts_with(b"banana-negotiation-range: 3 3\r\n"));
            assert_eq!(sent, b.stream(Direction::Received, RecordPhase::Tls));
        }
        let ours = client.stream(Direction::Sent, RecordPhase::Tls);
        assert!(ours.windows(3).any(|w| w == b"add"), "the call is recorded");
        let opened = client.opened.lock().unwrap().clone();
        assert_eq!(opened.len(), 1);
        assert!(opened[0].1);
        assert_eq!(opened[0].2, Some(("127.0.0.1".to_owned(), 1234)));
        assert!(!server.opened.lock().unwrap()[0].1);
    }
}

#[test]
fn recorder_handles_compare_by_identity() {
    let m: Arc<dyn Recorder> = Arc::new(Memory::default());
    let a = RecorderHandle::new(m.clone());
    assert_eq!(a, RecorderHandle::new(m));
    assert_ne!(a, RecorderHandle::new(Arc::new(Memory::default())));
    assert!(format!("{a:?}").starts_with("RecorderHandle("));
}

#[test]
fn a_clear_client_refuses_a_peer_that_is_not_the_dialled_tub() {
    let now = Instant::now();
    let mut client = tub(5, now);
    let server = tub(6, now);
    let other = tub(7, now);
    let furl = Furl::new(server.tubid(), vec![Hint::parse("tcp:127.0.0.1:1")], "x");
    client.get_reference(&furl);
    let Some(Transport::Dial { dial, .. }) = client.poll_transport() else {
        panic!("a dial")
    };
    let c = client
        .dial_connected_clear(dial, now, other.tubid())
        .unwrap();
    client.handle_input(c, now, crate::negotiation::plaintext::SWITCHING_PROTOCOLS);
    let cmds: Vec<Transport> = std::iter::from_fn(|| client.poll_transport()).collect();
    assert!(cmds.contains(&Transport::Close(c)), "{cmds:?}");
    // the application hears why: the certificate is not the dialled Tub's
    let evs: Vec<TubEvent> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(
        evs.iter().any(|e| matches!(
            e,
            TubEvent::NegotiationFailed {
                connection,
                outbound: true,
                error: NegotiationError::WrongTub { .. },
            } if *connection == c
        )),
        "{evs:?}"
    );
}

#[test]
fn timers_are_filed_per_connection() {
    let start = Instant::now();
    let mut t = tub(4, start);
    assert_eq!(t.poll_timeout(), None);
    // three negotiations, one second apart, each with its own deadline
    let timeout = NegotiationConfig::default().timeout;
    let ids: Vec<ConnectionId> = (0..3)
        .map(|i| t.accept(start + Duration::from_secs(i)).unwrap())
        .collect();
    assert_eq!(t.timers.len(), 3);
    assert_eq!(t.poll_timeout(), Some(start + timeout));
    // the first deadline ends the first connection only
    t.handle_timeout(start + timeout);
    let mut closed = Vec::new();
    while let Some(cmd) = t.poll_transport() {
        if let Transport::Close(c) = cmd {
            closed.push(c);
        }
    }
    assert_eq!(closed, vec![ids[0]]);
    assert_eq!(
        t.poll_timeout(),
        Some(start + timeout + Duration::from_secs(1))
    );
    // a connection that is gone leaves no timer behind
    let mut buf = Vec::new();
    while t.poll_transmit(&mut buf).is_some() {}
    assert_eq!(t.timers.len(), 2);
    t.handle_eof(ids[1], start + timeout);
    while t.poll_transmit(&mut buf).is_some() {}
    assert_eq!(t.timers.len(), 1);
    assert_eq!(
        t.poll_timeout(),
        Some(start + timeout + Duration::from_secs(2))
    );
}

#[test]
fn an_established_connection_files_its_keepalive() {
    let keepalive = Duration::from_secs(30);
    let config = TubConfig {
        broker: BrokerConfig {
            keepalive: Some(keepalive),
            ..BrokerConfig::default()
        },
        ..TubConfig::default()
    };
    let mut net = Net::with_configs(config.clone(), config, false);
    let obj = net.tubs[0].new_object("");
    let furl = net.tubs[0].register(obj, Some("calc")).unwrap();
    assert!(matches!(net.reference(&furl), Ok(Value::Remote(_))));
    for side in 0..2 {
        assert_eq!(net.tubs[side].timers.len(), 1);
        let due = net.tubs[side].poll_timeout().expect("a keepalive");
        assert!(due <= net.now + keepalive, "{side}");
    }
    // traffic later moves the deadline on
    net.now += Duration::from_secs(20);
    let Ok(Value::Remote(r)) = net.reference(&furl) else {
        panic!()
    };
    net.tubs[1].call(&r, "m", &[], &[]).unwrap();
    net.run();
    net.serve();
    let due = net.tubs[0].poll_timeout().expect("a keepalive");
    assert!(
        due > net.now,
        "deadline {due:?} not moved past {:?}",
        net.now
    );
    // nothing is due before it
    net.tubs[0].handle_timeout(due - Duration::from_millis(1));
    assert_eq!(net.tubs[0].poll_timeout(), Some(due));
}

#[test]
fn the_recorder_learns_the_socket_addresses_as_client_and_server() {
    let now = Instant::now();
    let m = Arc::new(Memory::default());
    let config = TubConfig {
        recorder: Some(RecorderHandle::new(m.clone())),
        ..TubConfig::default()
    };
    let mut t = tub_with(5, now, config);
    let (ours, theirs): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5000".parse().unwrap(),
        "[::1]:6000".parse().unwrap(),
    );
    // accepted: the peer is the client
    let a = t.accept(now).unwrap();
    t.set_addresses(a, ours, theirs);
    // dialled: we are the client
    let furl = Furl::parse(&format!(
        "pb://{}@tcp:127.0.0.1:6000/x",
        Identity::generate().unwrap().tubid()
    ))
    .unwrap();
    t.get_reference(&furl);
    let dial = std::iter::from_fn(|| t.poll_transport())
        .find_map(|e| match e {
            Transport::Dial { dial, .. } => Some(dial),
            _ => None,
        })
        .expect("a dial");
    let d = t.dial_connected(dial, now).unwrap();
    t.set_addresses(d, ours, theirs);
    assert_eq!(
        *m.addresses.lock().unwrap(),
        vec![
            (a, "[::1]:6000".to_owned(), "127.0.0.1:5000".to_owned()),
            (d, "127.0.0.1:5000".to_owned(), "[::1]:6000".to_owned()),
        ]
    );
}
