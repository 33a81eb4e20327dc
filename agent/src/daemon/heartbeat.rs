//! Register and heartbeat: the host's sysinfo and capacity once (again whenever a
//! controller no longer knows the host), then a heartbeat at the interval the
//! controllers returned, carrying the capacity when it changed. A failed heartbeat
//! moves to another controller (the client follows `zonefleet-leader` hints); when
//! none answers the agent goes on trying and its `wait` zones keep running (its
//! `reschedule` zones are fenced when the lease runs out: [`crate::fence`]). Each
//! answer renews the lease file and brings the revocations the agent lacks
//! ([`super::revoked`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::Code;
use zonefleet_proto::host::{Capacity, HostSysinfo};
use zonefleet_proto::pb;

use super::backoff::Backoff;
use super::client::{ClientError, ControlClient};
use super::revoked::RevocationFeed;

/// The interval used when the controllers return none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest interval the agent accepts (a bad answer must not spin it).
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// How often an ongoing failure is logged again.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// The lease terms the controllers gave at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// How often to heartbeat.
    pub interval: Duration,
    /// How long a lease lasts without a heartbeat.
    pub ttl: Duration,
    /// How long before the lease ends the agent fences.
    pub fence_margin: Duration,
}

/// What the heartbeat loop keeps of the lease: the lease file it renews (`None`: no
/// file, for simulated hosts), the engine's applied revision it reports, and whom it
/// tells of a renewal.
pub struct LeaseKeeper {
    /// The lease file ([`crate::fence::lease_path`]). Renewed whether or not this
    /// agent fences new zones, so zones booted while it did are never fenced by a
    /// lease nobody renews.
    pub file: Option<PathBuf>,
    /// The assignment revision the engine applied.
    pub applied_revision: Arc<AtomicU64>,
    /// Called after each renewal (the engine resumes fenced zones).
    pub on_renew: Box<dyn Fn() + Send + Sync>,
}

impl LeaseKeeper {
    /// Records the lease an answer to a heartbeat sent at `sent` granted, at the
    /// host's assignment revision `revision`. The revision the engine must reach
    /// before it boots a `reschedule` zone is taken only when the lease had lapsed
    /// (or there was none): then zones may have been moved away meanwhile. A renewal
    /// in time keeps the one already required, so a zone booting while a heartbeat
    /// races its own assignment is not held back.
    fn renewed(&self, lease: &Lease, sent: Duration, revision: u64) {
        if let Some(file) = &self.file {
            let required = match crate::fence::LeaseRecord::load(file) {
                Some(held) if held.live() => held.assignments_revision,
                _ => revision,
            };
            let record =
                crate::fence::LeaseRecord::granted(sent, lease.ttl, lease.fence_margin, required);
            if let Err(e) = record.store(file) {
                tracing::error!(error = %e, "cannot write the lease file: zones will be fenced");
            }
        }
        (self.on_renew)();
    }
}

impl Lease {
    /// How long one heartbeat attempt may take: a quarter of the lease (at least
    /// 200 ms, at most the client's usual bound), so that a dead controller is left for
    /// another one while the lease still holds.
    pub fn attempt_timeout(&self) -> Duration {
        if self.ttl.is_zero() {
            // No lease term given: nothing to race.
            return super::client::CALL_TIMEOUT;
        }
        (self.ttl / 4).clamp(Duration::from_millis(200), super::client::CALL_TIMEOUT)
    }
}

/// Registers once: `Register{sysinfo, capacity}`.
pub async fn register(
    client: &ControlClient,
    sysinfo: &HostSysinfo,
    capacity: Capacity,
) -> Result<Lease, ClientError> {
    let request = pb::RegisterRequest {
        sysinfo: Some(sysinfo.clone().into()),
        capacity: Some(capacity.into()),
    };
    let answer = client
        .call("Register", move |mut c| {
            let request = request.clone();
            async move { c.register(request).await }
        })
        .await?;
    let interval = match answer.heartbeat_interval_ms {
        0 => DEFAULT_INTERVAL,
        ms => Duration::from_millis(ms).max(MIN_INTERVAL),
    };
    Ok(Lease {
        interval,
        ttl: Duration::from_millis(answer.lease_ttl_ms),
        fence_margin: Duration::from_millis(answer.fence_margin_ms),
    })
}

