//! Latency samples and the result table.

use std::time::Duration;

use zonefleet_proto::cli::percentile;

/// The `p` quantile (0..=1) of sorted samples, in milliseconds (nearest rank, see
/// [`percentile`]); NaN without samples.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// One load run's numbers.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Acknowledged writes in the measured window.
    pub ops: usize,
    /// Failed writes in the measured window.
    pub errors: usize,
    /// Acknowledged writes per second.
    pub ops_per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

impl RunResult {
    /// From the latencies of the acknowledged writes of a window of `window`.
    pub fn new(
        clients: usize,
        mut latencies: Vec<Duration>,
        errors: usize,
        window: Duration,
    ) -> Self {
        latencies.sort();
        RunResult {
            clients,
            ops: latencies.len(),
            errors,
            ops_per_sec: latencies.len() as f64 / window.as_secs_f64(),
            p50_ms: percentile_ms(&latencies, 0.50),
            p99_ms: percentile_ms(&latencies, 0.99),
        }
    }
}

/// The side-by-side table (rows matched by client count).
pub fn comparison_table(zonefleet: &[RunResult], etcd: &[RunResult]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:>7} | {:>9} {:>8} {:>8} {:>6} | {:>9} {:>8} {:>8} {:>6}\n",
        "clients",
        "zf ops/s",
        "zf p50",
        "zf p99",
        "zf err",
        "etcd op/s",
        "etcd p50",
        "etcd p99",
        "e err"
    ));
    for z in zonefleet {
        let e = etcd.iter().find(|e| e.clients == z.clients);
        let (eo, e50, e99, ee) = match e {
            Some(e) => (
                format!("{:.0}", e.ops_per_sec),
                format!("{:.2}", e.p50_ms),
                format!("{:.2}", e.p99_ms),
                e.errors.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{:>7} | {:>9.0} {:>8.2} {:>8.2} {:>6} | {:>9} {:>8} {:>8} {:>6}\n",
            z.clients, z.ops_per_sec, z.p50_ms, z.p99_ms, z.errors, eo, e50, e99, ee
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v[..1], 0.99), 1.0);
        assert!(percentile_ms(&[], 0.5).is_nan());
    }
}
