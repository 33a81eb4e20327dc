//! Who may speak Raft to a controller: the members of its group, each only for itself.
//!
//! The role layer lets any controller certificate of the fleet CA reach the `Raft`
//! service; that is not enough, since the CA may have issued certificates for
//! controllers that were never added or were removed since. [`admit`] accepts a caller
//! only if its certificate's id is a voter or learner of the membership this controller
//! holds now, and a Raft message only if the node it names (the leader of an
//! `AppendEntries` or `InstallSnapshot`, the candidate of a `Vote`) is the caller
//! itself. [`close_removed`] closes the open connections of a controller the moment it
//! leaves the membership.
//!
//! One exception: a controller that holds no membership yet (started empty, waiting to
//! be added) accepts replication from any controller of the fleet, since it cannot know
//! its leader before the leader's first message tells it; it refuses everything else.

use std::collections::BTreeSet;

use tonic::{Request, Status};
use zonefleet_proto::auth::Role;
use zonefleet_proto::pb;
use zonefleet_proto::pki::{Identity, Principal};
use zonefleet_proto::tls::LiveConnections;

use crate::raft::{NodeId, Raft, StoredMembership};

/// What a Raft RPC asks of its caller.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// Replicates the leader's log (`AppendEntries`, `InstallSnapshot`); the vote names
    /// the leader.
    Replication(Option<&'a pb::Vote>),
    /// Asks for a vote; the vote names the candidate.
    Candidacy(Option<&'a pb::Vote>),
    /// Asks the leader to serve (`ForwardWrite`, `ReadIndex`); names no node.
    Service,
}

impl Claim<'_> {
    fn vote(&self) -> Option<&pb::Vote> {
        match self {
            Claim::Replication(vote) | Claim::Candidacy(vote) => *vote,
            Claim::Service => None,
        }
    }
}

/// The voters and learners of the membership `raft` holds now (empty before the
/// controller has joined a group).
pub fn current_members(raft: &Raft) -> BTreeSet<NodeId> {
    member_ids(&raft.metrics().borrow().membership_config)
}

fn member_ids(membership: &StoredMembership) -> BTreeSet<NodeId> {
    membership.membership().nodes().map(|(id, _)| *id).collect()
}

/// The id of the calling controller when it may make this `claim` (see the module
/// documentation); otherwise `PERMISSION_DENIED` saying why. `rpc` names the call in
/// the message. A missing vote is left to the decoder (`INVALID_ARGUMENT`).
pub fn admit<T>(
    raft: &Raft,
    request: &Request<T>,
    rpc: &str,
    claim: Claim<'_>,
) -> Result<NodeId, Status> {
    let id = match Role::from_request(request)? {
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
    } else if !members.contains(&id) {
        return Err(Status::permission_denied(format!(
            "{rpc}: controller {id} is not a member of the group (members: {members:?})"
        )));
    }
    if let Some(vote) = claim.vote() {
        if vote.node_id != id {
            return Err(Status::permission_denied(format!(
                "{rpc}: controller {id} may not speak for controller {}",
                vote.node_id
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

/// Each time the membership `raft` holds changes, closes the connections in `live`
/// whose peer is a controller no longer (or never) in it. Returns when the Raft node
/// stops.
pub async fn close_removed(raft: Raft, live: LiveConnections) {
    let mut metrics = raft.server_metrics();
    let mut seen = None;
    loop {
        let membership = metrics.borrow_and_update().membership_config.clone();
        if seen.as_ref() != Some(&membership) {
            let members = member_ids(&membership);
            // An empty membership (not joined yet) removes no one.
            if !members.is_empty() {
                let closed = live.close_where(|identity| is_removed_controller(identity, &members));
                if closed > 0 {
                    tracing::info!(
                        closed,
                        ?members,
                        "closed the connections of controllers outside the group"
                    );
                }
            }
            seen = Some(membership);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
