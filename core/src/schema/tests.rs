//! Schema checks end to end on the simulated network: a Tub whose object
//! declares an interface (the receiver's checks), a Tub that knows the
//! interface of what it calls (the caller's checks). The texts are those
//! of Python 24.9.0 (reference capture `15-schema-receiver`), with our
//! object description in place of Python's `<module.Class object at 0x...>`.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use num_bigint::BigInt;

use super::{Argument, Constraint, InterfaceSchema, MethodSchema};
use crate::banana::VocabTable;
use crate::broker::{BrokerError, CallError, Failure};
use crate::id::ObjectId;
use crate::testing::Net;
use crate::tub::TubError;
use crate::value::{
    CallTarget, DecodeError, Deserializer, Int, Limits, PbEvent, RefDecoder, RemoteRef, Serializer,
    Text, Value, WireRef, WireRefs,
};

const RI: &str = "RILimits.gsr.example";

fn m(name: &str, args: Vec<Argument>, returns: Constraint) -> MethodSchema {
    args.into_iter()
        .fold(MethodSchema::new(name), |m, a| m.with_argument(a))
        .returning(returns)
}

fn req(name: &str, c: Constraint) -> Argument {
    Argument::required(name, c)
}

/// The interface of the reference capture's `gsr_schema.py`.
fn limits() -> InterfaceSchema {
    let int = Constraint::int;
    InterfaceSchema::new(RI)
        .with_method(m(
            "limited",
            vec![
                req("b", Constraint::byte_string(Some(10))),
                req("l", Constraint::list_of(int(), Some(3))),
            ],
            int(),
        ))
        .with_method(m(
            "text",
            vec![req("s", Constraint::unicode(Some(5)))],
            Constraint::text(),
        ))
        .with_method(m(
            "anytext",
            vec![req("s", Constraint::text())],
            Constraint::text(),
        ))
        .with_method(m(
            "shortbytes",
            vec![req(
                "b",
                Constraint::ByteString {
                    max_length: Some(3),
                    min_length: 2,
                },
            )],
            int(),
        ))
        .with_method(m("i32", vec![req("n", Constraint::int32())], int()))
        .with_method(m("i1024", vec![req("n", int())], int()))
        .with_method(m("i8", vec![req("n", Constraint::int_bytes(8))], int()))
        .with_method(m(
            "flag",
            vec![req("x", Constraint::boolean())],
            Constraint::boolean(),
        ))
        .with_method(m(
            "nothing",
            vec![req("x", Constraint::Nothing)],
            Constraint::Nothing,
        ))
        .with_method(m(
            "num",
            vec![req("x", Constraint::number())],
            Constraint::number(),
        ))
        .with_method(m(
            "pair",
            vec![req("t", Constraint::tuple_of([int(), Constraint::bytes()]))],
            int(),
        ))
        .with_method(m(
            "mapping",
            vec![req(
                "d",
                Constraint::dict_of(Constraint::bytes(), int(), Some(2)),
            )],
            int(),
        ))
        .with_method(m(
            "aset",
            vec![req("s", Constraint::set_of(int(), Some(2)))],
            int(),
        ))
        .with_method(m(
            "choice",
            vec![req(
                "c",
                Constraint::choice_of([int(), Constraint::bytes()]),
            )],
            int(),
        ))
        .with_method(m(
            "choice_list",
            vec![req(
                "c",
                Constraint::choice_of([Constraint::list_of(int(), None), Constraint::bytes()]),
            )],
            int(),
        ))
        .with_method(m(
            "opt",
            vec![req("a", int()), Argument::optional("b", int())],
            int(),
        ))
        .with_method(m("anything", vec![req("x", Constraint::Any)], int()))
        .with_method(m(
            "ref",
            vec![req("r", Constraint::reference_to("RIOther"))],
            int(),
        ))
        .with_method(m(
            "anyref",
            vec![req("r", Constraint::any_reference())],
            int(),
        ))
        .with_method(m(
            "nested",
            vec![req(
                "v",
                Constraint::list_of(
                    Constraint::tuple_of([int(), Constraint::byte_string(Some(2))]),
                    Some(2),
                ),
            )],
            int(),
        ))
        .with_method(m(
            "minlist",
            vec![req(
                "l",
                Constraint::List {
                    item: Box::new(int()),
                    max_length: None,
                    min_length: 2,
                },
            )],
            int(),
        ))
        .with_method(m("bad_return", vec![], int()))
        .with_method(m(
            "bad_return_list",
            vec![],
            Constraint::list_of(int(), Some(2)),
        ))
        .with_method(MethodSchema::new("no_return_decl"))
}

/// Tub 0 serves an object with [`limits`] (answering each call with what
/// `respond` gives); Tub 1 holds a reference to it and does not know the
/// interface, so it sends whatever it is told.
struct Fixture {
    net: Net,
    target: RemoteRef,
    object: ObjectId,
}

