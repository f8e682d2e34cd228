//! The settings search: a small, fixed grid of the gate's `min_samples`,
//! each phase's `hold` and `hold_max`, each run (on fewer seeds than the
//! calibration) on the sound build and on confirm failures at 2× cap from
//! the first phase; the suggestion is the quickest rollout whose false
//! rollbacks reach the target and whose false promotes stay under 1%.

use serde::{Deserialize, Serialize};

use super::builds::{AIM_MULTIPLE, Build, BuildFault};
use super::tally::{Proportion, Spread};
use super::{Case, FALSE_PROMOTE_AIM, Seeds, run_cases};
use crate::scenario::Scenario;

/// `min_samples` as a share of the scenario's, in percent.
const MIN_SAMPLES_PERCENT: [u64; 3] = [67, 100, 167];
/// Each phase's `hold`, as a share of the scenario's, in percent.
const HOLD_PERCENT: [u64; 3] = [75, 100, 150];

/// How many candidate settings the grid holds.
pub const CANDIDATES: usize = MIN_SAMPLES_PERCENT.len() * HOLD_PERCENT.len() * 2;
/// Runs per candidate and seed: the sound build and the 2× confirm build.
pub const RUNS_PER_CANDIDATE: u64 = 2;

/// How `hold_max` follows a candidate's `hold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldMax {
    /// In the scenario's own ratio to `hold`.
    AsWritten,
    /// Twice `hold`: more time for an unproven phase to gather samples.
    Double,
}

/// One setting of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub min_samples: u64,
    pub hold_percent: u64,
    pub hold_max: HoldMax,
}

impl Candidate {
    /// The scenario with this setting (checked arithmetic: a hold that
    /// would overflow stays as written).
    pub fn apply(&self, scenario: &Scenario) -> Scenario {
        let mut set = scenario.clone();
        set.criteria.min_samples = self.min_samples;
        for phase in &mut set.phases {
            let scaled = |ms: u64| ms.checked_mul(self.hold_percent).map_or(ms, |ms| (ms / 100).max(1));
            let hold = scaled(phase.hold);
            let hold_max = match self.hold_max {
                HoldMax::AsWritten => scaled(phase.hold_max),
                HoldMax::Double => hold.saturating_mul(2),
            };
            phase.hold = hold;
            phase.hold_max = hold_max.max(hold);
        }
        set
    }

    /// `min_samples 30, hold ×1.00, hold_max as written`.
    pub fn text(&self) -> String {
        let hold_max = match self.hold_max {
            HoldMax::AsWritten => "as written",
            HoldMax::Double => "2× hold",
        };
        format!("min_samples {}, hold ×{:.2}, hold_max {hold_max}", self.min_samples, self.hold_percent as f64 / 100.0)
    }
}

/// The grid around the scenario's own setting (which is in it).
pub fn candidates(scenario: &Scenario) -> Vec<Candidate> {
    let written = scenario.criteria.min_samples;
    let mut grid = Vec::with_capacity(CANDIDATES);
    for percent in MIN_SAMPLES_PERCENT {
        let min_samples = written.checked_mul(percent).map_or(written, |scaled| (scaled / 100).max(1));
        for hold_percent in HOLD_PERCENT {
            for hold_max in [HoldMax::AsWritten, HoldMax::Double] {
                grid.push(Candidate { min_samples, hold_percent, hold_max });
            }
        }
    }
    grid
}

/// One candidate's measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateResult {
    pub candidate: Candidate,
    /// The scenario as written.
    pub current: bool,
    pub false_rollback: Proportion,
    /// Confirm failures at 2× cap from the first phase.
    pub false_promote_2x: Proportion,
    /// The sound build's completed rollouts.
    pub rollout_time: Option<Spread>,
}

