//! The runbook's advance criteria (§1) and the one function that judges a
//! window's rates on them. The controller decides on this judgement and the
//! report shows it: there is no second judge to disagree with the first.
//! It knows rates and caps, nothing of histories or engines.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::contract::{Endpoint, ErrorCode};
use crate::time::Millis;

/// The advance criteria (§1) as a reviewer can check them.
#[derive(Clone, Debug, PartialEq)]
pub struct Criteria {
    pub confirm_failure_rate_max: f64,
    pub execute_failure_rate_max: f64,
    /// Tolerated rise of a failure rate over the previous phase (absolute).
    pub confirm_failure_rise_max: f64,
    pub execute_failure_rise_max: f64,
    /// Below this many attempts a rate is not judged (inconclusive → hold).
    pub min_samples: u64,
    /// "Sem alerta crítico novo": the sweep's backlog past the TTL may not exceed this.
    pub sweep_backlog_max: u32,
    /// How often the controller judges the phase so far.
    pub analysis_interval: Millis,
    /// §4B: how long rates must stay under their caps after a rollback.
    pub stable_for: Millis,
    /// What the controller does with a phase still inconclusive at `hold_max`.
    pub on_inconclusive: OnInconclusive,
}

/// The scenario's choice for a phase that is still unproven at `hold_max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// The runbook's caution: never advance on an unproven phase without an
    /// operator's word; the rollout stays where it is.
    #[default]
    Hold,
    /// Advance anyway (the operation log says it was the scenario's choice).
    Advance,
    /// Roll back as if the phase had failed.
    Rollback,
}

/// Attempts and failures of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub attempts: u64,
    pub failures: u64,
}

impl Rate {
    pub fn value(self) -> f64 {
        if self.attempts == 0 { 0.0 } else { self.failures as f64 / self.attempts as f64 }
    }

    pub fn note(&mut self, failed: bool) {
        self.attempts += 1;
        self.failures += u64::from(failed);
    }
}

/// The verdict of one criterion in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Pass,
    Fail,
    /// Too few samples to judge.
    Inconclusive,
    /// Failed only through requests posim itself held up beyond its lag
    /// bound ([`crate::harness::lag_bound`]): without them it would not fail.
    /// posim could not judge the stack here: neither pass nor fail, and
    /// never a reason to advance or roll back.
    HarnessLimited,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionResult {
    /// `confirm_failure_rate`, `execute_failure_rate`, `critical_alert`, `duplicates`.
    pub name: Cow<'static, str>,
    pub judgement: Judgement,
    pub detail: String,
    /// The line the window must stay under (a rate's cap, the backlog's
    /// limit, 0 duplicates), for charts; None: no single line.
    pub limit: Option<f64>,
}

/// What a window is judged on: its rates, the previous phase's (for the
/// tolerated rise), the sweep's backlog and the duplicates it saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowRates {
    pub confirm: Rate,
    pub execute: Rate,
    pub baseline: Option<(Rate, Rate)>,
    pub sweep_backlog_max: u32,
    pub duplicates: u64,
    /// The part of `confirm` and `execute` that posim itself lagged on.
    pub lagged: (Rate, Rate),
    /// Requests of any kind posim lagged on in the window (an authorize it
    /// held up may be why a rate is short of samples).
    pub lagged_requests: u64,
}

/// Is what a terminal heard a failure of that step? A timeout, a 5xx, or a
/// refusal the flow should never meet; a declined card (402) and the gate's
/// answer to authorize are business outcomes, not failures.
pub fn is_failure(endpoint: Endpoint, status: Option<u16>, error: Option<ErrorCode>) -> bool {
    match (status, error) {
        (None, _) => true,
        (_, Some(ErrorCode::PaymentNotCaptured)) => false,
        (_, Some(ErrorCode::CanaryNotAllowed)) => endpoint != Endpoint::Authorize,
        (Some(status), _) => status >= 400,
    }
}

/// The Wilson score interval (95%) of a failure rate: a rate is judged above
/// its cap only when the whole interval is, so that a handful of failures in
/// a small window does not fail a phase by chance.
pub fn wilson_interval(failures: u64, attempts: u64) -> (f64, f64) {
    if attempts == 0 {
        return (0.0, 1.0);
    }
    let z = 1.96_f64;
    let n = attempts as f64;
    let p = failures as f64 / n;
    let centre = p + z * z / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let denominator = 1.0 + z * z / n;
    (((centre - margin) / denominator).max(0.0), ((centre + margin) / denominator).min(1.0))
}

