//! `zfadm host drain`: every selected host set draining (the scheduler places nothing
//! more there), then its `on_host_lost: reschedule` zones moved to other hosts, at most
//! `--max-parallel` at once over all the hosts, until each runs on its new host or the
//! deadline passes; `wait` zones stay where they are, listed.
//!
//! A move is the controllers' (`RescheduleZone`): the new host is chosen and its
//! capacity held at once, but a zone has one identity (its uuid, its addresses), so it
//! never runs twice: the old host halts and removes it first, and only then does the
//! new host boot it (halt-then-move). A zone counts as moving until the controllers
//! show it on its new host, off the old one, reported at its generation and running
//! when it should run; only then does the next move start.
//!
//! With `-o json` the drain prints one JSON event a line (`drain.started`,
//! `zone.staying`, `zone.moving`, `zone.moved`, `zone.cannot_move`, `zone.failed`,
//! `zone.deleted`, then `drain.done` or `drain.deadline`); otherwise a line per event
//! and, on a terminal, a progress bar on stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use zonefleet_proto::pb;

use super::connect::Connection;
use super::progress::{self, Progress};

/// How often a moving zone is looked at.
const POLL: Duration = Duration::from_millis(200);
/// The longest `--deadline`.
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 86_400);

/// How a drain runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most zones moving at once (≥ 1).
    pub max_parallel: usize,
    /// How long the drain waits for its moves.
    pub deadline: Duration,
    /// One JSON event a line instead of text.
    pub json: bool,
}

/// Parses a duration like `90s`, `10m`, `1h30m` or `2d` (units `s`, `m`, `h`, `d`,
/// largest first, each once; a bare number is seconds), 1 s to 7 days.
pub fn parse_deadline(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 90s, 10m or 1h30m");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| bad())?;
        return in_range(s, Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut rest = text;
    // The units still allowed: each once, largest first.
    let mut units: &[(char, u64)] = &[('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let at = units.iter().position(|(u, _)| *u == unit).ok_or_else(|| {
            if "dhms".contains(unit) {
                format!("{s:?}: units go largest first, each once (1h30m)")
            } else {
                format!("{s:?}: the unit {unit:?} is not one of s, m, h, d")
            }
        })?;
        total = total.saturating_add(n.saturating_mul(units[at].1));
        units = &units[at + 1..];
        rest = &rest[digits + unit.len_utf8()..];
    }
    in_range(s, Duration::from_secs(total))
}

fn in_range(s: &str, d: Duration) -> Result<Duration, String> {
    if d.is_zero() || d > MAX_DEADLINE {
        return Err(format!("{s:?} is out of range; allowed 1s to 7d"));
    }
    Ok(d)
}

/// A zone as the drain names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    uuid: String,
    alias: String,
    /// The drained host it is on (or moving off).
    host: String,
}

impl Named {
    fn of(zone: &pb::Zone, host: &str) -> Named {
        let spec = zone.spec.as_ref();
        Named {
            uuid: spec.and_then(|s| s.uuid.clone()).unwrap_or_default(),
            alias: spec.and_then(|s| s.alias.clone()).unwrap_or_default(),
            host: host.to_owned(),
        }
    }

    /// `alias (uuid)`, or the uuid alone.
    fn text(&self) -> String {
        if self.alias.is_empty() {
            self.uuid.clone()
        } else {
            format!("{} ({})", self.alias, self.uuid)
        }
    }
}

/// What the drain does with the zones of the drained hosts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// `reschedule` zones to move, in order (by alias, then uuid).
    to_move: Vec<Named>,
    /// Zones already moving off a drained host (an earlier drain or reschedule): they
    /// take a slot each until they land.
    moving: Vec<Named>,
    /// `wait` zones: they stay.
    staying: Vec<Named>,
    /// Zones that cannot move now, and why (their host is down).
    cannot_move: Vec<(Named, String)>,
}

