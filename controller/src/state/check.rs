//! The content rules of every command, checked where it is applied.
//!
//! A command reaches the log by the operator API, by a follower forwarding it, or
//! from any member that proposes one: whatever path it took, [`command`] runs on every
//! replica before the command's handler, with the same rules the operator API applies
//! at the edge (the domain types' `validate` in `zonefleet-proto`), so an invalid
//! command is a no-op with an error result everywhere. The operator API calls the
//! same functions before proposing, to answer without a Raft write: one rule, checked
//! at both ends, never two rules.
//!
//! The checks are pure functions of the command (no clock, no state), so every
//! replica reaches the same verdict. Rules that need the state (a zone's immutable
//! properties, names already taken) live in the handlers.

use uuid::Uuid;
use zonefleet_proto::host::{check_host_id, validate_inventory, HostSysinfo};
use zonefleet_proto::image::ImageManifest;
use zonefleet_proto::network::Network;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;
use zonefleet_proto::spec::ZoneSpec;

use super::settings::MAX_RATIO_PERCENT;
use super::StateError;

/// Most zones one create may ask for.
pub const MAX_ZONES_PER_CREATE: usize = 1000;
/// The longest idempotency key of a zone create, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

fn invalid(what: &str, why: impl std::fmt::Display) -> StateError {
    StateError::InvalidArgument(format!("{what}: {why}"))
}

/// Validates an operator's spec and fills in its defaults (the uuid excepted: a create
/// chooses one per zone). The form every stored spec has.
pub fn canonical_spec(spec: pb::ZoneSpec) -> Result<pb::ZoneSpec, StateError> {
    let domain =
        ZoneSpec::try_from(spec).map_err(|e| StateError::InvalidArgument(e.to_string()))?;
    let had_uuid = domain.uuid.is_some();
    let domain = domain.with_defaults();
    domain
        .validate()
        .map_err(|e| StateError::InvalidArgument(e.to_string()))?;
    let mut out = pb::ZoneSpec::from(domain);
    if !had_uuid {
        out.uuid = None;
    }
    Ok(out)
}

/// A spec as a command carries it: valid by the rules of [`canonical_spec`] (a
/// command's spec may leave defaults out: they are filled in wherever it is read).
fn stored_spec(spec: Option<&pb::ZoneSpec>) -> Result<&pb::ZoneSpec, StateError> {
    let spec = spec.ok_or_else(|| invalid("spec", "missing"))?;
    canonical_spec(spec.clone())?;
    Ok(spec)
}

fn uuid(what: &str, s: &str) -> Result<(), StateError> {
    match Uuid::parse_str(s) {
        Ok(u) if u.hyphenated().to_string() == s && !u.is_nil() => Ok(()),
        _ => Err(invalid(
            what,
            format!("{s:?} is not a lowercase hyphenated UUID"),
        )),
    }
}

fn desired_state(state: i32) -> Result<(), StateError> {
    match pb::ZoneState::try_from(state) {
        Ok(pb::ZoneState::Unspecified) | Err(_) => Err(invalid(
            "desired_state",
            format!("{state} is not a zone state"),
        )),
        Ok(_) => Ok(()),
    }
}

fn host(host: Option<&pb::Host>) -> Result<(), StateError> {
    let host = host.ok_or_else(|| invalid("host", "missing"))?;
    check_host_id(&host.host_id).map_err(|e| invalid("host_id", e))?;
    if pb::HostStatus::try_from(host.status).is_err() {
        return Err(invalid(
            "status",
            format!("{} is not a host status", host.status),
        ));
    }
    if let Some(sysinfo) = &host.sysinfo {
        HostSysinfo::try_from(sysinfo.clone())
            .map_err(|e| invalid("sysinfo", e))?
            .validate()
            .map_err(|e| invalid("sysinfo", e))?;
    }
    Ok(())
}

fn settings(settings: &pb::FleetSettings) -> Result<(), StateError> {
    for (name, ratio) in [
        ("cpu_ratio_percent", settings.cpu_ratio_percent),
        ("ram_ratio_percent", settings.ram_ratio_percent),
        ("disk_ratio_percent", settings.disk_ratio_percent),
    ] {
        if let Some(r) = ratio.filter(|r| !(1..=MAX_RATIO_PERCENT).contains(r)) {
            return Err(invalid(
                name,
                format!("{r} is out of range; allowed 1..={MAX_RATIO_PERCENT} (percent)"),
            ));
        }
    }
    if let Some(p) = settings
        .mass_loss_percent
        .filter(|p| !(1..=100).contains(p))
    {
        return Err(invalid(
            "mass_loss_percent",
            format!("{p} is out of range; allowed 1..=100 (percent of the hosts)"),
        ));
    }
    if pb::PlacementStrategy::try_from(settings.default_strategy).is_err() {
        return Err(invalid(
            "default_strategy",
            format!("{} is not a strategy", settings.default_strategy),
        ));
    }
    Ok(())
}

