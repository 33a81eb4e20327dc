//! What the leader decides from its lease table, every tick while it leads:
//!
//! 1. liveness: a host whose lease lapsed goes `DOWN` (from whatever status it had;
//!    the operator's status is kept in `admin_status` and restored when it returns),
//!    a down host whose lease is live again returns;
//! 2. the mass-loss pause: more than `mass_loss_percent` of the hosts down, or a whole
//!    rack of two or more hosts, pauses 3 (committed, shown by `zfadm host list`);
//!    the loss ending lifts it, and so does an operator (`zfadm fleet resume`);
//! 3. moves: the `reschedule` zones of a down host whose lease has surely expired
//!    (`lapses_at + reschedule_margin`: its agent fenced them by then) are placed
//!    elsewhere (`RescheduleZone.host_lost`), and zones moving off such a host are
//!    released (their old host fenced them);
//! 4. pending zones (never placed, or waiting after a loss) are tried again, oldest
//!    first, whenever the applied state changed since the last try.
//!
//! Every decision is a conditional command, checked again when applied, so a host that
//! came back or a leader that changed meanwhile makes it a no-op.

use std::sync::Weak;
use std::time::{Duration, Instant};

use openraft::ServerState;
use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;

use super::leases::{return_command, status_command};
use super::{Controller, Inner};
use crate::api::operator::command;
use crate::state::{zone_uuid, FleetState};

/// While this controller leads, confirms its leadership with a quorum round every half
/// of the confirmation bound; leases are granted only within that bound of one.
pub(super) async fn confirm_leadership(node: Weak<Inner>) {
    let every = match node.upgrade() {
        Some(inner) => inner.leases.confirm_within / 2,
        None => return,
    };
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = node.upgrade() else { return };
        let node = Controller { inner };
        let (state, term) = {
            let m = node.inner.raft.metrics();
            let m = m.borrow();
            if m.running_state.is_err() || m.state == ServerState::Shutdown {
                return;
            }
            (m.state, m.current_term)
        };
        if state == ServerState::Leader {
            if let Err(e) = node.confirm_leadership(term).await {
                tracing::debug!(error = %e.message(), "leadership not confirmed");
            }
        }
    }
}

impl Controller {
    /// Runs one quorum round for leadership of `term` and records it for the leases.
    pub(super) async fn confirm_leadership(&self, term: u64) -> Result<(), tonic::Status> {
        let inner = &self.inner;
        let started = Instant::now();
        let round = tokio::time::timeout(inner.leases.confirm_within, inner.raft.get_read_log_id());
        match round.await {
            // Only if the term did not change during the round.
            Ok(Ok(_)) if inner.raft.metrics().borrow().current_term == term => {
                inner.leases.confirmed(term, started);
                Ok(())
            }
            Ok(Ok(_)) => Err(tonic::Status::unavailable(
                "the term changed while confirming leadership",
            )),
            Ok(Err(e)) => Err(tonic::Status::unavailable(format!(
                "leadership not confirmed: {e}"
            ))),
            Err(_) => Err(tonic::Status::unavailable(
                "leadership not confirmed in time",
            )),
        }
    }
}

/// What one tick decided.
#[derive(Debug, Default)]
struct Decisions {
    commands: Vec<pb::FleetCommand>,
}

impl Decisions {
    fn push(&mut self, kind: Kind) {
        self.commands.push(command(kind));
    }
}

