//! How `zfadm` prints what the controllers answer: tables by default, `-o json` for
//! scripts.

use std::io::Write;

use serde_json::{json, Value};
use zonefleet_proto::cli::{table, write_json, Format};
use zonefleet_proto::pb;
use zonefleet_proto::pb::{host_status_name, zone_state_name as state_name};

fn spec_json(spec: &pb::ZoneSpec) -> Value {
    match zonefleet_proto::spec::ZoneSpec::try_from(spec.clone()) {
        Ok(domain) => serde_json::to_value(domain).unwrap_or(Value::Null),
        Err(e) => json!({ "unreadable": e.to_string() }),
    }
}

/// A zone as `-o json` shows it.
pub(super) fn zone_json(z: &pb::Zone) -> Value {
    let spec = z.spec.clone().unwrap_or_default();
    json!({
        "uuid": spec.uuid,
        "alias": spec.alias,
        "host_id": z.host_id,
        "generation": z.generation,
        "desired_state": state_name(z.desired_state),
        "observed_state": state_name(z.observed_state),
        "observed_generation": z.observed_generation,
        "addresses": z.addresses,
        "message": z.message,
        "leaving_host_id": z.leaving_host_id,
        "pending_reason": z.pending_reason,
        "created_at_unix_ms": z.created_at_unix_ms,
        "spec": spec_json(&spec),
    })
}

fn host_json(h: &pb::Host) -> Value {
    let c = h.capacity.unwrap_or_default();
    let sysinfo = h.sysinfo.clone().unwrap_or_default();
    json!({
        "host_id": h.host_id,
        "hostname": sysinfo.hostname,
        "rack": h.rack,
        "labels": h.labels,
        "status": host_status_name(h.status),
        "memory_mib": c.memory_mib,
        "allocated_memory_mib": c.allocated_memory_mib,
        "cpu_percent": c.cpu_percent,
        "allocated_cpu_percent": c.allocated_cpu_percent,
        "disk_gib": c.disk_gib,
        "allocated_disk_gib": c.allocated_disk_gib,
        "zone_count": h.zone_count,
        "agent_version": sysinfo.agent_version,
        "agent_address": sysinfo.agent_address,
        "last_heartbeat_unix_ms": h.last_heartbeat_unix_ms,
        "lease_expires_unix_ms": h.lease_expires_unix_ms,
        "status_since_unix_ms": h.status_since_unix_ms,
        "status_reason": h.status_reason,
    })
}

/// What the MESSAGE column says of a zone: why it waits for a place, that it is moving
/// off a host, then its own message.
fn zone_note(z: &pb::Zone) -> String {
    let mut parts = Vec::new();
    if !z.leaving_host_id.is_empty() {
        parts.push(format!("moving off {}", z.leaving_host_id));
    }
    if !z.pending_reason.is_empty() {
        parts.push(format!("pending: {}", z.pending_reason));
    }
    // A create's `pending: no host: …` message says the same as its reason.
    let said_already = z.message.starts_with("pending") && !z.pending_reason.is_empty();
    if !z.message.is_empty() && !said_already {
        parts.push(z.message.clone());
    }
    parts.join("; ")
}

/// A host's status with how long it has had it and why (`draining 3m (operator)`).
fn host_status_text(h: &pb::Host, now: i64) -> String {
    let mut text = host_status_name(h.status);
    if h.status_since_unix_ms > 0 {
        let since = relative(h.status_since_unix_ms, now);
        text = format!("{text} {}", since.trim_end_matches(" ago"));
    }
    if !h.status_reason.is_empty() {
        text = format!("{text} ({})", h.status_reason);
    }
    text
}

/// Prints the line that says automatic rescheduling is paused (nothing when it is not).
pub(super) fn print_reschedule_banner(
    out: &mut dyn Write,
    pause: Option<&pb::ReschedulePause>,
) -> anyhow::Result<()> {
    if let Some(p) = pause.filter(|p| p.paused) {
        let reason = if p.reason.is_empty() {
            "no reason given"
        } else {
            &p.reason
        };
        writeln!(
            out,
            "automatic rescheduling paused: {reason} (zfadm fleet resume)"
        )?;
    }
    Ok(())
}

