//! Thresholds as CI gates: each `[load]` or `--threshold` gate judged on a
//! load run's numbers — met, or breached with the actual value.

use crate::report::load::ThresholdResult;
use crate::scenario::load::Threshold;

/// The numbers the thresholds are judged on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    /// p99 of stack requests at the knee (or at the last step without one).
    pub p99_ms: f64,
    /// Failed or not started ÷ offered, at the knee (over the run without one).
    pub error_rate: f64,
    /// The knee over the peak rate (`None`: no knee, or no traffic).
    pub headroom: Option<f64>,
}

pub fn judge(thresholds: &[Threshold], measured: Measured) -> Vec<ThresholdResult> {
    thresholds.iter().map(|threshold| one(*threshold, measured)).collect()
}

fn one(threshold: Threshold, measured: Measured) -> ThresholdResult {
    let (met, actual) = match threshold {
        Threshold::P99Below { ms } => (measured.p99_ms < ms as f64, format!("{:.1}ms", measured.p99_ms)),
        Threshold::ErrorRateBelow { rate } => {
            (measured.error_rate < rate, format!("{:.2}%", 100.0 * measured.error_rate))
        }
        Threshold::KneeAbove { times_peak } => match measured.headroom {
            Some(headroom) => (headroom > times_peak, format!("{headroom:.1}x")),
            None => (false, "no knee".into()),
        },
    };
    ThresholdResult { threshold: threshold.to_string(), met, actual }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_is_met_or_breached_with_its_actual_value() {
        let measured = Measured { p99_ms: 120.0, error_rate: 0.002, headroom: Some(4.0) };
        let thresholds: Vec<Threshold> = ["p99<300ms", "p99<100ms", "error_rate<1%", "knee>3x", "knee>5x"]
            .iter()
            .map(|t| t.parse().expect("a threshold"))
            .collect();
        let judged = judge(&thresholds, measured);
        let met: Vec<bool> = judged.iter().map(|t| t.met).collect();
        assert_eq!(met, vec![true, false, true, true, false]);
        assert_eq!(judged[1].actual, "120.0ms");
        assert_eq!(judged[4].threshold, "knee>5x");
        let no_knee = Measured { headroom: None, ..measured };
        assert!(!judge(&thresholds[3..4], no_knee)[0].met);
    }
}
