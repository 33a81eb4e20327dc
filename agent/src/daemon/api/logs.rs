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

/// Sends what the held file has after its read position, to its end; false when the
/// caller went away.
async fn drain(
    current: &mut Option<(tokio::fs::File, u64)>,
    console: &Path,
    buf: &mut [u8],
    tx: &mpsc::Sender<Result<pb::LogChunk, Status>>,
) -> Result<bool, Status> {
    let Some((file, _)) = current.as_mut() else {
        return Ok(true);
    };
    loop {
        let n = file.read(buf).await.map_err(|e| io_status(console, e))?;
        if n == 0 {
            return Ok(true);
        }
        if !send(tx, &buf[..n]).await {
            return Ok(false);
        }
    }
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
        if !drain(&mut current, console, &mut buf, tx).await? {
            return Ok(());
        }
        let now = tokio::fs::metadata(console).await.ok().map(|m| m.ino());
        let held = current.as_ref().map(|(_, inode)| *inode);
        if now.is_some() && now != held {
            // Rotated (or made): the held file is complete now, but what was appended
            // to it between the read above and the rotation is still unread: read it
            // to its end, then the new file from 0.
            if !drain(&mut current, console, &mut buf, tx).await? {
                return Ok(());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut Outgoing) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a chunk within 5 s")
            .expect("the stream goes on")
            .expect("no error")
            .data
    }

    #[tokio::test]
    async fn the_tail_then_what_is_appended_across_a_rotation_until_the_zone_goes() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("zone");
        std::fs::create_dir(&zone).unwrap();
        let console = zone.join("console.log");
        std::fs::write(console.with_extension("log.1"), b"old\n").unwrap();
        std::fs::write(&console, b"booted\n").unwrap();
        let request = |tail_bytes, follow| pb::LogsRequest {
            zone: "z".into(),
            follow,
            tail_bytes,
        };

        // Not followed: everything retained (or its tail), then the end.
        for (tail, want) in [
            (0, &b"old\nbooted\n"[..]),
            (9, b"d\nbooted\n"),
            (99, b"old\nbooted\n"),
        ] {
            let (tx, mut rx) = mpsc::channel(8);
            send_log(&console, &request(tail, false), &tx)
                .await
                .unwrap();
            drop(tx);
            assert_eq!(next(&mut rx).await, want, "tail {tail}");
            assert!(rx.recv().await.is_none());
        }

        // Followed: appends, a rotation (the held file's rest, then the new file), and
        // the end when the zone's directory goes.
        let (tx, mut rx) = mpsc::channel(8);
        let follower = {
            let console = console.clone();
            tokio::spawn(async move { send_log(&console, &request(7, true), &tx).await })
        };
        assert_eq!(next(&mut rx).await, b"booted\n");
        let append = |bytes: &[u8]| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&console)
                .unwrap();
            f.write_all(bytes).unwrap();
        };
        append(b"one\n");
        assert_eq!(next(&mut rx).await, b"one\n");
        append(b"two\n");
        std::fs::rename(&console, console.with_extension("log.1")).unwrap();
        std::fs::write(&console, b"three\n").unwrap();
        let mut seen = Vec::new();
        while seen.len() < b"two\nthree\n".len() {
            seen.extend(next(&mut rx).await);
        }
        assert_eq!(seen, b"two\nthree\n");
        std::fs::remove_dir_all(&zone).unwrap();
        tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("the follow ends once the zone is gone")
            .unwrap()
            .unwrap();
    }
}
