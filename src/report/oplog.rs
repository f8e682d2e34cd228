//! The operation log of runbook §5, one entry per decision: date and time,
//! who, the config applied (mode and lists, as env lines), KPIs before and
//! after, the decision, and its evidence (the window, the criteria, the ids).

use serde::{Deserialize, Serialize};

use crate::check::Violation;
use crate::check::kpi::Snapshot;
use crate::contract::CanaryConfig;
use crate::history::{DecisionKind, History};
use crate::judge::HistoryIndex;
use crate::time::{self, Millis};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OplogEntry {
    /// Data/hora, in the scenario's calendar (simulated).
    pub at: String,
    pub at_ms: Millis,
    /// Quem executou.
    pub who: String,
    /// Decisão.
    pub decision: DecisionKind,
    /// Whether a deploy applied `config` (a hold or a refusal applies nothing).
    pub applied: bool,
    /// Config aplicada: the deploy's, or the one that kept serving.
    pub config: CanaryConfig,
    pub env: Vec<String>,
    /// KPIs antes (the window judged) and depois (until the next deploy).
    pub kpis_before: Snapshot,
    pub kpis_after: Snapshot,
    /// Evidências.
    pub evidence: Vec<String>,
    pub violations: Vec<String>,
}

/// One entry per decision, in order. KPIs before are the rates the decision
/// judged (the index's, at the decision); after, those of the window that
/// served next, until the next deploy.
pub fn entries(
    history: &History,
    index: &HistoryIndex,
    violations: &[Violation],
    start_unix_seconds: u64,
    end: Millis,
) -> Vec<OplogEntry> {
    let deploys: Vec<Millis> = history.decisions.iter().filter(|d| d.deploy.is_some()).map(|d| d.at).collect();
    history
        .decisions
        .iter()
        .zip(&index.decisions)
        .map(|(decision, windows)| {
            let next = deploys.iter().copied().find(|&at| at > decision.at).unwrap_or(end);
            let serving = decision.deploy.or(decision.previous);
            let config = serving.map_or_else(CanaryConfig::off, |d| history.canary(d).clone());
            let after = windows.after.map(|w| index.windows[w].rates()).unwrap_or_default();
            OplogEntry {
                at: time::rfc3339(start_unix_seconds, decision.at),
                at_ms: decision.at,
                who: decision.who.clone(),
                decision: decision.kind,
                applied: decision.deploy.is_some(),
                env: config.env().into_iter().map(|(name, value)| format!("{name}={value}")).collect(),
                config,
                kpis_before: Snapshot::of(&windows.judged_rates, (decision.window_from, decision.at)),
                kpis_after: Snapshot::of(&after, (decision.at, next)),
                evidence: decision.evidence.clone(),
                violations: violations_in(history, violations, decision.window_from, next),
            }
        })
        .collect()
}

fn violations_in(history: &History, violations: &[Violation], from: Millis, until: Millis) -> Vec<String> {
    violations
        .iter()
        .filter(|v| v.witness.iter().min().is_some_and(|&i| (from..until).contains(&history.records[i].at)))
        .map(|v| match (v.payment, v.purchase) {
            (Some(payment), _) => format!("{} payment {payment}", v.code),
            (None, Some(purchase)) => format!("{} purchase {purchase}", v.code),
            _ => v.code.to_string(),
        })
        .collect()
}
