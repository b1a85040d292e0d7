//! Negotiation against the real Python peer (`foolscap==24.9.0`), both
//! directions and both master roles, over real sockets:
//!
//! * a Rust client negotiates with a Python Tub, then calls
//!   `getReferenceByName` and `add(1, 2)` in banana over the session;
//! * a Python client gets a reference from a Rust listener and calls it;
//! * certFiles made by Python load with the tubid Python reports, and
//!   Python accepts ours;
//! * unknown tubids, and a certificate that is not the FURL's, are refused
//!   the way Python refuses them;
//! * duplicate connections are replaced (or refused) as Python does.
//!
//! Master roles follow from the fixtures' tubids: high > mid > low.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::negotiation::*;
use common::python;
use foolscap::furl::Furl;
use foolscap::identity::Identity;
use foolscap::negotiation::rustls;
use foolscap::negotiation::{
    ConnectionTable, NegotiationError, PlaintextError, Refusal, TlsContext, TlsOptions,
};
use foolscap::rng::SeededRng;

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn table(seed: u64) -> Mutex<ConnectionTable> {
    Mutex::new(ConnectionTable::new(&mut SeededRng::new(seed)))
}

fn tls13() -> rustls::ProtocolVersion {
    rustls::ProtocolVersion::TLSv1_3
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("foolscap-rs-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn python_made_cert_files_give_the_tubid_python_reports() {
    assert!(python().exists());
    let dir = temp_dir("certs");
    for form in ["pkcs8", "pkcs1-keyfirst", "ec"] {
        let path = dir.join(format!("{form}.pem"));
        let out = fsnego(
            &["mkcert", path.to_str().unwrap(), "--form", form],
            Duration::from_secs(60),
        );
        let python_tubid = out[0]["tubid"].as_str().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let id = Identity::from_cert_file(&text).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(id.tubid().as_str(), python_tubid, "{form}");
        if form == "pkcs8" {
            assert_eq!(id.to_cert_file(), text, "written back byte for byte");
        }
    }
    // and Python computes ours: fixtures and a fresh Rust identity
    let fresh = dir.join("rust.pem");
    let generated = Identity::generate().unwrap();
    std::fs::write(&fresh, generated.to_cert_file()).unwrap();
    let files = [
        data_path("tub-high"),
        data_path("tub-mid-pkcs1-keyfirst"),
        fresh.clone(),
    ];
    let args: Vec<&str> = std::iter::once("tubid")
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let out = fsnego(&args, Duration::from_secs(60));
    let want = [
        identity("tub-high").tubid(),
        identity("tub-mid-pkcs1-keyfirst").tubid(),
        generated.tubid(),
    ];
    for (line, want) in out.iter().zip(want) {
        assert_eq!(line["tubid"].as_str().unwrap(), want.as_str());
    }
    assert_eq!(out.len(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rust_client_negotiates_with_python_in_both_roles() {
    let generated = Identity::generate().unwrap();
    let tls12 = TlsOptions::tls12_only();
    let cases = [
        // (rust client, python server, client is master, TLS options)
        (
            identity("tub-low"),
            "tub-high",
            false,
            TlsOptions::default(),
        ),
        (identity("tub-high"), "tub-low", true, TlsOptions::default()),
        (
            generated.clone(),
            "tub-mid",
            generated.tubid() > identity("tub-mid").tubid(),
            TlsOptions::default(),
        ),
        (identity("tub-mid"), "tub-high", false, tls12),
        (identity("tub-mid"), "tub-low", true, tls12),
    ];
    for (client, server, client_is_master, options) in cases {
        let py = PyServer::start(&data_path(server));
        assert_eq!(py.furl.tubid.as_str(), py.tubid);
        let tls = TlsContext::with_options(&client, options).unwrap();
        let t = table(1);
        let mut conn = dial(&tls, &t, &py.furl, deadline())
            .unwrap_or_else(|e| panic!("{} -> {server}: {e}", client.tubid()));
        let info = conn.info().clone();
        assert_eq!(info.peer_tubid, py.furl.tubid);
        assert_eq!(
            info.i_am_master,
            client_is_master,
            "{} -> {server}",
            client.tubid()
        );
        assert_eq!(
            info.peer_incarnation.as_deref(),
            Some(py.incarnation.as_str())
        );
        assert_eq!(info.vocab.index(), 1);
        assert_eq!(info.banana_version, 3);
        let want = if options.tls13 {
            tls13()
        } else {
            rustls::ProtocolVersion::TLSv1_2
        };
        assert_eq!(conn.session.tls_version(), Some(want));
        if !client_is_master {
            // Python decided; we remember its current-connection
            let cc = info.current_connection.clone().unwrap();
            assert!(cc.starts_with(&py.incarnation), "{cc}");
            assert_eq!(t.lock().unwrap().last_connection(&py.furl.tubid), cc);
        }
        let sum = conn
            .get_reference_and_add(&py.furl.swissnum, 1, 2, deadline())
            .unwrap_or_else(|e| panic!("{} -> {server}: {e}", client.tubid()));
        assert_eq!(sum, 3);
    }
}

#[test]
fn python_client_negotiates_with_a_rust_listener_in_both_roles() {
    let dir = temp_dir("pyclient");
    let generated = Identity::generate().unwrap();
    let generated_file = dir.join("rust-made.pem");
    std::fs::write(&generated_file, generated.to_cert_file()).unwrap();
    let tls12 = TlsOptions::tls12_only();
    let cases = [
        // (rust server identity, python client certfile, TLS options)
        (
            identity("tub-mid"),
            data_path("tub-high"),
            TlsOptions::default(),
        ),
        (
            identity("tub-mid"),
            data_path("tub-low"),
            TlsOptions::default(),
        ),
        // Python using a Rust-made identity as its own
        (
            identity("tub-mid"),
            generated_file.clone(),
            TlsOptions::default(),
        ),
        (
            Identity::generate().unwrap(),
            data_path("tub-low"),
            TlsOptions::default(),
        ),
        (identity("tub-mid"), data_path("tub-high"), tls12),
        (identity("tub-mid"), data_path("tub-low"), tls12),
    ];
    for (server_id, client_file, options) in cases {
        let client_id =
            Identity::from_cert_file(std::fs::read_to_string(&client_file).unwrap()).unwrap();
        let server =
            RustServer::start_with(TlsContext::with_options(&server_id, options).unwrap(), 7);
        let furl = server.furl.to_string();
        let out = fsnego(
            &["connect", client_file.to_str().unwrap(), &furl],
            Duration::from_secs(60),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["ok"], true, "{out:?}");
        assert_eq!(out[0]["result"], 3);
        assert_eq!(
            out[0]["tubid"].as_str().unwrap(),
            client_id.tubid().as_str()
        );
        match server.event(Duration::from_secs(10)) {
            Some(ServerEvent::Established(info, version)) => {
                let want = if options.tls13 {
                    tls13()
                } else {
                    rustls::ProtocolVersion::TLSv1_2
                };
                assert_eq!(version, Some(want));
                assert_eq!(info.peer_tubid, client_id.tubid());
                assert_eq!(info.i_am_master, server_id.tubid() > client_id.tubid());
                assert!(!info.is_client);
                assert_eq!(info.vocab.index(), 1);
            }
            other => panic!("server saw {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_tubids_are_refused_and_understood_both_ways() {
    // Rust client, Python server: a FURL naming a Tub the server lacks
    let py = PyServer::start(&data_path("tub-high"));
    let mid = identity("tub-mid").tubid();
    let mut furl = py.furl.clone();
    furl.tubid = mid;
    let tls = TlsContext::new(&identity("tub-low")).unwrap();
    match dial(&tls, &table(1), &furl, deadline()) {
        Err(NegotiationError::Plaintext(PlaintextError::Refused {
            refusal,
            status_line,
        })) => {
            assert_eq!(refusal, Refusal::UnknownTubId(mid.to_string()));
            assert_eq!(
                status_line,
                format!("HTTP/1.1 500 Internal Server Error: unknown TubID {mid}")
            );
        }
        other => panic!("{:?}", other.map(|c| c.info().clone())),
    }
    // Python client, Rust server
    let server = RustServer::start(&identity("tub-low"), 3);
    let mut furl = server.furl.clone();
    furl.tubid = mid;
    let out = fsnego(
        &[
            "connect",
            data_path("tub-high").to_str().unwrap(),
            &furl.to_string(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out[0]["ok"], false);
    let error = out[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "got 'HTTP/1.1 500 Internal Server Error: unknown TubID {mid}'"
        )),
        "{error}"
    );
    match server.event(Duration::from_secs(10)) {
        Some(ServerEvent::Failed(NegotiationError::Plaintext(PlaintextError::UnknownTubId {
            requested,
        }))) => {
            assert_eq!(requested, mid.as_str())
        }
        other => panic!("server saw {other:?}"),
    }
}

#[test]
fn a_python_tub_that_is_not_the_furls_is_refused_naming_both_tubids() {
    // A man in the middle rewrites our request for mid into one for high:
    // Python (high) accepts it and presents its certificate; we refuse it
    // during the handshake, before sending our own.
    let py = PyServer::start(&data_path("tub-high"));
    let (high, mid) = (py.furl.tubid, identity("tub-mid").tubid());
    let (host, port) = py.furl.tcp_hints().next().unwrap();
    let proxy = rewriting_proxy(
        format!("{host}:{port}").parse().unwrap(),
        mid.to_string(),
        high.to_string(),
    );
    let mut furl = py.furl.clone();
    furl.tubid = mid;
    let tls = TlsContext::new(&identity("tub-low")).unwrap();
    let proxy_host = proxy.ip().to_string();
    let err = dial_addr(
        &tls,
        &table(1),
        &furl,
        (&proxy_host, proxy.port()),
        deadline(),
    )
    .map(|c| c.info().clone())
    .unwrap_err();
    assert_eq!(
        err,
        NegotiationError::WrongTub {
            expected: mid,
            actual: high
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(mid.as_str()) && text.contains(high.as_str()),
        "{text}"
    );
}

#[test]
fn duplicate_connections_to_a_python_master() {
    // Python (high) is master over us (low), as in transcript 08-duplicate
    let py = PyServer::start(&data_path("tub-high"));
    let tls = TlsContext::new(&identity("tub-low")).unwrap();
    let tub_a = table(10);
    let mut first = dial(&tls, &tub_a, &py.furl, deadline()).unwrap();
    assert_eq!(
        first.get_reference_and_add(&py.furl.swissnum, 1, 2, deadline()),
        Ok(3)
    );
    let ir = &py.incarnation;
    assert_eq!(
        first.info().current_connection.as_deref(),
        Some(&*format!("{ir} 1"))
    );

    // a restarted Tub with the same key (new incarnation, "none 0"):
    // accepted, and Python drops the first connection
    let tub_b = table(11);
    let mut second = dial(&tls, &tub_b, &py.furl, deadline()).unwrap();
    assert_eq!(
        second.info().current_connection.as_deref(),
        Some(&*format!("{ir} 2"))
    );
    assert_eq!(
        second.get_reference_and_add(&py.furl.swissnum, 2, 3, deadline()),
        Ok(5)
    );
    assert!(
        first.wait_closed(deadline()),
        "Python closes the replaced connection"
    );

    // the same Tub reconnects while Python still holds its connection and
    // names it in last-connection: accepted (stale connection replaced)
    assert_eq!(
        tub_b.lock().unwrap().last_connection(&py.furl.tubid),
        format!("{ir} 2")
    );
    let mut third = dial(&tls, &tub_b, &py.furl, deadline()).unwrap();
    assert_eq!(
        third.info().current_connection.as_deref(),
        Some(&*format!("{ir} 3"))
    );
    assert_eq!(
        third.info().replaced,
        Some(second.info().connection_id),
        "we drop our old one too"
    );
    assert!(second.wait_closed(deadline()));

    // same incarnation but remembering nothing (a parallel hint attempt):
    // Python refuses it
    let tub_b_again = table(11);
    let err = dial(&tls, &tub_b_again, &py.furl, deadline())
        .map(|c| c.info().clone())
        .unwrap_err();
    assert_eq!(
        err,
        NegotiationError::Remote {
            message: "Duplicate connection".into()
        }
    );
    assert!(err.is_duplicate_connection());
    assert_eq!(
        third.get_reference_and_add(&py.furl.swissnum, 4, 5, deadline()),
        Ok(9)
    );
}

#[test]
fn duplicate_connections_from_python_to_a_rust_master() {
    // we (mid) are master over Python (low): a second Tub instance with
    // the same key replaces the first connection, and Python sees the
    // first reference disconnected
    let server = RustServer::start(&identity("tub-mid"), 5);
    let out = fsnego(
        &[
            "duplicate",
            data_path("tub-low").to_str().unwrap(),
            &server.furl.to_string(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!(
        (r["ok"].as_bool(), r["first"].as_i64(), r["second"].as_i64()),
        (Some(true), Some(3), Some(5))
    );
    assert_eq!(r["first_disconnected"], true, "{r}");
    let mut infos = Vec::new();
    while let Some(ServerEvent::Established(info, _)) = server.event(Duration::from_secs(5)) {
        infos.push(info);
        if infos.len() == 2 {
            break;
        }
    }
    assert_eq!(infos.len(), 2);
    assert!(infos[0].i_am_master);
    let ir = server.table.lock().unwrap().incarnation().to_string();
    assert_eq!(
        infos[0].current_connection.as_deref(),
        Some(&*format!("{ir} 1"))
    );
    assert_eq!(
        infos[1].current_connection.as_deref(),
        Some(&*format!("{ir} 2"))
    );
    assert_eq!(infos[1].replaced, Some(infos[0].connection_id));
    let incarnations: Vec<&str> = r["incarnations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(infos[0].peer_incarnation.as_deref(), Some(incarnations[0]));
    assert_eq!(infos[1].peer_incarnation.as_deref(), Some(incarnations[1]));
}

#[test]
fn furls_python_writes_parse_and_print_back() {
    let py = PyServer::start(&data_path("tub-mid"));
    let text = py.furl.to_string();
    assert_eq!(Furl::parse(&text).unwrap().to_string(), text);
    assert!(text.starts_with(&format!("pb://{}@tcp:127.0.0.1:", py.tubid)));
    assert!(text.ends_with("/calc"));
}

#[test]
fn certificates_python_does_not_take_for_self_signed_are_refused_both_ways() {
    // (mkcert form, whether Python's OpenSSL takes it): a "self-signature"
    // by another key of the same type passes (OpenSSL never checks it);
    // one whose signature algorithm does not suit the key, or whose
    // authority key id is not its own, is not self-signed to OpenSSL and
    // fails with "unknown ca" (docs/protocol.md §3.3)
    let dir = temp_dir("selfsigned");
    for (form, accepted) in [("ec-by-ec", true), ("ec-by-rsa", false), ("ec-akid", false)] {
        let file = dir.join(format!("{form}.pem"));
        let out = fsnego(
            &["mkcert", file.to_str().unwrap(), "--form", form],
            Duration::from_secs(60),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let id = Identity::from_cert_file(std::fs::read_to_string(&file).unwrap()).unwrap();
        // Rust client with that certificate, Python server
        let py = PyServer::start(&data_path("tub-high"));
        let tls = TlsContext::new(&id).unwrap();
        let python_took = match dial(&tls, &table(1), &py.furl, deadline()) {
            Ok(mut conn) => {
                conn.get_reference_and_add(&py.furl.swissnum, 1, 2, deadline())
                    .unwrap_or_else(|e| panic!("{form}: {e}"));
                true
            }
            Err(_) => false,
        };
        assert_eq!(python_took, accepted, "{form}: Python's verdict");
        // Python client with that certificate, Rust server
        let server = RustServer::start(&identity("tub-mid"), 5);
        let out = fsnego(
            &["connect", file.to_str().unwrap(), &server.furl.to_string()],
            Duration::from_secs(60),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["ok"], accepted, "{form}: our verdict: {out:?}");
        match server.event(Duration::from_secs(10)) {
            Some(ServerEvent::Established(info, _)) if accepted => {
                assert_eq!(info.peer_tubid, id.tubid())
            }
            Some(ServerEvent::Failed(e)) if !accepted => {
                assert!(e.to_string().contains("UnknownIssuer"), "{form}: {e}")
            }
            other => panic!("{form}: server saw {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