/// The advance criteria of §1 on one window: each failure rate under its cap
/// and not risen beyond the tolerance over the previous phase ("estável"),
/// no critical alert (the sweep's backlog), no duplicate.
pub fn judge(window: &WindowRates, criteria: &Criteria) -> Vec<CriterionResult> {
    let baseline = window.baseline;
    vec![
        judge_lagged_rate(
            ("confirm_failure_rate", "confirm failure"),
            (window.confirm, window.lagged.0, window.lagged_requests),
            (criteria.confirm_failure_rate_max, criteria.confirm_failure_rise_max),
            baseline.map(|b| b.0),
            criteria.min_samples,
        ),
        judge_lagged_rate(
            ("execute_failure_rate", "execute-cycle failure"),
            (window.execute, window.lagged.1, window.lagged_requests),
            (criteria.execute_failure_rate_max, criteria.execute_failure_rise_max),
            baseline.map(|b| b.1),
            criteria.min_samples,
        ),
        judge_backlog(window.sweep_backlog_max, criteria.sweep_backlog_max),
        CriterionResult {
            name: "duplicates".into(),
            judgement: if window.duplicates == 0 { Judgement::Pass } else { Judgement::Fail },
            detail: format!("duplicates: {} (must be 0)", window.duplicates),
            limit: Some(0.0),
        },
    ]
}

