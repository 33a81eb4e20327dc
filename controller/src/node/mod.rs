//! One running controller: its Raft node, the state it has applied, and the two
//! things every API call needs from it: [`Controller::write`] (commit a command,
//! through the leader wherever it is) and [`Controller::read_barrier`] (make a read
//! linearizable).
//!
//! * this module: start-up and the handle;
//! * [`proposer`]: writes, batched on the leader and forwarded by followers;
//! * [`reads`]: read indexes and read barriers;
//! * [`membership`]: adding and removing controllers;
//! * [`status`]: the Raft group's state as this controller sees it;
//! * [`leases`]: the leader's lease table and heartbeats;
//! * `liveness`: what the leader judges from it (down hosts, moves of lost hosts'
//!   zones, the mass-loss pause, pending zones placed);
//! * [`assignments`]: the per-host change log agents' watch streams replay;
//! * [`control`]: the settings of the agent-facing `Control` service.

pub mod assignments;
pub mod control;
pub mod leases;
mod liveness;
mod membership;
mod proposer;
mod reads;
mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use tokio::sync::mpsc;
use tonic::Status;
use zonefleet_proto::pb;
use zonefleet_proto::tls::{CertKey, FleetTrust};

pub use membership::parse_id;
pub use proposer::{MAX_BATCH_BYTES, MAX_BATCH_COMMANDS, MAX_INFLIGHT_PROPOSALS};

use crate::blobs::{BlobStore, ImageOptions};
use crate::raft::dial::SharedDialer;
use crate::raft::failover::{FailoverTiming, LeaderContact};
use crate::raft::log_store::{open_db, LogStore, StoreError};
use crate::raft::network::{Network, PeerChannels};
use crate::raft::state_machine::{Applied, StateMachineStore};
use crate::raft::{NodeId, Raft};
use assignments::AssignmentLog;
use control::ControlOptions;
use proposer::{propose_loop, Proposal, Proposer};

/// How long a write or a read barrier keeps trying to find a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Errors starting a controller.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened (or is corrupted).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image blob store could not be opened.
    #[error(transparent)]
    Blobs(#[from] crate::blobs::BlobError),
    /// openraft refused the configuration or could not start.
    #[error("raft: {0}")]
    Raft(String),
}

/// What a controller needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This controller's id.
    pub id: NodeId,
    /// The cluster name (of every certificate).
    pub cluster: String,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The fleet CA.
    pub trust: FleetTrust,
    /// This controller's certificate and key.
    pub own: CertKey,
    /// openraft's timings and snapshot policy.
    pub raft: openraft::Config,
    /// The members of a brand-new cluster (id → `HOST:PORT`); empty when joining an
    /// existing one. Used only when the store is empty.
    pub initial_members: BTreeMap<NodeId, String>,
    /// When to probe a silent leader and campaign if its process is gone (`None`:
    /// only openraft's own election timers).
    pub failover: Option<FailoverTiming>,
    /// How this controller opens streams to its peers ([`TcpDialer`](crate::raft::dial::TcpDialer)
    /// in production).
    pub dialer: SharedDialer,
    /// What agents get: the signing CA, certificate lifetime and lease terms.
    pub control: ControlOptions,
    /// Image uploads and blob sync.
    pub images: ImageOptions,
}

/// The leadership a controller held when it stopped and resumes at start (see
/// [`Controller::read_index_as_leader`]).
#[derive(Debug, Clone, Copy)]
struct RestoredLeadership {
    /// The leader id (term and node) of the stored vote.
    leader_id: openraft::LeaderId<NodeId>,
    /// The last log id held at start.
    last_log_id: Option<crate::raft::LogId>,
}

struct Inner {
    restored_leadership: Option<RestoredLeadership>,
    contact: LeaderContact,
    proposals: mpsc::UnboundedSender<Proposal>,
    id: NodeId,
    cluster: String,
    raft: Raft,
    log: LogStore,
    sm: StateMachineStore,
    peers: PeerChannels,
    trust: FleetTrust,
    control: ControlOptions,
    leases: Arc<leases::Leases>,
    assignments: AssignmentLog,
    blobs: BlobStore,
    images: ImageOptions,
}

/// A running controller (cheap to clone).
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// A [`Controller`] that does not keep it alive.
#[derive(Clone)]
pub struct WeakController {
    inner: std::sync::Weak<Inner>,
}

impl WeakController {
    /// The controller, while it is running.
    pub fn upgrade(&self) -> Option<Controller> {
        self.inner.upgrade().map(|inner| Controller { inner })
    }
}

/// The `UNAVAILABLE` status for "no leader to be found".
fn no_leader(what: &str) -> Status {
    Status::unavailable(format!("{what}: no leader elected yet; retry"))
}

