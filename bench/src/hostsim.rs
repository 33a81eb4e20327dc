//! The host simulator: many hosts in one process, each speaking the agent's own
//! enrollment, registration, heartbeat and watch code (`zonefleet_agent::daemon`) to
//! the real controllers with its own key, certificate and connection — everything a
//! host does except running zones. It measures what a fleet of that size costs the
//! leader.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;
use uuid::Uuid;
use zonefleet_agent::daemon::certs::HostKey;
use zonefleet_agent::daemon::client::ControlClient;
use zonefleet_agent::daemon::{enroll, heartbeat, revoked, watch};
use zonefleet_proto::host::{Capacity, HostSysinfo};
use zonefleet_proto::pb;

use crate::zf::ZfCluster;

/// What every simulated host offers (a large machine: it is never full).
const CAPACITY: Capacity = Capacity {
    memory_mib: 256 * 1024,
    cpu_percent: 6400,
    disk_gib: 4096,
    allocated_memory_mib: 0,
    allocated_cpu_percent: 0,
    allocated_disk_gib: 0,
};

/// Counters every simulated host adds to.
#[derive(Debug, Default)]
pub struct Counters {
    /// Hosts registered (their first `Register` accepted).
    pub registered: AtomicU64,
    /// Assignment events received, over all hosts.
    pub events: AtomicU64,
}

/// One enrolled host: its id, its client (its own certificate and connection).
pub struct Enrolled {
    host_id: Uuid,
    client: ControlClient,
    /// The revocations its heartbeats bring (as an agent's listener enforces them).
    revoked: Arc<revoked::RevocationFeed>,
}

/// Enrolls `n` hosts with one join token each (`concurrency` at a time), each with a
/// key it generated in its own data dir under `dir`, and `controllers` as its
/// configured list (the first one is the one it talks to while it answers). Returns
/// them, in no order.
pub async fn enroll_hosts(
    cluster: &ZfCluster,
    controllers: &[String],
    dir: &Path,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Enrolled>> {
    let pin = root_pin(cluster)?;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for w in 0..concurrency {
        let mut operator = cluster.client(w).await?;
        let controllers = controllers.to_vec();
        let (pin, next, dir) = (pin.clone(), next.clone(), dir.to_owned());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return anyhow::Ok(done);
                }
                let rack = format!("r{}", i % 16);
                let token = operator
                    .create_join_token(pb::CreateJoinTokenRequest {
                        rack,
                        labels: Default::default(),
                        ttl_seconds: 3600,
                    })
                    .await
                    .with_context(|| format!("token for host {i}"))?
                    .into_inner()
                    .token;
                done.push(
                    enroll_one(&dir.join(format!("h{i}")), &controllers, &token, &pin).await?,
                );
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

async fn enroll_one(
    data: &Path,
    controllers: &[String],
    token: &str,
    pin: &str,
) -> anyhow::Result<Enrolled> {
    std::fs::create_dir_all(data)?;
    let host_id = Uuid::new_v4();
    let key = HostKey::load_or_generate(data)?;
    let enrolled = enroll::enroll(
        data,
        controllers,
        token,
        pin,
        Some(crate::zf::CLUSTER),
        host_id,
        &key,
    )
    .await
    .with_context(|| format!("enrolling {host_id}"))?;
    let tls = enrolled.credentials.client_config()?;
    let trust = enrolled.credentials.trust()?;
    Ok(Enrolled {
        host_id,
        client: ControlClient::new(enrolled.controllers, tls),
        revoked: revoked::RevocationFeed::new(trust.revocations().clone()),
    })
}

fn root_pin(cluster: &ZfCluster) -> anyhow::Result<String> {
    let path = cluster.dir().join("ca.crt");
    let der = zonefleet_proto::tls::load_certs(&path)?;
    let root = der.first().context("ca.crt holds no certificate")?;
    Ok(zonefleet_proto::pki::fingerprint(root))
}

/// Starts every host: register, then heartbeat at the interval the controllers give,
/// and watch its assignments, until the returned set is dropped. Hosts start spread
/// over `ramp` so their heartbeats are spread over the interval as real hosts' are.
pub fn run_hosts(
    hosts: Vec<Enrolled>,
    base: &HostSysinfo,
    counters: Arc<Counters>,
    ramp: Duration,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let step = ramp / hosts.len().max(1) as u32;
    for (i, host) in hosts.into_iter().enumerate() {
        let mut sysinfo = base.clone();
        sysinfo.host_id = host.host_id;
        sysinfo.hostname = format!("sim-{i}");
        let counters = counters.clone();
        let delay = step * i as u32;
        set.spawn(async move {
            tokio::time::sleep(delay).await;
            let watching = {
                let (client, counters) = (host.client.clone(), counters.clone());
                let id = host.host_id.to_string();
                tokio::spawn(async move {
                    watch::run(client, id, Arc::new(AtomicU64::new(0)), |_| {
                        counters.events.fetch_add(1, Ordering::Relaxed);
                        true
                    })
                    .await
                })
            };
            heartbeat::run(
                host.client,
                sysinfo,
                || CAPACITY,
                || {
                    counters.registered.fetch_add(1, Ordering::Relaxed);
                },
                host.revoked,
                // A simulated host runs no zones: nothing to fence.
                heartbeat::LeaseKeeper {
                    file: None,
                    applied_revision: Arc::new(AtomicU64::new(0)),
                    on_renew: Box::new(|| {}),
                },
            )
            .await;
            watching.abort();
        });
    }
    set
}

/// CPU time (user + system) and resident memory of a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set, KiB.
    pub rss_kib: u64,
}

/// `pid`'s usage from /proc.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc/PID/stat without a ')'")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat(5); after the comm: 12 and 13 (0-based 11, 12).
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Usage {
        cpu: Duration::from_millis(ticks * 1000 / hz),
        rss_kib,
    })
}

/// The share of one core `pid` used over `window`, and its RSS at the end.
pub async fn measure(pid: u32, window: Duration) -> anyhow::Result<(f64, u64)> {
    let before = usage(pid)?;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let after = usage(pid)?;
    let cores = (after.cpu - before.cpu).as_secs_f64() / start.elapsed().as_secs_f64();
    Ok((cores, after.rss_kib))
}

/// Where the simulated hosts keep their keys and certificates.
pub fn hosts_dir(base: &Path) -> PathBuf {
    base.join("hosts")
}
