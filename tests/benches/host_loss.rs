//! Host-loss benchmark (needs root; release binaries: `cargo build --release --bins`):
//! three controllers and three agents, each host a network namespace; KILLS times (20
//! by default) ZONES `reschedule` zones (10) are placed on one agent, which is then
//! SIGKILLed, and the time until its host is `down` and until every one of its zones
//! runs elsewhere is taken; the agent is restarted (its moved zones destroyed there)
//! and the zones deleted before the next round. Prints p50/p99 of both.

use std::time::{Duration, Instant};

use zonefleet_tests::ops::{eventually, fleet_with_agents};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("host_loss bench: needs root (network namespaces, zones); skipped");
        return;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let kills = args.first().copied().unwrap_or(20);
    let zones = args.get(1).copied().unwrap_or(10);
    let (mut fleet, ids) = fleet_with_agents(3, &[("r1", true), ("r1", true), ("r2", true)]);
    let (mut down, mut moved) = (Vec::new(), Vec::new());
    for round in 0..kills {
        let victim = round % ids.len();
        let others: Vec<&String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, id)| id)
            .collect();
        for id in &others {
            fleet.zfadm(&fleet.all(), &["host", "cordon", id]).unwrap();
        }
        let uuids: Vec<String> = (0..zones)
            .map(|z| fleet.create_zone(&format!("r{round}z{z}"), "reschedule"))
            .collect();
        for id in &others {
            fleet
                .zfadm(&fleet.all(), &["host", "uncordon", id])
                .unwrap();
        }
        eventually(
            "the zones running on the victim",
            Duration::from_secs(120),
            || {
                let p = fleet.placements();
                uuids
                    .iter()
                    .all(|u| p.get(u) == Some(&(ids[victim].clone(), true)))
            },
        );
        let killed = Instant::now();
        fleet.agents[victim].kill();
        let mut down_at = None;
        eventually(
            "every zone running elsewhere",
            Duration::from_secs(60),
            || {
                if down_at.is_none() && fleet.host_status(&ids[victim]) == "down" {
                    down_at = Some(killed.elapsed());
                }
                let p = fleet.placements();
                uuids.iter().all(|u| {
                    p.get(u)
                        .is_some_and(|(host, running)| *host != ids[victim] && *running)
                })
            },
        );
        let all = killed.elapsed();
        let d = down_at.unwrap_or(all);
        eprintln!("round {round}: host {victim} down after {d:?}, its {zones} zones running elsewhere after {all:?}");
        down.push(d);
        moved.push(all);
        fleet.agents[victim].start();
        fleet.agents[victim].wait_ready(Duration::from_secs(30));
        eventually("the victim back", Duration::from_secs(30), || {
            fleet.host_status(&ids[victim]) == "ready"
        });
        for u in &uuids {
            let _ = fleet.zfadm(&fleet.all(), &["zone", "delete", u]);
        }
        eventually("the round's zones gone", Duration::from_secs(60), || {
            let p = fleet.placements();
            uuids.iter().all(|u| !p.contains_key(u))
        });
    }
    down.sort();
    moved.sort();
    println!(
        "host loss, {kills} SIGKILLs of an agent with {zones} reschedule zones (lease TTL 2 s, fence margin 0.5 s, reschedule margin 0.5 s):"
    );
    println!(
        "  host down:                      p50 {:?}  p99 {:?}",
        percentile(&down, 0.5),
        percentile(&down, 0.99)
    );
    println!(
        "  every zone running elsewhere:   p50 {:?}  p99 {:?}",
        percentile(&moved, 0.5),
        percentile(&moved, 0.99)
    );
}