fn respond(method: &str) -> Result<Value, Failure> {
    Ok(match method {
        "bad_return" => Value::str("not an int"),
        "bad_return_list" => Value::List(vec![Value::int(1), Value::int(2), Value::int(3)]),
        "no_return_decl" => Value::int(5),
        "text" | "anytext" => Value::str("ok"),
        "flag" => Value::Bool(true),
        "nothing" => Value::None,
        "num" => Value::Float(1.5),
        _ => Value::int(0),
    })
}

impl Fixture {
    fn new() -> Fixture {
        let mut net = Net::new(2, Instant::now());
        let object = net[0].new_object_with_schema(Arc::new(limits()));
        let furl = net[0].register(object, Some("limits")).unwrap();
        net.respond_with(0, |c| respond(c.method.as_str()));
        let target = net.remote(1, &furl);
        assert_eq!(&target.interface()[..], RI.as_bytes());
        Fixture {
            net,
            target,
            object,
        }
    }

    fn call(
        &mut self,
        method: &str,
        args: &[Value],
        kwargs: &[(&str, Value)],
    ) -> (u64, Result<Value, CallError>) {
        let kwargs: Vec<(Text, Value)> = kwargs
            .iter()
            .map(|(k, v)| (Text::from(*k), v.clone()))
            .collect();
        let call = self.net[1]
            .call(&self.target, method, args, &kwargs)
            .unwrap();
        (call.req_id, self.net.answer_of(1, call))
    }

    /// The Violation text Tub 1 received for the call.
    fn violation(
        &mut self,
        method: &str,
        args: &[Value],
        kwargs: &[(&str, Value)],
    ) -> (u64, String) {
        match self.call(method, args, kwargs) {
            (r, Err(CallError::Remote(f))) => {
                assert_eq!(f.type_name, "foolscap.tokens.Violation", "{f:?}");
                assert_eq!(
                    f.parents,
                    [
                        "foolscap.tokens.Violation",
                        "builtins.Exception",
                        "builtins.BaseException",
                        "builtins.object"
                    ]
                );
                (r, f.value)
            }
            other => panic!("{method}: {other:?}"),
        }
    }

    /// A P2 location in `method` of call `req`.
    fn at(&self, req: u64, method: &str, rest: &str) -> String {
        format!(
            "<RootUnslicer>.<methodcall reqID={req} obj=<foolscap-rs object {}> iface={RI} methodname={method}>{rest}",
            self.object.0
        )
    }

    fn still_works(&mut self) {
        let (_, r) = self.call("limited", &[Value::bytes(b"0123456789"), ints(3)], &[]);
        assert_eq!(r, Ok(Value::int(0)), "the connection survives");
    }
}

fn ints(n: i64) -> Value {
    Value::List((0..n).map(Value::int).collect())
}

fn big(bytes: usize) -> Value {
    // 2**(8*(bytes-1)): a LONGINT of `bytes` body bytes
    Value::Int(Int::from(BigInt::from(1) << (8 * (bytes - 1))))
}

fn py(message: &str) -> String {
    crate::value::pyrepr::str_repr(message)
}

