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
        if token.sha256.len() != 64 {
            return Err(StateError::InvalidArgument(
                "token: sha256 must be 64 hex digits".to_owned(),
            ));
        }
        let now_s = at / 1000;
        self.join_tokens.retain(|_, t| t.expires_unix > now_s);
        self.join_tokens.insert(token.sha256.clone(), token);
        Ok(ok(R::Done(true)))
    }
}
