//! zsched: the per-zone supervisor. One zsched process per running zone, named
//! after the SmartOS process that anchors each zone. It is started by the boot
//! verb, detaches from the agent (its own session, reparented to the host's
//! init), forks the zone's init into a new PID namespace, records init's pid in
//! `runtime.json`, copies the console into a capped log, and when init exits
//! records the exit status and removes the zone's cgroup. Because it does not
//! depend on the agent process, zones keep running across agent restarts.
//!
//! Protocol with the boot verb: zsched's stdout is a pipe; it writes one line,
//! `ok` once init has exec'd or `error: <why>` if any setup step failed, then
//! closes it.

pub mod console;
pub mod init;
pub mod plan;
pub mod runtime;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::isolation::{self, IsolationError};
use plan::BootPlan;
use runtime::{ExitRecord, Runtime};

use crate::zone::paths::ZSCHED_LOG;

/// Where, in the zone's directory, the stager attaches the idmapped image
/// layer (inside its private mount namespace only; the host sees an empty
/// directory).
pub const IDMAPPED_LOWER_DIR: &str = "lower";

/// Why zsched could not boot or supervise a zone.
#[derive(Debug, thiserror::Error)]
pub enum ZschedError {
    /// An isolation step failed.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// The boot plan is unusable.
    #[error("boot plan: {0}")]
    Plan(String),
    /// Reading or writing the zone's files failed.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The zone's cgroup could not be joined or removed.
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// The zone's root filesystem could not be mounted.
    #[error("zone root: {0}")]
    Disk(String),
    /// init could not be executed.
    #[error("exec {path}: {source}")]
    Exec {
        /// init's path inside the zone.
        path: String,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// A process-level operation (fork, pipe, wait) failed.
    #[error("{what}: {source}")]
    Process {
        /// The operation.
        what: &'static str,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// zsched reported a failure, or said nothing, to the boot verb.
    #[error("{0}")]
    Boot(String),
    /// The zone's network could not be set up.
    #[error("zone network: {0}")]
    Net(#[from] crate::net::NetError),
    /// Starting zsched failed.
    #[error("start zsched: {0}")]
    Spawn(std::io::Error),
    /// The zone's console could not be made or served.
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
}

fn process(what: &'static str) -> impl FnOnce(nix::Error) -> ZschedError {
    move |source| ZschedError::Process { what, source }
}

/// Starts zsched for the plan at `plan_path` using the agent binary `exe`, and
/// waits until init has exec'd (or setup failed). Returns the runtime record.
pub fn spawn(exe: &Path, plan: &BootPlan) -> Result<Runtime, ZschedError> {
    let plan_path = plan.store()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.zone_dir.join(ZSCHED_LOG))
        .map_err(ZschedError::Spawn)?;
    let mut child = Command::new(exe)
        .arg("zsched")
        .arg(&plan_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(ZschedError::Spawn)?;
    let stdout = child.stdout.take().expect("piped stdout");
    // The first zsched process only forks the daemon and exits.
    child.wait().map_err(ZschedError::Spawn)?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(ZschedError::Spawn)?;
    match line.trim_end().strip_prefix("error: ") {
        None if line.trim_end() == "ok" => Runtime::load(&plan.zone_dir)?.ok_or_else(|| {
            ZschedError::Boot("zsched reported ok but wrote no runtime record".into())
        }),
        Some(why) => Err(ZschedError::Boot(why.to_string())),
        None => Err(ZschedError::Boot(format!(
            "zsched ended without a word; see {}",
            plan.zone_dir.join(ZSCHED_LOG).display()
        ))),
    }
}

/// zsched's entry point (`zonefleet-agent zsched PLAN`). Returns the process's
/// exit code. Must run before the process starts any thread.
pub fn main(plan_path: &Path) -> i32 {
    // Detach: the first process exits at once so the boot verb's wait returns,
    // and the daemon, in its own session, is adopted by the host's init.
    // SAFETY: zsched is single-threaded here (called first thing in main).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            println!("error: fork zsched: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    match supervise(plan_path) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("zsched: {e}");
            // The boot verb may still be waiting for its line.
            println!("error: {e}");
            1
        }
    }
}

/// Sends the readiness line and points stdout at /dev/null, closing the pipe so
/// the boot verb's read ends.
fn report_ready(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1, which no Rust object owns; `null` stays valid.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

fn supervise(plan_path: &Path) -> Result<(), ZschedError> {
    let plan = BootPlan::load(plan_path)?;
    // init is forked by the stager, which exits at once: as a subreaper zsched
    // adopts it, so init's exit status comes here.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(process("become a child subreaper")(nix::Error::last()));
    }
    let setup = init::InitSetup::prepare(plan.clone())?;
    // One user namespace for the zone's whole life under this zsched (reboots
    // included), held by this descriptor.
    let userns = plan
        .userns
        .as_ref()
        .map(isolation::userns::create)
        .transpose()?;
    let mut booted = boot_once(&setup, userns.as_ref())?;
    let mut record = booted.runtime();
    record.store(&plan.zone_dir)?;
    report_ready("ok");

    loop {
        let exit = supervise_init(&plan, booted.init, booted.console);
        eprintln!(
            "zsched: init exited with status {}{}",
            exit.status,
            exit.signal
                .map(|s| format!(" (signal {s})"))
                .unwrap_or_default()
        );
        // SIGHUP is how the kernel ends a PID namespace's init that called
        // reboot(2) with RESTART: the zone rebooted itself. Boot it again in
        // place (same cgroup and limits, same user namespace), unless a verb
        // is at work on the zone (a halt wins).
        let rebooted = exit.signal == Some(libc::SIGHUP) && !exit.fenced;
        if rebooted {
            if let Some(next) = reboot(&setup, userns.as_ref(), &mut record, exit) {
                booted = next;
                continue;
            }
        }
        record.exit = Some(exit);
        record.store(&plan.zone_dir)?;
        detach_network(&plan);
        remove_cgroup(&plan);
        return Ok(());
    }
}

/// Boots the zone again after it rebooted itself, holding the zone's lock so
/// no verb runs meanwhile. `None` when a verb holds the lock or is halting the
/// zone, or the boot failed (logged): the zone then stays down.
fn reboot(
    setup: &init::InitSetup,
    userns: Option<&OwnedFd>,
    record: &mut Runtime,
    exit: ExitRecord,
) -> Option<Booted> {
    let plan = &setup.plan;
    let _lock =
        crate::zone::lock::try_exclusive(&plan.zone_dir.join(crate::zone::paths::LOCK_FILE))
            .ok()
            .flatten()?;
    if plan
        .zone_dir
        .join(crate::zone::paths::HALTING_MARK)
        .exists()
    {
        return None;
    }
    eprintln!("zsched: the zone rebooted itself: booting it again");
    record.exit = Some(exit);
    let _ = record.store(&plan.zone_dir);
    detach_network(plan);
    if let Err(e) = cgroup_manager(plan).and_then(|m| {
        m.kill_all(&plan.uuid, Duration::from_secs(10))
            .map_err(|e| ZschedError::Cgroup(e.to_string()))
    }) {
        eprintln!("zsched: reboot: {e}");
        return None;
    }
    match boot_once(setup, userns) {
        Ok(booted) => {
            *record = booted.runtime();
            match record.store(&plan.zone_dir) {
                Ok(()) => Some(booted),
                Err(e) => {
                    eprintln!("zsched: reboot: {e}");
                    None
                }
            }
        }
        Err(e) => {
            eprintln!("zsched: reboot failed: {e}");
            None
        }
    }
}

/// A booted zone: its init (zsched's child) and the console pty's master.
struct Booted {
    init: Pid,
    console: OwnedFd,
}

impl Booted {
    fn runtime(&self) -> Runtime {
        let pid = self.init.as_raw();
        Runtime {
            zsched_pid: std::process::id() as i32,
            init_pid: pid,
            init_start_ticks: crate::proc_stat::process_start_ticks(pid).unwrap_or(0),
            boot_id: crate::proc_stat::current_boot_id().unwrap_or_default(),
            booted_at_unix_ms: crate::clock::now_unix_ms(),
            exit: None,
        }
    }
}

/// One boot: the stager builds the root and forks init into the zone's
/// namespaces; zsched puts the stager in the zone's cgroup and builds the
/// zone's network before init may go on. Returns once init has exec'd.
fn boot_once(setup: &init::InitSetup, userns: Option<&OwnedFd>) -> Result<Booted, ZschedError> {
    let plan = &setup.plan;
    let owner = plan.userns.map_or((0, 0), |r| (r.host_base, r.host_base));
    let pty = console::Pty::open()?;
    pty.chown_slave(owner.0, owner.1)?;
    let slave = pty.open_slave()?;
    plain_output(&slave)?;
    let (err_r, err_w) = pipe()?;
    let (staged_r, staged_w) = pipe()?;
    let (joined_r, joined_w) = pipe()?;
    let (pid_r, pid_w) = pipe()?;
    let (go_r, go_w) = pipe()?;

    // SAFETY: zsched is single-threaded; the stager only runs the setup steps,
    // forks init and _exits, as init::InitSetup documents.
    let stager = match unsafe { fork() }.map_err(process("fork the stager"))? {
        ForkResult::Child => {
            drop((err_r, staged_r, joined_w, pid_r, go_w));
            let fail = |err: ZschedError| -> ! {
                let _ = nix::unistd::write(&err_w, err.to_string().as_bytes());
                // SAFETY: _exit in a forked child: no destructors may run.
                unsafe { libc::_exit(127) }
            };
            if let Err(e) = setup.stage_root(&slave, pty.slave_path(), userns) {
                fail(e);
            }
            // The root is built: wait to be placed in the zone's cgroup.
            let _ = nix::unistd::write(&staged_w, b"s");
            drop(staged_w);
            if !read_byte(&joined_r) {
                // SAFETY: _exit in a forked child: no destructors may run.
                unsafe { libc::_exit(1) };
            }
            if let Err(e) = setup.enter_zone(userns) {
                fail(e);
            }
            // SAFETY: the stager is single-threaded; init only runs the rest
            // of the setup and execve (or _exit).
            match unsafe { fork() } {
                Err(e) => fail(process("fork init")(e)),
                Ok(ForkResult::Child) => {
                    drop(pid_w);
                    if !read_byte(&go_r) {
                        // SAFETY: _exit in a forked child.
                        unsafe { libc::_exit(1) };
                    }
                    fail(setup.finish_and_exec());
                }
                Ok(ForkResult::Parent { child }) => {
                    let _ = nix::unistd::write(&pid_w, &child.as_raw().to_le_bytes());
                    // SAFETY: _exit in a forked child.
                    unsafe { libc::_exit(0) }
                }
            }
        }
        ForkResult::Parent { child } => child,
    };
    // The zone's processes hold the console's slave from here; zsched only the
    // master (the relay notices a console every process closed).
    drop((err_w, staged_w, joined_r, pid_w, go_r, slave));

    let staged = read_byte(&staged_r);
    drop(staged_r);
    let joined = if staged {
        join_cgroup(plan, stager.as_raw())
    } else {
        Ok(())
    };
    if joined.is_ok() && staged {
        let _ = nix::unistd::write(&joined_w, b"j");
    }
    drop(joined_w);
    let mut pid_bytes = [0u8; 4];
    let init = match std::io::Read::read_exact(&mut std::fs::File::from(pid_r), &mut pid_bytes) {
        Ok(()) => Some(Pid::from_raw(i32::from_le_bytes(pid_bytes))),
        Err(_) => None,
    };
    let _ = waitpid(stager, None);
    let abort = |init: Option<Pid>, e: ZschedError| -> ZschedError {
        if let Some(init) = init {
            let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(init, None);
        }
        detach_network(plan);
        e
    };
    joined.map_err(|e| abort(init, e))?;
    if let Some(pid) = init {
        if let Err(e) = attach_network(plan, pid.as_raw()) {
            return Err(abort(init, e));
        }
        let _ = nix::unistd::write(&go_w, b"g");
    }
    drop(go_w);

    // EOF on the error pipe means init's execve succeeded (the pipe is
    // close-on-exec) and the stager is gone.
    let mut failure = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(err_r), &mut failure);
    match init {
        Some(init) if failure.is_empty() => Ok(Booted {
            init,
            console: pty.into_master(),
        }),
        _ => {
            let why = if failure.is_empty() {
                "the stager ended without forking init".to_string()
            } else {
                String::from_utf8_lossy(&failure).into_owned()
            };
            Err(abort(init, ZschedError::Boot(why)))
        }
    }
}

