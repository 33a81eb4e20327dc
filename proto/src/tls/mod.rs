//! Mutual TLS for every zonefleet listener and client (rustls 0.23, ring provider).
//!
//! * [`server_config`] verifies client certificates against the fleet CA but lets a
//!   client without one through (the single `Control.Enroll` RPC is served on the same
//!   listener; the role layer in [`crate::auth`] refuses such callers everything else).
//!   A client certificate from another CA, an expired one, or one whose SAN is not a
//!   zonefleet identity of this cluster is refused at the handshake.
//! * [`client_config`] verifies the server's chain and name and, in addition, that the
//!   server is the [`ExpectedPeer`] (a controller, a given controller, or the agent of a
//!   given host).
//! * [`pinned_client_config`] is what an enrolling agent uses: it trusts only the
//!   root whose fingerprint it pins, found in the chain the controller presents.
//! * [`TlsIncoming`] is an accept loop for `Server::serve_with_incoming`; its
//!   [`LiveConnections`] closes the open connections of a peer no longer trusted;
//!   [`connect_channel`] / [`TlsConnector`] give a tonic `Channel` over the same TLS.
//!
//! The crypto provider is always [`provider`] (ring), passed explicitly to every builder:
//! nothing here depends on a process-wide default provider being installed.

mod connect;
pub mod pending;
mod pinned;
mod reload;
mod revocations;
mod serve;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use uuid::Uuid;

use crate::pki::{self, Identity, PkiError, Principal};

pub use connect::{connect_channel, TlsConnector, DEFAULT_CONNECT_TIMEOUT};
pub use pinned::{check_pin, pinned_client_config, PinnedRootVerifier};
pub use reload::ReloadableCert;
pub use revocations::{
    normalize_serial, parse_revoked_identity, Refusal, RevocationError, RevocationSet, Revocations,
};
pub use serve::{
    IncomingOptions, LiveConnections, TlsConnection, TlsIncoming, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MAX_PENDING_PER_SOURCE,
};
pub use verify::{FleetClientVerifier, FleetServerVerifier};

/// The ALPN protocol both sides offer: gRPC runs over HTTP/2 only.
pub const ALPN_H2: &[u8] = b"h2";

/// Errors of the TLS layer. A variant that adds context carries its cause in its
/// message (not as `source()`), so printing the chain does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read; names the file.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A PEM file holds no certificate, or a malformed one; names the file.
    #[error("{path}: no usable certificate: {reason}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A PEM file holds no private key, or a malformed one; names the file.
    #[error("{path}: no usable private key: {reason}")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
        /// What was wrong (never the key itself).
        reason: String,
    },
    /// A key file is unusable: unreadable, or accessible to group or others.
    #[error(transparent)]
    KeyFile(#[from] crate::modes::KeyFileError),
    /// A certificate does not carry a usable fleet identity.
    #[error(transparent)]
    Identity(#[from] PkiError),
    /// A certificate is for another role or cluster than this use needs.
    #[error("certificate identity {found} cannot be used here: {reason}")]
    WrongIdentity {
        /// The identity found.
        found: String,
        /// Why it does not fit.
        reason: String,
    },
    /// rustls refused a configuration or a handshake.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The webpki verifier could not be built (e.g. no CA certificate).
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A network operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done (e.g. `connect 10.0.0.1:7000`).
        context: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A network operation did not finish in time.
    #[error("{0} timed out")]
    Timeout(String),
    /// An address or server name is malformed.
    #[error("invalid address {value:?}: {reason}")]
    InvalidAddress {
        /// The value given.
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// tonic could not set up the channel.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// The crypto provider every zonefleet TLS config is built with: rustls' ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file; errors name the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    certs_from_pem(&pem).map_err(|reason| TlsError::NoCertificate {
        path: path.to_owned(),
        reason,
    })
}

/// Reads the private key (PKCS#8, SEC1 or PKCS#1) of a PEM file; errors name the file.
/// A key file that group or others may access is refused (see [`crate::modes`]).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    crate::modes::require_private_key(path)?;
    let pem = read(path)?;
    key_from_pem(&pem).map_err(|reason| TlsError::NoPrivateKey {
        path: path.to_owned(),
        reason,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".to_owned());
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    // The error of `from_pem_slice` never contains key material.
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())
}

