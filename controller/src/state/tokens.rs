//! Join tokens (stored hashed) and enrollment: a host consumes a token once, before
//! its expiry, and the token's rack and labels become the host's inventory.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

/// What a refused join token is answered with: the same words whether it was unknown,
/// used or expired, so a caller learns nothing about which tokens exist.
pub const TOKEN_REFUSED: &str = "join token refused: unknown, used or expired";

/// The id operators see of a token: the first 16 hex digits of its sha256.
pub fn token_id(sha256: &str) -> &str {
    &sha256[..sha256.len().min(16)]
}

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

    /// Consumes the token for the host, judged at the command's own time `at` (so every
    /// replica decides alike), and records the token's inventory for the host.
    pub(super) fn enroll_host(
        &mut self,
        c: &pb::EnrollHostCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        let refused = || StateError::Refused(TOKEN_REFUSED.to_owned());
        let token = self.join_tokens.get(&c.token_sha256).ok_or_else(refused)?;
        // `expires_unix` is in seconds; a token is good up to (not at) its expiry.
        if token.used || at >= token.expires_unix.saturating_mul(1000) {
            return Err(refused());
        }
        // A token enrolls a known host again only once its lease has lapsed (it was
        // off while its certificate expired): never a live one, whose identity a token
        // holder would otherwise take over. The token is kept for a later try.
        if self
            .hosts
            .get(&c.host_id)
            .is_some_and(|h| h.status == pb::HostStatus::Ready as i32)
        {
            return Err(StateError::FailedPrecondition(format!(
                "host {} is enrolled and ready (its lease holds): a join token enrolls a \
                 known host again only once its lease has lapsed",
                c.host_id
            )));
        }
        let token = self
            .join_tokens
            .get_mut(&c.token_sha256)
            .ok_or_else(refused)?;
        token.used = true;
        token.used_by_host = c.host_id.clone();
        token.used_at_unix_ms = at;
        let token = token.clone();
        match self.hosts.get_mut(&c.host_id) {
            // Enrolling again (its certificate lapsed while it was off): the new token is
            // the operators' latest word on where it stands.
            Some(host) => {
                if !token.rack.is_empty() {
                    host.rack = token.rack.clone();
                }
                host.labels.extend(token.labels.clone());
                let host = host.clone();
                self.derived.view.upsert_host(&host);
            }
            None => {
                self.enrollments.insert(
                    c.host_id.clone(),
                    pb::Enrollment {
                        host_id: c.host_id.clone(),
                        rack: token.rack.clone(),
                        labels: token.labels.clone(),
                        enrolled_at_unix_ms: at,
                    },
                );
            }
        }
        Ok(ok(R::Done(true)))
    }

    pub(super) fn revoke_join_token(
        &mut self,
        c: &pb::RevokeJoinTokenCommand,
    ) -> Result<pb::CommandResult, StateError> {
        self.join_tokens.remove(&c.sha256).ok_or_else(|| {
            StateError::NotFound(format!("join token {} does not exist", token_id(&c.sha256)))
        })?;
        Ok(ok(R::Done(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::TOKEN_REFUSED;

    const HOST: &str = "6f1c1a52-3f57-4d4b-9a53-2a5a4c1c0d11";

    fn token(sha: char, expires_unix: i64) -> Kind {
        Kind::CreateJoinToken(pb::CreateJoinTokenCommand {
            token: Some(pb::JoinToken {
                sha256: sha.to_string().repeat(64),
                rack: "r1".to_owned(),
                labels: [("ssd".to_owned(), "true".to_owned())].into(),
                expires_unix,
                ..Default::default()
            }),
        })
    }

    fn enroll(sha: char, host: &str, at: i64) -> pb::FleetCommand {
        pb::FleetCommand {
            at_unix_ms: at,
            kind: Some(Kind::EnrollHost(pb::EnrollHostCommand {
                token_sha256: sha.to_string().repeat(64),
                host_id: host.to_owned(),
            })),
        }
    }

    fn refused(fleet: &mut FleetState, command: &pb::FleetCommand) {
        let before = fleet.to_snapshot();
        let e = error_of(fleet.apply(command));
        assert_eq!(e.code, tonic::Code::PermissionDenied as i32);
        assert_eq!(e.message, TOKEN_REFUSED);
        assert!(fleet.to_snapshot() == before, "a refusal changed the state");
    }

    #[test]
    fn a_token_enrolls_once_before_its_expiry_and_gives_its_inventory() {
        let mut fleet = FleetState::default();
        fleet.apply(&cmd(token('a', 100)));
        fleet.apply(&cmd(token('b', 100)));
        // Unknown.
        refused(&mut fleet, &enroll('c', HOST, 1_000));
        // Expired by the command's own clock (100 s = 100 000 ms).
        refused(&mut fleet, &enroll('b', HOST, 100_000));
        assert!(matches!(
            fleet.apply(&enroll('a', HOST, 99_999)).result,
            Some(R::Done(true))
        ));
        let e = &fleet.enrollments[HOST];
        assert_eq!(e.rack, "r1");
        assert_eq!(e.labels["ssd"], "true");
        let used = &fleet.join_tokens[&"a".repeat(64)];
        assert!(used.used);
        assert_eq!(used.used_by_host, HOST);
        // Used.
        refused(&mut fleet, &enroll('a', HOST, 2_000));

        // Registering takes the enrollment's inventory, whatever the command says.
        let mut h = crate::testing::host(HOST, "r-claimed", 1024);
        h.labels.insert("gpu".to_owned(), "yes".to_owned());
        let host = match fleet
            .apply(&cmd(Kind::RegisterHost(pb::RegisterHostCommand {
                host: Some(h),
            })))
            .result
        {
            Some(R::Host(host)) => host,
            other => panic!("{other:?}"),
        };
        assert_eq!(host.rack, "r1");
        assert_eq!(host.labels, [("ssd".to_owned(), "true".to_owned())].into());
        assert!(fleet.enrollments.is_empty());
        assert_eq!(
            FleetState::from_snapshot(&fleet.to_snapshot()),
            fleet,
            "enrollments and used tokens survive a snapshot"
        );
    }

    #[test]
    fn a_token_cannot_take_over_a_live_host_and_is_kept() {
        let mut fleet = FleetState::default();
        fleet.apply(&cmd(token('a', 100)));
        fleet.apply(&cmd(Kind::RegisterHost(pb::RegisterHostCommand {
            host: Some(crate::testing::host(HOST, "r1", 1024)),
        })));
        let before = fleet.to_snapshot();
        let e = error_of(fleet.apply(&enroll('a', HOST, 1_000)));
        assert_eq!(e.code, tonic::Code::FailedPrecondition as i32);
        assert!(
            e.message.contains(HOST) && e.message.contains("lease"),
            "{}",
            e.message
        );
        assert!(
            fleet.to_snapshot() == before,
            "the refusal changed the state"
        );

        // Its lease lapsed (the host was off): the same token enrolls it again.
        fleet.apply(&cmd(Kind::SetHostStatus(pb::SetHostStatusCommand {
            host_id: HOST.to_owned(),
            status: pb::HostStatus::Down as i32,
            ..Default::default()
        })));
        assert!(matches!(
            fleet.apply(&enroll('a', HOST, 2_000)).result,
            Some(R::Done(true))
        ));
    }

    #[test]
    fn a_revoked_token_is_gone() {
        let mut fleet = FleetState::default();
        fleet.apply(&cmd(token('a', 100)));
        let revoke = Kind::RevokeJoinToken(pb::RevokeJoinTokenCommand {
            sha256: "a".repeat(64),
        });
        assert!(matches!(
            fleet.apply(&cmd(revoke.clone())).result,
            Some(R::Done(true))
        ));
        assert_eq!(
            error_of(fleet.apply(&cmd(revoke))).code,
            tonic::Code::NotFound as i32
        );
        refused(&mut fleet, &enroll('a', HOST, 1_000));
    }
}
