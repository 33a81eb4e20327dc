//! `zfadm fleet …`: the fleet-wide switch of automatic rescheduling. The leader pauses
//! the moving of lost hosts' zones on a mass loss (more hosts down at once than
//! `mass_loss_percent`, or a whole rack): `status` shows the pause and why, `resume`
//! lifts it.

use std::io::Write;

use clap::Subcommand;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::Connection;
use super::host;
use super::render::print_reschedule;

/// `zfadm fleet …`
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Whether the controllers move lost hosts' zones by themselves now, and if not,
    /// why and since when.
    Status,
    /// Lift a pause of automatic rescheduling: the lost hosts' zones move again, and
    /// the leader does not pause until this loss ends and another begins.
    Resume,
}

/// Runs a fleet command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: FleetCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let pause = match command {
        FleetCommand::Status => host::list(conn).await?.reschedule.unwrap_or_default(),
        FleetCommand::Resume => {
            conn.call(|mut c| async move {
                c.resume_rescheduling(pb::ResumeReschedulingRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await?
        }
    };
    print_reschedule(out, output, &pause)
}
