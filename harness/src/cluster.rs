//! An in-process controller cluster on loopback: real redb stores in a temporary
//! directory, real mTLS listeners on port 0, real Raft traffic between them, over
//! links the test cuts and heals ([`Partitions`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use zonefleet_controller::blobs::ImageOptions;
use zonefleet_controller::node::control::ControlOptions;
use zonefleet_controller::node::{Controller, NodeOptions};
use zonefleet_controller::raft::NodeId;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::pki::{FleetCa, HostName, IssuedCert, Validity};
use zonefleet_proto::tls::{
    client_config, connect_channel, server_config, CertKey, ExpectedPeer, FleetTrust,
    IncomingOptions, TlsIncoming,
};

use crate::net::Partitions;

/// The cluster name of every in-process test cluster.
pub const CLUSTER: &str = "test";

/// The certificate and key of `issued`.
pub fn cert_key(issued: &IssuedCert) -> CertKey {
    CertKey::from_pem(&issued.cert_pem, issued.key_pem.as_ref().unwrap()).unwrap()
}

/// Raft timings for tests: fast elections, a snapshot every 50 entries, no log kept
/// behind a snapshot (so a lagging member needs the snapshot).
pub fn test_raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: CLUSTER.to_owned(),
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(50),
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
}

/// One running member of a [`Cluster`].
pub struct Member {
    /// Its controller.
    pub node: Controller,
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

/// An in-process controller cluster whose links tests cut (see [`Partitions`]).
pub struct Cluster {
    /// The fleet CA that issued every certificate.
    pub ca: FleetCa,
    /// The fleet CA, as a client trusts it.
    pub trust: FleetTrust,
    /// Where the members' stores live (`c<id>`).
    pub dir: TempDir,
    /// The running members.
    pub members: BTreeMap<NodeId, Member>,
    /// Every member's Raft timings and snapshot policy.
    pub raft: openraft::Config,
    /// The links between the members.
    pub net: Partitions,
    /// What every member serves agents with (the signing CA is [`Cluster::ca`],
    /// shared; lease terms shortened for tests by [`Cluster::start_with_control`]).
    pub control: ControlOptions,
    /// What every member's image uploads and blob sync use (a fast sync for tests).
    pub images: ImageOptions,
}

/// Image settings for tests: the sync loop every 200 ms.
pub fn test_image_options() -> ImageOptions {
    ImageOptions {
        sync_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

impl Cluster {
    /// `n` members (ids 1..=n) that initialize a new cluster together.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, test_raft_config()).await
    }

    /// Like [`Cluster::start`], with these Raft timings and snapshot policy.
    pub async fn start_with(n: u64, raft: openraft::Config) -> Cluster {
        Self::start_with_control(n, raft, |_| {}).await
    }

    /// Like [`Cluster::start_with`], with the `Control` settings `adjust` makes of the
    /// defaults (the signing CA already set).
    pub async fn start_with_control(
        n: u64,
        raft: openraft::Config,
        adjust: impl FnOnce(&mut ControlOptions),
    ) -> Cluster {
        Self::start_configured(n, raft, adjust, test_image_options()).await
    }

    /// Like [`Cluster::start`], with these image settings.
    pub async fn start_with_images(n: u64, images: ImageOptions) -> Cluster {
        Self::start_configured(n, test_raft_config(), |_| {}, images).await
    }

    async fn start_configured(
        n: u64,
        raft: openraft::Config,
        adjust: impl FnOnce(&mut ControlOptions),
        images: ImageOptions,
    ) -> Cluster {
        // As `zfadm pki init` sets a fleet up: leaves from a signing CA, the root trusted.
        let ca = FleetCa::generate(CLUSTER)
            .unwrap()
            .issue_signing_ca(Validity::days(30).unwrap())
            .unwrap();
        let trust = FleetTrust::new(CLUSTER, vec![ca.root_cert_der().clone()]).unwrap();
        // The members sign with a copy of the signing CA (as each controller loads
        // signing-ca.crt/.key from its own files).
        let signing =
            FleetCa::signing_from_pem(ca.root_cert_pem(), ca.cert_pem(), &ca.key_pem()).unwrap();
        let mut control = ControlOptions {
            signing_ca: Some(Arc::new(signing)),
            ..Default::default()
        };
        adjust(&mut control);
        let mut cluster = Cluster {
            control,
            images,
            ca,
            trust,
            dir: TempDir::new().unwrap(),
            members: BTreeMap::new(),
            raft,
            net: Partitions::new(),
        };
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, listener);
        }
        let initial: BTreeMap<NodeId, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
            .collect();
        for (id, listener) in listeners {
            cluster.start_member(id, listener, initial.clone()).await;
        }
        cluster
    }

