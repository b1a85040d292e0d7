//! Both roles against each other in memory, and every refusal path.

use super::*;
use crate::banana::VocabTable;
use crate::identity::Identity;
use crate::rng::SeededRng;

const HIGH: &str = include_str!("../../../tests/data/tub-high.pem");
const MID: &str = include_str!("../../../tests/data/tub-mid.pem");
const LOW: &str = include_str!("../../../tests/data/tub-low.pem");

fn id(pem: &str) -> Identity {
    Identity::from_cert_file(pem).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One side of an in-memory connection.
enum State {
    Negotiating(Negotiation),
    Established(Box<Session>),
    Failed(Negotiation, NegotiationError),
}

struct End {
    state: State,
    table: ConnectionTable,
    /// everything this side transmitted
    sent: Vec<u8>,
}

impl End {
    fn client(tls: &TlsContext, mut table: ConnectionTable, target: TubId, now: Instant) -> End {
        let n = Negotiation::client(
            tls,
            &mut table,
            target,
            "127.0.0.1",
            &NegotiationConfig::default(),
            now,
        );
        End {
            state: State::Negotiating(n),
            table,
            sent: Vec::new(),
        }
    }

    fn server(tls: &TlsContext, mut table: ConnectionTable, now: Instant) -> End {
        let n = Negotiation::server(tls, &mut table, &NegotiationConfig::default(), now);
        End {
            state: State::Negotiating(n),
            table,
            sent: Vec::new(),
        }
    }

    fn transmit(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        match &mut self.state {
            State::Negotiating(n) | State::Failed(n, _) => n.poll_transmit(&mut buf),
            State::Established(s) => s.poll_transmit(&mut buf),
        };
        self.sent.extend_from_slice(&buf);
        buf
    }

    fn receive(&mut self, data: &[u8], now: Instant) {
        match &mut self.state {
            State::Negotiating(n) => n.handle_input(now, data, &mut self.table),
            State::Established(s) => {
                let _ = s.handle_input(data);
            }
            State::Failed(..) => {}
        }
        self.settle();
    }

    fn settle(&mut self) {
        if let State::Negotiating(n) = &mut self.state {
            match n.poll_event() {
                Some(NegotiationEvent::Established(s)) => self.state = State::Established(s),
                Some(NegotiationEvent::Failed(e)) => {
                    let State::Negotiating(n) =
                        std::mem::replace(&mut self.state, State::Established(dummy()))
                    else {
                        unreachable!()
                    };
                    self.state = State::Failed(n, e);
                }
                None => {}
            }
        }
    }

    fn session(&mut self) -> &mut Session {
        match &mut self.state {
            State::Established(s) => s,
            State::Failed(_, e) => panic!("failed: {e}"),
            State::Negotiating(_) => panic!("still negotiating"),
        }
    }

    fn error(&self) -> &NegotiationError {
        match &self.state {
            State::Failed(_, e) => e,
            _ => panic!("did not fail"),
        }
    }
}

/// A placeholder never observed (only held during a state swap).
fn dummy() -> Box<Session> {
    let tls = TlsContext::new(&id(LOW)).unwrap();
    let info = SessionInfo {
        connection_id: ConnectionId(0),
        is_client: false,
        i_am_master: false,
        my_tubid: tls.tubid(),
        peer_tubid: tls.tubid(),
        peer_incarnation: None,
        banana_version: 3,
        vocab: VocabTable::EMPTY,
        current_connection: None,
        replaced: None,
    };
    Box::new(Session::new(
        rustls::Connection::from(tls.server().unwrap()),
        info,
        BytesMut::new(),
        Vec::new(),
    ))
}

/// Shuttles bytes both ways until nothing moves; `tamper` may rewrite the
/// client's bytes on their way.
fn run_with(c: &mut End, s: &mut End, now: Instant, mut tamper: impl FnMut(Vec<u8>) -> Vec<u8>) {
    for _ in 0..100 {
        let a = tamper(c.transmit());
        let b = s.transmit();
        if a.is_empty() && b.is_empty() {
            return;
        }
        s.receive(&a, now);
        c.receive(&b, now);
    }
    panic!("no quiescence");
}

fn run(c: &mut End, s: &mut End, now: Instant) {
    run_with(c, s, now, |b| b)
}

fn table(seed: u64) -> ConnectionTable {
    ConnectionTable::new(&mut SeededRng::new(seed))
}

fn connect(client: &Identity, server: &Identity, options: TlsOptions) -> (End, End) {
    let now = Instant::now();
    let ctls = TlsContext::with_options(client, options).unwrap();
    let stls = TlsContext::new(server).unwrap();
    let mut c = End::client(&ctls, table(1), server.tubid(), now);
    let mut s = End::server(&stls, table(2), now);
    run(&mut c, &mut s, now);
    (c, s)
}

#[test]
fn both_roles_establish_and_exchange_plaintext() {
    let generated = Identity::generate().unwrap();
    let tls12 = TlsOptions {
        tls12: true,
        tls13: false,
    };
    for (client, server, options) in [
        (id(LOW), id(HIGH), TlsOptions::default()), // server is master
        (id(HIGH), id(LOW), TlsOptions::default()), // client is master
        (generated.clone(), id(MID), TlsOptions::default()),
        (id(MID), generated.clone(), TlsOptions::default()),
        (id(LOW), id(HIGH), tls12), // TLS 1.2 with v1 RSA certificates
        (generated.clone(), id(MID), tls12),
        (id(MID), generated.clone(), tls12),
    ] {
        let (mut c, mut s) = connect(&client, &server, options);
        let want = if options.tls13 {
            rustls::ProtocolVersion::TLSv1_3
        } else {
            rustls::ProtocolVersion::TLSv1_2
        };
        let client_master = client.tubid() > server.tubid();
        for (end, me, peer, is_client) in [
            (&mut c, &client, &server, true),
            (&mut s, &server, &client, false),
        ] {
            let session = end.session();
            assert_eq!(session.tls_version(), Some(want));
            let info = session.info().clone();
            assert_eq!(info.my_tubid, me.tubid());
            assert_eq!(info.peer_tubid, peer.tubid());
            assert_eq!(info.is_client, is_client);
            assert_eq!(info.i_am_master, is_client == client_master);
            assert_eq!(
                (info.banana_version, info.vocab, info.replaced),
                (3, VocabTable::V1, None)
            );
            assert!(info.current_connection.is_some());
            assert_eq!(
                end.table.live(&peer.tubid()).map(|l| l.id),
                Some(info.connection_id)
            );
        }
        assert_eq!(
            c.session().info().current_connection,
            s.session().info().current_connection
        );
        c.session().write_plaintext(b"\x00\x88from the client");
        s.session().write_plaintext(b"from the server");
        run(&mut c, &mut s, Instant::now());
        assert_eq!(
            &s.session().poll_plaintext().unwrap()[..],
            b"\x00\x88from the client"
        );
        assert_eq!(
            &c.session().poll_plaintext().unwrap()[..],
            b"from the server"
        );
        assert_eq!(c.session().poll_plaintext(), None);
        c.session().close();
        run(&mut c, &mut s, Instant::now());
        assert!(s.session().peer_closed());
    }
}

#[test]
fn plaintext_on_the_wire_is_pythons() {
    let (c, s) = connect(&id(LOW), &id(HIGH), TlsOptions::default());
    let high = id(HIGH).tubid();
    let request = format!(
        "GET /id/{high} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
    );
    assert!(c.sent.starts_with(request.as_bytes()));
    assert_eq!(c.sent[request.len()], 0x16, "then a TLS handshake record");
    assert!(s.sent.starts_with(plaintext::SWITCHING_PROTOCOLS));
    assert_eq!(s.sent[plaintext::SWITCHING_PROTOCOLS.len()], 0x16);
}

#[test]
fn bytes_glued_to_the_decision_reach_the_session_first() {
    // the server (high) is master: it writes banana right behind its
    // decision, and the client gets both in one read
    let now = Instant::now();
    let (high, low) = (id(HIGH), id(LOW));
    let mut c = End::client(&TlsContext::new(&low).unwrap(), table(1), high.tubid(), now);
    let mut s = End::server(&TlsContext::new(&high).unwrap(), table(2), now);
    for _ in 0..20 {
        let a = c.transmit();
        s.receive(&a, now);
        if let State::Established(session) = &mut s.state {
            session.write_plaintext(b"first banana bytes");
        }
        let b = s.transmit();
        c.receive(&b, now);
        if matches!(c.state, State::Established(_)) {
            break;
        }
    }
    let info = c.session().info().clone();
    assert!(!info.i_am_master);
    assert_eq!(
        &c.session().poll_plaintext().unwrap()[..],
        b"first banana bytes"
    );
}

#[test]
fn a_certificate_that_is_not_the_furls_is_refused_naming_both_tubids() {
    // a man in the middle rewrites the request for high into one for mid,
    // and mid's server answers: the client must refuse mid's certificate
    let now = Instant::now();
    let (high, mid, low) = (id(HIGH), id(MID), id(LOW));
    let mut c = End::client(&TlsContext::new(&low).unwrap(), table(1), high.tubid(), now);
    let mut s = End::server(&TlsContext::new(&mid).unwrap(), table(2), now);
    let (h, m) = (high.tubid().to_string(), mid.tubid().to_string());
    run_with(&mut c, &mut s, now, |bytes| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if text.starts_with("GET ") {
            text.replace(&h, &m).into_bytes()
        } else {
            bytes
        }
    });
    let e = c.error().clone();
    assert_eq!(
        e,
        NegotiationError::WrongTub {
            expected: high.tubid(),
            actual: mid.tubid()
        }
    );
    assert!(
        e.to_string().contains(&h) && e.to_string().contains(&m),
        "{e}"
    );
    assert!(
        matches!(s.error(), NegotiationError::Tls(_)),
        "the client sent an alert"
    );
    assert!(s.table.live(&low.tubid()).is_none());
}

