//! The core Tub on the simulated network of [`crate::testing`], and alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::broker::CallError;
use crate::rng::SeededRng;
use crate::testing::{Net, NetConfig, FIRST_PORT};

fn tub(seed: u64, now: Instant) -> Tub {
    tub_with(seed, now, TubConfig::default())
}

fn tub_with(seed: u64, now: Instant, config: TubConfig) -> Tub {
    let id = Identity::generate().unwrap();
    Tub::new(&id, config, Box::new(SeededRng::new(seed)), now).unwrap()
}

/// Tub 0 serves, tub 1 calls.
fn net_with(server: TubConfig, client: TubConfig, clear: bool) -> Net {
    let config = NetConfig {
        clear,
        ..NetConfig::default()
    };
    Net::with_config(config, vec![server, client], Instant::now())
}

/// Answers every call to tub 0 with `[method, args]`.
fn serve(net: &mut Net) {
    net.answer_calls(0, echo);
    net.run();
}

fn echo(c: &IncomingCall) -> Result<Value, Failure> {
    Ok(Value::List(vec![
        Value::str(c.method.as_str()),
        Value::List(c.args.clone()),
    ]))
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
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    assert_eq!(furl.to_string().split('/').next_back(), Some("calc"));
    let Ok(Value::Remote(r)) = net.reference(1, &furl) else {
        panic!("no reference")
    };
    let call = net[1].call(&r, "add", &[Value::int(1)], &[]).unwrap();
    net.run();
    let evs = net.take(0);
    assert!(evs.iter().any(|e| matches!(e, TubEvent::Connected { .. })));
    let Some(TubEvent::Call(c)) = evs.into_iter().find(|e| matches!(e, TubEvent::Call(_))) else {
        panic!("no call")
    };
    assert_eq!((c.object, c.method.as_str()), (obj, "add"));
    assert_eq!(c.caller, net[1].tubid());
    net[0].answer(c.id, Ok(Value::int(3))).unwrap();
    net.run();
    assert_eq!(answers(net.take(1)), vec![(call, Ok(Value::int(3)))]);
}

#[test]
fn one_connection_per_remote_tub() {
    let mut net = Net::new(2, Instant::now());
    let a = net[0].new_object("");
    let b = net[0].new_object("");
    let fa = net[0].register(a, Some("a")).unwrap();
    let fb = net[0].register(b, None).unwrap();
    let Ok(Value::Remote(ra)) = net.reference(1, &fa) else {
        panic!()
    };
    let Ok(Value::Remote(rb)) = net.reference(1, &fb) else {
        panic!()
    };
    assert_eq!(ra.connection(), rb.connection());
    assert_ne!(ra, rb);
    assert_eq!(net.sockets(), 1, "one TCP connection");
    // the same FURL twice gives the same handle
    let Ok(Value::Remote(ra2)) = net.reference(1, &fa) else {
        panic!()
    };
    assert_eq!(ra, ra2);
}

#[test]
fn unknown_names_and_unreachable_tubs_fail_the_lookup() {
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    let wrong = Furl::new(furl.tubid, furl.hints.clone(), "nope");
    match net.reference(1, &wrong) {
        Err(TubError::Lookup(CallError::Remote(f))) => assert_eq!(f.type_name, "builtins.KeyError"),
        other => panic!("{other:?}"),
    }
    // hints are tried in order: the refused one, then the good one
    let hints = vec![
        Hint::parse("tcp:127.0.0.1:9"),
        Hint::parse("tcp:127.0.0.1:1234"),
    ];
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    let two = Furl::new(furl.tubid, hints, "calc");
    assert!(matches!(net.reference(1, &two), Ok(Value::Remote(_))));
    // nothing answers
    let mut net = Net::new(2, Instant::now());
    let dead = Furl::new(furl.tubid, vec![Hint::parse("tcp:127.0.0.1:9")], "calc");
    match net.reference(1, &dead) {
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
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("me")).unwrap();
    let lookup = net[0].get_reference(&furl);
    assert_eq!(
        net[0].poll_event(),
        Some(TubEvent::Reference {
            lookup,
            result: Ok(Value::Local(obj))
        })
    );
    assert_eq!(
        net[0].register(obj, Some("me")),
        Err(TubError::NameInUse("me".into()))
    );
}

#[test]
fn disconnect_fails_calls_and_reports_both_sides() {
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(1, &furl) else {
        panic!()
    };
    let call = net[1].call(&r, "slow", &[], &[]).unwrap();
    net.run();
    let (_, theirs) = net.peer_end(1, r.connection()).unwrap();
    net[0].disconnect(theirs);
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
        net[1].call(&r, "again", &[], &[]),
        Err(TubError::NotConnected)
    );
    // a new lookup dials again
    assert!(matches!(net.reference(1, &furl), Ok(Value::Remote(_))));
}

#[test]
fn objects_travel_both_ways_and_unused_ones_are_reported() {
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(1, &furl) else {
        panic!()
    };
    // tub 1 sends one of its objects; tub 0 receives a Remote and echoes
    // it back, so tub 1 gets its Local object home
    let mine = net[1].new_object("");
    net[1].call(&r, "m", &[Value::Local(mine)], &[]).unwrap();
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
    net[0].answer(c.id, Ok(back)).unwrap();
    drop(c);
    net.run();
    assert_eq!(answers(net.take(1))[0].1, Ok(Value::Local(mine)));
    // tub 0 dropped every handle: after the sweep it releases, and tub 1
    // learns its object is unused
    net.advance(Duration::from_secs(2));
    assert!(net.take(1).contains(&TubEvent::ObjectUnused(mine)));
    // the registered object is never reported unused
    drop(r);
    net.advance(Duration::from_secs(2));
    assert!(!net.take(0).contains(&TubEvent::ObjectUnused(obj)));
    serve(&mut net);
}

#[test]
fn objects_sent_with_a_location_get_a_furl_like_python() {
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(1, &furl) else {
        panic!()
    };
    // the registered name is the one sent, not an automatic one
    assert_eq!(r.furl().map(|f| &f[..]), Some(furl.to_string().as_bytes()));
    let counter = net[0].new_object("");
    net[1].call(&r, "make", &[], &[]).unwrap();
    net.run();
    let Some(TubEvent::Call(c)) = net
        .take(0)
        .into_iter()
        .find(|e| matches!(e, TubEvent::Call(_)))
    else {
        panic!()
    };
    net[0].answer(c.id, Ok(Value::Local(counter))).unwrap();
    net.run();
    let Ok(Value::Remote(cr)) = answers(net.take(1)).remove(0).1 else {
        panic!()
    };
    let text = String::from_utf8(cr.furl().expect("a FURL").to_vec()).unwrap();
    let cfurl = Furl::parse(&text).unwrap();
    assert_eq!(cfurl.tubid, net[0].tubid());
    // that FURL leads to the same object
    assert_eq!(net.reference(1, &cfurl), Ok(Value::Remote(cr)));
}

