//! Creating zones: the specs of a (batch) create, placing them, the dry run, and the
//! idempotency records that make a retried create return its first result.

use std::collections::BTreeSet;

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError, IDEMPOTENCY_TTL_MS};
use crate::scheduler::{self, Context};

/// Message of a zone created without a host.
pub const PENDING_PREFIX: &str = "pending: ";

impl FleetState {
    pub(super) fn context(&self) -> Context<'_> {
        Context {
            zones: &self.zones,
            networks: &self.networks,
            images: &self.images,
        }
    }

    /// The specs of the zones a create makes: one per uuid; a batch's aliases get
    /// `-0`, `-1`… suffixes. Refuses a uuid or an alias already in use.
    pub(super) fn batch_specs(
        &self,
        c: &pb::CreateZonesCommand,
    ) -> Result<Vec<pb::ZoneSpec>, StateError> {
        let spec = c
            .spec
            .as_ref()
            .ok_or_else(|| StateError::InvalidArgument("spec is missing".to_owned()))?;
        if c.uuids.is_empty() {
            return Err(StateError::InvalidArgument("no zone uuid".to_owned()));
        }
        let mut seen = BTreeSet::new();
        let mut specs = Vec::with_capacity(c.uuids.len());
        for (i, uuid) in c.uuids.iter().enumerate() {
            if self.zones.contains_key(uuid) || !seen.insert(uuid) {
                return Err(StateError::AlreadyExists(format!(
                    "zone {uuid} already exists"
                )));
            }
            let mut zone_spec = spec.clone();
            zone_spec.uuid = Some(uuid.clone());
            if c.uuids.len() > 1 {
                if let Some(alias) = &spec.alias {
                    zone_spec.alias = Some(format!("{alias}-{i}"));
                }
            }
            if let Some(alias) = &zone_spec.alias {
                if self.derived.view.alias_in_use(alias) {
                    return Err(StateError::AlreadyExists(format!(
                        "a zone with alias {alias:?} already exists"
                    )));
                }
            }
            specs.push(zone_spec);
        }
        Ok(specs)
    }

    /// Where a create would put its zones and why, changing nothing (a dry run). A
    /// refusal is the explanation of a response whose zones have no host.
    pub fn dry_run_create(
        &self,
        c: &pb::CreateZonesCommand,
    ) -> Result<pb::CreateZonesResponse, StateError> {
        const TOP: usize = 5;
        let specs = self.batch_specs(c)?;
        let mut view = self.derived.view.clone();
        let (hosts, top_scores, explanation) =
            match scheduler::place_batch(&mut view, &self.context(), &specs, TOP) {
                Ok(batch) => (batch.hosts, batch.top_scores, batch.explanation),
                Err(why) => (vec![String::new(); specs.len()], Vec::new(), why),
            };
        Ok(pb::CreateZonesResponse {
            zones: specs
                .into_iter()
                .zip(hosts)
                .map(|(spec, host_id)| pb::Zone {
                    spec: Some(spec),
                    host_id,
                    desired_state: pb::ZoneState::Running as i32,
                    ..Default::default()
                })
                .collect(),
            top_scores,
            explanation,
        })
    }

    pub(super) fn create_zones(
        &mut self,
        c: &pb::CreateZonesCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        if !c.idempotency_key.is_empty() {
            if let Some(record) = self.idempotency.get(&c.idempotency_key) {
                return Ok(ok(R::Zones(record.response.clone().unwrap_or_default())));
            }
        }
        let specs = self.batch_specs(c)?;
        // Addresses first (an exhausted network refuses the whole command), then the
        // hosts; nothing is changed until both are decided.
        let addresses = self.assign_addresses(&specs)?;
        let placed = {
            let ctx = Context {
                zones: &self.zones,
                networks: &self.networks,
                images: &self.images,
            };
            scheduler::place_batch(&mut self.derived.view, &ctx, &specs, 0)
        };
        let (hosts, explanation) = match placed {
            Ok(batch) => (batch.hosts, String::new()),
            Err(why) => (vec![String::new(); specs.len()], why),
        };
        let mut zones = Vec::with_capacity(specs.len());
        for ((spec, host_id), addresses) in specs.into_iter().zip(hosts).zip(addresses) {
            let host_id_empty = host_id.is_empty();
            let message = if host_id_empty {
                format!("{PENDING_PREFIX}{explanation}")
            } else {
                String::new()
            };
            let zone = pb::Zone {
                spec: Some(spec),
                generation: 1,
                host_id,
                desired_state: pb::ZoneState::Running as i32,
                observed_state: pb::ZoneState::Unspecified as i32,
                addresses,
                message,
                init_exit_status: None,
                observed_generation: 0,
                leaving_host_id: String::new(),
                pending_reason: if host_id_empty {
                    explanation.clone()
                } else {
                    String::new()
                },
                created_at_unix_ms: at,
            };
            self.store_new_zone(&zone);
            zones.push(zone);
        }
        let response = pb::CreateZonesResponse {
            zones,
            top_scores: Vec::new(),
            explanation,
        };
        if !c.idempotency_key.is_empty() {
            self.idempotency.insert(
                c.idempotency_key.clone(),
                pb::IdempotencyRecord {
                    key: c.idempotency_key.clone(),
                    response: Some(response.clone()),
                    at_unix_ms: at,
                },
            );
            self.derived
                .idempotency_by_age
                .insert((at, c.idempotency_key.clone()));
            // Records at or before the cutoff expire (the oldest first).
            let cutoff = at.saturating_sub(IDEMPOTENCY_TTL_MS);
            while let Some((when, key)) = self.derived.idempotency_by_age.first().cloned() {
                if when > cutoff {
                    break;
                }
                self.derived.idempotency_by_age.pop_first();
                self.idempotency.remove(&key);
            }
        }
        Ok(ok(R::Zones(response)))
    }

    /// Stores a new zone: its host's capacity, the scheduler's view, its leases.
    pub(super) fn store_new_zone(&mut self, zone: &pb::Zone) {
        let uuid = super::zone_uuid(zone).to_owned();
        self.hold(zone, 1);
        self.derived.view.add_zone(zone);
        self.take_leases(zone);
        self.zones.insert(uuid, zone.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::state::IDEMPOTENCY_TTL_MS;

    #[test]
    fn idempotency_records_expire_after_a_day_and_not_before() {
        let at = |ms: i64, kind: Kind| pb::FleetCommand {
            at_unix_ms: ms,
            kind: Some(kind),
        };
        let mut s = FleetState::default();
        let first = zones_of(s.apply(&at(1_000, create(&["z1"], 256, "k1"))));
        s.apply(&at(2_000, create(&["z2"], 256, "k2")));
        // A retry within the day returns the first result, creating nothing.
        let again = zones_of(s.apply(&at(1_000 + IDEMPOTENCY_TTL_MS, create(&["z9"], 256, "k1"))));
        assert_eq!(again, first);
        assert!(!s.zones.contains_key(&id("z9")));
        // The next create a day after k1 (but not after k2) expires k1 only.
        s.apply(&at(1_001 + IDEMPOTENCY_TTL_MS, create(&["z3"], 256, "k3")));
        assert_eq!(
            s.idempotency.keys().collect::<Vec<_>>(),
            ["k2", "k3"],
            "k1 expired, k2 kept"
        );
        // Replicas that start from a snapshot expire the same records.
        let mut restored = FleetState::from_snapshot(&s.to_snapshot());
        let command = at(2_001 + IDEMPOTENCY_TTL_MS, create(&["z4"], 256, "k4"));
        s.apply(&command);
        restored.apply(&command);
        assert_eq!(s.idempotency.keys().collect::<Vec<_>>(), ["k3", "k4"]);
        assert!(restored == s);
        // An expired key creates again.
        let anew = zones_of(s.apply(&at(3_000 + IDEMPOTENCY_TTL_MS, create(&["z5"], 256, "k1"))));
        assert_eq!(
            anew[0].spec.as_ref().unwrap().uuid.as_deref(),
            Some(id("z5").as_str())
        );
    }

    #[test]
    fn a_retried_create_returns_the_first_result() {
        let mut s = FleetState::default();
        let first = s.apply(&cmd(create(&["z1"], 256, "k1")));
        let again = s.apply(&cmd(create(&["z-other"], 256, "k1")));
        assert_eq!(first, again);
        assert_eq!(s.zones.len(), 1);
        // Without a key, the same uuid twice is refused and changes nothing.
        let err = error_of(s.apply(&cmd(create(&["z1"], 256, ""))));
        assert_eq!(err.code, tonic::Code::AlreadyExists as i32);
        assert_eq!(s.zones.len(), 1);
    }
}
