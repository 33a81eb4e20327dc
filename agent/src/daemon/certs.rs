//! The agent's credentials in its data dir, and their renewal.
//!
//! | file | what | mode |
//! |---|---|---|
//! | `agent.key` | the host's ECDSA P-256 key, generated here; it never leaves the host | 0600 |
//! | `agent.crt` | the certificate chain the controllers signed (`leaf, signing CA, root`) | 0644 |
//! | `ca.crt` | the fleet root, the only certificate trusted for the controllers | 0644 |
//! | `controllers` | the controllers enrollment named, one `HOST:PORT` a line | 0644 |
//!
//! The key is kept across renewals (a new CSR for the same key); a new key is made
//! only when there is none. Renewal runs at about two thirds of the certificate's life
//! ([`Credentials::renew_at`]) and swaps the client TLS config of the
//! [`ControlClient`] and the certificate the `Agent` listener serves
//! ([`ReloadableCert`]) in place: nothing restarts.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use uuid::Uuid;
use zonefleet_proto::pb;
use zonefleet_proto::pki::{self, Identity, KeyPem, Principal};
use zonefleet_proto::tls::{self, CertKey, ExpectedPeer, FleetTrust, ReloadableCert};

use super::backoff::Backoff;
use super::client::{ClientError, ControlClient};

/// The host's private key file in the data dir.
pub const KEY_FILE: &str = "agent.key";
/// The host's certificate chain file in the data dir.
pub const CERT_FILE: &str = "agent.crt";
/// The fleet root certificate file in the data dir.
pub const CA_FILE: &str = "ca.crt";
/// The controllers enrollment named, one a line.
pub const CONTROLLERS_FILE: &str = "controllers";

/// Errors of the agent's credentials.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written; names it.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A stored or received certificate or key is unusable.
    #[error("{what}: {reason}")]
    Bad {
        /// What was being read (a file, or the controller's answer).
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// The key could not be generated or the CSR made.
    #[error("key or CSR: {0}")]
    Generate(String),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A call to the controllers failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |error| CertError::Io {
        path: path.to_owned(),
        error,
    }
}

fn bad(what: impl Into<String>, reason: impl Into<String>) -> CertError {
    CertError::Bad {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The host's private key.
pub struct HostKey {
    pair: KeyPair,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostKey(<redacted>)")
    }
}

impl HostKey {
    /// Reads `agent.key` from `data_dir`, or generates a P-256 key and writes it
    /// there (0600) when there is none. A key file group or others may read is refused.
    pub fn load_or_generate(data_dir: &Path) -> Result<HostKey, CertError> {
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            zonefleet_proto::modes::require_private_key(&path)
                .map_err(|e| bad(path.display().to_string(), e.to_string()))?;
            let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
            let pair = KeyPair::from_pem(&pem)
                .map_err(|e| bad(path.display().to_string(), format!("not a key: {e}")))?;
            if pair.algorithm() != &PKCS_ECDSA_P256_SHA256 {
                return Err(bad(path.display().to_string(), "not an ECDSA P-256 key"));
            }
            return Ok(HostKey { pair });
        }
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertError::Generate(e.to_string()))?;
        write_private(&path, pair.serialize_pem().as_bytes())?;
        Ok(HostKey { pair })
    }

    /// A CSR for this key (the controllers decide the identity, not the CSR).
    pub fn csr_pem(&self, host_id: Uuid) -> Result<String, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("zonefleet agent {host_id}"));
        params.distinguished_name = dn;
        params
            .serialize_request(&self.pair)
            .and_then(|csr| csr.pem())
            .map_err(|e| CertError::Generate(e.to_string()))
    }

    fn key_pem(&self) -> KeyPem {
        KeyPem::new(self.pair.serialize_pem())
    }

    fn spki(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.pair.subject_public_key_info()
    }
}

/// Writes a private file: 0600 from its creation, fsync, renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(zonefleet_proto::modes::PRIVATE_FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    crate::files::write_atomic(path, bytes).map_err(|e| CertError::Io {
        path: e.path,
        error: e.source,
    })
}

