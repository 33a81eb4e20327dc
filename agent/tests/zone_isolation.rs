//! Privileged tests of what a zone's processes can and cannot do, seen from
//! inside the zone (through `zonefleet-agent zone exec`) and from the host.
//! Every probe runs three times: against busybox zones (a shell loop as init)
//! and whole-system zones (a stock Debian image booting systemd), both with
//! the defaults, their own user namespace included, and against busybox zones
//! with `user_namespace: false` (the zone's root is the host's): the probes hold
//! either way.

mod support;

use support::host::{Image, TestHost};
use zonefleet_proto::spec::{Capability, DEFAULT_LIMIT_PRIV};

fn a_zone_sees_only_its_own_processes_and_its_init_is_pid_1(image: Image) {
    let Some(t) = TestHost::with_image("a_zone_sees_only_its_own_processes", image) else {
        return;
    };
    let z = t.running(r#"{"alias": "pids"}"#);
    let (code, out, err) = t.sh("pids", "ps -o pid,args");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().skip(1).collect();
    let init = lines
        .iter()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect("a PID 1");
    assert!(
        init.contains("/sbin/init"),
        "PID 1 is the zone's init: {out}"
    );
    // busybox: init, its sleep, the exec'd shell and ps: nothing of the host.
    if image.is_busybox() {
        assert!(lines.len() <= 5, "only the zone's processes: {out}");
    }
    assert!(!out.contains("zonefleet-agent"), "no host process: {out}");

    // The host's pids are not there to signal.
    let host_pid = std::process::id();
    let (code, _, err) = t.sh("pids", &format!("kill -TERM {host_pid}"));
    assert_ne!(code, 0, "signalling the host's pid {host_pid} must fail");
    assert!(err.contains("No such process"), "{err}");
    assert!(z.init_pid.is_some());
}

fn processes_of_one_zone_cannot_see_or_signal_another(image: Image) {
    let Some(t) = TestHost::with_image("processes_of_one_zone_cannot_see_or_signal_another", image)
    else {
        return;
    };
    let a = t.running(r#"{"alias": "za"}"#);
    let b = t.running(r#"{"alias": "zb"}"#);
    let b_init = b.init_pid.expect("b runs");
    let (code, _, err) = t.sh("za", &format!("kill -TERM {b_init}"));
    assert_ne!(
        code, 0,
        "za must not reach zb's init (host pid {b_init}): {err}"
    );

    // Files and /tmp are the zone's own.
    let (code, _, err) = t.sh("za", "echo secret > /tmp/a && echo secret > /root-file");
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = t.sh("zb", "ls /tmp; cat /tmp/a /root-file 2>&1");
    assert_ne!(code, 0, "zb has neither file: {out}");
    assert!(!out.contains("secret"), "zb sees za's files: {out}");
    let (_, out, _) = t.sh("za", "cat /tmp/a /root-file");
    assert_eq!(out, "secret\nsecret\n");
    assert_ne!(a.uuid, b.uuid);
}

fn the_hostname_is_the_zones_own_and_setting_it_leaves_the_hosts(image: Image) {
    let Some(t) = TestHost::with_image("the_hostname_is_the_zones_own", image) else {
        return;
    };
    // CAP_SYS_ADMIN lets root in the zone set its hostname (its own UTS namespace).
    t.running(
        r#"{"alias": "named", "hostname": "alpha", "limit_priv": ["CAP_SYS_ADMIN", "CAP_KILL"]}"#,
    );
    let host_name = nix::unistd::gethostname().unwrap();
    let (code, out, err) = t.sh(
        "named",
        "hostname; cat /etc/hostname; hostname beta && hostname",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "alpha\nalpha\nbeta\n");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host_name,
        "the host's hostname is unchanged"
    );
}

/// What `mount` says when mount(2) fails with EPERM, and only then: busybox
/// "permission denied (are you root?)" (any other errno is printed as
/// "mounting … failed: <strerror>"), util-linux "…: permission denied."
fn mount_eperm(err: &str) -> bool {
    err.to_lowercase().contains("permission denied")
}

/// Mounts a tmpfs on a directory made first, so a missing mount point cannot be
/// why the mount fails.
const MOUNT_ON_A_DIRECTORY: &str =
    "mkdir -p /tmp/mnt && test -d /tmp/mnt && mount -t tmpfs none /tmp/mnt";

fn metadata_json_inside_the_zone_holds_its_identity_metadata_and_tags(image: Image) {
    let Some(t) = TestHost::with_image("metadata_json_inside_the_zone", image) else {
        return;
    };
    let zone = t.running(
        r#"{"alias": "meta", "hostname": "meta-host",
            "customer_metadata": {"role": "web", "user-script": "echo hi"},
            "tags": {"tier": "front"}}"#,
    );
    let (code, out, err) = t.sh("meta", "cat /.zonecontrol/metadata.json");
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("metadata.json is JSON");
    assert_eq!(
        doc,
        serde_json::json!({
            "uuid": zone.uuid,
            "alias": "meta",
            "hostname": "meta-host",
            "customer_metadata": {"role": "web", "user-script": "echo hi"},
            "tags": {"tier": "front"},
        })
    );
    // Read-only inside the zone.
    let (code, _, err) = t.sh("meta", "echo x > /.zonecontrol/metadata.json");
    assert_ne!(code, 0, "metadata.json must not be writable: {err}");
}

fn mount_mknod_and_namespaces_are_refused_even_with_capabilities(image: Image) {
    let Some(t) = TestHost::with_image("mount_mknod_and_namespaces_are_refused", image) else {
        return;
    };
    t.running(r#"{"alias": "plain"}"#);
    // The mount point exists (the busybox image has no /mnt), so the only
    // reason left for the refusal is the kernel's answer: seccomp's EPERM.
    let (code, _, err) = t.sh("plain", MOUNT_ON_A_DIRECTORY);
    assert_ne!(code, 0, "mount must fail: {err}");
    assert!(mount_eperm(&err), "EPERM: {err}");
    let (code, _, err) = t.sh("plain", "mknod /tmp/sda b 8 0");
    assert_ne!(code, 0, "mknod must fail: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");

    // With CAP_SYS_ADMIN and CAP_MKNOD in limit_priv, seccomp and the device
    // cgroup still hold.
    t.running(r#"{"alias": "capable", "limit_priv": ["CAP_SYS_ADMIN", "CAP_MKNOD"]}"#);
    let (code, _, err) = t.sh("capable", MOUNT_ON_A_DIRECTORY);
    assert_ne!(code, 0, "seccomp must refuse mount: {err}");
    assert!(mount_eperm(&err), "EPERM: {err}");
    let (code, _, err) = t.sh("capable", "unshare -n true");
    assert_ne!(code, 0, "seccomp must refuse new namespaces: {err}");
    assert!(err.contains("Operation not permitted"), "EPERM: {err}");
    let (code, _, err) = t.sh("capable", "mknod /tmp/sda b 8 0 && head -c1 /tmp/sda");
    assert_ne!(code, 0, "a block device must not open: {err}");
}

fn dev_holds_only_the_allowed_nodes_and_sys_is_read_only(image: Image) {
    let Some(t) = TestHost::with_image("dev_holds_only_the_allowed_nodes", image) else {
        return;
    };
    t.running(r#"{"alias": "devs"}"#);
    let (code, out, err) = t.sh("devs", "ls /dev");
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<&str> = out.split_whitespace().collect();
    names.sort();
    if image.is_busybox() {
        assert_eq!(
            names,
            [
                "console", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
                "stdout", "tty", "urandom", "zero"
            ]
        );
    }
    // Whatever the zone's init added (systemd: /dev/log…), every device node
    // is one of the allowed ones: memory devices, tty, the ptys.
    let (code, out, err) = t.sh(
        "devs",
        "find /dev -xdev \\( -type c -o -type b \\) -exec stat -c '%F %t:%T %n' {} +",
    );
    assert_eq!(code, 0, "{err}");
    for line in out.lines() {
        let allowed = line.starts_with("character special file")
            && ["1:3 ", "1:5 ", "1:7 ", "1:8 ", "1:9 ", "5:0 ", "88:"]
                .iter()
                .any(|id| line.contains(&format!(" {id}")));
        assert!(allowed, "a device node the zone must not have: {line}");
    }
    let (code, _, _) = t.sh(
        "devs",
        "head -c 8 /dev/urandom > /dev/null && echo ok > /dev/null",
    );
    assert_eq!(code, 0);
    let (code, _, err) = t.sh("devs", "touch /sys/zonefleet-test");
    assert_ne!(code, 0, "/sys must be read-only: {err}");
    assert!(err.contains("Read-only file system"), "{err}");
}

fn sensitive_proc_paths_cannot_be_written(image: Image) {
    let Some(t) = TestHost::with_image("sensitive_proc_paths_cannot_be_written", image) else {
        return;
    };
    // Even a zone whose limit_priv holds CAP_SYS_ADMIN.
    t.running(r#"{"alias": "procs", "limit_priv": ["CAP_SYS_ADMIN"]}"#);
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let (code, _, err) = t.sh("procs", "echo '|/tmp/x' > /proc/sys/kernel/core_pattern");
    assert_ne!(code, 0, "core_pattern must not be writable: {err}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    let (code, _, err) = t.sh("procs", "echo h > /proc/sysrq-trigger");
    assert_ne!(code, 0, "sysrq-trigger must not be writable: {err}");
    let (code, out, _) = t.sh("procs", "wc -c < /proc/kcore");
    assert!(code != 0 || out.trim() == "0", "kcore is masked: {out}");
}

fn the_capability_bounding_set_equals_limit_priv(image: Image) {
    let Some(t) = TestHost::with_image("the_capability_bounding_set_equals_limit_priv", image)
    else {
        return;
    };
    let mask = |caps: &[Capability]| caps.iter().fold(0u64, |m, c| m | 1u64 << c.number());
    t.running(r#"{"alias": "dflt"}"#);
    t.running(r#"{"alias": "two", "limit_priv": ["CAP_NET_RAW", "CAP_KILL"]}"#);
    for (zone, want) in [
        ("dflt", mask(DEFAULT_LIMIT_PRIV)),
        ("two", mask(&[Capability::NetRaw, Capability::Kill])),
    ] {
        for pid in ["1", "self"] {
            let (code, out, err) = t.sh(zone, &format!("grep CapBnd /proc/{pid}/status"));
            assert_eq!(code, 0, "{err}");
            let got = u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap();
            assert_eq!(
                got, want,
                "{zone}: CapBnd of {pid} is {got:x}, limit_priv is {want:x}"
            );
        }
        // no_new_privs is not set (su and setuid programs work, as in any
        // system): what they gain is bounded by the bounding set checked above.
        let (_, out, _) = t.sh(zone, "grep NoNewPrivs /proc/self/status");
        assert_eq!(
            out.split_whitespace().nth(1),
            Some("0"),
            "no_new_privs is not set"
        );
    }
}

fn no_descriptor_of_the_agent_leaks_into_a_zone(image: Image) {
    let Some(t) = TestHost::with_image("no_descriptor_of_the_agent_leaks_into_a_zone", image)
    else {
        return;
    };
    // An init that opens nothing itself (a shell init holds its script open).
    t.running(r#"{"alias": "fds", "init": ["/bin/sleep", "3600"]}"#);
    let (code, out, err) = t.sh("fds", "ls /proc/1/fd");
    assert_eq!(code, 0, "{err}");
    let mut fds: Vec<u32> = out.split_whitespace().map(|f| f.parse().unwrap()).collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2], "init holds only stdio");
    let (_, out, _) = t.sh("fds", "for f in 0 1 2; do readlink /proc/1/fd/$f; done");
    let links: Vec<&str> = out.lines().collect();
    assert!(
        links.len() == 3
            && links
                .iter()
                .all(|l| *l == links[0] && l.starts_with("/dev/pts/")),
        "stdio is the console pty: {links:?}"
    );
    // The exec'd shell: stdio plus the directory `ls` itself opens.
    let (_, out, _) = t.sh("fds", "ls /proc/$$/fd");
    let fds: Vec<u32> = out.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert!(
        fds.iter().all(|&fd| fd <= 3),
        "only stdio in exec'd processes: {fds:?}"
    );
}

fn zone_ps_names_the_zone_of_each_process(image: Image) {
    let Some(t) = TestHost::with_image("zone_ps_names_the_zone_of_each_process", image) else {
        return;
    };
    let a = t.running(r#"{"alias": "psa"}"#);
    let b = t.running(r#"{"alias": "psb"}"#);
    let procs = t.host.ps(None).expect("ps");
    for z in [&a, &b] {
        let init = z.init_pid.unwrap() as u32;
        let p = procs.iter().find(|p| p.pid == init).expect("init listed");
        assert_eq!(p.zone, z.uuid);
        assert_eq!(p.alias, z.alias);
        assert!(p.command.contains("/sbin/init"));
    }
    assert!(procs.iter().all(|p| p.zone == a.uuid || p.zone == b.uuid));
    assert!(
        !procs.iter().any(|p| p.pid == std::process::id()),
        "the host is in no zone"
    );
    let only_a = t.host.ps(Some("psa")).unwrap();
    assert!(!only_a.is_empty() && only_a.iter().all(|p| p.zone == a.uuid));
    // The CLI table names the alias.
    let out = t.agent().args(["zone", "ps", "psb"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().skip(1).all(|l| l.contains("psb")), "{text}");
}

/// Each probe above, against each kind of zone.
macro_rules! against_every_kind {
    ($($name:ident),* $(,)?) => {
        mod busybox {
            use super::*;
            $( #[test] fn $name() { super::$name(Image::Busybox) } )*
        }
        mod systemd {
            use super::*;
            $( #[test] fn $name() { super::$name(Image::Debian) } )*
        }
        mod busybox_without_user_namespace {
            use super::*;
            $( #[test] fn $name() { super::$name(Image::BusyboxHostRoot) } )*
        }
    };
}

against_every_kind!(
    a_zone_sees_only_its_own_processes_and_its_init_is_pid_1,
    processes_of_one_zone_cannot_see_or_signal_another,
    the_hostname_is_the_zones_own_and_setting_it_leaves_the_hosts,
    metadata_json_inside_the_zone_holds_its_identity_metadata_and_tags,
    mount_mknod_and_namespaces_are_refused_even_with_capabilities,
    dev_holds_only_the_allowed_nodes_and_sys_is_read_only,
    sensitive_proc_paths_cannot_be_written,
    the_capability_bounding_set_equals_limit_priv,
    no_descriptor_of_the_agent_leaks_into_a_zone,
    zone_ps_names_the_zone_of_each_process,
);
