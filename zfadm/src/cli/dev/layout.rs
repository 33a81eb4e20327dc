//! Where a dev fleet's pieces are: the names of its links, namespaces and cgroups (all
//! starting with [`PREFIX`], so `zfadm dev down` can find every one), its addresses,
//! and its files under the fleet directory.

use std::path::{Path, PathBuf};

/// The prefix of every name a dev fleet gives (namespaces, links, cgroup parents).
pub const PREFIX: &str = "zfdev";
/// The hosts' /24: the switch carries it, each host has one address in it.
pub const HOST_SUBNET: [u8; 3] = [10, 234, 0];
/// The machine's own address on the switch, from which `zfadm` reaches the controllers.
pub const OPERATOR_CIDR: &str = "10.234.0.1/24";
/// The zones' network gateway, also the machine's address on the switch: zones on
/// every host share that segment through their hosts' uplinks.
pub const ZONE_GATEWAY_CIDR: &str = "10.234.1.1/24";
/// The port each controller listens on (each on its own host's address).
pub const PORT: u16 = 7000;
/// The dev fleet's cluster name.
pub const CLUSTER: &str = "dev";

/// The racks agents are spread over, in turn.
pub const RACKS: [&str; 2] = ["r1", "r2"];

/// The host number of controller `i` (0-based): 1, 2, 3…
pub fn controller_host(i: usize) -> u8 {
    i as u8 + 1
}

/// The host number of agent `n` (1-based): 101, 102, 103…
pub fn agent_host(n: usize) -> u8 {
    100 + n as u8
}

/// Agent `n`'s rack.
pub fn agent_rack(n: usize) -> &'static str {
    RACKS[(n - 1) % RACKS.len()]
}

/// The files of a dev fleet, under one directory.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// The fleet in `dir`.
    pub fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_owned(),
        }
    }

    /// The fleet directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `zfadm pki init` wrote.
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The `zfadm` configuration that reaches this fleet.
    pub fn zfadm_config(&self) -> PathBuf {
        self.dir.join("zfadm.toml")
    }

    /// The busybox image archive.
    pub fn image(&self) -> PathBuf {
        self.dir.join("busybox.tar.gz")
    }

    /// The sample specs (network, zones) as written for the operator to read.
    pub fn samples(&self) -> PathBuf {
        self.dir.join("samples")
    }

    /// Controller `id`'s config file (its data dir and log are beside it).
    pub fn controller(&self, id: usize) -> PathBuf {
        self.dir.join(format!("controller-{id}.toml"))
    }

    /// Agent `n`'s directory: agent.toml, its data dir, log and pid file.
    pub fn agent(&self, n: usize) -> PathBuf {
        self.dir.join(format!("agent-{n}"))
    }

    /// The agents' directories that exist, with their numbers.
    pub fn agents(&self) -> Vec<(usize, PathBuf)> {
        self.numbered("agent-", "")
    }

    /// The controllers' config files that exist, with their ids.
    pub fn controllers(&self) -> Vec<(usize, PathBuf)> {
        self.numbered("controller-", ".toml")
    }

    /// Entries of the fleet directory named `<prefix><N><suffix>`, by N.
    fn numbered(&self, prefix: &str, suffix: &str) -> Vec<(usize, PathBuf)> {
        let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_prefix(prefix)?
                    .strip_suffix(suffix)?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        found.sort();
        found
    }
}

/// Agent `n`'s cgroup parent.
pub fn agent_cgroup_parent(n: usize) -> String {
    format!("{PREFIX}a{n}")
}

/// Agent `n`'s zones' bridge (inside its host's namespace).
pub fn agent_bridge(n: usize) -> String {
    format!("{PREFIX}b{n}")
}

/// A pid file beside `path` (`controller-1.toml` → `controller-1.pid`).
pub fn pid_file(path: &Path) -> PathBuf {
    path.with_extension("pid")
}

/// A log file beside `path`.
pub fn log_file(path: &Path) -> PathBuf {
    path.with_extension("log")
}