#[test]
fn handshake_signatures_are_checked_with_the_certificates_key() {
    // an impostor presents high's certificate but holds mid's key
    for options in [
        TlsOptions::default(),
        TlsOptions {
            tls12: true,
            tls13: false,
        },
    ] {
        let (high, mid, low) = (id(HIGH), id(MID), id(LOW));
        let impostor = Identity::impostor(&high, &mid);
        let now = Instant::now();
        let mut c = End::client(
            &TlsContext::with_options(&low, options).unwrap(),
            table(1),
            high.tubid(),
            now,
        );
        let mut s = End::server(&TlsContext::new(&impostor).unwrap(), table(2), now);
        run(&mut c, &mut s, now);
        assert!(
            matches!(
                c.error(),
                NegotiationError::Tls(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::BadSignature
                ))
            ),
            "{:?}",
            c.error()
        );
        // and the same for a client impostor, checked by the server
        let mut c = End::client(
            &TlsContext::with_options(&impostor, options).unwrap(),
            table(1),
            low.tubid(),
            now,
        );
        let mut s = End::server(&TlsContext::new(&low).unwrap(), table(2), now);
        run(&mut c, &mut s, now);
        assert!(
            matches!(
                s.error(),
                NegotiationError::Tls(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::BadSignature
                ))
            ),
            "{:?}",
            s.error()
        );
    }
}

