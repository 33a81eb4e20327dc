//! Image downloads: the converge engine asks for an image its zones need and this
//! host lacks; the fetcher downloads it from the controllers (`DownloadImage`, from
//! any controller that holds the blob: the client fails over), resumably into
//! `<data>/downloads/<sha256>.partial`, checks its size and sha256 before anything
//! is unpacked, imports it into the image store with the fleet's manifest (same
//! uuid, name and version), and tells the engine. One download per image however
//! many zones wait for it.
//!
//! A failure that may pass (no controller reachable, none holding the blob yet, a
//! stream cut) is retried with a backoff and the zones keep waiting; one that will
//! not (the controllers refuse, the archive is refused at unpack) is handed to the
//! engine, and the zones fail naming it.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Code;
use uuid::Uuid;
use zonefleet_proto::pb;
use zonefleet_proto::spec::Signal;

use super::backoff::Backoff;
use super::client::{ClientError, ControlClient};
use crate::image::{ImageStore, ImportOptions};

/// How long one download attempt may take to start (the stream's first message).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the stream may stay silent before the attempt is given up.
const SILENCE: Duration = Duration::from_secs(30);

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// It may pass: tried again.
    #[error("{0}")]
    Passing(String),
    /// It will not pass: the zones fail with it.
    #[error("{0}")]
    Final(String),
}

impl From<ClientError> for FetchError {
    fn from(e: ClientError) -> Self {
        match e.code() {
            None => FetchError::Passing(e.to_string()),
            Some(Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown) => {
                FetchError::Passing(e.to_string())
            }
            Some(_) => FetchError::Final(e.to_string()),
        }
    }
}

fn passing(status: &tonic::Status) -> FetchError {
    FetchError::Passing(format!(
        "the download broke off: {} ({:?})",
        status.message(),
        status.code()
    ))
}

/// The fetcher's settings.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// The controllers.
    pub client: ControlClient,
    /// This host.
    pub host_id: String,
    /// Where partial downloads live (`<data>/downloads`).
    pub downloads: PathBuf,
    /// The image store the archives are imported into.
    pub store: ImageStore,
}

/// The download directory of the data dir `data_dir`.
pub fn downloads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("downloads")
}

/// Serves requests (image references) until the engine is gone: each image is
/// fetched once at a time, then `done(reference, result)` is called; `done`
/// returning false stops the fetcher.
pub async fn run(
    fetcher: Fetcher,
    mut requests: UnboundedReceiver<String>,
    done: impl Fn(String, Result<(), String>) -> bool + Send + Sync + 'static,
) {
    let done = std::sync::Arc::new(done);
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(image) = request else { return };
                if !in_flight.insert(image.clone()) {
                    continue;
                }
                let fetcher = fetcher.clone();
                tasks.spawn(async move {
                    let result = fetch_until_done(&fetcher, &image).await;
                    (image, result)
                });
            }
            Some(finished) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((image, result)) = finished else { continue };
                in_flight.remove(&image);
                if !done(image, result) {
                    return;
                }
            }
        }
    }
}

