//! What the canary gate did with each run, and the rates over many runs with
//! their 95% Wilson intervals (the same interval the gate itself judges by):
//! false rollbacks of the sound build, false promotes and time to detect of
//! the bad ones, per phase.

use serde::{Deserialize, Serialize};

use super::builds::Build;
use crate::criteria::wilson_interval;
use crate::history::{DecisionKind, History};
use crate::judge::outcome::Outcome;
use crate::time::Millis;

/// How a run's rollout ended, as `posim run` and `posim swarm` say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Completed,
    RolledBack,
    Frozen,
    /// Neither completed nor rolled back: left holding an unproven phase.
    Held,
}

/// One run as the calibration reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observed {
    pub ending: Ending,
    /// The plan phase in effect when it ended (0-based): where the rollback,
    /// freeze or completion was decided, or where it was left holding.
    pub phase: usize,
    /// When the rollback or freeze (or the completion) was decided.
    pub decided_at: Option<Millis>,
    /// When the bad build's first deploy was decided, if it was deployed.
    pub bad_deployed_at: Option<Millis>,
}

impl Observed {
    /// Reads the run's decisions: the ending as [`Outcome::of`] reads it,
    /// and the phase in effect, tracked deploy by deploy.
    pub fn of(history: &History, build: &Build) -> Observed {
        let outcome = Outcome::of(history);
        let (ending, decided_at) = match outcome {
            Outcome::Completed { at_ms } => (Ending::Completed, Some(at_ms)),
            Outcome::RolledBack { at_ms, .. } => (Ending::RolledBack, Some(at_ms)),
            Outcome::Frozen { at_ms, .. } => (Ending::Frozen, Some(at_ms)),
            Outcome::Held { .. } => (Ending::Held, None),
        };
        let bad_phase = match build {
            Build::Sound => None,
            Build::Bad { from_phase, .. } => Some(*from_phase),
        };
        let mut phase = 0;
        let mut bad_deployed_at = None;
        for decision in &history.decisions {
            if decided_at.is_some_and(|at| decision.at > at) {
                break;
            }
            let planned = matches!(decision.kind, DecisionKind::Start | DecisionKind::Advance);
            if let (true, Some(deploy)) = (planned, decision.deploy) {
                phase = history.deploys.get(usize::from(deploy)).map_or(phase, |info| usize::from(info.phase));
                if bad_phase == Some(phase) && bad_deployed_at.is_none() {
                    bad_deployed_at = Some(decision.at);
                }
            }
            if decision.kind.is_rollback() {
                break;
            }
        }
        Observed { ending, phase, decided_at, bad_deployed_at }
    }

    /// The sound build stopped: rolled back, frozen or left holding.
    pub fn false_alarm(&self) -> bool {
        self.ending != Ending::Completed
    }

    /// The bad build reached the last phase and stayed there (completed or
    /// left holding at 100%): every customer is on it.
    pub fn promoted(&self, phases: usize) -> bool {
        match self.ending {
            Ending::Completed => true,
            Ending::Held => self.phase + 1 >= phases,
            Ending::RolledBack | Ending::Frozen => false,
        }
    }

    /// How long after the bad build's deploy the gate rolled it back or
    /// froze it (none: not caught, or stopped before it was deployed).
    pub fn detected_after(&self) -> Option<Millis> {
        match self.ending {
            Ending::RolledBack | Ending::Frozen => self.decided_at?.checked_sub(self.bad_deployed_at?),
            Ending::Completed | Ending::Held => None,
        }
    }
}

/// A count of runs out of some, with its 95% Wilson interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub count: u64,
    pub runs: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Proportion {
    pub fn of(count: u64, runs: u64) -> Proportion {
        let (low, high) = wilson_interval(count, runs);
        let rate = if runs == 0 { 0.0 } else { count as f64 / runs as f64 };
        Proportion { count, runs, rate, low, high }
    }

    /// `0.10% (95% CI 0.02–0.56%; 2/2000)`.
    pub fn text(&self) -> String {
        format!(
            "{} (95% CI {}–{}; {}/{})",
            percent(self.rate),
            percent(self.low).trim_end_matches('%'),
            percent(self.high),
            self.count,
            self.runs
        )
    }
}

/// A share as a percentage with enough digits for rates near 0.1%.
pub fn percent(share: f64) -> String {
    format!("{:.2}%", 100.0 * share)
}

/// Times: the median, the 90th percentile and the longest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    pub p50_ms: Millis,
    pub p90_ms: Millis,
    pub max_ms: Millis,
}

impl Spread {
    /// None for no times (nothing was caught).
    pub fn of(times: &[Millis]) -> Option<Spread> {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        let max_ms = *sorted.last()?;
        // Nearest rank: the smallest time at or above the share of runs.
        let rank = |share: f64| sorted[((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Some(Spread { p50_ms: rank(0.5), p90_ms: rank(0.9), max_ms })
    }

    pub fn text(&self) -> String {
        use crate::time::human;
        format!("p50 {}, p90 {}, max {}", human(self.p50_ms), human(self.p90_ms), human(self.max_ms))
    }
}

/// The runs of one build, as they come in.
#[derive(Clone, Debug, Default)]
pub struct BuildTally {
    pub runs: u64,
    /// Runs that ended by a rollback, a freeze or a hold, by the phase in effect.
    pub stopped_by_phase: Vec<u64>,
    pub promoted: u64,
    pub detected_after: Vec<Millis>,
    /// Completion times (the rollout's length when it completed).
    pub completed_at: Vec<Millis>,
    /// The seeds of the stopped runs (to replay one with `posim run --seed`).
    pub stopped_seeds: Vec<u64>,
}

impl BuildTally {
    pub fn new(phases: usize) -> BuildTally {
        BuildTally { stopped_by_phase: vec![0; phases], ..BuildTally::default() }
    }

    pub fn add(&mut self, seed: u64, observed: &Observed) {
        self.runs += 1;
        let phases = self.stopped_by_phase.len();
        if observed.ending == Ending::Completed {
            self.completed_at.extend(observed.decided_at);
        } else if let Some(count) = self.stopped_by_phase.get_mut(observed.phase) {
            *count += 1;
            self.stopped_seeds.push(seed);
        }
        if observed.promoted(phases) {
            self.promoted += 1;
        }
        self.detected_after.extend(observed.detected_after());
    }

    /// Runs stopped (rolled back, frozen or held) in any phase: the sound
    /// build's false rollbacks.
    pub fn stopped(&self) -> u64 {
        self.stopped_by_phase.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_nearest_ranks() {
        let spread = Spread::of(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]).expect("times");
        assert_eq!((spread.p50_ms, spread.p90_ms, spread.max_ms), (5, 9, 10));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn a_held_bad_build_is_promoted_only_at_the_last_phase() {
        let held = |phase| Observed { ending: Ending::Held, phase, decided_at: None, bad_deployed_at: Some(0) };
        assert!(held(2).promoted(3));
        assert!(!held(1).promoted(3));
        let caught = Observed { ending: Ending::RolledBack, phase: 0, decided_at: Some(900), bad_deployed_at: Some(0) };
        assert_eq!(caught.detected_after(), Some(900));
        assert!(!caught.promoted(3) && caught.false_alarm());
        let mut tally = BuildTally::new(3);
        tally.add(4, &caught);
        tally.add(9, &held(2));
        assert_eq!((tally.stopped(), tally.promoted, tally.stopped_by_phase.clone()), (2, 1, vec![1, 0, 1]));
        assert_eq!(tally.stopped_seeds, [4, 9]);
    }
}
