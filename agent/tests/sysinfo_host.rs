//! Host sysinfo: the host id file, and feature probes checked against
//! independent direct checks (never against this machine's known facts, so
//! the tests hold on any Linux host).

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use zonefleet_agent::cgroup::Layout;
use zonefleet_agent::sysinfo::{self, HostSysinfo, SysinfoError};
use zonefleet_proto::feature::ALL as FEATURE_NAMES;

use support::privileged;

#[test]
fn sysinfo_host_id_is_generated_once_and_stable() {
    let data = tempfile::tempdir().unwrap();
    let a = sysinfo::load_or_create_host_id(data.path()).unwrap();
    let b = sysinfo::load_or_create_host_id(data.path()).unwrap();
    assert_eq!(a, b);
    assert!(!a.is_nil());
    let on_disk = fs::read_to_string(sysinfo::host_id_path(data.path())).unwrap();
    assert_eq!(on_disk, format!("{a}\n"));
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["host_id"]);
}

#[test]
fn sysinfo_corrupt_host_id_is_an_error_naming_the_file_and_left_alone() {
    let data = tempfile::tempdir().unwrap();
    let path = sysinfo::host_id_path(data.path());
    for bad in ["not-a-uuid\n", "", "00000000-0000-0000-0000-000000000000\n"] {
        fs::write(&path, bad).unwrap();
        let err = sysinfo::load_or_create_host_id(data.path()).unwrap_err();
        assert!(matches!(err, SysinfoError::CorruptHostId { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(fs::read_to_string(&path).unwrap(), bad, "file was replaced");
    }
}

#[test]
fn sysinfo_missing_data_dir_is_an_error() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nope");
    let err = sysinfo::load_or_create_host_id(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

fn collect() -> HostSysinfo {
    let data = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let info = sysinfo::collect(data.path()).expect("collect sysinfo");
    eprintln!("sysinfo::collect took {:?}", t.elapsed());
    info
}

#[test]
fn sysinfo_report_is_complete_and_serializes_with_contract_names() {
    let info = collect();
    let json = serde_json::to_value(&info).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&json).unwrap());
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for k in [
        "host_id",
        "hostname",
        "cpus",
        "memory_mib",
        "kernel",
        "cgroup_version",
        "cgroup_controllers",
        "features",
        "agent_version",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert!(["v1", "v2"].contains(&json["cgroup_version"].as_str().unwrap()));
    assert!(info.cpus >= 1 && info.memory_mib >= 1);
    assert!(!info.kernel.is_empty() && !info.hostname.is_empty());
    let names: Vec<&str> = info.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, FEATURE_NAMES);
    for f in &info.features {
        assert!(!f.detail.trim().is_empty(), "{} has no detail", f.name);
        let back =
            &json["features"].as_array().unwrap()[names.iter().position(|n| *n == f.name).unwrap()];
        assert_eq!(back["available"].as_bool(), Some(f.available));
    }
    let round: HostSysinfo = serde_json::from_value(json).unwrap();
    assert_eq!(round, info);
}

#[test]
fn sysinfo_probes_agree_with_direct_checks() {
    let info = collect();
    let avail = |n: &str| sysinfo::feature(&info, n).unwrap().available;

    // Filesystems: /proc/filesystems.
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap();
    let listed = |fs: &str| {
        filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs))
    };
    assert_eq!(avail("overlayfs"), listed("overlay"));
    if !listed("ext4") {
        assert!(!avail("ext4"));
    }

    // cgroups: mountinfo, parsed independently here.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let fstypes: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(" - ").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(avail("cgroup_v2"), fstypes.contains(&"cgroup2"));
    let layout = Layout::read().unwrap();
    assert_eq!(avail("cgroup_v1"), !layout.v1.is_empty());
    assert_eq!(Some(info.cgroup_version), layout.version());
    for (c, _) in layout.v1_controllers() {
        assert!(
            info.cgroup_controllers.iter().any(|k| k == c),
            "{c} missing"
        );
    }
    if let Some(mem) = layout.v1_hierarchy("memory").map(|h| &h.mount) {
        assert_eq!(
            avail("memory_swap_accounting"),
            mem.join("memory.memsw.limit_in_bytes").exists()
        );
    }

    // seccomp: the kernel answers PR_GET_SECCOMP.
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        assert!(!avail("seccomp"));
    }
    // pidfd: ask directly.
    // SAFETY: pidfd_open takes a pid and flags; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd >= 0 {
        // SAFETY: we own `fd`.
        unsafe { libc::close(fd as i32) };
    }
    assert_eq!(avail("pidfd"), fd >= 0);

    if !privileged("sysinfo_probes_agree_with_direct_checks (namespace part)") {
        return;
    }
    assert!(
        avail("veth"),
        "veth: {}",
        sysinfo::feature(&info, "veth").unwrap().detail
    );
    // Network: iproute2 in a network namespace of its own, when installed.
    let tools = ["unshare", "ip"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !tools || !Path::new("/proc/self/ns/net").exists() {
        support::skip(
            "sysinfo_probes_agree_with_direct_checks (network part)",
            "needs iproute2 and unshare",
        );
        return;
    }
    let ip = |script: &str| {
        Command::new("unshare")
            .args(["-n", "sh", "-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    // (Link names avoid `ip`'s keyword abbreviations: "a" means "address".)
    let checks = [
        ("veth", "ip link add zfa type veth peer name zfb"),
        ("bridge", "ip link add zfbr type bridge"),
        (
            "bridge_vlan_filtering",
            "ip link add zfbr type bridge && ip link set zfbr type bridge vlan_filtering 1",
        ),
        (
            "vlan_8021q",
            "ip link add zfa type veth peer name zfb && ip link add link zfa name zfa.5 type vlan id 5",
        ),
        (
            "macvlan",
            "ip link add zfa type veth peer name zfb && ip link add link zfa name zfm type macvlan mode bridge",
        ),
        ("vxlan", "ip link add zfvx type vxlan id 42 dstport 4789"),
    ];
    for (name, script) in checks {
        let direct = ip(script);
        eprintln!("{name}: probe {} / iproute2 {direct}", avail(name));
        assert_eq!(
            avail(name),
            direct,
            "{name}: probe says {:?}, iproute2 `{script}` says {direct}",
            sysinfo::feature(&info, name).unwrap().detail
        );
    }
}
