//! The certificate revocation list: revoked serials and identities, with who revoked
//! them and when. Entries are only ever added; every controller publishes the list to
//! its verifiers (see [`zonefleet_proto::tls::Revocations`]) once it applies them.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::tls::{normalize_serial, parse_revoked_identity, RevocationError};

use super::{ok, FleetState, StateError};

/// Longest revocation reason accepted, bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// `revocation` checked and in its canonical form (serial normalized, identity
/// re-written as it parses), or why it is refused. The operator API and apply both use
/// this, so a command that bypassed the API is refused the same way.
pub fn checked_revocation(revocation: &pb::Revocation) -> Result<pb::Revocation, StateError> {
    let invalid = |e: RevocationError| StateError::InvalidArgument(e.to_string());
    let mut checked = revocation.clone();
    match (revocation.serial.is_empty(), revocation.identity.is_empty()) {
        (false, true) => checked.serial = normalize_serial(&revocation.serial).map_err(invalid)?,
        (true, false) => {
            checked.identity = parse_revoked_identity(&revocation.identity)
                .map_err(invalid)?
                .to_string()
        }
        _ => return Err(invalid(RevocationError::NeitherOrBoth)),
    }
    if revocation.reason.len() > MAX_REASON_LEN {
        return Err(StateError::InvalidArgument(format!(
            "reason: {} bytes is too long (at most {MAX_REASON_LEN})",
            revocation.reason.len()
        )));
    }
    Ok(checked)
}

impl FleetState {
    pub(super) fn revoke_certificate(
        &mut self,
        c: &pb::RevokeCertificateCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        let given = c
            .revocation
            .as_ref()
            .ok_or_else(|| StateError::InvalidArgument("revocation is missing".to_owned()))?;
        let mut revocation = checked_revocation(given)?;
        let duplicate = self
            .revocations
            .iter()
            .any(|r| r.serial == revocation.serial && r.identity == revocation.identity);
        if duplicate {
            let what = if revocation.serial.is_empty() {
                format!("identity {}", revocation.identity)
            } else {
                format!("serial {}", revocation.serial)
            };
            return Err(StateError::AlreadyExists(format!(
                "{what} is already revoked"
            )));
        }
        revocation.revoked_at_unix_ms = at;
        self.revocations.push(revocation);
        Ok(ok(R::Done(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn revoke(serial: &str, identity: &str) -> Kind {
        Kind::RevokeCertificate(pb::RevokeCertificateCommand {
            revocation: Some(pb::Revocation {
                serial: serial.to_owned(),
                identity: identity.to_owned(),
                revoked_by: "zonefleet://t/operator/admin".to_owned(),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn a_revocation_is_recorded_in_canonical_form_with_its_time() {
        let mut fleet = FleetState::default();
        let result = fleet.apply(&cmd(revoke("00:7F:3A", "")));
        assert_eq!(result.result, Some(R::Done(true)));
        assert_eq!(fleet.revocations.len(), 1);
        assert_eq!(fleet.revocations[0].serial, "7f3a");
        assert_eq!(
            fleet.revocations[0].revoked_by,
            "zonefleet://t/operator/admin"
        );
        // A second time: refused, nothing added.
        let again = error_of(fleet.apply(&cmd(revoke("7f3a", ""))));
        assert_eq!(again.code, tonic::Code::AlreadyExists as i32);
        assert_eq!(fleet.revocations.len(), 1);
        let restored = FleetState::from_snapshot(&fleet.to_snapshot());
        assert_eq!(restored, fleet);
    }

    #[test]
    fn malformed_revocations_are_refused_at_apply() {
        let mut fleet = FleetState::default();
        for (serial, identity, names) in [
            ("zz", "", "serial \"zz\""),
            (
                "",
                "https://t/operator/alice",
                "does not start with zonefleet://",
            ),
            ("", "zonefleet://t/printer/1", "unknown kind"),
            ("7f", "zonefleet://t/controller/1", "exactly one"),
            ("", "", "exactly one"),
        ] {
            let e = error_of(fleet.apply(&cmd(revoke(serial, identity))));
            assert_eq!(e.code, tonic::Code::InvalidArgument as i32, "{e:?}");
            assert!(e.message.contains(names), "{names}: {}", e.message);
        }
        assert!(fleet.revocations.is_empty());
    }
}
