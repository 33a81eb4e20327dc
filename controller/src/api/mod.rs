//! The gRPC services a controller serves, each behind the role layer.
//!
//! * [`raft_service`]: controller ↔ controller Raft traffic and write forwarding.
//! * [`operator`]: the operator API.

pub mod operator;
pub mod raft_service;
