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
    let setup = init::InitSetup::prepare(plan.clone())?;
    let (err_r, err_w) = pipe()?;
    let (staged_r, staged_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (con_r, con_w) = pipe()?;
    // zsched's own PID namespace, to put its later children (nft) back in:
    // after init exits, the zone's namespace accepts no new process.
    let host_pid_ns = std::fs::File::open("/proc/self/ns/pid").map_err(|e| {
        process("open /proc/self/ns/pid")(nix::Error::from_raw(
            e.raw_os_error().unwrap_or(libc::EIO),
        ))
    })?;

    isolation::namespaces::new_pid_namespace()?;
    // SAFETY: zsched is single-threaded; the child only runs the setup steps
    // and execve (or _exit), as init::InitSetup documents.
    let child = match unsafe { fork() }.map_err(process("fork init"))? {
        ForkResult::Child => {
            drop((err_r, staged_r, go_w, con_r));
            let fail = |err: ZschedError| -> ! {
                let _ = nix::unistd::write(&err_w, err.to_string().as_bytes());
                // SAFETY: _exit in a forked child: no destructors may run.
                unsafe { libc::_exit(127) }
            };
            if let Err(e) = setup.stage_root(&con_w) {
                fail(e);
            }
            // Tell zsched the root is mounted, and wait to be placed in the
            // zone's cgroup.
            let _ = nix::unistd::write(&staged_w, b"s");
            drop(staged_w);
            let mut byte = [0u8; 1];
            if nix::unistd::read(&go_r, &mut byte) != Ok(1) {
                // SAFETY: _exit in a forked child: no destructors may run.
                unsafe { libc::_exit(1) };
            }
            fail(setup.finish_and_exec());
        }
        ForkResult::Parent { child } => child,
    };
    drop((go_r, err_w, con_w, staged_w));
    // Init is forked: zsched's next children (the nft command) belong in the
    // host's PID namespace, where they can be made whether init lives or not.
    // This also lifts the kernel's ban on threads in zsched.
    if let Err(e) = nix::sched::setns(&host_pid_ns, nix::sched::CloneFlags::CLONE_NEWPID) {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(process("setns back to the host's PID namespace")(e));
    }
    drop(host_pid_ns);

    let mut byte = [0u8; 1];
    let staged = nix::unistd::read(&staged_r, &mut byte) == Ok(1);
    drop(staged_r);
    let joined = if staged {
        join_cgroup(&plan, child.as_raw()).and_then(|()| attach_network(&plan, child.as_raw()))
    } else {
        Ok(())
    };
    if let Err(e) = joined {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(child, None);
        detach_network(&plan);
        remove_cgroup(&plan);
        return Err(e);
    }
    if staged {
        nix::unistd::write(&go_w, b"g").map_err(process("start init"))?;
    }
    drop(go_w);

    // EOF on the error pipe means execve succeeded (the pipe is close-on-exec).
    let mut failure = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(err_r), &mut failure);
    if !failure.is_empty() {
        let _ = waitpid(child, None);
        detach_network(&plan);
        remove_cgroup(&plan);
        return Err(ZschedError::Boot(
            String::from_utf8_lossy(&failure).into_owned(),
        ));
    }

    let mut record = Runtime {
        zsched_pid: std::process::id() as i32,
        init_pid: child.as_raw(),
        init_start_ticks: crate::proc_stat::process_start_ticks(child.as_raw()).unwrap_or(0),
        boot_id: crate::proc_stat::current_boot_id().unwrap_or_default(),
        booted_at_unix_ms: crate::clock::now_unix_ms(),
        exit: None,
    };
    record.store(&plan.zone_dir)?;
    report_ready("ok");

    let exit = supervise_init(&plan, child, con_r);
    record.exit = Some(exit);
    record.store(&plan.zone_dir)?;
    eprintln!("zsched: init exited with status {}", exit.status);
    detach_network(&plan);
    remove_cgroup(&plan);
    Ok(())
}

