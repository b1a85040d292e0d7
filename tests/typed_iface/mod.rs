//! The typed interface the typed tests use on both sides: the Rust twin
//! of `RITyped` in `tests/interop/fstyped.py` (same name, same methods,
//! same constraints where Rust types allow).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use foolscap::typed::{BigInt, Bytes, Failure, Reply, Value};
use foolscap::{Copyable, Tub};

/// Python: `class Point(Copyable, RemoteCopy)`, type `typed.Point`.
#[derive(Debug, Clone, PartialEq, Copyable)]
#[foolscap(type_name = "typed.Point")]
pub struct Point {
    pub x: i64,
    pub y: i64,
    pub label: Option<String>,
}

/// Everything a Python value can be, in Rust types, in one tuple.
pub type Mixed = (
    bool,
    f64,
    String,
    Bytes,
    BigInt,
    (i32, String),
    BTreeMap<String, i64>,
    BTreeSet<i64>,
);

#[foolscap::remote_interface(name = "RITyped.foolscap-rs.example")]
pub trait Typed {
    /// `def add(a=int, b=int): return int` (an `async fn`: answered when
    /// its future completes)
    async fn add(&self, a: i64, b: i64) -> Result<i64, Failure>;
    /// `def put_bytes(data=ByteStringConstraint(maxLength=65536)): return int`
    fn put_bytes(&self, #[max_len = 65536] data: Vec<u8>) -> u64;
    /// `def put_list(items=ListOf(int, maxLength=100)): return int`
    fn put_list(&self, #[max_len = 100] items: Vec<i64>) -> u64;
    /// `def greet(name=UnicodeConstraint(20), times=Optional(int)): return str`
    fn greet(&self, #[max_len = 20] name: String, #[optional] times: Option<u32>) -> String;
    /// `def mixed(m=TupleOf(bool, float, str, bytes, int, (int, str), DictOf(str, int), SetOf(int))): return ...`
    fn mixed(&self, m: Mixed) -> Mixed;
    /// `def maps(m=DictOf(str, ListOf(int)), s=SetOf(str)): return TupleOf(...)`
    fn maps(
        &self,
        m: HashMap<String, Vec<i32>>,
        s: HashSet<String>,
    ) -> (HashMap<String, Vec<i32>>, HashSet<String>);
    /// `def maybe(x=ChoiceOf(IntegerConstraint(8), None)): return ChoiceOf(IntegerConstraint(8), None)`
    /// (a str under a ChoiceOf would make a Python receiver drop the
    /// connection: docs/protocol.md §6.5)
    fn maybe(&self, x: Option<i64>) -> Option<i64>;
    /// `def move_point(p=Any(), dx=int): return Any()`
    fn move_point(&self, p: Point, dx: i64) -> Point;
    /// `def fail(msg=str): return None`: raises ValueError(msg)
    fn fail(&self, msg: String) -> Result<(), Failure>;
    /// `def later(x=int): return int`: answers from another thread
    fn later(&self, x: i64, reply: Reply<i64>);
    /// `def call_back(other=RITyped, x=int): return int`: `other.add(x, x)`,
    /// awaited
    async fn call_back(&self, other: TypedClient, x: i64) -> Result<i64, Failure>;
    /// `def int32(a=IntegerConstraint()): return int`
    fn int32(&self, #[schema(Constraint::int32())] a: i64) -> i64;
    /// `loose = UnconstrainedMethod()`: `def remote_loose(self, a, b=None)`,
    /// returns a + len(b): no schema checks, only the Rust types'
    #[unconstrained]
    fn loose(&self, a: i64, #[optional] b: Option<String>) -> i64;
    /// `anything = UnconstrainedMethod()`: echoes its argument
    #[unconstrained]
    fn anything(&self, v: Value) -> Value;
    /// `wrong = UnconstrainedMethod()`: the Python twin answers a str
    #[unconstrained]
    fn wrong(&self) -> i64;
}

/// The Rust implementation (`Clone`: its `async fn`s' futures own a
/// clone).
#[derive(Default, Clone)]
pub struct TypedImpl {
    pub notes: Arc<Mutex<Vec<String>>>,
}

/// Pending once, then ready (waking itself): an `async fn` that really
/// suspends, on any executor.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Typed for TypedImpl {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Failure> {
        YieldOnce(false).await;
        a.checked_add(b)
            .ok_or_else(|| Failure::new("builtins.OverflowError", "int too large"))
    }

    fn put_bytes(&self, data: Vec<u8>) -> u64 {
        data.len() as u64
    }

    fn put_list(&self, items: Vec<i64>) -> u64 {
        items.len() as u64
    }

    fn greet(&self, name: String, times: Option<u32>) -> String {
        format!("hello {name}").repeat(times.unwrap_or(1) as usize)
    }

    fn mixed(&self, m: Mixed) -> Mixed {
        m
    }

    fn maps(
        &self,
        m: HashMap<String, Vec<i32>>,
        s: HashSet<String>,
    ) -> (HashMap<String, Vec<i32>>, HashSet<String>) {
        (m, s)
    }

    fn maybe(&self, x: Option<i64>) -> Option<i64> {
        x.map(|n| n + 1)
    }

    fn move_point(&self, p: Point, dx: i64) -> Point {
        Point { x: p.x + dx, ..p }
    }

    fn fail(&self, msg: String) -> Result<(), Failure> {
        Err(Failure::new("builtins.ValueError", msg))
    }

    fn later(&self, x: i64, reply: Reply<i64>) {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            reply.ok(x * 2)
        });
    }

    async fn call_back(&self, other: TypedClient, x: i64) -> Result<i64, Failure> {
        // never block: await the caller's answer
        other.add_future(x, x).await.map_err(|e| e.to_failure())
    }

    fn int32(&self, a: i64) -> i64 {
        a
    }

    fn loose(&self, a: i64, b: Option<String>) -> i64 {
        a + b.map_or(0, |s| s.len() as i64)
    }

    fn anything(&self, v: Value) -> Value {
        v
    }

    fn wrong(&self) -> i64 {
        0
    }
}

/// The typed calls both servers (Rust and its Python twin) answer alike,
/// from a typed client on `client`.
pub fn exercise(client: &Tub, typed: &TypedClient, rust_server: bool) {
    const T: Duration = Duration::from_secs(30);
    assert_eq!(typed.add(1, 2).unwrap(), 3);
    assert_eq!(typed.put_bytes(vec![7; 65536]).unwrap(), 65536);
    assert_eq!(typed.put_list((0..100).collect()).unwrap(), 100);
    assert_eq!(typed.greet("ann".into(), None).unwrap(), "hello ann");
    assert_eq!(
        typed.greet("bo".into(), Some(2)).unwrap(),
        "hello bohello bo"
    );
    let mixed = (
        true,
        2.5,
        "h\u{e9}llo".to_string(),
        Bytes::from_static(b"\x00\xff"),
        BigInt::from(2).pow(100),
        (-7, "x".to_string()),
        BTreeMap::from([("k".to_string(), 1), ("l".to_string(), -2)]),
        BTreeSet::from([3, 1, 2]),
    );
    assert_eq!(typed.mixed(mixed.clone()).unwrap(), mixed);
    let maps = (
        HashMap::from([("a".to_string(), vec![1, 2]), ("b".to_string(), vec![])]),
        HashSet::from(["x".to_string(), "y".to_string()]),
    );
    assert_eq!(typed.maps(maps.0.clone(), maps.1.clone()).unwrap(), maps);
    assert_eq!(typed.maybe(Some(4)).unwrap(), Some(5));
    assert_eq!(typed.maybe(None).unwrap(), None);
    let p = Point {
        x: 1,
        y: 2,
        label: Some("p".into()),
    };
    assert_eq!(
        typed.move_point(p.clone(), 10).unwrap(),
        Point { x: 11, ..p }
    );
    let err = typed.fail("boom".into()).unwrap_err();
    let f = err.failure().expect("a remote failure");
    assert!(f.check("builtins.ValueError"));
    assert_eq!(f.value, "boom");
    let err = typed.add(i64::MAX, 1).unwrap_err();
    if rust_server {
        assert_eq!(err.failure().unwrap().value, "int too large");
    } else {
        // Python answers 2**63, which an i64 cannot hold
        assert_eq!(
            err.to_string(),
            "the answer of RITyped.foolscap-rs.example.add() must be an int from \
             -9223372036854775808 to 9223372036854775807 (i64), not an int of 64 bits"
        );
    }
    // an answer of the wrong type (the method is unconstrained: no schema
    // check on the answer, the Rust type refuses it)
    if !rust_server {
        let err = typed.wrong().unwrap_err();
        assert!(matches!(err, foolscap::Error::Convert(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the answer of RITyped.foolscap-rs.example.wrong() must be int, not str"
        );
    }
    // answered later, from another thread
    assert_eq!(typed.later(21).unwrap(), 42);
    // a reference to the interface as an argument: the server calls us back
    let own = client
        .register(Arc::new(TypedServer(TypedImpl::default())), None)
        .unwrap();
    let own = TypedClient::connect(client, &own.to_string(), T);
    // our own FURL is a local object, not a reference to call through
    assert!(matches!(own, Err(foolscap::Error::Convert(_))), "{own:?}");
    let back = client.local(Arc::new(TypedServer(TypedImpl::default())));
    let echoed = typed.anything(back.clone()).unwrap();
    assert_eq!(echoed, back); // our object came home

    // one of our objects as a typed reference: the server calls it back
    let mine = TypedClient::local(client, Arc::new(TypedServer(TypedImpl::default())));
    assert_eq!(typed.call_back(mine.clone(), 5).unwrap(), 10);
    let err = mine.add(1, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the target of RITyped.foolscap-rs.example.add() is one of our own objects: call it directly"
    );
    // the server's own object comes home to it: a local object there,
    // which its stub cannot call (the failure says so)
    let err = typed.call_back(typed.clone(), 5).unwrap_err();
    let failure = err.failure().expect("a remote failure");
    if rust_server {
        // the adapter's TypeError; a receiver that checks the schema (as
        // Python's does) refuses the your-reference first, a Violation
        assert!(
            failure.value.contains("one of our own objects")
                || failure.check("foolscap.tokens.Violation"),
            "{err}"
        );
    } else {
        // Python's `Referenceable` constraint refuses its own object
        // coming home
        assert!(failure.check("foolscap.tokens.Violation"), "{err}");
    }
    // callback style
    let (tx, rx) = mpsc::channel();
    typed.add_async(20, 22, move |r| {
        tx.send(r.map_err(|e| e.to_string())).unwrap()
    });
    // the connection is still fine after failures (this blocking call
    // also carries the answer above on an engine whose loop runs only
    // while a thread waits: the mio current-thread runtime)
    assert_eq!(typed.add(2, 3).unwrap(), 5);
    assert_eq!(rx.recv_timeout(T).unwrap(), Ok(42));
}
