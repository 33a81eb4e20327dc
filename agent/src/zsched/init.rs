//! The zone's init side of zsched's fork: runs in the child that is PID 1 of
//! the zone's new PID namespace, sets up every isolation step in order and
//! `execve`s the zone's init. Any failure is returned to zsched's side through
//! the error pipe, so `zone boot` reports the exact step that failed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::plan::BootPlan;
use super::ZschedError;
use crate::isolation::{self, rootfs::RootfsPlan};

/// Prepared before the fork so the child allocates and parses as little as
/// possible and a bad plan fails before any process exists.
pub struct InitSetup {
    /// The plan being booted.
    pub plan: BootPlan,
    /// The capability set the zone keeps.
    pub caps: caps::CapsHashSet,
    /// The seccomp programs.
    pub seccomp: Vec<seccompiler::BpfProgram>,
    /// init's argv as C strings.
    pub argv: Vec<CString>,
    /// init's environment as `KEY=VALUE` C strings.
    pub envp: Vec<CString>,
}

impl InitSetup {
    /// Parses and builds everything the child needs.
    pub fn prepare(plan: BootPlan) -> Result<InitSetup, ZschedError> {
        let caps = isolation::caps::parse_set(&plan.limit_priv)?;
        let seccomp = isolation::seccomp::build_programs()?;
        let cstring =
            |s: &str| CString::new(s).map_err(|_| ZschedError::Plan(format!("NUL byte in {s:?}")));
        if plan.init.is_empty() {
            return Err(ZschedError::Plan("init is empty".into()));
        }
        let argv = plan
            .init
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?;
        let envp = plan
            .env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        Ok(InitSetup {
            plan,
            caps,
            seccomp,
            argv,
            envp,
        })
    }

    /// First half, before the zone's cgroup is joined: stdio, namespaces, and
    /// the zone's disk and overlay root (the loop device is outside the zone's
    /// device allow list, so it must be opened before).
    pub fn stage_root(&self, console: &OwnedFd) -> Result<(), ZschedError> {
        redirect_stdio(console)?;
        isolation::namespaces::enter_new()?;
        isolation::rootfs::make_private()?;
        super::mount_zone_root(&self.plan)
    }

    /// Second half, inside the zone's cgroup: every remaining step, then
    /// execve of init. Returns only on failure.
    pub fn finish_and_exec(&self) -> ZschedError {
        if let Err(e) = self.finish() {
            return e;
        }
        let err = nix::unistd::execve(&self.argv[0], &self.argv, &self.envp).unwrap_err();
        ZschedError::Exec {
            path: self.plan.init[0].clone(),
            source: err,
        }
    }

    fn finish(&self) -> Result<(), ZschedError> {
        let plan = &self.plan;
        isolation::namespaces::enter_cgroup_namespace()?;
        isolation::rootfs::mount_pseudo_filesystems(&RootfsPlan {
            root: plan.root.clone(),
            tmpfs_mib: plan.tmpfs_mib,
            zonecontrol: Some(plan.zonecontrol.clone()),
        })?;
        isolation::namespaces::set_hostname(&plan.hostname)?;
        isolation::rootfs::pivot_into(&plan.root)?;
        for file in &plan.files {
            write_zone_file(&file.path, &file.contents)?;
        }
        isolation::fds::cloexec_from(3)?;
        isolation::caps::restrict_to(&self.caps)?;
        isolation::caps::set_no_new_privs()?;
        // Last: from here on the process is as confined as the zone will be.
        isolation::seccomp::apply(&self.seccomp)?;
        Ok(())
    }
}

/// stdin from /dev/null, stdout and stderr to the console pipe.
fn redirect_stdio(console: &OwnedFd) -> Result<(), ZschedError> {
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty())
        .map_err(|e| isolation::IsolationError::sys("open", "/dev/null", e))?;
    let dup = |from: i32, to: i32| {
        // SAFETY: dup2 on descriptors this process owns; the targets are the
        // standard descriptors, which no Rust object owns.
        if unsafe { libc::dup2(from, to) } < 0 {
            Err(isolation::IsolationError::sys(
                "redirect stdio",
                format!("fd {to}"),
                nix::Error::last(),
            ))
        } else {
            Ok(())
        }
    };
    dup(null.as_raw_fd(), 0)?;
    dup(console.as_raw_fd(), 1)?;
    dup(console.as_raw_fd(), 2)?;
    Ok(())
}

/// Writes one configuration file inside the zone (after `pivot_root`).
fn write_zone_file(path: &str, contents: &str) -> Result<(), ZschedError> {
    let path = std::path::Path::new(path);
    let fail = |e: std::io::Error| {
        ZschedError::Isolation(isolation::IsolationError::sys(
            "write zone file",
            path,
            nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        ))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, contents).map_err(fail)
}
