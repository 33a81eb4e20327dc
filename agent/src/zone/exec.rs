//! `zone exec`: run a command inside a running zone, as `zlogin` does. The
//! command joins the zone's cgroup and every namespace of its init (its user
//! namespace too, as the zone's root), and is held to the same capability set
//! and seccomp filter as the zone's own processes. stdin, stdout and stderr are the caller's. With
//! [`ExecOptions::tty`] the command leads a session of its own whose controlling
//! terminal is its stdin (a pty the caller made), so the terminal's signals (^C, a
//! hangup when the pty closes) reach the command and not the processes between.
//!
//! Must be called from a single-threaded process (it forks and keeps running
//! Rust code in the child): the standalone CLI is; the daemon runs the CLI.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult};

use super::boot::INIT_PATH;
use super::record::ZoneRecord;
use super::{Result, ZoneError, ZoneHost};
use crate::isolation;
use crate::proc_stat::process_start_ticks;
use crate::zsched::runtime::Runtime;

/// How [`ZoneHost::exec_with`] runs a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments (a bare name is looked up in the zone's `PATH`).
    pub argv: Vec<String>,
    /// Environment variables over the defaults (`PATH`, `HOME`, the caller's `TERM`).
    pub env: Vec<(String, String)>,
    /// Make the command a session leader with its stdin as controlling terminal.
    pub tty: bool,
}

/// Checks an environment variable for `exec`: a name of letters, digits and `_` not
/// starting with a digit, and no NUL byte in the value.
pub fn check_env(name: &str, value: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "env: {name:?} is not a variable name (letters, digits and '_', not starting with a digit)"
        ));
    }
    if value.contains('\0') {
        return Err(format!("env: the value of {name} holds a NUL byte"));
    }
    Ok(())
}

impl ZoneHost {
    /// Runs `argv` in zone `name` and returns its exit status (128 + signal
    /// when killed, 127 when the command was not found in the zone).
    pub fn exec(&self, name: &str, argv: &[String]) -> Result<i32> {
        self.exec_with(
            name,
            &ExecOptions {
                argv: argv.to_vec(),
                ..ExecOptions::default()
            },
        )
    }

