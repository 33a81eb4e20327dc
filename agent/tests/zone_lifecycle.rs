//! Privileged tests of the zone lifecycle on one host: create → boot → halt →
//! delete through the library and the CLI, zones outliving the agent process,
//! autoboot after a host restart, refusals, and nothing left behind.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::host::{wait_output, TestHost};
use zonefleet_agent::zone::{ZoneError, ZoneState};
use zonefleet_agent::zsched::runtime::Runtime;

fn zone_dirs(t: &TestHost) -> Vec<String> {
    std::fs::read_dir(t.data.join("zones"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Everything a zone may leave on the host: its cgroups, loop devices bound to
/// files in the data dir, processes (zsched, init), mounts of the data dir.
fn leftovers(t: &TestHost) -> Vec<String> {
    let mut found = Vec::new();
    for zone in t.host.cgroups.zones().unwrap() {
        found.push(format!("cgroup {zone}"));
    }
    for l in zonefleet_agent::disk::loopdev::sweep(&t.data).unwrap() {
        found.push(format!("loop device {}", l.device.display()));
    }
    let data = t.data.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&data) {
            found.push(format!("process {}", e.file_name().to_string_lossy()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts.lines().filter(|l| l.contains(&data)) {
        found.push(format!("mount {line}"));
    }
    found
}

#[test]
fn a_zone_goes_through_its_lifecycle_and_bad_requests_change_nothing() {
    let Some(t) = TestHost::new("a_zone_goes_through_its_lifecycle") else {
        return;
    };
    let z = t.create(r#"{"alias": "life"}"#);
    assert_eq!(z.state, ZoneState::Installed);
    assert!(matches!(t.host.halt("life"), Ok(s) if s.state == ZoneState::Installed));
    let running = t.host.boot("life").unwrap();
    assert_eq!(running.state, ZoneState::Running);
    // The zone records (specs) are owner only; the zone still boots.
    {
        use std::os::unix::fs::PermissionsExt;
        let zones = std::fs::metadata(t.data.join("zones")).unwrap();
        assert_eq!(zones.permissions().mode() & 0o777, 0o700);
    }
    assert!(matches!(
        t.host.boot("life"),
        Err(ZoneError::WrongState { .. })
    ));
    // Names: uuid, unique prefix, alias.
    assert_eq!(t.host.get(&z.uuid[..8]).unwrap().uuid, z.uuid);
    assert!(matches!(t.host.get("nope"), Err(ZoneError::NotFound(_))));

    // A second zone with the same alias is refused and leaves nothing.
    let err = t.try_create(r#"{"alias": "life"}"#).unwrap_err();
    assert!(
        err.to_string().contains("alias: \"life\" is already used"),
        "{err}"
    );
    // An invalid spec is refused with every problem named.
    let err = t
        .try_create(r#"{"alias": "../etc", "cpu_cap": 0}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("alias") && err.contains("cpu_cap: 0"), "{err}");
    // An image this host lacks.
    let err = t
        .try_create(r#"{"alias": "noimg", "image": "nothere"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("nothere"), "{err}");
    assert_eq!(
        zone_dirs(&t),
        std::slice::from_ref(&z.uuid),
        "refused creates left nothing"
    );

    let halted = t.host.halt("life").unwrap();
    assert_eq!(halted.state, ZoneState::Installed);
    assert_eq!(
        halted.last_exit.map(|e| e.status),
        Some(0),
        "init exits 0 on SIGTERM: {halted:?}"
    );
    t.host.delete("life").unwrap();
    assert!(zone_dirs(&t).is_empty());
    assert_eq!(leftovers(&t), Vec::<String>::new());
}

#[test]
fn exec_passes_stdio_and_the_exit_status_and_logs_show_the_console() {
    let Some(t) = TestHost::new("exec_passes_stdio_and_the_exit_status") else {
        return;
    };
    t.running(
        r#"{"alias": "io", "init": ["/bin/sh", "-c", "echo hello-console; exec sleep 3600"]}"#,
    );
    let (code, _, _) = t.sh("io", "exit 7");
    assert_eq!(code, 7);
    let mut child = t
        .agent()
        .args(["zone", "exec", "io", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through the zone\n")
        .unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "THROUGH THE ZONE\n");
    let (code, _, err) = t.sh("io", "/no/such/command");
    assert_eq!(code, 127, "{err}");
    let logs = t.host.logs("io").unwrap();
    assert!(String::from_utf8_lossy(&logs).contains("hello-console"));
}

#[test]
fn zones_outlive_the_agent_process_and_report_how_init_ended() {
    let Some(t) = TestHost::new("zones_outlive_the_agent_process") else {
        return;
    };
    let z = t.create(r#"{"alias": "durable"}"#);
    // Boot through the CLI: that agent process is gone when boot returns.
    let out = t
        .agent()
        .args(["zone", "boot", "durable"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |t: &TestHost| -> serde_json::Value {
        let out = t
            .agent()
            .args(["zone", "get", "durable", "-o", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = get(&t);
    assert_eq!(first["state"], "running");
    let init = first["init_pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        get(&t)["init_pid"].as_i64(),
        Some(init),
        "a new agent process finds the same init"
    );

    // init dies while no agent runs: zsched records how.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&t)["state"] != "installed" {
        assert!(
            Instant::now() < deadline,
            "zone still running after its init was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = get(&t);
    assert_eq!(status["last_exit"]["status"], 137, "{status}");
    assert_eq!(status["last_exit"]["signal"], 9);
    support::cgroup::eventually("zsched removed the cgroup", || {
        !t.host.cgroups.exists(&z.uuid).unwrap()
    });
}

#[test]
fn autoboot_zones_come_back_after_a_host_restart() {
    let Some(t) = TestHost::new("autoboot_zones_come_back") else {
        return;
    };
    let auto = t.create(r#"{"alias": "auto", "autoboot": true}"#);
    assert_eq!(auto.state, ZoneState::Running, "autoboot boots at create");
    t.running(r#"{"alias": "manual"}"#);
    let halted = t.create(r#"{"alias": "stopped", "autoboot": true}"#);
    t.host.halt("stopped").unwrap();

    // A host restart: every zone process dies at once, zsched included, so
    // nothing records an exit.
    for uuid in [
        &auto.uuid,
        &t.host.get("manual").unwrap().uuid,
        &halted.uuid,
    ] {
        if let Some(rt) = Runtime::load(&t.host.paths(uuid).dir).unwrap() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(rt.zsched_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if t.host.cgroups.exists(uuid).unwrap() {
            t.host
                .cgroups
                .kill_all(uuid, Duration::from_secs(10))
                .unwrap();
        }
    }
    support::cgroup::eventually("zones are down", || {
        t.host
            .list()
            .unwrap()
            .iter()
            .all(|z| z.state == ZoneState::Installed)
    });

    let booted = t.host.autoboot().unwrap();
    let names: Vec<&str> = booted.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        names,
        [auto.uuid.as_str()],
        "only the autoboot zone that was running comes back"
    );
    assert!(booted[0].1.is_ok());
    assert_eq!(t.host.get("auto").unwrap().state, ZoneState::Running);
    assert_eq!(t.host.get("manual").unwrap().state, ZoneState::Installed);
    assert_eq!(t.host.get("stopped").unwrap().state, ZoneState::Installed);
}

#[test]
fn a_zone_needing_a_feature_this_host_lacks_is_refused() {
    let Some(t) = TestHost::new("a_zone_needing_a_feature_this_host_lacks") else {
        return;
    };
    let vlan = t
        .host
        .features
        .get("bridge_vlan_filtering", t.host.data_dir());
    let result =
        t.try_create(r#"{"alias": "tagged", "nics": [{"ip": "10.99.0.5/24", "vlan_id": 42}]}"#);
    if vlan.available {
        eprintln!("this host has bridge VLAN filtering; the refusal cannot be shown here");
        return;
    }
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("bridge_vlan_filtering"),
        "the error names the feature: {err}"
    );
    assert!(zone_dirs(&t).is_empty(), "nothing of the zone was made");
}

#[test]
fn a_failed_boot_reports_the_step_and_leaves_no_cgroup() {
    let Some(t) = TestHost::new("a_failed_boot_reports_the_step") else {
        return;
    };
    let z = t.create(r#"{"alias": "broken", "init": ["/sbin/no-such-init"]}"#);
    let err = t.host.boot("broken").unwrap_err().to_string();
    assert!(
        err.contains("exec /sbin/no-such-init") && err.contains("ENOENT"),
        "{err}"
    );
    let status = t.host.get("broken").unwrap();
    assert_eq!(status.state, ZoneState::Installed);
    assert!(status.message.unwrap().contains("no-such-init"));
    assert!(!t.host.cgroups.exists(&z.uuid).unwrap());
    assert_eq!(leftovers(&t), Vec::<String>::new());
}

#[test]
fn an_image_in_use_cannot_be_deleted() {
    let Some(t) = TestHost::new("an_image_in_use_cannot_be_deleted") else {
        return;
    };
    t.create(r#"{"alias": "user"}"#);
    let out = t
        .agent()
        .args(["image", "delete", "busybox"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("busybox"));
    t.host.delete("user").unwrap();
    let out = t
        .agent()
        .args(["image", "delete", "busybox"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_hundred_cycles_leave_nothing_behind() {
    let Some(t) = TestHost::new("a_hundred_cycles_leave_nothing_behind") else {
        return;
    };
    let started = Instant::now();
    for i in 0..100 {
        let z = t.create(&format!(r#"{{"alias": "cycle{i}"}}"#));
        t.host.boot(&z.uuid).unwrap();
        t.host.halt(&z.uuid).unwrap();
        t.host.delete(&z.uuid).unwrap();
    }
    eprintln!(
        "100 create→boot→halt→delete cycles in {:?}",
        started.elapsed()
    );
    assert!(zone_dirs(&t).is_empty());
    assert_eq!(leftovers(&t), Vec::<String>::new());
    assert!(
        !Path::new(&t.cgroup_dir("memory", "x"))
            .parent()
            .unwrap()
            .read_dir()
            .unwrap()
            .any(|e| {
                e.map(|e| e.file_type().map(|f| f.is_dir()).unwrap_or(false))
                    .unwrap_or(false)
            }),
        "no zone cgroup under the parent"
    );
}

#[test]
fn an_older_or_edited_zone_record_gets_defaults_and_a_foreign_one_is_refused() {
    let Some(t) = TestHost::new("an_older_or_edited_zone_record") else {
        return;
    };
    let z = t.create(r#"{"alias": "old"}"#);
    let path = t.host.paths(&z.uuid).record();
    // A record written before a property existed lacks it: boot fills the default.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for field in ["tmpfs", "init", "limit_priv"] {
        doc["spec"].as_object_mut().unwrap().remove(field);
    }
    std::fs::write(&path, doc.to_string()).unwrap();
    assert_eq!(t.host.boot("old").unwrap().state, ZoneState::Running);
    t.host.halt("old").unwrap();
    // A record naming another zone is an error naming the file, not a panic.
    doc["spec"]["uuid"] = serde_json::json!("00000000-0000-4000-8000-000000000001");
    std::fs::write(&path, doc.to_string()).unwrap();
    let err = t.host.get(&z.uuid).unwrap_err().to_string();
    assert!(
        err.contains("zone.json") && err.contains("names zone"),
        "{err}"
    );
    doc["spec"]["uuid"] = serde_json::json!(z.uuid);
    std::fs::write(&path, doc.to_string()).unwrap();
}
