//! `ImportImage`: an operator's upload, checked into this controller's blob store,
//! copied to its peers, and committed as a manifest once a majority of voters hold the
//! blob. Every refusal leaves nothing on disk (the writer removes its temporary
//! file; a blob that was written but not committed is removed again).

use tonic::{Status, Streaming};
use uuid::Uuid;
use zonefleet_proto::image::ImageManifest;
use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;
use zonefleet_proto::pb::import_image_request::Part;

use super::peers;
use crate::api::operator::command;
use crate::node::Controller;

/// The manifest an upload's first message describes, checked (uuid chosen when not
/// given, version `0` when not given).
pub fn manifest_of(
    start: pb::ImportImageStart,
    max_bytes: u64,
) -> Result<pb::ImageManifest, Status> {
    if start.size_bytes > max_bytes {
        return Err(Status::invalid_argument(format!(
            "size_bytes: the archive is {} bytes, more than the {max_bytes} bytes this controller takes ([images] max_bytes)",
            start.size_bytes
        )));
    }
    let uuid = if start.uuid.is_empty() {
        Uuid::new_v4().to_string()
    } else {
        start.uuid
    };
    let version = if start.version.is_empty() {
        "0".to_owned()
    } else {
        start.version
    };
    let manifest = pb::ImageManifest {
        uuid,
        name: start.name,
        version,
        sha256: start.sha256,
        size_bytes: start.size_bytes,
        min_ram_mib: start.min_ram_mib,
        description: start.description,
        // Written canonically, as the agents' stores will keep it.
        halt_signal: start
            .halt_signal
            .map(|s| {
                zonefleet_proto::spec::Signal::parse(&s)
                    .map(|sig| sig.to_string())
                    .map_err(|e| Status::invalid_argument(format!("image: halt_signal: {e}")))
            })
            .transpose()?,
    };
    let invalid = |e: &dyn std::fmt::Display| Status::invalid_argument(format!("image: {e}"));
    ImageManifest::try_from(manifest.clone())
        .map_err(|e| invalid(&e))?
        .validate()
        .map_err(|e| invalid(&e))?;
    Ok(manifest)
}

/// Takes one upload (see the module doc).
pub async fn import(
    node: &Controller,
    mut stream: Streaming<pb::ImportImageRequest>,
) -> Result<pb::ImageManifest, Status> {
    let start = match stream.message().await? {
        Some(pb::ImportImageRequest {
            part: Some(Part::Start(start)),
        }) => start,
        _ => {
            return Err(Status::invalid_argument(
                "ImportImage: the first message must be `start` (what the archive is)",
            ))
        }
    };
    let manifest = manifest_of(start, node.image_options().max_bytes)?;
    node.read_barrier(false).await?;
    {
        let state = node.state().await;
        let conflict = state
            .fleet
            .image_conflict(&manifest)
            .map_err(|e| Status::new(e.code(), e.to_string()))?;
        if let Some(existing) = conflict {
            tracing::info!(image = %existing.uuid, "the fleet has this archive already");
            return Ok(existing.clone());
        }
    }
    let store = node.blobs();
    let _pin = store.pin(&manifest.sha256);
    let mut writer = store
        .writer(&manifest.sha256, manifest.size_bytes)
        .map_err(|e| e.to_status())?;
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Chunk(data)) => writer.write(&data).map_err(|e| e.to_status())?,
            _ => {
                return Err(Status::invalid_argument(
                    "ImportImage: only the first message may be `start`",
                ))
            }
        }
    }
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| e.to_status())?;
    let committed = commit(node, &manifest).await;
    if committed.is_err() && !held_by_a_manifest(node, &manifest.sha256).await {
        let _ = store.remove(&manifest.sha256);
    }
    committed
}

/// Copies the blob to the peers and proposes the manifest once a majority holds it.
async fn commit(
    node: &Controller,
    manifest: &pb::ImageManifest,
) -> Result<pb::ImageManifest, Status> {
    let replication = peers::replicate(node, &manifest.sha256, manifest.size_bytes).await;
    if !replication.majority() {
        return Err(Status::unavailable(format!(
            "the image reached only {} of {} controllers, not a majority ({}); nothing was committed",
            replication.held,
            replication.voters,
            replication.failed.join("; ")
        )));
    }
    tracing::info!(image = %manifest.uuid, name = %manifest.name, version = %manifest.version,
        held = replication.held, voters = replication.voters, "blob on a majority: committing");
    match node
        .write(command(Kind::PutImage(pb::PutImageCommand {
            image: Some(manifest.clone()),
        })))
        .await?
        .result
    {
        Some(R::Image(image)) => Ok(image),
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

async fn held_by_a_manifest(node: &Controller, sha256: &str) -> bool {
    node.state()
        .await
        .fleet
        .images
        .values()
        .any(|i| i.sha256 == sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(halt_signal: Option<&str>) -> pb::ImportImageStart {
        pb::ImportImageStart {
            name: "base".into(),
            size_bytes: 10,
            sha256: "ab".repeat(32),
            halt_signal: halt_signal.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn the_halt_signal_is_checked_and_kept_canonical() {
        let manifest = manifest_of(start(Some("rtmin+3")), 100).unwrap();
        assert_eq!(manifest.halt_signal.as_deref(), Some("SIGRTMIN+3"));
        assert_eq!(manifest_of(start(None), 100).unwrap().halt_signal, None);
        let refused = manifest_of(start(Some("SIGKILL")), 100).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused
                .message()
                .starts_with("image: halt_signal: \"SIGKILL\" cannot be caught"),
            "{}",
            refused.message()
        );
    }
}
