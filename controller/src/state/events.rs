//! Fleet events (`zfadm events`): what happened to hosts, zones and the rescheduling
//! pause, derived from each applied entry by comparing what its command touched before
//! and after it applied (as [`super::assignments`] does for the agents' changes), so no
//! handler has to report what it did.
//!
//! The events are part of the replicated state: a bounded ring (the last
//! [`EVENTS_KEPT`]) in [`FleetState::events`], snapshotted and restored with the rest,
//! equal on every replica. An event's revision is the Raft log index of the entry that
//! made it, which the state machine passes in ([`FleetState::apply_entry`]): every
//! replica applies the same entry at the same index, so it stamps the same revision.
//! An entry's events share its revision and are kept in the order they were derived:
//! hosts (by id), then the pause, then zones (by uuid).

use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;
use zonefleet_proto::pb::host_status_name as status_name;

use super::assignments::HostChange;
use super::FleetState;

/// How many events the fleet keeps (the oldest go first).
pub const EVENTS_KEPT: usize = 10_000;

/// The events' kinds (`FleetEvent.kind`).
pub mod kind {
    /// A host registered for the first time, or came back from `down`.
    pub const HOST_UP: &str = "host.up";
    /// A host's lease lapsed (or an operator marked it down).
    pub const HOST_DOWN: &str = "host.down";
    /// A host was cordoned: no new placements.
    pub const HOST_CORDONED: &str = "host.cordoned";
    /// A host is being drained.
    pub const HOST_DRAINING: &str = "host.draining";
    /// A cordoned or draining host was made ready again.
    pub const HOST_READY: &str = "host.ready";
    /// A zone got its first host (created, or placed after waiting for one).
    pub const ZONE_PLACED: &str = "zone.placed";
    /// A zone was placed on another host (`from_host_id` the one it left).
    pub const ZONE_MOVED: &str = "zone.moved";
    /// A zone waits for a host (none fits): the scheduler's explanation.
    pub const ZONE_PENDING: &str = "zone.pending";
    /// A zone's host reports it running.
    pub const ZONE_STARTED: &str = "zone.started";
    /// A zone's host reports it halted (installed, after it was up).
    pub const ZONE_HALTED: &str = "zone.halted";
    /// A zone's host halted it because its lease was running out (fencing).
    pub const ZONE_FENCED: &str = "zone.fenced";
    /// A zone's host reports it failed.
    pub const ZONE_FAILED: &str = "zone.failed";
    /// A zone is gone from the fleet (its host removed it, or it never had one).
    pub const ZONE_DELETED: &str = "zone.deleted";
    /// Automatic rescheduling of lost hosts' zones was paused.
    pub const FLEET_PAUSED: &str = "fleet.paused";
    /// Automatic rescheduling was resumed.
    pub const FLEET_RESUMED: &str = "fleet.resumed";
    /// Not a fleet event: a watch stream's notice that events it would have sent are
    /// no longer kept.
    pub const EVENTS_TRUNCATED: &str = "events.truncated";
}

/// The message prefix with which an agent reports a zone it fenced.
pub const FENCED_PREFIX: &str = "fenced";

/// What events are derived from, of one host.
#[derive(Debug, Clone, PartialEq)]
struct HostFacts {
    status: i32,
}

/// What events are derived from, of one zone.
#[derive(Debug, Clone, PartialEq)]
struct ZoneFacts {
    host_id: String,
    pending: bool,
    observed: i32,
    fenced: bool,
}

impl ZoneFacts {
    fn of(zone: &pb::Zone) -> Self {
        ZoneFacts {
            host_id: zone.host_id.clone(),
            pending: !zone.pending_reason.is_empty(),
            observed: zone.observed_state,
            fenced: is_fenced(zone),
        }
    }
}

/// Whether the zone's host reports it halted by fencing.
fn is_fenced(zone: &pb::Zone) -> bool {
    zone.observed_state == pb::ZoneState::Installed as i32
        && zone.message.starts_with(FENCED_PREFIX)
}

