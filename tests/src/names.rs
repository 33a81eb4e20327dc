//! Names of what a run makes: `zft<pid:6 hex><n:1 hex>` then a suffix, short enough for
//! interface names (15 bytes), unique per process and fleet, and carrying the pid so a
//! later run can tell a stale leftover (its process is gone) from a live neighbour's.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix of everything the harness makes.
pub const PREFIX: &str = "zft";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A new run prefix, e.g. `zft0012ab3`: 10 bytes, leaving 5 for suffixes.
pub fn new_run() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 16, "at most 16 fleets per test process");
    format!("{PREFIX}{:06x}{n:x}", std::process::id() & 0xff_ffff)
}

/// The pid a name made by [`new_run`] carries, if it is one.
fn owner(name: &str) -> Option<i32> {
    let hex = name.strip_prefix(PREFIX)?.get(..6)?;
    i32::from_str_radix(hex, 16).ok()
}

/// Whether `name` is the harness's and its process is gone.
fn stale(name: &str) -> bool {
    owner(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the network namespaces, links and (empty) cgroup parents that runs whose
/// process is gone left behind (a test killed before its cleanup ran).
pub fn sweep_stale() {
    if let Ok(mounts) = std::fs::read_dir("/sys/fs/cgroup") {
        for mount in mounts.flatten() {
            for entry in std::fs::read_dir(mount.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if stale(&entry.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
    }
    for line in lines("ip", &["netns", "list"]) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if stale(name) {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
    for line in lines("ip", &["-o", "link", "show"]) {
        // "12: zft0012ab3sw: <…" or "13: zft0012ab3h1@if2: <…"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if stale(name) {
            let _ = Command::new("ip").args(["link", "delete", name]).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_name_carries_its_pid_and_fits_an_interface_name() {
        let run = new_run();
        assert_eq!(run.len(), 10);
        assert_eq!(owner(&run), Some((std::process::id() & 0xff_ffff) as i32));
        assert!(!stale(&run), "this process is alive");
        assert!(format!("{run}h12").len() <= 15);
        assert_eq!(owner("eth0"), None);
        assert!(!stale("zflocal0"));
    }
}