/// Output passed through unchanged (no `\n` to `\r\n`), so the log holds what
/// init wrote; an init that wants a terminal's settings (systemd) sets them.
fn plain_output(slave: &OwnedFd) -> Result<(), ZschedError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, OutputFlags, SetArg};
    let tty = |source| ZschedError::Process {
        what: "set up the console",
        source,
    };
    let mut termios = tcgetattr(slave).map_err(tty)?;
    termios.output_flags.remove(OutputFlags::ONLCR);
    tcsetattr(slave, SetArg::TCSANOW, &termios).map_err(tty)
}

fn read_byte(fd: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    nix::unistd::read(fd, &mut byte) == Ok(1)
}

/// Builds the zone's NICs from the host side while init waits for `go`: its
/// network namespace exists, nothing of the zone runs yet, and zsched (in the
/// host's network namespace, with every capability) can make the host ends,
/// the rules and configure the zone ends through a netlink socket opened in
/// the zone's namespace. The zone's init starts with its network complete.
fn attach_network(plan: &BootPlan, pid: i32) -> Result<(), ZschedError> {
    match &plan.net {
        Some(net) => Ok(crate::net::attach(net, pid)?),
        None => Ok(crate::net::loopback_up(pid)?),
    }
}

/// Removes the zone's host links and rules; best effort (halt and delete
/// try again if this fails).
fn detach_network(plan: &BootPlan) {
    if let Some(net) = &plan.net {
        if let Err(e) = crate::net::detach(net) {
            eprintln!("zsched: remove the network of {}: {e}", plan.uuid);
        }
    }
}

