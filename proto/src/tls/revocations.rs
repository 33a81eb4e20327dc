//! The revocation list as the verifiers see it: the serials and identities a node
//! refuses at every handshake, and the live connections it closes when the list grows.
//!
//! The list itself is replicated in the controllers' Raft state; each controller
//! publishes it into its [`Revocations`] whenever the applied state changes it, and every
//! verifier built from the same [`super::FleetTrust`] reads it at each handshake.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::pki::{Identity, Principal};

use super::LiveConnections;

/// A revocation entry that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The serial is not a hexadecimal number.
    #[error("serial {0:?} is not a hexadecimal certificate serial (e.g. 7f3a09c1…, as `openssl x509 -serial` prints it)")]
    BadSerial(String),
    /// The identity is not a fleet identity URI.
    #[error("identity {value:?} is not a fleet identity: {reason}")]
    BadIdentity {
        /// The value given.
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// Neither or both of serial and identity were given.
    #[error("give exactly one of a serial or an identity to revoke")]
    NeitherOrBoth,
}

/// The canonical form of a certificate serial given as hex: lowercase, without `:`
/// separators, and without leading zero bytes, so `7F:3A`, `7f3a` and `007f3a` name
/// one certificate (and `f3a` is `0f3a`).
pub fn normalize_serial(serial: &str) -> Result<String, RevocationError> {
    let digits: String = serial.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 128 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RevocationError::BadSerial(serial.to_owned()));
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    // Whole bytes, as `openssl x509 -serial` and the audit trail print serials.
    Ok(if trimmed.is_empty() {
        "00".to_owned()
    } else if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed
    })
}

/// Parses an identity to revoke.
pub fn parse_revoked_identity(identity: &str) -> Result<Identity, RevocationError> {
    identity
        .parse()
        .map_err(|e: crate::pki::PkiError| RevocationError::BadIdentity {
            value: identity.to_owned(),
            reason: e.to_string(),
        })
}

/// The key an identity is revoked under: its URI, except that an operator is revoked
/// by name whatever role its certificate carries (revoking `…/operator/alice` also
/// refuses `…/operator/viewer/alice`, and the other way round).
fn revocation_key(identity: &Identity) -> String {
    match identity.principal() {
        Principal::Operator { name, .. } => {
            format!(
                "{}://{}/operator/{name}",
                crate::pki::IDENTITY_SCHEME,
                identity.cluster()
            )
        }
        _ => identity.to_string(),
    }
}

/// The revoked serials (canonical, see [`normalize_serial`]) and identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    serials: BTreeSet<String>,
    identities: BTreeSet<String>,
}

impl RevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a revoked serial (any accepted spelling).
    pub fn revoke_serial(&mut self, serial: &str) -> Result<(), RevocationError> {
        self.serials.insert(normalize_serial(serial)?);
        Ok(())
    }

    /// Adds a revoked identity.
    pub fn revoke_identity(&mut self, identity: &Identity) {
        self.identities.insert(revocation_key(identity));
    }

    /// The set of the replicated entries (`pb::Revocation`, as the controllers keep
    /// them and send them to agents); an entry that does not parse is skipped (the
    /// controllers check each one before it is applied).
    pub fn from_entries(entries: &[crate::pb::Revocation]) -> RevocationSet {
        let mut set = RevocationSet::new();
        for r in entries {
            if !r.serial.is_empty() {
                let _ = set.revoke_serial(&r.serial);
            } else if let Ok(identity) = parse_revoked_identity(&r.identity) {
                set.revoke_identity(&identity);
            }
        }
        set
    }

    /// How many serials and identities are revoked.
    pub fn len(&self) -> usize {
        self.serials.len() + self.identities.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why a certificate of `identity` with `serial` (hex) is refused, if it is.
    pub fn refusal(&self, identity: &Identity, serial: Option<&str>) -> Option<Refusal> {
        if let Some(serial) = serial.and_then(|s| normalize_serial(s).ok()) {
            if self.serials.contains(&serial) {
                return Some(Refusal::Serial(serial));
            }
        }
        if self.identities.contains(&revocation_key(identity)) {
            return Some(Refusal::Identity(identity.to_string()));
        }
        None
    }
}

