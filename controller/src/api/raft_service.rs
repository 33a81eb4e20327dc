//! The `Raft` gRPC service: openraft's RPCs from peers, writes forwarded by followers,
//! and read indexes for their linearizable reads. Callable only by controllers (the
//! role layer refuses anyone else), and of those only by the members of the group, each
//! for itself ([`members`]); malformed messages are `INVALID_ARGUMENT`.

use tonic::{Request, Response, Status};
use zonefleet_proto::auth::Role;
use zonefleet_proto::pb;

use crate::api::members::{self, Claim};
use crate::node::Controller;
use crate::raft::{codec, NodeId};

/// The `Raft` service of one controller.
#[derive(Debug, Clone)]
pub struct RaftService {
    node: Controller,
}

impl RaftService {
    /// Serves `node`.
    pub fn new(node: Controller) -> Self {
        RaftService { node }
    }

    /// The calling controller, if a member that may make `claim` (see [`members`]).
    async fn caller<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
        claim: Claim,
    ) -> Result<NodeId, Status> {
        let role = Role::from_request(request)?.clone();
        members::admit(self.node.raft(), &role, rpc, claim).await
    }
}

fn bad(e: codec::CodecError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn raft_err(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let claim = Claim::replication(request.get_ref().vote.as_ref());
        self.caller(&request, "AppendEntries", claim).await?;
        let rpc = codec::append_request_from_pb(request.into_inner()).map_err(bad)?;
        let response = self
            .node
            .raft()
            .append_entries(rpc)
            .await
            .map_err(raft_err)?;
        if !matches!(
            response,
            openraft::raft::AppendEntriesResponse::HigherVote(_)
        ) {
            self.node.leader_contact().touch();
        }
        Ok(Response::new(codec::append_response_to_pb(&response)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let claim = Claim::candidacy(request.get_ref().vote.as_ref());
        self.caller(&request, "Vote", claim).await?;
        let rpc = codec::vote_request_from_pb(request.get_ref()).map_err(bad)?;
        let response = self.node.raft().vote(rpc).await.map_err(raft_err)?;
        Ok(Response::new(codec::vote_response_to_pb(&response)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let claim = Claim::replication(request.get_ref().vote.as_ref());
        self.caller(&request, "InstallSnapshot", claim).await?;
        let rpc = codec::snapshot_request_from_pb(request.into_inner()).map_err(bad)?;
        let response = self
            .node
            .raft()
            .install_snapshot(rpc)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::InstallSnapshotResponse {
            vote: Some(codec::vote_to_pb(&response.vote)),
        }))
    }

    async fn forward_write(
        &self,
        request: Request<pb::ForwardWriteRequest>,
    ) -> Result<Response<pb::ForwardWriteResponse>, Status> {
        self.caller(&request, "ForwardWrite", Claim::Service)
            .await?;
        let request = request.into_inner();
        match (request.command, request.membership_change) {
            (Some(command), None) => {
                let result = self.node.write_as_leader(command).await?;
                Ok(Response::new(pb::ForwardWriteResponse {
                    result: Some(result),
                }))
            }
            (None, Some(change)) => {
                self.node.change_membership_as_leader(change).await?;
                Ok(Response::new(pb::ForwardWriteResponse {
                    result: Some(crate::state::ok(pb::command_result::Result::Done(true))),
                }))
            }
            _ => Err(Status::invalid_argument(
                "exactly one of command and membership_change must be set",
            )),
        }
    }

    async fn forward_heartbeat(
        &self,
        request: Request<pb::ForwardHeartbeatRequest>,
    ) -> Result<Response<pb::ForwardHeartbeatResponse>, Status> {
        self.caller(&request, "ForwardHeartbeat", Claim::Service)
            .await?;
        let request = request.into_inner();
        zonefleet_proto::host::check_host_id(&request.host_id)
            .map_err(|e| Status::invalid_argument(format!("host_id: {e}")))?;
        Ok(Response::new(self.node.heartbeat_as_leader(request).await?))
    }

    async fn put_blob(
        &self,
        request: Request<tonic::Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        self.caller(&request, "PutBlob", Claim::Service).await?;
        crate::blobs::peers::serve_put(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    type GetBlobStream = crate::blobs::peers::BlobStream;

    async fn get_blob(
        &self,
        request: Request<pb::GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        self.caller(&request, "GetBlob", Claim::Service).await?;
        crate::blobs::peers::serve_get(&self.node, request.into_inner()).map(Response::new)
    }

    async fn host_leases(
        &self,
        request: Request<pb::HostLeasesRequest>,
    ) -> Result<Response<pb::HostLeasesResponse>, Status> {
        self.caller(&request, "HostLeases", Claim::Service).await?;
        Ok(Response::new(pb::HostLeasesResponse {
            leases: self.node.host_leases_as_leader()?,
        }))
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.caller(&request, "ReadIndex", Claim::Service).await?;
        let read = self.node.read_index_as_leader().await?;
        Ok(Response::new(pb::ReadIndexResponse {
            read_log_id: codec::opt_log_id_to_pb(read.as_ref()),
        }))
    }
}
