//! openraft's own storage test suite against the redb log store and the fleet state
//! machine store, each run on a fresh fsync'd redb file in a temporary directory.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use zonefleet_controller::raft::log_store::{open_db, LogStore};
use zonefleet_controller::raft::state_machine::StateMachineStore;
use zonefleet_controller::raft::{StorageError, TypeConfig};

struct RedbStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("tempdir");
        let db = open_db(dir.path()).expect("open redb");
        let log = LogStore::open(db.clone(), dir.path()).expect("open log");
        let sm = StateMachineStore::open(dir.path(), &db).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(RedbStores).expect("storage suite");
}