/// Sorts out the zones of `hosts` (deleted zones are left alone).
fn plan(hosts: &[pb::Host], zones: &[pb::Zone]) -> Plan {
    let by_id: BTreeMap<&str, &pb::Host> = hosts.iter().map(|h| (h.host_id.as_str(), h)).collect();
    let mut plan = Plan::default();
    for zone in zones {
        if zone.desired_state == pb::ZoneState::Deleted as i32 {
            continue;
        }
        if by_id.contains_key(zone.leaving_host_id.as_str()) {
            plan.moving.push(Named::of(zone, &zone.leaving_host_id));
            continue;
        }
        if !zone.leaving_host_id.is_empty() {
            // Moving off a host not drained now: not this drain's.
            continue;
        }
        let Some(host) = by_id.get(zone.host_id.as_str()) else {
            continue;
        };
        let named = Named::of(zone, &host.host_id);
        let policy = zone.spec.as_ref().map_or(0, |s| s.on_host_lost);
        if policy != pb::OnHostLost::Reschedule as i32 {
            plan.staying.push(named);
        } else if host.status == pb::HostStatus::Down as i32 {
            plan.cannot_move.push((
                named,
                format!(
                    "host {} is down: the controllers move its reschedulable zones once its lease has surely expired",
                    host.host_id
                ),
            ));
        } else {
            plan.to_move.push(named);
        }
    }
    let order = |z: &Named| (z.alias.clone(), z.uuid.clone());
    for list in [&mut plan.to_move, &mut plan.moving, &mut plan.staying] {
        list.sort_by_key(order);
    }
    plan.cannot_move.sort_by_key(|(z, _)| order(z));
    plan
}

/// Where a moving zone is.
#[derive(Debug, PartialEq, Eq)]
enum Settle {
    /// Not yet on its new host, or not yet running there.
    Moving,
    /// On host `.0`, off the drained one, observed at its generation (and running if
    /// it should run).
    Landed(String),
    /// Its new host reported it failed.
    Failed(String, String),
}

fn settle(zone: &pb::Zone, drained: &BTreeSet<String>) -> Settle {
    let placed = !zone.host_id.is_empty()
        && zone.leaving_host_id.is_empty()
        && !drained.contains(&zone.host_id);
    if !placed || zone.observed_generation < zone.generation {
        return Settle::Moving;
    }
    if zone.observed_state == pb::ZoneState::Failed as i32 {
        return Settle::Failed(zone.host_id.clone(), zone.message.clone());
    }
    let running = pb::ZoneState::Running as i32;
    if zone.desired_state == running && zone.observed_state != running {
        return Settle::Moving;
    }
    Settle::Landed(zone.host_id.clone())
}

/// How one zone's move ended.
#[derive(Debug)]
enum Outcome {
    Moved { to: String },
    CannotMove { why: String },
    Failed { on: String, why: String },
    Deleted,
}

/// What a move task tells the drain.
#[derive(Debug)]
enum Event {
    /// The controllers placed the zone on `to`; it is leaving its host.
    Moving { zone: Named, to: String },
    /// The move ended.
    Done { zone: Named, outcome: Outcome },
}

/// A zone as the controllers have it now (`None`: deleted), or an error to retry on.
async fn get_zone(conn: &Connection, uuid: &str) -> anyhow::Result<Option<pb::Zone>> {
    let r = pb::GetZoneRequest {
        zone: uuid.to_owned(),
        ..Default::default()
    };
    conn.call(|mut c| {
        let r = r.clone();
        async move {
            match c.get_zone(r).await {
                Ok(z) => Ok(Some(z.into_inner())),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => Err(s),
            }
        }
    })
    .await
}