/// Prints the fleet's rescheduling pause.
pub(super) fn print_reschedule(
    out: &mut dyn Write,
    output: Format,
    pause: &pb::ReschedulePause,
) -> anyhow::Result<()> {
    if output == Format::Json {
        write_json(
            out,
            &json!({
                "paused": pause.paused,
                "reason": pause.reason,
                "since_unix_ms": pause.since_unix_ms,
                "overridden": pause.overridden,
            }),
        )?;
        return Ok(());
    }
    let since = if pause.since_unix_ms > 0 {
        format!(" since {}", utc(pause.since_unix_ms))
    } else {
        String::new()
    };
    if pause.paused {
        print_reschedule_banner(out, Some(pause))?;
        writeln!(out, "paused{since}")?;
    } else {
        writeln!(
            out,
            "automatic rescheduling: on{since}{}",
            if pause.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", pause.reason)
            }
        )?;
        if pause.overridden {
            writeln!(
                out,
                "resumed by an operator: no new pause until the current loss ends"
            )?;
        }
    }
    Ok(())
}

/// How far `at` (Unix ms) is from `now` (Unix ms), as `3s ago` or `in 7s`.
fn relative(at: i64, now: i64) -> String {
    let ms = at - now;
    let secs = ms.abs() as f64 / 1000.0;
    let text = if secs < 60.0 {
        format!("{secs:.0}s")
    } else if secs < 3600.0 {
        format!("{:.0}m", secs / 60.0)
    } else {
        format!("{:.0}h", secs / 3600.0)
    };
    if ms < 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn network_json(n: &pb::Network) -> Value {
    match zonefleet_proto::network::Network::try_from(n.clone()) {
        Ok(domain) => serde_json::to_value(domain).unwrap_or(Value::Null),
        Err(_) => json!({ "uuid": n.uuid, "name": n.name }),
    }
}

fn image_json(i: &pb::ImageManifest) -> Value {
    json!({ "uuid": i.uuid, "name": i.name, "version": i.version, "sha256": i.sha256,
            "size_bytes": i.size_bytes, "min_ram_mib": i.min_ram_mib,
            "description": i.description, "halt_signal": i.halt_signal })
}

/// Prints one image: a JSON object, or its fields one a line.
pub(super) fn print_image(
    out: &mut dyn Write,
    output: Format,
    i: &pb::ImageManifest,
) -> anyhow::Result<()> {
    if output == Format::Json {
        write_json(out, &image_json(i))?;
        return Ok(());
    }
    writeln!(out, "uuid:        {}", i.uuid)?;
    writeln!(out, "name:        {}", i.name)?;
    writeln!(out, "version:     {}", i.version)?;
    writeln!(out, "sha256:      {}", i.sha256)?;
    writeln!(out, "size:        {} bytes", i.size_bytes)?;
    if i.min_ram_mib > 0 {
        writeln!(out, "min_ram:     {} MiB", i.min_ram_mib)?;
    }
    if !i.description.is_empty() {
        writeln!(out, "description: {}", i.description)?;
    }
    if let Some(signal) = &i.halt_signal {
        writeln!(out, "halt_signal: {signal}")?;
    }
    Ok(())
}

fn status_json(s: &pb::ClusterStatusResponse) -> Value {
    json!({
        "cluster": s.cluster,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "answered_by": s.answered_by,
        "members": s.members.iter().map(|m| json!({
            "id": m.id, "address": m.address, "role": m.role, "voter": m.voter,
            "lag": m.lag, "reachable": m.reachable, "matched_index": m.matched_index,
        })).collect::<Vec<_>>(),
    })
}

/// Prints zones (`single`: one zone as a JSON object rather than an array).
pub(super) fn print_zones(
    out: &mut dyn Write,
    output: Format,
    zones: &[pb::Zone],
    single: bool,
) -> anyhow::Result<()> {
    if output == Format::Json {
        let value = if single && zones.len() == 1 {
            zone_json(&zones[0])
        } else {
            Value::Array(zones.iter().map(zone_json).collect())
        };
        write_json(out, &value)?;
        return Ok(());
    }
    let rows = zones
        .iter()
        .map(|z| {
            let spec = z.spec.clone().unwrap_or_default();
            vec![
                spec.uuid.unwrap_or_default(),
                spec.alias.unwrap_or_else(|| "-".into()),
                spec.max_physical_memory_mib
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                state_name(z.desired_state),
                state_name(z.observed_state),
                if z.host_id.is_empty() {
                    "-".into()
                } else {
                    z.host_id.clone()
                },
                zone_note(z),
            ]
        })
        .collect();
    Ok(table(
        out,
        &[
            "UUID", "ALIAS", "RAM", "DESIRED", "OBSERVED", "HOST", "MESSAGE",
        ],
        rows,
    )?)
}

/// Prints hosts.
pub(super) fn print_hosts(
    out: &mut dyn Write,
    output: Format,
    hosts: &[pb::Host],
) -> anyhow::Result<()> {
    if output == Format::Json {
        let v: Vec<Value> = hosts.iter().map(host_json).collect();
        write_json(out, &v)?;
        return Ok(());
    }
    let now = now_unix_ms();
    let rows = hosts
        .iter()
        .map(|h| {
            let c = h.capacity.unwrap_or_default();
            let version = h.sysinfo.as_ref().map_or("", |s| s.agent_version.as_str());
            let when = |at: Option<i64>| at.map_or_else(|| "-".to_owned(), |at| relative(at, now));
            vec![
                h.host_id.clone(),
                h.rack.clone(),
                host_status_text(h, now),
                format!("{}/{}", c.allocated_memory_mib, c.memory_mib),
                format!("{}/{}", c.allocated_cpu_percent, c.cpu_percent),
                format!("{}/{}", c.allocated_disk_gib, c.disk_gib),
                h.zone_count.to_string(),
                if version.is_empty() { "-" } else { version }.to_owned(),
                when(h.last_heartbeat_unix_ms),
                when(h.lease_expires_unix_ms),
                h.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    Ok(table(
        out,
        &[
            "HOST",
            "RACK",
            "STATUS",
            "RAM USED/MIB",
            "CPU USED/%",
            "DISK USED/GIB",
            "ZONES",
            "AGENT",
            "HEARTBEAT",
            "LEASE",
            "LABELS",
        ],
        rows,
    )?)
}

/// Prints networks.
pub(super) fn print_networks(
    out: &mut dyn Write,
    output: Format,
    networks: &[pb::Network],
) -> anyhow::Result<()> {
    if output == Format::Json {
        let v: Vec<Value> = networks.iter().map(network_json).collect();
        write_json(out, &v)?;
        return Ok(());
    }
    let rows = networks
        .iter()
        .map(|n| {
            vec![
                n.uuid.clone(),
                n.name.clone(),
                n.subnet.clone(),
                format!("{}-{}", n.provision_start, n.provision_end),
            ]
        })
        .collect();
    Ok(table(out, &["UUID", "NAME", "SUBNET", "RANGE"], rows)?)
}

/// Prints image manifests.
pub(super) fn print_images(
    out: &mut dyn Write,
    output: Format,
    images: &[pb::ImageManifest],
) -> anyhow::Result<()> {
    if output == Format::Json {
        let v: Vec<Value> = images.iter().map(image_json).collect();
        write_json(out, &v)?;
        return Ok(());
    }
    let rows = images
        .iter()
        .map(|i| {
            vec![
                i.uuid.clone(),
                i.name.clone(),
                i.version.clone(),
                i.size_bytes.to_string(),
            ]
        })
        .collect();
    Ok(table(out, &["UUID", "NAME", "VERSION", "SIZE"], rows)?)
}

/// Prints a cluster status.
pub fn print_status(
    out: &mut dyn Write,
    output: Format,
    s: &pb::ClusterStatusResponse,
) -> anyhow::Result<()> {
    if output == Format::Json {
        write_json(out, &status_json(s))?;
        return Ok(());
    }
    writeln!(
        out,
        "cluster {}  leader {}  term {}  commit {}  applied {}  (answered by {})",
        s.cluster,
        if s.leader_id.is_empty() {
            "none"
        } else {
            &s.leader_id
        },
        s.term,
        s.commit_index,
        s.applied_index,
        s.answered_by
    )?;
    let leader_view = s.answered_by == s.leader_id;
    let rows = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.address.clone(),
                m.role.clone(),
                if m.voter { "yes".into() } else { "no".into() },
                if leader_view {
                    m.matched_index.to_string()
                } else {
                    "?".into()
                },
                if leader_view {
                    m.lag.to_string()
                } else {
                    "?".into()
                },
            ]
        })
        .collect();
    Ok(table(
        out,
        &["ID", "ADDRESS", "ROLE", "VOTER", "MATCHED", "LAG"],
        rows,
    )?)
}

/// `at` (Unix milliseconds) as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn utc(at_unix_ms: i64) -> String {
    let secs = at_unix_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Prints revocations.
pub(super) fn print_revocations(
    out: &mut dyn Write,
    output: Format,
    revocations: &[pb::Revocation],
) -> anyhow::Result<()> {
    if output == Format::Json {
        let v: Vec<Value> = revocations
            .iter()
            .map(|r| {
                let mut v = json!({
                    "reason": r.reason,
                    "revoked_by": r.revoked_by,
                    "revoked_at_unix_ms": r.revoked_at_unix_ms,
                    "revoked_at": utc(r.revoked_at_unix_ms),
                });
                if r.serial.is_empty() {
                    v["identity"] = json!(r.identity);
                } else {
                    v["serial"] = json!(r.serial);
                }
                v
            })
            .collect();
        write_json(out, &v)?;
        return Ok(());
    }
    let rows = revocations
        .iter()
        .map(|r| {
            let (kind, what) = if r.serial.is_empty() {
                ("identity", r.identity.clone())
            } else {
                ("serial", r.serial.clone())
            };
            vec![
                kind.to_owned(),
                what,
                utc(r.revoked_at_unix_ms),
                r.revoked_by.clone(),
                r.reason.clone(),
            ]
        })
        .collect();
    Ok(table(
        out,
        &["KIND", "REVOKED", "AT", "BY", "REASON"],
        rows,
    )?)
}

fn token_json(t: &pb::JoinTokenInfo) -> Value {
    json!({
        "id": t.id,
        "rack": t.rack,
        "labels": t.labels,
        "expires_unix": t.expires_unix,
        "expires": utc(t.expires_unix.saturating_mul(1000)),
        "used": t.used,
        "used_by_host": t.used_by_host,
        "expired": t.expired,
    })
}

fn labels_text(labels: &std::collections::HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(",")
    }
}

