//! `zonefleet-agent bench`: measures zones on this host next to other tools
//! running the same root filesystem.
//!
//! - `boot` ([`boot`]): zone boot and full-cycle times next to Debian's runc;
//! - `system` ([`system`]): a whole Debian system, systemd as PID 1, from start to
//!   `systemctl is-system-running` = running, and the memory it costs the host,
//!   next to systemd-nspawn and LXC.

mod boot;
mod samples;
mod scratch;
mod system;

use std::path::PathBuf;

use clap::Subcommand;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Zone boot and full-cycle times, p50 and p99, next to runc.
    Boot {
        /// A root filesystem archive (e.g. from deploy/images/build-busybox.sh).
        #[arg(long)]
        image: PathBuf,
        /// Runs of each measurement.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        /// Skip the runc comparison.
        #[arg(long)]
        no_runc: bool,
        /// Also measure zones with one NIC (a veth on a bridge of the benchmark's
        /// own, with the anti-spoofing rules), next to the numbers without.
        #[arg(long)]
        nic: bool,
    },
    /// A whole system (systemd as PID 1) from start to `is-system-running` =
    /// running or degraded, and its memory, next to systemd-nspawn and LXC on the
    /// same root filesystem, run by run (needs root; drops the page cache before
    /// every boot).
    System {
        /// A root filesystem archive with systemd as /sbin/init (e.g. from
        /// deploy/images/build-debian.sh).
        #[arg(long)]
        image: PathBuf,
        /// Measured boots of each system (after one warm-up boot each).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Skip systemd-nspawn.
        #[arg(long)]
        no_nspawn: bool,
        /// Skip LXC.
        #[arg(long)]
        no_lxc: bool,
    },
}

/// Runs a benchmark; returns the exit code.
pub fn run(cmd: BenchCommand) -> anyhow::Result<i32> {
    match cmd {
        BenchCommand::Boot {
            image,
            runs,
            no_runc,
            nic,
        } => boot::run(&image, runs, !no_runc, nic),
        BenchCommand::System {
            image,
            runs,
            no_nspawn,
            no_lxc,
        } => system::run(
            &image,
            runs,
            system::Peers {
                nspawn: !no_nspawn,
                lxc: !no_lxc,
            },
        ),
    }
}
