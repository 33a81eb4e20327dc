//! For the privileged zone-network tests: a [`NetLab`] (a test host with a
//! bridge of its own, and its zones) that cleans up on drop, `zone exec` through
//! the agent binary, and the host's links and nft ruleset.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zonefleet_agent::net::{self, netlink::Netlink, BridgeOptions};
use zonefleet_agent::zone::host::ZoneHost;
use zonefleet_proto::spec::ZoneSpec;

use super::host::open_host;
use super::{next, AGENT};

/// True when this test may run (root, nft); otherwise [`super::skip`].
pub fn privileged(test: &str) -> bool {
    super::privileged(test)
        && super::require(
            test,
            "the nft command (Debian package nftables)",
            net::nft::binary().is_some(),
        )
}

/// Removes test bridges (`zft<pid>n<k>`) of test processes that are gone,
/// with their host rules.
pub fn sweep_stale_bridges() {
    for name in super::stale_entries(Path::new("/sys/class/net"), "zft", 'n') {
        let r = net::remove_bridge(&name);
        eprintln!("swept stale bridge {name}: {r:?}");
    }
}

/// One test's world: a data dir, a bridge of its own, a cgroup parent of its
/// own, the busybox image, and every zone it made. Dropping it deletes the
/// zones, the bridge and its rules.
pub struct NetLab {
    /// The zone library on the lab's data dir.
    pub host: ZoneHost,
    /// The data dir.
    pub dir: tempfile::TempDir,
    /// The bridge's name.
    pub bridge: String,
    zones: Vec<String>,
}

impl NetLab {
    /// A new lab.
    pub fn new() -> NetLab {
        sweep_stale_bridges();
        let dir = tempfile::tempdir().expect("tempdir");
        let pid = std::process::id();
        let n = next();
        let bridge = format!("zft{pid}n{n}");
        assert!(bridge.len() <= 15, "{bridge} is too long for an ifname");
        let host = open_host(dir.path(), Duration::from_millis(200), |options| {
            options.bridge = BridgeOptions {
                name: bridge.clone(),
                uplink: None,
            };
        });
        NetLab {
            host,
            dir,
            bridge,
            zones: Vec::new(),
        }
    }

    /// Creates and boots a zone from a JSON spec (image busybox unless named).
    pub fn zone(&mut self, json: serde_json::Value) -> String {
        let uuid = self.create(json).expect("create zone");
        self.host.boot(&uuid).expect("boot zone");
        uuid
    }

    /// Creates a zone (not booted; image busybox unless the spec names one);
    /// the lab deletes it at the end.
    pub fn create(&mut self, mut json: serde_json::Value) -> zonefleet_agent::zone::Result<String> {
        if json.get("image").is_none() {
            json["image"] = "busybox".into();
        }
        let spec = ZoneSpec::from_json(&json.to_string()).expect("spec parses");
        let status = self.host.create(spec)?;
        self.zones.push(status.uuid.clone());
        Ok(status.uuid)
    }

    /// Deletes a zone now.
    pub fn delete(&mut self, uuid: &str) {
        self.host.delete(uuid).expect("delete zone");
        self.zones.retain(|z| z != uuid);
    }

    /// Runs `cmd` in zone `uuid` through the agent binary, within `limit`;
    /// returns (exit code, stdout + stderr).
    pub fn exec(&self, uuid: &str, cmd: &str, limit: Duration) -> (i32, String) {
        let out = tempfile::NamedTempFile::new().expect("tempfile");
        let mut child = Command::new(AGENT)
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--cgroup-parent")
            .arg(&self.host.cgroup_parent)
            .args([
                "--bridge",
                &self.bridge,
                "zone",
                "exec",
                uuid,
                "--",
                "sh",
                "-c",
                cmd,
            ])
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("reopen"))
            .stderr(out.reopen().expect("reopen"))
            .spawn()
            .expect("spawn zone exec");
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -9;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (
            code,
            std::fs::read_to_string(out.path()).unwrap_or_default(),
        )
    }

    /// Adds `ip` (address/prefix) to the lab's bridge (made at first boot).
    pub fn bridge_address(&self, ip: &str) {
        let mut nl = Netlink::open().expect("netlink");
        let index = nl
            .link_index(&self.bridge)
            .expect("look up bridge")
            .expect("bridge exists");
        nl.add_address(index, ip.parse().expect("address"))
            .expect("add address to bridge");
    }
}

impl Default for NetLab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for uuid in std::mem::take(&mut self.zones) {
            if let Err(e) = self.host.delete(&uuid) {
                eprintln!("cleanup: delete zone {uuid}: {e}");
            }
        }
        if let Err(e) = net::remove_bridge(&self.bridge) {
            eprintln!("cleanup: remove bridge {}: {e}", self.bridge);
        }
        let _ = self.host.cgroups.delete_parent();
    }
}

/// Names of links in the host's namespace.
pub fn host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `nft list ruleset`.
pub fn ruleset() -> String {
    let out = Command::new(net::nft::binary().expect("nft"))
        .args(["list", "ruleset"])
        .output()
        .expect("nft list ruleset");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