/// Serves init's console (into the log, and to `zone console`) until init
/// exits, then reaps it. Single threaded on purpose (zsched stays one small
/// process): the console relay, init's exit and the fence are waited for
/// together with one `poll` over the relay's descriptors and a pidfd.
fn supervise_init(plan: &BootPlan, child: Pid, console: OwnedFd) -> ExitRecord {
    let path = plan.zone_dir.join(crate::zone::paths::CONSOLE_FILE);
    let log = match console::ConsoleLog::open(&path, plan.console_cap_bytes) {
        Ok(log) => Some(log),
        Err(e) => {
            eprintln!("zsched: console log {}: {e}", path.display());
            None
        }
    };
    let socket = plan.zone_dir.join(crate::zone::paths::CONSOLE_SOCKET);
    let mut relay = match console::ConsoleRelay::new(console, log, &socket) {
        Ok(relay) => Some(relay),
        Err(e) => {
            eprintln!("zsched: console {}: {e}", socket.display());
            None
        }
    };
    let pidfd = crate::process::pidfd_open(child).ok();
    let mut fenced = false;
    let exit = loop {
        // The fence: the host's lease ran out, so the controllers may place the zone
        // elsewhere soon; it must be dead before then. SIGKILL, not a graceful halt:
        // the margin is for the kill, not for a shutdown.
        let mut timeout: Option<Duration> = None;
        if let (Some(lease), false) = (&plan.fence, fenced) {
            let left = crate::fence::remaining(lease);
            if left.is_zero() {
                eprintln!("zsched: the host's lease ran out: fencing the zone");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                fenced = true;
            } else {
                // Woken at the deadline (the lease is read again then: usually renewed).
                timeout = Some(left);
            }
        }
        let mut fds = relay.as_ref().map(|r| r.poll_fds()).unwrap_or_default();
        let first_own = fds.len();
        if let Some(pidfd) = &pidfd {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        // Without a pidfd (old kernel) init is checked every 100 ms.
        if pidfd.is_none() {
            timeout = Some(timeout.map_or(Duration::from_millis(100), |t| {
                t.min(Duration::from_millis(100))
            }));
        }
        if let Some(t) = relay.as_ref().and_then(|r| r.timeout()) {
            timeout = Some(timeout.map_or(t, |own| own.min(t)));
        }
        let poll_timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::from(t.as_millis().clamp(1, u128::from(u16::MAX)) as u16),
        };
        let polled = poll(&mut fds, poll_timeout);
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        match polled {
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                eprintln!("zsched: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Ok(_) => {}
        }
        if let Some(relay) = relay.as_mut() {
            relay.on_ready(&revents[..first_own]);
        }
        let init_ready = revents.get(first_own).is_some_and(|r| !r.is_empty());
        if init_ready || (pidfd.is_none() && !alive(child)) {
            // Reaped at once. Every process of the PID namespace died with init
            // (the kernel kills them before init is reapable), so nothing writes
            // to the console any more: what they wrote is in the pty's buffer.
            let exit = wait_for(child);
            if let Some(relay) = relay.as_mut() {
                relay.drain();
            }
            break exit;
        }
    };
    ExitRecord { fenced, ..exit }
}

fn alive(child: Pid) -> bool {
    matches!(
        nix::sys::wait::waitid(
            nix::sys::wait::Id::Pid(child),
            nix::sys::wait::WaitPidFlag::WEXITED
                | nix::sys::wait::WaitPidFlag::WNOHANG
                | nix::sys::wait::WaitPidFlag::WNOWAIT
        ),
        Ok(WaitStatus::StillAlive)
    )
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ZschedError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(process("pipe"))
}

fn wait_for(child: Pid) -> ExitRecord {
    loop {
        if let Some(exit) = crate::process::reap(child) {
            return ExitRecord {
                status: exit.status,
                signal: exit.signal,
                at_unix_ms: crate::clock::now_unix_ms(),
                fenced: false,
            };
        }
        // Not reapable (should not happen for our own child): do not spin.
        eprintln!("zsched: waitpid {child}: {}", nix::Error::last());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cgroup_manager(plan: &BootPlan) -> Result<Box<dyn crate::cgroup::CgroupManager>, ZschedError> {
    let layout = crate::cgroup::detect::detect().map_err(|e| ZschedError::Cgroup(e.to_string()))?;
    crate::cgroup::create_manager(&layout, &plan.cgroup_parent)
        .map_err(|e| ZschedError::Cgroup(e.to_string()))
}

/// Places init in the zone's cgroup (made by the boot verb, limits applied).
fn join_cgroup(plan: &BootPlan, pid: i32) -> Result<(), ZschedError> {
    cgroup_manager(plan)?
        .add_pid(&plan.uuid, pid as u32)
        .map_err(|e| ZschedError::Cgroup(e.to_string()))
}

/// Kills anything left in the zone's cgroup and removes it. Best effort: a
/// failure is logged, and the next boot or halt clears what is left.
fn remove_cgroup(plan: &BootPlan) {
    let result = cgroup_manager(plan).and_then(|m| {
        m.kill_all(&plan.uuid, Duration::from_secs(10))
            .and_then(|()| m.delete(&plan.uuid))
            .map_err(|e| ZschedError::Cgroup(e.to_string()))
    });
    if let Err(e) = result {
        eprintln!("zsched: remove cgroup of {}: {e}", plan.uuid);
    }
}
