//! The `Operator` gRPC service: what `zfadm` calls. Any controller answers any call:
//! writes are committed through the leader ([`Controller::write`]), reads are
//! linearizable unless the request asks for a stale read ([`Controller::read_barrier`]).
//! Specs are validated here, at the edge, before anything is proposed.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use uuid::Uuid;
use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;
use zonefleet_proto::spec::{ZonePatch, ZoneSpec};

use zonefleet_proto::auth::Role;
use zonefleet_proto::pki::Identity;
use zonefleet_proto::tls::parse_revoked_identity;

use crate::node::Controller;
use crate::state::check::{canonical_spec, MAX_ZONES_PER_CREATE};
use crate::state::revocations::checked_revocation;
use crate::state::tokens::token_id;
use crate::state::{zone_uuid, StateError};

/// The largest operator request a controller accepts (4 MiB).
pub const MAX_OPERATOR_MESSAGE: usize = 4 * 1024 * 1024;

/// The largest answer an operator gets (what `zfadm` reads): a listing of 10,000 hosts
/// with their sysinfo is ~21 MiB, above the 16 MiB of a Raft message. Listings are not
/// paged yet; this keeps a fleet of that size listable.
pub const MAX_OPERATOR_ANSWER: usize = 64 * 1024 * 1024;

/// The `Operator` service of one controller.
#[derive(Debug, Clone)]
pub struct OperatorService {
    node: Controller,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A command stamped with this controller's clock.
pub fn command(kind: Kind) -> pb::FleetCommand {
    pb::FleetCommand {
        at_unix_ms: now_ms(),
        kind: Some(kind),
    }
}

fn state_err(e: StateError) -> Status {
    Status::new(e.code(), e.to_string())
}

/// `host` with the lease the leader holds for it (`leases`, from
/// [`Controller::host_leases`]); left unset when it holds none.
fn with_lease(
    mut host: pb::Host,
    leases: &std::collections::HashMap<String, pb::HostLease>,
) -> pb::Host {
    let lease = leases.get(&host.host_id);
    host.last_heartbeat_unix_ms = lease.map(|l| l.last_heartbeat_unix_ms);
    host.lease_expires_unix_ms = lease.map(|l| l.lease_expires_unix_ms);
    host
}

fn stale(consistency: i32) -> bool {
    consistency == pb::ReadConsistency::Stale as i32
}

fn unexpected(result: &pb::CommandResult) -> Status {
    Status::internal(format!("unexpected command result {result:?}"))
}

/// The longest a join token lives (30 days): a token is a credential.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// The shortest token id `RevokeJoinToken` takes (hex digits of the sha256).
pub const MIN_TOKEN_ID: usize = 8;

/// What an operator sees of a join token (never the token: a prefix of its digest).
fn token_info(t: &pb::JoinToken, now_s: i64) -> pb::JoinTokenInfo {
    pb::JoinTokenInfo {
        id: token_id(&t.sha256).to_owned(),
        rack: t.rack.clone(),
        labels: t.labels.clone(),
        expires_unix: t.expires_unix,
        used: t.used,
        used_by_host: t.used_by_host.clone(),
        expired: t.expires_unix <= now_s,
    }
}

/// Validates an operator's spec and fills in defaults (uuid excepted: chosen per
/// zone), with the rules the state machine checks again at apply.
pub fn checked_spec(spec: pb::ZoneSpec) -> Result<pb::ZoneSpec, Status> {
    canonical_spec(spec).map_err(state_err)
}

impl OperatorService {
    /// Serves `node`.
    pub fn new(node: Controller) -> Self {
        OperatorService { node }
    }

    async fn zone_uuid_of(&self, reference: &str) -> Result<(String, pb::Zone), Status> {
        self.node.read_barrier(false).await?;
        let state = self.node.state().await;
        let zone = state.fleet.resolve_zone(reference).map_err(state_err)?;
        Ok((zone_uuid(zone).to_owned(), zone.clone()))
    }