#[test]
fn unknown_tubid_is_refused_and_understood() {
    let now = Instant::now();
    let (high, low) = (id(HIGH), id(LOW));
    let mut c = End::client(
        &TlsContext::new(&high).unwrap(),
        table(1),
        high.tubid(),
        now,
    );
    let mut s = End::server(&TlsContext::new(&low).unwrap(), table(2), now);
    run(&mut c, &mut s, now);
    let reply = format!(
        "HTTP/1.1 500 Internal Server Error: unknown TubID {}\r\n\r\n",
        high.tubid()
    );
    assert_eq!(s.sent, reply.as_bytes());
    assert_eq!(
        s.error(),
        &NegotiationError::Plaintext(PlaintextError::UnknownTubId {
            requested: high.tubid().to_string()
        })
    );
    match c.error() {
        NegotiationError::Plaintext(PlaintextError::Refused { refusal, .. }) => {
            assert_eq!(refusal, &Refusal::UnknownTubId(high.tubid().to_string()))
        }
        e => panic!("{e:?}"),
    }
    // Python's client quirk: it answers a bad response with an error
    // block, in plaintext
    assert!(c.sent.ends_with(
        b"banana-decision-version: 1\r\nerror: internal server error, see logs\r\n\r\n"
    ));
}

fn server_reply(input: &[u8]) -> (Vec<u8>, NegotiationError) {
    let now = Instant::now();
    let mut s = End::server(&TlsContext::new(&id(LOW)).unwrap(), table(2), now);
    s.receive(input, now);
    let sent = s.transmit();
    (sent, s.error().clone())
}

