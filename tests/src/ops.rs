//! What the host-loss and chaos suites do to a [`Fleet`] and read of it, through
//! `zfadm` and the hosts themselves: hosts by id, zones created and placed, a host cut
//! from every controller with nftables in its namespace.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::process::run_in;

/// Waits up to `within` for `check` (polled every 50 ms), failing with `what`; how long
/// it took.
pub fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

impl Fleet {
    /// Agent `i`'s host id (from its data dir).
    pub fn host_id(&self, i: usize) -> String {
        std::fs::read_to_string(self.agents[i].data_dir().join("host_id"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// `zfadm host list`, by host id.
    pub fn hosts_by_id(&self) -> BTreeMap<String, Value> {
        self.zfadm_json(&self.all(), &["host", "list"])
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h["host_id"].as_str().unwrap_or_default().to_owned(), h))
            .collect()
    }

    /// Host `id`'s status as the controllers list it ("" when not listed).
    pub fn host_status(&self, id: &str) -> String {
        self.hosts_by_id()
            .get(id)
            .and_then(|h| h["status"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// Creates a small busybox zone `alias` (init a shell loop) with `on_host_lost`;
    /// its uuid.
    pub fn create_zone(&self, alias: &str, on_host_lost: &str) -> String {
        let spec = json!({"alias": alias, "image": "busybox", "max_physical_memory": 32,
            "quota": 1, "on_host_lost": on_host_lost,
            "init": ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]});
        self.create_zones(&spec, 1).remove(0)
    }

    /// `zfadm zone create` of `count` zones from `spec` (written to a file named by its
    /// alias); their uuids.
    pub fn create_zones(&self, spec: &Value, count: u32) -> Vec<String> {
        let alias = spec["alias"].as_str().unwrap_or("zone");
        let file = self.dir().join(format!("{alias}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let count = count.to_string();
        let path = file.to_str().unwrap_or_default();
        let out = self
            .zfadm(
                &self.all(),
                &[
                    "zone", "create", "-f", path, "--count", &count, "-o", "json",
                ],
            )
            .unwrap_or_else(|e| panic!("zone create {spec}: {e}"));
        let created: Value = serde_json::from_str(&out).unwrap();
        let zones = created.as_array().cloned().unwrap_or_else(|| vec![created]);
        zones
            .iter()
            .map(|z| z["uuid"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until `check` holds of the zone list (by alias), or fails after `within`
    /// showing the last one; that list.
    pub fn zones_until(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.zones(&self.all());
            if check(&seen) {
                return seen;
            }
            assert!(Instant::now() < deadline, "{what}: {seen:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every agent's host id, by agent index.
    pub fn host_ids(&self) -> Vec<String> {
        (0..self.agents.len()).map(|i| self.host_id(i)).collect()
    }

    /// Where the controllers say every zone is, by uuid: (host id, whether it runs
    /// there and has landed — not moving off another host).
    pub fn placements(&self) -> BTreeMap<String, (String, bool)> {
        self.zones(&self.all())
            .into_values()
            .map(|z| {
                let landed = z["leaving_host_id"].as_str().unwrap_or("").is_empty();
                (
                    z["uuid"].as_str().unwrap_or_default().to_owned(),
                    (
                        z["host_id"].as_str().unwrap_or_default().to_owned(),
                        z["observed_state"] == "running" && landed,
                    ),
                )
            })
            .collect()
    }

    /// [`Fleet::placements`] of one zone.
    pub fn placement(&self, zone: &str) -> (String, bool) {
        self.placements()
            .remove(zone)
            .unwrap_or_else(|| panic!("no zone {zone}"))
    }

    /// init's pid of `zone` on agent `i`, from its CLI (absent when not running).
    pub fn init_pid(&self, i: usize, zone: &str) -> Option<i64> {
        self.agents[i]
            .local_zones()
            .into_iter()
            .find(|z| z["uuid"] == zone)
            .and_then(|z| z["init_pid"].as_i64())
    }

    /// Cuts (or, with `heal`, restores) agent `i`'s host from every controller: an
    /// nftables table in its namespace drops what goes to or comes from them.
    pub fn partition(&self, i: usize, heal: bool) {
        self.cut(i, heal, true)
    }

    /// Like [`Fleet::partition`], one way only: what agent `i`'s host sends to the
    /// controllers is dropped, what they send arrives.
    pub fn partition_outbound(&self, i: usize, heal: bool) {
        self.cut(i, heal, false)
    }

    fn cut(&self, i: usize, heal: bool, both_ways: bool) {
        let rules = if heal {
            "delete table inet zftest_partition\n".to_owned()
        } else {
            let set: Vec<String> = self.hosts.iter().map(|h| h.address().to_string()).collect();
            let set = set.join(", ");
            let inbound = if both_ways {
                format!(" chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n")
            } else {
                String::new()
            };
            format!(
                "table inet zftest_partition {{\n chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n{inbound}}}\n"
            )
        };
        let file = self.dir().join(format!("partition-{i}-{heal}.nft"));
        std::fs::write(&file, rules).unwrap();
        let mut nft = std::process::Command::new("nft");
        nft.arg("-f").arg(&file);
        let out = run_in(Some(&self.agents[i].host), nft, Duration::from_secs(10));
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Imports the busybox image as `busybox@1`.
    pub fn import_busybox(&self) {
        let archive = crate::busybox_archive();
        self.zfadm_json(
            &self.all(),
            &[
                "image",
                "import",
                archive.to_str().unwrap_or_default(),
                "--name",
                "busybox",
                "--version",
                "1",
            ],
        );
    }
}

/// A fleet of `controllers` controllers with the busybox image imported and one agent
/// per `(rack, fencing)` joined, every host `ready`; with the agents' host ids.
pub fn fleet_with_agents(controllers: usize, agents: &[(&str, bool)]) -> (Fleet, Vec<String>) {
    fleet_with_shares(controllers, agents, crate::fleet::DEFAULT_SHARE)
}

/// [`fleet_with_agents`], each agent offering zones `share`.
pub fn fleet_with_shares(
    controllers: usize,
    agents: &[(&str, bool)],
    share: crate::fleet::Share,
) -> (Fleet, Vec<String>) {
    let mut fleet = Fleet::start(controllers);
    fleet.leader(&fleet.all(), Duration::from_secs(30));
    fleet.import_busybox();
    for (rack, fencing) in agents {
        fleet
            .add_agent_with(rack, share, *fencing)
            .wait_ready(Duration::from_secs(30));
    }
    let ids: Vec<String> = (0..agents.len()).map(|i| fleet.host_id(i)).collect();
    eventually("every host ready", Duration::from_secs(30), || {
        let hosts = fleet.hosts_by_id();
        ids.iter()
            .all(|id| hosts.get(id).is_some_and(|h| h["status"] == "ready"))
    });
    (fleet, ids)
}
