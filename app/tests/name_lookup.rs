//! `Tub::set_name_lookup` between two Tubs of the threads engine: names
//! nobody registered are asked of the handler, after the registered ones;
//! what it answers reaches the peer as Python's Tub would send it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foolscap_app::{Call, Error, Object};
use foolscap_core::broker::{CallError, Failure};
use foolscap_core::furl::Furl;
use foolscap_core::tub::TubError;
use foolscap_core::value::Value;

const T: Duration = Duration::from_secs(30);

/// Answers every call with its name.
struct Named(String);

impl Object for Named {
    fn call(&self, call: Call) {
        call.answer(Value::str(&self.0));
    }
}

fn furl_for(anchor: &Furl, name: &str) -> String {
    Furl::new(anchor.tubid, anchor.hints.clone(), name).to_string()
}

fn remote_failure(r: Result<Value, Error>) -> Failure {
    match r {
        Err(Error::Tub(TubError::Lookup(CallError::Remote(f)))) => f,
        other => panic!("not a remote failure: {other:?}"),
    }
}

#[test]
fn the_handler_is_asked_after_the_registered_names_on_every_lookup() {
    let server = foolscap_threads::new_tub().unwrap();
    server.listen("127.0.0.1:0").unwrap();
    let anchor = server
        .register(Arc::new(Named("registered".into())), Some("fixed"))
        .unwrap();
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let made = Arc::new(AtomicUsize::new(0));
    let (a, m) = (asked.clone(), made.clone());
    let s2 = server.clone();
    server.set_name_lookup(move |name| {
        a.lock().unwrap().push(name.to_owned());
        // the handler may use the Tub: it runs without its lock
        let _ = s2.tubid();
        match name {
            "none" => Ok(None),
            "broken" => Err(Failure::new(
                "foolscap.appserver.services.UnknownServiceType",
                "'nope'",
            )),
            "panics" => panic!("a broken handler"),
            n => {
                m.fetch_add(1, Ordering::SeqCst);
                Ok(Some(Arc::new(Named(n.to_owned())) as Arc<dyn Object>))
            }
        }
    });
    let client = foolscap_threads::new_tub().unwrap();
    // registered names never reach the handler
    let r = client.get_reference(&anchor.to_string(), T).unwrap();
    assert_eq!(
        client.call(&r, "m", &[], &[], T).unwrap().as_str(),
        Some("registered")
    );
    assert!(asked.lock().unwrap().is_empty());
    // a found object answers calls; its FURL is the looked-up one
    let d = client.get_reference(&furl_for(&anchor, "dyn"), T).unwrap();
    assert_eq!(
        client.call(&d, "m", &[], &[], T).unwrap().as_str(),
        Some("dyn")
    );
    let Value::Remote(dr) = &d else {
        panic!("{d:?}")
    };
    let text = String::from_utf8(dr.furl().expect("a FURL").to_vec()).unwrap();
    assert_eq!(Furl::parse(&text).unwrap().swissnum, "dyn");
    // not registered: a second client's lookup asks again
    let other = foolscap_threads::new_tub().unwrap();
    let d2 = other.get_reference(&furl_for(&anchor, "dyn"), T).unwrap();
    assert_eq!(
        other.call(&d2, "m", &[], &[], T).unwrap().as_str(),
        Some("dyn")
    );
    assert_eq!(made.load(Ordering::SeqCst), 2);
    // nothing found: Python's KeyError
    let f = remote_failure(client.get_reference(&furl_for(&anchor, "none"), T));
    assert_eq!(f.type_name, "builtins.KeyError");
    assert_eq!(
        f.value,
        "\"unable to find reference for name starting with 'no'\""
    );
    // the handler's failure is what the peer gets
    let f = remote_failure(client.get_reference(&furl_for(&anchor, "broken"), T));
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("foolscap.appserver.services.UnknownServiceType", "'nope'")
    );
    let f = remote_failure(client.get_reference(&furl_for(&anchor, "panics"), T));
    assert_eq!(f.type_name, "builtins.RuntimeError");
    assert_eq!(
        *asked.lock().unwrap(),
        ["dyn", "dyn", "none", "broken", "panics"]
    );
    // the connection went on, and without the handler names fail at once
    server.clear_name_lookup();
    let f = remote_failure(client.get_reference(&furl_for(&anchor, "dyn2"), T));
    assert_eq!(f.type_name, "builtins.KeyError");
    assert_eq!(asked.lock().unwrap().len(), 5);
    assert_eq!(
        client.call(&d, "m", &[], &[], T).unwrap().as_str(),
        Some("dyn")
    );
}