/// Drains a lone Tub: its transport commands and events.
fn drain_lone(t: &mut Tub) -> (Vec<Transport>, Vec<TubEvent>) {
    let mut buf = Vec::new();
    while t.poll_transmit(&mut buf).is_some() {}
    let transport = std::iter::from_fn(|| t.poll_transport()).collect();
    let events = std::iter::from_fn(|| t.poll_event()).collect();
    (transport, events)
}

#[test]
fn at_the_negotiation_limit_the_oldest_is_evicted() {
    let now = Instant::now();
    let config = TubConfig {
        max_negotiating_connections: 4,
        ..TubConfig::default()
    };
    let mut t = tub_with(3, now, config);
    let first: Vec<ConnectionId> = (0..4).map(|_| t.accept(now).unwrap()).collect();
    assert_eq!(drain_lone(&mut t), (vec![], vec![]));
    // the fifth is accepted; the oldest makes room
    let e = t.accept(now).unwrap();
    let evicted = NegotiationError::Evicted { limit: 4 };
    assert_eq!(
        drain_lone(&mut t),
        (
            vec![Transport::Close(first[0])],
            vec![TubEvent::NegotiationFailed {
                connection: first[0],
                outbound: false,
                error: evicted.clone()
            }]
        )
    );
    assert_eq!(t.negotiating_connections(), 4);
    // the next one evicts the next oldest, never the newest
    t.accept(now).unwrap();
    let (closes, _) = drain_lone(&mut t);
    assert_eq!(closes, vec![Transport::Close(first[1])]);
    assert_eq!(t.negotiating_connections(), 4);
    assert!(t.conns.contains_key(&e));
    // a limit of 0 refuses
    let config = TubConfig {
        max_negotiating_connections: 0,
        ..TubConfig::default()
    };
    let mut t = tub_with(4, now, config);
    assert_eq!(t.accept(now), Err(TubError::TooManyConnections(0)));
}

#[test]
fn under_pressure_negotiations_get_the_short_deadline() {
    let now = Instant::now();
    let config = TubConfig {
        max_negotiating_connections: 4,
        ..TubConfig::default()
    };
    let long = NegotiationConfig::DEFAULT_TIMEOUT;
    let short = NegotiationConfig::DEFAULT_TIMEOUT_UNDER_PRESSURE;
    let mut t = tub_with(3, now, config);
    // up to half the limit: Python's 120 s
    t.accept(now).unwrap();
    t.accept(now + Duration::from_secs(1)).unwrap();
    assert_eq!(t.poll_timeout(), Some(now + long));
    // the third is over half: every inbound negotiation ends by 10 s
    // from now
    let at = now + Duration::from_secs(2);
    t.accept(at).unwrap();
    assert_eq!(t.poll_timeout(), Some(at + short));
    assert_eq!(
        t.timers.iter().map(|&(d, _)| d).collect::<Vec<_>>(),
        vec![at + short; 3]
    );
    t.handle_timeout(at + short);
    let (closes, events) = drain_lone(&mut t);
    assert_eq!(closes.len(), 3);
    assert!(events.iter().all(|e| matches!(
        e,
        TubEvent::NegotiationFailed {
            error: NegotiationError::Timeout,
            ..
        }
    )));
    assert_eq!(t.negotiating_connections(), 0);
    // the pressure is gone: the long deadline again
    let later = at + short;
    t.accept(later).unwrap();
    assert_eq!(t.poll_timeout(), Some(later + long));
}

/// A server (Tub 0) with `server`'s settings, a client (Tub 1) and
/// `extra` more Tubs, 5 ms apart.
fn capped_net(server: TubConfig, extra: usize) -> Net {
    let config = NetConfig {
        latency: Duration::from_millis(5),
        ..NetConfig::default()
    };
    let mut tubs = vec![server, TubConfig::default()];
    tubs.extend(std::iter::repeat_n(TubConfig::default(), extra));
    Net::with_config(config, tubs, Instant::now())
}

/// The virtual time a client of [`capped_net`] takes to connect and call
/// when nothing else is connected.
fn unhindered_connect_and_call() -> Duration {
    let mut net = capped_net(TubConfig::default(), 0);
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, |c| Ok(Value::int(c.args.len() as i64)));
    let start = net.now();
    let calc = net.remote(1, &furl);
    let call = net[1].call(&calc, "add", &[Value::int(1)], &[]).unwrap();
    assert_eq!(net.answer_of(1, call), Ok(Value::int(1)));
    net.now() - start
}

