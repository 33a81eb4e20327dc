//! Host liveness: the leader's in-memory lease table (a heartbeat renews a host's
//! lease; never a Raft write per heartbeat), and the transitions it commits: a host
//! whose lease lapsed goes `READY → DOWN`, a heartbeat brings a `DOWN` host back to
//! `READY`, and a changed capacity is committed. A follower forwards a heartbeat to
//! the leader (`Raft.ForwardHeartbeat`) or, when it cannot, answers `UNAVAILABLE`
//! naming the leader in the `zonefleet-leader` metadata.
//!
//! A lease is granted only by a leader that a quorum confirmed within the last
//! [`Leases::confirm_within`] (a deposed leader that does not know it yet stops
//! granting within that), and a new leader knows no leases: it gives every host a full
//! TTL plus that bound from the moment it became leader before judging any, so no
//! lease an agent still holds from an old leader is judged lapsed. The judging, and
//! what follows from it, is [`super::liveness`]'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use tonic::metadata::MetadataValue;
use tonic::Status;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;

use super::Controller;

pub use zonefleet_proto::pb::LEADER_METADATA;

#[derive(Debug)]
pub(super) struct Table {
    /// The term the table is of (`None`: not leading).
    term: Option<u64>,
    /// When this controller became leader of `term`.
    since: Instant,
    expiry: HashMap<String, Lease>,
    /// When a quorum round that confirmed this leadership started.
    confirmed: Option<Instant>,
    /// The assignment revision at which each host was last found to have no zone
    /// moving off it that its agent had already removed (so a heartbeat looks at the
    /// zones only after the host's assignments changed).
    released: HashMap<String, u64>,
}

/// One host's lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// When it lapses (the monotonic clock judges it).
    expires: Instant,
    /// When the heartbeat that renewed it arrived (wall clock, Unix ms: what operators
    /// are shown).
    renewed_unix_ms: i64,
}

/// The leader's lease table.
#[derive(Debug)]
pub(super) struct Leases {
    table: Mutex<Table>,
    ttl: Duration,
    /// A lease is granted only within this of a quorum confirming the leadership.
    pub(super) confirm_within: Duration,
}

