//! Conversions between the domain types and their protobuf messages (`pb`).
//!
//! Domain → protobuf cannot fail. Protobuf → domain parses every string field and
//! reports every refused value at once, named by its JSON path (`nics[0].ip`, not
//! the protobuf field name), as [`SpecError::Invalid`]. It does not validate ranges:
//! call `validate()` on the result, as for JSON.

use std::net::IpAddr;

use ipnet::IpNet;
use uuid::Uuid;

use super::capability::Capability;
use super::constraint::Constraint;
use super::error::{Problems, SpecError, ValueError};
use super::image_ref::ImageRef;
use super::mac::MacAddr;
use super::nic::Nic;
use super::placement::{
    Affinity, AffinityRule, AffinityTarget, FailureDomain, Placement, PlacementStrategy, RuleMode,
    Spread,
};
use super::signal::Signal;
use super::text::Text;
use super::zone::{Brand, OnHostLost, ZoneSpec};
use crate::pb;

/// One protobuf enum value: its number, its name in JSON, its domain value.
pub(crate) type EnumEntry<T> = (i32, &'static str, T);

const BRANDS: &[EnumEntry<Brand>] = &[(pb::Brand::Os as i32, "os", Brand::Os)];
const ON_HOST_LOST: &[EnumEntry<OnHostLost>] = &[
    (pb::OnHostLost::Wait as i32, "wait", OnHostLost::Wait),
    (
        pb::OnHostLost::Reschedule as i32,
        "reschedule",
        OnHostLost::Reschedule,
    ),
];
const STRATEGIES: &[EnumEntry<PlacementStrategy>] = &[
    (
        pb::PlacementStrategy::Binpack as i32,
        "binpack",
        PlacementStrategy::Binpack,
    ),
    (
        pb::PlacementStrategy::Spread as i32,
        "spread",
        PlacementStrategy::Spread,
    ),
];
const MODES: &[EnumEntry<RuleMode>] = &[
    (pb::RuleMode::Hard as i32, "hard", RuleMode::Hard),
    (pb::RuleMode::Soft as i32, "soft", RuleMode::Soft),
];
const RULES: &[EnumEntry<AffinityRule>] = &[
    (pb::AffinityRule::Near as i32, "near", AffinityRule::Near),
    (pb::AffinityRule::Far as i32, "far", AffinityRule::Far),
];

/// The protobuf number of an optional domain enum value (0 when absent).
pub(crate) fn enum_to_pb<T: PartialEq>(value: Option<T>, table: &[EnumEntry<T>]) -> i32 {
    value
        .and_then(|v| table.iter().find(|(_, _, t)| *t == v))
        .map_or(0, |(n, _, _)| *n)
}

/// The domain value of a protobuf enum number; 0 (unspecified) is `None`.
pub(crate) fn enum_from_pb<T: Copy>(
    value: i32,
    table: &[EnumEntry<T>],
) -> Result<Option<T>, ValueError> {
    if value == 0 {
        return Ok(None);
    }
    match table.iter().find(|(n, _, _)| *n == value) {
        Some((_, _, t)) => Ok(Some(*t)),
        None => Err(ValueError::new(
            value.to_string(),
            "is not a known value",
            enum_allowed(table),
        )),
    }
}

/// As [`enum_from_pb`], for a field that must be set.
pub(crate) fn required_enum_from_pb<T: Copy>(
    value: i32,
    table: &[EnumEntry<T>],
) -> Result<T, ValueError> {
    enum_from_pb(value, table)?
        .ok_or_else(|| ValueError::new("0", "is unspecified", enum_allowed(table)))
}

fn enum_allowed<T>(table: &[EnumEntry<T>]) -> String {
    let names: Vec<String> = table
        .iter()
        .map(|(n, name, _)| format!("{n} ({name})"))
        .collect();
    names.join(", ")
}

/// `prefix.name`, or `name` at the top of a document.
pub(crate) fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Parses an optional string field.
fn opt<T: Text>(p: &mut Problems, at: String, value: Option<String>) -> Option<T> {
    value.and_then(|s| p.take(at, T::parse_text(&s)))
}

/// Parses a repeated string field, naming each refused element by its index.
pub(crate) fn list<T: Text>(p: &mut Problems, at: &str, values: Vec<String>) -> Vec<T> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, s)| p.take(format!("{at}[{i}]"), T::parse_text(s)))
        .collect()
}