fn evicted_negotiations(net: &Net) -> usize {
    net.events(0)
        .filter(|e| {
            matches!(
                e,
                TubEvent::NegotiationFailed {
                    error: NegotiationError::Evicted { .. },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn silent_sockets_at_the_negotiation_limit_do_not_lock_a_client_out() {
    const LIMIT: usize = 8;
    let server = TubConfig {
        max_negotiating_connections: LIMIT,
        ..TubConfig::default()
    };
    let mut net = capped_net(server, 0);
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, |c| Ok(Value::int(c.args.len() as i64)));
    let silent: Vec<ConnectionId> = (0..LIMIT).map(|_| net.connect_silent(0).unwrap()).collect();
    assert_eq!(net[0].negotiating_connections(), LIMIT);
    // the client's connection takes the oldest one's place, at once: it
    // takes the virtual time it takes with no silent socket at all
    let start = net.now();
    let calc = net.remote(1, &furl);
    let call = net[1].call(&calc, "add", &[Value::int(1)], &[]).unwrap();
    assert_eq!(net.answer_of(1, call), Ok(Value::int(1)));
    let took = net.now() - start;
    eprintln!("full negotiation limit: connect + call took {took:?} (virtual)");
    assert_eq!(took, unhindered_connect_and_call());
    assert_eq!(evicted_negotiations(&net), 1);
    assert!(!net.is_open(0, silent[0]));
    // under pressure the rest are dropped 10 s after the last accept,
    // not 120 s
    net.advance(NegotiationConfig::DEFAULT_TIMEOUT_UNDER_PRESSURE);
    assert!(silent.iter().all(|&c| !net.is_open(0, c)));
    assert_eq!(net[0].negotiating_connections(), 0);
    assert!(net[1].is_connected(calc.connection()));
}

#[test]
fn a_client_connects_and_calls_while_silent_sockets_keep_arriving() {
    // one silent socket per virtual millisecond, a client 5 ms away: its
    // negotiation takes a few round trips, far fewer than LIMIT arrivals
    const LIMIT: usize = 100;
    let server = TubConfig {
        max_negotiating_connections: LIMIT,
        ..TubConfig::default()
    };
    let mut net = capped_net(server, 0);
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, |c| Ok(Value::int(c.args.len() as i64)));
    for _ in 0..LIMIT {
        net.connect_silent(0).unwrap();
    }
    let tick = Duration::from_millis(1);
    let start = net.now();
    let lookup = net[1].get_reference(&furl);
    let flood = |net: &mut Net| {
        net.connect_silent(0).unwrap();
        assert!(net[0].negotiating_connections() <= LIMIT);
        net.advance(tick);
    };
    let calc = loop {
        flood(&mut net);
        let got = net.take_event(
            1,
            |e| matches!(e, TubEvent::Reference { lookup: l, .. } if *l == lookup),
        );
        if let Some(TubEvent::Reference { result, .. }) = got {
            match result.unwrap() {
                Value::Remote(r) => break r,
                v => panic!("{v:?}"),
            }
        }
        assert!(net.now() - start < Duration::from_secs(60), "no connection");
    };
    let call = net[1]
        .call(&calc, "add", &[Value::int(1), Value::int(2)], &[])
        .unwrap();
    let answer = loop {
        flood(&mut net);
        if let Some((_, a)) = net.take_answers(1).into_iter().find(|(c, _)| *c == call) {
            break a;
        }
        assert!(net.now() - start < Duration::from_secs(60), "no answer");
    };
    assert_eq!(answer, Ok(Value::int(2)));
    let evicted = evicted_negotiations(&net);
    eprintln!(
        "under a flood of 1 silent socket/ms: connect + call took {:?} (virtual), {evicted} evicted",
        net.now() - start
    );
    assert!(evicted > 0);
}

fn evictions(net: &Net) -> Vec<ConnectionId> {
    net.events(0)
        .filter_map(|e| match e {
            TubEvent::Disconnected {
                connection,
                reason: CloseReason::Evicted,
                ..
            } => Some(*connection),
            _ => None,
        })
        .collect()
}

#[test]
fn silent_negotiated_connections_at_the_cap_are_evicted_idle_first() {
    const CAP: usize = 4;
    const ATTACKERS: usize = CAP + 2;
    let server = TubConfig {
        max_established_connections: CAP,
        ..TubConfig::default()
    };
    let mut net = capped_net(server, ATTACKERS);
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, |c| Ok(Value::int(c.args.len() as i64)));
    // attackers connect (fresh tubids), look up a name that does not
    // exist, and stay silent
    let wrong = Furl::new(furl.tubid, furl.hints.clone(), "nothing-here");
    let attackers: Vec<usize> = (2..2 + ATTACKERS).collect();
    let mut conn_of = HashMap::new();
    for &a in &attackers[..CAP] {
        assert!(matches!(net.reference(a, &wrong), Err(TubError::Lookup(_))));
        conn_of.insert(a, net.connection(0, a).unwrap());
        net.advance(Duration::from_secs(1));
    }
    assert_eq!(net[0].established_connections(), CAP);
    // the client gets in: the attacker idle the longest makes room
    let start = net.now();
    let calc = net.remote(1, &furl);
    let call = net[1].call(&calc, "add", &[Value::int(1)], &[]).unwrap();
    assert_eq!(net.answer_of(1, call), Ok(Value::int(1)));
    let took = net.now() - start;
    eprintln!("full established cap: connect + call took {took:?} (virtual)");
    assert_eq!(took, unhindered_connect_and_call());
    assert_eq!(evictions(&net), vec![conn_of[&attackers[0]]]);
    // more attackers evict each other, never the client, which holds a
    // reference
    for &a in &attackers[CAP..] {
        assert!(matches!(net.reference(a, &wrong), Err(TubError::Lookup(_))));
    }
    assert_eq!(
        evictions(&net),
        attackers[..3]
            .iter()
            .map(|a| conn_of[a])
            .collect::<Vec<_>>()
    );
    assert_eq!(net[0].established_connections(), CAP);
    assert!(net[1].is_connected(calc.connection()));
    let call = net[1].call(&calc, "add", &[], &[]).unwrap();
    assert_eq!(net.answer_of(1, call), Ok(Value::int(0)));
}

#[test]
fn at_the_cap_with_every_connection_in_use_the_new_one_is_closed() {
    const CAP: usize = 2;
    let server = TubConfig {
        max_established_connections: CAP,
        ..TubConfig::default()
    };
    let mut net = capped_net(server, 2);
    let (_, furl) = net.publish(0, "calc");
    // Tubs 1 and 2 hold references: neither can be evicted
    net.remote(1, &furl);
    net.remote(2, &furl);
    let Err(e) = net.reference(3, &furl) else {
        panic!("connected beyond the cap")
    };
    // the client may have finished its side first: then it sees the
    // connection drop
    assert!(
        matches!(
            e,
            TubError::Unreachable { .. } | TubError::Lookup(CallError::ConnectionLost(_))
        ),
        "{e:?}"
    );
    assert!(net.events(0).any(|e| matches!(
        e,
        TubEvent::NegotiationFailed {
            error: NegotiationError::TooManyConnections { limit: CAP },
            ..
        }
    )));
    assert_eq!(evictions(&net), vec![]);
    assert_eq!(net[0].established_connections(), CAP);
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
    let mut net = net_with(config(&sm), config(&cm), clear);
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    let Value::Remote(r) = net.reference(1, &furl).unwrap() else {
        panic!("a remote reference")
    };
    net[1].call(&r, "add", &[Value::int(1)], &[]).unwrap();
    net.run();
    serve(&mut net);
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
        assert_eq!(opened[0].2, Some(("127.0.0.1".to_owned(), FIRST_PORT)));
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
    let mut net = net_with(config.clone(), config, false);
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("calc")).unwrap();
    assert!(matches!(net.reference(1, &furl), Ok(Value::Remote(_))));
    for side in 0..2 {
        assert_eq!(net[side].timers.len(), 1);
        let due = net[side].poll_timeout().expect("a keepalive");
        assert!(due <= net.now() + keepalive, "{side}");
    }
    // traffic later moves the deadline on
    net.advance(Duration::from_secs(20));
    let Ok(Value::Remote(r)) = net.reference(1, &furl) else {
        panic!()
    };
    net[1].call(&r, "m", &[], &[]).unwrap();
    net.run();
    serve(&mut net);
    let due = net[0].poll_timeout().expect("a keepalive");
    assert!(
        due > net.now(),
        "deadline {due:?} not moved past {:?}",
        net.now()
    );
    // nothing is due before it
    net[0].handle_timeout(due - Duration::from_millis(1));
    assert_eq!(net[0].poll_timeout(), Some(due));
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

// ---- on the simulated network, with time ----

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn broker_timers(keepalive: Option<Duration>, disconnect: Option<Duration>) -> BrokerConfig {
    BrokerConfig {
        keepalive,
        disconnect_timeout: disconnect,
        ..BrokerConfig::default()
    }
}

fn recorded(m: &Arc<Memory>, broker: BrokerConfig) -> TubConfig {
    TubConfig {
        broker,
        recorder: Some(RecorderHandle::new(m.clone())),
        ..TubConfig::default()
    }
}

impl Memory {
    /// The plaintext writes of one direction inside TLS that were exactly
    /// `bytes`.
    fn count(&self, direction: Direction, bytes: &[u8]) -> usize {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|r| r.1 == direction && r.2 == RecordPhase::Tls && r.3 == bytes)
            .count()
    }
}

/// The PB tokens of an idle connection: PING and PONG with number 0.
const PING: &[u8] = &[0x8e];
const PONG: &[u8] = &[0x8f];

#[test]
fn keepalives_keep_an_idle_connection_up_and_silence_ends_it() {
    let (sm, cm) = (Arc::new(Memory::default()), Arc::new(Memory::default()));
    // the server drops a connection after 45 s without input, the client
    // pings after 30 s without input
    let server = recorded(&sm, broker_timers(None, Some(45 * SECOND)));
    let client = recorded(&cm, broker_timers(Some(30 * SECOND), None));
    let mut net = net_with(server, client, false);
    let (_, furl) = net.publish(0, "calc");
    let r = net.remote(1, &furl);
    let start = net.now();
    net.take(0);
    net.take(1);
    // ten idle minutes, in no time: a PING every 30 s, each answered
    net.run_until(start + 600 * SECOND);
    assert_eq!(net.now(), start + 600 * SECOND);
    assert_eq!(cm.count(Direction::Sent, PING), 20);
    assert_eq!(sm.count(Direction::Received, PING), 20);
    assert_eq!(sm.count(Direction::Sent, PONG), 20);
    assert_eq!(cm.count(Direction::Received, PONG), 20);
    assert_eq!(sm.count(Direction::Sent, PING), 0, "the server never pings");
    assert!(net[1].is_connected(r.connection()));
    assert_eq!(net.take(0), vec![]);
    assert_eq!(net.take(1), vec![]);
    // the server stops reading: the client's PINGs (and a call) pile up
    // unseen, and 45 s after the last one it read the server drops the
    // connection; the client learns at once (no latency)
    let (_, server_conn) = net.peer_end(1, r.connection()).unwrap();
    net.set_reading(0, server_conn, false);
    let call = net[1].call(&r, "late", &[], &[]).unwrap();
    net.run_until(start + 700 * SECOND);
    let dropped = start + 645 * SECOND;
    let server_peer = net.tubid(1);
    assert_eq!(
        net.take_timed(0),
        vec![(
            dropped,
            TubEvent::Disconnected {
                connection: server_conn,
                peer: server_peer,
                reason: CloseReason::IdleTimeout
            }
        )]
    );
    let client_evs = net.take_timed(1);
    assert!(
        matches!(
            &client_evs[..],
            [
                (t1, TubEvent::Answer { call: c, result: Err(CallError::ConnectionLost(CloseReason::Lost)) }),
                (t2, TubEvent::Disconnected { reason: CloseReason::Lost, .. }),
            ] if *c == call && *t1 == dropped && *t2 == dropped
        ),
        "{client_evs:?}"
    );
    assert_eq!(cm.count(Direction::Sent, PING), 21, "one more while unread");
    assert_eq!(net.sockets(), 0);
}

#[test]
fn negotiation_times_out_on_either_side() {
    let long = TubConfig {
        negotiation: NegotiationConfig {
            timeout: 1000 * SECOND,
            ..NegotiationConfig::default()
        },
        ..TubConfig::default()
    };
    let mut net = net_with(long, TubConfig::default(), false);
    let (_, furl) = net.publish(0, "calc");
    // the server reads nothing: the client's GET is never answered
    net.set_tub_reading(0, false);
    let start = net.now();
    let lookup = net[1].get_reference(&furl);
    let timeout = NegotiationConfig::default().timeout;
    net.run_until(start + timeout - MS);
    assert_eq!(net.take(1), vec![]);
    assert_eq!(net.sockets(), 1);
    net.advance(MS);
    let evs = net.take_timed(1);
    let [(
        t1,
        TubEvent::NegotiationFailed {
            outbound: true,
            error: NegotiationError::Timeout,
            ..
        },
    ), (
        t2,
        TubEvent::Reference {
            lookup: l,
            result: Err(e),
        },
    )] = &evs[..]
    else {
        panic!("{evs:?}")
    };
    assert_eq!((*t1, *t2, *l), (start + timeout, start + timeout, lookup));
    let TubError::Unreachable { attempts, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        attempts,
        &vec![DialFailure {
            hint: format!("tcp:127.0.0.1:{FIRST_PORT}"),
            error: DialError::Negotiation(NegotiationError::Timeout),
        }]
    );
    // the server's own deadline, counted from its accept, ends its side
    net.run_until(start + 1000 * SECOND);
    let evs = net.take_timed(0);
    assert!(
        matches!(
            &evs[..],
            [(t, TubEvent::NegotiationFailed { outbound: false, error: NegotiationError::Timeout, .. })]
                if *t == start + 1000 * SECOND
        ),
        "{evs:?}"
    );
    assert_eq!(net.sockets(), 0);
    assert_eq!(net[0].poll_timeout(), None);
    // reading again, the server is reachable as ever
    net.set_tub_reading(0, true);
    assert!(matches!(net.reference(1, &furl), Ok(Value::Remote(_))));
}

/// A lookup and calls with bytes cut at random and 5 ms / 25 ms one-way
/// latency (from the caller / to it); returns how long the lookup took and
/// the caller's answers with their virtual times (the same for every seed:
/// the pieces of one write arrive together). `server` 0 has the smaller
/// tubid (the caller is the negotiation master), 1 the larger.
fn calls_with_latency(
    seed: u64,
    clear: bool,
    server: usize,
) -> (Duration, Vec<(Duration, TubEvent)>) {
    let config = NetConfig {
        seed,
        clear,
        latency: 25 * MS,
        ..NetConfig::default()
    };
    let mut net = Net::with_config(config, vec![TubConfig::default(); 2], Instant::now());
    let client = 1 - server;
    net.set_latency(client, server, 5 * MS);
    let (_, furl) = net.publish(server, "calc");
    net.respond_with(server, echo);
    let start = net.now();
    let r = net.remote(client, &furl);
    let lookup = net.now() - start;
    // one call: one round trip
    let t = net.now();
    let call = net[client].call(&r, "add", &[Value::int(1)], &[]).unwrap();
    let want = Value::List(vec![Value::str("add"), Value::List(vec![Value::int(1)])]);
    assert_eq!(net.answer_of(client, call), Ok(want));
    assert_eq!(net.now() - t, 30 * MS);
    // a burst: every answer, right, one round trip later
    let t = net.now();
    let calls: Vec<CallId> = (0..30)
        .map(|i| {
            let big = Value::bytes(&vec![i as u8; 100 * i]);
            net[client]
                .call(&r, "m", &[Value::int(i as i64), big], &[])
                .unwrap()
        })
        .collect();
    net.drive();
    let mut got = net.take_timed(client);
    got.retain(|(_, e)| matches!(e, TubEvent::Answer { .. }));
    assert_eq!(got.len(), 30);
    for (i, (at, ev)) in got.iter().enumerate() {
        let TubEvent::Answer {
            call,
            result: Ok(Value::List(v)),
        } = ev
        else {
            panic!("{ev:?}")
        };
        assert_eq!(*call, calls[i]);
        let args = vec![Value::int(i as i64), Value::bytes(&vec![i as u8; 100 * i])];
        assert_eq!(v[1], Value::List(args));
        assert_eq!(*at - t, 30 * MS);
    }
    let timeline = got.into_iter().map(|(at, e)| (at - start, e)).collect();
    (lookup, timeline)
}

#[test]
fn calls_cross_random_splits_and_latency() {
    let rtt = 30 * MS;
    // round trips to a reference: the dial; GET and 101 (with the server's
    // hello when there is no TLS); without TLS, the master's decision
    // (when the server is the master, the client's hello first); the
    // lookup itself. TLS adds its handshake and the hello exchange inside
    for (clear, server, trips) in [(true, 0, 3), (true, 1, 4), (false, 0, 5), (false, 1, 5)] {
        let (lookup, timeline) = calls_with_latency(0, clear, server);
        assert_eq!(lookup, trips * rtt, "clear {clear}, server {server}");
        for seed in 1..5 {
            let (l, t) = calls_with_latency(seed, clear, server);
            assert_eq!(l, lookup, "seed {seed}");
            assert_eq!(t, timeline, "seed {seed}");
        }
    }
}

/// Tub 0 (the server) with small flow-control bounds; bytes whole, and
/// every unread byte counts as backlog, so the counts below are exact.
fn flow_net() -> Net {
    let server = TubConfig {
        max_buffered_output: 4096,
        calls_per_round: 4,
        max_unanswered_calls: 30,
        ..TubConfig::default()
    };
    let config = NetConfig {
        split: false,
        socket_buffer: 0,
        ..NetConfig::default()
    };
    Net::with_config(config, vec![server, TubConfig::default()], Instant::now())
}

fn pending(held: usize, unanswered: usize) -> PendingCalls {
    PendingCalls { held, unanswered }
}

#[test]
fn calls_are_handed_out_per_round_and_unanswered_ones_stop_reading() {
    let mut net = flow_net();
    let (_, furl) = net.publish(0, "calc");
    let r = net.remote(1, &furl);
    let (_, conn) = net.peer_end(1, r.connection()).unwrap();
    net.take(0);
    let calls: Vec<CallId> = (0..40)
        .map(|i| net[1].call(&r, "m", &[Value::int(i)], &[]).unwrap())
        .collect();
    // one write carries all 40; the server hands out 4 per round
    let mut rounds = Vec::new();
    while net.step() {
        let n = net.events(0).count();
        if n > 0 {
            rounds.push(n);
            assert_eq!(net[0].calls_to_answer(), 40);
            let handed: usize = rounds.iter().sum();
            assert_eq!(net[0].pending_calls(conn), pending(40 - handed, handed));
            assert_eq!(net[0].held_calls(), 40 - handed);
            net.take(0);
        }
    }
    assert_eq!(rounds, vec![4; 10]);
    // 40 handed out, none answered: over max_unanswered_calls the server
    // stops reading, and a further call waits in the network
    assert_eq!(net[0].pending_calls(conn), pending(0, 40));
    assert!(!net[0].wants_input(conn));
    let late = net[1].call(&r, "late", &[], &[]).unwrap();
    net.run();
    assert_eq!(net.take(0), vec![]);
    assert!(net.unread_bytes() > 0);
    // answered out of order down to the bound, it reads again
    for &c in calls[..10].iter().rev() {
        let id = IncomingId {
            connection: conn,
            req_id: c.req_id,
        };
        net[0].answer(id, Ok(Value::int(c.req_id as i64))).unwrap();
    }
    assert_eq!(net[0].pending_calls(conn), pending(0, 30));
    assert!(net[0].wants_input(conn));
    net.run();
    let evs = net.take(0);
    assert!(
        matches!(&evs[..], [TubEvent::Call(c)] if c.id.req_id == late.req_id),
        "{evs:?}"
    );
    assert_eq!(net[0].calls_to_answer(), 31);
    let mut answers = net.take_answers(1);
    answers.sort_by_key(|(c, _)| c.req_id);
    let want: Vec<_> = calls[..10]
        .iter()
        .map(|c| (*c, Ok(Value::int(c.req_id as i64))))
        .collect();
    assert_eq!(answers, want);
}

#[test]
fn a_stalled_reader_holds_calls_until_the_backlog_drops() {
    let mut net = flow_net();
    let (_, furl) = net.publish(0, "calc");
    let r = net.remote(1, &furl);
    let (_, conn) = net.peer_end(1, r.connection()).unwrap();
    net.take(0);
    // every answer carries 1,500 bytes: four of them pass the 4 KiB bound
    let answered = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = answered.clone();
    net.respond_with(0, move |c| {
        log.borrow_mut().push(c.args[0].clone());
        Ok(Value::List(vec![
            c.args[0].clone(),
            Value::bytes(&[7; 1500]),
        ]))
    });
    // the client stops reading its answers
    net.set_reading(1, r.connection(), false);
    let calls: Vec<CallId> = (0..40)
        .map(|i| net[1].call(&r, "m", &[Value::int(i)], &[]).unwrap())
        .collect();
    net.run();
    // one round of 4 went out; their answers fill the client's pipe, so
    // the server holds the rest and reads no more
    assert_eq!(answered.borrow().len(), 4);
    assert!(net.backlog(0, conn) > 4096, "{}", net.backlog(0, conn));
    assert!(net.backlog(0, conn) < 4096 + 4 * 1600);
    assert_eq!(net[0].pending_calls(conn), pending(36, 0));
    assert_eq!(net[0].held_calls(), 36);
    assert_eq!(net[0].calls_to_answer(), 36);
    assert!(!net[0].wants_input(conn));
    assert_eq!(net.take_answers(1), vec![]);
    // time changes nothing while the client does not read
    net.advance(10 * SECOND);
    assert_eq!(net[0].pending_calls(conn), pending(36, 0));
    // reading again, the calls go on, never more than 4 per round
    net.set_reading(1, r.connection(), true);
    let mut done = 4;
    while net.step() {
        let now = answered.borrow().len();
        assert!(now - done <= 4, "{done} -> {now}");
        done = now;
    }
    assert_eq!(done, 40);
    let want: Vec<Value> = (0..40).map(Value::int).collect();
    assert_eq!(*answered.borrow(), want, "in order");
    assert_eq!(net[0].pending_calls(conn), pending(0, 0));
    assert_eq!(net[0].calls_to_answer(), 0);
    assert!(net[0].wants_input(conn));
    assert_eq!(net.backlog(0, conn), 0);
    let answers = net.take_answers(1);
    assert_eq!(answers.len(), 40);
    for ((call, result), (i, want)) in answers.iter().zip(calls.iter().enumerate()) {
        assert_eq!(call, want);
        let Ok(Value::List(v)) = result else {
            panic!("{result:?}")
        };
        assert_eq!(v[0], Value::int(i as i64));
    }
}

#[test]
fn many_concurrent_calls_answered_out_of_order() {
    let config = NetConfig {
        seed: 3,
        latency: 10 * MS,
        ..NetConfig::default()
    };
    let mut net = Net::with_config(config, vec![TubConfig::default(); 2], Instant::now());
    let (_, furl) = net.publish(0, "calc");
    let r = net.remote(1, &furl);
    let (_, conn) = net.peer_end(1, r.connection()).unwrap();
    let calls: Vec<CallId> = (0..200)
        .map(|i| net[1].call(&r, "square", &[Value::int(i)], &[]).unwrap())
        .collect();
    net.drive();
    let incoming = net.take_calls(0);
    assert_eq!(incoming.len(), 200);
    let args: Vec<Value> = incoming.iter().map(|c| c.args[0].clone()).collect();
    assert_eq!(
        args,
        (0..200).map(Value::int).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(net[0].pending_calls(conn), pending(0, 200));
    // a deterministic shuffle; every seventh call fails
    let mut order: Vec<usize> = (0..200).collect();
    let mut rng = SeededRng::new(9);
    for i in (1..order.len()).rev() {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        order.swap(i, (u64::from_le_bytes(b) % (i as u64 + 1)) as usize);
    }
    let result = |i: usize| -> Result<Value, Failure> {
        if i.is_multiple_of(7) {
            Err(Failure::new("builtins.ValueError", format!("no {i}")))
        } else {
            Ok(Value::int((i * i) as i64))
        }
    };
    for (n, &i) in order.iter().enumerate() {
        net[0].answer(incoming[i].id, result(i)).unwrap();
        assert_eq!(net[0].calls_to_answer(), 199 - n);
        // answers go out in small groups, interleaved with the network
        if n % 16 == 15 {
            net.step();
        }
    }
    net.drive();
    let answers = net.take_answers(1);
    let got: Vec<CallId> = answers.iter().map(|(c, _)| *c).collect();
    let want: Vec<CallId> = order.iter().map(|&i| calls[i]).collect();
    assert_eq!(got, want, "answers arrive in the order given");
    for ((call, got), &i) in answers.iter().zip(&order) {
        assert_eq!(*call, calls[i]);
        match (got, result(i)) {
            (Err(CallError::Remote(f)), Err(want)) => {
                assert_eq!((&f.type_name, &f.value), (&want.type_name, &want.value))
            }
            (got, want) => assert_eq!(got.clone().ok(), want.ok(), "call {i}"),
        }
    }
    assert_eq!(net[0].pending_calls(conn), pending(0, 0));
}

#[test]
fn a_third_tub_follows_a_furl_passed_along() {
    let mut net = Net::new(2, Instant::now());
    let third = net.add_tub(TubConfig::default());
    assert_eq!((net.len(), third), (3, 2));
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, echo);
    let (_, inbox) = net.publish(2, "inbox");
    let calc = net.remote(1, &furl);
    let to_third = net.remote(1, &inbox);
    assert_ne!(calc.connection(), to_third.connection());
    // (a live reference would go as a gift, gift_tests.rs); its FURL
    // can go as bytes
    let text = calc.furl().expect("sent with a FURL").clone();
    net[1]
        .call_only(&to_third, "take", &[Value::Bytes(text)], &[])
        .unwrap();
    net.run();
    let [call] = &net.take_calls(2)[..] else {
        panic!("one call")
    };
    let Value::Bytes(text) = &call.args[0] else {
        panic!("{:?}", call.args)
    };
    let passed = Furl::parse(std::str::from_utf8(text).unwrap()).unwrap();
    assert_eq!(passed, furl);
    let from_third = net.remote(2, &passed);
    let c = net[2]
        .call(&from_third, "add", &[Value::int(2)], &[])
        .unwrap();
    let want = Value::List(vec![Value::str("add"), Value::List(vec![Value::int(2)])]);
    assert_eq!(net.answer_of(2, c), Ok(want.clone()));
    // three connections, tub 0 serving two of them
    assert_eq!(net.sockets(), 3);
    let (a, b) = (net.connection(0, 1).unwrap(), net.connection(0, 2).unwrap());
    assert_ne!(a, b);
    assert_eq!(net.connection(1, 2), Some(to_third.connection()));
    // one of them ends, the others go on
    net[0].disconnect(a);
    net.run();
    assert!(!net[1].is_connected(calc.connection()));
    assert!(net[1].is_connected(to_third.connection()));
    let c = net[2]
        .call(&from_third, "add", &[Value::int(2)], &[])
        .unwrap();
    assert_eq!(net.answer_of(2, c), Ok(want));
    assert_eq!(net.sockets(), 2);
}

#[test]
fn answering_a_call_twice_leaves_the_counts_alone() {
    let mut net = flow_net();
    let (_, furl) = net.publish(0, "calc");
    let r = net.remote(1, &furl);
    let (_, conn) = net.peer_end(1, r.connection()).unwrap();
    net[1].call(&r, "a", &[], &[]).unwrap();
    net[1].call(&r, "b", &[], &[]).unwrap();
    net.run();
    let calls = net.take_calls(0);
    assert_eq!(net[0].pending_calls(conn), pending(0, 2));
    net[0].answer(calls[0].id, Ok(Value::None)).unwrap();
    assert_eq!(
        net[0].answer(calls[0].id, Ok(Value::None)),
        Err(TubError::Broker(BrokerError::UnknownRequest(
            calls[0].id.req_id
        )))
    );
    let f = Failure::new("builtins.ValueError", "again");
    assert!(net[0].answer(calls[0].id, Err(f)).is_err());
    let bogus = IncomingId {
        connection: conn,
        req_id: 99,
    };
    assert!(net[0].answer(bogus, Ok(Value::None)).is_err());
    assert_eq!(net[0].pending_calls(conn), pending(0, 1));
    assert_eq!(net[0].calls_to_answer(), 1);
}

#[test]
fn calls_held_on_a_connection_that_ends_are_dropped() {
    let mut net = flow_net();
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, |_| Ok(Value::bytes(&[7; 1500])));
    let r = net.remote(1, &furl);
    let (_, conn) = net.peer_end(1, r.connection()).unwrap();
    net.set_reading(1, r.connection(), false);
    for i in 0..40 {
        net[1].call(&r, "m", &[Value::int(i)], &[]).unwrap();
    }
    net.run();
    net.take(0);
    assert_eq!(net[0].pending_calls(conn), pending(36, 0));
    // the connection ends; a driver that asks for events before bytes
    // must not be handed the held calls of a dead connection
    let now = net.now();
    net[0].handle_eof(conn, now);
    // its socket is gone: nothing is left unsent
    net[0].set_backlog(conn, 0);
    let evs: Vec<TubEvent> = std::iter::from_fn(|| net[0].poll_event()).collect();
    assert!(
        matches!(&evs[..], [TubEvent::Disconnected { connection, .. }] if *connection == conn),
        "{evs:?}"
    );
    assert_eq!(net[0].pending_calls(conn), pending(0, 0));
    assert_eq!(net[0].held_calls(), 0);
    assert_eq!(net[0].calls_to_answer(), 0);
}