#[test]
fn server_refusals_are_pythons_replies() {
    let low = id(LOW).tubid();
    let refusal = |t: &str| format!("HTTP/1.1 500 Internal Server Error: {t}\r\n\r\n").into_bytes();
    let internal = refusal("internal server error, see logs");
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            internal.clone(),
        ),
        (
            b"GET /id/ HTTP/1.1\r\nUpgrade: TLS/1.0\r\n\r\n".to_vec(),
            refusal("secure Tubs require encryption"),
        ),
        (b"HELLO\r\n\r\n".to_vec(), internal.clone()),
        (vec![b'x'; 4097], internal.clone()),
        (
            format!("GET /id/{low} HTTP/1.1\r\n\r\n\x16\x03\x01").into_bytes(),
            internal.clone(),
        ),
    ];
    for (input, want) in cases {
        let (sent, e) = server_reply(&input);
        assert_eq!(sent, want, "{e}");
    }
    let (_, e) = server_reply(&[b'x'; 5000]);
    assert_eq!(
        e,
        NegotiationError::Plaintext(PlaintextError::TooLong(plaintext::HeaderTooLong {
            limit: 4096
        }))
    );
    let (_, e) = server_reply(format!("GET /id/{low} HTTP/1.1\r\n\r\nxyz").as_bytes());
    assert_eq!(
        e,
        NegotiationError::Plaintext(PlaintextError::EarlyData { len: 3 })
    );
    // a request split into single bytes is fine
    let now = Instant::now();
    let mut s = End::server(&TlsContext::new(&id(LOW)).unwrap(), table(2), now);
    for b in format!("GET /id/{low} HTTP/1.1\r\nHost: h\r\n\r\n").bytes() {
        s.receive(&[b], now);
    }
    assert_eq!(s.transmit(), plaintext::SWITCHING_PROTOCOLS);
    assert!(matches!(s.state, State::Negotiating(_)));
}

#[test]
fn client_refusals_of_bad_responses() {
    for (response, check) in [
        (&b"HTTP/1.1 404 Not Found\r\n\r\n"[..], "Refused"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: PB/1.0\r\n\r\n",
            "NoUpgrade",
        ),
        (b"HTTP/1.1\r\n\r\n", "BadResponse"),
    ] {
        let now = Instant::now();
        let mut c = End::client(
            &TlsContext::new(&id(LOW)).unwrap(),
            table(1),
            id(HIGH).tubid(),
            now,
        );
        c.transmit();
        c.receive(response, now);
        let e = format!("{:?}", c.error());
        assert!(e.contains(check), "{e}");
    }
}

#[test]
fn timeout_and_eof() {
    let now = Instant::now();
    let tls = TlsContext::new(&id(LOW)).unwrap();
    let mut t = table(1);
    let mut n = Negotiation::client(
        &tls,
        &mut t,
        id(HIGH).tubid(),
        "h",
        &NegotiationConfig::default(),
        now,
    );
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(120)));
    let mut out = Vec::new();
    n.poll_transmit(&mut out);
    n.handle_timeout(now + Duration::from_secs(119));
    assert!(n.poll_event().is_none());
    n.handle_timeout(now + Duration::from_secs(120));
    assert!(matches!(
        n.poll_event(),
        Some(NegotiationEvent::Failed(NegotiationError::Timeout))
    ));
    assert_eq!(
        n.poll_transmit(&mut Vec::new()),
        0,
        "nothing is sent on timeout"
    );
    assert_eq!(n.poll_timeout(), None);
    assert!(n.is_finished());

    // input after the deadline also times out
    let mut s = Negotiation::server(&tls, &mut t, &NegotiationConfig::default(), now);
    s.handle_input(now + Duration::from_secs(121), b"GET", &mut t);
    assert!(matches!(
        s.poll_event(),
        Some(NegotiationEvent::Failed(NegotiationError::Timeout))
    ));

    let mut s = Negotiation::server(&tls, &mut t, &NegotiationConfig::default(), now);
    s.handle_eof();
    assert!(matches!(
        s.poll_event(),
        Some(NegotiationEvent::Failed(NegotiationError::Closed))
    ));
}

