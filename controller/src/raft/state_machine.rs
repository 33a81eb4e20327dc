//! The fleet state machine store: applies committed entries to the in-memory
//! [`FleetState`], builds and installs snapshots, and keeps the latest snapshot in redb.
//!
//! A snapshot is a prost-encoded [`pb::FleetSnapshot`] (the data, also what is sent to
//! a lagging member) plus its [`pb::SnapshotMeta`], both stored checksummed in the
//! `snapshot` table of `snapshot.redb`, a file of its own: redb has one writer per
//! file, and a snapshot of a large fleet (tens of MiB, written and fsync'd on a
//! blocking thread) would otherwise hold up every log append while it is written.
//! On start the state is the stored snapshot; openraft then re-applies the committed
//! log entries that follow it. A data dir from before the split keeps its snapshot in
//! `raft.redb`: it is read from there (and moved) when `snapshot.redb` has none.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use prost::Message;
use redb::{Database, ReadableDatabase, TableDefinition};
use zonefleet_proto::pb;
use zonefleet_proto::tls::{RevocationSet, Revocations};

use super::codec::{
    opt_log_id_from_pb, opt_log_id_to_pb, snapshot_meta_from_pb, snapshot_meta_to_pb,
    stored_membership_from_pb, stored_membership_to_pb,
};
use super::log_store::{db_err, keep_private, seal, unseal, StoreError};
use super::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::node::assignments::AssignmentLog;
use crate::state::FleetState;

/// The latest snapshot: `meta` and `data`, each checksummed.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
/// The snapshot's file in a data dir.
pub const SNAPSHOT_FILE: &str = "snapshot.redb";
const META_KEY: &str = "meta";
const DATA_KEY: &str = "data";

/// The applied state: the fleet and the Raft position it reflects.
#[derive(Debug, Default)]
pub struct Applied {
    /// The fleet state.
    pub fleet: FleetState,
    /// The last log entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub last_membership: StoredMembership,
}

/// The state machine store handed to openraft, and (through [`Self::read`]) the
/// state the API reads.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    db: Arc<Database>,
    path: PathBuf,
    snapshot_seq: Arc<AtomicU64>,
    /// Where the applied revocation list is published for the verifiers.
    revocations: Revocations,
    /// Where what each entry changed of each host's assignments is recorded.
    assignments: AssignmentLog,
    /// The index of the last entry applied, sent after each apply (and snapshot
    /// install): what the fleet event streams wait on.
    applied_index: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_state_machine(AnyError::error(e.to_string())).into()
}

impl StateMachineStore {
    /// Opens the state machine's snapshot file in `data_dir` and starts from the stored
    /// snapshot if there is one (moving it from `log_db`, the log's file, where an
    /// older data dir kept it).
    pub fn open(data_dir: &Path, log_db: &Database) -> Result<Self, StoreError> {
        let path = data_dir.join(SNAPSHOT_FILE);
        keep_private(&path, zonefleet_proto::modes::private_file)?;
        let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
        {
            let txn = db.begin_write().map_err(|e| db_err(&path, e))?;
            txn.open_table(SNAPSHOT).map_err(|e| db_err(&path, e))?;
            txn.commit().map_err(|e| db_err(&path, e))?;
        }
        let store = StateMachineStore {
            applied: Arc::default(),
            db: Arc::new(db),
            path: path.clone(),
            snapshot_seq: Arc::default(),
            revocations: Revocations::new(),
            assignments: AssignmentLog::default(),
            applied_index: Arc::new(watch::Sender::new(0)),
        };
        let corrupt = |what: String| StoreError::Corrupt {
            path: path.clone(),
            what: format!("snapshot: {what}"),
        };
        let mut stored = load(&store.db).map_err(corrupt)?;
        if stored.is_none() {
            if let Some((meta, data)) = load(log_db).map_err(corrupt)? {
                save(&store.db, &meta, &data).map_err(|e| db_err(&path, e))?;
                stored = Some((meta, data));
            }
        }
        if let Some((meta, data)) = stored {
            let snapshot = pb::FleetSnapshot::decode(data.as_slice())
                .map_err(|e| corrupt(format!("data: {e}")))?;
            let mut applied = store
                .applied
                .try_write()
                .expect("a store being opened has no other user");
            applied.fleet = FleetState::from_snapshot(&snapshot);
            applied.last_applied = meta.last_log_id;
            applied.last_membership = meta.last_membership;
            store
                .applied_index
                .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        }
        Ok(store)
    }

    /// Publishes the applied revocation list to `revocations` now and whenever applying
    /// an entry or installing a snapshot changes it, so the verifiers sharing it refuse
    /// (and close) what was revoked once it is applied here.
    pub fn publishing_to(mut self, revocations: Revocations) -> Self {
        if let Ok(applied) = self.applied.try_read() {
            revocations.replace(RevocationSet::from_entries(&applied.fleet.revocations));
        }
        self.revocations = revocations;
        self
    }

    /// Records what every applied entry changes of each host's assignments in `log`
    /// (complete from the state loaded now on).
    pub fn feeding(mut self, log: AssignmentLog) -> Self {
        if let Ok(applied) = self.applied.try_read() {
            log.reset(applied.last_applied.map_or(0, |l| l.index));
        }
        self.assignments = log;
        self
    }

    /// A receiver of the index of the last entry applied: it changes once the state
    /// (and its fleet events) reflect that entry.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// Reads the applied state. The lock is an async one: a reader waiting (behind
    /// `apply`, itself behind a snapshot being copied) never holds up an async worker.
    pub async fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().await
    }

    /// Stores `meta` and `data` as the latest snapshot, on a blocking thread (a large
    /// fleet's snapshot is tens of MiB and an fsync), and hands `data` back.
    async fn save(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let db = self.db.clone();
        let stored = meta.clone();
        let write_err = |e: String| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::error(e),
            ))
        };
        tokio::task::spawn_blocking(move || save(&db, &stored, &data).map(|()| data))
            .await
            .map_err(|e| write_err(e.to_string()))?
            .map_err(|e| write_err(e.to_string()))
    }
}