// ---- the inbound memory budget ----

/// The start of a call whose one argument is a list, never closed.
fn unfinished_call(req_id: u64) -> Vec<u8> {
    use crate::banana::encode::{put_string, put_token_header};
    use crate::banana::TypeByte;
    let mut b = bytes::BytesMut::new();
    put_token_header(&mut b, 1_000_000, TypeByte::Open);
    put_string(&mut b, b"call");
    put_token_header(&mut b, req_id, TypeByte::Int);
    put_token_header(&mut b, 1, TypeByte::Int);
    put_string(&mut b, b"m");
    put_token_header(&mut b, 1_000_001, TypeByte::Open);
    put_string(&mut b, b"arguments");
    put_token_header(&mut b, 1, TypeByte::Int);
    put_token_header(&mut b, 1_000_002, TypeByte::Open);
    put_string(&mut b, b"list");
    b.to_vec()
}

/// `n` empty byte strings (two bytes each on the wire, 42 bytes of
/// budget: a `Value` each; ints would be held packed, 8 bytes each).
fn items(n: usize) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    crate::banana::encode::put_string(&mut b, b"");
    assert_eq!(b.len(), 2);
    b.repeat(n)
}

fn budget_net(attackers: usize) -> (Net, Furl, Vec<(usize, ConnectionId)>) {
    let server = TubConfig {
        max_inbound_bytes: 200_000,
        max_connection_inbound_bytes: 150_000,
        ..TubConfig::default()
    };
    let config = NetConfig {
        clear: true,
        split: false,
        ..NetConfig::default()
    };
    // the attackers, then one more Tub for ordinary calls
    let tubs = vec![TubConfig::default(); attackers + 1];
    let mut net = Net::with_config(config, [vec![server], tubs].concat(), Instant::now());
    let (_, furl) = net.publish(0, "calc");
    net.respond_with(0, |c| Ok(Value::int(c.args.len() as i64)));
    let ends = (1..=attackers)
        .map(|t| {
            let r = net.remote(t, &furl);
            let (_, server_end) = net.peer_end(t, r.connection()).unwrap();
            net.inject(t, r.connection(), &unfinished_call(99));
            (t, server_end)
        })
        .collect();
    net.run();
    (net, furl, ends)
}

