//! What an agent reports about its machine: sysinfo (kernel features, cgroup
//! layout) and capacity.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::pb;
use crate::spec::check;
use crate::spec::convert::{enum_to_pb, required_enum_from_pb, EnumEntry};
use crate::spec::text::{self, Text};
use crate::spec::{Problems, SpecError, ValidationErrors, MAX_CPUS};

/// Which cgroup layout a host runs; both are first-class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Separate hierarchies per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    /// `v1` or `v2`, as in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    }
}

const CGROUP_VERSIONS: &[EnumEntry<CgroupVersion>] = &[
    (pb::CgroupVersion::V1 as i32, "v1", CgroupVersion::V1),
    (pb::CgroupVersion::V2 as i32, "v2", CgroupVersion::V2),
];

/// A kernel feature isolation may need, and whether this host has it. A zone that
/// needs a missing feature is refused rather than run weaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The feature's name, one of [`crate::feature::ALL`].
    pub name: String,
    /// Whether the host has it.
    pub available: bool,
    /// Why it is missing, or how it was detected.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What an agent reports about its machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSysinfo {
    /// The host's identity, stable across reboots.
    #[serde(with = "text::one")]
    pub host_id: Uuid,
    /// The host's hostname (a DNS name).
    pub hostname: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The cgroup layout.
    pub cgroup_version: CgroupVersion,
    /// The cgroup controllers available to zones (`memory`, `cpu`, `pids`, `io`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_controllers: Vec<String>,
    /// Kernel features, present or missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// The agent's version.
    pub agent_version: String,
    /// Where the agent serves its `Agent` service (exec, logs), as operators dial it;
    /// `None` when it serves none (the standalone CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<SocketAddr>,
}

impl HostSysinfo {
    /// Whether the host reports `name` as available (a feature not reported is missing).
    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name && f.available)
    }

    /// Checks the hostname and CPU count, naming each problem.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut p = Problems::default();
        p.check("hostname", check::dns_name(&self.hostname));
        p.check("cpus", check::range(self.cpus, 1, MAX_CPUS, "CPUs"));
        p.finish()
    }
}

/// A host's resources for zones, and what its zones already hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Memory for zones, MiB.
    pub memory_mib: u64,
    /// CPU for zones, percent of one CPU (100 = one CPU).
    pub cpu_percent: u32,
    /// Disk for zones' writable layers, GiB.
    pub disk_gib: u64,
    /// Memory held by zones, MiB.
    pub allocated_memory_mib: u64,
    /// CPU held by zones, percent of one CPU.
    pub allocated_cpu_percent: u32,
    /// Disk held by zones, GiB.
    pub allocated_disk_gib: u64,
}

impl Capacity {
    /// Memory not yet held, MiB (0 when overcommitted).
    pub fn free_memory_mib(&self) -> u64 {
        self.memory_mib.saturating_sub(self.allocated_memory_mib)
    }

    /// CPU not yet held, percent of one CPU (0 when overcommitted).
    pub fn free_cpu_percent(&self) -> u32 {
        self.cpu_percent.saturating_sub(self.allocated_cpu_percent)
    }

    /// Disk not yet held, GiB (0 when overcommitted).
    pub fn free_disk_gib(&self) -> u64 {
        self.disk_gib.saturating_sub(self.allocated_disk_gib)
    }
}

impl From<Feature> for pb::Feature {
    fn from(f: Feature) -> Self {
        pb::Feature {
            name: f.name,
            available: f.available,
            detail: f.detail,
        }
    }
}

impl From<pb::Feature> for Feature {
    fn from(f: pb::Feature) -> Self {
        Feature {
            name: f.name,
            available: f.available,
            detail: f.detail,
        }
    }
}

