//! Privileged tests of the fleet daemon's converge engine on the real zone library
//! (namespaces, cgroups, the busybox image), fed with the assignment events the
//! controllers' watch stream sends: a snapshot brings zones up, an upsert changes a
//! limit live, a stopped zone halts, a removed one is deleted, the same event twice
//! does nothing, a missing image fails the zone naming it, and a restarted engine
//! adopts the running zones without touching them.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::host::TestHost;
use support::AGENT;
use zonefleet_agent::daemon::assignment::Assignments;
use zonefleet_agent::daemon::converge::Engine;
use zonefleet_agent::zone::host::{HostOptions, ZoneHost};
use zonefleet_agent::zone::{ZoneError, ZoneState};
use zonefleet_proto::pb;
use zonefleet_proto::pb::assignment_event::Event;
use zonefleet_proto::spec::ZoneSpec;

/// The engine's own handle on the test host's data dir (the cgroup parent is the
/// one the data dir was first opened with).
fn engine(t: &TestHost) -> Engine {
    let mut options = HostOptions::new(&t.data);
    options.agent_exe = Some(PathBuf::from(AGENT));
    options.halt_grace = Duration::from_secs(2);
    Engine::open(ZoneHost::open(options).expect("open zone host")).expect("open engine")
}

/// A zone as the controllers send it.
fn zone(uuid: &str, extra: &str, generation: u64, desired: pb::ZoneState) -> pb::Zone {
    let json = format!(
        r#"{{"uuid": "{uuid}", "image": "busybox", "max_physical_memory": 64, "quota": 1, "tmpfs": 16{extra}}}"#
    );
    let spec = ZoneSpec::from_json(&json)
        .expect("test spec")
        .with_defaults();
    pb::Zone {
        spec: Some(spec.into()),
        generation,
        desired_state: desired as i32,
        ..Default::default()
    }
}

fn snapshot(revision: u64, zones: Vec<pb::Zone>) -> pb::AssignmentEvent {
    pb::AssignmentEvent {
        revision,
        event: Some(Event::Snapshot(pb::AssignmentSnapshot { zones })),
    }
}

fn upsert(revision: u64, zone: pb::Zone) -> pb::AssignmentEvent {
    pb::AssignmentEvent {
        revision,
        event: Some(Event::Upsert(zone)),
    }
}

fn removed(revision: u64, uuid: &str) -> pb::AssignmentEvent {
    pb::AssignmentEvent {
        revision,
        event: Some(Event::Removed(uuid.to_owned())),
    }
}

