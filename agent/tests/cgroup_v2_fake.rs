//! The v2 manager's limit files against a fake cgroupfs folder (no root needed):
//! values written exactly as the kernel wants them, controllers enabled through
//! `cgroup.subtree_control`, read-back, missing features reported, and a failed
//! create leaving nothing behind.

use std::fs;
use std::path::Path;

use nix::errno::Errno;
use zonefleet_agent::cgroup::v2::bpf::BpfError;
use zonefleet_agent::cgroup::v2::V2Manager;
use zonefleet_agent::cgroup::{CgroupError, CgroupManager, Limits};

const MIB: u64 = 1 << 20;

/// Writes `files` (name, content) into `dir`, making it.
fn lay(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
}

/// A fake root and `zonefleet` parent offering cpu, io, memory, pids.
fn fake_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let level = [
        (
            "cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        ),
        ("cgroup.subtree_control", "\n"),
        ("cgroup.procs", ""),
    ];
    lay(t.path(), &level);
    lay(&t.path().join("zonefleet"), &level);
    t
}

/// A zone directory with the files a fresh v2 cgroup has (defaults as the
/// kernel prints them).
fn fake_zone(root: &Path, zone: &str, io_file: &str) -> std::path::PathBuf {
    let dir = root.join("zonefleet").join(zone);
    lay(
        &dir,
        &[
            ("cgroup.procs", ""),
            ("cgroup.controllers", "cpu io memory pids\n"),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.current", "1234\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 0\n",
            ),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            (
                "cpu.stat",
                "usage_usec 4321\nuser_usec 4000\nsystem_usec 321\n",
            ),
            ("pids.max", "max\n"),
            (io_file, "default 100\n"),
        ],
    );
    dir
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

/// `update` on the fake: every limit file is written, then lifting the device
/// filter (`devices: None`) asks the kernel which filter the directory holds, and
/// the kernel rightly answers that a tempdir is no cgroup (EBADF; EPERM before
/// that when not root). The device
/// filter itself is tested on the real cgroup2 mount (`cgroup_v2_unified.rs`).
fn update_files(mgr: &V2Manager, zone: &str, limits: &Limits) {
    match mgr.update(zone, limits) {
        Ok(()) => {}
        Err(CgroupError::Bpf(BpfError::Cgroup {
            op: "query",
            errno: Errno::EBADF | Errno::EPERM,
            ..
        })) => {}
        Err(e) => panic!("{e}"),
    }
}

fn limits() -> Limits {
    Limits {
        memory_bytes: Some(64 * MIB),
        memory_swap_bytes: Some(96 * MIB),
        cpu_cap_percent: Some(50),
        cpu_shares: Some(512),
        pids_max: Some(64),
        io_weight: Some(500),
        devices: None,
    }
}

#[test]
fn v2_fake_limit_files_hold_exactly_what_the_kernel_wants() {
    let root = fake_root();
    let dir = fake_zone(root.path(), "z", "io.weight");
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    update_files(&mgr, "z", &limits());
    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(
        read(&dir, "memory.swap.max"),
        "33554432",
        "swap alone: 96 MiB - 64 MiB"
    );
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    assert_eq!(read(&dir, "cpu.weight"), "20", "1 + (512-2)*9999/262142");
    assert_eq!(read(&dir, "pids.max"), "64");
    assert_eq!(
        read(&dir, "io.weight"),
        "4950",
        "500 on 10..1000 -> 1..10000"
    );

    // Back to unlimited: the kernel's own words for it.
    update_files(&mgr, "z", &Limits::default());
    assert_eq!(read(&dir, "memory.max"), "max");
    assert_eq!(read(&dir, "memory.swap.max"), "max");
    assert_eq!(read(&dir, "cpu.max"), "max 100000");
    assert_eq!(read(&dir, "cpu.weight"), "100");
    assert_eq!(read(&dir, "pids.max"), "max");
    assert_eq!(read(&dir, "io.weight"), "100");

    let cap = Limits {
        cpu_cap_percent: Some(250),
        cpu_shares: Some(2),
        ..Limits::default()
    };
    update_files(&mgr, "z", &cap);
    assert_eq!(read(&dir, "cpu.max"), "250000 100000");
    assert_eq!(read(&dir, "cpu.weight"), "1");
}

#[test]
fn v2_fake_bfq_weight_keeps_the_v1_scale() {
    let root = fake_root();
    let dir = fake_zone(root.path(), "z", "io.bfq.weight");
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    update_files(&mgr, "z", &limits());
    assert_eq!(read(&dir, "io.bfq.weight"), "500");
}

