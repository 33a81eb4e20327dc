//! Join tokens (stored hashed).

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

impl FleetState {
    pub(super) fn create_join_token(
        &mut self,
        c: &pb::CreateJoinTokenCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        let token = c
            .token
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("token is missing".to_owned()))?;
        // Its digest, rack and labels were checked by `check::command`.
        let now_s = at / 1000;
        self.join_tokens.retain(|_, t| t.expires_unix > now_s);
        self.join_tokens.insert(token.sha256.clone(), token);
        Ok(ok(R::Done(true)))
    }
}
