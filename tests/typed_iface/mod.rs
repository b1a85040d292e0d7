//! The typed interface the typed tests use on both sides: the Rust twin
//! of `RITyped` in `tests/interop/fstyped.py` (same name, same methods,
//! same constraints where Rust types allow).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use foolscap::typed::{BigInt, Bytes, Failure, Reply, Value};
use foolscap::Copyable;

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
    /// `def add(a=int, b=int): return int`
    fn add(&self, a: i64, b: i64) -> Result<i64, Failure>;
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
    /// `def maybe(x=ChoiceOf(str, None)): return ChoiceOf(int, None)`
    fn maybe(&self, x: Option<String>) -> Option<u64>;
    /// `def move_point(p=Any(), dx=int): return Any()`
    fn move_point(&self, p: Point, dx: i64) -> Point;
    /// `def fail(msg=str): return None`: raises ValueError(msg)
    fn fail(&self, msg: String) -> Result<(), Failure>;
    /// `def later(x=int): return int`: answers from another thread
    fn later(&self, x: i64, reply: Reply<i64>);
    /// `def call_back(other=RITyped, x=int): return int`: `other.add(x, x)`
    fn call_back(&self, other: TypedClient, x: i64, reply: Reply<i64>);
    /// `def int32(a=IntegerConstraint()): return int`
    fn int32(&self, #[schema(Constraint::int32())] a: i64) -> i64;
    /// `loose = UnconstrainedMethod()`: `def remote_loose(self, a, b=None)`,
    /// returns a + len(b): no schema checks, only the Rust types'
    #[unconstrained]
    fn loose(&self, a: i64, #[optional] b: Option<String>) -> i64;
    /// `anything = UnconstrainedMethod()`: echoes its argument
    #[unconstrained]
    fn anything(&self, v: Value) -> Value;
}

/// The Rust implementation.
#[derive(Default)]
pub struct TypedImpl {
    pub notes: Mutex<Vec<String>>,
}

impl Typed for TypedImpl {
    fn add(&self, a: i64, b: i64) -> Result<i64, Failure> {
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

    fn maybe(&self, x: Option<String>) -> Option<u64> {
        x.map(|s| s.len() as u64)
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

    fn call_back(&self, other: TypedClient, x: i64, reply: Reply<i64>) {
        // on an engine thread: never block, answer from the callback
        other.add_async(x, x, move |sum| reply.send(sum.map_err(|e| e.to_failure())));
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
}
