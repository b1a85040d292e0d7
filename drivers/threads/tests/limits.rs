//! The threads engine's own limits: the stack an object gets.

use std::sync::Arc;
use std::time::Duration;

use foolscap_app::{Call, Object, TubConfig};
use foolscap_core::identity::Identity;
use foolscap_core::value::{Limits, Value};
use foolscap_threads::ThreadsConfig;

const T: Duration = Duration::from_secs(30);

struct Echo;

impl Object for Echo {
    fn call(&self, call: Call) {
        let x = call.arg(0, "x").cloned().unwrap_or(Value::None);
        call.answer(x)
    }
}

/// A list nested `depth` deep.
fn nested(depth: usize) -> Value {
    let mut v = Value::int(1);
    for _ in 1..depth {
        v = Value::List(vec![v]);
    }
    v
}

fn depth_of(mut v: &Value) -> usize {
    let mut d = 1;
    while let Value::List(items) = v {
        v = &items[0];
        d += 1;
    }
    d
}

/// The deepest value a peer may send (`Limits::max_depth`) is decoded,
/// handed to an object, answered and dropped on threads with the
/// stack size under test on both sides.
fn deepest_value_with_stack(stack_size: usize) {
    let mut threads = ThreadsConfig::default();
    threads.stack_size = stack_size;
    let tub = |threads: &ThreadsConfig| {
        foolscap_threads::tub_with(
            Identity::generate().unwrap(),
            TubConfig::default(),
            threads.clone(),
        )
        .unwrap()
    };
    let server = tub(&threads);
    server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Echo), None).unwrap();
    let client = tub(&threads);
    let Value::Remote(r) = client.get_reference(&furl.to_string(), T).unwrap() else {
        panic!("not a remote reference")
    };
    // the call's arguments sit inside the call message's own nesting
    let depth = Limits::DEFAULT_MAX_DEPTH - 8;
    let answer = client.call(&r, "echo", &[nested(depth)], &[], T).unwrap();
    assert_eq!(depth_of(&answer), depth);
}

/// Objects get [`ThreadsConfig::DEFAULT_STACK_SIZE`]: it carries the
/// deepest value the decoder lets a peer send (in a debug build that
/// takes between 1 and 2 MiB: 512 KiB and 1 MiB overflow).
#[test]
fn the_default_stack_carries_the_deepest_value() {
    deepest_value_with_stack(ThreadsConfig::DEFAULT_STACK_SIZE);
}
