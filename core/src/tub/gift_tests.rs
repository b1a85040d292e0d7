//! Gifts between three Tubs (docs/protocol.md §5.6): A (0) gives B (1) a
//! reference to an object of C (2).

use std::time::{Duration, Instant};

use super::*;
use crate::broker::CallError;
use crate::testing::Net;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Three Tubs, B with `b`; A holds C's `thing` and B's `receiver`.
fn three(b: TubConfig) -> (Net, RemoteRef, RemoteRef) {
    let mut net = Net::with_config(
        crate::testing::NetConfig::default(),
        vec![TubConfig::default(), b, TubConfig::default()],
        Instant::now(),
    );
    let (_, thing) = net.publish(C, "thing-swiss");
    let (_, receiver) = net.publish(B, "receiver-swiss");
    let thing = net.remote(A, &thing);
    let receiver = net.remote(A, &receiver);
    (net, thing, receiver)
}

/// B's calls, waited for.
fn calls_of(net: &mut Net, tub: usize, n: usize) -> Vec<IncomingCall> {
    let mut got = Vec::new();
    net.wait_for(|net| {
        got.extend(net.take_calls(tub));
        (got.len() >= n).then_some(())
    });
    got
}

#[test]
fn a_gift_reaches_the_recipient_as_a_reference_to_the_owner() {
    let (mut net, thing, receiver) = three(TubConfig::default());
    let take = net[A]
        .call(&receiver, "take", &[Value::Remote(thing.clone())], &[])
        .unwrap();
    let ping = net[A].call(&receiver, "ping", &[], &[]).unwrap();
    assert_eq!(net[A].gifts_held(), 1);
    // the lookup at C takes a while: ping waits behind take
    net.set_latency(B, C, Duration::from_millis(300));
    net.set_latency(C, B, Duration::from_millis(300));
    let calls = calls_of(&mut net, B, 2);
    assert_eq!(calls[0].method.as_str(), "take");
    assert_eq!(calls[1].method.as_str(), "ping");
    let Value::Remote(gift) = &calls[0].args[0] else {
        panic!("{:?}", calls[0].args)
    };
    // a reference on B's own connection to C
    assert_eq!(Some(gift.connection()), net.connection(B, C));
    // B calls it
    let hello = net[B].call(gift, "hello", &[], &[]).unwrap();
    let at_c = calls_of(&mut net, C, 1);
    assert_eq!(at_c[0].method.as_str(), "hello");
    net[C].answer(at_c[0].id, Ok(Value::str("hi"))).unwrap();
    assert_eq!(net.answer_of(B, hello).unwrap(), Value::str("hi"));
    for c in &calls {
        net[B].answer(c.id, Ok(Value::None)).unwrap();
    }
    assert_eq!(net.answer_of(A, take).unwrap(), Value::None);
    assert_eq!(net.answer_of(A, ping).unwrap(), Value::None);
    // the decgift came back: A no longer holds the gift
    net.run();
    assert_eq!(net[A].gifts_held(), 0);
    assert_eq!(net[B].pending_gifts(), 0);
}

#[test]
fn the_same_reference_twice_and_in_containers_shares_one_gift_id() {
    let (mut net, thing, receiver) = three(TubConfig::default());
    let list = Value::List(vec![Value::Remote(thing.clone()), Value::int(1)]);
    let args = [Value::Remote(thing.clone()), list];
    net[A].call(&receiver, "take2", &args, &[]).unwrap();
    assert_eq!(net[A].gifts_held(), 1);
    let calls = calls_of(&mut net, B, 1);
    let (Value::Remote(x), Value::List(items)) = (&calls[0].args[0], &calls[0].args[1]) else {
        panic!("{:?}", calls[0].args)
    };
    let Value::Remote(y) = &items[0] else {
        panic!("{items:?}")
    };
    // both lookups gave the connection's one handle for that clid
    assert_eq!(x, y);
    assert_eq!(items[1], Value::int(1));
    net.run();
    assert_eq!(net[A].gifts_held(), 0, "two decgifts released the gift");
}

