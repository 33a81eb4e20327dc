//! `zone boot`: start an installed zone through its zsched. The zone's cgroup
//! is made here (limits applied and read back), then zsched forks init into the
//! zone's namespaces; boot returns once init has exec'd or a step failed, and a
//! failed boot leaves no cgroup behind.

use std::time::Duration;

use super::paths::ZonePaths;
use super::record::{LifecycleState, ZoneRecord};
use super::status::ZoneStatus;
use super::{limits, lock, Result, ZoneError, ZoneHost};
use crate::zsched::plan::{BootPlan, ZoneFile};
use crate::zsched::runtime::Runtime;

/// The environment of every zone's init.
pub const INIT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ZoneHost {
    /// Boots the zone `name`.
    pub fn boot(&self, name: &str) -> Result<ZoneStatus> {
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        let _lock = lock::exclusive(&paths.lock())?;
        let mut record = ZoneRecord::load(&paths)?;
        if record.state != LifecycleState::Installed {
            return Err(ZoneError::WrongState {
                uuid,
                state: format!("{:?}", record.state).to_lowercase(),
                verb: "boot",
            });
        }
        if Runtime::load(&paths.dir)?.is_some_and(|rt| rt.init_alive()) {
            return Err(ZoneError::WrongState {
                uuid,
                state: "running".into(),
                verb: "boot",
            });
        }
        self.check_features(&record.spec)?;
        let net = self.net_plan(&uuid, &record.spec)?;
        if net.is_some() {
            self.check_addresses(&uuid, &record.spec)?;
            crate::net::ensure_bridge(&self.bridge)?;
        }
        let lower = self.images.rootfs_path(&record.image_sha256)?;

        // A cgroup left by a crash (zsched killed before it cleaned up).
        if self.cgroups.exists(&uuid)? {
            self.cgroups.kill_all(&uuid, Duration::from_secs(5))?;
            self.cgroups.delete(&uuid)?;
        }
        self.cgroups
            .create(&uuid, &limits::from_spec(&record.spec))?;
        let owner = record
            .id_range
            .map_or((0, 0), |r| (r.host_base, r.host_base));
        let cgroup = match self.cgroups.delegate(&uuid, owner) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.cgroups.delete(&uuid);
                return Err(e.into());
            }
        };
        let image_machine_id = image_machine_id(&lower);
        let mut plan = self.boot_plan(&paths, &record, lower);
        plan.image_machine_id = image_machine_id;
        plan.net = net;
        plan.cgroup = cgroup;
        match crate::zsched::spawn(&self.agent_exe, &plan) {
            Ok(_) => {
                // The record is fsync'd: write it only when it changes.
                if !record.desired_running || record.message.is_some() {
                    record.desired_running = true;
                    record.message = None;
                    record.store(&paths)?;
                }
                ZoneStatus::observe(record, &paths)
            }
            Err(e) => {
                let _ = self.teardown_network(&paths);
                let _ = self.cgroups.kill_all(&uuid, Duration::from_secs(5));
                let _ = self.cgroups.delete(&uuid);
                record.message = Some(format!("boot failed: {e}"));
                record.store(&paths)?;
                Err(e.into())
            }
        }
    }

    fn boot_plan(
        &self,
        paths: &ZonePaths,
        record: &ZoneRecord,
        lower: std::path::PathBuf,
    ) -> BootPlan {
        let spec = &record.spec;
        let uuid = record.uuid();
        let hostname = spec
            .hostname
            .clone()
            .or_else(|| spec.alias.clone())
            .unwrap_or_else(|| uuid.clone());
        BootPlan {
            uuid: uuid.clone(),
            zone_dir: paths.dir.clone(),
            disk_image: crate::disk::image_path(&paths.dir),
            disk_mount: paths.disk_mount(),
            lower,
            root: paths.root(),
            hostname: hostname.clone(),
            tmpfs_mib: u64::from(spec.tmpfs.expect("defaults set tmpfs")),
            zonecontrol: paths.zonecontrol(),
            init: spec.init.clone().expect("defaults set init"),
            env: vec![
                ("PATH".into(), INIT_PATH.into()),
                ("HOME".into(), "/root".into()),
                ("TERM".into(), "xterm".into()),
                // What systemd and systemd-detect-virt read to know they run in a
                // container, and the uuid it may take its machine id from.
                ("container".into(), "zonefleet".into()),
                ("container_uuid".into(), uuid.clone()),
                ("ZONENAME".into(), uuid),
            ],
            limit_priv: spec
                .limit_priv
                .as_ref()
                .expect("defaults set limit_priv")
                .iter()
                .map(|c| c.to_string())
                .collect(),
            console_cap_bytes: self.console_cap_bytes,
            cgroup_parent: self.cgroup_parent.clone(),
            files: config_files(spec, &hostname),
            net: None,
            fence: self.fence.clone().filter(|_| {
                spec.on_host_lost == Some(zonefleet_proto::spec::OnHostLost::Reschedule)
            }),
            userns: record.id_range,
            cgroup: crate::cgroup::Delegation::None,
            image_machine_id: None,
        }
    }
}

/// The image's `/etc/machine-id`, read without following a symlink the image
/// may hold (it points into the host here, not into a zone).
fn image_machine_id(lower: &std::path::Path) -> Option<String> {
    let etc = lower.join("etc");
    let file = etc.join("machine-id");
    let plain = |p: &std::path::Path| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_symlink());
    if !(plain(&etc) && plain(&file)) {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let id = text.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` of a zone.
fn config_files(spec: &zonefleet_proto::spec::ZoneSpec, hostname: &str) -> Vec<ZoneFile> {
    let fqdn = match &spec.dns_domain {
        Some(domain) => format!("{hostname}.{domain} {hostname}"),
        None => hostname.to_string(),
    };
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let addresses: Vec<String> = spec
        .nics
        .iter()
        .filter_map(|n| n.ip.map(|ip| ip.addr().to_string()))
        .collect();
    if addresses.is_empty() {
        hosts.push_str(&format!("127.0.1.1\t{fqdn}\n"));
    }
    for addr in addresses {
        hosts.push_str(&format!("{addr}\t{fqdn}\n"));
    }
    let mut resolv =
        String::from("# written by zonefleet from the zone's resolvers and dns_domain\n");
    if let Some(domain) = &spec.dns_domain {
        resolv.push_str(&format!("search {domain}\n"));
    }
    for r in &spec.resolvers {
        resolv.push_str(&format!("nameserver {r}\n"));
    }
    vec![
        ZoneFile {
            path: "/etc/hostname".into(),
            contents: format!("{hostname}\n"),
        },
        ZoneFile {
            path: "/etc/hosts".into(),
            contents: hosts,
        },
        ZoneFile {
            path: "/etc/resolv.conf".into(),
            contents: resolv,
        },
    ]
}
