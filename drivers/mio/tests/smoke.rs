use std::sync::Arc;
use std::time::Duration;

use foolscap_core::value::Value;
use foolscap_mio::{as_remote, Call, LoopConfig, Object, Runtime};

struct Echo;
impl Object for Echo {
    fn call(&self, call: Call) {
        match call.method.as_str() {
            "echo" => {
                let v = call.args.first().cloned().unwrap_or(Value::None);
                call.answer(v)
            }
            _ => call.no_such_method("Echo"),
        }
    }
}

#[test]
fn two_tubs_on_one_loop_and_a_thread_client() {
    let rt = Runtime::start(LoopConfig::default()).unwrap();
    let server = rt.new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Echo), Some("echo")).unwrap();
    let client = rt.new_tub().unwrap();
    let r = client
        .get_reference(&furl.to_string(), Duration::from_secs(10))
        .unwrap();
    let r = as_remote(&r).unwrap().clone();
    for i in 0..100i64 {
        let v = client
            .call(
                &r,
                "echo",
                &[Value::Int(i.into())],
                &[],
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(v, Value::Int(i.into()));
    }
    let threads = foolscap_threads::new_tub().unwrap();
    let r2 = threads
        .get_reference(&furl.to_string(), Duration::from_secs(10))
        .unwrap();
    let r2 = as_remote(&r2).unwrap().clone();
    let v = threads
        .call(
            &r2,
            "echo",
            &[Value::from("x")],
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(v, Value::from("x"));
    eprintln!("{:?}", rt.stats());
    rt.shutdown(Duration::from_secs(2));
    let e = client
        .call(&r, "echo", &[Value::None], &[], Duration::from_secs(2))
        .unwrap_err();
    eprintln!("after shutdown: {e}");
}

#[test]
fn stop_listening_refuses_new_peers_and_keeps_the_connected_ones() {
    let t = Duration::from_secs(10);
    let rt = Runtime::start(LoopConfig::default()).unwrap();
    let server = rt.new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let furl = server.register(Arc::new(Echo), None).unwrap().to_string();
    let client = rt.new_tub().unwrap();
    let r = client.get_reference(&furl, t).unwrap();
    let r = as_remote(&r).unwrap().clone();
    server.stop_listening();
    let newcomer = rt.new_tub().unwrap();
    assert!(newcomer.get_reference(&furl, t).is_err());
    let v = client.call(&r, "echo", &[Value::int(1)], &[], t).unwrap();
    assert_eq!(v, Value::int(1));
    rt.shutdown(Duration::from_secs(2));
}
