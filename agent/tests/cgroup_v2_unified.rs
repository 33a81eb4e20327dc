//! The v2 manager against the kernel's real cgroup2 mount (needs root). On this
//! hybrid host it is `/sys/fs/cgroup/unified`, with no controller enabled: what
//! works there is tested for real (create/delete, processes, `cgroup.kill`,
//! freeze, the eBPF device filter), and limits that need a controller must be
//! reported as missing, never faked.

mod support;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use support::cgroup::*;
use support::{privileged, require, unique_parent};
use zonefleet_agent::cgroup::detect;
use zonefleet_agent::cgroup::v2::{bpf, V2Manager};
use zonefleet_agent::cgroup::{CgroupError, CgroupManager, Limits};

/// The cgroup2 mount and a guard over a fresh test parent, or `None` to skip.
fn setup(test: &str) -> Option<(PathBuf, V2Manager, Guard)> {
    if !privileged(test) {
        return None;
    }
    let layout = detect::detect().expect("detect the cgroup layout");
    let Some(root) = layout.unified.clone() else {
        require(test, "cgroup2 mount", false);
        return None;
    };
    let r = root.clone();
    sweep_stale(std::slice::from_ref(&root), &|p| {
        Box::new(V2Manager::new(&r, p).unwrap())
    });
    let mgr = V2Manager::new(&root, &unique_parent()).unwrap();
    let guard = Guard::new(Box::new(mgr.clone()));
    Some((root, mgr, guard))
}

/// Opening `dev` from inside the zone: the child's stdout says `rc=0` or not,
/// stderr says why.
fn open_in_zone(mgr: &V2Manager, g: &mut Guard, zone: &str, dev: &str) -> (bool, String) {
    g.children.push(spawn_waiting(&format!(
        "dd if={dev} of=/dev/null count=0; echo rc=$?"
    )));
    let child = g.children.last_mut().unwrap();
    mgr.add_pid(zone, child.id()).unwrap();
    go(child);
    let (_, out, err) = wait(child);
    (out.trim() == "rc=0", err)
}

#[test]
fn v2_real_processes_freeze_kill_and_delete() {
    let Some((_, mgr, mut g)) = setup("v2_real_processes_freeze_kill_and_delete") else {
        return;
    };
    let z = "zone-procs";
    mgr.create(z, &Limits::default()).unwrap();
    let dir = mgr.zone_dir(z);
    assert!(
        dir.join("cgroup.procs").exists(),
        "a real cgroup2 directory"
    );
    g.children.push(spawn_waiting("sleep 60 & sleep 60"));
    let pid = g.children[0].id();
    mgr.add_pid(z, pid).unwrap();
    go(&mut g.children[0]);
    eventually("sh and two sleeps in the zone", || {
        mgr.pids(z).unwrap().len() == 3
    });
    for p in mgr.pids(z).unwrap() {
        assert_eq!(mgr.zone_of_pid(p).unwrap().as_deref(), Some(z));
    }
    assert_eq!(mgr.zone_of_pid(std::process::id()).unwrap(), None);

    mgr.freeze(z, WAIT).unwrap();
    assert!(fs::read_to_string(dir.join("cgroup.events"))
        .unwrap()
        .contains("frozen 1"));
    mgr.thaw(z, WAIT).unwrap();
    assert!(fs::read_to_string(dir.join("cgroup.events"))
        .unwrap()
        .contains("frozen 0"));

    assert!(matches!(mgr.delete(z), Err(CgroupError::Busy { .. })));
    let t = std::time::Instant::now();
    mgr.kill_all(z, WAIT).unwrap();
    eprintln!("v2 cgroup.kill of 3 processes took {:?}", t.elapsed());
    assert!(mgr.pids(z).unwrap().is_empty());
    let (status, _, _) = wait(&mut g.children[0]);
    assert_eq!(status.signal(), Some(9));
    mgr.delete(z).unwrap();
    mgr.delete(z).unwrap();
    assert!(!dir.exists());
}

