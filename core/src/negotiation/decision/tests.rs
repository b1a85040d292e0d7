use super::*;
use crate::rng::SeededRng;

const HIGH: &str = "vfbzu4bxrxknny4zy66zjcdszk5wc4k5";
const LOW: &str = "5ikfv7dz4s7kjm2cs6mnui7pekmu2wmp";

fn tubid(s: &str) -> TubId {
    TubId::parse(s).unwrap()
}

fn hello(pairs: &[(&str, &str)]) -> Block {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn good_hello(me: &str) -> Block {
    hello(&[
        ("banana-negotiation-range", "3 3"),
        ("initial-vocab-table-range", "0 1"),
        ("my-tub-id", me),
        ("my-incarnation", "1111111111111111"),
        ("last-connection", "none 0"),
    ])
}

fn offer(incarnation: Option<&str>, last: Option<&str>) -> Offer {
    Offer {
        version: 3,
        peer: tubid(LOW),
        incarnation: incarnation.map(Into::into),
        last_connection: last.map(Into::into),
        vocab_range: Some("0 1".into()),
        i_am_master: true,
    }
}

#[test]
fn master_is_the_larger_tubid_and_hello_checks_follow_python() {
    let (high, low) = (tubid(HIGH), tubid(LOW));
    let o = evaluate_hello(&good_hello(LOW), &high, Some(&low), None).unwrap();
    assert!(o.i_am_master);
    assert_eq!((o.version, o.peer), (3, low));
    let o = evaluate_hello(&good_hello(HIGH), &low, Some(&high), Some(&high)).unwrap();
    assert!(!o.i_am_master);

    let check = |h: Block, cert: Option<&TubId>, expected: Option<&TubId>| {
        evaluate_hello(&h, &high, cert, expected).unwrap_err()
    };
    let mut h = good_hello(LOW);
    h.insert("error".into(), "Duplicate connection".into());
    assert_eq!(
        check(h, Some(&low), None),
        NegotiationError::Remote {
            message: "Duplicate connection".into()
        }
    );
    let mut h = good_hello(LOW);
    h.remove("banana-negotiation-range");
    assert_eq!(
        check(h.clone(), Some(&low), None),
        NegotiationError::NoBananaRange
    );
    h.insert("banana-negotiation-version".into(), "1".into());
    let e = check(h, Some(&low), None);
    assert_eq!(e, NegotiationError::OldPeer);
    assert!(e.wire_text().starts_with("Peer is speaking foolscap-0.0.5"));
    for (range, text) in [
        ("1 2", "I can't handle banana version 2"),
        ("4 5", "You can't handle banana version 3"),
    ] {
        let mut h = good_hello(LOW);
        h.insert("banana-negotiation-range".into(), range.into());
        assert_eq!(check(h, Some(&low), None).wire_text(), text);
    }
    for bad in ["3", "3 3 3", "x 3", ""] {
        let mut h = good_hello(LOW);
        h.insert("banana-negotiation-range".into(), bad.into());
        let e = check(h, Some(&low), None);
        assert!(
            matches!(e, NegotiationError::BadField { .. }),
            "{bad}: {e:?}"
        );
        assert_eq!(e.wire_text(), "internal server error, see logs");
    }
    let mut h = good_hello(LOW);
    h.insert("negotiation-forced".into(), "True".into());
    assert_eq!(check(h, Some(&low), None), NegotiationError::Forced);
    assert_eq!(
        check(good_hello(LOW), None, None),
        NegotiationError::NoCertificate
    );
    let e = check(good_hello(LOW), Some(&tubid(HIGH)), None);
    assert!(matches!(e, NegotiationError::TubIdMismatch { .. }));
    assert_eq!(e.wire_text(), "internal server error, see logs");
    let mut h = good_hello(LOW);
    h.remove("my-tub-id");
    assert!(matches!(
        check(h, Some(&low), None),
        NegotiationError::TubIdMismatch { claimed: None, .. }
    ));
    let e = check(good_hello(LOW), Some(&low), Some(&tubid(HIGH)));
    assert!(
        e.to_string().contains(HIGH) && e.to_string().contains(LOW),
        "{e}"
    );
    // a non-master never reads the vocab range, so a bad one is harmless
    let mut h = good_hello(HIGH);
    h.insert("initial-vocab-table-range".into(), "junk".into());
    assert!(evaluate_hello(&h, &low, Some(&high), None).is_ok());
}

#[test]
fn duplicate_rules_in_pythons_order() {
    let now = Instant::now();
    let existing = LiveConnection {
        id: ConnectionId(1),
        peer_incarnation: Some("aaaa".into()),
        seqnum: Some(4),
        established: now,
    };
    let me = "mmmm";
    let verdict = |o: Offer| accept_over_existing(&o, &existing, me, None, now);
    // 1. no incarnation, empty incarnation or no last-connection: refuse
    assert_eq!(verdict(offer(None, Some("none 0"))), Ok(false));
    assert_eq!(verdict(offer(Some(""), Some("none 0"))), Ok(false));
    assert_eq!(verdict(offer(Some("aaaa"), None)), Ok(false));
    // ... unless handle-old is on and the existing connection is old enough
    let later = now + Duration::from_secs(61);
    let old = Some(Duration::from_secs(60));
    assert_eq!(
        accept_over_existing(&offer(None, None), &existing, me, old, later),
        Ok(true)
    );
    assert_eq!(
        accept_over_existing(&offer(None, None), &existing, me, old, now),
        Ok(false)
    );
    // 2. a new peer incarnation: accept
    assert_eq!(verdict(offer(Some("bbbb"), Some("none 0"))), Ok(true));
    // 3. the peer remembers nothing: refuse
    assert_eq!(verdict(offer(Some("aaaa"), Some("none 0"))), Ok(false));
    // 4. the peer remembers a previous life of ours: accept
    assert_eq!(verdict(offer(Some("aaaa"), Some("oldlife 9"))), Ok(true));
    // 5. the peer knows the existing seqnum: accept
    assert_eq!(verdict(offer(Some("aaaa"), Some("mmmm 4"))), Ok(true));
    // 6. an older or newer seqnum: refuse
    assert_eq!(verdict(offer(Some("aaaa"), Some("mmmm 3"))), Ok(false));
    assert_eq!(verdict(offer(Some("aaaa"), Some("mmmm 5"))), Ok(false));
    // unparsable last-connection: Python raises (internal error)
    for bad in ["none", "mmmm x", ""] {
        assert!(matches!(
            verdict(offer(Some("aaaa"), Some(bad))),
            Err(NegotiationError::BadField { .. })
        ));
    }
}

#[test]
fn master_tables_seqnums_and_replacement() {
    let now = Instant::now();
    let mut table = ConnectionTable::new(&mut SeededRng::new(1));
    assert_eq!(table.incarnation().len(), 16);
    let low = tubid(LOW);
    let (d1, s1) = decide(
        &offer(Some("aaaa"), Some("none 0")),
        ConnectionId(1),
        (0, 1),
        None,
        &mut table,
        now,
    )
    .unwrap();
    assert_eq!(d1.current_connection, format!("{} 1", table.incarnation()));
    assert_eq!(
        (s1.seqnum, s1.replaced, s1.vocab),
        (Some(1), None, VocabTable::V1)
    );
    assert_eq!(table.live(&low).unwrap().id, ConnectionId(1));
    // same incarnation, remembers nothing: a parallel attempt, refused
    let e = decide(
        &offer(Some("aaaa"), Some("none 0")),
        ConnectionId(2),
        (0, 1),
        None,
        &mut table,
        now,
    )
    .unwrap_err();
    assert_eq!(e, NegotiationError::Duplicate { peer: low });
    assert_eq!(e.wire_text(), "Duplicate connection");
    assert!(e.is_duplicate_connection());
    assert_eq!(table.master_seqnum(&low), 1, "a refusal uses no seqnum");
    // reconnect that knows seqnum 1: replaces connection 1
    let last = format!("{} 1", table.incarnation());
    let (_, s3) = decide(
        &offer(Some("aaaa"), Some(&last)),
        ConnectionId(3),
        (0, 1),
        None,
        &mut table,
        now,
    )
    .unwrap();
    assert_eq!((s3.seqnum, s3.replaced), (Some(2), Some(ConnectionId(1))));
    // vocab agreement: a peer offering 0 0 (or nothing) gets table 0
    let mut o = offer(Some("cccc"), Some("none 0"));
    o.vocab_range = None;
    let (d, _) = decide(&o, ConnectionId(4), (0, 1), None, &mut table, now).unwrap();
    assert_eq!(d.vocab, VocabTable::EMPTY);
    o.incarnation = Some("dddd".into()); // a restarted peer, so no duplicate
    o.vocab_range = Some("2 5 extra".into());
    let e = decide(&o, ConnectionId(5), (0, 1), None, &mut table, now).unwrap_err();
    assert_eq!(e.wire_text(), "You can't handle initial vocab set 1");
    o.vocab_range = Some("7".into());
    assert!(matches!(
        decide(&o, ConnectionId(5), (0, 1), None, &mut table, now),
        Err(NegotiationError::BadField { .. })
    ));
    // closing forgets the live connection, not the seqnum
    assert!(table.connection_closed(ConnectionId(4)));
    assert!(!table.connection_closed(ConnectionId(4)));
    assert!(table.live(&low).is_none());
    assert_eq!(table.master_seqnum(&low), 3);
}

fn decision(pairs: &[(&str, &str)]) -> Block {
    hello(pairs)
}

#[test]
fn non_master_accepts_or_refuses_the_decision() {
    let now = Instant::now();
    let mut table = ConnectionTable::new(&mut SeededRng::new(2));
    let mut o = offer(Some("aaaa"), None);
    o.i_am_master = false;
    let low = tubid(LOW);
    let good = decision(&[
        ("banana-decision-version", "3"),
        ("current-connection", "c88a1b93917df02f 1"),
        ("initial-vocab-table-index", "1 bb33"),
    ]);
    let s = accept_decision(&good, &o, ConnectionId(7), (0, 1), &mut table, now).unwrap();
    assert_eq!((s.version, s.vocab, s.replaced), (3, VocabTable::V1, None));
    assert_eq!(table.last_connection(&low), "c88a1b93917df02f 1");
    assert_eq!(table.live(&low).unwrap().id, ConnectionId(7));
    // a second decision for the same peer replaces the first connection
    let s = accept_decision(&good, &o, ConnectionId(8), (0, 1), &mut table, now).unwrap();
    assert_eq!(s.replaced, Some(ConnectionId(7)));
    // no index means table 0; table 0's hash is not checked
    let d = decision(&[("banana-decision-version", "3")]);
    assert_eq!(
        accept_decision(&d, &o, ConnectionId(9), (0, 1), &mut table, now)
            .unwrap()
            .vocab,
        VocabTable::EMPTY
    );
    let d = decision(&[
        ("banana-decision-version", "3"),
        ("initial-vocab-table-index", "0 zzzz"),
    ]);
    assert!(accept_decision(&d, &o, ConnectionId(9), (0, 1), &mut table, now).is_ok());
    // versions 1 and 2 exist in Python's acceptDecision; an odd
    // current-connection is not remembered
    let d = decision(&[
        ("banana-decision-version", "1"),
        ("current-connection", "a b c"),
    ]);
    assert_eq!(
        accept_decision(&d, &o, ConnectionId(9), (0, 1), &mut table, now)
            .unwrap()
            .version,
        1
    );
    assert_eq!(table.last_connection(&low), "c88a1b93917df02f 1");

    let refuse = |pairs: &[(&str, &str)]| {
        let mut t = ConnectionTable::new(&mut SeededRng::new(3));
        accept_decision(&decision(pairs), &o, ConnectionId(1), (0, 1), &mut t, now).unwrap_err()
    };
    assert_eq!(
        refuse(&[("current-connection", "x 1")]),
        NegotiationError::NoDecisionVersion
    );
    assert_eq!(
        refuse(&[("banana-decision-version", "")]).wire_text(),
        "No banana-decision-version value"
    );
    for v in ["0", "4", "three"] {
        let e = refuse(&[("banana-decision-version", v)]);
        assert!(matches!(e, NegotiationError::BadField { .. }), "{v}");
        assert_eq!(e.wire_text(), "internal server error, see logs");
    }
    assert_eq!(
        refuse(&[
            ("banana-decision-version", "1"),
            ("error", "Duplicate connection")
        ]),
        NegotiationError::Remote {
            message: "Duplicate connection".into()
        }
    );
    assert_eq!(
        refuse(&[
            ("banana-decision-version", "3"),
            ("initial-vocab-table-index", "2 abcd")
        ])
        .wire_text(),
        "I can't handle initial vocab table index 2"
    );
    assert_eq!(
        refuse(&[
            ("banana-decision-version", "3"),
            ("initial-vocab-table-index", "1 abcd")
        ])
        .wire_text(),
        "Our hash for vocab-table-index 1 (bb33) does not match your hash (abcd)"
    );
    assert!(matches!(
        refuse(&[
            ("banana-decision-version", "3"),
            ("initial-vocab-table-index", "1")
        ]),
        NegotiationError::BadField { .. }
    ));
    // a non-master limited to table 0 refuses index 1
    let mut t = ConnectionTable::new(&mut SeededRng::new(4));
    assert_eq!(
        accept_decision(&good, &o, ConnectionId(1), (0, 0), &mut t, now)
            .unwrap_err()
            .wire_text(),
        "I can't handle initial vocab table index 1"
    );
}

#[test]
fn best_overlap_is_pythons() {
    assert_eq!(best_overlap((0, 1), (0, 1), "x"), Ok(1));
    assert_eq!(best_overlap((0, 1), (0, 0), "x"), Ok(0));
    assert_eq!(best_overlap((0, 1), (0, 9), "x"), Ok(1));
    assert!(matches!(
        best_overlap((3, 3), (1, 2), "x"),
        Err(NegotiationError::Unsupported {
            side: Side::Me,
            value: 2,
            ..
        })
    ));
    assert!(matches!(
        best_overlap((3, 3), (4, 5), "x"),
        Err(NegotiationError::Unsupported {
            side: Side::Peer,
            value: 3,
            ..
        })
    ));
}
