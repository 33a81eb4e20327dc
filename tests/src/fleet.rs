//! A fleet of real binaries for the multi-host suites: the PKI made by `zfadm pki init`,
//! controllers each on its own host on the run's switch, and an operator host from which
//! `zfadm` talks to them. Everything goes when the fleet is dropped, daemons first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::{HostNs, Switch};
use crate::process::{run_in, Daemon};
use crate::{binary, names};

/// The port every controller listens on (each on its own host's address).
pub const PORT: u16 = 7000;
/// The fleet's cluster name.
pub const CLUSTER: &str = "multi";
/// How long one `zfadm` call may take.
const ZFADM_LIMIT: Duration = Duration::from_secs(30);

/// Controllers on hosts 1..=n of a switch, and an operator host (number 99).
pub struct Fleet {
    dir: tempfile::TempDir,
    // Fields drop in order: the controllers stop before their hosts go.
    /// The controllers, by index (id − 1); `None` while one is stopped.
    pub controllers: Vec<Option<Daemon>>,
    /// The controllers' hosts, by index.
    pub hosts: Vec<HostNs>,
    operator: HostNs,
    switch: Switch,
}

impl Fleet {
    /// Sweeps what earlier runs left, makes the switch, `n` controller hosts and the
    /// operator host, the PKI, and starts the controllers.
    pub fn start(n: usize) -> Fleet {
        names::sweep_stale();
        let run = names::new_run();
        let switch = Switch::new(&run).expect("switch");
        let hosts: Vec<HostNs> = (1..=n as u8)
            .map(|i| switch.host(i).expect("host"))
            .collect();
        let operator = switch.host(99).expect("operator host");
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet {
            dir,
            controllers: Vec::new(),
            hosts,
            operator,
            switch,
        };
        fleet.init_pki();
        // An empty zfadm config, so no one's ~/.config is read.
        std::fs::write(fleet.dir().join("zfadm.toml"), "").unwrap();
        for i in 0..n {
            let daemon = fleet.start_controller(i);
            fleet.controllers.push(Some(daemon));
        }
        fleet
    }

    /// The fleet's directory: PKI, configs, data dirs, logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The switch, to add more hosts.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Controller `i`'s address (`HOST:PORT`).
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.hosts[i].address())
    }

    /// Every controller index.
    pub fn all(&self) -> Vec<usize> {
        (0..self.hosts.len()).collect()
    }

    /// The PKI directory `zfadm pki init` wrote.
    pub fn pki(&self) -> PathBuf {
        self.dir().join("pki")
    }

    /// Controller `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir().join(format!("data-{}", i + 1))
    }

    fn init_pki(&self) {
        let mut command = Command::new(binary("zfadm"));
        command.args(["pki", "init", "--cluster", CLUSTER, "--out"]);
        command.arg(self.pki());
        for i in 0..self.hosts.len() {
            command
                .arg("--controller")
                .arg(format!("{}={}", i + 1, self.addr(i)));
        }
        let out = run_in(None, command, ZFADM_LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes controller `i`'s config and starts it on its host.
    pub fn start_controller(&self, i: usize) -> Daemon {
        let id = i + 1;
        let members: String = (0..self.hosts.len())
            .map(|j| format!("{} = \"{}\"\n", j + 1, self.addr(j)))
            .collect();
        let config = self.dir().join(format!("controller-{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "id = {id}\ncluster = \"{CLUSTER}\"\nlisten = \"{}\"\ndata_dir = \"data-{id}\"\n\
                 [tls]\nca = \"pki/ca.crt\"\ncert = \"pki/controller-{id}.crt\"\n\
                 key = \"pki/controller-{id}.key\"\n[initial_members]\n{members}",
                self.addr(i)
            ),
        )
        .unwrap();
        let mut command = Command::new(binary("zonefleet-controller"));
        command.arg("--config").arg(&config);
        let log = self.dir().join(format!("controller-{id}.log"));
        Daemon::start(&format!("controller {id}"), &self.hosts[i], command, &log)
            .expect("start a controller")
    }

    /// `zfadm ARGS` on the operator's host against the controllers `via`: its stdout,
    /// or its stderr when it fails.
    pub fn zfadm(&self, via: &[usize], args: &[&str]) -> Result<String, String> {
        let pki = self.pki();
        let controllers: Vec<String> = via.iter().map(|&i| self.addr(i)).collect();
        let mut command = Command::new(binary("zfadm"));
        command
            .args(args)
            .env("ZONEFLEET_CONTROLLERS", controllers.join(","))
            .env("ZONEFLEET_CA", pki.join("ca.crt"))
            .env("ZONEFLEET_CERT", pki.join("operator-admin.crt"))
            .env("ZONEFLEET_KEY", pki.join("operator-admin.key"))
            .env("ZONEFLEET_CONFIG", self.dir().join("zfadm.toml"));
        let out = run_in(Some(&self.operator), command, ZFADM_LIMIT);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `zfadm ARGS -o json`, parsed; panics naming the command when it fails.
    pub fn zfadm_json(&self, via: &[usize], args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self
            .zfadm(via, &all)
            .unwrap_or_else(|e| panic!("zfadm {args:?}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("zfadm {args:?}: {e}: {out}"))
    }

    /// The leader's id as the controllers `via` report it, once there is one.
    pub fn leader(&self, via: &[usize], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let status = self.zfadm(via, &["cluster", "status", "-o", "json"]);
            if let Ok(json) = &status {
                let status: serde_json::Value = serde_json::from_str(json).unwrap();
                if let Some(id) = leader_of(&status) {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader via {via:?}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The leader's id in `zfadm cluster status -o json`.
fn leader_of(status: &serde_json::Value) -> Option<u64> {
    let leader = status.get("leader_id")?;
    leader
        .as_u64()
        .or_else(|| leader.as_str().and_then(|s| s.parse().ok()))
        .filter(|id| *id != 0)
}
