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
    /// Show the fleet's settings (unset ones take their defaults).
    Settings,
    /// Change fleet settings; what is not named stays as it is.
    Set {
        /// The share of hosts down at once (percent, 1..=100; default 50) that pauses
        /// automatic rescheduling.
        #[arg(long)]
        mass_loss_percent: Option<u32>,
    },
}

/// Runs a fleet command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: FleetCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let pause = match command {
        FleetCommand::Settings => return print_settings(out, output, &settings(conn).await?),
        FleetCommand::Set { mass_loss_percent } => {
            // Read, change, write: the other settings stay as they are.
            let mut changed = settings(conn).await?;
            if mass_loss_percent.is_some() {
                changed.mass_loss_percent = mass_loss_percent;
            }
            let written =
                conn.call(|mut c| async move {
                    c.set_fleet_settings(changed).await.map(|r| r.into_inner())
                })
                .await?;
            return print_settings(out, output, &written);
        }
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

async fn settings(conn: &Connection) -> anyhow::Result<pb::FleetSettings> {
    conn.call(|mut c| async move {
        c.get_fleet_settings(pb::GetFleetSettingsRequest::default())
            .await
            .map(|r| r.into_inner())
    })
    .await
}

/// The settings this command shows (the others are the scheduler's: docs/scheduler.md).
fn print_settings(
    out: &mut dyn Write,
    output: Format,
    settings: &pb::FleetSettings,
) -> anyhow::Result<()> {
    let mass_loss = settings
        .mass_loss_percent
        .unwrap_or(pb::DEFAULT_MASS_LOSS_PERCENT);
    if output == Format::Json {
        zonefleet_proto::cli::write_json(
            out,
            &serde_json::json!({ "mass_loss_percent": mass_loss }),
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "mass_loss_percent: {mass_loss}{}",
        if settings.mass_loss_percent.is_none() {
            " (default)"
        } else {
            ""
        }
    )?;
    Ok(())
}
