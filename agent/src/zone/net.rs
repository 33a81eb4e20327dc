//! The zone verbs' side of zone networking: the NIC plan of a boot, the
//! host-wide address check, and the teardown that halt and delete run (zsched
//! removes a zone's links and rules when init exits; this covers a zsched
//! that died first).

use zonefleet_proto::spec::ZoneSpec;

use super::paths::ZonePaths;
use super::record::ZoneRecord;
use super::{Result, ZoneError, ZoneHost};
use crate::net::{self, NetPlan};
use crate::zsched::plan::BootPlan;

impl ZoneHost {
    /// The network plan of `spec` (zone `uuid`) on this host's bridge.
    pub fn net_plan(&self, uuid: &str, spec: &ZoneSpec) -> Result<Option<NetPlan>> {
        Ok(net::plan::resolve(spec, uuid, &self.bridge.name)?)
    }

    /// Refuses `spec` (zone `uuid`) if one of its addresses is already used by
    /// another zone on this host.
    pub fn check_addresses(&self, uuid: &str, spec: &ZoneSpec) -> Result<()> {
        let mine: Vec<_> = spec.nics.iter().map(|n| n.ip.map(|ip| ip.addr())).collect();
        if mine.iter().all(Option::is_none) {
            return Ok(());
        }
        for other in self.zone_uuids()? {
            if other == uuid {
                continue;
            }
            let Ok(record) = ZoneRecord::load(&self.paths(&other)) else {
                continue;
            };
            for theirs in record.spec.nics.iter().filter_map(|n| n.ip) {
                if let Some(nic) = mine.iter().position(|m| *m == Some(theirs.addr())) {
                    return Err(ZoneError::AddressInUse {
                        nic,
                        ip: theirs.addr().to_string(),
                        uuid: other,
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes the host links and rules of zone `uuid` as it last booted (its
    /// `boot.json`), or as its spec says. Idempotent.
    pub(crate) fn teardown_network(&self, paths: &ZonePaths) -> Result<()> {
        let booted = BootPlan::load(&paths.plan()).ok().and_then(|p| p.net);
        let plan = match booted {
            Some(plan) => Some(plan),
            None => match ZoneRecord::load(paths) {
                Ok(record) => self.net_plan(&record.uuid(), &record.spec).unwrap_or(None),
                Err(_) => None,
            },
        };
        if let Some(plan) = plan {
            net::detach(&plan)?;
        }
        Ok(())
    }
}
