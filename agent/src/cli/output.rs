//! How the agent's commands print: aligned tables for people, JSON for scripts.

use zonefleet_agent::sysinfo::Sysinfo;
use zonefleet_agent::zone::ps::ZoneProcess;
use zonefleet_agent::zone::ZoneStatus;
use zonefleet_proto::image::ImageManifest;

/// Output format of a listing command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// Prints rows as columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// `zone list`.
pub fn zones(zones: &[ZoneStatus], format: Format) {
    match format {
        Format::Json => json(&zones),
        Format::Table => table(
            &["UUID", "ALIAS", "STATE", "RAM", "IMAGE"],
            zones
                .iter()
                .map(|z| {
                    vec![
                        z.uuid.clone(),
                        z.alias.clone().unwrap_or_else(|| "-".into()),
                        z.state.to_string(),
                        z.record
                            .spec
                            .max_physical_memory
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        z.record.spec.image.to_string(),
                    ]
                })
                .collect(),
        ),
    }
}

/// `zone get`.
pub fn zone(zone: &ZoneStatus, format: Format) {
    match format {
        Format::Json => json(zone),
        Format::Table => zones(std::slice::from_ref(zone), format),
    }
}

/// `zone ps`.
pub fn processes(procs: &[ZoneProcess], format: Format) {
    match format {
        Format::Json => json(&procs),
        Format::Table => table(
            &["PID", "ZONE", "COMMAND"],
            procs
                .iter()
                .map(|p| {
                    vec![
                        p.pid.to_string(),
                        p.alias.clone().unwrap_or_else(|| p.zone.clone()),
                        p.command.clone(),
                    ]
                })
                .collect(),
        ),
    }
}

/// `image list`.
pub fn images(images: &[ImageManifest], format: Format) {
    match format {
        Format::Json => json(&images),
        Format::Table => table(
            &["UUID", "NAME", "VERSION", "SIZE", "SHA256"],
            images
                .iter()
                .map(|i| {
                    vec![
                        i.uuid.to_string(),
                        i.name.clone(),
                        i.version.clone(),
                        i.size.to_string(),
                        i.sha256.to_string()[..12].to_string(),
                    ]
                })
                .collect(),
        ),
    }
}

/// `sysinfo`.
pub fn sysinfo(info: &Sysinfo, format: Format) {
    match format {
        Format::Json => json(info),
        Format::Table => {
            println!("host_id   {}", info.host_id);
            println!("hostname  {}", info.hostname);
            println!("cpus      {}", info.cpus);
            println!("memory    {} MiB", info.memory_mib);
            println!("kernel    {}", info.kernel);
            println!(
                "cgroup    {} ({})",
                info.cgroup_version.as_str(),
                info.cgroup_controllers.join(",")
            );
            table(
                &["FEATURE", "AVAILABLE", "DETAIL"],
                info.features
                    .iter()
                    .map(|f| {
                        vec![
                            f.name.clone(),
                            if f.available { "yes" } else { "no" }.into(),
                            f.detail.clone(),
                        ]
                    })
                    .collect(),
            );
        }
    }
}