#[test]
fn token_time_rejections_have_pythons_texts_and_keep_the_connection() {
    let mut f = Fixture::new();
    type Case = (
        &'static str,
        Vec<Value>,
        Vec<(&'static str, Value)>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("limited", vec![Value::bytes(&[b'x'; 11]), ints(1)], vec![], ".<arguments arg[0]>", "STRING token too large: 11>10"),
        ("limited", vec![Value::str("text"), ints(1)], vec![], ".<arguments arg[0]>", "OPEN token rejected by ByteStringConstraint"),
        ("limited", vec![Value::bytes(b"x"), ints(4)], vec![], ".<arguments arg[1]>.[3]", "the list is full"),
        ("limited", vec![Value::bytes(b"x"), Value::List(vec![Value::int(1), Value::str("x")])], vec![], ".<arguments arg[1]>.[1]", "OPEN token rejected by IntegerConstraint"),
        ("limited", vec![Value::bytes(b"x"), Value::List(vec![big(1026)])], vec![], ".<arguments arg[1]>.[0]", "LONGINT token too large: 1026>1024"),
        ("limited", vec![Value::bytes(b"x"), Value::List(vec![Value::Float(1.5)])], vec![], ".<arguments arg[1]>.[0]", "FLOAT token rejected by IntegerConstraint"),
        ("limited", vec![Value::bytes(b"x")], vec![("extra", Value::int(1))], ".<arguments arg[extra]>", "unknown argument 'extra'"),
        ("limited", vec![Value::bytes(b"x"), ints(1), Value::int(3)], vec![], ".<arguments arg[2]>", "too many positional arguments: 2 >= 2"),
        ("limited", vec![Value::bytes(b"x")], vec![("b", Value::bytes(b"y"))], ".<arguments arg[b]>", "got multiple values for keyword argument 'b'"),
        ("i32", vec![big(5)], vec![], ".<arguments arg[0]>", "LONGINT token rejected by IntegerConstraint"),
        ("i1024", vec![big(1025)], vec![], ".<arguments arg[0]>", "LONGINT token too large: 1025>1024"),
        ("i8", vec![big(9)], vec![], ".<arguments arg[0]>", "LONGINT token too large: 9>8"),
        ("i1024", vec![Value::Float(1.0)], vec![], ".<arguments arg[0]>", "FLOAT token rejected by IntegerConstraint"),
        ("i1024", vec![Value::Bool(true)], vec![], ".<arguments arg[0]>", "OPEN token rejected by IntegerConstraint"),
        ("flag", vec![Value::None], vec![], ".<arguments arg[0]>", "unacceptable OPEN type: ('none',) not in my list [('boolean',)]"),
        ("num", vec![Value::bytes(b"1")], vec![], ".<arguments arg[0]>", "STRING token rejected by NumberConstraint"),
        ("pair", vec![Value::Tuple(vec![Value::int(1), Value::bytes(b"x"), Value::int(2)])], vec![], ".<arguments arg[0]>.[2]", "the tuple is full"),
        ("pair", vec![Value::List(vec![Value::int(1), Value::bytes(b"x")])], vec![], ".<arguments arg[0]>", "unacceptable OPEN type: ('list',) not in my list [('tuple',)]"),
        ("mapping", vec![Value::Dict((0..3).map(|i| (Value::bytes(&[b'a' + i as u8]), Value::int(i))).collect())], vec![], ".<arguments arg[0]>.{}", "the dict is full"),
        ("mapping", vec![Value::Dict(vec![(Value::str("k"), Value::int(1))])], vec![], ".<arguments arg[0]>.{}", "OPEN token rejected by ByteStringConstraint"),
        ("aset", vec![Value::Set(vec![Value::int(1), Value::int(2), Value::int(3)])], vec![], ".<arguments arg[0]>.??", "the set is full"),
        ("choice", vec![Value::Float(1.5)], vec![], ".<arguments arg[0]>", "typebyte FLOAT does not satisfy any of (<foolscap.constraint.IntegerConstraint object>, <foolscap.constraint.ByteStringConstraint object>)"),
        ("choice", vec![ints(1)], vec![], ".<arguments arg[0]>", "typebyte OPEN does not satisfy any of (<foolscap.constraint.IntegerConstraint object>, <foolscap.constraint.ByteStringConstraint object>)"),
        ("anything", vec![big(1002)], vec![], ".<arguments arg[0]>", "LONGINT token too large: 1002>1000"),
        ("ref", vec![Value::int(1)], vec![], ".<arguments arg[0]>", "INT token rejected by RemoteInterfaceConstraint"),
        ("anyref", vec![Value::bytes(b"x")], vec![], ".<arguments arg[0]>", "STRING token rejected by RemoteInterfaceConstraint"),
        ("nested", vec![Value::List(vec![Value::Tuple(vec![Value::int(1), Value::bytes(b"ab")]), Value::Tuple(vec![Value::int(2), Value::bytes(b"abc")])])], vec![], ".<arguments arg[0]>.[1].[1]", "STRING token too large: 3>2"),
        // Python drops the connection for these (strict tasters); we
        // answer with a Violation of the same text
        ("anytext", vec![Value::bytes(b"x")], vec![], ".<arguments arg[0]>", "invalid token type: STRING"),
        ("flag", vec![Value::int(1)], vec![], ".<arguments arg[0]>", "invalid token type: INT"),
        ("nothing", vec![Value::int(0)], vec![], ".<arguments arg[0]>", "invalid token type: INT"),
    ];
    for (method, args, kwargs, rest, message) in cases {
        let (r, text) = f.violation(method, &args, &kwargs);
        let want = format!("Violation ({}): ({},)", f.at(r, method, rest), py(message));
        assert_eq!(text, want, "{method}({args:?}, {kwargs:?})");
    }
    // P1: the method name
    let (r, text) = f.violation("nosuch", &[], &[]);
    assert_eq!(
        text,
        format!(
            "Violation ({}): ({},)",
            f.at(r, "nosuch", ""),
            py("method 'nosuch' not defined in RILimits.gsr.example")
        )
    );
    f.still_works();
}

#[test]
fn whole_argument_checks_then_missing_arguments() {
    let mut f = Fixture::new();
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "text",
            vec![Value::str("sixsix")],
            "Violation (s=): ('string too long (6 > 5)',)",
        ),
        (
            "shortbytes",
            vec![Value::bytes(b"x")],
            "Violation (b=): ('string too short (1 < 2)',)",
        ),
        (
            "pair",
            vec![Value::Tuple(vec![Value::int(1)])],
            "Violation (t=): ('wrong size tuple',)",
        ),
        (
            "minlist",
            vec![ints(1)],
            "Violation (l=): ('list too short',)",
        ),
        (
            "limited",
            vec![Value::bytes(b"x")],
            "Violation: (\"missing required argument 'l'\",)",
        ),
        (
            "opt",
            vec![],
            "Violation: (\"missing required argument 'a'\",)",
        ),
    ];
    for (method, args, want) in cases {
        let (_, text) = f.violation(method, &args, &[]);
        assert_eq!(text, want, "{method}({args:?})");
    }
    // accepted at the limits
    let ok: Vec<(&str, Vec<Value>)> = vec![
        ("limited", vec![Value::bytes(&[b'x'; 10]), ints(3)]),
        ("text", vec![Value::str("fivef")]),
        ("shortbytes", vec![Value::bytes(b"abc")]),
        ("i32", vec![Value::int((1 << 31) - 1)]),
        ("i32", vec![Value::int(-(1 << 31))]),
        ("i1024", vec![big(1024)]),
        ("i8", vec![big(8)]),
        ("flag", vec![Value::Bool(false)]),
        ("nothing", vec![Value::None]),
        ("num", vec![Value::int(3)]),
        (
            "pair",
            vec![Value::Tuple(vec![Value::int(1), Value::bytes(b"x")])],
        ),
        (
            "mapping",
            vec![Value::Dict(vec![
                (Value::bytes(b"a"), Value::int(1)),
                (Value::bytes(b"b"), Value::int(2)),
            ])],
        ),
        ("aset", vec![Value::Set(vec![Value::int(1), Value::int(2)])]),
        // Python fails an assertion on an immutable-set under SetOf
        (
            "aset",
            vec![Value::FrozenSet(vec![Value::int(1), Value::int(2)])],
        ),
        ("choice", vec![Value::bytes(b"x")]),
        ("choice_list", vec![ints(2)]),
        ("opt", vec![Value::int(1)]),
        ("anything", vec![big(1000)]),
        (
            "nested",
            vec![Value::List(vec![Value::Tuple(vec![
                Value::int(1),
                Value::bytes(b"ab"),
            ])])],
        ),
    ];
    for (method, args) in ok {
        let (_, r) = f.call(method, &args, &[]);
        assert!(r.is_ok(), "{method}({args:?}): {r:?}");
    }
    // a container under ChoiceOf that matches no alternative (Python
    // drops the connection here; we answer with a Violation)
    let (_, text) = f.violation("choice_list", &[Value::List(vec![Value::str("x")])], &[]);
    assert!(text.contains("does not satisfy any of"), "{text}");
    f.still_works();
}