/// What a node trusts: the fleet CA and the cluster whose identities it accepts, less
/// the certificates and identities it revoked.
///
/// Clones share one [`Revocations`] list, so every verifier built from a clone refuses
/// what the node revoked later; [`FleetTrust::with_own_revocations`] gives a copy with
/// a list of its own (for each node of an in-process cluster).
#[derive(Clone)]
pub struct FleetTrust {
    cluster: String,
    ca_certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    revocations: Revocations,
}

impl fmt::Debug for FleetTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetTrust")
            .field("cluster", &self.cluster)
            .field("ca", &self.fingerprints())
            .finish()
    }
}

impl FleetTrust {
    /// Trusts `ca_certs` (normally the one fleet CA) for identities of `cluster`.
    pub fn new(cluster: &str, ca_certs: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        pki::validate_cluster(cluster)?;
        if ca_certs.is_empty() {
            return Err(TlsError::Verifier(
                rustls::server::VerifierBuilderError::NoRootAnchors,
            ));
        }
        let mut roots = RootCertStore::empty();
        for cert in &ca_certs {
            roots.add(cert.clone())?;
        }
        Ok(FleetTrust {
            cluster: cluster.to_owned(),
            ca_certs,
            roots: Arc::new(roots),
            revocations: Revocations::new(),
        })
    }

    /// The same trust with a revocation list of its own, starting empty.
    pub fn with_own_revocations(&self) -> FleetTrust {
        FleetTrust {
            revocations: Revocations::new(),
            ..self.clone()
        }
    }

    /// The revocation list every verifier built from this trust (or a clone) checks.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Loads the CA certificate(s) from a PEM file (e.g. `ca.crt`).
    pub fn load(cluster: &str, ca_path: &Path) -> Result<Self, TlsError> {
        let certs = load_certs(ca_path)?;
        Self::new(cluster, certs).map_err(|e| match e {
            TlsError::Rustls(err) => TlsError::NoCertificate {
                path: ca_path.to_owned(),
                reason: err.to_string(),
            },
            other => other,
        })
    }

    /// The cluster whose identities are accepted.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The trusted CA certificates.
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.ca_certs
    }

    /// `sha256:<hex>` of each trusted CA certificate.
    pub fn fingerprints(&self) -> Vec<String> {
        self.ca_certs.iter().map(|c| pki::fingerprint(c)).collect()
    }

    /// The trust anchors, for the webpki verifiers.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }
}

/// A node's own certificate chain and private key. `Debug` never shows the key.
pub struct CertKey {
    /// The certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertKey {
    fn clone(&self) -> Self {
        CertKey {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("identity", &self.identity().map(|i| i.to_string()).ok())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CertKey {
    /// Loads a certificate chain and its key from two PEM files; errors name the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Ok(CertKey {
            chain: load_certs(cert_path)?,
            key: load_private_key(key_path)?,
        })
    }

    /// From PEM text (for keys issued in memory, e.g. by [`pki::FleetCa`]).
    pub fn from_pem(cert_pem: &str, key_pem: &pki::KeyPem) -> Result<Self, TlsError> {
        let chain =
            certs_from_pem(cert_pem.as_bytes()).map_err(|reason| TlsError::NoCertificate {
                path: PathBuf::from("<memory>"),
                reason,
            })?;
        let key = key_from_pem(key_pem.expose_pem().as_bytes()).map_err(|reason| {
            TlsError::NoPrivateKey {
                path: PathBuf::from("<memory>"),
                reason,
            }
        })?;
        Ok(CertKey { chain, key })
    }

    /// The fleet identity of the end-entity certificate.
    pub fn identity(&self) -> Result<Identity, TlsError> {
        let leaf = self.chain.first().ok_or_else(|| TlsError::NoCertificate {
            path: PathBuf::from("<memory>"),
            reason: "empty chain".to_owned(),
        })?;
        Ok(pki::identity_from_cert_der(leaf)?)
    }
}

/// The server identity a client insists on, checked during the handshake in addition to
/// the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedPeer {
    /// Any controller of the cluster; the certificate must also carry the DNS name or
    /// IP address dialled.
    AnyController,
    /// This controller; the certificate must also carry the name dialled.
    Controller(String),
    /// The agent of this host. The dialled name is not checked: the identity already
    /// pins the host, and an agent's address may change (DHCP, PXE) under the
    /// certificate it enrolled with.
    Agent(Uuid),
}

