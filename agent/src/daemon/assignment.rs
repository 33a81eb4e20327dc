//! What the controllers want of this host: the zones assigned to it, as the watch
//! stream's `Zone` messages say, converted at the wire into the zone library's spec,
//! and kept in the data dir (`assignments.json`) with the last revision applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zonefleet_proto::pb;
use zonefleet_proto::spec::ZoneSpec;

/// The file in the data dir holding the applied revision and the desired set.
pub const ASSIGNMENTS_FILE: &str = "assignments.json";

/// Whether a zone should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Booted.
    Running,
    /// Installed, not running.
    Stopped,
}

/// One zone the controllers assigned to this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The zone's uuid.
    pub uuid: String,
    /// The controllers' generation of the zone (bumped by every change to it).
    pub generation: u64,
    /// Whether it should run.
    pub desired: Desired,
    /// The spec with the controllers' addresses in its NICs, or why the zone cannot
    /// be run here (reported as failed).
    pub spec: Result<ZoneSpec, String>,
}

/// What a `Zone` message asks of this host: a zone, or its removal (a zone whose
/// desired state is `deleted`).
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    /// Converge this zone.
    Zone(Box<Assignment>),
    /// Remove the zone with this uuid (at this generation of the zone).
    Removed(String, u64),
}

/// Errors of an assignment message that names no zone at all.
#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    /// The message has no spec, or its spec no valid uuid.
    #[error("an assigned zone without a valid uuid: {0}")]
    NoUuid(String),
    /// The persisted assignments could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Converts a watch `Zone` into what this host should do with it.
pub fn from_pb(zone: pb::Zone) -> Result<Wanted, AssignmentError> {
    let pb_spec = zone
        .spec
        .clone()
        .ok_or_else(|| AssignmentError::NoUuid("the zone has no spec".to_owned()))?;
    let uuid = pb_spec
        .uuid
        .clone()
        .filter(|u| uuid::Uuid::parse_str(u).is_ok())
        .ok_or_else(|| {
            AssignmentError::NoUuid(format!("spec.uuid is {:?}", pb_spec.uuid.clone()))
        })?;
    let desired = match pb::ZoneState::try_from(zone.desired_state) {
        Ok(pb::ZoneState::Deleted) => return Ok(Wanted::Removed(uuid, zone.generation)),
        Ok(pb::ZoneState::Running) => Ok(Desired::Running),
        Ok(pb::ZoneState::Installed) => Ok(Desired::Stopped),
        other => Err(format!(
            "desired_state {other:?} is not running, installed or deleted"
        )),
    };
    let spec = ZoneSpec::try_from(pb_spec)
        .map_err(|e| format!("the assigned spec cannot be read: {e}"))
        .and_then(resolved)
        .map(|spec| spec.with_defaults());
    let (desired, spec) = match desired {
        Ok(d) => (d, spec),
        Err(why) => (Desired::Stopped, Err(why)),
    };
    Ok(Wanted::Zone(Box::new(Assignment {
        uuid,
        generation: zone.generation,
        desired,
        spec,
    })))
}

/// The spec, once every NIC that named a network has been spelled out by the
/// controllers (address with prefix, gateway, MTU, VLAN: `FleetState::for_agent`); a
/// NIC still naming one has no address yet, and the zone cannot be made.
fn resolved(spec: ZoneSpec) -> Result<ZoneSpec, String> {
    if let Some((i, network)) = spec
        .nics
        .iter()
        .enumerate()
        .find_map(|(i, nic)| nic.network.as_ref().map(|n| (i, n)))
    {
        return Err(format!(
            "nics[{i}]: network {network:?} gave this NIC no address (the controllers send \
             each NIC's address with the zone)"
        ));
    }
    Ok(spec)
}

/// The desired set as of a revision, as kept in the data dir.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    /// The last revision applied.
    pub revision: u64,
    /// The zones assigned, by uuid.
    pub zones: BTreeMap<String, Assignment>,
}

