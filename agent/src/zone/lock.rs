//! Advisory locks (`flock`) that serialize verbs on one zone, and on the host's
//! zone table, across processes: the CLI, the daemon and tests may run at once.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{Result, ZoneError};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Opens (creating) the lock file at `path`.
fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| ZoneError::io(path, e))
}

/// Takes the exclusive lock on `path`, creating the file, waiting for a holder.
pub fn exclusive(path: &Path) -> Result<Lock> {
    let file = open(path)?;
    loop {
        // SAFETY: flock on a descriptor owned by `file`, alive for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(Lock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(ZoneError::io(path, err));
        }
    }
}

/// Takes the exclusive lock on `path` if no one holds it; `Ok(None)` when
/// someone does.
pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
    let file = open(path)?;
    loop {
        // SAFETY: flock on a descriptor owned by `file`, alive for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(Lock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(ZoneError::io(path, err)),
        }
    }
}
