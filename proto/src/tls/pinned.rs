//! Trust on a pinned root: how an enrolling agent, which holds only the root CA's
//! fingerprint (`zonefleet.ca=sha256:…`), verifies a controller before it sends its
//! join token.
//!
//! Every fleet leaf presents `leaf, signing CA, root` (see [`crate::pki`]). The
//! [`PinnedRootVerifier`] looks in that chain for the certificate whose
//! [`pki::fingerprint`] is the pin, and verifies the leaf (through the intermediates)
//! against that certificate as the only trust anchor: a chain that does not carry the
//! pinned root, or whose leaf another root signed, is refused, and nothing else (no
//! system store) is ever trusted. The leaf must also name the dialled address and be a
//! controller of the root's cluster (the cluster is read from the root's subject `OU`,
//! where the fleet CA writes it).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::verify::{cluster_identity, reject};
use super::{provider, ExpectedPeer, TlsError, ALPN_H2};
use crate::pki;

/// Whether `pin` is a root fingerprint as [`pki::fingerprint`] writes it:
/// `sha256:` and 64 lowercase hex digits.
pub fn check_pin(pin: &str) -> Result<(), String> {
    let hex = pin
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{pin:?} does not start with \"sha256:\""))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{pin:?}: expected \"sha256:\" and 64 hex digits (the root CA's fingerprint)"
        ));
    }
    Ok(())
}

/// Verifies a server against a pinned root fingerprint (see the module doc).
pub struct PinnedRootVerifier {
    pin: String,
    cluster: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedRootVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedRootVerifier")
            .field("pin", &self.pin)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl PinnedRootVerifier {
    /// A verifier trusting only the root whose fingerprint is `pin`; hex digits are
    /// compared case-insensitively. With `cluster`, the root's cluster must also be
    /// that one.
    pub fn new(pin: &str, cluster: Option<&str>) -> Result<Self, TlsError> {
        check_pin(pin).map_err(|reason| TlsError::WrongIdentity {
            found: pin.to_owned(),
            reason,
        })?;
        if let Some(cluster) = cluster {
            pki::validate_cluster(cluster)?;
        }
        Ok(PinnedRootVerifier {
            pin: pin.to_ascii_lowercase(),
            cluster: cluster.map(str::to_owned),
            algorithms: provider().signature_verification_algorithms,
        })
    }

    /// The pinned root in `chain`, if present.
    fn find_root<'a>(&self, chain: &'a [CertificateDer<'a>]) -> Option<&'a CertificateDer<'a>> {
        chain.iter().find(|c| pki::fingerprint(c) == self.pin)
    }
}

/// The cluster the pinned root names, refusing a pinned certificate that is not the
/// fleet's root (a signing CA's fingerprint changes at every rotation).
fn root_cluster(root: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    pki::root_cluster(root).map_err(|e| reject(format!("the pinned certificate: {e}")))
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = self.find_root(intermediates).ok_or_else(|| {
            reject(format!(
                "the server's chain does not carry the pinned root {}",
                self.pin
            ))
        })?;
        let cluster = root_cluster(root)?;
        if let Some(want) = &self.cluster {
            if *want != cluster {
                return Err(reject(format!(
                    "the pinned root is of cluster {cluster:?}, expected {want:?}"
                )));
            }
        }
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        verify_server_name(&parsed, server_name)?;
        let identity = cluster_identity(end_entity, &cluster)?;
        if !ExpectedPeer::AnyController.accepts(&identity) {
            return Err(reject(format!(
                "server is {identity}, expected {}",
                ExpectedPeer::AnyController
            )));
        }
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

/// A client config for enrollment: no client certificate, the server verified by a
/// [`PinnedRootVerifier`] for `pin` (and `cluster`, when given). ALPN `h2`, no
/// session resumption (a resumed session would skip the check).
pub fn pinned_client_config(
    pin: &str,
    cluster: Option<&str>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = PinnedRootVerifier::new(pin, cluster)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_checked() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert!(check_pin(&ok).is_ok());
        assert!(check_pin("ab").unwrap_err().contains("sha256:"));
        assert!(check_pin("sha256:abc").unwrap_err().contains("64 hex"));
        assert!(
            PinnedRootVerifier::new(&ok.to_uppercase().replace("SHA256", "sha256"), None).is_ok()
        );
        assert!(PinnedRootVerifier::new(&ok, Some("Bad Cluster")).is_err());
    }
}
