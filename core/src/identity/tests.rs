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

/// Made by pyOpenSSL as foolscap makes its certificates (RSA 2048, X.509
/// v1, `CN=newpb_thingy`, serial 1), but valid only from 2024-11-25 to
/// 2025-11-25: expired.
const EXPIRED_V1: &str = r"
-----BEGIN CERTIFICATE-----
MIICojCCAYoCAQEwDQYJKoZIhvcNAQELBQAwFzEVMBMGA1UEAwwMbmV3cGJfdGhp
bmd5MB4XDTI0MTEyNTEwMTMyN1oXDTI1MTEyNTEwMTMyN1owFzEVMBMGA1UEAwwM
bmV3cGJfdGhpbmd5MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAocra
cQSXJGWqLRRrUPT0yK0fq6RkKMWq+XHYqCi+J45LDSETuhFJk4DzqLaaRhZ5xs1i
u0T6aRwloqOY3pxGF4ta2uMe4nnqgJUB1sNMaMyQsb4QpOMllqedlyjWJQUF3dEf
bGNbpU+X7+RENlN1v41u3CRXPu+T4OzIM4ELZYsinz9+yGBTohi3k+D9hhd9WGfh
oDcmpp//bCO0lsLX3O3GFmPaP03nxgudP6pg206bMX9SU0EiwjIr0/nVs9nQsh6Y
vVwnjE28MtCpfULMRudIcT+ITwBNfJ9ivnsjuIQUW/HVTrn8zXDv+3HVDkv5/6Wv
BlU+mnm3iPpjsmnVuQIDAQABMA0GCSqGSIb3DQEBCwUAA4IBAQBAwgwLk+VdslVq
hQeL0GEQpNDTT6S/5axf038unfyKoipjFh8DP+2L9hWCCz+YHppcxwEABD/VYZgO
/3QCotr//CLtXQe09Rz+onVxRDjMecedFyJLOJvxFId9RticWGZmsfmw8+wnTQET
vREmyZhGTeze5Dk62SPjzo2axCM/6I55HGl0j97jnFsERbG20JTXFWdvxbzImXbH
mcGT+t10msNhQXmdv6S7OHTdQd2I2Ld5swLuF5r3HBR7IXpkXfmRtL/j1sBPfI2b
3BwEhe7VzyXps0p7jiYr8C8YAxeB0KXnSULH4I+W8j9k4fc9omlGR1OJSCYMNibk
/5fjUpOt
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQChytpxBJckZaot
FGtQ9PTIrR+rpGQoxar5cdioKL4njksNIRO6EUmTgPOotppGFnnGzWK7RPppHCWi
o5jenEYXi1ra4x7ieeqAlQHWw0xozJCxvhCk4yWWp52XKNYlBQXd0R9sY1ulT5fv
5EQ2U3W/jW7cJFc+75Pg7MgzgQtliyKfP37IYFOiGLeT4P2GF31YZ+GgNyamn/9s
I7SWwtfc7cYWY9o/TefGC50/qmDbTpsxf1JTQSLCMivT+dWz2dCyHpi9XCeMTbwy
0Kl9QsxG50hxP4hPAE18n2K+eyO4hBRb8dVOufzNcO/7cdUOS/n/pa8GVT6aebeI
+mOyadW5AgMBAAECggEAKTmh/Wg5BtosyX3JdoBkGvoZ9sdVihoL3bGHjhmLklKs
hvTlrOSYxc/2xgd5OeCiOOi+fo8t6zhz0oQzAI37QiaNCPcUOIruGMNfC5UJ1C5D
tDaE0S7btg6RliGepyIng4S0qA6NHIsyYLreMqWDfEKSe996p5uuJ4LN5Gm+OKoa
ONNrZESmx8uWvSRd1Zs321mWyyw2++FTZfoB1mtj0NRNQ+s6+sAa6Ylxo9cpbYOc
sgG3N2M2pp5dirQgycD/MFLbc4JHjb75/AmOrURLCv9Xrd6U56pXd7FfsCgAJbEU
zIGimGCujvKcAmqnsVIQmZRP5ilaMeLLtv7pfgKZPQKBgQDaVJPtFRfp+1TrQIeb
nbf2RzKundTU97FBXDEBxRtUoeJRxFUp6VMDMoTHkTEEcWKw2So8Tb4NzgyxEUQr
yNl/CWLYyGoBY6dFTb6ZZ8VSc5t3ZGdHAVwIOrOEtVQvXTzRMlZdc2T6j3R/haO6
tcSmxnAI8tMLFBuYVjxSTDZfDwKBgQC9tQ1nTTadD/CpYHCIEKz0IiAmCycgZSSv
cqsvihbWXP/c/f50o98uUf/s+qsiXO+rCXOuims2SMTpadCDyx4bRxwO1zmCrTAC
+4VlkXN5zjs0HG5+vkEFOPShYZEJBsZEGp97sGsdsGC+73Sx9mNUs1zHkMibkVQ1
lWX89xX+twKBgQCD5aSYDa4sxJFArfM+p8GDHvAXXXI+VoTXH4LbtuAT+Nho3Vs1
vqdPvy1IAwbB0F32yLsjQzQV0u0H645rhSMgA+ObYzfnLvTWgWkr8+zZKs45Cob5
9nBK6GubOJBrLMCZAPf77MKMPC38/Bc1rKnotujn/wpQHw2ssiwu66vNMQKBgQCn
Bw/kEiGxq+Uy3Ax4YGZHFPzFQjCS3zqrlwSN+MEewAcvJhqxy86m09/HYPTobnc+
WjYWSR0YUH2/HUFPqLi7P6K+llS2b5HELnxG7weDCUcrHJVU1mIdHQaWSHcQQXyz
XdVpa+0D2NV1hxNx1QOkAcAAncNi5VQFUaLYVRxyhQKBgQCHMOr/2AP3dUjODUJC
2bSEa1zGZ60j/hfziDVt0eumN1rcdKYqS/xPoCfXzvSowhfA15O55eV8YMdM/OYT
6DF6kr0VZImDH6T1LFrbSUBifeTXbLrTKavpy0YuoTcoffVJAPDuUFunZu1ZheEh
AuFP2rTtefNGcC4KLPmCmbx/fA==
-----END PRIVATE KEY-----
";

