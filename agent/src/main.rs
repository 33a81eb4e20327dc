//! `zonefleet-agent`: the agent in a host's global zone.
fn main() {}
