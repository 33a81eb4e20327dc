//! The Raft group's state as one controller sees it (`ClusterStatus`).

use std::collections::BTreeSet;

use openraft::ServerState;
use zonefleet_proto::pb;

use super::Controller;
use crate::raft::NodeId;

impl Controller {
    /// The Raft group's state as this controller sees it (lags are known only to the
    /// leader).
    pub async fn cluster_status(&self) -> pb::ClusterStatusResponse {
        let committed = self.committed().await;
        let metrics = self.inner.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last_index = metrics.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = if *id == metrics.id {
                    Some(last_index)
                } else {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned())
                        .map(|m| m.map(|l| l.index).unwrap_or(0))
                };
                let role = if Some(*id) == metrics.current_leader {
                    "leader"
                } else if !voters.contains(id) {
                    "learner"
                } else if *id == metrics.id && metrics.state == ServerState::Candidate {
                    "candidate"
                } else {
                    "follower"
                };
                pb::ControllerMember {
                    id: id.to_string(),
                    address: node.addr.clone(),
                    role: role.to_owned(),
                    voter: voters.contains(id),
                    lag: matched.map(|m| last_index.saturating_sub(m)).unwrap_or(0),
                    reachable: matched.is_some(),
                    matched_index: matched.unwrap_or(0),
                }
            })
            .collect();
        pb::ClusterStatusResponse {
            cluster: self.inner.cluster.clone(),
            leader_id: metrics
                .current_leader
                .map(|l| l.to_string())
                .unwrap_or_default(),
            term: metrics.current_term,
            commit_index: committed.map(|c| c.index).unwrap_or(0),
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            members,
            answered_by: metrics.id.to_string(),
            last_log_index: last_index,
        }
    }
}
