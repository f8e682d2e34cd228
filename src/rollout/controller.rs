//! The runbook's decisions (§1, §2, §4): every analysis interval the
//! controller judges the current deploy's window on the advance criteria and
//! decides — advance, hold, partial rollback, total cut, freeze — and it
//! carries out the operator's script on game days, refusing a bad env as a
//! stack would. Every decision is written to the history with its evidence,
//! which is what the operation log (§5) is made of. Engine-agnostic: it
//! reads and writes only the history, and asks the engine for effects.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::Phase;
use super::watch::{Rate, Watch, WindowView};
use crate::check::kpi::wilson_interval;
use crate::contract::canary::{ALLOWLIST_VAR, BLOCKLIST_VAR, MODE_VAR};
use crate::contract::{CanaryConfig, CanaryMode};
use crate::history::{Decision, DecisionKind, DeployInfo, History};
use crate::scenario::{ControllerMode, Criteria, OperatorAction, OperatorStep, Scenario};
use crate::time::{self, Millis};

/// Who decides when no operator does.
pub const AUTO: &str = "posim-auto";

/// What the controller asks of the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Roll this deploy out to the replicas (a rolling restart).
    RollOut { deploy: u16 },
    /// Validate a rollback: ask `authorize` for these condominiums (indices)
    /// until every replica serves `deploy` and each is denied.
    Probe { deploy: u16, condominiums: Vec<u32> },
    /// Incident C: audit these purchases by provider_ref and idempotency key.
    Audit { purchases: Vec<u32>, who: String },
    /// Incident A: look these purchases' payments up and execute them again.
    Reprocess { purchases: Vec<u32> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Rolling,
    Complete,
    RolledBack,
    Frozen,
}

/// A window judged on the criteria.
#[derive(Debug, Default)]
struct Verdict {
    failed: Vec<String>,
    inconclusive: Vec<String>,
    passed: Vec<String>,
}

pub struct Controller {
    phases: Vec<Phase>,
    criteria: Criteria,
    mode: ControllerMode,
    condominiums: Vec<Uuid>,
    horizon: Millis,
    pub watch: Watch,
    stage: Stage,
    phase: usize,
    serving: Option<u16>,
    last_good: Option<u16>,
    phase_started: Millis,
    held: bool,
    /// The previous phase's rates, for the tolerated rise.
    baseline: Option<(Rate, Rate)>,
}

impl Controller {
    pub fn new(scenario: &Scenario) -> Self {
        Controller {
            phases: scenario.phases.clone(),
            criteria: scenario.criteria.clone(),
            mode: scenario.controller,
            condominiums: scenario.fleet.condominiums.iter().map(|c| c.id).collect(),
            horizon: scenario.horizon(),
            watch: Watch::default(),
            stage: Stage::Rolling,
            phase: 0,
            serving: None,
            last_good: None,
            phase_started: 0,
            held: false,
            baseline: None,
        }
    }

    /// The plan phase in effect (fault scopes name phases).
    pub fn phase(&self) -> u16 {
        self.phase as u16
    }

