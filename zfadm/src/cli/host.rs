//! `zfadm host …`: list, get, cordon and uncordon hosts, set their inventory.

use std::io::Write;

use clap::Subcommand;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::Connection;
use super::render::print_hosts;

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

/// Runs a host command.
pub async fn run(
    conn: &Connection,
    output: Format,
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
