//! The `Control` gRPC service: what agents call (see `control.proto` and
//! docs/controller.md). `Enroll` is the one RPC callable without a client certificate
//! (rate-limited per peer address, the join token checked by a Raft command); every
//! other RPC is an agent's, and only for its own host ([`own_host`]).
//!
//! * this module: `Register`, `Heartbeat`, `ReportZoneState`;
//! * `enroll`: `Enroll` and `RenewCertificate`;
//! * `watch`: `WatchAssignments`;
//! * `download`: `DownloadImage` (only images the caller's zones use);
//! * [`limit`]: the per-peer token bucket of `Enroll`.

mod download;
mod enroll;
pub mod limit;
mod watch;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zonefleet_proto::auth::Role;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;

use crate::api::operator::command;
use crate::node::Controller;
use crate::state::check;
use crate::state::reports::{assigned_to, is_transition, releases};
use limit::PeerLimiter;

/// The largest agent request a controller accepts (4 MiB: a report of many zones).
pub const MAX_CONTROL_MESSAGE: usize = 4 * 1024 * 1024;

/// The `Control` service of one controller.
#[derive(Debug, Clone)]
pub struct ControlService {
    node: Controller,
    enroll_limit: Arc<PeerLimiter>,
}

impl ControlService {
    /// Serves `node`.
    pub fn new(node: Controller) -> Self {
        let options = node.control();
        let enroll_limit = Arc::new(PeerLimiter::new(
            options.enroll_burst,
            options.enroll_per_second,
        ));
        ControlService { node, enroll_limit }
    }
}

/// The caller's host id, when the caller is the agent of `host_id` (which must be
/// written as the certificate's: a lowercase hyphenated UUID).
pub fn own_host<T>(request: &Request<T>, host_id: &str) -> Result<String, Status> {
    let role = Role::from_request(request)?;
    role.require_host(host_id)?;
    let canonical = match role {
        Role::Agent(host) => host.to_string(),
        other => {
            return Err(Status::permission_denied(format!(
                "{other} is not an agent"
            )))
        }
    };
    if canonical != host_id {
        return Err(Status::invalid_argument(format!(
            "host_id: {host_id:?} must be written {canonical:?}"
        )));
    }
    Ok(canonical)
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        enroll::enroll(&self.node, &self.enroll_limit, request)
            .await
            .map(Response::new)
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        enroll::renew(&self.node, request).await.map(Response::new)
    }

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let sysinfo_host = request
            .get_ref()
            .sysinfo
            .as_ref()
            .map(|s| s.host_id.clone())
            .ok_or_else(|| Status::invalid_argument("sysinfo: missing"))?;
        let host_id = own_host(&request, &sysinfo_host)?;
        let request = request.into_inner();
        let capacity = request
            .capacity
            .ok_or_else(|| Status::invalid_argument("capacity: missing"))?;
        // Rack and labels: the enrollment's (or what the host already has), taken by
        // the state machine; the host sends none.
        self.node
            .write(command(Kind::RegisterHost(pb::RegisterHostCommand {
                host: Some(pb::Host {
                    host_id: host_id.clone(),
                    sysinfo: request.sysinfo,
                    capacity: Some(capacity),
                    ..Default::default()
                }),
            })))
            .await?;
        // A lease at once, so the host is not judged before its first heartbeat.
        let beat = pb::ForwardHeartbeatRequest {
            host_id: host_id.clone(),
            capacity: None,
            applied_revision: 0,
        };
        if let Err(e) = self.node.heartbeat(beat).await {
            tracing::debug!(host = %host_id, error = %e, "first lease after Register");
        }
        let (interval, ttl) = self.node.lease_terms();
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            lease_ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            fence_margin_ms: u64::try_from(self.node.control().fence_margin.as_millis())
                .unwrap_or(u64::MAX),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let host_id = own_host(&request, &request.get_ref().host_id)?;
        let request = request.into_inner();
        let granted = self
            .node
            .heartbeat(pb::ForwardHeartbeatRequest {
                host_id: host_id.clone(),
                capacity: request.capacity,
                applied_revision: request.applied_revision,
            })
            .await?;
        // The revocations the agent lacks, from this controller's applied list (which
        // only grows, in the same order on every controller).
        let known = usize::try_from(request.known_revocations).unwrap_or(usize::MAX);
        let revocations = self
            .node
            .state()
            .await
            .fleet
            .revocations
            .get(known..)
            .map(<[pb::Revocation]>::to_vec)
            .unwrap_or_default();
        Ok(Response::new(pb::HeartbeatResponse {
            lease_expires_unix_ms: granted.lease_expires_unix_ms,
            revocations,
            assignments_revision: granted.assignments_revision,
        }))
    }

    type WatchAssignmentsStream = watch::AssignmentStream;

    async fn watch_assignments(
        &self,
        request: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        let host_id = own_host(&request, &request.get_ref().host_id)?;
        let from = request.get_ref().from_revision;
        Ok(Response::new(watch::start(
            self.node.clone(),
            host_id,
            from,
        )))
    }

    type DownloadImageStream = download::ImageStream;

    async fn download_image(
        &self,
        request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        download::download(&self.node, request)
            .await
            .map(Response::new)
    }

    async fn report_zone_state(
        &self,
        request: Request<pb::ReportZoneStateRequest>,
    ) -> Result<Response<pb::ReportZoneStateResponse>, Status> {
        let host_id = own_host(&request, &request.get_ref().host_id)?;
        let report = pb::ReportZoneStatesCommand {
            host_id: host_id.clone(),
            zones: request.into_inner().zones,
        };
        // The whole report's content first, for one clear error.
        let kind = Kind::ReportZoneStates(report);
        check::command(&kind).map_err(|e| Status::new(e.code(), e.to_string()))?;
        let Kind::ReportZoneStates(mut report) = kind else {
            unreachable!("built above")
        };
        {
            let applied = self.node.state().await;
            report
                .zones
                .retain(|observed| match applied.fleet.zones.get(&observed.uuid) {
                    Some(zone) if assigned_to(zone, &host_id) => is_transition(zone, observed),
                    Some(zone) if releases(zone, &host_id, observed) => true,
                    _ => {
                        // Ignored, not refused: the agent may report a zone the
                        // controllers moved or forgot a moment ago.
                        tracing::warn!(host = %host_id, zone = %observed.uuid,
                        "report for a zone not assigned to this host ignored");
                        false
                    }
                });
        }
        if !report.zones.is_empty() {
            self.node
                .write(command(Kind::ReportZoneStates(report)))
                .await?;
        }
        Ok(Response::new(pb::ReportZoneStateResponse {}))
    }
}
