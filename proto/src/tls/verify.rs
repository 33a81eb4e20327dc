//! The two certificate verifiers: webpki chain checks plus the fleet identity checks.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{provider, ExpectedPeer, FleetTrust, Revocations, TlsError};
use crate::pki::{identity_from_cert_der, serial_from_cert_der, Identity};

/// Why a peer certificate with a valid chain was still refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct IdentityRejected(String);

/// A refusal of a peer certificate, logged at debug (the peer sees only the alert).
pub(super) fn reject(why: String) -> rustls::Error {
    tracing::debug!(reason = %why, "peer certificate refused");
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        IdentityRejected(why),
    ))))
}

/// The identity in `der`, which must be of `cluster`.
pub(super) fn cluster_identity(
    der: &CertificateDer<'_>,
    cluster: &str,
) -> Result<Identity, rustls::Error> {
    let identity = identity_from_cert_der(der).map_err(|e| reject(e.to_string()))?;
    if identity.cluster() != cluster {
        return Err(reject(format!(
            "{identity} is not an identity of cluster {cluster:?}"
        )));
    }
    Ok(identity)
}

/// Refuses `der`, of `identity`, if `revocations` lists its serial or identity.
fn not_revoked(
    der: &CertificateDer<'_>,
    identity: &Identity,
    revocations: &Revocations,
) -> Result<(), rustls::Error> {
    let serial = serial_from_cert_der(der).ok();
    match revocations.refusal(identity, serial.as_deref()) {
        Some(refusal) => Err(reject(format!("{identity}: {refusal}"))),
        None => Ok(()),
    }
}

/// Verifies client certificates: the webpki verifier (fleet CA, clientAuth usage,
/// validity period), then a single zonefleet identity of this cluster in the SAN, and
/// that neither its serial nor its identity is revoked (read at each handshake).
///
/// Client authentication is offered but optional ([`FleetClientVerifier::new`]): a
/// client without a certificate completes the handshake and is `Anonymous` to the role
/// layer; or it is required ([`FleetClientVerifier::requiring_certificate`]), and a
/// client without one is refused at the handshake.
pub struct FleetClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster: String,
    revocations: Revocations,
    mandatory: bool,
}

impl fmt::Debug for FleetClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetClientVerifier")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl FleetClientVerifier {
    /// A verifier trusting `trust`'s CA for identities of its cluster; a client may
    /// present no certificate.
    pub fn new(trust: &FleetTrust) -> Result<Self, TlsError> {
        let inner = WebPkiClientVerifier::builder_with_provider(trust.roots(), provider())
            .allow_unauthenticated()
            .build()?;
        Ok(FleetClientVerifier {
            inner,
            cluster: trust.cluster().to_owned(),
            revocations: trust.revocations().clone(),
            mandatory: false,
        })
    }

    /// The same checks, and a client without a certificate is refused at the handshake.
    pub fn requiring_certificate(trust: &FleetTrust) -> Result<Self, TlsError> {
        let inner =
            WebPkiClientVerifier::builder_with_provider(trust.roots(), provider()).build()?;
        Ok(FleetClientVerifier {
            inner,
            cluster: trust.cluster().to_owned(),
            revocations: trust.revocations().clone(),
            mandatory: true,
        })
    }
}

impl ClientCertVerifier for FleetClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let identity = cluster_identity(end_entity, &self.cluster)?;
        not_revoked(end_entity, &identity, &self.revocations)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies a server certificate: chain to the fleet CA with serverAuth usage and a
/// current validity period, the dialled name (unless [`ExpectedPeer::checks_server_name`]
/// says otherwise), that its identity is the [`ExpectedPeer`] in this cluster, and that
/// neither its serial nor its identity is revoked.
pub struct FleetServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    cluster: String,
    expected: ExpectedPeer,
    revocations: Revocations,
}

impl fmt::Debug for FleetServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetServerVerifier")
            .field("cluster", &self.cluster)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl FleetServerVerifier {
    /// A verifier trusting `trust`'s CA that accepts only `expected`.
    pub fn new(trust: &FleetTrust, expected: ExpectedPeer) -> Self {
        FleetServerVerifier {
            roots: trust.roots(),
            algorithms: provider().signature_verification_algorithms,
            cluster: trust.cluster().to_owned(),
            expected,
            revocations: trust.revocations().clone(),
        }
    }
}

impl ServerCertVerifier for FleetServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.expected.checks_server_name() {
            verify_server_name(&parsed, server_name)?;
        }
        let identity = cluster_identity(end_entity, &self.cluster)?;
        if !self.expected.accepts(&identity) {
            return Err(reject(format!(
                "server is {identity}, expected {}",
                self.expected
            )));
        }
        not_revoked(end_entity, &identity, &self.revocations)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
