//! Names of what a run makes: `zft<pid:6 hex><n:1 hex>` then a suffix, short enough for
//! interface names (15 bytes), unique per process and fleet, and carrying the pid so a
//! later run can tell a stale leftover (its process is gone) from a live neighbour's.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::netns::{NetError, Switch};

/// The prefix of everything the harness makes.
pub const PREFIX: &str = "zft";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A new run prefix, e.g. `zft0012ab3`: 10 bytes, leaving 5 for suffixes.
pub fn new_run() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 16, "at most 16 fleets per test process");
    format!("{PREFIX}{:06x}{n:x}", std::process::id() & 0xff_ffff)
}

/// The pid a name made by [`new_run`] carries, if it is one.
fn owner(name: &str) -> Option<i32> {
    let hex = name.strip_prefix(PREFIX)?.get(..6)?;
    i32::from_str_radix(hex, 16).ok()
}

/// Whether `name` is the harness's and its process is gone.
fn stale(name: &str) -> bool {
    owner(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the network namespaces, links and cgroup parents (killing the zones still
/// running in them) that runs whose process is gone left behind (a test killed before
/// its cleanup ran).
pub fn sweep_stale() {
    zonefleet_devfleet::net::sweep(stale);
}

/// The switch of run `run`: its bridge, and the /24 10.233.N.0 with N from the run
/// name, so concurrent runs differ.
pub fn switch(run: &str) -> Result<Switch, NetError> {
    Switch::new(run, [10, 233, subnet_octet(run)])
}

/// A stable octet per run name, avoiding 0 and 255.
fn subnet_octet(run: &str) -> u8 {
    let hash = run.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    (hash % 250) as u8 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_name_carries_its_pid_and_fits_an_interface_name() {
        let run = new_run();
        assert_eq!(run.len(), 10);
        assert_eq!(owner(&run), Some((std::process::id() & 0xff_ffff) as i32));
        assert!(!stale(&run), "this process is alive");
        assert!(format!("{run}h12").len() <= 15);
        assert_eq!(owner("eth0"), None);
        assert!(!stale("zflocal0"));
    }
}