/// The snapshot stored in `db` (none when its table is missing or empty).
fn load(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(SNAPSHOT) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = table.get(META_KEY).map_err(|e| e.to_string())?;
    let data = table.get(DATA_KEY).map_err(|e| e.to_string())?;
    let (Some(meta), Some(data)) = (meta, data) else {
        return Ok(None);
    };
    let meta = pb::SnapshotMeta::decode(unseal(meta.value())?).map_err(|e| e.to_string())?;
    let data = unseal(data.value())?.to_vec();
    Ok(Some((snapshot_meta_from_pb(&meta), data)))
}

/// Stores `meta` and `data` as the snapshot in `db`, fsync'd.
fn save(db: &Database, meta: &SnapshotMeta, data: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        table.insert(
            META_KEY,
            seal(&snapshot_meta_to_pb(meta).encode_to_vec()).as_slice(),
        )?;
        table.insert(DATA_KEY, seal(data).as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Applies committed `entries` in order; one result each. What each changes of the
/// hosts' assignments goes to `log`, at the entry's index; the fleet events it makes
/// are stamped with that index (the same on every replica).
fn apply_entries(
    applied: &mut Applied,
    entries: Vec<Entry>,
    log: &AssignmentLog,
) -> Vec<pb::CommandResult> {
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        applied.last_applied = Some(entry.log_id);
        let result = match entry.payload {
            EntryPayload::Blank => crate::state::ok(pb::command_result::Result::Done(true)),
            EntryPayload::Normal(command) => {
                let (result, changes) = applied.fleet.apply_entry(entry.log_id.index, &command);
                log.record(entry.log_id.index, changes);
                result
            }
            EntryPayload::Membership(m) => {
                applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                crate::state::ok(pb::command_result::Result::Done(true))
            }
        };
        results.push(result);
    }
    results
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Copying and encoding a large fleet takes a while (a snapshot of ~150 000
        // zones took 0.75 s to build, measured): on a blocking thread, not on one of
        // the async workers that run Raft and the API. (Applying, and readers behind it, wait for the copy meanwhile, without
        // holding up a worker: the lock is an async one.)
        let applied = self.applied.clone();
        let (data, last_applied, last_membership) = tokio::task::spawn_blocking(move || {
            let (mut snapshot, last_applied, last_membership) = {
                let applied = applied.blocking_read();
                (
                    applied.fleet.to_snapshot(),
                    applied.last_applied,
                    applied.last_membership.clone(),
                )
            };
            snapshot.last_applied = opt_log_id_to_pb(last_applied.as_ref());
            snapshot.last_membership = Some(stored_membership_to_pb(&last_membership));
            (snapshot.encode_to_vec(), last_applied, last_membership)
        })
        .await
        .map_err(sm_err)?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!(
                "{}-{}-{}-{seq}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let data = self.save(&meta, data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.read().await;
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Waits (asynchronously) while a snapshot is being copied.
        let mut applied = self.applied.write().await;
        // Revocations are only ever added: a change shows in the count.
        let before = applied.fleet.revocations.len();
        let results = apply_entries(&mut applied, entries, &self.assignments);
        if applied.fleet.revocations.len() != before {
            self.revocations
                .replace(RevocationSet::from_entries(&applied.fleet.revocations));
        }
        if let Some(last) = applied.last_applied {
            self.applied_index.send_replace(last.index);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let decoded = pb::FleetSnapshot::decode(data.as_slice()).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        })?;
        self.save(meta, data).await?;
        let mut applied = self.applied.write().await;
        applied.fleet = FleetState::from_snapshot(&decoded);
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        self.assignments
            .reset(meta.last_log_id.map_or(0, |l| l.index));
        self.revocations
            .replace(RevocationSet::from_entries(&applied.fleet.revocations));
        self.applied_index
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        // Cross-check what the data itself says it holds.
        if opt_log_id_from_pb(decoded.last_applied.as_ref()) != meta.last_log_id {
            tracing::warn!(snapshot = %meta.snapshot_id, "snapshot data and meta disagree on last_applied");
        }
        let _ = stored_membership_from_pb(decoded.last_membership.as_ref());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(load(&self.db)
            .map_err(sm_err)?
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_store::open_db;

    /// A data dir from before the split kept its snapshot in `raft.redb`: it is read
    /// from there and moved to `snapshot.redb`.
    #[test]
    fn an_older_data_dirs_snapshot_is_read_from_the_log_file_and_moved() {
        let dir = tempfile::TempDir::new().unwrap();
        let log_db = open_db(dir.path()).unwrap();
        let mut fleet = FleetState::default();
        fleet.settings.cpu_ratio_percent = Some(200);
        let last = LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        let meta = SnapshotMeta {
            last_log_id: Some(last),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-1-42-0".to_owned(),
        };
        save(&log_db, &meta, &fleet.to_snapshot().encode_to_vec()).unwrap();

        let store = StateMachineStore::open(dir.path(), &log_db).unwrap();
        let applied = store.applied.blocking_read();
        assert_eq!(applied.last_applied, Some(last));
        assert_eq!(applied.fleet.settings.cpu_ratio_percent, Some(200));
        let moved = load(&store.db).unwrap().expect("moved to snapshot.redb");
        assert_eq!(moved.0.snapshot_id, "3-1-42-0");
    }
}
