//! [`BenchCgroup`]: a cgroup of the benchmark's own for a peer that makes none
//! itself (systemd-nspawn without systemd as the host's PID 1): it holds the
//! peer to the zones' memory limit and tells what the peer costs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zonefleet_agent::cgroup::detect;

/// One directory `<name>` at the root of the v1 hierarchy carrying `memory`, of
/// systemd's named v1 hierarchy and of the unified hierarchy, of those the host
/// mounts (a container manager wants its process in all of them: systemd-nspawn
/// puts the container's `payload` beside its own `supervisor` there). Removed,
/// with whatever the container made under it, when dropped.
pub(super) struct BenchCgroup {
    /// The directories made, in every hierarchy.
    dirs: Vec<PathBuf>,
    /// The directory whose memory files count: the v1 memory one, else the unified one.
    memory: PathBuf,
    /// `memory` is in the unified hierarchy (`memory.current`, `memory.max`).
    unified_memory: bool,
}

impl BenchCgroup {
    /// Makes the cgroup `name` with a memory limit of `memory_bytes`.
    pub fn create(name: &str, memory_bytes: u64) -> anyhow::Result<BenchCgroup> {
        let layout = detect::detect()?;
        let memory_v1 = layout
            .v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == "memory"))
            .map(|h| h.mount.join(name));
        let unified = layout.unified.as_ref().map(|m| m.join(name));
        let (memory, unified_memory) = match (&memory_v1, &unified) {
            (Some(m), _) => (m.clone(), false),
            (None, Some(u)) => (u.clone(), true),
            (None, None) => bail!("no cgroup hierarchy carries the memory controller"),
        };
        let systemd = layout.systemd.as_ref().map(|h| h.mount.join(name));
        let mut cgroup = BenchCgroup {
            dirs: Vec::new(),
            memory,
            unified_memory,
        };
        for dir in [memory_v1, systemd, unified].into_iter().flatten() {
            std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            // Recorded as soon as made: the guard removes it if a later step fails.
            cgroup.dirs.push(dir);
        }
        let (file, value) = if cgroup.unified_memory {
            ("memory.max", memory_bytes.to_string())
        } else {
            ("memory.limit_in_bytes", memory_bytes.to_string())
        };
        let path = cgroup.memory.join(file);
        std::fs::write(&path, &value)
            .with_context(|| format!("write {value} to {}", path.display()))?;
        Ok(cgroup)
    }

    /// The `cgroup.procs` files a process writes its pid to, to join the cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Memory charged to the cgroup now (its whole subtree), bytes.
    pub fn memory_usage(&self) -> anyhow::Result<u64> {
        let file = if self.unified_memory {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        super::memory::read_u64(&self.memory.join(file))
    }

    /// SIGKILLs every process in the cgroup's subtrees until none is left.
    pub fn kill_all(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pids = Vec::new();
            for dir in &self.dirs {
                procs(dir, &mut pids)?;
            }
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("processes {pids:?} outlived SIGKILL for {timeout:?}");
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let _ = self.kill_all(Duration::from_secs(5));
        for dir in &self.dirs {
            if let Err(e) = rmdir_tree(dir) {
                eprintln!("bench: could not remove cgroup {}: {e:#}", dir.display());
            }
        }
    }
}

/// The pids in `dir`'s `cgroup.procs` and in those of every cgroup under it.
fn procs(dir: &Path, out: &mut Vec<i32>) -> anyhow::Result<()> {
    let file = dir.join("cgroup.procs");
    match std::fs::read_to_string(&file) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
    }
    for sub in subdirs(dir)? {
        procs(&sub, out)?;
    }
    Ok(())
}

/// The directories directly in `dir` (child cgroups); none when `dir` is gone.
fn subdirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes a cgroup and every cgroup under it, innermost first (a cgroup's
/// directory goes with `rmdir` once it has no children and no processes).
pub(super) fn rmdir_tree(dir: &Path) -> anyhow::Result<()> {
    for sub in subdirs(dir)? {
        rmdir_tree(&sub)?;
    }
    // A process that was just killed may take a moment to leave its cgroup.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).with_context(|| format!("rmdir {}", dir.display())),
        }
    }
}
