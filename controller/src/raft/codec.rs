//! openraft's types to and from their protobuf form (`raft.proto`).
//!
//! The same messages are the RPC payloads and the on-disk log and snapshot format, so
//! decoding is strict about what Raft cannot do without (a vote, a log id) and
//! reports it as a [`CodecError`] instead of guessing.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, CommittedLeaderId, EntryPayload};
use zonefleet_proto::pb;

use super::{Entry, LogId, Membership, NodeId, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// A protobuf message lacks something Raft needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct CodecError {
    /// The message.
    pub what: &'static str,
    /// What is missing or wrong.
    pub reason: String,
}

fn missing(what: &'static str, field: &str) -> CodecError {
    CodecError {
        what,
        reason: format!("{field} is missing"),
    }
}

/// A log id in protobuf form.
pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        leader_id: id.leader_id.node_id,
        index: id.index,
    }
}

/// A log id from protobuf.
pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term, id.leader_id), id.index)
}

/// An optional log id in protobuf form.
pub fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

/// An optional log id from protobuf.
pub fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

/// A vote in protobuf form.
pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

/// A vote from protobuf.
pub fn vote_from_pb(vote: &pb::Vote) -> Vote {
    if vote.committed {
        Vote::new_committed(vote.term, vote.node_id)
    } else {
        Vote::new(vote.term, vote.node_id)
    }
}

fn require_vote(vote: Option<&pb::Vote>, what: &'static str) -> Result<Vote, CodecError> {
    vote.map(vote_from_pb).ok_or_else(|| missing(what, "vote"))
}

/// A membership in protobuf form.
pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::VoterSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
    }
}

/// A membership from protobuf.
pub fn membership_from_pb(m: &pb::Membership) -> Membership {
    let configs: Vec<BTreeSet<NodeId>> = m
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<NodeId, BasicNode> = m
        .nodes
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    Membership::new(configs, nodes)
}

/// A stored membership in protobuf form.
pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id().as_ref()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

/// A stored membership from protobuf (absent: the empty membership).
pub fn stored_membership_from_pb(m: Option<&pb::StoredMembership>) -> StoredMembership {
    match m {
        Some(m) => StoredMembership::new(
            opt_log_id_from_pb(m.log_id.as_ref()),
            m.membership
                .as_ref()
                .map(membership_from_pb)
                .unwrap_or_default(),
        ),
        None => StoredMembership::default(),
    }
}

/// Snapshot metadata in protobuf form.
pub fn snapshot_meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(meta.last_log_id.as_ref()),
        last_membership: Some(stored_membership_to_pb(&meta.last_membership)),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

/// Snapshot metadata from protobuf.
pub fn snapshot_meta_from_pb(meta: &pb::SnapshotMeta) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: opt_log_id_from_pb(meta.last_log_id.as_ref()),
        last_membership: stored_membership_from_pb(meta.last_membership.as_ref()),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

/// A log entry in protobuf form.
pub fn entry_to_pb(entry: &Entry) -> pb::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(true),
        EntryPayload::Normal(command) => pb::entry::Payload::Command(command.clone()),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

/// A log entry from protobuf.
pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry, CodecError> {
    let log_id = entry
        .log_id
        .as_ref()
        .map(log_id_from_pb)
        .ok_or_else(|| missing("log entry", "log_id"))?;
    let payload = match entry.payload {
        Some(pb::entry::Payload::Blank(_)) => EntryPayload::Blank,
        Some(pb::entry::Payload::Command(command)) => EntryPayload::Normal(command),
        Some(pb::entry::Payload::Membership(m)) => EntryPayload::Membership(membership_from_pb(&m)),
        None => return Err(missing("log entry", "payload")),
    };
    Ok(Entry { log_id, payload })
}

/// An AppendEntries request in protobuf form.
pub fn append_request_to_pb(
    req: &openraft::raft::AppendEntriesRequest<TypeConfig>,
) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(req.prev_log_id.as_ref()),
        entries: req.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(req.leader_commit.as_ref()),
    }
}

/// An AppendEntries request from protobuf.
pub fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<openraft::raft::AppendEntriesRequest<TypeConfig>, CodecError> {
    Ok(openraft::raft::AppendEntriesRequest {
        vote: require_vote(req.vote.as_ref(), "AppendEntriesRequest")?,
        prev_log_id: opt_log_id_from_pb(req.prev_log_id.as_ref()),
        entries: req
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_pb(req.leader_commit.as_ref()),
    })
}

