//! `zfadm zone|host|image|network|cluster|controller …`: the operator API.
//! Tables by default, `-o json` for scripts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use zonefleet_proto::pb;

use super::connect::Connection;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// `zfadm zone …`
#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
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
}

/// `zfadm host …`
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts.
    List,
    /// Show one host.
    Get {
        /// The host id.
        host_id: String,
    },
    /// Stop placing zones on a host.
    Cordon {
        /// The host id.
        host_id: String,
    },
    /// Place zones on a host again.
    Uncordon {
        /// The host id.
        host_id: String,
    },
    /// Set a host's rack and labels (the controllers' inventory, which placement
    /// constraints and rack spread read; what an agent reports never changes it).
    SetInventory {
        /// The host id.
        host_id: String,
        /// The host's rack.
        #[arg(long)]
        rack: Option<String>,
        /// A label to set, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// A label key to remove (repeatable).
        #[arg(long = "remove-label")]
        remove_labels: Vec<String>,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// `zfadm image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images the fleet knows.
    List,
}

/// `zfadm network …`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network from a JSON file.
    Create {
        /// The network file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List networks.
    List,
    /// Delete a network (uuid or name).
    Delete {
        /// The network.
        network: String,
    },
}

/// `zfadm cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, roles, leader, term, commit and applied index, each member's lag.
    Status,
}

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

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))
    }
}

fn consistency(stale: bool) -> i32 {
    if stale {
        pb::ReadConsistency::Stale as i32
    } else {
        pb::ReadConsistency::Unspecified as i32
    }
}

