//! The `zfadm` command line: argument parsing (clap derive) and dispatch.
//!
//! Each command group is a module with a clap `Subcommand` enum and a `run` function
//! writing its report to the given output; errors are `anyhow` errors naming what was
//! wrong, printed by [`main`] with a non-zero exit status.

mod pki;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Operate a zonefleet fleet.
#[derive(Debug, Parser)]
#[command(name = "zfadm", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the fleet PKI: the CA and the controller, operator and agent certificates.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Print a shell completion script to standard output.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command line, writing its report to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Pki(command) => pki::run(command, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "zfadm", out);
            Ok(())
        }
    }
}

/// Parses the process arguments and runs them; on error prints `zfadm: error: …` with
/// the whole cause chain and exits with status 1 (usage errors: clap's status 2).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, &mut out).and_then(|()| Ok(out.flush()?)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("zfadm: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
