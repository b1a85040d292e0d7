//! TLS for foolscap connections (docs/protocol.md §3.3-3.4), through
//! rustls' sans-IO connections.
//!
//! Both sides present their certificate; the TLS server requires the
//! client's. Peer certificates are never checked against a CA store, for
//! validity dates, or for their self-signature (Python's OpenSSL checks
//! none of that for self-signed certificates either); X.509 v1
//! certificates are fine. What is checked: the certificate parses far
//! enough to yield its public key, it is what OpenSSL takes for
//! self-signed (`identity::check_self_signed`: same issuer and subject, no
//! foreign authority key id, a signature algorithm that suits its own key;
//! otherwise refused as an unknown issuer, as Python refuses it), the
//! handshake signature verifies with that raw key (TLS 1.3 and TLS 1.2),
//! and on the client side the certificate hashes to the tubid the FURL
//! names, before the client sends anything of its own.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName,
    Error, OtherError, PeerMisbehaved, ServerConfig, ServerConnection, SignatureScheme,
};
use thiserror::Error;

use crate::identity::{check_self_signed, spki_of, split_spki, Identity, TubId};

/// Which TLS versions to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Also offer and accept TLS 1.2 (Python's minimum; every Python peer
    /// negotiates TLS 1.3 when its OpenSSL has it). Default: true.
    pub tls12: bool,
    /// Offer and accept TLS 1.3. Default: true.
    pub tls13: bool,
}

impl TlsOptions {
    /// TLS 1.2 only (what a peer without TLS 1.3 offers).
    pub fn tls12_only() -> TlsOptions {
        TlsOptions {
            tls12: true,
            tls13: false,
        }
    }
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            tls12: true,
            tls13: true,
        }
    }
}

/// The peer certificate is not the one the FURL names (carried inside
/// rustls' error, then reported as [`super::NegotiationError::WrongTub`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the FURL names tubid {expected}, the peer's certificate is tubid {actual}")]
pub struct WrongTubError {
    /// The tubid the client asked for.
    pub expected: TubId,
    /// The tubid of the certificate the server presented.
    pub actual: TubId,
}

/// A Tub's TLS setup, built once from its identity and shared (cheaply
/// cloned) by all its connections.
#[derive(Clone)]
pub struct TlsContext {
    inner: Arc<Inner>,
}

struct Inner {
    tubid: TubId,
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    resolver: Arc<SingleCertAndKey>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("tubid", &self.inner.tubid)
            .field("versions", &self.inner.versions)
            .finish_non_exhaustive()
    }
}

/// The ServerName handed to rustls. Foolscap sends no SNI (we disable it)
/// and checks no name; any value works.
fn server_name() -> ServerName<'static> {
    ServerName::try_from("foolscap.invalid").expect("a valid DNS name")
}

impl TlsContext {
    /// TLS 1.3 and 1.2 with the identity's certificate.
    pub fn new(identity: &Identity) -> Result<TlsContext, Error> {
        Self::with_options(identity, TlsOptions::default())
    }

    /// The identity's certificate, with a choice of TLS versions.
    pub fn with_options(identity: &Identity, options: TlsOptions) -> Result<TlsContext, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut versions = Vec::new();
        if options.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if options.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        // rustls' own helpers check the key against the certificate with
        // webpki, which refuses Python's X.509 v1 certificates; Identity
        // has already checked them with its own parser.
        let certified = CertifiedKey::new(
            vec![identity.certificate_der().clone()],
            identity.signing_key(),
        );
        let resolver = Arc::new(SingleCertAndKey::from(Arc::new(certified)));
        let verifier = Arc::new(PeerVerifier::new(&provider, None));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver.clone());
        // foolscap never resumes sessions
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(TlsContext {
            inner: Arc::new(Inner {
                tubid: identity.tubid(),
                provider,
                versions,
                resolver,
                server: Arc::new(server),
            }),
        })
    }

    /// The tubid of the certificate this context presents.
    pub fn tubid(&self) -> TubId {
        self.inner.tubid
    }

    /// A TLS client that accepts only a server whose certificate is
    /// `expected`.
    pub fn client(&self, expected: TubId) -> Result<ClientConnection, Error> {
        let inner = &*self.inner;
        let verifier = Arc::new(PeerVerifier::new(&inner.provider, Some(expected)));
        let mut config = ClientConfig::builder_with_provider(inner.provider.clone())
            .with_protocol_versions(&inner.versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(inner.resolver.clone());
        config.enable_sni = false;
        config.resumption = rustls::client::Resumption::disabled();
        let mut conn = ClientConnection::new(Arc::new(config), server_name())?;
        conn.set_buffer_limit(None);
        Ok(conn)
    }

    /// A TLS server that requires a client certificate (any).
    pub fn server(&self) -> Result<ServerConnection, Error> {
        let mut conn = ServerConnection::new(self.inner.server.clone())?;
        conn.set_buffer_limit(None);
        Ok(conn)
    }
}

/// Verifies peer certificates the foolscap way, for both roles.
#[derive(Debug)]
pub struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    /// Client side: the tubid from the FURL.
    expected: Option<TubId>,
}

fn bad_encoding() -> Error {
    Error::InvalidCertificate(CertificateError::BadEncoding)
}

impl PeerVerifier {
    pub(crate) fn new(provider: &CryptoProvider, expected: Option<TubId>) -> Self {
        PeerVerifier {
            algorithms: provider.signature_verification_algorithms,
            expected,
        }
    }

    fn check_certificate(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        if let Some(expected) = self.expected {
            let actual = TubId::of_certificate(cert);
            if actual != expected {
                let why = OtherError(Arc::new(WrongTubError { expected, actual }));
                return Err(Error::InvalidCertificate(CertificateError::Other(why)));
            }
        }
        spki_of(cert).map_err(|_| bad_encoding())?;
        // Python's OpenSSL accepts only what it takes for self-signed
        // (docs/protocol.md §3.3); the alert is the same "unknown ca"
        check_self_signed(cert)
            .map_err(|_| Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
        Ok(())
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = spki_of(cert).map_err(|_| bad_encoding())?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.algorithms,
        )
    }

    /// TLS 1.2 signatures: rustls only offers a webpki-based check (which
    /// refuses v1 certificates), so match the scheme's algorithms against
    /// the raw key ourselves, as webpki does.
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = spki_of(cert).map_err(|_| bad_encoding())?;
        let (key_alg, key) = split_spki(spki).map_err(|_| bad_encoding())?;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
        let alg = candidates
            .iter()
            .find(|alg| alg.public_key_alg_id().as_ref() == key_alg)
            .ok_or_else(|| {
                Error::InvalidCertificate(
                    CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                        signature_algorithm_id: u16::from(dss.scheme).to_be_bytes().to_vec(),
                        public_key_algorithm_id: key_alg.to_vec(),
                    },
                )
            })?;
        alg.verify_signature(key, message, dss.signature())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
        Ok(HandshakeSignatureValid::assertion())
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check_certificate(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check_certificate(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The wrong-tubid refusal inside a rustls error, if that is what it is.
pub(crate) fn wrong_tub(err: &Error) -> Option<WrongTubError> {
    match err {
        Error::InvalidCertificate(CertificateError::Other(OtherError(e))) => {
            e.downcast_ref::<WrongTubError>().cloned()
        }
        _ => None,
    }
}
