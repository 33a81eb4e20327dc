//! Three `zonefleet-controller` processes, each on its own host (a network namespace
//! on the run's switch), and an operator on a fourth: they form one Raft group over the
//! switch; pulling the leader's cable elects another leader among the two left, writes
//! through them go on, and the cut-off controller catches up once plugged back in.
//! Needs root (namespaces, veth); fails under `CI=true` without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use zonefleet_tests::netns::{HostNs, Switch};
use zonefleet_tests::process::{run_in, Daemon};
use zonefleet_tests::{binary, names, privileged};

const PORT: u16 = 7000;
const CLUSTER: &str = "multi";

struct Fleet {
    dir: tempfile::TempDir,
    // Dropped first: the controllers stop before their hosts go.
    controllers: Vec<Option<Daemon>>,
    hosts: Vec<HostNs>,
    operator: HostNs,
    _switch: Switch,
}

impl Fleet {
    fn new() -> Fleet {
        names::sweep_stale();
        let run = names::new_run();
        let switch = Switch::new(&run).expect("switch");
        let hosts: Vec<HostNs> = (1..=3).map(|n| switch.host(n).expect("host")).collect();
        let operator = switch.host(9).expect("operator host");
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet {
            dir,
            controllers: Vec::new(),
            hosts,
            operator,
            _switch: switch,
        };
        fleet.init_pki();
        // An empty zfadm config, so no one's ~/.config is read.
        std::fs::write(fleet.dir.path().join("zfadm.toml"), "").unwrap();
        for i in 0..3 {
            let daemon = fleet.start(i);
            fleet.controllers.push(Some(daemon));
        }
        fleet
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.hosts[i].address())
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    fn init_pki(&self) {
        let mut command = Command::new(binary("zfadm"));
        command.args(["pki", "init", "--cluster", CLUSTER, "--out"]);
        command.arg(self.pki());
        for i in 0..3 {
            command
                .arg("--controller")
                .arg(format!("{}={}", i + 1, self.addr(i)));
        }
        let out = run_in(None, command, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self, i: usize) -> Daemon {
        let id = i + 1;
        let members: String = (0..3)
            .map(|j| format!("{} = \"{}\"\n", j + 1, self.addr(j)))
            .collect();
        let config = self.dir.path().join(format!("controller-{id}.toml"));
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
        let log = self.dir.path().join(format!("controller-{id}.log"));
        Daemon::start(&format!("controller {id}"), &self.hosts[i], command, &log)
            .expect("start a controller")
    }

    /// `zfadm ARGS` on the operator's host against the controllers `via`.
    fn zfadm(&self, via: &[usize], args: &[&str]) -> Result<String, String> {
        let pki = self.pki();
        let controllers: Vec<String> = via.iter().map(|&i| self.addr(i)).collect();
        let mut command = Command::new(binary("zfadm"));
        command
            .args(args)
            .env("ZONEFLEET_CONTROLLERS", controllers.join(","))
            .env("ZONEFLEET_CA", pki.join("ca.crt"))
            .env("ZONEFLEET_CERT", pki.join("operator-admin.crt"))
            .env("ZONEFLEET_KEY", pki.join("operator-admin.key"))
            .env("ZONEFLEET_CONFIG", self.dir.path().join("zfadm.toml"));
        let out = run_in(Some(&self.operator), command, Duration::from_secs(30));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The leader's id as the controllers `via` report it, once there is one.
    fn leader(&self, via: &[usize], within: Duration) -> u64 {
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

    fn create_network(&self, via: &[usize], n: u8) -> Result<String, String> {
        let file = self.dir.path().join(format!("net{n}.json"));
        let uuid = format!("00000000-0000-4000-8000-0000000000{n:02x}");
        std::fs::write(
            &file,
            serde_json::json!({
                "uuid": uuid,
                "name": format!("net{n}"),
                "subnet": format!("10.{n}.0.0/24"),
                "provision_start": format!("10.{n}.0.10"),
                "provision_end": format!("10.{n}.0.20"),
            })
            .to_string(),
        )
        .unwrap();
        self.zfadm(via, &["network", "create", "-f", file.to_str().unwrap()])
    }

    fn networks(&self, via: &[usize]) -> Vec<String> {
        let json = self
            .zfadm(via, &["network", "list", "-o", "json"])
            .expect("network list");
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut names: Vec<String> = list
            .as_array()
            .expect("a list")
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
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

fn data_dir(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("data-{id}"))
}

#[test]
fn controllers_on_three_hosts_survive_a_pulled_cable() {
    if !privileged("controllers_on_three_hosts_survive_a_pulled_cable") {
        return;
    }
    let fleet = Fleet::new();
    let all = [0, 1, 2];
    let leader = fleet.leader(&all, Duration::from_secs(30));
    fleet
        .create_network(&all, 1)
        .expect("a write through the fleet");
    assert!(data_dir(fleet.dir.path(), leader as usize).is_dir());

    // Pull the leader's cable: the two others elect one of them and take writes.
    let cut = (leader - 1) as usize;
    fleet.hosts[cut].unplug().unwrap();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != cut).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let id = fleet.leader(&rest, Duration::from_secs(30));
        if id != leader {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "controller {leader} still leads, cut off"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(new_leader, leader);
    fleet
        .create_network(&rest, 2)
        .expect("a write without the old leader");

    // Plugged back in, the old leader has both writes.
    fleet.hosts[cut].plug().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = fleet.zfadm(&[cut], &["network", "list", "-o", "json"]);
        if seen.as_deref().is_ok_and(|json| json.contains("net2")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controller {leader} did not catch up: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fleet.networks(&[cut]), ["net1", "net2"]);
    for daemon in fleet.controllers.iter().flatten() {
        assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
    }
}
