//! The converge engine: applies assignment events to the desired set and makes this
//! host's zones match it with the zone library — create (configure + install), boot,
//! live limit updates, halt, delete — then says what it observed.
//!
//! It is synchronous (the zone library blocks: a halt waits for its grace period) and
//! runs on a thread of its own; the daemon feeds it events and resync ticks.
//!
//! Rules:
//! - idempotent: a zone whose local spec and state already match is not touched (no
//!   write, no restart), so applying the same assignment twice does nothing;
//! - the revision is persisted (with the desired set) only after the event was
//!   applied, so a crash replays it; an event at or below the applied revision is
//!   ignored (a snapshot at the same revision is applied again, harmlessly);
//! - only zones the controllers assigned are ever touched: a zone made by hand with
//!   `zonefleet-agent zone create` on the same data dir is left alone;
//! - at start ([`Engine::start`]) running zones are adopted as they are (same init,
//!   nothing restarted); a zone that should run but is not (the host rebooted) is
//!   booted again only when its spec has `autoboot`;
//! - a zone whose init exits on its own is reported (`installed` and its exit status),
//!   not restarted: the next change of its assignment converges it again;
//! - a generation change that changes neither spec nor desired state of a running
//!   zone is a reboot (the controllers' `reboot`);
//! - a zone whose image is not on the host waits (reported `configured`, "fetching
//!   image …") while the fetcher ([`super::fetch`]) downloads it — one download for
//!   every zone of the image — and is converged when it is imported
//!   ([`Engine::image_fetched`]); without a fetcher (tests, a standalone engine) it
//!   fails, naming the image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use zonefleet_proto::pb;
use zonefleet_proto::spec::{ZonePatch, ZoneSpec, FIELDS, IMMUTABLE};

use super::assignment::{self, Assignment, AssignmentError, Assignments, Desired, Wanted};
use crate::image::ImageError;
use crate::zone::{ZoneError, ZoneHost, ZoneState, ZoneStatus};

