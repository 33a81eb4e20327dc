//! How the agent's commands print: aligned tables for people, JSON for scripts.

use std::io::Write;

use zonefleet_agent::sysinfo::Sysinfo;
use zonefleet_agent::zone::ps::ZoneProcess;
use zonefleet_agent::zone::ZoneStatus;
use zonefleet_proto::cli::{table, write_json, Format};
use zonefleet_proto::image::ImageManifest;

/// Standard output, where every listing goes.
fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// `zone list`.
pub fn zones(zones: &[ZoneStatus], format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => write_json(&mut stdout(), &zones),
        Format::Table => table(
            &mut stdout(),
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
pub fn zone(zone: &ZoneStatus, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => write_json(&mut stdout(), zone),
        Format::Table => zones(std::slice::from_ref(zone), format),
    }
}

/// `zone ps`.
pub fn processes(procs: &[ZoneProcess], format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => write_json(&mut stdout(), &procs),
        Format::Table => table(
            &mut stdout(),
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
pub fn images(images: &[ImageManifest], format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => write_json(&mut stdout(), &images),
        Format::Table => table(
            &mut stdout(),
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
pub fn sysinfo(info: &Sysinfo, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => write_json(&mut stdout(), info),
        Format::Table => {
            let mut out = stdout();
            writeln!(out, "host_id   {}", info.host_id)?;
            writeln!(out, "hostname  {}", info.hostname)?;
            writeln!(out, "cpus      {}", info.cpus)?;
            writeln!(out, "memory    {} MiB", info.memory_mib)?;
            writeln!(out, "kernel    {}", info.kernel)?;
            writeln!(
                out,
                "cgroup    {} ({})",
                info.cgroup_version.as_str(),
                info.cgroup_controllers.join(",")
            )?;
            table(
                &mut out,
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
            )
        }
    }
}