/// Moves one zone (or, `already`, follows one already moving) until it lands or fails.
async fn move_one(
    conn: Connection,
    zone: Named,
    already: bool,
    drained: Arc<BTreeSet<String>>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let done = |outcome| {
        let _ = tx.send(Event::Done {
            zone: zone.clone(),
            outcome,
        });
    };
    if already {
        // Said moving like the others, so every `zone.moved` follows a `zone.moving`.
        let to = match get_zone(&conn, &zone.uuid).await {
            Ok(Some(now)) => now.host_id,
            Ok(None) => return done(Outcome::Deleted),
            Err(_) => String::new(),
        };
        let _ = tx.send(Event::Moving {
            zone: zone.clone(),
            to,
        });
    } else {
        let r = pb::ZoneRef {
            zone: zone.uuid.clone(),
        };
        let answer = conn
            .call(|mut c| {
                let r = r.clone();
                async move {
                    match c.reschedule_zone(r).await {
                        Ok(z) => Ok(Ok(z.into_inner())),
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                            Ok(Err(s.message().to_owned()))
                        }
                        Err(s) if s.code() == tonic::Code::NotFound => Ok(Err(String::new())),
                        Err(s) => Err(s),
                    }
                }
            })
            .await;
        match answer {
            Ok(Ok(moved)) => {
                let _ = tx.send(Event::Moving {
                    zone: zone.clone(),
                    to: moved.host_id,
                });
            }
            // Refused, or the answer was lost: what the controllers now hold decides
            // (a write whose answer was lost may have been committed; another client
            // may have moved it meanwhile).
            refused => {
                let why = match refused {
                    Ok(Err(why)) => why,
                    Err(e) => format!("{e:#}"),
                    Ok(Ok(_)) => String::new(),
                };
                match get_zone(&conn, &zone.uuid).await {
                    Ok(None) => return done(Outcome::Deleted),
                    Ok(Some(now))
                        if !now.leaving_host_id.is_empty() || !drained.contains(&now.host_id) =>
                    {
                        let _ = tx.send(Event::Moving {
                            zone: zone.clone(),
                            to: now.host_id,
                        });
                    }
                    _ => return done(Outcome::CannotMove { why }),
                }
            }
        }
    }
    loop {
        tokio::time::sleep(POLL).await;
        // A failed read (no leader for a moment) is tried again: the deadline bounds it.
        match get_zone(&conn, &zone.uuid).await {
            Ok(None) => return done(Outcome::Deleted),
            Ok(Some(now)) => match settle(&now, &drained) {
                Settle::Moving => {}
                Settle::Landed(to) => return done(Outcome::Moved { to }),
                Settle::Failed(on, why) => return done(Outcome::Failed { on, why }),
            },
            Err(_) => {}
        }
    }
}

/// Milliseconds since `started`.
fn ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Writes drain events: JSON lines, or text lines above the progress bar.
struct Report<'a> {
    out: &'a mut dyn Write,
    json: bool,
    started: Instant,
}

impl Report<'_> {
    /// Writes one event: `kind`, the zone (if any) and `fields`, or `text`.
    fn event(
        &mut self,
        kind: &str,
        zone: Option<&Named>,
        fields: Value,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            let mut v = json!({ "event": kind, "elapsed_ms": ms(self.started) });
            if let Some(z) = zone {
                v["uuid"] = json!(z.uuid);
                v["alias"] = json!(z.alias);
                v["host_id"] = json!(z.host);
            }
            if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), fields) {
                obj.extend(more);
            }
            writeln!(self.out, "{}", serde_json::to_string(&v)?)?;
        } else {
            progress::clear_line();
            writeln!(self.out, "{}", text())?;
        }
        Ok(self.out.flush()?)
    }
}

/// Tallies of a drain.
#[derive(Debug, Default)]
struct Tally {
    moved: usize,
    cannot_move: Vec<Named>,
    failed: Vec<Named>,
    deleted: usize,
    /// Zones moving now, by uuid.
    moving: BTreeMap<String, Named>,
}