#[test]
fn a_gift_in_an_answer_resolves_before_the_answer_is_delivered() {
    let (mut net, thing, receiver) = three(TubConfig::default());
    // B gets a reference to C's thing of its own, and returns it to A
    let furl = Furl::parse(&String::from_utf8_lossy(thing.furl().unwrap())).unwrap();
    let b_thing = net.remote(B, &furl);
    let call = net[A].call(&receiver, "give", &[], &[]).unwrap();
    let calls = calls_of(&mut net, B, 1);
    net[B]
        .answer(calls[0].id, Ok(Value::Remote(b_thing.clone())))
        .unwrap();
    assert_eq!(net[B].gifts_held(), 1);
    let got = net.answer_of(A, call).unwrap();
    // the very reference A already held for that object
    assert_eq!(got, Value::Remote(thing.clone()));
    net.run();
    assert_eq!(net[B].gifts_held(), 0);
}

fn failure_of(r: Result<Value, CallError>) -> Failure {
    match r {
        Err(CallError::Remote(f)) => f,
        other => panic!("not a remote failure: {other:?}"),
    }
}

#[test]
fn a_gift_of_an_unknown_name_fails_the_call_with_the_owners_key_error() {
    let (mut net, _thing, receiver) = three(TubConfig::default());
    let (gone, gone_furl) = net.publish(C, "gone-swiss");
    let gone_ref = net.remote(A, &gone_furl);
    net[C].unregister("gone-swiss");
    let _ = gone;
    let take = net[A]
        .call(&receiver, "take", &[Value::Remote(gone_ref)], &[])
        .unwrap();
    let ping = net[A].call(&receiver, "ping", &[], &[]).unwrap();
    net.respond_with(B, |_| Ok(Value::str("pong")));
    let f = failure_of(net.answer_of(A, take));
    assert_eq!(f.type_name, "builtins.KeyError");
    assert_eq!(
        f.value,
        "\"unable to find reference for name starting with 'go'\""
    );
    assert_eq!(net.answer_of(A, ping).unwrap(), Value::str("pong"));
    net.run();
    assert_eq!(net[A].gifts_held(), 0, "decgift after a failed lookup too");
}

#[test]
fn a_gift_to_a_refused_port_fails_as_python_reports_it() {
    let (mut net, _thing, receiver) = three(TubConfig::default());
    // a reference whose FURL names C's tubid at a port nobody listens on
    let tubid = net.tubid(C);
    let furl = format!("pb://{tubid}@tcp:127.0.0.1:1/thing-swiss");
    let fake = RemoteRef::new(
        net.connection(A, C).unwrap(),
        77,
        Bytes::new(),
        Some(Bytes::from(furl)),
    );
    let take = net[A]
        .call(&receiver, "take", &[Value::Remote(fake)], &[])
        .unwrap();
    let f = failure_of(net.answer_of(A, take));
    assert_eq!(f.type_name, "twisted.internet.error.ConnectionRefusedError");
    assert_eq!(
        f.value,
        "Connection was refused by other side: 111: Connection refused."
    );
    assert!(f.check("twisted.internet.error.ConnectError"));
    assert_eq!(
        f.traceback,
        "Traceback (most recent call last):\nFailure: twisted.internet.error.ConnectionRefusedError: Connection was refused by other side: 111: Connection refused.\n"
    );
}

#[test]
fn gifts_without_a_furl_or_with_a_bad_one_fail_with_pythons_types() {
    let (mut net, _thing, receiver) = three(TubConfig::default());
    let conn = net.connection(A, C).unwrap();
    let none = RemoteRef::new(conn, 78, Bytes::new(), None);
    let bad = RemoteRef::new(conn, 79, Bytes::new(), Some(Bytes::from("not-a-furl")));
    let t1 = net[A]
        .call(&receiver, "take", &[Value::Remote(none)], &[])
        .unwrap();
    let t2 = net[A]
        .call(&receiver, "take", &[Value::Remote(bad)], &[])
        .unwrap();
    let f = failure_of(net.answer_of(A, t1));
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("foolscap.tokens.NoLocationHintsError", "")
    );
    let f = failure_of(net.answer_of(A, t2));
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("builtins.ValueError", "unknown FURL prefix in 'not-a-furl'")
    );
    net.run();
    assert_eq!(net[A].gifts_held(), 0);
}