fn create(c: &pb::CreateZonesCommand) -> Result<(), StateError> {
    let spec = stored_spec(c.spec.as_ref())?;
    if c.uuids.is_empty() || c.uuids.len() > MAX_ZONES_PER_CREATE {
        return Err(invalid(
            "uuids",
            format!(
                "{} zones; allowed 1 to {MAX_ZONES_PER_CREATE}",
                c.uuids.len()
            ),
        ));
    }
    for u in &c.uuids {
        uuid("uuids", u)?;
    }
    if let Some(own) = &spec.uuid {
        if c.uuids.len() != 1 || c.uuids[0] != *own {
            return Err(invalid(
                "uuid",
                "a spec with a uuid creates exactly that one zone",
            ));
        }
    }
    if c.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(invalid(
            "idempotency_key",
            format!("longer than {MAX_IDEMPOTENCY_KEY} bytes"),
        ));
    }
    Ok(())
}

fn update(c: &pb::UpdateZoneCommand) -> Result<(), StateError> {
    uuid("uuid", &c.uuid)?;
    let spec = stored_spec(c.spec.as_ref())?;
    if spec.uuid.as_deref() != Some(c.uuid.as_str()) {
        return Err(invalid("spec.uuid", "must be the uuid of the zone updated"));
    }
    Ok(())
}

/// Most zones one report may carry.
pub const MAX_ZONES_PER_REPORT: usize = 10_000;
/// The longest message a reported zone may carry, in bytes.
pub const MAX_REPORT_MESSAGE: usize = 4096;

fn sha256_hex(what: &str, digest: &str) -> Result<(), StateError> {
    let hex_digest = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex_digest {
        return Err(invalid(what, "must be 64 lowercase hex digits"));
    }
    Ok(())
}

fn report(c: &pb::ReportZoneStatesCommand) -> Result<(), StateError> {
    check_host_id(&c.host_id).map_err(|e| invalid("host_id", e))?;
    if c.zones.len() > MAX_ZONES_PER_REPORT {
        return Err(invalid(
            "zones",
            format!("{} zones; at most {MAX_ZONES_PER_REPORT}", c.zones.len()),
        ));
    }
    for z in &c.zones {
        uuid("zones.uuid", &z.uuid)?;
        match pb::ZoneState::try_from(z.state) {
            Ok(pb::ZoneState::Unspecified) | Err(_) => {
                return Err(invalid(
                    "zones.state",
                    format!("{} is not a zone state (zone {})", z.state, z.uuid),
                ))
            }
            Ok(_) => {}
        }
        if z.message.len() > MAX_REPORT_MESSAGE {
            return Err(invalid(
                "zones.message",
                format!("longer than {MAX_REPORT_MESSAGE} bytes (zone {})", z.uuid),
            ));
        }
    }
    Ok(())
}

fn join_token(token: Option<&pb::JoinToken>) -> Result<(), StateError> {
    let token = token.ok_or_else(|| invalid("token", "missing"))?;
    sha256_hex("token.sha256", &token.sha256)?;
    let rack = (!token.rack.is_empty()).then_some(token.rack.as_str());
    validate_inventory(rack, &token.labels, []).map_err(|e| invalid("token", e))
}

