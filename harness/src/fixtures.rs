//! The hosts, zone specs and create requests the controller's integration tests and
//! benchmarks build, in one place.

use tonic::transport::Channel;
use zonefleet_controller::api::operator::command;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;
use zonefleet_proto::pb::operator_client::OperatorClient;

/// A minimal valid zone spec.
pub fn spec(alias: &str) -> pb::ZoneSpec {
    pb::ZoneSpec {
        alias: Some(alias.to_owned()),
        image: "base@1".to_owned(),
        max_physical_memory_mib: Some(256),
        // The harness's hosts report no kernel features, so none that a zone
        // with its own user namespace needs.
        user_namespace: Some(false),
        ..Default::default()
    }
}

/// A create of `count` zones of `spec`, with no idempotency key, for real.
pub fn create(spec: pb::ZoneSpec, count: u32) -> pb::CreateZonesRequest {
    pb::CreateZonesRequest {
        spec: Some(spec),
        count,
        idempotency_key: String::new(),
        dry_run: false,
    }
}

/// A one-zone create of [`spec`] whose idempotency key is its alias, so a retry
/// after an error creates nothing twice.
pub fn keyed_create(alias: &str) -> pb::CreateZonesRequest {
    pb::CreateZonesRequest {
        idempotency_key: alias.to_owned(),
        ..create(spec(alias), 1)
    }
}

/// Creates one zone of [`spec`] through `client` and returns its uuid.
pub async fn create_zone(client: &mut OperatorClient<Channel>, alias: &str) -> String {
    let response = client
        .create_zones(create(spec(alias), 1))
        .await
        .unwrap_or_else(|e| panic!("create {alias}: {e}"))
        .into_inner();
    response.zones[0]
        .spec
        .as_ref()
        .unwrap()
        .uuid
        .clone()
        .unwrap()
}

/// A spread of the zones of `group` over the values of label `by`, at most `max` in
/// each.
pub fn spread(by: &str, group: &str, max: u32, mode: pb::RuleMode) -> pb::Spread {
    pb::Spread {
        by: by.to_owned(),
        group: group.to_owned(),
        max_per_domain: Some(max),
        mode: mode as i32,
    }
}

/// A host as its agent reports it: `memory_mib` of memory (the global zone's 1 GiB
/// reservation included), `cpu_percent` of CPU, `disk_gib` of disk; no rack, no
/// labels, status unknown until the state machine sets it.
pub fn host(id: &str, memory_mib: u64, cpu_percent: u32, disk_gib: u64) -> pb::Host {
    pb::Host {
        host_id: id.to_owned(),
        capacity: Some(pb::Capacity {
            memory_mib,
            cpu_percent,
            disk_gib,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The command registering `host`.
pub fn register_host(host: pb::Host) -> pb::FleetCommand {
    command(Kind::RegisterHost(pb::RegisterHostCommand {
        host: Some(host),
    }))
}
