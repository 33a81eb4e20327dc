//! The double-run check: every `every`, what each agent's host actually runs — read
//! from the zones' runtime records (`<data>/zones/<uuid>/runtime.json`, written by
//! zsched) and checked against the process table (init's pid alive with the recorded
//! start time, not a zombie) — never the controllers' view. A zone seen running on two
//! hosts in one sample is a double run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One zone seen running on more than one host at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleRun {
    /// When, since the sampler started.
    pub at: Duration,
    /// The zone.
    pub zone: String,
    /// The hosts (by the names the sampler was given) that ran it.
    pub hosts: Vec<String>,
}

/// What a sampler saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Samples taken.
    pub samples: usize,
    /// Every double run seen.
    pub doubles: Vec<DoubleRun>,
}

/// A running sampler; [`Sampler::finish`] stops it and returns what it saw.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Report>>,
}

/// The zones running on the host whose agent data dir is `data_dir`.
pub fn running(data_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(zones) = std::fs::read_dir(data_dir.join("zones")) else {
        return out;
    };
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    for zone in zones.flatten() {
        let Ok(bytes) = std::fs::read(zone.path().join("runtime.json")) else {
            continue;
        };
        let Ok(rt) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let pid = rt["init_pid"].as_i64().unwrap_or(0);
        let alive = rt["exit"].is_null()
            && rt["boot_id"].as_str() == Some(boot.trim())
            && pid > 0
            && start_ticks(pid) == rt["init_start_ticks"].as_u64()
            && !zombie(pid);
        if alive {
            out.insert(zone.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn stat(pid: i64) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

fn start_ticks(pid: i64) -> Option<u64> {
    stat(pid)?.get(19)?.parse().ok()
}

fn zombie(pid: i64) -> bool {
    stat(pid).is_some_and(|f| matches!(f.first().map(String::as_str), Some("Z" | "X")))
}

impl Sampler {
    /// Starts sampling the hosts `(name, agent data dir)` every `every`.
    pub fn start(hosts: Vec<(String, PathBuf)>, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut report = Report::default();
                while !stop.load(Ordering::Acquire) {
                    let mut on: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for (name, dir) in &hosts {
                        for zone in running(dir) {
                            on.entry(zone).or_default().push(name.clone());
                        }
                    }
                    report.samples += 1;
                    for (zone, hosts) in on.into_iter().filter(|(_, h)| h.len() > 1) {
                        report.doubles.push(DoubleRun {
                            at: started.elapsed(),
                            zone,
                            hosts,
                        });
                    }
                    std::thread::sleep(every);
                }
                report
            })
        };
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling: what was seen.
    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