/// Errors of the engine itself (a zone's own failure is reported, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// The persisted assignments could not be read or written.
    #[error(transparent)]
    Assignments(#[from] AssignmentError),
    /// The zone library could not list the host's zones.
    #[error(transparent)]
    Zone(#[from] ZoneError),
}

/// What the engine last said of a zone (to report only transitions).
#[derive(Debug, Clone, PartialEq)]
struct Said {
    state: pb::ZoneState,
    generation: u64,
    message: String,
    exit: Option<i32>,
}

/// The converge engine of one host.
pub struct Engine {
    host: ZoneHost,
    data_dir: PathBuf,
    assignments: Assignments,
    /// The last error converging each zone, reported (as failed) until the zone
    /// converges.
    errors: BTreeMap<String, String>,
    said: BTreeMap<String, Said>,
    pending: Vec<pb::ObservedZone>,
    /// Where images missing here are asked for (image references).
    fetcher: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Zones waiting for their image: zone uuid → image reference.
    waiting: BTreeMap<String, String>,
    /// `reschedule` zones that should run but wait for the lease (fenced, or held
    /// before their boot).
    fenced: BTreeSet<String>,
}

/// What a zone its zsched fenced says.
const FENCED: &str = "fenced: the host's lease ran out; boots again once the controllers renew it";
/// What a zone held before its boot says (no lease yet, or one granted after a loss
/// whose revision the engine has not applied).
const HELD: &str = "waiting for the host's lease before booting (docs/host-loss.md)";

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("revision", &self.assignments.revision)
            .field("zones", &self.assignments.zones.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `host`, with the desired set persisted in its data dir.
    pub fn open(host: ZoneHost) -> Result<Engine, ConvergeError> {
        let data_dir = host.data_dir().to_owned();
        let assignments = Assignments::load(&data_dir)?;
        Ok(Engine {
            host,
            data_dir,
            assignments,
            errors: BTreeMap::new(),
            said: BTreeMap::new(),
            pending: Vec::new(),
            fetcher: None,
            waiting: BTreeMap::new(),
            fenced: BTreeSet::new(),
        })
    }

    /// Whether `a` may be booted now: not a `reschedule` zone, fencing off, or the
    /// lease live and its revision applied.
    fn may_boot(&self, a: &Assignment) -> bool {
        let (Some(lease), Ok(spec)) = (&self.host.fence, &a.spec) else {
            return true;
        };
        if spec.on_host_lost != Some(zonefleet_proto::spec::OnHostLost::Reschedule) {
            return true;
        }
        crate::fence::LeaseRecord::load(lease)
            .is_some_and(|l| l.live() && self.assignments.revision >= l.assignments_revision)
    }

    /// Boots the fenced zones that may run again (the lease renewed, its revision
    /// applied). Called after every command the engine takes.
    pub fn resume_fenced(&mut self) {
        if self.fenced.is_empty() {
            return;
        }
        let ready: Vec<Assignment> = self
            .fenced
            .iter()
            .filter_map(|u| self.assignments.zones.get(u))
            .filter(|a| self.may_boot(a))
            .cloned()
            .collect();
        self.fenced
            .retain(|u| self.assignments.zones.contains_key(u));
        for a in ready {
            tracing::info!(zone = %a.uuid, "the host's lease holds again: booting the fenced zone");
            self.fenced.remove(&a.uuid);
            self.converge(&a, false);
            self.observe(&a.uuid);
        }
    }

    /// Asks `fetcher` for the images zones need and this host lacks (instead of
    /// failing those zones).
    pub fn with_fetcher(mut self, fetcher: tokio::sync::mpsc::UnboundedSender<String>) -> Engine {
        self.fetcher = Some(fetcher);
        self
    }

    /// Image `image` was fetched (or not): the zones waiting for it are converged
    /// (or fail, naming why).
    pub fn image_fetched(&mut self, image: &str, result: Result<(), String>) {
        let zones: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, i)| *i == image)
            .map(|(z, _)| z.clone())
            .collect();
        for uuid in zones {
            self.waiting.remove(&uuid);
            match &result {
                Ok(()) => {
                    if let Some(a) = self.assignments.zones.get(&uuid).cloned() {
                        self.converge(&a, false);
                    }
                }
                Err(why) => {
                    self.errors
                        .insert(uuid.clone(), format!("fetching image {image}: {why}"));
                }
            }
            self.observe(&uuid);
        }
    }

    /// Whether zone `a` must wait for its image (asked for now): it is not on the
    /// host and neither is its image.
    fn wait_for_image(&mut self, a: &Assignment) -> bool {
        let (Some(fetcher), Ok(spec)) = (&self.fetcher, &a.spec) else {
            return false;
        };
        if !matches!(self.host.get(&a.uuid), Err(ZoneError::NotFound(_))) {
            return false;
        }
        let image = spec.image.to_string();
        if !matches!(self.host.images.get(&image), Err(ImageError::NotFound(_))) {
            return false;
        }
        let asked = self.waiting.values().any(|i| *i == image);
        if !asked {
            tracing::info!(zone = %a.uuid, %image, "image not on this host: fetching it");
            if fetcher.send(image.clone()).is_err() {
                return false;
            }
        }
        self.waiting.insert(a.uuid.clone(), image);
        true
    }

    /// The last revision applied (what a watch resumes from).
    pub fn revision(&self) -> u64 {
        self.assignments.revision
    }

    /// The zones assigned now.
    pub fn assignments(&self) -> &BTreeMap<String, Assignment> {
        &self.assignments.zones
    }

    /// The zone library.
    pub fn host(&self) -> &ZoneHost {
        &self.host
    }

    /// Adopts the host's zones at start: running zones are left running; a zone
    /// that should run and is not is booted only when it has `autoboot` (the host
    /// rebooted); a zone missing here is converged in full. Everything is reported.
    pub fn start(&mut self) {
        let zones: Vec<Assignment> = self.assignments.zones.values().cloned().collect();
        for a in zones {
            let local = match self.host.get(&a.uuid) {
                Ok(status) => Some(status),
                Err(ZoneError::NotFound(_)) => None,
                Err(e) => {
                    self.errors.insert(a.uuid.clone(), e.to_string());
                    self.observe(&a.uuid);
                    continue;
                }
            };
            // A fenced zone did not stop with the host: it resumes with the lease.
            let adopt_only = local.as_ref().is_some_and(|s| {
                a.desired == Desired::Running
                    && s.state == ZoneState::Installed
                    && s.record.spec.autoboot != Some(true)
                    && !s.last_exit.as_ref().is_some_and(|e| e.fenced)
            });
            if adopt_only {
                tracing::info!(zone = %a.uuid, "not running after the host restarted and has no autoboot: left installed");
            } else {
                self.converge(&a, false);
            }
            self.observe(&a.uuid);
        }
    }

    /// Applies one event of the watch stream; returns whether it was applied (false:
    /// at or below the applied revision). The revision is stored after applying.
    pub fn apply(&mut self, event: pb::AssignmentEvent) -> Result<bool, ConvergeError> {
        let revision = event.revision;
        let Some(kind) = event.event else {
            tracing::warn!(revision, "an assignment event without content: ignored");
            return Ok(false);
        };
        let is_snapshot = matches!(kind, pb::assignment_event::Event::Snapshot(_));
        if revision < self.assignments.revision
            || (revision == self.assignments.revision && !is_snapshot)
        {
            tracing::debug!(
                revision,
                applied = self.assignments.revision,
                "event at or below the applied revision: ignored"
            );
            return Ok(false);
        }
        match kind {
            pb::assignment_event::Event::Snapshot(snapshot) => {
                let mut wanted = BTreeMap::new();
                for zone in snapshot.zones {
                    match assignment::from_pb(zone) {
                        Ok(Wanted::Zone(a)) => {
                            wanted.insert(a.uuid.clone(), *a);
                        }
                        Ok(Wanted::Removed(..)) => {}
                        Err(e) => tracing::warn!(error = %e, "snapshot zone ignored"),
                    }
                }
                let gone: Vec<String> = self
                    .assignments
                    .zones
                    .keys()
                    .filter(|u| !wanted.contains_key(*u))
                    .cloned()
                    .collect();
                for uuid in gone {
                    self.remove(&uuid, None);
                }
                for a in wanted.into_values() {
                    self.upsert(a);
                }
            }
            pb::assignment_event::Event::Upsert(zone) => match assignment::from_pb(zone) {
                Ok(Wanted::Zone(a)) => self.upsert(*a),
                Ok(Wanted::Removed(uuid, generation)) => self.remove(&uuid, Some(generation)),
                Err(e) => tracing::warn!(revision, error = %e, "assignment ignored"),
            },
            pb::assignment_event::Event::Removed(uuid) => self.remove(&uuid, None),
        }
        self.assignments.revision = revision;
        self.assignments.store(&self.data_dir)?;
        Ok(true)
    }

    /// Looks at every assigned zone again and records what changed (an init that
    /// exited, a zone deleted by hand…). Changes nothing on the host.
    pub fn resync(&mut self) {
        let uuids: Vec<String> = self.assignments.zones.keys().cloned().collect();
        for uuid in uuids {
            self.observe(&uuid);
        }
    }

    /// The observed states that changed since the last call, oldest first.
    pub fn take_reports(&mut self) -> Vec<pb::ObservedZone> {
        std::mem::take(&mut self.pending)
    }

    /// What the assigned zones hold of the host: memory (MiB), CPU (percent of one
    /// CPU; an uncapped zone counts as 0) and disk (GiB).
    pub fn allocated(&self) -> (u64, u32, u64) {
        let mut out = (0u64, 0u32, 0u64);
        for a in self.assignments.zones.values() {
            if let Ok(spec) = &a.spec {
                out.0 += spec.max_physical_memory.unwrap_or(0);
                out.1 += spec.cpu_cap.unwrap_or(0);
                out.2 += u64::from(spec.quota.unwrap_or(0));
            }
        }
        out
    }

    fn upsert(&mut self, a: Assignment) {
        let previous = self.assignments.zones.get(&a.uuid);
        let reboot = previous.is_some_and(|p| {
            p.generation < a.generation
                && p.spec == a.spec
                && p.desired == Desired::Running
                && a.desired == Desired::Running
        });
        self.assignments.zones.insert(a.uuid.clone(), a.clone());
        self.converge(&a, reboot);
        self.observe(&a.uuid);
    }

    /// Deletes an assigned zone and reports it deleted, at `generation` when the
    /// removal carried one (a zone whose desired state became `deleted`), else at the
    /// generation last assigned.
    fn remove(&mut self, uuid: &str, generation: Option<u64>) {
        let Some(assigned) = self.assignments.zones.remove(uuid) else {
            return;
        };
        let generation = generation.unwrap_or(assigned.generation);
        self.errors.remove(uuid);
        self.waiting.remove(uuid);
        self.fenced.remove(uuid);
        match self.host.delete(uuid) {
            Ok(_) | Err(ZoneError::NotFound(_)) => {
                tracing::info!(zone = %uuid, "deleted");
                self.say(
                    uuid,
                    Said {
                        state: pb::ZoneState::Deleted,
                        generation,
                        message: String::new(),
                        exit: None,
                    },
                );
                self.said.remove(uuid);
            }
            Err(e) => {
                tracing::warn!(zone = %uuid, error = %e, "delete failed");
                self.say(
                    uuid,
                    Said {
                        state: pb::ZoneState::Failed,
                        generation,
                        message: format!("delete failed: {e}"),
                        exit: None,
                    },
                );
            }
        }
    }

    /// Makes zone `a` match its assignment; remembers the error if it fails.
    fn converge(&mut self, a: &Assignment, reboot: bool) {
        if self.waiting.contains_key(&a.uuid) || self.wait_for_image(a) {
            self.errors.remove(&a.uuid);
            return;
        }
        match self.converge_zone(a, reboot) {
            Ok(()) => {
                self.errors.remove(&a.uuid);
            }
            Err(message) => {
                tracing::warn!(zone = %a.uuid, %message, "converge failed");
                self.errors.insert(a.uuid.clone(), message);
            }
        }
    }

    fn converge_zone(&mut self, a: &Assignment, reboot: bool) -> Result<(), String> {
        let spec = a.spec.as_ref().map_err(Clone::clone)?;
        let mut status = match self.host.get(&a.uuid) {
            Ok(status) => status,
            Err(ZoneError::NotFound(_)) => self.create(spec)?,
            Err(e) => return Err(e.to_string()),
        };
        if let Some(patch) = patch_between(&status.record.spec, spec)? {
            tracing::info!(zone = %a.uuid, properties = ?patch.properties().collect::<Vec<_>>(), "updating");
            status = self
                .host
                .update(&a.uuid, &patch)
                .map_err(|e| format!("update failed: {e}"))?;
        }
        let verb = |r: Result<ZoneStatus, ZoneError>, what: &str| {
            r.map(|_| ()).map_err(|e| format!("{what} failed: {e}"))
        };
        match (a.desired, status.state) {
            (Desired::Running, ZoneState::Installed) if !self.may_boot(a) => {
                tracing::info!(zone = %a.uuid, "not booting: the host's lease does not hold (fenced)");
                self.fenced.insert(a.uuid.clone());
                Ok(())
            }
            (Desired::Running, ZoneState::Installed) => {
                tracing::info!(zone = %a.uuid, "booting");
                self.fenced.remove(&a.uuid);
                verb(self.host.boot(&a.uuid), "boot")
            }
            (Desired::Running, ZoneState::Running) if reboot => {
                tracing::info!(zone = %a.uuid, "rebooting");
                verb(self.host.reboot(&a.uuid), "reboot")
            }
            (Desired::Stopped, ZoneState::Running | ZoneState::ShuttingDown) => {
                tracing::info!(zone = %a.uuid, "halting");
                verb(self.host.halt(&a.uuid), "halt")
            }
            (_, ZoneState::Configured | ZoneState::Failed) => Err(status
                .message
                .clone()
                .unwrap_or_else(|| format!("the zone is {} on this host", status.state))),
            _ => Ok(()),
        }
    }

    /// Creates (configures and installs) the zone, never booting it here: boot is
    /// the caller's, so a zone wanted stopped never runs.
    fn create(&self, spec: &ZoneSpec) -> Result<ZoneStatus, String> {
        if let Err(e) = self.host.images.get(&spec.image.to_string()) {
            return Err(match e {
                ImageError::NotFound(_) => format!(
                    "image {} is not on this host and this engine fetches no images",
                    spec.image
                ),
                other => format!("image {}: {other}", spec.image),
            });
        }
        let mut local = spec.clone();
        local.autoboot = Some(false);
        tracing::info!(zone = ?spec.uuid, image = %spec.image, "creating");
        let status = self
            .host
            .create(local)
            .map_err(|e| format!("create failed: {e}"))?;
        if spec.autoboot == Some(true) {
            let patch = ZonePatch::from_json(r#"{"autoboot": true}"#).expect("a valid patch");
            return self
                .host
                .update(&status.uuid, &patch)
                .map_err(|e| format!("create failed: {e}"));
        }
        Ok(status)
    }

    /// Observes zone `uuid` and records a report if it changed.
    fn observe(&mut self, uuid: &str) {
        let Some(a) = self.assignments.zones.get(uuid) else {
            return;
        };
        let generation = a.generation;
        if let Some(image) = self.waiting.get(uuid) {
            let said = Said {
                state: pb::ZoneState::Configured,
                generation,
                message: format!("fetching image {image} from the controllers"),
                exit: None,
            };
            self.say(uuid, said);
            return;
        }
        let said = match (self.errors.get(uuid), self.host.get(uuid)) {
            (Some(message), _) => Said {
                state: pb::ZoneState::Failed,
                generation,
                message: message.clone(),
                exit: None,
            },
            (None, Ok(status)) => {
                let waits = status.state == ZoneState::Installed && a.desired == Desired::Running;
                let fenced = waits && status.last_exit.as_ref().is_some_and(|e| e.fenced);
                let held = waits && !fenced && self.fenced.contains(uuid);
                if fenced {
                    self.fenced.insert(uuid.to_owned());
                }
                Said {
                    state: pb_state(status.state),
                    generation,
                    message: if fenced {
                        FENCED.to_owned()
                    } else if held {
                        HELD.to_owned()
                    } else {
                        status.message.clone().unwrap_or_default()
                    },
                    exit: status.last_exit.as_ref().map(|e| e.status),
                }
            }
            (None, Err(ZoneError::NotFound(_))) => Said {
                state: pb::ZoneState::Deleted,
                generation,
                message: "the zone is not on this host".to_owned(),
                exit: None,
            },
            (None, Err(e)) => Said {
                state: pb::ZoneState::Failed,
                generation,
                message: e.to_string(),
                exit: None,
            },
        };
        self.say(uuid, said);
    }

    fn say(&mut self, uuid: &str, said: Said) {
        if self.said.get(uuid) == Some(&said) {
            return;
        }
        self.pending.push(pb::ObservedZone {
            uuid: uuid.to_owned(),
            generation: said.generation,
            state: said.state as i32,
            message: said.message.clone(),
            init_exit_status: said.exit,
        });
        self.said.insert(uuid.to_owned(), said);
    }
}

