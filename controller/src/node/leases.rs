//! Host liveness: the leader's in-memory lease table (a heartbeat renews a host's
//! lease; never a Raft write per heartbeat), and the transitions it commits: a host
//! whose lease lapsed goes `READY → DOWN`, a heartbeat brings a `DOWN` host back to
//! `READY`, and a changed capacity is committed. A follower forwards a heartbeat to
//! the leader (`Raft.ForwardHeartbeat`) or, when it cannot, answers `UNAVAILABLE`
//! naming the leader in the `zonefleet-leader` metadata.
//!
//! A new leader knows no leases: it gives every host a full TTL from the moment it
//! became leader before judging any. Only `READY ↔ DOWN` is decided here; a cordoned or
//! draining host keeps its administrative status (the transition is conditional on
//! the status it starts from, see `SetHostStatusCommand.from_status`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use tonic::metadata::MetadataValue;
use tonic::Status;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;

use super::{Controller, Inner};

pub use zonefleet_proto::pb::LEADER_METADATA;

#[derive(Debug)]
struct Table {
    /// The term the table is of (`None`: not leading).
    term: Option<u64>,
    /// When this controller became leader of `term`.
    since: Instant,
    expiry: HashMap<String, Lease>,
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
}

impl Leases {
    pub(super) fn new(ttl: Duration) -> Self {
        Leases {
            table: Mutex::new(Table {
                term: None,
                since: Instant::now(),
                expiry: HashMap::new(),
            }),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table of `term`, started afresh (a full TTL of grace for everyone) when
    /// this controller just became leader of it.
    fn of_term(&self, term: u64, now: Instant) -> std::sync::MutexGuard<'_, Table> {
        let mut table = self.lock();
        if table.term != Some(term) {
            table.term = Some(term);
            table.since = now;
            table.expiry.clear();
        }
        table
    }

    fn renew(&self, host: &str, term: u64, now: Instant) {
        let lease = Lease {
            expires: now + self.ttl,
            renewed_unix_ms: unix_ms(),
        };
        self.of_term(term, now)
            .expiry
            .insert(host.to_owned(), lease);
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

    fn step_down(&self) {
        self.lock().term = None;
    }

    /// Whether `host`'s lease is live at `now` (`None`: still in the new leader's
    /// grace period, nobody is judged yet).
    fn live(&self, table: &Table, host: &str, now: Instant) -> Option<bool> {
        if now < table.since + self.ttl {
            return None;
        }
        Some(table.expiry.get(host).is_some_and(|l| l.expires > now))
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn status_command(host_id: &str, to: pb::HostStatus, from: pb::HostStatus) -> pb::FleetCommand {
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

    /// Renews `host_id`'s lease (on the leader, wherever it is) and commits its
    /// capacity if it changed and `READY` if it was down. Returns when the lease
    /// expires (Unix milliseconds).
    pub async fn heartbeat(
        &self,
        host_id: &str,
        capacity: Option<pb::Capacity>,
    ) -> Result<i64, Status> {
        if self.inner.raft.metrics().borrow().state == ServerState::Leader {
            return self.heartbeat_as_leader(host_id, capacity).await;
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
        let mut request = tonic::Request::new(pb::ForwardHeartbeatRequest {
            host_id: host_id.to_owned(),
            capacity,
        });
        request.set_timeout(Duration::from_secs(2));
        match client.forward_heartbeat(request).await {
            Ok(response) => Ok(response.into_inner().lease_expires_unix_ms),
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
        host_id: &str,
        capacity: Option<pb::Capacity>,
    ) -> Result<i64, Status> {
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
        self.inner.leases.renew(host_id, term, Instant::now());
        let expires =
            unix_ms() + i64::try_from(self.inner.control.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut commands = Vec::new();
        if host.status == pb::HostStatus::Down as i32 {
            commands.push(status_command(
                host_id,
                pb::HostStatus::Ready,
                pb::HostStatus::Down,
            ));
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
        Ok(expires)
    }
}

/// Every `tick`, while this controller leads, commits `DOWN` for the ready hosts
/// whose lease lapsed and `READY` for the down hosts whose lease is live (a heartbeat
/// whose own commit failed). Stops when the controller is dropped or shut down.
pub(super) async fn watch_leases(node: Weak<Inner>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = node.upgrade() else { return };
        let node = Controller { inner };
        let (state, term, running) = {
            let m = node.inner.raft.metrics();
            let m = m.borrow();
            (m.state, m.current_term, m.running_state.is_ok())
        };
        if !running || state == ServerState::Shutdown {
            return;
        }
        if state != ServerState::Leader {
            node.inner.leases.step_down();
            continue;
        }
        let now = Instant::now();
        let commands: Vec<pb::FleetCommand> = {
            let applied = node.state().await;
            let leases = &node.inner.leases;
            let table = leases.of_term(term, now);
            applied
                .fleet
                .hosts
                .values()
                .filter_map(|h| {
                    let live = leases.live(&table, &h.host_id, now)?;
                    match pb::HostStatus::try_from(h.status) {
                        Ok(pb::HostStatus::Ready) if !live => {
                            tracing::warn!(host = %h.host_id, "lease lapsed: host down");
                            Some(status_command(
                                &h.host_id,
                                pb::HostStatus::Down,
                                pb::HostStatus::Ready,
                            ))
                        }
                        Ok(pb::HostStatus::Down) if live => Some(status_command(
                            &h.host_id,
                            pb::HostStatus::Ready,
                            pb::HostStatus::Down,
                        )),
                        _ => None,
                    }
                })
                .collect()
        };
        if commands.is_empty() {
            continue;
        }
        let command = if commands.len() == 1 {
            commands.into_iter().next().unwrap_or_default()
        } else {
            crate::api::operator::command(Kind::Batch(pb::BatchCommand { commands }))
        };
        if let Err(e) = node.write(command).await {
            tracing::warn!(error = %e, "committing host liveness");
        }
    }
}

/// A controller's lease table, made for its options.
pub(super) fn leases_for(ttl: Duration) -> Arc<Leases> {
    Arc::new(Leases::new(ttl))
}
