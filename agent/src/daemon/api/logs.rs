//! `Agent.Logs`: a zone's console log (what its init wrote; zsched keeps
//! `console.log` and the rotated `console.log.1`), the last `tail_bytes` of it or all
//! of it, then, with `follow`, what is appended, across rotations, until the caller
//! goes away or the zone is deleted.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tonic::Status;
use zonefleet_proto::pb;

use crate::zone::ZoneHost;

/// The largest chunk sent.
const CHUNK: usize = 64 * 1024;
/// How often a followed log is looked at for more.
const POLL: Duration = Duration::from_millis(200);

/// The stream of a `Logs` call.
pub type Outgoing = mpsc::Receiver<Result<pb::LogChunk, Status>>;

/// Starts streaming the log `request` names.
pub async fn start(host: Arc<ZoneHost>, request: pb::LogsRequest) -> Result<Outgoing, Status> {
    if request.zone.is_empty() {
        return Err(Status::invalid_argument("zone: empty"));
    }
    let console = {
        let zone = request.zone.clone();
        tokio::task::spawn_blocking(move || {
            host.resolve(&zone)
                .map(|uuid| host.paths(&uuid).console())
                .map_err(super::zone_status)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??
    };
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if let Err(status) = send_log(&console, &request, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(rx)
}

fn io_status(path: &Path, e: std::io::Error) -> Status {
    Status::internal(format!("{}: {e}", path.display()))
}

/// Reads all of `path`, or nothing when it does not exist.
async fn read_or_empty(path: &Path) -> Result<Vec<u8>, Status> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_status(path, e)),
    }
}

/// Sends `bytes` in chunks; false when the caller went away.
async fn send(tx: &mpsc::Sender<Result<pb::LogChunk, Status>>, bytes: &[u8]) -> bool {
    for chunk in bytes.chunks(CHUNK) {
        let message = pb::LogChunk {
            data: chunk.to_vec(),
        };
        if tx.send(Ok(message)).await.is_err() {
            return false;
        }
    }
    true
}

async fn open(path: &Path) -> Option<(tokio::fs::File, u64)> {
    let file = tokio::fs::File::open(path).await.ok()?;
    let inode = file.metadata().await.ok()?.ino();
    Some((file, inode))
}

async fn send_log(
    console: &Path,
    request: &pb::LogsRequest,
    tx: &mpsc::Sender<Result<pb::LogChunk, Status>>,
) -> Result<(), Status> {
    let rotated: PathBuf = console.with_extension("log.1");
    // The current file is opened first: whatever is appended after the read below is
    // what following it reads, even when it is rotated in between.
    let mut current = open(console).await;
    let mut retained = read_or_empty(&rotated).await?;
    if let Some((file, _)) = current.as_mut() {
        file.read_to_end(&mut retained)
            .await
            .map_err(|e| io_status(console, e))?;
    }
    let tail = usize::try_from(request.tail_bytes).unwrap_or(usize::MAX);
    let from = if tail == 0 {
        0
    } else {
        retained.len().saturating_sub(tail)
    };
    if !send(tx, &retained[from..]).await || !request.follow {
        return Ok(());
    }
    drop(retained);
    let zone_dir = console.parent().map(Path::to_owned);
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Everything appended to the file held, then whether it was rotated away.
        if let Some((file, _)) = current.as_mut() {
            loop {
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| io_status(console, e))?;
                if n == 0 {
                    break;
                }
                if !send(tx, &buf[..n]).await {
                    return Ok(());
                }
            }
        }
        let now = tokio::fs::metadata(console).await.ok().map(|m| m.ino());
        let held = current.as_ref().map(|(_, inode)| *inode);
        if now.is_some() && now != held {
            // Rotated (or made): the held file is complete; read the new one from 0.
            current = open(console).await;
            if let Some((file, _)) = current.as_mut() {
                file.seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(|e| io_status(console, e))?;
            }
            continue;
        }
        if zone_dir.as_deref().is_some_and(|d| !d.exists()) {
            // The zone was deleted: its log ends here.
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tx.closed() => return Ok(()),
        }
    }
}
