//! A fleet of hosts on one machine: each host a network namespace with a veth on a
//! bridge "switch", the configuration files its controller or agent reads, and the
//! zone image every local fleet boots. Shared by `zfadm dev up|down` (a fleet that
//! outlives the command) and the multi-host tests in `tests/` (a fleet removed when the
//! test ends), so both build hosts the same way.
//!
//! * [`net`]: the switch and the hosts, the sweep of leftovers by name;
//! * [`enter`]: running a binary inside a host's network namespace;
//! * [`config`]: the controller's and the agent's TOML files;
//! * [`image`]: the busybox zone image archive.

pub mod config;
pub mod enter;
pub mod image;
pub mod net;