/// An AppendEntries response in protobuf form.
pub fn append_response_to_pb(
    resp: &openraft::raft::AppendEntriesResponse<NodeId>,
) -> pb::AppendEntriesResponse {
    use openraft::raft::AppendEntriesResponse as R;
    use pb::append_entries_response::Result as P;
    let result = match resp {
        R::Success => P::Success(true),
        R::PartialSuccess(Some(id)) => P::PartialSuccess(log_id_to_pb(id)),
        R::PartialSuccess(None) => P::PartialSuccessNone(true),
        R::Conflict => P::Conflict(true),
        R::HigherVote(v) => P::HigherVote(vote_to_pb(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

/// An AppendEntries response from protobuf.
pub fn append_response_from_pb(
    resp: &pb::AppendEntriesResponse,
) -> Result<openraft::raft::AppendEntriesResponse<NodeId>, CodecError> {
    use openraft::raft::AppendEntriesResponse as R;
    use pb::append_entries_response::Result as P;
    Ok(match &resp.result {
        Some(P::Success(_)) => R::Success,
        Some(P::PartialSuccess(id)) => R::PartialSuccess(Some(log_id_from_pb(id))),
        Some(P::PartialSuccessNone(_)) => R::PartialSuccess(None),
        Some(P::Conflict(_)) => R::Conflict,
        Some(P::HigherVote(v)) => R::HigherVote(vote_from_pb(v)),
        None => return Err(missing("AppendEntriesResponse", "result")),
    })
}

/// A vote request in protobuf form.
pub fn vote_request_to_pb(req: &openraft::raft::VoteRequest<NodeId>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(req.last_log_id.as_ref()),
    }
}

/// A vote request from protobuf.
pub fn vote_request_from_pb(
    req: &pb::VoteRequest,
) -> Result<openraft::raft::VoteRequest<NodeId>, CodecError> {
    Ok(openraft::raft::VoteRequest {
        vote: require_vote(req.vote.as_ref(), "VoteRequest")?,
        last_log_id: opt_log_id_from_pb(req.last_log_id.as_ref()),
    })
}

/// A vote response in protobuf form.
pub fn vote_response_to_pb(resp: &openraft::raft::VoteResponse<NodeId>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_pb(resp.last_log_id.as_ref()),
    }
}

/// A vote response from protobuf.
pub fn vote_response_from_pb(
    resp: &pb::VoteResponse,
) -> Result<openraft::raft::VoteResponse<NodeId>, CodecError> {
    Ok(openraft::raft::VoteResponse {
        vote: require_vote(resp.vote.as_ref(), "VoteResponse")?,
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_from_pb(resp.last_log_id.as_ref()),
    })
}

/// A snapshot chunk in protobuf form.
pub fn snapshot_request_to_pb(
    req: &openraft::raft::InstallSnapshotRequest<TypeConfig>,
) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_pb(&req.vote)),
        meta: Some(snapshot_meta_to_pb(&req.meta)),
        offset: req.offset,
        data: req.data.clone(),
        done: req.done,
    }
}

/// A snapshot chunk from protobuf.
pub fn snapshot_request_from_pb(
    req: pb::InstallSnapshotRequest,
) -> Result<openraft::raft::InstallSnapshotRequest<TypeConfig>, CodecError> {
    Ok(openraft::raft::InstallSnapshotRequest {
        vote: require_vote(req.vote.as_ref(), "InstallSnapshotRequest")?,
        meta: snapshot_meta_from_pb(
            req.meta
                .as_ref()
                .ok_or_else(|| missing("InstallSnapshotRequest", "meta"))?,
        ),
        offset: req.offset,
        data: req.data,
        done: req.done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let nodes: BTreeMap<NodeId, BasicNode> = [(1, BasicNode::new("127.0.0.1:1"))].into();
        let m = Membership::new(vec![[1].into(), [1, 2].into()], nodes);
        let id = LogId::new(CommittedLeaderId::new(3, 1), 7);
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Membership(m.clone()),
            EntryPayload::Normal(pb::FleetCommand {
                at_unix_ms: 5,
                kind: Some(pb::fleet_command::Kind::Noop(pb::NoopCommand {
                    payload: vec![1, 2],
                })),
            }),
        ] {
            let entry = Entry {
                log_id: id,
                payload,
            };
            let back = entry_from_pb(entry_to_pb(&entry)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        }
        assert!(entry_from_pb(pb::Entry::default()).is_err());
    }

    #[test]
    fn a_bytes_field_of_the_old_schema_reads_as_the_typed_message() {
        // `Entry.command` was `bytes` holding an encoded command: same wire format.
        use prost::Message;
        let command = pb::FleetCommand {
            at_unix_ms: 9,
            kind: Some(pb::fleet_command::Kind::Noop(pb::NoopCommand::default())),
        };
        let mut old = Vec::new();
        prost::encoding::message::encode(1, &pb::LogId::default(), &mut old);
        prost::encoding::bytes::encode(3, &command.encode_to_vec(), &mut old);
        let entry = pb::Entry::decode(old.as_slice()).unwrap();
        assert_eq!(entry.payload, Some(pb::entry::Payload::Command(command)));
    }
}
