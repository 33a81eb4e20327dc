//! Parsing `/proc/<pid>/cgroup`: how the global zone names a process's zone.

use std::path::Path;

use super::fsutil;
use super::CgroupError;

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The hierarchy id (0 for the v2 unified hierarchy).
    pub hierarchy_id: u32,
    /// The controllers of that hierarchy (`name=systemd` included as is); empty
    /// for v2.
    pub controllers: Vec<String>,
    /// The process's cgroup, relative to the hierarchy root (as seen from the
    /// reader's cgroup namespace).
    pub path: String,
}

/// Parses the text of `/proc/<pid>/cgroup`; lines that do not parse are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let id = it.next()?.parse().ok()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(ProcCgroup {
                hierarchy_id: id,
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// Reads and parses `/proc/<pid>/cgroup`.
pub fn read_proc_cgroup(pid: u32) -> Result<Vec<ProcCgroup>, CgroupError> {
    let text = fsutil::read(Path::new(&format!("/proc/{pid}/cgroup")))?;
    Ok(parse_proc_cgroup(&text))
}

/// The zone in a cgroup path: `path` is `<hierarchy_root>/<parent>/<zone>[/…]`.
/// `hierarchy_root` is the mount's root within the hierarchy (`/` normally).
pub fn zone_in_path(path: &str, hierarchy_root: &str, parent: &str) -> Option<String> {
    let rel = if hierarchy_root == "/" {
        path
    } else {
        path.strip_prefix(hierarchy_root.trim_end_matches('/'))?
    };
    let rel = rel.strip_prefix('/')?;
    let rest = rel.strip_prefix(parent)?.strip_prefix('/')?;
    let zone = rest.split('/').next()?;
    (!zone.is_empty()).then(|| zone.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "9:name=systemd:/\n8:pids:/zonefleet/z1\n4:memory:/zonefleet/z1/sub\n1:cpu,cpuacct:/\n0::/zonefleet/z2\n";

    #[test]
    fn parses_v1_and_v2_lines() {
        let l = parse_proc_cgroup(HYBRID);
        assert_eq!(l.len(), 5);
        assert_eq!(l[0].controllers, ["name=systemd"]);
        assert_eq!(l[3].controllers, ["cpu", "cpuacct"]);
        assert_eq!(l[4].hierarchy_id, 0);
        assert!(l[4].controllers.is_empty());
        assert_eq!(l[4].path, "/zonefleet/z2");
    }

    #[test]
    fn zone_from_path() {
        assert_eq!(
            zone_in_path("/zonefleet/z1", "/", "zonefleet").as_deref(),
            Some("z1")
        );
        assert_eq!(
            zone_in_path("/zonefleet/z1/a/b", "/", "zonefleet").as_deref(),
            Some("z1")
        );
        assert_eq!(zone_in_path("/zonefleet", "/", "zonefleet"), None);
        assert_eq!(zone_in_path("/zonefleetx/z1", "/", "zonefleet"), None);
        assert_eq!(zone_in_path("/", "/", "zonefleet"), None);
        assert_eq!(zone_in_path("/user.slice", "/", "zonefleet"), None);
        assert_eq!(
            zone_in_path("/docker/abc/zonefleet/z1", "/docker/abc", "zonefleet").as_deref(),
            Some("z1")
        );
        assert_eq!(zone_in_path("/t/a/b/z", "/", "t/a/b").as_deref(), Some("z"));
    }
}