    /// Member `id`'s data dir.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("c{id}"))
    }

    /// What member `id` starts with (`initial`: the members of a new cluster, or
    /// empty to join), its connections going over [`Cluster::net`].
    pub fn options(&self, id: NodeId, initial: BTreeMap<NodeId, String>) -> NodeOptions {
        let loopback: HostName = "127.0.0.1".parse().unwrap();
        let own = cert_key(
            &self
                .ca
                .issue_controller(&id.to_string(), &[loopback], Validity::days(1).unwrap())
                .unwrap(),
        );
        NodeOptions {
            id,
            cluster: CLUSTER.to_owned(),
            data_dir: self.data_dir(id),
            // Each member enforces the revocations it applied itself, as in production.
            trust: self.trust.with_own_revocations(),
            own,
            raft: self.raft.clone(),
            initial_members: initial,
            // As the binary does: past every lease, one step per id.
            failover: Some(
                zonefleet_controller::raft::failover::FailoverTiming::for_slot(
                    self.raft.election_timeout_max,
                    id - 1,
                ),
            ),
            dialer: self.net.dialer(id),
            control: self.control.clone(),
            images: self.images.clone(),
        }
    }

    /// Starts member `id` on `listener` (joining: `initial` empty).
    pub async fn start_member(
        &mut self,
        id: NodeId,
        listener: TcpListener,
        initial: BTreeMap<NodeId, String>,
    ) {
        let options = self.options(id, initial);
        let tls = server_config(&options.trust, &options.own).unwrap();
        let addr = listener.local_addr().unwrap();
        let node = Controller::start(options).await.unwrap();
        let incoming = TlsIncoming::new(listener, tls, IncomingOptions::default()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server_node = node.clone();
        let server = tokio::spawn(async move {
            let _ = zonefleet_controller::server::serve(server_node, incoming, async {
                let _ = stopped.await;
            })
            .await;
        });
        self.members.insert(
            id,
            Member {
                node,
                addr,
                stop: Some(stop),
                server,
            },
        );
    }

    /// Starts a new, empty member `id` on a fresh port (to be added by membership).
    pub async fn start_joining(&mut self, id: NodeId) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        self.start_member(id, listener, BTreeMap::new()).await;
        addr
    }

    /// Stops member `id` as a crash would (its Raft and its listener), keeping its data.
    pub async fn kill(&mut self, id: NodeId) -> Member {
        let mut member = self.members.remove(&id).expect("member");
        member.node.shutdown().await;
        if let Some(stop) = member.stop.take() {
            let _ = stop.send(());
        }
        member.server.abort();
        member
    }

    /// Starts member `id` (stopped by [`Cluster::kill`], its `Member` dropped) again on
    /// `addr` with its data, once the stopped node has let go of its store.
    pub async fn restart(&mut self, id: NodeId, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The stopped node's tasks drop their store handles shortly after shutdown.
            let db = zonefleet_controller::raft::log_store::open_db(&self.data_dir(id));
            match db {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "reopening {id}'s store: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let listener = TcpListener::bind(addr).await.unwrap();
        self.start_member(id, listener, BTreeMap::new()).await;
    }

    /// Cuts member `id` off from every other member, both ways.
    pub fn isolate(&self, id: NodeId) {
        let others = self.members.keys().copied().filter(|m| *m != id);
        self.net.isolate(id, others);
    }

    /// Heals every cut link.
    pub fn heal(&self) {
        self.net.heal_all();
    }

    /// Member `id`'s controller.
    pub fn node(&self, id: NodeId) -> &Controller {
        &self.members[&id].node
    }

    /// Waits until the members in `among` agree on one leader among them.
    pub async fn leader_among(&self, among: &[NodeId], within: Duration) -> NodeId {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<NodeId>> = among
                .iter()
                .map(|id| self.node(*id).raft().metrics().borrow().current_leader)
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                if among.contains(leader) && leaders.iter().all(|l| *l == Some(*leader)) {
                    let m = self.node(*leader).raft().metrics().borrow().clone();
                    if m.state == openraft::ServerState::Leader {
                        return *leader;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (10 s at most) until every member agrees on one leader.
    pub async fn leader(&self) -> NodeId {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        self.leader_among(&ids, Duration::from_secs(10)).await
    }

    /// A fresh operator certificate.
    pub fn operator_cert(&self) -> CertKey {
        cert_key(
            &self
                .ca
                .issue_operator("admin", Validity::days(1).unwrap())
                .unwrap(),
        )
    }

    /// A channel to member `id`, authenticated as `who`.
    pub async fn channel_as(&self, id: NodeId, who: &CertKey) -> Channel {
        let config = client_config(&self.trust, ExpectedPeer::AnyController, Some(who)).unwrap();
        connect_channel(&self.members[&id].addr.to_string(), config)
            .await
            .unwrap()
    }

    /// An operator's client of member `id`.
    pub async fn operator(&self, id: NodeId) -> OperatorClient<Channel> {
        OperatorClient::new(self.channel_as(id, &self.operator_cert()).await)
    }

    /// A fresh agent certificate (of a random host).
    pub fn agent_cert(&self) -> CertKey {
        cert_key(
            &self
                .ca
                .issue_agent(Uuid::new_v4(), &[], Validity::days(1).unwrap())
                .unwrap(),
        )
    }

    /// A certificate of controller `id` of this cluster (a member or not).
    pub fn other_controller_cert(&self, id: &str) -> CertKey {
        let loopback: HostName = "127.0.0.1".parse().unwrap();
        cert_key(
            &self
                .ca
                .issue_controller(id, &[loopback], Validity::days(1).unwrap())
                .unwrap(),
        )
    }
}
