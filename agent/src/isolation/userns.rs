//! The zone's user namespace: zone ids `0..count` are host ids
//! `host_base..host_base + count`, a range no other zone on the host holds
//! ([`crate::zone::idmap`] hands them out). Root in the zone then holds its
//! capabilities only over what its own namespaces own; to the host it is an
//! unprivileged id.
//!
//! zsched makes the namespace before anything of the zone exists ([`create`]),
//! so the image's layers can be idmapped to it ([`super::idmapped`]) while the
//! zone's root is still built with the host's privileges; the zone's side then
//! joins it ([`enter`]) and every namespace it makes afterwards is owned by it.

use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult};
use serde::{Deserialize, Serialize};

use super::{IsolationError, Result};

/// A zone's id range on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// The host uid and gid that the zone's root (0) is.
    pub host_base: u32,
    /// How many ids the zone has (zone ids `0..count`).
    pub count: u32,
}

impl IdRange {
    /// The host id of zone id `id`, if the zone has it.
    pub fn host_id(&self, id: u32) -> Option<u32> {
        (id < self.count).then(|| self.host_base + id)
    }

    /// The line written to `uid_map` and `gid_map`.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.host_base, self.count)
    }
}

fn sys(step: &'static str, path: impl Into<std::path::PathBuf>, e: nix::Error) -> IsolationError {
    IsolationError::sys(step, path, e)
}

fn io(step: &'static str, path: &str, e: std::io::Error) -> IsolationError {
    sys(
        step,
        path,
        nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}

/// Makes a user namespace mapped to `range` and returns a descriptor of it.
/// A short-lived child unshares it; this (privileged) process writes its maps
/// (`setgroups` stays allowed, so `su` and login in the zone can set groups)
/// and keeps the namespace alive through the descriptor.
///
/// Must be called from a single-threaded process (it forks).
pub fn create(range: &IdRange) -> Result<OwnedFd> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe", "userns", e))?;
    let (done_r, done_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe", "userns", e))?;
    // SAFETY: the caller is single-threaded; the child only unshares, writes a
    // byte, waits for one and _exits.
    let child = match unsafe { fork() }.map_err(|e| sys("fork", "userns", e))? {
        ForkResult::Child => {
            drop((ready_r, done_w));
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_w, if ok { b"u" } else { b"e" });
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(&done_r, &mut byte);
            // SAFETY: _exit in a forked child: no destructors may run.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((ready_w, done_r));
    let result = (|| {
        let mut byte = [0u8; 1];
        match nix::unistd::read(&ready_r, &mut byte) {
            Ok(1) if byte[0] == b'u' => {}
            _ => return Err(sys("unshare a user namespace", "self", nix::Error::EPERM)),
        }
        let proc = format!("/proc/{child}");
        for (file, text) in [("uid_map", range.map_line()), ("gid_map", range.map_line())] {
            let path = format!("{proc}/{file}");
            std::fs::write(&path, text).map_err(|e| io("write the id map", &path, e))?;
        }
        let path = format!("{proc}/ns/user");
        let ns = std::fs::File::open(&path).map_err(|e| io("open", &path, e))?;
        Ok(OwnedFd::from(ns))
    })();
    drop(done_w);
    let _ = nix::sys::wait::waitpid(child, None);
    result
}

/// Joins the user namespace `ns` and becomes its root (uid and gid 0, no
/// supplementary groups): from here the caller holds every capability in that
/// namespace and none in the host's. Single-threaded callers only (setns).
pub fn enter(ns: &OwnedFd) -> Result<()> {
    nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| sys("join the zone's user namespace", "setns", e))?;
    become_root()
}

/// Sets uid, gid and groups to the current user namespace's root.
pub fn become_root() -> Result<()> {
    nix::unistd::setgroups(&[]).map_err(|e| sys("setgroups", "[]", e))?;
    let root_g = nix::unistd::Gid::from_raw(0);
    let root_u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g).map_err(|e| sys("setresgid", "0", e))?;
    nix::unistd::setresuid(root_u, root_u, root_u).map_err(|e| sys("setresuid", "0", e))?;
    Ok(())
}

/// Whether process `pid` lives in a user namespace other than this process's.
pub fn has_own_userns(pid: i32) -> bool {
    let ours = std::fs::metadata("/proc/self/ns/user");
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/user"));
    match (ours, theirs) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) != (b.dev(), b.ino())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_into_the_range_only() {
        let r = IdRange {
            host_base: 0x8000_0000,
            count: 65536,
        };
        assert_eq!(r.host_id(0), Some(0x8000_0000));
        assert_eq!(r.host_id(65535), Some(0x8000_ffff));
        assert_eq!(r.host_id(65536), None);
        assert_eq!(r.map_line(), "0 2147483648 65536\n");
    }
}
