//! Which cgroup layout this host has: v1 (separate hierarchies), v2 (unified) or
//! hybrid (both mounted; the v1 hierarchies own the controllers), read from
//! `/proc/self/mountinfo` and `/proc/cgroups`. The one mountinfo parser of the
//! agent: the cgroup managers ([`super::factory`]) and the sysinfo probes read it.

use std::path::{Path, PathBuf};

use zonefleet_proto::host::CgroupVersion;

/// Why the layout could not be detected.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A `/proc` file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Neither a v1 hierarchy with controllers nor a cgroup2 mount was found.
    #[error("no cgroup mount with controllers in /proc/self/mountinfo")]
    NoCgroups,
}

/// The mount option naming systemd's v1 hierarchy.
pub const NAMED_SYSTEMD: &str = "name=systemd";

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The mount's root within the hierarchy (`/` unless a container bind-mounts a
    /// sub-cgroup); `/proc/<pid>/cgroup` paths start with it.
    pub root: String,
    /// Its controllers (`cpu`, `cpuacct` for a co-mount), sorted.
    pub controllers: Vec<String>,
}

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The v1 hierarchies that carry at least one enabled controller.
    pub v1: Vec<V1Hierarchy>,
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
    /// The controllers enabled in the kernel (`/proc/cgroups`), sorted.
    pub enabled: Vec<String>,
    /// systemd's named v1 hierarchy (`name=systemd`, no controller), if mounted:
    /// what a zone running systemd on a v1 host is given a subtree of.
    pub systemd: Option<V1Hierarchy>,
}

impl Layout {
    /// Reads this host's `/proc/self/mountinfo` and `/proc/cgroups`, whatever
    /// they hold (an empty layout on a host without cgroups; [`detect`] refuses
    /// that).
    pub fn read() -> Result<Self, DetectError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| DetectError::Read {
                path: PathBuf::from(p),
                source,
            })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        // A kernel built without v1 support may have no /proc/cgroups: then no
        // controller is v1-bound, which is what an empty text says.
        let cgroups = read("/proc/cgroups").unwrap_or_default();
        Ok(detect_from(&mountinfo, &cgroups))
    }

    /// The version zones are managed with: v1 when v1 hierarchies carry the
    /// controllers (a hybrid host too: its cgroup2 mount usually has none), else
    /// v2; `None` without any usable mount.
    pub fn version(&self) -> Option<CgroupVersion> {
        match (self.v1.is_empty(), self.unified.is_some()) {
            (false, _) => Some(CgroupVersion::V1),
            (true, true) => Some(CgroupVersion::V2),
            (true, false) => None,
        }
    }

    /// Whether a cgroup2 mount stands beside v1 hierarchies (systemd's
    /// "hybrid" layout).
    pub fn is_hybrid(&self) -> bool {
        !self.v1.is_empty() && self.unified.is_some()
    }

    /// Every v1 controller with its hierarchy's mount point, sorted by name.
    pub fn v1_controllers(&self) -> Vec<(&str, &Path)> {
        let mut all: Vec<(&str, &Path)> = self
            .v1
            .iter()
            .flat_map(|h| {
                h.controllers
                    .iter()
                    .map(|c| (c.as_str(), h.mount.as_path()))
            })
            .collect();
        all.sort();
        all
    }

    /// The controllers the cgroup2 root offers (its `cgroup.controllers`),
    /// empty without a cgroup2 mount.
    pub fn v2_controllers(&self) -> std::io::Result<Vec<String>> {
        match &self.unified {
            None => Ok(Vec::new()),
            Some(root) => Ok(std::fs::read_to_string(root.join("cgroup.controllers"))?
                .split_whitespace()
                .map(str::to_string)
                .collect()),
        }
    }

    /// The v1 hierarchy carrying `controller`.
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// Detects this host's layout; fails without any usable cgroup mount.
pub fn detect() -> Result<Layout, DetectError> {
    let layout = Layout::read()?;
    match layout.version() {
        Some(_) => Ok(layout),
        None => Err(DetectError::NoCgroups),
    }
}

/// The layout described by the texts of `/proc/self/mountinfo` and `/proc/cgroups`.
pub fn detect_from(mountinfo: &str, proc_cgroups: &str) -> Layout {
    let enabled: Vec<String> = {
        let mut v: Vec<String> = proc_cgroups
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[3] == "1").then(|| f[0].to_owned())
            })
            .collect();
        v.sort();
        v
    };
    let mut layout = Layout {
        enabled: enabled.clone(),
        ..Layout::default()
    };
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mount) = (unescape(pre[3]), PathBuf::from(unescape(pre[4])));
        match post[0] {
            "cgroup2" => {
                // The first cgroup2 mount wins; later ones are bind mounts.
                layout.unified.get_or_insert(mount);
            }
            "cgroup" => {
                let mut controllers: Vec<String> = post[2]
                    .split(',')
                    .filter(|o| enabled.iter().any(|e| e == o))
                    .map(str::to_owned)
                    .collect();
                controllers.sort();
                if post[2].split(',').any(|o| o == NAMED_SYSTEMD) && layout.systemd.is_none() {
                    layout.systemd = Some(V1Hierarchy {
                        mount: mount.clone(),
                        root: root.clone(),
                        controllers: vec![NAMED_SYSTEMD.to_owned()],
                    });
                }
                let dup = layout.v1.iter().any(|h| h.controllers == controllers);
                if !controllers.is_empty() && !dup {
                    layout.v1.push(V1Hierarchy {
                        mount,
                        root,
                        controllers,
                    });
                }
            }
            _ => {}
        }
    }
    layout
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\ncpu\t1\t1\t1\ncpuacct\t2\t1\t1\nblkio\t7\t1\t1\nmemory\t4\t43\t1\ndevices\t5\t1\t1\nfreezer\t6\t1\t1\nnet_cls\t0\t1\t1\npids\t8\t1\t1\n";

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_like_this_ci_machine() {
        let l = detect_from(HYBRID, CGROUPS);
        assert_eq!(l.version(), Some(CgroupVersion::V1));
        assert!(l.is_hybrid());
        assert_eq!(l.v1.len(), 3, "name=systemd carries no controller");
        assert_eq!(
            l.systemd.as_ref().map(|h| h.mount.as_path()),
            Some(Path::new("/sys/fs/cgroup/systemd")),
            "but it is the hierarchy a systemd zone is given"
        );
        assert_eq!(
            l.v1_hierarchy("cpuacct").unwrap().mount,
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn pure_v2_and_co_mounted_v1() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let l = detect_from(v2, "");
        assert_eq!(l.version(), Some(CgroupVersion::V2));
        assert!(!l.is_hybrid());
        let v1 =
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                  33 31 0:30 /docker/x /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory\n";
        let l = detect_from(v1, CGROUPS);
        assert_eq!(l.version(), Some(CgroupVersion::V1));
        assert!(!l.is_hybrid());
        assert_eq!(l.v1[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            l.v1_hierarchy("memory").unwrap().mount,
            Path::new("/sys/fs/cgroup/my mem")
        );
        assert_eq!(l.v1_hierarchy("memory").unwrap().root, "/docker/x");
        assert_eq!(detect_from("", "").version(), None);
    }
}