#[test]
fn results_are_checked_before_they_are_sent() {
    let mut f = Fixture::new();
    let obj = format!("<foolscap-rs object {}>", f.object.0);
    for (method, message) in [
        ("bad_return", py("''not an int'' is not a number")),
        ("bad_return_list", py("list too long")),
        ("no_return_decl", py("'5' is not None")),
    ] {
        let (_, text) = f.violation(method, &[], &[]);
        assert_eq!(
            text,
            format!("Violation (in return value of {obj}.{method}): ({message},)")
        );
    }
    f.still_works();
}

#[test]
fn callers_check_arguments_before_sending_and_use_up_the_reqid() {
    let mut f = Fixture::new();
    f.net[1].add_interface(Arc::new(limits()));
    type Case = (
        &'static str,
        Vec<Value>,
        Vec<(&'static str, Value)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("limited", vec![Value::bytes(&[b'x'; 11]), ints(1)], vec![], "Violation (RILimits.gsr.example.limited(b=)): ('string too long (11 > 10)',)"),
        ("limited", vec![Value::str("text"), ints(1)], vec![], "Violation (RILimits.gsr.example.limited(b=)): (\"''text'' is not a bytestring\",)"),
        ("limited", vec![Value::bytes(b"x"), ints(1), Value::int(1)], vec![], "Violation (RILimits.gsr.example.limited()): ('method takes 2 positional arguments (3 given)',)"),
        ("limited", vec![Value::bytes(b"x"), ints(1)], vec![("extra", Value::int(1))], "Violation (RILimits.gsr.example.limited()): (\"unknown argument 'extra'\",)"),
        ("limited", vec![Value::bytes(b"x")], vec![], "Violation (RILimits.gsr.example.limited()): (\"missing required argument 'l'\",)"),
        // what would make a Python receiver drop the connection
        ("anytext", vec![Value::bytes(b"x")], vec![], "Violation (RILimits.gsr.example.anytext(s=)): ('not a unicode object',)"),
        ("flag", vec![Value::int(1)], vec![], "Violation (RILimits.gsr.example.flag(x=)): ('not a bool',)"),
        ("nothing", vec![Value::int(0)], vec![], "Violation (RILimits.gsr.example.nothing(x=)): (\"'0' is not None\",)"),
        ("aset", vec![Value::FrozenSet(vec![Value::int(1)])], vec![], "Violation (RILimits.gsr.example.aset(s=)): ('obj is a set, but not a mutable one',)"),
        ("choice_list", vec![ints(1)], vec![], "Violation (RILimits.gsr.example.choice_list(c=)): ('a list under ChoiceOf makes a Python receiver drop the connection',)"),
    ];
    let first = f.call("limited", &[Value::bytes(b"x"), ints(1)], &[]).0;
    let n = cases.len() as u64;
    for (method, args, kwargs, want) in cases {
        let kwargs: Vec<(Text, Value)> = kwargs
            .into_iter()
            .map(|(k, v)| (Text::from(k), v))
            .collect();
        match f.net[1].call(&f.target, method, &args, &kwargs) {
            Err(TubError::Broker(BrokerError::Violation(v))) => assert_eq!(v.to_string(), want),
            other => panic!("{method}: {other:?}"),
        }
    }
    // a method the interface lacks
    match f.net[1].call(&f.target, "nosuch", &[], &[]) {
        Err(TubError::Broker(BrokerError::Violation(v))) => {
            assert!(v.location.is_none());
            assert!(
                v.message
                    .starts_with("RILimits.gsr.example(<RemoteReference at clid"),
                "{v}"
            );
            assert!(v.message.ends_with(") does not offer nosuch"), "{v}");
        }
        other => panic!("{other:?}"),
    }
    // callRemoteOnly is checked too
    match f.net[1].call_only(&f.target, "limited", &[Value::bytes(b"x")], &[]) {
        Err(TubError::Broker(BrokerError::Violation(v))) => assert_eq!(
            v.to_string(),
            "Violation (RILimits.gsr.example.limited()): (\"missing required argument 'l'\",)"
        ),
        other => panic!("{other:?}"),
    }
    f.net.run();
    assert!(f.net.take_calls(0).is_empty());
    // nothing went out, yet every refused call used a reqID up
    let (next, r) = f.call("limited", &[Value::bytes(b"x"), ints(1)], &[]);
    assert_eq!(r, Ok(Value::int(0)));
    assert_eq!(next, first + n + 2);
}

#[test]
fn answers_are_checked_token_by_token_against_our_declaration() {
    // Tub 0 announces the interface name but checks nothing; Tub 1 knows
    // a stricter declaration under that name
    let mut net = Net::new(2, Instant::now());
    let object = net[0].new_object(RI);
    let furl = net[0].register(object, Some("loose")).unwrap();
    net.respond_with(0, |c| {
        Ok(match c.method.as_str() {
            "i1024" => Value::str("text"),
            "bad_return_list" => ints(3),
            "shortbytes" => Value::bytes(b"abcdef"),
            "text" => Value::str("abcdef"),
            "pair" => Value::Tuple(vec![Value::int(1)]),
            _ => Value::int(0),
        })
    });
    net[1].add_interface(Arc::new(
        limits()
            .with_method(m("shortbytes", vec![], Constraint::byte_string(Some(3))))
            .with_method(m("text", vec![], Constraint::unicode(Some(5))))
            .with_method(m(
                "pair",
                vec![],
                Constraint::tuple_of([Constraint::int(), Constraint::int()]),
            ))
            .with_method(m("i1024", vec![], Constraint::int())),
    ));
    let target = net.remote(1, &furl);
    let call = |net: &mut Net, method: &str| {
        let args = if method == "opt" {
            vec![Value::int(1)]
        } else {
            vec![]
        };
        let c = net[1].call(&target, method, &args, &[]).unwrap();
        (c.req_id, net.answer_of(1, c))
    };
    let (r, a) = call(&mut net, "i1024");
    assert_eq!(
        a,
        Err(CallError::Violation(format!(
            "Violation (<RootUnslicer>.Answer(req={r})): ('OPEN token rejected by IntegerConstraint in inbound method results',)"
        )))
    );
    let (r, a) = call(&mut net, "bad_return_list");
    assert_eq!(
        a,
        Err(CallError::Violation(format!(
            "Violation (<RootUnslicer>.Answer(req={r}).[2]): ('the list is full',)"
        )))
    );
    let (r, a) = call(&mut net, "shortbytes");
    assert_eq!(
        a,
        Err(CallError::Violation(format!(
            "Violation (<RootUnslicer>.Answer(req={r})): ('STRING token too large: 6>3 in inbound method results',)"
        )))
    );
    // no whole-value checks on answers, as in Python
    assert_eq!(call(&mut net, "text").1, Ok(Value::str("abcdef")));
    assert_eq!(
        call(&mut net, "pair").1,
        Ok(Value::Tuple(vec![Value::int(1)]))
    );
    assert_eq!(call(&mut net, "opt").1, Ok(Value::int(0)));
}

/// A receiver whose object 1 declares `schema`.
struct OneObject(Arc<InterfaceSchema>, WireRefs);

impl RefDecoder for OneObject {
    fn decode_ref(&mut self, r: WireRef, offset: u64) -> Result<Value, DecodeError> {
        self.1.decode_ref(r, offset)
    }

    fn call_schema(&mut self, clid: i64) -> Option<CallTarget> {
        (clid == 1).then(|| CallTarget {
            schema: self.0.clone(),
            object: ObjectId(9),
        })
    }
}

#[test]
fn an_over_long_string_is_refused_at_its_header_and_never_buffered() {
    let iface = Arc::new(limits());
    let mut refs = OneObject(iface, WireRefs::default());
    let mut ser = Serializer::new(VocabTable::V1);
    let mut out = BytesMut::new();
    let huge = Value::bytes(&vec![b'x'; 16 << 20]);
    ser.write_call(&mut out, 7, 1, b"limited", &[huge, ints(1)], &[])
        .unwrap();
    ser.write_call(
        &mut out,
        8,
        1,
        b"limited",
        &[Value::bytes(b"ok"), ints(1)],
        &[],
    )
    .unwrap();
    let mut de = Deserializer::new(VocabTable::V1, Limits::default()).pb_messages();
    let mut events = Vec::new();
    let mut peak = 0;
    let mut fed = 0;
    let mut first_event_after = None;
    for chunk in out.chunks(64 << 10) {
        de.feed(chunk);
        fed += chunk.len();
        while let Some(ev) = de.poll_pb_event_with(&mut refs).unwrap() {
            events.push(ev);
            first_event_after.get_or_insert(fed);
        }
        peak = peak.max(de.in_progress_bytes());
    }
    assert!(peak <= 128 << 10, "held {peak} bytes");
    // reported at once, as Python does, while the body is still arriving
    assert_eq!(first_event_after, Some(64 << 10));
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[0] {
        PbEvent::CallViolation {
            req_id: 7,
            error: DecodeError::Violation { violation, .. },
        } => assert_eq!(
            violation.to_string(),
            "Violation (<RootUnslicer>.<methodcall reqID=7 obj=<foolscap-rs object 9> iface=RILimits.gsr.example methodname=limited>.<arguments arg[0]>): ('STRING token too large: 16777216>10',)"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&events[1], PbEvent::Call(c) if c.req_id == 8));
}

#[test]
fn unchecked_objects_take_anything() {
    let mut net = Net::new(2, Instant::now());
    let (_, furl) = net.publish(0, "plain");
    net.respond_with(0, |_| Ok(Value::int(0)));
    net[1].add_interface(Arc::new(limits()));
    let target = net.remote(1, &furl);
    let c = net[1]
        .call(&target, "limited", &[Value::bytes(&[b'x'; 100])], &[])
        .unwrap();
    assert_eq!(net.answer_of(1, c), Ok(Value::int(0)));
}

fn point(state: Vec<(&str, Value)>) -> Value {
    Value::Copyable(Box::new(crate::value::Copyable {
        type_name: Text::from("gsr.SPoint"),
        state: state.into_iter().map(|(k, v)| (Text::from(k), v)).collect(),
    }))
}

#[test]
fn copyable_attributes_are_checked_wherever_the_type_arrives() {
    let mut f = Fixture::new();
    f.net[0].register_copyable_schema(Arc::new(
        super::CopyableSchema::new("gsr.SPoint")
            .with_attribute("x", Constraint::int())
            .with_attribute("y", Constraint::int()),
    ));
    // under Any(), as in the reference capture
    let (r, text) = f.violation("anything", &[point(vec![("x", Value::str("no"))])], &[]);
    assert_eq!(
        text,
        format!(
            "Violation ({}): ('OPEN token rejected by IntegerConstraint',)",
            f.at(r, "anything", ".<arguments arg[0]>.???")
        )
    );
    let (r, text) = f.violation(
        "anything",
        &[point(vec![("x", Value::int(1)), ("z", Value::int(2))])],
        &[],
    );
    assert_eq!(
        text,
        format!(
            "Violation ({}): (\"unknown attribute 'z'\",)",
            f.at(r, "anything", ".<arguments arg[0]>.???")
        )
    );
    // missing attributes are not detected, as in Python
    let (_, ok) = f.call("anything", &[point(vec![("x", Value::int(1))])], &[]);
    assert_eq!(ok, Ok(Value::int(0)));
    // a copyable where the argument wants something else
    let (r, text) = f.violation("pair", &[point(vec![])], &[]);
    assert_eq!(
        text,
        format!(
            "Violation ({}): (\"unacceptable OPEN type: ('copyable',) not in my list [('tuple',)]\",)",
            f.at(r, "pair", ".<arguments arg[0]>")
        )
    );
    f.still_works();
}

#[test]
fn copyable_schemas_apply_to_unchecked_objects_and_answers_too() {
    let mut net = Net::new(2, Instant::now());
    let (_, furl) = net.publish(0, "plain");
    net.respond_with(0, |c| {
        Ok(match c.method.as_str() {
            "bad_point" => point(vec![("q", Value::int(1))]),
            _ => c.args.first().cloned().unwrap_or(Value::None),
        })
    });
    for tub in [0, 1] {
        net[tub].register_copyable_schema(Arc::new(
            super::CopyableSchema::new("gsr.SPoint").with_attribute("x", Constraint::int()),
        ));
    }
    let target = net.remote(1, &furl);
    let c = net[1]
        .call(&target, "echo", &[point(vec![("q", Value::int(1))])], &[])
        .unwrap();
    match net.answer_of(1, c) {
        Err(CallError::Remote(f)) => assert!(
            f.value
                .ends_with("<arguments arg[0]>.???): (\"unknown attribute 'q'\",)"),
            "{}",
            f.value
        ),
        other => panic!("{other:?}"),
    }
    // an answer carrying a point Tub 1's schema refuses
    let c = net[1].call(&target, "bad_point", &[], &[]).unwrap();
    let r = c.req_id;
    assert_eq!(
        net.answer_of(1, c),
        Err(CallError::Violation(format!(
            "Violation (<RootUnslicer>.Answer(req={r}).???): (\"unknown attribute 'q'\",)"
        )))
    );
    // accepted when the schema takes unknown attributes
    net[1].register_copyable_schema(Arc::new(
        super::CopyableSchema::new("gsr.SPoint").accepting_unknown(),
    ));
    let c = net[1].call(&target, "bad_point", &[], &[]).unwrap();
    assert!(net.answer_of(1, c).is_ok());
}

#[test]
fn references_are_checked_by_their_announced_interface() {
    let mut f = Fixture::new();
    let other = f.net[1].new_object("RIOther");
    let plain = f.net[1].new_object("");
    let (_, r) = f.call("ref", &[Value::Local(other)], &[]);
    assert_eq!(r, Ok(Value::int(0)));
    let (_, r) = f.call("anyref", &[Value::Local(plain)], &[]);
    assert_eq!(r, Ok(Value::int(0)));
    let (_, text) = f.violation("ref", &[Value::Local(plain)], &[]);
    assert!(
        text.starts_with("Violation (r=): (\"'<RemoteReference at clid ")
            && text.ends_with(">' does not provide RemoteInterface RIOther\",)"),
        "{text}"
    );
    // BooleanConstraint(True)
    let mut net = Net::new(2, Instant::now());
    let only_true = InterfaceSchema::new("RIBool").with_method(m(
        "t",
        vec![req("x", Constraint::Boolean { value: Some(true) })],
        Constraint::Any,
    ));
    let object = net[0].new_object_with_schema(Arc::new(only_true));
    let furl = net[0].register(object, Some("b")).unwrap();
    net.respond_with(0, |_| Ok(Value::None));
    let target = net.remote(1, &furl);
    let c = net[1]
        .call(&target, "t", &[Value::Bool(false)], &[])
        .unwrap();
    match net.answer_of(1, c) {
        Err(CallError::Remote(f)) => assert!(
            f.value
                .ends_with(".<arguments arg[0]>.<bool>): ('This boolean can only be True',)"),
            "{}",
            f.value
        ),
        other => panic!("{other:?}"),
    }
    let c = net[1]
        .call(&target, "t", &[Value::Bool(true)], &[])
        .unwrap();
    assert_eq!(net.answer_of(1, c), Ok(Value::None));
}

#[test]
fn unicode_regexp_is_searched_as_python_does() {
    let mut net = Net::new(2, Instant::now());
    let iface = InterfaceSchema::new("RIRe").with_method(m(
        "name",
        vec![req(
            "s",
            Constraint::Unicode {
                max_length: Some(10),
                min_length: 0,
                regexp: Some("^[a-z]+$".into()),
            },
        )],
        Constraint::Any,
    ));
    let object = net[0].new_object_with_schema(Arc::new(iface));
    let furl = net[0].register(object, Some("re")).unwrap();
    net.respond_with(0, |_| Ok(Value::None));
    let target = net.remote(1, &furl);
    let c = net[1]
        .call(&target, "name", &[Value::str("abc")], &[])
        .unwrap();
    assert_eq!(net.answer_of(1, c), Ok(Value::None));
    let c = net[1]
        .call(&target, "name", &[Value::str("ab1")], &[])
        .unwrap();
    match net.answer_of(1, c) {
        Err(CallError::Remote(f)) => {
            assert_eq!(f.value, "Violation (s=): ('regexp failed to match',)")
        }
        other => panic!("{other:?}"),
    }
}

/// Decoding cost of schema'd calls against unchecked ones (figures, not
/// an assertion): `cargo test --release -p foolscap-core --lib
/// decode_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn decode_cost_of_checked_calls() {
    let iface = Arc::new(limits());
    let mut ser = Serializer::new(VocabTable::V1);
    let mut out = BytesMut::new();
    const N: u64 = 200_000;
    for r in 1..=N {
        ser.write_call(
            &mut out,
            r,
            1,
            b"limited",
            &[Value::bytes(b"0123456789"), ints(3)],
            &[],
        )
        .unwrap();
    }
    for (name, clid) in [("unchecked", 2), ("checked", 1)] {
        // the same bytes with the target clid patched: write again
        let mut ser = Serializer::new(VocabTable::V1);
        let mut out = BytesMut::new();
        for r in 1..=N {
            ser.write_call(
                &mut out,
                r,
                clid,
                b"limited",
                &[Value::bytes(b"0123456789"), ints(3)],
                &[],
            )
            .unwrap();
        }
        let mut refs = OneObject(iface.clone(), WireRefs::default());
        let mut de = Deserializer::new(VocabTable::V1, Limits::default()).pb_messages();
        let start = std::time::Instant::now();
        let mut calls = 0;
        for chunk in out.chunks(64 << 10) {
            de.feed(chunk);
            while let Some(ev) = de.poll_pb_event_with(&mut refs).unwrap() {
                assert!(matches!(ev, PbEvent::Call(_)), "{ev:?}");
                calls += 1;
            }
        }
        assert_eq!(calls, N);
        let t = start.elapsed();
        println!(
            "{name}: {N} calls decoded in {t:?} ({:.0} ns per call)",
            t.as_nanos() as f64 / N as f64
        );
    }
    drop(out);
}

