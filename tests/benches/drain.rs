//! Drain benchmark (needs root; release binaries: `cargo build --release --bins`): one
//! controller, two agents; ZONES (50) small `reschedule` zones on one host, drained
//! with `zfadm host drain --max-parallel PARALLEL` (10); prints the total time and
//! each move's (from `zone.moving` to `zone.moved` in the drain's JSON events).
//! `cargo bench -p zonefleet-tests --bench drain [-- ZONES PARALLEL]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonefleet_tests::ops::{eventually, fleet_with_agents};

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("drain bench: needs root (network namespaces, zones); skipped");
        return;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let zones = args.first().copied().unwrap_or(50);
    let parallel = args.get(1).copied().unwrap_or(10);
    let (fleet, ids) = fleet_with_agents(1, &[("r1", true), ("r1", true)]);
    fleet
        .zfadm(&fleet.all(), &["host", "cordon", &ids[1]])
        .unwrap();
    let spec = json!({"alias": "small", "image": "busybox", "max_physical_memory": 16,
        "quota": 1, "on_host_lost": "reschedule",
        "init": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]});
    fleet.create_zones(&spec, zones as u32);
    eventually("the zones running", Duration::from_secs(300), || {
        let p = fleet.placements();
        p.len() == zones
            && p.values()
                .all(|(host, running)| *host == ids[0] && *running)
    });
    fleet
        .zfadm(&fleet.all(), &["host", "uncordon", &ids[1]])
        .unwrap();
    let max = parallel.to_string();
    let started = Instant::now();
    let out = fleet
        .zfadm(
            &fleet.all(),
            &[
                "host",
                "drain",
                &ids[0],
                "--max-parallel",
                &max,
                "--deadline",
                "10m",
                "-o",
                "json",
            ],
        )
        .unwrap_or_else(|e| panic!("the drain failed: {e}"));
    let total = started.elapsed();
    let mut began = BTreeMap::new();
    let mut took = Vec::new();
    for line in out.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let uuid = e["uuid"].as_str().unwrap_or_default().to_owned();
        let at = e["elapsed_ms"].as_u64().unwrap_or(0);
        match e["event"].as_str() {
            Some("zone.moving") => {
                began.insert(uuid, at);
            }
            Some("zone.moved") => took.push(at - began.get(&uuid).copied().unwrap_or(at)),
            _ => {}
        }
    }
    took.sort_unstable();
    assert_eq!(took.len(), zones, "{out}");
    println!(
        "drain of one host with {zones} zones at --max-parallel {parallel}: {:.1} s ({:.1} zones/s); one move {} ms median, {} ms max",
        total.as_secs_f64(),
        zones as f64 / total.as_secs_f64(),
        took[zones / 2],
        took[zones - 1]
    );
}
