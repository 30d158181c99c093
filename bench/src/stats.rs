//! Percentiles and growth of a series of timed operations.

use serde_json::{json, Value};

use weft_bench::numbers::{median, percentile, round};

use crate::tools::Sample;

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub failures: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Median of the first 10% of operations (by start time).
    pub first10: f64,
    /// Median of the last 10% of operations (by start time).
    pub last10: f64,
    /// CPU time (user + system) per operation: median and mean. Much less
    /// sensitive to other work on the machine than wall time.
    pub cpu_p50: f64,
    pub cpu_mean: f64,
    /// Median CPU time of the first and last 10% of operations.
    pub cpu_first10: f64,
    pub cpu_last10: f64,
}

impl Summary {
    /// Summarises successful samples; times in milliseconds.
    pub fn of(samples: &[Sample]) -> Summary {
        let mut ordered: Vec<&Sample> = samples.iter().collect();
        ordered.sort_by_key(|s| s.start);
        let ms: Vec<f64> =
            ordered.iter().filter(|s| s.ok).map(|s| s.dur.as_secs_f64() * 1e3).collect();
        let failures = samples.len() - ms.len();
        if ms.is_empty() {
            return Summary { count: samples.len(), failures, ..Summary::default() };
        }
        let cpu_ordered: Vec<f64> =
            ordered.iter().filter(|s| s.ok).map(|s| s.cpu.as_secs_f64() * 1e3).collect();
        let mut cpu = cpu_ordered.clone();
        cpu.sort_by(f64::total_cmp);
        let tenth = (ms.len() / 10).max(1);
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        Summary {
            count: samples.len(),
            failures,
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            first10: median(&ms[..tenth]),
            last10: median(&ms[ms.len() - tenth..]),
            cpu_p50: percentile(&cpu, 50.0),
            cpu_mean: cpu.iter().sum::<f64>() / cpu.len() as f64,
            cpu_first10: median(&cpu_ordered[..tenth]),
            cpu_last10: median(&cpu_ordered[cpu_ordered.len() - tenth..]),
        }
    }

    /// Last 10% over first 10%: 1.0 is flat.
    pub fn growth(&self) -> f64 {
        if self.first10 > 0.0 {
            self.last10 / self.first10
        } else {
            f64::NAN
        }
    }

    /// The same for CPU time, which other work on the machine disturbs far
    /// less than wall time.
    pub fn cpu_growth(&self) -> f64 {
        if self.cpu_first10 > 0.0 {
            self.cpu_last10 / self.cpu_first10
        } else {
            f64::NAN
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "failures": self.failures,
            "p50_ms": round(self.p50),
            "p90_ms": round(self.p90),
            "p99_ms": round(self.p99),
            "mean_ms": round(self.mean),
            "min_ms": round(self.min),
            "max_ms": round(self.max),
            "first10pct_median_ms": round(self.first10),
            "last10pct_median_ms": round(self.last10),
            "growth_last_over_first": round(self.growth()),
            "cpu_p50_ms": round(self.cpu_p50),
            "cpu_mean_ms": round(self.cpu_mean),
            "cpu_first10pct_median_ms": round(self.cpu_first10),
            "cpu_last10pct_median_ms": round(self.cpu_last10),
            "cpu_growth_last_over_first": round(self.cpu_growth()),
        })
    }
}
