//! `zfadm dev up|env|down`: a whole fleet on this machine. Each host is a network
//! namespace on a bridge "switch" (the `zonefleet-devfleet` crate, which the multi-host
//! tests build their fleets with too): controllers on three hosts, agents on three
//! more in two racks, each enrolled with its own join token, with its own data dir,
//! cgroup parent and capacity share. Everything it makes is named `zfdev…` and lives
//! under one directory, so `zfadm dev down` removes all of it.

mod daemon;
mod down;
mod layout;
mod up;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use layout::Files;

/// `zfadm dev …`
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Start a local fleet (root): hosts in network namespaces, 3 controllers, agents in
    /// 2 racks, the busybox image, sample zones; prints how to reach it.
    Up(UpArgs),
    /// Print the shell exports that point zfadm at the local fleet
    /// (`eval "$(zfadm dev env)"`).
    Env(DirArgs),
    /// Remove the local fleet: zones, agents, controllers, namespaces, links, cgroups,
    /// files.
    Down(DirArgs),
}

/// Where the local fleet's files are.
#[derive(Debug, Clone, Args)]
pub struct DirArgs {
    /// The fleet's directory (PKI, configs, data dirs, logs).
    #[arg(
        long,
        value_name = "DIR",
        env = "ZONEFLEET_DEV_DIR",
        default_value = "/var/lib/zonefleet-dev"
    )]
    pub dir: PathBuf,
}

/// Arguments of `zfadm dev up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the fleet's files go.
    #[command(flatten)]
    pub dir: DirArgs,
    /// How many controllers (one Raft group).
    #[arg(long = "controller-count", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub controllers: u8,
    /// How many agents (hosts that run zones), spread over racks r1 and r2.
    #[arg(long = "agent-count", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub agents: u8,
    /// Each agent's RAM share, MiB (the controllers keep 1 GiB of it for the global
    /// zone).
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub agent_memory: u64,
    /// Each agent's CPU share, percent of one CPU (one CPU of it is kept back).
    #[arg(long, value_name = "PERCENT", default_value_t = 200)]
    pub agent_cpu: u32,
    /// Each agent's disk share, GiB.
    #[arg(long, value_name = "GIB", default_value_t = 16)]
    pub agent_disk: u64,
    /// Do not create the sample network and zones.
    #[arg(long)]
    pub no_samples: bool,
}

/// Runs a dev command.
pub fn run(command: DevCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        DevCommand::Up(args) => {
            need_root("zfadm dev up")?;
            up::up(&args, out)
        }
        DevCommand::Env(args) => print_env(&Files::new(&absolute(&args.dir)?), out),
        DevCommand::Down(args) => {
            need_root("zfadm dev down")?;
            down::down(&Files::new(&absolute(&args.dir)?), out)
        }
    }
}

fn need_root(what: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "{what} needs root: its hosts are network namespaces and its zones need \
             namespaces, cgroups and loop devices"
        );
    }
    Ok(())
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(dir)?)
}

/// The controllers' addresses as the fleet's zfadm config lists them.
fn controllers(files: &Files) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Config {
        controllers: Vec<String>,
    }
    let path = files.zfadm_config();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "no local fleet in {}: {e} (start one with `zfadm dev up`)",
            files.dir().display()
        )
    })?;
    let config: Config =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config.controllers)
}

fn print_env(files: &Files, out: &mut dyn Write) -> anyhow::Result<()> {
    let pki = files.pki();
    writeln!(
        out,
        "export ZONEFLEET_CONTROLLERS={}",
        controllers(files)?.join(",")
    )?;
    writeln!(out, "export ZONEFLEET_CA={}", pki.join("ca.crt").display())?;
    writeln!(
        out,
        "export ZONEFLEET_CERT={}",
        pki.join("operator-admin.crt").display()
    )?;
    writeln!(
        out,
        "export ZONEFLEET_KEY={}",
        pki.join("operator-admin.key").display()
    )?;
    writeln!(
        out,
        "export ZONEFLEET_CONFIG={}",
        files.zfadm_config().display()
    )?;
    Ok(())
}

/// Runs `zfadm ARGS` in this process against the fleet in `files` (whatever the
/// caller's environment says): its output.
fn zfadm(files: &Files, args: &[&str]) -> anyhow::Result<String> {
    let pki = files.pki();
    let controllers = controllers(files)?.join(",");
    let mut argv: Vec<String> = vec!["zfadm".into()];
    for (flag, value) in [
        ("--zfadm-config", files.zfadm_config()),
        ("--controllers", PathBuf::from(controllers)),
        ("--ca", pki.join("ca.crt")),
        ("--cert", pki.join("operator-admin.crt")),
        ("--key", pki.join("operator-admin.key")),
    ] {
        argv.push(flag.into());
        argv.push(value.display().to_string());
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    let cli = super::Cli::try_parse_from(&argv)?;
    let mut out = Vec::new();
    super::run(cli, &mut out).map_err(|e| e.context(format!("zfadm {}", args.join(" "))))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `zfadm ARGS -o json`, parsed.
fn zfadm_json(files: &Files, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let text = zfadm(files, &all)?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("zfadm {}: {e}: {text}", args.join(" ")))
}
