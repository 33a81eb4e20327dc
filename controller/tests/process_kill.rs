//! The real `zonefleet-controller` binary, three processes on loopback: SIGKILL all of
//! them during a stream of writes, restart them, and every acknowledged write is there;
//! SIGKILL the leader three times under writes, and writes resume each time with no
//! acknowledged write lost. (The measured version, 20 kills with pause percentiles, is
//! `bench/run`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zonefleet_harness::bounded;
use zonefleet_harness::fixtures::keyed_create;
use zonefleet_proto::pb;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::tls::{client_config, connect_channel, CertKey, ExpectedPeer, FleetTrust};

/// Kills every child it holds when dropped, even when the test panics.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn sigkill(&mut self, i: usize) {
        let _ = self.0[i].kill();
        let _ = self.0[i].wait();
    }

    fn sigkill_all(&mut self) {
        for mut child in self.0.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Fleet {
    dir: TempDir,
    addrs: Vec<String>,
    trust: FleetTrust,
    operator: CertKey,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = TempDir::new().unwrap();
        let files = zonefleet_harness::loopback::write_cluster(dir.path(), "proc", 3, "").unwrap();
        Fleet {
            dir,
            addrs: files.addrs,
            trust: files.trust,
            operator: files.operator,
        }
    }

    fn config(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("c{id}.toml"))
    }

    fn start_all(&self) -> Processes {
        Processes(
            (1..=3)
                .map(|id| spawn(&self.config(id), self.dir.path()))
                .collect(),
        )
    }

    async fn client(&self, i: usize) -> Option<OperatorClient<tonic::transport::Channel>> {
        let config = client_config(
            &self.trust,
            ExpectedPeer::AnyController,
            Some(&self.operator),
        )
        .unwrap();
        connect_channel(&self.addrs[i % 3], config)
            .await
            .ok()
            .map(OperatorClient::new)
    }

    /// The index (0..3) of the leader as the controllers in `alive` report it.
    async fn leader_among(&self, alive: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for &i in alive {
                if let Some(mut c) = self.client(i).await {
                    if let Ok(s) = c.cluster_status(pb::ClusterStatusRequest::default()).await {
                        if let Ok(id) = s.get_ref().leader_id.parse::<usize>() {
                            if alive.contains(&(id - 1)) {
                                return id - 1;
                            }
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader among {alive:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails the test when an acknowledged write is not among the zones controller
    /// `i` lists (a linearizable read), keeping the controllers' data dirs and logs
    /// for a look (their path is printed).
    async fn assert_none_lost(&self, i: usize, acked: &BTreeSet<String>) {
        let present: BTreeSet<String> = self
            .client(i)
            .await
            .unwrap()
            .list_zones(pb::ListZonesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .zones
            .into_iter()
            .filter_map(|z| z.spec.and_then(|s| s.alias))
            .collect();
        let lost: Vec<&String> = acked.difference(&present).collect();
        if lost.is_empty() {
            return;
        }
        // A copy: the temporary directory goes with the test.
        let kept = std::env::temp_dir().join(format!("zonefleet-lost-{}", std::process::id()));
        let _ = Command::new("cp")
            .arg("-a")
            .arg(self.dir.path())
            .arg(&kept)
            .status();
        panic!(
            "{} of {} acknowledged writes lost: {lost:?} (data dirs and logs kept in {})",
            lost.len(),
            acked.len(),
            kept.display()
        );
    }

    /// Waits until some controller reports a leader.
    async fn wait_for_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for i in 0..3 {
                if let Some(mut c) = self.client(i).await {
                    if let Ok(s) = c.cluster_status(pb::ClusterStatusRequest::default()).await {
                        if !s.get_ref().leader_id.is_empty() {
                            return;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts the controller of `config`, its stderr appended to `c<id>.log` next to it.
fn spawn(config: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_extension("log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_zonefleet-controller"))
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        // ZONEFLEET_TEST_LOG=info keeps openraft's account of elections and restarts.
        .env(
            "RUST_LOG",
            std::env::var("ZONEFLEET_TEST_LOG").unwrap_or_else(|_| "error".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_all_three_during_writes_loses_no_acknowledged_write() {
    bounded(Duration::from_secs(90), async {
        let fleet = Fleet::new();
        let mut processes = fleet.start_all();
        fleet.wait_for_leader().await;
        // Four writers through different controllers.
        let mut writers = Vec::new();
        for w in 0..4 {
            let mut client = fleet.client(w).await.unwrap();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let alias = format!("w{w}-{i}");
                    let request = keyed_create(&alias);
                    let call = client.create_zones(request);
                    match tokio::time::timeout(Duration::from_secs(2), call).await {
                        Ok(Ok(_)) => acked.push(alias),
                        _ => break,
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        processes.sigkill_all();
        let mut acked = BTreeSet::new();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        assert!(
            acked.len() >= 10,
            "too few writes before the kill: {}",
            acked.len()
        );
        let _processes = fleet.start_all();
        fleet.wait_for_leader().await;
        fleet.assert_none_lost(1, &acked).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_leader_three_times_writes_resume_and_none_is_lost() {
    use std::sync::{Arc, Mutex};
    bounded(Duration::from_secs(120), async {
        let fleet = Arc::new(Fleet::new());
        let mut processes = fleet.start_all();
        fleet.wait_for_leader().await;
        // (sent, acknowledged, alias) of every acknowledged write.
        let acked: Arc<Mutex<Vec<(Instant, Instant, String)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (fleet, acked, stop) = (fleet.clone(), acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut target = w % 3;
                let mut client = None;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(c) = client.as_mut() else {
                        client = fleet.client(target).await;
                        if client.is_none() {
                            target = (target + 1) % 3;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    };
                    // A retry after an error reuses the key: a write may commit and
                    // still fail at the client.
                    let alias = format!("w{w}-{i}");
                    let request = keyed_create(&alias);
                    let sent = Instant::now();
                    let call = c.create_zones(request);
                    match tokio::time::timeout(Duration::from_secs(5), call).await {
                        Ok(Ok(_)) => {
                            acked.lock().unwrap().push((sent, Instant::now(), alias));
                            i += 1;
                        }
                        _ => {
                            client = None;
                            target = (target + 1) % 3;
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for kill in 0..3 {
            let leader = fleet.leader_among(&[0, 1, 2]).await;
            let killed_at = Instant::now();
            processes.sigkill(leader);
            // Writes resume: one sent after the kill is acknowledged.
            let deadline = killed_at + Duration::from_secs(15);
            while !acked.lock().unwrap().iter().any(|(s, _, _)| *s > killed_at) {
                assert!(
                    Instant::now() < deadline,
                    "kill {kill}: writes did not resume"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            processes.0[leader] = spawn(&fleet.config(leader + 1), fleet.dir.path());
            // Back in the group (knows a leader) before the next kill.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(mut c) = fleet.client(leader).await {
                    if let Ok(s) = c.cluster_status(pb::ClusterStatusRequest::default()).await {
                        if !s.get_ref().leader_id.is_empty() {
                            break;
                        }
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "controller {} did not rejoin",
                    leader + 1
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let acked: BTreeSet<String> = acked.lock().unwrap().iter().map(|a| a.2.clone()).collect();
        assert!(acked.len() >= 10, "too few writes: {}", acked.len());
        let leader = fleet.leader_among(&[0, 1, 2]).await;
        fleet.assert_none_lost(leader, &acked).await;
    })
    .await;
}
