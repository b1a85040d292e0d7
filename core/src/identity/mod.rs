//! Tub identity: the certificate and key a Tub presents, and the tubid
//! derived from it (docs/protocol.md §2.1-2.3).
//!
//! * [`TubId`]: lowercase unpadded base32 of SHA-1 over the certificate
//!   DER, exactly as Python computes it.
//! * [`Identity`]: certificate + private key. [`Identity::generate`] makes
//!   a fresh self-signed ECDSA P-256 one with rcgen (cheap to sign with,
//!   which makes handshakes fast; Python accepts any self-signed
//!   certificate), and
//!   [`Identity::from_cert_file`] / [`Identity::to_cert_file`] read and
//!   write foolscap's certFile format, so a Rust program can take over a
//!   Python node's identity (a Tahoe-LAFS `node.pem`, say), including
//!   Python's RSA X.509 v1 certificates.
//! * [`spki_of`] / [`split_spki`]: the public key of a certificate, read
//!   with x509-parser; what the TLS verifier uses on peer certificates.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::SigningKey;
use sha1::{Digest, Sha1};
use thiserror::Error;
use x509_parser::asn1_rs::{Any, FromDer, Tag};
use x509_parser::certificate::X509CertificateParser;
use x509_parser::error::X509Error;
use x509_parser::nom::Parser;
use x509_parser::x509::SubjectPublicKeyInfo;

const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32 in lowercase without padding, as foolscap's
/// `base32.encode` writes tubids and swissnums.
pub fn base32(data: &[u8]) -> String {
    let mut out = String::with_capacity((data.len() * 8).div_ceil(5));
    let (mut acc, mut bits) = (0u16, 0u32);
    for &b in data {
        acc = (acc << 8) | b as u16;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A Tub's identity on the wire: 32 lowercase base32 characters, the SHA-1
/// of its certificate. Ordered as Python orders the strings (the master of
/// a connection is the side with the larger tubid).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TubId([u8; 32]);

/// A string that is not a tubid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum TubIdError {
    /// Not 32 characters.
    #[error("a tubid has 32 characters, {text:?} has {len}")]
    WrongLength { text: String, len: usize },
    /// A character outside the lowercase base32 alphabet.
    #[error("{text:?} is not a tubid: {ch:?} at {position} is not lowercase base32 (a-z, 2-7)")]
    NotBase32 {
        text: String,
        position: usize,
        ch: char,
    },
}

impl TubId {
    /// The tubid of a certificate (its DER encoding).
    pub fn of_certificate(cert_der: &[u8]) -> TubId {
        let digest: [u8; 20] = Sha1::digest(cert_der).into();
        let mut out = [0u8; 32];
        out.copy_from_slice(base32(&digest).as_bytes());
        TubId(out)
    }

    /// Parses exactly 32 lowercase base32 characters.
    pub fn parse(text: &str) -> Result<TubId, TubIdError> {
        let len = text.chars().count();
        if len != 32 {
            return Err(TubIdError::WrongLength {
                text: text.into(),
                len,
            });
        }
        if let Some((position, ch)) = text
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii() && BASE32_ALPHABET.contains(&(c as u8))))
        {
            return Err(TubIdError::NotBase32 {
                text: text.into(),
                position,
                ch,
            });
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(text.as_bytes());
        Ok(TubId(out))
    }

    /// The 32-character text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a tubid is ASCII")
    }

    /// The first 4 characters, as foolscap's logs abbreviate tubids.
    pub fn short(&self) -> &str {
        &self.as_str()[..4]
    }
}

impl fmt::Display for TubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TubId({})", self.as_str())
    }
}

impl FromStr for TubId {
    type Err = TubIdError;
    fn from_str(s: &str) -> Result<TubId, TubIdError> {
        TubId::parse(s)
    }
}