    async fn zone_write(&self, kind: Kind) -> Result<Response<pb::Zone>, Status> {
        match self.node.write(command(kind)).await?.result {
            Some(R::Zone(zone)) => Ok(Response::new(zone)),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn set_state(
        &self,
        reference: &str,
        state: pb::ZoneState,
        reboot: bool,
    ) -> Result<Response<pb::Zone>, Status> {
        let (uuid, _) = self.zone_uuid_of(reference).await?;
        self.zone_write(Kind::SetZoneState(pb::SetZoneStateCommand {
            uuid,
            desired_state: state as i32,
            reboot,
        }))
        .await
    }

    async fn host_write(
        &self,
        host_id: String,
        status: pb::HostStatus,
    ) -> Result<Response<pb::Host>, Status> {
        match self
            .node
            .write(command(Kind::SetHostStatus(pb::SetHostStatusCommand {
                host_id,
                status: status as i32,
                from_status: None,
            })))
            .await?
            .result
        {
            Some(R::Host(host)) => Ok(Response::new(host)),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn status_after_change(&self) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        self.node.read_barrier(false).await?;
        Ok(Response::new(self.node.cluster_status().await))
    }
}

#[tonic::async_trait]
impl pb::operator_server::Operator for OperatorService {
    async fn create_zones(
        &self,
        request: Request<pb::CreateZonesRequest>,
    ) -> Result<Response<pb::CreateZonesResponse>, Status> {
        let request = request.into_inner();
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: missing"))?;
        let spec = checked_spec(spec)?;
        let count = request.count.max(1);
        if count as usize > MAX_ZONES_PER_CREATE {
            return Err(Status::invalid_argument(format!(
                "count: {count} is more than {MAX_ZONES_PER_CREATE}"
            )));
        }
        let uuids: Vec<String> = match (&spec.uuid, count) {
            (Some(uuid), 1) => vec![uuid.clone()],
            (Some(_), _) => {
                return Err(Status::invalid_argument(
                    "uuid: cannot be given when creating more than one zone",
                ))
            }
            (None, n) => (0..n).map(|_| Uuid::new_v4().to_string()).collect(),
        };
        if request.dry_run {
            // The same decision the commit would make, on this controller's applied
            // state (after a read barrier), without a Raft write.
            self.node.read_barrier(false).await?;
            let state = self.node.state().await;
            return state
                .fleet
                .dry_run_create(&pb::CreateZonesCommand {
                    spec: Some(spec),
                    uuids,
                    idempotency_key: String::new(),
                })
                .map(Response::new)
                .map_err(state_err);
        }
        let result = self
            .node
            .write(command(Kind::CreateZones(pb::CreateZonesCommand {
                spec: Some(spec),
                uuids,
                idempotency_key: request.idempotency_key,
            })))
            .await?;
        match result.result {
            Some(R::Zones(zones)) => Ok(Response::new(zones)),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn get_zone(
        &self,
        request: Request<pb::GetZoneRequest>,
    ) -> Result<Response<pb::Zone>, Status> {
        let request = request.into_inner();
        self.node.read_barrier(stale(request.consistency)).await?;
        let state = self.node.state().await;
        let zone = state.fleet.resolve_zone(&request.zone).map_err(state_err)?;
        Ok(Response::new(zone.clone()))
    }

    async fn list_zones(
        &self,
        request: Request<pb::ListZonesRequest>,
    ) -> Result<Response<pb::ListZonesResponse>, Status> {
        let request = request.into_inner();
        self.node.read_barrier(stale(request.consistency)).await?;
        let state = self.node.state().await;
        Ok(Response::new(pb::ListZonesResponse {
            zones: state
                .fleet
                .list_zones(request.host_id.as_deref(), request.state),
        }))
    }

    async fn update_zone(
        &self,
        request: Request<pb::UpdateZoneRequest>,
    ) -> Result<Response<pb::Zone>, Status> {
        let request = request.into_inner();
        let patch = request
            .patch
            .ok_or_else(|| Status::invalid_argument("patch: missing"))?;
        let patch =
            ZonePatch::try_from(&patch).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (uuid, zone) = self.zone_uuid_of(&request.zone).await?;
        let current = ZoneSpec::try_from(zone.spec.clone().unwrap_or_default())
            .map_err(|e| Status::internal(format!("stored spec of zone {uuid}: {e}")))?;
        let merged = patch
            .apply(&current)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let merged = checked_spec(merged.into())?;
        self.zone_write(Kind::UpdateZone(pb::UpdateZoneCommand {
            uuid,
            spec: Some(merged),
            expected_generation: zone.generation,
        }))
        .await
    }

    async fn stop_zone(&self, request: Request<pb::ZoneRef>) -> Result<Response<pb::Zone>, Status> {
        self.set_state(&request.get_ref().zone, pb::ZoneState::Installed, false)
            .await
    }

    async fn start_zone(
        &self,
        request: Request<pb::ZoneRef>,
    ) -> Result<Response<pb::Zone>, Status> {
        self.set_state(&request.get_ref().zone, pb::ZoneState::Running, false)
            .await
    }

    async fn reboot_zone(
        &self,
        request: Request<pb::ZoneRef>,
    ) -> Result<Response<pb::Zone>, Status> {
        self.set_state(&request.get_ref().zone, pb::ZoneState::Running, true)
            .await
    }

    async fn delete_zone(
        &self,
        request: Request<pb::ZoneRef>,
    ) -> Result<Response<pb::Zone>, Status> {
        let (uuid, _) = self.zone_uuid_of(&request.get_ref().zone).await?;
        self.zone_write(Kind::DeleteZone(pb::DeleteZoneCommand { uuid }))
            .await
    }

    async fn list_hosts(
        &self,
        request: Request<pb::ListHostsRequest>,
    ) -> Result<Response<pb::ListHostsResponse>, Status> {
        let request = request.into_inner();
        self.node.read_barrier(stale(request.consistency)).await?;
        let leases = self.node.host_leases().await;
        let state = self.node.state().await;
        Ok(Response::new(pb::ListHostsResponse {
            hosts: state
                .fleet
                .hosts
                .values()
                .filter(|h| request.status.is_none_or(|s| h.status == s))
                .map(|h| with_lease(h.clone(), &leases))
                .collect(),
            reschedule: Some(state.fleet.reschedule_pause.clone()),
        }))
    }

    async fn get_host(&self, request: Request<pb::HostRef>) -> Result<Response<pb::Host>, Status> {
        self.node.read_barrier(false).await?;
        let leases = self.node.host_leases().await;
        let state = self.node.state().await;
        let id = &request.get_ref().host_id;
        state
            .fleet
            .hosts
            .get(id)
            .map(|h| Response::new(with_lease(h.clone(), &leases)))
            .ok_or_else(|| Status::not_found(format!("host {id} does not exist")))
    }

    async fn cordon_host(
        &self,
        request: Request<pb::HostRef>,
    ) -> Result<Response<pb::Host>, Status> {
        self.host_write(request.into_inner().host_id, pb::HostStatus::Cordoned)
            .await
    }

    async fn uncordon_host(
        &self,
        request: Request<pb::HostRef>,
    ) -> Result<Response<pb::Host>, Status> {
        self.host_write(request.into_inner().host_id, pb::HostStatus::Ready)
            .await
    }

    async fn drain_host(
        &self,
        request: Request<pb::DrainHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        // Moving the zones off is the scheduler's (a later issue); draining already
        // stops new placements.
        self.host_write(request.into_inner().host_id, pb::HostStatus::Draining)
            .await
    }

    async fn set_host_inventory(
        &self,
        request: Request<pb::SetHostInventoryRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        // Checked (label words, no `rack` label) where every command is.
        let inventory = request.into_inner();
        match self
            .node
            .write(command(Kind::SetHostInventory(
                pb::SetHostInventoryCommand {
                    inventory: Some(inventory),
                },
            )))
            .await?
            .result
        {
            Some(R::Host(host)) => Ok(Response::new(host)),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        self.node
            .read_barrier(stale(request.get_ref().consistency))
            .await?;
        let state = self.node.state().await;
        Ok(Response::new(pb::ListImagesResponse {
            images: state.fleet.images.values().cloned().collect(),
        }))
    }

    async fn import_image(
        &self,
        request: Request<tonic::Streaming<pb::ImportImageRequest>>,
    ) -> Result<Response<pb::ImageManifest>, Status> {
        crate::api::images::import(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_image(
        &self,
        request: Request<pb::ImageRef>,
    ) -> Result<Response<pb::ImageManifest>, Status> {
        crate::api::images::get(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_image(
        &self,
        request: Request<pb::ImageRef>,
    ) -> Result<Response<pb::ImageManifest>, Status> {
        crate::api::images::delete(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn create_network(
        &self,
        request: Request<pb::Network>,
    ) -> Result<Response<pb::Network>, Status> {
        let mut network = request.into_inner();
        if network.uuid.is_empty() {
            network.uuid = Uuid::new_v4().to_string();
        }
        // Read into the domain type for its canonical form; its rules are checked
        // where every command is.
        let domain = zonefleet_proto::network::Network::try_from(network)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self
            .node
            .write(command(Kind::PutNetwork(pb::PutNetworkCommand {
                network: Some(domain.into()),
            })))
            .await?
            .result
        {
            Some(R::Network(network)) => Ok(Response::new(network)),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn list_networks(
        &self,
        request: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        self.node
            .read_barrier(stale(request.get_ref().consistency))
            .await?;
        let state = self.node.state().await;
        Ok(Response::new(pb::ListNetworksResponse {
            networks: state.fleet.networks.values().cloned().collect(),
        }))
    }

    async fn delete_network(
        &self,
        request: Request<pb::NetworkRef>,
    ) -> Result<Response<pb::Network>, Status> {
        self.node.read_barrier(false).await?;
        let reference = &request.get_ref().network;
        let uuid = {
            let state = self.node.state().await;
            state
                .fleet
                .find_network(reference)
                .map(|n| n.uuid.clone())
                .ok_or_else(|| Status::not_found(format!("network {reference:?} does not exist")))?
        };
        match self
            .node
            .write(command(Kind::DeleteNetwork(pb::DeleteNetworkCommand {
                uuid,
            })))
            .await?
            .result
        {
            Some(R::Network(network)) => Ok(Response::new(network)),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        let request = request.into_inner();
        let ttl = if request.ttl_seconds == 0 {
            3600
        } else {
            request.ttl_seconds
        };
        if ttl > MAX_TOKEN_TTL_SECONDS {
            return Err(Status::invalid_argument(format!(
                "ttl_seconds: {ttl} is more than {MAX_TOKEN_TTL_SECONDS} (30 days)"
            )));
        }
        let ttl =
            i64::try_from(ttl).map_err(|_| Status::invalid_argument("ttl_seconds: too large"))?;
        let mut secret = Vec::with_capacity(32);
        secret.extend_from_slice(Uuid::new_v4().as_bytes());
        secret.extend_from_slice(Uuid::new_v4().as_bytes());
        let token = format!("zft_{}", hex::encode(secret));
        let expires_unix = now_ms() / 1000 + ttl;
        self.node
            .write(command(Kind::CreateJoinToken(pb::CreateJoinTokenCommand {
                token: Some(pb::JoinToken {
                    sha256: hex::encode(Sha256::digest(token.as_bytes())),
                    rack: request.rack,
                    labels: request.labels,
                    expires_unix,
                    ..Default::default()
                }),
            })))
            .await?;
        Ok(Response::new(pb::CreateJoinTokenResponse {
            token,
            expires_unix,
            ca_fingerprint: self
                .node
                .trust()
                .fingerprints()
                .first()
                .cloned()
                .unwrap_or_default(),
        }))
    }

    async fn list_join_tokens(
        &self,
        request: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        self.node
            .read_barrier(stale(request.get_ref().consistency))
            .await?;
        let now_s = now_ms() / 1000;
        let state = self.node.state().await;
        let mut tokens: Vec<pb::JoinTokenInfo> = state
            .fleet
            .join_tokens
            .values()
            .map(|t| token_info(t, now_s))
            .collect();
        tokens.sort_by(|a, b| (a.expires_unix, &a.id).cmp(&(b.expires_unix, &b.id)));
        Ok(Response::new(pb::ListJoinTokensResponse { tokens }))
    }

    async fn revoke_join_token(
        &self,
        request: Request<pb::RevokeJoinTokenRequest>,
    ) -> Result<Response<pb::JoinTokenInfo>, Status> {
        let id = request.into_inner().id.to_ascii_lowercase();
        if id.len() < MIN_TOKEN_ID || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(format!(
                "id: {id:?} is not a token id ({MIN_TOKEN_ID} to 64 hex digits, as zfadm token list shows)"
            )));
        }
        self.node.read_barrier(false).await?;
        let token = {
            let state = self.node.state().await;
            let mut matches = state
                .fleet
                .join_tokens
                .range(id.clone()..)
                .take_while(|(k, _)| k.starts_with(&id));
            match (matches.next(), matches.next()) {
                (Some((_, t)), None) => t.clone(),
                (Some(_), Some(_)) => {
                    return Err(Status::invalid_argument(format!(
                        "id: {id:?} is ambiguous: more than one token starts with it"
                    )))
                }
                (None, _) => {
                    return Err(Status::not_found(format!("join token {id} does not exist")))
                }
            }
        };
        self.node
            .write(command(Kind::RevokeJoinToken(pb::RevokeJoinTokenCommand {
                sha256: token.sha256.clone(),
            })))
            .await?;
        Ok(Response::new(token_info(&token, now_ms() / 1000)))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.node.cluster_status().await))
    }

    async fn add_controller(
        &self,
        request: Request<pb::AddControllerRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        self.node
            .change_membership(pb::MembershipChange {
                change: Some(pb::membership_change::Change::Add(request.into_inner())),
            })
            .await?;
        self.status_after_change().await
    }

    async fn get_fleet_settings(
        &self,
        request: Request<pb::GetFleetSettingsRequest>,
    ) -> Result<Response<pb::FleetSettings>, Status> {
        self.node
            .read_barrier(stale(request.get_ref().consistency))
            .await?;
        Ok(Response::new(self.node.state().await.fleet.settings))
    }

    async fn set_fleet_settings(
        &self,
        request: Request<pb::FleetSettings>,
    ) -> Result<Response<pb::FleetSettings>, Status> {
        let settings = request.into_inner();
        self.node
            .write(command(Kind::SetFleetSettings(
                pb::SetFleetSettingsCommand {
                    settings: Some(settings),
                },
            )))
            .await?;
        Ok(Response::new(settings))
    }

    async fn reschedule_zone(
        &self,
        request: Request<pb::ZoneRef>,
    ) -> Result<Response<pb::Zone>, Status> {
        let (uuid, _) = self.zone_uuid_of(&request.get_ref().zone).await?;
        self.zone_write(Kind::RescheduleZone(pb::RescheduleZoneCommand {
            uuid,
            host_lost: false,
        }))
        .await
    }

    async fn remove_controller(
        &self,
        request: Request<pb::RemoveControllerRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        self.node
            .change_membership(pb::MembershipChange {
                change: Some(pb::membership_change::Change::Remove(request.into_inner())),
            })
            .await?;
        self.status_after_change().await
    }

    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::Revocation>, Status> {
        let revoked_by = match Role::from_request(&request)? {
            Role::Operator { name, role } => {
                Identity::operator_with_role(self.node.cluster(), name, *role)
                    .map(|i| i.to_string())
                    .map_err(|e| Status::permission_denied(e.to_string()))?
            }
            other => {
                return Err(Status::permission_denied(format!(
                    "{other} is not an operator"
                )))
            }
        };
        let request = request.into_inner();
        let revocation = checked_revocation(&pb::Revocation {
            serial: request.serial,
            identity: request.identity,
            reason: request.reason,
            revoked_by,
            revoked_at_unix_ms: 0,
        })
        .map_err(state_err)?;
        if !revocation.identity.is_empty() {
            let identity = parse_revoked_identity(&revocation.identity)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if identity.cluster() != self.node.cluster() {
                return Err(Status::invalid_argument(format!(
                    "identity {identity} is not of cluster {:?}",
                    self.node.cluster()
                )));
            }
        }
        let command = command(Kind::RevokeCertificate(pb::RevokeCertificateCommand {
            revocation: Some(revocation.clone()),
        }));
        let at = command.at_unix_ms;
        match self.node.write(command).await?.result {
            Some(R::Done(_)) => Ok(Response::new(pb::Revocation {
                revoked_at_unix_ms: at,
                ..revocation
            })),
            other => Err(unexpected(&pb::CommandResult { result: other })),
        }
    }

    async fn resume_rescheduling(
        &self,
        _request: Request<pb::ResumeReschedulingRequest>,
    ) -> Result<Response<pb::ReschedulePause>, Status> {
        let pause = pb::ReschedulePause {
            paused: false,
            reason: "resumed by an operator".to_owned(),
            since_unix_ms: 0,
            overridden: true,
        };
        let command = command(Kind::SetReschedulePause(pb::SetReschedulePauseCommand {
            pause: Some(pause.clone()),
        }));
        let at = command.at_unix_ms;
        self.node.write(command).await?;
        Ok(Response::new(pb::ReschedulePause {
            since_unix_ms: at,
            ..pause
        }))
    }

    type WatchEventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::FleetEvent, Status>> + Send + 'static>,
    >;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        super::events::start(self.node.clone(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_revocations(
        &self,
        request: Request<pb::ListRevocationsRequest>,
    ) -> Result<Response<pb::ListRevocationsResponse>, Status> {
        self.node
            .read_barrier(stale(request.get_ref().consistency))
            .await?;
        Ok(Response::new(pb::ListRevocationsResponse {
            revocations: self.node.state().await.fleet.revocations.clone(),
        }))
    }
}