#[test]
fn duplicate_connections_follow_the_masters_rules() {
    // server high is master; the client Tub low connects twice
    let now = Instant::now();
    let (high, low) = (id(HIGH), id(LOW));
    let (ctls, stls) = (
        TlsContext::new(&low).unwrap(),
        TlsContext::new(&high).unwrap(),
    );
    let mut server_table = table(2);
    let mut client_table = table(1);
    let mut conns = Vec::new();
    for _ in 0..2 {
        let mut c = End::client(&ctls, client_table, high.tubid(), now);
        let mut s = End::server(&stls, server_table, now);
        run(&mut c, &mut s, now);
        conns.push((c.session().info().clone(), s.session().info().clone()));
        (client_table, server_table) = (c.table, s.table);
    }
    let (c1, s1) = &conns[0];
    let (c2, s2) = &conns[1];
    let ir = server_table.incarnation().to_string();
    assert_eq!(s1.current_connection.as_deref(), Some(&*format!("{ir} 1")));
    // the reconnect knew seqnum 1 (rule 5): accepted, replacing the first
    assert_eq!(s2.current_connection.as_deref(), Some(&*format!("{ir} 2")));
    assert_eq!(s2.replaced, Some(s1.connection_id));
    assert_eq!(
        c2.replaced,
        Some(c1.connection_id),
        "the non-master drops its old one too"
    );
    assert_eq!(
        client_table.last_connection(&high.tubid()),
        format!("{ir} 2")
    );

    // a second Tub instance with the same incarnation that remembers
    // nothing: refused (rule 3); error block to the client
    let mut c = End::client(&ctls, table(1), high.tubid(), now);
    let mut s = End::server(&stls, server_table, now);
    run(&mut c, &mut s, now);
    assert_eq!(
        s.error(),
        &NegotiationError::Duplicate { peer: low.tubid() }
    );
    assert_eq!(
        c.error(),
        &NegotiationError::Remote {
            message: "Duplicate connection".into()
        }
    );
    assert!(c.error().is_duplicate_connection());
    assert_eq!(s.table.live(&low.tubid()).unwrap().id, s2.connection_id);

    // a restarted client Tub (new incarnation): accepted (rule 2)
    let mut c = End::client(&ctls, table(99), high.tubid(), now);
    let mut s2nd = End::server(&stls, s.table, now);
    run(&mut c, &mut s2nd, now);
    assert_eq!(s2nd.session().info().replaced, Some(s2.connection_id));
}

/// Server hello and decision of transcript 01-add (tub-high, master).
const T01_SERVER: &str = "62616e616e612d6e65676f74696174696f6e2d72616e67653a203320330d0a696e697469616c2d766f6361622d7461626c652d72616e67653a203020310d0a6d792d696e6361726e6174696f6e3a20633838613162393339313764663032660d0a6d792d7475622d69643a207666627a7534627872786b6e6e79347a7936367a6a6364737a6b357763346b350d0a0d0a62616e616e612d6465636973696f6e2d76657273696f6e3a20330d0a63757272656e742d636f6e6e656374696f6e3a206338386131623933393137646630326620310d0a696e697469616c2d766f6361622d7461626c652d696e6465783a203120626233330d0a0d0a";
/// Client hello of transcript 01-add (tub-low).
const T01_CLIENT: &str = "62616e616e612d6e65676f74696174696f6e2d72616e67653a203320330d0a696e697469616c2d766f6361622d7461626c652d72616e67653a203020310d0a6c6173742d636f6e6e656374696f6e3a206e6f6e6520300d0a6d792d696e6361726e6174696f6e3a20353736316135383062323966636139610d0a6d792d7475622d69643a2035696b667637647a3473376b6a6d326373366d6e75693770656b6d7532776d700d0a0d0a";

#[test]
fn the_exchange_replays_a_python_transcript_byte_for_byte() {
    let now = Instant::now();
    let (high, low) = (id(HIGH).tubid(), id(LOW).tubid());
    let config = NegotiationConfig::default();
    // the client side, with the recorded incarnation
    let mut t = ConnectionTable::with_incarnation("5761a580b29fca9a");
    let mut ex = Exchange::new(low, Some(high), ConnectionId(1), &config, &t);
    let mut out = Vec::new();
    ex.poll_output(&mut out);
    assert_eq!(out, unhex(T01_CLIENT));
    let mut server_bytes = unhex(T01_SERVER);
    server_bytes.extend_from_slice(&unhex("00880d8701810188")); // banana glued on
    let done = ex
        .handle_plaintext(&server_bytes, Some(&high), &mut t, now)
        .unwrap()
        .unwrap();
    assert_eq!(
        done.info.current_connection.as_deref(),
        Some("c88a1b93917df02f 1")
    );
    assert_eq!(
        (done.info.vocab, done.info.i_am_master),
        (VocabTable::V1, false)
    );
    assert_eq!(&done.leftover[..], &unhex("00880d8701810188")[..]);
    // the server side, fed one byte at a time
    let mut t = ConnectionTable::with_incarnation("c88a1b93917df02f");
    let mut ex = Exchange::new(high, None, ConnectionId(1), &config, &t);
    let client_bytes = unhex(T01_CLIENT);
    let mut result = None;
    for b in &client_bytes {
        if let Some(done) = ex.handle_plaintext(&[*b], Some(&low), &mut t, now).unwrap() {
            result = Some(done);
        }
    }
    assert!(result.unwrap().info.i_am_master);
    let mut out = Vec::new();
    ex.poll_output(&mut out);
    assert_eq!(out, unhex(T01_SERVER));
}