#[test]
fn with_gifts_refused_the_call_fails_with_pythons_violation_and_no_decgift() {
    let b = TubConfig {
        accept_gifts: false,
        ..TubConfig::default()
    };
    let (mut net, thing, receiver) = three(b);
    let take = net[A]
        .call(&receiver, "take", &[Value::Remote(thing)], &[])
        .unwrap();
    let f = failure_of(net.answer_of(A, take));
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    assert_eq!(f.value, "Violation: ('gifts are prohibited in this Tub',)");
    net.run();
    assert_eq!(net[A].gifts_held(), 1, "no decgift: A keeps holding");
    assert!(net.connection(B, C).is_none(), "nothing was looked up");
}

#[test]
fn an_owner_that_never_answers_costs_the_gift_timeout_then_calls_go_on() {
    let b = TubConfig {
        gift_timeout: Duration::from_secs(5),
        ..TubConfig::default()
    };
    let (mut net, thing, receiver) = three(b);
    // C reads nothing: B's negotiation with it never finishes in time
    net.set_tub_reading(C, false);
    let take = net[A]
        .call(&receiver, "take", &[Value::Remote(thing)], &[])
        .unwrap();
    let ping = net[A].call(&receiver, "ping", &[], &[]).unwrap();
    net.respond_with(B, |_| Ok(Value::str("pong")));
    let f = failure_of(net.answer_of(A, take));
    assert_eq!(f.type_name, "foolscap.tokens.NegotiationError");
    assert_eq!(f.value, "no connection established within client timeout");
    assert_eq!(net.answer_of(A, ping).unwrap(), Value::str("pong"));
    net.run();
    assert_eq!(net[B].pending_gifts(), 0);
    assert_eq!(net[B].messages_waiting_for_gifts(), 0);
    assert_eq!(net[A].gifts_held(), 0, "decgift after the timeout");
}

#[test]
fn a_flood_of_gifts_holds_at_most_the_pending_limit() {
    let b = TubConfig {
        max_pending_gifts: 3,
        ..TubConfig::default()
    };
    let (mut net, _thing, receiver) = three(b);
    net.set_tub_reading(C, false);
    // ten distinct objects of C, one gift each
    let mut refs = Vec::new();
    for i in 0..10 {
        let (_, f) = net.publish(C, &format!("obj{i}-swiss"));
        let _ = f;
    }
    let tubid = net.tubid(C);
    let port = net.port(C);
    let conn = net.connection(A, C).unwrap();
    for i in 0..10 {
        let furl = format!("pb://{tubid}@tcp:127.0.0.1:{port}/obj{i}-swiss");
        refs.push(Value::Remote(RemoteRef::new(
            conn,
            100 + i,
            Bytes::new(),
            Some(Bytes::from(furl)),
        )));
    }
    let take = net[A].call(&receiver, "take_all", &refs, &[]).unwrap();
    net.advance(Duration::from_secs(1));
    assert_eq!(net[B].pending_gifts(), 3);
    // the seven beyond the limit failed at once: the call fails
    let f = failure_of(net.answer_of(A, take));
    assert_eq!(f.type_name, "foolscap.tokens.Violation");
    assert_eq!(f.value, "more than 3 gifts are being looked up");
    assert_eq!(net[B].pending_gifts(), 0);
}

#[test]
fn a_decgift_for_an_unknown_gift_is_ignored() {
    let (mut net, thing, receiver) = three(TubConfig::default());
    let conn = net.connection(B, A).unwrap();
    let b = &mut net[B];
    let broker = b.broker_mut(conn).unwrap();
    broker.decgift(99).unwrap();
    net.run();
    // the connection is fine, and a real gift still works
    net[A]
        .call(&receiver, "take", &[Value::Remote(thing)], &[])
        .unwrap();
    assert_eq!(calls_of(&mut net, B, 1).len(), 1);
}

