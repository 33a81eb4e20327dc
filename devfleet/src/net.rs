//! The switch and the hosts of a local fleet: a bridge in the root network namespace,
//! and per host a network namespace with one veth (`eth0` inside) plugged into the
//! bridge and an address in the fleet's /24, plus optionally a second port (`eth1`, no
//! address) that the host's agent makes the uplink of its zones' bridge. Only addresses
//! of that /24, on links made here, are used.
//!
//! A [`Switch`] and its [`HostNs`]s remove themselves when dropped (a test's fleet)
//! unless [`Switch::keep`] / [`HostNs::keep`] was called (`zfadm dev up`, whose fleet
//! `zfadm dev down` removes by name with [`sweep`]).

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::process::Command;

/// What went wrong setting up the network of a local fleet.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// A namespace file could not be opened.
    #[error("opening {path}: {error}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Runs `ip` with `args` (in the root network namespace).
pub fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetError::Ip {
            args: args.join(" "),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The fleet's bridge, and the /24 its hosts take addresses from.
#[derive(Debug)]
pub struct Switch {
    prefix: String,
    bridge: String,
    subnet: [u8; 3],
    keep: bool,
}

impl Switch {
    /// Makes the bridge `<prefix>sw` (up, no address) for hosts named `<prefix>h<N>`
    /// with addresses in `a.b.c.0/24`.
    pub fn new(prefix: &str, subnet: [u8; 3]) -> Result<Switch, NetError> {
        let bridge = format!("{prefix}sw");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let switch = Switch {
            prefix: prefix.to_owned(),
            subnet,
            bridge,
            keep: false,
        };
        ip(&["link", "set", &switch.bridge, "up"])?;
        Ok(switch)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The address of host number `n` (1..=200): a.b.c.(10+n).
    pub fn address(&self, n: u8) -> Ipv4Addr {
        assert!((1..=200).contains(&n), "host number {n}");
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + n)
    }

    /// Gives the root network namespace (the machine's own) `cidr` on the bridge: how an
    /// operator's shell reaches a fleet that `zfadm dev up` made.
    pub fn add_address(&self, cidr: &str) -> Result<(), NetError> {
        ip(&["addr", "replace", cidr, "dev", &self.bridge])
    }

    /// Makes host number `n`: namespace `<prefix>h<n>`, plugged into this switch.
    pub fn host(&self, n: u8) -> Result<HostNs, NetError> {
        let name = format!("{}h{n}", self.prefix);
        ip(&["netns", "add", &name])?;
        // From here on, dropping `host` removes what was made.
        let host = HostNs {
            name: name.clone(),
            address: self.address(n),
            keep: false,
        };
        ip(&[
            "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ])?;
        ip(&["link", "set", &name, "master", &self.bridge, "up"])?;
        let cidr = format!("{}/24", host.address);
        host.ip(&["addr", "add", &cidr, "dev", "eth0"])?;
        host.ip(&["link", "set", "eth0", "up"])?;
        host.ip(&["link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// Gives `host` a second port on this switch, `eth1` inside, with no address: the
    /// uplink its agent makes a port of the zones' bridge, so zones on different hosts
    /// share one layer-2 segment (as hosts' data NICs on a rack switch do).
    pub fn add_uplink(&self, host: &HostNs) -> Result<(), NetError> {
        let outside = format!("{}u", host.name);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", "eth1", "netns", &host.name,
        ])?;
        ip(&["link", "set", &outside, "master", &self.bridge, "up"])?;
        host.ip(&["link", "set", "eth1", "up"])
    }

    /// Leaves the bridge in place when this is dropped.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = ip(&["link", "delete", &self.bridge]);
        }
    }
}

/// One host's network namespace, with `eth0` on the switch. Removed on drop (which also
/// removes its veths) unless kept.
#[derive(Debug)]
pub struct HostNs {
    name: String,
    address: Ipv4Addr,
    keep: bool,
}

impl HostNs {
    /// A host that exists already (made by an earlier [`Switch::host`] and kept), to run
    /// commands in; it is not removed on drop.
    pub fn existing(name: &str, address: Ipv4Addr) -> HostNs {
        HostNs {
            name: name.to_owned(),
            address,
            keep: true,
        }
    }

    /// The namespace's name (under `/run/netns`), also its veth's name on the switch.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the switch.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Runs `ip` with `args` inside this namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), NetError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Opens the namespace, for `setns(2)` in a child (see [`crate::enter`]).
    pub fn open(&self) -> Result<OwnedFd, NetError> {
        let path = format!("/run/netns/{}", self.name);
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|error| NetError::Open { path, error })
    }

    /// Cuts the host off the switch (its veth down on the switch side): a pulled cable.
    pub fn unplug(&self) -> Result<(), NetError> {
        ip(&["link", "set", &self.name, "down"])
    }

    /// Plugs it back in.
    pub fn plug(&self) -> Result<(), NetError> {
        ip(&["link", "set", &self.name, "up"])
    }

    /// Leaves the namespace and its veths in place when this is dropped.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for HostNs {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = ip(&["netns", "delete", &self.name]);
        let _ = ip(&["link", "delete", &self.name]);
        let _ = ip(&["link", "delete", &format!("{}u", self.name)]);
    }
}

fn lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the network namespaces, the links and the top-level cgroups (in every v1
/// hierarchy and in a v2 mount) whose names `doomed` picks: what a local fleet leaves
/// once its daemons are gone. Whatever still runs in such a cgroup (the zones of a test
/// run killed before its cleanup) is killed first. Returns what went: cgroup paths,
/// `netns NAME`, `link NAME`.
pub fn sweep(doomed: impl Fn(&str) -> bool) -> Vec<String> {
    let mut removed = Vec::new();
    let mut cgroup_dirs = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    if let Ok(mounts) = std::fs::read_dir("/sys/fs/cgroup") {
        cgroup_dirs.extend(mounts.flatten().map(|m| m.path()));
    }
    for dir in cgroup_dirs {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if doomed(&name) && entry.path().is_dir() && remove_cgroup_tree(&entry.path()) {
                removed.push(entry.path().display().to_string());
            }
        }
    }
    for line in lines("ip", &["netns", "list"]) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if doomed(name) && ip(&["netns", "delete", name]).is_ok() {
            removed.push(format!("netns {name}"));
        }
    }
    for line in lines("ip", &["-o", "link", "show"]) {
        // "12: zft0012ab3sw: <…" or "13: zft0012ab3h1@if2: <…"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if doomed(name) && ip(&["link", "delete", name]).is_ok() {
            removed.push(format!("link {name}"));
        }
    }
    removed
}

/// Kills every process in the cgroup at `path` and below (thawing a frozen v1 freezer
/// cgroup first, or SIGKILL would wait), then removes the cgroups, deepest first.
/// Whether `path` itself went.
fn remove_cgroup_tree(path: &std::path::Path) -> bool {
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let freezer = path.join("freezer.state");
    if freezer.exists() {
        let _ = std::fs::write(&freezer, "THAWED");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let pids: Vec<i32> = std::fs::read_to_string(path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::remove_dir(path).is_ok()
}
