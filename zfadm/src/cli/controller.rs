//! `zfadm controller …`: adding and removing controllers.

use std::io::Write;

use clap::Subcommand;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::Connection;
use super::render::print_status;

/// `zfadm controller …`
#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Add a controller: it joins as a learner, catches up, then becomes a voter.
    Add {
        /// Its id.
        id: String,
        /// The `HOST:PORT` it serves on.
        address: String,
    },
    /// Remove a controller from the group.
    Remove {
        /// Its id.
        id: String,
    },
}

/// Runs a controller membership command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: ControllerCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let status = match command {
        ControllerCommand::Add { id, address } => {
            let r = pb::AddControllerRequest { id, address };
            conn.call(|mut c| {
                let r = r.clone();
                async move { c.add_controller(r).await.map(|r| r.into_inner()) }
            })
            .await?
        }
        ControllerCommand::Remove { id } => {
            let r = pb::RemoveControllerRequest { id };
            conn.call(|mut c| {
                let r = r.clone();
                async move { c.remove_controller(r).await.map(|r| r.into_inner()) }
            })
            .await?
        }
    };
    print_status(out, output, &status)
}
