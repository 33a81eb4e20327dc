//! `zonefleet-agent`: the agent in a host's global zone. Today it runs one host
//! by hand, as `vmadm` does (`image …`, `zone …`, `sysinfo`), and `run` is the fleet
//! daemon on the same zone library.

mod cli;

use clap::{CommandFactory, FromArgMatches};

fn main() {
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // zsched must start before anything spawns a thread (it forks and unshares
    // a PID namespace), so it is dispatched first, without logging set up.
    if let cli::Command::Zsched { plan } = &cli.command {
        std::process::exit(zonefleet_agent::zsched::main(plan));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONEFLEET_LOG").unwrap_or_else(|_| {
                // The daemon says what it does; the commands only what went wrong.
                let level = match cli.command {
                    cli::Command::Run { .. } => "info",
                    _ => "warn",
                };
                tracing_subscriber::EnvFilter::new(level)
            }),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a log file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(cli, &matches) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("zonefleet-agent: {e:#}");
            std::process::exit(1);
        }
    }
}
