//! `zonefleet-agent image …`: the host's image store.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use zonefleet_agent::image::{ImageStore, ImportOptions};
use zonefleet_agent::zone::host::{HostOptions, ZoneHost};
use zonefleet_proto::cli::Format;
use zonefleet_proto::spec::Signal;

use super::output;

/// Image commands. IMAGE is a uuid, `sha256:<hex>` (or a unique prefix), or
/// `name[@version]`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a tar, tar.gz or tar.zst root filesystem.
    Import {
        /// The archive.
        file: PathBuf,
        /// The image name (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// The image version (default: 0).
        #[arg(long)]
        version: Option<String>,
        /// Refuse the archive unless its sha256 is this.
        #[arg(long)]
        sha256: Option<String>,
        /// Minimum RAM a zone of this image needs, in MiB.
        #[arg(long, default_value_t = 0)]
        min_ram: u64,
        /// The signal that asks the image's init to shut down, e.g. SIGRTMIN+3 or
        /// SIGPWR (default: detected from the image's init when a zone halts).
        #[arg(long, value_name = "SIGNAL", value_parser = parse_signal)]
        halt_signal: Option<Signal>,
    },
    /// List images.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete an image no zone uses.
    Delete {
        /// The image.
        image: String,
    },
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    Signal::parse(s).map_err(|e| e.to_string())
}

/// Runs an image command; returns the exit code.
pub fn run(data_dir: &Path, cmd: ImageCommand) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Import {
            file,
            name,
            version,
            sha256,
            min_ram,
            halt_signal,
        } => {
            let store = ImageStore::open(data_dir)?;
            let record = store.import(
                &file,
                ImportOptions {
                    name,
                    version,
                    expected_sha256: sha256,
                    min_ram_mib: min_ram,
                    halt_signal,
                    ..ImportOptions::default()
                },
            )?;
            println!(
                "{} {}@{} sha256:{}",
                record.uuid, record.name, record.version, record.sha256
            );
            Ok(0)
        }
        ImageCommand::List { output } => {
            output::images(&ImageStore::open(data_dir)?.list()?, output)?;
            Ok(0)
        }
        ImageCommand::Delete { image } => {
            let host = ZoneHost::open(HostOptions::new(data_dir))?;
            let zones = host.list()?;
            let record = host.images.delete(&image, |img| {
                zones
                    .iter()
                    .any(|z| z.record.image_sha256 == img.sha256.to_string())
            })?;
            println!("deleted {}@{}", record.name, record.version);
            Ok(0)
        }
    }
}