#[test]
fn v2_real_missing_controllers_are_reported_not_faked() {
    let Some((root, mgr, _g)) = setup("v2_real_missing_controllers_are_reported_not_faked") else {
        return;
    };
    let offered = fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    if offered.split_whitespace().any(|c| c == "memory") {
        support::skip(
            "v2_real_missing_controllers_are_reported_not_faked",
            &format!("{} offers the memory controller", root.display()),
        );
        return;
    }
    let err = mgr
        .create(
            "z",
            &Limits {
                memory_bytes: Some(64 << 20),
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(&err, CgroupError::FeatureMissing { detail, .. } if detail.contains("memory.max")),
        "{err:?}"
    );
    assert!(!mgr.exists("z").unwrap(), "nothing left behind");
    mgr.create("z", &Limits::default()).unwrap();
    let err = mgr.usage("z").unwrap_err();
    assert!(
        matches!(&err, CgroupError::FeatureMissing { detail, .. } if detail.contains("memory.current")),
        "{err:?}"
    );
}

#[test]
fn v2_real_ebpf_device_filter_denies_outside_the_allow_list() {
    let Some((_, mgr, mut g)) = setup("v2_real_ebpf_device_filter_denies_outside_the_allow_list")
    else {
        return;
    };
    fs::File::open("/dev/kmsg").expect("root opens /dev/kmsg outside a zone");
    let z = "zone-devices";
    mgr.create(z, &Limits::zone_defaults()).unwrap();
    let dir = mgr.zone_dir(z);
    assert_eq!(bpf::attached(&dir).unwrap().len(), 1, "one filter attached");

    let (ok, err) = open_in_zone(&mgr, &mut g, z, "/dev/null");
    assert!(ok, "/dev/null: {err}");
    let (ok, err) = open_in_zone(&mgr, &mut g, z, "/dev/kmsg");
    assert!(
        !ok && err.contains("Operation not permitted"),
        "/dev/kmsg: {err}"
    );
    if let Some(b) = ["/dev/vda", "/dev/loop0"]
        .into_iter()
        .find(|d| fs::metadata(d).is_ok())
    {
        let (ok, err) = open_in_zone(&mgr, &mut g, z, b);
        assert!(!ok && err.contains("Operation not permitted"), "{b}: {err}");
    }

    // Live update: lifting the filter detaches it, setting it again replaces.
    mgr.update(z, &Limits::default()).unwrap();
    assert!(bpf::attached(&dir).unwrap().is_empty());
    let (ok, err) = open_in_zone(&mgr, &mut g, z, "/dev/kmsg");
    assert!(ok, "/dev/kmsg without a filter: {err}");
    mgr.update(z, &Limits::zone_defaults()).unwrap();
    let first = bpf::attached(&dir).unwrap();
    mgr.update(z, &Limits::zone_defaults()).unwrap();
    let second = bpf::attached(&dir).unwrap();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(
        first, second,
        "the second attach replaced the first program"
    );
    let (ok, _) = open_in_zone(&mgr, &mut g, z, "/dev/kmsg");
    assert!(!ok);

    // A sub-cgroup of the zone is held by the zone's filter too.
    let sub = dir.join("sub");
    fs::create_dir(&sub).unwrap();
    g.children.push(spawn_waiting(
        "dd if=/dev/kmsg of=/dev/null count=0; echo rc=$?",
    ));
    let child = g.children.last_mut().unwrap();
    fs::write(sub.join("cgroup.procs"), child.id().to_string()).unwrap();
    go(child);
    let (_, out, _) = wait(child);
    assert_eq!(out.trim(), "rc=1", "denied in a sub-cgroup");
    assert!(
        bpf::attach(&sub, &[]).is_err(),
        "a sub-cgroup cannot attach a filter of its own"
    );
}