#[test]
fn calls_behind_a_gift_wait_and_the_queue_is_bounded() {
    let b = TubConfig {
        max_calls_behind_gifts: 4,
        gift_timeout: Duration::from_secs(30),
        ..TubConfig::default()
    };
    let (mut net, thing, receiver) = three(b);
    net.set_tub_reading(C, false);
    net[A]
        .call(&receiver, "take", &[Value::Remote(thing)], &[])
        .unwrap();
    for _ in 0..50 {
        net[A].call(&receiver, "ping", &[], &[]).unwrap();
    }
    net.advance(Duration::from_secs(1));
    let conn = net.connection(B, A).unwrap();
    assert!(!net[B].wants_input(conn), "B stops reading A");
    assert!(net.take_calls(B).is_empty(), "nothing overtakes the gift");
    net.advance(Duration::from_secs(30));
    assert!(net[B].wants_input(conn));
}

/// docs/protocol.md §5.6: the sender keeps the gifted reference (no
/// `decref` to its owner) until the recipient's `decgift`, even when its
/// application dropped it at once.
#[test]
fn the_sender_holds_the_gift_until_decgift_then_releases_it() {
    let (mut net, thing, receiver) = three(TubConfig::default());
    // C makes an unregistered object for A: it is reported unused once
    // nobody holds it
    let make = net[A].call(&thing, "make", &[], &[]).unwrap();
    let at_c = calls_of(&mut net, C, 1);
    let made = net[C].new_object("");
    net[C].answer(at_c[0].id, Ok(Value::Local(made))).unwrap();
    let Ok(Value::Remote(made_ref)) = net.answer_of(A, make) else {
        panic!("a reference")
    };
    // B's lookups at C are slow
    net.set_latency(B, C, Duration::from_secs(5));
    net.set_latency(C, B, Duration::from_secs(5));
    net[A]
        .call(&receiver, "take", &[Value::Remote(made_ref.clone())], &[])
        .unwrap();
    drop(made_ref);
    // A's release sweeps run meanwhile: nothing goes to C
    net.advance(Duration::from_secs(3));
    assert_eq!(net[A].gifts_held(), 1);
    let unused = |net: &Net| {
        net.events(C)
            .any(|e| matches!(e, TubEvent::ObjectUnused(o) if *o == made))
    };
    assert!(!unused(&net), "released while the gift was pending");
    // the gift resolves, B is done with it, everyone lets go
    let calls = calls_of(&mut net, B, 1);
    net[B].answer(calls[0].id, Ok(Value::None)).unwrap();
    drop(calls);
    net.advance(Duration::from_secs(30));
    assert_eq!(net[A].gifts_held(), 0);
    assert!(unused(&net), "A and B released it at C");
}

/// The sender's connection ends while its gift is looked up: the call
/// dies with it, and so do its lookups (nothing left behind).
#[test]
fn a_lost_sender_connection_drops_its_calls_waiting_for_gifts() {
    let (mut net, thing, receiver) = three(TubConfig::default());
    net.set_tub_reading(C, false);
    net[A]
        .call(&receiver, "take", &[Value::Remote(thing)], &[])
        .unwrap();
    net[A].call(&receiver, "ping", &[], &[]).unwrap();
    net.advance(Duration::from_secs(1));
    assert_eq!(net[B].pending_gifts(), 1);
    assert_eq!(net[B].messages_waiting_for_gifts(), 1);
    let conn = net.connection(A, B).unwrap();
    net[A].disconnect(conn);
    net.advance(Duration::from_secs(1));
    assert_eq!(net[B].pending_gifts(), 0);
    assert_eq!(net[B].messages_waiting_for_gifts(), 0);
    assert!(
        net.take_calls(B).is_empty(),
        "nothing delivered after the loss"
    );
    assert_eq!(net[A].gifts_held(), 0, "the sender forgot its gifts");
}
