//! The runbook's side of a scenario: the advance criteria of §1 as numbers,
//! who decides (posim-auto or a scripted game-day operator), the rollback
//! targets of §4B, and the operator's script — including wrong actions,
//! whose canary lists stay raw text until a deploy refuses them. A game
//! day's people act through the same [`OperatorStep`]s, with evidence.

use serde::Deserialize;
use toml::Spanned;

use super::{ScenarioError, Source};
use crate::contract::CanaryMode;
use crate::time::{self, Millis};

pub use crate::judge::{Criteria, OnInconclusive};

/// Who steers the rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerMode {
    /// posim-auto judges every analysis interval and decides.
    Auto,
    /// Phases advance on schedule; only the operator's script changes course.
    Scripted,
    /// A game day (`posim gameday`): the controller watches and raises the
    /// runbook's alerts, but only people decide (from the console or `posim op`).
    Human,
}

/// Rollback targets, from the decision (§4B); `None` is not judged.
/// The report carries them beside the times measured.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct RollbackTargets {
    pub replicas_on_new_config: Option<Millis>,
    pub affected_denied: Option<Millis>,
    pub rates_under_caps: Option<Millis>,
    pub stable: Option<Millis>,
}

/// What a scripted operator does.
#[derive(Clone, Debug, PartialEq)]
pub enum OperatorAction {
    /// Deploy this env (raw text: a typo is refused at deploy, as a stack would).
    Deploy { mode: String, allowlist: String, blocklist: String, rollback: bool },
    /// Advance to the next phase of the plan.
    Advance,
    /// Incident C: freeze the rollout on the smallest allowlist and audit.
    Freeze,
    /// Incident A: reprocess the executions of customers who paid and got no wash.
    Reprocess,
    /// A customer reports a double charge: audit the latest double confirmation.
    Complaint,
    /// §2 on the runbook's own terms: a partial rollback to the stable
    /// condominiums with the last good build, or (`total`) a blocklist of
    /// the affected ones — the affected read off the current window.
    Rollback { total: bool },
    /// §4C on demand: audit the suspects (double confirmations) without freezing.
    Audit,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OperatorStep {
    pub at: Millis,
    /// Repeat every this long (for `reprocess`).
    pub every: Option<Millis>,
    pub who: String,
    pub action: OperatorAction,
    /// What the operator saw that made them act (§5 "Evidências"); a
    /// game day's console and `posim op` require it, a script may omit it.
    pub evidence: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCriteria {
    confirm_failure_rate_max: Spanned<f64>,
    execute_failure_rate_max: Spanned<f64>,
    confirm_failure_rise_max: Spanned<f64>,
    execute_failure_rise_max: Spanned<f64>,
    min_samples: u64,
    sweep_backlog_max: u32,
    analysis_interval: Spanned<String>,
    stable_for: Spanned<String>,
    on_inconclusive: OnInconclusive,
}

impl Default for RawCriteria {
    fn default() -> Self {
        let share = |value| Spanned::new(0..0, value);
        RawCriteria {
            confirm_failure_rate_max: share(0.05),
            execute_failure_rate_max: share(0.05),
            confirm_failure_rise_max: share(0.03),
            execute_failure_rise_max: share(0.03),
            min_samples: 30,
            sweep_backlog_max: 10,
            analysis_interval: Spanned::new(0..0, "5m".into()),
            stable_for: Spanned::new(0..0, "15m".into()),
            on_inconclusive: OnInconclusive::Hold,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawController {
    mode: ControllerMode,
}

impl Default for RawController {
    fn default() -> Self {
        RawController { mode: ControllerMode::Auto }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargets {
    replicas_on_new_config: Option<Spanned<String>>,
    affected_denied: Option<Spanned<String>>,
    rates_under_caps: Option<Spanned<String>>,
    stable: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawActionKind {
    Deploy,
    Rollback,
    Advance,
    Freeze,
    Reprocess,
    Complaint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperatorStep {
    at: Spanned<String>,
    every: Option<Spanned<String>>,
    #[serde(default = "operator")]
    who: String,
    action: Spanned<RawActionKind>,
    mode: Option<CanaryMode>,
    #[serde(default)]
    allowlist: Vec<String>,
    #[serde(default)]
    blocklist: Vec<String>,
    evidence: Option<String>,
}

fn operator() -> String {
    "operator".to_string()
}

pub(super) fn criteria(source: &Source, raw: &RawCriteria) -> Result<Criteria, ScenarioError> {
    let interval = source.duration(&raw.analysis_interval)?;
    if interval == 0 {
        return Err(source.error(raw.analysis_interval.span(), "analysis_interval must be above zero"));
    }
    Ok(Criteria {
        confirm_failure_rate_max: source.share(&raw.confirm_failure_rate_max, "confirm_failure_rate_max")?,
        execute_failure_rate_max: source.share(&raw.execute_failure_rate_max, "execute_failure_rate_max")?,
        confirm_failure_rise_max: source.share(&raw.confirm_failure_rise_max, "confirm_failure_rise_max")?,
        execute_failure_rise_max: source.share(&raw.execute_failure_rise_max, "execute_failure_rise_max")?,
        min_samples: raw.min_samples,
        sweep_backlog_max: raw.sweep_backlog_max,
        analysis_interval: interval,
        stable_for: source.duration(&raw.stable_for)?,
        on_inconclusive: raw.on_inconclusive,
    })
}

pub(super) fn controller(raw: &RawController) -> ControllerMode {
    raw.mode
}

pub(super) fn targets(source: &Source, raw: &RawTargets) -> Result<RollbackTargets, ScenarioError> {
    let target = |value: &Option<Spanned<String>>| value.as_ref().map(|value| source.duration(value)).transpose();
    Ok(RollbackTargets {
        replicas_on_new_config: target(&raw.replicas_on_new_config)?,
        affected_denied: target(&raw.affected_denied)?,
        rates_under_caps: target(&raw.rates_under_caps)?,
        stable: target(&raw.stable)?,
    })
}

pub(super) fn operator_steps(source: &Source, raw: &[RawOperatorStep]) -> Result<Vec<OperatorStep>, ScenarioError> {
    let mut steps = raw.iter().map(|step| operator_step(source, step)).collect::<Result<Vec<_>, _>>()?;
    steps.sort_by_key(|step| step.at);
    Ok(steps)
}

fn operator_step(source: &Source, raw: &RawOperatorStep) -> Result<OperatorStep, ScenarioError> {
    let kind = *raw.action.get_ref();
    let action = match kind {
        RawActionKind::Deploy | RawActionKind::Rollback => {
            let Some(mode) = raw.mode else {
                return Err(source.error(raw.action.span(), "a deploy or rollback needs `mode`"));
            };
            OperatorAction::Deploy {
                mode: mode.to_string(),
                allowlist: raw.allowlist.join(","),
                blocklist: raw.blocklist.join(","),
                rollback: matches!(kind, RawActionKind::Rollback),
            }
        }
        RawActionKind::Advance => OperatorAction::Advance,
        RawActionKind::Freeze => OperatorAction::Freeze,
        RawActionKind::Reprocess => OperatorAction::Reprocess,
        RawActionKind::Complaint => OperatorAction::Complaint,
    };
    let every = match &raw.every {
        Some(every) if !matches!(action, OperatorAction::Reprocess) => {
            return Err(source.error(every.span(), "only `reprocess` repeats"));
        }
        Some(every) => match source.duration(every)? {
            0 => return Err(source.error(every.span(), "every must be above zero")),
            every => Some(every),
        },
        None => None,
    };
    Ok(OperatorStep {
        at: source.duration(&raw.at)?,
        every,
        who: raw.who.clone(),
        action,
        evidence: raw.evidence.clone(),
    })
}

/// The default drain: long enough for the TTL and a few sweeps.
pub(super) fn default_drain(ttl: Millis, sweep_interval: Millis) -> Millis {
    ttl + 3 * sweep_interval.max(time::SECOND)
}