/// The ids of the hosts `command` may change (the commands of a batch included).
fn touched_hosts(command: &pb::FleetCommand, out: &mut Vec<String>) {
    match &command.kind {
        Some(Kind::RegisterHost(c)) => out.extend(c.host.as_ref().map(|h| h.host_id.clone())),
        Some(Kind::SetHostStatus(c)) => out.push(c.host_id.clone()),
        Some(Kind::Batch(b)) => b.commands.iter().for_each(|c| touched_hosts(c, out)),
        _ => {}
    }
}

/// The part of the state a command touches, as it was before it applied.
struct Before {
    hosts: Vec<(String, Option<HostFacts>)>,
    zones: Vec<(String, Option<ZoneFacts>)>,
    paused: bool,
}

impl FleetState {
    /// Applies `command`, the entry at log index `revision` (see
    /// [`FleetState::apply_tracked`]), and records the events it made, stamped with
    /// `revision`, in [`FleetState::events`].
    pub fn apply_entry(
        &mut self,
        revision: u64,
        command: &pb::FleetCommand,
    ) -> (pb::CommandResult, Vec<HostChange>) {
        let before = self.before(command);
        let (result, changes) = self.apply_tracked(command);
        let events = self.derive(before, command.at_unix_ms, revision);
        self.record_events(events);
        (result, changes)
    }

    fn before(&self, command: &pb::FleetCommand) -> Before {
        let mut hosts = Vec::new();
        touched_hosts(command, &mut hosts);
        hosts.sort();
        hosts.dedup();
        let mut zones = Vec::new();
        super::assignments::touched(command, &mut zones);
        zones.sort();
        zones.dedup();
        Before {
            hosts: hosts
                .into_iter()
                .map(|id| {
                    let facts = self.hosts.get(&id).map(|h| HostFacts { status: h.status });
                    (id, facts)
                })
                .collect(),
            zones: zones
                .into_iter()
                .map(|uuid| {
                    let facts = self.zones.get(&uuid).map(ZoneFacts::of);
                    (uuid, facts)
                })
                .collect(),
            paused: self.reschedule_pause.paused,
        }
    }

    /// The events of what changed since `before`.
    fn derive(&self, before: Before, at_unix_ms: i64, revision: u64) -> Vec<pb::FleetEvent> {
        let event = |kind: &str, host_id: &str, zone_uuid: &str, message: String| pb::FleetEvent {
            revision,
            at_unix_ms,
            kind: kind.to_owned(),
            host_id: host_id.to_owned(),
            zone_uuid: zone_uuid.to_owned(),
            from_host_id: String::new(),
            message,
        };
        let mut out = Vec::new();
        for (id, was) in &before.hosts {
            let Some(host) = self.hosts.get(id) else {
                continue;
            };
            let reason = host.status_reason.clone();
            let down = pb::HostStatus::Down as i32;
            match was {
                None => out.push(event(kind::HOST_UP, id, "", "registered".to_owned())),
                Some(was) if was.status == host.status => {}
                Some(_) if host.status == down => out.push(event(kind::HOST_DOWN, id, "", reason)),
                Some(was) if was.status == down => {
                    let ready = pb::HostStatus::Ready as i32;
                    let message = if host.status == ready || reason.is_empty() {
                        reason
                    } else {
                        format!("{reason}; {}", status_name(host.status))
                    };
                    out.push(event(kind::HOST_UP, id, "", message));
                }
                Some(_) => {
                    let kind = match pb::HostStatus::try_from(host.status) {
                        Ok(pb::HostStatus::Cordoned) => kind::HOST_CORDONED,
                        Ok(pb::HostStatus::Draining) => kind::HOST_DRAINING,
                        _ => kind::HOST_READY,
                    };
                    out.push(event(kind, id, "", reason));
                }
            }
        }
        let pause = &self.reschedule_pause;
        if pause.paused != before.paused {
            let kind = if pause.paused {
                kind::FLEET_PAUSED
            } else {
                kind::FLEET_RESUMED
            };
            out.push(event(kind, "", "", pause.reason.clone()));
        }
        for (uuid, was) in &before.zones {
            let Some(zone) = self.zones.get(uuid) else {
                if let Some(was) = was {
                    out.push(event(kind::ZONE_DELETED, &was.host_id, uuid, String::new()));
                }
                continue;
            };
            let now = ZoneFacts::of(zone);
            let old_host = was.as_ref().map_or("", |w| w.host_id.as_str());
            if !now.host_id.is_empty() && now.host_id != old_host {
                if old_host.is_empty() {
                    let message = if was.is_none() { "created" } else { "placed" };
                    out.push(event(
                        kind::ZONE_PLACED,
                        &now.host_id,
                        uuid,
                        message.to_owned(),
                    ));
                } else {
                    out.push(pb::FleetEvent {
                        from_host_id: old_host.to_owned(),
                        ..event(
                            kind::ZONE_MOVED,
                            &now.host_id,
                            uuid,
                            self.why_moved(zone, old_host),
                        )
                    });
                }
            }
            if now.pending && !was.as_ref().is_some_and(|w| w.pending) {
                out.push(event(
                    kind::ZONE_PENDING,
                    &now.host_id,
                    uuid,
                    zone.pending_reason.clone(),
                ));
            }
            let old_state = was.as_ref().map_or(0, |w| w.observed);
            let observed = pb::ZoneState::try_from(now.observed);
            let kind = if now.fenced {
                (!was.as_ref().is_some_and(|w| w.fenced)).then_some(kind::ZONE_FENCED)
            } else if now.observed == old_state {
                None
            } else {
                match observed {
                    Ok(pb::ZoneState::Running) => Some(kind::ZONE_STARTED),
                    Ok(pb::ZoneState::Failed) => Some(kind::ZONE_FAILED),
                    // Halted after it was up (not installed on its way to boot).
                    Ok(pb::ZoneState::Installed) if was_up(old_state) => Some(kind::ZONE_HALTED),
                    _ => None,
                }
            };
            if let Some(kind) = kind {
                out.push(event(kind, &now.host_id, uuid, zone.message.clone()));
            }
        }
        out
    }

