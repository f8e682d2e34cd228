//! KPIs per phase window (runbook §3): confirm and execute-cycle failure
//! rates, duplicates, the sweep's backlog, latency percentiles — and the
//! advance criteria of §1 judged on them.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Violation;
use crate::contract::{CanaryConfig, Endpoint, ErrorCode};
use crate::history::{Event, History, NO_PURCHASE};
use crate::scenario::Criteria;
use crate::time::Millis;
use crate::world::PurchaseOutcome;

/// Attempts, failures and latency of one endpoint in one window.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointKpis {
    pub attempts: u64,
    pub failures: u64,
    pub failure_rate: f64,
    pub latency_ms_p50: u64,
    pub latency_ms_p95: u64,
    pub latency_ms_p99: u64,
    pub latency_ms_max: u64,
    #[serde(skip)]
    latency: Histogram<u64>,
}

impl EndpointKpis {
    fn new() -> Self {
        EndpointKpis {
            attempts: 0,
            failures: 0,
            failure_rate: 0.0,
            latency_ms_p50: 0,
            latency_ms_p95: 0,
            latency_ms_p99: 0,
            latency_ms_max: 0,
            latency: Histogram::new(3).expect("3 significant figures is a valid precision"),
        }
    }

    fn finish(&mut self) {
        self.failure_rate = if self.attempts == 0 { 0.0 } else { self.failures as f64 / self.attempts as f64 };
        self.latency_ms_p50 = self.latency.value_at_quantile(0.50);
        self.latency_ms_p95 = self.latency.value_at_quantile(0.95);
        self.latency_ms_p99 = self.latency.value_at_quantile(0.99);
        self.latency_ms_max = self.latency.max();
    }
}

/// The verdict of one criterion in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Pass,
    Fail,
    /// Too few samples to judge.
    Inconclusive,
}

#[derive(Clone, Debug, Serialize)]
pub struct CriterionResult {
    pub name: &'static str,
    pub judgement: Judgement,
    pub detail: String,
}

/// One phase's window (or the drain after the last phase).
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub name: String,
    pub from_ms: Millis,
    pub until_ms: Millis,
    pub canary: CanaryConfig,
    pub purchases: u64,
    pub washed: u64,
    pub not_in_canary: u64,
    pub authorize: EndpointKpis,
    pub confirm: EndpointKpis,
    pub execute_cycle: EndpointKpis,
    pub duplicates: u64,
    pub sweeps: u64,
    pub sweep_backlog_max: u32,
    pub compensated: u64,
    pub expired: u64,
    pub criteria: Vec<CriterionResult>,
}

impl Window {
    fn new(name: String, from_ms: Millis, until_ms: Millis, canary: CanaryConfig) -> Self {
        Window {
            name,
            from_ms,
            until_ms,
            canary,
            purchases: 0,
            washed: 0,
            not_in_canary: 0,
            authorize: EndpointKpis::new(),
            confirm: EndpointKpis::new(),
            execute_cycle: EndpointKpis::new(),
            duplicates: 0,
            sweeps: 0,
            sweep_backlog_max: 0,
            compensated: 0,
            expired: 0,
            criteria: Vec::new(),
        }
    }

    fn endpoint(&mut self, endpoint: Endpoint) -> Option<&mut EndpointKpis> {
        match endpoint {
            Endpoint::Authorize => Some(&mut self.authorize),
            Endpoint::Confirm => Some(&mut self.confirm),
            Endpoint::ExecuteCycle => Some(&mut self.execute_cycle),
            _ => None,
        }
    }

