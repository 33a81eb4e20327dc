//! The fleet PKI: one root CA per fleet (ECDSA P-256, rcgen) and a signing CA it issues,
//! which issues controller, agent and operator certificates carrying a [`Identity`] as
//! their SAN URI. Every node trusts the root only; leaves present themselves with the
//! signing CA's certificate, so the root key is needed only to issue a new signing CA
//! and can stay offline.
//!
//! Private keys are PKCS#8 PEM held in [`KeyPem`], whose `Debug` is redacted and which
//! has no `Display`, so a key is not printed by accident. [`files`] writes them `0600`.

pub mod files;
mod identity;
pub mod lifetime;

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub use identity::{
    parse_host_id, validate_cluster, validate_controller_id, validate_operator_name,
    ControllerEndpoint, HostName, Identity, OperatorRole, Principal, IDENTITY_SCHEME,
    MAX_OPERATOR_NAME_LEN,
};

/// How long a new root CA is valid: 10 years.
pub const CA_VALIDITY_DAYS: i64 = 3653;
/// How long a new signing CA is valid: 3 years (then `zfadm pki rotate-signing-ca`
/// issues the next one from the root).
pub const SIGNING_CA_VALIDITY_DAYS: i64 = 1096;
/// How far before "now" a new certificate's validity starts, to tolerate clock skew.
pub const BACKDATE: Duration = Duration::minutes(5);
/// The organization written into every fleet certificate's subject.
pub const ORGANIZATION: &str = "zonefleet";

/// Errors of the fleet PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A cluster name, controller id, operator name, host id or host name is malformed.
    #[error("invalid {what} {value:?}: must be {rule}")]
    InvalidName {
        /// What the value was meant to be.
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A string is not a fleet identity URI.
    #[error("invalid identity {value:?}: {reason}")]
    InvalidIdentity {
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// An `ID=HOST:PORT` controller endpoint is malformed.
    #[error("invalid controller endpoint {value:?}: {reason}")]
    InvalidEndpoint {
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A validity period ends before it starts, or the number of days is not positive.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    /// The identity to issue belongs to another cluster than the CA's.
    #[error("identity {identity} is not in this CA's cluster {ca_cluster:?}")]
    ClusterMismatch {
        /// The CA's cluster.
        ca_cluster: String,
        /// The identity asked for.
        identity: String,
    },
    /// The role needs a certificate kind it cannot have (e.g. an operator serving).
    #[error("{0}")]
    Unsupported(String),
    /// A certificate could not be parsed, or does not carry exactly one fleet identity.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// The CA certificate and key do not form a usable fleet CA.
    #[error("CA: {0}")]
    BadCa(String),
    /// A certificate signing request could not be parsed or is not acceptable.
    #[error("certificate signing request: {0}")]
    BadCsr(String),
    /// rcgen failed to generate a key or a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
    /// Reading or writing a file failed; names the file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A key file is unusable: unreadable, or accessible to group or others.
    #[error(transparent)]
    KeyFile(#[from] crate::modes::KeyFileError),
    /// The file exists and overwriting was not asked for.
    #[error("{0} already exists (use --force to overwrite)")]
    Exists(PathBuf),
}

// Errors carry their cause in their message rather than as `source()`, so that printing
// the chain (`{:#}`) does not repeat it.
impl From<rcgen::Error> for PkiError {
    fn from(error: rcgen::Error) -> Self {
        PkiError::Generate(error)
    }
}

/// A private key in PKCS#8 PEM. Its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(String);

impl KeyPem {
    /// Wraps a PEM string.
    pub fn new(pem: String) -> Self {
        KeyPem(pem)
    }

    /// The PEM text; write it only to a `0600` file or a TLS config.
    pub fn expose_pem(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From `now - BACKDATE` until `now + lifetime`.
    pub fn starting_now(lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - BACKDATE,
            not_after: now + lifetime,
        }
    }

    /// From `now - BACKDATE` for `days` days (the CA may issue a leaf for less: see
    /// [`lifetime`]).
    pub fn days(days: i64) -> Result<Self, PkiError> {
        if days <= 0 || days > 100 * 366 {
            return Err(PkiError::InvalidValidity(format!(
                "{days} days is not between 1 and 36600"
            )));
        }
        let now = OffsetDateTime::now_utc();
        Ok(Validity {
            not_before: now - BACKDATE,
            not_after: now + Duration::days(days),
        })
    }

    /// An explicit period (it may lie in the past, e.g. to test expiry).
    pub fn between(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        if not_after <= not_before {
            return Err(PkiError::InvalidValidity(format!(
                "not_after {not_after} is not after not_before {not_before}"
            )));
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

/// Which extended key usages a leaf certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsages {
    /// TLS client only (operators).
    Client,
    /// TLS server and client (controllers, agents).
    ServerAndClient,
}

impl KeyUsages {
    /// The usages the fleet gives a principal of this kind: operators are clients only,
    /// controllers and agents both serve and call.
    pub fn for_principal(principal: &Principal) -> Self {
        match principal {
            Principal::Operator { .. } => KeyUsages::Client,
            Principal::Controller(_) | Principal::Agent(_) => KeyUsages::ServerAndClient,
        }
    }
}

/// A certificate issued by the fleet CA, with its identity; the key is present when the
/// CA generated it (not when it signed a CSR).
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Who the certificate speaks for.
    pub identity: Identity,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The private key, when generated here.
    pub key_pem: Option<KeyPem>,
}

/// `sha256:<lowercase hex>` of a DER certificate: how the CA is pinned.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// The single fleet identity a certificate carries in its SAN URIs.
///
/// Fails when the DER does not parse, or when it carries no `zonefleet://` URI or more
/// than one (other URIs are ignored).
pub fn identity_from_cert_der(der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadCertificate(format!("cannot parse: {e}")))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::BadCertificate(format!("bad subjectAltName: {e}")))?;
    let mut found = None;
    for name in sans.iter().flat_map(|ext| ext.value.general_names.iter()) {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if uri.starts_with(&format!("{IDENTITY_SCHEME}:")) {
                let identity: Identity = uri.parse()?;
                if found.replace(identity).is_some() {
                    return Err(PkiError::BadCertificate(
                        "more than one zonefleet identity in subjectAltName".to_owned(),
                    ));
                }
            }
        }
    }
    found.ok_or_else(|| {
        PkiError::BadCertificate("no zonefleet:// identity in subjectAltName".to_owned())
    })
}

/// A certificate's serial number as lowercase hex (as `openssl x509 -serial` prints it,
/// in lowercase): how audit lines name the certificate used.
pub fn serial_from_cert_der(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadCertificate(format!("cannot parse: {e}")))?;
    Ok(hex::encode(cert.raw_serial()))
}

