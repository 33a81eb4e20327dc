//! `zfadm zone …`: create, get, list, update, stop, start, reboot, delete and
//! reschedule zones.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use zonefleet_proto::cli::{read_input, write_json, Format};
use zonefleet_proto::pb;
use zonefleet_proto::spec::{ZonePatch, ZoneSpec};

use super::connect::Connection;
use super::render::{print_zones, zone_json};

/// `zfadm zone …`
#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Check a JSON spec (`-` for standard input) without asking the controllers:
    /// every problem at once, as `zonefleet-agent zone validate` reports them.
    Validate {
        /// The spec file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Create zones from a JSON spec (`-` for standard input).
    Create {
        /// The spec file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// How many zones.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Retrying with the same key returns the first result instead of creating twice.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Decide placement and explain, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show one zone (uuid, unique uuid prefix or alias).
    Get {
        /// The zone.
        zone: String,
        /// Read this controller's state without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// List zones.
    List {
        /// Only zones on this host.
        #[arg(long)]
        host: Option<String>,
        /// Read this controller's state without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Change a zone: a JSON patch of spec fields.
    Update {
        /// The zone.
        zone: String,
        /// The patch file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Stop a zone (desired state `installed`).
    Stop {
        /// The zone.
        zone: String,
    },
    /// Start a zone (desired state `running`).
    Start {
        /// The zone.
        zone: String,
    },
    /// Reboot a zone.
    Reboot {
        /// The zone.
        zone: String,
    },
    /// Delete a zone.
    Delete {
        /// The zone.
        zone: String,
    },
    /// Place a zone again, off its current host (a pending zone, or one whose host is
    /// down or draining); every hard rule holds on the new host.
    Reschedule {
        /// The zone.
        zone: String,
    },
    /// Run a command in a running zone, through its host's agent (like zlogin): stdin
    /// is forwarded, stdout and stderr are the command's, and zfadm exits with its
    /// status.
    Exec {
        /// The zone.
        zone: String,
        /// Give the command a terminal (ours goes into raw mode meanwhile).
        #[arg(short = 't', long)]
        tty: bool,
        #[command(flatten)]
        direct: DirectAgent,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print a zone's console log (what its init wrote), through its host's agent.
    Logs {
        /// The zone.
        zone: String,
        /// Keep printing what is appended, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last BYTES bytes of the retained log.
        #[arg(long, value_name = "BYTES")]
        tail: Option<u64>,
        #[command(flatten)]
        direct: DirectAgent,
    },
}

/// Dial an agent directly instead of finding it through the controllers (when they
/// cannot be reached, or to test an agent).
#[derive(Debug, Clone, clap::Args)]
pub struct DirectAgent {
    /// The agent's address, `HOST:PORT` (with --host).
    #[arg(long = "agent", value_name = "HOST:PORT", requires = "host")]
    pub agent: Option<String>,
    /// The host id the agent's certificate must name (with --agent).
    #[arg(long = "host", value_name = "HOST_ID", requires = "agent")]
    pub host: Option<String>,
}

impl DirectAgent {
    /// Both flags, when given.
    pub fn given(&self) -> Option<(String, String)> {
        self.agent.clone().zip(self.host.clone())
    }
}

/// `zfadm zone validate`: reads and validates a spec here, asking no controller.
pub fn validate(file: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<()> {
    ZoneSpec::from_json_validated(&read_input(file)?)?;
    writeln!(out, "valid")?;
    Ok(())
}

fn consistency(stale: bool) -> i32 {
    if stale {
        pb::ReadConsistency::Stale as i32
    } else {
        pb::ReadConsistency::Unspecified as i32
    }
}

/// Runs a zone command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: ZoneCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // A listing is a JSON array whatever its length; the other commands name one zone
    // (or a create's zones) and print an object when there is one.
    let single = !matches!(command, ZoneCommand::List { .. });
    let zones = match command {
        ZoneCommand::Create {
            file,
            count,
            idempotency_key,
            dry_run,
        } => {
            let spec = ZoneSpec::from_json_validated(&read_input(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            let request = pb::CreateZonesRequest {
                spec: Some(spec.into()),
                count,
                idempotency_key: idempotency_key
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                dry_run,
            };
            let response = conn
                .call(|mut c| {
                    let r = request.clone();
                    async move { c.create_zones(r).await.map(|r| r.into_inner()) }
                })
                .await?;
            if output == Format::Json && dry_run {
                let v = json!({
                    "zones": response.zones.iter().map(zone_json).collect::<Vec<_>>(),
                    "top_scores": response.top_scores.iter()
                        .map(|t| json!({ "host_id": t.host_id, "score": t.score }))
                        .collect::<Vec<_>>(),
                    "explanation": response.explanation,
                });
                write_json(out, &v)?;
                return Ok(());
            }
            if output == Format::Table {
                if dry_run {
                    writeln!(out, "dry run: nothing was created")?;
                    for t in &response.top_scores {
                        writeln!(out, "  score {:>7.1}  {}", t.score, t.host_id)?;
                    }
                }
                if !response.explanation.is_empty() {
                    writeln!(out, "note: {}", response.explanation)?;
                }
            }
            response.zones
        }
        ZoneCommand::Get { zone, stale } => {
            let request = pb::GetZoneRequest {
                zone,
                consistency: consistency(stale),
            };
            vec![
                conn.call(|mut c| {
                    let r = request.clone();
                    async move { c.get_zone(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        ZoneCommand::List { host, stale } => {
            let request = pb::ListZonesRequest {
                host_id: host,
                state: None,
                consistency: consistency(stale),
            };
            conn.call(|mut c| {
                let r = request.clone();
                async move { c.list_zones(r).await.map(|r| r.into_inner().zones) }
            })
            .await?
        }
        ZoneCommand::Update { zone, file } => {
            let patch = ZonePatch::from_json(&read_input(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            let request = pb::UpdateZoneRequest {
                zone,
                patch: Some((&patch).into()),
            };
            vec![
                conn.call(|mut c| {
                    let r = request.clone();
                    async move { c.update_zone(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        verb => {
            let (zone, which) = match verb {
                ZoneCommand::Stop { zone } => (zone, 0),
                ZoneCommand::Start { zone } => (zone, 1),
                ZoneCommand::Reboot { zone } => (zone, 2),
                ZoneCommand::Delete { zone } => (zone, 3),
                ZoneCommand::Reschedule { zone } => (zone, 4),
                ZoneCommand::Create { .. }
                | ZoneCommand::Exec { .. }
                | ZoneCommand::Logs { .. }
                | ZoneCommand::Validate { .. }
                | ZoneCommand::Get { .. }
                | ZoneCommand::List { .. }
                | ZoneCommand::Update { .. } => unreachable!("handled above"),
            };
            let r = pb::ZoneRef { zone };
            vec![
                conn.call(|mut c| {
                    let r = r.clone();
                    async move {
                        match which {
                            0 => c.stop_zone(r).await,
                            1 => c.start_zone(r).await,
                            2 => c.reboot_zone(r).await,
                            3 => c.delete_zone(r).await,
                            _ => c.reschedule_zone(r).await,
                        }
                        .map(|r| r.into_inner())
                    }
                })
                .await?,
            ]
        }
    };
    print_zones(out, output, &zones, single)
}