impl Controller {
    /// Opens the store in `options.data_dir` and starts the Raft node. A store with no
    /// state and non-empty `initial_members` initializes a new cluster.
    pub async fn start(options: NodeOptions) -> Result<Self, StartError> {
        let db = open_db(&options.data_dir)?;
        let blobs = BlobStore::open(&options.data_dir)?;
        let path = options.data_dir.join(crate::raft::log_store::DB_FILE);
        let log = LogStore::open(db.clone(), &path)?;
        // The trust's verifiers (this node's listener and its Raft clients) refuse what
        // the applied state revokes.
        let assignments = AssignmentLog::default();
        let sm = StateMachineStore::open(&options.data_dir, &db)?
            .publishing_to(options.trust.revocations().clone())
            .feeding(assignments.clone());
        let restored_leadership = log
            .vote()
            .filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(options.id))
            .map(|v| RestoredLeadership {
                leader_id: *v.leader_id(),
                last_log_id: log.last_log_id(),
            });
        let peers = PeerChannels::new(
            options.trust.clone(),
            options.own.clone(),
            options.dialer.clone(),
        );
        let config = Arc::new(
            options
                .raft
                .clone()
                .validate()
                .map_err(|e| StartError::Raft(e.to_string()))?,
        );
        let raft = Raft::new(
            options.id,
            config,
            Network::new(peers.clone()),
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        if !options.initial_members.is_empty()
            && !raft
                .is_initialized()
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?
        {
            let members: BTreeMap<NodeId, BasicNode> = options
                .initial_members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                // Another member's initialization may have reached us first.
                tracing::info!(error = %e, "not initializing the cluster");
            }
        }
        let (proposals, queue) = mpsc::unbounded_channel();
        let proposer = Proposer {
            id: options.id,
            raft: raft.clone(),
            peers: peers.clone(),
        };
        tokio::spawn(propose_loop(proposer, queue));
        let contact = LeaderContact::default();
        if let Some(timing) = options.failover {
            tokio::spawn(crate::raft::failover::watch(
                options.id,
                raft.clone(),
                contact.clone(),
                timing,
                options.dialer.clone(),
            ));
        }
        let tick = (options.control.lease_ttl / 20)
            .clamp(Duration::from_millis(20), Duration::from_millis(100));
        let node = Controller {
            inner: Arc::new(Inner {
                restored_leadership,
                contact,
                proposals,
                id: options.id,
                cluster: options.cluster,
                raft,
                log,
                sm,
                peers,
                trust: options.trust,
                leases: Arc::new(leases::Leases::new(options.control.lease_ttl)),
                control: options.control,
                assignments,
                blobs,
                images: options.images,
            }),
        };
        tokio::spawn(liveness::watch(Arc::downgrade(&node.inner), tick));
        tokio::spawn(liveness::confirm_leadership(Arc::downgrade(&node.inner)));
        tokio::spawn(crate::blobs::sync::run(node.downgrade()));
        Ok(node)
    }

    /// The `Control` service's settings.
    pub fn control(&self) -> &ControlOptions {
        &self.inner.control
    }

    /// The image blobs this controller holds.
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// Image upload and blob sync settings.
    pub fn image_options(&self) -> &ImageOptions {
        &self.inner.images
    }

    /// A handle that does not keep the controller alive (for background loops).
    pub fn downgrade(&self) -> WeakController {
        WeakController {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The voters of the latest membership, and every other member (voters and
    /// learners, not this controller) with its address.
    pub fn blob_peers(&self) -> (Vec<NodeId>, Vec<(NodeId, String)>) {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().collect();
        let others = membership
            .nodes()
            .filter(|(id, _)| **id != self.inner.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        (voters, others)
    }

    /// A `Raft` client of member `id` at `addr` (over the fleet mTLS, as Raft's own).
    pub fn peer_client(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<pb::raft_client::RaftClient<tonic::transport::Channel>, Status> {
        self.peer(id, addr)
    }

    /// The per-host change log the watch streams replay.
    pub fn assignments(&self) -> &AssignmentLog {
        &self.inner.assignments
    }

    /// A receiver of the index of the last entry this controller applied (what the
    /// fleet event streams wait on).
    pub fn applied_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.sm.subscribe_applied()
    }

    /// `HOST:PORT` of every controller in the latest membership.
    pub fn controller_addresses(&self) -> Vec<String> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.addr.clone())
            .collect()
    }

    /// This controller's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The fleet CA this controller trusts.
    pub fn trust(&self) -> &FleetTrust {
        &self.inner.trust
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// When the leader last reached this controller (see [`crate::raft::failover`]).
    pub fn leader_contact(&self) -> &LeaderContact {
        &self.inner.contact
    }

    /// The applied state, as this controller has it (a stale read).
    pub async fn state(&self) -> tokio::sync::RwLockReadGuard<'_, Applied> {
        self.inner.sm.read().await
    }

    /// The last committed log id this controller knows.
    pub async fn committed(&self) -> Option<crate::raft::LogId> {
        use openraft::storage::RaftLogStorage;
        let mut log = self.inner.log.clone();
        log.read_committed().await.ok().flatten()
    }

    /// The last log id this controller holds.
    pub fn last_log_id(&self) -> Option<crate::raft::LogId> {
        self.inner.log.last_log_id()
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }

    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    fn peer(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<pb::raft_client::RaftClient<tonic::transport::Channel>, Status> {
        self.inner
            .peers
            .client(id, addr)
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}
