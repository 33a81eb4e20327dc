//! The `zfadm` command line: argument parsing (clap derive) and dispatch.
//!
//! Each command group is a module with a clap `Subcommand` enum and a `run` function
//! writing its report to the given output; errors are `anyhow` errors naming what was
//! wrong, printed by [`main`] with a non-zero exit status. The operator API's groups
//! (`zone`, `host`, `fleet`, `token`, `image`, `network`, `cluster`, `controller`) print through
//! `render` (tables, `-o json`) and read files through `input`; `events` prints the
//! fleet's events as they come.

mod agent;
mod bench;
mod cluster;
mod connect;
mod controller;
mod dev;
mod drain;
mod events;
mod fleet;
mod host;
mod image;
mod network;
mod pki;
mod progress;
mod render;
mod token;
mod zone;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use zonefleet_proto::cli::Format;

/// Operate a zonefleet fleet.
#[derive(Debug, Parser)]
// `about` is the help's first line as it read while zfadm was a binary of the
// controller package (whose description it was).
#[command(
    name = "zfadm",
    version,
    about = "zonefleet's Raft-replicated controllers and the zfadm operator CLI",
    propagate_version = true
)]
pub struct Cli {
    /// How to reach the controllers (flags, environment or
    /// `~/.config/zonefleet/config.toml`).
    #[command(flatten)]
    pub connect: connect::ConnectArgs,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t
    )]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the fleet PKI: the CA and the controller, operator and agent certificates,
    /// and the revocation list.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Zones: create, get, list, update, stop, start, reboot, delete.
    #[command(subcommand)]
    Zone(zone::ZoneCommand),
    /// Hosts: list, get, cordon, uncordon, drain (by id, rack or labels), set-inventory.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// The fleet: whether lost hosts' zones are moved automatically (status, resume).
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// One-time join tokens with which hosts enroll: create, list, revoke.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Images: import (upload to the controllers), list, get, delete.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Networks: create, list, delete.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// The controllers' Raft group.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Add or remove a controller.
    #[command(subcommand)]
    Controller(controller::ControllerCommand),
    /// The fleet's events (hosts up, down, cordoned; zones placed, moved, started,
    /// halted, fenced, failed; the rescheduling pause), oldest first; `-f` follows.
    Events(events::EventsArgs),
    /// Commit small operations through the cluster at several concurrencies and report
    /// throughput and latency.
    Bench(bench::BenchArgs),
    /// A local fleet on this machine (root): hosts in network namespaces, controllers,
    /// agents, sample zones.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Print a shell completion script to standard output.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command line, writing its report to `out`; returns the exit status
/// (0, or the status of the command `zone exec` ran).
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Zone(zone::ZoneCommand::Exec {
            zone,
            tty,
            direct,
            command,
        }) => {
            let conn = cli.connect.resolve_with(direct.given().is_none())?;
            let rt = tokio::runtime::Runtime::new()?;
            let status = rt.block_on(async {
                let target = agent::target(&conn, &zone, direct.given(), true).await?;
                agent::exec(&conn, &target, command, tty, out).await
            })?;
            // A status outside 0..=255 cannot be an exit status: say failure.
            Ok(u8::try_from(status).unwrap_or(255))
        }
        Command::Zone(zone::ZoneCommand::Logs {
            zone,
            follow,
            tail,
            direct,
        }) => {
            let conn = cli.connect.resolve_with(direct.given().is_none())?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let target = agent::target(&conn, &zone, direct.given(), false).await?;
                agent::logs(&conn, &target, follow, tail.unwrap_or(0), out).await
            })?;
            Ok(0)
        }
        command => run_report(Cli { command, ..cli }, out).map(|()| 0),
    }
}

/// The commands that write a report (every one but `zone exec` and `zone logs`).
fn run_report(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let output = cli.output;
    // Remote commands: the controllers to call and a runtime to call them from.
    let session = || -> anyhow::Result<(connect::Connection, tokio::runtime::Runtime)> {
        Ok((cli.connect.resolve()?, tokio::runtime::Runtime::new()?))
    };
    match cli.command {
        Command::Pki(command) if pki::is_remote(&command) => {
            let (conn, rt) = session()?;
            rt.block_on(pki::run_remote(&conn, output, command, out))
        }
        Command::Pki(command) => pki::run(command, out),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when its writer fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "zfadm", &mut script);
            Ok(out.write_all(&script)?)
        }
        Command::Dev(c) => dev::run(c, out),
        Command::Zone(zone::ZoneCommand::Validate { file }) => zone::validate(&file, out),
        Command::Zone(c) => {
            let (conn, rt) = session()?;
            rt.block_on(zone::run(&conn, output, c, out))
        }
        Command::Host(c) => {
            let (conn, rt) = session()?;
            rt.block_on(host::run(&conn, output, c, out))
        }
        Command::Fleet(c) => {
            let (conn, rt) = session()?;
            rt.block_on(fleet::run(&conn, output, c, out))
        }
        Command::Token(c) => {
            let (conn, rt) = session()?;
            rt.block_on(token::run(&conn, output, c, out))
        }
        Command::Image(c) => {
            let (conn, rt) = session()?;
            rt.block_on(image::run(&conn, output, c, out))
        }
        Command::Network(c) => {
            let (conn, rt) = session()?;
            rt.block_on(network::run(&conn, output, c, out))
        }
        Command::Controller(c) => {
            let (conn, rt) = session()?;
            rt.block_on(controller::run(&conn, output, c, out))
        }
        Command::Cluster(cluster::ClusterCommand::Status) => {
            let (conn, rt) = session()?;
            let status = rt.block_on(cluster::cluster_status(&conn))?;
            render::print_status(out, output, &status)
        }
        Command::Events(args) => {
            let (conn, rt) = session()?;
            rt.block_on(events::run(&conn, output, args, out))
        }
        Command::Bench(args) => {
            let (conn, rt) = session()?;
            rt.block_on(bench::run(&conn, &args, output, out))
        }
    }
}

/// Parses the process arguments and runs them; on error prints `zfadm: error: …` with
/// the whole cause chain and exits with status 1 (usage errors: clap's status 2).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, &mut out).and_then(|status| Ok(out.flush().map(|()| status)?)) {
        Ok(status) => ExitCode::from(status),
        // The reader stopped reading (`zfadm … | head`, `| grep -q`): the command did
        // its work and nothing is wrong, as when a C tool dies of SIGPIPE unheard.
        Err(error) if closed_stdout(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("zfadm: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `error` is the write to a closed pipe on standard output.
fn closed_stdout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_pipe_is_quiet() {
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the zone list");
        assert!(closed_stdout(&pipe));
        let other = anyhow::anyhow!("controller 127.0.0.1:7101: connection refused");
        assert!(!closed_stdout(&other));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
