//! `DownloadImage`: an agent fetches the archive of an image that a zone assigned to
//! its host uses, from any controller that holds the blob, from an offset (to resume).
//! An image no zone of the caller's host uses is `PERMISSION_DENIED`, whoever else
//! uses it: a host reads only what it runs.

use tonic::{Request, Status};
use zonefleet_proto::pb;

use super::own_host;
use crate::blobs::peers::read_chunks;
use crate::node::Controller;
use crate::state::images::image_label;
use crate::state::reports::assigned_to;
use crate::state::FleetState;

/// The stream `DownloadImage` answers with.
pub type ImageStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ImageChunk, Status>>;

/// The image `reference` names, if a zone assigned to `host` (not deleted) uses it.
fn authorized(
    fleet: &FleetState,
    host: &str,
    reference: &str,
) -> Result<pb::ImageManifest, Status> {
    let image = fleet
        .resolve_image(reference)
        .map_err(|e| Status::new(e.code(), e.to_string()))?;
    let used = fleet.zones.values().any(|z| {
        assigned_to(z, host)
            && z.desired_state != pb::ZoneState::Deleted as i32
            && fleet.image_of(z).is_some_and(|i| i.uuid == image.uuid)
    });
    if used {
        Ok(image.clone())
    } else {
        Err(Status::permission_denied(format!(
            "no zone assigned to host {host} uses image {}",
            image_label(image)
        )))
    }
}

pub(super) async fn download(
    node: &Controller,
    request: Request<pb::DownloadImageRequest>,
) -> Result<ImageStream, Status> {
    let host = own_host(&request, &request.get_ref().host_id)?;
    let request = request.into_inner();
    let first = authorized(&node.state().await.fleet, &host, &request.image);
    let image = match first {
        Ok(image) => image,
        // This controller may not have applied the assignment the agent saw on
        // another one: ask again after a read barrier.
        Err(refused)
            if refused.code() == tonic::Code::PermissionDenied
                || refused.code() == tonic::Code::NotFound =>
        {
            if node.read_barrier(false).await.is_err() {
                return Err(refused);
            }
            authorized(&node.state().await.fleet, &host, &request.image)?
        }
        Err(e) => return Err(e),
    };
    let store = node.blobs();
    let Some(size) = store.size(&image.sha256).filter(|s| *s == image.size_bytes) else {
        return Err(Status::unavailable(format!(
            "controller {} does not hold the blob of image {} yet; try another",
            node.id(),
            image_label(&image)
        )));
    };
    if request.offset > size {
        return Err(Status::out_of_range(format!(
            "offset {} is past the end of image {} ({size} bytes)",
            request.offset,
            image_label(&image)
        )));
    }
    tracing::info!(host = %host, image = %image.uuid, offset = request.offset, "serving an image download");
    Ok(read_chunks(
        store.path(&image.sha256),
        request.offset,
        move |data, offset, first| pb::ImageChunk {
            manifest: first.then(|| image.clone()),
            offset,
            data,
        },
    ))
}
