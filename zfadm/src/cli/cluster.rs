//! `zfadm cluster …`: the controllers' Raft group as the leader sees it.

use clap::Subcommand;
use zonefleet_proto::pb;

use super::connect::Connection;

/// `zfadm cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, roles, leader, term, commit and applied index, each member's lag.
    Status,
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
