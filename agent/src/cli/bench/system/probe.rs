//! Asking a system's systemd how far it has booted, the same way for every system
//! under test: `nsenter -t <its PID 1> -a systemctl is-system-running`, which joins
//! every namespace of that init (its user namespace too) from the host.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long one `systemctl` query may take before it counts as no answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What `systemctl is-system-running` says (systemctl(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SystemState {
    /// Early boot, before basic.target.
    Initializing,
    /// Late boot: jobs are still queued.
    Starting,
    /// Booted, every unit fine.
    Running,
    /// Booted, some unit failed.
    Degraded,
    /// The rescue or emergency target is active.
    Maintenance,
    /// Shutting down.
    Stopping,
    /// systemd is not (yet) the init there, or its bus did not answer.
    Offline,
    /// Anything else (`unknown`, an error message, nothing).
    Unknown,
}

impl SystemState {
    /// Parses systemctl's output (one word and a newline).
    pub fn parse(out: &str) -> SystemState {
        match out.trim() {
            "initializing" => SystemState::Initializing,
            "starting" => SystemState::Starting,
            "running" => SystemState::Running,
            "degraded" => SystemState::Degraded,
            "maintenance" => SystemState::Maintenance,
            "stopping" => SystemState::Stopping,
            "offline" => SystemState::Offline,
            _ => SystemState::Unknown,
        }
    }

    /// Whether the boot is over: nothing left to start (`running` or `degraded`).
    pub fn booted(self) -> bool {
        matches!(self, SystemState::Running | SystemState::Degraded)
    }

    /// The word systemctl uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemState::Initializing => "initializing",
            SystemState::Starting => "starting",
            SystemState::Running => "running",
            SystemState::Degraded => "degraded",
            SystemState::Maintenance => "maintenance",
            SystemState::Stopping => "stopping",
            SystemState::Offline => "offline",
            SystemState::Unknown => "unknown",
        }
    }
}

/// Runs `argv` inside every namespace of `init` and returns its stdout; `None`
/// when it did not finish within [`QUERY_TIMEOUT`] (then it is killed).
fn nsenter(init: i32, argv: &[&str]) -> anyhow::Result<Option<String>> {
    let mut child = Command::new("nsenter")
        .arg("-t")
        .arg(init.to_string())
        .arg("-a")
        .args(argv)
        // Looked up inside the system's root: its standard PATH, not the caller's.
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("run nsenter (util-linux)")?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Exited: its output is all in the pipe (a few words, well under its size).
    let out = child.wait_with_output()?;
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// How far the system whose PID 1 is `init` has booted.
pub(super) fn state(init: i32) -> anyhow::Result<SystemState> {
    let out = nsenter(init, &["systemctl", "is-system-running"])?;
    Ok(out.map_or(SystemState::Unknown, |o| SystemState::parse(&o)))
}

/// The units that failed in the system whose PID 1 is `init` (what makes it
/// `degraded`).
pub(super) fn failed_units(init: i32) -> anyhow::Result<Vec<String>> {
    let out = nsenter(
        init,
        &[
            "systemctl",
            "list-units",
            "--failed",
            "--plain",
            "--no-legend",
        ],
    )?
    .unwrap_or_default();
    Ok(unit_names(&out))
}

/// The services running in the system whose PID 1 is `init`.
pub(super) fn running_services(init: i32) -> anyhow::Result<Vec<String>> {
    let out = nsenter(
        init,
        &[
            "systemctl",
            "list-units",
            "--type=service",
            "--state=running",
            "--plain",
            "--no-legend",
        ],
    )?
    .unwrap_or_default();
    Ok(unit_names(&out))
}

/// The unit names in `systemctl list-units --plain --no-legend` output (the
/// first word of each line).
fn unit_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Writes back dirty pages and drops the page cache, dentries and inodes, so the
/// next boot reads its files from disk and is charged for them.
pub(super) fn drop_caches() -> anyhow::Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop caches (needs root)")?;
    Ok(())
}

/// Polls `state` every `poll` until it says the boot is over or `timeout` passes.
pub(super) fn wait_booted(
    mut init: impl FnMut() -> anyhow::Result<Option<i32>>,
    poll: Duration,
    timeout: Duration,
) -> anyhow::Result<(i32, SystemState)> {
    let deadline = Instant::now() + timeout;
    let mut last = SystemState::Unknown;
    loop {
        super::interrupt::check()?;
        if let Some(pid) = init()? {
            last = state(pid)?;
            if last.booted() {
                return Ok((pid, last));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "systemd did not finish booting within {timeout:?} (last state: {})",
                last.as_str()
            );
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_states() {
        assert_eq!(SystemState::parse("running\n"), SystemState::Running);
        assert_eq!(SystemState::parse("degraded\n"), SystemState::Degraded);
        assert_eq!(SystemState::parse("starting\n"), SystemState::Starting);
        assert_eq!(SystemState::parse("offline\n"), SystemState::Offline);
        assert_eq!(SystemState::parse(""), SystemState::Unknown);
        assert_eq!(
            SystemState::parse("Failed to connect to bus"),
            SystemState::Unknown
        );
        let booted: Vec<_> = [
            "initializing",
            "starting",
            "running",
            "degraded",
            "maintenance",
            "stopping",
            "offline",
        ]
        .iter()
        .map(|s| SystemState::parse(s))
        .filter(|s| s.booted())
        .collect();
        assert_eq!(booted, [SystemState::Running, SystemState::Degraded]);
        for s in ["running", "degraded", "maintenance", "offline"] {
            assert_eq!(SystemState::parse(s).as_str(), s);
        }
    }

    #[test]
    fn failed_unit_names() {
        let out = "sys-kernel-debug.mount loaded failed failed Kernel Debug File System\n\
                   nginx.service          loaded failed failed A high performance web server\n";
        assert_eq!(unit_names(out), ["sys-kernel-debug.mount", "nginx.service"]);
        assert!(unit_names("").is_empty());
    }
}
