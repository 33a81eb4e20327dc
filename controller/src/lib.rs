//! zonefleet's controllers: the Raft-replicated fleet state and the operator API.
//!
//! * `raft`: openraft 0.9 wiring: the type configuration, the redb log store, the
//!   state machine store with its snapshots, and the mTLS gRPC network.
//! * `state`: the fleet state machine: typed commands applied deterministically.
//! * `scheduler`: placement (filters, scores, refusal counts) and address pools.
//! * `blobs`: image archives on disk, outside the Raft log, copied between controllers.

pub mod api;
pub mod blobs;
pub mod config;
pub mod node;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod state;
#[cfg(test)]
mod testing;
