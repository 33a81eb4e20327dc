//! The LXC peer: a container of the benchmark's own lxcpath over an unpacked copy
//! of the image, with Debian's distribution config (`debian.common.conf`,
//! `debian.userns.conf`, what `lxc-create` writes for a Debian container), an id
//! map of its own and its root filesystem idmapped to it (`lxc.rootfs.options =
//! idmap=container`, as a zone's files are), no network but `lo`
//! (`lxc.net.0.type = empty`, as a zone without NICs) and the zones' memory limit.
//! `lxc-start -d` per boot, `lxc-stop -k` after; `lxc-destroy` at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::memory::{ancestor_named, cgroup_of, read_u64, Memory};
use super::subids::SubIds;
use super::{log_tail, System, MEMORY_BYTES};
use zonefleet_agent::cgroup::detect;

/// Where LXC's id ranges start: above systemd-nspawn's picks (below
/// 0x70000000), below the zones' (0x80000000 and up).
const ID_BASE: u32 = 0x7000_0000;
/// Ids in the container's range.
const ID_COUNT: u32 = 65536;
/// The cgroup LXC moves processes to while it removes a container's cgroups,
/// at the root of each hierarchy.
const PIVOT: &str = "lxc.pivot";

/// The LXC peer.
pub(super) struct Lxc {
    name: String,
    lxcpath: PathBuf,
    log: PathBuf,
    running: bool,
    init: Option<i32>,
    /// The v1 memory hierarchy's mount and root, or `None`: memory is in the
    /// unified hierarchy.
    memory_v1: Option<(PathBuf, String)>,
    unified: Option<PathBuf>,
    /// The `lxc.pivot` cgroups absent before the benchmark (LXC leaves them behind).
    pivots: Vec<PathBuf>,
    /// Dropped last: `lxc-destroy` may still need the ids.
    _subids: Option<SubIds>,
}

impl Lxc {
    /// The peer over the unpacked root `root`, its container under `lxcpath`.
    pub fn new(root: &Path, lxcpath: PathBuf) -> anyhow::Result<Lxc> {
        let pid = std::process::id();
        let name = format!("zonefleet-bench-{pid}");
        let base = ID_BASE + (pid % 256) * ID_COUNT;
        let layout = detect::detect()?;
        let memory_v1 = layout
            .v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == "memory"))
            .map(|h| (h.mount.clone(), h.root.clone()));
        let pivots = layout
            .v1
            .iter()
            .chain(&layout.systemd)
            .map(|h| h.mount.join(PIVOT))
            .chain(layout.unified.iter().map(|u| u.join(PIVOT)))
            .filter(|p| !p.exists())
            .collect();
        // The guard first: it removes the id ranges if a later step fails.
        let subids = SubIds::reserve(base, ID_COUNT)?;
        let dir = lxcpath.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let log = dir.join("lxc.log");
        let memory_limit = if memory_v1.is_some() {
            format!("lxc.cgroup.memory.limit_in_bytes = {MEMORY_BYTES}")
        } else {
            format!("lxc.cgroup2.memory.max = {MEMORY_BYTES}")
        };
        let config = format!(
            "lxc.include = /usr/share/lxc/config/debian.common.conf\n\
             lxc.include = /usr/share/lxc/config/debian.userns.conf\n\
             lxc.uts.name = {name}\n\
             lxc.rootfs.path = dir:{root}\n\
             lxc.rootfs.options = idmap=container\n\
             lxc.idmap = u 0 {base} {ID_COUNT}\n\
             lxc.idmap = g 0 {base} {ID_COUNT}\n\
             lxc.net.0.type = empty\n\
             {memory_limit}\n\
             lxc.console.logfile = {console}\n\
             lxc.log.file = {log}\n\
             lxc.log.level = WARN\n",
            root = root.display(),
            console = dir.join("console.log").display(),
            log = log.display(),
        );
        std::fs::write(dir.join("config"), config).context("write the LXC config")?;
        Ok(Lxc {
            name,
            lxcpath,
            log,
            running: false,
            init: None,
            memory_v1,
            unified: layout.unified,
            pivots,
            _subids: subids,
        })
    }

    /// Runs `lxc-<tool> -n <name> -P <lxcpath> args…` and returns its stdout.
    fn lxc(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(format!("lxc-{tool}"))
            .arg("-n")
            .arg(&self.name)
            .arg("-P")
            .arg(&self.lxcpath)
            .args(args)
            .output()
            .with_context(|| format!("run lxc-{tool}"))?;
        if !out.status.success() {
            bail!(
                "lxc-{tool} {}: {}: {} / log: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                log_tail(&self.log, 5)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The directory of the container's memory cgroup (the one LXC limits:
    /// `lxc.payload.<name>`, above what the container's systemd made in it).
    fn memory_dir(&self, init: i32) -> anyhow::Result<(PathBuf, &'static str)> {
        let (mount, root, controller, file) = match &self.memory_v1 {
            Some((mount, root)) => (
                mount,
                root.as_str(),
                Some("memory"),
                "memory.usage_in_bytes",
            ),
            None => (
                self.unified
                    .as_ref()
                    .context("no memory cgroup hierarchy")?,
                "/",
                None,
                "memory.current",
            ),
        };
        let path = cgroup_of(init, controller)?
            .with_context(|| format!("process {init} is in no memory cgroup"))?;
        let payload = format!("lxc.payload.{}", self.name);
        let limit = ancestor_named(&path, &payload)
            .with_context(|| format!("{path}: not under a cgroup named {payload}"))?;
        let relative = limit
            .strip_prefix(root.trim_end_matches('/'))
            .unwrap_or(limit)
            .trim_start_matches('/');
        Ok((mount.join(relative), file))
    }
}

impl System for Lxc {
    fn name(&self) -> &'static str {
        "lxc"
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.init = None;
        // Returns once the container's init runs (it waits for RUNNING); a
        // container that failed to start was taken down by LXC itself.
        self.lxc("start", &["-d"])?;
        self.running = true;
        Ok(())
    }

    fn init_pid(&mut self) -> anyhow::Result<Option<i32>> {
        if self.init.is_none() {
            let out = self.lxc("info", &["-p", "-H"])?;
            self.init = out.trim().parse().ok();
        }
        Ok(self.init)
    }

    fn memory(&self, init: i32) -> anyhow::Result<Memory> {
        let (dir, file) = self.memory_dir(init)?;
        let monitor = zonefleet_agent::proc_stat::parent_pid(init)
            .with_context(|| format!("the parent (LXC monitor) of {init} is gone"))?;
        Memory::measure(init, read_u64(&dir.join(file))?, monitor, false)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if !std::mem::take(&mut self.running) {
            return Ok(());
        }
        self.init = None;
        // -k: SIGKILL, no clean shutdown, as the other systems get. Waits until stopped.
        self.lxc("stop", &["-k"]).map(drop)
    }
}

impl Drop for Lxc {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("bench: stopping the LXC container: {e:#}");
        }
        if let Err(e) = self.lxc("destroy", &[]) {
            eprintln!("bench: destroying the LXC container: {e:#}");
        }
        for pivot in &self.pivots {
            // Only if empty: another LXC container may use it now.
            let _ = std::fs::remove_dir(pivot);
        }
    }
}
