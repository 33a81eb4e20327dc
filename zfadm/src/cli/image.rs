//! `zfadm image …`: the images the fleet knows.

use std::io::Write;

use clap::Subcommand;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::Connection;
use super::render::print_images;

/// `zfadm image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images the fleet knows.
    List,
}

/// Runs an image command.
pub async fn run(
    conn: &Connection,
    output: Format,
    _command: ImageCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let images = conn
        .call(|mut c| async move {
            c.list_images(pb::ListImagesRequest::default())
                .await
                .map(|r| r.into_inner().images)
        })
        .await?;
    print_images(out, output, &images)
}