/// Prints join tokens (never the tokens themselves: their ids).
pub(super) fn print_tokens(
    out: &mut dyn Write,
    output: Format,
    tokens: &[pb::JoinTokenInfo],
) -> anyhow::Result<()> {
    if output == Format::Json {
        write_json(out, &Value::Array(tokens.iter().map(token_json).collect()))?;
        return Ok(());
    }
    let rows = tokens
        .iter()
        .map(|t| {
            let state = if t.used {
                format!("used by {}", t.used_by_host)
            } else if t.expired {
                "expired".to_owned()
            } else {
                "unused".to_owned()
            };
            vec![
                t.id.clone(),
                if t.rack.is_empty() {
                    "-".to_owned()
                } else {
                    t.rack.clone()
                },
                labels_text(&t.labels),
                utc(t.expires_unix.saturating_mul(1000)),
                state,
            ]
        })
        .collect();
    Ok(table(
        out,
        &["ID", "RACK", "LABELS", "EXPIRES", "STATE"],
        rows,
    )?)
}

/// Prints a token just made: the secret (shown this once), its expiry and what an
/// agent's kernel command line needs (the controllers `zfadm` reached, the CA pin).
pub(super) fn print_new_token(
    out: &mut dyn Write,
    output: Format,
    created: &pb::CreateJoinTokenResponse,
    request: &pb::CreateJoinTokenRequest,
    controllers: &[String],
) -> anyhow::Result<()> {
    if output == Format::Json {
        write_json(
            out,
            &json!({
                "token": created.token,
                "expires_unix": created.expires_unix,
                "expires": utc(created.expires_unix.saturating_mul(1000)),
                "ca_fingerprint": created.ca_fingerprint,
                "rack": request.rack,
                "labels": request.labels,
            }),
        )?;
        return Ok(());
    }
    writeln!(out, "{}", created.token)?;
    writeln!(
        out,
        "expires {} (shown once; the controllers keep only its hash)",
        utc(created.expires_unix.saturating_mul(1000))
    )?;
    writeln!(
        out,
        "agent kernel command line: zonefleet.controllers={} zonefleet.token={} zonefleet.ca={}",
        controllers.join(","),
        created.token,
        created.ca_fingerprint
    )?;
    Ok(())
}

