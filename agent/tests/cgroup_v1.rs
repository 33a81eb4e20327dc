//! The v1 manager against this host's real v1 hierarchies (needs root): limits
//! read back from the kernel, processes moved in, memory and pids limits really
//! enforced, device deny, freeze and kill, delete and sweep.

mod support;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use support::cgroup::*;
use support::{privileged, require, unique_parent};
use zonefleet_agent::cgroup::detect::{self, Layout};
use zonefleet_agent::cgroup::v1::V1Manager;
use zonefleet_agent::cgroup::{CgroupError, CgroupManager, CgroupVersion, Limits};

const MIB: u64 = 1 << 20;

/// The host's layout and a guard over a fresh test parent, or `None` to skip.
fn setup(test: &str) -> Option<(Layout, V1Manager, Guard)> {
    if !privileged(test) {
        return None;
    }
    let layout = detect::detect().expect("detect the cgroup layout");
    if !require(test, "v1 hierarchies", !layout.v1.is_empty()) {
        return None;
    }
    let mounts: Vec<PathBuf> = layout.v1.iter().map(|h| h.mount.clone()).collect();
    let v1 = layout.v1.clone();
    sweep_stale(&mounts, &|p| {
        Box::new(V1Manager::new(v1.clone(), p).unwrap())
    });
    let mgr = V1Manager::new(layout.v1.clone(), &unique_parent()).unwrap();
    let guard = Guard::new(Box::new(mgr.clone()));
    Some((layout, mgr, guard))
}

fn file(mgr: &V1Manager, zone: &str, controller: &str, name: &str) -> String {
    let dir = mgr.zone_dir(zone, controller).expect(controller);
    fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .to_owned()
}

/// Whether this kernel weighs I/O (a CFQ or BFQ weight file in the blkio root).
fn weighted() -> bool {
    ["blkio.weight", "blkio.bfq.weight"].iter().any(|f| {
        std::path::Path::new("/sys/fs/cgroup/blkio")
            .join(f)
            .exists()
    })
}

/// Every limit set; the I/O weight only where the kernel weighs I/O (else the default,
/// which needs nothing).
fn full_limits() -> Limits {
    Limits {
        memory_bytes: Some(64 * MIB),
        memory_swap_bytes: Some(96 * MIB),
        cpu_cap_percent: Some(50),
        cpu_shares: Some(512),
        pids_max: Some(64),
        io_weight: Some(if weighted() { 500 } else { 100 }),
        ..Limits::zone_defaults()
    }
}

