//! For the privileged zone tests: a [`TestHost`] with its own data dir and
//! cgroup parent and the busybox image, running commands in zones through the
//! real `zonefleet-agent` binary, and cleanup of every zone, process and cgroup
//! when the host is dropped (also after a failed assertion).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use zonefleet_agent::cgroup::detect::detect;
use zonefleet_agent::zone::host::{HostOptions, ZoneHost};
use zonefleet_agent::zone::{ZoneState, ZoneStatus};
use zonefleet_proto::spec::ZoneSpec;

use super::{busybox_archive, cgroup, privileged, unique_parent, AGENT};

/// One test's host: its own data dir and cgroup parent; dropping it deletes
/// every zone and removes the parent cgroup.
pub struct TestHost {
    /// The zone library under test.
    pub host: ZoneHost,
    /// The image zones are made of unless their spec names one.
    pub image: Image,
    /// The data dir (inside `_dir`).
    pub data: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestHost {
    /// A fresh host with the busybox image imported as `busybox`; `None` when
    /// the test must skip (not root, outside CI).
    pub fn new(test: &str) -> Option<TestHost> {
        Self::with_image(test, Image::Busybox)
    }

    /// A fresh host whose zones are of `image` by default (busybox is always
    /// imported; Debian is built or taken from the cache and imported).
    pub fn with_image(test: &str, image: Image) -> Option<TestHost> {
        if !privileged(test) {
            return None;
        }
        sweep_stale_cgroups();
        let dir = tempfile::Builder::new()
            .prefix("zonefleet-ztest-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let host = open_host(&data, Duration::from_secs(5), |_| {});
        if image == Image::Debian {
            super::debian::import(&host);
        }
        Some(TestHost {
            host,
            image,
            data,
            _dir: dir,
        })
    }

    /// Creates a zone from JSON (an object of spec properties; `image`
    /// defaults to busybox and small limits are filled in).
    pub fn create(&self, json: &str) -> ZoneStatus {
        self.try_create(json).expect("create zone")
    }

    /// Like [`create`](Self::create), returning the error.
    pub fn try_create(&self, json: &str) -> Result<ZoneStatus, zonefleet_agent::zone::ZoneError> {
        let mut value: serde_json::Value = serde_json::from_str(json).expect("test spec is JSON");
        let obj = value.as_object_mut().expect("test spec is an object");
        if self.image == Image::BusyboxHostRoot {
            obj.entry("user_namespace")
                .or_insert(serde_json::json!(false));
        }
        for (k, v) in [
            ("image", serde_json::json!(self.image.name())),
            (
                "max_physical_memory",
                serde_json::json!(self.image.memory_mib()),
            ),
            ("quota", serde_json::json!(1)),
            ("tmpfs", serde_json::json!(16)),
        ] {
            obj.entry(k).or_insert(v);
        }
        let spec = ZoneSpec::from_json(&value.to_string()).expect("test spec parses");
        self.host.create(spec)
    }

    /// Creates and boots a zone; a zone of the Debian image with the default
    /// init and privileges once systemd has finished booting (so probes do not
    /// race its start-up; with a narrower `limit_priv` some services never
    /// start, and systemd may stay `starting`).
    pub fn running(&self, json: &str) -> ZoneStatus {
        let zone = self.create(json);
        let status = self.host.boot(&zone.uuid).expect("boot zone");
        assert_eq!(status.state, ZoneState::Running);
        let spec: serde_json::Value = serde_json::from_str(json).expect("test spec is JSON");
        let defaults = spec.get("init").is_none() && spec.get("limit_priv").is_none();
        if self.image == Image::Debian && defaults {
            self.wait_booted(&zone.uuid);
        }
        status
    }

    /// Waits (at most 90 s) until systemd in `zone` says `running` or
    /// `degraded`; returns which.
    pub fn wait_booted(&self, zone: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, out, _) = self.sh(zone, "systemctl is-system-running");
            let state = out.trim().to_string();
            if state == "running" || state == "degraded" {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "systemd in {zone} is still {state:?} after 90 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `zonefleet-agent` command with this host's data dir.
    pub fn agent(&self) -> Command {
        let mut cmd = Command::new(AGENT);
        cmd.arg("--data-dir").arg(&self.data);
        cmd
    }

    /// Runs `sh -c script` in the zone through `zonefleet-agent zone exec`,
    /// bounded in time. Returns (exit status, stdout, stderr).
    pub fn sh(&self, zone: &str, script: &str) -> (i32, String, String) {
        let child = self
            .agent()
            .args(["zone", "exec", zone, "--", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zone exec");
        let out = wait_output(child, Duration::from_secs(60));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The cgroup v1 directory of a zone for `controller`.
    pub fn cgroup_dir(&self, controller: &str, uuid: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup")
            .join(controller)
            .join(&self.host.cgroup_parent)
            .join(uuid)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Ok(zones) = self.host.list() {
            for z in zones {
                if let Err(e) = self.host.delete(&z.uuid) {
                    eprintln!("cleanup: delete zone {}: {e}", z.uuid);
                }
            }
        }
        let _ = self.host.cgroups.sweep(&|_| false, Duration::from_secs(10));
        let _ = self.host.cgroups.delete_parent();
    }
}

/// The images a [`TestHost`] makes zones of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The busybox image (a shell loop as init).
    Busybox,
    /// The busybox image in zones without a user namespace
    /// (`user_namespace: false`: the zone's root is the host's, bounded by
    /// `limit_priv`, seccomp and the namespaces).
    BusyboxHostRoot,
    /// A stock Debian 12 made with debootstrap (systemd as init).
    Debian,
}

impl Image {
    /// Its name in the test host's store.
    pub fn name(self) -> &'static str {
        match self {
            Image::Busybox | Image::BusyboxHostRoot => "busybox",
            Image::Debian => super::debian::IMAGE,
        }
    }

    /// Whether it is the busybox image.
    pub fn is_busybox(self) -> bool {
        matches!(self, Image::Busybox | Image::BusyboxHostRoot)
    }

    /// The memory its zones get by default, MiB.
    pub fn memory_mib(self) -> u64 {
        match self {
            Image::Busybox | Image::BusyboxHostRoot => 64,
            Image::Debian => 256,
        }
    }
}

/// Waits for a child at most `limit`, killing it if it overstays.
pub fn wait_output(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "command still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Opens a zone host on `data` with a cgroup parent of its own, the agent binary
/// as zsched, `halt_grace`, whatever `adjust` sets, and busybox imported as
/// `busybox@1`.
pub fn open_host(
    data: &Path,
    halt_grace: Duration,
    adjust: impl FnOnce(&mut HostOptions),
) -> ZoneHost {
    let mut options = HostOptions::new(data);
    options.cgroup_parent = Some(unique_parent());
    // Test hosts run side by side on one machine: each hands out id ranges
    // from a block of its own (collisions are unlikely and change no outcome).
    let block = (std::process::id()
        .wrapping_mul(31)
        .wrapping_add(super::next()))
        % 4000;
    options.first_id = zonefleet_agent::zone::idmap::FIRST_BASE
        + block * 8 * zonefleet_agent::zone::idmap::RANGE_SIZE;
    options.agent_exe = Some(PathBuf::from(AGENT));
    options.halt_grace = halt_grace;
    adjust(&mut options);
    let host = ZoneHost::open(options).expect("open zone host");
    host.images
        .import(
            busybox_archive(),
            zonefleet_agent::image::ImportOptions {
                name: Some("busybox".into()),
                version: Some("1".into()),
                ..Default::default()
            },
        )
        .expect("import busybox");
    host
}

/// Removes test cgroup parents left by runs whose process is gone (their zone
/// processes die with them, and with those the zones' mounts and loop devices).
pub fn sweep_stale_cgroups() {
    let Ok(layout) = detect() else { return };
    let mounts: Vec<PathBuf> = layout
        .v1
        .iter()
        .chain(&layout.systemd)
        .map(|h| h.mount.clone())
        .chain(layout.unified.clone())
        .collect();
    cgroup::sweep_stale(&mounts, &|parent| {
        zonefleet_agent::cgroup::create_manager(&layout, parent).expect("cgroup manager")
    });
}
