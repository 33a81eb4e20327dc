//! The table `bench system` prints, the zonefleet/peer ratios and what each
//! number includes.

use std::time::Duration;

use super::probe::SystemState;
use super::{Results, POLL};

/// Prints the table, one row per system, and the ratios of zonefleet (the
/// first row) to each peer.
pub(super) fn print(results: &[Results]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    println!();
    println!(
        "{:<16} {:>4} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10} {:>7} {:>5} {:>8}",
        "system",
        "runs",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "running",
        "degraded",
        "cgroup MiB",
        "pss MiB",
        "procs",
        "services"
    );
    for r in results {
        let count = |s: SystemState| r.states.iter().filter(|&&x| x == s).count();
        println!(
            "{:<16} {:>4} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>8} {:>10.1} {:>7.1} {:>5} {:>8}",
            r.name,
            r.times.times.len(),
            ms(r.times.quantile(0.5)),
            ms(r.times.quantile(0.99)),
            ms(r.times.mean()),
            count(SystemState::Running),
            count(SystemState::Degraded),
            mib(median(r.memory.iter().map(|m| m.cgroup))),
            mib(median(r.memory.iter().map(|m| m.pss))),
            median(r.processes.iter().map(|&n| n as u64)),
            median(r.services.iter().map(|&n| n as u64)),
        );
    }
    if let Some((ours, peers)) = results.split_first() {
        for peer in peers {
            let boot = |q: Option<f64>| {
                let pick = |r: &Results| match q {
                    Some(q) => r.times.quantile(q),
                    None => r.times.mean(),
                };
                ratio(pick(ours).as_secs_f64(), pick(peer).as_secs_f64())
            };
            let mem = |f: fn(&super::Memory) -> u64| {
                ratio(
                    median(ours.memory.iter().map(f)) as f64,
                    median(peer.memory.iter().map(f)) as f64,
                )
            };
            println!(
                "{} / {}: boot p50 {}, p99 {}, mean {}; memory (median) cgroup {}, pss {}",
                ours.name,
                peer.name,
                boot(Some(0.5)),
                boot(Some(0.99)),
                boot(None),
                mem(|m| m.cgroup),
                mem(|m| m.pss),
            );
        }
    }
    for r in results.iter().filter(|r| !r.failed.is_empty()) {
        let failed: Vec<&str> = r.failed.iter().map(String::as_str).collect();
        println!("{} degraded by: {}", r.name, failed.join(", "));
    }
    println!();
    println!(
        "boot: from the start (zone boot, systemd-nspawn --boot, lxc-start -d) until \
         `nsenter -t <PID 1> -a systemctl is-system-running` says running or degraded \
         (asked every {} ms), the page cache dropped before each boot.",
        POLL.as_millis()
    );
    println!(
        "cgroup: the system's memory cgroup right then (its processes' anonymous memory, \
         the page cache it read while booting, kernel memory) plus the RSS of its supervisor \
         where that runs outside it (zonefleet: zsched; lxc: the LXC monitor; systemd-nspawn \
         runs in the cgroup the benchmark made for it). Median over the runs."
    );
    println!(
        "pss: the proportional set size of every process in the system's PID namespace \
         and of its supervisor (the memory they map, shared pages split between sharers; \
         no page cache they do not map). Median over the runs."
    );
    println!(
        "procs, services: processes in the system's PID namespace and services running, \
         once booted (median)."
    );
}

/// `a / b` to two decimals, or `n/a` when `b` is zero.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".to_string()
    }
}

/// The median of `values` (the upper one of an even count); 0 for none.
fn median(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median([].into_iter()), 0);
        assert_eq!(median([5].into_iter()), 5);
        assert_eq!(median([9, 1, 5].into_iter()), 5);
        assert_eq!(median([4, 1, 3, 2].into_iter()), 3);
        assert_eq!(ratio(1.0, 4.0), "0.25");
        assert_eq!(ratio(1.0, 0.0), "n/a");
    }
}
