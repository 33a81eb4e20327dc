//! The fleet's revocation list as this agent holds it, for its `Agent` listener:
//! every heartbeat says how many entries the agent has and its answer carries the
//! ones after them (the list only grows, in one order on every controller). Each new
//! entry is refused at the listener's next handshake and closes the open connections
//! it names. Kept in memory only: after a restart the list is complete again with the
//! first heartbeat answered.

use std::sync::{Arc, Mutex};

use zonefleet_proto::pb;
use zonefleet_proto::tls::{RevocationSet, Revocations};

/// The entries received so far, and the list the listener's verifier reads.
#[derive(Debug)]
pub struct RevocationFeed {
    revocations: Revocations,
    entries: Mutex<Vec<pb::Revocation>>,
}

impl RevocationFeed {
    /// Feeds `revocations` (the listener's trust's list), starting empty.
    pub fn new(revocations: Revocations) -> Arc<Self> {
        Arc::new(RevocationFeed {
            revocations,
            entries: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<pb::Revocation>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many entries the agent holds (what the next heartbeat says).
    pub fn known(&self) -> u64 {
        self.lock().len() as u64
    }

    /// Appends the entries a heartbeat answer carried and enforces the whole list.
    pub fn extend(&self, more: Vec<pb::Revocation>) {
        if more.is_empty() {
            return;
        }
        let set = {
            let mut entries = self.lock();
            for r in &more {
                tracing::info!(serial = %r.serial, identity = %r.identity, reason = %r.reason, "revoked: refused by the Agent listener from now on");
            }
            entries.extend(more);
            RevocationSet::from_entries(&entries)
        };
        self.revocations.replace(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonefleet_proto::pki::Identity;

    #[test]
    fn entries_accumulate_into_the_enforced_list() {
        let revocations = Revocations::new();
        let feed = RevocationFeed::new(revocations.clone());
        assert_eq!(feed.known(), 0);
        let alice = Identity::operator("prod", "alice").unwrap();
        feed.extend(vec![pb::Revocation {
            identity: alice.to_string(),
            ..Default::default()
        }]);
        feed.extend(vec![pb::Revocation {
            serial: "7f3a".into(),
            ..Default::default()
        }]);
        assert_eq!(feed.known(), 2);
        assert!(revocations.refusal(&alice, None).is_some());
        let bob = Identity::operator("prod", "bob").unwrap();
        assert!(revocations.refusal(&bob, Some("7f3a")).is_some());
        assert!(revocations.refusal(&bob, Some("7f3b")).is_none());
    }
}
