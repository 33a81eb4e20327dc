//! `zfadm image …`: the images the fleet knows. `import` streams an archive to a
//! controller (which copies it to its peers and commits the manifest once a majority
//! holds it), with a progress line on stderr when it is a terminal.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use sha2::{Digest, Sha256};
use tokio_stream::wrappers::ReceiverStream;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;
use zonefleet_proto::pb::import_image_request::Part;

use super::connect::Connection;
use super::progress::Progress;
use super::render::{print_image, print_images};

/// Bytes per upload message.
const CHUNK: usize = 1 << 20;

/// `zfadm image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images the fleet knows.
    List,
    /// Show one image (uuid, `sha256:HEX`, `name` or `name@version`).
    Get {
        /// The image.
        image: String,
    },
    /// Upload an image archive (tar, tar.gz or tar.zst) to the controllers.
    // `--version` is the image's here, not zfadm's.
    #[command(disable_version_flag = true)]
    Import {
        /// The archive.
        file: PathBuf,
        /// The image's name (default: the file name without `.tar.gz` and the like).
        #[arg(long)]
        name: Option<String>,
        /// The image's version (default `0`).
        #[arg(long)]
        version: Option<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// The least memory a zone of the image needs, MiB.
        #[arg(long)]
        min_ram: Option<u64>,
        /// The signal that asks the image's init to shut down, e.g. SIGRTMIN+3 or
        /// SIGPWR (default: detected from the image's init when a zone halts).
        #[arg(long, value_name = "SIGNAL")]
        halt_signal: Option<String>,
    },
    /// Remove an image (refused while a zone uses it); its blobs go from every
    /// controller.
    Delete {
        /// The image.
        image: String,
    },
}

/// Runs an image command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: ImageCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ImageCommand::List => {
            let images = conn
                .call(|mut c| async move {
                    c.list_images(pb::ListImagesRequest::default())
                        .await
                        .map(|r| r.into_inner().images)
                })
                .await?;
            print_images(out, output, &images)
        }
        ImageCommand::Get { image } => {
            let got = conn
                .call(|mut c| {
                    let image = image.clone();
                    async move {
                        c.get_image(pb::ImageRef {
                            image,
                            ..Default::default()
                        })
                        .await
                        .map(|r| r.into_inner())
                    }
                })
                .await?;
            print_image(out, output, &got)
        }
        ImageCommand::Delete { image } => {
            let gone = conn
                .call(|mut c| {
                    let image = image.clone();
                    async move {
                        c.delete_image(pb::ImageRef {
                            image,
                            ..Default::default()
                        })
                        .await
                        .map(|r| r.into_inner())
                    }
                })
                .await?;
            print_image(out, output, &gone)
        }
        ImageCommand::Import {
            file,
            name,
            version,
            description,
            min_ram,
            halt_signal,
        } => {
            let name = name.unwrap_or_else(|| zonefleet_proto::image::default_name(&file));
            zonefleet_proto::image::check_name(&name).context("--name")?;
            if let Some(v) = &version {
                zonefleet_proto::image::check_version(v).context("--version")?;
            }
            let halt_signal = halt_signal
                .map(|s| zonefleet_proto::spec::Signal::parse(&s).map(|sig| sig.to_string()))
                .transpose()
                .context("--halt-signal")?;
            let (sha256, size) = hash(&file)?;
            let start = pb::ImportImageStart {
                name: name.clone(),
                version: version.unwrap_or_default(),
                size_bytes: size,
                sha256,
                min_ram_mib: min_ram.unwrap_or(0),
                description,
                uuid: String::new(),
                halt_signal,
            };
            let progress = Progress::new(size);
            let _drawing = progress.draw(&format!("import {name}"));
            let image = conn
                .call(|mut c| {
                    progress.reset();
                    let stream = chunks(file.clone(), start.clone(), progress.clone());
                    async move { c.import_image(stream).await.map(|r| r.into_inner()) }
                })
                .await?;
            drop(_drawing);
            print_image(out, output, &image)
        }
    }
}

/// The sha256 (lowercase hex) and size of `path`.
fn hash(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    if size == 0 {
        anyhow::bail!("{}: the file is empty", path.display());
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// The upload's messages: `start`, then the file's bytes, read on a blocking thread.
/// A read error ends the stream early: the controller refuses it as truncated.
fn chunks(
    path: PathBuf,
    start: pb::ImportImageStart,
    progress: Progress,
) -> ReceiverStream<pb::ImportImageRequest> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let first = pb::ImportImageRequest {
            part: Some(Part::Start(start)),
        };
        if tx.blocking_send(first).is_err() {
            return;
        }
        let Ok(mut file) = File::open(&path) else {
            return;
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        eprintln!("error: read {}: {e}", path.display());
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            progress.add(filled as u64);
            let message = pb::ImportImageRequest {
                part: Some(Part::Chunk(buf)),
            };
            if tx.blocking_send(message).is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}
