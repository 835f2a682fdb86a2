//! Medians and spreads of repeated measurements.

use serde_json::{Value, json};

/// Median, minimum, maximum, 99th percentile and count of `samples`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p99: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let p99 = sorted[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1];
        Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            p99,
            n,
        }
    }

    /// Spread as (max - min) / median, in percent.
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median * 100.0
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "median": self.median, "min": self.min, "max": self.max, "p99": self.p99,
            "n": self.n, "spread_pct": self.spread_pct(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
        assert_eq!(Summary::of(&[5.0]).p99, 5.0);
    }
}
