//! Membership changes: adding a controller (as a learner, then a voter) and
//! removing one, through the leader wherever it is.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use tonic::Status;
use zonefleet_proto::pb;

use super::{no_leader, Controller, LEADER_WAIT, RETRY_PAUSE};
use crate::raft::NodeId;

impl Controller {
    /// Adds or removes a controller, through the leader wherever it is.
    pub async fn change_membership(&self, change: pb::MembershipChange) -> Result<(), Status> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let state = self.inner.raft.metrics().borrow().state;
            let outcome = if state == ServerState::Leader {
                self.change_membership_as_leader(change.clone()).await
            } else if let Some((id, addr)) = self.leader().filter(|(id, _)| *id != self.inner.id) {
                let mut client = self.peer(id, &addr)?;
                let mut request = tonic::Request::new(pb::ForwardWriteRequest {
                    command: None,
                    membership_change: Some(change.clone()),
                });
                request.set_timeout(Duration::from_secs(120));
                client.forward_write(request).await.map(|_| ())
            } else {
                Err(no_leader("membership change"))
            };
            match outcome {
                Err(status)
                    if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a membership change as the leader: an added controller joins as a learner,
    /// catches up, then becomes a voter; a removed one leaves the group.
    pub async fn change_membership_as_leader(
        &self,
        change: pb::MembershipChange,
    ) -> Result<(), Status> {
        let raft = &self.inner.raft;
        let voters: BTreeSet<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        let map = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                Status::unavailable("not the leader")
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Status::failed_precondition(e.to_string())
            }
            other => Status::unavailable(other.to_string()),
        };
        match change.change {
            Some(pb::membership_change::Change::Add(add)) => {
                let id = parse_id(&add.id)?;
                if add.address.is_empty() {
                    return Err(Status::invalid_argument("address: empty"));
                }
                raft.add_learner(id, BasicNode::new(&add.address), true)
                    .await
                    .map_err(map)?;
                let mut next = voters;
                next.insert(id);
                raft.change_membership(next, false).await.map_err(map)?;
                Ok(())
            }
            Some(pb::membership_change::Change::Remove(remove)) => {
                let id = parse_id(&remove.id)?;
                let all: BTreeSet<NodeId> = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect();
                if !all.contains(&id) {
                    return Err(Status::not_found(format!(
                        "controller {id} is not a member"
                    )));
                }
                let mut next = voters;
                next.remove(&id);
                if next.is_empty() {
                    return Err(Status::failed_precondition("cannot remove the last voter"));
                }
                raft.change_membership(next, false).await.map_err(map)?;
                Ok(())
            }
            None => Err(Status::invalid_argument("empty membership change")),
        }
    }
}

/// A controller id from its decimal text.
pub fn parse_id(id: &str) -> Result<NodeId, Status> {
    id.parse()
        .map_err(|_| Status::invalid_argument(format!("controller id {id:?} is not a number")))
}