fn dropped_for(net: &mut Net, conn: ConnectionId) -> Option<ProtocolError> {
    net.take(0).into_iter().find_map(|e| match e {
        TubEvent::Disconnected {
            connection,
            reason: CloseReason::Protocol(p),
            ..
        } if connection == conn => Some(p),
        _ => None,
    })
}

#[test]
fn over_the_inbound_budget_the_largest_messages_pause_then_the_largest_is_dropped() {
    // tubs 1-3 send unfinished calls, tub 4 makes ordinary calls
    let (mut net, furl, ends) = budget_net(3);
    let [(ta, a), (tb, b), (tc, c)] = ends[..] else {
        unreachable!()
    };
    let client_a = net.peer_end(0, a).unwrap().1;
    let client_b = net.peer_end(0, b).unwrap().1;
    let client_c = net.peer_end(0, c).unwrap().1;
    let legit = net.remote(4, &furl);
    let legit_end = net.peer_end(4, legit.connection()).unwrap().1;
    net.take(0);
    for (t, conn, n) in [
        (ta, client_a, 2000),
        (tb, client_b, 1600),
        (tc, client_c, 1000),
    ] {
        net.inject(t, conn, &items(n));
    }
    net.run();
    // 4,600 items of 42 bytes (plus the calls' heads): under 200,000
    let held = net[0].inbound_bytes();
    assert!((4600 * 42..4600 * 42 + 1000).contains(&held), "{held}");
    assert!([a, b, c].iter().all(|&x| net[0].wants_input(x)));
    let call = net[4].call(&legit, "m", &[Value::int(1)], &[]).unwrap();
    assert_eq!(net.answer_of(4, call), Ok(Value::int(1)));
    // over the budget: the largest running one pauses at each input
    net.inject(tc, client_c, &items(500));
    net.run();
    assert!(net[0].inbound_bytes() > 200_000);
    assert!(!net[0].wants_input(a));
    assert!(net[0].wants_input(b) && net[0].wants_input(c));
    // a paused connection's bytes wait
    net.inject(ta, client_a, &items(10));
    net.run();
    assert!(net.unread_bytes() > 0);
    net.inject(tc, client_c, &items(1));
    net.run();
    assert!(!net[0].wants_input(b));
    assert!(net[0].wants_input(c));
    net.inject(tc, client_c, &items(1));
    net.run();
    assert!(!net[0].wants_input(c));
    assert!(net[0].wants_input(legit_end), "nothing in progress");
    // every message in progress is paused and the budget still exceeded:
    // the next input drops the largest, and only it; the legitimate
    // call is answered
    assert_eq!(dropped_for(&mut net, a), None);
    let call = net[4]
        .call(&legit, "m", &[Value::int(1), Value::int(2)], &[])
        .unwrap();
    assert_eq!(net.answer_of(4, call), Ok(Value::int(2)));
    let e = dropped_for(&mut net, a).expect("a dropped");
    let ProtocolError::TubInboundBudget { held, limit } = e else {
        panic!("{e:?}")
    };
    assert_eq!(limit, 200_000);
    assert!(held > 2000 * 42, "{held}");
    assert!(!net[0].is_connected(a));
    assert!(net[0].is_connected(b) && net[0].is_connected(c));
    assert!(net[0].inbound_bytes() < 200_000);
    assert!([b, c].iter().all(|&x| net[0].wants_input(x)));
    // the dropped peer heard an ERROR token
    let client_saw = net.take(ta).into_iter().find_map(|e| match e {
        TubEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    });
    assert!(
        matches!(&client_saw, Some(CloseReason::PeerError(text)) if text.starts_with(b"exception while processing data")),
        "{client_saw:?}"
    );
    // one message over the per-connection budget is dropped at once
    net.inject(tb, client_b, &items(2500));
    net.run();
    let e = dropped_for(&mut net, b).expect("b dropped");
    assert!(
        matches!(e, ProtocolError::ConnectionInboundBudget { held, limit: 150_000 } if held > 150_000),
        "{e:?}"
    );
    assert!(net[0].is_connected(c));
    let call = net[4].call(&legit, "m", &[], &[]).unwrap();
    assert_eq!(net.answer_of(4, call), Ok(Value::int(0)));
    // a connection that goes away counts no more
    assert!(net[0].inbound_bytes() > 1500 * 42);
    net[tc].disconnect(client_c);
    net.run();
    assert!(!net[0].is_connected(c));
    assert_eq!(net[0].inbound_bytes(), 0);
}

