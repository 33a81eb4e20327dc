//! The fleet PKI: one CA per fleet (ECDSA P-256, rcgen) that issues controller, agent
//! and operator certificates carrying a [`Identity`] as their SAN URI.
//!
//! Private keys are PKCS#8 PEM held in [`KeyPem`], whose `Debug` is redacted and which
//! has no `Display`, so a key is not printed by accident. [`files`] writes them `0600`.

pub mod files;
mod identity;

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

/// How long a new CA is valid: 10 years.
pub const CA_VALIDITY_DAYS: i64 = 3653;
/// Default validity of controller, operator and agent certificates, in days.
pub const DEFAULT_CERT_DAYS: i64 = 365;
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
    /// From `now - BACKDATE` for `days` days.
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

/// The fleet certificate authority: its certificate and the key that signs.
pub struct FleetCa {
    cluster: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
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
    /// Generates a new CA for `cluster`, valid [`CA_VALIDITY_DAYS`] from now.
    pub fn generate(cluster: &str) -> Result<Self, PkiError> {
        Self::generate_with_validity(cluster, Validity::days(CA_VALIDITY_DAYS)?)
    }

    /// Generates a new CA for `cluster` with an explicit validity.
    ///
    /// The subject is `CN=zonefleet CA <cluster>, O=zonefleet, OU=<cluster>`: the cluster
    /// is read back from `OU` by [`FleetCa::from_pem`]. Path length 0: it signs leaves only.
    pub fn generate_with_validity(cluster: &str, validity: Validity) -> Result<Self, PkiError> {
        validate_cluster(cluster)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("zonefleet CA {cluster}"));
        dn.push(DnType::OrganizationName, ORGANIZATION);
        dn.push(DnType::OrganizationalUnitName, cluster);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        Ok(FleetCa {
            cluster: cluster.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key PEM, checking that the key matches the
    /// certificate, that it is a CA and that it names a valid cluster.
    pub fn from_pem(cert_pem: &str, key_pem: &KeyPem) -> Result<Self, PkiError> {
        let der = pem_to_cert_der(cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::BadCa(format!("cannot parse certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(PkiError::BadCa("certificate is not a CA".to_owned()));
        }
        let cluster = cert
            .subject()
            .iter_organizational_unit()
            .next()
            .and_then(|ou| ou.as_str().ok())
            .ok_or_else(|| PkiError::BadCa("subject has no OU naming the cluster".to_owned()))?
            .to_owned();
        validate_cluster(&cluster).map_err(|e| PkiError::BadCa(e.to_string()))?;
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
            issuer,
        })
    }

    /// Loads `ca.crt` and `ca.key` from `dir` (see [`files`]).
    pub fn load_dir(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(files::CA_CERT);
        let key_path = dir.join(files::CA_KEY);
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|error| PkiError::Io {
                path: path.to_owned(),
                error,
            })
        };
        let cert_pem = read(&cert_path)?;
        crate::modes::require_private_key(&key_path)?;
        let key_pem = KeyPem::new(read(&key_path)?);
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            PkiError::BadCa(why) => PkiError::BadCa(format!("{}: {why}", dir.display())),
            other => other,
        })
    }

    /// The cluster this CA serves.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's private key, PEM (to write `ca.key`).
    pub fn key_pem(&self) -> KeyPem {
        KeyPem(self.issuer.key().serialize_pem())
    }

    /// `sha256:<hex>` of the CA certificate's DER.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
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
            cert_pem: cert.pem(),
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
            cert_pem: cert.pem(),
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
        let a = ca.issue_agent(host, &[], validity).unwrap();
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
    fn validity_is_checked() {
        assert!(Validity::days(0).is_err());
        let now = OffsetDateTime::now_utc();
        assert!(Validity::between(now, now).is_err());
        assert!(Validity::between(now - Duration::days(2), now - Duration::days(1)).is_ok());
    }
}
