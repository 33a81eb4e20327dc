//! The etcd side: three `etcd` processes (Debian's `etcd-server`) on loopback, data
//! dirs under a temporary directory, default settings (fsync'd WAL, plaintext).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::load::Writer;
use crate::procs::Proc;
use zonefleet_harness::loopback::free_port;

/// Three etcd members.
pub struct EtcdCluster {
    /// Client URLs of the members.
    pub endpoints: Vec<String>,
    procs: Vec<Proc>,
}

impl EtcdCluster {
    /// Starts three members of a new cluster under `dir` with the `etcd` at `bin`,
    /// and waits until a put succeeds.
    pub async fn start(dir: &Path, bin: &Path) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir)?;
        let mut peers = Vec::new();
        let mut endpoints = Vec::new();
        for _ in 0..3 {
            peers.push(format!("http://127.0.0.1:{}", free_port()?));
            endpoints.push(format!("http://127.0.0.1:{}", free_port()?));
        }
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{}={p}", i + 1))
            .collect();
        let mut procs = Vec::new();
        for i in 0..3 {
            let name = format!("e{}", i + 1);
            let mut command = Command::new(bin);
            command
                .current_dir(dir)
                .arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(dir.join(&name))
                .arg("--listen-client-urls")
                .arg(&endpoints[i])
                .arg("--advertise-client-urls")
                .arg(&endpoints[i])
                .arg("--listen-peer-urls")
                .arg(&peers[i])
                .arg("--initial-advertise-peer-urls")
                .arg(&peers[i])
                .arg("--initial-cluster")
                .arg(initial.join(","))
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--initial-cluster-token")
                .arg("zonefleet-bench")
                .arg("--logger")
                .arg("zap")
                .arg("--log-level")
                .arg("warn");
            procs.push(Proc::spawn(
                &format!("etcd {name}"),
                command,
                &dir.join(format!("{name}.log")),
            )?);
        }
        let cluster = EtcdCluster { endpoints, procs };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut w) = EtcdWriter::connect(&cluster.endpoints[0], "ready", 8).await {
                if w.write(0).await.is_ok() {
                    return Ok(cluster);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "etcd did not come up within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if a member has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            p.check_running()?;
        }
        Ok(())
    }
}

/// A benchmark client: its own etcd client on one member, putting distinct keys.
pub struct EtcdWriter {
    client: etcd_client::Client,
    prefix: String,
    value: Vec<u8>,
}

impl EtcdWriter {
    /// A client of `endpoint` whose keys start with `prefix`, putting `value_size`
    /// bytes.
    pub async fn connect(endpoint: &str, prefix: &str, value_size: usize) -> anyhow::Result<Self> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(crate::load::WRITE_TIMEOUT);
        let client = etcd_client::Client::connect([endpoint], Some(options)).await?;
        Ok(EtcdWriter {
            client,
            prefix: prefix.to_owned(),
            value: vec![b'x'; value_size],
        })
    }
}

impl Writer for EtcdWriter {
    async fn write(&mut self, seq: u64) -> Result<(), String> {
        let key = format!("{}/{seq}", self.prefix);
        self.client
            .put(key, self.value.clone(), None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
