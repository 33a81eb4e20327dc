//! openraft 0.9 wiring: the type configuration and the storage and network the
//! controllers give it.
//!
//! * [`codec`]: conversions between openraft's types and their protobuf form (the wire
//!   and on-disk format, see `raft.proto`).
//! * [`log_store`]: the log and the vote in redb, fsync'd before acknowledging.
//! * [`state_machine`]: the fleet state machine store and its snapshots.
//! * [`dial`]: how a controller opens a stream to a peer (plain TCP; a test harness's
//!   own network in tests).
//! * [`network`]: the Raft gRPC client over mTLS, one channel per peer.
//! * [`failover`]: a follower campaigns at once when the leader's process is gone.

pub mod codec;
pub mod dial;
pub mod failover;
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use zonefleet_proto::pb;

/// A controller's Raft node id (the `<id>` of its `zonefleet://…/controller/<id>`
/// certificate, in decimal).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The controllers' openraft type configuration: fleet commands in, command results
    /// out, nodes addressed by `HOST:PORT`, snapshots held in memory.
    pub TypeConfig:
        D = pb::FleetCommand,
        R = pb::CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a controller.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership.
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
/// A membership with the log id that carried it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