#[test]
fn expired_v1_certificate_loads() {
    let id = Identity::from_cert_file(EXPIRED_V1).expect("loads");
    let spki = spki_of(id.certificate_der()).expect("has a public key");
    assert_eq!(
        Some(spki),
        id.signing_key().public_key().as_ref().map(|k| k.as_ref())
    );
}

#[test]
fn self_signature_is_not_checked() {
    for id in [
        Identity::from_cert_file(HIGH).unwrap(),
        Identity::from_cert_file(EXPIRED_V1).unwrap(),
        Identity::generate().unwrap(),
    ] {
        let mut cert = id.certificate_der().to_vec();
        let last = cert.len() - 1;
        cert[last] ^= 0x55; // inside the signature value
        assert_eq!(spki_of(&cert), spki_of(id.certificate_der()));
        // OpenSSL (Python) never verifies a self-signature either
        assert_eq!(check_self_signed(&cert), Ok(()));
        let forged = Identity::from_der(cert, id.private_key_der().clone_key()).expect("loads");
        assert_ne!(forged.tubid(), id.tubid());
    }
}

#[test]
fn malformed_certificates_are_refused() {
    assert!(spki_of(&[]).is_err());
    assert!(spki_of(&[0x30, 0x00]).is_err());
    assert!(spki_of(&[0x30, 0x02, 0x30, 0x00]).is_err());
    assert!(spki_of(&[0x30, 0x80]).is_err()); // indefinite length
    assert!(spki_of(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_err());
    for id in [
        Identity::from_cert_file(HIGH).unwrap(),
        Identity::generate().unwrap(),
    ] {
        let cert = id.certificate_der().to_vec();
        // every prefix of a real certificate fails cleanly
        for n in 0..cert.len() {
            assert!(spki_of(&cert[..n]).is_err(), "prefix {n}");
        }
        // and so does one with bytes after it
        let mut longer = cert.clone();
        longer.push(0);
        assert_eq!(
            spki_of(&longer),
            Err(CertificateError("bytes after the certificate"))
        );
    }
    assert!(split_spki(&[]).is_err());
    // SEQUENCE { SEQUENCE { OID 1.2 }, BIT STRING with 4 unused bits }
    let odd_bits = [0x30, 0x08, 0x30, 0x03, 0x06, 0x01, 0x2a, 0x03, 0x01, 0x04];
    assert!(split_spki(&odd_bits).is_err());
    let whole_bits = [
        0x30, 0x09, 0x30, 0x03, 0x06, 0x01, 0x2a, 0x03, 0x02, 0x00, 0x07,
    ];
    assert_eq!(
        split_spki(&whole_bits),
        Ok((&[0x06, 0x01, 0x2a][..], &[0x07][..]))
    );
}

#[test]
fn v3_certificate_with_extensions_is_fine() {
    use rcgen::{CertificateParams, CustomExtension, KeyPair, KeyUsagePurpose, PublicKeyData};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["example.org".into()]).unwrap();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // an unknown extension, marked critical: still not our business
    let mut odd = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![1, 2]);
    odd.set_criticality(true);
    params.custom_extensions = vec![odd];
    let cert = params.self_signed(&key).unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let id = Identity::from_der(cert.der().to_vec(), der).expect("loads");
    assert_eq!(
        spki_of(id.certificate_der()).unwrap(),
        key.subject_public_key_info()
    );
}

