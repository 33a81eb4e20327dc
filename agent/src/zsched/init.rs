//! The zone's side of zsched's forks, in two processes:
//!
//! - the *stager*, a child of zsched with the host's privileges: in a private
//!   mount namespace it mounts the zone's disk and its overlay root (the image's
//!   layer idmapped to the zone's user namespace when it has one), fills `/dev`
//!   and binds the console pty; then, once zsched has put it in the zone's
//!   cgroup, joins the zone's user namespace, unshares every other namespace
//!   (so each is owned by the zone's user namespace) and forks the init;
//! - the *init*, PID 1 of the zone's PID namespace: mounts the zone's own
//!   pseudo filesystems, pivots into the root, writes the zone's files,
//!   confines itself and `execve`s the zone's init.
//!
//! The stager exits as soon as init is forked; zsched, a child subreaper,
//! adopts init. Any failure is sent through the error pipe, so `zone boot`
//! reports the exact step that failed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::plan::BootPlan;
use super::ZschedError;
use crate::isolation::{self, rootfs::RootfsPlan};

/// Prepared before the fork so the children allocate and parse as little as
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
    /// Parses and builds everything the children need.
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

    /// The host ids of the zone's root (0, 0 without a user namespace).
    fn owner(&self) -> (u32, u32) {
        self.plan
            .userns
            .map_or((0, 0), |r| (r.host_base, r.host_base))
    }

    /// Stager, first half, before the zone's cgroup is joined (the loop device
    /// is outside the zone's device allow list, so it must be opened before):
    /// stdio on the console, a private mount namespace, the zone's disk, its
    /// overlay root and `/dev`.
    pub fn stage_root(
        &self,
        console: &OwnedFd,
        console_path: &Path,
        userns: Option<&OwnedFd>,
    ) -> Result<(), ZschedError> {
        let plan = &self.plan;
        redirect_stdio(console)?;
        isolation::namespaces::private_mounts()?;
        isolation::rootfs::make_private()?;
        let disk = |e: crate::disk::DiskError| ZschedError::Disk(e.to_string());
        crate::disk::mount_image(&plan.disk_image, &plan.disk_mount).map_err(disk)?;
        let dirs = crate::disk::prepare_overlay_dirs(&plan.disk_mount).map_err(disk)?;
        let lower = match userns {
            None => plan.lower.clone(),
            Some(ns) => {
                // The image's layer, shared by every zone of that image, shown
                // with its owners shifted into this zone's range; and the root
                // of the zone's own layer owned by the zone's root.
                let target = plan.zone_dir.join(super::IDMAPPED_LOWER_DIR);
                isolation::mount::ensure_dir(&target, 0o700)?;
                let tree = isolation::tree::idmapped_tree(&plan.lower, ns)?;
                isolation::tree::attach(&tree, &target)?;
                chown_upper_root(&dirs.upper, &plan.lower, self.owner())?;
                target
            }
        };
        // The root is built at `plan.root`, then moved where the zone's side can
        // reach it: inside a user namespace the zone's root may not search the
        // host's directories on the way to `plan.root` (the zones directory is
        // the host root's only). A tmpfs on /tmp, in this private mount
        // namespace only, gives it a path it can walk.
        crate::disk::mount_overlay(&lower, &dirs, &plan.root).map_err(disk)?;
        isolation::dev::populate(&plan.root, self.owner(), Some(console_path))?;
        isolation::rootfs::bind_zonecontrol(&plan.root, &plan.zonecontrol)?;
        let tree = isolation::tree::clone_tree(&plan.root)?;
        stage_dir()?;
        isolation::tree::attach(&tree, Path::new(STAGE_ROOT))?;
        Ok(())
    }

    /// Stager, second half, inside the zone's cgroup: joins the zone's user
    /// namespace and unshares the zone's namespaces. The caller forks init next.
    pub fn enter_zone(&self, userns: Option<&OwnedFd>) -> Result<(), ZschedError> {
        if let Some(ns) = userns {
            isolation::userns::enter(ns)?;
        }
        Ok(isolation::namespaces::enter_zone()?)
    }

    /// init: every remaining step, then execve of the zone's init. Returns only
    /// on failure.
    pub fn finish_and_exec(&self) -> ZschedError {
        if let Err(e) = self.finish() {
            return e;
        }
        let err = nix::unistd::execve(&self.argv[0], &self.argv, &self.envp).unwrap_err();
        let mut path = self.plan.init[0].clone();
        if err == nix::Error::ENOENT {
            // Name what is there, so a wrong init path is plain to see.
            let mut top: Vec<String> = std::fs::read_dir("/")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            top.sort();
            path = format!("{path} (the zone's / holds: {})", top.join(" "));
        }
        ZschedError::Exec { path, source: err }
    }

    fn finish(&self) -> Result<(), ZschedError> {
        let plan = &self.plan;
        // A session of its own, without a controlling terminal: the console is
        // the init's to take (systemd does).
        let _ = nix::unistd::setsid();
        let root = Path::new(STAGE_ROOT);
        isolation::rootfs::mount_pseudo_filesystems(&RootfsPlan {
            root: root.to_path_buf(),
            tmpfs_mib: plan.tmpfs_mib,
            cgroup: plan.cgroup,
        })?;
        isolation::namespaces::set_hostname(&plan.hostname)?;
        isolation::rootfs::pivot_into(root)?;
        for file in &plan.files {
            write_zone_file(&file.path, &file.contents)?;
        }
        write_identity(&plan.uuid, plan.image_machine_id.as_deref())?;
        isolation::fds::cloexec_from(3)?;
        // Last: from here on the process is as confined as the zone will be.
        isolation::confine(&self.caps, &self.seccomp)?;
        Ok(())
    }
}

