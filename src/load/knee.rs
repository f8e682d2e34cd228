//! Where the stack stops keeping up: the knee — the highest step within the
//! caps (p99 and failure rate) before a step crosses them or throughput
//! stops rising — and the headroom it leaves over the fleet's busiest hour.

use crate::scenario::Scenario;
use crate::time::DAY;

/// A step must raise throughput by at least this share over the best so far.
pub const RISE_MIN: f64 = 0.05;

/// What the knee search reads of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub throughput: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
}

/// The caps a step must stay within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Caps {
    pub p99_ms: f64,
    pub error_rate: f64,
}

/// The knee and the step after it (`None` while every step is within).
#[derive(Clone, Debug, PartialEq)]
pub struct Knee {
    pub knee: Option<usize>,
    pub next: Option<usize>,
    pub reason: String,
}

/// Why step `point` is past the knee, if it is (`best`: the best throughput before it).
fn past(point: &Point, caps: Caps, best: Option<f64>) -> Option<String> {
    if point.p99_ms > caps.p99_ms {
        return Some(format!("p99 {:.1} ms is above the cap {:.0} ms", point.p99_ms, caps.p99_ms));
    }
    if point.error_rate > caps.error_rate {
        let (rate, cap) = (100.0 * point.error_rate, 100.0 * caps.error_rate);
        return Some(format!("failure rate {rate:.2}% is above the cap {cap:.2}%"));
    }
    match best {
        Some(best) if point.throughput < best * (1.0 + RISE_MIN) => {
            Some(format!("throughput {:.1}/s did not rise {:.0}% over {best:.1}/s", point.throughput, 100.0 * RISE_MIN))
        }
        _ => None,
    }
}

/// The knee of the steps so far.
pub fn knee(points: &[Point], caps: Caps) -> Knee {
    let mut best: Option<(usize, f64)> = None;
    for (index, point) in points.iter().enumerate() {
        if let Some(reason) = past(point, caps, best.map(|b| b.1)) {
            return Knee { knee: best.map(|b| b.0), next: Some(index), reason };
        }
        best = Some((index, point.throughput));
    }
    let reason = "every step was within the caps: the knee is above the last step".into();
    Knee { knee: best.map(|b| b.0), next: None, reason }
}

/// Purchases per second the fleet brings at 100% in its busiest hour. The
/// traffic model is a flat Poisson rate per machine, so the busiest hour
/// is the average one.
pub fn peak_rate(scenario: &Scenario) -> f64 {
    let machines = scenario.fleet.machines.len() as f64;
    machines * scenario.traffic.washes_per_machine_per_day / (DAY as f64 / 1000.0)
}

/// The knee as a multiple of the peak rate (`None` without traffic).
pub fn headroom(knee: f64, peak: f64) -> Option<f64> {
    (peak > 0.0 && knee.is_finite()).then(|| knee / peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps { p99_ms: 300.0, error_rate: 0.01 };

    fn point(throughput: f64, p99_ms: f64, error_rate: f64) -> Point {
        Point { throughput, p99_ms, error_rate }
    }

    #[test]
    fn the_knee_is_the_last_step_before_the_p99_cap() {
        let steps = [point(50.0, 20.0, 0.0), point(100.0, 40.0, 0.0), point(148.0, 900.0, 0.0), point(150.0, 2e3, 0.0)];
        let found = knee(&steps, CAPS);
        assert_eq!((found.knee, found.next), (Some(1), Some(2)));
        assert!(found.reason.contains("p99"), "{}", found.reason);
    }

    #[test]
    fn failures_or_flat_throughput_end_the_search_too() {
        let failing = [point(50.0, 20.0, 0.0), point(90.0, 30.0, 0.05)];
        assert_eq!(knee(&failing, CAPS).knee, Some(0));
        assert!(knee(&failing, CAPS).reason.contains("failure rate"));
        let flat = [point(50.0, 20.0, 0.0), point(100.0, 30.0, 0.0), point(102.0, 35.0, 0.0)];
        let found = knee(&flat, CAPS);
        assert_eq!((found.knee, found.next), (Some(1), Some(2)));
        assert!(found.reason.contains("did not rise"));
    }

    #[test]
    fn no_knee_when_the_first_step_is_past_it_and_open_ended_when_none_is() {
        assert_eq!(knee(&[point(10.0, 500.0, 0.0)], CAPS).knee, None);
        let rising = [point(10.0, 5.0, 0.0), point(20.0, 6.0, 0.0)];
        assert_eq!(
            knee(&rising, CAPS),
            Knee {
                knee: Some(1),
                next: None,
                reason: "every step was within the caps: the knee is above the last step".into()
            }
        );
    }

    #[test]
    fn headroom_is_the_knee_over_the_peak() {
        assert_eq!(headroom(300.0, 2.0), Some(150.0));
        assert_eq!(headroom(300.0, 0.0), None);
        let scenario =
            crate::scenario::Scenario::load(std::path::Path::new("scenarios/rollout.toml")).expect("bundled");
        let machines = scenario.fleet.machines.len() as f64;
        let expected = machines * scenario.traffic.washes_per_machine_per_day / 86_400.0;
        assert!((peak_rate(&scenario) - expected).abs() < 1e-9);
    }
}