impl Leases {
    pub(super) fn new(ttl: Duration) -> Self {
        Leases {
            table: Mutex::new(Table {
                term: None,
                since: Instant::now(),
                expiry: HashMap::new(),
                confirmed: None,
                released: HashMap::new(),
            }),
            ttl,
            confirm_within: (ttl / 4).max(Duration::from_millis(50)),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table of `term`, started afresh (a full TTL of grace for everyone) when
    /// this controller just became leader of it.
    pub(super) fn of_term(&self, term: u64, now: Instant) -> std::sync::MutexGuard<'_, Table> {
        let mut table = self.lock();
        if table.term != Some(term) {
            table.term = Some(term);
            table.since = now;
            table.expiry.clear();
            table.confirmed = None;
        }
        table
    }

    /// Whether `host`, at assignment revision `latest`, may have zones to release.
    fn release_pending(&self, host: &str, latest: u64) -> bool {
        self.lock().released.get(host) != Some(&latest)
    }

    /// `host` had nothing to release at `latest`.
    fn released(&self, host: &str, latest: u64) {
        self.lock().released.insert(host.to_owned(), latest);
    }

    /// Whether a quorum confirmed leadership of `term` within the bound before `now`.
    fn is_confirmed(&self, term: u64, now: Instant) -> bool {
        let table = self.lock();
        table.term == Some(term)
            && table
                .confirmed
                .is_some_and(|at| now.saturating_duration_since(at) <= self.confirm_within)
    }

    /// Renews `host`'s lease, if a quorum confirmed this leadership recently enough.
    fn renew(&self, host: &str, term: u64, now: Instant) -> Result<(), Status> {
        let lease = Lease {
            expires: now + self.ttl,
            renewed_unix_ms: unix_ms(),
        };
        let mut table = self.of_term(term, now);
        match table.confirmed {
            Some(at) if now.saturating_duration_since(at) <= self.confirm_within => {
                table.expiry.insert(host.to_owned(), lease);
                Ok(())
            }
            _ => Err(Status::unavailable(
                "heartbeat: this leader's quorum has not confirmed it lately; retry",
            )),
        }
    }

    /// Records that a quorum confirmed leadership of `term` in a round started at `at`.
    pub(super) fn confirmed(&self, term: u64, at: Instant) {
        let mut table = self.of_term(term, at.min(Instant::now()));
        if table.confirmed.is_none_or(|c| c < at) {
            table.confirmed = Some(at);
        }
    }

    /// Every lease of `term`'s table: host, last heartbeat and expiry (Unix ms).
    fn view(&self, term: u64) -> Vec<pb::HostLease> {
        let table = self.lock();
        if table.term != Some(term) {
            return Vec::new();
        }
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        table
            .expiry
            .iter()
            .map(|(host, lease)| pb::HostLease {
                host_id: host.clone(),
                last_heartbeat_unix_ms: lease.renewed_unix_ms,
                lease_expires_unix_ms: lease.renewed_unix_ms.saturating_add(ttl_ms),
            })
            .collect()
    }

    pub(super) fn step_down(&self) {
        self.lock().term = None;
    }

    /// Whether a heartbeat of `host` reached this leader.
    pub(super) fn renewed(&self, table: &Table, host: &str) -> bool {
        table.expiry.contains_key(host)
    }

    /// When `host`'s lease lapses (or lapsed) as this leader judges it: its last
    /// renewal's expiry, but never before the new leader's grace (a TTL plus the
    /// confirmation bound after it took over) ends.
    pub(super) fn lapses_at(&self, table: &Table, host: &str) -> Instant {
        let grace = table.since + self.ttl + self.confirm_within;
        match table.expiry.get(host) {
            Some(lease) => lease.expires.max(grace),
            None => grace,
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn status_command(
    host_id: &str,
    to: pb::HostStatus,
    from: pb::HostStatus,
) -> pb::FleetCommand {
    crate::api::operator::command(Kind::SetHostStatus(pb::SetHostStatusCommand {
        host_id: host_id.to_owned(),
        status: to as i32,
        from_status: Some(from as i32),
    }))
}

fn same_totals(a: &pb::Capacity, b: &pb::Capacity) -> bool {
    a.memory_mib == b.memory_mib && a.cpu_percent == b.cpu_percent && a.disk_gib == b.disk_gib
}

impl Controller {
    /// The lease terms agents are given: (heartbeat interval, lease TTL).
    pub fn lease_terms(&self) -> (Duration, Duration) {
        (
            self.inner.control.heartbeat_interval,
            self.inner.control.lease_ttl,
        )
    }

    /// Renews `beat.host_id`'s lease (on the leader, wherever it is) and commits its
    /// capacity if it changed and its return if it was down. Returns when the lease
    /// expires (Unix milliseconds) and the host's assignment revision after those
    /// commits.
    pub async fn heartbeat(
        &self,
        beat: pb::ForwardHeartbeatRequest,
    ) -> Result<pb::ForwardHeartbeatResponse, Status> {
        if self.inner.raft.metrics().borrow().state == ServerState::Leader {
            return self.heartbeat_as_leader(beat).await;
        }
        let leader = self.leader().filter(|(id, _)| *id != self.inner.id);
        let unavailable = |why: String| {
            let mut status = Status::unavailable(format!("heartbeat: {why}"));
            if let Some(addr) = leader
                .as_ref()
                .and_then(|(_, a)| MetadataValue::try_from(a.as_str()).ok())
            {
                status.metadata_mut().insert(LEADER_METADATA, addr);
            }
            status
        };
        let Some((id, addr)) = leader.clone() else {
            return Err(unavailable("no leader elected yet; retry".to_owned()));
        };
        let mut client = self
            .peer(id, &addr)
            .map_err(|e| unavailable(e.message().to_owned()))?;
        let mut request = tonic::Request::new(beat);
        request.set_timeout(Duration::from_secs(2));
        match client.forward_heartbeat(request).await {
            Ok(response) => Ok(response.into_inner()),
            // The leader's own answer about this host.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::InvalidArgument
                        | tonic::Code::PermissionDenied
                ) =>
            {
                Err(status)
            }
            // Anything else (unreachable, a broken or cancelled connection, a timeout):
            // the agent should try the leader itself.
            Err(status) => Err(unavailable(format!(
                "forwarding to the leader: {}",
                status.message()
            ))),
        }
    }

    /// The leases the leader holds (here, or asked of it): by host, its last heartbeat
    /// and lease expiry. Empty when no leader answers within a second: hosts are then
    /// shown without them (unknown) rather than not at all.
    pub async fn host_leases(&self) -> HashMap<String, pb::HostLease> {
        let leases = match self.host_leases_as_leader() {
            Ok(leases) => leases,
            Err(_) => match self.leader().filter(|(id, _)| *id != self.inner.id) {
                Some((id, addr)) => {
                    let mut request = tonic::Request::new(pb::HostLeasesRequest {});
                    request.set_timeout(Duration::from_secs(1));
                    match self.peer(id, &addr) {
                        Ok(mut client) => match client.host_leases(request).await {
                            Ok(response) => response.into_inner().leases,
                            Err(status) => {
                                tracing::debug!(leader = %addr, error = %status.message(), "no leases from the leader");
                                Vec::new()
                            }
                        },
                        Err(_) => Vec::new(),
                    }
                }
                None => Vec::new(),
            },
        };
        leases.into_iter().map(|l| (l.host_id.clone(), l)).collect()
    }

    /// The lease table as the leader holds it; `UNAVAILABLE` when this controller does
    /// not lead.
    pub fn host_leases_as_leader(&self) -> Result<Vec<pb::HostLease>, Status> {
        let term = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return Err(Status::unavailable("host leases: not the leader"));
            }
            m.current_term
        };
        Ok(self.inner.leases.view(term))
    }

    /// [`Self::heartbeat`] as the leader (here, or the target of a forward);
    /// `UNAVAILABLE` when this controller does not lead.
    pub async fn heartbeat_as_leader(
        &self,
        beat: pb::ForwardHeartbeatRequest,
    ) -> Result<pb::ForwardHeartbeatResponse, Status> {
        let host_id = beat.host_id.as_str();
        let capacity = beat.capacity;
        let term = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return Err(Status::unavailable("heartbeat: not the leader"));
            }
            m.current_term
        };
        let host = self
            .state()
            .await
            .fleet
            .hosts
            .get(host_id)
            .cloned()
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "host {host_id} is not registered; call Register first"
                ))
            })?;
        let now = Instant::now();
        if !self.inner.leases.is_confirmed(term, now) {
            // Just elected, or the rounds are slow: confirm it before granting.
            self.confirm_leadership(term).await?;
        }
        self.inner.leases.renew(host_id, term, now)?;
        let expires =
            unix_ms() + i64::try_from(self.inner.control.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut commands = Vec::new();
        if host.status == pb::HostStatus::Down as i32 {
            commands.push(return_command(&host));
        }
        // Zones moving off this host that its agent has removed (it applied every
        // change of its assignments, their removal among them) land on their new host.
        // Looked for only after the host's assignments changed: not a scan of every
        // zone per heartbeat.
        let latest = self.inner.assignments.latest(host_id);
        if beat.applied_revision >= latest && self.inner.leases.release_pending(host_id, latest) {
            let state = self.state().await;
            let releases: Vec<pb::FleetCommand> = state
                .fleet
                .zones
                .values()
                .filter(|z| z.leaving_host_id == host_id)
                .map(|z| {
                    crate::api::operator::command(Kind::ReleaseZone(pb::ReleaseZoneCommand {
                        uuid: crate::state::zone_uuid(z).to_owned(),
                        host_id: host_id.to_owned(),
                    }))
                })
                .collect();
            if releases.is_empty() {
                self.inner.leases.released(host_id, latest);
            }
            commands.extend(releases);
        }
        if let Some(capacity) = capacity {
            let known = host.capacity.unwrap_or_default();
            if !same_totals(&known, &capacity) {
                commands.push(crate::api::operator::command(Kind::RegisterHost(
                    pb::RegisterHostCommand {
                        host: Some(pb::Host {
                            capacity: Some(capacity),
                            // Keeps the status the host has when applied.
                            status: pb::HostStatus::Unspecified as i32,
                            ..host
                        }),
                    },
                )));
            }
        }
        for command in commands {
            self.write(command).await?;
        }
        // Read after the commits above: a move of this host's zones committed before
        // its return is in it, so the agent removes them before booting anything.
        Ok(pb::ForwardHeartbeatResponse {
            lease_expires_unix_ms: expires,
            assignments_revision: self.inner.assignments.latest(host_id),
        })
    }
}

/// The commit that brings a down host back: to the status its operator gave it.
pub(super) fn return_command(host: &pb::Host) -> pb::FleetCommand {
    let to = match pb::HostStatus::try_from(host.admin_status) {
        Ok(s @ (pb::HostStatus::Cordoned | pb::HostStatus::Draining)) => s,
        _ => pb::HostStatus::Ready,
    };
    status_command(&host.host_id, to, pb::HostStatus::Down)
}
