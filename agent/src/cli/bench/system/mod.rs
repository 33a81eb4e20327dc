//! `zonefleet-agent bench system`: a whole Debian system, systemd as PID 1, on
//! this host, as a zone and as its peers run it from the same root filesystem:
//! systemd-nspawn and LXC, each with its files idmapped to an id range of its
//! own, its own network namespace with only `lo`, a 256 MiB memory limit.
//!
//! Every boot, of every system, is measured the same way: the page cache is
//! dropped, the clock starts, the system is started (`zone boot` through the
//! zone library, `systemd-nspawn --boot`, `lxc-start -d`), and `nsenter -t
//! <its PID 1> -a systemctl is-system-running` is polled every [`POLL`] until it
//! says `running` or `degraded`: the clock stops. Then its memory is read
//! ([`memory::Memory`]) and it is killed (SIGKILL, no clean shutdown), and the
//! next system boots. The systems take turns run by run (the first one rotates),
//! so a drift in the host's load hits all alike. One warm-up boot of each, not
//! counted, comes first (a root's first boot differs: journal files, machine id).

mod cgroup;
mod lxc;
mod memory;
mod nspawn;
mod probe;
mod report;
mod subids;
mod unpack;
mod zonefleet;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::samples::Samples;
use super::scratch::Scratch;
use memory::Memory;
use probe::SystemState;

/// The memory limit of every system: the zone's `max_physical_memory` of 256.
const MEMORY_BYTES: u64 = 256 << 20;
/// How often `systemctl is-system-running` is asked during a boot.
const POLL: Duration = Duration::from_millis(15);
/// How long a boot may take before the benchmark gives up.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which peers to run next to zonefleet (each also needs its tools installed).
#[derive(Debug, Clone, Copy)]
pub(in crate::cli::bench) struct Peers {
    /// systemd-nspawn (Debian's `systemd-container`).
    pub nspawn: bool,
    /// LXC (Debian's `lxc`).
    pub lxc: bool,
}

/// One system under test: starts the image's systemd, tells its PID 1 and what
/// it costs, and kills it.
trait System {
    /// The system's name in the table.
    fn name(&self) -> &'static str;
    /// Starts the system (returns when its start command has).
    fn start(&mut self) -> anyhow::Result<()>;
    /// Its PID 1 as the host sees it, once there is one.
    fn init_pid(&mut self) -> anyhow::Result<Option<i32>>;
    /// What the running system whose PID 1 is `init` costs the host now.
    fn memory(&self, init: i32) -> anyhow::Result<Memory>;
    /// Kills the system and waits until it is gone; a no-op if it is not running.
    fn stop(&mut self) -> anyhow::Result<()>;
}

/// One measured boot.
struct Boot {
    time: Duration,
    state: SystemState,
    memory: Memory,
    /// Processes in the system's PID namespace when it had booted.
    processes: usize,
    /// The services running then.
    services: Vec<String>,
    failed: Vec<String>,
}

/// What was measured of one system over every run.
struct Results {
    name: &'static str,
    times: Samples,
    states: Vec<SystemState>,
    memory: Vec<Memory>,
    processes: Vec<usize>,
    services: Vec<usize>,
    /// Units that failed in any boot (why it was `degraded`).
    failed: BTreeSet<String>,
}

impl Results {
    fn new(name: &'static str) -> Results {
        Results {
            name,
            times: Samples::new(name),
            states: Vec::new(),
            memory: Vec::new(),
            processes: Vec::new(),
            services: Vec::new(),
            failed: BTreeSet::new(),
        }
    }

    fn record(&mut self, boot: Boot) {
        self.times.times.push(boot.time);
        self.states.push(boot.state);
        self.memory.push(boot.memory);
        self.processes.push(boot.processes);
        self.services.push(boot.services.len());
        self.failed.extend(boot.failed);
    }
}

