//! Privileged tests of a zone's resource limits, enforced by the real kernel:
//! memory (OOM inside the zone), processes (`max_lwps`), CPU (`cpu_cap`), disk
//! (`quota`), and limits changed live.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::host::TestHost;

#[test]
fn a_memory_hog_is_oom_killed_inside_the_zone_while_others_go_on() {
    let Some(t) = TestHost::new("a_memory_hog_is_oom_killed") else {
        return;
    };
    let hog = t.running(r#"{"alias": "hog", "max_physical_memory": 32, "max_swap": 32}"#);
    t.running(r#"{"alias": "calm"}"#);
    // busybox tail keeps its last "line" in memory; /dev/zero has no newline.
    let (code, _, err) = t.sh("hog", "tail /dev/zero");
    assert_eq!(code, 137, "the hog is killed with SIGKILL: {err}");
    let usage = t.host.cgroups.usage(&hog.uuid).expect("usage");
    assert!(usage.oom_kills >= 1, "the zone's OOM count rose: {usage:?}");
    // The zone's init, the other zone and the host go on.
    let (code, out, _) = t.sh("hog", "echo alive");
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    let (code, _, _) = t.sh("calm", "true");
    assert_eq!(code, 0);
    assert_eq!(
        t.host.get("hog").unwrap().init_pid,
        hog.init_pid,
        "init survived"
    );
}

#[test]
fn a_fork_bomb_stops_at_max_lwps() {
    let Some(t) = TestHost::new("a_fork_bomb_stops_at_max_lwps") else {
        return;
    };
    let z = t.running(r#"{"alias": "bomb", "max_lwps": 12}"#);
    let (_, _, err) = t.sh(
        "bomb",
        "i=0; while [ $i -lt 40 ]; do sleep 20 >/dev/null 2>&1 & i=$((i+1)); done",
    );
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "{err}"
    );
    let pids = t.host.cgroups.pids(&z.uuid).unwrap();
    assert!(
        pids.len() <= 12,
        "at most max_lwps processes: {}",
        pids.len()
    );
    let max = std::fs::read_to_string(t.cgroup_dir("pids", &z.uuid).join("pids.max")).unwrap();
    assert_eq!(max.trim(), "12");
}

#[test]
fn cpu_cap_50_holds_a_busy_loop_near_half_a_cpu() {
    let Some(t) = TestHost::new("cpu_cap_50_holds_a_busy_loop") else {
        return;
    };
    let z = t.running(r#"{"alias": "busy", "cpu_cap": 50}"#);
    let mut busy = t
        .agent()
        .args([
            "zone",
            "exec",
            "busy",
            "--",
            "/bin/sh",
            "-c",
            "while :; do :; done",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn busy loop");
    // Let the loop start, then measure over two seconds from the cgroup's usage.
    std::thread::sleep(Duration::from_millis(300));
    let start = (
        Instant::now(),
        t.host.cgroups.usage(&z.uuid).unwrap().cpu_usage_ns,
    );
    std::thread::sleep(Duration::from_secs(2));
    let end = (
        Instant::now(),
        t.host.cgroups.usage(&z.uuid).unwrap().cpu_usage_ns,
    );
    let cpus = (end.1 - start.1) as f64 / (end.0 - start.0).as_nanos() as f64;
    let _ = busy.kill();
    let _ = busy.wait();
    eprintln!("cpu_cap 50: the busy loop used {cpus:.3} CPUs");
    assert!(
        (0.35..=0.60).contains(&cpus),
        "near half a CPU, got {cpus:.3}"
    );
}

#[test]
fn writing_past_quota_fails_with_enospc() {
    let Some(t) = TestHost::new("writing_past_quota_fails_with_enospc") else {
        return;
    };
    t.running(r#"{"alias": "full", "quota": 1}"#);
    let (code, _, err) = t.sh("full", "dd if=/dev/zero of=/big bs=1M count=1200");
    assert_ne!(code, 0, "a write past 1 GiB must fail");
    assert!(err.contains("No space left on device"), "{err}");
    let (_, out, _) = t.sh("full", "ls -l /big");
    let size: u64 = out.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(size <= 1 << 30, "wrote {size} bytes into a 1 GiB quota");
    // /tmp is the zone's tmpfs, sized separately.
    let (code, _, err) = t.sh("full", "dd if=/dev/zero of=/tmp/big bs=1M count=32");
    assert_ne!(code, 0, "the 16 MiB /tmp is full: {err}");
}

#[test]
fn limits_change_live_on_a_running_zone_and_are_read_back() {
    let Some(t) = TestHost::new("limits_change_live") else {
        return;
    };
    let z = t.running(
        r#"{"alias": "live", "max_physical_memory": 64, "cpu_cap": 100, "max_lwps": 100}"#,
    );
    let read = |ctl: &str, file: &str| {
        std::fs::read_to_string(t.cgroup_dir(ctl, &z.uuid).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    t.host
        .update(
            "live",
            &patch(
                r#"{"max_physical_memory": 96, "max_swap": 128, "cpu_cap": 150, "max_lwps": 50}"#,
            ),
        )
        .expect("update");
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        read("memory", "memory.memsw.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "150000");
    assert_eq!(read("pids", "pids.max"), "50");
    let status = t.host.get("live").unwrap();
    assert_eq!(status.init_pid, z.init_pid, "the zone kept running");
    assert_eq!(status.record.spec.max_physical_memory, Some(96));

    // A bad patch changes nothing.
    let err = t
        .host
        .update("live", &patch(r#"{"max_physical_memory": 0}"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_physical_memory: 0"), "{err}");
    let err = t
        .host
        .update("live", &patch(r#"{"quota": 5}"#))
        .unwrap_err()
        .to_string();
    // The controllers' UpdateZone refuses it the same way (controller/tests/zone_update.rs).
    assert_eq!(
        err,
        "quota: 5 cannot change on an existing zone (the zone's disk is made at install); allowed 1 (the current value)"
    );
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
}

fn patch(json: &str) -> zonefleet_proto::spec::ZonePatch {
    zonefleet_proto::spec::ZonePatch::from_json(json).unwrap()
}