/// Where the stager mounts the zone's root, in its private mount namespace.
pub const STAGE_ROOT: &str = "/tmp/zone-root";

/// A tmpfs on `/tmp` (this mount namespace only) holding [`STAGE_ROOT`].
fn stage_dir() -> Result<(), ZschedError> {
    let tmp = Path::new("/tmp");
    isolation::mount::mount_fs(
        "mount the staging tmpfs",
        "tmpfs",
        tmp,
        "tmpfs",
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("mode=755,size=64k"),
    )?;
    isolation::mount::ensure_dir(Path::new(STAGE_ROOT), 0o755)?;
    Ok(())
}

/// Gives the root of the zone's own layer (which becomes the zone's `/`) the
/// owner of the image's root, in the zone's range. Its contents need nothing:
/// files copied up keep the (shifted) owner they had in the image, files the
/// zone makes are its ids already.
fn chown_upper_root(upper: &Path, lower: &Path, owner: (u32, u32)) -> Result<(), ZschedError> {
    use std::os::unix::fs::MetadataExt;
    let fail = |e: std::io::Error| {
        ZschedError::Isolation(isolation::mount::io_error(
            "chown the zone's root",
            upper,
            e,
        ))
    };
    let image_root = std::fs::metadata(lower).map_err(fail)?;
    let uid = owner.0.saturating_add(image_root.uid());
    let gid = owner.1.saturating_add(image_root.gid());
    std::os::unix::fs::chown(upper, Some(uid), Some(gid)).map_err(fail)?;
    std::fs::set_permissions(
        upper,
        std::fs::Permissions::from_mode(image_root.mode() & 0o7777),
    )
    .map_err(fail)
}

/// stdin, stdout and stderr on the console pty.
fn redirect_stdio(console: &OwnedFd) -> Result<(), ZschedError> {
    for to in 0..=2 {
        // SAFETY: dup2 of a descriptor this process owns onto a standard
        // descriptor, which no Rust object owns.
        if unsafe { libc::dup2(console.as_raw_fd(), to) } < 0 {
            return Err(isolation::IsolationError::sys(
                "redirect stdio",
                format!("fd {to}"),
                nix::Error::last(),
            )
            .into());
        }
    }
    Ok(())
}

/// Writes one configuration file inside the zone (after `pivot_root`).
fn write_zone_file(path: &str, contents: &str) -> Result<(), ZschedError> {
    let path = Path::new(path);
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

/// What a booted system reads to know where it runs and who it is:
/// `/run/systemd/container` names the container manager (systemd's
/// `ConditionVirtualization=container` and `systemd-detect-virt` read it), and
/// `/etc/machine-id` becomes the zone's uuid while it is still the image's
/// (`image_machine_id`: every zone of the image would share it), empty or
/// `uninitialized`, so each zone is its own machine to journald and D-Bus. A
/// machine id the zone set itself is kept.
fn write_identity(uuid: &str, image_machine_id: Option<&str>) -> Result<(), ZschedError> {
    write_zone_file("/run/systemd/container", "zonefleet\n")?;
    let current = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let current = current.trim();
    let not_own = current.is_empty()
        || current == "uninitialized"
        || image_machine_id.is_some_and(|image| image.trim() == current);
    if not_own && Path::new("/etc").is_dir() {
        write_zone_file("/etc/machine-id", &format!("{}\n", uuid.replace('-', "")))?;
    }
    Ok(())
}
