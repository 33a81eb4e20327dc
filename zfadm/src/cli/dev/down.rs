//! `zfadm dev down`: the zones first (through the controllers, then whatever an agent
//! left), the agents, the controllers, every namespace, link and cgroup named
//! `zfdev…`, mounts under the fleet directory, and the fleet's files. Each step goes on
//! when an earlier one could not finish, so a half-made or half-dead fleet goes too.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use zonefleet_devfleet::net::HostNs;

use super::layout::{self, Files};
use super::{daemon, zfadm, zfadm_json};

/// How long the controllers get to have every zone deleted.
const ZONES_GONE_WITHIN: Duration = Duration::from_secs(30);

/// Removes the fleet in `files`.
pub fn down(files: &Files, out: &mut dyn Write) -> anyhow::Result<()> {
    if files.zfadm_config().is_file() && zfadm(files, &["cluster", "status"]).is_ok() {
        delete_zones(files, out)?;
    }
    for (n, dir) in files.agents() {
        if daemon::stop(&dir.join("agent.toml")) {
            writeln!(out, "stopped agent {n}")?;
        }
        remove_local_zones(&dir, n, out)?;
    }
    for (id, config) in files.controllers() {
        if daemon::stop(&config) {
            writeln!(out, "stopped controller {id}")?;
        }
    }
    let removed = sweep();
    if !removed.is_empty() {
        let count = |kind: &str| removed.iter().filter(|r| r.starts_with(kind)).count();
        writeln!(
            out,
            "removed {} network namespaces, {} links, {} cgroups",
            count("netns "),
            count("link "),
            count("/")
        )?;
    }
    unmount_under(files.dir());
    remove_files(files)?;
    writeln!(out, "local fleet in {} removed", files.dir().display())?;
    Ok(())
}

/// Removes every namespace, link and empty cgroup named like a dev fleet's.
pub fn sweep() -> Vec<String> {
    zonefleet_devfleet::net::sweep(|name| name.starts_with(layout::PREFIX))
}

/// `zonefleet-agent` on agent `n`'s data dir, inside its host when that still exists.
pub fn agent_cli(dir: &Path, n: usize) -> Command {
    let mut command = Command::new(daemon::binary("zonefleet-agent"));
    command
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--bridge")
        .arg(layout::agent_bridge(n));
    let name = format!("{}h{}", layout::PREFIX, layout::agent_host(n));
    if Path::new("/run/netns").join(&name).exists() {
        let host = HostNs::existing(&name, std::net::Ipv4Addr::UNSPECIFIED);
        // Without the namespace the commands still remove the zones; only the bridge
        // would be looked for in the wrong place, and it goes with the namespace.
        let _ = zonefleet_devfleet::enter::in_host(&mut command, &host);
    }
    command
}

fn delete_zones(files: &Files, out: &mut dyn Write) -> anyhow::Result<()> {
    let listed = zfadm_json(files, &["zone", "list"])?;
    let zones: Vec<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|z| z["uuid"].as_str().map(str::to_owned))
        .collect();
    for uuid in &zones {
        // A zone already being deleted answers with an error: the wait below tells.
        let _ = zfadm(files, &["zone", "delete", uuid]);
    }
    let deadline = Instant::now() + ZONES_GONE_WITHIN;
    while Instant::now() < deadline {
        let left = zfadm_json(files, &["zone", "list"])
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        if left == 0 {
            writeln!(out, "deleted {} zones", zones.len())?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    writeln!(
        out,
        "zones still listed after {ZONES_GONE_WITHIN:?}: removing them on their hosts"
    )?;
    Ok(())
}

/// Halts and deletes what is still on agent `n`'s host, and its zones' bridge.
fn remove_local_zones(dir: &Path, n: usize, out: &mut dyn Write) -> anyhow::Result<()> {
    if !dir.join("data").is_dir() {
        return Ok(());
    }
    let listed = agent_cli(dir, n)
        .args(["zone", "list", "-o", "json"])
        .output();
    let zones: Vec<Value> = listed
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    for zone in zones {
        let Some(uuid) = zone["uuid"].as_str() else {
            continue;
        };
        // No grace: an init that ignores SIGTERM would hold each delete for 10 s.
        let _ = agent_cli(dir, n)
            .args(["zone", "halt", "--grace", "0", uuid])
            .output();
        let _ = agent_cli(dir, n).args(["zone", "delete", uuid]).output();
        writeln!(out, "removed zone {uuid} on agent {n}")?;
    }
    let _ = agent_cli(dir, n).args(["bridge", "delete"]).output();
    Ok(())
}

/// Detaches whatever is still mounted under `dir` (deepest first), so removing the
/// files never reaches into a mounted filesystem.
fn unmount_under(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes what `zfadm dev up` writes in the fleet directory, and the directory once
/// empty; anything else in it is left alone.
fn remove_files(files: &Files) -> anyhow::Result<()> {
    let ours = |name: &str| {
        matches!(name, "pki" | "zfadm.toml" | "busybox.tar.gz" | "samples")
            || name.starts_with("controller-")
            || name.starts_with("agent-")
    };
    for entry in std::fs::read_dir(files.dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !ours(&name) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| anyhow::anyhow!("removing {}: {e}", path.display()))?;
    }
    let _ = std::fs::remove_dir(files.dir());
    Ok(())
}