    /// Why `zone` left `from`: its host was lost, is draining, or an operator moved it.
    fn why_moved(&self, zone: &pb::Zone, from: &str) -> String {
        let why = match self
            .hosts
            .get(from)
            .and_then(|h| pb::HostStatus::try_from(h.status).ok())
        {
            Some(pb::HostStatus::Down) => format!("host {from} lost"),
            Some(pb::HostStatus::Draining) => format!("host {from} draining"),
            Some(_) => "rescheduled".to_owned(),
            None => format!("host {from} gone"),
        };
        if zone.leaving_host_id == from {
            format!("{why}; starts once host {from} removed it")
        } else {
            why
        }
    }

    /// Appends `events` to the ring, dropping the oldest beyond [`EVENTS_KEPT`].
    fn record_events(&mut self, events: Vec<pb::FleetEvent>) {
        self.events.extend(events);
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    /// The kept events after revision `cursor`, oldest first; and, when events after
    /// `cursor` may have been dropped already, the notice saying so.
    pub fn events_after(&self, cursor: u64) -> EventsAfter {
        // A full ring has dropped events (at exactly EVENTS_KEPT ever made, none were:
        // the notice is then given needlessly, never wrongly withheld); the oldest
        // kept revision may have lost some of its events.
        let truncated = self
            .events
            .front()
            .filter(|oldest| self.events.len() >= EVENTS_KEPT && cursor < oldest.revision)
            .map(|oldest| pb::FleetEvent {
                // A reader that resumes from it gets the oldest kept on.
                revision: oldest.revision - 1,
                at_unix_ms: oldest.at_unix_ms,
                kind: kind::EVENTS_TRUNCATED.to_owned(),
                message: format!(
                    "older events are no longer kept (the fleet keeps the last \
                     {EVENTS_KEPT}): the oldest kept is at revision {}",
                    oldest.revision
                ),
                ..Default::default()
            });
        let start = self.events.partition_point(|e| e.revision <= cursor);
        EventsAfter {
            truncated,
            events: self.events.range(start..).cloned().collect(),
        }
    }
}

/// Whether a zone in `state` was up (booting, running or on its way down).
fn was_up(state: i32) -> bool {
    [
        pb::ZoneState::Ready as i32,
        pb::ZoneState::Running as i32,
        pb::ZoneState::ShuttingDown as i32,
    ]
    .contains(&state)
}

/// What a reader at some revision has not seen ([`FleetState::events_after`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventsAfter {
    /// Events after the reader's revision were dropped: this notice (kind
    /// `events.truncated`) names the oldest kept revision, from which `events` start.
    pub truncated: Option<pb::FleetEvent>,
    /// The kept events after the reader's revision, oldest first.
    pub events: Vec<pb::FleetEvent>,
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::{kind, EVENTS_KEPT};