/// The agent's identity: its certificate and key, and the root it trusts.
#[derive(Clone)]
pub struct Credentials {
    /// The chain and key, for the client TLS config.
    pub cert_key: CertKey,
    /// The chain as PEM (as stored).
    pub chain_pem: String,
    /// The fleet root as PEM.
    pub ca_pem: String,
    /// `zonefleet://<cluster>/agent/<host_id>`.
    pub identity: Identity,
    /// Start of the certificate's validity.
    pub not_before: OffsetDateTime,
    /// End of the certificate's validity.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity.to_string())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks a chain and root for `key` and `host_id`: the leaf is for this host's
    /// agent identity and this key, and chains to `ca_pem` (whose fingerprint must be
    /// `pin` when given). `what` names the source in errors.
    pub fn check(
        what: &str,
        key: &HostKey,
        host_id: Uuid,
        chain_pem: &str,
        ca_pem: &str,
        pin: Option<&str>,
    ) -> Result<Credentials, CertError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(what, format!("certificate chain: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad(what, "the certificate chain is empty"))?;
        let root = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| bad(what, format!("CA certificate: {e}")))?;
        if let Some(pin) = pin {
            let got = pki::fingerprint(&root);
            if got != pin {
                return Err(bad(
                    what,
                    format!("the CA certificate is {got}, not the pinned root {pin}"),
                ));
            }
        }
        let identity = pki::identity_from_cert_der(leaf).map_err(|e| bad(what, e.to_string()))?;
        if identity.principal() != &Principal::Agent(host_id) {
            return Err(bad(
                what,
                format!("the certificate is for {identity}, not the agent of host {host_id}"),
            ));
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| bad(what, format!("certificate: {e}")))?;
        if parsed.public_key().raw != key.spki().as_slice() {
            return Err(bad(what, "the certificate is not for this host's key"));
        }
        let validity = parsed.validity();
        let (not_before, not_after) = (
            validity.not_before.to_datetime(),
            validity.not_after.to_datetime(),
        );
        let trust = FleetTrust::new(identity.cluster(), vec![root.clone()])?;
        let cert_key = CertKey {
            chain: chain.clone(),
            key: rustls_pki_types::PrivateKeyDer::from_pem_slice(
                key.key_pem().expose_pem().as_bytes(),
            )
            .map_err(|e| bad(what, format!("key: {e}")))?,
        };
        // The leaf must chain to the root (through the signing CA it presents). The
        // chain is judged at an instant inside the leaf's validity: whether it has
        // expired is the caller's question (an expired one means enrolling again).
        let now = OffsetDateTime::now_utc();
        let at = now.clamp(not_before, not_after);
        let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(at.unix_timestamp()).unwrap_or(0),
        ));
        verify_chain(&trust, &chain, at).map_err(|reason| bad(what, reason))?;
        Ok(Credentials {
            cert_key,
            chain_pem: chain_pem.to_owned(),
            ca_pem: ca_pem.to_owned(),
            identity,
            not_before,
            not_after,
        })
    }

    /// Reads the stored credentials; `None` when the host has no certificate yet.
    pub fn load(data_dir: &Path, key: &HostKey, host_id: Uuid) -> Result<Option<Self>, CertError> {
        let cert_path = data_dir.join(CERT_FILE);
        let chain_pem = match std::fs::read_to_string(&cert_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&cert_path)(e)),
        };
        let ca_path = data_dir.join(CA_FILE);
        let ca_pem = std::fs::read_to_string(&ca_path).map_err(io(&ca_path))?;
        let what = cert_path.display().to_string();
        Self::check(&what, key, host_id, &chain_pem, &ca_pem, None).map(Some)
    }

    /// Writes the chain and the root to the data dir.
    pub fn store(&self, data_dir: &Path) -> Result<(), CertError> {
        write_public(&data_dir.join(CA_FILE), self.ca_pem.as_bytes())?;
        write_public(&data_dir.join(CERT_FILE), self.chain_pem.as_bytes())
    }

    /// Whether the certificate has expired at `now`.
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        now >= self.not_after
    }

    /// When to renew: two thirds into the certificate's life.
    pub fn renew_at(&self) -> OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// `sha256:<hex>` of the stored root.
    pub fn root_fingerprint(&self) -> Option<String> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .ok()
            .map(|root| pki::fingerprint(&root))
    }

    /// The trust of the fleet: its root alone, for this identity's cluster.
    pub fn trust(&self) -> Result<FleetTrust, CertError> {
        let root = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| bad(CA_FILE, e.to_string()))?;
        Ok(FleetTrust::new(self.identity.cluster(), vec![root])?)
    }

    /// The mTLS client config: this certificate, any controller of the cluster.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, CertError> {
        Ok(tls::client_config(
            &self.trust()?,
            ExpectedPeer::AnyController,
            Some(&self.cert_key),
        )?)
    }
}

/// Checks that `chain`'s leaf chains to `trust`'s root with clientAuth, as a
/// controller will check it.
fn verify_chain(
    trust: &FleetTrust,
    chain: &[CertificateDer<'static>],
    at: rustls_pki_types::UnixTime,
) -> Result<(), String> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(trust.roots(), tls::provider())
            .build()
            .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], at)
        .map(|_| ())
        .map_err(|e| format!("the certificate does not chain to the fleet root: {e}"))
}