/// A large message's buffer stays with a busy connection for the next
/// one, and is given back once the connection has been idle for
/// `IDLE_RELEASE`.
#[test]
fn a_large_answer_buffer_is_kept_while_busy_and_released_when_idle() {
    let mut net = Net::new(2, Instant::now());
    let obj = net[0].new_object("");
    let furl = net[0].register(obj, Some("echo")).unwrap();
    let Ok(Value::Remote(r)) = net.reference(1, &furl) else {
        panic!("no reference")
    };
    let big = Value::bytes(&vec![b'x'; 1 << 20]);
    let conn = net.connection(0, 1).expect("connected");
    for _ in 0..2 {
        let call = net[1]
            .call(&r, "echo", std::slice::from_ref(&big), &[])
            .unwrap();
        net.run();
        net.answer_calls(0, |c| Ok(c.args[0].clone()));
        net.run();
        assert_eq!(net.answer_of(1, call), Ok(big.clone()));
        // the answer's buffer is kept for the next large message
        assert!(net[0].output_capacity(conn) >= 1 << 20);
    }
    net.advance(IDLE_RELEASE / 2);
    assert!(net[0].output_capacity(conn) >= 1 << 20);
    net.advance(IDLE_RELEASE);
    assert!(net[0].output_capacity(conn) <= crate::broker::Broker::HAND_OVER);
}

