//! `zonefleet-controller`: one member of the Raft group that holds the fleet's
//! desired state and serves the operator API over mTLS.

use clap::Parser;

/// Command line of `zonefleet-controller`.
#[derive(Debug, Parser)]
#[command(name = "zonefleet-controller", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!(
        "zonefleet-controller: the Raft service is not built yet (see the controllers issue); \
         use `zfadm pki` to prepare a fleet's certificates"
    );
    std::process::exit(2);
}
