//! How the agent gets its identity: the certificate in its data dir while it is
//! valid, else enrollment with a join token over TLS that trusts only the pinned root.
//!
//! Enrollment sends `{token, csr_pem, host_id}` to a controller verified by
//! [`zonefleet_proto::tls::PinnedRootVerifier`] (so the token never reaches an
//! impostor), checks the answer (the chain is for this host and key and chains to the
//! returned root, whose fingerprint is the pin), and stores the chain, the root and
//! the controllers it names. A host whose certificate expired while the agent was off
//! enrolls again only with a (new) token; without one it stops with an error saying so.

use std::path::Path;

use time::OffsetDateTime;
use uuid::Uuid;
use zonefleet_proto::pb;
use zonefleet_proto::tls::pinned_client_config;

use super::certs::{self, CertError, Credentials, HostKey};
use super::client::ControlClient;
use super::config::AgentConfig;

/// Errors of getting an identity.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The configuration lacks what enrollment needs.
    #[error("{0}")]
    Missing(String),
    /// The controllers refused the token.
    #[error("join token refused by the controllers: {0} (a token works once, before it expires: create another with `zfadm token create`)")]
    TokenRefused(String),
    /// Credentials could not be read, checked or stored, or the call failed.
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// The agent's identity and the controllers to call with it.
#[derive(Debug)]
pub struct Enrolled {
    /// The certificate, key and root.
    pub credentials: Credentials,
    /// The controllers: the configured ones, else those enrollment named.
    pub controllers: Vec<String>,
    /// Whether this start enrolled (rather than reusing a stored certificate).
    pub fresh: bool,
}

/// Uses the stored certificate when it is still valid, else enrolls.
pub async fn establish(
    config: &AgentConfig,
    host_id: Uuid,
    key: &HostKey,
) -> Result<Enrolled, EnrollError> {
    let data = &config.data_dir;
    let stored = Credentials::load(data, key, host_id)?;
    let now = OffsetDateTime::now_utc();
    // The configured pin names the fleet: a stored root of another fleet (the host
    // was moved, or the fleet made anew) means enrolling again.
    let other_fleet = |c: &Credentials| {
        config
            .ca_pin
            .as_deref()
            .is_some_and(|pin| c.root_fingerprint().as_deref() != Some(pin))
    };
    let why_enroll = match stored {
        Some(credentials) if other_fleet(&credentials) => format!(
            "the fleet root in {} is {}, not the pinned {}",
            data.join(certs::CA_FILE).display(),
            credentials.root_fingerprint().unwrap_or_default(),
            config.ca_pin.as_deref().unwrap_or_default()
        ),
        Some(credentials) if !credentials.expired_at(now) => {
            let mut controllers = config.controllers.clone();
            if controllers.is_empty() {
                controllers = certs::load_controllers(data)?;
            }
            if controllers.is_empty() {
                return Err(EnrollError::Missing(
                    "no controllers: give controllers in agent.toml or zonefleet.controllers="
                        .to_owned(),
                ));
            }
            return Ok(Enrolled {
                credentials,
                controllers,
                fresh: false,
            });
        }
        Some(expired) => format!(
            "the certificate in {} expired at {} while the agent was off",
            data.join(certs::CERT_FILE).display(),
            expired.not_after
        ),
        None => format!(
            "this host has no certificate yet ({} is missing)",
            data.join(certs::CERT_FILE).display()
        ),
    };
    let Some(token) = &config.token else {
        return Err(EnrollError::Missing(format!(
            "{why_enroll}: enrolling needs a join token (token in agent.toml or zonefleet.token=; \
             create one with `zfadm token create`)"
        )));
    };
    let Some(pin) = &config.ca_pin else {
        return Err(EnrollError::Missing(format!(
            "{why_enroll}: enrolling needs the fleet root's fingerprint (ca in agent.toml or \
             zonefleet.ca=sha256:…, as `zfadm pki init` prints it)"
        )));
    };
    if config.controllers.is_empty() {
        return Err(EnrollError::Missing(format!(
            "{why_enroll}: enrolling needs the controllers (controllers in agent.toml or \
             zonefleet.controllers=HOST:PORT,…)"
        )));
    }
    tracing::info!(%host_id, reason = %why_enroll, "enrolling");
    let enrolled = enroll(
        data,
        &config.controllers,
        token.expose(),
        pin,
        config.cluster.as_deref(),
        host_id,
        key,
    )
    .await?;
    Ok(enrolled)
}

/// Enrolls `host_id` with `token` at one of `controllers`, pinning `pin`.
pub async fn enroll(
    data_dir: &Path,
    controllers: &[String],
    token: &str,
    pin: &str,
    cluster: Option<&str>,
    host_id: Uuid,
    key: &HostKey,
) -> Result<Enrolled, EnrollError> {
    let tls = pinned_client_config(pin, cluster).map_err(CertError::from)?;
    let client = ControlClient::new(controllers.to_vec(), tls);
    let csr_pem = key.csr_pem(host_id)?;
    let token = token.to_owned();
    let response = client
        .call("Enroll", move |mut c| {
            let request = pb::EnrollRequest {
                token: token.clone(),
                csr_pem: csr_pem.clone(),
                host_id: host_id.to_string(),
            };
            async move { c.enroll(request).await }
        })
        .await
        .map_err(|e| match e.code() {
            Some(tonic::Code::PermissionDenied) => EnrollError::TokenRefused(e.to_string()),
            _ => EnrollError::Cert(e.into()),
        })?;
    let credentials = Credentials::check(
        "the controller's enrollment answer",
        key,
        host_id,
        &response.certificate_pem,
        &response.ca_pem,
        Some(pin),
    )?;
    if credentials.expired_at(OffsetDateTime::now_utc()) {
        return Err(CertError::Bad {
            what: "the controller's enrollment answer".to_owned(),
            reason: format!("the certificate expired at {}", credentials.not_after),
        }
        .into());
    }
    credentials.store(data_dir)?;
    let mut named = response.controllers;
    named.retain(|c| !c.trim().is_empty());
    if !named.is_empty() {
        certs::store_controllers(data_dir, &named)?;
    }
    tracing::info!(identity = %credentials.identity, not_after = %credentials.not_after, "enrolled");
    Ok(Enrolled {
        credentials,
        controllers: if named.is_empty() {
            controllers.to_vec()
        } else {
            // The configured controllers first (the operator's choice), then the others.
            let mut all = controllers.to_vec();
            all.extend(named.into_iter().filter(|c| !controllers.contains(c)));
            all
        },
        fresh: true,
    })
}
