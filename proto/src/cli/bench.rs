//! What the command-line benchmarks share: the percentile they report, and the
//! write the controller benchmarks commit (`zfadm bench`, `bench/run`).

use std::time::Duration;

use crate::pb;

/// The `p` quantile (0..=1) of `sorted` samples by nearest rank; `None` without
/// samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// The controller benchmarks' write: a one-zone create of a small spec with no
/// alias and no idempotency key (with no host registered, the zone is committed
/// pending).
pub fn create_request() -> pb::CreateZonesRequest {
    pb::CreateZonesRequest {
        spec: Some(pb::ZoneSpec {
            image: "bench@1".into(),
            max_physical_memory_mib: Some(64),
            ..Default::default()
        }),
        count: 1,
        idempotency_key: String::new(),
        dry_run: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let ms = |p| percentile(&v, p).map(|d| d.as_millis());
        assert_eq!(ms(0.5), Some(50));
        assert_eq!(ms(0.99), Some(99));
        assert_eq!(ms(1.0), Some(100));
        assert_eq!(ms(0.0), Some(1));
        assert_eq!(percentile(&v[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