fn text_list<T: Text>(values: &[T]) -> Vec<String> {
    values.iter().map(Text::to_text).collect()
}

impl From<ZoneSpec> for pb::ZoneSpec {
    fn from(s: ZoneSpec) -> Self {
        pb::ZoneSpec {
            uuid: s.uuid.map(|u| u.to_text()),
            alias: s.alias,
            brand: enum_to_pb(s.brand, BRANDS),
            image: s.image.to_string(),
            max_physical_memory_mib: s.max_physical_memory,
            max_swap_mib: s.max_swap,
            cpu_cap: s.cpu_cap,
            cpu_shares: s.cpu_shares,
            max_lwps: s.max_lwps,
            io_priority: s.io_priority,
            quota_gib: s.quota,
            tmpfs_mib: s.tmpfs,
            limit_priv: s.limit_priv.map(|caps| pb::CapabilitySet {
                names: text_list(&caps),
            }),
            nics: s.nics.into_iter().map(Into::into).collect(),
            hostname: s.hostname,
            resolvers: text_list(&s.resolvers),
            dns_domain: s.dns_domain,
            customer_metadata: s.customer_metadata.into_iter().collect(),
            tags: s.tags.into_iter().collect(),
            // An absent and an empty init are one on the wire; an empty one is invalid.
            init: s.init.unwrap_or_default(),
            halt_signal: s.halt_signal.map(|sig| sig.to_text()),
            autoboot: s.autoboot,
            user_namespace: s.user_namespace,
            owner: s.owner,
            on_host_lost: enum_to_pb(s.on_host_lost, ON_HOST_LOST),
            placement: s.placement.map(Into::into),
        }
    }
}

impl TryFrom<pb::ZoneSpec> for ZoneSpec {
    type Error = SpecError;

    fn try_from(m: pb::ZoneSpec) -> Result<Self, SpecError> {
        let mut p = Problems::default();
        let uuid = opt::<Uuid>(&mut p, "uuid".into(), m.uuid);
        let brand = p.take("brand", enum_from_pb(m.brand, BRANDS)).flatten();
        let image = if m.image.is_empty() {
            p.push(
                "image",
                ValueError::new(
                    "\"\"",
                    "is missing",
                    "a uuid, \"sha256:<64 hex>\" or \"name[@version]\"",
                ),
            );
            None
        } else {
            p.take("image", ImageRef::parse(&m.image))
        };
        let limit_priv = m
            .limit_priv
            .map(|set| list::<Capability>(&mut p, "limit_priv", set.names));
        let nics: Vec<Nic> = m
            .nics
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| nic_from_pb(n, &format!("nics[{i}]"), &mut p))
            .collect();
        let resolvers = list::<IpAddr>(&mut p, "resolvers", m.resolvers);
        let halt_signal = opt::<Signal>(&mut p, "halt_signal".into(), m.halt_signal);
        let on_host_lost = p
            .take("on_host_lost", enum_from_pb(m.on_host_lost, ON_HOST_LOST))
            .flatten();
        let placement = m
            .placement
            .and_then(|pl| placement_from_pb(pl, "placement", &mut p));
        p.finish()?;
        let mut spec = ZoneSpec::new(image.expect("a missing image is a recorded problem"));
        spec.uuid = uuid;
        spec.alias = m.alias;
        spec.brand = brand;
        spec.max_physical_memory = m.max_physical_memory_mib;
        spec.max_swap = m.max_swap_mib;
        spec.cpu_cap = m.cpu_cap;
        spec.cpu_shares = m.cpu_shares;
        spec.max_lwps = m.max_lwps;
        spec.io_priority = m.io_priority;
        spec.quota = m.quota_gib;
        spec.tmpfs = m.tmpfs_mib;
        spec.limit_priv = limit_priv;
        spec.nics = nics;
        spec.hostname = m.hostname;
        spec.resolvers = resolvers;
        spec.dns_domain = m.dns_domain;
        spec.customer_metadata = m.customer_metadata.into_iter().collect();
        spec.tags = m.tags.into_iter().collect();
        spec.init = (!m.init.is_empty()).then_some(m.init);
        spec.halt_signal = halt_signal;
        spec.autoboot = m.autoboot;
        spec.user_namespace = m.user_namespace;
        spec.owner = m.owner;
        spec.on_host_lost = on_host_lost;
        spec.placement = placement;
        Ok(spec)
    }
}

