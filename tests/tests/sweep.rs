//! The sweep of leftovers (`zonefleet_devfleet::net::sweep`, what the harness runs at
//! start and `zfadm dev down` at the end): a cgroup parent a killed run left with a zone
//! still running in it goes, its process killed. Needs root; fails under `CI=true`
//! without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zonefleet_tests::{names, privileged};

#[test]
fn a_left_cgroup_parent_goes_with_what_still_runs_in_it() {
    if !privileged("a_left_cgroup_parent_goes_with_what_still_runs_in_it") {
        return;
    }
    // A v1 pids hierarchy here; the unified root on a v2 host.
    let root = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists())
        .expect("a cgroup hierarchy");
    let parent_name = format!("{}a9", names::new_run());
    let parent = root.join(&parent_name);
    let zone = parent.join("zone");
    std::fs::create_dir_all(&zone).unwrap();
    let mut left = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(zone.join("cgroup.procs"), left.id().to_string()).unwrap();

    let removed = zonefleet_devfleet::net::sweep(|name| name == parent_name);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = left.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = left.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some(),
        "the process left in the cgroup still runs"
    );
    assert!(!parent.exists(), "{} is still there", parent.display());
    assert!(
        removed.contains(&parent.display().to_string()),
        "{removed:?}"
    );
}
