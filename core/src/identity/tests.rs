use super::*;

const HIGH: &str = include_str!("../../../tests/data/tub-high.pem");
const MID: &str = include_str!("../../../tests/data/tub-mid.pem");
const LOW: &str = include_str!("../../../tests/data/tub-low.pem");
const MID_PKCS1_KEY_FIRST: &str = include_str!("../../../tests/data/tub-mid-pkcs1-keyfirst.pem");

#[test]
fn base32_matches_rfc4648_lowercase_unpadded() {
    for (input, want) in [
        (&b""[..], ""),
        (b"f", "my"),
        (b"fo", "mzxq"),
        (b"foo", "mzxw6"),
        (b"foob", "mzxw6yq"),
        (b"fooba", "mzxw6ytb"),
        (b"foobar", "mzxw6ytboi"),
    ] {
        assert_eq!(base32(input), want);
    }
    assert_eq!(base32(&[0xff; 20]), "7".repeat(32));
}

#[test]
fn fixture_tubids_are_pythons() {
    for (text, want) in [
        (HIGH, "vfbzu4bxrxknny4zy66zjcdszk5wc4k5"),
        (MID, "mhworflvzqbqqnzihp2g5oq436x75vsd"),
        (LOW, "5ikfv7dz4s7kjm2cs6mnui7pekmu2wmp"),
        (MID_PKCS1_KEY_FIRST, "mhworflvzqbqqnzihp2g5oq436x75vsd"),
    ] {
        let id = Identity::from_cert_file(text).expect("loads");
        assert_eq!(id.tubid().as_str(), want);
    }
}

#[test]
fn python_cert_file_is_written_back_byte_for_byte() {
    let id = Identity::from_cert_file(HIGH).expect("loads");
    assert_eq!(id.to_cert_file(), HIGH);
    // a PKCS#1 key keeps its encoding; the order becomes cert-then-key
    let id = Identity::from_cert_file(MID_PKCS1_KEY_FIRST).expect("loads");
    let text = id.to_cert_file();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(text.contains("-----BEGIN RSA PRIVATE KEY-----\n"));
    assert_eq!(
        Identity::from_cert_file(&text).expect("reloads").tubid(),
        id.tubid()
    );
}

#[test]
fn generated_identity_round_trips() {
    let id = Identity::generate().expect("generates");
    let again = Identity::generate().expect("generates");
    assert_ne!(id.tubid(), again.tubid());
    assert_eq!(id.tubid(), TubId::of_certificate(id.certificate_der()));
    let text = id.to_cert_file();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(text.contains("\n-----BEGIN PRIVATE KEY-----\n"));
    let loaded = Identity::from_cert_file(&text).expect("reloads");
    assert_eq!(loaded.tubid(), id.tubid());
    assert_eq!(loaded.certificate_der(), id.certificate_der());
}

#[test]
fn cert_file_refusals() {
    let cert_only: String = HIGH
        .split_inclusive('\n')
        .take_while(|l| !l.contains("PRIVATE"))
        .collect();
    assert_eq!(
        Identity::from_cert_file(&cert_only).unwrap_err(),
        IdentityError::NoPrivateKey
    );
    let key_only: String = HIGH
        .split_inclusive('\n')
        .skip_while(|l| !l.contains("PRIVATE"))
        .collect();
    assert_eq!(
        Identity::from_cert_file(&key_only).unwrap_err(),
        IdentityError::NoCertificate
    );
    assert_eq!(
        Identity::from_cert_file("").unwrap_err(),
        IdentityError::NoCertificate
    );
    // high's certificate with mid's key
    let mid_key: String = MID
        .split_inclusive('\n')
        .skip_while(|l| !l.contains("PRIVATE"))
        .collect();
    let err = Identity::from_cert_file(format!("{cert_only}{mid_key}")).unwrap_err();
    assert_eq!(
        err,
        IdentityError::KeyMismatch(TubId::parse("vfbzu4bxrxknny4zy66zjcdszk5wc4k5").unwrap())
    );
    assert!(err.to_string().contains("does not belong"));
    // a garbage key body
    let bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        Identity::from_cert_file(format!("{cert_only}{bad_key}")),
        Err(IdentityError::Key(_))
    ));
    // a garbage certificate body
    let bad_cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        Identity::from_cert_file(format!("{bad_cert}{mid_key}")),
        Err(IdentityError::Certificate(_))
    ));
}

#[test]
fn tubid_parse_and_order() {
    let t = TubId::parse("vfbzu4bxrxknny4zy66zjcdszk5wc4k5").unwrap();
    assert_eq!(t.to_string(), "vfbzu4bxrxknny4zy66zjcdszk5wc4k5");
    assert_eq!(t.short(), "vfbz");
    assert!(matches!(
        TubId::parse("abc"),
        Err(TubIdError::WrongLength { len: 3, .. })
    ));
    let err = TubId::parse("Vfbzu4bxrxknny4zy66zjcdszk5wc4k5").unwrap_err();
    assert!(matches!(
        err,
        TubIdError::NotBase32 {
            position: 0,
            ch: 'V',
            ..
        }
    ));
    assert!(err.to_string().contains("lowercase base32"));
    assert!(matches!(
        TubId::parse("vfbzu4bxrxknny4zy66zjcdszk5wc4k1"),
        Err(TubIdError::NotBase32 {
            position: 31,
            ch: '1',
            ..
        })
    ));
    assert!(matches!(
        TubId::parse("vfbzu4bxrxknny4zy66zjcdszk5wc4k\u{e9}"),
        Err(TubIdError::NotBase32 {
            position: 31,
            ch: '\u{e9}',
            ..
        })
    ));
    // string order: "vf..." > "mh..." > "5i..." (digits sort before letters)
    let high = Identity::from_cert_file(HIGH).unwrap().tubid();
    let mid = Identity::from_cert_file(MID).unwrap().tubid();
    let low = Identity::from_cert_file(LOW).unwrap().tubid();
    assert!(high > mid && mid > low);
}

#[test]
fn spki_is_found_in_v1_and_v3_certificates() {
    for id in [
        Identity::from_cert_file(HIGH).unwrap(),
        Identity::generate().unwrap(),
    ] {
        let spki = spki_of(id.certificate_der()).unwrap();
        assert_eq!(
            Some(spki),
            id.signing_key().public_key().as_ref().map(|k| k.as_ref())
        );
        let (alg, key) = split_spki(spki).unwrap();
        assert!(!alg.is_empty() && !key.is_empty());
    }
}
