//! Host loss with the real binaries, each host a network namespace (needs root): an
//! agent SIGKILLed, a host partitioned from every controller with nftables, the
//! controller leader killed while hosts are judged — and, sampled every 100 ms from
//! what the hosts actually run (zsched's runtime records and the process table), no
//! zone ever on two hosts. A last part turns fencing off on one host and shows that
//! the check then does catch a double run (a test of the check itself).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonefleet_tests::fleet::Fleet;
use zonefleet_tests::privileged;
use zonefleet_tests::process::run_in;
use zonefleet_tests::sampler::{running, Sampler};

/// How often the double-run check samples.
const SAMPLE: Duration = Duration::from_millis(100);

fn host_id(fleet: &Fleet, agent: usize) -> String {
    std::fs::read_to_string(fleet.agents[agent].data_dir().join("host_id"))
        .unwrap()
        .trim()
        .to_owned()
}

fn hosts(fleet: &Fleet) -> BTreeMap<String, Value> {
    fleet
        .zfadm_json(&fleet.all(), &["host", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|h| (h["host_id"].as_str().unwrap_or_default().to_owned(), h))
        .collect()
}

fn create(fleet: &Fleet, alias: &str, on_host_lost: &str) -> String {
    let spec = json!({"alias": alias, "image": "busybox", "max_physical_memory": 32, "quota": 1,
        "on_host_lost": on_host_lost,
        "init": ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]});
    let file = fleet.dir().join(format!("{alias}.json"));
    std::fs::write(&file, spec.to_string()).unwrap();
    let out = fleet
        .zfadm(
            &fleet.all(),
            &["zone", "create", "-f", file.to_str().unwrap(), "-o", "json"],
        )
        .unwrap_or_else(|e| panic!("zone create {alias}: {e}"));
    let created: Value = serde_json::from_str(&out).unwrap();
    let zone = created.as_array().map_or(&created, |a| &a[0]);
    zone["uuid"].as_str().unwrap().to_owned()
}

/// Waits up to `within` for `check`, failing with `what`.
fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

