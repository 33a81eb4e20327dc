//! `zfadm network …`: create, list and delete networks.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use zonefleet_proto::cli::{read_input, Format};
use zonefleet_proto::pb;

use super::connect::Connection;
use super::render::print_networks;

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

/// Runs a network command.
pub async fn run(
    conn: &Connection,
    output: Format,
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
