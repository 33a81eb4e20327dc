//! The scheduler settings.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

/// Largest overprovision ratio accepted, percent.
pub const MAX_RATIO_PERCENT: u32 = 10_000;

impl FleetState {
    pub(super) fn set_fleet_settings(
        &mut self,
        c: &pb::SetFleetSettingsCommand,
    ) -> Result<pb::CommandResult, StateError> {
        // The ranges were checked by `check::command`.
        let settings = c.settings.unwrap_or_default();
        self.settings = settings;
        self.derived.view.set_settings(&settings);
        Ok(ok(R::Done(true)))
    }
}