/// Takes Tub `tub`'s name lookups, leaving its other events.
fn take_name_lookups(net: &mut Net, tub: usize) -> Vec<NameLookup> {
    net.take(tub)
        .into_iter()
        .filter_map(|e| match e {
            TubEvent::NameLookup(l) => Some(l),
            _ => None,
        })
        .collect()
}

/// Tub 1 looks `name` up at tub 0 (which has the hook on) and tub 0
/// answers the one name lookup it gets with `answer`.
fn looked_up(
    net: &mut Net,
    name: &str,
    answer: impl FnOnce(&mut Tub) -> Result<Option<ObjectId>, Failure>,
) -> Result<Value, TubError> {
    let anchor = net[0].new_object("");
    let base = net[0].register(anchor, None).unwrap();
    let furl = Furl::new(base.tubid, base.hints.clone(), name);
    let lookup = net[1].get_reference(&furl);
    net.run();
    let lookups = take_name_lookups(net, 0);
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!(lookups[0].name, name);
    // the lookup waits for the application as a call does
    let conn = lookups[0].connection;
    assert_eq!(net[0].pending_calls(conn).unanswered, 1);
    let result = answer(&mut net[0]);
    net[0].answer_name_lookup(lookups[0].id, result).unwrap();
    assert_eq!(net[0].pending_calls(conn).unanswered, 0);
    assert_eq!(
        net[0].answer_name_lookup(lookups[0].id, Ok(None)),
        Err(TubError::UnknownLookup)
    );
    net.run();
    match net.take_event(
        1,
        |e| matches!(e, TubEvent::Reference { lookup: l, .. } if *l == lookup),
    ) {
        Some(TubEvent::Reference { result, .. }) => result,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_name_lookup_hook_answers_names_nobody_registered() {
    let mut net = Net::new(2, Instant::now());
    net[0].set_name_lookup(true);
    // registered names come first and never reach the hook
    let (_, calc) = net.publish(0, "calc");
    assert!(matches!(net.reference(1, &calc), Ok(Value::Remote(_))));
    assert!(take_name_lookups(&mut net, 0).is_empty());
    // an object the hook returns is answered as a registered one would be
    let mut made = None;
    let r = looked_up(&mut net, "dynamic", |t| {
        let o = t.new_object("");
        made = Some(o);
        Ok(Some(o))
    });
    let Ok(Value::Remote(r)) = r else {
        panic!("{r:?}")
    };
    let made = made.unwrap();
    // its FURL is the name it was found under (Python records it so)
    let text = String::from_utf8(r.furl().expect("a FURL").to_vec()).unwrap();
    assert_eq!(Furl::parse(&text).unwrap().swissnum, "dynamic");
    // calls reach it while the peer holds it
    net[1].call(&r, "m", &[], &[]).unwrap();
    net.run();
    let calls = net.take_calls(0);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].object, made);
    net[0].answer(calls[0].id, Ok(Value::None)).unwrap();
    net.run();
    // not registered under the name: the next lookup asks the hook again
    // (and so does the peer's lookup of the same FURL once released)
    drop(r);
    net.advance(Duration::from_secs(2));
    assert!(net.take(0).contains(&TubEvent::ObjectUnused(made)));
    let again = looked_up(&mut net, "dynamic", |t| Ok(Some(t.new_object(""))));
    assert!(matches!(again, Ok(Value::Remote(_))), "{again:?}");
}

