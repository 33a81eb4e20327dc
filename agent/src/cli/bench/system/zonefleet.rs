//! The zonefleet system under test: one zone of the image (`max_physical_memory`
//! 256, `quota` 2, no NICs: its own network namespace with `lo`), booted with
//! the zone library as `zone boot` does and halted with SIGKILL (the benchmark's
//! host has no halt grace period), as the peers are stopped.

use std::path::Path;

use anyhow::Context;
use zonefleet_agent::image::ImportOptions;
use zonefleet_agent::zone::host::ZoneHost;
use zonefleet_proto::spec::ZoneSpec;

use super::memory::Memory;
use super::{System, MEMORY_BYTES};

/// The zonefleet system under test.
pub(super) struct Zone<'h> {
    host: &'h ZoneHost,
    uuid: String,
    init: Option<i32>,
    zsched: Option<i32>,
}

impl<'h> Zone<'h> {
    /// Imports `image` into `host` and creates the zone (the host's guard
    /// deletes both).
    pub fn create(host: &'h ZoneHost, image: &Path) -> anyhow::Result<Zone<'h>> {
        let record = host.images.import(
            image,
            ImportOptions {
                name: Some("bench-system".into()),
                ..Default::default()
            },
        )?;
        super::unpack::check_systemd(&host.images.rootfs_path(&record.sha256.to_string())?, image)?;
        let spec = ZoneSpec::from_json(&format!(
            r#"{{"alias": "bench-system", "image": "bench-system",
                "max_physical_memory": {}, "quota": 2}}"#,
            MEMORY_BYTES >> 20
        ))?;
        let status = host.create(spec)?;
        Ok(Zone {
            host,
            uuid: status.uuid,
            init: None,
            zsched: None,
        })
    }
}

impl System for Zone<'_> {
    fn name(&self) -> &'static str {
        "zonefleet"
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let status = self.host.boot(&self.uuid)?;
        self.init = status.init_pid;
        self.zsched = status.zsched_pid;
        Ok(())
    }

    fn init_pid(&mut self) -> anyhow::Result<Option<i32>> {
        if self.init.is_none() {
            let status = self.host.get(&self.uuid)?;
            self.init = status.init_pid;
            self.zsched = status.zsched_pid;
        }
        Ok(self.init)
    }

    fn memory(&self, init: i32) -> anyhow::Result<Memory> {
        let usage = self.host.cgroups.usage(&self.uuid)?;
        let zsched = self.zsched.context("zsched's pid is not known")?;
        Memory::measure(init, usage.memory_bytes, zsched, false)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        self.init = None;
        self.zsched = None;
        // A no-op for a zone that is not running.
        self.host.halt(&self.uuid)?;
        Ok(())
    }
}
