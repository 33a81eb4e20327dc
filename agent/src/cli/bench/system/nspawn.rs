//! The systemd-nspawn peer: `systemd-nspawn --boot` of an unpacked copy of the
//! image, its files idmapped to a picked id range as a zone's are
//! (`--private-users=pick --private-users-ownership=map`), its own network
//! namespace with only `lo` (`--private-network`, as a zone without NICs), not
//! registered with machined (`--register=no --keep-unit`: this host's PID 1 is
//! not systemd). `--property=MemoryMax=` needs systemd as the host's PID 1, so the
//! zones' memory limit is set on a cgroup the benchmark makes and starts nspawn
//! in, which also tells what nspawn and its container cost.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::BenchCgroup;
use super::memory::{child_init, Memory};
use super::{log_tail, System, MEMORY_BYTES};

/// Where nspawn keeps its runtime state; it must be a tmpfs.
const RUN_DIR: &str = "/run/systemd/nspawn";

/// The systemd-nspawn peer.
pub(super) struct Nspawn {
    root: PathBuf,
    log: PathBuf,
    machine: String,
    cgroup_name: String,
    child: Option<Child>,
    init: Option<i32>,
    /// Declared after `child`: dropped once nspawn is gone.
    cgroup: Option<BenchCgroup>,
    _run: Option<RunTmpfs>,
}

impl Nspawn {
    /// The peer over the unpacked root `root`, logging to `log`.
    pub fn new(root: PathBuf, log: PathBuf) -> anyhow::Result<Nspawn> {
        let pid = std::process::id();
        Ok(Nspawn {
            root,
            log,
            machine: format!("zonefleet-bench-{pid}"),
            cgroup_name: format!("zonefleet-bench-{pid}-nspawn"),
            child: None,
            init: None,
            cgroup: None,
            _run: RunTmpfs::ensure()?,
        })
    }

    fn nspawn_pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }
}

impl System for Nspawn {
    fn name(&self) -> &'static str {
        "systemd-nspawn"
    }

    fn start(&mut self) -> anyhow::Result<()> {
        // A fresh cgroup every boot, as a zone gets.
        let cgroup = self
            .cgroup
            .insert(BenchCgroup::create(&self.cgroup_name, MEMORY_BYTES)?);
        let procs: Vec<String> = cgroup
            .procs_files()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        // The shell joins the cgroup, then becomes nspawn: nspawn starts in it.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"for f in $ZF_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@""#)
            .arg("sh")
            .arg("systemd-nspawn")
            .arg("--quiet")
            .arg("--boot")
            .arg("--directory")
            .arg(&self.root)
            .arg("--machine")
            .arg(&self.machine)
            .args([
                "--register=no",
                "--keep-unit",
                "--private-users=pick",
                "--private-users-ownership=map",
                "--private-network",
                "--console=read-only",
            ])
            .env("ZF_CGROUP_PROCS", procs.join(" "))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a ^C at the terminal is the benchmark's to handle.
            .process_group(0)
            .spawn()
            .context("run systemd-nspawn")?;
        self.child = Some(child);
        self.init = None;
        Ok(())
    }

    fn init_pid(&mut self) -> anyhow::Result<Option<i32>> {
        if self.init.is_none() {
            let Some(child) = self.child.as_mut() else {
                bail!("systemd-nspawn is not running");
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "systemd-nspawn exited with {status}: {}",
                    log_tail(&self.log, 5)
                );
            }
            self.init = self.nspawn_pid().and_then(child_init);
        }
        Ok(self.init)
    }

    fn memory(&self, init: i32) -> anyhow::Result<Memory> {
        let cgroup = self.cgroup.as_ref().context("no cgroup: not started")?;
        let nspawn = self.nspawn_pid().context("systemd-nspawn is not running")?;
        Memory::measure(init, cgroup.memory_usage()?, nspawn, true)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            self.cgroup = None;
            return Ok(());
        };
        // SIGKILL to the container's PID 1 ends its PID namespace; nspawn then exits.
        let init = self
            .init
            .take()
            .or_else(|| i32::try_from(child.id()).ok().and_then(child_init));
        if let Some(init) = init {
            let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let result = match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(Duration::from_secs(10)),
            None => Ok(()),
        };
        let _ = child.kill();
        child.wait()?;
        // Removes the cgroups nspawn and the container's systemd made under it.
        self.cgroup = None;
        result
    }
}

impl Drop for Nspawn {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("bench: stopping systemd-nspawn: {e:#}");
        }
    }
}

/// A tmpfs the benchmark mounted on [`RUN_DIR`] (and the directories it made
/// for it), unmounted and removed when dropped.
struct RunTmpfs {
    made: Option<PathBuf>,
    mounted: bool,
}

impl RunTmpfs {
    /// Mounts a tmpfs on [`RUN_DIR`] unless it is on one already (a host
    /// whose /run is a tmpfs, or one where something mounted it).
    fn ensure() -> anyhow::Result<Option<RunTmpfs>> {
        let dir = Path::new(RUN_DIR);
        let existing = dir
            .ancestors()
            .find(|a| a.exists())
            .context("no ancestor of /run/systemd/nspawn exists")?;
        let fs = nix::sys::statfs::statfs(existing)
            .with_context(|| format!("statfs {}", existing.display()))?;
        if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
            return Ok(None);
        }
        // The topmost directory this makes, to remove afterwards.
        let made = dir
            .ancestors()
            .take_while(|a| !a.exists())
            .last()
            .map(Path::to_path_buf);
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {RUN_DIR}"))?;
        // Made before the mount: it removes the directories if the mount fails.
        let mut guard = RunTmpfs {
            made,
            mounted: false,
        };
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .with_context(|| format!("mount a tmpfs on {RUN_DIR}"))?;
        guard.mounted = true;
        Ok(Some(guard))
    }
}

impl Drop for RunTmpfs {
    fn drop(&mut self) {
        let dir = Path::new(RUN_DIR);
        if self.mounted {
            let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Some(made) = &self.made {
            // Innermost first, up to the topmost one this made; each is empty now.
            for level in dir.ancestors() {
                let _ = std::fs::remove_dir(level);
                if level == made {
                    break;
                }
            }
        }
    }
}
