//! The switch and the hosts of a multi-host test: a bridge in the root network
//! namespace, and per host a network namespace with one veth (`eth0` inside) plugged
//! into the bridge and an address in the run's /24. Only addresses of that /24, on links
//! the harness made, are used.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::process::Command;

/// What went wrong setting up the network of a test fleet.
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

/// The run's bridge, and the /24 its hosts take addresses from. Removed on drop.
#[derive(Debug)]
pub struct Switch {
    run: String,
    bridge: String,
    subnet: [u8; 3],
}

impl Switch {
    /// Makes the bridge `<run>sw` (up, no address: the root namespace is not a host).
    /// The subnet is 10.233.N.0/24 with N from the run name, so concurrent runs differ.
    pub fn new(run: &str) -> Result<Switch, NetError> {
        let bridge = format!("{run}sw");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let switch = Switch {
            run: run.to_owned(),
            subnet: [10, 233, subnet_octet(run)],
            bridge,
        };
        ip(&["link", "set", &switch.bridge, "up"])?;
        Ok(switch)
    }

    /// The address of host number `n` (1..=200): 10.233.N.(10+n).
    pub fn address(&self, n: u8) -> Ipv4Addr {
        assert!((1..=200).contains(&n), "host number {n}");
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + n)
    }

    /// Makes host number `n`: namespace `<run>h<n>`, plugged into this switch.
    pub fn host(&self, n: u8) -> Result<HostNs, NetError> {
        let name = format!("{}h{n}", self.run);
        ip(&["netns", "add", &name])?;
        // From here on, dropping `host` removes what was made.
        let host = HostNs {
            name: name.clone(),
            address: self.address(n),
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
}

impl Switch {
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
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}

/// A stable octet per run name, avoiding 0 and 255.
fn subnet_octet(run: &str) -> u8 {
    let hash = run.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    (hash % 250) as u8 + 1
}

/// One host's network namespace, with `eth0` on the switch. Removed on drop (which also
/// removes its veth).
#[derive(Debug)]
pub struct HostNs {
    name: String,
    address: Ipv4Addr,
}

impl HostNs {
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

    /// Opens the namespace, for `setns(2)` in a child (see [`crate::process`]).
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
}

impl Drop for HostNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
        let _ = ip(&["link", "delete", &self.name]);
        let _ = ip(&["link", "delete", &format!("{}u", self.name)]);
    }
}
