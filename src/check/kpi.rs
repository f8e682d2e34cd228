//! KPIs per deploy window (runbook §3) as the report shows them: confirm
//! and execute-cycle failure rates, duplicates, the sweep's backlog, latency
//! percentiles — all read off the one history index, with the advance
//! criteria of §1 judged by the same judge the controller decided with.

use serde::{Deserialize, Serialize};

use crate::contract::CanaryConfig;
use crate::criteria::{Criteria, CriterionResult, Judgement, Rate, WindowRates, judge};
use crate::history::History;
use crate::judge::HistoryIndex;
use crate::judge::index::{EndpointStats, WindowStats};
use crate::time::Millis;

/// Attempts, failures and latency of one endpoint in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointKpis {
    pub attempts: u64,
    pub failures: u64,
    pub failure_rate: f64,
    pub latency_ms_p50: u64,
    pub latency_ms_p95: u64,
    pub latency_ms_p99: u64,
    pub latency_ms_max: u64,
}

impl EndpointKpis {
    /// The window's judged attempts and failures, and every latency heard.
    fn of(stats: &EndpointStats) -> Self {
        let latency = &stats.latency_ms;
        EndpointKpis {
            attempts: stats.rate.attempts,
            failures: stats.rate.failures,
            failure_rate: stats.rate.value(),
            latency_ms_p50: latency.value_at_quantile(0.50),
            latency_ms_p95: latency.value_at_quantile(0.95),
            latency_ms_p99: latency.value_at_quantile(0.99),
            latency_ms_max: latency.max(),
        }
    }
}

/// One phase's window (or the drain after the last phase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Requests posim itself held up beyond its lag bound in this window,
    /// and the longest such lag (runbook ms): live runs only.
    #[serde(default)]
    pub harness_lagged_requests: u64,
    #[serde(default)]
    pub harness_max_lag_ms: Millis,
}

impl Window {
    pub fn breached(&self) -> bool {
        self.criteria.iter().any(|criterion| criterion.judgement == Judgement::Fail)
    }

    /// posim could not judge a criterion here: its own lag made it fail.
    pub fn harness_limited(&self) -> bool {
        self.criteria.iter().any(|criterion| criterion.judgement == Judgement::HarnessLimited)
    }

    /// A breach nobody acted on fails the run.
    pub fn unanswered_breach(&self) -> bool {
        self.breached() && !self.closed_by_rollback
    }
}

/// The report's windows, one per deploy, from the one history index and
/// judged by the one judge: what the controller saw when it decided.
pub fn windows(history: &History, index: &HistoryIndex, end: Millis, criteria: &Criteria) -> Vec<Window> {
    index
        .windows
        .iter()
        .enumerate()
        .map(|(position, stats)| {
            let until = index.windows.get(position + 1).map_or(end, |next| next.from);
            let next_deploy = index.windows.get(position + 1).map(|next| next.deploy);
            let closed_by_rollback = next_deploy
                .is_some_and(|next| history.decisions.iter().any(|d| d.deploy == Some(next) && d.kind.is_rollback()));
            window(history, stats, (until, closed_by_rollback), criteria)
        })
        .collect()
}

fn window(
    history: &History,
    stats: &WindowStats,
    (until, closed_by_rollback): (Millis, bool),
    criteria: &Criteria,
) -> Window {
    let info = &history.deploys[usize::from(stats.deploy)];
    Window {
        name: info.label.clone(),
        from_ms: stats.from,
        until_ms: until,
        canary: info.canary.clone(),
        purchases: stats.purchases,
        washed: stats.washed,
        not_in_canary: stats.not_in_canary,
        authorize: EndpointKpis::of(&stats.authorize),
        confirm: EndpointKpis::of(&stats.confirm),
        execute_cycle: EndpointKpis::of(&stats.execute),
        duplicates: stats.duplicates.len() as u64,
        sweeps: stats.sweeps,
        sweep_backlog_max: stats.sweep_backlog_max,
        compensated: stats.compensated,
        expired: stats.expired,
        criteria: judge(&stats.rates(), criteria),
        closed_by_rollback,
        harness_lagged_requests: stats.lagged_requests,
        harness_max_lag_ms: stats.max_lag_ms,
    }
}

/// A window's KPIs in brief, for the operation log's "KPIs antes/depois".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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

impl Snapshot {
    /// The rates a window was (or is) judged on, over `[from, until)`.
    pub fn of(rates: &WindowRates, (from_ms, until_ms): (Millis, Millis)) -> Snapshot {
        let rate = |rate: Rate| (rate.attempts, rate.failures, rate.value());
        let (confirm_attempts, confirm_failures, confirm_failure_rate) = rate(rates.confirm);
        let (execute_attempts, execute_failures, execute_failure_rate) = rate(rates.execute);
        Snapshot {
            from_ms,
            until_ms,
            confirm_attempts,
            confirm_failures,
            confirm_failure_rate,
            execute_attempts,
            execute_failures,
            execute_failure_rate,
            duplicates: rates.duplicates,
            sweep_backlog_max: rates.sweep_backlog_max,
        }
    }
}
