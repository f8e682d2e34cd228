//! The runbook's decisions (§1, §2, §4): every analysis interval the
//! controller judges the current deploy's window on the advance criteria and
//! decides — advance, hold, partial rollback, total cut, freeze — and it
//! carries out the operator's script on game days, refusing a bad env as a
//! stack would. On a game day with people (`mode = "human"`) it only
//! watches and raises the runbook's alerts; people act through
//! [`Controller::operator`], and the facilitator's incidents come in
//! through [`Controller::inject`]. Every decision is written to the
//! history with its evidence, which is what the operation log (§5) is
//! made of. Engine-agnostic: it
//! reads and writes only the history, and asks the engine for effects.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::Phase;
use crate::contract::canary::{ALLOWLIST_VAR, BLOCKLIST_VAR, MODE_VAR};
use crate::contract::{CanaryConfig, CanaryMode};
use crate::criteria::details;
use crate::history::{Decision, DecisionKind, DeployInfo, History};
use crate::incident::{Incident, Injection};
use crate::judge::{Criteria, CriterionResult, HistoryIndex, Judgement, OnInconclusive, judge};
use crate::scenario::{ControllerMode, OperatorAction, OperatorStep, Scenario};
use crate::time::{self, Millis};

/// Who decides when no operator does.
pub const AUTO: &str = "posim-auto";
/// Who sets a game day's incidents off.
pub const FACILITATOR: &str = "facilitator";
/// Who carries out the plan's own steps (the first deploy, scheduled advances).
pub const PLAN: &str = "plan";
/// A person on a game day (or a scripted operator), not posim or the facilitator.
pub fn is_person(who: &str) -> bool {
    ![AUTO, PLAN, FACILITATOR].contains(&who)
}

/// How an operator's own evidence opens their decision's evidence.
pub const EVIDENCE_PREFIX: &str = "evidence: ";

/// `evidence` opened by the operator's own, when they gave it.
pub fn opened_by(theirs: Option<&str>, evidence: Vec<String>) -> Vec<String> {
    match theirs {
        Some(theirs) => std::iter::once(format!("{EVIDENCE_PREFIX}{theirs}")).chain(evidence).collect(),
        None => evidence,
    }
}

/// What the controller asks of the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Roll this deploy out to the replicas (a rolling restart).
    RollOut { deploy: u16 },
    /// Validate a rollback: ask `authorize` for these condominiums (indices)
    /// until every replica serves `deploy` and each is denied.
    Probe { deploy: u16, condominiums: Vec<u32> },
    /// Incident C: audit these purchases by provider_ref and idempotency key.
    Audit { purchases: Vec<u32>, asked: Asked },
    /// Incident A: look these purchases' payments up and execute them again.
    Reprocess { purchases: Vec<u32>, asked: Asked },
}

/// Who asked the operator for an action, and the deploy and window it was
/// asked in: the operation log line the action ends with carries them, as
/// the controller's own lines do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub who: String,
    /// The evidence they acted on (a game day's people give it): the
    /// decisions the action ends with open with it too.
    pub evidence: Option<String>,
    pub previous: Option<u16>,
    pub window_from: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Rolling,
    Complete,
    RolledBack,
    Frozen,
}

pub struct Controller {
    phases: Vec<Phase>,
    criteria: Criteria,
    mode: ControllerMode,
    condominiums: Vec<Uuid>,
    horizon: Millis,
    /// The controller's eyes: the run's one history index.
    pub index: HistoryIndex,
    stage: Stage,
    phase: usize,
    serving: Option<u16>,
    last_good: Option<u16>,
    phase_started: Millis,
    /// Why the phase is held, once logged.
    held: Option<String>,
    /// A game day: the alert last raised (the deploy and what broke), so
    /// that one breach is raised once.
    alerted: Option<(Option<u16>, Vec<String>)>,
    /// The evidence the operator gave for the action being carried out:
    /// it opens the evidence of the first decision that action logs...
    evidence: Option<String>,
    /// ...and of the decisions the operator's audits and reprocessing end
    /// with, later ([`Asked`]).
    acting_on: Option<String>,
}

/// Why the controller holds on a window posim could not judge.
const HARNESS_LIMITED: &str = "harness-limited: posim lagged beyond its bound on the requests that failed; held, \
     neither advanced nor rolled back, until the window can be judged";

impl Controller {
    pub fn new(scenario: &Scenario) -> Self {
        Controller {
            phases: scenario.phases.clone(),
            criteria: scenario.criteria.clone(),
            mode: scenario.controller,
            condominiums: scenario.fleet.condominiums.iter().map(|c| c.id).collect(),
            horizon: scenario.horizon(),
            index: HistoryIndex::default(),
            stage: Stage::Rolling,
            phase: 0,
            serving: None,
            last_good: None,
            phase_started: 0,
            held: None,
            alerted: None,
            evidence: None,
            acting_on: None,
        }
    }