/// Checks the content of `command`: Ok, or why every replica refuses it.
pub fn command(kind: &Kind) -> Result<(), StateError> {
    match kind {
        Kind::CreateZones(c) => create(c),
        Kind::UpdateZone(c) => update(c),
        Kind::SetZoneState(c) => uuid("uuid", &c.uuid).and(desired_state(c.desired_state)),
        Kind::DeleteZone(c) => uuid("uuid", &c.uuid),
        Kind::RescheduleZone(c) => uuid("uuid", &c.uuid),
        Kind::RegisterHost(c) => host(c.host.as_ref()),
        Kind::SetHostStatus(c) => {
            check_host_id(&c.host_id).map_err(|e| invalid("host_id", e))?;
            match pb::HostStatus::try_from(c.status) {
                Ok(pb::HostStatus::Unspecified) | Err(_) => Err(invalid(
                    "status",
                    format!("{} is not a host status", c.status),
                )),
                Ok(_) => Ok(()),
            }
        }
        Kind::SetHostInventory(c) => {
            let i = c
                .inventory
                .as_ref()
                .ok_or_else(|| invalid("inventory", "missing"))?;
            check_host_id(&i.host_id).map_err(|e| invalid("host_id", e))?;
            validate_inventory(i.rack.as_deref(), &i.labels, &i.remove_labels)
                .map_err(|e| StateError::InvalidArgument(e.to_string()))
        }
        Kind::PutNetwork(c) => {
            let network = c
                .network
                .clone()
                .ok_or_else(|| invalid("network", "missing"))?;
            uuid("network.uuid", &network.uuid)?;
            Network::try_from(network)
                .map_err(|e| StateError::InvalidArgument(e.to_string()))?
                .validate()
                .map_err(|e| StateError::InvalidArgument(e.to_string()))
        }
        Kind::DeleteNetwork(c) => uuid("uuid", &c.uuid),
        Kind::PutImage(c) => {
            let image = c.image.clone().ok_or_else(|| invalid("image", "missing"))?;
            ImageManifest::try_from(image)
                .map_err(|e| StateError::InvalidArgument(e.to_string()))?
                .validate()
                .map_err(|e| StateError::InvalidArgument(e.to_string()))
        }
        Kind::CreateJoinToken(c) => join_token(c.token.as_ref()),
        // An enrolling host's id names its certificate: a UUID.
        Kind::EnrollHost(c) => {
            sha256_hex("token_sha256", &c.token_sha256).and(uuid("host_id", &c.host_id))
        }
        Kind::ReportZoneStates(c) => report(c),
        Kind::RevokeJoinToken(c) => sha256_hex("sha256", &c.sha256),
        Kind::DeleteImage(c) => uuid("uuid", &c.uuid),
        Kind::ReleaseZone(c) => {
            uuid("uuid", &c.uuid).and(check_host_id(&c.host_id).map_err(|e| invalid("host_id", e)))
        }
        Kind::SetReschedulePause(c) => c
            .pause
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| invalid("pause", "missing")),
        Kind::SetFleetSettings(c) => settings(&c.settings.unwrap_or_default()),
        Kind::RevokeCertificate(c) => {
            let revocation = c
                .revocation
                .as_ref()
                .ok_or_else(|| invalid("revocation", "missing"))?;
            super::revocations::checked_revocation(revocation).map(|_| ())
        }
        // Each command of a batch is checked on its own when it is applied.
        Kind::Noop(_) | Kind::Batch(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn refused(fleet: &mut FleetState, kind: Kind) -> String {
        let before = fleet.to_snapshot();
        let e = error_of(fleet.apply(&cmd(kind)));
        assert_eq!(e.code, tonic::Code::InvalidArgument as i32, "{e:?}");
        assert!(
            fleet.to_snapshot() == before,
            "a refused command changed the state"
        );
        e.message
    }

    #[test]
    fn content_the_operator_api_refuses_is_refused_at_apply() {
        let mut fleet = FleetState::default();
        // A zone uuid becomes a path and a cgroup on its host.
        let mut c = create(&["z1"], 256, "");
        if let Kind::CreateZones(c) = &mut c {
            c.uuids = vec!["../../etc".to_owned()];
        }
        assert!(refused(&mut fleet, c).contains("\"../../etc\" is not a lowercase"));
        let mut c = create(&["z1"], 256, "");
        if let Kind::CreateZones(c) = &mut c {
            c.spec.as_mut().unwrap().max_physical_memory_mib = Some(0);
        }
        assert!(refused(&mut fleet, c).contains("max_physical_memory"));
        let inventory = Kind::SetHostInventory(pb::SetHostInventoryCommand {
            inventory: Some(pb::SetHostInventoryRequest {
                host_id: "h1".to_owned(),
                labels: [("rack".to_owned(), "r9".to_owned())].into(),
                ..Default::default()
            }),
        });
        assert!(refused(&mut fleet, inventory).contains("is the host's rack"));
        let token = Kind::CreateJoinToken(pb::CreateJoinTokenCommand {
            token: Some(pb::JoinToken {
                sha256: "x".repeat(64),
                ..Default::default()
            }),
        });
        assert!(refused(&mut fleet, token).contains("64 lowercase hex digits"));
        let enroll = Kind::EnrollHost(pb::EnrollHostCommand {
            token_sha256: "a".repeat(64),
            host_id: "../h1".to_owned(),
        });
        assert!(refused(&mut fleet, enroll).contains("host_id"));
        let report = Kind::ReportZoneStates(pb::ReportZoneStatesCommand {
            host_id: "h1".to_owned(),
            zones: vec![pb::ObservedZone {
                uuid: id("z1"),
                state: 99,
                ..Default::default()
            }],
        });
        assert!(refused(&mut fleet, report).contains("is not a zone state"));
    }

    #[test]
    fn an_update_may_not_change_what_cannot_change() {
        let mut fleet = FleetState::default();
        fleet.apply(&cmd(host("h1", 4096)));
        let zone = zones_of(fleet.apply(&cmd(create(&["z1"], 256, "")))).remove(0);
        let mut spec = zone.spec.clone().unwrap();
        spec.quota_gib = Some(spec.quota_gib.unwrap_or(10) + 1);
        let update = Kind::UpdateZone(pb::UpdateZoneCommand {
            uuid: id("z1"),
            spec: Some(spec),
            expected_generation: zone.generation,
        });
        let message = refused(&mut fleet, update);
        assert!(message.contains("quota: "), "{message}");
        assert!(
            message.contains("cannot change on an existing zone"),
            "{message}"
        );
    }
}
