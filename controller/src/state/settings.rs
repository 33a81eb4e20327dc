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
        let settings = c.settings.unwrap_or_default();
        for (name, ratio) in [
            ("cpu_ratio_percent", settings.cpu_ratio_percent),
            ("ram_ratio_percent", settings.ram_ratio_percent),
            ("disk_ratio_percent", settings.disk_ratio_percent),
        ] {
            if let Some(r) = ratio.filter(|r| !(1..=MAX_RATIO_PERCENT).contains(r)) {
                return Err(StateError::InvalidArgument(format!(
                    "{name}: {r} is out of range; allowed 1..={MAX_RATIO_PERCENT} (percent)"
                )));
            }
        }
        if pb::PlacementStrategy::try_from(settings.default_strategy).is_err() {
            return Err(StateError::InvalidArgument(format!(
                "default_strategy: {} is not a strategy",
                settings.default_strategy
            )));
        }
        self.settings = settings;
        self.derived.view.set_settings(&settings);
        Ok(ok(R::Done(true)))
    }
}
