//! The dev fleet's daemons: started detached inside their host's network namespace
//! (their own session, output to a log, pid in a file), so they outlive `zfadm dev up`;
//! stopped by `zfadm dev down` from that pid file, only if the process is still the one
//! started (its command line names the config file).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zonefleet_devfleet::net::HostNs;

/// How long a daemon gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A binary beside this `zfadm` (as `cargo build` and packages install them), else on
/// the PATH.
pub fn binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts `command` (whose arguments include `config`) in `host`, detached, its output
/// appended to the log beside `config` and its pid written beside it.
pub fn start(mut command: Command, host: &HostNs, config: &Path) -> anyhow::Result<u32> {
    let log_path = super::layout::log_file(config);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    zonefleet_devfleet::enter::in_host(&mut command, host)?;
    // SAFETY: runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe: the daemon leaves zfadm's session, so a terminal's hangup
    // or Ctrl-C does not reach it.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let pid = child.id();
    let pid_path = super::layout::pid_file(config);
    std::fs::write(&pid_path, format!("{pid}\n"))
        .with_context(|| format!("writing {}", pid_path.display()))?;
    Ok(pid)
}

/// The pid in the pid file beside `config`, if that process still runs with `config`
/// on its command line.
pub fn running(config: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(super::layout::pid_file(config)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    alive_with(pid, config).then(|| Pid::from_raw(pid))
}

/// Whether `pid` runs (not a zombie) with `config` among its arguments.
fn alive_with(pid: i32, config: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "PID (comm) S …": the state follows the last ')'.
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    if stat.is_empty() || zombie {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let wanted = config.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == wanted)
}

/// Stops the daemon of `config` (SIGTERM, then SIGKILL after a grace) and removes its
/// pid file. Returns whether one was running.
pub fn stop(config: &Path) -> bool {
    let pid_path = super::layout::pid_file(config);
    let Some(pid) = running(config) else {
        let _ = std::fs::remove_file(&pid_path);
        return false;
    };
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while alive_with(pid.as_raw(), config) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(100));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&pid_path);
    true
}