impl From<Nic> for pb::Nic {
    fn from(n: Nic) -> Self {
        pb::Nic {
            ip: n.ip.map(|ip| ip.to_text()),
            network: n.network,
            gateway: n.gateway.map(|g| g.to_text()),
            mac: n.mac.map(|m| m.to_string()),
            mtu: n.mtu,
            vlan_id: n.vlan_id,
            allow_ip_spoofing: n.allow_ip_spoofing,
            allow_mac_spoofing: n.allow_mac_spoofing,
            primary: n.primary,
        }
    }
}

impl TryFrom<pb::Nic> for Nic {
    type Error = SpecError;

    fn try_from(m: pb::Nic) -> Result<Self, SpecError> {
        let mut p = Problems::default();
        let nic = nic_from_pb(m, "", &mut p);
        p.finish()?;
        Ok(nic.expect("no problem means a NIC"))
    }
}

fn nic_from_pb(m: pb::Nic, at: &str, p: &mut Problems) -> Option<Nic> {
    let before = p.len();
    let nic = Nic {
        ip: opt::<IpNet>(p, field(at, "ip"), m.ip),
        network: m.network,
        gateway: opt::<IpAddr>(p, field(at, "gateway"), m.gateway),
        mac: opt::<MacAddr>(p, field(at, "mac"), m.mac),
        mtu: m.mtu,
        vlan_id: m.vlan_id,
        allow_ip_spoofing: m.allow_ip_spoofing,
        allow_mac_spoofing: m.allow_mac_spoofing,
        primary: m.primary,
    };
    (p.len() == before).then_some(nic)
}

impl From<Placement> for pb::Placement {
    fn from(pl: Placement) -> Self {
        pb::Placement {
            strategy: enum_to_pb(pl.strategy, STRATEGIES),
            constraints: text_list(&pl.constraints),
            spread: pl.spread.map(|s| pb::Spread {
                by: s.by.as_str().to_string(),
                group: s.group,
                max_per_domain: s.max_per_domain,
                mode: enum_to_pb(s.mode, MODES),
            }),
            affinity: pl
                .affinity
                .into_iter()
                .map(|a| pb::Affinity {
                    rule: enum_to_pb(Some(a.rule), RULES),
                    target: a.target.to_string(),
                    mode: enum_to_pb(a.mode, MODES),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::Placement> for Placement {
    type Error = SpecError;

    fn try_from(m: pb::Placement) -> Result<Self, SpecError> {
        let mut p = Problems::default();
        let placement = placement_from_pb(m, "", &mut p);
        p.finish()?;
        Ok(placement.expect("no problem means a placement"))
    }
}

fn placement_from_pb(m: pb::Placement, at: &str, p: &mut Problems) -> Option<Placement> {
    let before = p.len();
    let strategy = p
        .take(field(at, "strategy"), enum_from_pb(m.strategy, STRATEGIES))
        .flatten();
    let constraints = list::<Constraint>(p, &field(at, "constraints"), m.constraints);
    let spread = m.spread.and_then(|s| {
        let at = field(at, "spread");
        let by = p.take(field(&at, "by"), FailureDomain::parse(&s.by));
        let mode = p
            .take(field(&at, "mode"), enum_from_pb(s.mode, MODES))
            .flatten();
        Some(Spread {
            by: by?,
            group: s.group,
            max_per_domain: s.max_per_domain,
            mode,
        })
    });
    let affinity = m
        .affinity
        .into_iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let at = format!("{}[{i}]", field(at, "affinity"));
            let rule = p.take(field(&at, "rule"), required_enum_from_pb(a.rule, RULES));
            let target = p.take(field(&at, "target"), AffinityTarget::parse(&a.target));
            let mode = p
                .take(field(&at, "mode"), enum_from_pb(a.mode, MODES))
                .flatten();
            Some(Affinity {
                rule: rule?,
                target: target?,
                mode,
            })
        })
        .collect();
    (p.len() == before).then_some(Placement {
        strategy,
        constraints,
        spread,
        affinity,
    })
}
