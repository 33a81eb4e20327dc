//! The Raft log and vote in redb.
//!
//! One redb file (`raft.redb` in the data dir) holds the log (`raft_log`: index →
//! entry), the vote, the committed log id and the last purged log id (`raft_meta`).
//! The state machine's snapshot has a file of its own (see [`super::state_machine`]):
//! writing a large snapshot must not hold up the log's transactions.
//!
//! Every stored entry is `crc32 (4 bytes, little endian) ++ prost(pb::Entry)`. Opening
//! the store reads the whole log back and checks each checksum, decoding, and that the
//! indexes are contiguous: a corrupted log is reported ([`StoreError::Corrupt`]) and
//! the controller refuses to start, rather than silently serving a damaged log.
//!
//! Writes go through one writer thread that takes every operation waiting in its
//! queue, applies them in one redb transaction and commits it with
//! [`redb::Durability::Immediate`] (an fsync) before acknowledging any of them (group
//! commit). The log tail is also kept in memory, so entries are readable as soon as
//! `append` returns, as openraft requires. The committed log id costs no fsync of its
//! own: the latest one rides along with the next transaction the writer commits.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;
use zonefleet_proto::pb;

use super::codec::{
    entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, vote_from_pb, vote_to_pb,
};
use super::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The log: index → checksummed entry.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small Raft records by name.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";

/// The file name of the store in a data dir.
pub const DB_FILE: &str = "raft.redb";

/// Errors opening or checking the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb could not open or read the file.
    #[error("{path}: {error}")]
    Db {
        /// The store file.
        path: PathBuf,
        /// redb's error.
        error: Box<redb::Error>,
    },
    /// The data dir or a store file could not be created or made private.
    #[error("{path}: {error}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A stored record is damaged.
    #[error("{path}: corrupted Raft log: {what}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is damaged (which entry, and how).
        what: String,
    },
}

pub(crate) fn db_err(path: &Path, error: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_owned(),
        error: Box::new(error.into()),
    }
}

/// `crc32 ++ bytes`.
pub(crate) fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The bytes of a sealed record, if its checksum holds.
pub(crate) fn unseal(sealed: &[u8]) -> Result<&[u8], String> {
    if sealed.len() < 4 {
        return Err(format!("record of {} bytes is too short", sealed.len()));
    }
    let (sum, bytes) = sealed.split_at(4);
    let want = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    let got = crc32fast::hash(bytes);
    if want != got {
        return Err(format!(
            "checksum mismatch (stored {want:08x}, computed {got:08x})"
        ));
    }
    Ok(bytes)
}

/// Opens (creating if needed) the store file in `data_dir`, with every table present.
/// The data dir is made `0700` and the file `0600` (see [`keep_private`]).
pub fn open_db(data_dir: &Path) -> Result<Arc<Database>, StoreError> {
    keep_private(data_dir, zonefleet_proto::modes::private_dir)?;
    let path = data_dir.join(DB_FILE);
    keep_private(&path, zonefleet_proto::modes::private_file)?;
    let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
    let txn = db.begin_write().map_err(|e| db_err(&path, e))?;
    txn.open_table(LOG).map_err(|e| db_err(&path, e))?;
    txn.open_table(META).map_err(|e| db_err(&path, e))?;
    txn.commit().map_err(|e| db_err(&path, e))?;
    Ok(Arc::new(db))
}