impl ExpectedPeer {
    /// Whether the dialled server name must be in the certificate.
    pub fn checks_server_name(&self) -> bool {
        !matches!(self, ExpectedPeer::Agent(_))
    }

    /// Whether `identity` (already known to be of the right cluster) is acceptable.
    pub fn accepts(&self, identity: &Identity) -> bool {
        match (self, identity.principal()) {
            (ExpectedPeer::AnyController, Principal::Controller(_)) => true,
            (ExpectedPeer::Controller(want), Principal::Controller(got)) => want == got,
            (ExpectedPeer::Agent(want), Principal::Agent(got)) => want == got,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedPeer::AnyController => f.write_str("any controller"),
            ExpectedPeer::Controller(id) => write!(f, "controller {id}"),
            ExpectedPeer::Agent(host) => write!(f, "the agent of host {host}"),
        }
    }
}

/// A server config for a controller or agent listener.
///
/// Client certificates are verified by [`FleetClientVerifier`] (fleet CA, clientAuth,
/// validity, a zonefleet identity of this cluster) but are optional. `own` must be a
/// controller or agent certificate of the same cluster. ALPN `h2`, TLS 1.2 and 1.3.
pub fn server_config(trust: &FleetTrust, own: &CertKey) -> Result<Arc<ServerConfig>, TlsError> {
    check_server_identity(trust, &own.identity()?)?;
    let verifier = FleetClientVerifier::new(trust)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(own.chain.clone(), own.key.clone_key())?;
    Ok(finish_server_config(config))
}

/// A server config for an agent's own listener (the `Agent` service): the client
/// checks of [`server_config`], except that a client **must** present a certificate
/// (nothing there is open to anonymous callers, so one without is refused at the
/// handshake), and the certificate served is whatever `own` holds at each handshake,
/// so a renewed one is picked up without a restart. `own` must hold an agent
/// certificate of `trust`'s cluster.
pub fn agent_server_config(
    trust: &FleetTrust,
    own: Arc<ReloadableCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let current = own.current();
    let leaf = current
        .cert
        .first()
        .ok_or_else(|| TlsError::NoCertificate {
            path: PathBuf::from("<memory>"),
            reason: "empty chain".to_owned(),
        })?;
    let identity = pki::identity_from_cert_der(leaf)?;
    check_server_identity(trust, &identity)?;
    if !matches!(identity.principal(), Principal::Agent(_)) {
        return Err(TlsError::WrongIdentity {
            found: identity.to_string(),
            reason: "the Agent service is served with an agent certificate".to_owned(),
        });
    }
    let verifier = FleetClientVerifier::requiring_certificate(trust)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(own);
    Ok(finish_server_config(config))
}

/// A server's own identity must be of the trust's cluster, and not an operator's.
fn check_server_identity(trust: &FleetTrust, identity: &Identity) -> Result<(), TlsError> {
    if identity.cluster() != trust.cluster() {
        return Err(TlsError::WrongIdentity {
            found: identity.to_string(),
            reason: format!("not in cluster {:?}", trust.cluster()),
        });
    }
    if matches!(identity.principal(), Principal::Operator { .. }) {
        return Err(TlsError::WrongIdentity {
            found: identity.to_string(),
            reason: "operator certificates are client-only".to_owned(),
        });
    }
    Ok(())
}

/// What every zonefleet server config sets: no resumption, ALPN `h2`.
fn finish_server_config(mut config: ServerConfig) -> Arc<ServerConfig> {
    // No session resumption: a resumed session skips the client certificate check, so
    // a certificate revoked since its first handshake would get back in.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(config)
}

/// A client config that accepts only `expected` as the server, presenting `own` as the
/// client certificate (or none, for enrollment). ALPN `h2`, TLS 1.2 and 1.3.
pub fn client_config(
    trust: &FleetTrust,
    expected: ExpectedPeer,
    own: Option<&CertKey>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = FleetServerVerifier::new(trust, expected);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match own {
        Some(own) => {
            let identity = own.identity()?;
            if identity.cluster() != trust.cluster() {
                return Err(TlsError::WrongIdentity {
                    found: identity.to_string(),
                    reason: format!("not in cluster {:?}", trust.cluster()),
                });
            }
            builder.with_client_auth_cert(own.chain.clone(), own.key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    // No session resumption: a resumed session skips the server certificate check.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}
