//! Which cgroup hierarchies this host has mounted, from
//! `/proc/self/mountinfo`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Only v1 hierarchies (one per controller or group of controllers).
    V1,
    /// Only the unified v2 hierarchy.
    V2,
    /// v1 controller hierarchies plus a v2 mount (systemd's "hybrid").
    Hybrid,
    /// No cgroup filesystem mounted at all.
    None,
}

impl CgroupVersion {
    /// "v1", "v2", "hybrid" or "none".
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
            CgroupVersion::Hybrid => "hybrid",
            CgroupVersion::None => "none",
        }
    }
}

/// The cgroup mounts found in a mountinfo table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// v1 controller → its hierarchy's mount point (named hierarchies such as
    /// `name=systemd` carry no controller and are left out).
    pub v1: BTreeMap<String, PathBuf>,
    /// The (first) cgroup2 mount point.
    pub v2: Option<PathBuf>,
}

impl CgroupMounts {
    /// Reads `/proc/self/mountinfo`.
    pub fn read() -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    /// Parses a mountinfo table (proc(5)).
    pub fn parse(mountinfo: &str) -> Self {
        let mut found = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (fstype, _source, options) = (right.next(), right.next(), right.next());
            match fstype {
                Some("cgroup") => {
                    for opt in options.unwrap_or("").split(',') {
                        if matches!(opt, "rw" | "ro" | "")
                            || opt.starts_with("name=")
                            || opt.contains('=')
                            || opt.starts_with("no")
                            || opt == "xattr"
                            || opt == "clone_children"
                            || opt == "cpuset_v2_mode"
                        {
                            continue;
                        }
                        found
                            .v1
                            .entry(opt.to_string())
                            .or_insert_with(|| unescape(mount_point));
                    }
                }
                Some("cgroup2") if found.v2.is_none() => found.v2 = Some(unescape(mount_point)),
                _ => {}
            }
        }
        found
    }

    /// The layout these mounts make.
    pub fn version(&self) -> CgroupVersion {
        match (!self.v1.is_empty(), self.v2.is_some()) {
            (true, true) => CgroupVersion::Hybrid,
            (true, false) => CgroupVersion::V1,
            (false, true) => CgroupVersion::V2,
            (false, false) => CgroupVersion::None,
        }
    }

    /// Controllers the v2 hierarchy offers (`cgroup.controllers` of its
    /// root), empty without a v2 mount.
    pub fn v2_controllers(&self) -> std::io::Result<Vec<String>> {
        match &self.v2 {
            None => Ok(Vec::new()),
            Some(root) => Ok(std::fs::read_to_string(root.join("cgroup.controllers"))?
                .split_whitespace()
                .map(str::to_string)
                .collect()),
        }
    }
}

/// Undoes mountinfo's octal escapes (shared with the cgroup layer's parser).
fn unescape(field: &str) -> PathBuf {
    PathBuf::from(crate::cgroup::detect::unescape(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn hybrid_layout_is_parsed() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let m = CgroupMounts::parse(mi);
        assert_eq!(m.version(), CgroupVersion::Hybrid);
        assert_eq!(
            m.v1.keys().collect::<Vec<_>>(),
            ["cpu", "cpuacct", "memory"]
        );
        assert_eq!(m.v1["cpu"], Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/uni fied")));
        let v2only = CgroupMounts::parse("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(v2only.version(), CgroupVersion::V2);
        assert_eq!(CgroupMounts::parse("").version(), CgroupVersion::None);
    }
}
