//! What the operators' console shows at one instant, made from the history
//! and its index alone: the canary config per replica, the §3 indicators
//! per window against their criteria, the compensation alert and backlog,
//! the alerts raised, the phase timeline and the operation log. The
//! facilitator's view adds the incidents set off, which the operators'
//! view never carries.

use serde::Serialize;

use crate::criteria::{Criteria, CriterionResult, judge};
use crate::history::{DecisionKind, History};
use crate::judge::HistoryIndex;
use crate::rollout::controller::{FACILITATOR, is_person};
use crate::time::{self, Millis};

/// Who the operators see ship the facilitator's bad build.
const RELEASE: &str = "release-train";
/// How many of the latest windows the console lists.
const WINDOWS_SHOWN: usize = 6;

/// One replica as the load balancer sees it: the deploy it serves, if up.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaView {
    pub replica: u16,
    pub serving: bool,
    pub deploy: u16,
    pub label: String,
    pub env: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowView {
    pub deploy: u16,
    pub label: String,
    pub from: String,
    pub until: String,
    pub confirm: String,
    pub execute: String,
    pub criteria: Vec<CriterionResult>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Compensation {
    /// The backlog the last sweep (`POST /api/payments/compensation/alert`) reported.
    pub backlog: u32,
    pub limit: u32,
    pub alert: bool,
    pub expired: u64,
    pub compensated: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    pub at_ms: Millis,
    pub at: String,
    pub who: String,
    pub decision: String,
    pub config: Option<String>,
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConsoleState {
    pub scenario: String,
    pub now_ms: Millis,
    pub now: String,
    pub end: String,
    pub time_scale: f64,
    pub finished: bool,
    pub replicas: Vec<ReplicaView>,
    pub windows: Vec<WindowView>,
    pub compensation: Compensation,
    /// Alerts raised and not yet answered by a person's rollback, freeze or deploy.
    pub open_alerts: Vec<LogLine>,
    /// Every decision the operators may see, in order (the bad build a
    /// facilitator shipped shows as a release, as it would on the day).
    pub oplog: Vec<LogLine>,
    /// The facilitator's view only: what was set off, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected: Option<Vec<LogLine>>,
    /// The facilitator's view only: what may be set off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub menu: Option<Vec<String>>,
}

/// Where the run is, for the header.
pub struct Clock {
    pub now: Millis,
    pub end: Millis,
    pub time_scale: f64,
    pub finished: bool,
}

/// The console at `clock.now`; the facilitator's (with their menu) adds what was set off.
pub fn snapshot(
    scenario: &str,
    (history, index, criteria): (&History, &HistoryIndex, &Criteria),
    replicas: Vec<ReplicaView>,
    clock: &Clock,
    facilitator: Option<Vec<String>>,
) -> ConsoleState {
    let lines: Vec<(DecisionKind, LogLine)> =
        history.decisions.iter().map(|decision| (decision.kind, line(history, decision))).collect();
    let injected = facilitator
        .is_some()
        .then(|| lines.iter().filter(|(kind, _)| *kind == DecisionKind::Inject).map(|(_, l)| l.clone()).collect());
    let oplog: Vec<LogLine> = lines.into_iter().map(|(_, line)| line).filter(|l| l.who != FACILITATOR).collect();
    ConsoleState {
        scenario: scenario.to_string(),
        now_ms: clock.now,
        now: time::clock(clock.now),
        end: time::clock(clock.end),
        time_scale: clock.time_scale,
        finished: clock.finished,
        replicas,
        windows: windows(history, index, criteria, clock.now),
        compensation: compensation(index, criteria),
        open_alerts: open_alerts(&oplog),
        oplog,
        injected,
        menu: facilitator,
    }
}

/// The decisions logged from `from` on, as the console lists them.
pub fn lines(history: &History, from: usize) -> Vec<LogLine> {
    history.decisions[from..].iter().map(|decision| line(history, decision)).collect()
}

/// One decision as the console lists it; the facilitator's bad build reads
/// as the release it stands for.
fn line(history: &History, decision: &crate::history::Decision) -> LogLine {
    let released = decision.kind == DecisionKind::Inject && decision.deploy.is_some();
    let (who, kind) = match released {
        true => (RELEASE.to_string(), "deploy".to_string()),
        false => (decision.who.clone(), decision.kind.to_string()),
    };
    let evidence = match released {
        true => vec!["a new release goes out on the serving config".to_string()],
        false => decision.evidence.clone(),
    };
    LogLine {
        at_ms: decision.at,
        at: time::clock(decision.at),
        who,
        decision: kind,
        config: decision.deploy.map(|d| history.canary(d).summary()),
        evidence,
    }
}

/// Alerts after the last action of a person that answers one (a rollback,
/// a freeze, a deploy, a reprocess or an audit).
fn open_alerts(oplog: &[LogLine]) -> Vec<LogLine> {
    let answered = |line: &LogLine| {
        line.who != RELEASE && is_person(&line.who) && !matches!(line.decision.as_str(), "refused" | "advance")
    };
    let since = oplog.iter().rposition(answered).map_or(0, |i| i + 1);
    oplog[since..].iter().filter(|line| line.decision == DecisionKind::Alert.to_string()).cloned().collect()
}

fn windows(history: &History, index: &HistoryIndex, criteria: &Criteria, now: Millis) -> Vec<WindowView> {
    let skip = index.windows.len().saturating_sub(WINDOWS_SHOWN);
    index.windows[skip..]
        .iter()
        .map(|window| {
            let rates = window.rates();
            let rate = |r: crate::criteria::Rate| format!("{}/{} ({:.1}%)", r.failures, r.attempts, r.value() * 100.0);
            WindowView {
                deploy: window.deploy,
                label: history.deploys[usize::from(window.deploy)].label.clone(),
                from: time::clock(window.from),
                until: time::clock(window.closed_at.unwrap_or(now)),
                confirm: rate(rates.confirm),
                execute: rate(rates.execute),
                criteria: judge(&rates, criteria),
            }
        })
        .collect()
}

fn compensation(index: &HistoryIndex, criteria: &Criteria) -> Compensation {
    let current = index.current();
    let backlog = current.map_or(0, |w| w.sweep_backlog_max);
    let (expired, compensated) = index.windows.iter().fold((0, 0), |(e, c), w| (e + w.expired, c + w.compensated));
    Compensation {
        backlog,
        limit: criteria.sweep_backlog_max,
        alert: backlog > criteria.sweep_backlog_max,
        expired,
        compensated,
    }
}
