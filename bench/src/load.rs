//! The closed-loop load: N clients, each sending its next write as soon as the last
//! one is acknowledged, for a warm-up then a measured window.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::stats::RunResult;

/// How long one write may take before it counts as an error.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One client: its own connection, one write at a time.
pub trait Writer: Send + 'static {
    /// Sends write number `seq` of this client and waits for its acknowledgement.
    fn write(&mut self, seq: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `writers` concurrently: `warmup` unmeasured, then `window` measured. Only
/// writes started inside the window count; throughput is those acknowledged over the
/// window's length.
pub async fn run_load<W: Writer>(writers: Vec<W>, warmup: Duration, window: Duration) -> RunResult {
    let clients = writers.len();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let mut tasks = Vec::with_capacity(clients);
    for mut writer in writers {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut seq = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let outcome = tokio::time::timeout(WRITE_TIMEOUT, writer.write(seq)).await;
                seq += 1;
                if sent < measure_from {
                    continue;
                }
                match outcome {
                    Ok(Ok(())) => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((latencies, e)) = task.await {
            all.extend(latencies);
            errors += e;
        }
    }
    RunResult::new(clients, all, errors, window)
}