/// Registers, retrying with a backoff (up to 30 s) until a controller accepts.
pub async fn register_until_accepted(
    client: &ControlClient,
    sysinfo: &HostSysinfo,
    capacity: impl Fn() -> Capacity,
) -> (Lease, Capacity) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let cap = capacity();
        match register(client, sysinfo, cap).await {
            Ok(lease) => {
                tracing::info!(
                    interval_ms = lease.interval.as_millis() as u64,
                    ttl_ms = lease.ttl.as_millis() as u64,
                    "registered"
                );
                return (lease, cap);
            }
            Err(e) => {
                tracing::warn!(error = %e, "register failed; trying again");
                backoff.sleep().await;
            }
        }
    }
}

/// Heartbeats for ever (after [`register_until_accepted`]); `ready` runs once, when
/// the host is first registered; `revoked` gets the revocations each answer brings;
/// `keeper` the lease each answer grants.
pub async fn run(
    client: ControlClient,
    sysinfo: HostSysinfo,
    capacity: impl Fn() -> Capacity,
    ready: impl FnOnce(),
    revoked: Arc<RevocationFeed>,
    keeper: LeaseKeeper,
) {
    let host_id = sysinfo.host_id.to_string();
    let (mut lease, mut sent) = register_until_accepted(&client, &sysinfo, &capacity).await;
    ready();
    let mut failing_since: Option<Instant> = None;
    let mut last_log = Instant::now();
    // The first heartbeat at once: it grants the lease the zones wait for.
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        wait = lease.interval;
        let cap = capacity();
        let changed = cap != sent;
        let request = pb::HeartbeatRequest {
            host_id: host_id.clone(),
            capacity: changed.then(|| cap.into()),
            known_revocations: revoked.known(),
            applied_revision: keeper.applied_revision.load(Ordering::Acquire),
        };
        let sent_at = crate::fence::boottime_now();
        let answer = client
            .call_within("Heartbeat", lease.attempt_timeout(), move |mut c| {
                let request = request.clone();
                async move { c.heartbeat(request).await }
            })
            .await;
        match answer {
            Ok(answer) => {
                keeper.renewed(&lease, sent_at, answer.assignments_revision);
                revoked.extend(answer.revocations);
                if changed {
                    sent = cap;
                }
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        after_s = since.elapsed().as_secs(),
                        "heartbeats answered again"
                    );
                }
            }
            Err(e) if matches!(e.code(), Some(Code::NotFound | Code::FailedPrecondition)) => {
                tracing::warn!(error = %e, "the controllers do not know this host: registering again");
                (lease, sent) = register_until_accepted(&client, &sysinfo, &capacity).await;
                wait = Duration::ZERO;
            }
            Err(e) => {
                let first = failing_since.is_none();
                failing_since.get_or_insert_with(Instant::now);
                if first || last_log.elapsed() >= LOG_EVERY {
                    tracing::warn!(error = %e, "heartbeat failed; zones keep running, trying the controllers again");
                    last_log = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapsed_lease_requires_the_revision_it_was_granted_at_and_a_timely_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::fence::lease_path(dir.path());
        let renewals = Arc::new(AtomicU64::new(0));
        let keeper = LeaseKeeper {
            file: Some(file.clone()),
            applied_revision: Default::default(),
            on_renew: {
                let renewals = renewals.clone();
                Box::new(move || {
                    renewals.fetch_add(1, Ordering::Relaxed);
                })
            },
        };
        let lease = Lease {
            interval: DEFAULT_INTERVAL,
            ttl: Duration::from_secs(2),
            fence_margin: Duration::from_millis(500),
        };
        let required = || {
            crate::fence::LeaseRecord::load(&file)
                .unwrap()
                .assignments_revision
        };
        let now = crate::fence::boottime_now();
        // No lease before: the revision is required.
        keeper.renewed(&lease, now, 5);
        assert_eq!(required(), 5);
        // Renewed in time: the requirement stays.
        keeper.renewed(&lease, now, 9);
        assert_eq!(required(), 5);
        // Renewed after it lapsed: the new revision.
        keeper.renewed(&lease, now.saturating_sub(Duration::from_secs(10)), 9);
        keeper.renewed(&lease, now, 12);
        assert_eq!(required(), 12);
        assert_eq!(renewals.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_heartbeat_attempt_fits_well_within_the_lease() {
        let lease = |ttl_ms| Lease {
            interval: DEFAULT_INTERVAL,
            ttl: Duration::from_millis(ttl_ms),
            fence_margin: Duration::ZERO,
        };
        assert_eq!(lease(5000).attempt_timeout(), Duration::from_millis(1250));
        assert_eq!(lease(100).attempt_timeout(), Duration::from_millis(200));
        assert_eq!(
            lease(600_000).attempt_timeout(),
            super::super::client::CALL_TIMEOUT
        );
        assert_eq!(
            lease(0).attempt_timeout(),
            super::super::client::CALL_TIMEOUT
        );
    }
}