    /// The plan phase in effect (fault scopes name phases).
    pub fn phase(&self) -> u16 {
        self.phase as u16
    }

    fn who(&self) -> &'static str {
        if self.mode == ControllerMode::Auto { AUTO } else { PLAN }
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
            (evidence, Vec::new()),
        )
    }

    /// One analysis interval has passed: judge and decide.
    pub fn tick(&mut self, now: Millis, history: &mut History) -> Vec<Command> {
        self.index.catch_up(history);
        let window = self.index.current().map(|w| w.rates()).unwrap_or_default();
        if self.mode == ControllerMode::Human {
            return self.watch(now, history, &window);
        }
        if window.duplicates > 0 && self.stage != Stage::Frozen {
            return self.freeze(now, history, AUTO, "duplicates in the ground truth");
        }
        if self.stage != Stage::Rolling {
            return Vec::new();
        }
        if self.mode == ControllerMode::Scripted {
            return self.scripted_tick(now, history);
        }
        let results = judge(&window, &self.criteria);
        if results.iter().any(|r| r.judgement == Judgement::Fail) {
            return self.roll_back(now, history, AUTO, results, None);
        }
        let phase = &self.phases[self.phase];
        let last = self.phase + 1 == self.phases.len();
        if now < self.phase_started + phase.hold || (now >= self.horizon && !last) {
            return Vec::new();
        }
        if results.iter().all(|r| r.judgement == Judgement::Pass) {
            return self.advance(now, history, AUTO, results, Vec::new());
        }
        if results.iter().any(|r| r.judgement == Judgement::HarnessLimited) {
            // posim's own lag is no evidence about the build: never advance
            // or roll back on it, not even at hold_max (on_inconclusive).
            return self.hold(now, history, results, HARNESS_LIMITED.to_string());
        }
        if now < self.phase_started + phase.hold_max {
            return self.hold(now, history, results, "inconclusive".to_string());
        }
        self.unproven_at_hold_max(now, history, results)
    }

    /// Held as long as allowed and still too few samples: the scenario's
    /// `on_inconclusive` decides, and the log says it did.
    fn unproven_at_hold_max(
        &mut self,
        now: Millis,
        history: &mut History,
        results: Vec<CriterionResult>,
    ) -> Vec<Command> {
        let held = time::human(self.phases[self.phase].hold_max);
        match self.criteria.on_inconclusive {
            OnInconclusive::Hold => {
                let why = format!(
                    "still inconclusive at hold_max ({held}): held until an operator decides (on_inconclusive = hold)"
                );
                self.hold(now, history, results, why)
            }
            OnInconclusive::Advance => {
                let why = format!(
                    "still inconclusive at hold_max ({held}): advancing on an unproven phase as the scenario chose (on_inconclusive = advance)"
                );
                self.advance(now, history, AUTO, results, vec![why])
            }
            OnInconclusive::Rollback => {
                let why = format!(
                    "still inconclusive at hold_max ({held}): rolling back as the scenario chose (on_inconclusive = rollback)"
                );
                let mut results = results;
                results.push(CriterionResult {
                    name: "on_inconclusive".into(),
                    judgement: Judgement::Fail,
                    detail: why,
                    limit: None,
                });
                self.roll_back(now, history, AUTO, results, None)
            }
        }
    }

    fn scripted_tick(&mut self, now: Millis, history: &mut History) -> Vec<Command> {
        let phase = &self.phases[self.phase];
        let last = self.phase + 1 == self.phases.len();
        if now >= self.phase_started + phase.hold && (now < self.horizon || last) {
            let evidence = vec![format!("hold of {} elapsed (scripted game day)", time::human(phase.hold))];
            return self.advance(now, history, PLAN, Vec::new(), evidence);
        }
        Vec::new()
    }

    /// A game day with people: judge the window as posim-auto would and
    /// raise the runbook's alert when a criterion breaks or the ground
    /// truth shows a duplicate — once per breach — but decide nothing.
    fn watch(&mut self, now: Millis, history: &mut History, window: &crate::judge::WindowRates) -> Vec<Command> {
        let results = judge(window, &self.criteria);
        let mut breaches = details(&results, Judgement::Fail);
        if window.duplicates > 0 {
            breaches.push(format!("{} duplicate(s) in the ground truth: freeze and audit (§4C)", window.duplicates));
        }
        if breaches.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> =
            results.iter().filter(|r| r.judgement == Judgement::Fail).map(|r| r.name.to_string()).collect();
        let key = (self.serving, if window.duplicates > 0 { vec!["duplicates".into()] } else { names });
        if self.alerted.as_ref() == Some(&key) {
            return Vec::new();
        }
        self.alerted = Some(key);
        let current = self.serving.map(|d| history.canary(d).clone()).unwrap_or_else(CanaryConfig::off);
        let affected: Vec<String> = self.affected(&current).iter().map(Uuid::to_string).collect();
        breaches.push(format!(
            "affected condominiums: {}",
            if affected.is_empty() { "none singled out".into() } else { affected.join(", ") }
        ));
        breaches.push("alert raised: the runbook's response is the operator's call (§2, §4)".into());
        self.log(now, history, (AUTO, DecisionKind::Alert), breaches, results);
        Vec::new()
    }

    /// The facilitator sets an incident off: logged for the scorecard
    /// (the operators' console does not show it); a bad build (B) ships
    /// on the serving config, a complaint (C) reaches the operators as an
    /// alert — or, with posim-auto deciding, is handled as §4C says.
    pub fn inject(&mut self, injection: &Injection, now: Millis, history: &mut History) -> Vec<Command> {
        self.index.catch_up(history);
        history.injected.push(injection.clone());
        let evidence = vec![injection.incident.describe()];
        match injection.incident {
            Incident::BadDeploy { error_rate } => {
                // What served until now was good: a rollback brings it back.
                self.last_good = self.serving;
                let canary = self.serving.map(|d| history.canary(d).clone()).unwrap_or_else(CanaryConfig::off);
                self.deploy(
                    now,
                    history,
                    (FACILITATOR, DecisionKind::Inject),
                    ("release".to_string(), canary, error_rate),
                    (evidence, Vec::new()),
                )
            }
            Incident::Complaint => {
                self.log(now, history, (FACILITATOR, DecisionKind::Inject), evidence, Vec::new());
                self.customer_complains(now, history)
            }
            _ => {
                self.log(now, history, (FACILITATOR, DecisionKind::Inject), evidence, Vec::new());
                Vec::new()
            }
        }
    }

    fn customer_complains(&mut self, now: Millis, history: &mut History) -> Vec<Command> {
        if self.mode != ControllerMode::Human {
            return self.complaint(now, history, AUTO);
        }
        let suspect = self.index.double_confirmed.last().map_or("no purchase confirmed twice yet".to_string(), |p| {
            self.index.payment_of(*p).map_or(format!("purchase {p}"), |id| format!("payment {id}"))
        });
        let evidence = vec![
            format!("a customer reports a double charge ({suspect})"),
            "alert raised: §4C says freeze, then audit by provider_ref and idempotency_key".into(),
        ];
        self.log(now, history, (AUTO, DecisionKind::Alert), evidence, Vec::new());
        Vec::new()
    }

    /// A step of the game-day operator's script, or a person's action on a
    /// game day (their evidence opens the decision's evidence).
    pub fn operator(&mut self, step: &OperatorStep, now: Millis, history: &mut History) -> Vec<Command> {
        self.index.catch_up(history);
        (self.evidence, self.acting_on) = (step.evidence.clone(), step.evidence.clone());
        let commands = self.operator_action(step, now, history);
        (self.evidence, self.acting_on) = (None, None);
        commands
    }

    fn operator_action(&mut self, step: &OperatorStep, now: Millis, history: &mut History) -> Vec<Command> {
        let who = step.who.as_str();
        match &step.action {
            OperatorAction::Deploy { mode, allowlist, blocklist, rollback } => {
                self.operator_deploy(now, history, who, [mode, allowlist, blocklist], *rollback)
            }
            OperatorAction::Advance if self.stage == Stage::Rolling => {
                self.advance(now, history, who, Vec::new(), vec!["operator's call".to_string()])
            }
            OperatorAction::Advance => {
                let evidence = vec![format!("advance refused: the rollout is {:?}", self.stage)];
                self.log(now, history, (who, DecisionKind::Refused), evidence, Vec::new());
                Vec::new()
            }
            OperatorAction::Freeze => self.freeze(now, history, who, "operator's call"),
            OperatorAction::Reprocess => self.reprocess(now, history, who),
            OperatorAction::Complaint => self.complaint(now, history, who),
            OperatorAction::Rollback { total } => {
                let window = self.index.current().map(|w| w.rates()).unwrap_or_default();
                let results = judge(&window, &self.criteria);
                self.roll_back(now, history, who, results, Some(*total))
            }
            OperatorAction::Audit => self.audit(now, history, who),
        }
    }

    /// §4C step 2 on the operator's call: audit the suspects, freeze or not.
    fn audit(&mut self, now: Millis, history: &mut History, who: &str) -> Vec<Command> {
        let suspects = self.suspects();
        if suspects.is_empty() {
            let evidence = vec!["audit: no purchase was confirmed twice, nothing to audit".into()];
            self.log(now, history, (who, DecisionKind::Audit), evidence, Vec::new());
            return Vec::new();
        }
        vec![Command::Audit { purchases: suspects, asked: self.asked(who) }]
    }

    /// Advances to the next phase (or completes the rollout) on `results`
    /// (empty for an operator's or the plan's call) and `extra` evidence.
    fn advance(
        &mut self,
        now: Millis,
        history: &mut History,
        who: &str,
        results: Vec<CriterionResult>,
        extra: Vec<String>,
    ) -> Vec<Command> {
        self.last_good = self.serving;
        let mut evidence: Vec<String> = results.iter().map(|r| r.detail.clone()).collect();
        evidence.extend(extra);
        if self.phase + 1 >= self.phases.len() {
            self.stage = Stage::Complete;
            evidence.push(format!("phase `{}` held: the rollout is complete", self.phases[self.phase].name));
            self.log(now, history, (who, DecisionKind::Advance), evidence, results);
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
            (evidence, results),
        )
    }

    /// Holds the phase; logged once per reason (inconclusive, then, at
    /// `hold_max`, the scenario's choice to keep holding).
    fn hold(&mut self, now: Millis, history: &mut History, results: Vec<CriterionResult>, why: String) -> Vec<Command> {
        if self.held.as_deref() == Some(why.as_str()) {
            return Vec::new();
        }
        let mut evidence = details(&results, Judgement::Inconclusive);
        evidence.extend(details(&results, Judgement::HarnessLimited));
        if why == "inconclusive" {
            let until = self.phase_started + self.phases[self.phase].hold_max;
            evidence.push(format!("inconclusive: hold until {} at the most", time::clock(until)));
        } else {
            evidence.push(why.clone());
        }
        self.held = Some(why);
        self.log(now, history, (AUTO, DecisionKind::Hold), evidence, results);
        Vec::new()
    }

    /// §2: a partial rollback to the stable condominiums, or a total cut of
    /// the affected ones; the last good build comes back with it. `total`
    /// is the operator's choice; posim-auto (`None`) cuts only when nothing
    /// is in canary mode and a minority of condominiums is affected.
    fn roll_back(
        &mut self,
        now: Millis,
        history: &mut History,
        who: &str,
        results: Vec<CriterionResult>,
        total: Option<bool>,
    ) -> Vec<Command> {
        let mut evidence = details(&results, Judgement::Fail);
        let current = self.serving.map(|d| history.canary(d).clone()).unwrap_or_else(CanaryConfig::off);
        let affected = self.affected(&current);
        let names: Vec<String> = affected.iter().map(Uuid::to_string).collect();
        evidence.push(format!(
            "affected condominiums: {}",
            if names.is_empty() { "none singled out".into() } else { names.join(", ") }
        ));
        let total = total.unwrap_or(
            current.mode == CanaryMode::Off && !affected.is_empty() && affected.len() * 2 < self.condominiums.len(),
        );
        if total && affected.is_empty() {
            evidence.push("total cut refused: the window singles out no affected condominium to block".into());
            self.log(now, history, (who, DecisionKind::Refused), evidence, results);
            return Vec::new();
        }
        let (kind, label, canary) = if total {
            (DecisionKind::TotalCut, "rollback: total cut", CanaryConfig::new(CanaryMode::Blocklist, vec![], affected))
        } else {
            let stable = self.last_good.map(|d| history.canary(d).clone());
            (DecisionKind::PartialRollback, "rollback: partial", shrink(stable, &affected))
        };
        self.stage = Stage::RolledBack;
        evidence.push(format!("rollback to {} with the last good build", canary.summary()));
        self.deploy(now, history, (who, kind), (label.to_string(), canary, 0.0), (evidence, results))
    }

    /// Condominiums whose own failure share in the window is above the caps.
    fn affected(&self, current: &CanaryConfig) -> Vec<Uuid> {
        let cap = self.criteria.confirm_failure_rate_max.min(self.criteria.execute_failure_rate_max);
        let mut affected: Vec<Uuid> = self
            .index
            .current()
            .map(|window| &window.by_condominium)
            .into_iter()
            .flatten()
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
        evidence.extend(self.index.current().into_iter().flat_map(|w| w.duplicates.iter().cloned()));
        evidence.push(format!("allowlist restricted to {}", canary.summary()));
        let suspects = self.suspects();
        self.stage = Stage::Frozen;
        let mut commands = self.deploy(
            now,
            history,
            (who, DecisionKind::Freeze),
            ("freeze".to_string(), canary, 0.0),
            (evidence, vec![]),
        );
        if !suspects.is_empty() {
            commands.push(Command::Audit { purchases: suspects, asked: self.asked(who) });
        }
        commands
    }

    /// The purchases to audit: double confirmations and duplicated ground truth.
    fn suspects(&self) -> Vec<u32> {
        let mut suspects: Vec<u32> = self.index.double_confirmed.iter().rev().take(5).copied().collect();
        suspects.sort_unstable();
        suspects
    }

    fn complaint(&mut self, now: Millis, history: &mut History, who: &str) -> Vec<Command> {
        let Some(&purchase) = self.index.double_confirmed.last() else {
            let evidence = vec!["a complaint, but no purchase was confirmed twice".into()];
            self.log(now, history, (who, DecisionKind::Audit), evidence, Vec::new());
            return Vec::new();
        };
        if self.stage == Stage::Frozen {
            return vec![Command::Audit { purchases: vec![purchase], asked: self.asked(who) }];
        }
        self.freeze(now, history, who, &format!("a customer reports a double charge (purchase {purchase})"))
    }

    fn reprocess(&mut self, now: Millis, history: &mut History, who: &str) -> Vec<Command> {
        let purchases = std::mem::take(&mut self.index.gave_up_executing);
        if purchases.is_empty() {
            return Vec::new();
        }
        let payments: Vec<String> = purchases
            .iter()
            .map(|p| self.index.payment_of(*p).map_or(format!("purchase {p}"), |id| id.to_string()))
            .collect();
        let evidence = vec![
            format!("{} customer(s) paid and their machine did not start (§4A)", purchases.len()),
            format!("reprocessing execution for payments: {}", payments.join(", ")),
        ];
        self.log(now, history, (who, DecisionKind::Reprocess), evidence, Vec::new());
        vec![Command::Reprocess { purchases, asked: self.asked(who) }]
    }

    fn asked(&self, who: &str) -> Asked {
        let evidence = self.acting_on.clone();
        Asked { who: who.to_string(), evidence, previous: self.serving, window_from: self.window_from() }
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
                self.log(now, history, (who, DecisionKind::Refused), evidence, Vec::new());
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
        self.deploy(now, history, (who, kind), (label.to_string(), canary, build), (evidence, Vec::new()))
    }

    /// Records a deploy and its decision, and asks the engine to roll it
    /// out (and to probe the condominiums it now denies). The index opens
    /// the deploy's window when it reads the deploy.
    fn deploy(
        &mut self,
        now: Millis,
        history: &mut History,
        (who, kind): (&str, DecisionKind),
        (label, canary, bad_build_error_rate): (String, CanaryConfig, f64),
        (evidence, criteria): (Vec<String>, Vec<CriterionResult>),
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
        let evidence = self.with_operators_evidence(evidence);
        let deploy = history.add_deploy(now, info);
        history.add_decision(Decision {
            at: now,
            who: who.to_string(),
            kind,
            deploy: Some(deploy),
            previous,
            window_from: self.window_from(),
            evidence,
            criteria,
        });
        self.serving = Some(deploy);
        self.held = None;
        let mut commands = vec![Command::RollOut { deploy }];
        if kind.is_rollback() && !denied_now.is_empty() {
            commands.push(Command::Probe { deploy, condominiums: denied_now });
        }
        commands
    }

    /// Records a decision that deploys nothing.
    fn log(
        &mut self,
        now: Millis,
        history: &mut History,
        (who, kind): (&str, DecisionKind),
        evidence: Vec<String>,
        criteria: Vec<CriterionResult>,
    ) {
        let evidence = self.with_operators_evidence(evidence);
        let decision = Decision {
            at: now,
            who: who.to_string(),
            kind,
            deploy: None,
            previous: self.serving,
            window_from: self.window_from(),
            evidence,
            criteria,
        };
        history.add_decision(decision);
    }

    /// The operator's own evidence first, then what posim adds (once: the
    /// first decision an action logs carries it).
    fn with_operators_evidence(&mut self, evidence: Vec<String>) -> Vec<String> {
        opened_by(self.evidence.take().as_deref(), evidence)
    }

    /// Where the window being judged opened (the serving deploy's start).
    fn window_from(&self) -> Millis {
        self.index.current().map_or(0, |window| window.from)
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