#[test]
fn v2_fake_create_enables_controllers_level_by_level() {
    let root = fake_root();
    // The root already has cpu and memory on, as the kernel prints them.
    fs::write(root.path().join("cgroup.subtree_control"), "cpu memory\n").unwrap();
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    mgr.create("z", &Limits::default()).unwrap();
    assert_eq!(read(root.path(), "cgroup.subtree_control"), "+io +pids");
    assert_eq!(
        read(&root.path().join("zonefleet"), "cgroup.subtree_control"),
        "+cpu +io +memory +pids"
    );
    assert!(root.path().join("zonefleet/z").is_dir());
    assert_eq!(mgr.zones().unwrap(), ["z"]);
    mgr.delete("z").unwrap();
    mgr.delete("z").unwrap();
    assert!(!root.path().join("zonefleet/z").exists());
}

#[test]
fn v2_fake_subtree_control_that_does_not_take_is_an_error() {
    let root = fake_root();
    // A file that stores nothing: the controllers never appear enabled.
    let control = root.path().join("cgroup.subtree_control");
    fs::remove_file(&control).unwrap();
    std::os::unix::fs::symlink("/dev/null", &control).unwrap();
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    let err = mgr.create("z", &Limits::default()).unwrap_err();
    match &err {
        CgroupError::ReadBack { path, wanted, .. } => {
            assert_eq!(path, &control);
            assert_eq!(wanted, "+cpu +io +memory +pids");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn v2_fake_read_back_names_file_wanted_and_stored() {
    let root = fake_root();
    let dir = fake_zone(root.path(), "z", "io.weight");
    fs::remove_file(dir.join("memory.max")).unwrap();
    std::os::unix::fs::symlink("/dev/null", dir.join("memory.max")).unwrap();
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    let err = mgr.update("z", &limits()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("memory.max") && msg.contains("67108864"),
        "{msg}"
    );
    assert!(
        matches!(err, CgroupError::ReadBack { ref got, .. } if got.is_empty()),
        "{err:?}"
    );
}

#[test]
fn v2_fake_missing_controller_is_reported_and_create_leaves_nothing() {
    let root = fake_root();
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    // The fake kernel makes no files in a new directory: no memory.max.
    let err = mgr
        .create(
            "z",
            &Limits {
                memory_bytes: Some(64 * MIB),
                ..Limits::default()
            },
        )
        .unwrap_err();
    match &err {
        CgroupError::FeatureMissing { feature, detail } => {
            assert!(feature.contains("memory controller"), "{feature}");
            assert!(detail.contains("memory.max"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !root.path().join("zonefleet/z").exists(),
        "the half-made zone is gone"
    );
    assert!(root.path().join("zonefleet").is_dir(), "the parent stays");
    // Limits the kernel cannot hold are refused before touching anything.
    let bad = Limits {
        cpu_shares: Some(1),
        ..Limits::default()
    };
    assert!(matches!(
        mgr.create("y", &bad),
        Err(CgroupError::InvalidLimit {
            field: "cpu_shares",
            ..
        })
    ));
    assert!(!root.path().join("zonefleet/y").exists());
    assert!(matches!(
        mgr.create("../x", &Limits::default()),
        Err(CgroupError::InvalidName { .. })
    ));
}

#[test]
fn v2_fake_usage_pids_and_zones() {
    let root = fake_root();
    let dir = fake_zone(root.path(), "z", "io.weight");
    fs::write(dir.join("cgroup.procs"), "42\n7\n").unwrap();
    lay(&dir.join("sub"), &[("cgroup.procs", "9\n42\n")]);
    fake_zone(root.path(), "other", "io.weight");
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    assert_eq!(mgr.pids("z").unwrap(), [7, 9, 42]);
    assert_eq!(mgr.zones().unwrap(), ["other", "z"]);
    let u = mgr.usage("z").unwrap();
    assert_eq!(
        (u.memory_bytes, u.cpu_usage_ns, u.oom_kills),
        (1234, 4_321_000, 2)
    );
    assert!(matches!(
        mgr.usage("nope"),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn v2_fake_delegation_hands_the_zone_root_its_process_files_and_never_its_limits() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skip: chown to another id needs root");
        assert!(std::env::var("CI").is_err(), "CI runs as root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let root = fake_root();
    let mgr = V2Manager::new(root.path(), "zonefleet").unwrap();
    let dir = fake_zone(root.path(), "z", "io.weight");
    lay(
        &dir,
        &[("cgroup.subtree_control", "\n"), ("cgroup.threads", "")],
    );
    let owner = (0x8000_0000_u32, 0x8000_0000_u32);
    assert_eq!(
        mgr.delegate("z", owner).unwrap(),
        zonefleet_agent::cgroup::Delegation::V2
    );
    let owned = |name: &str| {
        let m = fs::metadata(if name.is_empty() {
            dir.clone()
        } else {
            dir.join(name)
        })
        .unwrap();
        (m.uid(), m.gid())
    };
    for name in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        assert_eq!(owned(name), owner, "{name:?} is the zone root's");
    }
    for name in ["memory.max", "cpu.max", "pids.max"] {
        if dir.join(name).exists() {
            assert_eq!(owned(name), (0, 0), "{name} stays the host's");
        }
    }
    // A zone that does not exist is an error, not a no-op.
    assert!(mgr.delegate("nope", owner).is_err());
}
