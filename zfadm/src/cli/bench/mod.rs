//! `zfadm bench`: commits small operations (one-zone creates, which stay pending
//! without hosts) through the cluster from N concurrent clients, each on its own
//! connection, spreading clients over the controllers; reports throughput and
//! p50/p99 latency per concurrency. With `--to-running N`, zones end to end instead
//! ([`running`]).

mod running;

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use zonefleet_proto::cli::bench::create_request;
use zonefleet_proto::cli::{percentile, write_json, Format};

use super::connect::Connection;

/// Arguments of `zfadm bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Concurrent clients, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub clients: Vec<usize>,
    /// How long each run lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Instead: create N zones one at a time and time each from the create to
    /// `running` (p50/p99); needs hosts with the image.
    #[arg(long, value_name = "N")]
    pub to_running: Option<usize>,
    /// With --to-running: create the N zones in batches of this size instead, and time
    /// them all to running (zones/s).
    #[arg(long, value_name = "SIZE", requires = "to_running")]
    pub batch: Option<usize>,
    /// With --to-running: the zone spec (default: a 16 MiB busybox zone).
    #[arg(short = 'f', long = "file", requires = "to_running")]
    pub file: Option<std::path::PathBuf>,
    /// With --to-running: keep the zones (default: delete them at the end).
    #[arg(long, requires = "to_running")]
    pub keep: bool,
}

/// One run's numbers.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Committed operations.
    pub ops: usize,
    /// Errors.
    pub errors: usize,
    /// Operations per second.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// A percentile in milliseconds; 0 without samples.
fn ms(percentile: Option<Duration>) -> f64 {
    percentile.map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn one_run(conn: &Connection, clients: usize, seconds: u64) -> anyhow::Result<RunResult> {
    let controllers = conn.controllers().to_vec();
    let mut tasks = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    for i in 0..clients {
        let mut client = conn.operator(&controllers[i % controllers.len()]).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < end {
                let request = create_request();
                let t = Instant::now();
                match client.create_zones(request).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    Ok(RunResult {
        clients,
        ops: all.len(),
        errors,
        throughput: all.len() as f64 / elapsed,
        p50_ms: ms(percentile(&all, 0.50)),
        p99_ms: ms(percentile(&all, 0.99)),
    })
}

/// Runs the benchmark and prints a table (or JSON).
pub async fn run(
    conn: &Connection,
    args: &BenchArgs,
    output: Format,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let Some(n) = args.to_running {
        return running::run(
            conn,
            n,
            args.batch,
            args.file.as_deref(),
            args.keep,
            output,
            out,
        )
        .await;
    }
    let mut results = Vec::new();
    for &clients in &args.clients {
        results.push(one_run(conn, clients.max(1), args.seconds).await?);
    }
    if output == Format::Json {
        let v: Vec<_> = results
            .iter()
            .map(|r| {
                json!({"clients": r.clients, "ops": r.ops, "errors": r.errors,
                "ops_per_sec": r.throughput, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms})
            })
            .collect();
        write_json(out, &v)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>8} {:>10} {:>8} {:>12} {:>9} {:>9}",
        "CLIENTS", "OPS", "ERRORS", "OPS/S", "P50 MS", "P99 MS"
    )?;
    for r in results {
        writeln!(
            out,
            "{:>8} {:>10} {:>8} {:>12.0} {:>9.2} {:>9.2}",
            r.clients, r.ops, r.errors, r.throughput, r.p50_ms, r.p99_ms
        )?;
    }
    Ok(())
}
