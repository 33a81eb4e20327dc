//! [`Memory`]: what a booted system costs the host, measured the same way for
//! every system under test, and the `/proc` facts it is made of.

use std::path::Path;

use anyhow::Context;

/// What one booted system costs the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Memory {
    /// The system's memory cgroup usage (v1 `memory.usage_in_bytes`, v2
    /// `memory.current`: its processes' anonymous memory, the page cache and
    /// kernel memory charged to it) plus the resident set of its supervisor when
    /// the supervisor is outside that cgroup, bytes.
    pub cgroup: u64,
    /// The proportional set size of the system's processes (every process in its
    /// PID namespace) and of its supervisor, bytes: memory they map, shared pages
    /// split between the processes sharing them; no page cache they do not map.
    pub pss: u64,
}

impl Memory {
    /// Measures a system whose PID 1 is `init`, whose cgroup holds `cgroup_usage`
    /// bytes, and whose supervisor (zsched, systemd-nspawn, the LXC monitor) is
    /// `supervisor`; `supervisor_charged`: the supervisor runs inside that cgroup
    /// (so its memory is in `cgroup_usage` already).
    pub fn measure(
        init: i32,
        cgroup_usage: u64,
        supervisor: i32,
        supervisor_charged: bool,
    ) -> anyhow::Result<Memory> {
        let supervisor_rss = if supervisor_charged {
            0
        } else {
            status_field(supervisor, "VmRSS:")?
        };
        let mut pss = pss(supervisor)?;
        for pid in in_pid_namespace_of(init)? {
            // A process that exited meanwhile holds nothing any more.
            pss += pss_or_gone(pid)?;
        }
        Ok(Memory {
            cgroup: cgroup_usage + supervisor_rss,
            pss,
        })
    }
}

/// The value of a `Key:   N kB` line of a `/proc` file, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    let mut words = rest.split_whitespace();
    let kb: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kb * 1024)
}

/// A field of `/proc/<pid>/status` (`VmRSS:`), bytes.
fn status_field(pid: i32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    kb_field(&text, key).with_context(|| format!("no {key} in {path}"))
}

/// The proportional set size of `pid` (`/proc/<pid>/smaps_rollup`), bytes.
fn pss(pid: i32) -> anyhow::Result<u64> {
    match pss_or_gone(pid)? {
        // A live user process always maps something.
        0 => anyhow::bail!("process {pid} is gone (no proportional set size)"),
        bytes => Ok(bytes),
    }
}

/// [`pss`], or 0 for a process that is gone (or a kernel thread, which maps nothing).
fn pss_or_gone(pid: i32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(kb_field(&text, "Pss:").unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        // ESRCH: exited between the directory listing and the read.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(0),
        Err(e) => Err(e).with_context(|| format!("read {path}")),
    }
}

/// Every process whose PID namespace is that of `init`.
pub(super) fn in_pid_namespace_of(init: i32) -> anyhow::Result<Vec<i32>> {
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let want = ns(init).with_context(|| format!("process {init} is gone"))?;
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if ns(pid).as_ref() == Some(&want) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The child of `parent` that is the PID 1 of a PID namespace other than the
/// parent's (the init a container manager started), if it has one yet.
pub(super) fn child_init(parent: i32) -> Option<i32> {
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let own = ns(parent)?;
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| zonefleet_agent::proc_stat::parent_pid(pid) == Some(parent))
        .find(|&pid| ns(pid).is_some_and(|n| n != own) && is_ns_init(pid))
}

/// Whether `pid` is PID 1 of its own PID namespace (`NSpid:` ends in 1).
fn is_ns_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            line.split_whitespace().last().map(|last| last == "1")
        })
        .unwrap_or(false)
}

/// The cgroup directory of `pid` in the v1 hierarchy carrying `controller`,
/// or in the unified hierarchy when `controller` is `None`.
pub(super) fn cgroup_of(pid: i32, controller: Option<&str>) -> anyhow::Result<Option<String>> {
    let lines = zonefleet_agent::cgroup::procfs::read_proc_cgroup(u32::try_from(pid)?)?;
    Ok(lines
        .into_iter()
        .find(|l| match controller {
            Some(c) => l.controllers.iter().any(|x| x == c),
            None => l.hierarchy_id == 0,
        })
        .map(|l| l.path))
}

/// The ancestor of `path` (or `path` itself) whose last component is `name`.
pub(super) fn ancestor_named<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let mut end = None;
    let mut at = 0;
    for part in path.split('/') {
        at += part.len();
        if part == name {
            end = Some(at);
            break;
        }
        at += 1;
    }
    end.map(|e| &path[..e])
}

/// Reads a file holding one unsigned number.
pub(super) fn read_u64(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a number: {:?}", path.display(), text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_fields() {
        let smaps = "558ef4046000-7ffdb6518000 ---p 00000000 00:00 0  [rollup]\n\
                     Rss:                3188 kB\nPss:                1746 kB\n\
                     Pss_Dirty:           388 kB\n";
        assert_eq!(kb_field(smaps, "Pss:"), Some(1746 * 1024));
        assert_eq!(kb_field(smaps, "Rss:"), Some(3188 * 1024));
        assert_eq!(kb_field(smaps, "Swap:"), None);
        assert_eq!(
            kb_field("VmRSS:\t   11928 kB\n", "VmRSS:"),
            Some(11928 * 1024)
        );
        assert_eq!(kb_field("VmRSS: lots\n", "VmRSS:"), None);
        assert_eq!(kb_field("VmRSS: 12 pages\n", "VmRSS:"), None);
    }

    #[test]
    fn named_ancestors() {
        let p = "/lxc.payload.bench/init.scope";
        assert_eq!(
            ancestor_named(p, "lxc.payload.bench"),
            Some("/lxc.payload.bench")
        );
        assert_eq!(
            ancestor_named("/user/lxc.payload.b/system.slice/x", "lxc.payload.b"),
            Some("/user/lxc.payload.b")
        );
        assert_eq!(ancestor_named(p, "lxc.payload.other"), None);
        // A component only: not a prefix of one.
        assert_eq!(
            ancestor_named("/lxc.payload.bench2/x", "lxc.payload.bench"),
            None
        );
    }

    #[test]
    fn own_process_facts() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(status_field(me, "VmRSS:").unwrap() > 0);
        assert!(pss(me).unwrap() > 0);
        assert!(in_pid_namespace_of(me).unwrap().contains(&me));
        assert_eq!(pss_or_gone(i32::MAX).unwrap(), 0);
        assert!(pss(i32::MAX).is_err());
        // This test's process started no container.
        assert_eq!(child_init(me), None);
        let unified = cgroup_of(me, None).unwrap();
        let memory = cgroup_of(me, Some("memory")).unwrap();
        assert!(unified.is_some() || memory.is_some(), "in no cgroup at all");
    }
}