/// A certificate for a fresh P-256 key with `CN=newpb_thingy` as subject,
/// signed by `signer` under the issuer name `issuer_cn` (with `akid`: an
/// authority key id naming `signer`, and a subject key id).
fn cert_signed_by(signer: &rcgen::KeyPair, issuer_cn: &str, akid: bool) -> Vec<u8> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair};
    let name = |cn: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    };
    let subject_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = name("newpb_thingy");
    params.use_authority_key_identifier_extension = akid;
    if akid {
        // a CA certificate: rcgen then writes its subject key id too
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let mut issuer_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    issuer_params.distinguished_name = name(issuer_cn);
    let issuer = Issuer::new(issuer_params, signer);
    params
        .signed_by(&subject_key, &issuer)
        .unwrap()
        .der()
        .to_vec()
}

#[test]
fn only_what_openssl_takes_for_self_signed_passes() {
    use rcgen::KeyPair;
    // a P-256 "self-signature" made by another P-256 key: Python's OpenSSL
    // does not verify self-signatures and accepts it
    let other_ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = cert_signed_by(&other_ec, "newpb_thingy", false);
    assert_eq!(check_self_signed(&cert), Ok(()));
    // signed with an RSA key: the signature algorithm does not suit the
    // P-256 key, OpenSSL looks for an issuer and refuses ("unknown ca")
    let high = Identity::from_cert_file(HIGH).unwrap();
    let PrivateKeyDer::Pkcs8(rsa) = high.private_key_der() else {
        panic!("HIGH holds a PKCS#8 key")
    };
    let rsa = KeyPair::from_pkcs8_der_and_sign_algo(rsa, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = cert_signed_by(&rsa, "newpb_thingy", false);
    assert_eq!(
        check_self_signed(&cert),
        Err(CertificateError(
            "signature algorithm does not suit the key"
        ))
    );
    // issued under another name
    let cert = cert_signed_by(&other_ec, "some CA", false);
    assert_eq!(
        check_self_signed(&cert),
        Err(CertificateError("issuer is not the subject"))
    );
    // an authority key id naming the other key, not the subject key id
    let cert = cert_signed_by(&other_ec, "newpb_thingy", true);
    assert_eq!(
        check_self_signed(&cert),
        Err(CertificateError(
            "authority key id is not the subject key id"
        ))
    );
    // what Python and we generate passes
    for id in [
        Identity::from_cert_file(HIGH).unwrap(),
        Identity::from_cert_file(MID).unwrap(),
        Identity::from_cert_file(LOW).unwrap(),
        Identity::from_cert_file(EXPIRED_V1).unwrap(),
        Identity::generate().unwrap(),
    ] {
        assert_eq!(check_self_signed(id.certificate_der()), Ok(()));
    }
    assert!(check_self_signed(&[0x30, 0x00]).is_err());
}
