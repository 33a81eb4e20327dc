//! The write both benchmarks commit (`zfadm bench` and the `bench/` crate's
//! `bench/run`), in the library so the two measure the same thing: `zfadm`'s own
//! modules (`src/cli/`) are compiled into its binary only.

use zonefleet_proto::pb;

/// A one-zone create of a small spec with no alias and no idempotency key (with no
/// host registered, the zone is committed pending).
pub fn bench_create_request() -> pb::CreateZonesRequest {
    pb::CreateZonesRequest {
        spec: Some(pb::ZoneSpec {
            image: "bench@1".into(),
            max_physical_memory_mib: Some(64),
            ..Default::default()
        }),
        count: 1,
        idempotency_key: String::new(),
        dry_run: false,
    }
}
