//! Blobs between controllers, on the `Raft` service (mTLS, members only):
//! `PutBlob` (the controller that took an upload copies the blob to each peer before
//! the manifest is proposed) and `GetBlob` (a controller that lacks the blob of a
//! committed manifest fetches it). Also the chunked file reader every blob stream
//! (to peers, to agents) is made of.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use zonefleet_proto::pb;

use super::store::check_digest;
use super::CHUNK_BYTES;
use crate::node::Controller;
use crate::raft::NodeId;

/// Chunks a stream keeps buffered ahead of its reader.
const AHEAD: usize = 4;

/// How long copying one blob to or from one peer may take, at least.
const MIN_PEER_TIME: Duration = Duration::from_secs(30);

/// The time one peer copy of `size` bytes may take: 30 s, plus a second per 20 MiB.
pub fn peer_time(size: u64) -> Duration {
    MIN_PEER_TIME + Duration::from_secs(size / (20 << 20))
}

/// Streams the file at `path` from `offset` on, in [`CHUNK_BYTES`] pieces, each made
/// into a message by `message(data, offset_of_data, is_first)`. Read on a blocking
/// thread; the stream ends early (with an error) if the file cannot be read.
pub fn read_chunks<T: Send + 'static>(
    path: PathBuf,
    offset: u64,
    message: impl Fn(Vec<u8>, u64, bool) -> T + Send + 'static,
) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        let fail = |what: String| Status::internal(what);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(fail(format!("{}: {e}", path.display()))));
                return;
            }
        };
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let _ = tx.blocking_send(Err(fail(format!("{}: {e}", path.display()))));
            return;
        }
        let mut at = offset;
        let mut first = true;
        loop {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(fail(format!("{}: {e}", path.display()))));
                        return;
                    }
                }
            }
            buf.truncate(filled);
            // The first message goes even when empty: it carries the metadata.
            if filled == 0 && !first {
                return;
            }
            let len = filled as u64;
            if tx.blocking_send(Ok(message(buf, at, first))).is_err() {
                return;
            }
            first = false;
            at += len;
            if filled == 0 {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Serves `PutBlob`: the first message names the blob; a blob already held is
/// answered at once (the rest of the stream is not read).
pub async fn serve_put(
    node: &Controller,
    mut stream: Streaming<pb::BlobChunk>,
) -> Result<pb::PutBlobResponse, Status> {
    let first = stream
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("PutBlob: an empty stream"))?;
    check_digest(&first.sha256).map_err(|e| e.to_status())?;
    let max = node.image_options().max_bytes;
    if first.size_bytes == 0 || first.size_bytes > max {
        return Err(Status::invalid_argument(format!(
            "PutBlob: size_bytes {} is not within 1..={max}",
            first.size_bytes
        )));
    }
    let store = node.blobs();
    if store.size(&first.sha256) == Some(first.size_bytes) {
        return Ok(pb::PutBlobResponse { already_held: true });
    }
    let mut writer = store
        .writer(&first.sha256, first.size_bytes)
        .map_err(|e| e.to_status())?;
    writer.write(&first.data).map_err(|e| e.to_status())?;
    while let Some(chunk) = stream.message().await? {
        writer.write(&chunk.data).map_err(|e| e.to_status())?;
    }
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| e.to_status())?;
    tracing::info!(sha256 = %first.sha256, bytes = first.size_bytes, "blob received from a peer");
    Ok(pb::PutBlobResponse {
        already_held: false,
    })
}

/// The stream `GetBlob` answers with.
pub type BlobStream = ReceiverStream<Result<pb::BlobChunk, Status>>;

/// Serves `GetBlob`: the blob from `offset`, the first message naming it.
pub fn serve_get(node: &Controller, request: pb::GetBlobRequest) -> Result<BlobStream, Status> {
    check_digest(&request.sha256).map_err(|e| e.to_status())?;
    let store = node.blobs();
    let size = store.size(&request.sha256).ok_or_else(|| {
        Status::not_found(format!(
            "no blob sha256:{} on this controller",
            request.sha256
        ))
    })?;
    if request.offset > size {
        return Err(Status::out_of_range(format!(
            "offset {} is past the blob's {size} bytes",
            request.offset
        )));
    }
    let sha256 = request.sha256.clone();
    Ok(read_chunks(
        store.path(&request.sha256),
        request.offset,
        move |data, _, first| pb::BlobChunk {
            sha256: if first { sha256.clone() } else { String::new() },
            size_bytes: if first { size } else { 0 },
            data,
        },
    ))
}

