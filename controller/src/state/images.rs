//! Image manifests.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

impl FleetState {
    pub(super) fn put_image(
        &mut self,
        c: &pb::PutImageCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let image = c
            .image
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("image is missing".to_owned()))?;
        self.images.insert(image.uuid.clone(), image.clone());
        Ok(ok(R::Image(image)))
    }
}