/// Why a certificate was refused as revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its serial is revoked.
    Serial(String),
    /// Its identity is revoked.
    Identity(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Serial(s) => write!(f, "certificate serial {s} is revoked"),
            Refusal::Identity(i) => write!(f, "identity {i} is revoked"),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    current: Arc<RevocationSet>,
    enforced: Vec<LiveConnections>,
}

/// The revocation list a node enforces (cheap to clone; clones share it): read by the
/// verifiers at each handshake, replaced when the replicated list changes, and applied
/// at once to the open connections of every registry given to
/// [`Revocations::enforce_on`].
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    shared: Arc<RwLock<Shared>>,
}

impl Revocations {
    /// An empty list, shared with nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Shared> {
        // Replacing the set is one assignment: a panicking writer leaves it whole.
        self.shared.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The list now.
    pub fn current(&self) -> Arc<RevocationSet> {
        self.read().current.clone()
    }

    /// Why a certificate of `identity` with `serial` is refused now, if it is.
    pub fn refusal(&self, identity: &Identity, serial: Option<&str>) -> Option<Refusal> {
        self.read().current.refusal(identity, serial)
    }

    /// Replaces the list and, if it changed, closes the open connections it now refuses
    /// before returning (so a caller that waited for this sees them closed). Returns
    /// how many connections were closed.
    pub fn replace(&self, set: RevocationSet) -> usize {
        let (set, enforced) = {
            let mut shared = self.shared.write().unwrap_or_else(|e| e.into_inner());
            if *shared.current == set {
                return 0;
            }
            shared.current = Arc::new(set);
            (shared.current.clone(), shared.enforced.clone())
        };
        let closed: usize = enforced.iter().map(|live| live.close_revoked(&set)).sum();
        if closed > 0 {
            tracing::info!(closed, "closed the connections of revoked certificates");
        }
        closed
    }

    /// Applies this list to `live`'s connections: those it refuses now are closed, and
    /// those it refuses after each later [`Revocations::replace`].
    pub fn enforce_on(&self, live: LiveConnections) {
        let current = {
            let mut shared = self.shared.write().unwrap_or_else(|e| e.into_inner());
            shared.enforced.push(live.clone());
            shared.current.clone()
        };
        live.close_revoked(&current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_compared_in_one_spelling() {
        assert_eq!(normalize_serial("00:7F:3a").unwrap(), "7f3a");
        assert_eq!(normalize_serial("adb").unwrap(), "0adb");
        assert_eq!(normalize_serial("0").unwrap(), "00");
        assert!(matches!(
            normalize_serial("zz"),
            Err(RevocationError::BadSerial(_))
        ));
        assert!(normalize_serial("").is_err());
    }

    #[test]
    fn an_operator_is_revoked_whatever_its_role() {
        let admin = Identity::operator("prod", "alice").unwrap();
        let viewer =
            Identity::operator_with_role("prod", "alice", crate::pki::OperatorRole::Viewer)
                .unwrap();
        let mut set = RevocationSet::new();
        set.revoke_identity(&viewer);
        assert!(set.refusal(&admin, None).is_some());
        assert!(set
            .refusal(&Identity::operator("prod", "bob").unwrap(), None)
            .is_none());
    }

    #[test]
    fn a_serial_refuses_that_certificate_only() {
        let alice = Identity::operator("prod", "alice").unwrap();
        let mut set = RevocationSet::new();
        set.revoke_serial("7F3A").unwrap();
        assert_eq!(
            set.refusal(&alice, Some("7f3a")),
            Some(Refusal::Serial("7f3a".into()))
        );
        assert_eq!(set.refusal(&alice, Some("7f3b")), None);
    }
}
