//! The run pipeline, once for both engines: what an engine recorded goes
//! through the checkers (D1–D9), the one history index, the KPI windows and
//! rollback timing, and becomes the report with its verdict. The simulator
//! and the live engine hand over the same [`Recorded`]; nothing here knows
//! which one ran.

use crate::check::{self, kpi, rollback};
use crate::gameday::scorecard::{self, Decider, Scorecard, score};
use crate::history::History;
use crate::judge::HistoryIndex;
use crate::report::{self, RunFacts, RunReport};
use crate::scenario::ControllerMode;
use crate::scenario::Scenario;
use crate::sim::{self, SimOptions, SimOutcome};
use crate::stack::{BugSet, StackBug};
use crate::time::Millis;

/// What an engine recorded, and what it has to say about how it ran.
pub struct Recorded {
    pub history: History,
    /// Requests that reached the stack.
    pub stack_requests: u64,
    /// Runbook time covered, drain included.
    pub simulated: Millis,
    pub purchases: u64,
    /// What played the run (the simulator; live, and what ran the stack).
    pub engine: String,
    /// What the engine could not do as asked.
    pub notes: Vec<String>,
    /// The history already indexed (the simulator's controller kept it up to
    /// date as the run went); `None`: the judge indexes the history itself.
    pub index: Option<HistoryIndex>,
    /// posim's own lag (live runs; the simulator has none).
    pub harness: Option<crate::harness::HarnessFigures>,
}

impl Recorded {
    /// A simulation's record (the simulator plays every fault a scenario names).
    pub fn simulated(outcome: SimOutcome) -> Recorded {
        let SimOutcome { history, stack_requests, simulated, purchases, index } = outcome;
        let engine = "simulator".into();
        let notes = Vec::new();
        Recorded { history, stack_requests, simulated, purchases, engine, notes, index: Some(index), harness: None }
    }
}

/// A judged run: the report and the history it was made from.
pub struct Judged {
    pub report: RunReport,
    pub history: History,
}

/// Simulates `scenario` with `seed` and `bugs`, then judges it.
pub fn simulate(scenario: &Scenario, seed: u64, bugs: &[StackBug]) -> Judged {
    simulate_observed(scenario, seed, bugs, &mut |_| {})
}

/// [`simulate`], telling `progress` how far in simulated time it got now and then.
pub fn simulate_observed(
    scenario: &Scenario,
    seed: u64,
    bugs: &[StackBug],
    progress: &mut dyn FnMut(crate::time::Millis),
) -> Judged {
    let outcome = sim::run_observed(scenario, SimOptions { seed, bugs: BugSet::new(bugs) }, progress);
    judge(scenario, seed, bugs, Recorded::simulated(outcome))
}

/// Checks a recorded run and builds its report.
pub fn judge(scenario: &Scenario, seed: u64, bugs: &[StackBug], recorded: Recorded) -> Judged {
    let Recorded { history, stack_requests, simulated, purchases, engine, notes, index, harness } = recorded;
    let violations = check::check(&history);
    let index = index.unwrap_or_else(|| HistoryIndex::of(&history));
    let windows = kpi::windows(&history, &index, simulated, &scenario.criteria);
    let rollbacks =
        rollback::rollback_timings(&history, &index, &scenario.criteria, &scenario.rollback_targets, simulated);
    let report = report::build(RunFacts {
        scenario,
        seed,
        engine,
        stack_bugs: bugs.iter().map(StackBug::to_string).collect(),
        history: &history,
        index: &index,
        violations: &violations,
        windows,
        rollbacks,
        simulated,
        stack_requests,
        purchases,
        notes,
        harness,
    });
    let mut judged = Judged { report, history };
    if scenario.controller == ControllerMode::Human {
        judged.report.scorecard = Some(game_day_card(scenario, seed, bugs, &judged));
    }
    judged
}

/// A game day's scorecard, with posim-auto's reference line: the same
/// scenario, seed and incidents simulated with posim-auto deciding.
fn game_day_card(scenario: &Scenario, seed: u64, bugs: &[StackBug], judged: &Judged) -> Scorecard {
    let people = score(&card_input(judged), Decider::People);
    // The incidents as they were set off: the sealed script's, and the
    // facilitator's at the moments they chose (their faults added as theirs).
    let mut automatic = Scenario { controller: ControllerMode::Auto, ..scenario.clone() };
    for injection in judged.history.injected.iter().filter(|injection| !scenario.inject.contains(injection)) {
        automatic.faults.extend(injection.incident.faults(injection.at));
    }
    automatic.inject = judged.history.injected.clone();
    let reference = simulate(&automatic, seed, bugs);
    let mut reference = score(&card_input(&reference), Decider::PosimAuto);
    reference.outcome = format!("{} (simulated)", reference.outcome);
    Scorecard { reference: Some(Box::new(reference)), ..people }
}

/// What a scorecard reads of a judged run.
fn card_input(judged: &Judged) -> scorecard::Judged<'_> {
    let report = &judged.report;
    scorecard::Judged {
        history: &judged.history,
        rollbacks: &report.rollbacks,
        violation_counts: &report.violation_counts,
        outcome: report.outcome.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller's index, handed over, judges as a fresh index of the
    /// whole history would (incident A: the controller drains its reprocess queue).
    #[test]
    fn the_simulators_index_judges_like_a_fresh_one() {
        for file in ["scenarios/incident-a-paid-no-wash.toml", "scenarios/game-day-operator.toml"] {
            let scenario = Scenario::load(std::path::Path::new(file)).expect("a shipped scenario loads");
            let options = SimOptions { seed: scenario.seed, bugs: BugSet::default() };
            let handed_over = Recorded::simulated(sim::run(&scenario, options));
            let fresh = Recorded { index: None, ..Recorded::simulated(sim::run(&scenario, options)) };
            let json = |recorded| serde_json::to_string(&judge(&scenario, scenario.seed, &[], recorded).report);
            assert_eq!(json(handed_over).ok(), json(fresh).ok(), "{file}");
        }
    }
}