/// The judging loop (see the module doc). Stops when the controller is dropped or
/// shut down.
pub(super) async fn watch(node: Weak<Inner>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The applied index pending zones were last tried at.
    let mut tried_at: Option<u64> = None;
    loop {
        interval.tick().await;
        let Some(inner) = node.upgrade() else { return };
        let node = Controller { inner };
        let (state, term, running) = {
            let m = node.inner.raft.metrics();
            let m = m.borrow();
            (m.state, m.current_term, m.running_state.is_ok())
        };
        if !running || state == ServerState::Shutdown {
            return;
        }
        if state != ServerState::Leader {
            node.inner.leases.step_down();
            tried_at = None;
            continue;
        }
        let decisions = {
            let applied = node.state().await;
            let applied_index = applied.last_applied.map(|l| l.index);
            let retry_pending = tried_at != applied_index;
            tried_at = applied_index;
            decide(&node, &applied.fleet, term, retry_pending)
        };
        if decisions.commands.is_empty() {
            continue;
        }
        for command in decisions.commands {
            if let Err(e) = node.write(command).await {
                tracing::warn!(error = %e, "committing a liveness decision");
                break;
            }
        }
        // Our own commit is no reason to try the pending zones again (a retry that
        // failed changes nothing; one that placed a zone changed what it had to).
        tried_at = node.state().await.last_applied.map(|l| l.index);
    }
}

fn decide(node: &Controller, fleet: &FleetState, term: u64, retry_pending: bool) -> Decisions {
    let now = Instant::now();
    let leases = &node.inner.leases;
    let margin = node.inner.control.reschedule_margin;
    let table = leases.of_term(term, now);
    let mut out = Decisions::default();
    let mut down_now = Vec::new();
    let mut surely_gone = Vec::new();
    for host in fleet.hosts.values() {
        let lapses_at = leases.lapses_at(&table, &host.host_id);
        let live = now < lapses_at;
        let down = host.status == pb::HostStatus::Down as i32;
        // A down host returns only on a heartbeat to this leader, never because the
        // new leader's grace has not ended.
        match (down, live) {
            (false, false) => {
                tracing::warn!(host = %host.host_id, "lease lapsed: host down");
                let from = pb::HostStatus::try_from(host.status).unwrap_or(pb::HostStatus::Ready);
                out.commands
                    .push(status_command(&host.host_id, pb::HostStatus::Down, from));
                down_now.push(host.host_id.as_str());
            }
            (true, true) if leases.renewed(&table, &host.host_id) => {
                out.commands.push(return_command(host));
            }
            (true, _) => {
                down_now.push(host.host_id.as_str());
                if now >= lapses_at + margin {
                    surely_gone.push(host.host_id.as_str());
                }
            }
            _ => {}
        }
    }
    drop(table);

    let pause = &fleet.reschedule_pause;
    let loss = mass_loss(fleet, &down_now);
    let paused = match (&loss, pause.paused, pause.overridden) {
        (Some(why), false, false) => {
            tracing::warn!(%why, "mass host loss: automatic rescheduling paused");
            out.push(Kind::SetReschedulePause(pb::SetReschedulePauseCommand {
                pause: Some(pb::ReschedulePause {
                    paused: true,
                    reason: why.clone(),
                    since_unix_ms: 0,
                    overridden: false,
                }),
            }));
            true
        }
        (None, true, _) | (None, _, true) => {
            tracing::info!("the mass loss ended: automatic rescheduling resumed");
            out.push(Kind::SetReschedulePause(pb::SetReschedulePauseCommand {
                pause: Some(pb::ReschedulePause {
                    paused: false,
                    reason: "the loss ended".to_owned(),
                    since_unix_ms: 0,
                    overridden: false,
                }),
            }));
            false
        }
        _ => pause.paused,
    };

    let mut pending: Vec<&pb::Zone> = Vec::new();
    for zone in fleet.zones.values() {
        if zone.desired_state == pb::ZoneState::Deleted as i32 {
            continue;
        }
        let reschedulable = zone
            .spec
            .as_ref()
            .is_some_and(|s| s.on_host_lost == pb::OnHostLost::Reschedule as i32);
        let uuid = zone_uuid(zone).to_owned();
        if !zone.leaving_host_id.is_empty() {
            // Moving off a host that was lost meanwhile: it fenced the zone.
            if reschedulable && surely_gone.contains(&zone.leaving_host_id.as_str()) {
                out.push(Kind::ReleaseZone(pb::ReleaseZoneCommand {
                    uuid,
                    host_id: zone.leaving_host_id.clone(),
                }));
            }
            continue;
        }
        if zone.host_id.is_empty() {
            pending.push(zone);
        } else if reschedulable && !paused && surely_gone.contains(&zone.host_id.as_str()) {
            // Tried at once the first time, then as a pending zone.
            if zone.pending_reason.is_empty() || retry_pending {
                pending.push(zone);
            }
        }
    }
    if retry_pending
        || pending
            .iter()
            .any(|z| !z.host_id.is_empty() && z.pending_reason.is_empty())
    {
        pending.sort_by_key(|z| (z.created_at_unix_ms, zone_uuid(z).to_owned()));
        for zone in pending {
            out.push(Kind::RescheduleZone(pb::RescheduleZoneCommand {
                uuid: zone_uuid(zone).to_owned(),
                host_lost: !zone.host_id.is_empty(),
            }));
        }
    }
    // One entry: the leader's decisions of one tick apply in order, each on its own.
    if out.commands.len() > 1 {
        let commands = std::mem::take(&mut out.commands);
        out.push(Kind::Batch(pb::BatchCommand { commands }));
    }
    out
}