/// Reads the controllers enrollment named (empty when there is no file).
pub fn load_controllers(data_dir: &Path) -> Result<Vec<String>, CertError> {
    let path = data_dir.join(CONTROLLERS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Writes the controllers list.
pub fn store_controllers(data_dir: &Path, controllers: &[String]) -> Result<(), CertError> {
    let mut text = controllers.join("\n");
    text.push('\n');
    write_public(&data_dir.join(CONTROLLERS_FILE), text.as_bytes())
}

/// Renews the certificate once: a CSR for the same key, `RenewCertificate` over the
/// current mTLS, the answer checked against the stored root, stored, and the client's
/// TLS config swapped.
pub async fn renew_once(
    client: &ControlClient,
    data_dir: &Path,
    key: &HostKey,
    current: &Credentials,
) -> Result<Credentials, CertError> {
    let host_id = match current.identity.principal() {
        Principal::Agent(id) => *id,
        _ => unreachable!("checked at load"),
    };
    let csr_pem = key.csr_pem(host_id)?;
    let response = client
        .call("RenewCertificate", move |mut c| {
            let csr_pem = csr_pem.clone();
            async move {
                c.renew_certificate(pb::RenewCertificateRequest { csr_pem })
                    .await
            }
        })
        .await?;
    let renewed = Credentials::check(
        "the renewed certificate",
        key,
        host_id,
        &response.certificate_pem,
        &current.ca_pem,
        None,
    )?;
    renewed.store(data_dir)?;
    client.set_tls(renewed.client_config()?);
    tracing::info!(not_after = %renewed.not_after, "certificate renewed");
    Ok(renewed)
}

/// Renews the certificate at about two thirds of its life, for ever, and serves each
/// renewed one from `served` (the `Agent` listener's); a failed renewal is tried
/// again after a backoff (at most a minute, and never later than a tenth of the time
/// left).
pub async fn renew_loop(
    client: ControlClient,
    data_dir: PathBuf,
    key: Arc<HostKey>,
    mut current: Credentials,
    served: Arc<ReloadableCert>,
) {
    loop {
        let wait = until(current.renew_at());
        tokio::time::sleep(wait).await;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            match renew_once(&client, &data_dir, &key, &current).await {
                Ok(renewed) => {
                    if let Err(e) = served.replace(&renewed.cert_key) {
                        tracing::error!(error = %e, "the Agent listener keeps the previous certificate");
                    }
                    current = renewed;
                    break;
                }
                Err(e) => {
                    let left = until(current.not_after);
                    if left.is_zero() {
                        tracing::error!(error = %e, "certificate expired and could not be renewed: enrolling again needs a new join token; zones keep running");
                    } else {
                        tracing::warn!(error = %e, left_s = left.as_secs(), "certificate renewal failed; trying again");
                    }
                    // Never later than a tenth of what is left of the certificate.
                    let pause = backoff
                        .next_pause()
                        .min((left / 10).max(Duration::from_secs(1)));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// The time from now until `at` (zero when past).
fn until(at: OffsetDateTime) -> Duration {
    let left = at - OffsetDateTime::now_utc();
    left.try_into().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use zonefleet_proto::pki::{FleetCa, Validity};

    #[test]
    fn the_key_is_made_once_0600_and_certificates_are_checked_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = HostKey::load_or_generate(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = HostKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.spki(), key.spki(), "the same key on the next start");

        let root = FleetCa::generate("prod").unwrap();
        let signing = root.issue_signing_ca(Validity::days(30).unwrap()).unwrap();
        let host = Uuid::new_v4();
        let identity = Identity::agent("prod", host).unwrap();
        let csr = key.csr_pem(host).unwrap();
        let issued = signing
            .sign_csr(&csr, &identity, &[], Validity::days(1).unwrap())
            .unwrap();
        let pin = root.fingerprint();
        let creds = Credentials::check(
            "test",
            &key,
            host,
            &issued.cert_pem,
            root.cert_pem(),
            Some(&pin),
        )
        .unwrap();
        assert_eq!(creds.identity, identity);
        assert!(creds.renew_at() > creds.not_before && creds.renew_at() < creds.not_after);
        creds.store(dir.path()).unwrap();
        let loaded = Credentials::load(dir.path(), &key, host).unwrap().unwrap();
        assert_eq!(loaded.not_after, creds.not_after);
        creds.client_config().unwrap();

        // Another host's certificate, another key's, another root, a wrong pin.
        let err = Credentials::check(
            "t",
            &key,
            Uuid::new_v4(),
            &issued.cert_pem,
            root.cert_pem(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not the agent of host"), "{err}");
        let other_key = tempfile::tempdir().unwrap();
        let other_key = HostKey::load_or_generate(other_key.path()).unwrap();
        let err = Credentials::check(
            "t",
            &other_key,
            host,
            &issued.cert_pem,
            root.cert_pem(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not for this host's key"), "{err}");
        let other_root = FleetCa::generate("prod").unwrap();
        let err = Credentials::check(
            "t",
            &key,
            host,
            &issued.cert_pem,
            other_root.cert_pem(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not chain to the fleet root"), "{err}");
        let err = Credentials::check(
            "t",
            &key,
            host,
            &issued.cert_pem,
            root.cert_pem(),
            Some(&other_root.fingerprint()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not the pinned root"), "{err}");

        // A key file others may read is refused, naming it.
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = HostKey::load_or_generate(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains(KEY_FILE), "{err}");
    }
}