/// The zone library's state as the wire names it.
pub(crate) fn pb_state(state: ZoneState) -> pb::ZoneState {
    match state {
        ZoneState::Configured => pb::ZoneState::Configured,
        ZoneState::Installed => pb::ZoneState::Installed,
        ZoneState::Ready => pb::ZoneState::Ready,
        ZoneState::Running => pb::ZoneState::Running,
        ZoneState::ShuttingDown => pb::ZoneState::ShuttingDown,
        ZoneState::Failed => pb::ZoneState::Failed,
        ZoneState::Deleted => pb::ZoneState::Deleted,
    }
}

/// The patch that turns `local` into `wanted` (both with defaults), `None` when they
/// are the same; an error naming the property when an immutable one differs.
fn patch_between(local: &ZoneSpec, wanted: &ZoneSpec) -> Result<Option<ZonePatch>, String> {
    let as_map = |spec: &ZoneSpec| match serde_json::to_value(spec.clone().with_defaults()) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("a spec serializes to an object"),
    };
    let (before, after) = (as_map(local), as_map(wanted));
    let mut patch = serde_json::Map::new();
    for field in FIELDS {
        let (now, want) = (before.get(*field), after.get(*field));
        if now == want {
            continue;
        }
        if let Some((_, why)) = IMMUTABLE.iter().find(|(f, _)| f == field) {
            return Err(format!(
                "{field} changed, which cannot change on an existing zone ({why})"
            ));
        }
        let value = match (*field, now, want) {
            // Maps are merged key by key by a patch: a removed key is a `null`.
            ("customer_metadata" | "tags", Some(Value::Object(old)), Some(Value::Object(new))) => {
                let mut merged = new.clone();
                for key in old.keys().filter(|k| !new.contains_key(*k)) {
                    merged.insert(key.clone(), Value::Null);
                }
                Value::Object(merged)
            }
            _ => want.cloned().unwrap_or(Value::Null),
        };
        patch.insert((*field).to_owned(), value);
    }
    if patch.is_empty() {
        return Ok(None);
    }
    ZonePatch::from_json(&Value::Object(patch).to_string())
        .map(Some)
        .map_err(|e| format!("the assigned change cannot be applied: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_between_two_specs_names_what_changed() {
        let a = ZoneSpec::from_json(r#"{"uuid": "6f1c2b8e-4d3a-4c1b-9e2f-0a1b2c3d4e5f", "image": "busybox", "cpu_cap": 50, "tags": {"a": "1"}}"#).unwrap().with_defaults();
        assert!(patch_between(&a, &a).unwrap().is_none());
        let mut b = a.clone();
        b.max_physical_memory = Some(200);
        b.cpu_cap = None;
        b.tags.clear();
        let patch = patch_between(&a, &b).unwrap().unwrap();
        let mut props: Vec<&str> = patch.properties().collect();
        props.sort();
        assert_eq!(props, ["cpu_cap", "max_physical_memory", "tags"]);
        let applied = patch.apply(&a).unwrap().with_defaults();
        assert_eq!(applied.max_physical_memory, Some(200));
        assert_eq!(applied.cpu_cap, None);
        assert!(applied.tags.is_empty());
        // A map that changes keys loses the old ones.
        let mut d = a.clone();
        d.tags = [("b".to_owned(), "2".to_owned())].into();
        let applied = patch_between(&a, &d).unwrap().unwrap().apply(&a).unwrap();
        assert_eq!(applied.tags, d.tags);
        let mut c = a.clone();
        c.quota = Some(99);
        assert!(patch_between(&a, &c).unwrap_err().contains("quota"));
    }
}
