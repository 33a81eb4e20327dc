//! `zfadm bench --to-running N`: zones end to end on a fleet with hosts. N zones are
//! created one at a time, each timed from the `CreateZones` call to `running` as
//! `GetZone` sees it (polled every 2 ms); or, with `--batch B`, created in batches of B
//! (one `CreateZones` per batch) and timed until every one is running.
//! The zones are deleted at the end unless `--keep`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tonic::transport::Channel;
use zonefleet_proto::cli::{percentile, read_input, write_json, Format};
use zonefleet_proto::pb;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::spec::ZoneSpec;

use super::super::connect::Connection;

/// The zone the benchmark creates unless `-f` names another: the smallest busybox zone.
const DEFAULT_SPEC: &str =
    r#"{"image": "busybox", "max_physical_memory": 16, "quota": 1, "tmpfs": 1}"#;

/// How long one zone, or one batch run, may take to be running.
const ZONE_WITHIN: Duration = Duration::from_secs(60);
const BATCH_WITHIN: Duration = Duration::from_secs(600);

/// What the run measured.
struct Measured {
    sequential: Vec<Duration>,
    batch: Option<(usize, usize, Duration)>,
}

/// Runs it and prints a table (or JSON).
pub async fn run(
    conn: &Connection,
    n: usize,
    batch: Option<usize>,
    file: Option<&std::path::Path>,
    keep: bool,
    output: Format,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let text = match file {
        Some(f) => read_input(f)?,
        None => DEFAULT_SPEC.to_owned(),
    };
    let spec: pb::ZoneSpec = ZoneSpec::from_json_validated(&text)
        .with_context(|| file.map_or("the default spec".into(), |f| f.display().to_string()))?
        .into();
    let leader = conn.controllers()[0].clone();
    let mut client = conn.operator(&leader).await?;
    let mut made = Vec::new();
    let measured = measure(&mut client, &spec, n, batch, &mut made).await;
    if !keep {
        delete_all(&mut client, &made).await;
    }
    let m = measured?;
    let mut sorted = m.sequential.clone();
    sorted.sort();
    let ms = |p| percentile(&sorted, p).map_or(0.0, |d: Duration| d.as_secs_f64() * 1000.0);
    if output == Format::Json {
        let mut v = json!({"zones": n, "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0)});
        if let Some((total, size, took)) = m.batch {
            v["batch"] = json!({"zones": total, "batch_size": size,
                "seconds": took.as_secs_f64(), "zones_per_sec": total as f64 / took.as_secs_f64()});
        }
        return Ok(write_json(out, &v)?);
    }
    if !m.sequential.is_empty() {
        writeln!(
            out,
            "create → running, one at a time: {n} zones, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(0.5),
            ms(0.99),
            ms(1.0)
        )?;
    }
    if let Some((total, size, took)) = m.batch {
        writeln!(
            out,
            "create → running in batches of {size}: {total} zones in {:.2} s, {:.0} zones/s",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64()
        )?;
    }
    Ok(())
}

async fn measure(
    client: &mut OperatorClient<Channel>,
    spec: &pb::ZoneSpec,
    n: usize,
    batch: Option<usize>,
    made: &mut Vec<String>,
) -> anyhow::Result<Measured> {
    let mut sequential = Vec::with_capacity(n);
    for _ in 0..if batch.is_some() { 0 } else { n } {
        let started = Instant::now();
        let uuid = create(client, spec, 1).await?.remove(0);
        made.push(uuid.clone());
        wait_running(client, &uuid).await?;
        sequential.push(started.elapsed());
    }
    let batch = match batch {
        None => None,
        Some(size) => {
            let size = size.max(1);
            let started = Instant::now();
            let mut pending = Vec::with_capacity(n);
            let mut left = n;
            while left > 0 {
                let count = left.min(size);
                let uuids = create(client, spec, count as u32).await?;
                made.extend(uuids.iter().cloned());
                pending.extend(uuids);
                left -= count;
            }
            wait_all_running(client, &pending).await?;
            Some((n, size, started.elapsed()))
        }
    };
    Ok(Measured { sequential, batch })
}

async fn create(
    client: &mut OperatorClient<Channel>,
    spec: &pb::ZoneSpec,
    count: u32,
) -> anyhow::Result<Vec<String>> {
    let response = client
        .create_zones(pb::CreateZonesRequest {
            spec: Some(spec.clone()),
            count,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            dry_run: false,
        })
        .await
        .context("CreateZones")?
        .into_inner();
    Ok(response
        .zones
        .into_iter()
        .map(|z| uuid_of(&z).to_owned())
        .collect())
}

fn uuid_of(zone: &pb::Zone) -> &str {
    zone.spec
        .as_ref()
        .and_then(|s| s.uuid.as_deref())
        .unwrap_or_default()
}

fn state(zone: &pb::Zone) -> pb::ZoneState {
    pb::ZoneState::try_from(zone.observed_state).unwrap_or_default()
}

async fn wait_running(client: &mut OperatorClient<Channel>, uuid: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + ZONE_WITHIN;
    loop {
        let zone = client
            .get_zone(pb::GetZoneRequest {
                zone: uuid.to_owned(),
                consistency: 0,
            })
            .await?
            .into_inner();
        match state(&zone) {
            pb::ZoneState::Running => return Ok(()),
            pb::ZoneState::Failed => bail!("zone {uuid} failed: {}", zone.message),
            _ if Instant::now() > deadline => {
                bail!(
                    "zone {uuid} not running within {ZONE_WITHIN:?}: {}",
                    zone.message
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

async fn wait_all_running(
    client: &mut OperatorClient<Channel>,
    uuids: &[String],
) -> anyhow::Result<()> {
    let wanted: std::collections::HashSet<&str> = uuids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + BATCH_WITHIN;
    loop {
        let zones = client
            .list_zones(pb::ListZonesRequest::default())
            .await?
            .into_inner()
            .zones;
        let ours: Vec<&pb::Zone> = zones
            .iter()
            .filter(|z| wanted.contains(uuid_of(z)))
            .collect();
        if let Some(failed) = ours.iter().find(|z| state(z) == pb::ZoneState::Failed) {
            bail!("zone {} failed: {}", uuid_of(failed), failed.message);
        }
        let running = ours
            .iter()
            .filter(|z| state(z) == pb::ZoneState::Running)
            .count();
        if running == wanted.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{running} of {} zones running within {BATCH_WITHIN:?}",
                wanted.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes the zones the run made (best effort: the fleet's own deletion finishes it).
async fn delete_all(client: &mut OperatorClient<Channel>, uuids: &[String]) {
    for uuid in uuids {
        let _ = client.delete_zone(pb::ZoneRef { zone: uuid.clone() }).await;
    }
}
