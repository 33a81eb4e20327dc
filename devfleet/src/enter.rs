//! Running a binary of the fleet inside a host's network namespace (only the network
//! namespace: mounts, cgroups and pids stay the machine's, as on a real host's global
//! zone).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::net::HostNs;

/// Makes `command` enter `host`'s network namespace in the child, before it execs.
pub fn in_host(command: &mut Command, host: &HostNs) -> std::io::Result<()> {
    let netns: OwnedFd = host
        .open()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // SAFETY: the closure runs in the forked child before exec; it only calls setns(2),
    // which is async-signal-safe, on a descriptor opened before the fork (moved in and
    // kept open until exec by the closure owning it).
    unsafe {
        command.pre_exec(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let _ = netns.as_raw_fd();
            Ok(())
        });
    }
    Ok(())
}
