//! Generates the gRPC contract from `proto/zonefleet/v1/*.proto` with a vendored
//! `protoc`, so a clean machine needs nothing installed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let dir = PathBuf::from("proto/zonefleet/v1");
    let files: Vec<PathBuf> = ["types", "operator", "control", "agent", "raft"]
        .iter()
        .map(|name| dir.join(format!("{name}.proto")))
        .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("zonefleet_v1_descriptor.bin"))
        .compile_protos(&files, &[PathBuf::from("proto")])?;
    Ok(())
}