/// (uuid, state, generation) of each report.
fn said(reports: &[pb::ObservedZone]) -> Vec<(String, pb::ZoneState, u64)> {
    reports
        .iter()
        .map(|r| {
            (
                r.uuid.clone(),
                pb::ZoneState::try_from(r.state).unwrap(),
                r.generation,
            )
        })
        .collect()
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn record_mtime(t: &TestHost, uuid: &str) -> std::time::SystemTime {
    std::fs::metadata(t.host.paths(uuid).record())
        .and_then(|m| m.modified())
        .expect("zone record")
}

#[test]
fn assignment_events_converge_the_host_and_the_same_event_twice_does_nothing() {
    let Some(t) = TestHost::new("assignment_events_converge_the_host") else {
        return;
    };
    let mut e = engine(&t);
    let (a, b) = (new_uuid(), new_uuid());
    let running = pb::ZoneState::Running;
    let stopped = pb::ZoneState::Installed;

    // A snapshot: A should run, B stay installed.
    let first = snapshot(5, vec![zone(&a, "", 1, running), zone(&b, "", 1, stopped)]);
    assert!(e.apply(first.clone()).unwrap());
    let za = t.host.get(&a).unwrap();
    assert_eq!(za.state, ZoneState::Running);
    assert_eq!(t.host.get(&b).unwrap().state, ZoneState::Installed);
    let mut reports = said(&e.take_reports());
    reports.sort();
    let mut want = vec![
        (a.clone(), pb::ZoneState::Running, 1),
        (b.clone(), pb::ZoneState::Installed, 1),
    ];
    want.sort();
    assert_eq!(reports, want);

    // The same snapshot again, then the same zone in an upsert: nothing changes.
    let mtime = record_mtime(&t, &a);
    assert!(
        e.apply(first).unwrap(),
        "a snapshot at the same revision is applied"
    );
    assert!(e.apply(upsert(6, zone(&a, "", 1, running))).unwrap());
    assert!(
        !e.apply(upsert(6, zone(&a, "", 1, running))).unwrap(),
        "revision 6 again is ignored"
    );
    assert!(
        !e.apply(upsert(4, zone(&a, "", 9, stopped))).unwrap(),
        "an older revision is ignored"
    );
    e.resync();
    assert!(e.take_reports().is_empty(), "nothing to report");
    let again = t.host.get(&a).unwrap();
    assert_eq!(again.state, ZoneState::Running);
    assert_eq!(again.init_pid, za.init_pid, "the same init: not rebooted");
    assert_eq!(
        record_mtime(&t, &a),
        mtime,
        "the zone's record was not rewritten"
    );

    // A new memory cap: applied live, read back from the cgroup, same init.
    assert!(e
        .apply(upsert(
            7,
            zone(&a, r#", "max_physical_memory": 128"#, 2, running)
        ))
        .unwrap());
    let limit = std::fs::read_to_string(t.cgroup_dir("memory", &a).join("memory.limit_in_bytes"))
        .expect("memory limit");
    assert_eq!(limit.trim(), (128u64 << 20).to_string());
    let updated = t.host.get(&a).unwrap();
    assert_eq!(updated.init_pid, za.init_pid, "updated live, not rebooted");
    assert_eq!(updated.record.spec.max_physical_memory, Some(128));
    assert_eq!(
        said(&e.take_reports()),
        [(a.clone(), pb::ZoneState::Running, 2)]
    );

    // Desired stopped: halted.
    assert!(e
        .apply(upsert(
            8,
            zone(&a, r#", "max_physical_memory": 128"#, 3, stopped)
        ))
        .unwrap());
    assert_eq!(t.host.get(&a).unwrap().state, ZoneState::Installed);
    let reports = e.take_reports();
    assert_eq!(said(&reports), [(a.clone(), pb::ZoneState::Installed, 3)]);

    // Removed: gone from the host, reported deleted; B is not touched.
    assert!(e.apply(removed(9, &a)).unwrap());
    assert!(matches!(t.host.get(&a), Err(ZoneError::NotFound(_))));
    assert!(!t.host.paths(&a).dir.exists());
    assert_eq!(
        said(&e.take_reports()),
        [(a.clone(), pb::ZoneState::Deleted, 3)]
    );
    assert_eq!(t.host.get(&b).unwrap().state, ZoneState::Installed);

    // An image this host lacks: the zone fails, the message naming the image.
    let c = new_uuid();
    let mut missing = zone(&c, "", 1, running);
    missing.spec.as_mut().unwrap().image = "nosuch@2".to_owned();
    assert!(e.apply(upsert(10, missing)).unwrap());
    let reports = e.take_reports();
    assert_eq!(said(&reports), [(c.clone(), pb::ZoneState::Failed, 1)]);
    assert!(
        reports[0].message.contains("nosuch@2") && reports[0].message.contains("not on this host"),
        "{}",
        reports[0].message
    );
    assert!(
        matches!(t.host.get(&c), Err(ZoneError::NotFound(_))),
        "nothing half-made"
    );

    // A zone made by hand on the same data dir is never the engine's to touch, even
    // when a snapshot leaves it out.
    let by_hand = t.create(r#"{"alias": "by-hand"}"#);
    assert!(e
        .apply(snapshot(11, vec![zone(&b, "", 1, stopped)]))
        .unwrap());
    assert!(t.host.get(&by_hand.uuid).is_ok());
    // The snapshot removed C (it was assigned, now it is not).
    assert!(said(&e.take_reports()).contains(&(c.clone(), pb::ZoneState::Deleted, 1)));

    // The revision is stored with the desired set.
    let stored = Assignments::load(&t.data).unwrap();
    assert_eq!(stored.revision, 11);
    assert_eq!(
        stored.zones.keys().cloned().collect::<Vec<_>>(),
        vec![b.clone()]
    );

    // A zone whose desired state becomes `deleted` (how the controllers delete) is
    // removed, reported at the generation of the deletion.
    let d = new_uuid();
    assert!(e.apply(upsert(12, zone(&d, "", 1, running))).unwrap());
    assert_eq!(t.host.get(&d).unwrap().state, ZoneState::Running);
    e.take_reports();
    assert!(e
        .apply(upsert(13, zone(&d, "", 2, pb::ZoneState::Deleted)))
        .unwrap());
    assert!(matches!(t.host.get(&d), Err(ZoneError::NotFound(_))));
    assert_eq!(
        said(&e.take_reports()),
        [(d.clone(), pb::ZoneState::Deleted, 2)]
    );
    assert_eq!(Assignments::load(&t.data).unwrap().revision, 13);
}

#[test]
fn a_restarted_engine_adopts_running_zones_and_boots_only_autoboot_ones() {
    let Some(t) = TestHost::new("a_restarted_engine_adopts_running_zones") else {
        return;
    };
    let (a, b, c) = (new_uuid(), new_uuid(), new_uuid());
    let running = pb::ZoneState::Running;
    let mut e = engine(&t);
    assert!(e
        .apply(snapshot(
            3,
            vec![
                zone(&a, "", 1, running),
                zone(&b, r#", "autoboot": true"#, 1, running),
                zone(&c, "", 1, running),
            ],
        ))
        .unwrap());
    let pid_a = t.host.get(&a).unwrap().init_pid.expect("A runs");
    assert_eq!(t.host.get(&b).unwrap().state, ZoneState::Running);
    assert_eq!(
        t.host.get(&b).unwrap().record.spec.autoboot,
        Some(true),
        "autoboot is kept in the zone's record"
    );
    drop(e);

    // As after a host reboot: B and C are no longer running.
    t.host.halt(&b).unwrap();
    t.host.halt(&c).unwrap();

    let mut e = engine(&t);
    assert_eq!(e.revision(), 3, "the revision survives the restart");
    e.start();
    let za = t.host.get(&a).unwrap();
    assert_eq!(za.state, ZoneState::Running);
    assert_eq!(za.init_pid, Some(pid_a), "adopted: the same init pid");
    assert_eq!(
        t.host.get(&b).unwrap().state,
        ZoneState::Running,
        "autoboot"
    );
    assert_eq!(
        t.host.get(&c).unwrap().state,
        ZoneState::Installed,
        "no autoboot: left installed"
    );
    let mut reports = said(&e.take_reports());
    reports.sort();
    let mut want = vec![
        (a.clone(), pb::ZoneState::Running, 1),
        (b.clone(), pb::ZoneState::Running, 1),
        (c.clone(), pb::ZoneState::Installed, 1),
    ];
    want.sort();
    assert_eq!(reports, want, "the new engine reports what it found");

    // An init that exits on its own is reported (installed, with its exit status),
    // not restarted.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid_a),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill A's init from the host");
    // (It may be seen shutting down first, while zsched records the exit.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let reports = loop {
        e.resync();
        let r: Vec<_> = e
            .take_reports()
            .into_iter()
            .filter(|r| r.state != pb::ZoneState::ShuttingDown as i32)
            .collect();
        if !r.is_empty() || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(said(&reports), [(a.clone(), pb::ZoneState::Installed, 1)]);
    assert!(reports[0].init_exit_status.is_some(), "{reports:?}");
    assert_eq!(t.host.get(&a).unwrap().state, ZoneState::Installed);
}