    fn who(&self) -> &'static str {
        if self.mode == ControllerMode::Auto { AUTO } else { "plan" }
    }

    /// Phase 1's deploy, at the start of the run.
    pub fn start(&mut self, now: Millis, history: &mut History) -> Vec<Command> {
        assert!(self.serving.is_none(), "the rollout starts once");
        let first = self.phases[0].clone();
        let evidence = vec![format!("phase 1 `{}` deploys {}", first.name, first.canary.summary())];
        let who = self.who();
        self.deploy(
            now,
            history,
            (who, DecisionKind::Start),
            (first.name, first.canary, first.bad_build_error_rate),
            evidence,
        )
    }

    /// One analysis interval has passed: judge and decide.
    pub fn tick(&mut self, now: Millis, history: &mut History) -> Vec<Command> {
        self.watch.catch_up(history);
        if !self.watch.window.duplicates.is_empty() && self.stage != Stage::Frozen {
            return self.freeze(now, history, AUTO, "duplicates in the ground truth");
        }
        if self.stage != Stage::Rolling {
            return Vec::new();
        }
        if self.mode == ControllerMode::Scripted {
            return self.scripted_tick(now, history);
        }
        let verdict = self.judge(&self.watch.window);
        if !verdict.failed.is_empty() {
            return self.roll_back(now, history, AUTO, verdict.failed);
        }
        let phase = &self.phases[self.phase];
        let last = self.phase + 1 == self.phases.len();
        if now < self.phase_started + phase.hold || (now >= self.horizon && !last) {
            return Vec::new();
        }
        if verdict.inconclusive.is_empty() {
            return self.advance(now, history, AUTO, verdict.passed);
        }
        if now < self.phase_started + phase.hold_max {
            return self.hold(now, history, verdict);
        }
        // Held as long as allowed and still too few samples: judge the raw rates.
        let window = &self.watch.window;
        let within = window.confirm.value() <= self.criteria.confirm_failure_rate_max
            && window.execute.value() <= self.criteria.execute_failure_rate_max;
        let mut evidence = verdict.inconclusive;
        let held = time::human(phase.hold_max);
        if within {
            evidence.push(format!("held to hold_max ({held}); the observed rates are within their caps: advance"));
            return self.advance(now, history, AUTO, evidence);
        }
        evidence.push(format!("held to hold_max ({held}); the observed rates are above their caps"));
        self.roll_back(now, history, AUTO, evidence)
    }

    fn scripted_tick(&mut self, now: Millis, history: &mut History) -> Vec<Command> {
        let phase = &self.phases[self.phase];
        let last = self.phase + 1 == self.phases.len();
        if now >= self.phase_started + phase.hold && (now < self.horizon || last) {
            let evidence = vec![format!("hold of {} elapsed (scripted game day)", time::human(phase.hold))];
            return self.advance(now, history, "plan", evidence);
        }
        Vec::new()
    }

    /// A step of the game-day operator's script.
    pub fn operator(&mut self, step: &OperatorStep, now: Millis, history: &mut History) -> Vec<Command> {
        self.watch.catch_up(history);
        let who = step.who.as_str();
        match &step.action {
            OperatorAction::Deploy { mode, allowlist, blocklist, rollback } => {
                self.operator_deploy(now, history, who, [mode, allowlist, blocklist], *rollback)
            }
            OperatorAction::Advance if self.stage == Stage::Rolling => {
                self.advance(now, history, who, vec!["operator's call".to_string()])
            }
            OperatorAction::Advance => {
                let evidence = vec![format!("advance refused: the rollout is {:?}", self.stage)];
                self.log(now, history, who, DecisionKind::Refused, evidence);
                Vec::new()
            }
            OperatorAction::Freeze => self.freeze(now, history, who, "operator's call"),
            OperatorAction::Reprocess => self.reprocess(now, history, who),
            OperatorAction::Complaint => self.complaint(now, history, who),
        }
    }

    /// Judges a window on the criteria of §1.
    fn judge(&self, window: &WindowView) -> Verdict {
        let mut verdict = Verdict::default();
        let criteria = &self.criteria;
        let baseline = self.baseline;
        let rates = [
            (
                "confirm failure",
                window.confirm,
                criteria.confirm_failure_rate_max,
                criteria.confirm_failure_rise_max,
                baseline.map(|b| b.0),
            ),
            (
                "execute-cycle failure",
                window.execute,
                criteria.execute_failure_rate_max,
                criteria.execute_failure_rise_max,
                baseline.map(|b| b.1),
            ),
        ];
        for (name, rate, cap, rise, before) in rates {
            let (low, _) = wilson_interval(rate.failures, rate.attempts);
            let shown = format!("{name} {}/{} ({:.2}%)", rate.failures, rate.attempts, 100.0 * rate.value());
            if rate.attempts < criteria.min_samples {
                verdict.inconclusive.push(format!("{shown}: fewer than {} samples", criteria.min_samples));
            } else if low > cap {
                verdict.failed.push(format!(
                    "{shown}: above the cap of {:.2}% (95% lower bound {:.2}%)",
                    100.0 * cap,
                    100.0 * low
                ));
            } else if let Some(before) = before.filter(|b| b.attempts >= criteria.min_samples && low > b.value() + rise)
            {
                verdict.failed.push(format!(
                    "{shown}: rose from {:.2}% beyond the tolerated {:.2} points",
                    100.0 * before.value(),
                    100.0 * rise
                ));
            } else {
                verdict.passed.push(format!("{shown}: stable"));
            }
        }
        if window.sweep_backlog_max > criteria.sweep_backlog_max {
            verdict.failed.push(format!(
                "critical alert: sweep backlog {} above {}",
                window.sweep_backlog_max, criteria.sweep_backlog_max
            ));
        } else {
            verdict.passed.push(format!("no critical alert (sweep backlog max {})", window.sweep_backlog_max));
        }
        verdict.passed.push("duplicates: 0".to_string());
        verdict
    }

    fn advance(&mut self, now: Millis, history: &mut History, who: &str, mut evidence: Vec<String>) -> Vec<Command> {
        self.baseline = Some((self.watch.window.confirm, self.watch.window.execute));
        self.last_good = self.serving;
        if self.phase + 1 >= self.phases.len() {
            self.stage = Stage::Complete;
            evidence.push(format!("phase `{}` held: the rollout is complete", self.phases[self.phase].name));
            self.log(now, history, who, DecisionKind::Advance, evidence);
            return Vec::new();
        }
        self.phase += 1;
        self.phase_started = now;
        let next = self.phases[self.phase].clone();
        evidence.push(format!("advance to `{}`: {}", next.name, next.canary.summary()));
        self.deploy(
            now,
            history,
            (who, DecisionKind::Advance),
            (next.name, next.canary, next.bad_build_error_rate),
            evidence,
        )
    }

    fn hold(&mut self, now: Millis, history: &mut History, verdict: Verdict) -> Vec<Command> {
        if !self.held {
            self.held = true;
            let mut evidence = verdict.inconclusive;
            let until = self.phase_started + self.phases[self.phase].hold_max;
            evidence.push(format!("inconclusive: hold until {} at the most", time::clock(until)));
            self.log(now, history, AUTO, DecisionKind::Hold, evidence);
        }
        Vec::new()
    }

    /// §2: a partial rollback to the stable condominiums, or a total cut of
    /// the affected ones; the last good build comes back with it.
    fn roll_back(&mut self, now: Millis, history: &mut History, who: &str, mut evidence: Vec<String>) -> Vec<Command> {
        let current = self.serving.map(|d| history.canary(d).clone()).unwrap_or_else(CanaryConfig::off);
        let affected = self.affected(&current);
        let names: Vec<String> = affected.iter().map(Uuid::to_string).collect();
        evidence.push(format!(
            "affected condominiums: {}",
            if names.is_empty() { "none singled out".into() } else { names.join(", ") }
        ));
        let (kind, label, canary) = if current.mode == CanaryMode::Off
            && !affected.is_empty()
            && affected.len() * 2 < self.condominiums.len()
        {
            (DecisionKind::TotalCut, "rollback: total cut", CanaryConfig::new(CanaryMode::Blocklist, vec![], affected))
        } else {
            let stable = self.last_good.map(|d| history.canary(d).clone());
            (DecisionKind::PartialRollback, "rollback: partial", shrink(stable, &affected))
        };
        self.stage = Stage::RolledBack;
        evidence.push(format!("rollback to {} with the last good build", canary.summary()));
        self.deploy(now, history, (who, kind), (label.to_string(), canary, 0.0), evidence)
    }

    /// Condominiums whose own failure share in the window is above the caps.
    fn affected(&self, current: &CanaryConfig) -> Vec<Uuid> {
        let cap = self.criteria.confirm_failure_rate_max.min(self.criteria.execute_failure_rate_max);
        let mut affected: Vec<Uuid> = self
            .watch
            .window
            .failures_by_condominium
            .iter()
            .filter(|(_, rate)| rate.failures >= 2 && rate.value() > cap)
            .map(|(&index, _)| self.condominiums[index as usize])
            .filter(|id| current.admits(*id))
            .collect();
        affected.sort_unstable();
        affected
    }

    /// Incident C, step 1: restrict to phase 1's allowlist and stop advancing.
    fn freeze(&mut self, now: Millis, history: &mut History, who: &str, why: &str) -> Vec<Command> {
        let current = self.serving.map(|d| history.canary(d).clone()).unwrap_or_else(CanaryConfig::off);
        let first = &self.phases[0].canary;
        let restricted: Vec<Uuid> = first.allowlist.iter().copied().filter(|id| current.admits(*id)).collect();
        let canary = CanaryConfig::new(CanaryMode::Allowlist, restricted, vec![]);
        let mut evidence = vec![format!("freeze: {why}")];
        evidence.extend(self.watch.window.duplicates.iter().cloned());
        evidence.push(format!("allowlist restricted to {}", canary.summary()));
        let suspects = self.suspects();
        self.stage = Stage::Frozen;
        let mut commands =
            self.deploy(now, history, (who, DecisionKind::Freeze), ("freeze".to_string(), canary, 0.0), evidence);
        if !suspects.is_empty() {
            commands.push(Command::Audit { purchases: suspects, who: who.to_string() });
        }
        commands
    }

    /// The purchases to audit: double confirmations and duplicated ground truth.
    fn suspects(&self) -> Vec<u32> {
        let mut suspects: Vec<u32> = self.watch.double_confirmed.iter().rev().take(5).copied().collect();
        suspects.sort_unstable();
        suspects
    }

    fn complaint(&mut self, now: Millis, history: &mut History, who: &str) -> Vec<Command> {
        let Some(&purchase) = self.watch.double_confirmed.last() else {
            self.log(
                now,
                history,
                who,
                DecisionKind::Audit,
                vec!["a complaint, but no purchase was confirmed twice".into()],
            );
            return Vec::new();
        };
        if self.stage == Stage::Frozen {
            return vec![Command::Audit { purchases: vec![purchase], who: who.to_string() }];
        }
        self.freeze(now, history, who, &format!("a customer reports a double charge (purchase {purchase})"))
    }

    fn reprocess(&mut self, now: Millis, history: &mut History, who: &str) -> Vec<Command> {
        let purchases = std::mem::take(&mut self.watch.gave_up_executing);
        if purchases.is_empty() {
            return Vec::new();
        }
        let payments: Vec<String> = purchases
            .iter()
            .map(|p| self.watch.payment_of(*p).map_or(format!("purchase {p}"), |id| id.to_string()))
            .collect();
        let evidence = vec![
            format!("{} customer(s) paid and their machine did not start (§4A)", purchases.len()),
            format!("reprocessing execution for payments: {}", payments.join(", ")),
        ];
        self.log(now, history, who, DecisionKind::Reprocess, evidence);
        vec![Command::Reprocess { purchases }]
    }

    fn operator_deploy(
        &mut self,
        now: Millis,
        history: &mut History,
        who: &str,
        env: [&String; 3],
        rollback: bool,
    ) -> Vec<Command> {
        let env: BTreeMap<&str, String> =
            [(MODE_VAR, env[0].clone()), (ALLOWLIST_VAR, env[1].clone()), (BLOCKLIST_VAR, env[2].clone())].into();
        let canary = match CanaryConfig::from_env(&|name| env.get(name).cloned()) {
            Ok(canary) => canary,
            Err(error) => {
                let serving = self.serving.map_or("nothing".to_string(), |d| history.canary(d).summary());
                let evidence = vec![
                    format!("deploy refused at start-up: {error}"),
                    format!("the previous config keeps serving: {serving}"),
                ];
                self.log(now, history, who, DecisionKind::Refused, evidence);
                return Vec::new();
            }
        };
        let unknown: Vec<String> = canary
            .allowlist
            .iter()
            .chain(&canary.blocklist)
            .filter(|id| !self.condominiums.contains(id))
            .map(Uuid::to_string)
            .collect();
        let mut evidence = vec![format!("operator deploy: {}", canary.summary())];
        if !unknown.is_empty() {
            evidence.push(format!("warning: not in the fleet: {}", unknown.join(", ")));
        }
        let (kind, label, build) = if rollback {
            self.stage = Stage::RolledBack;
            (DecisionKind::PartialRollback, "rollback: operator", 0.0)
        } else {
            let build = self.serving.map_or(0.0, |d| history.deploys[usize::from(d)].bad_build_error_rate);
            (DecisionKind::Deploy, "operator deploy", build)
        };
        self.deploy(now, history, (who, kind), (label.to_string(), canary, build), evidence)
    }

    /// Records a deploy and its decision, opens a new window, and asks the
    /// engine to roll it out (and to probe the condominiums it now denies).
    fn deploy(
        &mut self,
        now: Millis,
        history: &mut History,
        (who, kind): (&str, DecisionKind),
        (label, canary, bad_build_error_rate): (String, CanaryConfig, f64),
        evidence: Vec<String>,
    ) -> Vec<Command> {
        let previous = self.serving;
        let denied_now: Vec<u32> = match previous {
            Some(previous) => {
                let before = history.canary(previous).clone();
                (0..self.condominiums.len() as u32)
                    .filter(|&i| {
                        before.admits(self.condominiums[i as usize]) && !canary.admits(self.condominiums[i as usize])
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let info = DeployInfo { label, canary, phase: self.phase as u16, bad_build_error_rate };
        let deploy = history.add_deploy(now, info);
        let window_from = self.watch.window.from;
        history.add_decision(Decision {
            at: now,
            who: who.to_string(),
            kind,
            deploy: Some(deploy),
            previous,
            window_from,
            evidence,
        });
        self.serving = Some(deploy);
        self.held = false;
        self.watch.open_window(now, deploy);
        let mut commands = vec![Command::RollOut { deploy }];
        if kind.is_rollback() && !denied_now.is_empty() {
            commands.push(Command::Probe { deploy, condominiums: denied_now });
        }
        commands
    }

    fn log(&mut self, now: Millis, history: &mut History, who: &str, kind: DecisionKind, evidence: Vec<String>) {
        let window_from = self.watch.window.from;
        let decision = Decision {
            at: now,
            who: who.to_string(),
            kind,
            deploy: None,
            previous: self.serving,
            window_from,
            evidence,
        };
        history.add_decision(decision);
    }
}

/// One suspect's §4C audit, as the operation log shows it: the payments the
/// stack returns for its idempotency key, its charges, and its cycles.
pub fn audit_line(
    purchase: u32,
    key: &str,
    payments_for_key: usize,
    charges: usize,
    standing: usize,
    cycles: usize,
) -> String {
    let duplicate = standing > 1 || cycles > 1 || payments_for_key > 1;
    format!(
        "purchase {purchase}: idempotency_key {key} → {payments_for_key} payment(s); {charges} charge(s), {standing} standing; \
         {cycles} cycle(s) in the machine logs → {}",
        if duplicate { "DUPLICATE confirmed" } else { "no duplicate" }
    )
}

/// The stable condominiums: the last good config, without the affected ones.
fn shrink(stable: Option<CanaryConfig>, affected: &[Uuid]) -> CanaryConfig {
    let Some(stable) = stable else {
        return CanaryConfig::new(CanaryMode::Allowlist, vec![], vec![]);
    };
    match stable.mode {
        CanaryMode::Allowlist => {
            let kept = stable.allowlist.into_iter().filter(|id| !affected.contains(id)).collect();
            CanaryConfig::new(CanaryMode::Allowlist, kept, vec![])
        }
        CanaryMode::Blocklist => {
            let blocked = stable.blocklist.into_iter().chain(affected.iter().copied()).collect();
            CanaryConfig::new(CanaryMode::Blocklist, vec![], blocked)
        }
        CanaryMode::Off => CanaryConfig::new(CanaryMode::Blocklist, vec![], affected.to_vec()),
    }
}
