//! `zonefleet-agent`: the agent in a host's global zone. Today it runs one host
//! by hand, as `vmadm` does (`image …`, `zone …`, `sysinfo`); the same zone
//! library will serve the fleet daemon.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    // zsched must start before anything spawns a thread (it forks and unshares
    // a PID namespace), so it is dispatched first, without logging set up.
    if let cli::Command::Zsched { plan } = &cli.command {
        std::process::exit(zonefleet_agent::zsched::main(plan));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONEFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("zonefleet-agent: {e:#}");
            std::process::exit(1);
        }
    }
}
