//! `Enroll` (a join token and a CSR for a certificate) and `RenewCertificate`.

use std::time::Instant;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};
use uuid::Uuid;
use zonefleet_proto::auth::Role;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;
use zonefleet_proto::pki::{parse_host_id, FleetCa, Identity, PkiError, Validity};

use super::limit::PeerLimiter;
use crate::api::operator::command;
use crate::node::Controller;
use crate::state::tokens::{token_id, TOKEN_REFUSED};

/// The longest join token taken, in bytes.
const MAX_TOKEN: usize = 256;
/// The longest CSR taken, in bytes.
const MAX_CSR: usize = 16 * 1024;

fn signing_ca(node: &Controller) -> Result<&FleetCa, Status> {
    node.control().signing_ca.as_deref().ok_or_else(|| {
        Status::failed_precondition(
            "this controller signs no agent certificates: its configuration has no \
             [signing_ca] (cert and key, from zfadm pki init's signing-ca.crt/.key)",
        )
    })
}

/// Signs `csr_pem` for the agent of `host`, for the configured lifetime.
fn sign(node: &Controller, csr_pem: &str, host: Uuid) -> Result<String, Status> {
    let ca = signing_ca(node)?;
    if csr_pem.is_empty() || csr_pem.len() > MAX_CSR {
        return Err(Status::invalid_argument(format!(
            "csr_pem: {} bytes; a PEM CSR of 1 to {MAX_CSR} bytes is needed",
            csr_pem.len()
        )));
    }
    let identity = Identity::agent(node.cluster(), host)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let hours = i64::from(node.control().agent_cert_hours);
    let validity = Validity::starting_now(time::Duration::hours(hours));
    match ca.sign_csr(csr_pem, &identity, &[], validity) {
        Ok(issued) => Ok(issued.cert_pem),
        Err(PkiError::BadCsr(why)) => Err(Status::invalid_argument(format!("csr_pem: {why}"))),
        Err(e) => Err(Status::failed_precondition(format!(
            "signing the certificate: {e}"
        ))),
    }
}

pub(super) async fn enroll(
    node: &Controller,
    limiter: &PeerLimiter,
    request: Request<pb::EnrollRequest>,
) -> Result<pb::EnrollResponse, Status> {
    let peer = request.remote_addr();
    if let Some(peer) = peer {
        if !limiter.allow(peer.ip(), Instant::now()) {
            tracing::warn!(%peer, "enroll: rate limit reached");
            return Err(Status::resource_exhausted(
                "enroll: too many calls from this address; retry in a few seconds",
            ));
        }
    }
    let request = request.into_inner();
    let host = parse_host_id(&request.host_id)
        .map_err(|e| Status::invalid_argument(format!("host_id: {e}")))?;
    if request.token.is_empty() || request.token.len() > MAX_TOKEN {
        return Err(Status::invalid_argument(format!(
            "token: {} bytes; a join token (zfadm token create) is needed",
            request.token.len()
        )));
    }
    // Signed before the token is consumed (and thrown away if it is refused): a bad
    // CSR never burns a token.
    let certificate_pem = sign(node, &request.csr_pem, host)?;
    let sha256 = hex::encode(Sha256::digest(request.token.as_bytes()));
    let host_id = host.to_string();
    let result = node
        .write(command(Kind::EnrollHost(pb::EnrollHostCommand {
            token_sha256: sha256.clone(),
            host_id: host_id.clone(),
        })))
        .await;
    match result {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            // Never the token itself: a prefix of its digest is enough to match the
            // line with `zfadm token list`.
            tracing::warn!(token = token_id(&sha256), host = %host_id,
                peer = ?peer, "enroll: join token refused");
            return Err(Status::permission_denied(TOKEN_REFUSED));
        }
        Err(status) => return Err(status),
    }
    tracing::info!(token = token_id(&sha256), host = %host_id, "host enrolled");
    let ca = signing_ca(node)?;
    Ok(pb::EnrollResponse {
        certificate_pem,
        ca_pem: ca.root_cert_pem().to_owned(),
        controllers: node.controller_addresses(),
    })
}

pub(super) async fn renew(
    node: &Controller,
    request: Request<pb::RenewCertificateRequest>,
) -> Result<pb::RenewCertificateResponse, Status> {
    let host = match Role::from_request(&request)? {
        Role::Agent(host) => *host,
        other => {
            return Err(Status::permission_denied(format!(
                "{other} is not an agent"
            )))
        }
    };
    signing_ca(node)?;
    let host_id = host.to_string();
    node.read_barrier(false).await?;
    {
        let applied = node.state().await;
        let fleet = &applied.fleet;
        if !fleet.hosts.contains_key(&host_id) && !fleet.enrollments.contains_key(&host_id) {
            return Err(Status::permission_denied(format!(
                "host {host_id} is neither enrolled nor registered; enroll it with a join token"
            )));
        }
    }
    let certificate_pem = sign(node, &request.get_ref().csr_pem, host)?;
    tracing::info!(host = %host_id, "agent certificate renewed");
    Ok(pb::RenewCertificateResponse { certificate_pem })
}