/// Builds the zone's NICs from the host side while init waits for `go`: its
/// network namespace exists, nothing of the zone runs yet, and zsched (in the
/// host's network namespace, with every capability) can make the host ends,
/// the rules and configure the zone ends through a netlink socket opened in
/// the zone's namespace. The zone's init starts with its network complete.
fn attach_network(plan: &BootPlan, pid: i32) -> Result<(), ZschedError> {
    match &plan.net {
        Some(net) => Ok(crate::net::attach(net, pid)?),
        None => Ok(()),
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

/// Copies init's console into the log until init exits, then reaps it. Single
/// threaded on purpose (zsched stays one small process): the console and
/// init's exit are waited for together with `poll` on the console pipe and a
/// pidfd.
fn supervise_init(plan: &BootPlan, child: Pid, console: OwnedFd) -> ExitRecord {
    let path = plan.zone_dir.join(crate::zone::paths::CONSOLE_FILE);
    let mut log = match console::ConsoleLog::open(&path, plan.console_cap_bytes) {
        Ok(log) => Some(log),
        Err(e) => {
            eprintln!("zsched: console log {}: {e}", path.display());
            None
        }
    };
    let mut console = Some(std::fs::File::from(console));
    let pidfd = crate::process::pidfd_open(child).ok();
    let mut buf = vec![0u8; 16 * 1024];
    let mut init_gone = false;
    let mut fenced = false;
    let mut drain_deadline: Option<std::time::Instant> = None;
    while let Some(source) = console.as_mut() {
        // The fence: the host's lease ran out, so the controllers may place the zone
        // elsewhere soon; it must be dead before then. SIGKILL, not a graceful halt:
        // the margin is for the kill, not for a shutdown.
        let mut fence_in: Option<Duration> = None;
        if let (Some(lease), false) = (&plan.fence, fenced || init_gone) {
            let left = crate::fence::remaining(lease);
            if left.is_zero() {
                eprintln!("zsched: the host's lease ran out: fencing the zone");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                fenced = true;
            } else {
                fence_in = Some(left);
            }
        }
        if let Some(deadline) = drain_deadline {
            if std::time::Instant::now() >= deadline {
                break;
            }
        }
        let mut fds = vec![PollFd::new(source.as_fd(), PollFlags::POLLIN)];
        if let (Some(pidfd), false) = (&pidfd, init_gone) {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        // Without a pidfd (old kernel) fall back to checking init every 100 ms.
        let mut timeout = if pidfd.is_none() || init_gone {
            100u16
        } else {
            u16::MAX
        };
        if let Some(left) = fence_in {
            // Wake at the deadline (the lease is read again then: usually renewed).
            timeout = timeout.min(left.as_millis().clamp(1, u128::from(u16::MAX)) as u16);
        }
        match poll(&mut fds, PollTimeout::from(timeout)) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                eprintln!("zsched: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Ok(_) => {}
        }
        let console_ready = fds[0].any().unwrap_or(false);
        let init_ready = fds.get(1).and_then(|f| f.any()).unwrap_or(false);
        if console_ready {
            match std::io::Read::read(source, &mut buf) {
                Ok(0) => console = None,
                Ok(n) => {
                    if let Some(log) = log.as_mut() {
                        if let Err(e) = log.append(&buf[..n]) {
                            eprintln!("zsched: console log: {e}");
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => console = None,
            }
        }
        if !init_gone && (init_ready || (pidfd.is_none() && !alive(child))) {
            init_gone = true;
            // Every process of the PID namespace dies with init, so the pipe
            // closes soon; bound the wait in case a writer escaped.
            drain_deadline = Some(std::time::Instant::now() + Duration::from_secs(2));
        }
    }
    ExitRecord {
        fenced,
        ..wait_for(child)
    }
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

/// Mounts the zone's disk and its overlay root, inside the zone's (private)
/// mount namespace: both vanish with the namespace, and the disk's loop device
/// (attached with autoclear) frees itself then.
pub(crate) fn mount_zone_root(plan: &BootPlan) -> Result<(), ZschedError> {
    let disk = |e: crate::disk::DiskError| ZschedError::Disk(e.to_string());
    crate::disk::mount_image(&plan.disk_image, &plan.disk_mount).map_err(disk)?;
    let dirs = crate::disk::prepare_overlay_dirs(&plan.disk_mount).map_err(disk)?;
    crate::disk::mount_overlay(&plan.lower, &dirs, &plan.root).map_err(disk)?;
    Ok(())
}