/// A certificate we cannot find the public key in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed certificate: {0}")]
pub struct CertificateError(pub &'static str);

/// The DER SubjectPublicKeyInfo of a certificate (X.509 v1 or v3), what
/// the TLS verifier looks at in a peer's certificate. The certificate is
/// parsed with x509-parser (extension contents are left unparsed) and must
/// be exactly one DER certificate. Nothing else is checked: like Python
/// foolscap, we do not care about validity dates, extensions or the
/// self-signature.
pub fn spki_of(cert_der: &[u8]) -> Result<&[u8], CertificateError> {
    let (rest, cert) = X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(cert_der)
        .map_err(|e| match e {
            x509_parser::nom::Err::Incomplete(_) => CertificateError("truncated certificate"),
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
                CertificateError(x509_error_text(&e))
            }
        })?;
    if !rest.is_empty() {
        return Err(CertificateError("bytes after the certificate"));
    }
    let spki = cert.tbs_certificate.subject_pki.raw;
    split_spki(spki)?;
    Ok(spki)
}

/// Whether OpenSSL (under Python foolscap) would take a peer's certificate
/// as self-signed, the only kind its verify callback lets through (§3.3):
/// issuer and subject are the same name, an AuthorityKeyIdentifier (if
/// any) names the certificate itself (key id, serial, issuer), and the
/// signature algorithm suits the certificate's own key type. Like
/// OpenSSL, the self-signature itself is not verified (a certificate whose
/// "self-signature" was made by another key of the same type passes in
/// Python too); one signed with another key type is refused (OpenSSL then
/// looks for an issuer and fails with "unknown ca"). Names are compared by
/// their DER bytes (OpenSSL compares canonical forms: a name written in
/// two different encodings passes there, not here).
pub fn check_self_signed(cert_der: &[u8]) -> Result<(), CertificateError> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = X509CertificateParser::new()
        .with_deep_parse_extensions(true)
        .parse(cert_der)
        .map_err(|_| CertificateError("unparsable certificate"))?;
    let tbs = &cert.tbs_certificate;
    if tbs.issuer.as_raw() != tbs.subject.as_raw() {
        return Err(CertificateError("issuer is not the subject"));
    }
    let mut skid = None;
    let mut akid = None;
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => skid = Some(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => akid = Some(a),
            ParsedExtension::ParseError { .. } => {
                return Err(CertificateError("malformed extension"));
            }
            _ => {}
        }
    }
    if let Some(akid) = akid {
        if let (Some(k), Some(s)) = (&akid.key_identifier, skid) {
            if k.0 != s {
                return Err(CertificateError(
                    "authority key id is not the subject key id",
                ));
            }
        }
        if akid
            .authority_cert_serial
            .is_some_and(|serial| serial != tbs.raw_serial())
        {
            return Err(CertificateError("authority serial is not the serial"));
        }
        let dir_name = akid
            .authority_cert_issuer
            .iter()
            .flatten()
            .find_map(|g| match g {
                GeneralName::DirectoryName(n) => Some(n),
                _ => None,
            });
        if dir_name.is_some_and(|n| n.as_raw() != tbs.issuer.as_raw()) {
            return Err(CertificateError("authority issuer is not the issuer"));
        }
    }
    let sig = tbs.signature.algorithm.to_id_string();
    let key = tbs.subject_pki.algorithm.algorithm.to_id_string();
    const RSA: &str = "1.2.840.113549.1.1.1";
    const RSA_PSS: &str = "1.2.840.113549.1.1.10";
    const EC: &str = "1.2.840.10045.2.1";
    let suits = match sig.as_str() {
        // md5/sha1/sha224/sha256/sha384/sha512 WithRSAEncryption
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.14"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.113549.1.1.12"
        | "1.2.840.113549.1.1.13" => key == RSA,
        RSA_PSS => key == RSA || key == RSA_PSS,
        // ecdsa-with-SHA1, -SHA224, -SHA256, -SHA384, -SHA512
        "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10045.4.3.3"
        | "1.2.840.10045.4.3.4" => key == EC,
        // Ed25519, Ed448
        "1.3.101.112" | "1.3.101.113" => key == sig,
        _ => false,
    };
    if !suits {
        return Err(CertificateError(
            "signature algorithm does not suit the key",
        ));
    }
    Ok(())
}