fn state_name(state: i32) -> String {
    pb::ZoneState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("ZONE_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| state.to_string())
}

fn host_status_name(status: i32) -> String {
    pb::HostStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("HOST_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| status.to_string())
}

fn spec_json(spec: &pb::ZoneSpec) -> Value {
    match zonefleet_proto::spec::ZoneSpec::try_from(spec.clone()) {
        Ok(domain) => serde_json::to_value(domain).unwrap_or(Value::Null),
        Err(e) => json!({ "unreadable": e.to_string() }),
    }
}

fn zone_json(z: &pb::Zone) -> Value {
    let spec = z.spec.clone().unwrap_or_default();
    json!({
        "uuid": spec.uuid,
        "alias": spec.alias,
        "host_id": z.host_id,
        "generation": z.generation,
        "desired_state": state_name(z.desired_state),
        "observed_state": state_name(z.observed_state),
        "addresses": z.addresses,
        "message": z.message,
        "spec": spec_json(&spec),
    })
}

fn host_json(h: &pb::Host) -> Value {
    let c = h.capacity.unwrap_or_default();
    json!({
        "host_id": h.host_id,
        "rack": h.rack,
        "labels": h.labels,
        "status": host_status_name(h.status),
        "memory_mib": c.memory_mib,
        "allocated_memory_mib": c.allocated_memory_mib,
        "zone_count": h.zone_count,
    })
}

fn network_json(n: &pb::Network) -> Value {
    match zonefleet_proto::network::Network::try_from(n.clone()) {
        Ok(domain) => serde_json::to_value(domain).unwrap_or(Value::Null),
        Err(_) => json!({ "uuid": n.uuid, "name": n.name }),
    }
}

fn image_json(i: &pb::ImageManifest) -> Value {
    json!({ "uuid": i.uuid, "name": i.name, "version": i.version, "sha256": i.sha256,
            "size_bytes": i.size_bytes, "min_ram_mib": i.min_ram_mib })
}

fn status_json(s: &pb::ClusterStatusResponse) -> Value {
    json!({
        "cluster": s.cluster,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "answered_by": s.answered_by,
        "members": s.members.iter().map(|m| json!({
            "id": m.id, "address": m.address, "role": m.role, "voter": m.voter,
            "lag": m.lag, "reachable": m.reachable, "matched_index": m.matched_index,
        })).collect::<Vec<_>>(),
    })
}

/// Prints rows as aligned columns under `header`.
fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

fn print_zones(
    out: &mut dyn Write,
    output: Output,
    zones: &[pb::Zone],
    single: bool,
) -> anyhow::Result<()> {
    if output == Output::Json {
        let value = if single && zones.len() == 1 {
            zone_json(&zones[0])
        } else {
            Value::Array(zones.iter().map(zone_json).collect())
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let rows = zones
        .iter()
        .map(|z| {
            let spec = z.spec.clone().unwrap_or_default();
            vec![
                spec.uuid.unwrap_or_default(),
                spec.alias.unwrap_or_else(|| "-".into()),
                spec.max_physical_memory_mib
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                state_name(z.desired_state),
                state_name(z.observed_state),
                if z.host_id.is_empty() {
                    "-".into()
                } else {
                    z.host_id.clone()
                },
                z.message.clone(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "UUID", "ALIAS", "RAM", "DESIRED", "OBSERVED", "HOST", "MESSAGE",
        ],
        rows,
    )
}

fn print_hosts(out: &mut dyn Write, output: Output, hosts: &[pb::Host]) -> anyhow::Result<()> {
    if output == Output::Json {
        let v: Vec<Value> = hosts.iter().map(host_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let rows = hosts
        .iter()
        .map(|h| {
            let c = h.capacity.unwrap_or_default();
            vec![
                h.host_id.clone(),
                h.rack.clone(),
                host_status_name(h.status),
                format!("{}/{}", c.allocated_memory_mib, c.memory_mib),
                h.zone_count.to_string(),
                h.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table(
        out,
        &["HOST", "RACK", "STATUS", "RAM USED/MIB", "ZONES", "LABELS"],
        rows,
    )
}

fn print_networks(
    out: &mut dyn Write,
    output: Output,
    networks: &[pb::Network],
) -> anyhow::Result<()> {
    if output == Output::Json {
        let v: Vec<Value> = networks.iter().map(network_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let rows = networks
        .iter()
        .map(|n| {
            vec![
                n.uuid.clone(),
                n.name.clone(),
                n.subnet.clone(),
                format!("{}-{}", n.provision_start, n.provision_end),
            ]
        })
        .collect();
    table(out, &["UUID", "NAME", "SUBNET", "RANGE"], rows)
}

/// Prints a cluster status.
pub fn print_status(
    out: &mut dyn Write,
    output: Output,
    s: &pb::ClusterStatusResponse,
) -> anyhow::Result<()> {
    if output == Output::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&status_json(s))?)?;
        return Ok(());
    }
    writeln!(
        out,
        "cluster {}  leader {}  term {}  commit {}  applied {}  (answered by {})",
        s.cluster,
        if s.leader_id.is_empty() {
            "none"
        } else {
            &s.leader_id
        },
        s.term,
        s.commit_index,
        s.applied_index,
        s.answered_by
    )?;
    let leader_view = s.answered_by == s.leader_id;
    let rows = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.address.clone(),
                m.role.clone(),
                if m.voter { "yes".into() } else { "no".into() },
                if leader_view {
                    m.matched_index.to_string()
                } else {
                    "?".into()
                },
                if leader_view {
                    m.lag.to_string()
                } else {
                    "?".into()
                },
            ]
        })
        .collect();
    table(
        out,
        &["ID", "ADDRESS", "ROLE", "VOTER", "MATCHED", "LAG"],
        rows,
    )
}

/// Asks the leader for the status (it alone knows the lags), falling back to
/// whichever controller answers.
pub async fn cluster_status(conn: &Connection) -> anyhow::Result<pb::ClusterStatusResponse> {
    let status = conn
        .call(|mut c| async move {
            c.cluster_status(pb::ClusterStatusRequest::default())
                .await
                .map(|r| r.into_inner())
        })
        .await?;
    if status.answered_by != status.leader_id {
        if let Some(leader) = status.members.iter().find(|m| m.id == status.leader_id) {
            if let Ok(mut client) = conn.operator(&leader.address).await {
                if let Ok(r) = client
                    .cluster_status(pb::ClusterStatusRequest::default())
                    .await
                {
                    return Ok(r.into_inner());
                }
            }
        }
    }
    Ok(status)
}

/// Runs a zone command.
pub async fn zone(
    conn: &Connection,
    output: Output,
    command: ZoneCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let zones = match command {
        ZoneCommand::Create {
            file,
            count,
            idempotency_key,
            dry_run,
        } => {
            let spec = zonefleet_proto::spec::ZoneSpec::from_json(&read_input(&file)?)
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
            if output == Output::Json && dry_run {
                let v = json!({
                    "zones": response.zones.iter().map(zone_json).collect::<Vec<_>>(),
                    "top_scores": response.top_scores.iter()
                        .map(|t| json!({ "host_id": t.host_id, "score": t.score }))
                        .collect::<Vec<_>>(),
                    "explanation": response.explanation,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            if output == Output::Table {
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
            let text = read_input(&file)?;
            let patch: zonefleet_proto::spec::ZoneSpec = serde_json::from_str(&text)
                .or_else(|_| {
                    // A patch may leave out `image`: read it as a spec of the same zone.
                    let mut v: Value = serde_json::from_str(&text)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.entry("image").or_insert(json!("patch@0"));
                    }
                    serde_json::from_value(v)
                })
                .with_context(|| format!("{}", file.display()))?;
            let mut patch = pb::ZoneSpec::from(patch);
            if patch.image == "patch@0" {
                patch.image.clear();
            }
            let request = pb::UpdateZoneRequest {
                zone,
                patch: Some(patch),
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
    print_zones(out, output, &zones, true)
}

/// Runs a host command.
pub async fn host(
    conn: &Connection,
    output: Output,
    command: HostCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let hosts = match command {
        HostCommand::List => {
            conn.call(|mut c| async move {
                c.list_hosts(pb::ListHostsRequest::default())
                    .await
                    .map(|r| r.into_inner().hosts)
            })
            .await?
        }
        HostCommand::SetInventory {
            host_id,
            rack,
            labels,
            remove_labels,
        } => {
            let r = pb::SetHostInventoryRequest {
                host_id,
                rack,
                labels: labels.into_iter().collect(),
                remove_labels,
            };
            vec![
                conn.call(|mut c| {
                    let r = r.clone();
                    async move { c.set_host_inventory(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        verb => {
            let (host_id, which) = match verb {
                HostCommand::Get { host_id } => (host_id, 0),
                HostCommand::Cordon { host_id } => (host_id, 1),
                HostCommand::Uncordon { host_id } => (host_id, 2),
                HostCommand::List | HostCommand::SetInventory { .. } => {
                    unreachable!("handled above")
                }
            };
            let r = pb::HostRef { host_id };
            vec![
                conn.call(|mut c| {
                    let r = r.clone();
                    async move {
                        match which {
                            0 => c.get_host(r).await,
                            1 => c.cordon_host(r).await,
                            _ => c.uncordon_host(r).await,
                        }
                        .map(|r| r.into_inner())
                    }
                })
                .await?,
            ]
        }
    };
    print_hosts(out, output, &hosts)
}

/// Runs an image command.
pub async fn image(
    conn: &Connection,
    output: Output,
    _command: ImageCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let images = conn
        .call(|mut c| async move {
            c.list_images(pb::ListImagesRequest::default())
                .await
                .map(|r| r.into_inner().images)
        })
        .await?;
    if output == Output::Json {
        let v: Vec<Value> = images.iter().map(image_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let rows = images
        .iter()
        .map(|i| {
            vec![
                i.uuid.clone(),
                i.name.clone(),
                i.version.clone(),
                i.size_bytes.to_string(),
            ]
        })
        .collect();
    table(out, &["UUID", "NAME", "VERSION", "SIZE"], rows)
}

/// Runs a network command.
pub async fn network(
    conn: &Connection,
    output: Output,
    command: NetworkCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let networks = match command {
        NetworkCommand::Create { file } => {
            let mut v: Value = serde_json::from_str(&read_input(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            if let Some(obj) = v.as_object_mut() {
                obj.entry("uuid")
                    .or_insert(json!(uuid::Uuid::new_v4().to_string()));
            }
            let network = zonefleet_proto::network::Network::from_json(&v.to_string())
                .with_context(|| format!("{}", file.display()))?;
            let request = pb::Network::from(network);
            vec![
                conn.call(|mut c| {
                    let r = request.clone();
                    async move { c.create_network(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        NetworkCommand::List => {
            conn.call(|mut c| async move {
                c.list_networks(pb::ListNetworksRequest::default())
                    .await
                    .map(|r| r.into_inner().networks)
            })
            .await?
        }
        NetworkCommand::Delete { network } => {
            let r = pb::NetworkRef { network };
            vec![
                conn.call(|mut c| {
                    let r = r.clone();
                    async move { c.delete_network(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
    };
    print_networks(out, output, &networks)
}

/// Runs a controller membership command.
pub async fn controller(
    conn: &Connection,
    output: Output,
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