#[cfg(test)]
mod revocation_tests {
    use super::relative;
    use zonefleet_proto::pb;

    #[test]
    fn a_hosts_status_says_since_when_and_why() {
        let h = pb::Host {
            status: pb::HostStatus::Draining as i32,
            status_since_unix_ms: 1_000,
            status_reason: "operator".into(),
            ..Default::default()
        };
        assert_eq!(
            super::host_status_text(&h, 181_000),
            "draining 3m (operator)"
        );
        let bare = pb::Host {
            status: pb::HostStatus::Ready as i32,
            ..Default::default()
        };
        assert_eq!(super::host_status_text(&bare, 181_000), "ready");
    }

    #[test]
    fn a_zone_says_why_it_waits_or_that_it_moves() {
        let moving = pb::Zone {
            leaving_host_id: "h1".into(),
            ..Default::default()
        };
        assert_eq!(super::zone_note(&moving), "moving off h1");
        let pending = pb::Zone {
            pending_reason: "no host: 2 lack memory".into(),
            message: "pending: no host: 2 lack memory".into(),
            ..Default::default()
        };
        assert_eq!(
            super::zone_note(&pending),
            "pending: no host: 2 lack memory"
        );
        let failed = pb::Zone {
            message: "init exited 1".into(),
            ..Default::default()
        };
        assert_eq!(super::zone_note(&failed), "init exited 1");
    }

    #[test]
    fn the_pause_is_a_banner_only_while_paused() {
        let mut out = Vec::new();
        let paused = pb::ReschedulePause {
            paused: true,
            reason: "rack r1 down".into(),
            ..Default::default()
        };
        super::print_reschedule_banner(&mut out, Some(&paused)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "automatic rescheduling paused: rack r1 down (zfadm fleet resume)\n"
        );
        let mut out = Vec::new();
        super::print_reschedule_banner(&mut out, Some(&pb::ReschedulePause::default())).unwrap();
        super::print_reschedule_banner(&mut out, None).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(1_000, 4_200), "3s ago");
        assert_eq!(relative(10_000, 3_000), "in 7s");
        assert_eq!(relative(0, 120_000), "2m ago");
        assert_eq!(relative(7_200_000, 0), "in 2h");
    }

    #[test]
    fn times_are_printed_in_utc() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_796_300_123_000), "2026-12-03T12:15:23Z");
    }
}