#[test]
fn v1_limits_are_written_read_back_updated_and_deleted() {
    let Some((_, mgr, _guard)) = setup("v1_limits_are_written_read_back_updated_and_deleted")
    else {
        return;
    };
    let z = "zone-limits";
    // A kernel without a proportional I/O scheduler (CFQ or BFQ; this machine's 6.18
    // has neither) weighs no I/O: a weight other than the default is refused, naming
    // what is missing, and leaves no cgroup behind.
    if !weighted() {
        let weight = Limits {
            io_weight: Some(500),
            ..full_limits()
        };
        match mgr.create(z, &weight) {
            Err(CgroupError::FeatureMissing { feature, .. }) => {
                assert!(feature.contains("blkio"), "{feature}")
            }
            other => panic!("a weight without a weighing scheduler: {other:?}"),
        }
        assert!(!mgr.exists(z).unwrap(), "a refused create left its cgroup");
    }
    mgr.create(z, &full_limits()).unwrap();
    assert!(matches!(
        mgr.create(z, &full_limits()),
        Err(CgroupError::AlreadyExists { .. })
    ));
    assert_eq!(
        file(&mgr, z, "memory", "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );
    assert_eq!(
        file(&mgr, z, "memory", "memory.memsw.limit_in_bytes"),
        (96 * MIB).to_string()
    );
    assert_eq!(file(&mgr, z, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(file(&mgr, z, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(file(&mgr, z, "cpu", "cpu.shares"), "512");
    assert_eq!(file(&mgr, z, "pids", "pids.max"), "64");
    let blkio = mgr.zone_dir(z, "blkio").unwrap();
    let weight = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| blkio.join(f).exists());
    if let Some(w) = weight {
        assert_eq!(file(&mgr, z, "blkio", w), "500");
    }
    let list = file(&mgr, z, "devices", "devices.list");
    let mut list: Vec<&str> = list.lines().collect();
    list.sort();
    assert_eq!(
        list,
        [
            "c 136:* rwm",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm"
        ]
    );
    assert!(
        !file(&mgr, z, "cpuset", "cpuset.cpus").is_empty(),
        "cpuset inherited"
    );

    // Live update: lower memory under the old memsw, lift the cap and pids limit.
    let lower = Limits {
        memory_bytes: Some(32 * MIB),
        memory_swap_bytes: Some(32 * MIB),
        cpu_cap_percent: None,
        pids_max: None,
        ..full_limits()
    };
    mgr.update(z, &lower).unwrap();
    assert_eq!(
        file(&mgr, z, "memory", "memory.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(
        file(&mgr, z, "memory", "memory.memsw.limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(file(&mgr, z, "cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(file(&mgr, z, "pids", "pids.max"), "max");
    // Raise memory above the old memsw: the writes must go memsw first.
    mgr.update(
        z,
        &Limits {
            memory_bytes: Some(128 * MIB),
            memory_swap_bytes: Some(256 * MIB),
            ..lower
        },
    )
    .unwrap();
    assert_eq!(
        file(&mgr, z, "memory", "memory.limit_in_bytes"),
        (128 * MIB).to_string()
    );

    let dirs: Vec<PathBuf> = mgr
        .hierarchies()
        .iter()
        .map(|h| h.mount.join(mgr_parent(&mgr)).join(z))
        .collect();
    assert!(dirs.iter().all(|d| d.is_dir()));
    mgr.delete(z).unwrap();
    assert!(
        dirs.iter().all(|d| !d.exists()),
        "every hierarchy's directory is gone"
    );
    mgr.delete(z).unwrap(); // idempotent
    assert!(!mgr.exists(z).unwrap());
}

/// The test parent, from a zone directory path.
fn mgr_parent(mgr: &V1Manager) -> String {
    let d = mgr.zone_dir("x", "freezer").unwrap();
    d.parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn v1_half_made_or_refused_cgroups_leave_nothing() {
    let Some((_, mgr, _guard)) = setup("v1_half_made_or_refused_cgroups_leave_nothing") else {
        return;
    };
    mgr.create("first", &Limits::default()).unwrap();
    // The kernel refuses a child quota above its parent's: create must fail on
    // cpu.cfs_quota_us and take back every directory it made.
    let parent_cpu = mgr
        .zone_dir("first", "cpu")
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    fs::write(parent_cpu.join("cpu.cfs_quota_us"), "50000").unwrap();
    let err = mgr
        .create(
            "refused",
            &Limits {
                cpu_cap_percent: Some(100),
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("cpu.cfs_quota_us"), "{err}");
    assert!(
        !mgr.exists("refused").unwrap(),
        "nothing left of the refused zone"
    );
    fs::write(parent_cpu.join("cpu.cfs_quota_us"), "-1").unwrap();

    // A half-made cgroup (only in one hierarchy) deletes fine, twice.
    let half = mgr.zone_dir("half", "memory").unwrap();
    fs::create_dir(&half).unwrap();
    assert!(mgr.exists("half").unwrap());
    mgr.delete("half").unwrap();
    mgr.delete("half").unwrap();
    assert!(!half.exists());
    assert_eq!(mgr.zones().unwrap(), ["first"]);
}

#[test]
fn v1_processes_zone_lookup_usage_freeze_and_kill() {
    let Some((_, mgr, mut g)) = setup("v1_processes_zone_lookup_usage_freeze_and_kill") else {
        return;
    };
    let z = "zone-procs";
    mgr.create(z, &full_limits()).unwrap();
    g.children.push(spawn_waiting("sleep 60 & sleep 60"));
    let pid = g.children[0].id();
    assert_eq!(mgr.zone_of_pid(pid).unwrap(), None, "not in a zone yet");
    mgr.add_pid(z, pid).unwrap();
    go(&mut g.children[0]);
    eventually("sh and its two sleeps in the zone", || {
        mgr.pids(z).unwrap().len() == 3
    });
    let pids = mgr.pids(z).unwrap();
    assert!(pids.contains(&pid));
    for p in &pids {
        assert_eq!(
            mgr.zone_of_pid(*p).unwrap().as_deref(),
            Some(z),
            "zone of {p}"
        );
    }
    assert_eq!(mgr.zone_of_pid(std::process::id()).unwrap(), None);

    let usage = mgr.usage(z).unwrap();
    assert!(usage.memory_bytes > 0, "{usage:?}");
    assert!(usage.cpu_usage_ns > 0, "{usage:?}");
    assert_eq!(usage.oom_kills, 0);

    mgr.freeze(z, WAIT).unwrap();
    assert_eq!(file(&mgr, z, "freezer", "freezer.state"), "FROZEN");
    mgr.thaw(z, WAIT).unwrap();
    assert_eq!(file(&mgr, z, "freezer", "freezer.state"), "THAWED");

    assert!(matches!(mgr.delete(z), Err(CgroupError::Busy { .. })));
    let t = std::time::Instant::now();
    mgr.kill_all(z, WAIT).unwrap();
    eprintln!("v1 kill_all of 3 processes took {:?}", t.elapsed());
    assert!(mgr.pids(z).unwrap().is_empty());
    let (status, _, _) = wait(&mut g.children[0]);
    assert_eq!(status.signal(), Some(9), "{status:?}");
    mgr.delete(z).unwrap();
}

#[test]
fn v1_memory_limit_oom_kills_and_counts() {
    let Some((_, mgr, mut g)) = setup("v1_memory_limit_oom_kills_and_counts") else {
        return;
    };
    let z = "zone-oom";
    let l = Limits {
        memory_bytes: Some(32 * MIB),
        memory_swap_bytes: Some(32 * MIB),
        ..Limits::default()
    };
    mgr.create(z, &l).unwrap();
    // `tail` keeps a line without newline whole: it grows past 32 MiB.
    g.children.push(spawn_waiting(
        "head -c 256M /dev/zero | tail -n1 > /dev/null; echo rc=$?",
    ));
    mgr.add_pid(z, g.children[0].id()).unwrap();
    go(&mut g.children[0]);
    let (status, out, _) = wait(&mut g.children[0]);
    assert!(status.success(), "{status:?}");
    assert_eq!(out.trim(), "rc=137", "tail was SIGKILLed by the OOM killer");
    let usage = mgr.usage(z).unwrap();
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(usage.memory_bytes <= 32 * MIB, "{usage:?}");
}

#[test]
fn v1_pids_max_stops_forks() {
    let Some((_, mgr, mut g)) = setup("v1_pids_max_stops_forks") else {
        return;
    };
    let z = "zone-pids";
    mgr.create(
        z,
        &Limits {
            pids_max: Some(3),
            ..Limits::default()
        },
    )
    .unwrap();
    g.children.push(spawn_waiting(
        "for i in 1 2 3 4 5 6; do sleep 30 >/dev/null 2>&1 & done; wait",
    ));
    mgr.add_pid(z, g.children[0].id()).unwrap();
    go(&mut g.children[0]);
    // sh and two sleeps fit; the third fork fails, which ends a non-interactive
    // (dash) sh with an error.
    let (status, _, err) = wait(&mut g.children[0]);
    assert!(!status.success(), "{status:?}");
    assert!(err.to_lowercase().contains("fork"), "stderr: {err}");
    assert_eq!(mgr.pids(z).unwrap().len(), 2, "the two sleeps that fit");
    let events = file(&mgr, z, "pids", "pids.events");
    let refused: u64 = events.trim_start_matches("max ").parse().unwrap();
    assert!(refused >= 1, "pids.events: {events}");
    mgr.kill_all(z, WAIT).unwrap();
    assert!(mgr.pids(z).unwrap().is_empty());
}

#[test]
fn v1_devices_outside_the_allow_list_are_denied() {
    let Some((_, mgr, mut g)) = setup("v1_devices_outside_the_allow_list_are_denied") else {
        return;
    };
    // Outside a zone root opens /dev/kmsg: the denial below is the cgroup's.
    fs::File::open("/dev/kmsg").expect("root opens /dev/kmsg outside a zone");
    let z = "zone-devices";
    mgr.create(z, &Limits::zone_defaults()).unwrap();
    let mut script = String::from(
        "dd if=/dev/null of=/dev/null count=1 2>/dev/null; echo null=$?; \
         dd if=/dev/kmsg of=/dev/null count=0; echo kmsg=$?;",
    );
    let block = ["/dev/vda", "/dev/loop0"]
        .into_iter()
        .find(|d| fs::metadata(d).is_ok());
    if let Some(b) = block {
        script.push_str(&format!(" dd if={b} of=/dev/null count=0; echo block=$?;"));
    }
    g.children.push(spawn_waiting(&script));
    mgr.add_pid(z, g.children[0].id()).unwrap();
    go(&mut g.children[0]);
    let (_, out, err) = wait(&mut g.children[0]);
    assert!(out.contains("null=0"), "{out} {err}");
    assert!(out.contains("kmsg=1"), "{out} {err}");
    assert!(err.contains("/dev/kmsg': Operation not permitted"), "{err}");
    if let Some(b) = block {
        assert!(out.contains("block=1"), "{out} {err}");
        assert!(
            err.contains(&format!("{b}': Operation not permitted")),
            "{err}"
        );
    }
}

#[test]
fn v1_sweep_kills_and_removes_zones_the_agent_does_not_know() {
    let Some((_, mgr, mut g)) = setup("v1_sweep_kills_and_removes_zones_the_agent_does_not_know")
    else {
        return;
    };
    mgr.create("known", &Limits::default()).unwrap();
    mgr.create("stale", &Limits::default()).unwrap();
    g.children.push(spawn_waiting("sleep 60"));
    mgr.add_pid("stale", g.children[0].id()).unwrap();
    go(&mut g.children[0]);
    let swept = mgr.sweep(&|z| z == "known", WAIT).unwrap();
    assert_eq!(swept, ["stale"]);
    assert_eq!(mgr.zones().unwrap(), ["known"]);
    let (status, _, _) = wait(&mut g.children[0]);
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn v1_host_layout_gives_a_v1_manager() {
    if !privileged("v1_host_layout_gives_a_v1_manager") {
        return;
    }
    let layout = detect::detect().unwrap();
    eprintln!("layout: {:?} {layout:?}", layout.version());
    if !require(
        "v1_host_layout_gives_a_v1_manager",
        "v1 hierarchies",
        !layout.v1.is_empty(),
    ) {
        return;
    }
    let mgr = zonefleet_agent::cgroup::create_manager(&layout, "zonefleet-test-layout").unwrap();
    assert_eq!(mgr.version(), CgroupVersion::V1);
    for c in ["memory", "cpu", "cpuacct", "pids", "freezer", "devices"] {
        assert!(layout.v1_hierarchy(c).is_some(), "{c} mounted");
    }
}

#[test]
fn v1_delegation_hands_the_zone_root_its_cgroup_in_systemds_named_hierarchy() {
    use std::os::unix::fs::MetadataExt;
    let Some((layout, _, _guard)) = setup("v1_delegation") else {
        return;
    };
    let Some(systemd) = layout.systemd.clone() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI hosts mount systemd's named hierarchy"
        );
        eprintln!("skip: no name=systemd hierarchy on this host");
        return;
    };
    let parent = unique_parent();
    let hierarchies = layout.v1.iter().chain([&systemd]).cloned().collect();
    let mgr = V1Manager::new(hierarchies, &parent).unwrap();
    let _named = Guard::new(Box::new(mgr.clone()));
    mgr.create("z", &Limits::default()).unwrap();
    let owner = (0x8000_0000_u32, 0x8000_0000_u32);
    assert_eq!(
        mgr.delegate("z", owner).unwrap(),
        zonefleet_agent::cgroup::Delegation::V1NamedSystemd
    );
    let named = systemd.mount.join(&parent).join("z");
    for name in ["", "cgroup.procs", "tasks"] {
        let m = std::fs::metadata(named.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), owner, "{name:?} is the zone root's");
    }
    // Controllers' files stay the host's: the zone may group, never raise limits.
    let memory = mgr.zone_dir("z", "memory").unwrap();
    let m = std::fs::metadata(memory.join("memory.limit_in_bytes")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    // A process moved there is the zone's; delete removes the named cgroup too.
    assert!(mgr.pids("z").unwrap().is_empty());
    mgr.delete("z").unwrap();
    assert!(!named.exists());
    mgr.delete_parent().unwrap();
}