/// Splits a DER SubjectPublicKeyInfo into the contents of its
/// AlgorithmIdentifier (the form rustls' signature algorithms compare
/// against) and the public key bits (a BIT STRING without unused bits).
pub fn split_spki(spki: &[u8]) -> Result<(&[u8], &[u8]), CertificateError> {
    let bad = || CertificateError("bad subjectPublicKeyInfo");
    // Validates the whole structure; the slices come from the DER below.
    SubjectPublicKeyInfo::from_der(spki).map_err(|_| bad())?;
    let (_, info) = Any::from_der(spki).map_err(|_| bad())?;
    let (rest, alg) = Any::from_der(info.data).map_err(|_| bad())?;
    let (_, key) = Any::from_der(rest).map_err(|_| bad())?;
    if info.tag() != Tag::Sequence || alg.tag() != Tag::Sequence || key.tag() != Tag::BitString {
        return Err(bad());
    }
    match key.data.split_first() {
        Some((0, bits)) => Ok((alg.data, bits)),
        _ => Err(CertificateError("public key BIT STRING has unused bits")),
    }
}

fn x509_error_text(e: &X509Error) -> &'static str {
    match e {
        X509Error::InvalidVersion => "bad version field",
        X509Error::InvalidSerial => "bad serial number",
        X509Error::InvalidAlgorithmIdentifier => "bad algorithm identifier",
        X509Error::InvalidX509Name => "bad issuer or subject name",
        X509Error::InvalidDate => "bad validity dates",
        X509Error::InvalidSPKI => "bad subjectPublicKeyInfo",
        X509Error::InvalidSubjectUID => "bad subject unique ID",
        X509Error::InvalidIssuerUID => "bad issuer unique ID",
        X509Error::InvalidExtensions | X509Error::DuplicateExtensions => "bad extensions",
        X509Error::InvalidSignatureValue => "bad signature value",
        X509Error::InvalidTbsCertificate => "bad tbsCertificate",
        X509Error::Der(_) | X509Error::NomError(_) => "not a DER certificate",
        _ => "not an X.509 certificate",
    }
}

/// Why an identity could not be loaded or made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No `CERTIFICATE` PEM section.
    #[error("no certificate (PEM \"CERTIFICATE\" section) in the certFile")]
    NoCertificate,
    /// No `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` section.
    #[error("no private key (PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\") in the certFile")]
    NoPrivateKey,
    /// A PEM section that does not decode.
    #[error("bad PEM in the certFile: {0}")]
    Pem(String),
    /// The certificate's DER is unusable.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A key type or encoding the crypto provider cannot sign with.
    #[error("unusable private key: {0}")]
    Key(String),
    /// The key is not the certificate's.
    #[error("the private key does not belong to the certificate (tubid {0})")]
    KeyMismatch(TubId),
}

/// A Tub's certificate and private key.
#[derive(Clone)]
pub struct Identity {
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    signing_key: Arc<dyn SigningKey>,
    tubid: TubId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("tubid", &self.tubid)
            .field("key", &self.signing_key.algorithm())
            .finish_non_exhaustive()
    }
}

fn load_key(key: &PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, IdentityError> {
    rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| IdentityError::Key(e.to_string()))
}

