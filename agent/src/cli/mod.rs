//! The command line of `zonefleet-agent`: one module per command group.

mod image;
mod output;
mod zone;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

pub use output::Format;

/// Command line of `zonefleet-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "zonefleet-agent",
    version,
    about = "zonefleet's agent: zones on this host"
)]
pub struct Cli {
    /// The agent's data dir (the host's zone pool).
    #[arg(
        long,
        global = true,
        env = "ZONEFLEET_DATA_DIR",
        default_value = "/var/lib/zonefleet"
    )]
    pub data_dir: PathBuf,
    /// The host bridge zone NICs are ports of (created if missing).
    #[arg(long, global = true, env = "ZONEFLEET_BRIDGE", default_value = zonefleet_agent::net::DEFAULT_BRIDGE)]
    pub bridge: String,
    /// An interface the agent makes a port of the bridge (the zones' way out).
    #[arg(long, global = true, env = "ZONEFLEET_UPLINK")]
    pub uplink: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Images: root filesystems shared read-only by zones.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Zones on this host.
    #[command(subcommand)]
    Zone(zone::ZoneCommand),
    /// This host: id, CPUs, memory, kernel, cgroup layout and isolation features.
    Sysinfo {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run a zone's supervisor (started by `zone boot`; not for direct use).
    #[command(hide = true)]
    Zsched {
        /// The zone's boot plan.
        plan: PathBuf,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Image(cmd) => image::run(&cli.data_dir, cmd),
        Command::Zone(cmd) => {
            let bridge = zonefleet_agent::net::BridgeOptions {
                name: cli.bridge.clone(),
                uplink: cli.uplink.clone(),
            };
            zone::run(&cli.data_dir, &bridge, cmd)
        }
        Command::Sysinfo { output } => {
            let info = zonefleet_agent::sysinfo::Sysinfo::collect(&cli.data_dir)?;
            output::sysinfo(&info, output);
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "zonefleet-agent",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Zsched { .. } => unreachable!("dispatched in main"),
    }
}