/// Why the hosts down now are a mass loss, if they are: more than the settings' share
/// of all hosts, or every host of a rack that has two or more (in a fleet of more than
/// one rack).
fn mass_loss(fleet: &FleetState, down: &[&str]) -> Option<String> {
    let total = fleet.hosts.len();
    if total == 0 || down.is_empty() {
        return None;
    }
    let share = fleet
        .settings
        .mass_loss_percent
        .unwrap_or(pb::DEFAULT_MASS_LOSS_PERCENT) as usize;
    if down.len() * 100 > share * total {
        return Some(format!(
            "{} of {total} hosts down (more than {share}%)",
            down.len()
        ));
    }
    let mut racks: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for host in fleet.hosts.values() {
        let entry = racks.entry(host.rack.as_str()).or_default();
        entry.0 += 1;
        if down.contains(&host.host_id.as_str()) {
            entry.1 += 1;
        }
    }
    if racks.len() < 2 {
        return None;
    }
    racks
        .iter()
        .find(|(rack, (hosts, lost))| !rack.is_empty() && *hosts >= 2 && hosts == lost)
        .map(|(rack, (hosts, _))| format!("rack {rack} down (all {hosts} hosts)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(racks: &[(&str, &str)]) -> FleetState {
        let mut fleet = FleetState::default();
        for (id, rack) in racks {
            fleet.hosts.insert(
                (*id).to_owned(),
                pb::Host {
                    host_id: (*id).to_owned(),
                    rack: (*rack).to_owned(),
                    ..Default::default()
                },
            );
        }
        fleet
    }

    #[test]
    fn a_mass_loss_is_more_than_the_share_or_a_whole_rack() {
        let f = fleet(&[
            ("a", "r1"),
            ("b", "r1"),
            ("c", "r2"),
            ("d", "r2"),
            ("e", "r3"),
        ]);
        assert_eq!(mass_loss(&f, &[]), None);
        // One host, or one of each of two racks: an ordinary loss.
        assert_eq!(mass_loss(&f, &["a"]), None);
        assert_eq!(mass_loss(&f, &["a", "c"]), None);
        // A whole rack of two.
        assert_eq!(
            mass_loss(&f, &["c", "d"]).as_deref(),
            Some("rack r2 down (all 2 hosts)")
        );
        // A rack of one host is just that host.
        assert_eq!(mass_loss(&f, &["e"]), None);
        // Three of five: more than half.
        assert_eq!(
            mass_loss(&f, &["a", "c", "e"]).as_deref(),
            Some("3 of 5 hosts down (more than 50%)")
        );
        // The share is a setting.
        let mut f = f;
        f.settings.mass_loss_percent = Some(30);
        assert!(mass_loss(&f, &["a", "c"]).is_some());
        // One rack only: losing it all is the share's to judge.
        let one = fleet(&[("a", "r1"), ("b", "r1"), ("c", "r1")]);
        assert_eq!(mass_loss(&one, &["a"]), None);
    }
}
