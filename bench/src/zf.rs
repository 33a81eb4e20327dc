//! The zonefleet side: three `zonefleet-controller` release binaries on loopback, real
//! mTLS, real fsync'd redb stores under a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use tonic::transport::Channel;
use zonefleet_proto::pb;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::tls::{client_config, connect_channel, CertKey, ExpectedPeer, FleetTrust};

use crate::load::Writer;
use crate::procs::Proc;
use zonefleet_harness::loopback::LoopbackCluster;

/// The benchmark cluster's name.
pub const CLUSTER: &str = "bench";

/// The benchmark's write (shared with `zfadm bench`).
pub use zonefleet_proto::cli::bench::create_request;

/// The size of the Raft command the controller logs for [`create_request`] (the spec
/// with its defaults filled in, one uuid, a timestamp): the etcd side puts values of
/// this size.
pub fn command_size() -> anyhow::Result<usize> {
    use zonefleet_controller::api::operator::{checked_spec, command};
    let spec = checked_spec(create_request().spec.unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("bench spec: {e}"))?;
    let cmd = command(pb::fleet_command::Kind::CreateZones(
        pb::CreateZonesCommand {
            spec: Some(spec),
            uuids: vec!["00000000-0000-4000-8000-000000000000".into()],
            idempotency_key: String::new(),
        },
    ));
    Ok(cmd.encoded_len())
}

/// Three controllers on loopback.
pub struct ZfCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// `127.0.0.1:PORT` of controllers 1, 2, 3.
    pub addrs: Vec<String>,
    trust: FleetTrust,
    operator: CertKey,
    procs: Vec<Option<Proc>>,
}

impl ZfCluster {
    /// Writes the PKI and configurations under `dir` and starts the three controllers
    /// of `bin`. `raft`: a `[raft]` section for `controller.toml` (empty: defaults).
    pub fn start(dir: &Path, bin: &Path, raft: &str) -> anyhow::Result<ZfCluster> {
        let LoopbackCluster {
            addrs,
            trust,
            operator,
        } = zonefleet_harness::loopback::write_cluster(dir, CLUSTER, 3, raft)?;
        let mut cluster = ZfCluster {
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            addrs,
            trust,
            operator,
            procs: vec![None, None, None],
        };
        for i in 0..3 {
            cluster.start_member(i)?;
        }
        Ok(cluster)
    }

