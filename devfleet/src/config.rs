//! The configuration files of a local fleet's daemons: `zonefleet-controller --config`
//! and `zonefleet-agent run --config` (see docs/controller.md and docs/agent.md for
//! every key). Paths relative to a controller's file are resolved from its directory.

use std::fmt::Write;
use std::path::PathBuf;

/// One controller of a local fleet.
#[derive(Debug, Clone)]
pub struct ControllerFile {
    /// Its Raft node id (1..).
    pub id: u64,
    /// The cluster name.
    pub cluster: String,
    /// `HOST:PORT` it serves on.
    pub listen: String,
    /// The PKI directory `zfadm pki init` wrote, relative to the config file's directory
    /// or absolute.
    pub pki: PathBuf,
    /// Its data dir, relative to the config file's directory or absolute.
    pub data_dir: PathBuf,
    /// Every initial member: (id, `HOST:PORT`).
    pub members: Vec<(u64, String)>,
}

impl ControllerFile {
    /// The TOML text.
    pub fn render(&self) -> String {
        let pki = |name: &str| quote(&self.pki.join(name).display().to_string());
        let id = self.id;
        let mut text = format!(
            "id = {id}\ncluster = {}\nlisten = {}\ndata_dir = {}\n\
             [tls]\nca = {}\ncert = {}\nkey = {}\n\
             [signing_ca]\ncert = {}\nkey = {}\n\
             [initial_members]\n",
            quote(&self.cluster),
            quote(&self.listen),
            quote(&self.data_dir.display().to_string()),
            pki("ca.crt"),
            pki(&format!("controller-{id}.crt")),
            pki(&format!("controller-{id}.key")),
            pki("signing-ca.crt"),
            pki("signing-ca.key"),
        );
        for (member, address) in &self.members {
            let _ = writeln!(text, "{member} = {}", quote(address));
        }
        text
    }
}

/// How an agent joins: the controllers, its one-time token and the CA pin.
#[derive(Debug, Clone)]
pub struct Joining {
    /// `HOST:PORT` of every controller.
    pub controllers: Vec<String>,
    /// A join token from `zfadm token create`.
    pub token: String,
    /// The root CA's fingerprint, `sha256:HEX`.
    pub ca: String,
}

impl Joining {
    /// The same settings as a PXE-booted host's kernel command line carries them.
    pub fn kernel_cmdline(&self) -> String {
        format!(
            "zonefleet.controllers={} zonefleet.token={} zonefleet.ca={}",
            self.controllers.join(","),
            self.token,
            self.ca
        )
    }
}

/// The capacity an agent offers (its share of this machine).
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// RAM, MiB.
    pub memory_mib: u64,
    /// CPU, percent of one CPU.
    pub cpu_percent: u32,
    /// Disk, GiB.
    pub disk_gib: u64,
}

/// One agent of a local fleet.
#[derive(Debug, Clone)]
pub struct AgentFile {
    /// How it joins; `None` when the kernel command line (`--cmdline`) says it.
    pub joining: Option<Joining>,
    /// The cluster name.
    pub cluster: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its cgroup parent (its zones' cgroups go under it).
    pub cgroup_parent: String,
    /// The zones' bridge on its host.
    pub bridge: String,
    /// The host's link that the zones' bridge takes as its uplink.
    pub uplink: Option<String>,
    /// Its capacity share.
    pub share: Share,
    /// Whether its `reschedule` zones are fenced when its lease runs out (only a test
    /// of the double-run check turns it off).
    pub fencing: bool,
}

impl AgentFile {
    /// The TOML text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Some(j) = &self.joining {
            let controllers: Vec<String> = j.controllers.iter().map(|c| quote(c)).collect();
            let _ = write!(
                text,
                "controllers = [{}]\ntoken = {}\nca = {}\n",
                controllers.join(", "),
                quote(&j.token),
                quote(&j.ca)
            );
        }
        let _ = write!(
            text,
            "cluster = {}\ndata_dir = {}\ncgroup_parent = {}\nbridge = {}\n",
            quote(&self.cluster),
            quote(&self.data_dir.display().to_string()),
            quote(&self.cgroup_parent),
            quote(&self.bridge),
        );
        if let Some(uplink) = &self.uplink {
            let _ = writeln!(text, "uplink = {}", quote(uplink));
        }
        if !self.fencing {
            text.push_str("fencing = false\n");
        }
        let s = self.share;
        let _ = write!(
            text,
            "[capacity]\nmemory_mib = {}\ncpu_percent = {}\ndisk_gib = {}\n",
            s.memory_mib, s.cpu_percent, s.disk_gib
        );
        text
    }
}

/// `s` as a TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_for_toml() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny"), r#""x\u000Ay""#);
    }
}