#[test]
fn a_name_lookup_hook_that_finds_nothing_or_fails_fails_the_lookup_as_python() {
    let mut net = Net::new(2, Instant::now());
    net[0].set_name_lookup(true);
    match looked_up(&mut net, "nothing", |_| Ok(None)) {
        Err(TubError::Lookup(CallError::Remote(f))) => {
            assert_eq!(f.type_name, "builtins.KeyError");
            assert_eq!(
                f.value,
                "\"unable to find reference for name starting with 'no'\""
            );
        }
        other => panic!("{other:?}"),
    }
    let broken = Failure::new("foolscap.appserver.services.UnknownServiceType", "'nope'");
    match looked_up(&mut net, "broken", |_| Err(broken.clone())) {
        Err(TubError::Lookup(CallError::Remote(f))) => {
            assert_eq!((f.type_name, f.value), (broken.type_name, broken.value));
        }
        other => panic!("{other:?}"),
    }
    // the connection goes on
    serve(&mut net);
    let (_, calc) = net.publish(0, "calc2");
    assert!(matches!(net.reference(1, &calc), Ok(Value::Remote(_))));
}

#[test]
fn without_the_name_lookup_hook_unknown_names_fail_at_once() {
    let mut net = Net::new(2, Instant::now());
    let (_, calc) = net.publish(0, "calc");
    let wrong = Furl::new(calc.tubid, calc.hints.clone(), "nope");
    assert!(matches!(
        net.reference(1, &wrong),
        Err(TubError::Lookup(CallError::Remote(_)))
    ));
    assert!(take_name_lookups(&mut net, 0).is_empty());
    // a lookup whose connection closed before its answer is dropped
    net[0].set_name_lookup(true);
    net[1].get_reference(&wrong);
    net.run();
    let lookups = take_name_lookups(&mut net, 0);
    assert_eq!(lookups.len(), 1);
    net[0].disconnect(lookups[0].connection);
    net.run();
    let o = net[0].new_object("");
    net[0]
        .answer_name_lookup(lookups[0].id, Ok(Some(o)))
        .unwrap();
    net.run();
    assert!(net.take(0).contains(&TubEvent::ObjectUnused(o)));
}