impl From<HostSysinfo> for pb::HostSysinfo {
    fn from(s: HostSysinfo) -> Self {
        pb::HostSysinfo {
            host_id: s.host_id.to_text(),
            hostname: s.hostname,
            cpus: s.cpus,
            memory_mib: s.memory_mib,
            kernel: s.kernel,
            cgroup_version: enum_to_pb(Some(s.cgroup_version), CGROUP_VERSIONS),
            cgroup_controllers: s.cgroup_controllers,
            features: s.features.into_iter().map(Into::into).collect(),
            agent_version: s.agent_version,
            agent_address: s.agent_address.map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::HostSysinfo> for HostSysinfo {
    type Error = SpecError;

    fn try_from(m: pb::HostSysinfo) -> Result<Self, SpecError> {
        let mut p = Problems::default();
        let host_id = p.take("host_id", Uuid::parse_text(&m.host_id));
        let cgroup_version = p.take(
            "cgroup_version",
            required_enum_from_pb(m.cgroup_version, CGROUP_VERSIONS),
        );
        let agent_address = p.take("agent_address", agent_address_from_pb(&m.agent_address));
        p.finish()?;
        let (Some(host_id), Some(cgroup_version)) = (host_id, cgroup_version) else {
            unreachable!("no problem means every field parsed");
        };
        Ok(HostSysinfo {
            host_id,
            hostname: m.hostname,
            cpus: m.cpus,
            memory_mib: m.memory_mib,
            kernel: m.kernel,
            cgroup_version,
            cgroup_controllers: m.cgroup_controllers,
            features: m.features.into_iter().map(Into::into).collect(),
            agent_version: m.agent_version,
            agent_address: agent_address.flatten(),
        })
    }
}

/// An agent address on the wire: empty (none), or `IP:PORT` with a port and an IP
/// an operator can dial (not unspecified, `0.0.0.0` or `::`).
fn agent_address_from_pb(text: &str) -> Result<Option<SocketAddr>, crate::spec::ValueError> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        crate::spec::ValueError::string(text, why, "IP:PORT (an IPv6 address in brackets)")
    };
    let addr: SocketAddr = text.parse().map_err(|_| bad("is not an address"))?;
    if addr.port() == 0 {
        return Err(bad("has no port"));
    }
    if addr.ip().is_unspecified() {
        return Err(bad("is the unspecified address, which no one can dial"));
    }
    Ok(Some(addr))
}

impl From<Capacity> for pb::Capacity {
    fn from(c: Capacity) -> Self {
        pb::Capacity {
            memory_mib: c.memory_mib,
            cpu_percent: c.cpu_percent,
            disk_gib: c.disk_gib,
            allocated_memory_mib: c.allocated_memory_mib,
            allocated_cpu_percent: c.allocated_cpu_percent,
            allocated_disk_gib: c.allocated_disk_gib,
        }
    }
}

impl From<pb::Capacity> for Capacity {
    fn from(c: pb::Capacity) -> Self {
        Capacity {
            memory_mib: c.memory_mib,
            cpu_percent: c.cpu_percent,
            disk_gib: c.disk_gib,
            allocated_memory_mib: c.allocated_memory_mib,
            allocated_cpu_percent: c.allocated_cpu_percent,
            allocated_disk_gib: c.allocated_disk_gib,
        }
    }
}

/// Checks a host id as the controllers key hosts by it: a label word (see
/// [`validate_inventory`]). An agent's host id is a UUID, fixed by its certificate;
/// the controllers also accept the shorter ids operators and tests give hosts.
pub fn check_host_id(id: &str) -> Result<(), crate::spec::ValueError> {
    check::label_word(id)
}

/// Checks a change to a host's controller-side inventory (what an operator sets with
/// `zfadm host label` or a join token carries): the rack and every label key and value
/// are label words, and `rack` is not a label (it has its own field). The operator API
/// and the state machine both call this, so a command that skipped the API is refused
/// the same way at apply.
pub fn validate_inventory<'a>(
    rack: Option<&str>,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    remove_labels: impl IntoIterator<Item = &'a String>,
) -> Result<(), ValidationErrors> {
    let mut p = Problems::default();
    if let Some(rack) = rack {
        p.check("rack", check::label_word(rack));
    }
    for (key, value) in labels {
        p.check(format!("labels.{key}"), check::label_word(key));
        p.check(format!("labels.{key}"), check::label_word(value));
        if key == "rack" {
            p.push(
                "labels.rack",
                crate::spec::ValueError::string(
                    key,
                    "is the host's rack, not a label",
                    "set it with rack",
                ),
            );
        }
    }
    for key in remove_labels {
        p.check("remove_labels", check::label_word(key));
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysinfo() -> HostSysinfo {
        HostSysinfo {
            host_id: "3c9d2b1a-7e6f-4a5b-8c9d-0e1f2a3b4c5d".parse().unwrap(),
            hostname: "node-7.rack1.example.net".into(),
            cpus: 16,
            memory_mib: 65536,
            kernel: "6.1.0-18-amd64".into(),
            cgroup_version: CgroupVersion::V1,
            cgroup_controllers: vec!["memory".into(), "cpu".into(), "pids".into(), "blkio".into()],
            features: vec![
                Feature {
                    name: "seccomp".into(),
                    available: true,
                    detail: String::new(),
                },
                Feature {
                    name: "user_namespaces".into(),
                    available: false,
                    detail: "sysctl user.max_user_namespaces=0".into(),
                },
            ],
            agent_version: "0.1.0".into(),
            agent_address: Some("10.0.0.7:7444".parse().unwrap()),
        }
    }

    #[test]
    fn sysinfo_round_trips() {
        let s = sysinfo();
        s.validate().unwrap();
        assert!(
            s.has_feature("seccomp") && !s.has_feature("user_namespaces") && !s.has_feature("bpf")
        );
        assert_eq!(
            HostSysinfo::try_from(pb::HostSysinfo::from(s.clone())).unwrap(),
            s
        );
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"cgroup_version\":\"v1\""), "{json}");
        assert_eq!(serde_json::from_str::<HostSysinfo>(&json).unwrap(), s);
    }

    #[test]
    fn sysinfo_problems() {
        let mut s = sysinfo();
        s.hostname = "node 7".into();
        s.cpus = 0;
        assert_eq!(
            s.validate().unwrap_err().messages(),
            [
                "hostname: \"node 7\" is not a DNS name; allowed DNS labels (letters, digits and '-') joined by '.', at most 253 characters",
                "cpus: 0 is out of range; allowed 1..=8192 (CPUs)",
            ]
        );
        let bad = pb::HostSysinfo {
            host_id: "nope".into(),
            cgroup_version: 7,
            ..pb::HostSysinfo::default()
        };
        assert_eq!(
            HostSysinfo::try_from(bad).unwrap_err().to_string(),
            "host_id: \"nope\" is not a UUID; allowed 32 hex digits as 8-4-4-4-12\ncgroup_version: 7 is not a known value; allowed 1 (v1), 2 (v2)"
        );
        for (bad, why) in [
            ("nope", "is not an address"),
            ("10.0.0.1:0", "has no port"),
            ("0.0.0.0:7444", "unspecified"),
            ("[::]:7444", "unspecified"),
        ] {
            let m = pb::HostSysinfo {
                agent_address: bad.into(),
                ..pb::HostSysinfo::from(sysinfo())
            };
            let err = HostSysinfo::try_from(m).unwrap_err().to_string();
            assert!(
                err.starts_with("agent_address: ") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let none = pb::HostSysinfo {
            agent_address: String::new(),
            ..pb::HostSysinfo::from(sysinfo())
        };
        assert_eq!(HostSysinfo::try_from(none).unwrap().agent_address, None);
        let unset = pb::HostSysinfo {
            host_id: "3c9d2b1a-7e6f-4a5b-8c9d-0e1f2a3b4c5d".into(),
            ..pb::HostSysinfo::default()
        };
        assert_eq!(
            HostSysinfo::try_from(unset).unwrap_err().to_string(),
            "cgroup_version: 0 is unspecified; allowed 1 (v1), 2 (v2)"
        );
    }

    #[test]
    fn capacity() {
        let c = Capacity {
            memory_mib: 1000,
            cpu_percent: 400,
            disk_gib: 50,
            allocated_memory_mib: 1200,
            allocated_cpu_percent: 100,
            allocated_disk_gib: 10,
        };
        assert_eq!(
            (c.free_memory_mib(), c.free_cpu_percent(), c.free_disk_gib()),
            (0, 300, 40)
        );
        assert_eq!(Capacity::from(pb::Capacity::from(c)), c);
    }
}
