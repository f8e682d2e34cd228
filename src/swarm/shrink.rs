//! Shrinking a failing artifact: greedy steps that keep the same D-code
//! failing while the run gets smaller — drop faults one at a time, halve
//! their probabilities, halve the horizon, halve the fleet — in passes until
//! a pass keeps nothing or the run budget is spent. A step is kept only when
//! the target still fails and no size grew, so the result is never larger
//! on any measure. Deterministic: the same artifact shrinks the same way.

use super::artifact::{Artifact, ArtifactError, RunResult, ShrinkRecord, Sizes};
use super::edits::{self, Edits, FaultSetting, MIN_PROBABILITY, PROBABILITY_DIGITS};
use crate::scenario::Scenario;
use crate::time::{self, MINUTE, Millis};

/// The cuts tried on the horizon and the fleet, in order: a half, else a quarter.
const CUTS: [(u64, u64); 2] = [(1, 2), (3, 4)];

/// The horizon is not halved below this: a run shorter than the analysis
/// interval shows little.
const MIN_HORIZON: Millis = 5 * MINUTE;

/// What a shrink keeps failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This D-code is among the run's violations.
    Code(String),
    /// The verdict is fail (an artifact with no violation, only criteria or outcome).
    Failure,
}

impl Target {
    /// `code` if given (it must be among the artifact's violations), else the
    /// artifact's first D-code, else its failing verdict.
    pub fn of(artifact: &Artifact, code: Option<&str>) -> Result<Target, String> {
        let violations = &artifact.result.violations;
        match code {
            Some(code) if violations.contains_key(code) => Ok(Target::Code(code.to_string())),
            Some(code) => Err(format!(
                "the artifact's run has no {code} violation (it has {})",
                artifact.result.violations_text()
            )),
            None => match violations.keys().next() {
                Some(code) => Ok(Target::Code(code.clone())),
                None if artifact.result.failed() => Ok(Target::Failure),
                None => Err("the artifact's run passed: there is no failure to keep".to_string()),
            },
        }
    }

    pub fn holds(&self, result: &RunResult) -> bool {
        match self {
            Target::Code(code) => result.violations.contains_key(code),
            Target::Failure => result.failed(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Code(code) => code,
            Target::Failure => "fail",
        }
    }
}

/// Why a shrink could not run.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("the artifact no longer fails with {target} when replayed ({now}): nothing to shrink")]
    NotReproduced { target: String, now: String },
}

/// A shrunk artifact and what it took.
pub struct Shrunk {
    pub artifact: Artifact,
    pub before: Sizes,
    pub runs: u32,
}

/// The shrinker's state: the best edits so far and their run.
struct Shrinker<'a> {
    scenario: Scenario,
    artifact: &'a Artifact,
    target: Target,
    max_runs: u32,
    runs: u32,
    edits: Edits,
    result: RunResult,
    steps: Vec<String>,
    progress: &'a mut dyn FnMut(&str),
}

/// Shrinks `artifact` within `max_runs` runs (the first replays it as it is).
pub fn shrink(
    artifact: &Artifact,
    target: Target,
    max_runs: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk, ShrinkError> {
    let scenario = artifact.source.parse()?;
    let edits = artifact.edits.clone();
    let baseline = run(&scenario, artifact, &edits)?;
    if !target.holds(&baseline) {
        return Err(ShrinkError::NotReproduced { target: target.name().to_string(), now: baseline.codes_line() });
    }
    progress(&format!("run 1: the artifact as it is fails with {}: {}", target.name(), baseline.sizes.line()));
    let before = baseline.sizes.clone();
    let mut shrinker =
        Shrinker { scenario, artifact, target, max_runs, runs: 1, edits, result: baseline, steps: vec![], progress };
    shrinker.edits.faults.get_or_insert_with(|| edits::as_written(&shrinker.scenario));
    while shrinker.runs < max_runs && shrinker.pass()? {}
    let Shrinker { edits, result, steps, runs, target, .. } = shrinker;
    let record = ShrinkRecord { target: target.name().to_string(), runs, steps, before: before.clone() };
    let artifact = Artifact { edits, result, shrink: Some(record), ..artifact.clone() };
    Ok(Shrunk { artifact, before, runs })
}

fn run(scenario: &Scenario, artifact: &Artifact, edits: &Edits) -> Result<RunResult, ArtifactError> {
    Ok(super::run(scenario, edits, artifact.seed, &artifact.stack_bugs)?)
}

impl Shrinker<'_> {
    /// One pass of every step; whether any was kept.
    fn pass(&mut self) -> Result<bool, ShrinkError> {
        let mut kept = false;
        for index in self.faults_on() {
            kept |= self.try_fault(index, |fault| fault.on = false, "off")?;
        }
        for index in self.faults_on() {
            let halve = |fault: &mut FaultSetting| {
                fault.probability = edits::round_digits(fault.probability / 2.0, PROBABILITY_DIGITS);
            };
            kept |= self.try_fault(index, halve, "halved")?;
        }
        // Half first; a failure late in the run may still allow a quarter off.
        for (part, whole) in CUTS {
            let horizon = self.result.sizes.horizon_ms / whole * part;
            if horizon < MIN_HORIZON {
                continue;
            }
            let edits = Edits { horizon_ms: Some(horizon), ..self.edits.clone() };
            if self.try_edits(edits, format!("horizon cut to {}", time::human(horizon)))? {
                kept = true;
                break;
            }
        }
        for (part, whole) in CUTS {
            let condominiums = (self.result.sizes.condominiums as u64 / whole * part) as u32;
            if condominiums < 1 {
                continue;
            }
            let edits = Edits { condominiums: Some(condominiums), ..self.edits.clone() };
            if self.try_edits(edits, format!("fleet cut to {condominiums} condominiums"))? {
                kept = true;
                break;
            }
        }
        Ok(kept)
    }

    /// The faults on, and above the probability floor.
    fn faults_on(&self) -> Vec<usize> {
        let faults = self.edits.faults.as_deref().unwrap_or_default();
        faults.iter().enumerate().filter(|(_, f)| f.on && f.probability > MIN_PROBABILITY).map(|(i, _)| i).collect()
    }

    fn try_fault(&mut self, index: usize, change: impl Fn(&mut FaultSetting), what: &str) -> Result<bool, ShrinkError> {
        let mut edits = self.edits.clone();
        let Some(fault) = edits.faults.as_mut().and_then(|faults| faults.get_mut(index)) else {
            return Ok(false);
        };
        change(fault);
        let step = format!("fault {index} ({}) {what}: probability {}", fault.kind, fault.probability);
        let step = if fault.on { step } else { format!("fault {index} ({}) off", fault.kind) };
        self.try_edits(edits, step)
    }

    /// Runs `edits` (within the budget) and keeps them if the target still
    /// fails and no size grew.
    fn try_edits(&mut self, edits: Edits, step: String) -> Result<bool, ShrinkError> {
        if self.runs >= self.max_runs {
            return Ok(false);
        }
        self.runs += 1;
        let result = run(&self.scenario, self.artifact, &edits)?;
        let fails = self.target.holds(&result);
        let smaller = result.sizes.none_larger_than(&self.result.sizes);
        let verdict = match (fails, smaller) {
            (true, true) => "kept",
            (true, false) => "dropped: a size grew",
            (false, _) => "dropped: the failure went away",
        };
        (self.progress)(&format!("run {}/{}: {step}: {verdict}", self.runs, self.max_runs));
        if fails && smaller {
            self.edits = edits;
            self.result = result;
            self.steps.push(step);
        }
        Ok(fails && smaller)
    }
}
