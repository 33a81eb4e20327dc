//! The image RPCs of the `Operator` service (`ImportImage`, `GetImage`,
//! `DeleteImage`); `ListImages` is beside the other listings in [`super::operator`].
//! The upload itself is [`crate::blobs::upload`].

use tonic::{Status, Streaming};
use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

use crate::api::operator::command;
use crate::node::Controller;

fn state_status(e: crate::state::StateError) -> Status {
    Status::new(e.code(), e.to_string())
}

/// `ImportImage`.
pub async fn import(
    node: &Controller,
    stream: Streaming<pb::ImportImageRequest>,
) -> Result<pb::ImageManifest, Status> {
    crate::blobs::upload::import(node, stream).await
}

/// `GetImage`.
pub async fn get(node: &Controller, request: pb::ImageRef) -> Result<pb::ImageManifest, Status> {
    node.read_barrier(request.consistency == pb::ReadConsistency::Stale as i32)
        .await?;
    let state = node.state().await;
    state
        .fleet
        .resolve_image(&request.image)
        .cloned()
        .map_err(state_status)
}

/// `DeleteImage`: the manifest goes by a Raft command (refused while a zone uses the
/// image); this controller removes its blob at once, the others at their next sync
/// pass.
pub async fn delete(node: &Controller, request: pb::ImageRef) -> Result<pb::ImageManifest, Status> {
    let image = get(node, request).await?;
    match node
        .write(command(Kind::DeleteImage(pb::DeleteImageCommand {
            uuid: image.uuid.clone(),
        })))
        .await?
        .result
    {
        Some(R::Image(deleted)) => {
            if let Err(e) = node.blobs().remove(&deleted.sha256) {
                tracing::warn!(sha256 = %deleted.sha256, error = %e, "blob of a deleted image not removed");
            }
            Ok(deleted)
        }
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}