/// Serial numbers are random (122 bits from a v4 UUID), so re-issuing for the same key
/// never repeats one.
fn random_serial() -> SerialNumber {
    let mut bytes = Uuid::new_v4().into_bytes().to_vec();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// A fleet certificate authority: its certificate and the key that signs — either the
/// root (self-signed, the trust anchor) or a signing CA the root issued.
pub struct FleetCa {
    cluster: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
    /// The root above this CA; `None` when this CA is the root.
    root: Option<RootCert>,
}

/// The root certificate a signing CA was issued by.
#[derive(Clone)]
struct RootCert {
    pem: String,
    der: CertificateDer<'static>,
}

impl fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetCa")
            .field("cluster", &self.cluster)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl FleetCa {
    /// Generates a new root CA for `cluster`, valid [`CA_VALIDITY_DAYS`] from now.
    pub fn generate(cluster: &str) -> Result<Self, PkiError> {
        Self::generate_with_validity(cluster, Validity::days(CA_VALIDITY_DAYS)?)
    }

    /// Generates a new root CA for `cluster` with an explicit validity.
    ///
    /// The subject is `CN=zonefleet CA <cluster>, O=zonefleet, OU=<cluster>`: the cluster
    /// is read back from `OU` by [`FleetCa::from_pem`]. Path length 1: it signs signing
    /// CAs (and, in tests, leaves directly).
    pub fn generate_with_validity(cluster: &str, validity: Validity) -> Result<Self, PkiError> {
        validate_cluster(cluster)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(cluster, format!("zonefleet CA {cluster}"), 1, validity);
        let cert = params.self_signed(&key)?;
        Ok(FleetCa {
            cluster: cluster.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            not_after: validity.not_after,
            issuer: Issuer::new(params, key),
            root: None,
        })
    }

    /// Issues a signing CA under this root (path length 0: it signs leaves only), valid
    /// for `validity` but never past the root.
    pub fn issue_signing_ca(&self, validity: Validity) -> Result<FleetCa, PkiError> {
        if self.root.is_some() {
            return Err(PkiError::BadCa(
                "a signing CA cannot issue another signing CA; use the root".to_owned(),
            ));
        }
        self.check_within(&validity)?;
        let cluster = &self.cluster;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(
            cluster,
            format!("zonefleet signing CA {cluster}"),
            0,
            validity,
        );
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(FleetCa {
            cluster: cluster.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            not_after: validity.not_after,
            issuer: Issuer::new(params, key),
            root: Some(RootCert {
                pem: self.cert_pem.clone(),
                der: self.cert_der.clone(),
            }),
        })
    }

    /// Loads a root CA from its certificate and key PEM, checking that the key matches
    /// the certificate, that it is a self-signed CA and that it names a valid cluster.
    pub fn from_pem(cert_pem: &str, key_pem: &KeyPem) -> Result<Self, PkiError> {
        let ca = Self::parse(cert_pem, key_pem)?;
        root_cluster(&ca.cert_der)?;
        Ok(ca)
    }

    /// Loads a signing CA from its certificate and key PEM and the root certificate that
    /// issued it, checking the root's signature on it and that both name one cluster.
    pub fn signing_from_pem(
        root_pem: &str,
        cert_pem: &str,
        key_pem: &KeyPem,
    ) -> Result<Self, PkiError> {
        let mut ca = Self::parse(cert_pem, key_pem)?;
        let root_der = pem_to_cert_der(root_pem)?;
        let (_, root) = x509_parser::parse_x509_certificate(&root_der)
            .map_err(|e| PkiError::BadCa(format!("cannot parse the root certificate: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&ca.cert_der)
            .map_err(|e| PkiError::BadCa(format!("cannot parse certificate: {e}")))?;
        if cert.issuer() != root.subject()
            || cert.verify_signature(Some(root.public_key())).is_err()
        {
            return Err(PkiError::BadCa(
                "the signing CA was not issued by this root".to_owned(),
            ));
        }
        let root_cluster = cluster_of(&root)?;
        if root_cluster != ca.cluster {
            return Err(PkiError::BadCa(format!(
                "the signing CA is of cluster {:?}, the root of {root_cluster:?}",
                ca.cluster
            )));
        }
        ca.root = Some(RootCert {
            pem: root_pem.to_owned(),
            der: root_der,
        });
        Ok(ca)
    }

    /// A CA certificate and its key, unchecked as to who issued it.
    fn parse(cert_pem: &str, key_pem: &KeyPem) -> Result<Self, PkiError> {
        let der = pem_to_cert_der(cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::BadCa(format!("cannot parse certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(PkiError::BadCa("certificate is not a CA".to_owned()));
        }
        let cluster = cluster_of(&cert)?;
        let not_after = cert.validity().not_after.to_datetime();
        let key = KeyPair::from_pem(key_pem.expose_pem())
            .map_err(|e| PkiError::BadCa(format!("cannot parse key: {e}")))?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(PkiError::BadCa(
                "the key does not match the certificate".to_owned(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| PkiError::BadCa(format!("cannot use as issuer: {e}")))?;
        Ok(FleetCa {
            cluster,
            cert_pem: cert_pem.to_owned(),
            cert_der: der,
            not_after,
            issuer,
            root: None,
        })
    }

    /// Loads the signing CA of a PKI directory: `signing-ca.crt` and `signing-ca.key`,
    /// checked against the root `ca.crt` (see [`files`]). This is what issues leaves.
    pub fn load_dir(dir: &Path) -> Result<Self, PkiError> {
        let root_pem = read_file(&dir.join(files::CA_CERT))?;
        let cert_path = dir.join(files::SIGNING_CA_CERT);
        let cert_pem = read_file(&cert_path)?;
        let key_pem = read_key(&dir.join(files::SIGNING_CA_KEY))?;
        Self::signing_from_pem(&root_pem, &cert_pem, &key_pem).map_err(|e| match e {
            PkiError::BadCa(why) => PkiError::BadCa(format!("{}: {why}", cert_path.display())),
            other => other,
        })
    }

    /// Loads a root CA from its certificate and key files (the key is refused if group
    /// or others may read it).
    pub fn load_root(cert_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        let cert_pem = read_file(cert_path)?;
        let key_pem = read_key(key_path)?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            PkiError::BadCa(why) => PkiError::BadCa(format!(
                "{} with {}: {why}",
                cert_path.display(),
                key_path.display()
            )),
            other => other,
        })
    }

    /// The cluster this CA serves.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Whether this is the root (self-signed) rather than a signing CA.
    pub fn is_root(&self) -> bool {
        self.root.is_none()
    }

    /// This CA's own certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// This CA's own certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The root certificate, PEM: the trust anchor every node loads as `ca.crt`.
    pub fn root_cert_pem(&self) -> &str {
        self.root.as_ref().map_or(&self.cert_pem, |r| &r.pem)
    }

    /// The root certificate, DER.
    pub fn root_cert_der(&self) -> &CertificateDer<'static> {
        self.root.as_ref().map_or(&self.cert_der, |r| &r.der)
    }

    /// When this CA's certificate expires: no leaf it issues outlives it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// This CA's private key, PEM (to write its key file).
    pub fn key_pem(&self) -> KeyPem {
        KeyPem(self.issuer.key().serialize_pem())
    }

    /// `sha256:<hex>` of the root certificate's DER: what agents pin
    /// (`zonefleet.ca=sha256:…`), the same for every signing CA of the root.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.root_cert_der())
    }

    /// Refuses a validity that ends after this CA's certificate does.
    fn check_within(&self, validity: &Validity) -> Result<(), PkiError> {
        if validity.not_after > self.not_after {
            return Err(PkiError::InvalidValidity(format!(
                "it would outlive the {} CA, which expires {}{}",
                if self.is_root() { "root" } else { "signing" },
                self.not_after.date(),
                if self.is_root() {
                    ""
                } else {
                    " (issue the next one with zfadm pki rotate-signing-ca)"
                }
            )));
        }
        Ok(())
    }

    /// What a leaf presents: its certificate, then this CA's, then the root's when this
    /// is a signing CA. Verifiers that hold the root ignore the root in the chain; an
    /// enrolling agent, which holds only the root's fingerprint, finds the root by it in
    /// the controller's chain and verifies the rest against it before sending its token.
    fn presented_chain(&self, leaf_pem: String) -> String {
        let mut chain = leaf_pem + &self.cert_pem;
        if let Some(root) = &self.root {
            chain += &root.pem;
        }
        chain
    }

    /// A controller certificate: its identity URI plus a DNS/IP SAN for each address it
    /// serves on; serverAuth + clientAuth.
    pub fn issue_controller(
        &self,
        id: &str,
        addresses: &[HostName],
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let identity = Identity::controller(&self.cluster, id)?;
        self.issue(&identity, addresses, validity)
    }

    /// An admin operator certificate: clientAuth only.
    pub fn issue_operator(&self, name: &str, validity: Validity) -> Result<IssuedCert, PkiError> {
        self.issue_operator_with_role(name, OperatorRole::Admin, validity)
    }

    /// An operator certificate granting `role`: clientAuth only.
    pub fn issue_operator_with_role(
        &self,
        name: &str,
        role: OperatorRole,
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let identity = Identity::operator_with_role(&self.cluster, name, role)?;
        self.issue(&identity, &[], validity)
    }

    /// An agent certificate: serverAuth + clientAuth (the agent serves its own API), with
    /// optional DNS/IP SANs for the addresses it serves on.
    pub fn issue_agent(
        &self,
        host_id: Uuid,
        addresses: &[HostName],
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let identity = Identity::agent(&self.cluster, host_id)?;
        self.issue(&identity, addresses, validity)
    }

    /// Generates a key and issues a certificate for `identity` (which must be in this
    /// CA's cluster), with the usages of its kind and `addresses` as DNS/IP SANs.
    pub fn issue(
        &self,
        identity: &Identity,
        addresses: &[HostName],
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = self.leaf_params(identity, addresses, validity)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            identity: identity.clone(),
            cert_pem: self.presented_chain(cert.pem()),
            cert_der: cert.der().clone(),
            key_pem: Some(KeyPem(key.serialize_pem())),
        })
    }

    /// Signs a certificate signing request (PEM) for `identity`.
    ///
    /// Only the CSR's public key is used (after checking its self-signature, which proves
    /// the requester holds the key): the identity, SANs, usages and validity are decided
    /// here, never taken from the CSR. The key must be ECDSA P-256.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        addresses: &[HostName],
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::BadCsr(
                "the key must be ECDSA P-256 (signed with SHA-256)".to_owned(),
            ));
        }
        let params = self.leaf_params(identity, addresses, validity)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(IssuedCert {
            identity: identity.clone(),
            cert_pem: self.presented_chain(cert.pem()),
            cert_der: cert.der().clone(),
            key_pem: None,
        })
    }

    fn leaf_params(
        &self,
        identity: &Identity,
        addresses: &[HostName],
        validity: Validity,
    ) -> Result<CertificateParams, PkiError> {
        if identity.cluster() != self.cluster {
            return Err(PkiError::ClusterMismatch {
                ca_cluster: self.cluster.clone(),
                identity: identity.to_string(),
            });
        }
        lifetime::check(identity.principal(), &validity)?;
        self.check_within(&validity)?;
        let usages = KeyUsages::for_principal(identity.principal());
        if usages == KeyUsages::Client && !addresses.is_empty() {
            return Err(PkiError::Unsupported(format!(
                "{identity} is a client-only identity; it takes no DNS/IP names"
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.to_string());
        dn.push(DnType::OrganizationName, ORGANIZATION);
        dn.push(DnType::OrganizationalUnitName, self.cluster.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(identity.to_string().try_into()?)];
        for address in addresses {
            params.subject_alt_names.push(match address {
                HostName::Dns(name) => SanType::DnsName(name.clone().try_into()?),
                HostName::Ip(ip) => SanType::IpAddress(*ip),
            });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usages {
            KeyUsages::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            KeyUsages::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        Ok(params)
    }
}

/// The subject, constraints and usages of a CA certificate.
fn ca_params(
    cluster: &str,
    common_name: String,
    path_len: u8,
    validity: Validity,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::OrganizationalUnitName, cluster);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params
}

/// The cluster of a fleet root CA certificate (DER), checking that it is one: a
/// self-signed CA naming a valid cluster in its subject's `OU`. Loading a root and an
/// enrolling agent's pin both rest on this check.
pub fn root_cluster(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadCa(format!("cannot parse certificate: {e}")))?;
    if !cert.is_ca() || cert.subject() != cert.issuer() || cert.verify_signature(None).is_err() {
        return Err(PkiError::BadCa(
            "not a root CA (not a self-signed CA): a signing CA is loaded with its root, \
             and a pin names the root"
                .to_owned(),
        ));
    }
    cluster_of(&cert)
}

/// The cluster a CA certificate names in its subject's `OU`.
fn cluster_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<String, PkiError> {
    let cluster = cert
        .subject()
        .iter_organizational_unit()
        .next()
        .and_then(|ou| ou.as_str().ok())
        .ok_or_else(|| PkiError::BadCa("subject has no OU naming the cluster".to_owned()))?
        .to_owned();
    validate_cluster(&cluster).map_err(|e| PkiError::BadCa(e.to_string()))?;
    Ok(cluster)
}

fn read_file(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|error| PkiError::Io {
        path: path.to_owned(),
        error,
    })
}

/// A key file, refused if group or others may read it.
fn read_key(path: &Path) -> Result<KeyPem, PkiError> {
    crate::modes::require_private_key(path)?;
    Ok(KeyPem::new(read_file(path)?))
}

fn pem_to_cert_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::BadCa(format!("no certificate in PEM: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issues_and_reloads() {
        let ca = FleetCa::generate("prod").unwrap();
        assert!(ca.fingerprint().starts_with("sha256:"));
        assert_eq!(ca.fingerprint().len(), "sha256:".len() + 64);
        assert!(!format!("{:?}", ca.key_pem()).contains("PRIVATE"));

        let again = FleetCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cluster(), "prod");
        assert_eq!(again.fingerprint(), ca.fingerprint());

        let other = FleetCa::generate("prod").unwrap();
        assert!(matches!(
            FleetCa::from_pem(ca.cert_pem(), &other.key_pem()),
            Err(PkiError::BadCa(_))
        ));

        let validity = Validity::days(30).unwrap();
        let c = again
            .issue_controller("c1", &["127.0.0.1".parse().unwrap()], validity)
            .unwrap();
        assert_eq!(
            identity_from_cert_der(&c.cert_der).unwrap().to_string(),
            "zonefleet://prod/controller/c1"
        );
        let host = Uuid::new_v4();
        let a = ca
            .issue_agent(host, &[], Validity::days(1).unwrap())
            .unwrap();
        assert_eq!(
            identity_from_cert_der(&a.cert_der).unwrap().principal(),
            &Principal::Agent(host)
        );
        assert!(ca
            .issue(&Identity::operator("other", "x").unwrap(), &[], validity)
            .is_err());
        assert!(ca
            .issue(
                &Identity::operator("prod", "x").unwrap(),
                &["10.0.0.1".parse().unwrap()],
                validity
            )
            .is_err());
    }

    #[test]
    fn csr_identity_is_decided_by_the_ca() {
        let ca = FleetCa::generate("prod").unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        // The requester asks for a controller identity; the CA decides it is an agent.
        let mut asked = CertificateParams::default();
        asked.subject_alt_names = vec![SanType::URI(
            "zonefleet://prod/controller/evil".try_into().unwrap(),
        )];
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let host = Uuid::new_v4();
        let identity = Identity::agent("prod", host).unwrap();
        let cert = ca
            .sign_csr(&csr, &identity, &[], Validity::days(1).unwrap())
            .unwrap();
        assert!(cert.key_pem.is_none());
        assert_eq!(identity_from_cert_der(&cert.cert_der).unwrap(), identity);
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert_der).unwrap();
        assert_eq!(parsed.public_key().raw, key.subject_public_key_info());

        assert!(matches!(
            ca.sign_csr("garbage", &identity, &[], Validity::days(1).unwrap()),
            Err(PkiError::BadCsr(_))
        ));
    }

    #[test]
    fn a_signing_ca_issues_leaves_within_its_life_and_reloads_only_with_its_root() {
        let root = FleetCa::generate("prod").unwrap();
        let signing = root.issue_signing_ca(Validity::days(30).unwrap()).unwrap();
        assert!(!signing.is_root());
        assert_eq!(signing.root_cert_pem(), root.cert_pem());
        assert_eq!(signing.fingerprint(), root.fingerprint());
        assert!(signing
            .issue_signing_ca(Validity::days(1).unwrap())
            .is_err());

        // A leaf presents itself with the signing CA's certificate.
        let leaf = signing
            .issue_operator("alice", Validity::days(1).unwrap())
            .unwrap();
        let presented = format!("{}{}", signing.cert_pem(), root.cert_pem());
        assert!(leaf.cert_pem.ends_with(&presented), "{}", leaf.cert_pem);
        assert_eq!(leaf.cert_pem.matches("BEGIN CERTIFICATE").count(), 3);
        // No leaf outlives the signing CA; no signing CA outlives the root.
        let err = signing
            .issue_operator("bob", Validity::days(31).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("outlive the signing CA"), "{err}");
        let short_root =
            FleetCa::generate_with_validity("prod", Validity::days(10).unwrap()).unwrap();
        assert!(short_root
            .issue_signing_ca(Validity::days(11).unwrap())
            .is_err());

        let again =
            FleetCa::signing_from_pem(root.cert_pem(), signing.cert_pem(), &signing.key_pem())
                .unwrap();
        assert_eq!(again.cluster(), "prod");
        // As a root, or under another root, it does not load.
        let err = FleetCa::from_pem(signing.cert_pem(), &signing.key_pem()).unwrap_err();
        assert!(err.to_string().contains("not a root CA"), "{err}");
        let other = FleetCa::generate("prod").unwrap();
        let err =
            FleetCa::signing_from_pem(other.cert_pem(), signing.cert_pem(), &signing.key_pem())
                .unwrap_err();
        assert!(err.to_string().contains("not issued by this root"), "{err}");
    }

    #[test]
    fn validity_is_checked() {
        assert!(Validity::days(0).is_err());
        let now = OffsetDateTime::now_utc();
        assert!(Validity::between(now, now).is_err());
        assert!(Validity::between(now - Duration::days(2), now - Duration::days(1)).is_ok());
    }
}
