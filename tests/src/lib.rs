//! The harness for zonefleet's multi-host and chaos suites: it runs the real
//! binaries, each host in its own network namespace behind a bridge, and checks
//! fleet invariants. The suites arrive with the controller and agent issues.
