//! Just enough DER to find a certificate's public key and to write a
//! self-signed certificate. Peer certificates are untrusted input: every
//! read is bounds-checked and nothing recurses.

use super::CertificateError;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xa0; // [0] EXPLICIT, constructed

/// One tag-length-value element.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads one element (single-byte tag, definite length of at most 4 length
/// bytes) and returns it with the bytes after it.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur where we look
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        whole: &input[..header + len],
    };
    Some((tlv, &rest[len..]))
}

fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), CertificateError> {
    match read(input) {
        Some((tlv, rest)) if tlv.tag == tag => Ok((tlv, rest)),
        _ => Err(CertificateError(what)),
    }
}

/// The DER SubjectPublicKeyInfo of a certificate, X.509 v1 or v3. Nothing
/// else is checked: like Python foolscap, we do not care about validity
/// dates, extensions or the self-signature.
pub(crate) fn spki_of(cert: &[u8]) -> Result<&[u8], CertificateError> {
    let (cert, _) = expect(cert, SEQUENCE, "certificate is not a DER SEQUENCE")?;
    let (tbs, _) = expect(cert.content, SEQUENCE, "tbsCertificate is missing")?;
    let mut rest = tbs.content;
    if rest.first() == Some(&VERSION_TAG) {
        rest = expect(rest, VERSION_TAG, "bad version field")?.1;
    }
    rest = expect(rest, INTEGER, "serial number is missing")?.1;
    rest = expect(rest, SEQUENCE, "signature algorithm is missing")?.1;
    rest = expect(rest, SEQUENCE, "issuer is missing")?.1;
    rest = expect(rest, SEQUENCE, "validity is missing")?.1;
    rest = expect(rest, SEQUENCE, "subject is missing")?.1;
    let (spki, _) = expect(rest, SEQUENCE, "subjectPublicKeyInfo is missing")?;
    split_spki(spki.whole)?;
    Ok(spki.whole)
}

/// Splits a SubjectPublicKeyInfo into the contents of its
/// AlgorithmIdentifier (the form rustls' signature algorithms compare
/// against) and the public key bits.
pub(crate) fn split_spki(spki: &[u8]) -> Result<(&[u8], &[u8]), CertificateError> {
    let (spki, _) = expect(spki, SEQUENCE, "subjectPublicKeyInfo is not a SEQUENCE")?;
    let (alg, rest) = expect(spki.content, SEQUENCE, "public key algorithm is missing")?;
    let (key, _) = expect(rest, BIT_STRING, "public key is missing")?;
    match key.content.split_first() {
        Some((0, bits)) => Ok((alg.content, bits)),
        _ => Err(CertificateError("public key BIT STRING has unused bits")),
    }
}

fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// `ecdsa-with-SHA256` (1.2.840.10045.4.3.2), no parameters.
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// `commonName` (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The to-be-signed part of a self-signed X.509 v3 certificate without
/// extensions: serial 1, subject = issuer = `CN=newpb_thingy` (as foolscap
/// names its own), valid from 1975 to the end of 9999 (RFC 5280's "no
/// well-defined expiration"), ECDSA P-256 with SHA-256.
pub(crate) fn self_signed_tbs(spki: &[u8]) -> Vec<u8> {
    let version = tlv(VERSION_TAG, &[&tlv(INTEGER, &[&[2]])]);
    let serial = tlv(INTEGER, &[&[1]]);
    let cn = tlv(
        SEQUENCE,
        &[
            &tlv(OID, &[COMMON_NAME]),
            &tlv(UTF8_STRING, &[b"newpb_thingy"]),
        ],
    );
    let name = tlv(SEQUENCE, &[&tlv(SET, &[&cn])]);
    let validity = tlv(
        SEQUENCE,
        &[
            &tlv(UTC_TIME, &[b"750101000000Z"]),
            &tlv(GENERALIZED_TIME, &[b"99991231235959Z"]),
        ],
    );
    tlv(
        SEQUENCE,
        &[
            &version,
            &serial,
            ECDSA_WITH_SHA256,
            &name,
            &validity,
            &name,
            spki,
        ],
    )
}

/// Wraps a signed TBS into a certificate.
pub(crate) fn certificate(tbs: &[u8], signature: &[u8]) -> Vec<u8> {
    let sig = tlv(BIT_STRING, &[&[0], signature]);
    tlv(SEQUENCE, &[tbs, ECDSA_WITH_SHA256, &sig])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let body = vec![7u8; len];
            let enc = tlv(SEQUENCE, &[&body]);
            let (t, rest) = read(&enc).expect("readable");
            assert_eq!((t.tag, t.content.len(), rest.len()), (SEQUENCE, len, 0));
            assert_eq!(t.whole, &enc[..]);
        }
    }

    #[test]
    fn truncated_and_odd_inputs_are_refused() {
        assert!(read(&[]).is_none());
        assert!(read(&[0x30]).is_none());
        assert!(read(&[0x30, 0x05, 1, 2]).is_none());
        assert!(read(&[0x30, 0x80]).is_none()); // indefinite length
        assert!(read(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_none());
        assert!(read(&[0x1f, 0x00]).is_none());
        assert!(spki_of(&[]).is_err());
        assert!(spki_of(&tlv(SEQUENCE, &[&tlv(SEQUENCE, &[])])).is_err());
        // every prefix of a real certificate fails cleanly
        let tbs = self_signed_tbs(&tlv(
            SEQUENCE,
            &[&tlv(SEQUENCE, &[]), &tlv(BIT_STRING, &[&[0, 4]])],
        ));
        let cert = certificate(&tbs, &[1, 2, 3]);
        assert!(spki_of(&cert).is_ok());
        for n in 0..cert.len() {
            assert!(spki_of(&cert[..n]).is_err(), "prefix {n}");
        }
    }
}
