//! The controller's listener: the `Raft`, `Operator` and `Control` services on one
//! mTLS port, behind the role layer (only controllers may call `Raft`, only operators
//! `Operator`, only agents `Control` but for `Enroll`), with explicit message size limits; a controller that leaves the group
//! loses its open connections at once, and so does a revoked certificate.

use std::future::Future;
use std::time::Duration;

use tonic::transport::Server;
use zonefleet_proto::auth::RoleLayer;
use zonefleet_proto::pb::control_server::ControlServer;
use zonefleet_proto::pb::operator_server::OperatorServer;
use zonefleet_proto::pb::raft_server::RaftServer;
use zonefleet_proto::tls::TlsIncoming;

use crate::api::control::{ControlService, MAX_CONTROL_MESSAGE};
use crate::api::members;
use crate::api::operator::{OperatorService, MAX_OPERATOR_ANSWER, MAX_OPERATOR_MESSAGE};
use crate::api::raft_service::RaftService;
use crate::node::Controller;
use crate::raft::network::MAX_RAFT_MESSAGE;

/// Serves `node` on `incoming` until `shutdown` completes, closing the connections of a
/// controller removed from the group meanwhile.
pub async fn serve(
    node: Controller,
    incoming: TlsIncoming,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let raft = RaftServer::new(RaftService::new(node.clone()))
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
    let operator = OperatorServer::new(OperatorService::new(node.clone()))
        .max_decoding_message_size(MAX_OPERATOR_MESSAGE)
        .max_encoding_message_size(MAX_OPERATOR_ANSWER);
    let control = ControlServer::new(ControlService::new(node.clone()))
        .max_decoding_message_size(MAX_CONTROL_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
    let live = incoming.live();
    // Revoked certificates lose their open connections the moment the revocation is
    // applied here.
    node.trust().revocations().enforce_on(live.clone());
    let server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .layer(RoleLayer::new(node.cluster()))
        .add_service(raft)
        .add_service(operator)
        .add_service(control)
        .serve_with_incoming_shutdown(incoming, shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        // The Raft node stopped: nothing left to watch, keep serving.
        () = members::close_removed(node.raft().clone(), live) => server.await,
    }
}