/// Runs `bench system`; returns the exit code.
pub(in crate::cli::bench) fn run(image: &Path, runs: usize, peers: Peers) -> anyhow::Result<i32> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("bench system needs root (zones, cgroups, dropping the page cache)");
    }
    if !on_path("nsenter") {
        bail!("nsenter not found: install util-linux");
    }
    let image = image
        .canonicalize()
        .with_context(|| format!("image {}", image.display()))?;
    interrupt::install()?;

    let mut scratch = Scratch::open()?;
    // Zones are killed at once, as the peers are; no clean shutdown is timed.
    scratch.host.halt_grace = Duration::ZERO;
    let scratch = scratch;
    println!(
        "whole-system boot of {}: {runs} runs of each system, interleaved, after one warm-up boot each \
         (debug builds are slower; use --release)",
        image.display()
    );
    let mut systems: Vec<Box<dyn System + '_>> =
        vec![Box::new(zonefleet::Zone::create(&scratch.host, &image)?)];
    if peers.nspawn {
        match missing(&["systemd-nspawn"]) {
            Some(tool) => println!(
                "systemd-nspawn: skipped, {tool} not found (apt-get install systemd-container)"
            ),
            None => {
                let root = scratch.dir.join("nspawn-root");
                unpack::unpack(&image, &root)?;
                let log = scratch.dir.join("nspawn.log");
                systems.push(Box::new(nspawn::Nspawn::new(root, log)?));
            }
        }
    }
    if peers.lxc {
        match missing(&["lxc-start", "lxc-stop", "lxc-info", "lxc-destroy"]) {
            Some(tool) => println!("lxc: skipped, {tool} not found (apt-get install lxc)"),
            None => {
                let root = scratch.dir.join("lxc-root");
                unpack::unpack(&image, &root)?;
                systems.push(Box::new(lxc::Lxc::new(&root, scratch.dir.join("lxc"))?));
            }
        }
    }

    let mut results: Vec<Results> = systems.iter().map(|s| Results::new(s.name())).collect();
    for system in &mut systems {
        let boot = boot_once(system.as_mut())?;
        let services: Vec<&str> = boot
            .services
            .iter()
            .map(|s| s.trim_end_matches(".service"))
            .collect();
        println!(
            "warm-up {:<15} {:>7.1} ms  {}, {} processes, services: {}",
            system.name(),
            boot.time.as_secs_f64() * 1000.0,
            boot.state.as_str(),
            boot.processes,
            services.join(" ")
        );
    }
    for run in 0..runs {
        for k in 0..systems.len() {
            let i = (run + k) % systems.len();
            let boot = boot_once(systems[i].as_mut())?;
            results[i].record(boot);
        }
    }
    report::print(&results);
    Ok(0)
}

/// One boot of `system`, measured (see the module's doc); the system is stopped
/// afterwards, also when the boot failed.
fn boot_once(system: &mut dyn System) -> anyhow::Result<Boot> {
    interrupt::check()?;
    probe::drop_caches()?;
    let start = Instant::now();
    let mut measured = || -> anyhow::Result<Boot> {
        system.start()?;
        let (init, state) = probe::wait_booted(|| system.init_pid(), POLL, BOOT_TIMEOUT)?;
        let time = start.elapsed();
        let memory = system.memory(init)?;
        // After the memory: the queries below start processes in the system.
        let processes = memory::in_pid_namespace_of(init)?.len();
        let services = probe::running_services(init)?;
        let failed = if state == SystemState::Degraded {
            probe::failed_units(init)?
        } else {
            Vec::new()
        };
        Ok(Boot {
            time,
            state,
            memory,
            processes,
            services,
            failed,
        })
    };
    let boot = measured();
    let stopped = system.stop();
    let boot = boot.with_context(|| format!("boot {}", system.name()))?;
    stopped.with_context(|| format!("stop {}", system.name()))?;
    Ok(boot)
}

/// Whether `name` is an executable in a directory of `PATH`.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The first of `tools` that is not installed.
fn missing<'a>(tools: &[&'a str]) -> Option<&'a str> {
    tools.iter().copied().find(|t| !on_path(t))
}

/// The last `lines` lines of a log file, joined by ` / ` (for an error message).
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut tail: Vec<&str> = text
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(lines)
        .collect();
    tail.reverse();
    tail.join(" / ")
}

mod interrupt {
    //! ^C and SIGTERM end the benchmark through its error path, so every guard
    //! removes what it made.

    use std::sync::atomic::{AtomicBool, Ordering};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn note(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    }

    /// Catches SIGINT and SIGTERM from now on.
    pub fn install() -> anyhow::Result<()> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let action = SigAction::new(SigHandler::Handler(note), SaFlags::empty(), SigSet::empty());
        for signal in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { sigaction(signal, &action) }?;
        }
        Ok(())
    }

    /// An error if a signal asked the benchmark to stop.
    pub fn check() -> anyhow::Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted");
        }
        Ok(())
    }
}