impl Assignments {
    /// Reads `assignments.json` from `data_dir` (empty at revision 0 when missing).
    pub fn load(data_dir: &Path) -> Result<Assignments, AssignmentError> {
        let path = data_dir.join(ASSIGNMENTS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Assignments::default()),
            Err(e) => {
                return Err(AssignmentError::File {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| AssignmentError::File {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes it durably (the revision must survive a crash only after what it
    /// names was applied).
    pub fn store(&self, data_dir: &Path) -> Result<(), AssignmentError> {
        let path = data_dir.join(ASSIGNMENTS_FILE);
        let bytes = serde_json::to_vec(self).expect("assignments serialize");
        crate::files::write_atomic(&path, &bytes).map_err(|e| AssignmentError::File {
            path,
            reason: e.source.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(json: &str, addresses: &[&str], desired: pb::ZoneState) -> pb::Zone {
        let spec = ZoneSpec::from_json(json).unwrap();
        pb::Zone {
            spec: Some(spec.into()),
            generation: 3,
            host_id: String::new(),
            desired_state: desired as i32,
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    const UUID: &str = "6f1c2b8e-4d3a-4c1b-9e2f-0a1b2c3d4e5f";

    #[test]
    fn zones_convert_and_a_nic_still_naming_a_network_fails_the_zone() {
        // As the controllers send it: the network NIC spelled out (for_agent).
        let json = format!(
            r#"{{"uuid": "{UUID}", "image": "busybox", "nics": [{{"ip": "10.0.0.7/24", "gateway": "10.0.0.1"}}, {{"ip": "10.1.0.5/24"}}]}}"#
        );
        let Wanted::Zone(a) = from_pb(zone(&json, &["10.0.0.7"], pb::ZoneState::Running)).unwrap()
        else {
            panic!("a zone")
        };
        assert_eq!(
            (a.uuid.as_str(), a.generation, a.desired),
            (UUID, 3, Desired::Running)
        );
        let spec = a.spec.unwrap();
        assert_eq!(spec.nics[0].ip.unwrap().to_string(), "10.0.0.7/24");
        assert_eq!(spec.nics[1].ip.unwrap().to_string(), "10.1.0.5/24");
        assert!(spec.max_physical_memory.is_some(), "defaults applied");

        // A NIC the controllers could not give an address: the zone fails, naming it.
        let unresolved = format!(
            r#"{{"uuid": "{UUID}", "image": "busybox", "nics": [{{"ip": "10.1.0.5/24"}}, {{"network": "lan"}}]}}"#
        );
        let Wanted::Zone(a) = from_pb(zone(&unresolved, &[], pb::ZoneState::Installed)).unwrap()
        else {
            panic!("a zone")
        };
        assert_eq!(a.desired, Desired::Stopped);
        let err = a.spec.unwrap_err();
        assert!(
            err.contains("nics[1]") && err.contains("no address"),
            "{err}"
        );

        let removed = from_pb(zone(&json, &[], pb::ZoneState::Deleted)).unwrap();
        assert_eq!(removed, Wanted::Removed(UUID.to_owned(), 3));
        let mut nameless = zone(&json, &[], pb::ZoneState::Running);
        nameless.spec.as_mut().unwrap().uuid = None;
        assert!(from_pb(nameless).is_err());
    }

    #[test]
    fn assignments_persist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Assignments::load(dir.path()).unwrap().revision, 0);
        let mut a = Assignments {
            revision: 42,
            ..Default::default()
        };
        let json = format!(r#"{{"uuid": "{UUID}", "image": "busybox"}}"#);
        if let Wanted::Zone(z) = from_pb(zone(&json, &[], pb::ZoneState::Running)).unwrap() {
            a.zones.insert(z.uuid.clone(), *z);
        }
        a.store(dir.path()).unwrap();
        assert_eq!(Assignments::load(dir.path()).unwrap(), a);
    }
}