impl Identity {
    /// A fresh identity: ECDSA P-256 key, self-signed X.509 v3 certificate
    /// without extensions, subject `CN=newpb_thingy`, serial 1, valid
    /// 1975-01-01 to 9999-12-31 23:59:59 (RFC 5280's "no well-defined
    /// expiration"), made by rcgen. The key comes from ring's CSPRNG (the
    /// OS one; not injectable, so every call gives a different identity).
    pub fn generate() -> Result<Identity, IdentityError> {
        use rcgen::{date_time_ymd, CertificateParams, DnType, KeyPair, SerialNumber};
        let key_error = |e: rcgen::Error| IdentityError::Key(e.to_string());
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(key_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "newpb_thingy");
        params.serial_number = Some(SerialNumber::from(1));
        params.not_before = date_time_ymd(1975, 1, 1);
        params.not_after = date_time_ymd(9999, 12, 31) + Duration::from_secs(86_399);
        let cert = params.self_signed(&key_pair).map_err(key_error)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let signing_key = load_key(&key)?;
        Self::assemble(cert.der().clone(), key, signing_key)
    }

    /// Reads a certFile: the first certificate and the first private key
    /// anywhere in the PEM text, in either order; the key may be PKCS#8
    /// (what foolscap writes), PKCS#1 (older pyOpenSSL) or SEC1. The key
    /// must belong to the certificate, as Python requires.
    pub fn from_cert_file(text: impl AsRef<[u8]>) -> Result<Identity, IdentityError> {
        use rustls::pki_types::pem::Error as PemError;
        let text = text.as_ref();
        let cert = CertificateDer::from_pem_slice(text).map_err(|e| match e {
            PemError::NoItemsFound => IdentityError::NoCertificate,
            e => IdentityError::Pem(e.to_string()),
        })?;
        let key = PrivateKeyDer::from_pem_slice(text).map_err(|e| match e {
            PemError::NoItemsFound => IdentityError::NoPrivateKey,
            e => IdentityError::Pem(e.to_string()),
        })?;
        Self::from_der(cert.to_vec(), key)
    }

    /// An identity from a DER certificate and its private key.
    pub fn from_der(
        cert_der: Vec<u8>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, IdentityError> {
        let signing_key = load_key(&key)?;
        Self::assemble(CertificateDer::from(cert_der), key, signing_key)
    }

    fn assemble(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        signing_key: Arc<dyn SigningKey>,
    ) -> Result<Identity, IdentityError> {
        let tubid = TubId::of_certificate(&cert);
        let spki = spki_of(&cert)?;
        if let Some(public) = signing_key.public_key() {
            if public.as_ref() != spki {
                return Err(IdentityError::KeyMismatch(tubid));
            }
        }
        Ok(Identity {
            cert,
            key: Arc::new(key),
            signing_key,
            tubid,
        })
    }

    /// The certFile text: certificate PEM, then the private key PEM in the
    /// encoding it was loaded in (PKCS#8 for generated and Python-made
    /// identities, so a Python-made file is written back byte for byte).
    pub fn to_cert_file(&self) -> String {
        let (label, der): (&str, &[u8]) = match &*self.key {
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
            // `PrivateKeyDer` is non-exhaustive; every variant it can hold
            // today is handled above.
            _ => ("PRIVATE KEY", &[]),
        };
        let mut out = pem("CERTIFICATE", &self.cert);
        out.push_str(&pem(label, der));
        out
    }

    /// This identity's tubid.
    pub fn tubid(&self) -> TubId {
        self.tubid
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The private key, DER.
    pub fn private_key_der(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The loaded signing key.
    pub(crate) fn signing_key(&self) -> Arc<dyn SigningKey> {
        self.signing_key.clone()
    }

    /// One identity's certificate with another's key: an impostor, for
    /// testing that handshake signatures are checked.
    #[cfg(test)]
    pub(crate) fn impostor(cert_of: &Identity, key_of: &Identity) -> Identity {
        Identity {
            cert: cert_of.cert.clone(),
            key: key_of.key.clone(),
            signing_key: key_of.signing_key.clone(),
            tubid: cert_of.tubid,
        }
    }
}

/// PEM with 64-character lines, as OpenSSL writes it.
fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                b64.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
