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
    /// The decision that closed the window, if a rollback or freeze did:
    /// a breach that was rolled back is the runbook working, not a failure.
    pub closed_by_rollback: bool,
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
            closed_by_rollback: false,
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

    /// A breach nobody acted on fails the run.
    pub fn unanswered_breach(&self) -> bool {
        self.breached() && !self.closed_by_rollback
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
    let (mut windows, window_of_deploy) = phase_windows(history, end);
    let window_of = |at: Millis, windows: &[Window]| windows.iter().rposition(|w| w.from_ms <= at).unwrap_or(0);
    // A request counts for the deploy that served it; one that never reached
    // the stack, for the window it was sent in.
    let mut sent: BTreeMap<u32, (Endpoint, Millis, bool, Option<usize>)> = BTreeMap::new();
    for record in &history.records {
        let index = window_of(record.at, &windows);
        let window = &mut windows[index];
        match &record.event {
            Event::Sent { request, purchase, endpoint, twin, .. } if *purchase != NO_PURCHASE => {
                sent.insert(*request, (*endpoint, record.at, *twin, None));
            }
            Event::Received { request, config, .. } => {
                if let Some(entry) = sent.get_mut(request) {
                    entry.3 = window_of_deploy.get(usize::from(*config)).copied().flatten();
                }
            }
            Event::Heard { request, status, error } => {
                let Some((endpoint, sent_at, twin, served)) = sent.remove(request) else { continue };
                let sent_window = served.unwrap_or_else(|| window_of(sent_at, &windows));
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

/// One window per deploy, and for each deploy index the window it opened.
fn phase_windows(history: &History, end: Millis) -> (Vec<Window>, Vec<Option<usize>>) {
    let starts: Vec<(u16, Millis)> = history
        .records
        .iter()
        .filter_map(|record| match record.event {
            Event::DeployStarted { deploy } => Some((deploy, record.at)),
            _ => None,
        })
        .collect();
    let mut windows: Vec<Window> = Vec::new();
    let mut window_of_deploy = vec![None; history.deploys.len()];
    for (position, &(deploy, from)) in starts.iter().enumerate() {
        window_of_deploy[usize::from(deploy)] = Some(position);
        let next = starts.get(position + 1);
        let until = next.map_or(end, |next| next.1);
        let info = &history.deploys[usize::from(deploy)];
        let mut window = Window::new(info.label.clone(), from, until, info.canary.clone());
        window.closed_by_rollback = next
            .is_some_and(|&(next, _)| history.decisions.iter().any(|d| d.deploy == Some(next) && d.kind.is_rollback()));
        windows.push(window);
    }
    (windows, window_of_deploy)
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

/// A window's KPIs in brief, for the operation log's "KPIs antes/depois".
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Snapshot {
    pub from_ms: Millis,
    pub until_ms: Millis,
    pub confirm_attempts: u64,
    pub confirm_failures: u64,
    pub confirm_failure_rate: f64,
    pub execute_attempts: u64,
    pub execute_failures: u64,
    pub execute_failure_rate: f64,
    pub duplicates: u64,
    pub sweep_backlog_max: u32,
}

impl Snapshot {
    pub fn brief(&self) -> String {
        format!(
            "confirm {:.2}% of {}, execute {:.2}% of {}, dup {}, backlog {}",
            100.0 * self.confirm_failure_rate,
            self.confirm_attempts,
            100.0 * self.execute_failure_rate,
            self.execute_attempts,
            self.duplicates,
            self.sweep_backlog_max
        )
    }
}

/// KPIs over each `[from, until)` range of the history.
pub fn snapshots(history: &History, violations: &[Violation], ranges: &[(Millis, Millis)]) -> Vec<Snapshot> {
    let mut endpoints: Vec<Option<(Endpoint, bool)>> = Vec::new();
    for record in &history.records {
        if let Event::Sent { request, purchase, endpoint, twin, .. } = record.event {
            if purchase == NO_PURCHASE {
                continue;
            }
            if endpoints.len() <= request as usize {
                endpoints.resize(request as usize + 1, None);
            }
            endpoints[request as usize] = Some((endpoint, twin));
        }
    }
    let duplicate_times: Vec<Millis> = violations
        .iter()
        .filter(|v| v.code == "D1" || v.code == "D2")
        .filter_map(|v| v.witness.iter().min().map(|&i| history.records[i].at))
        .collect();
    ranges.iter().map(|&(from, until)| snapshot(history, &endpoints, &duplicate_times, from, until)).collect()
}

fn snapshot(
    history: &History,
    endpoints: &[Option<(Endpoint, bool)>],
    duplicates: &[Millis],
    from: Millis,
    until: Millis,
) -> Snapshot {
    let (mut confirm, mut execute, mut backlog) = ((0, 0), (0, 0), 0);
    let start = history.records.partition_point(|record| record.at < from);
    for record in history.records[start..].iter().take_while(|record| record.at < until) {
        match record.event {
            Event::Heard { request, status, error } => {
                let Some(Some((endpoint, false))) = endpoints.get(request as usize) else { continue };
                let counter = match endpoint {
                    Endpoint::Confirm => &mut confirm,
                    Endpoint::ExecuteCycle => &mut execute,
                    _ => continue,
                };
                counter.0 += 1;
                counter.1 += u64::from(is_failure(*endpoint, status, error));
            }
            Event::Swept { backlog: b, .. } => backlog = backlog.max(b),
            _ => {}
        }
    }
    let rate = |(n, f): (u64, u64)| if n == 0 { 0.0 } else { f as f64 / n as f64 };
    Snapshot {
        from_ms: from,
        until_ms: until,
        confirm_attempts: confirm.0,
        confirm_failures: confirm.1,
        confirm_failure_rate: rate(confirm),
        execute_attempts: execute.0,
        execute_failures: execute.1,
        execute_failure_rate: rate(execute),
        duplicates: duplicates.iter().filter(|&&at| from <= at && at < until).count() as u64,
        sweep_backlog_max: backlog,
    }
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
