//! [`Samples`]: the durations of one measurement and their quantiles.

use std::time::{Duration, Instant};

use zonefleet_proto::cli::percentile;

/// Durations of one measurement.
pub(super) struct Samples {
    /// What was measured (the row's label).
    pub name: String,
    /// One duration per run.
    pub times: Vec<Duration>,
}

impl Samples {
    /// No samples yet of measurement `name`.
    pub fn new(name: &str) -> Samples {
        Samples {
            name: name.to_string(),
            times: Vec::new(),
        }
    }

    /// Runs `f` and records how long it took when it succeeded.
    pub fn time<T>(&mut self, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let start = Instant::now();
        let out = f()?;
        self.times.push(start.elapsed());
        Ok(out)
    }

    /// The `q` quantile (0.5 the median, 1.0 the maximum); zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort();
        percentile(&sorted, q).unwrap_or_default()
    }

    /// The mean; zero without samples.
    pub fn mean(&self) -> Duration {
        match u32::try_from(self.times.len()) {
            Ok(n) if n > 0 => self.times.iter().sum::<Duration>() / n,
            _ => Duration::ZERO,
        }
    }

    /// Prints one line: runs, p50, p99, max.
    pub fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<28} runs {:>4}  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            self.name,
            self.times.len(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_quantiles() {
        let mut s = Samples::new("x");
        assert_eq!(s.mean(), Duration::ZERO);
        assert_eq!(s.quantile(0.5), Duration::ZERO);
        s.times = [30, 10, 20].map(Duration::from_millis).to_vec();
        assert_eq!(s.mean(), Duration::from_millis(20));
        assert_eq!(s.quantile(0.5), Duration::from_millis(20));
        assert_eq!(s.quantile(0.99), Duration::from_millis(30));
    }
}
