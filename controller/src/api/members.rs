//! Who may speak Raft to a controller: the members of its group, each only for itself.
//!
//! The role layer lets any controller certificate of the fleet CA reach the `Raft`
//! service; that is not enough, since the CA may have issued certificates for
//! controllers that were never added or were removed since. [`admit`] accepts a caller
//! only if its certificate's id is a voter or learner of the membership this controller
//! holds now — the latest in its log, or the latest it knows committed, so that a
//! leader removing itself can still replicate its removal until that commits — and a
//! Raft message only if the node it names (the leader of an `AppendEntries` or
//! `InstallSnapshot`, the candidate of a `Vote`) is the caller itself.
//! [`close_removed`] closes the open connections of a controller once a membership
//! without it is applied (so committed).
//!
//! One exception: a controller that holds no membership yet (started empty, waiting to
//! be added) accepts replication from any controller of the fleet, since it cannot know
//! its leader before the leader's first message tells it; it refuses everything else.

use std::collections::BTreeSet;

use tonic::Status;
use zonefleet_proto::auth::Role;
use zonefleet_proto::pb;
use zonefleet_proto::pki::{Identity, Principal};
use zonefleet_proto::tls::LiveConnections;

use crate::raft::{Membership, NodeId, Raft};

/// What a Raft RPC asks of its caller, with the node its vote names (if it has one).
#[derive(Debug, Clone, Copy)]
pub enum Claim {
    /// Replicates the leader's log (`AppendEntries`, `InstallSnapshot`); names the
    /// leader.
    Replication(Option<NodeId>),
    /// Asks for a vote; names the candidate.
    Candidacy(Option<NodeId>),
    /// Asks the leader to serve (`ForwardWrite`, `ReadIndex`); names no node.
    Service,
}

impl Claim {
    /// The claim of a replication request carrying `vote`.
    pub fn replication(vote: Option<&pb::Vote>) -> Claim {
        Claim::Replication(vote.map(|v| v.node_id))
    }

    /// The claim of a vote request carrying `vote`.
    pub fn candidacy(vote: Option<&pb::Vote>) -> Claim {
        Claim::Candidacy(vote.map(|v| v.node_id))
    }

    fn named(&self) -> Option<NodeId> {
        match self {
            Claim::Replication(node) | Claim::Candidacy(node) => *node,
            Claim::Service => None,
        }
    }
}

/// The voters and learners of the latest membership in `raft`'s log (empty before the
/// controller has joined a group).
pub fn current_members(raft: &Raft) -> BTreeSet<NodeId> {
    member_ids(raft.metrics().borrow().membership_config.membership())
}

/// The voters and learners of the latest membership `raft` knows is committed.
async fn committed_members(raft: &Raft) -> Result<BTreeSet<NodeId>, Status> {
    raft.with_raft_state(|state| member_ids(state.membership_state.committed().membership()))
        .await
        .map_err(|e| Status::unavailable(e.to_string()))
}

fn member_ids(membership: &Membership) -> BTreeSet<NodeId> {
    membership.nodes().map(|(id, _)| *id).collect()
}

/// The id of the calling controller, `role`, when it may make this `claim` (see the
/// module documentation); otherwise `PERMISSION_DENIED` saying why. `rpc` names the
/// call in the message. A missing vote is left to the decoder (`INVALID_ARGUMENT`).
pub async fn admit(raft: &Raft, role: &Role, rpc: &str, claim: Claim) -> Result<NodeId, Status> {
    let id = match role {
        Role::Controller(id) => id.parse::<NodeId>().map_err(|_| {
            Status::permission_denied(format!(
                "{rpc}: controller certificate id {id:?} is not a node id"
            ))
        })?,
        other => {
            return Err(Status::permission_denied(format!(
                "{rpc}: {other} is not a controller"
            )))
        }
    };
    let members = current_members(raft);
    if members.is_empty() {
        if !matches!(claim, Claim::Replication(_)) {
            return Err(Status::permission_denied(format!(
                "{rpc}: refused to controller {id}: this controller has not joined a group yet"
            )));
        }
    } else if !members.contains(&id) && !committed_members(raft).await?.contains(&id) {
        return Err(Status::permission_denied(format!(
            "{rpc}: controller {id} is not a member of the group (members: {members:?})"
        )));
    }
    if let Some(named) = claim.named() {
        if named != id {
            return Err(Status::permission_denied(format!(
                "{rpc}: controller {id} may not speak for controller {named}"
            )));
        }
    }
    Ok(id)
}

/// Whether `identity` is a controller outside `members`.
fn is_removed_controller(identity: &Identity, members: &BTreeSet<NodeId>) -> bool {
    match identity.principal() {
        Principal::Controller(id) => id.parse().map_or(true, |id| !members.contains(&id)),
        _ => false,
    }
}

/// Each time a new membership is applied (so committed: before that, a leader removing
/// itself still replicates through its connections), closes the connections in `live`
/// whose peer is a controller no longer (or never) in it. Returns when the Raft node
/// stops.
pub async fn close_removed(raft: Raft, live: LiveConnections) {
    let mut metrics = raft.metrics();
    let mut seen = None;
    loop {
        let (membership, applied) = {
            let m = metrics.borrow_and_update();
            (m.membership_config.clone(), m.last_applied)
        };
        let committed = membership.log_id().is_some() && *membership.log_id() <= applied;
        if committed && seen.as_ref() != Some(&membership) {
            let members = member_ids(membership.membership());
            let closed = live.close_where(|identity| is_removed_controller(identity, &members));
            if closed > 0 {
                tracing::info!(
                    closed,
                    ?members,
                    "closed the connections of controllers outside the group"
                );
            }
            seen = Some(membership);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