/// Copies blob `sha256` (`size` bytes) to member `id`; whether it had it already.
pub async fn push(
    node: &Controller,
    id: NodeId,
    addr: &str,
    sha256: &str,
    size: u64,
) -> Result<bool, Status> {
    let mut client = node.peer_client(id, addr)?;
    let digest = sha256.to_owned();
    let chunks = read_chunks(node.blobs().path(sha256), 0, move |data, _, first| {
        pb::BlobChunk {
            sha256: if first { digest.clone() } else { String::new() },
            size_bytes: if first { size } else { 0 },
            data,
        }
    })
    // A read error ends the stream short: the peer refuses it as truncated.
    .filter_map(Result::ok);
    let mut request = tonic::Request::new(chunks);
    request.set_timeout(peer_time(size));
    Ok(client.put_blob(request).await?.into_inner().already_held)
}

/// How many voters hold a blob after [`replicate`].
#[derive(Debug, Clone)]
pub struct Replication {
    /// Voters that hold it (this controller included, when a voter).
    pub held: usize,
    /// Voters in the membership.
    pub voters: usize,
    /// Each peer that failed, and why.
    pub failed: Vec<String>,
}

impl Replication {
    /// Whether a majority of voters hold the blob.
    pub fn majority(&self) -> bool {
        self.held * 2 > self.voters
    }
}

/// Copies blob `sha256` to every other member at once and counts the voters that
/// hold it. Waits for every peer (each bounded by [`peer_time`]): a learner or slow
/// voter gets the blob now rather than from the sync loop later.
pub async fn replicate(node: &Controller, sha256: &str, size: u64) -> Replication {
    let (voters, others) = node.blob_peers();
    let mut tasks = tokio::task::JoinSet::new();
    for (id, addr) in others {
        let node = node.clone();
        let sha256 = sha256.to_owned();
        tasks.spawn(async move {
            let r = push(&node, id, &addr, &sha256, size).await;
            (id, r)
        });
    }
    let mut held = usize::from(voters.contains(&node.id()));
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let Ok((id, result)) = done else { continue };
        match result {
            Ok(_) if voters.contains(&id) => held += 1,
            Ok(_) => {}
            Err(status) => {
                tracing::warn!(peer = id, sha256, error = %status.message(), "blob not copied to a peer");
                failed.push(format!("controller {id}: {}", status.message()));
            }
        }
    }
    Replication {
        held,
        voters: voters.len(),
        failed,
    }
}

/// Fetches blob `sha256` (`size` bytes) from the first member that has it.
pub async fn fetch(node: &Controller, sha256: &str, size: u64) -> Result<(), String> {
    let (_, others) = node.blob_peers();
    let mut tried = Vec::new();
    for (id, addr) in others {
        match fetch_from(node, id, &addr, sha256, size).await {
            Ok(()) => {
                tracing::info!(peer = id, sha256, bytes = size, "blob fetched from a peer");
                return Ok(());
            }
            Err(e) => tried.push(format!("controller {id}: {e}")),
        }
    }
    Err(if tried.is_empty() {
        "no other controller to fetch from".to_owned()
    } else {
        tried.join("; ")
    })
}

async fn fetch_from(
    node: &Controller,
    id: NodeId,
    addr: &str,
    sha256: &str,
    size: u64,
) -> Result<(), String> {
    let mut client = node
        .peer_client(id, addr)
        .map_err(|s| s.message().to_owned())?;
    let mut request = tonic::Request::new(pb::GetBlobRequest {
        sha256: sha256.to_owned(),
        offset: 0,
    });
    request.set_timeout(peer_time(size));
    let mut stream = client
        .get_blob(request)
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let mut writer = node
        .blobs()
        .writer(sha256, size)
        .map_err(|e| e.to_string())?;
    while let Some(chunk) = stream.message().await.map_err(|s| s.message().to_owned())? {
        writer.write(&chunk.data).map_err(|e| e.to_string())?;
    }
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}