fn status_of(fleet: &Fleet, host: &str) -> String {
    hosts(fleet)
        .get(host)
        .and_then(|h| h["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Where the controllers say `zone` is, and whether it runs there.
fn placed(fleet: &Fleet, zone: &str) -> (String, bool) {
    let zones = fleet.zones(&fleet.all());
    let Some(z) = zones.values().find(|z| z["uuid"] == zone) else {
        panic!("no zone {zone}: {zones:#?}");
    };
    (
        z["host_id"].as_str().unwrap_or_default().to_owned(),
        z["observed_state"] == "running" && z["leaving_host_id"].as_str().unwrap_or("").is_empty(),
    )
}

/// init's pid of `zone` on agent `i`, from its CLI (absent when not running).
fn init_pid(fleet: &Fleet, i: usize, zone: &str) -> Option<i64> {
    fleet.agents[i]
        .local_zones()
        .into_iter()
        .find(|z| z["uuid"] == zone)
        .and_then(|z| z["init_pid"].as_i64())
}

/// Cuts (or, with `heal`, restores) agent `i`'s host from every controller with an
/// nftables table in its namespace.
fn partition(fleet: &Fleet, i: usize, heal: bool) {
    let host = &fleet.agents[i].host;
    let rules = if heal {
        "delete table inet zftest_partition\n".to_owned()
    } else {
        let controllers: Vec<String> = fleet
            .hosts
            .iter()
            .map(|h| h.address().to_string())
            .collect();
        let set = controllers.join(", ");
        format!(
            "table inet zftest_partition {{\n chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n}}\n"
        )
    };
    let file = fleet.dir().join(format!("partition-{i}-{heal}.nft"));
    std::fs::write(&file, rules).unwrap();
    let mut nft = std::process::Command::new("nft");
    nft.arg("-f").arg(&file);
    let out = run_in(Some(host), nft, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    let mut fleet = Fleet::start(3);
    fleet.leader(&fleet.all(), Duration::from_secs(30));
    let archive = zonefleet_tests::busybox_archive();
    fleet.zfadm_json(
        &fleet.all(),
        &[
            "image",
            "import",
            archive.to_str().unwrap(),
            "--name",
            "busybox",
            "--version",
            "1",
        ],
    );
    for rack in ["r1", "r1", "r2"] {
        fleet.add_agent(rack).wait_ready(Duration::from_secs(30));
    }
    let ids: Vec<String> = (0..3).map(|i| host_id(&fleet, i)).collect();
    eventually("three hosts ready", Duration::from_secs(30), || {
        let h = hosts(&fleet);
        ids.iter()
            .all(|id| h.get(id).is_some_and(|h| h["status"] == "ready"))
    });

    // Every zone on agent 0 (the others cordoned while they are placed).
    for id in &ids[1..] {
        fleet.zfadm(&fleet.all(), &["host", "cordon", id]).unwrap();
    }
    let movers: Vec<String> = (0..3)
        .map(|n| create(&fleet, &format!("mover-{n}"), "reschedule"))
        .collect();
    let stayer = create(&fleet, "stayer", "wait");
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
                .all(|z| placed(&fleet, z) == (ids[0].clone(), true))
        },
    );
    let stayer_pid = init_pid(&fleet, 0, &stayer).expect("the stayer runs");
    eprintln!("{:?}: zones running on agent 0", started.elapsed());
    let check = sampler(&fleet);

    // 1. SIGKILL agent 0: down within the TTL (2 s, plus the leader's tick and our
    //    polling), its reschedule zones fenced there and running elsewhere, the wait
    //    zone still assigned and still running (nothing fences it).
    let killed = Instant::now();
    fleet.agents[0].kill();
    eventually("agent 0's host down", Duration::from_secs(5), || {
        status_of(&fleet, &ids[0]) == "down"
    });
    let down_after = killed.elapsed();
    eventually(
        "the movers running elsewhere",
        Duration::from_secs(20),
        || {
            movers.iter().all(|z| {
                let (host, running) = placed(&fleet, z);
                host != ids[0] && running
            })
        },
    );
    let moved_after = killed.elapsed();
    eprintln!("agent 0 killed: down after {down_after:?}, its zones running elsewhere after {moved_after:?}");
    assert!(down_after < Duration::from_secs(4), "{down_after:?}");
    assert_eq!(
        placed(&fleet, &stayer).0,
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
        status_of(&fleet, &ids[0]) == "ready"
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
    assert_eq!(init_pid(&fleet, 0, &stayer), Some(stayer_pid), "same init");
    eprintln!("{:?}: agent 0 back", started.elapsed());

    // 2. Partition the host that runs mover-0 from every controller: its reschedule
    //    zones halt there before they start elsewhere (the sampler); its wait zones
    //    (none here) would keep running. Heal: nothing runs twice, the moved ones go.
    let (host_of_0, _) = placed(&fleet, &movers[0]);
    let cut = ids.iter().position(|id| *id == host_of_0).unwrap();
    let cut_movers: Vec<String> = movers
        .iter()
        .filter(|z| placed(&fleet, z).0 == host_of_0)
        .cloned()
        .collect();
    partition(&fleet, cut, false);
    let partitioned = Instant::now();
    eventually("the partitioned host down", Duration::from_secs(6), || {
        status_of(&fleet, &host_of_0) == "down"
    });
    eventually(
        "its zones running elsewhere",
        Duration::from_secs(20),
        || {
            cut_movers.iter().all(|z| {
                let (host, running) = placed(&fleet, z);
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
    partition(&fleet, cut, true);
    eventually("the partitioned host back", Duration::from_secs(10), || {
        status_of(&fleet, &host_of_0) == "ready"
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
    let before: BTreeMap<String, Value> = hosts(&fleet);
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
    let mut fleet = Fleet::start(1);
    fleet.leader(&fleet.all(), Duration::from_secs(30));
    let archive = zonefleet_tests::busybox_archive();
    fleet.zfadm_json(
        &fleet.all(),
        &[
            "image",
            "import",
            archive.to_str().unwrap(),
            "--name",
            "busybox",
            "--version",
            "1",
        ],
    );
    fleet
        .add_agent_with(
            "r1",
            zonefleet_tests::fleet::Share {
                memory_mib: 2048,
                cpu_percent: 200,
                disk_gib: 32,
            },
            false,
        )
        .wait_ready(Duration::from_secs(30));
    fleet.add_agent("r1").wait_ready(Duration::from_secs(30));
    let ids: Vec<String> = (0..2).map(|i| host_id(&fleet, i)).collect();
    eventually("both hosts ready", Duration::from_secs(30), || {
        let h = hosts(&fleet);
        ids.iter()
            .all(|id| h.get(id).is_some_and(|h| h["status"] == "ready"))
    });
    fleet
        .zfadm(&fleet.all(), &["host", "cordon", &ids[1]])
        .unwrap();
    let zone = create(&fleet, "unfenced", "reschedule");
    fleet
        .zfadm(&fleet.all(), &["host", "uncordon", &ids[1]])
        .unwrap();
    eventually(
        "the zone running on the unfenced host",
        Duration::from_secs(60),
        || placed(&fleet, &zone) == (ids[0].clone(), true),
    );
    let check = sampler(&fleet);
    partition(&fleet, 0, false);
    eventually(
        "the zone running on the other host",
        Duration::from_secs(20),
        || placed(&fleet, &zone) == (ids[1].clone(), true),
    );
    // Give the sampler a few samples of both running.
    std::thread::sleep(Duration::from_millis(500));
    partition(&fleet, 0, true);
    let report = check.finish();
    assert!(
        report
            .doubles
            .iter()
            .any(|d| d.zone == zone && d.hosts.len() == 2),
        "the check missed the double run of an unfenced zone: {report:?}"
    );
}