    /// Applies `kind` as the entry at `revision` and returns the kinds of its events.
    fn at(s: &mut FleetState, revision: u64, kind: Kind) -> Vec<pb::FleetEvent> {
        let kept = s.events.len();
        s.apply_entry(revision, &cmd(kind));
        s.events.iter().skip(kept).cloned().collect()
    }

    fn kinds(events: &[pb::FleetEvent]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    fn status(id: &str, to: pb::HostStatus, from: Option<pb::HostStatus>) -> Kind {
        Kind::SetHostStatus(pb::SetHostStatusCommand {
            host_id: id.to_owned(),
            status: to as i32,
            from_status: from.map(|f| f as i32),
        })
    }

    fn report(host: &str, uuid: &str, generation: u64, state: pb::ZoneState, msg: &str) -> Kind {
        Kind::ReportZoneStates(pb::ReportZoneStatesCommand {
            host_id: host.to_owned(),
            zones: vec![pb::ObservedZone {
                uuid: id(uuid),
                generation,
                state: state as i32,
                message: msg.to_owned(),
                init_exit_status: None,
            }],
        })
    }

    fn reschedule(uuid: &str, host_lost: bool) -> Kind {
        Kind::RescheduleZone(pb::RescheduleZoneCommand {
            uuid: id(uuid),
            host_lost,
        })
    }

    fn pause(paused: bool, reason: &str) -> Kind {
        Kind::SetReschedulePause(pb::SetReschedulePauseCommand {
            pause: Some(pb::ReschedulePause {
                paused,
                reason: reason.to_owned(),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn host_status_changes_are_events_with_their_reason() {
        let mut s = FleetState::default();
        let e = at(&mut s, 1, host("h1", 4096));
        assert_eq!(kinds(&e), ["host.up"]);
        assert_eq!((e[0].revision, e[0].at_unix_ms), (1, 1_000));
        assert_eq!(
            (e[0].host_id.as_str(), e[0].message.as_str()),
            ("h1", "registered")
        );
        // Registering again (an agent restart) is no event.
        assert!(at(&mut s, 2, host("h1", 4096)).is_empty());
        let e = at(&mut s, 3, status("h1", pb::HostStatus::Cordoned, None));
        assert_eq!(kinds(&e), ["host.cordoned"]);
        assert_eq!(e[0].message, "operator");
        // The same status again: nothing.
        assert!(at(&mut s, 4, status("h1", pb::HostStatus::Cordoned, None)).is_empty());
        let e = at(&mut s, 5, status("h1", pb::HostStatus::Draining, None));
        assert_eq!(kinds(&e), ["host.draining"]);
        let e = at(&mut s, 6, status("h1", pb::HostStatus::Ready, None));
        assert_eq!(kinds(&e), ["host.ready"]);
        // The leader's liveness transitions.
        let ready = Some(pb::HostStatus::Ready);
        let e = at(&mut s, 7, status("h1", pb::HostStatus::Down, ready));
        assert_eq!(kinds(&e), ["host.down"]);
        assert_eq!(e[0].message, "lease lapsed");
        let down = Some(pb::HostStatus::Down);
        let e = at(&mut s, 8, status("h1", pb::HostStatus::Ready, down));
        assert_eq!(kinds(&e), ["host.up"]);
        assert_eq!(e[0].message, "heartbeats resumed");
        // A cordoned host that returns says what it returns to.
        at(&mut s, 9, status("h1", pb::HostStatus::Cordoned, None));
        at(
            &mut s,
            10,
            status("h1", pb::HostStatus::Down, Some(pb::HostStatus::Cordoned)),
        );
        let e = at(&mut s, 11, status("h1", pb::HostStatus::Cordoned, down));
        assert_eq!(kinds(&e), ["host.up"]);
        assert_eq!(e[0].message, "heartbeats resumed; cordoned");
        // A refused command (an unknown host) makes none.
        assert!(at(&mut s, 12, status("nosuch", pb::HostStatus::Cordoned, None)).is_empty());
    }

    #[test]
    fn zones_placed_pending_moved_and_deleted() {
        let mut s = FleetState::default();
        // No host: pending with the scheduler's explanation.
        let e = at(&mut s, 1, create(&["z1"], 256, ""));
        assert_eq!(kinds(&e), ["zone.pending"]);
        assert_eq!(e[0].zone_uuid, id("z1"));
        assert!(e[0].message.contains("no host"), "{e:?}");
        at(&mut s, 2, host("h1", 4096));
        let e = at(&mut s, 3, reschedule("z1", false));
        assert_eq!(kinds(&e), ["zone.placed"]);
        assert_eq!(
            (e[0].host_id.as_str(), e[0].message.as_str()),
            ("h1", "placed")
        );
        let e = at(&mut s, 4, create(&["z2"], 256, ""));
        assert_eq!(kinds(&e), ["zone.placed"]);
        assert_eq!(e[0].message, "created");

        // Moved off a live host: it starts once the old host removed it.
        at(&mut s, 5, host("h2", 4096));
        let e = at(&mut s, 6, reschedule("z1", false));
        assert_eq!(kinds(&e), ["zone.moved"]);
        assert_eq!(
            (e[0].from_host_id.as_str(), e[0].host_id.as_str()),
            ("h1", "h2")
        );
        assert_eq!(e[0].message, "rescheduled; starts once host h1 removed it");
        // The release lands it: no second move.
        let release = Kind::ReleaseZone(pb::ReleaseZoneCommand {
            uuid: id("z1"),
            host_id: "h1".to_owned(),
        });
        assert!(at(&mut s, 7, release).is_empty());

        // A lost host's zone: waits while nothing fits, then moves.
        at(
            &mut s,
            8,
            status("h2", pb::HostStatus::Down, Some(pb::HostStatus::Ready)),
        );
        at(&mut s, 9, status("h1", pb::HostStatus::Cordoned, None));
        let e = at(&mut s, 10, reschedule("z1", true));
        assert_eq!(kinds(&e), ["zone.pending"]);
        assert_eq!(e[0].host_id, "h2");
        // Still pending on the next try: no new event.
        assert!(at(&mut s, 11, reschedule("z1", true)).is_empty());
        at(&mut s, 12, status("h1", pb::HostStatus::Ready, None));
        let e = at(&mut s, 13, reschedule("z1", true));
        assert_eq!(kinds(&e), ["zone.moved"]);
        assert_eq!(e[0].message, "host h2 lost");
        assert_eq!(
            (e[0].from_host_id.as_str(), e[0].host_id.as_str()),
            ("h2", "h1")
        );

        // Deleted: gone once its host removed it.
        let delete = Kind::DeleteZone(pb::DeleteZoneCommand { uuid: id("z2") });
        assert!(at(&mut s, 14, delete).is_empty());
        let e = at(
            &mut s,
            15,
            report("h1", "z2", 2, pb::ZoneState::Deleted, ""),
        );
        assert_eq!(kinds(&e), ["zone.deleted"]);
        assert_eq!(
            (e[0].host_id.as_str(), e[0].zone_uuid.clone()),
            ("h1", id("z2"))
        );
    }

    #[test]
    fn observed_states_started_halted_fenced_failed() {
        let mut s = FleetState::default();
        at(&mut s, 1, host("h1", 4096));
        at(&mut s, 2, create(&["z1"], 256, ""));
        let running = pb::ZoneState::Running;
        let installed = pb::ZoneState::Installed;
        // Installed on its way to boot: no event.
        assert!(at(&mut s, 3, report("h1", "z1", 1, installed, "")).is_empty());
        let e = at(&mut s, 4, report("h1", "z1", 1, running, ""));
        assert_eq!(kinds(&e), ["zone.started"]);
        assert_eq!(e[0].host_id, "h1");
        // The same state again: nothing.
        assert!(at(&mut s, 5, report("h1", "z1", 1, running, "")).is_empty());
        let e = at(&mut s, 6, report("h1", "z1", 1, installed, "stopped"));
        assert_eq!(kinds(&e), ["zone.halted"]);
        assert_eq!(e[0].message, "stopped");
        at(&mut s, 7, report("h1", "z1", 1, running, ""));
        let fenced = "fenced: the lease runs out";
        let e = at(&mut s, 8, report("h1", "z1", 1, installed, fenced));
        assert_eq!(kinds(&e), ["zone.fenced"]);
        assert_eq!(e[0].message, fenced);
        assert!(at(&mut s, 9, report("h1", "z1", 1, installed, fenced)).is_empty());
        let e = at(
            &mut s,
            10,
            report("h1", "z1", 1, pb::ZoneState::Failed, "init: exit 1"),
        );
        assert_eq!(kinds(&e), ["zone.failed"]);
        assert_eq!(e[0].message, "init: exit 1");
        // A report from a host the zone is not on changes nothing.
        assert!(at(&mut s, 11, report("h2", "z1", 1, running, "")).is_empty());
    }

    #[test]
    fn pause_and_resume_and_one_revision_per_entry() {
        let mut s = FleetState::default();
        let e = at(&mut s, 1, pause(true, "3 of 5 hosts down"));
        assert_eq!(kinds(&e), ["fleet.paused"]);
        assert_eq!(e[0].message, "3 of 5 hosts down");
        assert!(at(&mut s, 2, pause(true, "4 of 5 hosts down")).is_empty());
        let e = at(&mut s, 3, pause(false, "resumed by an operator"));
        assert_eq!(kinds(&e), ["fleet.resumed"]);
        // A batch: hosts, then the pause, then zones, all at the entry's revision.
        let batch = Kind::Batch(pb::BatchCommand {
            commands: vec![
                cmd(create(&["z1"], 256, "")),
                cmd(host("h1", 4096)),
                cmd(pause(true, "rack r1 down")),
            ],
        });
        let e = at(&mut s, 9, batch);
        assert_eq!(kinds(&e), ["host.up", "fleet.paused", "zone.pending"]);
        assert!(e.iter().all(|e| e.revision == 9));
    }

    #[test]
    fn the_ring_keeps_the_last_events_round_trips_and_says_when_it_dropped_some() {
        let mut s = FleetState::default();
        at(&mut s, 1, host("h1", 4096));
        let after = s.events_after(0);
        assert_eq!((after.truncated, after.events.len()), (None, 1));
        assert!(s.events_after(1).events.is_empty());
        // Cordon/uncordon: one event per entry, well past what is kept.
        let total = EVENTS_KEPT as u64 + 10;
        for r in 2..=total {
            let to = if r % 2 == 0 {
                pb::HostStatus::Cordoned
            } else {
                pb::HostStatus::Ready
            };
            at(&mut s, r, status("h1", to, None));
        }
        assert_eq!(s.events.len(), EVENTS_KEPT);
        let oldest = total - EVENTS_KEPT as u64 + 1;
        assert_eq!(s.events.front().unwrap().revision, oldest);
        // Behind the oldest kept: the notice, then every kept event.
        let after = s.events_after(5);
        let notice = after.truncated.expect("a notice");
        assert_eq!(notice.kind, kind::EVENTS_TRUNCATED);
        assert_eq!(notice.revision, oldest - 1);
        assert!(
            notice.message.contains(&format!("revision {oldest}")),
            "{notice:?}"
        );
        assert_eq!(after.events.len(), EVENTS_KEPT);
        // At or after it: exactly the later ones.
        let after = s.events_after(total - 3);
        assert!(after.truncated.is_none());
        let revisions: Vec<u64> = after.events.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [total - 2, total - 1, total]);
        // Snapshotted and restored, equal.
        let restored = FleetState::from_snapshot(&s.to_snapshot());
        assert_eq!(restored.events, s.events);
        assert_eq!(restored, s);
        assert_eq!(restored.events_after(5), s.events_after(5));
    }
}