    /// (Re)starts controller `i + 1` on its data dir.
    pub fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        let id = i + 1;
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(self.dir.join(format!("c{id}.toml")))
            .current_dir(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("ZONEFLEET_BENCH_LOG")
                    .unwrap_or_else(|_| "warn,openraft=error".to_owned()),
            );
        let proc = Proc::spawn(
            &format!("controller {id}"),
            command,
            &self.dir.join(format!("c{id}.log")),
        )?;
        self.procs[i] = Some(proc);
        Ok(())
    }

    /// The directory holding the PKI, configs and data dirs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of controller `i + 1`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(Proc::pid)
    }

    /// SIGKILLs controller `i + 1` (and reaps it).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(p) = self.procs[i].take() {
            p.kill();
        }
    }

    /// Fails if a controller that should run has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for p in self.procs.iter_mut().flatten() {
            p.check_running()?;
        }
        Ok(())
    }

    /// An operator client of controller `i % 3 + 1` (its own connection).
    pub async fn client(&self, i: usize) -> anyhow::Result<OperatorClient<Channel>> {
        let addr = &self.addrs[i % 3];
        let config = client_config(
            &self.trust,
            ExpectedPeer::AnyController,
            Some(&self.operator),
        )?;
        let channel = tokio::time::timeout(Duration::from_secs(2), connect_channel(addr, config))
            .await
            .with_context(|| format!("connect {addr}: timed out"))??;
        // Host listings of a large simulated fleet run to tens of MiB.
        Ok(OperatorClient::new(channel).max_decoding_message_size(256 * 1024 * 1024))
    }

    async fn status(&self, i: usize) -> Option<pb::ClusterStatusResponse> {
        let mut client = self.client(i).await.ok()?;
        let call = client.cluster_status(pb::ClusterStatusRequest::default());
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// The index (0..3) of the leader, as a running controller reports it.
    pub async fn leader(&self, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            for i in 0..3 {
                if self.procs[i].is_none() {
                    continue;
                }
                if let Some(s) = self.status(i).await {
                    if let Ok(id) = s.leader_id.parse::<usize>() {
                        if (1..=3).contains(&id) && self.procs[id - 1].is_some() {
                            return Ok(id - 1);
                        }
                    }
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until controller `i + 1` is back in the group: it knows the leader, and
    /// the leader reaches it with a lag under `max_lag` entries.
    pub async fn wait_rejoined(
        &self,
        i: usize,
        max_lag: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let id = (i + 1).to_string();
        loop {
            let own = self
                .status(i)
                .await
                .is_some_and(|s| !s.leader_id.is_empty());
            if own {
                if let Ok(leader) = self.leader(Duration::from_secs(2)).await {
                    if let Some(s) = self.status(leader).await {
                        if s.members
                            .iter()
                            .any(|m| m.id == id && m.reachable && m.lag <= max_lag)
                        {
                            return Ok(());
                        }
                    }
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "controller {id} not back in the group within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A benchmark client: one connection to one controller.
pub struct ZfWriter(pub OperatorClient<Channel>);

impl Writer for ZfWriter {
    async fn write(&mut self, _seq: u64) -> Result<(), String> {
        self.0
            .create_zones(create_request())
            .await
            .map(|_| ())
            .map_err(|s| s.to_string())
    }
}

/// One acknowledged write of the leader-kill run.
#[derive(Debug, Clone)]
pub struct Ack {
    /// When the client sent it.
    pub sent: Instant,
    /// When the client had its acknowledgement.
    pub acked: Instant,
    /// The created zone.
    pub uuid: String,
}

/// The leader-kill run's numbers.
#[derive(Debug, Clone)]
pub struct KillResult {
    /// Per kill: from SIGKILL to the first acknowledgement of a write sent after it.
    pub pauses: Vec<Duration>,
    /// Acknowledged writes during the run.
    pub acked: usize,
    /// Acknowledged writes checked in the final state (those around each kill).
    pub checked: usize,
    /// Checked writes missing from the final state.
    pub lost: usize,
}

/// Under `clients` writers that fail over to the next controller on any error, SIGKILLs
/// the leader `kills` times; after each kill waits for writes to resume, restarts the
/// killed controller and waits until it has caught up. Finally checks that every
/// acknowledged zone is in the state.
pub async fn leader_kills(
    cluster: &mut ZfCluster,
    clients: usize,
    kills: usize,
) -> anyhow::Result<KillResult> {
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addrs = cluster.addrs.clone();
        let trust = cluster.trust.clone();
        let operator = cluster.operator.clone();
        let acks = acks.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut target = c % 3;
            let mut client: Option<OperatorClient<Channel>> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(cl) = client.as_mut() else {
                    let Ok(config) =
                        client_config(&trust, ExpectedPeer::AnyController, Some(&operator))
                    else {
                        return;
                    };
                    let connect = connect_channel(&addrs[target], config);
                    match tokio::time::timeout(Duration::from_secs(1), connect).await {
                        Ok(Ok(channel)) => client = Some(OperatorClient::new(channel)),
                        _ => {
                            target = (target + 1) % 3;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    continue;
                };
                let sent = Instant::now();
                let call = cl.create_zones(create_request());
                match tokio::time::timeout(Duration::from_secs(5), call).await {
                    Ok(Ok(response)) => {
                        let acked = Instant::now();
                        let uuid = response
                            .into_inner()
                            .zones
                            .first()
                            .and_then(|z| z.spec.as_ref())
                            .and_then(|s| s.uuid.clone())
                            .unwrap_or_default();
                        acks.lock().unwrap_or_else(|p| p.into_inner()).push(Ack {
                            sent,
                            acked,
                            uuid,
                        });
                    }
                    _ => {
                        // The controller died or could not commit: try the next one.
                        client = None;
                        target = (target + 1) % 3;
                    }
                }
            }
        }));
    }
    let outcome = async {
        let mut pauses = Vec::new();
        let mut kill_times = Vec::new();
        tokio::time::sleep(Duration::from_secs(2)).await;
        for k in 0..kills {
            cluster.check_running()?;
            let leader = cluster.leader(Duration::from_secs(10)).await?;
            let killed_at = Instant::now();
            let killed_wall = std::time::SystemTime::now();
            cluster.kill_member(leader);
            kill_times.push(killed_at);
            let deadline = killed_at + Duration::from_secs(30);
            let pause = loop {
                let first = acks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .rev()
                    .take_while(|a| a.sent >= killed_at)
                    .map(|a| a.acked)
                    .min();
                if let Some(acked) = first {
                    break acked - killed_at;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "kill {}: no write acknowledged within 30 s",
                    k + 1
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            // The wall-clock time (UTC, of the day) matches the controllers' logs.
            let day_ms = killed_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() % 86_400_000)
                .unwrap_or(0);
            eprintln!(
                "  kill {:>2}: controller {} killed at {:02}:{:02}:{:02}.{:03}, writes resumed after {:.0} ms",
                k + 1,
                leader + 1,
                day_ms / 3_600_000,
                day_ms / 60_000 % 60,
                day_ms / 1000 % 60,
                day_ms % 1000,
                pause.as_secs_f64() * 1000.0
            );
            pauses.push(pause);
            cluster.start_member(leader)?;
            cluster
                .wait_rejoined(leader, 200, Duration::from_secs(60))
                .await?;
            // Steady load before the next kill.
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        anyhow::Ok((pauses, kill_times))
    }
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let (pauses, kill_times) = outcome?;
    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
    // The writes most at risk: the last 100 acknowledged before each kill and the
    // first 100 acknowledged after it. Each must be readable (linearizable reads).
    let mut check: Vec<String> = Vec::new();
    for killed_at in &kill_times {
        let mut before: Vec<&Ack> = acks.iter().filter(|a| a.acked < *killed_at).collect();
        before.sort_by_key(|a| a.acked);
        let mut after: Vec<&Ack> = acks.iter().filter(|a| a.acked >= *killed_at).collect();
        after.sort_by_key(|a| a.acked);
        check.extend(before.iter().rev().take(100).map(|a| a.uuid.clone()));
        check.extend(after.iter().take(100).map(|a| a.uuid.clone()));
    }
    check.sort();
    check.dedup();
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let mut lost = 0;
    for chunk in check.chunks(check.len().div_ceil(8).max(1)) {
        let mut client = cluster.client(leader).await?;
        for uuid in chunk {
            let request = pb::GetZoneRequest {
                zone: uuid.clone(),
                ..Default::default()
            };
            match client.get_zone(request).await {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => lost += 1,
                Err(s) => anyhow::bail!("checking zone {uuid}: {s}"),
            }
        }
    }
    Ok(KillResult {
        pauses,
        acked: acks.len(),
        checked: check.len(),
        lost,
    })
}
