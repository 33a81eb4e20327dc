//! Shared helpers of the privileged zone-network tests: the root check, unique
//! names, the busybox image, a [`NetLab`] (data dir, bridge, cgroup parent and
//! its zones) that cleans up on drop, and `zone exec` through the agent binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use zonefleet_agent::image::ImportOptions;
use zonefleet_agent::net::{self, netlink::Netlink, BridgeOptions};
use zonefleet_agent::zone::host::{HostOptions, ZoneHost};
use zonefleet_proto::spec::ZoneSpec;

/// The agent binary (zsched and `zone exec`).
pub const AGENT: &str = env!("CARGO_BIN_EXE_zonefleet-agent");

/// True when this test may run (root, nft). Otherwise fails under CI
/// (`CI=true`) and prints why it skips elsewhere.
pub fn privileged(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("needs root".to_string())
    } else if net::nft::binary().is_none() {
        Some("needs the nft command (Debian package nftables)".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: privileged test cannot run under CI: {why}")
        }
        Some(why) => {
            eprintln!("{test}: skipped: {why}");
            false
        }
    }
}

static N: AtomicU32 = AtomicU32::new(0);

/// A number unique in this process.
pub fn next() -> u32 {
    N.fetch_add(1, Ordering::Relaxed)
}

/// The busybox image archive, built once per test process.
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ARCHIVE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = dir.path().join("busybox.tar.gz");
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-busybox.sh");
            let status = Command::new("sh")
                .arg(script)
                .arg(&out)
                .status()
                .expect("run build-busybox.sh");
            assert!(status.success(), "build-busybox.sh failed");
            (dir, out)
        })
        .1
}

/// Removes test bridges (`zft<pid>n<k>`) of test processes that are gone,
/// with their host rules.
pub fn sweep_stale_bridges() {
    let Ok(rd) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("zft") else {
            continue;
        };
        let pid = rest.split('n').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let r = net::remove_bridge(&name);
            eprintln!("swept stale bridge {name}: {r:?}");
        }
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
        let mut options = HostOptions::new(dir.path());
        options.cgroup_parent = Some(format!("zonefleet-test-{pid}-{n}"));
        options.agent_exe = Some(PathBuf::from(AGENT));
        options.halt_grace = Duration::from_millis(200);
        options.bridge = BridgeOptions {
            name: bridge.clone(),
            uplink: None,
        };
        let host = ZoneHost::open(options).expect("open zone host");
        host.images
            .import(
                busybox_archive(),
                ImportOptions {
                    name: Some("busybox".into()),
                    version: Some("1".into()),
                    ..Default::default()
                },
            )
            .expect("import busybox");
        NetLab {
            host,
            dir,
            bridge,
            zones: Vec::new(),
        }
    }

    /// Creates and boots a zone from a JSON spec (image busybox is added).
    pub fn zone(&mut self, json: serde_json::Value) -> String {
        let uuid = self.create(json).expect("create zone");
        self.host.boot(&uuid).expect("boot zone");
        uuid
    }

    /// Creates a zone (not booted); the lab deletes it at the end.
    pub fn create(&mut self, mut json: serde_json::Value) -> zonefleet_agent::zone::Result<String> {
        json["image"] = "busybox".into();
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
