//! Host loss with the real binaries, each host a network namespace (needs root): an
//! agent SIGKILLed, a host partitioned from every controller with nftables, the
//! controller leader killed while hosts are judged — and, sampled every 100 ms from
//! what the hosts actually run (zsched's runtime records and the process table), no
//! zone ever on two hosts. A last part turns fencing off on one host and shows that
//! the check then does catch a double run (a test of the check itself).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use zonefleet_tests::fleet::Fleet;
use zonefleet_tests::ops::{eventually, fleet_with_agents};
use zonefleet_tests::privileged;
use zonefleet_tests::sampler::{running, Sampler};

/// How often the double-run check samples.
const SAMPLE: Duration = Duration::from_millis(100);

fn sampler(fleet: &Fleet) -> Sampler {
    Sampler::start(
        fleet
            .agents
            .iter()
            .map(|a| (format!("agent-{}", a.n), a.data_dir().to_owned()))
            .collect(),
        SAMPLE,
    )
}

#[test]
fn lost_hosts_zones_move_without_ever_running_twice() {
    if !privileged("lost_hosts_zones_move_without_ever_running_twice") {
        return;
    }
    let started = Instant::now();
    let (mut fleet, ids) = fleet_with_agents(3, &[("r1", true), ("r1", true), ("r2", true)]);

    // Every zone on agent 0 (the others cordoned while they are placed).
    for id in &ids[1..] {
        fleet.zfadm(&fleet.all(), &["host", "cordon", id]).unwrap();
    }
    let movers: Vec<String> = (0..3)
        .map(|n| fleet.create_zone(&format!("mover-{n}"), "reschedule"))
        .collect();
    let stayer = fleet.create_zone("stayer", "wait");
    for id in &ids[1..] {
        fleet
            .zfadm(&fleet.all(), &["host", "uncordon", id])
            .unwrap();
    }
    eventually(
        "the zones running on agent 0",
        Duration::from_secs(60),
        || {
            movers
                .iter()
                .chain([&stayer])
                .all(|z| fleet.placement(z) == (ids[0].clone(), true))
        },
    );
    let stayer_pid = fleet.init_pid(0, &stayer).expect("the stayer runs");
    eprintln!("{:?}: zones running on agent 0", started.elapsed());
    let check = sampler(&fleet);

    // 1. SIGKILL agent 0: down within the TTL (2 s, plus the leader's tick and our
    //    polling), its reschedule zones fenced there and running elsewhere, the wait
    //    zone still assigned and still running (nothing fences it).
    let killed = Instant::now();
    fleet.agents[0].kill();
    eventually("agent 0's host down", Duration::from_secs(5), || {
        fleet.host_status(&ids[0]) == "down"
    });
    let down_after = killed.elapsed();
    eventually(
        "the movers running elsewhere",
        Duration::from_secs(20),
        || {
            movers.iter().all(|z| {
                let (host, running) = fleet.placement(z);
                host != ids[0] && running
            })
        },
    );
    let moved_after = killed.elapsed();
    eprintln!("agent 0 killed: down after {down_after:?}, its zones running elsewhere after {moved_after:?}");
    assert!(down_after < Duration::from_secs(4), "{down_after:?}");
    assert_eq!(
        fleet.placement(&stayer).0,
        ids[0],
        "the wait zone stays assigned"
    );
    let on_0 = running(fleet.agents[0].data_dir());
    assert!(
        on_0.contains(&stayer),
        "the wait zone keeps running: {on_0:?}"
    );
    for z in &movers {
        assert!(!on_0.contains(z), "{z} fenced on agent 0: {on_0:?}");
    }

    // Restart it: the moved zones are destroyed there, the wait zone adopted as it runs.
    fleet.agents[0].start();
    fleet.agents[0].wait_ready(Duration::from_secs(30));
    eventually("agent 0 back", Duration::from_secs(10), || {
        fleet.host_status(&ids[0]) == "ready"
    });
    eventually(
        "the moved zones gone from agent 0",
        Duration::from_secs(20),
        || {
            let local: Vec<Value> = fleet.agents[0].local_zones();
            movers
                .iter()
                .all(|m| !local.iter().any(|z| z["uuid"] == *m))
        },
    );
    assert_eq!(fleet.init_pid(0, &stayer), Some(stayer_pid), "same init");
    eprintln!("{:?}: agent 0 back", started.elapsed());

    // 2. Partition the host that runs mover-0 from every controller: its reschedule
    //    zones halt there before they start elsewhere (the sampler); its wait zones
    //    (none here) would keep running. Heal: nothing runs twice, the moved ones go.
    let (host_of_0, _) = fleet.placement(&movers[0]);
    let cut = ids.iter().position(|id| *id == host_of_0).unwrap();
    let cut_movers: Vec<String> = movers
        .iter()
        .filter(|z| fleet.placement(z).0 == host_of_0)
        .cloned()
        .collect();
    fleet.partition(cut, false);
    let partitioned = Instant::now();
    eventually("the partitioned host down", Duration::from_secs(6), || {
        fleet.host_status(&host_of_0) == "down"
    });
    eventually(
        "its zones running elsewhere",
        Duration::from_secs(20),
        || {
            cut_movers.iter().all(|z| {
                let (host, running) = fleet.placement(z);
                host != host_of_0 && running
            })
        },
    );
    eprintln!(
        "agent {cut} partitioned: its zones running elsewhere after {:?}",
        partitioned.elapsed()
    );
    let on_cut = running(fleet.agents[cut].data_dir());
    for z in &cut_movers {
        assert!(!on_cut.contains(z), "{z} fenced on the partitioned host");
    }
    fleet.partition(cut, true);
    eventually("the partitioned host back", Duration::from_secs(10), || {
        fleet.host_status(&host_of_0) == "ready"
    });
    eventually(
        "the moved zones gone from it",
        Duration::from_secs(20),
        || {
            let local = fleet.agents[cut].local_zones();
            cut_movers
                .iter()
                .all(|m| !local.iter().any(|z| z["uuid"] == *m))
        },
    );

    // 3. Kill the controller leader while every host is judged: no live host goes down
    //    (a new leader grants a full TTL first): their status never changes.
    let before: BTreeMap<String, Value> = fleet.hosts_by_id();
    let leader = fleet.leader(&fleet.all(), Duration::from_secs(10));
    let index = leader as usize - 1;
    if let Some(mut daemon) = fleet.controllers[index].take() {
        daemon.kill();
    }
    let others: Vec<usize> = fleet.all().into_iter().filter(|i| *i != index).collect();
    let judged = Instant::now();
    while judged.elapsed() < Duration::from_secs(6) {
        if let Ok(out) = fleet.zfadm(&others, &["host", "list", "-o", "json"]) {
            let now: Value = serde_json::from_str(&out).unwrap();
            for h in now.as_array().unwrap() {
                let id = h["host_id"].as_str().unwrap();
                assert_eq!(
                    h["status"], "ready",
                    "{id} judged down after the leader died: {h}"
                );
                assert_eq!(
                    h["status_since_unix_ms"], before[id]["status_since_unix_ms"],
                    "{id} changed status after the leader died"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    fleet.controllers[index] = Some(fleet.start_controller(index));

    // 4. A mass loss: two of three hosts cut at once is more than half. The leader
    //    pauses rescheduling and moves nothing (their reschedule zones are fenced where
    //    they are; the wait zone keeps running); `zfadm fleet resume` lifts the pause
    //    and they move to the host left; healed, nothing ran twice and the pause ends.
    let paused =
        |fleet: &Fleet| fleet.zfadm_json(&fleet.all(), &["fleet", "status"])["paused"] == true;
    let stuck: Vec<String> = fleet
        .placements()
        .into_iter()
        .filter(|(z, (host, _))| movers.contains(z) && host != &ids[2])
        .map(|(z, _)| z)
        .collect();
    fleet.partition(0, false);
    fleet.partition(1, false);
    eventually("both cut hosts down", Duration::from_secs(8), || {
        fleet.host_status(&ids[0]) == "down" && fleet.host_status(&ids[1]) == "down"
    });
    eventually("rescheduling paused", Duration::from_secs(5), || {
        paused(&fleet)
    });
    std::thread::sleep(Duration::from_millis(1500));
    for z in &stuck {
        assert_ne!(fleet.placement(z).0, ids[2], "{z} moved during the pause");
    }
    fleet.zfadm(&fleet.all(), &["fleet", "resume"]).unwrap();
    eventually(
        "the movers running on the host left",
        Duration::from_secs(20),
        || {
            movers
                .iter()
                .all(|z| fleet.placement(z) == (ids[2].clone(), true))
        },
    );
    fleet.partition(0, true);
    fleet.partition(1, true);
    eventually("the cut hosts back", Duration::from_secs(10), || {
        fleet.host_status(&ids[0]) == "ready" && fleet.host_status(&ids[1]) == "ready"
    });
    // Resumed by hand (overridden) until the loss ends; then simply not paused.
    eventually("the loss over", Duration::from_secs(5), || {
        let status = fleet.zfadm_json(&fleet.all(), &["fleet", "status"]);
        status["paused"] == false && status["overridden"] == false
    });
    assert_eq!(
        fleet.init_pid(0, &stayer),
        Some(stayer_pid),
        "the wait zone ran on"
    );

    // 6. One-way loss: agent 2's host can no longer send to the controllers (what they
    //    send still arrives). No heartbeat arrives, none is answered: down, fenced,
    //    moved, exactly as a full partition.
    fleet.partition_outbound(2, false);
    eventually("the half-cut host down", Duration::from_secs(6), || {
        fleet.host_status(&ids[2]) == "down"
    });
    eventually(
        "its zones running elsewhere",
        Duration::from_secs(20),
        || {
            movers.iter().all(|z| {
                let (host, running) = fleet.placement(z);
                host != ids[2] && running
            })
        },
    );
    fleet.partition_outbound(2, true);
    eventually("the half-cut host back", Duration::from_secs(10), || {
        fleet.host_status(&ids[2]) == "ready"
    });

    // 7. The controllers lose their quorum (two of three killed): no lease can be
    //    renewed, so every host fences its reschedule zones; the wait zone runs on.
    //    Back with a quorum, nothing moved and the fenced zones boot where they were.
    let where_before: Vec<String> = movers.iter().map(|z| fleet.placement(z).0).collect();
    let agent_of = |host: &str| ids.iter().position(|id| id == host).unwrap();
    for index in [1, 2] {
        if let Some(mut daemon) = fleet.controllers[index].take() {
            daemon.kill();
        }
    }
    eventually("every mover fenced", Duration::from_secs(5), || {
        movers
            .iter()
            .zip(&where_before)
            .all(|(z, host)| !running(fleet.agents[agent_of(host)].data_dir()).contains(z))
    });
    assert_eq!(
        fleet.init_pid(0, &stayer),
        Some(stayer_pid),
        "the wait zone runs on"
    );
    for index in [1, 2] {
        fleet.controllers[index] = Some(fleet.start_controller(index));
    }
    eventually(
        "the movers running where they were",
        Duration::from_secs(30),
        || {
            movers
                .iter()
                .zip(&where_before)
                .all(|(z, host)| fleet.placement(z) == (host.clone(), true))
        },
    );

    let report = check.finish();
    eprintln!("double-run check: {} samples", report.samples);
    assert!(report.samples > 100, "{report:?}");
    assert!(
        report.doubles.is_empty(),
        "zones ran on two hosts: {:?}",
        report.doubles
    );
    eprintln!("{:?}: done", started.elapsed());
}

#[test]
fn without_fencing_the_double_run_check_fails() {
    if !privileged("without_fencing_the_double_run_check_fails") {
        return;
    }
    let (fleet, ids) = fleet_with_agents(1, &[("r1", false), ("r1", true)]);
    fleet
        .zfadm(&fleet.all(), &["host", "cordon", &ids[1]])
        .unwrap();
    let zone = fleet.create_zone("unfenced", "reschedule");
    fleet
        .zfadm(&fleet.all(), &["host", "uncordon", &ids[1]])
        .unwrap();
    eventually(
        "the zone running on the unfenced host",
        Duration::from_secs(60),
        || fleet.placement(&zone) == (ids[0].clone(), true),
    );
    let check = sampler(&fleet);
    fleet.partition(0, false);
    eventually(
        "the zone running on the other host",
        Duration::from_secs(20),
        || fleet.placement(&zone) == (ids[1].clone(), true),
    );
    // Give the sampler a few samples of both running.
    std::thread::sleep(Duration::from_millis(500));
    fleet.partition(0, true);
    let report = check.finish();
    assert!(
        report
            .doubles
            .iter()
            .any(|d| d.zone == zone && d.hosts.len() == 2),
        "the check missed the double run of an unfenced zone: {report:?}"
    );
}
