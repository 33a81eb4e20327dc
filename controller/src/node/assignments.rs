//! The per-host change log the agents' watch streams replay from: fed by the state
//! machine as it applies entries (see [`crate::state::assignments`]), bounded per
//! host, and complete after a known revision (its floor). A stream that asks for
//! changes from before a host's floor gets a snapshot instead.
//!
//! A revision is the log index of the applied entry that made a change. Revisions on
//! a stream are strictly increasing, so an entry that changed more than one zone of a
//! host (a batch) is not replayed as several events of one revision: it raises that
//! host's floor to its revision, and a stream behind it gets a snapshot.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::state::assignments::{Change, HostChange};

/// Most changes kept per host.
pub const CHANGES_PER_HOST: usize = 64;

#[derive(Debug)]
struct HostLog {
    /// Every change after this revision is in `changes`.
    floor: u64,
    changes: VecDeque<(u64, Change)>,
    /// The host's latest revision, for the streams waiting on it.
    latest: watch::Sender<u64>,
}

impl HostLog {
    fn new(floor: u64) -> Self {
        HostLog {
            floor,
            changes: VecDeque::new(),
            latest: watch::Sender::new(floor),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The floor of a host not in `hosts`: the log holds every change applied after it.
    floor: u64,
    hosts: HashMap<String, HostLog>,
}

/// What a stream that is at `cursor` should send next.
#[derive(Debug)]
pub enum Since {
    /// These changes, in order, each with its revision (all after the cursor).
    Changes(Vec<(u64, Change)>),
    /// The log no longer holds every change after the cursor: send a snapshot.
    TooOld,
}

/// The shared, bounded per-host change log (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct AssignmentLog {
    inner: Arc<Mutex<Inner>>,
}

impl AssignmentLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the log as it was between two calls.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets every change: the log is complete only after `revision` (the state was
    /// replaced by a snapshot at that revision, or loaded from one).
    pub fn reset(&self, revision: u64) {
        let mut inner = self.lock();
        inner.floor = revision;
        for log in inner.hosts.values_mut() {
            log.changes.clear();
            log.floor = revision;
            log.latest.send_replace(revision);
        }
    }

    /// Records the changes the entry at `revision` made.
    pub fn record(&self, revision: u64, changes: Vec<HostChange>) {
        if changes.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let floor = inner.floor;
        let mut per_host: HashMap<String, Vec<Change>> = HashMap::new();
        for c in changes {
            per_host.entry(c.host_id).or_default().push(c.change);
        }
        for (host, mut changes) in per_host {
            let log = inner
                .hosts
                .entry(host)
                .or_insert_with(|| HostLog::new(floor));
            if changes.len() == 1 {
                log.changes.push_back((revision, changes.remove(0)));
                while log.changes.len() > CHANGES_PER_HOST {
                    if let Some((dropped, _)) = log.changes.pop_front() {
                        log.floor = dropped;
                    }
                }
            } else {
                // Several changes at one revision: a snapshot for whoever is behind.
                log.changes.clear();
                log.floor = revision;
            }
            log.latest.send_replace(revision);
        }
    }

    /// What a stream of `host` at `cursor` has not seen yet.
    pub fn since(&self, host: &str, cursor: u64) -> Since {
        let inner = self.lock();
        let (floor, changes) = match inner.hosts.get(host) {
            Some(log) => (log.floor, Some(&log.changes)),
            None => (inner.floor, None),
        };
        if cursor < floor {
            return Since::TooOld;
        }
        Since::Changes(
            changes
                .into_iter()
                .flatten()
                .filter(|(r, _)| *r > cursor)
                .cloned()
                .collect(),
        )
    }

    /// The revision of `host`'s latest change (the log's floor when it has none): an
    /// agent that applied this far has acted on every change of its assignments.
    pub fn latest(&self, host: &str) -> u64 {
        let inner = self.lock();
        match inner.hosts.get(host) {
            Some(log) => *log.latest.borrow(),
            None => inner.floor,
        }
    }

    /// A receiver that changes whenever `host`'s assignments do.
    pub fn subscribe(&self, host: &str) -> watch::Receiver<u64> {
        let mut inner = self.lock();
        let floor = inner.floor;
        inner
            .hosts
            .entry(host.to_owned())
            .or_insert_with(|| HostLog::new(floor))
            .latest
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(host: &str, uuid: &str) -> HostChange {
        HostChange {
            host_id: host.to_owned(),
            change: Change::Removed(uuid.to_owned()),
        }
    }

    fn revisions(since: Since) -> Vec<u64> {
        match since {
            Since::Changes(c) => c.into_iter().map(|(r, _)| r).collect(),
            Since::TooOld => panic!("too old"),
        }
    }

    #[test]
    fn replays_after_a_cursor_and_knows_when_it_cannot() {
        let log = AssignmentLog::default();
        log.reset(10);
        assert!(matches!(log.since("h1", 9), Since::TooOld));
        assert!(revisions(log.since("h1", 10)).is_empty());
        log.record(11, vec![upsert("h1", "a")]);
        log.record(12, vec![upsert("h2", "b")]);
        log.record(13, vec![upsert("h1", "c")]);
        assert_eq!(revisions(log.since("h1", 10)), vec![11, 13]);
        assert_eq!(revisions(log.since("h1", 11)), vec![13]);
        // Two changes of one host at one revision: whoever is behind gets a snapshot.
        log.record(14, vec![upsert("h1", "d"), upsert("h1", "e")]);
        assert!(matches!(log.since("h1", 13), Since::TooOld));
        assert!(revisions(log.since("h1", 14)).is_empty());
        // Bounded.
        for r in 0..(CHANGES_PER_HOST as u64 + 10) {
            log.record(100 + r, vec![upsert("h2", "x")]);
        }
        assert!(matches!(log.since("h2", 100), Since::TooOld));
        let kept = revisions(log.since("h2", 110));
        assert_eq!(kept.len(), CHANGES_PER_HOST - 1);
    }
}