impl CandidateResult {
    pub fn meets(&self, target: f64) -> bool {
        self.false_rollback.rate <= target && self.false_promote_2x.rate <= FALSE_PROMOTE_AIM
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub first_seed: u64,
    pub seeds: u64,
    pub candidates: Vec<CandidateResult>,
    /// The suggested candidate's index, if any reached the aims.
    pub chosen: Option<usize>,
    /// What the choice rests on, in words.
    pub note: String,
}

/// Runs the grid; `ran` hears how many runs are done.
pub fn search(scenario: &Scenario, grid: &[Candidate], seeds: &Seeds, target: f64, ran: &dyn Fn(u64)) -> Suggestion {
    let bad = Build::Bad { fault: BuildFault::ConfirmFailures, multiple: AIM_MULTIPLE, from_phase: 0 };
    let cases: Vec<Case> = grid
        .iter()
        .flat_map(|candidate| {
            let set = candidate.apply(scenario);
            [Case { scenario: set.clone(), build: Build::Sound }, Case { scenario: bad.apply(&set), build: bad }]
        })
        .collect();
    let tallies = run_cases(&cases, seeds, ran);
    let written = scenario.criteria.min_samples;
    let results: Vec<CandidateResult> = grid
        .iter()
        .zip(tallies.chunks(2))
        .map(|(candidate, pair)| {
            let (sound, bad) = (&pair[0], &pair[1]);
            CandidateResult {
                candidate: *candidate,
                current: candidate.min_samples == written
                    && candidate.hold_percent == 100
                    && candidate.hold_max == HoldMax::AsWritten,
                false_rollback: Proportion::of(sound.stopped(), sound.runs),
                false_promote_2x: Proportion::of(bad.promoted, bad.runs),
                rollout_time: Spread::of(&sound.completed_at),
            }
        })
        .collect();
    // The quickest rollout (median) among those that meet both aims; then
    // the fewer false rollbacks; then, as few seeds rarely tell candidates
    // apart, the more cautious: more samples per judgement, hold_max as written.
    let chosen = results
        .iter()
        .enumerate()
        .filter(|(_, result)| result.meets(target))
        .min_by_key(|(_, result)| {
            (
                result.rollout_time.map_or(u64::MAX, |t| t.p50_ms),
                result.false_rollback.count,
                std::cmp::Reverse(result.candidate.min_samples),
                result.candidate.hold_max != HoldMax::AsWritten,
            )
        })
        .map(|(index, _)| index);
    let resolution = 1.0 / seeds.count as f64;
    let note = format!(
        "{} candidates × {} seeds each (from seed {}), on the sound build and confirm failures at 2× cap from the \
         first phase; a rate is a point estimate: with {} seeds one run is {}, so a target of {} {}",
        results.len(),
        seeds.count,
        seeds.first,
        seeds.count,
        super::tally::percent(resolution),
        super::tally::percent(target),
        if resolution > target {
            "is met only by no false rollback at all, and its 95% interval cannot prove it (run more seeds)"
        } else {
            "is within the resolution"
        }
    );
    Suggestion { first_seed: seeds.first, seeds: seeds.count, candidates: results, chosen, note }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_grid_holds_the_written_setting_and_scales_holds() {
        let scenario = Scenario::load(Path::new("scenarios/rollout.toml")).expect("bundled");
        let grid = candidates(&scenario);
        assert_eq!(grid.len(), CANDIDATES);
        assert!(grid.iter().any(|c| c.min_samples == 30 && c.hold_percent == 100 && c.hold_max == HoldMax::AsWritten));
        let slow = Candidate { min_samples: 50, hold_percent: 150, hold_max: HoldMax::Double }.apply(&scenario);
        assert_eq!(slow.criteria.min_samples, 50);
        assert_eq!(slow.phases[0].hold, scenario.phases[0].hold * 3 / 2);
        assert_eq!(slow.phases[0].hold_max, slow.phases[0].hold * 2);
        let same = Candidate { min_samples: 30, hold_percent: 100, hold_max: HoldMax::AsWritten }.apply(&scenario);
        assert_eq!(same.phases, scenario.phases);
    }
}