/// Drains `hosts` (at least one): sets each draining, moves their reschedulable
/// zones, reports as it goes. An error when a zone could not move or failed on its
/// new host, or when the deadline passed.
pub async fn drain(
    conn: &Connection,
    hosts: Vec<pb::Host>,
    options: &Options,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + options.deadline;
    // Every host first, so no zone moves onto another host of the same drain.
    for host in &hosts {
        let r = pb::DrainHostRequest {
            host_id: host.host_id.clone(),
            batch: u32::try_from(options.max_parallel).unwrap_or(u32::MAX),
        };
        conn.call(|mut c| {
            let r = r.clone();
            async move { c.drain_host(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    }
    let zones = conn
        .call(|mut c| async move {
            c.list_zones(pb::ListZonesRequest::default())
                .await
                .map(|r| r.into_inner().zones)
        })
        .await?;
    let plan = plan(&hosts, &zones);
    let drained: Arc<BTreeSet<String>> =
        Arc::new(hosts.iter().map(|h| h.host_id.clone()).collect());
    let mut report = Report {
        out,
        json: options.json,
        started,
    };
    let ids: Vec<&str> = hosts.iter().map(|h| h.host_id.as_str()).collect();
    let total = plan.to_move.len() + plan.moving.len();
    report.event(
        "drain.started",
        None,
        json!({
            "hosts": ids,
            "to_move": total,
            "staying": plan.staying.len(),
            "max_parallel": options.max_parallel,
            "deadline_s": options.deadline.as_secs(),
        }),
        || {
            format!(
                "draining {} host{} ({}): {total} zone{} to move, {} staying; at most {} at once, deadline {}s",
                ids.len(),
                plural(ids.len()),
                ids.join(", "),
                plural(total),
                plan.staying.len(),
                options.max_parallel,
                options.deadline.as_secs()
            )
        },
    )?;
    for z in &plan.staying {
        report.event(
            "zone.staying",
            Some(z),
            json!({ "on_host_lost": "wait" }),
            || {
                format!(
                    "staying      {} on {}: on_host_lost is wait",
                    z.text(),
                    z.host
                )
            },
        )?;
    }
    let mut tally = Tally::default();
    for (z, why) in &plan.cannot_move {
        report.event("zone.cannot_move", Some(z), json!({ "why": why }), || {
            format!("cannot move  {} off {}: {why}", z.text(), z.host)
        })?;
        tally.cannot_move.push(z.clone());
    }

    // The moves: a dispatcher starts one whenever a slot is free; dropping it (at the
    // deadline) stops every move task it started.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(options.max_parallel));
    let queue: Vec<(Named, bool)> = plan
        .moving
        .iter()
        .map(|z| (z.clone(), true))
        .chain(plan.to_move.iter().map(|z| (z.clone(), false)))
        .collect();
    let mut not_started: BTreeMap<String, Named> = queue
        .iter()
        .map(|(z, _)| (z.uuid.clone(), z.clone()))
        .collect();
    let dispatcher = {
        let conn = conn.clone();
        let drained = drained.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (zone, already) in queue {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (conn, drained, tx) = (conn.clone(), drained.clone(), tx.clone());
                tasks.spawn(async move {
                    move_one(conn, zone, already, drained, tx).await;
                    drop(slot);
                });
            }
            drop(tx);
            while tasks.join_next().await.is_some() {}
        })
    };
    let bar = Progress::items(total as u64, "zones");
    let drawing = if options.json {
        None
    } else {
        bar.draw("drain")
    };
    let mut deadline_passed = false;
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            () = tokio::time::sleep_until(deadline) => {
                deadline_passed = true;
                None
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Moving { zone, to } => {
                not_started.remove(&zone.uuid);
                report.event(
                    "zone.moving",
                    Some(&zone),
                    json!({ "to_host_id": to }),
                    || format!("moving       {} {} -> {to}", zone.text(), zone.host),
                )?;
                tally.moving.insert(zone.uuid.clone(), zone);
            }
            Event::Done { zone, outcome } => {
                not_started.remove(&zone.uuid);
                tally.moving.remove(&zone.uuid);
                bar.add(1);
                match outcome {
                    Outcome::Moved { to } => {
                        tally.moved += 1;
                        report.event(
                            "zone.moved",
                            Some(&zone),
                            json!({ "to_host_id": to }),
                            || format!("moved        {} {} -> {to}", zone.text(), zone.host),
                        )?;
                    }
                    Outcome::CannotMove { why } => {
                        report.event(
                            "zone.cannot_move",
                            Some(&zone),
                            json!({ "why": why }),
                            || format!("cannot move  {} off {}: {why}", zone.text(), zone.host),
                        )?;
                        tally.cannot_move.push(zone);
                    }
                    Outcome::Failed { on, why } => {
                        report.event(
                            "zone.failed",
                            Some(&zone),
                            json!({ "to_host_id": on, "why": why }),
                            || format!("failed       {} on {on}: {why}", zone.text()),
                        )?;
                        tally.failed.push(zone);
                    }
                    Outcome::Deleted => {
                        tally.deleted += 1;
                        report.event("zone.deleted", Some(&zone), json!({}), || {
                            format!("deleted      {} (while draining)", zone.text())
                        })?;
                    }
                }
            }
        }
    }
    dispatcher.abort();
    drop(drawing);

    let uuids = |zones: &mut dyn Iterator<Item = &Named>| -> Vec<String> {
        zones.map(|z| z.uuid.clone()).collect()
    };
    let summary = json!({
        "moved": tally.moved,
        "cannot_move": uuids(&mut tally.cannot_move.iter()),
        "failed": uuids(&mut tally.failed.iter()),
        "deleted": tally.deleted,
        "staying": uuids(&mut plan.staying.iter()),
    });
    let counts = format!(
        "{} moved, {} could not move, {} failed, {} staying",
        tally.moved,
        tally.cannot_move.len(),
        tally.failed.len(),
        plan.staying.len()
    );
    if deadline_passed {
        let mut fields = summary;
        fields["moving"] = json!(uuids(&mut tally.moving.values()));
        fields["not_started"] = json!(uuids(&mut not_started.values()));
        report.event("drain.deadline", None, fields, || {
            format!(
                "deadline {}s passed: {counts}; {} still moving (the controllers finish those), {} not started",
                options.deadline.as_secs(),
                tally.moving.len(),
                not_started.len()
            )
        })?;
        bail!(
            "the drain's deadline ({}s) passed with {} zone{} not yet moved",
            options.deadline.as_secs(),
            tally.moving.len() + not_started.len(),
            plural(tally.moving.len() + not_started.len())
        );
    }
    report.event("drain.done", None, summary, || {
        format!(
            "drained {} host{} in {:.1}s: {counts}",
            ids.len(),
            plural(ids.len()),
            started.elapsed().as_secs_f64()
        )
    })?;
    let stuck: Vec<String> = tally
        .cannot_move
        .iter()
        .chain(&tally.failed)
        .map(Named::text)
        .collect();
    if !stuck.is_empty() {
        bail!(
            "{} zone{} did not move: {}",
            stuck.len(),
            plural(stuck.len()),
            stuck.join(", ")
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        let secs = |s| parse_deadline(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1d2h3m4s"), Ok(93_784));
        assert_eq!(secs("45"), Ok(45));
        assert_eq!(secs(" 2m "), Ok(120));
        assert_eq!(secs("7d"), Ok(7 * 86_400));
    }

    #[test]
    fn bad_deadlines_are_refused_naming_why() {
        let err = |s| parse_deadline(s).unwrap_err();
        assert!(err("").contains("not a duration"));
        assert!(err("soon").contains("not a duration"));
        assert!(err("m").contains("not a duration"));
        assert!(err("1h30").contains("not a duration"));
        assert!(err("-5m").contains("not a duration"));
        assert!(err("5w").contains("unit 'w'"), "{}", err("5w"));
        assert!(err("30m1h").contains("largest first"));
        assert!(err("1m1m").contains("largest first"));
        assert!(err("0s").contains("out of range"));
        assert!(err("8d").contains("out of range"));
        assert!(err("99999999999999999999s").contains("not a duration"));
    }

    fn host(id: &str, status: pb::HostStatus) -> pb::Host {
        pb::Host {
            host_id: id.to_owned(),
            status: status as i32,
            ..Default::default()
        }
    }

    fn zone(alias: &str, host: &str, policy: pb::OnHostLost) -> pb::Zone {
        pb::Zone {
            spec: Some(pb::ZoneSpec {
                uuid: Some(format!("uuid-{alias}")),
                alias: Some(alias.to_owned()),
                on_host_lost: policy as i32,
                ..Default::default()
            }),
            host_id: host.to_owned(),
            desired_state: pb::ZoneState::Running as i32,
            ..Default::default()
        }
    }

    fn aliases(zones: &[Named]) -> Vec<&str> {
        zones.iter().map(|z| z.alias.as_str()).collect()
    }

    #[test]
    fn reschedulable_zones_move_wait_zones_stay_and_a_down_hosts_zones_are_named() {
        use pb::OnHostLost::{Reschedule, Unspecified, Wait};
        let hosts = [
            host("h1", pb::HostStatus::Draining),
            host("h2", pb::HostStatus::Down),
        ];
        let mut deleted = zone("gone", "h1", Reschedule);
        deleted.desired_state = pb::ZoneState::Deleted as i32;
        let mut moving = zone("on-its-way", "h3", Reschedule);
        moving.leaving_host_id = "h1".into();
        let mut elsewhere = zone("not-ours", "h4", Reschedule);
        elsewhere.leaving_host_id = "h5".into();
        let zones = [
            zone("web-2", "h1", Reschedule),
            zone("web-1", "h1", Reschedule),
            zone("db", "h1", Wait),
            zone("old", "h1", Unspecified),
            zone("lost", "h2", Reschedule),
            zone("other", "h3", Reschedule),
            deleted,
            moving,
            elsewhere,
        ];
        let plan = plan(&hosts, &zones);
        assert_eq!(aliases(&plan.to_move), ["web-1", "web-2"]);
        assert_eq!(aliases(&plan.moving), ["on-its-way"]);
        assert_eq!(plan.moving[0].host, "h1");
        assert_eq!(aliases(&plan.staying), ["db", "old"]);
        assert_eq!(plan.cannot_move.len(), 1);
        assert_eq!(plan.cannot_move[0].0.alias, "lost");
        assert!(plan.cannot_move[0].1.contains("host h2 is down"));
    }

    #[test]
    fn a_zone_has_landed_once_on_its_new_host_at_its_generation_and_running() {
        let drained: BTreeSet<String> = ["h1".to_owned()].into();
        let mut z = zone("web", "h2", pb::OnHostLost::Reschedule);
        z.leaving_host_id = "h1".into();
        z.generation = 4;
        assert_eq!(settle(&z, &drained), Settle::Moving);
        // Released by the old host, not yet reported by the new one.
        z.leaving_host_id.clear();
        assert_eq!(settle(&z, &drained), Settle::Moving);
        // Reported at its generation, still booting.
        z.observed_generation = 4;
        z.observed_state = pb::ZoneState::Ready as i32;
        assert_eq!(settle(&z, &drained), Settle::Moving);
        z.observed_state = pb::ZoneState::Running as i32;
        assert_eq!(settle(&z, &drained), Settle::Landed("h2".into()));
        // A stopped zone has landed once reported installed.
        z.desired_state = pb::ZoneState::Installed as i32;
        z.observed_state = pb::ZoneState::Installed as i32;
        assert_eq!(settle(&z, &drained), Settle::Landed("h2".into()));
        // Failed on its new host: said so, with the zone's message.
        z.observed_state = pb::ZoneState::Failed as i32;
        z.message = "init exited 127".into();
        assert_eq!(
            settle(&z, &drained),
            Settle::Failed("h2".into(), "init exited 127".into())
        );
        // Never landed while on a drained host or on none.
        z.host_id = "h1".into();
        assert_eq!(settle(&z, &drained), Settle::Moving);
        z.host_id.clear();
        assert_eq!(settle(&z, &drained), Settle::Moving);
    }
}
