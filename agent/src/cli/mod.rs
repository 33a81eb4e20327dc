//! The command line of `zonefleet-agent`: one module per command group.

mod bench;
mod image;
mod output;
mod zone;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use zonefleet_proto::cli::Format;

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
    /// The cgroup parent of zone cgroups. Fixed when the data dir is first
    /// used (default `zonefleet`); later runs may leave it out.
    #[arg(long, global = true, env = "ZONEFLEET_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
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
    /// The host bridge zones' NICs attach to (made at the first boot that needs it).
    #[command(subcommand)]
    Bridge(BridgeCommand),
    /// Measure the zone lifecycle on this host.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// This host: id, CPUs, memory, kernel, cgroup layout and isolation features.
    Sysinfo {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run the fleet daemon: enroll, register, heartbeat, watch the zones the
    /// controllers assign and converge them (settings from --config and the kernel
    /// command line; the global flags are refused here).
    Run {
        /// The agent's configuration file (agent.toml); it wins over the command line.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The kernel command line to read `zonefleet.*` settings from.
        #[arg(long, default_value = zonefleet_agent::daemon::cmdline::PROC_CMDLINE)]
        cmdline: PathBuf,
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

impl Cli {
    /// The zone library's options from the global flags.
    pub fn host_options(&self) -> zonefleet_agent::zone::host::HostOptions {
        let mut options = zonefleet_agent::zone::host::HostOptions::new(&self.data_dir);
        options.cgroup_parent = self.cgroup_parent.clone();
        options.bridge = zonefleet_agent::net::BridgeOptions {
            name: self.bridge.clone(),
            uplink: self.uplink.clone(),
        };
        options
    }
}

/// Bridge commands (the bridge is `--bridge`).
#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// Remove the bridge and its host rules (no zone may still use it).
    Delete,
}

/// The global flags `run` does not take: its settings come from agent.toml and the
/// kernel command line, and a flag silently ignored would mislead.
const NOT_FOR_RUN: &[(&str, &str)] = &[
    (
        "data_dir",
        "--data-dir: set data_dir in agent.toml or zonefleet.data=",
    ),
    ("bridge", "--bridge: set bridge in agent.toml"),
    ("uplink", "--uplink: set uplink in agent.toml"),
    (
        "cgroup_parent",
        "--cgroup-parent: set cgroup_parent in agent.toml",
    ),
];

/// Refuses global flags given to `run` on its command line.
fn refuse_global_flags(matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let given = |m: &clap::ArgMatches, id: &str| {
        m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    };
    let run = matches.subcommand_matches("run");
    for (id, instead) in NOT_FOR_RUN {
        if given(matches, id) || run.is_some_and(|m| given(m, id)) {
            anyhow::bail!("run does not take {instead}");
        }
    }
    Ok(())
}

/// Runs a parsed command line (`matches` is what it was parsed from); returns the
/// process exit code.
pub fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<i32> {
    let options = cli.host_options();
    match cli.command {
        Command::Image(cmd) => image::run(&cli.data_dir, cmd),
        Command::Zone(cmd) => zone::run(&options, cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Bridge(BridgeCommand::Delete) => {
            zonefleet_agent::net::remove_bridge(&cli.bridge)?;
            println!("deleted bridge {}", cli.bridge);
            Ok(0)
        }
        Command::Sysinfo { output } => {
            let info = zonefleet_agent::sysinfo::collect(&cli.data_dir)?;
            output::sysinfo(&info, output)?;
            Ok(0)
        }
        Command::Run { config, cmdline } => {
            use zonefleet_agent::daemon;
            refuse_global_flags(matches)?;
            let config = daemon::config::AgentConfig::load(config.as_deref(), &cmdline)?;
            daemon::run(config)?;
            Ok(0)
        }
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "zonefleet-agent", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                // The reader stopped reading: nothing is wrong.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
                written => written.map(|()| 0).map_err(Into::into),
            }
        }
        Command::Zsched { .. } => unreachable!("dispatched in main"),
    }
}
