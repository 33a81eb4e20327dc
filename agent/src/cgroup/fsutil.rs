//! File helpers for cgroupfs: every error names the path (and the value written).

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// How often waits poll the kernel.
pub(crate) const POLL: Duration = Duration::from_millis(10);

pub(crate) fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Writes `value` to an existing file in one `write(2)`, as the kernel wants. Never
/// creates the file: a missing cgroup file is an error, not something to invent.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let werr = |source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(werr)?;
    f.write_all(value.as_bytes()).map_err(werr)
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| io_err("read", path, e))
}

/// Writes `value`, reads the file back and checks it holds `expect` (trimmed).
pub(crate) fn write_check(path: &Path, value: &str, expect: &str) -> Result<(), CgroupError> {
    write(path, value)?;
    check(path, expect)
}

/// Checks that the file holds `expect` (surrounding whitespace ignored).
pub(crate) fn check(path: &Path, expect: &str) -> Result<(), CgroupError> {
    let got = read(path)?;
    if got.trim() == expect {
        Ok(())
    } else {
        Err(CgroupError::ReadBack {
            path: path.to_owned(),
            wanted: expect.to_owned(),
            got: got.trim().to_owned(),
        })
    }
}

/// Reads a file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let s = read(path)?;
    s.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        content: s.trim().to_owned(),
        what: "an unsigned number",
    })
}

/// Reads `key` from a flat keyed file (`memory.events`, `cpu.stat`,
/// `memory.oom_control`: lines of `key value`).
pub(crate) fn read_key(path: &Path, key: &str) -> Result<u64, CgroupError> {
    let s = read(path)?;
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .ok_or_else(|| CgroupError::Parse {
            path: path.to_owned(),
            content: s.clone(),
            what: "a keyed file with the wanted key",
        })?;
    line.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        content: line.to_owned(),
        what: "an unsigned number",
    })
}

/// Makes a directory; `Ok(true)` if it was made, `Ok(false)` if it existed.
pub(crate) fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("mkdir", path, e)),
    }
}

/// The sub-cgroup directories of `dir` (none if `dir` is gone).
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let ft = entry
            .file_type()
            .map_err(|e| io_err("stat", &entry.path(), e))?;
        if ft.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every pid in `cgroup.procs` of `dir` and of its sub-cgroups; none if `dir` is
/// gone (a cgroup that vanished while walking holds nothing).
pub(crate) fn procs_recursive(dir: &Path, out: &mut Vec<u32>) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.procs");
    let s = match fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", &file, e)),
    };
    for tok in s.split_whitespace() {
        out.push(tok.parse().map_err(|_| CgroupError::Parse {
            path: file.clone(),
            content: tok.to_owned(),
            what: "a pid",
        })?);
    }
    for sub in subdirs(dir)? {
        procs_recursive(&sub, out)?;
    }
    Ok(())
}

/// Removes a cgroup directory, its sub-cgroups first. Gone already is fine; a
/// cgroup with processes is [`CgroupError::Busy`].
pub(crate) fn rmdir_recursive(dir: &Path) -> Result<(), CgroupError> {
    for sub in subdirs(dir)? {
        rmdir_recursive(&sub)?;
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let mut pids = Vec::new();
            procs_recursive(dir, &mut pids)?;
            Err(CgroupError::Busy {
                path: dir.to_owned(),
                pids,
            })
        }
        Err(e) => Err(io_err("rmdir", dir, e)),
    }
}

/// Polls `done` until it says true or `timeout` passes.
pub(crate) fn wait_until(
    what: &'static str,
    path: &Path,
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Timeout {
                what,
                path: path.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Gives `dir` and the files `names` in it to `owner` (uid, gid): how a cgroup
/// subtree is delegated to a zone's root. A missing file is skipped (not every
/// kernel has every interface file).
pub(crate) fn chown_delegated(
    dir: &Path,
    names: &[&str],
    owner: (u32, u32),
) -> Result<(), CgroupError> {
    let (uid, gid) = (Some(owner.0), Some(owner.1));
    std::os::unix::fs::chown(dir, uid, gid).map_err(|e| io_err("chown", dir, e))?;
    for name in names {
        let path = dir.join(name);
        match std::os::unix::fs::chown(&path, uid, gid) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("chown", &path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_never_creates_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.max");
        let err = write(&p, "max").unwrap_err();
        assert!(err.to_string().contains("memory.max"), "{err}");
        assert!(!p.exists());
    }

    #[test]
    fn keyed_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.events");
        fs::write(
            &p,
            "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(read_key(&p, "oom_kill").unwrap(), 1);
        assert_eq!(read_key(&p, "oom").unwrap(), 2);
        assert!(read_key(&p, "nope").is_err());
    }

    #[test]
    fn read_back_mismatch_names_file_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pids.max");
        fs::write(&p, "").unwrap();
        write(&p, "64").unwrap();
        check(&p, "64").unwrap();
        let err = check(&p, "65").unwrap_err().to_string();
        assert!(
            err.contains("pids.max") && err.contains("\"65\"") && err.contains("\"64\""),
            "{err}"
        );
    }
}