    /// [`Self::exec`] with environment variables and, optionally, a controlling
    /// terminal.
    pub fn exec_with(&self, name: &str, options: &ExecOptions) -> Result<i32> {
        let argv = &options.argv;
        for (k, v) in &options.env {
            check_env(k, v).map_err(|what| ZoneError::Sys {
                what,
                source: nix::Error::EINVAL,
            })?;
        }
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        let record = ZoneRecord::load(&paths)?;
        let runtime = match Runtime::load(&paths.dir)? {
            Some(rt) if rt.init_alive() => rt,
            _ => {
                return Err(ZoneError::WrongState {
                    uuid,
                    state: "not running".into(),
                    verb: "exec",
                })
            }
        };
        if argv.is_empty() {
            return Err(ZoneError::Sys {
                what: "exec: no command given".into(),
                source: nix::Error::EINVAL,
            });
        }
        let pidfd = crate::process::pidfd_open(nix::unistd::Pid::from_raw(runtime.init_pid))
            .map_err(|source| ZoneError::Sys {
                what: format!("pidfd_open {}", runtime.init_pid),
                source,
            })?;
        // The pidfd pins the process; make sure it is still the zone's init.
        if process_start_ticks(runtime.init_pid) != Some(runtime.init_start_ticks) {
            return Err(ZoneError::WrongState {
                uuid,
                state: "not running".into(),
                verb: "exec",
            });
        }
        let names: Vec<String> = record
            .spec
            .limit_priv
            .as_ref()
            .map(|caps| caps.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        let caps = isolation::caps::parse_set(&names).map_err(sys("capabilities"))?;
        let seccomp = isolation::seccomp::build_programs().map_err(sys("seccomp"))?;
        let cargs = argv
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| ZoneError::Sys {
                what: "exec: NUL byte in the command".into(),
                source: nix::Error::EINVAL,
            })?;
        let mut env = vec![
            ("PATH".to_owned(), INIT_PATH.to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        if let Ok(term) = std::env::var("TERM") {
            env.push(("TERM".to_owned(), term));
        }
        for (k, v) in &options.env {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        let cenv: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).expect("no NUL in env"))
            .collect();
        let tty = options.tty;

        // SAFETY: single-threaded caller (see the module doc); the child only
        // joins the zone and execs or exits.
        match unsafe { fork() }.map_err(|e| ZoneError::Sys {
            what: "fork".into(),
            source: e,
        })? {
            ForkResult::Child => {
                let code = match self.cgroups.add_pid(&uuid, std::process::id()) {
                    Err(e) => {
                        eprintln!("zone exec: join the zone's cgroup: {e}");
                        126
                    }
                    Ok(()) => enter_and_run(
                        &pidfd,
                        isolation::userns::has_own_userns(runtime.init_pid),
                        &caps,
                        &seccomp,
                        &cargs,
                        &cenv,
                        tty,
                    ),
                };
                // SAFETY: _exit in a forked child: no destructors may run.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Ok(wait_status(child)),
        }
    }
}

/// In the forked child: join the zone's namespaces, fork once more so the
/// command is inside the zone's PID namespace, and relay its exit status.
fn enter_and_run(
    pidfd: &OwnedFd,
    userns: bool,
    caps: &caps::CapsHashSet,
    seccomp: &[seccompiler::BpfProgram],
    argv: &[CString],
    env: &[CString],
    tty: bool,
) -> i32 {
    let mut flags = isolation::namespaces::zone_flags();
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if let Err(e) = nix::sched::setns(pidfd, flags) {
        eprintln!("zone exec: enter the zone's namespaces: {e}");
        return 126;
    }
    if userns {
        // Joined as the host's root, which the zone's namespace does not map:
        // become the zone's root.
        if let Err(e) = isolation::userns::become_root() {
            eprintln!("zone exec: {e}");
            return 126;
        }
    }
    // SAFETY: this child is single-threaded (forked from a single-threaded caller).
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("zone exec: fork: {e}");
            126
        }
        Ok(ForkResult::Parent { child }) => wait_status(child),
        Ok(ForkResult::Child) => {
            if tty {
                if let Err(e) = take_terminal() {
                    eprintln!("zone exec: make stdin the controlling terminal: {e}");
                    // SAFETY: _exit in a forked child.
                    unsafe { libc::_exit(126) }
                }
            }
            let err = confine_and_exec(caps, seccomp, argv, env);
            eprintln!("zone exec: {err}");
            let code = if err.contains("ENOENT") { 127 } else { 126 };
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Starts a session whose controlling terminal is stdin (a pty slave).
fn take_terminal() -> nix::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY on fd 0 takes an int argument (0: do not steal the terminal
    // from another session); no memory is passed.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if rc == -1 {
        return Err(nix::Error::last());
    }
    Ok(())
}

fn confine_and_exec(
    caps: &caps::CapsHashSet,
    seccomp: &[seccompiler::BpfProgram],
    argv: &[CString],
    env: &[CString],
) -> String {
    let steps = || -> std::result::Result<(), isolation::IsolationError> {
        nix::unistd::chdir("/").map_err(|e| isolation::IsolationError::sys("chdir", "/", e))?;
        isolation::fds::cloexec_from(3)?;
        isolation::confine(caps, seccomp)
    };
    if let Err(e) = steps() {
        return e.to_string();
    }
    let program = argv[0].to_string_lossy().into_owned();
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.clone()]
    } else {
        INIT_PATH
            .split(':')
            .map(|d| format!("{d}/{program}"))
            .collect()
    };
    let mut last = nix::Error::ENOENT;
    for path in candidates {
        let Ok(cpath) = CString::new(path) else {
            continue;
        };
        let Err(e) = nix::unistd::execve(&cpath, argv, env);
        if e != nix::Error::ENOENT {
            last = e;
        }
    }
    format!("{program}: {last} ({})", last.desc())
}

fn wait_status(child: nix::unistd::Pid) -> i32 {
    crate::process::reap(child).map_or(126, |exit| exit.status)
}

fn sys(what: &'static str) -> impl Fn(isolation::IsolationError) -> ZoneError {
    move |e| ZoneError::Sys {
        what: format!("{what}: {e}"),
        source: nix::Error::EINVAL,
    }
}
