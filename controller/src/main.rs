//! `zonefleet-controller`: one member of the Raft group that holds the fleet's state.
fn main() {}