/// A rate judged with the part posim lagged on set apart: a failing rate
/// that would not fail without the lagged requests is `HarnessLimited`, and
/// so is a rate short of samples in a window where posim lagged on enough
/// requests to fill the gap (its lag may be why: a terminal that never heard
/// its authorize never confirms).
fn judge_lagged_rate(
    names: (&'static str, &str),
    (rate, lagged, lagged_requests): (Rate, Rate, u64),
    limits: (f64, f64),
    before: Option<Rate>,
    min_samples: u64,
) -> CriterionResult {
    debug_assert!(lagged.attempts <= rate.attempts && lagged.failures <= rate.failures, "lagged is a part");
    let judged = judge_rate(names, rate, limits, before, min_samples);
    // Only when the lagged requests could have filled the missing samples.
    let could_have_judged = rate.attempts.saturating_add(lagged_requests) >= min_samples;
    if judged.judgement == Judgement::Inconclusive && lagged_requests > 0 && could_have_judged {
        let detail = format!(
            "{}, and posim itself lagged beyond its bound on {lagged_requests} request(s) in this window: \
             posim could not judge the stack here (harness-limited)",
            judged.detail
        );
        return CriterionResult { judgement: Judgement::HarnessLimited, detail, ..judged };
    }
    if judged.judgement != Judgement::Fail || lagged.failures == 0 {
        return judged;
    }
    let clean = Rate {
        attempts: rate.attempts.saturating_sub(lagged.attempts),
        failures: rate.failures.saturating_sub(lagged.failures),
    };
    let without = judge_rate(names, clean, limits, before, min_samples);
    if without.judgement == Judgement::Fail {
        return judged; // the stack fails without posim's lag too
    }
    let detail = format!(
        "{}; but {} of those failures came on requests posim itself lagged on beyond its bound, and without them \
         the rate is {}: posim could not judge the stack here (harness-limited)",
        judged.detail,
        lagged.failures,
        if without.judgement == Judgement::Pass { "within the criteria" } else { "short of samples" }
    );
    CriterionResult { judgement: Judgement::HarnessLimited, detail, ..judged }
}

fn judge_rate(
    (name, label): (&'static str, &str),
    rate: Rate,
    (cap, rise): (f64, f64),
    before: Option<Rate>,
    min_samples: u64,
) -> CriterionResult {
    let (low, high) = wilson_interval(rate.failures, rate.attempts);
    let shown = format!(
        "{label} {}/{} ({:.2}%, 95% interval {:.2}–{:.2}%, cap {:.2}%)",
        rate.failures,
        rate.attempts,
        100.0 * rate.value(),
        100.0 * low,
        100.0 * high,
        100.0 * cap
    );
    // A rise, like a cap, must be proven: the whole interval now above the
    // whole interval before, plus the tolerance (a small baseline is noisy).
    let risen = before.filter(|b| b.attempts >= min_samples && low > wilson_interval(b.failures, b.attempts).1 + rise);
    let (judgement, detail) = if rate.attempts < min_samples {
        (Judgement::Inconclusive, format!("{shown}: fewer than {min_samples} samples"))
    } else if low > cap {
        (Judgement::Fail, format!("{shown}: above the cap (95% lower bound {:.2}%)", 100.0 * low))
    } else if let Some(before) = risen {
        let detail = format!(
            "{shown}: rose from {:.2}% (95% upper bound {:.2}%) beyond the tolerated {:.2} points",
            100.0 * before.value(),
            100.0 * wilson_interval(before.failures, before.attempts).1,
            100.0 * rise
        );
        (Judgement::Fail, detail)
    } else {
        (Judgement::Pass, format!("{shown}: stable"))
    };
    CriterionResult { name: name.into(), judgement, detail, limit: Some(cap) }
}

fn judge_backlog(seen: u32, max: u32) -> CriterionResult {
    let (judgement, detail) = if seen > max {
        (Judgement::Fail, format!("critical alert: sweep backlog {seen} above {max}"))
    } else {
        (Judgement::Pass, format!("no critical alert (sweep backlog max {seen}, limit {max})"))
    };
    CriterionResult { name: "critical_alert".into(), judgement, detail, limit: Some(f64::from(max)) }
}

/// The criteria of one judgement, split the way a decision reads them.
pub fn details(results: &[CriterionResult], judgement: Judgement) -> Vec<String> {
    results.iter().filter(|r| r.judgement == judgement).map(|r| r.detail.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria() -> Criteria {
        Criteria {
            confirm_failure_rate_max: 0.05,
            execute_failure_rate_max: 0.05,
            confirm_failure_rise_max: 0.03,
            execute_failure_rise_max: 0.03,
            min_samples: 30,
            sweep_backlog_max: 10,
            analysis_interval: 300_000,
            stable_for: 900_000,
            on_inconclusive: OnInconclusive::Hold,
        }
    }

    #[test]
    fn the_wilson_interval_brackets_the_rate() {
        let (low, high) = wilson_interval(4, 36);
        assert!(low < 4.0 / 36.0 && 4.0 / 36.0 < high);
        assert!((0.04..0.05).contains(&low), "{low}");
        let (low, _) = wilson_interval(300, 1000);
        assert!(low > 0.27, "many samples narrow the interval: {low}");
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
    }

    #[test]
    fn failures_are_what_the_flow_should_never_meet() {
        assert!(is_failure(Endpoint::Confirm, None, None));
        assert!(is_failure(Endpoint::Confirm, Some(502), Some(ErrorCode::ProviderUnavailable)));
        assert!(!is_failure(Endpoint::Confirm, Some(402), Some(ErrorCode::PaymentNotCaptured)));
        assert!(!is_failure(Endpoint::Authorize, Some(403), Some(ErrorCode::CanaryNotAllowed)));
        assert!(is_failure(Endpoint::ExecuteCycle, Some(403), Some(ErrorCode::CanaryNotAllowed)));
        assert!(!is_failure(Endpoint::ExecuteCycle, Some(200), None));
    }

    #[test]
    fn a_window_passes_fails_or_waits_for_samples() {
        let healthy = WindowRates {
            confirm: Rate { attempts: 100, failures: 1 },
            execute: Rate { attempts: 100, failures: 2 },
            ..WindowRates::default()
        };
        assert!(judge(&healthy, &criteria()).iter().all(|r| r.judgement == Judgement::Pass));
        let small = WindowRates { confirm: Rate { attempts: 10, failures: 0 }, ..healthy.clone() };
        assert_eq!(judge(&small, &criteria())[0].judgement, Judgement::Inconclusive);
        let broken = WindowRates { execute: Rate { attempts: 100, failures: 40 }, ..healthy.clone() };
        assert_eq!(judge(&broken, &criteria())[1].judgement, Judgement::Fail);
        let backlog = WindowRates { sweep_backlog_max: 11, ..healthy.clone() };
        assert_eq!(judge(&backlog, &criteria())[2].judgement, Judgement::Fail);
        let duplicated = WindowRates { duplicates: 1, ..healthy };
        assert_eq!(judge(&duplicated, &criteria())[3].judgement, Judgement::Fail);
    }

    #[test]
    fn a_failure_posim_lagged_on_is_harness_limited_not_the_stacks() {
        let window = |lagged_failures| WindowRates {
            confirm: Rate { attempts: 100, failures: 30 },
            execute: Rate { attempts: 100, failures: 1 },
            lagged: (Rate { attempts: 40, failures: lagged_failures }, Rate::default()),
            ..WindowRates::default()
        };
        let limited = judge(&window(29), &criteria());
        assert_eq!(limited[0].judgement, Judgement::HarnessLimited, "{:?}", limited[0]);
        assert!(limited[0].detail.contains("29 of those failures"), "{}", limited[0].detail);
        // A stack that fails without posim's lagged requests still fails.
        assert_eq!(judge(&window(5), &criteria())[0].judgement, Judgement::Fail);
        assert_eq!(judge(&window(0), &criteria())[0].judgement, Judgement::Fail);
        // Short of samples where posim lagged: not judged, never `on_inconclusive`.
        let short = WindowRates {
            confirm: Rate { attempts: 3, failures: 0 },
            lagged: (Rate::default(), Rate::default()),
            lagged_requests: 27,
            ..window(0)
        };
        assert_eq!(judge(&short, &criteria())[0].judgement, Judgement::HarnessLimited);
        let few = WindowRates { lagged_requests: 26, ..short.clone() };
        assert_eq!(judge(&few, &criteria())[0].judgement, Judgement::Inconclusive, "too few lagged to matter");
        let unlagged = WindowRates { lagged_requests: 0, ..short };
        assert_eq!(judge(&unlagged, &criteria())[0].judgement, Judgement::Inconclusive);
    }

    #[test]
    fn a_rise_over_the_previous_phase_fails_under_the_cap() {
        let mut criteria = criteria();
        criteria.confirm_failure_rate_max = 0.5;
        let window = WindowRates {
            confirm: Rate { attempts: 200, failures: 40 },
            execute: Rate { attempts: 200, failures: 0 },
            baseline: Some((Rate { attempts: 200, failures: 2 }, Rate { attempts: 200, failures: 0 })),
            ..WindowRates::default()
        };
        let results = judge(&window, &criteria);
        assert_eq!(results[0].judgement, Judgement::Fail, "{:?}", results[0]);
        assert!(results[0].detail.contains("rose from 1.00%"), "{}", results[0].detail);
    }
}
