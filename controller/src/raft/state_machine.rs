//! The fleet state machine store: applies committed entries to the in-memory
//! [`FleetState`], builds and installs snapshots, and keeps the latest snapshot in redb.
//!
//! A snapshot is a prost-encoded [`pb::FleetSnapshot`] (the data, also what is sent to
//! a lagging member) plus its [`pb::SnapshotMeta`], both stored checksummed in the
//! `snapshot` table. On start the state is the stored snapshot; openraft then
//! re-applies the committed log entries that follow it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use prost::Message;
use redb::{Database, ReadableDatabase, TableDefinition};
use zonefleet_proto::pb;

use super::codec::{
    opt_log_id_from_pb, opt_log_id_to_pb, snapshot_meta_from_pb, snapshot_meta_to_pb,
    stored_membership_from_pb, stored_membership_to_pb,
};
use super::log_store::{seal, unseal, StoreError};
use super::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::FleetState;

/// The latest snapshot: `meta` and `data`, each checksummed.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
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
    /// Opens the state machine over `db` (see [`super::log_store::open_db`]), starting
    /// from the stored snapshot if there is one.
    pub fn open(db: Arc<Database>, path: &Path) -> Result<Self, StoreError> {
        let store = StateMachineStore {
            applied: Arc::default(),
            db,
            path: path.to_owned(),
            snapshot_seq: Arc::default(),
        };
        let stored = store.load().map_err(|what| StoreError::Corrupt {
            path: path.to_owned(),
            what: format!("snapshot: {what}"),
        })?;
        if let Some((meta, data)) = stored {
            let snapshot =
                pb::FleetSnapshot::decode(data.as_slice()).map_err(|e| StoreError::Corrupt {
                    path: path.to_owned(),
                    what: format!("snapshot data: {e}"),
                })?;
            let mut applied = store.write();
            applied.fleet = FleetState::from_snapshot(&snapshot);
            applied.last_applied = meta.last_log_id;
            applied.last_membership = meta.last_membership;
        }
        Ok(store)
    }

    /// Reads the applied state.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }

    fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
        let meta = table.get(META_KEY).map_err(|e| e.to_string())?;
        let data = table.get(DATA_KEY).map_err(|e| e.to_string())?;
        let (Some(meta), Some(data)) = (meta, data) else {
            return Ok(None);
        };
        let meta = pb::SnapshotMeta::decode(unseal(meta.value())?).map_err(|e| e.to_string())?;
        let data = unseal(data.value())?.to_vec();
        Ok(Some((snapshot_meta_from_pb(&meta), data)))
    }

    fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
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
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (mut snapshot, last_applied, last_membership) = {
            let applied = self.read();
            (
                applied.fleet.to_snapshot(),
                applied.last_applied,
                applied.last_membership.clone(),
            )
        };
        snapshot.last_applied = opt_log_id_to_pb(last_applied.as_ref());
        snapshot.last_membership = Some(stored_membership_to_pb(&last_membership));
        let data = snapshot.encode_to_vec();
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
        self.save(&meta, &data).map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.write();
        let mut results = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => crate::state::ok(pb::command_result::Result::Done(true)),
                EntryPayload::Normal(command) => applied.fleet.apply(&command),
                EntryPayload::Membership(m) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    crate::state::ok(pb::command_result::Result::Done(true))
                }
            };
            results.push(result);
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
        self.save(meta, &data).map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e.to_string()))
        })?;
        let mut applied = self.write();
        applied.fleet = FleetState::from_snapshot(&decoded);
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        // Cross-check what the data itself says it holds.
        if opt_log_id_from_pb(decoded.last_applied.as_ref()) != meta.last_log_id {
            tracing::warn!(snapshot = %meta.snapshot_id, "snapshot data and meta disagree on last_applied");
        }
        let _ = stored_membership_from_pb(decoded.last_membership.as_ref());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.load().map_err(sm_err)?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
