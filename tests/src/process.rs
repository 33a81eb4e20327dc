//! The real binaries of a multi-host test, each run inside a host's network namespace
//! (only the network namespace: mounts, cgroups and pids stay the machine's, as on a
//! real host's global zone), with its output kept in a log file the test prints when it
//! fails. Every wait is bounded.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use zonefleet_devfleet::enter::in_host;

use crate::netns::HostNs;

/// Runs a one-shot `command` in `host` (or the root namespace), killing it after
/// `limit`: its output, or why it did not finish.
pub fn run_in(host: Option<&HostNs>, mut command: Command, limit: Duration) -> Output {
    if let Some(host) = host {
        in_host(&mut command, host).expect("enter the host's namespace");
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("wait for the command"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// A long-running binary of the fleet (a controller, an agent), stopped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

/// How long a daemon gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

impl Daemon {
    /// Starts `command` in `host`, its stdout and stderr appended to `log`.
    pub fn start(
        name: &str,
        host: &HostNs,
        mut command: Command,
        log: &Path,
    ) -> std::io::Result<Daemon> {
        let out = File::options().create(true).append(true).open(log)?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        in_host(&mut command, host)?;
        let child = command.spawn()?;
        Ok(Daemon {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// Its name in the test's messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills it with SIGKILL (a crash, a power cut) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it with SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- log of {} ({}) ----", self.name, self.log.display());
            eprintln!("{}", self.log());
        }
    }
}