    pub fn breached(&self) -> bool {
        self.criteria.iter().any(|criterion| criterion.judgement == Judgement::Fail)
    }
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

/// Splits the history into phase windows and computes their KPIs.
pub fn windows(history: &History, violations: &[Violation], end: Millis, criteria: &Criteria) -> Vec<Window> {
    let mut windows = phase_windows(history, end);
    let window_of = |at: Millis, windows: &[Window]| windows.iter().rposition(|w| w.from_ms <= at).unwrap_or(0);
    let mut sent: BTreeMap<u32, (Endpoint, Millis, bool)> = BTreeMap::new();
    for record in &history.records {
        let index = window_of(record.at, &windows);
        let window = &mut windows[index];
        match &record.event {
            Event::Sent { request, purchase, endpoint, twin, .. } if *purchase != NO_PURCHASE => {
                sent.insert(*request, (*endpoint, record.at, *twin));
            }
            Event::Heard { request, status, error } => {
                let Some((endpoint, sent_at, twin)) = sent.remove(request) else { continue };
                let sent_window = window_of(sent_at, &windows);
                let Some(kpis) = windows[sent_window].endpoint(endpoint).filter(|_| !twin) else { continue };
                kpis.attempts += 1;
                kpis.failures += u64::from(is_failure(endpoint, *status, *error));
                if status.is_some() {
                    kpis.latency.saturating_record(record.at - sent_at);
                }
            }
            Event::Arrived { .. } => window.purchases += 1,
            Event::Ended { outcome: PurchaseOutcome::Washed, .. } => window.washed += 1,
            Event::Ended { outcome: PurchaseOutcome::NotInCanary, .. } => window.not_in_canary += 1,
            Event::Swept { expired, compensated, backlog } => {
                window.sweeps += 1;
                window.sweep_backlog_max = window.sweep_backlog_max.max(*backlog);
                window.compensated += u64::from(*compensated);
                window.expired += u64::from(*expired);
            }
            _ => {}
        }
    }
    for violation in violations.iter().filter(|v| v.code == "D1" || v.code == "D2") {
        let first = violation.witness.iter().min().map_or(0, |&i| history.records[i].at);
        let index = window_of(first, &windows);
        windows[index].duplicates += 1;
    }
    for window in &mut windows {
        window.authorize.finish();
        window.confirm.finish();
        window.execute_cycle.finish();
        window.criteria = judge(window, criteria);
    }
    windows
}

fn phase_windows(history: &History, end: Millis) -> Vec<Window> {
    let starts: Vec<(u16, Millis)> = history
        .records
        .iter()
        .filter_map(|record| match record.event {
            Event::DeployStarted { deploy } => Some((deploy, record.at)),
            _ => None,
        })
        .collect();
    let mut windows: Vec<Window> = Vec::new();
    for (position, &(deploy, from)) in starts.iter().enumerate() {
        let until = starts.get(position + 1).map_or(end, |next| next.1);
        let info = &history.deploys[usize::from(deploy)];
        windows.push(Window::new(info.label.clone(), from, until, info.canary.clone()));
    }
    windows
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

/// The runbook's advance criteria (§1) on one window.
fn judge(window: &Window, criteria: &Criteria) -> Vec<CriterionResult> {
    let rate = |name: &'static str, kpis: &EndpointKpis, cap: f64| {
        let (low, high) = wilson_interval(kpis.failures, kpis.attempts);
        let judgement = if kpis.attempts < criteria.min_samples {
            Judgement::Inconclusive
        } else if low > cap {
            Judgement::Fail
        } else {
            Judgement::Pass
        };
        let detail = format!(
            "{}/{} failed ({:.2}%, 95% interval {:.2}–{:.2}%), cap {:.2}%, min samples {}",
            kpis.failures,
            kpis.attempts,
            100.0 * kpis.failure_rate,
            100.0 * low,
            100.0 * high,
            100.0 * cap,
            criteria.min_samples
        );
        CriterionResult { name, judgement, detail }
    };
    let duplicates = CriterionResult {
        name: "duplicates",
        judgement: if window.duplicates == 0 { Judgement::Pass } else { Judgement::Fail },
        detail: format!("{} duplicate charges or cycles (must be 0)", window.duplicates),
    };
    vec![
        rate("confirm_failure_rate", &window.confirm, criteria.confirm_failure_rate_max),
        rate("execute_failure_rate", &window.execute_cycle, criteria.execute_failure_rate_max),
        duplicates,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
