//! The gRPC services a controller serves, each behind the role layer.
//!
//! * [`raft_service`]: controller ↔ controller Raft traffic and write forwarding.
//! * [`members`]: only the members of the group may call it, each only for itself.
//! * [`operator`]: the operator API ([`images`]: its image RPCs, [`events`]: its
//!   stream of fleet events).
//! * [`control`]: the agents' API (enrollment, leases, assignments, reports).

pub mod control;
pub mod events;
pub mod images;
pub mod members;
pub mod operator;
pub mod raft_service;