/// Feeds a client exchange (me = low, dialled high) the given bytes and
/// returns the error and the reply it queued.
fn client_exchange(input: &[u8]) -> (NegotiationError, Vec<u8>) {
    let (high, low) = (id(HIGH).tubid(), id(LOW).tubid());
    let mut t = table(5);
    let mut ex = Exchange::new(
        low,
        Some(high),
        ConnectionId(1),
        &NegotiationConfig::default(),
        &t,
    );
    ex.poll_output(&mut Vec::new());
    let e = ex
        .handle_plaintext(input, Some(&high), &mut t, Instant::now())
        .unwrap_err();
    let mut out = Vec::new();
    ex.poll_output(&mut out);
    (e, out)
}

#[test]
fn exchange_failures_are_reported_as_python_reports_them() {
    let all = unhex(T01_SERVER);
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let server_hello = &all[..end];
    // failing on the hello: an error block
    let bad_hello = b"banana-negotiation-range: 1 2\r\nmy-tub-id: x\r\n\r\n";
    let (e, out) = client_exchange(bad_hello);
    assert_eq!(e.wire_text(), "I can't handle banana version 2");
    assert_eq!(
        out,
        b"banana-decision-version: 1\r\nerror: I can't handle banana version 2\r\n\r\n"
    );
    let (e, out) = client_exchange(b"no colon\r\n\r\n");
    assert!(matches!(e, NegotiationError::Block(_)));
    assert_eq!(
        out,
        b"banana-decision-version: 1\r\nerror: internal server error, see logs\r\n\r\n"
    );
    let (e, out) = client_exchange(&[b'x'; 4097]);
    assert_eq!(e, NegotiationError::BlockTooLong { limit: 4096 });
    assert!(out.starts_with(b"banana-decision-version: 1\r\n"));
    // the peer's refusal: no reply
    let (e, out) =
        client_exchange(b"banana-decision-version: 1\r\nerror: Duplicate connection\r\n\r\n");
    assert!(e.is_duplicate_connection());
    assert!(out.is_empty());
    // failing on the decision (the master expects banana now): ERROR token
    let mut input = server_hello.to_vec();
    input.extend_from_slice(
        b"banana-decision-version: 3\r\ninitial-vocab-table-index: 1 ffff\r\n\r\n",
    );
    let (e, out) = client_exchange(&input);
    let text = "Our hash for vocab-table-index 1 (bb33) does not match your hash (ffff)";
    assert_eq!(e.wire_text(), text);
    let mut token = vec![text.len() as u8 & 0x7f, (text.len() >> 7) as u8];
    token.retain(|&b| b != 0);
    token.push(0x8d);
    token.extend_from_slice(text.as_bytes());
    assert_eq!(out, token);
    let mut input = server_hello.to_vec();
    input.extend_from_slice(&[b'y'; 5000]);
    let (e, out) = client_exchange(&input);
    assert_eq!(e, NegotiationError::BlockTooLong { limit: 4096 });
    assert_eq!(out[out.len() - 31..], *b"internal server error, see logs");
    assert_eq!(out[..2], [31, 0x8d]);
}

#[test]
fn a_client_without_a_certificate_is_refused_by_tls() {
    use std::sync::Arc;
    let now = Instant::now();
    let low = id(LOW);
    let mut s = End::server(&TlsContext::new(&low).unwrap(), table(2), now);
    s.receive(&plaintext::format_request(&low.tubid(), "h"), now);
    assert_eq!(s.transmit(), plaintext::SWITCHING_PROTOCOLS);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(tls::PeerVerifier::new(&provider, Some(low.tubid())));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("x.invalid").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    for _ in 0..10 {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        s.receive(&out, now);
        let back = s.transmit();
        if !back.is_empty() {
            let _ = client.read_tls(&mut &back[..]);
            let _ = client.process_new_packets();
        }
        if matches!(s.state, State::Failed(..)) {
            break;
        }
    }
    assert!(
        matches!(
            s.error(),
            NegotiationError::Tls(rustls::Error::NoCertificatesPresented)
        ),
        "{:?}",
        s.error()
    );
    assert!(s.table.live(&low.tubid()).is_none());
}