/// [`fetch`], tried again while its failure may pass.
async fn fetch_until_done(fetcher: &Fetcher, image: &str) -> Result<(), String> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match fetch(fetcher, image).await {
            Ok(()) => return Ok(()),
            Err(FetchError::Final(why)) => {
                tracing::warn!(image, error = %why, "image not fetched");
                return Err(why);
            }
            Err(FetchError::Passing(why)) => {
                let pause = backoff.next_pause();
                tracing::warn!(image, error = %why, ?pause, "image not fetched yet; trying again");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Downloads image `reference` (resuming a partial download), checks it and imports
/// it.
pub async fn fetch(fetcher: &Fetcher, reference: &str) -> Result<(), FetchError> {
    fs::create_dir_all(&fetcher.downloads)
        .map_err(|e| FetchError::Final(format!("{}: {e}", fetcher.downloads.display())))?;
    let mut known: Option<pb::ImageManifest> = None;
    loop {
        let (asked, offset, partial) = match &known {
            None => (reference.to_owned(), 0, None),
            Some(m) => {
                let partial = fetcher.downloads.join(format!("{}.partial", m.sha256));
                let mut have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
                if have > m.size_bytes {
                    let _ = fs::remove_file(&partial);
                    have = 0;
                }
                (format!("sha256:{}", m.sha256), have, Some(partial))
            }
        };
        let request = pb::DownloadImageRequest {
            host_id: fetcher.host_id.clone(),
            image: asked,
            offset,
        };
        let mut stream = tokio::time::timeout(
            START_TIMEOUT,
            fetcher.client.call("DownloadImage", move |mut c| {
                let request = request.clone();
                async move { c.download_image(request).await }
            }),
        )
        .await
        .map_err(|_| FetchError::Passing("no controller started the download".to_owned()))??;
        let first = match tokio::time::timeout(SILENCE, stream.message()).await {
            Err(_) => return Err(FetchError::Passing("the download stalled".to_owned())),
            Ok(Err(status)) => return Err(passing(&status)),
            Ok(Ok(None)) => {
                return Err(FetchError::Passing("the download ended at once".to_owned()))
            }
            Ok(Ok(Some(first))) => first,
        };
        let manifest = first.manifest.clone().ok_or_else(|| {
            FetchError::Final("the controller's first message has no manifest".to_owned())
        })?;
        let Some(partial) = partial else {
            // Now the sha256 is known: resume what an earlier attempt left.
            known = Some(manifest);
            continue;
        };
        if known.as_ref().is_some_and(|k| k.sha256 != manifest.sha256) {
            return Err(FetchError::Final(format!(
                "asked for sha256:{} and got {}",
                known.as_ref().map(|k| k.sha256.as_str()).unwrap_or(""),
                manifest.sha256
            )));
        }
        receive(&partial, offset, first, &mut stream, &manifest).await?;
        let size = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if size < manifest.size_bytes {
            // The stream ended early; resume.
            return Err(FetchError::Passing(format!(
                "the download ended after {size} of {} bytes",
                manifest.size_bytes
            )));
        }
        let store = fetcher.store.clone();
        let done =
            tokio::task::spawn_blocking(move || verify_and_import(&store, &partial, &manifest))
                .await
                .map_err(|e| FetchError::Final(e.to_string()))?;
        return done;
    }
}

/// Appends the stream's bytes to `partial` (which holds `offset` bytes).
async fn receive(
    partial: &Path,
    offset: u64,
    first: pb::ImageChunk,
    stream: &mut tonic::Streaming<pb::ImageChunk>,
    manifest: &pb::ImageManifest,
) -> Result<(), FetchError> {
    let io_err = |e: io::Error| FetchError::Final(format!("{}: {e}", partial.display()));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .map_err(io_err)?;
    let mut at = offset;
    let mut chunk = Some(first);
    loop {
        if let Some(c) = chunk.take() {
            if c.offset != at {
                return Err(FetchError::Passing(format!(
                    "a chunk at {} where {at} was expected",
                    c.offset
                )));
            }
            if at + c.data.len() as u64 > manifest.size_bytes {
                let _ = fs::remove_file(partial);
                return Err(FetchError::Passing(format!(
                    "the download is longer than the image's {} bytes",
                    manifest.size_bytes
                )));
            }
            file.write_all(&c.data).map_err(io_err)?;
            at += c.data.len() as u64;
        }
        match tokio::time::timeout(SILENCE, stream.message()).await {
            Err(_) => return Err(FetchError::Passing("the download stalled".to_owned())),
            Ok(Err(status)) => return Err(passing(&status)),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(next))) => chunk = Some(next),
        }
    }
}

/// Checks the whole download's sha256, then imports it with the fleet's manifest and
/// removes the download. A mismatch removes the download (it starts over).
fn verify_and_import(
    store: &ImageStore,
    partial: &Path,
    manifest: &pb::ImageManifest,
) -> Result<(), FetchError> {
    let label = format!("{}@{}", manifest.name, manifest.version);
    let io_err = |e: io::Error| FetchError::Final(format!("{}: {e}", partial.display()));
    let mut file = File::open(partial).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = hex::encode(hasher.finalize());
    if got != manifest.sha256 {
        let _ = fs::remove_file(partial);
        return Err(FetchError::Passing(format!(
            "image {label}: the download's sha256 is {got}, not {}; downloading again",
            manifest.sha256
        )));
    }
    let uuid = Uuid::parse_str(&manifest.uuid)
        .map_err(|e| FetchError::Final(format!("image {label}: uuid: {e}")))?;
    let halt_signal = match manifest
        .halt_signal
        .as_deref()
        .map(Signal::parse)
        .transpose()
    {
        Ok(signal) => signal,
        Err(e) => {
            let _ = fs::remove_file(partial);
            return Err(FetchError::Final(format!(
                "image {label}: halt_signal: {e}"
            )));
        }
    };
    let imported = store.import(
        partial,
        ImportOptions {
            name: Some(manifest.name.clone()),
            version: Some(manifest.version.clone()),
            expected_sha256: Some(manifest.sha256.clone()),
            min_ram_mib: manifest.min_ram_mib,
            description: manifest.description.clone(),
            uuid: Some(uuid),
            // The store's: the agent's `[images]` settings.
            limits: None,
            halt_signal,
        },
    );
    // Imported or refused, the download is not needed again: a refused archive would
    // be refused the same way.
    let _ = fs::remove_file(partial);
    let imported = imported.map_err(|e| FetchError::Final(format!("image {label}: {e}")))?;
    if imported.name != manifest.name || imported.version != manifest.version {
        return Err(FetchError::Final(format!(
            "image {label}: this host holds the same archive as image {}@{} (imported by hand); delete it with `zonefleet-agent image delete`",
            imported.name, imported.version
        )));
    }
    tracing::info!(image = %manifest.uuid, name = %manifest.name, version = %manifest.version, "image fetched and imported");
    Ok(())
}
