//! How long a leaf certificate may live, per kind of principal.
//!
//! A leaked key works until its certificate expires (or is revoked), so no leaf is
//! issued for longer than its kind's cap: agents' certificates are short-lived and
//! renewed by the agent; operators' and controllers' are re-issued (a controller
//! restarted with its new certificate keeps the cluster up: the others still trust the
//! same CA). Every leaf the CA issues or signs passes through [`check`].

use time::Duration;

use super::{PkiError, Principal, Validity, BACKDATE};

/// The default and the longest lifetime of one kind of leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// What a certificate gets when nobody asks for another lifetime.
    pub default: Duration,
    /// The longest lifetime the CA issues.
    pub max: Duration,
}

/// Operators: 90 days by default, at most a year.
pub const OPERATOR: Lifetime = Lifetime {
    default: Duration::days(90),
    max: Duration::days(365),
};
/// Controllers: 90 days by default, at most a year.
pub const CONTROLLER: Lifetime = Lifetime {
    default: Duration::days(90),
    max: Duration::days(365),
};
/// Agents: 24 hours by default (renewed at about two thirds of their life), at most
/// 7 days.
pub const AGENT: Lifetime = Lifetime {
    default: Duration::hours(24),
    max: Duration::days(7),
};

impl Lifetime {
    /// The lifetime rule of `principal`'s kind.
    pub fn of(principal: &Principal) -> Self {
        match principal {
            Principal::Operator { .. } => OPERATOR,
            Principal::Controller(_) => CONTROLLER,
            Principal::Agent(_) => AGENT,
        }
    }

    /// A validity from now for this kind's default lifetime.
    pub fn default_validity(&self) -> Validity {
        Validity::starting_now(self.default)
    }
}

fn show(d: Duration) -> String {
    if d.whole_hours() < 48 {
        format!("{} hours", d.whole_hours())
    } else {
        format!("{} days", d.whole_days())
    }
}

/// Refuses a validity longer than `principal`'s kind allows (the backdating that
/// tolerates clock skew does not count), naming the cap.
pub fn check(principal: &Principal, validity: &Validity) -> Result<(), PkiError> {
    let cap = Lifetime::of(principal).max;
    let asked = validity.not_after - validity.not_before;
    if asked > cap + BACKDATE {
        return Err(PkiError::InvalidValidity(format!(
            "{} certificates live at most {}; {} asked",
            principal.kind(),
            show(cap),
            show(asked - BACKDATE)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn each_kind_is_capped_and_the_message_names_the_cap() {
        let agent = Principal::Agent(Uuid::new_v4());
        assert!(check(&agent, &Validity::days(7).unwrap()).is_ok());
        let err = check(&agent, &Validity::days(8).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("agent certificates live at most 7 days; 8 days asked"),
            "{err}"
        );
        let controller = Principal::Controller("1".to_owned());
        assert!(check(&controller, &Validity::days(365).unwrap()).is_ok());
        assert!(check(&controller, &Validity::days(366).unwrap()).is_err());
        let agent_default = AGENT.default_validity();
        assert_eq!(
            agent_default.not_after - agent_default.not_before,
            Duration::hours(24) + BACKDATE
        );
    }
}