/// Creates `path` private or tightens it with `make` (one of [`zonefleet_proto::modes`]'
/// `private_dir` and `private_file`): every spec, metadata and token hash of the fleet
/// is in the store, so no other local user may read it. Tightening an older, looser
/// data dir is logged.
pub(crate) fn keep_private(
    path: &Path,
    make: fn(&Path) -> std::io::Result<Option<u32>>,
) -> Result<(), StoreError> {
    let before = make(path).map_err(|error| StoreError::Io {
        path: path.to_owned(),
        error,
    })?;
    if let Some(mode) = before {
        tracing::warn!(
            path = %path.display(),
            was = format_args!("{mode:04o}"),
            "tightened the mode of a controller store path: group and others had access"
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

enum Op {
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    PutMeta(&'static str, Vec<u8>, oneshot::Sender<Result<(), String>>),
    Truncate(u64, oneshot::Sender<Result<(), String>>),
    Purge(LogId, oneshot::Sender<Result<(), String>>),
}

/// The latest committed log id (sealed) not yet written: the writer stores it with the
/// next transaction it commits.
type PendingCommitted = Arc<Mutex<Option<Vec<u8>>>>;

struct Inner {
    cache: Mutex<Cache>,
    writer: Mutex<mpsc::Sender<Op>>,
    committed: PendingCommitted,
}

/// The log store handed to openraft (and its log reader: a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn decode_meta<T: Message + Default>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    path: &Path,
) -> Result<Option<T>, StoreError> {
    let Some(value) = table.get(key).map_err(|e| db_err(path, e))? else {
        return Ok(None);
    };
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_owned(),
        what: format!("{key}: {what}"),
    };
    let bytes = unseal(value.value()).map_err(corrupt)?;
    T::decode(bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

impl LogStore {
    /// Opens the log in `db` (see [`open_db`]) and checks every entry.
    pub fn open(db: Arc<Database>, path: &Path) -> Result<Self, StoreError> {
        let mut cache = Cache::default();
        {
            let txn = db.begin_read().map_err(|e| db_err(path, e))?;
            let meta = txn.open_table(META).map_err(|e| db_err(path, e))?;
            cache.vote = decode_meta::<pb::Vote>(&meta, VOTE_KEY, path)?.map(|v| vote_from_pb(&v));
            cache.committed =
                decode_meta::<pb::LogId>(&meta, COMMITTED_KEY, path)?.map(|l| log_id_from_pb(&l));
            cache.last_purged =
                decode_meta::<pb::LogId>(&meta, PURGED_KEY, path)?.map(|l| log_id_from_pb(&l));
            let log = txn.open_table(LOG).map_err(|e| db_err(path, e))?;
            let mut expect = cache.last_purged.map(|l| l.index + 1);
            for item in log.iter().map_err(|e| db_err(path, e))? {
                let (key, value) = item.map_err(|e| db_err(path, e))?;
                let index = key.value();
                let corrupt = |what: String| StoreError::Corrupt {
                    path: path.to_owned(),
                    what: format!("entry {index}: {what}"),
                };
                if let Some(want) = expect {
                    if index != want {
                        return Err(corrupt(format!(
                            "expected entry {want} (a hole in the log)"
                        )));
                    }
                }
                let bytes = unseal(value.value()).map_err(corrupt)?;
                let entry = pb::Entry::decode(bytes)
                    .map_err(|e| corrupt(e.to_string()))
                    .and_then(|e| entry_from_pb(e).map_err(|e| corrupt(e.to_string())))?;
                if entry.log_id.index != index {
                    return Err(corrupt(format!(
                        "holds the entry of index {}",
                        entry.log_id.index
                    )));
                }
                cache.entries.insert(index, entry);
                expect = Some(index + 1);
            }
        }
        let (tx, rx) = mpsc::channel();
        let writer_db = db.clone();
        let committed = PendingCommitted::default();
        let writer_committed = committed.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".to_owned())
            .spawn(move || writer(writer_db, rx, writer_committed))
            .map_err(|error| StoreError::Io {
                path: path.to_owned(),
                error,
            })?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                cache: Mutex::new(cache),
                writer: Mutex::new(tx),
                committed,
            }),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, op: Op) -> Result<(), String> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(op)
            .map_err(|_| "the log writer has stopped".to_owned())
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await
            .map_err(|_| "the log writer has stopped".to_owned())?
    }

    /// The stored vote.
    pub fn vote(&self) -> Option<Vote> {
        self.cache().vote
    }

    /// The last log id, for status reports.
    pub fn last_log_id(&self) -> Option<LogId> {
        let cache = self.cache();
        cache
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(cache.last_purged)
    }
}

fn writer(db: Arc<Database>, rx: mpsc::Receiver<Op>, pending: PendingCommitted) {
    const MAX_BATCH: usize = 4096;
    while let Ok(first) = rx.recv() {
        // Taken before draining the queue: the entries a committed id covers were
        // queued before it was set, so they are in this batch (unless it is full).
        let mut committed = pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch.len() == MAX_BATCH {
            // Some covered entries may still be queued: keep the id for later.
            let mut slot = pending.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = committed.take();
            }
            committed = None;
        }
        let result = write_batch(&db, &batch, committed.as_deref()).map_err(|e| e.to_string());
        for op in batch {
            let r = result.clone();
            match op {
                Op::Append(_, callback) => {
                    callback.log_io_completed(r.map_err(std::io::Error::other));
                }
                Op::PutMeta(_, _, done) | Op::Truncate(_, done) | Op::Purge(_, done) => {
                    let _ = done.send(r);
                }
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[Op], committed: Option<&[u8]>) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for op in batch {
            match op {
                Op::Append(entries, _) => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                Op::PutMeta(key, bytes, _) => {
                    meta.insert(*key, bytes.as_slice())?;
                }
                Op::Truncate(from, _) => {
                    log.retain_in(*from.., |_, _| false)?;
                }
                Op::Purge(upto, _) => {
                    meta.insert(
                        PURGED_KEY,
                        seal(&log_id_to_pb(upto).encode_to_vec()).as_slice(),
                    )?;
                    log.retain_in(..=upto.index, |_, _| false)?;
                }
            }
        }
        if let Some(bytes) = committed {
            meta.insert(COMMITTED_KEY, bytes)?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn io_err(what: String) -> StorageError {
    StorageIOError::write_logs(AnyError::error(what)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
            (start, end)
        {
            if s > e {
                return Ok(Vec::new());
            }
        }
        let cache = self.cache();
        Ok(cache
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache();
        let last = cache.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: cache.last_purged,
            last_log_id: last.or(cache.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = seal(&vote_to_pb(vote).encode_to_vec());
        self.call(|done| Op::PutMeta(VOTE_KEY, bytes, done))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)))?;
        self.cache().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.cache().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not waited for, and no fsync of its own: it is written with the next log
        // transaction. A lost committed id only means re-applying from the snapshot as
        // the leader re-announces it.
        if let Some(id) = committed {
            let bytes = seal(&log_id_to_pb(&id).encode_to_vec());
            *self
                .inner
                .committed
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        }
        self.cache().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.cache().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded = entries
            .iter()
            .map(|e| (e.log_id.index, seal(&entry_to_pb(e).encode_to_vec())))
            .collect();
        {
            let mut cache = self.cache();
            for e in entries {
                cache.entries.insert(e.log_id.index, e);
            }
        }
        self.send(Op::Append(encoded, callback)).map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache().entries.split_off(&log_id.index);
        self.call(|done| Op::Truncate(log_id.index, done))
            .await
            .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.cache();
            let keep = cache.entries.split_off(&(log_id.index + 1));
            cache.entries = keep;
            cache.last_purged = Some(log_id);
        }
        self.call(|done| Op::Purge(log_id, done))
            .await
            .map_err(io_err)
    }
}
