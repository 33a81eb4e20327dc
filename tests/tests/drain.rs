//! Cordon and drain with the real binaries: one controller, four agents in two racks.
//! `zfadm host cordon|uncordon --rack` acts on a whole rack; `zfadm host drain --rack r1
//! --max-parallel 2 -o json` moves r1's `on_host_lost: reschedule` zones to r2, never
//! more than two at once (as the controllers' state shows, sampled while it runs, and as
//! its events say), each gone from its old host's agent and running on its new one; a
//! zone whose hard rack spread r2 cannot take is named with the scheduler's explanation
//! and stays; the `wait` zone stays and is listed; the status is non-zero because a
//! zone could not move. With r1 back, draining that zone's host (text output) moves it
//! to its rack-mate. Bad selectors are refused naming what was wrong.
//! (The drain of one host with 50 zones at `--max-parallel 10` is timed by `benches/drain.rs`.)
//! Needs root; fails under `CI=true` without it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonefleet_tests::fleet::{Fleet, Share};
use zonefleet_tests::ops::fleet_with_shares;
use zonefleet_tests::privileged;

/// An init that exits at once on SIGTERM, so a halt takes no grace period.
const INIT: [&str; 3] = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"];

fn hosts(fleet: &Fleet) -> Vec<Value> {
    fleet
        .zfadm_json(&fleet.all(), &["host", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A controller, the busybox image, and agents in `racks` (with `share`), all ready.
fn fleet_with(racks: &[&str], share: Share) -> Fleet {
    let agents: Vec<(&str, bool)> = racks.iter().map(|r| (*r, true)).collect();
    fleet_with_shares(1, &agents, share).0
}

/// A `zfadm` run, killed if it outlives the test.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a finished `zfadm` run said.
struct Said {
    success: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `zfadm ARGS` on the operator's host, calling `sample` every 100 ms while it
/// runs; fails if it takes longer than `limit`.
fn watched(fleet: &Fleet, args: &[&str], limit: Duration, mut sample: impl FnMut()) -> Said {
    let started = Instant::now();
    let mut command = fleet.zfadm_command(args);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut running = Running(Some(command.spawn().expect("spawn zfadm")));
    let child = running.0.as_mut().unwrap();
    // Read as it writes (a full pipe would stall it).
    let mut pipe = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let mut pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "zfadm {args:?} did not finish within {limit:?}"
        );
        sample();
        std::thread::sleep(Duration::from_millis(100));
    };
    running.0 = None;
    Said {
        success: status.success(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}

/// Zones the controllers show moving: leaving a host, or placed and not yet running
/// at their generation.
fn in_flight(zones: &BTreeMap<String, Value>) -> usize {
    zones
        .values()
        .filter(|z| {
            z["leaving_host_id"].as_str().is_some_and(|h| !h.is_empty())
                || z["observed_state"] != "running"
                || z["observed_generation"] != z["generation"]
        })
        .count()
}

/// The uuids of the zones agent `i` runs (its own CLI, on its host).
fn local_running(fleet: &Fleet, i: usize) -> BTreeMap<String, String> {
    fleet.agents[i]
        .local_zones()
        .into_iter()
        .map(|z| {
            (
                z["uuid"].as_str().unwrap_or_default().to_owned(),
                z["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn draining_a_rack_moves_its_zones_two_at_a_time_keeping_rack_spread() {
    if !privileged("draining_a_rack_moves_its_zones_two_at_a_time_keeping_rack_spread") {
        return;
    }
    let started = Instant::now();
    let share = Share {
        memory_mib: 2048,
        cpu_percent: 200,
        disk_gib: 32,
    };
    // Agents 0 and 1 in r1, 2 and 3 in r2.
    let fleet = fleet_with(&["r1", "r1", "r2", "r2"], share);
    let ids = fleet.host_ids();
    let (r1, r2): (BTreeSet<&str>, BTreeSet<&str>) = (
        ids[..2].iter().map(String::as_str).collect(),
        ids[2..].iter().map(String::as_str).collect(),
    );
    eprintln!("{:?}: four hosts ready", started.elapsed());

    // Bad selectors, refused naming what was wrong.
    let err = fleet.zfadm(&fleet.all(), &["host", "cordon"]).unwrap_err();
    assert!(err.contains("no hosts given"), "{err}");
    let err = fleet
        .zfadm(&fleet.all(), &["host", "drain", "--rack", "r9"])
        .unwrap_err();
    assert!(err.contains("no host matches --rack r9"), "{err}");
    let err = fleet
        .zfadm(&fleet.all(), &["host", "uncordon", "no-such-host"])
        .unwrap_err();
    assert!(err.contains("no such host: no-such-host"), "{err}");
    let err = fleet
        .zfadm(
            &fleet.all(),
            &["host", "drain", "--rack", "r1", "--max-parallel", "0"],
        )
        .unwrap_err();
    assert!(err.contains("out of range"), "{err}");

    // r2 cordoned (the whole rack at once): everything is placed in r1.
    let cordoned = fleet.zfadm_json(&fleet.all(), &["host", "cordon", "--rack", "r2"]);
    let cordoned: BTreeSet<&str> = cordoned
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["status"], "cordoned", "{h}");
            h["host_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(cordoned, r2);
    let app = json!({"alias": "app", "image": "busybox", "max_physical_memory": 32, "quota": 1,
        "init": INIT, "on_host_lost": "reschedule"});
    fleet.create_zones(&app, 4);
    // web: at most two a rack (hard).
    let web = json!({"alias": "web", "image": "busybox", "max_physical_memory": 32, "quota": 1,
        "init": INIT, "on_host_lost": "reschedule",
        "placement": {"spread": {"by": "rack", "group": "web", "max_per_domain": 2, "mode": "hard"}}});
    fleet.create_zones(&web, 2);
    let keep = json!({"alias": "keep", "image": "busybox", "max_physical_memory": 32, "quota": 1,
        "init": INIT, "on_host_lost": "wait"});
    fleet.create_zones(&keep, 1);
    fleet.zones_until("r1's zones running", Duration::from_secs(120), |z| {
        z.len() == 7 && z.values().all(|z| z["observed_state"] == "running")
    });
    fleet
        .zfadm(&fleet.all(), &["host", "uncordon", "--rack", "r2"])
        .unwrap();
    // A third web zone: r1 holds two, so it goes to r2.
    let mut third = web.clone();
    third["alias"] = json!("web-2");
    fleet.create_zones(&third, 1);
    let before = fleet.zones_until("all running", Duration::from_secs(60), |z| {
        z.len() == 8 && z.values().all(|z| z["observed_state"] == "running")
    });
    let host_of = |z: &Value| z["host_id"].as_str().unwrap().to_owned();
    for (alias, z) in &before {
        let rack = if alias == "web-2" { &r2 } else { &r1 };
        assert!(rack.contains(host_of(z).as_str()), "{alias}: {z}");
    }
    eprintln!("{:?}: 8 zones running", started.elapsed());

    // Drain r1, two at a time, sampling the controllers' state while it runs.
    let mut most_in_flight = 0;
    let mut samples = 0;
    let said = watched(
        &fleet,
        &[
            "host",
            "drain",
            "--rack",
            "r1",
            "--max-parallel",
            "2",
            "--deadline",
            "3m",
            "-o",
            "json",
        ],
        Duration::from_secs(240),
        || {
            if let Ok(out) = fleet.zfadm(&fleet.all(), &["zone", "list", "-o", "json"]) {
                let zones: Vec<Value> = serde_json::from_str(&out).unwrap();
                let zones = zones
                    .into_iter()
                    .map(|z| (z["uuid"].as_str().unwrap().to_owned(), z))
                    .collect();
                most_in_flight = most_in_flight.max(in_flight(&zones));
                samples += 1;
            }
        },
    );
    eprintln!(
        "{:?}: drained r1 in {:?} ({samples} samples of the controllers' state)\n{}{}",
        started.elapsed(),
        said.took,
        said.stdout,
        said.stderr
    );
    let events: Vec<Value> = said
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"drain.started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"drain.done"), "{kinds:?}");
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };
    // Never more than two at once: as the events say, and as the controllers showed.
    let (mut moving, mut most) = (0i32, 0i32);
    for e in &events {
        match e["event"].as_str().unwrap() {
            "zone.moving" => moving += 1,
            "zone.moved" | "zone.failed" | "zone.deleted" => moving -= 1,
            _ => {}
        }
        most = most.max(moving);
    }
    assert_eq!(most, 2, "two moved at once: {kinds:?}");
    assert!(samples >= 1, "{samples} samples");
    // The bound is the property; whether a sample (a zfadm call, ~100 ms) caught a move
    // in flight depends on the machine's load (the events above show two at once).
    assert!(
        most_in_flight <= 2,
        "{most_in_flight} zones in flight at once"
    );
    // One web zone moved to r2 (two there now); the other could not, and says why.
    let cannot = of("zone.cannot_move");
    assert_eq!(cannot.len(), 1, "{cannot:?}");
    let stuck = cannot[0]["alias"].as_str().unwrap().to_owned();
    assert!(stuck.starts_with("web-"), "{stuck}");
    let why = cannot[0]["why"].as_str().unwrap();
    assert!(why.contains("no host") && why.contains("web"), "{why}");
    let moved: BTreeSet<&str> = of("zone.moved")
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    assert_eq!(moved.len(), 5, "{moved:?}");
    assert!(!moved.contains(stuck.as_str()) && !moved.contains("keep"));
    // The wait zone stayed, listed.
    let staying = of("zone.staying");
    assert_eq!(staying.len(), 1);
    assert_eq!(staying[0]["alias"], "keep");
    assert_eq!(staying[0]["on_host_lost"], "wait");
    // Not all moved: a non-zero status naming the zone.
    assert!(!said.success);
    assert!(
        said.stderr.contains("1 zone did not move") && said.stderr.contains(&stuck),
        "{}",
        said.stderr
    );

    // Afterwards: each moved zone runs in r2, off r1; the rest stayed on their hosts.
    let after = fleet.zones(&fleet.all());
    for (alias, z) in &after {
        assert_eq!(z["leaving_host_id"], "", "{alias}: {z}");
        assert_eq!(z["observed_state"], "running", "{alias}: {z}");
        if moved.contains(alias.as_str()) {
            assert!(r2.contains(host_of(z).as_str()), "{alias}: {z}");
        } else {
            assert_eq!(host_of(z), host_of(&before[alias]), "{alias} stayed");
        }
    }
    // Rack spread kept: at most two web zones a rack.
    let rack_of = |h: &str| if r1.contains(h) { "r1" } else { "r2" };
    let mut web_per_rack = BTreeMap::<&str, usize>::new();
    for (alias, z) in &after {
        if alias.starts_with("web-") {
            *web_per_rack
                .entry(rack_of(z["host_id"].as_str().unwrap()))
                .or_default() += 1;
        }
    }
    assert_eq!(web_per_rack, BTreeMap::from([("r1", 1), ("r2", 2)]));
    // As the hosts' own agents see it: gone from r1's, running on r2's.
    let uuid_of = |alias: &str| after[alias]["uuid"].as_str().unwrap().to_owned();
    let on_r1: BTreeMap<String, String> = (0..2).flat_map(|i| local_running(&fleet, i)).collect();
    let on_r2: BTreeMap<String, String> = (2..4).flat_map(|i| local_running(&fleet, i)).collect();
    for alias in &moved {
        let uuid = uuid_of(alias);
        assert!(!on_r1.contains_key(&uuid), "{alias} still on r1: {on_r1:?}");
        assert_eq!(
            on_r2.get(&uuid).map(String::as_str),
            Some("running"),
            "{alias}"
        );
    }
    for alias in ["keep", stuck.as_str()] {
        assert_eq!(
            on_r1.get(&uuid_of(alias)).map(String::as_str),
            Some("running"),
            "{alias}"
        );
    }
    // r1's hosts stay draining (since when and why shown) until uncordoned.
    let listed = hosts(&fleet);
    for h in &listed {
        let id = h["host_id"].as_str().unwrap();
        let status = if r1.contains(id) { "draining" } else { "ready" };
        assert_eq!(h["status"], status, "{h}");
    }
    let table = fleet.zfadm(&fleet.all(), &["host", "list"]).unwrap();
    assert!(table.contains("draining"), "{table}");
    let back = fleet.zfadm_json(&fleet.all(), &["host", "uncordon", "--rack", "r1"]);
    assert!(back
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["status"] == "ready"));
    // The zone that could not move goes to its rack-mate now (text output this time).
    let stuck_on = host_of(&after[&stuck]);
    let text = fleet
        .zfadm(
            &fleet.all(),
            &["host", "drain", &stuck_on, "--deadline", "2m"],
        )
        .unwrap_or_else(|e| panic!("drain {stuck_on}: {e}"));
    eprintln!("{text}");
    assert!(
        text.starts_with(&format!("draining 1 host ({stuck_on})")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("moved ") && l.contains(&format!("{stuck} ("))),
        "{text}"
    );
    assert!(text.contains("drained 1 host in "), "{text}");
    let last = fleet.zones(&fleet.all());
    let rack_mate = r1.iter().find(|h| **h != stuck_on).unwrap();
    assert_eq!(last[&stuck]["host_id"], *rack_mate, "{:?}", last[&stuck]);
    assert_eq!(last[&stuck]["observed_state"], "running");
    let status = fleet.zfadm(&fleet.all(), &["fleet", "status"]).unwrap();
    assert!(status.contains("automatic rescheduling: on"), "{status}");
    eprintln!("{:?}: checked", started.elapsed());
}