/// The whole-value check of an `i64` (checked without a `BigInt`) gives
/// what the `BigInt` rule gives: within 32 bits signed without
/// `maxBytes`, else within `8 * maxBytes` bits of magnitude.
#[test]
fn small_ints_are_checked_as_big_ones() {
    use super::check::{check_result, Direction};
    let no_locals = |_| None;
    let values = [
        0,
        1,
        -1,
        255,
        256,
        -255,
        -256,
        (1 << 31) - 1,
        1 << 31,
        -(1 << 31),
        -(1 << 31) - 1,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
    ];
    for max_bytes in [None, Some(0), Some(1), Some(4), Some(8)] {
        for number in [false, true] {
            if number && max_bytes.is_none() {
                continue;
            }
            let c = if number {
                Constraint::Number {
                    max_bytes: max_bytes.unwrap(),
                }
            } else {
                Constraint::Integer { max_bytes }
            };
            let method = MethodSchema::new("f").returning(c.clone());
            for i in values {
                let b = BigInt::from(i);
                let too_large = match max_bytes {
                    None => b >= BigInt::from(1i64 << 31) || b < BigInt::from(-(1i64 << 31)),
                    Some(n) => b.magnitude().bits() > 8 * n as u64,
                };
                let got = check_result(&method, &Value::int(i), Direction::Inbound, &no_locals)
                    .map_err(|v| v.message);
                let want = if too_large {
                    Err("number too large".to_string())
                } else {
                    Ok(())
                };
                assert_eq!(got, want, "{c:?} {i}");
            }
        }
    }
}

/// Two arguments of one name: each positional argument is checked
/// against the first of that name, as a lookup by name finds it.
#[test]
fn repeated_argument_names_check_against_the_first() {
    use super::check::{check_call, Direction};
    let no_locals = |_| None;
    let iface = InterfaceSchema::new("RIRepeat.example").with_method(m(
        "f",
        vec![
            Argument::required("a", Constraint::int32()),
            Argument::required("a", Constraint::bytes()),
        ],
        Constraint::Any,
    ));
    let method = iface.method("f").unwrap();
    let check = |args: &[Value]| {
        check_call(&iface, method, args, &[], Direction::Inbound, &no_locals)
            .map_err(|v| v.to_string())
    };
    assert_eq!(check(&[Value::int(1), Value::int(2)]), Ok(()));
    assert_eq!(
        check(&[Value::int(1), Value::bytes(b"x")]),
        Err("Violation (a=): (\"'b'x'' is not a number\",)".to_string())
    );
}
